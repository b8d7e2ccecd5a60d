//! QQ groups: tiers, roles, join flows, moderation, announcements, essence,
//! mentions, receipts, honours and temporary sessions.

pub(crate) mod cache;
pub mod model;
pub mod policy;
pub mod service;
pub mod store;
