//! `slow-consumer`: a group in which one member's socket (a raw socket with a
//! small kernel receive buffer) authenticates and then, in the second phase,
//! stops reading. The first phase, with the same member reading, is the
//! control. Measured: how much more memory the server holds until it cuts
//! the socket off (`qun_slow_consumer_disconnects_total` on `/metrics`, close
//! 4008) — its peak RSS during the stall over its peak during the control,
//! sampled alike every 20 ms — and the other members' p99 against the
//! control's.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use qun_client::qun_wire::Request;
use qun_client::Client;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use crate::fanout::{close, Params, CONNECT_CONCURRENCY};
use crate::load;
use crate::raw::{self, Endpoint, Ws};
use crate::report::Report;
use crate::server::{metric, ProcSample, Server};
use crate::{setup, track, Opts};

/// The slow member's kernel receive buffer: a phone on a poor link.
const SLOW_RECV_BUFFER: u32 = 4096;
/// The server's counter of sockets cut off as slow consumers.
const CUT_OFF_METRIC: &str = "qun_slow_consumer_disconnects_total";

/// What the slow member's socket does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Reads and drops everything, with heartbeats.
    Read,
    /// Neither reads nor writes.
    Stall,
    /// Reads until the server's close, then reports its code.
    Drain,
}

/// `slow-consumer`.
pub async fn run(opts: &Opts) -> anyhow::Result<Report> {
    let params = Params::from_opts(opts, 1000);
    anyhow::ensure!(
        params.members >= 2,
        "a slow consumer needs company: --members 2 or more"
    );
    let mut server = Server::from_opts(opts)?;
    let mut report = Report::new("slow-consumer", &server.description);
    params.record(&mut report, opts);
    report.param("slow_recv_buffer", SLOW_RECV_BUFFER);

    let base = Client::new(&server.url);
    let users = setup::users(&base, params.members, opts.setup_concurrency, "slow").await?;
    let (_, conversation) = setup::group(&users, opts.setup_concurrency).await?;
    let tokens: Vec<String> = users.iter().map(|u| u.token.clone()).collect();
    let (slow_token, others) = tokens
        .split_last()
        .ok_or_else(|| anyhow::anyhow!("no users"))?;
    let conns = setup::connect_all(&server.url, others, CONNECT_CONCURRENCY).await?;
    let endpoint = Endpoint::resolve(&server.url).await?;
    let mut ws = raw::open(&endpoint, raw::source(0, 1), Some(SLOW_RECV_BUFFER)).await?;
    let ports = (endpoint.addr.port(), ws.get_ref().local_addr()?.port());
    raw::auth(&mut ws, slow_token).await?;
    let (mode, mode_rx) = watch::channel(Mode::Read);
    let slow = tokio::spawn(slow_member(ws, mode_rx));
    server.check_alive()?;

    // The others: every member but the slow one is tracked.
    let others_params = Params {
        members: params.members - 1,
        senders: params.senders.min(params.members - 1),
        ..params.clone()
    };
    let origin = Instant::now();
    let rss_control_start = server.sample();
    // The same sampling during the control phase: its peak is what the
    // workload itself costs, so that the stall's extra can be told apart.
    let (stop_control, stop_control_rx) = watch::channel(false);
    let control_watcher = tokio::spawn(watch_memory(
        server.pid,
        base.clone(),
        f64::INFINITY,
        ports,
        stop_control_rx,
    ));
    let control = load::run(
        &server,
        &conns,
        &others_params.plan(opts, 1, conversation),
        origin,
    )
    .await?;
    let _ = stop_control.send(true);
    let control_peak = control_watcher.await?.max_rss;
    let rss_control_end = server.sample();
    server.check_alive()?;

    let cut_offs_before = metric(&base, CUT_OFF_METRIC).await;
    let rss_before = server.sample();
    let _ = mode.send(Mode::Stall);
    let stalled_at = Instant::now();
    let (stop, stop_rx) = watch::channel(false);
    let watcher = tokio::spawn(watch_memory(
        server.pid,
        base.clone(),
        cut_offs_before.unwrap_or(0.0),
        ports,
        stop_rx,
    ));
    let with_slow = load::run(
        &server,
        &conns,
        &others_params.plan(opts, 2, conversation),
        origin,
    )
    .await?;
    let _ = stop.send(true);
    let watched = watcher.await?;
    server.check_alive()?;
    // Once cut off, the member reads what was left in its buffers and then
    // the close, if the server managed to queue one behind them.
    let close_code = if watched.cut_off_at.is_some() {
        let _ = mode.send(Mode::Drain);
        tokio::time::timeout(Duration::from_secs(10), slow)
            .await
            .ok()
            .and_then(Result::ok)
            .flatten()
    } else {
        slow.abort();
        None
    };
    close(&conns);

    let (_, p99_without, _) = track::quantiles_ms(&control.latency);
    let (_, p99_with, _) = track::quantiles_ms(&with_slow.latency);
    report.figure("p99_ms_without", Some(p99_without));
    report.figure("p99_ms_with", Some(p99_with));
    report.figure(
        "others_p99_ratio",
        (p99_without > 0.0).then(|| p99_with / p99_without),
    );
    // Peak RSS while the member was stalled, over the peak of the same
    // workload without the stall; and, raw, over the RSS just before it.
    let extra = control_peak
        .zip(watched.max_rss)
        .map(|(control, max)| max.saturating_sub(control));
    report.metric("server_extra_bytes", extra);
    report.metric(
        "server_rss_growth_during_stall",
        rss_before
            .zip(watched.max_rss)
            .map(|(before, max)| max.saturating_sub(before.rss_bytes)),
    );
    report.metric(
        "control_rss_growth_bytes",
        rss_control_start
            .zip(rss_control_end)
            .map(|(a, b)| b.rss_bytes.saturating_sub(a.rss_bytes)),
    );
    report.metric("server_kernel_send_queue_bytes", watched.max_send_queue);
    let cut_off = watched.cut_off_at.is_some();
    report.metric("cut_off", cut_off);
    report.figure(
        "cut_off_seconds",
        watched
            .cut_off_at
            .map(|at| at.saturating_duration_since(stalled_at).as_secs_f64()),
    );
    report.metric("close_code_seen_by_client", close_code);
    report.metric("deliveries_without", control.deliveries);
    report.metric("deliveries_with", with_slow.deliveries);
    let mut integrity = control.integrity;
    integrity.lost += with_slow.integrity.lost;
    integrity.duplicated += with_slow.integrity.duplicated;
    integrity.reordered += with_slow.integrity.reordered;
    report.integrity(integrity);
    control.report_problems(&mut report);
    with_slow.report_problems(&mut report);
    if !cut_off {
        report.note(
            "the stalled member was not cut off during the run (its backlog stayed \
             within the kernel buffers and the server's queue): raise --rate or --duration",
        );
    }
    if cut_offs_before.is_none() {
        report.note("the server has no /metrics page: cut-off not observable");
    }
    Ok(report)
}

/// The slow member's socket, driven by `mode`; returns the close code the
/// server sent, if one arrives once it drains.
async fn slow_member(mut ws: Ws, mut mode: watch::Receiver<Mode>) -> Option<u16> {
    let ping = raw::frame(None, Request::Ping).ok()?;
    let mut beat = tokio::time::interval(Duration::from_secs(10));
    loop {
        let current = *mode.borrow_and_update();
        match current {
            Mode::Read => tokio::select! {
                changed = mode.changed() => changed.ok()?,
                _ = beat.tick() => ws.send(ping.clone()).await.ok()?,
                message = ws.next() => match message {
                    Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                    Some(Ok(_)) => {}
                    _ => return None,
                },
            },
            Mode::Stall => mode.changed().await.ok()?,
            Mode::Drain => loop {
                match ws.next().await {
                    Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                    Some(Ok(_)) => {}
                    _ => return None,
                }
            },
        }
    }
}

/// What the memory watcher saw while the member was stalled.
struct Watched {
    /// Highest server RSS until the cut-off (or the end).
    max_rss: Option<u64>,
    /// When the server's cut-off counter moved.
    cut_off_at: Option<Instant>,
    /// Most bytes the kernel held in the server's send queue for the member.
    max_send_queue: Option<u64>,
}

/// Samples the server's RSS every 20 ms and its cut-off counter every 100 ms
/// until the counter moves or `stop` is set.
async fn watch_memory(
    pid: Option<u32>,
    client: Client,
    cut_offs_before: f64,
    (server_port, member_port): (u16, u16),
    mut stop: watch::Receiver<bool>,
) -> Watched {
    let mut watched = Watched {
        max_rss: None,
        cut_off_at: None,
        max_send_queue: None,
    };
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = tick.tick() => {}
        }
        if let Some(sample) = pid.and_then(|p| ProcSample::read(p).ok()) {
            watched.max_rss = Some(watched.max_rss.unwrap_or(0).max(sample.rss_bytes));
        }
        if let Some(queued) = send_queue(server_port, member_port) {
            watched.max_send_queue = Some(watched.max_send_queue.unwrap_or(0).max(queued));
        }
        n += 1;
        if n % 5 == 0 {
            if let Some(count) = metric(&client, CUT_OFF_METRIC).await {
                if count > cut_offs_before {
                    watched.cut_off_at = Some(Instant::now());
                    break;
                }
            }
        }
    }
    watched
}

/// Bytes waiting in the kernel's send queue of the server's end of the TCP
/// connection between `server_port` and `member_port` (`/proc/net/tcp`):
/// memory a slow consumer costs the server that its RSS does not show.
fn send_queue(server_port: u16, member_port: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let port = |address: &str| {
        address
            .rsplit_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
    };
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (local, remote, queues) = (fields.get(1)?, fields.get(2)?, fields.get(4)?);
        if port(local)? != server_port || port(remote)? != member_port {
            return None;
        }
        u64::from_str_radix(queues.split(':').next()?, 16).ok()
    })
}
