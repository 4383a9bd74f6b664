//! Messages in RocketMQ's layouts: the stored-message layout that
//! RocketMQ's `MessageDecoder` reads from a pull answer's body (and a
//! VIEW_MESSAGE_BY_ID answer), and the `name\u{1}value\u{2}` properties
//! string of a send header.
//!
//! Stored-message layout (version 1, all integers big-endian):
//!
//! ```text
//! total size: i32 | magic 0xDAA320A7: i32 | body CRC: i32 | queue id: i32 |
//! flag: i32 | queue offset: i64 | physical offset: i64 | sys flag: i32 |
//! born timestamp: i64 | born host: 4 or 16 bytes + port: i32 |
//! store timestamp: i64 | store host: 4 or 16 bytes + port: i32 |
//! reconsume times: i32 | prepared transaction offset: i64 |
//! body length: i32 + body | topic length: u8 + topic |
//! properties length: i16 + properties
//! ```
//!
//! A host is 16 bytes when its sys-flag bit is set (born host `1 << 4`,
//! store host `1 << 5`). The body CRC is CRC-32 of the body masked to 31
//! bits, as RocketMQ's `UtilAll.crc32`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::{BufMut, BytesMut};

use super::{RemotingError, Result};
use crate::record::{DecodedMessage, NAME_VALUE_SEP, PROPERTY_SEP};

/// Magic of a version-1 stored message.
pub const MESSAGE_MAGIC_V1: u32 = 0xDAA3_20A7;
/// Sys flag: the body is zlib-compressed.
pub const SYSFLAG_COMPRESSED: i32 = 1;
/// Sys flag: the born host is IPv6.
pub const SYSFLAG_BORNHOST_V6: i32 = 1 << 4;
/// Sys flag: the store host is IPv6.
pub const SYSFLAG_STOREHOST_V6: i32 = 1 << 5;

/// Properties parsed from `name\u{1}value\u{2}...`; entries without a
/// separator are skipped. A string longer than `limit` bytes is refused
/// (`None`) before it is split: each entry becomes two owned strings, so
/// `a\u{1}\u{2}` repeated costs some 26 times its length (400 MB for the
/// 16 MiB a binary header can carry), for properties no store could hold.
pub fn parse_properties(s: &str, limit: usize) -> Option<Vec<(String, String)>> {
    if s.len() > limit {
        return None;
    }
    Some(
        s.split(PROPERTY_SEP)
            .filter_map(|p| p.split_once(NAME_VALUE_SEP))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn host_len(a: &SocketAddr) -> usize {
    match a.ip() {
        IpAddr::V4(_) => 4,
        IpAddr::V6(ip) if ip.to_ipv4_mapped().is_some() => 4,
        IpAddr::V6(_) => 16,
    }
}

fn put_host(out: &mut BytesMut, a: &SocketAddr) {
    match a.ip() {
        IpAddr::V4(ip) => out.put_slice(&ip.octets()),
        IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
            Some(v4) => out.put_slice(&v4.octets()),
            None => out.put_slice(&ip.octets()),
        },
    }
    out.put_i32(i32::from(a.port()));
}

/// Appends `m` in RocketMQ's stored-message layout. A topic longer than
/// 255 bytes cannot be written in it ([`RemotingError::OutOfRange`]).
pub fn encode_stored(m: &DecodedMessage<'_>, out: &mut BytesMut) -> Result<()> {
    let topic = m.topic.as_bytes();
    if topic.len() > usize::from(u8::MAX) {
        return Err(RemotingError::OutOfRange {
            field: "topic length",
            value: topic.len() as i64,
        });
    }
    let props = m.raw_properties.as_bytes();
    let props_len = i16::try_from(props.len()).map_err(|_| RemotingError::OutOfRange {
        field: "properties length",
        value: props.len() as i64,
    })?;
    let (born, store) = (host_len(&m.born_host), host_len(&m.store_host));
    let mut sys_flag =
        (m.sys_flag as i32) & !(SYSFLAG_BORNHOST_V6 | SYSFLAG_STOREHOST_V6 | SYSFLAG_COMPRESSED);
    if born == 16 {
        sys_flag |= SYSFLAG_BORNHOST_V6;
    }
    if store == 16 {
        sys_flag |= SYSFLAG_STOREHOST_V6;
    }
    let total = 4
        + 4
        + 4
        + 4
        + 4
        + 8
        + 8
        + 4
        + 8
        + born
        + 4
        + 8
        + store
        + 4
        + 4
        + 8
        + 4
        + m.body.len()
        + 1
        + topic.len()
        + 2
        + props.len();
    out.reserve(total);
    out.put_i32(total as i32);
    out.put_u32(MESSAGE_MAGIC_V1);
    out.put_i32((crc32fast::hash(m.body) & 0x7FFF_FFFF) as i32);
    out.put_i32(m.queue_id as i32);
    out.put_i32(m.flag);
    out.put_i64(m.queue_offset as i64);
    out.put_i64(m.physical_offset as i64);
    out.put_i32(sys_flag);
    out.put_i64(m.born_timestamp);
    put_host(out, &m.born_host);
    out.put_i64(m.store_timestamp);
    put_host(out, &m.store_host);
    out.put_i32(m.reconsume_times as i32);
    out.put_i64(m.prepared_tx_offset as i64);
    out.put_i32(m.body.len() as i32);
    out.put_slice(m.body);
    out.put_u8(topic.len() as u8);
    out.put_slice(topic);
    out.put_i16(props_len);
    out.put_slice(props);
    Ok(())
}

/// A message read back from the stored-message layout (what a RocketMQ
/// client's `MessageDecoder` sees).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub queue_id: i32,
    pub flag: i32,
    pub queue_offset: i64,
    pub physical_offset: i64,
    pub sys_flag: i32,
    pub born_timestamp: i64,
    pub born_host: SocketAddr,
    pub store_timestamp: i64,
    pub store_host: SocketAddr,
    pub reconsume_times: i32,
    pub prepared_tx_offset: i64,
    pub body: Vec<u8>,
    pub topic: String,
    pub properties: Vec<(String, String)>,
}

impl StoredMessage {
    /// RocketMQ's `offsetMsgId`: store host and physical offset in hex.
    pub fn offset_msg_id(&self) -> String {
        crate::MessageId::new(self.store_host, self.physical_offset as u64).to_hex()
    }

    /// The first property called `name`.
    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(RemotingError::OutOfRange {
                field: "stored message",
                value: n as i64,
            });
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_be_bytes(
            self.take(4)?.try_into().unwrap_or_default(),
        ))
    }
    fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_be_bytes(
            self.take(8)?.try_into().unwrap_or_default(),
        ))
    }
    fn host(&mut self, v6: bool) -> Result<SocketAddr> {
        let ip = if v6 {
            let o: [u8; 16] = self.take(16)?.try_into().unwrap_or_default();
            IpAddr::V6(Ipv6Addr::from(o))
        } else {
            let o: [u8; 4] = self.take(4)?.try_into().unwrap_or_default();
            IpAddr::V4(Ipv4Addr::from(o))
        };
        let port = self.i32()?;
        Ok(SocketAddr::new(ip, port as u16))
    }
}

/// Decodes every message of a pull answer's body, as `MessageDecoder.decodes`.
pub fn decode_stored_all(mut buf: &[u8]) -> Result<Vec<StoredMessage>> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let (m, used) = decode_stored(buf)?;
        out.push(m);
        buf = &buf[used..];
    }
    Ok(out)
}

/// Decodes one stored message; answers it and the bytes it took.
pub fn decode_stored(buf: &[u8]) -> Result<(StoredMessage, usize)> {
    let mut r = Reader(buf);
    let total = r.i32()?;
    if total < 4 || total as usize > buf.len() {
        return Err(RemotingError::OutOfRange {
            field: "stored message size",
            value: total.into(),
        });
    }
    let mut r = Reader(&buf[4..total as usize]);
    let magic = r.i32()? as u32;
    if magic != MESSAGE_MAGIC_V1 {
        return Err(RemotingError::OutOfRange {
            field: "stored message magic",
            value: magic.into(),
        });
    }
    let _crc = r.i32()?;
    let queue_id = r.i32()?;
    let flag = r.i32()?;
    let queue_offset = r.i64()?;
    let physical_offset = r.i64()?;
    let sys_flag = r.i32()?;
    let born_timestamp = r.i64()?;
    let born_host = r.host(sys_flag & SYSFLAG_BORNHOST_V6 != 0)?;
    let store_timestamp = r.i64()?;
    let store_host = r.host(sys_flag & SYSFLAG_STOREHOST_V6 != 0)?;
    let reconsume_times = r.i32()?;
    let prepared_tx_offset = r.i64()?;
    let body_len = r.i32()?;
    let body_len = usize::try_from(body_len).map_err(|_| RemotingError::OutOfRange {
        field: "stored message body length",
        value: body_len.into(),
    })?;
    let body = r.take(body_len)?.to_vec();
    let topic_len = usize::from(r.take(1)?[0]);
    let topic = String::from_utf8_lossy(r.take(topic_len)?).into_owned();
    let props_len = u16::from_be_bytes(r.take(2)?.try_into().unwrap_or_default());
    let props = String::from_utf8_lossy(r.take(usize::from(props_len))?).into_owned();
    Ok((
        StoredMessage {
            queue_id,
            flag,
            queue_offset,
            physical_offset,
            sys_flag,
            born_timestamp,
            born_host,
            store_timestamp,
            store_host,
            reconsume_times,
            prepared_tx_offset,
            body,
            topic,
            // At most u16::MAX bytes: always within the limit.
            properties: parse_properties(&props, usize::from(u16::MAX)).unwrap_or_default(),
        },
        total as usize,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_layout_round_trips_v4_and_v6_hosts() {
        let v4: SocketAddr = "10.0.0.7:10911".parse().unwrap();
        let v6: SocketAddr = "[2001:db8::1]:9887".parse().unwrap();
        for (born, store) in [(v4, v4), (v6, v4), (v4, v6)] {
            let m = DecodedMessage {
                record_size: 0,
                queue_id: 3,
                flag: 7,
                queue_offset: 42,
                physical_offset: 4096,
                sys_flag: 1 << 2 | SYSFLAG_COMPRESSED as u32,
                born_timestamp: 1_700_000_000_000,
                born_host: born,
                store_timestamp: 1_700_000_000_123,
                store_host: store,
                reconsume_times: 2,
                prepared_tx_offset: 9,
                body: b"hello",
                topic: "T",
                raw_properties: "TAGS\u{1}A\u{2}k\u{1}v\u{2}",
            };
            let mut out = BytesMut::new();
            encode_stored(&m, &mut out).unwrap();
            encode_stored(&m, &mut out).unwrap();
            let all = decode_stored_all(&out).unwrap();
            assert_eq!(all.len(), 2);
            let d = &all[0];
            assert_eq!((d.queue_id, d.flag, d.queue_offset), (3, 7, 42));
            assert_eq!((d.born_host, d.store_host), (born, store));
            // The stored body is never compressed; the transaction bits stay.
            assert_eq!(d.sys_flag & SYSFLAG_COMPRESSED, 0);
            assert_eq!(d.sys_flag & (1 << 2), 1 << 2);
            assert_eq!(d.body, b"hello");
            assert_eq!(d.property("TAGS"), Some("A"));
            assert_eq!(d.property("k"), Some("v"));
            assert_eq!(
                u32::from_be_bytes(out[8..12].try_into().unwrap()),
                crc32fast::hash(b"hello") & 0x7FFF_FFFF
            );
        }
        // Truncated input is an error, not a panic.
        let mut out = BytesMut::new();
        let m = DecodedMessage {
            record_size: 0,
            queue_id: 0,
            flag: 0,
            queue_offset: 0,
            physical_offset: 0,
            sys_flag: 0,
            born_timestamp: 0,
            born_host: v4,
            store_timestamp: 0,
            store_host: v4,
            reconsume_times: 0,
            prepared_tx_offset: 0,
            body: b"",
            topic: "T",
            raw_properties: "",
        };
        encode_stored(&m, &mut out).unwrap();
        for cut in 0..out.len() {
            assert!(decode_stored_all(&out[..cut]).is_err() || cut == 0);
        }
        let long = "x".repeat(256);
        assert!(encode_stored(&DecodedMessage { topic: &long, ..m }, &mut out).is_err());
    }
}
