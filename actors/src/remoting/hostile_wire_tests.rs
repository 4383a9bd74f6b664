//! A hostile wire against a real broker on ephemeral ports (Skylark port,
//! RocketMQ remoting port, HA port), its log captured: floods of bad
//! connections give a line or two, a port scan of the HA port is no
//! slave, the HA master says why it refuses, and sends with values the
//! CLI refuses are refused `BadRequest` naming the field.

use std::time::Duration;

use bytes::Bytes;
use skylark_codec::{ErrorCode, MessageData, ProtocolError, SendRequest};
use slog::Level;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::BrokerConfig;
use crate::launch::{start_broker, BrokerHandle};
use crate::remoting::RpcClient;
use crate::replicator::protocol;
use crate::test_log::Captured;

async fn broker(dir: &tempfile::TempDir, log: &Captured) -> BrokerHandle {
    let mut cfg = BrokerConfig {
        port: 0,
        ha_port: Some(0),
        remoting_port: Some(0),
        namesrv: String::new(),
        ..Default::default()
    };
    cfg.store.data_dir = dir.path().to_path_buf();
    cfg.store.segment_size = 1 << 20;
    start_broker(cfg, slog::Logger::root(log.clone(), slog::o!()))
        .await
        .unwrap()
}

/// `n` connections to `addr`, each writing `bytes` (and closing its
/// write side when `half_close`) and reading until the server closes.
async fn connections(addr: String, n: usize, bytes: &'static [u8], half_close: bool) {
    for _ in 0..n {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(bytes).await.unwrap();
        if half_close {
            s.shutdown().await.unwrap();
        }
        let mut sink = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut sink));
        assert!(read.await.is_ok(), "the server never closed the connection");
    }
}

/// Waits up to 10 s for `f`.
async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !f() {
        if std::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

#[actix_rt::test]
async fn floods_of_bad_connections_log_a_line_or_two_and_a_peer_leaving_mid_frame_is_no_warning() {
    let (dir, log) = (tempfile::tempdir().unwrap(), Captured::default());
    let b = broker(&dir, &log).await;
    let native = b.local_addr().to_string();
    let remoting = b.remoting_addr().unwrap().to_string();
    connections(native.clone(), 200, b"\0\0\0\0", false).await;
    connections(remoting.clone(), 200, b"\0\0\0\0", false).await;
    let lines = |t| log.count(t);
    assert!((1..=2).contains(&lines("closing connection on bad input")));
    assert!((1..=2).contains(&lines("bad remoting frame")));

    // A frame begun, then the peer leaves: an INFO line, no WARN.
    let begun: &[u8] = &[0, 0, 0, 40, 0x92, 0x93];
    connections(native, 1, begun, true).await;
    connections(remoting, 1, &[0, 0, 0, 40, 0, 0, 0, 10], true).await;
    assert!(eventually(|| lines("in the middle of a frame") == 2).await);
    let warned = |t: &str| log.has(Level::Warning, t);
    assert!(!warned("bytes remaining"), "{:?}", log.0.lock().unwrap());
    b.shutdown().await;
}

#[actix_rt::test]
async fn a_port_scan_of_the_ha_port_is_no_slave_and_a_refused_slave_is_told_why() {
    let (dir, log) = (tempfile::tempdir().unwrap(), Captured::default());
    let b = broker(&dir, &log).await;
    let ha = format!("127.0.0.1:{}", b.config.ha_port.unwrap());
    for _ in 0..20 {
        drop(TcpStream::connect(&ha).await.unwrap());
    }
    let scanned = "HA connection closed before a slave's first report";
    assert!(eventually(|| log.count(scanned) == 20).await);
    assert_eq!(log.count("slave connected"), 0);
    let ha_warning = |(l, m): &(Level, String)| {
        *l <= Level::Warning && (m.contains("HA") || m.contains("slave"))
    };
    assert!(!log.0.lock().unwrap().iter().any(ha_warning));

    // An offset past the end, then one that is no record boundary: the
    // master answers with its refusal, which the slave reads as the error.
    let client = RpcClient::connect(&b.local_addr().to_string(), Duration::from_secs(5))
        .await
        .unwrap();
    let send = SendRequest {
        producer_group: "p".into(),
        topic: "T".into(),
        queue_id: 0,
        message: MessageData::new(Bytes::from_static(b"body")),
    };
    client.call(&send).await.unwrap();
    for (offset, want) in [
        (1u64 << 40, "past the master's end"),
        (1, "cannot read the commit log at 1"),
    ] {
        let mut s = TcpStream::connect(&ha).await.unwrap();
        protocol::write_offset(&mut s, offset).await.unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(10), protocol::read_chunk(&mut s));
        let e = answer.await.expect("an answer").unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("the master refused this slave") && text.contains(want),
            "{text}"
        );
    }
    b.shutdown().await;
}

#[actix_rt::test]
async fn sends_with_a_bad_group_queue_or_delivery_time_are_refused_naming_the_field() {
    let (dir, log) = (tempfile::tempdir().unwrap(), Captured::default());
    let b = broker(&dir, &log).await;
    let client = RpcClient::connect(&b.local_addr().to_string(), Duration::from_secs(5))
        .await
        .unwrap();
    let send = |group: &str, queue_id: i32, deliver_at_ms: Option<i64>| SendRequest {
        producer_group: group.into(),
        topic: "T".into(),
        queue_id,
        message: MessageData {
            deliver_at_ms,
            ..MessageData::new(Bytes::from_static(b"body"))
        },
    };
    let long = "g".repeat(10 * 1024);
    for (req, field) in [
        (send("", -1, None), "producer_group"),
        (send("a/b c", -1, None), "producer_group"),
        (send(&long, -1, None), "producer_group"),
        (send("p", -7, None), "queue_id -7"),
        (send("p", 0, Some(-5)), "deliver_at_ms -5"),
    ] {
        match client.call(&req).await {
            Err(ProtocolError::Remote(e)) => {
                assert_eq!(e.code, ErrorCode::BadRequest, "{e}");
                assert!(e.message.contains(field), "{e}");
            }
            other => panic!(
                "{:?}: {other:?}",
                &req.producer_group[..req.producer_group.len().min(20)]
            ),
        }
    }
    // What clients send with no group set, and -1 (any queue), still go.
    for req in [
        send("DEFAULT_PRODUCER", -1, None),
        send("CLIENT_INNER_PRODUCER", 0, None),
    ] {
        client.call(&req).await.unwrap();
    }
    b.shutdown().await;
}
