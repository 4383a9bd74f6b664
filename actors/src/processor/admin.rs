//! Topic management (CreateTopic, DeleteTopic, GetTopicStats), the broker's
//! runtime status (GetBrokerRuntimeStatus, RocketMQ `brokerStatus`); client
//! bookkeeping moved to [`super::group`].

use std::sync::Arc;

use skylark_codec::{
    Ack, BrokerRuntimeStatus, CreateTopicRequest, DeleteTopicRequest, ErrorCode,
    GetBrokerRuntimeStatusRequest, GetTopicStatsRequest, QueueStats, SendStatus, TopicStats,
    WireError,
};

use super::Shared;
use crate::broker::{CreateTopic, DeleteTopic, TopicDeleted};
use crate::consumer_offsets::DeleteTopicOffsets;
use crate::storage::{DropTopic, GetQueueOffsets, GetTopicActivity};

/// Creates or updates a topic (`topic create`, `update`, `perm`). A slave
/// refuses: its topic table is its master's, and the next metadata sync
/// would undo the change.
pub async fn create_topic(s: Arc<Shared>, r: CreateTopicRequest) -> Result<Ack, WireError> {
    super::replication::refuse_unless_master(&s)?;
    if INTERNAL_TOPICS.contains(&r.config.name.as_str()) {
        // A config of one would route consumers to its queues: pending
        // delayed messages, half and rolled-back transactional ones.
        return Err(WireError::new(
            ErrorCode::BadRequest,
            format!(
                "topic '{}' is the broker's own (it holds {}): it cannot be created or changed by hand",
                r.config.name,
                internal_contents(&r.config.name)
            ),
        ));
    }
    s.broker
        .send(CreateTopic(r.config))
        .await
        .map_err(crate::mailbox_error)??;
    Ok(Ack {})
}

use crate::broker::topic_store::INTERNAL_TOPICS;

/// What the broker keeps in internal topic `topic`, in a user's words.
fn internal_contents(topic: &str) -> &'static str {
    match topic {
        crate::scheduler::SCHEDULE_TOPIC => "delayed messages not yet due",
        crate::scheduler::TIMER_TOPIC => "messages scheduled for a time not yet come",
        crate::transaction::HALF_TOPIC => {
            "transactional messages not yet committed, and rolled-back ones"
        }
        crate::transaction::OP_TOPIC => "the outcomes of transactional messages",
        _ => "the route of topics created on their first send",
    }
}

/// Deletes the topic's config, then its ConsumeQueues (a CommitLog record
/// that slaves replicate) and every group's offsets of it, as RocketMQ's
/// `deleteTopicInBroker` does; the stored messages age out with retention.
/// A topic whose config is already gone but whose queues or offsets are
/// left (a delete interrupted half-way, or made by a version that kept
/// them) is cleaned up the same way. A slave refuses: it follows its
/// master's deletions (the record, and the metadata sync for the config
/// and offsets).
pub async fn delete_topic(s: Arc<Shared>, r: DeleteTopicRequest) -> Result<Ack, WireError> {
    super::replication::refuse_unless_master(&s)?;
    if INTERNAL_TOPICS.contains(&r.topic.as_str()) {
        // Their queues hold pending delayed and transactional messages
        // (the Scheduler's and the Transaction actor's progress point into
        // them), and TBW102 is the auto-create route. A config created by
        // hand (before creating one was refused) is removed, and only it.
        if s.broker
            .send(DeleteTopic(r.topic.clone()))
            .await
            .map_err(crate::mailbox_error)?
            .is_ok()
        {
            s.broker.do_send(TopicDeleted(r.topic));
            return Ok(Ack {});
        }
        s.broker.do_send(TopicDeleted(r.topic.clone()));
        return Err(WireError::new(
            ErrorCode::BadRequest,
            format!(
                "topic '{}' is the broker's own and cannot be deleted",
                r.topic
            ),
        ));
    }
    let config = s
        .broker
        .send(DeleteTopic(r.topic.clone()))
        .await
        .map_err(crate::mailbox_error)?;
    let result = drop_what_is_left(&s, &r.topic, config).await;
    // The topic may be created again from now on (also after a failure:
    // deleting it again finishes the job).
    s.broker.do_send(TopicDeleted(r.topic));
    result
}

/// [`delete_topic`] once the config is gone (`config` says whether there
/// was one): the queues, then the offsets.
async fn drop_what_is_left(
    s: &Shared,
    topic: &str,
    config: Result<(), WireError>,
) -> Result<Ack, WireError> {
    if let Err(e) = &config {
        if e.code != ErrorCode::TopicNotFound {
            return config.map(|()| Ack {});
        }
    }
    let again = |what: &str, e: String| {
        format!("topic '{topic}': {what} failed ({e}); delete it again to finish")
    };
    let since = std::time::Instant::now();
    let (queues, end) = s
        .storage
        .send(DropTopic {
            topic: topic.to_string(),
            host: s.store_host,
        })
        .await
        .map_err(crate::mailbox_error)?
        .map_err(|e| {
            let e = crate::store_error(e);
            WireError::new(e.code, again("deleting its queues", e.message))
        })?;
    if queues > 0 {
        // A SYNC_MASTER answers once a slave holds the deletion too (best
        // effort: the slave gets it anyway when it catches up).
        super::replication::after_append(s, end, SendStatus::SendOk, since).await;
    }
    let groups = s
        .offsets
        .send(DeleteTopicOffsets(vec![topic.to_string()]))
        .await
        .map_err(crate::mailbox_error)?
        .map_err(|e| {
            WireError::new(
                ErrorCode::Internal,
                again("saving the consumer offsets without it", e.to_string()),
            )
        })?;
    match config {
        Err(e) if queues == 0 && groups == 0 => Err(e),
        _ => Ok(Ack {}),
    }
}

pub async fn topic_stats(s: Arc<Shared>, r: GetTopicStatsRequest) -> Result<TopicStats, WireError> {
    let config = s.topic_config(&r.topic).await?;
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

/// `brokerStatus`: who this broker is, its permission, and the store's
/// figures (TPS, CommitLog, flush, disk, recovery; see
/// [`crate::storage::status`]).
pub async fn runtime_status(
    s: Arc<Shared>,
    _r: GetBrokerRuntimeStatusRequest,
) -> Result<BrokerRuntimeStatus, WireError> {
    let c = &s.config;
    let mut table = vec![
        ("broker_name".to_string(), c.broker_name.clone()),
        ("broker_id".to_string(), c.broker_id.to_string()),
        ("broker_addr".to_string(), c.advertised()),
        (
            "broker_permission".to_string(),
            crate::live_settings::perm_text(s.live.broker_permission()),
        ),
        ("topics".to_string(), s.topics.len().to_string()),
        ("consumer_groups".to_string(), s.groups.len().to_string()),
    ];
    table.extend(
        s.storage
            .send(crate::storage::status::GetRuntimeStatus)
            .await
            .map_err(crate::mailbox_error)?,
    );
    Ok(BrokerRuntimeStatus { table })
}
