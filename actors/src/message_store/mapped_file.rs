//! One fixed-size file mapped into memory: the unit of CommitLog segments and
//! ConsumeQueue files.
//!
//! Files are named by the offset of their first byte, zero-padded to 20
//! digits, so a directory listing sorted by name is sorted by offset. New
//! files are preallocated (`posix_fallocate`) so that a later write through
//! the map can never hit ENOSPC (which would be a SIGBUS on a sparse mapping).
//!
//! Safety of the mapping: the Storage actor is the only writer of these
//! files and nothing truncates them while mapped (retention unmaps a file
//! before deleting it). A process outside Skylark truncating a live file is
//! outside the model, as for every mmap-based store.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use memmap2::MmapMut;

use super::error::{Result, StoreError};

/// A mapped file of `size` bytes holding the offsets `start..start + size`.
pub struct MappedFile {
    path: PathBuf,
    start: u64,
    file: File,
    /// Shared with the [`Bytes`] that [`MappedFile::shared`] hands out (the
    /// mapping outlives the file's deletion until the last one is dropped).
    /// Only CommitLog segments are shared, and those are written with
    /// [`MappedFile::write_at`], never through the map.
    map: Arc<MmapMut>,
    /// The whole map as one `Bytes`, made on first [`MappedFile::shared`].
    shared: Option<Bytes>,
}

/// The owner a shared `Bytes` of a mapping keeps alive.
struct SharedMap(Arc<MmapMut>);

impl AsRef<[u8]> for SharedMap {
    fn as_ref(&self) -> &[u8] {
        &self.0[..]
    }
}

impl std::fmt::Debug for MappedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedFile")
            .field("path", &self.path)
            .field("start", &self.start)
            .field("len", &self.map.len())
            .finish()
    }
}

/// The file name of a file starting at `offset`.
pub fn file_name(offset: u64) -> String {
    format!("{offset:020}")
}

/// Parses a 20-digit file name back into its start offset.
pub fn parse_file_name(name: &str) -> Option<u64> {
    if name.len() == 20 && name.bytes().all(|b| b.is_ascii_digit()) {
        name.parse().ok()
    } else {
        None
    }
}

/// Lists `(start offset, path)` of the offset-named files in `dir`, sorted.
pub fn list_files(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in read_dir_at(dir)? {
        let entry = entry.map_err(|e| StoreError::io_at("list", dir, e))?;
        if let Some(start) = entry.file_name().to_str().and_then(parse_file_name) {
            out.push((start, entry.path()));
        }
    }
    out.sort_unstable_by_key(|(s, _)| *s);
    Ok(out)
}

fn preallocate(file: &File, path: &Path, size: u64) -> Result<()> {
    use std::os::unix::io::AsRawFd;
    let len = libc::off_t::try_from(size)
        .map_err(|_| StoreError::InvalidConfig("file size too large".into()))?;
    // SAFETY: plain syscall on a valid, open descriptor.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
    match rc {
        0 | libc::EOPNOTSUPP | libc::EINVAL => Ok(()),
        libc::ENOSPC => Err(StoreError::DiskFull {
            usage: 1.0,
            limit: 1.0,
        }),
        e => Err(StoreError::io_at(
            "preallocate",
            path,
            std::io::Error::from_raw_os_error(e),
        )),
    }
}

/// [`list_files`]' errors name the directory.
fn read_dir_at(dir: &Path) -> Result<std::fs::ReadDir> {
    std::fs::read_dir(dir).map_err(|e| StoreError::io_at("list", dir, e))
}

impl MappedFile {
    /// Opens (creating if needed) the file at `path`, sets its length to
    /// `size` (a short file is extended with zeros) and maps it.
    pub fn open(path: &Path, start: u64, size: u64) -> Result<MappedFile> {
        let at = |what: &'static str| move |e| StoreError::io_at(what, path, e);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(at("open or create"))?;
        let len = file.metadata().map_err(at("stat"))?.len();
        if len != size {
            file.set_len(size).map_err(at("set the length of"))?;
        }
        if len < size {
            if let Err(e) = preallocate(&file, path, size) {
                if len == 0 {
                    drop(file);
                    let _ = std::fs::remove_file(path);
                }
                return Err(e);
            }
        }
        // SAFETY: see the module doc: the store is the only user of the file
        // and keeps its length fixed while it is mapped.
        let map = unsafe { MmapMut::map_mut(&file).map_err(at("map"))? };
        Ok(MappedFile {
            path: path.to_path_buf(),
            start,
            file,
            map: Arc::new(map),
            shared: None,
        })
    }

    /// First offset held by this file.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Length of the file in bytes.
    pub fn len(&self) -> u64 {
        self.map.len() as u64
    }

    /// Whether the file has zero length.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// One past the last offset held by this file.
    pub fn end(&self) -> u64 {
        self.start + self.len()
    }

    /// Path of the file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The mapped bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// The mapped bytes, writable. Only for files never [`shared`]
    /// (ConsumeQueue and index files): a shared map is read by answers
    /// being written to sockets and is written with `pwrite` only.
    ///
    /// [`shared`]: MappedFile::shared
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        Arc::get_mut(&mut self.map).expect("bytes_mut on a shared mapping (a CommitLog segment)")
    }

    /// Lets [`MappedFile::shared`] hand out slices of the map (CommitLog
    /// segments, from their creation: the map is then written with
    /// [`MappedFile::write_at`] only).
    pub fn share(&mut self) {
        if self.shared.is_none() {
            self.shared = Some(Bytes::from_owner(SharedMap(self.map.clone())));
        }
    }

    /// `from..from + len` of the map as `Bytes` sharing the mapping (no
    /// copy, one reference count); `None` out of range or if not [`share`]d.
    ///
    /// [`share`]: MappedFile::share
    pub fn shared(&self, from: usize, len: usize) -> Option<Bytes> {
        let end = from.checked_add(len).filter(|&e| e <= self.map.len())?;
        Some(self.shared.as_ref()?.slice(from..end))
    }

    /// Writes `bytes` at `at` (file-relative) with `pwrite`, not through the
    /// mapping: the page cache is shared, so the mapping reads them back at
    /// once, and the pages' table entries stay read-only, so writeback of
    /// them needs no TLB shootdown and the next append takes no
    /// write-protect fault (see [`super::commit_log`], "Writes").
    pub fn write_at(&self, at: usize, bytes: &[u8]) -> Result<()> {
        use std::os::unix::fs::FileExt;
        let end = at.checked_add(bytes.len()).filter(|&e| e <= self.map.len());
        if end.is_none() {
            return Err(StoreError::Corrupt(format!(
                "write of {} bytes at {at} past the end of {}",
                bytes.len(),
                self.path.display()
            )));
        }
        self.file.write_all_at(bytes, at as u64)?;
        Ok(())
    }

    /// The mapping itself, for range-limited `msync` on the flusher thread
    /// (it keeps the mapping alive for as long as it holds it).
    pub fn map_handle(&self) -> Arc<MmapMut> {
        self.map.clone()
    }

    /// Writes zeros over `at..at + len` (file-relative) with `pwrite`, for
    /// [`super::commit_log`]'s zero-ahead: only ever past the write position.
    pub fn write_zeros(&self, at: usize, len: usize) -> Result<()> {
        static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(ZEROS.len());
            self.write_at(at + done, &ZEROS[..n])?;
            done += n;
        }
        Ok(())
    }

    /// A second handle on the file, for fsync on the flusher thread.
    pub fn try_clone_file(&self) -> Result<File> {
        Ok(self.file.try_clone()?)
    }

    /// Forces the whole file to disk on the calling thread.
    pub fn sync(&self) -> Result<()> {
        self.file.sync_data()?;
        Ok(())
    }

    /// Zeros `from..len` (file-relative). The whole pages are released with
    /// `fallocate(PUNCH_HOLE)` (constant time, reads back as zeros through
    /// the mapping too), so truncating a torn tail does not fault in the
    /// rest of a 1 GiB segment; where the file system cannot punch holes,
    /// only pages holding data are written.
    pub fn zero_from(&mut self, from: usize) {
        let len = self.map.len();
        let from = from.min(len);
        let page_end = from.div_ceil(4096) * 4096;
        if page_end < len && self.punch_hole(page_end, len - page_end) {
            self.zero(from, page_end);
            return;
        }
        self.zero_scan(from);
    }

    /// Zeros `from..to`: through the map when nothing shares it, else with
    /// `pwrite` (best effort, as the rest of truncation).
    fn zero(&mut self, from: usize, to: usize) {
        if from >= to {
            return;
        }
        if let Some(map) = Arc::get_mut(&mut self.map) {
            map[from..to].fill(0);
        } else {
            let _ = self.write_at(from, &vec![0; to - from]);
        }
    }

    #[cfg(target_os = "linux")]
    fn punch_hole(&self, offset: usize, len: usize) -> bool {
        use std::os::fd::AsRawFd;
        let (Ok(off), Ok(n)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
            return false;
        };
        // SAFETY: fallocate on an open descriptor we own; no memory is passed.
        let rc = unsafe {
            libc::fallocate(
                self.file.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                off,
                n,
            )
        };
        rc == 0
    }

    #[cfg(not(target_os = "linux"))]
    fn punch_hole(&self, _offset: usize, _len: usize) -> bool {
        false
    }

    fn zero_scan(&mut self, from: usize) {
        let len = self.map.len();
        let mut pos = from.min(len);
        while pos < len {
            let end = (((pos / 4096) + 1) * 4096).min(len);
            if self.map[pos..end].iter().any(|b| *b != 0) {
                self.zero(pos, end);
            }
            pos = end;
        }
    }

    /// Unmaps and deletes the file.
    pub fn delete(self) -> Result<()> {
        let path = self.path.clone();
        drop(self);
        std::fs::remove_file(path)?;
        Ok(())
    }
}
