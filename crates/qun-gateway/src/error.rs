//! The one place where errors become HTTP statuses and stable wire codes.
//! A 500 tells the caller nothing internal; the log gets everything.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use qun_domain::{AuthError, Denied, Error};
use qun_wire::{codes, ErrorBody};

/// An error on its way to a client.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status (WebSocket answers ignore it).
    pub status: StatusCode,
    /// The body.
    pub body: ErrorBody,
}

impl ApiError {
    /// An error with a code and a message.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            body: ErrorBody {
                code: code.to_owned(),
                message: message.into(),
                retry_after_secs: None,
                limit: None,
                max: None,
                field: None,
                until: None,
            },
        }
    }

    /// A malformed body or frame.
    pub fn invalid_json(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, codes::INVALID_JSON, message)
    }

    /// A well-formed body with a missing or mistyped field.
    pub fn invalid_field(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, codes::INVALID_FIELD, message)
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let message = e.to_string();
        let (status, code) = match &e {
            Error::NotFound(_) => (StatusCode::NOT_FOUND, codes::NOT_FOUND),
            Error::Forbidden(d) => (
                StatusCode::FORBIDDEN,
                match d {
                    Denied::NotMember => codes::NOT_A_MEMBER,
                    Denied::NotFriends => codes::NOT_FRIENDS,
                    Denied::Blocked => codes::BLOCKED,
                    Denied::Role => codes::INSUFFICIENT_ROLE,
                    Denied::Banned => codes::BANNED,
                    Denied::JoinClosed => codes::JOIN_CLOSED,
                    Denied::InviteOnly => codes::INVITE_ONLY,
                    Denied::TempSessionRefused => codes::TEMP_SESSION_REFUSED,
                    Denied::NoSharedGroup => codes::NO_SHARED_GROUP,
                    Denied::Dissolved => codes::GROUP_DISSOLVED,
                    Denied::NotAuthor | Denied::SelfTarget | Denied::NotRecipient => {
                        codes::FORBIDDEN
                    }
                },
            ),
            Error::Conflict(_) => (StatusCode::CONFLICT, codes::CONFLICT),
            Error::Invalid { .. } => (StatusCode::BAD_REQUEST, codes::INVALID_FIELD),
            Error::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, codes::TOO_LARGE),
            Error::LimitReached { .. } => (StatusCode::TOO_MANY_REQUESTS, codes::LIMIT_REACHED),
            Error::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, codes::RATE_LIMITED),
            Error::Auth(a) => match a {
                AuthError::BadCredentials => (StatusCode::UNAUTHORIZED, codes::BAD_CREDENTIALS),
                AuthError::InvalidToken => (StatusCode::UNAUTHORIZED, codes::UNAUTHENTICATED),
                AuthError::Expired => (StatusCode::UNAUTHORIZED, codes::TOKEN_EXPIRED),
                AuthError::Revoked => (StatusCode::UNAUTHORIZED, codes::SESSION_REVOKED),
                AuthError::Disabled => (StatusCode::FORBIDDEN, codes::ACCOUNT_DISABLED),
            },
            Error::Muted { .. } => (StatusCode::FORBIDDEN, codes::MUTED),
            Error::RecallWindowPassed { .. } => {
                (StatusCode::FORBIDDEN, codes::RECALL_WINDOW_PASSED)
            }
            Error::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, codes::UNAVAILABLE),
            Error::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, codes::INTERNAL),
        };
        let mut api = match &e {
            Error::Internal(detail) | Error::Unavailable(detail) => {
                tracing::error!(error = %detail, code, "request failed inside the server");
                let public = if code == codes::INTERNAL {
                    "internal error; the server log has details"
                } else {
                    "storage is unavailable; the request was not applied, retry later"
                };
                ApiError::new(status, code, public)
            }
            _ => ApiError::new(status, code, message),
        };
        match e {
            Error::Invalid { field, .. } => api.body.field = Some(field.to_owned()),
            Error::TooLarge { limit, max } | Error::LimitReached { limit, max } => {
                api.body.limit = Some(limit.to_owned());
                api.body.max = Some(max);
            }
            Error::RateLimited { retry_after_secs } => {
                api.body.retry_after_secs = Some(retry_after_secs)
            }
            Error::Muted { until } => api.body.until = until,
            _ => {}
        }
        api
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::invalid_field(r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::invalid_field(r.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry = self.body.retry_after_secs;
        let mut response = (self.status, axum::Json(self.body)).into_response();
        if let Some(secs) = retry {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}
