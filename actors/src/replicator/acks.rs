//! Plain logic of a master's replication bookkeeping: connected slave
//! sessions, the offset each has acked, and the sends waiting for an ack
//! (SYNC_MASTER). No actix here, so it is unit-tested directly.
//!
//! Controller mode with `in_sync_ack` sets a **required set** (the slaves
//! of the in-sync set, by broker id): a send is then answered once every
//! one of them acked it, and at once when the set holds only the master.
//! Each session also tracks when its slave last caught up with the
//! master's end, for the in-sync set ([`AckTracker::in_sync`]).
//!
//! A slave that names itself ([`super::protocol::SlaveName`]) is known by
//! its broker id: a new session of the same slave (same id and advertised
//! address) supersedes its older one at once, so a reconnect never shows
//! two sessions, two series or two status rows for one slave.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::protocol::SlaveName;

/// What a SYNC_MASTER send waits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitOutcome {
    /// A slave has acked an offset at or past the message's end.
    Replicated,
    /// No slave acked in time (`FLUSH_SLAVE_TIMEOUT`).
    Timeout,
    /// No slave is connected (`SLAVE_NOT_AVAILABLE`).
    NoSlave,
}

/// One connected slave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub addr: String,
    pub acked: u64,
    /// The slave's broker id (from its name, or its controller-mode
    /// identity; `None`: a slave that predates names).
    pub broker_id: Option<u64>,
    /// The slave's name, unless it predates names.
    pub name: Option<SlaveName>,
    /// When the slave last had everything the master had (never: `None`) ...
    pub caught_up_at: Option<Instant>,
    /// ... and the master's end sampled at `target_at`: an ack reaching it
    /// means the slave was caught up at that time.
    target: u64,
    target_at: Instant,
}

/// Sessions, acks and waiters.
#[derive(Default)]
pub struct AckTracker {
    sessions: HashMap<u64, Session>,
    waiters: BTreeMap<u64, Vec<oneshot::Sender<()>>>,
    /// Controller mode with `in_sync_ack`: every one of these slaves must ack.
    required: Option<BTreeSet<u64>>,
}

/// What [`AckTracker::wait`] decided.
pub enum Wait {
    /// Answer now.
    Now(WaitOutcome),
    /// Wait for this to fire (dropped = never).
    Later(oneshot::Receiver<()>),
}

impl AckTracker {
    /// A slave connected.
    pub fn open(&mut self, id: u64, addr: String, broker_id: Option<u64>) {
        self.open_named(id, addr, broker_id, None);
    }

    /// A slave connected and, if `name` is set, named itself: its older
    /// sessions (same broker id and advertised address) are closed here
    /// and their ids returned, for the caller to end their streams.
    pub fn open_named(
        &mut self,
        id: u64,
        addr: String,
        broker_id: Option<u64>,
        name: Option<SlaveName>,
    ) -> Vec<u64> {
        let broker_id = broker_id.or(name.as_ref().map(|n| n.broker_id));
        let mut superseded = Vec::new();
        if let Some(n) = &name {
            for (old, s) in &self.sessions {
                let same = s.name.as_ref().is_some_and(|o| o.addr == n.addr);
                if *old != id && same && s.broker_id == broker_id {
                    superseded.push(*old);
                }
            }
        }
        for old in &superseded {
            self.sessions.remove(old);
        }
        let now = Instant::now();
        self.sessions.insert(
            id,
            Session {
                addr,
                acked: 0,
                broker_id,
                name,
                caught_up_at: None,
                target: u64::MAX,
                target_at: now,
            },
        );
        superseded
    }

    /// A slave disconnected.
    pub fn close(&mut self, id: u64) {
        self.sessions.remove(&id);
    }

    /// A slave acked `offset`; wakes every waiter it covers.
    pub fn ack(&mut self, id: u64, offset: u64) {
        if let Some(s) = self.sessions.get_mut(&id) {
            s.acked = s.acked.max(offset);
            if s.acked >= s.target {
                s.caught_up_at = Some(s.target_at);
                s.target = u64::MAX;
            }
        }
        self.release();
    }

    /// Controller mode: the slaves every send must reach (`None`: any one
    /// slave, as SYNC_MASTER). Waiters the new set already covers are
    /// answered.
    pub fn set_required(&mut self, required: Option<BTreeSet<u64>>) {
        self.required = required;
        self.release();
    }

    /// The offset every send up to which is answered as replicated.
    fn watermark(&self) -> u64 {
        let Some(req) = &self.required else {
            return self.max_acked();
        };
        req.iter()
            .map(|b| {
                self.sessions
                    .values()
                    .filter(|s| s.broker_id == Some(*b))
                    .map(|s| s.acked)
                    .max()
                    .unwrap_or(0)
            })
            .min()
            .unwrap_or(u64::MAX)
    }

    /// The broker ids of the slaves in sync with a master ending at `end`
    /// now: at most `max_gap` bytes behind and caught up within `max_time`.
    /// Also samples `end` as the next catch-up target of every session.
    pub fn in_sync(&mut self, end: u64, max_gap: u64, max_time: Duration) -> BTreeSet<u64> {
        let now = Instant::now();
        let mut set = BTreeSet::new();
        for s in self.sessions.values_mut() {
            if s.acked >= end {
                s.caught_up_at = Some(now);
            }
            if s.target == u64::MAX || s.acked >= s.target {
                s.target = end;
                s.target_at = now;
            }
            let Some(b) = s.broker_id else { continue };
            if end.saturating_sub(s.acked) <= max_gap
                && s.caught_up_at
                    .is_some_and(|t| now.duration_since(t) <= max_time)
            {
                set.insert(b);
            }
        }
        set
    }

    fn release(&mut self) {
        let max = self.watermark();
        let later = match max.checked_add(1) {
            Some(next) => self.waiters.split_off(&next),
            None => BTreeMap::new(),
        };
        for (_, ws) in std::mem::replace(&mut self.waiters, later) {
            for w in ws {
                let _ = w.send(());
            }
        }
    }

    /// Highest offset acked by any connected slave (0 with none).
    pub fn max_acked(&self) -> u64 {
        self.sessions.values().map(|s| s.acked).max().unwrap_or(0)
    }

    /// Whether any slave is connected.
    pub fn has_slaves(&self) -> bool {
        !self.sessions.is_empty()
    }

    /// Connected slaves: named ones by broker id, then the others by
    /// address.
    pub fn sessions(&self) -> Vec<Session> {
        let mut v: Vec<Session> = self.sessions.values().cloned().collect();
        v.sort_by(|a, b| {
            (a.broker_id.is_none(), a.broker_id, &a.addr).cmp(&(
                b.broker_id.is_none(),
                b.broker_id,
                &b.addr,
            ))
        });
        v
    }

    /// A send ending at `offset` wants a slave to have it.
    pub fn wait(&mut self, offset: u64) -> Wait {
        if self.required.is_none() && !self.has_slaves() {
            return Wait::Now(WaitOutcome::NoSlave);
        }
        if self.watermark() >= offset {
            return Wait::Now(WaitOutcome::Replicated);
        }
        let (tx, rx) = oneshot::channel();
        let ws = self.waiters.entry(offset).or_default();
        ws.retain(|w| !w.is_closed());
        ws.push(tx);
        Wait::Later(rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_release_covered_waiters_only() {
        let mut t = AckTracker::default();
        assert!(matches!(t.wait(10), Wait::Now(WaitOutcome::NoSlave)));
        t.open(1, "a".into(), None);
        t.open(2, "b".into(), None);
        let Wait::Later(mut w100) = t.wait(100) else {
            panic!("must wait")
        };
        let Wait::Later(mut w200) = t.wait(200) else {
            panic!("must wait")
        };
        t.ack(1, 150);
        assert!(w100.try_recv().is_ok());
        assert!(w200.try_recv().is_err());
        assert!(matches!(t.wait(120), Wait::Now(WaitOutcome::Replicated)));
        t.ack(2, 250);
        assert!(w200.try_recv().is_ok());
        assert_eq!(t.max_acked(), 250);
        t.close(2);
        assert_eq!(t.max_acked(), 150);
        assert_eq!(t.sessions().len(), 1);
        t.close(1);
        assert!(matches!(t.wait(1), Wait::Now(WaitOutcome::NoSlave)));
        // A peer's absurd ack never panics.
        t.open(3, "c".into(), None);
        let Wait::Later(mut w) = t.wait(u64::MAX) else {
            panic!("must wait")
        };
        t.ack(3, u64::MAX);
        assert!(w.try_recv().is_ok());
    }

    #[test]
    fn required_set_waits_for_every_member_and_shrinks_release_waiters() {
        let mut t = AckTracker::default();
        t.set_required(Some(BTreeSet::new()));
        // The in-sync set is the master alone: answered at once.
        assert!(matches!(t.wait(10), Wait::Now(WaitOutcome::Replicated)));
        t.open(1, "a".into(), Some(2));
        t.open(2, "b".into(), Some(3));
        t.set_required(Some(BTreeSet::from([2, 3])));
        let Wait::Later(mut w) = t.wait(100) else {
            panic!("must wait")
        };
        t.ack(1, 150);
        assert!(w.try_recv().is_err(), "slave 3 has not acked");
        // Slave 3 leaves the in-sync set: the wait is over.
        t.set_required(Some(BTreeSet::from([2])));
        assert!(w.try_recv().is_ok());
        // A required slave with no session holds every send.
        t.set_required(Some(BTreeSet::from([2, 9])));
        assert!(matches!(t.wait(1), Wait::Later(_)));
    }

    #[test]
    fn in_sync_needs_a_small_gap_and_a_recent_catch_up() {
        let mut t = AckTracker::default();
        t.open(1, "a".into(), Some(2));
        t.open(2, "b".into(), Some(3));
        t.open(3, "c".into(), None);
        let long = Duration::from_secs(60);
        assert!(
            t.in_sync(1000, 100, long).is_empty(),
            "nobody caught up yet"
        );
        t.ack(1, 1000);
        t.ack(2, 950);
        assert_eq!(t.in_sync(1000, 100, long), BTreeSet::from([2]));
        // Slave 3 reaches the end sampled before: caught up then.
        t.ack(2, 1000);
        assert_eq!(t.in_sync(1000, 100, long), BTreeSet::from([2, 3]));
        // Too far behind.
        assert_eq!(t.in_sync(5000, 100, long), BTreeSet::new());
        // Caught up too long ago (slave 3), just now (slave 2).
        t.ack(1, 5000);
        std::thread::sleep(Duration::from_millis(5));
        let quick = Duration::from_millis(2);
        assert_eq!(t.in_sync(5000, 10_000, quick), BTreeSet::from([2]));
    }

    #[test]
    fn a_named_slave_reconnecting_supersedes_its_old_session() {
        let name = |id: u64, addr: &str| SlaveName {
            broker_name: "b".into(),
            broker_id: id,
            addr: addr.into(),
        };
        let mut t = AckTracker::default();
        assert!(t
            .open_named(1, "h:5001".into(), None, Some(name(1, "h:10911")))
            .is_empty());
        t.ack(1, 50);
        // An unnamed (older) slave and another slave stay.
        t.open(2, "h:5002".into(), None);
        t.open_named(3, "h:5003".into(), None, Some(name(2, "h:10921")));
        let gone = t.open_named(4, "h:5004".into(), None, Some(name(1, "h:10911")));
        assert_eq!(gone, vec![1]);
        let s = t.sessions();
        let keys: Vec<_> = s.iter().map(|s| (s.broker_id, s.addr.as_str())).collect();
        assert_eq!(
            keys,
            vec![(Some(1), "h:5004"), (Some(2), "h:5003"), (None, "h:5002")]
        );
        // The old session's late acks are ignored.
        t.ack(1, 99);
        assert_eq!(t.max_acked(), 0);
    }
}
