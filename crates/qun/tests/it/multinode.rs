//! Multi-node qun end to end: three `qun serve` processes on loopback sharing
//! one PostgreSQL database and one NATS server, with clients spread over the
//! nodes. Also the faults `docs/deploy.md` describes: a node SIGKILLed, NATS
//! restarted, PostgreSQL briefly unreachable. Runs when `QUN_E2E=1` and both
//! `QUN_TEST_POSTGRES` (a server where databases may be created) and
//! `QUN_TEST_NATS_SERVER` (the nats-server binary) are set, as
//! `scripts/test.sh` does.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use qun_client::qun_wire::{
    ConversationEvent, ConversationId, CreateGroupRequest, Event, JoinMode, PresenceState, Seq,
};
use qun_client::{Client, ClientError, Connection};

use crate::harness::{befriend, text, Server, TempDir, User};
use crate::require_e2e;

// ---- services ----

/// The services these tests need, or `None` (after saying why) to skip.
fn services() -> Option<(String, String)> {
    let postgres = std::env::var("QUN_TEST_POSTGRES").ok();
    let nats = std::env::var("QUN_TEST_NATS_SERVER").ok();
    match (postgres, nats) {
        (Some(p), Some(n)) if !p.is_empty() && !n.is_empty() => Some((p, n)),
        _ => {
            eprintln!(
                "skipped: set QUN_TEST_POSTGRES and QUN_TEST_NATS_SERVER (scripts/test.sh does)"
            );
            None
        }
    }
}

/// Skips a multi-node test unless end-to-end tests run and both services are given.
macro_rules! require_services {
    () => {{
        require_e2e!();
        match services() {
            Some(s) => s,
            None => return,
        }
    }};
}

/// A loopback port nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `url` with its database name replaced.
fn with_database(url: &str, db: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("a URL with a database");
    format!("{base}/{db}")
}

/// `url` with its `host:port` replaced.
fn with_address(url: &str, addr: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (auth, rest) = match rest.split_once('@') {
        Some((user, rest)) => (format!("{user}@"), rest),
        None => (String::new(), rest),
    };
    let path = rest.find('/').map_or("", |i| &rest[i..]);
    format!("{scheme}://{auth}{addr}{path}")
}

/// The `host:port` of a PostgreSQL URL.
fn address_of(url: &str) -> String {
    let rest = url.split_once("://").expect("a URL").1;
    let rest = rest.split_once('@').map_or(rest, |(_, r)| r);
    rest.split(['/', '?']).next().unwrap().to_owned()
}

/// A fresh database on the test server, dropped (forcibly) when this is dropped.
struct Database {
    admin: String,
    name: String,
    /// The database's URL.
    url: String,
}

impl Database {
    async fn create(admin: &str) -> Database {
        static N: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "qun_mn_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        admin_sql(admin, &format!("DROP DATABASE IF EXISTS {name}")).await;
        admin_sql(admin, &format!("CREATE DATABASE {name}")).await;
        Database {
            admin: admin.to_owned(),
            url: with_database(admin, &name),
            name,
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let (admin, sql) = (
            self.admin.clone(),
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
        // Drop may run inside the test's runtime: use a thread of its own.
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(admin_sql(&admin, &sql));
        })
        .join();
    }
}

async fn admin_sql(admin: &str, sql: &str) {
    let (client, connection) = tokio_postgres::connect(admin, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot reach QUN_TEST_POSTGRES: {e}"));
    let task = tokio::spawn(connection);
    if let Err(e) = client.batch_execute(sql).await {
        eprintln!("{sql}: {e}");
    }
    drop(client);
    let _ = task.await;
}

/// A nats-server process on a fixed loopback port; killed when dropped.
struct Nats {
    binary: String,
    port: u16,
    child: Option<Child>,
}

impl Nats {
    fn start(binary: &str) -> Nats {
        let mut nats = Nats {
            binary: binary.to_owned(),
            port: free_port(),
            child: None,
        };
        nats.spawn();
        nats
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let child = Command::new(&self.binary)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Three nodes on one database and one NATS, each with its own data folder.
struct Cluster {
    nodes: Vec<Server>,
    _dirs: Vec<TempDir>,
}

impl Cluster {
    fn start(store: &str, bus: &str, extra: &[(&str, &str)]) -> Cluster {
        let mut env = vec![
            ("QUN_STORE", store),
            ("QUN_BUS", bus),
            ("QUN_LIMITS__ARGON2_MEMORY_KIB", "1024"),
            ("QUN_LIMITS__ARGON2_ITERATIONS", "1"),
            (
                "QUN_LIMITS__LOGIN_ATTEMPTS_PER_ACCOUNT_PER_MINUTE",
                "100000",
            ),
            ("QUN_LIMITS__NODE_HEARTBEAT_SECS", "1"),
        ];
        env.extend_from_slice(extra);
        let mut dirs = Vec::new();
        let mut nodes = Vec::new();
        // One after the other, so that the first runs the migrations alone.
        for i in 0..3 {
            let dir = TempDir::new(&format!("mn{i}"));
            nodes.push(Server::start(dir.path(), &env));
            dirs.push(dir);
        }
        Cluster { nodes, _dirs: dirs }
    }

    fn logs(&self) -> String {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| format!("---- node {i} ----\n{}", n.log()))
            .collect()
    }
}

// ---- clients ----

/// A user's REST client pointed at another node.
fn rest_on(user: &User, node: &Server) -> Client {
    Client::new(&node.url).with_token(user.token.clone())
}

/// Opens a socket for a new device of `user` on `node`.
async fn socket(user: &User, node: &Server, name: &str) -> Device {
    let (conn, token) = user.device(node, name).await;
    Device {
        name: name.to_owned(),
        conn,
        token,
        seen: BTreeMap::new(),
    }
}

/// One device's socket and every conversation event it was given, by
/// `(conversation, seq)`, with how often each arrived.
struct Device {
    name: String,
    conn: Connection,
    token: String,
    seen: BTreeMap<ConversationId, Vec<ConversationEvent>>,
}

impl Device {
    /// Takes live events until this socket saw `last` of every conversation
    /// in `want`, or panics after `wait`. Live events must arrive in seq order
    /// and at most once.
    async fn collect(&mut self, want: &BTreeMap<ConversationId, Seq>, wait: Duration) {
        let deadline = Instant::now() + wait;
        loop {
            let done = want.iter().all(|(c, last)| {
                self.seen
                    .get(c)
                    .and_then(|e| e.iter().map(|e| e.seq()).max())
                    .is_some_and(|s| s >= *last)
            });
            if done {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.conn.next_event_timeout(left).await {
                Ok(Some(Event::Conversation(e))) => self.take_live(e),
                Ok(Some(_)) => {}
                other => panic!(
                    "{}: stopped at {:?} waiting for {want:?}: {other:?}",
                    self.name,
                    self.last_seqs()
                ),
            }
        }
    }

    /// Records a live event as it arrived; [`Device::assert_in_order`] judges
    /// the order afterwards, so a failure shows every misplaced event.
    fn take_live(&mut self, e: ConversationEvent) {
        self.seen.entry(e.conversation()).or_default().push(e);
    }

    /// Live events of `conv` arrived in strictly increasing seq order (so at
    /// most once each), as `docs/protocol.md` promises for every node.
    ///
    /// REGRESSION: this found two ordering bugs, since fixed in
    /// `qun_domain::order`: a node's first notification of a conversation fixed
    /// where the stream starts, and a timer of an older gap skipped a fresh one.
    fn assert_in_order(&self, conv: ConversationId) {
        let seqs: Vec<u64> = self
            .seen
            .get(&conv)
            .map(|e| e.iter().map(|e| e.seq().0).collect())
            .unwrap_or_default();
        let misplaced: Vec<(u64, u64)> = seqs
            .windows(2)
            .filter(|w| w[1] <= w[0])
            .map(|w| (w[0], w[1]))
            .collect();
        assert!(
            misplaced.is_empty(),
            "{}: live events of conversation {conv} out of seq order \
             ((previous, next) pairs: {misplaced:?}); docs/protocol.md says a node \
             sends one conversation's events in seq order",
            self.name
        );
    }

    fn last_seqs(&self) -> BTreeMap<ConversationId, u64> {
        self.seen
            .iter()
            .map(|(c, e)| (*c, e.iter().map(|e| e.seq().0).max().unwrap_or(0)))
            .collect()
    }

    /// Seqs seen of `conv` after `after`, sorted (repeats kept).
    fn seqs(&self, conv: ConversationId, after: Seq) -> Vec<u64> {
        let mut seqs: Vec<u64> = self
            .seen
            .get(&conv)
            .map(|e| {
                e.iter()
                    .map(|e| e.seq().0)
                    .filter(|s| *s > after.0)
                    .collect()
            })
            .unwrap_or_default();
        seqs.sort_unstable();
        seqs
    }
}

/// The last seq of `conv` as `client` sees it.
async fn last_seq(client: &Client, conv: ConversationId) -> Seq {
    client
        .conversations()
        .await
        .unwrap()
        .conversations
        .into_iter()
        .find(|c| c.conversation == conv)
        .map(|c| c.last_seq)
        .unwrap_or_else(|| panic!("{conv} not in the list"))
}

/// Every event of `conv` after `after`, from the log (REST, forward pages).
async fn log_after(client: &Client, conv: ConversationId, after: Seq) -> Vec<ConversationEvent> {
    let mut events: Vec<ConversationEvent> = Vec::new();
    let mut cursor = after;
    loop {
        let page = client
            .history(conv, Some(cursor), None, Some(100))
            .await
            .unwrap();
        events.extend(page.events);
        match events.last() {
            Some(last) if page.more && last.seq() > cursor => cursor = last.seq(),
            _ => return events,
        }
    }
}

/// The client message id of a message event.
fn client_msg_id(e: &ConversationEvent) -> Option<&str> {
    match e {
        ConversationEvent::Message(m) => Some(&m.client_msg_id),
        _ => None,
    }
}

/// Asserts the log of `conv` after `after` is gap-free, each acknowledged
/// message at its acknowledged seq, and no client message id twice.
fn check_log(log: &[ConversationEvent], after: Seq, acks: &BTreeMap<String, Seq>) {
    let seqs: Vec<u64> = log.iter().map(|e| e.seq().0).collect();
    let expect: Vec<u64> = (after.0 + 1..=after.0 + log.len() as u64).collect();
    assert_eq!(seqs, expect, "the log has a gap or a repeat");
    let mut ids = BTreeSet::new();
    for e in log {
        if let Some(id) = client_msg_id(e) {
            assert!(ids.insert(id.to_owned()), "{id} stored twice");
        }
    }
    for (id, seq) in acks {
        let at = log
            .iter()
            .find(|e| e.seq() == *seq)
            .unwrap_or_else(|| panic!("acknowledged {id} at {seq} is not in the log"));
        assert_eq!(client_msg_id(at), Some(id.as_str()), "seq {seq}");
    }
}

/// A group owned by `owner` that everyone in `members` joins.
async fn group(owner: &User, members: &[&User]) -> ConversationId {
    let g = owner
        .client
        .create_group(&CreateGroupRequest {
            name: "multinode".to_owned(),
            intro: String::new(),
            category: String::new(),
            tags: Vec::new(),
            listed: true,
            join_mode: JoinMode::Open,
        })
        .await
        .unwrap();
    for m in members {
        let joined = m.client.join_group(g.group_id, "", None).await.unwrap();
        assert!(joined.joined, "{} could not join", m.id);
    }
    g.conversation
}

/// Registers users, each through the node at its index modulo three.
async fn users(cluster: &Cluster, n: usize) -> Vec<User> {
    join_all(
        (0..n).map(|i| async move { User::new(&cluster.nodes[i % 3], &format!("u{i}")).await }),
    )
    .await
}

/// Sends `count` messages from `conn` one after another (each waits for its
/// ack); returns each client message id's acknowledged seq.
async fn send_many(
    conn: &Connection,
    conv: ConversationId,
    tag: String,
    count: usize,
) -> BTreeMap<String, Seq> {
    let mut acks = BTreeMap::new();
    for i in 0..count {
        let id = format!("{tag}-{i}");
        let ack = conn
            .send(conv, &id, text(&id))
            .await
            .unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(ack.conversation, conv);
        acks.insert(id, ack.seq);
    }
    acks
}

// ---- tests ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_deliver_every_message_once_and_in_order() {
    let (postgres, nats_bin) = require_services!();
    let db = Database::create(&postgres).await;
    let nats = Nats::start(&nats_bin);
    let cluster = Cluster::start(&db.url, &nats.url(), &[]);
    let n = &cluster.nodes;
    let u = users(&cluster, 3).await;
    let (alice, bob, carol) = (&u[0], &u[1], &u[2]);
    let ab = befriend(alice, bob).await;
    befriend(alice, carol).await;
    let g = group(alice, &[bob, carol]).await;

    // Presence: carol on node 2 sees alice come online on node 0.
    let c2 = socket(carol, &n[2], "carol-2").await;
    let a0 = socket(alice, &n[0], "alice-0").await;
    crate::harness::expect_event(&c2.conn, |e| match e {
        Event::Presence { user_id, state } if *user_id == alice.id => Some(*state),
        _ => None,
    })
    .await;
    let seen_by_carol = rest_on(carol, &n[2]).friends().await.unwrap();
    let alice_there = seen_by_carol
        .iter()
        .find(|f| f.user_id == alice.id)
        .unwrap();
    assert_eq!(alice_there.presence, PresenceState::Online);

    // Each user has devices on two different nodes.
    let mut devices = vec![
        socket(alice, &n[1], "alice-1").await,
        socket(bob, &n[1], "bob-1").await,
        socket(bob, &n[2], "bob-2").await,
        socket(carol, &n[0], "carol-0").await,
    ];
    let base_ab = last_seq(&alice.client, ab).await;
    let base_g = last_seq(&alice.client, g).await;

    // 1:1 both ways and the group from every node, all at once.
    let (acks_ab, acks_g) = {
        let all = [&a0, &c2];
        let senders = all.iter().copied().chain(devices.iter());
        let mut ab_sends = Vec::new();
        let mut g_sends = Vec::new();
        for d in senders {
            if !d.name.starts_with("carol") {
                ab_sends.push(send_many(&d.conn, ab, format!("{}-ab", d.name), 8));
            }
            g_sends.push(send_many(&d.conn, g, format!("{}-g", d.name), 8));
        }
        let (ab_acks, g_acks) = tokio::join!(join_all(ab_sends), join_all(g_sends));
        let merge = |v: Vec<BTreeMap<String, Seq>>| -> BTreeMap<String, Seq> {
            v.into_iter().flatten().collect()
        };
        (merge(ab_acks), merge(g_acks))
    };
    assert_eq!(acks_ab.len(), 4 * 8);
    assert_eq!(acks_g.len(), 6 * 8);
    let last_ab = Seq(base_ab.0 + acks_ab.len() as u64);
    let last_g = Seq(base_g.0 + acks_g.len() as u64);
    let acked_ab: BTreeSet<u64> = acks_ab.values().map(|s| s.0).collect();
    let acked_g: BTreeSet<u64> = acks_g.values().map(|s| s.0).collect();
    assert_eq!(acked_ab, (base_ab.0 + 1..=last_ab.0).collect(), "1:1 acks");
    assert_eq!(acked_g, (base_g.0 + 1..=last_g.0).collect(), "group acks");

    devices.push(a0);
    devices.push(c2);
    for d in &mut devices {
        let is_carol = d.name.starts_with("carol");
        let mut want = BTreeMap::from([(g, last_g)]);
        if !is_carol {
            want.insert(ab, last_ab);
        }
        d.collect(&want, Duration::from_secs(10)).await;
        assert_eq!(
            d.seqs(g, base_g),
            (base_g.0 + 1..=last_g.0).collect::<Vec<_>>(),
            "{}: group, each once",
            d.name
        );
        d.assert_in_order(g);
        if is_carol {
            assert!(
                d.seqs(ab, base_ab).is_empty(),
                "carol got alice and bob's chat"
            );
        } else {
            assert_eq!(
                d.seqs(ab, base_ab),
                (base_ab.0 + 1..=last_ab.0).collect::<Vec<_>>(),
                "{}: 1:1, each once",
                d.name
            );
            d.assert_in_order(ab);
        }
        // Each live event is the acknowledged message at its seq.
        for (conv, acks) in [(g, &acks_g), (ab, &acks_ab)] {
            for e in d.seen.get(&conv).into_iter().flatten() {
                if let Some(id) = client_msg_id(e) {
                    assert_eq!(acks.get(id), Some(&e.seq()), "{}: {id}", d.name);
                }
            }
        }
    }
    check_log(
        &log_after(&bob.client, ab, base_ab).await,
        base_ab,
        &acks_ab,
    );
    check_log(&log_after(&carol.client, g, base_g).await, base_g, &acks_g);
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_node_clients_reconnect_elsewhere_and_catch_up() {
    let (postgres, nats_bin) = require_services!();
    let db = Database::create(&postgres).await;
    let nats = Nats::start(&nats_bin);
    let mut cluster = Cluster::start(&db.url, &nats.url(), &[]);
    let u = users(&cluster, 3).await;
    let g = group(&u[0], &[&u[1], &u[2]]).await;
    let base = last_seq(&u[0].client, g).await;

    // Every user has a device on every node; node 2 is the one that dies.
    let mut devices = Vec::new();
    for user in &u {
        for (i, node) in cluster.nodes.iter().enumerate() {
            let name = format!("{}@{i}", user.id);
            devices.push(socket(user, node, &name).await);
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    // Senders through nodes 0 and 1 keep going; one through node 2 dies with it.
    let mut senders = Vec::new();
    for (i, user) in u.iter().enumerate() {
        let node = &cluster.nodes[i % 2];
        let (conn, _) = user.device(node, "sender").await;
        let stop = stop.clone();
        senders.push(tokio::spawn(async move {
            let mut acks = BTreeMap::new();
            let mut k = 0;
            while !stop.load(Ordering::SeqCst) {
                let id = format!("s{i}-{k}");
                let ack = conn.send(g, &id, text(&id)).await.unwrap();
                acks.insert(id, ack.seq);
                k += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            acks
        }));
    }
    let doomed_user = u[2].clone();
    let (doomed_conn, doomed_token) = doomed_user.device(&cluster.nodes[2], "doomed").await;
    let doomed = tokio::spawn(async move {
        // Sends until its node dies; the first failure is the unacknowledged one.
        let mut acks = BTreeMap::new();
        for k in 0.. {
            let id = format!("doomed-{k}");
            match doomed_conn.send(g, &id, text(&id)).await {
                Ok(ack) => {
                    acks.insert(id, ack.seq);
                }
                Err(_) => return (acks, id),
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        unreachable!()
    });

    tokio::time::sleep(Duration::from_millis(700)).await;
    cluster.nodes[2].kill();
    let killed_at = Instant::now();

    // Node 2's devices notice, reconnect to node 0 with the same token and
    // catch up from the last seq they saw; node 0's and 1's keep receiving.
    for d in devices.iter_mut() {
        if !d.name.ends_with("@2") {
            continue;
        }
        loop {
            match d.conn.next_event_timeout(Duration::from_secs(5)).await {
                Ok(Some(Event::Conversation(e))) => d.take_live(e),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        assert!(d.conn.is_closed(), "{}: socket still open", d.name);
        let (conn, _) = Connection::connect(&cluster.nodes[0].url, &d.token)
            .await
            .unwrap_or_else(|e| panic!("{}: reconnecting elsewhere: {e}", d.name));
        d.conn = conn;
        let from = d.last_seqs().get(&g).map_or(base, |s| Seq(*s));
        let missed = d.conn.catch_up(g, from, 50).await.unwrap();
        // Catch-up starts right after what the socket saw, without a gap.
        let got: Vec<u64> = missed.iter().map(|e| e.seq().0).collect();
        let expect: Vec<u64> = (from.0 + 1..=from.0 + got.len() as u64).collect();
        assert_eq!(got, expect, "{}: catch-up", d.name);
        for e in missed {
            d.take_live(e);
        }
        d.name = format!("{} (now @0)", d.name);
    }
    // The killed node's sender retries its unacknowledged message elsewhere:
    // stored at most once whether or not node 2 wrote it before dying.
    let (mut doomed_acks, retry_id) = doomed.await.unwrap();
    let (retry_conn, _) = Connection::connect(&cluster.nodes[1].url, &doomed_token)
        .await
        .unwrap();
    let retry = retry_conn
        .send(g, &retry_id, text(&retry_id))
        .await
        .unwrap();
    doomed_acks.insert(retry_id, retry.seq);

    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let mut acks = doomed_acks;
    for s in senders {
        acks.extend(s.await.unwrap());
    }
    eprintln!(
        "{} acknowledged, reconnected within {:?}",
        acks.len(),
        killed_at.elapsed()
    );

    let log = log_after(&u[0].client, g, base).await;
    check_log(&log, base, &acks);
    let last = log.last().unwrap().seq();
    // Node 2's devices merge live and catch-up events, dropping repeats by
    // (conversation, seq) as the protocol says.
    for d in devices.iter_mut() {
        let moved = d.name.contains("now @0");
        let want = BTreeMap::from([(g, last)]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while d.last_seqs().get(&g).copied().unwrap_or(0) < last.0 {
            let left = deadline.saturating_duration_since(Instant::now());
            match d.conn.next_event_timeout(left).await {
                Ok(Some(Event::Conversation(e))) => {
                    let known = d.last_seqs().get(&g).copied().unwrap_or(0);
                    if moved && e.seq().0 <= known {
                        continue;
                    }
                    d.take_live(e)
                }
                Ok(Some(_)) => {}
                other => panic!("{}: waiting for {want:?}: {other:?}", d.name),
            }
        }
        d.assert_in_order(g);
        // A message whose node died between its commit and its publication
        // never arrives live anywhere else: a client that sees the gap
        // catches up, as the protocol says. The log supplies what is missing.
        let mut got = d.seqs(g, base);
        let have: std::collections::BTreeSet<u64> = got.iter().copied().collect();
        got.extend(log.iter().map(|e| e.seq().0).filter(|s| !have.contains(s)));
        got.sort_unstable();
        assert_eq!(
            got,
            (base.0 + 1..=last.0).collect::<Vec<_>>(),
            "{}: each once, live or by catch-up",
            d.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restart_is_repaired_by_catch_up() {
    let (postgres, nats_bin) = require_services!();
    let db = Database::create(&postgres).await;
    let mut nats = Nats::start(&nats_bin);
    let cluster = Cluster::start(&db.url, &nats.url(), &[]);
    let n = &cluster.nodes;
    let u = users(&cluster, 3).await;
    let g = group(&u[0], &[&u[1], &u[2]]).await;
    let base = last_seq(&u[0].client, g).await;
    let (sender, _) = u[0].device(&n[0], "sender").await;
    let mut receivers = vec![
        socket(&u[1], &n[1], "bob@1").await,
        socket(&u[2], &n[2], "carol@2").await,
    ];

    let mut acks = send_many(&sender, g, "before".into(), 5).await;
    // NATS goes away during traffic: sends are still acknowledged, the
    // database being the log.
    let mut nats = tokio::task::spawn_blocking(move || {
        nats.kill();
        nats
    })
    .await
    .unwrap();
    acks.extend(send_many(&sender, g, "without-nats".into(), 10).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    acks.extend(send_many(&sender, g, "without-nats-later".into(), 5).await);
    let nats = tokio::task::spawn_blocking(move || {
        nats.spawn();
        nats
    })
    .await
    .unwrap();

    // Live cross-node delivery comes back by itself once the nodes reconnect.
    let back_at = Instant::now();
    let mut probe = 0;
    let recovered = 'wait: loop {
        assert!(
            back_at.elapsed() < Duration::from_secs(15),
            "no live cross-node delivery 15 s after NATS came back\n{}",
            cluster.logs()
        );
        let id = format!("probe-{probe}");
        probe += 1;
        let ack = sender.send(g, &id, text(&id)).await.unwrap();
        acks.insert(id, ack.seq);
        let until = Instant::now() + Duration::from_millis(300);
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match receivers[0].conn.next_event_timeout(left).await {
                Ok(Some(Event::Conversation(e))) => {
                    let seq = e.seq();
                    // Events around the outage may be missing, not repeated
                    // or reordered.
                    receivers[0].take_live(e);
                    if seq == ack.seq {
                        break 'wait back_at.elapsed();
                    }
                }
                Ok(Some(_)) => {}
                Err(ClientError::Timeout) => break,
                other => panic!("bob@1: {other:?}"),
            }
        }
    };
    eprintln!("live delivery back {recovered:?} after NATS restarted");
    acks.extend(send_many(&sender, g, "after".into(), 5).await);
    let last = *acks.values().max().unwrap();
    check_log(&log_after(&u[0].client, g, base).await, base, &acks);

    // Each receiver: what arrived live, in order and once, plus catch-up of
    // every gap, is every message.
    for d in receivers.iter_mut() {
        d.collect(&BTreeMap::from([(g, last)]), Duration::from_secs(10))
            .await;
        d.assert_in_order(g);
        let live: BTreeSet<u64> = d.seqs(g, base).into_iter().collect();
        let caught = d.conn.catch_up(g, base, 100).await.unwrap();
        let mut all = live.clone();
        for e in &caught {
            all.insert(e.seq().0);
        }
        assert_eq!(
            all,
            (base.0 + 1..=last.0).collect(),
            "{}: live and catch-up",
            d.name
        );
        eprintln!(
            "{}: {} live, {} recovered by catch-up",
            d.name,
            live.len(),
            all.len() - live.len()
        );
    }
    drop(nats);
}

/// A TCP proxy in front of PostgreSQL that can be cut: cutting closes every
/// proxied connection and refuses new ones until restored.
struct Proxy {
    addr: String,
    up: Arc<AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
    _runtime: std::thread::JoinHandle<()>,
}

impl Proxy {
    fn start(upstream: String) -> Proxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let up = Arc::new(AtomicBool::new(true));
        let (cut, cuts) = tokio::sync::watch::channel(0u64);
        let flag = up.clone();
        // Its own thread and runtime, so nodes starting (which blocks the
        // test's thread) still reach the database.
        let runtime = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    loop {
                        let Ok((mut inbound, _)) = listener.accept().await else {
                            continue;
                        };
                        if !flag.load(Ordering::SeqCst) {
                            drop(inbound);
                            continue;
                        }
                        let upstream = upstream.clone();
                        let mut cuts = cuts.clone();
                        cuts.mark_unchanged();
                        tokio::spawn(async move {
                            let Ok(mut outbound) = tokio::net::TcpStream::connect(&upstream).await
                            else {
                                return;
                            };
                            tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                                _ = cuts.changed() => {}
                            }
                        });
                    }
                });
        });
        Proxy {
            addr,
            up,
            cut,
            _runtime: runtime,
        }
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
        if !up {
            self.cut.send_modify(|n| *n += 1);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_gives_typed_errors_then_recovers() {
    let (postgres, nats_bin) = require_services!();
    let db = Database::create(&postgres).await;
    let proxy = Proxy::start(address_of(&db.url));
    let store = with_address(&db.url, &proxy.addr);
    let nats = Nats::start(&nats_bin);
    let cluster = Cluster::start(
        &store,
        &nats.url(),
        &[
            ("QUN_STORAGE__POSTGRES__CONNECT_TIMEOUT_MS", "1000"),
            ("QUN_STORAGE__POSTGRES__STATEMENT_TIMEOUT_MS", "2000"),
        ],
    );
    let n = &cluster.nodes;
    let u = users(&cluster, 3).await;
    let g = group(&u[0], &[&u[1], &u[2]]).await;
    let base = last_seq(&u[0].client, g).await;
    let mut senders = Vec::new();
    for (i, user) in u.iter().enumerate() {
        senders.push(user.device(&n[i], &format!("sender@{i}")).await.0);
    }
    let mut acks = send_many(&senders[0], g, "before".into(), 3).await;

    proxy.set_up(false);
    let cut_at = Instant::now();
    let mut refused = Vec::new();
    let mut codes = BTreeSet::new();
    let mut k = 0;
    while cut_at.elapsed() < Duration::from_secs(2) {
        let results = join_all(senders.iter().enumerate().map(|(i, s)| {
            let id = format!("cut{i}-{k}");
            async move { (id.clone(), s.send(g, &id, text(&id)).await) }
        }))
        .await;
        for (id, r) in results {
            match r {
                Ok(ack) => {
                    acks.insert(id, ack.seq);
                }
                Err(e) => {
                    let code = match &e {
                        ClientError::Api { error, .. } => error.code.clone(),
                        other => format!("not a typed error: {other}"),
                    };
                    codes.insert(code);
                    refused.push(id);
                }
            }
        }
        k += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !refused.is_empty(),
        "every send succeeded with the database cut off"
    );
    assert_eq!(
        codes,
        BTreeSet::from(["unavailable".to_owned()]),
        "sends during the outage fail with `unavailable` only"
    );
    proxy.set_up(true);
    let restored_at = Instant::now();

    // Each node recovers by itself: its sends succeed again, bounded.
    for (i, s) in senders.iter().enumerate() {
        let mut attempt = 0;
        loop {
            let id = format!("after{i}-{attempt}");
            match s.send(g, &id, text(&id)).await {
                Ok(ack) => {
                    acks.insert(id, ack.seq);
                    break;
                }
                Err(e) => {
                    assert!(
                        restored_at.elapsed() < Duration::from_secs(15),
                        "node {i} not recovered 15 s after PostgreSQL came back: {e}\n{}",
                        cluster.logs()
                    );
                    assert_eq!(e.code(), Some("unavailable"), "node {i}: {e}");
                    refused.push(id);
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
    eprintln!(
        "{} refused, recovered {:?} after the database came back",
        refused.len(),
        restored_at.elapsed()
    );
    // Live delivery across nodes works after the outage.
    let mut watcher = socket(&u[1], &n[2], "bob@2").await;
    let last = send_many(&senders[0], g, "final".into(), 1).await;
    let last_seq_sent = *last.values().next().unwrap();
    acks.extend(last);
    watcher
        .collect(
            &BTreeMap::from([(g, last_seq_sent)]),
            Duration::from_secs(10),
        )
        .await;

    let log = log_after(&u[0].client, g, base).await;
    check_log(&log, base, &acks);
    let stored: BTreeSet<&str> = log.iter().filter_map(client_msg_id).collect();
    let refused_stored: Vec<&String> = refused
        .iter()
        .filter(|id| stored.contains(id.as_str()))
        .collect();
    assert!(
        refused_stored.is_empty(),
        "refused (`unavailable`) sends were stored anyway: {refused_stored:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_group_senders_across_nodes_get_gap_free_sequences() {
    let (postgres, nats_bin) = require_services!();
    let db = Database::create(&postgres).await;
    let nats = Nats::start(&nats_bin);
    let cluster = Cluster::start(&db.url, &nats.url(), &[]);
    let n = &cluster.nodes;
    let u = users(&cluster, 6).await;
    let others: Vec<&User> = u[1..].iter().collect();
    let g = group(&u[0], &others).await;
    let base = last_seq(&u[0].client, g).await;

    // 12 sockets, 4 per node, two per user on different nodes.
    let mut devices = Vec::new();
    for (i, user) in u.iter().enumerate() {
        devices.push(socket(user, &n[i % 3], &format!("{}@{}", user.id, i % 3)).await);
        let j = (i + 1) % 3;
        devices.push(socket(user, &n[j], &format!("{}@{j}", user.id)).await);
    }
    const EACH: usize = 25;
    let acks: BTreeMap<String, Seq> = join_all(
        devices
            .iter()
            .map(|d| send_many(&d.conn, g, d.name.clone(), EACH)),
    )
    .await
    .into_iter()
    .flatten()
    .collect();
    let total = devices.len() * EACH;
    assert_eq!(acks.len(), total);
    let seqs: BTreeSet<u64> = acks.values().map(|s| s.0).collect();
    assert_eq!(seqs.len(), total, "two acks share a seq");
    let last = Seq(base.0 + total as u64);
    assert_eq!(
        seqs,
        (base.0 + 1..=last.0).collect(),
        "acks are not gap-free"
    );
    check_log(&log_after(&u[3].client, g, base).await, base, &acks);
    for d in &mut devices {
        d.collect(&BTreeMap::from([(g, last)]), Duration::from_secs(15))
            .await;
        assert_eq!(
            d.seqs(g, base),
            (base.0 + 1..=last.0).collect::<Vec<_>>(),
            "{}: each once",
            d.name
        );
        d.assert_in_order(g);
    }
}
