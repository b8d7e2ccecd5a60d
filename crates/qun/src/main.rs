//! The `qun` binary: `qun serve`, `qun admin ...` and the command-line client.
//! This is the only place where storage, bus and gateway are wired together.

mod admin;
mod backend;
mod cli;
mod config;
mod serve;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// qun: a self-hostable instant-messaging and community server.
#[derive(Parser)]
#[command(name = "qun", version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

/// Where the server's settings come from.
#[derive(clap::Args, Debug, Clone)]
pub struct ServerOpts {
    /// Data folder (created if missing).
    #[arg(long, env = "QUN_DATA")]
    data: Option<PathBuf>,
    /// Settings file (TOML); environment variables QUN_<SECTION>__<KEY> override it.
    #[arg(long, env = "QUN_CONFIG")]
    config: Option<PathBuf>,
    /// The store: sqlite (default, in the data folder) or postgres://USER@HOST:PORT/DB.
    #[arg(long, env = "QUN_STORE")]
    store: Option<String>,
    /// The bus between nodes, e.g. nats://127.0.0.1:4222 (default: this node only).
    #[arg(long, env = "QUN_BUS")]
    bus: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (API, WebSocket gateway) on the embedded database.
    Serve {
        #[command(flatten)]
        opts: ServerOpts,
        /// Address to listen on, HOST:PORT (port 0 picks a free one).
        #[arg(long, env = "QUN_LISTEN")]
        listen: Option<String>,
    },
    /// Administer accounts directly on the data folder.
    Admin {
        #[command(flatten)]
        opts: ServerOpts,
        #[command(subcommand)]
        command: admin::AdminCommand,
    },
    /// Client commands against a running server.
    #[command(flatten)]
    Client(cli::ClientCommand),
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match args.command {
        Command::Serve { opts, listen } => {
            init_logging();
            let config = config::load(&opts, listen)?;
            runtime.block_on(serve::run(config))
        }
        Command::Admin { opts, command } => {
            let config = config::load(&opts, None)?;
            runtime.block_on(admin::run(config, command))
        }
        Command::Client(cmd) => runtime.block_on(cli::run(cmd)),
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}
