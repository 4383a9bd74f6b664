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
}

/// Ask a broker about its replication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GetReplicationStatusRequest {}

/// A slave as its master sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SlaveStatus {
    /// The slave's address on the HA connection.
    pub addr: String,
    /// Highest CommitLog offset the slave acked.
    pub acked_offset: u64,
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
