//! [`PushConsumer`]: the client pulls, a listener you register consumes.
//!
//! RocketMQ's `DefaultMQPushConsumer` in actix terms. One long-polling
//! puller task per assigned queue fills that queue's [`ProcessQueue`];
//! batches go to one dispatcher that runs the listener on tokio's blocking
//! threads, at most `consume_threads` calls at once. Around that:
//!
//! * **One owner**: a single task, the owner loop, rebalances, renews the
//!   queue leases and commits offsets; nothing else changes the assignment
//!   until it has ended (at shutdown), so none of this needs a lock.
//! * **Rebalance** (clustering): every member asks a broker for the group's
//!   members and allocates the topic's queues with the chosen
//!   [`AllocateStrategy`] — at start, every `rebalance_interval` (20 s), and
//!   at once when the broker pushes `NotifyConsumerIdsChanged`. A queue that
//!   moves away is dropped, its running listener calls are waited for
//!   (`release_timeout`), its safe offset is committed and only then its
//!   broker lease released; a new queue is taken once its lease is granted
//!   and starts at the group's committed offset read after that, else per
//!   [`ConsumeFrom`]. So members started together deliver nothing twice.
//! * **Broadcasting**: every member takes every queue and keeps its offsets
//!   in a local file ([`LocalOffsetStore`]).
//! * **At-least-once**: offsets are committed every `commit_interval` and
//!   at shutdown, and a committed offset never passes a message whose
//!   listener has not returned [`ConsumeResult::Success`].
//! * **Flow control**: a queue's puller waits while its cache holds more
//!   than `cache_max_messages` messages or `cache_max_bytes` bytes.
//! * **Retry / suspend**: [`ConsumeResult::Retry`] redelivers the batch
//!   with `reconsume_times` + 1 — clustering: through the broker, which
//!   stores it in `%RETRY%<group>` and delivers it after the next delay
//!   level (10 s, 30 s, 1 min, ... as RocketMQ; docs/consumer-groups.md),
//!   falling back to a local redelivery after `retry_delay` when the
//!   send-back fails; broadcasting and orderly: locally after
//!   `retry_delay`;
//!   [`ConsumeResult::Suspend`] pauses the queue's pulling for that long and
//!   redelivers the batch then, without counting a failure.
//! * **Orderly** (`orderly = true`): like every clustering member, it holds
//!   its queues' broker leases (60 s, renewed every `lock_renew_interval`);
//!   it consumes each queue with one worker, in queue order.
//! * **Backtrack**: a broker push `NotifyResetOffset` drops the queues of
//!   that topic (discarding their in-memory progress) and rebalances, which
//!   re-reads the reset offsets.
//! * **Refused pulls**: a pull the broker refuses for good (permission,
//!   ACL, a SQL subscription it will not evaluate) is still retried, but
//!   reported as a [`PullRefusal`] to the `on_pull_error` hook (rate
//!   limited; a `WARN` line on stderr by default) and kept as standing
//!   until a pull of the queue works again ([`PushConsumer::pull_refusals`]);
//!   see `refusal.rs`. Transient failures are only retried.

mod assign;
mod consume;
mod refusal;

pub use refusal::{PullRefusal, REPORT_INTERVAL as PULL_REFUSAL_REPORT_INTERVAL};

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use skylark_codec::rpc::PushFrame;
use skylark_codec::{
    Command, ConsumeFrom, ConsumeType, ConsumerGroupData, ExpressionType, HeartbeatRequest,
    MessageModel, ResetOffsetNotify, SendBackRequest, Subscription, UnregisterClientRequest,
    RETRY_TOPIC_PREFIX,
};
use tokio::sync::{mpsc, watch, Semaphore};

use super::config::ClientConfig;
use super::consumer::PullConsumer;
use super::error::{ClientError, Result};
use super::local_offsets::{default_path, LocalOffsetStore};
use super::message::ReceivedMessage;
use super::process_queue::ProcessQueue;
use super::rebalance::{sort_queues, AllocateStrategy};
use super::route::MessageQueue;

/// What a listener answers for a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumeResult {
    /// Consumed: the offset may move past these messages.
    Success,
    /// Failed: deliver the batch again later.
    Retry,
    /// The downstream is unavailable: pause this queue for this long, then
    /// deliver the batch again (not counted as a failure). A pause over
    /// [`MAX_DURATION`](super::MAX_DURATION) is taken as that long.
    Suspend(Duration),
}

/// Consumes batches of messages; runs on a blocking thread.
pub trait MessageListener: Send + Sync + 'static {
    /// Handles one batch (at most `batch_size` messages of one queue).
    fn consume(&self, messages: &[ReceivedMessage]) -> ConsumeResult;
}

impl<F> MessageListener for F
where
    F: Fn(&[ReceivedMessage]) -> ConsumeResult + Send + Sync + 'static,
{
    fn consume(&self, messages: &[ReceivedMessage]) -> ConsumeResult {
        self(messages)
    }
}

impl MessageListener for Box<dyn MessageListener> {
    fn consume(&self, messages: &[ReceivedMessage]) -> ConsumeResult {
        (**self).consume(messages)
    }
}

impl MessageListener for Arc<dyn MessageListener> {
    fn consume(&self, messages: &[ReceivedMessage]) -> ConsumeResult {
        (**self).consume(messages)
    }
}

/// Push consumer settings; defaults follow RocketMQ.
#[derive(Debug, Clone)]
pub struct PushConsumerOptions {
    /// Clustering (share queues) or broadcasting (every member reads all).
    pub model: MessageModel,
    /// Where a queue without a committed offset starts.
    pub consume_from: ConsumeFrom,
    /// How clustering members split queues.
    pub strategy: AllocateStrategy,
    /// Listener calls running at once.
    pub consume_threads: usize,
    /// Messages per listener call.
    pub batch_size: usize,
    /// Messages per pull.
    pub pull_batch_size: u32,
    /// Pulling a queue pauses while its cache holds more messages than this.
    pub cache_max_messages: usize,
    /// ... or more bytes than this.
    pub cache_max_bytes: usize,
    /// Periodic rebalance (besides the broker's push on membership change).
    pub rebalance_interval: Duration,
    /// Heartbeat to every broker of the subscribed topics.
    pub heartbeat_interval: Duration,
    /// Periodic offset commit.
    pub commit_interval: Duration,
    /// Longest time the broker parks a pull.
    pub pull_suspend: Duration,
    /// Delay before a batch answered `Retry` is delivered again locally:
    /// orderly and broadcasting consumers, and a clustering one whose
    /// send-back to the broker failed (otherwise the broker redelivers it
    /// through `%RETRY%<group>` after its delay level).
    pub retry_delay: Duration,
    /// Consume each queue in order under a broker lock.
    pub orderly: bool,
    /// Retries after which a failed message goes to `%DLQ%<group>`
    /// (clustering; the group's `retry_max` on the broker wins). When
    /// broadcasting, the local retries after which a still-failing message
    /// is dropped and counted in [`PushConsumer::given_up`] (before
    /// 2026-12-06 it was retried forever).
    pub max_reconsume_times: u32,
    /// How often queue leases (clustering) are renewed.
    pub lock_renew_interval: Duration,
    /// Longest wait, when a queue moves to another member, for the
    /// listener calls running on it before its offset is committed and its
    /// lease released (a call still running then may be delivered again).
    pub release_timeout: Duration,
    /// Names the local offset file of a broadcasting consumer.
    pub instance_name: String,
    /// Overrides the local offset file
    /// (default `$HOME/.skylark_offsets/<instance>/<group>/offsets.json`).
    pub local_offset_path: Option<PathBuf>,
}

impl Default for PushConsumerOptions {
    fn default() -> Self {
        PushConsumerOptions {
            model: MessageModel::Clustering,
            consume_from: ConsumeFrom::Last,
            strategy: AllocateStrategy::Average,
            consume_threads: 20,
            batch_size: 1,
            pull_batch_size: 32,
            cache_max_messages: 1000,
            cache_max_bytes: 100 * 1024 * 1024,
            rebalance_interval: Duration::from_secs(20),
            heartbeat_interval: Duration::from_secs(10),
            commit_interval: Duration::from_secs(5),
            pull_suspend: Duration::from_secs(5),
            retry_delay: Duration::from_secs(1),
            orderly: false,
            max_reconsume_times: skylark_codec::DEFAULT_MAX_RECONSUME_TIMES,
            lock_renew_interval: Duration::from_secs(20),
            release_timeout: Duration::from_secs(3),
            instance_name: "DEFAULT".to_string(),
            local_offset_path: None,
        }
    }
}

impl PushConsumerOptions {
    /// Refuses a timer period that is zero (`rebalance_interval`,
    /// `heartbeat_interval`, `commit_interval`, `lock_renew_interval`) and
    /// any duration over [`MAX_DURATION`](super::MAX_DURATION) (those and
    /// `pull_suspend`, `retry_delay`, `release_timeout`), with
    /// [`ClientError::InvalidArgument`] naming the option:
    /// [`PushConsumerBuilder::start`] checks it.
    pub fn validate(&self) -> Result<()> {
        for (name, d, zero_ok) in [
            ("rebalance_interval", self.rebalance_interval, false),
            ("heartbeat_interval", self.heartbeat_interval, false),
            ("commit_interval", self.commit_interval, false),
            ("lock_renew_interval", self.lock_renew_interval, false),
            ("pull_suspend", self.pull_suspend, true),
            ("retry_delay", self.retry_delay, true),
            ("release_timeout", self.release_timeout, true),
        ] {
            super::config::check_duration("PushConsumerOptions", name, d, zero_ok)?;
        }
        Ok(())
    }
}

/// A batch for the consume pool.
struct Work {
    queue: MessageQueue,
    pq: Arc<ProcessQueue>,
    msgs: Vec<ReceivedMessage>,
}

/// How a subscription filters its topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubFilter {
    /// A tag expression (`"A || B"`); `None` takes every message.
    Tags(Option<String>),
    /// A SQL-92 property filter, evaluated on the broker.
    Sql(String),
}

#[derive(Default)]
struct Assignment {
    queues: HashMap<MessageQueue, Arc<ProcessQueue>>,
    /// Offsets a reset pushed, used when the queue is taken again.
    resets: HashMap<MessageQueue, u64>,
}

/// The owned queues, borrowed from the locked [`Assignment`].
pub(super) struct OwnedQueues<'a>(std::sync::MutexGuard<'a, Assignment>);

impl std::ops::Deref for OwnedQueues<'_> {
    type Target = HashMap<MessageQueue, Arc<ProcessQueue>>;
    fn deref(&self) -> &Self::Target {
        &self.0.queues
    }
}

impl std::ops::DerefMut for OwnedQueues<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0.queues
    }
}

struct Inner {
    consumer: PullConsumer,
    client_id: String,
    opts: PushConsumerOptions,
    subs: Vec<(String, SubFilter)>,
    listener: Arc<dyn MessageListener>,
    /// The queues this member owns and the offsets a reset pushed for them:
    /// one piece of state behind one lock.
    assignment: Mutex<Assignment>,
    rebalance: tokio::sync::Notify,
    /// `true` once stopped: read by every loop, watched by the waiting ones.
    stop: watch::Sender<bool>,
    local: Option<Arc<LocalOffsetStore>>,
    work_tx: mpsc::UnboundedSender<Work>,
    orderly_permits: Semaphore,
    /// Messages the brokers reported damaged and skipped (never delivered).
    damaged_skipped: AtomicU64,
    /// Broadcasting: messages dropped after `max_reconsume_times` retries.
    given_up: AtomicU64,
    /// Pulls refused for good, standing until a pull of the queue works.
    refusals: refusal::Refusals,
    /// Told of each refusal (rate limited).
    on_pull_error: refusal::PullErrorHook,
}

/// A running push consumer; [`shutdown`](Self::shutdown) it to commit and
/// leave the group cleanly.
pub struct PushConsumer {
    inner: Arc<Inner>,
    /// The [`owner_loop`]; `shutdown` waits for it before the final release.
    owner: Option<tokio::task::JoinHandle<()>>,
    _member: LiveMember,
}

/// The (client id, group) pairs of the push consumers running in this
/// process: the broker knows a member by its client id, so a second one
/// with the same pair would be granted the same queues and deliver every
/// message twice (RocketMQ's client refuses it too: "the consumer group has
/// been created before").
static LIVE_MEMBERS: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

/// This consumer's entry in [`LIVE_MEMBERS`], removed when it goes.
struct LiveMember((String, String));

impl LiveMember {
    fn join(client_id: &str, group: &str) -> Result<LiveMember> {
        let key = (client_id.to_string(), group.to_string());
        let mut live = LIVE_MEMBERS.lock().unwrap_or_else(|e| e.into_inner());
        if live.contains(&key) {
            return Err(ClientError::InvalidArgument(format!(
                "a push consumer of group '{group}' with client id '{client_id}' already runs in this process: give each member its own ClientConfig::client_id (the broker tells members apart by it)"
            )));
        }
        live.push(key.clone());
        Ok(LiveMember(key))
    }
}

impl Drop for LiveMember {
    fn drop(&mut self) {
        let mut live = LIVE_MEMBERS.lock().unwrap_or_else(|e| e.into_inner());
        live.retain(|k| k != &self.0);
    }
}

impl std::fmt::Debug for PushConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PushConsumer({})", self.inner.consumer.group())
    }
}

/// Builds a [`PushConsumer`].
pub struct PushConsumerBuilder {
    config: ClientConfig,
    group: String,
    opts: PushConsumerOptions,
    subs: Vec<(String, SubFilter)>,
    on_pull_error: Option<refusal::PullErrorHook>,
}

impl PushConsumer {
    /// A builder for a consumer of `group`.
    pub fn builder(config: ClientConfig, group: &str) -> PushConsumerBuilder {
        PushConsumerBuilder {
            config,
            group: group.to_string(),
            opts: PushConsumerOptions::default(),
            subs: Vec::new(),
            on_pull_error: None,
        }
    }

    /// This member's client id.
    pub fn client_id(&self) -> &str {
        &self.inner.client_id
    }

    /// The queues currently assigned to this member.
    pub fn assigned(&self) -> Vec<MessageQueue> {
        let mut v: Vec<MessageQueue> = self.inner.queues().keys().cloned().collect();
        sort_queues(&mut v);
        v
    }

    /// Per assigned queue: messages and bytes pulled but not yet consumed.
    pub fn cached(&self) -> Vec<(MessageQueue, usize, usize)> {
        let mut v: Vec<(MessageQueue, usize, usize)> = self
            .inner
            .queues()
            .iter()
            .map(|(q, pq)| {
                let (n, b) = pq.cached();
                (q.clone(), n, b)
            })
            .collect();
        v.sort_by(|a, b| (&a.0.topic, a.0.queue_id).cmp(&(&b.0.topic, b.0.queue_id)));
        v
    }

    /// Per assigned queue, the offset it pulls next.
    pub fn positions(&self) -> Vec<(MessageQueue, u64)> {
        let mut v: Vec<(MessageQueue, u64)> = self
            .inner
            .queues()
            .iter()
            .map(|(q, pq)| (q.clone(), pq.next_pull()))
            .collect();
        v.sort_by(|a, b| (&a.0.topic, a.0.queue_id).cmp(&(&b.0.topic, b.0.queue_id)));
        v
    }

    /// Messages the brokers found damaged (CRC, magic or size check failed)
    /// and skipped: they were never delivered to the listener; pulling went
    /// on past them. The broker logs each with its offsets.
    pub fn damaged_skipped(&self) -> u64 {
        self.inner.damaged_skipped.load(Ordering::Relaxed)
    }

    /// Broadcasting: messages whose listener still asked for a retry after
    /// `max_reconsume_times` local retries, and which were dropped. A
    /// broadcasting member has no retry or dead-letter topic of its own (as
    /// in RocketMQ, which drops a failed broadcast message at once); the
    /// consumer moves on rather than retry one message forever.
    pub fn given_up(&self) -> u64 {
        self.inner.given_up.load(Ordering::Relaxed)
    }

    /// Broadcasting: the local offset file, which tells whether its last
    /// write worked ([`LocalOffsetStore::last_failure`]); keep it to ask
    /// after [`shutdown`](Self::shutdown), which writes it a last time.
    /// `None` in clustering mode (the brokers keep the offsets).
    pub fn local_offsets(&self) -> Option<Arc<LocalOffsetStore>> {
        self.inner.local.clone()
    }

    /// The pulls refused for good now, by topic and queue: each stands from
    /// its refusal until a pull of that queue works again (see
    /// [`PushConsumerBuilder::on_pull_error`]). Empty while every pull is
    /// answered (or fails only transiently: a broker restarting, a
    /// failover).
    pub fn pull_refusals(&self) -> Vec<PullRefusal> {
        self.inner.refusals.standing(self.inner.consumer.group())
    }

    /// Rebalance now (as on a broker push).
    pub fn rebalance_now(&self) {
        self.inner.rebalance.notify_one();
    }

    /// Stops pulling, waits for running listener calls (up to
    /// `release_timeout`), commits every queue's safe offset, releases the
    /// queue leases and leaves the group (the others rebalance at once).
    pub async fn shutdown(mut self) {
        let inner = self.inner.clone();
        inner.stop.send_replace(true);
        // The owner loop ends at its next await; after it, this is the only
        // one changing the assignment.
        if let Some(owner) = self.owner.take() {
            let _ = owner.await;
        }
        let queues: Vec<(MessageQueue, Arc<ProcessQueue>)> = inner.queues().drain().collect();
        inner.release(queues).await;
        // The brokers it heartbeated are those it is connected to; looking
        // the topics' routes up again would wait on a NameServer that does
        // not answer.
        for addr in inner.consumer.connected_brokers().await {
            if let Ok(c) = inner.consumer.conn(&addr).await {
                let req = UnregisterClientRequest {
                    client_id: inner.client_id.clone(),
                    producer_group: None,
                    consumer_group: Some(inner.consumer.group().to_string()),
                };
                let _ = c.call(&req).await;
            }
        }
    }
}

impl Drop for PushConsumer {
    /// Dropped without [`shutdown`](Self::shutdown): stop pulling and
    /// consuming. Nothing more is committed, and the group is not told: the
    /// broker drops this member when its heartbeats stop
    /// (`client_expire_secs`, 120 s by default), and only then do the
    /// other members take its queues and re-deliver what was in flight.
    /// Call `shutdown` for a prompt hand-over.
    fn drop(&mut self) {
        self.inner.stop.send_replace(true);
        for pq in self.inner.queues().values() {
            pq.drop_queue();
        }
    }
}

impl PushConsumerBuilder {
    /// Subscribes to `topic` with a tag expression (`"*"` or `"A || B"`).
    pub fn subscribe(mut self, topic: &str, expression: &str) -> Self {
        let expr = (expression != "*" && !expression.is_empty()).then(|| expression.to_string());
        self.subs.push((topic.to_string(), SubFilter::Tags(expr)));
        self
    }

    /// Subscribes to `topic` with a SQL-92 property filter (`"a > 5 AND
    /// TAGS IN ('A')"`), evaluated on the broker.
    pub fn subscribe_sql(mut self, topic: &str, sql: &str) -> Self {
        self.subs
            .push((topic.to_string(), SubFilter::Sql(sql.to_string())));
        self
    }

    /// Calls `hook` with each pull a broker refuses for good: `PermissionDenied`
    /// (the topic is not readable, the group's `consume_enable` is off, the
    /// broker may not be read), `NoPermission` / `AuthFailed` (the ACL),
    /// `InvalidFilter` (a SQL subscription the broker will not evaluate),
    /// and a route with no readable queue. Rate limited: at most once per
    /// queue and code every [`PULL_REFUSAL_REPORT_INTERVAL`] (10 s), with
    /// the count left out since. The consumer keeps retrying (consumption
    /// resumes when the refusal is lifted); an application for which a
    /// refusal is fatal shuts the consumer down itself, as `skylark
    /// consume` does. Runs on the consumer's task:
    /// keep it short. Without a hook, each report is a `WARN` line on
    /// stderr. Connection failures and other transient errors are retried
    /// without a report.
    pub fn on_pull_error(mut self, hook: impl Fn(&PullRefusal) + Send + Sync + 'static) -> Self {
        self.on_pull_error = Some(Arc::new(hook));
        self
    }

    /// Replaces the options.
    pub fn options(mut self, opts: PushConsumerOptions) -> Self {
        self.opts = opts;
        self
    }

    /// Starts consuming with `listener`. Must run inside an actix System.
    pub fn start(self, listener: impl MessageListener) -> Result<PushConsumer> {
        if self.subs.is_empty() {
            return Err(ClientError::InvalidArgument(
                "a push consumer needs at least one subscription".into(),
            ));
        }
        for (_, f) in &self.subs {
            match f {
                SubFilter::Tags(Some(e)) => {
                    skylark_codec::parse_tag_expression(e)
                        .map_err(|e| ClientError::InvalidArgument(e.to_string()))?;
                }
                SubFilter::Tags(None) => {}
                SubFilter::Sql(sql) => {
                    skylark_codec::filter::validate(sql)
                        .map_err(|e| ClientError::InvalidArgument(e.to_string()))?;
                }
            }
        }
        for (topic, _) in &self.subs {
            skylark_codec::validate_topic_name(topic).map_err(ClientError::InvalidArgument)?;
        }
        self.opts.validate()?;
        let member = LiveMember::join(&self.config.client_id, &self.group)?;
        let mut opts = self.opts;
        opts.consume_threads = opts.consume_threads.max(1);
        opts.batch_size = opts.batch_size.max(1);
        let local = match opts.model {
            MessageModel::Broadcasting => {
                let path = opts
                    .local_offset_path
                    .clone()
                    .unwrap_or_else(|| default_path(&opts.instance_name, &self.group));
                Some(LocalOffsetStore::open(&path).map(Arc::new).map_err(|e| {
                    ClientError::InvalidArgument(format!(
                        "cannot write the local offset file {} of this broadcasting consumer: {e}",
                        path.display()
                    ))
                })?)
            }
            MessageModel::Clustering => None,
        };
        let mut subs = self.subs;
        if opts.model == MessageModel::Clustering {
            // Messages sent back for retry come through the group's retry
            // topic (created by the broker on first use).
            subs.push((
                format!("{RETRY_TOPIC_PREFIX}{}", self.group),
                SubFilter::Tags(None),
            ));
        }
        let consumer = PullConsumer::start(self.config, &self.group)?;
        let (work_tx, work_rx) = mpsc::unbounded_channel();
        let (stop, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            client_id: consumer.config().client_id.clone(),
            consumer,
            orderly_permits: Semaphore::new(opts.consume_threads),
            opts,
            subs,
            listener: Arc::new(listener),
            assignment: Mutex::new(Assignment::default()),
            rebalance: tokio::sync::Notify::new(),
            stop,
            local,
            work_tx,
            damaged_skipped: AtomicU64::new(0),
            given_up: AtomicU64::new(0),
            refusals: refusal::Refusals::default(),
            on_pull_error: self
                .on_pull_error
                .unwrap_or_else(|| Arc::new(refusal::warn_on_stderr)),
        });
        actix::spawn(consume::dispatch(inner.clone(), work_rx));
        let pushes = PushReceiver {
            inner: Arc::downgrade(&inner),
        }
        .start()
        .recipient();
        let owner = actix::spawn(owner_loop(inner.clone(), pushes.clone()));
        actix::spawn(every(
            inner.clone(),
            inner.opts.heartbeat_interval,
            move |i| {
                let p = pushes.clone();
                async move { i.heartbeat(&p).await }
            },
        ));
        Ok(PushConsumer {
            inner,
            owner: Some(owner),
            _member: member,
        })
    }
}

/// Receives the broker's pushes on this consumer's connections.
struct PushReceiver {
    inner: std::sync::Weak<Inner>,
}

impl Actor for PushReceiver {
    type Context = Context<Self>;
}

impl Handler<PushFrame> for PushReceiver {
    type Result = ();
    fn handle(&mut self, msg: PushFrame, _: &mut Self::Context) {
        let Some(inner) = self.inner.upgrade() else {
            return;
        };
        match msg.0.command() {
            Ok(Command::NotifyConsumerIdsChanged) => inner.rebalance.notify_one(),
            Ok(Command::NotifyResetOffset) => {
                if let Ok(n) = msg.0.decode_body::<ResetOffsetNotify>() {
                    inner.apply_reset(n);
                }
            }
            _ => {}
        }
    }
}

/// Runs `f` every `period` until the consumer stops.
async fn every<F, Fut>(inner: Arc<Inner>, period: Duration, f: F)
where
    F: Fn(Arc<Inner>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut stop = inner.stop.subscribe();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.changed() => return,
        }
        if inner.is_stopped() {
            return;
        }
        f(inner.clone()).await;
    }
}

/// The one task that changes what this member owns and commits its
/// progress: it rebalances (at start, on a broker push, a reset, the first
/// send-back, and every `rebalance_interval`), renews the queue leases every
/// `lock_renew_interval` and commits every `commit_interval`. Being the only
/// one, it needs no lock: a renewal never takes back a queue a rebalance is
/// releasing, and commits never reorder. It ends when the consumer stops;
/// [`PushConsumer::shutdown`] then does the final release alone.
async fn owner_loop(inner: Arc<Inner>, pushes: Recipient<PushFrame>) {
    use tokio::time::{interval_at, sleep_until, Instant, MissedTickBehavior};
    let mut stop = inner.stop.subscribe();
    // Each request of the loop gives way to a stop: `shutdown` waits for
    // this loop, and a NameServer that accepts and never answers held it
    // for a heartbeat and a rebalance (10 s). What it left undone,
    // `shutdown` does itself (commits, releases, unregisters).
    let mut stopper = inner.stop.subscribe();
    macro_rules! unless_stopped {
        ($fut:expr) => {
            tokio::select! {
                biased;
                _ = stopper.wait_for(|stopped| *stopped) => return,
                v = $fut => v,
            }
        };
    }
    unless_stopped!(inner.heartbeat(&pushes));
    let ticker = |period: Duration| {
        let mut t = interval_at(Instant::now() + period, period);
        t.set_missed_tick_behavior(MissedTickBehavior::Delay);
        t
    };
    let mut commit = ticker(inner.opts.commit_interval);
    let mut renew = ticker(inner.opts.lock_renew_interval);
    let mut next_rebalance = Instant::now();
    loop {
        if inner.is_stopped() {
            return;
        }
        tokio::select! {
            biased;
            _ = stop.changed() => return,
            _ = inner.rebalance.notified() => {}
            _ = sleep_until(next_rebalance) => {}
            _ = commit.tick() => {
                unless_stopped!(inner.commit_all());
                continue;
            }
            _ = renew.tick(), if !inner.broadcasting() => {
                unless_stopped!(inner.renew_leases());
                continue;
            }
        }
        // A topic without a route yet, or a group whose member list does not
        // show us yet, is retried soon rather than at the next period.
        let settled = unless_stopped!(inner.rebalance());
        if !settled {
            unless_stopped!(inner.heartbeat(&pushes));
        }
        let wait = if settled {
            inner.opts.rebalance_interval
        } else {
            inner
                .opts
                .rebalance_interval
                .min(Duration::from_millis(500))
        };
        next_rebalance = Instant::now() + wait;
    }
}

impl Inner {
    fn assignment(&self) -> std::sync::MutexGuard<'_, Assignment> {
        self.assignment.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The owned queues (the assignment stays locked while this lives).
    pub(super) fn queues(&self) -> OwnedQueues<'_> {
        OwnedQueues(self.assignment())
    }

    /// Whether the consumer was stopped (shut down or dropped).
    pub(super) fn is_stopped(&self) -> bool {
        *self.stop.borrow()
    }

    pub(super) fn broadcasting(&self) -> bool {
        self.opts.model == MessageModel::Broadcasting
    }

    /// Broadcasting: whether a failed message has had its retries and is
    /// to be dropped (counted in [`PushConsumer::given_up`]).
    pub(super) fn give_up(&self, m: &ReceivedMessage) -> bool {
        let over = self.broadcasting() && m.reconsume_times >= self.opts.max_reconsume_times;
        if over {
            self.given_up.fetch_add(1, Ordering::Relaxed);
        }
        over
    }

    /// Sends a failed message back to its broker (clustering only); true if
    /// the broker stored it in the retry or dead-letter topic.
    pub(super) async fn send_back(&self, q: &MessageQueue, m: &ReceivedMessage) -> bool {
        self.send_back_to(q, m, false).await
    }

    /// Orderly: the message had its retries in place; the broker stores it
    /// in the dead-letter topic (a retry copy would come back out of its
    /// queue's order).
    pub(super) async fn dead_letter(&self, q: &MessageQueue, m: &ReceivedMessage) -> bool {
        self.send_back_to(q, m, true).await
    }

    async fn send_back_to(&self, q: &MessageQueue, m: &ReceivedMessage, dead_letter: bool) -> bool {
        if self.broadcasting() {
            return false;
        }
        let req = SendBackRequest {
            group: self.consumer.group().to_string(),
            physical_offset: m.physical_offset,
            reconsume_times: m.reconsume_times,
            max_reconsume_times: Some(self.opts.max_reconsume_times),
            dead_letter,
        };
        let stored = match self.consumer.conn(&q.broker_addr).await {
            Ok(c) => c.call(&req).await.is_ok(),
            Err(_) => false,
        };
        if stored {
            let retry_topic = format!("{RETRY_TOPIC_PREFIX}{}", self.consumer.group());
            let assigned = self.queues().keys().any(|q| q.topic == retry_topic);
            if !assigned {
                // The first send-back creates the retry topic: take its
                // queues now rather than at the next periodic rebalance.
                self.rebalance.notify_one();
            }
        }
        stored
    }

    pub(super) fn redeliver_later(
        self: &Arc<Self>,
        queue: MessageQueue,
        pq: Arc<ProcessQueue>,
        msgs: Vec<ReceivedMessage>,
        after: Duration,
    ) {
        let inner = self.clone();
        actix::spawn(async move {
            tokio::time::sleep(after).await;
            if !pq.is_dropped() {
                let _ = inner.work_tx.send(Work { queue, pq, msgs });
            }
        });
    }

    /// A pull of `queue` (or, with `None`, the route look-up of `topic`)
    /// failed with `e`: a refusal for good is recorded and, when its turn
    /// has come, reported to the hook; a transient failure is not.
    pub(super) fn note_pull_error(
        &self,
        topic: &str,
        queue: Option<&MessageQueue>,
        e: ClientError,
    ) {
        if !refusal::refuses_pull(&e) {
            return;
        }
        let now = std::time::Instant::now();
        let group = self.consumer.group();
        if let Some(r) = self.refusals.note(group, topic, queue, e, now) {
            (self.on_pull_error)(&r);
        }
    }

    /// Every broker address hosting a subscribed topic.
    pub(super) async fn broker_addrs(&self) -> Vec<String> {
        let mut addrs = Vec::new();
        for (topic, _) in &self.subs {
            if let Ok(a) = self.consumer.broker_group_addrs(topic).await {
                addrs.extend(a);
            }
        }
        addrs.sort();
        addrs.dedup();
        addrs
    }

    /// Heartbeats to every broker of the subscribed topics, routing their
    /// pushes to `pushes`.
    pub(super) async fn heartbeat(&self, pushes: &Recipient<PushFrame>) {
        let req = HeartbeatRequest {
            client_id: self.client_id.clone(),
            language: crate::client::CLIENT_LANGUAGE.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            producer_groups: Vec::new(),
            consumer_groups: vec![ConsumerGroupData {
                group: self.consumer.group().to_string(),
                consume_type: ConsumeType::Push,
                message_model: self.opts.model,
                consume_from: self.opts.consume_from,
                subscriptions: self
                    .subs
                    .iter()
                    .map(|(topic, filter)| match filter {
                        SubFilter::Tags(expr) => Subscription {
                            topic: topic.clone(),
                            expression_type: ExpressionType::Tag,
                            expression: expr.clone().unwrap_or_else(|| "*".to_string()),
                        },
                        SubFilter::Sql(sql) => Subscription {
                            topic: topic.clone(),
                            expression_type: ExpressionType::Sql,
                            expression: sql.clone(),
                        },
                    })
                    .collect(),
            }],
        };
        for addr in self.broker_addrs().await {
            if let Ok(c) = self.consumer.conn(&addr).await {
                c.set_push_handler(pushes.clone());
                let _ = c.call(&req).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(_: &[ReceivedMessage]) -> ConsumeResult {
        ConsumeResult::Success
    }

    fn config(client_id: &str) -> ClientConfig {
        ClientConfig {
            client_id: client_id.to_string(),
            ..ClientConfig::new("127.0.0.1:1")
        }
    }

    fn refused(r: Result<PushConsumer>) -> String {
        match r {
            Err(ClientError::InvalidArgument(m)) => m,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    /// A NameServer that accepts and never answers: `shutdown` does not
    /// wait out the heartbeat and the rebalance the consumer was in the
    /// middle of (it took 10 s, past every request timeout).
    #[test]
    fn shutdown_does_not_wait_for_a_silent_namesrv() {
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = silent.local_addr().unwrap().to_string();
        let accepted = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = accepted.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for c in silent.incoming().flatten() {
                seen.store(true, std::sync::atomic::Ordering::SeqCst);
                held.push(c);
            }
        });
        actix::System::new().block_on(async move {
            let c = PushConsumer::builder(ClientConfig::new(&addr), "PCG")
                .subscribe("T", "*")
                .start(ok)
                .unwrap();
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while !accepted.load(std::sync::atomic::Ordering::SeqCst) {
                assert!(std::time::Instant::now() < deadline, "never connected");
                actix_rt::time::sleep(Duration::from_millis(10)).await;
            }
            let started = std::time::Instant::now();
            c.shutdown().await;
            let took = started.elapsed();
            assert!(took < Duration::from_secs(2), "shutdown took {took:?}");
        });
    }

    /// What `start` refuses before anything runs: a second member with the
    /// same client id and group in this process (the broker would grant
    /// both the same queues), a timer period of zero, a bad topic name.
    #[test]
    fn start_refuses_a_twin_member_a_zero_period_and_a_bad_topic() {
        actix::System::new().block_on(async {
            let first = PushConsumer::builder(config("twin@1"), "PCG")
                .subscribe("T", "*")
                .start(ok)
                .unwrap();
            let e = refused(
                PushConsumer::builder(config("twin@1"), "PCG")
                    .subscribe("T", "*")
                    .start(ok),
            );
            assert!(e.contains("already runs in this process"), "{e}");
            // Another client id, or another group, is another member.
            let other = PushConsumer::builder(config("twin@2"), "PCG")
                .subscribe("T", "*")
                .start(ok)
                .unwrap();
            first.shutdown().await;
            let again = PushConsumer::builder(config("twin@1"), "PCG")
                .subscribe("T", "*")
                .start(ok)
                .unwrap();
            drop(again);
            drop(other);
            let zero = PushConsumerOptions {
                commit_interval: Duration::ZERO,
                ..PushConsumerOptions::default()
            };
            let e = refused(
                PushConsumer::builder(config("z@1"), "PCG")
                    .subscribe("T", "*")
                    .options(zero)
                    .start(ok),
            );
            assert!(e.contains("commit_interval"), "{e}");
            let e = refused(
                PushConsumer::builder(config("b@1"), "PCG")
                    .subscribe("bad topic", "*")
                    .start(ok),
            );
            assert!(e.contains("bad topic"), "{e}");
        });
    }

    /// One test per duration option: `Duration::MAX` (or `u64::MAX` ms, or
    /// just over [`MAX_DURATION`]) is refused by `start`, naming the
    /// option (a huge `rebalance_interval` panicked in the owner loop,
    /// `Instant + Duration`); the longest taken starts and stops.
    macro_rules! duration_option {
        ($($test:ident: $field:ident;)*) => {$(
            #[test]
            fn $test() {
                actix::System::new().block_on(async {
                    let id = concat!(stringify!($test), "@1");
                    let with = |d| PushConsumer::builder(config(id), "PCG")
                        .subscribe("T", "*")
                        .options(PushConsumerOptions {
                            $field: d,
                            ..PushConsumerOptions::default()
                        });
                    for d in crate::client::config::tests::OVERLONG {
                        let e = refused(with(d).start(ok));
                        let name = concat!("PushConsumerOptions::", stringify!($field));
                        assert!(e.contains(name), "{d:?}: {e}");
                    }
                    with(crate::client::MAX_DURATION).start(ok).unwrap().shutdown().await;
                });
            }
        )*};
    }

    duration_option! {
        rebalance_interval_is_bounded: rebalance_interval;
        heartbeat_interval_is_bounded: heartbeat_interval;
        commit_interval_is_bounded: commit_interval;
        lock_renew_interval_is_bounded: lock_renew_interval;
        pull_suspend_is_bounded: pull_suspend;
        retry_delay_is_bounded: retry_delay;
        release_timeout_is_bounded: release_timeout;
    }

    #[test]
    fn a_client_started_outside_an_actix_system_is_an_error_not_a_panic() {
        let e = PullConsumer::start(config("out@1"), "PCG").unwrap_err();
        assert!(e.to_string().contains("actix System"), "{e}");
    }
}
