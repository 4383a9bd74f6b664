//! A broker's registration with one NameServer: full, delta and heartbeat
//! (see [`skylark_codec::cmd::broker`]).
//!
//! Every NameServer has two connections: one for registrations (which may
//! carry megabytes of topics) and one for heartbeats, so a heartbeat never
//! queues behind a topic payload on the wire. A NameServer gets a full
//! registration first (and again whenever it answers `need_full`, fails, or
//! does not say `supports_delta`), then deltas of the topics changed since
//! the version it acknowledged, and a heartbeat every
//! `register_interval_secs` naming that version.
//!
//! A NameServer that restarts forgets every broker, and one that cannot be
//! reached may have. So a NameServer that closed the broker's connections
//! (checked every [`LINK_CHECK`]) is asked at once with a heartbeat (a
//! NameServer that forgot the broker answers it with `need_full`), and one
//! that could not be reached gets a full registration, tried again after
//! [`FIRST_RETRY`], doubling up to the registration period while it keeps
//! failing ([`next_backoff`]) — not at the next period, 30 s on, while
//! clients asking it find no route.

use std::sync::Arc;
use std::time::Duration;

use skylark_codec::{RegisterBrokerRequest, RegisterBrokerResponse};
use slog::{warn, Logger};

use crate::remoting::RpcClient;

/// How long a registration may take (a full one carries every topic).
pub const REGISTER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a heartbeat may take.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(5);
/// Topics per request of a full registration: a larger table goes as a
/// `Full` with the first ones and `Delta`s on the same version with the rest,
/// so no frame nears the frame size limit.
pub const TOPICS_PER_REQUEST: usize = 10_000;

/// How often the broker looks whether a NameServer closed its connections.
pub const LINK_CHECK: Duration = Duration::from_secs(1);
/// The first retry after a NameServer could not be reached.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);

/// The wait before the next try at a NameServer after `prev` (zero: the
/// last try reached it): [`FIRST_RETRY`], then twice the last, at most `cap`
/// (the registration period).
pub fn next_backoff(prev: Duration, cap: Duration) -> Duration {
    if prev.is_zero() {
        FIRST_RETRY.min(cap)
    } else {
        (prev * 2).min(cap)
    }
}

/// What the broker knows of one NameServer.
pub struct NsLink {
    pub addr: String,
    /// Registration connection (taken while a round is in flight).
    pub client: Option<RpcClient>,
    /// Heartbeat connection (taken while a heartbeat is in flight).
    pub hb_client: Option<RpcClient>,
    /// The data version this NameServer acknowledged; `None`: a full
    /// registration is due.
    pub acked: Option<u64>,
    /// It takes deltas and heartbeats.
    pub supports_delta: bool,
    /// The wait before the next try: zero while the last one reached it.
    pub backoff: Duration,
}

impl NsLink {
    pub fn new(addr: String) -> NsLink {
        NsLink {
            addr,
            client: None,
            hb_client: None,
            acked: None,
            supports_delta: false,
            backoff: Duration::ZERO,
        }
    }

    /// A request did not reach it: a full registration is due, after the
    /// next backoff (at most `cap`).
    pub fn unreachable(&mut self, cap: Duration) {
        self.acked = None;
        self.backoff = next_backoff(self.backoff, cap);
    }

    /// A request reached it.
    pub fn reached(&mut self) {
        self.backoff = Duration::ZERO;
    }

    /// Whether a connection to it that was open has closed (the NameServer
    /// restarted, went away, or closed it as idle); the closed ones are let
    /// go, so each closing is seen once. A connection taken by a request in
    /// flight is that request's to report.
    pub fn lost_connection(&mut self) -> bool {
        let mut lost = false;
        for slot in [&mut self.client, &mut self.hb_client] {
            if slot.as_ref().is_some_and(|c| !c.is_connected()) {
                *slot = None;
                lost = true;
            }
        }
        lost
    }

    /// Whether this NameServer needs the full topic table next.
    pub fn needs_full(&self) -> bool {
        self.acked.is_none() || !self.supports_delta
    }
}

/// A connected client: `client` if still open, else a new connection.
/// New connections sign with `creds` (the cluster's broker credential, ACL).
pub async fn connected(
    (addr, cfg): (&str, Arc<crate::config::BrokerConfig>),
    client: Option<RpcClient>,
    log: &Logger,
) -> Option<RpcClient> {
    if let Some(c) = client.filter(|c| c.is_connected()) {
        return Some(c);
    }
    match cfg.connect_peer(addr).await {
        Ok(c) => Some(c),
        Err(e) => {
            warn!(log, "nameserver unreachable"; "namesrv" => addr, "error" => %e);
            None
        }
    }
}

/// The outcome of sending requests to one NameServer.
pub struct Sent {
    pub client: Option<RpcClient>,
    /// The last answer, or `None` if a request failed.
    pub answer: Option<RegisterBrokerResponse>,
}

/// Sends `reqs` in order on the registration connection; stops at the first
/// failure or `need_full` answer.
pub async fn send_all(
    (addr, creds): (String, Arc<crate::config::BrokerConfig>),
    client: Option<RpcClient>,
    reqs: Vec<Arc<RegisterBrokerRequest>>,
    timeout: Duration,
    log: Logger,
) -> Sent {
    let Some(c) = connected((&addr, creds), client, &log).await else {
        return Sent {
            client: None,
            answer: None,
        };
    };
    let mut answer = None;
    for req in reqs {
        match c.call_timeout(&*req, timeout).await {
            Ok(resp) => {
                let stop = resp.need_full;
                answer = Some(resp);
                if stop {
                    break;
                }
            }
            Err(e) => {
                warn!(log, "register with nameserver failed"; "namesrv" => &addr,
                    "kind" => ?req.kind, "error" => %e);
                answer = None;
                break;
            }
        }
    }
    Sent {
        client: Some(c),
        answer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_start_at_a_second_and_double_up_to_the_period() {
        let cap = Duration::from_secs(30);
        let mut waits = Vec::new();
        let mut b = Duration::ZERO;
        for _ in 0..7 {
            b = next_backoff(b, cap);
            waits.push(b.as_secs());
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30]);
        // A period shorter than the first retry caps it too.
        let short = Duration::from_millis(500);
        assert_eq!(next_backoff(Duration::ZERO, short), short);
        let mut link = NsLink::new("ns:1".into());
        link.acked = Some(7);
        link.unreachable(cap);
        assert_eq!((link.acked, link.backoff), (None, FIRST_RETRY));
        link.unreachable(cap);
        assert_eq!(link.backoff, 2 * FIRST_RETRY);
        link.reached();
        assert!(link.backoff.is_zero());
        assert!(!link.lost_connection(), "no connection was open");
    }
}
