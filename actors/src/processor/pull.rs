//! PullMessage: validate the subscription (tag expression or SQL-92,
//! compiled here and evaluated by the store), piggy-back the offset commit,
//! check the queue against the topic's config snapshot, and read through
//! Storage. While the queue has nothing new the pull is parked in Storage
//! (long polling), which wakes it from the append that reaches the queue.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use skylark_codec::{
    parse_tag_expression, validate_group_name, ErrorCode, PullRequest, PullResponse, PullStatus,
    WireError,
};
use tokio::sync::oneshot;

use super::Shared;
use crate::consumer_offsets::CommitOffset;
use crate::message_store::{tag_hash, ReadResult, ReadStatus, Records};
use crate::storage::GetMessages;
use crate::topic_queue::check_readable;

/// Answers a pull: the response with `records` left empty, and the records
/// as slices of the mapped CommitLog, which the connection writes behind
/// the response's frame as they are ([`crate::remoting::wire::dispatch_with_tail`]).
pub async fn pull(s: Arc<Shared>, r: PullRequest) -> Result<(PullResponse, Vec<Bytes>), WireError> {
    validate_group_name(&r.consumer_group).map_err(|e| WireError::new(ErrorCode::BadRequest, e))?;
    super::group::check_pull_allowed(&s, &r.consumer_group).await?;
    let sql_filter = match r.sql.as_deref() {
        Some(expr) => Some(super::query::compile_sql(&s, &r.topic, expr)?),
        None => None,
    };
    let tag_filter = match r.subscription.as_deref() {
        None => None,
        Some(expr) => parse_tag_expression(expr)
            .map_err(|e| {
                WireError::new(
                    ErrorCode::InvalidFilter,
                    format!("bad subscription '{expr}': {e}"),
                )
            })?
            .map(|tags| tags.iter().map(|t| tag_hash(t)).collect::<Vec<u64>>()),
    };
    if let Some(offset) = r.commit_offset {
        s.offsets.do_send(CommitOffset {
            group: r.consumer_group.clone(),
            topic: r.topic.clone(),
            queue_id: r.queue_id,
            offset,
        });
    }
    let tq = s.topic_queue(&r.topic, false).await?;
    check_readable(&tq.config, r.queue_id)?;
    let hold = Duration::from_millis(r.suspend_timeout_ms.min(s.live.long_poll_max_ms()));
    let max_bytes = r.max_bytes.clamp(1, s.live.max_pull_bytes().max(1));
    let max_messages = r.max_messages.clamp(1, 1024);
    let read = |park| GetMessages {
        topic: r.topic.clone(),
        queue_id: r.queue_id,
        queue_offset: r.queue_offset,
        max_messages,
        max_bytes,
        tag_filter: tag_filter.clone(),
        sql_filter: sql_filter.clone(),
        park,
    };
    let (mut resp, records) = long_poll(&s, r.queue_offset, read, hold).await?;
    if resp.status == PullStatus::OffsetIllegal
        && super::replication::refuse_unless_master(&s).is_err()
    {
        // A slave does not move a consumer's offset (RocketMQ's default,
        // `offsetCheckInSlave = false`): its queue may lag its master's,
        // or not exist yet on a slave still catching up, and resetting a
        // consumer sent here for its lag would replay the queue. It answers
        // "nothing here" at the same offset; with no lag to suggest the
        // slave, the consumer's next pull goes to the master, which corrects.
        resp.status = PullStatus::NoNewMessage;
        resp.next_offset = r.queue_offset;
    }
    s.metrics.note_pull(
        &r.consumer_group,
        &r.topic,
        r.queue_id,
        resp.count,
        records.len(),
        resp.next_offset,
    );
    resp.suggest_slave = suggest_slave(s.config.slave_read_lag_messages, &resp);
    Ok((resp, records.into_chunks()))
}

/// Reads (the pull's read from `queue_offset`, given the waker to park);
/// while there is nothing new and the hold lasts, parks in Storage and reads
/// again when woken.
async fn long_poll(
    s: &Shared,
    queue_offset: u64,
    read: impl Fn(Option<oneshot::Sender<()>>) -> GetMessages,
    hold: Duration,
) -> Result<(PullResponse, Records), WireError> {
    let deadline = tokio::time::Instant::now() + hold;
    let mut expired = hold.is_zero();
    loop {
        let (park, woken) = if expired {
            (None, None)
        } else {
            let (waker, woken) = oneshot::channel();
            (Some(waker), Some(woken))
        };
        let answer = s
            .storage
            .send(read(park))
            .await
            .map_err(crate::mailbox_error)?
            .map_err(crate::store_error)?;
        let (resp, records) = to_pull_response(queue_offset, answer);
        let Some(woken) = woken.filter(|_| resp.status == PullStatus::NoNewMessage) else {
            return Ok((resp, records));
        };
        if tokio::time::timeout_at(deadline, woken).await.is_err() {
            expired = true;
        }
    }
}

/// Maps a store read onto the wire's pull answer (records apart).
fn to_pull_response(asked: u64, r: ReadResult) -> (PullResponse, Records) {
    let (status, next_offset) = match r.status {
        ReadStatus::Found => (PullStatus::Found, r.next_queue_offset),
        ReadStatus::NoMatchedMessage => (PullStatus::NoMatchedMessage, r.next_queue_offset),
        ReadStatus::NoNewMessage => (PullStatus::NoNewMessage, asked),
        ReadStatus::NoQueue if asked == 0 => (PullStatus::NoNewMessage, 0),
        ReadStatus::NoQueue => (PullStatus::OffsetIllegal, 0),
        ReadStatus::OffsetTooSmall => (PullStatus::OffsetIllegal, r.min_offset),
        ReadStatus::OffsetTooBig => (PullStatus::OffsetIllegal, r.max_offset),
    };
    let resp = PullResponse {
        status,
        next_offset,
        min_offset: r.min_offset,
        max_offset: r.max_offset,
        count: r.count,
        records: Bytes::new(),
        suggest_slave: false,
        damaged: r.damaged.into_iter().map(Into::into).collect(),
    };
    (resp, r.records)
}

/// Whether a consumer at `resp.next_offset` is far enough behind the end of
/// the queue to read from a slave (the same rule on master and slave, so a
/// consumer stays on the slave while behind and comes back once caught up).
fn suggest_slave(lag_limit: u64, resp: &PullResponse) -> bool {
    lag_limit > 0 && resp.max_offset.saturating_sub(resp.next_offset) > lag_limit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slave_is_suggested_only_past_the_lag_limit() {
        let resp = |next, max| PullResponse {
            next_offset: next,
            max_offset: max,
            ..Default::default()
        };
        assert!(!suggest_slave(100, &resp(0, 100)));
        assert!(suggest_slave(100, &resp(0, 101)));
        assert!(!suggest_slave(100, &resp(50, 101)));
        assert!(!suggest_slave(0, &resp(0, 1_000_000)), "0 turns it off");
    }
}
