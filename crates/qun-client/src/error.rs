//! The one error type of the client library, for REST and WebSocket alike.

use qun_wire::ErrorBody;

/// The code given to an error answer whose body is not a qun [`ErrorBody`]
/// (a proxy's HTML page, an empty 502...). The body text becomes the message.
pub const UNPARSEABLE: &str = "unparseable";

/// What went wrong while talking to a qun server.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error. `status` is the HTTP status for REST
    /// calls and 0 for WebSocket `error` frames.
    #[error("{}: {}", error.code, error.message)]
    Api {
        /// HTTP status, or 0 on the WebSocket.
        status: u16,
        /// The server's error body.
        error: ErrorBody,
    },
    /// The request could not be delivered or the answer not received
    /// (connection refused, reset, bad URL...).
    #[error("transport: {0}")]
    Transport(String),
    /// The server answered successfully but with a body this client does not understand.
    #[error("unexpected answer: {0}")]
    Decode(String),
    /// The WebSocket is closed; `code` and `reason` come from the close frame
    /// (1005 when it carried none, 1006 when the connection was lost without one).
    #[error("connection closed ({code}): {reason}")]
    Closed {
        /// WebSocket close code (see `qun_wire::codes::close`).
        code: u16,
        /// Close reason sent by the server.
        reason: String,
    },
    /// No answer arrived within the configured time.
    #[error("timed out")]
    Timeout,
}

impl ClientError {
    /// The stable wire error code (`not_found`, `rate_limited`...) of an error
    /// answer from the server, REST or WebSocket; `None` for other failures.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { error, .. } => Some(&error.code),
            _ => None,
        }
    }

    /// The HTTP status of a REST error answer (0 for WebSocket error frames).
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The server's error body, if the server answered with an error.
    pub fn body(&self) -> Option<&ErrorBody> {
        match self {
            ClientError::Api { error, .. } => Some(error),
            _ => None,
        }
    }

    /// A transport failure, described with its whole cause chain: reqwest's
    /// own message ("error sending request") alone does not say why.
    pub(crate) fn transport(error: &dyn std::error::Error) -> Self {
        let mut message = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        ClientError::Transport(message)
    }

    /// Builds the error for a non-2xx answer: the parsed [`ErrorBody`], or an
    /// [`UNPARSEABLE`] one carrying the raw body text.
    pub(crate) fn from_answer(status: u16, body: &[u8]) -> Self {
        let error = serde_json::from_slice::<ErrorBody>(body).unwrap_or_else(|_| ErrorBody {
            code: UNPARSEABLE.to_owned(),
            message: String::from_utf8_lossy(body).into_owned(),
            retry_after_secs: None,
            limit: None,
            max: None,
            field: None,
            until: None,
        });
        ClientError::Api { status, error }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_answers_keep_their_code_and_garbage_becomes_unparseable() {
        let err =
            ClientError::from_answer(404, br#"{"code":"not_found","message":"no such user"}"#);
        assert_eq!(err.code(), Some("not_found"));
        assert_eq!(err.status(), Some(404));
        assert_eq!(err.to_string(), "not_found: no such user");

        let err = ClientError::from_answer(502, b"<html>bad gateway</html>");
        assert_eq!(err.code(), Some(UNPARSEABLE));
        assert_eq!(
            err.body().map(|b| b.message.as_str()),
            Some("<html>bad gateway</html>")
        );

        assert_eq!(ClientError::Timeout.code(), None);
    }
}
