//! Message queries (by key, by id, by time), live broker settings, and the
//! SQL-92 subscription check shared by pull and heartbeat.

use std::sync::Arc;

use skylark_codec::{
    Ack, BrokerSettings, ErrorCode, ExpressionType, GetBrokerConfigRequest, HeartbeatRequest,
    MessageId, QueryMessageByKeyRequest, QueryMessageByTimeRequest, QueryMessageResponse,
    SearchOffsetByTimeRequest, SearchOffsetByTimeResponse, SetBrokerConfigRequest,
    ViewMessageByIdRequest, WireError,
};

use super::Shared;
use crate::broker::{GetBrokerSettings, SetBrokerSetting};
use crate::filter::SqlFilter;
use crate::message_store::StoreError;
use crate::storage::{GetStorageStats, QueryByKey, QueryByTime, QueueOffsetByTime, ReadAt};

/// Most messages one query answers.
const MAX_QUERY_MESSAGES: u32 = 1024;

/// Compiles a SQL-92 subscription of `topic`, or refuses it with
/// `InvalidFilter` and the parser's reason (also when the broker has
/// `enable_property_filter` off).
pub fn compile_sql(s: &Shared, topic: &str, expr: &str) -> Result<Arc<SqlFilter>, WireError> {
    if !s.live.enable_property_filter() {
        return Err(WireError::new(
            ErrorCode::InvalidFilter,
            format!(
                "SQL92 filter for topic '{topic}' refused: enable_property_filter is off on this broker"
            ),
        ));
    }
    SqlFilter::compile(expr)
        .map(Arc::new)
        .map_err(|e| WireError::new(ErrorCode::InvalidFilter, format!("topic '{topic}': {e}")))
}

/// Checks every SQL-92 subscription of a heartbeat (the subscription is
/// made there, so a malformed one is refused at once).
pub fn check_subscriptions(s: &Shared, r: &HeartbeatRequest) -> Result<(), WireError> {
    for g in &r.consumer_groups {
        for sub in &g.subscriptions {
            if sub.expression_type == ExpressionType::Sql {
                compile_sql(s, &sub.topic, &sub.expression).map_err(|mut e| {
                    e.message = format!("group '{}': {}", g.group, e.message);
                    e
                })?;
            }
        }
    }
    Ok(())
}

fn check_topic(topic: &str) -> Result<(), WireError> {
    skylark_codec::validate_topic_name(topic).map_err(|e| WireError::new(ErrorCode::BadRequest, e))
}

pub async fn by_key(
    s: Arc<Shared>,
    r: QueryMessageByKeyRequest,
) -> Result<QueryMessageResponse, WireError> {
    check_topic(&r.topic)?;
    if r.key.is_empty() {
        return Err(WireError::new(ErrorCode::BadRequest, "the key is empty"));
    }
    let (records, count) = s
        .storage
        .send(QueryByKey {
            topic: r.topic,
            key: r.key,
            begin_ms: r.begin_ms,
            end_ms: r.end_ms,
            max: r.max.clamp(1, MAX_QUERY_MESSAGES),
        })
        .await
        .map_err(crate::mailbox_error)?
        .map_err(crate::store_error)?;
    Ok(QueryMessageResponse { count, records })
}

pub async fn by_id(
    s: Arc<Shared>,
    r: ViewMessageByIdRequest,
) -> Result<QueryMessageResponse, WireError> {
    let id = MessageId::from_hex(&r.msg_id).map_err(|e| {
        WireError::new(
            ErrorCode::BadRequest,
            format!("bad message id '{}': {e}", r.msg_id),
        )
    })?;
    if id.addr != s.store_host {
        return Err(WireError::new(
            ErrorCode::BadRequest,
            format!(
                "message id '{}' names broker {}, not this broker ({})",
                r.msg_id, id.addr, s.store_host
            ),
        ));
    }
    let read = s
        .storage
        .send(ReadAt {
            physical_offset: id.physical_offset,
            size: 0,
        })
        .await
        .map_err(crate::mailbox_error)?;
    match read {
        // An offset inside another record is not a message id.
        Ok(records)
            if crate::message_store::decode(&records)
                .is_ok_and(|(m, _)| m.physical_offset == id.physical_offset) =>
        {
            Ok(QueryMessageResponse { count: 1, records })
        }
        Ok(_) | Err(StoreError::NoRecord(_)) => retained_away(&s, &r.msg_id, id.physical_offset)
            .await
            .map(|()| QueryMessageResponse::default()),
        Err(e) => Err(crate::store_error(e)),
    }
}

/// `MessageDeleted` when `physical_offset` is below the CommitLog's
/// retained minimum (retention deleted the segment holding it): an empty
/// answer said only "no message there", which the CLI took for an id no
/// broker holds.
async fn retained_away(s: &Shared, msg_id: &str, physical_offset: u64) -> Result<(), WireError> {
    let min = s
        .storage
        .send(GetStorageStats)
        .await
        .map_err(crate::mailbox_error)?
        .min_physical_offset;
    if physical_offset < min {
        return Err(WireError::new(
            ErrorCode::MessageDeleted,
            format!(
                "message id '{msg_id}': CommitLog offset {physical_offset} is below this broker's retained minimum {min} (retention deleted it)"
            ),
        ));
    }
    Ok(())
}

pub async fn by_time(
    s: Arc<Shared>,
    r: QueryMessageByTimeRequest,
) -> Result<QueryMessageResponse, WireError> {
    check_topic(&r.topic)?;
    let (records, count) = s
        .storage
        .send(QueryByTime {
            topic: r.topic,
            timestamp_ms: r.timestamp_ms,
            max_per_queue: r.max_per_queue.clamp(1, MAX_QUERY_MESSAGES),
        })
        .await
        .map_err(crate::mailbox_error)?
        .map_err(crate::store_error)?;
    Ok(QueryMessageResponse { count, records })
}

pub async fn search_offset_by_time(
    s: Arc<Shared>,
    r: SearchOffsetByTimeRequest,
) -> Result<SearchOffsetByTimeResponse, WireError> {
    let offset = s
        .storage
        .send(QueueOffsetByTime {
            topic: r.topic,
            queue_id: r.queue_id,
            timestamp_ms: r.timestamp_ms,
        })
        .await
        .map_err(crate::mailbox_error)?;
    Ok(SearchOffsetByTimeResponse { offset })
}

pub async fn get_config(
    s: Arc<Shared>,
    _r: GetBrokerConfigRequest,
) -> Result<BrokerSettings, WireError> {
    let settings = s
        .broker
        .send(GetBrokerSettings)
        .await
        .map_err(crate::mailbox_error)?;
    Ok(BrokerSettings { settings })
}

pub async fn set_config(s: Arc<Shared>, r: SetBrokerConfigRequest) -> Result<Ack, WireError> {
    s.broker
        .send(SetBrokerSetting {
            key: r.key,
            value: r.value,
        })
        .await
        .map_err(crate::mailbox_error)?
        .map_err(|e| WireError::new(ErrorCode::BadRequest, e.to_string()))?;
    Ok(Ack {})
}
