//! The controller's state machine for openraft's [`RaftStateMachine`]: the
//! [`ControllerState`] in memory, its snapshot in `<data_dir>/raft/snapshot.json`
//! (replaced atomically, fsynced).
//!
//! The state is rebuilt on start from the snapshot and the log entries after
//! it (openraft re-applies them up to the persisted committed index), so only
//! snapshots are written here; applying an entry touches no disk.

// openraft's traits fix the error type (`StorageError`, large); the
// helpers here return it as the trait methods must.
#![allow(clippy::result_large_err)]

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use openraft::storage::RaftStateMachine;
use openraft::{
    Entry, EntryPayload, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};

use super::types::{CommandResult, ControllerState, NodeId, TypeConfig};
use crate::persist;

type StorageResult<T> = Result<T, StorageError<NodeId>>;
type Meta = SnapshotMeta<NodeId, openraft::BasicNode>;

/// What the state machine holds.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Applied {
    pub last_applied: Option<LogId<NodeId>>,
    pub last_membership: StoredMembership<NodeId, openraft::BasicNode>,
    pub state: ControllerState,
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: Meta,
    data: Applied,
}

/// Read access to the applied state, for the controller's request handlers.
pub type SharedState = Arc<RwLock<Applied>>;

/// The state machine; clones share the state.
#[derive(Clone)]
pub struct StateMachine {
    path: PathBuf,
    applied: SharedState,
    snapshot_seq: Arc<std::sync::atomic::AtomicU64>,
}

fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl StateMachine {
    /// Opens the state machine in `dir`, starting from its last snapshot.
    pub fn open(dir: &Path) -> std::io::Result<StateMachine> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("snapshot.json");
        let snap: Option<StoredSnapshot> = persist::read_json(&path)?;
        let applied = snap.map(|s| s.data).unwrap_or_default();
        Ok(StateMachine {
            path,
            applied: Arc::new(RwLock::new(applied)),
            snapshot_seq: Arc::default(),
        })
    }

    /// The applied state, shared.
    pub fn shared(&self) -> SharedState {
        self.applied.clone()
    }

    fn read(&self) -> StorageResult<Applied> {
        self.applied
            .read()
            .map(|a| a.clone())
            .map_err(|_| StorageIOError::read_state_machine(&io_err("state lock poisoned")).into())
    }

    fn stored(&self) -> StorageResult<Option<StoredSnapshot>> {
        persist::read_json(&self.path).map_err(|e| StorageIOError::read_state_machine(&e).into())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let data = self.read()?;
        let seq = self
            .snapshot_seq
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let snapshot_id = match data.last_applied {
            Some(l) => format!("{}-{}-{seq}", l.leader_id, l.index),
            None => format!("none-{seq}"),
        };
        let meta = Meta {
            last_log_id: data.last_applied,
            last_membership: data.last_membership.clone(),
            snapshot_id,
        };
        let bytes = serde_json::to_vec(&data)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &io_err(e)))?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        persist::write_json(&self.path, &stored)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> StorageResult<(
        Option<LogId<NodeId>>,
        StoredMembership<NodeId, openraft::BasicNode>,
    )> {
        let a = self.read()?;
        Ok((a.last_applied, a.last_membership))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<CommandResult>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut a = self.applied.write().map_err(|_| {
            StorageError::from(StorageIOError::write_state_machine(&io_err(
                "state lock poisoned",
            )))
        })?;
        let mut out = Vec::new();
        for e in entries {
            a.last_applied = Some(e.log_id);
            match e.payload {
                EntryPayload::Blank => out.push(CommandResult::None),
                EntryPayload::Normal(cmd) => out.push(a.state.apply(&cmd)),
                EntryPayload::Membership(m) => {
                    a.last_membership = StoredMembership::new(Some(e.log_id), m);
                    out.push(CommandResult::None);
                }
            }
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let data: Applied = serde_json::from_slice(snapshot.get_ref())
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &io_err(e)))?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        };
        persist::write_json(&self.path, &stored)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        let mut a = self.applied.write().map_err(|_| {
            StorageError::from(StorageIOError::write_state_machine(&io_err(
                "state lock poisoned",
            )))
        })?;
        *a = data;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let Some(s) = self.stored()? else {
            return Ok(None);
        };
        let bytes = serde_json::to_vec(&s.data)
            .map_err(|e| StorageIOError::read_snapshot(Some(s.meta.signature()), &io_err(e)))?;
        Ok(Some(Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }
}
