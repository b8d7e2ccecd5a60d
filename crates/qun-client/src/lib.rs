//! The Rust client library of qun: typed REST calls and a multiplexed WebSocket connection.
//!
//! [`Client`] speaks the REST API (`/api/v1/...`) with bearer authentication;
//! [`Connection`] speaks the WebSocket gateway: it authenticates with an `auth`
//! frame, routes answers to the requests that asked for them, delivers pushed
//! events on a stream and keeps the socket alive with heartbeats.
//!
//! The crate depends only on `qun-wire` and transport crates, never on server
//! internals, so the CLI, the end-to-end tests and the load generator exercise
//! exactly what any third-party client would see.
//!
//! ```no_run
//! # async fn demo() -> Result<(), qun_client::ClientError> {
//! use qun_client::qun_wire::{DeviceKind, Segment, UserId};
//! use qun_client::{Client, Connection};
//!
//! let anonymous = Client::new("http://127.0.0.1:8080");
//! let login = anonymous.login(UserId(10001), "secret", DeviceKind::Pc, "laptop").await?;
//! let client = anonymous.with_token(login.token.clone());
//! let conversation = client.direct_conversation(UserId(10002)).await?.conversation;
//!
//! let (connection, _hello) = Connection::connect(client.base_url(), &login.token).await?;
//! let text = vec![Segment::Text { text: "hi".into() }];
//! connection.send(conversation, "laptop-1", text).await?;
//! while let Some(event) = connection.next_event().await {
//!     println!("{event:?}");
//! }
//! # Ok(())
//! # }
//! ```

// `ClientError::Api` carries the server's `ErrorBody` inline so callers can
// match on it directly; errors come from the network, where a few hundred
// bytes of `Result` are nothing next to the round trip.
#![allow(clippy::result_large_err)]
#![warn(missing_docs)]

mod error;
mod http;
mod ws;

pub use error::{ClientError, UNPARSEABLE};
pub use http::{Client, RawBody};
pub use ws::{ws_url, ConnectOptions, Connection, Hello};

/// The wire types, re-exported so users of this crate need no second dependency.
pub use qun_wire;

#[cfg(test)]
mod tests {
    /// Clients see the server only through the wire crate; a dependency on
    /// the domain, gateway or a store would let server internals leak into
    /// what third-party clients are expected to do.
    #[test]
    fn depends_on_no_server_crate() {
        let manifest = include_str!("../Cargo.toml");
        let deps = manifest.split("[dependencies]").nth(1).unwrap_or_default();
        for line in deps.lines() {
            let name = line.split(['=', '.', ' ']).next().unwrap_or_default();
            assert!(
                !name.starts_with("qun") || name == "qun-wire",
                "qun-client must not depend on {name}"
            );
        }
    }
}
