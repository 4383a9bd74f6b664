//! `EndTransaction` (100) and `CheckTransactionState` (101): transactional
//! (half) messages.
//!
//! Mirrors RocketMQ's `EndTransactionProcessor` and the broker's check-back:
//! a producer sends a message carrying the property
//! [`PROPERTY_TRANSACTION_PREPARED`]` = "true"` (a *half* message, stored
//! where consumers do not see it), runs its local transaction, then tells the
//! broker the outcome with [`EndTransactionRequest`]. When no outcome comes
//! in time, the broker pushes a [`CheckTransactionStateRequest`] (frame kind
//! `Push`) to a live producer of the same group, which answers with another
//! [`EndTransactionRequest`] (`from_check = true`).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::cmd::Ack;
use crate::command::{rpc, Command};

pub use crate::message::{
    PROPERTY_PRODUCER_GROUP, PROPERTY_REAL_QUEUE_ID, PROPERTY_REAL_TOPIC, PROPERTY_TRANSACTION_ID,
    PROPERTY_TRANSACTION_PREPARED,
};

/// A local transaction's outcome, as the producer reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum TransactionState {
    /// Deliver the half message to its topic.
    Commit,
    /// Drop the half message.
    Rollback,
    /// Not decided yet: the broker will ask again (check-back).
    #[default]
    Unknown,
}

/// The outcome of a half message's local transaction.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EndTransactionRequest {
    /// The producer group that sent the half message.
    pub producer_group: String,
    /// The producer's transaction id.
    pub transaction_id: String,
    /// The half message's id ([`crate::MessageId`] hex, as in its `SendResult`).
    pub msg_id: String,
    /// The half message's offset in the half queue (its `SendResult.queue_offset`).
    pub queue_offset: u64,
    /// Commit, rollback or still unknown.
    pub state: TransactionState,
    /// Whether this answers a broker check-back.
    pub from_check: bool,
}

/// Broker → producer (a `Push` frame): what is the state of this half message?
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CheckTransactionStateRequest {
    /// The group the half message was sent by.
    pub producer_group: String,
    /// The producer's transaction id.
    pub transaction_id: String,
    /// The half message's id.
    pub msg_id: String,
    /// The half message's offset in the half queue.
    pub queue_offset: u64,
    /// How many times the broker has asked, this one included.
    pub check_times: u32,
    /// The stored half record (decode like a pull answer's records).
    pub record: Bytes,
}

rpc!(EndTransactionRequest => Ack, Command::EndTransaction);
rpc!(CheckTransactionStateRequest => Ack, Command::CheckTransactionState);
