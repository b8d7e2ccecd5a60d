//! Accounts and login sessions.

use deadpool_postgres::GenericClient;
use qun_domain::model::{DeviceKind, NewUser, ProfileUpdate, Session, User};
use qun_domain::{Error, SessionId, UserId};
use tokio_postgres::Row;

use crate::error::{conflict, corrupt, not_found, Failure, Outcome};
use crate::sql::{self, execute, key, query, query_opt, u64_at, Lock, Tx};

/// The counter row holding the last automatically assigned number.
const USER_NUMBER_COUNTER: &str = "last_auto_user_number";

const USER_COLUMNS: &str = "id, nickname, signature, avatar, password_hash, disabled, created_at, \
                            likes, accept_temp_sessions";

fn user_from_row(row: &Row) -> Outcome<User> {
    Ok(User {
        id: UserId(u64_at(row, 0)?),
        nickname: row.try_get(1)?,
        signature: row.try_get(2)?,
        avatar: row.try_get(3)?,
        password_hash: row.try_get(4)?,
        disabled: row.try_get(5)?,
        created_at: row.try_get(6)?,
        likes: u64_at(row, 7)?,
        accept_temp_sessions: row.try_get(8)?,
    })
}

/// Whether a user with this number exists.
pub(crate) async fn user_exists<C: GenericClient>(c: &C, id: UserId) -> Outcome<bool> {
    let Some(id) = key(id.0) else {
        return Ok(false);
    };
    Ok(query_opt(c, "SELECT 1 FROM users WHERE id = $1", &[&id])
        .await?
        .is_some())
}

/// Creates a user with the chosen or the next free number. Every node picks
/// numbers under one advisory lock, so an automatic number never races a
/// chosen one, and the counter is read and moved by one node at a time.
pub(crate) async fn create_user(tx: &Tx<'_>, user: &NewUser) -> Outcome<UserId> {
    sql::lock(tx, Lock::UserNumbers).await?;
    let id = match user.number {
        Some(number) => {
            if user_exists(tx, number).await? {
                return Err(conflict("this qun number is taken"));
            }
            number
        }
        None => {
            let last = query_opt(
                tx,
                "SELECT value FROM counters WHERE name = $1",
                &[&USER_NUMBER_COUNTER],
            )
            .await?
            .map(|row| u64_at(&row, 0))
            .transpose()?;
            let mut candidate = match last {
                Some(last) => last
                    .checked_add(1)
                    .ok_or_else(exhausted)?
                    .max(user.first_number.0),
                None => user.first_number.0,
            };
            // Chosen ("pretty") numbers may already sit ahead of the counter.
            while user_exists(tx, UserId(candidate)).await? {
                candidate = candidate.checked_add(1).ok_or_else(exhausted)?;
            }
            let stored = key(candidate).ok_or_else(exhausted)?;
            execute(
                tx,
                "INSERT INTO counters (name, value) VALUES ($1, $2)
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                &[&USER_NUMBER_COUNTER, &stored],
            )
            .await?;
            UserId(candidate)
        }
    };
    let stored =
        key(id.0).ok_or_else(|| Error::invalid("number", "beyond the numbers qun can store"))?;
    execute(
        tx,
        "INSERT INTO users (id, nickname, password_hash, created_at) VALUES ($1, $2, $3, $4)",
        &[
            &stored,
            &user.nickname,
            &user.password_hash,
            &user.created_at,
        ],
    )
    .await?;
    Ok(id)
}

fn exhausted() -> Failure {
    Error::Internal("qun numbers are exhausted".into()).into()
}

/// A user by number.
pub(crate) async fn user<C: GenericClient>(c: &C, id: UserId) -> Outcome<Option<User>> {
    let Some(id) = key(id.0) else {
        return Ok(None);
    };
    query_opt(
        c,
        &format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"),
        &[&id],
    )
    .await?
    .map(|row| user_from_row(&row))
    .transpose()
}

/// Users after a number, ascending.
pub(crate) async fn users<C: GenericClient>(
    c: &C,
    after: UserId,
    limit: u32,
) -> Outcome<Vec<User>> {
    // Past the storable range there is nobody.
    let Some(after) = key(after.0) else {
        return Ok(Vec::new());
    };
    query(
        c,
        &format!("SELECT {USER_COLUMNS} FROM users WHERE id > $1 ORDER BY id LIMIT $2"),
        &[&after, &i64::from(limit)],
    )
    .await?
    .iter()
    .map(user_from_row)
    .collect()
}

/// Changes the given profile fields in one statement.
pub(crate) async fn update_profile(tx: &Tx<'_>, id: UserId, update: &ProfileUpdate) -> Outcome<()> {
    let Some(id) = key(id.0) else {
        return Err(not_found("user"));
    };
    let changed = execute(
        tx,
        "UPDATE users SET
             nickname = COALESCE($2, nickname),
             signature = COALESCE($3, signature),
             avatar = CASE WHEN $4 THEN $5 ELSE avatar END,
             accept_temp_sessions = COALESCE($6, accept_temp_sessions)
         WHERE id = $1",
        &[
            &id,
            &update.nickname,
            &update.signature,
            &update.avatar.is_some(),
            &update.avatar.clone().flatten(),
            &update.accept_temp_sessions,
        ],
    )
    .await?;
    if changed == 0 {
        return Err(not_found("user"));
    }
    Ok(())
}

/// Replaces the password hash.
pub(crate) async fn set_password_hash(tx: &Tx<'_>, id: UserId, hash: &str) -> Outcome<()> {
    let Some(id) = key(id.0) else {
        return Err(not_found("user"));
    };
    let changed = execute(
        tx,
        "UPDATE users SET password_hash = $2 WHERE id = $1",
        &[&id, &hash],
    )
    .await?;
    if changed == 0 {
        return Err(not_found("user"));
    }
    Ok(())
}

/// Disables or enables an account.
pub(crate) async fn set_disabled(tx: &Tx<'_>, id: UserId, disabled: bool) -> Outcome<()> {
    let Some(id) = key(id.0) else {
        return Err(not_found("user"));
    };
    let changed = execute(
        tx,
        "UPDATE users SET disabled = $2 WHERE id = $1",
        &[&id, &disabled],
    )
    .await?;
    if changed == 0 {
        return Err(not_found("user"));
    }
    Ok(())
}

const SESSION_COLUMNS: &str =
    "id, user_id, token_hash, device_kind, device_name, created_at, expires_at, revoked_at";

fn session_from_row(row: &Row) -> Outcome<Session> {
    let kind: String = row.try_get(3)?;
    Ok(Session {
        id: SessionId(row.try_get(0)?),
        user: UserId(u64_at(row, 1)?),
        token_hash: row.try_get(2)?,
        device_kind: DeviceKind::parse(&kind)
            .ok_or_else(|| corrupt(&format!("device kind {kind:?}")))?,
        device_name: row.try_get(4)?,
        created_at: row.try_get(5)?,
        expires_at: row.try_get(6)?,
        revoked_at: row.try_get(7)?,
    })
}

/// Stores a new session.
pub(crate) async fn create_session(tx: &Tx<'_>, session: &Session) -> Outcome<()> {
    if !user_exists(tx, session.user).await? {
        return Err(not_found("user"));
    }
    let user = key(session.user.0).ok_or_else(|| not_found("user"))?;
    execute(
        tx,
        &format!(
            "INSERT INTO sessions ({SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ),
        &[
            &session.id.0,
            &user,
            &session.token_hash,
            &session.device_kind.as_str(),
            &session.device_name,
            &session.created_at,
            &session.expires_at,
            &session.revoked_at,
        ],
    )
    .await?;
    Ok(())
}

/// The session with this token hash.
pub(crate) async fn session_by_token<C: GenericClient>(
    c: &C,
    token_hash: &str,
) -> Outcome<Option<Session>> {
    query_opt(
        c,
        &format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE token_hash = $1"),
        &[&token_hash],
    )
    .await?
    .map(|row| session_from_row(&row))
    .transpose()
}

/// A session by id.
pub(crate) async fn session<C: GenericClient>(c: &C, id: &SessionId) -> Outcome<Option<Session>> {
    query_opt(
        c,
        &format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = $1"),
        &[&id.0],
    )
    .await?
    .map(|row| session_from_row(&row))
    .transpose()
}

/// A user's sessions that are not revoked, oldest first.
pub(crate) async fn sessions<C: GenericClient>(c: &C, user: UserId) -> Outcome<Vec<Session>> {
    let Some(user) = key(user.0) else {
        return Ok(Vec::new());
    };
    query(
        c,
        &format!(
            "SELECT {SESSION_COLUMNS} FROM sessions
             WHERE user_id = $1 AND revoked_at IS NULL ORDER BY created_at, id"
        ),
        &[&user],
    )
    .await?
    .iter()
    .map(session_from_row)
    .collect()
}

/// Revokes the user's live sessions (all or `only`) except `keep`, in one
/// statement: a concurrent revocation of the same session reports it once.
pub(crate) async fn revoke_sessions(
    tx: &Tx<'_>,
    user: UserId,
    only: Option<&SessionId>,
    keep: Option<&SessionId>,
    at: i64,
) -> Outcome<Vec<SessionId>> {
    let Some(user) = key(user.0) else {
        return Ok(Vec::new());
    };
    let rows = query(
        tx,
        "UPDATE sessions SET revoked_at = $4
         WHERE user_id = $1 AND revoked_at IS NULL
           AND ($2::TEXT IS NULL OR id = $2) AND ($3::TEXT IS NULL OR id <> $3)
         RETURNING id",
        &[&user, &only.map(|s| &s.0), &keep.map(|s| &s.0), &at],
    )
    .await?;
    let mut revoked = rows
        .iter()
        .map(|row| row.try_get(0).map(SessionId))
        .collect::<Result<Vec<_>, _>>()?;
    revoked.sort();
    Ok(revoked)
}
