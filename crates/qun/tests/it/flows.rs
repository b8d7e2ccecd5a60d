//! End-to-end flows of the core against a real `qun serve`: two users with two
//! devices each, friendship, chat both ways, catch-up, recall, read positions,
//! presence, revocation, heartbeats, slow consumers and shutdown.

use std::time::{Duration, Instant};

use qun_client::qun_wire::{
    AcceptFriendRequest, ConversationEvent, ConversationId, Event, FriendRequestStatus,
    PresenceState, Seq, UserId,
};
use qun_client::{ConnectOptions, Connection};

use crate::harness::{befriend, expect_event, text, Server, TempDir, User};
use crate::require_e2e;

/// The conversation event with this seq, from a live event.
fn conv_event(e: &Event, conv: ConversationId, seq: u64) -> Option<ConversationEvent> {
    match e {
        Event::Conversation(c) if c.conversation() == conv && c.seq() == Seq(seq) => {
            Some(c.clone())
        }
        _ => None,
    }
}

fn presence_of(e: &Event, user: UserId) -> Option<PresenceState> {
    match e {
        Event::Presence { user_id, state } if *user_id == user => Some(*state),
        _ => None,
    }
}

/// Waits until the socket is closed and returns its close code and reason.
async fn closed_within(conn: &Connection, limit: Duration) -> (u16, String) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(info) = conn.close_info() {
            return info;
        }
        let _ = conn.next_event_timeout(Duration::from_millis(20)).await;
    }
    panic!("socket still open after {limit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_users_two_devices_chat_catch_up_recall_read_and_presence() {
    require_e2e!();
    let dir = TempDir::new("flows");
    let server = Server::start(dir.path(), &[("QUN_LIMITS__RECALL_WINDOW_SECS", "1")]);
    let alice = User::new(&server, "alice").await;
    let bob = User::new(&server, "bob").await;
    let (alice_pc, _) = alice.device(&server, "pc").await;
    let (alice_phone, _) = alice.device(&server, "phone").await;
    let (bob_pc, _) = bob.device(&server, "pc").await;
    let (bob_phone, bob_phone_token) = bob.device(&server, "phone").await;

    // Friend request: both of bob's devices see it live; acceptance reaches all four.
    let request = alice
        .client
        .send_friend_request(bob.id, "hi, it's alice")
        .await
        .unwrap();
    for dev in [&bob_pc, &bob_phone] {
        let got = expect_event(dev, |e| match e {
            Event::FriendRequest(r) if r.id == request.id => Some(r.clone()),
            _ => None,
        })
        .await;
        assert_eq!(got.message, "hi, it's alice");
        assert_eq!(got.status, FriendRequestStatus::Pending);
    }
    let incoming = bob.client.friend_requests().await.unwrap().incoming;
    assert_eq!(incoming.len(), 1);
    let accept = AcceptFriendRequest {
        remark: Some("Alice (book club)".into()),
        category: None,
    };
    let friend = bob
        .client
        .accept_friend_request(request.id, &accept)
        .await
        .unwrap();
    assert_eq!(friend.user_id, alice.id);
    assert_eq!(friend.remark.as_deref(), Some("Alice (book club)"));
    assert_eq!(
        friend.presence,
        PresenceState::Online,
        "alice has devices online"
    );
    let conv = friend.conversation;
    for dev in [&alice_pc, &alice_phone] {
        let added = expect_event(dev, |e| match e {
            Event::FriendAdded(f) => Some(f.clone()),
            _ => None,
        })
        .await;
        assert_eq!((added.user_id, added.conversation), (bob.id, conv));
    }
    let alice_friends = alice.client.friends().await.unwrap();
    assert_eq!(alice_friends.len(), 1);
    assert_eq!(alice_friends[0].user_id, bob.id);

    // Chat both ways: every device of both users sees every message, including
    // the sender's other device and the sender itself.
    let ack = alice_pc.send(conv, "a-1", text("hello bob")).await.unwrap();
    assert_eq!(ack.seq, Seq(1));
    for dev in [&alice_pc, &alice_phone, &bob_pc, &bob_phone] {
        let ev = expect_event(dev, |e| conv_event(e, conv, 1)).await;
        let ConversationEvent::Message(m) = ev else {
            panic!("{ev:?}")
        };
        assert_eq!((m.sender, m.client_msg_id.as_str()), (alice.id, "a-1"));
        assert_eq!(m.segments, text("hello bob"));
    }
    let ack = bob_phone.send(conv, "b-1", text("hi alice")).await.unwrap();
    assert_eq!(ack.seq, Seq(2));
    for dev in [&alice_pc, &alice_phone, &bob_pc, &bob_phone] {
        expect_event(dev, |e| conv_event(e, conv, 2)).await;
    }

    // One device offline, then catching up with everything it missed.
    bob_phone.close();
    closed_within(&bob_phone, Duration::from_secs(2)).await;
    for n in 0..5 {
        alice_phone
            .send(conv, &format!("a-{}", n + 2), text(&format!("msg {n}")))
            .await
            .unwrap();
    }
    let (bob_phone, _) = Connection::connect(&server.url, &bob_phone_token)
        .await
        .unwrap();
    let missed = bob_phone.catch_up(conv, Seq(2), 2).await.unwrap();
    let seqs: Vec<u64> = missed.iter().map(|e| e.seq().0).collect();
    assert_eq!(
        seqs,
        vec![3, 4, 5, 6, 7],
        "paged catch-up returns exactly what was missed"
    );

    // Recall inside the window: a sequenced event every device receives.
    let recall = alice_pc.recall(conv, Seq(3)).await.unwrap();
    assert_eq!(recall.seq, Seq(8));
    for dev in [&alice_pc, &alice_phone, &bob_pc, &bob_phone] {
        let ev = expect_event(dev, |e| conv_event(e, conv, 8)).await;
        let ConversationEvent::Recall(r) = ev else {
            panic!("{ev:?}")
        };
        assert_eq!((r.target_seq, r.by), (Seq(3), alice.id));
    }
    let page = bob
        .client
        .history(conv, Some(Seq(2)), None, None)
        .await
        .unwrap();
    let ConversationEvent::Message(recalled) = &page.events[0] else {
        panic!()
    };
    assert!(
        recalled.recalled && recalled.segments.is_empty(),
        "{recalled:?}"
    );
    assert!(matches!(
        page.events.last(),
        Some(ConversationEvent::Recall(_))
    ));
    let err = bob_pc.recall(conv, Seq(4)).await.unwrap_err();
    assert_eq!(
        err.code(),
        Some("forbidden"),
        "only the author recalls own messages"
    );
    // Outside the window (configured to 1 s for this test).
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let err = alice_pc.recall(conv, Seq(4)).await.unwrap_err();
    assert_eq!(err.code(), Some("recall_window_passed"));

    // Read positions and unread counts: alice's 1, 4, 5, 6, 7 are unread for bob
    // (3 was recalled, 2 is his own, 8 is a recall event).
    let list = bob.client.conversations().await.unwrap().conversations;
    let state = list.iter().find(|c| c.conversation == conv).unwrap();
    assert_eq!(
        (state.last_seq, state.read_seq, state.unread),
        (Seq(8), Seq(0), 5)
    );
    let read = bob_pc.read(conv, Seq(5)).await.unwrap();
    assert_eq!((read.read_seq, read.unread), (Seq(5), 2));
    let moved = expect_event(&bob_phone, |e| match e {
        Event::Read {
            conversation,
            read_seq,
        } if *conversation == conv => Some(*read_seq),
        _ => None,
    })
    .await;
    assert_eq!(moved, Seq(5), "the other device learns the read position");
    let back = bob_pc.read(conv, Seq(1)).await.unwrap();
    assert_eq!(back.read_seq, Seq(5), "read positions never move backwards");
    let alice_state = alice.client.conversations().await.unwrap().conversations;
    assert_eq!(
        alice_state[0].unread, 1,
        "bob's one message is unread for alice"
    );

    // Presence: the most available device shows; invisible shows as offline.
    alice_phone.set_presence(PresenceState::Busy).await.unwrap();
    alice_pc.set_presence(PresenceState::Away).await.unwrap();
    let seen = expect_event(&bob_pc, |e| {
        presence_of(e, alice.id).filter(|s| *s != PresenceState::Online)
    })
    .await;
    assert_eq!(seen, PresenceState::Away);
    alice_pc
        .set_presence(PresenceState::Invisible)
        .await
        .unwrap();
    assert_eq!(
        expect_event(&bob_pc, |e| presence_of(e, alice.id)).await,
        PresenceState::Busy
    );
    alice_phone.close();
    assert_eq!(
        expect_event(&bob_pc, |e| presence_of(e, alice.id)).await,
        PresenceState::Offline
    );
    let bobs_view = bob.client.friends().await.unwrap();
    assert_eq!(
        bobs_view[0].presence,
        PresenceState::Offline,
        "invisible is offline to others"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revoked_sessions_lose_their_open_socket_within_a_second() {
    require_e2e!();
    let dir = TempDir::new("revoke");
    let server = Server::start(dir.path(), &[("QUN_GATEWAY__SESSION_RECHECK_SECS", "1")]);
    let alice = User::new(&server, "alice").await;
    let (keep, _) = alice.device(&server, "keep").await;
    let (revoked, _) = alice.device(&server, "revoked").await;

    // Revoking one device from another.
    let sessions = alice.client.sessions().await.unwrap();
    assert_eq!(sessions.len(), 3);
    let target = sessions
        .iter()
        .find(|s| s.device_name == "revoked")
        .unwrap();
    let start = Instant::now();
    alice
        .client
        .revoke_session(&target.session_id)
        .await
        .unwrap();
    let (code, reason) = closed_within(&revoked, Duration::from_secs(1)).await;
    assert_eq!((code, reason.as_str()), (4003, "session_revoked"));
    assert!(start.elapsed() < Duration::from_secs(1));
    keep.ping().await.unwrap();

    // A password change closes every other device.
    let (other, _) = alice.device(&server, "other").await;
    let changed = alice
        .client
        .change_password(crate::harness::PASSWORD, "a new long password")
        .await
        .unwrap();
    assert_eq!(changed.revoked, 2, "keep and other");
    let (code, _) = closed_within(&other, Duration::from_secs(1)).await;
    assert_eq!(code, 4003);
    alice
        .client
        .sessions()
        .await
        .expect("the changing session stays valid");

    // An administrator disabling the account from another process: the open
    // socket notices at its next session check.
    let bob = User::new(&server, "bob").await;
    let (bob_dev, _) = bob.device(&server, "dev").await;
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_qun"))
        .args(["admin", "--data"])
        .arg(dir.path())
        .args(["disable", &bob.id.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let (code, reason) = closed_within(&bob_dev, Duration::from_secs(3)).await;
    assert_eq!((code, reason.as_str()), (4004, "account_disabled"));
    let err = bob.client.friends().await.unwrap_err();
    assert!(
        matches!(
            err.code(),
            Some("session_revoked") | Some("account_disabled")
        ),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn silent_socket_times_out_and_goes_offline_for_friends() {
    require_e2e!();
    let dir = TempDir::new("heartbeat");
    let env = [
        ("QUN_GATEWAY__HEARTBEAT_TIMEOUT_SECS", "2"),
        ("QUN_GATEWAY__HEARTBEAT_SECS", "1"),
    ];
    let server = Server::start(dir.path(), &env);
    let alice = User::new(&server, "alice").await;
    let bob = User::new(&server, "bob").await;
    befriend(&alice, &bob).await;
    let (watcher, _) = bob.device(&server, "watcher").await;
    let login = server
        .client()
        .login(
            alice.id,
            crate::harness::PASSWORD,
            qun_client::qun_wire::DeviceKind::Web,
            "silent",
        )
        .await
        .unwrap();
    let options = ConnectOptions {
        heartbeat: false,
        ..ConnectOptions::default()
    };
    let (silent, _) = Connection::connect_with(&server.url, &login.token, options)
        .await
        .unwrap();
    assert_eq!(
        expect_event(&watcher, |e| presence_of(e, alice.id)).await,
        PresenceState::Online
    );
    let (code, reason) = closed_within(&silent, Duration::from_secs(4)).await;
    assert_eq!((code, reason.as_str()), (4009, "heartbeat_timeout"));
    assert_eq!(
        expect_event(&watcher, |e| presence_of(e, alice.id)).await,
        PresenceState::Offline
    );
    watcher
        .ping()
        .await
        .expect("a heartbeating socket stays open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_stops_reading_is_cut_off_and_others_are_unaffected() {
    require_e2e!();
    use futures_util::SinkExt;
    let dir = TempDir::new("slow");
    let server = Server::start(dir.path(), &[("QUN_GATEWAY__OUTBOUND_QUEUE_FRAMES", "8")]);
    let alice = User::new(&server, "alice").await;
    let bob = User::new(&server, "bob").await;
    let conv = befriend(&alice, &bob).await;
    let (bob_ok, _) = bob.device(&server, "reader").await;

    // A raw socket of bob's that authenticates and then never reads.
    let url = format!("{}/api/v1/ws", server.url.replacen("http", "ws", 1));
    let (mut stalled, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let auth = format!(
        r#"{{"v":1,"id":"a","type":"auth","token":"{}"}}"#,
        bob.token
    );
    stalled
        .send(tokio_tungstenite::tungstenite::Message::text(auth))
        .await
        .unwrap();

    let (alice_dev, _) = alice.device(&server, "sender").await;
    let big = "x".repeat(15_000);
    let mut cut = false;
    for n in 1..=2_000u64 {
        alice_dev
            .send(conv, &format!("s-{n}"), text(&big))
            .await
            .unwrap();
        if n % 50 == 0 {
            let metrics = server
                .client()
                .raw("GET", "/metrics", None)
                .await
                .unwrap()
                .1;
            if metrics.lines().any(|l| {
                l.starts_with("qun_slow_consumer_disconnects_total ") && !l.ends_with(" 0")
            }) {
                cut = true;
                break;
            }
        }
    }
    assert!(cut, "the stalled socket was never cut off");
    // The reading device got everything, in order.
    let mut next = 1;
    while let Ok(Some(e)) = bob_ok.next_event_timeout(Duration::from_millis(500)).await {
        if let Event::Conversation(c) = e {
            assert_eq!(c.seq(), Seq(next));
            next += 1;
        }
    }
    assert!(next > 50, "reader received {} messages", next - 1);
    drop(stalled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_history_page_larger_than_the_socket_buffers_arrives_whole() {
    require_e2e!();
    let dir = TempDir::new("big-page");
    let server = Server::start(dir.path(), &[]);
    let alice = User::new(&server, "alice").await;
    let bob = User::new(&server, "bob").await;
    let conv = befriend(&alice, &bob).await;
    let (dev, _) = alice.device(&server, "phone").await;
    // 60 messages of 15,000 bytes: one page of them is about 900 KB, past
    // the outbound byte budget and tungstenite's write buffer alike.
    let big = "y".repeat(15_000);
    for n in 1..=60u64 {
        dev.send(conv, &format!("big-{n}"), text(&big))
            .await
            .unwrap();
    }
    let page = dev
        .history(conv, Some(Seq(0)), None, Some(100))
        .await
        .expect("the page arrives on an open socket");
    assert_eq!(page.events.len(), 60);
    // And the socket still works afterwards.
    dev.send(conv, "after", text("small")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_closes_sockets_with_a_reason_and_exits_cleanly() {
    require_e2e!();
    let dir = TempDir::new("shutdown");
    let mut server = Server::start(dir.path(), &[]);
    let alice = User::new(&server, "alice").await;
    let (dev, _) = alice.device(&server, "dev").await;
    assert!(
        server.terminate(),
        "qun exits with status 0 on SIGTERM; log:\n{}",
        server.log()
    );
    let (code, reason) = closed_within(&dev, Duration::from_secs(2)).await;
    assert_eq!((code, reason.as_str()), (1001, "server_shutdown"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn health_metrics_and_generated_openapi_are_served() {
    require_e2e!();
    let dir = TempDir::new("ops");
    let server = Server::start(dir.path(), &[]);
    let anon = server.client();
    assert_eq!(anon.health().await.unwrap().status, "ok");
    assert_eq!(anon.ready().await.unwrap().status, "ok");
    let alice = User::new(&server, "alice").await;
    let bob = User::new(&server, "bob").await;
    let conv = befriend(&alice, &bob).await;
    let (_dev, _) = bob.device(&server, "dev").await;
    alice.client.send(conv, "m", text("hi")).await.unwrap();
    let (status, metrics) = anon.raw("GET", "/metrics", None).await.unwrap();
    assert_eq!(status, 200);
    for name in [
        "qun_messages_total 1",
        "qun_connections 1",
        "qun_store_commit_seconds",
    ] {
        assert!(metrics.contains(name), "{name} missing from:\n{metrics}");
    }
    let (status, doc) = anon.raw("GET", "/api/v1/openapi.json", None).await.unwrap();
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_str(&doc).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/api/v1/accounts",
        "/api/v1/sessions",
        "/api/v1/friend-requests/{id}/accept",
        "/api/v1/conversations/{id}/messages",
        "/api/v1/conversations/{id}/events",
        "/api/v1/blacklist/{user_id}",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} missing from the OpenAPI document"
        );
    }
    assert_eq!(
        paths.len(),
        57,
        "every REST route is documented: {:?}",
        paths.keys().collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn remarks_categories_likes_and_the_blacklist_over_rest() {
    require_e2e!();
    use qun_client::qun_wire::{CategoryId, FriendPatch, ProfilePatch};
    let dir = TempDir::new("friends");
    let server = Server::start(dir.path(), &[]);
    let alice = User::new(&server, "alice").await;
    let bob = User::new(&server, "bob").await;
    let carol = User::new(&server, "carol").await;
    let conv = befriend(&alice, &bob).await;

    // Categories: create, move a friend, rename, delete (the friend returns to default).
    let club = alice.client.create_category("book club").await.unwrap();
    let moved = alice
        .client
        .update_friend(
            bob.id,
            &FriendPatch {
                remark: Some("Bobby".into()),
                category: Some(club.id),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (moved.remark.as_deref(), moved.category),
        (Some("Bobby"), club.id)
    );
    alice
        .client
        .rename_category(club.id, "readers")
        .await
        .unwrap();
    let names: Vec<String> = alice
        .client
        .categories()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, vec!["My friends".to_string(), "readers".to_string()]);
    alice.client.delete_category(club.id).await.unwrap();
    assert_eq!(
        alice.client.friends().await.unwrap()[0].category,
        CategoryId(0)
    );

    // Profile and likes (10 per friend per day).
    let me = alice
        .client
        .update_profile(&ProfilePatch {
            signature: Some("reading".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(me.signature, "reading");
    for i in 1..=10 {
        assert_eq!(bob.client.like(alice.id).await.unwrap().today, i);
    }
    let err = bob.client.like(alice.id).await.unwrap_err();
    assert_eq!(err.code(), Some("limit_reached"));
    assert_eq!(
        err.body().unwrap().limit.as_deref(),
        Some("likes_per_friend_per_day")
    );
    assert_eq!(carol.client.profile(alice.id).await.unwrap().likes, 10);
    assert_eq!(
        carol.client.like(alice.id).await.unwrap_err().code(),
        Some("not_friends")
    );

    // Refused request, then the blacklist.
    let r = carol
        .client
        .send_friend_request(alice.id, "hi")
        .await
        .unwrap();
    assert_eq!(
        carol
            .client
            .send_friend_request(alice.id, "again")
            .await
            .unwrap_err()
            .code(),
        Some("conflict")
    );
    alice.client.refuse_friend_request(r.id).await.unwrap();
    alice.client.block(carol.id).await.unwrap();
    assert_eq!(
        carol
            .client
            .send_friend_request(alice.id, "please")
            .await
            .unwrap_err()
            .code(),
        Some("blocked")
    );
    assert_eq!(alice.client.blacklist().await.unwrap()[0].user_id, carol.id);
    alice.client.unblock(carol.id).await.unwrap();
    carol
        .client
        .send_friend_request(alice.id, "sorry")
        .await
        .unwrap();

    // Unfriending stops messages but keeps history readable.
    bob.client.send(conv, "b-1", text("before")).await.unwrap();
    alice.client.remove_friend(bob.id).await.unwrap();
    assert_eq!(
        bob.client
            .send(conv, "b-2", text("after"))
            .await
            .unwrap_err()
            .code(),
        Some("not_friends")
    );
    assert_eq!(
        alice
            .client
            .history(conv, None, None, None)
            .await
            .unwrap()
            .events
            .len(),
        1
    );
}
