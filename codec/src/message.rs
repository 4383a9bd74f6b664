//! The message as a producer sends it, and the id the broker gives back.
//!
//! [`MessageData`] is the part of a RocketMQ message the producer controls
//! (body, tags, keys, properties, delay); the broker adds topic, queue and
//! offsets when it stores it. [`MessageId`] is RocketMQ's `offsetMsgId`: the
//! storing broker's address and the message's physical (commit log) offset,
//! so a message can be looked up by id without an index.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{ProtocolError, Result};

// Every message property name the broker and the client use, in one place.
// Properties travel in a stored record as `name\u{1}value\u{2}` pairs
// (`crate::record`).

/// Property name of the message tag.
pub const PROPERTY_TAGS: &str = "TAGS";
/// Property name of the message keys (space separated).
pub const PROPERTY_KEYS: &str = "KEYS";
/// Property name of the producer-assigned unique id.
pub const PROPERTY_UNIQ_KEY: &str = "UNIQ_KEY";
/// Property name of the delay level.
pub const PROPERTY_DELAY: &str = "DELAY";
/// Property: the delivery time (Unix ms) of a timer message.
pub const PROPERTY_DELIVER_AT: &str = "__STARTDELIVERTIME";
/// Property: the topic a half or delayed message is meant for.
pub const PROPERTY_REAL_TOPIC: &str = "REAL_TOPIC";
/// Property: the queue a half or delayed message is meant for (-1: any,
/// for a delayed one).
pub const PROPERTY_REAL_QUEUE_ID: &str = "REAL_QID";
/// Property that marks a half message (`"true"`).
pub const PROPERTY_TRANSACTION_PREPARED: &str = "TRAN_MSG";
/// Property naming the producer group of a half message.
pub const PROPERTY_PRODUCER_GROUP: &str = "PGROUP";
/// Property: the producer's transaction id (the message's unique key).
pub const PROPERTY_TRANSACTION_ID: &str = "__transactionId__";
/// Property of a committed message: the queue offset of the half message
/// it was committed from (with `prepared_tx_offset` = the half's physical
/// offset, it lets recovery recognise a commit whose op record was lost).
pub const PROPERTY_HALF_QUEUE_OFFSET: &str = "TRAN_HALF_QOFFSET";
/// Property of a transaction op record: `commit`, `rollback` or `discard`.
pub const PROPERTY_OP: &str = "TRAN_OP";
/// Property naming a retried message's original topic.
pub const PROPERTY_RETRY_TOPIC: &str = "RETRY_TOPIC";
/// Property naming a retried message's original id.
pub const PROPERTY_ORIGIN_MESSAGE_ID: &str = "ORIGIN_MESSAGE_ID";

/// Every property name above: set by the client or the broker from the
/// message's own fields and flags, never a user property (RocketMQ's
/// `Message.putUserProperty` refuses its system names likewise).
pub const SYSTEM_PROPERTIES: [&str; 14] = [
    PROPERTY_TAGS,
    PROPERTY_KEYS,
    PROPERTY_UNIQ_KEY,
    PROPERTY_DELAY,
    PROPERTY_DELIVER_AT,
    PROPERTY_REAL_TOPIC,
    PROPERTY_REAL_QUEUE_ID,
    PROPERTY_TRANSACTION_PREPARED,
    PROPERTY_PRODUCER_GROUP,
    PROPERTY_TRANSACTION_ID,
    PROPERTY_HALF_QUEUE_OFFSET,
    PROPERTY_OP,
    PROPERTY_RETRY_TOPIC,
    PROPERTY_ORIGIN_MESSAGE_ID,
];

/// A message as sent by a producer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MessageData {
    /// Application-defined flag, stored and returned untouched.
    pub flag: i32,
    /// A single tag used for server-side filtering (`TagA`).
    pub tags: Option<String>,
    /// Business keys, space-separated like RocketMQ (`"order-1 user-7"`).
    pub keys: Option<String>,
    /// User properties, in order.
    pub properties: Vec<(String, String)>,
    /// The payload (MessagePack `bin`; decoded as a slice of the frame).
    #[serde(deserialize_with = "crate::shared_bytes::deserialize")]
    pub body: Bytes,
    /// When the producer created the message (ms since the Unix epoch).
    pub born_timestamp: i64,
    /// RocketMQ delay level (1 = 1s ... 18 = 2h); 0 = deliver at once.
    pub delay_level: u32,
    /// Deliver at this time (ms since the Unix epoch) instead of a level.
    pub deliver_at_ms: Option<i64>,
}

impl MessageData {
    /// A message with this body and nothing else set.
    pub fn new(body: impl Into<Bytes>) -> Self {
        MessageData {
            body: body.into(),
            ..MessageData::default()
        }
    }

    /// The keys as a list (split on spaces, empty parts dropped).
    pub fn key_list(&self) -> Vec<&str> {
        self.keys
            .as_deref()
            .map(|k| k.split(' ').filter(|s| !s.is_empty()).collect())
            .unwrap_or_default()
    }

    /// Errors with [`ProtocolError::MessageTooLarge`] if the body is larger
    /// than `max` bytes (see [`crate::DEFAULT_MAX_MESSAGE_SIZE`]).
    pub fn check_size(&self, max: usize) -> Result<()> {
        if self.body.len() > max {
            return Err(ProtocolError::MessageTooLarge {
                size: self.body.len(),
                max,
            });
        }
        Ok(())
    }
}

/// RocketMQ-style message id (`offsetMsgId`): the storing broker's address
/// and the message's physical offset in its commit log.
///
/// Hex layout (uppercase): IP bytes (4 or 16), port as 4 bytes, offset as 8
/// bytes, all big-endian: 32 hex digits for IPv4, 56 for IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MessageId {
    /// The broker that stored the message.
    pub addr: SocketAddr,
    /// Byte offset of the message in the broker's commit log.
    pub physical_offset: u64,
}

/// Hex length of an IPv4 id.
const V4_HEX_LEN: usize = 2 * (4 + 4 + 8);
/// Hex length of an IPv6 id.
const V6_HEX_LEN: usize = 2 * (16 + 4 + 8);

impl MessageId {
    /// Builds an id.
    pub fn new(addr: SocketAddr, physical_offset: u64) -> Self {
        MessageId {
            addr,
            physical_offset,
        }
    }

    /// Uppercase hex form.
    pub fn to_hex(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
        let mut raw = [0u8; 28];
        let ip_len = match self.addr.ip() {
            IpAddr::V4(ip) => {
                raw[..4].copy_from_slice(&ip.octets());
                4
            }
            IpAddr::V6(ip) => {
                raw[..16].copy_from_slice(&ip.octets());
                16
            }
        };
        raw[ip_len..ip_len + 4].copy_from_slice(&u32::from(self.addr.port()).to_be_bytes());
        raw[ip_len + 4..ip_len + 12].copy_from_slice(&self.physical_offset.to_be_bytes());
        let raw = &raw[..ip_len + 12];
        let mut out = String::with_capacity(raw.len() * 2);
        for &b in raw {
            out.push(char::from(DIGITS[usize::from(b >> 4)]));
            out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
        }
        out
    }

    /// Parses the hex form (either case). Any other input is
    /// [`ProtocolError::InvalidArgument`].
    pub fn from_hex(s: &str) -> Result<Self> {
        let bad =
            |why: &str| ProtocolError::InvalidArgument(format!("bad message id {s:?}: {why}"));
        if s.len() != V4_HEX_LEN && s.len() != V6_HEX_LEN {
            return Err(bad("wrong length"));
        }
        let raw = s
            .as_bytes()
            .chunks(2)
            .map(|pair| Some((hex_digit(pair[0])? << 4) | hex_digit(*pair.get(1)?)?))
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(|| bad("not hex"))?;
        let ip_len = raw.len() - 12;
        let (ip_raw, rest) = raw.split_at(ip_len);
        let ip = match <[u8; 4]>::try_from(ip_raw) {
            Ok(v4) => IpAddr::V4(Ipv4Addr::from(v4)),
            Err(_) => {
                let v6 = <[u8; 16]>::try_from(ip_raw).map_err(|_| bad("wrong length"))?;
                IpAddr::V6(Ipv6Addr::from(v6))
            }
        };
        let (port_raw, offset_raw) = rest.split_at(4);
        let port = u32::from_be_bytes(port_raw.try_into().map_err(|_| bad("port"))?);
        let port = u16::try_from(port).map_err(|_| bad("port out of range"))?;
        let offset = u64::from_be_bytes(offset_raw.try_into().map_err(|_| bad("offset"))?);
        Ok(MessageId::new(SocketAddr::new(ip, port), offset))
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl FromStr for MessageId {
    type Err = ProtocolError;

    fn from_str(s: &str) -> Result<Self> {
        MessageId::from_hex(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_id_matches_rocketmq_layout() {
        let id = MessageId::new("10.0.0.1:10911".parse().unwrap(), 0x1234);
        let hex = id.to_hex();
        assert_eq!(hex, "0A00000100002A9F0000000000001234");
        assert_eq!(MessageId::from_hex(&hex).unwrap(), id);
        assert_eq!(MessageId::from_hex(&hex.to_lowercase()).unwrap(), id);
    }

    #[test]
    fn v6_id_round_trips() {
        let id = MessageId::new("[2001:db8::1]:8080".parse().unwrap(), u64::MAX);
        let hex = id.to_hex();
        assert_eq!(hex.len(), V6_HEX_LEN);
        assert_eq!(hex.parse::<MessageId>().unwrap(), id);
    }

    #[test]
    fn bad_ids_are_errors() {
        for s in [
            "",
            "XYZ",
            "0A00000100002A9F000000000000123",
            "0A00000100002A9F000000000000123G",
            "0A000001FFFFFFFF0000000000001234",
            "éé00000100002A9F00000000000012",
        ] {
            assert!(MessageId::from_hex(s).is_err(), "{s:?}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]

        #[test]
        fn any_text_is_an_id_or_invalid(s in "\\PC{0,64}", hex in "[0-9a-fA-F]{32}|[0-9a-fA-F]{56}") {
            let _ = MessageId::from_hex(&s);
            // Any 32 or 56 hex digits: an id unless the port is over 65535.
            if let Ok(id) = MessageId::from_hex(&hex) {
                proptest::prop_assert_eq!(id.to_hex(), hex.to_uppercase());
            }
        }

        #[test]
        fn ids_round_trip(
            v6 in proptest::prelude::any::<bool>(),
            ip in proptest::prelude::any::<[u8; 16]>(),
            port in proptest::prelude::any::<u16>(),
            offset in proptest::prelude::any::<u64>(),
        ) {
            let ip = if v6 {
                IpAddr::V6(Ipv6Addr::from(ip))
            } else {
                IpAddr::V4(Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]))
            };
            let id = MessageId::new(SocketAddr::new(ip, port), offset);
            proptest::prop_assert_eq!(MessageId::from_hex(&id.to_hex()).unwrap(), id);
            proptest::prop_assert_eq!(id.to_hex().to_lowercase().parse::<MessageId>().unwrap(), id);
        }
    }

    #[test]
    fn body_is_msgpack_bin() {
        let bytes = rmp_serde::to_vec(&Bytes::from_static(&[1, 2, 3])).unwrap();
        assert_eq!(bytes, vec![0xc4, 3, 1, 2, 3]);
    }
}
