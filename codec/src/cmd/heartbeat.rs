//! `Heartbeat` (40) and `UnregisterClient` (41): which clients are alive and
//! what they subscribe to.
//!
//! Mirrors RocketMQ's `ClientManageProcessor`: clients send a heartbeat every
//! few seconds listing their producer and consumer groups with their
//! subscriptions. The broker uses it to know a group's live members (for
//! rebalancing) and forgets a client that stops sending it or unregisters.

use serde::{Deserialize, Serialize};

use crate::cmd::Ack;
use crate::command::{rpc, Command};

/// Liveness and subscriptions of one client.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HeartbeatRequest {
    /// Stable id of the client instance.
    pub client_id: String,
    /// Producer groups this client belongs to.
    pub producer_groups: Vec<String>,
    /// Consumer groups this client belongs to.
    pub consumer_groups: Vec<ConsumerGroupData>,
    /// Client language (`RUST`), shown by the connection admin commands;
    /// empty from older clients.
    #[serde(default)]
    pub language: String,
    /// Client software version; empty from older clients.
    #[serde(default)]
    pub version: String,
}

/// One consumer group as seen by one of its members.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ConsumerGroupData {
    /// Group name.
    pub group: String,
    /// Pull or push consumer.
    pub consume_type: ConsumeType,
    /// Clustering (share queues) or broadcasting (every member reads all).
    pub message_model: MessageModel,
    /// Where a member starts when the group has no committed offset.
    pub consume_from: ConsumeFrom,
    /// Topics and filters.
    pub subscriptions: Vec<Subscription>,
}

/// How the consumer fetches messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum ConsumeType {
    /// The application pulls explicitly.
    Pull,
    /// The client pulls (long-polls) and pushes to a listener.
    #[default]
    Push,
}

/// How a group shares messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum MessageModel {
    /// Each message goes to one member; offsets are stored on the broker.
    #[default]
    Clustering,
    /// Each message goes to every member; offsets are stored locally.
    Broadcasting,
}

/// Where to start without a committed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum ConsumeFrom {
    /// The smallest stored offset.
    First,
    /// The end of the queue (only new messages).
    #[default]
    Last,
    /// The first message stored at or after this time (ms since the epoch).
    Timestamp(i64),
}

/// A subscription to one topic.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Subscription {
    /// Topic.
    pub topic: String,
    /// How `expression` is read.
    pub expression_type: ExpressionType,
    /// Tag expression (`"*"`, `"A || B"`) or SQL92 filter.
    pub expression: String,
}

/// Kind of subscription expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum ExpressionType {
    /// Tag expression (see [`crate::parse_tag_expression`]).
    #[default]
    Tag,
    /// SQL92 over message properties.
    Sql,
}

/// A client leaving a group (or all its groups).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UnregisterClientRequest {
    /// Stable id of the client instance.
    pub client_id: String,
    /// The producer group it leaves, if any.
    pub producer_group: Option<String>,
    /// The consumer group it leaves, if any.
    pub consumer_group: Option<String>,
}

rpc!(HeartbeatRequest => Ack, Command::Heartbeat);
rpc!(UnregisterClientRequest => Ack, Command::UnregisterClient);
