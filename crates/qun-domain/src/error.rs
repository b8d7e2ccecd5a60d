//! The domain's errors, in domain words. The gateway maps each to one HTTP
//! status and one stable wire code, in one place.

use std::fmt;

/// Result with the domain error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why an authenticated caller may not do something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// The caller is not a participant of the conversation.
    NotMember,
    /// The action needs the two users to be friends.
    NotFriends,
    /// One user has blacklisted the other.
    Blocked,
    /// Only the author may do this.
    NotAuthor,
    /// Users cannot act on themselves here (befriend, like, block oneself).
    SelfTarget,
    /// Only the recipient of a request may answer it.
    NotRecipient,
    /// The caller's role in the group does not allow this.
    Role,
    /// The caller is banned from the group.
    Banned,
    /// The group accepts no new members.
    JoinClosed,
    /// The group is joined by invitation only.
    InviteOnly,
    /// The other user refuses temporary sessions.
    TempSessionRefused,
    /// The two users share no group.
    NoSharedGroup,
    /// The group was dissolved and is read-only.
    Dissolved,
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Denied::NotMember => "you are not a participant of this conversation",
            Denied::NotFriends => "you are not friends",
            Denied::Blocked => "one of you has blacklisted the other",
            Denied::NotAuthor => "only the author may do this",
            Denied::SelfTarget => "you cannot do this to yourself",
            Denied::NotRecipient => "only the recipient may answer this request",
            Denied::Role => "your role in this group does not allow this",
            Denied::Banned => "you are banned from this group",
            Denied::JoinClosed => "this group accepts no new members",
            Denied::InviteOnly => "this group can be joined by invitation only",
            Denied::TempSessionRefused => "this user does not accept temporary sessions",
            Denied::NoSharedGroup => "you share no group with this user",
            Denied::Dissolved => "this group was dissolved and is read-only",
        })
    }
}

/// Why authentication failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// Wrong number or password.
    BadCredentials,
    /// Missing or unknown token.
    InvalidToken,
    /// The session expired.
    Expired,
    /// The session was revoked.
    Revoked,
    /// The account is disabled.
    Disabled,
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthError::BadCredentials => "wrong qun number or password",
            AuthError::InvalidToken => "missing or unknown session token",
            AuthError::Expired => "the session has expired; log in again",
            AuthError::Revoked => "the session was revoked; log in again",
            AuthError::Disabled => "the account is disabled",
        })
    }
}

/// Everything that can go wrong in the domain.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The named thing does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(Denied),
    /// The current state does not allow this.
    #[error("{0}")]
    Conflict(String),
    /// A field has an invalid value.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// A size limit was exceeded.
    #[error("{limit} exceeded: at most {max}")]
    TooLarge {
        /// The configured limit's name.
        limit: &'static str,
        /// Its value.
        max: u64,
    },
    /// A counted quota is used up.
    #[error("{limit} reached: at most {max}")]
    LimitReached {
        /// The configured limit's name.
        limit: &'static str,
        /// Its value.
        max: u64,
    },
    /// Too many attempts.
    #[error("too many attempts; retry in {retry_after_secs} s")]
    RateLimited {
        /// Seconds until a retry may pass.
        retry_after_secs: u64,
    },
    /// Authentication failed.
    #[error("{0}")]
    Auth(AuthError),
    /// The caller is muted in this group (`until` absent: the whole group is muted).
    #[error("you are muted{}", until.map(|u| format!(" until {u} (ms since epoch)")).unwrap_or_else(|| " (the whole group is muted)".into()))]
    Muted {
        /// Until when, ms.
        until: Option<i64>,
    },
    /// The own-message recall window has passed.
    #[error("messages can be recalled only within {window_secs} s")]
    RecallWindowPassed {
        /// The window.
        window_secs: u64,
    },
    /// The store cannot serve now; nothing was applied.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A bug or an unexpected storage failure.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Shorthand for [`Error::Invalid`].
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Error::Invalid {
            field,
            reason: reason.into(),
        }
    }
}
