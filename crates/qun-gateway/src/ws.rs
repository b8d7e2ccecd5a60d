//! The WebSocket gateway at `/api/v1/ws` (see `docs/protocol.md`).
//!
//! A socket authenticates with its first frame (never with a token in the URL),
//! is registered in the hub *before* its `hello` is answered, so anything
//! committed afterwards reaches it live and anything before is found by
//! catch-up. One reader loop answers requests in order; one writer task owns the
//! socket's sending half and drains a bounded queue.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use qun_domain::{self as d, AuthError, Caller, Error};
use qun_wire::{codes, ClientFrame, ErrorBody, Request, ServerFrame, PROTOCOL_VERSION};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::convert;
use crate::error::ApiError;
use crate::hub::{CloseReason, ConnHandle};
use crate::AppState;

const KNOWN_TYPES: &[&str] = &[
    "auth",
    "ping",
    "send",
    "recall",
    "read",
    "history",
    "conversations",
    "set_presence",
];

/// `GET /api/v1/ws`: upgrades with buffers sized for many idle connections.
pub(crate) async fn upgrade(
    State(app): State<AppState>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(r) => {
            let msg = format!("a WebSocket upgrade is required here: {}", r.body_text());
            return ApiError::new(r.status(), codes::INVALID_FIELD, msg).into_response();
        }
    };
    if app.hub.is_shutting_down() {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::UNAVAILABLE,
            "server is shutting down",
        )
        .into_response();
    }
    let c = &app.config;
    ws.read_buffer_size(c.ws_read_buffer_bytes)
        .write_buffer_size(c.ws_write_buffer_bytes)
        .max_write_buffer_size(c.ws_max_write_buffer_bytes.max(c.ws_write_buffer_bytes + 1))
        .max_message_size(c.max_frame_bytes)
        .max_frame_size(c.max_frame_bytes)
        .on_upgrade(move |socket| connection(app, socket))
}

/// Serves an upgraded socket. Not an `async fn`: an async fn keeps its
/// arguments for its whole life, and the socket, which is only split here,
/// is large.
fn connection(app: AppState, socket: WebSocket) -> impl std::future::Future<Output = ()> {
    let (sink, stream) = socket.split();
    serve(app, sink, stream)
}

async fn serve(
    app: AppState,
    mut sink: SplitSink<WebSocket, Message>,
    mut stream: SplitStream<WebSocket>,
) {
    // The steps before and after the socket's life are boxed (as is each
    // request, in `read_loop`): their futures are far larger than waiting
    // is, and every idle socket would otherwise carry the largest inline.
    let caller = match Box::pin(authenticate(&app, &mut stream)).await {
        Ok(caller) => caller,
        Err((id, err)) => {
            let code = if err.body.code == codes::ACCOUNT_DISABLED {
                codes::close::ACCOUNT_DISABLED
            } else {
                codes::close::UNAUTHENTICATED
            };
            let reason = Utf8Bytes::from(err.body.code.clone());
            let _ = sink.send(Message::Text(error_frame(id, &err.body))).await;
            let _ = sink
                .send(Message::Close(Some(CloseFrame { code, reason })))
                .await;
            return;
        }
    };
    let (tx, rx) = mpsc::channel(app.config.outbound_queue_frames.max(1));
    let (kill, kill_rx) = watch::channel(None);
    let conn_id = Box::pin(app.qun.connected(&caller)).await;
    let handle = ConnHandle {
        id: conn_id,
        session: caller.session.clone(),
        tx,
        kill,
        queued: Arc::new(AtomicUsize::new(0)),
        max_queued: app.config.outbound_queue_bytes,
    };
    handle.push(hello(&app, &caller));
    app.hub.register(caller.user, handle.clone());
    // Receivers cloned from the channel's first one see every change, even one
    // made before they start waiting.
    let writer = tokio::spawn(write_loop(
        sink,
        rx,
        Arc::clone(&handle.queued),
        kill_rx.clone(),
    ));
    read_loop(&app, &caller, &handle, stream, kill_rx).await;
    app.hub.unregister(caller.user, conn_id);
    Box::pin(app.qun.disconnected(caller.user, conn_id)).await;
    handle.close(CloseReason::NORMAL);
    drop(handle);
    let _ = writer.await;
}

/// The first frame of an authenticated socket.
fn hello(app: &AppState, caller: &Caller) -> Utf8Bytes {
    frame(&ServerFrame::Hello {
        v: PROTOCOL_VERSION,
        user_id: qun_wire::UserId(caller.user.0),
        session_id: caller.session.0.clone(),
        // Never advertise an interval the timeout would not tolerate.
        heartbeat_secs: app
            .config
            .heartbeat_secs
            .min(app.config.heartbeat_timeout_secs / 2)
            .max(1),
        server_time: app.qun.now_ms(),
    })
}

/// Waits for the `auth` frame; anything else first is refused.
async fn authenticate(
    app: &AppState,
    stream: &mut SplitStream<WebSocket>,
) -> Result<Caller, (Option<String>, ApiError)> {
    let timeout = Duration::from_secs(app.config.auth_timeout_secs);
    let unauth = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, codes::UNAUTHENTICATED, m);
    let text = loop {
        match tokio::time::timeout(timeout, stream.next()).await {
            Err(_) => return Err((None, unauth("no auth frame within the time allowed"))),
            Ok(None) | Ok(Some(Err(_))) => return Err((None, unauth("socket closed before auth"))),
            Ok(Some(Ok(Message::Text(t)))) => break t,
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(Some(Ok(_))) => {
                return Err((None, unauth("the first frame must be a text auth frame")))
            }
        }
    };
    let (id, request) = parse_request(text.as_str())?;
    match request {
        Request::Auth { token } => app
            .qun
            .authenticate(&token)
            .await
            .map_err(|e| (id, ApiError::from(e))),
        _ => Err((id, unauth("authenticate first with an auth frame"))),
    }
}

async fn read_loop(
    app: &AppState,
    caller: &Caller,
    handle: &ConnHandle,
    mut stream: SplitStream<WebSocket>,
    mut kill: watch::Receiver<Option<CloseReason>>,
) {
    let heartbeat = Duration::from_secs(app.config.heartbeat_timeout_secs);
    let mut deadline = Instant::now() + heartbeat;
    let recheck_every = Duration::from_secs(app.config.session_recheck_secs.max(1));
    let mut recheck = tokio::time::interval_at(Instant::now() + recheck_every, recheck_every);
    loop {
        tokio::select! {
            _ = kill.changed() => break,
            _ = tokio::time::sleep_until(deadline) => {
                handle.close(CloseReason::HEARTBEAT_TIMEOUT);
                break;
            }
            _ = recheck.tick() => {
                if let Err(Error::Auth(a)) = Box::pin(app.qun.revalidate(caller)).await {
                    handle.close(if a == AuthError::Disabled { CloseReason::DISABLED } else { CloseReason::REVOKED });
                    break;
                }
            }
            next = stream.next() => {
                deadline = Instant::now() + heartbeat;
                let msg = match next {
                    None => break,
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "socket read failed");
                        match e.into_inner().downcast::<tungstenite::Error>().map(|e| *e) {
                            Ok(tungstenite::Error::Capacity(_)) => handle.close(CloseReason::FRAME_TOO_LARGE),
                            Ok(tungstenite::Error::Utf8(_)) => handle.close(CloseReason::INVALID_PAYLOAD),
                            Ok(tungstenite::Error::Protocol(_)) => handle.close(CloseReason::PROTOCOL_ERROR),
                            _ => {}
                        }
                        break;
                    }
                    Some(Ok(msg)) => msg,
                };
                let reply = match msg {
                    Message::Text(text) => Box::pin(handle_text(app, caller, handle.id, text.as_str())).await,
                    Message::Binary(_) => error_frame(None, &ApiError::invalid_json("binary frames are not supported; send JSON text").body),
                    Message::Ping(_) | Message::Pong(_) => continue,
                    Message::Close(_) => break,
                };
                if !handle.push(reply) {
                    break;
                }
            }
        }
    }
}

/// Owns the sending half: writes queued frames (coalescing what is already
/// queued into one flush) until told to close, then sends the close frame.
async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Utf8Bytes>,
    queued: Arc<AtomicUsize>,
    mut kill: watch::Receiver<Option<CloseReason>>,
) {
    // A frame handed to the socket leaves the queue's byte count.
    let taken = |frame: Utf8Bytes| {
        queued.fetch_sub(frame.len(), Ordering::Relaxed);
        Message::Text(frame)
    };
    loop {
        tokio::select! {
            biased;
            _ = kill.changed() => break,
            next = rx.recv() => {
                let Some(first) = next else { break };
                let write = async {
                    sink.feed(taken(first)).await?;
                    while let Ok(more) = rx.try_recv() {
                        sink.feed(taken(more)).await?;
                    }
                    sink.flush().await
                };
                let failed = tokio::select! {
                    r = write => r.is_err(),
                    _ = kill.changed() => true,
                };
                if failed {
                    break;
                }
            }
        }
    }
    let reason = *kill.borrow();
    let Some(reason) = reason else {
        let _ = sink.close().await;
        return;
    };
    // A graceful close delivers what is already queued; a slow consumer gets nothing more.
    let finish = async {
        if reason != CloseReason::SLOW_CONSUMER {
            while let Ok(more) = rx.try_recv() {
                sink.feed(Message::Text(more)).await?;
            }
        }
        let frame = CloseFrame {
            code: reason.code,
            reason: Utf8Bytes::from_static(reason.reason),
        };
        sink.send(Message::Close(Some(frame))).await
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), finish).await;
}

#[derive(Deserialize)]
struct Head {
    v: Option<Value>,
    id: Option<Value>,
    #[serde(rename = "type")]
    kind: Option<Value>,
}

/// Parses a request frame, saying precisely what is wrong with a bad one.
fn parse_request(text: &str) -> Result<(Option<String>, Request), (Option<String>, ApiError)> {
    // serde would read an array as a struct; a frame must be an object.
    if text.trim_start().as_bytes().first() != Some(&b'{') {
        return Err((
            None,
            ApiError::invalid_json("a frame must be a JSON object"),
        ));
    }
    let head: Head = serde_json::from_str(text).map_err(|e| {
        (
            None,
            ApiError::invalid_json(format!("a frame must be a JSON object: {e}")),
        )
    })?;
    let id = match head.id {
        None => None,
        Some(Value::String(s)) if s.len() <= 64 => Some(s),
        Some(_) => {
            return Err((
                None,
                ApiError::invalid_field("id must be a string of at most 64 bytes"),
            ))
        }
    };
    match head.v {
        Some(v) if v.as_u64() == Some(u64::from(PROTOCOL_VERSION)) => {}
        None => {
            return Err((
                id,
                ApiError::invalid_field("v (the protocol version) is required"),
            ))
        }
        Some(v) => {
            let msg = format!("protocol version {v} is not supported; use {PROTOCOL_VERSION}");
            return Err((
                id,
                ApiError::new(StatusCode::BAD_REQUEST, codes::UNSUPPORTED_VERSION, msg),
            ));
        }
    }
    let kind = match head.kind {
        Some(Value::String(s)) => s,
        None => return Err((id, ApiError::invalid_field("type is required"))),
        Some(_) => return Err((id, ApiError::invalid_field("type must be a string"))),
    };
    if !KNOWN_TYPES.contains(&kind.as_str()) {
        let msg = format!("unknown frame type {kind:?}");
        return Err((
            id,
            ApiError::new(StatusCode::BAD_REQUEST, codes::UNKNOWN_TYPE, msg),
        ));
    }
    let frame: ClientFrame = serde_json::from_str(text)
        .map_err(|e| (id.clone(), ApiError::invalid_field(format!("{kind}: {e}"))))?;
    Ok((id, frame.request))
}

async fn handle_text(app: &AppState, caller: &Caller, conn: u64, text: &str) -> Utf8Bytes {
    let (id, result) = match parse_request(text) {
        Ok((id, request)) => {
            metrics::counter!("qun_ws_requests_total", "type" => request.type_name()).increment(1);
            (id, execute(app, caller, conn, request).await)
        }
        Err((id, e)) => (id, Err(e)),
    };
    match result {
        Ok(data) => frame(&ServerFrame::Ok {
            v: PROTOCOL_VERSION,
            id,
            data,
        }),
        Err(e) => error_frame(id, &e.body),
    }
}

async fn execute(
    app: &AppState,
    caller: &Caller,
    conn: u64,
    request: Request,
) -> Result<Value, ApiError> {
    let qun = &app.qun;
    let value = match request {
        Request::Auth { .. } => {
            return Err(ApiError::from(Error::Conflict(
                "this socket is already authenticated".into(),
            )))
        }
        Request::Ping => serde_json::json!({ "server_time": qun.now_ms() }),
        Request::Send {
            conversation,
            client_msg_id,
            segments,
        } => {
            let conv = d::ConversationId(conversation.0);
            let appended = qun
                .send(caller, conv, &client_msg_id, convert::segments_in(segments))
                .await?;
            metrics::counter!("qun_messages_total").increment(u64::from(!appended.duplicate));
            to_value(&convert::ack(&appended))?
        }
        Request::Recall { conversation, seq } => {
            let appended = qun
                .recall(caller, d::ConversationId(conversation.0), d::Seq(seq.0))
                .await?;
            to_value(&convert::ack(&appended))?
        }
        Request::Read { conversation, seq } => {
            let state = qun
                .mark_read(caller, d::ConversationId(conversation.0), d::Seq(seq.0))
                .await?;
            to_value(&convert::read_state(&state))?
        }
        Request::History {
            conversation,
            after,
            before,
            limit,
        } => {
            let range = convert::history_range(after, before)?;
            let (events, more) = qun
                .history(caller, d::ConversationId(conversation.0), range, limit)
                .await?;
            to_value(&convert::history_page(&events, more))?
        }
        Request::Conversations => {
            let list = qun.conversations(caller).await?;
            to_value(&convert::conversation_list(&list))?
        }
        Request::SetPresence { state } => {
            let visible = qun
                .set_presence(caller, conn, convert::presence_in(state))
                .await?;
            serde_json::json!({ "state": convert::presence(visible) })
        }
    };
    Ok(value)
}

fn to_value<T: serde::Serialize>(v: &T) -> Result<Value, ApiError> {
    serde_json::to_value(v).map_err(|e| ApiError::from(Error::Internal(e.to_string())))
}

fn frame(f: &ServerFrame) -> Utf8Bytes {
    match serde_json::to_string(f) {
        Ok(s) => Utf8Bytes::from(s),
        Err(e) => {
            tracing::error!(error = %e, "frame not serialisable");
            Utf8Bytes::from_static(
                r#"{"type":"error","v":1,"id":null,"error":{"code":"internal","message":"internal error"}}"#,
            )
        }
    }
}

fn error_frame(id: Option<String>, body: &ErrorBody) -> Utf8Bytes {
    frame(&ServerFrame::Error {
        v: PROTOCOL_VERSION,
        id,
        error: body.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str) -> String {
        parse_request(text)
            .err()
            .map(|(_, e)| e.body.code)
            .unwrap_or_else(|| "ok".into())
    }

    #[test]
    fn bad_frames_get_precise_codes() {
        let cases = [
            ("{nope", "invalid_json"),
            ("[1,2]", "invalid_json"),
            (r#"{"v":1,"type":"ping"}"#, "ok"),
            (r#"{"type":"ping"}"#, "invalid_field"),
            (r#"{"v":2,"type":"ping"}"#, "unsupported_version"),
            (r#"{"v":1,"type":"teleport"}"#, "unknown_type"),
            (r#"{"v":1,"type":7}"#, "invalid_field"),
            (r#"{"v":1,"id":5,"type":"ping"}"#, "invalid_field"),
            (
                r#"{"v":1,"type":"send","conversation":"x","client_msg_id":"a","segments":[]}"#,
                "invalid_field",
            ),
            (
                r#"{"v":1,"type":"send","conversation":1,"client_msg_id":"a"}"#,
                "invalid_field",
            ),
            (
                r#"{"v":1,"type":"send","conversation":1,"client_msg_id":"a","segments":[{"type":"laser"}]}"#,
                "invalid_field",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(code(input), expected, "{input}");
        }
    }
}
