//! RocketMQ's IndexFile: a hash index from message key (and unique id) to
//! CommitLog offset, for query by key.
//!
//! One file is a fixed-size mapped file of three parts:
//!
//! ```text
//! header  (40 bytes)  begin_timestamp i64 | end_timestamp i64 |
//!                     begin_phys_offset u64 | end_phys_offset u64 |
//!                     slot_count u32 | index_count u32
//! slots   (slot_count × 4 bytes)   u32: number of the newest entry of the slot, 0 = empty
//! entries (max_entries × 20 bytes) key_hash u32 | phys_offset u64 |
//!                                  time_delta_secs i32 | prev_entry u32
//! ```
//!
//! An entry is linked to the previous entry of its slot, so a lookup walks
//! one chain from newest to oldest. Entry number 0 is never used (it is the
//! end of a chain), so `index_count` starts at 1. The begin/end timestamps
//! (store timestamps, ms) bound the file for queries over a time range;
//! `end_phys_offset` is the end of the last indexed record, where a rebuild
//! resumes. A hash names a key only probably: callers check each record's
//! keys. Files are named by their creation time in ms (20 digits) under
//! `<data_dir>/index/`; the [`IndexService`] opens a new file when the
//! current one is full.

use std::path::{Path, PathBuf};

use super::error::{Result, StoreError};
use super::mapped_file::{self, MappedFile};

pub const HEADER_LEN: usize = 40;
pub const SLOT_LEN: usize = 4;
pub const ENTRY_LEN: usize = 20;

const OFF_BEGIN_TS: usize = 0;
const OFF_END_TS: usize = 8;
const OFF_BEGIN_PHYS: usize = 16;
const OFF_END_PHYS: usize = 24;
const OFF_SLOTS: usize = 32;
const OFF_COUNT: usize = 36;

/// Which entries of a key a lookup wants: those stored within
/// `[begin_ms, end_ms]`, at most `max` of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyWindow {
    pub begin_ms: i64,
    pub end_ms: i64,
    pub max: usize,
}

impl KeyWindow {
    /// Up to `max` entries, whenever they were stored.
    pub fn any_time(max: usize) -> KeyWindow {
        KeyWindow {
            begin_ms: 0,
            end_ms: i64::MAX / 2,
            max,
        }
    }

    /// Whether a record stored at `ts` (milliseconds) is inside.
    pub fn holds(&self, ts: i64) -> bool {
        (self.begin_ms..=self.end_ms).contains(&ts)
    }
}

/// The hash of an index key (`topic#key`).
pub fn key_hash(topic: &str, key: &str) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(topic.as_bytes());
    h.update(b"#");
    h.update(key.as_bytes());
    h.finalize()
}

/// The size in bytes of an index file.
pub fn file_size(slots: u32, entries: u32) -> u64 {
    HEADER_LEN as u64 + slots as u64 * SLOT_LEN as u64 + entries as u64 * ENTRY_LEN as u64
}

/// One index file.
pub struct IndexFile {
    map: MappedFile,
    slots: u32,
    max_entries: u32,
    count: u32,
    begin_ts: i64,
    end_ts: i64,
    begin_phys: u64,
    end_phys: u64,
    dirty: bool,
}

/// A read prefetch of the cache line holding `p`; a hint only, so it can
/// neither fault nor change memory.
#[inline]
fn prefetch(p: *const u8) {
    // SAFETY: SSE is part of the x86_64 baseline, and a prefetch of any
    // address is defined: it never faults and never writes.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

fn get_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}
fn get_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

impl IndexFile {
    /// Creates a new empty file at `path` (`created_ms` is its name).
    pub fn create(path: &Path, created_ms: u64, slots: u32, max_entries: u32) -> Result<IndexFile> {
        if slots == 0 || max_entries < 2 {
            return Err(StoreError::InvalidConfig(
                "index_slots must be positive and index_entries at least 2".into(),
            ));
        }
        let map = MappedFile::open(path, created_ms, file_size(slots, max_entries))?;
        let mut f = IndexFile {
            map,
            slots,
            max_entries,
            count: 1,
            begin_ts: 0,
            end_ts: 0,
            begin_phys: 0,
            end_phys: 0,
            dirty: true,
        };
        f.write_header();
        Ok(f)
    }

    /// Opens an existing file; its geometry comes from its header and size.
    pub fn load(path: &Path, created_ms: u64) -> Result<IndexFile> {
        let corrupt =
            |what: &str| StoreError::Corrupt(format!("index file {}: {what}", path.display()));
        let len = std::fs::metadata(path)?.len();
        if len < HEADER_LEN as u64 {
            return Err(corrupt("shorter than its header"));
        }
        let map = MappedFile::open(path, created_ms, len)?;
        let b = map.bytes();
        let slots = get_u32(b, OFF_SLOTS);
        let count = get_u32(b, OFF_COUNT);
        let slots_end = HEADER_LEN as u64 + slots as u64 * SLOT_LEN as u64;
        if slots == 0 || slots_end > len {
            return Err(corrupt("bad slot count"));
        }
        let max_entries = ((len - slots_end) / ENTRY_LEN as u64).min(u32::MAX as u64) as u32;
        if count == 0 || count > max_entries {
            return Err(corrupt("bad index count"));
        }
        Ok(IndexFile {
            begin_ts: get_u64(b, OFF_BEGIN_TS) as i64,
            end_ts: get_u64(b, OFF_END_TS) as i64,
            begin_phys: get_u64(b, OFF_BEGIN_PHYS),
            end_phys: get_u64(b, OFF_END_PHYS),
            map,
            slots,
            max_entries,
            count,
            dirty: false,
        })
    }

    fn write_header(&mut self) {
        let b = self.map.bytes_mut();
        b[OFF_BEGIN_TS..OFF_BEGIN_TS + 8].copy_from_slice(&self.begin_ts.to_be_bytes());
        b[OFF_END_TS..OFF_END_TS + 8].copy_from_slice(&self.end_ts.to_be_bytes());
        b[OFF_BEGIN_PHYS..OFF_BEGIN_PHYS + 8].copy_from_slice(&self.begin_phys.to_be_bytes());
        b[OFF_END_PHYS..OFF_END_PHYS + 8].copy_from_slice(&self.end_phys.to_be_bytes());
        b[OFF_SLOTS..OFF_SLOTS + 4].copy_from_slice(&self.slots.to_be_bytes());
        b[OFF_COUNT..OFF_COUNT + 4].copy_from_slice(&self.count.to_be_bytes());
    }

    fn slot_at(&self, hash: u32) -> usize {
        HEADER_LEN + (hash % self.slots) as usize * SLOT_LEN
    }

    fn entry_at(&self, n: u32) -> usize {
        HEADER_LEN + self.slots as usize * SLOT_LEN + n as usize * ENTRY_LEN
    }

    /// No entry can be added.
    pub fn is_full(&self) -> bool {
        self.count >= self.max_entries
    }

    /// Entries stored.
    pub fn entries(&self) -> u32 {
        self.count - 1
    }

    /// Store timestamp of the first entry (0 when empty).
    pub fn begin_timestamp(&self) -> i64 {
        self.begin_ts
    }

    /// Store timestamp of the last entry.
    pub fn end_timestamp(&self) -> i64 {
        self.end_ts
    }

    /// End of the last indexed record in the CommitLog.
    pub fn end_phys_offset(&self) -> u64 {
        self.end_phys
    }

    /// File path.
    pub fn path(&self) -> &Path {
        self.map.path()
    }

    /// Hints the CPU to load the slot of `hash` (no effect on the data).
    fn prefetch_slot(&self, hash: u32) {
        let slot = self.slot_at(hash);
        if let Some(b) = self.map.bytes().get(slot..slot + SLOT_LEN) {
            prefetch(b.as_ptr());
        }
    }

    /// Adds an entry; false when the file is full.
    pub fn put(&mut self, hash: u32, phys_offset: u64, store_ts: i64) -> bool {
        if self.is_full() {
            return false;
        }
        if self.count == 1 {
            self.begin_ts = store_ts;
            self.begin_phys = phys_offset;
        }
        let delta = ((store_ts - self.begin_ts).max(0) / 1000).min(i32::MAX as i64) as i32;
        let slot = self.slot_at(hash);
        let n = self.count;
        let at = self.entry_at(n);
        let b = self.map.bytes_mut();
        let prev = get_u32(b, slot);
        b[at..at + 4].copy_from_slice(&hash.to_be_bytes());
        b[at + 4..at + 12].copy_from_slice(&phys_offset.to_be_bytes());
        b[at + 12..at + 16].copy_from_slice(&delta.to_be_bytes());
        b[at + 16..at + 20].copy_from_slice(&prev.to_be_bytes());
        b[slot..slot + 4].copy_from_slice(&n.to_be_bytes());
        self.count += 1;
        self.end_ts = self.end_ts.max(store_ts);
        self.dirty = true;
        self.write_header();
        true
    }

    /// Marks the CommitLog as indexed up to `end` (a record's end).
    pub fn set_end_phys_offset(&mut self, end: u64) {
        self.end_phys = end;
        self.dirty = true;
        self.write_header();
    }

    /// Offsets of entries with `hash` stored within the window (second
    /// precision, widened by a second), newest first, until `out` holds
    /// `w.max`.
    pub fn lookup(&self, hash: u32, w: KeyWindow, out: &mut Vec<u64>) {
        let b = self.map.bytes();
        let mut n = get_u32(b, self.slot_at(hash));
        let mut steps = 0u32;
        while n != 0 && n < self.count && out.len() < w.max && steps < self.count {
            steps += 1;
            let at = self.entry_at(n);
            let h = get_u32(b, at);
            let phys = get_u64(b, at + 4);
            let delta = get_u32(b, at + 12) as i32 as i64;
            let prev = get_u32(b, at + 16);
            let ts = self.begin_ts.saturating_add(delta.saturating_mul(1000));
            if h == hash
                && ts.saturating_add(1000) >= w.begin_ms
                && ts.saturating_sub(1000) <= w.end_ms
            {
                out.push(phys);
            }
            // Chains only go backwards; anything else is damage.
            if prev >= n {
                break;
            }
            n = prev;
        }
    }

    /// How many leading entries belong to records below `end` (those a
    /// checkpoint made durable, see [`IndexService::trim_to_durable`]),
    /// and, if an entry below `end` is lost (zeroed) or out of order, the
    /// CommitLog offset from which everything must be indexed again.
    fn durable_prefix(&self, end: u64) -> (u32, Option<u64>) {
        let b = self.map.bytes();
        let mut kept = 0u32;
        let mut last_phys = 0u64;
        for n in 1..self.count {
            let at = self.entry_at(n);
            let phys = get_u64(b, at + 4);
            if phys >= end {
                break;
            }
            if b[at..at + ENTRY_LEN].iter().all(|x| *x == 0) || phys < last_phys {
                // A zeroed entry does not say where its record was: the
                // record of the last intact one is indexed again too.
                return (kept, Some(last_phys));
            }
            last_phys = phys;
            kept = n;
        }
        (kept, None)
    }

    /// Keeps the first `kept` entries, rebuilds the slot table from them
    /// and lowers `end_phys_offset` to at most `end`. Returns how many
    /// entries were dropped.
    fn truncate_entries(&mut self, kept: u32, end: u64) -> u32 {
        let dropped = self.count - 1 - kept;
        let slots_len = self.slots as usize * SLOT_LEN;
        let entries_at = self.entry_at(0);
        let slots = self.slots;
        let bytes = self.map.bytes_mut();
        bytes[HEADER_LEN..HEADER_LEN + slots_len].fill(0);
        for n in 1..=kept {
            let hash = get_u32(bytes, entries_at + n as usize * ENTRY_LEN);
            let slot = HEADER_LEN + (hash % slots) as usize * SLOT_LEN;
            bytes[slot..slot + SLOT_LEN].copy_from_slice(&n.to_be_bytes());
        }
        self.count = kept + 1;
        if kept == 0 {
            self.begin_ts = 0;
            self.end_ts = 0;
            self.begin_phys = 0;
        }
        self.end_phys = self.end_phys.min(end);
        self.dirty = true;
        self.write_header();
        dropped
    }

    /// The file to fsync if written since the last call.
    pub fn take_dirty(&mut self) -> Result<Option<std::fs::File>> {
        if !self.dirty {
            return Ok(None);
        }
        self.dirty = false;
        Ok(Some(self.map.try_clone_file()?))
    }

    /// fsync now.
    pub fn sync(&mut self) -> Result<()> {
        self.dirty = false;
        self.map.sync()
    }

    fn delete(self) -> Result<()> {
        self.map.delete()
    }
}

/// The broker's index files, oldest first; the last one takes new entries.
pub struct IndexService {
    dir: PathBuf,
    slots: u32,
    max_entries: u32,
    files: Vec<IndexFile>,
    /// Files [`IndexService::reserve`] created for entries not yet added,
    /// oldest first: taken when the last of `files` is full.
    spare: Vec<IndexFile>,
}

impl IndexService {
    /// Loads every index file under `dir`. A damaged file is removed (the
    /// rebuild re-indexes what it covered while that is still stored).
    pub fn open(dir: PathBuf, slots: u32, max_entries: u32, logger: &slog::Logger) -> Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let mut files = Vec::new();
        for (created, path) in mapped_file::list_files(&dir)? {
            match IndexFile::load(&path, created) {
                Ok(f) => files.push(f),
                Err(e) => {
                    slog::warn!(logger, "removing damaged index file"; "path" => %path.display(), "error" => %e);
                    std::fs::remove_file(&path)?;
                }
            }
        }
        Ok(IndexService {
            dir,
            slots,
            max_entries,
            files,
            spare: Vec::new(),
        })
    }

    /// End of the CommitLog range already indexed (0 with no file).
    pub fn end_phys_offset(&self) -> u64 {
        self.files
            .iter()
            .map(IndexFile::end_phys_offset)
            .max()
            .unwrap_or(0)
    }

    /// Number of index files.
    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// A new empty file named after `now_ms` (or just after the newest
    /// file), its indexed end where the index ends now.
    fn create_file(&self, now_ms: u64) -> Result<IndexFile> {
        let newest = self
            .files
            .iter()
            .chain(&self.spare)
            .map(|f| f.map.start())
            .max();
        let name = newest.map_or(now_ms, |n| now_ms.max(n + 1));
        let path = self.dir.join(mapped_file::file_name(name));
        let mut f = IndexFile::create(&path, name, self.slots, self.max_entries)?;
        f.set_end_phys_offset(self.end_phys_offset());
        Ok(f)
    }

    fn writable(&mut self, now_ms: u64) -> Result<&mut IndexFile> {
        let need_new = self.files.last().is_none_or(IndexFile::is_full);
        if need_new {
            let mut f = if self.spare.is_empty() {
                self.create_file(now_ms)?
            } else {
                self.spare.remove(0)
            };
            f.set_end_phys_offset(self.end_phys_offset());
            self.files.push(f);
        }
        let n = self.files.len();
        Ok(&mut self.files[n - 1])
    }

    /// Creates, before anything is written, every file that `entries` more
    /// entries need (and the first file of an empty index): indexing a
    /// batch then cannot fail on a file that cannot be created (ENOSPC,
    /// read-only or unwritable directory) after its records were stored.
    pub fn reserve(&mut self, entries: usize, now_ms: u64) -> Result<()> {
        let per_file = u64::from(self.max_entries - 1);
        let last_room = self
            .files
            .last()
            .map_or(0, |f| u64::from(f.max_entries - f.count));
        let mut room = last_room + self.spare.len() as u64 * per_file;
        let mut no_file = self.files.is_empty() && self.spare.is_empty();
        while room < entries as u64 || no_file {
            let f = self.create_file(now_ms)?;
            self.spare.push(f);
            room += per_file;
            no_file = false;
        }
        Ok(())
    }

    /// Indexes one stored record under each of `keys` (already split) for
    /// `topic`; `record_end` is where the record ends in the CommitLog.
    pub fn index<'k>(
        &mut self,
        topic: &str,
        keys: impl Iterator<Item = &'k str>,
        phys_offset: u64,
        record_end: u64,
        store_ts: i64,
    ) -> Result<()> {
        let hashes = keys.map(|key| key_hash(topic, key));
        self.index_hashed(hashes, phys_offset, record_end, store_ts)
    }

    /// Appends the hash of each of `keys` for `topic` to `out` and starts
    /// loading its slot of the current file into the CPU cache. The slot
    /// table is megabytes of random access, so each slot load misses; the
    /// append path hashes a whole batch first, so that those misses overlap
    /// instead of stalling one after another in [`Self::index_hashed`].
    pub fn hash_and_prefetch<'k>(
        &self,
        topic: &str,
        keys: impl Iterator<Item = &'k str>,
        out: &mut Vec<u32>,
    ) {
        let file = self.files.last().filter(|f| !f.is_full());
        for key in keys {
            let hash = key_hash(topic, key);
            if let Some(f) = file {
                f.prefetch_slot(hash);
            }
            out.push(hash);
        }
    }

    /// [`Self::index`] with the key hashes already computed.
    pub fn index_hashed(
        &mut self,
        hashes: impl IntoIterator<Item = u32>,
        phys_offset: u64,
        record_end: u64,
        store_ts: i64,
    ) -> Result<()> {
        let now = store_ts.max(0) as u64;
        for hash in hashes {
            if !self.writable(now)?.put(hash, phys_offset, store_ts) {
                // A file just created is never full.
                return Err(StoreError::Corrupt("new index file is full".into()));
            }
        }
        match self.files.last_mut() {
            Some(f) => f.set_end_phys_offset(record_end),
            None => self.writable(now)?.set_end_phys_offset(record_end),
        }
        Ok(())
    }

    /// CommitLog offsets of entries for `topic#key` stored within the
    /// window, newest file first, duplicates removed.
    pub fn lookup(&self, topic: &str, key: &str, w: KeyWindow) -> Vec<u64> {
        let hash = key_hash(topic, key);
        let mut out = Vec::new();
        for f in self.files.iter().rev() {
            if out.len() >= w.max {
                break;
            }
            if f.entries() == 0 || f.end_ts + 1000 < w.begin_ms || f.begin_ts - 1000 > w.end_ms {
                continue;
            }
            let room = KeyWindow {
                max: w.max.saturating_mul(2),
                ..w
            };
            f.lookup(hash, room, &mut out);
        }
        let mut seen = std::collections::HashSet::new();
        out.retain(|o| seen.insert(*o));
        out
    }

    /// Files written since the last call, to fsync.
    pub fn take_dirty_files(&mut self, out: &mut Vec<std::fs::File>) -> Result<()> {
        for f in self.files.iter_mut().chain(&mut self.spare) {
            if let Some(file) = f.take_dirty()? {
                out.push(file);
            }
        }
        Ok(())
    }

    /// fsync every file now.
    pub fn sync_all(&mut self) -> Result<()> {
        self.files
            .iter_mut()
            .chain(&mut self.spare)
            .try_for_each(IndexFile::sync)
    }

    /// Deletes files whose every entry is below `cl_min` (never the newest).
    pub fn delete_below(&mut self, cl_min: u64) -> Result<usize> {
        let mut deleted = 0;
        while self.files.len() > 1 && self.files[0].end_phys_offset() <= cl_min {
            self.files.remove(0).delete()?;
            deleted += 1;
        }
        Ok(deleted)
    }

    /// Recovery after an unclean stop: keeps only the entries a checkpoint
    /// made durable (those of records below `durable`, the old
    /// checkpoint's safe offset) and rebuilds each file's slot table from
    /// them. After a power cut any page of a file may have reached the disk
    /// newer than another: a header whose `end_phys_offset` claims records
    /// whose entries were lost (so the rebuild would skip them), or a slot
    /// pointing at a lost entry (so the older, durable entries of its chain
    /// become unreachable). Entries are written once, in CommitLog order,
    /// and the checkpoint fsyncs the files before it names a safe offset,
    /// so the entries below it are intact; the CommitLog is re-indexed from
    /// there. A file left with no entry is deleted, except the newest,
    /// whose `end_phys_offset` says where the rebuild resumes. Returns the
    /// entries dropped.
    pub fn trim_to_durable(&mut self, durable: u64) -> Result<u64> {
        // One bound for every file: a record's entries can span two files,
        // so a file's own end_phys_offset is no bound for its entries.
        let mut end = durable.min(self.end_phys_offset());
        for f in &self.files {
            if let (_, Some(p)) = f.durable_prefix(end) {
                end = end.min(p);
            }
        }
        let mut dropped = 0u64;
        for f in &mut self.files {
            let (kept, _) = f.durable_prefix(end);
            dropped += u64::from(f.truncate_entries(kept, end));
        }
        let last = self.files.len().saturating_sub(1);
        let mut kept = Vec::with_capacity(self.files.len());
        for (i, f) in std::mem::take(&mut self.files).into_iter().enumerate() {
            if f.entries() == 0 && i != last {
                f.delete()?;
            } else {
                kept.push(f);
            }
        }
        self.files = kept;
        Ok(dropped)
    }

    /// After recovery cut the CommitLog at `valid_end`: nothing is indexed
    /// past it any more (stale entries there are filtered on lookup).
    pub fn cut_past(&mut self, valid_end: u64) {
        for f in &mut self.files {
            if f.end_phys_offset() > valid_end {
                f.set_end_phys_offset(valid_end);
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The window `[begin_ms, end_ms]`, at most `max`.
    pub(crate) fn win(begin_ms: i64, end_ms: i64, max: usize) -> KeyWindow {
        KeyWindow {
            begin_ms,
            end_ms,
            max,
        }
    }

    /// Indexes key `k{i}` of topic `T` for the record at `i * 100`.
    fn add_key(svc: &mut IndexService, i: u64) {
        let key = format!("k{i}");
        svc.index(
            "T",
            [key.as_str()].into_iter(),
            i * 100,
            i * 100 + 100,
            1_000_000,
        )
        .unwrap();
    }

    /// Whether [`add_key`]'s entry for `i` is found.
    fn has_key(svc: &IndexService, i: u64) -> bool {
        svc.lookup("T", &format!("k{i}"), KeyWindow::any_time(4))
            .contains(&(i * 100))
    }

    fn log() -> slog::Logger {
        slog::Logger::root(slog::Discard, slog::o!())
    }

    #[test]
    fn put_and_lookup_with_slot_collisions() {
        let dir = tempfile::tempdir().unwrap();
        // 3 slots for 50 keys: every chain mixes many keys.
        let mut f = IndexFile::create(&dir.path().join("x"), 1, 3, 200).unwrap();
        for i in 0..50u64 {
            let h = key_hash("T", &format!("k{i}"));
            assert!(f.put(h, i * 100, 1_000_000 + i as i64));
        }
        for i in 0..50u64 {
            let mut out = Vec::new();
            f.lookup(
                key_hash("T", &format!("k{i}")),
                win(0, i64::MAX / 2, 10),
                &mut out,
            );
            assert_eq!(out, vec![i * 100], "key k{i}");
        }
        let mut none = Vec::new();
        f.lookup(key_hash("T", "absent"), win(0, i64::MAX / 2, 10), &mut none);
        assert!(none.is_empty());
        // the same key under another topic is another key
        f.lookup(key_hash("U", "k1"), win(0, i64::MAX / 2, 10), &mut none);
        assert!(none.is_empty());
        assert_eq!(f.entries(), 50);
        assert_eq!(
            (f.begin_timestamp(), f.end_timestamp()),
            (1_000_000, 1_000_049)
        );
    }

    #[test]
    fn repeated_key_lists_newest_first_and_honours_time_range() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = IndexFile::create(&dir.path().join("x"), 1, 7, 100).unwrap();
        let h = key_hash("T", "order-1");
        for i in 0..5u64 {
            assert!(f.put(h, i, 10_000 + i as i64 * 10_000));
        }
        let mut out = Vec::new();
        f.lookup(h, win(0, i64::MAX / 2, 10), &mut out);
        assert_eq!(out, vec![4, 3, 2, 1, 0]);
        out.clear();
        f.lookup(h, win(30_000, 40_000, 10), &mut out);
        assert_eq!(out, vec![3, 2]);
        out.clear();
        f.lookup(h, win(0, i64::MAX / 2, 2), &mut out);
        assert_eq!(out, vec![4, 3]);
    }

    #[test]
    fn reload_keeps_entries_and_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(mapped_file::file_name(5));
        {
            let mut f = IndexFile::create(&path, 5, 11, 20).unwrap();
            assert!(f.put(key_hash("T", "a"), 42, 7000));
            f.set_end_phys_offset(99);
            f.sync().unwrap();
        }
        let f = IndexFile::load(&path, 5).unwrap();
        assert_eq!((f.entries(), f.end_phys_offset()), (1, 99));
        let mut out = Vec::new();
        f.lookup(key_hash("T", "a"), win(0, 10_000, 5), &mut out);
        assert_eq!(out, vec![42]);
    }

    #[test]
    fn full_file_rolls_over_and_lookups_span_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut svc = IndexService::open(dir.path().join("index"), 4, 5, &log()).unwrap();
        // 4 usable entries per file; 10 records of two keys each = 20 entries
        for i in 0..10u64 {
            let keys = [format!("k{i}"), "shared".to_string()];
            svc.index(
                "T",
                keys.iter().map(String::as_str),
                i * 10,
                i * 10 + 10,
                1000 + i as i64,
            )
            .unwrap();
        }
        assert_eq!(svc.file_count(), 5);
        assert_eq!(svc.end_phys_offset(), 100);
        for i in 0..10u64 {
            assert_eq!(
                svc.lookup("T", &format!("k{i}"), KeyWindow::any_time(10)),
                vec![i * 10]
            );
        }
        let shared = svc.lookup("T", "shared", KeyWindow::any_time(100));
        assert_eq!(shared, (0..10u64).rev().map(|i| i * 10).collect::<Vec<_>>());
        drop(svc);
        // reopen: the same files and answers
        let mut svc = IndexService::open(dir.path().join("index"), 4, 5, &log()).unwrap();
        assert_eq!(svc.file_count(), 5);
        assert_eq!(svc.lookup("T", "k7", KeyWindow::any_time(10)), vec![70]);
        assert_eq!(svc.end_phys_offset(), 100);
        // retention removes whole files below the CommitLog minimum
        assert_eq!(svc.delete_below(45).unwrap(), 2);
        assert!(svc.lookup("T", "k0", KeyWindow::any_time(10)).is_empty());
        assert_eq!(svc.lookup("T", "k9", KeyWindow::any_time(10)), vec![90]);
    }

    #[test]
    fn damaged_file_is_dropped_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let idx = dir.path().join("index");
        std::fs::create_dir_all(&idx).unwrap();
        std::fs::write(idx.join(mapped_file::file_name(1)), b"short").unwrap();
        let svc = IndexService::open(idx.clone(), 4, 5, &log()).unwrap();
        assert_eq!(svc.file_count(), 0);
        assert_eq!(std::fs::read_dir(&idx).unwrap().count(), 0);
    }

    /// A power cut kept the header and slots of the index newer than its
    /// entries: after the trim every key below the checkpoint is found
    /// again and the rebuild resumes at the checkpoint (issue 19).
    #[test]
    fn hardening_trim_to_durable_after_lost_entry_pages() {
        let dir = tempfile::tempdir().unwrap();
        let idx = dir.path().join("index");
        let (slots, entries) = (7u32, 1000u32);
        {
            let mut svc = IndexService::open(idx.clone(), slots, entries, &log()).unwrap();
            for i in 0..100 {
                add_key(&mut svc, i);
            }
            svc.sync_all().unwrap();
        }
        // Records 50.. were indexed after the last checkpoint (durable =
        // 5000) and their entries' pages never reached the disk; the
        // header and slot pages (written later) did.
        let path = mapped_file::list_files(&idx).unwrap()[0].1.clone();
        let mut bytes = std::fs::read(&path).unwrap();
        let entry = |n: usize| HEADER_LEN + slots as usize * SLOT_LEN + n * ENTRY_LEN;
        bytes[entry(51)..entry(101)].fill(0);
        std::fs::write(&path, bytes).unwrap();

        let mut svc = IndexService::open(idx.clone(), slots, entries, &log()).unwrap();
        // Without the trim, the chains are cut at the lost entries.
        let lost_before = (0..50).filter(|i| !has_key(&svc, *i)).count();
        assert!(lost_before > 0, "the damage must hide durable keys");
        assert_eq!(svc.end_phys_offset(), 10_000);
        // A zeroed entry does not say where its record was, so the last
        // intact one's record (49) is dropped and indexed again too.
        assert_eq!(svc.trim_to_durable(5000).unwrap(), 51);
        assert_eq!(svc.end_phys_offset(), 4900);
        for i in 0..49 {
            assert!(has_key(&svc, i), "durable key k{i} lost");
        }
        // The rebuild re-indexes 49.. from the CommitLog.
        for i in 49..100 {
            add_key(&mut svc, i);
        }
        for i in 0..100 {
            assert!(has_key(&svc, i), "key k{i} not found after the rebuild");
            assert_eq!(
                svc.lookup("T", &format!("k{i}"), KeyWindow::any_time(4))
                    .len(),
                1
            );
        }
    }

    /// A lost entry below the checkpoint (damage): the trim keeps the
    /// entries before it and moves the rebuild point back to its record.
    #[test]
    fn hardening_trim_to_durable_stops_at_a_lost_durable_entry() {
        let dir = tempfile::tempdir().unwrap();
        let idx = dir.path().join("index");
        {
            let mut svc = IndexService::open(idx.clone(), 7, 1000, &log()).unwrap();
            for i in 0..20u64 {
                add_key(&mut svc, i);
            }
            svc.sync_all().unwrap();
        }
        let path = mapped_file::list_files(&idx).unwrap()[0].1.clone();
        let mut bytes = std::fs::read(&path).unwrap();
        let at = HEADER_LEN + 7 * SLOT_LEN + 11 * ENTRY_LEN; // record 10
        bytes[at..at + ENTRY_LEN].fill(0);
        std::fs::write(&path, bytes).unwrap();
        let mut svc = IndexService::open(idx, 7, 1000, &log()).unwrap();
        // Entry 10 (record 9, at 900) is the last kept one and is dropped
        // too: the rebuild resumes at its record.
        assert_eq!(svc.trim_to_durable(2000).unwrap(), 11);
        assert_eq!(svc.end_phys_offset(), 900);
        for i in 0..9u64 {
            assert!(has_key(&svc, i), "durable key k{i} lost");
        }
    }
}
