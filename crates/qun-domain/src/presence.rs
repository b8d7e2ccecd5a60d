//! Presence of users across their devices, held in memory by the node that
//! holds the sockets. The visible state is the most available device's.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;

use crate::{NodeId, UserId};

/// Presence states, most available first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
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

/// Presence of users on every node. This node's own sockets are tracked per
/// connection; other nodes' are a replica of what they announced (their
/// aggregate per user), forgotten when a node stops announcing itself.
#[derive(Default)]
pub(crate) struct PresenceRegistry {
    inner: Mutex<Registry>,
}

#[derive(Default)]
struct Registry {
    /// This node: user → (connection, state).
    local: HashMap<UserId, Vec<(u64, PresenceState)>>,
    /// Other nodes: user → node → that node's aggregate.
    remote: HashMap<UserId, HashMap<NodeId, PresenceState>>,
    /// Other nodes: last time each announced itself, ms.
    nodes: HashMap<NodeId, i64>,
}

/// What a change did to a user's presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Change {
    /// Visible state (all nodes) before.
    pub(crate) before: PresenceState,
    /// Visible state (all nodes) after.
    pub(crate) after: PresenceState,
    /// This node's aggregate after, if it changed (to announce to other nodes).
    pub(crate) local: Option<Option<PresenceState>>,
}

fn best(states: impl Iterator<Item = PresenceState>) -> Option<PresenceState> {
    states.min()
}

/// Invisible shows as offline; nobody anywhere is offline.
fn shown(state: Option<PresenceState>) -> PresenceState {
    match state {
        None | Some(PresenceState::Invisible) => PresenceState::Offline,
        Some(s) => s,
    }
}

impl Registry {
    fn local_of(&self, user: UserId) -> Option<PresenceState> {
        self.local
            .get(&user)
            .and_then(|c| best(c.iter().map(|(_, s)| *s)))
    }

    fn all_of(&self, user: UserId) -> Option<PresenceState> {
        let remote = self
            .remote
            .get(&user)
            .into_iter()
            .flat_map(|n| n.values().copied());
        best(self.local_of(user).into_iter().chain(remote))
    }
}

impl PresenceRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state others see: the most available device on any node;
    /// invisible shows as offline.
    pub(crate) fn visible(&self, user: UserId) -> PresenceState {
        shown(self.lock().all_of(user))
    }

    /// Sets (or with `None` removes) one local connection's state.
    pub(crate) fn set(&self, user: UserId, conn: u64, state: Option<PresenceState>) -> Change {
        let mut r = self.lock();
        let before = shown(r.all_of(user));
        let local_before = r.local_of(user);
        let conns = r.local.entry(user).or_default();
        conns.retain(|(c, _)| *c != conn);
        if let Some(s) = state {
            conns.push((conn, s));
        }
        if conns.is_empty() {
            r.local.remove(&user);
        }
        let local_after = r.local_of(user);
        Change {
            before,
            after: shown(r.all_of(user)),
            local: (local_before != local_after).then_some(local_after),
        }
    }

    /// Records another node's aggregate for a user.
    pub(crate) fn set_remote(
        &self,
        node: &NodeId,
        user: UserId,
        state: Option<PresenceState>,
        now: i64,
    ) {
        let mut r = self.lock();
        r.nodes.insert(node.clone(), now);
        match state {
            Some(s) => {
                r.remote.entry(user).or_default().insert(node.clone(), s);
            }
            None => {
                if let Some(nodes) = r.remote.get_mut(&user) {
                    nodes.remove(node);
                    if nodes.is_empty() {
                        r.remote.remove(&user);
                    }
                }
            }
        }
    }

    /// Notes that another node is alive.
    pub(crate) fn node_alive(&self, node: &NodeId, now: i64) {
        self.lock().nodes.insert(node.clone(), now);
    }

    /// Forgets nodes silent since `deadline`; returns the users whose visible
    /// state changed, with before and after, and whether `me` is the live
    /// node with the smallest id (the one that announces such changes).
    pub(crate) fn expire(
        &self,
        me: &NodeId,
        deadline: i64,
    ) -> (Vec<(UserId, PresenceState, PresenceState)>, bool) {
        let mut r = self.lock();
        let dead: Vec<NodeId> = r
            .nodes
            .iter()
            .filter(|(_, seen)| **seen < deadline)
            .map(|(n, _)| n.clone())
            .collect();
        let mut changed = Vec::new();
        if !dead.is_empty() {
            let users: Vec<UserId> = r.remote.keys().copied().collect();
            for user in users {
                let before = shown(r.all_of(user));
                if let Some(nodes) = r.remote.get_mut(&user) {
                    nodes.retain(|n, _| !dead.contains(n));
                    if nodes.is_empty() {
                        r.remote.remove(&user);
                    }
                }
                let after = shown(r.all_of(user));
                if before != after {
                    changed.push((user, before, after));
                }
            }
            for n in &dead {
                r.nodes.remove(n);
            }
        }
        let leader = r.nodes.keys().all(|n| n > me);
        (changed, leader)
    }

    /// This node's aggregate of every locally connected user (re-announced
    /// periodically, so a node that joins late or lost a message converges).
    pub(crate) fn local_states(&self) -> Vec<(UserId, PresenceState)> {
        let r = self.lock();
        r.local
            .keys()
            .filter_map(|u| r.local_of(*u).map(|s| (*u, s)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PresenceState::*;

    fn seen(c: Change) -> (PresenceState, PresenceState) {
        (c.before, c.after)
    }

    #[test]
    fn most_available_device_shows_and_invisible_shows_offline() {
        let reg = PresenceRegistry::default();
        let u = UserId(10001);
        assert_eq!(seen(reg.set(u, 1, Some(Busy))), (Offline, Busy));
        assert_eq!(seen(reg.set(u, 2, Some(Qme))), (Busy, Qme));
        assert_eq!(seen(reg.set(u, 2, Some(Invisible))), (Qme, Busy));
        assert_eq!(seen(reg.set(u, 1, None)), (Busy, Offline));
        assert_eq!(reg.visible(u), Offline);
        assert_eq!(seen(reg.set(u, 2, None)), (Offline, Offline));
    }

    #[test]
    fn other_nodes_count_until_they_go_silent() {
        let reg = PresenceRegistry::default();
        let (me, other) = (NodeId("a".into()), NodeId("b".into()));
        let u = UserId(10001);
        let change = reg.set(u, 1, Some(Away));
        assert_eq!(
            change.local,
            Some(Some(Away)),
            "a new local aggregate is announced"
        );
        reg.set_remote(&other, u, Some(Online), 1_000);
        assert_eq!(
            reg.visible(u),
            Online,
            "the other node's device is more available"
        );
        let change = reg.set(u, 1, Some(Away));
        assert_eq!(change.local, None, "nothing new to announce");
        let (changed, leader) = reg.expire(&me, 500);
        assert!(changed.is_empty());
        assert!(leader, "a < b");
        let (changed, _) = reg.expire(&me, 2_000);
        assert_eq!(changed, vec![(u, Online, Away)]);
        assert_eq!(reg.visible(u), Away);
    }
}
