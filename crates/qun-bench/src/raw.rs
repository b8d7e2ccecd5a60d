//! A minimal WebSocket client speaking qun's frames, for what `qun-client`'s
//! `Connection` deliberately does not do: bind a chosen 127.0.0.x source
//! address (tens of thousands of sockets need more than one address's ports),
//! stay as small as possible per socket, and stop reading on purpose.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use futures_util::{SinkExt, StreamExt};
use qun_client::qun_wire::{ClientFrame, Event, Request, ServerFrame, PROTOCOL_VERSION};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// A raw client socket.
pub type Ws = WebSocketStream<TcpStream>;

/// How long connecting, authenticating or one request may take.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Where the gateway listens.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `ws://HOST:PORT/api/v1/ws`.
    pub url: String,
    /// The resolved address.
    pub addr: SocketAddr,
}

impl Endpoint {
    /// The gateway of the server at `base_url` (`http://HOST:PORT`).
    pub async fn resolve(base_url: &str) -> anyhow::Result<Endpoint> {
        let url = qun_client::ws_url(base_url)?;
        let host = url
            .split_once("://")
            .map(|(_, rest)| rest)
            .and_then(|rest| rest.split('/').next())
            .ok_or_else(|| anyhow!("cannot read a host from {url}"))?
            .to_owned();
        let addr = tokio::net::lookup_host(&host)
            .await?
            .find(SocketAddr::is_ipv4)
            .ok_or_else(|| anyhow!("{host} has no IPv4 address"))?;
        Ok(Endpoint { url, addr })
    }
}

/// The `i`th of `count` loopback source addresses, from 127.0.0.2 on.
pub fn source(i: usize, count: usize) -> IpAddr {
    let n = (i % count.clamp(1, 250)) as u8;
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + n))
}

/// Opens a socket from `source` and upgrades it. `recv_buffer` shrinks the
/// kernel's receive buffer (a slow consumer's backlog then reaches the
/// server sooner).
pub async fn open(
    endpoint: &Endpoint,
    source: IpAddr,
    recv_buffer: Option<u32>,
) -> anyhow::Result<Ws> {
    let socket = TcpSocket::new_v4()?;
    socket
        .bind(SocketAddr::new(source, 0))
        .with_context(|| format!("binding {source}"))?;
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size)?;
    }
    let stream = tokio::time::timeout(TIMEOUT, socket.connect(endpoint.addr))
        .await
        .map_err(|_| anyhow!("TCP connect timed out"))??;
    stream.set_nodelay(true)?;
    // Small buffers: an idle socket should cost the generator little, too.
    let config = WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0);
    let (ws, _) = tokio::time::timeout(
        TIMEOUT,
        tokio_tungstenite::client_async_with_config(endpoint.url.as_str(), stream, Some(config)),
    )
    .await
    .map_err(|_| anyhow!("WebSocket upgrade timed out"))??;
    Ok(ws)
}

/// A request frame as a text message.
pub fn frame(id: Option<&str>, request: Request) -> anyhow::Result<Message> {
    let frame = ClientFrame {
        v: PROTOCOL_VERSION,
        id: id.map(str::to_owned),
        request,
    };
    Ok(Message::text(serde_json::to_string(&frame)?))
}

/// Sends `auth` and waits for the server's hello.
pub async fn auth(ws: &mut Ws, token: &str) -> anyhow::Result<()> {
    ws.send(frame(
        Some("auth"),
        Request::Auth {
            token: token.to_owned(),
        },
    )?)
    .await?;
    tokio::time::timeout(TIMEOUT, async {
        loop {
            match next_frame(ws).await? {
                ServerFrame::Hello { .. } => return Ok(()),
                ServerFrame::Error { error, .. } => {
                    bail!("auth refused: {} {}", error.code, error.message)
                }
                _ => {}
            }
        }
    })
    .await
    .map_err(|_| anyhow!("no hello within {TIMEOUT:?}"))?
}

/// Sends a request and waits for its answer's `data`; events that arrive
/// meanwhile are appended to `events`.
pub async fn request(
    ws: &mut Ws,
    id: &str,
    request: Request,
    events: &mut Vec<Event>,
) -> anyhow::Result<serde_json::Value> {
    ws.send(frame(Some(id), request)?).await?;
    tokio::time::timeout(TIMEOUT, async {
        loop {
            match next_frame(ws).await? {
                ServerFrame::Ok {
                    id: Some(got),
                    data,
                    ..
                } if got == id => return Ok(data),
                ServerFrame::Error {
                    id: Some(got),
                    error,
                    ..
                } if got == id => bail!("{}: {}", error.code, error.message),
                ServerFrame::Event { event, .. } => events.push(event),
                _ => {}
            }
        }
    })
    .await
    .map_err(|_| anyhow!("request {id} unanswered within {TIMEOUT:?}"))?
}

/// The next server frame; a close becomes an error naming its code.
pub async fn next_frame(ws: &mut Ws) -> anyhow::Result<ServerFrame> {
    loop {
        match ws.next().await {
            None => bail!("connection closed"),
            Some(Err(e)) => bail!("socket error: {e}"),
            Some(Ok(Message::Text(text))) => return Ok(serde_json::from_str(text.as_str())?),
            Some(Ok(Message::Close(frame))) => {
                let code = frame.map(|f| u16::from(f.code)).unwrap_or(1005);
                bail!("closed by the server with {code}")
            }
            Some(Ok(_)) => {}
        }
    }
}

/// Closes politely, waiting briefly for the server's answering close.
pub async fn close(mut ws: Ws) {
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        if ws.close(None).await.is_ok() {
            while let Some(Ok(_)) = ws.next().await {}
        }
    })
    .await;
}
