//! `RegisterBroker` (50) and `UnregisterBroker` (51): brokers announcing
//! themselves and their topics to the NameServer.
//!
//! Mirrors RocketMQ's `RouteInfoManager.registerBroker`: every broker sends
//! its full topic configuration periodically (and on change, with a bumped
//! `data_version`); the NameServer answers with the master's addresses so a
//! slave knows whom to replicate from. A broker that stops registering is
//! dropped after a timeout.

use serde::{Deserialize, Serialize};

use crate::cmd::Ack;
use crate::command::{rpc, Command};

/// Permission bit: the topic (or broker) can be read (RocketMQ `PERM_READ`).
pub const PERM_READ: u8 = 1 << 2;
/// Permission bit: the topic (or broker) can be written (RocketMQ `PERM_WRITE`).
pub const PERM_WRITE: u8 = 1 << 1;
/// Permission bit: the topic is inherited (RocketMQ `PERM_INHERIT`).
pub const PERM_INHERIT: u8 = 1;

/// A topic's configuration on one broker.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct TopicConfig {
    /// Topic name (see [`crate::validate_topic_name`]).
    pub name: String,
    /// Number of queues consumers read.
    pub read_queues: u32,
    /// Number of queues producers write.
    pub write_queues: u32,
    /// [`PERM_READ`] | [`PERM_WRITE`] bits.
    pub perm: u8,
    /// Ordered topic (producers pick queues by key; consumers lock queues).
    pub order: bool,
}

impl TopicConfig {
    /// A readable and writable, unordered topic with `queues` read and write
    /// queues.
    pub fn new(name: impl Into<String>, queues: u32) -> Self {
        TopicConfig {
            name: name.into(),
            read_queues: queues,
            write_queues: queues,
            perm: PERM_READ | PERM_WRITE,
            order: false,
        }
    }

    /// Whether consumers may read.
    pub fn is_readable(&self) -> bool {
        self.perm & PERM_READ != 0
    }

    /// Whether producers may write.
    pub fn is_writable(&self) -> bool {
        self.perm & PERM_WRITE != 0
    }
}

/// A broker announcing itself to a NameServer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RegisterBrokerRequest {
    /// Cluster the broker belongs to.
    pub cluster_name: String,
    /// Broker name shared by a master and its slaves.
    pub broker_name: String,
    /// 0 = master, > 0 = slave.
    pub broker_id: u64,
    /// Address clients connect to (`host:port`).
    pub broker_addr: String,
    /// Address slaves replicate from, for a master.
    pub ha_addr: Option<String>,
    /// All topics hosted by the broker.
    pub topics: Vec<TopicConfig>,
    /// Bumped whenever `topics` changes.
    pub data_version: u64,
}

/// The NameServer's answer to a registration.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RegisterBrokerResponse {
    /// The master's client address (for a slave), if registered.
    pub master_addr: Option<String>,
    /// The master's replication address (for a slave), if registered.
    pub ha_master_addr: Option<String>,
}

/// A broker leaving (clean shutdown).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UnregisterBrokerRequest {
    /// Cluster the broker belongs to.
    pub cluster_name: String,
    /// Broker name.
    pub broker_name: String,
    /// 0 = master, > 0 = slave.
    pub broker_id: u64,
    /// Address clients connect to.
    pub broker_addr: String,
}

rpc!(RegisterBrokerRequest => RegisterBrokerResponse, Command::RegisterBroker);
rpc!(UnregisterBrokerRequest => Ack, Command::UnregisterBroker);
