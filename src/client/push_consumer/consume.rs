//! Pulling and consuming: one puller per assigned queue, the consume
//! dispatcher, and the orderly per-queue worker.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use skylark_codec::{PullStatus, PROPERTY_RETRY_TOPIC, RETRY_TOPIC_PREFIX};
use tokio::sync::{mpsc, Semaphore};

use super::{ConsumeResult, Inner, Work};
use crate::client::message::ReceivedMessage;
use crate::client::process_queue::ProcessQueue;
use crate::client::route::MessageQueue;

/// The consume dispatcher, sole reader of the work queue: takes batches in
/// arrival order and runs the listener on each, at most `consume_threads`
/// at once (RocketMQ's consume thread pool).
pub(super) async fn dispatch(inner: Arc<Inner>, mut rx: mpsc::UnboundedReceiver<Work>) {
    let mut stop = inner.stop.subscribe();
    let slots = Arc::new(Semaphore::new(inner.opts.consume_threads));
    loop {
        let work = tokio::select! {
            w = rx.recv() => w,
            _ = stop.changed() => return,
        };
        let Some(w) = work else { return };
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => s,
            _ = stop.changed() => return,
        };
        let Ok(slot) = slot else { return };
        let inner = inner.clone();
        actix::spawn(async move {
            consume(inner, w).await;
            drop(slot);
        });
    }
}

/// Runs the listener on one batch and records its result.
async fn consume(inner: Arc<Inner>, w: Work) {
    // A dropped queue's messages are its next owner's to deliver. The
    // guard is held until the result is recorded, so a releasing member
    // can wait for it and commit past what this call consumed.
    let Some(_running) = w.pq.begin_consume() else {
        return;
    };
    let Some((msgs, result)) = run_listener(&inner, w.msgs).await else {
        return;
    };
    match result {
        ConsumeResult::Success => w.pq.remove(msgs.iter().map(|m| m.queue_offset)),
        ConsumeResult::Retry => {
            // Clustering: hand each message back to the broker (retry
            // topic, or the dead-letter topic after the maximum); what
            // the broker does not take is retried here. Broadcasting:
            // retried here, dropped after the maximum.
            let mut local = Vec::new();
            for mut m in msgs {
                if inner.give_up(&m) || inner.send_back(&w.queue, &m).await {
                    w.pq.remove([m.queue_offset]);
                } else {
                    m.reconsume_times += 1;
                    local.push(m);
                }
            }
            if !local.is_empty() {
                inner.redeliver_later(w.queue, w.pq, local, inner.opts.retry_delay);
            }
        }
        ConsumeResult::Suspend(d) => {
            // The listener's answer cannot be refused: a pause the clock
            // cannot add is taken as the longest one.
            let d = d.min(crate::client::MAX_DURATION);
            w.pq.suspend(Instant::now() + d);
            inner.redeliver_later(w.queue, w.pq, msgs, d);
        }
    }
}

/// Runs the listener on a blocking thread; a panic counts as `Retry`.
pub(super) async fn run_listener(
    inner: &Inner,
    msgs: Vec<ReceivedMessage>,
) -> Option<(Vec<ReceivedMessage>, ConsumeResult)> {
    let l = inner.listener.clone();
    tokio::task::spawn_blocking(move || {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| l.consume(&msgs)))
            .unwrap_or(ConsumeResult::Retry);
        (msgs, r)
    })
    .await
    .ok()
}

/// How long the puller backs off after a failed pull.
const PULL_ERROR_BACKOFF: Duration = Duration::from_secs(1);
/// How long it backs off after an empty answer that came back at once
/// (not held by the broker's long poll).
const EMPTY_ANSWER_BACKOFF: Duration = Duration::from_millis(200);

/// Pulls one queue until it is dropped; a refusal of its pulls stands no
/// longer once it is.
pub(super) async fn pull_loop(
    inner: Arc<Inner>,
    q: MessageQueue,
    pq: Arc<ProcessQueue>,
    expr: super::SubFilter,
) {
    pull_queue(&inner, &q, pq, expr).await;
    inner.refusals.clear(&q.topic, Some(&q));
}

async fn pull_queue(
    inner: &Arc<Inner>,
    q: &MessageQueue,
    pq: Arc<ProcessQueue>,
    expr: super::SubFilter,
) {
    let o = &inner.opts;
    loop {
        if pq.is_dropped() || inner.is_stopped() {
            return;
        }
        // Each wait below ends when the queue changes (the lease taken, a
        // message consumed, the queue dropped) or its deadline passes; the
        // loop then checks again.
        if o.orderly && !pq.is_locked() {
            pq.wait_change(None).await;
            continue;
        }
        let (n, bytes) = pq.cached();
        if n > o.cache_max_messages || bytes > o.cache_max_bytes {
            pq.wait_change(None).await;
            continue;
        }
        if let Some(until) = pq.suspended_until(Instant::now()) {
            pq.wait_change(Some(until)).await;
            continue;
        }
        let offset = pq.next_pull();
        let started = Instant::now();
        let pulled = match &expr {
            super::SubFilter::Tags(tags) => {
                inner
                    .consumer
                    .pull(
                        q,
                        offset,
                        o.pull_batch_size,
                        tags.as_deref(),
                        o.pull_suspend,
                    )
                    .await
            }
            super::SubFilter::Sql(sql) => {
                inner
                    .consumer
                    .pull_sql_and_commit(q, offset, o.pull_batch_size, sql, o.pull_suspend, None)
                    .await
            }
        };
        let r = match pulled {
            Ok(r) => {
                inner.refusals.clear(&q.topic, Some(q));
                r
            }
            Err(e) => {
                // A refusal for good is reported (rate limited), then
                // retried like any failure: an operator may lift it.
                inner.note_pull_error(&q.topic, Some(q), e);
                // Back off from a failing broker (a drop ends the wait).
                pq.wait_change(Some(Instant::now() + PULL_ERROR_BACKOFF))
                    .await;
                continue;
            }
        };
        if pq.is_dropped() {
            return;
        }
        // Damaged records were not sent and `next_offset` is past them:
        // count them and move on like every other answer.
        inner
            .damaged_skipped
            .fetch_add(r.damaged.len() as u64, Ordering::Relaxed);
        match r.status {
            PullStatus::Found => {
                pq.put(&r.messages, r.next_offset);
                let mut r = r;
                if q.topic.starts_with(RETRY_TOPIC_PREFIX) {
                    // A retried message is shown under its original topic.
                    for m in &mut r.messages {
                        if let Some(t) = m.property(PROPERTY_RETRY_TOPIC) {
                            m.topic = t.to_string();
                        }
                    }
                }
                if o.orderly {
                    consume_orderly(inner, q, &pq, r.messages).await;
                } else {
                    let mut msgs = r.messages;
                    while !msgs.is_empty() {
                        let rest = msgs.split_off(o.batch_size.min(msgs.len()));
                        let w = Work {
                            queue: q.clone(),
                            pq: pq.clone(),
                            msgs,
                        };
                        let _ = inner.work_tx.send(w);
                        msgs = rest;
                    }
                }
            }
            PullStatus::OffsetIllegal => {
                pq.set_next_pull(r.next_offset.clamp(r.min_offset, r.max_offset))
            }
            _ => {
                pq.set_next_pull(r.next_offset);
                if started.elapsed() < o.pull_suspend / 2 && r.next_offset == offset {
                    // Answered at once with nothing: do not spin.
                    pq.wait_change(Some(Instant::now() + EMPTY_ANSWER_BACKOFF))
                        .await;
                }
            }
        }
    }
}

/// Orderly: the queue's one worker consumes its batches in order, retrying
/// a batch (after a pause) until it succeeds, goes to the dead-letter topic
/// after `max_reconsume_times` retries (broadcasting: is dropped then), or
/// the queue is dropped.
pub(super) async fn consume_orderly(
    inner: &Arc<Inner>,
    q: &MessageQueue,
    pq: &Arc<ProcessQueue>,
    mut msgs: Vec<ReceivedMessage>,
) {
    while !msgs.is_empty() {
        let rest = msgs.split_off(inner.opts.batch_size.min(msgs.len()));
        let mut batch = msgs;
        loop {
            if !pq.is_locked() {
                return;
            }
            let Ok(_permit) = inner.orderly_permits.acquire().await else {
                return;
            };
            // Held until the result is recorded (see `consume`).
            let Some(running) = pq.begin_consume() else {
                return;
            };
            let Some((back, result)) = run_listener(inner, batch).await else {
                return;
            };
            batch = back;
            let pause = match result {
                ConsumeResult::Success => {
                    pq.remove(batch.iter().map(|m| m.queue_offset));
                    break;
                }
                ConsumeResult::Retry => {
                    // Past the maximum, the batch goes to the dead-letter
                    // topic and the queue moves on (clustering only).
                    let max = inner.opts.max_reconsume_times;
                    if batch.iter().all(|m| m.reconsume_times >= max) {
                        let mut all_sent = true;
                        for m in &batch {
                            all_sent &= inner.give_up(m) || inner.dead_letter(q, m).await;
                        }
                        if all_sent {
                            pq.remove(batch.iter().map(|m| m.queue_offset));
                            break;
                        }
                    }
                    for m in &mut batch {
                        m.reconsume_times += 1;
                    }
                    inner.opts.retry_delay
                }
                ConsumeResult::Suspend(d) => d,
            };
            drop(running);
            tokio::time::sleep(pause).await;
        }
        msgs = rest;
    }
}
