//! The broker's request handlers: one module per command family
//! (RocketMQ's `broker/processor/*Processor`).
//!
//! [`BrokerService`] is what each [`Connection`](crate::remoting::Connection)
//! calls for a request frame. It holds only addresses of the owning actors
//! and immutable config, so it is cloned into every connection; all state
//! changes are messages to the owners (Broker, TopicQueue, Storage,
//! ConsumerOffsets).

mod admin;
mod offset;
mod pull;
mod replication;
mod send;

use std::net::SocketAddr;
use std::sync::Arc;

use actix::Addr;
use bytes::Bytes;
use futures::future::LocalBoxFuture;
use skylark_codec::{Command, RawFrame, WireError};

use crate::broker::{Broker, EnsureTopic, TopicRegistry};
use crate::config::BrokerConfig;
use crate::consumer_offsets::ConsumerOffsets;
use crate::remoting::{wire, ConnInfo, Service};
use crate::storage::Storage;
use crate::topic_queue::TopicQueue;

/// Everything a request handler may reach.
pub struct Shared {
    pub config: Arc<BrokerConfig>,
    pub broker: Addr<Broker>,
    pub storage: Addr<Storage>,
    pub offsets: Addr<ConsumerOffsets>,
    pub topics: TopicRegistry,
    pub replicator: Addr<crate::replicator::Replicator>,
    /// This broker's address as written into message ids.
    pub store_host: SocketAddr,
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
                Command::Heartbeat => wire::dispatch(frame, |r| admin::heartbeat(s, r)).await,
                Command::UnregisterClient => {
                    wire::dispatch(frame, |r| admin::unregister_client(s, r)).await
                }
                Command::CreateTopic => wire::dispatch(frame, |r| admin::create_topic(s, r)).await,
                Command::DeleteTopic => wire::dispatch(frame, |r| admin::delete_topic(s, r)).await,
                Command::GetTopicStats => wire::dispatch(frame, |r| admin::topic_stats(s, r)).await,
                // Consumer groups: add here.
                // Queries and admin: add here.
                // Scheduler: add here.
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
