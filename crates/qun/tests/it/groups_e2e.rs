//! End-to-end group flows against a real `qun serve`: management over REST,
//! live delivery over WebSockets, several users and devices per test.
//! `docs/groups.md` and the Groups section of `docs/protocol.md` are the
//! specification these tests hold the server to.

use std::fmt::Debug;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::future::join_all;
use qun_client::qun_wire::{
    AnnouncementDraft, ConversationEvent, ConversationId, ConversationKind, CreateGroupRequest,
    Event, FriendRequestStatus, GroupId, GroupNotice, GroupSettingsPatch, GroupView, JoinKind,
    JoinMode, JoinRequestId, JoinRequestView, MemberView, NoticeView, ProfilePatch, Role, Segment,
    Seq, UserId,
};
use qun_client::{ClientError, Connection};

use crate::harness::{befriend, expect_event, text, Server, TempDir, User};
use crate::require_e2e;

// ---- helpers ----

/// Milliseconds since the epoch, as the server stamps times.
fn now_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// The error code of a call that must fail.
#[track_caller]
fn code<T: Debug>(result: Result<T, ClientError>) -> String {
    match result {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(ClientError::Api { error, .. }) => error.code,
        Err(e) => panic!("expected an API error, got {e:?}"),
    }
}

/// The error of a call that must fail.
#[track_caller]
fn failure<T: Debug>(result: Result<T, ClientError>) -> ClientError {
    match result {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e,
    }
}

/// A listed group without intro, category or tags.
fn request(name: &str, join_mode: JoinMode) -> CreateGroupRequest {
    CreateGroupRequest {
        name: name.to_owned(),
        intro: String::new(),
        category: String::new(),
        tags: Vec::new(),
        listed: true,
        join_mode,
    }
}

/// Creates a group owned by `owner`.
async fn create_group(owner: &User, name: &str, join_mode: JoinMode) -> GroupView {
    owner
        .client
        .create_group(&request(name, join_mode))
        .await
        .unwrap_or_else(|e| panic!("creating {name}: {e}"))
}

/// Joins a group whose join mode admits at once.
async fn join_now(user: &User, group: GroupId) -> MemberView {
    let result = user.client.join_group(group, "", None).await;
    match result {
        Ok(r) if r.joined => r
            .member
            .unwrap_or_else(|| panic!("joined without a member entry")),
        other => panic!("{} did not join {group}: {other:?}", user.id),
    }
}

/// Registers several users at once (password hashing is the slow part).
async fn users<const N: usize>(server: &Server, names: [&str; N]) -> [User; N] {
    let all = join_all(names.iter().map(|n| User::new(server, n))).await;
    all.try_into()
        .unwrap_or_else(|_| unreachable!("one user per name"))
}

/// An @all message.
fn at_all(words: &str) -> Vec<Segment> {
    vec![
        Segment::MentionAll,
        Segment::Text {
            text: words.to_owned(),
        },
    ]
}

/// The sequence numbers of some events.
fn seqs(events: &[ConversationEvent]) -> Vec<u64> {
    events.iter().map(|e| e.seq().0).collect()
}

/// `after+1 ..= last`.
fn span(after: Seq, last: Seq) -> Vec<u64> {
    (after.0 + 1..=last.0).collect()
}

/// The next notice of `conv` on this socket that satisfies `pred`.
async fn expect_notice(
    conn: &Connection,
    conv: ConversationId,
    pred: impl Fn(&GroupNotice) -> bool,
) -> NoticeView {
    expect_event(conn, |e| match e {
        Event::Conversation(ConversationEvent::Notice(n))
            if n.conversation == conv && pred(&n.notice) =>
        {
            Some(n.clone())
        }
        _ => None,
    })
    .await
}

/// Matches the notice of `user` joining.
fn joined(user: UserId) -> impl Fn(&GroupNotice) -> bool {
    move |n| matches!(n, GroupNotice::Joined { user: u, .. } if *u == user)
}

/// Waits for the `join_request` event `id`.
async fn expect_join_request(conn: &Connection, id: JoinRequestId) -> JoinRequestView {
    expect_event(conn, |e| match e {
        Event::JoinRequest(r) if r.id == id => Some(r.clone()),
        _ => None,
    })
    .await
}

/// Waits for the `join_request_resolved` event `id`.
async fn expect_resolved(conn: &Connection, id: JoinRequestId) -> JoinRequestView {
    expect_event(conn, |e| match e {
        Event::JoinRequestResolved(r) if r.id == id => Some(r.clone()),
        _ => None,
    })
    .await
}

/// On an approved applicant's socket: their joined notice and the decision,
/// in whichever order the two arrive.
async fn admitted(
    conn: &Connection,
    conv: ConversationId,
    user: UserId,
    request: JoinRequestId,
) -> (NoticeView, JoinRequestView) {
    let (mut notice, mut decision) = (None, None);
    while notice.is_none() || decision.is_none() {
        expect_event(conn, |e| match e {
            Event::Conversation(ConversationEvent::Notice(n))
                if n.conversation == conv && joined(user)(&n.notice) =>
            {
                notice = Some(n.clone());
                Some(())
            }
            Event::JoinRequestResolved(r) if r.id == request => {
                decision = Some(r.clone());
                Some(())
            }
            _ => None,
        })
        .await;
    }
    let (Some(notice), Some(decision)) = (notice, decision) else {
        unreachable!("the loop ends when both arrived")
    };
    (notice, decision)
}

/// The events of `conv` after `after` in the order one socket receives them,
/// up to the arrival of `last`; panics if that takes more than 5 s.
async fn stream(
    conn: &Connection,
    conv: ConversationId,
    after: Seq,
    last: Seq,
) -> Vec<ConversationEvent> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match conn.next_event_timeout(left).await {
            Ok(Some(Event::Conversation(c))) if c.conversation() == conv && c.seq() > after => {
                let done = c.seq() >= last;
                got.push(c);
                if done {
                    return got;
                }
            }
            Ok(Some(_)) => {}
            other => panic!(
                "events {}..={} did not all arrive: got {:?}, then {other:?}",
                after.0 + 1,
                last.0,
                seqs(&got)
            ),
        }
    }
}

/// Every event of `conv` that reaches this socket within `wait`.
async fn arrivals_within(
    conn: &Connection,
    conv: ConversationId,
    wait: Duration,
) -> Vec<ConversationEvent> {
    let deadline = Instant::now() + wait;
    let mut got = Vec::new();
    loop {
        // A zero wait still takes what has already arrived.
        let left = deadline.saturating_duration_since(Instant::now());
        match conn.next_event_timeout(left).await {
            Ok(Some(Event::Conversation(c))) if c.conversation() == conv => got.push(c),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return got,
        }
    }
}

/// The first `count` events of `conv` after `after` that reach this socket,
/// in arrival order; panics if they do not all arrive within 10 s.
async fn collect(
    conn: &Connection,
    conv: ConversationId,
    after: Seq,
    count: usize,
) -> Vec<ConversationEvent> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    while got.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        match conn.next_event_timeout(left).await {
            Ok(Some(Event::Conversation(c))) if c.conversation() == conv && c.seq() > after => {
                got.push(c)
            }
            Ok(Some(_)) => {}
            other => panic!(
                "only {} of {count} events arrived ({:?}), then {other:?}",
                got.len(),
                seqs(&got)
            ),
        }
    }
    got
}

/// The sender and client message id of a message event.
fn message_of(e: &ConversationEvent) -> (UserId, String) {
    match e {
        ConversationEvent::Message(m) => (m.sender, m.client_msg_id.clone()),
        other => panic!("expected a message, got {other:?}"),
    }
}

// ---- the tests ----

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_lifecycle_with_live_notices() {
    require_e2e!();
    let dir = TempDir::new("group-life");
    let server = Server::start(dir.path(), &[]);
    let [owner, ann, bob, carol, dave] =
        users(&server, ["owner", "ann", "bob", "carol", "dave"]).await;
    let (owner_dev, _) = owner.device(&server, "pc").await;
    let (ann_dev, _) = ann.device(&server, "pc").await;
    let (bob_pc, _) = bob.device(&server, "pc").await;
    let (bob_phone, _) = bob.device(&server, "phone").await;
    let (carol_dev, _) = carol.device(&server, "pc").await;
    let (dave_dev, _) = dave.device(&server, "pc").await;

    let g = owner
        .client
        .create_group(&CreateGroupRequest {
            name: "Book club".into(),
            intro: "We read together".into(),
            category: "reading".into(),
            tags: vec!["books".into()],
            listed: true,
            join_mode: JoinMode::Approval,
        })
        .await
        .unwrap();
    assert_eq!(
        (g.owner, g.member_count, g.tier, g.tier_name.as_str()),
        (owner.id, 1, 0, "standard")
    );
    assert_eq!(
        (g.max_members, g.join_mode.clone()),
        (200, JoinMode::Approval)
    );
    assert!(g.group_id.0 >= 100_001, "group numbers start at 100001");
    let (gid, conv) = (g.group_id, g.conversation);
    let start = owner.client.history(conv, None, None, None).await.unwrap();
    assert!(
        matches!(&start.events[..], [ConversationEvent::Notice(n)]
            if n.seq == Seq(1) && n.notice == GroupNotice::Created { owner: owner.id }),
        "the stream opens with the created notice: {:?}",
        start.events
    );

    // The first applicant reaches the owner live, is approved and made admin.
    let applied = ann
        .client
        .join_group(gid, "I keep the reading list", None)
        .await
        .unwrap();
    assert!(!applied.joined && applied.member.is_none(), "{applied:?}");
    let ann_request = applied.request.unwrap();
    assert_eq!(
        (ann_request.kind, ann_request.status, ann_request.user_id),
        (JoinKind::Application, FriendRequestStatus::Pending, ann.id)
    );
    assert_eq!(ann_request.message, "I keep the reading list");
    assert_eq!(
        expect_join_request(&owner_dev, ann_request.id).await,
        ann_request
    );
    let pending = owner.client.join_requests(gid).await.unwrap();
    assert_eq!(pending, vec![ann_request.clone()]);
    assert_eq!(code(bob.client.join_requests(gid).await), "not_a_member");
    let approved = owner
        .client
        .review_join_request(ann_request.id, true, None)
        .await
        .unwrap();
    assert_eq!(
        (approved.status, approved.reviewer),
        (FriendRequestStatus::Accepted, Some(owner.id))
    );
    let ann_joined = GroupNotice::Joined {
        user: ann.id,
        inviter: None,
        approver: Some(owner.id),
    };
    let n = expect_notice(&owner_dev, conv, joined(ann.id)).await;
    assert_eq!(n.notice, ann_joined);
    let (n, resolved) = admitted(&ann_dev, conv, ann.id, ann_request.id).await;
    assert_eq!(n.notice, ann_joined);
    assert_eq!(
        (resolved.status, resolved.reviewer),
        (FriendRequestStatus::Accepted, Some(owner.id))
    );
    let promoted = owner
        .client
        .set_role(gid, ann.id, Role::Admin)
        .await
        .unwrap();
    assert_eq!(promoted.role, Role::Admin);
    for dev in [&owner_dev, &ann_dev] {
        let n = expect_notice(dev, conv, |n| matches!(n, GroupNotice::RoleChanged { .. })).await;
        assert_eq!(
            n.notice,
            GroupNotice::RoleChanged {
                user: ann.id,
                role: Role::Admin,
                by: owner.id
            }
        );
    }

    // Two more applicants reach owner and admin live; one approved, one refused.
    let bob_request = bob
        .client
        .join_group(gid, "hi from bob", None)
        .await
        .unwrap()
        .request
        .unwrap();
    let carol_request = carol
        .client
        .join_group(gid, "let me in", None)
        .await
        .unwrap()
        .request
        .unwrap();
    for dev in [&owner_dev, &ann_dev] {
        for r in [&bob_request, &carol_request] {
            assert_eq!(&expect_join_request(dev, r.id).await, r);
        }
    }
    assert_eq!(ann.client.join_requests(gid).await.unwrap().len(), 2);
    ann.client
        .review_join_request(bob_request.id, true, None)
        .await
        .unwrap();
    let refused = owner
        .client
        .review_join_request(carol_request.id, false, Some("club members only"))
        .await
        .unwrap();
    assert_eq!(refused.status, FriendRequestStatus::Refused);
    assert_eq!(
        code(
            owner
                .client
                .review_join_request(carol_request.id, true, None)
                .await
        ),
        "conflict"
    );
    let r = expect_resolved(&carol_dev, carol_request.id).await;
    assert_eq!(
        (r.status, r.reviewer, r.reason.as_deref()),
        (
            FriendRequestStatus::Refused,
            Some(owner.id),
            Some("club members only")
        )
    );
    let bob_joined = GroupNotice::Joined {
        user: bob.id,
        inviter: None,
        approver: Some(ann.id),
    };
    let mut bob_join = Seq(0);
    for dev in [&owner_dev, &ann_dev] {
        let n = expect_notice(dev, conv, joined(bob.id)).await;
        assert_eq!(n.notice, bob_joined);
        bob_join = n.seq;
    }
    for dev in [&bob_pc, &bob_phone] {
        let (n, r) = admitted(dev, conv, bob.id, bob_request.id).await;
        assert_eq!((n.seq, n.notice), (bob_join, bob_joined.clone()));
        assert_eq!(
            (r.status, r.reviewer),
            (FriendRequestStatus::Accepted, Some(ann.id))
        );
    }
    let bob_entry = bob.client.my_membership(gid).await.unwrap();
    assert_eq!(
        (bob_entry.role, bob_entry.inviter, bob_entry.approver),
        (Role::Member, None, Some(ann.id))
    );
    assert_eq!(code(carol.client.my_membership(gid).await), "not_a_member");
    assert_eq!(
        code(carol.client.history(conv, None, None, None).await),
        "not_a_member"
    );
    let bobs_view = bob.client.history(conv, None, None, None).await.unwrap();
    assert_eq!(
        seqs(&bobs_view.events),
        vec![bob_join.0],
        "a newcomer reads from their join notice on"
    );

    // Messages from several members, over REST and three sockets, reach every
    // device (bob has two) in seq order without gaps.
    let mut acks = vec![owner.client.send(conv, "o-1", text("welcome, bob")).await];
    acks.push(bob_pc.send(conv, "b-1", text("thanks!")).await);
    acks.push(owner_dev.send(conv, "o-2", text("first book: Dune")).await);
    acks.push(bob_phone.send(conv, "b-2", text("from my phone")).await);
    acks.push(ann_dev.send(conv, "a-1", text("rules: be kind")).await);
    acks.push(
        owner
            .client
            .send(conv, "o-3", text("meeting on friday"))
            .await,
    );
    let acks: Vec<_> = acks.into_iter().map(Result::unwrap).collect();
    let last = acks[5].seq;
    assert_eq!(
        acks.iter().map(|a| a.seq.0).collect::<Vec<_>>(),
        span(bob_join, last)
    );
    let expected = [
        (owner.id, "o-1"),
        (bob.id, "b-1"),
        (owner.id, "o-2"),
        (bob.id, "b-2"),
        (ann.id, "a-1"),
        (owner.id, "o-3"),
    ];
    for dev in [&owner_dev, &ann_dev, &bob_pc, &bob_phone] {
        let got = stream(dev, conv, bob_join, last).await;
        assert_eq!(seqs(&got), span(bob_join, last), "in order, no gaps");
        let senders: Vec<(UserId, String)> = got.iter().map(message_of).collect();
        let want: Vec<(UserId, String)> =
            expected.iter().map(|(u, c)| (*u, c.to_string())).collect();
        assert_eq!(senders, want);
    }
    let honours = bob.client.honours(gid).await.unwrap();
    assert_eq!(
        honours
            .iter()
            .map(|h| (h.user_id, h.messages))
            .collect::<Vec<_>>(),
        vec![(owner.id, 3), (bob.id, 2), (ann.id, 1)],
        "today's honours, most messages first"
    );

    // Read receipts: who has read up to the last message.
    let read = bob_pc.read(conv, last).await.unwrap();
    assert_eq!((read.read_seq, read.unread), (last, 0));
    owner.client.read(conv, last).await.unwrap();
    let receipts = ann.client.receipts(gid, last).await.unwrap();
    let mut readers = vec![owner.id, bob.id];
    readers.sort();
    assert_eq!(
        (receipts.count, receipts.readers),
        (2, Some(readers.clone()))
    );
    assert_eq!(code(carol.client.receipts(gid, last).await), "not_a_member");

    // The member list in pages, then only what changed.
    let page1 = bob.client.members(gid, None, Some(2)).await.unwrap();
    let page2 = bob
        .client
        .members(gid, Some(page1.members[1].user_id), Some(2))
        .await
        .unwrap();
    let listed: Vec<(UserId, Role)> = page1
        .members
        .iter()
        .chain(&page2.members)
        .map(|m| (m.user_id, m.role))
        .collect();
    let mut everyone = vec![
        (owner.id, Role::Owner),
        (ann.id, Role::Admin),
        (bob.id, Role::Member),
    ];
    everyone.sort_by_key(|(u, _)| *u);
    assert_eq!(listed, everyone, "pages ascend by number");
    let version = page1.version;
    assert_eq!(page2.version, version);
    assert_eq!(bob.client.group(gid).await.unwrap().member_version, version);
    let nothing = bob.client.member_changes(gid, version).await.unwrap();
    assert!(
        nothing.changed.is_empty() && nothing.removed.is_empty(),
        "{nothing:?}"
    );
    assert_eq!(nothing.version, version);

    // Cards: one's own, or a lower role's.
    let carded = bob
        .client
        .set_card(gid, bob.id, Some("Bobby"))
        .await
        .unwrap();
    assert_eq!(carded.card.as_deref(), Some("Bobby"));
    let n = expect_notice(&ann_dev, conv, |n| matches!(n, GroupNotice::CardSet { .. })).await;
    assert_eq!(
        n.notice,
        GroupNotice::CardSet {
            user: bob.id,
            card: Some("Bobby".into()),
            by: bob.id
        }
    );
    assert_eq!(
        code(bob.client.set_card(gid, ann.id, Some("x")).await),
        "insufficient_role"
    );
    assert_eq!(
        code(ann.client.set_card(gid, owner.id, Some("boss")).await),
        "insufficient_role"
    );
    ann.client
        .set_card(gid, bob.id, Some("Bob (club)"))
        .await
        .unwrap();
    let delta = bob.client.member_changes(gid, version).await.unwrap();
    assert!(delta.version > version, "{delta:?}");
    assert_eq!(
        delta
            .changed
            .iter()
            .map(|m| (m.user_id, m.card.clone()))
            .collect::<Vec<_>>(),
        vec![(bob.id, Some("Bob (club)".to_string()))],
        "only bob's entry changed"
    );
    assert!(delta.removed.is_empty());

    // Special titles: owner only, optionally expiring.
    let titled_at = Instant::now();
    let before = now_ms();
    let titled = owner
        .client
        .set_title(gid, bob.id, Some("Bookworm"), Some(1))
        .await
        .unwrap();
    assert_eq!(titled.title.as_deref(), Some("Bookworm"));
    let expires = titled.title_expires_at.unwrap();
    assert!(
        expires >= before + 1000 && expires <= now_ms() + 1000,
        "{expires}"
    );
    let n = expect_notice(&bob_phone, conv, |n| {
        matches!(n, GroupNotice::TitleSet { .. })
    })
    .await;
    assert_eq!(
        n.notice,
        GroupNotice::TitleSet {
            user: bob.id,
            title: Some("Bookworm".into()),
            expires_at: Some(expires)
        }
    );
    let lasting = owner
        .client
        .set_title(gid, ann.id, Some("Librarian"), None)
        .await
        .unwrap();
    assert_eq!(
        (lasting.title.as_deref(), lasting.title_expires_at),
        (Some("Librarian"), None)
    );
    assert_eq!(
        code(ann.client.set_title(gid, bob.id, Some("x"), None).await),
        "insufficient_role"
    );

    // Essence messages: owner and admins mark, everyone reads.
    let rules = acks[4].seq;
    ann.client.set_essence(gid, rules, true).await.unwrap();
    let n = expect_notice(&bob_pc, conv, |n| matches!(n, GroupNotice::Essence { .. })).await;
    assert_eq!(
        n.notice,
        GroupNotice::Essence {
            seq: rules,
            set: true,
            by: ann.id
        }
    );
    owner
        .client
        .set_essence(gid, acks[0].seq, true)
        .await
        .unwrap();
    let mut marked: Vec<Seq> = bob
        .client
        .essence(gid)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    marked.sort();
    assert_eq!(marked, vec![acks[0].seq, rules]);
    assert_eq!(
        code(bob.client.set_essence(gid, acks[1].seq, true).await),
        "insufficient_role"
    );
    owner
        .client
        .set_essence(gid, acks[0].seq, false)
        .await
        .unwrap();
    let essence = bob.client.essence(gid).await.unwrap();
    assert_eq!(
        essence.iter().map(|e| (e.seq, e.by)).collect::<Vec<_>>(),
        vec![(rules, ann.id)]
    );

    // Announcements: confirmations, entrance, edit and delete.
    let welcome = owner
        .client
        .create_announcement(
            gid,
            &AnnouncementDraft {
                title: "Welcome".into(),
                body: "Read the rules first".into(),
                pinned: true,
                require_confirm: true,
                entrance: true,
            },
        )
        .await
        .unwrap();
    let n = expect_notice(&bob_pc, conv, |n| {
        matches!(n, GroupNotice::Announcement { .. })
    })
    .await;
    assert_eq!(
        n.notice,
        GroupNotice::Announcement {
            id: welcome.id,
            action: "created".into(),
            by: owner.id
        }
    );
    let seen = bob.client.announcements(gid).await.unwrap();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].pinned && seen[0].require_confirm && seen[0].entrance);
    bob.client
        .confirm_announcement(gid, welcome.id)
        .await
        .unwrap();
    let confirmations = ann
        .client
        .announcement_confirmations(gid, welcome.id)
        .await
        .unwrap();
    assert_eq!(
        confirmations.iter().map(|c| c.user_id).collect::<Vec<_>>(),
        vec![bob.id]
    );
    assert_eq!(
        code(bob.client.announcement_confirmations(gid, welcome.id).await),
        "insufficient_role"
    );
    let schedule = |body: &str| AnnouncementDraft {
        title: "Schedule".into(),
        body: body.into(),
        pinned: false,
        require_confirm: false,
        entrance: false,
    };
    assert_eq!(
        code(bob.client.create_announcement(gid, &schedule("x")).await),
        "insufficient_role"
    );
    let note = ann
        .client
        .create_announcement(gid, &schedule("Fridays"))
        .await
        .unwrap();
    assert_eq!(
        code(bob.client.confirm_announcement(gid, note.id).await),
        "conflict",
        "this one asks for no confirmation"
    );
    let edited = ann
        .client
        .edit_announcement(gid, note.id, &schedule("Fridays at 8"))
        .await
        .unwrap();
    assert_eq!(edited.body, "Fridays at 8");
    assert!(edited.edited_at.is_some());
    owner
        .client
        .delete_announcement(gid, note.id)
        .await
        .unwrap();
    let n = expect_notice(
        &bob_pc,
        conv,
        |n| matches!(n, GroupNotice::Announcement { action, .. } if action == "deleted"),
    )
    .await;
    assert_eq!(
        n.notice,
        GroupNotice::Announcement {
            id: note.id,
            action: "deleted".into(),
            by: owner.id
        }
    );
    let ids: Vec<_> = bob
        .client
        .announcements(gid)
        .await
        .unwrap()
        .iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(ids, vec![welcome.id]);

    // @all: owner and admins only, each spending the daily quota.
    let quota = ann.client.at_all_quota(gid).await.unwrap();
    assert_eq!((quota.group_remaining, quota.mine_remaining), (10, 5));
    ann_dev
        .send(conv, "a-all", at_all(" meeting tonight"))
        .await
        .unwrap();
    let quota = ann.client.at_all_quota(gid).await.unwrap();
    assert_eq!((quota.group_remaining, quota.mine_remaining), (9, 4));
    let quota = owner.client.at_all_quota(gid).await.unwrap();
    assert_eq!((quota.group_remaining, quota.mine_remaining), (9, 5));
    assert_eq!(
        code(bob.client.at_all_quota(gid).await),
        "insufficient_role"
    );
    assert_eq!(
        code(bob_pc.send(conv, "b-all", at_all(" hey")).await),
        "insufficient_role"
    );
    let quota = ann.client.at_all_quota(gid).await.unwrap();
    assert_eq!(
        (quota.group_remaining, quota.mine_remaining),
        (9, 4),
        "a refused @all spends nothing"
    );

    // A newcomer by the owner's invitation sees the entrance announcement and
    // none of the history from before their join.
    let invitation = owner.client.invite(gid, dave.id).await.unwrap();
    assert_eq!(
        (invitation.kind, invitation.inviter),
        (JoinKind::Invitation, Some(owner.id))
    );
    assert_eq!(
        expect_join_request(&dave_dev, invitation.id).await,
        invitation
    );
    let accepted = dave
        .client
        .answer_invitation(invitation.id, true)
        .await
        .unwrap();
    assert!(accepted.joined, "{accepted:?}");
    let entry = accepted.member.unwrap();
    assert_eq!(
        (entry.inviter, entry.approver),
        (Some(owner.id), Some(owner.id))
    );
    let dave_join = expect_notice(&dave_dev, conv, joined(dave.id)).await.seq;
    let entrance: Vec<_> = dave
        .client
        .announcements(gid)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.entrance)
        .map(|a| a.id)
        .collect();
    assert_eq!(entrance, vec![welcome.id]);
    let daves_view = dave.client.history(conv, None, None, None).await.unwrap();
    assert_eq!(seqs(&daves_view.events), vec![dave_join.0]);

    // The one-second title has expired by itself.
    let elapsed = titled_at.elapsed();
    if elapsed < Duration::from_millis(1_100) {
        tokio::time::sleep(Duration::from_millis(1_100) - elapsed).await;
    }
    let bob_entry = bob.client.my_membership(gid).await.unwrap();
    assert_eq!((bob_entry.title, bob_entry.title_expires_at), (None, None));
    let ann_entry = ann.client.my_membership(gid).await.unwrap();
    assert_eq!(ann_entry.title.as_deref(), Some("Librarian"));

    // The refused applicant never saw anything of the group's stream.
    assert!(
        arrivals_within(&carol_dev, conv, Duration::ZERO)
            .await
            .is_empty(),
        "a non-member received group events"
    );

    // A newcomer's read position starts past their join notice, yet they did
    // not read what came before it: receipts must not count them.
    let receipts = ann.client.receipts(gid, last).await.unwrap();
    assert_eq!(
        (receipts.count, receipts.readers),
        (2, Some(readers)),
        "dave joined after seq {last} and never read it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_creation_notice_is_delivered_live() {
    require_e2e!();
    let dir = TempDir::new("group-created");
    let server = Server::start(dir.path(), &[]);
    let owner = User::new(&server, "owner").await;
    let (phone, _) = owner.device(&server, "phone").await;
    // Created from the owner's PC (REST); the phone learns of the group live.
    let g = create_group(&owner, "Family", JoinMode::Open).await;
    // REGRESSION: the `created` notice used to be stored at seq 1 but never
    // fanned out, though docs/protocol.md says every device of a user receives every
    // conversation event, "including those the user sent from this or another
    // device", and docs/groups.md that notices are "delivered live".
    let n = expect_notice(&phone, g.conversation, |n| {
        matches!(n, GroupNotice::Created { .. })
    })
    .await;
    assert_eq!(
        (n.seq, n.notice),
        (Seq(1), GroupNotice::Created { owner: owner.id })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kicked_member_socket_goes_quiet_within_a_second() {
    require_e2e!();
    let dir = TempDir::new("group-kick");
    let server = Server::start(dir.path(), &[]);
    let [owner, mia, kim, leo] = users(&server, ["owner", "mia", "kim", "leo"]).await;
    let g = create_group(&owner, "Quiet room", JoinMode::Open).await;
    let (gid, conv) = (g.group_id, g.conversation);
    let (owner_dev, _) = owner.device(&server, "pc").await;
    let (mia_dev, _) = mia.device(&server, "pc").await;
    let (kim_dev, _) = kim.device(&server, "pc").await;
    let (leo_dev, _) = leo.device(&server, "pc").await;
    for u in [&mia, &kim, &leo] {
        join_now(u, gid).await;
    }
    for dev in [&owner_dev, &mia_dev, &kim_dev, &leo_dev] {
        expect_notice(dev, conv, joined(leo.id)).await;
    }

    // Kim is kicked and Leo leaves; both see their own notice, then nothing.
    let version = owner.client.group(gid).await.unwrap().member_version;
    let kicked_at = Instant::now();
    owner.client.kick(gid, kim.id, false).await.unwrap();
    let n = expect_notice(&kim_dev, conv, |n| matches!(n, GroupNotice::Kicked { .. })).await;
    assert!(kicked_at.elapsed() < Duration::from_secs(1));
    assert_eq!(
        n.notice,
        GroupNotice::Kicked {
            user: kim.id,
            by: owner.id,
            banned: false
        }
    );
    leo.client.leave_group(gid).await.unwrap();
    let left = expect_notice(&leo_dev, conv, |n| matches!(n, GroupNotice::Left { .. })).await;
    assert_eq!(left.notice, GroupNotice::Left { user: leo.id });
    for dev in [&owner_dev, &mia_dev] {
        expect_notice(
            dev,
            conv,
            |n| matches!(n, GroupNotice::Kicked { user, .. } if *user == kim.id),
        )
        .await;
        expect_notice(dev, conv, |n| *n == GroupNotice::Left { user: leo.id }).await;
    }
    let mut acks = Vec::new();
    for i in 0..3 {
        let ack = owner
            .client
            .send(conv, &format!("o-{i}"), text("after"))
            .await;
        acks.push(ack.unwrap());
    }
    for i in 0..2 {
        acks.push(
            mia_dev
                .send(conv, &format!("m-{i}"), text("after"))
                .await
                .unwrap(),
        );
    }
    let last = acks[4].seq;
    assert_eq!(
        acks.iter().map(|a| a.seq.0).collect::<Vec<_>>(),
        span(left.seq, last)
    );
    for dev in [&owner_dev, &mia_dev] {
        assert_eq!(
            seqs(&stream(dev, conv, left.seq, last).await),
            span(left.seq, last)
        );
    }
    let (to_kim, to_leo) = tokio::join!(
        arrivals_within(&kim_dev, conv, Duration::from_millis(1_500)),
        arrivals_within(&leo_dev, conv, Duration::from_millis(1_500)),
    );
    assert!(
        to_kim.is_empty(),
        "the kicked socket still receives: {to_kim:?}"
    );
    assert!(
        to_leo.is_empty(),
        "the leaver's socket still receives: {to_leo:?}"
    );

    // Former members are outsiders: nothing to read, nothing to send.
    for (user, dev) in [(&kim, &kim_dev), (&leo, &leo_dev)] {
        let c = &user.client;
        assert_eq!(
            code(c.history(conv, None, None, None).await),
            "not_a_member"
        );
        assert_eq!(
            code(c.send(conv, "late", text("hello?")).await),
            "not_a_member"
        );
        assert_eq!(code(c.members(gid, None, None).await), "not_a_member");
        assert_eq!(code(c.announcements(gid).await), "not_a_member");
        assert_eq!(code(c.my_membership(gid).await), "not_a_member");
        assert_eq!(code(c.leave_group(gid).await), "not_a_member");
        assert_eq!(
            code(dev.history(conv, None, None, None).await),
            "not_a_member"
        );
        assert_eq!(
            code(dev.send(conv, "late-ws", text("hi?")).await),
            "not_a_member"
        );
        assert_eq!(code(dev.recall(conv, acks[0].seq).await), "not_a_member");
    }
    for user in [&kim, &leo] {
        let list = user.client.conversations().await.unwrap().conversations;
        assert!(
            list.iter().all(|c| c.conversation != conv),
            "the group left the former member's conversations: {list:?}"
        );
    }
    let delta = mia.client.member_changes(gid, version).await.unwrap();
    let mut gone = vec![kim.id, leo.id];
    gone.sort();
    let mut removed = delta.removed.clone();
    removed.sort();
    assert_eq!(removed, gone, "{delta:?}");
    assert!(delta.changed.is_empty(), "{delta:?}");
    assert_eq!(code(owner.client.leave_group(gid).await), "conflict");

    // Without a ban both may come back, and read only from their new join on.
    let back = join_now(&kim, gid).await;
    assert_eq!(back.role, Role::Member);
    let rejoined = expect_notice(&kim_dev, conv, joined(kim.id)).await;
    let view = kim.client.history(conv, None, None, None).await.unwrap();
    assert_eq!(seqs(&view.events), vec![rejoined.seq.0]);
    join_now(&leo, gid).await;

    // With a ban, every way back is closed until an admin lifts it.
    owner.client.kick(gid, kim.id, true).await.unwrap();
    let n = expect_notice(&kim_dev, conv, |n| matches!(n, GroupNotice::Kicked { .. })).await;
    assert_eq!(
        n.notice,
        GroupNotice::Kicked {
            user: kim.id,
            by: owner.id,
            banned: true
        }
    );
    assert_eq!(
        code(kim.client.join_group(gid, "sorry", None).await),
        "banned"
    );
    let link = owner
        .client
        .create_invite_link(gid, None, None)
        .await
        .unwrap();
    assert_eq!(code(kim.client.join_by_link(&link.code).await), "banned");
    let invitation = owner.client.invite(gid, kim.id).await.unwrap();
    assert_eq!(
        code(kim.client.answer_invitation(invitation.id, true).await),
        "banned"
    );
    assert_eq!(
        code(mia.client.unban(gid, kim.id).await),
        "insufficient_role"
    );
    owner.client.unban(gid, kim.id).await.unwrap();
    join_now(&kim, gid).await;
    assert_eq!(owner.client.group(gid).await.unwrap().member_count, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn muted_member_is_refused_with_until_and_recovers() {
    require_e2e!();
    let dir = TempDir::new("group-mute");
    let server = Server::start(dir.path(), &[]);
    let [owner, ada, max, nia] = users(&server, ["owner", "ada", "max", "nia"]).await;
    let g = create_group(&owner, "Debate", JoinMode::Open).await;
    let (gid, conv) = (g.group_id, g.conversation);
    for u in [&ada, &max, &nia] {
        join_now(u, gid).await;
    }
    owner
        .client
        .set_role(gid, ada.id, Role::Admin)
        .await
        .unwrap();
    let (owner_dev, _) = owner.device(&server, "pc").await;
    let (max_dev, _) = max.device(&server, "pc").await;

    // An admin mutes a member for two seconds.
    let before = now_ms();
    let muted = ada.client.mute_member(gid, max.id, 2).await.unwrap();
    let until = muted.muted_until.unwrap();
    assert!(
        until >= before + 2_000 && until <= now_ms() + 2_000,
        "{until}"
    );
    let n = expect_notice(&max_dev, conv, |n| matches!(n, GroupNotice::Muted { .. })).await;
    assert_eq!(
        n.notice,
        GroupNotice::Muted {
            user: max.id,
            until: Some(until),
            by: ada.id
        }
    );
    for err in [
        failure(max_dev.send(conv, "m-1", text("but...")).await),
        failure(max.client.send(conv, "m-2", text("but...")).await),
    ] {
        assert_eq!(err.code(), Some("muted"));
        assert_eq!(err.body().unwrap().until, Some(until), "{err:?}");
    }
    nia.client
        .send(conv, "n-1", text("others speak"))
        .await
        .unwrap();

    // Who may mute whom, and for how long.
    assert_eq!(
        code(max.client.mute_member(gid, nia.id, 60).await),
        "insufficient_role"
    );
    assert_eq!(
        code(ada.client.mute_member(gid, owner.id, 60).await),
        "insufficient_role"
    );
    assert_eq!(
        code(ada.client.mute_member(gid, ada.id, 60).await),
        "forbidden"
    );
    let month = 30 * 24 * 3600;
    let err = failure(ada.client.mute_member(gid, nia.id, month + 1).await);
    assert_eq!(err.code(), Some("too_large"));
    let body = err.body().unwrap();
    assert_eq!(
        (body.limit.as_deref(), body.max),
        (Some("max_mute_secs"), Some(month))
    );
    let long = ada.client.mute_member(gid, nia.id, month).await.unwrap();
    assert!(long.muted_until.is_some());
    let lifted = ada.client.mute_member(gid, nia.id, 0).await.unwrap();
    assert_eq!(lifted.muted_until, None);
    nia.client
        .send(conv, "n-2", text("free again"))
        .await
        .unwrap();

    // The whole group muted: members without `until`; owner and admins exempt.
    let view = ada.client.mute_all(gid, true).await.unwrap();
    assert!(view.muted);
    let n = expect_notice(&owner_dev, conv, |n| {
        matches!(n, GroupNotice::GroupMuted { .. })
    })
    .await;
    assert_eq!(
        n.notice,
        GroupNotice::GroupMuted {
            muted: true,
            by: ada.id
        }
    );
    let err = failure(nia.client.send(conv, "n-3", text("hello?")).await);
    assert_eq!(err.code(), Some("muted"));
    assert_eq!(err.body().unwrap().until, None, "{err:?}");
    ada.client
        .send(conv, "a-1", text("admins may"))
        .await
        .unwrap();
    owner_dev
        .send(conv, "o-1", text("owners may"))
        .await
        .unwrap();
    assert_eq!(
        code(nia.client.mute_all(gid, false).await),
        "insufficient_role"
    );
    assert!(!ada.client.mute_all(gid, false).await.unwrap().muted);
    nia.client.send(conv, "n-4", text("thanks")).await.unwrap();

    // The personal mute runs out by itself.
    let wait = until + 200 - now_ms();
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(wait.unsigned_abs())).await;
    }
    max_dev.send(conv, "m-3", text("finally")).await.unwrap();
    assert_eq!(
        max.client.my_membership(gid).await.unwrap().muted_until,
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn join_modes_invitations_and_links() {
    require_e2e!();
    let dir = TempDir::new("group-join");
    let server = Server::start(dir.path(), &[]);
    let [owner, ada, mel, xia, yan, zoe, wes] =
        users(&server, ["owner", "ada", "mel", "xia", "yan", "zoe", "wes"]).await;
    let (owner_dev, _) = owner.device(&server, "pc").await;
    let (ada_dev, _) = ada.device(&server, "pc").await;
    let (xia_dev, _) = xia.device(&server, "pc").await;
    let (zoe_dev, _) = zoe.device(&server, "pc").await;

    // An approval group; its short-lived link is used at the end.
    let club = create_group(&owner, "Club", JoinMode::Approval).await;
    let expiring = owner
        .client
        .create_invite_link(club.group_id, Some(1), None)
        .await
        .unwrap();
    let link_made = Instant::now();

    // open: joins at once.
    let open = create_group(&owner, "Open", JoinMode::Open).await;
    let entry = join_now(&xia, open.group_id).await;
    assert_eq!(
        (entry.role, entry.inviter, entry.approver),
        (Role::Member, None, None)
    );
    assert_eq!(
        owner
            .client
            .group(open.group_id)
            .await
            .unwrap()
            .member_count,
        2
    );

    // question_auto: the right answer (any case) joins, a wrong one is refused.
    let quiz_mode = JoinMode::QuestionAuto {
        question: "Colour of the sky?".into(),
        answer: "Blue".into(),
    };
    let quiz = create_group(&owner, "Quiz", quiz_mode.clone()).await;
    assert_eq!(
        owner.client.group(quiz.group_id).await.unwrap().join_mode,
        quiz_mode
    );
    assert_eq!(
        xia.client.group(quiz.group_id).await.unwrap().join_mode,
        JoinMode::QuestionAuto {
            question: "Colour of the sky?".into(),
            answer: String::new()
        },
        "the expected answer is hidden from outsiders"
    );
    let err = failure(
        xia.client
            .join_group(quiz.group_id, "", Some("green"))
            .await,
    );
    assert_eq!(err.code(), Some("invalid_field"));
    assert_eq!(err.body().unwrap().field.as_deref(), Some("answer"));
    let result = xia
        .client
        .join_group(quiz.group_id, "", Some("  bLUE "))
        .await
        .unwrap();
    assert!(result.joined, "{result:?}");

    // question: the answer goes to the reviewers.
    let asked = create_group(
        &owner,
        "Asked",
        JoinMode::Question {
            question: "Why?".into(),
        },
    )
    .await;
    assert_eq!(
        code(xia.client.join_group(asked.group_id, "hi", None).await),
        "invalid_field"
    );
    let pending = xia
        .client
        .join_group(asked.group_id, "hi", Some("I like it"))
        .await
        .unwrap();
    assert!(!pending.joined);
    assert_eq!(
        pending.request.unwrap().answer.as_deref(),
        Some("I like it")
    );

    // invite_only: applications refused; the owner's invitation is offered to
    // the invitee live, and accepting it joins with the inviter recorded.
    let private = create_group(&owner, "Private", JoinMode::InviteOnly).await;
    assert_eq!(
        code(xia.client.join_group(private.group_id, "hi", None).await),
        "invite_only"
    );
    let invitation = owner.client.invite(private.group_id, xia.id).await.unwrap();
    assert_eq!(
        (invitation.kind, invitation.status, invitation.inviter),
        (
            JoinKind::Invitation,
            FriendRequestStatus::Pending,
            Some(owner.id)
        )
    );
    assert_eq!(
        expect_join_request(&xia_dev, invitation.id).await,
        invitation
    );
    assert!(xia
        .client
        .my_join_requests()
        .await
        .unwrap()
        .contains(&invitation));
    let result = xia
        .client
        .answer_invitation(invitation.id, true)
        .await
        .unwrap();
    assert!(result.joined, "{result:?}");
    let entry = xia.client.my_membership(private.group_id).await.unwrap();
    assert_eq!(
        (entry.inviter, entry.approver),
        (Some(owner.id), Some(owner.id))
    );
    let n = expect_notice(&owner_dev, private.conversation, joined(xia.id)).await;
    assert_eq!(
        n.notice,
        GroupNotice::Joined {
            user: xia.id,
            inviter: Some(owner.id),
            approver: Some(owner.id)
        }
    );
    assert_eq!(
        code(xia.client.answer_invitation(invitation.id, true).await),
        "conflict"
    );
    // A refused invitation tells the inviter.
    let declined = owner.client.invite(private.group_id, yan.id).await.unwrap();
    let result = yan
        .client
        .answer_invitation(declined.id, false)
        .await
        .unwrap();
    assert!(!result.joined);
    let told = expect_resolved(&owner_dev, declined.id).await;
    assert_eq!(told.status, FriendRequestStatus::Refused);
    assert_eq!(
        code(yan.client.my_membership(private.group_id).await),
        "not_a_member"
    );

    // closed: nobody new.
    let closed = create_group(&owner, "Closed", JoinMode::Closed).await;
    assert_eq!(
        code(xia.client.join_group(closed.group_id, "hi", None).await),
        "join_closed"
    );
    assert_eq!(
        code(owner.client.invite(closed.group_id, yan.id).await),
        "join_closed"
    );

    // approval: the owner's invitations join at once; a member's invitation
    // (once members may invite) becomes an application for the admins.
    let (gid, conv) = (club.group_id, club.conversation);
    for u in [&ada, &mel] {
        let inv = owner.client.invite(gid, u.id).await.unwrap();
        assert!(
            u.client
                .answer_invitation(inv.id, true)
                .await
                .unwrap()
                .joined
        );
    }
    owner
        .client
        .set_role(gid, ada.id, Role::Admin)
        .await
        .unwrap();
    // Members may invite by default; the owner or an admin can say no.
    let closed_ranks = GroupSettingsPatch {
        members_may_invite: Some(false),
        ..GroupSettingsPatch::default()
    };
    assert!(club.members_may_invite);
    assert!(
        !owner
            .client
            .update_group(gid, &closed_ranks)
            .await
            .unwrap()
            .members_may_invite
    );
    assert_eq!(
        code(mel.client.update_group(gid, &closed_ranks).await),
        "insufficient_role"
    );
    assert_eq!(
        code(mel.client.invite(gid, zoe.id).await),
        "insufficient_role"
    );
    assert_eq!(
        code(mel.client.create_invite_link(gid, None, None).await),
        "insufficient_role"
    );
    let patch = GroupSettingsPatch {
        members_may_invite: Some(true),
        ..GroupSettingsPatch::default()
    };
    let view = ada.client.update_group(gid, &patch).await.unwrap();
    assert!(view.members_may_invite);
    let n = expect_notice(&owner_dev, conv, |n| {
        matches!(n, GroupNotice::SettingsChanged { settings, .. } if settings.members_may_invite == Some(true))
    })
    .await;
    assert_eq!(
        n.notice,
        GroupNotice::SettingsChanged {
            by: ada.id,
            settings: patch.clone()
        }
    );
    let invitation = mel.client.invite(gid, zoe.id).await.unwrap();
    assert_eq!(invitation.inviter, Some(mel.id));
    expect_join_request(&zoe_dev, invitation.id).await;
    let result = zoe
        .client
        .answer_invitation(invitation.id, true)
        .await
        .unwrap();
    assert!(!result.joined, "{result:?}");
    let application = result.request.unwrap();
    assert_eq!(
        (
            application.kind,
            application.status,
            application.inviter,
            application.user_id
        ),
        (
            JoinKind::Application,
            FriendRequestStatus::Pending,
            Some(mel.id),
            zoe.id
        )
    );
    for dev in [&owner_dev, &ada_dev] {
        assert_eq!(expect_join_request(dev, application.id).await, application);
    }
    ada.client
        .review_join_request(application.id, true, None)
        .await
        .unwrap();
    let entry = zoe.client.my_membership(gid).await.unwrap();
    assert_eq!(
        (entry.inviter, entry.approver),
        (Some(mel.id), Some(ada.id))
    );

    // Invite links act as an invitation by their creator, within their limits.
    let link = owner
        .client
        .create_invite_link(gid, None, Some(1))
        .await
        .unwrap();
    assert_eq!(
        (link.group_id, link.creator, link.max_uses, link.uses),
        (gid, owner.id, Some(1), 0)
    );
    assert!(link.expires_at.is_some());
    let result = xia.client.join_by_link(&link.code).await.unwrap();
    assert!(result.joined, "{result:?}");
    let entry = result.member.unwrap();
    assert_eq!(
        (entry.inviter, entry.approver),
        (Some(owner.id), Some(owner.id))
    );
    let err = failure(yan.client.join_by_link(&link.code).await);
    assert_eq!(err.code(), Some("limit_reached"), "{err:?}");
    assert_eq!(code(yan.client.my_membership(gid).await), "not_a_member");
    let err = failure(
        owner
            .client
            .create_invite_link(gid, Some(31 * 24 * 3600), None)
            .await,
    );
    assert_eq!(err.code(), Some("too_large"));
    assert_eq!(
        err.body().unwrap().limit.as_deref(),
        Some("max_invite_link_secs")
    );
    let member_link = mel
        .client
        .create_invite_link(gid, None, None)
        .await
        .unwrap();
    let result = wes.client.join_by_link(&member_link.code).await.unwrap();
    assert!(
        !result.joined,
        "a member's link into an approval group files an application: {result:?}"
    );
    assert_eq!(result.request.unwrap().inviter, Some(mel.id));
    assert_eq!(
        code(wes.client.join_by_link("no-such-code").await),
        "not_found"
    );

    // The one-second link has expired by now.
    let elapsed = link_made.elapsed();
    if elapsed < Duration::from_millis(1_100) {
        tokio::time::sleep(Duration::from_millis(1_100) - elapsed).await;
    }
    let err = failure(yan.client.join_by_link(&expiring.code).await);
    assert!(
        matches!(err.status(), Some(400..=499)),
        "an expired link is refused: {err:?}"
    );
    assert_eq!(code(yan.client.my_membership(gid).await), "not_a_member");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recall_powers_in_groups() {
    require_e2e!();
    let dir = TempDir::new("group-recall");
    let server = Server::start(dir.path(), &[("QUN_LIMITS__RECALL_WINDOW_SECS", "1")]);
    let [owner, ada, mia, max] = users(&server, ["owner", "ada", "mia", "max"]).await;
    let g = create_group(&owner, "Recalls", JoinMode::Open).await;
    let (gid, conv) = (g.group_id, g.conversation);
    for u in [&ada, &mia, &max] {
        join_now(u, gid).await;
    }
    owner
        .client
        .set_role(gid, ada.id, Role::Admin)
        .await
        .unwrap();
    let (owner_dev, _) = owner.device(&server, "pc").await;
    let (ada_dev, _) = ada.device(&server, "pc").await;
    let (mia_dev, _) = mia.device(&server, "pc").await;
    let (max_pc, _) = max.device(&server, "pc").await;
    let (max_phone, _) = max.device(&server, "phone").await;
    let devices = [&owner_dev, &ada_dev, &mia_dev, &max_pc, &max_phone];

    let mia_1 = mia_dev.send(conv, "mia-1", text("oops")).await.unwrap().seq;
    let max_1 = max_pc.send(conv, "max-1", text("hello")).await.unwrap().seq;
    let owner_1 = owner_dev
        .send(conv, "own-1", text("rules"))
        .await
        .unwrap()
        .seq;
    let ada_1 = ada_dev
        .send(conv, "ada-1", text("noted"))
        .await
        .unwrap()
        .seq;
    let ada_2 = ada_dev.send(conv, "ada-2", text("typo")).await.unwrap().seq;
    let mia_2 = mia_dev
        .send(conv, "mia-2", text("later"))
        .await
        .unwrap()
        .seq;
    let sent_at = Instant::now();

    /// Waits for the recall of `target` on every device.
    async fn recalled_everywhere(
        devices: &[&Connection],
        conv: ConversationId,
        ack: Seq,
        target: Seq,
        by: UserId,
    ) {
        for dev in devices {
            let ev = expect_event(dev, |e| match e {
                Event::Conversation(ConversationEvent::Recall(r))
                    if r.conversation == conv && r.seq == ack =>
                {
                    Some(r.clone())
                }
                _ => None,
            })
            .await;
            assert_eq!((ev.target_seq, ev.by), (target, by));
        }
    }

    // A member recalls their own message within the window, nobody else's.
    let ack = mia_dev.recall(conv, mia_1).await.unwrap();
    recalled_everywhere(&devices, conv, ack.seq, mia_1, mia.id).await;
    assert_eq!(
        mia_dev.recall(conv, mia_1).await.unwrap(),
        ack,
        "idempotent"
    );
    assert_eq!(code(mia_dev.recall(conv, max_1).await), "forbidden");
    assert_eq!(code(mia.client.recall(conv, owner_1).await), "forbidden");
    // An admin cannot recall the owner's message.
    assert_eq!(
        code(ada_dev.recall(conv, owner_1).await),
        "insufficient_role"
    );

    // Past the (one-second) window: members no longer, owner and admins still.
    let elapsed = sent_at.elapsed();
    if elapsed < Duration::from_millis(1_100) {
        tokio::time::sleep(Duration::from_millis(1_100) - elapsed).await;
    }
    assert_eq!(
        code(mia_dev.recall(conv, mia_2).await),
        "recall_window_passed"
    );
    let ack = ada.client.recall(conv, max_1).await.unwrap();
    recalled_everywhere(&devices, conv, ack.seq, max_1, ada.id).await;
    let ack = owner_dev.recall(conv, ada_1).await.unwrap();
    recalled_everywhere(&devices, conv, ack.seq, ada_1, owner.id).await;
    let ack = ada_dev.recall(conv, ada_2).await.unwrap();
    recalled_everywhere(&devices, conv, ack.seq, ada_2, ada.id).await;

    let page = max
        .client
        .history(conv, Some(Seq(0)), None, None)
        .await
        .unwrap();
    let cleared: Vec<u64> = page
        .events
        .iter()
        .filter_map(|e| match e {
            ConversationEvent::Message(m) if m.recalled => {
                assert!(m.segments.is_empty(), "{m:?}");
                Some(m.seq.0)
            }
            _ => None,
        })
        .collect();
    assert_eq!(cleared, vec![mia_1.0, max_1.0, ada_1.0, ada_2.0]);
    let standing = page
        .events
        .iter()
        .any(|e| matches!(e, ConversationEvent::Message(m) if m.seq == owner_1 && !m.recalled));
    assert!(standing, "the owner's message stands");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn at_all_mentions_and_unread_counts() {
    require_e2e!();
    let dir = TempDir::new("group-at-all");
    let server = Server::start(
        dir.path(),
        &[("QUN_LIMITS__GROUPS__AT_ALL_PER_MANAGER_PER_DAY", "2")],
    );
    let [owner, ada, mia, nat] = users(&server, ["owner", "ada", "mia", "nat"]).await;
    let g = create_group(&owner, "Announcements", JoinMode::Open).await;
    let (gid, conv) = (g.group_id, g.conversation);
    for u in [&ada, &mia, &nat] {
        join_now(u, gid).await;
    }
    owner
        .client
        .set_role(gid, ada.id, Role::Admin)
        .await
        .unwrap();
    let (ada_dev, _) = ada.device(&server, "pc").await;
    let (mia_dev, _) = mia.device(&server, "pc").await;

    let state_of = |list: qun_client::qun_wire::ConversationList| {
        list.conversations
            .into_iter()
            .find(|c| c.conversation == conv)
            .expect("the group is in the member's conversations")
    };
    let state = state_of(mia_dev.conversations().await.unwrap());
    assert_eq!(
        (state.kind, state.group, state.unread, state.mentions),
        (ConversationKind::Group, Some(gid), 0, 0),
        "notices are not unread messages"
    );

    ada_dev
        .send(conv, "a-1", at_all(" meeting at 8"))
        .await
        .unwrap();
    let mention = vec![
        Segment::Mention { user: mia.id },
        Segment::Text {
            text: " bring the book".into(),
        },
    ];
    ada_dev.send(conv, "a-2", mention).await.unwrap();
    owner
        .client
        .send(conv, "o-1", text("see you"))
        .await
        .unwrap();
    let last = mia_dev.send(conv, "m-1", text("coming")).await.unwrap().seq;

    let state = state_of(mia_dev.conversations().await.unwrap());
    assert_eq!(
        (state.last_seq, state.unread, state.mentions),
        (last, 3, 2),
        "three messages by others, two of them mention mia"
    );
    let state = state_of(nat.client.conversations().await.unwrap());
    assert_eq!(
        (state.unread, state.mentions),
        (4, 1),
        "only @all mentions nat"
    );
    let read = mia_dev.read(conv, last).await.unwrap();
    assert_eq!((read.read_seq, read.unread), (last, 0));
    let state = state_of(mia.client.conversations().await.unwrap());
    assert_eq!((state.unread, state.mentions), (0, 0));

    // Plain members may not @all, nor see the quota.
    assert_eq!(
        code(mia_dev.send(conv, "m-all", at_all(" hi")).await),
        "insufficient_role"
    );
    assert_eq!(
        code(mia.client.at_all_quota(gid).await),
        "insufficient_role"
    );

    // The manager's daily quota (2 here) and the group's (10).
    let quota = ada.client.at_all_quota(gid).await.unwrap();
    assert_eq!((quota.group_remaining, quota.mine_remaining), (9, 1));
    ada_dev.send(conv, "a-3", at_all(" again")).await.unwrap();
    let quota = ada.client.at_all_quota(gid).await.unwrap();
    assert_eq!((quota.group_remaining, quota.mine_remaining), (8, 0));
    let err = failure(ada_dev.send(conv, "a-4", at_all(" once more")).await);
    assert_eq!(err.code(), Some("limit_reached"));
    let body = err.body().unwrap();
    assert_eq!(
        (body.limit.as_deref(), body.max),
        (Some("at_all_per_manager_per_day"), Some(2))
    );
    let err = failure(ada.client.send(conv, "a-5", at_all(" over rest")).await);
    assert_eq!(err.code(), Some("limit_reached"));
    let quota = ada.client.at_all_quota(gid).await.unwrap();
    assert_eq!(
        (quota.group_remaining, quota.mine_remaining),
        (8, 0),
        "refused @all spend nothing"
    );
    owner
        .client
        .send(conv, "o-2", at_all(" last call"))
        .await
        .unwrap();
    let quota = owner.client.at_all_quota(gid).await.unwrap();
    assert_eq!((quota.group_remaining, quota.mine_remaining), (7, 1));
    let state = state_of(nat.client.conversations().await.unwrap());
    assert_eq!((state.unread, state.mentions), (6, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn temporary_sessions_between_group_members() {
    require_e2e!();
    let dir = TempDir::new("group-temp");
    let server = Server::start(dir.path(), &[]);
    let [xia, yan, wes, zed] = users(&server, ["xia", "yan", "wes", "zed"]).await;
    let g = create_group(&xia, "Neighbours", JoinMode::Open).await;
    join_now(&yan, g.group_id).await;
    join_now(&wes, g.group_id).await;
    let (xia_dev, _) = xia.device(&server, "pc").await;
    let (yan_dev, _) = yan.device(&server, "pc").await;

    // Two members who are not friends talk both ways, live.
    let session = xia.client.open_temp_session(yan.id).await.unwrap();
    assert_eq!(
        (session.kind, session.peer, session.group),
        (ConversationKind::Direct, Some(yan.id), None)
    );
    let conv = session.conversation;
    assert_eq!(
        yan.client
            .open_temp_session(xia.id)
            .await
            .unwrap()
            .conversation,
        conv,
        "one conversation for the pair"
    );
    let to_yan = xia_dev
        .send(conv, "x-1", text("hi neighbour"))
        .await
        .unwrap();
    let got = stream(&yan_dev, conv, Seq(0), to_yan.seq).await;
    assert_eq!(message_of(&got[0]), (xia.id, "x-1".to_string()));
    let to_xia = yan_dev.send(conv, "y-1", text("hello!")).await.unwrap();
    let got = stream(&xia_dev, conv, to_yan.seq, to_xia.seq).await;
    assert_eq!(
        got.iter().map(message_of).collect::<Vec<_>>(),
        vec![(yan.id, "y-1".to_string())]
    );

    // Strangers share no group.
    assert_eq!(
        code(zed.client.open_temp_session(yan.id).await),
        "no_shared_group"
    );
    assert_eq!(
        code(zed.client.send(conv, "z-1", text("hey")).await),
        "not_a_member"
    );

    // Yan turns temporary sessions off: new ones and messages to yan are refused.
    yan.client
        .update_profile(&ProfilePatch {
            accept_temp_sessions: Some(false),
            ..ProfilePatch::default()
        })
        .await
        .unwrap();
    assert_eq!(
        code(wes.client.open_temp_session(yan.id).await),
        "temp_session_refused"
    );
    assert_eq!(
        code(xia_dev.send(conv, "x-2", text("still there?")).await),
        "temp_session_refused"
    );
    // Friends are not temporary sessions.
    let friends = befriend(&wes, &yan).await;
    assert_eq!(
        wes.client
            .open_temp_session(yan.id)
            .await
            .unwrap()
            .conversation,
        friends
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn discovery_finds_listed_groups_and_unlisted_only_by_number() {
    require_e2e!();
    let dir = TempDir::new("group-search");
    let server = Server::start(dir.path(), &[]);
    let [owner, seeker] = users(&server, ["owner", "seeker"]).await;
    let make = |name: &str, intro: &str, category: &str, listed: bool| CreateGroupRequest {
        name: name.into(),
        intro: intro.into(),
        category: category.into(),
        tags: Vec::new(),
        listed,
        join_mode: JoinMode::Open,
    };
    let c = &owner.client;
    let lovers = c
        .create_group(&make("Rust Lovers", "systems programming", "tech", true))
        .await
        .unwrap();
    let secret = c
        .create_group(&make(
            "Secret Rustaceans",
            "invite by number",
            "tech",
            false,
        ))
        .await
        .unwrap();
    let cooking = c
        .create_group(&make(
            "Cast Iron",
            "keeping pans free of rust",
            "food",
            true,
        ))
        .await
        .unwrap();
    let garden = c
        .create_group(&make("Gardening", "tomatoes", "outdoors", true))
        .await
        .unwrap();
    assert!(!secret.listed);

    let s = &seeker.client;
    let ids = |found: Vec<GroupView>| {
        let mut ids: Vec<GroupId> = found.into_iter().map(|g| g.group_id).collect();
        ids.sort();
        ids
    };
    let by_keyword = ids(s
        .search_groups(None, Some("rust"), None, None)
        .await
        .unwrap());
    assert_eq!(
        by_keyword,
        vec![lovers.group_id, cooking.group_id],
        "name or introduction, listed only"
    );
    assert_eq!(
        ids(s
            .search_groups(None, None, Some("tech"), None)
            .await
            .unwrap()),
        vec![lovers.group_id]
    );
    assert_eq!(
        ids(s
            .search_groups(None, Some("rust"), Some("food"), None)
            .await
            .unwrap()),
        vec![cooking.group_id]
    );
    assert!(s
        .search_groups(None, Some("Secret"), None, None)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        ids(s
            .search_groups(Some(secret.group_id), None, None, None)
            .await
            .unwrap()),
        vec![secret.group_id],
        "an unlisted group by its exact number"
    );
    assert_eq!(
        ids(s
            .search_groups(Some(garden.group_id), None, None, None)
            .await
            .unwrap()),
        vec![garden.group_id]
    );
    assert!(s
        .search_groups(Some(GroupId(garden.group_id.0 + 100)), None, None, None)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        code(s.search_groups(None, None, None, None).await),
        "invalid_field"
    );
    // Anyone may look at a group's profile.
    assert_eq!(
        s.group(secret.group_id).await.unwrap().name,
        "Secret Rustaceans"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transfer_and_dissolve() {
    require_e2e!();
    let dir = TempDir::new("group-dissolve");
    let server = Server::start(dir.path(), &[]);
    let [old, ada, neo, out] = users(&server, ["old", "ada", "neo", "out"]).await;
    let g = old
        .client
        .create_group(&CreateGroupRequest {
            name: "Hand-over".into(),
            intro: "soon gone".into(),
            category: "misc".into(),
            tags: Vec::new(),
            listed: true,
            join_mode: JoinMode::Open,
        })
        .await
        .unwrap();
    let (gid, conv) = (g.group_id, g.conversation);
    join_now(&ada, gid).await;
    join_now(&neo, gid).await;
    old.client.set_role(gid, ada.id, Role::Admin).await.unwrap();
    let (old_dev, _) = old.device(&server, "pc").await;
    let (ada_dev, _) = ada.device(&server, "pc").await;
    let (neo_dev, _) = neo.device(&server, "pc").await;
    let devices = [&old_dev, &ada_dev, &neo_dev];

    // Transfer: the old owner becomes an admin; everyone is told.
    assert_eq!(
        code(ada.client.transfer_group(gid, neo.id).await),
        "insufficient_role"
    );
    let view = old.client.transfer_group(gid, neo.id).await.unwrap();
    assert_eq!(view.owner, neo.id);
    for dev in devices {
        let n = expect_notice(dev, conv, |n| {
            matches!(n, GroupNotice::OwnerTransferred { .. })
        })
        .await;
        assert_eq!(
            n.notice,
            GroupNotice::OwnerTransferred {
                from: old.id,
                to: neo.id
            }
        );
    }
    assert_eq!(
        old.client.my_membership(gid).await.unwrap().role,
        Role::Admin
    );
    assert_eq!(
        neo.client.my_membership(gid).await.unwrap().role,
        Role::Owner
    );
    assert_eq!(
        code(old.client.dissolve_group(gid).await),
        "insufficient_role"
    );
    let goodbye = neo_dev
        .send(conv, "n-1", text("goodbye"))
        .await
        .unwrap()
        .seq;

    // Dissolve: everyone is told, the group turns read-only.
    neo.client.dissolve_group(gid).await.unwrap();
    let mut dissolved = Seq(0);
    for dev in devices {
        let n = expect_notice(dev, conv, |n| matches!(n, GroupNotice::Dissolved { .. })).await;
        assert_eq!(n.notice, GroupNotice::Dissolved { by: neo.id });
        dissolved = n.seq;
    }
    assert!(neo.client.group(gid).await.unwrap().dissolved_at.is_some());

    let draft = AnnouncementDraft {
        title: "t".into(),
        body: "b".into(),
        pinned: false,
        require_confirm: false,
        entrance: false,
    };
    let patch = GroupSettingsPatch {
        name: Some("new name".into()),
        ..GroupSettingsPatch::default()
    };
    let (n, a, o) = (&neo.client, &ada.client, &old.client);
    let refusals = [
        ("send", code(o.send(conv, "o-x", text("hello?")).await)),
        ("send ws", code(neo_dev.send(conv, "n-x", text("hi")).await)),
        ("recall", code(neo_dev.recall(conv, goodbye).await)),
        ("settings", code(n.update_group(gid, &patch).await)),
        ("tier", code(n.set_group_tier(gid, 1).await)),
        ("transfer", code(n.transfer_group(gid, ada.id).await)),
        ("dissolve", code(n.dissolve_group(gid).await)),
        ("role", code(n.set_role(gid, ada.id, Role::Member).await)),
        (
            "title",
            code(n.set_title(gid, ada.id, Some("x"), None).await),
        ),
        ("own card", code(a.set_card(gid, ada.id, Some("x")).await)),
        ("kick", code(n.kick(gid, ada.id, false).await)),
        ("mute", code(a.mute_member(gid, old.id, 60).await)),
        ("mute all", code(n.mute_all(gid, true).await)),
        ("invite", code(n.invite(gid, out.id).await)),
        ("link", code(n.create_invite_link(gid, None, None).await)),
        ("announce", code(n.create_announcement(gid, &draft).await)),
        ("essence", code(n.set_essence(gid, goodbye, true).await)),
        ("leave", code(a.leave_group(gid).await)),
        ("apply", code(out.client.join_group(gid, "hi", None).await)),
    ];
    for (what, got) in refusals {
        assert_eq!(got, "group_dissolved", "{what}");
    }

    // Members keep reading; search no longer finds it.
    for user in [&old, &ada, &neo] {
        let page = user.client.history(conv, None, None, None).await.unwrap();
        let last = page.events.last().unwrap();
        assert_eq!(
            last.seq(),
            dissolved,
            "the dissolved notice ends the stream"
        );
        assert!(page.events.iter().any(|e| e.seq() == goodbye));
    }
    let page = ada_dev.history(conv, None, None, None).await.unwrap();
    assert_eq!(page.events.last().unwrap().seq(), dissolved);
    assert_eq!(
        neo.client
            .members(gid, None, None)
            .await
            .unwrap()
            .members
            .len(),
        3
    );
    assert!(out
        .client
        .search_groups(None, Some("Hand-over"), None, None)
        .await
        .unwrap()
        .is_empty());
    assert!(out
        .client
        .search_groups(Some(gid), None, None, None)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_joins_near_the_cap_hold_over_http() {
    require_e2e!();
    let dir = TempDir::new("group-cap");
    let config = dir.path().join("qun.toml");
    std::fs::write(
        &config,
        "[[limits.groups.tiers]]\n\
         name = \"tiny\"\n\
         max_members = 10\n\
         max_admins = 2\n\
         drive_quota_bytes = 1048576\n\
         album_quota_bytes = 1048576\n\
         coins_per_day = 0\n",
    )
    .unwrap();
    let server = Server::start(
        dir.path(),
        &[
            ("QUN_CONFIG", config.to_str().unwrap()),
            // Cheap password hashes: this test registers 26 accounts.
            ("QUN_LIMITS__ARGON2_MEMORY_KIB", "1024"),
            ("QUN_LIMITS__ARGON2_ITERATIONS", "1"),
        ],
    );
    let owner = User::new(&server, "owner").await;
    let g = create_group(&owner, "Tiny", JoinMode::Open).await;
    assert_eq!((g.tier_name.as_str(), g.max_members), ("tiny", 10));
    let (gid, conv) = (g.group_id, g.conversation);
    let names: [String; 25] = std::array::from_fn(|i| format!("joiner {i}"));
    let joiners = users(&server, names.each_ref().map(String::as_str)).await;

    // 25 joins at once over HTTP: exactly nine fit beside the owner.
    let tasks: Vec<_> = joiners
        .iter()
        .map(|u| {
            let client = u.client.clone();
            tokio::spawn(async move { client.join_group(gid, "", None).await })
        })
        .collect();
    let mut admitted = Vec::new();
    let mut refused = Vec::new();
    for (user, task) in joiners.iter().zip(tasks) {
        match task.await.unwrap() {
            Ok(result) => {
                assert!(result.joined, "{result:?}");
                admitted.push(user.clone());
            }
            Err(err) => {
                assert_eq!(err.code(), Some("limit_reached"), "{err:?}");
                let body = err.body().unwrap();
                assert_eq!(
                    (body.limit.as_deref(), body.max),
                    (Some("max_members"), Some(10))
                );
                refused.push(user.clone());
            }
        }
    }
    assert_eq!((admitted.len(), refused.len()), (9, 16));
    assert_eq!(owner.client.group(gid).await.unwrap().member_count, 10);
    let listed = owner.client.members(gid, None, None).await.unwrap().members;
    assert_eq!(listed.len(), 10);
    let late = User::new(&server, "late").await;
    assert_eq!(
        code(late.client.join_group(gid, "", None).await),
        "limit_reached"
    );

    // The turned-away race for a three-use invite link elsewhere: three win.
    let other = create_group(&owner, "Elsewhere", JoinMode::InviteOnly).await;
    let link = owner
        .client
        .create_invite_link(other.group_id, None, Some(3))
        .await
        .unwrap();
    let tasks: Vec<_> = refused
        .iter()
        .map(|u| {
            let client = u.client.clone();
            let code = link.code.clone();
            tokio::spawn(async move { client.join_by_link(&code).await })
        })
        .collect();
    let mut winners = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(result) => {
                assert!(result.joined, "{result:?}");
                winners += 1;
            }
            Err(err) => assert_eq!(err.code(), Some("limit_reached"), "{err:?}"),
        }
    }
    assert_eq!(winners, 3);
    assert_eq!(
        owner
            .client
            .group(other.group_id)
            .await
            .unwrap()
            .member_count,
        4
    );

    // Several members send at once through their own sockets: the acks cover
    // one gap-free run and every socket receives all of it exactly once.
    let mut devices = vec![owner.device(&server, "pc").await.0];
    for u in &admitted[..4] {
        devices.push(u.device(&server, "pc").await.0);
    }
    let base = owner
        .client
        .history(conv, None, None, Some(1))
        .await
        .unwrap()
        .events[0]
        .seq();
    const EACH: usize = 10;
    let senders: Vec<_> = devices
        .iter()
        .enumerate()
        .map(|(i, dev)| {
            let dev = dev.clone();
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for n in 0..EACH {
                    let ack = dev
                        .send(conv, &format!("s{i}-{n}"), text("burst"))
                        .await
                        .unwrap();
                    seqs.push(ack.seq.0);
                }
                seqs
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in senders {
        let mine = task.await.unwrap();
        assert!(mine.windows(2).all(|w| w[0] < w[1]), "{mine:?}");
        all.extend(mine);
    }
    all.sort_unstable();
    let total = devices.len() * EACH;
    let last = Seq(base.0 + total as u64);
    assert_eq!(all, span(base, last), "acks are gap-free");
    for dev in &devices {
        let got = collect(dev, conv, base, total).await;
        let mut got = seqs(&got);
        let arrival = got.clone();
        got.sort_unstable();
        assert_eq!(
            got,
            span(base, last),
            "every socket gets every message once"
        );
        // Live events leave a node in seq order, even from concurrent senders.
        assert_eq!(arrival, got, "live arrival order under concurrent sends");
    }
}
