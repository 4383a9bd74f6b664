//! Queue allocation for clustering consumers (RocketMQ's
//! `AllocateMessageQueueStrategy`): pure functions from (me, every member,
//! every queue) to my queues. Every member computes the same answer from
//! the same sorted lists, so the group splits the queues without talking.
//!
//! * `average` — contiguous blocks, the first `queues % members` members get
//!   one more (`AllocateMessageQueueAveragely`).
//! * `average-by-circle` — queue `i` goes to member `i % members`
//!   (`AllocateMessageQueueAveragelyByCircle`).
//! * `consistent-hash` — a hash ring with virtual nodes per member; a member
//!   joining or leaving moves only the queues next to it on the ring
//!   (`AllocateMessageQueueConsistentHash`).

use std::fmt;
use std::str::FromStr;

use super::route::MessageQueue;

/// How a clustering group splits its queues; chosen by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AllocateStrategy {
    /// Contiguous blocks (the default).
    #[default]
    Average,
    /// Round-robin.
    AverageByCircle,
    /// Hash ring with this many virtual nodes per member.
    ConsistentHash { virtual_nodes: usize },
}

impl FromStr for AllocateStrategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "average" => Ok(AllocateStrategy::Average),
            "average-by-circle" => Ok(AllocateStrategy::AverageByCircle),
            "consistent-hash" => Ok(AllocateStrategy::ConsistentHash { virtual_nodes: 10 }),
            other => Err(format!(
                "unknown allocation strategy {other:?} (average, average-by-circle, consistent-hash)"
            )),
        }
    }
}

impl fmt::Display for AllocateStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AllocateStrategy::Average => "average",
            AllocateStrategy::AverageByCircle => "average-by-circle",
            AllocateStrategy::ConsistentHash { .. } => "consistent-hash",
        })
    }
}

/// Sort order every member agrees on.
pub fn sort_queues(queues: &mut [MessageQueue]) {
    queues.sort_by(|a, b| {
        (&a.topic, &a.broker_name, a.queue_id).cmp(&(&b.topic, &b.broker_name, b.queue_id))
    });
}

/// The queues `me` consumes. `members` and `queues` must be sorted
/// ([`sort_queues`]); a `me` missing from `members` gets nothing.
pub fn allocate(
    strategy: AllocateStrategy,
    me: &str,
    members: &[String],
    queues: &[MessageQueue],
) -> Vec<MessageQueue> {
    let Some(index) = members.iter().position(|m| m == me) else {
        return Vec::new();
    };
    if queues.is_empty() {
        return Vec::new();
    }
    let n = members.len();
    match strategy {
        AllocateStrategy::Average => {
            let q = queues.len();
            let rem = q % n;
            let size = if q <= n {
                1
            } else if rem > 0 && index < rem {
                q / n + 1
            } else {
                q / n
            };
            let start = if rem > 0 && index < rem {
                index * size
            } else {
                index * size + rem
            };
            let range = size.min(q.saturating_sub(start));
            (0..range)
                .map(|i| queues[(start + i) % q].clone())
                .collect()
        }
        AllocateStrategy::AverageByCircle => queues
            .iter()
            .enumerate()
            .filter(|(i, _)| i % n == index)
            .map(|(_, q)| q.clone())
            .collect(),
        AllocateStrategy::ConsistentHash { virtual_nodes } => {
            // RocketMQ's ConsistentHashRouter: a member's virtual node `v`
            // sits at hash("{member}-{v}"), inserted in member order (a
            // later node on the same point replaces an earlier one, as in
            // its TreeMap); a queue belongs to the first node at or after
            // its hash, wrapping around.
            let mut ring = std::collections::BTreeMap::new();
            for (i, m) in members.iter().enumerate() {
                for v in 0..virtual_nodes.max(1) {
                    ring.insert(ring_hash(&format!("{m}-{v}")), i);
                }
            }
            queues
                .iter()
                .filter(|q| {
                    let h = ring_hash(&format!(
                        "MessageQueue [topic={}, brokerName={}, queueId={}]",
                        q.topic, q.broker_name, q.queue_id
                    ));
                    let owner = ring.range(h..).next().or_else(|| ring.iter().next());
                    owner.map(|(_, i)| *i) == Some(index)
                })
                .cloned()
                .collect()
        }
    }
}

/// RocketMQ's `MD5Hash`: the first four bytes of the key's MD5, big-endian.
/// (A 64-bit FNV-1a, used before, put keys that differ in their last
/// character next to each other: every queue of a topic fell into one arc
/// of the ring and went to one member.)
fn ring_hash(key: &str) -> u64 {
    use md5::Digest as _;
    let d = md5::Md5::digest(key.as_bytes());
    u64::from(u32::from_be_bytes([d[0], d[1], d[2], d[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn queues(n: u32) -> Vec<MessageQueue> {
        let mut v: Vec<MessageQueue> = (0..n)
            .map(|i| MessageQueue {
                topic: "T".into(),
                broker_name: "b".into(),
                broker_addr: "a".into(),
                queue_id: i,
            })
            .collect();
        sort_queues(&mut v);
        v
    }

    fn members(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("c{i}")).collect()
    }

    fn ids(v: &[MessageQueue]) -> Vec<u32> {
        v.iter().map(|q| q.queue_id).collect()
    }

    /// Every queue goes to exactly one member.
    fn check_partition(s: AllocateStrategy, nq: u32, nm: usize) {
        let qs = queues(nq);
        let ms = members(nm);
        let mut seen = BTreeSet::new();
        let mut total = 0;
        for m in &ms {
            let mine = allocate(s, m, &ms, &qs);
            total += mine.len();
            seen.extend(ids(&mine));
        }
        assert_eq!(total, nq as usize, "{s} {nq} queues {nm} members");
        assert_eq!(seen.len(), nq as usize);
    }

    #[test]
    fn every_strategy_partitions() {
        for s in ["average", "average-by-circle", "consistent-hash"] {
            let s: AllocateStrategy = s.parse().unwrap();
            for nq in [0, 1, 3, 4, 8, 9, 16] {
                for nm in 1..6 {
                    check_partition(s, nq, nm);
                }
            }
        }
        assert!("nope".parse::<AllocateStrategy>().is_err());
    }

    #[test]
    fn average_blocks() {
        let qs = queues(8);
        let ms = members(3);
        let s = AllocateStrategy::Average;
        assert_eq!(ids(&allocate(s, "c0", &ms, &qs)), vec![0, 1, 2]);
        assert_eq!(ids(&allocate(s, "c1", &ms, &qs)), vec![3, 4, 5]);
        assert_eq!(ids(&allocate(s, "c2", &ms, &qs)), vec![6, 7]);
        // More members than queues: the last ones idle.
        let ms = members(5);
        assert_eq!(ids(&allocate(s, "c3", &ms, &queues(3))), Vec::<u32>::new());
        assert!(allocate(s, "stranger", &ms, &qs).is_empty());
    }

    #[test]
    fn circle_round_robin() {
        let qs = queues(8);
        let ms = members(3);
        let s = AllocateStrategy::AverageByCircle;
        assert_eq!(ids(&allocate(s, "c0", &ms, &qs)), vec![0, 3, 6]);
        assert_eq!(ids(&allocate(s, "c2", &ms, &qs)), vec![2, 5]);
    }

    #[test]
    fn consistent_hash_is_rocketmqs_ring_and_spreads_the_queues() {
        let s = AllocateStrategy::ConsistentHash { virtual_nodes: 10 };
        // RocketMQ's AllocateMessageQueueConsistentHash on the same lists
        // (computed apart, from its MD5Hash and MessageQueue.toString()).
        let ms = members(3);
        let qs = queues(16);
        let got: Vec<Vec<u32>> = ms.iter().map(|m| ids(&allocate(s, m, &ms, &qs))).collect();
        assert_eq!(
            got,
            [
                vec![3, 4, 6, 10, 15],
                vec![1, 2, 5, 9, 11],
                vec![0, 7, 8, 12, 13, 14]
            ]
        );
        // Every member of a small group gets some of a topic's queues (the
        // FNV ring gave all of them to one member).
        for nm in 2..4 {
            let ms = members(nm);
            for m in &ms {
                assert!(!allocate(s, m, &ms, &queues(8)).is_empty(), "{m} of {nm}");
            }
        }
    }

    #[test]
    fn consistent_hash_moves_little_when_a_member_joins() {
        let s = AllocateStrategy::ConsistentHash { virtual_nodes: 10 };
        let qs = queues(64);
        let before = members(4);
        let after = members(5);
        let mut moved = 0;
        for m in &before {
            let a: BTreeSet<u32> = ids(&allocate(s, m, &before, &qs)).into_iter().collect();
            let b: BTreeSet<u32> = ids(&allocate(s, m, &after, &qs)).into_iter().collect();
            // A member only loses queues (to the newcomer), never gains.
            assert!(b.is_subset(&a));
            moved += a.len() - b.len();
        }
        assert_eq!(moved, allocate(s, "c4", &after, &qs).len());
    }
}
