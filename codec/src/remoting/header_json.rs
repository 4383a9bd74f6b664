//! The JSON header (serialize type 0), as RocketMQ's fastjson writes a
//! `RemotingCommand`: fields in alphabetical order, `language` and
//! `serializeTypeCurrentRPC` as enum names, `remark` left out when null.
//!
//! Reading is lenient where clients differ: `language` may be a name or a
//! number, extFields values may be numbers or booleans (kept as their JSON
//! text), unknown fields are ignored. `code` is required.
//!
//! A repeated top-level field is refused (fastjson would keep the last);
//! no client sends one.
//!
//! Reading is under the decode budget of Skylark's own frames
//! ([`crate::budget`]: 8 × the header's length + 16 KiB): a header of a
//! million empty `extFields` is [`RemotingError::HeaderOverBudget`], with
//! its scalar fields read again so that the listener can answer it.
//!
//! Both directions go straight between the bytes and [`RemotingCommand`]
//! (typed serde, no `serde_json::Value` tree in between): each header field
//! is allocated once, on the request path of every JSON-header client.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::{LanguageCode, RemotingCommand, RemotingError, Result, SerializeType};
use crate::budget::{budget_for, decode_or_refused};

/// The header as written: borrowed from the command, keys in fastjson's
/// (alphabetical) order.
#[derive(Serialize)]
struct Out<'a> {
    code: i32,
    #[serde(rename = "extFields", skip_serializing_if = "BTreeMap::is_empty")]
    ext_fields: &'a BTreeMap<String, String>,
    flag: i32,
    language: &'static str,
    opaque: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    remark: &'a Option<String>,
    #[serde(rename = "serializeTypeCurrentRPC")]
    serialize_type: &'static str,
    version: i32,
}

pub(super) fn encode(cmd: &RemotingCommand) -> Result<Vec<u8>> {
    serde_json::to_vec(&Out {
        code: cmd.code,
        ext_fields: &cmd.ext_fields,
        flag: cmd.flag,
        language: cmd.language.name(),
        opaque: cmd.opaque,
        remark: &cmd.remark,
        serialize_type: cmd.serialize_type.name(),
        version: cmd.version,
    })
    .map_err(|e| RemotingError::Json(e.to_string()))
}

/// The header as read: `In<String, ExtFields>`; `In<IgnoredAny,
/// IgnoredAny>` reads the scalar fields alone, skipping the others without
/// building them (what answers a header refused by the budget).
#[derive(Deserialize)]
#[serde(bound(deserialize = "R: Deserialize<'de>, E: Deserialize<'de>"))]
struct In<R, E> {
    code: Option<i32>,
    #[serde(default)]
    language: Option<Language>,
    #[serde(default)]
    version: Option<i32>,
    #[serde(default)]
    opaque: Option<i32>,
    #[serde(default)]
    flag: Option<i32>,
    #[serde(default)]
    remark: Option<R>,
    #[serde(rename = "extFields", default)]
    ext_fields: Option<E>,
}

impl<R, E> In<R, E> {
    /// The command's scalar fields (`code` required); no remark, extFields
    /// or body.
    fn scalars(&self) -> Result<RemotingCommand> {
        Ok(RemotingCommand {
            code: self
                .code
                .ok_or_else(|| RemotingError::Json("no 'code' field".into()))?,
            language: self.language.as_ref().map_or(LanguageCode::JAVA, |l| l.0),
            version: self.version.unwrap_or(0),
            opaque: self.opaque.unwrap_or(0),
            flag: self.flag.unwrap_or(0),
            ..Default::default()
        })
    }
}

/// `language`: a name (`"JAVA"`) or RocketMQ's number.
struct Language(LanguageCode);

impl<'de> Deserialize<'de> for Language {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Language;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a language name or number")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> std::result::Result<Language, E> {
                Ok(Language(LanguageCode::from_name(s)))
            }
            // Any number is read, as an unknown name is: one that fits no
            // byte (12345, -1, 1.5) is `OTHER`, as 99 is named.
            fn visit_u64<E: de::Error>(self, n: u64) -> std::result::Result<Language, E> {
                Ok(Language(
                    u8::try_from(n).map_or(LanguageCode::OTHER, LanguageCode),
                ))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> std::result::Result<Language, E> {
                Ok(Language(
                    u8::try_from(n).map_or(LanguageCode::OTHER, LanguageCode),
                ))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> std::result::Result<Language, E> {
                Ok(Language(LanguageCode::OTHER))
            }
        }
        d.deserialize_any(V)
    }
}

/// `extFields`: string values as they are, numbers and booleans as their
/// JSON text, nulls left out.
struct ExtFields(BTreeMap<String, String>);

/// One extFields value.
struct ExtValue(Option<String>);

impl<'de> Deserialize<'de> for ExtValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ExtValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number, boolean or null")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> std::result::Result<ExtValue, E> {
                Ok(ExtValue(Some(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> std::result::Result<ExtValue, E> {
                Ok(ExtValue(Some(s)))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> std::result::Result<ExtValue, E> {
                Ok(ExtValue(Some(n.to_string())))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> std::result::Result<ExtValue, E> {
                Ok(ExtValue(Some(n.to_string())))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> std::result::Result<ExtValue, E> {
                Ok(ExtValue(Some(
                    serde_json::Number::from_f64(n)
                        .map_or_else(|| n.to_string(), |n| n.to_string()),
                )))
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> std::result::Result<ExtValue, E> {
                Ok(ExtValue(Some(b.to_string())))
            }
            fn visit_unit<E: de::Error>(self) -> std::result::Result<ExtValue, E> {
                Ok(ExtValue(None))
            }
            fn visit_none<E: de::Error>(self) -> std::result::Result<ExtValue, E> {
                Ok(ExtValue(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, _: A) -> std::result::Result<ExtValue, A::Error> {
                Err(de::Error::custom("an extFields value is not a string"))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(
                self,
                _: A,
            ) -> std::result::Result<ExtValue, A::Error> {
                Err(de::Error::custom("an extFields value is not a string"))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for ExtFields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ExtFields;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of header fields")
            }
            fn visit_unit<E: de::Error>(self) -> std::result::Result<ExtFields, E> {
                Ok(ExtFields(BTreeMap::new()))
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut m: A,
            ) -> std::result::Result<ExtFields, A::Error> {
                let mut fields = BTreeMap::new();
                // A repeated key: the last value wins (null removes it).
                while let Some(k) = m.next_key::<String>()? {
                    match m.next_value()? {
                        ExtValue(Some(v)) => fields.insert(k, v),
                        ExtValue(None) => fields.remove(&k),
                    };
                }
                Ok(ExtFields(fields))
            }
        }
        d.deserialize_any(V)
    }
}

fn json_error(e: serde_json::Error) -> RemotingError {
    RemotingError::Json(e.to_string())
}

pub(super) fn decode(header: &[u8]) -> Result<RemotingCommand> {
    // A derived struct would also read a JSON array (fields by position).
    if header.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(RemotingError::Json(
            "the header is not a JSON object".into(),
        ));
    }
    let budget = budget_for(header.len());
    let mut de = serde_json::Deserializer::from_slice(header);
    let h: In<String, ExtFields> = match decode_or_refused(&mut de, budget) {
        Ok(h) => h,
        Err((_, true)) => return Err(over_budget(header, budget)),
        Err((e, false)) => return Err(json_error(e)),
    };
    de.end().map_err(json_error)?;
    let scalars = h.scalars()?;
    Ok(RemotingCommand {
        remark: h.remark,
        ext_fields: h.ext_fields.map(|e| e.0).unwrap_or_default(),
        ..scalars
    })
}

/// A header refused by the budget: its scalar fields read again (the
/// skipped ones cost nothing), so the listener can answer it; a header
/// whose scalars do not read either is just bad JSON.
fn over_budget(header: &[u8], budget: usize) -> RemotingError {
    let scalars = serde_json::from_slice::<In<IgnoredAny, IgnoredAny>>(header)
        .ok()
        .and_then(|h| h.scalars().ok());
    match scalars {
        Some(request) => RemotingError::HeaderOverBudget {
            len: header.len(),
            budget,
            request: Box::new(RemotingCommand {
                serialize_type: SerializeType::Json,
                ..request
            }),
        },
        None => RemotingError::Json(format!(
            "the decoded header would exceed {budget} bytes (8 x its length + 16 KiB)"
        )),
    }
}
