//! qun's domain: accounts, sessions, friends, presence and conversations.
//!
//! The domain decides; it does no IO of its own. Storage is the [`Store`] trait
//! and fan-out the [`Bus`] trait, each implemented by adapters that only the
//! server binary wires together. Nothing here knows of HTTP, SQL, NATS or JSON.

pub(crate) mod accounts;
pub mod bus;
mod chat;
mod clock;
mod config;
#[cfg(feature = "conformance")]
pub mod conformance;
mod conv_cache;
mod error;
mod friends;
pub mod groups;
mod ids;
pub mod model;
pub mod order;
mod presence;
mod service;
pub mod store;

pub use bus::{Bus, LocalBus, Notification, NotificationSink, RevokeReason};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{Config, GroupLimits, Tier};
pub use error::{AuthError, Denied, Error, Result};
pub use groups::service::{
    AtAllQuota, CreateGroup, FreeTiers, JoinOutcome, MemberDelta, Receipts, TierPayments,
};
pub use ids::*;
pub use presence::PresenceState;
pub use service::{Caller, HistoryRange, LoginInput, NewSession, Qun};
pub use store::Store;
