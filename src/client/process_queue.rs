//! [`ProcessQueue`]: a push consumer's local view of one assigned queue —
//! the messages pulled but not yet consumed, and the offset that is safe to
//! commit (RocketMQ's `ProcessQueue`).
//!
//! At-least-once rests on [`ProcessQueue::commit_offset`]: it is the
//! smallest offset still in flight, or, when nothing is, the offset after
//! the last pull. So a committed offset never passes a message whose
//! listener has not returned success. The cache counters drive flow
//! control: the puller stops while the queue holds too many messages or
//! bytes.
//!
//! Handing a queue to another member without duplicates rests on
//! [`ProcessQueue::begin_consume`] and [`ProcessQueue::drop_queue`]: both
//! take the state lock, so once `drop_queue` returns no new listener call
//! starts on the queue, and [`ProcessQueue::is_busy`] turning false means
//! the running ones have finished and recorded their result — the safe
//! offset is then final and can be committed before the queue is released.
//!
//! One owner for all of it: every field, the flags included, sits behind the
//! one state lock, and each change the puller may be waiting for (a message
//! consumed, the lease taken or lost, the queue dropped) wakes it through
//! [`ProcessQueue::wait_change`] instead of the puller polling.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::Notify;

use super::message::ReceivedMessage;

#[derive(Debug, Default)]
struct State {
    /// Offset → body size of every pulled, unfinished message.
    inflight: BTreeMap<u64, usize>,
    bytes: usize,
    /// Offset to pull next.
    next_pull: u64,
    /// Pulling pauses until then (a listener asked to suspend).
    suspend_until: Option<Instant>,
    /// The last offset committed (or read at assignment).
    committed: Option<u64>,
    /// Listener calls running on this queue's messages.
    running: usize,
    /// Stopped: no listener call starts on it any more.
    dropped: bool,
    /// An orderly consumer holds the broker lock of this queue.
    locked: bool,
    /// The queue was dropped by an offset reset: its progress must not be
    /// committed.
    discard: bool,
}

/// One assigned queue's cache and progress; shared by its puller and the
/// listener calls running on its batches.
#[derive(Debug, Default)]
pub struct ProcessQueue {
    state: Mutex<State>,
    /// Wakes the puller (one per queue) when the state changed in a way it
    /// may be waiting for; a wake-up with nobody waiting is kept for the
    /// next wait, so none is lost between its check and its wait.
    changed: Notify,
    /// Wakes whoever waits for the running listener calls to finish
    /// ([`ProcessQueue::wait_idle`]) when the last one ends.
    idle: Notify,
}

/// A listener call in progress on a queue (from
/// [`ProcessQueue::begin_consume`]); dropping it ends the call. Drop it only
/// after the call's result is recorded ([`ProcessQueue::remove`]).
#[derive(Debug)]
pub struct ConsumeGuard(Arc<ProcessQueue>);

impl Drop for ConsumeGuard {
    fn drop(&mut self) {
        let idle = {
            let mut s = self.0.lock();
            s.running = s.running.saturating_sub(1);
            s.running == 0
        };
        if idle {
            self.0.idle.notify_waiters();
        }
    }
}

impl ProcessQueue {
    /// A queue whose consumption starts at `offset`.
    pub fn new(offset: u64, committed: Option<u64>) -> Self {
        let pq = ProcessQueue::default();
        {
            let mut s = pq.lock();
            s.next_pull = offset;
            s.committed = committed;
        }
        pq
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the counters torn
        // mid-update in a way that matters more than losing the process.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds pulled messages and the offset to pull next.
    pub fn put(&self, msgs: &[ReceivedMessage], next_pull: u64) {
        let mut s = self.lock();
        for m in msgs {
            if s.inflight.insert(m.queue_offset, m.body.len()).is_none() {
                s.bytes += m.body.len();
            }
        }
        s.next_pull = next_pull;
    }

    /// Removes consumed messages (the cache shrank: wakes the puller).
    pub fn remove(&self, offsets: impl IntoIterator<Item = u64>) {
        {
            let mut s = self.lock();
            for o in offsets {
                if let Some(n) = s.inflight.remove(&o) {
                    s.bytes -= n;
                }
            }
        }
        self.changed.notify_one();
    }

    /// Waits until the queue changes (a message consumed, the lease taken or
    /// lost, the queue dropped) or, when given, `deadline` passes. The
    /// caller checks again what it was waiting for.
    pub async fn wait_change(&self, deadline: Option<Instant>) {
        match deadline {
            None => self.changed.notified().await,
            Some(d) => {
                tokio::select! {
                    _ = self.changed.notified() => {}
                    _ = tokio::time::sleep_until(d.into()) => {}
                }
            }
        }
    }

    /// Sets the offset to pull next (nothing new, filtered, or corrected).
    pub fn set_next_pull(&self, offset: u64) {
        self.lock().next_pull = offset;
    }

    /// The offset to pull next.
    pub fn next_pull(&self) -> u64 {
        self.lock().next_pull
    }

    /// Unfinished messages and their bytes.
    pub fn cached(&self) -> (usize, usize) {
        let s = self.lock();
        (s.inflight.len(), s.bytes)
    }

    /// The offset that is safe to commit.
    pub fn commit_offset(&self) -> u64 {
        let s = self.lock();
        s.inflight.keys().next().copied().unwrap_or(s.next_pull)
    }

    /// The offset to commit if it moved since the last commit.
    pub fn offset_to_commit(&self) -> Option<u64> {
        let s = self.lock();
        let o = s.inflight.keys().next().copied().unwrap_or(s.next_pull);
        (s.committed != Some(o)).then_some(o)
    }

    /// Records a successful commit.
    pub fn committed(&self, offset: u64) {
        self.lock().committed = Some(offset);
    }

    /// Pauses pulling until `until`.
    pub fn suspend(&self, until: Instant) {
        let mut s = self.lock();
        s.suspend_until = Some(s.suspend_until.map_or(until, |u| u.max(until)));
    }

    /// Until when pulling is paused, if it is.
    pub fn suspended_until(&self, now: Instant) -> Option<Instant> {
        self.lock().suspend_until.filter(|u| *u > now)
    }

    /// Stops the queue: no listener call starts on it after this returns.
    pub fn drop_queue(&self) {
        self.lock().dropped = true;
        self.changed.notify_one();
    }

    /// Starts a listener call on this queue's messages, unless the queue
    /// was dropped (its next owner delivers them).
    pub fn begin_consume(self: &Arc<Self>) -> Option<ConsumeGuard> {
        let mut s = self.lock();
        if s.dropped {
            return None;
        }
        s.running += 1;
        Some(ConsumeGuard(self.clone()))
    }

    /// Waits until no listener call runs on this queue's messages, or
    /// `deadline` passes; true if none runs.
    pub async fn wait_idle(&self, deadline: Instant) -> bool {
        loop {
            // Registered before the check, so the last call's end is not
            // missed between the two.
            let ended = self.idle.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if !self.is_busy() {
                return true;
            }
            tokio::select! {
                _ = ended => {}
                _ = tokio::time::sleep_until(deadline.into()) => return !self.is_busy(),
            }
        }
    }

    /// True while a listener call runs on this queue's messages.
    pub fn is_busy(&self) -> bool {
        self.lock().running > 0
    }

    pub fn is_dropped(&self) -> bool {
        self.lock().dropped
    }

    /// An orderly consumer took (`true`) or lost the queue's broker lock;
    /// a change wakes the puller.
    pub fn set_locked(&self, locked: bool) {
        let was = std::mem::replace(&mut self.lock().locked, locked);
        if was != locked {
            self.changed.notify_one();
        }
    }

    pub fn is_locked(&self) -> bool {
        self.lock().locked
    }

    pub fn set_discard(&self) {
        self.lock().discard = true;
    }

    pub fn is_discarded(&self) -> bool {
        self.lock().discard
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn msg(offset: u64, size: usize) -> ReceivedMessage {
        ReceivedMessage {
            topic: "T".into(),
            queue_id: 0,
            queue_offset: offset,
            physical_offset: 0,
            msg_id: String::new(),
            tags: None,
            keys: None,
            properties: Vec::new(),
            body: Bytes::from(vec![0u8; size]),
            born_timestamp: 0,
            store_timestamp: 0,
            store_host: "127.0.0.1:1".parse().unwrap(),
            reconsume_times: 0,
            flag: 0,
        }
    }

    #[test]
    fn commit_offset_never_passes_an_unfinished_message() {
        let pq = ProcessQueue::new(10, None);
        assert_eq!(pq.commit_offset(), 10);
        pq.put(&[msg(10, 5), msg(11, 5), msg(12, 5)], 13);
        assert_eq!(pq.cached(), (3, 15));
        assert_eq!(pq.commit_offset(), 10);
        // 11 and 12 finish first: 10 is still running.
        pq.remove([11, 12]);
        assert_eq!(pq.commit_offset(), 10);
        pq.remove([10]);
        assert_eq!(pq.commit_offset(), 13);
        assert_eq!(pq.cached(), (0, 0));
        assert_eq!(pq.offset_to_commit(), Some(13));
        pq.committed(13);
        assert_eq!(pq.offset_to_commit(), None);
        // Nothing matched the filter up to 20.
        pq.set_next_pull(20);
        assert_eq!(pq.offset_to_commit(), Some(20));
    }

    #[test]
    fn suspend_and_flags() {
        let pq = ProcessQueue::new(0, Some(0));
        let now = Instant::now();
        assert_eq!(pq.suspended_until(now), None);
        let later = now + std::time::Duration::from_secs(1);
        pq.suspend(later);
        assert_eq!(pq.suspended_until(now), Some(later));
        assert_eq!(pq.suspended_until(later), None);
        assert!(!pq.is_dropped());
        pq.drop_queue();
        assert!(pq.is_dropped());
    }

    #[test]
    fn no_listener_call_starts_after_a_drop_and_running_ones_are_tracked() {
        let pq = Arc::new(ProcessQueue::new(0, None));
        pq.put(&[msg(0, 1), msg(1, 1)], 2);
        let g = pq.begin_consume().expect("not dropped yet");
        assert!(pq.is_busy());
        pq.drop_queue();
        assert!(pq.begin_consume().is_none());
        // The running call finishes and records its result: only then is
        // the safe offset final.
        pq.remove([0]);
        drop(g);
        assert!(!pq.is_busy());
        assert_eq!(pq.commit_offset(), 1);
    }

    #[tokio::test]
    async fn the_puller_wakes_on_a_change_not_on_a_poll() {
        use std::time::Duration;
        let pq = Arc::new(ProcessQueue::new(0, None));
        pq.put(&[msg(0, 1)], 1);
        // A deadline ends a wait without a change.
        let t = Instant::now();
        pq.wait_change(Some(t + Duration::from_millis(30))).await;
        assert!(t.elapsed() >= Duration::from_millis(30));
        // A consumed message wakes a waiter at once.
        let waiter = tokio::spawn({
            let pq = pq.clone();
            async move { pq.wait_change(None).await }
        });
        tokio::task::yield_now().await;
        pq.remove([0]);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken by remove")
            .unwrap();
        // A change while nobody waits is kept for the next wait; so are
        // taking the lease and the drop.
        pq.set_locked(true);
        tokio::time::timeout(Duration::from_secs(5), pq.wait_change(None))
            .await
            .expect("woken by the lease");
        assert!(pq.is_locked());
        pq.drop_queue();
        tokio::time::timeout(Duration::from_secs(5), pq.wait_change(None))
            .await
            .expect("woken by the drop");
        assert!(pq.is_dropped());
        // Nothing changed since: the wait runs to its deadline.
        let t = Instant::now();
        pq.wait_change(Some(t + Duration::from_millis(30))).await;
        assert!(t.elapsed() >= Duration::from_millis(30));
    }

    #[tokio::test]
    async fn a_release_waits_for_the_last_running_call_not_a_poll() {
        use std::time::Duration;
        let pq = Arc::new(ProcessQueue::new(0, None));
        assert!(pq.wait_idle(Instant::now()).await, "idle from the start");
        let g = pq.begin_consume().unwrap();
        // Busy until the deadline.
        let t = Instant::now();
        assert!(!pq.wait_idle(t + Duration::from_millis(30)).await);
        assert!(t.elapsed() >= Duration::from_millis(30));
        let waiter = tokio::spawn({
            let pq = pq.clone();
            async move { pq.wait_idle(Instant::now() + Duration::from_secs(30)).await }
        });
        tokio::task::yield_now().await;
        let t = Instant::now();
        drop(g);
        assert!(waiter.await.unwrap());
        assert!(t.elapsed() < Duration::from_secs(10), "woken by the end");
    }
}
