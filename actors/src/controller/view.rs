//! A broker's view of its role in controller mode, as the controller last
//! answered: written by the controller-mode driver ([`super::member`]),
//! read on the request path (refusing sends on a slave or below
//! `min_in_sync_replicas`) and by the Replicator (the epochs a joining
//! slave compares against, the epoch it must not serve below).

use std::collections::BTreeSet;
use std::sync::Mutex;

use tokio::sync::Notify;

use crate::message_store::epoch::EpochEntry;

/// The state itself (a snapshot is cloned out).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ViewState {
    /// This broker's identity in its group.
    pub broker_id: u64,
    /// Whether this broker runs as the master now.
    pub is_master: bool,
    /// The master epoch the broker runs under.
    pub master_epoch: u64,
    /// The current master's client address, as the controller answered.
    pub master_addr: Option<String>,
    /// The in-sync set the controller confirmed (the master included).
    pub in_sync: BTreeSet<u64>,
    /// This broker's epoch file (a copy).
    pub epochs: Vec<EpochEntry>,
    /// Set by a slave that found its CommitLog diverged from its master's:
    /// the broker must restart its actors after cutting the log there.
    pub truncate_to: Option<u64>,
}

/// Shared by the driver, the request path and the Replicator.
#[derive(Debug, Default)]
pub struct RoleView {
    state: Mutex<ViewState>,
    /// Woken when a slave asks for a relaunch (`truncate_to` set).
    pub relaunch: Notify,
}

impl RoleView {
    /// A view starting at `state`.
    pub fn new(state: ViewState) -> RoleView {
        RoleView {
            state: Mutex::new(state),
            relaunch: Notify::new(),
        }
    }

    /// A copy of the state.
    pub fn get(&self) -> ViewState {
        match self.state.lock() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Changes the state in place.
    pub fn update(&self, f: impl FnOnce(&mut ViewState)) {
        match self.state.lock() {
            Ok(mut s) => f(&mut s),
            Err(p) => f(&mut p.into_inner()),
        }
    }

    /// A slave asks to be relaunched with its CommitLog cut at `end`.
    pub fn request_truncation(&self, end: u64) {
        self.update(|s| s.truncate_to = Some(s.truncate_to.map_or(end, |t| t.min(end))));
        self.relaunch.notify_one();
    }
}
