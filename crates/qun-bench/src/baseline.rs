//! The floor qun is compared against: a broadcast server on qun's own stack
//! (axum's WebSocket, tokio, serde_json) with qun's socket settings and
//! frame shapes, but no authentication, storage or routing. Any `auth` frame
//! gets a hello; a `send` is numbered, serialised once as qun's event frame,
//! queued on every socket (one conversation, everyone in it) and acknowledged.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use qun_client::qun_wire::{
    Ack, ClientFrame, ConversationEvent, Event, MessageId, MessageView, Request, Seq, ServerFrame,
    UserId, PROTOCOL_VERSION,
};
use tokio::sync::mpsc;

/// Frames queued per socket, as qun's `outbound_queue_frames`.
const QUEUE_FRAMES: usize = 512;

/// Every connected socket's queue.
#[derive(Default)]
struct Hub {
    sockets: RwLock<HashMap<u64, mpsc::Sender<Utf8Bytes>>>,
    next_socket: AtomicU64,
    next_seq: AtomicU64,
}

/// `qun-bench baseline-server`: serves until killed.
pub async fn serve(listen: &str) -> anyhow::Result<()> {
    let hub = Arc::new(Hub::default());
    let app = Router::new()
        .route("/api/v1/ws", get(upgrade))
        .with_state(hub);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    // The parent reads this line to find the port.
    println!("baseline listening on http://{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    axum::serve(listener, app).await?;
    Ok(())
}

/// Upgrades with qun's default socket settings (`GatewayConfig`).
async fn upgrade(State(hub): State<Arc<Hub>>, ws: WebSocketUpgrade) -> Response {
    ws.read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(256 * 1024)
        .max_message_size(64 * 1024)
        .on_upgrade(move |socket| connection(hub, socket))
}

async fn connection(hub: Arc<Hub>, socket: WebSocket) {
    let (sink, mut stream) = socket.split();
    // The first text frame stands for `auth`; whatever it says is accepted.
    loop {
        match stream.next().await {
            Some(Ok(Message::Text(_))) => break,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            _ => return,
        }
    }
    let id = hub.next_socket.fetch_add(1, Ordering::Relaxed) + 1;
    let (tx, rx) = mpsc::channel(QUEUE_FRAMES);
    let hello = ServerFrame::Hello {
        v: PROTOCOL_VERSION,
        user_id: UserId(id),
        session_id: "baseline".into(),
        heartbeat_secs: 30,
        server_time: now_ms(),
    };
    let _ = tx.try_send(encode(&hello));
    hub.sockets
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id, tx.clone());
    let writer = tokio::spawn(write_loop(sink, rx));
    while let Some(Ok(message)) = stream.next().await {
        let reply = match message {
            Message::Text(text) => match serde_json::from_str::<ClientFrame>(text.as_str()) {
                Ok(frame) => answer(&hub, id, frame),
                Err(_) => continue,
            },
            Message::Close(_) => break,
            _ => continue,
        };
        if tx.try_send(reply).is_err() {
            break;
        }
    }
    hub.sockets
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&id);
    drop(tx);
    let _ = writer.await;
}

/// Handles one request; a `send` is broadcast before it is acknowledged.
fn answer(hub: &Hub, socket: u64, frame: ClientFrame) -> Utf8Bytes {
    let data = match frame.request {
        Request::Send {
            conversation,
            client_msg_id,
            segments,
        } => {
            let seq = hub.next_seq.fetch_add(1, Ordering::Relaxed) + 1;
            let time = now_ms();
            let event = encode(&ServerFrame::Event {
                v: PROTOCOL_VERSION,
                event: Event::Conversation(ConversationEvent::Message(MessageView {
                    conversation,
                    seq: Seq(seq),
                    message_id: MessageId(seq),
                    sender: UserId(socket),
                    client_msg_id,
                    time,
                    segments,
                    recalled: false,
                })),
            });
            for queue in hub
                .sockets
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .values()
            {
                // A full queue drops the frame; the generator counts it lost.
                let _ = queue.try_send(event.clone());
            }
            serde_json::to_value(Ack {
                conversation,
                seq: Seq(seq),
                message_id: MessageId(seq),
                server_time: time,
            })
            .unwrap_or_default()
        }
        _ => serde_json::json!({ "server_time": now_ms() }),
    };
    encode(&ServerFrame::Ok {
        v: PROTOCOL_VERSION,
        id: frame.id,
        data,
    })
}

/// Writes queued frames, coalescing what is already queued into one flush
/// (as qun's gateway does).
async fn write_loop(mut sink: SplitSink<WebSocket, Message>, mut rx: mpsc::Receiver<Utf8Bytes>) {
    while let Some(first) = rx.recv().await {
        let write = async {
            sink.feed(Message::Text(first)).await?;
            while let Ok(more) = rx.try_recv() {
                sink.feed(Message::Text(more)).await?;
            }
            sink.flush().await
        };
        if write.await.is_err() {
            break;
        }
    }
    let _ = sink.close().await;
}

fn encode(frame: &ServerFrame) -> Utf8Bytes {
    Utf8Bytes::from(serde_json::to_string(frame).unwrap_or_default())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
