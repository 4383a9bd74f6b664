//! A controller's scrape (issue 14): its raft role, term, leader, log and
//! applied indexes and voters, the requests it served and the terms it
//! came to lead, and per broker group the master, its epoch and the
//! in-sync set — read from openraft's metrics, the applied state and
//! [`ControllerCounters`], all readable from any thread without asking the
//! node.
//!
//! The controller runs on a plain tokio runtime, while `GET /metrics`
//! ([`super::serve`]) is an actix-web server that needs an actix System:
//! [`serve_on_own_thread`] gives it one on a thread of its own, stopped
//! with the controller.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::future::LocalBoxFuture;
use openraft::{Raft, ServerState};
use prometheus::proto::MetricFamily;
use slog::Logger;

use super::families::Families;
use crate::controller::state_machine::SharedState;
use crate::controller::types::{NodeId, TypeConfig};

/// The controller's requests by kind (the `request` label).
pub const REQUESTS: [&str; 7] = [
    "AppendEntries",
    "Vote",
    "InstallSnapshot",
    "Status",
    "BrokerHeartbeat",
    "AlterSyncStateSet",
    "ElectMaster",
];

/// What only the controller's request path sees: requests served by kind
/// and the raft terms it came to lead. Plain shared atomics: a controller
/// serves a few requests a second.
#[derive(Debug, Default)]
pub struct ControllerCounters {
    requests: [AtomicU64; REQUESTS.len()],
    /// Raft terms in which this controller became the leader.
    pub leader_terms: AtomicU64,
}

impl ControllerCounters {
    /// Counts one served request of kind `request` (one of [`REQUESTS`]).
    pub fn request(&self, request: &str) {
        if let Some(i) = REQUESTS.iter().position(|r| *r == request) {
            self.requests[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// This controller leads a new term.
    pub fn led_a_term(&self) {
        self.leader_terms.fetch_add(1, Ordering::Relaxed);
    }
}

/// A controller as a [`super::Source`].
pub struct ControllerSource {
    raft: Raft<TypeConfig>,
    state: SharedState,
    counters: Arc<ControllerCounters>,
    node_id: String,
}

impl ControllerSource {
    pub fn new(
        raft: Raft<TypeConfig>,
        state: SharedState,
        counters: Arc<ControllerCounters>,
        node_id: NodeId,
    ) -> ControllerSource {
        ControllerSource {
            raft,
            state,
            counters,
            node_id: node_id.to_string(),
        }
    }

    fn families(&self) -> Vec<MetricFamily> {
        let m = self.raft.metrics().borrow().clone();
        let mut f = Families::new(&[("node_type", "controller"), ("node_id", &self.node_id)]);
        let one = |x: f64| [([] as [&str; 0], x)];
        f.gauge(
            "skylark_controller_is_leader",
            "1 while this controller leads the raft group.",
            &[],
            one(f64::from(u8::from(m.state == ServerState::Leader))),
        );
        f.gauge(
            "skylark_controller_term",
            "The raft term this controller is in.",
            &[],
            one(m.current_term as f64),
        );
        f.gauge(
            "skylark_controller_leader_id",
            "Raft id of the leader this controller knows of (0: none known).",
            &[],
            one(m.current_leader.unwrap_or(0) as f64),
        );
        f.gauge(
            "skylark_controller_last_log_index",
            "Index of the last entry in this controller's raft log.",
            &[],
            one(m.last_log_index.unwrap_or(0) as f64),
        );
        f.gauge(
            "skylark_controller_last_applied_index",
            "Index of the last raft log entry applied to the state machine.",
            &[],
            one(m.last_applied.map_or(0, |l| l.index) as f64),
        );
        f.gauge(
            "skylark_controller_voters",
            "Voting members of the raft group in this controller's membership.",
            &[],
            one(m.membership_config.membership().voter_ids().count() as f64),
        );
        f.counter(
            "skylark_controller_requests_total",
            "Requests this controller served, by kind (raft RPCs, broker heartbeats, admin requests).",
            &["request"],
            REQUESTS.iter().zip(&self.counters.requests).map(|(r, n)| ([*r], n.load(Ordering::Relaxed))),
        );
        f.counter(
            "skylark_controller_leader_terms_total",
            "Raft terms in which this controller led and served a broker or election request (a term led without one is not counted).",
            &[],
            [(
                [] as [&str; 0],
                self.counters.leader_terms.load(Ordering::Relaxed),
            )],
        );
        let groups: Vec<_> = match self.state.read() {
            Ok(a) => a.state.groups.values().cloned().collect(),
            Err(p) => p.into_inner().state.groups.values().cloned().collect(),
        };
        f.gauge(
            "skylark_controller_broker_groups",
            "Broker groups (broker names) in the controller's state.",
            &[],
            one(groups.len() as f64),
        );
        f.gauge(
            "skylark_controller_master_epoch",
            "Master epoch of each broker group (bumped by every election).",
            &["broker_name"],
            groups
                .iter()
                .map(|g| ([g.broker_name.as_str()], g.master_epoch as f64)),
        );
        f.gauge(
            "skylark_controller_has_master",
            "1 while the broker group has a master.",
            &["broker_name"],
            groups.iter().map(|g| {
                (
                    [g.broker_name.as_str()],
                    f64::from(u8::from(g.master_id.is_some())),
                )
            }),
        );
        f.gauge(
            "skylark_controller_sync_state_set_size",
            "Brokers in each group's in-sync set, the master included.",
            &["broker_name"],
            groups
                .iter()
                .map(|g| ([g.broker_name.as_str()], g.sync_state_set.len() as f64)),
        );
        f.finish()
    }
}

impl super::Source for ControllerSource {
    /// A controller has no CommitLog and never answers `Busy`.
    fn feeds(&self) -> super::Feeds {
        super::Feeds::default()
    }

    fn collect(&self) -> LocalBoxFuture<'static, Vec<MetricFamily>> {
        let fams = self.families();
        Box::pin(async move { fams })
    }
}

/// `GET /metrics` on a thread of its own (an actix System); stops when
/// [`MetricsThread::stop`] is called or it is dropped.
pub struct MetricsThread {
    pub local_addr: SocketAddr,
    system: actix_rt::System,
    thread: Option<std::thread::JoinHandle<()>>,
    _source: Arc<dyn super::Source>,
}

impl MetricsThread {
    /// Stops the endpoint and waits for its thread.
    pub fn stop(&mut self) {
        self.system.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for MetricsThread {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Serves the process's metrics (with `source` among them) on
/// `host:port` from a new thread; an error if the port cannot be bound.
pub fn serve_on_own_thread(
    host: &str,
    port: u16,
    source: Arc<dyn super::Source>,
    log: Logger,
) -> std::io::Result<MetricsThread> {
    super::register_source(&source);
    let (tx, rx) = std::sync::mpsc::channel();
    let host = host.to_string();
    let thread = std::thread::Builder::new()
        .name("metrics-http".into())
        .spawn(move || {
            let sys = actix_rt::System::new();
            let started = sys.block_on(async {
                super::serve(&host, port, &log)
                    .await
                    .map(|m| (m, actix_rt::System::current()))
            });
            match started {
                Ok((server, handle)) => {
                    let _ = tx.send(Ok((server.local_addr, handle)));
                    let _ = sys.run();
                    drop(server);
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            }
        })?;
    let (local_addr, system) = rx
        .recv()
        .map_err(|_| std::io::Error::other("the metrics thread ended before it listened"))??;
    Ok(MetricsThread {
        local_addr,
        system,
        thread: Some(thread),
        _source: source,
    })
}
