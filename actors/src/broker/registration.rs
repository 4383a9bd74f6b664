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
}

impl NsLink {
    pub fn new(addr: String) -> NsLink {
        NsLink {
            addr,
            client: None,
            hb_client: None,
            acked: None,
            supports_delta: false,
        }
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
