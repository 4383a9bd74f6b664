//! The Storage actor: the only owner of the broker's mapped files at run time.
//!
//! It wraps a [`Store`] (CommitLog, ConsumeQueues, checkpoint, flusher) and
//! runs on a dedicated `Arbiter` of its own ([`Storage::start_on`]), so that
//! writes into mapped memory and page faults never stall a shared async
//! thread; fsync happens on the store's flusher thread.
//!
//! * Async flush: `PutMessages` is answered as soon as the batch is in the
//!   page cache; a timer asks the flusher to flush and checkpoint every
//!   `flush_interval_ms`.
//! * Sync flush: `PutMessages` appends, then returns a future waiting for the
//!   flusher's answer, so the actor goes on appending other batches while the
//!   fsync runs. Every batch queued meanwhile is answered by the next single
//!   fsync: group commit. A flush slower than `sync_flush_timeout_ms`
//!   answers with `flush_timed_out = true` (data stored, RocketMQ's
//!   `FLUSH_DISK_TIMEOUT`).
//! * [`PutGroups`] is the send path: the sends one connection thread decoded
//!   together arrive as one message, each appended on its own (one bad send
//!   fails only itself) and covered by one flush request, whose receiver
//!   goes back to the caller so that the fsync is awaited on the caller's
//!   thread, not here.
//! * Long polling: a [`GetMessages`] that finds nothing new parks its waker
//!   here ([`arrivals`]), and every append (local, replicated, scheduled,
//!   transactional) wakes the pulls parked on the queues it reached.
//! * A retention timer deletes expired files (`clean_interval_ms`).
//!
//! Messages answered: [`PutMessages`], [`PutGroups`], [`GetMessages`],
//! [`QueryByKey`], [`QueryByTime`], [`ReadAt`], [`GetQueueOffsets`],
//! [`QueueOffsetByTime`], [`ListQueues`], [`RunRetention`],
//! [`GetStorageStats`], [`GetTopicActivity`], [`GetTopicPuts`], [`SubscribeAppends`],
//! [`status::GetRuntimeStatus`],
//! [`ReadCommitLog`], [`AppendReplicated`], [`DropTopic`], [`Shutdown`].

pub mod arrivals;
pub mod status;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use slog::{error, info, o, Logger};
use tokio::sync::{oneshot, watch};

use crate::filter::SqlFilter;
use crate::message_store::{
    AppendBatchResult, AppendMessage, AppendResult, FlushMode, FlushReply, KeyWindow, MessageOf,
    QueueInfo, ReadResult, ReadStatus, RetentionReport, Store, StoreConfig, StoreError,
};
use arrivals::ParkedPulls;

/// Mailbox bound of the Storage actor (actix's default is 16).
pub const MAILBOX_CAPACITY: usize = 4096;

/// The actor owning the [`Store`].
pub struct Storage {
    store: Option<Store>,
    /// The CommitLog end after the latest append: whoever streams the log
    /// (a master's HA sessions) waits on it ([`SubscribeAppends`]).
    appended: watch::Sender<u64>,
    /// Long-poll pulls waiting for their queue to grow.
    parked: ParkedPulls,
    /// Messages and body bytes appended per topic since start (topic
    /// stats, metrics).
    puts: HashMap<String, TopicPuts>,
    /// [`PutGroups`] handled.
    put_batches: u64,
    /// Message counters and their samples ([`status`]).
    runtime: status::RuntimeCounters,
    log: Logger,
    flush_mode: FlushMode,
    sync_flush_timeout: Duration,
    flush_interval: Duration,
    clean_interval: Duration,
}

/// An owned message to store: [`AppendMessage`] without the borrows.
pub type StoredMessage = MessageOf<Arc<str>, String, Vec<(String, String)>, Bytes>;

impl StoredMessage {
    /// The borrowed form the store appends.
    pub fn as_append(&self) -> AppendMessage<'_> {
        AppendMessage {
            topic: &self.topic,
            queue_id: self.queue_id,
            flag: self.flag,
            tags: self.tags.as_deref(),
            keys: self.keys.as_deref(),
            properties: &self.properties,
            body: &self.body,
            born_timestamp: self.born_timestamp,
            born_host: self.born_host,
            store_host: self.store_host,
            reconsume_times: self.reconsume_times,
            sys_flag: self.sys_flag,
            prepared_tx_offset: self.prepared_tx_offset,
        }
    }

    /// A message as a producer sent it (queue id 0 until the topic picks
    /// one). A delay level becomes the `DELAY` property and a delivery time
    /// the `__STARTDELIVERTIME` property, as in RocketMQ.
    pub fn from_data(
        topic: Arc<str>,
        m: skylark_codec::MessageData,
        born_host: SocketAddr,
        store_host: SocketAddr,
    ) -> StoredMessage {
        let mut properties = m.properties;
        if m.delay_level > 0 {
            properties.push((
                crate::message_store::record::PROPERTY_DELAY.to_string(),
                m.delay_level.to_string(),
            ));
        }
        if let Some(at) = m.deliver_at_ms {
            properties.push((
                skylark_codec::message::PROPERTY_DELIVER_AT.to_string(),
                at.to_string(),
            ));
        }
        StoredMessage {
            topic,
            queue_id: 0,
            flag: m.flag,
            tags: m.tags,
            keys: m.keys,
            properties,
            body: m.body,
            born_timestamp: m.born_timestamp,
            born_host,
            store_host,
            reconsume_times: 0,
            sys_flag: 0,
            prepared_tx_offset: 0,
        }
    }
}

/// Store a batch (answered after its fsync in sync flush mode).
#[derive(Message)]
#[rtype(result = "Result<AppendBatchResult, StoreError>")]
pub struct PutMessages {
    pub messages: Vec<StoredMessage>,
}

/// Read records of one queue from an offset, optionally filtered by tag hash.
#[derive(Message)]
#[rtype(result = "Result<ReadResult, StoreError>")]
pub struct GetMessages {
    pub topic: String,
    pub queue_id: u32,
    pub queue_offset: u64,
    pub max_messages: u32,
    pub max_bytes: u32,
    pub tag_filter: Option<Vec<u64>>,
    /// SQL-92 property filter, checked on the broker (None = all).
    pub sql_filter: Option<Arc<SqlFilter>>,
    /// Long polling: if nothing new is there, park this waker; it fires
    /// when an append reaches the queue past `queue_offset`.
    pub park: Option<oneshot::Sender<()>>,
}

/// Store several independent sends at once: `messages[ends[i-1]..ends[i]]`
/// is send `i`. Each send is appended on its own, so one that fails
/// validation fails alone; one flush request covers them all.
#[derive(Message)]
#[rtype(result = "PutGroupsResult")]
pub struct PutGroups {
    pub messages: Vec<StoredMessage>,
    pub ends: Vec<usize>,
}

/// What [`PutGroups`] answers: one result per send, and under sync flush
/// the receiver that resolves once every appended byte is on disk (await
/// it off this actor's thread).
pub struct PutGroupsResult {
    pub groups: Vec<Result<AppendBatchResult, StoreError>>,
    pub flushed: Option<FlushReply>,
}

/// A topic's activity seen by Storage: `(messages appended since start,
/// pulls parked)`.
#[derive(Message)]
#[rtype(result = "(u64, usize)")]
pub struct GetTopicActivity {
    pub topic: String,
}

/// Messages and body bytes appended per topic since start (metrics).
#[derive(Message)]
#[rtype(result = "Vec<(String, TopicPuts)>")]
pub struct GetTopicPuts;

/// What one topic got appended since start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TopicPuts {
    pub messages: u64,
    pub bytes: u64,
}

impl TopicPuts {
    fn add(&mut self, messages: u64, bytes: u64) {
        self.messages += messages;
        self.bytes += bytes;
    }
}

/// Records of a topic with a key or unique id (IndexFile lookup):
/// `(records, count)`.
#[derive(Message)]
#[rtype(result = "Result<(Bytes, u32), StoreError>")]
pub struct QueryByKey {
    pub topic: String,
    pub key: String,
    pub begin_ms: i64,
    pub end_ms: i64,
    pub max: u32,
}

/// Per queue of a topic, records from the first stored at or after
/// `timestamp_ms`: `(records, count)`.
#[derive(Message)]
#[rtype(result = "Result<(Bytes, u32), StoreError>")]
pub struct QueryByTime {
    pub topic: String,
    pub timestamp_ms: i64,
    pub max_per_queue: u32,
}

/// Read the record at a physical offset (lookup by message id; size 0 = any).
#[derive(Message)]
#[rtype(result = "Result<Bytes, StoreError>")]
pub struct ReadAt {
    pub physical_offset: u64,
    pub size: u32,
}

/// A queue's `(min offset, max offset)`; `(0, 0)` for an unknown queue.
#[derive(Message)]
#[rtype(result = "(u64, u64)")]
pub struct GetQueueOffsets {
    pub topic: String,
    pub queue_id: u32,
}

/// The first queue offset stored at or after `timestamp_ms`.
#[derive(Message)]
#[rtype(result = "u64")]
pub struct QueueOffsetByTime {
    pub topic: String,
    pub queue_id: u32,
    pub timestamp_ms: i64,
}

/// Every topic/queue with its offsets (to rebuild broker state at start).
#[derive(Message)]
#[rtype(result = "Vec<QueueInfo>")]
pub struct ListQueues;

/// Run retention now instead of waiting for the timer.
#[derive(Message)]
#[rtype(result = "Result<RetentionReport, StoreError>")]
pub struct RunRetention;

/// Counters of the store.
#[derive(Message)]
#[rtype(result = "StorageStats")]
pub struct GetStorageStats;

/// What [`GetStorageStats`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StorageStats {
    pub min_physical_offset: u64,
    pub max_physical_offset: u64,
    pub flushed_offset: u64,
    pub fsyncs: u64,
    pub disk_full: bool,
    /// [`PutGroups`] messages handled (each carrying one or more sends).
    pub put_batches: u64,
    /// Damaged records known since the store opened: the ranges recovery
    /// skipped plus the records reads refused to serve (each counted once).
    pub damaged_records: u64,
}

/// A receiver of the CommitLog end, updated after every append (local or
/// replicated).
#[derive(Message)]
#[rtype(result = "watch::Receiver<u64>")]
pub struct SubscribeAppends;

/// Flush everything, write a clean checkpoint; later requests get `ShutDown`.
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct Shutdown;

impl Storage {
    fn new(store: Store, log: Logger) -> Storage {
        let c = store.config();
        Storage {
            appended: watch::channel(store.max_physical_offset()).0,
            parked: ParkedPulls::default(),
            puts: HashMap::new(),
            put_batches: 0,
            runtime: status::RuntimeCounters::default(),
            flush_mode: c.flush_mode,
            sync_flush_timeout: Duration::from_millis(c.sync_flush_timeout_ms),
            flush_interval: Duration::from_millis(c.flush_interval_ms.max(1)),
            clean_interval: Duration::from_millis(c.clean_interval_ms.max(1)),
            store: Some(store),
            log: log.new(o!("actor" => "storage")),
        }
    }

    /// Opens the store on `arbiter`'s thread (recovery runs there) and starts
    /// the actor on it.
    pub async fn start_on(
        arbiter: &ArbiterHandle,
        config: StoreConfig,
        log: Logger,
    ) -> Result<Addr<Storage>, StoreError> {
        let (tx, rx) = oneshot::channel();
        let spawned = arbiter.spawn(async move {
            let res = Store::open(config, log.clone()).map(|store| {
                Storage::create(move |ctx| {
                    ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
                    Storage::new(store, log)
                })
            });
            let _ = tx.send(res);
        });
        if !spawned {
            return Err(StoreError::ShutDown);
        }
        rx.await.map_err(|_| StoreError::ShutDown)?
    }

    /// Starts the actor on `arbiter` around an already opened store.
    pub fn start_with_store(arbiter: &ArbiterHandle, store: Store, log: Logger) -> Addr<Storage> {
        Storage::start_in_arbiter(arbiter, move |ctx| {
            ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
            Storage::new(store, log)
        })
    }

    fn store(&mut self) -> Result<&mut Store, StoreError> {
        self.store.as_mut().ok_or(StoreError::ShutDown)
    }

    /// Tells the subscribers the CommitLog now ends at `end`.
    fn publish_end(&self, end: u64) {
        self.appended.send_if_modified(|v| {
            let further = end > *v;
            if further {
                *v = end;
            }
            further
        });
    }

    /// After an append: count it per topic and wake the pulls parked on
    /// the queues it reached.
    fn note_appended(&mut self, messages: &[StoredMessage], results: &[AppendResult]) {
        self.runtime.put_messages += messages.len() as u64;
        let mut i = 0;
        while i < messages.len() {
            // Count runs of one topic with one lookup.
            let topic = &messages[i].topic;
            let mut j = i + 1;
            while j < messages.len() && Arc::ptr_eq(&messages[j].topic, topic) {
                j += 1;
            }
            let bytes: u64 = messages[i..j].iter().map(|m| m.body.len() as u64).sum();
            match self.puts.get_mut(&**topic) {
                Some(n) => n.add((j - i) as u64, bytes),
                None => {
                    let mut n = TopicPuts::default();
                    n.add((j - i) as u64, bytes);
                    self.puts.insert(topic.to_string(), n);
                }
            }
            i = j;
        }
        if self.parked.is_empty() {
            return;
        }
        for (m, r) in messages.iter().zip(results) {
            self.parked
                .arrived(&m.topic, r.queue_id, r.queue_offset + 1);
        }
    }

    fn flush_tick(&mut self) {
        if let Some(store) = self.store.as_mut() {
            if let Err(e) = store.flush_tick() {
                error!(self.log, "flush tick failed"; "error" => %e);
            }
        }
    }

    fn retention_tick(&mut self) {
        if let Some(store) = self.store.as_mut() {
            match store.clean_expired_files() {
                Ok(r) if r.deleted_segments > 0 => info!(self.log, "retention";
                    "deleted_segments" => r.deleted_segments, "deleted_cq_files" => r.deleted_cq_files,
                    "usage" => r.usage_ratio),
                Ok(_) => {}
                Err(e) => error!(self.log, "retention failed"; "error" => %e),
            }
        }
    }
}

impl Actor for Storage {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        ctx.run_interval(self.flush_interval, |act, _| act.flush_tick());
        ctx.run_interval(self.clean_interval, |act, _| act.retention_tick());
        ctx.run_interval(Duration::from_secs(1), |act, _| {
            act.runtime.sample(std::time::Instant::now())
        });
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if let Some(mut store) = self.store.take() {
            if let Err(e) = store.shutdown() {
                error!(self.log, "store shutdown on stop failed"; "error" => %e);
            }
        }
    }
}

impl Handler<PutMessages> for Storage {
    type Result = ResponseFuture<Result<AppendBatchResult, StoreError>>;

    fn handle(&mut self, msg: PutMessages, _: &mut Self::Context) -> Self::Result {
        let (mode, timeout) = (self.flush_mode, self.sync_flush_timeout);
        let store = match self.store() {
            Ok(s) => s,
            Err(e) => return Box::pin(futures::future::ready(Err(e))),
        };
        let batch: Vec<AppendMessage<'_>> =
            msg.messages.iter().map(StoredMessage::as_append).collect();
        let res = match store.append(&batch) {
            Ok(r) => r,
            Err(e) => return Box::pin(futures::future::ready(Err(e))),
        };
        drop(batch);
        let flushed = (mode == FlushMode::Sync).then(|| store.request_flush(res.end_offset));
        self.publish_end(res.end_offset);
        self.note_appended(&msg.messages, &res.results);
        let Some(flushed) = flushed else {
            return Box::pin(futures::future::ready(Ok(res)));
        };
        Box::pin(async move {
            let mut res = res;
            match tokio::time::timeout(timeout, flushed).await {
                Ok(Ok(Ok(()))) => Ok(res),
                Ok(Ok(Err(e))) => Err(e),
                Ok(Err(_)) => Err(StoreError::FlushFailed("flusher stopped".into())),
                Err(_) => {
                    res.flush_timed_out = true;
                    Ok(res)
                }
            }
        })
    }
}

impl Handler<PutGroups> for Storage {
    type Result = MessageResult<PutGroups>;

    fn handle(&mut self, msg: PutGroups, _: &mut Self::Context) -> Self::Result {
        let mode = self.flush_mode;
        self.put_batches += 1;
        let mut groups = Vec::with_capacity(msg.ends.len());
        let mut batch: Vec<AppendMessage<'_>> = Vec::with_capacity(msg.messages.len());
        let mut end = None;
        let mut start = 0;
        if let Some(store) = self.store.as_mut() {
            // One pwrite for every send of the batch, before anything reads
            // or flushes (see `message_store::commit_log`, "Writes").
            store.defer_writes();
        }
        for &stop in &msg.ends {
            let stop = stop.min(msg.messages.len()).max(start);
            let res = match self.store.as_mut() {
                None => Err(StoreError::ShutDown),
                Some(store) => {
                    batch.clear();
                    batch.extend(
                        msg.messages[start..stop]
                            .iter()
                            .map(StoredMessage::as_append),
                    );
                    store.append(&batch)
                }
            };
            if let Ok(r) = &res {
                end = Some(r.end_offset);
            }
            groups.push(res);
            start = stop;
        }
        drop(batch);
        if let Some(Err(e)) = self.store.as_mut().map(Store::commit_writes) {
            for g in groups.iter_mut().filter(|g| g.is_ok()) {
                *g = Err(e.clone());
            }
            end = None;
        }
        let flushed = match (end, self.store.as_ref()) {
            (Some(end), Some(store)) => {
                self.publish_end(end);
                (mode == FlushMode::Sync).then(|| store.request_flush(end))
            }
            _ => None,
        };
        let mut start = 0;
        for (&stop, res) in msg.ends.iter().zip(&groups) {
            let stop = stop.min(msg.messages.len()).max(start);
            if let Ok(r) = res {
                self.note_appended(&msg.messages[start..stop], &r.results);
            }
            start = stop;
        }
        MessageResult(PutGroupsResult { groups, flushed })
    }
}

impl Handler<GetTopicActivity> for Storage {
    type Result = MessageResult<GetTopicActivity>;

    fn handle(&mut self, m: GetTopicActivity, _: &mut Self::Context) -> Self::Result {
        let puts = self.puts.get(&m.topic).map_or(0, |p| p.messages);
        MessageResult((puts, self.parked.parked_on(&m.topic)))
    }
}

impl Handler<GetTopicPuts> for Storage {
    type Result = MessageResult<GetTopicPuts>;

    fn handle(&mut self, _: GetTopicPuts, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.puts.iter().map(|(t, p)| (t.clone(), *p)).collect())
    }
}

impl Handler<GetMessages> for Storage {
    type Result = Result<ReadResult, StoreError>;

    fn handle(&mut self, m: GetMessages, _: &mut Self::Context) -> Self::Result {
        let read = self.store()?.read_filtered(
            &m.topic,
            m.queue_id,
            m.queue_offset,
            m.max_messages as usize,
            m.max_bytes as usize,
            m.tag_filter.as_deref(),
            m.sql_filter.as_deref(),
        )?;
        let nothing_new = match read.status {
            ReadStatus::NoNewMessage => true,
            // A queue never written to yet, read from its start.
            ReadStatus::NoQueue => m.queue_offset == 0,
            _ => false,
        };
        if read.status == ReadStatus::Found {
            self.runtime.got_messages += read.count as u64;
        }
        if let (true, Some(waker)) = (nothing_new, m.park) {
            self.parked
                .park(&m.topic, m.queue_id, m.queue_offset, waker);
        }
        Ok(read)
    }
}

impl Handler<QueryByKey> for Storage {
    type Result = Result<(Bytes, u32), StoreError>;

    fn handle(&mut self, m: QueryByKey, _: &mut Self::Context) -> Self::Result {
        let window = KeyWindow {
            begin_ms: m.begin_ms,
            end_ms: m.end_ms,
            max: m.max as usize,
        };
        self.store()?.query_by_key(&m.topic, &m.key, window)
    }
}

impl Handler<QueryByTime> for Storage {
    type Result = Result<(Bytes, u32), StoreError>;

    fn handle(&mut self, m: QueryByTime, _: &mut Self::Context) -> Self::Result {
        self.store()?
            .query_by_time(&m.topic, m.timestamp_ms, m.max_per_queue as usize)
    }
}

impl Handler<ReadAt> for Storage {
    type Result = Result<Bytes, StoreError>;

    fn handle(&mut self, m: ReadAt, _: &mut Self::Context) -> Self::Result {
        self.store()?.read_at(m.physical_offset, m.size)
    }
}

impl Handler<GetQueueOffsets> for Storage {
    type Result = MessageResult<GetQueueOffsets>;

    fn handle(&mut self, m: GetQueueOffsets, _: &mut Self::Context) -> Self::Result {
        let Ok(s) = self.store() else {
            return MessageResult((0, 0));
        };
        MessageResult((
            s.min_queue_offset(&m.topic, m.queue_id).unwrap_or(0),
            s.max_queue_offset(&m.topic, m.queue_id).unwrap_or(0),
        ))
    }
}

impl Handler<QueueOffsetByTime> for Storage {
    type Result = u64;

    fn handle(&mut self, m: QueueOffsetByTime, _: &mut Self::Context) -> u64 {
        self.store().map_or(0, |s| {
            s.queue_offset_by_time(&m.topic, m.queue_id, m.timestamp_ms)
        })
    }
}

impl Handler<ListQueues> for Storage {
    type Result = MessageResult<ListQueues>;

    fn handle(&mut self, _: ListQueues, _: &mut Self::Context) -> Self::Result {
        MessageResult(
            self.store()
                .map(|s| s.topics_and_queues())
                .unwrap_or_default(),
        )
    }
}

impl Handler<RunRetention> for Storage {
    type Result = Result<RetentionReport, StoreError>;

    fn handle(&mut self, _: RunRetention, _: &mut Self::Context) -> Self::Result {
        self.store()?.clean_expired_files()
    }
}

impl Handler<GetStorageStats> for Storage {
    type Result = MessageResult<GetStorageStats>;

    fn handle(&mut self, _: GetStorageStats, _: &mut Self::Context) -> Self::Result {
        let put_batches = self.put_batches;
        MessageResult(
            self.store()
                .map_or(StorageStats::default(), |s| StorageStats {
                    min_physical_offset: s.min_physical_offset(),
                    max_physical_offset: s.max_physical_offset(),
                    flushed_offset: s.flushed_offset(),
                    fsyncs: s.fsync_count(),
                    disk_full: s.is_disk_full(),
                    put_batches,
                    damaged_records: s.damaged_records(),
                }),
        )
    }
}

impl Handler<Shutdown> for Storage {
    type Result = Result<(), StoreError>;

    fn handle(&mut self, _: Shutdown, _: &mut Self::Context) -> Self::Result {
        let res = self.store()?.shutdown();
        self.store = None;
        res
    }
}

/// Replication, master side: whole records of the CommitLog from `offset`
/// (see [`crate::message_store::replica`]), with the CommitLog end.
#[derive(Message)]
#[rtype(result = "Result<(Bytes, u64), StoreError>")]
pub struct ReadCommitLog {
    pub offset: u64,
    pub max_bytes: usize,
}

/// Replication, slave side: append the master's bytes at `offset` and
/// dispatch them.
#[derive(Message)]
#[rtype(result = "Result<crate::message_store::replica::ReplicaAppend, StoreError>")]
pub struct AppendReplicated {
    pub offset: u64,
    pub data: Bytes,
}

impl Handler<ReadCommitLog> for Storage {
    type Result = Result<(Bytes, u64), StoreError>;

    fn handle(&mut self, m: ReadCommitLog, _: &mut Self::Context) -> Self::Result {
        let store = self.store()?;
        let end = store.max_physical_offset();
        Ok((store.read_commit_log(m.offset, m.max_bytes)?, end))
    }
}

impl Handler<AppendReplicated> for Storage {
    type Result = Result<crate::message_store::replica::ReplicaAppend, StoreError>;

    fn handle(&mut self, m: AppendReplicated, _: &mut Self::Context) -> Self::Result {
        let mut r = self.store()?.append_replicated(m.offset, &m.data)?;
        self.publish_end(r.end_offset);
        for topic in &r.dropped {
            self.puts.remove(topic);
            self.parked.topic_gone(topic);
        }
        if !self.parked.is_empty() {
            for (topic, queue_id, max_offset) in &r.touched {
                self.parked.arrived(topic, *queue_id, *max_offset);
            }
        }
        // Part of the chunk applied, the rest refused: the slave reconnects
        // and fetches the rest from its end.
        match r.refused.take() {
            Some(e) => Err(e),
            None => Ok(r),
        }
    }
}

/// Delete a topic's ConsumeQueues ([`Store::drop_topic`]); answered with
/// how many there were and the CommitLog end after the deletion's record,
/// once that record is on disk.
#[derive(Message)]
#[rtype(result = "Result<(usize, u64), StoreError>")]
pub struct DropTopic {
    pub topic: String,
    /// This broker's address, written into the deletion record.
    pub host: SocketAddr,
}

impl Handler<DropTopic> for Storage {
    type Result = ResponseFuture<Result<(usize, u64), StoreError>>;

    fn handle(&mut self, m: DropTopic, _: &mut Self::Context) -> Self::Result {
        let dropped = self.store().and_then(|store| {
            let (queues, end) = store.drop_topic(&m.topic, m.host)?;
            Ok((queues, end, store.request_flush(end)))
        });
        let (queues, end, flushed) = match dropped {
            Ok((queues, end, flushed)) => {
                self.publish_end(end);
                self.puts.remove(&m.topic);
                self.parked.topic_gone(&m.topic);
                (queues, end, flushed)
            }
            Err(e) => return Box::pin(futures::future::ready(Err(e))),
        };
        Box::pin(async move {
            flushed
                .await
                .map_err(|_| StoreError::FlushFailed("flusher stopped".into()))??;
            Ok((queues, end))
        })
    }
}

impl Handler<SubscribeAppends> for Storage {
    type Result = MessageResult<SubscribeAppends>;

    fn handle(&mut self, _: SubscribeAppends, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.appended.subscribe())
    }
}

/// A message for tests: tag `TagA`, one `UNIQ_KEY` property.
#[cfg(test)]
pub(crate) fn test_message(topic: &str, queue_id: u32, body: &'static [u8]) -> StoredMessage {
    let host: SocketAddr = "127.0.0.1:10911".parse().unwrap();
    StoredMessage {
        topic: Arc::from(topic),
        queue_id,
        flag: 0,
        tags: Some("TagA".into()),
        keys: None,
        properties: vec![("UNIQ_KEY".into(), "id-1".into())],
        body: Bytes::from_static(body),
        born_timestamp: 1,
        born_host: host,
        store_host: host,
        reconsume_times: 0,
        sys_flag: 0,
        prepared_tx_offset: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message_store::{decode, ReadStatus};

    async fn put_get(mode: FlushMode) {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig {
            segment_size: 64 * 1024,
            flush_mode: mode,
            flush_interval_ms: 10,
            index_slots: 16,
            index_entries: 64,
            ..StoreConfig::new(dir.path())
        };
        let log = Logger::root(slog::Discard, o!());
        let arbiter = Arbiter::new();
        let storage = Storage::start_on(&arbiter.handle(), config, log)
            .await
            .unwrap();
        // 32 concurrent writers of one message each
        let puts = (0..32).map(|i| {
            storage.send(PutMessages {
                messages: vec![test_message("T", i % 4, b"hello")],
            })
        });
        for r in futures::future::join_all(puts).await {
            let r = r.unwrap().unwrap();
            assert_eq!(r.results.len(), 1);
            assert!(!r.flush_timed_out);
        }
        let stats = storage.send(GetStorageStats).await.unwrap();
        if mode == FlushMode::Sync {
            // Every put was answered only once durable. How many fsyncs
            // served them depends on this disk's fsync time against the
            // actor's per-put time; that one fsync serves many waiting
            // requests is checked in `message_store::tests::sync_flush_group_commit`.
            assert!(stats.flushed_offset >= stats.max_physical_offset);
            assert!(stats.fsyncs >= 1);
        }
        let read = storage
            .send(GetMessages {
                topic: "T".into(),
                queue_id: 1,
                queue_offset: 0,
                max_messages: 32,
                max_bytes: 1 << 20,
                tag_filter: Some(vec![crate::message_store::tag_hash("TagA")]),
                sql_filter: None,
                park: None,
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (read.status, read.count, read.next_queue_offset),
            (ReadStatus::Found, 8, 8)
        );
        let records = read.records.to_bytes();
        let (m, n) = decode(&records).unwrap();
        assert_eq!((m.body, m.topic, m.queue_id), (&b"hello"[..], "T", 1));
        assert_eq!(m.property("UNIQ_KEY"), Some("id-1"));
        let one = storage
            .send(ReadAt {
                physical_offset: m.physical_offset,
                size: 0,
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&one[..], &read.records.to_bytes()[..n]);
        let offsets = storage
            .send(GetQueueOffsets {
                topic: "T".into(),
                queue_id: 1,
            })
            .await
            .unwrap();
        assert_eq!(offsets, (0, 8));
        let by_time = storage
            .send(QueueOffsetByTime {
                topic: "T".into(),
                queue_id: 1,
                timestamp_ms: 0,
            })
            .await
            .unwrap();
        assert_eq!(by_time, 0);
        assert_eq!(storage.send(ListQueues).await.unwrap().len(), 4);
        storage.send(Shutdown).await.unwrap().unwrap();
        let after = storage
            .send(PutMessages {
                messages: vec![test_message("T", 0, b"x")],
            })
            .await
            .unwrap();
        assert!(matches!(after, Err(StoreError::ShutDown)));
        arbiter.stop();
    }

    #[actix_rt::test]
    async fn put_then_get_async_flush() {
        put_get(FlushMode::Async).await;
    }

    #[actix_rt::test]
    async fn put_then_get_sync_flush_group_commit() {
        put_get(FlushMode::Sync).await;
    }
}
