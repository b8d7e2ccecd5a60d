//! Group records: groups, members, join requests, invitations, announcements,
//! and the notices that record every change in the group's stream.

use serde::{Deserialize, Serialize};

use crate::model::RequestStatus;
use crate::{AnnouncementId, ConversationId, GroupId, JoinRequestId, Seq, UserId};

/// A member's role. Exactly one owner per group at all times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Owns the group: dissolves, transfers, appoints admins, sets titles.
    Owner,
    /// Moderates members.
    Admin,
    /// Takes part.
    Member,
}

impl Role {
    /// Stable name used in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    /// Parses [`Role::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "owner" => Some(Role::Owner),
            "admin" => Some(Role::Admin),
            "member" => Some(Role::Member),
            _ => None,
        }
    }
}

/// How people join a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum JoinMode {
    /// Anyone may join at once.
    Open,
    /// A request with a message, approved by the owner or an admin.
    Approval,
    /// Answer a question, then approval.
    Question {
        /// The question shown to applicants.
        question: String,
    },
    /// Answer a question correctly (checked automatically, case-insensitive).
    QuestionAuto {
        /// The question.
        question: String,
        /// The expected answer.
        answer: String,
    },
    /// Only by invitation.
    InviteOnly,
    /// Nobody new may join.
    Closed,
}

/// What a newcomer can read of earlier history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HistoryVisibility {
    /// Only what was sent from their join on (the default).
    FromJoin,
    /// All of the group's history.
    Full,
}

/// A group.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// Group number.
    pub id: GroupId,
    /// Its conversation (the stream of messages and notices).
    pub conversation: ConversationId,
    /// Name.
    pub name: String,
    /// Introduction.
    pub intro: String,
    /// Avatar reference.
    pub avatar: Option<String>,
    /// Category for discovery.
    pub category: String,
    /// Tags for discovery.
    pub tags: Vec<String>,
    /// Whether search by keyword or category finds it.
    pub listed: bool,
    /// Index into the configured tier ladder.
    pub tier: u32,
    /// The owner.
    pub owner: UserId,
    /// How people join.
    pub join_mode: JoinMode,
    /// Whether plain members may invite.
    pub members_may_invite: bool,
    /// What newcomers can read.
    pub history: HistoryVisibility,
    /// Whether the whole group is muted (owner and admins exempt).
    pub muted: bool,
    /// Current number of members.
    pub member_count: u32,
    /// Bumped by every membership change, for incremental member-list sync.
    pub member_version: u64,
    /// Creation time, ms.
    pub created_at: i64,
    /// Dissolution time, ms; a dissolved group is read-only.
    pub dissolved_at: Option<i64>,
}

/// A group to create; its creator becomes the owner and first member.
#[derive(Debug, Clone)]
pub struct NewGroup {
    /// Owner.
    pub owner: UserId,
    /// Name.
    pub name: String,
    /// Introduction.
    pub intro: String,
    /// Category.
    pub category: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Listed in search.
    pub listed: bool,
    /// Join mode.
    pub join_mode: JoinMode,
    /// Tier index.
    pub tier: u32,
    /// Time, ms.
    pub created_at: i64,
    /// First group number to assign.
    pub first_number: GroupId,
    /// Most groups one user may own (`LimitReached` past it, atomically).
    pub max_owned: u32,
}

/// Settings to change; `None` leaves a setting as it is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupSettings {
    /// Name.
    pub name: Option<String>,
    /// Introduction.
    pub intro: Option<String>,
    /// Avatar (`Some(None)` clears it; stored as JSON null, absent means unchanged).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub avatar: Option<Option<String>>,
    /// Category.
    pub category: Option<String>,
    /// Tags.
    pub tags: Option<Vec<String>>,
    /// Listed.
    pub listed: Option<bool>,
    /// Join mode.
    pub join_mode: Option<JoinMode>,
    /// Members may invite.
    pub members_may_invite: Option<bool>,
    /// History visibility for newcomers.
    pub history: Option<HistoryVisibility>,
}

/// A field that is present (even as null) deserialises to `Some`, so that
/// "clear" and "unchanged" stay distinct through storage.
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// A member of a group.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// Group.
    pub group: GroupId,
    /// User.
    pub user: UserId,
    /// Role.
    pub role: Role,
    /// Group card (nickname in the group).
    pub card: Option<String>,
    /// Special title set by the owner.
    pub title: Option<String>,
    /// When the title expires, ms.
    pub title_expires_at: Option<i64>,
    /// Join time, ms.
    pub joined_at: i64,
    /// Seq of their join notice (history before it may be hidden from them).
    pub join_seq: Seq,
    /// Last time they spoke, ms.
    pub last_spoke_at: Option<i64>,
    /// Messages sent in the group (activity).
    pub messages: u64,
    /// Muted until, ms.
    pub muted_until: Option<i64>,
    /// Who invited them.
    pub inviter: Option<UserId>,
    /// Who approved them.
    pub approver: Option<UserId>,
}

impl Member {
    /// Activity level 1..: grows with the logarithm of messages sent.
    pub fn level(&self) -> u32 {
        1 + (64 - (self.messages + 1).leading_zeros()).saturating_sub(1)
    }
}

/// A change in a group's member list since some version.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberChange {
    /// The version the change produced.
    pub version: u64,
    /// Who changed.
    pub user: UserId,
    /// True if they left; otherwise they joined or their entry changed.
    pub removed: bool,
}

/// Whether a join request was made by the applicant or is an invitation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinKind {
    /// The applicant asked; owner or admins decide.
    Application,
    /// A member invited the user; the invitee decides.
    Invitation,
}

/// A join request or invitation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinRequest {
    /// Id.
    pub id: JoinRequestId,
    /// Group.
    pub group: GroupId,
    /// The would-be member.
    pub user: UserId,
    /// Application or invitation.
    pub kind: JoinKind,
    /// Request message.
    pub message: String,
    /// Answer to the group's question.
    pub answer: Option<String>,
    /// Who invited (invitations, and applications that came from one).
    pub inviter: Option<UserId>,
    /// Status.
    pub status: RequestStatus,
    /// Who decided.
    pub reviewer: Option<UserId>,
    /// Why it was refused.
    pub reason: Option<String>,
    /// Time, ms.
    pub created_at: i64,
}

/// A join request to create.
#[derive(Debug, Clone)]
pub struct NewJoinRequest {
    /// Group.
    pub group: GroupId,
    /// Would-be member.
    pub user: UserId,
    /// Kind.
    pub kind: JoinKind,
    /// Message.
    pub message: String,
    /// Answer.
    pub answer: Option<String>,
    /// Inviter.
    pub inviter: Option<UserId>,
    /// Time, ms.
    pub created_at: i64,
}

/// An invite link.
#[derive(Debug, Clone, PartialEq)]
pub struct InviteLink {
    /// Unguessable code.
    pub code: String,
    /// Group.
    pub group: GroupId,
    /// Who made it (recorded as the inviter of those who use it).
    pub creator: UserId,
    /// Expiry, ms.
    pub expires_at: Option<i64>,
    /// Most uses.
    pub max_uses: Option<u32>,
    /// Uses so far.
    pub uses: u32,
    /// Time, ms.
    pub created_at: i64,
}

/// A group announcement.
#[derive(Debug, Clone, PartialEq)]
pub struct Announcement {
    /// Id.
    pub id: AnnouncementId,
    /// Group.
    pub group: GroupId,
    /// Author.
    pub author: UserId,
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
    /// Pinned to the top.
    pub pinned: bool,
    /// Each member is asked to confirm having read it.
    pub require_confirm: bool,
    /// Shown to newcomers when they join.
    pub entrance: bool,
    /// Time, ms.
    pub created_at: i64,
    /// Last edit, ms.
    pub edited_at: Option<i64>,
}

/// Announcement content, for creation and edits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnnouncementDraft {
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
}

/// An essence (pinned best) message.
#[derive(Debug, Clone, PartialEq)]
pub struct Essence {
    /// The message.
    pub seq: Seq,
    /// Who marked it.
    pub by: UserId,
    /// When, ms.
    pub at: i64,
}

/// Discovery query.
#[derive(Debug, Clone, Default)]
pub struct GroupSearch {
    /// Exact group number (finds unlisted groups too).
    pub number: Option<GroupId>,
    /// Words in the name or introduction.
    pub keyword: Option<String>,
    /// Exact category.
    pub category: Option<String>,
    /// Page size.
    pub limit: u32,
}

/// A change recorded in the group's stream, so every device sees it live and
/// catch-up replays it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "notice", rename_all = "snake_case")]
pub enum Notice {
    /// The group was created.
    Created {
        /// Its owner.
        owner: UserId,
    },
    /// Someone joined.
    Joined {
        /// Who.
        user: UserId,
        /// Who invited them.
        inviter: Option<UserId>,
        /// Who approved them.
        approver: Option<UserId>,
    },
    /// Someone left.
    Left {
        /// Who.
        user: UserId,
    },
    /// Someone was removed.
    Kicked {
        /// Who.
        user: UserId,
        /// By whom.
        by: UserId,
        /// Whether they may not ask to join again.
        banned: bool,
    },
    /// A role changed.
    RoleChanged {
        /// Whose.
        user: UserId,
        /// New role.
        role: Role,
        /// By whom.
        by: UserId,
    },
    /// Ownership moved.
    OwnerTransferred {
        /// Old owner (now an admin).
        from: UserId,
        /// New owner.
        to: UserId,
    },
    /// A member was muted (or unmuted, with `until` absent).
    Muted {
        /// Who.
        user: UserId,
        /// Until when, ms.
        until: Option<i64>,
        /// By whom.
        by: UserId,
    },
    /// The whole group was muted or unmuted.
    GroupMuted {
        /// Muted now.
        muted: bool,
        /// By whom.
        by: UserId,
    },
    /// A special title was set or cleared.
    TitleSet {
        /// Whose.
        user: UserId,
        /// The title.
        title: Option<String>,
        /// Expiry, ms.
        expires_at: Option<i64>,
    },
    /// A group card changed.
    CardSet {
        /// Whose.
        user: UserId,
        /// The card.
        card: Option<String>,
        /// By whom.
        by: UserId,
    },
    /// Settings changed.
    SettingsChanged {
        /// By whom.
        by: UserId,
        /// The new values of what changed.
        settings: GroupSettings,
    },
    /// The tier changed.
    TierChanged {
        /// New tier index.
        tier: u32,
        /// By whom (0 for a server administrator).
        by: UserId,
    },
    /// An announcement was created, edited, pinned or deleted.
    Announcement {
        /// Which.
        id: AnnouncementId,
        /// "created", "edited" or "deleted".
        action: String,
        /// By whom.
        by: UserId,
    },
    /// A message was marked or unmarked as essence.
    Essence {
        /// The message.
        seq: Seq,
        /// Marked (true) or unmarked.
        set: bool,
        /// By whom.
        by: UserId,
    },
    /// The group was dissolved; it is read-only from now on.
    Dissolved {
        /// By whom.
        by: UserId,
    },
}

/// A change to a group, applied by the store atomically together with the
/// notice appended to the group's stream.
#[derive(Debug, Clone, PartialEq)]
pub enum GroupChange {
    /// Adds a member, failing with `LimitReached("max_members")` at `cap`,
    /// `Conflict` if already a member, `Forbidden` if banned (unless the ban is
    /// lifted by `unban`). With `request`, that pending request becomes accepted
    /// in the same transaction (`Conflict` if it is no longer pending); with
    /// `link`, the link's use count grows (`LimitReached("invite_link_uses")` when
    /// used up). The member's `join_seq` is the notice's seq. Any other pending
    /// request or invitation of the user for the group becomes accepted.
    AddMember {
        /// Who.
        user: UserId,
        /// Inviter.
        inviter: Option<UserId>,
        /// Approver.
        approver: Option<UserId>,
        /// The member cap of the group's tier.
        cap: u32,
        /// A join request this accepts.
        request: Option<JoinRequestId>,
        /// An invite link this uses.
        link: Option<String>,
    },
    /// Removes a member (`NotFound` if not one), optionally banning them.
    RemoveMember {
        /// Who.
        user: UserId,
        /// Ban from asking again.
        ban: bool,
    },
    /// Sets a non-owner's role between admin and member; `LimitReached("max_admins")` past `admin_cap`.
    SetRole {
        /// Whose.
        user: UserId,
        /// Admin or member.
        role: Role,
        /// The tier's admin limit.
        admin_cap: u32,
    },
    /// Makes `to` (a member) the owner and the old owner an admin.
    TransferOwner {
        /// The new owner.
        to: UserId,
    },
    /// Mutes a member until a time, or unmutes with `None`.
    Mute {
        /// Who.
        user: UserId,
        /// Until, ms.
        until: Option<i64>,
    },
    /// Mutes or unmutes the whole group.
    MuteAll(bool),
    /// Sets or clears a special title.
    SetTitle {
        /// Whose.
        user: UserId,
        /// Title.
        title: Option<String>,
        /// Expiry, ms.
        expires_at: Option<i64>,
    },
    /// Sets or clears a group card.
    SetCard {
        /// Whose.
        user: UserId,
        /// Card.
        card: Option<String>,
    },
    /// Changes settings.
    Settings(GroupSettings),
    /// Moves the group to another tier.
    SetTier(u32),
    /// Creates an announcement; the result carries its id, and the store puts
    /// that id into the `Notice::Announcement` it appends (the domain cannot
    /// know it beforehand and passes 0).
    CreateAnnouncement(AnnouncementDraft),
    /// Edits one (`NotFound` if absent).
    EditAnnouncement(AnnouncementId, AnnouncementDraft),
    /// Deletes one (`NotFound` if absent).
    DeleteAnnouncement(AnnouncementId),
    /// Marks or unmarks a message as essence (`NotFound` if not a message).
    SetEssence {
        /// The message.
        seq: Seq,
        /// Mark or unmark.
        set: bool,
    },
    /// Dissolves the group.
    Dissolve,
}

/// The outcome of [`GroupChange`]: the notice's place in the stream, plus the
/// id of a created announcement.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupChanged {
    /// The appended notice.
    pub appended: crate::model::Appended,
    /// The created announcement, for `CreateAnnouncement`.
    pub announcement: Option<AnnouncementId>,
    /// The group after the change.
    pub group: Group,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clearing_the_avatar_survives_storage_as_json() {
        for avatar in [None, Some(None), Some(Some("f1".to_string()))] {
            let s = GroupSettings {
                avatar: avatar.clone(),
                ..Default::default()
            };
            let json = serde_json::to_string(&s).unwrap();
            let back: GroupSettings = serde_json::from_str(&json).unwrap();
            assert_eq!(back.avatar, avatar, "{json}");
        }
    }
}
