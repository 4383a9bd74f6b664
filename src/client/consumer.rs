//! [`PullConsumer`]: the application pulls queues explicitly.
//!
//! RocketMQ's `DefaultMQPullConsumer`: list a topic's queues, pull from an
//! offset (long polling: the broker parks the request up to `suspend` and
//! answers as soon as a message arrives), keep offsets yourself or commit
//! them to the broker for the consumer group. A `Send + Clone` handle on a
//! [`ClientInstance`]; the actor supplies routes and connections, the handle
//! makes the calls.

use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use skylark_codec::rpc::RpcClient;
use skylark_codec::{
    parse_tag_expression, CommitOffsetRequest, ConsumeFrom, ConsumeType, ConsumerGroupData,
    DamagedRecord, ExpressionType, GetQueueOffsetsRequest, HeartbeatRequest, MessageModel,
    PullRequest, PullStatus, QueryOffsetRequest, QueueOffsets, Subscription,
};

use super::config::ClientConfig;
use super::error::{ClientError, Result};
use super::instance::{
    ClientInstance, ConnectedBrokers, GetConnection, GetRoute, ReadsFromSlave, SuggestSlave,
};
use super::message::{decode_records, ReceivedMessage};
use super::namesrv::NameServerClient;
use super::route::{MessageQueue, TopicRoute};

/// Largest answer a pull asks for.
const MAX_PULL_BYTES: u32 = 8 * 1024 * 1024;

/// What one pull returned.
#[derive(Debug, Clone)]
pub struct PullResult {
    /// Found, nothing new, nothing matched, or an illegal offset.
    pub status: PullStatus,
    /// Offset to pull from next (already past filtered-out messages).
    pub next_offset: u64,
    /// The queue's min offset when the broker answered.
    pub min_offset: u64,
    /// The queue's max offset (one past the last message).
    pub max_offset: u64,
    /// Matching messages, in queue-offset order.
    pub messages: Vec<ReceivedMessage>,
    /// Messages of the pulled range the broker found damaged (CRC, magic or
    /// size check failed) and did not send; `next_offset` is already past
    /// them, so pulling on from it moves on. Report them: they are lost
    /// unless restored from the broker's quarantine or a replica.
    pub damaged: Vec<DamagedRecord>,
}

/// A pull consumer of one group; clone it freely.
#[derive(Clone)]
pub struct PullConsumer {
    instance: Addr<ClientInstance>,
    namesrv: NameServerClient,
    config: Arc<ClientConfig>,
    group: Arc<str>,
}

impl std::fmt::Debug for PullConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PullConsumer({})", self.group)
    }
}

impl PullConsumer {
    /// Starts a client instance (on the current arbiter) and returns a pull
    /// consumer of `group` on it. Must run inside an actix System.
    pub fn start(config: ClientConfig, group: &str) -> Result<PullConsumer> {
        skylark_codec::validate_group_name(group).map_err(ClientError::InvalidArgument)?;
        let (instance, namesrv, config) = ClientInstance::start_with(config)?;
        Ok(PullConsumer {
            instance,
            namesrv,
            config,
            group: Arc::from(group),
        })
    }

    /// The consumer group.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The client settings.
    pub(crate) fn config(&self) -> &Arc<ClientConfig> {
        &self.config
    }

    /// The NameServer client behind this handle.
    pub fn namesrv(&self) -> &NameServerClient {
        &self.namesrv
    }

    /// The route of `topic` (asked of the NameServer again when `refresh`).
    async fn route(&self, topic: &str, refresh: bool) -> Result<Arc<TopicRoute>> {
        self.instance
            .send(GetRoute {
                topic: topic.to_string(),
                refresh,
            })
            .await
            .map_err(|_| ClientError::Stopped)?
    }

    /// The readable queues of `topic`, freshly asked of the NameServer.
    pub async fn queues(&self, topic: &str) -> Result<Vec<MessageQueue>> {
        // As the producer and the push consumer: a name no topic can have
        // is refused as such, not reported as a topic not found.
        skylark_codec::validate_topic_name(topic).map_err(ClientError::InvalidArgument)?;
        let route = self.route(topic, true).await?;
        if route.read_queues.is_empty() {
            return Err(route.no_queue(false));
        }
        Ok(route.read_queues.clone())
    }

    /// Every address (masters and slaves) of the broker groups serving
    /// `topic`: where a consumer's heartbeats go, so a slave knows the
    /// group's members while its master is down.
    pub async fn broker_group_addrs(&self, topic: &str) -> Result<Vec<String>> {
        let route = self.route(topic, false).await?;
        let mut addrs: Vec<String> = route
            .data
            .brokers
            .iter()
            .flat_map(|b| b.addrs.values().cloned())
            .collect();
        addrs.sort();
        addrs.dedup();
        Ok(addrs)
    }

    /// Calls `req` for `queue` on its broker; when that broker cannot be
    /// reached (refused, closed, timed out), the other members of the same
    /// broker group are tried, lowest id first: a consumer keeps reading
    /// (and committing) on a slave while its master is down.
    pub(crate) async fn call_group<R>(
        &self,
        queue: &MessageQueue,
        req: &R,
        timeout: Duration,
    ) -> Result<R::Response>
    where
        R: skylark_codec::Rpc,
    {
        self.call_group_ordered(queue, req, timeout, false).await
    }

    /// A pull through [`call_group`](Self::call_group), from a slave first
    /// while the broker group suggests it (the consumer is far behind).
    async fn pull_from_group(
        &self,
        queue: &MessageQueue,
        req: &PullRequest,
        timeout: Duration,
    ) -> Result<skylark_codec::PullResponse> {
        // The client instance owns the preference (per queue, shared by
        // every clone of this handle).
        let prefer_slave = self
            .instance
            .send(ReadsFromSlave(queue.clone()))
            .await
            .map_err(|_| ClientError::Stopped)?;
        let resp = self
            .call_group_ordered(queue, req, timeout, prefer_slave)
            .await?;
        if resp.suggest_slave != prefer_slave {
            self.instance.do_send(SuggestSlave {
                queue: queue.clone(),
                suggest: resp.suggest_slave,
            });
        }
        Ok(resp)
    }

    /// [`call_group`](Self::call_group) trying the group's slaves (lowest id
    /// first) before its master when `prefer_slave`.
    async fn call_group_ordered<R>(
        &self,
        queue: &MessageQueue,
        req: &R,
        timeout: Duration,
        prefer_slave: bool,
    ) -> Result<R::Response>
    where
        R: skylark_codec::Rpc,
    {
        let mut addrs = vec![queue.broker_addr.clone()];
        if let Ok(route) = self.route(&queue.topic, false).await {
            let group = route
                .data
                .brokers
                .iter()
                .find(|b| b.broker_name == queue.broker_name);
            if let Some(b) = group {
                if prefer_slave {
                    let slaves: Vec<String> = b
                        .addrs
                        .iter()
                        .filter(|(id, _)| **id > 0)
                        .map(|(_, a)| a.clone())
                        .collect();
                    if !slaves.is_empty() {
                        addrs = slaves;
                    }
                }
                for a in b.addrs.values() {
                    if !addrs.contains(a) {
                        addrs.push(a.clone());
                    }
                }
            }
        }
        let mut last = None;
        for addr in &addrs {
            let res = match self.conn(addr).await {
                Ok(client) => client
                    .call_timeout(req, timeout)
                    .await
                    .map_err(|e| ClientError::from_call(addr, Some(&queue.topic), e)),
                Err(e) => Err(e),
            };
            match res {
                Err(e @ ClientError::Connection { .. }) => last = Some(e),
                other => return other,
            }
        }
        Err(last.unwrap_or(ClientError::NoQueue {
            topic: queue.topic.clone(),
            what: "readable",
        }))
    }

    /// A connection to a broker address (shared with the client instance).
    pub(crate) async fn conn(&self, addr: &str) -> Result<RpcClient> {
        self.instance
            .send(GetConnection {
                addr: addr.to_string(),
            })
            .await
            .map_err(|_| ClientError::Stopped)?
    }

    /// Pulls up to `max` messages (at least 1) from `offset`. `subscription` is a tag
    /// expression (`"TagA || TagB"`, `None` or `"*"` = all); the broker
    /// filters by tag hash and this method re-checks the exact tag.
    /// `suspend` > 0 makes the broker hold the request until a message
    /// arrives or the time passes; over
    /// [`MAX_DURATION`](super::MAX_DURATION) it is refused
    /// ([`ClientError::InvalidArgument`]).
    pub async fn pull(
        &self,
        queue: &MessageQueue,
        offset: u64,
        max: u32,
        subscription: Option<&str>,
        suspend: Duration,
    ) -> Result<PullResult> {
        self.pull_and_commit(queue, offset, max, subscription, suspend, None)
            .await
    }

    /// [`pull`](Self::pull) that also commits `commit_offset` for the group
    /// in the same request.
    pub async fn pull_and_commit(
        &self,
        queue: &MessageQueue,
        offset: u64,
        max: u32,
        subscription: Option<&str>,
        suspend: Duration,
        commit_offset: Option<u64>,
    ) -> Result<PullResult> {
        let tags = match subscription {
            Some(expr) => parse_tag_expression(expr)
                .map_err(|e| ClientError::InvalidArgument(e.to_string()))?,
            None => None,
        };
        let filter = PullFilter { tags, sql: None };
        self.pull_filtered(queue, offset, max, filter, suspend, commit_offset)
            .await
    }

    /// Pulls with a SQL-92 property filter (`sql`, e.g. `"TAGS IN ('A')
    /// AND a > 5"`): the broker evaluates it, so only matching messages
    /// arrive; a malformed expression is refused with
    /// [`ClientError::InvalidArgument`] before anything is sent.
    pub async fn pull_sql_and_commit(
        &self,
        queue: &MessageQueue,
        offset: u64,
        max: u32,
        sql: &str,
        suspend: Duration,
        commit_offset: Option<u64>,
    ) -> Result<PullResult> {
        skylark_codec::filter::validate(sql)
            .map_err(|e| ClientError::InvalidArgument(e.to_string()))?;
        let filter = PullFilter {
            tags: None,
            sql: Some(sql.to_string()),
        };
        self.pull_filtered(queue, offset, max, filter, suspend, commit_offset)
            .await
    }

    /// One pull request with its broker-side filter.
    async fn pull_filtered(
        &self,
        queue: &MessageQueue,
        offset: u64,
        max: u32,
        filter: PullFilter,
        suspend: Duration,
        commit_offset: Option<u64>,
    ) -> Result<PullResult> {
        // The wait is `suspend` plus the request timeout: a longer one
        // would overflow.
        super::config::check_duration("PullConsumer::pull", "suspend", suspend, true)?;
        let req = PullRequest {
            consumer_group: self.group.to_string(),
            topic: queue.topic.clone(),
            queue_id: queue.queue_id,
            queue_offset: offset,
            max_messages: max.max(1),
            max_bytes: MAX_PULL_BYTES,
            suspend_timeout_ms: u64::try_from(suspend.as_millis()).unwrap_or(u64::MAX),
            subscription: filter.tags.as_ref().map(|t| t.join(" || ")),
            sql: filter.sql,
            commit_offset,
        };
        let resp = self
            .pull_from_group(queue, &req, suspend + self.config.request_timeout)
            .await?;
        // Tags are checked on this side too (see `decode_records`).
        let messages = decode_records(&resp.records, &queue.broker_addr, filter.tags.as_deref())?;
        Ok(PullResult {
            status: resp.status,
            next_offset: resp.next_offset,
            min_offset: resp.min_offset,
            max_offset: resp.max_offset,
            messages,
            damaged: resp.damaged,
        })
    }

    /// The first offset of `queue` stored at or after `timestamp_ms` (its
    /// max offset if none is): where `consume --from MILLIS` starts.
    pub async fn offset_by_time(&self, queue: &MessageQueue, timestamp_ms: i64) -> Result<u64> {
        let req = skylark_codec::SearchOffsetByTimeRequest {
            topic: queue.topic.clone(),
            queue_id: queue.queue_id,
            timestamp_ms,
        };
        let client = self.conn(&queue.broker_addr).await?;
        client
            .call(&req)
            .await
            .map(|r| r.offset)
            .map_err(|e| ClientError::from_call(&queue.broker_addr, Some(&queue.topic), e))
    }

    /// The group's committed offset for `queue` (`None` if never committed).
    pub async fn query_offset(&self, queue: &MessageQueue) -> Result<Option<u64>> {
        let req = QueryOffsetRequest {
            group: self.group.to_string(),
            topic: queue.topic.clone(),
            queue_id: queue.queue_id,
        };
        match self
            .call_group(queue, &req, self.config.request_timeout)
            .await
        {
            Ok(r) => Ok(r.offset),
            Err(ClientError::Remote { error, .. })
                if error.code == skylark_codec::ErrorCode::OffsetNotFound =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Commits the group's offset for `queue` (the next offset to consume).
    pub async fn commit_offset(&self, queue: &MessageQueue, offset: u64) -> Result<()> {
        let req = CommitOffsetRequest {
            group: self.group.to_string(),
            topic: queue.topic.clone(),
            queue_id: queue.queue_id,
            offset,
        };
        self.call_group(queue, &req, self.config.request_timeout)
            .await
            .map(|_| ())
    }

    /// The queue's min and max offsets.
    pub async fn queue_offsets(&self, queue: &MessageQueue) -> Result<QueueOffsets> {
        let req = GetQueueOffsetsRequest {
            topic: queue.topic.clone(),
            queue_id: queue.queue_id,
        };
        self.call_group(queue, &req, self.config.request_timeout)
            .await
    }

    /// Sends a heartbeat naming this group and its subscriptions to every
    /// broker this client is connected to (and to `extra` addresses).
    pub async fn heartbeat(
        &self,
        subscriptions: &[(String, Option<String>)],
        model: MessageModel,
        extra: &[String],
    ) -> Result<()> {
        let subs = subscriptions
            .iter()
            .map(|(topic, expr)| Subscription {
                topic: topic.clone(),
                expression_type: ExpressionType::Tag,
                expression: expr.clone().unwrap_or_else(|| "*".to_string()),
            })
            .collect();
        let mut addrs = self
            .instance
            .send(ConnectedBrokers)
            .await
            .map_err(|_| ClientError::Stopped)?;
        addrs.extend(extra.iter().cloned());
        self.send_heartbeat(subs, model, addrs, None).await
    }

    /// The brokers this client is connected to (none asked for).
    pub(crate) async fn connected_brokers(&self) -> Vec<String> {
        self.instance
            .send(ConnectedBrokers)
            .await
            .unwrap_or_default()
    }

    /// [`heartbeat`](Self::heartbeat) with one SQL-92 subscription: the
    /// broker checks the expression when the subscription is made and
    /// refuses a malformed one (`InvalidFilter`).
    pub async fn heartbeat_sql(&self, topic: &str, sql: &str, model: MessageModel) -> Result<()> {
        let subs = vec![Subscription {
            topic: topic.to_string(),
            expression_type: ExpressionType::Sql,
            expression: sql.to_string(),
        }];
        // Every broker serving the topic checks the subscription.
        let addrs = self
            .queues(topic)
            .await?
            .into_iter()
            .map(|q| q.broker_addr)
            .collect();
        self.send_heartbeat(subs, model, addrs, Some(topic)).await
    }

    /// Sends one pull-consumer heartbeat with `subscriptions` to `addrs`.
    async fn send_heartbeat(
        &self,
        subscriptions: Vec<Subscription>,
        model: MessageModel,
        mut addrs: Vec<String>,
        topic: Option<&str>,
    ) -> Result<()> {
        let req = HeartbeatRequest {
            client_id: self.config.client_id.clone(),
            language: crate::client::CLIENT_LANGUAGE.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            producer_groups: Vec::new(),
            consumer_groups: vec![ConsumerGroupData {
                group: self.group.to_string(),
                consume_type: ConsumeType::Pull,
                message_model: model,
                consume_from: ConsumeFrom::First,
                subscriptions,
            }],
        };
        addrs.sort();
        addrs.dedup();
        for addr in addrs {
            let client = self.conn(&addr).await?;
            client
                .call(&req)
                .await
                .map_err(|e| ClientError::from_call(&addr, topic, e))?;
        }
        Ok(())
    }
}

/// The broker-side filter of one pull: tags (an `||` expression on the
/// wire) or SQL-92.
struct PullFilter {
    tags: Option<Vec<String>>,
    sql: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A name no topic can have is refused before anything is asked (it
    /// was answered "topic not found"), as the producer refuses it.
    #[actix_rt::test]
    async fn an_illegal_topic_name_is_an_invalid_argument() {
        let c = PullConsumer::start(ClientConfig::new("127.0.0.1:1"), "g").unwrap();
        let e = c.queues("a b").await.unwrap_err();
        assert!(matches!(e, ClientError::InvalidArgument(_)), "{e:?}");
    }

    /// A pull's `suspend` over MAX_DURATION is refused, naming it: the
    /// wait, `suspend` plus the request timeout, overflowed (a panic).
    #[actix_rt::test]
    async fn a_pull_suspend_is_bounded() {
        let c = PullConsumer::start(ClientConfig::new("127.0.0.1:1"), "g").unwrap();
        let q = MessageQueue {
            topic: "T".into(),
            broker_name: "b".into(),
            broker_addr: "127.0.0.1:1".into(),
            queue_id: 0,
        };
        for d in super::super::config::tests::OVERLONG {
            match c.pull(&q, 0, 1, None, d).await {
                Err(ClientError::InvalidArgument(e)) => {
                    assert!(e.contains("PullConsumer::pull::suspend"), "{e}")
                }
                other => panic!("{d:?}: {other:?}"),
            }
        }
    }
}
