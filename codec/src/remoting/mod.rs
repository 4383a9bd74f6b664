//! RocketMQ's remoting protocol (`RemotingCommand`), beside Skylark's own.
//!
//! Unmodified RocketMQ clients speak this protocol; issue 17 adds it to the
//! NameServer (and later the Broker). This module only turns bytes into
//! [`RemotingCommand`]s and back; the servers decide what to answer. See
//! `docs/rocketmq-compat.md` for what is served.
//!
//! # Frame layout (all integers big-endian)
//!
//! ```text
//! | total length: i32 | header mark: i32 | header: header length bytes | body |
//!                      \_ high byte: serialize type (0 JSON, 1 ROCKETMQ)
//!                         low 24 bits: header length
//! ```
//!
//! `total length` counts everything after itself (header mark, header,
//! body) and is refused above [`DEFAULT_MAX_FRAME_SIZE`] (16 MiB, RocketMQ's
//! `NettyDecoder` limit) before anything is allocated.
//!
//! The header is either JSON (as RocketMQ's fastjson writes it: fields
//! `code`, `language` as a name like `"JAVA"`, `version`, `opaque`, `flag`,
//! `remark`, `extFields`, `serializeTypeCurrentRPC`) or the ROCKETMQ binary
//! layout: `code: i16, language: u8, version: i16, opaque: i32, flag: i32,
//! remark length: i32 + UTF-8, extFields length: i32 + per entry (key
//! length: i16 + UTF-8, value length: i32 + UTF-8)`. A command remembers
//! which one it came in ([`RemotingCommand::serialize_type`]), and
//! [`RemotingCommand::response_to`] answers in the same.
//!
//! `flag` bit 0 marks a response, bit 1 a oneway request (never answered);
//! `opaque` correlates a response with its request.

pub mod acl;
mod codes;
mod error;
mod frame;
mod header_binary;
mod header_json;
pub mod heartbeat;
pub mod message;
pub mod notify;
pub mod route;

use std::collections::BTreeMap;

use bytes::Bytes;

pub use codes::{request, response};
pub use error::{RemotingError, Result};
pub use frame::{decode_frame, encode_frame, RemotingCodec, DEFAULT_MAX_FRAME_SIZE};

/// Decodes a JSON request body (RocketMQ's `HeartbeatData`, lock and
/// client-config bodies) under the decode budget every Skylark frame and
/// remoting header gets (`8 × its length + 16 KiB`, see `budget.rs`):
/// without it a body of tiny list elements (`{"groupName":""},` is 17
/// bytes, a 120-byte struct in a doubling `Vec`) decodes into up to 15
/// times its size, some 250 MB for one 16 MiB frame. The error says why;
/// the caller answers it as a bad request.
pub fn decode_json_body<T: serde::de::DeserializeOwned>(
    body: &[u8],
) -> std::result::Result<T, String> {
    let budget = crate::budget::budget_for(body.len());
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = match crate::budget::decode_or_refused(&mut de, budget) {
        Ok(v) => v,
        Err((_, true)) => {
            return Err(format!(
                "{} bytes of JSON would decode into more than {budget} bytes",
                body.len()
            ))
        }
        Err((e, false)) => return Err(e.to_string()),
    };
    de.end().map_err(|e| e.to_string())?;
    Ok(value)
}

/// `flag` bit of a response.
pub const FLAG_RESPONSE: i32 = 1;
/// `flag` bit of a oneway request.
pub const FLAG_ONEWAY: i32 = 1 << 1;

/// How a command's header is serialized (the header mark's high byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SerializeType {
    /// 0: JSON (RocketMQ's default).
    #[default]
    Json,
    /// 1: RocketMQ's binary layout.
    RocketMq,
}

impl SerializeType {
    /// The header mark's high byte.
    pub fn code(self) -> u8 {
        match self {
            SerializeType::Json => 0,
            SerializeType::RocketMq => 1,
        }
    }

    /// From the header mark's high byte.
    pub fn from_code(code: u8) -> Result<Self> {
        match code {
            0 => Ok(SerializeType::Json),
            1 => Ok(SerializeType::RocketMq),
            other => Err(RemotingError::UnknownSerializeType(other)),
        }
    }

    /// The name in a JSON header's `serializeTypeCurrentRPC`.
    pub fn name(self) -> &'static str {
        match self {
            SerializeType::Json => "JSON",
            SerializeType::RocketMq => "ROCKETMQ",
        }
    }
}

/// The client language (RocketMQ `LanguageCode`): a byte in the binary
/// header, a name in JSON. Unknown numbers are kept as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct LanguageCode(pub u8);

const LANGUAGE_NAMES: [&str; 13] = [
    "JAVA", "CPP", "DOTNET", "PYTHON", "DELPHI", "ERLANG", "RUBY", "OTHER", "HTTP", "GO", "PHP",
    "OMS", "RUST",
];

impl LanguageCode {
    pub const JAVA: LanguageCode = LanguageCode(0);
    pub const OTHER: LanguageCode = LanguageCode(7);
    pub const GO: LanguageCode = LanguageCode(9);
    pub const RUST: LanguageCode = LanguageCode(12);

    /// The JSON name; `OTHER` for a number RocketMQ does not name.
    pub fn name(self) -> &'static str {
        LANGUAGE_NAMES
            .get(self.0 as usize)
            .copied()
            .unwrap_or("OTHER")
    }

    /// From a JSON name (case-insensitive); unknown names are `OTHER`.
    pub fn from_name(name: &str) -> Self {
        LANGUAGE_NAMES
            .iter()
            .position(|n| n.eq_ignore_ascii_case(name))
            .map(|i| LanguageCode(i as u8))
            .unwrap_or(LanguageCode::OTHER)
    }
}

/// One RocketMQ remoting request or response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RemotingCommand {
    /// Request code ([`request`]) or response code ([`response`]).
    pub code: i32,
    /// Sender's language.
    pub language: LanguageCode,
    /// Sender's RocketMQ version number.
    pub version: i32,
    /// Correlates a response with its request.
    pub opaque: i32,
    /// [`FLAG_RESPONSE`] | [`FLAG_ONEWAY`] bits.
    pub flag: i32,
    /// Human-readable note (error text of a response).
    pub remark: Option<String>,
    /// The request's or response's custom header fields.
    pub ext_fields: BTreeMap<String, String>,
    /// Header codec this command came in / goes out with.
    pub serialize_type: SerializeType,
    /// Payload (JSON documents for most NameServer bodies).
    pub body: Bytes,
}

impl RemotingCommand {
    /// A request with `code`, correlated by `opaque`, JSON header.
    pub fn request(code: i32, opaque: i32) -> Self {
        RemotingCommand {
            code,
            opaque,
            ..Default::default()
        }
    }

    /// Whether this is a response.
    pub fn is_response(&self) -> bool {
        self.flag & FLAG_RESPONSE != 0
    }

    /// Whether this is a oneway request (no answer expected).
    pub fn is_oneway(&self) -> bool {
        self.flag & FLAG_ONEWAY != 0
    }

    /// The answer to `self`: `code`, same opaque and version, same header
    /// codec, response flag. Language is `JAVA`, as a RocketMQ server
    /// answers (older clients do not know every language name).
    pub fn response_to(&self, code: i32, remark: Option<String>) -> Self {
        RemotingCommand {
            code,
            language: LanguageCode::JAVA,
            version: self.version,
            opaque: self.opaque,
            flag: FLAG_RESPONSE,
            remark,
            ext_fields: BTreeMap::new(),
            serialize_type: self.serialize_type,
            body: Bytes::new(),
        }
    }

    /// The same command with `body`.
    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// One of the custom header fields.
    pub fn ext(&self, key: &str) -> Option<&str> {
        self.ext_fields.get(key).map(String::as_str)
    }

    /// The header bytes in this command's codec.
    pub fn encode_header(&self) -> Result<Vec<u8>> {
        match self.serialize_type {
            SerializeType::Json => header_json::encode(self),
            SerializeType::RocketMq => header_binary::encode(self),
        }
    }

    /// Parses a header in codec `ty`; the body is left empty.
    pub fn decode_header(ty: SerializeType, header: &[u8]) -> Result<Self> {
        let mut cmd = match ty {
            SerializeType::Json => header_json::decode(header)?,
            SerializeType::RocketMq => header_binary::decode(header)?,
        };
        cmd.serialize_type = ty;
        Ok(cmd)
    }
}

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod tests;
