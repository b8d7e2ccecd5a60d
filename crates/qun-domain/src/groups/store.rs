//! The groups part of the storage contract. Every adapter implements it and
//! the conformance suite checks it, like the rest of [`crate::Store`].

use async_trait::async_trait;

use super::model::*;
use crate::model::RequestStatus;
use crate::{AnnouncementId, ConversationId, GroupId, JoinRequestId, Result, Seq, UserId};

/// A daily counter to consume: `limit` per `day` under `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyCounter {
    /// Counter key, e.g. `atall:g:100001`.
    pub key: String,
    /// The most per day.
    pub limit: u32,
    /// The configured limit's name, reported in `LimitReached`.
    pub name: &'static str,
}

/// Storage of groups and their members.
#[async_trait]
pub trait GroupStore: Send + Sync + 'static {
    /// Atomically: assigns the next free group number from `first_number` up,
    /// creates the group's conversation, makes the owner its only member and
    /// appends a `Created` notice at seq 1. `LimitReached("max_groups_owned")`
    /// if the owner already owns `max_owned` groups that are not dissolved.
    async fn create_group(&self, group: NewGroup) -> Result<Group>;
    /// A group by number, dissolved or not.
    async fn group(&self, id: GroupId) -> Result<Option<Group>>;
    /// The group whose conversation this is.
    async fn group_of_conversation(&self, conversation: ConversationId) -> Result<Option<GroupId>>;
    /// Applies a change and appends `notice` by `actor` to the group's stream,
    /// in one durable transaction (see [`GroupChange`] for each change's
    /// errors). Every membership or member-entry change bumps `member_version`.
    /// `Conflict` if the group is dissolved.
    async fn change_group(
        &self,
        group: GroupId,
        actor: UserId,
        change: GroupChange,
        notice: Notice,
        time: i64,
    ) -> Result<GroupChanged>;
    /// A member entry.
    async fn member(&self, group: GroupId, user: UserId) -> Result<Option<Member>>;
    /// Members with user number > `after`, ascending, at most `limit`.
    async fn members(&self, group: GroupId, after: UserId, limit: u32) -> Result<Vec<Member>>;
    /// Every member's number (for fan-out).
    async fn member_ids(&self, group: GroupId) -> Result<Vec<UserId>>;
    /// The owner and admins.
    async fn managers(&self, group: GroupId) -> Result<Vec<UserId>>;
    /// Users whose entry changed after `since`, each once with its latest
    /// version, ascending by version.
    async fn member_changes(&self, group: GroupId, since: u64) -> Result<Vec<MemberChange>>;
    /// Groups the user is a member of (dissolved ones included).
    async fn groups_of(&self, user: UserId) -> Result<Vec<GroupId>>;
    /// Whether two users are members of a common group that is not dissolved.
    async fn share_group(&self, a: UserId, b: UserId) -> Result<bool>;
    /// Whether the user is banned from the group.
    async fn is_banned(&self, group: GroupId, user: UserId) -> Result<bool>;
    /// Lifts a ban; false if there was none.
    async fn unban(&self, group: GroupId, user: UserId) -> Result<bool>;
    /// Stores a pending request. `Conflict` if the user already has a pending
    /// request of the same kind for the group.
    async fn create_join_request(&self, request: NewJoinRequest) -> Result<JoinRequest>;
    /// A request by id.
    async fn join_request(&self, id: JoinRequestId) -> Result<Option<JoinRequest>>;
    /// A group's pending applications, oldest first.
    async fn pending_applications(&self, group: GroupId) -> Result<Vec<JoinRequest>>;
    /// A user's pending applications and invitations, oldest first.
    async fn user_join_requests(&self, user: UserId) -> Result<Vec<JoinRequest>>;
    /// Closes a pending request (`Conflict` if it is not pending) without
    /// adding a member: refusals, and invitations turned into applications.
    async fn close_join_request(
        &self,
        id: JoinRequestId,
        status: RequestStatus,
        reviewer: Option<UserId>,
        reason: Option<String>,
    ) -> Result<JoinRequest>;
    /// Stores an invite link.
    async fn create_invite_link(&self, link: InviteLink) -> Result<()>;
    /// An invite link by code.
    async fn invite_link(&self, code: &str) -> Result<Option<InviteLink>>;
    /// A group's announcements, pinned first, then newest first.
    async fn announcements(&self, group: GroupId) -> Result<Vec<Announcement>>;
    /// One announcement.
    async fn announcement(&self, id: AnnouncementId) -> Result<Option<Announcement>>;
    /// Records that a member confirmed an announcement; idempotent.
    async fn confirm_announcement(&self, id: AnnouncementId, user: UserId, at: i64) -> Result<()>;
    /// Who confirmed, with when.
    async fn confirmations(&self, id: AnnouncementId) -> Result<Vec<(UserId, i64)>>;
    /// A group's essence messages, newest first.
    async fn essences(&self, group: GroupId) -> Result<Vec<Essence>>;
    /// Atomically counts one use of every counter for `day`, or none of them
    /// (`LimitReached` with the first full counter's name). Returns the counts.
    async fn consume_daily(&self, counters: &[DailyCounter], day: i64) -> Result<Vec<u32>>;
    /// A counter's value for `day`.
    async fn daily_count(&self, key: &str, day: i64) -> Result<u32>;
    /// Groups matching a search, not dissolved. Unlisted groups match only by
    /// exact number.
    async fn search_groups(&self, search: GroupSearch) -> Result<Vec<Group>>;
    /// Participants whose read position is at least `seq` and who were
    /// participants when it was sent (in a group: joined at or before it), and
    /// how many.
    /// With `list: false` the vector is empty and only the count is computed.
    async fn readers(
        &self,
        conversation: ConversationId,
        seq: Seq,
        list: bool,
    ) -> Result<(u64, Vec<UserId>)>;
    /// Who sent most messages in a time range, with counts, most first.
    async fn top_senders(
        &self,
        conversation: ConversationId,
        from_ms: i64,
        to_ms: i64,
        limit: u32,
    ) -> Result<Vec<(UserId, u64)>>;
}
