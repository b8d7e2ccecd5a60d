//! `qun serve`: opens the store, wires domain, bus and gateway, serves until
//! SIGINT or SIGTERM, then shuts down gracefully.

use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use anyhow::Context;
use qun_bus_nats::NatsBus;
use qun_domain::bus::{Bus, Notification, NotificationSink};
use qun_domain::{LocalBus, NodeId, Qun, SystemClock};
use qun_gateway::{AppState, Hub};
use qun_store_sqlite::{SqliteOptions, SqliteStore};

use crate::config::Config;

/// Runs the server.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let store = Arc::new(open_store(&config)?);
    let hub = Arc::new(Hub::new());
    let sink = Arc::new(NodeSink { qun: OnceLock::new(), hub: hub.clone() });
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
        Qun::new(store.clone(), bus, config.limits.clone(), Arc::new(SystemClock)).with_node(node),
    );
    let _ = sink.qun.set(Arc::downgrade(&qun));
    let ticker = tokio::spawn(node_ticks(Arc::downgrade(&qun), config.limits.node_heartbeat_secs));
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

    let listener = tokio::net::TcpListener::bind(&config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
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
    match tokio::time::timeout(grace, async {
        // The store is shared with in-flight handlers; wait for them to let go.
        let mut store = store;
        loop {
            match Arc::try_unwrap(store) {
                Ok(s) => return s.close().await,
                Err(shared) => store = shared,
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    {
        Ok(()) => tracing::info!("storage closed"),
        Err(_) => tracing::warn!("storage still in use after the grace period; every acknowledged write is already durable"),
    }
    served.context("server failed")
}

fn open_store(config: &Config) -> anyhow::Result<SqliteStore> {
    let path = config.server.data.join("qun.sqlite3");
    let opts = SqliteOptions {
        readers: config.storage.readers,
        max_batch: config.storage.max_batch,
    };
    SqliteStore::open(&path, opts)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))
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

/// Opens the store for administration (shared with `admin`).
pub fn open_store_for_admin(config: &Config) -> anyhow::Result<SqliteStore> {
    open_store(config)
}

/// Where this node's notifications go: node announcements to the domain,
/// everything to the sockets of this node.
struct NodeSink {
    qun: OnceLock<Weak<Qun>>,
    hub: Arc<Hub>,
}

impl NotificationSink for NodeSink {
    fn deliver(&self, notification: &Notification) {
        if let Some(qun) = self.qun.get().and_then(Weak::upgrade) {
            qun.observe(notification);
        }
        self.hub.deliver(notification);
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
