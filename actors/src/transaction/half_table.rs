//! [`HalfTable`]: which half messages are still undecided, which are
//! decided, and when each undecided one is due for a check-back.
//!
//! Plain data, no actors: the [`Transaction`](crate::transaction::Transaction)
//! actor owns one and feeds it what it stores and reads. Offsets are queue
//! offsets in the half topic's queue 0.
//!
//! * `progress()` is the half-queue offset below which every half message is
//!   decided (committed, rolled back or discarded); it is what the actor
//!   persists so a restart only re-reads the half queue from there.
//! * A half message being decided (commit in flight) is `deciding`: a second
//!   outcome arriving meanwhile is ignored, so exactly one wins.
//! * Check counts live in memory only; a restart starts them again at 0.

use std::collections::{BTreeMap, BTreeSet};

/// An undecided half message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HalfInfo {
    pub queue_offset: u64,
    pub physical_offset: u64,
    pub producer_group: String,
    pub transaction_id: String,
    pub store_timestamp: i64,
    /// Check-backs sent so far.
    pub checks: u32,
    /// When the next check-back (or the discard) is due, ms since the epoch.
    pub next_check_at: i64,
    /// A decision is being applied.
    pub deciding: bool,
}

/// What the timer should do with a half message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    /// Ask a producer of the group (this is check number `info.checks`).
    Check(HalfInfo),
    /// Checked `max` times without an answer: discard it.
    Discard(HalfInfo),
}

/// Check-back timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckPolicy {
    /// First check this long after the half message was stored.
    pub timeout_ms: i64,
    /// Then every this long.
    pub interval_ms: i64,
    /// At most this many checks, then discard.
    pub max_checks: u32,
}

/// Whether a decision request may proceed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// Go ahead; the half is now `deciding`.
    Proceed(HalfInfo),
    /// Already decided or being decided: ignore the request.
    AlreadyDecided,
    /// No half message at that offset (or its id does not match).
    Unknown,
}

/// Undecided and recently decided half messages.
#[derive(Debug, Clone)]
pub struct HalfTable {
    policy: CheckPolicy,
    pending: BTreeMap<u64, HalfInfo>,
    /// Decided offsets at or above `floor`.
    decided: BTreeSet<u64>,
    /// Everything below is decided (persisted progress or pruned).
    floor: u64,
    /// One past the highest half offset known.
    next_offset: u64,
}

impl HalfTable {
    /// An empty table whose offsets below `floor` are all decided.
    pub fn new(policy: CheckPolicy, floor: u64) -> Self {
        HalfTable {
            policy,
            pending: BTreeMap::new(),
            decided: BTreeSet::new(),
            floor,
            next_offset: floor,
        }
    }

    /// Records an op-log entry read at start (before the half queue is read).
    pub fn load_decided(&mut self, queue_offset: u64) {
        if queue_offset >= self.floor {
            self.decided.insert(queue_offset);
        }
    }

    /// Whether the half at `queue_offset` is known as decided.
    pub fn is_decided(&self, queue_offset: u64) -> bool {
        queue_offset < self.floor || self.decided.contains(&queue_offset)
    }

    /// A stored half message (new, or read back at start). Ignored if it is
    /// already decided.
    pub fn add(
        &mut self,
        queue_offset: u64,
        physical_offset: u64,
        producer_group: String,
        transaction_id: String,
        store_timestamp: i64,
    ) {
        self.next_offset = self.next_offset.max(queue_offset + 1);
        if self.is_decided(queue_offset) {
            return;
        }
        self.pending.insert(
            queue_offset,
            HalfInfo {
                queue_offset,
                physical_offset,
                producer_group,
                transaction_id,
                store_timestamp,
                checks: 0,
                next_check_at: store_timestamp.saturating_add(self.policy.timeout_ms),
                deciding: false,
            },
        );
    }

    /// Starts deciding the half at `queue_offset` stored at `physical_offset`.
    pub fn begin(&mut self, queue_offset: u64, physical_offset: u64) -> Begin {
        let decided = self.is_decided(queue_offset);
        match self.pending.get_mut(&queue_offset) {
            Some(h) if h.physical_offset != physical_offset => Begin::Unknown,
            Some(h) if h.deciding => Begin::AlreadyDecided,
            Some(h) => {
                h.deciding = true;
                Begin::Proceed(h.clone())
            }
            None if decided => Begin::AlreadyDecided,
            None => Begin::Unknown,
        }
    }

    /// Starts deciding the pending half at `queue_offset`, whatever its
    /// physical offset (recovery).
    pub fn begin_any(&mut self, queue_offset: u64) -> Begin {
        match self.pending.get(&queue_offset) {
            Some(h) => {
                let p = h.physical_offset;
                self.begin(queue_offset, p)
            }
            None => Begin::Unknown,
        }
    }

    /// The undecided half messages, in queue order.
    pub fn pending(&self) -> impl Iterator<Item = &HalfInfo> {
        self.pending.values()
    }

    /// A decision failed to apply: the half is undecided again.
    pub fn abort(&mut self, queue_offset: u64) {
        if let Some(h) = self.pending.get_mut(&queue_offset) {
            h.deciding = false;
        }
    }

    /// The decision is durable (op record written).
    pub fn finish(&mut self, queue_offset: u64) {
        self.pending.remove(&queue_offset);
        if queue_offset >= self.floor {
            self.decided.insert(queue_offset);
        }
        let p = self.progress();
        // Offsets below the progress need no individual record any more.
        self.decided = self.decided.split_off(&p);
        self.floor = p;
    }

    /// The half-queue offset below which every half message is decided.
    pub fn progress(&self) -> u64 {
        match self.pending.keys().next() {
            Some(&first) => first,
            None => self.next_offset.max(self.floor),
        }
    }

    /// Undecided half messages (not counting those being decided).
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// The half messages due at `now`: each `Check` counts one more check
    /// and reschedules; a half checked `max_checks` times is due for
    /// `Discard` one interval after its last check (and becomes `deciding`).
    pub fn due(&mut self, now: i64) -> Vec<Due> {
        let mut out = Vec::new();
        for h in self.pending.values_mut() {
            if h.deciding || h.next_check_at > now {
                continue;
            }
            if h.checks >= self.policy.max_checks {
                h.deciding = true;
                out.push(Due::Discard(h.clone()));
            } else {
                h.checks += 1;
                h.next_check_at = now.saturating_add(self.policy.interval_ms);
                out.push(Due::Check(h.clone()));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: CheckPolicy = CheckPolicy {
        timeout_ms: 6_000,
        interval_ms: 60_000,
        max_checks: 2,
    };

    fn table() -> HalfTable {
        let mut t = HalfTable::new(POLICY, 0);
        t.add(0, 100, "g".into(), "tx0".into(), 1_000);
        t.add(1, 200, "g".into(), "tx1".into(), 1_000);
        t
    }

    #[test]
    fn one_outcome_per_half() {
        let mut t = table();
        assert!(matches!(t.begin(0, 100), Begin::Proceed(_)));
        assert_eq!(t.begin(0, 100), Begin::AlreadyDecided);
        t.finish(0);
        assert_eq!(t.begin(0, 100), Begin::AlreadyDecided);
        assert_eq!(t.begin(1, 999), Begin::Unknown);
        assert_eq!(t.begin(7, 1), Begin::Unknown);
        assert_eq!(t.progress(), 1);
    }

    #[test]
    fn aborted_decision_can_be_retried() {
        let mut t = table();
        assert!(matches!(t.begin(1, 200), Begin::Proceed(_)));
        t.abort(1);
        assert!(matches!(t.begin(1, 200), Begin::Proceed(_)));
    }

    #[test]
    fn progress_moves_past_decided_prefix_only() {
        let mut t = table();
        t.add(2, 300, "g".into(), "tx2".into(), 1_000);
        let _ = t.begin(1, 200);
        t.finish(1);
        assert_eq!(t.progress(), 0);
        let _ = t.begin(0, 100);
        t.finish(0);
        assert_eq!(t.progress(), 2);
        let _ = t.begin(2, 300);
        t.finish(2);
        assert_eq!(t.progress(), 3);
        assert!(t.is_decided(1) && t.is_decided(2));
    }

    #[test]
    fn rebuild_skips_decided_halves() {
        let mut t = HalfTable::new(POLICY, 5);
        t.load_decided(3);
        t.load_decided(6);
        t.add(5, 1, "g".into(), "a".into(), 0);
        t.add(6, 2, "g".into(), "b".into(), 0);
        assert_eq!(t.pending_count(), 1);
        assert_eq!(t.progress(), 5);
        assert_eq!(t.begin(4, 0), Begin::AlreadyDecided);
    }

    #[test]
    fn checks_then_discard() {
        let mut t = HalfTable::new(POLICY, 0);
        t.add(0, 100, "g".into(), "tx".into(), 1_000);
        assert!(t.due(6_999).is_empty());
        let d = t.due(7_000);
        assert!(matches!(&d[..], [Due::Check(h)] if h.checks == 1));
        assert!(t.due(66_999).is_empty());
        assert!(matches!(&t.due(67_000)[..], [Due::Check(h)] if h.checks == 2));
        assert!(t.due(126_999).is_empty());
        assert!(matches!(&t.due(127_000)[..], [Due::Discard(_)]));
        // Being discarded: nothing more is due, a late outcome is ignored.
        assert!(t.due(1_000_000).is_empty());
        assert_eq!(t.begin(0, 100), Begin::AlreadyDecided);
    }
}
