//! The CommitLog: one append-only log of every message the broker stores.
//!
//! It is split into fixed-size mapped segment files under
//! `data_dir/commitlog/`, each named by the global physical offset of its
//! first byte (20 digits). Segment starts are multiples of the segment size.
//! A record never spans two segments: when the next record does not fit,
//! the remaining space gets an end-of-file marker and the log rolls to the
//! next segment. A record always leaves room for that marker.
//!
//! # Writes
//!
//! Records are encoded into a staging buffer and written to the segment
//! with one `pwrite` per batch ([`CommitLog::commit`]), not stored through
//! the mapping; reads still go through the mapping (the page cache is
//! shared, so a committed write is visible there at once). Writing through
//! a shared mapping costs twice at every fsync: writeback write-protects
//! each dirty page (a TLB-shootdown interrupt to every CPU running the
//! process) and the next store to that page faults to make it writable
//! again (`do_wp_page` → `page_mkwrite`). Under sync flush, with thousands
//! of fsyncs a second each touching the tail page, that was about 8 µs of
//! broker CPU per message; `pwrite` leaves the mapping's entries read-only
//! and takes neither. It also turns a write the disk cannot take into an
//! error instead of a `SIGBUS`.
//!
//! Everything staged must be committed before the log is read: the
//! [`super::Store`] commits at the end of each append (or of a deferred
//! group of appends) on the thread that owns it, before anything can read.
//!
//! # Zero-ahead
//!
//! Segments are preallocated with `posix_fallocate`, which on ext4 and XFS
//! leaves *unwritten* extents: the first writeback of each range converts
//! it to written, a metadata change that every `fdatasync` covering fresh
//! data must also write (a second device write per fsync). Under sync flush
//! ([`CommitLog::set_zero_ahead`]) the log therefore writes zeros with
//! `pwrite` a few MB ahead of its write position, one [`prefault::STEP`] at
//! a time, and asks the prefault thread to start their writeback: by the
//! time records reach a range its extent is written, and a group-commit
//! fsync writes the records' pages and nothing else. The zeros are written
//! by this thread, only past the write position, so they never overwrite a
//! record; the flusher syncs only the range it answers for, so it never
//! waits on them either (see [`super::flush`]). Measured on the
//! development box: 4 KiB `O_DSYNC` writes take 0.18 ms into a fallocated
//! file and 0.12 ms into a written one (docs/benchmarks.md).
//!
//! This module only stores and finds bytes; what a record means lives in
//! [`super::record`], and indexing in [`super::consume_queue`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use slog::{info, warn, Logger};

use super::error::{Result, StoreError};
use super::flush::SegmentFiles;
use super::mapped_file::{file_name, list_files, MappedFile};
use super::prefault::{self, Prefaulter};
use super::record::{self, DecodedMessage, BLANK_MAGIC, EOF_MARKER_LEN, MESSAGE_MAGIC};
use super::retention::{DiskUsage, StatvfsDiskUsage};

/// The segmented append-only log.
pub struct CommitLog {
    /// First field: dropped (stopped and joined) before the segments.
    prefault: Option<Prefaulter>,
    /// Pages up to here were handed to the prefaulter.
    prefaulted_to: u64,
    /// Write zeros ahead of the write position (module doc, "Zero-ahead").
    zero_ahead: bool,
    /// Zeros were written up to here.
    zeroed_to: u64,
    dir: PathBuf,
    segment_size: u64,
    segments: Vec<MappedFile>,
    write_pos: u64,
    files: Arc<SegmentFiles>,
    logger: Logger,
    first_short_segment: Option<u64>,
    /// Below this offset a bad record is damage, not a torn tail: [`scan`]
    /// steps over it to the next intact record (set by recovery to the
    /// recovered end, so that rebuilding the index sees every record).
    ///
    /// [`scan`]: CommitLog::scan
    resync_below: u64,
    /// The configured `disk_hard_limit_ratio`, for the error text when a
    /// new segment finds no space (ENOSPC).
    disk_hard_limit: f64,
    /// Records appended but not yet written to their segment (see
    /// "Writes" above): the bytes of `pending_start..write_pos`, all in one
    /// segment.
    pending: Vec<u8>,
    pending_start: u64,
    /// The last failure to create a segment (start, when, error): appends
    /// needing that segment get the same error at once until
    /// `segment_retry` has passed.
    segment_failed: Option<(u64, std::time::Instant, StoreError)>,
    segment_retry: Duration,
}

/// How long a failed segment creation (no space, most often) is answered
/// from memory before it is tried again. Each try is a failed fallocate of
/// a whole segment, about 12 ms for 64 MiB, on the Storage thread that
/// also serves the pulls which could drain the disk.
pub const SEGMENT_RETRY: Duration = Duration::from_secs(1);

/// A staging buffer grown past this by one large batch is given back after
/// its commit.
const PENDING_KEEP: usize = 4 << 20;

/// Past the flushed checkpoint, how far after a bad record an intact one
/// is looked for before the bad record is taken for the torn tail (more
/// than one record of the largest configurable size).
pub const RESYNC_WINDOW: u64 = 8 << 20;

/// One step of a scan: what starts at a position.
enum Step<'a> {
    Record(DecodedMessage<'a>, usize),
    EndOfFile,
    Invalid,
}

/// What starts at `at` of a segment starting at `base`.
fn step_at(bytes: &[u8], at: usize, base: u64) -> Step<'_> {
    let Some(rest) = bytes.get(at..) else {
        return Step::Invalid;
    };
    match record::peek_header(rest) {
        Some((size, BLANK_MAGIC)) if size as usize == rest.len() => Step::EndOfFile,
        Some((_, MESSAGE_MAGIC)) => match record::decode(rest) {
            Ok((m, n)) if m.physical_offset == base + at as u64 => Step::Record(m, n),
            _ => Step::Invalid,
        },
        _ => Step::Invalid,
    }
}

/// The first index in `(at, limit)` of a segment where an intact record
/// (its magic, size, CRC and own physical offset check out) or the
/// end-of-file marker starts: where a scan resumes after damage.
fn find_resync(bytes: &[u8], at: usize, limit: usize, base: u64) -> Option<usize> {
    let limit = limit.min(bytes.len());
    let from = at + 1;
    if from >= limit {
        return None;
    }
    // A magic sits 4 bytes into a record: search the magic of a record
    // starting in `from..limit`.
    let hay = bytes.get(from + 4..(limit + 4).min(bytes.len()))?;
    let first = |magic: u32| {
        memchr::memmem::find_iter(hay, &magic.to_be_bytes())
            .map(|i| from + i)
            .find(|&p| !matches!(step_at(bytes, p, base), Step::Invalid))
    };
    match (first(MESSAGE_MAGIC), first(BLANK_MAGIC)) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl CommitLog {
    /// Maps the existing segments of `dir` (creating it if needed). The write
    /// position is provisionally the end of the last segment: recovery sets
    /// the real one with [`CommitLog::truncate`].
    pub fn open(dir: &Path, segment_size: u64, logger: Logger) -> Result<CommitLog> {
        std::fs::create_dir_all(dir)?;
        let files = Arc::new(SegmentFiles::default());
        let mut segments: Vec<MappedFile> = Vec::new();
        let mut first_short_segment = None;
        for (start, path) in list_files(dir)? {
            let len = std::fs::metadata(&path)?.len();
            if start % segment_size != 0 || len > segment_size {
                return Err(StoreError::InvalidConfig(format!(
                    "segment {} does not match segment_size {segment_size}",
                    path.display()
                )));
            }
            if let Some(prev) = segments.last() {
                if prev.end() != start {
                    return Err(StoreError::Corrupt(format!(
                        "commit log segments are not contiguous at {}",
                        path.display()
                    )));
                }
            }
            if len < segment_size && first_short_segment.is_none() {
                warn!(logger, "commit log segment is short (torn)"; "start" => start, "len" => len);
                first_short_segment = Some(start);
            }
            let mut seg = MappedFile::open(&path, start, segment_size)?;
            seg.share();
            files.add(start, seg.try_clone_file()?, seg.map_handle());
            segments.push(seg);
        }
        let write_pos = segments.last().map_or(0, MappedFile::end);
        Ok(CommitLog {
            prefault: Prefaulter::start(&logger),
            prefaulted_to: write_pos,
            zero_ahead: false,
            zeroed_to: write_pos,
            dir: dir.to_path_buf(),
            segment_size,
            segments,
            write_pos,
            files,
            logger,
            first_short_segment,
            resync_below: 0,
            disk_hard_limit: 1.0,
            pending: Vec::new(),
            pending_start: write_pos,
            segment_failed: None,
            segment_retry: SEGMENT_RETRY,
        })
    }

    /// How long a failed segment creation is answered from memory
    /// ([`SEGMENT_RETRY`] unless set).
    pub fn set_segment_retry(&mut self, retry: Duration) {
        self.segment_retry = retry;
    }

    /// The configured hard disk limit, quoted by a `DiskFull` error.
    pub fn set_disk_hard_limit(&mut self, limit: f64) {
        self.disk_hard_limit = limit;
    }

    /// Turns zero-ahead on or off (module doc); on under sync flush.
    pub fn set_zero_ahead(&mut self, on: bool) {
        self.zero_ahead = on;
    }

    /// The segment handles shared with the flusher.
    pub fn segment_files(&self) -> Arc<SegmentFiles> {
        self.files.clone()
    }

    /// Start of the first segment found shorter than the segment size at
    /// open (a torn file): recovery must scan it whatever the checkpoint says.
    pub fn first_short_segment(&self) -> Option<u64> {
        self.first_short_segment
    }

    /// Size of one segment.
    pub fn segment_size(&self) -> u64 {
        self.segment_size
    }

    /// Largest record that fits in a segment.
    pub fn max_record_size(&self) -> usize {
        (self.segment_size as usize).saturating_sub(EOF_MARKER_LEN)
    }

    /// First physical offset still stored.
    pub fn min_offset(&self) -> u64 {
        self.segments
            .first()
            .map_or(self.write_pos, MappedFile::start)
    }

    /// One past the last byte written.
    pub fn max_offset(&self) -> u64 {
        self.write_pos
    }

    /// Number of segment files.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    fn segment_index(&self, offset: u64) -> Option<usize> {
        let first = self.segments.first()?.start();
        if offset < first {
            return None;
        }
        let idx = usize::try_from((offset - first) / self.segment_size).ok()?;
        (idx < self.segments.len()).then_some(idx)
    }

    /// The `len` bytes at `offset`, if they are written and in one segment.
    pub fn slice(&self, offset: u64, len: usize) -> Option<&[u8]> {
        debug_assert!(self.pending.is_empty(), "commit log read before commit");
        let end = offset.checked_add(len as u64)?;
        if end > self.write_pos {
            return None;
        }
        let seg = &self.segments[self.segment_index(offset)?];
        let from = (offset - seg.start()) as usize;
        seg.bytes().get(from..from + len)
    }

    /// [`CommitLog::slice`] as `Bytes` sharing the mapping: no copy (pull
    /// answers go from here to the socket as they are).
    pub fn slice_shared(&self, offset: u64, len: usize) -> Option<Bytes> {
        debug_assert!(self.pending.is_empty(), "commit log read before commit");
        let end = offset.checked_add(len as u64)?;
        if end > self.write_pos {
            return None;
        }
        let seg = &self.segments[self.segment_index(offset)?];
        seg.shared((offset - seg.start()) as usize, len)
    }

    /// Where a record of `size` bytes appended at `pos` would start.
    fn placement(&self, pos: u64, size: usize) -> u64 {
        let seg_off = pos % self.segment_size;
        if seg_off != 0 && seg_off + size as u64 + EOF_MARKER_LEN as u64 > self.segment_size {
            pos - seg_off + self.segment_size
        } else {
            pos
        }
    }

    /// Whether appends are refused because the last try to create the
    /// next segment ran out of space (ENOSPC below the hard ratio): a
    /// disk-full state as real as the ratio's, until a segment is created.
    pub fn segment_refused_for_space(&self) -> bool {
        matches!(
            self.segment_failed,
            Some((_, _, StoreError::DiskFull { .. }))
        )
    }

    /// Tests: as if creating the segment at the write position had just
    /// failed with `e`.
    #[cfg(test)]
    pub(crate) fn fail_next_segment(&mut self, e: StoreError) {
        self.segment_failed = Some((self.write_pos, std::time::Instant::now(), e));
    }

    fn ensure_segment(&mut self, start: u64) -> Result<()> {
        if self.segments.last().is_some_and(|s| s.start() >= start) {
            return Ok(());
        }
        if let Some((at, when, e)) = &self.segment_failed {
            if *at == start && when.elapsed() < self.segment_retry {
                return Err(e.clone());
            }
        }
        let path = self.dir.join(file_name(start));
        let mut seg = match MappedFile::open(&path, start, self.segment_size) {
            Ok(seg) => seg,
            Err(e) => {
                let e = match e {
                    // ENOSPC while preallocating: say how full the disk is
                    // and what the limit is, not a placeholder.
                    StoreError::DiskFull { .. } => StoreError::DiskFull {
                        usage: StatvfsDiskUsage.usage_ratio(&self.dir).unwrap_or(1.0),
                        limit: self.disk_hard_limit,
                    },
                    e => e,
                };
                if self.segment_failed.is_none() {
                    warn!(self.logger, "cannot create a commit log segment: appends needing it are refused, retried every second";
                        "start" => start, "error" => %e);
                }
                self.segment_failed = Some((start, std::time::Instant::now(), e.clone()));
                return Err(e);
            }
        };
        if self.segment_failed.take().is_some() {
            info!(self.logger, "commit log segment created after earlier failures"; "start" => start);
        }
        seg.share();
        self.files
            .add(start, seg.try_clone_file()?, seg.map_handle());
        info!(self.logger, "commit log segment created"; "start" => start);
        self.segments.push(seg);
        Ok(())
    }

    /// Creates, before anything is written, every segment that appending
    /// records of these sizes needs: a batch then cannot fail half-way.
    pub fn reserve(&mut self, sizes: impl Iterator<Item = usize>) -> Result<()> {
        let mut pos = self.write_pos;
        let mut last_start = None;
        for size in sizes {
            pos = self.placement(pos, size);
            last_start = Some(pos - pos % self.segment_size);
            pos += size as u64;
        }
        let Some(last_start) = last_start else {
            return Ok(());
        };
        let mut start = self.write_pos - self.write_pos % self.segment_size;
        while start <= last_start {
            self.ensure_segment(start)?;
            start += self.segment_size;
        }
        Ok(())
    }

    /// Appends one record of `size` bytes, written by `encode(buf, offset)`
    /// into the staging buffer; returns its physical offset. The record is
    /// in the file after the next [`CommitLog::commit`].
    pub fn append_with(&mut self, size: usize, encode: impl FnOnce(&mut [u8], u64)) -> Result<u64> {
        let pos = self.placement(self.write_pos, size);
        if pos != self.write_pos {
            // The rest of this segment gets the end-of-file marker, written
            // with what is staged for it before the log moves on.
            let rest = (self.segment_size - self.write_pos % self.segment_size) as u32;
            let marker = self.stage(self.write_pos, EOF_MARKER_LEN);
            marker[..4].copy_from_slice(&rest.to_be_bytes());
            marker[4..8].copy_from_slice(&BLANK_MAGIC.to_be_bytes());
            self.write_pos += EOF_MARKER_LEN as u64;
            self.commit()?;
            self.write_pos = pos;
        }
        self.ensure_segment(pos - pos % self.segment_size)?;
        let idx = self.segment_index(pos).ok_or(StoreError::NoRecord(pos))?;
        let seg = &self.segments[idx];
        if (pos - seg.start()) as usize + size > seg.len() as usize {
            return Err(StoreError::MessageTooLarge {
                what: "stored record",
                size,
                limit: self.segment_size as usize - EOF_MARKER_LEN,
            });
        }
        encode(self.stage(pos, size), pos);
        self.write_pos = pos + size as u64;
        self.prefault_ahead();
        Ok(pos)
    }

    /// `len` zeroed bytes at the end of the staging buffer, for offset `at`
    /// (the current end of what is staged).
    fn stage(&mut self, at: u64, len: usize) -> &mut [u8] {
        if self.pending.is_empty() {
            self.pending_start = at;
        }
        debug_assert_eq!(self.pending_start + self.pending.len() as u64, at);
        let from = self.pending.len();
        self.pending.resize(from + len, 0);
        &mut self.pending[from..]
    }

    /// Whether appended records wait for [`CommitLog::commit`].
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Writes every staged record to its segment (one `pwrite`). On an
    /// error the staged bytes are dropped: the caller must stop taking
    /// writes (the log's end already counts them).
    pub fn commit(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let start = self.pending_start;
        let result = match self.segment_index(start) {
            Some(idx) => {
                let seg = &self.segments[idx];
                seg.write_at((start - seg.start()) as usize, &self.pending)
            }
            None => Err(StoreError::NoRecord(start)),
        };
        self.pending.clear();
        if self.pending.capacity() > PENDING_KEEP {
            self.pending = Vec::new();
        }
        self.pending_start = self.write_pos;
        result
    }

    /// Hands the next pages of the active segment to the prefaulter once
    /// the writer has used up a [`prefault::STEP`] of what was populated.
    fn prefault_ahead(&mut self) {
        if self.zero_ahead {
            self.zero_step();
        }
        let Some(p) = &self.prefault else {
            return;
        };
        let pos = self.write_pos;
        if pos + prefault::AHEAD < self.prefaulted_to + prefault::STEP {
            return;
        }
        let seg_start = pos - pos % self.segment_size;
        let from = self.prefaulted_to.max(pos);
        let to = (pos + prefault::AHEAD).min(seg_start + self.segment_size);
        self.prefaulted_to = self.prefaulted_to.max(to);
        if from >= to {
            return;
        }
        if let Some(seg) = self.segment_index(pos).map(|i| &self.segments[i]) {
            let base = seg.bytes().as_ptr() as usize;
            p.request(base + (from - seg_start) as usize, (to - from) as usize);
        }
    }

    /// Writes zeros over at most one [`prefault::STEP`] past both the write
    /// position and what was zeroed before, up to [`prefault::AHEAD`] ahead
    /// within the active segment, and has the prefault thread start their
    /// writeback (module doc, "Zero-ahead"). Only ever past `write_pos`:
    /// what is staged and not yet committed lies below it.
    fn zero_step(&mut self) {
        let pos = self.write_pos;
        let seg_start = pos - pos % self.segment_size;
        let seg_end = seg_start + self.segment_size;
        let from = self.zeroed_to.max(pos);
        if from >= seg_end {
            return;
        }
        // Whole steps (or the segment's rest), once one fits in the window.
        let to = (from + prefault::STEP).min(seg_end);
        if pos + prefault::AHEAD < to {
            return;
        }
        let Some(seg) = self.segment_index(pos).map(|i| &self.segments[i]) else {
            return;
        };
        let at = (from - seg_start) as usize;
        if seg.write_zeros(at, (to - from) as usize).is_err() {
            // A failed write of zeros loses nothing: the range is still
            // unwritten extents, and an append there reports its own error.
            return;
        }
        self.zeroed_to = to;
        if let (Some(p), Ok(file)) = (&self.prefault, seg.try_clone_file()) {
            p.writeback(file, at as u64, to - from);
        }
    }

    /// Replication (slave side): writes `bytes` as they are at `offset`,
    /// which must be the current end, without crossing a segment end. The
    /// caller has validated the records (see [`super::replica`]).
    pub fn append_raw(&mut self, offset: u64, bytes: &[u8]) -> Result<()> {
        if offset != self.write_pos {
            return Err(StoreError::Corrupt(format!(
                "replicated chunk at {offset} but the commit log ends at {}",
                self.write_pos
            )));
        }
        let seg_off = offset % self.segment_size;
        if seg_off + bytes.len() as u64 > self.segment_size {
            return Err(StoreError::Corrupt(format!(
                "replicated chunk at {offset} crosses a segment end"
            )));
        }
        if bytes.is_empty() {
            return Ok(());
        }
        self.commit()?;
        self.ensure_segment(offset - seg_off)?;
        let idx = self
            .segment_index(offset)
            .ok_or(StoreError::NoRecord(offset))?;
        self.segments[idx].write_at(seg_off as usize, bytes)?;
        self.write_pos = offset + bytes.len() as u64;
        self.prefault_ahead();
        Ok(())
    }

    /// Walks valid records from `from` (a record boundary) and calls
    /// `on_record` for each; stops at the first thing that is not a valid
    /// record or end-of-file marker and returns that offset: the valid end.
    /// Damage below the recovered end (see [`CommitLog::set_resync_below`])
    /// is stepped over silently: recovery already reported it.
    pub fn scan(&self, from: u64, on_record: impl FnMut(&DecodedMessage<'_>)) -> u64 {
        self.scan_resync(from, self.resync_below, on_record, |_, _| {})
    }

    /// Records below `end` are known: later scans step over damage there.
    pub fn set_resync_below(&mut self, end: u64) {
        self.resync_below = end;
    }

    /// [`CommitLog::scan`] that tells damage from a torn tail; returns the
    /// valid end. `on_damage(from, to)` gets each damaged byte range
    /// stepped over:
    ///
    /// * below `trusted_end` (the flushed checkpoint: fsynced, acknowledged
    ///   data) a bad record is damage. The walk resumes at the next intact
    ///   record (magic, size, CRC and own physical offset check out) or
    ///   end-of-file marker; if none follows below `trusted_end` in that
    ///   segment, at `trusted_end` (a record boundary) or the next segment.
    /// * at or past `trusted_end` a bad record is damage only when an intact
    ///   record follows within [`RESYNC_WINDOW`] in its segment, or the next
    ///   segment starts with one. A record torn by a crash has nothing
    ///   written after it (one writer appends in order), and under sync
    ///   flush a later record acknowledged means this one was fsynced too:
    ///   such a record was acknowledged after the last checkpoint was
    ///   written. Otherwise it is the torn tail: the walk stops there.
    pub fn scan_resync(
        &self,
        from: u64,
        trusted_end: u64,
        mut on_record: impl FnMut(&DecodedMessage<'_>),
        mut on_damage: impl FnMut(u64, u64),
    ) -> u64 {
        let mut pos = from;
        while let Some(idx) = self.segment_index(pos) {
            let seg = &self.segments[idx];
            let (base, bytes) = (seg.start(), seg.bytes());
            let at = (pos - base) as usize;
            match step_at(bytes, at, base) {
                Step::Record(m, n) => {
                    on_record(&m);
                    pos += n as u64;
                }
                Step::EndOfFile => pos = seg.end(),
                Step::Invalid => {
                    let trusted = pos < trusted_end;
                    let limit = if trusted {
                        trusted_end.min(seg.end())
                    } else {
                        pos.saturating_add(RESYNC_WINDOW).min(seg.end())
                    };
                    let next = match find_resync(bytes, at, (limit - base) as usize, base) {
                        Some(i) => base + i as u64,
                        None if trusted => limit,
                        None if self.starts_with_record(idx + 1) => seg.end(),
                        None => break,
                    };
                    on_damage(pos, next);
                    pos = next;
                }
            }
        }
        pos
    }

    /// Whether segment `idx` exists and starts with an intact record.
    fn starts_with_record(&self, idx: usize) -> bool {
        self.segments
            .get(idx)
            .is_some_and(|s| matches!(step_at(s.bytes(), 0, s.start()), Step::Record(..)))
    }

    /// The stored bytes of `from..to` (at most one segment's worth), for
    /// quarantining a damaged range.
    pub fn bytes_between(&self, from: u64, to: u64) -> Option<&[u8]> {
        let seg = &self.segments[self.segment_index(from)?];
        let a = (from - seg.start()) as usize;
        let b = (to.min(seg.end()) - seg.start()) as usize;
        seg.bytes().get(a..b)
    }

    /// Cuts the log at `end`: zeros the rest of the segment holding it and
    /// deletes every later segment.
    pub fn truncate(&mut self, end: u64) -> Result<()> {
        self.pending.clear();
        // The log moves: a cached segment failure is for a start it may
        // no longer need.
        self.segment_failed = None;
        while self.segments.last().is_some_and(|s| s.start() >= end) {
            if let Some(seg) = self.segments.pop() {
                self.files.remove_from(seg.start());
                warn!(self.logger, "deleting commit log segment past the valid end";
                    "start" => seg.start(), "valid_end" => end);
                seg.delete()?;
            }
        }
        if let Some(seg) = self.segments.last_mut() {
            if end < seg.end() {
                seg.zero_from((end - seg.start()) as usize);
            }
        }
        self.write_pos = end;
        self.pending_start = end;
        self.prefaulted_to = end;
        self.zeroed_to = end;
        Ok(())
    }

    /// Sets the end after a clean shutdown: the tail is known to be zeros,
    /// so only segments past `end` are deleted (none, normally).
    pub fn truncate_clean(&mut self, end: u64) -> Result<()> {
        self.pending.clear();
        while self
            .segments
            .last()
            .is_some_and(|s| s.start() >= end && s.start() > 0)
        {
            if let Some(seg) = self.segments.pop() {
                self.files.remove_from(seg.start());
                seg.delete()?;
            }
        }
        self.write_pos = end;
        self.pending_start = end;
        self.prefaulted_to = end;
        self.zeroed_to = end;
        Ok(())
    }

    /// Paths of the segments, oldest first.
    pub fn segment_paths(&self) -> Vec<PathBuf> {
        self.segments
            .iter()
            .map(|s| s.path().to_path_buf())
            .collect()
    }

    /// Deletes, oldest first, segments (never the active one) last modified
    /// before `now - reserved`; returns how many.
    pub fn delete_expired(&mut self, now: SystemTime, reserved: Duration) -> Result<usize> {
        let mut deleted = 0;
        while self.segments.len() > 1 {
            let modified = std::fs::metadata(self.segments[0].path())?.modified()?;
            let age = now.duration_since(modified).unwrap_or_default();
            if age <= reserved {
                break;
            }
            let seg = self.segments.remove(0);
            self.files.remove_below(seg.end());
            info!(self.logger, "retention deleted commit log segment";
                "start" => seg.start(), "age_s" => age.as_secs());
            seg.delete()?;
            deleted += 1;
        }
        Ok(deleted)
    }

    /// Path of the oldest segment, if any.
    pub fn oldest_segment_path(&self) -> Option<&Path> {
        self.segments.first().map(MappedFile::path)
    }

    /// fsyncs every segment on the calling thread (shutdown).
    pub fn sync_all(&self) -> Result<()> {
        for s in &self.segments {
            s.sync()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A segment that cannot be created is not tried again on every append
    /// until [`SEGMENT_RETRY`] has passed: the same error comes back at
    /// once; after the retry time the next append creates it.
    #[test]
    fn a_failed_segment_creation_is_answered_from_memory_until_its_retry() {
        let dir = tempfile::tempdir().unwrap();
        let log = Logger::root(slog::Discard, slog::o!());
        let mut cl = CommitLog::open(dir.path(), 64 * 1024, log).unwrap();
        // A directory where the first segment's file goes: creating it fails.
        let blocker = dir.path().join(file_name(0));
        std::fs::create_dir(&blocker).unwrap();
        assert!(cl.reserve(std::iter::once(100)).is_err());
        assert!(!cl.segment_refused_for_space(), "not for lack of space");
        std::fs::remove_dir(&blocker).unwrap();
        // It could be created now, but is not tried yet.
        assert!(cl.reserve(std::iter::once(100)).is_err());
        assert!(!blocker.exists(), "no new attempt within the retry time");
        cl.set_segment_retry(Duration::ZERO);
        cl.reserve(std::iter::once(100)).unwrap();
        assert!(blocker.is_file());
        cl.append_with(100, |buf, _| buf.fill(7)).unwrap();
        cl.commit().unwrap();
        assert_eq!(cl.slice(0, 100).unwrap(), &[7u8; 100][..]);
    }

    /// A segment refused for lack of space (ENOSPC) is a disk-full state
    /// until a segment is created again.
    #[test]
    fn a_segment_refused_for_space_reads_as_disk_full_until_one_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let log = Logger::root(slog::Discard, slog::o!());
        let mut cl = CommitLog::open(dir.path(), 64 * 1024, log).unwrap();
        let full = StoreError::DiskFull {
            usage: 0.82,
            limit: 0.9,
        };
        cl.segment_failed = Some((0, std::time::Instant::now(), full));
        assert!(cl.segment_refused_for_space());
        assert!(matches!(
            cl.reserve(std::iter::once(100)),
            Err(StoreError::DiskFull { .. })
        ));
        cl.set_segment_retry(Duration::ZERO);
        cl.reserve(std::iter::once(100)).unwrap();
        assert!(!cl.segment_refused_for_space());
    }

    /// Zero-ahead writes zeros only past the write position: records of
    /// mixed sizes, committed in batches across several steps and segment
    /// rolls, all read back as written, and the rest of the active segment
    /// reads as zeros.
    #[test]
    fn zero_ahead_never_overwrites_records() {
        let dir = tempfile::tempdir().unwrap();
        let log = Logger::root(slog::Discard, slog::o!());
        let seg = 3 * prefault::STEP + 12_345;
        let mut cl = CommitLog::open(dir.path(), seg, log).unwrap();
        cl.set_zero_ahead(true);
        let mut written = Vec::new();
        let mut n = 0u32;
        while written.len() < 6000 {
            let sizes: Vec<usize> = (0..7)
                .map(|i| 64 + ((n as usize + i) * 997) % 3000)
                .collect();
            cl.reserve(sizes.iter().copied()).unwrap();
            for size in sizes {
                n += 1;
                let fill = (n % 251) as u8 + 1;
                let at = cl.append_with(size, |buf, _| buf.fill(fill)).unwrap();
                written.push((at, size, fill));
            }
            cl.commit().unwrap();
        }
        assert!(cl.write_pos > 2 * seg, "the test must cross segment rolls");
        for &(at, size, fill) in &written {
            let got = cl.slice(at, size).unwrap();
            assert!(got.iter().all(|&b| b == fill), "record at {at} overwritten");
        }
        let end = cl.write_pos;
        let active = cl.segments.last().unwrap();
        let rest = &active.bytes()[(end - active.start()) as usize..];
        assert!(
            rest.iter().all(|&b| b == 0),
            "tail of the active segment not zero"
        );
        assert!(cl.zeroed_to > end, "zero-ahead did not run");
    }
}
