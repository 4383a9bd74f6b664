//! `skylark consume`: pull every queue of a topic and print what arrives.
//!
//! One long-polling puller per queue (each pulls its queue sequentially, so
//! a queue's messages print in queue-offset order) feeds a single printer.
//! A queue starts at the group's committed offset, else per `--from`
//! (`first` = the queue's min offset, `last` = its max offset). Offsets are
//! committed to the broker after printing: every few seconds and before
//! exit. The run stops after `--count` messages, after `--idle-timeout`
//! seconds without a new message, or on Ctrl-C, and exits 0.
//!
//! `--broadcast` reads every queue without committing the group's offsets
//! (each run starts per `--from`). `--sql` subscribes with a SQL-92
//! property filter evaluated on the broker; it is validated here first, so
//! a malformed expression exits non-zero with the parser's reason.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use skylark_codec::{parse_tag_expression, MessageModel, PullStatus};
use tokio::sync::mpsc;

use super::ConsumeArgs;
use crate::client::{ClientConfig, ClientError, MessageQueue, PullConsumer, ReceivedMessage};

/// Longest a pull is parked on the broker.
const MAX_SUSPEND: Duration = Duration::from_secs(5);
/// Messages asked for per pull.
const PULL_BATCH: u32 = 32;
/// How often printed progress is committed.
const COMMIT_EVERY: Duration = Duration::from_secs(5);
/// Pause before retrying a pull after a connection failure.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Where a queue without a committed offset starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum From {
    First,
    Last,
    Timestamp(i64),
}

fn parse_from(s: &str) -> anyhow::Result<From> {
    match s {
        "first" => Ok(From::First),
        "last" => Ok(From::Last),
        _ => match s.parse::<i64>() {
            Ok(ms) => Ok(From::Timestamp(ms)),
            Err(_) => bail!("--from must be first, last or a Unix time in milliseconds, got {s:?}"),
        },
    }
}

/// What a puller tells the printer.
enum Event {
    /// Messages of queue `idx` (maybe none) and the offset after them.
    Batch {
        idx: usize,
        messages: Vec<ReceivedMessage>,
        next_offset: u64,
    },
    /// A failure that retrying will not fix.
    Fatal(ClientError),
}

/// Per-queue progress: next offset to consume and what was committed.
struct Progress {
    queue: MessageQueue,
    next: u64,
    committed: u64,
}

/// Entry point of `skylark consume`.
pub fn run(a: ConsumeArgs) -> anyhow::Result<()> {
    if let Some(sql) = &a.sql {
        skylark_actors::filter::validate(sql).map_err(|e| anyhow::anyhow!("--sql: {e}"))?;
    }
    if let Some(f) = &a.filter {
        parse_tag_expression(f).map_err(|e| anyhow::anyhow!("--filter {f:?}: {e}"))?;
    }
    let from = parse_from(&a.from)?;
    actix::System::new().block_on(consume(a, from))
}

async fn start_offset(
    c: &PullConsumer,
    q: &MessageQueue,
    from: From,
    broadcast: bool,
) -> anyhow::Result<u64> {
    if !broadcast {
        if let Some(o) = c.query_offset(q).await? {
            return Ok(o);
        }
    }
    match from {
        From::First => Ok(c.queue_offsets(q).await?.min_offset),
        From::Last => Ok(c.queue_offsets(q).await?.max_offset),
        From::Timestamp(ms) => Ok(c.offset_by_time(q, ms).await?),
    }
}

/// The topic's readable queues. A topic with no route yet (not created, or
/// its broker is still registering after a restart) is waited for, up to
/// `idle` when given, as a RocketMQ consumer waits for its topic.
async fn wait_for_queues(
    consumer: &PullConsumer,
    topic: &str,
    idle: Option<Duration>,
) -> anyhow::Result<Vec<crate::client::MessageQueue>> {
    let deadline = idle.map(|d| tokio::time::Instant::now() + d);
    loop {
        match consumer.queues(topic).await {
            Ok(q) => return Ok(q),
            Err(crate::client::ClientError::TopicNotFound(_))
                if deadline.is_none_or(|d| tokio::time::Instant::now() < d) =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

async fn consume(a: ConsumeArgs, from: From) -> anyhow::Result<()> {
    let consumer = PullConsumer::start(ClientConfig::new(&a.namesrv), &a.group)?;
    let queues =
        wait_for_queues(&consumer, &a.topic, a.idle_timeout.map(Duration::from_secs)).await?;
    let model = if a.broadcast {
        MessageModel::Broadcasting
    } else {
        MessageModel::Clustering
    };
    let mut progress = Vec::with_capacity(queues.len());
    for q in queues {
        let start = start_offset(&consumer, &q, from, a.broadcast).await?;
        progress.push(Progress {
            queue: q,
            next: start,
            committed: start,
        });
    }
    // Tell the brokers who we are; a broker that does not track pull
    // consumers is not a reason to stop.
    match &a.sql {
        // A refused SQL subscription is fatal; other heartbeat errors not.
        Some(sql) => match consumer.heartbeat_sql(&a.topic, sql, model).await {
            Err(ClientError::Remote { error, .. })
                if error.code == skylark_codec::ErrorCode::InvalidFilter =>
            {
                bail!("{}", error.message)
            }
            _ => {}
        },
        None => {
            let _ = consumer
                .heartbeat(&[(a.topic.clone(), a.filter.clone())], model, &[])
                .await;
        }
    }

    let suspend = match a.idle_timeout {
        Some(s) => MAX_SUSPEND.min(Duration::from_secs(s)),
        None => MAX_SUSPEND,
    };
    let (tx, rx) = mpsc::channel(progress.len() * 2 + 1);
    for (idx, p) in progress.iter().enumerate() {
        let puller = Puller {
            consumer: consumer.clone(),
            queue: p.queue.clone(),
            idx,
            offset: p.next,
            filter: a.filter.clone(),
            sql: a.sql.clone(),
            suspend,
            tx: tx.clone(),
        };
        actix::spawn(puller.run());
    }
    drop(tx);
    let result = print_loop(&a, rx, &mut progress, &consumer).await;
    if !a.broadcast {
        commit(&consumer, &mut progress).await?;
    }
    result
}

async fn print_loop(
    a: &ConsumeArgs,
    mut rx: mpsc::Receiver<Event>,
    progress: &mut [Progress],
    consumer: &PullConsumer,
) -> anyhow::Result<()> {
    let idle = a.idle_timeout.map(Duration::from_secs);
    let mut deadline = idle.map(|d| tokio::time::Instant::now() + d);
    let mut printed: u64 = 0;
    let mut last_commit = Instant::now();
    let stdout = std::io::stdout();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    // A bar only when the run has a known length (--count).
    let bar = match a.count {
        Some(n) => super::progress_bar(n),
        None => indicatif::ProgressBar::hidden(),
    };
    while a.count.is_none_or_gt(printed) {
        let recv = async {
            match deadline {
                Some(d) => tokio::time::timeout_at(d, rx.recv()).await.ok(),
                None => Some(rx.recv().await),
            }
        };
        let event = tokio::select! {
            e = recv => e,
            _ = &mut ctrl_c => break,
        };
        let (idx, messages, next_offset) = match event {
            None | Some(None) => break, // idle timeout, or every puller ended
            Some(Some(Event::Fatal(e))) => return Err(e.into()),
            Some(Some(Event::Batch {
                idx,
                messages,
                next_offset,
            })) => (idx, messages, next_offset),
        };
        let mut out = stdout.lock();
        let mut next = next_offset;
        for m in &messages {
            if !a.count.is_none_or_gt(printed) {
                next = m.queue_offset;
                break;
            }
            print_message(&mut out, m, a.json)?;
            printed += 1;
            bar.inc(1);
        }
        out.flush().context("writing to stdout")?;
        if let Some(p) = progress.get_mut(idx) {
            p.next = next;
        }
        if !messages.is_empty() {
            deadline = idle.map(|d| tokio::time::Instant::now() + d);
        }
        if !a.broadcast && last_commit.elapsed() >= COMMIT_EVERY {
            commit(consumer, progress).await?;
            last_commit = Instant::now();
        }
    }
    bar.finish_and_clear();
    Ok(())
}

/// `Option<u64>` limit helper: no limit, or the limit is above `n`.
trait Limit {
    fn is_none_or_gt(&self, n: u64) -> bool;
}

impl Limit for Option<u64> {
    fn is_none_or_gt(&self, n: u64) -> bool {
        match self {
            Some(max) => *max > n,
            None => true,
        }
    }
}

pub(crate) fn print_message(
    out: &mut impl Write,
    m: &ReceivedMessage,
    json: bool,
) -> anyhow::Result<()> {
    if json {
        serde_json::to_writer(&mut *out, &m.json())?;
        writeln!(out)?;
        return Ok(());
    }
    let body = match m.body_str() {
        Some(s) => s.to_string(),
        None => format!("<{} bytes, not UTF-8>", m.body.len()),
    };
    writeln!(
        out,
        "queue={} offset={} msg_id={} tags={} keys={} body={}",
        m.queue_id,
        m.queue_offset,
        m.msg_id,
        m.tags.as_deref().unwrap_or("-"),
        m.keys.as_deref().unwrap_or("-"),
        body
    )?;
    Ok(())
}

/// Commits every queue whose printed progress moved.
async fn commit(c: &PullConsumer, progress: &mut [Progress]) -> anyhow::Result<()> {
    for p in progress.iter_mut().filter(|p| p.next != p.committed) {
        c.commit_offset(&p.queue, p.next).await?;
        p.committed = p.next;
    }
    Ok(())
}

/// Pulls one queue forever, handing batches to the printer.
struct Puller {
    consumer: PullConsumer,
    queue: MessageQueue,
    idx: usize,
    offset: u64,
    filter: Option<String>,
    sql: Option<String>,
    suspend: Duration,
    tx: mpsc::Sender<Event>,
}

impl Puller {
    async fn run(mut self) {
        loop {
            let started = Instant::now();
            let res = match &self.sql {
                Some(sql) => {
                    self.consumer
                        .pull_sql_and_commit(
                            &self.queue,
                            self.offset,
                            PULL_BATCH,
                            sql,
                            self.suspend,
                            None,
                        )
                        .await
                }
                None => {
                    self.consumer
                        .pull(
                            &self.queue,
                            self.offset,
                            PULL_BATCH,
                            self.filter.as_deref(),
                            self.suspend,
                        )
                        .await
                }
            };
            let r = match res {
                Ok(r) => r,
                Err(e) if e.is_retryable() => {
                    tokio::time::sleep(RETRY_PAUSE).await;
                    continue;
                }
                Err(e) => {
                    let _ = self.tx.send(Event::Fatal(e)).await;
                    return;
                }
            };
            let moved = r.next_offset != self.offset;
            if r.status == PullStatus::OffsetIllegal {
                self.offset = r.next_offset.clamp(r.min_offset, r.max_offset);
            } else if moved {
                self.offset = r.next_offset;
            }
            if !r.messages.is_empty() || moved {
                let ev = Event::Batch {
                    idx: self.idx,
                    messages: r.messages,
                    next_offset: self.offset,
                };
                if self.tx.send(ev).await.is_err() {
                    return;
                }
            } else if started.elapsed() < self.suspend / 2 {
                // The broker answered at once with nothing: do not spin.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_values() {
        assert_eq!(parse_from("first").ok(), Some(From::First));
        assert_eq!(parse_from("last").ok(), Some(From::Last));
        assert_eq!(
            parse_from("1700000000000").ok(),
            Some(From::Timestamp(1_700_000_000_000))
        );
        assert!(parse_from("yesterday").is_err());
    }

    #[test]
    fn count_limit() {
        assert!(None.is_none_or_gt(10));
        assert!(Some(3).is_none_or_gt(2));
        assert!(!Some(3).is_none_or_gt(3));
    }
}
