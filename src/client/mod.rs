//! The Skylark client: an actor-based [`Producer`], [`TransactionProducer`],
//! [`PullConsumer`] and [`PushConsumer`] (listener-driven, clustering or
//! broadcasting, orderly).
//!
//! Why it is shaped like this (RocketMQ's `MQClientInstance` in actix terms):
//!
//! * [`ClientInstance`] is one actor per client that owns everything shared
//!   and mutable: topic routes learnt from the NameServers, one
//!   [`RpcClient`](skylark_codec::rpc::RpcClient) per broker address,
//!   the producer's round-robin counters and its latency fault tolerance.
//! * [`Producer`] and [`PullConsumer`] are cheap `Send + Clone` handles. They
//!   ask the actor only for a routing decision (a broker connection and a
//!   queue id) and then make the RPC themselves, so many sends and pulls run
//!   concurrently on pipelined connections instead of queueing through one
//!   mailbox.
//!
//! Everything must be created inside a running actix `System` (the actor and
//! the connection actors live on the arbiter that creates them).
//!
//! ```no_run
//! use skylark::client::{ClientConfig, Producer};
//! use skylark::codec::MessageData;
//!
//! actix::System::new().block_on(async {
//!     let producer = Producer::start(ClientConfig::new("127.0.0.1:9876"), "my-group")?;
//!     let result = producer.send("TopicTest", MessageData::new("hello")).await;
//!     println!("{result:?}");
//!     Ok::<_, skylark::client::ClientError>(())
//! })?;
//! # Ok::<_, skylark::client::ClientError>(())
//! ```

mod config;
mod consumer;
mod error;
mod fault;
mod instance;
mod local_offsets;
mod message;
mod namesrv;
mod process_queue;
mod producer;
mod push_consumer;
mod rebalance;
mod route;
mod transaction;

pub use config::{ClientConfig, RouteWaitNotice, MAX_DURATION};

/// The language this client reports in its heartbeats (the broker's
/// connection admin commands show it, as RocketMQ shows `JAVA`).
pub const CLIENT_LANGUAGE: &str = "RUST";
pub use consumer::{PullConsumer, PullResult};
pub use error::{ClientError, Result};
pub use fault::{LatencyFaultTolerance, Outcome};
pub use instance::ClientInstance;
pub use local_offsets::{default_path as local_offset_path, LocalOffsetStore};
pub use message::{decode_records, tag_matches, ReceivedMessage};
pub use namesrv::{NameServerClient, SECOND_OPINION_PAUSE};
pub use producer::Producer;
pub use push_consumer::{
    ConsumeResult, MessageListener, PullRefusal, PushConsumer, PushConsumerBuilder,
    PushConsumerOptions, PULL_REFUSAL_REPORT_INTERVAL,
};
pub use rebalance::{allocate, sort_queues, AllocateStrategy};
pub use route::{select_by_key, select_round_robin, MessageQueue, TopicRoute};
pub use skylark_codec::{ConsumeFrom, MessageModel};
pub use skylark_codec::{MessageData, QueueOffsets, SendResult, SendStatus};
pub use transaction::{
    LocalTransactionState, TransactionChecker, TransactionProducer, TransactionSendResult,
    TransactionState, DEFAULT_HEARTBEAT_INTERVAL,
};

/// Connects to a broker (or NameServer) at `addr` and handshakes, outside
/// any client instance (for admin tools). Must run inside an actix System.
pub async fn connect_broker(
    config: &ClientConfig,
    addr: &str,
) -> Result<skylark_codec::rpc::RpcClient> {
    namesrv::connect(
        addr,
        config.connect_timeout,
        config.request_timeout,
        config.max_frame_size,
        (
            &config.client_id,
            config.credentials.clone(),
            config.tls.as_ref(),
        ),
    )
    .await
}

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Microseconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
