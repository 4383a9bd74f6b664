//! Pre-faulting the CommitLog ahead of the writer.
//!
//! The first write to each page of a freshly preallocated segment takes a
//! page fault on the storage thread: the kernel allocates and zeroes a page
//! cache page and maps it. At a few hundred MB/s that is a large share of
//! the append path. A [`Prefaulter`] thread asks the kernel to do that work
//! for the next few MB of the active segment before the writer gets there
//! (`madvise(MADV_POPULATE_WRITE)`, Linux 5.14+), so the storage thread
//! writes to pages that are already mapped. RocketMQ warms its mapped files
//! for the same reason (`warmMappedFile`).
//!
//! `MADV_POPULATE_WRITE` sets up page tables as a write would, but writes
//! nothing: the contents of the file never change. The request is made on
//! the storage thread's own mapping (page tables are per process); if that
//! mapping is gone by the time the thread gets to it, madvise fails with
//! `ENOMEM` and nothing happens. On a kernel without it (`EINVAL`) the
//! thread logs once and stops; appends then fault as before.

use std::sync::mpsc;
use std::thread::JoinHandle;

use slog::{info, Logger};

/// How far ahead of the write position pages are populated.
pub const AHEAD: u64 = 8 << 20;
/// Populate in steps of this many bytes (one request per step written).
pub const STEP: u64 = 1 << 20;

/// The pre-faulting thread; dropped, it stops and is joined.
pub struct Prefaulter {
    tx: Option<mpsc::Sender<(usize, usize)>>,
    thread: Option<JoinHandle<()>>,
}

impl Prefaulter {
    /// Starts the thread; `None` if it cannot be spawned (appends then
    /// simply fault as they would without it).
    pub fn start(logger: &Logger) -> Option<Prefaulter> {
        let (tx, rx) = mpsc::channel::<(usize, usize)>();
        let log = logger.clone();
        let thread = std::thread::Builder::new()
            .name("skylark-prefault".into())
            .spawn(move || run(&rx, &log))
            .ok()?;
        Some(Prefaulter {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Asks for `len` bytes of mapped memory at `addr` to be populated.
    pub fn request(&self, addr: usize, len: usize) {
        if let Some(tx) = &self.tx {
            // A stopped thread (unsupported kernel) just drops requests.
            let _ = tx.send((addr, len));
        }
    }
}

impl Drop for Prefaulter {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(p).ok().filter(|&p| p > 0).unwrap_or(4096)
}

fn run(rx: &mpsc::Receiver<(usize, usize)>, log: &Logger) {
    let page = page_size();
    while let Ok((addr, len)) = rx.recv() {
        let start = addr - addr % page;
        let len = len + (addr - start);
        // SAFETY: MADV_POPULATE_WRITE only populates page tables of an
        // existing mapping and writes no memory; an address range that is
        // no longer mapped makes it fail (ENOMEM), nothing else.
        let rc =
            unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_POPULATE_WRITE) };
        if rc != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
            info!(
                log,
                "kernel without MADV_POPULATE_WRITE: commit log pages fault on write"
            );
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::store::commit_log::CommitLog;

    /// Pages of `path` in the page cache, from a mapping of its own
    /// (residency is per file, not per mapping).
    fn resident_pages(path: &std::path::Path) -> Vec<bool> {
        let f = std::fs::File::open(path).unwrap();
        // SAFETY: read-only mapping of a file the test owns, not written
        // through it.
        let map = unsafe { memmap2::Mmap::map(&f).unwrap() };
        let page = page_size();
        let mut v = vec![0u8; map.len().div_ceil(page)];
        // SAFETY: `v` has one byte per page of the mapping.
        let rc =
            unsafe { libc::mincore(map.as_ptr() as *mut libc::c_void, map.len(), v.as_mut_ptr()) };
        assert_eq!(rc, 0);
        v.into_iter().map(|b| b & 1 == 1).collect()
    }

    /// After a small append, the pages ahead of the writer in the active
    /// segment are brought in by the prefaulter, without changing a byte.
    #[test]
    fn pages_ahead_of_the_writer_are_populated_and_stay_zero() {
        let dir = tempfile::tempdir().unwrap();
        let log = Logger::root(slog::Discard, slog::o!());
        let seg = 32u64 << 20;
        let mut cl = CommitLog::open(dir.path(), seg, log).unwrap();
        cl.reserve([4096usize].into_iter()).unwrap();
        cl.append_with(4096, |buf, _| buf.fill(7)).unwrap();
        let path = dir.path().join(crate::store::mapped_file::file_name(0));
        let page = page_size() as u64;
        let ahead = (AHEAD / page) as usize;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = resident_pages(&path);
            if r[..ahead].iter().all(|&b| b) {
                // Nothing past the populated window was touched.
                assert!(!r[ahead + 1..].iter().any(|&b| b), "populated too far");
                break;
            }
            assert!(Instant::now() < deadline, "pages ahead never populated");
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(cl);
        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes[..4096].iter().all(|&b| b == 7));
        assert!(bytes[4096..].iter().all(|&b| b == 0));
    }
}
