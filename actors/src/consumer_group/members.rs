//! A consumer group's members and order locks, as plain data (no actors),
//! so the rules are unit-tested without a System.
//!
//! * A member is known by its client id; every heartbeat refreshes it. A
//!   member whose connection is gone, or that has been silent longer than the
//!   expiry, is dropped by [`GroupState::expire`].
//! * A lock (lease) gives one member a queue until it runs out; asking
//!   again renews it. A member's locks go with it. Every clustering member
//!   holds its queues' leases (orderly or not): a new owner waits for the
//!   old one to commit and release.
//! * Members must subscribe alike; [`GroupState::subscription_conflicts`]
//!   lists the topics where they do not.
//!
//! `C` is whatever reaches the member (the broker uses its connection
//! actor's address).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use skylark_codec::cmd::group::{SubscriptionConflict, SubscriptionVariant};
use skylark_codec::{ConsumerGroupData, ExpressionType, QueueRef};

/// One live member.
#[derive(Debug, Clone)]
pub struct Member<C> {
    /// How to reach it (its connection).
    pub conn: C,
    /// What it told us in its last heartbeat.
    pub data: ConsumerGroupData,
    /// When it last sent a heartbeat.
    pub last_seen: Instant,
}

/// A queue lock held by a member.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Lock {
    client_id: String,
    expires: Instant,
}

/// Members and locks of one group.
#[derive(Debug)]
pub struct GroupState<C> {
    members: BTreeMap<String, Member<C>>,
    locks: HashMap<QueueRef, Lock>,
}

impl<C> Default for GroupState<C> {
    fn default() -> Self {
        GroupState {
            members: BTreeMap::new(),
            locks: HashMap::new(),
        }
    }
}

impl<C: Clone> GroupState<C> {
    /// Records a heartbeat; true if the membership changed (a new member,
    /// or a member whose subscriptions changed), so members must rebalance.
    pub fn heartbeat(
        &mut self,
        client_id: &str,
        conn: C,
        data: ConsumerGroupData,
        now: Instant,
    ) -> bool {
        match self.members.get_mut(client_id) {
            Some(m) => {
                let changed = m.data.subscriptions != data.subscriptions;
                m.conn = conn;
                m.data = data;
                m.last_seen = now;
                changed
            }
            None => {
                self.members.insert(
                    client_id.to_string(),
                    Member {
                        conn,
                        data,
                        last_seen: now,
                    },
                );
                true
            }
        }
    }

    /// Removes a member and its locks; true if it was a member.
    pub fn unregister(&mut self, client_id: &str) -> bool {
        self.locks.retain(|_, l| l.client_id != client_id);
        self.members.remove(client_id).is_some()
    }

    /// Drops members silent for longer than `timeout` or whose connection
    /// `alive` says is gone; returns their ids.
    pub fn expire(
        &mut self,
        now: Instant,
        timeout: Duration,
        alive: impl Fn(&C) -> bool,
    ) -> Vec<String> {
        let gone: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| {
                now.saturating_duration_since(m.last_seen) > timeout || !alive(&m.conn)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in &gone {
            self.unregister(id);
        }
        self.locks.retain(|_, l| l.expires > now);
        gone
    }

    /// The group's subscription to `topic`: that of the member heard from
    /// last among those subscribing to it (RocketMQ keeps one per group and
    /// topic, the latest heartbeat's).
    pub fn subscription(&self, topic: &str) -> Option<skylark_codec::Subscription> {
        self.members
            .values()
            .filter_map(|m| {
                let sub = m.data.subscriptions.iter().find(|s| s.topic == topic)?;
                Some((m.last_seen, sub))
            })
            .max_by_key(|(seen, _)| *seen)
            .map(|(_, sub)| sub.clone())
    }

    /// Member ids, sorted.
    pub fn client_ids(&self) -> Vec<String> {
        self.members.keys().cloned().collect()
    }

    /// Every member's connection.
    pub fn conns(&self) -> Vec<C> {
        self.members.values().map(|m| m.conn.clone()).collect()
    }

    /// Topics the members subscribe to differently (a different filter, or
    /// some members not subscribing to the topic at all), sorted by topic.
    pub fn subscription_conflicts(&self) -> Vec<SubscriptionConflict> {
        // topic -> (expression type, expression or None) -> members
        type Variants = BTreeMap<(u8, Option<String>), (ExpressionType, BTreeSet<String>)>;
        let mut topics: BTreeMap<&str, Variants> = BTreeMap::new();
        for m in self.members.values() {
            for sub in &m.data.subscriptions {
                topics.entry(sub.topic.as_str()).or_default();
            }
        }
        for (id, m) in &self.members {
            for (topic, variants) in topics.iter_mut() {
                let sub = m.data.subscriptions.iter().find(|s| s.topic == *topic);
                let key = match sub {
                    Some(s) => (
                        expression_rank(s.expression_type),
                        Some(s.expression.clone()),
                    ),
                    None => (u8::MAX, None),
                };
                let ty = sub.map_or(ExpressionType::Tag, |s| s.expression_type);
                variants
                    .entry(key)
                    .or_insert_with(|| (ty, BTreeSet::new()))
                    .1
                    .insert(id.clone());
            }
        }
        topics
            .into_iter()
            .filter(|(_, v)| v.len() > 1)
            .map(|(topic, v)| SubscriptionConflict {
                topic: topic.to_string(),
                variants: v
                    .into_iter()
                    .map(
                        |((_, expression), (expression_type, ids))| SubscriptionVariant {
                            expression_type,
                            expression,
                            client_ids: ids.into_iter().collect(),
                        },
                    )
                    .collect(),
            })
            .collect()
    }

    /// True if the group has no member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Locks (or renews) each queue that is free, expired or already held by
    /// `client_id`; returns the queues `client_id` now holds of those asked.
    pub fn lock(
        &mut self,
        client_id: &str,
        queues: &[QueueRef],
        now: Instant,
        lease: Duration,
    ) -> Vec<QueueRef> {
        let mut got = Vec::new();
        for q in queues {
            let free = match self.locks.get(q) {
                None => true,
                Some(l) => l.client_id == client_id || l.expires <= now,
            };
            if free {
                self.locks.insert(
                    q.clone(),
                    Lock {
                        client_id: client_id.to_string(),
                        expires: now + lease,
                    },
                );
                got.push(q.clone());
            }
        }
        got
    }

    /// Releases the locks `client_id` holds among `queues`; true if it held
    /// any of them.
    pub fn unlock(&mut self, client_id: &str, queues: &[QueueRef]) -> bool {
        let mut freed = false;
        for q in queues {
            if self.locks.get(q).is_some_and(|l| l.client_id == client_id) {
                self.locks.remove(q);
                freed = true;
            }
        }
        freed
    }
}

fn expression_rank(t: ExpressionType) -> u8 {
    match t {
        ExpressionType::Tag => 0,
        ExpressionType::Sql => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skylark_codec::Subscription;

    fn data(topic: &str) -> ConsumerGroupData {
        ConsumerGroupData {
            group: "g".into(),
            subscriptions: vec![Subscription {
                topic: topic.into(),
                ..Subscription::default()
            }],
            ..ConsumerGroupData::default()
        }
    }

    fn q(id: u32) -> QueueRef {
        QueueRef {
            topic: "T".into(),
            queue_id: id,
        }
    }

    #[test]
    fn membership_changes_only_on_new_member_or_new_subscriptions() {
        let mut g = GroupState::default();
        let t = Instant::now();
        assert!(g.heartbeat("b", 1, data("T"), t));
        assert!(g.heartbeat("a", 2, data("T"), t));
        assert!(!g.heartbeat("a", 2, data("T"), t));
        assert!(g.heartbeat("a", 2, data("U"), t));
        assert_eq!(g.client_ids(), vec!["a".to_string(), "b".to_string()]);
        assert!(g.unregister("a"));
        assert!(!g.unregister("a"));
        assert_eq!(g.client_ids(), vec!["b".to_string()]);
    }

    #[test]
    fn silent_or_disconnected_members_expire() {
        let mut g = GroupState::default();
        let t = Instant::now();
        g.heartbeat("old", 1, data("T"), t);
        g.heartbeat("dead", 2, data("T"), t + Duration::from_secs(100));
        g.heartbeat("ok", 3, data("T"), t + Duration::from_secs(100));
        let gone = g.expire(
            t + Duration::from_secs(121),
            Duration::from_secs(120),
            |c| *c != 2,
        );
        assert_eq!(gone, vec!["dead".to_string(), "old".to_string()]);
        assert_eq!(g.client_ids(), vec!["ok".to_string()]);
    }

    #[test]
    fn locks_are_exclusive_renewable_and_expire() {
        let mut g: GroupState<u8> = GroupState::default();
        let t = Instant::now();
        let lease = Duration::from_secs(60);
        assert_eq!(g.lock("a", &[q(0), q(1)], t, lease), vec![q(0), q(1)]);
        assert_eq!(g.lock("b", &[q(1), q(2)], t, lease), vec![q(2)]);
        // Renewal by the holder.
        assert_eq!(
            g.lock("a", &[q(1)], t + Duration::from_secs(50), lease),
            vec![q(1)]
        );
        // q(0)'s lease ran out; q(1) was renewed.
        let later = t + Duration::from_secs(70);
        assert_eq!(g.lock("b", &[q(0), q(1)], later, lease), vec![q(0)]);
        assert!(!g.unlock("b", &[q(1)])); // not b's: ignored
        assert_eq!(g.lock("b", &[q(1)], later, lease), Vec::<QueueRef>::new());
        assert!(g.unlock("a", &[q(1)]));
        assert_eq!(g.lock("b", &[q(1)], later, lease), vec![q(1)]);
    }

    fn sub(topic: &str, expr: &str) -> Subscription {
        Subscription {
            topic: topic.into(),
            expression: expr.into(),
            ..Subscription::default()
        }
    }

    fn subs(list: &[Subscription]) -> ConsumerGroupData {
        ConsumerGroupData {
            group: "g".into(),
            subscriptions: list.to_vec(),
            ..ConsumerGroupData::default()
        }
    }

    #[test]
    fn members_subscribing_differently_are_reported_per_topic() {
        let mut g = GroupState::default();
        let t = Instant::now();
        g.heartbeat("a", 1, subs(&[sub("T", "A"), sub("R", "*")]), t);
        g.heartbeat("b", 2, subs(&[sub("T", "A"), sub("R", "*")]), t);
        assert!(g.subscription_conflicts().is_empty());
        g.heartbeat("c", 3, subs(&[sub("T", "B")]), t);
        let c = g.subscription_conflicts();
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!(c[0].topic, "R");
        assert_eq!(c[0].variants[0].expression.as_deref(), Some("*"));
        assert_eq!(c[0].variants[1].expression, None);
        assert_eq!(c[0].variants[1].client_ids, vec!["c".to_string()]);
        assert_eq!(
            c[1].to_string(),
            "topic T: 'A' by a, b; 'B' by c",
            "{:?}",
            c[1]
        );
        g.unregister("c");
        assert!(g.subscription_conflicts().is_empty());
    }

    #[test]
    fn a_leaving_member_frees_its_locks() {
        let mut g = GroupState::default();
        let t = Instant::now();
        g.heartbeat("a", 1, data("T"), t);
        g.lock("a", &[q(0)], t, Duration::from_secs(60));
        g.unregister("a");
        assert_eq!(g.lock("b", &[q(0)], t, Duration::from_secs(60)), vec![q(0)]);
    }
}
