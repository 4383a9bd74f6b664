//! The on-disk time index of arbitrary-time (timer) messages.
//!
//! Timer messages themselves live in the CommitLog (topic
//! [`TIMER_TOPIC`](super::levels::TIMER_TOPIC)); this index only says
//! *when* each is due. It is a set of bucket files under
//! `<data_dir>/timer/`, one per second of delivery time (named by the
//! bucket number, `deliver_at / 1000`, zero-padded), each a plain append-only
//! list of 20-byte entries `(deliver_at i64, physical offset u64, size u32)`
//! (big-endian). So a million pending messages cost 20 MB of disk and
//! nothing in RAM beyond the set of non-empty bucket numbers.
//!
//! Progress is one small JSON file, `timer/progress.json`, replaced
//! atomically:
//! * `indexed_offset`: the timer queue offset up to which records were
//!   entered into buckets;
//! * the delivery cursor `(cursor_at, cursor_phys)`: every entry ordered at
//!   or before it (by deliver time, then physical offset) was delivered.
//!
//! After a kill -9 the index is re-built from `indexed_offset` (an entry
//! written twice is de-duplicated when its bucket is read, since both copies
//! land in the same bucket) and deliveries after the cursor are redone: at
//! worst the messages of the interrupted tick are delivered twice.

use std::collections::{BTreeSet, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::persist;

/// Width of a bucket in ms.
pub const BUCKET_MS: i64 = 1000;
/// Bytes per entry.
pub const ENTRY_LEN: usize = 20;
const PROGRESS_FILE: &str = "progress.json";
/// How often progress is also fsynced.
pub const SYNC_EVERY: Duration = Duration::from_secs(1);

/// One pending timer message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimerEntry {
    /// Delivery time (Unix ms). Field order = sort order.
    pub deliver_at: i64,
    pub physical_offset: u64,
    pub size: u32,
}

impl TimerEntry {
    fn key(&self) -> (i64, u64) {
        (self.deliver_at, self.physical_offset)
    }
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.deliver_at.to_be_bytes());
        out.extend_from_slice(&self.physical_offset.to_be_bytes());
        out.extend_from_slice(&self.size.to_be_bytes());
    }
    fn decode(b: &[u8]) -> Option<TimerEntry> {
        Some(TimerEntry {
            deliver_at: i64::from_be_bytes(b.get(0..8)?.try_into().ok()?),
            physical_offset: u64::from_be_bytes(b.get(8..16)?.try_into().ok()?),
            size: u32::from_be_bytes(b.get(16..20)?.try_into().ok()?),
        })
    }
}

/// The persisted progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TimerProgress {
    pub indexed_offset: u64,
    pub cursor_at: i64,
    pub cursor_phys: u64,
}

impl TimerProgress {
    fn cursor(&self) -> (i64, u64) {
        (self.cursor_at, self.cursor_phys)
    }
}

/// Replaces `path` with `value` as JSON atomically (temp file + rename);
/// with `sync`, also fsynced ([`persist::write_json`]).
pub fn replace_json<T: Serialize>(path: &Path, value: &T, sync: bool) -> io::Result<()> {
    if sync {
        return persist::write_json(path, value);
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    fs::write(&tmp, serde_json::to_vec(value).map_err(io::Error::other)?)?;
    fs::rename(&tmp, path)
}

/// The bucket files and the progress of the timer.
pub struct TimerIndex {
    dir: PathBuf,
    buckets: BTreeSet<i64>,
    progress: TimerProgress,
    dirty: HashSet<i64>,
    pending: u64,
    last_sync: Instant,
}

fn bucket_of(at: i64) -> i64 {
    at.div_euclid(BUCKET_MS)
}

impl TimerIndex {
    /// Opens (or creates) the index in `dir`; counts the pending entries.
    pub fn open(dir: &Path) -> io::Result<TimerIndex> {
        fs::create_dir_all(dir)?;
        let progress: TimerProgress =
            persist::read_json(&dir.join(PROGRESS_FILE))?.unwrap_or_default();
        let mut buckets = BTreeSet::new();
        for e in fs::read_dir(dir)? {
            let name = e?.file_name();
            if let Some(b) = name.to_str().and_then(|n| n.parse::<i64>().ok()) {
                buckets.insert(b);
            }
        }
        let mut index = TimerIndex {
            dir: dir.to_path_buf(),
            buckets,
            progress,
            dirty: HashSet::new(),
            pending: 0,
            last_sync: Instant::now(),
        };
        let mut pending = 0u64;
        for b in index.buckets.clone() {
            pending += index.read_bucket(b)?.len() as u64;
        }
        index.pending = pending;
        Ok(index)
    }

    pub fn progress(&self) -> TimerProgress {
        self.progress
    }

    /// Entries indexed and not delivered yet.
    pub fn pending(&self) -> u64 {
        self.pending
    }

    /// Whether `e` is already covered by the delivery cursor (deliver it
    /// now rather than index it).
    pub fn is_behind_cursor(&self, e: &TimerEntry) -> bool {
        e.key() <= self.progress.cursor()
    }

    fn path(&self, bucket: i64) -> PathBuf {
        self.dir.join(format!("{bucket:020}"))
    }

    /// Appends entries to their buckets (one write per bucket touched).
    /// They become durable with the next [`TimerIndex::commit`].
    pub fn add(&mut self, entries: &[TimerEntry]) -> io::Result<()> {
        let mut by_bucket: std::collections::BTreeMap<i64, Vec<u8>> = Default::default();
        for e in entries {
            e.encode(by_bucket.entry(bucket_of(e.deliver_at)).or_default());
        }
        for (b, bytes) in by_bucket {
            let mut f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.path(b))?;
            f.write_all(&bytes)?;
            self.buckets.insert(b);
            self.dirty.insert(b);
        }
        self.pending += entries.len() as u64;
        Ok(())
    }

    /// A bucket's entries after the cursor, sorted, without duplicates. A
    /// torn trailing entry (crash mid-write) is ignored.
    fn read_bucket(&self, bucket: i64) -> io::Result<Vec<TimerEntry>> {
        let data = match fs::read(self.path(bucket)) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let cursor = self.progress.cursor();
        let mut v: Vec<TimerEntry> = data
            .chunks_exact(ENTRY_LEN)
            .filter_map(TimerEntry::decode)
            .filter(|e| e.key() > cursor)
            .collect();
        v.sort_unstable();
        v.dedup();
        Ok(v)
    }

    /// Up to `limit` entries due at `now` (deliver_at <= now) after the
    /// cursor, in delivery order. `complete` is true when no other entry
    /// is due.
    pub fn due(&self, now: i64, limit: usize) -> io::Result<(Vec<TimerEntry>, bool)> {
        let mut out = Vec::new();
        for &b in self.buckets.range(..=bucket_of(now)) {
            for e in self.read_bucket(b)? {
                if e.deliver_at > now {
                    break;
                }
                if out.len() == limit {
                    return Ok((out, false));
                }
                out.push(e);
            }
        }
        Ok((out, true))
    }

    /// Moves the delivery cursor to `(at, phys)` as another broker's
    /// Scheduler delivered up to there (a slave following its master): the
    /// entries passed leave the pending count. A cursor behind the current
    /// one is ignored. Durable like [`TimerIndex::commit`].
    pub fn follow_cursor(&mut self, at: i64, phys: u64) -> io::Result<()> {
        let (old, new) = (self.progress.cursor(), (at, phys));
        if new <= old {
            return Ok(());
        }
        let mut passed = 0u64;
        for &b in self.buckets.range(bucket_of(old.0)..=bucket_of(at)) {
            passed += self
                .read_bucket(b)?
                .iter()
                .filter(|e| e.key() <= new)
                .count() as u64;
        }
        let progress = TimerProgress {
            cursor_at: at,
            cursor_phys: phys,
            ..self.progress
        };
        self.commit(progress, passed)
    }

    /// Records progress: replaces the progress file atomically (safe
    /// against a killed process at once); every `SYNC_EVERY` it first fsyncs
    /// the buckets written meanwhile and the new file (safe against a
    /// power loss, at worst that much delivery is redone). `delivered` entries (from
    /// the buckets) leave the pending count; buckets wholly behind the new
    /// cursor are deleted.
    pub fn commit(&mut self, progress: TimerProgress, delivered: u64) -> io::Result<()> {
        let sync = self.last_sync.elapsed() >= SYNC_EVERY;
        if sync {
            let dirty: Vec<i64> = self.dirty.drain().collect();
            for b in dirty {
                if let Ok(f) = File::open(self.path(b)) {
                    f.sync_all()?;
                }
            }
            self.last_sync = Instant::now();
        }
        replace_json(&self.dir.join(PROGRESS_FILE), &progress, sync)?;
        self.progress = progress;
        self.pending = self.pending.saturating_sub(delivered);
        let done: Vec<i64> = self
            .buckets
            .range(..bucket_of(progress.cursor_at))
            .copied()
            .collect();
        for b in done {
            match fs::remove_file(self.path(b)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            self.buckets.remove(&b);
        }
        if self.buckets.is_empty() {
            self.pending = 0;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(at: i64, phys: u64) -> TimerEntry {
        TimerEntry {
            deliver_at: at,
            physical_offset: phys,
            size: 100,
        }
    }

    #[test]
    fn due_in_order_with_limit_and_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let mut ix = TimerIndex::open(dir.path()).unwrap();
        ix.add(&[e(5_500, 3), e(1_200, 1), e(1_100, 2), e(9_000, 4)])
            .unwrap();
        assert_eq!(ix.pending(), 4);
        let (d, complete) = ix.due(6_000, 10).unwrap();
        assert_eq!(d, vec![e(1_100, 2), e(1_200, 1), e(5_500, 3)]);
        assert!(complete);
        let (d, complete) = ix.due(6_000, 2).unwrap();
        assert_eq!(d.len(), 2);
        assert!(!complete);
        // deliver the first two, then the cursor hides them
        let p = TimerProgress {
            indexed_offset: 4,
            cursor_at: 1_200,
            cursor_phys: 1,
        };
        ix.commit(p, 2).unwrap();
        assert_eq!(ix.pending(), 2);
        assert_eq!(ix.due(6_000, 10).unwrap().0, vec![e(5_500, 3)]);
        assert!(ix.is_behind_cursor(&e(1_000, 99)));
        assert!(!ix.is_behind_cursor(&e(1_200, 2)));
    }

    #[test]
    fn survives_reopen_dedups_and_deletes_done_buckets() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut ix = TimerIndex::open(dir.path()).unwrap();
            ix.add(&[e(2_500, 1), e(7_100, 2)]).unwrap();
            ix.commit(
                TimerProgress {
                    indexed_offset: 2,
                    ..TimerProgress::default()
                },
                0,
            )
            .unwrap();
            // a crash before the next commit re-indexes the same record
            ix.add(&[e(7_100, 2)]).unwrap();
        }
        let mut ix = TimerIndex::open(dir.path()).unwrap();
        assert_eq!(ix.progress().indexed_offset, 2);
        assert_eq!(ix.pending(), 2);
        assert_eq!(ix.due(8_000, 10).unwrap().0, vec![e(2_500, 1), e(7_100, 2)]);
        ix.commit(
            TimerProgress {
                indexed_offset: 3,
                cursor_at: 8_000,
                cursor_phys: u64::MAX,
            },
            2,
        )
        .unwrap();
        assert_eq!(ix.pending(), 0);
        assert!(!dir.path().join(format!("{:020}", 2)).exists());
        assert!(!dir.path().join(format!("{:020}", 7)).exists());
        assert!(ix.due(100_000, 10).unwrap().0.is_empty());
    }

    #[test]
    fn follow_cursor_counts_what_it_passes_and_never_goes_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut ix = TimerIndex::open(dir.path()).unwrap();
        ix.add(&[e(1_100, 1), e(2_500, 2), e(2_600, 3), e(9_000, 4)])
            .unwrap();
        ix.follow_cursor(2_500, 2).unwrap();
        assert_eq!(ix.pending(), 2);
        assert_eq!(
            ix.due(10_000, 10).unwrap().0,
            vec![e(2_600, 3), e(9_000, 4)]
        );
        assert!(!dir.path().join(format!("{:020}", 1)).exists());
        // an older cursor changes nothing
        ix.follow_cursor(1_000, 0).unwrap();
        assert_eq!(ix.progress().cursor_at, 2_500);
        assert_eq!(ix.pending(), 2);
        ix.follow_cursor(5_000, u64::MAX).unwrap();
        assert_eq!(ix.pending(), 1);
        let ix = TimerIndex::open(dir.path()).unwrap();
        assert_eq!((ix.progress().cursor_at, ix.pending()), (5_000, 1));
    }

    #[test]
    fn torn_entry_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let mut ix = TimerIndex::open(dir.path()).unwrap();
        ix.add(&[e(1_500, 1)]).unwrap();
        let p = dir.path().join(format!("{:020}", 1));
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(&[1, 2, 3]).unwrap();
        let ix = TimerIndex::open(dir.path()).unwrap();
        assert_eq!(ix.due(2_000, 10).unwrap().0, vec![e(1_500, 1)]);
    }
}
