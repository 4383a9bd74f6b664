//! How transactional state is written into the commit log, and read back.
//!
//! * A half message is the producer's message stored in
//!   [`HALF_TOPIC`] queue 0 with [`PROPERTY_REAL_TOPIC`] / [`PROPERTY_REAL_QUEUE_ID`]
//!   naming where it belongs; consumers of the real topic never see it.
//! * Committing re-appends it to its real topic without the transaction
//!   properties, with `prepared_tx_offset` = the half's physical offset.
//! * Every decision (commit, rollback, discard) is an op record in
//!   [`OP_TOPIC`] queue 0: tag `d`, body = the half's queue offset in
//!   decimal, property [`PROPERTY_OP`] = what was decided.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use skylark_codec::{
    PROPERTY_PRODUCER_GROUP, PROPERTY_REAL_QUEUE_ID, PROPERTY_REAL_TOPIC, PROPERTY_TRANSACTION_ID,
    PROPERTY_TRANSACTION_PREPARED,
};

use crate::message_store::record::{PROPERTY_KEYS, PROPERTY_TAGS};
use crate::message_store::DecodedMessage;
use crate::storage::StoredMessage;

/// Where half messages are stored, and the op log (one record per decided
/// half message): the protocol's (RocketMQ's) names.
pub use skylark_codec::{HALF_TOPIC, OP_TOPIC};
/// Tag of an op record (RocketMQ's `REMOVETAG`).
pub const OP_TAG: &str = "d";
pub use skylark_codec::message::{PROPERTY_HALF_QUEUE_OFFSET, PROPERTY_OP};

/// What an op record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Commit,
    Rollback,
    Discard,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Commit => "commit",
            Decision::Rollback => "rollback",
            Decision::Discard => "discard",
        }
    }
}

/// Whether a producer's message is a half message.
pub fn is_half(properties: &[(String, String)]) -> bool {
    properties
        .iter()
        .any(|(k, v)| k == PROPERTY_TRANSACTION_PREPARED && v == "true")
}

/// Turns a producer's message for `real_topic`/`real_queue` into the half
/// message to store; returns it with its producer group and transaction id.
pub fn to_half(mut m: StoredMessage, producer_group: &str, real_queue: i32) -> StoredMessage {
    let real_topic = m.topic.to_string();
    m.properties
        .retain(|(k, _)| k != PROPERTY_REAL_TOPIC && k != PROPERTY_REAL_QUEUE_ID);
    if !m
        .properties
        .iter()
        .any(|(k, _)| k == PROPERTY_PRODUCER_GROUP)
    {
        m.properties
            .push((PROPERTY_PRODUCER_GROUP.into(), producer_group.to_string()));
    }
    m.properties.push((PROPERTY_REAL_TOPIC.into(), real_topic));
    m.properties
        .push((PROPERTY_REAL_QUEUE_ID.into(), real_queue.to_string()));
    m.topic = Arc::from(HALF_TOPIC);
    m.queue_id = 0;
    m
}

/// The real topic and queue (`-1`: any) of a stored half message.
pub fn real_destination(d: &DecodedMessage<'_>) -> Option<(String, i32)> {
    let topic = d.property(PROPERTY_REAL_TOPIC)?.to_string();
    let queue = d
        .property(PROPERTY_REAL_QUEUE_ID)
        .and_then(|q| q.parse().ok())
        .unwrap_or(-1);
    Some((topic, queue))
}

/// The producer group and transaction id of a stored half message.
pub fn half_owner(d: &DecodedMessage<'_>) -> (String, String) {
    (
        d.property(PROPERTY_PRODUCER_GROUP)
            .unwrap_or_default()
            .to_string(),
        d.property(PROPERTY_TRANSACTION_ID)
            .unwrap_or_default()
            .to_string(),
    )
}

/// The message to append to the real topic when `d` (a half) commits.
pub fn committed(d: &DecodedMessage<'_>, real_topic: &str) -> StoredMessage {
    let strip = [
        PROPERTY_TAGS,
        PROPERTY_KEYS,
        PROPERTY_TRANSACTION_PREPARED,
        PROPERTY_PRODUCER_GROUP,
        PROPERTY_REAL_TOPIC,
        PROPERTY_REAL_QUEUE_ID,
    ];
    StoredMessage {
        topic: Arc::from(real_topic),
        queue_id: 0,
        flag: d.flag,
        tags: d.tags().map(String::from),
        keys: d.keys().map(String::from),
        properties: d
            .properties()
            .filter(|(k, _)| !strip.contains(k) && *k != PROPERTY_HALF_QUEUE_OFFSET)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain([(
                PROPERTY_HALF_QUEUE_OFFSET.to_string(),
                d.queue_offset.to_string(),
            )])
            .collect(),
        body: Bytes::copy_from_slice(d.body),
        born_timestamp: d.born_timestamp,
        born_host: d.born_host,
        store_host: d.store_host,
        reconsume_times: 0,
        sys_flag: 0,
        prepared_tx_offset: d.physical_offset,
    }
}

/// The op record of a decision about the half at `half_queue_offset`.
pub fn op_record(half_queue_offset: u64, decision: Decision, host: SocketAddr) -> StoredMessage {
    StoredMessage {
        topic: Arc::from(OP_TOPIC),
        queue_id: 0,
        flag: 0,
        tags: Some(OP_TAG.to_string()),
        keys: None,
        properties: vec![(PROPERTY_OP.to_string(), decision.as_str().to_string())],
        body: Bytes::from(half_queue_offset.to_string()),
        born_timestamp: crate::transaction::now_ms(),
        born_host: host,
        store_host: host,
        reconsume_times: 0,
        sys_flag: 0,
        prepared_tx_offset: 0,
    }
}

/// The half (queue offset) a committed message came from: it must carry
/// [`PROPERTY_HALF_QUEUE_OFFSET`].
pub fn committed_from(d: &DecodedMessage<'_>) -> Option<(u64, u64)> {
    let qo = d.property(PROPERTY_HALF_QUEUE_OFFSET)?.parse().ok()?;
    Some((qo, d.prepared_tx_offset))
}

/// The half queue offset an op record refers to.
pub fn op_target(d: &DecodedMessage<'_>) -> Option<u64> {
    std::str::from_utf8(d.body).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message_store::{decode, Store, StoreConfig};

    fn host() -> SocketAddr {
        "127.0.0.1:10911".parse().unwrap()
    }

    #[test]
    fn half_commit_and_op_round_trip_through_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = StoreConfig {
            data_dir: dir.path().to_path_buf(),
            segment_size: 1 << 20,
            ..StoreConfig::default()
        };
        let log = slog::Logger::root(slog::Discard, slog::o!());
        let mut store = Store::open(cfg, log).unwrap();
        let m = StoredMessage {
            topic: Arc::from("Orders"),
            queue_id: 0,
            flag: 3,
            tags: Some("TagA".into()),
            keys: Some("k1".into()),
            properties: vec![
                (PROPERTY_TRANSACTION_PREPARED.into(), "true".into()),
                (PROPERTY_TRANSACTION_ID.into(), "tx-1".into()),
                ("user".into(), "v".into()),
            ],
            body: Bytes::from_static(b"hello"),
            born_timestamp: 7,
            born_host: host(),
            store_host: host(),
            reconsume_times: 0,
            sys_flag: 0,
            prepared_tx_offset: 0,
        };
        assert!(is_half(&m.properties));
        let half = to_half(m, "pg", 2);
        let r = store.append(&[half.as_append()]).unwrap();
        let rec = store.read_at(r.results[0].physical_offset, 0).unwrap();
        let (d, _) = decode(&rec).unwrap();
        assert_eq!(d.topic, HALF_TOPIC);
        assert_eq!(real_destination(&d), Some(("Orders".into(), 2)));
        assert_eq!(half_owner(&d), ("pg".into(), "tx-1".into()));
        let c = committed(&d, "Orders");
        assert_eq!(c.tags.as_deref(), Some("TagA"));
        assert_eq!(c.keys.as_deref(), Some("k1"));
        assert_eq!(c.prepared_tx_offset, r.results[0].physical_offset);
        let cr = store.append(&[c.as_append()]).unwrap();
        let rec = store.read_at(cr.results[0].physical_offset, 0).unwrap();
        let (cd, _) = decode(&rec).unwrap();
        assert_eq!(
            committed_from(&cd),
            Some((r.results[0].queue_offset, r.results[0].physical_offset))
        );
        assert!(!is_half(&c.properties));
        assert!(c.properties.iter().any(|(k, _)| k == "user"));
        assert!(!c.properties.iter().any(|(k, _)| k == PROPERTY_REAL_TOPIC));
        let op = op_record(41, Decision::Rollback, host());
        let r = store.append(&[op.as_append()]).unwrap();
        let rec = store.read_at(r.results[0].physical_offset, 0).unwrap();
        let (d, _) = decode(&rec).unwrap();
        assert_eq!(op_target(&d), Some(41));
        assert_eq!(d.property(PROPERTY_OP), Some("rollback"));
    }
}
