//! Message search for the dashboard, as `skylark admin message` does it: by
//! key and by time on every master hosting the topic (a slave when its
//! master does not answer), by offset message id on the group of the broker
//! named inside the id (again a slave when the master does not answer),
//! else by id as a `UNIQ_KEY` through the topic's IndexFiles (an offset id
//! whose message retention deleted is not found, naming the broker).
//! Bad input is a [`SearchError::BadRequest`] (HTTP 400), never a panic.

use std::borrow::Borrow;

use actix::Addr;
use serde::{Deserialize, Serialize};
use skylark_codec::{
    BrokerData, ErrorCode, MessageId, QueryMessageByKeyRequest, QueryMessageByTimeRequest,
    QueryMessageResponse, Rpc, ViewMessageByIdRequest, WireError,
};

use super::brokers::BrokerPool;
use crate::message_store::record;
use crate::namesrv::{GetClusterInfo, GetRouteInfo, NameServer};

/// At most this many bytes of a body are shown.
pub const BODY_SHOWN: usize = 4096;
/// At most this many messages are answered.
pub const MAX_RESULTS: u32 = 64;

/// `GET /api/messages?...`: exactly one of `key`, `id`, `time`; `topic` is
/// needed for `key` and `time`, and optional for `id`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SearchQuery {
    pub topic: Option<String>,
    pub key: Option<String>,
    pub id: Option<String>,
    /// Store time, ms since the epoch: messages stored at or after it.
    pub time: Option<i64>,
    /// Results wanted (default and maximum [`MAX_RESULTS`]).
    pub max: Option<u32>,
}

/// Why a search has no answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "error")]
pub enum SearchError {
    /// The query is wrong (400).
    BadRequest(String),
    /// Nothing matches (404).
    NotFound(String),
    /// No broker could answer (502).
    Unavailable(String),
}

/// A message as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessageView {
    pub topic: String,
    pub broker: String,
    pub queue_id: u32,
    pub queue_offset: u64,
    pub msg_id: String,
    pub born_timestamp: i64,
    pub store_timestamp: i64,
    pub reconsume_times: u32,
    /// Every property (tags, keys, unique id, user properties).
    pub properties: Vec<(String, String)>,
    /// The body as text (lossy UTF-8), at most [`BODY_SHOWN`] bytes of it.
    pub body: String,
    pub body_size: usize,
    pub body_truncated: bool,
}

/// Decodes a query answer's records.
pub fn views(resp: &QueryMessageResponse, broker: &str) -> Result<Vec<MessageView>, String> {
    let mut out = Vec::new();
    let buf = &resp.records[..];
    let mut pos = 0;
    while pos < buf.len() {
        let (d, len) = record::decode(&buf[pos..])
            .map_err(|e| format!("{broker}: record at byte {pos}: {e}"))?;
        if len == 0 {
            return Err(format!("{broker}: zero-length record at byte {pos}"));
        }
        pos += len;
        let shown = &d.body[..d.body.len().min(BODY_SHOWN)];
        out.push(MessageView {
            topic: d.topic.to_string(),
            broker: broker.to_string(),
            queue_id: d.queue_id,
            queue_offset: d.queue_offset,
            msg_id: MessageId::new(d.store_host, d.physical_offset).to_hex(),
            born_timestamp: d.born_timestamp,
            store_timestamp: d.store_timestamp,
            reconsume_times: d.reconsume_times,
            properties: d
                .properties()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: String::from_utf8_lossy(shown).into_owned(),
            body_size: d.body.len(),
            body_truncated: shown.len() < d.body.len(),
        });
    }
    Ok(out)
}

fn bad(m: impl Into<String>) -> SearchError {
    SearchError::BadRequest(m.into())
}

fn topic_of(q: &SearchQuery, what: &str) -> Result<String, SearchError> {
    let t = q
        .topic
        .clone()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| bad(format!("a search by {what} needs a topic")))?;
    skylark_codec::validate_topic_name(&t).map_err(bad)?;
    Ok(t)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Runs the search.
pub async fn run(
    ns: Addr<NameServer>,
    pool: BrokerPool,
    q: SearchQuery,
) -> Result<Vec<MessageView>, SearchError> {
    let max = q.max.unwrap_or(MAX_RESULTS).clamp(1, MAX_RESULTS);
    let given = [q.key.is_some(), q.id.is_some(), q.time.is_some()];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(bad("give exactly one of key, id, time"));
    }
    let mut found = if let Some(key) = q.key.clone().filter(|k| !k.is_empty()) {
        let topic = topic_of(&q, "key")?;
        let req = QueryMessageByKeyRequest {
            topic: topic.clone(),
            key,
            begin_ms: 0,
            end_ms: now_ms(),
            max,
        };
        on_topic(&ns, &pool, &topic, &req).await?
    } else if let Some(time) = q.time {
        let topic = topic_of(&q, "time")?;
        let req = QueryMessageByTimeRequest {
            topic: topic.clone(),
            timestamp_ms: time,
            max_per_queue: max,
        };
        on_topic(&ns, &pool, &topic, &req).await?
    } else if let Some(id) = q.id.clone().filter(|i| !i.is_empty()) {
        by_id(&ns, &pool, &q, &id, max).await?
    } else {
        return Err(bad("key and id must not be empty"));
    };
    if found.is_empty() {
        return Err(SearchError::NotFound("no message matches".into()));
    }
    found.sort_by_key(|m| std::cmp::Reverse(m.store_timestamp));
    found.truncate(max as usize);
    Ok(found)
}

/// `req` on a reader (master, else a slave) of every group hosting `topic`.
async fn on_topic<R>(
    ns: &Addr<NameServer>,
    pool: &BrokerPool,
    topic: &str,
    req: &R,
) -> Result<Vec<MessageView>, SearchError>
where
    R: skylark_codec::Rpc<Response = QueryMessageResponse>,
{
    let route = ns
        .send(GetRouteInfo(topic.to_string()))
        .await
        .map_err(|e| SearchError::Unavailable(format!("nameserver: {e}")))?
        .ok_or_else(|| SearchError::NotFound(format!("topic '{topic}' not found")))?;
    let mut found = Vec::new();
    let mut failures = Vec::new();
    for b in &route.brokers {
        match read_group::<R, _>(pool, b, |_| req).await {
            Ok((addr, resp)) => {
                found.extend(views(&resp, &addr).map_err(SearchError::Unavailable)?)
            }
            Err(e) => failures.push(e.text),
        }
    }
    if found.is_empty() && !failures.is_empty() {
        return Err(SearchError::Unavailable(failures.join("; ")));
    }
    Ok(found)
}

/// Why no member of a group answered [`read_group`].
struct GroupFailure {
    /// Each member's failure, for an operator.
    text: String,
    /// A member's `MessageDeleted` answer (retention deleted the message
    /// an offset id names), with the broker's address.
    deleted: Option<(String, WireError)>,
}

/// `req(addr)` on the members of group `b` in id order (its master, then
/// its slaves) until one answers: that member's address and answer, or
/// why none did.
async fn read_group<R: Rpc, Q: Borrow<R>>(
    pool: &BrokerPool,
    b: &BrokerData,
    req: impl Fn(&str) -> Q,
) -> Result<(String, R::Response), GroupFailure> {
    let mut failures = Vec::new();
    let mut deleted = None;
    for addr in b.addrs.values() {
        match pool.call_answer(addr, req(addr).borrow()).await {
            Ok(Ok(resp)) => return Ok((addr.clone(), resp)),
            Ok(Err(w)) => {
                failures.push(format!(
                    "{addr}: {}",
                    skylark_codec::ProtocolError::Remote(w.clone())
                ));
                if w.code == ErrorCode::MessageDeleted {
                    deleted.get_or_insert((addr.clone(), w));
                }
            }
            Err(e) => failures.push(e),
        }
    }
    let text = if failures.is_empty() {
        format!("broker group '{}' has no member", b.broker_name)
    } else {
        format!(
            "broker group '{}' unreachable: {}",
            b.broker_name,
            failures.join("; ")
        )
    };
    Err(GroupFailure { text, deleted })
}

/// An offset message id read on the group of the broker it names (a slave
/// when the master does not answer: it holds the same CommitLog at the
/// same offsets, and answers ids naming itself), else the id as a
/// `UNIQ_KEY` on `topic`. A group none of whose members answers is
/// [`SearchError::Unavailable`], not "not found"; one that answers
/// `MessageDeleted` (retention deleted the message) is "not found" as an
/// offset id.
async fn by_id(
    ns: &Addr<NameServer>,
    pool: &BrokerPool,
    q: &SearchQuery,
    id: &str,
    max: u32,
) -> Result<Vec<MessageView>, SearchError> {
    if !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad(format!(
            "bad message id '{id}': expected an offset message id or a UNIQ_KEY (hex digits)"
        )));
    }
    let mut deleted = None;
    if let Ok(mid) = MessageId::from_hex(id) {
        let addr = mid.addr.to_string();
        let info = ns
            .send(GetClusterInfo)
            .await
            .map_err(|e| SearchError::Unavailable(format!("nameserver: {e}")))?;
        let group = info
            .brokers
            .values()
            .find(|b| b.addrs.values().any(|a| *a == addr));
        if let Some(b) = group {
            let on = |member: &str| ViewMessageByIdRequest {
                msg_id: member.parse().map_or_else(
                    |_| id.to_string(),
                    |m| MessageId::new(m, mid.physical_offset).to_hex(),
                ),
            };
            match read_group::<ViewMessageByIdRequest, _>(pool, b, on).await {
                Ok((member, resp)) => {
                    let found = views(&resp, &member).map_err(SearchError::Unavailable)?;
                    if !found.is_empty() {
                        return Ok(found);
                    }
                }
                // Retention deleted it: not found, as an offset id (it
                // may still be a UNIQ_KEY).
                Err(GroupFailure {
                    deleted: Some((addr, w)),
                    ..
                }) => deleted = Some(format!("broker {addr} no longer holds it: {}", w.message)),
                Err(e) => {
                    return Err(SearchError::Unavailable(format!(
                        "message '{id}': {}",
                        e.text
                    )))
                }
            }
        }
    }
    if q.topic.as_deref().unwrap_or("").is_empty() {
        return Err(SearchError::NotFound(match deleted {
            Some(why) => format!("message '{id}' not found: {why}"),
            None => format!(
                "message '{id}' not found as an offset message id; give a topic to look it up as a UNIQ_KEY"
            ),
        }));
    }
    let topic = topic_of(q, "unique key")?;
    let req = QueryMessageByKeyRequest {
        topic: topic.clone(),
        key: id.to_string(),
        begin_ms: 0,
        end_ms: now_ms(),
        max,
    };
    let found = on_topic(ns, pool, &topic, &req).await?;
    Ok(found
        .into_iter()
        .filter(|m| {
            m.properties
                .iter()
                .any(|(k, v)| k == record::PROPERTY_UNIQ_KEY && v.eq_ignore_ascii_case(id))
        })
        .collect())
}
