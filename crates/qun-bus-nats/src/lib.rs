//! The NATS adapter of qun's [`Bus`]: notifications travel between nodes as
//! JSON on one subject. NATS carries notifications only; the database stays
//! the log, so anything lost while NATS is away is found again by catch-up.
//!
//! A notification reaches the publishing node's own sockets at once, without
//! the round trip; other nodes receive it through NATS and every node ignores
//! its own echo (the `qun-node` header).

use std::sync::Arc;

use async_nats::HeaderMap;
use async_trait::async_trait;
use futures_util::StreamExt;
use qun_domain::bus::{Bus, Notification, NotificationSink};
use qun_domain::{Error, NodeId};

const NODE_HEADER: &str = "qun-node";

/// Publishes to, and receives from, the other nodes through NATS.
pub struct NatsBus {
    client: async_nats::Client,
    subject: String,
    node: NodeId,
    sink: Arc<dyn NotificationSink>,
}

impl NatsBus {
    /// Connects to `url` (reconnecting by itself whenever the connection
    /// drops), subscribes to `subject`, and hands every notification from
    /// another node to `sink`. The returned task runs until the client closes.
    pub async fn connect(
        url: &str,
        subject: &str,
        node: NodeId,
        sink: Arc<dyn NotificationSink>,
    ) -> Result<(NatsBus, tokio::task::JoinHandle<()>), Error> {
        let client = async_nats::ConnectOptions::new()
            .name(format!("qun-{node}"))
            .retry_on_initial_connect()
            .event_callback(|event| async move {
                tracing::info!(%event, "nats connection event");
            })
            .connect(url)
            .await
            .map_err(|e| Error::Unavailable(format!("cannot connect to NATS at {url}: {e}")))?;
        let mut subscription = client
            .subscribe(subject.to_owned())
            .await
            .map_err(|e| Error::Unavailable(format!("cannot subscribe to {subject}: {e}")))?;
        let receiver_sink = sink.clone();
        let me = node.0.clone();
        let task = tokio::spawn(async move {
            while let Some(message) = subscription.next().await {
                let from = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(NODE_HEADER))
                    .map(|v| v.as_str().to_owned());
                if from.as_deref() == Some(me.as_str()) {
                    continue;
                }
                match serde_json::from_slice::<Notification>(&message.payload) {
                    Ok(n) => receiver_sink.deliver(&n),
                    Err(e) => {
                        metrics::counter!("qun_bus_malformed_total").increment(1);
                        tracing::warn!(error = %e, "unreadable notification on the bus");
                    }
                }
            }
            tracing::info!("bus subscription ended");
        });
        Ok((
            NatsBus {
                client,
                subject: subject.to_owned(),
                node,
                sink,
            },
            task,
        ))
    }
}

#[async_trait]
impl Bus for NatsBus {
    async fn publish(&self, notification: Notification) {
        self.sink.deliver(&notification);
        let payload = match serde_json::to_vec(&notification) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "notification not serialisable");
                return;
            }
        };
        let mut headers = HeaderMap::new();
        headers.insert(NODE_HEADER, self.node.0.as_str());
        if let Err(e) = self
            .client
            .publish_with_headers(self.subject.clone(), headers, payload.into())
            .await
        {
            // Catch-up repairs what other nodes miss; revocations are also
            // re-checked by every socket periodically.
            metrics::counter!("qun_bus_publish_failures_total").increment(1);
            tracing::warn!(error = %e, "notification not published to other nodes");
        }
    }
}
