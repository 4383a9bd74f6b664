//! Consumer groups: heartbeats and membership (Heartbeat, UnregisterClient,
//! GetConsumerList), queue leases / order locks (LockBatchMq, UnlockBatchMq),
//! backtrack (ResetOffset) and group admin (GetConsumeProgress — with the
//! members' inconsistent subscriptions,
//! GetGroupList, DeleteGroup), retry / dead-letter (ConsumerSendBack), and
//! the operator commands on groups and clients (UpdateSubscriptionGroup,
//! GetSubscriptionGroup, GetConsumerConnections, GetProducerConnections) with
//! the pull-side checks of a group's settings ([`check_pull_allowed`]).

use std::collections::BTreeSet;
use std::sync::Arc;

use actix::Addr;
use skylark_codec::{
    validate_group_name, Ack, ConsumeProgress, ConsumerList, DeleteGroupRequest, ErrorCode,
    GetConsumeProgressRequest, GetConsumerListRequest, GetGroupListRequest, GroupList,
    HeartbeatRequest, LockBatchRequest, LockBatchResponse, QueueOffsetEntry, QueueProgress,
    ResetOffsetNotify, ResetOffsetRequest, ResetOffsetResponse, SendBackRequest, SendBackResponse,
    UnlockBatchRequest, UnregisterClientRequest, WireError,
};
use skylark_codec::{
    ConsumerConnections, GetConsumerConnectionsRequest, GetProducerConnectionsRequest,
    GetSubscriptionGroupRequest, MessageModel, ProducerConnections, SubscriptionGroupConfig,
    SubscriptionGroupInfo, UpdateSubscriptionGroupRequest,
};

use super::Shared;
use crate::broker::CreateTopic;
use crate::client_registry::{
    ClientHeartbeat, ClientUnregister, GetConsumerConnections, GetProducerConnections,
};
use crate::consumer_group::send_back;
use crate::consumer_group::{
    ConsumerGroup, GetMembers, GetSubscriptionConflicts, GroupHeartbeat, LeaveGroup, LockQueues,
    NotifyReset, UnlockQueues,
};
use crate::consumer_offsets::{CommitOffset, DeleteGroupOffsets, GroupOffsets, ListOffsetGroups};
use crate::group_registry::{EnsureGroup, RemoveGroup};
use crate::message_store::record;
use crate::storage::{GetQueueOffsets, QueueOffsetByTime, ReadAt};
use crate::subscription_groups::{RemoveSubscriptionGroup, UpdateSubscriptionGroup};

fn group_ok(g: &str) -> Result<(), WireError> {
    validate_group_name(g).map_err(|e| WireError::new(ErrorCode::BadRequest, e))
}

async fn group_actor(s: &Shared, group: &str) -> Result<Addr<ConsumerGroup>, WireError> {
    if let Some(a) = s.groups.get(group) {
        return Ok(a.clone());
    }
    s.group_manager
        .send(EnsureGroup(group.to_string()))
        .await
        .map_err(crate::mailbox_error)
}

/// Records the client as a member of each consumer group it names.
pub async fn heartbeat(
    s: Arc<Shared>,
    r: HeartbeatRequest,
    conn: crate::remoting::ClientConn,
    peer: std::net::SocketAddr,
) -> Result<Ack, WireError> {
    for g in &r.consumer_groups {
        group_ok(&g.group)?;
        if g.message_model == MessageModel::Broadcasting {
            check_broadcast_allowed(&s, &g.group)?;
        }
    }
    // A malformed SQL subscription is refused before the group records it.
    super::query::check_subscriptions(&s, &r)?;
    s.clients
        .send(ClientHeartbeat {
            peer,
            conn: conn.clone(),
            heartbeat: r.clone(),
        })
        .await
        .map_err(crate::mailbox_error)?;
    for g in r.consumer_groups {
        let actor = group_actor(&s, &g.group).await?;
        actor
            .send(GroupHeartbeat {
                client_id: r.client_id.clone(),
                conn: conn.clone(),
                data: g,
            })
            .await
            .map_err(crate::mailbox_error)?;
    }
    Ok(Ack {})
}

/// A client leaves its consumer group (clean shutdown).
pub async fn unregister_client(
    s: Arc<Shared>,
    r: UnregisterClientRequest,
) -> Result<Ack, WireError> {
    s.clients.do_send(ClientUnregister(r.clone()));
    if let Some(g) = r.consumer_group {
        if let Some(a) = s.groups.get(&g).map(|a| a.clone()) {
            a.send(LeaveGroup {
                client_id: r.client_id,
            })
            .await
            .map_err(crate::mailbox_error)?;
        }
    }
    Ok(Ack {})
}

async fn members(s: &Shared, group: &str) -> Result<Vec<String>, WireError> {
    match s.groups.get(group).map(|a| a.clone()) {
        Some(a) => a.send(GetMembers).await.map_err(crate::mailbox_error),
        None => Ok(Vec::new()),
    }
}

pub async fn consumer_list(
    s: Arc<Shared>,
    r: GetConsumerListRequest,
) -> Result<ConsumerList, WireError> {
    group_ok(&r.group)?;
    Ok(ConsumerList {
        client_ids: members(&s, &r.group).await?,
    })
}

pub async fn lock_batch(
    s: Arc<Shared>,
    r: LockBatchRequest,
) -> Result<LockBatchResponse, WireError> {
    group_ok(&r.group)?;
    let actor = group_actor(&s, &r.group).await?;
    let locked = actor
        .send(LockQueues {
            client_id: r.client_id,
            queues: r.queues,
        })
        .await
        .map_err(crate::mailbox_error)?;
    Ok(LockBatchResponse { locked })
}

pub async fn unlock_batch(s: Arc<Shared>, r: UnlockBatchRequest) -> Result<Ack, WireError> {
    group_ok(&r.group)?;
    if let Some(a) = s.groups.get(&r.group).map(|a| a.clone()) {
        a.send(UnlockQueues {
            client_id: r.client_id,
            queues: r.queues,
        })
        .await
        .map_err(crate::mailbox_error)?;
    }
    Ok(Ack {})
}

async fn offset_by_time(
    s: &Shared,
    topic: &str,
    queue_id: u32,
    timestamp_ms: i64,
) -> Result<u64, WireError> {
    s.storage
        .send(QueueOffsetByTime {
            topic: topic.to_string(),
            queue_id,
            timestamp_ms,
        })
        .await
        .map_err(crate::mailbox_error)
}

/// Backtrack: commit, for every queue of the topic, the first offset stored
/// at or after the time, then tell live members.
pub async fn reset_offset(
    s: Arc<Shared>,
    r: ResetOffsetRequest,
) -> Result<ResetOffsetResponse, WireError> {
    group_ok(&r.group)?;
    let config = s.topic_config(&r.topic).await?;
    let mut offsets = Vec::with_capacity(config.read_queues as usize);
    for queue_id in 0..config.read_queues {
        let offset = offset_by_time(&s, &r.topic, queue_id, r.timestamp_ms).await?;
        s.offsets
            .send(CommitOffset {
                group: r.group.clone(),
                topic: r.topic.clone(),
                queue_id,
                offset,
            })
            .await
            .map_err(crate::mailbox_error)?;
        offsets.push(QueueOffsetEntry { queue_id, offset });
    }
    if let Some(a) = s.groups.get(&r.group).map(|a| a.clone()) {
        a.do_send(NotifyReset(ResetOffsetNotify {
            group: r.group.clone(),
            topic: r.topic.clone(),
            broker_addr: s.config.advertised(),
            offsets: offsets.clone(),
        }));
    }
    Ok(ResetOffsetResponse { offsets })
}

pub async fn consume_progress(
    s: Arc<Shared>,
    r: GetConsumeProgressRequest,
) -> Result<ConsumeProgress, WireError> {
    group_ok(&r.group)?;
    let committed = s
        .offsets
        .send(GroupOffsets(r.group.clone()))
        .await
        .map_err(crate::mailbox_error)?;
    let mut queues = Vec::with_capacity(committed.len());
    for c in committed {
        let (min, max) = s
            .storage
            .send(GetQueueOffsets {
                topic: c.topic.clone(),
                queue_id: c.queue_id,
            })
            .await
            .map_err(crate::mailbox_error)?;
        queues.push(QueueProgress {
            topic: c.topic,
            queue_id: c.queue_id,
            broker_offset: max,
            consumer_offset: c.offset,
            last_commit_ms: c.last_commit_ms,
            min_offset: min,
        });
    }
    let subscription_conflicts = match s.groups.get(&r.group).map(|a| a.clone()) {
        Some(a) => a
            .send(GetSubscriptionConflicts)
            .await
            .map_err(crate::mailbox_error)?,
        None => Vec::new(),
    };
    Ok(ConsumeProgress {
        queues,
        client_ids: members(&s, &r.group).await?,
        subscription_conflicts,
    })
}

pub async fn group_list(s: Arc<Shared>, _r: GetGroupListRequest) -> Result<GroupList, WireError> {
    let mut groups: BTreeSet<String> = s
        .offsets
        .send(ListOffsetGroups)
        .await
        .map_err(crate::mailbox_error)?
        .into_iter()
        .collect();
    groups.extend(s.groups.iter().map(|e| e.key().clone()));
    Ok(GroupList {
        groups: groups.into_iter().collect(),
    })
}

pub async fn delete_group(s: Arc<Shared>, r: DeleteGroupRequest) -> Result<Ack, WireError> {
    group_ok(&r.group)?;
    let had_offsets = s
        .offsets
        .send(DeleteGroupOffsets(r.group.clone()))
        .await
        .map_err(crate::mailbox_error)?;
    let had_actor = s.groups.contains_key(&r.group);
    let had_settings = s
        .sub_groups
        .addr
        .send(RemoveSubscriptionGroup(r.group.clone()))
        .await
        .map_err(crate::mailbox_error)?
        .map_err(|e| WireError::new(ErrorCode::Internal, e))?;
    if !had_offsets && !had_actor && !had_settings {
        return Err(WireError::new(
            ErrorCode::GroupNotFound,
            format!("consumer group '{}' does not exist", r.group),
        ));
    }
    s.group_manager
        .send(RemoveGroup(r.group))
        .await
        .map_err(crate::mailbox_error)?;
    Ok(Ack {})
}

/// Whether `group` consumes `topic`: a member subscribes to it, or it is
/// the group's own retry topic.
async fn subscribed(s: &Shared, group: &str, topic: &str) -> Result<(), WireError> {
    if topic.strip_prefix(skylark_codec::RETRY_TOPIC_PREFIX) == Some(group) {
        return Ok(());
    }
    let sub = match s.groups.get(group).map(|a| a.clone()) {
        Some(a) => a
            .send(crate::consumer_group::GetSubscription(topic.to_string()))
            .await
            .map_err(crate::mailbox_error)?,
        None => None,
    };
    match sub {
        Some(_) => Ok(()),
        None => Err(WireError::new(
            ErrorCode::NoPermission,
            format!(
                "the message to send back is on topic '{topic}', which no member of group \
                 '{group}' subscribes to"
            ),
        )),
    }
}

/// Creates `topic` with one queue unless it exists (a group's retry or
/// dead-letter topic).
pub async fn ensure_topic_of_one_queue(s: &Shared, topic: &str) -> Result<(), WireError> {
    if s.topics.get(topic).is_none() {
        s.broker
            .send(CreateTopic(skylark_codec::TopicConfig::new(
                topic.to_string(),
                1,
            )))
            .await
            .map_err(crate::mailbox_error)??;
    }
    Ok(())
}

/// A consumer failed a message: store a copy in the group's retry topic
/// (delay level 3 + reconsume times) or, after the maximum, in its
/// dead-letter topic. Both topics are created on first use (one queue).
pub async fn send_back(
    s: Arc<Shared>,
    r: SendBackRequest,
    peer: std::net::SocketAddr,
) -> Result<SendBackResponse, WireError> {
    group_ok(&r.group)?;
    // A slave never stores: not even the retry/DLQ topic's config.
    super::replication::refuse_on_slave(&s)?;
    let raw = s
        .storage
        .send(ReadAt {
            physical_offset: r.physical_offset,
            size: 0,
        })
        .await
        .map_err(crate::mailbox_error)?
        .map_err(crate::store_error)?;
    let (m, _) = record::decode(&raw).map_err(crate::store_error)?;
    if s.acl.is_some() {
        // Under ACL the send-back is checked for SUB on the group only: the
        // record must be one the group consumes, or any record on the
        // broker could be copied into a retry topic and read from there.
        subscribed(&s, &r.group, m.topic).await?;
    }
    let reconsume_times = r.reconsume_times.max(m.reconsume_times);
    // The group's stored retry max (updateSubGroup) wins over the client's.
    let max = s
        .sub_groups
        .get(&r.group)
        .and_then(|c| c.retry_max_times)
        .or(r.max_reconsume_times)
        .unwrap_or(skylark_codec::DEFAULT_MAX_RECONSUME_TIMES);
    let target = if r.dead_letter {
        send_back::target(&r.group, max, max)
    } else {
        send_back::target(&r.group, reconsume_times, max)
    };
    let msg_id = skylark_codec::MessageId::new(m.store_host, m.physical_offset).to_hex();
    let copy = send_back::copy_for(&m, &msg_id, &target);
    let topic = target.topic().to_string();
    ensure_topic_of_one_queue(&s, &topic).await?;
    let mut results = super::send::store_with_reconsume(
        &s,
        topic.clone(),
        -1,
        vec![copy],
        peer,
        reconsume_times.saturating_add(1),
    )
    .await?;
    let res = results
        .pop()
        .ok_or_else(|| WireError::new(ErrorCode::Internal, "empty append result"))?;
    Ok(SendBackResponse {
        topic,
        queue_offset: res.queue_offset,
    })
}

/// Most retries an operator may set before the dead-letter topic.
const MAX_RETRY_MAX_TIMES: u32 = 64;

/// `updateSubGroup`: store a group's settings (persisted before the answer).
pub async fn update_sub_group(
    s: Arc<Shared>,
    r: UpdateSubscriptionGroupRequest,
) -> Result<Ack, WireError> {
    group_ok(&r.config.group)?;
    if let Some(n) = r
        .config
        .retry_max_times
        .filter(|n| *n > MAX_RETRY_MAX_TIMES)
    {
        return Err(WireError::new(
            ErrorCode::BadRequest,
            format!("retry max times {n} is over the limit of {MAX_RETRY_MAX_TIMES}"),
        ));
    }
    super::replication::refuse_on_slave(&s)?;
    s.sub_groups
        .addr
        .send(UpdateSubscriptionGroup(r.config))
        .await
        .map_err(crate::mailbox_error)?
        .map_err(|e| WireError::new(ErrorCode::Internal, e))?;
    Ok(Ack {})
}

/// A group's settings in force.
pub async fn get_sub_group(
    s: Arc<Shared>,
    r: GetSubscriptionGroupRequest,
) -> Result<SubscriptionGroupInfo, WireError> {
    group_ok(&r.group)?;
    Ok(match s.sub_groups.get(&r.group) {
        Some(config) => SubscriptionGroupInfo {
            config,
            stored: true,
        },
        None => SubscriptionGroupInfo {
            config: SubscriptionGroupConfig::new(r.group),
            stored: false,
        },
    })
}

pub async fn consumer_connections(
    s: Arc<Shared>,
    r: GetConsumerConnectionsRequest,
) -> Result<ConsumerConnections, WireError> {
    group_ok(&r.group)?;
    let connections = s
        .clients
        .send(GetConsumerConnections(r.group))
        .await
        .map_err(crate::mailbox_error)?;
    Ok(ConsumerConnections { connections })
}

pub async fn producer_connections(
    s: Arc<Shared>,
    r: GetProducerConnectionsRequest,
) -> Result<ProducerConnections, WireError> {
    group_ok(&r.group)?;
    let connections = s
        .clients
        .send(GetProducerConnections(r.group))
        .await
        .map_err(crate::mailbox_error)?;
    Ok(ProducerConnections { connections })
}

/// Refuses a broadcasting member of a group whose settings forbid it.
fn check_broadcast_allowed(s: &Shared, group: &str) -> Result<(), WireError> {
    match s.sub_groups.get(group) {
        Some(c) if !c.consume_broadcast_enable => Err(WireError::new(
            ErrorCode::PermissionDenied,
            format!(
                "consumer group '{group}' may not consume in broadcasting mode (consume_broadcast_enable is off; `skylark admin group config set --group {group} --broadcast true`)"
            ),
        )),
        _ => Ok(()),
    }
}

/// The checks a pull passes before it reads: the broker is readable, and
/// the group's settings allow it to consume (and, if its members
/// broadcast, to broadcast). One read-cache lookup when nothing is stored.
pub async fn check_pull_allowed(s: &Shared, group: &str) -> Result<(), WireError> {
    crate::broker::permission::check_readable(&s.live, &s.config.broker_name)?;
    let Some(c) = s.sub_groups.get(group) else {
        return Ok(());
    };
    if !c.consume_enable {
        return Err(WireError::new(
            ErrorCode::PermissionDenied,
            format!(
                "consumer group '{group}' may not consume (consume_enable is off; `skylark admin group config set --group {group} --consume-enable true`)"
            ),
        ));
    }
    if !c.consume_broadcast_enable {
        let members = s
            .clients
            .send(GetConsumerConnections(group.to_string()))
            .await
            .map_err(crate::mailbox_error)?;
        if members
            .iter()
            .any(|m| m.message_model == MessageModel::Broadcasting)
        {
            check_broadcast_allowed(s, group)?;
        }
    }
    Ok(())
}
