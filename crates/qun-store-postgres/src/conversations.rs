//! Conversations, their event streams and each participant's read position.
//!
//! The conversation row carries `last_seq`. An append raises it with
//! `UPDATE ... RETURNING` in the same statement that inserts the event: the
//! update takes the row's lock until commit, so writers on every node queue
//! per conversation and sequence numbers are gap-free and never reused. The
//! insert meets the `(sender, client_msg_id)` index: when the id was used
//! before (or is being used right now by another node, whose commit the
//! insert waits for) nothing is inserted, the caller rolls the attempt back
//! and answers with the first append (see [`try_append`] and [`earlier`]).
//!
//! A group's conversation has the group's members as participants, so one
//! query lists direct and group conversations with read positions alike. A
//! message costs a constant number of writes whatever the member count.

use deadpool_postgres::GenericClient;
use qun_domain::groups::model::Notice;
use qun_domain::model::{
    Append, AppendBody, Appended, Conversation, ConversationKind, ConversationState, EventBody,
    EventRange, Segment, StoredEvent,
};
use qun_domain::{ConversationId, Denied, Error, GroupId, MessageId, Seq, UserId, MENTION_ALL};
use tokio_postgres::Row;

use crate::error::{conflict, corrupt, not_found, Failure, Outcome};
use crate::sql::{execute, key, opt_u64_at, query, query_one, query_opt, u64_at, Tx};

/// A conversation's kind from its `kind` and `group_id` columns.
fn kind_from_columns(kind: &str, group: Option<u64>) -> Outcome<ConversationKind> {
    match (kind, group) {
        ("direct", None) => Ok(ConversationKind::Direct),
        ("group", Some(group)) => Ok(ConversationKind::Group(GroupId(group))),
        (other, _) => Err(corrupt(&format!("conversation kind {other:?}"))),
    }
}

/// The two users of a direct conversation in stored order, if storable.
fn pair(a: UserId, b: UserId) -> Option<(i64, i64)> {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    Some((key(lo.0)?, key(hi.0)?))
}

/// The direct conversation of two users, if any.
pub(crate) async fn direct<C: GenericClient>(
    c: &C,
    a: UserId,
    b: UserId,
) -> Outcome<Option<ConversationId>> {
    let Some((lo, hi)) = pair(a, b) else {
        return Ok(None);
    };
    query_opt(
        c,
        "SELECT id FROM conversations WHERE direct_lo = $1 AND direct_hi = $2",
        &[&lo, &hi],
    )
    .await?
    .map(|row| u64_at(&row, 0).map(ConversationId))
    .transpose()
}

/// The direct conversation of two users, created with both as members if
/// new. Two nodes creating it at once meet the pair's unique key: the second
/// waits for the first to commit and then finds its conversation.
pub(crate) async fn find_or_create_direct(
    tx: &Tx<'_>,
    a: UserId,
    b: UserId,
    at: i64,
) -> Outcome<ConversationId> {
    if let Some(id) = direct(tx, a, b).await? {
        return Ok(id);
    }
    let Some((lo, hi)) = pair(a, b) else {
        return Err(not_found("user"));
    };
    let created = query_opt(
        tx,
        "INSERT INTO conversations (kind, direct_lo, direct_hi, created_at)
         VALUES ('direct', $1, $2, $3)
         ON CONFLICT (direct_lo, direct_hi) DO NOTHING
         RETURNING id",
        &[&lo, &hi, &at],
    )
    .await?;
    let Some(created) = created else {
        return direct(tx, a, b)
            .await?
            .ok_or_else(|| corrupt("a direct conversation vanished while it was created"));
    };
    let id: i64 = created.try_get(0)?;
    execute(
        tx,
        "INSERT INTO members (conversation, user_id) VALUES ($1, $2), ($1, $3)
         ON CONFLICT (conversation, user_id) DO NOTHING",
        &[&id, &lo, &hi],
    )
    .await?;
    Ok(ConversationId(u64_at(&created, 0)?))
}

/// Creates a group's conversation, without participants yet.
pub(crate) async fn create_group_conversation(
    tx: &Tx<'_>,
    group: i64,
    at: i64,
) -> Outcome<ConversationId> {
    let row = query_one(
        tx,
        "INSERT INTO conversations (kind, group_id, created_at)
         VALUES ('group', $1, $2) RETURNING id",
        &[&group, &at],
    )
    .await?;
    Ok(ConversationId(u64_at(&row, 0)?))
}

/// Adds a participant whose read position starts at `read_seq`.
pub(crate) async fn add_participant(
    tx: &Tx<'_>,
    conversation: ConversationId,
    user: i64,
    read_seq: Seq,
) -> Outcome<()> {
    let (Some(conversation), Some(read_seq)) = (key(conversation.0), key(read_seq.0)) else {
        return Err(not_found("conversation"));
    };
    execute(
        tx,
        "INSERT INTO members (conversation, user_id, read_seq) VALUES ($1, $2, $3)
         ON CONFLICT (conversation, user_id) DO UPDATE SET read_seq = excluded.read_seq",
        &[&conversation, &user, &read_seq],
    )
    .await?;
    Ok(())
}

/// Removes a participant together with their read position.
pub(crate) async fn remove_participant(
    tx: &Tx<'_>,
    conversation: ConversationId,
    user: i64,
) -> Outcome<()> {
    let Some(conversation) = key(conversation.0) else {
        return Err(not_found("conversation"));
    };
    execute(
        tx,
        "DELETE FROM members WHERE conversation = $1 AND user_id = $2",
        &[&conversation, &user],
    )
    .await?;
    Ok(())
}

/// A conversation with its members in ascending order (none listed for a
/// group: its members are the group's).
pub(crate) async fn conversation<C: GenericClient>(
    c: &C,
    id: ConversationId,
) -> Outcome<Option<Conversation>> {
    let Some(stored) = key(id.0) else {
        return Ok(None);
    };
    let Some(row) = query_opt(
        c,
        "SELECT kind, group_id FROM conversations WHERE id = $1",
        &[&stored],
    )
    .await?
    else {
        return Ok(None);
    };
    let kind: String = row.try_get(0)?;
    let kind = kind_from_columns(&kind, opt_u64_at(&row, 1)?)?;
    let members = match kind {
        ConversationKind::Group(_) => Vec::new(),
        ConversationKind::Direct => query(
            c,
            "SELECT user_id FROM members WHERE conversation = $1 ORDER BY user_id",
            &[&stored],
        )
        .await?
        .iter()
        .map(|row| u64_at(row, 0).map(UserId))
        .collect::<Outcome<Vec<_>>>()?,
    };
    Ok(Some(Conversation { id, kind, members }))
}

/// Locks a group conversation's row until commit and returns the sequence
/// number its next event (a notice) will take.
pub(crate) async fn lock_next_seq(tx: &Tx<'_>, conversation: ConversationId) -> Outcome<Seq> {
    let Some(stored) = key(conversation.0) else {
        return Err(not_found("conversation"));
    };
    let row = query_opt(
        tx,
        "SELECT last_seq FROM conversations WHERE id = $1 FOR NO KEY UPDATE",
        &[&stored],
    )
    .await?
    .ok_or_else(|| not_found("conversation"))?;
    let last = u64_at(&row, 0)?;
    Ok(Seq(last + 1))
}

/// Appends a group notice by `actor` at `seq`, which the caller obtained
/// from [`lock_next_seq`] in the same transaction. Its client message id is
/// generated from the group and the seq, outside the senders' idempotency
/// index.
pub(crate) async fn insert_notice(
    tx: &Tx<'_>,
    conversation: ConversationId,
    group: GroupId,
    seq: Seq,
    actor: UserId,
    notice: &Notice,
    time: i64,
) -> Outcome<Appended> {
    let (Some(stored), Some(seq_key), Some(actor_key)) =
        (key(conversation.0), key(seq.0), key(actor.0))
    else {
        return Err(not_found("conversation"));
    };
    let content = serde_json::to_string(notice)?;
    let client_msg_id = format!("notice:{group}:{seq}");
    let row = query_one(
        tx,
        "INSERT INTO events (conversation, seq, sender, client_msg_id, time, kind, content)
         VALUES ($1, $2, $3, $4, $5, 'notice', $6) RETURNING id",
        &[
            &stored,
            &seq_key,
            &actor_key,
            &client_msg_id,
            &time,
            &content,
        ],
    )
    .await?;
    execute(
        tx,
        "UPDATE conversations SET last_seq = $2, last_time = $3 WHERE id = $1",
        &[&stored, &seq_key, &time],
    )
    .await?;
    Ok(Appended {
        conversation,
        seq,
        message_id: MessageId(u64_at(&row, 0)?),
        time,
        duplicate: false,
    })
}

/// One statement per append: raise the conversation's sequence (locking its
/// row), insert the event unless the sender's client id is taken, index the
/// mentions and count the sender's activity in a group. When the insert does
/// nothing the whole statement's work must be rolled back by the caller.
const APPEND: &str = "
    WITH c AS (
        UPDATE conversations SET last_seq = last_seq + 1, last_time = $4::BIGINT
        WHERE id = $1::BIGINT
        RETURNING id, last_seq, group_id
    ), e AS (
        INSERT INTO events (conversation, seq, sender, client_msg_id, time, kind, content, target)
        SELECT c.id, c.last_seq, $2::BIGINT, $3::TEXT, $4::BIGINT, $5::TEXT, $6::TEXT, $7::BIGINT
        FROM c
        ON CONFLICT (sender, client_msg_id) WHERE kind <> 'notice' DO NOTHING
        RETURNING id, seq
    ), m AS (
        INSERT INTO mentions (conversation, user_id, seq)
        SELECT c.id, u.user_id, c.last_seq FROM c, unnest($8::BIGINT[]) AS u (user_id)
    ), g AS (
        UPDATE group_members SET messages = messages + 1, last_spoke_at = $4::BIGINT
        FROM c
        WHERE $5::TEXT = 'message' AND group_members.group_id = c.group_id
          AND group_members.user_id = $2::BIGINT
    )
    SELECT id, seq FROM e";

/// Locks the conversation rows of a batch in ascending id order, the order
/// every transaction that locks several keeps (see `writer`).
const LOCK_CONVERSATIONS: &str =
    "SELECT id FROM conversations WHERE id = ANY($1::BIGINT[]) ORDER BY id FOR UPDATE";

/// Raises each conversation's counter by its count of messages in a batch.
const RESERVE_SEQS: &str = "
    UPDATE conversations SET last_seq = last_seq + u.cnt, last_time = u.time
    FROM unnest($1::BIGINT[], $2::BIGINT[], $3::BIGINT[]) AS u (id, cnt, time)
    WHERE conversations.id = u.id";

/// Inserts a batch's messages, the `n`th of `cnt` in a conversation taking
/// seq `last_seq - cnt + n` (the counter was raised just before). A client id
/// used before, or a direct message whose `requires_friend` does not hold,
/// is left out and shows as a missing row.
const INSERT_MESSAGES: &str = "
    INSERT INTO events (conversation, seq, sender, client_msg_id, time, kind, content)
    SELECT i.conv, c.last_seq - i.cnt + i.n, i.sender, i.client_msg_id, i.time, 'message', i.content
    FROM unnest($1::BIGINT[], $2::BIGINT[], $3::BIGINT[], $4::BIGINT[], $5::TEXT[],
                $6::BIGINT[], $7::TEXT[], $8::BIGINT[])
         AS i (conv, n, cnt, sender, client_msg_id, time, content, peer)
    JOIN conversations c ON c.id = i.conv
    WHERE i.peer IS NULL
       OR (EXISTS (SELECT 1 FROM friends f WHERE f.owner = i.sender AND f.friend = i.peer)
           AND NOT EXISTS (SELECT 1 FROM blocks b
                           WHERE (b.owner = i.sender AND b.other = i.peer)
                              OR (b.owner = i.peer AND b.other = i.sender)))
    ON CONFLICT (sender, client_msg_id) WHERE kind <> 'notice' DO NOTHING
    RETURNING sender, client_msg_id, seq, id";

/// Indexes a batch's mentions, seqs computed as in [`INSERT_MESSAGES`].
const INSERT_MENTIONS: &str = "
    INSERT INTO mentions (conversation, user_id, seq)
    SELECT m.conv, m.user_id, c.last_seq - m.cnt + m.n
    FROM unnest($1::BIGINT[], $2::BIGINT[], $3::BIGINT[], $4::BIGINT[]) AS m (conv, n, cnt, user_id)
    JOIN conversations c ON c.id = m.conv";

/// Counts a batch's messages in group members' speaking statistics: one
/// row per sender and group whatever the member count.
const COUNT_SPEAKERS: &str = "
    UPDATE group_members SET messages = messages + s.cnt, last_spoke_at = s.time
    FROM (SELECT c.group_id, u.sender, count(*) AS cnt, max(u.time) AS time
          FROM unnest($1::BIGINT[], $2::BIGINT[], $3::BIGINT[]) AS u (conv, sender, time)
          JOIN conversations c ON c.id = u.conv
          WHERE c.group_id IS NOT NULL
          GROUP BY c.group_id, u.sender) s
    WHERE group_members.group_id = s.group_id AND group_members.user_id = s.sender";

/// Whether `append` can go in a batch of [`append_messages`]: a plain
/// message that spends no quota, with ids that can be stored.
pub(crate) fn batchable(append: &Append) -> bool {
    matches!(append.body, AppendBody::Message(_))
        && append.quota.is_none()
        && key(append.conversation.0).is_some()
        && key(append.sender.0).is_some()
        && append
            .requires_friend
            .is_none_or(|peer| key(peer.0).is_some())
}

/// Stores a batch of [`batchable`] appends, sorted by conversation, in one
/// round trip of five set-based statements (lock, reserve, insert events,
/// mentions and speaking statistics). `Ok(None)` when the batch cannot be
/// stored this way as it is: a client id repeated in it or used before (a
/// retry), a conversation that does not exist, or a direct message whose
/// sender is no longer a friend. Those are rare, and the
/// caller then rolls the transaction back (the counters were raised) and
/// stores the appends one at a time, which answers each case precisely.
pub(crate) async fn append_messages(
    tx: &Tx<'_>,
    appends: &[&Append],
) -> Outcome<Option<Vec<Appended>>> {
    let len = appends.len();
    let mut rows = Rows::default();
    // Where each (sender, client id) sits in the batch.
    let mut position = std::collections::HashMap::with_capacity(len);
    for (i, append) in appends.iter().enumerate() {
        let (AppendBody::Message(segments), Some(conv), Some(sender)) = (
            &append.body,
            key(append.conversation.0),
            key(append.sender.0),
        ) else {
            return Err(corrupt(
                "an append that cannot be batched reached the batch",
            ));
        };
        if position
            .insert((sender, append.client_msg_id.as_str()), i)
            .is_some()
        {
            return Ok(None);
        }
        rows.push(
            conv,
            sender,
            append,
            serde_json::to_string(segments)?,
            segments,
        );
    }
    rows.number();
    let lock = async { query(tx, LOCK_CONVERSATIONS, &[&rows.conversations]).await };
    let reserve = async {
        execute(
            tx,
            RESERVE_SEQS,
            &[&rows.conversations, &rows.counts, &rows.last_times],
        )
        .await
    };
    let insert = async {
        query(
            tx,
            INSERT_MESSAGES,
            &[
                &rows.conv,
                &rows.n,
                &rows.cnt,
                &rows.sender,
                &rows.client_msg_id,
                &rows.time,
                &rows.content,
                &rows.peer,
            ],
        )
        .await
    };
    let mentions = async {
        if rows.mention_user.is_empty() {
            return Ok(0);
        }
        execute(
            tx,
            INSERT_MENTIONS,
            &[
                &rows.mention_conv,
                &rows.mention_n,
                &rows.mention_cnt,
                &rows.mention_user,
            ],
        )
        .await
    };
    let speakers =
        async { execute(tx, COUNT_SPEAKERS, &[&rows.conv, &rows.sender, &rows.time]).await };
    // All five go out together and run in this order: the lock first.
    let (lock, reserve, inserted, mentions, speakers) =
        futures_util::future::join5(lock, reserve, insert, mentions, speakers).await;
    lock?;
    reserve?;
    mentions?;
    speakers?;
    let inserted = inserted?;
    if inserted.len() != len {
        return Ok(None);
    }
    let mut stored: Vec<Option<Appended>> = vec![None; len];
    for row in &inserted {
        let sender: i64 = row.try_get(0)?;
        let client_msg_id: &str = row.try_get(1)?;
        let Some(&i) = position.get(&(sender, client_msg_id)) else {
            return Err(corrupt("a batch stored a message it was not given"));
        };
        let (Some(slot), Some(append)) = (stored.get_mut(i), appends.get(i)) else {
            return Err(corrupt("a batch position out of range"));
        };
        *slot = Some(Appended {
            conversation: append.conversation,
            seq: Seq(u64_at(row, 2)?),
            message_id: MessageId(u64_at(row, 3)?),
            time: append.time,
            duplicate: false,
        });
    }
    // Every message had its row (counted above), so none is missing here.
    Ok(stored.into_iter().collect())
}

/// A batch as the columns of [`INSERT_MESSAGES`] and its companions.
#[derive(Default)]
struct Rows<'a> {
    conv: Vec<i64>,
    sender: Vec<i64>,
    client_msg_id: Vec<&'a str>,
    time: Vec<i64>,
    content: Vec<String>,
    /// `requires_friend`, if any.
    peer: Vec<Option<i64>>,
    /// Position of each message among its conversation's in the batch, from 1.
    n: Vec<i64>,
    /// How many messages of its conversation the batch holds.
    cnt: Vec<i64>,
    /// Each conversation once, ascending, with its count and latest time.
    conversations: Vec<i64>,
    counts: Vec<i64>,
    last_times: Vec<i64>,
    /// Mentions: the message's index in the batch, then its columns.
    mention_of: Vec<usize>,
    mention_user: Vec<i64>,
    mention_conv: Vec<i64>,
    mention_n: Vec<i64>,
    mention_cnt: Vec<i64>,
}

impl<'a> Rows<'a> {
    fn push(
        &mut self,
        conv: i64,
        sender: i64,
        append: &'a Append,
        content: String,
        segments: &[Segment],
    ) {
        for user in mentioned(segments) {
            self.mention_of.push(self.conv.len());
            self.mention_user.push(user);
        }
        self.conv.push(conv);
        self.sender.push(sender);
        self.client_msg_id.push(&append.client_msg_id);
        self.time.push(append.time);
        self.content.push(content);
        self.peer
            .push(append.requires_friend.and_then(|peer| key(peer.0)));
    }

    /// Numbers the messages within their conversations; the batch is
    /// sorted by conversation, so each conversation's run is contiguous.
    fn number(&mut self) {
        let mut start = 0;
        while start < self.conv.len() {
            let conv = self.conv[start];
            let end = self.conv[start..]
                .iter()
                .position(|&c| c != conv)
                .map_or(self.conv.len(), |k| start + k);
            let count = (end - start) as i64;
            for k in start..end {
                self.n.push((k - start) as i64 + 1);
                self.cnt.push(count);
            }
            self.conversations.push(conv);
            self.counts.push(count);
            self.last_times
                .push(self.time[start..end].iter().copied().max().unwrap_or(0));
            start = end;
        }
        for &i in &self.mention_of {
            self.mention_conv.push(self.conv[i]);
            self.mention_n.push(self.n[i]);
            self.mention_cnt.push(self.cnt[i]);
        }
    }
}

/// What one attempt to append did.
#[derive(Debug)]
pub(crate) enum Attempt {
    /// The event is stored (once the transaction commits).
    Stored(Appended),
    /// Nothing was inserted: the client id was used before, or there is no
    /// such conversation. The caller rolls the attempt back and asks
    /// [`earlier`].
    Undo,
}

/// Tries to store one event and spend its quota. Runs inside a savepoint of
/// the caller, which rolls it back on an error or [`Attempt::Undo`].
pub(crate) async fn try_append(tx: &Tx<'_>, append: &Append) -> Outcome<Attempt> {
    let (Some(conversation), Some(sender)) = (key(append.conversation.0), key(append.sender.0))
    else {
        return Err(not_found("conversation"));
    };
    let (kind, content, target, mentions) = match &append.body {
        AppendBody::Message(segments) => (
            "message",
            serde_json::to_string(segments)?,
            None,
            mentioned(segments),
        ),
        AppendBody::Recall { target } => {
            let Some(target) = key(target.0) else {
                return Err(not_found("message"));
            };
            ("recall", "[]".to_owned(), Some(target), Vec::new())
        }
        AppendBody::Notice(_) => return Err(corrupt("a notice reached append")),
    };
    if let Some(peer) = append.requires_friend {
        let standing = crate::friends::direct_standing(tx, append.sender, peer).await?;
        if standing.blocked || !standing.friends {
            // A retry is answered before the guard, as everywhere.
            return match earlier(tx, append).await {
                Ok(_) => Ok(Attempt::Undo),
                Err(Failure::Domain(Error::NotFound(_))) => {
                    Err(Error::Forbidden(Denied::NotFriends).into())
                }
                Err(other) => Err(other),
            };
        }
    }
    let Some(row) = query_opt(
        tx,
        APPEND,
        &[
            &conversation,
            &sender,
            &append.client_msg_id,
            &append.time,
            &kind,
            &content,
            &target,
            &mentions,
        ],
    )
    .await?
    else {
        return Ok(Attempt::Undo);
    };
    let seq = u64_at(&row, 1)?;
    if let Some(target) = target {
        recall(tx, conversation, target, seq).await?;
    }
    if let Some(quota) = &append.quota {
        // Spent only by a first append (a retry inserted nothing above); a
        // full counter fails the attempt, which the caller rolls back with
        // its event.
        crate::groups::content::consume_daily(tx, &quota.counters, quota.day).await?;
    }
    Ok(Attempt::Stored(Appended {
        conversation: append.conversation,
        seq: Seq(seq),
        message_id: MessageId(u64_at(&row, 0)?),
        time: append.time,
        duplicate: false,
    }))
}

/// The users a message mentions, each once; everyone is user 0.
fn mentioned(segments: &[Segment]) -> Vec<i64> {
    let mut users: Vec<i64> = segments
        .iter()
        .filter_map(|segment| match segment {
            Segment::Mention { user } => key(user.0),
            Segment::MentionAll => key(MENTION_ALL.0),
            _ => None,
        })
        .collect();
    users.sort_unstable();
    users.dedup();
    users
}

/// The answer to an append that stored nothing: the first append with this
/// client id (a retry), a conflict if that was in another conversation, or
/// `NotFound` when the conversation does not exist.
pub(crate) async fn earlier<C: GenericClient>(c: &C, append: &Append) -> Outcome<Appended> {
    let Some(sender) = key(append.sender.0) else {
        return Err(not_found("conversation"));
    };
    let Some(row) = query_opt(
        c,
        "SELECT conversation, seq, id, time FROM events
         WHERE sender = $1 AND client_msg_id = $2 AND kind <> 'notice'",
        &[&sender, &append.client_msg_id],
    )
    .await?
    else {
        return Err(not_found("conversation"));
    };
    if u64_at(&row, 0)? != append.conversation.0 {
        return Err(conflict(
            "this client message id was used in another conversation",
        ));
    }
    Ok(Appended {
        conversation: append.conversation,
        seq: Seq(u64_at(&row, 1)?),
        message_id: MessageId(u64_at(&row, 2)?),
        time: row.try_get(3)?,
        duplicate: true,
    })
}

/// Marks the message at `target` recalled and clears its content; the
/// recall itself was stored at `own`.
async fn recall(tx: &Tx<'_>, conversation: i64, target: i64, own: u64) -> Outcome<()> {
    if u64::try_from(target).unwrap_or(u64::MAX) >= own {
        return Err(not_found("message"));
    }
    let changed = execute(
        tx,
        "UPDATE events SET recalled = true, content = '[]'
         WHERE conversation = $1 AND seq = $2 AND kind = 'message' AND NOT recalled",
        &[&conversation, &target],
    )
    .await?;
    if changed == 1 {
        return Ok(());
    }
    match query_opt(
        tx,
        "SELECT kind FROM events WHERE conversation = $1 AND seq = $2",
        &[&conversation, &target],
    )
    .await?
    {
        None => Err(not_found("message")),
        Some(row) if row.try_get::<_, &str>(0)? != "message" => {
            Err(conflict("only a message can be recalled"))
        }
        Some(_) => Err(conflict("the message is already recalled")),
    }
}

const EVENT_COLUMNS: &str =
    "conversation, seq, id, sender, client_msg_id, time, kind, content, target, recalled";

fn event_from_row(row: &Row) -> Outcome<StoredEvent> {
    let kind: &str = row.try_get(6)?;
    let content: &str = row.try_get(7)?;
    let body = match (kind, opt_u64_at(row, 8)?) {
        ("message", _) => EventBody::Message {
            segments: serde_json::from_str::<Vec<Segment>>(content)?,
            recalled: row.try_get(9)?,
        },
        ("recall", Some(target)) => EventBody::Recall {
            target: Seq(target),
        },
        ("notice", _) => EventBody::Notice(serde_json::from_str::<Notice>(content)?),
        (kind, _) => return Err(corrupt(&format!("event kind {kind:?}"))),
    };
    Ok(StoredEvent {
        conversation: ConversationId(u64_at(row, 0)?),
        seq: Seq(u64_at(row, 1)?),
        message_id: MessageId(u64_at(row, 2)?),
        sender: UserId(u64_at(row, 3)?),
        client_msg_id: row.try_get(4)?,
        time: row.try_get(5)?,
        body,
    })
}

/// One event by sequence number.
pub(crate) async fn event<C: GenericClient>(
    c: &C,
    conversation: ConversationId,
    seq: Seq,
) -> Outcome<Option<StoredEvent>> {
    // Past the storable range there is no event.
    let (Some(conversation), Some(seq)) = (key(conversation.0), key(seq.0)) else {
        return Ok(None);
    };
    query_opt(
        c,
        &format!("SELECT {EVENT_COLUMNS} FROM events WHERE conversation = $1 AND seq = $2"),
        &[&conversation, &seq],
    )
    .await?
    .map(|row| event_from_row(&row))
    .transpose()
}

/// A range of events, ascending.
pub(crate) async fn events<C: GenericClient>(
    c: &C,
    conversation: ConversationId,
    range: EventRange,
) -> Outcome<Vec<StoredEvent>> {
    let Some(conversation) = key(conversation.0) else {
        return Ok(Vec::new());
    };
    // Bounds beyond BIGINT mean "everything"; clamp instead of failing.
    let clamp = |seq: Seq| key(seq.0).unwrap_or(i64::MAX);
    let (sql, bound, limit, descending) = match range {
        EventRange::After(seq, limit) => (
            format!(
                "SELECT {EVENT_COLUMNS} FROM events
                 WHERE conversation = $1 AND seq > $2 ORDER BY seq LIMIT $3"
            ),
            clamp(seq),
            limit,
            false,
        ),
        EventRange::Before(seq, limit) => (
            format!(
                "SELECT {EVENT_COLUMNS} FROM events
                 WHERE conversation = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3"
            ),
            clamp(seq),
            limit,
            true,
        ),
    };
    let mut events = query(c, &sql, &[&conversation, &bound, &i64::from(limit)])
        .await?
        .iter()
        .map(event_from_row)
        .collect::<Outcome<Vec<_>>>()?;
    if descending {
        events.reverse();
    }
    Ok(events)
}

/// Unread counts only messages by others that still stand; mentions count
/// those of them that mention the user or everyone.
const STATE_SELECT: &str = "
    SELECT c.id, c.kind, c.group_id, c.last_seq, c.last_time, m.read_seq,
           CASE WHEN c.kind = 'direct' THEN
               (SELECT o.user_id FROM members o
                 WHERE o.conversation = c.id AND o.user_id <> $1
                 ORDER BY o.user_id LIMIT 1)
           END,
           (SELECT COUNT(*) FROM events e
             WHERE e.conversation = c.id AND e.seq > m.read_seq AND e.kind = 'message'
               AND NOT e.recalled AND e.sender <> $1),
           (SELECT COUNT(DISTINCT x.seq) FROM mentions x
              JOIN events e ON e.conversation = x.conversation AND e.seq = x.seq
             WHERE x.conversation = c.id AND x.user_id IN ($1, 0) AND x.seq > m.read_seq
               AND e.kind = 'message' AND NOT e.recalled AND e.sender <> $1)
    FROM members m JOIN conversations c ON c.id = m.conversation
    WHERE m.user_id = $1";

fn state_from_row(row: &Row) -> Outcome<ConversationState> {
    let kind: &str = row.try_get(1)?;
    Ok(ConversationState {
        id: ConversationId(u64_at(row, 0)?),
        kind: kind_from_columns(kind, opt_u64_at(row, 2)?)?,
        peer: opt_u64_at(row, 6)?.map(UserId),
        last_seq: Seq(u64_at(row, 3)?),
        read_seq: Seq(u64_at(row, 5)?),
        unread: u64_at(row, 7)?,
        mentions: u64_at(row, 8)?,
        last_time: row.try_get(4)?,
    })
}

/// The user's conversations, most recently active first.
pub(crate) async fn states<C: GenericClient>(
    c: &C,
    user: UserId,
) -> Outcome<Vec<ConversationState>> {
    let Some(user) = key(user.0) else {
        return Ok(Vec::new());
    };
    query(
        c,
        &format!("{STATE_SELECT} ORDER BY c.last_time DESC, c.id DESC"),
        &[&user],
    )
    .await?
    .iter()
    .map(state_from_row)
    .collect()
}

/// One conversation's state for a participant.
pub(crate) async fn state<C: GenericClient>(
    c: &C,
    user: UserId,
    conversation: ConversationId,
) -> Outcome<Option<ConversationState>> {
    let (Some(user), Some(conversation)) = (key(user.0), key(conversation.0)) else {
        return Ok(None);
    };
    query_opt(
        c,
        &format!("{STATE_SELECT} AND c.id = $2"),
        &[&user, &conversation],
    )
    .await?
    .map(|row| state_from_row(&row))
    .transpose()
}

/// Moves the read position forward, at most to the last sequence number, in
/// one statement.
pub(crate) async fn mark_read(
    tx: &Tx<'_>,
    user: UserId,
    conversation: ConversationId,
    seq: Seq,
) -> Outcome<Seq> {
    let (Some(user), Some(conversation)) = (key(user.0), key(conversation.0)) else {
        return Err(not_found("conversation"));
    };
    let seq = key(seq.0).unwrap_or(i64::MAX);
    let row = query_opt(
        tx,
        "UPDATE members
         SET read_seq = GREATEST(read_seq, LEAST($3::BIGINT, (SELECT last_seq FROM conversations
                                                              WHERE id = $1)))
         WHERE conversation = $1 AND user_id = $2
         RETURNING read_seq",
        &[&conversation, &user, &seq],
    )
    .await?
    .ok_or_else(|| not_found("conversation"))?;
    Ok(Seq(u64_at(&row, 0)?))
}
