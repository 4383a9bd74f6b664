//! The ROCKETMQ binary header (serialize type 1), RocketMQ's
//! `RocketMQSerializable` layout:
//!
//! ```text
//! code: i16 | language: u8 | version: i16 | opaque: i32 | flag: i32 |
//! remark length: i32 | remark: UTF-8 |
//! extFields length: i32 | extFields: (key length: i16 | key | value length: i32 | value)*
//! ```
//!
//! The remark and the extFields are charged against the decode budget of
//! Skylark's own frames ([`crate::budget`]: 8 × the header's length +
//! 16 KiB) as they are read: a header of a million tiny entries is
//! [`RemotingError::HeaderOverBudget`] (with the fixed fields, so the
//! listener can answer it) before the map is built.
//!
//! An absent or empty remark and empty extFields are written with length 0
//! and read back as `None` / empty.

use std::collections::BTreeMap;

use bytes::BufMut;

use super::{LanguageCode, RemotingCommand, RemotingError, Result, SerializeType};
use crate::budget::budget_for;

/// Fixed part: code, language, version, opaque, flag, two lengths.
const FIXED_LEN: usize = 2 + 1 + 2 + 4 + 4 + 4 + 4;

pub(super) fn encode(cmd: &RemotingCommand) -> Result<Vec<u8>> {
    let code = i16::try_from(cmd.code).map_err(|_| RemotingError::OutOfRange {
        field: "code",
        value: cmd.code.into(),
    })?;
    let version = i16::try_from(cmd.version).map_err(|_| RemotingError::OutOfRange {
        field: "version",
        value: cmd.version.into(),
    })?;
    let remark = cmd.remark.as_deref().unwrap_or("").as_bytes();
    let mut ext = Vec::new();
    for (k, v) in &cmd.ext_fields {
        let klen = i16::try_from(k.len()).map_err(|_| RemotingError::OutOfRange {
            field: "extFields key length",
            value: k.len() as i64,
        })?;
        ext.put_i16(klen);
        ext.put_slice(k.as_bytes());
        ext.put_i32(len_i32("extFields value length", v.len())?);
        ext.put_slice(v.as_bytes());
    }
    let mut out = Vec::with_capacity(FIXED_LEN + remark.len() + ext.len());
    out.put_i16(code);
    out.put_u8(cmd.language.0);
    out.put_i16(version);
    out.put_i32(cmd.opaque);
    out.put_i32(cmd.flag);
    out.put_i32(len_i32("remark length", remark.len())?);
    out.put_slice(remark);
    out.put_i32(len_i32("extFields length", ext.len())?);
    out.put_slice(&ext);
    Ok(out)
}

fn len_i32(field: &'static str, len: usize) -> Result<i32> {
    i32::try_from(len).map_err(|_| RemotingError::OutOfRange {
        field,
        value: len as i64,
    })
}

/// A cursor over the header that never reads past its end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(RemotingError::Truncated(what));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }
    fn i16(&mut self, what: &'static str) -> Result<i16> {
        Ok(i16::from_be_bytes(self.array(what)?))
    }
    fn i32(&mut self, what: &'static str) -> Result<i32> {
        Ok(i32::from_be_bytes(self.array(what)?))
    }
    /// `len` bytes announced by a length field: refused when negative or
    /// longer than what is left.
    fn sized(&mut self, len: i64, what: &'static str) -> Result<&'a [u8]> {
        if len < 0 || len as u64 > self.0.len() as u64 {
            return Err(RemotingError::BadLength { field: what, len });
        }
        self.take(len as usize, what)
    }
    fn string(&mut self, len: i64, what: &'static str) -> Result<String> {
        utf8(self.sized(len, what)?, what).map(str::to_owned)
    }
}

pub(super) fn decode(header: &[u8]) -> Result<RemotingCommand> {
    let mut r = Reader(header);
    let code = r.i16("code")?;
    let language = r.array::<1>("language")?[0];
    let version = r.i16("version")?;
    let opaque = r.i32("opaque")?;
    let flag = r.i32("flag")?;
    let remark_len = r.i32("remark length")?;
    let remark = r.string(remark_len.into(), "remark")?;
    let ext_len = r.i32("extFields length")?;
    let mut ext = Reader(r.sized(ext_len.into(), "extFields")?);
    let scalars = RemotingCommand {
        code: code.into(),
        language: LanguageCode(language),
        version: version.into(),
        opaque,
        flag,
        serialize_type: SerializeType::RocketMq,
        ..Default::default()
    };
    let budget = budget_for(header.len());
    let mut left = budget.saturating_sub(remark.len());
    let mut ext_fields = BTreeMap::new();
    while !ext.0.is_empty() {
        let klen = ext.i16("extFields key length")?;
        let key = ext.sized(klen.into(), "extFields key")?;
        let vlen = ext.i32("extFields value length")?;
        let value = ext.sized(vlen.into(), "extFields value")?;
        // Charged before anything is built, as `crate::budget` charges a map.
        let cost = ENTRY_COST + key.len() + value.len();
        if cost > left {
            return Err(RemotingError::HeaderOverBudget {
                len: header.len(),
                budget,
                request: Box::new(scalars),
            });
        }
        left -= cost;
        ext_fields.insert(
            utf8(key, "extFields key")?.to_owned(),
            utf8(value, "extFields value")?.to_owned(),
        );
    }
    if !r.0.is_empty() {
        return Err(RemotingError::TrailingBytes(r.0.len()));
    }
    Ok(RemotingCommand {
        remark: (!remark.is_empty()).then_some(remark),
        ext_fields,
        ..scalars
    })
}

/// What one extFields entry is charged besides its strings: twice its
/// key and value (`crate::budget` charges a map entry so: B-tree nodes are
/// at worst half full).
const ENTRY_COST: usize = 2 * std::mem::size_of::<(String, String)>();

fn utf8<'a>(b: &'a [u8], what: &'static str) -> Result<&'a str> {
    std::str::from_utf8(b).map_err(|_| RemotingError::InvalidUtf8(what))
}
