//! Plain logic of a master's replication bookkeeping: connected slave
//! sessions, the offset each has acked, and the sends waiting for an ack
//! (SYNC_MASTER). No actix here, so it is unit-tested directly.

use std::collections::{BTreeMap, HashMap};

use tokio::sync::oneshot;

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
}

/// Sessions, acks and waiters.
#[derive(Default)]
pub struct AckTracker {
    sessions: HashMap<u64, Session>,
    waiters: BTreeMap<u64, Vec<oneshot::Sender<()>>>,
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
    pub fn open(&mut self, id: u64, addr: String) {
        self.sessions.insert(id, Session { addr, acked: 0 });
    }

    /// A slave disconnected.
    pub fn close(&mut self, id: u64) {
        self.sessions.remove(&id);
    }

    /// A slave acked `offset`; wakes every waiter it covers.
    pub fn ack(&mut self, id: u64, offset: u64) {
        if let Some(s) = self.sessions.get_mut(&id) {
            s.acked = s.acked.max(offset);
        }
        let max = self.max_acked();
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

    /// Connected slaves, sorted by address.
    pub fn sessions(&self) -> Vec<Session> {
        let mut v: Vec<Session> = self.sessions.values().cloned().collect();
        v.sort_by(|a, b| a.addr.cmp(&b.addr));
        v
    }

    /// A send ending at `offset` wants a slave to have it.
    pub fn wait(&mut self, offset: u64) -> Wait {
        if !self.has_slaves() {
            return Wait::Now(WaitOutcome::NoSlave);
        }
        if self.max_acked() >= offset {
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
        t.open(1, "a".into());
        t.open(2, "b".into());
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
        t.open(3, "c".into());
        let Wait::Later(mut w) = t.wait(u64::MAX) else {
            panic!("must wait")
        };
        t.ack(3, u64::MAX);
        assert!(w.try_recv().is_ok());
    }
}
