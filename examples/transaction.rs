//! Transactional messages: a commit, a rollback and an unknown-then-checked
//! transaction, then what a consumer of the topic saw.
//!
//! Start a server first (`skylark standalone`), then:
//! `SKYLARK_NAMESRV=127.0.0.1:9876 cargo run --example transaction`.
//! The third transaction is left unknown by its local transaction; the
//! broker asks the producer's check listener about it after
//! `transaction_timeout_ms` (6 s by default), which commits it. Exits
//! non-zero if the consumer did not see exactly the two committed messages.

use std::time::{Duration, Instant};

use skylark::client::{
    now_ms, ClientConfig, MessageData, PullConsumer, ReceivedMessage, TransactionProducer,
    TransactionState,
};

const TOPIC: &str = "TransactionTopic";

/// Every message of `topic` whose body starts with `prefix`.
async fn read_all(consumer: &PullConsumer, prefix: &str) -> anyhow::Result<Vec<ReceivedMessage>> {
    let mut out = Vec::new();
    for queue in consumer.queues(TOPIC).await? {
        let offsets = consumer.queue_offsets(&queue).await?;
        let mut offset = offsets.min_offset;
        while offset < offsets.max_offset {
            let r = consumer
                .pull(&queue, offset, 64, None, Duration::ZERO)
                .await?;
            out.extend(
                r.messages
                    .into_iter()
                    .filter(|m| m.body_str().is_some_and(|b| b.starts_with(prefix))),
            );
            if r.next_offset <= offset {
                break;
            }
            offset = r.next_offset;
        }
    }
    Ok(out)
}

async fn run(namesrv: String) -> anyhow::Result<()> {
    let run = format!("run-{}", now_ms());
    let producer = TransactionProducer::start(
        ClientConfig::new(&namesrv),
        "transaction-example-producer",
        |m| {
            // The check listener: look the transaction up in your database.
            let body = m.body_str().unwrap_or_default();
            let answer = if body.ends_with("-checked") {
                TransactionState::Commit
            } else {
                TransactionState::Rollback
            };
            println!("check-back for {} ({body}): answering {answer:?}", m.msg_id);
            answer
        },
    )?;
    for (what, local) in [
        ("commit", TransactionState::Commit),
        ("rollback", TransactionState::Rollback),
        ("checked", TransactionState::Unknown),
    ] {
        let body = format!("{run}-{what}");
        let r = producer
            .send_in_transaction(TOPIC, MessageData::new(body.clone()), |sent| {
                println!("local transaction for half {}: {local:?}", sent.msg_id);
                local
            })
            .await?;
        if let Some(e) = r.end_error {
            println!("  outcome not reported ({e}); the broker will check back");
        }
    }

    let consumer =
        PullConsumer::start(ClientConfig::new(&namesrv), "transaction-example-consumer")?;
    println!("waiting for the broker's check-back of the unknown transaction ...");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = read_all(&consumer, &run).await?;
    while !seen
        .iter()
        .any(|m| m.body_str() == Some(&format!("{run}-checked")))
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
        seen = read_all(&consumer, &run).await?;
    }
    println!("the consumer saw {} message(s):", seen.len());
    for m in &seen {
        println!(
            "  queue={} offset={} id={} body={}",
            m.queue_id,
            m.queue_offset,
            m.msg_id,
            m.body_str().unwrap_or("<binary>")
        );
    }
    let bodies: Vec<&str> = seen.iter().filter_map(|m| m.body_str()).collect();
    let expect = |what: &str, n: usize| {
        let body = format!("{run}-{what}");
        let got = bodies.iter().filter(|b| **b == body).count();
        if got == n {
            Ok(())
        } else {
            Err(anyhow::anyhow!(
                "expected {n} '{body}', the consumer saw {got}"
            ))
        }
    };
    expect("commit", 1)?;
    expect("rollback", 0)?;
    expect("checked", 1)?;
    producer.shutdown();
    println!("ok: committed once, rolled back never, unknown resolved by check-back");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let namesrv = std::env::var("SKYLARK_NAMESRV").unwrap_or_else(|_| "127.0.0.1:9876".to_string());
    actix::System::new().block_on(run(namesrv))
}
