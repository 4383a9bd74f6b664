//! The storage engine's error type.
//!
//! `StoreError` is what every store operation and the Storage actor answer
//! with; the broker maps it onto the wire `ErrorCode` in one place. It is
//! `Clone` so that one failed group-commit fsync can answer every waiter.

use std::sync::Arc;

/// Errors of the storage engine.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Disk usage is above the hard limit (`usage > limit`), or the file
    /// system had no space left for a new file (`usage <= limit`; `limit`
    /// 1.0 when the configured one was not known where it happened): the
    /// write was refused, nothing was written.
    #[error("{}", disk_full_text(*usage, *limit))]
    DiskFull { usage: f64, limit: f64 },
    /// A message (body, properties or whole record, as `what` says)
    /// exceeds a size limit.
    #[error("message too large: {what} of {size} bytes, limit {limit}")]
    MessageTooLarge {
        what: &'static str,
        size: usize,
        limit: usize,
    },
    /// A message is malformed (empty or too long topic, reserved characters
    /// in properties, ...).
    #[error("bad message: {0}")]
    BadMessage(String),
    /// The configuration is unusable.
    #[error("invalid store configuration: {0}")]
    InvalidConfig(String),
    /// An I/O error from the file system.
    #[error("i/o error: {0}")]
    Io(Arc<std::io::Error>),
    /// Bytes that do not form a valid record or file.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// A sync flush did not complete within `sync_flush_timeout_ms`; the
    /// message is stored and will be flushed.
    #[error("sync flush timed out after {0} ms (message stored)")]
    FlushTimeout(u64),
    /// The flusher failed or is gone.
    #[error("flush failed: {0}")]
    FlushFailed(String),
    /// A physical offset that does not hold a record (deleted or not written).
    #[error("no record at physical offset {0}")]
    NoRecord(u64),
    /// The store was shut down.
    #[error("store is shut down")]
    ShutDown,
    /// Another process has this data directory open (its `lock` file is
    /// held): two brokers on one directory would overwrite each other's
    /// messages.
    #[error("data directory {dir} is in use by another process{holder} (it holds {dir}/lock); stop that process first or choose another data directory")]
    InUse { dir: String, holder: String },
}

/// The text of [`StoreError::DiskFull`]: the measured ratio and the limit,
/// in percent (a ratio printed to 3 decimals made 0.9996 read as 1.000).
fn disk_full_text(usage: f64, limit: f64) -> String {
    let (u, l) = (usage * 100.0, limit * 100.0);
    if usage > limit {
        format!("disk full: usage {u:.1}% is above the hard limit {l:.1}% (disk_hard_limit_ratio); writes are refused until space is freed")
    } else if limit >= 1.0 {
        "disk full: no space left on the device for a new store file (ENOSPC); writes are refused until space is freed".to_string()
    } else {
        format!("disk full: no space left on the device for a new store file (ENOSPC) at usage {u:.1}%, below the hard limit {l:.1}% (disk_hard_limit_ratio); writes are refused until space is freed")
    }
}

impl StoreError {
    /// An I/O error of `what` ("create", "map", ...) on `path`: the bare OS
    /// error ("Read-only file system") would not say which file.
    pub fn io_at(what: &str, path: &std::path::Path, e: std::io::Error) -> StoreError {
        let text = format!("cannot {what} {}: {e}", path.display());
        StoreError::Io(Arc::new(std::io::Error::new(e.kind(), text)))
    }
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::Io(Arc::new(e))
    }
}

impl From<skylark_codec::record::CorruptRecord> for StoreError {
    fn from(e: skylark_codec::record::CorruptRecord) -> Self {
        StoreError::Corrupt(e.0)
    }
}

/// Result alias of the storage engine.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hardening_disk_full_text_gives_real_ratio_and_limit() {
        let e = StoreError::DiskFull {
            usage: 0.9531,
            limit: 0.85,
        };
        let t = e.to_string();
        assert!(t.contains("95.3%") && t.contains("85.0%"), "{t}");
        let t = StoreError::DiskFull {
            usage: 0.8,
            limit: 0.9,
        }
        .to_string();
        assert!(
            t.contains("ENOSPC") && t.contains("80.0%") && t.contains("90.0%"),
            "{t}"
        );
        let t = StoreError::DiskFull {
            usage: 1.0,
            limit: 1.0,
        }
        .to_string();
        assert!(t.contains("ENOSPC") && !t.contains("above"), "{t}");
    }
}
