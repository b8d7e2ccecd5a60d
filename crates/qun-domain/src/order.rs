//! Live delivery in commit order. Concurrent sends to one conversation are
//! committed in seq order, but the tasks that fan them out may resume in any
//! order; the sequencer holds an event until its predecessors on this node
//! have gone out. A seq this node never sees (written through another node,
//! which delivers it itself) is waited for at most `gap_ms`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use crate::bus::LiveEvent;
use crate::{ConversationId, UserId};

/// An event ready to fan out.
pub(crate) type Ready = (Vec<UserId>, Arc<LiveEvent>);

#[derive(Default)]
struct Stream {
    /// The next seq to release (0: not yet known).
    next: u64,
    /// Events waiting for a predecessor.
    waiting: BTreeMap<u64, Ready>,
}

/// Per-conversation release order of this node.
#[derive(Default)]
pub(crate) struct Sequencer {
    streams: Mutex<HashMap<ConversationId, Stream>>,
}

impl Sequencer {
    /// Takes an event at `seq`; returns what may go out now, in order, and
    /// whether something is left waiting (the caller then schedules
    /// [`Sequencer::give_up`]).
    pub(crate) fn arrive(&self, conversation: ConversationId, seq: u64, ready: Ready) -> (Vec<Ready>, bool) {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        let s = streams.entry(conversation).or_default();
        if s.next == 0 {
            s.next = seq;
        }
        if seq < s.next {
            // Late (its place was given up) or from before this node knew the
            // conversation: nothing after it waits for it.
            return (vec![ready], !s.waiting.is_empty());
        }
        s.waiting.insert(seq, ready);
        let out = Self::drain(s);
        (out, !s.waiting.is_empty())
    }

    /// Stops waiting for missing seqs before the first waiting event.
    pub(crate) fn give_up(&self, conversation: ConversationId) -> Vec<Ready> {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        let Some(s) = streams.get_mut(&conversation) else { return Vec::new() };
        if let Some((&first, _)) = s.waiting.iter().next() {
            s.next = s.next.max(first);
        }
        Self::drain(s)
    }

    fn drain(s: &mut Stream) -> Vec<Ready> {
        let mut out = Vec::new();
        while let Some(ready) = s.waiting.remove(&s.next) {
            out.push(ready);
            s.next += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PresenceState;

    fn ev(n: u64) -> Ready {
        (vec![UserId(n)], Arc::new(LiveEvent::Presence { user: UserId(n), state: PresenceState::Online }))
    }

    fn ids(v: &[Ready]) -> Vec<u64> {
        v.iter().map(|(u, _)| u[0].0).collect()
    }

    #[test]
    fn events_go_out_in_seq_order_and_gaps_are_given_up() {
        let seq = Sequencer::default();
        let c = ConversationId(1);
        assert_eq!(ids(&seq.arrive(c, 5, ev(5)).0), vec![5]);
        let (out, waiting) = seq.arrive(c, 7, ev(7));
        assert!(out.is_empty() && waiting);
        assert_eq!(ids(&seq.arrive(c, 6, ev(6)).0), vec![6, 7]);
        let (out, waiting) = seq.arrive(c, 9, ev(9));
        assert!(out.is_empty() && waiting, "8 is missing");
        assert_eq!(ids(&seq.give_up(c)), vec![9], "8 was written elsewhere");
        assert_eq!(ids(&seq.arrive(c, 8, ev(8)).0), vec![8], "late, released at once");
        assert_eq!(ids(&seq.arrive(c, 10, ev(10)).0), vec![10]);
    }
}
