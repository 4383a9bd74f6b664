//! What the dashboard shows, as plain data: one [`Snapshot`] of the
//! cluster per sample, the [`Rates`] that turn offsets into TPS, the
//! bounded [`History`] the charts draw (the last ten minutes), and the
//! [`alerts`] derived from a snapshot. No actix here, so all of it is
//! unit-tested without a running System.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::Serialize;

/// How far back the charts reach.
pub const HISTORY_SPAN_MS: i64 = 10 * 60 * 1000;

/// One member of a broker group, as its `GetReplicationStatus` answer and
/// its `GetBrokerRuntime` answer describe it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BrokerRow {
    pub cluster: String,
    pub broker_name: String,
    pub broker_id: u64,
    pub addr: String,
    /// `ASYNC_MASTER`, `SYNC_MASTER` or `SLAVE`; absent when unreachable.
    pub role: Option<String>,
    /// CommitLog end (bytes).
    pub commit_log_end: Option<u64>,
    /// Slave: the master's CommitLog end minus this slave's.
    pub replication_lag: Option<u64>,
    /// Slave: whether its connection to the master is up.
    pub master_connected: Option<bool>,
    /// Used share of the data directory's disk, 0..1.
    pub disk_usage_ratio: Option<f64>,
    /// Writes are refused at or above this usage ratio.
    pub disk_hard_limit_ratio: Option<f64>,
    /// Damaged CommitLog records the broker met since it started.
    pub damaged_records: Option<u64>,
    /// Why the broker did not answer.
    pub error: Option<String>,
}

/// One queue of a topic on one broker group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TopicQueueRow {
    pub broker_name: String,
    pub queue_id: u32,
    pub min_offset: u64,
    pub max_offset: u64,
}

/// A topic over every broker group hosting it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TopicRow {
    pub topic: String,
    /// A broker-internal topic (schedule, transaction, `TBW102`).
    pub system: bool,
    pub read_queues: u32,
    pub write_queues: u32,
    /// Messages stored: the sum over queues of max minus min offset.
    pub messages: u64,
    pub queues: Vec<TopicQueueRow>,
    /// Messages in per second since the previous sample.
    pub tps_in: Option<f64>,
    /// Messages consumed (committed) per second, over every group.
    pub tps_out: Option<f64>,
}

/// One queue of a consumer group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GroupQueueRow {
    pub topic: String,
    pub broker_name: String,
    pub queue_id: u32,
    pub broker_offset: u64,
    pub consumer_offset: u64,
    pub lag: u64,
    pub last_commit_ms: Option<i64>,
}

/// A consumer group over every broker group.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GroupRow {
    pub group: String,
    pub members: Vec<String>,
    pub queues: Vec<GroupQueueRow>,
    pub total_lag: u64,
    /// Messages committed per second since the previous sample.
    pub tps: Option<f64>,
}

/// Delayed and transactional messages waiting on one master.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PendingRow {
    pub broker_name: String,
    pub addr: String,
    /// Pending per delay level: (level, delay in ms, pending).
    pub delay_levels: Vec<(u32, u64, u64)>,
    /// Sum over the delay levels.
    pub delayed_pending: u64,
    /// Arbitrary-time (timer) messages not delivered yet.
    pub timer_pending: u64,
    /// Half (prepared) messages not committed or rolled back yet.
    pub half_pending: Option<u64>,
}

/// Something an operator should look at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alert {
    /// `group_lag`, `slave_not_replicating`, `broker_unreachable`, `disk_full`,
    /// `damaged_records`.
    pub kind: &'static str,
    /// The group or broker address concerned.
    pub subject: String,
    pub message: String,
}

/// The cluster as of one sample.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Snapshot {
    /// When the sample was taken (ms since the epoch); 0 before the first.
    pub sampled_at_ms: i64,
    pub sample_interval_ms: u64,
    pub brokers: Vec<BrokerRow>,
    pub topics: Vec<TopicRow>,
    /// Topics left out because there were more than the sampling cap.
    pub topics_not_sampled: usize,
    pub groups: Vec<GroupRow>,
    pub pending: Vec<PendingRow>,
    pub alerts: Vec<Alert>,
    /// Requests that failed during the sample (the rest is still shown).
    pub errors: Vec<String>,
}

/// Topics a broker creates for itself.
pub fn is_system_topic(topic: &str) -> bool {
    topic == "TBW102"
        || topic.starts_with("SCHEDULE_TOPIC")
        || topic.starts_with("TIMER_TOPIC")
        || topic.starts_with("RMQ_SYS_")
}

/// Turns monotonic counters (offset sums) into per-second rates between
/// consecutive samples. A counter that went down (a topic recreated, an
/// offset reset) restarts at its new value.
#[derive(Debug, Default)]
pub struct Rates {
    last: HashMap<String, (i64, u64)>,
    seen: HashMap<String, bool>,
}

impl Rates {
    /// The rate of `key` since its previous value, or `None` for its first.
    pub fn rate(&mut self, key: &str, now_ms: i64, value: u64) -> Option<f64> {
        self.seen.insert(key.to_string(), true);
        let prev = self.last.insert(key.to_string(), (now_ms, value));
        let (t, v) = prev?;
        let dt = now_ms - t;
        if dt <= 0 || value < v {
            return None;
        }
        Some((value - v) as f64 * 1000.0 / dt as f64)
    }

    /// Forgets the keys not given a value since the last call.
    pub fn sweep(&mut self) {
        self.last
            .retain(|k, _| self.seen.get(k).copied().unwrap_or(false));
        self.seen.clear();
    }
}

/// One chart line: (time ms, value) points, oldest first.
pub type Series = VecDeque<(i64, f64)>;

/// The charts' data over the last [`HISTORY_SPAN_MS`], bounded: a point per
/// sample and series, older points and series without a point in the span
/// dropped.
#[derive(Debug, Default, Clone, Serialize)]
pub struct History {
    pub topic_tps_in: BTreeMap<String, Series>,
    pub topic_tps_out: BTreeMap<String, Series>,
    pub group_lag: BTreeMap<String, Series>,
    pub group_tps: BTreeMap<String, Series>,
}

fn push(map: &mut BTreeMap<String, Series>, key: &str, t: i64, v: f64) {
    map.entry(key.to_string()).or_default().push_back((t, v));
}

fn trim(map: &mut BTreeMap<String, Series>, oldest: i64) {
    for s in map.values_mut() {
        while s.front().is_some_and(|&(t, _)| t < oldest) {
            s.pop_front();
        }
    }
    map.retain(|_, s| !s.is_empty());
}

impl History {
    /// Adds the snapshot's rates and lags; drops what is out of the span.
    pub fn record(&mut self, s: &Snapshot) {
        let t = s.sampled_at_ms;
        for topic in s.topics.iter().filter(|t| !t.system) {
            if let Some(v) = topic.tps_in {
                push(&mut self.topic_tps_in, &topic.topic, t, v);
            }
            if let Some(v) = topic.tps_out {
                push(&mut self.topic_tps_out, &topic.topic, t, v);
            }
        }
        for g in &s.groups {
            push(&mut self.group_lag, &g.group, t, g.total_lag as f64);
            if let Some(v) = g.tps {
                push(&mut self.group_tps, &g.group, t, v);
            }
        }
        let oldest = t - HISTORY_SPAN_MS;
        for m in [
            &mut self.topic_tps_in,
            &mut self.topic_tps_out,
            &mut self.group_lag,
            &mut self.group_tps,
        ] {
            trim(m, oldest);
        }
    }
}

/// Thresholds of the alerts.
#[derive(Debug, Clone, Copy)]
pub struct AlertRules {
    /// A group whose total lag is above this many messages.
    pub group_lag: u64,
}

/// The alerts a snapshot raises: a group lagging above the threshold, a
/// slave whose connection to its master is down, a broker that did not
/// answer, a disk at or above the ratio where the broker refuses writes, a
/// broker that met damaged records.
pub fn alerts(s: &Snapshot, rules: AlertRules) -> Vec<Alert> {
    let mut out = Vec::new();
    for b in &s.brokers {
        if let Some(e) = &b.error {
            out.push(Alert {
                kind: "broker_unreachable",
                subject: b.addr.clone(),
                message: format!(
                    "broker {} (id {}) did not answer: {e}",
                    b.broker_name, b.broker_id
                ),
            });
        }
        if b.master_connected == Some(false) {
            out.push(Alert {
                kind: "slave_not_replicating",
                subject: b.addr.clone(),
                message: format!(
                    "slave {} of {} is not connected to its master (lag {} bytes)",
                    b.addr,
                    b.broker_name,
                    b.replication_lag.unwrap_or(0)
                ),
            });
        }
        if let (Some(used), Some(limit)) = (b.disk_usage_ratio, b.disk_hard_limit_ratio) {
            if used > limit {
                out.push(Alert {
                    kind: "disk_full",
                    subject: b.addr.clone(),
                    message: format!(
                        "disk of {} is {:.1}% full, above the write-refusal ratio {:.1}%: writes are refused",
                        b.addr,
                        used * 100.0,
                        limit * 100.0
                    ),
                });
            }
        }
        if let Some(n) = b.damaged_records.filter(|&n| n > 0) {
            out.push(Alert {
                kind: "damaged_records",
                subject: b.addr.clone(),
                message: format!(
                    "broker {} met {n} damaged CommitLog record(s) since it started: they are not served (see its log and <data_dir>/quarantine)",
                    b.addr
                ),
            });
        }
    }
    for g in &s.groups {
        if g.total_lag > rules.group_lag {
            out.push(Alert {
                kind: "group_lag",
                subject: g.group.clone(),
                message: format!(
                    "consumer group {} lags {} messages (threshold {})",
                    g.group, g.total_lag, rules.group_lag
                ),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_need_two_samples_and_restart_when_a_counter_goes_down() {
        let mut r = Rates::default();
        assert_eq!(r.rate("t", 1_000, 10), None);
        assert_eq!(r.rate("t", 3_000, 110), Some(50.0));
        assert_eq!(r.rate("t", 4_000, 5), None, "counter went down");
        assert_eq!(r.rate("t", 5_000, 15), Some(10.0));
        assert_eq!(r.rate("t", 5_000, 20), None, "no time passed");
    }

    #[test]
    fn rates_forget_keys_no_longer_sampled() {
        let mut r = Rates::default();
        r.rate("a", 0, 1);
        r.rate("b", 0, 1);
        r.sweep();
        r.rate("a", 1000, 2);
        r.sweep();
        assert_eq!(r.rate("a", 2000, 3), Some(1.0));
        assert_eq!(r.rate("b", 2000, 3), None, "b was swept");
    }

    fn snapshot(t: i64, tps: f64, lag: u64) -> Snapshot {
        Snapshot {
            sampled_at_ms: t,
            topics: vec![
                TopicRow {
                    topic: "T".into(),
                    tps_in: Some(tps),
                    ..Default::default()
                },
                TopicRow {
                    topic: "TBW102".into(),
                    system: true,
                    tps_in: Some(1.0),
                    ..Default::default()
                },
            ],
            groups: vec![GroupRow {
                group: "G".into(),
                total_lag: lag,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn history_keeps_ten_minutes_and_no_system_topics() {
        let mut h = History::default();
        let step = 5_000;
        for i in 0..300 {
            h.record(&snapshot(i * step, i as f64, i as u64));
        }
        let s = &h.topic_tps_in["T"];
        assert_eq!(s.len() as i64, HISTORY_SPAN_MS / step + 1);
        assert_eq!(s.back(), Some(&(299 * step, 299.0)));
        assert_eq!(s.front().map(|p| p.0), Some(299 * step - HISTORY_SPAN_MS));
        assert!(!h.topic_tps_in.contains_key("TBW102"));
        assert_eq!(h.group_lag["G"].len(), s.len());
        // A topic that is gone leaves the charts once its points age out.
        let mut later = snapshot(299 * step + HISTORY_SPAN_MS + 1, 0.0, 0);
        later.topics.clear();
        later.groups.clear();
        h.record(&later);
        assert!(h.topic_tps_in.is_empty() && h.group_lag.is_empty());
    }

    #[test]
    fn alerts_for_lag_slave_disk_damage_and_unreachable() {
        let mut s = snapshot(0, 0.0, 101);
        s.brokers = vec![
            BrokerRow {
                addr: "m".into(),
                broker_id: 0,
                disk_usage_ratio: Some(0.96),
                disk_hard_limit_ratio: Some(0.95),
                ..Default::default()
            },
            BrokerRow {
                addr: "s".into(),
                broker_id: 1,
                master_connected: Some(false),
                replication_lag: Some(42),
                disk_usage_ratio: Some(0.5),
                disk_hard_limit_ratio: Some(0.95),
                damaged_records: Some(0),
                ..Default::default()
            },
            BrokerRow {
                addr: "d".into(),
                damaged_records: Some(2),
                ..Default::default()
            },
            BrokerRow {
                addr: "x".into(),
                error: Some("refused".into()),
                ..Default::default()
            },
        ];
        let a = alerts(&s, AlertRules { group_lag: 100 });
        let kinds: Vec<(&str, &str)> = a.iter().map(|a| (a.kind, a.subject.as_str())).collect();
        assert_eq!(
            kinds,
            vec![
                ("disk_full", "m"),
                ("slave_not_replicating", "s"),
                ("damaged_records", "d"),
                ("broker_unreachable", "x"),
                ("group_lag", "G"),
            ]
        );
        assert!(alerts(&s, AlertRules { group_lag: 101 })
            .iter()
            .all(|a| a.kind != "group_lag"));
    }
}
