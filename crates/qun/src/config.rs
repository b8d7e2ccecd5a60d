//! Settings: defaults, then `qun.toml` (or `--config`), then environment
//! variables `QUN_<SECTION>__<KEY>`, then command-line flags.

use std::path::PathBuf;

use anyhow::Context;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::ServerOpts;

/// Everything the server reads at start.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// `[server]`
    pub server: ServerSection,
    /// `[limits]`: the domain's limits and defaults.
    pub limits: qun_domain::Config,
    /// `[gateway]`: sockets and HTTP.
    pub gateway: qun_gateway::GatewayConfig,
    /// `[storage]`
    pub storage: StorageSection,
}

/// `[server]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerSection {
    /// HOST:PORT to listen on.
    pub listen: String,
    /// Data folder.
    pub data: PathBuf,
    /// Seconds allowed for a graceful shutdown before the process exits anyway.
    pub shutdown_grace_secs: u64,
    /// The store: absent or `sqlite` for the embedded file in the data folder,
    /// or a PostgreSQL URL. Also `--store` / `QUN_STORE`.
    pub store: Option<String>,
    /// The bus between nodes: absent for a single node (in-process), or a
    /// NATS URL such as `nats://127.0.0.1:4222`. Also `--bus` / `QUN_BUS`.
    pub bus: Option<String>,
    /// The NATS subject notifications travel on.
    pub bus_subject: String,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: "127.0.0.1:8080".into(),
            data: PathBuf::from("qun-data"),
            shutdown_grace_secs: 10,
            store: None,
            bus: None,
            bus_subject: "qun.notify".into(),
        }
    }
}

/// `[storage]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageSection {
    /// Read connections to the embedded database.
    pub readers: usize,
    /// Most writes committed together (group commit).
    pub max_batch: usize,
    /// `[storage.postgres]`
    pub postgres: PostgresSection,
}

/// `[storage.postgres]`: the PostgreSQL store's pool and batching.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct PostgresSection {
    /// Pooled connections for reads and non-append writes.
    pub pool_size: usize,
    /// Append writer tasks (each with its own connection).
    pub writers: usize,
    /// Most appends per transaction.
    pub max_batch: usize,
    /// Statement timeout, ms.
    pub statement_timeout_ms: u64,
    /// Connect timeout, ms.
    pub connect_timeout_ms: u64,
}

impl Default for PostgresSection {
    fn default() -> Self {
        let d = qun_store_postgres::PostgresOptions::default();
        PostgresSection {
            pool_size: d.pool_size,
            writers: d.writers,
            max_batch: d.max_batch,
            statement_timeout_ms: d.statement_timeout.as_millis() as u64,
            connect_timeout_ms: d.connect_timeout.as_millis() as u64,
        }
    }
}

impl Default for StorageSection {
    fn default() -> Self {
        let d = qun_store_sqlite::SqliteOptions::default();
        StorageSection {
            readers: d.readers,
            max_batch: d.max_batch,
            postgres: PostgresSection::default(),
        }
    }
}

/// Loads the settings. A missing `qun.toml` is fine; a missing `--config` file is not.
pub fn load(opts: &ServerOpts, listen: Option<String>) -> anyhow::Result<Config> {
    let mut figment = Figment::from(Serialized::defaults(Config::default()));
    match &opts.config {
        Some(path) => {
            anyhow::ensure!(path.exists(), "config file {} not found", path.display());
            figment = figment.merge(Toml::file(path));
        }
        None => figment = figment.merge(Toml::file("qun.toml")),
    }
    figment = figment.merge(
        Env::prefixed("QUN_")
            .filter(|k| k.as_str().contains("__"))
            .split("__"),
    );
    let mut config: Config = figment.extract().context("reading settings")?;
    if let Some(data) = &opts.data {
        config.server.data = data.clone();
    }
    if let Some(store) = &opts.store {
        config.server.store = Some(store.clone());
    }
    if let Some(bus) = &opts.bus {
        config.server.bus = Some(bus.clone());
    }
    if let Some(listen) = listen {
        config.server.listen = listen;
    }
    Ok(config)
}
