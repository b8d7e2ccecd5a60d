//! How PostgreSQL failures become domain errors.
//!
//! Query functions return [`Failure`] so that `?` works on both driver calls
//! and domain decisions; the store turns it into a [`qun_domain::Error`] at
//! the edge of each operation. The mapping follows the contract: a broken
//! uniqueness (or other integrity) rule is a `Conflict`; a value the server
//! cannot store (a NUL character in text) is `Invalid`; anything that says
//! "the database cannot serve right now" (lost connection, pool exhausted,
//! statement timeout, shutdown, deadlock victim) is `Unavailable`, since the
//! transaction it happened in was rolled back; the rest is `Internal`.

use deadpool_postgres::PoolError;
use qun_domain::Error;
use tokio_postgres::error::SqlState;

/// The result of one query function.
pub(crate) type Outcome<T> = std::result::Result<T, Failure>;

/// Why a query function failed: PostgreSQL said no, or the domain did.
#[derive(Debug)]
pub(crate) enum Failure {
    /// A driver or server error, mapped by [`map_postgres`].
    Postgres(tokio_postgres::Error),
    /// A decision already in domain words (`NotFound`, `Conflict`...).
    Domain(Error),
}

impl Failure {
    /// Whether the failure rolled back its transaction for a reason that
    /// running it again may not meet: it was chosen as a deadlock victim or
    /// lost a serialization race. Nothing was applied.
    pub(crate) fn is_retryable(&self) -> bool {
        match self {
            Failure::Postgres(e) => matches!(
                e.code(),
                Some(code) if *code == SqlState::T_R_DEADLOCK_DETECTED
                    || *code == SqlState::T_R_SERIALIZATION_FAILURE
            ),
            Failure::Domain(_) => false,
        }
    }
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        Failure::Postgres(e)
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Domain(e)
    }
}

impl From<serde_json::Error> for Failure {
    fn from(e: serde_json::Error) -> Self {
        Failure::Domain(Error::Internal(format!("stored content: {e}")))
    }
}

impl From<PoolError> for Failure {
    fn from(e: PoolError) -> Self {
        Failure::Domain(map_pool(e))
    }
}

impl From<Failure> for Error {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Postgres(e) => map_postgres(&e),
            Failure::Domain(e) => e,
        }
    }
}

/// Maps a driver or server error to a domain error.
pub(crate) fn map_postgres(e: &tokio_postgres::Error) -> Error {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        let text = db.message().to_owned();
        if [
            SqlState::UNIQUE_VIOLATION,
            SqlState::FOREIGN_KEY_VIOLATION,
            SqlState::CHECK_VIOLATION,
            SqlState::NOT_NULL_VIOLATION,
            SqlState::EXCLUSION_VIOLATION,
        ]
        .contains(code)
        {
            return Error::Conflict(text);
        }
        // Data the server cannot store, such as a NUL character in text:
        // the caller's input is at fault.
        if code.code().starts_with("22") {
            return Error::invalid("value", text);
        }
        // By class: 08 connection, 40 rollback (deadlock, serialization),
        // 53 resources (disk full, too many connections), 57 operator
        // intervention (statement timeout, shutdown), 58 system (I/O).
        let unavailable = matches!(code.code().get(..2), Some("08" | "40" | "53" | "57" | "58"))
            || *code == SqlState::READ_ONLY_SQL_TRANSACTION
            || *code == SqlState::LOCK_NOT_AVAILABLE;
        return if unavailable {
            Error::Unavailable(format!("postgres: {text}"))
        } else {
            Error::Internal(format!("postgres: {text} (SQLSTATE {})", code.code()))
        };
    }
    let io = std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>());
    if e.is_closed() || io {
        Error::Unavailable(format!("postgres connection: {e}"))
    } else {
        Error::Internal(format!("postgres: {e}"))
    }
}

/// Maps a failure to get a pooled connection: every kind of it means the
/// database cannot serve now.
pub(crate) fn map_pool(e: PoolError) -> Error {
    match e {
        PoolError::Timeout(kind) => Error::Unavailable(format!(
            "no database connection became free in time ({kind:?})"
        )),
        PoolError::Backend(e) => {
            // A refused login says why only in the server's message.
            let why = e
                .as_db_error()
                .map_or_else(|| e.to_string(), |db| db.message().to_owned());
            Error::Unavailable(format!("cannot connect to postgres: {why}"))
        }
        PoolError::Closed => Error::Unavailable("the database pool is closed".into()),
        other => Error::Internal(format!("database pool: {other}")),
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

/// Shorthand for a stored value that makes no sense (a bug or damaged data).
pub(crate) fn corrupt(what: &str) -> Failure {
    Failure::Domain(Error::Internal(format!("unexpected stored value: {what}")))
}

/// Shorthand for a used-up limit.
pub(crate) fn limit_reached(limit: &'static str, max: u32) -> Failure {
    Failure::Domain(Error::LimitReached {
        limit,
        max: u64::from(max),
    })
}
