//! The `TopicQueue` actor: one per topic.
//!
//! Owns the topic's queue layout (read/write queue counts, permissions,
//! order flag), the choice of queue for a send that names none, the pulls
//! parked on its empty queues, and per-topic counters. Appends and reads go
//! to the [`Storage`] actor; when an append lands, the pulls parked on the
//! queues it touched are woken at once (long polling: a consumer sees a new
//! message within milliseconds, not at the end of its hold).
//!
//! Messages answered: [`Append`], [`Pull`], [`Park`], [`UpdateConfig`], [`GetTopicStats`], [`Close`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use skylark_codec::{ErrorCode, PullResponse, PullStatus, TopicConfig, WireError};
use slog::Logger;
use tokio::sync::oneshot;

use crate::config::BrokerConfig;
use crate::filter::SqlFilter;
use crate::storage::{GetMessages, PutMessages, Storage, StoredMessage};
use crate::store::{AppendBatchResult, ReadResult, ReadStatus};

/// State owner of one topic.
pub struct TopicQueue {
    config: TopicConfig,
    storage: Addr<Storage>,
    next_queue: u32,
    /// Highest queue offset (exclusive) this actor has seen appended, per queue.
    known_max: Vec<u64>,
    parked: HashMap<u32, Vec<oneshot::Sender<()>>>,
    puts: u64,
    log: Logger,
}

impl TopicQueue {
    pub fn new(
        config: TopicConfig,
        storage: Addr<Storage>,
        _broker: Arc<BrokerConfig>,
        log: Logger,
    ) -> Self {
        let log = log.new(slog::o!("actor" => "topic_queue", "topic" => config.name.clone()));
        TopicQueue {
            config,
            storage,
            next_queue: 0,
            known_max: Vec::new(),
            parked: HashMap::new(),
            puts: 0,
            log,
        }
    }

    fn wake(&mut self, queue_id: u32, max: u64) {
        let q = queue_id as usize;
        if self.known_max.len() <= q {
            self.known_max.resize(q + 1, 0);
        }
        if max > self.known_max[q] {
            self.known_max[q] = max;
        }
        if let Some(waiters) = self.parked.remove(&queue_id) {
            for w in waiters {
                let _ = w.send(());
            }
        }
    }

    /// The queue a send goes to: the one asked for, or the next in turn.
    fn pick_queue(&mut self, asked: i32) -> Result<u32, WireError> {
        if !self.config.is_writable() {
            return Err(WireError::new(
                ErrorCode::PermissionDenied,
                format!("topic '{}' is not writable", self.config.name),
            ));
        }
        let n = self.config.write_queues.max(1);
        if asked >= 0 {
            if asked as u32 >= n {
                return Err(WireError::new(
                    ErrorCode::BadRequest,
                    format!(
                        "topic '{}' has {} write queues; queue {} does not exist",
                        self.config.name, n, asked
                    ),
                ));
            }
            return Ok(asked as u32);
        }
        let q = self.next_queue % n;
        self.next_queue = self.next_queue.wrapping_add(1);
        Ok(q)
    }
}

impl Actor for TopicQueue {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
    }
}

/// Append a batch of messages to one queue (or the next one in turn).
#[derive(Message)]
#[rtype(result = "Result<AppendBatchResult, WireError>")]
pub struct Append {
    /// Queue asked for; < 0 lets the topic choose.
    pub queue_id: i32,
    /// The messages, already validated by the caller; their queue id is set here.
    pub messages: Vec<StoredMessage>,
}

/// Wait for a message on `queue_id` past `offset`. Answers `false` if one is
/// already there (pull again now); otherwise `true` and `waker` fires when
/// an append reaches the queue.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Park {
    pub queue_id: u32,
    pub offset: u64,
    pub waker: oneshot::Sender<()>,
}

/// Replace the topic's config (queue counts, permissions, order flag).
#[derive(Message)]
#[rtype(result = "()")]
pub struct UpdateConfig(pub TopicConfig);

/// The topic is deleted: wake every parked pull and stop.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Close;

/// Per-topic counters and config.
#[derive(Message)]
#[rtype(result = "TopicCounters")]
pub struct GetTopicStats;

/// Counters of one topic since the broker started.
#[derive(Debug, Clone)]
pub struct TopicCounters {
    pub config: TopicConfig,
    pub messages_put: u64,
    pub parked_pulls: usize,
}

impl Handler<Append> for TopicQueue {
    type Result = ResponseActFuture<Self, Result<AppendBatchResult, WireError>>;
    fn handle(&mut self, mut msg: Append, _: &mut Self::Context) -> Self::Result {
        let queue_id = match self.pick_queue(msg.queue_id) {
            Ok(q) => q,
            Err(e) => return Box::pin(actix::fut::ready(Err(e))),
        };
        for m in &mut msg.messages {
            m.queue_id = queue_id;
        }
        let n = msg.messages.len() as u64;
        let put = self.storage.send(PutMessages {
            messages: msg.messages,
        });
        Box::pin(put.into_actor(self).map(move |res, act, _| {
            let res = res
                .map_err(crate::mailbox_error)?
                .map_err(crate::store_error)?;
            act.puts += n;
            if let Some(last) = res.results.last() {
                act.wake(queue_id, last.queue_offset + 1);
            }
            Ok(res)
        }))
    }
}

impl Handler<Park> for TopicQueue {
    type Result = bool;
    fn handle(&mut self, msg: Park, _: &mut Self::Context) -> bool {
        let known = self
            .known_max
            .get(msg.queue_id as usize)
            .copied()
            .unwrap_or(0);
        if known > msg.offset {
            return false;
        }
        let waiters = self.parked.entry(msg.queue_id).or_default();
        // Drop wakers whose pulls already gave up, so a hot empty queue
        // does not accumulate them.
        waiters.retain(|w| !w.is_closed());
        waiters.push(msg.waker);
        true
    }
}

impl Handler<UpdateConfig> for TopicQueue {
    type Result = ();
    fn handle(&mut self, msg: UpdateConfig, _: &mut Self::Context) {
        self.config = msg.0;
    }
}

impl Handler<Close> for TopicQueue {
    type Result = ();
    fn handle(&mut self, _: Close, ctx: &mut Self::Context) {
        slog::info!(self.log, "topic queue closed");
        for (_, ws) in self.parked.drain() {
            for w in ws {
                let _ = w.send(());
            }
        }
        ctx.stop();
    }
}

impl Handler<GetTopicStats> for TopicQueue {
    type Result = MessageResult<GetTopicStats>;
    fn handle(&mut self, _: GetTopicStats, _: &mut Self::Context) -> Self::Result {
        MessageResult(TopicCounters {
            config: self.config.clone(),
            messages_put: self.puts,
            parked_pulls: self.parked.values().map(Vec::len).sum(),
        })
    }
}

/// Messages reached `queue_id` by another way than [`Append`] (a slave's
/// replicated CommitLog): wake the pulls parked on it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Arrived {
    pub queue_id: u32,
    pub max_offset: u64,
}

impl Handler<Arrived> for TopicQueue {
    type Result = ();
    fn handle(&mut self, msg: Arrived, _: &mut Self::Context) {
        self.wake(msg.queue_id, msg.max_offset);
    }
}

/// Read from one queue; if it is empty, hold the pull up to `hold` and
/// answer as soon as a message lands.
#[derive(Message)]
#[rtype(result = "Result<PullResponse, WireError>")]
pub struct Pull {
    pub topic: String,
    pub queue_id: u32,
    pub queue_offset: u64,
    pub max_messages: u32,
    pub max_bytes: u32,
    /// Tag hashes to keep (None = all).
    pub tag_filter: Option<Vec<u64>>,
    /// SQL-92 property filter (None = all).
    pub sql_filter: Option<Arc<SqlFilter>>,
    /// Longest hold when nothing is there (zero = answer at once).
    pub hold: Duration,
}

impl Handler<Pull> for TopicQueue {
    type Result = ResponseFuture<Result<PullResponse, WireError>>;
    fn handle(&mut self, msg: Pull, ctx: &mut Self::Context) -> Self::Result {
        if !self.config.is_readable() {
            let e = WireError::new(
                ErrorCode::PermissionDenied,
                format!("topic '{}' is not readable", self.config.name),
            );
            return Box::pin(futures::future::ready(Err(e)));
        }
        if msg.queue_id >= self.config.read_queues.max(1) {
            // Also keeps a client from parking pulls on made-up queues.
            let e = WireError::new(
                ErrorCode::BadRequest,
                format!(
                    "topic '{}' has {} read queues; queue {} does not exist",
                    self.config.name, self.config.read_queues, msg.queue_id
                ),
            );
            return Box::pin(futures::future::ready(Err(e)));
        }
        let storage = self.storage.clone();
        let me = ctx.address();
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + msg.hold;
            let mut expired = msg.hold.is_zero();
            loop {
                let read = storage
                    .send(GetMessages {
                        topic: msg.topic.clone(),
                        queue_id: msg.queue_id,
                        queue_offset: msg.queue_offset,
                        max_messages: msg.max_messages,
                        max_bytes: msg.max_bytes,
                        tag_filter: msg.tag_filter.clone(),
                        sql_filter: msg.sql_filter.clone(),
                    })
                    .await
                    .map_err(crate::mailbox_error)?
                    .map_err(crate::store_error)?;
                let resp = to_pull_response(msg.queue_offset, read);
                if resp.status != PullStatus::NoNewMessage || expired {
                    return Ok(resp);
                }
                let (waker, woken) = oneshot::channel();
                let parked = me
                    .send(Park {
                        queue_id: msg.queue_id,
                        offset: msg.queue_offset,
                        waker,
                    })
                    .await
                    .map_err(crate::mailbox_error)?;
                if parked && tokio::time::timeout_at(deadline, woken).await.is_err() {
                    expired = true;
                }
            }
        })
    }
}

/// Maps a store read onto the wire's pull answer.
fn to_pull_response(asked: u64, r: ReadResult) -> PullResponse {
    let (status, next_offset) = match r.status {
        ReadStatus::Found => (PullStatus::Found, r.next_queue_offset),
        ReadStatus::NoMatchedMessage => (PullStatus::NoMatchedMessage, r.next_queue_offset),
        ReadStatus::NoNewMessage => (PullStatus::NoNewMessage, asked),
        ReadStatus::NoQueue if asked == 0 => (PullStatus::NoNewMessage, 0),
        ReadStatus::NoQueue => (PullStatus::OffsetIllegal, 0),
        ReadStatus::OffsetTooSmall => (PullStatus::OffsetIllegal, r.min_offset),
        ReadStatus::OffsetTooBig => (PullStatus::OffsetIllegal, r.max_offset),
    };
    PullResponse {
        status,
        next_offset,
        min_offset: r.min_offset,
        max_offset: r.max_offset,
        count: r.count,
        records: r.records,
        suggest_slave: false,
        damaged: r.damaged.into_iter().map(Into::into).collect(),
    }
}
