//! [`PushConsumer`]: the client pulls, a listener you register consumes.
//!
//! RocketMQ's `DefaultMQPushConsumer` in actix terms. One long-polling
//! puller task per assigned queue fills that queue's [`ProcessQueue`];
//! batches go to a bounded pool of `consume_threads` workers that run the
//! listener on tokio's blocking threads. Around that:
//!
//! * **Rebalance** (clustering): every member asks a broker for the group's
//!   members and allocates the topic's queues with the chosen
//!   [`AllocateStrategy`] — at start, every `rebalance_interval` (20 s), and
//!   at once when the broker pushes `NotifyConsumerIdsChanged`. A queue that
//!   moves away is dropped and its safe offset committed; a new one starts
//!   at the group's committed offset, else per [`ConsumeFrom`].
//! * **Broadcasting**: every member takes every queue and keeps its offsets
//!   in a local file ([`LocalOffsetStore`]).
//! * **At-least-once**: offsets are committed every `commit_interval` and
//!   at shutdown, and a committed offset never passes a message whose
//!   listener has not returned [`ConsumeResult::Success`].
//! * **Flow control**: a queue's puller waits while its cache holds more
//!   than `cache_max_messages` messages or `cache_max_bytes` bytes.
//! * **Retry / suspend**: [`ConsumeResult::Retry`] redelivers the batch
//!   after `retry_delay` (locally, with `reconsume_times` + 1);
//!   [`ConsumeResult::Suspend`] pauses the queue's pulling for that long and
//!   redelivers the batch then, without counting a failure.
//! * **Orderly** (`orderly = true`): the member locks its queues on the
//!   broker (lease 60 s, renewed every `lock_renew_interval`) and consumes
//!   each locked queue with one worker, in queue order.
//! * **Backtrack**: a broker push `NotifyResetOffset` drops the queues of
//!   that topic (discarding their in-memory progress) and rebalances, which
//!   re-reads the reset offsets.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use skylark_actors::remoting::client::PushFrame;
use skylark_codec::{
    Command, ConsumeFrom, ConsumeType, ConsumerGroupData, ExpressionType, GetConsumerListRequest,
    HeartbeatRequest, LockBatchRequest, MessageModel, PullStatus, QueueRef, ResetOffsetNotify,
    SearchOffsetRequest, SendBackRequest, Subscription, UnlockBatchRequest,
    UnregisterClientRequest, PROPERTY_RETRY_TOPIC, RETRY_TOPIC_PREFIX,
};
use tokio::sync::{mpsc, watch, Semaphore};

use super::config::ClientConfig;
use super::consumer::PullConsumer;
use super::error::{ClientError, Result};
use super::local_offsets::{default_path, LocalOffsetStore};
use super::message::ReceivedMessage;
use super::process_queue::ProcessQueue;
use super::rebalance::{allocate, sort_queues, AllocateStrategy};
use super::route::MessageQueue;

/// What a listener answers for a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumeResult {
    /// Consumed: the offset may move past these messages.
    Success,
    /// Failed: deliver the batch again later.
    Retry,
    /// The downstream is unavailable: pause this queue for this long, then
    /// deliver the batch again (not counted as a failure).
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
    /// Delay before a batch answered `Retry` is delivered again.
    pub retry_delay: Duration,
    /// Consume each queue in order under a broker lock.
    pub orderly: bool,
    /// Failed deliveries after which a (clustering, concurrent) message
    /// goes to `%DLQ%<group>`.
    pub max_reconsume_times: u32,
    /// How often orderly locks are renewed.
    pub lock_renew_interval: Duration,
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
            instance_name: "DEFAULT".to_string(),
            local_offset_path: None,
        }
    }
}

/// A batch for the consume pool.
struct Work {
    queue: MessageQueue,
    pq: Arc<ProcessQueue>,
    msgs: Vec<ReceivedMessage>,
}

struct Inner {
    consumer: PullConsumer,
    client_id: String,
    opts: PushConsumerOptions,
    subs: Vec<(String, Option<String>)>,
    listener: Arc<dyn MessageListener>,
    queues: Mutex<HashMap<MessageQueue, Arc<ProcessQueue>>>,
    rebalance: tokio::sync::Notify,
    stopped: AtomicBool,
    stop: watch::Sender<bool>,
    local: Option<Arc<LocalOffsetStore>>,
    work_tx: mpsc::UnboundedSender<Work>,
    orderly_permits: Semaphore,
}

/// A running push consumer; [`shutdown`](Self::shutdown) it to commit and
/// leave the group cleanly.
pub struct PushConsumer {
    inner: Arc<Inner>,
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
    subs: Vec<(String, Option<String>)>,
}

impl PushConsumer {
    /// A builder for a consumer of `group`.
    pub fn builder(config: ClientConfig, group: &str) -> PushConsumerBuilder {
        PushConsumerBuilder {
            config,
            group: group.to_string(),
            opts: PushConsumerOptions::default(),
            subs: Vec::new(),
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

    /// Rebalance now (as on a broker push).
    pub fn rebalance_now(&self) {
        self.inner.rebalance.notify_one();
    }

    /// Stops pulling, commits every queue's safe offset, releases order
    /// locks and leaves the group (the others rebalance at once).
    pub async fn shutdown(self) {
        let inner = self.inner.clone();
        inner.stopped.store(true, Ordering::SeqCst);
        let _ = inner.stop.send(true);
        let queues: Vec<(MessageQueue, Arc<ProcessQueue>)> = inner
            .queues()
            .iter()
            .map(|(q, p)| (q.clone(), p.clone()))
            .collect();
        for (_, pq) in &queues {
            pq.drop_queue();
        }
        for (q, pq) in &queues {
            inner.commit_final(q, pq).await;
        }
        inner.persist_local().await;
        if inner.opts.orderly {
            inner
                .unlock(queues.iter().map(|(q, _)| q.clone()).collect())
                .await;
        }
        for addr in inner.broker_addrs().await {
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
    /// consuming (nothing more is committed; the next owner of the queues
    /// re-delivers what was in flight).
    fn drop(&mut self) {
        self.inner.stopped.store(true, Ordering::SeqCst);
        let _ = self.inner.stop.send(true);
        for pq in self.inner.queues().values() {
            pq.drop_queue();
        }
    }
}

impl PushConsumerBuilder {
    /// Subscribes to `topic` with a tag expression (`"*"` or `"A || B"`).
    pub fn subscribe(mut self, topic: &str, expression: &str) -> Self {
        let expr = (expression != "*" && !expression.is_empty()).then(|| expression.to_string());
        self.subs.push((topic.to_string(), expr));
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
        for (_, e) in &self.subs {
            if let Some(e) = e {
                skylark_codec::parse_tag_expression(e)
                    .map_err(|e| ClientError::InvalidArgument(e.to_string()))?;
            }
        }
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
                        "local offset file {}: {e}",
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
            subs.push((format!("{RETRY_TOPIC_PREFIX}{}", self.group), None));
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
            queues: Mutex::new(HashMap::new()),
            rebalance: tokio::sync::Notify::new(),
            stopped: AtomicBool::new(false),
            stop,
            local,
            work_tx,
        });
        let work_rx = Arc::new(tokio::sync::Mutex::new(work_rx));
        for _ in 0..inner.opts.consume_threads {
            actix::spawn(worker(inner.clone(), work_rx.clone()));
        }
        let pushes = PushReceiver {
            inner: Arc::downgrade(&inner),
        }
        .start()
        .recipient();
        actix::spawn(rebalance_loop(inner.clone(), pushes.clone()));
        actix::spawn(every(
            inner.clone(),
            inner.opts.heartbeat_interval,
            move |i| {
                let p = pushes.clone();
                async move { i.heartbeat(&p).await }
            },
        ));
        actix::spawn(every(
            inner.clone(),
            inner.opts.commit_interval,
            |i| async move { i.commit_all().await },
        ));
        if inner.opts.orderly {
            actix::spawn(every(
                inner.clone(),
                inner.opts.lock_renew_interval,
                |i| async move {
                    i.lock_all().await;
                },
            ));
        }
        Ok(PushConsumer { inner })
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
        if inner.stopped.load(Ordering::SeqCst) {
            return;
        }
        f(inner.clone()).await;
    }
}

async fn rebalance_loop(inner: Arc<Inner>, pushes: Recipient<PushFrame>) {
    let mut stop = inner.stop.subscribe();
    inner.heartbeat(&pushes).await;
    loop {
        if inner.stopped.load(Ordering::SeqCst) {
            return;
        }
        // A topic without a route yet, or a group whose member list does not
        // show us yet, is retried soon rather than at the next period.
        let settled = inner.rebalance().await;
        if !settled {
            inner.heartbeat(&pushes).await;
        }
        let wait = if settled {
            inner.opts.rebalance_interval
        } else {
            inner
                .opts
                .rebalance_interval
                .min(Duration::from_millis(500))
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = inner.rebalance.notified() => {}
            _ = stop.changed() => return,
        }
    }
}

/// One consume worker: takes batches in arrival order and runs the listener.
async fn worker(inner: Arc<Inner>, rx: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Work>>>) {
    let mut stop = inner.stop.subscribe();
    loop {
        let work = tokio::select! {
            w = async { rx.lock().await.recv().await } => w,
            _ = stop.changed() => return,
        };
        let Some(w) = work else { return };
        if w.pq.is_dropped() {
            continue; // the queue's next owner delivers it again
        }
        let Some((msgs, result)) = run_listener(&inner, w.msgs).await else {
            continue;
        };
        match result {
            ConsumeResult::Success => w.pq.remove(msgs.iter().map(|m| m.queue_offset)),
            ConsumeResult::Retry => {
                // Clustering: hand each message back to the broker (retry
                // topic, or the dead-letter topic after the maximum); what
                // the broker does not take is retried here.
                let mut local = Vec::new();
                for mut m in msgs {
                    if inner.send_back(&w.queue, &m).await {
                        w.pq.remove([m.queue_offset]);
                    } else {
                        m.reconsume_times += 1;
                        local.push(m);
                    }
                }
                if !local.is_empty() {
                    inner.redeliver_later(w.queue, w.pq, local, inner.opts.retry_delay);
                }
            }
            ConsumeResult::Suspend(d) => {
                w.pq.suspend(Instant::now() + d);
                inner.redeliver_later(w.queue, w.pq, msgs, d);
            }
        }
    }
}

/// Runs the listener on a blocking thread; a panic counts as `Retry`.
async fn run_listener(
    inner: &Inner,
    msgs: Vec<ReceivedMessage>,
) -> Option<(Vec<ReceivedMessage>, ConsumeResult)> {
    let l = inner.listener.clone();
    tokio::task::spawn_blocking(move || {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| l.consume(&msgs)))
            .unwrap_or(ConsumeResult::Retry);
        (msgs, r)
    })
    .await
    .ok()
}

/// Pulls one queue until it is dropped.
async fn pull_loop(
    inner: Arc<Inner>,
    q: MessageQueue,
    pq: Arc<ProcessQueue>,
    expr: Option<String>,
) {
    let o = &inner.opts;
    loop {
        if pq.is_dropped() || inner.stopped.load(Ordering::SeqCst) {
            return;
        }
        if o.orderly && !pq.is_locked() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let (n, bytes) = pq.cached();
        if n > o.cache_max_messages || bytes > o.cache_max_bytes {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        if let Some(until) = pq.suspended_until(Instant::now()) {
            tokio::time::sleep_until(until.into()).await;
            continue;
        }
        let offset = pq.next_pull();
        let started = Instant::now();
        let r = match inner
            .consumer
            .pull(
                &q,
                offset,
                o.pull_batch_size,
                expr.as_deref(),
                o.pull_suspend,
            )
            .await
        {
            Ok(r) => r,
            Err(_) => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if pq.is_dropped() {
            return;
        }
        match r.status {
            PullStatus::Found => {
                pq.put(&r.messages, r.next_offset);
                let mut r = r;
                if q.topic.starts_with(RETRY_TOPIC_PREFIX) {
                    // A retried message is shown under its original topic.
                    for m in &mut r.messages {
                        if let Some(t) = m.property(PROPERTY_RETRY_TOPIC) {
                            m.topic = t.to_string();
                        }
                    }
                }
                if o.orderly {
                    consume_orderly(&inner, &pq, r.messages).await;
                } else {
                    let mut msgs = r.messages;
                    while !msgs.is_empty() {
                        let rest = msgs.split_off(o.batch_size.min(msgs.len()));
                        let w = Work {
                            queue: q.clone(),
                            pq: pq.clone(),
                            msgs,
                        };
                        let _ = inner.work_tx.send(w);
                        msgs = rest;
                    }
                }
            }
            PullStatus::OffsetIllegal => {
                pq.set_next_pull(r.next_offset.clamp(r.min_offset, r.max_offset))
            }
            _ => {
                pq.set_next_pull(r.next_offset);
                if started.elapsed() < o.pull_suspend / 2 && r.next_offset == offset {
                    // Answered at once with nothing: do not spin.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}

/// Orderly: the queue's one worker consumes its batches in order, retrying
/// a batch (after a pause) until it succeeds or the queue is dropped.
async fn consume_orderly(
    inner: &Arc<Inner>,
    pq: &Arc<ProcessQueue>,
    mut msgs: Vec<ReceivedMessage>,
) {
    while !msgs.is_empty() {
        let rest = msgs.split_off(inner.opts.batch_size.min(msgs.len()));
        let mut batch = msgs;
        loop {
            if pq.is_dropped() || !pq.is_locked() {
                return;
            }
            let Ok(_permit) = inner.orderly_permits.acquire().await else {
                return;
            };
            pq.set_busy(true);
            let out = run_listener(inner, batch).await;
            pq.set_busy(false);
            let Some((back, result)) = out else { return };
            batch = back;
            match result {
                ConsumeResult::Success => {
                    pq.remove(batch.iter().map(|m| m.queue_offset));
                    break;
                }
                ConsumeResult::Retry => {
                    for m in &mut batch {
                        m.reconsume_times += 1;
                    }
                    tokio::time::sleep(inner.opts.retry_delay).await;
                }
                ConsumeResult::Suspend(d) => tokio::time::sleep(d).await,
            }
        }
        msgs = rest;
    }
}

impl Inner {
    fn queues(&self) -> std::sync::MutexGuard<'_, HashMap<MessageQueue, Arc<ProcessQueue>>> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn broadcasting(&self) -> bool {
        self.opts.model == MessageModel::Broadcasting
    }

    /// Sends a failed message back to its broker (clustering only); true if
    /// the broker stored it in the retry or dead-letter topic.
    async fn send_back(&self, q: &MessageQueue, m: &ReceivedMessage) -> bool {
        if self.broadcasting() {
            return false;
        }
        let req = SendBackRequest {
            group: self.consumer.group().to_string(),
            physical_offset: m.physical_offset,
            reconsume_times: m.reconsume_times,
            max_reconsume_times: Some(self.opts.max_reconsume_times),
        };
        match self.consumer.conn(&q.broker_addr).await {
            Ok(c) => c.call(&req).await.is_ok(),
            Err(_) => false,
        }
    }

    fn redeliver_later(
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

    /// Every broker address hosting a subscribed topic.
    async fn broker_addrs(&self) -> Vec<String> {
        let mut addrs = Vec::new();
        for (topic, _) in &self.subs {
            if let Ok(qs) = self.consumer.queues(topic).await {
                addrs.extend(qs.into_iter().map(|q| q.broker_addr));
            }
        }
        addrs.sort();
        addrs.dedup();
        addrs
    }

    /// Heartbeats to every broker of the subscribed topics, routing their
    /// pushes to `pushes`.
    async fn heartbeat(&self, pushes: &Recipient<PushFrame>) {
        let req = HeartbeatRequest {
            client_id: self.client_id.clone(),
            producer_groups: Vec::new(),
            consumer_groups: vec![ConsumerGroupData {
                group: self.consumer.group().to_string(),
                consume_type: ConsumeType::Push,
                message_model: self.opts.model,
                consume_from: self.opts.consume_from,
                subscriptions: self
                    .subs
                    .iter()
                    .map(|(topic, expr)| Subscription {
                        topic: topic.clone(),
                        expression_type: ExpressionType::Tag,
                        expression: expr.clone().unwrap_or_else(|| "*".to_string()),
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

    /// Recomputes this member's queues of every subscribed topic; false if
    /// some topic could not be settled (no route, member list unknown).
    async fn rebalance(self: &Arc<Self>) -> bool {
        let mut settled = true;
        for (topic, expr) in self.subs.clone() {
            match self.allocation(&topic).await {
                Some(mine) => self.update_queues(&topic, expr, mine).await,
                // The retry topic exists only once something was sent back.
                None if topic.starts_with(RETRY_TOPIC_PREFIX) => {}
                None => settled = false,
            }
        }
        if self.opts.orderly {
            // A queue whose lock another member still holds is asked for
            // again soon (that member releases it after its rebalance).
            settled &= self.lock_all().await;
        }
        settled
    }

    /// This member's queues of `topic`; `None` if that cannot be known now.
    async fn allocation(&self, topic: &str) -> Option<Vec<MessageQueue>> {
        let mut all = self.consumer.queues(topic).await.ok()?;
        sort_queues(&mut all);
        if self.broadcasting() {
            return Some(all);
        }
        let first = all.first()?;
        let req = GetConsumerListRequest {
            group: self.consumer.group().to_string(),
        };
        let conn = self.consumer.conn(&first.broker_addr).await.ok()?;
        let members = conn.call(&req).await.ok()?.client_ids;
        if !members.contains(&self.client_id) {
            return None; // our heartbeat has not landed yet
        }
        Some(allocate(
            self.opts.strategy,
            &self.client_id,
            &members,
            &all,
        ))
    }

    async fn update_queues(
        self: &Arc<Self>,
        topic: &str,
        expr: Option<String>,
        mine: Vec<MessageQueue>,
    ) {
        let wanted: HashSet<&MessageQueue> = mine.iter().collect();
        let removed: Vec<(MessageQueue, Arc<ProcessQueue>)> = {
            let mut map = self.queues();
            let gone: Vec<MessageQueue> = map
                .keys()
                .filter(|q| q.topic == topic && !wanted.contains(q))
                .cloned()
                .collect();
            gone.into_iter()
                .filter_map(|q| map.remove(&q).map(|pq| (q, pq)))
                .collect()
        };
        for (q, pq) in &removed {
            pq.drop_queue();
            if self.opts.orderly {
                // Let a running batch finish before another member may start.
                let deadline = Instant::now() + Duration::from_secs(1);
                while pq.is_busy() && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            self.commit_final(q, pq).await;
        }
        if self.opts.orderly && !removed.is_empty() {
            self.unlock(removed.into_iter().map(|(q, _)| q).collect())
                .await;
        }
        self.persist_local().await;
        for q in mine {
            if self.queues().contains_key(&q) {
                continue;
            }
            let Ok((start, committed)) = self.start_offset(&q).await else {
                continue; // retried at the next rebalance
            };
            let pq = Arc::new(ProcessQueue::new(start, committed));
            if self.stopped.load(Ordering::SeqCst) {
                return;
            }
            self.queues().insert(q.clone(), pq.clone());
            actix::spawn(pull_loop(self.clone(), q, pq, expr.clone()));
        }
    }

    /// Where a newly assigned queue starts, and what is committed for it.
    async fn start_offset(&self, q: &MessageQueue) -> Result<(u64, Option<u64>)> {
        let stored = match &self.local {
            Some(l) => l.get(q),
            None => self.consumer.query_offset(q).await?,
        };
        if let Some(o) = stored {
            return Ok((o, Some(o)));
        }
        let o = match self.opts.consume_from {
            ConsumeFrom::First => self.consumer.queue_offsets(q).await?.min_offset,
            ConsumeFrom::Last => self.consumer.queue_offsets(q).await?.max_offset,
            ConsumeFrom::Timestamp(ms) => search_offset(&self.consumer, q, ms).await?,
        };
        Ok((o, None))
    }

    /// Commits a dropped queue's safe offset (unless a reset discarded it).
    async fn commit_final(&self, q: &MessageQueue, pq: &ProcessQueue) {
        if pq.is_discarded() {
            return;
        }
        let o = pq.commit_offset();
        match &self.local {
            Some(l) => l.set(q, o),
            None => {
                let _ = self.consumer.commit_offset(q, o).await;
            }
        }
    }

    /// Commits every queue whose safe offset moved.
    async fn commit_all(&self) {
        let queues: Vec<(MessageQueue, Arc<ProcessQueue>)> = self
            .queues()
            .iter()
            .map(|(q, p)| (q.clone(), p.clone()))
            .collect();
        for (q, pq) in queues {
            if pq.is_dropped() || pq.is_discarded() {
                continue;
            }
            let Some(o) = pq.offset_to_commit() else {
                continue;
            };
            match &self.local {
                Some(l) => {
                    l.set(&q, o);
                    pq.committed(o);
                }
                None => {
                    if self.consumer.commit_offset(&q, o).await.is_ok() {
                        pq.committed(o);
                    }
                }
            }
        }
        self.persist_local().await;
    }

    async fn persist_local(&self) {
        if self.local.is_none() {
            return;
        }
        // The write and fsync run on a blocking thread, not the actor's.
        if let Some(l) = self.local.clone() {
            let _ = tokio::task::spawn_blocking(move || l.persist()).await;
        }
    }

    /// Locks (or renews) every assigned queue on its broker; marks which
    /// ones this member holds. True if it holds all of them.
    async fn lock_all(&self) -> bool {
        let mut all = true;
        let queues: Vec<(MessageQueue, Arc<ProcessQueue>)> = self
            .queues()
            .iter()
            .map(|(q, p)| (q.clone(), p.clone()))
            .collect();
        let mut by_broker: HashMap<String, Vec<(MessageQueue, Arc<ProcessQueue>)>> = HashMap::new();
        for (q, pq) in queues {
            by_broker
                .entry(q.broker_addr.clone())
                .or_default()
                .push((q, pq));
        }
        for (addr, qs) in by_broker {
            let req = LockBatchRequest {
                group: self.consumer.group().to_string(),
                client_id: self.client_id.clone(),
                queues: qs
                    .iter()
                    .map(|(q, _)| QueueRef {
                        topic: q.topic.clone(),
                        queue_id: q.queue_id,
                    })
                    .collect(),
            };
            let locked: HashSet<QueueRef> = match self.consumer.conn(&addr).await {
                Ok(c) => match c.call(&req).await {
                    Ok(r) => r.locked.into_iter().collect(),
                    Err(_) => HashSet::new(),
                },
                Err(_) => HashSet::new(),
            };
            for (q, pq) in qs {
                let held = locked.contains(&QueueRef {
                    topic: q.topic.clone(),
                    queue_id: q.queue_id,
                });
                pq.set_locked(held);
                all &= held;
            }
        }
        all
    }

    async fn unlock(&self, queues: Vec<MessageQueue>) {
        let mut by_broker: HashMap<String, Vec<QueueRef>> = HashMap::new();
        for q in queues {
            by_broker
                .entry(q.broker_addr.clone())
                .or_default()
                .push(QueueRef {
                    topic: q.topic,
                    queue_id: q.queue_id,
                });
        }
        for (addr, queues) in by_broker {
            if let Ok(c) = self.consumer.conn(&addr).await {
                let req = UnlockBatchRequest {
                    group: self.consumer.group().to_string(),
                    client_id: self.client_id.clone(),
                    queues,
                };
                let _ = c.call(&req).await;
            }
        }
    }

    /// A broker reset the group's offsets of a topic: forget the in-memory
    /// progress of its queues there and re-read the offsets.
    fn apply_reset(&self, n: ResetOffsetNotify) {
        if n.group != self.consumer.group() {
            return;
        }
        let mut map = self.queues();
        let hit: Vec<MessageQueue> = map
            .keys()
            .filter(|q| q.topic == n.topic && q.broker_addr == n.broker_addr)
            .cloned()
            .collect();
        for q in hit {
            if let Some(pq) = map.remove(&q) {
                pq.set_discard();
                pq.drop_queue();
            }
            if let (Some(l), Some(e)) = (
                &self.local,
                n.offsets.iter().find(|e| e.queue_id == q.queue_id),
            ) {
                l.set(&q, e.offset);
            }
        }
        drop(map);
        self.rebalance.notify_one();
    }
}

/// The first offset of `q` stored at or after `ms`.
pub(crate) async fn search_offset(c: &PullConsumer, q: &MessageQueue, ms: i64) -> Result<u64> {
    let conn = c.conn(&q.broker_addr).await?;
    let req = SearchOffsetRequest {
        topic: q.topic.clone(),
        queue_id: q.queue_id,
        timestamp_ms: ms,
    };
    conn.call(&req)
        .await
        .map(|r| r.offset)
        .map_err(|e| ClientError::from_call(&q.broker_addr, Some(&q.topic), e))
}
