//! The storage trait. Each backend is an adapter implementing [`Store`] and must
//! pass the conformance suite (`conformance` feature). Methods that change
//! several rows do so in one transaction; "atomically" below is a contract.

use async_trait::async_trait;

pub use crate::groups::store::{DailyCounter, GroupStore};
use crate::model::*;
use crate::{CategoryId, ConversationId, FriendRequestId, Result, Seq, SessionId, UserId};

/// The system of record. Errors: `NotFound`, `Conflict`, `LimitReached` as
/// documented per method; `Unavailable` when the backend cannot serve (nothing
/// applied); `Internal` otherwise. Ids above `i64::MAX` name nothing stored:
/// lookups find nothing or answer `NotFound`.
/// Groups' storage is the supertrait [`GroupStore`].
#[async_trait]
pub trait Store: GroupStore {
    // --- accounts -------------------------------------------------------
    /// Creates a user with the chosen number (`Conflict` if taken) or the next
    /// free number counting upward from `first_number`, never reusing one.
    async fn create_user(&self, user: NewUser) -> Result<UserId>;
    /// A user by number.
    async fn user(&self, id: UserId) -> Result<Option<User>>;
    /// Users with number > `after`, ascending, at most `limit`.
    async fn users(&self, after: UserId, limit: u32) -> Result<Vec<User>>;
    /// Changes profile fields. `NotFound` if no such user.
    async fn update_profile(&self, id: UserId, update: ProfileUpdate) -> Result<()>;
    /// Replaces the password hash. `NotFound` if no such user.
    async fn set_password_hash(&self, id: UserId, hash: &str) -> Result<()>;
    /// Disables or enables an account. `NotFound` if no such user.
    async fn set_disabled(&self, id: UserId, disabled: bool) -> Result<()>;

    // --- sessions -------------------------------------------------------
    /// Stores a new session.
    async fn create_session(&self, session: Session) -> Result<()>;
    /// The session whose token hashes to `token_hash`, revoked or not.
    async fn session_by_token(&self, token_hash: &str) -> Result<Option<Session>>;
    /// A session by id, revoked or not.
    async fn session(&self, id: &SessionId) -> Result<Option<Session>>;
    /// A user's sessions that are not revoked (expired ones included).
    async fn sessions(&self, user: UserId) -> Result<Vec<Session>>;
    /// Revokes the user's sessions, all or one, except `keep`; returns the ids
    /// actually revoked now (already revoked ones are not repeated).
    async fn revoke_sessions(
        &self,
        user: UserId,
        only: Option<&SessionId>,
        keep: Option<&SessionId>,
        at: i64,
    ) -> Result<Vec<SessionId>>;

    // --- friends --------------------------------------------------------
    /// Stores a pending request. `Conflict` if a pending request from `from`
    /// to `to` exists already.
    async fn create_friend_request(
        &self,
        from: UserId,
        to: UserId,
        message: &str,
        at: i64,
    ) -> Result<FriendRequest>;
    /// A request by id.
    async fn friend_request(&self, id: FriendRequestId) -> Result<Option<FriendRequest>>;
    /// Pending requests from or to the user, oldest first.
    async fn pending_friend_requests(&self, user: UserId) -> Result<Vec<FriendRequest>>;
    /// Atomically: the pending request becomes accepted (`Conflict` if it is
    /// not pending), any pending request in the other direction too, both
    /// friend entries are created (the recipient's with `remark`/`category`,
    /// `NotFound` if that category does not exist), and the pair's direct
    /// conversation is found or created. Returns the conversation.
    async fn accept_friend_request(
        &self,
        id: FriendRequestId,
        remark: Option<String>,
        category: CategoryId,
        at: i64,
    ) -> Result<ConversationId>;
    /// A pending request becomes refused (`Conflict` if it is not pending).
    async fn refuse_friend_request(&self, id: FriendRequestId) -> Result<FriendRequest>;
    /// The user's friends.
    async fn friends(&self, user: UserId) -> Result<Vec<Friend>>;
    /// One entry of the user's friend list.
    async fn friend(&self, user: UserId, other: UserId) -> Result<Option<Friend>>;
    /// Changes the user's entry for `other` (`NotFound` if not friends or if
    /// the category does not exist).
    async fn update_friend(&self, user: UserId, other: UserId, update: FriendUpdate) -> Result<()>;
    /// Ends a friendship in both directions; false if they were not friends.
    /// The direct conversation and its history remain.
    async fn remove_friend(&self, a: UserId, b: UserId) -> Result<bool>;
    /// The user's own categories (the default one is implicit, not listed).
    async fn categories(&self, user: UserId) -> Result<Vec<Category>>;
    /// Creates a category; `LimitReached` past `max`.
    async fn create_category(&self, user: UserId, name: &str, max: usize) -> Result<Category>;
    /// Renames one; `NotFound` if absent.
    async fn rename_category(&self, user: UserId, id: CategoryId, name: &str) -> Result<()>;
    /// Deletes one, moving its friends to the default; `NotFound` if absent.
    async fn delete_category(&self, user: UserId, id: CategoryId) -> Result<()>;
    /// Blacklists `other`; idempotent.
    async fn block(&self, user: UserId, other: UserId, at: i64) -> Result<()>;
    /// Removes `other` from the blacklist; false if absent.
    async fn unblock(&self, user: UserId, other: UserId) -> Result<bool>;
    /// The user's blacklist with the time of each entry.
    async fn blocked(&self, user: UserId) -> Result<Vec<(UserId, i64)>>;
    /// Whether either user has blacklisted the other.
    async fn is_blocked_either(&self, a: UserId, b: UserId) -> Result<bool>;
    /// Whether either has blacklisted the other and whether `user` has
    /// `other` as a friend: what a direct send checks, in one read where the
    /// adapter can.
    async fn direct_standing(&self, user: UserId, other: UserId) -> Result<DirectStanding>;
    /// Atomically counts a like from `from` to `to` on `day` and adds it to
    /// `to`'s total; `LimitReached` (nothing counted) when `limit` were given
    /// that day already. Returns the day's count including this one.
    async fn add_like(&self, from: UserId, to: UserId, day: i64, limit: u32) -> Result<u32>;

    // --- conversations --------------------------------------------------
    /// The direct conversation of two users, if it exists.
    async fn direct_conversation(&self, a: UserId, b: UserId) -> Result<Option<ConversationId>>;
    /// The direct conversation of two users, created if missing (temporary
    /// sessions between members of a shared group).
    async fn ensure_direct_conversation(
        &self,
        a: UserId,
        b: UserId,
        at: i64,
    ) -> Result<ConversationId>;
    /// A conversation with its members (for groups: the kind, no members).
    async fn conversation(&self, id: ConversationId) -> Result<Option<Conversation>>;
    /// Appends an event in one durable transaction: the next sequence number of
    /// the conversation (gap-free, never reused) is assigned in the same
    /// transaction that stores the event. If the sender used `client_msg_id`
    /// before in the same conversation, stores nothing and returns the first
    /// append's result with `duplicate: true` (`Conflict` if it was used in
    /// another conversation). A recall marks its target recalled and clears its
    /// content, in the same transaction (`Conflict` if the target is not a
    /// message or is already recalled, `NotFound` if absent). A message's
    /// mentions (`Mention`, and `MentionAll` as user 0) are indexed for the
    /// mention counts; in a group, the sender's message count and last-spoke
    /// time are updated in the same transaction (one row, whatever the member
    /// count). The append's `quota` counters are consumed in the same transaction, only
    /// when it is not a retry (`LimitReached` stores nothing). `Notice` bodies
    /// are refused (`Invalid`): they come from
    /// `GroupStore::change_group`. Returns only once the write is durable.
    async fn append(&self, append: Append) -> Result<Appended>;
    /// One event.
    async fn event(&self, conversation: ConversationId, seq: Seq) -> Result<Option<StoredEvent>>;
    /// A range of events, ascending.
    async fn events(
        &self,
        conversation: ConversationId,
        range: EventRange,
    ) -> Result<Vec<StoredEvent>>;
    /// The user's conversations (direct, and groups they are a member of) with
    /// last sequence, read position, unread and mention counts, most recently
    /// active first. A new group member's read position starts at their join
    /// notice.
    async fn conversation_states(&self, user: UserId) -> Result<Vec<ConversationState>>;
    /// One conversation's state for a participant.
    async fn conversation_state(
        &self,
        user: UserId,
        conversation: ConversationId,
    ) -> Result<Option<ConversationState>>;
    /// Moves the read position forward to `seq` (never backward, never past the
    /// last sequence); returns the resulting position.
    async fn mark_read(&self, user: UserId, conversation: ConversationId, seq: Seq) -> Result<Seq>;
}
