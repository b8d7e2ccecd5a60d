//! Group DTOs: groups, members, join requests, invitations, announcements and
//! the notices a group's stream carries.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{ConversationId, Seq, UserId};

crate::id_type!(
    /// A group number.
    GroupId
);
crate::id_type!(
    /// A join request or invitation.
    JoinRequestId
);
crate::id_type!(
    /// An announcement.
    AnnouncementId
);

/// A member's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The one owner.
    Owner,
    /// An admin.
    Admin,
    /// A member.
    Member,
}

/// How people join.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum JoinMode {
    /// Anyone joins at once.
    Open,
    /// Request with a message, then approval.
    Approval,
    /// Answer a question, then approval.
    Question {
        /// The question.
        question: String,
    },
    /// Answer a question correctly to join at once.
    QuestionAuto {
        /// The question.
        question: String,
        /// The expected answer (shown to owner and admins only).
        #[serde(default)]
        answer: String,
    },
    /// By invitation only.
    InviteOnly,
    /// No new members.
    Closed,
}

/// What newcomers can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HistoryVisibility {
    /// From their join on.
    FromJoin,
    /// Everything.
    Full,
}

/// A group's profile and settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GroupView {
    /// Group number.
    pub group_id: GroupId,
    /// Its conversation.
    pub conversation: ConversationId,
    /// Name.
    pub name: String,
    /// Introduction.
    pub intro: String,
    /// Avatar reference.
    pub avatar: Option<String>,
    /// Category.
    pub category: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Found by keyword and category search.
    pub listed: bool,
    /// Tier index.
    pub tier: u32,
    /// Tier name.
    pub tier_name: String,
    /// Member cap of the tier.
    pub max_members: u32,
    /// Owner.
    pub owner: UserId,
    /// Join mode (a `question_auto` answer is blanked for non-managers).
    pub join_mode: JoinMode,
    /// Plain members may invite.
    pub members_may_invite: bool,
    /// History visibility for newcomers.
    pub history: HistoryVisibility,
    /// The whole group is muted.
    pub muted: bool,
    /// Members.
    pub member_count: u32,
    /// Member-list version (for incremental sync).
    pub member_version: u64,
    /// Creation, ms.
    pub created_at: i64,
    /// Dissolution, ms.
    pub dissolved_at: Option<i64>,
}

/// `POST /api/v1/groups`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreateGroupRequest {
    /// Name.
    pub name: String,
    /// Introduction.
    #[serde(default)]
    pub intro: String,
    /// Category.
    #[serde(default)]
    pub category: String,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Listed in search (default true).
    #[serde(default = "yes")]
    pub listed: bool,
    /// Join mode (default approval).
    #[serde(default = "approval")]
    pub join_mode: JoinMode,
}

fn yes() -> bool {
    true
}

fn approval() -> JoinMode {
    JoinMode::Approval
}

/// `PATCH /api/v1/groups/{id}`: absent fields stay unchanged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GroupSettingsPatch {
    /// Name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Introduction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intro: Option<String>,
    /// Avatar; an empty string clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar: Option<String>,
    /// Category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// Listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listed: Option<bool>,
    /// Join mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_mode: Option<JoinMode>,
    /// Members may invite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members_may_invite: Option<bool>,
    /// History visibility.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<HistoryVisibility>,
}

/// A member entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MemberView {
    /// User.
    pub user_id: UserId,
    /// Role.
    pub role: Role,
    /// Group card.
    pub card: Option<String>,
    /// Special title (absent once expired).
    pub title: Option<String>,
    /// Title expiry, ms.
    pub title_expires_at: Option<i64>,
    /// Activity level, from 1.
    pub level: u32,
    /// Join time, ms.
    pub joined_at: i64,
    /// Last spoke, ms.
    pub last_spoke_at: Option<i64>,
    /// Muted until, ms (absent when not muted).
    pub muted_until: Option<i64>,
    /// Who invited them.
    pub inviter: Option<UserId>,
    /// Who approved them.
    pub approver: Option<UserId>,
}

/// A page of members.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MemberPage {
    /// Members ascending by number.
    pub members: Vec<MemberView>,
    /// The member-list version this page was read at.
    pub version: u64,
}

/// Member-list changes since a version.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MemberDeltaView {
    /// The version now reached.
    pub version: u64,
    /// Joined or changed entries.
    pub changed: Vec<MemberView>,
    /// Users no longer members.
    pub removed: Vec<UserId>,
}

/// Kind of join request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JoinKind {
    /// Asked by the applicant.
    Application,
    /// An invitation to the user.
    Invitation,
}

/// A join request or invitation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JoinRequestView {
    /// Id.
    pub id: JoinRequestId,
    /// Group.
    pub group_id: GroupId,
    /// Would-be member.
    pub user_id: UserId,
    /// Kind.
    pub kind: JoinKind,
    /// Message.
    pub message: String,
    /// Answer to the question.
    pub answer: Option<String>,
    /// Inviter.
    pub inviter: Option<UserId>,
    /// `pending`, `accepted` or `refused`.
    pub status: crate::FriendRequestStatus,
    /// Who decided.
    pub reviewer: Option<UserId>,
    /// Why refused.
    pub reason: Option<String>,
    /// Time, ms.
    pub created_at: i64,
}

/// `POST /api/v1/groups/{id}/join`
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct JoinGroupRequest {
    /// Message to the reviewers.
    #[serde(default)]
    pub message: String,
    /// Answer to the group's question.
    #[serde(default)]
    pub answer: Option<String>,
}

/// The outcome of asking to join.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JoinResult {
    /// True: now a member (`member` set); false: waiting (`request` set).
    pub joined: bool,
    /// The new member entry.
    pub member: Option<MemberView>,
    /// The pending (or refused) request.
    pub request: Option<JoinRequestView>,
}

/// `POST /api/v1/join-requests/{id}/review`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReviewRequest {
    /// Approve (true) or refuse.
    pub approve: bool,
    /// Reason shown to the applicant when refused.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `POST /api/v1/join-requests/{id}/answer`: the invitee's decision.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AnswerInvitation {
    /// Accept (true) or refuse.
    pub accept: bool,
}

/// `POST /api/v1/groups/{id}/invitations`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InviteRequest {
    /// Whom to invite.
    pub user_id: UserId,
}

/// `POST /api/v1/groups/{id}/invite-links`
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct CreateInviteLink {
    /// Lifetime in seconds (default and maximum: the configured maximum).
    #[serde(default)]
    pub expires_in_secs: Option<u64>,
    /// Most uses (default unlimited).
    #[serde(default)]
    pub max_uses: Option<u32>,
}

/// An invite link.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InviteLinkView {
    /// The code to join with.
    pub code: String,
    /// Group.
    pub group_id: GroupId,
    /// Creator (recorded as inviter).
    pub creator: UserId,
    /// Expiry, ms.
    pub expires_at: Option<i64>,
    /// Most uses.
    pub max_uses: Option<u32>,
    /// Uses so far.
    pub uses: u32,
}

/// `POST /api/v1/groups/{id}/members/{user}/kick`
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct KickRequest {
    /// Also forbid asking to join again.
    #[serde(default)]
    pub ban: bool,
}

/// `PUT /api/v1/groups/{id}/members/{user}/mute`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MuteRequest {
    /// Seconds (0 unmutes; at most the configured maximum, 30 days).
    pub secs: u64,
}

/// `PUT /api/v1/groups/{id}/mute`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MuteAllRequest {
    /// Mute (true) or unmute everyone but owner and admins.
    pub muted: bool,
}

/// `PUT /api/v1/groups/{id}/members/{user}/role`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RoleRequest {
    /// `admin` or `member`.
    pub role: Role,
}

/// `PUT /api/v1/groups/{id}/members/{user}/title`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TitleRequest {
    /// The title; absent or empty clears it.
    #[serde(default)]
    pub title: Option<String>,
    /// Lifetime in seconds; absent: permanent.
    #[serde(default)]
    pub expires_in_secs: Option<u64>,
}

/// `PUT /api/v1/groups/{id}/members/{user}/card`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CardRequest {
    /// The card; absent or empty clears it.
    #[serde(default)]
    pub card: Option<String>,
}

/// `POST /api/v1/groups/{id}/transfer`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TransferRequest {
    /// The new owner.
    pub user_id: UserId,
}

/// `PUT /api/v1/groups/{id}/tier`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TierRequest {
    /// Tier index in the configured ladder.
    pub tier: u32,
}

/// Announcement content.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AnnouncementDraft {
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
    /// Pinned.
    #[serde(default)]
    pub pinned: bool,
    /// Ask every member to confirm.
    #[serde(default)]
    pub require_confirm: bool,
    /// Shown to newcomers.
    #[serde(default)]
    pub entrance: bool,
}

/// An announcement.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AnnouncementView {
    /// Id.
    pub id: AnnouncementId,
    /// Group.
    pub group_id: GroupId,
    /// Author.
    pub author: UserId,
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
    /// Pinned.
    pub pinned: bool,
    /// Requires confirmation.
    pub require_confirm: bool,
    /// Entrance notice.
    pub entrance: bool,
    /// Time, ms.
    pub created_at: i64,
    /// Last edit, ms.
    pub edited_at: Option<i64>,
}

/// Who confirmed an announcement.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Confirmation {
    /// Member.
    pub user_id: UserId,
    /// When, ms.
    pub at: i64,
}

/// An essence message.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EssenceView {
    /// The message.
    pub seq: Seq,
    /// Marked by.
    pub by: UserId,
    /// When, ms.
    pub at: i64,
}

/// Read receipts of a message.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReceiptsView {
    /// Members who have read it.
    pub count: u64,
    /// Who, when the group is small enough (absent above the threshold).
    pub readers: Option<Vec<UserId>>,
}

/// One line of the daily honours.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Honour {
    /// Member.
    pub user_id: UserId,
    /// Messages today.
    pub messages: u64,
}

/// Remaining @all quota today.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AtAllQuotaView {
    /// For the group.
    pub group_remaining: u32,
    /// For the caller.
    pub mine_remaining: u32,
}

/// `POST /api/v1/temp-sessions`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TempSessionRequest {
    /// The member of a shared group to talk to.
    pub user_id: UserId,
}

/// A change recorded in a group's stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "notice", rename_all = "snake_case")]
pub enum GroupNotice {
    /// Created.
    Created {
        /// Owner.
        owner: UserId,
    },
    /// Joined.
    Joined {
        /// Who.
        user: UserId,
        /// Inviter.
        inviter: Option<UserId>,
        /// Approver.
        approver: Option<UserId>,
    },
    /// Left.
    Left {
        /// Who.
        user: UserId,
    },
    /// Kicked.
    Kicked {
        /// Who.
        user: UserId,
        /// By.
        by: UserId,
        /// Banned from asking again.
        banned: bool,
    },
    /// Role changed.
    RoleChanged {
        /// Whose.
        user: UserId,
        /// New role.
        role: Role,
        /// By.
        by: UserId,
    },
    /// Ownership transferred.
    OwnerTransferred {
        /// Old owner.
        from: UserId,
        /// New owner.
        to: UserId,
    },
    /// Muted (until absent: unmuted).
    Muted {
        /// Who.
        user: UserId,
        /// Until, ms.
        until: Option<i64>,
        /// By.
        by: UserId,
    },
    /// Whole group muted or unmuted.
    GroupMuted {
        /// Muted.
        muted: bool,
        /// By.
        by: UserId,
    },
    /// Title set or cleared.
    TitleSet {
        /// Whose.
        user: UserId,
        /// Title.
        title: Option<String>,
        /// Expiry, ms.
        expires_at: Option<i64>,
    },
    /// Card set or cleared.
    CardSet {
        /// Whose.
        user: UserId,
        /// Card.
        card: Option<String>,
        /// By.
        by: UserId,
    },
    /// Settings changed.
    SettingsChanged {
        /// By.
        by: UserId,
        /// The new values of what changed.
        settings: GroupSettingsPatch,
    },
    /// Tier changed.
    TierChanged {
        /// New tier.
        tier: u32,
        /// By (0: a server administrator).
        by: UserId,
    },
    /// Announcement created, edited or deleted.
    Announcement {
        /// Which.
        id: AnnouncementId,
        /// `created`, `edited` or `deleted`.
        action: String,
        /// By.
        by: UserId,
    },
    /// Essence set or unset.
    Essence {
        /// The message.
        seq: Seq,
        /// Set or unset.
        set: bool,
        /// By.
        by: UserId,
    },
    /// Dissolved.
    Dissolved {
        /// By.
        by: UserId,
    },
}

/// A notice event of a group's stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NoticeView {
    /// Conversation.
    pub conversation: ConversationId,
    /// Sequence number.
    pub seq: Seq,
    /// Event id.
    pub message_id: crate::MessageId,
    /// Who caused it.
    pub by: UserId,
    /// Time, ms.
    pub time: i64,
    /// What happened.
    pub notice: GroupNotice,
}
