//! GetBrokerRuntime: the broker's disk usage against the ratio at which it
//! refuses writes, its undecided half messages and the damaged records it
//! met, for the NameServer's dashboard. The usage is read with `statvfs`
//! (as the store's own check) on the blocking pool, never on the
//! connection's thread.

use std::sync::Arc;

use skylark_codec::{BrokerRuntime, ErrorCode, GetBrokerRuntimeRequest, WireError};

use super::Shared;
use crate::message_store::{DiskUsage, StatvfsDiskUsage};
use crate::storage::GetStorageStats;
use crate::transaction::GetTransactionStats;

pub async fn runtime(
    s: Arc<Shared>,
    _: GetBrokerRuntimeRequest,
) -> Result<BrokerRuntime, WireError> {
    let dir = s.config.store.data_dir.clone();
    let usage = tokio::task::spawn_blocking(move || StatvfsDiskUsage.usage_ratio(&dir))
        .await
        .map_err(|e| WireError::new(ErrorCode::Internal, format!("disk usage: {e}")))?
        .map_err(|e| WireError::new(ErrorCode::Internal, format!("disk usage: {e}")))?;
    let stats = s
        .storage
        .send(GetStorageStats)
        .await
        .map_err(crate::mailbox_error)?;
    let tx = s
        .transaction
        .send(GetTransactionStats)
        .await
        .map_err(crate::mailbox_error)?;
    Ok(BrokerRuntime {
        disk_usage_ratio: usage,
        disk_hard_limit_ratio: s.config.store.disk_hard_limit_ratio,
        disk_full: stats.disk_full,
        half_pending: tx.pending as u64,
        damaged_records: stats.damaged_records,
    })
}
