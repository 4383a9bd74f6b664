//! SendMessage and SendBatch: validate, hand the batch to the topic's
//! TopicQueue (which appends through Storage), answer with ids and offsets.

use std::net::SocketAddr;
use std::sync::Arc;

use skylark_codec::{
    validate_topic_name, ErrorCode, MessageData, MessageId, SendBatchRequest, SendBatchResponse,
    SendRequest, SendResult, SendStatus, WireError,
};

use super::Shared;
use crate::storage::StoredMessage;
use crate::topic_queue::Append;

pub async fn send_one(
    s: Arc<Shared>,
    r: SendRequest,
    peer: SocketAddr,
) -> Result<SendResult, WireError> {
    let mut results = store(&s, r.topic, r.queue_id, vec![r.message], peer).await?;
    results
        .pop()
        .ok_or_else(|| WireError::new(ErrorCode::Internal, "empty append result"))
}

pub async fn send_batch(
    s: Arc<Shared>,
    r: SendBatchRequest,
    peer: SocketAddr,
) -> Result<SendBatchResponse, WireError> {
    let results = store(&s, r.topic, r.queue_id, r.messages, peer).await?;
    Ok(SendBatchResponse { results })
}

fn check(s: &Shared, topic: &str, messages: &[MessageData]) -> Result<(), WireError> {
    validate_topic_name(topic).map_err(|e| WireError::new(ErrorCode::BadRequest, e))?;
    if messages.is_empty() {
        return Err(WireError::new(
            ErrorCode::BadRequest,
            "a send must carry at least one message",
        ));
    }
    let max = s.config.store.max_message_size;
    for m in messages {
        if m.body.len() > max {
            return Err(WireError::new(
                ErrorCode::MessageTooLarge,
                format!(
                    "message body of {} bytes exceeds the limit of {} bytes",
                    m.body.len(),
                    max
                ),
            ));
        }
        if m.delay_level != 0 || m.deliver_at_ms.is_some() {
            return Err(WireError::new(
                ErrorCode::BadRequest,
                "delayed delivery is not supported by this broker yet",
            ));
        }
    }
    Ok(())
}

async fn store(
    s: &Shared,
    topic: String,
    queue_id: i32,
    messages: Vec<MessageData>,
    peer: SocketAddr,
) -> Result<Vec<SendResult>, WireError> {
    check(s, &topic, &messages)?;
    super::replication::refuse_on_slave(s)?;
    let tq = s.topic_queue(&topic, true).await?;
    let topic: Arc<str> = Arc::from(topic.as_str());
    let stored = messages
        .into_iter()
        .map(|m| StoredMessage::from_data(topic.clone(), m, peer, s.store_host))
        .collect();
    let res = tq
        .send(Append {
            queue_id,
            messages: stored,
        })
        .await
        .map_err(crate::mailbox_error)??;
    let status = if res.flush_timed_out {
        SendStatus::FlushDiskTimeout
    } else {
        SendStatus::SendOk
    };
    let status = super::replication::after_append(s, res.end_offset, status).await;
    Ok(res
        .results
        .iter()
        .map(|it| SendResult {
            status,
            msg_id: MessageId::new(s.store_host, it.physical_offset).to_hex(),
            queue_id: it.queue_id,
            queue_offset: it.queue_offset,
        })
        .collect())
}
