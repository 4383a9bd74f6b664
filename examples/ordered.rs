//! Ordered messages end to end: send the steps of several orders with the
//! order id as the order key (same key, same queue), consume them with an
//! orderly push consumer (queue locks on the broker, one worker per queue)
//! and check that every order's steps arrive in the order they were sent.
//!
//! Start a server first (`skylark standalone`), then:
//! `SKYLARK_NAMESRV=127.0.0.1:9876 cargo run --example ordered`.
//! Exits non-zero if an order's steps arrive out of order or go missing.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use skylark::client::{
    now_ms, ClientConfig, ConsumeFrom, ConsumeResult, MessageData, Producer, PushConsumer,
    PushConsumerOptions, ReceivedMessage,
};

const TOPIC: &str = "OrderedExample";
const ORDERS: usize = 10;
const STEPS: usize = 5;

async fn run(namesrv: String) -> anyhow::Result<()> {
    let run_id = now_ms();
    let producer = Producer::start(ClientConfig::new(&namesrv), "ordered-producer")?;
    // Interleave the orders: step 0 of every order, then step 1, ...
    for step in 0..STEPS {
        for order in 0..ORDERS {
            let key = format!("order-{order}");
            let msg = MessageData {
                keys: Some(key.clone()),
                ..MessageData::new(format!("{run_id} {key} {step}"))
            };
            producer.send_ordered(TOPIC, msg, &key).await?;
        }
    }
    println!("sent {} steps of {ORDERS} orders", ORDERS * STEPS);

    // order id → steps in arrival order (this run's messages only).
    let seen: Arc<Mutex<BTreeMap<String, Vec<usize>>>> = Arc::default();
    let s = seen.clone();
    let prefix = run_id.to_string();
    let opts = PushConsumerOptions {
        orderly: true,
        consume_from: ConsumeFrom::First,
        consume_threads: 4,
        ..PushConsumerOptions::default()
    };
    let consumer = PushConsumer::builder(ClientConfig::new(&namesrv), &format!("ordered-{run_id}"))
        .subscribe(TOPIC, "*")
        .options(opts)
        .start(move |msgs: &[ReceivedMessage]| {
            for m in msgs {
                let body = m.body_str().unwrap_or_default();
                let parts: Vec<&str> = body.split(' ').collect();
                if let [run, key, step] = parts[..] {
                    if run == prefix {
                        let step = step.parse().unwrap_or(usize::MAX);
                        let mut seen = s.lock().unwrap_or_else(|e| e.into_inner());
                        seen.entry(key.to_string()).or_default().push(step);
                        println!(
                            "queue {} offset {}: {key} step {step}",
                            m.queue_id, m.queue_offset
                        );
                    }
                }
            }
            ConsumeResult::Success
        })?;

    let deadline = Instant::now() + Duration::from_secs(30);
    let total = || -> usize {
        let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.values().map(Vec::len).sum()
    };
    while total() < ORDERS * STEPS && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    consumer.shutdown().await;

    let seen = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let in_order = (0..STEPS).collect::<Vec<_>>();
    let mut ok = seen.len() == ORDERS;
    for (key, steps) in &seen {
        let good = *steps == in_order;
        ok &= good;
        println!(
            "{key}: {steps:?} {}",
            if good { "in order" } else { "OUT OF ORDER" }
        );
    }
    if !ok {
        anyhow::bail!("some order's steps were missing or out of order");
    }
    println!("every order's steps arrived in order");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let namesrv = std::env::var("SKYLARK_NAMESRV").unwrap_or_else(|_| "127.0.0.1:9876".to_string());
    actix::System::new().block_on(run(namesrv))
}
