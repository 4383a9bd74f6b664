//! `skylark admin message (by-key|by-id|by-time)` and `skylark admin broker
//! config (get|set)`.
//!
//! Message queries print each message as `consume` does (one JSON object
//! per message with `--json`, the `consume --json` shape). `by-key` and
//! `by-time` ask every master hosting the topic; `by-id` asks only the
//! broker whose address is inside the id (one read there). Broker settings
//! go to `--broker` or to every master the NameServer knows. Errors name
//! the object that is wrong (`message 'ID' not found on broker ADDR`).

use std::io::Write;

use anyhow::bail;
use serde_json::json;
use skylark_codec::{
    GetBrokerConfigRequest, MessageId, QueryMessageByKeyRequest, QueryMessageByTimeRequest,
    QueryMessageResponse, Rpc, SetBrokerConfigRequest, ViewMessageByIdRequest,
};

use super::{BrokerCmd, BrokerConfigCmd, MessageCmd};
use crate::client::decode_records;
use crate::client::{ClientConfig, ClientError, NameServerClient, ReceivedMessage};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Calls `req` on the broker at `addr`; errors name the broker and topic.
async fn call<R: Rpc>(
    cfg: &ClientConfig,
    addr: &str,
    topic: Option<&str>,
    req: &R,
) -> anyhow::Result<R::Response> {
    let c = crate::client::connect_broker(cfg, addr).await?;
    let r = c.call(req).await;
    c.close();
    Ok(r.map_err(|e| ClientError::from_call(addr, topic, e))?)
}

/// Master addresses of the brokers hosting `topic`.
async fn masters_of(ns: &NameServerClient, topic: &str) -> anyhow::Result<Vec<String>> {
    let route = ns.route(topic).await?;
    let masters: Vec<String> = route
        .brokers
        .iter()
        .filter_map(|b| b.master_addr().map(String::from))
        .collect();
    if masters.is_empty() {
        bail!("topic '{topic}': no master broker hosts it");
    }
    Ok(masters)
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

/// Entry point of `admin message ...`.
pub async fn message(
    ns: &NameServerClient,
    cfg: &ClientConfig,
    cmd: MessageCmd,
    json: bool,
) -> anyhow::Result<()> {
    match cmd {
        MessageCmd::ByKey(a) => {
            let req = QueryMessageByKeyRequest {
                topic: a.topic.clone(),
                key: a.key.clone(),
                begin_ms: a.begin.unwrap_or(0),
                end_ms: a.end.unwrap_or_else(now_ms),
                max: a.max.max(1),
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
        MessageCmd::ById(a) => {
            let id = MessageId::from_hex(&a.id)
                .map_err(|e| anyhow::anyhow!("bad message id '{}': {e}", a.id))?;
            let addr = id.addr.to_string();
            let req = ViewMessageByIdRequest {
                msg_id: a.id.clone(),
            };
            let resp = call(cfg, &addr, None, &req).await?;
            let found = decode(&resp, &addr)?;
            if found.is_empty() {
                bail!("message '{}' not found on broker {addr}", a.id);
            }
            print_all(&found, json)
        }
        MessageCmd::ByTime(a) => {
            let req = QueryMessageByTimeRequest {
                topic: a.topic.clone(),
                timestamp_ms: a.timestamp,
                max_per_queue: a.max_per_queue.max(1),
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

/// `--broker`, or every master the NameServer knows.
async fn target_brokers(
    ns: &NameServerClient,
    broker: Option<String>,
) -> anyhow::Result<Vec<String>> {
    if let Some(b) = broker {
        return Ok(vec![b]);
    }
    let mut all: Vec<String> = ns
        .cluster_info()
        .await?
        .brokers
        .values()
        .filter_map(|b| b.master_addr().map(String::from))
        .collect();
    all.sort();
    if all.is_empty() {
        bail!("no master broker is registered with the NameServer");
    }
    Ok(all)
}

/// Entry point of `admin broker config ...`.
pub async fn broker(
    ns: &NameServerClient,
    cfg: &ClientConfig,
    cmd: BrokerCmd,
    json: bool,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match cmd {
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
