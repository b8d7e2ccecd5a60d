//! Which store this node uses: the embedded SQLite file in the data folder by
//! default, or PostgreSQL when `--store postgres://...` is given.

use std::sync::Arc;
use std::time::Duration;

use qun_domain::Store;
use qun_store_postgres::{PostgresOptions, PostgresStore};
use qun_store_sqlite::{SqliteOptions, SqliteStore};

use crate::config::Config;

/// An opened store, kept concrete so it can be closed gracefully.
pub enum Backend {
    /// Embedded.
    Sqlite(Arc<SqliteStore>),
    /// Shared by several nodes.
    Postgres(Arc<PostgresStore>),
}

impl Backend {
    /// Opens the configured store (running migrations).
    pub async fn open(config: &Config) -> anyhow::Result<Backend> {
        match config.server.store.as_deref() {
            None | Some("sqlite") => {
                let path = config.server.data.join("qun.sqlite3");
                let opts = SqliteOptions {
                    readers: config.storage.readers,
                    max_batch: config.storage.max_batch,
                };
                let store = SqliteStore::open(&path, opts)
                    .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
                Ok(Backend::Sqlite(Arc::new(store)))
            }
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                let p = &config.storage.postgres;
                let opts = PostgresOptions {
                    pool_size: p.pool_size,
                    writers: p.writers,
                    max_batch: p.max_batch,
                    statement_timeout: Duration::from_millis(p.statement_timeout_ms),
                    connect_timeout: Duration::from_millis(p.connect_timeout_ms),
                };
                let store = PostgresStore::connect(url, opts)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot use PostgreSQL: {e}"))?;
                tracing::info!("store: PostgreSQL");
                Ok(Backend::Postgres(Arc::new(store)))
            }
            Some(other) => anyhow::bail!("unknown store {other:?}: use sqlite or postgres://..."),
        }
    }

    /// The store as the domain sees it.
    pub fn store(&self) -> Arc<dyn Store> {
        match self {
            Backend::Sqlite(s) => s.clone(),
            Backend::Postgres(s) => s.clone(),
        }
    }

    /// Finishes queued writes and closes, once nothing else holds the store
    /// (waits up to `grace`; every acknowledged write is durable anyway).
    pub async fn close(self, grace: Duration) {
        let closed = tokio::time::timeout(grace, async {
            match self {
                Backend::Sqlite(s) => unwrap_when_free(s).await.close().await,
                Backend::Postgres(s) => unwrap_when_free(s).await.close().await,
            }
        })
        .await;
        match closed {
            Ok(()) => tracing::info!("storage closed"),
            Err(_) => tracing::warn!("storage still in use after the grace period; every acknowledged write is already durable"),
        }
    }
}

async fn unwrap_when_free<T>(mut shared: Arc<T>) -> T {
    loop {
        match Arc::try_unwrap(shared) {
            Ok(s) => return s,
            Err(again) => shared = again,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
