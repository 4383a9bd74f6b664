//! `PullMessage` (20): consumers reading a queue from an offset.
//!
//! Mirrors RocketMQ's `PullMessageProcessor`, long polling included: with a
//! `suspend_timeout_ms` the broker parks the request until a message arrives
//! or the time runs out. Found messages are returned as the broker's stored
//! record bytes concatenated in one `bin`, so the broker copies no message
//! and the client decodes records itself. Tag filtering happens on the broker
//! (by tag hash in the consume queue, then by tag string).
//!
//! Damaged records: the broker checks every record it is about to serve
//! (magic, size against the consume queue entry, CRC). A damaged one is
//! never sent; it is listed in [`PullResponse::damaged`] with its queue
//! offset and the reason, and `next_offset` is past it, so the consumer
//! moves on and can report what was lost. The status stays `Found` when
//! good records come with it and is `NoMatchedMessage` when the answer held
//! only damaged records. Decision: no new [`PullStatus`] variant for it —
//! an older client would fail to decode the whole answer (unknown variant)
//! and stall on that queue exactly as before; with an extra field (absent =
//! none, ignored by older clients) old clients skip the bad record and new
//! ones also report it.

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
    /// The consumer is far behind: read this queue from a slave of the
    /// broker group for now (RocketMQ's `suggestWhichBrokerId`). Absent in
    /// answers of older brokers.
    #[serde(default)]
    pub suggest_slave: bool,
    /// Records of the pulled range that the broker found damaged and did
    /// not send (`next_offset` is already past them). Absent in answers of
    /// older brokers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub damaged: Vec<DamagedRecord>,
    /// The stored records, concatenated (one MessagePack `bin`; decoded as
    /// a slice of the answer frame). Declared last, so it is the end of
    /// the answer: the broker writes the frame up to it and then the
    /// records straight from the mapped CommitLog
    /// ([`crate::encode_frame_with_tail`]).
    #[serde(deserialize_with = "crate::shared_bytes::deserialize")]
    pub records: Bytes,
}

/// A record the broker refused to serve because it failed validation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct DamagedRecord {
    /// Queue offset of the damaged message.
    pub queue_offset: u64,
    /// Its CommitLog (physical) offset; 0 if its index entry was lost.
    pub physical_offset: u64,
    /// Its size in the consume queue entry.
    pub size: u32,
    /// Why it was refused: `record CRC mismatch`, `bad record magic`, a
    /// size mismatch, ...
    pub reason: String,
}

rpc!(PullRequest => PullResponse, Command::PullMessage);

/// Parses a RocketMQ tag expression.
///
/// `"*"`, `""` (or only spaces) → `Ok(None)`: every tag matches.
/// `"A || B"` → `Ok(Some(["A", "B"]))`, each tag trimmed. An empty tag
/// between `||` (`"A || || B"`, `"A ||"`) is [`ProtocolError::InvalidFilter`],
/// and so is a tag with a `|` in it (`"A | B"`, `"A|||B"`): RocketMQ's
/// clients refuse `|` in a tag (`tag should not contain "|"`), so no
/// message carries one and such an expression would silently match
/// nothing; the error suggests `||`.
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
        if tag.contains('|') {
            return Err(ProtocolError::InvalidFilter(format!(
                "tag {tag:?} in expression {expr:?} contains '|', which no tag may: \
                 to match any of several tags, separate them with '||' (e.g. \"TagA || TagB\")"
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
    fn hardening_damaged_records_are_backwards_compatible() {
        // An answer of an older broker (no `damaged` field) decodes.
        #[derive(Serialize)]
        struct Old {
            status: PullStatus,
            next_offset: u64,
            min_offset: u64,
            max_offset: u64,
            count: u32,
            #[serde(with = "serde_bytes")]
            records: Vec<u8>,
        }
        let old = Old {
            status: PullStatus::Found,
            next_offset: 3,
            min_offset: 0,
            max_offset: 9,
            count: 0,
            records: vec![],
        };
        let bytes = rmp_serde::to_vec_named(&old).unwrap();
        let resp: PullResponse = rmp_serde::from_slice(&bytes).unwrap();
        assert!(resp.damaged.is_empty());
        assert_eq!(resp.next_offset, 3);
        // A new answer round-trips its damaged list ...
        let new = PullResponse {
            status: PullStatus::NoMatchedMessage,
            next_offset: 8,
            damaged: vec![DamagedRecord {
                queue_offset: 7,
                physical_offset: 4096,
                size: 300,
                reason: "record CRC mismatch".into(),
            }],
            ..PullResponse::default()
        };
        let bytes = rmp_serde::to_vec_named(&new).unwrap();
        let back: PullResponse = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, new);
        // ... and an older client, which knows no such field, still reads
        // the status and the next offset (it skips past the bad record).
        #[derive(Deserialize)]
        struct OldClient {
            status: PullStatus,
            next_offset: u64,
        }
        let o: OldClient = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!((o.status, o.next_offset), (PullStatus::NoMatchedMessage, 8));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]

        #[test]
        fn any_tag_expression_parses_or_is_invalid_filter(expr in "\\PC{0,64}|[ |*A-Za-z]{0,64}") {
            match parse_tag_expression(&expr) {
                Ok(Some(tags)) => {
                    proptest::prop_assert!(!tags.is_empty());
                    for t in &tags {
                        proptest::prop_assert!(!t.is_empty() && !t.contains('|') && t.trim() == t);
                    }
                }
                Ok(None) | Err(ProtocolError::InvalidFilter(_)) => {}
                Err(e) => proptest::prop_assert!(false, "{e:?}"),
            }
        }

        #[test]
        fn joined_tags_parse_back(
            tags in proptest::collection::vec("[A-Za-z0-9_\\-]{1,8}", 1..6),
            spaces in proptest::collection::vec(" {0,2}", 6),
        ) {
            let expr = tags
                .iter()
                .zip(&spaces)
                .map(|(t, s)| format!("{s}{t}{s}"))
                .collect::<Vec<_>>()
                .join("||");
            proptest::prop_assert_eq!(parse_tag_expression(&expr).unwrap(), Some(tags));
        }
    }

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
        for bad in [
            "A || || B",
            "A ||",
            "|| A",
            "||",
            "A | B",
            "A|B",
            "A ||| B",
            "|",
        ] {
            assert!(
                matches!(
                    parse_tag_expression(bad),
                    Err(ProtocolError::InvalidFilter(_))
                ),
                "{bad:?}"
            );
        }
        // A single bar: the reason names the tag and suggests `||`.
        let e = parse_tag_expression("TagA | TagB").unwrap_err().to_string();
        assert!(e.contains("\"TagA | TagB\""), "{e}");
        assert!(e.contains("'||'"), "{e}");
    }
}
