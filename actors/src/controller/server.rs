//! A running controller: the raft node, the TCP listener, and the leader's
//! broker duties.
//!
//! Broker liveness is the leader's memory only (as in RocketMQ's
//! `BrokerHeartbeatManager`): it is not replicated. A controller that
//! becomes leader counts every broker as seen at that moment, so a master
//! gets a full `controller_broker_timeout_ms` to reach the new leader
//! before it is replaced. Decisions (register, elect, in-sync set) go
//! through the raft log as [`Command`]s.
//!
//! One broker per id: a heartbeat for an id alive at another address (a
//! copied configuration) is answered [`Response::IdInUse`] and not counted;
//! the id moves to a new address only once its holder is dead past the
//! timeout. `Status` marks each replica alive or not (leader only).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use openraft::{BasicNode, Raft, ServerState};
use skylark_codec::frame::decode_value;
use slog::{debug, info, warn, Logger};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::codec::Framed;

use super::log_store::LogStore;
use super::network::Network;
use super::proto::{self, BrokerHeartbeat, ControllerStatus, Request, Response};
use super::state_machine::{SharedState, StateMachine};
use super::types::{AddrGuard, Command, CommandResult, GroupInfo, NodeId, TypeConfig};
use super::{ConfigError, ControllerConfig};
use crate::acl::rules::Need;

/// Why a controller could not start.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartError(String);

impl StartError {
    fn new(s: impl Into<String>) -> StartError {
        StartError(s.into())
    }
}

impl From<ConfigError> for StartError {
    fn from(e: ConfigError) -> StartError {
        StartError(e.to_string())
    }
}

/// What the leader last heard from a broker.
#[derive(Debug, Clone, Copy)]
struct Seen {
    at: Instant,
    max_offset: u64,
}

struct Shared {
    id: NodeId,
    addr: String,
    cfg: ControllerConfig,
    raft: Raft<TypeConfig>,
    state: SharedState,
    peers: BTreeMap<NodeId, String>,
    /// (broker name, broker id) → last heartbeat (leader only).
    seen: Mutex<HashMap<(String, u64), Seen>>,
    /// The term this controller leads, and since when.
    leading: Mutex<Option<(u64, Instant)>>,
    /// ACL on: requests must be signed (see [`authorize`]).
    acl: Option<crate::acl::Acl>,
    /// Requests served and terms led, for `GET /metrics`.
    counters: Arc<crate::metrics::controller::ControllerCounters>,
    log: Logger,
}

/// A started controller; dropping it does not stop it, [`ControllerHandle::shutdown`] does.
pub struct ControllerHandle {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
    /// `GET /metrics` when `metrics_port` is set (a thread of its own).
    metrics: Option<crate::metrics::controller::MetricsThread>,
    /// `<data_dir>/lock`, held while this controller runs: a second
    /// controller on the same raft files (a stray `skylark controller` with
    /// the default data directory) stood for election as this node.
    _dir_lock: std::fs::File,
}

impl ControllerHandle {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The raft node (metrics, tests).
    pub fn raft(&self) -> &Raft<TypeConfig> {
        &self.shared.raft
    }

    /// Where `GET /metrics` listens, when `metrics_port` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|m| m.local_addr)
    }

    /// Stops the listener, the leader duties, the metrics endpoint and the
    /// raft node.
    pub async fn shutdown(mut self) {
        for t in &self.tasks {
            t.abort();
        }
        if let Some(mut m) = self.metrics.take() {
            // Joins the endpoint's thread: off the runtime's threads.
            let _ = tokio::task::spawn_blocking(move || m.stop()).await;
        }
        let _ = self.shared.raft.shutdown().await;
    }
}

/// Opens the raft storage in `cfg.data_dir`, starts the node and the
/// listener, and initializes the group on first start (every member may:
/// openraft accepts the same initial membership from each).
pub async fn start(cfg: ControllerConfig, log: Logger) -> Result<ControllerHandle, StartError> {
    let peers = cfg.peer_map()?;
    let log = log.new(slog::o!("actor" => "controller", "node_id" => cfg.node_id));
    let data_dir = std::path::Path::new(&cfg.data_dir);
    std::fs::create_dir_all(data_dir).map_err(|e| {
        StartError::new(format!(
            "cannot create the data directory {}: {e}",
            data_dir.display()
        ))
    })?;
    let dir_lock = crate::message_store::lock_data_dir(data_dir, &log)
        .map_err(|e| StartError::new(e.to_string()))?;
    let raft_dir = data_dir.join("raft");
    let log_store = LogStore::open(&raft_dir).map_err(|e| {
        StartError::new(format!(
            "cannot open the raft log in {}: {e}",
            raft_dir.display()
        ))
    })?;
    let sm = StateMachine::open(&raft_dir).map_err(|e| {
        StartError::new(format!(
            "cannot open the snapshot in {}: {e}",
            raft_dir.display()
        ))
    })?;
    let state = sm.shared();
    let raft_cfg = openraft::Config {
        cluster_name: "skylark-controller".to_string(),
        heartbeat_interval: cfg.raft_heartbeat_interval_ms,
        election_timeout_min: cfg.raft_election_timeout_min_ms,
        election_timeout_max: cfg.raft_election_timeout_max_ms,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(cfg.snapshot_logs_since_last),
        max_in_snapshot_log_to_keep: 100,
        ..Default::default()
    }
    .validate()
    .map_err(|e| StartError::new(e.to_string()))?;
    let listener = TcpListener::bind((cfg.listen_host.as_str(), cfg.port))
        .await
        .map_err(|e| {
            StartError::new(format!(
                "cannot listen on {}:{}: {e}",
                cfg.listen_host, cfg.port
            ))
        })?;
    let local_addr = listener
        .local_addr()
        .map_err(|e| StartError::new(e.to_string()))?;
    let creds = cfg.credentials();
    let (acl, acl_task) = if cfg.acl_enabled {
        let (a, t) =
            crate::acl::watch_on_tokio(&cfg.acl_file, log.clone()).map_err(StartError::new)?;
        let checked = match &creds {
            None => Err("acl_enabled needs the cluster's broker credential \
                 (access_key/secret_key, or SKYLARK_ACCESS_KEY/SKYLARK_SECRET_KEY) \
                 to sign the raft RPCs to the other controllers"
                .to_string()),
            Some(c) => a.check_own_broker_credential(c),
        };
        if let Err(e) = checked {
            t.abort();
            return Err(StartError::new(e));
        }
        (Some(a), Some(t))
    } else {
        (None, None)
    };
    let network = Network { creds };
    let raft = match Raft::new(cfg.node_id, Arc::new(raft_cfg), network, log_store, sm).await {
        Ok(r) => r,
        Err(e) => {
            if let Some(t) = acl_task {
                t.abort();
            }
            return Err(StartError::new(format!("cannot start raft: {e}")));
        }
    };
    let addr = peers
        .get(&cfg.node_id)
        .cloned()
        .unwrap_or_else(|| local_addr.to_string());
    let shared = Arc::new(Shared {
        id: cfg.node_id,
        addr,
        cfg,
        raft,
        state,
        peers,
        seen: Mutex::default(),
        leading: Mutex::default(),
        acl,
        counters: Arc::default(),
        log,
    });
    let members: BTreeMap<NodeId, BasicNode> = shared
        .peers
        .iter()
        .map(|(id, a)| (*id, BasicNode::new(a.clone())))
        .collect();
    let initialized = shared
        .raft
        .is_initialized()
        .await
        .map_err(|e| StartError::new(e.to_string()))?;
    if !initialized {
        if let Err(e) = shared.raft.initialize(members).await {
            // Another member initialized first: this one joins as it hears.
            info!(shared.log, "group already initialized"; "reason" => %e);
        }
    }
    let metrics = match shared.cfg.metrics_port {
        Some(port) => {
            let source: Arc<dyn crate::metrics::Source> =
                Arc::new(crate::metrics::controller::ControllerSource::new(
                    shared.raft.clone(),
                    shared.state.clone(),
                    shared.counters.clone(),
                    shared.id,
                ));
            match crate::metrics::controller::serve_on_own_thread(
                &shared.cfg.listen_host,
                port,
                source,
                shared.log.clone(),
            ) {
                Ok(m) => Some(m),
                Err(e) => {
                    let _ = shared.raft.shutdown().await;
                    return Err(StartError::new(e.to_string()));
                }
            }
        }
        None => None,
    };
    info!(shared.log, "controller started"; "addr" => %local_addr);
    let mut tasks = vec![
        tokio::spawn(accept_loop(shared.clone(), listener)),
        tokio::spawn(leader_duties(shared.clone())),
    ];
    tasks.extend(acl_task);
    Ok(ControllerHandle {
        shared,
        local_addr,
        tasks,
        metrics,
        _dir_lock: dir_lock,
    })
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    crate::metrics::Listener::Controller.listening();
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve(
                    shared.clone(),
                    Framed::new(stream, proto::codec()),
                    peer.ip(),
                ));
            }
            Err(e) => {
                warn!(shared.log, "accept failed"; "error" => %e);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One connection: requests answered in order. A frame that does not decode
/// gets [`Response::Error`] — as does one that would decode into more than
/// the codec's budget (8 × its size + 16 KiB: a few bytes per blank raft
/// entry are ~160 bytes decoded), refused before anything is built, ahead
/// of the ACL check; a frame over the limit closes the connection.
async fn serve(shared: Arc<Shared>, mut conn: proto::Conn, peer: std::net::IpAddr) {
    let _counted = crate::metrics::CountedConnection::new(crate::metrics::Listener::Controller);
    while let Some(Ok(frame)) = conn.next().await {
        let resp = match decode_value::<Request>(&frame) {
            Ok(req) => match authorize(&shared, req, peer) {
                Ok(req) => handle(&shared, req).await,
                Err(refused) => {
                    if let Response::AccessDenied(e) = &*refused {
                        debug!(shared.log, "request refused by ACL"; "peer" => %peer, "error" => &e.message);
                    }
                    *refused
                }
            },
            Err(e) => Response::Error(format!("bad request: {e}")),
        };
        let Ok(bytes) = rmp_serde::to_vec_named(&resp) else {
            break;
        };
        if conn.send(bytes::Bytes::from(bytes)).await.is_err() {
            break;
        }
    }
}

/// What a request needs of its signer with ACL on, and its name in a
/// refusal; `None`: served unsigned (`Status` only reads).
fn need_of(req: &Request) -> Option<(Need, &'static str)> {
    Some(match req {
        Request::AppendEntries(_) => (Need::Broker, "AppendEntries (controller raft RPC)"),
        Request::Vote(_) => (Need::Broker, "Vote (controller raft RPC)"),
        Request::InstallSnapshot(_) => (Need::Broker, "InstallSnapshot (controller raft RPC)"),
        Request::BrokerHeartbeat(_) => (Need::Broker, "BrokerHeartbeat"),
        Request::AlterSyncStateSet(_) => (Need::Broker, "AlterSyncStateSet"),
        Request::ElectMaster { .. } => (Need::Admin, "elect a master (admin controller elect)"),
        Request::Status => return None,
        // Unwrapped before; a nested one is refused in `authorize`.
        Request::Signed(_) => (Need::Admin, "send a nested signed request"),
    })
}

/// ACL: unwraps a [`Request::Signed`]. With ACL on the signature is
/// checked (window, replay, address) and the inner request's need: the
/// cluster's broker credential for raft RPCs, heartbeats and in-sync set
/// reports, an admin account for `ElectMaster`, any account for `Status`;
/// an unsigned request other than `Status` is refused with `AuthFailed`.
/// The refusal comes before anything is served: a forged request changes
/// neither the raft state nor the leader's liveness records.
fn authorize(s: &Shared, req: Request, peer: std::net::IpAddr) -> Result<Request, Box<Response>> {
    use skylark_codec::{ErrorCode, WireError};
    let denied = |e: WireError| Box::new(Response::AccessDenied(e));
    match req {
        Request::Signed(sr) => {
            let inner = match decode_value::<Request>(&sr.request) {
                Ok(Request::Signed(_)) => {
                    return Err(Box::new(Response::Error("nested signed request".into())))
                }
                Ok(inner) => inner,
                Err(e) => {
                    return Err(Box::new(Response::Error(format!(
                        "bad signed request: {e}"
                    ))))
                }
            };
            if let Some(acl) = &s.acl {
                let (need, what) = need_of(&inner).unwrap_or((Need::Authenticated, "Status"));
                acl.check_payload(
                    &sr.access_key,
                    sr.timestamp_ms,
                    sr.nonce,
                    &sr.signature,
                    &sr.request,
                    Some(peer),
                    need,
                    what,
                )
                .map_err(denied)?;
            }
            Ok(inner)
        }
        other if s.acl.is_some() => match need_of(&other) {
            None => Ok(other),
            Some((Need::Admin, what)) => Err(denied(WireError::new(
                ErrorCode::AuthFailed,
                format!(
                    "the request is not signed: with ACL on, to {what} needs an admin \
                     account (--access-key/--secret-key or SKYLARK_ACCESS_KEY/SKYLARK_SECRET_KEY)"
                ),
            ))),
            Some((_, what)) => Err(denied(WireError::new(
                ErrorCode::AuthFailed,
                format!(
                    "{what} request is not signed: with ACL on the controller serves it only \
                     signed by the cluster's broker credential (access_key/secret_key in the \
                     broker's or controller's configuration)"
                ),
            ))),
        },
        other => Ok(other),
    }
}

async fn handle(s: &Arc<Shared>, req: Request) -> Response {
    s.counters.request(request_name(&req));
    match req {
        Request::AppendEntries(r) => Response::AppendEntries(s.raft.append_entries(r).await),
        Request::Vote(r) => Response::Vote(s.raft.vote(r).await),
        Request::InstallSnapshot(r) => Response::InstallSnapshot(s.raft.install_snapshot(r).await),
        Request::Status => Response::Status(status(s)),
        Request::BrokerHeartbeat(hb) => match not_leader(s) {
            Some(r) => r,
            None => heartbeat(s, hb).await,
        },
        Request::AlterSyncStateSet(a) => match not_leader(s) {
            Some(r) => r,
            None => {
                write(
                    s,
                    Command::AlterSyncStateSet {
                        broker_name: a.broker_name,
                        master_id: a.master_id,
                        master_epoch: a.master_epoch,
                        sync_state_set_epoch: a.sync_state_set_epoch,
                        new_set: a.new_set,
                    },
                )
                .await
            }
        },
        Request::ElectMaster {
            broker_name,
            broker_id,
        } => match not_leader(s) {
            Some(r) => r,
            None => elect_by_request(s, &broker_name, broker_id).await,
        },
        // `authorize` unwrapped it; a nested one is refused there.
        Request::Signed(_) => Response::Error("nested signed request".into()),
    }
}

/// A request's `request` label in `skylark_controller_requests_total`.
fn request_name(req: &Request) -> &'static str {
    match req {
        Request::AppendEntries(_) => "AppendEntries",
        Request::Vote(_) => "Vote",
        Request::InstallSnapshot(_) => "InstallSnapshot",
        Request::Status => "Status",
        Request::BrokerHeartbeat(_) => "BrokerHeartbeat",
        Request::AlterSyncStateSet(_) => "AlterSyncStateSet",
        Request::ElectMaster { .. } => "ElectMaster",
        Request::Signed(_) => "Signed",
    }
}

fn leader_addr(s: &Shared, leader: Option<NodeId>) -> Option<String> {
    leader.and_then(|l| s.peers.get(&l).cloned())
}

/// `Some(NotLeader)` unless this controller leads.
fn not_leader(s: &Shared) -> Option<Response> {
    let m = s.raft.metrics().borrow().clone();
    if m.state == ServerState::Leader && m.current_leader == Some(s.id) {
        None
    } else {
        Some(Response::NotLeader {
            leader: leader_addr(s, m.current_leader),
        })
    }
}

fn status(s: &Shared) -> ControllerStatus {
    let m = s.raft.metrics().borrow().clone();
    let groups: Vec<GroupInfo> = s
        .state
        .read()
        .map(|a| a.state.groups.values().cloned().collect())
        .unwrap_or_default();
    let alive = s.leading_since().map(|since| {
        groups
            .iter()
            .map(|g| {
                let ids = g.replicas.keys().copied();
                let live = ids.filter(|id| s.alive(&g.broker_name, *id, since).is_some());
                (g.broker_name.clone(), live.collect())
            })
            .collect()
    });
    ControllerStatus {
        node_id: s.id,
        addr: s.addr.clone(),
        leader_id: m.current_leader,
        leader_addr: leader_addr(s, m.current_leader),
        term: m.current_term,
        last_applied_index: m.last_applied.map(|l| l.index),
        members: s.peers.iter().map(|(i, a)| (*i, a.clone())).collect(),
        groups,
        alive,
    }
}

fn group(s: &Shared, broker_name: &str) -> Option<GroupInfo> {
    s.state
        .read()
        .ok()
        .and_then(|a| a.state.groups.get(broker_name).cloned())
}

/// Proposes `cmd` and answers its result.
async fn write(s: &Shared, cmd: Command) -> Response {
    match s.raft.client_write(cmd).await {
        Ok(r) => match r.data {
            CommandResult::Group(g) => Response::Group(g),
            CommandResult::Rejected(why) => Response::Refused(why),
            CommandResult::None => Response::Error("no result".into()),
        },
        Err(e) => match e.forward_to_leader() {
            Some(f) => Response::NotLeader {
                leader: f.leader_node.as_ref().map(|n| n.addr.clone()),
            },
            None => Response::Error(format!("raft write failed: {e}")),
        },
    }
}

async fn heartbeat(s: &Arc<Shared>, hb: BrokerHeartbeat) -> Response {
    let g = group(s, &hb.broker_name);
    let current = g
        .as_ref()
        .and_then(|g| g.replicas.get(&hb.broker_id))
        .cloned();
    // The id is alive at another address: a second broker with the same
    // broker_id (a copied configuration). Refused before its heartbeat
    // counts, so it cannot keep the id alive nor take it over; the id
    // moves only once its holder is dead past the timeout.
    if let Some(holder) = current.as_ref().filter(|a| **a != hb.addr) {
        let since = s.leading_since().unwrap_or_else(Instant::now);
        if s.alive(&hb.broker_name, hb.broker_id, since).is_some() {
            warn!(s.log, "refused a heartbeat: its broker id is alive at another address";
                "broker_name" => &hb.broker_name, "broker_id" => hb.broker_id,
                "addr" => &hb.addr, "holder" => holder);
            return Response::IdInUse {
                broker_name: hb.broker_name,
                broker_id: hb.broker_id,
                holder: holder.clone(),
            };
        }
    }
    if let Ok(mut seen) = s.seen.lock() {
        seen.insert(
            (hb.broker_name.clone(), hb.broker_id),
            Seen {
                at: Instant::now(),
                max_offset: hb.max_offset,
            },
        );
    }
    let known = g.as_ref().is_some_and(|g| {
        current.as_ref() == Some(&hb.addr)
            && (hb.ha_addr.is_none() || g.ha_addrs.get(&hb.broker_id) == hb.ha_addr.as_ref())
    });
    let may_take_masterless = g.as_ref().is_none_or(|g| {
        g.master_id.is_none()
            && (g.sync_state_set.is_empty() || g.sync_state_set.contains(&hb.broker_id))
    });
    if !known || may_take_masterless {
        return write(
            s,
            Command::RegisterBroker {
                cluster: hb.cluster,
                broker_name: hb.broker_name,
                broker_id: hb.broker_id,
                addr: hb.addr,
                ha_addr: hb.ha_addr,
                replaces: AddrGuard::of(current.as_ref()),
            },
        )
        .await;
    }
    let Some(g) = g else {
        return Response::Error("group vanished".into());
    };
    if g.master_id.is_none() && s.cfg.enable_elect_unclean_master {
        info!(s.log, "unclean election: no in-sync broker is alive";
            "broker_name" => &g.broker_name, "new_master" => hb.broker_id);
        return write(
            s,
            Command::ElectMaster {
                broker_name: g.broker_name.clone(),
                expected_master_epoch: g.master_epoch,
                new_master: Some(hb.broker_id),
            },
        )
        .await;
    }
    Response::Group(g)
}

impl Shared {
    fn timeout(&self) -> Duration {
        Duration::from_millis(self.cfg.controller_broker_timeout_ms)
    }

    /// When the leader last heard from a broker (its leadership start if never).
    fn last_seen(&self, broker_name: &str, id: u64, since: Instant) -> Option<Seen> {
        let seen = self.seen.lock().ok()?;
        Some(
            seen.get(&(broker_name.to_string(), id))
                .copied()
                .map(|s| Seen {
                    at: s.at.max(since),
                    ..s
                })
                .unwrap_or(Seen {
                    at: since,
                    max_offset: 0,
                }),
        )
    }

    fn alive(&self, broker_name: &str, id: u64, since: Instant) -> Option<Seen> {
        self.last_seen(broker_name, id, since)
            .filter(|s| s.at.elapsed() <= self.timeout())
    }

    /// The best live replica other than `exclude`: in the in-sync set, or
    /// (with `enable_elect_unclean_master`) any; the most advanced first.
    fn pick_candidate(&self, g: &GroupInfo, exclude: Option<u64>, since: Instant) -> Option<u64> {
        let best = |ids: &mut dyn Iterator<Item = u64>| {
            ids.filter(|id| Some(*id) != exclude)
                .filter_map(|id| self.alive(&g.broker_name, id, since).map(|s| (id, s)))
                .max_by_key(|(id, s)| (s.max_offset, std::cmp::Reverse(*id)))
                .map(|(id, _)| id)
        };
        best(&mut g.sync_state_set.iter().copied()).or_else(|| {
            if self.cfg.enable_elect_unclean_master {
                best(&mut g.replicas.keys().copied())
            } else {
                None
            }
        })
    }

    fn leading_since(&self) -> Option<Instant> {
        let m = self.raft.metrics().borrow().clone();
        let mut leading = self.leading.lock().ok()?;
        if m.state != ServerState::Leader {
            *leading = None;
            return None;
        }
        match *leading {
            Some((term, since)) if term == m.current_term => Some(since),
            _ => {
                let now = Instant::now();
                *leading = Some((m.current_term, now));
                // Heartbeats heard in an earlier term are stale: brokers
                // talked to another leader meanwhile.
                if let Ok(mut seen) = self.seen.lock() {
                    seen.clear();
                }
                info!(self.log, "leading the controller group"; "term" => m.current_term);
                self.counters.led_a_term();
                Some(now)
            }
        }
    }
}

async fn elect_by_request(s: &Arc<Shared>, broker_name: &str, broker_id: Option<u64>) -> Response {
    let Some(g) = group(s, broker_name) else {
        return Response::Refused(format!("no broker group {broker_name}"));
    };
    let since = s.leading_since().unwrap_or_else(Instant::now);
    let new_master = match broker_id {
        Some(id) => {
            if !g.replicas.contains_key(&id) {
                return Response::Refused(format!("broker {broker_name} id {id} is not known"));
            }
            if !g.sync_state_set.contains(&id) && !s.cfg.enable_elect_unclean_master {
                return Response::Refused(format!(
                    "broker {broker_name} id {id} is not in the in-sync set {:?} \
                     (enable_elect_unclean_master is off)",
                    g.sync_state_set
                ));
            }
            if s.alive(broker_name, id, since).is_none() {
                return Response::Refused(format!("broker {broker_name} id {id} is not alive"));
            }
            id
        }
        None => match s.pick_candidate(&g, g.master_id, since) {
            Some(id) => id,
            None => return Response::Refused("no live candidate to elect".into()),
        },
    };
    info!(s.log, "election requested"; "broker_name" => broker_name, "new_master" => new_master);
    write(
        s,
        Command::ElectMaster {
            broker_name: broker_name.to_string(),
            expected_master_epoch: g.master_epoch,
            new_master: Some(new_master),
        },
    )
    .await
}

/// While leading: replace every master silent past the timeout.
async fn leader_duties(s: Arc<Shared>) {
    let tick = (s.timeout() / 5).clamp(Duration::from_millis(20), Duration::from_secs(1));
    loop {
        tokio::time::sleep(tick).await;
        let Some(since) = s.leading_since() else {
            continue;
        };
        let groups: Vec<GroupInfo> = match s.state.read() {
            Ok(a) => a.state.groups.values().cloned().collect(),
            Err(_) => continue,
        };
        for g in groups {
            let Some(master) = g.master_id else { continue };
            if s.alive(&g.broker_name, master, since).is_some() {
                continue;
            }
            let candidate = s.pick_candidate(&g, Some(master), since);
            warn!(s.log, "master missed its heartbeats, electing";
                "broker_name" => &g.broker_name, "old_master" => master,
                "new_master" => ?candidate, "epoch" => g.master_epoch + 1);
            match write(
                &s,
                Command::ElectMaster {
                    broker_name: g.broker_name.clone(),
                    expected_master_epoch: g.master_epoch,
                    new_master: candidate,
                },
            )
            .await
            {
                Response::Group(_) => {}
                other => warn!(s.log, "election not applied"; "answer" => ?other),
            }
        }
    }
}
