//! The `Scheduler` actor: one per broker, delivers delayed messages.
//!
//! Two forms (see `docs/delay.md`):
//! * **Delay levels** (RocketMQ's `1s 5s ... 2h`, the `delay_levels` key):
//!   a delayed send is stored in [`SCHEDULE_TOPIC`], queue `level - 1`.
//!   Within a queue due times only grow (store time + the level's delay), so
//!   each tick delivers the due prefix of every level, in order, and then
//!   persists the per-level offsets in `<data_dir>/config/delay_offsets.json`.
//! * **Arbitrary time** (`deliver_at_ms`): the message is stored in
//!   [`TIMER_TOPIC`]; each tick enters new timer records into the on-disk
//!   [`TimerIndex`] (per-second bucket files under `<data_dir>/timer/`),
//!   delivers the due entries and persists the cursor.
//!
//! Delivery re-appends a copy (body and properties without the scheduling
//! ones) through the real topic's `TopicQueue`, so parked pulls wake.
//! Progress is persisted only after the appends succeeded: a kill -9 loses
//! nothing, and at worst re-delivers what the interrupted tick delivered.
//!
//! The actor runs on an Arbiter of its own ([`Scheduler::start_on`]): its
//! index and progress files are read, written and fsynced there.
//!
//! On a slave the Scheduler is **passive**: it never delivers (its CommitLog
//! is its master's byte for byte; the master's deliveries arrive through
//! it). It follows its master instead ([`FollowMaster`], from the metadata
//! sync): it takes the master's level offsets and timer cursor once its own
//! CommitLog durably holds every delivery they account for, indexes the
//! timer records the master has indexed, and moves its cursor only once
//! those are indexed. A slave promoted by hand (restarted with broker id 0)
//! then starts from its master's progress, and delivers again at most what
//! the master delivered after the last snapshot the slave applied.
//!
//! Messages answered: [`GetScheduleStats`], [`GetProgress`] (master: its
//! persisted progress, for a slave's metadata sync), [`FollowMaster`]
//! (slave) (+ the delivery tick).

pub mod delivery;
pub mod levels;
pub mod timer_index;

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use skylark_codec::{DelayLevelStats, ErrorCode, ScheduleProgress, ScheduleStats, WireError};
use slog::{error, info, warn, Logger};
use tokio::sync::oneshot;

use crate::broker::{Broker, EnsureTopic, TopicsView};
use crate::message_store::{decode, ReadResult, ReadStatus};
use crate::persist;
use crate::storage::{
    GetMessages, GetQueueOffsets, GetStorageStats, ReadAt, Storage, StoredMessage,
};
use crate::topic_queue::Append;
use delivery::delivery_copy;
use levels::LevelOffsets;
pub use levels::{SCHEDULE_TOPIC, TIMER_TOPIC};
use timer_index::{TimerEntry, TimerIndex, TimerProgress};

/// Records read from one schedule queue per tick.
const LEVEL_BATCH: u32 = 512;
/// Timer records indexed per tick.
const TIMER_INDEX_BATCH: u32 = 4096;
/// Timer entries delivered per tick.
const TIMER_DELIVER_BATCH: usize = 8192;
/// Concurrent record reads in flight while delivering.
const READ_CHUNK: usize = 512;
/// Master snapshots a slave keeps while its CommitLog is behind them.
const FOLLOW_BACKLOG: usize = 64;

/// What the send path needs to know about scheduling.
#[derive(Clone)]
pub struct SchedulerHandle {
    pub addr: Addr<Scheduler>,
    /// Delay of each level in ms (index 0 = level 1).
    pub levels: Arc<Vec<u64>>,
    pub max_delay_ms: u64,
}

/// The state owner of delayed delivery.
pub struct Scheduler {
    storage: Addr<Storage>,
    broker: Addr<Broker>,
    topics: TopicsView,
    levels: Arc<Vec<u64>>,
    level_offsets: LevelOffsets,
    /// Per level: the head is not due before this time (skip reading).
    level_head_due: BTreeMap<u32, i64>,
    offsets_path: PathBuf,
    timer: TimerIndex,
    max_delay_ms: u64,
    tick: Duration,
    busy: bool,
    /// A slave's scheduler follows its master's progress; it never delivers.
    passive: bool,
    /// Slave: master snapshots, oldest first, waiting for the local
    /// CommitLog to reach their `commit_log_end`.
    following: VecDeque<ScheduleProgress>,
    /// Slave: timer records below this queue offset were indexed by the
    /// master (index them here too); from the last snapshot taken.
    index_bound: u64,
    /// Slave: the snapshot taken whose timer cursor waits for the local
    /// index to reach its `timer_indexed_offset`.
    cursor_to_follow: Option<ScheduleProgress>,
    /// When the level offsets were last fsynced.
    levels_synced: std::time::Instant,
    log: Logger,
}

/// Pending counts per level and in the timer.
#[derive(Message)]
#[rtype(result = "ScheduleStats")]
pub struct GetScheduleStats;

/// Master: its persisted progress (`commit_log_end` is left 0 for the
/// caller, who reads the CommitLog end after this answer).
#[derive(Message)]
#[rtype(result = "ScheduleProgress")]
pub struct GetProgress;

/// Slave: the master's progress from a metadata sync.
#[derive(Message)]
#[rtype(result = "()")]
pub struct FollowMaster(pub ScheduleProgress);

/// What one tick read from the store.
struct Sources {
    levels: Vec<(u32, Result<ReadResult, WireError>)>,
    timer: Result<ReadResult, WireError>,
}

/// What one tick delivers and the progress to persist once it has.
#[derive(Default)]
struct Plan {
    /// Decoded messages to deliver, in order.
    messages: Vec<(i32, StoredMessage)>,
    /// Timer entries to read and deliver after `messages`.
    timer_entries: Vec<TimerEntry>,
    level_offsets: Vec<(u32, u64)>,
    timer_progress: Option<TimerProgress>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Scheduler {
    /// Opens the progress files and the timer index on `arbiter`'s thread
    /// and starts the actor there.
    pub async fn start_on(
        arbiter: &ArbiterHandle,
        config: &crate::config::BrokerConfig,
        storage: Addr<Storage>,
        broker: Addr<Broker>,
        topics: TopicsView,
        log: Logger,
    ) -> Result<SchedulerHandle, String> {
        let levels = Arc::new(levels::parse_delay_levels(&config.delay_levels)?);
        let data_dir = config.store.data_dir.clone();
        let (max_delay_ms, tick) = (config.max_delay_ms, config.schedule_tick_ms.max(1));
        // A slave's CommitLog is the master's byte for byte: it never
        // delivers (that would append on the slave); its master does.
        let passive = config.is_slave();
        let (tx, rx) = oneshot::channel();
        let lv = levels.clone();
        let spawned = arbiter.spawn(async move {
            let res = Scheduler::open(&data_dir).map(|(offsets, timer)| {
                Scheduler::create(move |_| Scheduler {
                    storage,
                    broker,
                    topics,
                    levels: lv,
                    level_offsets: offsets,
                    level_head_due: BTreeMap::new(),
                    offsets_path: data_dir.join("config").join("delay_offsets.json"),
                    timer,
                    max_delay_ms,
                    tick: Duration::from_millis(tick),
                    busy: false,
                    passive,
                    following: VecDeque::new(),
                    index_bound: 0,
                    cursor_to_follow: None,
                    levels_synced: std::time::Instant::now(),
                    log: log.new(slog::o!("actor" => "scheduler")),
                })
            });
            let _ = tx.send(res);
        });
        if !spawned {
            return Err("scheduler arbiter is gone".into());
        }
        let addr = rx
            .await
            .map_err(|_| "scheduler did not start".to_string())?
            .map_err(|e| format!("cannot open the scheduler's files: {e}"))?;
        Ok(SchedulerHandle {
            addr,
            levels,
            max_delay_ms,
        })
    }

    fn open(data_dir: &Path) -> std::io::Result<(LevelOffsets, TimerIndex)> {
        let offsets = persist::read_json(&data_dir.join("config").join("delay_offsets.json"))?
            .unwrap_or_default();
        let timer = TimerIndex::open(&data_dir.join("timer"))?;
        Ok((offsets, timer))
    }

    /// Reads new timer records and every level whose head may be due.
    fn read_sources(&self, now: i64) -> impl std::future::Future<Output = Sources> {
        let storage = self.storage.clone();
        let wanted: Vec<(u32, u64)> = (1..=self.levels.len() as u32)
            .filter(|l| self.level_head_due.get(l).is_none_or(|&t| t <= now))
            .map(|l| (l, self.level_offsets.get(&l).copied().unwrap_or(0)))
            .collect();
        let timer_from = self.timer.progress().indexed_offset;
        async move {
            let get = |topic: &str, queue_id: u32, from: u64, max: u32| {
                let f = storage.send(read_from(topic, queue_id, from, max));
                async move {
                    f.await
                        .map_err(crate::mailbox_error)?
                        .map_err(crate::store_error)
                }
            };
            let level_reads = wanted.iter().map(|&(l, from)| {
                let f = get(SCHEDULE_TOPIC, l - 1, from, LEVEL_BATCH);
                async move { (l, f.await) }
            });
            let (levels, timer) = futures::future::join(
                futures::future::join_all(level_reads),
                get(TIMER_TOPIC, 0, timer_from, TIMER_INDEX_BATCH),
            )
            .await;
            Sources { levels, timer }
        }
    }

    /// Turns what was read into a delivery plan: the due prefix of each
    /// level, and the timer's due entries after indexing the new records.
    fn plan(&mut self, src: Sources, now: i64) -> std::io::Result<Plan> {
        let mut plan = Plan::default();
        for (level, read) in src.levels {
            let read = match read {
                Ok(r) => r,
                Err(e) => {
                    warn!(self.log, "cannot read a delay level"; "level" => level, "error" => %e);
                    continue;
                }
            };
            self.plan_level(level, read, now, &mut plan);
        }
        self.plan_timer(src.timer, now, &mut plan)?;
        Ok(plan)
    }

    fn plan_level(&mut self, level: u32, read: ReadResult, now: i64, plan: &mut Plan) {
        let from = self.level_offsets.get(&level).copied().unwrap_or(0);
        if read.status == ReadStatus::OffsetTooSmall || read.status == ReadStatus::OffsetTooBig {
            plan.level_offsets.push((level, read.next_queue_offset));
            return;
        }
        let delay = self.levels.get(level as usize - 1).copied().unwrap_or(0) as i64;
        let records = read.records.to_bytes();
        let (mut buf, mut next) = (&records[..], from);
        self.level_head_due.remove(&level);
        while let Ok((d, n)) = decode(buf) {
            let due_at = d.store_timestamp.saturating_add(delay);
            if due_at > now {
                self.level_head_due.insert(level, due_at);
                break;
            }
            match delivery_copy(&d) {
                Some(m) => plan.messages.push(m),
                None => warn!(self.log, "schedule record without a real topic, dropped";
                    "offset" => d.physical_offset),
            }
            next = d.queue_offset + 1;
            buf = &buf[n..];
        }
        if next != from {
            plan.level_offsets.push((level, next));
        }
    }

    fn plan_timer(
        &mut self,
        read: Result<ReadResult, WireError>,
        now: i64,
        plan: &mut Plan,
    ) -> std::io::Result<()> {
        let mut progress = self.timer.progress();
        let mut changed = false;
        match read {
            Ok(r) => {
                let mut new_entries = Vec::new();
                let records = r.records.to_bytes();
                let mut buf = &records[..];
                while let Ok((d, n)) = decode(buf) {
                    let e = delivery::timer_entry(&d);
                    if self.timer.is_behind_cursor(&e) {
                        if let Some(m) = delivery_copy(&d) {
                            plan.messages.push(m);
                        }
                    } else {
                        new_entries.push(e);
                    }
                    buf = &buf[n..];
                }
                self.timer.add(&new_entries)?;
                if r.next_queue_offset != progress.indexed_offset {
                    progress.indexed_offset = r.next_queue_offset;
                    changed = true;
                }
            }
            Err(e) => warn!(self.log, "cannot read the timer topic"; "error" => %e),
        }
        let (due, complete) = self.timer.due(now, TIMER_DELIVER_BATCH)?;
        if complete && !due.is_empty() {
            (progress.cursor_at, progress.cursor_phys) = (now, u64::MAX);
        } else if let Some(last) = due.last() {
            (progress.cursor_at, progress.cursor_phys) = (last.deliver_at, last.physical_offset);
        }
        if changed || !due.is_empty() || !plan.messages.is_empty() {
            plan.timer_progress = Some(progress);
        }
        plan.timer_entries = due;
        Ok(())
    }

    /// Persists what a successful tick delivered.
    fn commit(&mut self, plan_offsets: Vec<(u32, u64)>, timer: Option<(TimerProgress, u64)>) {
        if !plan_offsets.is_empty() {
            let mut next = self.level_offsets.clone();
            next.extend(plan_offsets);
            let sync = self.levels_synced.elapsed() >= timer_index::SYNC_EVERY;
            match timer_index::replace_json(&self.offsets_path, &next, sync) {
                Ok(()) => {
                    self.level_offsets = next;
                    if sync {
                        self.levels_synced = std::time::Instant::now();
                    }
                }
                Err(e) => error!(self.log, "cannot persist delay offsets"; "error" => %e),
            }
        }
        if let Some((progress, delivered)) = timer {
            if let Err(e) = self.timer.commit(progress, delivered) {
                error!(self.log, "cannot persist the timer progress"; "error" => %e);
            }
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        self.busy = true;
        let started = std::time::Instant::now();
        let now = now_ms();
        let reads = self.read_sources(now);
        let fut = reads.into_actor(self).then(move |src, act, _| {
            let plan = act.plan(src, now);
            let deliver = Deliverer {
                storage: act.storage.clone(),
                broker: act.broker.clone(),
                topics: act.topics.clone(),
                log: act.log.clone(),
            };
            async move {
                let plan = plan.map_err(|e| format!("timer index: {e}"))?;
                deliver.run(plan).await
            }
            .into_actor(act)
        });
        ctx.spawn(fut.map(move |res, act, ctx| {
            act.busy = false;
            match res {
                Ok((offsets, timer)) => act.commit(offsets, timer),
                Err(e) => error!(act.log, "delayed delivery failed, retrying"; "error" => e),
            }
            // The next tick starts one interval after this one started, or
            // at once if this one took longer: a slow tick delays the next
            // by its overrun only, never by a whole skipped interval.
            let next = act.tick.saturating_sub(started.elapsed());
            ctx.run_later(next, |act, ctx| act.tick(ctx));
        }));
    }
}

impl Scheduler {
    /// Slave: one step of following the master. Applies the newest master
    /// snapshot the local CommitLog has caught up with, and indexes timer
    /// records up to what the master indexed, without delivering any.
    fn follow_tick(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        self.busy = true;
        let started = std::time::Instant::now();
        let storage = self.storage.clone();
        let need_end = !self.following.is_empty();
        let from = self.timer.progress().indexed_offset;
        let max = self
            .index_bound
            .saturating_sub(from)
            .min(TIMER_INDEX_BATCH as u64) as u32;
        let fut = async move {
            let end = match need_end {
                true => storage.send(GetStorageStats).await.ok(),
                false => None,
            };
            let read = match max {
                0 => None,
                _ => storage
                    .send(read_from(TIMER_TOPIC, 0, from, max))
                    .await
                    .ok()
                    .and_then(Result::ok),
            };
            // Durable on this broker, not just written: the progress taken
            // must survive whatever the copies it counts survive.
            (end.map(|s| s.flushed_offset), read)
        };
        ctx.spawn(fut.into_actor(self).map(move |(end, read), act, ctx| {
            act.busy = false;
            if let Some(end) = end {
                act.take_followed(end);
            }
            let more = match read.map(|r| act.index_followed(r)) {
                Some(Ok(more)) => more,
                Some(Err(e)) => {
                    error!(act.log, "cannot index the master's timer records"; "error" => %e);
                    false
                }
                None => false,
            };
            act.follow_cursor_once_indexed();
            let next = match more {
                true => Duration::ZERO,
                false => act.tick.saturating_sub(started.elapsed()),
            };
            ctx.run_later(next, |act, ctx| act.follow_tick(ctx));
        }));
    }

    /// Takes the newest snapshot whose deliveries the local CommitLog
    /// (durable up to `end`) holds, dropping the older ones: its level
    /// offsets apply at once; its timer cursor once the timer records it
    /// covers are indexed here ([`Scheduler::follow_cursor_once_indexed`]).
    fn take_followed(&mut self, end: u64) {
        let Some(snap) = take_applicable(&mut self.following, end) else {
            return;
        };
        let levels: LevelOffsets = snap.level_offsets.iter().copied().collect();
        if levels != self.level_offsets {
            match persist::write_json(&self.offsets_path, &levels) {
                Ok(()) => self.level_offsets = levels,
                Err(e) => error!(self.log, "cannot persist delay offsets"; "error" => %e),
            }
        }
        self.index_bound = self.index_bound.max(snap.timer_indexed_offset);
        self.cursor_to_follow = Some(snap);
    }

    /// Moves the timer cursor to the taken snapshot's once every timer
    /// record the master had indexed is indexed here too. Until then the
    /// older cursor stays: a slave promoted meanwhile never skips a record
    /// its index does not hold, it delivers it (at worst again).
    fn follow_cursor_once_indexed(&mut self) {
        let Some(snap) = &self.cursor_to_follow else {
            return;
        };
        if self.timer.progress().indexed_offset < snap.timer_indexed_offset {
            return;
        }
        match self
            .timer
            .follow_cursor(snap.timer_cursor_at, snap.timer_cursor_phys)
        {
            Ok(()) => self.cursor_to_follow = None,
            Err(e) => error!(self.log, "cannot persist the timer progress"; "error" => %e),
        }
    }

    /// Enters the timer records below `index_bound` (the master indexed
    /// them) into the local index; those behind the current cursor were
    /// delivered and are skipped. Answers whether more can be read at once.
    fn index_followed(&mut self, read: ReadResult) -> std::io::Result<bool> {
        let mut progress = self.timer.progress();
        let bound = self.index_bound;
        // Entries whose records retention deleted are skipped by the read
        // (`NoMatchedMessage` when all were): that is progress too.
        let next = read.next_queue_offset.min(bound);
        match read.status {
            ReadStatus::Found | ReadStatus::NoMatchedMessage | ReadStatus::OffsetTooSmall => {}
            _ => return Ok(false),
        }
        if next <= progress.indexed_offset {
            return Ok(false);
        }
        let mut entries = Vec::new();
        let records = read.records.to_bytes();
        let mut buf = &records[..];
        while let Ok((d, n)) = decode(buf) {
            buf = &buf[n..];
            let e = delivery::timer_entry(&d);
            if d.queue_offset < bound && !self.timer.is_behind_cursor(&e) {
                entries.push(e);
            }
        }
        self.timer.add(&entries)?;
        progress.indexed_offset = next;
        self.timer.commit(progress, 0)?;
        Ok(next < bound)
    }
}

/// The newest snapshot a CommitLog ending at `end` holds every delivery
/// of, removed with the older ones; the newer ones wait.
fn take_applicable(
    following: &mut VecDeque<ScheduleProgress>,
    end: u64,
) -> Option<ScheduleProgress> {
    let i = following.iter().rposition(|p| p.commit_log_end <= end)?;
    following.drain(..=i).next_back()
}

/// The asynchronous half of a tick: read timer records, append copies.
struct Deliverer {
    storage: Addr<Storage>,
    broker: Addr<Broker>,
    topics: TopicsView,
    log: Logger,
}

type Committed = (Vec<(u32, u64)>, Option<(TimerProgress, u64)>);

impl Deliverer {
    async fn run(self, plan: Plan) -> Result<Committed, String> {
        let mut messages = plan.messages;
        let delivered_from_buckets = plan.timer_entries.len() as u64;
        for chunk in plan.timer_entries.chunks(READ_CHUNK) {
            let reads = chunk.iter().map(|e| {
                self.storage.send(ReadAt {
                    physical_offset: e.physical_offset,
                    size: e.size,
                })
            });
            for (e, r) in chunk.iter().zip(futures::future::join_all(reads).await) {
                match r.map_err(|e| e.to_string())? {
                    Ok(bytes) => match decode(&bytes).ok().and_then(|(d, _)| delivery_copy(&d)) {
                        Some(m) => messages.push(m),
                        None => warn!(self.log, "timer record unreadable, dropped";
                            "offset" => e.physical_offset),
                    },
                    Err(crate::message_store::StoreError::NoRecord(o)) => {
                        warn!(self.log, "timer record gone (retention), dropped"; "offset" => o)
                    }
                    Err(err) => return Err(err.to_string()),
                }
            }
        }
        self.append_all(messages).await?;
        Ok((
            plan.level_offsets,
            plan.timer_progress.map(|p| (p, delivered_from_buckets)),
        ))
    }

    /// Appends runs of messages with the same topic and queue as batches.
    async fn append_all(&self, messages: Vec<(i32, StoredMessage)>) -> Result<(), String> {
        let mut batch: Vec<StoredMessage> = Vec::new();
        let mut key: Option<(Arc<str>, i32)> = None;
        for (q, m) in messages {
            let k = (m.topic.clone(), q);
            if key.as_ref() != Some(&k) || batch.len() >= 256 {
                if let Some((t, q)) = key.take() {
                    self.append(&t, q, std::mem::take(&mut batch)).await?;
                }
                key = Some(k);
            }
            batch.push(m);
        }
        if let Some((t, q)) = key {
            self.append(&t, q, batch).await?;
        }
        Ok(())
    }

    async fn append(
        &self,
        topic: &str,
        queue_id: i32,
        messages: Vec<StoredMessage>,
    ) -> Result<(), String> {
        let tq = match self.topics.get(topic) {
            Some(a) => Ok(a.clone()),
            None => self
                .broker
                .send(EnsureTopic {
                    name: topic.to_string(),
                    auto_create: false,
                })
                .await
                .map_err(|e| e.to_string())?,
        };
        let res = match tq {
            Ok(tq) => tq
                .addr
                .send(Append { queue_id, messages })
                .await
                .map_err(|e| e.to_string())?,
            Err(e) => Err(e),
        };
        match res {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.code,
                    ErrorCode::TopicNotFound | ErrorCode::BadRequest | ErrorCode::PermissionDenied
                ) =>
            {
                warn!(self.log, "delayed messages cannot be delivered, dropped";
                    "topic" => topic, "error" => %e);
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        }
    }
}

/// A read of up to `max` records (8 MiB) of a schedule or timer queue from
/// `from`, unfiltered and never parked.
fn read_from(topic: &str, queue_id: u32, from: u64, max: u32) -> GetMessages {
    GetMessages {
        topic: topic.to_string(),
        queue_id,
        queue_offset: from,
        max_messages: max,
        max_bytes: 8 << 20,
        tag_filter: None,
        sql_filter: None,
        park: None,
    }
}

impl Actor for Scheduler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(256);
        info!(self.log, "scheduler started"; "levels" => self.levels.len(),
            "timer_pending" => self.timer.pending(), "passive" => self.passive);
        if self.passive {
            ctx.run_later(self.tick, |act, ctx| act.follow_tick(ctx));
        } else {
            ctx.run_later(self.tick, |act, ctx| act.tick(ctx));
        }
    }
}

impl Handler<GetScheduleStats> for Scheduler {
    type Result = ResponseFuture<ScheduleStats>;

    fn handle(&mut self, _: GetScheduleStats, _: &mut Self::Context) -> Self::Result {
        let storage = self.storage.clone();
        let levels = self.levels.clone();
        let offsets = self.level_offsets.clone();
        let progress = self.timer.progress();
        let indexed = self.timer.pending();
        let max_delay_ms = self.max_delay_ms;
        Box::pin(async move {
            // Timer records not indexed yet are pending too.
            let (_, timer_max) = storage
                .send(GetQueueOffsets {
                    topic: TIMER_TOPIC.into(),
                    queue_id: 0,
                })
                .await
                .unwrap_or((0, 0));
            let timer_pending = indexed + timer_max.saturating_sub(progress.indexed_offset);
            let mut out = Vec::with_capacity(levels.len());
            for (i, &delay_ms) in levels.iter().enumerate() {
                let level = i as u32 + 1;
                let (_, max) = storage
                    .send(GetQueueOffsets {
                        topic: SCHEDULE_TOPIC.into(),
                        queue_id: i as u32,
                    })
                    .await
                    .unwrap_or((0, 0));
                let delivered = offsets.get(&level).copied().unwrap_or(0);
                out.push(DelayLevelStats {
                    level,
                    delay_ms,
                    pending: max.saturating_sub(delivered),
                    delivered_offset: delivered,
                });
            }
            ScheduleStats {
                levels: out,
                timer_pending,
                timer_delivered_up_to_ms: progress.cursor_at,
                max_delay_ms,
            }
        })
    }
}

impl Handler<GetProgress> for Scheduler {
    type Result = MessageResult<GetProgress>;

    fn handle(&mut self, _: GetProgress, _: &mut Self::Context) -> Self::Result {
        let t = self.timer.progress();
        MessageResult(ScheduleProgress {
            level_offsets: self.level_offsets.iter().map(|(&l, &o)| (l, o)).collect(),
            timer_indexed_offset: t.indexed_offset,
            timer_cursor_at: t.cursor_at,
            timer_cursor_phys: t.cursor_phys,
            commit_log_end: 0,
        })
    }
}

impl Handler<FollowMaster> for Scheduler {
    type Result = ();

    fn handle(&mut self, m: FollowMaster, _: &mut Self::Context) {
        if !self.passive {
            warn!(self.log, "a master's scheduler does not follow another");
            return;
        }
        if self.following.len() == FOLLOW_BACKLOG {
            self.following.pop_front();
        }
        self.following.push_back(m.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::PutMessages;
    use levels::{PROPERTY_DELIVER_AT, PROPERTY_REAL_QID, PROPERTY_REAL_TOPIC};

    fn timer_record(deliver_at: i64) -> StoredMessage {
        StoredMessage {
            properties: vec![
                (PROPERTY_REAL_TOPIC.into(), "Real".into()),
                (PROPERTY_REAL_QID.into(), "0".into()),
                (PROPERTY_DELIVER_AT.into(), deliver_at.to_string()),
            ],
            ..crate::storage::test_message(TIMER_TOPIC, 0, b"later")
        }
    }

    async fn wait_for(
        sched: &Addr<Scheduler>,
        what: &str,
        mut ok: impl FnMut(&ScheduleStats) -> bool,
    ) -> ScheduleStats {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let st = sched.send(GetScheduleStats).await.unwrap();
            if ok(&st) {
                return st;
            }
            assert!(std::time::Instant::now() < deadline, "{what}: {st:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A passive (slave) Scheduler: a snapshot waits for the durable
    /// CommitLog end; then the levels apply, the timer records below the
    /// master's indexed offset (and only those) are indexed, and the cursor
    /// follows once they are, counting what it passes as delivered.
    #[actix_rt::test]
    async fn a_slave_scheduler_follows_its_master_within_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = crate::config::BrokerConfig {
            broker_id: 1,
            ..Default::default()
        };
        config.store = crate::message_store::config::StoreConfig {
            segment_size: 1 << 20,
            flush_interval_ms: 10,
            ..crate::message_store::config::StoreConfig::new(dir.path())
        };
        let config = Arc::new(config);
        let log = Logger::root(slog::Discard, slog::o!());
        let (storage_arbiter, sched_arbiter) = (Arbiter::new(), Arbiter::new());
        let storage =
            Storage::start_on(&storage_arbiter.handle(), config.store.clone(), log.clone())
                .await
                .unwrap();
        let broker = Broker::new(config.clone(), storage.clone(), log.clone()).unwrap();
        let registry = broker.topics_view();
        let broker = broker.start();
        let handle = Scheduler::start_on(
            &sched_arbiter.handle(),
            &config,
            storage.clone(),
            broker,
            registry,
            log,
        )
        .await
        .unwrap();
        let sched = handle.addr;
        // Six timer records (as replicated from the master), due at 1..6 s.
        let put = storage
            .send(PutMessages {
                messages: (1..=6).map(|i| timer_record(i * 1000)).collect(),
            })
            .await
            .unwrap()
            .unwrap();
        let end = put.end_offset;
        let st = sched.send(GetScheduleStats).await.unwrap();
        assert_eq!(st.timer_pending, 6, "nothing indexed yet");

        // Two syncs: the first within this slave's CommitLog (once flushed),
        // the second past its end.
        let snap = |level, indexed, cursor_at, commit_log_end| ScheduleProgress {
            level_offsets: vec![(1, level)],
            timer_indexed_offset: indexed,
            timer_cursor_at: cursor_at,
            timer_cursor_phys: u64::MAX,
            commit_log_end,
        };
        sched.do_send(FollowMaster(snap(5, 4, 2000, end)));
        sched.do_send(FollowMaster(snap(6, 6, 6000, end + 1)));
        let st = wait_for(&sched, "never followed", |st| {
            st.levels[0].delivered_offset == 5 && st.timer_delivered_up_to_ms == 2000
        })
        .await;
        // Records due at 1 s and 2 s were delivered by the master; 3 s and
        // 4 s are indexed and pending; 5 s and 6 s the master had not
        // indexed (pending, not indexed here either).
        assert_eq!(st.timer_pending, 4);
        let read_progress = || -> TimerProgress {
            persist::read_json(&dir.path().join("timer").join("progress.json"))
                .unwrap()
                .unwrap()
        };
        assert_eq!(read_progress().indexed_offset, 4, "indexed past the master");

        // The CommitLog grows past the second sync's end: it applies.
        let last_put = storage
            .send(PutMessages {
                messages: vec![timer_record(7000)],
            })
            .await
            .unwrap()
            .unwrap();
        let st = wait_for(&sched, "second sync never applied", |st| {
            st.levels[0].delivered_offset == 6 && st.timer_delivered_up_to_ms == 6000
        })
        .await;
        assert_eq!(st.timer_pending, 1, "only the record the master never saw");
        let progress = read_progress();
        assert_eq!(progress.indexed_offset, 6);
        assert_eq!((progress.cursor_at, progress.cursor_phys), (6000, u64::MAX));
        let levels: LevelOffsets =
            persist::read_json(&dir.path().join("config").join("delay_offsets.json"))
                .unwrap()
                .unwrap();
        assert_eq!(levels.get(&1), Some(&6));
        // It delivered nothing: the CommitLog ends with the test's own put.
        let stats = storage.send(GetStorageStats).await.unwrap();
        assert_eq!(stats.max_physical_offset, last_put.end_offset);
        storage_arbiter.stop();
        sched_arbiter.stop();
    }

    fn snap(end: u64) -> ScheduleProgress {
        ScheduleProgress {
            commit_log_end: end,
            ..ScheduleProgress::default()
        }
    }

    #[test]
    fn a_snapshot_applies_only_once_the_commit_log_holds_its_deliveries() {
        let mut q: VecDeque<_> = [snap(100), snap(200), snap(300)].into();
        assert_eq!(take_applicable(&mut q, 99), None);
        assert_eq!(q.len(), 3);
        assert_eq!(take_applicable(&mut q, 250), Some(snap(200)));
        assert_eq!(q, VecDeque::from([snap(300)]));
        assert_eq!(take_applicable(&mut q, 299), None);
        assert_eq!(take_applicable(&mut q, 300), Some(snap(300)));
        assert!(q.is_empty());
    }
}
