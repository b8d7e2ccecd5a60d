//! What a group keeps besides its members: announcements and who confirmed
//! them, essence messages, and daily usage counters. Announcements and
//! essences are created and changed only by `change` (with a notice); this
//! module reads them and records confirmations.

use qun_domain::groups::model::{Announcement, Essence};
use qun_domain::groups::store::DailyCounter;
use qun_domain::{AnnouncementId, Error, GroupId, Seq, UserId};
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::storable;
use crate::error::{not_found, Outcome};

const ANNOUNCEMENT_COLUMNS: &str =
    "id, group_id, author, title, body, pinned, require_confirm, entrance, created_at, edited_at";

fn announcement_from_row(row: &Row<'_>) -> rusqlite::Result<Announcement> {
    Ok(Announcement {
        id: AnnouncementId(row.get(0)?),
        group: GroupId(row.get(1)?),
        author: UserId(row.get(2)?),
        title: row.get(3)?,
        body: row.get(4)?,
        pinned: row.get(5)?,
        require_confirm: row.get(6)?,
        entrance: row.get(7)?,
        created_at: row.get(8)?,
        edited_at: row.get(9)?,
    })
}

/// A group's announcements, pinned first, then newest first.
pub(crate) fn announcements(conn: &Connection, group: GroupId) -> Outcome<Vec<Announcement>> {
    let Some(group) = storable(group.0) else {
        return Ok(Vec::new());
    };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ANNOUNCEMENT_COLUMNS} FROM announcements
         WHERE group_id = ?1 ORDER BY pinned DESC, created_at DESC, id DESC"
    ))?;
    let rows = stmt.query_map([group], announcement_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// One announcement.
pub(crate) fn announcement(conn: &Connection, id: AnnouncementId) -> Outcome<Option<Announcement>> {
    let Some(id) = storable(id.0) else {
        return Ok(None);
    };
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {ANNOUNCEMENT_COLUMNS} FROM announcements WHERE id = ?1"
        ))?
        .query_row([id], announcement_from_row)
        .optional()?)
}

/// Records a confirmation once; a repeat keeps the first time.
pub(crate) fn confirm_announcement(
    conn: &Connection,
    id: AnnouncementId,
    user: UserId,
    at: i64,
) -> Outcome<()> {
    if announcement(conn, id)?.is_none() {
        return Err(not_found("announcement"));
    }
    conn.prepare_cached(
        "INSERT INTO announcement_confirmations (announcement, user_id, at) VALUES (?1, ?2, ?3)
         ON CONFLICT (announcement, user_id) DO NOTHING",
    )?
    .execute(params![id.0, user.0, at])?;
    Ok(())
}

/// Who confirmed an announcement, earliest first.
pub(crate) fn confirmations(conn: &Connection, id: AnnouncementId) -> Outcome<Vec<(UserId, i64)>> {
    let Some(id) = storable(id.0) else {
        return Ok(Vec::new());
    };
    let mut stmt = conn.prepare_cached(
        "SELECT user_id, at FROM announcement_confirmations
         WHERE announcement = ?1 ORDER BY at, user_id",
    )?;
    let rows = stmt.query_map([id], |row| Ok((UserId(row.get(0)?), row.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// A group's essence messages, newest marking first.
pub(crate) fn essences(conn: &Connection, group: GroupId) -> Outcome<Vec<Essence>> {
    let Some(group) = storable(group.0) else {
        return Ok(Vec::new());
    };
    let mut stmt = conn.prepare_cached(
        "SELECT seq, by_user, at FROM essences WHERE group_id = ?1 ORDER BY at DESC, seq DESC",
    )?;
    let rows = stmt.query_map([group], |row| {
        Ok(Essence {
            seq: Seq(row.get(0)?),
            by: UserId(row.get(1)?),
            at: row.get(2)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Counts one use of every counter, or none: the first full counter fails
/// the command, and the writer rolls its savepoint back with the counts
/// already made.
pub(crate) fn consume_daily(
    conn: &Connection,
    counters: &[DailyCounter],
    day: i64,
) -> Outcome<Vec<u32>> {
    let mut counts = Vec::with_capacity(counters.len());
    for counter in counters {
        let used = daily_count(conn, &counter.key, day)?;
        if used >= counter.limit {
            return Err(Error::LimitReached {
                limit: counter.name,
                max: u64::from(counter.limit),
            }
            .into());
        }
        let count: u32 = conn
            .prepare_cached(
                "INSERT INTO daily_counters (key, day, count) VALUES (?1, ?2, 1)
                 ON CONFLICT (key, day) DO UPDATE SET count = count + 1
                 RETURNING count",
            )?
            .query_row(params![counter.key, day], |row| row.get(0))?;
        counts.push(count);
    }
    Ok(counts)
}

/// A counter's value for a day (0 if unused).
pub(crate) fn daily_count(conn: &Connection, key: &str, day: i64) -> Outcome<u32> {
    Ok(conn
        .prepare_cached("SELECT count FROM daily_counters WHERE key = ?1 AND day = ?2")?
        .query_row(params![key, day], |row| row.get(0))
        .optional()?
        .unwrap_or(0))
}
