//! Load from a real RocketMQ client library against Skylark's RocketMQ
//! remoting ports: the published `rocketmq-client-rust` crate, unmodified
//! (a dev-dependency), sending one message per request with a bounded
//! number in flight, or consuming a backlog with a push consumer. Prints one
//! JSON line: messages, seconds, msgs/s and the client's own CPU seconds.
//!
//! ```sh
//! cargo run --release --example rocketmq_client_load -- \
//!     --namesrv 127.0.0.1:9886 --topic RmqBench --mode send --count 200000 --inflight 32
//! cargo run --release --example rocketmq_client_load -- \
//!     --namesrv 127.0.0.1:9886 --topic RmqBench --mode consume --count 200000 --group g1
//! ```
//!
//! `scripts/rmq_sitting.sh` runs it beside `skylark bench` and reads the
//! broker's CPU per message; the figures are in `docs/benchmarks.md`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rocketmq_client_rust::{
    ClientRuntime, ClientRuntimeConfig, ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus,
    DefaultMQProducer, DefaultMQPushConsumer, MQPushConsumer, MessageListenerConcurrently,
};
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_single::Message;

struct Args {
    namesrv: String,
    topic: String,
    mode: String,
    count: u64,
    inflight: usize,
    size: usize,
    group: String,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        namesrv: "127.0.0.1:9886".into(),
        topic: "RmqBench".into(),
        mode: "send".into(),
        count: 100_000,
        inflight: 32,
        size: 128,
        group: "rmq-load-cg".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--namesrv" => a.namesrv = value()?,
            "--topic" => a.topic = value()?,
            "--mode" => a.mode = value()?,
            "--group" => a.group = value()?,
            "--count" => a.count = value()?.parse().map_err(|e| format!("--count: {e}"))?,
            "--inflight" => {
                a.inflight = value()?.parse().map_err(|e| format!("--inflight: {e}"))?
            }
            "--size" => a.size = value()?.parse().map_err(|e| format!("--size: {e}"))?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.count == 0 || a.inflight == 0 {
        return Err("--count and --inflight must be at least 1".into());
    }
    if a.mode != "send" && a.mode != "consume" {
        return Err(format!("--mode is send or consume, not {}", a.mode));
    }
    Ok(a)
}

/// This process's user + system CPU seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line (12 and 13 here), in
    // USER_HZ ticks: 100 a second on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

struct Count(Arc<AtomicU64>);

impl MessageListenerConcurrently for Count {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        _context: &ConsumeConcurrentlyContext,
    ) -> rocketmq_client_rust::ClientResult<ConsumeConcurrentlyStatus> {
        self.0.fetch_add(msgs.len() as u64, Ordering::Relaxed);
        Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let owner = rocketmq_runtime::RuntimeOwner::plan(
        rocketmq_runtime::RuntimeConfig::for_parallelism("rmq-load", 8),
    )
    .map_err(|e| e.to_string())
    .and_then(|p| p.build().map_err(|e| e.to_string()))
    .unwrap_or_else(|e| {
        eprintln!("error: the client runtime: {e}");
        std::process::exit(1)
    });
    let rt = ClientRuntime::try_new(
        owner.root_context().component("client"),
        ClientRuntimeConfig::default(),
        rocketmq_observability::TelemetryHandle::noop(),
    )
    .unwrap_or_else(|e| {
        eprintln!("error: the client runtime: {e}");
        std::process::exit(1)
    });
    let result = if a.mode == "send" {
        send(&a, rt).await
    } else {
        consume(&a, rt).await
    };
    match result {
        Ok((secs, cpu)) => println!(
            "{{\"mode\":\"{}\",\"messages\":{},\"seconds\":{secs:.3},\"msgs_per_sec\":{:.0},\"client_cpu_secs\":{cpu:.3}}}",
            a.mode,
            a.count,
            a.count as f64 / secs
        ),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}

async fn send(a: &Args, rt: Arc<ClientRuntime>) -> Result<(f64, f64), String> {
    let mut p = DefaultMQProducer::builder(rt)
        .producer_group("rmq-load-pg".to_string())
        .name_server_addr(a.namesrv.clone())
        .build();
    p.start()
        .await
        .map_err(|e| format!("start producer: {e}"))?;
    let body = vec![b'x'; a.size];
    let m = || {
        Message::builder()
            .topic(a.topic.as_str())
            .body_slice(&body)
            .build_unchecked()
    };
    // The route is fetched (and the topic created) before the clock starts.
    p.send_with_timeout(m(), 10_000)
        .await
        .map_err(|e| format!("first send: {e}"))?;
    let window = Arc::new(tokio::sync::Semaphore::new(a.inflight));
    let failed = Arc::new(AtomicU64::new(0));
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    for _ in 0..a.count {
        let permit = window
            .clone()
            .acquire_owned()
            .await
            .expect("open semaphore");
        let permit = Mutex::new(Some(permit));
        let failed = failed.clone();
        p.send_with_callback(m(), move |r, _e| {
            if r.is_none() {
                failed.fetch_add(1, Ordering::Relaxed);
            }
            permit.lock().unwrap().take();
        })
        .await
        .map_err(|e| format!("send: {e}"))?;
    }
    let _all = window
        .acquire_many(a.inflight as u32)
        .await
        .expect("open semaphore");
    let (secs, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - cpu0);
    p.shutdown().await;
    match failed.load(Ordering::Relaxed) {
        0 => Ok((secs, cpu)),
        n => Err(format!("{n} sends failed")),
    }
}

async fn consume(a: &Args, rt: Arc<ClientRuntime>) -> Result<(f64, f64), String> {
    let got = Arc::new(AtomicU64::new(0));
    let mut c = DefaultMQPushConsumer::builder(rt)
        .consumer_group(a.group.clone())
        .name_server_addr(a.namesrv.clone())
        .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
        .build();
    c.subscribe(a.topic.as_str(), "*")
        .await
        .map_err(|e| format!("subscribe: {e}"))?;
    c.register_message_listener_concurrently(Count(got.clone()));
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    c.start()
        .await
        .map_err(|e| format!("start consumer: {e}"))?;
    let deadline = t0 + Duration::from_secs(600);
    while got.load(Ordering::Relaxed) < a.count {
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {} messages in 600 s",
                got.load(Ordering::Relaxed),
                a.count
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (secs, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - cpu0);
    c.shutdown().await;
    Ok((secs, cpu))
}
