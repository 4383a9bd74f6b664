//! Offsets of a broadcasting consumer, kept in a local file per client
//! instance (RocketMQ's `LocalFileOffsetStore`): every member of a
//! broadcasting group reads every message, so the broker keeps no offsets
//! for it. The file is JSON, `"topic@broker_name@queue_id": offset`,
//! replaced atomically (temp file, fsync, rename) on each persist.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use skylark_codec::persist;

use super::route::MessageQueue;

/// The default file: `$HOME/.skylark_offsets/<instance>/<group>/offsets.json`.
pub fn default_path(instance: &str, group: &str) -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    home.join(".skylark_offsets")
        .join(instance)
        .join(group)
        .join("offsets.json")
}

fn key(q: &MessageQueue) -> String {
    format!("{}@{}@{}", q.topic, q.broker_name, q.queue_id)
}

/// A local offset table backed by one file.
#[derive(Debug)]
pub struct LocalOffsetStore {
    path: PathBuf,
    table: Mutex<BTreeMap<String, u64>>,
    /// Why the last [`persist`](Self::persist) failed (`None`: it worked).
    failure: Mutex<Option<String>>,
}

impl LocalOffsetStore {
    /// Loads `path` (an absent file is an empty table) and writes it back
    /// at once, so a file that cannot be written is an error now, not a
    /// silent loss of every offset later.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        if path.is_dir() {
            return Err(std::io::Error::other("it is a directory"));
        }
        let table = persist::read_json(path)
            .map_err(|e| match e.kind() {
                // Not JSON: the file is there, it is its content that is wrong.
                std::io::ErrorKind::InvalidData => std::io::Error::new(
                    e.kind(),
                    format!("it cannot be read as an offsets file ({e}); move it aside or give another --offset-file"),
                ),
                _ => e,
            })?
            .unwrap_or_default();
        let store = LocalOffsetStore {
            path: path.to_path_buf(),
            table: Mutex::new(table),
            failure: Mutex::new(None),
        };
        store.persist()?;
        Ok(store)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Why the last write of the file failed; `None` when it succeeded.
    /// The consumer writes it in the background and on shutdown: ask after
    /// [`PushConsumer::shutdown`](super::PushConsumer::shutdown) whether
    /// the offsets were saved.
    pub fn last_failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn table(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, u64>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The stored offset of `q`.
    pub fn get(&self, q: &MessageQueue) -> Option<u64> {
        self.table().get(&key(q)).copied()
    }

    /// Updates `q`'s offset in memory.
    pub fn set(&self, q: &MessageQueue, offset: u64) {
        self.table().insert(key(q), offset);
    }

    /// Writes the table to its file, atomically (blocking I/O: call it off
    /// the async threads).
    pub fn persist(&self) -> std::io::Result<()> {
        let snapshot = self.table().clone();
        let written = persist::write_json(&self.path, &snapshot);
        *self.failure.lock().unwrap_or_else(|e| e.into_inner()) =
            written.as_ref().err().map(ToString::to_string);
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b/offsets.json");
        let q = MessageQueue {
            topic: "T".into(),
            broker_name: "b".into(),
            broker_addr: "x".into(),
            queue_id: 3,
        };
        let s = LocalOffsetStore::open(&p).unwrap();
        assert_eq!(s.get(&q), None);
        s.set(&q, 42);
        s.persist().unwrap();
        let s = LocalOffsetStore::open(&p).unwrap();
        assert_eq!(s.get(&q), Some(42));
        assert!(default_path("DEFAULT", "g").ends_with("DEFAULT/g/offsets.json"));
    }
}
