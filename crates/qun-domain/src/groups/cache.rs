//! A node's cache of group member lists for fan-out, keyed on the group's
//! member-list version so that a change made through any node invalidates it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::{GroupId, UserId};

/// Member ids per group, with the version they were read at.
#[derive(Default)]
pub(crate) struct MemberCache {
    groups: Mutex<HashMap<GroupId, (u64, Arc<Vec<UserId>>)>>,
}

impl MemberCache {
    /// The cached list if it was read at `version`.
    pub(crate) fn get(&self, group: GroupId, version: u64) -> Option<Arc<Vec<UserId>>> {
        let groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        groups
            .get(&group)
            .filter(|(v, _)| *v == version)
            .map(|(_, ids)| ids.clone())
    }

    /// Keeps a list read at `version` (never replacing a newer one).
    pub(crate) fn put(&self, group: GroupId, version: u64, ids: Arc<Vec<UserId>>) {
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        match groups.get(&group) {
            Some((v, _)) if *v > version => {}
            _ => {
                groups.insert(group, (version, ids));
            }
        }
    }
}
