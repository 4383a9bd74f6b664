//! The broker's request handlers: one module per command family
//! (RocketMQ's `broker/processor/*Processor`).
//!
//! [`BrokerService`] is what each [`Connection`](crate::remoting::Connection)
//! calls for a request frame. It holds only addresses of the owning actors
//! and immutable config, so it is cloned into every connection; all state
//! changes are messages to the owners (Broker, TopicQueue, Storage,
//! ConsumerOffsets).

mod admin;
mod delay;
mod group;
mod offset;
mod pull;
mod query;
mod replication;
mod send;
mod transaction;

use std::net::SocketAddr;
use std::sync::Arc;

use actix::Addr;
use bytes::Bytes;
use futures::future::LocalBoxFuture;
use skylark_codec::{Command, RawFrame, WireError};

use crate::broker::{Broker, EnsureTopic, TopicRegistry};
use crate::config::BrokerConfig;
use crate::consumer_groups::{ConsumerGroups, GroupRegistry};
use crate::consumer_offsets::ConsumerOffsets;
use crate::live_settings::LiveSettings;
use crate::remoting::{wire, ConnInfo, Service};
use crate::storage::Storage;
use crate::topic_queue::TopicQueue;
use crate::transaction::Transaction;

/// Everything a request handler may reach.
pub struct Shared {
    pub config: Arc<BrokerConfig>,
    /// Settings changeable at run time (owned by the Broker actor).
    pub live: Arc<LiveSettings>,
    pub broker: Addr<Broker>,
    pub storage: Addr<Storage>,
    pub offsets: Addr<ConsumerOffsets>,
    pub topics: TopicRegistry,
    /// Group name → its ConsumerGroup actor (written by `group_manager`).
    pub groups: GroupRegistry,
    pub group_manager: Addr<ConsumerGroups>,
    pub replicator: Addr<crate::replicator::Replicator>,
    /// This broker's address as written into message ids.
    pub store_host: SocketAddr,
    /// The Scheduler (delayed messages) and its settings.
    pub scheduler: crate::scheduler::SchedulerHandle,
    /// Half messages and their outcomes.
    pub transaction: Addr<Transaction>,
}

impl Shared {
    /// The TopicQueue of `topic`; `auto_create` applies on a send only.
    pub async fn topic_queue(
        &self,
        topic: &str,
        auto_create: bool,
    ) -> Result<Addr<TopicQueue>, WireError> {
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
        let s = self.shared.clone();
        let header = frame.header;
        let peer = conn.peer;
        transaction::note_client(&s, cmd, &frame, conn);
        let conn_addr = conn.addr.clone();
        Box::pin(async move {
            match cmd {
                Command::SendMessage => wire::dispatch(frame, |r| send::send_one(s, r, peer)).await,
                Command::SendBatch => wire::dispatch(frame, |r| send::send_batch(s, r, peer)).await,
                Command::PullMessage => wire::dispatch(frame, |r| pull::pull(s, r)).await,
                Command::QueryConsumerOffset => {
                    wire::dispatch(frame, |r| offset::query(s, r)).await
                }
                Command::UpdateConsumerOffset => {
                    wire::dispatch(frame, |r| offset::commit(s, r)).await
                }
                Command::GetQueueOffsets => {
                    wire::dispatch(frame, |r| offset::queue_offsets(s, r)).await
                }
                Command::Heartbeat => {
                    wire::dispatch(frame, |r| group::heartbeat(s, r, conn_addr)).await
                }
                Command::UnregisterClient => {
                    wire::dispatch(frame, |r| group::unregister_client(s, r)).await
                }
                Command::CreateTopic => wire::dispatch(frame, |r| admin::create_topic(s, r)).await,
                Command::DeleteTopic => wire::dispatch(frame, |r| admin::delete_topic(s, r)).await,
                Command::GetTopicStats => wire::dispatch(frame, |r| admin::topic_stats(s, r)).await,
                // Consumer groups: add here.
                Command::GetConsumerList => {
                    wire::dispatch(frame, |r| group::consumer_list(s, r)).await
                }
                Command::LockBatchMq => wire::dispatch(frame, |r| group::lock_batch(s, r)).await,
                Command::UnlockBatchMq => {
                    wire::dispatch(frame, |r| group::unlock_batch(s, r)).await
                }
                Command::ResetOffset => wire::dispatch(frame, |r| group::reset_offset(s, r)).await,
                Command::GetConsumeProgress => {
                    wire::dispatch(frame, |r| group::consume_progress(s, r)).await
                }
                Command::GetGroupList => wire::dispatch(frame, |r| group::group_list(s, r)).await,
                Command::DeleteGroup => wire::dispatch(frame, |r| group::delete_group(s, r)).await,
                Command::ConsumerSendBack => {
                    wire::dispatch(frame, |r| group::send_back(s, r, peer)).await
                }
                // Queries and admin: add here.
                Command::SearchOffsetByTime => {
                    wire::dispatch(frame, |r| query::search_offset_by_time(s, r)).await
                }
                Command::QueryMessageByKey => wire::dispatch(frame, |r| query::by_key(s, r)).await,
                Command::ViewMessageById => wire::dispatch(frame, |r| query::by_id(s, r)).await,
                Command::QueryMessageByTime => {
                    wire::dispatch(frame, |r| query::by_time(s, r)).await
                }
                Command::GetBrokerConfig => {
                    wire::dispatch(frame, |r| query::get_config(s, r)).await
                }
                Command::SetBrokerConfig => {
                    wire::dispatch(frame, |r| query::set_config(s, r)).await
                }
                Command::GetScheduleStats => {
                    wire::dispatch(frame, |_: skylark_codec::GetScheduleStatsRequest| {
                        let sched = s.scheduler.addr.clone();
                        async move {
                            sched
                                .send(crate::scheduler::GetScheduleStats)
                                .await
                                .map_err(crate::mailbox_error)
                        }
                    })
                    .await
                }
                Command::EndTransaction => wire::dispatch(frame, |r| transaction::end(s, r)).await,
                Command::SyncMetadata => {
                    wire::dispatch(frame, |r| replication::sync_metadata(s, r)).await
                }
                Command::GetReplicationStatus => {
                    wire::dispatch(frame, |r| replication::status(s, r)).await
                }
                other => wire::not_served(&header, other, "broker"),
            }
        })
    }
}
