//! `QueryConsumerOffset` (30), `UpdateConsumerOffset` (31) and
//! `GetQueueOffsets` (32): where a consumer group is, and what a queue holds.
//!
//! Mirrors RocketMQ's `ConsumerManageProcessor`: in clustering mode the broker
//! stores each group's committed offset per queue; consumers read it when a
//! queue is assigned to them and commit as they progress.

use serde::{Deserialize, Serialize};

use crate::cmd::Ack;
use crate::command::{rpc, Command};

/// Read a group's committed offset for a queue.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct QueryOffsetRequest {
    /// Consumer group.
    pub group: String,
    /// Topic.
    pub topic: String,
    /// Queue.
    pub queue_id: u32,
}

/// A group's committed offset.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct QueryOffsetResponse {
    /// The committed offset; `None` if the group never committed on this
    /// queue (the consumer then applies its `ConsumeFrom` policy).
    pub offset: Option<u64>,
}

/// Commit a group's offset for a queue.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CommitOffsetRequest {
    /// Consumer group.
    pub group: String,
    /// Topic.
    pub topic: String,
    /// Queue.
    pub queue_id: u32,
    /// Next offset to consume.
    pub offset: u64,
}

/// Read a queue's offset range.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GetQueueOffsetsRequest {
    /// Topic.
    pub topic: String,
    /// Queue.
    pub queue_id: u32,
}

/// A queue's offset range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct QueueOffsets {
    /// Smallest offset still stored.
    pub min_offset: u64,
    /// Offset after the last message (= the next message's offset).
    pub max_offset: u64,
}

rpc!(QueryOffsetRequest => QueryOffsetResponse, Command::QueryConsumerOffset);
rpc!(CommitOffsetRequest => Ack, Command::UpdateConsumerOffset);
rpc!(GetQueueOffsetsRequest => QueueOffsets, Command::GetQueueOffsets);
