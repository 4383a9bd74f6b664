//! The controller (RocketMQ 5's controller mode): three (or five)
//! controllers form an **openraft** group whose replicated state machine
//! holds, per broker group, the master's broker id and address, the master
//! epoch and the in-sync replica set with its epoch ([`types`]). Brokers in
//! controller mode heartbeat the leader; when a master misses heartbeats for
//! `controller_broker_timeout_ms` the leader elects a new one from the
//! in-sync set (from any live replica only with
//! `enable_elect_unclean_master`) and bumps the epoch.
//!
//! * [`types`] — the state and its commands (compare-and-set on epochs).
//! * [`log_store`], [`state_machine`] — openraft's storage, fsynced under
//!   `<data_dir>/raft/`; a restarted controller rejoins from it.
//! * [`proto`], [`network`] — MessagePack frames over TCP, for the raft RPCs
//!   between controllers and for brokers and the admin CLI.
//! * [`client`] — the broker's and the CLI's side: finds the leader.
//! * [`server`] — the listener and the leader's duties (heartbeats, election).
//!
//! Consensus (election of the controller leader, log replication, snapshot
//! transfer) is openraft's; only the broker-group rules are ours. The
//! controller runs on a tokio runtime (openraft spawns its tasks with
//! `tokio::spawn`); its log and snapshot writes are small and rare and run
//! inline on that runtime — a process embedding it gives it a runtime of
//! its own (the `skylark controller` daemon does).

pub mod client;
pub mod log_store;
pub mod member;
pub mod network;
pub mod proto;
pub mod server;
pub mod state_machine;
pub mod types;
pub mod view;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// openraft, for code that builds raft RPCs ([`proto::Request::Vote`], ...).
pub use openraft;
pub use server::{start, ControllerHandle};

/// `conf/controller-N.toml`. A key of the file that no setting has is
/// refused by name when it is loaded (`skylark::config`), as for the other
/// servers; unknown `SKYLARK_*` variables (the CLI's `SKYLARK_NAMESRV`) are
/// passed over.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ControllerConfig {
    /// The server the file is written for ([`crate::config::ConfRole`]); a
    /// file whose `role` is not `controller` is refused when it is loaded.
    pub role: Option<crate::config::ConfRole>,
    /// This controller's id in the raft group (a key of `peers`).
    pub node_id: u64,
    /// Address to listen on.
    pub listen_host: String,
    /// Port for the other controllers, brokers and the admin CLI.
    pub port: u16,
    /// Raft log, vote and snapshots live under `<data_dir>/raft/`.
    pub data_dir: String,
    /// The whole group, this controller included: `ID=HOST:PORT;...`.
    pub peers: String,
    /// A master silent this long is replaced (RocketMQ's default 10 s).
    pub controller_broker_timeout_ms: u64,
    /// Elect a live replica outside the in-sync set when no in-sync one is
    /// left (it may lack acknowledged messages).
    pub enable_elect_unclean_master: bool,
    /// Raft leader heartbeat interval.
    pub raft_heartbeat_interval_ms: u64,
    /// Raft election timeout range.
    pub raft_election_timeout_min_ms: u64,
    pub raft_election_timeout_max_ms: u64,
    /// Take a snapshot (and purge the log before it) after this many entries.
    pub snapshot_logs_since_last: u64,
    /// Metrics (docs/metrics.md): serve `GET /metrics` on this port of
    /// `listen_host`; absent = off.
    pub metrics_port: Option<u16>,
    /// ACL (docs/security.md): every request but `Status` must be signed
    /// by an account of `acl_file` (re-read when it changes) — raft RPCs,
    /// broker heartbeats and in-sync set reports by the cluster's broker
    /// credential (`broker = true`), `ElectMaster` by an admin account.
    pub acl_enabled: bool,
    /// The ACL file (accounts).
    pub acl_file: String,
    /// The cluster's broker credential this controller signs its raft RPCs
    /// to the other controllers with (env `SKYLARK_ACCESS_KEY`); needed
    /// with `acl_enabled`, and signs even without it when set.
    pub access_key: Option<String>,
    /// Its secret (env `SKYLARK_SECRET_KEY`; never logged or serialized).
    #[serde(skip_serializing)]
    pub secret_key: Option<crate::acl::Secret>,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            role: None,
            node_id: 1,
            listen_host: "127.0.0.1".to_string(),
            port: 9881,
            data_dir: "./data/controller-1".to_string(),
            peers: "1=127.0.0.1:9881".to_string(),
            controller_broker_timeout_ms: 10_000,
            enable_elect_unclean_master: false,
            raft_heartbeat_interval_ms: 250,
            raft_election_timeout_min_ms: 1_000,
            raft_election_timeout_max_ms: 2_000,
            snapshot_logs_since_last: 5_000,
            metrics_port: None,
            acl_enabled: false,
            acl_file: "conf/acl.toml".to_string(),
            access_key: None,
            secret_key: None,
        }
    }
}

/// A configuration the controller cannot run with.
#[derive(Debug, thiserror::Error)]
#[error("controller configuration: {0}")]
pub struct ConfigError(pub String);

impl ControllerConfig {
    /// The credential this controller signs its raft RPCs with, if set.
    pub fn credentials(&self) -> Option<std::sync::Arc<skylark_codec::Credentials>> {
        crate::acl::own_credentials(&self.access_key, &self.secret_key)
    }

    /// `peers` as id → address; checks this controller is one of them.
    pub fn peer_map(&self) -> Result<BTreeMap<u64, String>, ConfigError> {
        let mut out = BTreeMap::new();
        for part in self
            .peers
            .split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let (id, addr) = part
                .split_once('=')
                .ok_or_else(|| ConfigError(format!("peer {part:?} is not ID=HOST:PORT")))?;
            let id: u64 = id
                .trim()
                .parse()
                .map_err(|_| ConfigError(format!("peer id {id:?} is not a number")))?;
            if out.insert(id, addr.trim().to_string()).is_some() {
                return Err(ConfigError(format!("peer id {id} is listed twice")));
            }
        }
        let Some(own) = out.get(&self.node_id) else {
            return Err(ConfigError(format!(
                "node_id {} is not in peers {:?}",
                self.node_id, self.peers
            )));
        };
        if !self.listens_at(own) {
            let listen = format!("{}:{}", self.listen_host, self.port);
            let whose = out
                .iter()
                .find(|(_, a)| self.listens_at(a))
                .map(|(id, _)| format!(" (peers lists it for node {id})"))
                .unwrap_or_default();
            return Err(ConfigError(format!(
                "node_id {id} is at {own} in peers, but this controller listens on {listen}{whose}: \
                 it would join the group as node {id} from another node's address; \
                 give it the node_id that peers lists for {listen}, or fix port, listen_host or peers",
                id = self.node_id,
            )));
        }
        if self.controller_broker_timeout_ms == 0 {
            return Err(ConfigError(
                "controller_broker_timeout_ms must be positive".into(),
            ));
        }
        Ok(out)
    }
}

impl ControllerConfig {
    /// Whether `addr` (an entry of `peers`) is where this controller
    /// listens: the same port, and the same host unless `listen_host` is
    /// unspecified (`0.0.0.0`, `::`: every address of the host). Hosts
    /// written differently are compared by the addresses they resolve to;
    /// a name that does not resolve is not held against the entry.
    fn listens_at(&self, addr: &str) -> bool {
        let Some((host, port)) = addr.rsplit_once(':') else {
            return false;
        };
        port.parse::<u16>() == Ok(self.port) && same_host(&self.listen_host, host)
    }
}

/// Whether a listener on `listen` is reached at `peer` (see
/// [`ControllerConfig::listens_at`]).
fn same_host(listen: &str, peer: &str) -> bool {
    use std::net::{IpAddr, ToSocketAddrs};
    let bare = |h: &str| h.trim_start_matches('[').trim_end_matches(']').to_string();
    let (listen, peer) = (bare(listen), bare(peer));
    if listen.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified()) {
        return true;
    }
    if listen.eq_ignore_ascii_case(&peer) {
        return true;
    }
    let resolve = |h: &str| {
        (h, 0)
            .to_socket_addrs()
            .map(|a| a.map(|a| a.ip()).collect::<Vec<IpAddr>>())
    };
    match (resolve(&listen), resolve(&peer)) {
        (Ok(l), Ok(p)) => l.iter().any(|ip| p.contains(ip)),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_and_bad_ones_are_errors() {
        let mut c = ControllerConfig {
            node_id: 2,
            port: 2,
            peers: "1=127.0.0.1:1; 2=127.0.0.1:2;3=h:3".into(),
            ..ControllerConfig::default()
        };
        assert_eq!(c.peer_map().unwrap().len(), 3);
        c.node_id = 4;
        assert!(c.peer_map().is_err());
        c.peers = "x=1".into();
        assert!(c.peer_map().is_err());
        c.peers = "1=a;1=b".into();
        assert!(c.peer_map().is_err());
    }

    /// A controller whose listen address is not its node's entry in
    /// `peers` would join the group as another node: refused, naming both
    /// addresses (and whose the listen address is).
    #[test]
    fn the_listen_address_must_be_the_nodes_entry_in_peers() {
        let peers = "1=127.0.0.1:9881;2=127.0.0.1:9882;3=localhost:9883";
        let c = |node_id, listen_host: &str, port| ControllerConfig {
            node_id,
            listen_host: listen_host.into(),
            port,
            peers: peers.into(),
            ..ControllerConfig::default()
        };
        for ok in [
            c(1, "127.0.0.1", 9881),
            c(1, "0.0.0.0", 9881),
            c(2, "::", 9882),
            c(3, "127.0.0.1", 9883),
            c(3, "localhost", 9883),
        ] {
            ok.peer_map()
                .unwrap_or_else(|e| panic!("{}:{}: {e}", ok.listen_host, ok.port));
        }
        let e = c(1, "127.0.0.1", 9882).peer_map().unwrap_err().to_string();
        assert!(
            e.contains("node_id 1 is at 127.0.0.1:9881 in peers")
                && e.contains("listens on 127.0.0.1:9882 (peers lists it for node 2)"),
            "{e}"
        );
        for bad in [
            c(1, "0.0.0.0", 9882),
            c(1, "127.0.0.2", 9881),
            c(1, "127.0.0.1", 0),
        ] {
            let e = bad.peer_map().unwrap_err().to_string();
            let listen = format!("listens on {}:{}", bad.listen_host, bad.port);
            assert!(e.contains(&listen), "{e}");
        }
    }
}
