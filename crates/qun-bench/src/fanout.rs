//! `fanout` (one group, every member online, senders at a fixed rate) and
//! `baseline` (the same workload against qun and against the minimal
//! broadcast server of [`crate::baseline`], compared per server CPU second).

use std::time::{Duration, Instant};

use qun_client::qun_wire::ConversationId;
use qun_client::{Client, Connection};

use crate::load::{self, Outcome, Plan, Sender};
use crate::report::Report;
use crate::server::Server;
use crate::{setup, Opts};

/// Sockets opened at once while connecting members.
pub const CONNECT_CONCURRENCY: usize = 64;

/// The workload's size and pace.
#[derive(Debug, Clone)]
pub struct Params {
    /// Group size, every member online.
    pub members: usize,
    /// Members that send.
    pub senders: usize,
    /// Messages per second, all senders together.
    pub rate: f64,
    /// Seconds of sending.
    pub duration: f64,
}

impl Params {
    /// The options, with `members` as the default group size.
    pub fn from_opts(opts: &Opts, members: usize) -> Params {
        let members = opts.members.unwrap_or(members).max(1);
        Params {
            members,
            senders: opts.senders.unwrap_or(10).clamp(1, members),
            rate: opts.rate.unwrap_or(200.0),
            duration: opts.duration.unwrap_or(10.0),
        }
    }

    /// Records the parameters in a report.
    pub fn record(&self, report: &mut Report, opts: &Opts) {
        report.param("members", self.members);
        report.param("senders", self.senders);
        report.param("rate", self.rate);
        report.param("duration", self.duration);
        report.param("payload", opts.payload);
    }

    /// The schedule: `senders` members spread over the group, each message
    /// to every member (the sender's own devices included).
    pub fn plan(&self, opts: &Opts, phase: u32, conversation: ConversationId) -> Plan {
        let stride = (self.members / self.senders).max(1);
        let everyone: Vec<usize> = (0..self.members).collect();
        Plan {
            phase,
            rate: self.rate,
            duration: Duration::from_secs_f64(self.duration),
            payload: opts.payload,
            drain: Duration::from_secs_f64(opts.drain),
            senders: (0..self.senders)
                .map(|j| Sender {
                    conn: (j * stride).min(self.members - 1),
                    conversation,
                    recipients: everyone.clone(),
                })
                .collect(),
        }
    }
}

/// `fanout`.
pub async fn run(opts: &Opts) -> anyhow::Result<Report> {
    let params = Params::from_opts(opts, 100);
    let mut server = Server::from_opts(opts)?;
    let mut report = Report::new("fanout", &server.description);
    params.record(&mut report, opts);
    let outcome = against_qun(&mut server, &params, opts).await?;
    outcome.report_deliveries(&mut report);
    Ok(report)
}

/// Creates the group on qun, connects every member and runs the load.
async fn against_qun(server: &mut Server, params: &Params, opts: &Opts) -> anyhow::Result<Outcome> {
    let base = Client::new(&server.url);
    let users = setup::users(&base, params.members, opts.setup_concurrency, "fan").await?;
    let (_, conversation) = setup::group(&users, opts.setup_concurrency).await?;
    let tokens: Vec<String> = users.iter().map(|u| u.token.clone()).collect();
    let conns = setup::connect_all(&server.url, &tokens, CONNECT_CONCURRENCY).await?;
    server.check_alive()?;
    let outcome = load::run(
        server,
        &conns,
        &params.plan(opts, 1, conversation),
        Instant::now(),
    )
    .await?;
    server.check_alive()?;
    close(&conns);
    Ok(outcome)
}

/// `baseline`: the fan-out workload against qun, then against the baseline server.
pub async fn run_baseline(opts: &Opts) -> anyhow::Result<Report> {
    let params = Params::from_opts(opts, 1000);
    let mut qun = Server::from_opts(opts)?;
    let mut report = Report::new("baseline", &qun.description);
    params.record(&mut report, opts);
    let on_qun = against_qun(&mut qun, &params, opts).await?;
    // Stop a spawned qun so that it takes no CPU from the second run.
    drop(qun);

    let mut floor = Server::spawn_baseline()?;
    // The baseline server takes any token and has one conversation.
    let tokens: Vec<String> = (0..params.members).map(|i| format!("bench-{i}")).collect();
    let conns = setup::connect_all(&floor.url, &tokens, CONNECT_CONCURRENCY).await?;
    let on_floor = load::run(
        &floor,
        &conns,
        &params.plan(opts, 1, ConversationId(1)),
        Instant::now(),
    )
    .await?;
    floor.check_alive()?;
    close(&conns);

    let (qun_rate, floor_rate) = (
        on_qun.deliveries_per_cpu_second(),
        on_floor.deliveries_per_cpu_second(),
    );
    report.figure("qun_deliveries_per_server_cpu_second", qun_rate);
    report.figure("baseline_deliveries_per_server_cpu_second", floor_rate);
    report.figure(
        "qun_to_baseline_ratio",
        qun_rate.zip(floor_rate).map(|(q, f)| q / f),
    );
    report.figure(
        "qun_deliveries_per_second",
        Some(on_qun.deliveries_per_second()),
    );
    report.figure(
        "baseline_deliveries_per_second",
        Some(on_floor.deliveries_per_second()),
    );
    let (_, qun_p99, _) = crate::track::quantiles_ms(&on_qun.latency);
    let (_, floor_p99, _) = crate::track::quantiles_ms(&on_floor.latency);
    report.figure("qun_p99_ms", Some(qun_p99));
    report.figure("baseline_p99_ms", Some(floor_p99));
    report.figure("qun_server_cpu_seconds", on_qun.server_cpu_secs);
    report.figure("baseline_server_cpu_seconds", on_floor.server_cpu_secs);
    let mut integrity = on_qun.integrity;
    integrity.lost += on_floor.integrity.lost;
    integrity.duplicated += on_floor.integrity.duplicated;
    integrity.reordered += on_floor.integrity.reordered;
    on_qun.report_problems(&mut report);
    on_floor.report_problems(&mut report);
    report.integrity(integrity);
    if qun_rate.is_none() {
        report.note("qun's CPU is unknown: pass --server-pid with --server");
    }
    Ok(report)
}

/// Closes connections politely (the server then sees normal closes).
pub fn close(conns: &[Connection]) {
    for conn in conns {
        conn.close();
    }
}
