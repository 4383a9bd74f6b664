//! What a broker records on its request path: request latency by command
//! (`rocketmq_rpc_latency`) and messages/bytes pulled per topic, group and
//! queue (`rocketmq_messages_out_total`, `rocketmq_throughput_out_total`,
//! and the pulled-up-to offset behind `rocketmq_consumer_inflight_messages`).
//!
//! Per-thread shards: each connection thread records into its own shard
//! (an uncontended `Mutex`, a [`LocalHistogram`] per command, plain integers
//! per queue), so a request touches no cache line another thread writes.
//! A scrape locks each shard in turn, flushes its local histograms into the
//! shared one and sums the pull counters. One observation per request: a
//! batch send, and a thread's coalesced sends, are each one request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use prometheus::core::Collector;
use prometheus::local::LocalHistogram;
use prometheus::proto::MetricFamily;
use prometheus::{HistogramOpts, HistogramVec};
use skylark_codec::Command;

/// Shards per broker: more than the connection threads of any box we run on.
const SHARDS: usize = 16;

/// Upper bounds (ms) of `rocketmq_rpc_latency`'s buckets. A pull's
/// latency includes its long-poll hold (up to 15 s).
pub(crate) const LATENCY_BUCKETS_MS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0,
    5000.0, 15000.0, 30000.0,
];

/// Pulled messages of one queue for one group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueuePulls {
    pub messages: u64,
    pub bytes: u64,
    /// Highest next offset a pull of this group answered on this queue.
    pub next_offset: u64,
}

#[derive(Default)]
struct Shard {
    latency: HashMap<u16, LocalHistogram>,
    /// topic → group → queue id → pulls.
    pulls: HashMap<String, HashMap<String, Vec<QueuePulls>>>,
}

/// A broker's request-path instruments.
pub struct BrokerMetrics {
    rpc_latency: HistogramVec,
    shards: Box<[Mutex<Shard>]>,
}

/// Pull totals per `(topic, consumer group, queue id)`.
pub type PullTotals = HashMap<(String, String, u32), QueuePulls>;

fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    INDEX.with(|i| *i)
}

impl BrokerMetrics {
    /// Instruments labelled with the broker's `cluster` and `node_id`.
    pub fn new(cluster: &str, node_id: &str) -> BrokerMetrics {
        let opts = HistogramOpts::new(
            "rocketmq_rpc_latency",
            "Time from a request frame's dispatch to its answer, in milliseconds, \
             by request code (10 = SendMessage, 11 = SendBatch, 20 = PullMessage).",
        )
        .const_label("cluster", cluster)
        .const_label("node_id", node_id)
        .buckets(LATENCY_BUCKETS_MS.to_vec());
        let rpc_latency =
            HistogramVec::new(opts, &["request_code", "request"]).expect("valid histogram options");
        BrokerMetrics {
            rpc_latency,
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    fn shard(&self) -> MutexGuard<'_, Shard> {
        lock(&self.shards[shard_index()])
    }

    /// One request of `cmd` took `ms`.
    pub fn observe(&self, cmd: Command, ms: f64) {
        let code = cmd.as_u16();
        let mut shard = self.shard();
        match shard.latency.get(&code) {
            Some(h) => h.observe(ms),
            None => {
                let name = format!("{cmd:?}");
                let h = self
                    .rpc_latency
                    .with_label_values(&[code.to_string().as_str(), name.as_str()])
                    .local();
                h.observe(ms);
                shard.latency.insert(code, h);
            }
        }
    }

    /// A pull of `group` on `topic`/`queue_id` answered `count` messages
    /// (`bytes` of records) and `next_offset`.
    pub fn note_pull(
        &self,
        group: &str,
        topic: &str,
        queue_id: u32,
        count: u32,
        bytes: usize,
        next_offset: u64,
    ) {
        if count == 0 || !super::recording() {
            return;
        }
        let mut shard = self.shard();
        let groups = match shard.pulls.get_mut(topic) {
            Some(g) => g,
            None => shard.pulls.entry(topic.to_string()).or_default(),
        };
        let queues = match groups.get_mut(group) {
            Some(q) => q,
            None => groups.entry(group.to_string()).or_default(),
        };
        let i = queue_id as usize;
        if queues.len() <= i {
            queues.resize(i + 1, QueuePulls::default());
        }
        let q = &mut queues[i];
        q.messages += u64::from(count);
        q.bytes += bytes as u64;
        q.next_offset = q.next_offset.max(next_offset);
    }

    /// Flushes every shard's latencies and returns the latency family.
    pub fn latency_families(&self) -> Vec<MetricFamily> {
        for s in self.shards.iter() {
            for h in lock(s).latency.values() {
                h.flush();
            }
        }
        self.rpc_latency.collect()
    }

    /// Pull totals over every shard.
    pub fn pull_totals(&self) -> PullTotals {
        let mut out = PullTotals::new();
        for s in self.shards.iter() {
            let shard = lock(s);
            for (topic, groups) in &shard.pulls {
                for (group, queues) in groups {
                    for (queue_id, q) in queues.iter().enumerate() {
                        if q.messages == 0 {
                            continue;
                        }
                        let key = (topic.clone(), group.clone(), queue_id as u32);
                        let t = out.entry(key).or_default();
                        t.messages += q.messages;
                        t.bytes += q.bytes;
                        t.next_offset = t.next_offset.max(q.next_offset);
                    }
                }
            }
        }
        out
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn text(m: &BrokerMetrics) -> String {
        super::super::encode(m.latency_families())
    }

    #[test]
    fn latencies_reach_the_histogram_at_scrape_from_every_thread() {
        let m = Arc::new(BrokerMetrics::new("c", "b"));
        m.observe(Command::SendMessage, 0.3);
        let m2 = m.clone();
        std::thread::spawn(move || {
            m2.observe(Command::SendMessage, 7.0);
            m2.observe(Command::PullMessage, 20.0);
        })
        .join()
        .unwrap();
        let t = text(&m);
        assert!(
            t.contains(r#"rocketmq_rpc_latency_count{cluster="c",node_id="b",request="SendMessage",request_code="10"} 2"#),
            "{t}"
        );
        assert!(
            t.contains(r#"rocketmq_rpc_latency_bucket{cluster="c",node_id="b",request="SendMessage",request_code="10",le="0.5"} 1"#),
            "{t}"
        );
        assert!(
            t.contains(r#"request="PullMessage",request_code="20"} 1"#),
            "{t}"
        );
    }

    #[test]
    fn pulls_sum_over_shards_and_keep_the_highest_offset() {
        super::super::set_recording();
        let m = Arc::new(BrokerMetrics::new("c", "b"));
        m.note_pull("g", "T", 2, 32, 3200, 32);
        let m2 = m.clone();
        std::thread::spawn(move || m2.note_pull("g", "T", 2, 8, 800, 40))
            .join()
            .unwrap();
        m.note_pull("g", "T", 0, 0, 0, 99); // nothing found: not counted
        let t = m.pull_totals();
        assert_eq!(t.len(), 1);
        assert_eq!(
            t[&("T".to_string(), "g".to_string(), 2)],
            QueuePulls {
                messages: 40,
                bytes: 4000,
                next_offset: 40
            }
        );
    }
}
