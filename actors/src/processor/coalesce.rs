//! Coalescing sends: the sends that one connection thread decodes in one
//! turn of its event loop go to Storage as one [`PutGroups`].
//!
//! A producer keeps many one-message requests in flight; each used to be
//! its own actor message to Storage, its own reply and its own wake-up of
//! two threads. Here the first send of a turn opens a pending batch on this
//! thread and spawns its flush; the flush first yields once, so that every
//! other frame already read on this thread (from this connection or
//! another one served by the same arbiter) joins the batch, then sends the
//! whole batch to Storage and hands each send its own result. Nothing
//! waits on a timer: with one request in flight the batch has one send
//! and leaves at once.
//!
//! Under sync flush, Storage answers with the flusher's receiver and the
//! fsync is awaited here, on the connection thread, so the Storage actor
//! goes on appending the next batch meanwhile (group commit): every send
//! of a batch is answered only once an fsync covers it.

use std::cell::RefCell;
use std::time::Duration;

use actix::Addr;
use skylark_codec::{ErrorCode, WireError};
use tokio::sync::oneshot;

use crate::message_store::{AppendBatchResult, StoreError};
use crate::storage::{PutGroups, Storage, StoredMessage};

type Reply = oneshot::Sender<Result<AppendBatchResult, WireError>>;

/// The sends of this thread waiting for their batch to leave.
struct Pending {
    storage: Addr<Storage>,
    messages: Vec<StoredMessage>,
    ends: Vec<usize>,
    replies: Vec<Reply>,
}

thread_local! {
    /// One pending batch per Storage actor (several brokers may share a
    /// thread in tests and embedded setups).
    static PENDING: RefCell<Vec<Pending>> = const { RefCell::new(Vec::new()) };
}

/// Appends `messages` (one send) through `storage` in this thread's next
/// batch; `sync_timeout` bounds the wait for the fsync under sync flush
/// (past it the answer says `flush_timed_out`, the data being stored).
pub async fn put(
    storage: &Addr<Storage>,
    messages: Vec<StoredMessage>,
    sync_timeout: Duration,
) -> Result<AppendBatchResult, WireError> {
    let (tx, rx) = oneshot::channel();
    let first = PENDING.with(|p| {
        let mut p = p.borrow_mut();
        let slot = match p.iter_mut().position(|b| b.storage == *storage) {
            Some(i) => &mut p[i],
            None => {
                p.push(Pending {
                    storage: storage.clone(),
                    messages: Vec::new(),
                    ends: Vec::new(),
                    replies: Vec::new(),
                });
                p.last_mut().expect("just pushed")
            }
        };
        let first = slot.replies.is_empty();
        slot.messages.extend(messages);
        slot.ends.push(slot.messages.len());
        slot.replies.push(tx);
        first
    });
    if first {
        let storage = storage.clone();
        actix_rt::spawn(async move {
            // Let the other frames of this turn join the batch.
            tokio::task::yield_now().await;
            flush(storage, sync_timeout).await;
        });
    }
    rx.await.unwrap_or_else(|_| {
        Err(WireError::new(
            ErrorCode::ServiceNotAvailable,
            "storage dropped the send",
        ))
    })
}

fn take(storage: &Addr<Storage>) -> Option<Pending> {
    PENDING.with(|p| {
        let mut p = p.borrow_mut();
        let i = p.iter().position(|b| b.storage == *storage)?;
        Some(p.swap_remove(i))
    })
}

async fn flush(storage: Addr<Storage>, sync_timeout: Duration) {
    let Some(batch) = take(&storage) else { return };
    let Pending {
        messages,
        ends,
        replies,
        ..
    } = batch;
    let answer = match storage.send(PutGroups { messages, ends }).await {
        Ok(a) => a,
        Err(e) => {
            let e = crate::mailbox_error(e);
            for r in replies {
                let _ = r.send(Err(e.clone()));
            }
            return;
        }
    };
    let mut flush_failed: Option<StoreError> = None;
    let mut timed_out = false;
    if let Some(flushed) = answer.flushed {
        match tokio::time::timeout(sync_timeout, flushed).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => flush_failed = Some(e),
            Ok(Err(_)) => flush_failed = Some(StoreError::FlushFailed("flusher stopped".into())),
            Err(_) => timed_out = true,
        }
    }
    for (res, reply) in answer.groups.into_iter().zip(replies) {
        let out = match (res, &flush_failed) {
            (Err(e), _) => Err(crate::store_error(e)),
            (Ok(_), Some(e)) => Err(crate::store_error(e.clone())),
            (Ok(mut r), None) => {
                r.flush_timed_out = timed_out;
                Ok(r)
            }
        };
        let _ = reply.send(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message_store::{FlushMode, StoreConfig};
    use crate::storage::{test_message, GetStorageStats, Shutdown};
    use actix::Arbiter;
    use slog::{o, Logger};

    async fn storage(mode: FlushMode) -> (tempfile::TempDir, Arbiter, Addr<Storage>) {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig {
            segment_size: 1 << 20,
            flush_mode: mode,
            index_slots: 16,
            index_entries: 256,
            ..StoreConfig::new(dir.path())
        };
        let arbiter = Arbiter::new();
        let log = Logger::root(slog::Discard, o!());
        let addr = Storage::start_on(&arbiter.handle(), config, log)
            .await
            .unwrap();
        (dir, arbiter, addr)
    }

    async fn one_batch_for_sends_of_one_turn(mode: FlushMode) {
        let (_dir, arbiter, storage) = storage(mode).await;
        // Ten sends started in one turn of this thread, the sixth invalid.
        let sends = (0..10u32).map(|i| {
            let mut m = test_message("T", i % 2, b"body");
            if i == 5 {
                m.properties = vec![("bad\u{1}name".into(), "v".into())];
            }
            put(&storage, vec![m], Duration::from_secs(5))
        });
        let results = futures::future::join_all(sends).await;
        let stats = storage.send(GetStorageStats).await.unwrap();
        assert_eq!(stats.put_batches, 1, "one PutGroups for the whole turn");
        let mut next = [0u64; 2];
        for (i, r) in results.into_iter().enumerate() {
            if i == 5 {
                let e = r.expect_err("the invalid send fails");
                assert_eq!(e.code, ErrorCode::BadRequest);
                continue;
            }
            let r = r.expect("the others are stored");
            assert_eq!(r.results.len(), 1);
            let q = i % 2;
            assert_eq!(r.results[0].queue_offset, next[q], "per-queue order kept");
            next[q] += 1;
            assert!(!r.flush_timed_out);
            if mode == FlushMode::Sync {
                // Answered only once an fsync covered it.
                assert!(stats.flushed_offset >= r.end_offset);
            }
        }
        // A second turn is a second batch.
        put(
            &storage,
            vec![test_message("T", 0, b"x")],
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(storage.send(GetStorageStats).await.unwrap().put_batches, 2);
        storage.send(Shutdown).await.unwrap().unwrap();
        arbiter.stop();
    }

    #[actix_rt::test]
    async fn sends_of_one_turn_share_one_storage_batch_async_flush() {
        one_batch_for_sends_of_one_turn(FlushMode::Async).await;
    }

    #[actix_rt::test]
    async fn sends_of_one_turn_share_one_storage_batch_sync_flush() {
        one_batch_for_sends_of_one_turn(FlushMode::Sync).await;
    }
}
