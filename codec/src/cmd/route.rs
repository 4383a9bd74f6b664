//! `GetRouteInfo` (52), `GetClusterInfo` (53) and `GetTopicList` (54): what
//! clients and tools ask the NameServer.
//!
//! Mirrors RocketMQ's `DefaultRequestProcessor`: a client asks where a topic's
//! queues live before producing or consuming and refreshes it periodically;
//! admin tools list clusters and topics.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::command::{rpc, Command};

/// Where a topic lives.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GetRouteInfoRequest {
    /// Topic.
    pub topic: String,
    /// When no live broker serves the topic, the NameServer holds the
    /// answer until one registers it, for at most this many milliseconds
    /// (capped at [`MAX_ROUTE_WAIT_MS`]), and only then answers
    /// `TopicNotFound`. 0 (the default, and what an older client sends by
    /// leaving it out): answer at once. An older NameServer ignores it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub wait_ms: u32,
}

/// The longest a NameServer holds a [`GetRouteInfoRequest`].
pub const MAX_ROUTE_WAIT_MS: u32 = 30_000;

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A topic's route: its queues per broker and the brokers' addresses.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TopicRouteData {
    /// Queue counts per broker name.
    pub queues: Vec<QueueData>,
    /// Addresses of those brokers.
    pub brokers: Vec<BrokerData>,
}

/// A topic's queues on one broker (master/slave set).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct QueueData {
    /// Broker name.
    pub broker_name: String,
    /// Number of readable queues.
    pub read_queues: u32,
    /// Number of writable queues.
    pub write_queues: u32,
    /// [`crate::PERM_READ`] | [`crate::PERM_WRITE`] bits.
    pub perm: u8,
    /// Ordered topic.
    pub order: bool,
}

/// A master/slave set of brokers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct BrokerData {
    /// Cluster name.
    pub cluster: String,
    /// Broker name.
    pub broker_name: String,
    /// Broker id → address; id 0 is the master.
    pub addrs: BTreeMap<u64, String>,
}

impl BrokerData {
    /// The master's address, if it is registered.
    pub fn master_addr(&self) -> Option<&str> {
        self.addrs.get(&0).map(String::as_str)
    }
}

/// List every cluster and broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GetClusterInfoRequest {}

/// Clusters and brokers known to the NameServer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ClusterInfo {
    /// Cluster name → broker names.
    pub clusters: BTreeMap<String, Vec<String>>,
    /// Broker name → its addresses.
    pub brokers: BTreeMap<String, BrokerData>,
}

/// List every topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GetTopicListRequest {}

/// Topics known to the NameServer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TopicList {
    /// Topic names.
    pub topics: Vec<String>,
}

rpc!(GetRouteInfoRequest => TopicRouteData, Command::GetRouteInfo);
rpc!(GetClusterInfoRequest => ClusterInfo, Command::GetClusterInfo);
rpc!(GetTopicListRequest => TopicList, Command::GetTopicList);
