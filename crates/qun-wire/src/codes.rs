//! Stable snake_case error codes and WebSocket close codes.
//!
//! Clients and bots branch on these strings; they never change meaning once
//! published. Human-readable messages travel beside them and may change.

/// The request body or frame is not valid JSON.
pub const INVALID_JSON: &str = "invalid_json";
/// A field is missing, has the wrong type or an invalid value.
pub const INVALID_FIELD: &str = "invalid_field";
/// The frame's `type` is not one the server knows.
pub const UNKNOWN_TYPE: &str = "unknown_type";
/// The frame's protocol version is not supported.
pub const UNSUPPORTED_VERSION: &str = "unsupported_version";
/// A payload (message, nickname, frame...) exceeds a configured size limit.
pub const TOO_LARGE: &str = "too_large";
/// No credentials, or a token the server does not know.
pub const UNAUTHENTICATED: &str = "unauthenticated";
/// The token's session has expired.
pub const TOKEN_EXPIRED: &str = "token_expired";
/// The token's session was revoked (logout, password change, admin).
pub const SESSION_REVOKED: &str = "session_revoked";
/// Wrong account number or password.
pub const BAD_CREDENTIALS: &str = "bad_credentials";
/// The account is disabled by an administrator.
pub const ACCOUNT_DISABLED: &str = "account_disabled";
/// Too many attempts; `retry_after_secs` says when to try again.
pub const RATE_LIMITED: &str = "rate_limited";
/// The thing named does not exist (or is not visible to the caller).
pub const NOT_FOUND: &str = "not_found";
/// The caller may not do this.
pub const FORBIDDEN: &str = "forbidden";
/// The caller is not a participant of the conversation.
pub const NOT_A_MEMBER: &str = "not_a_member";
/// Messaging or befriending requires friendship.
pub const NOT_FRIENDS: &str = "not_friends";
/// One of the two users has blacklisted the other.
pub const BLOCKED: &str = "blocked";
/// The caller's role in the group does not allow this.
pub const INSUFFICIENT_ROLE: &str = "insufficient_role";
/// The caller is muted in the group (`until` says until when).
pub const MUTED: &str = "muted";
/// The caller is banned from the group.
pub const BANNED: &str = "banned";
/// The group accepts no new members.
pub const JOIN_CLOSED: &str = "join_closed";
/// The group is joined by invitation only.
pub const INVITE_ONLY: &str = "invite_only";
/// The other user refuses temporary sessions.
pub const TEMP_SESSION_REFUSED: &str = "temp_session_refused";
/// The two users share no group.
pub const NO_SHARED_GROUP: &str = "no_shared_group";
/// The group was dissolved and is read-only.
pub const GROUP_DISSOLVED: &str = "group_dissolved";
/// The state does not allow this (already friends, already recalled...).
pub const CONFLICT: &str = "conflict";
/// The recall window for one's own messages has passed.
pub const RECALL_WINDOW_PASSED: &str = "recall_window_passed";
/// A counted limit (e.g. likes per friend per day) is used up.
pub const LIMIT_REACHED: &str = "limit_reached";
/// The route does not exist.
pub const NO_ROUTE: &str = "no_route";
/// The HTTP method is not allowed on this route.
pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";
/// The storage is temporarily unavailable; the request was not applied.
pub const UNAVAILABLE: &str = "unavailable";
/// Something failed inside the server; details are in the server log only.
pub const INTERNAL: &str = "internal";

/// WebSocket close codes (4000-4999 are application codes).
pub mod close {
    /// The first frame was not a valid `auth` or arrived too late.
    pub const UNAUTHENTICATED: u16 = 4001;
    /// The session behind this socket was revoked.
    pub const SESSION_REVOKED: u16 = 4003;
    /// The account was disabled.
    pub const ACCOUNT_DISABLED: u16 = 4004;
    /// The client stopped reading and its outbound queue overflowed.
    pub const SLOW_CONSUMER: u16 = 4008;
    /// Nothing was received within the heartbeat timeout.
    pub const HEARTBEAT_TIMEOUT: u16 = 4009;
    /// The server is shutting down (standard "going away").
    pub const SERVER_SHUTDOWN: u16 = 1001;
    /// A frame too large for the server's limit (standard "message too big").
    pub const FRAME_TOO_LARGE: u16 = 1009;
}
