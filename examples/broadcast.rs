//! Broadcasting: two members of one consumer group each receive every
//! message, and each keeps its own offsets in a local file.
//!
//! Start a server first (`skylark standalone`), then:
//! `SKYLARK_NAMESRV=127.0.0.1:9876 cargo run --example broadcast`.
//! Exits non-zero unless both members got all 20 messages.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use skylark::client::{
    now_ms, ClientConfig, ConsumeFrom, ConsumeResult, MessageData, MessageModel, Producer,
    PushConsumer, PushConsumerOptions, ReceivedMessage,
};

const TOPIC: &str = "BroadcastExample";
const COUNT: usize = 20;

async fn run(namesrv: String) -> anyhow::Result<()> {
    let run_id = now_ms().to_string();
    let producer = Producer::start(ClientConfig::new(&namesrv), "broadcast-producer")?;
    // Make sure the topic exists before the consumers look for its queues.
    producer.send(TOPIC, MessageData::new("warm-up")).await?;

    let offsets_dir = std::env::temp_dir().join(format!("skylark-broadcast-{run_id}"));
    let mut members = Vec::new();
    let mut counters = Vec::new();
    for name in ["member-1", "member-2"] {
        let got = Arc::new(AtomicUsize::new(0));
        let g = got.clone();
        let prefix = run_id.clone();
        let opts = PushConsumerOptions {
            model: MessageModel::Broadcasting,
            consume_from: ConsumeFrom::Last,
            local_offset_path: Some(offsets_dir.join(name).join("offsets.json")),
            ..PushConsumerOptions::default()
        };
        let mut config = ClientConfig::new(&namesrv);
        config.client_id = format!("{}-{name}", config.client_id);
        let label = name.to_string();
        let consumer = PushConsumer::builder(config, "broadcast-example")
            .subscribe(TOPIC, "*")
            .options(opts)
            .start(move |msgs: &[ReceivedMessage]| {
                for m in msgs {
                    let body = m.body_str().unwrap_or_default();
                    if body.starts_with(&prefix) {
                        g.fetch_add(1, Ordering::SeqCst);
                        println!("{label} got {body}");
                    }
                }
                ConsumeResult::Success
            })?;
        members.push(consumer);
        counters.push(got);
    }
    // Wait until both members have taken their queues.
    let deadline = Instant::now() + Duration::from_secs(10);
    while members.iter().any(|m| m.assigned().is_empty()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // An assigned queue's start offset (the end, per ConsumeFrom::Last) is
    // fixed when it is assigned, so what is sent now reaches both.
    for i in 0..COUNT {
        producer
            .send(TOPIC, MessageData::new(format!("{run_id} message {i}")))
            .await?;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while counters.iter().any(|c| c.load(Ordering::SeqCst) < COUNT) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for m in members {
        m.shutdown().await;
    }
    let got: Vec<usize> = counters.iter().map(|c| c.load(Ordering::SeqCst)).collect();
    println!(
        "member-1 got {}, member-2 got {} of {COUNT}",
        got[0], got[1]
    );
    let _ = std::fs::remove_dir_all(&offsets_dir);
    if got.iter().any(|&n| n != COUNT) {
        anyhow::bail!("a broadcast member missed messages");
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let namesrv = std::env::var("SKYLARK_NAMESRV").unwrap_or_else(|_| "127.0.0.1:9876".to_string());
    actix::System::new().block_on(run(namesrv))
}
