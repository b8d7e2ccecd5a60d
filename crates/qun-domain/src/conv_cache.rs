//! A node's cache of conversation records.
//!
//! A conversation's kind and a direct conversation's two members never change
//! once it exists, so an entry never goes stale and any node may keep one
//! without hearing of other nodes' writes. The cache only bounds its size:
//! when full it starts again empty, which costs one read per conversation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::model::Conversation;
use crate::ConversationId;

/// How many conversations a node keeps (about 100 bytes each).
const CAPACITY: usize = 100_000;

/// Conversations by id.
#[derive(Default)]
pub(crate) struct ConversationCache {
    entries: Mutex<HashMap<ConversationId, Arc<Conversation>>>,
}

impl ConversationCache {
    /// The cached record, if any.
    pub(crate) fn get(&self, id: ConversationId) -> Option<Arc<Conversation>> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(&id).cloned()
    }

    /// Keeps a record read from the store.
    pub(crate) fn put(&self, conversation: Arc<Conversation>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= CAPACITY {
            entries.clear();
        }
        entries.insert(conversation.id, conversation);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ConversationKind;
    use crate::UserId;

    fn direct(id: u64) -> Arc<Conversation> {
        Arc::new(Conversation {
            id: ConversationId(id),
            kind: ConversationKind::Direct,
            members: vec![UserId(1), UserId(2)],
        })
    }

    #[test]
    fn keeps_records_and_stays_bounded() {
        let cache = ConversationCache::default();
        assert!(cache.get(ConversationId(1)).is_none());
        cache.put(direct(1));
        assert_eq!(cache.get(ConversationId(1)), Some(direct(1)));
        for id in 2..=CAPACITY as u64 + 1 {
            cache.put(direct(id));
        }
        let len = cache.entries.lock().map(|e| e.len()).unwrap_or(0);
        assert!(len <= CAPACITY, "{len} entries");
        assert!(cache.get(ConversationId(CAPACITY as u64 + 1)).is_some());
    }
}
