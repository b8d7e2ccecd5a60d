//! Live delivery in seq order. Concurrent sends to one conversation are
//! committed in seq order, but their notifications may reach a node in any
//! order (tasks resume in any order; other nodes' arrive through the bus).
//! Each node's notification sink passes them through a [`DeliveryOrder`],
//! which holds an event until its predecessors have gone out; a seq that never
//! arrives (a failed fan-out, a lost bus message: catch-up has it) is waited
//! for at most `delivery_gap_ms`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use crate::bus::{LiveEvent, Notification};
use crate::{ConversationId, UserId};

/// An event ready to fan out.
pub(crate) type Ready = (Vec<UserId>, Arc<LiveEvent>);

/// Orders a node's conversation notifications by seq before its sockets get
/// them. Other notifications pass straight through. Times are monotonic
/// milliseconds chosen by the caller.
pub struct DeliveryOrder {
    sequencer: Sequencer,
}

impl DeliveryOrder {
    /// An order that waits at most `gap_ms` for a missing seq.
    pub fn new(gap_ms: u64) -> Self {
        DeliveryOrder {
            sequencer: Sequencer {
                gap_ms,
                streams: Mutex::default(),
            },
        }
    }

    /// Takes a notification and hands what may go out now to `send`, in
    /// order and under the order's lock (so `send` must not block: it only
    /// queues). If something is left waiting, returns the conversation and the
    /// time at which to call [`DeliveryOrder::give_up`].
    pub fn arrive(
        &self,
        n: Notification,
        now_ms: u64,
        send: impl FnMut(&Notification),
    ) -> Option<(ConversationId, u64)> {
        let mut send = send;
        let Notification::Deliver { users, event } = n else {
            send(&n);
            return None;
        };
        let LiveEvent::Conversation(e) = &*event else {
            send(&Notification::Deliver { users, event });
            return None;
        };
        let conversation = e.conversation;
        let seq = e.seq.0;
        self.sequencer
            .arrive(
                conversation,
                seq,
                (users, event.clone()),
                now_ms,
                wrap(send),
            )
            .map(|at| (conversation, at))
    }

    /// Gives up on gaps older than the bound; returns when to check again.
    pub fn give_up(
        &self,
        conversation: ConversationId,
        now_ms: u64,
        send: impl FnMut(&Notification),
    ) -> Option<u64> {
        self.sequencer.give_up(conversation, now_ms, wrap(send))
    }
}

fn wrap(mut send: impl FnMut(&Notification)) -> impl FnMut(Ready) {
    move |(users, event)| send(&Notification::Deliver { users, event })
}

#[derive(Default)]
struct Stream {
    /// The next seq to release (0: not known yet, the stream is just starting).
    next: u64,
    /// Events waiting for a predecessor.
    waiting: BTreeMap<u64, Ready>,
    /// Since when the current gap has been waited for, ms.
    since: Option<u64>,
}

/// Per-conversation release order.
pub(crate) struct Sequencer {
    gap_ms: u64,
    streams: Mutex<HashMap<ConversationId, Stream>>,
}

impl Sequencer {
    /// Takes an event at `seq`; sends what may go out now, in order. Returns
    /// when to give up waiting, if something waits.
    pub(crate) fn arrive(
        &self,
        conversation: ConversationId,
        seq: u64,
        ready: Ready,
        now: u64,
        mut send: impl FnMut(Ready),
    ) -> Option<u64> {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        let s = streams.entry(conversation).or_default();
        if s.next == 0 && seq == 1 {
            s.next = 1;
        }
        if s.next != 0 && seq < s.next {
            // Late: its place was given up. Nothing after it waits for it.
            send(ready);
            return None;
        }
        s.waiting.insert(seq, ready);
        if s.next != 0 {
            Self::drain(s, &mut send);
        }
        if s.waiting.is_empty() {
            return None;
        }
        let since = *s.since.get_or_insert(now);
        Some(since + self.gap_ms)
    }

    /// Skips a gap that has waited at least the bound (or, for a stream just
    /// starting, begins at its lowest waiting seq). Returns when to check again.
    pub(crate) fn give_up(
        &self,
        conversation: ConversationId,
        now: u64,
        mut send: impl FnMut(Ready),
    ) -> Option<u64> {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        let s = streams.get_mut(&conversation)?;
        let first = *s.waiting.keys().next()?;
        let since = *s.since.get_or_insert(now);
        if now < since + self.gap_ms {
            return Some(since + self.gap_ms);
        }
        s.next = s.next.max(first);
        Self::drain(s, &mut send);
        if s.waiting.is_empty() {
            return None;
        }
        s.since = Some(now);
        Some(now + self.gap_ms)
    }

    fn drain(s: &mut Stream, send: &mut impl FnMut(Ready)) {
        let before = s.next;
        while let Some(ready) = s.waiting.remove(&s.next) {
            send(ready);
            s.next += 1;
        }
        if s.next != before {
            // A new gap, if any, starts waiting now.
            s.since = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PresenceState;

    fn ev(n: u64) -> Ready {
        (
            vec![UserId(n)],
            Arc::new(LiveEvent::Presence {
                user: UserId(n),
                state: PresenceState::Online,
            }),
        )
    }

    fn seq() -> Sequencer {
        Sequencer {
            gap_ms: 100,
            streams: Mutex::default(),
        }
    }

    fn arrive(q: &Sequencer, n: u64, now: u64) -> (Vec<u64>, Option<u64>) {
        let mut out = Vec::new();
        let at = q.arrive(ConversationId(1), n, ev(n), now, |r| out.push(r.0[0].0));
        (out, at)
    }

    fn give_up(q: &Sequencer, now: u64) -> (Vec<u64>, Option<u64>) {
        let mut out = Vec::new();
        let at = q.give_up(ConversationId(1), now, |r| out.push(r.0[0].0));
        (out, at)
    }

    #[test]
    fn a_stream_from_the_start_goes_out_at_once_and_in_order() {
        let q = seq();
        assert_eq!(arrive(&q, 1, 0), (vec![1], None));
        assert_eq!(arrive(&q, 3, 5), (vec![], Some(105)));
        assert_eq!(arrive(&q, 2, 6), (vec![2, 3], None));
    }

    #[test]
    fn only_a_gap_older_than_the_bound_is_given_up() {
        let q = seq();
        arrive(&q, 1, 0);
        assert_eq!(arrive(&q, 3, 10), (vec![], Some(110)));
        assert_eq!(give_up(&q, 50), (vec![], Some(110)), "too young");
        assert_eq!(give_up(&q, 110), (vec![3], None), "2 never came");
        assert_eq!(
            arrive(&q, 2, 120),
            (vec![2], None),
            "late, released at once"
        );
        // A timer for an old gap does not skip a young one.
        assert_eq!(arrive(&q, 5, 200), (vec![], Some(300)));
        assert_eq!(arrive(&q, 4, 205), (vec![4, 5], None));
        assert_eq!(arrive(&q, 7, 290), (vec![], Some(390)));
        assert_eq!(give_up(&q, 300), (vec![], Some(390)));
        assert_eq!(arrive(&q, 6, 310), (vec![6, 7], None));
    }

    #[test]
    fn a_stream_joined_midway_starts_at_its_lowest_seq_after_the_bound() {
        let q = seq();
        assert_eq!(arrive(&q, 9, 0), (vec![], Some(100)));
        assert_eq!(arrive(&q, 8, 20), (vec![], Some(100)));
        assert_eq!(give_up(&q, 100), (vec![8, 9], None));
        assert_eq!(arrive(&q, 10, 101), (vec![10], None));
    }
}
