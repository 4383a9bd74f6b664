//! The `Sampler` actor: every `dashboard_sample_secs` it asks the NameServer
//! for the cluster and its topics and the brokers for their state, over the
//! admin RPCs (`GetReplicationStatus`, `GetBrokerRuntime`,
//! `GetScheduleStats`, `GetTopicStats`, `GetGroupList`,
//! `GetConsumeProgress`), and keeps the latest [`Snapshot`] and the
//! ten-minute [`History`]. One sample runs at a time; a tick that finds one
//! still running is skipped. A broker group is read from its master, or
//! from a slave when the master does not answer.
//!
//! Messages answered: [`GetSnapshot`], [`GetHistory`], [`Search`], and
//! `StopSampler` (from the dashboard's server handle, in [`super`], when
//! the NameServer stops) (+ the sample tick).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use actix::prelude::*;
use futures::stream::{self, StreamExt};
use skylark_codec::{
    BrokerData, ClusterInfo, GetBrokerRuntimeRequest, GetConsumeProgressRequest,
    GetGroupListRequest, GetReplicationStatusRequest, GetScheduleStatsRequest,
    GetTopicStatsRequest, ReplicationStatus,
};
use slog::{debug, Logger};

use super::brokers::BrokerPool;
use super::model::{
    self, AlertRules, BrokerRow, GroupQueueRow, GroupRow, History, PendingRow, Rates, Snapshot,
    TopicQueueRow, TopicRow,
};
use super::search::{self, MessageView, SearchError, SearchQuery};
use crate::namesrv::{GetClusterInfo, GetRouteInfo, GetTopicList, NameServer};

/// At most this many topics are sampled (by name); the rest are counted.
pub const MAX_SAMPLED_TOPICS: usize = 1000;
/// Requests in flight at once during a sample.
const PARALLEL: usize = 32;

/// Samples the cluster for the dashboard.
pub struct Sampler {
    ns: Addr<NameServer>,
    pool: BrokerPool,
    interval: Duration,
    rules: AlertRules,
    snapshot: Snapshot,
    history: History,
    rates: Rates,
    sampling: bool,
    log: Logger,
}

impl Sampler {
    pub fn new(
        ns: Addr<NameServer>,
        interval: Duration,
        rules: AlertRules,
        pool: BrokerPool,
        log: Logger,
    ) -> Self {
        Sampler {
            ns,
            pool,
            interval,
            rules,
            snapshot: Snapshot {
                sample_interval_ms: interval.as_millis() as u64,
                ..Snapshot::default()
            },
            history: History::default(),
            rates: Rates::default(),
            sampling: false,
            log,
        }
    }

    fn sample(&mut self, ctx: &mut Context<Self>) {
        if self.sampling {
            return;
        }
        self.sampling = true;
        let (ns, pool) = (self.ns.clone(), self.pool.clone());
        ctx.spawn(collect(ns, pool).into_actor(self).map(|snap, act, _| {
            act.sampling = false;
            act.apply(snap);
        }));
    }

    /// Adds rates, alerts and history to a fresh sample and keeps it.
    fn apply(&mut self, mut s: Snapshot) {
        let now = s.sampled_at_ms;
        let mut consumed: BTreeMap<&str, u64> = BTreeMap::new();
        for g in &mut s.groups {
            let sum: u64 = g.queues.iter().map(|q| q.consumer_offset).sum();
            g.tps = self.rates.rate(&format!("group:{}", g.group), now, sum);
            for q in &g.queues {
                *consumed.entry(q.topic.as_str()).or_default() += q.consumer_offset;
            }
        }
        let consumed: BTreeMap<String, u64> = consumed
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        for t in &mut s.topics {
            let put: u64 = t.queues.iter().map(|q| q.max_offset).sum();
            t.tps_in = self.rates.rate(&format!("in:{}", t.topic), now, put);
            if let Some(&c) = consumed.get(&t.topic) {
                t.tps_out = self.rates.rate(&format!("out:{}", t.topic), now, c);
            }
        }
        self.rates.sweep();
        s.sample_interval_ms = self.interval.as_millis() as u64;
        s.alerts = model::alerts(&s, self.rules);
        self.history.record(&s);
        let live: Vec<String> = s.brokers.iter().map(|b| b.addr.clone()).collect();
        self.pool.retain(&live);
        debug!(self.log, "dashboard sample"; "brokers" => s.brokers.len(),
            "topics" => s.topics.len(), "groups" => s.groups.len(), "errors" => s.errors.len());
        self.snapshot = s;
    }
}

impl Actor for Sampler {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        self.sample(ctx);
        ctx.run_interval(self.interval, |act, ctx| act.sample(ctx));
    }
    fn stopped(&mut self, _: &mut Self::Context) {
        self.pool.close_all();
    }
}

/// The latest sample.
#[derive(Message)]
#[rtype(result = "Snapshot")]
pub struct GetSnapshot;

/// The charts' series.
#[derive(Message)]
#[rtype(result = "History")]
pub struct GetHistory;

/// A message search, answered from the brokers.
#[derive(Message)]
#[rtype(result = "Result<Vec<MessageView>, SearchError>")]
pub struct Search(pub SearchQuery);

impl Handler<GetSnapshot> for Sampler {
    type Result = MessageResult<GetSnapshot>;
    fn handle(&mut self, _: GetSnapshot, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.snapshot.clone())
    }
}

impl Handler<GetHistory> for Sampler {
    type Result = MessageResult<GetHistory>;
    fn handle(&mut self, _: GetHistory, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.history.clone())
    }
}

impl Handler<Search> for Sampler {
    type Result = ResponseFuture<Result<Vec<MessageView>, SearchError>>;
    fn handle(&mut self, msg: Search, _: &mut Self::Context) -> Self::Result {
        Box::pin(search::run(self.ns.clone(), self.pool.clone(), msg.0))
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Where to read a broker group's data: its master if it answered, else
/// the first slave that did.
fn readers(info: &ClusterInfo, answered: &BTreeSet<String>) -> BTreeMap<String, String> {
    info.brokers
        .values()
        .filter_map(|b| {
            let addr = b.addrs.values().find(|a| answered.contains(*a))?;
            Some((b.broker_name.clone(), addr.clone()))
        })
        .collect()
}

/// One full sample of the cluster (without rates and alerts).
async fn collect(ns: Addr<NameServer>, pool: BrokerPool) -> Snapshot {
    let mut s = Snapshot {
        sampled_at_ms: now_ms(),
        ..Snapshot::default()
    };
    let (info, topics) = match (ns.send(GetClusterInfo).await, ns.send(GetTopicList).await) {
        (Ok(i), Ok(t)) => (i, t.topics),
        (Err(e), _) | (_, Err(e)) => {
            s.errors.push(format!("nameserver: {e}"));
            return s;
        }
    };
    let (answered, half) = brokers(&pool, &info, &mut s).await;
    let readers = readers(&info, &answered);
    pending(&pool, &info, &half, &mut s).await;
    topic_rows(&ns, &pool, &readers, topics, &mut s).await;
    group_rows(&pool, &readers, &mut s).await;
    s
}

/// Fills `s.brokers`; answers the addresses that answered and their
/// undecided half messages.
async fn brokers(
    pool: &BrokerPool,
    info: &ClusterInfo,
    s: &mut Snapshot,
) -> (BTreeSet<String>, BTreeMap<String, u64>) {
    let members: Vec<(&BrokerData, u64, &String)> = info
        .brokers
        .values()
        .flat_map(|b| b.addrs.iter().map(move |(id, a)| (b, *id, a)))
        .collect();
    let statuses: Vec<_> = stream::iter(members.iter().map(|&(_, _, addr)| async move {
        let status = pool.call(addr, &GetReplicationStatusRequest {}).await;
        // A broker that did not answer is not asked twice (two timeouts).
        let runtime = match &status {
            Ok(_) => Some(pool.call(addr, &GetBrokerRuntimeRequest {}).await),
            Err(_) => None,
        };
        (status, runtime)
    }))
    .buffered(PARALLEL)
    .collect()
    .await;
    // A slave's lag is its master's end minus its own, or the end the
    // master last reported to it when the master does not answer.
    let master_end = |name: &str| -> Option<u64> {
        members
            .iter()
            .zip(&statuses)
            .find(|((b, id, _), _)| b.broker_name == name && *id == 0)
            .and_then(|(_, (st, _))| st.as_ref().ok().map(|st| st.max_offset))
    };
    let (mut answered, mut half) = (BTreeSet::new(), BTreeMap::new());
    for ((b, id, addr), (status, runtime)) in members.iter().zip(&statuses) {
        let mut row = BrokerRow {
            cluster: b.cluster.clone(),
            broker_name: b.broker_name.clone(),
            broker_id: *id,
            addr: (*addr).clone(),
            ..BrokerRow::default()
        };
        match status {
            Ok(st) => {
                answered.insert((*addr).clone());
                fill_status(&mut row, st, master_end(&b.broker_name));
            }
            Err(e) => row.error = Some(e.clone()),
        }
        match runtime {
            Some(Ok(r)) => {
                row.disk_usage_ratio = Some(r.disk_usage_ratio);
                row.disk_hard_limit_ratio = Some(r.disk_hard_limit_ratio);
                row.damaged_records = Some(r.damaged_records);
                half.insert((*addr).clone(), r.half_pending);
            }
            Some(Err(e)) => s.errors.push(e.clone()),
            None => {}
        }
        s.brokers.push(row);
    }
    (answered, half)
}

fn fill_status(row: &mut BrokerRow, st: &ReplicationStatus, master_end: Option<u64>) {
    row.role = Some(st.role.clone());
    row.commit_log_end = Some(st.max_offset);
    if row.broker_id != 0 {
        let master = master_end.unwrap_or(st.master_max_offset);
        row.replication_lag = Some(master.saturating_sub(st.max_offset));
        row.master_connected = Some(st.master_connected);
    }
}

/// Fills `s.pending`: delayed and half messages of every master.
async fn pending(
    pool: &BrokerPool,
    info: &ClusterInfo,
    half: &BTreeMap<String, u64>,
    s: &mut Snapshot,
) {
    for b in info.brokers.values() {
        let Some(addr) = b.master_addr() else {
            continue;
        };
        let sched = match pool.call(addr, &GetScheduleStatsRequest {}).await {
            Ok(x) => x,
            Err(e) => {
                s.errors.push(e);
                continue;
            }
        };
        s.pending.push(PendingRow {
            broker_name: b.broker_name.clone(),
            addr: addr.to_string(),
            delayed_pending: sched.levels.iter().map(|l| l.pending).sum(),
            delay_levels: sched
                .levels
                .iter()
                .map(|l| (l.level, l.delay_ms, l.pending))
                .collect(),
            timer_pending: sched.timer_pending,
            half_pending: half.get(addr).copied(),
        });
    }
}

/// Fills `s.topics` from each hosting group's reader.
async fn topic_rows(
    ns: &Addr<NameServer>,
    pool: &BrokerPool,
    readers: &BTreeMap<String, String>,
    mut topics: Vec<String>,
    s: &mut Snapshot,
) {
    // The auto-create template is a route entry, not a stored topic.
    topics.retain(|t| t != crate::broker::AUTO_CREATE_TOPIC_KEY);
    topics.sort();
    if topics.len() > MAX_SAMPLED_TOPICS {
        s.topics_not_sampled = topics.len() - MAX_SAMPLED_TOPICS;
        topics.truncate(MAX_SAMPLED_TOPICS);
    }
    let rows: Vec<(TopicRow, Vec<String>)> =
        stream::iter(topics.into_iter().map(|topic| async move {
            let mut row = TopicRow {
                system: model::is_system_topic(&topic),
                topic,
                ..TopicRow::default()
            };
            let mut errors = Vec::new();
            let route = match ns.send(GetRouteInfo(row.topic.clone())).await {
                Ok(Some(r)) => r,
                Ok(None) => return (row, errors),
                Err(e) => {
                    errors.push(format!("nameserver: {e}"));
                    return (row, errors);
                }
            };
            let req = GetTopicStatsRequest {
                topic: row.topic.clone(),
            };
            for b in &route.brokers {
                let Some(addr) = readers.get(&b.broker_name) else {
                    continue;
                };
                match pool.call(addr, &req).await {
                    Ok(st) => {
                        row.read_queues += st.config.read_queues;
                        row.write_queues += st.config.write_queues;
                        row.queues.extend(st.queues.iter().map(|q| TopicQueueRow {
                            broker_name: b.broker_name.clone(),
                            queue_id: q.queue_id,
                            min_offset: q.min_offset,
                            max_offset: q.max_offset,
                        }));
                    }
                    Err(e) => errors.push(format!("topic {}: {e}", row.topic)),
                }
            }
            row.messages = row
                .queues
                .iter()
                .map(|q| q.max_offset.saturating_sub(q.min_offset))
                .sum();
            (row, errors)
        }))
        .buffered(PARALLEL)
        .collect()
        .await;
    for (row, errors) in rows {
        s.topics.push(row);
        s.errors.extend(errors);
    }
}

/// Fills `s.groups`: every group any reader knows, merged over the groups.
async fn group_rows(pool: &BrokerPool, readers: &BTreeMap<String, String>, s: &mut Snapshot) {
    let mut names = BTreeSet::new();
    for addr in readers.values() {
        match pool.call(addr, &GetGroupListRequest {}).await {
            Ok(l) => names.extend(l.groups),
            Err(e) => s.errors.push(e),
        }
    }
    let rows: Vec<(GroupRow, Vec<String>)> =
        stream::iter(names.into_iter().map(|group| async move {
            let mut row = GroupRow {
                group,
                ..GroupRow::default()
            };
            let mut members = BTreeSet::new();
            let mut errors = Vec::new();
            let req = GetConsumeProgressRequest {
                group: row.group.clone(),
            };
            for (name, addr) in readers {
                match pool.call(addr, &req).await {
                    Ok(p) => {
                        members.extend(p.client_ids);
                        row.queues
                            .extend(p.queues.into_iter().map(|q| GroupQueueRow {
                                lag: q.lag(),
                                topic: q.topic,
                                broker_name: name.clone(),
                                queue_id: q.queue_id,
                                broker_offset: q.broker_offset,
                                consumer_offset: q.consumer_offset,
                                last_commit_ms: q.last_commit_ms,
                            }));
                    }
                    Err(e) => errors.push(format!("group {}: {e}", row.group)),
                }
            }
            row.queues.sort_by(|a, b| {
                (&a.topic, &a.broker_name, a.queue_id).cmp(&(&b.topic, &b.broker_name, b.queue_id))
            });
            row.total_lag = row.queues.iter().map(|q| q.lag).sum();
            row.members = members.into_iter().collect();
            (row, errors)
        }))
        .buffered(PARALLEL)
        .collect()
        .await;
    for (row, errors) in rows {
        s.groups.push(row);
        s.errors.extend(errors);
    }
}
