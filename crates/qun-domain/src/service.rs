//! [`Qun`]: the domain's entry point. Each feature area (accounts, friends,
//! chat, presence) adds its methods in its own module; all share this state.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use governor::{clock::Clock as _, DefaultKeyedRateLimiter, Quota};
use tokio::sync::Semaphore;

use crate::bus::{Bus, LiveEvent, Notification};
use crate::model::Session;
use crate::presence::PresenceRegistry;
use crate::{Clock, Config, Error, Result, Seq, SessionId, Store, UserId};

/// An authenticated caller: one session of one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The account.
    pub user: UserId,
    /// The session (device).
    pub session: SessionId,
}

/// A login attempt.
#[derive(Debug, Clone)]
pub struct LoginInput {
    /// qun number.
    pub user: UserId,
    /// Password.
    pub password: String,
    /// Device kind.
    pub device_kind: crate::model::DeviceKind,
    /// Device name.
    pub device_name: String,
    /// Client address, for per-address attempt limits.
    pub addr: Option<IpAddr>,
}

/// A successful login: the token is returned once and never stored.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// Bearer token.
    pub token: String,
    /// The stored session.
    pub session: Session,
}

/// Which part of a conversation's history to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryRange {
    /// Ascending from just after this sequence (catch-up).
    After(Seq),
    /// The newest events before this sequence.
    Before(Seq),
    /// The newest events.
    Latest,
}

/// The domain service. Cheap to share behind an `Arc`.
pub struct Qun {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) bus: Arc<dyn Bus>,
    pub(crate) config: Config,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) presence: PresenceRegistry,
    pub(crate) hash_permits: Semaphore,
    pub(crate) login_limits: LoginLimits,
    pub(crate) payments: Arc<dyn crate::TierPayments>,
    pub(crate) node: crate::NodeId,
    pub(crate) member_cache: crate::groups::cache::MemberCache,
    pub(crate) conversation_cache: crate::conv_cache::ConversationCache,
    next_conn: AtomicU64,
}

impl Qun {
    /// Wires the domain to a store, a bus and a clock.
    pub fn new(
        store: Arc<dyn Store>,
        bus: Arc<dyn Bus>,
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let permits = config.max_concurrent_password_hashes.max(1);
        Qun {
            login_limits: LoginLimits::new(&config),
            hash_permits: Semaphore::new(permits),
            store,
            bus,
            config,
            clock,
            presence: PresenceRegistry::default(),
            payments: Arc::new(crate::FreeTiers),
            node: crate::NodeId::random(),
            member_cache: Default::default(),
            conversation_cache: Default::default(),
            next_conn: AtomicU64::new(1),
        }
    }

    /// Charges group tier changes through `payments` (the wallet) instead of
    /// leaving them free.
    pub fn with_tier_payments(mut self, payments: Arc<dyn crate::TierPayments>) -> Self {
        self.payments = payments;
        self
    }

    /// Names this node (the bus adapter must know it before the domain exists).
    pub fn with_node(mut self, node: crate::NodeId) -> Self {
        self.node = node;
        self
    }

    /// This node's id.
    pub fn node(&self) -> &crate::NodeId {
        &self.node
    }

    /// Takes in what other nodes announce about themselves (presence, liveness).
    /// The node's notification sink calls this for every notification; it
    /// ignores what is not about nodes, and its own announcements.
    pub fn observe(&self, notification: &Notification) {
        let now = self.clock.now_ms();
        match notification {
            Notification::Presence { node, user, state } if *node != self.node => {
                self.presence.set_remote(node, *user, *state, now);
            }
            Notification::NodeAlive { node } if *node != self.node => {
                self.presence.node_alive(node, now);
            }
            _ => {}
        }
    }

    /// Runs every `node_heartbeat_secs`: announces this node and its users'
    /// presence, and forgets silent nodes. When a node is gone, the live node
    /// with the smallest id tells friends of the users whose presence changed.
    pub async fn node_tick(&self) {
        self.bus
            .publish(Notification::NodeAlive {
                node: self.node.clone(),
            })
            .await;
        for (user, state) in self.presence.local_states() {
            let n = Notification::Presence {
                node: self.node.clone(),
                user,
                state: Some(state),
            };
            self.bus.publish(n).await;
        }
        let deadline = self.clock.now_ms() - (self.config.node_timeout_secs as i64) * 1000;
        let (changed, leader) = self.presence.expire(&self.node, deadline);
        if leader {
            for (user, _, after) in changed {
                self.announce_presence(user, after).await;
            }
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The clock in use.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The store (for readiness checks and administration).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub(crate) fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) async fn deliver(&self, users: Vec<UserId>, event: LiveEvent) {
        if users.is_empty() {
            return;
        }
        self.bus
            .publish(Notification::Deliver {
                users,
                event: Arc::new(event),
            })
            .await;
    }
}

/// Brute-force limits on logins, per account and per client address. They
/// replenish over time, so the real owner is never locked out for long.
pub(crate) struct LoginLimits {
    per_account: DefaultKeyedRateLimiter<UserId>,
    per_addr: DefaultKeyedRateLimiter<IpAddr>,
    checks: AtomicU64,
}

impl LoginLimits {
    fn new(config: &Config) -> Self {
        let quota =
            |n: u32| Quota::per_minute(NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN));
        LoginLimits {
            per_account: DefaultKeyedRateLimiter::keyed(quota(
                config.login_attempts_per_account_per_minute,
            )),
            per_addr: DefaultKeyedRateLimiter::keyed(quota(
                config.login_attempts_per_address_per_minute,
            )),
            checks: AtomicU64::new(0),
        }
    }

    /// Counts one attempt; `RateLimited` if either budget is spent.
    pub(crate) fn check(&self, user: UserId, addr: Option<IpAddr>) -> Result<()> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % 1024 == 1023 {
            self.per_account.retain_recent();
            self.per_addr.retain_recent();
        }
        let now = governor::clock::DefaultClock::default().now();
        let limited = |wait: std::time::Duration| Error::RateLimited {
            retry_after_secs: wait.as_secs() + 1,
        };
        if let Some(addr) = addr {
            self.per_addr
                .check_key(&addr)
                .map_err(|n| limited(n.wait_time_from(now)))?;
        }
        self.per_account
            .check_key(&user)
            .map_err(|n| limited(n.wait_time_from(now)))
    }
}

/// Validation helpers shared by the feature modules.
pub(crate) mod check {
    use crate::{Error, Result};

    /// A required single-line text of at most `max` characters.
    pub(crate) fn text(
        field: &'static str,
        value: &str,
        max: usize,
        limit: &'static str,
        required: bool,
    ) -> Result<()> {
        if required && value.trim().is_empty() {
            return Err(Error::invalid(field, "must not be empty"));
        }
        if value.chars().any(char::is_control) {
            return Err(Error::invalid(field, "must not contain control characters"));
        }
        if value.chars().count() > max {
            return Err(Error::TooLarge {
                limit,
                max: max as u64,
            });
        }
        Ok(())
    }
}
