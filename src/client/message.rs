//! [`ReceivedMessage`]: a pulled message, decoded and owned.
//!
//! A pull answer carries the broker's stored records back to back (the
//! broker does not re-encode them); [`decode_records`] walks them with
//! `record::decode`, keeps the body as a zero-copy slice of the answer, and
//! re-checks the exact tag, since the broker filters only by tag hash
//! (RocketMQ does the same client-side check). [`ReceivedMessage::json`] is
//! the `skylark consume --json` contract (README.md, "Quickstart").

use std::collections::BTreeMap;
use std::net::SocketAddr;

use base64::Engine as _;
use bytes::Bytes;
use serde::Serialize;
use skylark_codec::message::{PROPERTY_KEYS, PROPERTY_TAGS};
use skylark_codec::record;
use skylark_codec::MessageId;

use super::error::{ClientError, Result};

/// A message as delivered to a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// Topic.
    pub topic: String,
    /// Queue id.
    pub queue_id: u32,
    /// Offset in the queue.
    pub queue_offset: u64,
    /// Offset in the storing broker's commit log.
    pub physical_offset: u64,
    /// [`MessageId`] of (store host, physical offset), hex.
    pub msg_id: String,
    /// The tag, if any.
    pub tags: Option<String>,
    /// Keys (space separated), if any.
    pub keys: Option<String>,
    /// Every other property (user and system), in stored order.
    pub properties: Vec<(String, String)>,
    /// Payload.
    pub body: Bytes,
    /// When the producer created it (ms since the epoch).
    pub born_timestamp: i64,
    /// When the broker stored it (ms since the epoch).
    pub store_timestamp: i64,
    /// The broker that stored it.
    pub store_host: SocketAddr,
    /// How many times it was redelivered.
    pub reconsume_times: u32,
    /// Application flag.
    pub flag: i32,
}

/// The JSON shape of a consumed message (`skylark consume --json`).
#[derive(Debug, Serialize)]
pub struct MessageJson<'a> {
    topic: &'a str,
    queue_id: u32,
    queue_offset: u64,
    msg_id: &'a str,
    tags: Option<&'a str>,
    keys: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body_base64: Option<String>,
    born_timestamp: i64,
    store_timestamp: i64,
    reconsume_times: u32,
    properties: BTreeMap<&'a str, &'a str>,
}

impl ReceivedMessage {
    /// The body as text, if it is valid UTF-8.
    pub fn body_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }

    /// A property by name.
    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `consume --json` object: `body` when the payload is UTF-8,
    /// `body_base64` otherwise.
    pub fn json(&self) -> MessageJson<'_> {
        let body = self.body_str();
        MessageJson {
            topic: &self.topic,
            queue_id: self.queue_id,
            queue_offset: self.queue_offset,
            msg_id: &self.msg_id,
            tags: self.tags.as_deref(),
            keys: self.keys.as_deref(),
            body,
            body_base64: body
                .is_none()
                .then(|| base64::engine::general_purpose::STANDARD.encode(&self.body)),
            born_timestamp: self.born_timestamp,
            store_timestamp: self.store_timestamp,
            reconsume_times: self.reconsume_times,
            properties: self
                .properties
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
        }
    }
}

/// Whether a message with tag `tag` matches the parsed expression `tags`
/// (`None` = `*`, everything).
pub fn tag_matches(tags: Option<&[String]>, tag: Option<&str>) -> bool {
    match tags {
        None => true,
        Some(list) => tag.is_some_and(|t| list.iter().any(|x| x == t)),
    }
}

/// Decodes the concatenated records of a pull answer from broker `addr`,
/// dropping messages whose exact tag does not match `tags`.
pub fn decode_records(
    records: &Bytes,
    addr: &str,
    tags: Option<&[String]>,
) -> Result<Vec<ReceivedMessage>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < records.len() {
        let (d, len) = record::decode(&records[pos..]).map_err(|e| ClientError::Decode {
            addr: addr.to_string(),
            reason: format!("at byte {pos}: {e}"),
        })?;
        if len == 0 {
            return Err(ClientError::Decode {
                addr: addr.to_string(),
                reason: format!("zero-length record at byte {pos}"),
            });
        }
        pos += len;
        // One pass over the properties: tags and keys apart, the rest kept
        // (the first of a repeated tags or keys entry wins, as `property`).
        let (mut msg_tags, mut msg_keys) = (None, None);
        let mut properties = Vec::new();
        for (k, v) in d.properties() {
            match k {
                PROPERTY_TAGS => {
                    msg_tags.get_or_insert(v);
                }
                PROPERTY_KEYS => {
                    msg_keys.get_or_insert(v);
                }
                _ => properties.push((k.to_string(), v.to_string())),
            }
        }
        if !tag_matches(tags, msg_tags) {
            continue;
        }
        out.push(ReceivedMessage {
            topic: d.topic.to_string(),
            queue_id: d.queue_id,
            queue_offset: d.queue_offset,
            physical_offset: d.physical_offset,
            msg_id: MessageId::new(d.store_host, d.physical_offset).to_hex(),
            tags: msg_tags.map(String::from),
            keys: msg_keys.map(String::from),
            properties,
            body: records.slice_ref(d.body),
            born_timestamp: d.born_timestamp,
            store_timestamp: d.store_timestamp,
            store_host: d.store_host,
            reconsume_times: d.reconsume_times,
            flag: d.flag,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(body: &'static [u8]) -> ReceivedMessage {
        ReceivedMessage {
            topic: "T".into(),
            queue_id: 1,
            queue_offset: 7,
            physical_offset: 99,
            msg_id: "ID".into(),
            tags: Some("TagA".into()),
            keys: None,
            properties: vec![("UNIQ_KEY".into(), "u1".into())],
            body: Bytes::from_static(body),
            born_timestamp: 1,
            store_timestamp: 2,
            store_host: "127.0.0.1:10911".parse().unwrap_or_else(|_| unreachable!()),
            reconsume_times: 0,
            flag: 0,
        }
    }

    #[test]
    fn json_shape_text_body() {
        let v = serde_json::to_value(msg(b"hello").json()).unwrap_or_default();
        let keys: Vec<&str> = v
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let mut expected = vec![
            "topic",
            "queue_id",
            "queue_offset",
            "msg_id",
            "tags",
            "keys",
            "body",
            "born_timestamp",
            "store_timestamp",
            "reconsume_times",
            "properties",
        ];
        let mut got = keys.clone();
        got.sort_unstable();
        expected.sort_unstable();
        assert_eq!(got, expected);
        assert_eq!(v["body"], "hello");
        assert_eq!(v["tags"], "TagA");
        assert!(v["keys"].is_null());
        assert_eq!(v["properties"]["UNIQ_KEY"], "u1");
        assert_eq!(v["queue_offset"], 7);
    }

    #[test]
    fn json_shape_binary_body() {
        let v = serde_json::to_value(msg(&[0xff, 0x00, 0xfe]).json()).unwrap_or_default();
        assert!(v.get("body").is_none());
        assert_eq!(v["body_base64"], "/wD+");
    }

    #[test]
    fn exact_tag_recheck() {
        let ab = vec!["A".to_string(), "B".to_string()];
        assert!(tag_matches(None, None));
        assert!(tag_matches(None, Some("X")));
        assert!(tag_matches(Some(&ab), Some("B")));
        assert!(!tag_matches(Some(&ab), Some("C")));
        assert!(!tag_matches(Some(&ab), None));
        assert!(!tag_matches(Some(&ab), Some("a")));
    }

    #[test]
    fn garbage_records_are_an_error() {
        let r = decode_records(&Bytes::from_static(&[0, 0, 0, 9, 1, 2, 3]), "b:1", None);
        assert!(matches!(r, Err(ClientError::Decode { .. })));
        assert_eq!(
            decode_records(&Bytes::new(), "b:1", None)
                .map(|v| v.len())
                .ok(),
            Some(0)
        );
    }
}
