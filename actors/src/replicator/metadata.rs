//! Slave side of the metadata sync (command `SyncMetadata`, 110): copy the
//! master's topic configs (deleting those it no longer has) and consumer
//! offsets every
//! `metadata_sync_interval_secs` (10 s), and hand the master's Scheduler
//! progress to the slave's (passive) Scheduler, which applies it once the
//! local CommitLog holds the deliveries it counts.
//!
//! Offsets committed on the slave while the master was away (consumers read
//! from the slave then) must not be lost when the master returns: after
//! start and after any failed sync, the next successful sync pushes the
//! slave's offsets and the master merges them keeping the larger offset of
//! each queue. Routine syncs push nothing, so a backtrack (offset reset) on
//! the master reaches the slave instead of being undone by it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use skylark_codec::{SyncMetadataRequest, TopicConfig};

use crate::broker::{Broker, CreateTopics, DeleteTopic, ListTopics, TopicDeleted};
use crate::consumer_offsets::{ConsumerOffsets, DeleteTopicOffsets, MergeOffsets, SnapshotOffsets};
use crate::scheduler::{FollowMaster, Scheduler};

/// Runs one sync against the master at `master_addr`.
pub async fn sync_once(
    (master_addr, cfg): (&str, Arc<crate::config::BrokerConfig>),
    broker_id: u64,
    push_offsets: bool,
    broker: &Addr<Broker>,
    offsets: &Addr<ConsumerOffsets>,
    scheduler: &Addr<Scheduler>,
) -> Result<(), String> {
    let client = cfg
        .connect_peer(master_addr)
        .await
        .map_err(|e| e.to_string())?;
    let slave_offsets = if push_offsets {
        offsets
            .send(SnapshotOffsets)
            .await
            .map_err(|e| e.to_string())?
    } else {
        Vec::new()
    };
    let snap = client
        .call_timeout(
            &SyncMetadataRequest {
                broker_id,
                slave_offsets,
            },
            Duration::from_secs(10),
        )
        .await
        .map_err(|e| e.to_string())?;
    client.close();
    let mine: HashMap<String, TopicConfig> = broker
        .send(ListTopics)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|t| (t.name.clone(), t))
        .collect();
    // As RocketMQ's slave does, the table becomes the master's: a topic
    // the master deleted goes here too, with its offsets (its queues went
    // with the deletion record in the replicated CommitLog).
    let masters: std::collections::HashSet<&str> =
        snap.topics.iter().map(|t| t.name.as_str()).collect();
    let gone: Vec<String> = mine
        .keys()
        .filter(|name| !masters.contains(name.as_str()))
        .cloned()
        .collect();
    drop(masters);
    let changed: Vec<TopicConfig> = snap
        .topics
        .into_iter()
        .filter(|t| mine.get(&t.name) != Some(t))
        .collect();
    if !changed.is_empty() {
        broker
            .send(CreateTopics(changed))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
    }
    for name in &gone {
        broker
            .send(DeleteTopic(name.clone()))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        broker.do_send(TopicDeleted(name.clone()));
    }
    if !gone.is_empty() {
        offsets
            .send(DeleteTopicOffsets(gone))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
    }
    offsets
        .send(MergeOffsets {
            entries: snap.offsets,
            keep_larger: false,
        })
        .await
        .map_err(|e| e.to_string())?;
    if let Some(p) = snap.schedule {
        scheduler.do_send(FollowMaster(p));
    }
    Ok(())
}
