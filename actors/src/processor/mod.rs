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
        match cmd {
            Command::SendMessage => {
                boxed(wire::dispatch(frame, move |r| send::send_one(s, r, peer)))
            }
            Command::SendBatch => {
                boxed(wire::dispatch(frame, move |r| send::send_batch(s, r, peer)))
            }
            Command::PullMessage => boxed(wire::dispatch_with_tail(
                frame,
                conn.addr.clone(),
                move |r| pull::pull(s, r),
            )),
            Command::QueryConsumerOffset => {
                boxed(wire::dispatch(frame, move |r| offset::query(s, r)))
            }
            Command::UpdateConsumerOffset => {
                boxed(wire::dispatch(frame, move |r| offset::commit(s, r)))
            }
            Command::GetQueueOffsets => {
                boxed(wire::dispatch(frame, move |r| offset::queue_offsets(s, r)))
            }
            Command::Heartbeat => {
                let conn_addr = conn.addr.clone();
                boxed(wire::dispatch(frame, move |r| {
                    group::heartbeat(s, r, conn_addr, peer)
                }))
            }
            Command::UnregisterClient => boxed(wire::dispatch(frame, move |r| {
                group::unregister_client(s, r)
            })),
            Command::CreateTopic => {
                boxed(wire::dispatch(frame, move |r| admin::create_topic(s, r)))
            }
            Command::DeleteTopic => {
                boxed(wire::dispatch(frame, move |r| admin::delete_topic(s, r)))
            }
            Command::GetTopicStats => {
                boxed(wire::dispatch(frame, move |r| admin::topic_stats(s, r)))
            }
            // Consumer groups: add here.
            Command::GetConsumerList => {
                boxed(wire::dispatch(frame, move |r| group::consumer_list(s, r)))
            }
            Command::LockBatchMq => boxed(wire::dispatch(frame, move |r| group::lock_batch(s, r))),
            Command::UnlockBatchMq => {
                boxed(wire::dispatch(frame, move |r| group::unlock_batch(s, r)))
            }
            Command::ResetOffset => {
                boxed(wire::dispatch(frame, move |r| group::reset_offset(s, r)))
            }
            Command::GetConsumeProgress => boxed(wire::dispatch(frame, move |r| {
                group::consume_progress(s, r)
            })),
            Command::GetGroupList => boxed(wire::dispatch(frame, move |r| group::group_list(s, r))),
            Command::DeleteGroup => {
                boxed(wire::dispatch(frame, move |r| group::delete_group(s, r)))
            }
            Command::ConsumerSendBack => {
                boxed(wire::dispatch(frame, move |r| group::send_back(s, r, peer)))
            }
            // Operator commands (75-79).
            Command::UpdateSubscriptionGroup => boxed(wire::dispatch(frame, move |r| {
                group::update_sub_group(s, r)
            })),
            Command::GetSubscriptionGroup => {
                boxed(wire::dispatch(frame, move |r| group::get_sub_group(s, r)))
            }
            Command::GetConsumerConnections => boxed(wire::dispatch(frame, move |r| {
                group::consumer_connections(s, r)
            })),
            Command::GetProducerConnections => boxed(wire::dispatch(frame, move |r| {
                group::producer_connections(s, r)
            })),
            Command::GetBrokerRuntimeStatus => {
                boxed(wire::dispatch(frame, move |r| admin::runtime_status(s, r)))
            }
            // Queries and admin: add here.
            Command::SearchOffsetByTime => boxed(wire::dispatch(frame, move |r| {
                query::search_offset_by_time(s, r)
            })),
            Command::QueryMessageByKey => {
                boxed(wire::dispatch(frame, move |r| query::by_key(s, r)))
            }
            Command::ViewMessageById => boxed(wire::dispatch(frame, move |r| query::by_id(s, r))),
            Command::QueryMessageByTime => {
                boxed(wire::dispatch(frame, move |r| query::by_time(s, r)))
            }
            Command::GetBrokerConfig => {
                boxed(wire::dispatch(frame, move |r| query::get_config(s, r)))
            }
            Command::SetBrokerConfig => {
                boxed(wire::dispatch(frame, move |r| query::set_config(s, r)))
            }
            Command::GetBrokerRuntime => {
                boxed(wire::dispatch(frame, move |r| runtime::runtime(s, r)))
            }
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
            Command::EndTransaction => {
                boxed(wire::dispatch(frame, move |r| transaction::end(s, r)))
            }
            Command::SyncMetadata => boxed(wire::dispatch(frame, move |r| {
                replication::sync_metadata(s, r)
            })),
            Command::GetReplicationStatus => {
                boxed(wire::dispatch(frame, move |r| replication::status(s, r)))
            }
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
