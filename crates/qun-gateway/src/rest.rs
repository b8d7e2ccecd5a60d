//! REST handlers under `/api/v1`. Each is a thin translation: extract, call the
//! domain, convert. The OpenAPI document is generated from these annotations.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::Json;
use qun_domain::model::ProfileUpdate;
use qun_domain::{self as d, LoginInput};
use qun_wire as w;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::convert;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiJsonOrDefault, ApiPath, ApiQuery, Auth};
use crate::AppState;

type ApiResult<T> = Result<T, ApiError>;

/// Register an account; the answer holds the new qun number.
#[utoipa::path(post, path = "/api/v1/accounts", tag = "accounts", request_body = w::RegisterRequest,
    responses((status = 201, body = w::RegisterResponse), (status = 400, body = w::ErrorBody), (status = 413, body = w::ErrorBody)))]
pub async fn register(
    State(app): State<AppState>,
    ApiJson(body): ApiJson<w::RegisterRequest>,
) -> ApiResult<(StatusCode, Json<w::RegisterResponse>)> {
    let id = app.qun.register(&body.nickname, &body.password).await?;
    Ok((
        StatusCode::CREATED,
        Json(w::RegisterResponse {
            user_id: w::UserId(id.0),
        }),
    ))
}

/// Log a device in; the token in the answer is shown only once.
#[utoipa::path(post, path = "/api/v1/sessions", tag = "accounts", request_body = w::LoginRequest,
    responses((status = 201, body = w::LoginResponse), (status = 401, body = w::ErrorBody), (status = 429, body = w::ErrorBody)))]
pub async fn login(
    State(app): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    ApiJson(body): ApiJson<w::LoginRequest>,
) -> ApiResult<(StatusCode, Json<w::LoginResponse>)> {
    let new = app
        .qun
        .login(LoginInput {
            user: d::UserId(body.user_id.0),
            password: body.password,
            device_kind: convert::device_in(body.device_kind),
            device_name: body.device_name,
            addr: Some(addr.ip()),
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(w::LoginResponse {
            token: new.token,
            session_id: new.session.id.0,
            user_id: w::UserId(new.session.user.0),
            expires_at: new.session.expires_at,
        }),
    ))
}

/// The caller's logged-in devices.
#[utoipa::path(get, path = "/api/v1/sessions", tag = "accounts", security(("bearer" = [])),
    responses((status = 200, body = Vec<w::SessionView>), (status = 401, body = w::ErrorBody)))]
pub async fn sessions(
    State(app): State<AppState>,
    Auth(caller): Auth,
) -> ApiResult<Json<Vec<w::SessionView>>> {
    let list = app.qun.sessions(&caller).await?;
    Ok(Json(
        list.iter().map(|s| convert::session(s, &caller)).collect(),
    ))
}

/// Log out the calling device; its open sockets close at once.
#[utoipa::path(delete, path = "/api/v1/sessions/current", tag = "accounts", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = w::ErrorBody)))]
pub async fn logout(State(app): State<AppState>, Auth(caller): Auth) -> ApiResult<StatusCode> {
    app.qun.logout(&caller).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revoke one of the caller's devices; its open sockets close at once.
#[utoipa::path(delete, path = "/api/v1/sessions/{session_id}", tag = "accounts", security(("bearer" = [])),
    params(("session_id" = String, Path, description = "session id")),
    responses((status = 204), (status = 404, body = w::ErrorBody)))]
pub async fn revoke_session(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    app.qun.revoke_session(&caller, &d::SessionId(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Change the password; every other session is revoked.
#[utoipa::path(put, path = "/api/v1/account/password", tag = "accounts", security(("bearer" = [])),
    request_body = w::ChangePasswordRequest,
    responses((status = 200, body = w::RevokedCount), (status = 401, body = w::ErrorBody)))]
pub async fn change_password(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiJson(body): ApiJson<w::ChangePasswordRequest>,
) -> ApiResult<Json<w::RevokedCount>> {
    let revoked = app
        .qun
        .change_password(&caller, &body.old_password, &body.new_password)
        .await?;
    Ok(Json(w::RevokedCount { revoked }))
}

/// Change the caller's profile.
#[utoipa::path(patch, path = "/api/v1/account/profile", tag = "accounts", security(("bearer" = [])),
    request_body = w::ProfilePatch, responses((status = 200, body = w::ProfileView), (status = 400, body = w::ErrorBody)))]
pub async fn update_profile(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiJson(body): ApiJson<w::ProfilePatch>,
) -> ApiResult<Json<w::ProfileView>> {
    let update = ProfileUpdate {
        nickname: body.nickname,
        signature: body.signature,
        avatar: body
            .avatar
            .map(|a| if a.is_empty() { None } else { Some(a) }),
        accept_temp_sessions: body.accept_temp_sessions,
    };
    let user = app.qun.update_profile(&caller, update).await?;
    Ok(Json(convert::profile(&user)))
}

/// A user's public profile.
#[utoipa::path(get, path = "/api/v1/users/{user_id}", tag = "accounts", security(("bearer" = [])),
    params(("user_id" = u64, Path, description = "qun number")),
    responses((status = 200, body = w::ProfileView), (status = 404, body = w::ErrorBody)))]
pub async fn profile(
    State(app): State<AppState>,
    Auth(_caller): Auth,
    ApiPath(user): ApiPath<u64>,
) -> ApiResult<Json<w::ProfileView>> {
    Ok(Json(convert::profile(
        &app.qun.profile(d::UserId(user)).await?,
    )))
}

/// The caller's friends with remarks, categories and presence.
#[utoipa::path(get, path = "/api/v1/friends", tag = "friends", security(("bearer" = [])),
    responses((status = 200, body = Vec<w::FriendView>)))]
pub async fn friends(
    State(app): State<AppState>,
    Auth(caller): Auth,
) -> ApiResult<Json<Vec<w::FriendView>>> {
    Ok(Json(
        app.qun
            .friends(&caller)
            .await?
            .iter()
            .map(convert::friend)
            .collect(),
    ))
}

/// Change a friend's remark or category.
#[utoipa::path(patch, path = "/api/v1/friends/{user_id}", tag = "friends", security(("bearer" = [])),
    params(("user_id" = u64, Path, description = "the friend")), request_body = w::FriendPatch,
    responses((status = 200, body = w::FriendView), (status = 403, body = w::ErrorBody)))]
pub async fn update_friend(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiPath(user): ApiPath<u64>,
    ApiJson(body): ApiJson<w::FriendPatch>,
) -> ApiResult<Json<w::FriendView>> {
    let category = body.category.map(|c| d::CategoryId(c.0));
    let entry = app
        .qun
        .update_friend(&caller, d::UserId(user), body.remark, category)
        .await?;
    Ok(Json(convert::friend(&entry)))
}

/// End a friendship; the conversation's history stays readable.
#[utoipa::path(delete, path = "/api/v1/friends/{user_id}", tag = "friends", security(("bearer" = [])),
    params(("user_id" = u64, Path, description = "the friend")),
    responses((status = 204), (status = 403, body = w::ErrorBody)))]
pub async fn remove_friend(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiPath(user): ApiPath<u64>,
) -> ApiResult<StatusCode> {
    app.qun.remove_friend(&caller, d::UserId(user)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Like a friend's profile (limited per friend per day).
#[utoipa::path(post, path = "/api/v1/friends/{user_id}/likes", tag = "friends", security(("bearer" = [])),
    params(("user_id" = u64, Path, description = "the friend")),
    responses((status = 200, body = w::LikeResult), (status = 429, body = w::ErrorBody)))]
pub async fn like(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiPath(user): ApiPath<u64>,
) -> ApiResult<Json<w::LikeResult>> {
    let (today, remaining) = app.qun.like(&caller, d::UserId(user)).await?;
    Ok(Json(w::LikeResult { today, remaining }))
}

/// Pending friend requests to and from the caller.
#[utoipa::path(get, path = "/api/v1/friend-requests", tag = "friends", security(("bearer" = [])),
    responses((status = 200, body = w::FriendRequestList)))]
pub async fn friend_requests(
    State(app): State<AppState>,
    Auth(caller): Auth,
) -> ApiResult<Json<w::FriendRequestList>> {
    let (incoming, outgoing) = app.qun.friend_requests(&caller).await?;
    Ok(Json(w::FriendRequestList {
        incoming: incoming.iter().map(convert::friend_request).collect(),
        outgoing: outgoing.iter().map(convert::friend_request).collect(),
    }))
}

/// Ask someone to be friends.
#[utoipa::path(post, path = "/api/v1/friend-requests", tag = "friends", security(("bearer" = [])),
    request_body = w::FriendRequestCreate,
    responses((status = 201, body = w::FriendRequestView), (status = 403, body = w::ErrorBody), (status = 409, body = w::ErrorBody)))]
pub async fn request_friend(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiJson(body): ApiJson<w::FriendRequestCreate>,
) -> ApiResult<(StatusCode, Json<w::FriendRequestView>)> {
    let request = app
        .qun
        .request_friend(&caller, d::UserId(body.to.0), &body.message)
        .await?;
    Ok((StatusCode::CREATED, Json(convert::friend_request(&request))))
}

/// Accept a friend request addressed to the caller.
#[utoipa::path(post, path = "/api/v1/friend-requests/{id}/accept", tag = "friends", security(("bearer" = [])),
    params(("id" = u64, Path, description = "request id")), request_body = w::AcceptFriendRequest,
    responses((status = 200, body = w::FriendView), (status = 404, body = w::ErrorBody), (status = 409, body = w::ErrorBody)))]
pub async fn accept_friend(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<u64>,
    ApiJsonOrDefault(body): ApiJsonOrDefault<w::AcceptFriendRequest>,
) -> ApiResult<Json<w::FriendView>> {
    let category = body.category.map(|c| d::CategoryId(c.0));
    let entry = app
        .qun
        .accept_friend(&caller, d::FriendRequestId(id), body.remark, category)
        .await?;
    Ok(Json(convert::friend(&entry)))
}

/// Refuse a friend request addressed to the caller.
#[utoipa::path(post, path = "/api/v1/friend-requests/{id}/refuse", tag = "friends", security(("bearer" = [])),
    params(("id" = u64, Path, description = "request id")),
    responses((status = 200, body = w::FriendRequestView), (status = 404, body = w::ErrorBody)))]
pub async fn refuse_friend(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<u64>,
) -> ApiResult<Json<w::FriendRequestView>> {
    let request = app
        .qun
        .refuse_friend(&caller, d::FriendRequestId(id))
        .await?;
    Ok(Json(convert::friend_request(&request)))
}

/// The caller's friend categories, the default (id 0) first.
#[utoipa::path(get, path = "/api/v1/friend-categories", tag = "friends", security(("bearer" = [])),
    responses((status = 200, body = Vec<w::CategoryView>)))]
pub async fn categories(
    State(app): State<AppState>,
    Auth(caller): Auth,
) -> ApiResult<Json<Vec<w::CategoryView>>> {
    Ok(Json(
        app.qun
            .categories(&caller)
            .await?
            .iter()
            .map(convert::category)
            .collect(),
    ))
}

/// Create a friend category.
#[utoipa::path(post, path = "/api/v1/friend-categories", tag = "friends", security(("bearer" = [])),
    request_body = w::CategoryName, responses((status = 201, body = w::CategoryView), (status = 429, body = w::ErrorBody)))]
pub async fn create_category(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiJson(body): ApiJson<w::CategoryName>,
) -> ApiResult<(StatusCode, Json<w::CategoryView>)> {
    let category = app.qun.create_category(&caller, &body.name).await?;
    Ok((StatusCode::CREATED, Json(convert::category(&category))))
}

/// Rename a friend category.
#[utoipa::path(patch, path = "/api/v1/friend-categories/{id}", tag = "friends", security(("bearer" = [])),
    params(("id" = u64, Path, description = "category id")), request_body = w::CategoryName,
    responses((status = 200, body = w::CategoryView), (status = 404, body = w::ErrorBody)))]
pub async fn rename_category(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<u64>,
    ApiJson(body): ApiJson<w::CategoryName>,
) -> ApiResult<Json<w::CategoryView>> {
    let category = app
        .qun
        .rename_category(&caller, d::CategoryId(id), &body.name)
        .await?;
    Ok(Json(convert::category(&category)))
}

/// Delete a friend category; its friends move to the default one.
#[utoipa::path(delete, path = "/api/v1/friend-categories/{id}", tag = "friends", security(("bearer" = [])),
    params(("id" = u64, Path, description = "category id")),
    responses((status = 204), (status = 404, body = w::ErrorBody)))]
pub async fn delete_category(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<u64>,
) -> ApiResult<StatusCode> {
    app.qun.delete_category(&caller, d::CategoryId(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's blacklist.
#[utoipa::path(get, path = "/api/v1/blacklist", tag = "friends", security(("bearer" = [])),
    responses((status = 200, body = Vec<w::BlockedView>)))]
pub async fn blacklist(
    State(app): State<AppState>,
    Auth(caller): Auth,
) -> ApiResult<Json<Vec<w::BlockedView>>> {
    let list = app.qun.blacklist(&caller).await?;
    Ok(Json(
        list.into_iter()
            .map(|(u, since)| w::BlockedView {
                user_id: w::UserId(u.0),
                since,
            })
            .collect(),
    ))
}

/// Blacklist a user: they can no longer message or befriend the caller; a
/// friendship with them ends.
#[utoipa::path(put, path = "/api/v1/blacklist/{user_id}", tag = "friends", security(("bearer" = [])),
    params(("user_id" = u64, Path, description = "the user")),
    responses((status = 204), (status = 404, body = w::ErrorBody)))]
pub async fn block(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiPath(user): ApiPath<u64>,
) -> ApiResult<StatusCode> {
    app.qun.block(&caller, d::UserId(user)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Remove a user from the blacklist.
#[utoipa::path(delete, path = "/api/v1/blacklist/{user_id}", tag = "friends", security(("bearer" = [])),
    params(("user_id" = u64, Path, description = "the user")),
    responses((status = 204), (status = 404, body = w::ErrorBody)))]
pub async fn unblock(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiPath(user): ApiPath<u64>,
) -> ApiResult<StatusCode> {
    app.qun.unblock(&caller, d::UserId(user)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's conversations with last sequence numbers and unread counts.
#[utoipa::path(get, path = "/api/v1/conversations", tag = "chat", security(("bearer" = [])),
    responses((status = 200, body = w::ConversationList)))]
pub async fn conversations(
    State(app): State<AppState>,
    Auth(caller): Auth,
) -> ApiResult<Json<w::ConversationList>> {
    Ok(Json(convert::conversation_list(
        &app.qun.conversations(&caller).await?,
    )))
}

/// The 1:1 conversation with a friend.
#[utoipa::path(post, path = "/api/v1/conversations/direct", tag = "chat", security(("bearer" = [])),
    request_body = w::DirectRequest, responses((status = 200, body = w::ConversationView), (status = 403, body = w::ErrorBody)))]
pub async fn direct(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiJson(body): ApiJson<w::DirectRequest>,
) -> ApiResult<Json<w::ConversationView>> {
    let state = app
        .qun
        .direct_conversation(&caller, d::UserId(body.user_id.0))
        .await?;
    Ok(Json(convert::conversation(&state)))
}

/// Bounds of a history page.
#[derive(Debug, Deserialize, IntoParams)]
pub struct HistoryParams {
    /// Events after this sequence number, ascending (catch-up).
    pub after: Option<u64>,
    /// Events before this sequence number (scrolling back).
    pub before: Option<u64>,
    /// Page size (default 100, at most the configured maximum).
    pub limit: Option<u32>,
}

/// A page of a conversation's events; without bounds, the newest page.
#[utoipa::path(get, path = "/api/v1/conversations/{id}/events", tag = "chat", security(("bearer" = [])),
    params(("id" = u64, Path, description = "conversation id"), HistoryParams),
    responses((status = 200, body = w::HistoryPage), (status = 403, body = w::ErrorBody), (status = 404, body = w::ErrorBody)))]
pub async fn history(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<u64>,
    ApiQuery(q): ApiQuery<HistoryParams>,
) -> ApiResult<Json<w::HistoryPage>> {
    let range = convert::history_range(q.after.map(w::Seq), q.before.map(w::Seq))?;
    let (events, more) = app
        .qun
        .history(&caller, d::ConversationId(id), range, q.limit)
        .await?;
    Ok(Json(convert::history_page(&events, more)))
}

/// Send a message; answered once it is durable. Retrying with the same
/// `client_msg_id` returns the same acknowledgement and stores nothing new.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/messages", tag = "chat", security(("bearer" = [])),
    params(("id" = u64, Path, description = "conversation id")), request_body = w::SendRequest,
    responses((status = 200, body = w::Ack), (status = 403, body = w::ErrorBody), (status = 413, body = w::ErrorBody)))]
pub async fn send(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<u64>,
    ApiJson(body): ApiJson<w::SendRequest>,
) -> ApiResult<Json<w::Ack>> {
    let segments = convert::segments_in(body.segments);
    let appended = app
        .qun
        .send(
            &caller,
            d::ConversationId(id),
            &body.client_msg_id,
            segments,
        )
        .await?;
    metrics::counter!("qun_messages_total").increment(u64::from(!appended.duplicate));
    Ok(Json(convert::ack(&appended)))
}

/// Recall one's own message within the recall window.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/events/{seq}/recall", tag = "chat", security(("bearer" = [])),
    params(("id" = u64, Path, description = "conversation id"), ("seq" = u64, Path, description = "the message")),
    responses((status = 200, body = w::Ack), (status = 403, body = w::ErrorBody), (status = 409, body = w::ErrorBody)))]
pub async fn recall(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiPath((id, seq)): ApiPath<(u64, u64)>,
) -> ApiResult<Json<w::Ack>> {
    let appended = app
        .qun
        .recall(&caller, d::ConversationId(id), d::Seq(seq))
        .await?;
    Ok(Json(convert::ack(&appended)))
}

/// Move the caller's read position forward.
#[utoipa::path(put, path = "/api/v1/conversations/{id}/read", tag = "chat", security(("bearer" = [])),
    params(("id" = u64, Path, description = "conversation id")), request_body = w::ReadRequest,
    responses((status = 200, body = w::ReadState), (status = 403, body = w::ErrorBody)))]
pub async fn mark_read(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<u64>,
    ApiJson(body): ApiJson<w::ReadRequest>,
) -> ApiResult<Json<w::ReadState>> {
    let state = app
        .qun
        .mark_read(&caller, d::ConversationId(id), d::Seq(body.seq.0))
        .await?;
    Ok(Json(convert::read_state(&state)))
}
