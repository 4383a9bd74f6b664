//! `skylark bench produce|consume|e2e`: whole-system throughput and latency.
//!
//! Parameters (DESIGN §7): `--clients` connections, each a client of its
//! own on its own arbiter thread (so a bench uses several cores); `--batch`
//! messages per send request (a `SendBatch` when > 1); `--inflight`
//! requests each client keeps outstanding; `--rate` a total msgs/s target
//! (0 = as fast as possible), paced by a shared schedule so latency is
//! measured at a known load.
//!
//! * `produce`: latency per send request, send → answer.
//! * `consume`: reads the topic's backlog from each queue's min offset;
//!   latency per pull request.
//! * `e2e`: consumers long-poll from the current end while producers send;
//!   latency per message = arrival time − born timestamp.
//!
//! Latencies go to an HDR histogram in µs. `--json` prints one object
//! `{"msgs_per_sec","mb_per_sec","p50_us","p99_us","p999_us","max_us","errors"}`
//! (MB = 10^6 bytes of message body). A progress bar shows on stderr when it
//! is a terminal.

use std::future::Future;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Arbiter;
use anyhow::bail;
use bytes::Bytes;
use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use rand::Rng;
use serde::Serialize;
use tokio::sync::oneshot;

use super::{BenchArgs, BenchMode};
use crate::client::{
    now_ms, now_us, ClientConfig, MessageData, MessageQueue, Producer, PullConsumer,
};

/// `println!` that returns an error (e.g. a closed pipe) instead of panicking.
macro_rules! out {
    ($($t:tt)*) => {
        writeln!(std::io::stdout().lock(), $($t)*)?
    };
}

/// Highest latency the histograms track (µs); above is clamped.
const MAX_LATENCY_US: u64 = 600_000_000;
/// How long e2e waits for stragglers once producers are done.
const E2E_DRAIN: Duration = Duration::from_secs(10);

/// The final report.
#[derive(Debug, Serialize)]
struct Report {
    msgs_per_sec: f64,
    mb_per_sec: f64,
    p50_us: u64,
    p99_us: u64,
    p999_us: u64,
    max_us: u64,
    errors: u64,
}

/// State shared by every worker of a run.
struct Shared {
    /// Messages not yet claimed by a sender.
    claimed: AtomicU64,
    /// Messages completed (sent or received).
    done: AtomicU64,
    /// Body bytes completed.
    bytes: AtomicU64,
    /// Failed requests.
    errors: AtomicU64,
    /// Set when workers should stop.
    stop: AtomicBool,
    count: u64,
    rate: u64,
    start: Instant,
}

impl Shared {
    fn new(count: u64, rate: u64) -> Arc<Shared> {
        Arc::new(Shared {
            claimed: AtomicU64::new(0),
            done: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            count,
            rate,
            start: Instant::now(),
        })
    }

    /// Claims up to `batch` messages to send; returns how many and the index
    /// of the first (0 = nothing left).
    fn claim(&self, batch: u64) -> (u64, u64) {
        let first = self.claimed.fetch_add(batch, Ordering::Relaxed);
        if first >= self.count || self.stop.load(Ordering::Relaxed) {
            return (0, first);
        }
        (batch.min(self.count - first), first)
    }

    /// With a rate, waits until message `index` is due.
    async fn pace(&self, index: u64) {
        if self.rate == 0 {
            return;
        }
        let due = self.start + Duration::from_secs_f64(index as f64 / self.rate as f64);
        tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
    }
}

fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)?)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Runs `f` on a new arbiter thread; the receiver gets its output.
fn on_arbiter<F, Fut>(arbiters: &mut Vec<Arbiter>, f: F) -> oneshot::Receiver<Fut::Output>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future + 'static,
    Fut::Output: Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    let arb = Arbiter::new();
    arb.spawn_fn(move || {
        actix::spawn(async move {
            let _ = tx.send(f().await);
        });
    });
    arbiters.push(arb);
    rx
}

/// Entry point of `skylark bench`.
pub fn run(a: BenchArgs) -> anyhow::Result<()> {
    if a.clients == 0 || a.batch == 0 || a.inflight == 0 {
        bail!("--clients, --batch and --inflight must be at least 1");
    }
    if a.count == 0 {
        bail!("--count must be at least 1");
    }
    actix::System::new().block_on(bench(a))
}

async fn bench(a: BenchArgs) -> anyhow::Result<()> {
    let shared = Shared::new(a.count, a.rate);
    let bar = progress_bar(a.count);
    let mut arbiters = Vec::new();
    let result = match a.mode {
        BenchMode::Produce => produce(&a, &shared, &bar, &mut arbiters, true).await,
        BenchMode::Consume => consume_backlog(&a, &shared, &bar, &mut arbiters).await,
        BenchMode::E2e => e2e(&a, &shared, &bar, &mut arbiters).await,
    };
    bar.finish_and_clear();
    for arb in arbiters {
        arb.stop();
    }
    let (hist, elapsed) = result?;
    let secs = elapsed.as_secs_f64().max(1e-9);
    let done = shared.done.load(Ordering::Relaxed);
    let report = Report {
        msgs_per_sec: done as f64 / secs,
        mb_per_sec: shared.bytes.load(Ordering::Relaxed) as f64 / 1e6 / secs,
        p50_us: hist.value_at_quantile(0.5),
        p99_us: hist.value_at_quantile(0.99),
        p999_us: hist.value_at_quantile(0.999),
        max_us: hist.max(),
        errors: shared.errors.load(Ordering::Relaxed),
    };
    if a.rate > 0 && report.msgs_per_sec < a.rate as f64 * 0.9 {
        eprintln!(
            "warning: reached {:.0} msgs/s of the {} asked for; raise --inflight, --batch or --clients",
            report.msgs_per_sec, a.rate
        );
    }
    if a.json {
        out!("{}", serde_json::to_string(&report)?);
    } else {
        out!(
            "{:?}: {done} msgs in {secs:.2} s: {:.0} msgs/s, {:.2} MB/s; latency p50 {} µs, p99 {} µs, p99.9 {} µs, max {} µs; {} error(s)",
            a.mode,
            report.msgs_per_sec,
            report.mb_per_sec,
            report.p50_us,
            report.p99_us,
            report.p999_us,
            report.max_us,
            report.errors
        );
    }
    if done == 0 && report.errors > 0 {
        bail!("every request failed ({} error(s))", report.errors);
    }
    Ok(())
}

fn progress_bar(count: u64) -> ProgressBar {
    super::progress_bar(count)
}

/// Updates the bar until `rx` completes.
async fn wait_with_progress<T>(
    rx: oneshot::Receiver<T>,
    shared: &Shared,
    bar: &ProgressBar,
) -> Option<T> {
    tokio::pin!(rx);
    loop {
        tokio::select! {
            r = &mut rx => return r.ok(),
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                bar.set_position(shared.done.load(Ordering::Relaxed));
            }
        }
    }
}

/// Runs the producers; with `record`, their request latencies are the
/// result's histogram.
async fn produce(
    a: &BenchArgs,
    shared: &Arc<Shared>,
    bar: &ProgressBar,
    arbiters: &mut Vec<Arbiter>,
    record: bool,
) -> anyhow::Result<(Histogram<u64>, Duration)> {
    let body: Bytes = {
        let mut rng = rand::thread_rng();
        (0..a.size)
            .map(|_| rng.gen_range(b'a'..=b'z'))
            .collect::<Vec<u8>>()
            .into()
    };
    let mut waits = Vec::new();
    for c in 0..a.clients {
        let cfg = ClientConfig::new(&a.namesrv);
        let (group, topic, body, shared) = (
            a.group.clone(),
            a.topic.clone(),
            body.clone(),
            shared.clone(),
        );
        let (batch, inflight) = (a.batch, a.inflight);
        let stamp_us = a.mode == BenchMode::E2e;
        waits.push(on_arbiter(arbiters, move || async move {
            let producer = Producer::start(cfg, &format!("{group}-{c}"))?;
            let slots = (0..inflight).map(|_| {
                send_loop(
                    producer.clone(),
                    topic.clone(),
                    body.clone(),
                    batch,
                    stamp_us,
                    shared.clone(),
                )
            });
            let mut hist = histogram()?;
            for h in futures::future::join_all(slots).await {
                hist.add(h?)?;
            }
            anyhow::Ok(hist)
        }));
    }
    let mut hist = histogram()?;
    let mut first_err = None;
    for w in waits {
        match wait_with_progress(w, shared, bar).await {
            Some(Ok(h)) => hist.add(h)?,
            Some(Err(e)) => first_err = first_err.or(Some(e)),
            None => first_err = first_err.or(Some(anyhow::anyhow!("a bench client stopped"))),
        }
    }
    let elapsed = shared.start.elapsed();
    if let Some(e) = first_err {
        return Err(e);
    }
    if !record {
        hist.reset();
    }
    Ok((hist, elapsed))
}

/// One in-flight slot of one producer client.
async fn send_loop(
    p: Producer,
    topic: String,
    body: Bytes,
    batch: usize,
    stamp_us: bool,
    shared: Arc<Shared>,
) -> anyhow::Result<Histogram<u64>> {
    let mut hist = histogram()?;
    let batch = u64::try_from(batch).unwrap_or(1);
    loop {
        let (n, first) = shared.claim(batch);
        if n == 0 {
            return Ok(hist);
        }
        shared.pace(first).await;
        // e2e measures arrival - born in µs: the born time in ms alone
        // would overstate every sample by up to 999 µs.
        let msg = || MessageData {
            body: body.clone(),
            born_timestamp: now_ms(),
            properties: if stamp_us {
                vec![(BORN_US.to_string(), now_us().to_string())]
            } else {
                Vec::new()
            },
            ..MessageData::default()
        };
        let t0 = Instant::now();
        let ok = if batch == 1 {
            p.send(&topic, msg()).await.is_ok()
        } else {
            p.send_batch(&topic, (0..n).map(|_| msg()).collect())
                .await
                .is_ok()
        };
        if ok {
            hist.saturating_record(micros(t0.elapsed()));
            shared.done.fetch_add(n, Ordering::Relaxed);
            shared
                .bytes
                .fetch_add(n * body.len() as u64, Ordering::Relaxed);
        } else {
            shared.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Property carrying the producer's clock in µs (e2e mode).
const BORN_US: &str = "BENCH_BORN_US";

/// Every queue of the topic with its (min, max) offsets.
async fn queue_ranges(
    c: &PullConsumer,
    topic: &str,
) -> anyhow::Result<Vec<(MessageQueue, u64, u64)>> {
    let mut out = Vec::new();
    for q in c.queues(topic).await? {
        let o = c.queue_offsets(&q).await?;
        out.push((q, o.min_offset, o.max_offset));
    }
    Ok(out)
}

/// Reads the backlog: each client pulls its share of the queues from their
/// min offset up to the max offset seen at start.
async fn consume_backlog(
    a: &BenchArgs,
    shared: &Arc<Shared>,
    bar: &ProgressBar,
    arbiters: &mut Vec<Arbiter>,
) -> anyhow::Result<(Histogram<u64>, Duration)> {
    let probe = PullConsumer::start(ClientConfig::new(&a.namesrv), &a.group)?;
    let ranges = queue_ranges(&probe, &a.topic).await?;
    let backlog: u64 = ranges
        .iter()
        .map(|(_, lo, hi)| hi.saturating_sub(*lo))
        .sum();
    if backlog == 0 {
        bail!(
            "topic '{}' has no backlog to consume; run `skylark bench produce` first",
            a.topic
        );
    }
    bar.set_length(backlog.min(a.count));
    let start = Instant::now();
    let mut waits = Vec::new();
    for c in 0..a.clients {
        let mine: Vec<_> = ranges.iter().skip(c).step_by(a.clients).cloned().collect();
        if mine.is_empty() {
            continue;
        }
        let (cfg, group, shared) = (
            ClientConfig::new(&a.namesrv),
            a.group.clone(),
            shared.clone(),
        );
        // Large pulls: a backlog read is bounded by round trips, not bytes.
        let max = u32::try_from(a.batch.max(256)).unwrap_or(256);
        waits.push(on_arbiter(arbiters, move || async move {
            let consumer = PullConsumer::start(cfg, &group)?;
            let tasks = mine
                .into_iter()
                .map(|(q, lo, hi)| drain_queue(consumer.clone(), q, lo, hi, max, shared.clone()));
            let mut hist = histogram()?;
            for h in futures::future::join_all(tasks).await {
                hist.add(h?)?;
            }
            anyhow::Ok(hist)
        }));
    }
    let mut hist = histogram()?;
    for w in waits {
        match wait_with_progress(w, shared, bar).await {
            Some(r) => hist.add(r?)?,
            None => bail!("a bench client stopped"),
        }
    }
    Ok((hist, start.elapsed()))
}

async fn drain_queue(
    c: PullConsumer,
    q: MessageQueue,
    mut offset: u64,
    end: u64,
    max: u32,
    shared: Arc<Shared>,
) -> anyhow::Result<Histogram<u64>> {
    let mut hist = histogram()?;
    let mut failures = 0;
    while offset < end && shared.done.load(Ordering::Relaxed) < shared.count {
        let t0 = Instant::now();
        match c.pull(&q, offset, max, None, Duration::ZERO).await {
            Ok(r) => {
                hist.saturating_record(micros(t0.elapsed()));
                let n = r.messages.len() as u64;
                let bytes: u64 = r.messages.iter().map(|m| m.body.len() as u64).sum();
                shared.done.fetch_add(n, Ordering::Relaxed);
                shared.bytes.fetch_add(bytes, Ordering::Relaxed);
                if r.next_offset <= offset {
                    break; // nothing more to read
                }
                offset = r.next_offset;
            }
            Err(e) => {
                shared.errors.fetch_add(1, Ordering::Relaxed);
                failures += 1;
                if failures > 10 {
                    return Err(e.into());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    Ok(hist)
}

/// Consumers long-poll from the end of every queue while producers send;
/// the histogram holds arrival − born per message.
async fn e2e(
    a: &BenchArgs,
    shared: &Arc<Shared>,
    bar: &ProgressBar,
    arbiters: &mut Vec<Arbiter>,
) -> anyhow::Result<(Histogram<u64>, Duration)> {
    let consumer = PullConsumer::start(ClientConfig::new(&a.namesrv), &a.group)?;
    let ranges = match queue_ranges(&consumer, &a.topic).await {
        Ok(r) => r,
        Err(_) => {
            // A new topic: one warm-up send creates it (auto-create), then
            // the consumers start after it.
            let p = Producer::start(
                ClientConfig::new(&a.namesrv),
                &format!("{}-warmup", a.group),
            )?;
            p.send(&a.topic, MessageData::new("warm-up")).await?;
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match queue_ranges(&consumer, &a.topic).await {
                    Ok(r) => break r,
                    Err(e) if Instant::now() >= deadline => return Err(e),
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        }
    };
    // Received messages count separately from sent ones.
    let received = Shared::new(a.count, 0);
    let mut tasks = Vec::new();
    for (q, _, hi) in ranges {
        let (c, recv) = (consumer.clone(), received.clone());
        let (tx, rx) = oneshot::channel();
        actix::spawn(async move {
            let _ = tx.send(follow_queue(c, q, hi, recv).await);
        });
        tasks.push(rx);
    }
    let start = Instant::now();
    let sent = produce(a, shared, &ProgressBar::hidden(), arbiters, false).await;
    // Wait for the stragglers, or give up after a quiet period.
    let target = shared.done.load(Ordering::Relaxed);
    let mut last = received.done.load(Ordering::Relaxed);
    let mut quiet_since = Instant::now();
    while received.done.load(Ordering::Relaxed) < target && quiet_since.elapsed() < E2E_DRAIN {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = received.done.load(Ordering::Relaxed);
        bar.set_position(now);
        if now != last {
            last = now;
            quiet_since = Instant::now();
        }
    }
    let elapsed = start.elapsed();
    received.stop.store(true, Ordering::Relaxed);
    sent?;
    let mut hist = histogram()?;
    for rx in tasks {
        if let Ok(Ok(h)) = rx.await {
            hist.add(h)?;
        }
    }
    let got = received.done.load(Ordering::Relaxed);
    let missing = target.saturating_sub(got);
    // Report what arrived; lost messages and failed sends are errors.
    shared.done.store(got, Ordering::Relaxed);
    shared
        .bytes
        .store(received.bytes.load(Ordering::Relaxed), Ordering::Relaxed);
    shared.errors.fetch_add(
        received.errors.load(Ordering::Relaxed) + missing,
        Ordering::Relaxed,
    );
    Ok((hist, elapsed))
}

async fn follow_queue(
    c: PullConsumer,
    q: MessageQueue,
    mut offset: u64,
    shared: Arc<Shared>,
) -> anyhow::Result<Histogram<u64>> {
    let mut hist = histogram()?;
    while !shared.stop.load(Ordering::Relaxed) {
        match c
            .pull(&q, offset, 64, None, Duration::from_millis(500))
            .await
        {
            Ok(r) => {
                let now = now_us();
                for m in &r.messages {
                    let born_us = m
                        .property(BORN_US)
                        .and_then(|v| v.parse::<i64>().ok())
                        .unwrap_or_else(|| m.born_timestamp.saturating_mul(1000));
                    let lat = now.saturating_sub(born_us);
                    hist.saturating_record(u64::try_from(lat).unwrap_or(0));
                    shared
                        .bytes
                        .fetch_add(m.body.len() as u64, Ordering::Relaxed);
                }
                shared
                    .done
                    .fetch_add(r.messages.len() as u64, Ordering::Relaxed);
                offset = offset.max(r.next_offset);
            }
            Err(_) => {
                shared.errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    Ok(hist)
}
