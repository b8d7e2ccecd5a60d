//! `qun-bench`: qun's load generator. It drives real WebSocket clients (the
//! `qun-client` library, or a raw socket where a scenario needs one that
//! misbehaves or binds a chosen source address) against a running or spawned
//! `qun serve`, and reports latency, throughput, integrity and the server's
//! own CPU and memory as read from `/proc`.
//!
//! Scenarios: `idle`, `fanout`, `direct`, `slow-consumer`, `reconnect` and
//! `baseline`; see `BENCHMARKS.md` at the repository root. Two hidden
//! subcommands are the same binary re-executed: `worker` holds idle sockets in
//! a separate process (one process may hold only so many file descriptors) and
//! `baseline-server` is the minimal broadcast server the `baseline` scenario
//! compares qun against.

mod baseline;
mod direct;
mod fanout;
mod idle;
mod load;
mod raw;
mod reconnect;
mod report;
mod server;
mod setup;
mod slow;
mod track;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// qun's load generator.
#[derive(Parser)]
#[command(name = "qun-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// N authenticated, heartbeating connections: server RSS per connection and idle CPU.
    Idle(Opts),
    /// One group, all members online, senders at a fixed rate: deliveries and latency.
    Fanout(Opts),
    /// Pairs of friends sending 1:1 messages, each acknowledged once durable.
    Direct(Opts),
    /// A 1,000-member group in which one member stops reading.
    SlowConsumer(Opts),
    /// Clients miss messages, then all reconnect at once and catch up.
    Reconnect(Opts),
    /// The fan-out workload against qun and against a minimal broadcast server.
    Baseline(Opts),
    /// Holds idle sockets for the `idle` scenario (driven over stdin/stdout).
    #[command(hide = true)]
    Worker,
    /// The minimal broadcast server of the `baseline` scenario.
    #[command(hide = true)]
    BaselineServer {
        /// HOST:PORT to listen on.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
    },
}

/// Options shared by every scenario; each scenario reads the ones it needs
/// and fills the others' absence with its own defaults.
#[derive(Args, Debug, Clone)]
pub struct Opts {
    /// Base URL of a running server, e.g. http://127.0.0.1:8080.
    #[arg(long, conflicts_with = "spawn", required_unless_present = "spawn")]
    pub server: Option<String>,
    /// Process id of the `--server`, so its CPU and memory can be read from /proc.
    #[arg(long, requires = "server")]
    pub server_pid: Option<u32>,
    /// Start a `qun serve` on a fresh temporary data folder for this run.
    #[arg(long)]
    pub spawn: bool,
    /// The `qun` binary to spawn (default: next to this executable).
    #[arg(long)]
    pub qun_bin: Option<PathBuf>,
    /// Seconds of load (per phase for slow-consumer; of measurement for idle).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Messages per second, all senders together (open loop).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Group size (fanout, slow-consumer, baseline).
    #[arg(long)]
    pub members: Option<usize>,
    /// Connections (idle), clients (reconnect) or pairs of friends (direct).
    #[arg(long)]
    pub clients: Option<usize>,
    /// Members that send (fanout, slow-consumer, baseline).
    #[arg(long)]
    pub senders: Option<usize>,
    /// Messages each reconnecting client misses.
    #[arg(long, default_value_t = 100)]
    pub missed: usize,
    /// Payload size in bytes of each message's text.
    #[arg(long, default_value_t = 200)]
    pub payload: usize,
    /// Seconds to wait, after the last send, for deliveries still in flight.
    #[arg(long, default_value_t = 15.0)]
    pub drain: f64,
    /// Worker processes holding idle connections (default: one per 4,000).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Source addresses 127.0.0.2 ... to spread client sockets over.
    #[arg(long, default_value_t = 8)]
    pub sources: usize,
    /// Concurrent requests while creating users, groups and friendships.
    #[arg(long, default_value_t = 16)]
    pub setup_concurrency: usize,
    /// Write the JSON report here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// The same allocator as the server's: the generator shares the machine's
/// cores with it, so its own cost is kept down too.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    server::raise_fd_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("qun-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Worker => idle::worker().await.map(|()| true),
            Command::BaselineServer { listen } => baseline::serve(&listen).await.map(|()| true),
            Command::Idle(opts) => report::finish(idle::run(&opts).await, &opts),
            Command::Fanout(opts) => report::finish(fanout::run(&opts).await, &opts),
            Command::Direct(opts) => report::finish(direct::run(&opts).await, &opts),
            Command::SlowConsumer(opts) => report::finish(slow::run(&opts).await, &opts),
            Command::Reconnect(opts) => report::finish(reconnect::run(&opts).await, &opts),
            Command::Baseline(opts) => report::finish(fanout::run_baseline(&opts).await, &opts),
        }
    });
    // Sockets and child processes are torn down with the runtime; do not
    // wait for stragglers that a failed run may have left behind.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("qun-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
