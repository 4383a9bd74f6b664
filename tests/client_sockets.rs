//! A client handle that is dropped (or shut down) closes its connections:
//! each kept one NameServer and one broker connection for the life of the
//! process before (library walkthrough: 20 producers made and dropped left
//! 40 sockets). One test in its own binary, so no other test's sockets
//! are counted.

mod common;

use std::time::Duration;

use common::{open_sockets as sockets, wait_until, wait_until_async, Standalone};
use skylark::client::{
    ClientConfig, ConsumeResult, Producer, PullConsumer, PushConsumer, ReceivedMessage,
    TransactionProducer, TransactionState,
};
use skylark::codec::MessageData;

#[test]
fn dropped_clients_close_their_connections() {
    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start(dir.path(), &["--no-dashboard", "--no-metrics"]);
    let namesrv = node.namesrv();
    actix::System::new().block_on(async move {
        let before = sockets();
        for i in 0..20 {
            let p = Producer::start(ClientConfig::new(&namesrv), &format!("pg-{i}")).unwrap();
            p.send("Sockets", MessageData::new("m")).await.unwrap();
        }
        for i in 0..5 {
            let c = PullConsumer::start(ClientConfig::new(&namesrv), &format!("cg-{i}")).unwrap();
            let q = c.queues("Sockets").await.unwrap();
            c.pull(&q[0], 0, 1, None, Duration::ZERO).await.unwrap();
        }
        for i in 0..3 {
            let c = PushConsumer::builder(ClientConfig::new(&namesrv), &format!("push-{i}"))
                .subscribe("Sockets", "*")
                .start(|_: &[ReceivedMessage]| ConsumeResult::Success)
                .unwrap();
            c.shutdown().await;
        }
        for i in 0..3 {
            let t =
                TransactionProducer::start(ClientConfig::new(&namesrv), &format!("tx-{i}"), |_| {
                    TransactionState::Commit
                })
                .unwrap();
            t.send_in_transaction("Sockets", MessageData::new("t"), |_| {
                TransactionState::Commit
            })
            .await
            .unwrap();
            t.shutdown();
        }
        assert!(sockets() > before, "the clients connected");
        let closed = wait_until_async(Duration::from_secs(10), || sockets() <= before).await;
        let now = sockets();
        assert!(
            closed,
            "{before} sockets before, {now} after every client was dropped"
        );
    });
    // The broker still serves (nothing was closed under it).
    assert!(wait_until(Duration::from_secs(5), || node
        .cli(&["produce", "--topic", "Sockets", "--body", "after"])
        .status
        .success()));
}
