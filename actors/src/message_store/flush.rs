//! The flusher thread: fsync off the store's thread, with group commit.
//!
//! The store thread writes records into mapped segments and never waits for
//! the disk. Durability requests go over a channel to one dedicated thread
//! that owns duplicated `File` handles of the segments ([`SegmentFiles`],
//! shared behind a mutex touched only when a segment is created or deleted).
//! It takes one request, drains everything else queued, syncs once each
//! segment covering `[flushed, max requested end)` and then answers every
//! request it covered: one fsync answers many appends (group commit), and
//! the store keeps appending while an fsync runs.
//!
//! The sync is range-limited: `msync(MS_SYNC)` on exactly that range of the
//! segment's mapping, which on Linux is `vfs_fsync_range(.., datasync)` —
//! the range's dirty pages are written and waited for, the inode is written
//! if a change needed to read the data back (an extent conversion) made it
//! dirty, and the disk's write cache is flushed, as `fdatasync` does. The
//! difference is what it leaves alone: the zeros the CommitLog writes ahead
//! of itself (see [`super::commit_log`], "Zero-ahead") are dirty pages past
//! the range, written back in the background, never by a sync waiting to
//! answer a send. The flusher holds its own `Arc` of each mapping, so the
//! address stays mapped while it is used; if `msync` fails all the same,
//! it falls back to `fdatasync` of the whole file.
//!
//! The periodic checkpoint also runs here: it syncs the CommitLog up to the
//! current end, the ConsumeQueue files dirtied since the last checkpoint, and
//! then replaces the checkpoint file.

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use memmap2::MmapMut;
use slog::{error, Logger};
use tokio::sync::oneshot;

use super::checkpoint::Checkpoint;
use super::error::{Result, StoreError};

/// One segment as the flusher sees it.
#[derive(Clone)]
struct Segment {
    start: u64,
    file: Arc<File>,
    map: Arc<MmapMut>,
}

/// Duplicated handles of the CommitLog segments (file and mapping), by start
/// offset. Written by the store thread on segment creation/deletion, read by
/// the flusher.
#[derive(Default)]
pub struct SegmentFiles {
    files: Mutex<Vec<Segment>>,
}

impl SegmentFiles {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Segment>> {
        self.files.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a new segment (appended: segments are created in order).
    pub fn add(&self, start: u64, file: File, map: Arc<MmapMut>) {
        self.lock().push(Segment {
            start,
            file: Arc::new(file),
            map,
        });
    }

    /// Forgets every segment starting below `start`.
    pub fn remove_below(&self, start: u64) {
        self.lock().retain(|s| s.start >= start);
    }

    /// Forgets every segment starting at or after `start`.
    pub fn remove_from(&self, start: u64) {
        self.lock().retain(|s| s.start < start);
    }

    fn covering(&self, from: u64, to: u64, segment_size: u64) -> Vec<Segment> {
        self.lock()
            .iter()
            .filter(|s| s.start < to && s.start + segment_size > from)
            .cloned()
            .collect()
    }
}

/// The answer to a sync flush request.
pub type FlushReply = oneshot::Receiver<Result<()>>;

enum Request {
    Flush {
        end: u64,
        reply: Option<oneshot::Sender<Result<()>>>,
    },
    Checkpoint {
        end: u64,
        cq_files: Vec<File>,
    },
}

struct Shared {
    segments: Arc<SegmentFiles>,
    segment_size: u64,
    flushed: AtomicU64,
    fsyncs: AtomicU64,
    /// Duration of the latest and of the longest flush (µs), for the
    /// broker's runtime status.
    last_flush_us: AtomicU64,
    max_flush_us: AtomicU64,
    checkpoint_path: PathBuf,
    logger: Logger,
}

/// Handle on the flusher thread.
pub struct Flusher {
    tx: Option<mpsc::Sender<Request>>,
    thread: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl Flusher {
    /// Starts the thread; `flushed` is the offset already known durable.
    pub fn start(
        segments: Arc<SegmentFiles>,
        segment_size: u64,
        flushed: u64,
        checkpoint_path: PathBuf,
        logger: Logger,
    ) -> Result<Flusher> {
        let shared = Arc::new(Shared {
            segments,
            segment_size,
            flushed: AtomicU64::new(flushed),
            fsyncs: AtomicU64::new(0),
            last_flush_us: AtomicU64::new(0),
            max_flush_us: AtomicU64::new(0),
            checkpoint_path,
            logger,
        });
        let (tx, rx) = mpsc::channel();
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("skylark-flusher".into())
            .spawn(move || run(&s, &rx))?;
        Ok(Flusher {
            tx: Some(tx),
            thread: Some(thread),
            shared,
        })
    }

    /// Asks for `..end` to be made durable; the receiver answers once it is.
    pub fn request(&self, end: u64) -> FlushReply {
        let (reply, rx) = oneshot::channel();
        if end <= self.flushed() {
            let _ = reply.send(Ok(()));
        } else if let Some(tx) = &self.tx {
            if let Err(mpsc::SendError(Request::Flush { reply: Some(r), .. })) =
                tx.send(Request::Flush {
                    end,
                    reply: Some(reply),
                })
            {
                let _ = r.send(Err(StoreError::FlushFailed("flusher stopped".into())));
            }
        }
        rx
    }

    /// Asks for `..end` to be flushed without waiting for it.
    pub fn request_nowait(&self, end: u64) {
        if end > self.flushed() {
            if let Some(tx) = &self.tx {
                let _ = tx.send(Request::Flush { end, reply: None });
            }
        }
    }

    /// Flushes `..end` and the given ConsumeQueue files, then writes a
    /// (not clean) checkpoint saying so.
    pub fn request_checkpoint(&self, end: u64, cq_files: Vec<File>) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Request::Checkpoint { end, cq_files });
        }
    }

    /// CommitLog offset known to be on disk.
    pub fn flushed(&self) -> u64 {
        self.shared.flushed.load(Ordering::Acquire)
    }

    /// Number of fdatasync calls made on CommitLog segments so far.
    pub fn fsync_count(&self) -> u64 {
        self.shared.fsyncs.load(Ordering::Relaxed)
    }

    /// Duration of the latest and of the longest flush so far, in µs.
    pub fn flush_latency_us(&self) -> (u64, u64) {
        (
            self.shared.last_flush_us.load(Ordering::Relaxed),
            self.shared.max_flush_us.load(Ordering::Relaxed),
        )
    }

    /// Lets the thread finish what is queued and joins it.
    pub fn stop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Records that `..end` was made durable by someone else (shutdown).
    pub fn mark_flushed(&self, end: u64) {
        self.shared.flushed.fetch_max(end, Ordering::AcqRel);
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(s: &Shared, rx: &mpsc::Receiver<Request>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        let target = batch
            .iter()
            .map(|r| match r {
                Request::Flush { end, .. } | Request::Checkpoint { end, .. } => *end,
            })
            .max()
            .unwrap_or(0);
        let result = sync_to(s, target);
        let mut checkpoint_ok = result.is_ok();
        let mut cq_safe = None;
        for r in &batch {
            if let Request::Checkpoint { end, cq_files } = r {
                for f in cq_files {
                    if let Err(e) = f.sync_data() {
                        error!(s.logger, "consume queue fsync failed"; "error" => %e);
                        checkpoint_ok = false;
                    }
                }
                cq_safe = cq_safe.max(Some(*end));
            }
        }
        if let (true, Some(cq_safe)) = (checkpoint_ok, cq_safe) {
            let cp = Checkpoint {
                commit_log_flushed: s.flushed.load(Ordering::Acquire),
                cq_safe,
                clean: false,
                no_queues: false,
            };
            if let Err(e) = cp.store(&s.checkpoint_path) {
                error!(s.logger, "checkpoint write failed"; "error" => %e);
            }
        }
        for r in batch {
            if let Request::Flush {
                reply: Some(reply), ..
            } = r
            {
                let _ = reply.send(result.clone());
            }
        }
    }
}

/// Makes `from..to` of `seg` (global offsets, clamped to the segment)
/// durable: `msync(MS_SYNC)` of that range, or `fdatasync` of the whole
/// file if that fails (module doc).
fn sync_range(seg: &Segment, from: u64, to: u64) -> std::io::Result<()> {
    let len = seg.map.len() as u64;
    let a = from.saturating_sub(seg.start).min(len);
    let b = to.saturating_sub(seg.start).min(len);
    if a >= b {
        return Ok(());
    }
    match seg.map.flush_range(a as usize, (b - a) as usize) {
        Ok(()) => Ok(()),
        Err(_) => seg.file.sync_data(),
    }
}

fn sync_to(s: &Shared, target: u64) -> Result<()> {
    let from = s.flushed.load(Ordering::Acquire);
    if target <= from {
        return Ok(());
    }
    let started = std::time::Instant::now();
    for seg in s.segments.covering(from, target, s.segment_size) {
        let started = std::time::Instant::now();
        let synced = sync_range(&seg, from, target);
        crate::metrics::observe_flush(started.elapsed());
        if let Err(e) = synced {
            error!(s.logger, "commit log fsync failed"; "error" => %e);
            return Err(StoreError::FlushFailed(e.to_string()));
        }
        s.fsyncs.fetch_add(1, Ordering::Relaxed);
    }
    let us = started.elapsed().as_micros() as u64;
    s.last_flush_us.store(us, Ordering::Relaxed);
    s.max_flush_us.fetch_max(us, Ordering::Relaxed);
    s.flushed.fetch_max(target, Ordering::AcqRel);
    Ok(())
}
