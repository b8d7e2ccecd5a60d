//! The storage conformance suite: the [`Store`] contract as executable checks.
//!
//! Every adapter calls [`run_all`] from its own tests on a fresh, empty store
//! and must pass it unchanged (Garage's `test_suite`). Each check creates its
//! own users, so the checks stay independent on one shared store; a failing
//! check panics with a message naming the broken contract.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use crate::model::*;
use crate::{
    CategoryId, ConversationId, Error, FriendRequestId, Seq, SessionId, Store, UserId,
    DEFAULT_CATEGORY,
};

/// The first automatically assigned number the suite asks for.
pub const FIRST_NUMBER: UserId = UserId(10001);

/// A user number no check ever creates.
const NOBODY: UserId = UserId(4_000_000_000_000);
/// A category id no check ever creates.
const NO_CATEGORY: CategoryId = CategoryId(4_000_000_000_000);
/// A friend request id no check ever creates.
const NO_REQUEST: FriendRequestId = FriendRequestId(4_000_000_000_000);
/// A conversation id no check ever creates.
const NO_CONVERSATION: ConversationId = ConversationId(4_000_000_000_000);
/// A day number for likes.
const DAY: i64 = 19_700;

/// Runs every check on `store`, which must be fresh and empty.
pub async fn run_all(store: Arc<dyn Store>) {
    let s = store.as_ref();
    check_user_numbers(s).await;
    check_user_records_and_listing(s).await;
    check_profile_changes(s).await;
    check_sessions(s).await;
    check_friend_request_accept(s).await;
    check_friend_request_refuse(s).await;
    check_accept_into_category(s).await;
    check_friend_update_and_remove(s).await;
    check_categories(s).await;
    check_blacklist(s).await;
    check_likes(s).await;
    check_append_sequence(s).await;
    check_segments_round_trip(s).await;
    check_append_idempotency(s).await;
    check_recall(s).await;
    check_event_ranges(s).await;
    check_conversation_states(s).await;
    check_mark_read(s).await;
    check_concurrent_appends(&store).await;
    check_concurrent_retries(&store).await;
    check_concurrent_user_creation(&store).await;
    check_concurrent_likes(&store).await;
}

// --- helpers ----------------------------------------------------------------

/// Asserts that a result is an error matching a pattern.
macro_rules! assert_err {
    ($result:expr, $pattern:pat, $what:expr) => {
        match $result {
            Err($pattern) => {}
            other => panic!(
                "{}: expected Err({}), got {:?}",
                $what,
                stringify!($pattern),
                other
            ),
        }
    };
}

/// A strictly increasing clock, so "oldest first" and "most recent first"
/// orderings are well defined even when checks run back to back.
fn tick() -> i64 {
    static NOW: AtomicI64 = AtomicI64::new(1_700_000_000_000);
    NOW.fetch_add(1000, Ordering::Relaxed)
}

fn new_user_record(number: Option<UserId>, nickname: &str) -> NewUser {
    NewUser {
        number,
        nickname: nickname.to_owned(),
        password_hash: format!("$argon2id$v=19$conformance${nickname}"),
        created_at: tick(),
        first_number: FIRST_NUMBER,
    }
}

async fn new_user(store: &dyn Store, nickname: &str) -> UserId {
    store
        .create_user(new_user_record(None, nickname))
        .await
        .expect("create_user with an automatic number")
}

async fn befriend(store: &dyn Store, a: UserId, b: UserId) -> ConversationId {
    let request = store
        .create_friend_request(a, b, "hello", tick())
        .await
        .expect("create_friend_request");
    store
        .accept_friend_request(request.id, None, DEFAULT_CATEGORY, tick())
        .await
        .expect("accept_friend_request")
}

fn text(s: &str) -> Vec<Segment> {
    vec![Segment::Text { text: s.to_owned() }]
}

fn message(
    conversation: ConversationId,
    sender: UserId,
    client_msg_id: &str,
    body: &str,
) -> Append {
    Append {
        conversation,
        sender,
        client_msg_id: client_msg_id.to_owned(),
        time: tick(),
        body: AppendBody::Message(text(body)),
    }
}

fn recall(
    conversation: ConversationId,
    sender: UserId,
    client_msg_id: &str,
    target: u64,
) -> Append {
    Append {
        conversation,
        sender,
        client_msg_id: client_msg_id.to_owned(),
        time: tick(),
        body: AppendBody::Recall {
            target: Seq(target),
        },
    }
}

async fn send(
    store: &dyn Store,
    conversation: ConversationId,
    sender: UserId,
    client_msg_id: &str,
) -> Appended {
    store
        .append(message(conversation, sender, client_msg_id, client_msg_id))
        .await
        .expect("append a message")
}

async fn seqs(store: &dyn Store, conversation: ConversationId, range: EventRange) -> Vec<u64> {
    store
        .events(conversation, range)
        .await
        .expect("events")
        .iter()
        .map(|e| e.seq.0)
        .collect()
}

async fn state(store: &dyn Store, user: UserId, conversation: ConversationId) -> ConversationState {
    store
        .conversation_state(user, conversation)
        .await
        .expect("conversation_state")
        .expect("the participant sees the conversation")
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

// --- accounts ---------------------------------------------------------------

/// Automatic numbers count up from `first_number`, skip chosen numbers and
/// are never reused; a taken chosen number is a conflict.
async fn check_user_numbers(store: &dyn Store) {
    let empty = store.users(UserId(0), 1).await.expect("users").is_empty();
    let a = new_user(store, "numbers-a").await;
    if empty {
        assert_eq!(
            a, FIRST_NUMBER,
            "the first automatic number of an empty store is first_number"
        );
    } else {
        assert!(a >= FIRST_NUMBER, "automatic numbers start at first_number");
    }
    let b = new_user(store, "numbers-b").await;
    assert_eq!(b.0, a.0 + 1, "automatic numbers count upward by one");

    let pretty = UserId(b.0 + 1);
    let got = store
        .create_user(new_user_record(Some(pretty), "pretty"))
        .await
        .expect("a free chosen number");
    assert_eq!(got, pretty, "a chosen number is used as given");
    let c = new_user(store, "numbers-c").await;
    assert_eq!(c.0, b.0 + 2, "automatic numbering skips a chosen number");

    assert_err!(
        store
            .create_user(new_user_record(Some(pretty), "again"))
            .await,
        Error::Conflict(_),
        "choosing a taken chosen number"
    );
    assert_err!(
        store.create_user(new_user_record(Some(a), "again")).await,
        Error::Conflict(_),
        "choosing a number assigned automatically"
    );

    // A raised first_number moves the counter up; lowering it again does not
    // bring back the numbers below.
    let raised = UserId(c.0 + 500);
    let d = store
        .create_user(NewUser {
            first_number: raised,
            ..new_user_record(None, "numbers-d")
        })
        .await
        .expect("create_user with a raised first_number");
    assert_eq!(
        d, raised,
        "a raised first_number is the next automatic number"
    );
    let e = new_user(store, "numbers-e").await;
    assert_eq!(
        e.0,
        d.0 + 1,
        "numbers are never reused after first_number is lowered again"
    );
}

/// `user` returns what was stored, `users` pages ascending by number.
async fn check_user_records_and_listing(store: &dyn Store) {
    let record = new_user_record(None, "Zhang San");
    let a = store
        .create_user(record.clone())
        .await
        .expect("create_user");
    let user = store
        .user(a)
        .await
        .expect("user")
        .expect("the created user exists");
    assert_eq!(
        user,
        User {
            id: a,
            nickname: "Zhang San".into(),
            signature: String::new(),
            avatar: None,
            password_hash: record.password_hash.clone(),
            disabled: false,
            created_at: record.created_at,
            likes: 0,
        },
        "a new user has the given fields and empty defaults"
    );
    assert_eq!(
        store.user(NOBODY).await.expect("user"),
        None,
        "an unknown number is None"
    );

    let b = new_user(store, "list-b").await;
    let c = new_user(store, "list-c").await;
    let page: Vec<UserId> = store
        .users(UserId(a.0 - 1), 2)
        .await
        .expect("users")
        .iter()
        .map(|u| u.id)
        .collect();
    assert_eq!(
        page,
        vec![a, b],
        "users(after, limit) starts after the bound and stops at the limit"
    );
    let page: Vec<UserId> = store
        .users(b, 10)
        .await
        .expect("users")
        .iter()
        .map(|u| u.id)
        .collect();
    assert_eq!(
        page.first(),
        Some(&c),
        "users(after) excludes the bound itself"
    );
    assert!(
        page.windows(2).all(|w| w[0] < w[1]),
        "users are listed in ascending order: {page:?}"
    );
    assert!(
        store.users(a, 0).await.expect("users").is_empty(),
        "a limit of 0 lists nobody"
    );
}

/// Profile changes are partial; unknown users are `NotFound`.
async fn check_profile_changes(store: &dyn Store) {
    let u = new_user(store, "profile").await;
    store
        .update_profile(
            u,
            ProfileUpdate {
                nickname: Some("Li Si".into()),
                ..Default::default()
            },
        )
        .await
        .expect("update nickname");
    store
        .update_profile(
            u,
            ProfileUpdate {
                signature: Some("你好 world".into()),
                ..Default::default()
            },
        )
        .await
        .expect("update signature");
    store
        .update_profile(
            u,
            ProfileUpdate {
                avatar: Some(Some("file:abc".into())),
                ..Default::default()
            },
        )
        .await
        .expect("set avatar");
    let user = store.user(u).await.unwrap().unwrap();
    assert_eq!(
        user.nickname, "Li Si",
        "a nickname change stays when others follow"
    );
    assert_eq!(
        user.signature, "你好 world",
        "the signature is stored as given"
    );
    assert_eq!(
        user.avatar.as_deref(),
        Some("file:abc"),
        "the avatar is set"
    );

    store
        .update_profile(
            u,
            ProfileUpdate {
                avatar: Some(None),
                ..Default::default()
            },
        )
        .await
        .expect("clear avatar");
    store
        .update_profile(u, ProfileUpdate::default())
        .await
        .expect("an empty update");
    let user = store.user(u).await.unwrap().unwrap();
    assert_eq!(user.avatar, None, "Some(None) clears the avatar");
    assert_eq!(
        (user.nickname.as_str(), user.signature.as_str()),
        ("Li Si", "你好 world"),
        "None leaves fields"
    );

    store
        .set_password_hash(u, "$argon2id$new")
        .await
        .expect("set_password_hash");
    assert_eq!(
        store.user(u).await.unwrap().unwrap().password_hash,
        "$argon2id$new"
    );
    store.set_disabled(u, true).await.expect("disable");
    assert!(
        store.user(u).await.unwrap().unwrap().disabled,
        "the account is disabled"
    );
    store.set_disabled(u, false).await.expect("enable");
    assert!(
        !store.user(u).await.unwrap().unwrap().disabled,
        "the account is enabled again"
    );

    assert_err!(
        store
            .update_profile(
                NOBODY,
                ProfileUpdate {
                    nickname: Some("x".into()),
                    ..Default::default()
                }
            )
            .await,
        Error::NotFound(_),
        "update_profile of an unknown user"
    );
    assert_err!(
        store.set_password_hash(NOBODY, "h").await,
        Error::NotFound(_),
        "set_password_hash of an unknown user"
    );
    assert_err!(
        store.set_disabled(NOBODY, true).await,
        Error::NotFound(_),
        "set_disabled of an unknown user"
    );
}

/// Sessions are found by token hash and id, listed until revoked, and each
/// revocation reports only what it revoked.
async fn check_sessions(store: &dyn Store) {
    let u = new_user(store, "sessions").await;
    let other = new_user(store, "sessions-other").await;
    let session = |user: UserId, n: u32, kind: DeviceKind, expires_in: i64| {
        let created_at = tick();
        Session {
            id: SessionId(format!("conformance-{user}-{n}")),
            user,
            token_hash: format!("token-hash-{user}-{n}"),
            device_kind: kind,
            device_name: format!("device {n}"),
            created_at,
            expires_at: created_at + expires_in,
            revoked_at: None,
        }
    };
    let s1 = session(u, 1, DeviceKind::Pc, 3_600_000);
    let s2 = session(u, 2, DeviceKind::Mobile, 3_600_000);
    let s3 = session(u, 3, DeviceKind::Web, -1); // already expired
    let s4 = session(u, 4, DeviceKind::Web, 3_600_000);
    let o1 = session(other, 1, DeviceKind::Pc, 3_600_000);
    for s in [&s1, &s2, &s3, &s4, &o1] {
        store
            .create_session(s.clone())
            .await
            .expect("create_session");
    }

    assert_eq!(
        store.session_by_token(&s1.token_hash).await.unwrap(),
        Some(s1.clone()),
        "session_by_token"
    );
    assert_eq!(
        store.session(&s2.id).await.unwrap(),
        Some(s2.clone()),
        "session by id"
    );
    assert_eq!(
        store.session_by_token("no-such-hash").await.unwrap(),
        None,
        "unknown token hash"
    );
    assert_eq!(
        store
            .session(&SessionId("no-such-session".into()))
            .await
            .unwrap(),
        None,
        "unknown session id"
    );
    let live = |v: Vec<Session>| sorted(v.into_iter().map(|s| s.id).collect::<Vec<_>>());
    assert_eq!(
        live(store.sessions(u).await.unwrap()),
        vec![s1.id.clone(), s2.id.clone(), s3.id.clone(), s4.id.clone()],
        "sessions lists live sessions, expired ones included"
    );

    let at = tick();
    assert_eq!(
        store
            .revoke_sessions(u, Some(&s2.id), None, at)
            .await
            .unwrap(),
        vec![s2.id.clone()],
        "revoking one session"
    );
    assert_eq!(
        store.session(&s2.id).await.unwrap().unwrap().revoked_at,
        Some(at),
        "revoked_at is recorded"
    );
    assert!(
        store
            .revoke_sessions(u, Some(&s2.id), None, tick())
            .await
            .unwrap()
            .is_empty(),
        "revoking twice"
    );
    assert_eq!(
        store.session(&s2.id).await.unwrap().unwrap().revoked_at,
        Some(at),
        "a second revocation keeps the first time"
    );
    assert!(
        store
            .revoke_sessions(u, Some(&s3.id), Some(&s3.id), tick())
            .await
            .unwrap()
            .is_empty(),
        "keep wins over only"
    );
    assert!(
        store
            .revoke_sessions(u, Some(&o1.id), None, tick())
            .await
            .unwrap()
            .is_empty(),
        "another user's session is not revoked"
    );
    assert_eq!(
        store.session(&o1.id).await.unwrap().unwrap().revoked_at,
        None,
        "another user's session stays live"
    );

    assert_eq!(
        sorted(
            store
                .revoke_sessions(u, None, Some(&s1.id), tick())
                .await
                .unwrap()
        ),
        vec![s3.id.clone(), s4.id.clone()],
        "revoking all except keep reports only the newly revoked"
    );
    assert!(
        store
            .revoke_sessions(u, None, Some(&s1.id), tick())
            .await
            .unwrap()
            .is_empty(),
        "revoking all twice"
    );
    assert_eq!(
        live(store.sessions(u).await.unwrap()),
        vec![s1.id.clone()],
        "sessions excludes revoked ones"
    );

    assert_eq!(
        store.revoke_sessions(u, None, None, tick()).await.unwrap(),
        vec![s1.id.clone()],
        "revoking all"
    );
    assert!(
        store.sessions(u).await.unwrap().is_empty(),
        "no live session is left"
    );
    assert!(
        store
            .session_by_token(&s1.token_hash)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some(),
        "session_by_token returns revoked sessions too"
    );
    assert_eq!(
        live(store.sessions(other).await.unwrap()),
        vec![o1.id.clone()],
        "other users are unaffected"
    );
}

// --- friends ----------------------------------------------------------------

/// A request is pending once per direction; accepting it accepts the reverse
/// one too, creates both entries and the direct conversation, exactly once.
async fn check_friend_request_accept(store: &dyn Store) {
    let a = new_user(store, "request-a").await;
    let b = new_user(store, "request-b").await;
    let t = tick();
    let r = store
        .create_friend_request(a, b, "I am A", t)
        .await
        .expect("create_friend_request");
    assert_eq!(
        (r.from, r.to, r.message.as_str(), r.status, r.created_at),
        (a, b, "I am A", RequestStatus::Pending, t),
        "a new request is pending with the given fields"
    );
    assert_eq!(
        store.friend_request(r.id).await.unwrap(),
        Some(r.clone()),
        "friend_request by id"
    );
    assert_eq!(
        store.friend_request(NO_REQUEST).await.unwrap(),
        None,
        "an unknown request"
    );
    assert_err!(
        store.create_friend_request(a, b, "again", tick()).await,
        Error::Conflict(_),
        "a second pending request in the same direction"
    );

    let r2 = store
        .create_friend_request(b, a, "I am B", tick())
        .await
        .expect("a request the other way");
    assert_eq!(
        store.pending_friend_requests(a).await.unwrap(),
        vec![r.clone(), r2.clone()],
        "pending, oldest first, both directions"
    );
    assert_eq!(
        store.pending_friend_requests(b).await.unwrap(),
        vec![r.clone(), r2.clone()],
        "pending, seen by the recipient"
    );
    assert_eq!(
        store.friend(a, b).await.unwrap(),
        None,
        "no friendship before acceptance"
    );
    assert_eq!(
        store.direct_conversation(a, b).await.unwrap(),
        None,
        "no conversation before acceptance"
    );

    let since = tick();
    let conv = store
        .accept_friend_request(r.id, Some("Al".into()), DEFAULT_CATEGORY, since)
        .await
        .expect("accept_friend_request");
    assert_eq!(
        store.friend_request(r.id).await.unwrap().unwrap().status,
        RequestStatus::Accepted,
        "the request is accepted"
    );
    assert_eq!(
        store.friend_request(r2.id).await.unwrap().unwrap().status,
        RequestStatus::Accepted,
        "the pending request in the other direction is accepted too"
    );
    assert!(
        store.pending_friend_requests(a).await.unwrap().is_empty(),
        "nothing pending for the sender"
    );
    assert!(
        store.pending_friend_requests(b).await.unwrap().is_empty(),
        "nothing pending for the recipient"
    );

    let b_sees_a = Friend {
        user: a,
        remark: Some("Al".into()),
        category: DEFAULT_CATEGORY,
        conversation: conv,
        since,
    };
    let a_sees_b = Friend {
        user: b,
        remark: None,
        category: DEFAULT_CATEGORY,
        conversation: conv,
        since,
    };
    assert_eq!(
        store.friend(b, a).await.unwrap(),
        Some(b_sees_a.clone()),
        "the recipient's entry has the remark"
    );
    assert_eq!(
        store.friend(a, b).await.unwrap(),
        Some(a_sees_b.clone()),
        "the sender's entry"
    );
    assert_eq!(
        store.friends(a).await.unwrap(),
        vec![a_sees_b],
        "friends of the sender"
    );
    assert_eq!(
        store.friends(b).await.unwrap(),
        vec![b_sees_a],
        "friends of the recipient"
    );

    let conversation = store
        .conversation(conv)
        .await
        .unwrap()
        .expect("the direct conversation exists");
    assert_eq!(conversation.id, conv);
    assert_eq!(conversation.kind, ConversationKind::Direct);
    assert_eq!(
        sorted(conversation.members),
        sorted(vec![a, b]),
        "both users take part"
    );
    assert_eq!(
        store.direct_conversation(a, b).await.unwrap(),
        Some(conv),
        "direct_conversation(a, b)"
    );
    assert_eq!(
        store.direct_conversation(b, a).await.unwrap(),
        Some(conv),
        "direct_conversation is symmetric"
    );
    assert_eq!(
        store.conversation(NO_CONVERSATION).await.unwrap(),
        None,
        "an unknown conversation"
    );

    assert_err!(
        store
            .accept_friend_request(r.id, None, DEFAULT_CATEGORY, tick())
            .await,
        Error::Conflict(_),
        "accepting twice"
    );
    assert_err!(
        store
            .accept_friend_request(r2.id, None, DEFAULT_CATEGORY, tick())
            .await,
        Error::Conflict(_),
        "accepting the reverse request accepted with the first"
    );
    assert_err!(
        store.refuse_friend_request(r.id).await,
        Error::Conflict(_),
        "refusing an accepted request"
    );
    assert_err!(
        store
            .accept_friend_request(NO_REQUEST, None, DEFAULT_CATEGORY, tick())
            .await,
        Error::NotFound(_),
        "accepting an unknown request"
    );
    assert_err!(
        store.refuse_friend_request(NO_REQUEST).await,
        Error::NotFound(_),
        "refusing an unknown request"
    );
}

/// A refused request makes no friendship and can be followed by a new one.
async fn check_friend_request_refuse(store: &dyn Store) {
    let c = new_user(store, "refuse-c").await;
    let d = new_user(store, "refuse-d").await;
    let r = store
        .create_friend_request(c, d, "hi", tick())
        .await
        .unwrap();
    let refused = store
        .refuse_friend_request(r.id)
        .await
        .expect("refuse_friend_request");
    assert_eq!(
        refused,
        FriendRequest {
            status: RequestStatus::Refused,
            ..r.clone()
        },
        "refuse returns the refused request"
    );
    assert_eq!(
        store.friend_request(r.id).await.unwrap(),
        Some(refused),
        "the refusal is stored"
    );
    assert!(
        store.pending_friend_requests(d).await.unwrap().is_empty(),
        "a refused request is not pending"
    );
    assert_eq!(
        store.friend(c, d).await.unwrap(),
        None,
        "no friendship after a refusal"
    );
    assert_eq!(
        store.direct_conversation(c, d).await.unwrap(),
        None,
        "no conversation after a refusal"
    );
    assert_err!(
        store.refuse_friend_request(r.id).await,
        Error::Conflict(_),
        "refusing twice"
    );
    assert_err!(
        store
            .accept_friend_request(r.id, None, DEFAULT_CATEGORY, tick())
            .await,
        Error::Conflict(_),
        "accepting a refused request"
    );
    let again = store
        .create_friend_request(c, d, "please", tick())
        .await
        .expect("a new request after a refusal");
    assert_eq!(
        store.pending_friend_requests(d).await.unwrap(),
        vec![again],
        "the new request is pending"
    );
}

/// The recipient's entry lands in the chosen category, which must be theirs.
async fn check_accept_into_category(store: &dyn Store) {
    let e = new_user(store, "category-e").await;
    let f = new_user(store, "category-f").await;
    let g = new_user(store, "category-g").await;
    let h = new_user(store, "category-h").await;
    let classmates = store
        .create_category(f, "Classmates", 32)
        .await
        .expect("create_category");
    let r = store
        .create_friend_request(e, f, "hi", tick())
        .await
        .unwrap();
    store
        .accept_friend_request(r.id, Some("Eve".into()), classmates.id, tick())
        .await
        .expect("accept into a category");
    let entry = store.friend(f, e).await.unwrap().unwrap();
    assert_eq!(
        (entry.category, entry.remark.as_deref()),
        (classmates.id, Some("Eve")),
        "the recipient's entry"
    );
    assert_eq!(
        store.friend(e, f).await.unwrap().unwrap().category,
        DEFAULT_CATEGORY,
        "the sender's entry is in the default category"
    );

    let h_category = store.create_category(h, "Not f's", 32).await.unwrap();
    let r2 = store
        .create_friend_request(g, f, "hi", tick())
        .await
        .unwrap();
    for (category, what) in [
        (NO_CATEGORY, "a missing category"),
        (h_category.id, "another user's category"),
    ] {
        assert_err!(
            store
                .accept_friend_request(r2.id, None, category, tick())
                .await,
            Error::NotFound(_),
            format!("accepting into {what}")
        );
        assert_eq!(
            store.friend_request(r2.id).await.unwrap().unwrap().status,
            RequestStatus::Pending,
            "a failed acceptance leaves the request pending"
        );
        assert_eq!(
            store.friend(f, g).await.unwrap(),
            None,
            "a failed acceptance creates no entry"
        );
        assert_eq!(
            store.friend(g, f).await.unwrap(),
            None,
            "a failed acceptance creates no entry"
        );
        assert_eq!(
            store.direct_conversation(f, g).await.unwrap(),
            None,
            "a failed acceptance creates no conversation"
        );
    }
}

/// Entries change partially; removal ends both sides but keeps the history.
async fn check_friend_update_and_remove(store: &dyn Store) {
    let a = new_user(store, "update-a").await;
    let b = new_user(store, "update-b").await;
    let stranger = new_user(store, "update-stranger").await;
    let conv = befriend(store, a, b).await;

    store
        .update_friend(
            a,
            b,
            FriendUpdate {
                remark: Some(Some("Bob".into())),
                category: None,
            },
        )
        .await
        .expect("set a remark");
    let work = store.create_category(a, "Work", 32).await.unwrap();
    store
        .update_friend(
            a,
            b,
            FriendUpdate {
                remark: None,
                category: Some(work.id),
            },
        )
        .await
        .expect("move to a category");
    let entry = store.friend(a, b).await.unwrap().unwrap();
    assert_eq!(
        (entry.remark.as_deref(), entry.category),
        (Some("Bob"), work.id),
        "a partial update keeps the other field"
    );
    store
        .update_friend(
            a,
            b,
            FriendUpdate {
                remark: Some(None),
                category: None,
            },
        )
        .await
        .expect("clear the remark");
    let entry = store.friend(a, b).await.unwrap().unwrap();
    assert_eq!(
        (entry.remark, entry.category),
        (None, work.id),
        "Some(None) clears the remark"
    );
    store
        .update_friend(
            a,
            b,
            FriendUpdate {
                remark: None,
                category: Some(DEFAULT_CATEGORY),
            },
        )
        .await
        .expect("back to the default category");
    assert_eq!(
        store.friend(a, b).await.unwrap().unwrap().category,
        DEFAULT_CATEGORY
    );
    assert_err!(
        store
            .update_friend(
                a,
                b,
                FriendUpdate {
                    remark: Some(Some("x".into())),
                    category: Some(NO_CATEGORY)
                }
            )
            .await,
        Error::NotFound(_),
        "moving a friend to a missing category"
    );
    assert_eq!(
        store.friend(a, b).await.unwrap().unwrap().remark,
        None,
        "a failed update changes nothing"
    );
    assert_eq!(
        store.friend(b, a).await.unwrap().unwrap().remark,
        None,
        "the other side's entry is separate"
    );
    assert_err!(
        store
            .update_friend(
                a,
                stranger,
                FriendUpdate {
                    remark: Some(Some("x".into())),
                    category: None
                }
            )
            .await,
        Error::NotFound(_),
        "updating a non-friend"
    );

    send(store, conv, a, "before-removal").await;
    assert!(
        store.remove_friend(b, a).await.expect("remove_friend"),
        "removing friends reports true"
    );
    assert_eq!(
        store.friend(a, b).await.unwrap(),
        None,
        "removal ends a's side"
    );
    assert_eq!(
        store.friend(b, a).await.unwrap(),
        None,
        "removal ends b's side"
    );
    assert!(
        store.friends(a).await.unwrap().is_empty() && store.friends(b).await.unwrap().is_empty()
    );
    assert!(
        !store.remove_friend(a, b).await.unwrap(),
        "removing non-friends reports false"
    );
    assert_eq!(
        store.direct_conversation(a, b).await.unwrap(),
        Some(conv),
        "the conversation remains"
    );
    assert!(
        store.conversation(conv).await.unwrap().is_some(),
        "the conversation remains"
    );
    assert!(
        store.event(conv, Seq(1)).await.unwrap().is_some(),
        "the history remains"
    );
    assert_eq!(
        befriend(store, a, b).await,
        conv,
        "befriending again finds the same conversation"
    );
}

/// Categories are per user, renamable, deletable (friends fall back to the
/// default) and limited.
async fn check_categories(store: &dyn Store) {
    let u = new_user(store, "categories").await;
    let other = new_user(store, "categories-other").await;
    let friend = new_user(store, "categories-friend").await;
    befriend(store, u, friend).await;
    assert!(
        store.categories(u).await.unwrap().is_empty(),
        "the default category is not listed"
    );

    let family = store
        .create_category(u, "Family", 3)
        .await
        .expect("create_category");
    let work = store
        .create_category(u, "Work", 3)
        .await
        .expect("create_category");
    assert_eq!(family.name, "Family");
    assert!(
        family.id != work.id && family.id != DEFAULT_CATEGORY && work.id != DEFAULT_CATEGORY,
        "ids are distinct and not the default"
    );
    let listed = |mut v: Vec<Category>| {
        v.sort_by_key(|c| c.id);
        v
    };
    assert_eq!(
        listed(store.categories(u).await.unwrap()),
        vec![family.clone(), work.clone()],
        "categories"
    );
    assert!(
        store.categories(other).await.unwrap().is_empty(),
        "categories are per user"
    );

    store
        .rename_category(u, family.id, "Kin")
        .await
        .expect("rename_category");
    let kin = Category {
        id: family.id,
        name: "Kin".into(),
    };
    assert_eq!(
        listed(store.categories(u).await.unwrap()),
        vec![kin.clone(), work.clone()],
        "renamed"
    );
    assert_err!(
        store.rename_category(u, NO_CATEGORY, "x").await,
        Error::NotFound(_),
        "renaming a missing category"
    );
    assert_err!(
        store.rename_category(other, family.id, "x").await,
        Error::NotFound(_),
        "renaming another user's category"
    );
    assert_err!(
        store.rename_category(u, DEFAULT_CATEGORY, "x").await,
        Error::NotFound(_),
        "renaming the implicit default"
    );

    store
        .update_friend(
            u,
            friend,
            FriendUpdate {
                remark: None,
                category: Some(work.id),
            },
        )
        .await
        .unwrap();
    assert_err!(
        store.delete_category(other, work.id).await,
        Error::NotFound(_),
        "deleting another user's category"
    );
    store
        .delete_category(u, work.id)
        .await
        .expect("delete_category");
    assert_eq!(
        store.friend(u, friend).await.unwrap().unwrap().category,
        DEFAULT_CATEGORY,
        "friends of a deleted category move to the default"
    );
    assert_eq!(
        listed(store.categories(u).await.unwrap()),
        vec![kin],
        "deleted"
    );
    assert_err!(
        store.delete_category(u, work.id).await,
        Error::NotFound(_),
        "deleting twice"
    );
    assert_err!(
        store.delete_category(u, DEFAULT_CATEGORY).await,
        Error::NotFound(_),
        "deleting the implicit default"
    );

    store.create_category(u, "Two", 3).await.unwrap();
    store.create_category(u, "Three", 3).await.unwrap();
    assert_err!(
        store.create_category(u, "Four", 3).await,
        Error::LimitReached {
            limit: "max_categories",
            max: 3
        },
        "creating a category past max"
    );
    assert_eq!(
        store.categories(u).await.unwrap().len(),
        3,
        "nothing is created past max"
    );
    store
        .create_category(other, "Own", 1)
        .await
        .expect("the limit counts per user");
}

/// Blocking is idempotent and seen from both sides.
async fn check_blacklist(store: &dyn Store) {
    let a = new_user(store, "block-a").await;
    let b = new_user(store, "block-b").await;
    let c = new_user(store, "block-c").await;
    assert!(
        !store.is_blocked_either(a, b).await.unwrap(),
        "nobody is blocked at first"
    );
    let t = tick();
    store.block(a, b, t).await.expect("block");
    store
        .block(a, b, tick())
        .await
        .expect("blocking again is fine");
    assert_eq!(
        store.blocked(a).await.unwrap(),
        vec![(b, t)],
        "one entry with the first time"
    );
    assert!(
        store.blocked(b).await.unwrap().is_empty(),
        "the blacklist is the blocker's"
    );
    assert!(
        store.is_blocked_either(a, b).await.unwrap(),
        "is_blocked_either(blocker, blocked)"
    );
    assert!(
        store.is_blocked_either(b, a).await.unwrap(),
        "is_blocked_either(blocked, blocker)"
    );
    assert!(
        !store.is_blocked_either(a, c).await.unwrap(),
        "unrelated users"
    );
    let t2 = tick();
    store.block(a, c, t2).await.unwrap();
    assert_eq!(
        sorted(store.blocked(a).await.unwrap()),
        sorted(vec![(b, t), (c, t2)]),
        "two entries"
    );

    assert!(
        store.unblock(a, b).await.expect("unblock"),
        "unblocking reports true"
    );
    assert!(
        !store.unblock(a, b).await.unwrap(),
        "unblocking again reports false"
    );
    assert!(!store.is_blocked_either(b, a).await.unwrap(), "unblocked");
    assert_eq!(
        store.blocked(a).await.unwrap(),
        vec![(c, t2)],
        "only c is left"
    );
}

/// Likes count per giver, receiver and day up to the limit, and add up on the
/// receiver.
async fn check_likes(store: &dyn Store) {
    let a = new_user(store, "likes-a").await;
    let b = new_user(store, "likes-b").await;
    let c = new_user(store, "likes-c").await;
    for n in 1..=3 {
        assert_eq!(
            store.add_like(a, b, DAY, 3).await.expect("add_like"),
            n,
            "the day's count"
        );
    }
    assert_err!(
        store.add_like(a, b, DAY, 3).await,
        Error::LimitReached {
            limit: "likes_per_friend_per_day",
            max: 3
        },
        "a like past the daily limit"
    );
    assert_eq!(
        store.user(b).await.unwrap().unwrap().likes,
        3,
        "a refused like is not counted"
    );
    assert_eq!(
        store.add_like(a, b, DAY + 1, 3).await.unwrap(),
        1,
        "another day starts again"
    );
    assert_eq!(
        store.user(b).await.unwrap().unwrap().likes,
        4,
        "likes add up on the receiver"
    );
    assert_eq!(
        store.add_like(b, a, DAY, 3).await.unwrap(),
        1,
        "the other direction counts separately"
    );
    assert_eq!(
        store.add_like(c, b, DAY, 3).await.unwrap(),
        1,
        "another giver counts separately"
    );
    assert_eq!(store.user(b).await.unwrap().unwrap().likes, 5);
    assert_eq!(store.user(a).await.unwrap().unwrap().likes, 1);
    assert_eq!(
        store.user(c).await.unwrap().unwrap().likes,
        0,
        "giving likes earns none"
    );
}

// --- conversations ----------------------------------------------------------

/// Sequence numbers are 1, 2, 3... per conversation and stored events read
/// back as appended.
async fn check_append_sequence(store: &dyn Store) {
    let a = new_user(store, "seq-a").await;
    let b = new_user(store, "seq-b").await;
    let c = new_user(store, "seq-c").await;
    let ab = befriend(store, a, b).await;
    let ac = befriend(store, a, c).await;
    assert!(
        seqs(store, ab, EventRange::After(Seq(0), 10))
            .await
            .is_empty(),
        "a new conversation is empty"
    );
    assert_eq!(store.event(ab, Seq(1)).await.unwrap(), None, "no event yet");

    let m1 = message(ab, a, "m1", "first");
    let x1 = store.append(m1.clone()).await.expect("append");
    assert_eq!(
        x1,
        Appended {
            conversation: ab,
            seq: Seq(1),
            message_id: x1.message_id,
            time: m1.time,
            duplicate: false
        },
        "the first event is seq 1"
    );
    let x2 = send(store, ab, b, "m2").await;
    let y1 = send(store, ac, a, "m3").await;
    let x3 = send(store, ab, a, "m4").await;
    assert_eq!(
        (x2.seq, x3.seq),
        (Seq(2), Seq(3)),
        "seqs count up per conversation"
    );
    assert_eq!(y1.seq, Seq(1), "each conversation has its own sequence");
    let ids: BTreeSet<_> = [x1, x2, x3, y1].iter().map(|x| x.message_id).collect();
    assert_eq!(ids.len(), 4, "message ids are unique");

    assert_eq!(
        store.event(ab, Seq(1)).await.unwrap(),
        Some(StoredEvent {
            conversation: ab,
            seq: Seq(1),
            message_id: x1.message_id,
            sender: a,
            client_msg_id: "m1".into(),
            time: m1.time,
            body: EventBody::Message {
                segments: text("first"),
                recalled: false
            },
        }),
        "event() returns what was appended"
    );
    assert_eq!(store.event(ab, Seq(2)).await.unwrap().unwrap().sender, b);
    assert_eq!(
        store.event(ac, Seq(2)).await.unwrap(),
        None,
        "no event past the last"
    );
    assert!(
        store
            .append(message(NO_CONVERSATION, a, "nowhere", "x"))
            .await
            .is_err(),
        "appending to a missing conversation fails"
    );
}

/// Every kind of segment survives storage unchanged.
async fn check_segments_round_trip(store: &dyn Store) {
    let a = new_user(store, "segments-a").await;
    let b = new_user(store, "segments-b").await;
    let conv = befriend(store, a, b).await;
    let segments = vec![
        Segment::Text {
            text: "你好, \"quoted\" \\ \n 🎉".into(),
        },
        Segment::Face { id: 14 },
        Segment::Mention { user: b },
        Segment::Reply { seq: Seq(1) },
        Segment::Image {
            file: "img-1".into(),
        },
        Segment::File {
            file: "file-1".into(),
            name: "report.pdf".into(),
            size: 123_456_789,
        },
        Segment::Text {
            text: String::new(),
        },
    ];
    let append = Append {
        conversation: conv,
        sender: a,
        client_msg_id: "all-kinds".into(),
        time: tick(),
        body: AppendBody::Message(segments.clone()),
    };
    let x = store.append(append).await.expect("append");
    let event = store.event(conv, x.seq).await.unwrap().unwrap();
    assert_eq!(
        event.body,
        EventBody::Message {
            segments,
            recalled: false
        },
        "segments round-trip"
    );
}

/// A retried client id returns the first result and stores nothing; reusing
/// it in another conversation is a conflict.
async fn check_append_idempotency(store: &dyn Store) {
    let a = new_user(store, "idem-a").await;
    let b = new_user(store, "idem-b").await;
    let c = new_user(store, "idem-c").await;
    let ab = befriend(store, a, b).await;
    let ac = befriend(store, a, c).await;

    let first = store
        .append(message(ab, a, "same-id", "hello"))
        .await
        .unwrap();
    let retry = store
        .append(message(ab, a, "same-id", "changed text"))
        .await
        .expect("a retry succeeds");
    assert_eq!(
        retry,
        Appended {
            duplicate: true,
            ..first
        },
        "a retry returns the first append's result"
    );
    assert_eq!(
        seqs(store, ab, EventRange::After(Seq(0), 10)).await,
        vec![1],
        "a retry stores nothing"
    );
    assert_eq!(
        store.event(ab, Seq(1)).await.unwrap().unwrap().body,
        EventBody::Message {
            segments: text("hello"),
            recalled: false
        },
        "the first content stands"
    );

    let other_sender = send(store, ab, b, "same-id").await;
    assert_eq!(
        (other_sender.seq, other_sender.duplicate),
        (Seq(2), false),
        "client ids are per sender"
    );

    assert_err!(
        store.append(message(ac, a, "same-id", "elsewhere")).await,
        Error::Conflict(_),
        "the same client id in another conversation"
    );
    assert!(
        seqs(store, ac, EventRange::After(Seq(0), 10))
            .await
            .is_empty(),
        "the conflict stored nothing"
    );
    assert_eq!(
        state(store, a, ac).await.last_seq,
        Seq(0),
        "the conflict consumed no seq"
    );
    assert_eq!(
        send(store, ab, a, "next").await.seq,
        Seq(3),
        "retries consume no seq"
    );
}

/// A recall is an event of its own that clears its target, once.
async fn check_recall(store: &dyn Store) {
    let a = new_user(store, "recall-a").await;
    let b = new_user(store, "recall-b").await;
    let conv = befriend(store, a, b).await;
    send(store, conv, a, "m1").await;
    send(store, conv, b, "m2").await;

    let r = recall(conv, a, "r1", 1);
    let done = store.append(r.clone()).await.expect("recall");
    assert_eq!(
        (done.seq, done.duplicate),
        (Seq(3), false),
        "a recall takes the next seq"
    );
    let target = store.event(conv, Seq(1)).await.unwrap().unwrap();
    assert_eq!(
        target.body,
        EventBody::Message {
            segments: vec![],
            recalled: true
        },
        "the target is recalled and emptied"
    );
    assert_eq!(
        (target.sender, target.client_msg_id.as_str()),
        (a, "m1"),
        "the target keeps its metadata"
    );
    let event = store.event(conv, Seq(3)).await.unwrap().unwrap();
    assert_eq!(
        (event.body, event.sender, event.time, event.message_id),
        (
            EventBody::Recall { target: Seq(1) },
            a,
            r.time,
            done.message_id
        ),
        "the recall event"
    );
    assert_eq!(
        store.event(conv, Seq(2)).await.unwrap().unwrap().body,
        EventBody::Message {
            segments: text("m2"),
            recalled: false
        },
        "other messages are untouched"
    );

    assert_err!(
        store.append(recall(conv, a, "r2", 1)).await,
        Error::Conflict(_),
        "recalling twice"
    );
    assert_err!(
        store.append(recall(conv, a, "r3", 3)).await,
        Error::Conflict(_),
        "recalling a recall"
    );
    assert_err!(
        store.append(recall(conv, a, "r4", 99)).await,
        Error::NotFound(_),
        "recalling a missing seq"
    );
    assert_eq!(
        state(store, a, conv).await.last_seq,
        Seq(3),
        "refused recalls consume no seq"
    );

    let retry = store
        .append(recall(conv, a, "r1", 1))
        .await
        .expect("a retried recall is not a conflict");
    assert_eq!(
        retry,
        Appended {
            duplicate: true,
            ..done
        },
        "a retried recall returns the first result"
    );
    assert_eq!(
        send(store, conv, b, "m5").await.seq,
        Seq(4),
        "the sequence continues"
    );
}

/// Ranges are ascending; `Before` returns the events closest to the bound.
async fn check_event_ranges(store: &dyn Store) {
    let a = new_user(store, "range-a").await;
    let b = new_user(store, "range-b").await;
    let conv = befriend(store, a, b).await;
    for i in 1..=10 {
        send(
            store,
            conv,
            if i % 2 == 0 { a } else { b },
            &format!("r{i}"),
        )
        .await;
    }
    let cases: &[(EventRange, &[u64])] = &[
        (EventRange::After(Seq(0), 3), &[1, 2, 3]),
        (EventRange::After(Seq(3), 3), &[4, 5, 6]),
        (EventRange::After(Seq(8), 10), &[9, 10]),
        (EventRange::After(Seq(10), 5), &[]),
        (EventRange::After(Seq(0), 0), &[]),
        (EventRange::After(Seq(u64::MAX), 5), &[]),
        (EventRange::Before(Seq(11), 3), &[8, 9, 10]),
        (EventRange::Before(Seq(5), 2), &[3, 4]),
        (EventRange::Before(Seq(3), 10), &[1, 2]),
        (EventRange::Before(Seq(1), 5), &[]),
        (EventRange::Before(Seq(u64::MAX), 2), &[9, 10]),
    ];
    for (range, expected) in cases {
        assert_eq!(
            seqs(store, conv, *range).await,
            expected.to_vec(),
            "events({range:?})"
        );
    }
    let all = store
        .events(conv, EventRange::After(Seq(0), 100))
        .await
        .unwrap();
    for event in &all {
        assert_eq!(
            store.event(conv, event.seq).await.unwrap().as_ref(),
            Some(event),
            "events() and event() agree"
        );
    }
    assert_eq!(all[2].client_msg_id, "r3", "events come with their content");
    assert_eq!(
        store.event(conv, Seq(u64::MAX)).await.unwrap(),
        None,
        "a seq far past the end"
    );
}

/// Each participant sees last seq, read position and unread count; the
/// list is ordered by activity.
async fn check_conversation_states(store: &dyn Store) {
    let a = new_user(store, "state-a").await;
    let b = new_user(store, "state-b").await;
    let c = new_user(store, "state-c").await;
    let ab = befriend(store, a, b).await;
    let ac = befriend(store, a, c).await;

    let empty = state(store, a, ab).await;
    assert_eq!(
        empty,
        ConversationState {
            id: ab,
            kind: ConversationKind::Direct,
            peer: Some(b),
            last_seq: Seq(0),
            read_seq: Seq(0),
            unread: 0,
            last_time: 0
        },
        "an empty conversation's state"
    );
    assert_eq!(
        store.conversation_states(a).await.unwrap().len(),
        2,
        "empty conversations are listed"
    );

    for i in 0..3 {
        send(store, ab, b, &format!("b{i}")).await;
    }
    let own = store.append(message(ab, a, "a0", "mine")).await.unwrap();
    send(store, ac, c, "c0").await;
    let last_c = store.append(message(ac, c, "c1", "later")).await.unwrap();

    let states = store.conversation_states(a).await.unwrap();
    assert_eq!(
        states.iter().map(|s| s.id).collect::<Vec<_>>(),
        vec![ac, ab],
        "most recently active first"
    );
    let s_ab = &states[1];
    assert_eq!(
        (
            s_ab.peer,
            s_ab.last_seq,
            s_ab.read_seq,
            s_ab.unread,
            s_ab.last_time
        ),
        (Some(b), Seq(4), Seq(0), 3, own.time),
        "unread excludes the participant's own messages"
    );
    assert_eq!(
        (
            states[0].peer,
            states[0].last_seq,
            states[0].unread,
            states[0].last_time
        ),
        (Some(c), Seq(2), 2, last_c.time),
        "the other conversation"
    );
    assert_eq!(
        &state(store, a, ab).await,
        s_ab,
        "conversation_state agrees with conversation_states"
    );
    let b_view = state(store, b, ab).await;
    assert_eq!(
        (b_view.peer, b_view.unread),
        (Some(a), 1),
        "the other participant's view"
    );
    assert_eq!(
        store.conversation_state(c, ab).await.unwrap(),
        None,
        "a non-participant sees nothing"
    );
    assert_eq!(
        store.conversation_state(a, NO_CONVERSATION).await.unwrap(),
        None,
        "an unknown conversation"
    );
    assert_eq!(
        store.conversation_states(NOBODY).await.unwrap(),
        vec![],
        "an unknown user has none"
    );

    let r = store.append(recall(ab, b, "recall-b0", 1)).await.unwrap();
    let s_ab = state(store, a, ab).await;
    assert_eq!(
        (s_ab.last_seq, s_ab.unread, s_ab.last_time),
        (Seq(5), 2, r.time),
        "unread excludes recalled messages and recall events"
    );
    assert_eq!(
        state(store, b, ab).await.unread,
        1,
        "a participant's own recall is not unread for them"
    );
    let order: Vec<_> = store
        .conversation_states(a)
        .await
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(
        order,
        vec![ab, ac],
        "new activity moves a conversation to the front"
    );
}

/// The read position only moves forward and never past the last seq.
async fn check_mark_read(store: &dyn Store) {
    let a = new_user(store, "read-a").await;
    let b = new_user(store, "read-b").await;
    let c = new_user(store, "read-c").await;
    let conv = befriend(store, a, b).await;
    for i in 0..5 {
        send(store, conv, b, &format!("b{i}")).await;
    }
    assert_eq!(
        store.mark_read(a, conv, Seq(2)).await.expect("mark_read"),
        Seq(2),
        "moves forward"
    );
    let s = state(store, a, conv).await;
    assert_eq!(
        (s.read_seq, s.unread),
        (Seq(2), 3),
        "unread counts after the read position"
    );
    assert_eq!(
        store.mark_read(a, conv, Seq(1)).await.unwrap(),
        Seq(2),
        "never backward"
    );
    assert_eq!(
        store.mark_read(a, conv, Seq(100)).await.unwrap(),
        Seq(5),
        "clamped to the last seq"
    );
    assert_eq!(
        store.mark_read(a, conv, Seq(u64::MAX)).await.unwrap(),
        Seq(5),
        "clamped, however far"
    );
    let s = state(store, a, conv).await;
    assert_eq!((s.read_seq, s.unread), (Seq(5), 0), "all read");
    assert_eq!(
        state(store, b, conv).await.read_seq,
        Seq(0),
        "read positions are per participant"
    );
    send(store, conv, b, "b5").await;
    assert_eq!(
        state(store, a, conv).await.unread,
        1,
        "a new message is unread"
    );

    let empty = befriend(store, a, c).await;
    assert_eq!(
        store.mark_read(a, empty, Seq(3)).await.unwrap(),
        Seq(0),
        "an empty conversation stays at 0"
    );
}

// --- concurrency -------------------------------------------------------------

/// Concurrent appends get gap-free, unique sequence numbers per conversation.
async fn check_concurrent_appends(store: &Arc<dyn Store>) {
    const TASKS: u64 = 8;
    const EACH: u64 = 50;
    let a = new_user(store.as_ref(), "concurrent-a").await;
    let b = new_user(store.as_ref(), "concurrent-b").await;
    let c = new_user(store.as_ref(), "concurrent-c").await;
    let ab = befriend(store.as_ref(), a, b).await;
    let ac = befriend(store.as_ref(), a, c).await;

    let mut tasks = Vec::new();
    for t in 0..TASKS + 2 {
        let store = Arc::clone(store);
        // Two extra tasks write to another conversation at the same time.
        let (conv, sender) = match t {
            t if t >= TASKS => (ac, c),
            t if t % 2 == 0 => (ab, a),
            _ => (ab, b),
        };
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..EACH {
                let x = store
                    .append(message(conv, sender, &format!("conc-{t}-{i}"), "x"))
                    .await
                    .expect("concurrent append");
                seqs.push(x.seq.0);
            }
            (conv, seqs)
        }));
    }
    let mut in_ab = Vec::new();
    let mut in_ac = Vec::new();
    for task in tasks {
        let (conv, seqs) = task.await.expect("append task");
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "one task's appends are ordered: {seqs:?}"
        );
        if conv == ab {
            in_ab.extend(seqs)
        } else {
            in_ac.extend(seqs)
        }
    }
    assert_eq!(
        sorted(in_ab),
        (1..=TASKS * EACH).collect::<Vec<_>>(),
        "seqs are exactly 1..=400"
    );
    assert_eq!(
        sorted(in_ac),
        (1..=2 * EACH).collect::<Vec<_>>(),
        "the other conversation is independent"
    );

    let stored = store
        .events(ab, EventRange::After(Seq(0), 1000))
        .await
        .unwrap();
    assert_eq!(
        stored.iter().map(|e| e.seq.0).collect::<Vec<_>>(),
        (1..=TASKS * EACH).collect::<Vec<_>>()
    );
    let ids: BTreeSet<_> = stored.iter().map(|e| e.message_id).collect();
    assert_eq!(ids.len(), stored.len(), "message ids are unique");
    assert_eq!(
        state(store.as_ref(), a, ab).await.last_seq,
        Seq(TASKS * EACH)
    );
}

/// Concurrent retries of one client id store it once.
async fn check_concurrent_retries(store: &Arc<dyn Store>) {
    let a = new_user(store.as_ref(), "retry-a").await;
    let b = new_user(store.as_ref(), "retry-b").await;
    let conv = befriend(store.as_ref(), a, b).await;
    send(store.as_ref(), conv, b, "before").await;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let store = Arc::clone(store);
        tasks.push(tokio::spawn(async move {
            store.append(message(conv, a, "retried", "once")).await
        }));
    }
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("retry task").expect("a retry succeeds"));
    }
    assert_eq!(
        results.iter().filter(|x| !x.duplicate).count(),
        1,
        "exactly one append is the original"
    );
    let original = results.iter().find(|x| !x.duplicate).copied().unwrap();
    assert_eq!(original.seq, Seq(2));
    for x in &results {
        assert_eq!(
            Appended {
                duplicate: false,
                ..*x
            },
            original,
            "every retry reports the original"
        );
    }
    assert_eq!(
        seqs(store.as_ref(), conv, EventRange::After(Seq(0), 100)).await,
        vec![1, 2],
        "stored once"
    );
}

/// Concurrent registrations get distinct numbers.
async fn check_concurrent_user_creation(store: &Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = Arc::clone(store);
        tasks.push(tokio::spawn(async move {
            store
                .create_user(new_user_record(None, &format!("burst-{i}")))
                .await
        }));
    }
    let mut numbers = BTreeSet::new();
    for task in tasks {
        numbers.insert(
            task.await
                .expect("create task")
                .expect("concurrent create_user"),
        );
    }
    assert_eq!(numbers.len(), 20, "every user got a distinct number");
    for n in numbers {
        assert!(store.user(n).await.unwrap().is_some(), "user {n} exists");
    }
}

/// Concurrent likes never pass the daily limit.
async fn check_concurrent_likes(store: &Arc<dyn Store>) {
    let a = new_user(store.as_ref(), "like-burst-a").await;
    let b = new_user(store.as_ref(), "like-burst-b").await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let store = Arc::clone(store);
        tasks.push(tokio::spawn(
            async move { store.add_like(a, b, DAY, 10).await },
        ));
    }
    let mut counts = BTreeSet::new();
    let mut refused = 0;
    for task in tasks {
        match task.await.expect("like task") {
            Ok(n) => assert!(counts.insert(n), "count {n} reported twice"),
            Err(Error::LimitReached { .. }) => refused += 1,
            Err(e) => panic!("unexpected add_like error: {e:?}"),
        }
    }
    assert_eq!(
        counts,
        (1..=10).collect::<BTreeSet<u32>>(),
        "counts 1..=10 each once"
    );
    assert_eq!(refused, 10, "the rest are refused");
    assert_eq!(
        store.user(b).await.unwrap().unwrap().likes,
        10,
        "the total matches the counted likes"
    );
}
