//! qun's HTTP API and WebSocket gateway.
//!
//! The gateway speaks the wire format (`qun-wire`) and calls the domain
//! (`qun-domain`); it never touches a store crate. The server binary builds an
//! [`AppState`] and calls [`serve`].

mod convert;
mod convert_groups;
mod error;
mod extract;
mod hub;
mod openapi;
mod rest;
mod rest_groups;
mod ws;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, put};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use qun_domain::Qun;
use qun_wire::{codes, Health};
use serde::{Deserialize, Serialize};

pub use error::ApiError;
pub use hub::{CloseReason, Hub};
pub use openapi::openapi_json;

/// Gateway settings: the `[gateway]` table of `qun.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct GatewayConfig {
    /// Frames queued per socket before it is cut off as a slow consumer.
    pub outbound_queue_frames: usize,
    /// Bytes queued per socket before it is cut off as a slow consumer: a
    /// frame is let in while less than this waits, so one large frame (a
    /// history page asked for) always gets through a queue under budget.
    pub outbound_queue_bytes: usize,
    /// Heartbeat interval advertised to clients, seconds.
    pub heartbeat_secs: u64,
    /// A socket silent for this long is closed with `heartbeat_timeout`.
    pub heartbeat_timeout_secs: u64,
    /// Time allowed for the `auth` frame after the upgrade.
    pub auth_timeout_secs: u64,
    /// How often an open socket re-checks that its session is still valid
    /// (revocations are pushed at once; this catches changes made offline).
    pub session_recheck_secs: u64,
    /// Largest WebSocket frame accepted.
    pub max_frame_bytes: usize,
    /// Largest REST request body accepted.
    pub max_body_bytes: usize,
    /// Initial read buffer per socket (tungstenite's default is 128 KiB).
    pub ws_read_buffer_bytes: usize,
    /// Bytes a socket's writer gathers before writing; the writer flushes
    /// after each batch of queued frames, so frames are coalesced into few
    /// writes.
    pub ws_write_buffer_bytes: usize,
    /// Most bytes buffered for writing per socket. A safety net only: the
    /// writer stops handing over frames once `ws_write_buffer_bytes` wait
    /// to be written, so the buffer holds at most one frame beyond that;
    /// it must exceed the largest frame the server sends (a history page of
    /// large messages takes several MiB), which would otherwise end the
    /// socket.
    pub ws_max_write_buffer_bytes: usize,
    /// Kernel send buffer of each accepted socket (0: the system's default,
    /// which lets a stalled client hold megabytes before its queue fills).
    pub socket_send_buffer_bytes: u32,
    /// Listen backlog, for reconnect storms.
    pub listen_backlog: u32,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            outbound_queue_frames: 512,
            outbound_queue_bytes: 256 * 1024,
            heartbeat_secs: 30,
            heartbeat_timeout_secs: 90,
            auth_timeout_secs: 10,
            session_recheck_secs: 300,
            max_frame_bytes: 64 * 1024,
            max_body_bytes: 64 * 1024,
            ws_read_buffer_bytes: 1024,
            ws_write_buffer_bytes: 16 * 1024,
            ws_max_write_buffer_bytes: 64 * 1024 * 1024,
            socket_send_buffer_bytes: 64 * 1024,
            listen_backlog: 4096,
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The domain.
    pub qun: Arc<Qun>,
    /// This node's sockets.
    pub hub: Arc<Hub>,
    /// Settings.
    pub config: Arc<GatewayConfig>,
    /// Renders `/metrics`, when a recorder is installed.
    pub metrics: Option<PrometheusHandle>,
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let max_body = state.config.max_body_bytes;
    let api = Router::new()
        .route("/accounts", post(rest::register))
        .route("/sessions", post(rest::login).get(rest::sessions))
        .route("/sessions/current", delete(rest::logout))
        .route("/sessions/{session_id}", delete(rest::revoke_session))
        .route("/account/password", put(rest::change_password))
        .route("/account/profile", patch(rest::update_profile))
        .route("/users/{user_id}", get(rest::profile))
        .route("/friends", get(rest::friends))
        .route(
            "/friends/{user_id}",
            patch(rest::update_friend).delete(rest::remove_friend),
        )
        .route("/friends/{user_id}/likes", post(rest::like))
        .route(
            "/friend-requests",
            get(rest::friend_requests).post(rest::request_friend),
        )
        .route("/friend-requests/{id}/accept", post(rest::accept_friend))
        .route("/friend-requests/{id}/refuse", post(rest::refuse_friend))
        .route(
            "/friend-categories",
            get(rest::categories).post(rest::create_category),
        )
        .route(
            "/friend-categories/{id}",
            patch(rest::rename_category).delete(rest::delete_category),
        )
        .route("/blacklist", get(rest::blacklist))
        .route(
            "/blacklist/{user_id}",
            put(rest::block).delete(rest::unblock),
        )
        .route("/conversations", get(rest::conversations))
        .route("/conversations/direct", post(rest::direct))
        .route("/conversations/{id}/events", get(rest::history))
        .route("/conversations/{id}/messages", post(rest::send))
        .route(
            "/conversations/{id}/events/{seq}/recall",
            post(rest::recall),
        )
        .route("/conversations/{id}/read", put(rest::mark_read))
        .route(
            "/groups",
            post(rest_groups::create).get(rest_groups::search),
        )
        .route("/groups/mine", get(rest_groups::mine))
        .route(
            "/groups/{id}",
            get(rest_groups::get)
                .patch(rest_groups::update)
                .delete(rest_groups::dissolve),
        )
        .route("/groups/{id}/tier", put(rest_groups::tier))
        .route("/groups/{id}/transfer", post(rest_groups::transfer))
        .route("/groups/{id}/mute", put(rest_groups::mute_all))
        .route("/groups/{id}/join", post(rest_groups::join))
        .route("/groups/{id}/leave", post(rest_groups::leave))
        .route("/groups/{id}/members", get(rest_groups::members))
        .route(
            "/groups/{id}/members/changes",
            get(rest_groups::member_changes),
        )
        .route("/groups/{id}/members/me", get(rest_groups::me))
        .route("/groups/{id}/members/{user}/kick", post(rest_groups::kick))
        .route("/groups/{id}/members/{user}/mute", put(rest_groups::mute))
        .route("/groups/{id}/members/{user}/role", put(rest_groups::role))
        .route("/groups/{id}/members/{user}/title", put(rest_groups::title))
        .route("/groups/{id}/members/{user}/card", put(rest_groups::card))
        .route("/groups/{id}/bans/{user}", delete(rest_groups::unban))
        .route("/groups/{id}/invitations", post(rest_groups::invite))
        .route("/groups/{id}/invite-links", post(rest_groups::create_link))
        .route("/invite-links/{code}/join", post(rest_groups::join_link))
        .route(
            "/groups/{id}/join-requests",
            get(rest_groups::join_requests),
        )
        .route("/join-requests/mine", get(rest_groups::my_join_requests))
        .route("/join-requests/{id}/review", post(rest_groups::review))
        .route("/join-requests/{id}/answer", post(rest_groups::answer))
        .route(
            "/groups/{id}/announcements",
            get(rest_groups::announcements).post(rest_groups::announce),
        )
        .route(
            "/groups/{id}/announcements/{aid}",
            put(rest_groups::edit_announcement).delete(rest_groups::delete_announcement),
        )
        .route(
            "/groups/{id}/announcements/{aid}/confirm",
            post(rest_groups::confirm),
        )
        .route(
            "/groups/{id}/announcements/{aid}/confirmations",
            get(rest_groups::confirmations),
        )
        .route("/groups/{id}/essence", get(rest_groups::essences))
        .route(
            "/groups/{id}/essence/{seq}",
            put(rest_groups::set_essence).delete(rest_groups::unset_essence),
        )
        .route("/groups/{id}/receipts/{seq}", get(rest_groups::receipts))
        .route("/groups/{id}/honours", get(rest_groups::honours))
        .route("/groups/{id}/at-all-quota", get(rest_groups::at_all_quota))
        .route("/temp-sessions", post(rest_groups::temp_session))
        .route("/ws", get(ws::upgrade))
        .route("/openapi.json", get(openapi_handler));
    Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_handler))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

/// Serves until `shutdown` resolves, then closes every socket with
/// `server_shutdown` after flushing what was queued for it.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let hub = state.hub.clone();
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            hub.shutdown();
        })
        .await
}

async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

async fn readyz(State(app): State<AppState>) -> Response {
    if app.hub.is_shutting_down() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "shutting down".into(),
            }),
        )
            .into_response();
    }
    match app.qun.store().user(qun_domain::UserId(0)).await {
        Ok(_) => Json(Health {
            status: "ok".into(),
        })
        .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(Health {
                    status: "storage unavailable".into(),
                }),
            )
                .into_response()
        }
    }
}

async fn metrics_handler(State(app): State<AppState>) -> Response {
    match &app.metrics {
        Some(handle) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            codes::NO_ROUTE,
            "metrics are not enabled",
        )
        .into_response(),
    }
}

async fn openapi_handler() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], openapi_json()).into_response()
}

async fn no_route() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, codes::NO_ROUTE, "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        codes::METHOD_NOT_ALLOWED,
        "method not allowed on this route",
    )
}
