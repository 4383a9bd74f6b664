//! `PullMessage` (20): consumers reading a queue from an offset.
//!
//! Mirrors RocketMQ's `PullMessageProcessor`, long polling included: with a
//! `suspend_timeout_ms` the broker parks the request until a message arrives
//! or the time runs out. Found messages are returned as the broker's stored
//! record bytes concatenated in one `bin`, so the broker copies no message
//! and the client decodes records itself. Tag filtering happens on the broker
//! (by tag hash in the consume queue, then by tag string).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::command::{rpc, Command};
use crate::error::{ProtocolError, Result};

/// Read messages from one queue.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PullRequest {
    /// The consumer's group.
    pub consumer_group: String,
    /// Topic to read.
    pub topic: String,
    /// Queue to read.
    pub queue_id: u32,
    /// First logical offset wanted.
    pub queue_offset: u64,
    /// At most this many messages.
    pub max_messages: u32,
    /// At most about this many bytes of records (at least one record is
    /// returned if any matches).
    pub max_bytes: u32,
    /// Long-poll: how long the broker may hold the request when nothing is
    /// available; 0 = answer at once.
    pub suspend_timeout_ms: u64,
    /// Tag expression (`"TagA || TagB"`, `"*"`); `None` = all.
    pub subscription: Option<String>,
    /// SQL92 filter expression over properties, if any.
    pub sql: Option<String>,
    /// Offset to commit for the group at the same time (RocketMQ's
    /// piggy-backed commit), if any.
    pub commit_offset: Option<u64>,
}

/// Outcome of a pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum PullStatus {
    /// Records are returned.
    Found,
    /// Nothing at or after the offset (yet).
    #[default]
    NoNewMessage,
    /// Messages exist but none matched the filter; continue at `next_offset`.
    NoMatchedMessage,
    /// The offset is outside `[min_offset, max_offset]`; continue at
    /// `next_offset`.
    OffsetIllegal,
}

/// Records found by a pull.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PullResponse {
    /// Outcome.
    pub status: PullStatus,
    /// Offset to pull from next time.
    pub next_offset: u64,
    /// Smallest offset still stored in the queue.
    pub min_offset: u64,
    /// Offset after the last message of the queue.
    pub max_offset: u64,
    /// Number of records in `records`.
    pub count: u32,
    /// The stored records, concatenated (one MessagePack `bin`; decoded as
    /// a slice of the answer frame).
    #[serde(deserialize_with = "crate::shared_bytes::deserialize")]
    pub records: Bytes,
    /// The consumer is far behind: read this queue from a slave of the
    /// broker group for now (RocketMQ's `suggestWhichBrokerId`). Absent in
    /// answers of older brokers.
    #[serde(default)]
    pub suggest_slave: bool,
}

rpc!(PullRequest => PullResponse, Command::PullMessage);

/// Parses a RocketMQ tag expression.
///
/// `"*"`, `""` (or only spaces) → `Ok(None)`: every tag matches.
/// `"A || B"` → `Ok(Some(["A", "B"]))`, each tag trimmed. An empty tag
/// between `||` (`"A || || B"`, `"A ||"`) is [`ProtocolError::InvalidFilter`].
pub fn parse_tag_expression(expr: &str) -> Result<Option<Vec<String>>> {
    let expr = expr.trim();
    if expr.is_empty() || expr == "*" {
        return Ok(None);
    }
    let mut tags = Vec::new();
    for part in expr.split("||") {
        let tag = part.trim();
        if tag.is_empty() {
            return Err(ProtocolError::InvalidFilter(format!(
                "empty tag in expression {expr:?}"
            )));
        }
        tags.push(tag.to_string());
    }
    Ok(Some(tags))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_expressions() {
        assert_eq!(parse_tag_expression("*").unwrap(), None);
        assert_eq!(parse_tag_expression("  ").unwrap(), None);
        assert_eq!(
            parse_tag_expression(" TagA ||TagB ").unwrap(),
            Some(vec!["TagA".to_string(), "TagB".to_string()])
        );
        assert_eq!(
            parse_tag_expression("A").unwrap(),
            Some(vec!["A".to_string()])
        );
        for bad in ["A || || B", "A ||", "|| A", "||"] {
            assert!(
                matches!(
                    parse_tag_expression(bad),
                    Err(ProtocolError::InvalidFilter(_))
                ),
                "{bad:?}"
            );
        }
    }
}
