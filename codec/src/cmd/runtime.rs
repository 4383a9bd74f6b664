//! Broker runtime state for monitoring (the dashboard): disk usage against
//! the write-refusal ratio, half (transactional) messages pending, and
//! damaged records met.

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
    /// Damaged CommitLog records known since the broker started (skipped by
    /// recovery or refused by a read, each counted once). Absent from a
    /// broker older than this field: 0.
    #[serde(default)]
    pub damaged_records: u64,
}

rpc!(GetBrokerRuntimeRequest => BrokerRuntime, Command::GetBrokerRuntime);

#[cfg(test)]
mod tests {
    use super::*;

    /// The answer of a broker from before `damaged_records` decodes, as 0.
    #[test]
    fn a_runtime_answer_without_damaged_records_decodes() {
        #[derive(Serialize)]
        struct Old {
            disk_usage_ratio: f64,
            disk_hard_limit_ratio: f64,
            disk_full: bool,
            half_pending: u64,
        }
        let old = Old {
            disk_usage_ratio: 0.5,
            disk_hard_limit_ratio: 0.9,
            disk_full: false,
            half_pending: 3,
        };
        let r: BrokerRuntime =
            rmp_serde::from_slice(&rmp_serde::to_vec_named(&old).unwrap()).unwrap();
        assert_eq!((r.half_pending, r.damaged_records), (3, 0));
    }
}
