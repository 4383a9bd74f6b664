//! ConsumeQueue: the per topic/queue index into the CommitLog.
//!
//! RocketMQ separates data from index: every message lives once in the
//! CommitLog, and each `(topic, queue id)` has a ConsumeQueue of fixed
//! 20-byte entries (CommitLog offset u64, record size u32, tag hash u64, all
//! big-endian). A queue offset is simply an entry index, so finding message
//! `n` of a queue is arithmetic plus one read. Entries live in mapped files of
//! `cq_entries_per_file` entries under `consumequeue/<topic>/<queue id>/`,
//! each named by the byte offset of its first entry (20 digits). An entry of
//! size 0 is an unwritten slot (files are preallocated with zeros).
//!
//! The only per-queue state in memory is the mapped files and the min/max
//! offsets; nothing is kept per message.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use super::error::{Result, StoreError};
use super::mapped_file::{file_name, list_files, MappedFile};
use super::record::{be_u32, be_u64};

/// Size of one ConsumeQueue entry in bytes.
pub const CQ_ENTRY_SIZE: u64 = 20;

/// One ConsumeQueue entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CqEntry {
    /// Physical (CommitLog) offset of the record.
    pub physical_offset: u64,
    /// Record size in bytes.
    pub size: u32,
    /// [`super::record::tag_hash`] of the message tag (0: no tag).
    pub tag_hash: u64,
}

impl CqEntry {
    /// One past the record's last byte in the CommitLog.
    pub fn end(&self) -> u64 {
        self.physical_offset + u64::from(self.size)
    }
}

/// The index of one topic/queue.
pub struct ConsumeQueue {
    dir: PathBuf,
    entries_per_file: u64,
    files: BTreeMap<u64, MappedFile>,
    min_offset: u64,
    max_offset: u64,
    dirty_from: Option<u64>,
    /// The offset [`MIN_OFFSET_FILE`] records, if any.
    recorded_min: Option<u64>,
}

/// A queue's own record of where it starts when the offsets below were
/// found lost at an open (its first files gone): `<dir>/min_offset`, the
/// offset in decimal. The next open starts the queue there instead of
/// taking the missing entries for new damage (a rescan of the whole
/// CommitLog and a WARN at every start). Not an offset-named file, so
/// nothing else lists it.
pub const MIN_OFFSET_FILE: &str = "min_offset";

/// What loading a queue from disk found.
pub struct Loaded {
    pub queue: ConsumeQueue,
    /// Something was missing or torn (short file, hole, quarantined file);
    /// the valid prefix was kept and the rest needs re-dispatching.
    pub damaged: bool,
    /// The directory holds no file at all (and none was quarantined): left
    /// by a queue whose first file could not be created.
    pub empty: bool,
    /// Files set aside as corrupt (`<name>.corrupt-<ms>`), where they are now.
    pub quarantined: Vec<PathBuf>,
}

/// Why a file of a queue cannot be mapped as one of its files: its name is
/// not a multiple of the file size, or its length is above the file size or
/// not whole entries.
fn misfit(start: u64, len: u64, file_bytes: u64) -> bool {
    !start.is_multiple_of(file_bytes) || len > file_bytes || !len.is_multiple_of(CQ_ENTRY_SIZE)
}

/// Whether every file of a queue was written with another
/// `cq_entries_per_file`: all of one length of whole entries, other than
/// ours, named at multiples of it. That is a configuration change, not
/// damage, and refused as one (rebuilding would drop what the CommitLog no
/// longer holds and so move the queue's offsets).
fn other_geometry(files: &[(u64, PathBuf, u64)], file_bytes: u64) -> Option<u64> {
    let len = files.first()?.2;
    let same = files
        .iter()
        .all(|(start, _, l)| *l == len && len > 0 && start.is_multiple_of(len));
    (same && len != file_bytes && len.is_multiple_of(CQ_ENTRY_SIZE)).then_some(len)
}

/// Renames `path` aside to `<path>.corrupt-<unix ms>` (never deletes it).
fn set_aside(path: &Path) -> Result<PathBuf> {
    let to = skylark_codec::persist::corrupt_copy_path(path);
    std::fs::rename(path, &to).map_err(|e| StoreError::io_at("set aside", path, e))?;
    Ok(to)
}

impl ConsumeQueue {
    /// A new, empty queue whose files will live in `dir`.
    pub fn new(dir: PathBuf, entries_per_file: u32) -> ConsumeQueue {
        ConsumeQueue {
            dir,
            entries_per_file: u64::from(entries_per_file),
            files: BTreeMap::new(),
            min_offset: 0,
            max_offset: 0,
            dirty_from: None,
            recorded_min: None,
        }
    }

    fn file_bytes(&self) -> u64 {
        self.entries_per_file * CQ_ENTRY_SIZE
    }

    /// Maps the files in `dir` and finds the contiguous run of entries from
    /// the first file on; anything after a hole is cut. A file that cannot
    /// be one of the queue's (extra bytes, a partial entry, a name off the
    /// file grid) is set aside and counts as a hole, rebuilt from the
    /// CommitLog; files all of another geometry are a configuration error.
    pub fn load(dir: PathBuf, entries_per_file: u32) -> Result<Loaded> {
        let mut q = ConsumeQueue::new(dir, entries_per_file);
        let fb = q.file_bytes();
        let mut files = Vec::new();
        for (start, path) in list_files(&q.dir)? {
            let len = std::fs::metadata(&path)
                .map_err(|e| StoreError::io_at("stat", &path, e))?
                .len();
            files.push((start, path, len));
        }
        if files.iter().all(|(s, _, l)| misfit(*s, *l, fb)) {
            if let Some(len) = other_geometry(&files, fb) {
                return Err(StoreError::InvalidConfig(format!(
                    "consume queue file {} holds {} entries per file, cq_entries_per_file is {entries_per_file}: set it back (a data directory keeps the geometry it was created with)",
                    files[0].1.display(),
                    len / CQ_ENTRY_SIZE
                )));
            }
        }
        let (mut quarantined, mut short) = (Vec::new(), false);
        for (start, path, len) in files {
            if misfit(start, len, fb) {
                quarantined.push(set_aside(&path)?);
                continue;
            }
            short |= len < fb;
            q.files
                .insert(start / fb, MappedFile::open(&path, start, fb)?);
        }
        let mut damaged = short || !quarantined.is_empty();
        let Some(first) = q.files.keys().next().copied() else {
            return Ok(Loaded {
                queue: q,
                damaged,
                empty: !damaged,
                quarantined,
            });
        };
        let mut pos = first * q.entries_per_file;
        q.recorded_min = std::fs::read_to_string(q.dir.join(MIN_OFFSET_FILE))
            .ok()
            .and_then(|s| s.trim().parse().ok());
        // The entries of the first file below the recorded start were lost
        // (and reported) before: not a hole.
        if let Some(m) = q
            .recorded_min
            .filter(|m| (pos + 1..pos + q.entries_per_file).contains(m))
        {
            pos = m;
        }
        q.min_offset = pos;
        while q.raw_get(pos).is_some() {
            pos += 1;
        }
        q.max_offset = pos;
        damaged |= q.has_entries_from(pos);
        q.truncate(pos)?;
        Ok(Loaded {
            queue: q,
            damaged,
            empty: false,
            quarantined,
        })
    }

    /// The start [`MIN_OFFSET_FILE`] records, if any.
    pub fn recorded_min(&self) -> Option<u64> {
        self.recorded_min
    }

    /// Records the queue's min offset as where it starts
    /// ([`MIN_OFFSET_FILE`], written atomically and fsynced).
    pub fn record_min_offset(&mut self) -> Result<()> {
        let path = self.dir.join(MIN_OFFSET_FILE);
        skylark_codec::persist::write_atomic(&path, format!("{}\n", self.min_offset).as_bytes())
            .map_err(|e| StoreError::io_at("write", &path, e))?;
        self.recorded_min = Some(self.min_offset);
        Ok(())
    }

    /// The queue offset of the first slot of the first file, when the
    /// queue's first entry is there (the queue starts on a file boundary).
    pub fn starts_at_file(&self) -> Option<u64> {
        let first = self.files.keys().next()? * self.entries_per_file;
        (first == self.min_offset && first < self.max_offset).then_some(first)
    }

    fn has_entries_from(&self, idx: u64) -> bool {
        let fi = idx / self.entries_per_file;
        let later_files = self.files.range(fi + 1..).next().is_some();
        let tail = self.files.get(&fi).is_some_and(|f| {
            let from = ((idx % self.entries_per_file) * CQ_ENTRY_SIZE) as usize;
            f.bytes()[from..].iter().any(|b| *b != 0)
        });
        later_files || tail
    }

    fn raw_get(&self, idx: u64) -> Option<CqEntry> {
        let f = self.files.get(&(idx / self.entries_per_file))?;
        let at = ((idx % self.entries_per_file) * CQ_ENTRY_SIZE) as usize;
        let b = f.bytes().get(at..at + CQ_ENTRY_SIZE as usize)?;
        let e = CqEntry {
            physical_offset: be_u64(b, 0),
            size: be_u32(b, 8),
            tag_hash: be_u64(b, 12),
        };
        (e.size != 0).then_some(e)
    }

    /// The entry stored in slot `idx`, whatever the min and max say
    /// (recovery looks for holes with it).
    pub fn slot(&self, idx: u64) -> Option<CqEntry> {
        self.raw_get(idx)
    }

    /// The entry at queue offset `idx`, if within `[min, max)`.
    pub fn get(&self, idx: u64) -> Option<CqEntry> {
        if idx < self.min_offset || idx >= self.max_offset {
            return None;
        }
        self.raw_get(idx)
    }

    /// First queue offset still available.
    pub fn min_offset(&self) -> u64 {
        self.min_offset
    }

    /// Next queue offset to be written (number of messages ever stored).
    pub fn max_offset(&self) -> u64 {
        self.max_offset
    }

    /// The CommitLog end of the last entry.
    pub fn last_entry_end(&self) -> Option<u64> {
        self.max_offset
            .checked_sub(1)
            .and_then(|i| self.get(i))
            .map(|e| e.end())
    }

    /// Writes the entry at `idx` (the next offset when appending; any offset
    /// when recovery re-dispatches).
    pub fn put(&mut self, idx: u64, e: CqEntry) -> Result<()> {
        let fi = self.ensure_file(idx)?;
        let f = self
            .files
            .get_mut(&fi)
            .ok_or(StoreError::NoRecord(e.physical_offset))?;
        let at = ((idx % self.entries_per_file) * CQ_ENTRY_SIZE) as usize;
        let b = &mut f.bytes_mut()[at..at + CQ_ENTRY_SIZE as usize];
        b[0..8].copy_from_slice(&e.physical_offset.to_be_bytes());
        b[8..12].copy_from_slice(&e.size.to_be_bytes());
        b[12..20].copy_from_slice(&e.tag_hash.to_be_bytes());
        self.max_offset = self.max_offset.max(idx + 1);
        self.min_offset = self.min_offset.min(idx);
        self.dirty_from = Some(self.dirty_from.map_or(fi, |d| d.min(fi)));
        Ok(())
    }

    /// Creates the file holding entry `idx` if it does not exist yet;
    /// returns its file index. A queue whose first file cannot be created
    /// (ENOSPC, read-only) leaves no empty directory behind: the next open
    /// would take it for a queue whose files were lost.
    pub fn ensure_file(&mut self, idx: u64) -> Result<u64> {
        let fi = idx / self.entries_per_file;
        if !self.files.contains_key(&fi) {
            let start = fi * self.file_bytes();
            let path = self.dir.join(file_name(start));
            let created = std::fs::create_dir_all(&self.dir)
                .map_err(|e| StoreError::io_at("create the directory", &self.dir, e))
                .and_then(|()| MappedFile::open(&path, start, self.file_bytes()));
            let f = match created {
                Ok(f) => f,
                Err(e) => {
                    if self.files.is_empty() {
                        // Only removes directories left empty.
                        let _ = std::fs::remove_dir(&self.dir);
                        if let Some(topic_dir) = self.dir.parent() {
                            let _ = std::fs::remove_dir(topic_dir);
                        }
                    }
                    return Err(e);
                }
            };
            if self.files.is_empty() && self.max_offset == 0 {
                self.min_offset = idx;
                self.max_offset = idx;
            }
            self.files.insert(fi, f);
        }
        Ok(fi)
    }

    /// Creates every file the next `count` entries need, before their
    /// records are written (see `Store::append`).
    pub fn reserve(&mut self, count: u64) -> Result<()> {
        let Some(last) = (self.max_offset + count).checked_sub(1) else {
            return Ok(());
        };
        self.reserve_range(self.max_offset, last)
    }

    /// Creates every file entries `first..=last` need (a slave's replicated
    /// records carry their queue offsets; see `Store::append_replicated`).
    pub fn reserve_range(&mut self, first: u64, last: u64) -> Result<()> {
        let mut idx = first;
        while idx <= last {
            self.ensure_file(idx)?;
            idx = (idx / self.entries_per_file + 1) * self.entries_per_file;
        }
        Ok(())
    }

    /// Drops entries `new_max..`: zeros them and deletes files past them.
    pub fn truncate(&mut self, new_max: u64) -> Result<()> {
        let fi = new_max / self.entries_per_file;
        let later: Vec<u64> = self.files.range(fi + 1..).map(|(k, _)| *k).collect();
        for k in later {
            if let Some(f) = self.files.remove(&k) {
                f.delete()?;
            }
        }
        if let Some(f) = self.files.get_mut(&fi) {
            f.zero_from(((new_max % self.entries_per_file) * CQ_ENTRY_SIZE) as usize);
        }
        self.max_offset = new_max;
        self.min_offset = self.min_offset.min(new_max);
        Ok(())
    }

    /// First queue offset in `[min, max)` whose entry satisfies `past`
    /// (entries are ordered by physical offset, so a binary search works).
    fn first_where(&self, past: impl Fn(&CqEntry) -> bool) -> u64 {
        let (mut lo, mut hi) = (self.min_offset, self.max_offset);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.raw_get(mid) {
                Some(e) if !past(&e) => lo = mid + 1,
                _ => hi = mid,
            }
        }
        lo
    }

    /// Cuts entries pointing at or past `valid_end` of the CommitLog.
    pub fn cut_past(&mut self, valid_end: u64) -> Result<bool> {
        let cut = self.first_where(|e| e.end() > valid_end);
        if cut < self.max_offset {
            self.truncate(cut)?;
            return Ok(true);
        }
        Ok(false)
    }

    /// After CommitLog retention: deletes files (never the last) whose
    /// entries all point below `cl_min`, and whose next file's first entry
    /// does too, and moves the min offset to the first entry still stored.
    /// Returns the number of files deleted. A queue so trimmed always
    /// starts with an entry at or below the CommitLog's start: one whose
    /// first entry is above it lost files some other way (see
    /// `queue_load`).
    pub fn delete_below(&mut self, cl_min: u64) -> Result<usize> {
        let mut deleted = 0;
        while self.files.len() > 1 {
            let Some((&fi, _)) = self.files.iter().next() else {
                break;
            };
            let last_idx = (fi + 1) * self.entries_per_file - 1;
            let next_gone = self
                .raw_get(last_idx + 1)
                .is_some_and(|n| n.physical_offset <= cl_min);
            match self.raw_get(last_idx) {
                Some(e) if e.end() <= cl_min && next_gone => {
                    if let Some(f) = self.files.remove(&fi) {
                        f.delete()?;
                        deleted += 1;
                    }
                    self.min_offset = self.min_offset.max(last_idx + 1);
                }
                _ => break,
            }
        }
        self.min_offset = self.first_where(|e| e.physical_offset >= cl_min);
        // Retention deleted the file of the recorded start: the record has
        // done its job (it is kept while that file is: without it the file's
        // empty slots below the start would look like new damage).
        let first = self
            .files
            .keys()
            .next()
            .map(|fi| fi * self.entries_per_file);
        if self
            .recorded_min
            .is_some_and(|m| first.is_some_and(|f| m < f))
        {
            // Best effort: a record left behind (already gone, a read-only
            // or unremovable file) is below the first file and ignored at
            // open, so it must not fail retention or the store's open.
            self.recorded_min = None;
            let _ = std::fs::remove_file(self.dir.join(MIN_OFFSET_FILE));
        }
        Ok(deleted)
    }

    /// Duplicated handles of the files written since the last call, for the
    /// flusher's checkpoint.
    pub fn take_dirty_files(&mut self, out: &mut Vec<File>) -> Result<()> {
        if let Some(from) = self.dirty_from.take() {
            for f in self.files.range(from..).map(|(_, f)| f) {
                out.push(f.try_clone_file()?);
            }
        }
        Ok(())
    }

    /// fsyncs every file on the calling thread (shutdown).
    pub fn sync_all(&mut self) -> Result<()> {
        for f in self.files.values() {
            f.sync()?;
        }
        self.dirty_from = None;
        Ok(())
    }

    /// Whether the queue has no file (nothing was ever stored in it here).
    pub fn has_no_file(&self) -> bool {
        self.files.is_empty()
    }

    /// Directory of the queue.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Unmaps the queue and removes its directory (a deleted topic).
    pub fn destroy(&mut self) -> Result<()> {
        self.files.clear();
        self.dirty_from = None;
        match std::fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}
