//! The controller's raft log on disk, for openraft's [`RaftLogStorage`].
//!
//! `<data_dir>/raft/`:
//! * `log` — entries appended as records `[len u32 BE][crc32 u32 BE][entry as
//!   MessagePack]`, fsynced before openraft is told they are durable. On
//!   open the records are read back; a torn or corrupt tail (a crash during
//!   an append, before it was acknowledged) is cut off.
//! * `vote.json`, `meta.json` (committed and purged log ids) — replaced
//!   atomically ([`crate::persist`]).
//!
//! A conflict truncation cuts the file at the first removed record; a purge
//! (after a snapshot) rewrites the file with the entries kept. The log is
//! small — controller state changes are rare — so each call does its I/O
//! inline, on the controller's own runtime.

// openraft's traits fix the error type (`StorageError`, large); the
// helpers here return it as the trait methods must.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{Entry, LogId, LogState, RaftLogReader, StorageError, StorageIOError, Vote};
use serde::{Deserialize, Serialize};

use super::types::{NodeId, TypeConfig};
use crate::persist;

type StorageResult<T> = Result<T, StorageError<NodeId>>;

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Meta {
    committed: Option<LogId<NodeId>>,
    last_purged: Option<LogId<NodeId>>,
}

struct Inner {
    dir: PathBuf,
    file: File,
    /// index → (entry, offset of its record in `log`).
    entries: BTreeMap<u64, (Entry<TypeConfig>, u64)>,
    end: u64,
    vote: Option<Vote<NodeId>>,
    meta: Meta,
}

/// The raft log; clones share one file.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<Inner>>,
}

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

fn encode_record(entry: &Entry<TypeConfig>, buf: &mut Vec<u8>) -> io::Result<()> {
    let body = rmp_serde::to_vec_named(entry).map_err(io_err)?;
    let len = u32::try_from(body.len()).map_err(io_err)?;
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
    buf.extend_from_slice(&body);
    Ok(())
}

/// Reads every whole, valid record; returns them and the end of the last one.
fn read_records(bytes: &[u8]) -> (Vec<(Entry<TypeConfig>, u64)>, u64) {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while bytes.len() - pos >= 8 {
        let len = u32::from_be_bytes([bytes[pos], bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]])
            as usize;
        let crc = u32::from_be_bytes([
            bytes[pos + 4],
            bytes[pos + 5],
            bytes[pos + 6],
            bytes[pos + 7],
        ]);
        let Some(body) = bytes.get(pos + 8..pos + 8 + len) else {
            break;
        };
        if crc32fast::hash(body) != crc {
            break;
        }
        let Ok(entry) = rmp_serde::from_slice::<Entry<TypeConfig>>(body) else {
            break;
        };
        out.push((entry, pos as u64));
        pos += 8 + len;
    }
    (out, pos as u64)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl LogStore {
    /// Opens (or creates) the log in `dir`, cutting a torn tail.
    pub fn open(dir: &Path) -> io::Result<LogStore> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("log");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let (records, end) = read_records(&bytes);
        if end < bytes.len() as u64 {
            file.set_len(end)?;
            file.sync_all()?;
        }
        file.seek(SeekFrom::Start(end))?;
        sync_dir(dir)?;
        let vote = persist::read_json(&dir.join("vote.json"))?;
        let meta: Meta = persist::read_json(&dir.join("meta.json"))?.unwrap_or_default();
        let purged = meta.last_purged.map(|l| l.index);
        let entries = records
            .into_iter()
            .filter(|(e, _)| purged.is_none_or(|p| e.log_id.index > p))
            .map(|(e, off)| (e.log_id.index, (e, off)))
            .collect();
        Ok(LogStore {
            inner: Arc::new(Mutex::new(Inner {
                dir: dir.to_path_buf(),
                file,
                entries,
                end,
                vote,
                meta,
            })),
        })
    }

    fn lock(&self) -> StorageResult<std::sync::MutexGuard<'_, Inner>> {
        self.inner
            .lock()
            .map_err(|_| StorageIOError::read_logs(&io_err("log store lock poisoned")).into())
    }
}

impl Inner {
    fn save_meta(&self) -> io::Result<()> {
        persist::write_json(&self.dir.join("meta.json"), &self.meta)
    }

    fn append(&mut self, entries: Vec<Entry<TypeConfig>>) -> io::Result<()> {
        let mut buf = Vec::new();
        let mut offsets = Vec::with_capacity(entries.len());
        for e in &entries {
            offsets.push(self.end + buf.len() as u64);
            encode_record(e, &mut buf)?;
        }
        self.file.seek(SeekFrom::Start(self.end))?;
        self.file.write_all(&buf)?;
        self.file.sync_data()?;
        self.end += buf.len() as u64;
        for (e, off) in entries.into_iter().zip(offsets) {
            self.entries.insert(e.log_id.index, (e, off));
        }
        Ok(())
    }

    /// Removes entries at and after `index`.
    fn truncate(&mut self, index: u64) -> io::Result<()> {
        let removed = self.entries.split_off(&index);
        if let Some((_, off)) = removed.values().next() {
            self.file.set_len(*off)?;
            self.file.sync_all()?;
            self.end = *off;
        }
        Ok(())
    }

    /// Drops entries up to `log_id` and rewrites the file with the rest.
    fn purge(&mut self, log_id: LogId<NodeId>) -> io::Result<()> {
        self.meta.last_purged = Some(log_id);
        self.save_meta()?;
        self.entries = self.entries.split_off(&(log_id.index + 1));
        let mut buf = Vec::new();
        let mut kept = BTreeMap::new();
        for (idx, (e, _)) in std::mem::take(&mut self.entries) {
            let off = buf.len() as u64;
            encode_record(&e, &mut buf)?;
            kept.insert(idx, (e, off));
        }
        let path = self.dir.join("log");
        persist::write_atomic(&path, &buf)?;
        let mut file = OpenOptions::new().read(true).write(true).open(&path)?;
        file.seek(SeekFrom::End(0))?;
        self.file = file;
        self.end = buf.len() as u64;
        self.entries = kept;
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let g = self.lock()?;
        Ok(g.entries
            .range(range)
            .map(|(_, (e, _))| e.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let g = self.lock()?;
        let last_purged_log_id = g.meta.last_purged;
        let last_log_id = g
            .entries
            .values()
            .next_back()
            .map(|(e, _)| e.log_id)
            .or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StorageResult<()> {
        let mut g = self.lock()?;
        persist::write_json(&g.dir.join("vote.json"), vote)
            .map_err(|e| StorageIOError::write_vote(&e))?;
        g.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<NodeId>>> {
        Ok(self.lock()?.vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StorageResult<()> {
        let mut g = self.lock()?;
        g.meta.committed = committed;
        g.save_meta().map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<NodeId>>> {
        Ok(self.lock()?.meta.committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let res = self.lock()?.append(entries.into_iter().collect());
        match res {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let msg = e.to_string();
                callback.log_io_completed(Err(e));
                Err(StorageIOError::write_logs(&io_err(msg)).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        self.lock()?
            .truncate(log_id.index)
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        self.lock()?
            .purge(log_id)
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    fn indexes(s: &LogStore) -> Vec<u64> {
        s.inner.lock().unwrap().entries.keys().copied().collect()
    }

    #[test]
    fn reopen_keeps_entries_and_cuts_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let s = LogStore::open(dir.path()).unwrap();
        s.inner
            .lock()
            .unwrap()
            .append((1..=5).map(entry).collect())
            .unwrap();
        drop(s);
        // A crash in the middle of an append leaves half a record.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join("log"))
            .unwrap();
        f.write_all(&[0, 0, 0, 50, 1, 2, 3]).unwrap();
        drop(f);
        let s = LogStore::open(dir.path()).unwrap();
        assert_eq!(indexes(&s), vec![1, 2, 3, 4, 5]);
        s.inner.lock().unwrap().truncate(4).unwrap();
        s.inner.lock().unwrap().append(vec![entry(4)]).unwrap();
        drop(s);
        let s = LogStore::open(dir.path()).unwrap();
        assert_eq!(indexes(&s), vec![1, 2, 3, 4]);
        s.inner
            .lock()
            .unwrap()
            .purge(LogId::new(CommittedLeaderId::new(1, 1), 2))
            .unwrap();
        s.inner.lock().unwrap().append(vec![entry(5)]).unwrap();
        drop(s);
        let s = LogStore::open(dir.path()).unwrap();
        assert_eq!(indexes(&s), vec![3, 4, 5]);
    }
}
