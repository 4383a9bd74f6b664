//! The checkpoint file: where recovery may start after a crash.
//!
//! It records the CommitLog offset known to be on disk, the offset up to
//! which ConsumeQueue entries are known to be on disk (`cq_safe`), and a
//! clean-shutdown flag with, beside it, whether the store held no
//! ConsumeQueue at all (every topic deleted). It is tiny, carries its own CRC and is replaced
//! atomically (write a temp file, fsync, rename, fsync the directory), so a
//! crash leaves either the old or the new one.
//!
//! Layout (big-endian, 28 bytes): magic u32, version u16, clean u8, no
//! queues u8 (0 in files written before it existed, which read it as pad:
//! the two read each other's files), commitlog flushed u64, cq safe u64,
//! CRC32 of the preceding 24 bytes u32.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use super::error::{Result, StoreError};
use super::record::{be_u32, be_u64};

const MAGIC: u32 = 0x534B_4350; // "SKCP"
const VERSION: u16 = 1;
const LEN: usize = 28;

/// The content of the checkpoint file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Checkpoint {
    /// CommitLog bytes `..commit_log_flushed` were fsynced.
    pub commit_log_flushed: u64,
    /// ConsumeQueue entries of every record below this offset were fsynced.
    pub cq_safe: u64,
    /// The store was shut down cleanly and everything is consistent.
    pub clean: bool,
    /// No ConsumeQueue existed when this checkpoint was written (every
    /// topic was deleted). With `clean`, an empty `consumequeue` directory
    /// at the next open is what the checkpoint describes, not a lost one
    /// to rebuild from the log. False when unknown (older files).
    pub no_queues: bool,
}

impl Checkpoint {
    fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0..4].copy_from_slice(&MAGIC.to_be_bytes());
        b[4..6].copy_from_slice(&VERSION.to_be_bytes());
        b[6] = u8::from(self.clean);
        b[7] = u8::from(self.no_queues);
        b[8..16].copy_from_slice(&self.commit_log_flushed.to_be_bytes());
        b[16..24].copy_from_slice(&self.cq_safe.to_be_bytes());
        let crc = crc32fast::hash(&b[..24]);
        b[24..28].copy_from_slice(&crc.to_be_bytes());
        b
    }

    fn decode(b: &[u8]) -> Result<Checkpoint> {
        if b.len() != LEN || be_u32(b, 0) != MAGIC || crc32fast::hash(&b[..24]) != be_u32(b, 24) {
            return Err(StoreError::Corrupt("checkpoint file is damaged".into()));
        }
        Ok(Checkpoint {
            clean: b[6] == 1,
            no_queues: b[7] == 1,
            commit_log_flushed: be_u64(b, 8),
            cq_safe: be_u64(b, 16),
        })
    }

    /// Reads the checkpoint; `Ok(None)` when there is none yet.
    pub fn load(path: &Path) -> Result<Option<Checkpoint>> {
        match std::fs::read(path) {
            Ok(b) => Checkpoint::decode(&b).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces the checkpoint file atomically and durably.
    pub fn store(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("tmp");
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            f.write_all(&self.encode())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint");
        assert_eq!(Checkpoint::load(&path).unwrap(), None);
        let cp = Checkpoint {
            commit_log_flushed: 12345,
            cq_safe: 999,
            clean: true,
            no_queues: false,
        };
        cp.store(&path).unwrap();
        assert_eq!(Checkpoint::load(&path).unwrap(), Some(cp));
        let empty = Checkpoint {
            no_queues: true,
            ..cp
        };
        empty.store(&path).unwrap();
        assert_eq!(Checkpoint::load(&path).unwrap(), Some(empty));
        let mut b = std::fs::read(&path).unwrap();
        b[10] ^= 1;
        std::fs::write(&path, b).unwrap();
        assert!(Checkpoint::load(&path).is_err());
    }
}
