//! PullMessage: validate the subscription (tag expression or SQL-92,
//! compiled here and evaluated by the store), piggy-back the offset commit,
//! and hand the pull to the topic's TopicQueue (which reads through Storage
//! and parks the pull while the queue is empty).

use std::sync::Arc;
use std::time::Duration;

use skylark_codec::{
    parse_tag_expression, validate_group_name, ErrorCode, PullRequest, PullResponse, WireError,
};

use super::Shared;
use crate::consumer_offsets::CommitOffset;
use crate::store::tag_hash;
use crate::topic_queue::Pull;

pub async fn pull(s: Arc<Shared>, r: PullRequest) -> Result<PullResponse, WireError> {
    validate_group_name(&r.consumer_group).map_err(|e| WireError::new(ErrorCode::BadRequest, e))?;
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
    let hold = Duration::from_millis(r.suspend_timeout_ms.min(s.live.long_poll_max_ms()));
    let max_bytes = r.max_bytes.clamp(1, s.live.max_pull_bytes().max(1));
    let max_messages = r.max_messages.clamp(1, 1024);
    let mut resp = tq
        .send(Pull {
            topic: r.topic,
            queue_id: r.queue_id,
            queue_offset: r.queue_offset,
            max_messages,
            max_bytes,
            tag_filter,
            sql_filter,
            hold,
        })
        .await
        .map_err(crate::mailbox_error)??;
    resp.suggest_slave = suggest_slave(s.config.slave_read_lag_messages, &resp);
    Ok(resp)
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
