//! What every bench message carries and how recipients account for it.
//!
//! A payload names its phase, its sender (an index within the run), the
//! sender's counter and the message's intended send time (microseconds since
//! the run's origin). From that each recipient alone records its latency in
//! its own HDR histogram and notices duplicates and reordering per sender;
//! losses are counted at the end against what the senders had acknowledged.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use hdrhistogram::Histogram;

/// Highest latency a histogram holds, microseconds; larger values saturate.
const MAX_LATENCY_US: u64 = 120_000_000;

/// A histogram of latencies in microseconds, 1% precision.
pub type Latencies = Histogram<u64>;

/// A fresh latency histogram.
pub fn latencies() -> Latencies {
    // 2 significant figures keep each per-recipient histogram near 20 KiB,
    // which matters with thousands of recipients.
    match Histogram::new_with_bounds(1, MAX_LATENCY_US, 2) {
        Ok(h) => h,
        Err(e) => panic!("constant histogram bounds refused: {e:?}"),
    }
}

/// Microseconds from `origin` to `at` (0 if `at` is earlier).
pub fn micros(origin: Instant, at: Instant) -> u64 {
    at.saturating_duration_since(origin).as_micros() as u64
}

/// The text of a bench message, padded with `x` to `size` bytes.
pub fn payload(phase: u32, sender: u32, counter: u64, intended_us: u64, size: usize) -> String {
    let mut text = format!("qb:{phase}:{sender}:{counter}:{intended_us}:");
    if text.len() < size {
        text.extend(std::iter::repeat_n('x', size - text.len()));
    }
    text
}

/// The fields of a bench payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Phase of the run the message belongs to.
    pub phase: u32,
    /// Sender index.
    pub sender: u32,
    /// The sender's counter, from 0.
    pub counter: u64,
    /// Intended send time, microseconds since the run's origin.
    pub intended_us: u64,
}

/// Reads a payload written by [`payload`]; `None` for any other text.
pub fn parse(text: &str) -> Option<Stamp> {
    let mut parts = text.strip_prefix("qb:")?.splitn(5, ':');
    Some(Stamp {
        phase: parts.next()?.parse().ok()?,
        sender: parts.next()?.parse().ok()?,
        counter: parts.next()?.parse().ok()?,
        intended_us: parts.next()?.parse().ok()?,
    })
}

/// Which counters of one sender a recipient has seen.
#[derive(Debug, Default, Clone)]
struct Seen {
    bits: Vec<u64>,
    highest: Option<u64>,
}

impl Seen {
    fn contains(&self, counter: u64) -> bool {
        let (word, bit) = ((counter / 64) as usize, counter % 64);
        self.bits.get(word).is_some_and(|w| w & (1 << bit) != 0)
    }

    fn insert(&mut self, counter: u64) {
        let (word, bit) = ((counter / 64) as usize, counter % 64);
        if self.bits.len() <= word {
            self.bits.resize(word + 1, 0);
        }
        self.bits[word] |= 1 << bit;
    }
}

/// One recipient's account of a phase.
#[derive(Debug, Clone)]
pub struct Recorder {
    phase: u32,
    /// Latency from intended send time to receipt.
    pub latency: Latencies,
    seen: HashMap<u32, Seen>,
    /// Bench messages of this phase received (duplicates included).
    pub received: u64,
    /// Messages received again.
    pub duplicated: u64,
    /// Messages received after a later one from the same sender.
    pub reordered: u64,
    /// The first reordering seen: sender, counter, and the higher counter
    /// that had arrived before it.
    pub first_reorder: Option<(u32, u64, u64)>,
}

impl Recorder {
    /// An empty account of `phase`.
    pub fn new(phase: u32) -> Recorder {
        Recorder {
            phase,
            latency: latencies(),
            seen: HashMap::new(),
            received: 0,
            duplicated: 0,
            reordered: 0,
            first_reorder: None,
        }
    }

    /// Accounts for a received text; returns whether it was a first receipt
    /// of a bench message of this phase. `now_us` is `None` when latency is
    /// not measured (catch-up).
    pub fn record(&mut self, text: &str, now_us: Option<u64>) -> bool {
        let Some(stamp) = parse(text) else {
            return false;
        };
        if stamp.phase != self.phase {
            return false;
        }
        self.received += 1;
        let seen = self.seen.entry(stamp.sender).or_default();
        if seen.contains(stamp.counter) {
            self.duplicated += 1;
            return false;
        }
        seen.insert(stamp.counter);
        match seen.highest {
            Some(h) if stamp.counter < h => {
                self.reordered += 1;
                self.first_reorder
                    .get_or_insert((stamp.sender, stamp.counter, h));
            }
            _ => seen.highest = Some(stamp.counter),
        }
        if let Some(now) = now_us {
            self.latency
                .saturating_record(now.saturating_sub(stamp.intended_us).max(1));
        }
        true
    }

    /// How many of `acked`'s counters this recipient never received from `sender`.
    pub fn missing(&self, sender: u32, acked: &Acked) -> u64 {
        let seen = self.seen.get(&sender);
        acked
            .counters()
            .filter(|&c| !seen.is_some_and(|s| s.contains(c)))
            .count() as u64
    }
}

/// The counters of one sender that the server acknowledged.
#[derive(Debug, Default, Clone)]
pub struct Acked {
    seen: Seen,
    count: u64,
}

impl Acked {
    /// Marks `counter` acknowledged.
    pub fn insert(&mut self, counter: u64) {
        if !self.seen.contains(counter) {
            self.seen.insert(counter);
            self.count += 1;
        }
    }

    /// How many counters were acknowledged.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// The acknowledged counters, ascending.
    pub fn counters(&self) -> impl Iterator<Item = u64> + '_ {
        self.seen.bits.iter().enumerate().flat_map(|(w, &bits)| {
            (0..64)
                .filter(move |b| bits & (1 << b) != 0)
                .map(move |b| w as u64 * 64 + b)
        })
    }
}

/// Acknowledgements of all senders of a phase, shared by their send tasks.
#[derive(Debug, Default)]
pub struct AckLog {
    senders: Vec<Mutex<Acked>>,
}

impl AckLog {
    /// A log for `senders` senders.
    pub fn new(senders: usize) -> AckLog {
        AckLog {
            senders: (0..senders).map(|_| Mutex::new(Acked::default())).collect(),
        }
    }

    /// Marks one message acknowledged.
    pub fn ack(&self, sender: usize, counter: u64) {
        if let Some(slot) = self.senders.get(sender) {
            slot.lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(counter);
        }
    }

    /// A copy of every sender's acknowledgements.
    pub fn snapshot(&self) -> Vec<Acked> {
        self.senders
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .collect()
    }
}

/// Loss, duplication and reordering summed over recipients.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Integrity {
    /// Acknowledged messages a recipient never received.
    pub lost: u64,
    /// Messages received more than once.
    pub duplicated: u64,
    /// Messages received after a later one of the same sender.
    pub reordered: u64,
}

impl Integrity {
    /// Checks `recorders` against the acknowledgements, each recipient
    /// against the senders `expected(recipient)` lists.
    pub fn check(
        recorders: &[Recorder],
        acked: &[Acked],
        expected: impl Fn(usize) -> Vec<u32>,
    ) -> Integrity {
        let mut total = Integrity::default();
        for (r, rec) in recorders.iter().enumerate() {
            total.duplicated += rec.duplicated;
            total.reordered += rec.reordered;
            for sender in expected(r) {
                if let Some(a) = acked.get(sender as usize) {
                    total.lost += rec.missing(sender, a);
                }
            }
        }
        total
    }

    /// Whether nothing was lost, duplicated or reordered.
    pub fn clean(&self) -> bool {
        *self == Integrity::default()
    }
}

/// Merges recipients' histograms into one.
pub fn merged<'a>(histograms: impl IntoIterator<Item = &'a Latencies>) -> Latencies {
    let mut all = latencies();
    for h in histograms {
        // Same bounds and precision everywhere, so adding cannot fail.
        let _ = all.add(h);
    }
    all
}

/// p50, p99 and max of a histogram, in milliseconds.
pub fn quantiles_ms(h: &Latencies) -> (f64, f64, f64) {
    let ms = |us: u64| us as f64 / 1000.0;
    if h.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    (
        ms(h.value_at_quantile(0.50)),
        ms(h.value_at_quantile(0.99)),
        ms(h.max()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips_and_pads() {
        let text = payload(2, 7, 41, 123_456, 200);
        assert_eq!(text.len(), 200);
        assert_eq!(
            parse(&text),
            Some(Stamp {
                phase: 2,
                sender: 7,
                counter: 41,
                intended_us: 123_456
            })
        );
        assert_eq!(parse("hello"), None);
    }

    #[test]
    fn recorder_counts_duplicates_reordering_and_losses() {
        let mut rec = Recorder::new(1);
        for counter in [0, 2, 1, 2] {
            rec.record(&payload(1, 0, counter, 0, 10), Some(5));
        }
        // Another phase is ignored.
        assert!(!rec.record(&payload(0, 0, 9, 0, 10), Some(5)));
        assert_eq!((rec.received, rec.duplicated, rec.reordered), (4, 1, 1));
        let mut acked = Acked::default();
        for counter in 0..5 {
            acked.insert(counter);
        }
        assert_eq!(rec.missing(0, &acked), 2);
        let integrity = Integrity::check(&[rec], &[acked], |_| vec![0]);
        assert_eq!(
            integrity,
            Integrity {
                lost: 2,
                duplicated: 1,
                reordered: 1
            }
        );
    }
}
