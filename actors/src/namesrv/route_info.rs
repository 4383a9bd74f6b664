//! The NameServer's route table, as plain data (RocketMQ's RouteInfoManager).
//!
//! cluster → broker names, broker name → {broker id → address}, topic →
//! queue data per broker name, and the liveness of every broker address.
//! Only masters (broker id 0) publish topic queue data; a broker name's
//! queue data goes away when its last address does, so while a master is
//! down its slave still appears in routes and can serve reads.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use skylark_codec::{
    BrokerData, ClusterInfo, QueueData, RegisterBrokerRequest, RegisterBrokerResponse, TopicList,
    TopicRouteData, UnregisterBrokerRequest,
};

#[derive(Debug, Clone)]
struct Live {
    last_update: Instant,
    broker_name: String,
    broker_id: u64,
    ha_addr: Option<String>,
}

/// Everything a NameServer knows. Not shared with other NameServers.
#[derive(Debug, Default)]
pub struct RouteInfo {
    clusters: BTreeMap<String, BTreeSet<String>>,
    brokers: BTreeMap<String, BrokerData>,
    topics: BTreeMap<String, BTreeMap<String, QueueData>>,
    live: HashMap<String, Live>,
}

impl RouteInfo {
    /// Records a (re-)registration; returns the group's master addresses.
    pub fn register(&mut self, req: RegisterBrokerRequest, now: Instant) -> RegisterBrokerResponse {
        self.clusters
            .entry(req.cluster_name.clone())
            .or_default()
            .insert(req.broker_name.clone());
        let data = self
            .brokers
            .entry(req.broker_name.clone())
            .or_insert_with(|| BrokerData {
                cluster: req.cluster_name.clone(),
                broker_name: req.broker_name.clone(),
                addrs: BTreeMap::new(),
            });
        data.cluster = req.cluster_name.clone();
        // One address per broker id: a broker that moved replaces its old address.
        if let Some(old) = data.addrs.insert(req.broker_id, req.broker_addr.clone()) {
            if old != req.broker_addr {
                self.live.remove(&old);
            }
        }
        // The same address registered under another id (role change) leaves its old slot.
        data.addrs
            .retain(|id, a| *id == req.broker_id || *a != req.broker_addr);
        if req.broker_id == 0 {
            let listed: BTreeSet<&str> = req.topics.iter().map(|t| t.name.as_str()).collect();
            for (topic, per_broker) in self.topics.iter_mut() {
                if !listed.contains(topic.as_str()) {
                    per_broker.remove(&req.broker_name);
                }
            }
            for t in &req.topics {
                self.topics.entry(t.name.clone()).or_default().insert(
                    req.broker_name.clone(),
                    QueueData {
                        broker_name: req.broker_name.clone(),
                        read_queues: t.read_queues,
                        write_queues: t.write_queues,
                        perm: t.perm,
                        order: t.order,
                    },
                );
            }
            self.topics.retain(|_, per_broker| !per_broker.is_empty());
        }
        self.live.insert(
            req.broker_addr.clone(),
            Live {
                last_update: now,
                broker_name: req.broker_name.clone(),
                broker_id: req.broker_id,
                ha_addr: req.ha_addr.clone(),
            },
        );
        let master_addr = self
            .brokers
            .get(&req.broker_name)
            .and_then(|b| b.addrs.get(&0))
            .cloned();
        let ha_master_addr = master_addr
            .as_ref()
            .and_then(|m| self.live.get(m))
            .and_then(|l| l.ha_addr.clone());
        RegisterBrokerResponse {
            master_addr,
            ha_master_addr,
        }
    }

    /// Removes one broker address (clean shutdown).
    pub fn unregister(&mut self, req: &UnregisterBrokerRequest) {
        self.remove_addr(&req.broker_addr);
    }

    /// Removes brokers silent for longer than `expire`; returns their addresses.
    pub fn scan_expired(&mut self, now: Instant, expire: Duration) -> Vec<String> {
        let dead: Vec<String> = self
            .live
            .iter()
            .filter(|(_, l)| now.saturating_duration_since(l.last_update) > expire)
            .map(|(a, _)| a.clone())
            .collect();
        for a in &dead {
            self.remove_addr(a);
        }
        dead
    }

    fn remove_addr(&mut self, addr: &str) {
        let Some(live) = self.live.remove(addr) else {
            return;
        };
        let name = live.broker_name;
        let empty = match self.brokers.get_mut(&name) {
            Some(b) => {
                b.addrs
                    .retain(|id, a| !(*id == live.broker_id && a == addr));
                b.addrs.is_empty()
            }
            None => false,
        };
        if empty {
            if let Some(b) = self.brokers.remove(&name) {
                if let Some(set) = self.clusters.get_mut(&b.cluster) {
                    set.remove(&name);
                    if set.is_empty() {
                        self.clusters.remove(&b.cluster);
                    }
                }
            }
            for per_broker in self.topics.values_mut() {
                per_broker.remove(&name);
            }
            self.topics.retain(|_, per_broker| !per_broker.is_empty());
        }
    }

    /// The route of `topic`, if any live broker serves it.
    pub fn route(&self, topic: &str) -> Option<TopicRouteData> {
        let per_broker = self.topics.get(topic)?;
        let queues: Vec<QueueData> = per_broker.values().cloned().collect();
        let brokers = per_broker
            .keys()
            .filter_map(|name| self.brokers.get(name).cloned())
            .collect();
        Some(TopicRouteData { queues, brokers })
    }

    /// The members (broker id → address) of broker group `name`.
    pub fn group_members(&self, name: &str) -> Option<&BTreeMap<u64, String>> {
        self.brokers.get(name).map(|b| &b.addrs)
    }

    /// Every cluster and broker group.
    pub fn cluster_info(&self) -> ClusterInfo {
        ClusterInfo {
            clusters: self
                .clusters
                .iter()
                .map(|(c, names)| (c.clone(), names.iter().cloned().collect()))
                .collect(),
            brokers: self.brokers.clone(),
        }
    }

    /// Every topic some live master serves.
    pub fn topic_list(&self) -> TopicList {
        TopicList {
            topics: self.topics.keys().cloned().collect(),
        }
    }

    /// Number of live broker addresses.
    pub fn live_brokers(&self) -> usize {
        self.live.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skylark_codec::TopicConfig;

    fn reg(name: &str, id: u64, addr: &str, topics: &[&str]) -> RegisterBrokerRequest {
        RegisterBrokerRequest {
            cluster_name: "c".into(),
            broker_name: name.into(),
            broker_id: id,
            broker_addr: addr.into(),
            ha_addr: None,
            topics: topics.iter().map(|t| TopicConfig::new(*t, 4)).collect(),
            data_version: 1,
        }
    }

    #[test]
    fn route_lists_every_broker_serving_a_topic() {
        let mut r = RouteInfo::default();
        let now = Instant::now();
        r.register(reg("a", 0, "h:1", &["T", "U"]), now);
        r.register(reg("b", 0, "h:2", &["T"]), now);
        r.register(reg("a", 1, "h:3", &[]), now);
        let route = r.route("T").unwrap();
        assert_eq!(route.queues.len(), 2);
        let a = route.brokers.iter().find(|b| b.broker_name == "a").unwrap();
        assert_eq!(a.addrs.get(&0).map(String::as_str), Some("h:1"));
        assert_eq!(a.addrs.get(&1).map(String::as_str), Some("h:3"));
        assert_eq!(r.route("U").unwrap().queues.len(), 1);
        assert!(r.route("V").is_none());
        assert_eq!(
            r.topic_list().topics,
            vec!["T".to_string(), "U".to_string()]
        );
    }

    #[test]
    fn expired_master_leaves_slave_in_route() {
        let mut r = RouteInfo::default();
        let t0 = Instant::now();
        r.register(reg("a", 0, "h:1", &["T"]), t0);
        r.register(reg("a", 1, "h:3", &[]), t0 + Duration::from_secs(100));
        let dead = r.scan_expired(t0 + Duration::from_secs(130), Duration::from_secs(120));
        assert_eq!(dead, vec!["h:1".to_string()]);
        let route = r.route("T").unwrap();
        assert_eq!(route.brokers[0].addrs.len(), 1);
        assert!(route.brokers[0].addrs.contains_key(&1));
        r.scan_expired(t0 + Duration::from_secs(300), Duration::from_secs(120));
        assert!(r.route("T").is_none());
        assert!(r.cluster_info().clusters.is_empty());
    }

    #[test]
    fn reregistration_replaces_topic_set() {
        let mut r = RouteInfo::default();
        let now = Instant::now();
        r.register(reg("a", 0, "h:1", &["T", "U"]), now);
        r.register(reg("a", 0, "h:1", &["T"]), now);
        assert!(r.route("U").is_none());
        r.unregister(&UnregisterBrokerRequest {
            cluster_name: "c".into(),
            broker_name: "a".into(),
            broker_id: 0,
            broker_addr: "h:1".into(),
        });
        assert!(r.route("T").is_none());
        assert_eq!(r.live_brokers(), 0);
    }

    proptest::proptest! {
        /// Whatever the order of registrations, unregistrations and expiry
        /// scans of a fixed cluster (each address always with its own id),
        /// the table never files an address under another broker's id.
        #[test]
        fn an_address_is_only_ever_listed_under_its_own_id(
            ops in proptest::collection::vec((0usize..6, 0u64..200), 1..60)
        ) {
            let members = [("a", 0, "h:11"), ("a", 1, "h:21"), ("b", 0, "h:31"), ("b", 1, "h:41")];
            let mut r = RouteInfo::default();
            let t0 = Instant::now();
            for (op, secs) in ops {
                let now = t0 + Duration::from_secs(secs);
                match op {
                    0..=3 => {
                        let (name, id, addr) = members[op];
                        let topics: &[&str] = if id == 0 { &["T"] } else { &[] };
                        r.register(reg(name, id, addr, topics), now);
                    }
                    4 => {
                        r.scan_expired(now, Duration::from_secs(120));
                    }
                    _ => {
                        let (name, id, addr) = members[(secs % 4) as usize];
                        r.unregister(&UnregisterBrokerRequest {
                            cluster_name: "c".into(),
                            broker_name: name.into(),
                            broker_id: id,
                            broker_addr: addr.into(),
                        });
                    }
                }
                for b in r.cluster_info().brokers.values() {
                    for (id, addr) in &b.addrs {
                        let ok = members
                            .iter()
                            .any(|(n, i, a)| *n == b.broker_name && i == id && a == addr);
                        proptest::prop_assert!(ok, "{} lists {} under id {}", b.broker_name, addr, id);
                    }
                }
            }
        }
    }
}
