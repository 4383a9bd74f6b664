//! Retry and dead-letter from a consumer's point of view: a listener that
//! fails, and what RocketMQ semantics do with it.
//!
//! Sends 2 messages: `flaky` fails its first 2 deliveries and then
//! succeeds; `poison` always fails. A failed delivery (the listener answers
//! `ConsumeResult::Retry`) is sent back to the broker, stored in
//! `%RETRY%<group>` with the next delay level (level 3 + retries: 10 s,
//! 30 s, 1 min, ...), and redelivered with `reconsume_times` + 1. After
//! `max_reconsume_times` failures (2 here, 16 by default) the message goes
//! to `%DLQ%<group>` instead, where nobody consumes it; this example then
//! reads it from the DLQ with a second consumer. About 45 s in all.
//!
//! The same from the command line:
//! `skylark consume --group G --topic T --fail-on poison --max-reconsume-times 2`
//! and then `skylark consume --group G-dlq --topic %DLQ%G`.
//!
//! Start a server first (`skylark standalone`), then:
//! `SKYLARK_NAMESRV=127.0.0.1:9876 cargo run --example retry`.
//! Exits non-zero if `flaky` is not consumed after 2 retries or `poison`
//! does not reach the DLQ.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use skylark::client::{
    now_ms, ClientConfig, ConsumeFrom, ConsumeResult, MessageData, Producer, PushConsumer,
    PushConsumerOptions, ReceivedMessage,
};

const TOPIC: &str = "RetryExample";
const MAX_RECONSUME: u32 = 2;

/// One delivery: (body, reconsume_times, what the listener answered).
type Delivery = (String, u32, &'static str);

/// Waits up to `secs` for `done`.
async fn wait(secs: u64, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    true
}

async fn run(namesrv: String) -> anyhow::Result<()> {
    let run_id = now_ms();
    let group = format!("retry-{run_id}");
    let producer = Producer::start(ClientConfig::new(&namesrv), "retry-producer")?;
    for name in ["flaky", "poison"] {
        producer
            .send(TOPIC, MessageData::new(format!("{run_id} {name}")))
            .await?;
    }
    println!("sent 'flaky' and 'poison' to {TOPIC}");

    let log: Arc<Mutex<Vec<Delivery>>> = Arc::default();
    let l = log.clone();
    let prefix = run_id.to_string();
    let opts = PushConsumerOptions {
        consume_from: ConsumeFrom::First,
        max_reconsume_times: MAX_RECONSUME,
        ..PushConsumerOptions::default()
    };
    let consumer = PushConsumer::builder(ClientConfig::new(&namesrv), &group)
        .subscribe(TOPIC, "*")
        .options(opts)
        .start(move |msgs: &[ReceivedMessage]| {
            let mut result = ConsumeResult::Success;
            for m in msgs {
                let body = m.body_str().unwrap_or_default();
                let Some(name) = body.strip_prefix(&format!("{prefix} ")) else {
                    continue;
                };
                let fail = name == "poison" || (name == "flaky" && m.reconsume_times < 2);
                let answer = if fail { "Retry" } else { "Success" };
                println!(
                    "{name}: delivery with reconsume_times={} -> {answer}",
                    m.reconsume_times
                );
                l.lock().unwrap_or_else(|e| e.into_inner()).push((
                    name.to_string(),
                    m.reconsume_times,
                    answer,
                ));
                if fail {
                    result = ConsumeResult::Retry;
                }
            }
            result
        })?;
    let seen = |name: &str, answer: &str| {
        log.lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|(n, r, a)| n == name && *a == answer && *r == MAX_RECONSUME)
    };
    // Delay levels 3 and 4 (10 s + 30 s) before the third delivery.
    let retried = wait(120, || seen("flaky", "Success") && seen("poison", "Retry")).await;
    consumer.shutdown().await;
    if !retried {
        anyhow::bail!(
            "the retries did not arrive: {:?}",
            log.lock().unwrap_or_else(|e| e.into_inner())
        );
    }
    println!(
        "'flaky' consumed on its third delivery; 'poison' failed {} times",
        MAX_RECONSUME + 1
    );

    // 'poison' is now in the group's dead-letter queue.
    let dlq = format!("%DLQ%{group}");
    let found = Arc::new(Mutex::new(false));
    let f = found.clone();
    let needle = format!("{run_id} poison");
    let dlq_reader = PushConsumer::builder(ClientConfig::new(&namesrv), &format!("{group}-dlq"))
        .subscribe(&dlq, "*")
        .options(PushConsumerOptions {
            consume_from: ConsumeFrom::First,
            ..PushConsumerOptions::default()
        })
        .start(move |msgs: &[ReceivedMessage]| {
            for m in msgs {
                if m.body_str() == Some(needle.as_str()) {
                    println!(
                        "found 'poison' in {} (queue {} offset {})",
                        m.topic, m.queue_id, m.queue_offset
                    );
                    *f.lock().unwrap_or_else(|e| e.into_inner()) = true;
                }
            }
            ConsumeResult::Success
        })?;
    let in_dlq = wait(30, || *found.lock().unwrap_or_else(|e| e.into_inner())).await;
    dlq_reader.shutdown().await;
    if !in_dlq {
        anyhow::bail!("'poison' never showed up in {dlq}");
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let namesrv = std::env::var("SKYLARK_NAMESRV").unwrap_or_else(|_| "127.0.0.1:9876".to_string());
    actix::System::new().block_on(run(namesrv))
}
