//! The JSON header (serialize type 0), as RocketMQ's fastjson writes a
//! `RemotingCommand`: fields in alphabetical order, `language` and
//! `serializeTypeCurrentRPC` as enum names, `remark` left out when null.
//!
//! Reading is lenient where clients differ: `language` may be a name or a
//! number, extFields values may be numbers or booleans (kept as their JSON
//! text), unknown fields are ignored. `code` is required.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{LanguageCode, RemotingCommand, RemotingError, Result};

pub(super) fn encode(cmd: &RemotingCommand) -> Result<Vec<u8>> {
    // serde_json's map is ordered by key: the same order fastjson uses.
    let mut m = Map::new();
    m.insert("code".into(), cmd.code.into());
    if !cmd.ext_fields.is_empty() {
        let ext: Map<String, Value> = cmd
            .ext_fields
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        m.insert("extFields".into(), Value::Object(ext));
    }
    m.insert("flag".into(), cmd.flag.into());
    m.insert("language".into(), cmd.language.name().into());
    m.insert("opaque".into(), cmd.opaque.into());
    if let Some(r) = &cmd.remark {
        m.insert("remark".into(), r.clone().into());
    }
    m.insert(
        "serializeTypeCurrentRPC".into(),
        cmd.serialize_type.name().into(),
    );
    m.insert("version".into(), cmd.version.into());
    serde_json::to_vec(&Value::Object(m)).map_err(|e| RemotingError::Json(e.to_string()))
}

fn int(m: &Map<String, Value>, key: &str, required: bool) -> Result<i32> {
    match m.get(key) {
        None | Some(Value::Null) if !required => Ok(0),
        None | Some(Value::Null) => Err(RemotingError::Json(format!("no '{key}' field"))),
        Some(v) => v
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .ok_or_else(|| RemotingError::Json(format!("'{key}' is not a 32-bit integer: {v}"))),
    }
}

pub(super) fn decode(header: &[u8]) -> Result<RemotingCommand> {
    let v: Value =
        serde_json::from_slice(header).map_err(|e| RemotingError::Json(e.to_string()))?;
    let Value::Object(m) = v else {
        return Err(RemotingError::Json(
            "the header is not a JSON object".into(),
        ));
    };
    let language = match m.get("language") {
        None | Some(Value::Null) => LanguageCode::JAVA,
        Some(Value::String(s)) => LanguageCode::from_name(s),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|n| u8::try_from(n).ok())
            .map(LanguageCode)
            .ok_or_else(|| RemotingError::Json(format!("bad 'language': {n}")))?,
        Some(other) => return Err(RemotingError::Json(format!("bad 'language': {other}"))),
    };
    let remark = match m.get("remark") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => return Err(RemotingError::Json(format!("bad 'remark': {other}"))),
    };
    let mut ext_fields = BTreeMap::new();
    match m.get("extFields") {
        None | Some(Value::Null) => {}
        Some(Value::Object(ext)) => {
            for (k, v) in ext {
                let s = match v {
                    Value::String(s) => s.clone(),
                    Value::Null => continue,
                    Value::Number(_) | Value::Bool(_) => v.to_string(),
                    other => {
                        return Err(RemotingError::Json(format!(
                            "extFields '{k}' is not a string: {other}"
                        )))
                    }
                };
                ext_fields.insert(k.clone(), s);
            }
        }
        Some(other) => return Err(RemotingError::Json(format!("bad 'extFields': {other}"))),
    }
    Ok(RemotingCommand {
        code: int(&m, "code", true)?,
        language,
        version: int(&m, "version", false)?,
        opaque: int(&m, "opaque", false)?,
        flag: int(&m, "flag", false)?,
        remark,
        ext_fields,
        ..Default::default()
    })
}
