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

#[derive(Default)]
struct Stream {
    /// The next seq to release (0: not yet known).
    next: u64,
    /// Events waiting for a predecessor.
    waiting: BTreeMap<u64, Ready>,
}

/// Orders a node's conversation notifications by seq before its sockets get
/// them. Other notifications pass straight through.
#[derive(Default)]
pub struct DeliveryOrder {
    sequencer: Sequencer,
}

impl DeliveryOrder {
    /// Takes a notification and hands what may go out now to `send`, in
    /// order and under the order's lock (so `send` must not block: it only
    /// queues). Returns the conversation to call [`DeliveryOrder::give_up`]
    /// for after `delivery_gap_ms` if something is left waiting.
    pub fn arrive(
        &self,
        n: Notification,
        send: impl FnMut(&Notification),
    ) -> Option<ConversationId> {
        let Notification::Deliver { users, event } = n else {
            let mut send = send;
            send(&n);
            return None;
        };
        let LiveEvent::Conversation(e) = &*event else {
            let mut send = send;
            send(&Notification::Deliver { users, event });
            return None;
        };
        let conversation = e.conversation;
        let seq = e.seq.0;
        let waiting = self
            .sequencer
            .arrive(conversation, seq, (users, event.clone()), wrap(send));
        waiting.then_some(conversation)
    }

    /// Stops waiting for the missing seqs of a conversation.
    pub fn give_up(&self, conversation: ConversationId, send: impl FnMut(&Notification)) {
        self.sequencer.give_up(conversation, wrap(send));
    }
}

fn wrap(mut send: impl FnMut(&Notification)) -> impl FnMut(Ready) {
    move |(users, event)| send(&Notification::Deliver { users, event })
}

/// Per-conversation release order.
#[derive(Default)]
pub(crate) struct Sequencer {
    streams: Mutex<HashMap<ConversationId, Stream>>,
}

impl Sequencer {
    /// Takes an event at `seq`; returns what may go out now, in order, and
    /// whether something is left waiting (the caller then schedules
    /// [`Sequencer::give_up`]).
    pub(crate) fn arrive(
        &self,
        conversation: ConversationId,
        seq: u64,
        ready: Ready,
        mut send: impl FnMut(Ready),
    ) -> bool {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        let s = streams.entry(conversation).or_default();
        if s.next == 0 {
            s.next = seq;
        }
        if seq < s.next {
            // Late (its place was given up) or from before this node knew the
            // conversation: nothing after it waits for it.
            send(ready);
            return !s.waiting.is_empty();
        }
        s.waiting.insert(seq, ready);
        Self::drain(s, &mut send);
        !s.waiting.is_empty()
    }

    /// Stops waiting for missing seqs before the first waiting event.
    pub(crate) fn give_up(&self, conversation: ConversationId, mut send: impl FnMut(Ready)) {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        let Some(s) = streams.get_mut(&conversation) else {
            return;
        };
        if let Some((&first, _)) = s.waiting.iter().next() {
            s.next = s.next.max(first);
        }
        Self::drain(s, &mut send);
    }

    fn drain(s: &mut Stream, send: &mut impl FnMut(Ready)) {
        while let Some(ready) = s.waiting.remove(&s.next) {
            send(ready);
            s.next += 1;
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

    fn ids(v: &[Ready]) -> Vec<u64> {
        v.iter().map(|(u, _)| u[0].0).collect()
    }

    fn arrive(seq: &Sequencer, c: ConversationId, n: u64) -> (Vec<u64>, bool) {
        let mut out = Vec::new();
        let waiting = seq.arrive(c, n, ev(n), |r| out.push(r));
        (ids(&out), waiting)
    }

    #[test]
    fn events_go_out_in_seq_order_and_gaps_are_given_up() {
        let seq = Sequencer::default();
        let c = ConversationId(1);
        assert_eq!(arrive(&seq, c, 5), (vec![5], false));
        assert_eq!(arrive(&seq, c, 7), (vec![], true));
        assert_eq!(arrive(&seq, c, 6), (vec![6, 7], false));
        assert_eq!(arrive(&seq, c, 9), (vec![], true), "8 is missing");
        let mut out = Vec::new();
        seq.give_up(c, |r| out.push(r));
        assert_eq!(ids(&out), vec![9], "8 never came");
        assert_eq!(
            arrive(&seq, c, 8),
            (vec![8], false),
            "late, released at once"
        );
        assert_eq!(arrive(&seq, c, 10), (vec![10], false));
    }
}
