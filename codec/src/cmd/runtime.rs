//! Broker runtime state for monitoring (the dashboard): disk usage against
//! the write-refusal ratio, and half (transactional) messages pending.

use serde::{Deserialize, Serialize};

use crate::command::{rpc, Command};

/// Admin → broker: its disk usage and undecided half messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GetBrokerRuntimeRequest {}

/// Answer to [`GetBrokerRuntimeRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct BrokerRuntime {
    /// Used share (0..=1) of the file system holding the data directory,
    /// counted like `df`.
    pub disk_usage_ratio: f64,
    /// Above this usage the broker refuses writes (`disk_hard_limit_ratio`).
    pub disk_hard_limit_ratio: f64,
    /// Whether writes are refused right now for lack of disk.
    pub disk_full: bool,
    /// Half messages neither committed nor rolled back yet.
    pub half_pending: u64,
}

rpc!(GetBrokerRuntimeRequest => BrokerRuntime, Command::GetBrokerRuntime);
