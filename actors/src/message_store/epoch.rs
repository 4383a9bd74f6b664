//! The epoch file (controller mode, docs/failover.md): which master epoch
//! wrote which part of the CommitLog, as RocketMQ's `EpochFileCache`.
//!
//! `<data_dir>/epoch.json` holds entries `(epoch, start_offset)`, oldest
//! first: epoch `e` wrote the CommitLog from its `start_offset` to the next
//! entry's (the log's end for the last one). A broker that becomes master
//! at epoch `e` appends `(e, its CommitLog end)`; a slave copies its
//! master's entries as far as its log reaches. A slave joining a master
//! compares the two lists ([`common_end`]): the logs agree up to the end of
//! the last epoch both have with the same start; anything after that on
//! the slave was written by a master that lost its place and is cut
//! ([`truncate_commit_log`]) before replication resumes. The file is
//! replaced atomically and fsynced (`persist::write_atomic`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use slog::{warn, Logger};

use super::checkpoint::Checkpoint;
use super::commit_log::CommitLog;
use super::config::StoreConfig;
use super::error::Result;

/// One epoch: it wrote the CommitLog from `start_offset` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochEntry {
    pub epoch: u64,
    pub start_offset: u64,
}

/// The file's path in a data directory.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("epoch.json")
}

/// The entries (none when the file does not exist yet).
pub fn load(data_dir: &Path) -> std::io::Result<Vec<EpochEntry>> {
    Ok(crate::persist::read_json(&path(data_dir))?.unwrap_or_default())
}

/// Replaces the file (fsynced).
pub fn store(data_dir: &Path, entries: &[EpochEntry]) -> std::io::Result<()> {
    crate::persist::write_json(&path(data_dir), &entries)
}

/// Records that `epoch` writes from `start_offset` on (a new master):
/// entries starting past it (a torn tail cut by recovery) or of a later
/// epoch are dropped; the same epoch again is kept as it was.
pub fn begin_epoch(entries: &mut Vec<EpochEntry>, epoch: u64, start_offset: u64) -> bool {
    let before = entries.clone();
    entries.retain(|e| e.start_offset <= start_offset && e.epoch <= epoch);
    if entries.last().is_none_or(|e| e.epoch < epoch) {
        entries.push(EpochEntry {
            epoch,
            start_offset,
        });
    }
    *entries != before
}

/// A slave's entries once its log reaches `end` of a log its master wrote
/// under `master`'s epochs: the master's entries that start at or below
/// `end`. Answers whether anything changed.
pub fn adopt(local: &mut Vec<EpochEntry>, master: &[EpochEntry], end: u64) -> bool {
    let want: Vec<EpochEntry> = master
        .iter()
        .copied()
        .filter(|e| e.start_offset <= end)
        .collect();
    if *local == want {
        return false;
    }
    *local = want;
    true
}

/// Where epoch `i` of `entries` ends in a log ending at `log_end`.
fn epoch_end(entries: &[EpochEntry], i: usize, log_end: u64) -> u64 {
    entries
        .get(i + 1)
        .map_or(log_end, |n| n.start_offset)
        .min(log_end)
}

/// How far a slave's log (`local`, ending at `local_end`) agrees with its
/// master's: the end of the last epoch both lists hold with the same start,
/// the shorter of the two. A slave with no entries (its data predates
/// controller mode) is trusted up to the master's end; no epoch in common
/// means nothing agrees (0).
pub fn common_end(
    local: &[EpochEntry],
    local_end: u64,
    master: &[EpochEntry],
    master_end: u64,
) -> u64 {
    if local.is_empty() {
        return local_end.min(master_end);
    }
    for (i, l) in local.iter().enumerate().rev() {
        if let Some(j) = master
            .iter()
            .position(|m| m.epoch == l.epoch && m.start_offset == l.start_offset)
        {
            return epoch_end(local, i, local_end).min(epoch_end(master, j, master_end));
        }
    }
    0
}

/// Cuts the CommitLog of a closed store at `end` and marks the store as
/// not cleanly shut down, so the next open's recovery cuts the
/// ConsumeQueues and the index to match (docs/storage.md, "Recovery").
/// Call only while no Store has the directory open.
pub fn truncate_commit_log(config: &StoreConfig, end: u64, logger: &Logger) -> Result<()> {
    let mut log = CommitLog::open(
        &config.commit_log_dir(),
        config.segment_size,
        logger.clone(),
    )?;
    let cut = end.max(log.min_offset());
    if cut >= log.max_offset() {
        return Ok(());
    }
    warn!(logger, "cutting the commit log back to the last common epoch";
        "from" => log.max_offset(), "to" => cut);
    log.truncate(cut)?;
    log.sync_all()?;
    let cp_path = config.checkpoint_path();
    let old = Checkpoint::load(&cp_path)
        .ok()
        .flatten()
        .unwrap_or_default();
    Checkpoint {
        commit_log_flushed: old.commit_log_flushed.min(cut),
        cq_safe: old.cq_safe.min(cut),
        clean: false,
        no_queues: false,
    }
    .store(&cp_path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(epoch: u64, start_offset: u64) -> EpochEntry {
        EpochEntry {
            epoch,
            start_offset,
        }
    }

    #[test]
    fn begin_epoch_appends_once_and_drops_what_lies_past_the_log() {
        let mut v = Vec::new();
        assert!(begin_epoch(&mut v, 1, 0));
        assert!(!begin_epoch(&mut v, 1, 500));
        assert!(begin_epoch(&mut v, 3, 900));
        assert_eq!(v, vec![e(1, 0), e(3, 900)]);
        // Recovery cut the log below epoch 3's start: it is dropped.
        assert!(begin_epoch(&mut v, 4, 800));
        assert_eq!(v, vec![e(1, 0), e(4, 800)]);
    }

    #[test]
    fn common_end_is_the_end_of_the_last_shared_epoch() {
        // The old master wrote epoch 1 to 1000 and kept writing to 1500;
        // the new master took over at 1200 (epoch 2).
        let old = [e(1, 0)];
        let new = [e(1, 0), e(2, 1200)];
        assert_eq!(common_end(&old, 1500, &new, 4000), 1200);
        // A slave behind the new master's epoch start: nothing to cut.
        assert_eq!(common_end(&old, 900, &new, 4000), 900);
        // A slave that already follows epoch 2.
        assert_eq!(common_end(&new, 3000, &new, 4000), 3000);
        // Diverged at epoch 2 (two different epoch-2 starts cannot exist,
        // but a different start means a different history).
        assert_eq!(common_end(&[e(1, 0), e(2, 1300)], 2000, &new, 4000), 1200);
        // No epoch in common: nothing agrees.
        assert_eq!(common_end(&[e(7, 0)], 2000, &new, 4000), 0);
        // Data from before controller mode: trusted up to the master's end.
        assert_eq!(common_end(&[], 2000, &new, 4000), 2000);
        assert_eq!(common_end(&[], 5000, &new, 4000), 4000);
    }

    #[test]
    fn adopt_copies_the_masters_epochs_the_log_reaches() {
        let master = [e(1, 0), e(2, 1200), e(3, 5000)];
        let mut v = vec![e(1, 0)];
        assert!(adopt(&mut v, &master, 3000));
        assert_eq!(v, vec![e(1, 0), e(2, 1200)]);
        assert!(!adopt(&mut v, &master, 4000));
        assert!(adopt(&mut v, &master, 5000));
        assert_eq!(v.len(), 3);
    }

    #[test]
    fn file_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_empty());
        store(dir.path(), &[e(1, 0), e(2, 77)]).unwrap();
        assert_eq!(load(dir.path()).unwrap(), vec![e(1, 0), e(2, 77)]);
    }
}
