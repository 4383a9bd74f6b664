//! Open connections, counted per listener: `skylark_connections{listener}`
//! (open now) and `skylark_connections_accepted_total{listener}` (accepted
//! since start). Every port of the process counts its own — the Skylark
//! ports of the NameServer and the Broker, both RocketMQ remoting ports,
//! the HA port, the controller's port and the HTTP endpoints (dashboard,
//! metrics) — by holding one [`CountedConnection`] per accepted connection
//! for as long as it is open. That is per-connection work (three relaxed
//! atomic additions at the accept, two at the close), nothing per frame.
//!
//! The process-wide total ([`open_connections`]) is also what the Skylark
//! listeners check against the descriptor limit (`fd_reserve`).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// A listening port, by role: the `listener` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// A NameServer's Skylark port.
    NameServer,
    /// A Broker's Skylark client port.
    Broker,
    /// A NameServer's RocketMQ remoting port.
    NameServerRemoting,
    /// A Broker's RocketMQ remoting port.
    BrokerRemoting,
    /// A master's HA port (slaves replicating).
    Ha,
    /// A controller's port (brokers, admin clients, peer controllers).
    Controller,
    /// The NameServer's web dashboard (HTTP).
    Dashboard,
    /// A `/metrics` endpoint (HTTP).
    Metrics,
}

impl Listener {
    /// Every listener, in the order the metrics list them.
    pub const ALL: [Listener; 8] = [
        Listener::NameServer,
        Listener::Broker,
        Listener::NameServerRemoting,
        Listener::BrokerRemoting,
        Listener::Ha,
        Listener::Controller,
        Listener::Dashboard,
        Listener::Metrics,
    ];

    /// The `listener` label.
    pub fn label(self) -> &'static str {
        match self {
            Listener::NameServer => "namesrv",
            Listener::Broker => "broker",
            Listener::NameServerRemoting => "namesrv_remoting",
            Listener::BrokerRemoting => "broker_remoting",
            Listener::Ha => "ha",
            Listener::Controller => "controller",
            Listener::Dashboard => "dashboard",
            Listener::Metrics => "metrics",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// Marks this listener as running in the process: its samples are
    /// exported from now on (at 0 until a connection comes).
    pub fn listening(self) {
        LISTENING[self.index()].store(true, Ordering::Relaxed);
    }
}

/// Connections open in this process, over every listener.
pub static PROCESS_CONNECTIONS: AtomicUsize = AtomicUsize::new(0);

const N: usize = Listener::ALL.len();
static OPEN: [AtomicUsize; N] = [const { AtomicUsize::new(0) }; N];
static ACCEPTED: [AtomicU64; N] = [const { AtomicU64::new(0) }; N];
static LISTENING: [AtomicBool; N] = [const { AtomicBool::new(false) }; N];

/// Connections open in this process now, over every listener.
pub fn open_connections() -> usize {
    PROCESS_CONNECTIONS.load(Ordering::Relaxed)
}

/// (listener, open now, accepted since start) of every listener that
/// runs or ran in this process.
pub fn by_listener() -> Vec<(Listener, usize, u64)> {
    Listener::ALL
        .into_iter()
        .filter(|l| LISTENING[l.index()].load(Ordering::Relaxed))
        .map(|l| {
            let i = l.index();
            (
                l,
                OPEN[i].load(Ordering::Relaxed),
                ACCEPTED[i].load(Ordering::Relaxed),
            )
        })
        .collect()
}

/// One accepted connection of a listener, counted while this lives.
#[derive(Debug)]
pub struct CountedConnection(Listener);

impl CountedConnection {
    pub fn new(listener: Listener) -> CountedConnection {
        let i = listener.index();
        LISTENING[i].store(true, Ordering::Relaxed);
        ACCEPTED[i].fetch_add(1, Ordering::Relaxed);
        OPEN[i].fetch_add(1, Ordering::Relaxed);
        PROCESS_CONNECTIONS.fetch_add(1, Ordering::Relaxed);
        CountedConnection(listener)
    }
}

impl Drop for CountedConnection {
    fn drop(&mut self) {
        OPEN[self.0.index()].fetch_sub(1, Ordering::Relaxed);
        PROCESS_CONNECTIONS.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_counts_on_its_listener_while_it_lives() {
        let find = |l: Listener| by_listener().into_iter().find(|x| x.0 == l);
        // Other tests of this binary count connections at the same time:
        // only what this one holds is certain.
        let c = CountedConnection::new(Listener::Ha);
        let (_, open, accepted) = find(Listener::Ha).unwrap();
        assert!(open >= 1 && accepted >= 1);
        assert!(open_connections() >= 1);
        drop(c);
        Listener::Dashboard.listening();
        assert!(
            find(Listener::Dashboard).is_some(),
            "exported from the start"
        );
        // Each label is distinct.
        let mut labels: Vec<&str> = Listener::ALL.iter().map(|l| l.label()).collect();
        labels.dedup();
        assert_eq!(labels.len(), N);
    }
}
