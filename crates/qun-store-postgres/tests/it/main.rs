//! Integration tests of the PostgreSQL store: the shared conformance suite
//! plus what only a store shared by several nodes has (migrations racing at
//! start, appends and retries arriving through two nodes at once).
//!
//! They need a server where they may create databases: set
//! `QUN_TEST_POSTGRES` to its URL (scripts/test.sh starts one). Without it
//! each test prints "skipped" and passes. Each test works in a database of
//! its own, created for it and dropped after.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use qun_domain::groups::model::*;
use qun_domain::model::*;
use qun_domain::store::GroupStore;
use qun_domain::{ConversationId, Error, GroupId, Seq, Store, UserId, DEFAULT_CATEGORY};
use qun_store_postgres::{PostgresOptions, PostgresStore};
use tokio_postgres::NoTls;

/// The server URL, or `None` (and a note) when these tests are not to run.
fn server() -> Option<String> {
    match std::env::var("QUN_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!("skipped: set QUN_TEST_POSTGRES to a PostgreSQL URL to run this test");
            None
        }
    }
}

/// Skips the test unless a server is configured; yields a fresh database.
macro_rules! fresh_database {
    () => {
        match server() {
            Some(url) => TestDb::create(&url).await,
            None => return,
        }
    };
}

/// A database of one test, dropped at the end (also when the test fails).
struct TestDb {
    admin_url: String,
    name: String,
    url: String,
}

impl TestDb {
    async fn create(admin_url: &str) -> TestDb {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "qun_test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let admin = admin(admin_url).await;
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
            .unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        TestDb {
            admin_url: admin_url.to_owned(),
            url: with_database(admin_url, &name),
            name,
        }
    }

    /// Runs one statement in the test's database.
    async fn sql(&self, statement: &str) -> Vec<tokio_postgres::Row> {
        admin(&self.url).await.query(statement, &[]).await.unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let statement = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // Drop may run inside the test's runtime, which must not block: do
        // it on a thread of its own with a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                admin(&admin_url)
                    .await
                    .batch_execute(&statement)
                    .await
                    .unwrap()
            });
        })
        .join();
        if dropped.is_err() {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

/// A plain connection, outside any store.
async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// `url` with its database replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    format!("{base}/{name}{query}")
}

fn options() -> PostgresOptions {
    PostgresOptions {
        pool_size: 8,
        writers: 2,
        ..PostgresOptions::default()
    }
}

async fn open(db: &TestDb) -> PostgresStore {
    PostgresStore::connect(&db.url, options())
        .await
        .expect("connect the store")
}

async fn new_user(store: &dyn Store, nickname: &str) -> UserId {
    store
        .create_user(NewUser {
            number: None,
            nickname: nickname.into(),
            password_hash: "$argon2id$test".into(),
            created_at: 1,
            first_number: UserId(10001),
        })
        .await
        .unwrap()
}

async fn befriend(store: &dyn Store, a: UserId, b: UserId) -> ConversationId {
    let request = store.create_friend_request(a, b, "hi", 1).await.unwrap();
    store
        .accept_friend_request(request.id, None, DEFAULT_CATEGORY, 2)
        .await
        .unwrap()
}

fn message(conversation: ConversationId, sender: UserId, client_msg_id: &str) -> Append {
    Append {
        requires_friend: None,
        quota: None,
        conversation,
        sender,
        client_msg_id: client_msg_id.into(),
        time: 1_700_000_000_000,
        body: AppendBody::Message(vec![Segment::Text {
            text: client_msg_id.into(),
        }]),
    }
}

fn new_group(owner: UserId) -> NewGroup {
    NewGroup {
        owner,
        name: "g".into(),
        intro: String::new(),
        category: String::new(),
        tags: Vec::new(),
        listed: false,
        join_mode: JoinMode::Open,
        tier: 0,
        created_at: 1,
        first_number: GroupId(100_001),
        max_owned: 10,
    }
}

async fn join(store: &dyn Store, group: GroupId, user: UserId) -> GroupChanged {
    let add = GroupChange::AddMember {
        user,
        inviter: None,
        approver: None,
        cap: 100,
        request: None,
        link: None,
    };
    let notice = Notice::Joined {
        user,
        inviter: None,
        approver: None,
    };
    store
        .change_group(group, user, add, notice, 2)
        .await
        .unwrap()
}

async fn last_seq(store: &dyn Store, user: UserId, conversation: ConversationId) -> Seq {
    store
        .conversation_state(user, conversation)
        .await
        .unwrap()
        .unwrap()
        .last_seq
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn passes_the_conformance_suite() {
    let db = fresh_database!();
    let store: Arc<dyn Store> = Arc::new(open(&db).await);
    qun_domain::conformance::run_all(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_starting_at_once_migrate_exactly_once() {
    let db = fresh_database!();
    let url = Arc::new(db.url.clone());
    let mut nodes = Vec::new();
    for _ in 0..4 {
        let url = Arc::clone(&url);
        nodes.push(tokio::spawn(async move {
            PostgresStore::connect(&url, options()).await
        }));
    }
    let mut stores = Vec::new();
    for node in nodes {
        stores.push(node.await.unwrap().expect("every node starts"));
    }
    let versions = db
        .sql("SELECT version FROM schema_version ORDER BY version")
        .await;
    assert_eq!(
        versions
            .iter()
            .map(|r| r.get::<_, i64>(0))
            .collect::<Vec<_>>(),
        vec![1],
        "each migration is recorded once"
    );
    // And the schema works from every node.
    let a = new_user(&stores[0], "a").await;
    let b = new_user(&stores[3], "b").await;
    assert_eq!(b.0, a.0 + 1);
    for store in stores {
        store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_keeps_data_and_applies_nothing_twice() {
    let db = fresh_database!();
    let (a, b, conv, first) = {
        let store = open(&db).await;
        let a = new_user(&store, "a").await;
        let b = new_user(&store, "b").await;
        let conv = befriend(&store, a, b).await;
        let first = store.append(message(conv, a, "m1")).await.unwrap();
        store.append(message(conv, b, "m2")).await.unwrap();
        store.close().await;
        (a, b, conv, first)
    };
    let store = open(&db).await;
    let next = store.append(message(conv, b, "m3")).await.unwrap();
    assert_eq!(next.seq, Seq(3), "the sequence continues");
    let retry = store.append(message(conv, a, "m1")).await.unwrap();
    assert_eq!(
        retry,
        Appended {
            duplicate: true,
            ..first
        },
        "an old retry returns the original ack"
    );
    assert_eq!(
        new_user(&store, "c").await.0,
        b.0 + 1,
        "the counter survives"
    );
    let versions = db.sql("SELECT COUNT(*) FROM schema_version").await;
    assert_eq!(versions[0].get::<_, i64>(0), 1);
    store.close().await;
}

#[tokio::test]
async fn a_database_from_a_newer_qun_is_refused() {
    let db = fresh_database!();
    open(&db).await.close().await;
    db.sql("INSERT INTO schema_version (version) VALUES (99)")
        .await;
    assert!(matches!(
        PostgresStore::connect(&db.url, options()).await,
        Err(Error::Internal(_))
    ));
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable_and_a_bad_url_invalid() {
    // Port 1 on loopback: nothing listens there.
    let opts = PostgresOptions {
        connect_timeout: Duration::from_secs(2),
        ..options()
    };
    let unreachable = PostgresStore::connect("postgres://qun@127.0.0.1:1/qun", opts).await;
    assert!(
        matches!(unreachable, Err(Error::Unavailable(_))),
        "{unreachable:?}"
    );
    let bad = PostgresStore::connect("postgres://qun@127.0.0.1:notaport/qun", opts).await;
    assert!(matches!(bad, Err(Error::Invalid { .. })), "{bad:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_appending_to_one_conversation_get_gap_free_seqs() {
    const EACH: u64 = 60;
    const TASKS_PER_NODE: u64 = 4;
    let db = fresh_database!();
    let nodes = [Arc::new(open(&db).await), Arc::new(open(&db).await)];
    let a = new_user(nodes[0].as_ref(), "a").await;
    let b = new_user(nodes[1].as_ref(), "b").await;
    let conv = befriend(nodes[0].as_ref(), a, b).await;

    let mut tasks = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        for t in 0..TASKS_PER_NODE {
            let node = Arc::clone(node);
            let sender = if t % 2 == 0 { a } else { b };
            tasks.push(tokio::spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..EACH {
                    let x = node
                        .append(message(conv, sender, &format!("n{n}-t{t}-{i}")))
                        .await
                        .expect("append through either node");
                    assert!(!x.duplicate);
                    seqs.push(x.seq.0);
                }
                seqs
            }));
        }
    }
    let mut all = Vec::new();
    for task in tasks {
        let seqs = task.await.unwrap();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "one task's appends are ordered"
        );
        all.extend(seqs);
    }
    all.sort_unstable();
    let total = 2 * TASKS_PER_NODE * EACH;
    assert_eq!(all, (1..=total).collect::<Vec<_>>(), "gap-free and unique");
    let stored = nodes[1]
        .events(conv, EventRange::After(Seq(0), 10_000))
        .await
        .unwrap();
    assert_eq!(
        stored.iter().map(|e| e.seq.0).collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>()
    );
    let ids: BTreeSet<_> = stored.iter().map(|e| e.message_id).collect();
    assert_eq!(ids.len(), stored.len(), "message ids are unique");
    assert_eq!(last_seq(nodes[0].as_ref(), a, conv).await, Seq(total));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_sent_through_two_nodes_at_once_is_stored_once() {
    let db = fresh_database!();
    let nodes = [Arc::new(open(&db).await), Arc::new(open(&db).await)];
    let a = new_user(nodes[0].as_ref(), "a").await;
    let b = new_user(nodes[0].as_ref(), "b").await;
    let conv = befriend(nodes[0].as_ref(), a, b).await;
    // Other traffic in the same conversation, so retries meet busy batches.
    let busy = {
        let node = Arc::clone(&nodes[1]);
        tokio::spawn(async move {
            for i in 0..100 {
                node.append(message(conv, b, &format!("busy-{i}")))
                    .await
                    .unwrap();
            }
        })
    };
    for round in 0..20 {
        let id = format!("retried-{round}");
        let mut tasks = Vec::new();
        for copy in 0..6 {
            let node = Arc::clone(&nodes[copy % 2]);
            let append = message(conv, a, &id);
            tasks.push(tokio::spawn(async move { node.append(append).await }));
        }
        let mut acks = Vec::new();
        for task in tasks {
            acks.push(task.await.unwrap().expect("every copy is answered"));
        }
        assert_eq!(
            acks.iter().filter(|x| !x.duplicate).count(),
            1,
            "round {round}: exactly one copy is the original: {acks:?}"
        );
        let original = acks.iter().find(|x| !x.duplicate).copied().unwrap();
        for ack in &acks {
            assert_eq!(
                Appended {
                    duplicate: false,
                    ..*ack
                },
                original,
                "round {round}: every copy gets the same ack"
            );
        }
        let stored = db
            .sql(&format!(
                "SELECT COUNT(*) FROM events WHERE client_msg_id = '{id}'"
            ))
            .await;
        assert_eq!(stored[0].get::<_, i64>(0), 1, "round {round}: stored once");
    }
    busy.await.unwrap();
    let events = nodes[0]
        .events(conv, EventRange::After(Seq(0), 1000))
        .await
        .unwrap();
    assert_eq!(
        events.iter().map(|e| e.seq.0).collect::<Vec<_>>(),
        (1..=120).collect::<Vec<_>>(),
        "retries consumed no seq"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_share_commits() {
    let db = fresh_database!();
    let store = Arc::new(open(&db).await);
    let a = new_user(store.as_ref(), "a").await;
    let b = new_user(store.as_ref(), "b").await;
    let conv = befriend(store.as_ref(), a, b).await;
    let before = store.stats();
    let mut tasks = Vec::new();
    for i in 0..500 {
        let store = Arc::clone(&store);
        let sender = if i % 2 == 0 { a } else { b };
        tasks.push(tokio::spawn(async move {
            store
                .append(message(conv, sender, &format!("g{i}")))
                .await
                .unwrap()
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let after = store.stats();
    let commands = after.commands - before.commands;
    let commits = after.commits - before.commits;
    assert_eq!(commands, 500);
    assert!(commits < commands, "500 appends took {commits} commits");
    assert_eq!(
        after.batched - before.batched,
        500,
        "plain messages without races are stored a batch per statement"
    );
    assert_eq!(last_seq(store.as_ref(), a, conv).await, Seq(500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retries_inside_one_batch_and_across_conversations_are_stored_once() {
    let db = fresh_database!();
    let store = Arc::new(open(&db).await);
    let a = new_user(store.as_ref(), "a").await;
    let b = new_user(store.as_ref(), "b").await;
    let c = new_user(store.as_ref(), "c").await;
    let ab = befriend(store.as_ref(), a, b).await;
    let ac = befriend(store.as_ref(), a, c).await;
    let earlier = store.append(message(ab, a, "m0")).await.unwrap();
    let before = store.stats();
    let mut tasks = Vec::new();
    // Every id twice (often in one batch), alternating conversations, plus a
    // retry of a message committed before, all queued at once.
    for i in 0..300 {
        let store = Arc::clone(&store);
        let (conv, id) = match i {
            0 => (ab, "m0".to_owned()),
            _ => (
                if (i / 2) % 2 == 0 { ab } else { ac },
                format!("m{}", i / 2 + 1),
            ),
        };
        tasks.push(tokio::spawn(async move {
            (
                id.clone(),
                store.append(message(conv, a, &id)).await.unwrap(),
            )
        }));
    }
    let mut acks: std::collections::HashMap<String, Vec<Appended>> = Default::default();
    for task in tasks {
        let (id, ack) = task.await.unwrap();
        acks.entry(id).or_default().push(ack);
    }
    assert_eq!(
        acks["m0"],
        vec![Appended {
            duplicate: true,
            ..earlier
        }]
    );
    for (id, copies) in &acks {
        let originals = copies.iter().filter(|x| !x.duplicate).count();
        let expected = usize::from(id != "m0");
        assert_eq!(originals, expected, "{id}: {copies:?}");
        let seqs: std::collections::BTreeSet<_> = copies.iter().map(|x| x.seq).collect();
        assert_eq!(
            seqs.len(),
            1,
            "{id}: every copy has the same seq: {copies:?}"
        );
    }
    for conv in [ab, ac] {
        let seqs: Vec<u64> = store
            .events(conv, EventRange::After(Seq(0), 1000))
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq.0)
            .collect();
        let expected = if conv == ab { 76 } else { 75 };
        assert_eq!(
            seqs,
            (1..=expected).collect::<Vec<_>>(),
            "gap-free, nothing twice"
        );
    }
    assert!(
        store.stats().batched > before.batched,
        "the batched path took part"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_append_rolls_back_only_itself() {
    let db = fresh_database!();
    let store = Arc::new(open(&db).await);
    let a = new_user(store.as_ref(), "a").await;
    let b = new_user(store.as_ref(), "b").await;
    let conv = befriend(store.as_ref(), a, b).await;
    let mut tasks = Vec::new();
    for i in 0..200u64 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let append = match i % 4 {
                // Recalls of seqs that do not exist fail inside the batch.
                0 => Append {
                    requires_friend: None,
                    body: AppendBody::Recall {
                        target: Seq(1_000_000 + i),
                    },
                    ..message(conv, a, &format!("bad{i}"))
                },
                // A NUL byte is refused by PostgreSQL itself: an SQL error
                // inside the batch, not only a domain one.
                1 => message(conv, a, &format!("nul\0{i}")),
                _ => message(conv, b, &format!("good{i}")),
            };
            (i, store.append(append).await)
        }));
    }
    let mut good = 0;
    for task in tasks {
        match task.await.unwrap() {
            (i, Err(Error::NotFound(_))) if i % 4 == 0 => {}
            (i, Err(Error::Invalid { .. })) if i % 4 == 1 => {}
            (i, Ok(x)) if i % 4 > 1 => {
                good += 1;
                assert!(!x.duplicate);
            }
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!(last_seq(store.as_ref(), a, conv).await, Seq(good));
    let events = store
        .events(conv, EventRange::After(Seq(0), 1000))
        .await
        .unwrap();
    assert_eq!(events.len() as u64, good);
    assert!(events.iter().all(|e| e.client_msg_id.starts_with("good")));
}

#[tokio::test]
async fn a_notice_never_collides_with_a_client_message_id() {
    let db = fresh_database!();
    let store = open(&db).await;
    let owner = new_user(&store, "owner").await;
    let member = new_user(&store, "member").await;
    let group = store.create_group(new_group(owner)).await.unwrap();
    let sneaky = format!("notice:{}:3", group.id);
    let sent = store
        .append(message(group.conversation, member, &sneaky))
        .await
        .unwrap();
    assert_eq!(sent.seq, Seq(2));
    let joined = join(&store, group.id, member).await;
    assert_eq!(
        joined.appended.seq,
        Seq(3),
        "the notice is stored beside the message"
    );
    let retry = store
        .append(message(group.conversation, member, &sneaky))
        .await
        .unwrap();
    assert_eq!((retry.seq, retry.duplicate), (Seq(2), true));
    store.close().await;
}

#[tokio::test]
async fn ids_beyond_bigint_name_nothing() {
    let db = fresh_database!();
    let store = open(&db).await;
    let a = new_user(&store, "a").await;
    let b = new_user(&store, "b").await;
    let conv = befriend(&store, a, b).await;
    let huge = u64::MAX;
    assert_eq!(store.user(UserId(huge)).await.unwrap(), None);
    assert!(store.users(UserId(huge), 10).await.unwrap().is_empty());
    assert!(matches!(
        store.set_disabled(UserId(huge), true).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        store.append(message(ConversationId(huge), a, "far")).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        store
            .append(Append {
                requires_friend: None,
                body: AppendBody::Recall { target: Seq(huge) },
                ..message(conv, a, "far-recall")
            })
            .await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(store.event(conv, Seq(huge)).await.unwrap(), None);
    assert_eq!(store.group(GroupId(huge)).await.unwrap(), None);
    assert!(matches!(
        store
            .change_group(
                GroupId(huge),
                a,
                GroupChange::MuteAll(true),
                Notice::GroupMuted { muted: true, by: a },
                1
            )
            .await,
        Err(Error::NotFound(_))
    ));
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_notices_and_messages_from_two_nodes_share_one_gap_free_stream() {
    const MESSAGES: u64 = 80;
    const CHANGES: u64 = 20;
    let db = fresh_database!();
    let nodes = [Arc::new(open(&db).await), Arc::new(open(&db).await)];
    let owner = new_user(nodes[0].as_ref(), "owner").await;
    let member = new_user(nodes[0].as_ref(), "member").await;
    let group = nodes[0].create_group(new_group(owner)).await.unwrap();
    join(nodes[0].as_ref(), group.id, member).await; // seq 2
    let conv = group.conversation;

    let sender = {
        let node = Arc::clone(&nodes[0]);
        tokio::spawn(async move {
            for i in 0..MESSAGES {
                node.append(message(conv, member, &format!("m{i}")))
                    .await
                    .unwrap();
            }
        })
    };
    let changer = {
        let node = Arc::clone(&nodes[1]);
        tokio::spawn(async move {
            for i in 0..CHANGES {
                let card = Some(format!("card {i}"));
                node.change_group(
                    group.id,
                    owner,
                    GroupChange::SetCard {
                        user: member,
                        card: card.clone(),
                    },
                    Notice::CardSet {
                        user: member,
                        card,
                        by: owner,
                    },
                    3,
                )
                .await
                .unwrap();
            }
        })
    };
    sender.await.unwrap();
    changer.await.unwrap();
    let total = 2 + MESSAGES + CHANGES;
    let events = nodes[1]
        .events(conv, EventRange::After(Seq(0), 1000))
        .await
        .unwrap();
    assert_eq!(
        events.iter().map(|e| e.seq.0).collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>(),
        "notices and messages interleave without gaps"
    );
    let entry = nodes[0].member(group.id, member).await.unwrap().unwrap();
    assert_eq!(entry.messages, MESSAGES, "every message counted once");
    assert_eq!(entry.card.as_deref(), Some("card 19"));
    let after = nodes[0].group(group.id).await.unwrap().unwrap();
    assert_eq!(after.member_version, 2 + CHANGES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_quota_holds_across_nodes() {
    const LIMIT: u32 = 7;
    let db = fresh_database!();
    let nodes = [Arc::new(open(&db).await), Arc::new(open(&db).await)];
    let owner = new_user(nodes[0].as_ref(), "owner").await;
    let group = nodes[0].create_group(new_group(owner)).await.unwrap();
    let key = format!("atall:g:{}", group.id);
    let mut tasks = Vec::new();
    for i in 0..20 {
        let node = Arc::clone(&nodes[i % 2]);
        let append = Append {
            requires_friend: None,
            body: AppendBody::Message(vec![Segment::MentionAll]),
            quota: Some(Quota {
                counters: vec![qun_domain::store::DailyCounter {
                    key: key.clone(),
                    limit: LIMIT,
                    name: "at_all_per_day",
                }],
                day: 20_000,
            }),
            ..message(group.conversation, owner, &format!("all-{i}"))
        };
        tasks.push(tokio::spawn(async move { node.append(append).await }));
    }
    let mut stored = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(x) => {
                assert!(!x.duplicate);
                stored += 1;
            }
            Err(Error::LimitReached {
                limit: "at_all_per_day",
                max,
            }) => {
                assert_eq!(max, u64::from(LIMIT))
            }
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }
    assert_eq!(stored, LIMIT, "exactly the quota is spent");
    assert_eq!(nodes[1].daily_count(&key, 20_000).await.unwrap(), LIMIT);
    assert_eq!(
        last_seq(nodes[0].as_ref(), owner, group.conversation).await,
        Seq(1 + u64::from(LIMIT)),
        "refused appends stored nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_connections_are_unavailable_and_the_store_recovers() {
    let db = fresh_database!();
    let store = open(&db).await;
    let a = new_user(&store, "a").await;
    let b = new_user(&store, "b").await;
    let conv = befriend(&store, a, b).await;
    store.append(message(conv, a, "before")).await.unwrap();
    // What a server restart or a failover does to every connection of the store.
    let killed = db
        .sql(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = '{}' AND application_name = 'qun'",
            db.name
        ))
        .await;
    assert!(!killed.is_empty(), "the store had connections");
    for attempt in 0.. {
        match store.append(message(conv, a, "after")).await {
            Ok(x) => {
                assert_eq!(x.seq, Seq(2), "a failed attempt stored nothing");
                break;
            }
            Err(Error::Unavailable(_)) if attempt < 10 => {}
            Err(e) => panic!("attempt {attempt}: {e:?}"),
        }
    }
    for attempt in 0.. {
        match store.user(a).await {
            Ok(user) => {
                assert!(user.is_some());
                break;
            }
            Err(Error::Unavailable(_)) if attempt < 10 => {}
            Err(e) => panic!("attempt {attempt}: {e:?}"),
        }
    }
    store.close().await;
}
