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

use crate::Denied;

use crate::groups::model::*;
use crate::model::*;
use crate::store::DailyCounter;
use crate::{
    AnnouncementId, CategoryId, ConversationId, Error, FriendRequestId, GroupId, JoinRequestId,
    Result, Seq, SessionId, Store, UserId, DEFAULT_CATEGORY,
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
    check_direct_standing(s).await;
    check_likes(s).await;
    check_append_sequence(s).await;
    check_segments_round_trip(s).await;
    check_append_idempotency(s).await;
    check_recall(s).await;
    check_event_ranges(s).await;
    check_conversation_states(s).await;
    check_mark_read(s).await;
    check_ensure_direct_conversation(s).await;
    check_group_creation(s).await;
    check_group_membership(s).await;
    check_group_join_sources(s).await;
    check_group_roles(s).await;
    check_group_member_entries(s).await;
    check_group_settings(s).await;
    check_group_announcements(s).await;
    check_group_essence(s).await;
    check_group_dissolution(s).await;
    check_group_messages(s).await;
    check_group_search(s).await;
    check_group_member_queries(s).await;
    check_group_receipts_and_honours(s).await;
    check_daily_counters(s).await;
    check_append_quota(s).await;
    check_readers_exclude_newcomers(s).await;
    check_join_settles_pending_requests(s).await;
    check_concurrent_appends(&store).await;
    check_appends_requiring_a_friend(&store).await;
    check_concurrent_retries(&store).await;
    check_concurrent_user_creation(&store).await;
    check_concurrent_likes(&store).await;
    check_concurrent_joins(&store).await;
    check_concurrent_group_appends(&store).await;
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
        requires_friend: None,
        quota: None,
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
        requires_friend: None,
        quota: None,
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
            accept_temp_sessions: true,
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
        .update_profile(
            u,
            ProfileUpdate {
                accept_temp_sessions: Some(false),
                ..Default::default()
            },
        )
        .await
        .expect("refuse temporary sessions");
    let user = store.user(u).await.unwrap().unwrap();
    assert!(
        !user.accept_temp_sessions,
        "accept_temp_sessions can be turned off"
    );
    assert_eq!(
        (user.nickname.as_str(), user.avatar),
        ("Li Si", None),
        "turning temporary sessions off leaves the profile"
    );
    store
        .update_profile(
            u,
            ProfileUpdate {
                nickname: Some("Li Si".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(
        !store.user(u).await.unwrap().unwrap().accept_temp_sessions,
        "None leaves accept_temp_sessions"
    );
    store
        .update_profile(
            u,
            ProfileUpdate {
                accept_temp_sessions: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(
        store.user(u).await.unwrap().unwrap().accept_temp_sessions,
        "and on again"
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

/// The one-read standing of a direct send follows friendships and blocks
/// from both sides.
async fn check_direct_standing(store: &dyn Store) {
    let a = new_user(store, "standing-a").await;
    let b = new_user(store, "standing-b").await;
    let c = new_user(store, "standing-c").await;
    let standing = |blocked, friends| DirectStanding { blocked, friends };
    assert_eq!(
        store.direct_standing(a, b).await.unwrap(),
        standing(false, false),
        "strangers"
    );
    befriend(store, a, b).await;
    assert_eq!(
        store.direct_standing(a, b).await.unwrap(),
        standing(false, true),
        "friends"
    );
    assert_eq!(
        store.direct_standing(b, a).await.unwrap(),
        standing(false, true),
        "both ways"
    );
    assert_eq!(
        store.direct_standing(a, c).await.unwrap(),
        standing(false, false),
        "a stranger"
    );
    store.block(c, a, tick()).await.unwrap();
    assert_eq!(
        store.direct_standing(a, c).await.unwrap(),
        standing(true, false),
        "blocked by the peer"
    );
    assert_eq!(
        store.direct_standing(c, a).await.unwrap(),
        standing(true, false),
        "blocked the peer"
    );
    assert_eq!(
        store.direct_standing(a, b).await.unwrap(),
        standing(false, true),
        "others unaffected"
    );
    store.block(a, b, tick()).await.unwrap();
    assert_eq!(
        store.direct_standing(b, a).await.unwrap(),
        standing(true, true),
        "a block and a friendship are separate records"
    );
    store.remove_friend(a, b).await.unwrap();
    assert_eq!(
        store.direct_standing(b, a).await.unwrap(),
        standing(true, false),
        "removed"
    );
    assert_eq!(
        store
            .direct_standing(UserId(9_000_000_000), a)
            .await
            .unwrap(),
        standing(false, false),
        "an id that names nobody"
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
        Segment::MentionAll,
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
        requires_friend: None,
        quota: None,
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
            mentions: 0,
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
/// `requires_friend` is checked in the append's transaction, after the retry
/// check, alone and among concurrent appends that pass.
async fn check_appends_requiring_a_friend(store: &Arc<dyn Store>) {
    let s = store.as_ref();
    let a = new_user(s, "guard-a").await;
    let b = new_user(s, "guard-b").await;
    let c = new_user(s, "guard-c").await;
    let ab = befriend(s, a, b).await;
    let ac = s.ensure_direct_conversation(a, c, tick()).await.unwrap();
    let guarded = |conv, peer, id: &str| Append {
        requires_friend: Some(peer),
        ..message(conv, a, id, "guarded")
    };
    let first = s.append(guarded(ab, b, "guard-1")).await.expect("friends");
    assert_eq!(first.seq, Seq(1));
    assert!(
        matches!(
            s.append(guarded(ac, c, "guard-2")).await,
            Err(Error::Forbidden(Denied::NotFriends))
        ),
        "not friends"
    );
    s.append(message(ac, a, "guard-3", "unguarded"))
        .await
        .expect("without the guard the same append is stored");
    assert_eq!(
        s.events(ac, EventRange::After(Seq(0), 10))
            .await
            .unwrap()
            .len(),
        1,
        "the refused append stored nothing and used no seq"
    );
    s.block(b, a, tick()).await.unwrap();
    assert!(
        matches!(
            s.append(guarded(ab, b, "guard-4")).await,
            Err(Error::Forbidden(Denied::NotFriends))
        ),
        "blocked by the peer while still on the friend list"
    );
    assert_eq!(
        s.append(guarded(ab, b, "guard-1")).await.expect("a retry"),
        Appended {
            duplicate: true,
            ..first
        },
        "a retry is answered before the guard"
    );
    s.unblock(b, a).await.unwrap();

    // Refused and stored appends queued together (in one batch, where the
    // adapter batches) are each answered as if alone.
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = Arc::clone(store);
        let append = if i % 4 == 0 {
            guarded(ac, c, &format!("guard-many-{i}"))
        } else {
            guarded(ab, b, &format!("guard-many-{i}"))
        };
        tasks.push(tokio::spawn(async move { (i, store.append(append).await) }));
    }
    for task in tasks {
        let (i, result) = task.await.expect("append task");
        match result {
            Err(Error::Forbidden(Denied::NotFriends)) if i % 4 == 0 => {}
            Ok(x) if i % 4 != 0 => assert!(!x.duplicate),
            other => panic!("append {i}: {other:?}"),
        }
    }
    let seqs = |conv| async move {
        s.events(conv, EventRange::After(Seq(0), 100))
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq.0)
            .collect::<Vec<_>>()
    };
    assert_eq!(seqs(ab).await, (1..=31).collect::<Vec<_>>(), "gap-free");
    assert_eq!(seqs(ac).await, vec![1], "nothing refused was stored");
}

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

// --- groups: helpers ---------------------------------------------------------

/// The first group number the suite asks for.
pub const FIRST_GROUP: GroupId = GroupId(100_001);

/// A group number no check ever creates.
const NO_GROUP: GroupId = GroupId(4_000_000_000_000);
/// A join request id no check ever creates.
const NO_JOIN_REQUEST: JoinRequestId = JoinRequestId(4_000_000_000_000);
/// An announcement id no check ever creates.
const NO_ANNOUNCEMENT: AnnouncementId = AnnouncementId(4_000_000_000_000);
/// A member cap that checks not about the cap never reach.
const ROOMY: u32 = 10_000;

fn new_group_record(owner: UserId, name: &str) -> NewGroup {
    NewGroup {
        owner,
        name: name.to_owned(),
        intro: String::new(),
        category: String::new(),
        tags: Vec::new(),
        listed: false,
        join_mode: JoinMode::Approval,
        tier: 0,
        created_at: tick(),
        first_number: FIRST_GROUP,
        max_owned: 1000,
    }
}

async fn new_group(store: &dyn Store, owner: UserId, name: &str) -> Group {
    store
        .create_group(new_group_record(owner, name))
        .await
        .expect("create_group")
}

/// Applies a change at the next tick.
async fn change(
    store: &dyn Store,
    group: GroupId,
    actor: UserId,
    change: GroupChange,
    notice: Notice,
) -> Result<GroupChanged> {
    store
        .change_group(group, actor, change, notice, tick())
        .await
}

fn add_member(user: UserId, cap: u32) -> GroupChange {
    GroupChange::AddMember {
        user,
        inviter: None,
        approver: None,
        cap,
        request: None,
        link: None,
    }
}

fn joined(user: UserId) -> Notice {
    Notice::Joined {
        user,
        inviter: None,
        approver: None,
    }
}

/// Adds `user` to the group as if they joined an open group themselves.
async fn join(store: &dyn Store, group: GroupId, user: UserId) -> GroupChanged {
    change(store, group, user, add_member(user, ROOMY), joined(user))
        .await
        .expect("AddMember")
}

async fn group_now(store: &dyn Store, id: GroupId) -> Group {
    store
        .group(id)
        .await
        .expect("group")
        .expect("the group exists")
}

async fn member_now(store: &dyn Store, group: GroupId, user: UserId) -> Member {
    store
        .member(group, user)
        .await
        .expect("member")
        .expect("the member exists")
}

/// The notice at `seq` with its sender.
async fn notice_at(store: &dyn Store, conversation: ConversationId, seq: Seq) -> (UserId, Notice) {
    let event = store
        .event(conversation, seq)
        .await
        .expect("event")
        .expect("the notice is stored");
    match event.body {
        EventBody::Notice(notice) => (event.sender, notice),
        other => panic!("expected a notice at seq {seq}, got {other:?}"),
    }
}

fn mention_message(
    conversation: ConversationId,
    sender: UserId,
    client_msg_id: &str,
    segments: Vec<Segment>,
) -> Append {
    Append {
        requires_friend: None,
        quota: None,
        conversation,
        sender,
        client_msg_id: client_msg_id.to_owned(),
        time: tick(),
        body: AppendBody::Message(segments),
    }
}

/// (unread, mentions) of one participant.
async fn unread(store: &dyn Store, user: UserId, conversation: ConversationId) -> (u64, u64) {
    let s = state(store, user, conversation).await;
    (s.unread, s.mentions)
}

// --- groups: checks ------------------------------------------------------------

/// A new group gets the next number, a conversation, its owner as only
/// member and a `Created` notice at seq 1; owners are limited.
async fn check_group_creation(store: &dyn Store) {
    let owner = new_user(store, "group-owner").await;
    let fresh = store.group(FIRST_GROUP).await.expect("group").is_none();
    let record = NewGroup {
        intro: "about us".into(),
        category: "tech".into(),
        tags: vec!["rust".into(), "中文".into()],
        listed: true,
        join_mode: JoinMode::QuestionAuto {
            question: "2 + 2?".into(),
            answer: "4".into(),
        },
        tier: 1,
        ..new_group_record(owner, "First group")
    };
    let g = store
        .create_group(record.clone())
        .await
        .expect("create_group");
    if fresh {
        assert_eq!(
            g.id, FIRST_GROUP,
            "the first group number of an empty store is first_number"
        );
    } else {
        assert!(g.id >= FIRST_GROUP, "group numbers start at first_number");
    }
    assert_eq!(
        g,
        Group {
            id: g.id,
            conversation: g.conversation,
            name: "First group".into(),
            intro: "about us".into(),
            avatar: None,
            category: "tech".into(),
            tags: record.tags.clone(),
            listed: true,
            tier: 1,
            owner,
            join_mode: record.join_mode.clone(),
            members_may_invite: g.members_may_invite,
            history: HistoryVisibility::FromJoin,
            muted: false,
            member_count: 1,
            member_version: 1,
            created_at: record.created_at,
            dissolved_at: None,
        },
        "a new group has the given fields, one member and member_version 1"
    );
    assert_eq!(
        store.group(g.id).await.unwrap(),
        Some(g.clone()),
        "group() returns what create_group returned"
    );
    assert_eq!(
        store.group(NO_GROUP).await.unwrap(),
        None,
        "an unknown group"
    );

    let second = new_group(store, owner, "Second").await;
    assert_eq!(second.id.0, g.id.0 + 1, "group numbers count upward by one");
    assert_ne!(
        second.conversation, g.conversation,
        "each group has its own conversation"
    );
    let raised = GroupId(second.id.0 + 100);
    let third = store
        .create_group(NewGroup {
            first_number: raised,
            ..new_group_record(owner, "Third")
        })
        .await
        .expect("create_group with a raised first_number");
    assert_eq!(
        third.id, raised,
        "a raised first_number is the next group number"
    );
    let fourth = new_group(store, owner, "Fourth").await;
    assert_eq!(
        fourth.id.0,
        raised.0 + 1,
        "group numbers are never reused after first_number is lowered again"
    );
    let after = new_user(store, "group-owner-next").await;
    assert_eq!(
        after.0,
        owner.0 + 1,
        "group numbers do not use up user numbers"
    );

    assert_eq!(
        member_now(store, g.id, owner).await,
        Member {
            group: g.id,
            user: owner,
            role: Role::Owner,
            card: None,
            title: None,
            title_expires_at: None,
            joined_at: record.created_at,
            join_seq: Seq(1),
            last_spoke_at: None,
            messages: 0,
            muted_until: None,
            inviter: None,
            approver: None,
        },
        "the owner's entry joins at the Created notice"
    );
    assert_eq!(store.member_ids(g.id).await.unwrap(), vec![owner]);
    assert_eq!(store.managers(g.id).await.unwrap(), vec![owner]);
    assert_eq!(
        store.member_changes(g.id, 0).await.unwrap(),
        vec![MemberChange {
            version: 1,
            user: owner,
            removed: false
        }],
        "the owner joined at version 1"
    );
    assert!(
        store.member_changes(g.id, 1).await.unwrap().is_empty(),
        "nothing changed after version 1"
    );
    assert_eq!(
        sorted(store.groups_of(owner).await.unwrap()),
        sorted(vec![g.id, second.id, third.id, fourth.id]),
        "groups_of lists the owner's groups"
    );

    let created = store.event(g.conversation, Seq(1)).await.unwrap().unwrap();
    assert_eq!(
        (created.sender, created.time, created.body),
        (
            owner,
            record.created_at,
            EventBody::Notice(Notice::Created { owner })
        ),
        "the Created notice at seq 1, by the owner"
    );
    let conversation = store
        .conversation(g.conversation)
        .await
        .unwrap()
        .expect("the group's conversation exists");
    assert_eq!(
        (conversation.kind, conversation.members),
        (ConversationKind::Group(g.id), vec![]),
        "a group conversation has the group kind and lists no members"
    );
    assert_eq!(
        store.group_of_conversation(g.conversation).await.unwrap(),
        Some(g.id),
        "group_of_conversation"
    );
    let friend = new_user(store, "group-owner-friend").await;
    let direct = befriend(store, owner, friend).await;
    assert_eq!(
        store.group_of_conversation(direct).await.unwrap(),
        None,
        "a direct conversation belongs to no group"
    );
    assert_eq!(
        store.group_of_conversation(NO_CONVERSATION).await.unwrap(),
        None,
        "an unknown conversation"
    );
    assert_eq!(
        state(store, owner, g.conversation).await,
        ConversationState {
            id: g.conversation,
            kind: ConversationKind::Group(g.id),
            peer: None,
            last_seq: Seq(1),
            read_seq: Seq(1),
            unread: 0,
            mentions: 0,
            last_time: record.created_at,
        },
        "the owner's read position starts at the Created notice"
    );
    let listed: Vec<_> = store
        .conversation_states(owner)
        .await
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect();
    assert!(
        listed.contains(&g.conversation) && listed.contains(&direct),
        "conversation_states lists group and direct conversations: {listed:?}"
    );
    assert_eq!(
        store
            .conversation_state(friend, g.conversation)
            .await
            .unwrap(),
        None,
        "a non-member has no state in a group"
    );

    let limited = new_user(store, "group-limited").await;
    let capped = |name: &str| NewGroup {
        max_owned: 2,
        ..new_group_record(limited, name)
    };
    let l1 = store.create_group(capped("L1")).await.unwrap();
    store.create_group(capped("L2")).await.unwrap();
    assert_err!(
        store.create_group(capped("L3")).await,
        Error::LimitReached {
            limit: "max_groups_owned",
            max: 2
        },
        "creating a group past max_owned"
    );
    change(
        store,
        l1.id,
        limited,
        GroupChange::Dissolve,
        Notice::Dissolved { by: limited },
    )
    .await
    .expect("dissolve");
    store
        .create_group(capped("L3"))
        .await
        .expect("dissolved groups do not count toward max_owned");
}

/// Adding and removing members: join seq, read position, counts, versions,
/// bans, and refusals that change nothing.
async fn check_group_membership(store: &dyn Store) {
    let o = new_user(store, "membership-owner").await;
    let a = new_user(store, "membership-a").await;
    let b = new_user(store, "membership-b").await;
    let g = new_group(store, o, "Membership").await;
    let conv = g.conversation;
    send(store, conv, o, "hello").await;

    let t = tick();
    let added = store
        .change_group(
            g.id,
            o,
            GroupChange::AddMember {
                user: a,
                inviter: Some(o),
                approver: None,
                cap: ROOMY,
                request: None,
                link: None,
            },
            Notice::Joined {
                user: a,
                inviter: Some(o),
                approver: None,
            },
            t,
        )
        .await
        .expect("AddMember");
    assert_eq!(
        (
            added.appended.conversation,
            added.appended.seq,
            added.appended.time,
            added.appended.duplicate,
            added.announcement
        ),
        (conv, Seq(3), t, false, None),
        "the notice takes the next seq"
    );
    assert_eq!(
        (added.group.member_count, added.group.member_version),
        (2, 2),
        "GroupChanged carries the group after the change"
    );
    assert_eq!(
        group_now(store, g.id).await,
        added.group,
        "and it is the stored group"
    );
    assert_eq!(
        member_now(store, g.id, a).await,
        Member {
            group: g.id,
            user: a,
            role: Role::Member,
            card: None,
            title: None,
            title_expires_at: None,
            joined_at: t,
            join_seq: Seq(3),
            last_spoke_at: None,
            messages: 0,
            muted_until: None,
            inviter: Some(o),
            approver: None,
        },
        "the new entry; its join seq is the notice's seq"
    );
    assert_eq!(
        notice_at(store, conv, Seq(3)).await,
        (
            o,
            Notice::Joined {
                user: a,
                inviter: Some(o),
                approver: None
            }
        ),
        "the notice is stored as given, sent by the actor"
    );
    let s = state(store, a, conv).await;
    assert_eq!(
        (s.kind, s.peer, s.last_seq, s.read_seq, s.unread, s.mentions),
        (ConversationKind::Group(g.id), None, Seq(3), Seq(3), 0, 0),
        "a new member's read position starts at their join notice"
    );
    assert_eq!(
        sorted(store.member_ids(g.id).await.unwrap()),
        sorted(vec![o, a])
    );
    assert!(store.groups_of(a).await.unwrap().contains(&g.id));
    assert_eq!(
        store.member_changes(g.id, 1).await.unwrap(),
        vec![MemberChange {
            version: 2,
            user: a,
            removed: false
        }],
        "member_changes since the previous version"
    );

    assert_err!(
        change(store, g.id, o, add_member(a, ROOMY), joined(a)).await,
        Error::Conflict(_),
        "adding a member twice"
    );
    assert_err!(
        change(store, g.id, o, add_member(NOBODY, ROOMY), joined(NOBODY)).await,
        Error::NotFound(_),
        "adding an unknown user"
    );
    assert_err!(
        change(store, NO_GROUP, o, add_member(b, ROOMY), joined(b)).await,
        Error::NotFound(_),
        "changing an unknown group"
    );
    assert_err!(
        change(
            store,
            g.id,
            o,
            GroupChange::RemoveMember {
                user: b,
                ban: false
            },
            Notice::Left { user: b }
        )
        .await,
        Error::NotFound(_),
        "removing a non-member"
    );
    assert_err!(
        change(
            store,
            g.id,
            o,
            GroupChange::RemoveMember {
                user: o,
                ban: false
            },
            Notice::Left { user: o }
        )
        .await,
        Error::Conflict(_),
        "removing the owner (a group always has one)"
    );
    assert_eq!(
        state(store, o, conv).await.last_seq,
        Seq(3),
        "refused changes append no notice"
    );
    assert_eq!(
        group_now(store, g.id).await.member_version,
        2,
        "refused changes bump no version"
    );

    join(store, g.id, b).await;
    let left = change(
        store,
        g.id,
        b,
        GroupChange::RemoveMember {
            user: b,
            ban: false,
        },
        Notice::Left { user: b },
    )
    .await
    .expect("RemoveMember");
    assert_eq!(
        (left.group.member_count, left.group.member_version),
        (2, 4),
        "removal counts down and bumps the version"
    );
    assert_eq!(
        store.member(g.id, b).await.unwrap(),
        None,
        "no entry after leaving"
    );
    assert_eq!(
        store.conversation_state(b, conv).await.unwrap(),
        None,
        "a former member is no participant"
    );
    assert!(
        !store
            .conversation_states(b)
            .await
            .unwrap()
            .iter()
            .any(|s| s.id == conv),
        "a former member's list lacks the group"
    );
    assert!(!store.groups_of(b).await.unwrap().contains(&g.id));
    assert!(!store.member_ids(g.id).await.unwrap().contains(&b));
    assert_eq!(
        store.member_changes(g.id, 2).await.unwrap(),
        vec![MemberChange {
            version: 4,
            user: b,
            removed: true
        }],
        "each user once, with the latest version"
    );
    assert!(
        !store.is_banned(g.id, b).await.unwrap(),
        "leaving bans nobody"
    );

    let again = join(store, g.id, b).await;
    assert_eq!(
        member_now(store, g.id, b).await.join_seq,
        again.appended.seq,
        "a returning member gets a new join seq"
    );
    assert_eq!(
        state(store, b, conv).await.read_seq,
        again.appended.seq,
        "and a new read position"
    );

    change(
        store,
        g.id,
        o,
        GroupChange::RemoveMember { user: b, ban: true },
        Notice::Kicked {
            user: b,
            by: o,
            banned: true,
        },
    )
    .await
    .expect("a kick with a ban");
    assert!(
        store.is_banned(g.id, b).await.unwrap(),
        "the ban is recorded"
    );
    assert!(
        !store.is_banned(g.id, a).await.unwrap(),
        "bans are per user"
    );
    let before = state(store, o, conv).await.last_seq;
    assert_err!(
        change(store, g.id, o, add_member(b, ROOMY), joined(b)).await,
        Error::Forbidden(_) | Error::Conflict(_),
        "adding a banned user"
    );
    assert_eq!(
        state(store, o, conv).await.last_seq,
        before,
        "nothing appended"
    );
    assert!(
        store.unban(g.id, b).await.expect("unban"),
        "unban lifts a ban"
    );
    assert!(
        !store.unban(g.id, b).await.unwrap(),
        "unban without a ban reports false"
    );
    assert!(!store.is_banned(g.id, b).await.unwrap());
    join(store, g.id, b).await;
}

/// The member cap, join requests and invite links, each applied atomically
/// with the new member.
async fn check_group_join_sources(store: &dyn Store) {
    let o = new_user(store, "sources-owner").await;
    let [a, b, c, d, e, f, h] = [
        new_user(store, "sources-a").await,
        new_user(store, "sources-b").await,
        new_user(store, "sources-c").await,
        new_user(store, "sources-d").await,
        new_user(store, "sources-e").await,
        new_user(store, "sources-f").await,
        new_user(store, "sources-h").await,
    ];
    let g = new_group(store, o, "Sources").await;

    change(store, g.id, a, add_member(a, 2), joined(a))
        .await
        .expect("the second member fits a cap of 2");
    assert_err!(
        change(store, g.id, b, add_member(b, 2), joined(b)).await,
        Error::LimitReached {
            limit: "max_members",
            max: 2
        },
        "the cap counts the owner"
    );
    assert_eq!(group_now(store, g.id).await.member_count, 2);

    let t = tick();
    let request = |user: UserId, kind: JoinKind, inviter: Option<UserId>| NewJoinRequest {
        group: g.id,
        user,
        kind,
        message: "let me in".into(),
        answer: Some("4".into()),
        inviter,
        created_at: t,
    };
    let app = store
        .create_join_request(request(c, JoinKind::Application, None))
        .await
        .expect("create_join_request");
    assert_eq!(
        app,
        JoinRequest {
            id: app.id,
            group: g.id,
            user: c,
            kind: JoinKind::Application,
            message: "let me in".into(),
            answer: Some("4".into()),
            inviter: None,
            status: RequestStatus::Pending,
            reviewer: None,
            reason: None,
            created_at: t,
        },
        "a new request is pending with the given fields"
    );
    assert_eq!(
        store.join_request(app.id).await.unwrap(),
        Some(app.clone()),
        "join_request by id"
    );
    assert_eq!(store.join_request(NO_JOIN_REQUEST).await.unwrap(), None);
    assert_err!(
        store
            .create_join_request(request(c, JoinKind::Application, None))
            .await,
        Error::Conflict(_),
        "a second pending application"
    );
    let invitation = store
        .create_join_request(NewJoinRequest {
            created_at: tick(),
            ..request(c, JoinKind::Invitation, Some(a))
        })
        .await
        .expect("an invitation beside a pending application");
    let app_d = store
        .create_join_request(NewJoinRequest {
            created_at: tick(),
            ..request(d, JoinKind::Application, None)
        })
        .await
        .unwrap();
    assert_eq!(
        store.pending_applications(g.id).await.unwrap(),
        vec![app.clone(), app_d.clone()],
        "the group's pending applications, oldest first, without invitations"
    );
    assert_eq!(
        store.user_join_requests(c).await.unwrap(),
        vec![app.clone(), invitation.clone()],
        "a user's pending applications and invitations, oldest first"
    );

    let approved = GroupChange::AddMember {
        user: c,
        inviter: None,
        approver: Some(o),
        cap: ROOMY,
        request: Some(app.id),
        link: None,
    };
    change(
        store,
        g.id,
        o,
        approved,
        Notice::Joined {
            user: c,
            inviter: None,
            approver: Some(o),
        },
    )
    .await
    .expect("AddMember accepting a request");
    let accepted = store.join_request(app.id).await.unwrap().unwrap();
    assert_eq!(
        (accepted.status, accepted.reviewer),
        (RequestStatus::Accepted, Some(o)),
        "the request is accepted with the approver as reviewer"
    );
    assert_eq!(member_now(store, g.id, c).await.approver, Some(o));
    assert_eq!(
        store.pending_applications(g.id).await.unwrap(),
        vec![app_d.clone()],
        "an accepted request is no longer pending"
    );

    let refused = store
        .close_join_request(
            app_d.id,
            RequestStatus::Refused,
            Some(o),
            Some("full".into()),
        )
        .await
        .expect("close_join_request");
    assert_eq!(
        refused,
        JoinRequest {
            status: RequestStatus::Refused,
            reviewer: Some(o),
            reason: Some("full".into()),
            ..app_d.clone()
        },
        "close_join_request returns the closed request"
    );
    assert_eq!(store.join_request(app_d.id).await.unwrap(), Some(refused));
    assert!(store.pending_applications(g.id).await.unwrap().is_empty());
    assert_err!(
        store
            .close_join_request(app_d.id, RequestStatus::Refused, Some(o), None)
            .await,
        Error::Conflict(_),
        "closing a closed request"
    );
    assert_err!(
        store
            .close_join_request(NO_JOIN_REQUEST, RequestStatus::Refused, Some(o), None)
            .await,
        Error::NotFound(_),
        "closing an unknown request"
    );
    let before = state(store, o, g.conversation).await.last_seq;
    assert_err!(
        change(
            store,
            g.id,
            o,
            GroupChange::AddMember {
                user: d,
                inviter: None,
                approver: Some(o),
                cap: ROOMY,
                request: Some(app_d.id),
                link: None,
            },
            joined(d)
        )
        .await,
        Error::Conflict(_),
        "accepting a request that is no longer pending"
    );
    assert_eq!(
        store.member(g.id, d).await.unwrap(),
        None,
        "and nobody is added"
    );
    assert_eq!(state(store, o, g.conversation).await.last_seq, before);

    let link = InviteLink {
        code: format!("conformance-link-{}", g.id),
        group: g.id,
        creator: a,
        expires_at: Some(t + 86_400_000),
        max_uses: Some(2),
        uses: 0,
        created_at: t,
    };
    store
        .create_invite_link(link.clone())
        .await
        .expect("create_invite_link");
    assert_eq!(
        store.invite_link(&link.code).await.unwrap(),
        Some(link.clone()),
        "invite_link by code"
    );
    assert_eq!(store.invite_link("no-such-code").await.unwrap(), None);
    let via = |user: UserId, code: &str| GroupChange::AddMember {
        user,
        inviter: Some(a),
        approver: None,
        cap: ROOMY,
        request: None,
        link: Some(code.to_owned()),
    };
    for user in [e, f] {
        change(store, g.id, user, via(user, &link.code), joined(user))
            .await
            .expect("AddMember with a link");
    }
    assert_eq!(
        store.invite_link(&link.code).await.unwrap().unwrap().uses,
        2,
        "each use is counted"
    );
    assert_eq!(member_now(store, g.id, e).await.inviter, Some(a));
    assert_err!(
        change(store, g.id, h, via(h, &link.code), joined(h)).await,
        Error::LimitReached {
            limit: "invite_link_uses",
            max: 2
        },
        "a used-up link"
    );
    assert_eq!(
        store.invite_link(&link.code).await.unwrap().unwrap().uses,
        2,
        "a refused use is not counted"
    );
    assert_eq!(store.member(g.id, h).await.unwrap(), None);

    let unlimited = InviteLink {
        code: format!("conformance-unlimited-{}", g.id),
        max_uses: None,
        ..link
    };
    store.create_invite_link(unlimited.clone()).await.unwrap();
    change(store, g.id, h, via(h, &unlimited.code), joined(h))
        .await
        .expect("a link without a use limit");
    assert_eq!(
        store
            .invite_link(&unlimited.code)
            .await
            .unwrap()
            .unwrap()
            .uses,
        1
    );
}

/// Admins up to a cap, never the owner's role; a transfer swaps owner and
/// admin in one version.
async fn check_group_roles(store: &dyn Store) {
    let o = new_user(store, "roles-owner").await;
    let a = new_user(store, "roles-a").await;
    let b = new_user(store, "roles-b").await;
    let outsider = new_user(store, "roles-outsider").await;
    let g = new_group(store, o, "Roles").await;
    join(store, g.id, a).await;
    join(store, g.id, b).await;

    let role = |user: UserId, role: Role, admin_cap: u32| GroupChange::SetRole {
        user,
        role,
        admin_cap,
    };
    let notice = |user: UserId, role: Role| Notice::RoleChanged { user, role, by: o };
    let v = group_now(store, g.id).await.member_version;
    let promoted = change(
        store,
        g.id,
        o,
        role(a, Role::Admin, 1),
        notice(a, Role::Admin),
    )
    .await
    .expect("SetRole admin");
    assert_eq!(
        promoted.group.member_version,
        v + 1,
        "a role change bumps the version"
    );
    assert_eq!(member_now(store, g.id, a).await.role, Role::Admin);
    assert_eq!(
        sorted(store.managers(g.id).await.unwrap()),
        sorted(vec![o, a]),
        "managers are the owner and the admins"
    );
    assert_err!(
        change(
            store,
            g.id,
            o,
            role(b, Role::Admin, 1),
            notice(b, Role::Admin)
        )
        .await,
        Error::LimitReached {
            limit: "max_admins",
            max: 1
        },
        "an admin past the cap"
    );
    change(
        store,
        g.id,
        o,
        role(a, Role::Admin, 1),
        notice(a, Role::Admin),
    )
    .await
    .expect("an admin made admin again does not count twice");
    assert_err!(
        change(
            store,
            g.id,
            o,
            role(o, Role::Member, 5),
            notice(o, Role::Member)
        )
        .await,
        Error::Conflict(_),
        "changing the owner's role"
    );
    assert_err!(
        change(
            store,
            g.id,
            o,
            role(outsider, Role::Admin, 5),
            notice(outsider, Role::Admin)
        )
        .await,
        Error::NotFound(_),
        "a role for a non-member"
    );
    change(
        store,
        g.id,
        o,
        role(a, Role::Member, 1),
        notice(a, Role::Member),
    )
    .await
    .expect("SetRole member");
    assert_eq!(store.managers(g.id).await.unwrap(), vec![o]);

    assert_err!(
        change(
            store,
            g.id,
            o,
            GroupChange::TransferOwner { to: outsider },
            Notice::OwnerTransferred {
                from: o,
                to: outsider
            }
        )
        .await,
        Error::NotFound(_),
        "transferring to a non-member"
    );
    let before = group_now(store, g.id).await.member_version;
    let moved = change(
        store,
        g.id,
        o,
        GroupChange::TransferOwner { to: b },
        Notice::OwnerTransferred { from: o, to: b },
    )
    .await
    .expect("TransferOwner");
    assert_eq!(
        (moved.group.owner, moved.group.member_version),
        (b, before + 1),
        "the group has a new owner, in one version"
    );
    assert_eq!(member_now(store, g.id, b).await.role, Role::Owner);
    assert_eq!(
        member_now(store, g.id, o).await.role,
        Role::Admin,
        "the old owner becomes an admin"
    );
    let mut changes = store.member_changes(g.id, before).await.unwrap();
    changes.sort_by_key(|c| c.user);
    assert_eq!(
        changes,
        vec![
            MemberChange {
                version: before + 1,
                user: o,
                removed: false
            },
            MemberChange {
                version: before + 1,
                user: b,
                removed: false
            },
        ],
        "both entries changed"
    );
    assert_eq!(
        sorted(store.managers(g.id).await.unwrap()),
        sorted(vec![o, b])
    );
    change(
        store,
        g.id,
        o,
        GroupChange::RemoveMember {
            user: o,
            ban: false,
        },
        Notice::Left { user: o },
    )
    .await
    .expect("the former owner may leave");
}

/// Mutes, titles and cards change one entry each and bump the version;
/// muting the whole group does not.
async fn check_group_member_entries(store: &dyn Store) {
    let o = new_user(store, "entries-owner").await;
    let a = new_user(store, "entries-a").await;
    let outsider = new_user(store, "entries-outsider").await;
    let g = new_group(store, o, "Entries").await;
    join(store, g.id, a).await;
    let v = group_now(store, g.id).await.member_version;
    let until = tick() + 600_000;

    let mute = |user: UserId, until: Option<i64>| {
        (
            GroupChange::Mute { user, until },
            Notice::Muted { user, until, by: o },
        )
    };
    let title = |user: UserId, title: Option<&str>, expires_at: Option<i64>| {
        let title = title.map(str::to_owned);
        (
            GroupChange::SetTitle {
                user,
                title: title.clone(),
                expires_at,
            },
            Notice::TitleSet {
                user,
                title,
                expires_at,
            },
        )
    };
    let card = |user: UserId, card: Option<&str>| {
        let card = card.map(str::to_owned);
        (
            GroupChange::SetCard {
                user,
                card: card.clone(),
            },
            Notice::CardSet { user, card, by: o },
        )
    };
    for (c, n) in [
        mute(a, Some(until)),
        title(a, Some("龙王"), Some(until)),
        card(a, Some("Card A")),
    ] {
        change(store, g.id, o, c, n).await.expect("an entry change");
    }
    let entry = member_now(store, g.id, a).await;
    assert_eq!(
        (
            entry.muted_until,
            entry.title.as_deref(),
            entry.title_expires_at,
            entry.card.as_deref()
        ),
        (Some(until), Some("龙王"), Some(until), Some("Card A")),
        "mute, title and card are stored"
    );
    assert_eq!(
        group_now(store, g.id).await.member_version,
        v + 3,
        "each entry change bumps the version"
    );
    assert_eq!(
        store.member_changes(g.id, v).await.unwrap(),
        vec![MemberChange {
            version: v + 3,
            user: a,
            removed: false
        }],
        "several changes of one entry are listed once, with the latest version"
    );

    for (c, n) in [mute(a, None), title(a, None, None), card(a, None)] {
        change(store, g.id, o, c, n)
            .await
            .expect("a clearing change");
    }
    let entry = member_now(store, g.id, a).await;
    assert_eq!(
        (
            entry.muted_until,
            entry.title,
            entry.title_expires_at,
            entry.card
        ),
        (None, None, None, None),
        "mute, title and card are cleared"
    );
    for (c, n) in [
        mute(outsider, Some(until)),
        title(outsider, Some("x"), None),
        card(outsider, Some("x")),
    ] {
        assert_err!(
            change(store, g.id, o, c, n).await,
            Error::NotFound(_),
            "an entry change for a non-member"
        );
    }

    let v = group_now(store, g.id).await.member_version;
    let muted = change(
        store,
        g.id,
        o,
        GroupChange::MuteAll(true),
        Notice::GroupMuted { muted: true, by: o },
    )
    .await
    .expect("MuteAll");
    assert!(muted.group.muted, "the whole group is muted");
    assert_eq!(
        muted.group.member_version, v,
        "muting the group changes no entry"
    );
    let unmuted = change(
        store,
        g.id,
        o,
        GroupChange::MuteAll(false),
        Notice::GroupMuted {
            muted: false,
            by: o,
        },
    )
    .await
    .unwrap();
    assert!(!unmuted.group.muted, "and unmuted");
}

/// Settings change only what is given; every join mode survives storage.
async fn check_group_settings(store: &dyn Store) {
    let o = new_user(store, "settings-owner").await;
    let g = new_group(store, o, "Settings").await;
    assert_eq!(
        (g.avatar.as_deref(), g.history, g.muted),
        (None, HistoryVisibility::FromJoin, false),
        "a new group's defaults"
    );
    let settings = |s: GroupSettings| {
        (
            GroupChange::Settings(s.clone()),
            Notice::SettingsChanged { by: o, settings: s },
        )
    };

    let first = GroupSettings {
        name: Some("Renamed".into()),
        intro: Some("新的介绍".into()),
        avatar: Some(Some("file:group".into())),
        ..Default::default()
    };
    let (c, n) = settings(first.clone());
    let done = change(store, g.id, o, c, n.clone())
        .await
        .expect("Settings");
    assert_eq!(
        done.group,
        Group {
            name: "Renamed".into(),
            intro: "新的介绍".into(),
            avatar: Some("file:group".into()),
            ..g.clone()
        },
        "only the given settings change"
    );
    assert_eq!(
        notice_at(store, g.conversation, done.appended.seq).await,
        (o, n),
        "a settings notice round-trips"
    );

    let second = GroupSettings {
        category: Some("games".into()),
        tags: Some(vec!["a".into(), "b c".into()]),
        listed: Some(true),
        members_may_invite: Some(!g.members_may_invite),
        history: Some(HistoryVisibility::Full),
        ..Default::default()
    };
    let (c, n) = settings(second);
    let done = change(store, g.id, o, c, n).await.unwrap();
    assert_eq!(
        done.group,
        Group {
            name: "Renamed".into(),
            intro: "新的介绍".into(),
            avatar: Some("file:group".into()),
            category: "games".into(),
            tags: vec!["a".into(), "b c".into()],
            listed: true,
            members_may_invite: !g.members_may_invite,
            history: HistoryVisibility::Full,
            ..g.clone()
        },
        "the second change keeps the first"
    );
    let (c, n) = settings(GroupSettings {
        avatar: Some(None),
        ..Default::default()
    });
    let done = change(store, g.id, o, c, n).await.unwrap();
    assert_eq!(done.group.avatar, None, "Some(None) clears the avatar");
    assert_eq!(done.group.name, "Renamed");

    for mode in [
        JoinMode::Open,
        JoinMode::Question {
            question: "Who are you?".into(),
        },
        JoinMode::QuestionAuto {
            question: "暗号?".into(),
            answer: "天王盖地虎".into(),
        },
        JoinMode::InviteOnly,
        JoinMode::Closed,
        JoinMode::Approval,
    ] {
        let (c, n) = settings(GroupSettings {
            join_mode: Some(mode.clone()),
            ..Default::default()
        });
        change(store, g.id, o, c, n).await.expect("set a join mode");
        assert_eq!(
            group_now(store, g.id).await.join_mode,
            mode,
            "join modes round-trip"
        );
    }

    // A server administrator acts as user 0.
    let tiered = change(
        store,
        g.id,
        UserId(0),
        GroupChange::SetTier(3),
        Notice::TierChanged {
            tier: 3,
            by: UserId(0),
        },
    )
    .await
    .expect("SetTier by a server administrator");
    assert_eq!(tiered.group.tier, 3, "SetTier");
    assert_eq!(
        notice_at(store, g.conversation, tiered.appended.seq)
            .await
            .0,
        UserId(0),
        "an administrator's notice is sent by user 0"
    );
    assert_eq!(
        tiered.group.member_version, g.member_version,
        "settings change no member entry"
    );
}

/// Announcements: created with an id the notice names, listed pinned first
/// then newest first, edited, confirmed once per member, deleted.
async fn check_group_announcements(store: &dyn Store) {
    let o = new_user(store, "announce-owner").await;
    let a = new_user(store, "announce-a").await;
    let g = new_group(store, o, "Announcements").await;
    join(store, g.id, a).await;
    let draft = |title: &str, pinned: bool| AnnouncementDraft {
        title: title.to_owned(),
        body: format!("{title}: 明天开会"),
        pinned,
        require_confirm: true,
        entrance: !pinned,
    };
    let announce = |action: &str| Notice::Announcement {
        // The store fills in a created announcement's id.
        id: AnnouncementId(0),
        action: action.to_owned(),
        by: o,
    };

    let t1 = tick();
    let c1 = store
        .change_group(
            g.id,
            o,
            GroupChange::CreateAnnouncement(draft("first", false)),
            announce("created"),
            t1,
        )
        .await
        .expect("CreateAnnouncement");
    let id1 = c1
        .announcement
        .expect("CreateAnnouncement reports the new id");
    assert_eq!(
        notice_at(store, g.conversation, c1.appended.seq).await,
        (
            o,
            Notice::Announcement {
                id: id1,
                action: "created".into(),
                by: o
            }
        ),
        "the notice names the created announcement"
    );
    assert_eq!(
        store.announcement(id1).await.unwrap(),
        Some(Announcement {
            id: id1,
            group: g.id,
            author: o,
            title: "first".into(),
            body: "first: 明天开会".into(),
            pinned: false,
            require_confirm: true,
            entrance: true,
            created_at: t1,
            edited_at: None,
        }),
        "the stored announcement"
    );
    let mut created = Vec::new();
    for (title, pinned) in [("second", false), ("third", true)] {
        let done = change(
            store,
            g.id,
            o,
            GroupChange::CreateAnnouncement(draft(title, pinned)),
            announce("created"),
        )
        .await
        .expect("CreateAnnouncement");
        created.push(done.announcement.expect("an id"));
    }
    let (id2, id3) = (created[0], created[1]);
    assert!(
        id1 != id2 && id2 != id3 && id1 != id3,
        "announcement ids are distinct"
    );
    let ids = |list: Vec<Announcement>| list.iter().map(|x| x.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.announcements(g.id).await.unwrap()),
        vec![id3, id2, id1],
        "pinned first, then newest first"
    );

    let t = tick();
    store
        .change_group(
            g.id,
            o,
            GroupChange::EditAnnouncement(id1, draft("first, edited", true)),
            Notice::Announcement {
                id: id1,
                action: "edited".into(),
                by: o,
            },
            t,
        )
        .await
        .expect("EditAnnouncement");
    let edited = store.announcement(id1).await.unwrap().unwrap();
    assert_eq!(
        (
            edited.title.as_str(),
            edited.pinned,
            edited.created_at,
            edited.edited_at
        ),
        ("first, edited", true, t1, Some(t)),
        "an edit replaces the content and records its time"
    );
    assert_eq!(
        ids(store.announcements(g.id).await.unwrap()),
        vec![id3, id1, id2],
        "pinned ones newest first, then the others"
    );
    assert_err!(
        change(
            store,
            g.id,
            o,
            GroupChange::EditAnnouncement(NO_ANNOUNCEMENT, draft("x", false)),
            announce("edited")
        )
        .await,
        Error::NotFound(_),
        "editing an unknown announcement"
    );

    let t = tick();
    store
        .confirm_announcement(id1, a, t)
        .await
        .expect("confirm_announcement");
    store
        .confirm_announcement(id1, a, tick())
        .await
        .expect("confirming again is fine");
    let t_owner = tick();
    store.confirm_announcement(id1, o, t_owner).await.unwrap();
    assert_eq!(
        sorted(store.confirmations(id1).await.unwrap()),
        sorted(vec![(a, t), (o, t_owner)]),
        "each member once, with the first time"
    );
    assert!(store.confirmations(id2).await.unwrap().is_empty());

    change(
        store,
        g.id,
        o,
        GroupChange::DeleteAnnouncement(id2),
        Notice::Announcement {
            id: id2,
            action: "deleted".into(),
            by: o,
        },
    )
    .await
    .expect("DeleteAnnouncement");
    assert_eq!(store.announcement(id2).await.unwrap(), None, "deleted");
    assert_eq!(
        ids(store.announcements(g.id).await.unwrap()),
        vec![id3, id1]
    );
    assert_err!(
        change(
            store,
            g.id,
            o,
            GroupChange::DeleteAnnouncement(id2),
            announce("deleted")
        )
        .await,
        Error::NotFound(_),
        "deleting twice"
    );
    assert_eq!(store.announcement(NO_ANNOUNCEMENT).await.unwrap(), None);
    assert!(store.announcements(NO_GROUP).await.unwrap().is_empty());
}

/// Essence marks only messages of the group, idempotently; unmarking a
/// message that is not marked is `NotFound`.
async fn check_group_essence(store: &dyn Store) {
    let o = new_user(store, "essence-owner").await;
    let a = new_user(store, "essence-a").await;
    let g = new_group(store, o, "Essence").await;
    join(store, g.id, a).await;
    let m1 = send(store, g.conversation, a, "essence-1").await.seq;
    let m2 = send(store, g.conversation, o, "essence-2").await.seq;
    let essence = |seq: Seq, set: bool, by: UserId| {
        (
            GroupChange::SetEssence { seq, set },
            Notice::Essence { seq, set, by },
        )
    };

    let t1 = tick();
    let (c, n) = essence(m1, true, o);
    store
        .change_group(g.id, o, c, n, t1)
        .await
        .expect("SetEssence");
    assert_eq!(
        store.essences(g.id).await.unwrap(),
        vec![Essence {
            seq: m1,
            by: o,
            at: t1
        }],
        "the marked message"
    );
    let (c, n) = essence(m1, true, a);
    change(store, g.id, a, c, n)
        .await
        .expect("marking twice is fine");
    assert_eq!(
        store.essences(g.id).await.unwrap(),
        vec![Essence {
            seq: m1,
            by: o,
            at: t1
        }],
        "marking twice keeps the first marking"
    );
    for (seq, what) in [
        (Seq(1), "a notice"),
        (Seq(999), "a missing seq"),
        (Seq(u64::MAX), "a seq far past the end"),
    ] {
        let (c, n) = essence(seq, true, o);
        assert_err!(
            change(store, g.id, o, c, n).await,
            Error::NotFound(_),
            format!("marking {what} as essence")
        );
    }
    let t2 = tick();
    let (c, n) = essence(m2, true, o);
    store.change_group(g.id, o, c, n, t2).await.unwrap();
    assert_eq!(
        store.essences(g.id).await.unwrap(),
        vec![
            Essence {
                seq: m2,
                by: o,
                at: t2
            },
            Essence {
                seq: m1,
                by: o,
                at: t1
            }
        ],
        "newest first"
    );
    let (c, n) = essence(m1, false, o);
    change(store, g.id, o, c, n).await.expect("unmark");
    assert_eq!(
        store.essences(g.id).await.unwrap(),
        vec![Essence {
            seq: m2,
            by: o,
            at: t2
        }]
    );
    let (c, n) = essence(m1, false, o);
    assert_err!(
        change(store, g.id, o, c, n).await,
        Error::NotFound(_),
        "unmarking a message that is not marked"
    );
    assert!(store.essences(NO_GROUP).await.unwrap().is_empty());
}

/// A dissolved group keeps its members and history, refuses every change and
/// no longer links its members.
async fn check_group_dissolution(store: &dyn Store) {
    let o = new_user(store, "dissolve-owner").await;
    let a = new_user(store, "dissolve-a").await;
    let b = new_user(store, "dissolve-b").await;
    let g = new_group(store, o, "Dissolved").await;
    join(store, g.id, a).await;
    send(store, g.conversation, a, "before").await;
    assert!(store.share_group(o, a).await.unwrap());

    let t = tick();
    let done = store
        .change_group(
            g.id,
            o,
            GroupChange::Dissolve,
            Notice::Dissolved { by: o },
            t,
        )
        .await
        .expect("Dissolve");
    assert_eq!(done.group.dissolved_at, Some(t), "the dissolution time");
    assert_eq!(group_now(store, g.id).await.dissolved_at, Some(t));
    assert_eq!(
        notice_at(store, g.conversation, done.appended.seq).await,
        (o, Notice::Dissolved { by: o }),
        "the Dissolved notice"
    );
    let last = done.appended.seq;

    let refused = [
        (add_member(b, ROOMY), joined(b)),
        (
            GroupChange::MuteAll(true),
            Notice::GroupMuted { muted: true, by: o },
        ),
        (
            GroupChange::Settings(GroupSettings {
                name: Some("x".into()),
                ..Default::default()
            }),
            Notice::SettingsChanged {
                by: o,
                settings: GroupSettings::default(),
            },
        ),
        (GroupChange::Dissolve, Notice::Dissolved { by: o }),
    ];
    for (c, n) in refused {
        assert_err!(
            change(store, g.id, o, c.clone(), n).await,
            Error::Conflict(_),
            format!("{c:?} in a dissolved group")
        );
    }
    assert_eq!(
        state(store, a, g.conversation).await.last_seq,
        last,
        "refused changes append nothing"
    );
    assert_eq!(
        sorted(store.member_ids(g.id).await.unwrap()),
        sorted(vec![o, a]),
        "members are kept"
    );
    assert!(
        store.groups_of(a).await.unwrap().contains(&g.id),
        "groups_of includes dissolved groups"
    );
    assert!(
        !store.share_group(o, a).await.unwrap(),
        "a dissolved group links nobody"
    );
    assert_eq!(
        seqs(store, g.conversation, EventRange::After(Seq(0), 100)).await,
        (1..=last.0).collect::<Vec<_>>(),
        "the history stays readable"
    );
    assert!(
        store
            .search_groups(GroupSearch {
                number: Some(g.id),
                ..Default::default()
            })
            .await
            .unwrap()
            .is_empty(),
        "search skips dissolved groups"
    );
}

/// Group messages: sender activity, unread and mention counts (notices and
/// recalls excluded), notices refused by append and read back as notices.
async fn check_group_messages(store: &dyn Store) {
    let o = new_user(store, "gmsg-owner").await;
    let a = new_user(store, "gmsg-a").await;
    let b = new_user(store, "gmsg-b").await;
    let c = new_user(store, "gmsg-c").await;
    let g = new_group(store, o, "Messages").await;
    let conv = g.conversation;
    join(store, g.id, a).await; // seq 2
    join(store, g.id, b).await; // seq 3
    let version = group_now(store, g.id).await.member_version;

    let m4 = mention_message(
        conv,
        a,
        "gm-4",
        vec![
            Segment::Text { text: "hi ".into() },
            Segment::Mention { user: b },
        ],
    );
    let x4 = store.append(m4.clone()).await.expect("a group message");
    assert_eq!(x4.seq, Seq(4));
    let entry = member_now(store, g.id, a).await;
    assert_eq!(
        (entry.messages, entry.last_spoke_at),
        (1, Some(m4.time)),
        "a message updates the sender's activity"
    );
    assert_eq!(
        member_now(store, g.id, b).await.messages,
        0,
        "other entries are untouched"
    );
    assert_eq!(
        group_now(store, g.id).await.member_version,
        version,
        "activity is not a member-list change"
    );
    let retry = store.append(m4.clone()).await.expect("a retry");
    assert!(retry.duplicate);
    assert_eq!(
        member_now(store, g.id, a).await.messages,
        1,
        "a retry counts no activity"
    );
    assert_eq!(unread(store, b, conv).await, (1, 1), "b is mentioned");
    assert_eq!(unread(store, o, conv).await, (1, 0), "o is not mentioned");
    assert_eq!(
        unread(store, a, conv).await,
        (0, 0),
        "own messages are not unread"
    );

    store
        .append(mention_message(conv, o, "gm-5", vec![Segment::MentionAll]))
        .await
        .unwrap();
    assert_eq!(
        unread(store, b, conv).await,
        (2, 2),
        "@all mentions everyone"
    );
    assert_eq!(unread(store, a, conv).await, (1, 1));
    assert_eq!(
        unread(store, o, conv).await,
        (1, 0),
        "not the sender of @all"
    );

    store
        .append(mention_message(
            conv,
            a,
            "gm-6",
            vec![
                Segment::Mention { user: b },
                Segment::MentionAll,
                Segment::Mention { user: b },
            ],
        ))
        .await
        .unwrap();
    assert_eq!(
        unread(store, b, conv).await,
        (3, 3),
        "a message mentioning b several times counts once"
    );

    store
        .append(recall(conv, a, "gm-recall-4", 4))
        .await
        .expect("recall a mention");
    assert_eq!(
        unread(store, b, conv).await,
        (2, 2),
        "a recalled mention no longer counts"
    );
    join(store, g.id, c).await; // seq 8
    assert_eq!(
        unread(store, b, conv).await,
        (2, 2),
        "notices are not unread"
    );
    assert_eq!(
        state(store, c, conv).await.read_seq,
        Seq(8),
        "a newcomer reads from their join"
    );
    assert_eq!(unread(store, c, conv).await, (0, 0));

    assert_eq!(store.mark_read(b, conv, Seq(5)).await.unwrap(), Seq(5));
    assert_eq!(
        unread(store, b, conv).await,
        (1, 1),
        "reading moves past mentions"
    );
    store.mark_read(b, conv, Seq(8)).await.unwrap();
    assert_eq!(unread(store, b, conv).await, (0, 0));

    let before = state(store, o, conv).await.last_seq;
    assert_err!(
        store
            .append(Append {
                requires_friend: None,
                quota: None,
                conversation: conv,
                sender: o,
                client_msg_id: "gm-notice".into(),
                time: tick(),
                body: AppendBody::Notice(Notice::Left { user: a }),
            })
            .await,
        Error::Invalid { .. },
        "append refuses notices"
    );
    assert_eq!(state(store, o, conv).await.last_seq, before);

    let events = store
        .events(conv, EventRange::After(Seq(0), 100))
        .await
        .unwrap();
    let notices: Vec<(u64, UserId, Notice)> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Notice(n) => Some((e.seq.0, e.sender, n.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        notices,
        vec![
            (1, o, Notice::Created { owner: o }),
            (2, a, joined(a)),
            (3, b, joined(b)),
            (8, c, joined(c)),
        ],
        "events() returns notices as notices"
    );
    let mut client_ids = BTreeSet::new();
    for event in &events {
        assert!(
            client_ids.insert((event.sender, event.client_msg_id.clone())),
            "every event has its own (sender, client_msg_id)"
        );
    }

    let direct = befriend(store, a, b).await;
    store
        .append(mention_message(
            direct,
            b,
            "gm-direct",
            vec![Segment::Mention { user: a }],
        ))
        .await
        .unwrap();
    assert_eq!(
        unread(store, a, direct).await,
        (1, 1),
        "mentions count in direct conversations too"
    );
}

/// Search: number finds even unlisted groups; keyword and category find
/// listed ones; criteria combine; biggest first; dissolved never.
async fn check_group_search(store: &dyn Store) {
    let o = new_user(store, "search-owner").await;
    let fillers = [
        new_user(store, "search-filler-1").await,
        new_user(store, "search-filler-2").await,
    ];
    let token = format!("QunSrch{}", o.0);
    let tech = format!("srch-tech-{}", o.0);
    let other = format!("srch-other-{}", o.0);
    let make = |name: String, intro: String, category: &str, listed: bool| NewGroup {
        intro,
        category: category.to_owned(),
        listed,
        ..new_group_record(o, &name)
    };
    let g1 = store
        .create_group(make(
            format!("{token} 中文 club"),
            String::new(),
            &tech,
            true,
        ))
        .await
        .unwrap();
    let g2 = store
        .create_group(make(
            format!("beginners {}", token.to_lowercase()),
            String::new(),
            &tech,
            true,
        ))
        .await
        .unwrap();
    let g3 = store
        .create_group(make(format!("{token} secret"), String::new(), &tech, false))
        .await
        .unwrap();
    let g4 = store
        .create_group(make(
            "talk".into(),
            format!("we talk about {}", token.to_uppercase()),
            &other,
            true,
        ))
        .await
        .unwrap();
    let g5 = store
        .create_group(make(format!("{token} gone"), String::new(), &tech, true))
        .await
        .unwrap();
    for user in fillers {
        join(store, g2.id, user).await;
    }
    join(store, g4.id, fillers[0]).await;
    change(
        store,
        g5.id,
        o,
        GroupChange::Dissolve,
        Notice::Dissolved { by: o },
    )
    .await
    .unwrap();

    let search = |number: Option<GroupId>,
                  keyword: Option<&str>,
                  category: Option<&str>,
                  limit: u32| GroupSearch {
        number,
        keyword: keyword.map(str::to_owned),
        category: category.map(str::to_owned),
        limit,
    };
    let cases: Vec<(GroupSearch, Vec<GroupId>, &str)> = vec![
        (
            search(None, Some(&token.to_lowercase()), None, 10),
            vec![g2.id, g4.id, g1.id],
            "keyword: case-insensitive, name or intro, listed only, biggest first",
        ),
        (
            search(None, None, Some(&tech), 10),
            vec![g2.id, g1.id],
            "category: listed only",
        ),
        (
            search(None, Some(&token), Some(&other), 10),
            vec![g4.id],
            "keyword and category combine",
        ),
        (
            search(Some(g3.id), None, None, 10),
            vec![g3.id],
            "a number finds an unlisted group",
        ),
        (
            search(Some(g1.id), None, Some(&other), 10),
            vec![],
            "a number and a category combine",
        ),
        (
            search(Some(g3.id), Some(&token), None, 10),
            vec![],
            "a keyword never finds an unlisted group",
        ),
        (
            search(Some(g5.id), None, None, 10),
            vec![],
            "a dissolved group is never found",
        ),
        (
            search(Some(NO_GROUP), None, None, 10),
            vec![],
            "an unknown number",
        ),
        (
            search(None, Some(&token), None, 1),
            vec![g2.id],
            "the limit",
        ),
        (
            search(None, Some(&token), None, 0),
            vec![g2.id, g4.id, g1.id],
            "a limit of 0 means a default page",
        ),
        (
            search(None, Some(&format!("{token}%")), None, 10),
            vec![],
            "LIKE wildcards in a keyword are literal",
        ),
    ];
    for (query, expected, what) in cases {
        let found: Vec<GroupId> = store
            .search_groups(query.clone())
            .await
            .expect("search_groups")
            .iter()
            .map(|g| g.id)
            .collect();
        assert_eq!(found, expected, "{what}: {query:?}");
    }
    let full = store
        .search_groups(search(Some(g1.id), None, None, 10))
        .await
        .unwrap();
    assert_eq!(
        full,
        vec![group_now(store, g1.id).await],
        "search returns whole groups"
    );
}

/// Membership queries: paging, managers, shared groups.
async fn check_group_member_queries(store: &dyn Store) {
    let o = new_user(store, "queries-owner").await;
    let mut users = vec![o];
    for i in 0..5 {
        users.push(new_user(store, &format!("queries-{i}")).await);
    }
    let outsider = new_user(store, "queries-outsider").await;
    let g = new_group(store, o, "Queries").await;
    for user in &users[1..] {
        join(store, g.id, *user).await;
    }
    let page = |list: Vec<Member>| list.iter().map(|m| m.user).collect::<Vec<_>>();
    assert_eq!(
        page(store.members(g.id, UserId(0), 3).await.unwrap()),
        users[..3].to_vec(),
        "members(after, limit) ascending"
    );
    assert_eq!(
        page(store.members(g.id, users[2], 10).await.unwrap()),
        users[3..].to_vec(),
        "members after a bound exclude it"
    );
    assert!(store.members(g.id, o, 0).await.unwrap().is_empty());
    assert!(store
        .members(NO_GROUP, UserId(0), 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.members(g.id, UserId(0), 1).await.unwrap()[0],
        member_now(store, g.id, o).await,
        "members and member agree"
    );
    assert_eq!(sorted(store.member_ids(g.id).await.unwrap()), users.clone());
    assert!(store.member_ids(NO_GROUP).await.unwrap().is_empty());
    assert_eq!(store.member(g.id, outsider).await.unwrap(), None);
    assert_eq!(store.member(NO_GROUP, o).await.unwrap(), None);

    assert!(store.share_group(users[1], users[2]).await.unwrap());
    assert!(
        store.share_group(users[2], users[1]).await.unwrap(),
        "share_group is symmetric"
    );
    assert!(!store.share_group(users[1], outsider).await.unwrap());
    let other = new_group(store, outsider, "Elsewhere").await;
    assert!(
        !store.share_group(users[1], outsider).await.unwrap(),
        "being in some group is not enough"
    );
    join(store, other.id, users[1]).await;
    assert!(store.share_group(users[1], outsider).await.unwrap());
    change(
        store,
        other.id,
        users[1],
        GroupChange::RemoveMember {
            user: users[1],
            ban: false,
        },
        Notice::Left { user: users[1] },
    )
    .await
    .unwrap();
    assert!(
        !store.share_group(users[1], outsider).await.unwrap(),
        "not after leaving"
    );
    assert!(store.groups_of(outsider).await.unwrap() == vec![other.id]);
    assert!(store.groups_of(NOBODY).await.unwrap().is_empty());
}

/// Read receipts count participants at or past a seq; honours count
/// messages per sender within a time range.
async fn check_group_receipts_and_honours(store: &dyn Store) {
    let o = new_user(store, "receipts-owner").await;
    let a = new_user(store, "receipts-a").await;
    let b = new_user(store, "receipts-b").await;
    let g = new_group(store, o, "Receipts").await;
    let conv = g.conversation;
    join(store, g.id, a).await;
    join(store, g.id, b).await; // last seq 3

    let t0 = tick();
    let at = |sender: UserId, id: &str, time: i64| Append {
        requires_friend: None,
        quota: None,
        conversation: conv,
        sender,
        client_msg_id: id.to_owned(),
        time,
        body: AppendBody::Message(text(id)),
    };
    let sends = [
        (o, "hon-1", t0 + 1),
        (o, "hon-2", t0 + 2),
        (o, "hon-3", t0 + 3),
        (a, "hon-4", t0 + 4),
        (a, "hon-5", t0 + 5),
        (b, "hon-6", t0 + 6),
        (b, "hon-7", t0 + 500),
    ];
    for (sender, id, time) in sends {
        store.append(at(sender, id, time)).await.unwrap();
    }
    // A notice inside the range, by the top sender: notices are no messages.
    store
        .change_group(
            g.id,
            o,
            GroupChange::MuteAll(true),
            Notice::GroupMuted { muted: true, by: o },
            t0 + 7,
        )
        .await
        .unwrap(); // seq 11
    let top = |from: i64, to: i64, limit: u32| store.top_senders(conv, from, to, limit);
    assert_eq!(
        top(t0, t0 + 1000, 10).await.unwrap()[0],
        (o, 3),
        "most first"
    );
    assert_eq!(
        sorted(top(t0, t0 + 1000, 10).await.unwrap()),
        sorted(vec![(o, 3), (a, 2), (b, 2)]),
        "messages per sender; notices do not count"
    );
    assert_eq!(
        top(t0, t0 + 500, 10).await.unwrap(),
        vec![(o, 3), (a, 2), (b, 1)],
        "the range excludes its end"
    );
    assert_eq!(
        top(t0 + 2, t0 + 4, 10).await.unwrap(),
        vec![(o, 2)],
        "the range includes its start"
    );
    assert_eq!(top(t0, t0 + 1000, 1).await.unwrap(), vec![(o, 3)], "limit");
    assert!(top(t0 + 501, t0 + 1000, 10).await.unwrap().is_empty());

    store.mark_read(o, conv, Seq(11)).await.unwrap();
    store.mark_read(a, conv, Seq(6)).await.unwrap();
    // b stays at their join seq, 3.
    let cases: &[(u64, &[UserId])] = &[
        (3, &[o, a, b]),
        (4, &[o, a]),
        (6, &[o, a]),
        (7, &[o]),
        (11, &[o]),
        (12, &[]),
    ];
    for (seq, expected) in cases {
        assert_eq!(
            store.readers(conv, Seq(*seq), true).await.unwrap(),
            (expected.len() as u64, expected.to_vec()),
            "readers of seq {seq}, listed ascending"
        );
        assert_eq!(
            store.readers(conv, Seq(*seq), false).await.unwrap(),
            (expected.len() as u64, vec![]),
            "readers of seq {seq}, counted only"
        );
    }
}

/// Daily counters are consumed all together or not at all.
async fn check_daily_counters(store: &dyn Store) {
    let u = new_user(store, "daily").await;
    let key_a = format!("conformance:{u}:a");
    let key_b = format!("conformance:{u}:b");
    let counter = |key: &str, limit: u32, name: &'static str| DailyCounter {
        key: key.to_owned(),
        limit,
        name,
    };
    let both = [counter(&key_a, 3, "quota_a"), counter(&key_b, 1, "quota_b")];
    assert_eq!(
        store
            .consume_daily(&both, DAY)
            .await
            .expect("consume_daily"),
        vec![1, 1],
        "the counts after this use"
    );
    assert_err!(
        store.consume_daily(&both, DAY).await,
        Error::LimitReached {
            limit: "quota_b",
            max: 1
        },
        "a full counter refuses the whole consumption"
    );
    assert_eq!(
        store.daily_count(&key_a, DAY).await.unwrap(),
        1,
        "nothing was counted when one counter was full"
    );
    assert_eq!(store.consume_daily(&both[..1], DAY).await.unwrap(), vec![2]);
    assert_eq!(
        store.consume_daily(&both, DAY + 1).await.unwrap(),
        vec![1, 1],
        "each day counts separately"
    );
    assert_eq!(store.daily_count(&key_b, DAY).await.unwrap(), 1);
    assert_eq!(
        store
            .daily_count(&format!("conformance:{u}:unused"), DAY)
            .await
            .unwrap(),
        0,
        "an unused counter is 0"
    );
    assert!(store.consume_daily(&[], DAY).await.unwrap().is_empty());
}

/// A temporary session's direct conversation is created once and becomes
/// the friends' conversation later.
async fn check_ensure_direct_conversation(store: &dyn Store) {
    let a = new_user(store, "temp-a").await;
    let b = new_user(store, "temp-b").await;
    assert_eq!(store.direct_conversation(a, b).await.unwrap(), None);
    let conv = store
        .ensure_direct_conversation(a, b, tick())
        .await
        .expect("ensure_direct_conversation");
    assert_eq!(
        store
            .ensure_direct_conversation(b, a, tick())
            .await
            .unwrap(),
        conv,
        "idempotent and symmetric"
    );
    assert_eq!(store.direct_conversation(a, b).await.unwrap(), Some(conv));
    let conversation = store.conversation(conv).await.unwrap().unwrap();
    assert_eq!(
        (conversation.kind, sorted(conversation.members)),
        (ConversationKind::Direct, sorted(vec![a, b])),
        "a direct conversation of both"
    );
    assert_eq!(state(store, a, conv).await.peer, Some(b));
    assert_eq!(
        store.friend(a, b).await.unwrap(),
        None,
        "no friendship follows"
    );
    send(store, conv, a, "temp-hello").await;
    assert_eq!(
        befriend(store, a, b).await,
        conv,
        "accepting a friend request reuses the conversation"
    );
    assert_eq!(
        store.friend(b, a).await.unwrap().unwrap().conversation,
        conv
    );
    assert!(
        store.event(conv, Seq(1)).await.unwrap().is_some(),
        "the history stays"
    );
}

/// Concurrent joins never pass the cap, which counts the owner.
async fn check_concurrent_joins(store: &Arc<dyn Store>) {
    const CAP: u32 = 20;
    const TRIES: usize = 30;
    let o = new_user(store.as_ref(), "crowd-owner").await;
    let g = new_group(store.as_ref(), o, "Crowd").await;
    let mut users = Vec::new();
    for i in 0..TRIES {
        users.push(new_user(store.as_ref(), &format!("crowd-{i}")).await);
    }
    let mut tasks = Vec::new();
    for user in users {
        let store = Arc::clone(store);
        tasks.push(tokio::spawn(async move {
            store
                .change_group(g.id, user, add_member(user, CAP), joined(user), tick())
                .await
        }));
    }
    let mut notice_seqs = Vec::new();
    let mut refused = 0;
    for task in tasks {
        match task.await.expect("join task") {
            Ok(done) => {
                assert!(
                    done.group.member_count <= CAP,
                    "member_count {} past the cap",
                    done.group.member_count
                );
                notice_seqs.push(done.appended.seq.0);
            }
            Err(Error::LimitReached {
                limit: "max_members",
                max,
            }) => {
                assert_eq!(max, u64::from(CAP));
                refused += 1;
            }
            Err(e) => panic!("unexpected AddMember error: {e:?}"),
        }
    }
    assert_eq!(
        notice_seqs.len(),
        CAP as usize - 1,
        "exactly the places beside the owner are taken"
    );
    assert_eq!(refused, TRIES - (CAP as usize - 1), "the rest are refused");
    assert_eq!(
        sorted(notice_seqs),
        (2..=u64::from(CAP)).collect::<Vec<_>>(),
        "refused joins consume no seq"
    );
    let group = group_now(store.as_ref(), g.id).await;
    assert_eq!(
        (group.member_count, group.member_version),
        (CAP, u64::from(CAP)),
        "the count and version match the joins"
    );
    assert_eq!(
        store.member_ids(g.id).await.unwrap().len(),
        CAP as usize,
        "as many entries as counted"
    );
}

/// Concurrent senders in one group get gap-free seqs and exact activity.
async fn check_concurrent_group_appends(store: &Arc<dyn Store>) {
    const SENDERS: u64 = 6;
    const EACH: u64 = 40;
    let o = new_user(store.as_ref(), "busy-owner").await;
    let g = new_group(store.as_ref(), o, "Busy").await;
    let mut senders = vec![o];
    for i in 1..SENDERS {
        let u = new_user(store.as_ref(), &format!("busy-{i}")).await;
        join(store.as_ref(), g.id, u).await;
        senders.push(u);
    }
    let first = state(store.as_ref(), o, g.conversation).await.last_seq.0 + 1;
    let mut tasks = Vec::new();
    for sender in senders.clone() {
        let store = Arc::clone(store);
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..EACH {
                let x = store
                    .append(message(g.conversation, sender, &format!("busy-{i}"), "x"))
                    .await
                    .expect("concurrent group append");
                seqs.push(x.seq.0);
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        let seqs = task.await.expect("append task");
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "one sender's appends are ordered"
        );
        all.extend(seqs);
    }
    assert_eq!(
        sorted(all),
        (first..first + SENDERS * EACH).collect::<Vec<_>>(),
        "gap-free seqs"
    );
    for sender in senders {
        assert_eq!(
            member_now(store.as_ref(), g.id, sender).await.messages,
            EACH,
            "every message counted once for its sender"
        );
    }
}

// --- contracts added with the group domain tests ---------------------------------

/// An append's quota is consumed in its transaction, all or nothing, and not
/// again by a retry; a full counter stores nothing.
async fn check_append_quota(store: &dyn Store) {
    let o = new_user(store, "quota-owner").await;
    let g = new_group(store, o, "Quota").await;
    let key = format!("conformance-quota:{}", g.id);
    let day = 20_000;
    let quota = |limit: u32| Quota {
        counters: vec![DailyCounter {
            key: key.clone(),
            limit,
            name: "conformance_quota",
        }],
        day,
    };
    let mut first = mention_message(g.conversation, o, "quota-1", vec![Segment::MentionAll]);
    first.quota = Some(quota(1));
    let acked = store
        .append(first.clone())
        .await
        .expect("an append within its quota");
    assert_eq!(store.daily_count(&key, day).await.expect("daily_count"), 1);
    let retried = store
        .append(first)
        .await
        .expect("a retry of an append with a quota");
    assert!(retried.duplicate && retried.seq == acked.seq, "{retried:?}");
    assert_eq!(
        store.daily_count(&key, day).await.expect("daily_count"),
        1,
        "a retry spends no quota"
    );
    let last = group_now(store, g.id).await;
    let mut second = mention_message(g.conversation, o, "quota-2", vec![Segment::MentionAll]);
    second.quota = Some(quota(1));
    assert_err!(
        store.append(second).await,
        Error::LimitReached {
            limit: "conformance_quota",
            max: 1
        },
        "an append over its quota"
    );
    let state = state(store, o, g.conversation).await;
    assert_eq!(
        state.last_seq, acked.seq,
        "nothing was stored over the quota"
    );
    assert_eq!(
        group_now(store, g.id).await.member_version,
        last.member_version
    );
}

/// A newcomer is not a reader of what was sent before they joined.
async fn check_readers_exclude_newcomers(store: &dyn Store) {
    let o = new_user(store, "readers-owner").await;
    let n = new_user(store, "readers-newcomer").await;
    let g = new_group(store, o, "Readers").await;
    let before = send(store, g.conversation, o, "readers-before").await;
    store
        .mark_read(o, g.conversation, before.seq)
        .await
        .expect("mark_read");
    join(store, g.id, n).await;
    let (count, who) = store
        .readers(g.conversation, before.seq, true)
        .await
        .expect("readers");
    assert_eq!(
        (count, who),
        (1, vec![o]),
        "the newcomer did not read the earlier message"
    );
    let after = send(store, g.conversation, o, "readers-after").await;
    store
        .mark_read(n, g.conversation, after.seq)
        .await
        .expect("mark_read");
    let (count, _) = store
        .readers(g.conversation, after.seq, false)
        .await
        .expect("readers");
    assert_eq!(count, 1, "only the newcomer read the later message so far");
}

/// Joining settles the newcomer's other pending requests for the group.
async fn check_join_settles_pending_requests(store: &dyn Store) {
    let o = new_user(store, "settle-owner").await;
    let a = new_user(store, "settle-applicant").await;
    let g = new_group(store, o, "Settle").await;
    let pending = store
        .create_join_request(NewJoinRequest {
            group: g.id,
            user: a,
            kind: JoinKind::Application,
            message: "let me in".into(),
            answer: None,
            inviter: None,
            created_at: tick(),
        })
        .await
        .expect("create_join_request");
    join(store, g.id, a).await;
    let settled = store
        .join_request(pending.id)
        .await
        .expect("join_request")
        .expect("it exists");
    assert_eq!(settled.status, RequestStatus::Accepted, "{settled:?}");
    assert!(store
        .pending_applications(g.id)
        .await
        .expect("pending_applications")
        .is_empty());
}
