//! The replay cache: signed requests already seen inside the timestamp
//! window, so the same signed frame sent again (a captured request
//! replayed) is refused while its timestamp would still pass.
//!
//! Keyed by (timestamp, first 16 bytes of the signature): a replay repeats
//! both; honest requests never do, because each carries a fresh nonce under
//! its signature (`codec/src/auth.rs`). Entries older than the window are
//! dropped (the window check refuses those anyway).
//!
//! Bounded: at most `replay_cache_entries` (ACL file) entries in all. When
//! more signed requests arrive within one window than that, the oldest
//! entries go and the shard remembers the newest timestamp it dropped (its
//! *floor*): a request stamped at or before the floor is refused too, since
//! the cache can no longer tell whether it is a replay. The window thus
//! narrows under a flood instead of letting replays through; the error
//! says so.
//!
//! The cache starts empty with its process, so a request signed before
//! that cannot be told from a replay of one the previous process took
//! (a restart inside the window): the cache refuses every request stamped
//! before it started ([`Refusal::BeforeStart`]). The window's lower bound
//! is thus max(now − window, start). A client whose clock lags the
//! server's is refused for that lag after a restart; its retry signs anew.
//!
//! Sharded by signature byte (16 mutexes) so connection threads checking
//! at once rarely meet on one lock. Plain Rust, unit-tested as is.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use skylark_codec::auth::SIGNATURE_LEN;

const SHARDS: usize = 16;
/// Bytes of the signature kept per entry (128 bits: collisions between
/// honest requests are out of reach).
const KEY_LEN: usize = 16;

/// Default bound of the cache (entries, all shards together).
pub const DEFAULT_ENTRIES: usize = 500_000;

/// Why the cache refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// This signature was already seen within the window.
    Replayed,
    /// The cache had to drop entries this old: it cannot tell.
    BeyondReach {
        /// The newest timestamp dropped (ms).
        floor_ms: u64,
    },
    /// Stamped before this cache (its process) started: a request the
    /// previous process may have taken.
    BeforeStart {
        /// When the cache started (ms since the epoch).
        started_ms: u64,
    },
}

#[derive(Default)]
struct Shard {
    seen: BTreeSet<(u64, [u8; KEY_LEN])>,
    /// Newest timestamp dropped for room, if any.
    floor: Option<u64>,
}

/// Signed requests seen in the window (see the module doc).
pub struct ReplayCache {
    shards: Vec<Mutex<Shard>>,
    per_shard: AtomicUsize,
    /// When this cache started (ms since the epoch): nothing signed
    /// before is accepted.
    started_ms: u64,
}

impl std::fmt::Debug for ReplayCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReplayCache({} entries)", self.len())
    }
}

impl ReplayCache {
    /// A cache holding at most about `entries` signatures, started now.
    pub fn new(entries: usize) -> ReplayCache {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        ReplayCache::started_at(entries, now)
    }

    /// A cache that refuses requests stamped before `started_ms`.
    pub fn started_at(entries: usize, started_ms: u64) -> ReplayCache {
        let c = ReplayCache {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            per_shard: AtomicUsize::new(1),
            started_ms,
        };
        c.set_capacity(entries);
        c
    }

    /// Changes the bound (a reloaded ACL file); shrinking takes effect as
    /// requests arrive.
    pub fn set_capacity(&self, entries: usize) {
        self.per_shard
            .store(entries.div_ceil(SHARDS).max(1), Ordering::Relaxed);
    }

    /// Records a verified request signed at `ts_ms`; refuses one already
    /// recorded, or one older than what the cache still covers. `now_ms`
    /// and `window_ms` drop entries the window check refuses anyway.
    pub fn check_and_record(
        &self,
        ts_ms: u64,
        signature: &[u8; SIGNATURE_LEN],
        now_ms: u64,
        window_ms: u64,
    ) -> Result<(), Refusal> {
        if ts_ms < self.started_ms {
            return Err(Refusal::BeforeStart {
                started_ms: self.started_ms,
            });
        }
        let mut key = [0u8; KEY_LEN];
        key.copy_from_slice(&signature[..KEY_LEN]);
        let shard = &self.shards[usize::from(signature[KEY_LEN]) % SHARDS];
        let mut s = match shard.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let expired_before = now_ms.saturating_sub(window_ms);
        while s.seen.first().is_some_and(|(t, _)| *t < expired_before) {
            s.seen.pop_first();
        }
        if let Some(floor) = s.floor {
            if ts_ms <= floor {
                return Err(Refusal::BeyondReach { floor_ms: floor });
            }
        }
        if !s.seen.insert((ts_ms, key)) {
            return Err(Refusal::Replayed);
        }
        let cap = self.per_shard.load(Ordering::Relaxed);
        while s.seen.len() > cap {
            if let Some((t, _)) = s.seen.pop_first() {
                s.floor = Some(s.floor.map_or(t, |f| f.max(t)));
            }
        }
        Ok(())
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| match s.lock() {
                Ok(g) => g.seen.len(),
                Err(p) => p.into_inner().seen.len(),
            })
            .sum()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(i: u32) -> [u8; SIGNATURE_LEN] {
        let mut s = [0u8; SIGNATURE_LEN];
        s[..4].copy_from_slice(&i.to_be_bytes());
        // all in one shard, so the bound below is exact
        s[KEY_LEN] = 0;
        s
    }

    #[test]
    fn replay_is_refused_and_expiry_forgets() {
        let c = ReplayCache::started_at(1000, 0);
        c.check_and_record(1_000, &sig(1), 1_000, 60_000).unwrap();
        assert_eq!(
            c.check_and_record(1_000, &sig(1), 2_000, 60_000),
            Err(Refusal::Replayed)
        );
        c.check_and_record(1_000, &sig(2), 2_000, 60_000).unwrap();
        // Past the window the entries go (the window check refuses those).
        c.check_and_record(100_000, &sig(3), 100_000, 60_000)
            .unwrap();
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn a_request_signed_before_the_cache_started_is_refused() {
        // A restarted server: the window still covers ts 9_000, but the
        // cache that saw it is gone.
        let c = ReplayCache::started_at(1000, 10_000);
        assert_eq!(
            c.check_and_record(9_000, &sig(1), 10_500, 60_000),
            Err(Refusal::BeforeStart { started_ms: 10_000 })
        );
        c.check_and_record(10_000, &sig(1), 10_500, 60_000).unwrap();
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn a_full_cache_refuses_what_it_dropped_not_newer_requests() {
        let c = ReplayCache::started_at(SHARDS * 3, 0);
        for i in 0..3 {
            c.check_and_record(10 + u64::from(i), &sig(i), 20, 60_000)
                .unwrap();
        }
        // A fourth pushes out the oldest (ts 10): the floor becomes 10.
        c.check_and_record(20, &sig(9), 20, 60_000).unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(
            c.check_and_record(10, &sig(0), 21, 60_000),
            Err(Refusal::BeyondReach { floor_ms: 10 })
        );
        assert_eq!(
            c.check_and_record(10, &sig(77), 21, 60_000),
            Err(Refusal::BeyondReach { floor_ms: 10 })
        );
        c.check_and_record(21, &sig(78), 21, 60_000).unwrap();
        assert_eq!(
            c.check_and_record(11, &sig(1), 21, 60_000),
            Err(Refusal::BeyondReach { floor_ms: 11 })
        );
    }
}
