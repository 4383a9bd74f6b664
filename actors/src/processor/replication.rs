//! Replication on the request path: a slave refuses sends (`NotMaster`), a
//! master waits for its slave after an append as its role says, and the
//! `SyncMetadata` (110) / `GetReplicationStatus` (111) commands.

use std::sync::Arc;
use std::time::Instant;

use skylark_codec::{
    ErrorCode, GetReplicationStatusRequest, MessageId, MetadataSnapshot, ReplicationStatus,
    SendResult, SendStatus, SyncMetadataRequest, WireError,
};

use super::Shared;
use crate::broker::ListTopics;
use crate::config::BrokerRole;
use crate::consumer_offsets::{MergeOffsets, SnapshotOffsets};
use crate::replicator::{GetStatus, WaitOutcome, WaitReplicated};
use crate::scheduler::GetProgress;
use crate::storage::GetStorageStats;

/// Whether this broker is its group's master now (in controller mode: the
/// controller's answer); a `NotMaster` error naming the master otherwise.
pub fn refuse_unless_master(s: &Shared) -> Result<(), WireError> {
    let master = match &s.config.controller_view {
        Some(view) => view.get().is_master,
        None => !s.config.is_slave(),
    };
    if master {
        return Ok(());
    }
    // The same refusal, with its reasons, as a send gets.
    refuse_on_slave(s).and(Err(WireError::new(
        ErrorCode::NotMaster,
        format!(
            "broker {} (id {}) is not its group's master",
            s.config.broker_name, s.config.broker_id
        ),
    )))
}

/// A slave stores only what it replicates. In controller mode the
/// controller's answer decides (a master not yet confirmed, or deposed,
/// refuses too, naming the current master), and a master refuses while
/// its in-sync set is below `min_in_sync_replicas`.
pub fn refuse_on_slave(s: &Shared) -> Result<(), WireError> {
    if let Some(view) = &s.config.controller_view {
        let v = view.get();
        if !v.is_master {
            return Err(WireError::new(
                ErrorCode::NotMaster,
                format!(
                    "broker {} (id {}) is not the master of epoch {}: the master is {}",
                    s.config.broker_name,
                    v.broker_id,
                    v.master_epoch,
                    v.master_addr.as_deref().unwrap_or("not elected yet")
                ),
            ));
        }
        if v.in_sync.len() < s.config.min_in_sync_replicas {
            return Err(WireError::new(
                ErrorCode::SlaveNotAvailable,
                format!(
                    "in-sync set {:?} has {} member(s), below min_in_sync_replicas {}",
                    v.in_sync,
                    v.in_sync.len(),
                    s.config.min_in_sync_replicas
                ),
            ));
        }
        return Ok(());
    }
    if s.config.is_slave() {
        return Err(WireError::new(
            ErrorCode::NotMaster,
            format!(
                "broker {} (id {}) is a slave: send to its master",
                s.config.broker_name, s.config.broker_id
            ),
        ));
    }
    Ok(())
}

/// After a local append ending at `end_offset`: ASYNC_MASTER answers now;
/// SYNC_MASTER waits for a slave, up to `sync_replication_timeout_ms`
/// counted from `since`, the moment of the append: the slave streams the
/// records as soon as they are appended, so its wait overlaps the fsync
/// wait (sync flush) instead of following it. (Slave
/// sessions learn of every append from the Storage actor itself.)
pub async fn after_append(
    s: &Shared,
    end_offset: u64,
    status: SendStatus,
    since: Instant,
) -> SendStatus {
    match s.config.role() {
        BrokerRole::SyncMaster => match s
            .replicator
            .send(WaitReplicated {
                offset: end_offset,
                since,
            })
            .await
        {
            Ok(WaitOutcome::Replicated) => status,
            Ok(WaitOutcome::Timeout) | Err(_) => SendStatus::FlushSlaveTimeout,
            Ok(WaitOutcome::NoSlave) => SendStatus::SlaveNotAvailable,
        },
        _ => status,
    }
}

/// `SyncMetadata`: merge the slave's pushed offsets (larger wins), answer
/// topics, offsets and the Scheduler's progress.
pub async fn sync_metadata(
    s: Arc<Shared>,
    r: SyncMetadataRequest,
) -> Result<MetadataSnapshot, WireError> {
    if s.config.is_slave() {
        return Err(WireError::new(
            ErrorCode::NotMaster,
            "metadata is synced from a master",
        ));
    }
    let topics = s
        .broker
        .send(ListTopics)
        .await
        .map_err(crate::mailbox_error)?;
    // Offsets of a topic deleted here while the slave was away are not
    // taken back: the topic, if created again, starts from 0.
    let mut entries = r.slave_offsets;
    if !entries.is_empty() {
        let names: std::collections::HashSet<&str> =
            topics.iter().map(|t| t.name.as_str()).collect();
        entries.retain(|e| names.contains(e.topic.as_str()));
    }
    if !entries.is_empty() {
        s.offsets
            .send(MergeOffsets {
                entries,
                keep_larger: true,
            })
            .await
            .map_err(crate::mailbox_error)?;
    }
    let offsets = s
        .offsets
        .send(SnapshotOffsets)
        .await
        .map_err(crate::mailbox_error)?;
    // Progress first, then the CommitLog end: every delivery the progress
    // counts was appended before it was persisted, so it lies below `end`.
    let mut schedule = s
        .scheduler
        .addr
        .send(GetProgress)
        .await
        .map_err(crate::mailbox_error)?;
    schedule.commit_log_end = s
        .storage
        .send(GetStorageStats)
        .await
        .map_err(crate::mailbox_error)?
        .max_physical_offset;
    Ok(MetadataSnapshot {
        topics,
        offsets,
        schedule: Some(schedule),
    })
}

/// `GetReplicationStatus`.
pub async fn status(
    s: Arc<Shared>,
    _: GetReplicationStatusRequest,
) -> Result<ReplicationStatus, WireError> {
    s.replicator
        .send(GetStatus)
        .await
        .map_err(crate::mailbox_error)
}

/// The send answers of an append, in order: after the flush (sync flush)
/// and, on a SYNC_MASTER, after a slave has the batch.
pub(super) async fn send_results(
    s: &Shared,
    res: &crate::message_store::AppendBatchResult,
) -> Vec<SendResult> {
    let status = if res.flush_timed_out {
        SendStatus::FlushDiskTimeout
    } else {
        SendStatus::SendOk
    };
    let status = after_append(s, res.end_offset, status, res.appended_at).await;
    res.results
        .iter()
        .map(|it| SendResult {
            status,
            msg_id: MessageId::new(s.store_host, it.physical_offset).to_hex(),
            queue_id: it.queue_id,
            queue_offset: it.queue_offset,
        })
        .collect()
}
