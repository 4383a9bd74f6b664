//! Prometheus metrics (issue 14): one registry per process, served on
//! `GET /metrics` ([`server`]), names after RocketMQ's RIP-46 where one
//! exists. `docs/metrics.md` lists every metric.
//!
//! Why it is shaped this way: the send path must not pay for metrics.
//!
//! * Most values are **computed at scrape time** from state the owners keep
//!   anyway: messages and bytes in per topic (the Storage actor's per-topic
//!   put counts), queue max offsets, committed offsets (lag), the Scheduler's
//!   and Transaction's backlogs, the Replicator's slave sessions, the
//!   CommitLog's offsets. A scrape asks each owner once with a typed message
//!   ([`Source::collect`]); nothing is counted per message for them.
//! * What only the request path sees (request latency by command, messages
//!   pulled per group) is recorded per request into **per-thread shards**
//!   ([`broker::BrokerMetrics`]): an uncontended lock and a thread-local
//!   [`prometheus::local::LocalHistogram`], flushed into the shared
//!   histogram only when a scrape runs. Nothing shared is written per
//!   request, and a coalesced batch of sends is one request.
//! * Recording is off until this process serves metrics ([`recording`]),
//!   so a broker without `metrics_port` pays one relaxed load per request.
//! * Process-wide instruments that fire rarely (a CommitLog fsync, a `Busy`
//!   rejection, an ACL refusal) are plain atomic prometheus metrics in [`process_registry`].
//!
//! Each running Broker, NameServer and controller registers a [`Source`] here at start
//! (a weak reference, gone when it stops); every `/metrics` endpoint of the
//! process serves the process registry plus every live source, so
//! `standalone`'s one endpoint shows its NameServer and its Broker.

pub mod broker;
pub mod broker_source;
pub mod connections;
pub mod controller;
pub mod families;
pub mod namesrv;
pub mod namesrv_source;
pub mod server;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use futures::future::LocalBoxFuture;
use prometheus::proto::MetricFamily;
use prometheus::{Encoder, Histogram, HistogramOpts, IntCounterVec, Opts, Registry, TextEncoder};

pub use connections::{open_connections, CountedConnection, Listener, PROCESS_CONNECTIONS};
pub use server::{serve, MetricsServer};

/// The port `skylark standalone` serves metrics on unless told otherwise.
/// No default of ours uses it (NameServer 9876/9877, brokers 109x1 and
/// their HA ports 109x2).
pub const STANDALONE_METRICS_PORT: u16 = 5557;

/// Longest a scrape waits for one source before leaving it out.
const SOURCE_TIMEOUT: Duration = Duration::from_secs(5);

/// Something that adds metric families to a scrape (a Broker, a NameServer).
pub trait Source: Send + Sync {
    /// The families as of now (asks the owning actors).
    fn collect(&self) -> LocalBoxFuture<'static, Vec<MetricFamily>>;

    /// Which process-wide families this source's role feeds (a Broker:
    /// all of them).
    fn feeds(&self) -> Feeds {
        Feeds {
            commit_log: true,
            busy: true,
        }
    }
}

/// Process-wide families a role can feed: one no live source feeds is left
/// out of the scrape rather than shown forever at 0 (a controller has no
/// CommitLog and never answers `Busy`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Feeds {
    /// `skylark_commitlog_flush_latency_seconds` (a Broker).
    pub commit_log: bool,
    /// `skylark_busy_rejections_total` (the remoting listeners).
    pub busy: bool,
}

static SOURCES: LazyLock<Mutex<Vec<Weak<dyn Source>>>> = LazyLock::new(Mutex::default);
static RECORDING: AtomicBool = AtomicBool::new(false);

/// Adds a source to every scrape of this process while `source` lives.
pub fn register_source(source: &Arc<dyn Source>) {
    let mut s = SOURCES.lock().unwrap_or_else(|e| e.into_inner());
    s.retain(|w| w.strong_count() > 0);
    s.push(Arc::downgrade(source));
}

fn live_sources() -> Vec<Arc<dyn Source>> {
    let s = SOURCES.lock().unwrap_or_else(|e| e.into_inner());
    s.iter().filter_map(Weak::upgrade).collect()
}

/// Whether this process serves metrics, so request-path recording is on.
#[inline]
pub fn recording() -> bool {
    RECORDING.load(Ordering::Relaxed)
}

pub(crate) fn set_recording() {
    RECORDING.store(true, Ordering::Relaxed);
}

/// The process-wide instruments (fsync latency, `Busy` rejections).
pub struct ProcessMetrics {
    pub registry: Registry,
    /// `skylark_commitlog_flush_latency_seconds`: one CommitLog fsync.
    pub flush_latency: Histogram,
    /// `skylark_busy_rejections_total{reason}`.
    pub busy: IntCounterVec,
    /// `skylark_auth_refusals_total{reason}`: requests the ACL refused.
    pub auth_refusals: IntCounterVec,
}

static PROCESS: LazyLock<ProcessMetrics> = LazyLock::new(|| {
    let registry = Registry::new();
    let flush_latency = Histogram::with_opts(
        HistogramOpts::new(
            "skylark_commitlog_flush_latency_seconds",
            "Duration of one CommitLog fsync (fdatasync of a segment).",
        )
        .buckets(vec![
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            2.5, 5.0,
        ]),
    )
    .expect("valid histogram options");
    let busy = IntCounterVec::new(
        Opts::new(
            "skylark_busy_rejections_total",
            "Requests and connections refused with a Busy error, by reason.",
        ),
        &["reason"],
    )
    .expect("valid counter options");
    // Every reason exported from the start, at 0: an alert on the rate of
    // rejections sees 0 rather than an absent series.
    for reason in ["inflight", "connections", "mailbox"] {
        let _ = busy.with_label_values(&[reason]);
    }
    let auth_refusals = IntCounterVec::new(
        Opts::new(
            "skylark_auth_refusals_total",
            "Requests refused by the ACL (AuthFailed or NoPermission), by reason.",
        ),
        &["reason"],
    )
    .expect("valid counter options");
    for reason in crate::acl::reason::Reason::ALL {
        let _ = auth_refusals.with_label_values(&[reason.label()]);
    }
    // Distinct names, so registering cannot fail.
    let _ = registry.register(Box::new(flush_latency.clone()));
    let _ = registry.register(Box::new(busy.clone()));
    let _ = registry.register(Box::new(auth_refusals.clone()));
    ProcessMetrics {
        registry,
        flush_latency,
        busy,
        auth_refusals,
    }
});

/// The process-wide instruments.
pub fn process_registry() -> &'static ProcessMetrics {
    &PROCESS
}

/// Why a request or connection got `Busy` (the `reason` label).
#[derive(Debug, Clone, Copy)]
pub enum BusyReason {
    /// A connection had `max_inflight` requests in flight.
    Inflight,
    /// A listener or the process was at its connection cap.
    Connections,
    /// An actor's mailbox did not take the request in time.
    Mailbox,
}

/// Counts one `Busy` answer (an error path: a shared atomic is fine).
pub fn note_busy(reason: BusyReason) {
    let label = match reason {
        BusyReason::Inflight => "inflight",
        BusyReason::Connections => "connections",
        BusyReason::Mailbox => "mailbox",
    };
    PROCESS.busy.with_label_values(&[label]).inc();
}

/// Counts one ACL refusal (an error path: a shared atomic is fine);
/// `reason` is a [`crate::acl::reason::Reason`] label.
pub fn note_auth_refusal(reason: &str) {
    PROCESS.auth_refusals.with_label_values(&[reason]).inc();
}

/// Records one CommitLog fsync (the flusher thread; one per fsync).
pub fn observe_flush(d: Duration) {
    if recording() {
        PROCESS.flush_latency.observe(d.as_secs_f64());
    }
}

/// The process registry's families the live sources feed (all of them
/// before any source registered).
fn process_families(sources: &[Arc<dyn Source>]) -> Vec<MetricFamily> {
    let mut feeds = Feeds::default();
    for s in sources {
        let f = s.feeds();
        feeds.commit_log |= f.commit_log;
        feeds.busy |= f.busy;
    }
    let all = sources.is_empty();
    PROCESS
        .registry
        .gather()
        .into_iter()
        .filter(|f| match f.name() {
            "skylark_commitlog_flush_latency_seconds" => all || feeds.commit_log,
            "skylark_busy_rejections_total" => all || feeds.busy,
            _ => true,
        })
        .collect()
}

/// Everything this process exports, in the Prometheus text format.
pub async fn scrape() -> String {
    let sources = live_sources();
    let mut all = process_families(&sources);
    let mut f = families::Families::new(&[]);
    let listeners = connections::by_listener();
    f.gauge(
        "skylark_connections",
        "Connections open in this process, by listener.",
        &["listener"],
        listeners
            .iter()
            .map(|(l, open, _)| ([l.label()], *open as f64)),
    );
    f.counter(
        "skylark_connections_accepted_total",
        "Connections accepted since start, by listener.",
        &["listener"],
        listeners
            .iter()
            .map(|(l, _, accepted)| ([l.label()], *accepted)),
    );
    all.extend(f.finish());
    let collects = sources.into_iter().map(|s| async move {
        tokio::time::timeout(SOURCE_TIMEOUT, s.collect())
            .await
            .unwrap_or_default()
    });
    for fams in futures::future::join_all(collects).await {
        all.extend(fams);
    }
    encode(families::merge(all))
}

/// Text exposition of `families` (the crate's encoder, not ours).
pub fn encode(families: Vec<MetricFamily>) -> String {
    let mut buf = Vec::new();
    if TextEncoder::new().encode(&families, &mut buf).is_err() {
        return String::new();
    }
    String::from_utf8(buf).unwrap_or_default()
}
