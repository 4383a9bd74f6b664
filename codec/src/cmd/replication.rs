//! `SyncMetadata` (110) and `GetReplicationStatus` (111): what a slave asks
//! its master besides the CommitLog stream, and what admin tools ask any
//! broker about replication.
//!
//! The CommitLog itself does not travel over this protocol but over the
//! master's HA port (see `skylark_actors::replicator`), a plain binary stream.
//!
//! * `SyncMetadata`: slave → master every 10 s. The master answers its topic
//!   configs and every consumer group's committed offsets; the slave makes
//!   them its own. `slave_offsets` carries the offsets consumers committed
//!   on the slave while the master was unreachable: the master merges them,
//!   keeping the larger offset of each queue, so those commits are not lost.
//!   The answer also carries the master's delayed-delivery progress
//!   ([`ScheduleProgress`]), so a slave promoted by hand does not deliver
//!   again what its master already delivered.
//! * `GetReplicationStatus`: any broker; its role, CommitLog end, and per
//!   slave (on a master) the offset acked, or (on a slave) its master and how
//!   far it has applied.

use serde::{Deserialize, Serialize};

use crate::cmd::broker::TopicConfig;
use crate::command::{rpc, Command};

/// One committed offset: group × topic × queue → next offset to consume.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct OffsetEntry {
    /// Consumer group.
    pub group: String,
    /// Topic.
    pub topic: String,
    /// Queue id.
    pub queue_id: u32,
    /// Next offset the group will consume.
    pub offset: u64,
}

/// Slave → master: give me your topics and offsets (and take mine).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SyncMetadataRequest {
    /// The asking slave's broker id.
    pub broker_id: u64,
    /// Offsets committed on the slave while the master was away; merged by
    /// the master keeping the larger offset. Empty on a routine sync.
    pub slave_offsets: Vec<OffsetEntry>,
}

/// The master's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MetadataSnapshot {
    /// Every topic config of the master.
    pub topics: Vec<TopicConfig>,
    /// Every committed offset of the master (after the merge).
    pub offsets: Vec<OffsetEntry>,
    /// The master Scheduler's progress; `None` from a master that did not
    /// send it.
    #[serde(default)]
    pub schedule: Option<ScheduleProgress>,
}

/// How far a master's Scheduler has delivered delayed messages.
///
/// Every delivery it accounts for was appended to the master's CommitLog
/// before `commit_log_end`: a slave applies it only once its own CommitLog
/// reaches that offset, so it never counts as delivered a copy it does not
/// hold.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ScheduleProgress {
    /// `(level, next schedule-queue offset to deliver)`, levels from 1.
    pub level_offsets: Vec<(u32, u64)>,
    /// Timer-topic queue offset up to which records were indexed.
    pub timer_indexed_offset: u64,
    /// Delivery cursor: every timer entry ordered at or before
    /// `(cursor_at, cursor_phys)` (deliver time, then physical offset) was
    /// delivered.
    pub timer_cursor_at: i64,
    /// See `timer_cursor_at`.
    pub timer_cursor_phys: u64,
    /// The master's CommitLog end when the progress was taken.
    pub commit_log_end: u64,
}

/// Ask a broker about its replication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GetReplicationStatusRequest {}

/// A slave as its master sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SlaveStatus {
    /// The slave's address on the HA connection (an ephemeral port).
    pub addr: String,
    /// Highest CommitLog offset the slave acked.
    pub acked_offset: u64,
    /// The slave's broker id, as it named itself on the HA connection
    /// (absent from a slave, or a master, that predates names).
    #[serde(default)]
    pub broker_id: Option<u64>,
    /// The slave's broker name, as it named itself.
    #[serde(default)]
    pub broker_name: Option<String>,
    /// The slave's advertised client address, as it named itself.
    #[serde(default)]
    pub broker_addr: Option<String>,
}

/// A broker's replication state.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ReplicationStatus {
    /// Broker group name.
    pub broker_name: String,
    /// 0 = master.
    pub broker_id: u64,
    /// `ASYNC_MASTER`, `SYNC_MASTER` or `SLAVE`.
    pub role: String,
    /// CommitLog end on this broker.
    pub max_offset: u64,
    /// Master: its HA address.
    pub ha_addr: Option<String>,
    /// Master: its connected slaves.
    pub slaves: Vec<SlaveStatus>,
    /// Slave: the master's HA address it replicates from, if known.
    pub master_ha_addr: Option<String>,
    /// Slave: whether the HA connection is up.
    pub master_connected: bool,
    /// Slave: the master's CommitLog end as last reported to it.
    pub master_max_offset: u64,
}

rpc!(SyncMetadataRequest => MetadataSnapshot, Command::SyncMetadata);
rpc!(GetReplicationStatusRequest => ReplicationStatus, Command::GetReplicationStatus);

#[cfg(test)]
mod tests {
    use super::*;

    /// A master that predates [`ScheduleProgress`] answers without it.
    #[test]
    fn snapshot_without_schedule_decodes() {
        #[derive(Serialize)]
        struct Old {
            topics: Vec<TopicConfig>,
            offsets: Vec<OffsetEntry>,
        }
        let bytes = rmp_serde::to_vec_named(&Old {
            topics: vec![TopicConfig::new("T", 4)],
            offsets: Vec::new(),
        })
        .unwrap();
        let snap: MetadataSnapshot = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(snap.topics.len(), 1);
        assert_eq!(snap.schedule, None);
    }
}
