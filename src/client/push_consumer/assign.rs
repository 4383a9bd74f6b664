//! Which queues this member consumes and from where: rebalance, queue
//! leases, start offsets, commits and offset resets.
//!
//! A clustering member owns a queue while it holds the queue's lease on the
//! broker (`LockBatchMq`, the same table as RocketMQ's orderly locks, kept
//! by the group actor; lease `order_lock_lease_secs`, renewed at every
//! rebalance and every `lock_renew_interval`, freed when the member leaves
//! or its connection closes). Orderly and concurrent members alike take a
//! queue only once granted its lease and read its committed offset only
//! then; a member giving a queue up commits first and releases after.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

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
    /// some topic could not be settled (no route, member list unknown, a
    /// queue another member has not released yet).
    pub(super) async fn rebalance(self: &Arc<Self>) -> bool {
        // Called by the owner loop only (see `owner_loop`): one change of
        // ownership at a time.
        if self.is_stopped() {
            return true;
        }
        let mut settled = true;
        for (topic, expr) in self.subs.clone() {
            match self.allocation(&topic).await {
                Some(mine) => settled &= self.update_queues(&topic, expr, mine).await,
                // The retry topic exists only once something was sent back.
                None if topic.starts_with(RETRY_TOPIC_PREFIX) => {}
                None => settled = false,
            }
        }
        if !self.broadcasting() {
            // Renew the leases of the queues kept; a queue whose lease was
            // lost is dropped and taken again at the next rebalance.
            settled &= self.renew_leases().await;
        }
        settled
    }

    /// This member's queues of `topic`; `None` if that cannot be known now.
    pub(super) async fn allocation(&self, topic: &str) -> Option<Vec<MessageQueue>> {
        // A route whose every queue lacks read permission is a refusal of
        // the topic as a whole (reported as such); its queues still owned
        // are kept, and their pulls report the broker's own refusal.
        let mut all = match self.consumer.queues(topic).await {
            Ok(all) => {
                self.refusals.clear(topic, None);
                all
            }
            Err(e) => {
                self.note_pull_error(topic, None, e);
                return None;
            }
        };
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

    /// Releases the queues of `topic` this member no longer owns and takes
    /// the new ones; false if some new queue could not be taken yet.
    ///
    /// Clustering: a queue is taken only once the broker grants this member
    /// its lease (`LockBatchMq`), and its start offset is read only after
    /// that. The previous owner releases the lease only after its final
    /// commit was acknowledged (see [`Inner::release`]), so the offset read
    /// is that commit: on a quiet group nothing is delivered twice.
    pub(super) async fn update_queues(
        self: &Arc<Self>,
        topic: &str,
        expr: super::SubFilter,
        mine: Vec<MessageQueue>,
    ) -> bool {
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
        self.release(removed).await;
        let added: Vec<MessageQueue> = {
            let map = self.queues();
            mine.into_iter().filter(|q| !map.contains_key(q)).collect()
        };
        if added.is_empty() {
            return true;
        }
        let granted = if self.broadcasting() {
            added.clone()
        } else {
            self.lock(&added).await.0
        };
        let mut all = granted.len() == added.len();
        for q in granted {
            let Ok((start, committed)) = self.start_offset(&q).await else {
                all = false; // retried at the next (soon) rebalance
                continue;
            };
            if self.is_stopped() {
                return true;
            }
            let pq = Arc::new(ProcessQueue::new(start, committed));
            pq.set_locked(!self.broadcasting());
            self.queues().insert(q.clone(), pq.clone());
            actix::spawn(pull_loop(self.clone(), q, pq, expr.clone()));
        }
        all
    }

    /// Hands queues back: stops them, waits (up to `release_timeout`) for
    /// the listener calls running on them, commits their safe offsets and
    /// only then releases their leases, so the next owner starts exactly
    /// where this member stopped.
    pub(super) async fn release(&self, queues: Vec<(MessageQueue, Arc<ProcessQueue>)>) {
        if queues.is_empty() {
            return;
        }
        for (_, pq) in &queues {
            pq.drop_queue();
        }
        let deadline = Instant::now() + self.opts.release_timeout;
        for (_, pq) in &queues {
            pq.wait_idle(deadline).await;
        }
        // Commits run on the owner loop (or after it, at shutdown) only, so
        // no periodic commit of an older offset can land after these.
        for (q, pq) in &queues {
            self.commit_final(q, pq).await;
        }
        self.persist_local().await;
        if !self.broadcasting() {
            self.unlock(queues.into_iter().map(|(q, _)| q).collect())
                .await;
        }
    }

    /// Where a newly assigned queue starts, and what is committed for it.
    pub(super) async fn start_offset(&self, q: &MessageQueue) -> Result<(u64, Option<u64>)> {
        // A reset's offset wins over whatever is stored (a commit of the old
        // progress may have landed after the reset); `None` as the committed
        // value makes the next commit store it again.
        let reset = self.assignment().resets.remove(q);
        if let Some(o) = reset {
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

    /// Asks the brokers for the leases of `queues` (a lease this member
    /// holds is renewed). Answers the queues this member now holds and
    /// those whose broker group could not be asked.
    pub(super) async fn lock(
        &self,
        queues: &[MessageQueue],
    ) -> (Vec<MessageQueue>, Vec<MessageQueue>) {
        let (mut held, mut unknown) = (Vec::new(), Vec::new());
        for qs in by_broker(queues.to_vec()) {
            let req = LockBatchRequest {
                group: self.consumer.group().to_string(),
                client_id: self.client_id.clone(),
                queues: qs.iter().map(queue_ref).collect(),
            };
            // Like offsets, leases are asked of the queue's master, or of a
            // slave of its group while the master is down.
            let timeout = self.consumer.config().request_timeout;
            match self.consumer.call_group(&qs[0], &req, timeout).await {
                Ok(r) => {
                    let locked: HashSet<QueueRef> = r.locked.into_iter().collect();
                    held.extend(qs.into_iter().filter(|q| locked.contains(&queue_ref(q))));
                }
                Err(_) => unknown.extend(qs),
            }
        }
        (held, unknown)
    }

    /// Renews the lease of every owned queue. A queue whose lease was lost
    /// (it expired and another member may have taken it) is dropped without
    /// committing; false if that happened. A queue whose broker group did
    /// not answer is kept (its lease runs 60 s).
    pub(super) async fn renew_leases(&self) -> bool {
        let owned: Vec<MessageQueue> = self.queues().keys().cloned().collect();
        if owned.is_empty() {
            return true;
        }
        let (held, unknown) = self.lock(&owned).await;
        let keep: HashSet<MessageQueue> = held.into_iter().chain(unknown).collect();
        let mut map = self.queues();
        let mut all = true;
        for q in owned {
            if keep.contains(&q) {
                continue;
            }
            all = false;
            if let Some(pq) = map.remove(&q) {
                pq.set_locked(false);
                pq.set_discard();
                pq.drop_queue();
            }
        }
        all
    }

    /// Releases the leases of `queues`.
    pub(super) async fn unlock(&self, queues: Vec<MessageQueue>) {
        for qs in by_broker(queues) {
            let req = UnlockBatchRequest {
                group: self.consumer.group().to_string(),
                client_id: self.client_id.clone(),
                queues: qs.iter().map(queue_ref).collect(),
            };
            let timeout = self.consumer.config().request_timeout;
            let _ = self.consumer.call_group(&qs[0], &req, timeout).await;
        }
    }

    /// A broker reset the group's offsets of a topic: forget the in-memory
    /// progress of its queues there and re-read the offsets.
    pub(super) fn apply_reset(&self, n: ResetOffsetNotify) {
        if n.group != self.consumer.group() {
            return;
        }
        let mut a = self.assignment();
        let hit: Vec<MessageQueue> = a
            .queues
            .keys()
            .filter(|q| q.topic == n.topic && q.broker_addr == n.broker_addr)
            .cloned()
            .collect();
        for q in hit {
            if let Some(pq) = a.queues.remove(&q) {
                pq.set_discard();
                pq.drop_queue();
            }
            if let Some(e) = n.offsets.iter().find(|e| e.queue_id == q.queue_id) {
                a.resets.insert(q, e.offset);
            }
        }
        drop(a);
        self.rebalance.notify_one();
    }
}

/// `queues` grouped by broker (each group non-empty).
fn by_broker(queues: Vec<MessageQueue>) -> Vec<Vec<MessageQueue>> {
    let mut map: HashMap<String, Vec<MessageQueue>> = HashMap::new();
    for q in queues {
        map.entry(q.broker_addr.clone()).or_default().push(q);
    }
    map.into_values().collect()
}

fn queue_ref(q: &MessageQueue) -> QueueRef {
    QueueRef {
        topic: q.topic.clone(),
        queue_id: q.queue_id,
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
