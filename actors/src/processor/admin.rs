//! Topic management (CreateTopic, DeleteTopic, GetTopicStats); client
//! bookkeeping moved to [`super::group`].

use std::sync::Arc;

use skylark_codec::{
    Ack, CreateTopicRequest, DeleteTopicRequest, GetTopicStatsRequest, QueueStats, TopicStats,
    WireError,
};

use super::Shared;
use crate::broker::{CreateTopic, DeleteTopic};
use crate::storage::{GetQueueOffsets, GetTopicActivity};
use crate::topic_queue::GetTopicStats;

pub async fn create_topic(s: Arc<Shared>, r: CreateTopicRequest) -> Result<Ack, WireError> {
    s.broker
        .send(CreateTopic(r.config))
        .await
        .map_err(crate::mailbox_error)??;
    Ok(Ack {})
}

pub async fn delete_topic(s: Arc<Shared>, r: DeleteTopicRequest) -> Result<Ack, WireError> {
    s.broker
        .send(DeleteTopic(r.topic))
        .await
        .map_err(crate::mailbox_error)??;
    Ok(Ack {})
}

pub async fn topic_stats(s: Arc<Shared>, r: GetTopicStatsRequest) -> Result<TopicStats, WireError> {
    let tq = s.topic_queue(&r.topic, false).await?;
    let config = tq
        .addr
        .send(GetTopicStats)
        .await
        .map_err(crate::mailbox_error)?;
    let (messages_put, parked_pulls) = s
        .storage
        .send(GetTopicActivity {
            topic: r.topic.clone(),
        })
        .await
        .map_err(crate::mailbox_error)?;
    let mut queues = Vec::with_capacity(config.read_queues as usize);
    for queue_id in 0..config.read_queues {
        let (min_offset, max_offset) = s
            .storage
            .send(GetQueueOffsets {
                topic: r.topic.clone(),
                queue_id,
            })
            .await
            .map_err(crate::mailbox_error)?;
        queues.push(QueueStats {
            queue_id,
            min_offset,
            max_offset,
        });
    }
    Ok(TopicStats {
        config,
        queues,
        messages_put,
        parked_pulls: parked_pulls as u64,
    })
}
