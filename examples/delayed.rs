//! Delayed messages: one on delay level 2 (5 s) and one delivered 1500 ms
//! after sending (an arbitrary delay), then a consumer that prints when
//! each arrives, measured from its send.
//!
//! Start a server first (`skylark standalone`), then:
//! `SKYLARK_NAMESRV=127.0.0.1:9876 cargo run --example delayed`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use skylark::client::{ClientConfig, MessageData, Producer, PullConsumer};

const TOPIC: &str = "DelayedTopic";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

async fn delayed(namesrv: String) -> anyhow::Result<()> {
    let producer = Producer::start(ClientConfig::new(&namesrv), "delayed-producer")?;
    // Make sure the topic exists, then remember where its queues end so
    // that only the messages sent below are read back.
    producer.send(TOPIC, MessageData::new("warm-up")).await?;
    let consumer = PullConsumer::start(ClientConfig::new(&namesrv), "delayed-consumer")?;
    let mut cursors = Vec::new();
    for q in consumer.queues(TOPIC).await? {
        let end = consumer.queue_offsets(&q).await?.max_offset;
        cursors.push((q, end));
    }

    let started = Instant::now();
    let level = MessageData {
        delay_level: 2, // RocketMQ level 2 = 5 s
        ..MessageData::new("delay level 2 (5 s)")
    };
    let r = producer.send(TOPIC, level).await?;
    println!("sent level-2 message {}", r.msg_id);
    let timed = MessageData {
        deliver_at_ms: Some(now_ms() + 1500), // any time up to max_delay_ms ahead
        ..MessageData::new("deliver at now + 1500 ms")
    };
    let r = producer.send(TOPIC, timed).await?;
    println!("sent 1500 ms message {}", r.msg_id);

    let mut arrived = 0;
    while arrived < 2 && started.elapsed() < Duration::from_secs(30) {
        for (q, offset) in cursors.iter_mut() {
            let r = consumer.pull(q, *offset, 32, None, Duration::ZERO).await?;
            for m in &r.messages {
                arrived += 1;
                println!(
                    "after {:>5} ms: {}",
                    started.elapsed().as_millis(),
                    m.body_str().unwrap_or("<binary>")
                );
            }
            *offset = r.next_offset.max(*offset);
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::ensure!(arrived == 2, "only {arrived} of 2 delayed messages arrived");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let namesrv = std::env::var("SKYLARK_NAMESRV").unwrap_or_else(|_| "127.0.0.1:9876".to_string());
    actix::System::new().block_on(delayed(namesrv))
}
