//! NameServer bodies in RocketMQ's JSON shape: `TopicRouteData` (answer
//! to GET_ROUTEINFO_BY_TOPIC, 105) and `ClusterInfo` (GET_BROKER_CLUSTER_INFO,
//! 106), `TopicList` (GET_ALL_TOPIC_LIST_FROM_NAMESERVER, 206), built from Skylark's own route types.
//!
//! Field names are RocketMQ's (`queueDatas`, `brokerDatas`, `brokerAddrs`,
//! ...). Broker ids are map keys, written as standard JSON strings (`"0"`)
//! as RocketMQ ≥ 4.9.4 emits and every client parses.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// RocketMQ `TopicRouteData`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicRouteData {
    /// `brokerName:queueNums;...` of an ordered topic (KV config); Skylark
    /// leaves it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_topic_conf: Option<String>,
    pub queue_datas: Vec<QueueData>,
    pub broker_datas: Vec<BrokerData>,
    /// Filter servers per broker address: always empty.
    #[serde(default)]
    pub filter_server_table: BTreeMap<String, Vec<String>>,
}

/// RocketMQ `QueueData`: a topic's queues on one broker group.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueData {
    pub broker_name: String,
    pub read_queue_nums: u32,
    pub write_queue_nums: u32,
    /// `PERM_READ` (4) | `PERM_WRITE` (2) | `PERM_INHERIT` (1).
    pub perm: u32,
    /// `TopicSysFlag` bits (unit topics): always 0.
    #[serde(default)]
    pub topic_sys_flag: u32,
}

/// RocketMQ `BrokerData`: one master/slave group.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BrokerData {
    pub cluster: String,
    pub broker_name: String,
    /// Broker id (`"0"` = master) → `host:port`.
    pub broker_addrs: BTreeMap<String, String>,
    /// RocketMQ 5 slave-acting-master mode: off.
    #[serde(default)]
    pub enable_acting_master: bool,
}

/// RocketMQ `ClusterInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterInfo {
    /// Broker name → its group.
    pub broker_addr_table: BTreeMap<String, BrokerData>,
    /// Cluster name → broker names.
    pub cluster_addr_table: BTreeMap<String, Vec<String>>,
}

/// RocketMQ `TopicList` (GET_ALL_TOPIC_LIST_FROM_NAMESERVER, 206).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicList {
    pub topic_list: Vec<String>,
    /// Set by brokers answering for themselves; the NameServer leaves it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_addr: Option<String>,
}

impl From<&crate::TopicList> for TopicList {
    fn from(t: &crate::TopicList) -> Self {
        TopicList {
            topic_list: t.topics.clone(),
            broker_addr: None,
        }
    }
}

impl From<&crate::BrokerData> for BrokerData {
    fn from(b: &crate::BrokerData) -> Self {
        BrokerData {
            cluster: b.cluster.clone(),
            broker_name: b.broker_name.clone(),
            broker_addrs: b
                .addrs
                .iter()
                .map(|(id, a)| (id.to_string(), a.clone()))
                .collect(),
            enable_acting_master: false,
        }
    }
}

impl From<&crate::QueueData> for QueueData {
    fn from(q: &crate::QueueData) -> Self {
        QueueData {
            broker_name: q.broker_name.clone(),
            read_queue_nums: q.read_queues,
            write_queue_nums: q.write_queues,
            perm: q.perm.into(),
            topic_sys_flag: 0,
        }
    }
}

impl From<&crate::TopicRouteData> for TopicRouteData {
    fn from(r: &crate::TopicRouteData) -> Self {
        TopicRouteData {
            order_topic_conf: None,
            queue_datas: r.queues.iter().map(QueueData::from).collect(),
            broker_datas: r.brokers.iter().map(BrokerData::from).collect(),
            filter_server_table: BTreeMap::new(),
        }
    }
}

impl From<&crate::ClusterInfo> for ClusterInfo {
    fn from(c: &crate::ClusterInfo) -> Self {
        ClusterInfo {
            broker_addr_table: c
                .brokers
                .iter()
                .map(|(n, b)| (n.clone(), BrokerData::from(b)))
                .collect(),
            cluster_addr_table: c.clusters.clone(),
        }
    }
}

/// JSON text of a body (these types always serialize).
pub fn to_json<T: Serialize>(body: &T) -> Vec<u8> {
    serde_json::to_vec(body).unwrap_or_default()
}
