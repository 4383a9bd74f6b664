//! Rebuilding the transaction state at start, through the Storage actor.
//!
//! 1. The op log (every record of [`OP_TOPIC`]) lists the decided halves.
//! 2. The half queue is read from the persisted progress; every half not
//!    decided is undecided again (check counts start at 0).
//! 3. A commit appends to the real topic before writing its op record. An
//!    undecided half whose committed copy is already in its real topic
//!    (`TRAN_HALF_QOFFSET` + `prepared_tx_offset`) died between the two: its
//!    op record is written now, so it is never delivered twice. Only the
//!    real topics of undecided halves are scanned, from the oldest one's
//!    store time.

use std::collections::HashMap;
use std::net::SocketAddr;

use actix::Addr;
use slog::{warn, Logger};

use super::half_table::{Begin, CheckPolicy, HalfTable};
use super::records::{
    committed_from, half_owner, op_record, op_target, real_destination, Decision, HALF_TOPIC,
    OP_TOPIC,
};
use crate::message_store::{decode, DecodedMessage, ReadStatus, StoreError};
use crate::storage::{GetMessages, ListQueues, PutMessages, QueueOffsetByTime, Storage};

/// The state on disk: decided halves from the op log, undecided ones from
/// the half queue at and after `floor`.
pub async fn rebuild(
    storage: &Addr<Storage>,
    policy: CheckPolicy,
    floor: u64,
    store_host: SocketAddr,
    log: &Logger,
) -> Result<HalfTable, StoreError> {
    let mut table = HalfTable::new(policy, floor);
    scan(storage, OP_TOPIC, 0, 0, |d| {
        if let Some(o) = op_target(d) {
            table.load_decided(o);
        }
    })
    .await?;
    let mut real_topics: HashMap<u64, String> = HashMap::new();
    scan(storage, HALF_TOPIC, 0, floor, |d| {
        let (group, tx) = half_owner(d);
        if let Some((topic, _)) = real_destination(d) {
            real_topics.insert(d.queue_offset, topic);
        }
        table.add(
            d.queue_offset,
            d.physical_offset,
            group,
            tx,
            d.store_timestamp,
        );
    })
    .await?;
    for qo in find_committed(storage, &table, &real_topics).await? {
        storage
            .send(PutMessages {
                messages: vec![op_record(qo, Decision::Commit, store_host)],
            })
            .await
            .map_err(|_| StoreError::ShutDown)??;
        if let Begin::Proceed(_) = table.begin_any(qo) {
            table.finish(qo);
        }
        warn!(log, "half message found committed without its op record; recorded now";
            "queue_offset" => qo);
    }
    Ok(table)
}

/// Reads every record of `topic` queue `queue_id` from `from`, calling `f` on each.
pub async fn scan(
    storage: &Addr<Storage>,
    topic: &str,
    queue_id: u32,
    from: u64,
    mut f: impl FnMut(&DecodedMessage<'_>),
) -> Result<(), StoreError> {
    let mut offset = from;
    loop {
        let r = storage
            .send(GetMessages {
                topic: topic.to_string(),
                queue_id,
                queue_offset: offset,
                max_messages: 256,
                max_bytes: 4 << 20,
                tag_filter: None,
                sql_filter: None,
                park: None,
            })
            .await
            .map_err(|_| StoreError::ShutDown)??;
        match r.status {
            ReadStatus::Found => {}
            ReadStatus::OffsetTooSmall => {
                offset = r.next_queue_offset;
                continue;
            }
            _ => return Ok(()),
        }
        let (records, mut pos) = (r.records.to_bytes(), 0);
        while pos < records.len() {
            let (d, len) = decode(&records[pos..])?;
            pos += len.max(1);
            f(&d);
        }
        if r.next_queue_offset <= offset {
            return Ok(());
        }
        offset = r.next_queue_offset;
    }
}

/// The undecided halves whose committed copy is already in their real
/// topic (found by `prepared_tx_offset`, scanning each real topic from the
/// oldest such half's store time).
async fn find_committed(
    storage: &Addr<Storage>,
    table: &HalfTable,
    real_topics: &HashMap<u64, String>,
) -> Result<Vec<u64>, StoreError> {
    // real topic -> (oldest store time, physical offset -> half queue offset)
    let mut by_topic: HashMap<&str, (i64, HashMap<u64, u64>)> = HashMap::new();
    for h in table.pending() {
        let Some(topic) = real_topics.get(&h.queue_offset) else {
            continue;
        };
        let e = by_topic
            .entry(topic.as_str())
            .or_insert((h.store_timestamp, HashMap::new()));
        e.0 = e.0.min(h.store_timestamp);
        e.1.insert(h.physical_offset, h.queue_offset);
    }
    if by_topic.is_empty() {
        return Ok(Vec::new());
    }
    let queues = storage
        .send(ListQueues)
        .await
        .map_err(|_| StoreError::ShutDown)?;
    let mut found = Vec::new();
    for (topic, (since, halves)) in &by_topic {
        for q in queues.iter().filter(|q| q.topic == *topic) {
            let from = storage
                .send(QueueOffsetByTime {
                    topic: q.topic.clone(),
                    queue_id: q.queue_id,
                    timestamp_ms: *since,
                })
                .await
                .map_err(|_| StoreError::ShutDown)?;
            scan(storage, topic, q.queue_id, from, |d| {
                if let Some((qo, physical)) = committed_from(d) {
                    if halves.get(&physical) == Some(&qo) {
                        found.push(qo);
                    }
                }
            })
            .await?;
        }
    }
    found.sort_unstable();
    found.dedup();
    Ok(found)
}
