//! `skylark bench produce|consume|e2e`: whole-system throughput and latency.
//!
//! Parameters (README "Command line"): `--clients` connections, each a client of its
//! own on its own arbiter thread (so a bench uses several cores); `--batch`
//! messages per send request (a `SendBatch` when > 1); `--rate` a total
//! msgs/s target (0 = as fast as possible); `--inflight` requests each
//! client keeps awaiting an answer (as fast as possible: exactly that many,
//! default 1; with a rate: at most that many, default sized by the bench).
//!
//! Without a rate, senders are closed-loop: each of a client's `--inflight`
//! slots sends, waits for the answer, sends again. With a rate they are
//! open-loop (`bench_open_loop.rs`): message `i` is due at `start + i/R` whatever
//! the broker does, and latency counts from that scheduled time, so a slow
//! broker shows up as latency and a missed rate instead of fewer samples.
//!
//! * `produce`: latency per send request, send → answer (with a rate:
//!   due time → answer).
//! * `consume`: reads the topic's backlog from each queue's min offset;
//!   latency per pull request. It does not pace; `--rate` is ignored.
//! * `e2e`: consumers long-poll from the current end while producers send;
//!   latency per message = arrival time − the time stamped in the message
//!   (the scheduled time with a rate, the send time without).
//!
//! Latencies go to an HDR histogram in µs. `--json` prints one object
//! `{"msgs_per_sec","mb_per_sec","p50_us","p99_us","p999_us","max_us","errors",
//! "client_cpu_secs"}` (MB = 10^6 bytes of message body; `client_cpu_secs` is
//! this process's user + system CPU time), and with a rate also
//! `"target_rate","achieved_rate","inflight_window","window_full_waits",
//! "send_lag_p99_us","send_lag_max_us"`. `achieved_rate` is messages
//! completed (acknowledged, or for e2e received) over the time from the
//! first due send to the last completion; below [`RATE_REACHED`] of the
//! target the command says why on stderr and exits non-zero, after printing
//! the report. A run in which any request failed (or, for e2e, a message
//! went missing) also exits non-zero, naming the first error (it is also
//! `"first_error"` in the JSON); after 100 failures in a row the bench
//! stops rather than send the rest into the same error (a full disk, a
//! topic without write permission). A progress bar shows on stderr when it
//! is a terminal.

// The pacing lives in a sibling file so this one stays about the modes.
#[path = "bench_open_loop.rs"]
mod open_loop;

use std::future::Future;
use std::io::Write;
use std::rc::Rc;
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
use crate::client::{now_ms, now_us, MessageData, MessageQueue, Producer, PullConsumer};
use open_loop::{Load, Plan, SCHED_US};

/// `println!` that returns an error (e.g. a closed pipe) instead of panicking.
macro_rules! out {
    ($($t:tt)*) => {
        writeln!(std::io::stdout().lock(), $($t)*)?
    };
}

/// Failed requests in a row after which a bench stops (see `Shared::fail`).
const GIVE_UP_AFTER: u64 = 100;

/// Highest latency the histograms track (µs); above is clamped.
const MAX_LATENCY_US: u64 = 600_000_000;
/// How long e2e waits for stragglers once producers are done.
const E2E_DRAIN: Duration = Duration::from_secs(10);
/// A run with a rate passes when `achieved_rate ≥ RATE_REACHED × target_rate`.
pub const RATE_REACHED: f64 = 0.95;
/// Time between handing the schedule to the clients and message 0 being due.
const SCHEDULE_LEAD: Duration = Duration::from_millis(5);

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
    /// The first failed request's error, when one failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    first_error: Option<String>,
    /// User + system CPU seconds of this bench process.
    client_cpu_secs: f64,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    paced: Option<PacedReport>,
}

/// The part of the report that exists only with `--rate`.
#[derive(Debug, Serialize)]
struct PacedReport {
    target_rate: u64,
    achieved_rate: f64,
    /// Requests each client could have awaiting an answer.
    inflight_window: usize,
    /// Requests that found that window full and went out late.
    window_full_waits: u64,
    /// How late requests left, send time − due time.
    send_lag_p99_us: u64,
    send_lag_max_us: u64,
}

/// What one mode measured.
struct Run {
    hist: Histogram<u64>,
    /// When sending (or reading) started: message 0's due time with a rate.
    started: Instant,
    /// From `started` to the last completion.
    elapsed: Duration,
    paced: Option<Paced>,
}

/// What the open-loop senders saw, over all clients.
struct Paced {
    window: usize,
    requests: u64,
    window_full_waits: u64,
    send_lag: Histogram<u64>,
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
    /// Requests failed since the last success (a run of them stops the
    /// bench: [`GIVE_UP_AFTER`]).
    failing: AtomicU64,
    /// The first failure's text, for the report.
    first_error: std::sync::Mutex<Option<String>>,
    /// Set when a run of failures stopped the senders.
    gave_up: AtomicBool,
    /// When the last message completed, µs after `start`.
    last_done_us: AtomicU64,
    /// Set when workers should stop.
    stop: AtomicBool,
    count: u64,
    start: Instant,
}

impl Shared {
    fn new(count: u64) -> Arc<Shared> {
        Arc::new(Shared {
            claimed: AtomicU64::new(0),
            done: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            failing: AtomicU64::new(0),
            first_error: std::sync::Mutex::new(None),
            gave_up: AtomicBool::new(false),
            last_done_us: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            count,
            start: Instant::now(),
        })
    }

    /// Counts a failed request and keeps the first one's text. After
    /// [`GIVE_UP_AFTER`] failures in a row (a full disk, a topic without
    /// write permission) the senders stop: the rest would fail the same way.
    fn fail(&self, e: &dyn std::fmt::Display) {
        self.note_error(e);
        if self.failing.fetch_add(1, Ordering::Relaxed) + 1 >= GIVE_UP_AFTER {
            self.gave_up.store(true, Ordering::Relaxed);
            self.stop.store(true, Ordering::Relaxed);
        }
    }

    /// Counts a failed request and keeps the first one's text, without
    /// stopping anything (pulls, which retry on their own).
    fn note_error(&self, e: &dyn std::fmt::Display) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut first) = self.first_error.lock() {
            first.get_or_insert_with(|| e.to_string());
        }
    }

    /// Notes a successful request (ends a run of failures). Only a read
    /// while nothing fails: every client's sends pass here, and a store
    /// would bounce the line between their threads on every answer.
    fn succeeded(&self) {
        if self.failing.load(Ordering::Relaxed) != 0 {
            self.failing.store(0, Ordering::Relaxed);
        }
    }

    /// The first failure's text, if any.
    fn first_error(&self) -> Option<String> {
        self.first_error.lock().ok().and_then(|f| f.clone())
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

    /// Notes that a message completed now.
    fn mark_done(&self) {
        self.last_done_us
            .fetch_max(micros(self.start.elapsed()), Ordering::Relaxed);
    }

    /// When the last message completed (`start` if none did).
    fn last_done(&self) -> Instant {
        self.start + Duration::from_micros(self.last_done_us.load(Ordering::Relaxed))
    }
}

fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)?)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// User + system CPU time of this process so far, in seconds.
fn client_cpu_secs() -> f64 {
    // SAFETY: `rusage` is plain integers, valid all-zero; `getrusage` only
    // writes into the struct it is given, which outlives the call.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return 0.0;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(u.ru_utime) + secs(u.ru_stime)
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
    if a.clients == 0 || a.batch == 0 || a.inflight == Some(0) {
        bail!("--clients, --batch and --inflight must be at least 1");
    }
    if a.count == 0 {
        bail!("--count must be at least 1");
    }
    if a.size == 0 {
        bail!("--size must be at least 1 (a message needs a body)");
    }
    check_topic_and_size(&a)?;
    if a.mode == BenchMode::Consume && a.rate > 0 {
        note!("note: bench consume reads the backlog as fast as it can; --rate is ignored");
    }
    actix::System::new().block_on(bench(a))
}

/// `--topic` checked as `produce` checks it, and `--size` against the
/// producer's largest body (`max_message_size`, the broker's default),
/// before anything connects: a usage error (exit 2). A bad one failed every
/// send of the run, one by one, until it gave up.
fn check_topic_and_size(a: &BenchArgs) -> anyhow::Result<()> {
    let usage = |message: String| super::ExitError { code: 2, message };
    skylark_codec::validate_topic_name(&a.topic).map_err(|e| usage(format!("--topic: {e}")))?;
    let limit = super::client_config(&a.namesrv).max_message_size;
    if a.mode != BenchMode::Consume && a.size > limit {
        return Err(usage(format!(
            "--size {} is above the largest message body, {limit} bytes (max_message_size; brokers refuse a bigger one with MessageTooLarge)",
            a.size
        ))
        .into());
    }
    Ok(())
}

/// The rate asked for, if this mode paces.
fn target_rate(a: &BenchArgs) -> Option<u64> {
    (a.rate > 0 && a.mode != BenchMode::Consume).then_some(a.rate)
}

/// What every mode runs with: the arguments, the counters the progress bar
/// and the report read, and the arbiters (threads) its clients run on.
struct Ctx<'a> {
    a: &'a BenchArgs,
    shared: &'a Arc<Shared>,
    arbiters: Vec<Arbiter>,
}

async fn bench(a: BenchArgs) -> anyhow::Result<()> {
    let shared = Shared::new(a.count);
    let bar = progress_bar(a.count);
    let mut cx = Ctx {
        a: &a,
        shared: &shared,
        arbiters: Vec::new(),
    };
    let result = match a.mode {
        BenchMode::Produce => produce(&mut cx, &bar, true).await,
        BenchMode::Consume => consume_backlog(&mut cx, &bar).await,
        BenchMode::E2e => e2e(&mut cx, &bar).await,
    };
    bar.finish_and_clear();
    for arb in cx.arbiters {
        arb.stop();
    }
    let run = result?;
    let secs = run.elapsed.as_secs_f64().max(1e-9);
    let done = shared.done.load(Ordering::Relaxed);
    let hist = &run.hist;
    let msgs_per_sec = done as f64 / secs;
    let report = Report {
        msgs_per_sec,
        mb_per_sec: shared.bytes.load(Ordering::Relaxed) as f64 / 1e6 / secs,
        p50_us: hist.value_at_quantile(0.5),
        p99_us: hist.value_at_quantile(0.99),
        p999_us: hist.value_at_quantile(0.999),
        max_us: hist.max(),
        errors: shared.errors.load(Ordering::Relaxed),
        first_error: shared.first_error(),
        client_cpu_secs: client_cpu_secs(),
        paced: target_rate(&a)
            .zip(run.paced.as_ref())
            .map(|(target, p)| PacedReport {
                target_rate: target,
                achieved_rate: msgs_per_sec,
                inflight_window: p.window,
                window_full_waits: p.window_full_waits,
                send_lag_p99_us: p.send_lag.value_at_quantile(0.99),
                send_lag_max_us: p.send_lag.max(),
            }),
    };
    if a.json {
        out!("{}", serde_json::to_string(&report)?);
    } else {
        print_human(&a, &report, done, secs)?;
    }
    let first = report
        .first_error
        .as_deref()
        .map(|e| format!("; the first: {e}"))
        .unwrap_or_default();
    let gave_up = if shared.gave_up.load(Ordering::Relaxed) {
        format!(" (stopped after {GIVE_UP_AFTER} failures in a row)")
    } else {
        String::new()
    };
    if done == 0 && report.errors > 0 {
        bail!(
            "every request failed ({} error(s)){gave_up}{first}",
            report.errors
        );
    }
    if let (Some(p), Some(paced)) = (&report.paced, &run.paced) {
        if p.achieved_rate < RATE_REACHED * p.target_rate as f64 {
            bail!("{}{first}", shortfall(&report, p, paced, secs));
        }
    }
    if report.errors > 0 {
        bail!(
            "{} request(s) failed or message(s) went missing{gave_up}{first}",
            report.errors
        );
    }
    Ok(())
}

fn print_human(a: &BenchArgs, r: &Report, done: u64, secs: f64) -> anyhow::Result<()> {
    out!(
        "{:?}: {done} msgs in {secs:.2} s: {:.0} msgs/s, {:.2} MB/s; latency p50 {} µs, p99 {} µs, p99.9 {} µs, max {} µs; {} error(s); client CPU {:.2} s",
        a.mode,
        r.msgs_per_sec,
        r.mb_per_sec,
        r.p50_us,
        r.p99_us,
        r.p999_us,
        r.max_us,
        r.errors,
        r.client_cpu_secs
    );
    if let Some(p) = &r.paced {
        out!(
            "rate: target {} msgs/s, achieved {:.0} msgs/s; window {} request(s) per client, full {} time(s); send lag p99 {} µs, max {} µs",
            p.target_rate,
            p.achieved_rate,
            p.inflight_window,
            p.window_full_waits,
            p.send_lag_p99_us,
            p.send_lag_max_us
        );
    }
    Ok(())
}

/// Why a paced run fell short of its rate, in words an operator can act on.
fn shortfall(r: &Report, p: &PacedReport, paced: &Paced, secs: f64) -> String {
    let head = format!(
        "target rate not reached: {:.0} msgs/s achieved of the {} asked for (below the {:.0}% threshold)",
        p.achieved_rate,
        p.target_rate,
        RATE_REACHED * 100.0
    );
    // A full window makes requests late too, so it is the broker's doing
    // only when a good share of requests met it; lateness without it is the
    // client's own (CPU, timers).
    let why = if p.window_full_waits.saturating_mul(10) >= paced.requests {
        format!(
            "{} of {} requests found the in-flight window ({} per client) full and went out late; \
             the broker answered too slowly for this window: add --clients or --batch, raise --inflight, \
             or lower --rate",
            p.window_full_waits, paced.requests, p.inflight_window
        )
    } else if p.send_lag_p99_us > 10_000 {
        format!(
            "the bench client fell behind its own schedule (send lag p99 {} µs, in-flight window full \
             for {} of {} requests; it used {:.1} s of CPU in {secs:.1} s): the client is the limit; \
             add --batch or --clients, or run the bench on a less loaded machine",
            p.send_lag_p99_us, p.window_full_waits, paced.requests, r.client_cpu_secs
        )
    } else if r.errors > 0 {
        format!("{} request(s) failed or message(s) went missing", r.errors)
    } else {
        format!(
            "requests left on time but completions trailed them (latency p99 {} µs, max {} µs)",
            r.p99_us, r.max_us
        )
    };
    format!("{head}: {why}")
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

/// A random lowercase body of `size` bytes.
fn random_body(size: usize) -> Bytes {
    let mut rng = rand::thread_rng();
    (0..size)
        .map(|_| rng.gen_range(b'a'..=b'z'))
        .collect::<Vec<u8>>()
        .into()
}

/// Runs the producers, open-loop with a rate, closed-loop without; with
/// `record`, their request latencies are the result's histogram.
async fn produce(cx: &mut Ctx<'_>, bar: &ProgressBar, record: bool) -> anyhow::Result<Run> {
    let mut run = if cx.a.rate > 0 {
        produce_paced(cx, bar).await?
    } else {
        produce_closed(cx, bar).await?
    };
    if !record {
        run.hist.reset();
    }
    Ok(run)
}

/// What one producer client takes onto its arbiter.
struct Client {
    cfg: crate::client::ClientConfig,
    group: String,
    topic: String,
    body: Bytes,
    shared: Arc<Shared>,
    /// e2e: every message carries its scheduled (or send) time.
    stamp: bool,
}

impl Client {
    fn new(a: &BenchArgs, body: &Bytes, shared: &Arc<Shared>) -> Client {
        Client {
            cfg: super::client_config(&a.namesrv),
            group: a.group.clone(),
            topic: a.topic.clone(),
            body: body.clone(),
            shared: shared.clone(),
            stamp: a.mode == BenchMode::E2e,
        }
    }

    /// On the client's arbiter: its producer and what it sends.
    fn start(self, c: usize) -> anyhow::Result<(Producer, Rc<Load>, Arc<Shared>)> {
        let producer = Producer::start(self.cfg, &format!("{}-{c}", self.group))?;
        let load = Rc::new(Load {
            topic: self.topic,
            body: self.body,
            stamp: self.stamp,
        });
        Ok((producer, load, self.shared))
    }
}

/// Closed loop, as fast as possible: `--inflight` slots per client, each
/// sending its next request when the previous one is answered.
async fn produce_closed(cx: &mut Ctx<'_>, bar: &ProgressBar) -> anyhow::Result<Run> {
    let (a, shared) = (cx.a, cx.shared);
    let body = random_body(a.size);
    let started = Instant::now();
    let mut waits = Vec::new();
    for c in 0..a.clients {
        let client = Client::new(a, &body, shared);
        let (batch, inflight) = (a.batch, a.inflight.unwrap_or(1));
        waits.push(on_arbiter(&mut cx.arbiters, move || async move {
            let (producer, load, shared) = client.start(c)?;
            let slots = (0..inflight)
                .map(|_| send_loop(producer.clone(), load.clone(), batch, shared.clone()));
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
    let elapsed = started.elapsed();
    if let Some(e) = first_err {
        return Err(e);
    }
    Ok(Run {
        hist,
        started,
        elapsed,
        paced: None,
    })
}

/// One in-flight slot of one closed-loop producer client.
async fn send_loop(
    p: Producer,
    load: Rc<Load>,
    batch: usize,
    shared: Arc<Shared>,
) -> anyhow::Result<Histogram<u64>> {
    let mut hist = histogram()?;
    let batch = u64::try_from(batch).unwrap_or(1);
    let body = &load.body;
    loop {
        let (n, _) = shared.claim(batch);
        if n == 0 {
            return Ok(hist);
        }
        // No schedule: the stamp is the send time, in µs (the born time in
        // ms alone would overstate every e2e sample by up to 999 µs).
        let msg = || MessageData {
            body: body.clone(),
            born_timestamp: now_ms(),
            properties: if load.stamp {
                vec![(SCHED_US.to_string(), now_us().to_string())]
            } else {
                Vec::new()
            },
            ..MessageData::default()
        };
        let t0 = Instant::now();
        let res = if batch == 1 {
            p.send(&load.topic, msg()).await.map(drop)
        } else {
            p.send_batch(&load.topic, (0..n).map(|_| msg()).collect())
                .await
                .map(drop)
        };
        if let Err(e) = res {
            shared.fail(&e);
        } else {
            shared.succeeded();
            hist.saturating_record(micros(t0.elapsed()));
            shared.done.fetch_add(n, Ordering::Relaxed);
            shared
                .bytes
                .fetch_add(n * body.len() as u64, Ordering::Relaxed);
        }
    }
}

/// Open loop at `--rate`: every client warms up (one unpaced send), then
/// all get one schedule and send their share of it on time (`open_loop`).
async fn produce_paced(cx: &mut Ctx<'_>, bar: &ProgressBar) -> anyhow::Result<Run> {
    let (a, shared) = (cx.a, cx.shared);
    let body = random_body(a.size);
    let window = open_loop::window(a.rate, a.batch, a.clients, a.inflight);
    let mut waits = Vec::new();
    let mut readies = Vec::new();
    let mut gos = Vec::new();
    for c in 0..a.clients {
        let client = Client::new(a, &body, shared);
        let (ready_tx, ready_rx) = oneshot::channel::<()>();
        let (go_tx, go_rx) = oneshot::channel::<Arc<Plan>>();
        readies.push(ready_rx);
        gos.push(go_tx);
        waits.push(on_arbiter(&mut cx.arbiters, move || async move {
            let (producer, load, shared) = client.start(c)?;
            producer
                .send(&load.topic, MessageData::new("bench warm-up"))
                .await?;
            let _ = ready_tx.send(());
            let plan = go_rx.await?;
            open_loop::paced_client(producer, load, plan, c as u64, window, shared).await
        }));
    }
    // A client that failed its warm-up drops its sender; its error comes
    // out of its `wait` below.
    for r in readies {
        let _ = r.await;
    }
    let plan = Arc::new(Plan::new(
        a.rate,
        a.count,
        a.batch as u64,
        a.clients as u64,
        SCHEDULE_LEAD,
    ));
    for g in gos {
        let _ = g.send(plan.clone());
    }
    let mut hist = histogram()?;
    let mut send_lag = histogram()?;
    let mut window_full_waits = 0;
    let mut first_err = None;
    for w in waits {
        match wait_with_progress(w, shared, bar).await {
            Some(Ok(s)) => {
                hist.add(s.latency)?;
                send_lag.add(s.send_lag)?;
                window_full_waits += s.window_full_waits;
            }
            Some(Err(e)) => first_err = first_err.or(Some(e)),
            None => first_err = first_err.or(Some(anyhow::anyhow!("a bench client stopped"))),
        }
    }
    let elapsed = shared.last_done().saturating_duration_since(plan.start);
    if let Some(e) = first_err {
        return Err(e);
    }
    Ok(Run {
        hist,
        started: plan.start,
        elapsed,
        paced: Some(Paced {
            window,
            requests: plan.requests(),
            window_full_waits,
            send_lag,
        }),
    })
}

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
async fn consume_backlog(cx: &mut Ctx<'_>, bar: &ProgressBar) -> anyhow::Result<Run> {
    let (a, shared) = (cx.a, cx.shared);
    let probe = PullConsumer::start(super::client_config(&a.namesrv), &a.group)?;
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
    if backlog < a.count {
        note!(
            "note: topic '{}' holds {backlog} message(s), fewer than --count {}: the figures are for {backlog}",
            a.topic,
            a.count
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
            super::client_config(&a.namesrv),
            a.group.clone(),
            shared.clone(),
        );
        // Large pulls: a backlog read is bounded by round trips, not bytes.
        let max = u32::try_from(a.batch.max(256)).unwrap_or(256);
        waits.push(on_arbiter(&mut cx.arbiters, move || async move {
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
    Ok(Run {
        hist,
        started: start,
        elapsed: start.elapsed(),
        paced: None,
    })
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
                shared.succeeded();
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
                shared.note_error(&e);
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
/// the histogram holds arrival − stamped (scheduled or send) time per
/// message, and the run lasts until the last arrival.
async fn e2e(cx: &mut Ctx<'_>, bar: &ProgressBar) -> anyhow::Result<Run> {
    let (a, shared) = (cx.a, cx.shared);
    let consumer = PullConsumer::start(super::client_config(&a.namesrv), &a.group)?;
    let ranges = match queue_ranges(&consumer, &a.topic).await {
        Ok(r) => r,
        Err(_) => {
            // A new topic: one warm-up send creates it (auto-create), then
            // the consumers start after it.
            let p = Producer::start(
                super::client_config(&a.namesrv),
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
    let received = Shared::new(a.count);
    let mut tasks = Vec::new();
    for (q, _, hi) in ranges {
        let (c, recv) = (consumer.clone(), received.clone());
        let (tx, rx) = oneshot::channel();
        actix::spawn(async move {
            let _ = tx.send(follow_queue(c, q, hi, recv).await);
        });
        tasks.push(rx);
    }
    let sent = produce(cx, &ProgressBar::hidden(), false).await;
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
    received.stop.store(true, Ordering::Relaxed);
    let sent = sent?;
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
    if let (Some(e), Ok(mut first)) = (received.first_error(), shared.first_error.lock()) {
        first.get_or_insert(e);
    }
    Ok(Run {
        hist,
        started: sent.started,
        elapsed: received.last_done().saturating_duration_since(sent.started),
        paced: sent.paced,
    })
}

/// Follows one queue from `offset`, recording arrival − stamp for every
/// message that carries the bench's stamp (warm-up sends do not).
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
                let mut n = 0;
                for m in &r.messages {
                    let Some(stamp) = m.property(SCHED_US).and_then(|v| v.parse::<i64>().ok())
                    else {
                        continue;
                    };
                    let lat = now.saturating_sub(stamp);
                    hist.saturating_record(u64::try_from(lat).unwrap_or(0));
                    shared
                        .bytes
                        .fetch_add(m.body.len() as u64, Ordering::Relaxed);
                    n += 1;
                }
                if n > 0 {
                    shared.done.fetch_add(n, Ordering::Relaxed);
                    shared.mark_done();
                }
                offset = offset.max(r.next_offset);
            }
            Err(e) => {
                shared.note_error(&e);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    Ok(hist)
}
