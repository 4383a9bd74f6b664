//! The broker's request handlers: one module per command family
//! (RocketMQ's `broker/processor/*Processor`).
//!
//! [`BrokerService`] is what each [`Connection`](crate::remoting::Connection)
//! calls for a request frame. It holds only addresses of the owning actors
//! and immutable config, so it is cloned into every connection; all state
//! changes are messages to the owners (Broker, TopicQueue, Storage,
//! ConsumerOffsets).

mod admin;
mod coalesce;
mod delay;
mod group;
mod offset;
mod pull;
mod query;
mod replication;
pub mod rocketmq;
mod runtime;
mod send;
mod transaction;

use std::net::SocketAddr;
use std::sync::Arc;

use actix::Addr;
use bytes::Bytes;
use futures::future::LocalBoxFuture;
use skylark_codec::{Command, RawFrame, WireError};

use crate::broker::{Broker, EnsureTopic, TopicsView};
use crate::config::BrokerConfig;
use crate::consumer_offsets::ConsumerOffsets;
use crate::group_registry::{ConsumerGroups, GroupsView};
use crate::live_settings::LiveSettings;
use crate::remoting::connection::AnswerWithTail;
use crate::remoting::{wire, ConnInfo, Service};
use crate::storage::Storage;
use crate::topic_queue::TopicHandle;
use crate::transaction::Transaction;

/// Everything a request handler may reach.
pub struct Shared {
    pub config: Arc<BrokerConfig>,
    /// Settings changeable at run time (owned by the Broker actor).
    pub live: Arc<LiveSettings>,
    pub broker: Addr<Broker>,
    pub storage: Addr<Storage>,
    pub offsets: Addr<ConsumerOffsets>,
    pub topics: TopicsView,
    /// Group name → its ConsumerGroup actor (written by `group_manager`).
    pub groups: GroupsView,
    pub group_manager: Addr<ConsumerGroups>,
    pub replicator: Addr<crate::replicator::Replicator>,
    /// This broker's address as written into message ids.
    pub store_host: SocketAddr,
    /// The Scheduler (delayed messages) and its settings.
    pub scheduler: crate::scheduler::SchedulerHandle,
    /// Half messages and their outcomes.
    pub transaction: Addr<Transaction>,
    /// Request-path metrics (latency per command, pulls per group).
    pub metrics: Arc<crate::metrics::broker::BrokerMetrics>,
    /// Consumer groups' settings (updateSubGroup) and the clients known
    /// from heartbeats (operator commands).
    pub sub_groups: crate::subscription_groups::SubscriptionGroupsHandle,
    pub clients: Addr<crate::client_registry::ClientRegistry>,
    /// Access control, checked by each connection (None: ACL off).
    pub acl: Option<crate::acl::Acl>,
}

impl Shared {
    /// The topic's handle (its TopicQueue and config snapshot);
    /// `auto_create` applies on a send only.
    pub async fn topic_queue(
        &self,
        topic: &str,
        auto_create: bool,
    ) -> Result<TopicHandle, WireError> {
        if let Some(a) = self.topics.get(topic) {
            return Ok(a.clone());
        }
        self.broker
            .send(EnsureTopic {
                name: topic.to_string(),
                auto_create,
            })
            .await
            .map_err(crate::mailbox_error)?
    }

    /// The live config of an existing topic, asked of its TopicQueue.
    pub async fn topic_config(&self, topic: &str) -> Result<skylark_codec::TopicConfig, WireError> {
        let tq = self.topic_queue(topic, false).await?;
        tq.addr
            .send(crate::topic_queue::GetTopicStats)
            .await
            .map_err(crate::mailbox_error)
    }

    /// How long a send waits for its fsync under sync flush.
    pub fn sync_flush_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.config.store.sync_flush_timeout_ms)
    }
}

/// The broker's [`Service`]: routes each command to its handler.
#[derive(Clone)]
pub struct BrokerService {
    shared: Arc<Shared>,
}

impl BrokerService {
    pub fn new(shared: Shared) -> Self {
        BrokerService {
            shared: Arc::new(shared),
        }
    }
}

impl Service for BrokerService {
    fn call(
        &self,
        cmd: Command,
        frame: RawFrame,
        conn: &ConnInfo,
    ) -> LocalBoxFuture<'static, Option<Bytes>> {
        self.route(cmd, frame, conn)
    }

    fn times_requests(&self) -> bool {
        true
    }

    fn observe(&self, cmd: Command, elapsed: std::time::Duration) {
        self.shared
            .metrics
            .observe(cmd, elapsed.as_secs_f64() * 1000.0);
    }

    fn acl(&self) -> Option<crate::acl::Acl> {
        self.shared.acl.clone()
    }
}

impl BrokerService {
    fn route(
        &self,
        cmd: Command,
        frame: RawFrame,
        conn: &ConnInfo,
    ) -> LocalBoxFuture<'static, Option<Bytes>> {
        let s = self.shared.clone();
        let header = frame.header;
        let peer = conn.peer;
        transaction::note_client(&s, cmd, &frame, conn);
        // The connection's address is cloned only where it is kept (a clone
        // and its drop are two atomic operations on every request).
        // Each command's future is boxed on its own: one async block over
        // every arm would make every request allocate the largest one.
        // `call!(f)`: decode the request, answer `f(shared, request)`.
        macro_rules! call {
            ($f:path) => {
                boxed(wire::dispatch(frame, move |r| $f(s, r)))
            };
        }
        match cmd {
            Command::SendMessage => {
                boxed(wire::dispatch(frame, move |r| send::send_one(s, r, peer)))
            }
            Command::SendBatch => {
                boxed(wire::dispatch(frame, move |r| send::send_batch(s, r, peer)))
            }
            Command::PullMessage => {
                let addr = conn.addr.clone();
                boxed(wire::dispatch_with_tail(
                    frame,
                    move |head, tail| addr.do_send(AnswerWithTail { head, tail }),
                    move |r| pull::pull(s, r),
                ))
            }
            Command::QueryConsumerOffset => call!(offset::query),
            Command::UpdateConsumerOffset => call!(offset::commit),
            Command::GetQueueOffsets => call!(offset::queue_offsets),
            Command::Heartbeat => {
                let conn_addr = conn.addr.clone();
                boxed(wire::dispatch(frame, move |r| {
                    group::heartbeat(s, r, crate::remoting::ClientConn::Skylark(conn_addr), peer)
                }))
            }
            Command::UnregisterClient => call!(group::unregister_client),
            Command::CreateTopic => call!(admin::create_topic),
            Command::DeleteTopic => call!(admin::delete_topic),
            Command::GetTopicStats => call!(admin::topic_stats),
            // Consumer groups: add here.
            Command::GetConsumerList => call!(group::consumer_list),
            Command::LockBatchMq => call!(group::lock_batch),
            Command::UnlockBatchMq => call!(group::unlock_batch),
            Command::ResetOffset => call!(group::reset_offset),
            Command::GetConsumeProgress => call!(group::consume_progress),
            Command::GetGroupList => call!(group::group_list),
            Command::DeleteGroup => call!(group::delete_group),
            Command::ConsumerSendBack => {
                boxed(wire::dispatch(frame, move |r| group::send_back(s, r, peer)))
            }
            // Operator commands (75-79).
            Command::UpdateSubscriptionGroup => call!(group::update_sub_group),
            Command::GetSubscriptionGroup => call!(group::get_sub_group),
            Command::GetConsumerConnections => call!(group::consumer_connections),
            Command::GetProducerConnections => call!(group::producer_connections),
            Command::GetBrokerRuntimeStatus => call!(admin::runtime_status),
            // Queries and admin: add here.
            Command::SearchOffsetByTime => call!(query::search_offset_by_time),
            Command::QueryMessageByKey => call!(query::by_key),
            Command::ViewMessageById => call!(query::by_id),
            Command::QueryMessageByTime => call!(query::by_time),
            Command::GetBrokerConfig => call!(query::get_config),
            Command::SetBrokerConfig => call!(query::set_config),
            Command::GetBrokerRuntime => call!(runtime::runtime),
            Command::GetScheduleStats => boxed(wire::dispatch(
                frame,
                move |_: skylark_codec::GetScheduleStatsRequest| {
                    let sched = s.scheduler.addr.clone();
                    async move {
                        sched
                            .send(crate::scheduler::GetScheduleStats)
                            .await
                            .map_err(crate::mailbox_error)
                    }
                },
            )),
            Command::EndTransaction => call!(transaction::end),
            Command::SyncMetadata => call!(replication::sync_metadata),
            Command::GetReplicationStatus => call!(replication::status),
            other => boxed(futures::future::ready(wire::not_served(
                &header, other, "broker",
            ))),
        }
    }
}

fn boxed(
    f: impl std::future::Future<Output = Option<Bytes>> + 'static,
) -> LocalBoxFuture<'static, Option<Bytes>> {
    Box::pin(f)
}
