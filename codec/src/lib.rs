//! Skylark's wire protocol: frames, typed commands and error codes.
//!
//! This crate has no runtime and no actors: it turns bytes into typed values
//! and back, for the broker, the NameServer, the client and the tools. See
//! [`frame`] for the byte layout; in short, a frame is a 4-byte big-endian
//! length followed by one MessagePack value `[header, body]`, where the
//! header is `[request_id, kind, command]` and the body is the command's type
//! below, with structs encoded as maps keyed by field name.
//!
//! # Using it
//!
//! ```
//! use bytes::BytesMut;
//! use skylark_codec::{FrameCodec, OutFrame, Rpc, GetQueueOffsetsRequest, QueueOffsets};
//! use tokio_util::codec::{Decoder, Encoder};
//!
//! let mut codec = FrameCodec::default();
//! let mut wire = BytesMut::new();
//!
//! // Client: send a typed request.
//! let req = GetQueueOffsetsRequest { topic: "TopicTest".into(), queue_id: 3 };
//! codec.encode(OutFrame::request(42, &req), &mut wire)?;
//!
//! // Server: route on the command, then decode the body and answer.
//! let frame = codec.decode(&mut wire)?.expect("a whole frame");
//! assert_eq!(frame.command()?, GetQueueOffsetsRequest::COMMAND);
//! let got: GetQueueOffsetsRequest = frame.decode_request()?;
//! let answer = QueueOffsets { min_offset: 0, max_offset: 10 };
//! codec.encode(OutFrame::response_ok(&frame.header, &answer), &mut wire)?;
//!
//! // Client: decode the typed response (an error response becomes
//! // `ProtocolError::Remote`).
//! let resp = codec.decode(&mut wire)?.expect("a whole frame");
//! assert_eq!(resp.header.request_id, 42);
//! let offsets: <GetQueueOffsetsRequest as Rpc>::Response = resp.decode_response()?;
//! assert_eq!(offsets.max_offset, 10);
//! # assert_eq!(got, req);
//! # Ok::<(), skylark_codec::ProtocolError>(())
//! ```
//!
//! # Frames
//!
//! * `kind = Request` (0) expects exactly one `Response` (1) carrying the same
//!   `request_id` and `command`; `Oneway` (2) is never answered; `Push` (3)
//!   is server-initiated.
//! * A response body is `Result<T, WireError>`: `{"Ok": T}` or
//!   `{"Err": {"code": u16, "message": str}}`. Build them with
//!   [`OutFrame::response_ok`] / [`OutFrame::response_err`], read them with
//!   [`RawFrame::decode_response`].
//! * A request with an unknown command still decodes (the header keeps the
//!   raw number); answer it with `ErrorCode::UnknownCommand`.
//! * Limits: frames above [`DEFAULT_MAX_FRAME_SIZE`] (configurable in
//!   [`FrameCodec`]) are refused before anything is allocated; message bodies
//!   above [`DEFAULT_MAX_MESSAGE_SIZE`] are refused by the broker with
//!   `MessageTooLarge` ([`MessageData::check_size`]). A body of N bytes
//!   decodes into at most [`budget_for`]`(N)` = 8 × N + 16 KiB of memory
//!   ([`budget`]); a body that would take more is `Malformed`, which a
//!   server answers `BadRequest`.
//!
//! # Commands
//!
//! Every request type implements [`Rpc`], which names its command and its
//! response type. Numbers are stable; gaps are left for later families
//! (consumer-group admin, transactions, admin tools).
//!
//! | Code | [`Command`] | Request body | Response body | Semantics |
//! |-----:|-------------|--------------|---------------|-----------|
//! | 1 | `Handshake` | [`Handshake`] | [`HandshakeResponse`] | First request on a connection. The server answers `UnsupportedVersion` if it does not speak `protocol_version`. |
//! | 10 | `SendMessage` | [`SendRequest`] | [`SendResult`] | Store one message in a topic; `queue_id < 0` lets the broker pick the queue. `status` tells whether flush/replication finished in time. Errors: `TopicNotFound`, `MessageTooLarge`, `NotMaster`, `PermissionDenied`, `DiskFull`, `Busy`. |
//! | 11 | `SendBatch` | [`SendBatchRequest`] | [`SendBatchResponse`] | Store several messages in one queue, in order; one [`SendResult`] per message. |
//! | 20 | `PullMessage` | [`PullRequest`] | [`PullResponse`] | Read up to `max_messages` / `max_bytes` of stored records from `queue_offset`, filtered by tag expression or SQL; with `suspend_timeout_ms > 0` the broker long-polls. May piggy-back an offset commit. Damaged records are not sent: they are listed in `damaged` and `next_offset` is past them. |
//! | 30 | `QueryConsumerOffset` | [`QueryOffsetRequest`] | [`QueryOffsetResponse`] | A consumer group's committed offset for a queue (`None` = never committed). |
//! | 31 | `UpdateConsumerOffset` | [`CommitOffsetRequest`] | [`Ack`] | Commit a consumer group's offset for a queue. |
//! | 32 | `GetQueueOffsets` | [`GetQueueOffsetsRequest`] | [`QueueOffsets`] | A queue's min and max offsets. |
//! | 33 | `SearchOffsetByTime` | [`SearchOffsetByTimeRequest`] | [`SearchOffsetByTimeResponse`] | A queue's first offset stored at or after a timestamp (its max offset if none). |
//! | 40 | `Heartbeat` | [`HeartbeatRequest`] | [`Ack`] | A client is alive; lists its producer groups and its consumer groups with subscriptions (drives rebalancing). |
//! | 41 | `UnregisterClient` | [`UnregisterClientRequest`] | [`Ack`] | A client leaves a producer and/or consumer group. |
//! | 34 | `GetConsumerList` | [`GetConsumerListRequest`] | [`ConsumerList`] | A consumer group's live members (client ids, sorted), for rebalancing. |
//! | 35 | `NotifyConsumerIdsChanged` | — (push) | [`ConsumerIdsChanged`] | Broker → every member when the group's membership changes: rebalance now. |
//! | 36 | `LockBatchMq` | [`LockBatchRequest`] | [`LockBatchResponse`] | Orderly consumer locks queues (60 s lease, renewed by asking again); answers the queues it now holds. |
//! | 37 | `UnlockBatchMq` | [`UnlockBatchRequest`] | [`Ack`] | Release queue locks. |
//! | 38 | `ResetOffset` | [`ResetOffsetRequest`] | [`ResetOffsetResponse`] | Admin → broker: backtrack a group's offsets on a topic to a time; live members are told by push. |
//! | 39 | `NotifyResetOffset` | — (push) | [`ResetOffsetNotify`] | Broker → members: drop in-memory offsets and continue from these. |
//! | 42 | `GetConsumeProgress` | [`GetConsumeProgressRequest`] | [`ConsumeProgress`] | Admin → broker: per queue max offset, committed offset, last commit time; live members. |
//! | 43 | `GetGroupList` | [`GetGroupListRequest`] | [`GroupList`] | Admin → broker: every consumer group known. |
//! | 44 | `DeleteGroup` | [`DeleteGroupRequest`] | [`Ack`] | Admin → broker: forget a group's offsets, members and locks. |
//! | 46 | `ConsumerSendBack` | [`SendBackRequest`] | [`SendBackResponse`] | A consumer failed a message: the broker stores a copy in `%RETRY%<group>` with delay level 3 + reconsume times, or in `%DLQ%<group>` after `max_reconsume_times` (16). |
//! | 50 | `RegisterBroker` | [`RegisterBrokerRequest`] | [`RegisterBrokerResponse`] | Broker → NameServer, periodic: the broker's addresses and all its topics; the answer gives a slave its master's addresses. |
//! | 51 | `UnregisterBroker` | [`UnregisterBrokerRequest`] | [`Ack`] | Broker → NameServer on clean shutdown. |
//! | 52 | `GetRouteInfo` | [`GetRouteInfoRequest`] | [`TopicRouteData`] | Client → NameServer: which brokers host a topic's queues. `TopicNotFound` if none — at once, or with `wait_ms` once no broker registered it within that time. |
//! | 53 | `GetClusterInfo` | [`GetClusterInfoRequest`] | [`ClusterInfo`] | Clusters, their brokers and addresses. |
//! | 54 | `GetTopicList` | [`GetTopicListRequest`] | [`TopicList`] | Every topic known to the NameServer. |
//! | 60 | `CreateTopic` | [`CreateTopicRequest`] | [`Ack`] | Admin → broker: create or update a topic (name checked with [`validate_topic_name`]). |
//! | 61 | `DeleteTopic` | [`DeleteTopicRequest`] | [`Ack`] | Admin → broker: delete a topic. |
//! | 62 | `GetTopicStats` | [`GetTopicStatsRequest`] | [`TopicStats`] | Admin → broker: a topic's config, per-queue min/max offsets, parked pulls. |
//! | 90 | `GetScheduleStats` | [`GetScheduleStatsRequest`] | [`ScheduleStats`] | Admin → broker: delayed messages pending per delay level and in the timer. |
//! | 100 | `EndTransaction` | [`EndTransactionRequest`] | [`Ack`] | Producer → broker: commit, roll back (or leave unknown) a half message. A second outcome for an already decided half is ignored. |
//! | 101 | `CheckTransactionState` | [`CheckTransactionStateRequest`] | none (`Push` frame) | Broker → a live producer of the group: the state of an undecided half message, answered with `EndTransaction` (`from_check = true`). |
//! | 70 | `QueryMessageByKey` | [`QueryMessageByKeyRequest`] | [`QueryMessageResponse`] | Messages of a topic with a key (or unique id) in a store-time range, through the IndexFile. |
//! | 71 | `ViewMessageById` | [`ViewMessageByIdRequest`] | [`QueryMessageResponse`] | The message at the CommitLog offset inside an offset message id (one read); `BadRequest` if the id names another broker. |
//! | 72 | `QueryMessageByTime` | [`QueryMessageByTimeRequest`] | [`QueryMessageResponse`] | Per queue, messages from the first stored at or after a timestamp. |
//! | 73 | `GetBrokerConfig` | [`GetBrokerConfigRequest`] | [`BrokerSettings`] | The broker's live settings. |
//! | 74 | `SetBrokerConfig` | [`SetBrokerConfigRequest`] | [`Ack`] | Change a live setting; unknown or non-live keys get `BadRequest` naming the key. |
//! | 75 | `UpdateSubscriptionGroup` | [`UpdateSubscriptionGroupRequest`] | [`Ack`] | Store a consumer group's settings (consume enable, broadcast enable, retry max), persisted by the broker. Errors: `BadRequest` (bad group name, retry max over 64). |
//! | 76 | `GetSubscriptionGroup` | [`GetSubscriptionGroupRequest`] | [`SubscriptionGroupInfo`] | A group's settings in force (defaults when none is stored). |
//! | 77 | `GetConsumerConnections` | [`GetConsumerConnectionsRequest`] | [`ConsumerConnections`] | A group's live members: client id, address, language, version, model, subscriptions. |
//! | 78 | `GetProducerConnections` | [`GetProducerConnectionsRequest`] | [`ProducerConnections`] | A producer group's clients that heartbeat this broker. |
//! | 79 | `GetBrokerRuntimeStatus` | [`GetBrokerRuntimeStatusRequest`] | [`BrokerRuntimeStatus`] | Put/get TPS, disk ratio, flush latency, CommitLog / page-cache figures and the recovery report. |
//! | 89 | `GetBrokerRuntime` | [`GetBrokerRuntimeRequest`] | [`BrokerRuntime`] | Admin → broker: disk usage and its write-refusal ratio, half messages pending (the dashboard). |
//! | 110 | `SyncMetadata` | [`SyncMetadataRequest`] | [`MetadataSnapshot`] | Slave → master every 10 s: the master's topics, consumer offsets and Scheduler progress; offsets committed on the slave while the master was away are merged (larger wins). |
//! | 111 | `GetReplicationStatus` | [`GetReplicationStatusRequest`] | [`ReplicationStatus`] | Admin → broker: role, CommitLog end, slaves and their acked offsets (lag). |
//!
//! # Errors
//!
//! Error responses carry a [`WireError`] with a stable [`ErrorCode`] (the
//! numbers are documented on the enum); a code unknown to the receiver decodes
//! as [`ErrorCode::Unknown`]. Locally the codec returns [`ProtocolError`],
//! and [`ProtocolError::code`] / [`ProtocolError::to_wire`] map it onto the
//! wire code in one place.

pub mod auth;
pub mod budget;
pub mod cmd;
pub mod command;
pub mod error;
#[cfg(feature = "filter")]
pub mod filter;
pub mod frame;
pub mod frame_auth;
pub mod message;
#[cfg(feature = "persist")]
pub mod persist;
pub mod record;
#[cfg(feature = "remoting")]
pub mod remoting;
#[cfg(feature = "rpc")]
pub mod rpc;
pub mod shared_bytes;
mod skip;
#[cfg(feature = "rpc")]
pub mod tls;
pub mod wire;

pub use auth::Credentials;
pub use budget::{budget_for, DECODE_BUDGET_FACTOR, DECODE_BUDGET_SLACK};
pub use cmd::broker::{
    RegisterBrokerRequest, RegisterBrokerResponse, TopicConfig, UnregisterBrokerRequest,
    PERM_INHERIT, PERM_READ, PERM_WRITE,
};
pub use cmd::group::{
    queue_lag, ConsumeProgress, ConsumerIdsChanged, ConsumerList, DeleteGroupRequest,
    GetConsumeProgressRequest, GetConsumerListRequest, GetGroupListRequest, GroupList,
    LockBatchRequest, LockBatchResponse, QueueOffsetEntry, QueueProgress, QueueRef,
    ResetOffsetNotify, ResetOffsetRequest, ResetOffsetResponse, SendBackRequest, SendBackResponse,
    UnlockBatchRequest, DEFAULT_MAX_RECONSUME_TIMES, DLQ_TOPIC_PREFIX, PROPERTY_ORIGIN_MESSAGE_ID,
    PROPERTY_RETRY_TOPIC, RETRY_TOPIC_PREFIX,
};
pub use cmd::handshake::{Handshake, HandshakeResponse};
pub use cmd::heartbeat::{
    ConsumeFrom, ConsumeType, ConsumerGroupData, ExpressionType, HeartbeatRequest, MessageModel,
    Subscription, UnregisterClientRequest,
};
pub use cmd::offset::{
    CommitOffsetRequest, GetQueueOffsetsRequest, QueryOffsetRequest, QueryOffsetResponse,
    QueueOffsets,
};
pub use cmd::ops::{
    BrokerRuntimeStatus, ClientConnection, ConsumerConnection, ConsumerConnections,
    GetBrokerRuntimeStatusRequest, GetConsumerConnectionsRequest, GetProducerConnectionsRequest,
    GetSubscriptionGroupRequest, ProducerConnections, SubscriptionGroupConfig,
    SubscriptionGroupInfo, UpdateSubscriptionGroupRequest,
};
pub use cmd::pull::{parse_tag_expression, DamagedRecord, PullRequest, PullResponse, PullStatus};
pub use cmd::query::{
    BrokerSettings, GetBrokerConfigRequest, QueryMessageByKeyRequest, QueryMessageByTimeRequest,
    QueryMessageResponse, SearchOffsetByTimeRequest, SearchOffsetByTimeResponse,
    SetBrokerConfigRequest, ViewMessageByIdRequest,
};
pub use cmd::replication::{
    GetReplicationStatusRequest, MetadataSnapshot, OffsetEntry, ReplicationStatus,
    ScheduleProgress, SlaveStatus, SyncMetadataRequest,
};
pub use cmd::route::{
    BrokerData, ClusterInfo, GetClusterInfoRequest, GetRouteInfoRequest, GetTopicListRequest,
    QueueData, TopicList, TopicRouteData, MAX_ROUTE_WAIT_MS,
};
pub use cmd::runtime::{BrokerRuntime, GetBrokerRuntimeRequest};
pub use cmd::schedule::{DelayLevelStats, GetScheduleStatsRequest, ScheduleStats};
pub use cmd::send::{SendBatchRequest, SendBatchResponse, SendRequest, SendResult, SendStatus};
pub use cmd::topic::{
    validate_group_name, validate_topic_name, CreateTopicRequest, DeleteTopicRequest,
    GetTopicStatsRequest, QueueStats, TopicStats, AUTO_CREATE_TOPIC_KEY, GROUP_MAX_LENGTH,
    HALF_TOPIC, OP_TOPIC, SCHEDULE_TOPIC, TIMER_TOPIC, TOPIC_MAX_LENGTH,
};
pub use cmd::transaction::{
    CheckTransactionStateRequest, EndTransactionRequest, TransactionState, PROPERTY_PRODUCER_GROUP,
    PROPERTY_REAL_QUEUE_ID, PROPERTY_REAL_TOPIC, PROPERTY_TRANSACTION_ID,
    PROPERTY_TRANSACTION_PREPARED,
};
pub use cmd::Ack;
pub use command::{Command, Rpc};
pub use error::{ErrorCode, ProtocolError, Result, WireError};
pub use frame::{
    decode_value, encode_frame, encode_frame_with_tail, FrameCodec, FrameKind, Header, OutFrame,
    RawFrame, ResponseBody, LENGTH_PREFIX_LEN, MIN_FRAME_LEN, READ_RESERVE_STEP,
};
pub use frame_auth::FrameAuth;
pub use message::{MessageData, MessageId};

/// Version of this protocol, sent in [`Handshake`].
pub const PROTOCOL_VERSION: u16 = 1;

/// Default maximum frame payload (bytes after the length prefix): 16 MiB.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 16 * 1024 * 1024;

/// Default maximum message body: 4 MiB (RocketMQ's `maxMessageSize`).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 4 * 1024 * 1024;
