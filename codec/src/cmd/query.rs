//! Message queries and live broker settings (70-74), and
//! `SearchOffsetByTime` (33, RocketMQ's `SEARCH_OFFSET_BY_TIMESTAMP`: a
//! queue's first offset stored at or after a time, for `consume --from
//! MILLIS`): RocketMQ's
//! `QUERY_MESSAGE` (by key, through the IndexFile), `VIEW_MESSAGE_BY_ID`
//! (the offset message id names the broker and the CommitLog offset: one
//! read), a per-queue lookup by store time, and `GET/UPDATE_BROKER_CONFIG`
//! restricted to the settings that take effect while the broker runs.
//!
//! Found messages travel as the broker's stored records concatenated in one
//! `bin`, exactly as in a pull answer, so the client decodes them the same
//! way.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::cmd::Ack;
use crate::command::{rpc, Command};

/// Messages of `topic` whose keys (or unique id) include `key`, stored
/// within `[begin_ms, end_ms]`; newest first, at most `max`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct QueryMessageByKeyRequest {
    /// Topic.
    pub topic: String,
    /// One key, or a unique id (`UNIQ_KEY`).
    pub key: String,
    /// Earliest store timestamp, ms since the epoch.
    pub begin_ms: i64,
    /// Latest store timestamp, ms since the epoch.
    pub end_ms: i64,
    /// At most this many messages.
    pub max: u32,
}

/// The message with this offset message id (hex of store host + CommitLog
/// offset, see [`crate::MessageId`]).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ViewMessageByIdRequest {
    /// The id, as `produce --json` prints it.
    pub msg_id: String,
}

/// For each queue of `topic`: up to `max_per_queue` messages from the first
/// one stored at or after `timestamp_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct QueryMessageByTimeRequest {
    /// Topic.
    pub topic: String,
    /// Store timestamp, ms since the epoch.
    pub timestamp_ms: i64,
    /// Messages per queue (at least 1).
    pub max_per_queue: u32,
}

/// Messages found by a query (possibly none).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct QueryMessageResponse {
    /// Number of records in `records`.
    pub count: u32,
    /// The stored records, concatenated (one MessagePack `bin`).
    pub records: Bytes,
}

/// The broker's live settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GetBrokerConfigRequest {}

/// Live settings as `(key, value)` text, in a stable order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BrokerSettings {
    /// Every live setting and its current value.
    pub settings: Vec<(String, String)>,
}

/// Change one live setting; other keys are refused with `BadRequest`
/// naming the key.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SetBrokerConfigRequest {
    /// Setting name (`long_poll_max_ms`, ...).
    pub key: String,
    /// New value as text.
    pub value: String,
}

/// A queue's first offset whose message was stored at or after
/// `timestamp_ms` (its max offset if none is).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SearchOffsetByTimeRequest {
    /// Topic.
    pub topic: String,
    /// Queue.
    pub queue_id: u32,
    /// Store timestamp, ms since the epoch.
    pub timestamp_ms: i64,
}

/// The offset found by [`SearchOffsetByTimeRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SearchOffsetByTimeResponse {
    /// Queue offset.
    pub offset: u64,
}

rpc!(SearchOffsetByTimeRequest => SearchOffsetByTimeResponse, Command::SearchOffsetByTime);
rpc!(QueryMessageByKeyRequest => QueryMessageResponse, Command::QueryMessageByKey);
rpc!(ViewMessageByIdRequest => QueryMessageResponse, Command::ViewMessageById);
rpc!(QueryMessageByTimeRequest => QueryMessageResponse, Command::QueryMessageByTime);
rpc!(GetBrokerConfigRequest => BrokerSettings, Command::GetBrokerConfig);
rpc!(SetBrokerConfigRequest => Ack, Command::SetBrokerConfig);
