//! Long-polling pulls parked on queues with nothing new, held by the
//! Storage actor and woken by its own appends.
//!
//! This is RocketMQ's `PullRequestHoldService` and
//! `MessageArrivingListener` in one: every append passes through the
//! Storage actor (sends, scheduled deliveries, transaction commits,
//! replicated chunks on a slave), so the actor that writes a ConsumeQueue
//! entry is the one that wakes the pulls waiting for it, with no message
//! to another actor and no race between "queue is empty" and "park".
//! With nobody parked an append pays one `is_empty` check.

use std::collections::HashMap;

use tokio::sync::oneshot;

struct Waiter {
    /// The queue offset the pull asked for: it wakes once the queue's
    /// max offset is past it.
    offset: u64,
    waker: oneshot::Sender<()>,
}

/// Parked pulls by topic and queue.
#[derive(Default)]
pub struct ParkedPulls {
    by_topic: HashMap<String, HashMap<u32, Vec<Waiter>>>,
    count: usize,
}

impl ParkedPulls {
    /// Whether no pull is parked (the append path's only cost then).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Parks a pull of `topic`/`queue_id` waiting past `offset`.
    pub fn park(&mut self, topic: &str, queue_id: u32, offset: u64, waker: oneshot::Sender<()>) {
        let queues = match self.by_topic.get_mut(topic) {
            Some(q) => q,
            None => self.by_topic.entry(topic.to_string()).or_default(),
        };
        let waiters = queues.entry(queue_id).or_default();
        // Drop pulls that already gave up, so a hot empty queue does not
        // accumulate them.
        let before = waiters.len();
        waiters.retain(|w| !w.waker.is_closed());
        self.count -= before - waiters.len();
        waiters.push(Waiter { offset, waker });
        self.count += 1;
    }

    /// Messages reached `topic`/`queue_id` up to `max_offset` (exclusive):
    /// wake every pull parked below it.
    pub fn arrived(&mut self, topic: &str, queue_id: u32, max_offset: u64) {
        let Some(queues) = self.by_topic.get_mut(topic) else {
            return;
        };
        let Some(waiters) = queues.get_mut(&queue_id) else {
            return;
        };
        let before = waiters.len();
        let mut i = 0;
        while i < waiters.len() {
            if waiters[i].waker.is_closed() {
                waiters.swap_remove(i);
            } else if max_offset > waiters[i].offset {
                let _ = waiters.swap_remove(i).waker.send(());
            } else {
                i += 1;
            }
        }
        self.count -= before - waiters.len();
        if waiters.is_empty() {
            queues.remove(&queue_id);
            if queues.is_empty() {
                self.by_topic.remove(topic);
            }
        }
    }

    /// `topic`'s queues were deleted: wake every pull parked on it, so it
    /// reads again now (and is told its offset is gone) instead of waking
    /// on a topic created again under the name.
    pub fn topic_gone(&mut self, topic: &str) {
        if let Some(queues) = self.by_topic.remove(topic) {
            for w in queues.into_values().flatten() {
                self.count -= 1;
                let _ = w.waker.send(());
            }
        }
    }

    /// Pulls parked on `topic` (all queues), for topic stats.
    pub fn parked_on(&self, topic: &str) -> usize {
        self.by_topic.get(topic).map_or(0, |qs| {
            qs.values()
                .flat_map(|ws| ws.iter())
                .filter(|w| !w.waker.is_closed())
                .count()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wakes_only_pulls_below_the_new_end() {
        let mut p = ParkedPulls::default();
        let (a, mut ra) = oneshot::channel();
        let (b, mut rb) = oneshot::channel();
        p.park("T", 0, 5, a);
        p.park("T", 0, 9, b);
        assert_eq!(p.parked_on("T"), 2);
        p.arrived("T", 1, 100); // another queue
        p.arrived("U", 0, 100); // another topic
        assert!(ra.try_recv().is_err());
        p.arrived("T", 0, 6);
        assert!(ra.try_recv().is_ok());
        assert!(rb.try_recv().is_err());
        assert_eq!(p.parked_on("T"), 1);
        p.arrived("T", 0, 10);
        assert!(rb.try_recv().is_ok());
        assert!(p.is_empty());
        assert_eq!(p.parked_on("T"), 0);
    }

    #[test]
    fn pulls_that_gave_up_are_dropped() {
        let mut p = ParkedPulls::default();
        for _ in 0..100 {
            let (w, r) = oneshot::channel();
            p.park("T", 0, 0, w);
            drop(r);
        }
        assert_eq!(p.count, 1, "each park drops the closed ones before it");
        assert_eq!(p.parked_on("T"), 0);
        p.arrived("T", 0, 1);
        assert!(p.is_empty());
    }
}
