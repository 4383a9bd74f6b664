//! Transactional messages on the request path: storing half messages
//! (a send whose message carries `TRAN_MSG=true`), `EndTransaction`, and
//! feeding producer heartbeats to the Transaction actor so it knows whom to
//! ask about undecided halves.

use std::net::SocketAddr;
use std::sync::Arc;

use skylark_codec::{
    validate_topic_name, Ack, Command, EndTransactionRequest, ErrorCode, HeartbeatRequest,
    MessageId, RawFrame, SendRequest, SendResult, SendStatus, UnregisterClientRequest, WireError,
};

use super::Shared;
use crate::remoting::ConnInfo;
use crate::storage::StoredMessage;
use crate::transaction::{self, End, ProducerHeartbeat, ProducerUnregister, PutHalf};

/// Whether a send carries a half message; refuses sends to the
/// transaction system topics.
pub fn is_half(r: &SendRequest) -> Result<bool, WireError> {
    refuse_system_topic(&r.topic)?;
    Ok(transaction::is_half(&r.message.properties))
}

fn refuse_system_topic(topic: &str) -> Result<(), WireError> {
    if topic == transaction::HALF_TOPIC || topic == transaction::OP_TOPIC {
        return Err(WireError::new(
            ErrorCode::PermissionDenied,
            format!("topic '{topic}' is reserved for transactional messages"),
        ));
    }
    Ok(())
}

/// Refuses half messages in a batch (RocketMQ does too) and sends to the
/// transaction system topics.
pub fn refuse_half_batch(
    topic: &str,
    messages: &[skylark_codec::MessageData],
) -> Result<(), WireError> {
    refuse_system_topic(topic)?;
    if messages.iter().any(|m| transaction::is_half(&m.properties)) {
        return Err(WireError::new(
            ErrorCode::BadRequest,
            "transactional (half) messages cannot be sent in a batch",
        ));
    }
    Ok(())
}

/// Stores a half message: checked like any send, then kept in the half
/// topic until its producer (or a check-back) decides.
pub async fn send_half(
    s: Arc<Shared>,
    r: SendRequest,
    peer: SocketAddr,
) -> Result<SendResult, WireError> {
    super::replication::refuse_on_slave(&s)?;
    crate::broker::permission::check_writable(&s.live, &s.config.broker_name)?;
    validate_topic_name(&r.topic).map_err(|e| WireError::new(ErrorCode::BadRequest, e))?;
    let max = s.config.store.max_message_size;
    if r.message.body.len() > max {
        return Err(WireError::new(
            ErrorCode::MessageTooLarge,
            format!(
                "message body of {} bytes exceeds the limit of {} bytes",
                r.message.body.len(),
                max
            ),
        ));
    }
    if r.message.delay_level != 0 || r.message.deliver_at_ms.is_some() {
        return Err(WireError::new(
            ErrorCode::BadRequest,
            "a transactional message cannot be delayed",
        ));
    }
    // The real topic must exist (or be auto-created) and be writable now,
    // so a commit cannot fail on it later.
    s.topic_queue(&r.topic, true).await?;
    let topic: Arc<str> = Arc::from(r.topic.as_str());
    let m = StoredMessage::from_data(topic, r.message, peer, s.store_host);
    let half = transaction::to_half(m, &r.producer_group, r.queue_id);
    let res = s
        .transaction
        .send(PutHalf(half))
        .await
        .map_err(crate::mailbox_error)??;
    let it = res
        .results
        .first()
        .ok_or_else(|| WireError::new(ErrorCode::Internal, "empty append result"))?;
    let status = if res.flush_timed_out {
        SendStatus::FlushDiskTimeout
    } else {
        SendStatus::SendOk
    };
    // On a SYNC_MASTER the half is acknowledged once a slave has it.
    let status =
        super::replication::after_append(&s, res.end_offset, status, res.appended_at).await;
    Ok(SendResult {
        status,
        msg_id: MessageId::new(s.store_host, it.physical_offset).to_hex(),
        queue_id: it.queue_id,
        queue_offset: it.queue_offset,
    })
}

/// `EndTransaction`: commit, roll back or leave unknown. The decision's
/// appends (the committed copy, the op record) are replicated like a send:
/// on a SYNC_MASTER the answer waits (up to the replication timeout) until
/// a slave has everything stored so far. When no slave has it in time the
/// answer is `FlushSlaveTimeout` or `SlaveNotAvailable`: the decision is
/// stored on the master (a repeated `EndTransaction` is answered as
/// already decided, after the same wait), but not yet on a slave, which a
/// SYNC_MASTER's producer must be told as it is for a send.
pub async fn end(s: Arc<Shared>, r: EndTransactionRequest) -> Result<Ack, WireError> {
    super::replication::refuse_on_slave(&s)?;
    let since = std::time::Instant::now();
    // "Still unknown" stores nothing: there is nothing for a slave to have.
    let stores = r.state != skylark_codec::TransactionState::Unknown;
    let ack = s
        .transaction
        .send(End(r))
        .await
        .map_err(crate::mailbox_error)??;
    if !stores {
        return Ok(ack);
    }
    let stored = s
        .storage
        .send(crate::storage::GetStorageStats)
        .await
        .map_err(crate::mailbox_error)?;
    match super::replication::after_append(&s, stored.max_physical_offset, SendStatus::SendOk, since)
        .await
    {
        SendStatus::FlushSlaveTimeout => Err(WireError::new(
            ErrorCode::FlushSlaveTimeout,
            "the transaction's outcome is stored on the master, but no slave acknowledged it in time",
        )),
        SendStatus::SlaveNotAvailable => Err(WireError::new(
            ErrorCode::SlaveNotAvailable,
            "the transaction's outcome is stored on the master, but no slave is connected",
        )),
        _ => Ok(ack),
    }
}

/// Tells the Transaction actor about producer groups in a heartbeat or an
/// unregistration (the request itself is handled by its own processor).
pub fn note_client(s: &Shared, cmd: Command, frame: &RawFrame, conn: &ConnInfo) {
    match cmd {
        Command::Heartbeat => {
            if let Ok(hb) = frame.decode_body::<HeartbeatRequest>() {
                if !hb.producer_groups.is_empty() {
                    s.transaction.do_send(ProducerHeartbeat {
                        peer: conn.peer,
                        groups: hb.producer_groups,
                        conn: crate::remoting::ClientConn::Skylark(conn.addr.clone()),
                    });
                }
            }
        }
        Command::UnregisterClient => {
            if let Ok(u) = frame.decode_body::<UnregisterClientRequest>() {
                if u.producer_group.is_some() || u.consumer_group.is_none() {
                    s.transaction.do_send(ProducerUnregister {
                        peer: conn.peer,
                        group: u.producer_group,
                    });
                }
            }
        }
        _ => {}
    }
}
