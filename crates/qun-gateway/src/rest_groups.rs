//! REST handlers for groups under `/api/v1/groups`, `/join-requests`,
//! `/invite-links` and `/temp-sessions`. Messages in a group use the
//! conversation routes with the group's conversation id.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use qun_domain::groups::model::{GroupSearch, Role};
use qun_domain::{self as d, Caller, CreateGroup};
use qun_wire as w;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::convert;
use crate::convert_groups as cg;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiJsonOrDefault, ApiPath, ApiQuery, Auth};
use crate::AppState;

type ApiResult<T> = Result<T, ApiError>;

/// A group as the caller may see it (the automatic answer only for managers).
async fn view(
    app: &AppState,
    caller: &Caller,
    group: &qun_domain::groups::model::Group,
) -> w::GroupView {
    let manager = app
        .qun
        .my_membership(caller, group.id)
        .await
        .is_ok_and(|m| m.role != Role::Member);
    cg::group(group, &app.qun.config().groups.tiers, manager)
}

/// Create a group; the caller becomes its owner.
#[utoipa::path(post, path = "/api/v1/groups", tag = "groups", security(("bearer" = [])),
    request_body = w::CreateGroupRequest,
    responses((status = 201, body = w::GroupView), (status = 400, body = w::ErrorBody), (status = 429, body = w::ErrorBody)))]
pub async fn create(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiJson(body): ApiJson<w::CreateGroupRequest>,
) -> ApiResult<(StatusCode, Json<w::GroupView>)> {
    let spec = CreateGroup {
        name: body.name,
        intro: body.intro,
        category: body.category,
        tags: body.tags,
        listed: body.listed,
        join_mode: cg::join_mode_in(body.join_mode),
    };
    let group = app.qun.create_group(&caller, spec).await?;
    Ok((StatusCode::CREATED, Json(view(&app, &caller, &group).await)))
}

/// Search parameters: by number (finds unlisted groups too), keyword, category.
#[derive(Debug, Deserialize, IntoParams)]
pub struct SearchParams {
    /// Exact group number.
    pub number: Option<u64>,
    /// Words in the name or introduction.
    pub keyword: Option<String>,
    /// Exact category.
    pub category: Option<String>,
    /// Page size (default 20, at most 100).
    pub limit: Option<u32>,
}

/// Search groups.
#[utoipa::path(get, path = "/api/v1/groups", tag = "groups", security(("bearer" = [])), params(SearchParams),
    responses((status = 200, body = Vec<w::GroupView>), (status = 400, body = w::ErrorBody)))]
pub async fn search(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiQuery(q): ApiQuery<SearchParams>,
) -> ApiResult<Json<Vec<w::GroupView>>> {
    let search = GroupSearch {
        number: q.number.map(d::GroupId),
        keyword: q.keyword,
        category: q.category,
        limit: q.limit.unwrap_or(20),
    };
    let groups = app.qun.search_groups(search).await?;
    let mut out = Vec::with_capacity(groups.len());
    for g in &groups {
        out.push(view(&app, &caller, g).await);
    }
    Ok(Json(out))
}

/// The caller's groups.
#[utoipa::path(get, path = "/api/v1/groups/mine", tag = "groups", security(("bearer" = [])),
    responses((status = 200, body = Vec<w::GroupView>)))]
pub async fn mine(
    State(app): State<AppState>,
    Auth(caller): Auth,
) -> ApiResult<Json<Vec<w::GroupView>>> {
    let groups = app.qun.my_groups(&caller).await?;
    let mut out = Vec::with_capacity(groups.len());
    for g in &groups {
        out.push(view(&app, &caller, g).await);
    }
    Ok(Json(out))
}

/// A group's profile.
#[utoipa::path(get, path = "/api/v1/groups/{id}", tag = "groups", security(("bearer" = [])),
    params(("id" = u64, Path, description = "group number")),
    responses((status = 200, body = w::GroupView), (status = 404, body = w::ErrorBody)))]
pub async fn get(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<u64>,
) -> ApiResult<Json<w::GroupView>> {
    let group = app.qun.group(&caller, d::GroupId(id)).await?;
    Ok(Json(view(&app, &caller, &group).await))
}

/// Change settings (owner and admins).
#[utoipa::path(patch, path = "/api/v1/groups/{id}", tag = "groups", security(("bearer" = [])),
    params(("id" = u64, Path, description = "group number")), request_body = w::GroupSettingsPatch,
    responses((status = 200, body = w::GroupView), (status = 403, body = w::ErrorBody)))]
pub async fn update(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<u64>,
    ApiJson(body): ApiJson<w::GroupSettingsPatch>,
) -> ApiResult<Json<w::GroupView>> {
    let group = app
        .qun
        .update_group(&caller, d::GroupId(id), cg::settings_in(body))
        .await?;
    Ok(Json(view(&app, &caller, &group).await))
}

/// Dissolve the group (owner); members keep read-only history.
#[utoipa::path(delete, path = "/api/v1/groups/{id}", tag = "groups", security(("bearer" = [])),
    params(("id" = u64, Path, description = "group number")),
    responses((status = 204), (status = 403, body = w::ErrorBody)))]
pub async fn dissolve(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<u64>,
) -> ApiResult<StatusCode> {
    app.qun.dissolve_group(&caller, d::GroupId(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Move the group to another tier (owner; the payment hook may charge).
#[utoipa::path(put, path = "/api/v1/groups/{id}/tier", tag = "groups", security(("bearer" = [])),
    params(("id" = u64, Path, description = "group number")), request_body = w::TierRequest,
    responses((status = 200, body = w::GroupView), (status = 403, body = w::ErrorBody), (status = 409, body = w::ErrorBody)))]
pub async fn tier(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<u64>,
    ApiJson(body): ApiJson<w::TierRequest>,
) -> ApiResult<Json<w::GroupView>> {
    let group = app.qun.set_tier(&caller, d::GroupId(id), body.tier).await?;
    Ok(Json(view(&app, &caller, &group).await))
}

/// Hand ownership to another member (owner).
#[utoipa::path(post, path = "/api/v1/groups/{id}/transfer", tag = "groups", security(("bearer" = [])),
    params(("id" = u64, Path, description = "group number")), request_body = w::TransferRequest,
    responses((status = 200, body = w::GroupView), (status = 403, body = w::ErrorBody)))]
pub async fn transfer(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<u64>,
    ApiJson(body): ApiJson<w::TransferRequest>,
) -> ApiResult<Json<w::GroupView>> {
    let group = app
        .qun
        .transfer_group(&caller, d::GroupId(id), d::UserId(body.user_id.0))
        .await?;
    Ok(Json(view(&app, &caller, &group).await))
}

/// Mute or unmute everyone but the owner and admins.
#[utoipa::path(put, path = "/api/v1/groups/{id}/mute", tag = "groups", security(("bearer" = [])),
    params(("id" = u64, Path, description = "group number")), request_body = w::MuteAllRequest,
    responses((status = 200, body = w::GroupView), (status = 403, body = w::ErrorBody)))]
pub async fn mute_all(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<u64>,
    ApiJson(body): ApiJson<w::MuteAllRequest>,
) -> ApiResult<Json<w::GroupView>> {
    let group = app
        .qun
        .mute_all(&caller, d::GroupId(id), body.muted)
        .await?;
    Ok(Json(view(&app, &caller, &group).await))
}

/// Ask to join: joined at once, pending approval, or refused by the join mode.
#[utoipa::path(post, path = "/api/v1/groups/{id}/join", tag = "groups", security(("bearer" = [])),
    params(("id" = u64, Path, description = "group number")), request_body = w::JoinGroupRequest,
    responses((status = 200, body = w::JoinResult), (status = 403, body = w::ErrorBody), (status = 429, body = w::ErrorBody)))]
pub async fn join(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<u64>,
    ApiJsonOrDefault(body): ApiJsonOrDefault<w::JoinGroupRequest>,
) -> ApiResult<Json<w::JoinResult>> {
    let outcome = app
        .qun
        .apply(&caller, d::GroupId(id), &body.message, body.answer)
        .await?;
    Ok(Json(cg::join_outcome(&outcome)))
}

/// Leave the group (the owner must transfer or dissolve instead).
#[utoipa::path(post, path = "/api/v1/groups/{id}/leave", tag = "groups", security(("bearer" = [])),
    params(("id" = u64, Path, description = "group number")),
    responses((status = 204), (status = 409, body = w::ErrorBody)))]
pub async fn leave(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<u64>,
) -> ApiResult<StatusCode> {
    app.qun.leave_group(&caller, d::GroupId(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Member page parameters.
#[derive(Debug, Deserialize, IntoParams)]
pub struct MemberParams {
    /// Members with a number above this.
    pub after: Option<u64>,
    /// Page size.
    pub limit: Option<u32>,
}

/// A page of members, ascending by number, with the list version it was read at.
#[utoipa::path(get, path = "/api/v1/groups/{id}/members", tag = "groups", security(("bearer" = [])),
    params(("id" = u64, Path, description = "group number"), MemberParams),
    responses((status = 200, body = w::MemberPage), (status = 403, body = w::ErrorBody)))]
pub async fn members(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<u64>,
    ApiQuery(q): ApiQuery<MemberParams>,
) -> ApiResult<Json<w::MemberPage>> {
    let gid = d::GroupId(id);
    // Read the version first: a change racing the page shows up in the next delta.
    let version = app.qun.group(&caller, gid).await?.member_version;
    let members = app
        .qun
        .members(&caller, gid, d::UserId(q.after.unwrap_or(0)), q.limit)
        .await?;
    Ok(Json(w::MemberPage {
        members: members.iter().map(cg::member).collect(),
        version,
    }))
}

/// Changes parameters.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ChangesParams {
    /// The member-list version the client holds.
    pub since: u64,
}

/// Member-list changes since a version: a client of a large group fetches only these.
#[utoipa::path(get, path = "/api/v1/groups/{id}/members/changes", tag = "groups", security(("bearer" = [])),
    params(("id" = u64, Path, description = "group number"), ChangesParams),
    responses((status = 200, body = w::MemberDeltaView), (status = 403, body = w::ErrorBody)))]
pub async fn member_changes(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<u64>,
    ApiQuery(q): ApiQuery<ChangesParams>,
) -> ApiResult<Json<w::MemberDeltaView>> {
    let delta = app
        .qun
        .member_delta(&caller, d::GroupId(id), q.since)
        .await?;
    Ok(Json(w::MemberDeltaView {
        version: delta.version,
        changed: delta.changed.iter().map(cg::member).collect(),
        removed: delta.removed.into_iter().map(|u| w::UserId(u.0)).collect(),
    }))
}

/// The caller's own member entry.
#[utoipa::path(get, path = "/api/v1/groups/{id}/members/me", tag = "groups", security(("bearer" = [])),
    params(("id" = u64, Path, description = "group number")),
    responses((status = 200, body = w::MemberView), (status = 403, body = w::ErrorBody)))]
pub async fn me(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<u64>,
) -> ApiResult<Json<w::MemberView>> {
    Ok(Json(cg::member(
        &app.qun.my_membership(&caller, d::GroupId(id)).await?,
    )))
}

/// Remove a member (owner on anyone, admins on members), optionally banning them.
#[utoipa::path(post, path = "/api/v1/groups/{id}/members/{user}/kick", tag = "groups", security(("bearer" = [])),
    params(("id" = u64, Path, description = "group number"), ("user" = u64, Path, description = "member")),
    request_body = w::KickRequest, responses((status = 204), (status = 403, body = w::ErrorBody)))]
pub async fn kick(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiPath((id, user)): ApiPath<(u64, u64)>,
    ApiJsonOrDefault(body): ApiJsonOrDefault<w::KickRequest>,
) -> ApiResult<StatusCode> {
    app.qun
        .kick(&caller, d::GroupId(id), d::UserId(user), body.ban)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lift a ban (owner and admins).
#[utoipa::path(delete, path = "/api/v1/groups/{id}/bans/{user}", tag = "groups", security(("bearer" = [])),
    params(("id" = u64, Path, description = "group number"), ("user" = u64, Path, description = "user")),
    responses((status = 204), (status = 404, body = w::ErrorBody)))]
pub async fn unban(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiPath((id, user)): ApiPath<(u64, u64)>,
) -> ApiResult<StatusCode> {
    app.qun
        .unban(&caller, d::GroupId(id), d::UserId(user))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Mute a member for some seconds (0 unmutes; at most 30 days by default).
#[utoipa::path(put, path = "/api/v1/groups/{id}/members/{user}/mute", tag = "groups", security(("bearer" = [])),
    params(("id" = u64, Path, description = "group number"), ("user" = u64, Path, description = "member")),
    request_body = w::MuteRequest, responses((status = 200, body = w::MemberView), (status = 403, body = w::ErrorBody)))]
pub async fn mute(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiPath((id, user)): ApiPath<(u64, u64)>,
    ApiJson(body): ApiJson<w::MuteRequest>,
) -> ApiResult<Json<w::MemberView>> {
    let m = app
        .qun
        .mute(&caller, d::GroupId(id), d::UserId(user), body.secs)
        .await?;
    Ok(Json(cg::member(&m)))
}

/// Appoint or dismiss an admin (owner).
#[utoipa::path(put, path = "/api/v1/groups/{id}/members/{user}/role", tag = "groups", security(("bearer" = [])),
    params(("id" = u64, Path, description = "group number"), ("user" = u64, Path, description = "member")),
    request_body = w::RoleRequest, responses((status = 200, body = w::MemberView), (status = 403, body = w::ErrorBody)))]
pub async fn role(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiPath((id, user)): ApiPath<(u64, u64)>,
    ApiJson(body): ApiJson<w::RoleRequest>,
) -> ApiResult<Json<w::MemberView>> {
    let admin = match cg::role_in(body.role) {
        Role::Admin => true,
        Role::Member => false,
        Role::Owner => {
            return Err(ApiError::invalid_field(
                "role: use the transfer route to change the owner",
            ))
        }
    };
    let m = app
        .qun
        .set_admin(&caller, d::GroupId(id), d::UserId(user), admin)
        .await?;
    Ok(Json(cg::member(&m)))
}

/// Set or clear a special title, optionally expiring (owner).
#[utoipa::path(put, path = "/api/v1/groups/{id}/members/{user}/title", tag = "groups", security(("bearer" = [])),
    params(("id" = u64, Path, description = "group number"), ("user" = u64, Path, description = "member")),
    request_body = w::TitleRequest, responses((status = 200, body = w::MemberView), (status = 403, body = w::ErrorBody)))]
pub async fn title(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiPath((id, user)): ApiPath<(u64, u64)>,
    ApiJson(body): ApiJson<w::TitleRequest>,
) -> ApiResult<Json<w::MemberView>> {
    let m = app
        .qun
        .set_title(
            &caller,
            d::GroupId(id),
            d::UserId(user),
            body.title,
            body.expires_in_secs,
        )
        .await?;
    Ok(Json(cg::member(&m)))
}

/// Set a group card: one's own, or (owner, admins) a lower role's.
#[utoipa::path(put, path = "/api/v1/groups/{id}/members/{user}/card", tag = "groups", security(("bearer" = [])),
    params(("id" = u64, Path, description = "group number"), ("user" = u64, Path, description = "member")),
    request_body = w::CardRequest, responses((status = 200, body = w::MemberView), (status = 403, body = w::ErrorBody)))]
pub async fn card(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiPath((id, user)): ApiPath<(u64, u64)>,
    ApiJson(body): ApiJson<w::CardRequest>,
) -> ApiResult<Json<w::MemberView>> {
    let m = app
        .qun
        .set_card(&caller, d::GroupId(id), d::UserId(user), body.card)
        .await?;
    Ok(Json(cg::member(&m)))
}

/// Invite a user (whoever may invite in this group).
#[utoipa::path(post, path = "/api/v1/groups/{id}/invitations", tag = "groups", security(("bearer" = [])),
    params(("id" = u64, Path, description = "group number")), request_body = w::InviteRequest,
    responses((status = 201, body = w::JoinRequestView), (status = 403, body = w::ErrorBody)))]
pub async fn invite(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<u64>,
    ApiJson(body): ApiJson<w::InviteRequest>,
) -> ApiResult<(StatusCode, Json<w::JoinRequestView>)> {
    let r = app
        .qun
        .invite(&caller, d::GroupId(id), d::UserId(body.user_id.0))
        .await?;
    Ok((StatusCode::CREATED, Json(cg::join_request(&r))))
}

/// Create an invite link with an expiry and a use limit.
#[utoipa::path(post, path = "/api/v1/groups/{id}/invite-links", tag = "groups", security(("bearer" = [])),
    params(("id" = u64, Path, description = "group number")), request_body = w::CreateInviteLink,
    responses((status = 201, body = w::InviteLinkView), (status = 403, body = w::ErrorBody)))]
pub async fn create_link(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<u64>,
    ApiJsonOrDefault(body): ApiJsonOrDefault<w::CreateInviteLink>,
) -> ApiResult<(StatusCode, Json<w::InviteLinkView>)> {
    let link = app
        .qun
        .create_invite_link(&caller, d::GroupId(id), body.expires_in_secs, body.max_uses)
        .await?;
    Ok((StatusCode::CREATED, Json(cg::invite_link(&link))))
}

/// Join through an invite link (its creator is recorded as the inviter).
#[utoipa::path(post, path = "/api/v1/invite-links/{code}/join", tag = "groups", security(("bearer" = [])),
    params(("code" = String, Path, description = "link code")),
    responses((status = 200, body = w::JoinResult), (status = 404, body = w::ErrorBody), (status = 409, body = w::ErrorBody)))]
pub async fn join_link(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiPath(code): ApiPath<String>,
) -> ApiResult<Json<w::JoinResult>> {
    let outcome = app.qun.join_by_link(&caller, &code).await?;
    Ok(Json(cg::join_outcome(&outcome)))
}

/// Pending applications (owner and admins).
#[utoipa::path(get, path = "/api/v1/groups/{id}/join-requests", tag = "groups", security(("bearer" = [])),
    params(("id" = u64, Path, description = "group number")),
    responses((status = 200, body = Vec<w::JoinRequestView>), (status = 403, body = w::ErrorBody)))]
pub async fn join_requests(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<u64>,
) -> ApiResult<Json<Vec<w::JoinRequestView>>> {
    let list = app.qun.join_requests(&caller, d::GroupId(id)).await?;
    Ok(Json(list.iter().map(cg::join_request).collect()))
}

/// The caller's pending applications and invitations.
#[utoipa::path(get, path = "/api/v1/join-requests/mine", tag = "groups", security(("bearer" = [])),
    responses((status = 200, body = Vec<w::JoinRequestView>)))]
pub async fn my_join_requests(
    State(app): State<AppState>,
    Auth(caller): Auth,
) -> ApiResult<Json<Vec<w::JoinRequestView>>> {
    let list = app.qun.my_join_requests(&caller).await?;
    Ok(Json(list.iter().map(cg::join_request).collect()))
}

/// Approve or refuse an application (owner and admins).
#[utoipa::path(post, path = "/api/v1/join-requests/{id}/review", tag = "groups", security(("bearer" = [])),
    params(("id" = u64, Path, description = "request id")), request_body = w::ReviewRequest,
    responses((status = 200, body = w::JoinRequestView), (status = 403, body = w::ErrorBody), (status = 409, body = w::ErrorBody)))]
pub async fn review(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<u64>,
    ApiJson(body): ApiJson<w::ReviewRequest>,
) -> ApiResult<Json<w::JoinRequestView>> {
    let r = app
        .qun
        .review(&caller, d::JoinRequestId(id), body.approve, body.reason)
        .await?;
    Ok(Json(cg::join_request(&r)))
}

/// Accept or refuse an invitation (the invitee).
#[utoipa::path(post, path = "/api/v1/join-requests/{id}/answer", tag = "groups", security(("bearer" = [])),
    params(("id" = u64, Path, description = "invitation id")), request_body = w::AnswerInvitation,
    responses((status = 200, body = w::JoinResult), (status = 404, body = w::ErrorBody)))]
pub async fn answer(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<u64>,
    ApiJson(body): ApiJson<w::AnswerInvitation>,
) -> ApiResult<Json<w::JoinResult>> {
    let outcome = app
        .qun
        .answer_invitation(&caller, d::JoinRequestId(id), body.accept)
        .await?;
    Ok(Json(cg::join_outcome(&outcome)))
}

/// Announcements, pinned first.
#[utoipa::path(get, path = "/api/v1/groups/{id}/announcements", tag = "groups", security(("bearer" = [])),
    params(("id" = u64, Path, description = "group number")),
    responses((status = 200, body = Vec<w::AnnouncementView>), (status = 403, body = w::ErrorBody)))]
pub async fn announcements(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<u64>,
) -> ApiResult<Json<Vec<w::AnnouncementView>>> {
    let list = app.qun.announcements(&caller, d::GroupId(id)).await?;
    Ok(Json(list.iter().map(cg::announcement).collect()))
}

/// Post an announcement (owner and admins).
#[utoipa::path(post, path = "/api/v1/groups/{id}/announcements", tag = "groups", security(("bearer" = [])),
    params(("id" = u64, Path, description = "group number")), request_body = w::AnnouncementDraft,
    responses((status = 201, body = w::AnnouncementView), (status = 403, body = w::ErrorBody)))]
pub async fn announce(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<u64>,
    ApiJson(body): ApiJson<w::AnnouncementDraft>,
) -> ApiResult<(StatusCode, Json<w::AnnouncementView>)> {
    let a = app
        .qun
        .create_announcement(&caller, d::GroupId(id), cg::draft_in(body))
        .await?;
    Ok((StatusCode::CREATED, Json(cg::announcement(&a))))
}

/// Edit an announcement (owner and admins).
#[utoipa::path(put, path = "/api/v1/groups/{id}/announcements/{aid}", tag = "groups", security(("bearer" = [])),
    params(("id" = u64, Path, description = "group number"), ("aid" = u64, Path, description = "announcement")),
    request_body = w::AnnouncementDraft, responses((status = 200, body = w::AnnouncementView), (status = 404, body = w::ErrorBody)))]
pub async fn edit_announcement(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiPath((id, aid)): ApiPath<(u64, u64)>,
    ApiJson(body): ApiJson<w::AnnouncementDraft>,
) -> ApiResult<Json<w::AnnouncementView>> {
    let a = app
        .qun
        .edit_announcement(
            &caller,
            d::GroupId(id),
            d::AnnouncementId(aid),
            cg::draft_in(body),
        )
        .await?;
    Ok(Json(cg::announcement(&a)))
}

/// Delete an announcement (owner and admins).
#[utoipa::path(delete, path = "/api/v1/groups/{id}/announcements/{aid}", tag = "groups", security(("bearer" = [])),
    params(("id" = u64, Path, description = "group number"), ("aid" = u64, Path, description = "announcement")),
    responses((status = 204), (status = 404, body = w::ErrorBody)))]
pub async fn delete_announcement(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiPath((id, aid)): ApiPath<(u64, u64)>,
) -> ApiResult<StatusCode> {
    app.qun
        .delete_announcement(&caller, d::GroupId(id), d::AnnouncementId(aid))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Confirm having read an announcement that asks for it.
#[utoipa::path(post, path = "/api/v1/groups/{id}/announcements/{aid}/confirm", tag = "groups", security(("bearer" = [])),
    params(("id" = u64, Path, description = "group number"), ("aid" = u64, Path, description = "announcement")),
    responses((status = 204), (status = 409, body = w::ErrorBody)))]
pub async fn confirm(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiPath((id, aid)): ApiPath<(u64, u64)>,
) -> ApiResult<StatusCode> {
    app.qun
        .confirm_announcement(&caller, d::GroupId(id), d::AnnouncementId(aid))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Who confirmed an announcement (owner and admins).
#[utoipa::path(get, path = "/api/v1/groups/{id}/announcements/{aid}/confirmations", tag = "groups", security(("bearer" = [])),
    params(("id" = u64, Path, description = "group number"), ("aid" = u64, Path, description = "announcement")),
    responses((status = 200, body = Vec<w::Confirmation>), (status = 403, body = w::ErrorBody)))]
pub async fn confirmations(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiPath((id, aid)): ApiPath<(u64, u64)>,
) -> ApiResult<Json<Vec<w::Confirmation>>> {
    let list = app
        .qun
        .announcement_confirmations(&caller, d::GroupId(id), d::AnnouncementId(aid))
        .await?;
    Ok(Json(
        list.into_iter()
            .map(|(u, at)| w::Confirmation {
                user_id: w::UserId(u.0),
                at,
            })
            .collect(),
    ))
}

/// Essence messages, newest first.
#[utoipa::path(get, path = "/api/v1/groups/{id}/essence", tag = "groups", security(("bearer" = [])),
    params(("id" = u64, Path, description = "group number")),
    responses((status = 200, body = Vec<w::EssenceView>), (status = 403, body = w::ErrorBody)))]
pub async fn essences(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<u64>,
) -> ApiResult<Json<Vec<w::EssenceView>>> {
    let list = app.qun.essences(&caller, d::GroupId(id)).await?;
    Ok(Json(list.iter().map(cg::essence).collect()))
}

/// Mark a message as essence (owner and admins).
#[utoipa::path(put, path = "/api/v1/groups/{id}/essence/{seq}", tag = "groups", security(("bearer" = [])),
    params(("id" = u64, Path, description = "group number"), ("seq" = u64, Path, description = "message")),
    responses((status = 204), (status = 403, body = w::ErrorBody)))]
pub async fn set_essence(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiPath((id, seq)): ApiPath<(u64, u64)>,
) -> ApiResult<StatusCode> {
    app.qun
        .set_essence(&caller, d::GroupId(id), d::Seq(seq), true)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Unmark an essence message (owner and admins).
#[utoipa::path(delete, path = "/api/v1/groups/{id}/essence/{seq}", tag = "groups", security(("bearer" = [])),
    params(("id" = u64, Path, description = "group number"), ("seq" = u64, Path, description = "message")),
    responses((status = 204), (status = 404, body = w::ErrorBody)))]
pub async fn unset_essence(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiPath((id, seq)): ApiPath<(u64, u64)>,
) -> ApiResult<StatusCode> {
    app.qun
        .set_essence(&caller, d::GroupId(id), d::Seq(seq), false)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Who has read up to a message (counts only above the configured group size).
#[utoipa::path(get, path = "/api/v1/groups/{id}/receipts/{seq}", tag = "groups", security(("bearer" = [])),
    params(("id" = u64, Path, description = "group number"), ("seq" = u64, Path, description = "message")),
    responses((status = 200, body = w::ReceiptsView), (status = 403, body = w::ErrorBody)))]
pub async fn receipts(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiPath((id, seq)): ApiPath<(u64, u64)>,
) -> ApiResult<Json<w::ReceiptsView>> {
    let r = app
        .qun
        .receipts(&caller, d::GroupId(id), d::Seq(seq))
        .await?;
    Ok(Json(w::ReceiptsView {
        count: r.count,
        readers: r
            .readers
            .map(|v| v.into_iter().map(|u| w::UserId(u.0)).collect()),
    }))
}

/// Today's most talkative members.
#[utoipa::path(get, path = "/api/v1/groups/{id}/honours", tag = "groups", security(("bearer" = [])),
    params(("id" = u64, Path, description = "group number")),
    responses((status = 200, body = Vec<w::Honour>), (status = 403, body = w::ErrorBody)))]
pub async fn honours(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<u64>,
) -> ApiResult<Json<Vec<w::Honour>>> {
    let list = app.qun.honours(&caller, d::GroupId(id), 10).await?;
    Ok(Json(
        list.into_iter()
            .map(|(u, n)| w::Honour {
                user_id: w::UserId(u.0),
                messages: n,
            })
            .collect(),
    ))
}

/// The @all quota left today (owner and admins).
#[utoipa::path(get, path = "/api/v1/groups/{id}/at-all-quota", tag = "groups", security(("bearer" = [])),
    params(("id" = u64, Path, description = "group number")),
    responses((status = 200, body = w::AtAllQuotaView), (status = 403, body = w::ErrorBody)))]
pub async fn at_all_quota(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<u64>,
) -> ApiResult<Json<w::AtAllQuotaView>> {
    let q = app.qun.at_all_quota(&caller, d::GroupId(id)).await?;
    Ok(Json(w::AtAllQuotaView {
        group_remaining: q.group_remaining,
        mine_remaining: q.mine_remaining,
    }))
}

/// Open a temporary session with a member of a shared group who is not a friend.
#[utoipa::path(post, path = "/api/v1/temp-sessions", tag = "chat", security(("bearer" = [])),
    request_body = w::TempSessionRequest,
    responses((status = 200, body = w::ConversationView), (status = 403, body = w::ErrorBody)))]
pub async fn temp_session(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiJson(body): ApiJson<w::TempSessionRequest>,
) -> ApiResult<Json<w::ConversationView>> {
    let state = app
        .qun
        .open_temp_session(&caller, d::UserId(body.user_id.0))
        .await?;
    Ok(Json(convert::conversation(&state)))
}
