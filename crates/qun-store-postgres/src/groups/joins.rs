//! Ways into a group: join requests and invitations, invite links, and bans.
//! Accepting a request or using a link happens in `change` (`AddMember`),
//! together with the new member.

use deadpool_postgres::GenericClient;
use qun_domain::groups::model::{InviteLink, JoinKind, JoinRequest, NewJoinRequest};
use qun_domain::model::RequestStatus;
use qun_domain::{Error, GroupId, JoinRequestId, UserId};
use tokio_postgres::Row;

use super::group;
use crate::accounts::user_exists;
use crate::error::{conflict, corrupt, not_found, Outcome};
use crate::sql::{
    execute, key, opt_u32_at, opt_u64_at, query, query_one, query_opt, u32_at, u64_at, Tx,
};

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

fn request_from_row(row: &Row) -> Outcome<JoinRequest> {
    let kind: &str = row.try_get(3)?;
    let status: &str = row.try_get(7)?;
    Ok(JoinRequest {
        id: JoinRequestId(u64_at(row, 0)?),
        group: GroupId(u64_at(row, 1)?),
        user: UserId(u64_at(row, 2)?),
        kind: kind_from_str(kind)?,
        message: row.try_get(4)?,
        answer: row.try_get(5)?,
        inviter: opt_u64_at(row, 6)?.map(UserId),
        status: RequestStatus::parse(status)
            .ok_or_else(|| corrupt(&format!("join request status {status:?}")))?,
        reviewer: opt_u64_at(row, 8)?.map(UserId),
        reason: row.try_get(9)?,
        created_at: row.try_get(10)?,
    })
}

/// Stores a pending request unless one of the same kind is pending. Two
/// nodes storing the same one at once meet the pending-request index: the
/// second is a conflict.
pub(crate) async fn create_join_request(tx: &Tx<'_>, new: &NewJoinRequest) -> Outcome<JoinRequest> {
    if group(tx, new.group).await?.is_none() {
        return Err(not_found("group"));
    }
    if !user_exists(tx, new.user).await? {
        return Err(not_found("user"));
    }
    let (Some(group_key), Some(user_key)) = (key(new.group.0), key(new.user.0)) else {
        return Err(not_found("user"));
    };
    let kind = kind_str(new.kind);
    let pending = query_opt(
        tx,
        "SELECT 1 FROM join_requests
         WHERE group_id = $1 AND user_id = $2 AND kind = $3 AND status = 'pending'",
        &[&group_key, &user_key, &kind],
    )
    .await?;
    if pending.is_some() {
        return Err(conflict("a request of this kind is already pending"));
    }
    let inviter = new.inviter.and_then(|u| key(u.0));
    let row = query_one(
        tx,
        "INSERT INTO join_requests
             (group_id, user_id, kind, message, answer, inviter, status, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7) RETURNING id",
        &[
            &group_key,
            &user_key,
            &kind,
            &new.message,
            &new.answer,
            &inviter,
            &new.created_at,
        ],
    )
    .await?;
    Ok(JoinRequest {
        id: JoinRequestId(u64_at(&row, 0)?),
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
pub(crate) async fn join_request<C: GenericClient>(
    c: &C,
    id: JoinRequestId,
) -> Outcome<Option<JoinRequest>> {
    let Some(id) = key(id.0) else {
        return Ok(None);
    };
    query_opt(
        c,
        &format!("SELECT {REQUEST_COLUMNS} FROM join_requests WHERE id = $1"),
        &[&id],
    )
    .await?
    .map(|row| request_from_row(&row))
    .transpose()
}

/// A group's pending applications, oldest first.
pub(crate) async fn pending_applications<C: GenericClient>(
    c: &C,
    group: GroupId,
) -> Outcome<Vec<JoinRequest>> {
    let Some(group) = key(group.0) else {
        return Ok(Vec::new());
    };
    query(
        c,
        &format!(
            "SELECT {REQUEST_COLUMNS} FROM join_requests
             WHERE group_id = $1 AND kind = 'application' AND status = 'pending'
             ORDER BY created_at, id"
        ),
        &[&group],
    )
    .await?
    .iter()
    .map(request_from_row)
    .collect()
}

/// A user's pending applications and invitations, oldest first.
pub(crate) async fn user_join_requests<C: GenericClient>(
    c: &C,
    user: UserId,
) -> Outcome<Vec<JoinRequest>> {
    let Some(user) = key(user.0) else {
        return Ok(Vec::new());
    };
    query(
        c,
        &format!(
            "SELECT {REQUEST_COLUMNS} FROM join_requests
             WHERE user_id = $1 AND status = 'pending'
             ORDER BY created_at, id"
        ),
        &[&user],
    )
    .await?
    .iter()
    .map(request_from_row)
    .collect()
}

/// Closes a pending request without adding a member, in one conditional
/// update (an acceptance committed meanwhile on another node wins).
pub(crate) async fn close_join_request(
    tx: &Tx<'_>,
    id: JoinRequestId,
    status: RequestStatus,
    reviewer: Option<UserId>,
    reason: Option<&str>,
) -> Outcome<JoinRequest> {
    if status == RequestStatus::Pending {
        return Err(Error::invalid("status", "a closed request is not pending").into());
    }
    let Some(stored) = key(id.0) else {
        return Err(not_found("join request"));
    };
    let closed = query_opt(
        tx,
        &format!(
            "UPDATE join_requests SET status = $2, reviewer = $3, reason = $4
             WHERE id = $1 AND status = 'pending'
             RETURNING {REQUEST_COLUMNS}"
        ),
        &[
            &stored,
            &status.as_str(),
            &reviewer.and_then(|u| key(u.0)),
            &reason,
        ],
    )
    .await?;
    match closed {
        Some(row) => request_from_row(&row),
        None if join_request(tx, id).await?.is_some() => {
            Err(conflict("the join request is no longer pending"))
        }
        None => Err(not_found("join request")),
    }
}

/// Stores an invite link; `Conflict` if the code exists.
pub(crate) async fn create_invite_link(tx: &Tx<'_>, link: &InviteLink) -> Outcome<()> {
    if group(tx, link.group).await?.is_none() {
        return Err(not_found("group"));
    }
    let (Some(group), Some(creator)) = (key(link.group.0), key(link.creator.0)) else {
        return Err(not_found("user"));
    };
    let stored = execute(
        tx,
        "INSERT INTO invite_links (code, group_id, creator, expires_at, max_uses, uses, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (code) DO NOTHING",
        &[
            &link.code,
            &group,
            &creator,
            &link.expires_at,
            &link.max_uses.map(i64::from),
            &i64::from(link.uses),
            &link.created_at,
        ],
    )
    .await?;
    if stored == 0 {
        return Err(conflict("this invite code exists already"));
    }
    Ok(())
}

/// An invite link by code.
pub(crate) async fn invite_link<C: GenericClient>(
    c: &C,
    code: &str,
) -> Outcome<Option<InviteLink>> {
    query_opt(
        c,
        "SELECT code, group_id, creator, expires_at, max_uses, uses, created_at
         FROM invite_links WHERE code = $1",
        &[&code],
    )
    .await?
    .map(|row| {
        Ok(InviteLink {
            code: row.try_get(0)?,
            group: GroupId(u64_at(&row, 1)?),
            creator: UserId(u64_at(&row, 2)?),
            expires_at: row.try_get(3)?,
            max_uses: opt_u32_at(&row, 4)?,
            uses: u32_at(&row, 5)?,
            created_at: row.try_get(6)?,
        })
    })
    .transpose()
}

/// Whether the user is banned from the group.
pub(crate) async fn is_banned<C: GenericClient>(
    c: &C,
    group: GroupId,
    user: UserId,
) -> Outcome<bool> {
    let (Some(group), Some(user)) = (key(group.0), key(user.0)) else {
        return Ok(false);
    };
    Ok(query_opt(
        c,
        "SELECT 1 FROM group_bans WHERE group_id = $1 AND user_id = $2",
        &[&group, &user],
    )
    .await?
    .is_some())
}

/// Lifts a ban; false if there was none.
pub(crate) async fn unban(tx: &Tx<'_>, group: GroupId, user: UserId) -> Outcome<bool> {
    let (Some(group), Some(user)) = (key(group.0), key(user.0)) else {
        return Ok(false);
    };
    let removed = execute(
        tx,
        "DELETE FROM group_bans WHERE group_id = $1 AND user_id = $2",
        &[&group, &user],
    )
    .await?;
    Ok(removed > 0)
}
