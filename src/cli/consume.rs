//! `skylark consume`: join a consumer group and print what arrives.
//!
//! A [`PushConsumer`] with one consume worker (so a queue's messages print
//! in queue-offset order) and a listener that prints each message — and
//! flushes stdout — before answering success, so a committed offset never
//! passes an unprinted message. In clustering mode (the default) the
//! group's running members split the topic's queues and rebalance when one
//! joins or leaves; with `--broadcast` every member reads every queue and
//! keeps its offsets in a local file (`--offset-file`, default
//! `~/.skylark_offsets/<instance>/<group>/offsets.json`; `--offset-file`
//! without `--broadcast` is a usage error). A file that cannot be written
//! is refused before joining, and a failed last write (at the end of the
//! run) exits 1 naming the file, since the next run would receive those
//! messages again.
//!
//! A queue starts at the group's committed offset, else per `--from`
//! (`first`, `last`, or a Unix time in ms: the first message stored at or
//! after it). Offsets are committed every few seconds and before exit. The
//! run stops after `--count` messages, after `--idle-timeout` seconds
//! without a new message, or on Ctrl-C or SIGTERM (committing what it printed), and exits 0. `--sql` subscribes
//! with a SQL-92 property filter evaluated on the broker; it is validated
//! here first, so a malformed expression exits non-zero with the parser's
//! reason. The topic and group names are checked as `produce` checks
//! them. A topic that does not exist (yet) is waited for — a warning on
//! stderr says so at once and every 30 s — until it appears, or, with
//! `--idle-timeout`, until that passes (then exit 1, naming the topic).
//!
//! A pull the broker refuses for good once running — the group's
//! `consume_enable` turned off (`PermissionDenied`), the topic made
//! unreadable (`admin topic perm`), the ACL, or SQL filtering switched off
//! on the broker (`InvalidFilter`) — ends the run: it shuts the consumer
//! down as at the end of any run and exits 1 with the broker's reason. A broker that
//! restarts or cannot be reached for a while is waited for. If no broker of
//! the topic can be reached when the run starts (down, or refusing
//! connections: `Busy`, its `max_connections` reached), the run says why on
//! stderr at once and every 30 s while it keeps trying; a run that ends
//! (e.g. by `--idle-timeout`) without ever reaching one exits 1 with the
//! last reason, not 0 as if the topic were empty. A reachable broker with
//! no messages still ends the run with exit 0.
//!
//! `--orderly` consumes each queue in order under a broker lock (one member
//! per queue). `--fail-every N` / `--fail-on TEXT` answer `Retry` for some
//! deliveries (noted on stderr) to watch the retry path: a concurrent
//! consumer sends the message back to `%RETRY%<group>` with the next delay
//! level (10 s, 30 s, 1 min, ...), and after `--max-reconsume-times`
//! failures (default 16) to `%DLQ%<group>`; an orderly one retries it in
//! place. See `examples/retry.rs`.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use skylark_codec::{parse_tag_expression, ConsumeFrom, MessageModel};

use super::ConsumeArgs;
use crate::client::{
    local_offset_path, AllocateStrategy, ConsumeResult, LocalOffsetStore, PullConsumer,
    PullRefusal, PushConsumer, PushConsumerOptions, ReceivedMessage,
};

/// Longest a pull is parked on the broker.
const MAX_SUSPEND: Duration = Duration::from_secs(5);
/// How often printed progress is committed.
const COMMIT_EVERY: Duration = Duration::from_secs(2);

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
            Ok(ms) if ms >= 0 => Ok(From::Timestamp(ms)),
            Ok(ms) => bail!("--from {ms} is before 1970: give first, last or a Unix time in milliseconds (0 or more)"),
            Err(_) => bail!("--from must be first, last or a Unix time in milliseconds, got {s:?}"),
        },
    }
}

/// Entry point of `skylark consume`.
pub fn run(a: ConsumeArgs) -> anyhow::Result<()> {
    skylark_codec::validate_topic_name(&a.topic).map_err(anyhow::Error::msg)?;
    skylark_codec::validate_group_name(&a.group).map_err(anyhow::Error::msg)?;
    if let Some(sql) = &a.sql {
        // Checked here first, so a malformed expression exits with the
        // parser's reason before anything connects.
        skylark_actors::filter::validate(sql).map_err(|e| anyhow::anyhow!("--sql {sql:?}: {e}"))?;
    }
    if let Some(f) = &a.filter {
        parse_tag_expression(f).map_err(|e| anyhow::anyhow!("--filter {f:?}: {e}"))?;
    }
    if a.fail_every == Some(0) {
        bail!("--fail-every must be at least 1");
    }
    if a.orderly && a.broadcast {
        bail!("--orderly and --broadcast do not mix: orderly consumption locks each queue to one member");
    }
    let from = parse_from(&a.from)?;
    let strategy: AllocateStrategy = a.strategy.parse().map_err(anyhow::Error::msg)?;
    if a.count == Some(0) {
        // Nothing to receive: done before joining the group.
        return Ok(());
    }
    if a.broadcast {
        // Before anything else: the consumer would refuse it too, but only
        // after finding the NameServer and the topic.
        let path = a
            .offset_file
            .clone()
            .map_or_else(|| local_offset_path(&a.instance, &a.group), PathBuf::from);
        if let Err(e) = LocalOffsetStore::open(&path) {
            bail!(
                "cannot write the local offset file {} of this broadcasting consumer: {e}",
                path.display()
            );
        }
    }
    super::block_on(consume(a, from, strategy))
}

/// How often "still waiting for the topic" is repeated on stderr.
const TOPIC_WAIT_NOTICE_EVERY: Duration = Duration::from_secs(30);

/// The topic's readable queues. A topic with no route yet (not created, or
/// its broker is still registering after a restart) is waited for, up to
/// `idle` when given, as a RocketMQ consumer waits for its topic — saying
/// so on stderr at once and every 30 s, so a mistyped topic is not a
/// silent hang. With `idle`, the wait ends in an error naming the topic.
async fn wait_for_queues(
    consumer: &PullConsumer,
    topic: &str,
    idle: Option<Duration>,
) -> anyhow::Result<Vec<crate::client::MessageQueue>> {
    let started = tokio::time::Instant::now();
    let deadline = idle.map(|d| started + d);
    let mut next_notice = started;
    loop {
        match consumer.queues(topic).await {
            Ok(q) => return Ok(q),
            Err(crate::client::ClientError::TopicNotFound(_))
                if deadline.is_none_or(|d| tokio::time::Instant::now() < d) =>
            {
                let now = tokio::time::Instant::now();
                if now >= next_notice {
                    note!("{}", topic_wait_notice(topic, idle, now - started));
                    next_notice = now + TOPIC_WAIT_NOTICE_EVERY;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(crate::client::ClientError::TopicNotFound(_)) => bail!(
                "topic '{topic}' does not exist (no broker hosts it); gave up after --idle-timeout {}s",
                idle.map_or(0, |d| d.as_secs())
            ),
            Err(e) => return Err(e.into()),
        }
    }
}

/// What one probe of the topic's brokers found.
enum Reach {
    /// Some broker answered (or there was none to ask).
    Reached,
    /// Every broker asked refused for good (the ACL, a permission); the
    /// first refusal.
    Refused(crate::client::ClientError),
    /// No broker could be reached (connect failed, `Busy`, timeout); the
    /// last failure.
    Failed(crate::client::ClientError),
}

/// Asks each broker of `queues` once: a probe pull at the end of one of its
/// queues (it reads nothing and commits nothing).
async fn probe_brokers(probe: &PullConsumer, queues: &[crate::client::MessageQueue]) -> Reach {
    let mut first_refusal = None;
    let mut last_failure = None;
    let mut brokers = std::collections::BTreeSet::new();
    for q in queues {
        if !brokers.insert(q.broker_addr.clone()) {
            continue;
        }
        let answer = match probe.queue_offsets(q).await {
            Ok(o) => probe
                .pull(q, o.max_offset, 1, None, Duration::ZERO)
                .await
                .map(drop),
            Err(e) => Err(e),
        };
        match answer {
            Err(e) if e.is_refusal() => {
                first_refusal.get_or_insert(e);
            }
            Err(e) => last_failure = Some(e),
            Ok(()) => return Reach::Reached,
        }
    }
    match (first_refusal, last_failure) {
        // Refused by every broker it reached, and none it could not reach:
        // no broker will serve it. One that is only down may yet (waited
        // for, as before).
        (Some(e), None) => Reach::Refused(e),
        (_, Some(e)) => Reach::Failed(e),
        (None, None) => Reach::Reached,
    }
}

/// Refuses at once a group no broker of the topic will serve: a pull the
/// ACL denies (`NoPermission`, `AuthFailed`) or one the group's settings
/// forbid (`consume_enable` off: `PermissionDenied`). The consumer would
/// otherwise retry those pulls quietly forever (or until `--idle-timeout`,
/// exiting 0 with nothing read). A topic that some brokers serve starts as
/// before; one whose brokers cannot be reached yet (down, or refusing
/// connections: `Busy`) starts too, and the failure is given back so the
/// run can say why it waits ([`watch_reach`]).
async fn check_may_consume(
    probe: &PullConsumer,
    queues: &[crate::client::MessageQueue],
) -> anyhow::Result<Option<crate::client::ClientError>> {
    match probe_brokers(probe, queues).await {
        Reach::Refused(e) => bail!("{e}"),
        Reach::Failed(e) => Ok(Some(e)),
        Reach::Reached => Ok(None),
    }
}

/// Whether this run has reached a broker of its topic, and if not, why.
#[derive(Default)]
struct Reachability {
    reached: bool,
    /// The last failure while none was reached.
    last_failure: Option<String>,
}

/// How often an unreached topic's brokers are probed again.
const REACH_PROBE_EVERY: Duration = Duration::from_secs(1);

/// While no broker of the topic has answered, probes them again every
/// [`REACH_PROBE_EVERY`] and says why on stderr at once and every 30 s: a
/// broker refusing connections (`Busy`: its `max_connections` reached) or
/// down used to leave the run silent until `--idle-timeout`, then exit 0
/// as if the topic were empty. Ends once one answers or the run ends.
async fn watch_reach(
    probe: PullConsumer,
    queues: Vec<crate::client::MessageQueue>,
    first: crate::client::ClientError,
    state: std::rc::Rc<std::cell::RefCell<Reachability>>,
    idle: Option<Duration>,
) {
    let started = tokio::time::Instant::now();
    let mut next_notice = started;
    let mut failure = first;
    loop {
        let why = failure.to_string();
        let now = tokio::time::Instant::now();
        if now >= next_notice {
            let until = match idle {
                Some(d) => format!("up to --idle-timeout {}s", d.as_secs()),
                None => "(Ctrl-C to stop; --idle-timeout SECS to give up)".into(),
            };
            note!(
                "warning: no broker of topic '{}' can be reached yet: {why}; retrying {until} [{}s so far]",
                queues.first().map_or("", |q| q.topic.as_str()),
                (now - started).as_secs()
            );
            next_notice = now + TOPIC_WAIT_NOTICE_EVERY;
        }
        state.borrow_mut().last_failure = Some(why);
        tokio::time::sleep(REACH_PROBE_EVERY).await;
        if state.borrow().reached {
            return;
        }
        match probe_brokers(&probe, &queues).await {
            Reach::Failed(e) | Reach::Refused(e) => failure = e,
            Reach::Reached => {
                state.borrow_mut().reached = true;
                return;
            }
        }
    }
}

/// The stderr line while waiting for a topic that has no route.
fn topic_wait_notice(topic: &str, idle: Option<Duration>, waited: Duration) -> String {
    let until = match idle {
        Some(d) => format!("up to --idle-timeout {}s", d.as_secs()),
        None => "until it is created (Ctrl-C to stop; --idle-timeout SECS to give up)".into(),
    };
    format!(
        "warning: topic '{topic}' does not exist (yet): no broker hosts it; waiting {until} [{}s so far]",
        waited.as_secs()
    )
}

/// Which deliveries `--fail-every` / `--fail-on` fail on purpose.
#[derive(Debug, Default)]
struct FailPlan {
    every: Option<u64>,
    on: Option<String>,
    /// Deliveries seen so far (failed ones included).
    deliveries: AtomicU64,
}

impl FailPlan {
    /// Whether this delivery of `m` is to fail; counts the delivery.
    fn fails(&self, m: &ReceivedMessage) -> bool {
        let n = self.deliveries.fetch_add(1, Ordering::SeqCst) + 1;
        let every = self.every.is_some_and(|e| n.is_multiple_of(e));
        let on = self
            .on
            .as_deref()
            .is_some_and(|t| m.body_str().is_some_and(|b| b.contains(t)));
        every || on
    }
}

/// What the printing listener shares with the main loop.
struct Printer {
    json: bool,
    limit: Option<u64>,
    fail: FailPlan,
    printed: AtomicU64,
    /// When the last message was printed.
    last: Mutex<Instant>,
    /// A write to stdout failed (closed pipe): stop.
    failed: Mutex<Option<String>>,
}

impl Printer {
    fn consume(&self, msgs: &[ReceivedMessage]) -> ConsumeResult {
        let hold = ConsumeResult::Suspend(Duration::from_secs(3600));
        let mut out = std::io::stdout().lock();
        for m in msgs {
            if !self
                .limit
                .is_none_or_gt(self.printed.load(Ordering::SeqCst))
            {
                // Over the limit: not consumed, so not committed.
                return hold;
            }
            if self.fail.fails(m) {
                note!(
                    "failing on purpose: msg_id={} queue={} offset={} reconsume_times={} (answered Retry)",
                    m.msg_id, m.queue_id, m.queue_offset, m.reconsume_times
                );
                return ConsumeResult::Retry;
            }
            if let Err(e) = print_message(&mut out, m, self.json).and_then(|_| Ok(out.flush()?)) {
                *self.failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
                return hold;
            }
            self.printed.fetch_add(1, Ordering::SeqCst);
            *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        }
        ConsumeResult::Success
    }
}

async fn consume(a: ConsumeArgs, from: From, strategy: AllocateStrategy) -> anyhow::Result<()> {
    let idle = a.idle_timeout.map(Duration::from_secs);
    let reach = std::rc::Rc::new(std::cell::RefCell::new(Reachability::default()));
    {
        // Wait for the topic's route (e.g. a broker still registering).
        let probe = PullConsumer::start(super::client_config(&a.namesrv), &a.group)?;
        let queues = wait_for_queues(&probe, &a.topic, idle).await?;
        match check_may_consume(&probe, &queues).await? {
            None => reach.borrow_mut().reached = true,
            Some(e) => {
                actix::spawn(watch_reach(
                    probe.clone(),
                    queues.clone(),
                    e,
                    reach.clone(),
                    idle,
                ));
            }
        }
        // A SQL subscription the broker refuses (filtering switched off, or
        // an expression it cannot evaluate) is fatal, with its reason.
        if let Some(sql) = &a.sql {
            let model = if a.broadcast {
                MessageModel::Broadcasting
            } else {
                MessageModel::Clustering
            };
            match probe.heartbeat_sql(&a.topic, sql, model).await {
                Err(crate::client::ClientError::Remote { error, .. })
                    if error.code == skylark_codec::ErrorCode::InvalidFilter =>
                {
                    bail!("{}", error.message);
                }
                Err(e) if e.is_refusal() => bail!("{e}"),
                _ => {}
            }
        } else if a.broadcast {
            // A group whose settings forbid broadcasting refuses the
            // member's heartbeat, and the push consumer would go on
            // without being a member: refuse it here, with the reason.
            let addrs: Vec<String> = queues.iter().map(|q| q.broker_addr.clone()).collect();
            let subs = [(a.topic.clone(), a.filter.clone())];
            if let Err(e) = probe
                .heartbeat(&subs, MessageModel::Broadcasting, &addrs)
                .await
            {
                if e.is_refusal() {
                    bail!("{e}");
                }
            }
        }
    }
    let opts = PushConsumerOptions {
        model: if a.broadcast {
            MessageModel::Broadcasting
        } else {
            MessageModel::Clustering
        },
        consume_from: match from {
            From::First => ConsumeFrom::First,
            From::Last => ConsumeFrom::Last,
            From::Timestamp(ms) => ConsumeFrom::Timestamp(ms),
        },
        strategy,
        consume_threads: 1,
        batch_size: 1,
        commit_interval: COMMIT_EVERY,
        pull_suspend: idle.map_or(MAX_SUSPEND, |i| MAX_SUSPEND.min(i)),
        rebalance_interval: Duration::from_millis(a.rebalance_interval_ms),
        orderly: a.orderly,
        max_reconsume_times: a.max_reconsume_times,
        instance_name: a.instance.clone(),
        local_offset_path: a.offset_file.clone().map(PathBuf::from),
        ..PushConsumerOptions::default()
    };
    let printer = Arc::new(Printer {
        json: a.json,
        limit: a.count,
        fail: FailPlan {
            every: a.fail_every,
            on: a.fail_on.clone(),
            deliveries: AtomicU64::new(0),
        },
        printed: AtomicU64::new(0),
        last: Mutex::new(Instant::now()),
        failed: Mutex::new(None),
    });
    let p = printer.clone();
    // A pull refused for good mid-run (the group's consume_enable turned
    // off, the topic made unreadable, SQL filtering switched off on the
    // broker) ends the run with exit 1 and the broker's reason: the
    // consumer would retry it quietly forever. Transient failures (a
    // broker restarting) are retried.
    let refused: Arc<Mutex<Option<PullRefusal>>> = Arc::default();
    let first_refusal = refused.clone();
    let builder =
        PushConsumer::builder(super::client_config(&a.namesrv), &a.group).on_pull_error(move |r| {
            first_refusal
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert_with(|| r.clone());
        });
    let builder = match &a.sql {
        Some(sql) => builder.subscribe_sql(&a.topic, sql),
        None => builder.subscribe(&a.topic, a.filter.as_deref().unwrap_or("*")),
    };
    let consumer = builder
        .options(opts)
        .start(move |msgs: &[ReceivedMessage]| p.consume(msgs))?;
    // Ctrl-C or SIGTERM (systemd, Kubernetes) ends the run as its end
    // does: the consumer commits what was printed. SIGTERM used to kill
    // the process without that commit, and the next run got it all again.
    let stop = super::server::shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            _ = &mut stop => break,
        }
        if !a
            .count
            .is_none_or_gt(printer.printed.load(Ordering::SeqCst))
        {
            break;
        }
        if printer
            .failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
        {
            break;
        }
        let last = *printer.last.lock().unwrap_or_else(|e| e.into_inner());
        if idle.is_some_and(|i| last.elapsed() >= i) {
            break;
        }
        if refused.lock().unwrap_or_else(|e| e.into_inner()).is_some() {
            break;
        }
    }
    let local_offsets = consumer.local_offsets();
    let given_up = consumer.given_up();
    let damaged = consumer.damaged_skipped();
    consumer.shutdown().await;
    if damaged > 0 {
        note!(
            "{damaged} message(s) were damaged on the broker (failed their checks) and skipped, never delivered: the broker's log names each (DAMAGED RECORD) and its data directory's quarantine/ keeps a copy"
        );
    }
    if given_up > 0 {
        note!(
            "{given_up} message(s) still failing after --max-reconsume-times {} local retries were dropped (a broadcasting consumer has no retry or dead-letter topic)",
            a.max_reconsume_times
        );
    }
    if let Some(e) = printer
        .failed
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    {
        bail!("writing to stdout: {e}");
    }
    if let Some(r) = refused.lock().unwrap_or_else(|e| e.into_inner()).take() {
        bail!("{r}; stopped consuming");
    }
    let unreached = {
        let mut r = reach.borrow_mut();
        let printed_some = printer.printed.load(Ordering::SeqCst) > 0;
        // Ends the watch too, if it is still probing.
        let unreached = !(r.reached || printed_some);
        r.reached = true;
        unreached.then(|| r.last_failure.take()).flatten()
    };
    if let Some(why) = unreached {
        bail!(
            "no broker of topic '{}' could be reached during this run: {why}",
            a.topic
        );
    }
    if let Some(why) = local_offsets.as_ref().and_then(|l| l.last_failure()) {
        let path = local_offsets
            .as_ref()
            .map(|l| l.path().display().to_string());
        bail!(
            "cannot write the local offset file {} of this broadcasting consumer: {why}; the offsets of this run are not saved: the next run receives its messages again",
            path.unwrap_or_default()
        );
    }
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
