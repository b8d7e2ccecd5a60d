//! Conversations: sending, recalling, history, read positions and unread counts,
//! for direct conversations and groups alike. Every write is sequenced by the
//! store in the transaction that stores it and fanned out only after it is
//! durable.

use std::sync::Arc;

use crate::bus::LiveEvent;
use crate::model::{
    Append, AppendBody, Appended, Conversation, ConversationKind, ConversationState, EventBody,
    EventRange, Segment, StoredEvent,
};
use crate::{Caller, ConversationId, Denied, Error, HistoryRange, Qun, Result, Seq, UserId};

impl Qun {
    /// A conversation's record, from the node's cache when it holds it.
    async fn conversation(&self, id: ConversationId) -> Result<Arc<Conversation>> {
        if let Some(conv) = self.conversation_cache.get(id) {
            return Ok(conv);
        }
        let conv = Arc::new(
            self.store
                .conversation(id)
                .await?
                .ok_or(Error::NotFound("conversation"))?,
        );
        self.conversation_cache.put(Arc::clone(&conv));
        Ok(conv)
    }

    /// The conversation if the caller takes part in it.
    async fn conversation_for(
        &self,
        caller: &Caller,
        id: ConversationId,
    ) -> Result<Arc<Conversation>> {
        let conv = self.conversation(id).await?;
        let member = match conv.kind {
            ConversationKind::Direct => conv.members.contains(&caller.user),
            ConversationKind::Group(g) => self.store.member(g, caller.user).await?.is_some(),
        };
        if !member {
            return Err(Error::Forbidden(Denied::NotMember));
        }
        Ok(conv)
    }

    /// Everyone whose devices receive the conversation's events.
    async fn recipients(&self, conv: &Conversation) -> Result<Vec<UserId>> {
        match conv.kind {
            ConversationKind::Direct => Ok(conv.members.clone()),
            ConversationKind::Group(g) => {
                let group = self.store.group(g).await?.ok_or(Error::NotFound("group"))?;
                self.group_recipients(&group).await
            }
        }
    }

    /// The 1:1 conversation with a friend (it exists from the moment they
    /// became friends; after unfriending its history stays readable).
    pub async fn direct_conversation(
        &self,
        caller: &Caller,
        peer: UserId,
    ) -> Result<ConversationState> {
        let id = self
            .store
            .direct_conversation(caller.user, peer)
            .await?
            .ok_or(Error::Forbidden(Denied::NotFriends))?;
        self.store
            .conversation_state(caller.user, id)
            .await?
            .ok_or(Error::NotFound("conversation"))
    }

    /// Sends a message; returns once it is durable.
    pub async fn send(
        &self,
        caller: &Caller,
        conversation: ConversationId,
        client_msg_id: &str,
        segments: Vec<Segment>,
    ) -> Result<Appended> {
        self.check_client_msg_id(client_msg_id)?;
        self.check_segments(&segments)?;
        let conv = self.conversation(conversation).await?;
        // Who receives it is settled before the write, so a committed message
        // is never answered with an error.
        let (quota, users, peer) = match conv.kind {
            ConversationKind::Direct => {
                if !conv.members.contains(&caller.user) {
                    return Err(Error::Forbidden(Denied::NotMember));
                }
                if segments.iter().any(|s| matches!(s, Segment::MentionAll)) {
                    return Err(Error::invalid("segments", "@all is for groups"));
                }
                let Some(&peer) = conv.members.iter().find(|&&m| m != caller.user) else {
                    return Err(Error::Forbidden(Denied::NotMember));
                };
                (None, conv.members.clone(), Some(peer))
            }
            ConversationKind::Group(g) => {
                let (group, member) = self.standing(caller.user, g).await?;
                let quota = self.check_may_send_in_group(caller, &group, member, &segments)?;
                (quota, self.group_recipients(&group).await?, None)
            }
        };
        let time = self.clock.now_ms();
        let append = |requires_friend| Append {
            quota: quota.clone(),
            conversation,
            sender: caller.user,
            client_msg_id: client_msg_id.to_owned(),
            time,
            body: AppendBody::Message(segments.clone()),
            requires_friend,
        };
        // Friends, the common case, are checked by the append itself.
        let appended = match self.store.append(append(peer)).await {
            Err(Error::Forbidden(Denied::NotFriends)) if peer.is_some() => {
                // Not friends, or blocked: the full check says which, and
                // lets a temporary session through.
                self.check_may_send_direct(caller, &conv).await?;
                self.store.append(append(None)).await?
            }
            result => result?,
        };
        if !appended.duplicate {
            let event = StoredEvent {
                conversation,
                seq: appended.seq,
                message_id: appended.message_id,
                sender: caller.user,
                client_msg_id: client_msg_id.to_owned(),
                time: appended.time,
                body: EventBody::Message {
                    segments,
                    recalled: false,
                },
            };
            self.deliver(users, LiveEvent::Conversation(event)).await;
        }
        Ok(appended)
    }

    /// Whether the caller may write in a direct conversation: friends, or a
    /// temporary session between members of a shared group; never blocked.
    async fn check_may_send_direct(&self, caller: &Caller, conv: &Conversation) -> Result<()> {
        let Some(&peer) = conv.members.iter().find(|&&m| m != caller.user) else {
            return Err(Error::Forbidden(Denied::NotMember));
        };
        let standing = self.store.direct_standing(caller.user, peer).await?;
        if standing.blocked {
            return Err(Error::Forbidden(Denied::Blocked));
        }
        if standing.friends {
            return Ok(());
        }
        let peer_user = self
            .store
            .user(peer)
            .await?
            .ok_or(Error::NotFound("user"))?;
        match self.check_temp_session(caller.user, &peer_user).await {
            Err(Error::Forbidden(Denied::NoSharedGroup)) => {
                Err(Error::Forbidden(Denied::NotFriends))
            }
            other => other,
        }
    }

    /// Recalls a message. Authors recall their own within the recall window;
    /// in groups, the owner and admins recall lower roles' messages (and their
    /// own) at any time. The recall is itself an event of the conversation;
    /// repeating it returns the same ack.
    pub async fn recall(
        &self,
        caller: &Caller,
        conversation: ConversationId,
        seq: Seq,
    ) -> Result<Appended> {
        let conv = self.conversation_for(caller, conversation).await?;
        let target = self
            .store
            .event(conversation, seq)
            .await?
            .ok_or(Error::NotFound("message"))?;
        if !matches!(target.body, EventBody::Message { .. }) {
            return Err(Error::Conflict("only messages can be recalled".into()));
        }
        let moderator = match conv.kind {
            ConversationKind::Group(g) => {
                self.may_recall_in_group(caller, g, target.sender).await?
            }
            ConversationKind::Direct => false,
        };
        if !moderator && target.sender != caller.user {
            return Err(Error::Forbidden(Denied::NotAuthor));
        }
        let now = self.clock.now_ms();
        let window = self.config.recall_window_secs;
        if !moderator && now - target.time > (window as i64) * 1000 {
            return Err(Error::RecallWindowPassed {
                window_secs: window,
            });
        }
        // The recall's own idempotency key: a retry finds the first recall.
        let client_msg_id = format!("recall:{conversation}:{seq}");
        let append = Append {
            quota: None,
            conversation,
            sender: caller.user,
            client_msg_id: client_msg_id.clone(),
            time: now,
            body: AppendBody::Recall { target: seq },
            requires_friend: None,
        };
        let appended = self.store.append(append).await?;
        if !appended.duplicate {
            let event = StoredEvent {
                conversation,
                seq: appended.seq,
                message_id: appended.message_id,
                sender: caller.user,
                client_msg_id,
                time: appended.time,
                body: EventBody::Recall { target: seq },
            };
            let users = self.recipients(&conv).await?;
            self.deliver(users, LiveEvent::Conversation(event)).await;
        }
        Ok(appended)
    }

    /// A page of history, ascending, and whether more exists in that direction.
    /// In a group, a member reads from their join on unless the group shows
    /// newcomers its full history.
    pub async fn history(
        &self,
        caller: &Caller,
        conversation: ConversationId,
        range: HistoryRange,
        limit: Option<u32>,
    ) -> Result<(Vec<StoredEvent>, bool)> {
        let max = self.config.history_page_max;
        let limit = limit.unwrap_or(100.min(max));
        if limit == 0 {
            return Err(Error::invalid("limit", "must be at least 1"));
        }
        if limit > max {
            return Err(Error::TooLarge {
                limit: "history_page_max",
                max: max as u64,
            });
        }
        let conv = self.conversation_for(caller, conversation).await?;
        let first = match conv.kind {
            ConversationKind::Group(g) => self.first_readable_seq(caller, g).await?,
            ConversationKind::Direct => Seq(1),
        };
        let range = match range {
            HistoryRange::After(s) => EventRange::After(Seq(s.0.max(first.0 - 1)), limit + 1),
            HistoryRange::Before(s) => EventRange::Before(s, limit + 1),
            HistoryRange::Latest => EventRange::Before(Seq(i64::MAX as u64), limit + 1),
        };
        let mut events = self.store.events(conversation, range).await?;
        let mut more = events.len() > limit as usize;
        if more {
            match range {
                EventRange::After(..) => events.truncate(limit as usize),
                EventRange::Before(..) => {
                    events.remove(0);
                }
            }
        }
        if events.first().is_some_and(|e| e.seq < first) {
            events.retain(|e| e.seq >= first);
            if matches!(range, EventRange::Before(..)) {
                more = false;
            }
        }
        Ok((events, more))
    }

    /// The caller's conversations with unread and mention counts.
    pub async fn conversations(&self, caller: &Caller) -> Result<Vec<ConversationState>> {
        self.store.conversation_states(caller.user).await
    }

    /// Moves the caller's read position forward; other devices are told.
    pub async fn mark_read(
        &self,
        caller: &Caller,
        conversation: ConversationId,
        seq: Seq,
    ) -> Result<ConversationState> {
        self.conversation_for(caller, conversation).await?;
        let before = self
            .store
            .conversation_state(caller.user, conversation)
            .await?;
        let read_seq = self.store.mark_read(caller.user, conversation, seq).await?;
        if before.is_some_and(|b| b.read_seq != read_seq) {
            self.deliver(
                vec![caller.user],
                LiveEvent::Read {
                    conversation,
                    read_seq,
                },
            )
            .await;
        }
        self.store
            .conversation_state(caller.user, conversation)
            .await?
            .ok_or(Error::NotFound("conversation"))
    }

    fn check_client_msg_id(&self, id: &str) -> Result<()> {
        let max = self.config.max_client_msg_id_bytes;
        if id.is_empty() {
            return Err(Error::invalid("client_msg_id", "must not be empty"));
        }
        if id.len() > max {
            return Err(Error::TooLarge {
                limit: "max_client_msg_id_bytes",
                max: max as u64,
            });
        }
        if id.starts_with("recall:")
            || id.starts_with("notice:")
            || id.chars().any(char::is_control)
        {
            return Err(Error::invalid(
                "client_msg_id",
                "reserved prefix or control characters",
            ));
        }
        Ok(())
    }

    fn check_segments(&self, segments: &[Segment]) -> Result<()> {
        let c = &self.config;
        if segments.is_empty() {
            return Err(Error::invalid(
                "segments",
                "a message needs at least one segment",
            ));
        }
        if segments.len() > c.max_segments {
            return Err(Error::TooLarge {
                limit: "max_segments",
                max: c.max_segments as u64,
            });
        }
        let weight: usize = segments.iter().map(Segment::weight).sum();
        if weight > c.max_message_bytes {
            return Err(Error::TooLarge {
                limit: "max_message_bytes",
                max: c.max_message_bytes as u64,
            });
        }
        for s in segments {
            if let Segment::Text { text } = s {
                if text.contains('\0') {
                    return Err(Error::invalid(
                        "segments",
                        "text must not contain NUL characters",
                    ));
                }
            }
            match s {
                Segment::Reply { seq } if seq.0 == 0 => {
                    return Err(Error::invalid("segments", "reply needs a sequence number"));
                }
                Segment::Image { file } | Segment::File { file, .. } if file.is_empty() => {
                    return Err(Error::invalid(
                        "segments",
                        "file reference must not be empty",
                    ));
                }
                _ => {}
            }
        }
        if segments
            .iter()
            .all(|s| matches!(s, Segment::Text { text } if text.trim().is_empty()))
        {
            return Err(Error::invalid("segments", "the message is empty"));
        }
        Ok(())
    }
}
