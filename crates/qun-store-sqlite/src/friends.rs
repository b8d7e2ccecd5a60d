//! Friend requests, friend lists, categories, the blacklist and likes.

use qun_domain::model::{
    Category, DirectStanding, Friend, FriendRequest, FriendUpdate, RequestStatus,
};
use qun_domain::{CategoryId, ConversationId, Error, FriendRequestId, UserId, DEFAULT_CATEGORY};
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::conversations;
use crate::error::{conflict, corrupt, not_found, Outcome};

const REQUEST_COLUMNS: &str = "id, from_user, to_user, message, status, created_at";

fn request_from_row(row: &Row<'_>) -> rusqlite::Result<(FriendRequest, String)> {
    Ok((
        FriendRequest {
            id: FriendRequestId(row.get(0)?),
            from: UserId(row.get(1)?),
            to: UserId(row.get(2)?),
            message: row.get(3)?,
            // Replaced below; rusqlite closures cannot return domain errors.
            status: RequestStatus::Pending,
            created_at: row.get(5)?,
        },
        row.get(4)?,
    ))
}

fn finish_request((mut request, status): (FriendRequest, String)) -> Outcome<FriendRequest> {
    request.status = RequestStatus::parse(&status)
        .ok_or_else(|| corrupt(&format!("friend request status {status:?}")))?;
    Ok(request)
}

/// Stores a pending request.
pub(crate) fn create_request(
    conn: &Connection,
    from: UserId,
    to: UserId,
    message: &str,
    at: i64,
) -> Outcome<FriendRequest> {
    let pending = conn
        .prepare_cached(
            "SELECT 1 FROM friend_requests
             WHERE from_user = ?1 AND to_user = ?2 AND status = 'pending'",
        )?
        .query_row([from.0, to.0], |_| Ok(()))
        .optional()?;
    if pending.is_some() {
        return Err(conflict("a friend request is already pending"));
    }
    for user in [from, to] {
        if !crate::accounts::user_exists(conn, user)? {
            return Err(not_found("user"));
        }
    }
    let id: u64 = conn
        .prepare_cached(
            "INSERT INTO friend_requests (from_user, to_user, message, status, created_at)
             VALUES (?1, ?2, ?3, 'pending', ?4) RETURNING id",
        )?
        .query_row(params![from.0, to.0, message, at], |row| row.get(0))?;
    Ok(FriendRequest {
        id: FriendRequestId(id),
        from,
        to,
        message: message.to_owned(),
        status: RequestStatus::Pending,
        created_at: at,
    })
}

/// A request by id.
pub(crate) fn request(conn: &Connection, id: FriendRequestId) -> Outcome<Option<FriendRequest>> {
    conn.prepare_cached(&format!(
        "SELECT {REQUEST_COLUMNS} FROM friend_requests WHERE id = ?1"
    ))?
    .query_row([id.0], request_from_row)
    .optional()?
    .map(finish_request)
    .transpose()
}

/// Pending requests from or to the user, oldest first.
pub(crate) fn pending_requests(conn: &Connection, user: UserId) -> Outcome<Vec<FriendRequest>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {REQUEST_COLUMNS} FROM friend_requests
         WHERE status = 'pending' AND (from_user = ?1 OR to_user = ?1)
         ORDER BY created_at, id"
    ))?;
    let rows = stmt.query_map([user.0], request_from_row)?;
    rows.map(|row| finish_request(row?)).collect()
}

/// The pending request `id`, or the documented error.
fn pending_request(conn: &Connection, id: FriendRequestId) -> Outcome<FriendRequest> {
    let request = request(conn, id)?.ok_or_else(|| not_found("friend request"))?;
    if request.status != RequestStatus::Pending {
        return Err(conflict("the friend request is no longer pending"));
    }
    Ok(request)
}

/// Whether `owner` has a category `id` (the implicit default always exists).
fn category_exists(conn: &Connection, owner: UserId, id: CategoryId) -> Outcome<bool> {
    if id == DEFAULT_CATEGORY {
        return Ok(true);
    }
    let found = conn
        .prepare_cached("SELECT 1 FROM categories WHERE id = ?1 AND owner = ?2")?
        .query_row([id.0, owner.0], |_| Ok(()))
        .optional()?;
    Ok(found.is_some())
}

/// Accepts a pending request and everything that follows from it.
pub(crate) fn accept_request(
    conn: &Connection,
    id: FriendRequestId,
    remark: Option<&str>,
    category: CategoryId,
    at: i64,
) -> Outcome<ConversationId> {
    let request = pending_request(conn, id)?;
    if !category_exists(conn, request.to, category)? {
        return Err(not_found("category"));
    }
    // This one and any pending request the other way round.
    conn.prepare_cached(
        "UPDATE friend_requests SET status = 'accepted'
         WHERE status = 'pending'
           AND ((from_user = ?1 AND to_user = ?2) OR (from_user = ?2 AND to_user = ?1))",
    )?
    .execute([request.from.0, request.to.0])?;
    let conversation = conversations::find_or_create_direct(conn, request.from, request.to, at)?;
    // The recipient answered, so their entry takes the remark and category;
    // an entry that somehow exists already keeps its history.
    conn.prepare_cached(
        "INSERT INTO friends (owner, friend, remark, category, conversation, since)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (owner, friend) DO UPDATE
         SET remark = excluded.remark, category = excluded.category",
    )?
    .execute(params![
        request.to.0,
        request.from.0,
        remark,
        category.0,
        conversation.0,
        at
    ])?;
    conn.prepare_cached(
        "INSERT INTO friends (owner, friend, remark, category, conversation, since)
         VALUES (?1, ?2, NULL, 0, ?3, ?4)
         ON CONFLICT (owner, friend) DO NOTHING",
    )?
    .execute(params![request.from.0, request.to.0, conversation.0, at])?;
    Ok(conversation)
}

/// Refuses a pending request.
pub(crate) fn refuse_request(conn: &Connection, id: FriendRequestId) -> Outcome<FriendRequest> {
    let mut request = pending_request(conn, id)?;
    conn.prepare_cached("UPDATE friend_requests SET status = 'refused' WHERE id = ?1")?
        .execute([id.0])?;
    request.status = RequestStatus::Refused;
    Ok(request)
}

const FRIEND_COLUMNS: &str = "friend, remark, category, conversation, since";

fn friend_from_row(row: &Row<'_>) -> rusqlite::Result<Friend> {
    Ok(Friend {
        user: UserId(row.get(0)?),
        remark: row.get(1)?,
        category: CategoryId(row.get(2)?),
        conversation: ConversationId(row.get(3)?),
        since: row.get(4)?,
    })
}

/// The user's friends, oldest friendship first.
pub(crate) fn friends(conn: &Connection, user: UserId) -> Outcome<Vec<Friend>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {FRIEND_COLUMNS} FROM friends WHERE owner = ?1 ORDER BY since, friend"
    ))?;
    let rows = stmt.query_map([user.0], friend_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// One entry of the user's friend list.
pub(crate) fn friend(conn: &Connection, user: UserId, other: UserId) -> Outcome<Option<Friend>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {FRIEND_COLUMNS} FROM friends WHERE owner = ?1 AND friend = ?2"
        ))?
        .query_row([user.0, other.0], friend_from_row)
        .optional()?)
}

/// Changes the user's entry for `other`.
pub(crate) fn update_friend(
    conn: &Connection,
    user: UserId,
    other: UserId,
    update: &FriendUpdate,
) -> Outcome<()> {
    if friend(conn, user, other)?.is_none() {
        return Err(not_found("friend"));
    }
    if let Some(category) = update.category {
        if !category_exists(conn, user, category)? {
            return Err(not_found("category"));
        }
        conn.prepare_cached("UPDATE friends SET category = ?3 WHERE owner = ?1 AND friend = ?2")?
            .execute([user.0, other.0, category.0])?;
    }
    if let Some(remark) = &update.remark {
        conn.prepare_cached("UPDATE friends SET remark = ?3 WHERE owner = ?1 AND friend = ?2")?
            .execute(params![user.0, other.0, remark])?;
    }
    Ok(())
}

/// Ends a friendship both ways; the conversation stays.
pub(crate) fn remove_friend(conn: &Connection, a: UserId, b: UserId) -> Outcome<bool> {
    let removed = conn
        .prepare_cached(
            "DELETE FROM friends
             WHERE (owner = ?1 AND friend = ?2) OR (owner = ?2 AND friend = ?1)",
        )?
        .execute([a.0, b.0])?;
    Ok(removed > 0)
}

/// The user's own categories, in creation order.
pub(crate) fn categories(conn: &Connection, user: UserId) -> Outcome<Vec<Category>> {
    let mut stmt =
        conn.prepare_cached("SELECT id, name FROM categories WHERE owner = ?1 ORDER BY id")?;
    let rows = stmt.query_map([user.0], |row| {
        Ok(Category {
            id: CategoryId(row.get(0)?),
            name: row.get(1)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Creates a category unless the user has `max` already.
pub(crate) fn create_category(
    conn: &Connection,
    user: UserId,
    name: &str,
    max: usize,
) -> Outcome<Category> {
    let count: u64 = conn
        .prepare_cached("SELECT COUNT(*) FROM categories WHERE owner = ?1")?
        .query_row([user.0], |row| row.get(0))?;
    let max = u64::try_from(max).unwrap_or(u64::MAX);
    if count >= max {
        return Err(Error::LimitReached {
            limit: "max_categories",
            max,
        }
        .into());
    }
    if !crate::accounts::user_exists(conn, user)? {
        return Err(not_found("user"));
    }
    let id: u64 = conn
        .prepare_cached("INSERT INTO categories (owner, name) VALUES (?1, ?2) RETURNING id")?
        .query_row(params![user.0, name], |row| row.get(0))?;
    Ok(Category {
        id: CategoryId(id),
        name: name.to_owned(),
    })
}

/// Renames one of the user's categories.
pub(crate) fn rename_category(
    conn: &Connection,
    user: UserId,
    id: CategoryId,
    name: &str,
) -> Outcome<()> {
    let changed = conn
        .prepare_cached("UPDATE categories SET name = ?3 WHERE id = ?1 AND owner = ?2")?
        .execute(params![id.0, user.0, name])?;
    if changed == 0 {
        return Err(not_found("category"));
    }
    Ok(())
}

/// Deletes one of the user's categories; its friends move to the default.
pub(crate) fn delete_category(conn: &Connection, user: UserId, id: CategoryId) -> Outcome<()> {
    let deleted = conn
        .prepare_cached("DELETE FROM categories WHERE id = ?1 AND owner = ?2")?
        .execute([id.0, user.0])?;
    if deleted == 0 {
        return Err(not_found("category"));
    }
    conn.prepare_cached("UPDATE friends SET category = 0 WHERE owner = ?1 AND category = ?2")?
        .execute([user.0, id.0])?;
    Ok(())
}

/// Blacklists `other`; a repeat keeps the original entry.
pub(crate) fn block(conn: &Connection, user: UserId, other: UserId, at: i64) -> Outcome<()> {
    conn.prepare_cached(
        "INSERT INTO blocks (owner, other, at) VALUES (?1, ?2, ?3)
         ON CONFLICT (owner, other) DO NOTHING",
    )?
    .execute(params![user.0, other.0, at])?;
    Ok(())
}

/// Removes `other` from the blacklist.
pub(crate) fn unblock(conn: &Connection, user: UserId, other: UserId) -> Outcome<bool> {
    let removed = conn
        .prepare_cached("DELETE FROM blocks WHERE owner = ?1 AND other = ?2")?
        .execute([user.0, other.0])?;
    Ok(removed > 0)
}

/// The user's blacklist, oldest entry first.
pub(crate) fn blocked(conn: &Connection, user: UserId) -> Outcome<Vec<(UserId, i64)>> {
    let mut stmt =
        conn.prepare_cached("SELECT other, at FROM blocks WHERE owner = ?1 ORDER BY at, other")?;
    let rows = stmt.query_map([user.0], |row| Ok((UserId(row.get(0)?), row.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Whether either user blacklisted the other.
pub(crate) fn is_blocked_either(conn: &Connection, a: UserId, b: UserId) -> Outcome<bool> {
    let found = conn
        .prepare_cached(
            "SELECT 1 FROM blocks
             WHERE (owner = ?1 AND other = ?2) OR (owner = ?2 AND other = ?1) LIMIT 1",
        )?
        .query_row([a.0, b.0], |_| Ok(()))
        .optional()?;
    Ok(found.is_some())
}

/// Whether either blacklisted the other, and whether `user` has `other` as a friend.
pub(crate) fn direct_standing(
    conn: &Connection,
    user: UserId,
    other: UserId,
) -> Outcome<DirectStanding> {
    let (blocked, friends) = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM blocks
                            WHERE (owner = ?1 AND other = ?2) OR (owner = ?2 AND other = ?1)),
                    EXISTS (SELECT 1 FROM friends WHERE owner = ?1 AND friend = ?2)",
        )?
        .query_row([user.0, other.0], |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok(DirectStanding { blocked, friends })
}

/// Counts one like for the day unless `limit` were given already.
pub(crate) fn add_like(
    conn: &Connection,
    from: UserId,
    to: UserId,
    day: i64,
    limit: u32,
) -> Outcome<u32> {
    let given: u32 = conn
        .prepare_cached(
            "SELECT count FROM likes WHERE from_user = ?1 AND to_user = ?2 AND day = ?3",
        )?
        .query_row(params![from.0, to.0, day], |row| row.get(0))
        .optional()?
        .unwrap_or(0);
    if given >= limit {
        return Err(Error::LimitReached {
            limit: "likes_per_friend_per_day",
            max: u64::from(limit),
        }
        .into());
    }
    let changed = conn
        .prepare_cached("UPDATE users SET likes = likes + 1 WHERE id = ?1")?
        .execute([to.0])?;
    if changed == 0 {
        return Err(not_found("user"));
    }
    let count = given + 1;
    conn.prepare_cached(
        "INSERT INTO likes (from_user, to_user, day, count) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (from_user, to_user, day) DO UPDATE SET count = excluded.count",
    )?
    .execute(params![from.0, to.0, day, count])?;
    Ok(count)
}
