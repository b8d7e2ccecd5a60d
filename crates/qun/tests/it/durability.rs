//! Durability of sends across SIGKILL: every acknowledged message survives a
//! killed server exactly once, at its acknowledged seq and in its sender's
//! order, and retrying an unacknowledged send never stores it twice.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant, SystemTime};

use futures_util::future::join_all;
use futures_util::stream::{FuturesUnordered, StreamExt};
use qun_client::qun_wire::{
    Ack, ClientFrame, ConversationEvent, ConversationId, Event, Request, Seq, UserId,
    PROTOCOL_VERSION,
};
use qun_client::{ClientError, Connection};

use crate::harness::{befriend, text, Server, TempDir, User};

/// Kill/restart cycles in the one test.
const KILLS: usize = 4;
/// Friend pairs; both sides of each pair write into their one conversation.
const PAIRS: usize = 6;
/// Sends in flight at once for the pipelined senders.
const PIPELINE: usize = 4;
/// Messages whose answers the ack-losing senders ignore in each kill round.
const LOST_ACKS: u64 = 3;
/// Messages each sender sends after the last kill, before the final one.
const FINAL_SENDS: u64 = 10;
/// How long the bursts of one round may take to notice the kill, or to finish.
const ROUND_TIMEOUT: Duration = Duration::from_secs(30);

/// One sender: a user writing numbered messages into one conversation over
/// its own socket, and what the server answered.
struct Sender {
    /// Names the sender in client message ids and payloads.
    name: String,
    user: User,
    conversation: ConversationId,
    /// Sends in flight at once; 1 means each send waits for the previous ack,
    /// so the sender's order must be the stream's order.
    window: usize,
    /// The next message number to send.
    next: u64,
    /// Every number ever sent.
    attempted: BTreeSet<u64>,
    /// Numbers acknowledged, with their ack.
    acked: BTreeMap<u64, Ack>,
    /// Sent but never acknowledged: retried on the next connection.
    unacked: BTreeSet<u64>,
    /// Every number that needed a retry.
    retried: BTreeSet<u64>,
    /// Whether, before each burst that ends in a kill, this sender sends
    /// [`LOST_ACKS`] messages without waiting for their answers, as if the
    /// acks were lost on the way: they are stored, yet the sender must retry.
    loses_acks: bool,
    /// Unacknowledged numbers seen stored (in the sender's own live events),
    /// with their seq: their retries must answer exactly that seq.
    stored_unacked: BTreeMap<u64, Seq>,
}

impl Sender {
    fn client_msg_id(&self, n: u64) -> String {
        format!("{}-{n}", self.name)
    }

    fn payload(&self, n: u64) -> String {
        format!("{}:{n}", self.name)
    }

    /// The message number of one of this sender's client message ids.
    fn number(&self, client_msg_id: &str) -> Option<u64> {
        client_msg_id
            .strip_prefix(self.name.as_str())?
            .strip_prefix('-')?
            .parse()
            .ok()
    }
}

/// What one round of a sender did.
#[derive(Default)]
struct RoundStats {
    retries: usize,
    /// Retries answered with a seq stored before the kill: the first attempt
    /// had committed, only its ack was lost.
    retries_already_stored: usize,
    /// Messages sent with their answers ignored.
    acks_lost: usize,
    acked: usize,
    unacked_at_kill: usize,
}

/// How a burst ended: the error that stopped it and when it was seen.
type Failure = Option<(ClientError, Instant)>;

/// Errors of a socket whose server is gone, as opposed to answers.
fn connection_lost(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Closed { .. } | ClientError::Transport(_) | ClientError::Timeout
    )
}

/// A number below `n`, different on every run; printed so a failing run can be told apart.
fn random_below(n: u64) -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    hasher.write_u128(nanos);
    hasher.finish() % n
}

/// The last lines of the server's log, for failure messages.
fn log_tail(server: &Server) -> String {
    let log = server.log();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(80)..].join("\n")
}

/// Connects `sender` to the (restarted) server and retries its unacknowledged
/// sends with their original client message ids; then, if it `loses_acks` and
/// `lose_acks` is set, sends messages whose answers it ignores. `stored_before`
/// is the conversation's last seq before anything was sent to this server process.
async fn reconnect_and_retry(
    url: String,
    mut sender: Sender,
    stored_before: Seq,
    lose_acks: bool,
) -> Result<(Sender, Connection, RoundStats), String> {
    let (conn, _) = Connection::connect(&url, &sender.user.token)
        .await
        .map_err(|e| format!("{}: connecting after restart: {e}", sender.name))?;
    let mut stats = RoundStats::default();
    for n in std::mem::take(&mut sender.unacked) {
        let id = sender.client_msg_id(n);
        let ack = conn
            .send(sender.conversation, &id, text(&sender.payload(n)))
            .await
            .map_err(|e| format!("{}: retry of {id} on a live server: {e}", sender.name))?;
        stats.retries += 1;
        if ack.seq <= stored_before {
            stats.retries_already_stored += 1;
        }
        if let Some(seq) = sender.stored_unacked.remove(&n) {
            if ack.seq != seq {
                return Err(format!(
                    "{}: {id} was stored at seq {seq} before the kill, but its retry answered {ack:?}",
                    sender.name
                ));
            }
        }
        sender.retried.insert(n);
        sender.acked.insert(n, ack);
    }
    if lose_acks && sender.loses_acks {
        stats.acks_lost += lose_acks_of(&mut sender, &conn).await?;
    }
    Ok((sender, conn, stats))
}

/// Sends [`LOST_ACKS`] messages in frames without a request id, so that their
/// answers reach nobody, and waits until the sender's own live events show
/// them stored. They stay unacknowledged, to be retried after the next kill.
async fn lose_acks_of(sender: &mut Sender, conn: &Connection) -> Result<usize, String> {
    let mut waiting = BTreeMap::new();
    for _ in 0..LOST_ACKS {
        let n = sender.next;
        sender.next += 1;
        sender.attempted.insert(n);
        sender.unacked.insert(n);
        let frame = ClientFrame {
            v: PROTOCOL_VERSION,
            id: None,
            request: Request::Send {
                conversation: sender.conversation,
                client_msg_id: sender.client_msg_id(n),
                segments: text(&sender.payload(n)),
            },
        };
        let frame = serde_json::to_string(&frame).map_err(|e| e.to_string())?;
        conn.send_raw_text(frame)
            .map_err(|e| format!("{}: raw send: {e}", sender.name))?;
        waiting.insert(sender.client_msg_id(n), n);
    }
    while !waiting.is_empty() {
        let event = conn
            .next_event_timeout(ROUND_TIMEOUT)
            .await
            .map_err(|e| format!("{}: waiting for {waiting:?}: {e}", sender.name))?
            .ok_or_else(|| format!("{}: closed while waiting for {waiting:?}", sender.name))?;
        if let Event::Conversation(ConversationEvent::Message(m)) = event {
            if m.sender != sender.user.id {
                continue;
            }
            if let Some(n) = waiting.remove(&m.client_msg_id) {
                sender.stored_unacked.insert(n, m.seq);
            }
        }
    }
    Ok(LOST_ACKS as usize)
}

/// Sends new numbered messages, `window` at a time, as fast as acks come back,
/// until the connection dies or `quota` messages were sent.
async fn burst(
    mut sender: Sender,
    conn: Connection,
    quota: Option<u64>,
    mut stats: RoundStats,
) -> (Sender, RoundStats, Failure) {
    let mut inflight = FuturesUnordered::new();
    let mut failure: Failure = None;
    let mut sent = 0;
    loop {
        while failure.is_none()
            && inflight.len() < sender.window
            && quota.is_none_or(|quota| sent < quota)
        {
            let n = sender.next;
            sender.next += 1;
            sent += 1;
            sender.attempted.insert(n);
            let (conn, conversation) = (conn.clone(), sender.conversation);
            let (id, body) = (sender.client_msg_id(n), sender.payload(n));
            inflight.push(async move { (n, conn.send(conversation, &id, text(&body)).await) });
        }
        let Some((n, answer)) = inflight.next().await else {
            break;
        };
        match answer {
            Ok(ack) => {
                stats.acked += 1;
                sender.acked.insert(n, ack);
            }
            Err(e) => {
                stats.unacked_at_kill += 1;
                sender.unacked.insert(n);
                failure.get_or_insert((e, Instant::now()));
            }
        }
    }
    (sender, stats, failure)
}

/// Reads every conversation's whole stream from the server and checks it
/// against what the senders were told. Unacknowledged sends may be stored or
/// not, but at most once; with `complete`, none may remain unacknowledged.
/// Returns each conversation's last seq.
async fn verify(
    server: &Server,
    senders: &[Sender],
    complete: bool,
) -> HashMap<ConversationId, Seq> {
    let mut by_conversation: BTreeMap<ConversationId, Vec<&Sender>> = BTreeMap::new();
    for s in senders {
        by_conversation.entry(s.conversation).or_default().push(s);
    }
    let mut problems = Vec::new();
    let mut last_seqs = HashMap::new();
    for (&conversation, writers) in &by_conversation {
        let (conn, _) = Connection::connect(&server.url, &writers[0].user.token)
            .await
            .unwrap_or_else(|e| panic!("verifier connects: {e}\n{}", log_tail(server)));
        let listed = conn
            .conversations()
            .await
            .unwrap_or_else(|e| panic!("listing conversations: {e}\n{}", log_tail(server)));
        let events = conn
            .catch_up(conversation, Seq(0), 500)
            .await
            .unwrap_or_else(|e| panic!("reading {conversation}: {e}\n{}", log_tail(server)));
        conn.close();
        let last_seq = listed
            .conversations
            .iter()
            .find(|c| c.conversation == conversation)
            .map(|c| c.last_seq)
            .unwrap_or_else(|| panic!("conversation {conversation} is not listed"));
        last_seqs.insert(conversation, last_seq);
        if last_seq.0 != events.len() as u64 {
            problems.push(format!(
                "conversation {conversation}: last_seq is {last_seq} but history has {} events",
                events.len()
            ));
        }

        // Which sender and number each seq holds.
        let mut at_seq: HashMap<Seq, (UserId, u64)> = HashMap::new();
        let mut seen: HashMap<(UserId, String), Seq> = HashMap::new();
        let mut order: HashMap<UserId, Vec<u64>> = HashMap::new();
        for (i, event) in events.iter().enumerate() {
            let expected = Seq(i as u64 + 1);
            if event.seq() != expected {
                problems.push(format!(
                    "conversation {conversation}: event #{i} has seq {}, expected {expected}",
                    event.seq()
                ));
            }
            let ConversationEvent::Message(m) = event else {
                problems.push(format!(
                    "conversation {conversation}: not a message: {event:?}"
                ));
                continue;
            };
            if let Some(first) = seen.insert((m.sender, m.client_msg_id.clone()), m.seq) {
                problems.push(format!(
                    "conversation {conversation}: {} stored twice, at seq {first} and {}",
                    m.client_msg_id, m.seq
                ));
            }
            let Some(s) = writers.iter().find(|s| s.user.id == m.sender) else {
                problems.push(format!(
                    "conversation {conversation}: stranger's message {m:?}"
                ));
                continue;
            };
            let Some(n) = s
                .number(&m.client_msg_id)
                .filter(|n| s.attempted.contains(n))
            else {
                problems.push(format!(
                    "conversation {conversation}: phantom message {m:?} from {}",
                    s.name
                ));
                continue;
            };
            if m.segments != text(&s.payload(n)) || m.recalled {
                problems.push(format!("{}: wrong content at seq {}: {m:?}", s.name, m.seq));
            }
            at_seq.insert(m.seq, (m.sender, n));
            order.entry(m.sender).or_default().push(n);
        }

        for s in writers {
            for (&n, ack) in &s.acked {
                if ack.conversation != conversation {
                    problems.push(format!(
                        "{}: ack of {n} names another conversation: {ack:?}",
                        s.name
                    ));
                }
                match at_seq.get(&ack.seq) {
                    Some(&(sender, stored)) if sender == s.user.id && stored == n => {
                        let m = &events[ack.seq.0 as usize - 1];
                        if let ConversationEvent::Message(m) = m {
                            if m.message_id != ack.message_id {
                                problems.push(format!(
                                    "{}: {n} acked as message {} but stored as {}",
                                    s.name, ack.message_id, m.message_id
                                ));
                            }
                        }
                    }
                    Some((sender, stored)) => problems.push(format!(
                        "{}: {n} was acked at seq {} but user {sender}'s {stored} is there",
                        s.name, ack.seq
                    )),
                    None => problems.push(format!(
                        "{}: {n} was acked at seq {} but is not there (last seq {last_seq})",
                        s.name, ack.seq
                    )),
                }
            }
            if complete && !s.unacked.is_empty() {
                problems.push(format!("{}: still unacknowledged: {:?}", s.name, s.unacked));
            }
            if s.window == 1 {
                let ns = order.get(&s.user.id).map(Vec::as_slice).unwrap_or_default();
                if let Some(w) = ns.windows(2).find(|w| w[0] >= w[1]) {
                    problems.push(format!(
                        "{}: sent in order but stored out of order: {} before {}",
                        s.name, w[0], w[1]
                    ));
                }
            }
        }
    }
    if !problems.is_empty() {
        let shown = problems
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n");
        panic!(
            "{} problems after restart:\n{shown}\n--- server log (tail) ---\n{}",
            problems.len(),
            log_tail(server)
        );
    }
    last_seqs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_messages_survive_sigkill_exactly_once() {
    crate::require_e2e!();
    let began = Instant::now();
    let dir = TempDir::new("durability");
    let mut server = Server::start(dir.path(), &[]);

    let pairs = join_all((0..PAIRS).map(|p| {
        let server = &server;
        async move {
            let a = User::new(server, &format!("p{p}a")).await;
            let b = User::new(server, &format!("p{p}b")).await;
            let conversation = befriend(&a, &b).await;
            (p, a, b, conversation)
        }
    }))
    .await;
    let mut senders = Vec::new();
    for (p, a, b, conversation) in pairs {
        for (side, user) in [('a', a), ('b', b)] {
            // The last pair pipelines on both sides, the one before on one
            // side: ordering is only promised to senders that wait for acks.
            let window = match (p, side) {
                (5, _) | (4, 'b') => PIPELINE,
                _ => 1,
            };
            // Two sequential senders also lose acks, one with a concurrent
            // writer in its conversation.
            let loses_acks = matches!((p, side), (0, 'a') | (4, 'a'));
            senders.push(Sender {
                name: format!("p{p}{side}"),
                user,
                conversation,
                window,
                next: 1,
                attempted: BTreeSet::new(),
                acked: BTreeMap::new(),
                unacked: BTreeSet::new(),
                retried: BTreeSet::new(),
                loses_acks,
                stored_unacked: BTreeMap::new(),
            });
        }
    }
    eprintln!("setup took {:?}", began.elapsed());

    let mut stored_before: HashMap<ConversationId, Seq> = HashMap::new();
    let (mut total_retries, mut total_already_stored, mut total_unacked) = (0, 0, 0);
    for round in 0..=KILLS {
        let last = round == KILLS;
        let reconnected = join_all(senders.into_iter().map(|s| {
            let before = stored_before
                .get(&s.conversation)
                .copied()
                .unwrap_or(Seq(0));
            tokio::spawn(reconnect_and_retry(server.url.clone(), s, before, !last))
        }))
        .await;
        let bursts = reconnected
            .into_iter()
            .map(|r| match r.unwrap() {
                Ok((s, conn, stats)) => {
                    tokio::spawn(burst(s, conn, last.then_some(FINAL_SENDS), stats))
                }
                Err(e) => panic!("round {round}: {e}\n{}", log_tail(&server)),
            })
            .collect::<Vec<_>>();

        // Mid-burst for the kill rounds; right after the last ack for the final one.
        let mut killed_at = None;
        if !last {
            let burst_ms = 300 + random_below(500);
            tokio::time::sleep(Duration::from_millis(burst_ms)).await;
            killed_at = Some(Instant::now());
            server.kill();
            eprintln!("round {round}: killed after {burst_ms} ms of burst");
        }
        let ended = tokio::time::timeout(ROUND_TIMEOUT, join_all(bursts))
            .await
            .unwrap_or_else(|_| panic!("round {round}: bursts did not end\n{}", log_tail(&server)));
        if last {
            server.kill();
        }

        senders = Vec::new();
        let mut round_stats = RoundStats::default();
        for result in ended {
            let (s, stats, failure) = result.unwrap();
            match (failure, killed_at) {
                (None, None) => {}
                (Some((e, at)), Some(killed)) if connection_lost(&e) && at >= killed => {}
                (failure, _) => panic!(
                    "round {round}: {} stopped with {failure:?} (killed at {killed_at:?})\n{}",
                    s.name,
                    log_tail(&server)
                ),
            }
            round_stats.retries += stats.retries;
            round_stats.retries_already_stored += stats.retries_already_stored;
            round_stats.acks_lost += stats.acks_lost;
            round_stats.acked += stats.acked;
            round_stats.unacked_at_kill += stats.unacked_at_kill;
            senders.push(s);
        }
        eprintln!(
            "round {round}: {} retries ({} had been stored before the kill), {} acks ignored, {} new acks, {} sends in flight at the kill",
            round_stats.retries,
            round_stats.retries_already_stored,
            round_stats.acks_lost,
            round_stats.acked,
            round_stats.unacked_at_kill
        );
        assert!(
            round_stats.acked > 0,
            "round {round}: the burst acknowledged nothing"
        );
        total_retries += round_stats.retries;
        total_already_stored += round_stats.retries_already_stored;
        total_unacked += round_stats.unacked_at_kill;

        server.restart();
        stored_before = verify(&server, &senders, last).await;
    }

    assert!(
        total_unacked > 0,
        "no kill caught a send in flight, so no retry was exercised"
    );
    let lost = KILLS * senders.iter().filter(|s| s.loses_acks).count() * LOST_ACKS as usize;
    assert!(
        total_already_stored >= lost,
        "only {total_already_stored} retries found their message stored, but {lost} acks were ignored"
    );
    for s in &senders {
        assert!(s.stored_unacked.is_empty(), "{}: not retried", s.name);
        assert!(
            s.retried.iter().all(|n| s.acked.contains_key(n)),
            "{}: a retry went unanswered",
            s.name
        );
    }
    let stored: u64 = stored_before.values().map(|s| s.0).sum();
    eprintln!(
        "{KILLS} kills: {stored} messages stored, {total_retries} retries of which {total_already_stored} had been stored before their kill ({} of them sends caught in flight); took {:?}",
        total_already_stored - lost,
        began.elapsed()
    );
}
