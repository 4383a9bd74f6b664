//! `RegisterBroker` (50) and `UnregisterBroker` (51): brokers announcing
//! themselves and their topics to the NameServer.
//!
//! Mirrors RocketMQ's `RouteInfoManager.registerBroker`: a broker sends its
//! full topic configuration with a `data_version`; the NameServer answers
//! with the master's addresses so a slave knows whom to replicate from. A
//! broker that stops registering is dropped after a timeout.
//!
//! Three kinds of registration share the command ([`RegisterKind`]):
//! * `Full` (the default, and all an older broker sends): every topic.
//! * `Delta`: the topics changed and deleted since `base_version`; applied
//!   only if the NameServer holds exactly that version of this broker,
//!   otherwise answered `need_full`.
//! * `Heartbeat` (RocketMQ 5's `BROKER_HEARTBEAT`): no topics, only
//!   liveness and the broker's `data_version`; answered `need_full` when the
//!   NameServer does not hold that version (unknown or expired broker, a
//!   restarted NameServer). A broker keeps heartbeats on their own
//!   connection, so liveness never waits behind a large topic payload.
//!
//! A NameServer that understands the last two says so in every answer
//! (`supports_delta`); a broker sends them only to such NameServers.

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
    /// Address of the broker's RocketMQ remoting port, if it serves one
    /// (the NameServer names it in routes for RocketMQ clients). Absent
    /// from older brokers.
    #[serde(default)]
    pub remoting_addr: Option<String>,
    /// All topics hosted by the broker (`Full`), the changed ones
    /// (`Delta`), none (`Heartbeat`).
    pub topics: Vec<TopicConfig>,
    /// Bumped whenever the broker's topics change.
    pub data_version: u64,
    /// What this registration carries.
    #[serde(default)]
    pub kind: RegisterKind,
    /// `Delta`: the version the NameServer must hold for it to apply.
    #[serde(default)]
    pub base_version: u64,
    /// `Delta`: topics deleted since `base_version`.
    #[serde(default)]
    pub deleted_topics: Vec<String>,
}

/// The kind of a [`RegisterBrokerRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum RegisterKind {
    /// Every topic: replaces what the NameServer holds for the broker.
    #[default]
    Full,
    /// Changes since `base_version`.
    Delta,
    /// Liveness and data version only.
    Heartbeat,
}

/// The NameServer's answer to a registration.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RegisterBrokerResponse {
    /// The master's client address (for a slave), if registered.
    pub master_addr: Option<String>,
    /// The master's replication address (for a slave), if registered.
    pub ha_master_addr: Option<String>,
    /// This NameServer accepts `Delta` and `Heartbeat` registrations.
    #[serde(default)]
    pub supports_delta: bool,
    /// The NameServer does not hold the broker's topics at the version sent
    /// (the delta or heartbeat changed nothing): send a `Full` one.
    #[serde(default)]
    pub need_full: bool,
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
