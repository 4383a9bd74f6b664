//! `skylark admin message (by-key|by-id|by-time)` and `skylark admin broker
//! config (get|set)`.
//!
//! Message queries print each message as `consume` does (one JSON object
//! per message with `--json`, the `consume --json` shape). `by-key` and
//! `by-time` ask every master hosting the topic; `by-id` asks only the
//! broker whose address is inside an offset message id (one read there), and
//! looks a `UNIQ_KEY` up by key (see [`by_id`]). Broker settings
//! go to `--broker` (a broker name or address) or to every master the
//! NameServer knows. `by-key` refuses a time range that ends before it
//! begins; clap refuses `--max 0` and `--max-per-queue 0`. Errors name
//! the object that is wrong (`message 'ID' not found on broker ADDR`).

use std::io::Write;

use anyhow::bail;
use serde_json::json;
use skylark_codec::{
    GetBrokerConfigRequest, MessageId, QueryMessageByKeyRequest, QueryMessageByTimeRequest,
    QueryMessageResponse, SetBrokerConfigRequest, ViewMessageByIdRequest,
};

use super::admin_broker::{self, call};
use super::{BrokerCmd, BrokerConfigCmd, MessageCmd};
use crate::client::decode_records;
use crate::client::{ClientConfig, NameServerClient, ReceivedMessage};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Master addresses of the brokers hosting `topic`.
async fn masters_of(ns: &NameServerClient, topic: &str) -> anyhow::Result<Vec<String>> {
    let masters = admin_broker::topic_masters(ns, topic).await?;
    Ok(masters.into_iter().map(|(_, addr)| addr).collect())
}

fn decode(resp: &QueryMessageResponse, addr: &str) -> anyhow::Result<Vec<ReceivedMessage>> {
    Ok(decode_records(&resp.records, addr, None)?)
}

fn print_all(messages: &[ReceivedMessage], json: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    for m in messages {
        super::consume::print_message(&mut out, m, json)?;
    }
    out.flush()?;
    Ok(())
}

/// The `[begin, end]` store-time range of `by-key`: `--begin` defaults to
/// 0 and `--end` to `now`; a range that ends before it begins is refused
/// (it would match nothing, silently).
fn time_range(begin: Option<i64>, end: Option<i64>, now: i64) -> anyhow::Result<(i64, i64)> {
    let b = begin.unwrap_or(0);
    let e = end.unwrap_or(now);
    if b > e {
        match end {
            Some(_) => bail!("--begin {b} is after --end {e}: the time range is empty"),
            None => bail!(
                "--begin {b} is after now ({e} ms since the epoch, the default --end): the time range is empty"
            ),
        }
    }
    Ok((b, e))
}

/// Entry point of `admin message ...`.
pub async fn message(
    ns: &NameServerClient,
    cfg: &ClientConfig,
    cmd: MessageCmd,
    json: bool,
) -> anyhow::Result<()> {
    match cmd {
        MessageCmd::ByKey(a) => {
            let (begin_ms, end_ms) = time_range(a.begin, a.end, now_ms())?;
            let req = QueryMessageByKeyRequest {
                topic: a.topic.clone(),
                key: a.key.clone(),
                begin_ms,
                end_ms,
                // At least 1: clap refuses `--max 0`.
                max: a.max,
            };
            let mut found = Vec::new();
            for addr in masters_of(ns, &a.topic).await? {
                let resp = call(cfg, &addr, Some(&a.topic), &req).await?;
                found.extend(decode(&resp, &addr)?);
            }
            if found.is_empty() {
                bail!("no message with key '{}' in topic '{}'", a.key, a.topic);
            }
            found.sort_by_key(|m| std::cmp::Reverse(m.store_timestamp));
            print_all(&found, json)
        }
        MessageCmd::ById(a) => by_id(ns, cfg, &a.id, a.topic.as_deref(), json).await,
        MessageCmd::ByOffset(a) => super::admin_ops::message_by_offset(ns, cfg, &a, json).await,
        MessageCmd::ByTime(a) => {
            let req = QueryMessageByTimeRequest {
                topic: a.topic.clone(),
                timestamp_ms: a.timestamp,
                // At least 1: clap refuses `--max-per-queue 0`.
                max_per_queue: a.max_per_queue,
            };
            let mut found = Vec::new();
            for addr in masters_of(ns, &a.topic).await? {
                let resp = call(cfg, &addr, Some(&a.topic), &req).await?;
                found.extend(decode(&resp, &addr)?);
            }
            if found.is_empty() {
                bail!(
                    "no message in topic '{}' stored at or after {}",
                    a.topic,
                    a.timestamp
                );
            }
            print_all(&found, json)
        }
    }
}

/// `admin message by-id ID`: `ID` is an offset message id (the broker's
/// address and the CommitLog offset, as `produce --json` prints it) or a
/// `UNIQ_KEY` (the producer's unique id), as RocketMQ's `queryMsgById`
/// accepts both. Both forms are 32 hex digits for an IPv4 broker, so an id
/// is read as an offset id only when it names a broker the NameServer knows
/// and a message starts at its offset there; else it is looked up as a
/// unique key through the brokers' IndexFile (`by-key` on `--topic`, or on
/// every topic the NameServer lists).
async fn by_id(
    ns: &NameServerClient,
    cfg: &ClientConfig,
    id: &str,
    topic: Option<&str>,
    json: bool,
) -> anyhow::Result<()> {
    let hex = !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex {
        bail!("bad message id '{id}': expected an offset message id or a UNIQ_KEY (hex digits)");
    }
    if let Some(t) = topic {
        skylark_codec::validate_topic_name(t).map_err(anyhow::Error::msg)?;
    }
    let known: std::collections::BTreeSet<String> = ns
        .cluster_info()
        .await?
        .brokers
        .values()
        .flat_map(|b| b.addrs.values().cloned())
        .collect();
    if let Ok(mid) = MessageId::from_hex(id) {
        let addr = mid.addr.to_string();
        if known.contains(&addr) {
            let req = ViewMessageByIdRequest {
                msg_id: id.to_string(),
            };
            let resp = call(cfg, &addr, None, &req).await?;
            let found = decode(&resp, &addr)?;
            if !found.is_empty() {
                return print_all(&found, json);
            }
        }
    }
    let topics = match topic {
        Some(t) => vec![t.to_string()],
        None => ns.topic_list().await?.topics,
    };
    let mut found = Vec::new();
    for t in &topics {
        let req = QueryMessageByKeyRequest {
            topic: t.clone(),
            key: id.to_string(),
            begin_ms: 0,
            end_ms: now_ms(),
            max: 64,
        };
        let Ok(masters) = masters_of(ns, t).await else {
            continue;
        };
        for addr in masters {
            let resp = call(cfg, &addr, Some(t), &req).await?;
            found.extend(decode(&resp, &addr)?.into_iter().filter(|m| {
                m.property(UNIQ_KEY)
                    .is_some_and(|u| u.eq_ignore_ascii_case(id))
            }));
        }
    }
    if found.is_empty() {
        let scope = match topic {
            Some(t) => format!("topic '{t}'"),
            None => format!("any of {} topic(s)", topics.len()),
        };
        bail!("message '{id}' not found: no broker holds it as an offset message id, and no message of {scope} has it as its UNIQ_KEY");
    }
    print_all(&found, json)
}

const UNIQ_KEY: &str = skylark_actors::message_store::record::PROPERTY_UNIQ_KEY;

/// The address of `--broker` (a broker name or address, as for `broker
/// status`), or of every master the NameServer knows.
async fn target_brokers(
    ns: &NameServerClient,
    broker: Option<String>,
) -> anyhow::Result<Vec<String>> {
    if let Some(b) = broker {
        return Ok(vec![admin_broker::resolve_broker(ns, &b).await?.1]);
    }
    let mut all: Vec<String> = admin_broker::cluster_masters(ns)
        .await?
        .into_iter()
        .map(|(_, addr)| addr)
        .collect();
    all.sort();
    Ok(all)
}

/// Entry point of `admin broker config ...`.
pub async fn broker(
    ns: &NameServerClient,
    cfg: &ClientConfig,
    cmd: BrokerCmd,
    json: bool,
) -> anyhow::Result<()> {
    match &cmd {
        BrokerCmd::Perm(p) => return super::admin_ops::broker_perm(ns, cfg, p, json).await,
        BrokerCmd::Status(a) => return super::admin_ops::broker_status(ns, cfg, a, json).await,
        BrokerCmd::Config(_) => {}
    }
    let mut out = std::io::stdout().lock();
    match cmd {
        BrokerCmd::Perm(_) | BrokerCmd::Status(_) => {}
        BrokerCmd::Config(BrokerConfigCmd::Get(a)) => {
            for addr in target_brokers(ns, a.broker).await? {
                let s = call(cfg, &addr, None, &GetBrokerConfigRequest {}).await?;
                if json {
                    let settings: serde_json::Map<String, serde_json::Value> = s
                        .settings
                        .iter()
                        .map(|(k, v)| (k.clone(), json!(v)))
                        .collect();
                    writeln!(out, "{}", json!({"broker": addr, "settings": settings}))?;
                } else {
                    for (k, v) in &s.settings {
                        writeln!(out, "{addr} {k} = {v}")?;
                    }
                }
            }
        }
        BrokerCmd::Config(BrokerConfigCmd::Set(a)) => {
            let req = SetBrokerConfigRequest {
                key: a.key.clone(),
                value: a.value.clone(),
            };
            for addr in target_brokers(ns, a.broker).await? {
                call(cfg, &addr, None, &req).await?;
                if json {
                    writeln!(
                        out,
                        "{}",
                        json!({"broker": addr, "key": a.key, "value": a.value, "result": "set"})
                    )?;
                } else {
                    writeln!(out, "{addr} {} = {}", a.key, a.value)?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::time_range;

    #[test]
    fn time_range_defaults_and_refuses_a_reversed_range() {
        assert_eq!(time_range(None, None, 100).unwrap(), (0, 100));
        assert_eq!(time_range(Some(5), Some(5), 100).unwrap(), (5, 5));
        let e = time_range(Some(5), Some(1), 100).unwrap_err().to_string();
        assert!(e.contains("--begin 5 is after --end 1"), "{e}");
        let e = time_range(Some(200), None, 100).unwrap_err().to_string();
        assert!(e.contains("default --end"), "{e}");
    }
}
