//! REST request and response bodies, also reused as the data of WebSocket results.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{CategoryId, ConversationId, FriendRequestId, MessageId, Seq, UserId};

/// Every error, on REST and on the WebSocket: a stable code and a human message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Stable snake_case code (see `qun_wire::codes`).
    pub code: String,
    /// Human-readable explanation; may change between versions.
    pub message: String,
    /// For `rate_limited`: seconds until a retry may succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
    /// For `too_large` and `limit_reached`: which configured limit was hit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
    /// For `too_large` and `limit_reached`: the limit's value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u64>,
    /// For `invalid_field`: the offending field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// For `muted`: until when, ms since the epoch (absent: the whole group is muted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<i64>,
}

/// `POST /api/v1/accounts`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RegisterRequest {
    /// Display name (1 to the configured maximum characters).
    pub nickname: String,
    /// At least the configured minimum length.
    pub password: String,
}

/// The qun number assigned at registration.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RegisterResponse {
    /// The new account's number.
    pub user_id: UserId,
}

/// The kind of device a session belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    /// A desktop client.
    Pc,
    /// A phone or tablet.
    Mobile,
    /// A browser.
    Web,
}

/// `POST /api/v1/sessions`: log in one device.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LoginRequest {
    /// The qun number.
    pub user_id: UserId,
    /// The account's password.
    pub password: String,
    /// The kind of device.
    pub device_kind: DeviceKind,
    /// A name the user recognises ("office PC").
    pub device_name: String,
}

/// A new session's bearer token; it is shown only once.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LoginResponse {
    /// Opaque bearer token for `Authorization: Bearer` and the WebSocket `auth` frame.
    pub token: String,
    /// The session's id, for listing and revoking.
    pub session_id: String,
    /// The account.
    pub user_id: UserId,
    /// Expiry, milliseconds since the Unix epoch.
    pub expires_at: i64,
}

/// One logged-in device.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SessionView {
    /// The session id.
    pub session_id: String,
    /// Kind of device.
    pub device_kind: DeviceKind,
    /// Name of device.
    pub device_name: String,
    /// Login time, ms since epoch.
    pub created_at: i64,
    /// Expiry, ms since epoch.
    pub expires_at: i64,
    /// Whether this is the session making the request.
    pub current: bool,
}

/// `PUT /api/v1/account/password`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChangePasswordRequest {
    /// Current password.
    pub old_password: String,
    /// New password.
    pub new_password: String,
}

/// How many other sessions a password change revoked.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RevokedCount {
    /// Number of sessions revoked.
    pub revoked: u64,
}

/// A public profile.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProfileView {
    /// The qun number.
    pub user_id: UserId,
    /// Display name.
    pub nickname: String,
    /// Personal signature line.
    pub signature: String,
    /// Avatar reference (a file id, later issues).
    pub avatar: Option<String>,
    /// Total likes received.
    pub likes: u64,
}

/// `PATCH /api/v1/account/profile`: absent fields stay unchanged.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct ProfilePatch {
    /// New nickname.
    #[serde(default)]
    pub nickname: Option<String>,
    /// New signature.
    #[serde(default)]
    pub signature: Option<String>,
    /// New avatar reference; an empty string clears it.
    #[serde(default)]
    pub avatar: Option<String>,
    /// Whether members of shared groups who are not friends may message you.
    #[serde(default)]
    pub accept_temp_sessions: Option<bool>,
}

/// `POST /api/v1/friend-requests`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FriendRequestCreate {
    /// Whom to befriend.
    pub to: UserId,
    /// A greeting shown to them.
    #[serde(default)]
    pub message: String,
}

/// State of a friend request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FriendRequestStatus {
    /// Waiting for the recipient.
    Pending,
    /// Accepted: the two are friends.
    Accepted,
    /// Refused by the recipient.
    Refused,
}

/// A friend request as either side sees it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FriendRequestView {
    /// Request id.
    pub id: FriendRequestId,
    /// Sender.
    pub from: UserId,
    /// Recipient.
    pub to: UserId,
    /// Greeting.
    pub message: String,
    /// Status.
    pub status: FriendRequestStatus,
    /// ms since epoch.
    pub created_at: i64,
}

/// Pending requests to and from the caller.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FriendRequestList {
    /// Requests others sent to the caller.
    pub incoming: Vec<FriendRequestView>,
    /// Requests the caller sent.
    pub outgoing: Vec<FriendRequestView>,
}

/// `POST /api/v1/friend-requests/{id}/accept`
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct AcceptFriendRequest {
    /// Remark (alias) for the new friend.
    #[serde(default)]
    pub remark: Option<String>,
    /// Category to put the new friend in.
    #[serde(default)]
    pub category: Option<CategoryId>,
}

/// Presence states, from most to least available.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PresenceState {
    /// "Q me": actively wants to chat.
    Qme,
    /// Online.
    Online,
    /// Away.
    Away,
    /// Busy.
    Busy,
    /// Do not disturb.
    DoNotDisturb,
    /// Online but shown as offline to others.
    Invisible,
    /// Offline.
    Offline,
}

/// A friend in the caller's list.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FriendView {
    /// The friend.
    pub user_id: UserId,
    /// Their nickname.
    pub nickname: String,
    /// The caller's remark for them.
    pub remark: Option<String>,
    /// The caller's category for them (0: default).
    pub category: CategoryId,
    /// Their presence as the caller may see it.
    pub presence: PresenceState,
    /// The 1:1 conversation with them.
    pub conversation: ConversationId,
}

/// `PATCH /api/v1/friends/{id}`: absent fields stay unchanged.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct FriendPatch {
    /// New remark; an empty string clears it.
    #[serde(default)]
    pub remark: Option<String>,
    /// New category (0: default).
    #[serde(default)]
    pub category: Option<CategoryId>,
}

/// A friend category.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CategoryView {
    /// Category id (0 is the default "My friends").
    pub id: CategoryId,
    /// Name.
    pub name: String,
}

/// `POST /api/v1/friend-categories` and `PATCH .../{id}`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CategoryName {
    /// Name.
    pub name: String,
}

/// Result of liking a friend.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LikeResult {
    /// Likes given to this friend today, including this one.
    pub today: u32,
    /// Likes left for this friend today.
    pub remaining: u32,
}

/// A blacklisted user.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BlockedView {
    /// The blocked user.
    pub user_id: UserId,
    /// When, ms since epoch.
    pub since: i64,
}

/// `POST /api/v1/conversations/direct`: find the 1:1 conversation with a friend.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DirectRequest {
    /// The peer.
    pub user_id: UserId,
}

/// The kind of a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConversationKind {
    /// Two users.
    Direct,
    /// A group.
    Group,
}

/// A conversation in the caller's list, with sync and unread state.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConversationView {
    /// Conversation id.
    pub conversation: ConversationId,
    /// Kind.
    pub kind: ConversationKind,
    /// For direct conversations: the other user.
    pub peer: Option<UserId>,
    /// For group conversations: the group.
    pub group: Option<crate::GroupId>,
    /// The last sequence number in the conversation (0 if empty).
    pub last_seq: Seq,
    /// The caller's read position.
    pub read_seq: Seq,
    /// Messages from others after the read position, not recalled.
    pub unread: u64,
    /// Of those, the ones that mention the caller or everyone.
    pub mentions: u64,
}

/// All of the caller's conversations.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConversationList {
    /// Conversations, most recently active first.
    pub conversations: Vec<ConversationView>,
}

/// A piece of a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Segment {
    /// Plain text.
    Text {
        /// The text.
        text: String,
    },
    /// A built-in face (emoji) by number.
    Face {
        /// Face number.
        id: u32,
    },
    /// A mention of a user.
    Mention {
        /// Who is mentioned.
        user: UserId,
    },
    /// A mention of every member of a group (@all), limited by a daily quota.
    MentionAll,
    /// A reply to an earlier message of the same conversation.
    Reply {
        /// The replied-to message's sequence number.
        seq: Seq,
    },
    /// An image by file reference.
    Image {
        /// File id.
        file: String,
    },
    /// A file by reference.
    File {
        /// File id.
        file: String,
        /// File name.
        name: String,
        /// Size in bytes.
        size: u64,
    },
}

/// `POST /api/v1/conversations/{id}/messages`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SendRequest {
    /// Chosen by the client, unique per sender; a retry with the same id returns
    /// the first acknowledgement and stores nothing new.
    pub client_msg_id: String,
    /// The message.
    pub segments: Vec<Segment>,
}

/// The acknowledgement of a durable write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Ack {
    /// Conversation.
    pub conversation: ConversationId,
    /// The event's sequence number.
    pub seq: Seq,
    /// The message id (for a recall: the recall event's id).
    pub message_id: MessageId,
    /// Server time of the write, ms since epoch.
    pub server_time: i64,
}

/// `PUT /api/v1/conversations/{id}/read`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReadRequest {
    /// Read up to and including this sequence number.
    pub seq: Seq,
}

/// The caller's read state of a conversation.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReadState {
    /// Conversation.
    pub conversation: ConversationId,
    /// Read position (never moves backwards).
    pub read_seq: Seq,
    /// Remaining unread messages.
    pub unread: u64,
}

/// One event of a conversation's stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ConversationEvent {
    /// A message.
    Message(MessageView),
    /// The recall of an earlier message.
    Recall(RecallView),
    /// A change in a group (membership, roles, mutes, announcements, settings).
    Notice(crate::NoticeView),
}

impl ConversationEvent {
    /// The event's position in its conversation.
    pub fn seq(&self) -> Seq {
        match self {
            ConversationEvent::Message(m) => m.seq,
            ConversationEvent::Recall(r) => r.seq,
            ConversationEvent::Notice(n) => n.seq,
        }
    }

    /// The event's conversation.
    pub fn conversation(&self) -> ConversationId {
        match self {
            ConversationEvent::Message(m) => m.conversation,
            ConversationEvent::Recall(r) => r.conversation,
            ConversationEvent::Notice(n) => n.conversation,
        }
    }
}

/// A message as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MessageView {
    /// Conversation.
    pub conversation: ConversationId,
    /// Sequence number.
    pub seq: Seq,
    /// Message id.
    pub message_id: MessageId,
    /// Sender.
    pub sender: UserId,
    /// The sender's client message id.
    pub client_msg_id: String,
    /// Server time, ms since epoch.
    pub time: i64,
    /// Content; empty once recalled.
    pub segments: Vec<Segment>,
    /// Whether the message was recalled (a later `recall` event says by whom).
    pub recalled: bool,
}

/// A recall event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RecallView {
    /// Conversation.
    pub conversation: ConversationId,
    /// This event's sequence number.
    pub seq: Seq,
    /// This event's id.
    pub message_id: MessageId,
    /// The recalled message's sequence number.
    pub target_seq: Seq,
    /// Who recalled it.
    pub by: UserId,
    /// Server time, ms since epoch.
    pub time: i64,
}

/// `GET /api/v1/conversations/{id}/events`: a page of history.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HistoryPage {
    /// Events in ascending sequence order.
    pub events: Vec<ConversationEvent>,
    /// Whether more events exist in the requested direction.
    pub more: bool,
}

/// Liveness and readiness answers.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// "ok", or what is wrong.
    pub status: String,
}
