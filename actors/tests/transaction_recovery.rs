//! Transaction state recovery with a real broker in an actix System: a half
//! message whose commit reached its real topic but whose op record did not
//! (a crash between the two) is recognised at the next start, so a
//! check-back or a retried commit cannot deliver it twice.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use skylark_actors::config::{BrokerConfig, NameServerConfig};
use skylark_actors::launch::start_broker;
use skylark_actors::launch::start_namesrv;
use skylark_actors::message_store::record;
use skylark_actors::remoting::RpcClient;
use skylark_actors::storage::{PutMessages, StoredMessage};
use skylark_codec::*;

fn log() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

fn half(body: &str) -> SendRequest {
    let mut m = MessageData::new(Bytes::from(body.to_string()));
    m.properties = vec![
        (PROPERTY_TRANSACTION_PREPARED.into(), "true".into()),
        (PROPERTY_TRANSACTION_ID.into(), format!("tx-{body}")),
    ];
    SendRequest {
        producer_group: "pg".into(),
        topic: "TxRecover".into(),
        queue_id: -1,
        message: m,
    }
}

fn end(r: &SendResult) -> EndTransactionRequest {
    EndTransactionRequest {
        producer_group: "pg".into(),
        transaction_id: String::new(),
        msg_id: r.msg_id.clone(),
        queue_offset: r.queue_offset,
        state: TransactionState::Commit,
        from_check: false,
    }
}

async fn bodies(c: &RpcClient) -> Vec<String> {
    let mut out = Vec::new();
    for queue_id in 0..4 {
        let req = PullRequest {
            consumer_group: "g".into(),
            topic: "TxRecover".into(),
            queue_id,
            queue_offset: 0,
            max_messages: 32,
            max_bytes: 1 << 20,
            suspend_timeout_ms: 0,
            subscription: None,
            sql: None,
            commit_offset: None,
        };
        let r = c.call(&req).await.unwrap();
        let mut buf: &[u8] = &r.records;
        while !buf.is_empty() {
            let (d, len) = record::decode(buf).unwrap();
            out.push(String::from_utf8_lossy(d.body).into_owned());
            buf = &buf[len..];
        }
    }
    out.sort();
    out
}

#[actix_rt::test]
async fn transaction_committed_copy_without_op_record_is_not_delivered_twice() {
    let dir = tempfile::tempdir().unwrap();
    let ns = start_namesrv(
        NameServerConfig {
            port: 0,
            ..Default::default()
        },
        log(),
    )
    .await
    .unwrap();
    let mut cfg = BrokerConfig {
        port: 0,
        namesrv: ns.local_addr().to_string(),
        ..Default::default()
    };
    cfg.store.data_dir = dir.path().to_path_buf();
    cfg.store.segment_size = 1 << 20;

    let broker = start_broker(cfg.clone(), log()).await.unwrap();
    let addr = broker.local_addr();
    let c = RpcClient::connect(&addr.to_string(), Duration::from_secs(5))
        .await
        .unwrap();
    // Nobody writes the transaction system topics directly.
    let mut direct = half("x");
    direct.topic = "RMQ_SYS_TRANS_HALF_TOPIC".into();
    direct.message.properties.clear();
    match c.call(&direct).await {
        Err(ProtocolError::Remote(e)) => assert_eq!(e.code, ErrorCode::PermissionDenied),
        other => panic!("expected PermissionDenied, got {other:?}"),
    }
    let one = c.call(&half("one")).await.unwrap();
    let two = c.call(&half("two")).await.unwrap();
    // The commit of "one" reached its topic; its op record never did.
    let physical = MessageId::from_hex(&one.msg_id).unwrap().physical_offset;
    let copy = StoredMessage {
        topic: Arc::from("TxRecover"),
        queue_id: 1,
        flag: 0,
        tags: None,
        keys: None,
        properties: vec![(
            "TRAN_HALF_QOFFSET".to_string(),
            one.queue_offset.to_string(),
        )],
        body: Bytes::from_static(b"one"),
        born_timestamp: 0,
        born_host: addr,
        store_host: addr,
        reconsume_times: 0,
        sys_flag: 0,
        prepared_tx_offset: physical,
    };
    broker
        .storage
        .send(PutMessages {
            messages: vec![copy],
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bodies(&c).await, vec!["one".to_string()]);
    c.close();
    broker.shutdown().await;

    cfg.port = addr.port();
    let broker = start_broker(cfg, log()).await.unwrap();
    let c = RpcClient::connect(&addr.to_string(), Duration::from_secs(5))
        .await
        .unwrap();
    // A retried commit of "one" is ignored; "two" commits normally.
    c.call(&end(&one)).await.unwrap();
    c.call(&end(&two)).await.unwrap();
    c.call(&end(&two)).await.unwrap();
    assert_eq!(bodies(&c).await, vec!["one".to_string(), "two".to_string()]);
    broker.shutdown().await;
}
