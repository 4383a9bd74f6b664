//! The on-disk (and on-the-wire) record format of the CommitLog: the
//! reading side.
//!
//! A record is what the broker stores for one message and what it sends back
//! as-is in pull responses, so the broker's store and the client both read
//! it with [`decode`]; the writer (the store encodes straight into the mapped
//! segment) is `skylark-actors`' `message_store::record`. All integers are big-endian:
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

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use crate::message::{PROPERTY_KEYS, PROPERTY_TAGS};

/// Magic of a message record.
pub const MESSAGE_MAGIC: u32 = 0x534B_4D31; // "SKM1"
/// Magic of the end-of-file marker filling a segment's tail.
pub const BLANK_MAGIC: u32 = 0x534B_4546; // "SKEF"
/// Bytes of the end-of-file marker header (size + magic); a segment always
/// keeps at least this much room after its last record.
pub const EOF_MARKER_LEN: usize = 8;
/// Length of the fixed part, up to and including the body length.
pub const HEADER_LEN: usize = 108;
/// Smallest possible record: empty body, empty topic, no properties.
pub const MIN_RECORD_SIZE: usize = HEADER_LEN + 2 + 2;

/// Separates a property's name from its value.
pub const NAME_VALUE_SEP: char = '\u{1}';
/// Ends each property.
pub const PROPERTY_SEP: char = '\u{2}';

/// Byte offset of the queue id.
pub const OFF_QUEUE_ID: usize = 12;
/// Byte offset of the queue offset.
pub const OFF_QUEUE_OFFSET: usize = 20;
/// Byte offset of the physical (CommitLog) offset.
pub const OFF_PHYSICAL_OFFSET: usize = 28;
/// Byte offset of the store timestamp.
pub const OFF_STORE_TIMESTAMP: usize = 66;

/// Bytes that do not form a valid record (the reason). Displays as the
/// store's `corrupt data: ...`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt data: {0}")]
pub struct CorruptRecord(pub String);

/// A record parsed in place; borrows from the buffer it was decoded from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecodedMessage<'a> {
    pub record_size: u32,
    pub queue_id: u32,
    pub flag: i32,
    pub queue_offset: u64,
    pub physical_offset: u64,
    pub sys_flag: u32,
    pub born_timestamp: i64,
    pub born_host: SocketAddr,
    pub store_timestamp: i64,
    pub store_host: SocketAddr,
    pub reconsume_times: u32,
    pub prepared_tx_offset: u64,
    pub body: &'a [u8],
    pub topic: &'a str,
    /// The raw `name\u{1}value\u{2}` block.
    pub raw_properties: &'a str,
}

impl<'a> DecodedMessage<'a> {
    /// All properties, in stored order (tags and keys included).
    pub fn properties(&self) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.raw_properties
            .split(PROPERTY_SEP)
            .filter_map(|p| p.split_once(NAME_VALUE_SEP))
    }
    /// The first property called `name`.
    pub fn property(&self, name: &str) -> Option<&'a str> {
        self.properties().find(|(k, _)| *k == name).map(|(_, v)| v)
    }
    /// The message tag.
    pub fn tags(&self) -> Option<&'a str> {
        self.property(PROPERTY_TAGS)
    }
    /// The message keys.
    pub fn keys(&self) -> Option<&'a str> {
        self.property(PROPERTY_KEYS)
    }
}

fn corrupt(what: &str) -> CorruptRecord {
    CorruptRecord(what.to_string())
}

fn be_u16(b: &[u8], at: usize) -> u16 {
    let mut a = [0u8; 2];
    a.copy_from_slice(&b[at..at + 2]);
    u16::from_be_bytes(a)
}
pub fn be_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}
pub fn be_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}
fn host(b: &[u8], at: usize) -> SocketAddr {
    let mut ip = [0u8; 16];
    ip.copy_from_slice(&b[at..at + 16]);
    let ip = Ipv6Addr::from(ip);
    let port = be_u16(b, at + 16);
    match ip.to_ipv4_mapped() {
        Some(v4) => SocketAddr::new(IpAddr::V4(v4), port),
        None => SocketAddr::new(IpAddr::V6(ip), port),
    }
}

/// Reads the `(total size, magic)` prefix of whatever starts at `buf`.
pub fn peek_header(buf: &[u8]) -> Option<(u32, u32)> {
    (buf.len() >= 8).then(|| (be_u32(buf, 0), be_u32(buf, 4)))
}

/// Decodes the record at the start of `buf`, validating sizes, magic and
/// CRC; returns it and its length, so that a buffer of concatenated records
/// (a pull response) is walked by repeated calls. Never panics.
pub fn decode(buf: &[u8]) -> Result<(DecodedMessage<'_>, usize), CorruptRecord> {
    let (total, magic) = peek_header(buf).ok_or_else(|| corrupt("truncated record header"))?;
    if magic != MESSAGE_MAGIC {
        return Err(corrupt("bad record magic"));
    }
    let total = total as usize;
    if total < MIN_RECORD_SIZE || total > buf.len() {
        return Err(corrupt("record size out of bounds"));
    }
    let rec = &buf[..total];
    if crc32fast::hash(&rec[12..]) != be_u32(rec, 8) {
        return Err(corrupt("record CRC mismatch"));
    }
    let body_len = be_u32(rec, HEADER_LEN - 4) as usize;
    let body_end = HEADER_LEN
        .checked_add(body_len)
        .filter(|e| e + 2 <= total)
        .ok_or_else(|| corrupt("body length out of bounds"))?;
    let topic_len = be_u16(rec, body_end) as usize;
    let topic_end = body_end + 2 + topic_len;
    if topic_end + 2 > total {
        return Err(corrupt("topic length out of bounds"));
    }
    let props_len = be_u16(rec, topic_end) as usize;
    if topic_end + 2 + props_len != total {
        return Err(corrupt("properties length does not match record size"));
    }
    let topic = std::str::from_utf8(&rec[body_end + 2..topic_end])
        .map_err(|_| corrupt("topic is not UTF-8"))?;
    let raw_properties = std::str::from_utf8(&rec[topic_end + 2..total])
        .map_err(|_| corrupt("properties are not UTF-8"))?;
    let msg = DecodedMessage {
        record_size: total as u32,
        queue_id: be_u32(rec, OFF_QUEUE_ID),
        flag: be_u32(rec, 16) as i32,
        queue_offset: be_u64(rec, OFF_QUEUE_OFFSET),
        physical_offset: be_u64(rec, OFF_PHYSICAL_OFFSET),
        sys_flag: be_u32(rec, 36),
        born_timestamp: be_u64(rec, 40) as i64,
        born_host: host(rec, 48),
        store_timestamp: be_u64(rec, OFF_STORE_TIMESTAMP) as i64,
        store_host: host(rec, 74),
        reconsume_times: be_u32(rec, 92),
        prepared_tx_offset: be_u64(rec, 96),
        body: &rec[HEADER_LEN..body_end],
        topic,
        raw_properties,
    };
    Ok((msg, total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    /// The fields a record is written from (the writer itself lives in
    /// `skylark-actors`; this one follows the layout in the module doc).
    #[derive(Debug, Clone)]
    struct Fields {
        ints: [u64; 6],
        born_host: SocketAddr,
        store_host: SocketAddr,
        body: Vec<u8>,
        topic: String,
        properties: String,
    }

    fn put_host(out: &mut Vec<u8>, a: &SocketAddr) {
        let ip = match a.ip() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        out.extend_from_slice(&ip.octets());
        out.extend_from_slice(&a.port().to_be_bytes());
    }

    fn encode(f: &Fields) -> Vec<u8> {
        let [a, b, c, d, e, g] = f.ints;
        let mut out = vec![0u8; 12];
        out.extend_from_slice(&(a as u32).to_be_bytes()); // queue id
        out.extend_from_slice(&((a >> 32) as u32).to_be_bytes()); // flag
        out.extend_from_slice(&b.to_be_bytes()); // queue offset
        out.extend_from_slice(&c.to_be_bytes()); // physical offset
        out.extend_from_slice(&(d as u32).to_be_bytes()); // sys flag
        out.extend_from_slice(&e.to_be_bytes()); // born timestamp
        put_host(&mut out, &f.born_host);
        out.extend_from_slice(&g.to_be_bytes()); // store timestamp
        put_host(&mut out, &f.store_host);
        out.extend_from_slice(&((d >> 32) as u32).to_be_bytes()); // reconsume
        out.extend_from_slice(&g.rotate_left(7).to_be_bytes()); // prepared tx
        out.extend_from_slice(&(f.body.len() as u32).to_be_bytes());
        out.extend_from_slice(&f.body);
        out.extend_from_slice(&(f.topic.len() as u16).to_be_bytes());
        out.extend_from_slice(f.topic.as_bytes());
        out.extend_from_slice(&(f.properties.len() as u16).to_be_bytes());
        out.extend_from_slice(f.properties.as_bytes());
        let total = out.len() as u32;
        out[..4].copy_from_slice(&total.to_be_bytes());
        out[4..8].copy_from_slice(&MESSAGE_MAGIC.to_be_bytes());
        reseal(&mut out);
        out
    }

    /// Recomputes the CRC, so that a test reaches the checks behind it.
    fn reseal(rec: &mut [u8]) {
        let crc = crc32fast::hash(&rec[12..]);
        rec[8..12].copy_from_slice(&crc.to_be_bytes());
    }

    fn host() -> impl Strategy<Value = SocketAddr> {
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, port)| {
            let ip = Ipv6Addr::from(ip);
            match ip.to_ipv4_mapped() {
                Some(v4) => SocketAddr::new(IpAddr::V4(v4), port),
                None => SocketAddr::new(IpAddr::V6(ip), port),
            }
        })
    }

    fn fields() -> impl Strategy<Value = Fields> {
        (
            any::<[u64; 6]>(),
            host(),
            prop_oneof![
                host(),
                (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, p)| (ip, p).into())
            ],
            vec(any::<u8>(), 0..96),
            "\\PC{0,24}",
            "(\\PC{0,6}\u{1}\\PC{0,6}\u{2}){0,3}",
        )
            .prop_map(
                |(ints, born_host, store_host, body, topic, properties)| Fields {
                    ints,
                    born_host,
                    store_host,
                    body,
                    topic,
                    properties,
                },
            )
    }

    fn check_fields(m: &DecodedMessage<'_>, f: &Fields, len: usize) {
        let [a, b, c, d, e, g] = f.ints;
        assert_eq!(m.record_size as usize, len);
        assert_eq!((m.queue_id, m.flag), (a as u32, (a >> 32) as i32));
        assert_eq!((m.queue_offset, m.physical_offset), (b, c));
        assert_eq!(
            (m.sys_flag, m.reconsume_times),
            (d as u32, (d >> 32) as u32)
        );
        assert_eq!((m.born_timestamp, m.store_timestamp), (e as i64, g as i64));
        assert_eq!(m.prepared_tx_offset, g.rotate_left(7));
        assert_eq!((m.born_host, m.store_host), (f.born_host, f.store_host));
        assert_eq!((m.body, m.topic), (&f.body[..], f.topic.as_str()));
        assert_eq!(m.raw_properties, f.properties);
        let _ = (m.tags(), m.keys(), m.properties().count());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn arbitrary_bytes_are_an_error_or_a_record_inside_them(
            mut input in vec(any::<u8>(), 0..300),
            magic in any::<bool>(),
        ) {
            if magic && input.len() >= 8 {
                // Reach past the magic check, and past the CRC check.
                let len = input.len() as u32;
                input[..4].copy_from_slice(&len.to_be_bytes());
                input[4..8].copy_from_slice(&MESSAGE_MAGIC.to_be_bytes());
                if input.len() >= 12 {
                    reseal(&mut input);
                }
            }
            let _ = peek_header(&input);
            if let Ok((m, n)) = decode(&input) {
                prop_assert!((MIN_RECORD_SIZE..=input.len()).contains(&n));
                prop_assert_eq!(m.record_size as usize, n);
                let _ = (m.tags(), m.keys(), m.properties().count());
            }
        }

        #[test]
        fn records_round_trip_and_walk(f in fields(), g in fields(), tail in vec(any::<u8>(), 0..8)) {
            let (a, b) = (encode(&f), encode(&g));
            let mut buf = [a.clone(), b.clone(), tail].concat();
            let (m, n) = decode(&buf).unwrap();
            check_fields(&m, &f, a.len());
            prop_assert_eq!(n, a.len());
            let (m, n) = decode(&buf[a.len()..]).unwrap();
            check_fields(&m, &g, b.len());
            prop_assert_eq!(n, b.len());
            // Every strict prefix of a record is an error.
            buf.truncate(a.len());
            for cut in 0..a.len() {
                prop_assert!(decode(&buf[..cut]).is_err(), "prefix {}", cut);
            }
        }

        #[test]
        fn any_changed_byte_is_an_error(f in fields(), at in any::<usize>(), x in 1u8..=255) {
            // CRC-32 catches every error burst of up to 32 bits; the size and
            // magic fields are checked by themselves.
            let mut rec = encode(&f);
            let at = at % rec.len();
            rec[at] ^= x;
            prop_assert!(decode(&rec).is_err(), "byte {} ^ {:#x}", at, x);
        }

        #[test]
        fn length_fields_that_disagree_are_errors(
            f in fields(),
            which in 0usize..4,
            value in prop_oneof![Just(u32::MAX), Just(0), Just(1), any::<u32>()],
        ) {
            let mut rec = encode(&f);
            let body_end = HEADER_LEN + f.body.len();
            let topic_end = body_end + 2 + f.topic.len();
            let (at, width) = [(0, 4), (HEADER_LEN - 4, 4), (body_end, 2), (topic_end, 2)][which];
            let old = rec[at..at + width].to_vec();
            rec[at..at + width].copy_from_slice(&value.to_be_bytes()[4 - width..]);
            let same = rec[at..at + width] == old[..];
            reseal(&mut rec);
            prop_assert_eq!(decode(&rec).is_ok(), same);
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert_eq!(
            decode(&[0, 0, 0, 9, 1, 2, 3]),
            Err(CorruptRecord("truncated record header".into()))
        );
        let mut rec = vec![0u8; MIN_RECORD_SIZE];
        rec[..4].copy_from_slice(&(MIN_RECORD_SIZE as u32).to_be_bytes());
        rec[4..8].copy_from_slice(&MESSAGE_MAGIC.to_be_bytes());
        let e = decode(&rec).unwrap_err();
        assert_eq!(e.to_string(), "corrupt data: record CRC mismatch");
        let crc = crc32fast::hash(&rec[12..]);
        rec[8..12].copy_from_slice(&crc.to_be_bytes());
        let (m, n) = decode(&rec).unwrap();
        assert_eq!(
            (n, m.topic, m.body.len(), m.tags()),
            (MIN_RECORD_SIZE, "", 0, None)
        );
    }
}
