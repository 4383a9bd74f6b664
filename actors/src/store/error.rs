//! The storage engine's error type.
//!
//! `StoreError` is what every store operation and the Storage actor answer
//! with; the broker maps it onto the wire `ErrorCode` in one place. It is
//! `Clone` so that one failed group-commit fsync can answer every waiter.

use std::sync::Arc;

/// Errors of the storage engine.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Disk usage is above the hard limit: the write was refused, nothing
    /// was written.
    #[error("disk full: usage {usage:.3} is above the hard limit {limit:.3}")]
    DiskFull { usage: f64, limit: f64 },
    /// A message (body, properties or whole record) exceeds a size limit.
    #[error("message too large: {size} bytes, limit {limit}")]
    MessageTooLarge { size: usize, limit: usize },
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
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::Io(Arc::new(e))
    }
}

/// Result alias of the storage engine.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
