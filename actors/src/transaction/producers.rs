//! [`ProducerManager`]: the live producers of each producer group, so the
//! broker knows whom to ask about an undecided half message.
//!
//! Fed by heartbeats (every client lists its producer groups) and
//! unregistrations; an entry expires after `expiry` without a heartbeat or
//! as soon as its connection is gone. Generic over the connection handle so
//! it is tested without actors (the broker uses `Addr<Connection>`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Producer group → peer address → (connection, last heartbeat).
#[derive(Debug)]
pub struct ProducerManager<C> {
    groups: HashMap<String, HashMap<SocketAddr, (C, Instant)>>,
    expiry: Duration,
    turn: usize,
}

impl<C: Clone> ProducerManager<C> {
    /// Producers silent for `expiry` are forgotten (RocketMQ: 120 s).
    pub fn new(expiry: Duration) -> Self {
        ProducerManager {
            groups: HashMap::new(),
            expiry,
            turn: 0,
        }
    }

    /// A heartbeat from `peer` listing `groups`.
    pub fn heartbeat(&mut self, peer: SocketAddr, groups: &[String], conn: C, now: Instant) {
        for g in groups {
            self.groups
                .entry(g.clone())
                .or_default()
                .insert(peer, (conn.clone(), now));
        }
    }

    /// `peer` leaves `group` (or every group).
    pub fn unregister(&mut self, peer: SocketAddr, group: Option<&str>) {
        for (g, members) in self.groups.iter_mut() {
            let leaves = match group {
                None => true,
                Some(x) => x == g,
            };
            if leaves {
                members.remove(&peer);
            }
        }
    }

    /// A live producer of `group` (rotating among them), dropping expired
    /// entries and those whose connection `is_live` says is gone.
    pub fn pick(&mut self, group: &str, now: Instant, is_live: impl Fn(&C) -> bool) -> Option<C> {
        let members = self.groups.get_mut(group)?;
        let expiry = self.expiry;
        members.retain(|_, (c, at)| now.duration_since(*at) < expiry && is_live(c));
        if members.is_empty() {
            return None;
        }
        let mut peers: Vec<&SocketAddr> = members.keys().collect();
        peers.sort();
        self.turn = self.turn.wrapping_add(1);
        let peer = peers[self.turn % peers.len()];
        members.get(peer).map(|(c, _)| c.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn expiry_and_dead_connections() {
        let t0 = Instant::now();
        let mut m = ProducerManager::new(Duration::from_secs(120));
        m.heartbeat(peer(1), &["g".into()], 1u32, t0);
        assert_eq!(m.pick("g", t0, |_| true), Some(1));
        assert_eq!(m.pick("other", t0, |_| true), None);
        assert_eq!(m.pick("g", t0 + Duration::from_secs(121), |_| true), None);
        m.heartbeat(peer(2), &["g".into()], 2u32, t0);
        assert_eq!(m.pick("g", t0, |c| *c != 2), None);
    }

    #[test]
    fn rotates_and_unregisters() {
        let t0 = Instant::now();
        let mut m = ProducerManager::new(Duration::from_secs(120));
        m.heartbeat(peer(1), &["g".into(), "h".into()], 1u32, t0);
        m.heartbeat(peer(2), &["g".into()], 2u32, t0);
        let a = m.pick("g", t0, |_| true);
        let b = m.pick("g", t0, |_| true);
        assert_ne!(a, b);
        m.unregister(peer(1), None);
        assert_eq!(m.pick("h", t0, |_| true), None);
        assert_eq!(m.pick("g", t0, |_| true), Some(2));
    }
}
