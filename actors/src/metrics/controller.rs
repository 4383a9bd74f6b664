//! A controller's scrape (issue 14): its raft role and term, what it has
//! applied, and per broker group the master, its epoch and the in-sync
//! set — read from openraft's metrics and the applied state, both readable
//! from any thread without asking the node.
//!
//! The controller runs on a plain tokio runtime, while `GET /metrics`
//! ([`super::serve`]) is an actix-web server that needs an actix System:
//! [`serve_on_own_thread`] gives it one on a thread of its own, stopped
//! with the controller.

use std::net::SocketAddr;
use std::sync::Arc;

use futures::future::LocalBoxFuture;
use openraft::{Raft, ServerState};
use prometheus::proto::MetricFamily;
use slog::Logger;

use super::families::Families;
use crate::controller::state_machine::SharedState;
use crate::controller::types::{NodeId, TypeConfig};

/// A controller as a [`super::Source`].
pub struct ControllerSource {
    raft: Raft<TypeConfig>,
    state: SharedState,
    node_id: String,
}

impl ControllerSource {
    pub fn new(raft: Raft<TypeConfig>, state: SharedState, node_id: NodeId) -> ControllerSource {
        ControllerSource {
            raft,
            state,
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
            "skylark_controller_last_applied_index",
            "Index of the last raft log entry applied to the state machine.",
            &[],
            one(m.last_applied.map_or(0, |l| l.index) as f64),
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
