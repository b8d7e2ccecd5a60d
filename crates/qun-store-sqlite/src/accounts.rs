//! Accounts and login sessions.

use qun_domain::model::{DeviceKind, NewUser, ProfileUpdate, Session, User};
use qun_domain::{Error, SessionId, UserId};
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::error::{conflict, corrupt, not_found, Outcome};

/// The counter row holding the last automatically assigned number.
const USER_NUMBER_COUNTER: &str = "last_auto_user_number";

const USER_COLUMNS: &str = "id, nickname, signature, avatar, password_hash, disabled, created_at, \
                            likes, accept_temp_sessions";

fn user_from_row(row: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: UserId(row.get(0)?),
        nickname: row.get(1)?,
        signature: row.get(2)?,
        avatar: row.get(3)?,
        password_hash: row.get(4)?,
        disabled: row.get(5)?,
        created_at: row.get(6)?,
        likes: row.get(7)?,
        accept_temp_sessions: row.get(8)?,
    })
}

/// Whether a user with this number exists.
pub(crate) fn user_exists(conn: &Connection, id: UserId) -> Outcome<bool> {
    let found = conn
        .prepare_cached("SELECT 1 FROM users WHERE id = ?1")?
        .query_row([id.0], |_| Ok(()))
        .optional()?;
    Ok(found.is_some())
}

/// Creates a user with the chosen or the next free number.
pub(crate) fn create_user(conn: &Connection, user: &NewUser) -> Outcome<UserId> {
    let id = match user.number {
        Some(number) => {
            if user_exists(conn, number)? {
                return Err(conflict("this qun number is taken"));
            }
            number
        }
        None => {
            let last: Option<u64> = conn
                .prepare_cached("SELECT value FROM counters WHERE name = ?1")?
                .query_row([USER_NUMBER_COUNTER], |row| row.get(0))
                .optional()?;
            let mut candidate = match last {
                Some(last) => last
                    .checked_add(1)
                    .ok_or_else(exhausted)?
                    .max(user.first_number.0),
                None => user.first_number.0,
            };
            // Chosen ("pretty") numbers may already sit ahead of the counter.
            while user_exists(conn, UserId(candidate))? {
                candidate = candidate.checked_add(1).ok_or_else(exhausted)?;
            }
            conn.prepare_cached(
                "INSERT INTO counters (name, value) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![USER_NUMBER_COUNTER, candidate])?;
            UserId(candidate)
        }
    };
    conn.prepare_cached(
        "INSERT INTO users (id, nickname, password_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        id.0,
        user.nickname,
        user.password_hash,
        user.created_at
    ])?;
    Ok(id)
}

fn exhausted() -> crate::error::Failure {
    Error::Internal("qun numbers are exhausted".into()).into()
}

/// A user by number.
pub(crate) fn user(conn: &Connection, id: UserId) -> Outcome<Option<User>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"))?
        .query_row([id.0], user_from_row)
        .optional()?)
}

/// Users after a number, ascending.
pub(crate) fn users(conn: &Connection, after: UserId, limit: u32) -> Outcome<Vec<User>> {
    // Past the storable range there is nobody.
    let Ok(after) = i64::try_from(after.0) else {
        return Ok(Vec::new());
    };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE id > ?1 ORDER BY id LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![after, limit], user_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Changes the given profile fields.
pub(crate) fn update_profile(conn: &Connection, id: UserId, update: &ProfileUpdate) -> Outcome<()> {
    if !user_exists(conn, id)? {
        return Err(not_found("user"));
    }
    if let Some(nickname) = &update.nickname {
        conn.prepare_cached("UPDATE users SET nickname = ?2 WHERE id = ?1")?
            .execute(params![id.0, nickname])?;
    }
    if let Some(signature) = &update.signature {
        conn.prepare_cached("UPDATE users SET signature = ?2 WHERE id = ?1")?
            .execute(params![id.0, signature])?;
    }
    if let Some(avatar) = &update.avatar {
        conn.prepare_cached("UPDATE users SET avatar = ?2 WHERE id = ?1")?
            .execute(params![id.0, avatar])?;
    }
    if let Some(accept) = update.accept_temp_sessions {
        conn.prepare_cached("UPDATE users SET accept_temp_sessions = ?2 WHERE id = ?1")?
            .execute(params![id.0, accept])?;
    }
    Ok(())
}

/// Replaces the password hash.
pub(crate) fn set_password_hash(conn: &Connection, id: UserId, hash: &str) -> Outcome<()> {
    let changed = conn
        .prepare_cached("UPDATE users SET password_hash = ?2 WHERE id = ?1")?
        .execute(params![id.0, hash])?;
    if changed == 0 {
        return Err(not_found("user"));
    }
    Ok(())
}

/// Disables or enables an account.
pub(crate) fn set_disabled(conn: &Connection, id: UserId, disabled: bool) -> Outcome<()> {
    let changed = conn
        .prepare_cached("UPDATE users SET disabled = ?2 WHERE id = ?1")?
        .execute(params![id.0, disabled])?;
    if changed == 0 {
        return Err(not_found("user"));
    }
    Ok(())
}

const SESSION_COLUMNS: &str =
    "id, user_id, token_hash, device_kind, device_name, created_at, expires_at, revoked_at";

fn session_from_row(row: &Row<'_>) -> rusqlite::Result<(Session, String)> {
    let kind: String = row.get(3)?;
    Ok((
        Session {
            id: SessionId(row.get(0)?),
            user: UserId(row.get(1)?),
            token_hash: row.get(2)?,
            // Replaced below; rusqlite closures cannot return domain errors.
            device_kind: DeviceKind::Web,
            device_name: row.get(4)?,
            created_at: row.get(5)?,
            expires_at: row.get(6)?,
            revoked_at: row.get(7)?,
        },
        kind,
    ))
}

fn finish_session((mut session, kind): (Session, String)) -> Outcome<Session> {
    session.device_kind =
        DeviceKind::parse(&kind).ok_or_else(|| corrupt(&format!("device kind {kind:?}")))?;
    Ok(session)
}

/// Stores a new session.
pub(crate) fn create_session(conn: &Connection, session: &Session) -> Outcome<()> {
    if !user_exists(conn, session.user)? {
        return Err(not_found("user"));
    }
    conn.prepare_cached(&format!(
        "INSERT INTO sessions ({SESSION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
    ))?
    .execute(params![
        session.id.0,
        session.user.0,
        session.token_hash,
        session.device_kind.as_str(),
        session.device_name,
        session.created_at,
        session.expires_at,
        session.revoked_at,
    ])?;
    Ok(())
}

/// The session with this token hash.
pub(crate) fn session_by_token(conn: &Connection, token_hash: &str) -> Outcome<Option<Session>> {
    conn.prepare_cached(&format!(
        "SELECT {SESSION_COLUMNS} FROM sessions WHERE token_hash = ?1"
    ))?
    .query_row([token_hash], session_from_row)
    .optional()?
    .map(finish_session)
    .transpose()
}

/// A session by id.
pub(crate) fn session(conn: &Connection, id: &SessionId) -> Outcome<Option<Session>> {
    conn.prepare_cached(&format!(
        "SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?1"
    ))?
    .query_row([&id.0], session_from_row)
    .optional()?
    .map(finish_session)
    .transpose()
}

/// A user's sessions that are not revoked, oldest first.
pub(crate) fn sessions(conn: &Connection, user: UserId) -> Outcome<Vec<Session>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {SESSION_COLUMNS} FROM sessions
         WHERE user_id = ?1 AND revoked_at IS NULL ORDER BY created_at, id"
    ))?;
    let rows = stmt.query_map([user.0], session_from_row)?;
    rows.map(|row| finish_session(row?)).collect()
}

/// Revokes the user's live sessions (all or `only`) except `keep`.
pub(crate) fn revoke_sessions(
    conn: &Connection,
    user: UserId,
    only: Option<&SessionId>,
    keep: Option<&SessionId>,
    at: i64,
) -> Outcome<Vec<SessionId>> {
    let mut stmt = conn.prepare_cached(
        "UPDATE sessions SET revoked_at = ?4
         WHERE user_id = ?1 AND revoked_at IS NULL
           AND (?2 IS NULL OR id = ?2) AND (?3 IS NULL OR id <> ?3)
         RETURNING id",
    )?;
    let rows = stmt.query_map(
        params![user.0, only.map(|s| &s.0), keep.map(|s| &s.0), at],
        |row| row.get::<_, String>(0),
    )?;
    let mut revoked = rows
        .map(|r| r.map(SessionId))
        .collect::<rusqlite::Result<Vec<_>>>()?;
    revoked.sort();
    Ok(revoked)
}
