//! SendMessage and SendBatch: validate, pick the queue from the topic's
//! config snapshot, append through Storage in this thread's batch
//! ([`super::coalesce`]), answer with ids and offsets.

use std::net::SocketAddr;
use std::sync::Arc;

use skylark_codec::{
    validate_topic_name, ErrorCode, MessageData, SendBatchRequest, SendBatchResponse, SendRequest,
    SendResult, WireError,
};

use super::{coalesce, delay, Shared};
use crate::storage::StoredMessage;
use crate::topic_queue::pick_queue;

pub async fn send_one(
    s: Arc<Shared>,
    r: SendRequest,
    peer: SocketAddr,
) -> Result<SendResult, WireError> {
    check_sender(&r.producer_group, r.queue_id)?;
    if super::transaction::is_half(&r)? {
        return super::transaction::send_half(s, r, peer).await;
    }
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
    check_sender(&r.producer_group, r.queue_id)?;
    super::transaction::refuse_half_batch(&r.topic, &r.messages)?;
    let results = store(&s, r.topic, r.queue_id, r.messages, peer).await?;
    Ok(SendBatchResponse { results })
}

/// The producer group (RocketMQ's rules, as the clients check them: a
/// client with no group set sends `DEFAULT_PRODUCER`) and the queue: 0 and
/// up names one, -1 lets the broker pick, any other number is refused.
fn check_sender(producer_group: &str, queue_id: i32) -> Result<(), WireError> {
    skylark_codec::validate_group_name(producer_group)
        .map_err(|e| WireError::new(ErrorCode::BadRequest, format!("producer_group: {e}")))?;
    if queue_id < -1 {
        return Err(WireError::new(
            ErrorCode::BadRequest,
            format!(
                "queue_id {queue_id} is not a queue: 0 and up names one, -1 lets the broker pick"
            ),
        ));
    }
    Ok(())
}

/// Properties only the broker sets (scheduler and transaction routing).
const RESERVED_PROPERTIES: &[&str] = &[
    skylark_codec::PROPERTY_REAL_TOPIC,
    skylark_codec::PROPERTY_REAL_QUEUE_ID,
];

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
        // The broker's own routing properties: a client setting them could
        // redirect a parked message into any topic.
        if let Some((k, _)) = m
            .properties
            .iter()
            .find(|(k, _)| RESERVED_PROPERTIES.contains(&k.as_str()))
        {
            return Err(WireError::new(
                ErrorCode::BadRequest,
                format!("property '{k}' is reserved for the broker"),
            ));
        }
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
    }
    // The broker's own topics answer PermissionDenied, as RocketMQ's
    // NO_PERMISSION "sending message to topic ... is forbidden" (and as the
    // transaction topics, `transaction::refuse_system_topic`).
    if crate::scheduler::levels::is_schedule_topic(topic) {
        return Err(WireError::new(
            ErrorCode::PermissionDenied,
            format!("topic '{topic}' is reserved for the scheduler"),
        ));
    }
    if topic == skylark_codec::AUTO_CREATE_TOPIC_KEY {
        // A pseudo topic: its route names the brokers that create topics on
        // first send. Messages in it would make it a real topic.
        return Err(WireError::new(
            ErrorCode::PermissionDenied,
            format!("topic '{topic}' is reserved: it names the brokers that create topics on first send"),
        ));
    }
    delay::check(s, messages)
}

async fn store(
    s: &Shared,
    topic: String,
    queue_id: i32,
    messages: Vec<MessageData>,
    peer: SocketAddr,
) -> Result<Vec<SendResult>, WireError> {
    store_with_reconsume(s, topic, queue_id, messages, peer, 0).await
}

/// [`message_store`] with the records' reconsume count set (a consumer's send-back
/// to the retry or dead-letter topic).
pub(super) async fn store_with_reconsume(
    s: &Shared,
    topic: String,
    queue_id: i32,
    messages: Vec<MessageData>,
    peer: SocketAddr,
    reconsume_times: u32,
) -> Result<Vec<SendResult>, WireError> {
    check(s, &topic, &messages)?;
    super::replication::refuse_on_slave(s)?;
    crate::broker::permission::check_writable(&s.live, &s.config.broker_name)?;
    let tq = s.topic_queue(&topic, true).await?;
    if let Some(parks) = delay::parks(s, &messages)? {
        let parked = messages.into_iter().zip(parks).collect();
        return delay::store_delayed(s, &tq, topic, queue_id, parked, peer, reconsume_times).await;
    }
    let queue_id = pick_queue(&tq.config, queue_id)?;
    let topic = tq.name.clone();
    let stored = messages
        .into_iter()
        // A delivery time already past means "now": store it as a plain message.
        .map(|m| {
            let m = MessageData {
                deliver_at_ms: None,
                ..m
            };
            let mut m = StoredMessage::from_data(topic.clone(), m, peer, s.store_host);
            m.queue_id = queue_id;
            m.reconsume_times = reconsume_times;
            m
        })
        .collect();
    let res = coalesce::put(&s.storage, stored, s.sync_flush_timeout()).await?;
    Ok(super::replication::send_results(s, &res).await)
}
