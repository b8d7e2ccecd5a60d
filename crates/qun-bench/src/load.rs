//! The open-loop load shared by `fanout`, `direct`, `slow-consumer` and
//! `baseline`: every message has an intended send time fixed in advance, so a
//! stalled server cannot slow the schedule down and hide its own latency.
//! Sends are pipelined on each sender's socket; every tracked connection
//! records what it receives; the phase ends when every acknowledged message
//! has reached every recipient or the drain time is up.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use qun_client::qun_wire::{Ack, ConversationEvent, ConversationId, Event, Segment};
use qun_client::{ClientError, Connection};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::report::{bar, Report};
use crate::server::Server;
use crate::track::{self, AckLog, Integrity, Latencies, Recorder};

/// One sender of a phase.
#[derive(Debug, Clone)]
pub struct Sender {
    /// Index of its connection among the tracked connections.
    pub conn: usize,
    /// Where it sends.
    pub conversation: ConversationId,
    /// Indices of the tracked connections that must receive its messages.
    pub recipients: Vec<usize>,
}

/// What one phase sends.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Tag carried by the payloads, so phases never mix.
    pub phase: u32,
    /// Messages per second, all senders together.
    pub rate: f64,
    /// How long the schedule runs.
    pub duration: Duration,
    /// Bytes of text per message.
    pub payload: usize,
    /// Longest wait for deliveries after the last acknowledgement.
    pub drain: Duration,
    /// The senders; message k of the schedule goes to sender k mod len.
    pub senders: Vec<Sender>,
}

/// What one phase measured.
pub struct Outcome {
    /// Messages the schedule sent.
    pub sent: u64,
    /// Messages acknowledged.
    pub acked: u64,
    /// Sends answered with an error or not at all.
    pub send_errors: u64,
    /// The first send error, for the report.
    pub first_error: Option<String>,
    /// First receipts of this phase's messages by tracked connections.
    pub deliveries: u64,
    /// Receipts the acknowledgements call for.
    pub expected: u64,
    /// Intended send time to receipt, all recipients merged.
    pub latency: Latencies,
    /// Intended send time to acknowledgement.
    pub ack_latency: Latencies,
    /// Loss, duplication and reordering.
    pub integrity: Integrity,
    /// Recipients that saw a reordering, and the first one's example.
    pub reorders: (u64, Option<(u32, u64, u64)>),
    /// Schedule start to the last delivery (or the end of the drain).
    pub elapsed: Duration,
    /// Schedule start to the last acknowledgement.
    pub ack_elapsed: Duration,
    /// Server CPU time spent between schedule start and the end of the phase.
    pub server_cpu_secs: Option<f64>,
    /// Tracked connections the server closed during the phase.
    pub closed: Vec<(u16, String)>,
}

impl Outcome {
    /// Deliveries per wall-clock second.
    pub fn deliveries_per_second(&self) -> f64 {
        self.deliveries as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Deliveries per second of server CPU time.
    pub fn deliveries_per_cpu_second(&self) -> Option<f64> {
        self.server_cpu_secs
            .filter(|&cpu| cpu > 0.0)
            .map(|cpu| self.deliveries as f64 / cpu)
    }

    /// Adds the delivery figures and integrity to a report.
    pub fn report_deliveries(&self, report: &mut Report) {
        let (p50, p99, max) = track::quantiles_ms(&self.latency);
        report.metric("messages_sent", self.sent);
        report.metric("messages_acked", self.acked);
        report.metric("deliveries", self.deliveries);
        report.figure("deliveries_per_second", Some(self.deliveries_per_second()));
        report.figure("server_cpu_seconds", self.server_cpu_secs);
        report.figure(
            "deliveries_per_server_cpu_second",
            self.deliveries_per_cpu_second(),
        );
        report.figure("p50_ms", Some(p50));
        report.figure("p99_ms", Some(p99));
        report.figure("max_ms", Some(max));
        report.integrity(self.integrity);
        self.report_problems(report);
    }

    /// Adds send errors, late deliveries and unexpected closes to a report.
    pub fn report_problems(&self, report: &mut Report) {
        report.metric("send_errors", self.send_errors);
        if self.send_errors > 0 {
            report.fail(format!(
                "{} sends failed; first: {}",
                self.send_errors,
                self.first_error.as_deref().unwrap_or("?")
            ));
        }
        if self.deliveries < self.expected {
            report.note(format!(
                "{} of {} deliveries arrived within the drain time",
                self.deliveries, self.expected
            ));
        }
        if let (recipients, Some((sender, counter, after))) = self.reorders {
            report.note(format!(
                "{recipients} recipients saw reordering; first: sender {sender}'s message \
                 {counter} arrived after its message {after}"
            ));
        }
        if let Some((code, reason)) = self.closed.first() {
            report.fail(format!(
                "{} connections were closed by the server during the run (first: {code} {reason})",
                self.closed.len()
            ));
        }
    }
}

/// Runs one phase of `plan` over `conns` (every one of them tracked).
pub async fn run(
    server: &Server,
    conns: &[Connection],
    plan: &Plan,
    origin: Instant,
) -> anyhow::Result<Outcome> {
    anyhow::ensure!(!plan.senders.is_empty(), "a load needs at least one sender");
    anyhow::ensure!(plan.rate > 0.0, "--rate must be positive");
    let delivered = Arc::new(AtomicU64::new(0));
    let (stop, stop_rx) = watch::channel(false);
    let receivers: Vec<JoinHandle<Received>> = conns
        .iter()
        .map(|conn| {
            tokio::spawn(receive(
                conn.clone(),
                plan.phase,
                origin,
                Arc::clone(&delivered),
                stop_rx.clone(),
            ))
        })
        .collect();

    let total = (plan.rate * plan.duration.as_secs_f64()).round().max(1.0) as u64;
    let acks = Arc::new(AckLog::new(plan.senders.len()));
    let ack_latency = Arc::new(Mutex::new(track::latencies()));
    let errors = Arc::new(Mutex::new((0u64, None::<String>)));
    let last_ack_us = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let before = server.sample();
    let start = Instant::now() + Duration::from_millis(100);
    let start_us = track::micros(origin, start);
    let interval_us = 1e6 / plan.rate;
    let count = plan.senders.len() as u64;

    let progress = bar(total, "sending");
    let mut schedules = Vec::new();
    for (j, sender) in plan.senders.iter().enumerate() {
        let conn = conns[sender.conn].clone();
        let conversation = sender.conversation;
        let (acks, ack_latency, errors, last_ack_us, sent, progress) = (
            Arc::clone(&acks),
            Arc::clone(&ack_latency),
            Arc::clone(&errors),
            Arc::clone(&last_ack_us),
            Arc::clone(&sent),
            progress.clone(),
        );
        let (phase, size) = (plan.phase, plan.payload);
        schedules.push(tokio::spawn(async move {
            let mut sends = Vec::new();
            let mut i = 0u64;
            loop {
                let k = i * count + j as u64;
                if k >= total {
                    break;
                }
                let intended_us = start_us + (k as f64 * interval_us) as u64;
                let intended = origin + Duration::from_micros(intended_us);
                tokio::time::sleep_until(intended.into()).await;
                let text = track::payload(phase, j as u32, i, intended_us, size);
                let id = format!("qb{phase}-{j}-{i}");
                let conn = conn.clone();
                let (acks, ack_latency, errors, last_ack_us) = (
                    Arc::clone(&acks),
                    Arc::clone(&ack_latency),
                    Arc::clone(&errors),
                    Arc::clone(&last_ack_us),
                );
                let counter = i;
                let settle = move |result: Result<Ack, ClientError>| {
                    let now_us = track::micros(origin, Instant::now());
                    match result {
                        Ok(_) => {
                            acks.ack(j, counter);
                            last_ack_us.fetch_max(now_us, Ordering::Relaxed);
                            ack_latency
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .saturating_record(now_us.saturating_sub(intended_us).max(1));
                        }
                        Err(e) => {
                            let mut errors = errors.lock().unwrap_or_else(|e| e.into_inner());
                            errors.0 += 1;
                            errors.1.get_or_insert_with(|| e.to_string());
                        }
                    }
                };
                let mut send = Box::pin(async move {
                    conn.send(conversation, &id, vec![Segment::Text { text }])
                        .await
                });
                // Poll once here, so the request is queued on the socket now,
                // in schedule order; tasks spawned to await it could otherwise
                // run, and queue their requests, in any order.
                match std::future::poll_fn(|cx| Poll::Ready(send.as_mut().poll(cx))).await {
                    Poll::Ready(result) => settle(result),
                    Poll::Pending => sends.push(tokio::spawn(async move { settle(send.await) })),
                }
                sent.fetch_add(1, Ordering::Relaxed);
                progress.inc(1);
                i += 1;
            }
            for send in sends {
                let _ = send.await;
            }
        }));
    }
    for schedule in schedules {
        schedule.await?;
    }
    progress.finish_and_clear();

    let acked_per_sender = acks.snapshot();
    let expected: u64 = plan
        .senders
        .iter()
        .zip(&acked_per_sender)
        .map(|(s, a)| a.len() * s.recipients.len() as u64)
        .sum();
    let waiting = bar(expected, "delivering");
    let deadline = Instant::now() + plan.drain;
    let mut last_delivery = Instant::now();
    let mut seen = 0;
    loop {
        let now_delivered = delivered.load(Ordering::Relaxed);
        if now_delivered != seen {
            seen = now_delivered;
            last_delivery = Instant::now();
        }
        waiting.set_position(now_delivered);
        if now_delivered >= expected || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    waiting.finish_and_clear();
    let after = server.sample();
    let _ = stop.send(true);
    let mut recorders = Vec::with_capacity(receivers.len());
    let mut closed = Vec::new();
    for receiver in receivers {
        let (recorder, close) = receiver.await?;
        recorders.push(recorder);
        closed.extend(close);
    }

    let mut expected_of: Vec<Vec<u32>> = vec![Vec::new(); conns.len()];
    for (j, sender) in plan.senders.iter().enumerate() {
        for &r in &sender.recipients {
            expected_of[r].push(j as u32);
        }
    }
    let integrity = Integrity::check(&recorders, &acked_per_sender, |r| expected_of[r].clone());
    let reorders = (
        recorders.iter().filter(|r| r.reordered > 0).count() as u64,
        recorders.iter().find_map(|r| r.first_reorder),
    );
    let (send_errors, first_error) = errors.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let ack_latency = ack_latency
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let last_ack = origin + Duration::from_micros(last_ack_us.load(Ordering::Relaxed));
    Ok(Outcome {
        sent: sent.load(Ordering::Relaxed),
        acked: acked_per_sender.iter().map(|a| a.len()).sum(),
        send_errors,
        first_error,
        deliveries: recorders.iter().map(|r| r.received - r.duplicated).sum(),
        expected,
        latency: track::merged(recorders.iter().map(|r| &r.latency)),
        ack_latency,
        integrity,
        reorders,
        elapsed: last_delivery.max(last_ack).saturating_duration_since(start),
        ack_elapsed: last_ack.saturating_duration_since(start),
        server_cpu_secs: before.zip(after).map(|(b, a)| a.cpu_secs - b.cpu_secs),
        closed,
    })
}

/// A recipient's account, and the close code and reason if the server
/// closed its connection.
type Received = (Recorder, Option<(u16, String)>);

/// Records what one tracked connection receives until told to stop.
async fn receive(
    conn: Connection,
    phase: u32,
    origin: Instant,
    delivered: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) -> Received {
    let mut recorder = Recorder::new(phase);
    loop {
        let event = tokio::select! {
            biased;
            _ = stop.changed() => break,
            event = conn.next_event() => event,
        };
        match event {
            None => return (recorder, conn.close_info()),
            Some(Event::Conversation(ConversationEvent::Message(message))) => {
                let now = track::micros(origin, Instant::now());
                for segment in &message.segments {
                    if let Segment::Text { text } = segment {
                        if recorder.record(text, Some(now)) {
                            delivered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            Some(_) => {}
        }
    }
    (recorder, None)
}
