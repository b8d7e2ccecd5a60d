//! How SQLite failures become domain errors.
//!
//! Queries return [`Failure`] so that `?` works on both rusqlite calls and
//! domain decisions; the store turns it into a [`qun_domain::Error`] at the
//! edge of each operation.

use qun_domain::Error;
use rusqlite::ErrorCode;

/// The result of one query function.
pub(crate) type Outcome<T> = std::result::Result<T, Failure>;

/// Why a query function failed: SQLite said no, or the domain did.
#[derive(Debug)]
pub(crate) enum Failure {
    /// A SQLite error, mapped by [`map_sqlite`].
    Sqlite(rusqlite::Error),
    /// A decision already in domain words (`NotFound`, `Conflict`...).
    Domain(Error),
}

impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Self {
        Failure::Sqlite(e)
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Domain(e)
    }
}

impl From<serde_json::Error> for Failure {
    fn from(e: serde_json::Error) -> Self {
        Failure::Domain(Error::Internal(format!("stored message content: {e}")))
    }
}

impl From<Failure> for Error {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Sqlite(e) => map_sqlite(e),
            Failure::Domain(e) => e,
        }
    }
}

/// Maps a SQLite error: constraint violations are conflicts, a busy, full or
/// failing disk makes the store unavailable, anything else is internal.
pub(crate) fn map_sqlite(e: rusqlite::Error) -> Error {
    match &e {
        rusqlite::Error::SqliteFailure(code, message) => {
            let text = message.clone().unwrap_or_else(|| code.to_string());
            match code.code {
                ErrorCode::ConstraintViolation => Error::Conflict(text),
                ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::DiskFull
                | ErrorCode::SystemIoFailure
                | ErrorCode::CannotOpen
                | ErrorCode::OutOfMemory
                | ErrorCode::FileLockingProtocolFailed
                | ErrorCode::ReadOnly => Error::Unavailable(text),
                _ => Error::Internal(format!("sqlite: {text}")),
            }
        }
        // Numbers beyond SQLite's signed 64-bit range name nothing stored.
        rusqlite::Error::ToSqlConversionFailure(_) => Error::NotFound("id"),
        _ => Error::Internal(format!("sqlite: {e}")),
    }
}

/// Shorthand for a conflict with a message.
pub(crate) fn conflict(message: &str) -> Failure {
    Failure::Domain(Error::Conflict(message.to_owned()))
}

/// Shorthand for a missing thing.
pub(crate) fn not_found(what: &'static str) -> Failure {
    Failure::Domain(Error::NotFound(what))
}

/// Shorthand for a stored value that makes no sense (a bug or a damaged file).
pub(crate) fn corrupt(what: &str) -> Failure {
    Failure::Domain(Error::Internal(format!("unexpected stored value: {what}")))
}
