//! `skylark admin`: topics and the cluster, through the NameServer.
//!
//! `topic create|update` (in [`admin_topic`]) writes the topic to every
//! master broker the NameServer knows, or to `--broker`; `topic delete`
//! to every master hosting the topic. `topic route|list` and `cluster list`
//! print a table, or JSON with `--json`. Errors name the object
//! (`topic 'X' not found`).

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::bail;
use serde_json::json;
use skylark_codec::{DeleteTopicRequest, ErrorCode, GetTopicStatsRequest, PERM_READ, PERM_WRITE};

use super::admin_broker::Writes;
use super::{admin_broker, admin_group, admin_topic};
use super::{AdminArgs, AdminCmd, ClusterCmd, GroupCmd, OffsetCmd, TopicCmd};
use crate::client::{ClientConfig, NameServerClient};

/// `println!` that returns an error (e.g. a closed pipe) instead of panicking.
macro_rules! out {
    ($($t:tt)*) => {
        writeln!(std::io::stdout().lock(), $($t)*)?
    };
}

/// Entry point of `skylark admin`.
pub fn run(a: AdminArgs) -> anyhow::Result<()> {
    super::block_on(admin(a))
}

async fn admin(a: AdminArgs) -> anyhow::Result<()> {
    let cfg = super::client_config(&a.namesrv);
    let ns = NameServerClient::new(&cfg.namesrv, cfg.request_timeout, &cfg.client_id)?
        .with_credentials(cfg.credentials.clone())
        .with_tls(cfg.tls.clone());
    match a.cmd {
        AdminCmd::Topic(TopicCmd::Create(t)) => {
            admin_topic::write(&ns, &cfg, &t, admin_topic::Verb::Create, a.json).await
        }
        AdminCmd::Topic(TopicCmd::Update(t)) => {
            admin_topic::write(&ns, &cfg, &t, admin_topic::Verb::Update, a.json).await
        }
        AdminCmd::Topic(TopicCmd::Delete(t)) => delete(&ns, &cfg, &t.name, a.json).await,
        AdminCmd::Topic(TopicCmd::Route(t)) => route(&ns, &t.name, a.json).await,
        AdminCmd::Topic(TopicCmd::Stats(t)) => stats(&ns, &cfg, &t.name, a.json).await,
        AdminCmd::Topic(TopicCmd::List) => list(&ns, a.json).await,
        AdminCmd::Topic(TopicCmd::Perm(t)) => {
            super::admin_ops::topic_perm(&ns, &cfg, &t, a.json).await
        }
        AdminCmd::Cluster(ClusterCmd::List) => cluster(&ns, &cfg, a.json).await,
        AdminCmd::Delay(super::DelayCmd::Stats { broker }) => {
            super::admin_delay::stats(&ns, &cfg, broker.as_deref(), a.json).await
        }
        AdminCmd::Message(m) => super::admin_query::message(&ns, &cfg, m, a.json).await,
        AdminCmd::Broker(b) => super::admin_query::broker(&ns, &cfg, b, a.json).await,
        AdminCmd::Group(GroupCmd::List) => admin_group::list(&ns, &cfg, a.json).await,
        AdminCmd::Group(GroupCmd::Progress(g)) => {
            admin_group::progress(&ns, &cfg, &g.group, a.json).await
        }
        AdminCmd::Group(GroupCmd::Delete(g)) => {
            admin_group::delete(&ns, &cfg, &g.group, a.json).await
        }
        AdminCmd::Group(GroupCmd::Config(c)) => {
            super::admin_ops::group_config(&ns, &cfg, &c, a.json).await
        }
        AdminCmd::Group(GroupCmd::Connections(g)) => {
            super::admin_ops::consumer_connections(&ns, &cfg, &g.group, a.json).await
        }
        AdminCmd::Producer(super::admin_ops::ProducerCmd::Connections(g)) => {
            super::admin_ops::producer_connections(&ns, &cfg, &g.group, a.json).await
        }
        AdminCmd::Offset(OffsetCmd::Reset(r)) => {
            admin_group::reset(&ns, &cfg, &r.group, &r.topic, r.timestamp, a.json).await
        }
        AdminCmd::Controller(c) => super::controller::admin(c, a.json).await,
    }
}

async fn delete(
    ns: &NameServerClient,
    cfg: &ClientConfig,
    name: &str,
    json: bool,
) -> anyhow::Result<()> {
    // Without a route (no broker has the topic's config any more), every
    // master is asked: one that still holds the topic's queues or offsets
    // (a delete cut short, or made by an older version) cleans them up,
    // and the others answer TopicNotFound.
    let (hosts, routed) = match ns.route(name).await {
        Ok(route) => (admin_broker::masters(&route.brokers), true),
        Err(e) if e.code() == Some(ErrorCode::TopicNotFound) => {
            (admin_broker::cluster_masters(ns).await?, false)
        }
        Err(e) => return Err(e.into()),
    };
    if hosts.is_empty() {
        bail!("cannot delete topic '{name}': no master broker hosts it");
    }
    let req = DeleteTopicRequest {
        topic: name.to_string(),
    };
    // Every host is asked even when one fails; one that answers
    // TopicNotFound has nothing left (a route lags a delete, so this is
    // also how a delete run again after a partial one completes).
    let mut writes = Writes::new(format!("delete of topic '{name}'"));
    let mut deleted = 0;
    for (broker, addr) in hosts {
        match admin_broker::call(cfg, &addr, Some(name), &req).await {
            Ok(_) => {
                let line = format!("deleted topic '{name}'");
                writes.deleted(("topic", name), &line, &broker, &addr, json)?;
                deleted += 1;
            }
            Err(e) if e.code() == Some(ErrorCode::TopicNotFound) => {}
            Err(e) => writes.failed(&broker, &addr, e),
        }
    }
    if deleted == 0 && writes.all_applied() {
        if routed {
            bail!("topic '{name}' does not exist on any master hosting it (already deleted; its route goes when the brokers next register)");
        }
        bail!("topic '{name}' does not exist on any master");
    }
    writes.finish(json)
}

fn perm_str(perm: u8) -> String {
    let r = if perm & PERM_READ != 0 { "r" } else { "-" };
    let w = if perm & PERM_WRITE != 0 { "w" } else { "-" };
    format!("{r}{w}")
}

async fn route(ns: &NameServerClient, name: &str, json: bool) -> anyhow::Result<()> {
    let route = ns.route(name).await?;
    if json {
        out!(
            "{}",
            serde_json::to_string(&json!({"topic": name, "route": route}))?
        );
        return Ok(());
    }
    out!(
        "{:<20} {:<24} {:>6} {:>6} {:<5} {:<5}",
        "BROKER",
        "MASTER",
        "READ",
        "WRITE",
        "PERM",
        "ORDER"
    );
    for q in &route.queues {
        let master = route
            .brokers
            .iter()
            .find(|b| b.broker_name == q.broker_name)
            .and_then(|b| b.master_addr())
            .unwrap_or("-");
        out!(
            "{:<20} {:<24} {:>6} {:>6} {:<5} {:<5}",
            q.broker_name,
            master,
            q.read_queues,
            q.write_queues,
            perm_str(q.perm),
            q.order
        );
    }
    Ok(())
}

/// `topic stats`: per broker and queue, the min and max offsets.
async fn stats(
    ns: &NameServerClient,
    cfg: &ClientConfig,
    name: &str,
    json: bool,
) -> anyhow::Result<()> {
    // Its route is listed, but brokers keep no statistics of their own topics.
    admin_broker::refuse_broker_topic(name, "read")?;
    let route = ns.route(name).await?;
    let req = GetTopicStatsRequest {
        topic: name.to_string(),
    };
    let (all, unanswered) = admin_group::read_groups(cfg, &route.brokers, Some(name), &req).await?;
    if json {
        let v: Vec<_> = all
            .iter()
            .map(|(broker, a)| {
                let s = &a.value;
                json!({"broker_name": broker, "addr": a.addr, "from_slave": a.from_slave,
                    "read_queues": s.config.read_queues, "write_queues": s.config.write_queues,
                    "perm": perm_str(s.config.perm), "order": s.config.order,
                    "queues": s.queues.iter().map(|q| json!({
                    "queue_id": q.queue_id, "min_offset": q.min_offset, "max_offset": q.max_offset,
                })).collect::<Vec<_>>(), "messages_put": s.messages_put, "parked_pulls": s.parked_pulls})
            })
            .collect();
        out!(
            "{}",
            json!({"topic": name, "brokers": v, "unanswered": unanswered})
        );
        return Ok(());
    }
    for (broker, a) in &all {
        let c = &a.value.config;
        out!(
            "{broker}: {} read / {} write queues, perm {}{}",
            c.read_queues,
            c.write_queues,
            perm_str(c.perm),
            if c.order { ", ordered" } else { "" }
        );
    }
    out!(
        "{:<20} {:>6} {:>14} {:>14}  WRITABLE",
        "BROKER",
        "QUEUE",
        "MIN_OFFSET",
        "MAX_OFFSET"
    );
    for (broker, a) in &all {
        for q in &a.value.queues {
            // A queue at or above the write count only drains.
            let writable = if a.from_slave {
                "no (from its slave: no master)"
            } else if q.queue_id < a.value.config.write_queues {
                "yes"
            } else {
                "no (draining)"
            };
            out!(
                "{:<20} {:>6} {:>14} {:>14}  {}",
                broker,
                q.queue_id,
                q.min_offset,
                q.max_offset,
                writable
            );
        }
    }
    Ok(())
}

async fn list(ns: &NameServerClient, json: bool) -> anyhow::Result<()> {
    let mut topics = ns.topic_list().await?.topics;
    topics.sort();
    if json {
        out!("{}", json!({ "topics": topics }));
    } else {
        for t in topics {
            out!("{t}");
        }
    }
    Ok(())
}

async fn cluster(ns: &NameServerClient, cfg: &ClientConfig, json: bool) -> anyhow::Result<()> {
    let info = ns.cluster_info().await?;
    // Brokers not listed under any cluster still show, under their own.
    let mut by_cluster: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (cluster, names) in &info.clusters {
        by_cluster
            .entry(cluster)
            .or_default()
            .extend(names.iter().map(String::as_str));
    }
    for b in info.brokers.values() {
        let names = by_cluster.entry(b.cluster.as_str()).or_default();
        if !names.contains(&b.broker_name.as_str()) {
            names.push(&b.broker_name);
        }
    }
    let mut members = Vec::new();
    for (cluster, names) in &by_cluster {
        for name in names {
            let Some(b) = info.brokers.get(*name) else {
                continue;
            };
            let mut statuses = BTreeMap::new();
            for (id, addr) in &b.addrs {
                statuses.insert(*id, replication_status(cfg, addr).await);
            }
            let master_max = statuses
                .get(&0)
                .and_then(|s| s.as_ref().ok())
                .map(|s| s.max_offset);
            for (id, addr) in &b.addrs {
                members.push(member_row(
                    cluster,
                    name,
                    *id,
                    addr,
                    &statuses[id],
                    master_max,
                ));
            }
        }
    }
    if json {
        let v = serde_json::json!({
            "clusters": info.clusters,
            "brokers": info.brokers,
            "members": members,
        });
        out!("{}", serde_json::to_string(&v)?);
        return Ok(());
    }
    out!(
        "{:<16} {:<20} {:>4} {:<22} {:<13} {:>14} {:>10}  STATE",
        "CLUSTER",
        "BROKER",
        "ID",
        "ADDR",
        "ROLE",
        "MAX_OFFSET",
        "LAG"
    );
    for m in &members {
        let text = |k: &str| m[k].as_str().unwrap_or("-").to_string();
        let num = |k: &str| m[k].as_u64().map_or("-".to_string(), |n| n.to_string());
        out!(
            "{:<16} {:<20} {:>4} {:<22} {:<13} {:>14} {:>10}  {}",
            text("cluster"),
            text("broker_name"),
            num("broker_id"),
            text("addr"),
            text("role"),
            num("max_offset"),
            num("lag"),
            member_state(m)
        );
    }
    Ok(())
}

/// The STATE column: whether the member answered and, for a slave, whether
/// it replicates (a slave cut off from its master shows the lag it had).
fn member_state(m: &serde_json::Value) -> &'static str {
    if m.get("error").is_some() {
        "unreachable"
    } else if m["master_connected"] == serde_json::Value::Bool(false) {
        "not replicating"
    } else {
        "ok"
    }
}

/// A broker's replication status, or why it could not be had.
async fn replication_status(
    cfg: &ClientConfig,
    addr: &str,
) -> Result<skylark_codec::ReplicationStatus, String> {
    let c = crate::client::connect_broker(cfg, addr)
        .await
        .map_err(|e| e.to_string())?;
    let r = c
        .call(&skylark_codec::GetReplicationStatusRequest {})
        .await
        .map_err(|e| e.to_string());
    c.close();
    r
}

/// One line of `cluster list`: lag is the master's CommitLog end minus the
/// slave's (its acked offset), or the end the master last reported to the
/// slave when the master does not answer.
fn member_row(
    cluster: &str,
    name: &str,
    id: u64,
    addr: &str,
    status: &Result<skylark_codec::ReplicationStatus, String>,
    master_max: Option<u64>,
) -> serde_json::Value {
    let mut v = serde_json::json!({
        "cluster": cluster, "broker_name": name, "broker_id": id, "addr": addr,
    });
    match status {
        Ok(s) => {
            v["role"] = s.role.clone().into();
            v["max_offset"] = s.max_offset.into();
            if id == 0 {
                v["ha_addr"] = s.ha_addr.clone().into();
                v["slaves"] = serde_json::to_value(&s.slaves).unwrap_or_default();
            } else {
                let master = master_max.unwrap_or(s.master_max_offset);
                v["lag"] = master.saturating_sub(s.max_offset).into();
                v["master_connected"] = s.master_connected.into();
                v["master_ha_addr"] = s.master_ha_addr.clone().into();
            }
        }
        Err(e) => v["error"] = e.clone().into(),
    }
    v
}

#[cfg(test)]
mod tests {
    use super::member_state;
    use serde_json::json;

    #[test]
    fn member_state_tells_unreachable_and_cut_off_slaves() {
        assert_eq!(
            member_state(&json!({"broker_id": 0, "error": "refused"})),
            "unreachable"
        );
        assert_eq!(
            member_state(&json!({"broker_id": 1, "master_connected": false})),
            "not replicating"
        );
        assert_eq!(
            member_state(&json!({"broker_id": 1, "master_connected": true})),
            "ok"
        );
        assert_eq!(
            member_state(&json!({"broker_id": 0, "role": "SYNC_MASTER"})),
            "ok"
        );
    }
}
