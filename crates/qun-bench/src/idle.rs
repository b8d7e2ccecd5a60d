//! `idle`: N authenticated, heartbeating connections. The sockets live in
//! worker processes (this executable re-run as `qun-bench worker`, driven by
//! JSON lines on stdin/stdout), because one process may hold only so many
//! file descriptors; each socket binds one of several 127.0.0.x source
//! addresses so that no single address runs out of ports. The server's RSS is
//! read at half and at all of N, and the slope between the two is the cost of
//! one connection; then its CPU is read over `--duration` seconds of idling.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use futures_util::{SinkExt, StreamExt};
use qun_client::qun_wire::Request;
use qun_client::Client;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use crate::raw::{self, Endpoint, Ws};
use crate::report::{bar, Report};
use crate::server::{fd_limit, Server};
use crate::{setup, Opts};

/// Sockets one worker holds by default: well under the 20,000 descriptors a
/// process may have here.
const PER_WORKER: usize = 4000;
/// Heartbeat period: a third of the server's default 30 s, as `qun-client` does.
const HEARTBEAT: Duration = Duration::from_secs(10);
/// Sockets a worker opens at once.
const CONNECT_CONCURRENCY: usize = 64;
/// Pause after connecting before memory is read, so the server settles.
const SETTLE: Duration = Duration::from_secs(3);

/// A command to a worker.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
enum ToWorker {
    /// Open and authenticate one socket per token; `first` is the global
    /// index of the first, which picks source addresses and heartbeat phases.
    Connect {
        server: String,
        tokens: Vec<String>,
        first: usize,
        total: usize,
        sources: usize,
    },
    /// Say how many sockets are open and how many the server closed.
    Report,
    /// Drop every socket and exit.
    Quit,
}

/// A worker's answer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum FromWorker {
    /// Sockets authenticated so far in the current `connect`.
    Progress { connected: u64 },
    /// The `connect` finished.
    Connected {
        ok: u64,
        failed: u64,
        error: Option<String>,
    },
    /// Counters.
    Report { open: u64, dropped: u64, pings: u64 },
}

/// `idle`.
pub async fn run(opts: &Opts) -> anyhow::Result<Report> {
    let n = opts.clients.unwrap_or(1000).max(2);
    let duration = opts.duration.unwrap_or(30.0);
    let workers = opts.workers.unwrap_or(n.div_ceil(PER_WORKER)).clamp(1, n);
    let mut server = Server::from_opts(opts)?;
    let mut report = Report::new("idle", &server.description);
    report.param("clients", n);
    report.param("duration", duration);
    report.param("workers", workers);
    report.param("sources", opts.sources);
    report.param("heartbeat_secs", HEARTBEAT.as_secs());

    let tokens: Vec<String> = {
        let base = Client::new(&server.url);
        let users = setup::users(&base, n, opts.setup_concurrency, "idle").await?;
        users.into_iter().map(|u| u.token).collect()
    };
    server.check_alive()?;

    let mut pool = Vec::with_capacity(workers);
    for _ in 0..workers {
        pool.push(Worker::spawn()?);
    }
    let half = n / 2;
    let started = Instant::now();
    let (ok1, failed1) = connect(&mut pool, &server, &tokens, 0..half, n, opts.sources).await?;
    tokio::time::sleep(SETTLE).await;
    let first = server.sample();
    let (ok2, failed2) = connect(&mut pool, &server, &tokens, half..n, n, opts.sources).await?;
    let connect_secs = started.elapsed().as_secs_f64() - SETTLE.as_secs_f64();
    tokio::time::sleep(SETTLE).await;
    let second = server.sample();
    server.check_alive()?;

    let progress = bar((duration * 10.0) as u64, "idling");
    let before = server.sample();
    let idle_start = Instant::now();
    while idle_start.elapsed().as_secs_f64() < duration {
        tokio::time::sleep(Duration::from_millis(100)).await;
        progress.set_position((idle_start.elapsed().as_secs_f64() * 10.0) as u64);
    }
    let after = server.sample();
    progress.finish_and_clear();
    let wall = idle_start.elapsed().as_secs_f64();

    let (mut open, mut dropped) = (0, 0);
    for worker in &mut pool {
        worker.send(&ToWorker::Report).await?;
        match worker.recv().await? {
            FromWorker::Report {
                open: o,
                dropped: d,
                ..
            } => {
                open += o;
                dropped += d;
            }
            other => bail!("unexpected answer from a worker: {other:?}"),
        }
    }
    for worker in &mut pool {
        worker.quit().await;
    }

    report.metric("connections", ok1 + ok2);
    report.metric("connect_failures", failed1 + failed2);
    report.figure("connect_seconds", Some(connect_secs));
    let slope = first.zip(second).and_then(|(a, b)| {
        (ok2 > 0).then(|| (b.rss_bytes as f64 - a.rss_bytes as f64) / ok2 as f64)
    });
    report.figure("rss_bytes_per_connection", slope);
    report.metric("server_rss_bytes", second.map(|s| s.rss_bytes));
    report.figure(
        "idle_cpu_percent",
        before
            .zip(after)
            .map(|(b, a)| (a.cpu_secs - b.cpu_secs) / wall * 100.0),
    );
    report.metric("open_at_end", open);
    report.metric("dropped", dropped);
    report.metric("generator_fd_limit", fd_limit());
    if failed1 + failed2 > 0 {
        report.fail(format!("{} connections failed", failed1 + failed2));
    }
    if dropped > 0 {
        report.fail(format!("{dropped} connections were closed by the server"));
    }
    if server.pid.is_none() {
        report.note("server memory and CPU unknown: pass --server-pid with --server");
    }
    Ok(report)
}

/// Spreads `range` of the tokens over the workers and waits until all are connected.
async fn connect(
    pool: &mut [Worker],
    server: &Server,
    tokens: &[String],
    range: std::ops::Range<usize>,
    total: usize,
    sources: usize,
) -> anyhow::Result<(u64, u64)> {
    let progress = bar(range.len() as u64, "connecting");
    let chunk = range.len().div_ceil(pool.len()).max(1);
    let mut busy = Vec::new();
    for (w, worker) in pool.iter_mut().enumerate() {
        let from = range.start + w * chunk;
        let to = (from + chunk).min(range.end);
        if from >= to {
            continue;
        }
        worker
            .send(&ToWorker::Connect {
                server: server.url.clone(),
                tokens: tokens[from..to].to_vec(),
                first: from,
                total,
                sources,
            })
            .await?;
        busy.push(w);
    }
    let mut progress_of = vec![0u64; pool.len()];
    let (mut ok, mut failed) = (0, 0);
    let mut first_error = None;
    for w in busy {
        loop {
            match pool[w].recv().await? {
                FromWorker::Progress { connected } => {
                    progress_of[w] = connected;
                    progress.set_position(progress_of.iter().sum());
                }
                FromWorker::Connected {
                    ok: o,
                    failed: f,
                    error,
                } => {
                    ok += o;
                    failed += f;
                    first_error = first_error.or(error);
                    break;
                }
                other => bail!("unexpected answer from a worker: {other:?}"),
            }
        }
    }
    progress.finish_and_clear();
    if let Some(error) = first_error {
        eprintln!("qun-bench: {failed} connections failed; first error: {error}");
    }
    Ok((ok, failed))
}

/// A worker process as the coordinator drives it.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Worker {
    fn spawn() -> anyhow::Result<Worker> {
        let exe = std::env::current_exe().context("finding qun-bench's own executable")?;
        let mut child = tokio::process::Command::new(exe)
            .arg("worker")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting a worker process")?;
        let stdin = child.stdin.take().ok_or_else(|| anyhow!("worker stdin"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("worker stdout"))?;
        Ok(Worker {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
        })
    }

    async fn send(&mut self, command: &ToWorker) -> anyhow::Result<()> {
        let mut line = serde_json::to_string(command)?;
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).await?;
        self.stdin.flush().await?;
        Ok(())
    }

    async fn recv(&mut self) -> anyhow::Result<FromWorker> {
        let line = self
            .lines
            .next_line()
            .await?
            .ok_or_else(|| anyhow!("a worker exited"))?;
        Ok(serde_json::from_str(&line)?)
    }

    async fn quit(&mut self) {
        let _ = self.send(&ToWorker::Quit).await;
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// Counters of a worker's sockets.
#[derive(Default)]
struct Counters {
    open: AtomicU64,
    dropped: AtomicU64,
    pings: AtomicU64,
}

/// `qun-bench worker`: holds sockets as told on stdin, answers on stdout.
pub async fn worker() -> anyhow::Result<()> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut stdout = tokio::io::stdout();
    let counters = Arc::new(Counters::default());
    let (quit, quit_rx) = watch::channel(false);
    while let Some(line) = lines.next_line().await? {
        let answer = match serde_json::from_str(&line)? {
            ToWorker::Connect {
                server,
                tokens,
                first,
                total,
                sources,
            } => {
                let endpoint = Endpoint::resolve(&server).await?;
                let connected = Arc::new(AtomicU64::new(0));
                let (progress_tx, mut progress_rx) = tokio::sync::mpsc::unbounded_channel();
                let opening = futures_util::stream::iter(tokens.into_iter().enumerate())
                    .map(|(i, token)| {
                        let endpoint = endpoint.clone();
                        let (counters, quit_rx) = (Arc::clone(&counters), quit_rx.clone());
                        let (connected, progress_tx) =
                            (Arc::clone(&connected), progress_tx.clone());
                        async move {
                            let global = first + i;
                            let mut ws =
                                raw::open(&endpoint, raw::source(global, sources), None).await?;
                            raw::auth(&mut ws, &token).await?;
                            // Heartbeats spread evenly over the period.
                            let phase = HEARTBEAT.mul_f64(global as f64 / total.max(1) as f64);
                            counters.open.fetch_add(1, Ordering::Relaxed);
                            tokio::spawn(hold(ws, phase, counters, quit_rx));
                            let done = connected.fetch_add(1, Ordering::Relaxed) + 1;
                            if done % 250 == 0 {
                                let _ = progress_tx.send(done);
                            }
                            anyhow::Ok(())
                        }
                    })
                    .buffer_unordered(CONNECT_CONCURRENCY)
                    .fold(
                        (0u64, 0u64, None::<String>),
                        |(ok, failed, error), r| async move {
                            match r {
                                Ok(()) => (ok + 1, failed, error),
                                Err(e) => (ok, failed + 1, error.or(Some(format!("{e:#}")))),
                            }
                        },
                    );
                tokio::pin!(opening);
                let (ok, failed, error) = loop {
                    tokio::select! {
                        done = &mut opening => break done,
                        Some(connected) = progress_rx.recv() => {
                            write_line(&mut stdout, &FromWorker::Progress { connected }).await?;
                        }
                    }
                };
                FromWorker::Connected { ok, failed, error }
            }
            ToWorker::Report => FromWorker::Report {
                open: counters.open.load(Ordering::Relaxed),
                dropped: counters.dropped.load(Ordering::Relaxed),
                pings: counters.pings.load(Ordering::Relaxed),
            },
            ToWorker::Quit => break,
        };
        write_line(&mut stdout, &answer).await?;
    }
    let _ = quit.send(true);
    Ok(())
}

async fn write_line(out: &mut tokio::io::Stdout, message: &FromWorker) -> anyhow::Result<()> {
    let mut line = serde_json::to_string(message)?;
    line.push('\n');
    out.write_all(line.as_bytes()).await?;
    out.flush().await?;
    Ok(())
}

/// Keeps one socket alive: heartbeats every [`HEARTBEAT`], reads and drops
/// whatever the server sends, and counts a close by the server as a drop.
async fn hold(
    mut ws: Ws,
    phase: Duration,
    counters: Arc<Counters>,
    mut quit: watch::Receiver<bool>,
) {
    let Ok(ping) = raw::frame(None, Request::Ping) else {
        return;
    };
    let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + phase, HEARTBEAT);
    loop {
        tokio::select! {
            _ = quit.changed() => break,
            _ = beat.tick() => {
                if ws.send(ping.clone()).await.is_err() {
                    counters.dropped.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                counters.pings.fetch_add(1, Ordering::Relaxed);
            }
            message = ws.next() => match message {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    counters.dropped.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Some(Ok(_)) => {}
            }
        }
    }
    counters.open.fetch_sub(1, Ordering::Relaxed);
}
