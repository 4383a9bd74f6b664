//! Consumer offsets (QueryConsumerOffset, UpdateConsumerOffset) and a
//! queue's min/max offsets (GetQueueOffsets).

use std::sync::Arc;

use skylark_codec::{
    validate_group_name, Ack, CommitOffsetRequest, ErrorCode, GetQueueOffsetsRequest,
    QueryOffsetRequest, QueryOffsetResponse, QueueOffsets, WireError,
};

use super::Shared;
use crate::consumer_offsets::{CommitOffset, QueryOffset};
use crate::storage::GetQueueOffsets;

fn group_ok(g: &str) -> Result<(), WireError> {
    validate_group_name(g).map_err(|e| WireError::new(ErrorCode::BadRequest, e))
}

pub async fn query(
    s: Arc<Shared>,
    r: QueryOffsetRequest,
) -> Result<QueryOffsetResponse, WireError> {
    group_ok(&r.group)?;
    let offset = s
        .offsets
        .send(QueryOffset::from(r))
        .await
        .map_err(crate::mailbox_error)?;
    Ok(QueryOffsetResponse { offset })
}

pub async fn commit(s: Arc<Shared>, r: CommitOffsetRequest) -> Result<Ack, WireError> {
    group_ok(&r.group)?;
    s.offsets
        .send(CommitOffset::from(r))
        .await
        .map_err(crate::mailbox_error)?;
    Ok(Ack {})
}

pub async fn queue_offsets(
    s: Arc<Shared>,
    r: GetQueueOffsetsRequest,
) -> Result<QueueOffsets, WireError> {
    let (min_offset, max_offset) = s
        .storage
        .send(GetQueueOffsets {
            topic: r.topic,
            queue_id: r.queue_id,
        })
        .await
        .map_err(crate::mailbox_error)?;
    Ok(QueueOffsets {
        min_offset,
        max_offset,
    })
}
