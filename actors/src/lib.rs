//! Skylark's server actors and storage engine, embeddable in any actix System.
//!
//! Who owns what (docs/architecture.md has the messages and the paths of a
//! send and a pull):
//!
//! | actor | one per | owns |
//! |---|---|---|
//! | [`namesrv::NameServer`] | nameserver | route table, broker liveness |
//! | [`broker::Broker`] | broker | role, topic configs, live settings, NameServer registration |
//! | [`topic_queue::TopicQueue`] | topic | queue layout (config); its snapshot is published as a [`topic_queue::TopicHandle`] |
//! | [`storage::Storage`] | broker | the mapped files: CommitLog, ConsumeQueues, IndexFiles, checkpoint; parked long-poll pulls (woken by its own appends) |
//! | [`consumer_offsets::ConsumerOffsets`] | broker | committed consumer offsets |
//! | [`scheduler::Scheduler`] | broker | delay-level progress, the timer index (a slave's follows its master's) |
//! | [`transaction::Transaction`] | broker | half messages, the op log, check-back timing |
//! | [`consumer_group::ConsumerGroup`] | consumer group | members, order locks |
//! | [`group_registry::ConsumerGroups`] | broker | the registry of group actors |
//! | [`replicator::Replicator`] | broker | master: slave sessions and acked offsets; slave: the stream from its master |
//!
//! The send path is connection thread → Storage → connection thread: the
//! queue is picked from the topic's snapshot where the request is decoded,
//! and the sends of one thread's turn go to Storage as one message
//! (`processor::coalesce`).
//!
//! [`processor`] turns wire requests into messages to those owners;
//! [`remoting`] is the TCP plumbing; [`message_store`] is the plain-Rust storage
//! engine the Storage actor drives; [`launch`] starts a whole broker or a NameServer;
//! [`metrics`] serves Prometheus metrics.

pub mod acl;
pub mod broker;
pub mod client_registry;
pub mod config;
pub mod consumer_group;
pub mod consumer_offsets;
pub mod controller;
pub mod filter;
pub mod group_registry;
pub mod launch;
pub mod live_settings;
pub mod metrics;
pub mod namesrv;
pub use skylark_codec::persist;
pub mod message_store;
pub mod processor;
pub mod read_cache;
pub mod remoting;
pub mod replicator;
pub mod scheduler;
pub mod storage;
pub mod subscription_groups;
#[cfg(test)]
pub(crate) mod test_log;
pub mod tls;
pub mod topic_queue;
pub mod transaction;

use message_store::StoreError;
use skylark_codec::{ErrorCode, Handshake, HandshakeResponse, WireError};

/// A message to an actor that is gone or overloaded.
pub(crate) fn mailbox_error(e: actix::MailboxError) -> WireError {
    match e {
        actix::MailboxError::Timeout => {
            metrics::note_busy(metrics::BusyReason::Mailbox);
            WireError::new(
                ErrorCode::Busy,
                "broker busy: request timed out in a mailbox",
            )
        }
        actix::MailboxError::Closed => {
            WireError::new(ErrorCode::ServiceNotAvailable, "service is shutting down")
        }
    }
}

/// The one place storage errors become wire error codes.
pub(crate) fn store_error(e: StoreError) -> WireError {
    let code = match &e {
        StoreError::DiskFull { .. } => ErrorCode::DiskFull,
        StoreError::MessageTooLarge { .. } => ErrorCode::MessageTooLarge,
        StoreError::BadMessage(_) => ErrorCode::BadRequest,
        StoreError::FlushTimeout(_) => ErrorCode::FlushDiskTimeout,
        StoreError::ShutDown => ErrorCode::ServiceNotAvailable,
        StoreError::NoRecord(_) => ErrorCode::BadRequest,
        StoreError::InvalidConfig(_)
        | StoreError::Io(_)
        | StoreError::Corrupt(_)
        | StoreError::FlushFailed(_)
        | StoreError::InUse { .. } => ErrorCode::Internal,
    };
    WireError::new(code, e.to_string())
}

/// Checks a client's handshake: one protocol version is spoken today.
pub(crate) fn handshake(h: &Handshake) -> Result<HandshakeResponse, WireError> {
    if h.protocol_version != skylark_codec::PROTOCOL_VERSION {
        return Err(WireError::new(
            ErrorCode::UnsupportedVersion,
            format!(
                "protocol version {} is not supported (server speaks {})",
                h.protocol_version,
                skylark_codec::PROTOCOL_VERSION
            ),
        ));
    }
    Ok(namesrv::handshake_response())
}
