//! The send path of delayed messages: checks the delay (level or time,
//! `max_delay_ms`), then stores the message parked in the schedule or timer
//! topic, straight through Storage; the Scheduler delivers it when due.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use skylark_codec::{ErrorCode, MessageData, SendResult, WireError};

use super::Shared;
use crate::scheduler::delivery::{park, Park};
use crate::scheduler::levels::clamp_level;
use crate::storage::{PutMessages, StoredMessage};
use crate::topic_queue::TopicHandle;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn bad(msg: String) -> WireError {
    WireError::new(ErrorCode::BadRequest, msg)
}

/// Refuses a delay beyond `max_delay_ms`, a negative delivery time or
/// both forms on one message.
pub fn check(s: &Shared, messages: &[MessageData]) -> Result<(), WireError> {
    let now = now_ms();
    let max = s.scheduler.max_delay_ms;
    for m in messages {
        let Some(at) = m.deliver_at_ms else { continue };
        if at < 0 {
            return Err(bad(format!(
                "deliver_at_ms {at} is negative: a delivery time is milliseconds since the Unix epoch"
            )));
        }
        if m.delay_level != 0 {
            return Err(bad(
                "a message has either a delay level or a delivery time, not both".into(),
            ));
        }
        let ahead = at.saturating_sub(now);
        if ahead > 0 && ahead as u64 > max {
            return Err(bad(format!(
                "delivery time {at} is {ahead} ms ahead; the maximum delay is {max} ms \
                 (max_delay_ms)"
            )));
        }
    }
    Ok(())
}

/// Where each message of the send waits; `None` if none is delayed (a
/// delivery time already past counts as "now" when alone).
pub fn parks(s: &Shared, messages: &[MessageData]) -> Result<Option<Vec<Park>>, WireError> {
    let now = now_ms();
    let delayed = |m: &MessageData| m.delay_level > 0 || m.deliver_at_ms.is_some_and(|t| t > now);
    if !messages.iter().any(delayed) {
        return Ok(None);
    }
    let n = s.scheduler.levels.len();
    messages
        .iter()
        .map(|m| match (m.delay_level, m.deliver_at_ms) {
            (l, _) if l > 0 => Ok(Park::Level(clamp_level(l, n))),
            (_, Some(at)) => Ok(Park::At(at)),
            _ => Err(bad(
                "a batch cannot mix delayed and immediate messages".into()
            )),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Stores delayed messages parked; the answer is a normal send answer
/// (offsets are those in the schedule/timer topic).
pub async fn store_delayed(
    s: &Shared,
    tq: &TopicHandle,
    topic: String,
    queue_id: i32,
    parked: Vec<(MessageData, Park)>,
    peer: SocketAddr,
    reconsume_times: u32,
) -> Result<Vec<SendResult>, WireError> {
    let cfg = &tq.config;
    if !cfg.is_writable() {
        return Err(WireError::new(
            ErrorCode::PermissionDenied,
            format!("topic '{topic}' is not writable"),
        ));
    }
    if queue_id >= 0 && queue_id as u32 >= cfg.write_queues.max(1) {
        return Err(bad(format!(
            "topic '{topic}' has {} write queues; queue {queue_id} does not exist",
            cfg.write_queues
        )));
    }
    let topic: Arc<str> = Arc::from(topic.as_str());
    let stored: Vec<StoredMessage> = parked
        .into_iter()
        .map(|(m, how)| {
            let mut sm = StoredMessage::from_data(topic.clone(), m, peer, s.store_host);
            // A retry keeps its count through the delay (DLQ after the max).
            sm.reconsume_times = reconsume_times;
            park(&mut sm, how, queue_id);
            sm
        })
        .collect();
    let res = s
        .storage
        .send(PutMessages { messages: stored })
        .await
        .map_err(crate::mailbox_error)?
        .map_err(crate::store_error)?;
    Ok(super::replication::send_results(s, &res).await)
}
