//! `reconnect`: N group members are online and see a marker message, go
//! away, miss `--missed` messages, then all reconnect at once and catch up
//! with `history` after the marker's seq. `resync_seconds` runs from the
//! moment they start reconnecting until the last one holds every missed
//! message, none twice and in order.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use qun_client::qun_wire::{
    ConversationEvent, ConversationId, Event, HistoryPage, Request, Segment, Seq,
};
use qun_client::{Client, Connection};
use tokio::task::JoinSet;

use crate::raw::{self, Endpoint, Ws};
use crate::report::{bar, Report};
use crate::server::Server;
use crate::track::{self, AckLog, Integrity, Recorder};
use crate::{setup, Opts};

/// Sockets opened at once before the storm (the storm itself is unbounded).
const CONNECT_CONCURRENCY: usize = 128;
/// Events per catch-up page (`qun-client`'s default).
const PAGE: u32 = 100;

/// `reconnect`.
pub async fn run(opts: &Opts) -> anyhow::Result<Report> {
    let n = opts.clients.unwrap_or(1000).max(1);
    let missed = opts.missed.max(1);
    let mut server = Server::from_opts(opts)?;
    let mut report = Report::new("reconnect", &server.description);
    report.param("clients", n);
    report.param("missed", missed);
    report.param("sources", opts.sources);
    report.param("payload", opts.payload);

    let base = Client::new(&server.url);
    // User 0 owns the group and sends; the others reconnect.
    let users = setup::users(&base, n + 1, opts.setup_concurrency, "re").await?;
    let (_, conversation) = setup::group(&users, opts.setup_concurrency).await?;
    let (sender, _) = Connection::connect(&server.url, &users[0].token).await?;
    let tokens: Arc<Vec<String>> = Arc::new(users[1..].iter().map(|u| u.token.clone()).collect());
    drop(users);
    let endpoint = Endpoint::resolve(&server.url).await?;
    server.check_alive()?;

    // Everyone online, and everyone has seen the marker.
    let sockets = setup::bounded(n, CONNECT_CONCURRENCY, "connecting", |i| {
        let (endpoint, tokens) = (endpoint.clone(), Arc::clone(&tokens));
        async move {
            let mut ws = raw::open(&endpoint, raw::source(i, opts.sources), None).await?;
            raw::auth(&mut ws, &tokens[i]).await?;
            Ok(ws)
        }
    })
    .await?;
    let marker = sender
        .send(conversation, "marker", text("marker"))
        .await
        .context("sending the marker")?
        .seq;
    let mut seen_marker = JoinSet::new();
    for ws in sockets {
        seen_marker.spawn(see_then_leave(ws, marker));
    }
    let leaving = bar(n as u64, "seeing the marker, leaving");
    while let Some(result) = seen_marker.join_next().await {
        result?.context("a member did not see the marker")?;
        leaving.inc(1);
    }
    leaving.finish_and_clear();

    // Messages they miss.
    let acks = AckLog::new(1);
    let sending = bar(missed as u64, "sending what they miss");
    // One at a time, so that the stream's order is the counters' order.
    for i in 0..missed {
        let body = track::payload(1, 0, i as u64, 0, opts.payload);
        sender
            .send(conversation, &format!("m{i}"), text(&body))
            .await
            .with_context(|| format!("sending missed message {i}"))?;
        acks.ack(0, i as u64);
        sending.inc(1);
    }
    sending.finish_and_clear();
    sender.close();
    server.check_alive()?;

    // The storm: everyone at once.
    let before = server.sample();
    let start = Instant::now();
    let mut storm = JoinSet::new();
    for i in 0..n {
        let (endpoint, tokens) = (endpoint.clone(), Arc::clone(&tokens));
        let source = raw::source(i, opts.sources);
        storm.spawn(async move {
            let recorder = resync(&endpoint, source, &tokens[i], conversation, marker).await;
            (recorder, Instant::now())
        });
    }
    let resyncing = bar(n as u64, "reconnecting, catching up");
    let mut recorders = Vec::with_capacity(n);
    let mut failures = Vec::new();
    let mut last = start;
    while let Some(result) = storm.join_next().await {
        let (recorder, done) = result?;
        match recorder {
            Ok(recorder) => recorders.push(recorder),
            Err(e) => failures.push(format!("{e:#}")),
        }
        last = last.max(done);
        resyncing.inc(1);
    }
    resyncing.finish_and_clear();
    let after = server.sample();
    server.check_alive()?;

    let acked = acks.snapshot();
    let mut integrity = Integrity::check(&recorders, &acked, |_| vec![0]);
    // A client that failed to resync lost everything it missed.
    integrity.lost += failures.len() as u64 * acked[0].len();
    report.figure(
        "resync_seconds",
        Some(last.saturating_duration_since(start).as_secs_f64()),
    );
    report.metric("resynced_clients", recorders.len());
    report.metric("failed_clients", failures.len());
    report.figure(
        "server_cpu_seconds",
        before.zip(after).map(|(b, a)| a.cpu_secs - b.cpu_secs),
    );
    report.integrity(integrity);
    if let Some(first) = failures.first() {
        report.fail(format!(
            "{} clients failed to resync; first: {first}",
            failures.len()
        ));
    }
    Ok(report)
}

fn text(t: &str) -> Vec<Segment> {
    vec![Segment::Text { text: t.to_owned() }]
}

/// Reads until the marker arrives live, then closes.
async fn see_then_leave(mut ws: Ws, marker: Seq) -> anyhow::Result<()> {
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if let qun_client::qun_wire::ServerFrame::Event {
                event: Event::Conversation(event),
                ..
            } = raw::next_frame(&mut ws).await?
            {
                if event.seq() >= marker {
                    return anyhow::Ok(());
                }
            }
        }
    })
    .await
    .map_err(|_| anyhow!("the marker did not arrive within 60 s"))??;
    raw::close(ws).await;
    Ok(())
}

/// Reconnects and pages through the history after `marker`, recording every
/// message seen (catch-up pages and live events alike).
async fn resync(
    endpoint: &Endpoint,
    source: std::net::IpAddr,
    token: &str,
    conversation: ConversationId,
    marker: Seq,
) -> anyhow::Result<Recorder> {
    let mut ws = raw::open(endpoint, source, None).await?;
    raw::auth(&mut ws, token).await?;
    let mut recorder = Recorder::new(1);
    let mut cursor = marker;
    let mut live = Vec::new();
    for page in 0.. {
        let data = raw::request(
            &mut ws,
            &format!("h{page}"),
            Request::History {
                conversation,
                after: Some(cursor),
                before: None,
                limit: Some(PAGE),
            },
            &mut live,
        )
        .await?;
        let page: HistoryPage = serde_json::from_value(data)?;
        for event in &page.events {
            record(&mut recorder, event);
            cursor = cursor.max(event.seq());
        }
        if !page.more || page.events.is_empty() {
            break;
        }
    }
    for event in &live {
        if let Event::Conversation(event) = event {
            if event.seq() > cursor {
                record(&mut recorder, event);
            }
        }
    }
    raw::close(ws).await;
    Ok(recorder)
}

fn record(recorder: &mut Recorder, event: &ConversationEvent) {
    if let ConversationEvent::Message(message) = event {
        for segment in &message.segments {
            if let Segment::Text { text } = segment {
                recorder.record(text, None);
            }
        }
    }
}
