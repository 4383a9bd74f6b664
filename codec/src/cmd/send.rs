//! `SendMessage` (10) and `SendBatch` (11): producers storing messages.
//!
//! Mirrors RocketMQ's `SendMessageProcessor`: the producer names the topic and
//! optionally a queue; the broker appends to its commit log and answers with
//! the message id and queue offset. A batch goes to a single queue and is
//! stored together (one response entry per message, in order).

use serde::{Deserialize, Serialize};

use crate::command::{rpc, Command};
use crate::message::MessageData;

/// Store one message.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SendRequest {
    /// The producer's group (used for transactions and statistics).
    pub producer_group: String,
    /// Destination topic.
    pub topic: String,
    /// Destination queue; -1 = the broker picks one (other negatives are
    /// refused `BadRequest`).
    pub queue_id: i32,
    /// The message.
    pub message: MessageData,
}

/// Outcome of a stored message. Anything but `SendOk` still means the
/// message was written to the commit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum SendStatus {
    /// Stored (and flushed / replicated as configured).
    #[default]
    SendOk,
    /// Stored, but the synchronous disk flush timed out.
    FlushDiskTimeout,
    /// Stored, but synchronous replication to the slave timed out.
    FlushSlaveTimeout,
    /// Stored, but no slave was available for synchronous replication.
    SlaveNotAvailable,
}

/// Where a message was stored.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SendResult {
    /// Durability outcome.
    pub status: SendStatus,
    /// The message id ([`crate::MessageId::to_hex`]).
    pub msg_id: String,
    /// The queue the message went to.
    pub queue_id: u32,
    /// Its logical offset in that queue.
    pub queue_offset: u64,
}

/// Store several messages in one queue.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SendBatchRequest {
    /// The producer's group.
    pub producer_group: String,
    /// Destination topic.
    pub topic: String,
    /// Destination queue; -1 = the broker picks one for the batch (other
    /// negatives are refused `BadRequest`).
    pub queue_id: i32,
    /// The messages, stored in this order.
    pub messages: Vec<MessageData>,
}

/// One result per message of a batch, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SendBatchResponse {
    /// Results, in the order of the request's messages.
    pub results: Vec<SendResult>,
}

rpc!(SendRequest => SendResult, Command::SendMessage);
rpc!(SendBatchRequest => SendBatchResponse, Command::SendBatch);
