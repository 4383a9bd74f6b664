//! The NameServer's route table, as plain data (RocketMQ's RouteInfoManager).
//!
//! cluster → broker names, broker name → {broker id → address}, topic →
//! queue data per broker name, and the liveness of every broker address.
//! Masters (broker id 0) publish topic queue data; a broker name's queue
//! data goes away when its last address does, so while a master is down its
//! slave still appears in routes and can serve reads. A slave's topics fill
//! in only while its group has no registered master, and only for topics the
//! group has no queue data for: a slave that learned a topic from replicated
//! records after its master died (or after this NameServer restarted) still
//! gets a route for it, and a live master stays the only authority.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use skylark_codec::cmd::broker::RegisterKind;
use skylark_codec::{
    BrokerData, ClusterInfo, QueueData, RegisterBrokerRequest, RegisterBrokerResponse, TopicConfig,
    TopicList, TopicRouteData, UnregisterBrokerRequest,
};

#[derive(Debug, Clone)]
struct Live {
    last_update: Instant,
    broker_name: String,
    broker_id: u64,
    ha_addr: Option<String>,
    /// Its RocketMQ remoting address, if it serves one.
    remoting_addr: Option<String>,
    /// The broker's topics as of this version are in the table.
    data_version: u64,
}

fn queue_data(broker_name: &str, t: &TopicConfig) -> QueueData {
    QueueData {
        broker_name: broker_name.to_string(),
        read_queues: t.read_queues,
        write_queues: t.write_queues,
        perm: t.perm,
        order: t.order,
    }
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
    /// Records a registration (full, delta or heartbeat: see
    /// [`RegisterKind`]); answers the group's master addresses, and
    /// `need_full` when a delta or heartbeat does not match the version held.
    pub fn register(&mut self, req: RegisterBrokerRequest, now: Instant) -> RegisterBrokerResponse {
        // A live address displaced from its slot (another registered under
        // its name and id since) is asked for a full registration, which
        // takes the slot back: a displacer that died without unregistering
        // must not keep the routes until it expires.
        let displaced = self
            .brokers
            .get(&req.broker_name)
            .and_then(|b| b.addrs.get(&req.broker_id))
            .is_some_and(|a| *a != req.broker_addr);
        let held = self
            .live
            .get_mut(&req.broker_addr)
            .filter(|l| l.broker_name == req.broker_name && l.broker_id == req.broker_id)
            .filter(|_| !displaced);
        let matches = match req.kind {
            RegisterKind::Full => true,
            RegisterKind::Delta => held
                .as_ref()
                .is_some_and(|l| l.data_version == req.base_version),
            RegisterKind::Heartbeat => held
                .as_ref()
                .is_some_and(|l| l.data_version == req.data_version),
        };
        if !matches || req.kind == RegisterKind::Heartbeat {
            // A known broker is alive whatever its version; an unknown one
            // becomes known only by a full registration.
            if let Some(l) = held {
                l.last_update = now;
            }
            return self.answer(&req.broker_name, !matches);
        }
        self.add_member(&req);
        let has_master = self
            .brokers
            .get(&req.broker_name)
            .is_some_and(|b| b.addrs.contains_key(&0));
        match (req.broker_id == 0, req.kind) {
            (true, RegisterKind::Full) => self.replace_topics(&req),
            (true, _) => {
                for t in &req.topics {
                    self.topics
                        .entry(t.name.clone())
                        .or_default()
                        .insert(req.broker_name.clone(), queue_data(&req.broker_name, t));
                }
                for name in &req.deleted_topics {
                    if let Some(per_broker) = self.topics.get_mut(name) {
                        per_broker.remove(&req.broker_name);
                        if per_broker.is_empty() {
                            self.topics.remove(name);
                        }
                    }
                }
            }
            (false, _) if !has_master => {
                for t in &req.topics {
                    self.topics
                        .entry(t.name.clone())
                        .or_default()
                        .entry(req.broker_name.clone())
                        .or_insert_with(|| queue_data(&req.broker_name, t));
                }
            }
            (false, _) => {}
        }
        self.live.insert(
            req.broker_addr.clone(),
            Live {
                last_update: now,
                broker_name: req.broker_name.clone(),
                broker_id: req.broker_id,
                ha_addr: req.ha_addr.clone(),
                remoting_addr: req.remoting_addr.clone(),
                data_version: req.data_version,
            },
        );
        self.answer(&req.broker_name, false)
    }

    /// Files the registering address under its group and id.
    fn add_member(&mut self, req: &RegisterBrokerRequest) {
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
        // One address per broker id: a broker that moved, or a failover's
        // new master, takes the slot. The address it displaced stays live
        // (until it expires or unregisters) and gets the slot back if the
        // newcomer leaves first: a stale master that registers once more
        // before it learns of the new epoch, then unregisters, must not
        // leave its group without a master until the real one's next
        // registration.
        data.addrs.insert(req.broker_id, req.broker_addr.clone());
        // The same address registered under another id (role change) leaves
        // its old slot, to the address it displaced there, if any.
        let left: Vec<u64> = data
            .addrs
            .iter()
            .filter(|(id, a)| **id != req.broker_id && **a == req.broker_addr)
            .map(|(id, _)| *id)
            .collect();
        for id in left {
            let heir = self.heir(&req.broker_name, id, &req.broker_addr);
            self.vacate(&req.broker_name, id, &req.broker_addr, heir);
        }
    }

    /// The live address, other than `leaving`, registered last under
    /// `name` and `id`: the one `leaving` displaced from that slot.
    fn heir(&self, name: &str, id: u64, leaving: &str) -> Option<String> {
        self.live
            .iter()
            .filter(|(a, l)| *a != leaving && l.broker_name == name && l.broker_id == id)
            .max_by_key(|(_, l)| l.last_update)
            .map(|(a, _)| a.clone())
    }

    /// `leaving` gives up slot `id` of group `name` (if it holds it) to
    /// `heir`; returns whether the group has no address left.
    fn vacate(&mut self, name: &str, id: u64, leaving: &str, heir: Option<String>) -> bool {
        let Some(b) = self.brokers.get_mut(name) else {
            return false;
        };
        if b.addrs.get(&id).map(String::as_str) == Some(leaving) {
            match heir {
                Some(heir) => b.addrs.insert(id, heir),
                None => b.addrs.remove(&id),
            };
        }
        b.addrs.is_empty()
    }

    /// A master's full registration: its topic set replaces the group's.
    fn replace_topics(&mut self, req: &RegisterBrokerRequest) {
        let listed: BTreeSet<&str> = req.topics.iter().map(|t| t.name.as_str()).collect();
        for (topic, per_broker) in self.topics.iter_mut() {
            if !listed.contains(topic.as_str()) {
                per_broker.remove(&req.broker_name);
            }
        }
        for t in &req.topics {
            self.topics
                .entry(t.name.clone())
                .or_default()
                .insert(req.broker_name.clone(), queue_data(&req.broker_name, t));
        }
        self.topics.retain(|_, per_broker| !per_broker.is_empty());
    }

    fn answer(&self, broker_name: &str, need_full: bool) -> RegisterBrokerResponse {
        let master_addr = self
            .brokers
            .get(broker_name)
            .and_then(|b| b.addrs.get(&0))
            .cloned();
        let ha_master_addr = master_addr
            .as_ref()
            .and_then(|m| self.live.get(m))
            .and_then(|l| l.ha_addr.clone());
        RegisterBrokerResponse {
            master_addr,
            ha_master_addr,
            supports_delta: true,
            need_full,
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
        let heir = self.heir(&name, live.broker_id, addr);
        let empty = self.vacate(&name, live.broker_id, addr, heir);
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

    /// Skylark address → RocketMQ remoting address, of every live broker
    /// that serves one.
    pub fn remoting_addrs(&self) -> std::collections::HashMap<String, String> {
        self.live
            .iter()
            .filter_map(|(a, l)| Some((a.clone(), l.remoting_addr.clone()?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(name: &str, id: u64, addr: &str, topics: &[&str]) -> RegisterBrokerRequest {
        RegisterBrokerRequest {
            cluster_name: "c".into(),
            broker_name: name.into(),
            broker_id: id,
            broker_addr: addr.into(),
            ha_addr: None,
            topics: topics.iter().map(|t| TopicConfig::new(*t, 4)).collect(),
            data_version: 1,
            ..Default::default()
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

    /// Controller mode: a stale master (paused, then resumed) registers as
    /// master once more before it learns of the new epoch, then leaves as
    /// master (unregisters, or re-registers as a slave). The real master
    /// gets its slot back at once, not at its next registration.
    #[test]
    fn a_displaced_master_gets_its_slot_back_when_the_displacer_leaves() {
        let master = |r: &RouteInfo| {
            r.route("T")
                .and_then(|t| t.brokers[0].addrs.get(&0).cloned())
                .unwrap_or_default()
        };
        let bye = |addr: &str| UnregisterBrokerRequest {
            cluster_name: "c".into(),
            broker_name: "a".into(),
            broker_addr: addr.into(),
            broker_id: 0,
        };
        let t0 = Instant::now();
        let mut r = RouteInfo::default();
        r.register(reg("a", 0, "h:2", &["T"]), t0);
        r.register(reg("a", 0, "h:1", &["T"]), t0);
        assert_eq!(master(&r), "h:1", "the last registration holds the slot");
        r.unregister(&bye("h:1"));
        assert_eq!(master(&r), "h:2");
        // The same when the stale one re-registers as a slave instead.
        r.register(reg("a", 0, "h:1", &["T"]), t0);
        r.register(reg("a", 3, "h:1", &["T"]), t0);
        assert_eq!(master(&r), "h:2");
        // Leaving while displaced changes nothing; the last one leaving
        // empties the slot.
        r.register(reg("a", 0, "h:9", &["T"]), t0);
        r.unregister(&bye("h:2"));
        assert_eq!(master(&r), "h:9");
        r.unregister(&bye("h:9"));
        assert_eq!(master(&r), "", "no master is left");
        // A displaced address that expired is not brought back.
        r.register(reg("a", 0, "h:2", &["T"]), t0);
        r.register(reg("a", 0, "h:7", &["T"]), t0 + Duration::from_secs(100));
        r.scan_expired(t0 + Duration::from_secs(130), Duration::from_secs(120));
        r.unregister(&bye("h:7"));
        assert_eq!(master(&r), "");
        // A displacer that dies without unregistering: the displaced
        // one's next heartbeat is answered need_full, and its full
        // registration takes the slot back.
        r.register(reg("a", 0, "h:2", &["T"]), t0);
        r.register(reg("a", 0, "h:5", &["T"]), t0);
        let beat = RegisterBrokerRequest {
            kind: RegisterKind::Heartbeat,
            ..reg("a", 0, "h:2", &["T"])
        };
        assert!(r.register(beat.clone(), t0).need_full);
        r.register(reg("a", 0, "h:2", &["T"]), t0);
        assert_eq!(master(&r), "h:2");
        assert!(!r.register(beat, t0).need_full, "held again");
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

    #[test]
    fn slave_topics_fill_in_only_without_a_master() {
        let mut r = RouteInfo::default();
        let now = Instant::now();
        // With a master: the slave's topics are not the master's say.
        r.register(reg("a", 0, "h:1", &["T"]), now);
        r.register(reg("a", 1, "h:3", &["T", "S"]), now);
        assert!(r.route("S").is_none());
        // The master leaves: the slave's topic gets a route, T keeps the
        // master's queue data.
        r.unregister(&UnregisterBrokerRequest {
            cluster_name: "c".into(),
            broker_name: "a".into(),
            broker_id: 0,
            broker_addr: "h:1".into(),
        });
        r.register(reg("a", 1, "h:3", &["T", "S"]), now);
        let route = r.route("S").unwrap();
        assert_eq!(
            route.brokers[0].addrs.get(&1).map(String::as_str),
            Some("h:3")
        );
        assert!(r.route("T").is_some());
        // The master returns without S: its list wins.
        r.register(reg("a", 0, "h:1", &["T"]), now);
        assert!(r.route("S").is_none());
    }

    fn with(
        mut r: RegisterBrokerRequest,
        kind: RegisterKind,
        base: u64,
        version: u64,
        deleted: &[&str],
    ) -> RegisterBrokerRequest {
        r.kind = kind;
        r.base_version = base;
        r.data_version = version;
        r.deleted_topics = deleted.iter().map(|d| d.to_string()).collect();
        r
    }

    #[test]
    fn deltas_apply_only_on_their_base_version() {
        let mut r = RouteInfo::default();
        let t0 = Instant::now();
        let resp = r.register(reg("a", 0, "h:1", &["T", "U"]), t0);
        assert!(resp.supports_delta && !resp.need_full);
        // 1 -> 2: V added, U deleted.
        let d = with(
            reg("a", 0, "h:1", &["V"]),
            RegisterKind::Delta,
            1,
            2,
            &["U"],
        );
        assert!(!r.register(d, t0).need_full);
        assert_eq!(r.topic_list().topics, ["T", "V"]);
        // A delta on another base changes nothing and asks for a full one.
        let d = with(
            reg("a", 0, "h:1", &["W"]),
            RegisterKind::Delta,
            7,
            8,
            &["T"],
        );
        assert!(r.register(d, t0).need_full);
        assert_eq!(r.topic_list().topics, ["T", "V"]);
        // An unknown broker's delta does not make it known.
        let d = with(reg("b", 0, "h:2", &["X"]), RegisterKind::Delta, 1, 2, &[]);
        assert!(r.register(d, t0).need_full);
        assert!(r.route("X").is_none() && r.group_members("b").is_none());
    }

    #[test]
    fn heartbeats_keep_a_broker_alive_and_report_version_drift() {
        let mut r = RouteInfo::default();
        let t0 = Instant::now();
        r.register(reg("a", 0, "h:1", &["T"]), t0);
        let expire = Duration::from_secs(120);
        for i in 1..=5u64 {
            let hb = with(reg("a", 0, "h:1", &[]), RegisterKind::Heartbeat, 0, 1, &[]);
            let resp = r.register(hb, t0 + Duration::from_secs(100 * i));
            assert!(!resp.need_full);
            assert!(r
                .scan_expired(t0 + Duration::from_secs(100 * i + 60), expire)
                .is_empty());
        }
        // A heartbeat never touches topics, even with no topic listed.
        assert!(r.route("T").is_some());
        // Version drift (the broker changed topics this NameServer missed).
        let hb = with(reg("a", 0, "h:1", &[]), RegisterKind::Heartbeat, 0, 9, &[]);
        assert!(r.register(hb, t0).need_full);
        // Expired, then a heartbeat: unknown, so a full registration is due.
        r.scan_expired(t0 + Duration::from_secs(10_000), expire);
        let hb = with(reg("a", 0, "h:1", &[]), RegisterKind::Heartbeat, 0, 1, &[]);
        assert!(r.register(hb, t0 + Duration::from_secs(10_001)).need_full);
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
