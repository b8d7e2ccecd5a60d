//! `qun serve`: opens the store, wires domain, bus and gateway, serves until
//! SIGINT or SIGTERM, then shuts down gracefully.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use qun_domain::{LocalBus, Qun, SystemClock};
use qun_gateway::{AppState, Hub};
use qun_store_sqlite::{SqliteOptions, SqliteStore};

use crate::config::Config;

/// Runs the server.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let store = Arc::new(open_store(&config)?);
    let hub = Arc::new(Hub::new());
    let bus = Arc::new(LocalBus::new(hub.clone()));
    let qun = Arc::new(Qun::new(
        store.clone(),
        bus,
        config.limits.clone(),
        Arc::new(SystemClock),
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

    let listener = tokio::net::TcpListener::bind(&config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    let addr = listener.local_addr()?;
    // Tests and scripts read this line to find the port.
    println!("qun listening on http://{addr}");
    tracing::info!(%addr, data = %config.server.data.display(), "serving");

    let grace = Duration::from_secs(config.server.shutdown_grace_secs);
    let served = qun_gateway::serve(listener, state, shutdown_signal()).await;
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
