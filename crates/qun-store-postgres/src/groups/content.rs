//! What a group keeps besides its members: announcements and who confirmed
//! them, essence messages, and daily usage counters. Announcements and
//! essences are created and changed only by `change` (with a notice); this
//! module reads them and records confirmations.

use deadpool_postgres::GenericClient;
use qun_domain::groups::model::{Announcement, Essence};
use qun_domain::groups::store::DailyCounter;
use qun_domain::{AnnouncementId, GroupId, Seq, UserId};
use tokio_postgres::Row;

use crate::error::{limit_reached, not_found, Outcome};
use crate::sql::{execute, key, query, query_opt, u32_at, u64_at, Tx};

const ANNOUNCEMENT_COLUMNS: &str =
    "id, group_id, author, title, body, pinned, require_confirm, entrance, created_at, edited_at";

fn announcement_from_row(row: &Row) -> Outcome<Announcement> {
    Ok(Announcement {
        id: AnnouncementId(u64_at(row, 0)?),
        group: GroupId(u64_at(row, 1)?),
        author: UserId(u64_at(row, 2)?),
        title: row.try_get(3)?,
        body: row.try_get(4)?,
        pinned: row.try_get(5)?,
        require_confirm: row.try_get(6)?,
        entrance: row.try_get(7)?,
        created_at: row.try_get(8)?,
        edited_at: row.try_get(9)?,
    })
}

/// A group's announcements, pinned first, then newest first.
pub(crate) async fn announcements<C: GenericClient>(
    c: &C,
    group: GroupId,
) -> Outcome<Vec<Announcement>> {
    let Some(group) = key(group.0) else {
        return Ok(Vec::new());
    };
    query(
        c,
        &format!(
            "SELECT {ANNOUNCEMENT_COLUMNS} FROM announcements
             WHERE group_id = $1 ORDER BY pinned DESC, created_at DESC, id DESC"
        ),
        &[&group],
    )
    .await?
    .iter()
    .map(announcement_from_row)
    .collect()
}

/// One announcement.
pub(crate) async fn announcement<C: GenericClient>(
    c: &C,
    id: AnnouncementId,
) -> Outcome<Option<Announcement>> {
    let Some(id) = key(id.0) else {
        return Ok(None);
    };
    query_opt(
        c,
        &format!("SELECT {ANNOUNCEMENT_COLUMNS} FROM announcements WHERE id = $1"),
        &[&id],
    )
    .await?
    .map(|row| announcement_from_row(&row))
    .transpose()
}

/// Records a confirmation once; a repeat keeps the first time.
pub(crate) async fn confirm_announcement(
    tx: &Tx<'_>,
    id: AnnouncementId,
    user: UserId,
    at: i64,
) -> Outcome<()> {
    if announcement(tx, id).await?.is_none() {
        return Err(not_found("announcement"));
    }
    let (Some(id), Some(user)) = (key(id.0), key(user.0)) else {
        return Err(not_found("user"));
    };
    execute(
        tx,
        "INSERT INTO announcement_confirmations (announcement, user_id, at) VALUES ($1, $2, $3)
         ON CONFLICT (announcement, user_id) DO NOTHING",
        &[&id, &user, &at],
    )
    .await?;
    Ok(())
}

/// Who confirmed an announcement, earliest first.
pub(crate) async fn confirmations<C: GenericClient>(
    c: &C,
    id: AnnouncementId,
) -> Outcome<Vec<(UserId, i64)>> {
    let Some(id) = key(id.0) else {
        return Ok(Vec::new());
    };
    query(
        c,
        "SELECT user_id, at FROM announcement_confirmations
         WHERE announcement = $1 ORDER BY at, user_id",
        &[&id],
    )
    .await?
    .iter()
    .map(|row| Ok((UserId(u64_at(row, 0)?), row.try_get(1)?)))
    .collect()
}

/// A group's essence messages, newest marking first.
pub(crate) async fn essences<C: GenericClient>(c: &C, group: GroupId) -> Outcome<Vec<Essence>> {
    let Some(group) = key(group.0) else {
        return Ok(Vec::new());
    };
    query(
        c,
        "SELECT seq, by_user, at FROM essences WHERE group_id = $1 ORDER BY at DESC, seq DESC",
        &[&group],
    )
    .await?
    .iter()
    .map(|row| {
        Ok(Essence {
            seq: Seq(u64_at(row, 0)?),
            by: UserId(u64_at(row, 1)?),
            at: row.try_get(2)?,
        })
    })
    .collect()
}

/// Counts one use of every counter, or none. Each count grows in one
/// conditional upsert, only while under its limit, so concurrent uses on
/// several nodes never pass it; the first full counter fails the whole
/// transaction, which rolls back the counts already made.
pub(crate) async fn consume_daily(
    tx: &Tx<'_>,
    counters: &[DailyCounter],
    day: i64,
) -> Outcome<Vec<u32>> {
    let mut counts = Vec::with_capacity(counters.len());
    for counter in counters {
        let full = || limit_reached(counter.name, counter.limit);
        if counter.limit == 0 {
            return Err(full());
        }
        let counted = query_opt(
            tx,
            "INSERT INTO daily_counters (key, day, count) VALUES ($1, $2, 1)
             ON CONFLICT (key, day) DO UPDATE SET count = daily_counters.count + 1
             WHERE daily_counters.count < $3
             RETURNING count",
            &[&counter.key, &day, &i64::from(counter.limit)],
        )
        .await?;
        match counted {
            Some(row) => counts.push(u32_at(&row, 0)?),
            None => return Err(full()),
        }
    }
    Ok(counts)
}

/// A counter's value for a day (0 if unused).
pub(crate) async fn daily_count<C: GenericClient>(c: &C, key: &str, day: i64) -> Outcome<u32> {
    query_opt(
        c,
        "SELECT count FROM daily_counters WHERE key = $1 AND day = $2",
        &[&key, &day],
    )
    .await?
    .map_or(Ok(0), |row| u32_at(&row, 0))
}
