//! Configuration of the storage engine.
//!
//! One `StoreConfig` describes a broker's data directory and the knobs of its
//! CommitLog, ConsumeQueues, flushing and retention. It deserializes with
//! serde defaults (RocketMQ's defaults where one exists), so a `[store]` table
//! in `broker.toml` only names what it changes.

use std::path::PathBuf;

use serde::Deserialize;

use super::error::{Result, StoreError};

/// When appended data is forced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(try_from = "String")]
pub enum FlushMode {
    /// Flush on an interval (`flush_interval_ms`); an append is answered as
    /// soon as it is in the page cache. RocketMQ's `ASYNC_FLUSH`.
    #[default]
    Async,
    /// An append is answered after an fsync covers it; fsyncs are
    /// group-committed. RocketMQ's `SYNC_FLUSH`.
    Sync,
}

crate::config::words::setting_words!(
    FlushMode,
    "flush_mode",
    [("async", FlushMode::Async), ("sync", FlushMode::Sync),]
);

/// Storage engine configuration. Every field has a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct StoreConfig {
    /// Root directory: holds `commitlog/`, `consumequeue/`, `index/` and
    /// `checkpoint`.
    pub data_dir: PathBuf,
    /// Size of one CommitLog segment file in bytes (default 1 GiB).
    pub segment_size: u64,
    /// Entries (20 bytes each) per ConsumeQueue file (default 300 000).
    pub cq_entries_per_file: u32,
    /// `async` (default) or `sync`.
    pub flush_mode: FlushMode,
    /// Interval of the asynchronous flush and checkpoint (default 500 ms).
    pub flush_interval_ms: u64,
    /// How long a sync append waits for its fsync before answering
    /// `FlushTimeout` (the data stays stored). Default 2500 ms: below the
    /// client's 3 s request timeout (RocketMQ's 5000 is above its
    /// producer's 3000, whose sends then time out instead).
    pub sync_flush_timeout_ms: u64,
    /// Largest accepted message body in bytes (default 4 MiB).
    pub max_message_size: usize,
    /// Segments whose last modification is older than this are deleted by
    /// retention (default 72 h).
    pub file_reserved_hours: u64,
    /// Local hour of day at which expired segments are deleted (default 4).
    pub delete_when_hour: u8,
    /// Above this disk usage ratio expired segments are deleted at any hour
    /// (default 0.75).
    pub disk_soft_limit_ratio: f64,
    /// Above this disk usage ratio appends are refused with `DiskFull`
    /// (default 0.90).
    pub disk_hard_limit_ratio: f64,
    /// Interval of the retention check run by the Storage actor (default 10 s).
    pub clean_interval_ms: u64,
    /// Hash slots per IndexFile (default 5 000 000).
    pub index_slots: u32,
    /// Entries per IndexFile (default 20 000 000); a full file rolls over.
    pub index_entries: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            data_dir: PathBuf::from("data/store"),
            segment_size: 1 << 30,
            cq_entries_per_file: 300_000,
            flush_mode: FlushMode::Async,
            flush_interval_ms: 500,
            sync_flush_timeout_ms: 2500,
            max_message_size: 4 << 20,
            file_reserved_hours: 72,
            delete_when_hour: 4,
            disk_soft_limit_ratio: 0.75,
            disk_hard_limit_ratio: 0.90,
            clean_interval_ms: 10_000,
            index_slots: 5_000_000,
            index_entries: 20_000_000,
        }
    }
}

impl StoreConfig {
    /// A default configuration rooted at `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        StoreConfig {
            data_dir: data_dir.into(),
            ..StoreConfig::default()
        }
    }

    /// Rejects values the engine cannot work with.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(StoreError::InvalidConfig(m.to_string()));
        if self.segment_size < 4096 || self.segment_size > u32::MAX as u64 {
            return bad("segment_size must be between 4 KiB and 4 GiB - 1");
        }
        if self.cq_entries_per_file == 0 {
            return bad("cq_entries_per_file must be positive");
        }
        if self.max_message_size == 0 {
            return bad("max_message_size must be positive");
        }
        if self.delete_when_hour > 23 {
            return bad("delete_when_hour must be 0..=23");
        }
        if !(0.0..=1.0).contains(&self.disk_soft_limit_ratio)
            || !(0.0..=1.0).contains(&self.disk_hard_limit_ratio)
        {
            return bad("disk limit ratios must be within 0.0..=1.0");
        }
        if self.disk_soft_limit_ratio > self.disk_hard_limit_ratio {
            return bad("disk_soft_limit_ratio is above disk_hard_limit_ratio: writes would be refused before the early clean-up ever starts");
        }
        if self.flush_interval_ms == 0 || self.clean_interval_ms == 0 {
            return bad("flush_interval_ms and clean_interval_ms must be positive (they are timer periods; defaults 500 and 10000)");
        }
        if self.index_slots == 0 || self.index_entries < 2 {
            return bad("index_slots must be positive and index_entries at least 2");
        }
        Ok(())
    }

    pub(crate) fn index_dir(&self) -> PathBuf {
        self.data_dir.join("index")
    }

    pub(crate) fn commit_log_dir(&self) -> PathBuf {
        self.data_dir.join("commitlog")
    }

    pub(crate) fn consume_queue_dir(&self) -> PathBuf {
        self.data_dir.join("consumequeue")
    }

    pub(crate) fn checkpoint_path(&self) -> PathBuf {
        self.data_dir.join("checkpoint")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_soft_disk_limit_above_the_hard_one_is_refused() {
        let c = StoreConfig {
            disk_soft_limit_ratio: 0.95,
            disk_hard_limit_ratio: 0.90,
            ..StoreConfig::new("/tmp/x")
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("disk_soft_limit_ratio is above"), "{e}");
    }
}
