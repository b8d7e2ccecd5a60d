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
}

impl Default for StorageSection {
    fn default() -> Self {
        let d = qun_store_sqlite::SqliteOptions::default();
        StorageSection {
            readers: d.readers,
            max_batch: d.max_batch,
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
    if let Some(bus) = &opts.bus {
        config.server.bus = Some(bus.clone());
    }
    if let Some(listen) = listen {
        config.server.listen = listen;
    }
    Ok(config)
}
