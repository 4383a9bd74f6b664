//! [`TransactionProducer`]: transactional messages (RocketMQ's
//! `TransactionMQProducer`).
//!
//! [`send_in_transaction`](TransactionProducer::send_in_transaction) sends a
//! *half* message (property `TRAN_MSG=true`; the broker keeps it where no
//! consumer sees it), runs the local transaction with the send result, and
//! reports its outcome to the broker that stored the half
//! (`EndTransaction`): `Commit` delivers the message, `Rollback` drops it,
//! `Unknown` leaves it to the broker's check-back.
//!
//! The check listener answers check-backs: the broker pushes a
//! `CheckTransactionState` frame over a connection of a live producer of the
//! same group; a [`TransactionChecker`] actor receives it, calls the
//! listener with the half message (its topic shown as the real topic) and
//! answers with `EndTransaction { from_check: true }`. The same actor sends
//! heartbeats naming the producer group to every broker (at start, then
//! every `heartbeat_interval`), which is how brokers know the live producers.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use skylark_codec::rpc::PushFrame;
pub use skylark_codec::TransactionState;
use skylark_codec::{
    CheckTransactionStateRequest, Command, EndTransactionRequest, ErrorCode, HeartbeatRequest,
    MessageData, MessageId, SendResult, PROPERTY_PRODUCER_GROUP, PROPERTY_REAL_TOPIC,
    PROPERTY_TRANSACTION_ID, PROPERTY_TRANSACTION_PREPARED,
};

use super::config::ClientConfig;
use super::error::{ClientError, Result};
use super::instance::{ClientInstance, ConnectedBrokers, GetConnection};
use super::message::{decode_records, ReceivedMessage};
use super::namesrv::NameServerClient;
use super::producer::Producer;

/// RocketMQ's name for a local transaction's outcome.
pub type LocalTransactionState = TransactionState;

/// Default heartbeat interval (RocketMQ: 30 s).
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(30);

/// What [`TransactionProducer::send_in_transaction`] reports.
#[derive(Debug, Clone)]
pub struct TransactionSendResult {
    /// Where the half message was stored.
    pub send_result: SendResult,
    /// The id the check listener sees in `__transactionId__`.
    pub transaction_id: String,
    /// What the local transaction decided.
    pub local_state: TransactionState,
    /// Why the outcome could not be reported (the broker's check-back will
    /// ask again), if it could not; or, on a SYNC_MASTER, why it is not
    /// known to be on a slave yet (`FlushSlaveTimeout`,
    /// `SlaveNotAvailable`: decided and stored on the master, and
    /// repeating [`TransactionProducer::end_transaction`] confirms it).
    pub end_error: Option<String>,
}

/// A transactional producer; clone it freely (it shares one checker).
#[derive(Clone)]
pub struct TransactionProducer {
    producer: Producer,
    checker: Addr<TransactionChecker>,
    group: Arc<str>,
    client_id: Arc<str>,
    seq: Arc<AtomicU64>,
}

impl std::fmt::Debug for TransactionProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TransactionProducer({})", self.group)
    }
}

impl TransactionProducer {
    /// Starts a producer of `group` whose check-backs are answered by
    /// `check`. Must run inside an actix System.
    pub fn start<F>(config: ClientConfig, group: &str, check: F) -> Result<TransactionProducer>
    where
        F: Fn(&ReceivedMessage) -> TransactionState + 'static,
    {
        Self::start_with(config, group, DEFAULT_HEARTBEAT_INTERVAL, check)
    }

    /// Like [`start`](Self::start) with an explicit heartbeat interval
    /// (at least 10 ms; over [`MAX_DURATION`](super::MAX_DURATION) it is
    /// refused with [`ClientError::InvalidArgument`](super::ClientError)).
    pub fn start_with<F>(
        config: ClientConfig,
        group: &str,
        heartbeat_interval: Duration,
        check: F,
    ) -> Result<TransactionProducer>
    where
        F: Fn(&ReceivedMessage) -> TransactionState + 'static,
    {
        super::config::check_duration(
            "TransactionProducer::start_with",
            "heartbeat_interval",
            heartbeat_interval,
            true,
        )?;
        let client_id: Arc<str> = Arc::from(config.client_id.as_str());
        let producer = Producer::start(config, group)?;
        let group: Arc<str> = Arc::from(group);
        let checker = TransactionChecker {
            instance: producer.instance().clone(),
            namesrv: producer.namesrv().clone(),
            client_id: client_id.clone(),
            group: group.clone(),
            listener: Rc::new(check),
            heartbeat_interval: heartbeat_interval.max(Duration::from_millis(10)),
        }
        .start();
        Ok(TransactionProducer {
            producer,
            checker,
            group,
            client_id,
            seq: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The plain producer underneath (same group and connections).
    pub fn producer(&self) -> &Producer {
        &self.producer
    }

    /// Sends `msg` as a half message to `topic`, runs `local` with where it
    /// was stored, and reports the outcome. A panicking `local` counts as
    /// `Unknown` (the check-back decides).
    pub async fn send_in_transaction<F>(
        &self,
        topic: &str,
        mut msg: MessageData,
        local: F,
    ) -> Result<TransactionSendResult>
    where
        F: FnOnce(&SendResult) -> TransactionState,
    {
        if msg.delay_level != 0 || msg.deliver_at_ms.is_some() {
            return Err(ClientError::InvalidArgument(
                "a transactional message cannot be delayed".into(),
            ));
        }
        let transaction_id = format!(
            "{}-{}-{}",
            self.client_id,
            super::now_us(),
            self.seq.fetch_add(1, Ordering::Relaxed)
        );
        msg.properties.retain(|(k, _)| {
            k != PROPERTY_TRANSACTION_PREPARED
                && k != PROPERTY_PRODUCER_GROUP
                && k != PROPERTY_TRANSACTION_ID
        });
        msg.properties
            .push((PROPERTY_TRANSACTION_PREPARED.into(), "true".into()));
        msg.properties
            .push((PROPERTY_PRODUCER_GROUP.into(), self.group.to_string()));
        msg.properties
            .push((PROPERTY_TRANSACTION_ID.into(), transaction_id.clone()));
        let send_result = self.producer.send(topic, msg).await?;
        // The broker that stored the half must know this producer is alive.
        self.checker.do_send(HeartbeatNow);
        let local_state = catch_unwind(AssertUnwindSafe(|| local(&send_result)))
            .unwrap_or(TransactionState::Unknown);
        let end_error = self
            .end_transaction(&send_result, &transaction_id, local_state)
            .await
            .err()
            .map(|e| match e.code() {
                Some(ErrorCode::FlushSlaveTimeout | ErrorCode::SlaveNotAvailable) => format!(
                    "{e} (the outcome is decided; end_transaction again confirms it reached a slave)"
                ),
                _ => format!("{e} (the broker will check back)"),
            });
        Ok(TransactionSendResult {
            send_result,
            transaction_id,
            local_state,
            end_error,
        })
    }

    /// Reports (or re-reports) the outcome of the half message stored as
    /// `half`. Reporting twice is harmless: the broker keeps the first.
    pub async fn end_transaction(
        &self,
        half: &SendResult,
        transaction_id: &str,
        state: TransactionState,
    ) -> Result<()> {
        let req = EndTransactionRequest {
            producer_group: self.group.to_string(),
            transaction_id: transaction_id.to_string(),
            msg_id: half.msg_id.clone(),
            queue_offset: half.queue_offset,
            state,
            from_check: false,
        };
        end(&self.producer.instance().clone(), &req).await
    }

    /// Stops answering check-backs and sending heartbeats.
    pub fn shutdown(&self) {
        self.checker.do_send(StopChecker);
    }
}

/// Sends `req` to the broker that stored the half (named by its message id).
async fn end(instance: &Addr<ClientInstance>, req: &EndTransactionRequest) -> Result<()> {
    let id = MessageId::from_hex(&req.msg_id)
        .map_err(|e| ClientError::InvalidArgument(e.to_string()))?;
    let addr = id.addr.to_string();
    let client = instance
        .send(GetConnection { addr: addr.clone() })
        .await
        .map_err(|_| ClientError::Stopped)??;
    client
        .call(req)
        .await
        .map(|_| ())
        .map_err(|e| ClientError::from_call(&addr, None, e))
}

/// Answers check-backs and sends the producer group's heartbeats.
pub struct TransactionChecker {
    instance: Addr<ClientInstance>,
    namesrv: NameServerClient,
    client_id: Arc<str>,
    group: Arc<str>,
    listener: Rc<dyn Fn(&ReceivedMessage) -> TransactionState>,
    heartbeat_interval: Duration,
}

impl Actor for TransactionChecker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Stopped before it ever ran (its System torn down first): no
        // timers, which would panic outside a runtime (see ClientInstance).
        if ctx.state().stopping() {
            return;
        }
        self.heartbeat(ctx);
        ctx.run_interval(self.heartbeat_interval, |act, ctx| act.heartbeat(ctx));
    }
}

impl TransactionChecker {
    /// Heartbeats every broker of every cluster (and every broker this
    /// client is connected to), routing their pushes to this actor.
    fn heartbeat(&mut self, ctx: &mut Context<Self>) {
        let instance = self.instance.clone();
        let namesrv = self.namesrv.clone();
        let me = ctx.address().recipient::<PushFrame>();
        let req = HeartbeatRequest {
            client_id: self.client_id.to_string(),
            language: crate::client::CLIENT_LANGUAGE.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            producer_groups: vec![self.group.to_string()],
            consumer_groups: Vec::new(),
        };
        ctx.spawn(
            async move {
                let mut addrs = instance.send(ConnectedBrokers).await.unwrap_or_default();
                if let Ok(info) = namesrv.cluster_info().await {
                    for b in info.brokers.values() {
                        addrs.extend(b.addrs.values().cloned());
                    }
                }
                addrs.sort();
                addrs.dedup();
                for addr in addrs {
                    let Ok(Ok(client)) = instance.send(GetConnection { addr }).await else {
                        continue;
                    };
                    client.set_push_handler(me.clone());
                    let _ = client.call(&req).await;
                }
            }
            .into_actor(self),
        );
    }
}

/// Heartbeat now (after a send to a broker that may not know us yet).
#[derive(Message)]
#[rtype(result = "()")]
struct HeartbeatNow;

impl Handler<HeartbeatNow> for TransactionChecker {
    type Result = ();
    fn handle(&mut self, _: HeartbeatNow, ctx: &mut Self::Context) {
        self.heartbeat(ctx);
    }
}

/// Stop the checker.
#[derive(Message)]
#[rtype(result = "()")]
struct StopChecker;

impl Handler<StopChecker> for TransactionChecker {
    type Result = ();
    fn handle(&mut self, _: StopChecker, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl Handler<PushFrame> for TransactionChecker {
    type Result = ();

    fn handle(&mut self, msg: PushFrame, ctx: &mut Self::Context) {
        if msg.0.header.command != Command::CheckTransactionState.as_u16() {
            return;
        }
        let Ok(req) = msg.0.decode_body::<CheckTransactionStateRequest>() else {
            return;
        };
        let broker = MessageId::from_hex(&req.msg_id)
            .map(|id| id.addr.to_string())
            .unwrap_or_default();
        let state = match decode_records(&req.record, &broker, None) {
            Ok(mut msgs) if !msgs.is_empty() => {
                let mut m = msgs.swap_remove(0);
                if let Some(t) = m.property(PROPERTY_REAL_TOPIC).map(String::from) {
                    m.topic = t;
                }
                m.msg_id = req.msg_id.clone();
                let listener = self.listener.clone();
                catch_unwind(AssertUnwindSafe(|| listener(&m))).unwrap_or(TransactionState::Unknown)
            }
            _ => TransactionState::Unknown,
        };
        let end_req = EndTransactionRequest {
            producer_group: req.producer_group,
            transaction_id: req.transaction_id,
            msg_id: req.msg_id,
            queue_offset: req.queue_offset,
            state,
            from_check: true,
        };
        let instance = self.instance.clone();
        ctx.spawn(
            async move {
                let _ = end(&instance, &end_req).await;
            }
            .into_actor(self),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A heartbeat interval over MAX_DURATION is refused, naming it (the
    /// checker's interval timer panicked adding it to now); the longest
    /// is taken.
    #[test]
    fn heartbeat_interval_is_bounded() {
        actix::System::new().block_on(async {
            let start = |d| {
                TransactionProducer::start_with(ClientConfig::new("127.0.0.1:1"), "tx", d, |_| {
                    TransactionState::Commit
                })
            };
            for d in super::super::config::tests::OVERLONG {
                match start(d) {
                    Err(ClientError::InvalidArgument(e)) => assert!(
                        e.contains("TransactionProducer::start_with::heartbeat_interval"),
                        "{e}"
                    ),
                    other => panic!("{d:?}: {:?}", other.map(drop)),
                }
            }
            start(super::super::MAX_DURATION).unwrap().shutdown();
        });
    }
}
