//! `skylark admin group (list|progress|delete)` and `admin offset reset`:
//! consumer groups as the brokers see them.
//!
//! Group commands ask every broker group the NameServer knows (a group's
//! offsets live on each broker hosting its topics) and merge the answers;
//! `list` and `progress` read from a group's slave when its master does not
//! answer (see [`read_group`]), `delete` writes to masters only;
//! `offset reset` asks every master hosting the topic to move the group's
//! offsets to the first message stored at or after `--timestamp` (ms), and
//! those brokers tell the group's live members to re-read them. A group
//! none of those brokers knows (`admin group list`) is refused rather than
//! created.

use std::borrow::Borrow;
use std::collections::BTreeSet;
use std::io::Write;

use anyhow::bail;
use serde_json::json;
use skylark_codec::{
    BrokerData, DeleteGroupRequest, ErrorCode, GetConsumeProgressRequest, GetGroupListRequest,
    ResetOffsetRequest, Rpc,
};

use super::admin_broker::{call, cluster_masters, group_name, masters, Writes};
use crate::client::{ClientConfig, ClientError, NameServerClient};

macro_rules! out {
    ($($t:tt)*) => {
        writeln!(std::io::stdout().lock(), $($t)*)?
    };
}

/// Where a read-only admin request was answered.
pub(super) struct Answer<T> {
    pub addr: String,
    pub from_slave: bool,
    pub value: T,
}

/// Sends a read-only `req` to broker group `b`: its master or, when the
/// master cannot be reached (down, and not yet expired by the NameServers),
/// its slaves in id order, which hold replicated queues and synced offsets.
/// An error answer from a reachable broker is final unless it is retryable
/// (busy, starting, stopping). `Err` when no member answered, with each
/// one's failure.
async fn read_group<R: Rpc>(
    cfg: &ClientConfig,
    b: &BrokerData,
    topic: Option<&str>,
    req: &R,
) -> anyhow::Result<Answer<R::Response>> {
    read_group_each::<R, _>(cfg, b, topic, |_| req).await
}

/// [`read_group`] with a request made for each member: `req(addr)` is
/// sent to the member at `addr` (an offset message id must name the
/// broker that reads it).
pub(super) async fn read_group_each<R: Rpc, Q: Borrow<R>>(
    cfg: &ClientConfig,
    b: &BrokerData,
    topic: Option<&str>,
    req: impl Fn(&str) -> Q,
) -> anyhow::Result<Answer<R::Response>> {
    let mut failures = Vec::new();
    for (id, addr) in members_in_read_order(cfg, b).await {
        match call(cfg, &addr, topic, req(&addr).borrow()).await {
            Ok(value) => {
                return Ok(Answer {
                    addr: addr.clone(),
                    from_slave: id != 0,
                    value,
                })
            }
            Err(e @ (ClientError::Remote { .. } | ClientError::TlsRequired { .. }))
                if !e.is_retryable() =>
            {
                return Err(e.into())
            }
            Err(e) => failures.push(e.to_string()),
        }
    }
    if failures.is_empty() {
        bail!("broker group '{}' has no registered member", b.broker_name);
    }
    bail!(
        "broker group '{}' unreachable: {}",
        b.broker_name,
        failures.join("; ")
    )
}

/// The order [`read_group_each`] asks a group's members in: the master
/// first, then the slaves holding the most of the CommitLog first (asked
/// for it only when the master does not answer and there are several: a
/// slave cut off long ago is the last to be read, not the first by id).
async fn members_in_read_order(cfg: &ClientConfig, b: &BrokerData) -> Vec<(u64, String)> {
    let mut members: Vec<(u64, String)> = b.addrs.iter().map(|(i, a)| (*i, a.clone())).collect();
    if members.iter().filter(|(id, _)| *id != 0).count() < 2 {
        return members;
    }
    let master_answers = match b.addrs.get(&0) {
        Some(m) => crate::client::connect_broker(cfg, m)
            .await
            .map(|c| c.close())
            .is_ok(),
        None => false,
    };
    if !master_answers {
        let mut held = std::collections::BTreeMap::new();
        for (id, addr) in &members {
            let req = skylark_codec::GetReplicationStatusRequest {};
            if let Ok(s) = call(cfg, addr, None, &req).await {
                held.insert(*id, s.max_offset);
            }
        }
        members.sort_by_key(|(id, _)| (*id != 0, std::cmp::Reverse(held.get(id).copied()), *id));
    }
    members
}

/// Notes on stderr that broker group `name` was answered by its slave,
/// once per command: a query over every topic reads each group many times.
pub(super) fn note_from_slave<T>(name: &str, a: &Answer<T>) {
    if a.from_slave {
        note_once(format!(
            "note: broker group '{name}' answered from its slave {} (master unreachable)",
            a.addr
        ));
    }
}

/// Writes `line` on stderr unless this process already wrote it.
fn note_once(line: String) {
    static SEEN: std::sync::Mutex<BTreeSet<String>> = std::sync::Mutex::new(BTreeSet::new());
    let first = SEEN
        .lock()
        .map(|mut s| s.insert(line.clone()))
        .unwrap_or(true);
    if first {
        note!("{line}");
    }
}

/// Every broker group the NameServer knows; an error when there is none.
pub(super) async fn broker_groups(ns: &NameServerClient) -> anyhow::Result<Vec<BrokerData>> {
    let groups: Vec<BrokerData> = ns.cluster_info().await?.brokers.into_values().collect();
    if groups.is_empty() {
        bail!("no broker is registered with the NameServer");
    }
    Ok(groups)
}

/// The groups' answers to a read, by broker name, and the messages of the
/// groups none of whose members answered.
pub(super) type GroupAnswers<T> = (Vec<(String, Answer<T>)>, Vec<String>);

/// [`read_group`] on each of `groups`. Notes on stderr each group answered
/// by its slave, warns about each group that did not answer (their
/// messages are returned for `--json`'s `unanswered`), and fails, naming
/// every group, when none answered.
pub(super) async fn read_groups<R: Rpc>(
    cfg: &ClientConfig,
    groups: &[BrokerData],
    topic: Option<&str>,
    req: &R,
) -> anyhow::Result<GroupAnswers<R::Response>> {
    let (mut answers, mut unanswered) = (Vec::new(), Vec::new());
    for b in groups {
        match read_group(cfg, b, topic, req).await {
            Ok(a) => {
                note_from_slave(&b.broker_name, &a);
                answers.push((b.broker_name.clone(), a));
            }
            Err(e) => unanswered.push(format!("{e:#}")),
        }
    }
    if answers.is_empty() && !unanswered.is_empty() {
        bail!("{}", unanswered.join("; "));
    }
    for e in &unanswered {
        note_once(format!("warning: left out: {e}"));
    }
    Ok((answers, unanswered))
}

/// `admin group list`.
pub async fn list(ns: &NameServerClient, cfg: &ClientConfig, json: bool) -> anyhow::Result<()> {
    let groups_known = broker_groups(ns).await?;
    let (answers, unanswered) =
        read_groups(cfg, &groups_known, None, &GetGroupListRequest {}).await?;
    let groups: BTreeSet<String> = answers
        .into_iter()
        .flat_map(|(_, a)| a.value.groups)
        .collect();
    if json {
        out!("{}", json!({ "groups": groups, "unanswered": unanswered }));
    } else {
        for g in groups {
            out!("{g}");
        }
    }
    Ok(())
}

/// `admin group progress --group G`.
pub async fn progress(
    ns: &NameServerClient,
    cfg: &ClientConfig,
    group: &str,
    json: bool,
) -> anyhow::Result<()> {
    let req = GetConsumeProgressRequest {
        group: group_name(group)?,
    };
    let (answers, unanswered) = read_groups(cfg, &broker_groups(ns).await?, None, &req).await?;
    let mut rows = Vec::new();
    let mut members = BTreeSet::new();
    // By their text, which also orders them: one per topic and variants
    // however many brokers report it.
    let mut conflicts = std::collections::BTreeMap::new();
    for (name, a) in answers {
        if a.from_slave {
            // Offsets reach a slave with the metadata sync, not at once.
            note!(
                "note: a slave has the group's offsets as of its last metadata sync with the master (every metadata_sync_interval_secs, 10 s by default): newer commits are missing (their lag shows higher) and queues first committed since are not listed (their lag is not counted)"
            );
        }
        members.extend(a.value.client_ids);
        conflicts.extend(
            a.value
                .subscription_conflicts
                .into_iter()
                .map(|c| (c.to_string(), c)),
        );
        rows.extend(a.value.queues.into_iter().map(|q| (name.clone(), q)));
    }
    if rows.is_empty() && members.is_empty() {
        bail!("consumer group '{group}' not found: no committed offsets and no live member");
    }
    rows.sort_by(|a, b| (&a.1.topic, &a.0, a.1.queue_id).cmp(&(&b.1.topic, &b.0, b.1.queue_id)));
    // Lag counts from the queue's min offset when the group committed
    // below it: the messages in between were deleted by retention.
    let total_lag: u64 = rows.iter().map(|(_, q)| q.lag()).sum();
    if json {
        let queues: Vec<_> = rows
            .iter()
            .map(|(b, q)| {
                json!({
                    "topic": q.topic, "broker_name": b, "queue_id": q.queue_id,
                    "broker_offset": q.broker_offset, "consumer_offset": q.consumer_offset,
                    "min_offset": q.min_offset, "below_retention": q.below_retention(),
                    "lag": q.lag(),
                    "last_consumed_ms": q.last_commit_ms,
                })
            })
            .collect();
        out!(
            "{}",
            json!({"group": group, "queues": queues, "total_lag": total_lag, "members": members,
                "subscription_conflicts": conflicts.values().collect::<Vec<_>>(),
                "unanswered": unanswered})
        );
        return Ok(());
    }
    out!(
        "{:<24} {:<16} {:>6} {:>14} {:>14} {:>10}  LAST_CONSUMED",
        "TOPIC",
        "BROKER",
        "QUEUE",
        "BROKER_OFFSET",
        "CONSUMER_OFF",
        "LAG"
    );
    for (b, q) in &rows {
        let last = q
            .last_commit_ms
            .map_or_else(|| "-".to_string(), |ms| ms.to_string());
        out!(
            "{:<24} {:<16} {:>6} {:>14} {:>14} {:>10}  {}",
            q.topic,
            b,
            q.queue_id,
            q.broker_offset,
            q.consumer_offset,
            q.lag(),
            last
        );
    }
    out!("total lag: {total_lag}; members: {}", members.len());
    for (b, q) in rows.iter().filter(|(_, q)| q.below_retention()) {
        out!(
            "NOTE: {} on {b} queue {}: committed offset {} is below the queue's retained minimum {} (retention deleted {} message(s) the group had not consumed); lag counts from {}",
            q.topic,
            q.queue_id,
            q.consumer_offset,
            q.min_offset,
            q.min_offset - q.consumer_offset,
            q.min_offset
        );
    }
    for c in conflicts.keys() {
        // Members of one group must subscribe alike (docs/consumer-groups.md).
        out!("WARNING: members subscribe differently, messages are skipped: {c}");
    }
    Ok(())
}

/// `admin group delete --group G`.
pub async fn delete(
    ns: &NameServerClient,
    cfg: &ClientConfig,
    group: &str,
    json: bool,
) -> anyhow::Result<()> {
    let req = DeleteGroupRequest {
        group: group_name(group)?,
    };
    // Only a broker's answer that it does not know the group means there
    // is nothing to delete there; a broker that did not answer (or failed)
    // may still hold it, and fails the command.
    let mut writes = Writes::new(format!("delete of consumer group '{group}'"));
    let mut deleted = Vec::new();
    for (name, addr) in cluster_masters(ns).await? {
        match call(cfg, &addr, None, &req).await {
            Ok(_) => {
                let line = format!("consumer group '{group}' deleted");
                writes.deleted(("group", group), &line, &name, &addr, json)?;
                deleted.push(name);
            }
            Err(e) if group_not_found(&e) => {}
            Err(e) => writes.failed(&name, &addr, e),
        }
    }
    if deleted.is_empty() && writes.all_applied() {
        bail!("consumer group '{group}' not found on any master");
    }
    writes.finish(json)
}

/// Whether `e` is a broker's answer that it does not know the group
/// (`GroupNotFound`; brokers before 2026-12 answered `BadRequest`
/// "consumer group 'G' does not exist", still taken in a mixed cluster).
fn group_not_found(e: &ClientError) -> bool {
    match e {
        ClientError::Remote { error, .. } => {
            error.code == ErrorCode::GroupNotFound
                || (error.code == ErrorCode::BadRequest
                    && error.message.ends_with("does not exist"))
        }
        _ => false,
    }
}

/// `admin offset reset --group G --topic T --timestamp MILLIS`.
pub async fn reset(
    ns: &NameServerClient,
    cfg: &ClientConfig,
    group: &str,
    topic: &str,
    timestamp_ms: i64,
    json: bool,
) -> anyhow::Result<()> {
    skylark_codec::validate_group_name(group).map_err(anyhow::Error::msg)?;
    skylark_codec::validate_topic_name(topic).map_err(anyhow::Error::msg)?;
    let route = ns.route(topic).await?;
    // Resetting a group no broker knows would create it (a phantom group
    // with offsets and no member): refuse, as RocketMQ refuses a reset of
    // a group without a subscription.
    let (known, _) = read_groups(cfg, &route.brokers, Some(topic), &GetGroupListRequest {}).await?;
    if !known
        .iter()
        .any(|(_, a)| a.value.groups.iter().any(|g| g == group))
    {
        bail!(
            "consumer group '{group}' not found on the brokers of topic '{topic}': it has no committed offsets and no live member (check the name with `admin group list`; start a consumer of it once to create it)"
        );
    }
    let req = ResetOffsetRequest {
        group: group.to_string(),
        topic: topic.to_string(),
        timestamp_ms,
    };
    // Every master is asked even when one fails (resetting to a timestamp
    // again is harmless: running the command again finishes it).
    let mut writes = Writes::new(format!(
        "offset reset of group '{group}' on topic '{topic}'"
    ));
    let mut rows = Vec::new();
    for (name, addr) in masters(&route.brokers) {
        match call(cfg, &addr, None, &req).await {
            Ok(r) => {
                writes.applied(&name, &addr);
                rows.extend(r.offsets.into_iter().map(|o| (name.clone(), o)));
            }
            Err(e) => writes.failed(&name, &addr, e),
        }
    }
    if json {
        let v: Vec<_> = rows
            .iter()
            .map(|(b, o)| json!({"broker_name": b, "queue_id": o.queue_id, "offset": o.offset}))
            .collect();
        out!(
            "{}",
            json!({"group": group, "topic": topic, "timestamp": timestamp_ms, "queues": v})
        );
    } else {
        for (b, o) in &rows {
            out!("{b} queue {} -> offset {}", o.queue_id, o.offset);
        }
    }
    writes.finish(json)
}
