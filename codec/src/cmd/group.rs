//! Consumer groups: membership (34, 35), order locks (36, 37), backtrack
//! (38, 39, 45), progress and group admin (42-44), send-back (46).
//!
//! Mirrors RocketMQ's `ClientManageProcessor` / `ConsumerManageProcessor` /
//! `AdminBrokerProcessor` for groups: members learn who else is in their
//! group with [`GetConsumerListRequest`], and the broker pushes
//! [`ConsumerIdsChanged`] to every member when that changes so they
//! rebalance at once. Orderly consumers lock their queues
//! ([`LockBatchRequest`]); an admin may move a group's offsets to a time
//! ([`ResetOffsetRequest`], pushed to live members as [`ResetOffsetNotify`]).

use serde::{Deserialize, Serialize};

use crate::cmd::Ack;
use crate::command::{rpc, Command};

/// The client ids of a group's live members.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GetConsumerListRequest {
    /// Consumer group.
    pub group: String,
}

/// A group's live members, sorted.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ConsumerList {
    /// Client ids, sorted (every member allocates from the same list).
    pub client_ids: Vec<String>,
}

/// Server push (kind Push, command 35): the group's membership changed;
/// rebalance now.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ConsumerIdsChanged {
    /// Consumer group.
    pub group: String,
}

/// One queue of a topic on the broker that answers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub struct QueueRef {
    /// Topic.
    pub topic: String,
    /// Queue id.
    pub queue_id: u32,
}

/// Lock queues for orderly consumption (lease renewed by asking again).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LockBatchRequest {
    /// Consumer group.
    pub group: String,
    /// The member asking.
    pub client_id: String,
    /// Queues it wants.
    pub queues: Vec<QueueRef>,
}

/// The queues now locked by the asking member (a subset of those asked).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LockBatchResponse {
    /// Locked queues.
    pub locked: Vec<QueueRef>,
}

/// Release queue locks.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UnlockBatchRequest {
    /// Consumer group.
    pub group: String,
    /// The member releasing.
    pub client_id: String,
    /// Queues to release (locks held by others are left alone).
    pub queues: Vec<QueueRef>,
}

/// Backtrack: set every queue's committed offset of `topic` for `group` to
/// the first message stored at or after `timestamp_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ResetOffsetRequest {
    /// Consumer group.
    pub group: String,
    /// Topic.
    pub topic: String,
    /// Milliseconds since the epoch.
    pub timestamp_ms: i64,
}

/// A queue and an offset.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct QueueOffsetEntry {
    /// Queue id.
    pub queue_id: u32,
    /// Queue offset.
    pub offset: u64,
}

/// The offsets a reset committed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ResetOffsetResponse {
    /// One per queue of the topic on this broker.
    pub offsets: Vec<QueueOffsetEntry>,
}

/// Server push (kind Push, command 39): drop in-memory offsets of these
/// queues and continue from the given ones.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ResetOffsetNotify {
    /// Consumer group.
    pub group: String,
    /// Topic.
    pub topic: String,
    /// The broker that sent it (queues are per broker).
    pub broker_addr: String,
    /// New offsets.
    pub offsets: Vec<QueueOffsetEntry>,
}

/// A group's progress on this broker.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GetConsumeProgressRequest {
    /// Consumer group.
    pub group: String,
}

/// One queue's progress.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct QueueProgress {
    /// Topic.
    pub topic: String,
    /// Queue id.
    pub queue_id: u32,
    /// The queue's max offset (one past the last message).
    pub broker_offset: u64,
    /// The group's committed offset.
    pub consumer_offset: u64,
    /// When the group last committed on this queue (ms since the epoch),
    /// if known.
    pub last_commit_ms: Option<i64>,
    /// The queue's min offset (the first message retention left). Absent
    /// from older brokers (read as 0).
    #[serde(default)]
    pub min_offset: u64,
}

/// Messages left for a group on a queue: from its committed offset, or
/// from the queue's min offset when it committed below what retention left
/// (the messages in between no longer exist), to the max offset. The one
/// rule of `admin group progress`, the dashboard and the lag metric.
pub fn queue_lag(max_offset: u64, committed: u64, min_offset: u64) -> u64 {
    max_offset.saturating_sub(committed.max(min_offset))
}

impl QueueProgress {
    /// [`queue_lag`] of this queue.
    pub fn lag(&self) -> u64 {
        queue_lag(self.broker_offset, self.consumer_offset, self.min_offset)
    }

    /// Whether the committed offset is below the queue's min offset: the
    /// group's next pull starts at the min offset, past messages that
    /// retention deleted unread.
    pub fn below_retention(&self) -> bool {
        self.consumer_offset < self.min_offset
    }
}

/// Every queue the group committed on, with the group's live members.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ConsumeProgress {
    /// Per queue, sorted by topic then queue id.
    pub queues: Vec<QueueProgress>,
    /// Live members.
    pub client_ids: Vec<String>,
    /// Topics the live members subscribe to differently, sorted by topic;
    /// empty when they all subscribe alike. Members of one group must
    /// subscribe alike: each queue is read by one member with its filter,
    /// so a message only another member's filter matches is skipped. Absent
    /// from older brokers (read as empty).
    #[serde(default)]
    pub subscription_conflicts: Vec<SubscriptionConflict>,
}

/// One topic that the live members of a group subscribe to differently
/// (RocketMQ's "subscription inconsistent" consumer-connection check).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SubscriptionConflict {
    /// Topic.
    pub topic: String,
    /// Each distinct subscription of the topic among the members, with the
    /// members that use it, sorted by expression; members that do not
    /// subscribe to the topic at all are one entry with `expression: None`.
    pub variants: Vec<SubscriptionVariant>,
}

/// A subscription of one topic and the members that use it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SubscriptionVariant {
    /// How `expression` is read.
    pub expression_type: crate::ExpressionType,
    /// Tag expression or SQL filter; `None`: not subscribed to the topic.
    pub expression: Option<String>,
    /// The members, sorted.
    pub client_ids: Vec<String>,
}

impl std::fmt::Display for SubscriptionConflict {
    /// `topic T: 'TagA' by c1; 'TagB' by c2, c3; not subscribed by c4`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "topic {}: ", self.topic)?;
        for (i, v) in self.variants.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            match (&v.expression, v.expression_type) {
                (None, _) => f.write_str("not subscribed")?,
                (Some(e), crate::ExpressionType::Tag) => write!(f, "'{e}'")?,
                (Some(e), crate::ExpressionType::Sql) => write!(f, "SQL '{e}'")?,
            }
            write!(f, " by {}", v.client_ids.join(", "))?;
        }
        Ok(())
    }
}

/// Every consumer group this broker knows (committed offsets or members).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GetGroupListRequest {}

/// Group names, sorted.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GroupList {
    /// Group names.
    pub groups: Vec<String>,
}

/// Forget a group: its committed offsets, members and locks.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DeleteGroupRequest {
    /// Consumer group.
    pub group: String,
}

/// Prefix of a group's retry topic: `%RETRY%<group>`.
pub const RETRY_TOPIC_PREFIX: &str = "%RETRY%";
/// Prefix of a group's dead-letter topic: `%DLQ%<group>`.
pub const DLQ_TOPIC_PREFIX: &str = "%DLQ%";
pub use crate::message::{PROPERTY_ORIGIN_MESSAGE_ID, PROPERTY_RETRY_TOPIC};
/// Attempts after which a message goes to the dead-letter topic.
pub const DEFAULT_MAX_RECONSUME_TIMES: u32 = 16;

/// A consumer failed a message: store it again in the group's retry topic
/// (delay level 3 + reconsume times) or, after `max_reconsume_times`
/// attempts, in its dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SendBackRequest {
    /// Consumer group.
    pub group: String,
    /// Commit-log offset of the failed message on this broker.
    pub physical_offset: u64,
    /// How many times it was delivered again already.
    pub reconsume_times: u32,
    /// Attempts before the dead-letter topic (`None`: 16).
    pub max_reconsume_times: Option<u32>,
    /// Straight to the dead-letter topic, whatever the counts: an orderly
    /// consumer that gave the message up after its own retries in place
    /// (a retry copy would be delivered again out of its queue's order;
    /// RocketMQ's delay level -1). Omitted when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dead_letter: bool,
}

/// Where a sent-back message went.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SendBackResponse {
    /// `%RETRY%<group>` or `%DLQ%<group>`.
    pub topic: String,
    /// The new message's queue offset there.
    pub queue_offset: u64,
}

rpc!(SendBackRequest => SendBackResponse, Command::ConsumerSendBack);
rpc!(GetConsumerListRequest => ConsumerList, Command::GetConsumerList);
rpc!(LockBatchRequest => LockBatchResponse, Command::LockBatchMq);
rpc!(UnlockBatchRequest => Ack, Command::UnlockBatchMq);
rpc!(ResetOffsetRequest => ResetOffsetResponse, Command::ResetOffset);
rpc!(GetConsumeProgressRequest => ConsumeProgress, Command::GetConsumeProgress);
rpc!(GetGroupListRequest => GroupList, Command::GetGroupList);
rpc!(DeleteGroupRequest => Ack, Command::DeleteGroup);

#[cfg(test)]
mod tests {
    use super::QueueProgress;

    /// A queue's progress as a broker before `min_offset` sent it.
    #[derive(serde::Serialize)]
    struct OldQueueProgress {
        topic: String,
        queue_id: u32,
        broker_offset: u64,
        consumer_offset: u64,
        last_commit_ms: Option<i64>,
    }

    #[test]
    fn lag_counts_from_the_min_offset_when_committed_below_it() {
        let q = |consumer_offset, min_offset| QueueProgress {
            broker_offset: 100,
            consumer_offset,
            min_offset,
            ..QueueProgress::default()
        };
        assert_eq!((q(10, 40).lag(), q(10, 40).below_retention()), (60, true));
        assert_eq!((q(50, 40).lag(), q(50, 40).below_retention()), (50, false));
        assert_eq!((q(120, 0).lag(), q(40, 40).below_retention()), (0, false));
        // An older broker's answer has no min offset: read as 0.
        let old = OldQueueProgress {
            topic: "T".into(),
            queue_id: 1,
            broker_offset: 100,
            consumer_offset: 10,
            last_commit_ms: None,
        };
        let bytes = rmp_serde::to_vec_named(&old).unwrap();
        let q: QueueProgress = crate::frame::decode_value(&bytes).unwrap();
        assert_eq!((q.min_offset, q.lag()), (0, 90));
    }
}
