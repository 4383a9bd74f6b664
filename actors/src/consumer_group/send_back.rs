//! Retry and dead-letter policy for messages a consumer failed (RocketMQ's
//! `SendMessageProcessor.consumerSendMsgBack`), as plain functions.
//!
//! A message delivered `reconsume_times` times before and failed again goes
//! to `%RETRY%<group>` with delay level `3 + reconsume_times` (10 s, 30 s,
//! 1 min, ... capped at the last level, 2 h) — or, once `reconsume_times`
//! reaches the maximum (16), to `%DLQ%<group>`, undelayed. The copy keeps
//! its body, tags, keys and properties, records its original topic
//! (`RETRY_TOPIC`) and id (`ORIGIN_MESSAGE_ID`), and carries
//! `reconsume_times + 1`.

use bytes::Bytes;
use skylark_codec::{
    MessageData, DLQ_TOPIC_PREFIX, PROPERTY_ORIGIN_MESSAGE_ID, PROPERTY_RETRY_TOPIC,
    RETRY_TOPIC_PREFIX,
};

use crate::message_store::record::{DecodedMessage, PROPERTY_DELAY, PROPERTY_KEYS, PROPERTY_TAGS};

/// The highest delay level (2 h).
pub const MAX_DELAY_LEVEL: u32 = 18;

/// Where a failed message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendBackTarget {
    /// The retry topic, redelivered after this delay level.
    Retry { topic: String, delay_level: u32 },
    /// The dead-letter topic.
    Dlq { topic: String },
}

impl SendBackTarget {
    pub fn topic(&self) -> &str {
        match self {
            SendBackTarget::Retry { topic, .. } | SendBackTarget::Dlq { topic } => topic,
        }
    }
}

/// The decision for a message of `group` already redelivered
/// `reconsume_times` times.
pub fn target(group: &str, reconsume_times: u32, max_reconsume_times: u32) -> SendBackTarget {
    if reconsume_times >= max_reconsume_times {
        SendBackTarget::Dlq {
            topic: format!("{DLQ_TOPIC_PREFIX}{group}"),
        }
    } else {
        SendBackTarget::Retry {
            topic: format!("{RETRY_TOPIC_PREFIX}{group}"),
            delay_level: reconsume_times.saturating_add(3).min(MAX_DELAY_LEVEL),
        }
    }
}

/// The copy to store for `target` (its reconsume count is set by the
/// caller on the stored record).
pub fn copy_for(m: &DecodedMessage<'_>, msg_id: &str, target: &SendBackTarget) -> MessageData {
    let mut properties: Vec<(String, String)> = m
        .properties()
        .filter(|(k, _)| ![PROPERTY_TAGS, PROPERTY_KEYS, PROPERTY_DELAY].contains(k))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if !properties.iter().any(|(k, _)| k == PROPERTY_RETRY_TOPIC) {
        properties.push((PROPERTY_RETRY_TOPIC.to_string(), m.topic.to_string()));
    }
    if !properties
        .iter()
        .any(|(k, _)| k == PROPERTY_ORIGIN_MESSAGE_ID)
    {
        properties.push((PROPERTY_ORIGIN_MESSAGE_ID.to_string(), msg_id.to_string()));
    }
    MessageData {
        flag: m.flag,
        tags: m.tags().map(String::from),
        keys: m.keys().map(String::from),
        properties,
        body: Bytes::copy_from_slice(m.body),
        born_timestamp: m.born_timestamp,
        delay_level: match target {
            SendBackTarget::Retry { delay_level, .. } => *delay_level,
            SendBackTarget::Dlq { .. } => 0,
        },
        deliver_at_ms: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A retry of group `g` at `delay_level`.
    fn retry_g(delay_level: u32) -> SendBackTarget {
        SendBackTarget::Retry {
            topic: "%RETRY%g".into(),
            delay_level,
        }
    }

    #[test]
    fn retry_levels_then_dead_letter_after_sixteen() {
        assert_eq!(target("g", 0, 16), retry_g(3));
        assert_eq!(target("g", 5, 16), retry_g(8));
        // Level 18 (2 h) is the last; the 16th redelivery is the last try.
        assert_eq!(target("g", 15, 16), retry_g(18));
        assert_eq!(
            target("g", 16, 16),
            SendBackTarget::Dlq {
                topic: "%DLQ%g".into()
            }
        );
        assert_eq!(target("g", 2, 2).topic(), "%DLQ%g");
        assert_eq!(target("g", 0, 0).topic(), "%DLQ%g");
    }

    #[test]
    fn copy_keeps_content_and_records_origin() {
        use crate::message_store::record::{decode, AppendMessage};
        let props = vec![("user".to_string(), "1".to_string())];
        let host: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
        let a = AppendMessage {
            topic: "Orders",
            queue_id: 2,
            flag: 7,
            tags: Some("TagA"),
            keys: Some("k1"),
            properties: &props,
            body: b"hello",
            born_timestamp: 42,
            born_host: host,
            store_host: host,
            reconsume_times: 0,
            sys_flag: 0,
            prepared_tx_offset: 0,
        };
        let mut buf = vec![0u8; a.encoded_size()];
        let at = crate::message_store::record::Placement {
            queue_offset: 0,
            physical_offset: 0,
            store_timestamp: 1,
        };
        crate::message_store::record::encode_into(&a, at, &mut buf);
        let (m, _) = decode(&buf).unwrap();
        let t = target("g", 0, 16);
        let c = copy_for(&m, "ID1", &t);
        assert_eq!(c.body.as_ref(), b"hello");
        assert_eq!(c.tags.as_deref(), Some("TagA"));
        assert_eq!(c.keys.as_deref(), Some("k1"));
        assert_eq!(c.delay_level, 3);
        assert_eq!(c.flag, 7);
        assert!(c.properties.contains(&("user".into(), "1".into())));
        assert!(c
            .properties
            .contains(&("RETRY_TOPIC".into(), "Orders".into())));
        assert!(c
            .properties
            .contains(&("ORIGIN_MESSAGE_ID".into(), "ID1".into())));
        assert!(!c.properties.iter().any(|(k, _)| k == "TAGS" || k == "KEYS"));
        let d = copy_for(&m, "ID1", &target("g", 16, 16));
        assert_eq!(d.delay_level, 0);
    }
}
