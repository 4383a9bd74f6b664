//! The `TopicQueue` actor: one per topic, the owner of its queue layout.
//!
//! Owns the topic's config (read/write queue counts, permissions, order
//! flag) while the topic lives. It is **not** on the send or pull path:
//! the [`TopicHandle`] that the Broker publishes in its registry carries an
//! immutable snapshot of the config, so a request handler checks
//! permissions and picks a queue where the request is decoded
//! ([`pick_queue`]) and talks to the Storage actor directly. Parked
//! long-poll pulls are held by Storage itself, which wakes them from its
//! appends (local, replicated, scheduled or transactional alike).
//!
//! Messages answered: [`Append`] (the transaction commit path),
//! [`UpdateConfig`], [`GetTopicStats`], [`Close`].

use std::cell::Cell;
use std::sync::Arc;

use actix::prelude::*;
use skylark_codec::{ErrorCode, TopicConfig, WireError};
use slog::Logger;

use crate::config::BrokerConfig;
use crate::message_store::AppendBatchResult;
use crate::storage::{PutMessages, Storage, StoredMessage};

/// What request handlers may read of a topic without asking its owner:
/// the actor and a snapshot of its config. Published (and replaced on
/// every config change) by the Broker actor only.
#[derive(Clone)]
pub struct TopicHandle {
    pub addr: Addr<TopicQueue>,
    pub config: Arc<TopicConfig>,
    /// The topic's name, shared by every message stored to it (no
    /// allocation per send).
    pub name: Arc<str>,
}

impl TopicHandle {
    /// The handle of `addr` with this config.
    pub fn new(addr: Addr<TopicQueue>, config: &TopicConfig) -> TopicHandle {
        TopicHandle {
            addr,
            name: Arc::from(config.name.as_str()),
            config: Arc::new(config.clone()),
        }
    }
}

thread_local! {
    /// Round-robin position for sends that name no queue, per thread: no
    /// state shared between connection threads.
    static NEXT_QUEUE: Cell<u32> = const { Cell::new(0) };
}

/// The queue a send goes to: the one asked for, or the next in turn.
pub fn pick_queue(config: &TopicConfig, asked: i32) -> Result<u32, WireError> {
    if !config.is_writable() {
        return Err(WireError::new(
            ErrorCode::PermissionDenied,
            format!("topic '{}' is not writable", config.name),
        ));
    }
    let n = config.write_queues.max(1);
    if asked >= 0 {
        if asked as u32 >= n {
            return Err(WireError::new(
                ErrorCode::BadRequest,
                format!(
                    "topic '{}' has {} write queues; queue {} does not exist",
                    config.name, n, asked
                ),
            ));
        }
        return Ok(asked as u32);
    }
    Ok(NEXT_QUEUE.with(|c| {
        let q = c.get();
        c.set(q.wrapping_add(1));
        q % n
    }))
}

/// Checks that `queue_id` may be read.
pub fn check_readable(config: &TopicConfig, queue_id: u32) -> Result<(), WireError> {
    if !config.is_readable() {
        return Err(WireError::new(
            ErrorCode::PermissionDenied,
            format!("topic '{}' is not readable", config.name),
        ));
    }
    if queue_id >= config.read_queues.max(1) {
        // Also keeps a client from parking pulls on made-up queues.
        return Err(WireError::new(
            ErrorCode::BadRequest,
            format!(
                "topic '{}' has {} read queues; queue {} does not exist",
                config.name, config.read_queues, queue_id
            ),
        ));
    }
    Ok(())
}

/// State owner of one topic.
pub struct TopicQueue {
    config: TopicConfig,
    storage: Addr<Storage>,
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
            log,
        }
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

/// Replace the topic's config (queue counts, permissions, order flag).
#[derive(Message)]
#[rtype(result = "()")]
pub struct UpdateConfig(pub TopicConfig);

/// The topic is deleted: stop.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Close;

/// The topic's config.
#[derive(Message)]
#[rtype(result = "TopicConfig")]
pub struct GetTopicStats;

impl Handler<Append> for TopicQueue {
    type Result = ResponseFuture<Result<AppendBatchResult, WireError>>;
    fn handle(&mut self, mut msg: Append, _: &mut Self::Context) -> Self::Result {
        let queue_id = match pick_queue(&self.config, msg.queue_id) {
            Ok(q) => q,
            Err(e) => return Box::pin(futures::future::ready(Err(e))),
        };
        for m in &mut msg.messages {
            m.queue_id = queue_id;
        }
        let put = self.storage.send(PutMessages {
            messages: msg.messages,
        });
        Box::pin(async move {
            put.await
                .map_err(crate::mailbox_error)?
                .map_err(crate::store_error)
        })
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
        ctx.stop();
    }
}

impl Handler<GetTopicStats> for TopicQueue {
    type Result = MessageResult<GetTopicStats>;
    fn handle(&mut self, _: GetTopicStats, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.config.clone())
    }
}
