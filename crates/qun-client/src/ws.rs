//! The WebSocket half of the client: one authenticated socket shared by many
//! concurrent requests, with pushed events delivered on a stream.
//!
//! Three tasks serve a connection. The writer owns the socket's sink and is fed
//! by one channel, so every [`Connection`] clone can write through `&self`. The
//! reader routes `ok`/`error` answers to the request waiting for their id, events
//! to the event stream and id-less errors to the protocol-error stream. The
//! heartbeat task pings often enough that the server never times the socket out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use qun_wire::{
    Ack, ClientFrame, ConversationEvent, ConversationId, ConversationList, ErrorBody, Event,
    HistoryPage, PresenceState, ReadState, Request, Segment, Seq, ServerFrame, UserId,
    PROTOCOL_VERSION,
};
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::ClientError;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Answer = Result<serde_json::Value, ClientError>;

/// Close code recorded when the server sent a close frame without a code.
const NO_STATUS: u16 = 1005;
/// Close code recorded when the connection ended without any close frame.
const ABNORMAL: u16 = 1006;

/// The server's greeting after a successful `auth` frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The authenticated account.
    pub user_id: UserId,
    /// The session the token belongs to.
    pub session_id: String,
    /// The client must send something at least this often (seconds).
    pub heartbeat_secs: u64,
    /// Server time at authentication, ms since the Unix epoch.
    pub server_time: i64,
}

/// How a [`Connection`] behaves.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Send a `ping` every third of the server's heartbeat interval. Tests of
    /// the server's heartbeat timeout turn this off.
    pub heartbeat: bool,
    /// How long the handshake, and then each request, may wait for its answer.
    pub request_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            heartbeat: true,
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// An authenticated WebSocket connection to the gateway.
///
/// Clones share the socket: requests from several tasks are multiplexed by id,
/// and the event stream is consumed by whichever clone reads it. The socket
/// closes when [`Connection::close`] is called or the last clone is dropped.
#[derive(Clone)]
pub struct Connection {
    inner: Arc<Inner>,
}

struct Inner {
    hello: Hello,
    out: mpsc::UnboundedSender<Message>,
    shared: Arc<Shared>,
    events: tokio::sync::Mutex<mpsc::UnboundedReceiver<Event>>,
    protocol_errors: tokio::sync::Mutex<mpsc::UnboundedReceiver<ErrorBody>>,
    next_id: AtomicU64,
    request_timeout: Duration,
}

/// What the reader task and the request callers both touch.
#[derive(Default)]
struct Shared {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Requests waiting for their answer, by request id.
    pending: HashMap<String, oneshot::Sender<Answer>>,
    /// Close code and reason, once the server closed or the connection was lost.
    close: Option<(u16, String)>,
    /// Set when the reader has stopped: no answer will ever arrive again.
    finished: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves the map consistent enough: at
        // worst one request waits for its timeout.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn closed_error(state: &State) -> ClientError {
        let (code, reason) = state.close.clone().unwrap_or((ABNORMAL, String::new()));
        ClientError::Closed { code, reason }
    }

    fn record_close(&self, code: u16, reason: String) {
        let mut state = self.lock();
        if state.close.is_none() {
            state.close = Some((code, reason));
        }
    }

    /// Marks the connection finished and fails every waiting request.
    fn finish(&self) {
        let mut state = self.lock();
        state.finished = true;
        if state.close.is_none() {
            state.close = Some((ABNORMAL, "connection lost".to_owned()));
        }
        let error = Shared::closed_error(&state);
        for (_, waiter) in state.pending.drain() {
            // The requester may have timed out and gone; nothing to tell then.
            let _ = waiter.send(Err(error.clone()));
        }
    }

    /// Hands an answer to its request; gives it back if nobody waits for that id.
    fn answer(&self, id: &str, answer: Answer) -> Option<Answer> {
        let waiter = self.lock().pending.remove(id);
        match waiter {
            Some(waiter) => waiter.send(answer).err(),
            None => Some(answer),
        }
    }
}

impl Connection {
    /// Connects to the gateway of the server at `base_url` (the `http://` or
    /// `https://` URL also given to [`crate::Client::new`]), authenticates with
    /// `token` and waits for the server's hello. Heartbeats are on.
    pub async fn connect(base_url: &str, token: &str) -> Result<(Connection, Hello), ClientError> {
        Connection::connect_with(base_url, token, ConnectOptions::default()).await
    }

    /// [`Connection::connect`] with explicit options.
    pub async fn connect_with(
        base_url: &str,
        token: &str,
        options: ConnectOptions,
    ) -> Result<(Connection, Hello), ClientError> {
        let url = ws_url(base_url)?;
        let (mut socket, _) = tokio::time::timeout(
            options.request_timeout,
            tokio_tungstenite::connect_async(url),
        )
        .await
        .map_err(|_| ClientError::Timeout)?
        .map_err(handshake_error)?;

        // The token travels in the first frame, not the URL, so it stays out of
        // proxy and server access logs.
        let auth = encode(&ClientFrame::new(
            "auth",
            Request::Auth {
                token: token.to_owned(),
            },
        ))?;
        socket
            .send(Message::text(auth))
            .await
            .map_err(socket_error)?;

        let mut early_events = Vec::new();
        let hello = tokio::time::timeout(
            options.request_timeout,
            await_hello(&mut socket, &mut early_events),
        )
        .await
        .map_err(|_| ClientError::Timeout)??;

        let (sink, stream) = socket.split();
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let (event_tx, event_rx) = mpsc::unbounded_channel();
        let (error_tx, error_rx) = mpsc::unbounded_channel();
        let (stop_tx, stop_rx) = oneshot::channel();
        for event in early_events {
            let _ = event_tx.send(event);
        }
        let shared = Arc::new(Shared::default());

        tokio::spawn(write_loop(sink, out_rx, stop_rx));
        tokio::spawn(read_loop(
            stream,
            Arc::clone(&shared),
            event_tx,
            error_tx,
            stop_tx,
        ));
        if options.heartbeat {
            let period = Duration::from_secs(hello.heartbeat_secs / 3).max(Duration::from_secs(1));
            tokio::spawn(heartbeat_loop(out_tx.downgrade(), period));
        }

        let connection = Connection {
            inner: Arc::new(Inner {
                hello: hello.clone(),
                out: out_tx,
                shared,
                events: tokio::sync::Mutex::new(event_rx),
                protocol_errors: tokio::sync::Mutex::new(error_rx),
                next_id: AtomicU64::new(1),
                request_timeout: options.request_timeout,
            }),
        };
        Ok((connection, hello))
    }

    /// The server's greeting for this connection.
    pub fn hello(&self) -> &Hello {
        &self.inner.hello
    }

    /// Sends a request and waits for its answer's `data`. An `error` answer
    /// becomes [`ClientError::Api`] with status 0.
    pub async fn request(&self, request: Request) -> Result<serde_json::Value, ClientError> {
        let id = format!("r{}", self.inner.next_id.fetch_add(1, Ordering::Relaxed));
        let text = encode(&ClientFrame::new(id.clone(), request))?;
        let (tx, rx) = oneshot::channel();
        {
            let mut state = self.inner.shared.lock();
            if state.finished {
                return Err(Shared::closed_error(&state));
            }
            state.pending.insert(id.clone(), tx);
        }
        if self.inner.out.send(Message::text(text)).is_err() {
            let mut state = self.inner.shared.lock();
            state.pending.remove(&id);
            return Err(Shared::closed_error(&state));
        }
        match tokio::time::timeout(self.inner.request_timeout, rx).await {
            Ok(Ok(answer)) => answer,
            // The reader drops no waiter without answering; this is belt and braces.
            Ok(Err(_)) => Err(Shared::closed_error(&self.inner.shared.lock())),
            Err(_) => {
                self.inner.shared.lock().pending.remove(&id);
                Err(ClientError::Timeout)
            }
        }
    }

    async fn typed<T: DeserializeOwned>(&self, request: Request) -> Result<T, ClientError> {
        let kind = request.type_name();
        let data = self.request(request).await?;
        serde_json::from_value(data).map_err(|e| ClientError::Decode(format!("{kind}: {e}")))
    }

    /// Sends a message. Retrying with the same `client_msg_id` returns the
    /// first acknowledgement.
    pub async fn send(
        &self,
        conversation: ConversationId,
        client_msg_id: &str,
        segments: Vec<Segment>,
    ) -> Result<Ack, ClientError> {
        let client_msg_id = client_msg_id.to_owned();
        self.typed(Request::Send {
            conversation,
            client_msg_id,
            segments,
        })
        .await
    }

    /// Recalls the message at `seq`.
    pub async fn recall(&self, conversation: ConversationId, seq: Seq) -> Result<Ack, ClientError> {
        self.typed(Request::Recall { conversation, seq }).await
    }

    /// Moves the read position of `conversation` forward to `seq`.
    pub async fn read(
        &self,
        conversation: ConversationId,
        seq: Seq,
    ) -> Result<ReadState, ClientError> {
        self.typed(Request::Read { conversation, seq }).await
    }

    /// A page of history: forward after `after`, or backward before `before`.
    pub async fn history(
        &self,
        conversation: ConversationId,
        after: Option<Seq>,
        before: Option<Seq>,
        limit: Option<u32>,
    ) -> Result<HistoryPage, ClientError> {
        self.typed(Request::History {
            conversation,
            after,
            before,
            limit,
        })
        .await
    }

    /// Every event of `conversation` after `after`, fetched forward in pages
    /// of `page` events until the server says there are no more.
    pub async fn catch_up(
        &self,
        conversation: ConversationId,
        after: Seq,
        page: u32,
    ) -> Result<Vec<ConversationEvent>, ClientError> {
        let mut events: Vec<ConversationEvent> = Vec::new();
        let mut cursor = after;
        loop {
            let batch = self
                .history(conversation, Some(cursor), None, Some(page))
                .await?;
            let more = batch.more;
            events.extend(batch.events);
            match events.last() {
                // Stop on an empty page too, so a server bug cannot spin us forever.
                Some(last) if more && last.seq() > cursor => cursor = last.seq(),
                _ => return Ok(events),
            }
        }
    }

    /// The caller's conversations with last sequence and unread counts.
    pub async fn conversations(&self) -> Result<ConversationList, ClientError> {
        self.typed(Request::Conversations).await
    }

    /// Sets this device's presence; returns the answer's data as is.
    pub async fn set_presence(
        &self,
        state: PresenceState,
    ) -> Result<serde_json::Value, ClientError> {
        self.request(Request::SetPresence { state }).await
    }

    /// Pings the server and waits for the answer.
    pub async fn ping(&self) -> Result<(), ClientError> {
        self.request(Request::Ping).await.map(|_| ())
    }

    /// Writes an arbitrary text frame, valid or not. Answers to it that carry an
    /// id nobody waits for, and id-less errors, arrive as protocol errors.
    pub fn send_raw_text(&self, text: impl Into<String>) -> Result<(), ClientError> {
        self.inner
            .out
            .send(Message::text(text.into()))
            .map_err(|_| self.closed_error())
    }

    /// The next pushed event; `None` once the connection has closed and every
    /// event received before has been read.
    pub async fn next_event(&self) -> Option<Event> {
        self.inner.events.lock().await.recv().await
    }

    /// An event already received, if any, without waiting.
    pub fn try_next_event(&self) -> Option<Event> {
        self.inner.events.try_lock().ok()?.try_recv().ok()
    }

    /// The next pushed event, waiting at most `wait`: `Ok(None)` when the
    /// connection closed, [`ClientError::Timeout`] when nothing came in time.
    pub async fn next_event_timeout(&self, wait: Duration) -> Result<Option<Event>, ClientError> {
        tokio::time::timeout(wait, self.next_event())
            .await
            .map_err(|_| ClientError::Timeout)
    }

    /// The next error the server sent without a request id (a frame it could
    /// not parse), or with an id no request waits for (one from
    /// [`Connection::send_raw_text`]); `None` after `wait` or once closed.
    /// Frames from the server that this client cannot parse also arrive here,
    /// with code [`crate::UNPARSEABLE`].
    pub async fn next_protocol_error_timeout(&self, wait: Duration) -> Option<ErrorBody> {
        let mut errors = self.inner.protocol_errors.lock().await;
        tokio::time::timeout(wait, errors.recv())
            .await
            .ok()
            .flatten()
    }

    /// A protocol error already received, if any, without waiting.
    pub fn try_next_protocol_error(&self) -> Option<ErrorBody> {
        self.inner.protocol_errors.try_lock().ok()?.try_recv().ok()
    }

    /// Close code and reason once the server closed the socket or it was lost
    /// (1006 when no close frame came).
    pub fn close_info(&self) -> Option<(u16, String)> {
        self.inner.shared.lock().close.clone()
    }

    /// Whether the connection has ended: requests will fail with [`ClientError::Closed`].
    pub fn is_closed(&self) -> bool {
        self.inner.shared.lock().finished
    }

    /// Starts a normal close (1000). The server's answering close ends the
    /// event stream; pending requests then fail with [`ClientError::Closed`].
    pub fn close(&self) {
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        // Already closed is as good as closed.
        let _ = self.inner.out.send(Message::Close(Some(frame)));
    }

    fn closed_error(&self) -> ClientError {
        Shared::closed_error(&self.inner.shared.lock())
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("hello", &self.inner.hello)
            .field("close", &self.close_info())
            .finish_non_exhaustive()
    }
}

/// The gateway URL for a server's base URL: `http` becomes `ws`, `https`
/// becomes `wss`, and `/api/v1/ws` is appended.
pub fn ws_url(base_url: &str) -> Result<String, ClientError> {
    let base = base_url.trim_end_matches('/');
    let (scheme, rest) = base
        .split_once("://")
        .ok_or_else(|| ClientError::Transport(format!("not a URL: {base_url:?}")))?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" | "ws" => "ws",
        "https" | "wss" => "wss",
        other => {
            return Err(ClientError::Transport(format!(
                "unsupported URL scheme {other:?}"
            )))
        }
    };
    Ok(format!("{scheme}://{rest}/api/v1/ws"))
}

fn encode(frame: &ClientFrame) -> Result<String, ClientError> {
    serde_json::to_string(frame).map_err(|e| ClientError::Decode(format!("encoding a frame: {e}")))
}

/// A failed upgrade: an HTTP error answer keeps its status and body.
fn handshake_error(e: tungstenite::Error) -> ClientError {
    match e {
        tungstenite::Error::Http(response) => {
            let body = response.body().as_deref().unwrap_or_default();
            ClientError::from_answer(response.status().as_u16(), body)
        }
        other => socket_error(other),
    }
}

fn socket_error(e: tungstenite::Error) -> ClientError {
    match e {
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            ClientError::Closed {
                code: ABNORMAL,
                reason: e.to_string(),
            }
        }
        other => ClientError::transport(&other),
    }
}

fn close_parts(frame: Option<CloseFrame>) -> (u16, String) {
    match frame {
        Some(frame) => (u16::from(frame.code), frame.reason.to_string()),
        None => (NO_STATUS, String::new()),
    }
}

/// Reads until the server's hello, an error answer to `auth`, or a close.
async fn await_hello(
    socket: &mut Socket,
    early_events: &mut Vec<Event>,
) -> Result<Hello, ClientError> {
    while let Some(message) = socket.next().await {
        let text = match message.map_err(socket_error)? {
            Message::Text(text) => text,
            Message::Close(frame) => {
                let (code, reason) = close_parts(frame);
                return Err(ClientError::Closed { code, reason });
            }
            _ => continue,
        };
        let frame: ServerFrame = serde_json::from_str(&text)
            .map_err(|e| ClientError::Decode(format!("before hello: {e}: {}", text.as_str())))?;
        match frame {
            ServerFrame::Hello {
                user_id,
                session_id,
                heartbeat_secs,
                server_time,
                ..
            } => {
                return Ok(Hello {
                    user_id,
                    session_id,
                    heartbeat_secs,
                    server_time,
                });
            }
            ServerFrame::Error { error, .. } => return Err(ClientError::Api { status: 0, error }),
            ServerFrame::Event { event, .. } => early_events.push(event),
            ServerFrame::Ok { .. } => {}
        }
    }
    Err(ClientError::Closed {
        code: ABNORMAL,
        reason: "closed before hello".to_owned(),
    })
}

async fn write_loop(
    mut sink: SplitSink<Socket, Message>,
    mut outgoing: mpsc::UnboundedReceiver<Message>,
    mut reader_done: oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            message = outgoing.recv() => match message {
                Some(message) => {
                    if sink.send(message).await.is_err() {
                        break;
                    }
                }
                None => {
                    // Every Connection clone is gone: say goodbye properly.
                    let _ = sink.send(Message::Close(Some(CloseFrame {
                        code: CloseCode::Normal,
                        reason: "".into(),
                    }))).await;
                    break;
                }
            },
            _ = &mut reader_done => break,
        }
    }
}

async fn read_loop(
    mut stream: SplitStream<Socket>,
    shared: Arc<Shared>,
    events: mpsc::UnboundedSender<Event>,
    protocol_errors: mpsc::UnboundedSender<ErrorBody>,
    // Dropped when this task ends, which stops the writer.
    _done: oneshot::Sender<()>,
) {
    while let Some(message) = stream.next().await {
        match message {
            Ok(Message::Text(text)) => dispatch(&shared, &text, &events, &protocol_errors),
            Ok(Message::Close(frame)) => {
                let (code, reason) = close_parts(frame);
                shared.record_close(code, reason);
            }
            Ok(_) => {}
            Err(e) => {
                shared.record_close(ABNORMAL, e.to_string());
                break;
            }
        }
    }
    shared.finish();
}

/// Routes one server frame. Send errors are ignored: a dropped receiver means
/// nobody is listening any more.
fn dispatch(
    shared: &Shared,
    text: &str,
    events: &mpsc::UnboundedSender<Event>,
    protocol_errors: &mpsc::UnboundedSender<ErrorBody>,
) {
    let frame = match serde_json::from_str::<ServerFrame>(text) {
        Ok(frame) => frame,
        Err(e) => {
            let _ = protocol_errors.send(ErrorBody {
                code: crate::UNPARSEABLE.to_owned(),
                message: format!("{e}: {text}"),
                retry_after_secs: None,
                limit: None,
                max: None,
                field: None,
                until: None,
            });
            return;
        }
    };
    match frame {
        ServerFrame::Event { event, .. } => {
            let _ = events.send(event);
        }
        ServerFrame::Ok {
            id: Some(id), data, ..
        } => {
            // An answer nobody waits for belongs to a timed-out request or a raw frame.
            let _ = shared.answer(&id, Ok(data));
        }
        ServerFrame::Error {
            id: Some(id),
            error,
            ..
        } => {
            if let Some(Err(ClientError::Api { error, .. })) =
                shared.answer(&id, Err(ClientError::Api { status: 0, error }))
            {
                let _ = protocol_errors.send(error);
            }
        }
        ServerFrame::Error {
            id: None, error, ..
        } => {
            let _ = protocol_errors.send(error);
        }
        ServerFrame::Ok { id: None, .. } | ServerFrame::Hello { .. } => {}
    }
}

async fn heartbeat_loop(out: mpsc::WeakUnboundedSender<Message>, period: Duration) {
    let ping = ClientFrame {
        v: PROTOCOL_VERSION,
        id: None,
        request: Request::Ping,
    };
    let Ok(text) = serde_json::to_string(&ping) else {
        return;
    };
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        ticks.tick().await;
        // Holding only a weak sender lets the socket close when the last
        // Connection is dropped; a failed send means the writer has stopped.
        let Some(out) = out.upgrade() else { return };
        if out.send(Message::text(text.clone())).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests;
