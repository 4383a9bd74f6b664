//! Operator commands (75-79): subscription-group config, client
//! connections and the broker's runtime status.
//!
//! Mirrors RocketMQ's `AdminBrokerProcessor` for `updateSubGroup` /
//! `SubscriptionGroupConfig` (stored by the broker in
//! `config/subscriptionGroup.json`), `consumerConnection` /
//! `producerConnection` (what the broker knows of clients from their
//! heartbeats) and `brokerStatus` (its runtime figures, with the store's
//! recovery report).

use serde::{Deserialize, Serialize};

use crate::cmd::heartbeat::{ConsumeType, MessageModel, Subscription};
use crate::cmd::Ack;
use crate::command::{rpc, Command};

/// A consumer group's settings on a broker (RocketMQ
/// `SubscriptionGroupConfig`); a group without a stored one has the
/// defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionGroupConfig {
    /// Consumer group.
    pub group: String,
    /// Members may pull; when off, pulls are refused with
    /// `PermissionDenied` (default on).
    pub consume_enable: bool,
    /// Members may consume in broadcasting mode; when off, their pulls are
    /// refused with `PermissionDenied` (default on).
    pub consume_broadcast_enable: bool,
    /// Deliveries before a failed message goes to `%DLQ%<group>`. `None`:
    /// what the consumer asks for (16 by default); set, it wins over the
    /// consumer's value.
    pub retry_max_times: Option<u32>,
}

impl SubscriptionGroupConfig {
    /// The defaults for `group`.
    pub fn new(group: impl Into<String>) -> Self {
        SubscriptionGroupConfig {
            group: group.into(),
            consume_enable: true,
            consume_broadcast_enable: true,
            retry_max_times: None,
        }
    }
}

impl Default for SubscriptionGroupConfig {
    fn default() -> Self {
        SubscriptionGroupConfig::new("")
    }
}

/// Store a group's settings (replacing what the broker had).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UpdateSubscriptionGroupRequest {
    /// The new settings.
    pub config: SubscriptionGroupConfig,
}

/// A group's settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GetSubscriptionGroupRequest {
    /// Consumer group.
    pub group: String,
}

/// Answer to [`GetSubscriptionGroupRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SubscriptionGroupInfo {
    /// The settings in force (the defaults when none is stored).
    pub config: SubscriptionGroupConfig,
    /// Whether the broker has settings stored for the group.
    pub stored: bool,
}

/// The live members of a consumer group and what they told the broker.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GetConsumerConnectionsRequest {
    /// Consumer group.
    pub group: String,
}

/// The live clients of a producer group.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GetProducerConnectionsRequest {
    /// Producer group.
    pub group: String,
}

/// One client connection as the broker knows it from its heartbeats.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ClientConnection {
    /// The client's id.
    pub client_id: String,
    /// The client's address as the broker sees it (`host:port`).
    pub addr: String,
    /// Client language (`RUST` for this client).
    pub language: String,
    /// Client software version.
    pub version: String,
    /// Milliseconds since the epoch of its last heartbeat.
    pub last_heartbeat_ms: i64,
}

/// Answer to [`GetConsumerConnectionsRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ConsumerConnections {
    /// One per live member, sorted by client id.
    pub connections: Vec<ConsumerConnection>,
}

/// A live consumer and its subscriptions.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ConsumerConnection {
    /// Who and where.
    pub connection: ClientConnection,
    /// Pull or push.
    pub consume_type: ConsumeType,
    /// Clustering or broadcasting.
    pub message_model: MessageModel,
    /// Its subscriptions, as in its last heartbeat.
    pub subscriptions: Vec<Subscription>,
}

/// Answer to [`GetProducerConnectionsRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ProducerConnections {
    /// One per live client of the group, sorted by client id.
    pub connections: Vec<ClientConnection>,
}

/// The broker's runtime figures (RocketMQ `brokerStatus`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GetBrokerRuntimeStatusRequest {}

/// Answer to [`GetBrokerRuntimeStatusRequest`]: `(key, value)` text in a
/// stable order, as RocketMQ's `brokerStatus` prints its table (keys such as
/// `put_tps`, `get_found_tps`, `commit_log_disk_ratio`,
/// `flush_latency_max_us`, `recovery_damaged_records`; see
/// docs/operations.md).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BrokerRuntimeStatus {
    /// Every figure.
    pub table: Vec<(String, String)>,
}

rpc!(UpdateSubscriptionGroupRequest => Ack, Command::UpdateSubscriptionGroup);
rpc!(GetSubscriptionGroupRequest => SubscriptionGroupInfo, Command::GetSubscriptionGroup);
rpc!(GetConsumerConnectionsRequest => ConsumerConnections, Command::GetConsumerConnections);
rpc!(GetProducerConnectionsRequest => ProducerConnections, Command::GetProducerConnections);
rpc!(GetBrokerRuntimeStatusRequest => BrokerRuntimeStatus, Command::GetBrokerRuntimeStatus);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_defaults() {
        let c = SubscriptionGroupConfig {
            retry_max_times: Some(3),
            ..SubscriptionGroupConfig::new("g")
        };
        let bytes =
            rmp_serde::to_vec_named(&UpdateSubscriptionGroupRequest { config: c.clone() }).unwrap();
        let back: UpdateSubscriptionGroupRequest = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back.config, c);
        let d = SubscriptionGroupConfig::new("g");
        assert!(d.consume_enable && d.consume_broadcast_enable && d.retry_max_times.is_none());
    }
}
