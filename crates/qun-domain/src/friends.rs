//! Friends: requests, acceptance, remarks, categories, the blacklist, likes,
//! and presence as friends see it.

use crate::bus::{LiveEvent, Notification};
use crate::model::{Category, FriendEntry, FriendRequest, FriendUpdate, RequestStatus};
use crate::service::check;
use crate::{
    Caller, CategoryId, Denied, Error, FriendRequestId, PresenceState, Qun, Result, UserId,
    DEFAULT_CATEGORY,
};

impl Qun {
    /// Sends a friend request with a greeting.
    pub async fn request_friend(
        &self,
        caller: &Caller,
        to: UserId,
        message: &str,
    ) -> Result<FriendRequest> {
        let c = &self.config;
        check::text(
            "message",
            message,
            c.max_request_message_chars,
            "max_request_message_chars",
            false,
        )?;
        if to == caller.user {
            return Err(Error::Forbidden(Denied::SelfTarget));
        }
        match self.store.user(to).await? {
            Some(u) if !u.disabled => {}
            _ => return Err(Error::NotFound("user")),
        }
        if self.store.is_blocked_either(caller.user, to).await? {
            return Err(Error::Forbidden(Denied::Blocked));
        }
        if self.store.friend(caller.user, to).await?.is_some() {
            return Err(Error::Conflict("you are already friends".into()));
        }
        let request = self
            .store
            .create_friend_request(caller.user, to, message, self.clock.now_ms())
            .await?;
        self.deliver(
            vec![to, caller.user],
            LiveEvent::FriendRequest(request.clone()),
        )
        .await;
        Ok(request)
    }

    /// Pending requests: (incoming, outgoing).
    pub async fn friend_requests(
        &self,
        caller: &Caller,
    ) -> Result<(Vec<FriendRequest>, Vec<FriendRequest>)> {
        let all = self.store.pending_friend_requests(caller.user).await?;
        Ok(all.into_iter().partition(|r| r.to == caller.user))
    }

    /// A pending request addressed to the caller.
    async fn request_to_me(&self, caller: &Caller, id: FriendRequestId) -> Result<FriendRequest> {
        let request = self.store.friend_request(id).await?;
        match request {
            Some(r) if r.to == caller.user => {
                if r.status != RequestStatus::Pending {
                    return Err(Error::Conflict("the request was already answered".into()));
                }
                Ok(r)
            }
            Some(r) if r.from == caller.user => Err(Error::Forbidden(Denied::NotRecipient)),
            _ => Err(Error::NotFound("friend request")),
        }
    }

    /// Accepts a request; returns the new friend as the caller sees them.
    pub async fn accept_friend(
        &self,
        caller: &Caller,
        id: FriendRequestId,
        remark: Option<String>,
        category: Option<CategoryId>,
    ) -> Result<FriendEntry> {
        let remark = self.clean_remark(remark)?;
        let request = self.request_to_me(caller, id).await?;
        if self
            .store
            .is_blocked_either(caller.user, request.from)
            .await?
        {
            return Err(Error::Forbidden(Denied::Blocked));
        }
        let category = category.unwrap_or(DEFAULT_CATEGORY);
        self.store
            .accept_friend_request(id, remark, category, self.clock.now_ms())
            .await?;
        let mine = self.friend_entry(caller.user, request.from).await?;
        let theirs = self.friend_entry(request.from, caller.user).await?;
        self.deliver(vec![request.from], LiveEvent::FriendAdded(theirs))
            .await;
        self.deliver(vec![caller.user], LiveEvent::FriendAdded(mine.clone()))
            .await;
        Ok(mine)
    }

    /// Refuses a request.
    pub async fn refuse_friend(
        &self,
        caller: &Caller,
        id: FriendRequestId,
    ) -> Result<FriendRequest> {
        self.request_to_me(caller, id).await?;
        let request = self.store.refuse_friend_request(id).await?;
        self.deliver(
            vec![request.from, request.to],
            LiveEvent::FriendRequestRefused(request.clone()),
        )
        .await;
        Ok(request)
    }

    /// The caller's friends with nicknames and presence.
    pub async fn friends(&self, caller: &Caller) -> Result<Vec<FriendEntry>> {
        let friends = self.store.friends(caller.user).await?;
        let mut entries = Vec::with_capacity(friends.len());
        for friend in friends {
            let nickname = self
                .store
                .user(friend.user)
                .await?
                .map(|u| u.nickname)
                .unwrap_or_default();
            let presence = self.presence.visible(friend.user);
            entries.push(FriendEntry {
                friend,
                nickname,
                presence,
            });
        }
        Ok(entries)
    }

    /// `owner`'s entry for `other`.
    pub(crate) async fn friend_entry(&self, owner: UserId, other: UserId) -> Result<FriendEntry> {
        let friend = self
            .store
            .friend(owner, other)
            .await?
            .ok_or(Error::Forbidden(Denied::NotFriends))?;
        let nickname = self
            .store
            .user(other)
            .await?
            .map(|u| u.nickname)
            .unwrap_or_default();
        Ok(FriendEntry {
            friend,
            nickname,
            presence: self.presence.visible(other),
        })
    }

    /// Changes the caller's remark or category for a friend.
    pub async fn update_friend(
        &self,
        caller: &Caller,
        other: UserId,
        remark: Option<String>,
        category: Option<CategoryId>,
    ) -> Result<FriendEntry> {
        let remark = match remark {
            Some(r) => Some(self.clean_remark(Some(r))?),
            None => None,
        };
        self.friend_entry(caller.user, other).await?;
        self.store
            .update_friend(caller.user, other, FriendUpdate { remark, category })
            .await?;
        self.friend_entry(caller.user, other).await
    }

    /// Ends a friendship (both sides); the conversation's history remains.
    pub async fn remove_friend(&self, caller: &Caller, other: UserId) -> Result<()> {
        if !self.store.remove_friend(caller.user, other).await? {
            return Err(Error::Forbidden(Denied::NotFriends));
        }
        self.deliver(vec![caller.user], LiveEvent::FriendRemoved { user: other })
            .await;
        self.deliver(vec![other], LiveEvent::FriendRemoved { user: caller.user })
            .await;
        Ok(())
    }

    /// The caller's categories, the default first.
    pub async fn categories(&self, caller: &Caller) -> Result<Vec<Category>> {
        let mut all = vec![Category {
            id: DEFAULT_CATEGORY,
            name: "My friends".into(),
        }];
        all.extend(self.store.categories(caller.user).await?);
        Ok(all)
    }

    /// Creates a category.
    pub async fn create_category(&self, caller: &Caller, name: &str) -> Result<Category> {
        self.check_category_name(name)?;
        self.store
            .create_category(caller.user, name.trim(), self.config.max_categories)
            .await
    }

    /// Renames a category (not the default).
    pub async fn rename_category(
        &self,
        caller: &Caller,
        id: CategoryId,
        name: &str,
    ) -> Result<Category> {
        self.check_category_name(name)?;
        if id == DEFAULT_CATEGORY {
            return Err(Error::invalid(
                "id",
                "the default category cannot be renamed",
            ));
        }
        self.store
            .rename_category(caller.user, id, name.trim())
            .await?;
        Ok(Category {
            id,
            name: name.trim().to_string(),
        })
    }

    /// Deletes a category; its friends move to the default.
    pub async fn delete_category(&self, caller: &Caller, id: CategoryId) -> Result<()> {
        if id == DEFAULT_CATEGORY {
            return Err(Error::invalid(
                "id",
                "the default category cannot be deleted",
            ));
        }
        self.store.delete_category(caller.user, id).await
    }

    /// Blacklists a user. As in QQ, this also ends a friendship with them.
    pub async fn block(&self, caller: &Caller, other: UserId) -> Result<()> {
        if other == caller.user {
            return Err(Error::Forbidden(Denied::SelfTarget));
        }
        self.profile(other).await?;
        self.store
            .block(caller.user, other, self.clock.now_ms())
            .await?;
        if self.store.remove_friend(caller.user, other).await? {
            self.deliver(vec![caller.user], LiveEvent::FriendRemoved { user: other })
                .await;
            self.deliver(vec![other], LiveEvent::FriendRemoved { user: caller.user })
                .await;
        }
        Ok(())
    }

    /// Removes a user from the blacklist.
    pub async fn unblock(&self, caller: &Caller, other: UserId) -> Result<()> {
        if !self.store.unblock(caller.user, other).await? {
            return Err(Error::NotFound("blacklist entry"));
        }
        Ok(())
    }

    /// The caller's blacklist.
    pub async fn blacklist(&self, caller: &Caller) -> Result<Vec<(UserId, i64)>> {
        self.store.blocked(caller.user).await
    }

    /// Likes a friend's profile: (likes given today, remaining today).
    pub async fn like(&self, caller: &Caller, friend: UserId) -> Result<(u32, u32)> {
        if friend == caller.user {
            return Err(Error::Forbidden(Denied::SelfTarget));
        }
        self.friend_entry(caller.user, friend).await?;
        let limit = self.config.likes_per_friend_per_day;
        let day = self.clock.now_ms().div_euclid(86_400_000);
        let today = self.store.add_like(caller.user, friend, day, limit).await?;
        Ok((today, limit.saturating_sub(today)))
    }

    /// A user's presence as others see it.
    pub fn visible_presence(&self, user: UserId) -> PresenceState {
        self.presence.visible(user)
    }

    /// Registers a new authenticated connection as online; returns its id.
    pub async fn connected(&self, caller: &Caller) -> u64 {
        let conn = self.next_conn_id();
        self.presence_changed(caller.user, conn, Some(PresenceState::Online))
            .await;
        conn
    }

    /// Sets one connection's presence; returns the visible state.
    pub async fn set_presence(
        &self,
        caller: &Caller,
        conn: u64,
        state: PresenceState,
    ) -> Result<PresenceState> {
        if state == PresenceState::Offline {
            return Err(Error::invalid(
                "state",
                "choose invisible to appear offline",
            ));
        }
        self.presence_changed(caller.user, conn, Some(state)).await;
        Ok(self.presence.visible(caller.user))
    }

    /// Forgets a closed connection.
    pub async fn disconnected(&self, user: UserId, conn: u64) {
        self.presence_changed(user, conn, None).await;
    }

    async fn presence_changed(&self, user: UserId, conn: u64, state: Option<PresenceState>) {
        let change = self.presence.set(user, conn, state);
        if let Some(local) = change.local {
            let n = Notification::Presence {
                node: self.node.clone(),
                user,
                state: local,
            };
            self.bus.publish(n).await;
        }
        if change.before != change.after {
            self.announce_presence(user, change.after).await;
        }
    }

    /// Tells the user's friends their visible presence.
    pub(crate) async fn announce_presence(&self, user: UserId, state: PresenceState) {
        match self.store.friends(user).await {
            Ok(friends) => {
                let users = friends.into_iter().map(|f| f.user).collect();
                self.deliver(users, LiveEvent::Presence { user, state })
                    .await;
            }
            Err(e) => tracing::warn!(%user, error = %e, "presence change not announced"),
        }
    }

    fn clean_remark(&self, remark: Option<String>) -> Result<Option<String>> {
        let Some(r) = remark else { return Ok(None) };
        check::text(
            "remark",
            &r,
            self.config.max_remark_chars,
            "max_remark_chars",
            false,
        )?;
        let r = r.trim().to_string();
        Ok(if r.is_empty() { None } else { Some(r) })
    }

    fn check_category_name(&self, name: &str) -> Result<()> {
        check::text(
            "name",
            name,
            self.config.max_remark_chars,
            "max_remark_chars",
            true,
        )
    }
}
