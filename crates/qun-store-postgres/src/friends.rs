//! Friend requests, friend lists, categories, the blacklist and likes.
//!
//! Several nodes may act on the same rows at once, so each check that a
//! write depends on either holds a row lock until commit or is folded into
//! the write itself (a conditional upsert, an update that reports what it
//! changed).

use deadpool_postgres::GenericClient;
use qun_domain::model::{
    Category, DirectStanding, Friend, FriendRequest, FriendUpdate, RequestStatus,
};
use qun_domain::{CategoryId, ConversationId, Error, FriendRequestId, UserId, DEFAULT_CATEGORY};
use tokio_postgres::Row;

use crate::accounts::user_exists;
use crate::conversations;
use crate::error::{conflict, corrupt, limit_reached, not_found, Outcome};
use crate::sql::{execute, key, query, query_one, query_opt, u64_at, Tx};

const REQUEST_COLUMNS: &str = "id, from_user, to_user, message, status, created_at";

fn request_from_row(row: &Row) -> Outcome<FriendRequest> {
    let status: String = row.try_get(4)?;
    Ok(FriendRequest {
        id: FriendRequestId(u64_at(row, 0)?),
        from: UserId(u64_at(row, 1)?),
        to: UserId(u64_at(row, 2)?),
        message: row.try_get(3)?,
        status: RequestStatus::parse(&status)
            .ok_or_else(|| corrupt(&format!("friend request status {status:?}")))?,
        created_at: row.try_get(5)?,
    })
}

/// Stores a pending request. Two nodes storing the same one at once meet
/// the pending-request index: the second is a conflict.
pub(crate) async fn create_request(
    tx: &Tx<'_>,
    from: UserId,
    to: UserId,
    message: &str,
    at: i64,
) -> Outcome<FriendRequest> {
    let (Some(from_key), Some(to_key)) = (key(from.0), key(to.0)) else {
        return Err(not_found("user"));
    };
    let pending = query_opt(
        tx,
        "SELECT 1 FROM friend_requests
         WHERE from_user = $1 AND to_user = $2 AND status = 'pending'",
        &[&from_key, &to_key],
    )
    .await?;
    if pending.is_some() {
        return Err(conflict("a friend request is already pending"));
    }
    for user in [from, to] {
        if !user_exists(tx, user).await? {
            return Err(not_found("user"));
        }
    }
    let row = query_one(
        tx,
        "INSERT INTO friend_requests (from_user, to_user, message, status, created_at)
         VALUES ($1, $2, $3, 'pending', $4) RETURNING id",
        &[&from_key, &to_key, &message, &at],
    )
    .await?;
    Ok(FriendRequest {
        id: FriendRequestId(u64_at(&row, 0)?),
        from,
        to,
        message: message.to_owned(),
        status: RequestStatus::Pending,
        created_at: at,
    })
}

/// A request by id.
pub(crate) async fn request<C: GenericClient>(
    c: &C,
    id: FriendRequestId,
) -> Outcome<Option<FriendRequest>> {
    let Some(id) = key(id.0) else {
        return Ok(None);
    };
    query_opt(
        c,
        &format!("SELECT {REQUEST_COLUMNS} FROM friend_requests WHERE id = $1"),
        &[&id],
    )
    .await?
    .map(|row| request_from_row(&row))
    .transpose()
}

/// Pending requests from or to the user, oldest first.
pub(crate) async fn pending_requests<C: GenericClient>(
    c: &C,
    user: UserId,
) -> Outcome<Vec<FriendRequest>> {
    let Some(user) = key(user.0) else {
        return Ok(Vec::new());
    };
    query(
        c,
        &format!(
            "SELECT {REQUEST_COLUMNS} FROM friend_requests
             WHERE status = 'pending' AND (from_user = $1 OR to_user = $1)
             ORDER BY created_at, id"
        ),
        &[&user],
    )
    .await?
    .iter()
    .map(request_from_row)
    .collect()
}

/// Locks the pair's pending requests (both directions) in id order and
/// returns their ids. Two acceptances of the pair, one each way, on two
/// nodes thus wait for each other instead of deadlocking; the second then
/// finds nothing pending.
async fn lock_pending_between(tx: &Tx<'_>, a: UserId, b: UserId) -> Outcome<Vec<u64>> {
    let (Some(a), Some(b)) = (key(a.0), key(b.0)) else {
        return Ok(Vec::new());
    };
    query(
        tx,
        "SELECT id FROM friend_requests
         WHERE status = 'pending'
           AND ((from_user = $1 AND to_user = $2) OR (from_user = $2 AND to_user = $1))
         ORDER BY id FOR UPDATE",
        &[&a, &b],
    )
    .await?
    .iter()
    .map(|row| u64_at(row, 0))
    .collect()
}

/// Whether `owner` has a category `id` (the implicit default always exists).
async fn category_exists<C: GenericClient>(c: &C, owner: UserId, id: CategoryId) -> Outcome<bool> {
    if id == DEFAULT_CATEGORY {
        return Ok(true);
    }
    let (Some(id), Some(owner)) = (key(id.0), key(owner.0)) else {
        return Ok(false);
    };
    Ok(query_opt(
        c,
        "SELECT 1 FROM categories WHERE id = $1 AND owner = $2",
        &[&id, &owner],
    )
    .await?
    .is_some())
}

/// Accepts a pending request and everything that follows from it.
pub(crate) async fn accept_request(
    tx: &Tx<'_>,
    id: FriendRequestId,
    remark: Option<&str>,
    category: CategoryId,
    at: i64,
) -> Outcome<ConversationId> {
    let request = request(tx, id)
        .await?
        .ok_or_else(|| not_found("friend request"))?;
    let pending = lock_pending_between(tx, request.from, request.to).await?;
    if !pending.contains(&id.0) {
        return Err(conflict("the friend request is no longer pending"));
    }
    if !category_exists(tx, request.to, category).await? {
        return Err(not_found("category"));
    }
    let ids: Vec<i64> = pending.iter().filter_map(|id| key(*id)).collect();
    // This one and any pending request the other way round.
    execute(
        tx,
        "UPDATE friend_requests SET status = 'accepted' WHERE id = ANY($1)",
        &[&ids],
    )
    .await?;
    let conversation =
        conversations::find_or_create_direct(tx, request.from, request.to, at).await?;
    let (Some(from), Some(to), Some(category), Some(conv)) = (
        key(request.from.0),
        key(request.to.0),
        key(category.0),
        key(conversation.0),
    ) else {
        return Err(corrupt("an id beyond the storable range"));
    };
    // The recipient answered, so their entry takes the remark and category;
    // an entry that somehow exists already keeps its history.
    execute(
        tx,
        "INSERT INTO friends (owner, friend, remark, category, conversation, since)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (owner, friend) DO UPDATE
         SET remark = excluded.remark, category = excluded.category",
        &[&to, &from, &remark, &category, &conv, &at],
    )
    .await?;
    execute(
        tx,
        "INSERT INTO friends (owner, friend, remark, category, conversation, since)
         VALUES ($1, $2, NULL, 0, $3, $4)
         ON CONFLICT (owner, friend) DO NOTHING",
        &[&from, &to, &conv, &at],
    )
    .await?;
    Ok(conversation)
}

/// Refuses a pending request, in one conditional update.
pub(crate) async fn refuse_request(tx: &Tx<'_>, id: FriendRequestId) -> Outcome<FriendRequest> {
    let Some(stored) = key(id.0) else {
        return Err(not_found("friend request"));
    };
    let refused = query_opt(
        tx,
        &format!(
            "UPDATE friend_requests SET status = 'refused'
             WHERE id = $1 AND status = 'pending'
             RETURNING {REQUEST_COLUMNS}"
        ),
        &[&stored],
    )
    .await?;
    match refused {
        Some(row) => request_from_row(&row),
        None if request(tx, id).await?.is_some() => {
            Err(conflict("the friend request is no longer pending"))
        }
        None => Err(not_found("friend request")),
    }
}

const FRIEND_COLUMNS: &str = "friend, remark, category, conversation, since";

fn friend_from_row(row: &Row) -> Outcome<Friend> {
    Ok(Friend {
        user: UserId(u64_at(row, 0)?),
        remark: row.try_get(1)?,
        category: CategoryId(u64_at(row, 2)?),
        conversation: ConversationId(u64_at(row, 3)?),
        since: row.try_get(4)?,
    })
}

/// The user's friends, oldest friendship first.
pub(crate) async fn friends<C: GenericClient>(c: &C, user: UserId) -> Outcome<Vec<Friend>> {
    let Some(user) = key(user.0) else {
        return Ok(Vec::new());
    };
    query(
        c,
        &format!("SELECT {FRIEND_COLUMNS} FROM friends WHERE owner = $1 ORDER BY since, friend"),
        &[&user],
    )
    .await?
    .iter()
    .map(friend_from_row)
    .collect()
}

/// One entry of the user's friend list.
pub(crate) async fn friend<C: GenericClient>(
    c: &C,
    user: UserId,
    other: UserId,
) -> Outcome<Option<Friend>> {
    let (Some(user), Some(other)) = (key(user.0), key(other.0)) else {
        return Ok(None);
    };
    query_opt(
        c,
        &format!("SELECT {FRIEND_COLUMNS} FROM friends WHERE owner = $1 AND friend = $2"),
        &[&user, &other],
    )
    .await?
    .map(|row| friend_from_row(&row))
    .transpose()
}

/// Changes the user's entry for `other`.
pub(crate) async fn update_friend(
    tx: &Tx<'_>,
    user: UserId,
    other: UserId,
    update: &FriendUpdate,
) -> Outcome<()> {
    if friend(tx, user, other).await?.is_none() {
        return Err(not_found("friend"));
    }
    let (Some(user_key), Some(other_key)) = (key(user.0), key(other.0)) else {
        return Err(not_found("friend"));
    };
    if let Some(category) = update.category {
        if !category_exists(tx, user, category).await? {
            return Err(not_found("category"));
        }
        let category = key(category.0).ok_or_else(|| not_found("category"))?;
        execute(
            tx,
            "UPDATE friends SET category = $3 WHERE owner = $1 AND friend = $2",
            &[&user_key, &other_key, &category],
        )
        .await?;
    }
    if let Some(remark) = &update.remark {
        execute(
            tx,
            "UPDATE friends SET remark = $3 WHERE owner = $1 AND friend = $2",
            &[&user_key, &other_key, remark],
        )
        .await?;
    }
    Ok(())
}

/// Ends a friendship both ways; the conversation stays.
pub(crate) async fn remove_friend(tx: &Tx<'_>, a: UserId, b: UserId) -> Outcome<bool> {
    let (Some(a), Some(b)) = (key(a.0), key(b.0)) else {
        return Ok(false);
    };
    let removed = execute(
        tx,
        "DELETE FROM friends
         WHERE (owner = $1 AND friend = $2) OR (owner = $2 AND friend = $1)",
        &[&a, &b],
    )
    .await?;
    Ok(removed > 0)
}

/// The user's own categories, in creation order.
pub(crate) async fn categories<C: GenericClient>(c: &C, user: UserId) -> Outcome<Vec<Category>> {
    let Some(user) = key(user.0) else {
        return Ok(Vec::new());
    };
    query(
        c,
        "SELECT id, name FROM categories WHERE owner = $1 ORDER BY id",
        &[&user],
    )
    .await?
    .iter()
    .map(|row| {
        Ok(Category {
            id: CategoryId(u64_at(row, 0)?),
            name: row.try_get(1)?,
        })
    })
    .collect()
}

/// Creates a category unless the user has `max` already. The user's row is
/// locked first, so two nodes creating at once count one after the other.
pub(crate) async fn create_category(
    tx: &Tx<'_>,
    user: UserId,
    name: &str,
    max: usize,
) -> Outcome<Category> {
    let Some(user_key) = key(user.0) else {
        return Err(not_found("user"));
    };
    let owner = query_opt(
        tx,
        "SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE",
        &[&user_key],
    )
    .await?;
    let count = u64_at(
        &query_one(
            tx,
            "SELECT COUNT(*) FROM categories WHERE owner = $1",
            &[&user_key],
        )
        .await?,
        0,
    )?;
    let max = u64::try_from(max).unwrap_or(u64::MAX);
    if count >= max {
        return Err(Error::LimitReached {
            limit: "max_categories",
            max,
        }
        .into());
    }
    if owner.is_none() {
        return Err(not_found("user"));
    }
    let row = query_one(
        tx,
        "INSERT INTO categories (owner, name) VALUES ($1, $2) RETURNING id",
        &[&user_key, &name],
    )
    .await?;
    Ok(Category {
        id: CategoryId(u64_at(&row, 0)?),
        name: name.to_owned(),
    })
}

/// Renames one of the user's categories.
pub(crate) async fn rename_category(
    tx: &Tx<'_>,
    user: UserId,
    id: CategoryId,
    name: &str,
) -> Outcome<()> {
    let (Some(id), Some(user)) = (key(id.0), key(user.0)) else {
        return Err(not_found("category"));
    };
    let changed = execute(
        tx,
        "UPDATE categories SET name = $3 WHERE id = $1 AND owner = $2",
        &[&id, &user, &name],
    )
    .await?;
    if changed == 0 {
        return Err(not_found("category"));
    }
    Ok(())
}

/// Deletes one of the user's categories; its friends move to the default.
pub(crate) async fn delete_category(tx: &Tx<'_>, user: UserId, id: CategoryId) -> Outcome<()> {
    let (Some(id), Some(user)) = (key(id.0), key(user.0)) else {
        return Err(not_found("category"));
    };
    let deleted = execute(
        tx,
        "DELETE FROM categories WHERE id = $1 AND owner = $2",
        &[&id, &user],
    )
    .await?;
    if deleted == 0 {
        return Err(not_found("category"));
    }
    execute(
        tx,
        "UPDATE friends SET category = 0 WHERE owner = $1 AND category = $2",
        &[&user, &id],
    )
    .await?;
    Ok(())
}

/// Blacklists `other`; a repeat keeps the original entry.
pub(crate) async fn block(tx: &Tx<'_>, user: UserId, other: UserId, at: i64) -> Outcome<()> {
    let (Some(user), Some(other)) = (key(user.0), key(other.0)) else {
        return Err(not_found("user"));
    };
    execute(
        tx,
        "INSERT INTO blocks (owner, other, at) VALUES ($1, $2, $3)
         ON CONFLICT (owner, other) DO NOTHING",
        &[&user, &other, &at],
    )
    .await?;
    Ok(())
}

/// Removes `other` from the blacklist.
pub(crate) async fn unblock(tx: &Tx<'_>, user: UserId, other: UserId) -> Outcome<bool> {
    let (Some(user), Some(other)) = (key(user.0), key(other.0)) else {
        return Ok(false);
    };
    let removed = execute(
        tx,
        "DELETE FROM blocks WHERE owner = $1 AND other = $2",
        &[&user, &other],
    )
    .await?;
    Ok(removed > 0)
}

/// The user's blacklist, oldest entry first.
pub(crate) async fn blocked<C: GenericClient>(c: &C, user: UserId) -> Outcome<Vec<(UserId, i64)>> {
    let Some(user) = key(user.0) else {
        return Ok(Vec::new());
    };
    query(
        c,
        "SELECT other, at FROM blocks WHERE owner = $1 ORDER BY at, other",
        &[&user],
    )
    .await?
    .iter()
    .map(|row| Ok((UserId(u64_at(row, 0)?), row.try_get(1)?)))
    .collect()
}

/// Whether either user blacklisted the other.
pub(crate) async fn is_blocked_either<C: GenericClient>(
    c: &C,
    a: UserId,
    b: UserId,
) -> Outcome<bool> {
    let (Some(a), Some(b)) = (key(a.0), key(b.0)) else {
        return Ok(false);
    };
    Ok(query_opt(
        c,
        "SELECT 1 FROM blocks
         WHERE (owner = $1 AND other = $2) OR (owner = $2 AND other = $1) LIMIT 1",
        &[&a, &b],
    )
    .await?
    .is_some())
}

/// Whether either blacklisted the other, and whether `user` has `other` as a friend.
pub(crate) async fn direct_standing<C: GenericClient>(
    c: &C,
    user: UserId,
    other: UserId,
) -> Outcome<DirectStanding> {
    let (Some(user), Some(other)) = (key(user.0), key(other.0)) else {
        return Ok(DirectStanding {
            blocked: false,
            friends: false,
        });
    };
    let row = query_one(
        c,
        "SELECT EXISTS (SELECT 1 FROM blocks
                        WHERE (owner = $1 AND other = $2) OR (owner = $2 AND other = $1)),
                EXISTS (SELECT 1 FROM friends WHERE owner = $1 AND friend = $2)",
        &[&user, &other],
    )
    .await?;
    Ok(DirectStanding {
        blocked: row.try_get(0)?,
        friends: row.try_get(1)?,
    })
}

/// Counts one like for the day unless `limit` were given already. The
/// receiver's total is raised first (locking their row, so likes to one
/// user queue across nodes); the day's count then grows only while under
/// the limit, in one upsert, and a refusal rolls the total back.
pub(crate) async fn add_like(
    tx: &Tx<'_>,
    from: UserId,
    to: UserId,
    day: i64,
    limit: u32,
) -> Outcome<u32> {
    let refused = || limit_reached("likes_per_friend_per_day", limit);
    if limit == 0 {
        return Err(refused());
    }
    let (Some(from), Some(to)) = (key(from.0), key(to.0)) else {
        return Err(not_found("user"));
    };
    let changed = execute(
        tx,
        "UPDATE users SET likes = likes + 1 WHERE id = $1",
        &[&to],
    )
    .await?;
    if changed == 0 {
        return Err(not_found("user"));
    }
    let counted = query_opt(
        tx,
        "INSERT INTO likes (from_user, to_user, day, count) VALUES ($1, $2, $3, 1)
         ON CONFLICT (from_user, to_user, day) DO UPDATE SET count = likes.count + 1
         WHERE likes.count < $4
         RETURNING count",
        &[&from, &to, &day, &i64::from(limit)],
    )
    .await?;
    match counted {
        Some(row) => crate::sql::u32_at(&row, 0),
        None => Err(refused()),
    }
}
