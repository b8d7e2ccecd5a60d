//! Ways into a group: join requests and invitations, invite links, and bans.
//! Accepting a request or using a link happens in `change` (`AddMember`),
//! together with the new member.

use qun_domain::groups::model::{InviteLink, JoinKind, JoinRequest, NewJoinRequest};
use qun_domain::model::RequestStatus;
use qun_domain::{Error, GroupId, JoinRequestId, UserId};
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::{group, storable};
use crate::accounts::user_exists;
use crate::error::{conflict, corrupt, not_found, Outcome};

fn kind_str(kind: JoinKind) -> &'static str {
    match kind {
        JoinKind::Application => "application",
        JoinKind::Invitation => "invitation",
    }
}

fn kind_from_str(kind: &str) -> Outcome<JoinKind> {
    match kind {
        "application" => Ok(JoinKind::Application),
        "invitation" => Ok(JoinKind::Invitation),
        other => Err(corrupt(&format!("join request kind {other:?}"))),
    }
}

const REQUEST_COLUMNS: &str =
    "id, group_id, user_id, kind, message, answer, inviter, status, reviewer, reason, created_at";

/// A request row with its kind and status still as stored.
type RawRequest = (JoinRequest, String, String);

fn request_from_row(row: &Row<'_>) -> rusqlite::Result<RawRequest> {
    let inviter: Option<u64> = row.get(6)?;
    let reviewer: Option<u64> = row.get(8)?;
    Ok((
        JoinRequest {
            id: JoinRequestId(row.get(0)?),
            group: GroupId(row.get(1)?),
            user: UserId(row.get(2)?),
            // Kind and status are replaced in `finish_request`.
            kind: JoinKind::Application,
            message: row.get(4)?,
            answer: row.get(5)?,
            inviter: inviter.map(UserId),
            status: RequestStatus::Pending,
            reviewer: reviewer.map(UserId),
            reason: row.get(9)?,
            created_at: row.get(10)?,
        },
        row.get(3)?,
        row.get(7)?,
    ))
}

fn finish_request((mut request, kind, status): RawRequest) -> Outcome<JoinRequest> {
    request.kind = kind_from_str(&kind)?;
    request.status = RequestStatus::parse(&status)
        .ok_or_else(|| corrupt(&format!("join request status {status:?}")))?;
    Ok(request)
}

/// Stores a pending request unless one of the same kind is pending.
pub(crate) fn create_join_request(conn: &Connection, new: &NewJoinRequest) -> Outcome<JoinRequest> {
    if group(conn, new.group)?.is_none() {
        return Err(not_found("group"));
    }
    if !user_exists(conn, new.user)? {
        return Err(not_found("user"));
    }
    let kind = kind_str(new.kind);
    let pending = conn
        .prepare_cached(
            "SELECT 1 FROM join_requests
             WHERE group_id = ?1 AND user_id = ?2 AND kind = ?3 AND status = 'pending'",
        )?
        .query_row(params![new.group.0, new.user.0, kind], |_| Ok(()))
        .optional()?;
    if pending.is_some() {
        return Err(conflict("a request of this kind is already pending"));
    }
    let id: u64 = conn
        .prepare_cached(
            "INSERT INTO join_requests
                 (group_id, user_id, kind, message, answer, inviter, status, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7) RETURNING id",
        )?
        .query_row(
            params![
                new.group.0,
                new.user.0,
                kind,
                new.message,
                new.answer,
                new.inviter.map(|u| u.0),
                new.created_at
            ],
            |row| row.get(0),
        )?;
    Ok(JoinRequest {
        id: JoinRequestId(id),
        group: new.group,
        user: new.user,
        kind: new.kind,
        message: new.message.clone(),
        answer: new.answer.clone(),
        inviter: new.inviter,
        status: RequestStatus::Pending,
        reviewer: None,
        reason: None,
        created_at: new.created_at,
    })
}

/// A request by id.
pub(crate) fn join_request(conn: &Connection, id: JoinRequestId) -> Outcome<Option<JoinRequest>> {
    let Some(id) = storable(id.0) else {
        return Ok(None);
    };
    conn.prepare_cached(&format!(
        "SELECT {REQUEST_COLUMNS} FROM join_requests WHERE id = ?1"
    ))?
    .query_row([id], request_from_row)
    .optional()?
    .map(finish_request)
    .transpose()
}

/// A group's pending applications, oldest first.
pub(crate) fn pending_applications(conn: &Connection, group: GroupId) -> Outcome<Vec<JoinRequest>> {
    let Some(group) = storable(group.0) else {
        return Ok(Vec::new());
    };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {REQUEST_COLUMNS} FROM join_requests
         WHERE group_id = ?1 AND kind = 'application' AND status = 'pending'
         ORDER BY created_at, id"
    ))?;
    let rows = stmt.query_map([group], request_from_row)?;
    rows.map(|row| finish_request(row?)).collect()
}

/// A user's pending applications and invitations, oldest first.
pub(crate) fn user_join_requests(conn: &Connection, user: UserId) -> Outcome<Vec<JoinRequest>> {
    let Some(user) = storable(user.0) else {
        return Ok(Vec::new());
    };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {REQUEST_COLUMNS} FROM join_requests
         WHERE user_id = ?1 AND status = 'pending'
         ORDER BY created_at, id"
    ))?;
    let rows = stmt.query_map([user], request_from_row)?;
    rows.map(|row| finish_request(row?)).collect()
}

/// Closes a pending request without adding a member.
pub(crate) fn close_join_request(
    conn: &Connection,
    id: JoinRequestId,
    status: RequestStatus,
    reviewer: Option<UserId>,
    reason: Option<&str>,
) -> Outcome<JoinRequest> {
    if status == RequestStatus::Pending {
        return Err(Error::invalid("status", "a closed request is not pending").into());
    }
    let mut request = join_request(conn, id)?.ok_or_else(|| not_found("join request"))?;
    if request.status != RequestStatus::Pending {
        return Err(conflict("the join request is no longer pending"));
    }
    conn.prepare_cached(
        "UPDATE join_requests SET status = ?2, reviewer = ?3, reason = ?4 WHERE id = ?1",
    )?
    .execute(params![
        id.0,
        status.as_str(),
        reviewer.map(|u| u.0),
        reason
    ])?;
    request.status = status;
    request.reviewer = reviewer;
    request.reason = reason.map(str::to_owned);
    Ok(request)
}

/// Stores an invite link; `Conflict` if the code exists.
pub(crate) fn create_invite_link(conn: &Connection, link: &InviteLink) -> Outcome<()> {
    if group(conn, link.group)?.is_none() {
        return Err(not_found("group"));
    }
    if invite_link(conn, &link.code)?.is_some() {
        return Err(conflict("this invite code exists already"));
    }
    conn.prepare_cached(
        "INSERT INTO invite_links (code, group_id, creator, expires_at, max_uses, uses, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        link.code,
        link.group.0,
        link.creator.0,
        link.expires_at,
        link.max_uses,
        link.uses,
        link.created_at
    ])?;
    Ok(())
}

/// An invite link by code.
pub(crate) fn invite_link(conn: &Connection, code: &str) -> Outcome<Option<InviteLink>> {
    Ok(conn
        .prepare_cached(
            "SELECT code, group_id, creator, expires_at, max_uses, uses, created_at
             FROM invite_links WHERE code = ?1",
        )?
        .query_row([code], |row| {
            Ok(InviteLink {
                code: row.get(0)?,
                group: GroupId(row.get(1)?),
                creator: UserId(row.get(2)?),
                expires_at: row.get(3)?,
                max_uses: row.get(4)?,
                uses: row.get(5)?,
                created_at: row.get(6)?,
            })
        })
        .optional()?)
}

/// Whether the user is banned from the group.
pub(crate) fn is_banned(conn: &Connection, group: GroupId, user: UserId) -> Outcome<bool> {
    let (Some(group), Some(user)) = (storable(group.0), storable(user.0)) else {
        return Ok(false);
    };
    let found = conn
        .prepare_cached("SELECT 1 FROM group_bans WHERE group_id = ?1 AND user_id = ?2")?
        .query_row([group, user], |_| Ok(()))
        .optional()?;
    Ok(found.is_some())
}

/// Lifts a ban; false if there was none.
pub(crate) fn unban(conn: &Connection, group: GroupId, user: UserId) -> Outcome<bool> {
    let (Some(group), Some(user)) = (storable(group.0), storable(user.0)) else {
        return Ok(false);
    };
    let removed = conn
        .prepare_cached("DELETE FROM group_bans WHERE group_id = ?1 AND user_id = ?2")?
        .execute([group, user])?;
    Ok(removed > 0)
}
