//! `CreateTopic` (60) and `DeleteTopic` (61): admin operations on a broker's
//! topics, plus the name rules every topic and group must follow.
//!
//! Mirrors RocketMQ's `AdminBrokerProcessor` and `TopicValidator`: names are
//! checked here, once, so the broker, the client and the admin tool reject
//! the same names with the same message.

use serde::{Deserialize, Serialize};

use crate::cmd::broker::TopicConfig;
use crate::cmd::Ack;
use crate::command::{rpc, Command};

/// The pseudo topic whose route lists the brokers that auto-create topics
/// (RocketMQ's `TBW102`).
pub const AUTO_CREATE_TOPIC_KEY: &str = "TBW102";
/// The broker's own topics (RocketMQ's names): delay-level messages, one
/// queue per level ...
pub const SCHEDULE_TOPIC: &str = "SCHEDULE_TOPIC_XXXX";
/// ... arbitrary-time (timer) messages, one queue ...
pub const TIMER_TOPIC: &str = "TIMER_TOPIC_XXXX";
/// ... transactional half messages ...
pub const HALF_TOPIC: &str = "RMQ_SYS_TRANS_HALF_TOPIC";
/// ... and the op log, one record per decided half message.
pub const OP_TOPIC: &str = "RMQ_SYS_TRANS_OP_HALF_TOPIC";
/// Longest topic name (RocketMQ `TopicValidator.TOPIC_MAX_LENGTH`).
pub const TOPIC_MAX_LENGTH: usize = 127;
/// Longest group name (RocketMQ `Validators.CHARACTER_MAX_LENGTH`).
pub const GROUP_MAX_LENGTH: usize = 255;

/// Create (or update) a topic on a broker.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CreateTopicRequest {
    /// The topic's configuration.
    pub config: TopicConfig,
}

/// Delete a topic from a broker.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DeleteTopicRequest {
    /// Topic.
    pub topic: String,
}

/// A broker's view of one topic: its config, per-queue offsets and the
/// pulls parked on it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GetTopicStatsRequest {
    /// Topic.
    pub topic: String,
}

/// One queue's offsets on a broker.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct QueueStats {
    /// Queue id.
    pub queue_id: u32,
    /// Smallest offset still stored.
    pub min_offset: u64,
    /// Offset the next message will get.
    pub max_offset: u64,
}

/// Answer to [`GetTopicStatsRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TopicStats {
    /// The topic's configuration on this broker.
    pub config: TopicConfig,
    /// One entry per read queue.
    pub queues: Vec<QueueStats>,
    /// Messages stored since the broker started.
    pub messages_put: u64,
    /// Long-poll pulls currently parked on the topic.
    pub parked_pulls: u64,
}

rpc!(CreateTopicRequest => Ack, Command::CreateTopic);
rpc!(GetTopicStatsRequest => TopicStats, Command::GetTopicStats);
rpc!(DeleteTopicRequest => Ack, Command::DeleteTopic);

/// Checks a topic name: non-empty, at most [`TOPIC_MAX_LENGTH`] characters
/// from `[%|a-zA-Z0-9_-]`. The error explains the problem.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    validate_name("topic", name, TOPIC_MAX_LENGTH)
}

/// Checks a producer or consumer group name: same characters as topics, at
/// most [`GROUP_MAX_LENGTH`] characters.
pub fn validate_group_name(name: &str) -> Result<(), String> {
    validate_name("group", name, GROUP_MAX_LENGTH)
}

fn validate_name(what: &str, name: &str, max: usize) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("{what} name is empty"));
    }
    if name.len() > max {
        return Err(format!(
            "{what} name is {} characters long, the maximum is {max}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '%' | '|' | '_' | '-')))
    {
        return Err(format!(
            "{what} name {name:?} contains {c:?}; allowed characters are [%|a-zA-Z0-9_-]"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]

        #[test]
        fn any_name_is_valid_or_explained(name in "\\PC{0,300}|[%|a-zA-Z0-9_-]{0,300}") {
            let ok = !name.is_empty()
                && name.len() <= TOPIC_MAX_LENGTH
                && name.chars().all(|c| c.is_ascii_alphanumeric() || "%|_-".contains(c));
            match validate_topic_name(&name) {
                Ok(()) => proptest::prop_assert!(ok),
                Err(why) => proptest::prop_assert!(!ok && !why.is_empty()),
            }
            let _ = validate_group_name(&name);
        }
    }

    #[test]
    fn topic_names() {
        assert!(validate_topic_name("TopicTest").is_ok());
        assert!(validate_topic_name("%RETRY%group_1|x-y").is_ok());
        assert!(validate_topic_name(&"a".repeat(127)).is_ok());
        assert!(validate_topic_name(&"a".repeat(128)).is_err());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("a b").is_err());
        assert!(validate_topic_name("a.b").is_err());
        assert!(validate_topic_name("é").is_err());
        assert!(validate_group_name(&"g".repeat(255)).is_ok());
        assert!(validate_group_name(&"g".repeat(256)).is_err());
    }
}
