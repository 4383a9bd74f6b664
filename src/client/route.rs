//! Topic routes as the client uses them, and queue selection.
//!
//! The NameServer answers [`TopicRouteData`] (queue counts per broker name,
//! addresses per broker name and id). A producer needs the flat list of
//! writable `(master address, queue id)` pairs; a consumer the readable ones
//! (master preferred, a slave if the master is gone). [`select_round_robin`]
//! and [`select_by_key`] are the producer's two queue selectors, plain
//! functions so they can be unit-tested. [`route_rank`] says which of two
//! NameServers' answers for a topic is the better one.

use std::cmp::Reverse;
use std::collections::BTreeSet;
use std::fmt;
use std::time::Instant;

use serde::Serialize;
use skylark_codec::{TopicRouteData, PERM_READ, PERM_WRITE};

use super::error::ClientError;
use super::fault::LatencyFaultTolerance;

/// One queue of a topic on one broker.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct MessageQueue {
    /// Topic name.
    pub topic: String,
    /// Broker name (shared by a master and its slaves).
    pub broker_name: String,
    /// Address requests for this queue go to.
    pub broker_addr: String,
    /// Queue id within the topic on that broker.
    pub queue_id: u32,
}

impl fmt::Display for MessageQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}@{}({}):{}",
            self.topic, self.broker_name, self.broker_addr, self.queue_id
        )
    }
}

/// A topic's route, flattened for producers and consumers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRoute {
    /// Topic name.
    pub topic: String,
    /// What the NameServer answered.
    pub data: TopicRouteData,
    /// Writable queues on masters, sorted by broker name then queue id.
    pub write_queues: Vec<MessageQueue>,
    /// Readable queues (master address, else the lowest-id slave), sorted.
    pub read_queues: Vec<MessageQueue>,
    /// Whether any broker marks the topic as ordered.
    pub order: bool,
    /// The topic does not exist yet: these are the queues of `TBW102`, the
    /// brokers that create it on first send.
    pub via_auto_create: bool,
}

impl TopicRoute {
    /// Flattens a route answer.
    pub fn new(topic: &str, data: TopicRouteData) -> Self {
        let mut queue_data = data.queues.clone();
        queue_data.sort_by(|a, b| a.broker_name.cmp(&b.broker_name));
        let mut write_queues = Vec::new();
        let mut read_queues = Vec::new();
        for qd in &queue_data {
            let Some(broker) = data
                .brokers
                .iter()
                .find(|b| b.broker_name == qd.broker_name)
            else {
                continue;
            };
            let mq = |addr: &str, queue_id| MessageQueue {
                topic: topic.to_string(),
                broker_name: qd.broker_name.clone(),
                broker_addr: addr.to_string(),
                queue_id,
            };
            if qd.perm & PERM_WRITE != 0 {
                if let Some(master) = broker.master_addr() {
                    write_queues.extend((0..qd.write_queues).map(|q| mq(master, q)));
                }
            }
            if qd.perm & PERM_READ != 0 {
                // Master first; otherwise the slave with the lowest id.
                if let Some(addr) = broker.addrs.values().next() {
                    read_queues.extend((0..qd.read_queues).map(|q| mq(addr, q)));
                }
            }
        }
        TopicRoute {
            topic: topic.to_string(),
            order: data.queues.iter().any(|q| q.order),
            data,
            write_queues,
            read_queues,
            via_auto_create: false,
        }
    }

    /// The route of a topic that does not exist yet, from `TBW102`'s.
    pub fn auto_create(topic: &str, data: TopicRouteData) -> Self {
        TopicRoute {
            via_auto_create: true,
            ..TopicRoute::new(topic, data)
        }
    }

    /// Whether the route lists queues but every one of them lacks `perm`
    /// (`PERM_WRITE` or `PERM_READ`): the topic exists and is denied.
    pub fn denies(&self, perm: u8) -> bool {
        !self.data.queues.is_empty() && self.data.queues.iter().all(|q| q.perm & perm == 0)
    }

    /// The error for a route with no queue to write (`write`) or read.
    pub fn no_queue(&self, write: bool) -> ClientError {
        let (perm, what) = if write {
            (PERM_WRITE, "writable")
        } else {
            (PERM_READ, "readable")
        };
        let topic = self.topic.clone();
        if self.denies(perm) && self.via_auto_create {
            ClientError::AutoCreateDenied { topic }
        } else if self.denies(perm) {
            ClientError::PermissionDenied { topic, what }
        } else {
            ClientError::NoQueue { topic, what }
        }
    }

    /// Master addresses of every broker in the route.
    pub fn master_addrs(&self) -> Vec<String> {
        self.data
            .brokers
            .iter()
            .filter_map(|b| b.master_addr().map(String::from))
            .collect()
    }
}

/// How complete a NameServer's route answer is; of two answers the greater
/// is the better: more broker groups with a master, then fewer without one.
/// A NameServer that restarted a moment ago may know a group's slave and
/// not yet its master, or nothing at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RouteRank {
    with_master: usize,
    without_master: Reverse<usize>,
}

impl RouteRank {
    /// Every broker group of the route has its master: no NameServer can
    /// answer better.
    pub fn complete(&self) -> bool {
        self.with_master > 0 && self.without_master.0 == 0
    }
}

/// The [`RouteRank`] of `data`: its broker groups are those named by its
/// queues or its brokers.
pub fn route_rank(data: &TopicRouteData) -> RouteRank {
    let groups: BTreeSet<&str> = data
        .queues
        .iter()
        .map(|q| q.broker_name.as_str())
        .chain(data.brokers.iter().map(|b| b.broker_name.as_str()))
        .collect();
    let with_master = groups
        .iter()
        .filter(|g| {
            data.brokers
                .iter()
                .any(|b| b.broker_name == **g && b.master_addr().is_some())
        })
        .count();
    RouteRank {
        with_master,
        without_master: Reverse(groups.len() - with_master),
    }
}

/// Round-robin over `queues`, skipping brokers the fault tracker avoids and
/// the broker of the previous failed attempt; when every broker is avoided,
/// falls back to one that is only slow rather than one that failed, then to
/// any other broker, then to any queue at all. The turn is taken among the eligible queues, so
/// while a broker is avoided its share spreads evenly over the others'
/// queues (not all onto the first queue after it).
pub fn select_round_robin<'q>(
    queues: &'q [MessageQueue],
    counter: &mut usize,
    last_failed: Option<&str>,
    fault: Option<&LatencyFaultTolerance>,
    now: Instant,
) -> Option<&'q MessageQueue> {
    let n = queues.len();
    if n == 0 {
        return None;
    }
    let turn = *counter;
    *counter = counter.wrapping_add(1);
    let not_last = |q: &&MessageQueue| Some(q.broker_name.as_str()) != last_failed;
    let available = |q: &&MessageQueue| fault.is_none_or_available(&q.broker_name, now);
    // The turn-th of the queues that pass `ok`, counted without allocating.
    let nth_of = |ok: &dyn Fn(&&MessageQueue) -> bool| {
        let m = queues.iter().filter(ok).count();
        if m == 0 {
            return None;
        }
        queues.iter().filter(ok).nth(turn % m)
    };
    let not_failed = |q: &&MessageQueue| fault.is_none_or_not_failed(&q.broker_name, now);
    nth_of(&|q| not_last(q) && available(q))
        .or_else(|| nth_of(&|q| not_last(q) && not_failed(q)))
        .or_else(|| nth_of(&not_last))
        .or_else(|| queues.get(turn % n))
}

/// Helper so `None` (fault avoidance off) means "available".
trait MaybeFault {
    fn is_none_or_available(&self, broker: &str, now: Instant) -> bool;
    fn is_none_or_not_failed(&self, broker: &str, now: Instant) -> bool;
}

impl MaybeFault for Option<&LatencyFaultTolerance> {
    fn is_none_or_available(&self, broker: &str, now: Instant) -> bool {
        self.is_none_or(|f| f.is_available(broker, now))
    }
    fn is_none_or_not_failed(&self, broker: &str, now: Instant) -> bool {
        self.is_none_or(|f| !f.failed_recently(broker, now))
    }
}

/// The queue for an order key: a stable hash (FNV-1a 64) of the key modulo
/// the number of writable queues, so the same key always lands in the same
/// queue while the route does not change.
pub fn select_by_key<'q>(queues: &'q [MessageQueue], key: &str) -> Option<&'q MessageQueue> {
    if queues.is_empty() {
        return None;
    }
    let n = u64::try_from(queues.len()).ok()?;
    let i = usize::try_from(fnv1a(key.as_bytes()) % n).ok()?;
    queues.get(i)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use skylark_codec::{BrokerData, QueueData};

    use super::*;
    use crate::client::fault::Outcome;

    fn route() -> TopicRoute {
        let broker = |name: &str, addrs: &[(u64, &str)]| BrokerData {
            cluster: "c".into(),
            broker_name: name.into(),
            addrs: addrs
                .iter()
                .map(|(i, a)| (*i, a.to_string()))
                .collect::<BTreeMap<_, _>>(),
        };
        let qd = |name: &str, n, perm| QueueData {
            broker_name: name.into(),
            read_queues: n,
            write_queues: n,
            perm,
            order: false,
        };
        TopicRoute::new(
            "T",
            TopicRouteData {
                queues: vec![
                    qd("b", 2, PERM_READ | PERM_WRITE),
                    qd("a", 2, PERM_READ | PERM_WRITE),
                    qd("s", 1, PERM_READ | PERM_WRITE),
                ],
                brokers: vec![
                    broker("a", &[(0, "a:1"), (1, "a:2")]),
                    broker("b", &[(0, "b:1")]),
                    broker("s", &[(1, "s:2")]),
                ],
            },
        )
    }

    #[test]
    fn a_route_denied_everywhere_says_permission_not_missing_queues() {
        let mut data = route().data;
        assert!(matches!(
            route().no_queue(true),
            ClientError::NoQueue { .. }
        ));
        for q in &mut data.queues {
            q.perm = PERM_READ;
        }
        let r = TopicRoute::new("T", data.clone());
        assert!(r.write_queues.is_empty());
        let e = r.no_queue(true);
        assert!(
            matches!(
                e,
                ClientError::PermissionDenied {
                    what: "writable",
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("topic 'T' is not writable"), "{e}");
        assert!(e.to_string().contains("admin broker perm"), "{e}");
        // Readable, so a reader is not denied.
        assert!(matches!(r.no_queue(false), ClientError::NoQueue { .. }));
        // One writable broker left: not a permission problem.
        data.queues[0].perm = PERM_READ | PERM_WRITE;
        assert!(!TopicRoute::new("T", data.clone()).denies(PERM_WRITE));
        // Not readable: only a topic permission does that, so a reader is
        // not sent to a broker's write permission.
        for q in &mut data.queues {
            q.perm = PERM_WRITE;
        }
        let e = TopicRoute::new("T", data).no_queue(false);
        assert!(e.to_string().contains("topic 'T' is not readable"), "{e}");
        assert!(!e.to_string().contains("admin broker perm"), "{e}");
    }

    #[test]
    fn flattening() {
        let r = route();
        let w: Vec<_> = r
            .write_queues
            .iter()
            .map(|q| (q.broker_addr.as_str(), q.queue_id))
            .collect();
        assert_eq!(w, vec![("a:1", 0), ("a:1", 1), ("b:1", 0), ("b:1", 1)]);
        // A broker without a master is still readable through its slave.
        assert_eq!(r.read_queues.len(), 5);
        assert_eq!(r.read_queues[4].broker_addr, "s:2");
        assert_eq!(r.master_addrs(), vec!["a:1".to_string(), "b:1".to_string()]);
    }

    #[test]
    fn a_route_with_more_masters_ranks_higher() {
        let full = route().data;
        // Group "s" has only its slave: not complete.
        assert!(!route_rank(&full).complete());
        let mut complete = full.clone();
        complete.brokers.retain(|b| b.broker_name != "s");
        complete.queues.retain(|q| q.broker_name != "s");
        assert!(route_rank(&complete).complete());
        // A slave only, as a restarted NameServer may first know it.
        let mut slave_only = complete.clone();
        for b in &mut slave_only.brokers {
            b.addrs.remove(&0);
        }
        assert!(route_rank(&slave_only) < route_rank(&complete));
        assert!(!route_rank(&slave_only).complete());
        // Same masters, one more group without: lower.
        assert!(route_rank(&full) < route_rank(&complete));
        // Queues named without any broker data count as masterless.
        let mut orphan = complete.clone();
        orphan.brokers.clear();
        assert!(!route_rank(&orphan).complete());
        assert!(!route_rank(&TopicRouteData::default()).complete());
    }

    #[test]
    fn round_robin_cycles_every_queue() {
        let r = route();
        let mut c = 0;
        let now = Instant::now();
        let picked: Vec<_> = (0..8)
            .map(|_| select_round_robin(&r.write_queues, &mut c, None, None, now).cloned())
            .map(|q| q.map(|q| (q.broker_name, q.queue_id)))
            .collect();
        let expect = |b: &str, q| Some((b.to_string(), q));
        assert_eq!(
            picked[..4],
            [
                expect("a", 0),
                expect("a", 1),
                expect("b", 0),
                expect("b", 1)
            ]
        );
        assert_eq!(picked[4..], picked[..4]);
    }

    #[test]
    fn round_robin_avoids_faulty_and_last_failed_brokers() {
        let r = route();
        let now = Instant::now();
        let mut fault = LatencyFaultTolerance::new(Duration::from_secs(30));
        fault.update("a", now, Duration::ZERO, Outcome::Unreachable);
        let mut c = 0;
        for _ in 0..4 {
            let q = select_round_robin(&r.write_queues, &mut c, None, Some(&fault), now);
            assert_eq!(q.map(|q| q.broker_name.as_str()), Some("b"));
        }
        // a's turns spread over all of b's queues, not onto b's first one.
        let mut per_queue = std::collections::BTreeMap::new();
        for _ in 0..400 {
            let q = select_round_robin(&r.write_queues, &mut c, None, Some(&fault), now).unwrap();
            *per_queue
                .entry((q.broker_name.clone(), q.queue_id))
                .or_insert(0) += 1;
        }
        let shares: Vec<i32> = per_queue.values().copied().collect();
        assert_eq!(per_queue.len(), r.write_queues.len() / 2, "{per_queue:?}");
        assert!(shares.iter().all(|&s| s == shares[0]), "{per_queue:?}");
        // The retry after a failure on b goes elsewhere even if a is isolated.
        let q = select_round_robin(&r.write_queues, &mut c, Some("b"), Some(&fault), now);
        assert_eq!(q.map(|q| q.broker_name.as_str()), Some("a"));
        // a failed and b is only slow: b, the live one, every time.
        fault.update("b", now, Duration::from_millis(700), Outcome::Answered);
        for _ in 0..4 {
            let q = select_round_robin(&r.write_queues, &mut c, None, Some(&fault), now);
            assert_eq!(q.map(|q| q.broker_name.as_str()), Some("b"));
        }
        // Everything isolated: still answers.
        fault.update("b", now, Duration::ZERO, Outcome::Unreachable);
        assert!(select_round_robin(&r.write_queues, &mut c, None, Some(&fault), now).is_some());
        // After the window a is back.
        let later = now + Duration::from_secs(31);
        let mut c = 0;
        let q = select_round_robin(&r.write_queues, &mut c, None, Some(&fault), later);
        assert_eq!(q.map(|q| q.broker_name.as_str()), Some("a"));
        assert!(select_round_robin(&[], &mut c, None, None, now).is_none());
    }

    #[test]
    fn order_key_is_stable() {
        let r = route();
        let q1 = select_by_key(&r.write_queues, "order-42").cloned();
        for _ in 0..10 {
            assert_eq!(select_by_key(&r.write_queues, "order-42").cloned(), q1);
        }
        // Reference value of FNV-1a 64 keeps the mapping stable across builds.
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        let spread: std::collections::HashSet<_> = (0..100)
            .filter_map(|i| select_by_key(&r.write_queues, &format!("k{i}")))
            .map(|q| (q.broker_name.clone(), q.queue_id))
            .collect();
        assert_eq!(spread.len(), 4);
        assert!(select_by_key(&[], "k").is_none());
    }
}
