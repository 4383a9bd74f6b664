//! The on-disk (and on-the-wire) record format of the CommitLog: the
//! writing side.
//!
//! A record is what the broker stores for one message and what it sends back
//! as-is in pull responses. The store encodes straight into the mapped
//! segment, no intermediate buffer ([`encode_into`]); the reader, which a
//! client uses too, is `skylark_codec::record` ([`decode`], re-exported here
//! with the format's constants). All integers are big-endian:
//!
//! | offset | field | type |
//! |---|---|---|
//! | 0 | total size (whole record) | u32 |
//! | 4 | magic [`MESSAGE_MAGIC`] | u32 |
//! | 8 | CRC32 (crc32fast) of bytes `12..total` | u32 |
//! | 12 | queue id | u32 |
//! | 16 | flag | i32 |
//! | 20 | queue offset | u64 |
//! | 28 | physical offset | u64 |
//! | 36 | sys flag | u32 |
//! | 40 | born timestamp (ms) | i64 |
//! | 48 | born host: 16-byte IPv6 (IPv4 as `::ffff:a.b.c.d`) + u16 port | 18 bytes |
//! | 66 | store timestamp (ms) | i64 |
//! | 74 | store host | 18 bytes |
//! | 92 | reconsume count | u32 |
//! | 96 | prepared-transaction offset | u64 |
//! | 104 | body length | u32 |
//! | 108 | body | bytes |
//! | .. | topic length, topic (UTF-8) | u16 + bytes |
//! | .. | properties length, properties (UTF-8) | u16 + bytes |
//!
//! Properties are RocketMQ-style `name\u{1}value\u{2}` pairs; tags and keys
//! travel as the `TAGS` and `KEYS` properties.
//!
//! Decision: the CRC covers everything after the CRC field (header, body,
//! topic, properties), not only the body as in RocketMQ, so that recovery
//! also detects a damaged header (a flipped queue id or topic byte).
//!
//! The tail of a segment that cannot hold the next record is filled by an
//! end-of-file marker: total size (the remaining bytes) + [`BLANK_MAGIC`].

use std::net::{IpAddr, SocketAddr};

use super::error::{Result, StoreError};

/// Longest accepted topic name in bytes.
pub const MAX_TOPIC_LEN: usize = 255;
/// Longest encoded properties block in bytes.
pub const MAX_PROPERTIES_LEN: usize = u16::MAX as usize;

// The format's constants and its reader live with the protocol (a client
// decodes pull answers with them); the store uses them from here.
pub use skylark_codec::message::{PROPERTY_DELAY, PROPERTY_KEYS, PROPERTY_TAGS, PROPERTY_UNIQ_KEY};
pub use skylark_codec::record::{
    be_u32, be_u64, peek_header, CorruptRecord, DecodedMessage, BLANK_MAGIC, EOF_MARKER_LEN,
    HEADER_LEN, MESSAGE_MAGIC, MIN_RECORD_SIZE, NAME_VALUE_SEP, OFF_PHYSICAL_OFFSET, OFF_QUEUE_ID,
    OFF_QUEUE_OFFSET, OFF_STORE_TIMESTAMP, PROPERTY_SEP,
};

/// [`skylark_codec::record::decode`] with the store's error type.
pub fn decode(buf: &[u8]) -> Result<(DecodedMessage<'_>, usize)> {
    Ok(skylark_codec::record::decode(buf)?)
}

/// A message as the store writes it, before the store gives it its place
/// (offsets and store time). One definition for its two forms:
/// [`AppendMessage`] borrows its names and bytes for an append, and the
/// Storage actor's `StoredMessage` owns them to travel between actors.
/// `Name` is the topic's type, `Text` that of tags and keys, `Props` that of
/// the property list, `Body` that of the body.
#[derive(Debug, Clone, Copy)]
pub struct MessageOf<Name, Text, Props, Body> {
    pub topic: Name,
    pub queue_id: u32,
    pub flag: i32,
    pub tags: Option<Text>,
    pub keys: Option<Text>,
    /// User and system properties (unique id, delay level, ...).
    pub properties: Props,
    pub body: Body,
    pub born_timestamp: i64,
    pub born_host: SocketAddr,
    pub store_host: SocketAddr,
    pub reconsume_times: u32,
    pub sys_flag: u32,
    pub prepared_tx_offset: u64,
}

/// One message to append, borrowed from the caller.
pub type AppendMessage<'a> = MessageOf<&'a str, &'a str, &'a [(String, String)], &'a [u8]>;

fn pair_len(name: &str, value: &str) -> usize {
    name.len() + value.len() + 2
}

fn has_separator(s: &str) -> bool {
    // Both separators are ASCII, so a byte search finds exactly them (a
    // `char` pattern decodes UTF-8 and was 6% of an indexed append).
    memchr::memchr2(NAME_VALUE_SEP as u8, PROPERTY_SEP as u8, s.as_bytes()).is_some()
}

#[cfg(test)]
impl<'a> AppendMessage<'a> {
    /// A message for tests: queue 0, no tags, keys or properties, born at
    /// 0 ms, born and stored at 127.0.0.1:10911. Set the rest with struct
    /// update syntax.
    pub(crate) fn for_test(topic: &'a str, body: &'a [u8]) -> AppendMessage<'a> {
        let host = SocketAddr::from(([127, 0, 0, 1], 10911));
        AppendMessage {
            topic,
            queue_id: 0,
            flag: 0,
            tags: None,
            keys: None,
            properties: &[],
            body,
            born_timestamp: 0,
            born_host: host,
            store_host: host,
            reconsume_times: 0,
            sys_flag: 0,
            prepared_tx_offset: 0,
        }
    }
}

impl AppendMessage<'_> {
    fn properties_len(&self) -> usize {
        let mut n = 0;
        if let Some(t) = self.tags {
            n += pair_len(PROPERTY_TAGS, t);
        }
        if let Some(k) = self.keys {
            n += pair_len(PROPERTY_KEYS, k);
        }
        for (k, v) in self.properties {
            n += pair_len(k, v);
        }
        n
    }

    /// Size of the encoded record.
    pub fn encoded_size(&self) -> usize {
        HEADER_LEN + self.body.len() + 2 + self.topic.len() + 2 + self.properties_len()
    }

    /// Checks the message against the format's and the configured limits and
    /// returns its encoded size.
    pub fn validate(&self, max_body: usize, max_record: usize) -> Result<usize> {
        if self.body.len() > max_body {
            return Err(StoreError::MessageTooLarge {
                what: "body",
                size: self.body.len(),
                limit: max_body,
            });
        }
        if self.topic.is_empty() || self.topic.len() > MAX_TOPIC_LEN {
            return Err(StoreError::BadMessage(format!(
                "topic length {} not within 1..={MAX_TOPIC_LEN}",
                self.topic.len()
            )));
        }
        let props = self.properties_len();
        if props > MAX_PROPERTIES_LEN {
            return Err(StoreError::MessageTooLarge {
                what: "properties (tags, keys and user properties)",
                size: props,
                limit: MAX_PROPERTIES_LEN,
            });
        }
        let bad_prop = self.tags.is_some_and(has_separator)
            || self.keys.is_some_and(has_separator)
            || self
                .properties
                .iter()
                .any(|(k, v)| k.is_empty() || has_separator(k) || has_separator(v));
        if bad_prop {
            let bad = self
                .tags
                .filter(|t| has_separator(t))
                .map(|_| "the tag".to_string())
                .or_else(|| {
                    self.keys
                        .filter(|k| has_separator(k))
                        .map(|_| "the keys".to_string())
                })
                .or_else(|| {
                    self.properties
                        .iter()
                        .find(|(k, v)| k.is_empty() || has_separator(k) || has_separator(v))
                        .map(|(k, _)| format!("property {k:?}"))
                })
                .unwrap_or_default();
            return Err(StoreError::BadMessage(format!(
                "{bad}: property names must be non-empty, and no name or value may contain \\u{{1}} or \\u{{2}}"
            )));
        }
        let size = self.encoded_size();
        if size > max_record {
            return Err(StoreError::MessageTooLarge {
                what: "stored record",
                size,
                limit: max_record,
            });
        }
        Ok(size)
    }
}

/// Where and when a record is stored; filled in at append time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Placement {
    pub queue_offset: u64,
    pub physical_offset: u64,
    pub store_timestamp: i64,
}

struct Writer<'b> {
    buf: &'b mut [u8],
    pos: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        self.buf[self.pos..self.pos + bytes.len()].copy_from_slice(bytes);
        self.pos += bytes.len();
    }
    fn host(&mut self, addr: &SocketAddr) {
        let ip = match addr.ip() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        self.put(&ip.octets());
        self.put(&addr.port().to_be_bytes());
    }
    fn pair(&mut self, name: &str, value: &str) {
        self.put(name.as_bytes());
        self.put(&[NAME_VALUE_SEP as u8]);
        self.put(value.as_bytes());
        self.put(&[PROPERTY_SEP as u8]);
    }
}

/// Encodes `msg` into `buf`, which must be exactly `msg.encoded_size()` long
/// (the caller validated the message first).
pub(crate) fn encode_into(msg: &AppendMessage<'_>, at: Placement, buf: &mut [u8]) {
    let total = buf.len();
    let mut w = Writer { buf, pos: 0 };
    w.put(&(total as u32).to_be_bytes());
    w.put(&MESSAGE_MAGIC.to_be_bytes());
    w.put(&[0; 4]); // CRC, below
    w.put(&msg.queue_id.to_be_bytes());
    w.put(&msg.flag.to_be_bytes());
    w.put(&at.queue_offset.to_be_bytes());
    w.put(&at.physical_offset.to_be_bytes());
    w.put(&msg.sys_flag.to_be_bytes());
    w.put(&msg.born_timestamp.to_be_bytes());
    w.host(&msg.born_host);
    w.put(&at.store_timestamp.to_be_bytes());
    w.host(&msg.store_host);
    w.put(&msg.reconsume_times.to_be_bytes());
    w.put(&msg.prepared_tx_offset.to_be_bytes());
    w.put(&(msg.body.len() as u32).to_be_bytes());
    w.put(msg.body);
    w.put(&(msg.topic.len() as u16).to_be_bytes());
    w.put(msg.topic.as_bytes());
    w.put(&(msg.properties_len() as u16).to_be_bytes());
    if let Some(t) = msg.tags {
        w.pair(PROPERTY_TAGS, t);
    }
    if let Some(k) = msg.keys {
        w.pair(PROPERTY_KEYS, k);
    }
    for (k, v) in msg.properties {
        w.pair(k, v);
    }
    debug_assert_eq!(w.pos, total);
    let crc = crc32fast::hash(&w.buf[12..total]);
    w.buf[8..12].copy_from_slice(&crc.to_be_bytes());
}

/// Checks that `buf` starts with an intact record of exactly `size` bytes
/// stored at `physical_offset` (what a ConsumeQueue entry says): magic,
/// size, CRC, structure and the record's own offset. Returns why not.
/// Used by the read path, so that a damaged record is reported and skipped
/// instead of being served.
pub fn verify(buf: &[u8], size: u32, physical_offset: u64) -> std::result::Result<(), String> {
    match peek_header(buf) {
        None => return Err("record header is not stored".into()),
        Some((_, magic)) if magic != MESSAGE_MAGIC => return Err("bad record magic".into()),
        Some((stored, _)) if stored != size => {
            return Err(format!(
                "record size {stored} does not match the consume queue entry ({size})"
            ))
        }
        Some(_) => {}
    }
    let (m, _) = decode(buf).map_err(|e| e.to_string())?;
    if m.physical_offset != physical_offset {
        return Err(format!(
            "record says it is at offset {}, not {physical_offset}",
            m.physical_offset
        ));
    }
    Ok(())
}

/// Hash of a tag as stored in ConsumeQueue entries: 64-bit FNV-1a. Stable
/// forever (it is on disk). No tag (or an empty one) hashes to 0; a tag whose
/// FNV-1a is 0 is stored as 1 so that 0 always means "no tag".
pub fn tag_hash(tag: &str) -> u64 {
    if tag.is_empty() {
        return 0;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in tag.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    if h == 0 {
        1
    } else {
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn encode(msg: &AppendMessage<'_>, at: Placement) -> Vec<u8> {
        let mut buf = vec![0u8; msg.encoded_size()];
        encode_into(msg, at, &mut buf);
        buf
    }

    fn sample<'a>(props: &'a [(String, String)], body: &'a [u8]) -> AppendMessage<'a> {
        AppendMessage {
            topic: "TopicTest",
            queue_id: 3,
            flag: -7,
            tags: Some("TagA"),
            keys: Some("k1 k2"),
            properties: props,
            body,
            born_timestamp: 1_700_000_000_123,
            born_host: addr("10.1.2.3:5555"),
            store_host: addr("[2001:db8::1]:10911"),
            reconsume_times: 2,
            sys_flag: 4,
            prepared_tx_offset: 99,
        }
    }

    #[test]
    fn round_trip() {
        let props = vec![("UNIQ_KEY".to_string(), "abc".to_string())];
        let msg = sample(&props, b"hello world");
        let at = Placement {
            queue_offset: 42,
            physical_offset: 4096,
            store_timestamp: 1_700_000_000_999,
        };
        let buf = encode(&msg, at);
        let (d, n) = decode(&buf).unwrap();
        assert_eq!(n, buf.len());
        assert_eq!(d.topic, "TopicTest");
        assert_eq!(d.queue_id, 3);
        assert_eq!(d.flag, -7);
        assert_eq!(d.queue_offset, 42);
        assert_eq!(d.physical_offset, 4096);
        assert_eq!(d.sys_flag, 4);
        assert_eq!(d.born_timestamp, 1_700_000_000_123);
        assert_eq!(d.store_timestamp, 1_700_000_000_999);
        assert_eq!(d.born_host, addr("10.1.2.3:5555"));
        assert_eq!(d.store_host, addr("[2001:db8::1]:10911"));
        assert_eq!(d.reconsume_times, 2);
        assert_eq!(d.prepared_tx_offset, 99);
        assert_eq!(d.body, b"hello world");
        assert_eq!(d.tags(), Some("TagA"));
        assert_eq!(d.keys(), Some("k1 k2"));
        assert_eq!(d.property("UNIQ_KEY"), Some("abc"));
        assert_eq!(d.properties().count(), 3);
    }

    #[test]
    fn crc_mismatch_detected_anywhere() {
        let msg = sample(&[], b"payload");
        let at = Placement {
            queue_offset: 0,
            physical_offset: 0,
            store_timestamp: 1,
        };
        let buf = encode(&msg, at);
        for i in 8..buf.len() {
            let mut b = buf.clone();
            b[i] ^= 0x40;
            assert!(decode(&b).is_err(), "flip at {i} not detected");
        }
    }

    #[test]
    fn rejects_bad_messages() {
        let props = vec![("a\u{1}".to_string(), "v".to_string())];
        let msg = sample(&props, b"x");
        assert!(matches!(
            msg.validate(100, 1000),
            Err(StoreError::BadMessage(_))
        ));
        let props = vec![("a".to_string(), "v\u{2}w".to_string())];
        let msg = sample(&props, b"x");
        assert!(matches!(
            msg.validate(100, 1000),
            Err(StoreError::BadMessage(_))
        ));
        let mut msg = sample(&[], b"x");
        msg.keys = Some("k\u{1}");
        assert!(matches!(
            msg.validate(100, 1000),
            Err(StoreError::BadMessage(_))
        ));
        // Non-ASCII text is not a separator.
        let props = vec![("名".to_string(), "值 é \u{7f}".to_string())];
        let mut msg = sample(&props, b"x");
        msg.tags = Some("标签");
        assert!(msg.validate(100, 1000).is_ok());
        let msg = sample(&[], &[0u8; 200]);
        assert!(matches!(
            msg.validate(100, 1000),
            Err(StoreError::MessageTooLarge { .. })
        ));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let msg = sample(&[], b"body bytes");
        let at = Placement {
            queue_offset: 1,
            physical_offset: 2,
            store_timestamp: 3,
        };
        let good = encode(&msg, at);
        for _ in 0..20_000 {
            let len = rng.gen_range(0..400);
            let mut buf: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            if rng.gen_bool(0.5) && buf.len() >= 8 {
                // plausible header, random rest
                let n = buf.len() as u32;
                buf[0..4].copy_from_slice(&n.to_be_bytes());
                buf[4..8].copy_from_slice(&MESSAGE_MAGIC.to_be_bytes());
                if buf.len() >= 12 && rng.gen_bool(0.8) {
                    // valid CRC: exercise the structural checks behind it
                    let crc = crc32fast::hash(&buf[12..]);
                    buf[8..12].copy_from_slice(&crc.to_be_bytes());
                }
            }
            let _ = decode(&buf);
        }
        for cut in 0..good.len() {
            assert!(decode(&good[..cut]).is_err());
        }
    }

    #[test]
    fn verify_names_the_damage() {
        let msg = sample(&[], b"payload");
        let at = Placement {
            queue_offset: 0,
            physical_offset: 64,
            store_timestamp: 1,
        };
        let buf = encode(&msg, at);
        let size = buf.len() as u32;
        assert_eq!(verify(&buf, size, 64), Ok(()));
        assert!(verify(&buf, size + 1, 64).unwrap_err().contains("size"));
        assert!(verify(&buf, size, 65).unwrap_err().contains("offset"));
        let mut b = buf.clone();
        b[HEADER_LEN] ^= 1;
        assert!(verify(&b, size, 64).unwrap_err().contains("CRC"));
        b = buf.clone();
        b[5] ^= 1;
        assert!(verify(&b, size, 64).unwrap_err().contains("magic"));
        assert!(verify(&buf[..4], size, 64).is_err());
    }

    #[test]
    fn tag_hash_is_stable() {
        assert_eq!(tag_hash(""), 0);
        assert_eq!(tag_hash("TagA"), tag_hash("TagA"));
        assert_ne!(tag_hash("TagA"), tag_hash("TagB"));
        // FNV-1a 64 of "a" (reference value)
        assert_eq!(tag_hash("a"), 0xaf63_dc4c_8601_ec8c);
    }
}
