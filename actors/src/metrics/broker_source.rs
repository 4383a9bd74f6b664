//! A broker's scrape: every value computed now from state its owners keep
//! (docs/architecture.md, "Actors"), each asked once by message, plus the
//! request-path shards of [`BrokerMetrics`]. Nothing here runs per message.
//!
//! | asked | gives |
//! |---|---|
//! | Storage [`GetTopicPuts`] | messages and body bytes in per topic since start |
//! | Storage [`ListQueues`] | every queue's max offset (lag, `skylark_queue_max_offset`) |
//! | Storage [`GetStorageStats`] | CommitLog size, flush backlog, disk-full flag |
//! | ConsumerOffsets [`SnapshotOffsets`] | committed offsets (lag, inflight) |
//! | Scheduler `GetScheduleStats` | delayed messages pending per level |
//! | Transaction [`GetTransactionStats`] | half messages pending |
//! | Replicator [`GetStatus`] | slaves' acked offsets / the master's end |
//!
//! The alerts are 0/1 gauges: a group's lag on a topic above
//! `metrics_lag_alert_threshold`; a slave behind whose acked offset has not
//! moved for `metrics_replication_stall_secs` (or a slave not connected to
//! its master); disk usage at or above the write-refusal ratio.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use actix::Addr;
use futures::future::LocalBoxFuture;
use prometheus::proto::MetricFamily;
use skylark_codec::{OffsetEntry, ReplicationStatus, ScheduleStats};

use super::broker::{BrokerMetrics, PullTotals};
use super::families::Families;
use crate::broker::TopicsView;
use crate::config::BrokerConfig;
use crate::consumer_offsets::{ConsumerOffsets, SnapshotOffsets};
use crate::group_registry::GroupsView;
use crate::message_store::{DiskUsage, QueueInfo, StatvfsDiskUsage};
use crate::replicator::{GetStatus, Replicator};
use crate::scheduler::{GetScheduleStats, Scheduler};
use crate::storage::{GetStorageStats, GetTopicPuts, ListQueues, Storage, StorageStats, TopicPuts};
use crate::transaction::{GetTransactionStats, Transaction};

/// The owners a broker's scrape asks.
pub struct BrokerOwners {
    pub storage: Addr<Storage>,
    pub offsets: Addr<ConsumerOffsets>,
    pub replicator: Addr<Replicator>,
    pub scheduler: Addr<Scheduler>,
    pub transaction: Addr<Transaction>,
    pub topics: TopicsView,
    pub groups: GroupsView,
}

/// A broker as a [`super::Source`].
pub struct BrokerSource(Arc<Inner>);

struct Inner {
    config: Arc<BrokerConfig>,
    metrics: Arc<BrokerMetrics>,
    owners: BrokerOwners,
    /// Per slave: the acked offset last seen and since when it has not moved.
    stalls: Mutex<HashMap<String, (u64, Instant)>>,
}

/// What one scrape learned from the owners (`None`: that owner did not answer).
#[derive(Default)]
struct Snapshot {
    puts: Vec<(String, TopicPuts)>,
    queues: Vec<QueueInfo>,
    stats: Option<StorageStats>,
    offsets: Vec<OffsetEntry>,
    schedule: Option<ScheduleStats>,
    half_pending: Option<usize>,
    replication: Option<ReplicationStatus>,
    disk_ratio: Option<f64>,
    /// Live members (consumer connections) per consumer group.
    group_members: Vec<(String, usize)>,
}

impl BrokerSource {
    pub fn new(
        config: Arc<BrokerConfig>,
        metrics: Arc<BrokerMetrics>,
        owners: BrokerOwners,
    ) -> BrokerSource {
        BrokerSource(Arc::new(Inner {
            config,
            metrics,
            owners,
            stalls: Mutex::default(),
        }))
    }
}

impl super::Source for BrokerSource {
    fn collect(&self) -> LocalBoxFuture<'static, Vec<MetricFamily>> {
        let inner = self.0.clone();
        Box::pin(async move {
            let snap = inner.snapshot().await;
            inner.families(&snap)
        })
    }
}

impl Inner {
    async fn snapshot(&self) -> Snapshot {
        let o = &self.owners;
        let (puts, queues, stats, offsets, schedule, half, replication) = futures::join!(
            o.storage.send(GetTopicPuts),
            o.storage.send(ListQueues),
            o.storage.send(GetStorageStats),
            o.offsets.send(SnapshotOffsets),
            o.scheduler.send(GetScheduleStats),
            o.transaction.send(GetTransactionStats),
            o.replicator.send(GetStatus),
        );
        let groups: Vec<_> = o
            .groups
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect();
        let group_members =
            futures::future::join_all(groups.into_iter().map(|(g, addr)| async move {
                addr.send(crate::consumer_group::GetMembers)
                    .await
                    .ok()
                    .map(|m| (g, m.len()))
            }))
            .await
            .into_iter()
            .flatten()
            .collect();
        Snapshot {
            group_members,
            puts: puts.unwrap_or_default(),
            queues: queues.unwrap_or_default(),
            stats: stats.ok(),
            offsets: offsets.unwrap_or_default(),
            schedule: schedule.ok(),
            half_pending: half.ok().map(|h| h.pending),
            replication: replication.ok(),
            // One statvfs(2): quick, and off every actor's thread.
            disk_ratio: StatvfsDiskUsage
                .usage_ratio(&self.config.store.data_dir)
                .ok(),
        }
    }

    fn families(&self, s: &Snapshot) -> Vec<MetricFamily> {
        let c = &self.config;
        let node_id = c.broker_name.clone();
        let mut f = Families::new(&[
            ("cluster", c.cluster_name.as_str()),
            ("node_id", node_id.as_str()),
        ]);
        self.traffic(&mut f, s);
        self.consumers(&mut f, s);
        self.storage(&mut f, s);
        self.replication(&mut f, s);
        if let Some(sched) = &s.schedule {
            let mut rows: Vec<([String; 1], f64)> = sched
                .levels
                .iter()
                .map(|l| ([l.level.to_string()], l.pending as f64))
                .collect();
            rows.push((["timer".to_string()], sched.timer_pending as f64));
            f.gauge(
                "skylark_delayed_messages_pending",
                "Delayed messages stored and not delivered yet, by delay level (\"timer\": arbitrary-time).",
                &["delay_level"],
                rows,
            );
        }
        if let Some(n) = s.half_pending {
            f.gauge(
                "skylark_half_messages_pending",
                "Transactional half messages neither committed nor rolled back.",
                &[],
                [([] as [&str; 0], n as f64)],
            );
        }
        f.gauge(
            "rocketmq_topic_number",
            "Topics on this broker.",
            &[],
            [([] as [&str; 0], self.owners.topics.len() as f64)],
        );
        f.gauge(
            "rocketmq_consumer_group_number",
            "Consumer groups with members on this broker.",
            &[],
            // Every group seen has an actor, members or not.
            [(
                [] as [&str; 0],
                s.group_members.iter().filter(|(_, n)| *n > 0).count() as f64,
            )],
        );
        f.gauge(
            "rocketmq_consumer_connections",
            "Consumer clients (live members, by heartbeat) of each consumer group on this broker.",
            &["consumer_group"],
            s.group_members
                .iter()
                .map(|(g, n)| ([g.as_str()], *n as f64)),
        );
        f.extend(self.metrics.latency_families());
        f.finish()
    }

    fn traffic(&self, f: &mut Families, s: &Snapshot) {
        f.counter(
            "rocketmq_messages_in_total",
            "Messages stored per topic since the broker started.",
            &["topic"],
            s.puts.iter().map(|(t, p)| ([t.as_str()], p.messages)),
        );
        f.counter(
            "rocketmq_throughput_in_total",
            "Message body bytes stored per topic since the broker started.",
            &["topic"],
            s.puts.iter().map(|(t, p)| ([t.as_str()], p.bytes)),
        );
        let pulls = self.metrics.pull_totals();
        let per_group = sum_by_topic_group(&pulls);
        f.counter(
            "rocketmq_messages_out_total",
            "Messages delivered to consumers by pulls, per topic and group, since start.",
            &["topic", "consumer_group"],
            per_group
                .iter()
                .map(|((t, g), (m, _))| ([t.as_str(), g.as_str()], *m)),
        );
        f.counter(
            "rocketmq_throughput_out_total",
            "Stored record bytes delivered to consumers by pulls, per topic and group.",
            &["topic", "consumer_group"],
            per_group
                .iter()
                .map(|((t, g), (_, b))| ([t.as_str(), g.as_str()], *b)),
        );
        f.gauge(
            "skylark_queue_max_offset",
            "Next queue offset to be written (messages ever stored in the queue).",
            &["topic", "queue_id"],
            s.queues.iter().map(|q| {
                (
                    [q.topic.clone(), q.queue_id.to_string()],
                    q.max_offset as f64,
                )
            }),
        );
    }

    fn consumers(&self, f: &mut Families, s: &Snapshot) {
        let bounds: HashMap<(&str, u32), (u64, u64)> = s
            .queues
            .iter()
            .map(|q| ((q.topic.as_str(), q.queue_id), (q.min_offset, q.max_offset)))
            .collect();
        let pulls = self.metrics.pull_totals();
        let mut lag_rows = Vec::new();
        let mut inflight_rows = Vec::new();
        let mut per_group: HashMap<(&str, &str), u64> = HashMap::new();
        for e in &s.offsets {
            let Some(&(min, end)) = bounds.get(&(e.topic.as_str(), e.queue_id)) else {
                continue;
            };
            let lag = skylark_codec::queue_lag(end, e.offset, min);
            let labels = [e.topic.clone(), e.group.clone(), e.queue_id.to_string()];
            let pulled = pulls
                .get(&(e.topic.clone(), e.group.clone(), e.queue_id))
                .map_or(0, |p| p.next_offset);
            inflight_rows.push((labels.clone(), pulled.saturating_sub(e.offset) as f64));
            lag_rows.push((labels, lag as f64));
            *per_group.entry((&e.topic, &e.group)).or_default() += lag;
        }
        let labels = &["topic", "consumer_group", "queue_id"];
        f.gauge(
            "rocketmq_consumer_lag_messages",
            "Messages stored in the queue beyond the group's committed offset (from the queue's min offset when the group committed below it).",
            labels,
            lag_rows,
        );
        f.gauge(
            "rocketmq_consumer_inflight_messages",
            "Messages pulled by the group beyond its committed offset (delivered, not acknowledged).",
            labels,
            inflight_rows,
        );
        let threshold = self.config.metrics_lag_alert_threshold;
        if threshold > 0 {
            f.gauge(
                "skylark_alert_consumer_lag",
                "1 while the group's lag on the topic (all queues) is above metrics_lag_alert_threshold.",
                &["topic", "consumer_group"],
                per_group
                    .iter()
                    .map(|((t, g), lag)| ([*t, *g], f64::from(u8::from(*lag > threshold)))),
            );
            f.gauge(
                "skylark_alert_consumer_lag_threshold",
                "The configured lag alert threshold (metrics_lag_alert_threshold).",
                &[],
                [([] as [&str; 0], threshold as f64)],
            );
        }
    }

    fn storage(&self, f: &mut Families, s: &Snapshot) {
        let hard = self.config.store.disk_hard_limit_ratio;
        if let Some(st) = &s.stats {
            let one = |x: u64| [([] as [&str; 0], x as f64)];
            f.gauge(
                "rocketmq_storage_size",
                "Bytes of CommitLog kept (its end minus its first retained offset).",
                &[],
                one(st
                    .max_physical_offset
                    .saturating_sub(st.min_physical_offset)),
            );
            f.gauge(
                "rocketmq_storage_flush_behind_bytes",
                "CommitLog bytes written but not yet fsynced.",
                &[],
                one(st.max_physical_offset.saturating_sub(st.flushed_offset)),
            );
            f.gauge(
                "skylark_commitlog_max_offset",
                "CommitLog end (physical offset).",
                &[],
                one(st.max_physical_offset),
            );
            f.gauge(
                "skylark_store_damaged_records",
                "Damaged CommitLog records known since start: ranges recovery skipped plus records reads refused to serve.",
                &[],
                one(st.damaged_records),
            );
            f.gauge(
                "skylark_alert_damaged_records",
                "1 while the broker knows of a damaged CommitLog record (skylark_store_damaged_records > 0).",
                &[],
                one(u64::from(st.damaged_records > 0)),
            );
        }
        if let Some(r) = s.disk_ratio {
            f.gauge(
                "skylark_disk_usage_ratio",
                "Used fraction of the file system holding the data directory.",
                &[],
                [([] as [&str; 0], r)],
            );
        }
        f.gauge(
            "skylark_disk_write_refusal_ratio",
            "Disk usage ratio at and above which appends are refused (store.disk_hard_limit_ratio).",
            &[],
            [([] as [&str; 0], hard)],
        );
        let full =
            s.stats.is_some_and(|st| st.disk_full) || s.disk_ratio.is_some_and(|r| r >= hard);
        f.gauge(
            "skylark_alert_disk_full",
            "1 while disk usage is at or above the write-refusal ratio (appends refused).",
            &[],
            [([] as [&str; 0], f64::from(u8::from(full)))],
        );
    }

    fn replication(&self, f: &mut Families, s: &Snapshot) {
        let Some(r) = &s.replication else {
            return;
        };
        let stall =
            std::time::Duration::from_secs(self.config.metrics_replication_stall_secs.max(1));
        let now = Instant::now();
        let mut lag_rows = Vec::new();
        let mut alert_rows = Vec::new();
        let mut stalls = self.stalls.lock().unwrap_or_else(|e| e.into_inner());
        let mut seen = Vec::new();
        let mut track = |name: String, acked: u64, behind: u64| {
            let since = match stalls.get(&name) {
                Some(&(prev, since)) if prev == acked => since,
                _ => now,
            };
            stalls.insert(name.clone(), (acked, since));
            seen.push(name.clone());
            let stalled = behind > 0 && now.duration_since(since) >= stall;
            lag_rows.push(([name.clone()], behind as f64));
            alert_rows.push(([name], f64::from(u8::from(stalled))));
        };
        // Keyed by the slave's broker id (a reconnect continues its series);
        // a slave that predates names by its HA connection's address.
        let mut info_rows = Vec::new();
        if self.config.is_slave() {
            let me = self.config.broker_id.to_string();
            info_rows.push((
                [
                    me.clone(),
                    self.config.broker_name.clone(),
                    self.config.advertised(),
                ],
                1.0,
            ));
            let behind = r.master_max_offset.saturating_sub(r.max_offset);
            if r.master_connected {
                track(me, r.max_offset, behind);
            } else {
                lag_rows.push(([me.clone()], behind as f64));
                alert_rows.push(([me], 1.0));
            }
        } else {
            for sl in &r.slaves {
                let key = sl
                    .broker_id
                    .map_or_else(|| sl.addr.clone(), |b| b.to_string());
                if let (Some(name), Some(addr)) = (&sl.broker_name, &sl.broker_addr) {
                    info_rows.push(([key.clone(), name.clone(), addr.clone()], 1.0));
                }
                track(
                    key,
                    sl.acked_offset,
                    r.max_offset.saturating_sub(sl.acked_offset),
                );
            }
        }
        stalls.retain(|k, _| seen.contains(k));
        drop(stalls);
        f.gauge(
            "skylark_replication_lag_bytes",
            "CommitLog bytes a slave is behind its master (on a master: per connected slave; on a slave: itself), by the slave's broker id.",
            &["slave"],
            lag_rows,
        );
        f.gauge(
            "skylark_replication_slave_info",
            "1 per slave (on a master: each connected slave; on a slave: itself): its broker id, broker name and advertised address.",
            &["slave", "broker_name", "addr"],
            info_rows,
        );
        f.gauge(
            "skylark_alert_slave_not_replicating",
            "1 while a slave is behind and its acked offset has not moved for metrics_replication_stall_secs, or (on a slave) its master connection is down.",
            &["slave"],
            alert_rows,
        );
    }
}

/// Messages and bytes pulled per `(topic, group)`.
fn sum_by_topic_group(p: &PullTotals) -> HashMap<(String, String), (u64, u64)> {
    let mut out: HashMap<(String, String), (u64, u64)> = HashMap::new();
    for ((t, g, _), q) in p {
        let e = out.entry((t.clone(), g.clone())).or_default();
        e.0 += q.messages;
        e.1 += q.bytes;
    }
    out
}
