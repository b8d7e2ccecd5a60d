//! `direct`: K pairs of friends, both sides sending 1:1 messages on the open
//! loop; each send is acknowledged only once durable, so the figures are
//! those of the write path (group commit included).

use std::time::{Duration, Instant};

use qun_client::Client;

use crate::fanout::{close, CONNECT_CONCURRENCY};
use crate::load::{self, Plan, Sender};
use crate::report::Report;
use crate::server::Server;
use crate::{setup, track, Opts};

/// `direct`.
pub async fn run(opts: &Opts) -> anyhow::Result<Report> {
    let pairs = opts.clients.unwrap_or(50).max(1);
    let rate = opts.rate.unwrap_or(2000.0);
    let duration = opts.duration.unwrap_or(10.0);
    let mut server = Server::from_opts(opts)?;
    let mut report = Report::new("direct", &server.description);
    report.param("pairs", pairs);
    report.param("rate", rate);
    report.param("duration", duration);
    report.param("payload", opts.payload);

    let base = Client::new(&server.url);
    let users = setup::users(&base, 2 * pairs, opts.setup_concurrency, "dm").await?;
    let conversations = setup::pairs(&users, opts.setup_concurrency).await?;
    let tokens: Vec<String> = users.iter().map(|u| u.token.clone()).collect();
    let conns = setup::connect_all(&server.url, &tokens, CONNECT_CONCURRENCY).await?;
    server.check_alive()?;
    // Sender s writes to its friend s^1; both of them (every device of both
    // users) receive the message.
    let plan = Plan {
        phase: 1,
        rate,
        duration: Duration::from_secs_f64(duration),
        payload: opts.payload,
        drain: Duration::from_secs_f64(opts.drain),
        senders: (0..2 * pairs)
            .map(|s| Sender {
                conn: s,
                conversation: conversations[s / 2],
                recipients: vec![s, s ^ 1],
            })
            .collect(),
    };
    let outcome = load::run(&server, &conns, &plan, Instant::now()).await?;
    server.check_alive()?;
    close(&conns);

    let (ack_p50, ack_p99, ack_max) = track::quantiles_ms(&outcome.ack_latency);
    let (_, delivery_p99, _) = track::quantiles_ms(&outcome.latency);
    report.metric("messages_sent", outcome.sent);
    report.metric("messages_acked", outcome.acked);
    report.figure(
        "acked_per_second",
        Some(outcome.acked as f64 / outcome.ack_elapsed.as_secs_f64().max(1e-9)),
    );
    report.figure("ack_p50_ms", Some(ack_p50));
    report.figure("ack_p99_ms", Some(ack_p99));
    report.figure("ack_max_ms", Some(ack_max));
    report.figure("delivery_p99_ms", Some(delivery_p99));
    report.metric("deliveries", outcome.deliveries);
    report.figure("server_cpu_seconds", outcome.server_cpu_secs);
    report.figure(
        "acked_per_server_cpu_second",
        outcome
            .server_cpu_secs
            .filter(|&c| c > 0.0)
            .map(|c| outcome.acked as f64 / c),
    );
    report.integrity(outcome.integrity);
    outcome.report_problems(&mut report);
    Ok(report)
}
