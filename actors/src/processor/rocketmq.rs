//! The Broker's answers to RocketMQ remoting requests (issue 17,
//! docs/rocketmq-compat.md): each request is translated into the Skylark
//! request of the same meaning and run by the same handler a Skylark client
//! reaches, so messages, offsets and filters are shared by both protocols.
//!
//! Answered: SEND_MESSAGE (10), SEND_MESSAGE_V2 (310, short header keys
//! `a`–`m`), PULL_MESSAGE (11, long polling with `suspendTimeoutMillis`, tag
//! or SQL92 `subscription`, piggy-backed commit; the body is the messages in
//! RocketMQ's stored-message layout), QUERY_CONSUMER_OFFSET (14),
//! UPDATE_CONSUMER_OFFSET (15), SEARCH_OFFSET_BY_TIMESTAMP (29),
//! GET_MAX_OFFSET (30), GET_MIN_OFFSET (31), HEART_BEAT (34, the JSON
//! `HeartbeatData` body: the client joins its consumer groups and is
//! listed by the admin connection commands), UNREGISTER_CLIENT (35),
//! GET_CONSUMER_LIST_BY_GROUP (38), LOCK_BATCH_MQ (41), UNLOCK_BATCH_MQ
//! (42), SEND_BATCH_MESSAGE (320, RocketMQ's batch body encoding),
//! CONSUMER_SEND_MSG_BACK (36, to the group's retry topic or its DLQ),
//! VIEW_MESSAGE_BY_ID (33, the record at a physical offset in the stored
//! layout), END_TRANSACTION (37, commit or rollback of a half message,
//! also the producer's answer to a check-back). The broker pushes
//! CHECK_TRANSACTION_STATE (39, oneway, the half message in the stored
//! layout under its real topic) to a RocketMQ producer of the group, and NOTIFY_CONSUMER_IDS_CHANGED (40, oneway) to a
//! RocketMQ member when its group changes. Any other code gets
//! REQUEST_CODE_NOT_SUPPORTED (3) with a remark.

use std::io::Read;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use skylark_codec::message::{PROPERTY_DELAY, PROPERTY_DELIVER_AT, PROPERTY_KEYS, PROPERTY_TAGS};
use skylark_codec::remoting::heartbeat::{CheckClientRequestBody, HeartbeatData};
use skylark_codec::remoting::message::{encode_stored, parse_properties, SYSFLAG_COMPRESSED};
use skylark_codec::remoting::{request, response, RemotingCommand};
use skylark_codec::{
    CommitOffsetRequest, ErrorCode, GetQueueOffsetsRequest, MessageData, PullRequest, PullStatus,
    QueryOffsetRequest, SearchOffsetByTimeRequest, SendRequest, SendStatus, WireError,
};

use super::{offset, pull, query, send, BrokerService, Shared};
use crate::remoting::rocketmq::{Answer, RemotingConn, RemotingLimits};
use crate::remoting::ClientConn;

/// The broker remoting port `skylark standalone` serves unless told
/// otherwise (its NameServer's is 9886; no other default of ours uses it).
pub const STANDALONE_PORT: u16 = 9887;

impl BrokerService {
    /// The answer function of the broker's RocketMQ remoting listener.
    pub fn rocketmq_answer(&self) -> Answer {
        let s = self.shared.clone();
        Rc::new(move |req, conn| {
            let (s, conn) = (s.clone(), conn.clone());
            Box::pin(async move { answer(s, req, conn).await })
        })
    }

    /// The listener's limits, from the broker config.
    pub fn rocketmq_limits(&self) -> RemotingLimits {
        let c = &self.shared.config;
        RemotingLimits::new(
            c.max_frame_size,
            c.max_connections,
            c.connection_idle_secs,
            c.frame_read_timeout_ms,
        )
    }
}

/// The answer to one request.
pub async fn answer(s: Arc<Shared>, req: RemotingCommand, conn: RemotingConn) -> RemotingCommand {
    if let Some(acl) = &s.acl {
        if let Err(e) = acl.check_remoting(&req, conn.peer.ip(), |a| authorize(a, &req)) {
            return req.response_to(code_of(e.code), Some(e.message));
        }
    }
    let result = match req.code {
        request::SEND_MESSAGE | request::SEND_MESSAGE_V2 => send_message(s, &req, conn.peer).await,
        request::HEART_BEAT => heart_beat(s, &req, conn).await,
        request::UNREGISTER_CLIENT => unregister_client(s, &req).await,
        request::GET_CONSUMER_LIST_BY_GROUP => consumer_list(s, &req).await,
        request::LOCK_BATCH_MQ | request::UNLOCK_BATCH_MQ => lock_batch(s, &req).await,
        request::CHECK_CLIENT_CONFIG => check_client_config(&req),
        request::SEND_BATCH_MESSAGE => send_batch(s, &req, conn.peer).await,
        request::CONSUMER_SEND_MSG_BACK => send_back(s, &req, conn.peer).await,
        request::VIEW_MESSAGE_BY_ID => view_by_id(s, &req).await,
        request::END_TRANSACTION => end_transaction(s, &req).await,
        request::PULL_MESSAGE => pull_message(s, &req).await,
        request::QUERY_CONSUMER_OFFSET => query_offset(s, &req).await,
        request::UPDATE_CONSUMER_OFFSET => update_offset(s, &req).await,
        request::GET_MAX_OFFSET | request::GET_MIN_OFFSET => queue_offset(s, &req).await,
        request::SEARCH_OFFSET_BY_TIMESTAMP => search_offset(s, &req).await,
        other => Ok(req.response_to(
            response::REQUEST_CODE_NOT_SUPPORTED,
            Some(format!(
                "request code {other} is not supported by the Skylark broker \
                 (docs/rocketmq-compat.md)"
            )),
        )),
    };
    result.unwrap_or_else(|e| req.response_to(code_of(e.code), Some(e.message)))
}

/// What a RocketMQ request needs of its signed account: the rule of the
/// Skylark command it is translated into ([`crate::acl::rules`]), with the
/// group and topic read from its header (or, for heartbeats and locks, its
/// body). A code without a rule here needs an admin account.
fn authorize(account: &crate::acl::Account, req: &RemotingCommand) -> Result<(), WireError> {
    use crate::acl::rules::{authorize_heartbeat, authorize_names};
    use skylark_codec::Command as C;
    let names = |cmd, group: &str| {
        authorize_names(
            account,
            cmd,
            field(req, group, ""),
            field(req, "topic", "b"),
        )
    };
    match req.code {
        request::SEND_MESSAGE | request::SEND_MESSAGE_V2 | request::SEND_BATCH_MESSAGE => {
            names(C::SendMessage, "producerGroup")
        }
        request::PULL_MESSAGE
        | request::QUERY_CONSUMER_OFFSET
        | request::UPDATE_CONSUMER_OFFSET => names(C::PullMessage, "consumerGroup"),
        request::GET_MAX_OFFSET | request::GET_MIN_OFFSET | request::SEARCH_OFFSET_BY_TIMESTAMP => {
            names(C::GetQueueOffsets, "consumerGroup")
        }
        request::VIEW_MESSAGE_BY_ID => names(C::ViewMessageById, "consumerGroup"),
        request::GET_CONSUMER_LIST_BY_GROUP => names(C::GetConsumerList, "consumerGroup"),
        request::CONSUMER_SEND_MSG_BACK => names(C::ConsumerSendBack, "group"),
        request::LOCK_BATCH_MQ | request::UNLOCK_BATCH_MQ => {
            let b: LockBody = json_body(req, "lock")?;
            authorize_names(account, C::LockBatchMq, Some(&b.consumer_group), None)
        }
        request::HEART_BEAT => {
            let hb: HeartbeatData = json_body(req, "HeartbeatData")?;
            authorize_heartbeat(
                account,
                hb.consumer_data_set.iter().map(|c| {
                    (
                        c.group_name.as_str(),
                        c.subscription_data_set.iter().map(|d| d.topic.as_str()),
                    )
                }),
            )
        }
        // Unregistering a consumer needs SUB on its group; a producer's
        // unregister (no consumer group) and the end of a transaction (its
        // half message is found by offset, its topic known only after the
        // lookup) need a valid account, as on Skylark's port
        // (docs/security.md, "Not covered").
        request::UNREGISTER_CLIENT => match field(req, "consumerGroup", "") {
            Some(g) => authorize_names(account, C::GetConsumerList, Some(g), None),
            None => Ok(()),
        },
        request::END_TRANSACTION | request::CHECK_CLIENT_CONFIG => Ok(()),
        // Any other code (not served, or added to `answer` later without a
        // rule here) needs an admin account: it fails closed.
        _ if account.admin => Ok(()),
        _ => Err(crate::acl::rules::admin_denied(
            account,
            format_args!("{}", crate::acl::phrase::rocketmq(req)),
        )),
    }
}

/// RocketMQ's response code for a Skylark error.
fn code_of(code: ErrorCode) -> i32 {
    match code {
        ErrorCode::Busy | ErrorCode::DiskFull => response::SYSTEM_BUSY,
        ErrorCode::TopicNotFound => response::TOPIC_NOT_EXIST,
        ErrorCode::MessageTooLarge | ErrorCode::BadRequest => response::MESSAGE_ILLEGAL,
        ErrorCode::NotMaster => response::SERVICE_NOT_AVAILABLE,
        ErrorCode::FlushDiskTimeout => response::FLUSH_DISK_TIMEOUT,
        ErrorCode::FlushSlaveTimeout => response::FLUSH_SLAVE_TIMEOUT,
        ErrorCode::SlaveNotAvailable => response::SLAVE_NOT_AVAILABLE,
        ErrorCode::PermissionDenied | ErrorCode::NoPermission | ErrorCode::AuthFailed => {
            response::NO_PERMISSION
        }
        ErrorCode::InvalidFilter => response::SUBSCRIPTION_PARSE_FAILED,
        ErrorCode::GroupNotFound => response::SUBSCRIPTION_GROUP_NOT_EXIST,
        _ => response::SYSTEM_ERROR,
    }
}

fn bad(msg: String) -> WireError {
    WireError::new(ErrorCode::BadRequest, msg)
}

/// A header field, by its long name or (SEND_MESSAGE_V2 and
/// SEND_BATCH_MESSAGE, which RocketMQ sends with the V2 header) its short one.
fn field<'a>(req: &'a RemotingCommand, long: &str, short: &str) -> Option<&'a str> {
    req.ext(long).or_else(|| {
        matches!(
            req.code,
            request::SEND_MESSAGE_V2 | request::SEND_BATCH_MESSAGE
        )
        .then(|| req.ext(short))
        .flatten()
    })
}

fn required<'a>(req: &'a RemotingCommand, long: &str, short: &str) -> Result<&'a str, WireError> {
    field(req, long, short).ok_or_else(|| bad(format!("the request header has no '{long}' field")))
}

fn number<T: std::str::FromStr>(
    req: &RemotingCommand,
    long: &str,
    short: &str,
) -> Result<Option<T>, WireError> {
    field(req, long, short)
        .map(|v| {
            v.trim()
                .parse()
                .map_err(|_| bad(format!("header field '{long}' is not a number: {v:?}")))
        })
        .transpose()
}

fn required_number<T: std::str::FromStr>(
    req: &RemotingCommand,
    long: &str,
) -> Result<T, WireError> {
    number(req, long, "")?.ok_or_else(|| bad(format!("the request header has no '{long}' field")))
}

/// The message fields of a send header (`properties`, `flag`, born time),
/// with `body`.
fn message_of(
    req: &RemotingCommand,
    props: &str,
    flag: i32,
    body: Bytes,
) -> Result<MessageData, WireError> {
    let mut message = MessageData {
        flag,
        born_timestamp: number(req, "bornTimestamp", "g")?.unwrap_or(0),
        body,
        ..MessageData::default()
    };
    // Longer than any record's properties (the few bytes of DELAY and
    // __STARTDELIVERTIME become fields): refused before parsing.
    let limit = crate::message_store::record::MAX_PROPERTIES_LEN;
    let parsed = parse_properties(props, limit + 64).ok_or_else(|| {
        WireError::new(
            ErrorCode::MessageTooLarge,
            format!(
                "message properties of {} bytes exceed the limit of {limit} bytes",
                props.len()
            ),
        )
    })?;
    for (k, v) in parsed {
        match k.as_str() {
            PROPERTY_TAGS => message.tags = Some(v),
            PROPERTY_KEYS => message.keys = Some(v),
            PROPERTY_DELAY => {
                message.delay_level = v
                    .parse()
                    .map_err(|_| bad(format!("property DELAY is not a level: {v:?}")))?
            }
            PROPERTY_DELIVER_AT => {
                message.deliver_at_ms = Some(v.parse().map_err(|_| {
                    bad(format!(
                        "property {PROPERTY_DELIVER_AT} is not a time: {v:?}"
                    ))
                })?)
            }
            _ => message.properties.push((k, v)),
        }
    }
    Ok(message)
}

fn send_code(status: SendStatus) -> i32 {
    match status {
        SendStatus::SendOk => response::SUCCESS,
        SendStatus::FlushDiskTimeout => response::FLUSH_DISK_TIMEOUT,
        SendStatus::FlushSlaveTimeout => response::FLUSH_SLAVE_TIMEOUT,
        SendStatus::SlaveNotAvailable => response::SLAVE_NOT_AVAILABLE,
    }
}

fn send_answer(
    req: &RemotingCommand,
    status: SendStatus,
    msg_id: String,
    queue_id: u32,
    queue_offset: u64,
) -> RemotingCommand {
    let mut resp = req.response_to(send_code(status), None);
    let ext = &mut resp.ext_fields;
    ext.insert("msgId".into(), msg_id);
    ext.insert("queueId".into(), queue_id.to_string());
    ext.insert("queueOffset".into(), queue_offset.to_string());
    ext.insert("MSG_REGION".into(), "DefaultRegion".into());
    ext.insert("TRACE_ON".into(), "false".into());
    resp
}

/// Producer group, topic and queue (-1: the broker picks) of a send header.
fn send_target(req: &RemotingCommand) -> Result<(String, String, i32), WireError> {
    Ok((
        required(req, "producerGroup", "a")?.to_string(),
        required(req, "topic", "b")?.to_string(),
        number(req, "queueId", "e")?.unwrap_or(-1),
    ))
}

/// SEND_MESSAGE (10) / SEND_MESSAGE_V2 (310): one message.
async fn send_message(
    s: Arc<Shared>,
    req: &RemotingCommand,
    peer: SocketAddr,
) -> Result<RemotingCommand, WireError> {
    if matches!(field(req, "batch", "m"), Some("true" | "1")) {
        return send_batch(s, req, peer).await;
    }
    let sys_flag: i32 = number(req, "sysFlag", "f")?.unwrap_or(0);
    let message = message_of(
        req,
        field(req, "properties", "i").unwrap_or(""),
        number(req, "flag", "h")?.unwrap_or(0),
        body_of(&req.body, sys_flag)?,
    )?;
    let (producer_group, topic, queue_id) = send_target(req)?;
    let r = send::send_one(
        s,
        SendRequest {
            producer_group,
            topic,
            queue_id,
            message,
        },
        peer,
    )
    .await?;
    Ok(send_answer(
        req,
        r.status,
        r.msg_id,
        r.queue_id,
        r.queue_offset,
    ))
}

/// How many messages a batch body holds, by their size fields (the decode
/// checks each one): the list is allocated once, at its size.
fn batch_len(body: &[u8]) -> usize {
    let (mut n, mut at) = (0, 0);
    while let Some(total) = body.get(at..at + 4) {
        let total = i32::from_be_bytes(total.try_into().unwrap_or_default());
        if total < 24 {
            break;
        }
        n += 1;
        at += total as usize;
    }
    n
}

/// What a decoded message holds on the heap beyond its own struct.
fn decoded_size(m: &MessageData) -> usize {
    let pair = std::mem::size_of::<(String, String)>();
    m.properties.capacity() * pair
        + m.properties
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
        + m.tags.as_ref().map_or(0, String::len)
        + m.keys.as_ref().map_or(0, String::len)
}

/// SEND_BATCH_MESSAGE (320): the body is RocketMQ's batch encoding, per
/// message `total size: i32 | magic: i32 | body CRC: i32 | flag: i32 |
/// body length: i32 + body | properties length: i16 + properties`. One
/// queue, stored together; `msgId` lists every id, comma separated.
async fn send_batch(
    s: Arc<Shared>,
    req: &RemotingCommand,
    peer: SocketAddr,
) -> Result<RemotingCommand, WireError> {
    // Decoded under the budget of every frame (8 x its length + 16 KiB):
    // a 24-byte message becomes a MessageData, its properties owned pairs.
    let budget = skylark_codec::budget::budget_for(req.body.len());
    let over = || {
        bad(format!(
            "a batch body of {} bytes would decode into more than {budget} bytes",
            req.body.len()
        ))
    };
    let n = batch_len(&req.body);
    let mut charged = n.saturating_mul(std::mem::size_of::<MessageData>());
    if charged > budget {
        return Err(over());
    }
    let mut messages = Vec::with_capacity(n);
    let mut b = req.body.clone();
    let short = |what: &str| bad(format!("batch body cut short in {what}"));
    while !b.is_empty() {
        use bytes::Buf;
        if b.len() < 20 {
            return Err(short("a message header"));
        }
        let total = b.get_i32();
        if total < 24 || total as usize - 4 > b.len() {
            return Err(bad(format!("batch message size {total} is out of range")));
        }
        let mut m = b.split_to(total as usize - 4);
        let (_magic, _crc, flag) = (m.get_i32(), m.get_i32(), m.get_i32());
        let body_len = m.get_i32();
        if body_len < 0 || body_len as usize + 2 > m.len() {
            return Err(short("a body"));
        }
        let body = m.split_to(body_len as usize);
        let props_len = m.get_i16();
        if props_len < 0 || props_len as usize > m.len() {
            return Err(short("properties"));
        }
        let props = std::str::from_utf8(&m[..props_len as usize])
            .map_err(|_| bad("batch message properties are not UTF-8".into()))?;
        let m = message_of(req, props, flag, body)?;
        charged += decoded_size(&m);
        if charged > budget {
            return Err(over());
        }
        messages.push(m);
    }
    if messages.is_empty() {
        return Err(bad("an empty batch".into()));
    }
    let (producer_group, topic, queue_id) = send_target(req)?;
    let r = send::send_batch(
        s,
        skylark_codec::SendBatchRequest {
            producer_group,
            topic,
            queue_id,
            messages,
        },
        peer,
    )
    .await?;
    let first = r
        .results
        .first()
        .ok_or_else(|| WireError::new(ErrorCode::Internal, "empty append result"))?;
    let status = r
        .results
        .iter()
        .map(|x| x.status)
        .find(|st| *st != SendStatus::SendOk)
        .unwrap_or(SendStatus::SendOk);
    let ids: Vec<&str> = r.results.iter().map(|x| x.msg_id.as_str()).collect();
    Ok(send_answer(
        req,
        status,
        ids.join(","),
        first.queue_id,
        first.queue_offset,
    ))
}

/// CONSUMER_SEND_MSG_BACK (36): header `offset` (physical), `group`,
/// `delayLevel` (-1: straight to the dead-letter topic), `maxReconsumeTimes`.
async fn send_back(
    s: Arc<Shared>,
    req: &RemotingCommand,
    peer: SocketAddr,
) -> Result<RemotingCommand, WireError> {
    let max: Option<u32> = number(req, "maxReconsumeTimes", "")?;
    let delay: i32 = number(req, "delayLevel", "")?.unwrap_or(0);
    let group = required(req, "group", "")?.to_string();
    // The stored record's count is used when higher; -1 asks for the
    // dead-letter topic at once (the count the group's limit reaches).
    let reconsume_times = if delay < 0 {
        s.sub_groups
            .get(&group)
            .and_then(|c| c.retry_max_times)
            .or(max)
            .unwrap_or(skylark_codec::DEFAULT_MAX_RECONSUME_TIMES)
    } else {
        0
    };
    super::group::send_back(
        s,
        skylark_codec::SendBackRequest {
            group,
            physical_offset: required_number(req, "offset")?,
            reconsume_times,
            max_reconsume_times: max,
            dead_letter: delay < 0,
        },
        peer,
    )
    .await?;
    Ok(req.response_to(response::SUCCESS, None))
}

/// VIEW_MESSAGE_BY_ID (33): header `offset` (physical offset on this
/// broker); the body is the record in RocketMQ's stored layout.
async fn view_by_id(s: Arc<Shared>, req: &RemotingCommand) -> Result<RemotingCommand, WireError> {
    let offset: u64 = required_number(req, "offset")?;
    let msg_id = skylark_codec::MessageId::new(s.store_host, offset).to_hex();
    let r = query::by_id(s, skylark_codec::ViewMessageByIdRequest { msg_id }).await?;
    let body = stored_layout(&[r.records])?;
    if body.is_empty() {
        return Ok(req.response_to(
            response::SYSTEM_ERROR,
            Some(format!("no message at offset {offset}")),
        ));
    }
    Ok(req.response_to(response::SUCCESS, None).with_body(body))
}

/// Skylark records (concatenated, in any number of chunks) rewritten in
/// RocketMQ's stored-message layout.
fn stored_layout(chunks: &[Bytes]) -> Result<Bytes, WireError> {
    let mut body = BytesMut::new();
    for chunk in chunks {
        let mut at = 0;
        while at < chunk.len() {
            let (m, used) = skylark_codec::record::decode(&chunk[at..])
                .map_err(|e| WireError::new(ErrorCode::Internal, e.to_string()))?;
            encode_stored(&m, &mut body)
                .map_err(|e| WireError::new(ErrorCode::Internal, e.to_string()))?;
            at += used.max(1);
        }
    }
    Ok(body.freeze())
}

/// The stored body: RocketMQ clients zlib-compress large bodies (sys flag
/// bit 0); Skylark stores them uncompressed so both protocols read them.
fn body_of(body: &Bytes, sys_flag: i32) -> Result<Bytes, WireError> {
    if sys_flag & SYSFLAG_COMPRESSED == 0 {
        return Ok(body.clone());
    }
    let mut out = Vec::with_capacity(body.len() * 4);
    flate2::read::ZlibDecoder::new(&body[..])
        .take(skylark_codec::DEFAULT_MAX_FRAME_SIZE as u64)
        .read_to_end(&mut out)
        .map_err(|e| bad(format!("the compressed body does not inflate: {e}")))?;
    Ok(out.into())
}

/// PULL_MESSAGE (11).
async fn pull_message(s: Arc<Shared>, req: &RemotingCommand) -> Result<RemotingCommand, WireError> {
    const FLAG_COMMIT_OFFSET: i32 = 0x1;
    const FLAG_SUSPEND: i32 = 0x2;
    const FLAG_SUBSCRIPTION: i32 = 0x4;
    let sys_flag: i32 = number(req, "sysFlag", "")?.unwrap_or(0);
    let group = required(req, "consumerGroup", "")?;
    let topic = required(req, "topic", "")?;
    let header_sub = || {
        let sql = field(req, "expressionType", "").is_some_and(|t| t.eq_ignore_ascii_case("SQL92"));
        field(req, "subscription", "")
            .filter(|e| !e.is_empty())
            .map(|e| (e.to_string(), sql))
    };
    // The header's subscription counts when FLAG_SUBSCRIPTION says so
    // (postSubscriptionWhenPull); otherwise the group's from the heartbeats
    // filters, as on RocketMQ's broker (clients may send an empty field).
    // A pull of a group without heartbeats falls back to the header's.
    let carried = if sys_flag & FLAG_SUBSCRIPTION != 0 {
        header_sub()
    } else {
        match s.groups.get(group).map(|a| a.clone()) {
            Some(a) => a
                .send(crate::consumer_group::GetSubscription(topic.to_string()))
                .await
                .map_err(crate::mailbox_error)?
                .map(|sub| {
                    (
                        sub.expression,
                        sub.expression_type == skylark_codec::ExpressionType::Sql,
                    )
                })
                .or_else(header_sub),
            None => header_sub(),
        }
    };
    let (expression, is_sql) = match carried {
        Some((e, sql)) => (Some(e), sql),
        None => (None, false),
    };
    let (subscription, sql) = if is_sql {
        (None, expression)
    } else {
        (expression, None)
    };
    // Clients send -1 when they have nothing to commit.
    let commit: i64 = number(req, "commitOffset", "")?.unwrap_or(0);
    let r = PullRequest {
        consumer_group: group.to_string(),
        topic: topic.to_string(),
        queue_id: required_number(req, "queueId")?,
        queue_offset: required_number(req, "queueOffset")?,
        max_messages: number(req, "maxMsgNums", "")?.unwrap_or(32),
        max_bytes: number(req, "maxMsgBytes", "")?.unwrap_or(s.config.max_pull_bytes),
        suspend_timeout_ms: if sys_flag & FLAG_SUSPEND != 0 {
            number(req, "suspendTimeoutMillis", "")?.unwrap_or(0)
        } else {
            0
        },
        subscription,
        sql,
        commit_offset: (sys_flag & FLAG_COMMIT_OFFSET != 0 && commit > 0).then_some(commit as u64),
    };
    let (p, tail) = pull::pull(s, r).await?;
    let code = match p.status {
        PullStatus::Found => response::SUCCESS,
        PullStatus::NoNewMessage => response::PULL_NOT_FOUND,
        PullStatus::NoMatchedMessage => response::PULL_RETRY_IMMEDIATELY,
        PullStatus::OffsetIllegal => response::PULL_OFFSET_MOVED,
    };
    let mut chunks = tail;
    chunks.insert(0, p.records);
    let body = stored_layout(&chunks)?;
    let mut resp = req.response_to(code, None).with_body(body);
    let ext = &mut resp.ext_fields;
    ext.insert("nextBeginOffset".into(), p.next_offset.to_string());
    ext.insert("minOffset".into(), p.min_offset.to_string());
    ext.insert("maxOffset".into(), p.max_offset.to_string());
    ext.insert(
        "suggestWhichBrokerId".into(),
        if p.suggest_slave { "1" } else { "0" }.into(),
    );
    Ok(resp)
}

/// QUERY_CONSUMER_OFFSET (14): QUERY_NOT_FOUND when the group never
/// committed on the queue.
async fn query_offset(s: Arc<Shared>, req: &RemotingCommand) -> Result<RemotingCommand, WireError> {
    let r = offset::query(
        s,
        QueryOffsetRequest {
            group: required(req, "consumerGroup", "")?.to_string(),
            topic: required(req, "topic", "")?.to_string(),
            queue_id: required_number(req, "queueId")?,
        },
    )
    .await?;
    Ok(match r.offset {
        Some(o) => {
            let mut resp = req.response_to(response::SUCCESS, None);
            resp.ext_fields.insert("offset".into(), o.to_string());
            resp
        }
        None => req.response_to(
            response::QUERY_NOT_FOUND,
            Some("Not found, maybe this group consumer boot first".into()),
        ),
    })
}

/// UPDATE_CONSUMER_OFFSET (15).
async fn update_offset(
    s: Arc<Shared>,
    req: &RemotingCommand,
) -> Result<RemotingCommand, WireError> {
    offset::commit(
        s,
        CommitOffsetRequest {
            group: required(req, "consumerGroup", "")?.to_string(),
            topic: required(req, "topic", "")?.to_string(),
            queue_id: required_number(req, "queueId")?,
            offset: required_number(req, "commitOffset")?,
        },
    )
    .await?;
    Ok(req.response_to(response::SUCCESS, None))
}

/// GET_MAX_OFFSET (30) / GET_MIN_OFFSET (31).
async fn queue_offset(s: Arc<Shared>, req: &RemotingCommand) -> Result<RemotingCommand, WireError> {
    let o = offset::queue_offsets(
        s,
        GetQueueOffsetsRequest {
            topic: required(req, "topic", "")?.to_string(),
            queue_id: required_number(req, "queueId")?,
        },
    )
    .await?;
    let v = if req.code == request::GET_MAX_OFFSET {
        o.max_offset
    } else {
        o.min_offset
    };
    let mut resp = req.response_to(response::SUCCESS, None);
    resp.ext_fields.insert("offset".into(), v.to_string());
    Ok(resp)
}

/// SEARCH_OFFSET_BY_TIMESTAMP (29).
async fn search_offset(
    s: Arc<Shared>,
    req: &RemotingCommand,
) -> Result<RemotingCommand, WireError> {
    let o = query::search_offset_by_time(
        s,
        SearchOffsetByTimeRequest {
            topic: required(req, "topic", "")?.to_string(),
            queue_id: required_number(req, "queueId")?,
            timestamp_ms: required_number(req, "timestamp")?,
        },
    )
    .await?;
    let mut resp = req.response_to(response::SUCCESS, None);
    resp.ext_fields
        .insert("offset".into(), o.offset.to_string());
    Ok(resp)
}

/// CHECK_CLIENT_CONFIG (46): a push consumer asks, before it starts,
/// whether the broker can filter by its subscription; an SQL92 expression
/// that does not compile is refused with SUBSCRIPTION_PARSE_FAILED.
fn check_client_config(req: &RemotingCommand) -> Result<RemotingCommand, WireError> {
    let body: CheckClientRequestBody = json_body(req, "CheckClientRequestBody")?;
    if let Some(sub) = body.subscription_data {
        if sub.expression_type.eq_ignore_ascii_case("SQL92") {
            if let Err(e) = skylark_codec::filter::validate(&sub.sub_string) {
                return Ok(req.response_to(
                    response::SUBSCRIPTION_PARSE_FAILED,
                    Some(format!(
                        "the SQL92 expression of topic '{}' does not compile: {e}",
                        sub.topic
                    )),
                ));
            }
        }
    }
    Ok(req.response_to(response::SUCCESS, None))
}

fn json_body<T: serde::de::DeserializeOwned>(
    req: &RemotingCommand,
    what: &str,
) -> Result<T, WireError> {
    skylark_codec::remoting::decode_json_body(&req.body)
        .map_err(|e| bad(format!("bad {what} body: {e}")))
}

/// HEART_BEAT (34).
async fn heart_beat(
    s: Arc<Shared>,
    req: &RemotingCommand,
    conn: RemotingConn,
) -> Result<RemotingCommand, WireError> {
    use skylark_codec::{
        ConsumeFrom, ConsumeType, ConsumerGroupData, ExpressionType, HeartbeatRequest,
        MessageModel, Subscription,
    };
    let hb: HeartbeatData = json_body(req, "HeartbeatData")?;
    let r = HeartbeatRequest {
        client_id: hb.client_id,
        producer_groups: hb
            .producer_data_set
            .into_iter()
            .map(|p| p.group_name)
            .collect(),
        consumer_groups: hb
            .consumer_data_set
            .into_iter()
            .map(|c| ConsumerGroupData {
                group: c.group_name,
                consume_type: if c.consume_type == "CONSUME_ACTIVELY" {
                    ConsumeType::Pull
                } else {
                    ConsumeType::Push
                },
                message_model: if c.message_model == "BROADCASTING" {
                    MessageModel::Broadcasting
                } else {
                    MessageModel::Clustering
                },
                consume_from: if c.consume_from_where.contains("FIRST") {
                    ConsumeFrom::First
                } else {
                    ConsumeFrom::Last
                },
                subscriptions: c
                    .subscription_data_set
                    .into_iter()
                    .map(|d| Subscription {
                        topic: d.topic,
                        expression_type: if d.expression_type.eq_ignore_ascii_case("SQL92") {
                            ExpressionType::Sql
                        } else {
                            ExpressionType::Tag
                        },
                        expression: d.sub_string,
                    })
                    .collect(),
            })
            .collect(),
        language: req.language.name().to_string(),
        version: req.version.to_string(),
    };
    let retry_topics: Vec<String> = r
        .consumer_groups
        .iter()
        .filter(|g| g.message_model == MessageModel::Clustering)
        .map(|g| format!("{}{}", skylark_codec::RETRY_TOPIC_PREFIX, g.group))
        .filter(|t| skylark_codec::cmd::topic::validate_topic_name(t).is_ok())
        .collect();
    let peer = conn.peer;
    if !r.producer_groups.is_empty() {
        // Check-backs of the groups' half messages may go to this client.
        s.transaction
            .do_send(crate::transaction::ProducerHeartbeat {
                peer,
                groups: r.producer_groups.clone(),
                conn: ClientConn::RocketMq(conn.clone()),
            });
    }
    super::group::heartbeat(s.clone(), r, ClientConn::RocketMq(conn), peer).await?;
    // As RocketMQ's broker does, a clustering consumer group's retry topic
    // exists from its first accepted heartbeat, so the client finds its
    // route when it starts instead of after a send-back and its next route
    // poll (30 s). Best effort: a send-back creates it too.
    if super::replication::refuse_on_slave(&s).is_ok() {
        for t in retry_topics {
            // A refusal here (disk full, a slave) leaves the send-back to
            // create it; the heartbeat itself was accepted.
            let _ = super::group::ensure_topic_of_one_queue(&s, &t).await;
        }
    }
    Ok(req.response_to(response::SUCCESS, None))
}

/// UNREGISTER_CLIENT (35).
async fn unregister_client(
    s: Arc<Shared>,
    req: &RemotingCommand,
) -> Result<RemotingCommand, WireError> {
    let r = skylark_codec::UnregisterClientRequest {
        client_id: required(req, "clientID", "")?.to_string(),
        producer_group: field(req, "producerGroup", "").map(str::to_string),
        consumer_group: field(req, "consumerGroup", "").map(str::to_string),
    };
    super::group::unregister_client(s, r).await?;
    Ok(req.response_to(response::SUCCESS, None))
}

/// GET_CONSUMER_LIST_BY_GROUP (38): body `{"consumerIdList": [...]}`.
async fn consumer_list(
    s: Arc<Shared>,
    req: &RemotingCommand,
) -> Result<RemotingCommand, WireError> {
    let l = super::group::consumer_list(
        s,
        skylark_codec::GetConsumerListRequest {
            group: required(req, "consumerGroup", "")?.to_string(),
        },
    )
    .await?;
    let body = serde_json::json!({ "consumerIdList": l.client_ids });
    Ok(req
        .response_to(response::SUCCESS, None)
        .with_body(body.to_string()))
}

/// RocketMQ's `LockBatchRequestBody` / `UnlockBatchRequestBody`.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct LockBody {
    consumer_group: String,
    client_id: String,
    #[serde(default)]
    mq_set: Vec<MessageQueueJson>,
}

#[derive(serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct MessageQueueJson {
    topic: String,
    broker_name: String,
    queue_id: u32,
}

/// LOCK_BATCH_MQ (41) → `{"lockOKMQSet": [...]}`; UNLOCK_BATCH_MQ (42).
async fn lock_batch(s: Arc<Shared>, req: &RemotingCommand) -> Result<RemotingCommand, WireError> {
    use skylark_codec::QueueRef;
    let b: LockBody = json_body(req, "lock")?;
    let broker_name = s.config.broker_name.clone();
    let queues: Vec<QueueRef> = b
        .mq_set
        .iter()
        .map(|q| QueueRef {
            topic: q.topic.clone(),
            queue_id: q.queue_id,
        })
        .collect();
    if req.code == request::UNLOCK_BATCH_MQ {
        super::group::unlock_batch(
            s,
            skylark_codec::UnlockBatchRequest {
                group: b.consumer_group,
                client_id: b.client_id,
                queues,
            },
        )
        .await?;
        return Ok(req.response_to(response::SUCCESS, None));
    }
    let locked = super::group::lock_batch(
        s,
        skylark_codec::LockBatchRequest {
            group: b.consumer_group,
            client_id: b.client_id,
            queues,
        },
    )
    .await?;
    let set: Vec<MessageQueueJson> = locked
        .locked
        .into_iter()
        .map(|q| MessageQueueJson {
            topic: q.topic,
            broker_name: broker_name.clone(),
            queue_id: q.queue_id,
        })
        .collect();
    let body = serde_json::json!({ "lockOKMQSet": set });
    Ok(req
        .response_to(response::SUCCESS, None)
        .with_body(body.to_string()))
}

/// END_TRANSACTION (37): `commitOrRollback` 8 commits, 12 rolls back, 0
/// leaves the half message to the check-back; `commitLogOffset` and
/// `tranStateTableOffset` name the half message.
async fn end_transaction(
    s: Arc<Shared>,
    req: &RemotingCommand,
) -> Result<RemotingCommand, WireError> {
    use skylark_codec::{EndTransactionRequest, TransactionState};
    let state = match required_number::<i32>(req, "commitOrRollback")? {
        8 => TransactionState::Commit,
        12 => TransactionState::Rollback,
        0 => TransactionState::Unknown,
        other => return Err(bad(format!("commitOrRollback {other} is not 0, 8 or 12"))),
    };
    let physical: u64 = required_number(req, "commitLogOffset")?;
    let r = EndTransactionRequest {
        producer_group: required(req, "producerGroup", "")?.to_string(),
        transaction_id: field(req, "transactionId", "").unwrap_or("").to_string(),
        msg_id: skylark_codec::MessageId::new(s.store_host, physical).to_hex(),
        queue_offset: required_number(req, "tranStateTableOffset")?,
        state,
        from_check: field(req, "fromTransactionCheck", "") == Some("true"),
    };
    super::transaction::end(s, r).await?;
    Ok(req.response_to(response::SUCCESS, None))
}
