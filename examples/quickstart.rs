//! Quickstart: send 10 messages with the client library, pull them back.
//!
//! Start a server first (`skylark standalone`), then:
//! `SKYLARK_NAMESRV=127.0.0.1:9876 cargo run --example quickstart`.
//! The topic `QuickstartTopic` must exist (`skylark admin topic create
//! --name QuickstartTopic`) unless the broker creates topics automatically.

use std::time::Duration;

use skylark::client::{ClientConfig, MessageData, Producer, PullConsumer};

const TOPIC: &str = "QuickstartTopic";

async fn quickstart(namesrv: String) -> anyhow::Result<()> {
    let producer = Producer::start(ClientConfig::new(&namesrv), "quickstart-producer")?;
    for i in 0..10 {
        let msg = MessageData {
            tags: Some("TagA".into()),
            keys: Some(format!("key-{i}")),
            ..MessageData::new(format!("Hello Skylark {i}"))
        };
        let r = producer.send(TOPIC, msg).await?;
        println!(
            "sent {} to queue {} at offset {}",
            r.msg_id, r.queue_id, r.queue_offset
        );
    }

    let consumer = PullConsumer::start(ClientConfig::new(&namesrv), "quickstart-consumer")?;
    let mut received = 0;
    for queue in consumer.queues(TOPIC).await? {
        let offsets = consumer.queue_offsets(&queue).await?;
        let mut offset = consumer
            .query_offset(&queue)
            .await?
            .unwrap_or(offsets.min_offset);
        while offset < offsets.max_offset {
            let r = consumer
                .pull(&queue, offset, 32, Some("TagA"), Duration::ZERO)
                .await?;
            for m in &r.messages {
                received += 1;
                println!(
                    "received queue={} offset={} id={} keys={:?} body={}",
                    m.queue_id,
                    m.queue_offset,
                    m.msg_id,
                    m.keys,
                    m.body_str().unwrap_or("<binary>")
                );
            }
            if r.next_offset <= offset {
                break;
            }
            offset = r.next_offset;
        }
        consumer.commit_offset(&queue, offset).await?;
    }
    println!("received {received} message(s)");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let namesrv = std::env::var("SKYLARK_NAMESRV").unwrap_or_else(|_| "127.0.0.1:9876".to_string());
    actix::System::new().block_on(quickstart(namesrv))
}
