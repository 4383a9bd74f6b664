//! The two message transformations of delayed delivery, as plain functions:
//! a producer's message → its parked form in the schedule or timer topic
//! (at send time), and a parked record → the copy delivered to the real
//! topic (when due).

use std::sync::Arc;

use bytes::Bytes;

use super::levels::{
    delivered_properties, PROPERTY_DELIVER_AT, PROPERTY_REAL_QID, PROPERTY_REAL_TOPIC,
    SCHEDULE_TOPIC, TIMER_TOPIC,
};
use super::timer_index::TimerEntry;
use crate::message_store::record::PROPERTY_DELAY;
use crate::message_store::DecodedMessage;
use crate::storage::StoredMessage;

/// Where a delayed message waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Park {
    /// On a delay level (1-based, already clamped).
    Level(u32),
    /// Until a Unix time in ms.
    At(i64),
}

/// Rewrites `m` (addressed to its real topic) into its parked form:
/// schedule topic queue `level - 1`, or the timer topic, with the real
/// topic and queue kept as properties.
pub fn park(m: &mut StoredMessage, how: Park, real_queue_id: i32) {
    let real_topic = m.topic.to_string();
    m.properties.retain(|(k, _)| {
        k != PROPERTY_DELAY
            && k != PROPERTY_DELIVER_AT
            && k != PROPERTY_REAL_TOPIC
            && k != PROPERTY_REAL_QID
    });
    match how {
        Park::Level(level) => {
            m.topic = Arc::from(SCHEDULE_TOPIC);
            m.queue_id = level.saturating_sub(1);
            m.properties
                .push((PROPERTY_DELAY.to_string(), level.to_string()));
        }
        Park::At(at) => {
            m.topic = Arc::from(TIMER_TOPIC);
            m.queue_id = 0;
            m.properties
                .push((PROPERTY_DELIVER_AT.to_string(), at.to_string()));
        }
    }
    m.properties
        .push((PROPERTY_REAL_TOPIC.to_string(), real_topic));
    m.properties
        .push((PROPERTY_REAL_QID.to_string(), real_queue_id.to_string()));
}

/// The copy of a parked record to append to its real topic, with the
/// queue asked for (-1: the topic chooses). `None` if the record carries
/// no real topic (not written by a delayed send).
pub fn delivery_copy(d: &DecodedMessage<'_>) -> Option<(i32, StoredMessage)> {
    let topic = d.property(PROPERTY_REAL_TOPIC)?;
    let queue_id = d
        .property(PROPERTY_REAL_QID)
        .and_then(|q| q.parse::<i32>().ok())
        .unwrap_or(-1);
    let m = StoredMessage {
        topic: Arc::from(topic),
        queue_id: 0,
        flag: d.flag,
        tags: d.tags().map(String::from),
        keys: d.keys().map(String::from),
        properties: delivered_properties(d.properties()),
        body: Bytes::copy_from_slice(d.body),
        born_timestamp: d.born_timestamp,
        born_host: d.born_host,
        store_host: d.store_host,
        reconsume_times: d.reconsume_times,
        sys_flag: d.sys_flag,
        prepared_tx_offset: 0,
    };
    Some((queue_id, m))
}

/// The delivery time of a timer record (a missing or garbled time means
/// "now": deliver rather than lose it).
pub fn deliver_at(d: &DecodedMessage<'_>) -> i64 {
    d.property(PROPERTY_DELIVER_AT)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The timer index entry of a timer record.
pub fn timer_entry(d: &DecodedMessage<'_>) -> TimerEntry {
    TimerEntry {
        deliver_at: deliver_at(d),
        physical_offset: d.physical_offset,
        size: d.record_size,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message_store::record::{encode_into, Placement};

    fn message() -> StoredMessage {
        let host = "127.0.0.1:1".parse().unwrap();
        StoredMessage {
            topic: Arc::from("Real"),
            queue_id: 0,
            flag: 7,
            tags: Some("TagA".into()),
            keys: Some("k1".into()),
            properties: vec![
                ("UNIQ_KEY".into(), "u1".into()),
                ("DELAY".into(), "40".into()),
            ],
            body: Bytes::from_static(b"hello"),
            born_timestamp: 11,
            born_host: host,
            store_host: host,
            reconsume_times: 0,
            sys_flag: 0,
            prepared_tx_offset: 0,
        }
    }

    fn round_trip(m: &StoredMessage) -> Vec<u8> {
        let a = m.as_append();
        let mut buf = vec![0u8; a.encoded_size()];
        encode_into(
            &a,
            Placement {
                queue_offset: 0,
                physical_offset: 0,
                store_timestamp: 12,
            },
            &mut buf,
        );
        buf
    }

    #[test]
    fn level_park_and_delivery_restore_the_message() {
        let mut m = message();
        park(&mut m, Park::Level(2), 3);
        assert_eq!((&*m.topic, m.queue_id), (SCHEDULE_TOPIC, 1));
        let buf = round_trip(&m);
        let (d, _) = crate::message_store::decode(&buf).unwrap();
        assert_eq!(d.property("DELAY"), Some("2"));
        let (q, back) = delivery_copy(&d).unwrap();
        assert_eq!(q, 3);
        let orig = message();
        assert_eq!(&*back.topic, "Real");
        assert_eq!((back.tags, back.keys), (orig.tags, orig.keys));
        assert_eq!(back.body, orig.body);
        assert_eq!(back.flag, 7);
        assert_eq!(back.born_timestamp, 11);
        assert_eq!(back.properties, vec![("UNIQ_KEY".into(), "u1".into())]);
    }

    #[test]
    fn timer_park_keeps_the_time() {
        let mut m = message();
        park(&mut m, Park::At(123_456), -1);
        assert_eq!((&*m.topic, m.queue_id), (TIMER_TOPIC, 0));
        let buf = round_trip(&m);
        let (d, _) = crate::message_store::decode(&buf).unwrap();
        assert_eq!(deliver_at(&d), 123_456);
        assert_eq!(delivery_copy(&d).unwrap().0, -1);
    }
}
