//! The `Transaction` actor: one per broker; owns the state of half
//! (transactional) messages, the op log and check-back timing.
//!
//! * A half message is stored in [`HALF_TOPIC`] (queue 0) through
//!   [`PutHalf`]; consumers of its real topic never see it.
//! * [`End`] (a producer's `EndTransaction`) commits — the half is read back
//!   by physical offset and re-appended to its real topic through that
//!   topic's `TopicQueue`, so parked pulls wake — or rolls back; either way
//!   an op record goes to [`OP_TOPIC`]. A second outcome for a decided half
//!   is ignored: exactly one outcome per half message.
//! * A timer asks a live producer of the half's group (known from
//!   heartbeats, [`ProducerHeartbeat`]) about each undecided half older than
//!   `transaction_timeout_ms`, then every `transaction_check_interval_ms`, at
//!   most `transaction_check_max` times; then it is discarded (op record).
//! * [`Transaction::load`] rebuilds the state at start from the op log and
//!   the half queue, starting at the persisted progress
//!   (`<data_dir>/config/transaction.json`: the half-queue offset below
//!   which everything is decided). Check counts are not persisted: after a
//!   restart each undecided half gets up to `transaction_check_max` checks
//!   again. A commit appends to the real topic before writing its op
//!   record; a half found undecided at start whose committed copy is
//!   already in its real topic (same `prepared_tx_offset` and
//!   `TRAN_HALF_QOFFSET`) gets its op
//!   record then, so a crash between the two never delivers it twice. For
//!   the same reason a commit that fails once the copy may be written (a
//!   flush failure, or the op record not written) is not retried in this
//!   run: the half stays undecided-but-settled until the next start.
//!
//! Messages answered: [`PutHalf`], [`End`], [`ProducerHeartbeat`],
//! [`ProducerUnregister`], [`GetTransactionStats`], [`StopTransaction`]
//! (+ the check-back tick).

mod half_table;
mod producers;
mod records;
mod recovery;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde::{Deserialize, Serialize};
use skylark_codec::{
    Ack, CheckTransactionStateRequest, Command, EndTransactionRequest, ErrorCode, Header,
    MessageId, TransactionState, WireError,
};
use slog::{debug, error, info, warn, Logger};

pub use half_table::{Begin, CheckPolicy, Due, HalfInfo, HalfTable};
pub use producers::ProducerManager;
pub use records::{
    committed, committed_from, half_owner, is_half, op_record, op_target, real_destination,
    to_half, Decision, HALF_TOPIC, OP_TAG, OP_TOPIC, PROPERTY_OP,
};

use crate::broker::{Broker, EnsureTopic, TopicsView};
use crate::config::BrokerConfig;
use crate::message_store::{decode, AppendBatchResult, StoreError};
use crate::remoting::{wire, ClientConn, Push};
use crate::storage::{PutMessages, ReadAt, Storage, StoredMessage};
use crate::topic_queue::Append;

/// Producers silent this long are not asked any more (RocketMQ: 120 s).
pub const PRODUCER_EXPIRY: Duration = Duration::from_secs(120);

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The persisted check progress.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Progress {
    /// Every half message below this half-queue offset is decided.
    half_offset: u64,
}

/// State owner of transactional messages.
pub struct Transaction {
    table: HalfTable,
    producers: ProducerManager<ClientConn>,
    storage: Addr<Storage>,
    broker: Addr<Broker>,
    topics: TopicsView,
    store_host: SocketAddr,
    progress_path: PathBuf,
    persisted: u64,
    persisting: bool,
    /// A slave's Transaction actor neither checks back nor decides.
    passive: bool,
    tick: Duration,
    log: Logger,
}

/// Store a half message (already turned into one by [`to_half`]).
#[derive(Message)]
#[rtype(result = "Result<AppendBatchResult, WireError>")]
pub struct PutHalf(pub StoredMessage);

/// A producer's outcome for a half message.
#[derive(Message)]
#[rtype(result = "Result<Ack, WireError>")]
pub struct End(pub EndTransactionRequest);

/// A heartbeat listing the producer groups of the client at `peer`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ProducerHeartbeat {
    pub peer: SocketAddr,
    pub groups: Vec<String>,
    pub conn: ClientConn,
}

/// The client at `peer` leaves `group` (or all its groups).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ProducerUnregister {
    pub peer: SocketAddr,
    pub group: Option<String>,
}

/// Undecided half messages and the check progress.
#[derive(Message)]
#[rtype(result = "TransactionStats")]
pub struct GetTransactionStats;

/// Stops the actor at the broker's shutdown: its check-back tick would
/// keep it, and the Storage and Broker addresses it holds (with the
/// stopped threads' runtimes those pin), alive for ever.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopTransaction;

impl Handler<StopTransaction> for Transaction {
    type Result = ();
    fn handle(&mut self, _: StopTransaction, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

/// What [`GetTransactionStats`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransactionStats {
    pub pending: usize,
    pub progress: u64,
}

impl Transaction {
    /// Rebuilds the state from the op log and the half queue (through the
    /// Storage actor) and returns the actor, ready to start.
    pub async fn load(
        config: &BrokerConfig,
        storage: Addr<Storage>,
        broker: Addr<Broker>,
        topics: TopicsView,
        store_host: SocketAddr,
        log: Logger,
    ) -> Result<Transaction, StoreError> {
        let log = log.new(slog::o!("actor" => "transaction"));
        let progress_path = PathBuf::from(&config.store.data_dir)
            .join("config")
            .join("transaction.json");
        let progress: Progress = crate::persist::read_json(&progress_path)?.unwrap_or_default();
        let policy = CheckPolicy {
            timeout_ms: i64::try_from(config.transaction_timeout_ms).unwrap_or(i64::MAX),
            interval_ms: i64::try_from(config.transaction_check_interval_ms).unwrap_or(i64::MAX),
            max_checks: config.transaction_check_max,
        };
        let table =
            recovery::rebuild(&storage, policy, progress.half_offset, store_host, &log).await?;
        info!(log, "transaction state loaded";
            "undecided" => table.pending_count(), "progress" => table.progress());
        let shortest = config
            .transaction_timeout_ms
            .min(config.transaction_check_interval_ms)
            .min(1000);
        Ok(Transaction {
            persisted: progress.half_offset,
            table,
            producers: ProducerManager::new(PRODUCER_EXPIRY),
            storage,
            broker,
            topics,
            store_host,
            progress_path,
            persisting: false,
            // A slave never checks back or decides: its master does, and
            // the outcome reaches the slave through replication.
            passive: config.is_slave(),
            tick: Duration::from_millis((shortest / 2).max(20)),
            log,
        })
    }

    /// Applies `decision` to `half`, then writes its op record.
    fn decide(
        &self,
        half: HalfInfo,
        decision: Decision,
    ) -> ResponseActFuture<Self, Result<(), WireError>> {
        let storage = self.storage.clone();
        let broker = self.broker.clone();
        let topics = self.topics.clone();
        let host = self.store_host;
        let qo = half.queue_offset;
        // Errors are `(error, settled)`: `settled` = the real topic may hold
        // the committed copy, so the half must not be decided again in this
        // run (recovery at the next start sorts it out from disk).
        let fut = async move {
            let sure = |e: WireError| (e, false);
            if decision == Decision::Commit {
                let rec = storage
                    .send(ReadAt {
                        physical_offset: half.physical_offset,
                        size: 0,
                    })
                    .await
                    .map_err(crate::mailbox_error)
                    .map_err(sure)?
                    .map_err(crate::store_error)
                    .map_err(sure)?;
                let (d, _) = decode(&rec).map_err(crate::store_error).map_err(sure)?;
                let (topic, queue_id) = real_destination(&d)
                    .ok_or_else(|| {
                        WireError::new(ErrorCode::Internal, "half message without a real topic")
                    })
                    .map_err(sure)?;
                let message = committed(&d, &topic);
                let tq = match topics.get(&topic) {
                    Some(a) => a.clone(),
                    None => broker
                        .send(EnsureTopic {
                            name: topic.clone(),
                            auto_create: true,
                        })
                        .await
                        .map_err(crate::mailbox_error)
                        .map_err(sure)?
                        .map_err(sure)?,
                };
                tq.addr
                    .send(Append {
                        queue_id,
                        messages: vec![message],
                    })
                    .await
                    .map_err(|e| (crate::mailbox_error(e), false))?
                    .map_err(|e| {
                        // Flush failures happen after the write.
                        let written =
                            matches!(e.code, ErrorCode::FlushDiskTimeout | ErrorCode::Internal);
                        (e, written)
                    })?;
            }
            storage
                .send(PutMessages {
                    messages: vec![op_record(qo, decision, host)],
                })
                .await
                .map_err(|e| (crate::mailbox_error(e), decision == Decision::Commit))?
                .map_err(|e| (crate::store_error(e), decision == Decision::Commit))?;
            Ok(())
        };
        Box::pin(fut.into_actor(self).map(move |res, act, ctx| match res {
            Ok(()) => {
                act.table.finish(qo);
                info!(act.log, "half message decided";
                    "queue_offset" => qo, "decision" => decision.as_str());
                act.persist_progress(ctx);
                Ok(())
            }
            Err((e, settled)) => {
                if !settled {
                    act.table.abort(qo);
                }
                error!(act.log, "cannot apply a transaction decision";
                    "queue_offset" => qo, "decision" => decision.as_str(),
                    "retried" => !settled, "error" => %e);
                Err(e)
            }
        }))
    }

    /// Writes the progress file if it moved (off the actor's thread).
    fn persist_progress(&mut self, ctx: &mut Context<Self>) {
        let p = self.table.progress();
        if self.persisting || p <= self.persisted {
            return;
        }
        self.persisting = true;
        let path = self.progress_path.clone();
        let write = tokio::task::spawn_blocking(move || {
            crate::persist::write_json(&path, &Progress { half_offset: p })
        });
        ctx.spawn(write.into_actor(self).map(move |res, act, ctx| {
            act.persisting = false;
            match res {
                Ok(Ok(())) => {
                    act.persisted = p;
                    act.persist_progress(ctx);
                }
                Ok(Err(e)) => error!(act.log, "cannot persist transaction progress"; "error" => %e),
                Err(e) => error!(act.log, "cannot persist transaction progress"; "error" => %e),
            }
        }));
    }

    /// Timer: check-backs and discards that are due.
    fn check_due(&mut self, ctx: &mut Context<Self>) {
        for due in self.table.due(now_ms()) {
            match due {
                Due::Check(h) => self.check_back(h),
                Due::Discard(h) => {
                    warn!(self.log, "half message discarded after its last check-back";
                        "queue_offset" => h.queue_offset, "producer_group" => &h.producer_group,
                        "transaction_id" => &h.transaction_id, "checks" => h.checks);
                    ctx.spawn(self.decide(h, Decision::Discard).map(|_, _, _| ()));
                }
            }
        }
    }

    /// Pushes a check-back for `h` to a live producer of its group.
    fn check_back(&mut self, h: HalfInfo) {
        let Some(conn) = self
            .producers
            .pick(&h.producer_group, Instant::now(), |c| c.connected())
        else {
            debug!(self.log, "no live producer to check a half message with";
                "producer_group" => &h.producer_group, "queue_offset" => h.queue_offset,
                "checks" => h.checks);
            return;
        };
        debug!(self.log, "check-back"; "producer_group" => &h.producer_group,
            "queue_offset" => h.queue_offset, "checks" => h.checks);
        let storage = self.storage.clone();
        let host = self.store_host;
        let log = self.log.clone();
        actix::spawn(async move {
            let record = match storage
                .send(ReadAt {
                    physical_offset: h.physical_offset,
                    size: 0,
                })
                .await
            {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    error!(log, "cannot read a half message"; "error" => %e);
                    return;
                }
                Err(_) => return,
            };
            let req = CheckTransactionStateRequest {
                producer_group: h.producer_group,
                transaction_id: h.transaction_id,
                msg_id: MessageId::new(host, h.physical_offset).to_hex(),
                queue_offset: h.queue_offset,
                check_times: h.checks,
                record,
            };
            match conn {
                ClientConn::Skylark(a) => {
                    let frame = wire::encode(Header::push(0, Command::CheckTransactionState), &req);
                    a.do_send(Push(frame));
                }
                ClientConn::RocketMq(r) => {
                    match skylark_codec::remoting::notify::check_transaction_state(&req, host) {
                        Ok(cmd) => {
                            r.push(cmd);
                        }
                        Err(e) => error!(log, "cannot encode a RocketMQ check-back"; "error" => %e),
                    }
                }
            }
        });
    }
}

impl Actor for Transaction {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
        if !self.passive {
            ctx.run_interval(self.tick, |act, ctx| act.check_due(ctx));
        }
    }
}

impl Handler<PutHalf> for Transaction {
    type Result = ResponseActFuture<Self, Result<AppendBatchResult, WireError>>;

    fn handle(&mut self, msg: PutHalf, _: &mut Self::Context) -> Self::Result {
        let put = self.storage.send(PutMessages {
            messages: vec![msg.0.clone()],
        });
        let m = msg.0;
        Box::pin(put.into_actor(self).map(move |res, act, _| {
            let res = res
                .map_err(crate::mailbox_error)?
                .map_err(crate::store_error)?;
            for r in &res.results {
                let group = crate::transaction::prop(&m, skylark_codec::PROPERTY_PRODUCER_GROUP);
                let tx = crate::transaction::prop(&m, skylark_codec::PROPERTY_TRANSACTION_ID);
                act.table.add(
                    r.queue_offset,
                    r.physical_offset,
                    group,
                    tx,
                    r.store_timestamp,
                );
            }
            Ok(res)
        }))
    }
}

fn prop(m: &StoredMessage, name: &str) -> String {
    m.properties
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

impl Handler<End> for Transaction {
    type Result = ResponseActFuture<Self, Result<Ack, WireError>>;

    fn handle(&mut self, msg: End, _: &mut Self::Context) -> Self::Result {
        let r = msg.0;
        let decision = match r.state {
            TransactionState::Commit => Decision::Commit,
            TransactionState::Rollback => Decision::Rollback,
            TransactionState::Unknown => {
                debug!(self.log, "transaction state still unknown";
                    "queue_offset" => r.queue_offset, "from_check" => r.from_check);
                return Box::pin(actix::fut::ready(Ok(Ack {})));
            }
        };
        let id = match MessageId::from_hex(&r.msg_id) {
            Ok(id) => id,
            Err(e) => {
                return Box::pin(actix::fut::ready(Err(WireError::new(
                    ErrorCode::BadRequest,
                    e.to_string(),
                ))))
            }
        };
        match self.table.begin(r.queue_offset, id.physical_offset) {
            Begin::Proceed(h) => Box::pin(
                self.decide(h, decision)
                    .map(|res, _, _| res.map(|()| Ack {})),
            ),
            Begin::AlreadyDecided => {
                info!(self.log, "ignoring the outcome of an already decided half message";
                    "queue_offset" => r.queue_offset, "state" => ?r.state, "from_check" => r.from_check);
                Box::pin(actix::fut::ready(Ok(Ack {})))
            }
            Begin::Unknown => Box::pin(actix::fut::ready(Err(WireError::new(
                ErrorCode::BadRequest,
                format!(
                    "no half message {} at half queue offset {}",
                    r.msg_id, r.queue_offset
                ),
            )))),
        }
    }
}

impl Handler<ProducerHeartbeat> for Transaction {
    type Result = ();

    fn handle(&mut self, msg: ProducerHeartbeat, _: &mut Self::Context) {
        self.producers
            .heartbeat(msg.peer, &msg.groups, msg.conn, Instant::now());
    }
}

impl Handler<ProducerUnregister> for Transaction {
    type Result = ();

    fn handle(&mut self, msg: ProducerUnregister, _: &mut Self::Context) {
        self.producers.unregister(msg.peer, msg.group.as_deref());
    }
}

impl Handler<GetTransactionStats> for Transaction {
    type Result = MessageResult<GetTransactionStats>;

    fn handle(&mut self, _: GetTransactionStats, _: &mut Self::Context) -> Self::Result {
        MessageResult(TransactionStats {
            pending: self.table.pending_count(),
            progress: self.table.progress(),
        })
    }
}
