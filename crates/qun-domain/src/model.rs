//! The domain's records: what the store keeps and the services hand out.

use serde::{Deserialize, Serialize};

use crate::{CategoryId, ConversationId, FriendRequestId, MessageId, Seq, SessionId, UserId};

/// An account.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    /// qun number.
    pub id: UserId,
    /// Display name.
    pub nickname: String,
    /// Signature line.
    pub signature: String,
    /// Avatar reference.
    pub avatar: Option<String>,
    /// PHC-format argon2id hash.
    pub password_hash: String,
    /// Disabled by an administrator.
    pub disabled: bool,
    /// Registration time, ms.
    pub created_at: i64,
    /// Likes received in total.
    pub likes: u64,
    /// Whether members of shared groups who are not friends may message them.
    pub accept_temp_sessions: bool,
}

/// A user to be created.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// A chosen ("pretty") number, or `None` for the next free one.
    pub number: Option<UserId>,
    /// Display name.
    pub nickname: String,
    /// PHC-format hash.
    pub password_hash: String,
    /// Time, ms.
    pub created_at: i64,
    /// First number to assign automatically.
    pub first_number: UserId,
}

/// Profile fields to change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ProfileUpdate {
    /// New nickname.
    pub nickname: Option<String>,
    /// New signature.
    pub signature: Option<String>,
    /// New avatar (`Some(None)` clears it).
    pub avatar: Option<Option<String>>,
    /// Accept temporary sessions.
    pub accept_temp_sessions: Option<bool>,
}

/// The kind of device of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    /// Desktop.
    Pc,
    /// Phone or tablet.
    Mobile,
    /// Browser.
    Web,
}

impl DeviceKind {
    /// Stable name used in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Pc => "pc",
            DeviceKind::Mobile => "mobile",
            DeviceKind::Web => "web",
        }
    }

    /// Parses [`DeviceKind::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pc" => Some(DeviceKind::Pc),
            "mobile" => Some(DeviceKind::Mobile),
            "web" => Some(DeviceKind::Web),
            _ => None,
        }
    }
}

/// A login session of one device. The token itself is never stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// Public id.
    pub id: SessionId,
    /// Account.
    pub user: UserId,
    /// Hex SHA-256 of the bearer token.
    pub token_hash: String,
    /// Device kind.
    pub device_kind: DeviceKind,
    /// Device name.
    pub device_name: String,
    /// Login time, ms.
    pub created_at: i64,
    /// Expiry, ms.
    pub expires_at: i64,
    /// Revocation time, ms, if revoked.
    pub revoked_at: Option<i64>,
}

/// State of a friend request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestStatus {
    /// Waiting.
    Pending,
    /// Accepted.
    Accepted,
    /// Refused.
    Refused,
}

impl RequestStatus {
    /// Stable name used in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Pending => "pending",
            RequestStatus::Accepted => "accepted",
            RequestStatus::Refused => "refused",
        }
    }

    /// Parses [`RequestStatus::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(RequestStatus::Pending),
            "accepted" => Some(RequestStatus::Accepted),
            "refused" => Some(RequestStatus::Refused),
            _ => None,
        }
    }
}

/// A friend request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FriendRequest {
    /// Id.
    pub id: FriendRequestId,
    /// Sender.
    pub from: UserId,
    /// Recipient.
    pub to: UserId,
    /// Greeting.
    pub message: String,
    /// Status.
    pub status: RequestStatus,
    /// Time, ms.
    pub created_at: i64,
}

/// One side of a friendship, as the owner of the list sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Friend {
    /// The friend.
    pub user: UserId,
    /// Owner's remark for them.
    pub remark: Option<String>,
    /// Owner's category for them.
    pub category: CategoryId,
    /// Their 1:1 conversation.
    pub conversation: ConversationId,
    /// Friends since, ms.
    pub since: i64,
}

/// A change to a friend entry; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct FriendUpdate {
    /// New remark (`Some(None)` clears it).
    pub remark: Option<Option<String>>,
    /// New category.
    pub category: Option<CategoryId>,
}

/// A friend category.
#[derive(Debug, Clone, PartialEq)]
pub struct Category {
    /// Id.
    pub id: CategoryId,
    /// Name.
    pub name: String,
}

/// A piece of a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Segment {
    /// Text.
    Text {
        /// The text.
        text: String,
    },
    /// A built-in face.
    Face {
        /// Face number.
        id: u32,
    },
    /// A mention.
    Mention {
        /// Who.
        user: UserId,
    },
    /// A mention of every member (@all), limited by a daily quota.
    MentionAll,
    /// A reply to an earlier message of the conversation.
    Reply {
        /// Its sequence number.
        seq: Seq,
    },
    /// An image reference.
    Image {
        /// File id.
        file: String,
    },
    /// A file reference.
    File {
        /// File id.
        file: String,
        /// Name.
        name: String,
        /// Size, bytes.
        size: u64,
    },
}

impl Segment {
    /// Bytes this segment counts against the message size limit.
    pub fn weight(&self) -> usize {
        match self {
            Segment::Text { text } => text.len(),
            Segment::Face { .. }
            | Segment::Mention { .. }
            | Segment::MentionAll
            | Segment::Reply { .. } => 8,
            Segment::Image { file } => file.len() + 8,
            Segment::File { file, name, .. } => file.len() + name.len() + 16,
        }
    }
}

/// The kind of a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConversationKind {
    /// Two users (friends, or a temporary session between group members).
    Direct,
    /// A group's conversation; its participants are the group's members.
    Group(crate::GroupId),
}

/// A conversation and who takes part in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    /// Id.
    pub id: ConversationId,
    /// Kind.
    pub kind: ConversationKind,
    /// Participants of a direct conversation; empty for a group (ask the
    /// group's members instead).
    pub members: Vec<UserId>,
}

/// How one user stands towards another for a direct message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectStanding {
    /// Either of the two has blacklisted the other.
    pub blocked: bool,
    /// The first has the second on their friend list.
    pub friends: bool,
}

/// What an append writes.
#[derive(Debug, Clone, PartialEq)]
pub enum AppendBody {
    /// A message.
    Message(Vec<Segment>),
    /// The recall of the message at `target`; the store refuses (conflict) if it
    /// is not a message or already recalled.
    Recall {
        /// The recalled message.
        target: Seq,
    },
    /// A group notice (appended by `GroupStore::change_group`, not `append`).
    Notice(crate::groups::model::Notice),
}

/// One write to a conversation's stream.
#[derive(Debug, Clone)]
pub struct Append {
    /// Conversation.
    pub conversation: ConversationId,
    /// Author.
    pub sender: UserId,
    /// Idempotency key, unique per sender.
    pub client_msg_id: String,
    /// Server time, ms.
    pub time: i64,
    /// Content.
    pub body: AppendBody,
    /// Daily counters to consume in the same transaction (a message's @all):
    /// all or none, `LimitReached` without storing anything when one is full,
    /// and nothing consumed when the append is a retry.
    pub quota: Option<Quota>,
    /// For a direct message: the peer the sender must have as a friend,
    /// neither having blacklisted the other, checked in the append's own
    /// transaction after the retry check. When that does not hold nothing
    /// is stored and the append fails with `Forbidden(NotFriends)`.
    pub requires_friend: Option<UserId>,
}

/// Daily counters an append consumes.
#[derive(Debug, Clone, PartialEq)]
pub struct Quota {
    /// The counters.
    pub counters: Vec<crate::store::DailyCounter>,
    /// The (UTC) day they count for.
    pub day: i64,
}

/// The result of an append: where the event landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Conversation.
    pub conversation: ConversationId,
    /// Sequence number.
    pub seq: Seq,
    /// Event id.
    pub message_id: MessageId,
    /// Time of the first write, ms.
    pub time: i64,
    /// True when this was a retry of an earlier append (nothing new stored).
    pub duplicate: bool,
}

/// A stored event's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EventBody {
    /// A message; its segments are empty once recalled.
    Message {
        /// Content.
        segments: Vec<Segment>,
        /// Recalled since.
        recalled: bool,
    },
    /// A recall.
    Recall {
        /// The recalled message.
        target: Seq,
    },
    /// A group notice.
    Notice(crate::groups::model::Notice),
}

/// One event of a conversation, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// Conversation.
    pub conversation: ConversationId,
    /// Sequence number.
    pub seq: Seq,
    /// Id.
    pub message_id: MessageId,
    /// Author.
    pub sender: UserId,
    /// Author's idempotency key.
    pub client_msg_id: String,
    /// Time, ms.
    pub time: i64,
    /// Content.
    pub body: EventBody,
}

/// A range of a conversation's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventRange {
    /// Events with seq > the bound, ascending, at most `limit`.
    After(Seq, u32),
    /// Events with seq < the bound, the `limit` closest to it, returned ascending.
    Before(Seq, u32),
}

/// A conversation as one participant sees it in their list.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationState {
    /// Id.
    pub id: ConversationId,
    /// Kind.
    pub kind: ConversationKind,
    /// For direct conversations, the other participant.
    pub peer: Option<UserId>,
    /// Last sequence number (0 when empty).
    pub last_seq: Seq,
    /// This participant's read position.
    pub read_seq: Seq,
    /// Messages by others after `read_seq`, not recalled.
    pub unread: u64,
    /// Of those, the ones mentioning this participant or everyone.
    pub mentions: u64,
    /// Time of the last event, ms (0 when empty).
    pub last_time: i64,
}

/// A friend as the list owner sees them: the entry plus live details.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FriendEntry {
    /// The stored entry.
    pub friend: Friend,
    /// Their nickname.
    pub nickname: String,
    /// Their visible presence.
    pub presence: crate::PresenceState,
}
