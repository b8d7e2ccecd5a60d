//! Presence of users across their devices, held in memory by the node that
//! holds the sockets. The visible state is the most available device's.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::UserId;

/// Presence states, most available first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PresenceState {
    /// "Q me": wants to chat.
    Qme,
    /// Online.
    Online,
    /// Away.
    Away,
    /// Busy.
    Busy,
    /// Do not disturb.
    DoNotDisturb,
    /// Online, shown as offline to others.
    Invisible,
    /// Offline.
    Offline,
}

/// Per-connection states of connected users.
#[derive(Default)]
pub(crate) struct PresenceRegistry {
    users: Mutex<HashMap<UserId, Vec<(u64, PresenceState)>>>,
}

impl PresenceRegistry {
    /// The state others see: the most available device; invisible shows as offline.
    pub(crate) fn visible(&self, user: UserId) -> PresenceState {
        let users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        Self::visible_of(users.get(&user).map(Vec::as_slice).unwrap_or(&[]))
    }

    fn visible_of(conns: &[(u64, PresenceState)]) -> PresenceState {
        match conns.iter().map(|(_, s)| *s).min() {
            None | Some(PresenceState::Invisible) => PresenceState::Offline,
            Some(s) => s,
        }
    }

    /// Sets (or with `None` removes) one connection's state; returns the visible
    /// state before and after.
    pub(crate) fn set(
        &self,
        user: UserId,
        conn: u64,
        state: Option<PresenceState>,
    ) -> (PresenceState, PresenceState) {
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        let conns = users.entry(user).or_default();
        let before = Self::visible_of(conns);
        conns.retain(|(c, _)| *c != conn);
        if let Some(s) = state {
            conns.push((conn, s));
        }
        let after = Self::visible_of(conns);
        if conns.is_empty() {
            users.remove(&user);
        }
        (before, after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PresenceState::*;

    #[test]
    fn most_available_device_shows_and_invisible_shows_offline() {
        let reg = PresenceRegistry::default();
        let u = UserId(10001);
        assert_eq!(reg.set(u, 1, Some(Busy)), (Offline, Busy));
        assert_eq!(reg.set(u, 2, Some(Qme)), (Busy, Qme));
        assert_eq!(reg.set(u, 2, Some(Invisible)), (Qme, Busy));
        assert_eq!(reg.set(u, 1, None), (Busy, Offline));
        assert_eq!(reg.visible(u), Offline);
        assert_eq!(reg.set(u, 2, None), (Offline, Offline));
    }
}
