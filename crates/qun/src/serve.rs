//! `qun serve`: opens the store, wires domain, bus and gateway, serves until
//! SIGINT or SIGTERM, then shuts down gracefully.

use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use crate::backend::Backend;
use anyhow::Context;
use qun_bus_nats::NatsBus;
use qun_domain::bus::{Bus, Notification, NotificationSink};
use qun_domain::order::DeliveryOrder;
use qun_domain::{LocalBus, NodeId, Qun, SystemClock};
use qun_gateway::{AppState, Hub};

use crate::config::Config;

/// Runs the server.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let backend = Backend::open(&config).await?;
    let store = backend.store();
    let hub = Arc::new(Hub::new());
    let sink = Arc::new(NodeSink {
        qun: OnceLock::new(),
        hub: hub.clone(),
        order: Arc::new(DeliveryOrder::new(config.limits.delivery_gap_ms)),
        started: std::time::Instant::now(),
    });
    let node = NodeId::random();
    let bus: Arc<dyn Bus> = match &config.server.bus {
        None => Arc::new(LocalBus::new(sink.clone())),
        Some(url) => {
            let subject = &config.server.bus_subject;
            let (bus, _receiver) = NatsBus::connect(url, subject, node.clone(), sink.clone())
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            tracing::info!(%url, %subject, %node, "bus: NATS");
            Arc::new(bus)
        }
    };
    let qun = Arc::new(
        Qun::new(store, bus, config.limits.clone(), Arc::new(SystemClock)).with_node(node),
    );
    let _ = sink.qun.set(Arc::downgrade(&qun));
    let ticker = tokio::spawn(node_ticks(
        Arc::downgrade(&qun),
        config.limits.node_heartbeat_secs,
    ));
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| tracing::warn!(error = %e, "metrics disabled"))
        .ok();
    let state = AppState {
        qun,
        hub,
        config: Arc::new(config.gateway.clone()),
        metrics,
    };

    let listener = listen(&config).await?;
    let addr = listener.local_addr()?;
    // Tests and scripts read this line to find the port.
    println!("qun listening on http://{addr}");
    tracing::info!(%addr, data = %config.server.data.display(), "serving");

    let grace = Duration::from_secs(config.server.shutdown_grace_secs);
    let served = qun_gateway::serve(listener, state, shutdown_signal()).await;
    ticker.abort();
    tracing::info!("shutting down: closing sockets and flushing storage");
    // Upgraded sockets finish on their own tasks; give them a moment to send
    // their close frames before the store is closed under them.
    tokio::time::sleep(Duration::from_millis(200)).await;
    backend.close(grace).await;
    served.context("server failed")
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Where this node's notifications go: node announcements to the domain,
/// everything to the sockets of this node, each conversation's events in seq
/// order whichever node they come from.
struct NodeSink {
    qun: OnceLock<Weak<Qun>>,
    hub: Arc<Hub>,
    order: Arc<DeliveryOrder>,
    started: std::time::Instant,
}

impl NodeSink {
    fn now_ms(started: std::time::Instant) -> u64 {
        started.elapsed().as_millis() as u64
    }
}

impl NotificationSink for NodeSink {
    fn deliver(&self, notification: &Notification) {
        if let Some(qun) = self.qun.get().and_then(Weak::upgrade) {
            qun.observe(notification);
        }
        let hub = &self.hub;
        let now = Self::now_ms(self.started);
        let waiting = self
            .order
            .arrive(notification.clone(), now, |n| hub.deliver(n));
        if let Some((conversation, mut at)) = waiting {
            // Wakes when the oldest gap's bound passes; gives up only gaps
            // that are really that old.
            let (order, hub, started) = (self.order.clone(), self.hub.clone(), self.started);
            tokio::spawn(async move {
                loop {
                    let wait = at.saturating_sub(Self::now_ms(started));
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                    let now = Self::now_ms(started);
                    match order.give_up(conversation, now, |n| hub.deliver(n)) {
                        Some(next) => at = next,
                        None => return,
                    }
                }
            });
        }
    }
}

/// Announces this node and expires silent ones, until the server stops.
async fn node_ticks(qun: Weak<Qun>, every_secs: u64) {
    let mut interval = tokio::time::interval(Duration::from_secs(every_secs.max(1)));
    loop {
        interval.tick().await;
        let Some(qun) = qun.upgrade() else { return };
        qun.node_tick().await;
    }
}

/// The listening socket. Accepted sockets inherit its send buffer size.
async fn listen(config: &Config) -> anyhow::Result<tokio::net::TcpListener> {
    let spec = &config.server.listen;
    let addr = tokio::net::lookup_host(spec)
        .await
        .with_context(|| format!("cannot resolve {spec}"))?
        .next()
        .with_context(|| format!("{spec} names no address"))?;
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    let g = &config.gateway;
    if g.socket_send_buffer_bytes > 0 {
        socket.set_send_buffer_size(g.socket_send_buffer_bytes)?;
    }
    socket
        .bind(addr)
        .with_context(|| format!("cannot listen on {spec}"))?;
    Ok(socket.listen(g.listen_backlog.max(1))?)
}
