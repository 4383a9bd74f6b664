//! The operator commands RocketMQ users reach for in `mqadmin`, as
//! `skylark admin ...` (see docs/operations.md):
//!
//! * `topic perm` (`updateTopicPerm`): a topic's read/write permission on
//!   every master hosting it; brokers enforce it on sends and pulls and
//!   register it, so clients route around an unwritable topic.
//! * `broker perm wipe-write|add-write` (`wipeWritePerm` / `addWritePerm`):
//!   the whole broker's write permission (the `broker_permission` setting,
//!   persisted by the broker); sends are refused and the NameServers' routes
//!   show its queues as not writable.
//! * `message by-offset` (`queryMsgByOffset`): the message at a queue offset,
//!   read with a pull that commits nothing.
//! * `group config set|show` (`updateSubGroup`): a consumer group's retry
//!   max, consume enable and broadcast enable, stored by each master.
//! * `group connections` / `producer connections` (`consumerConnection` /
//!   `producerConnection`): live clients as the brokers know them from
//!   heartbeats (id, address, language, version, subscriptions).
//! * `broker status` (`brokerStatus`): put/get TPS, CommitLog, disk, flush
//!   latency and the recovery report, from every broker or `--broker`.
//!
//! Errors name the object that is wrong; the exit status is non-zero.

use std::io::Write;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use serde_json::json;
use skylark_actors::live_settings::{parse_perm, perm_text};
use skylark_codec::{
    CreateTopicRequest, ErrorCode, GetBrokerConfigRequest, GetTopicStatsRequest, PullRequest,
    PullStatus, Rpc, SetBrokerConfigRequest, PERM_WRITE,
};

use super::admin_broker::{call, group_name, masters, resolve_broker, topic_masters, Writes};
use crate::client::{ClientConfig, ClientError, NameServerClient};

macro_rules! out {
    ($($t:tt)*) => {
        writeln!(std::io::stdout().lock(), $($t)*)?
    };
}

/// `admin topic perm`.
#[derive(Debug, Args)]
pub struct TopicPermArgs {
    /// Topic name.
    #[arg(long)]
    pub name: String,
    /// rw, r, w or - (none); RocketMQ's 6, 4, 2, 0 also work.
    #[arg(long)]
    pub perm: String,
    /// Only on this broker (name or address; default: every master hosting the topic).
    #[arg(long)]
    pub broker: Option<String>,
}

/// `admin broker perm ...`.
#[derive(Debug, Subcommand)]
pub enum BrokerPermCmd {
    /// Take the broker's write permission away: it refuses new sends and
    /// the NameServers route producers elsewhere (RocketMQ wipeWritePerm).
    WipeWrite(BrokerTargetArgs),
    /// Give the broker its write permission back (RocketMQ addWritePerm).
    AddWrite(BrokerTargetArgs),
}

/// One broker, by name or address.
#[derive(Debug, Args)]
pub struct BrokerTargetArgs {
    /// Broker name (its master) or address.
    #[arg(long)]
    pub broker: String,
}

/// `admin message by-offset`.
#[derive(Debug, Args)]
pub struct MessageByOffsetArgs {
    /// Topic.
    #[arg(long)]
    pub topic: String,
    /// Queue id (on the broker named by --broker).
    #[arg(long)]
    pub queue: u32,
    /// Queue offset.
    #[arg(long)]
    pub offset: u64,
    /// Broker name or address; needed when several brokers host the topic.
    #[arg(long)]
    pub broker: Option<String>,
}

/// `admin topic perm --name T --perm P`.
pub async fn topic_perm(
    ns: &NameServerClient,
    cfg: &ClientConfig,
    a: &TopicPermArgs,
    json: bool,
) -> anyhow::Result<()> {
    skylark_codec::validate_topic_name(&a.name).map_err(anyhow::Error::msg)?;
    let perm = parse_perm(&a.perm).map_err(|e| anyhow::anyhow!("bad --perm '{}': {e}", a.perm))?;
    super::admin_broker::refuse_broker_topic(&a.name, "changed")?;
    let targets: Vec<(String, String)> = match &a.broker {
        Some(b) => vec![resolve_broker(ns, b).await?],
        None => topic_masters(ns, &a.name).await?,
    };
    let stats = GetTopicStatsRequest {
        topic: a.name.clone(),
    };
    // Every target is tried (setting a permission again is harmless:
    // running the command again finishes it).
    let mut writes = Writes::new(format!("perm of topic '{}'", a.name));
    for (name, addr) in &targets {
        let set = async {
            let mut config = call(cfg, addr, Some(&a.name), &stats).await?.config;
            let before = config.perm;
            config.perm = (config.perm & !(skylark_codec::PERM_READ | PERM_WRITE)) | perm;
            call(cfg, addr, Some(&a.name), &CreateTopicRequest { config }).await?;
            Ok::<_, ClientError>(before)
        };
        let before = match set.await {
            Ok(before) => before,
            Err(e) => {
                writes.failed(name, addr, e);
                continue;
            }
        };
        writes.applied(name, addr);
        if json {
            out!(
                "{}",
                json!({"topic": a.name, "broker_name": name, "addr": addr,
                    "perm_before": perm_text(before), "perm": perm_text(perm)})
            );
        } else {
            out!(
                "topic '{}' on {name} ({addr}): perm {} -> {}",
                a.name,
                perm_text(before),
                perm_text(perm)
            );
        }
    }
    writes.finish(json)
}

/// The broker's permission as it reports it.
async fn broker_perm_of(cfg: &ClientConfig, addr: &str) -> anyhow::Result<u8> {
    let s = call(cfg, addr, None, &GetBrokerConfigRequest {}).await?;
    let v = s
        .settings
        .iter()
        .find(|(k, _)| k == "broker_permission")
        .map(|(_, v)| v.clone())
        .with_context(|| format!("broker {addr} does not report a broker_permission (too old)"))?;
    parse_perm(&v).map_err(|e| anyhow::anyhow!("broker {addr} reports permission '{v}': {e}"))
}

/// `admin broker perm wipe-write|add-write --broker B`.
pub async fn broker_perm(
    ns: &NameServerClient,
    cfg: &ClientConfig,
    cmd: &BrokerPermCmd,
    json: bool,
) -> anyhow::Result<()> {
    let (target, wipe) = match cmd {
        BrokerPermCmd::WipeWrite(t) => (t, true),
        BrokerPermCmd::AddWrite(t) => (t, false),
    };
    let (name, addr) = resolve_broker(ns, &target.broker).await?;
    let before = broker_perm_of(cfg, &addr).await?;
    let after = if wipe {
        before & !PERM_WRITE
    } else {
        before | PERM_WRITE
    };
    let req = SetBrokerConfigRequest {
        key: "broker_permission".to_string(),
        value: after.to_string(),
    };
    call(cfg, &addr, None, &req).await?;
    if json {
        out!(
            "{}",
            json!({"broker_name": name, "addr": addr, "perm_before": perm_text(before),
                "perm": perm_text(after)})
        );
    } else {
        out!(
            "broker '{name}' ({addr}): permission {} -> {}",
            perm_text(before),
            perm_text(after)
        );
    }
    Ok(())
}

/// `admin message by-offset --topic T --queue Q --offset O`.
pub async fn message_by_offset(
    ns: &NameServerClient,
    cfg: &ClientConfig,
    a: &MessageByOffsetArgs,
    json: bool,
) -> anyhow::Result<()> {
    skylark_codec::validate_topic_name(&a.topic).map_err(anyhow::Error::msg)?;
    let route = ns.route(&a.topic).await?;
    let (name, addr) = match &a.broker {
        Some(b) => resolve_broker(ns, b).await?,
        None => {
            let hosts = masters(&route.brokers);
            match hosts.as_slice() {
                [one] => one.clone(),
                [] => bail!("topic '{}': no master broker hosts it", a.topic),
                many => bail!(
                    "topic '{}' is on {} brokers ({}): name one with --broker (queue ids are per broker)",
                    a.topic,
                    many.len(),
                    many.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
                ),
            }
        }
    };
    // RocketMQ's queryMsgByOffset pulls as the tools' consumer group; the
    // pull commits nothing.
    let req = PullRequest {
        consumer_group: "TOOLS_CONSUMER".to_string(),
        topic: a.topic.clone(),
        queue_id: a.queue,
        queue_offset: a.offset,
        max_messages: 1,
        max_bytes: u32::MAX,
        suspend_timeout_ms: 0,
        subscription: None,
        sql: None,
        commit_offset: None,
    };
    let resp = call(cfg, &addr, Some(&a.topic), &req).await?;
    let found = match resp.status {
        PullStatus::Found => crate::client::decode_records(&resp.records, &addr, None)?,
        _ => Vec::new(),
    };
    let Some(m) = found.into_iter().find(|m| m.queue_offset == a.offset) else {
        bail!(
            "no message at offset {} of topic '{}' queue {} on broker '{name}' ({addr}): the queue holds offsets {}..{}",
            a.offset,
            a.topic,
            a.queue,
            resp.min_offset,
            resp.max_offset
        );
    };
    let mut out = std::io::stdout().lock();
    super::consume::print_message(&mut out, &m, json)?;
    if !json {
        let props: Vec<String> = m
            .properties
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        writeln!(
            out,
            "broker={name} ({addr}) born={} stored={} reconsume_times={} properties: {}",
            m.born_timestamp,
            m.store_timestamp,
            m.reconsume_times,
            props.join(", ")
        )?;
    }
    out.flush()?;
    Ok(())
}

/// `ErrorCode` of an error chain, if it carries one (tests and callers).
pub fn error_code(e: &anyhow::Error) -> Option<ErrorCode> {
    e.downcast_ref::<ClientError>().and_then(ClientError::code)
}

/// `admin group config ...`.
#[derive(Debug, Subcommand)]
pub enum GroupConfigCmd {
    /// Change a group's settings on every master (RocketMQ updateSubGroup);
    /// settings not given keep their current value.
    Set(GroupConfigSetArgs),
    /// A group's settings on every broker.
    Show(super::GroupNameArgs),
}

/// `admin group config set`.
#[derive(Debug, Args)]
pub struct GroupConfigSetArgs {
    /// Consumer group.
    #[arg(long)]
    pub group: String,
    /// Retries before the dead-letter topic (0-64; the broker applies it to
    /// every message sent back, over the consumer's own value).
    #[arg(long)]
    pub retry_max: Option<u32>,
    /// Go back to the consumer's own retry max (16 unless it says otherwise).
    #[arg(long, conflicts_with = "retry_max")]
    pub client_retry_max: bool,
    /// Whether members may pull (false: pulls are refused).
    #[arg(long)]
    pub consume_enable: Option<bool>,
    /// Whether members may consume in broadcasting mode.
    #[arg(long)]
    pub broadcast: Option<bool>,
    /// Only on this broker (name or address; default: every master).
    #[arg(long)]
    pub broker: Option<String>,
}

/// `admin producer ...`.
#[derive(Debug, Subcommand)]
pub enum ProducerCmd {
    /// The live clients of a producer group on every broker (RocketMQ producerConnection).
    Connections(ProducerGroupArgs),
}

/// `admin producer connections`.
#[derive(Debug, Args)]
pub struct ProducerGroupArgs {
    /// Producer group.
    #[arg(long)]
    pub group: String,
}

/// `admin broker status`.
#[derive(Debug, Args)]
pub struct BrokerStatusArgs {
    /// Broker name or address (default: every broker, masters and slaves).
    #[arg(long)]
    pub broker: Option<String>,
}

/// Every registered broker as (broker name, id, address), or the one named.
async fn brokers(
    ns: &NameServerClient,
    only: Option<&str>,
    masters_only: bool,
) -> anyhow::Result<Vec<(String, u64, String)>> {
    if let Some(b) = only {
        let (name, addr) = resolve_broker(ns, b).await?;
        return Ok(vec![(name, 0, addr)]);
    }
    let info = ns.cluster_info().await?;
    let mut all: Vec<(String, u64, String)> = info
        .brokers
        .values()
        .flat_map(|b| {
            b.addrs
                .iter()
                .filter(|(id, _)| !masters_only || **id == 0)
                .map(|(id, a)| (b.broker_name.clone(), *id, a.clone()))
        })
        .collect();
    all.sort();
    if all.is_empty() {
        bail!("no broker is registered with the NameServer");
    }
    Ok(all)
}

/// `admin group config set|show`.
pub async fn group_config(
    ns: &NameServerClient,
    cfg: &ClientConfig,
    cmd: &GroupConfigCmd,
    json: bool,
) -> anyhow::Result<()> {
    use skylark_codec::{GetSubscriptionGroupRequest, UpdateSubscriptionGroupRequest};
    let (group, set) = match cmd {
        GroupConfigCmd::Set(a) => (&a.group, Some(a)),
        GroupConfigCmd::Show(g) => (&g.group, None),
    };
    skylark_codec::validate_group_name(group).map_err(anyhow::Error::msg)?;
    if let Some(a) = set {
        if a.retry_max.is_none()
            && !a.client_retry_max
            && a.consume_enable.is_none()
            && a.broadcast.is_none()
        {
            bail!("nothing to set: give --retry-max, --client-retry-max, --consume-enable or --broadcast");
        }
    }
    let only = set.and_then(|a| a.broker.as_deref());
    let targets = brokers(ns, only, true).await?;
    let get = GetSubscriptionGroupRequest {
        group: group.clone(),
    };
    // A set is tried on every target, as other writes to several brokers
    // (setting the same values again is harmless).
    let mut writes = Writes::new(format!("config set of group '{group}'"));
    for (name, _, addr) in &targets {
        let info = async {
            let mut info = call(cfg, addr, None, &get).await?;
            if let Some(a) = set {
                set_group_config(&mut info.config, a);
                let req = UpdateSubscriptionGroupRequest {
                    config: info.config.clone(),
                };
                call(cfg, addr, None, &req).await?;
                info.stored = true;
            }
            Ok::<_, ClientError>(info)
        };
        let info = match info.await {
            Ok(info) => info,
            Err(e) if set.is_some() => {
                writes.failed(name, addr, e);
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        writes.applied(name, addr);
        let c = &info.config;
        let retry = c
            .retry_max_times
            .map_or_else(|| "client's (default 16)".to_string(), |n| n.to_string());
        if json {
            out!(
                "{}",
                json!({"group": group, "broker_name": name, "addr": addr, "stored": info.stored,
                    "consume_enable": c.consume_enable,
                    "consume_broadcast_enable": c.consume_broadcast_enable,
                    "retry_max_times": c.retry_max_times})
            );
        } else {
            out!(
                "{name} ({addr}) group '{group}': consume_enable={} broadcast={} retry_max={retry}{}",
                c.consume_enable,
                c.consume_broadcast_enable,
                if info.stored { "" } else { " (defaults)" }
            );
        }
    }
    writes.finish(json)
}

/// `a`'s settings applied to `c`; those not given keep their value.
fn set_group_config(c: &mut skylark_codec::SubscriptionGroupConfig, a: &GroupConfigSetArgs) {
    if let Some(n) = a.retry_max {
        c.retry_max_times = Some(n);
    }
    if a.client_retry_max {
        c.retry_max_times = None;
    }
    if let Some(e) = a.consume_enable {
        c.consume_enable = e;
    }
    if let Some(b) = a.broadcast {
        c.consume_broadcast_enable = b;
    }
}

/// `req` on every master broker: the rows `rows` takes from each answer,
/// with the broker's name.
async fn on_masters<R: Rpc, T>(
    ns: &NameServerClient,
    cfg: &ClientConfig,
    req: &R,
    rows: impl Fn(R::Response) -> Vec<T>,
) -> anyhow::Result<Vec<(String, T)>> {
    let mut all = Vec::new();
    for (name, _, addr) in brokers(ns, None, true).await? {
        let answer = call(cfg, &addr, None, req).await?;
        all.extend(rows(answer).into_iter().map(|row| (name.clone(), row)));
    }
    Ok(all)
}

/// `admin group connections --group G` (RocketMQ consumerConnection).
pub async fn consumer_connections(
    ns: &NameServerClient,
    cfg: &ClientConfig,
    group: &str,
    json: bool,
) -> anyhow::Result<()> {
    let req = skylark_codec::GetConsumerConnectionsRequest {
        group: group_name(group)?,
    };
    let rows = on_masters(ns, cfg, &req, |r| r.connections).await?;
    if rows.is_empty() {
        bail!("consumer group '{group}' has no live member on any master broker");
    }
    for (broker, c) in &rows {
        let subs: Vec<String> = c
            .subscriptions
            .iter()
            .map(|s| match s.expression_type {
                skylark_codec::ExpressionType::Tag => format!("{} '{}'", s.topic, s.expression),
                skylark_codec::ExpressionType::Sql => {
                    format!("{} SQL '{}'", s.topic, s.expression)
                }
            })
            .collect();
        let k = &c.connection;
        if json {
            out!(
                "{}",
                json!({"group": group, "broker_name": broker, "client_id": k.client_id,
                    "addr": k.addr, "language": k.language, "version": k.version,
                    "last_heartbeat_ms": k.last_heartbeat_ms,
                    "consume_type": format!("{:?}", c.consume_type),
                    "message_model": format!("{:?}", c.message_model),
                    "subscriptions": c.subscriptions.iter().map(|s| json!({
                        "topic": s.topic, "expression_type": format!("{:?}", s.expression_type),
                        "expression": s.expression})).collect::<Vec<_>>()})
            );
        } else {
            out!(
                "{broker} {} {} {} {} {:?} {:?} subscriptions: {}",
                k.client_id,
                k.addr,
                k.language,
                k.version,
                c.consume_type,
                c.message_model,
                subs.join(", ")
            );
        }
    }
    Ok(())
}

/// `admin producer connections --group PG` (RocketMQ producerConnection).
pub async fn producer_connections(
    ns: &NameServerClient,
    cfg: &ClientConfig,
    group: &str,
    json: bool,
) -> anyhow::Result<()> {
    let req = skylark_codec::GetProducerConnectionsRequest {
        group: group_name(group)?,
    };
    let rows = on_masters(ns, cfg, &req, |r| r.connections).await?;
    if rows.is_empty() {
        bail!("producer group '{group}' has no live client on any master broker (producers are known from their heartbeats)");
    }
    for (broker, k) in &rows {
        if json {
            out!(
                "{}",
                json!({"group": group, "broker_name": broker, "client_id": k.client_id,
                    "addr": k.addr, "language": k.language, "version": k.version,
                    "last_heartbeat_ms": k.last_heartbeat_ms})
            );
        } else {
            out!(
                "{broker} {} {} {} {}",
                k.client_id,
                k.addr,
                k.language,
                k.version
            );
        }
    }
    Ok(())
}

/// `admin broker status` (RocketMQ brokerStatus).
pub async fn broker_status(
    ns: &NameServerClient,
    cfg: &ClientConfig,
    a: &BrokerStatusArgs,
    json: bool,
) -> anyhow::Result<()> {
    let req = skylark_codec::GetBrokerRuntimeStatusRequest {};
    let targets = brokers(ns, a.broker.as_deref(), false).await?;
    let mut failed = Vec::new();
    for (name, id, addr) in &targets {
        // A broker that does not answer is reported and left out: the
        // others' status is what an operator needs while one is down.
        let status = match call(cfg, addr, None, &req).await {
            Ok(s) => s,
            Err(e) => {
                let e = format!("broker {name} (id {id}, {addr}) unreachable: {e}");
                if json {
                    out!(
                        "{}",
                        json!({"broker_name": name, "broker_id": id, "addr": addr, "error": e})
                    );
                }
                failed.push(e);
                continue;
            }
        };
        if json {
            let table: serde_json::Map<String, serde_json::Value> = status
                .table
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            out!(
                "{}",
                json!({"broker_name": name, "broker_id": id, "addr": addr, "status": table})
            );
        } else {
            out!("{name} ({addr}):");
            for (k, v) in &status.table {
                out!("  {k:<32} {v}");
            }
        }
    }
    if failed.len() == targets.len() && !failed.is_empty() {
        bail!("{}", failed.join("; "));
    }
    for e in &failed {
        note!("warning: left out: {e}");
    }
    Ok(())
}
