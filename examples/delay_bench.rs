//! Benchmark of arbitrary-time delivery: schedules COUNT timer messages
//! whose delivery times are spread evenly over SPREAD_MS, starting LEAD_MS
//! after the run starts, then consumes them all and reports the broker's
//! RSS and the delivery lateness (store time of the delivered copy minus
//! the requested time: p50/p99/p999/max, and how many came early).
//!
//! ```text
//! skylark standalone --data-dir /tmp/bench-delay &
//! SKYLARK_NAMESRV=127.0.0.1:9876 BROKER_PID=$! COUNT=1000000 \
//!     cargo run --release --example delay_bench
//! ```
//!
//! Environment: `COUNT` (1000000), `LEAD_MS` (30000), `SPREAD_MS` (60000),
//! `BATCH` (100 messages per send), `INFLIGHT` (8 sends in flight),
//! `BROKER_PID` (the broker process to sample VmRSS of; optional).
//! Prints one JSON object.

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::stream::{self, StreamExt};
use hdrhistogram::Histogram;
use skylark::client::{ClientConfig, MessageData, Producer, PullConsumer};

const TOPIC: &str = "DelayBench";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A `/proc/<pid>/status` field in KiB (`VmRSS`, `RssAnon`).
fn status_kib(pid: u64, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// (VmRSS, RssAnon) of `pid` in KiB; mapped CommitLog pages count in the
/// first only.
fn rss_kib(pid: u64) -> Option<(u64, u64)> {
    Some((status_kib(pid, "VmRSS:")?, status_kib(pid, "RssAnon:")?))
}

async fn bench(namesrv: String) -> anyhow::Result<()> {
    let (count, lead, spread) = (
        env("COUNT", 1_000_000),
        env("LEAD_MS", 30_000),
        env("SPREAD_MS", 60_000),
    );
    let (batch, inflight, pid) = (
        env("BATCH", 100).max(1),
        env("INFLIGHT", 8).max(1),
        env("BROKER_PID", 0),
    );
    let rss = || if pid > 0 { rss_kib(pid) } else { None };
    let rss_start = rss();

    let producer = Producer::start(ClientConfig::new(&namesrv), "delay-bench-producer")?;
    producer.send(TOPIC, MessageData::new("warm-up")).await?;
    let consumer = PullConsumer::start(ClientConfig::new(&namesrv), "delay-bench-consumer")?;
    let mut cursors = Vec::new();
    for q in consumer.queues(TOPIC).await? {
        let end = consumer.queue_offsets(&q).await?.max_offset;
        cursors.push((q, end));
    }

    let base = now_ms() + lead as i64;
    let started = Instant::now();
    let batches = count.div_ceil(batch);
    let errors = stream::iter(0..batches)
        .map(|b| {
            let msgs: Vec<MessageData> = (b * batch..((b + 1) * batch).min(count))
                .map(|i| {
                    let due = base + (i as u128 * spread as u128 / count.max(1) as u128) as i64;
                    MessageData {
                        deliver_at_ms: Some(due),
                        properties: vec![("bench_due".into(), due.to_string())],
                        ..MessageData::new(i.to_string())
                    }
                })
                .collect();
            let p = &producer;
            async move { p.send_batch(TOPIC, msgs).await.is_err() as u64 }
        })
        .buffer_unordered(inflight as usize)
        .fold(0u64, |a, e| async move { a + e })
        .await;
    let send_secs = started.elapsed().as_secs_f64();
    let rss_scheduled = rss();
    anyhow::ensure!(
        now_ms() < base,
        "sending took longer than LEAD_MS; raise it"
    );

    let mut hist = Histogram::<u64>::new(3)?;
    let (mut early, mut seen, mut dups) = (0u64, HashSet::with_capacity(count as usize), 0u64);
    let mut rss_max = rss_scheduled.unwrap_or((0, 0));
    let deadline = Instant::now() + Duration::from_millis(lead + spread + 120_000);
    let mut polls = 0u64;
    while (seen.len() as u64) < count && Instant::now() < deadline {
        let mut got = 0;
        for (q, offset) in cursors.iter_mut() {
            let r = consumer.pull(q, *offset, 256, None, Duration::ZERO).await?;
            for m in &r.messages {
                got += 1;
                let due: i64 = m
                    .properties
                    .iter()
                    .find(|(k, _)| k == "bench_due")
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                let late = m.store_timestamp - due;
                if late < 0 {
                    early += 1;
                }
                hist.record(late.max(0) as u64)?;
                if !seen.insert(m.body.clone()) {
                    dups += 1;
                }
            }
            *offset = r.next_offset.max(*offset);
        }
        polls += 1;
        if polls.is_multiple_of(50) {
            let (v, a) = rss().unwrap_or((0, 0));
            rss_max = (rss_max.0.max(v), rss_max.1.max(a));
        }
        if got == 0 {
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let out = serde_json::json!({
        "count": count,
        "delivered": seen.len(),
        "duplicates": dups,
        "send_errors": errors,
        "send_secs": send_secs,
        "send_msgs_per_sec": count as f64 / send_secs,
        "lead_ms": lead,
        "spread_ms": spread,
        "broker_vmrss_rssanon_kib_start": rss_start,
        "broker_vmrss_rssanon_kib_scheduled": rss_scheduled,
        "broker_vmrss_rssanon_kib_max_during_delivery": rss_max,
        "early": early,
        "lateness_p50_ms": hist.value_at_quantile(0.5),
        "lateness_p99_ms": hist.value_at_quantile(0.99),
        "lateness_p999_ms": hist.value_at_quantile(0.999),
        "lateness_max_ms": hist.max(),
    });
    println!("{out}");
    anyhow::ensure!(seen.len() as u64 == count, "not every message arrived");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let namesrv = std::env::var("SKYLARK_NAMESRV").unwrap_or_else(|_| "127.0.0.1:9876".to_string());
    actix::System::new().block_on(bench(namesrv))
}
