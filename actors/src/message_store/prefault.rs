//! Pre-faulting the CommitLog ahead of the writer.
//!
//! The first touch of each page of a freshly preallocated segment takes a
//! page fault on the storage thread: the kernel allocates and zeroes a page
//! cache page and maps it. At a few hundred MB/s that is a large share of
//! the append path. A [`Prefaulter`] thread asks the kernel to do that work
//! for the next few MB of the active segment before the writer gets there
//! (`madvise(MADV_POPULATE_READ)`, Linux 5.14+); the writer's first write to
//! such a page is then only a cheap write-enable fault. RocketMQ warms its
//! mapped files for the same reason (`warmMappedFile`).
//!
//! `MADV_POPULATE_READ` reads pages in and maps them as a read would: it
//! writes nothing and dirties nothing, so file contents, writeback and
//! fsync cost are unchanged (`MADV_POPULATE_WRITE` would dirty the zero
//! pages ahead and make the flusher write them twice). Requests target only
//! the active segment, which is never unmapped while the Prefaulter lives
//! (the CommitLog drops it, joining the thread, before its segments;
//! retention never deletes the active segment). On a kernel without it
//! (`EINVAL`) the thread logs once and stops; appends then fault as before.

use std::sync::mpsc;
use std::thread::JoinHandle;

use slog::{info, Logger};

/// How far ahead of the write position pages are populated.
pub const AHEAD: u64 = 8 << 20;
/// Populate in steps of this many bytes (one request per step written).
pub const STEP: u64 = 1 << 20;

/// Work for the thread.
enum Job {
    /// Populate `len` bytes of mapped memory at this address.
    Populate(usize, usize),
    /// Start writeback of `len` bytes of the file at this offset (the
    /// CommitLog's zero-ahead, see [`super::commit_log`]).
    Writeback(std::fs::File, u64, u64),
}

/// The pre-faulting thread; dropped, it stops and is joined.
pub struct Prefaulter {
    tx: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Prefaulter {
    /// Starts the thread; `None` if it cannot be spawned (appends then
    /// simply fault as they would without it).
    pub fn start(logger: &Logger) -> Option<Prefaulter> {
        let (tx, rx) = mpsc::channel::<Job>();
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
            let _ = tx.send(Job::Populate(addr, len));
        }
    }

    /// Asks for writeback of `file`'s `offset..offset + len` to be started
    /// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`: nothing waits for it).
    pub fn writeback(&self, file: std::fs::File, offset: u64, len: u64) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Job::Writeback(file, offset, len));
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

/// Populates `len` bytes at `addr` (rounded out to pages); the OS error
/// if it fails.
fn populate(addr: usize, len: usize, page: usize) -> Result<(), std::io::Error> {
    let start = addr - addr % page;
    let len = len + (addr - start);
    // SAFETY: MADV_POPULATE_READ reads pages in and maps them; it writes no
    // memory. The range is part of the active segment's live mapping (see
    // the module doc); were it not mapped, madvise fails (ENOMEM/EFAULT)
    // rather than touching anything.
    let rc = unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_POPULATE_READ) };
    match rc {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// Starts writeback of a file range without waiting for it.
fn start_writeback(file: &std::fs::File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(off), Ok(n)) = (
        libc::off64_t::try_from(offset),
        libc::off64_t::try_from(len),
    ) else {
        return;
    };
    // SAFETY: plain syscall on a descriptor this thread owns; no memory is
    // passed. Failure only means the kernel writes the pages back later.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), off, n, libc::SYNC_FILE_RANGE_WRITE);
    }
}

fn run(rx: &mpsc::Receiver<Job>, log: &Logger) {
    let page = page_size();
    let mut populate_ok = true;
    while let Ok(first) = rx.recv() {
        // Behind the writer: only the furthest range ahead is worth
        // populating; every writeback is started.
        let mut furthest = None;
        for job in std::iter::once(first).chain(rx.try_iter()) {
            match job {
                Job::Populate(addr, len) => furthest = Some((addr, len)),
                Job::Writeback(file, offset, len) => start_writeback(&file, offset, len),
            }
        }
        let Some(req) = furthest.filter(|_| populate_ok) else {
            continue;
        };
        if let Err(e) = populate(req.0, req.1, page) {
            if e.raw_os_error() == Some(libc::EINVAL) {
                info!(
                    log,
                    "kernel without MADV_POPULATE_READ: commit log pages fault on write"
                );
                populate_ok = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::message_store::commit_log::CommitLog;

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
        let page = page_size();
        let probe = vec![0u8; 4 * page];
        let aligned = (probe.as_ptr() as usize).next_multiple_of(page);
        if let Err(e) = populate(aligned, page, page) {
            assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{e}");
            eprintln!("skipped: this kernel has no MADV_POPULATE_READ");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let log = Logger::root(slog::Discard, slog::o!());
        let seg = 32u64 << 20;
        let path = dir
            .path()
            .join(crate::message_store::mapped_file::file_name(0));
        let pages =
            |from: u64| (from / page as u64) as usize..((from + AHEAD) / page as u64) as usize;
        let wait_populated = |from: u64| {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !resident_pages(&path)[pages(from)].iter().all(|&b| b) {
                assert!(
                    Instant::now() < deadline,
                    "pages after {from} never populated"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        let evict = || {
            let f = std::fs::File::open(&path).unwrap();
            f.sync_all().unwrap();
            // SAFETY: plain syscall on an open descriptor.
            let rc = unsafe {
                libc::posix_fadvise(
                    std::os::fd::AsRawFd::as_raw_fd(&f),
                    0,
                    0,
                    libc::POSIX_FADV_DONTNEED,
                )
            };
            assert_eq!(rc, 0);
        };
        let mut cl = CommitLog::open(dir.path(), seg, log.clone()).unwrap();
        cl.reserve([4096usize].into_iter()).unwrap();
        cl.append_with(4096, |buf, _| buf.fill(7)).unwrap();
        cl.commit().unwrap();
        wait_populated(4096);
        drop(cl);

        // Reopened and cut back at its end, as recovery does: the window
        // follows the new write position, not the segment's end.
        evict();
        let mut cl = CommitLog::open(dir.path(), seg, log).unwrap();
        cl.truncate(4096).unwrap();
        cl.reserve([4096usize].into_iter()).unwrap();
        cl.append_with(4096, |buf, _| buf.fill(8)).unwrap();
        cl.commit().unwrap();
        wait_populated(8192);
        drop(cl);

        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes[..4096].iter().all(|&b| b == 7));
        assert!(bytes[4096..8192].iter().all(|&b| b == 8));
        assert!(bytes[8192..].iter().all(|&b| b == 0));
    }
}
