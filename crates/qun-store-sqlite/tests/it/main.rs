//! Integration tests of the SQLite store: the shared conformance suite plus
//! what only an embedded file store has (reopening, migrations, group commit).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use qun_domain::groups::model::*;
use qun_domain::model::*;
use qun_domain::store::GroupStore;
use qun_domain::{ConversationId, Error, GroupId, Seq, Store, UserId, DEFAULT_CATEGORY};
use qun_store_sqlite::{SqliteOptions, SqliteStore};

/// A folder under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let unique = format!(
            "qun-store-sqlite-{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(unique);
        let _ = std::fs::remove_dir_all(&path);
        TempDir(path)
    }

    fn db(&self) -> PathBuf {
        self.0.join("data").join("qun.db")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn open(path: &Path) -> SqliteStore {
    SqliteStore::open(path, SqliteOptions::default()).expect("open the store")
}

fn user_version(path: &Path) -> i64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn passes_the_conformance_suite() {
    let dir = TempDir::new("conformance");
    let store: Arc<dyn Store> = Arc::new(open(&dir.db()));
    qun_domain::conformance::run_all(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_and_sequence_counters_survive_reopening() {
    let dir = TempDir::new("reopen");
    let (a, b, conv, first) = {
        let store = open(&dir.db());
        let a = new_user(&store, "a").await;
        let b = new_user(&store, "b").await;
        let conv = befriend(&store, a, b).await;
        let first = store.append(message(conv, a, "m1")).await.unwrap();
        store.append(message(conv, b, "m2")).await.unwrap();
        store.append(message(conv, a, "m3")).await.unwrap();
        store.add_like(a, b, 1, 10).await.unwrap();
        store.close().await;
        (a, b, conv, first)
    };

    let store = open(&dir.db());
    assert_eq!(
        store.user(b).await.unwrap().unwrap().likes,
        1,
        "users survive"
    );
    assert_eq!(
        store.friend(a, b).await.unwrap().unwrap().conversation,
        conv,
        "friends survive"
    );
    let next = store.append(message(conv, b, "m4")).await.unwrap();
    assert_eq!(next.seq, Seq(4), "the sequence continues after reopening");
    let retry = store.append(message(conv, a, "m1")).await.unwrap();
    assert_eq!(
        retry,
        Appended {
            duplicate: true,
            ..first
        },
        "an old retry returns the original ack"
    );
    let c = new_user(&store, "c").await;
    assert_eq!(c.0, b.0 + 1, "the number counter survives");
    assert_eq!(
        store
            .conversation_state(a, conv)
            .await
            .unwrap()
            .unwrap()
            .unread,
        2
    );
    store.close().await;
}

#[tokio::test]
async fn dropping_the_store_finishes_queued_writes() {
    let dir = TempDir::new("drop");
    let (a, conv) = {
        let store = Arc::new(open(&dir.db()));
        let a = new_user(store.as_ref(), "a").await;
        let b = new_user(store.as_ref(), "b").await;
        let conv = befriend(store.as_ref(), a, b).await;
        let mut tasks = Vec::new();
        for i in 0..50 {
            let store = Arc::clone(&store);
            tasks.push(tokio::spawn(async move {
                store
                    .append(message(conv, a, &format!("q{i}")))
                    .await
                    .unwrap()
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        drop(store);
        (a, conv)
    };
    let store = open(&dir.db());
    let state = store.conversation_state(a, conv).await.unwrap().unwrap();
    assert_eq!(state.last_seq, Seq(50));
}

#[tokio::test]
async fn an_existing_database_is_opened_at_its_version_and_keeps_its_data() {
    let dir = TempDir::new("migrate");
    let a = {
        let store = open(&dir.db());
        let a = new_user(&store, "kept").await;
        store.close().await;
        a
    };
    assert_eq!(
        user_version(&dir.db()),
        1,
        "migration 1 is recorded in user_version"
    );

    let store = open(&dir.db());
    assert_eq!(store.user(a).await.unwrap().unwrap().nickname, "kept");
    store.close().await;
    assert_eq!(
        user_version(&dir.db()),
        1,
        "reopening applies nothing twice"
    );
}

#[tokio::test]
async fn a_database_from_a_newer_qun_is_refused() {
    let dir = TempDir::new("newer");
    open(&dir.db()).close().await;
    rusqlite::Connection::open(dir.db())
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    assert!(SqliteStore::open(&dir.db(), SqliteOptions::default()).is_err());
}

#[tokio::test]
async fn the_database_is_in_wal_mode() {
    let dir = TempDir::new("pragmas");
    let store = open(&dir.db());
    let conn = rusqlite::Connection::open(dir.db()).unwrap();
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_share_commits() {
    let dir = TempDir::new("group-commit");
    let store = Arc::new(open(&dir.db()));
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
        store
            .conversation_state(a, conv)
            .await
            .unwrap()
            .unwrap()
            .last_seq,
        Seq(500)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_command_rolls_back_only_itself() {
    let dir = TempDir::new("savepoints");
    let store = Arc::new(open(&dir.db()));
    let a = new_user(store.as_ref(), "a").await;
    let b = new_user(store.as_ref(), "b").await;
    let conv = befriend(store.as_ref(), a, b).await;

    let mut tasks = Vec::new();
    for i in 0..200u64 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let append = if i % 3 == 0 {
                // Recalls of seqs that do not exist fail inside the batch.
                Append {
                    requires_friend: None,
                    quota: None,
                    body: AppendBody::Recall {
                        target: Seq(1_000_000 + i),
                    },
                    ..message(conv, a, &format!("bad{i}"))
                }
            } else {
                message(conv, b, &format!("good{i}"))
            };
            (i, store.append(append).await)
        }));
    }
    let mut good = 0;
    for task in tasks {
        match task.await.unwrap() {
            (i, Err(Error::NotFound(_))) if i % 3 == 0 => {}
            (i, Ok(x)) if i % 3 != 0 => {
                good += 1;
                assert!(!x.duplicate);
            }
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    let state = store.conversation_state(a, conv).await.unwrap().unwrap();
    assert_eq!(
        state.last_seq,
        Seq(good),
        "every good append and nothing else is stored"
    );
    let events = store
        .events(conv, EventRange::After(Seq(0), 1000))
        .await
        .unwrap();
    assert_eq!(events.len() as u64, good);
    assert!(events.iter().all(|e| e.client_msg_id.starts_with("good")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_and_the_group_number_counter_survive_reopening() {
    let dir = TempDir::new("groups-reopen");
    let (owner, member, group) = {
        let store = open(&dir.db());
        let owner = new_user(&store, "owner").await;
        let member = new_user(&store, "member").await;
        let group = store.create_group(new_group(owner)).await.unwrap();
        join(&store, group.id, member).await;
        store
            .append(message(group.conversation, member, "g1"))
            .await
            .unwrap();
        store.close().await;
        (owner, member, group)
    };

    let store = open(&dir.db());
    let after = store.group(group.id).await.unwrap().unwrap();
    assert_eq!((after.member_count, after.member_version), (2, 2));
    let entry = store.member(group.id, member).await.unwrap().unwrap();
    assert_eq!((entry.join_seq, entry.messages), (Seq(2), 1));
    let bodies: Vec<EventBody> = store
        .events(group.conversation, EventRange::After(Seq(0), 10))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.body)
        .collect();
    assert!(matches!(
        bodies.as_slice(),
        [
            EventBody::Notice(Notice::Created { .. }),
            EventBody::Notice(Notice::Joined { .. }),
            EventBody::Message { .. }
        ]
    ));
    let next = store.create_group(new_group(owner)).await.unwrap();
    assert_eq!(
        next.id.0,
        group.id.0 + 1,
        "the group number counter survives"
    );
    store.close().await;
}

#[tokio::test]
async fn a_notice_never_collides_with_a_client_message_id() {
    let dir = TempDir::new("notice-ids");
    let store = open(&dir.db());
    let owner = new_user(&store, "owner").await;
    let member = new_user(&store, "member").await;
    let group = store.create_group(new_group(owner)).await.unwrap();
    // Whatever a client picks, here the id a generated notice id might take.
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
    assert_eq!(
        (retry.seq, retry.duplicate),
        (Seq(2), true),
        "a retry finds the client's message, never a notice"
    );
    store.close().await;
}
