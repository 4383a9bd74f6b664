//! `skylark admin message (by-key|by-id|by-time)` and `skylark admin broker
//! config (get|set)`.
//!
//! Message queries print each message as `consume` does (one JSON object
//! per message with `--json`, the `consume --json` shape). `by-key` and
//! `by-time` ask every broker group hosting the topic; `by-id` asks only the
//! group of the broker whose address is inside an offset message id (one
//! read there), and looks a `UNIQ_KEY` up by key (see [`by_id`]). Each
//! group is read on its master, or on a slave when the master does not
//! answer (`admin_group::read_group`, noted on stderr). Broker settings
//! go to `--broker` (a broker name or address) or to every master the
//! NameServer knows. `by-key` refuses a time range that ends before it
//! begins; clap refuses `--max 0` and `--max-per-queue 0`. Errors name
//! the object that is wrong (`message 'ID' not found on broker ADDR`).

use std::io::Write;

use anyhow::bail;
use serde_json::json;
use skylark_codec::{
    ErrorCode, GetBrokerConfigRequest, MessageId, QueryMessageByKeyRequest,
    QueryMessageByTimeRequest, QueryMessageResponse, Rpc, SetBrokerConfigRequest,
    ViewMessageByIdRequest,
};

use super::admin_broker::{self, call};
use super::admin_group;
use super::{BrokerCmd, BrokerConfigCmd, MessageCmd};
use crate::client::decode_records;
use crate::client::{ClientConfig, ClientError, NameServerClient, ReceivedMessage};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `req` on every broker group hosting `topic`: its master, or a slave
/// when the master does not answer (noted on stderr, as `topic stats`
/// does); the messages found, decoded. Fails when no group answered.
async fn on_topic<R>(
    ns: &NameServerClient,
    cfg: &ClientConfig,
    topic: &str,
    req: &R,
) -> anyhow::Result<Vec<ReceivedMessage>>
where
    R: Rpc<Response = QueryMessageResponse>,
{
    let route = ns.route(topic).await?;
    let (answers, _) = admin_group::read_groups(cfg, &route.brokers, Some(topic), req).await?;
    let mut found = Vec::new();
    for (_, a) in answers {
        found.extend(decode(&a.value, &a.addr)?);
    }
    Ok(found)
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
            let mut found = on_topic(ns, cfg, &a.topic, &req).await?;
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
            let found = on_topic(ns, cfg, &a.topic, &req).await?;
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
/// and a message starts at its offset there (or on a slave of that broker's
/// group when it does not answer: a group none of whose members answers is
/// an error naming each member's failure); else it is looked up as a
/// unique key through the brokers' IndexFile (`by-key` on `--topic`, or on
/// every topic the NameServer lists). A broker that answers that its
/// retention deleted the message (`MessageDeleted`) is named in the
/// not-found error.
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
    // Why the broker the id names has not the message, when retention
    // deleted it (the id may still be a UNIQ_KEY: looked up below).
    let mut deleted = None;
    if let Ok(mid) = MessageId::from_hex(id) {
        let addr = mid.addr.to_string();
        let info = ns.cluster_info().await?;
        // The group of the broker the id names: its slaves hold the same
        // CommitLog at the same offsets.
        if let Some(b) = info
            .brokers
            .values()
            .find(|b| b.addrs.values().any(|a| *a == addr))
        {
            let read =
                admin_group::read_group_each::<ViewMessageByIdRequest, _>(cfg, b, None, |m| {
                    ViewMessageByIdRequest {
                        msg_id: id_on(&mid, m).unwrap_or_else(|| id.to_string()),
                    }
                })
                .await;
            match read {
                Ok(a) => {
                    admin_group::note_from_slave(&b.broker_name, &a);
                    let found = decode(&a.value, &a.addr)?;
                    if !found.is_empty() {
                        return print_all(&found, json);
                    }
                }
                Err(e) => deleted = Some(retained_away(e)?),
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
        let Ok(route) = ns.route(t).await else {
            continue;
        };
        let (answers, _) = admin_group::read_groups(cfg, &route.brokers, Some(t), &req).await?;
        for (_, a) in answers {
            found.extend(decode(&a.value, &a.addr)?.into_iter().filter(|m| {
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
        if let Some(why) = deleted {
            bail!(
                "message '{id}' not found: {why}, and no message of {scope} has it as its UNIQ_KEY"
            );
        }
        bail!("message '{id}' not found: no broker holds it as an offset message id, and no message of {scope} has it as its UNIQ_KEY");
    }
    print_all(&found, json)
}

/// The reason for a broker's `MessageDeleted` answer to an offset message
/// id (the offset is below its retained CommitLog minimum), naming the
/// broker; any other failure of the read is returned as it is.
fn retained_away(e: anyhow::Error) -> anyhow::Result<String> {
    match e.downcast_ref::<ClientError>() {
        Some(ClientError::Remote { addr, error, .. })
            if error.code == ErrorCode::MessageDeleted =>
        {
            Ok(format!(
                "broker {addr} no longer holds it ({})",
                error.message
            ))
        }
        _ => Err(e),
    }
}

/// The offset message id `mid` as the group member at `member` reads it: a
/// broker answers only ids naming itself, and a slave's CommitLog holds
/// the master's records at the same offsets (the record still names the
/// master, so the id printed is the one asked for). `None` when `member`
/// is not an `IP:PORT`.
fn id_on(mid: &MessageId, member: &str) -> Option<String> {
    let addr = member.parse().ok()?;
    Some(MessageId::new(addr, mid.physical_offset).to_hex())
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
            let mut writes = admin_broker::Writes::new(format!("broker config set {}", a.key));
            for addr in target_brokers(ns, a.broker).await? {
                if let Err(e) = call(cfg, &addr, None, &req).await {
                    writes.failed(&addr, &addr, e);
                    continue;
                }
                writes.applied(&addr, &addr);
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
            drop(out);
            writes.finish(json)?;
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
