//! Which queues this member consumes and from where: rebalance, start
//! offsets, commits, orderly locks and offset resets.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use skylark_codec::{
    ConsumeFrom, GetConsumerListRequest, LockBatchRequest, QueueRef, ResetOffsetNotify,
    UnlockBatchRequest, RETRY_TOPIC_PREFIX,
};

use super::consume::pull_loop;
use super::Inner;
use crate::client::consumer::PullConsumer;
use crate::client::error::{ClientError, Result};
use crate::client::process_queue::ProcessQueue;
use crate::client::rebalance::{allocate, sort_queues};
use crate::client::route::MessageQueue;

impl Inner {
    /// Recomputes this member's queues of every subscribed topic; false if
    /// some topic could not be settled (no route, member list unknown).
    pub(super) async fn rebalance(self: &Arc<Self>) -> bool {
        let mut settled = true;
        for (topic, expr) in self.subs.clone() {
            match self.allocation(&topic).await {
                Some(mine) => self.update_queues(&topic, expr, mine).await,
                // The retry topic exists only once something was sent back.
                None if topic.starts_with(RETRY_TOPIC_PREFIX) => {}
                None => settled = false,
            }
        }
        if self.opts.orderly {
            // A queue whose lock another member still holds is asked for
            // again soon (that member releases it after its rebalance).
            settled &= self.lock_all().await;
        }
        settled
    }

    /// This member's queues of `topic`; `None` if that cannot be known now.
    pub(super) async fn allocation(&self, topic: &str) -> Option<Vec<MessageQueue>> {
        let mut all = self.consumer.queues(topic).await.ok()?;
        sort_queues(&mut all);
        if self.broadcasting() {
            return Some(all);
        }
        let first = all.first()?;
        let req = GetConsumerListRequest {
            group: self.consumer.group().to_string(),
        };
        // The first queue's broker group answers; a slave does while its
        // master is down (heartbeats reach every member of the group).
        let timeout = self.consumer.config().request_timeout;
        let members = self
            .consumer
            .call_group(first, &req, timeout)
            .await
            .ok()?
            .client_ids;
        if !members.contains(&self.client_id) {
            return None; // our heartbeat has not landed yet
        }
        Some(allocate(
            self.opts.strategy,
            &self.client_id,
            &members,
            &all,
        ))
    }

    pub(super) async fn update_queues(
        self: &Arc<Self>,
        topic: &str,
        expr: super::SubFilter,
        mine: Vec<MessageQueue>,
    ) {
        let wanted: HashSet<&MessageQueue> = mine.iter().collect();
        let removed: Vec<(MessageQueue, Arc<ProcessQueue>)> = {
            let mut map = self.queues();
            let gone: Vec<MessageQueue> = map
                .keys()
                .filter(|q| q.topic == topic && !wanted.contains(q))
                .cloned()
                .collect();
            gone.into_iter()
                .filter_map(|q| map.remove(&q).map(|pq| (q, pq)))
                .collect()
        };
        for (q, pq) in &removed {
            pq.drop_queue();
            if self.opts.orderly {
                // Let a running batch finish before another member may start.
                let deadline = Instant::now() + Duration::from_secs(1);
                while pq.is_busy() && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            self.commit_final(q, pq).await;
        }
        if self.opts.orderly && !removed.is_empty() {
            self.unlock(removed.into_iter().map(|(q, _)| q).collect())
                .await;
        }
        self.persist_local().await;
        for q in mine {
            if self.queues().contains_key(&q) {
                continue;
            }
            let Ok((start, committed)) = self.start_offset(&q).await else {
                continue; // retried at the next rebalance
            };
            let pq = Arc::new(ProcessQueue::new(start, committed));
            if self.stopped.load(Ordering::SeqCst) {
                return;
            }
            self.queues().insert(q.clone(), pq.clone());
            actix::spawn(pull_loop(self.clone(), q, pq, expr.clone()));
        }
    }

    /// Where a newly assigned queue starts, and what is committed for it.
    pub(super) async fn start_offset(&self, q: &MessageQueue) -> Result<(u64, Option<u64>)> {
        // A reset's offset wins over whatever is stored (a commit of the old
        // progress may have landed after the reset); `None` as the committed
        // value makes the next commit store it again.
        if let Some(o) = self.resets().remove(q) {
            return Ok((o, None));
        }
        let stored = match &self.local {
            Some(l) => l.get(q),
            None => self.consumer.query_offset(q).await?,
        };
        if let Some(o) = stored {
            return Ok((o, Some(o)));
        }
        // A retry topic is read from its start: it is created by the first
        // message sent back, which must not be skipped.
        let from = if q.topic.starts_with(RETRY_TOPIC_PREFIX) {
            ConsumeFrom::First
        } else {
            self.opts.consume_from
        };
        let o = match from {
            ConsumeFrom::First => self.consumer.queue_offsets(q).await?.min_offset,
            ConsumeFrom::Last => self.consumer.queue_offsets(q).await?.max_offset,
            ConsumeFrom::Timestamp(ms) => search_offset(&self.consumer, q, ms).await?,
        };
        Ok((o, None))
    }

    /// Commits a dropped queue's safe offset (unless a reset discarded it).
    pub(super) async fn commit_final(&self, q: &MessageQueue, pq: &ProcessQueue) {
        if pq.is_discarded() {
            return;
        }
        let o = pq.commit_offset();
        match &self.local {
            Some(l) => l.set(q, o),
            None => {
                let _ = self.consumer.commit_offset(q, o).await;
            }
        }
    }

    /// Commits every queue whose safe offset moved.
    pub(super) async fn commit_all(&self) {
        let queues: Vec<(MessageQueue, Arc<ProcessQueue>)> = self
            .queues()
            .iter()
            .map(|(q, p)| (q.clone(), p.clone()))
            .collect();
        for (q, pq) in queues {
            if pq.is_dropped() || pq.is_discarded() {
                continue;
            }
            let Some(o) = pq.offset_to_commit() else {
                continue;
            };
            match &self.local {
                Some(l) => {
                    l.set(&q, o);
                    pq.committed(o);
                }
                None => {
                    if self.consumer.commit_offset(&q, o).await.is_ok() {
                        pq.committed(o);
                    }
                }
            }
        }
        self.persist_local().await;
    }

    pub(super) async fn persist_local(&self) {
        if self.local.is_none() {
            return;
        }
        // The write and fsync run on a blocking thread, not the actor's.
        if let Some(l) = self.local.clone() {
            let _ = tokio::task::spawn_blocking(move || l.persist()).await;
        }
    }

    /// Locks (or renews) every assigned queue on its broker; marks which
    /// ones this member holds. True if it holds all of them.
    pub(super) async fn lock_all(&self) -> bool {
        let mut all = true;
        let queues: Vec<(MessageQueue, Arc<ProcessQueue>)> = self
            .queues()
            .iter()
            .map(|(q, p)| (q.clone(), p.clone()))
            .collect();
        let mut by_broker: HashMap<String, Vec<(MessageQueue, Arc<ProcessQueue>)>> = HashMap::new();
        for (q, pq) in queues {
            by_broker
                .entry(q.broker_addr.clone())
                .or_default()
                .push((q, pq));
        }
        for (addr, qs) in by_broker {
            let req = LockBatchRequest {
                group: self.consumer.group().to_string(),
                client_id: self.client_id.clone(),
                queues: qs
                    .iter()
                    .map(|(q, _)| QueueRef {
                        topic: q.topic.clone(),
                        queue_id: q.queue_id,
                    })
                    .collect(),
            };
            let locked: HashSet<QueueRef> = match self.consumer.conn(&addr).await {
                Ok(c) => match c.call(&req).await {
                    Ok(r) => r.locked.into_iter().collect(),
                    Err(_) => HashSet::new(),
                },
                Err(_) => HashSet::new(),
            };
            for (q, pq) in qs {
                let held = locked.contains(&QueueRef {
                    topic: q.topic.clone(),
                    queue_id: q.queue_id,
                });
                pq.set_locked(held);
                all &= held;
            }
        }
        all
    }

    pub(super) async fn unlock(&self, queues: Vec<MessageQueue>) {
        let mut by_broker: HashMap<String, Vec<QueueRef>> = HashMap::new();
        for q in queues {
            by_broker
                .entry(q.broker_addr.clone())
                .or_default()
                .push(QueueRef {
                    topic: q.topic,
                    queue_id: q.queue_id,
                });
        }
        for (addr, queues) in by_broker {
            if let Ok(c) = self.consumer.conn(&addr).await {
                let req = UnlockBatchRequest {
                    group: self.consumer.group().to_string(),
                    client_id: self.client_id.clone(),
                    queues,
                };
                let _ = c.call(&req).await;
            }
        }
    }

    /// A broker reset the group's offsets of a topic: forget the in-memory
    /// progress of its queues there and re-read the offsets.
    pub(super) fn apply_reset(&self, n: ResetOffsetNotify) {
        if n.group != self.consumer.group() {
            return;
        }
        let mut map = self.queues();
        let hit: Vec<MessageQueue> = map
            .keys()
            .filter(|q| q.topic == n.topic && q.broker_addr == n.broker_addr)
            .cloned()
            .collect();
        for q in hit {
            if let Some(pq) = map.remove(&q) {
                pq.set_discard();
                pq.drop_queue();
            }
            if let Some(e) = n.offsets.iter().find(|e| e.queue_id == q.queue_id) {
                self.resets().insert(q, e.offset);
            }
        }
        drop(map);
        self.rebalance.notify_one();
    }
}

/// The first offset of `q` stored at or after `ms`.
pub(crate) async fn search_offset(c: &PullConsumer, q: &MessageQueue, ms: i64) -> Result<u64> {
    let conn = c.conn(&q.broker_addr).await?;
    let req = skylark_codec::SearchOffsetByTimeRequest {
        topic: q.topic.clone(),
        queue_id: q.queue_id,
        timestamp_ms: ms,
    };
    conn.call(&req)
        .await
        .map(|r| r.offset)
        .map_err(|e| ClientError::from_call(&q.broker_addr, Some(&q.topic), e))
}
