//! The domain on a real SQLite store with a manual clock: rules that depend on
//! time are tested by moving the clock, not by sleeping.

use std::sync::{Arc, Mutex};

use qun_domain::bus::{LiveEvent, Notification, NotificationSink};
use qun_domain::model::{DeviceKind, Segment};
use qun_domain::{
    AuthError, Caller, Config, Error, LocalBus, LoginInput, ManualClock, PresenceState, Qun, UserId,
};
use qun_store_sqlite::{SqliteOptions, SqliteStore};

use crate::harness::TempDir;

/// Records every notification published.
#[derive(Default)]
struct Recorder(Mutex<Vec<Notification>>);

impl NotificationSink for Recorder {
    fn deliver(&self, n: &Notification) {
        self.0.lock().unwrap().push(n.clone());
    }
}

impl Recorder {
    fn take(&self) -> Vec<Notification> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

struct World {
    qun: Qun,
    clock: Arc<ManualClock>,
    sink: Arc<Recorder>,
    _dir: TempDir,
}

const START: i64 = 1_800_000_000_000;

fn world_with(config: Config) -> World {
    let dir = TempDir::new("domain");
    let store =
        SqliteStore::open(&dir.path().join("db.sqlite3"), SqliteOptions::default()).unwrap();
    let clock = Arc::new(ManualClock::new(START));
    let sink = Arc::new(Recorder::default());
    let bus = Arc::new(LocalBus::new(sink.clone()));
    let qun = Qun::new(Arc::new(store), bus, config, clock.clone());
    World {
        qun,
        clock,
        sink,
        _dir: dir,
    }
}

fn cheap_config() -> Config {
    // Cheap hashing keeps these tests fast; the e2e suite runs the defaults.
    Config {
        argon2_memory_kib: 1024,
        argon2_iterations: 1,
        ..Config::default()
    }
}

fn world() -> World {
    world_with(cheap_config())
}

impl World {
    async fn user(&self, name: &str) -> Caller {
        let id = self.qun.register(name, "password-1").await.unwrap();
        let s = self.login(id).await.unwrap();
        self.qun.authenticate(&s).await.unwrap()
    }

    async fn login(&self, id: UserId) -> Result<String, Error> {
        let input = LoginInput {
            user: id,
            password: "password-1".into(),
            device_kind: DeviceKind::Pc,
            device_name: "test".into(),
            addr: None,
        };
        Ok(self.qun.login(input).await?.token)
    }

    async fn friends(&self, a: &Caller, b: &Caller) -> qun_domain::ConversationId {
        let r = self.qun.request_friend(a, b.user, "hi").await.unwrap();
        self.qun
            .accept_friend(b, r.id, None, None)
            .await
            .unwrap()
            .friend
            .conversation
    }
}

fn text(t: &str) -> Vec<Segment> {
    vec![Segment::Text { text: t.into() }]
}

#[tokio::test]
async fn default_password_hashing_meets_owasp_minimum() {
    let c = Config::default();
    assert!(c.argon2_memory_kib >= 19 * 1024);
    assert!(c.argon2_iterations >= 2);
    // And the default configuration really hashes and verifies with it.
    let w = world_with(Config::default());
    let id = w.qun.register("alice", "password-1").await.unwrap();
    let stored = w.qun.profile(id).await.unwrap().password_hash;
    assert!(
        stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{stored}"
    );
    assert!(w.login(id).await.is_ok());
}

#[tokio::test]
async fn recall_allowed_inside_window_refused_after_it() {
    let w = world();
    let (a, b) = (w.user("a").await, w.user("b").await);
    let conv = w.friends(&a, &b).await;
    let first = w.qun.send(&a, conv, "m1", text("one")).await.unwrap();
    let second = w.qun.send(&a, conv, "m2", text("two")).await.unwrap();

    w.clock.advance_ms(119_000);
    let recall = w.qun.recall(&a, conv, first.seq).await.unwrap();
    assert_eq!(
        recall.seq.0, 3,
        "a recall is itself the next event of the stream"
    );
    let again = w.qun.recall(&a, conv, first.seq).await.unwrap();
    assert_eq!(
        again.seq, recall.seq,
        "repeating a recall returns the same ack"
    );
    assert!(again.duplicate);

    w.clock.advance_ms(2_000);
    let err = w.qun.recall(&a, conv, second.seq).await.unwrap_err();
    assert!(
        matches!(err, Error::RecallWindowPassed { window_secs: 120 }),
        "{err:?}"
    );
    let err = w.qun.recall(&b, conv, second.seq).await.unwrap_err();
    assert!(
        matches!(err, Error::Forbidden(_)),
        "only the author recalls: {err:?}"
    );
}

#[tokio::test]
async fn likes_are_limited_per_friend_per_day_and_reset_next_day() {
    let w = world();
    let (a, b) = (w.user("a").await, w.user("b").await);
    w.friends(&a, &b).await;
    for i in 1..=10 {
        assert_eq!(w.qun.like(&a, b.user).await.unwrap(), (i, 10 - i));
    }
    let err = w.qun.like(&a, b.user).await.unwrap_err();
    assert!(matches!(
        err,
        Error::LimitReached {
            limit: "likes_per_friend_per_day",
            max: 10
        }
    ));
    w.clock.advance_ms(86_400_000);
    assert_eq!(w.qun.like(&a, b.user).await.unwrap(), (1, 9));
    assert_eq!(w.qun.profile(b.user).await.unwrap().likes, 11);
}

#[tokio::test]
async fn sessions_expire_with_time() {
    let config = Config {
        session_ttl_secs: 3600,
        ..cheap_config()
    };
    let w = world_with(config);
    let id = w.qun.register("a", "password-1").await.unwrap();
    let token = w.login(id).await.unwrap();
    assert!(w.qun.authenticate(&token).await.is_ok());
    w.clock.advance_ms(3_600_000);
    let err = w.qun.authenticate(&token).await.unwrap_err();
    assert!(matches!(err, Error::Auth(AuthError::Expired)), "{err:?}");
}

#[tokio::test]
async fn password_change_revokes_other_sessions_and_announces_it() {
    let w = world();
    let id = w.qun.register("a", "password-1").await.unwrap();
    let t1 = w.login(id).await.unwrap();
    let t2 = w.login(id).await.unwrap();
    let me = w.qun.authenticate(&t1).await.unwrap();
    let other = w.qun.authenticate(&t2).await.unwrap();
    w.sink.take();
    assert_eq!(
        w.qun
            .change_password(&me, "password-1", "password-2")
            .await
            .unwrap(),
        1
    );
    assert!(w.qun.authenticate(&t1).await.is_ok());
    let err = w.qun.authenticate(&t2).await.unwrap_err();
    assert!(matches!(err, Error::Auth(AuthError::Revoked)));
    let notes = w.sink.take();
    assert!(
        notes.iter().any(|n| matches!(n, Notification::Revoke { sessions, .. } if sessions == &vec![other.session.clone()])),
        "{notes:?}"
    );
}

#[tokio::test]
async fn login_attempts_are_limited_with_a_retry_after() {
    let config = Config {
        login_attempts_per_account_per_minute: 3,
        ..cheap_config()
    };
    let w = world_with(config);
    let id = w.qun.register("a", "password-1").await.unwrap();
    for _ in 0..3 {
        let input = LoginInput {
            user: id,
            password: "wrong-password".into(),
            device_kind: DeviceKind::Web,
            device_name: String::new(),
            addr: Some("127.0.0.9".parse().unwrap()),
        };
        assert!(matches!(
            w.qun.login(input).await,
            Err(Error::Auth(AuthError::BadCredentials))
        ));
    }
    match w.login(id).await {
        Err(Error::RateLimited { retry_after_secs }) => {
            assert!((1..=61).contains(&retry_after_secs))
        }
        other => panic!("expected rate_limited, got {other:?}"),
    }
}

#[tokio::test]
async fn presence_shows_most_available_device_and_invisible_as_offline() {
    let w = world();
    let (a, b) = (w.user("a").await, w.user("b").await);
    w.friends(&a, &b).await;
    w.sink.take();
    let pc = w.qun.connected(&a).await;
    let phone = w.qun.connected(&a).await;
    assert_eq!(w.qun.visible_presence(a.user), PresenceState::Online);
    w.qun
        .set_presence(&a, pc, PresenceState::Busy)
        .await
        .unwrap();
    assert_eq!(
        w.qun.visible_presence(a.user),
        PresenceState::Online,
        "the phone is still online"
    );
    w.qun
        .set_presence(&a, phone, PresenceState::Invisible)
        .await
        .unwrap();
    assert_eq!(w.qun.visible_presence(a.user), PresenceState::Busy);
    w.qun.disconnected(a.user, pc).await;
    assert_eq!(
        w.qun.visible_presence(a.user),
        PresenceState::Offline,
        "invisible shows as offline"
    );
    let seen: Vec<PresenceState> = w
        .sink
        .take()
        .into_iter()
        .filter_map(|n| match n {
            Notification::Deliver { users, event } if users == vec![b.user] => match &*event {
                LiveEvent::Presence { user, state } if *user == a.user => Some(*state),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            PresenceState::Online,
            PresenceState::Busy,
            PresenceState::Offline
        ]
    );
}

#[tokio::test]
async fn blacklist_ends_friendship_and_stops_messages_and_requests() {
    let w = world();
    let (a, b) = (w.user("a").await, w.user("b").await);
    let conv = w.friends(&a, &b).await;
    w.qun.send(&b, conv, "b1", text("hi")).await.unwrap();
    w.qun.block(&a, b.user).await.unwrap();
    let err = w
        .qun
        .send(&b, conv, "b2", text("hello?"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Forbidden(qun_domain::Denied::Blocked)),
        "{err:?}"
    );
    let err = w.qun.request_friend(&b, a.user, "again").await.unwrap_err();
    assert!(
        matches!(err, Error::Forbidden(qun_domain::Denied::Blocked)),
        "{err:?}"
    );
    assert!(w.qun.friends(&a).await.unwrap().is_empty());
    // History stays readable to both participants.
    let (events, _) = w
        .qun
        .history(
            &a,
            conv,
            qun_domain::HistoryRange::After(qun_domain::Seq(0)),
            None,
        )
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
}
