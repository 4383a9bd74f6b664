//! A NameServer and a Broker started as real actors in one actix System on
//! ephemeral ports, driven through real TCP with the remoting client.

use std::time::{Duration, Instant};

use bytes::Bytes;
use skylark_actors::config::{BrokerConfig, NameServerConfig};
use skylark_actors::launch::{start_broker, BrokerHandle};
use skylark_actors::launch::{start_namesrv, NameServerHandle};
use skylark_actors::message_store::record;
use skylark_actors::remoting::RpcClient;
use skylark_codec::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn log() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

struct Node {
    ns: NameServerHandle,
    broker: BrokerHandle,
    _dir: tempfile::TempDir,
}

async fn start(dir: tempfile::TempDir) -> Node {
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
    let broker = start_broker(cfg, log()).await.unwrap();
    Node {
        ns,
        broker,
        _dir: dir,
    }
}

/// A master on ephemeral client and HA ports, with no reachable NameServer.
fn master_on_ephemeral_ports(dir: &tempfile::TempDir) -> BrokerConfig {
    let mut cfg = BrokerConfig {
        port: 0,
        namesrv: "127.0.0.1:1".into(),
        ha_port: Some(0),
        ..Default::default()
    };
    cfg.store.data_dir = dir.path().to_path_buf();
    cfg.store.segment_size = 1 << 20;
    cfg
}

async fn client(addr: std::net::SocketAddr) -> RpcClient {
    RpcClient::connect(&addr.to_string(), Duration::from_secs(5))
        .await
        .unwrap()
}

fn msg(body: &str, tag: Option<&str>) -> MessageData {
    MessageData {
        tags: tag.map(String::from),
        ..MessageData::new(Bytes::from(body.to_string()))
    }
}

fn pull_req(topic: &str, queue_id: u32, offset: u64, suspend_ms: u64) -> PullRequest {
    PullRequest {
        consumer_group: "g".into(),
        topic: topic.into(),
        queue_id,
        queue_offset: offset,
        max_messages: 32,
        max_bytes: 1 << 20,
        suspend_timeout_ms: suspend_ms,
        subscription: None,
        sql: None,
        commit_offset: None,
    }
}

fn bodies(records: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut buf = records;
    while !buf.is_empty() {
        let (m, n) = record::decode(buf).unwrap();
        out.push(String::from_utf8(m.body.to_vec()).unwrap());
        buf = &buf[n..];
    }
    out
}

#[actix_rt::test]
async fn send_pull_route_and_offsets() {
    let node = start(tempfile::tempdir().unwrap()).await;
    let b = client(node.broker.local_addr()).await;
    let hs = b.call(&Handshake::new("t", "0")).await.unwrap();
    assert_eq!(hs.protocol_version, PROTOCOL_VERSION);

    let req = SendBatchRequest {
        producer_group: "p".into(),
        topic: "T".into(),
        queue_id: 1,
        messages: (0..10)
            .map(|i| msg(&format!("m{i}"), Some(if i % 2 == 0 { "A" } else { "B" })))
            .collect(),
    };
    let res = b.call(&req).await.unwrap();
    assert_eq!(res.results.len(), 10);
    assert!(res
        .results
        .iter()
        .enumerate()
        .all(|(i, r)| r.queue_id == 1 && r.queue_offset == i as u64));
    let id = MessageId::from_hex(&res.results[0].msg_id).unwrap();
    assert_eq!(id.addr, node.broker.local_addr());

    let p = b.call(&pull_req("T", 1, 0, 0)).await.unwrap();
    assert_eq!(p.status, PullStatus::Found);
    assert_eq!(
        bodies(&p.records),
        (0..10).map(|i| format!("m{i}")).collect::<Vec<_>>()
    );
    assert_eq!(p.next_offset, 10);

    let mut filtered = pull_req("T", 1, 0, 0);
    filtered.subscription = Some("A".into());
    let p = b.call(&filtered).await.unwrap();
    assert_eq!(bodies(&p.records), vec!["m0", "m2", "m4", "m6", "m8"]);

    // The auto-created topic reaches the NameServer's route.
    let ns = client(node.ns.local_addr()).await;
    let mut route = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while route.is_none() && Instant::now() < deadline {
        route = ns
            .call(&GetRouteInfoRequest {
                topic: "T".into(),
                wait_ms: 0,
            })
            .await
            .ok();
        if route.is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let route = route.expect("route for T");
    assert_eq!(route.queues[0].write_queues, 4);
    assert_eq!(
        route.brokers[0].addrs.get(&0),
        Some(&node.broker.local_addr().to_string())
    );

    // Offsets.
    let q = QueryOffsetRequest {
        group: "g".into(),
        topic: "T".into(),
        queue_id: 1,
    };
    assert_eq!(b.call(&q).await.unwrap().offset, None);
    b.call(&CommitOffsetRequest {
        group: "g".into(),
        topic: "T".into(),
        queue_id: 1,
        offset: 7,
    })
    .await
    .unwrap();
    assert_eq!(b.call(&q).await.unwrap().offset, Some(7));
    let o = b
        .call(&GetQueueOffsetsRequest {
            topic: "T".into(),
            queue_id: 1,
        })
        .await
        .unwrap();
    assert_eq!((o.min_offset, o.max_offset), (0, 10));

    let stats = b
        .call(&GetTopicStatsRequest { topic: "T".into() })
        .await
        .unwrap();
    assert_eq!(stats.queues.len(), 4);
    assert_eq!(stats.queues[1].max_offset, 10);
    assert_eq!(stats.messages_put, 10);
}

#[actix_rt::test]
async fn parked_pull_wakes_on_arrival() {
    let node = start(tempfile::tempdir().unwrap()).await;
    let b = client(node.broker.local_addr()).await;
    let mut cfg = TopicConfig::new("Wake", 1);
    cfg.read_queues = 1;
    b.call(&CreateTopicRequest { config: cfg }).await.unwrap();

    let puller = b.clone();
    let started = Instant::now();
    let pull = actix_rt::spawn(async move {
        puller
            .call_timeout(&pull_req("Wake", 0, 0, 10_000), Duration::from_secs(20))
            .await
    });
    // Wait until the broker holds the pull (a condition, not a sleep).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = b
            .call(&GetTopicStatsRequest {
                topic: "Wake".into(),
            })
            .await
            .unwrap();
        if s.parked_pulls == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "pull never parked");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let sent = Instant::now();
    b.call(&SendRequest {
        producer_group: "p".into(),
        topic: "Wake".into(),
        queue_id: -1,
        message: msg("hi", None),
    })
    .await
    .unwrap();
    let resp = pull.await.unwrap().unwrap();
    let woke_after = sent.elapsed();
    assert_eq!(resp.status, PullStatus::Found);
    assert_eq!(bodies(&resp.records), vec!["hi"]);
    // Woken by the arrival, far before the 10 s hold ends.
    assert!(
        woke_after < Duration::from_secs(2),
        "woke after {woke_after:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    // An empty pull with a short hold answers NoNewMessage when the hold ends.
    let resp = b.call(&pull_req("Wake", 0, 1, 50)).await.unwrap();
    assert_eq!(resp.status, PullStatus::NoNewMessage);
    assert_eq!(resp.next_offset, 1);
}

#[actix_rt::test]
async fn bad_input_gets_typed_errors_and_only_closes_that_connection() {
    let node = start(tempfile::tempdir().unwrap()).await;
    let addr = node.broker.local_addr();

    // 64 KiB of random bytes: the broker closes that one connection.
    let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
    let junk: Vec<u8> = (0..65536u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let _ = raw.write_all(&junk).await;
    let mut sink = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), raw.read_to_end(&mut sink)).await;
    assert!(closed.is_ok(), "connection with garbage was not closed");

    let b = client(addr).await;
    // Too large.
    let big = MessageData::new(Bytes::from(vec![b'x'; 5_000_000]));
    let err = b
        .call(&SendRequest {
            producer_group: "p".into(),
            topic: "T".into(),
            queue_id: -1,
            message: big,
        })
        .await
        .unwrap_err();
    match err {
        ProtocolError::Remote(w) => assert_eq!(w.code, ErrorCode::MessageTooLarge),
        e => panic!("unexpected {e}"),
    }
    // Bad topic name.
    let err = b
        .call(&SendRequest {
            producer_group: "p".into(),
            topic: "bad topic!".into(),
            queue_id: -1,
            message: msg("x", None),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProtocolError::Remote(ref w) if w.code == ErrorCode::BadRequest),
        "{err}"
    );
    // Pull from a topic that does not exist.
    let err = b.call(&pull_req("Nope", 0, 0, 0)).await.unwrap_err();
    assert!(
        matches!(err, ProtocolError::Remote(ref w) if w.code == ErrorCode::TopicNotFound),
        "{err}"
    );
    // An unknown command gets UnknownCommand, and the connection lives on.
    let frame = b
        .call_raw(999, &Ack {}, Duration::from_secs(5))
        .await
        .unwrap();
    let err = frame.decode_response::<Ack>().unwrap_err();
    assert!(
        matches!(err, ProtocolError::Remote(ref w) if w.code == ErrorCode::UnknownCommand),
        "{err}"
    );
    // A client may not set the broker's routing properties.
    let mut forged = msg("x", None);
    forged
        .properties
        .push(("REAL_TOPIC".into(), "RMQ_SYS_TRANS_OP_HALF_TOPIC".into()));
    forged.delay_level = 1;
    let err = b
        .call(&SendRequest {
            producer_group: "p".into(),
            topic: "T".into(),
            queue_id: -1,
            message: forged,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProtocolError::Remote(ref w) if w.code == ErrorCode::BadRequest && w.message.contains("REAL_TOPIC")),
        "{err}"
    );
    // And normal sends still work.
    let r = b
        .call(&SendRequest {
            producer_group: "p".into(),
            topic: "T".into(),
            queue_id: -1,
            message: msg("ok", None),
        })
        .await
        .unwrap();
    assert_eq!(r.status, SendStatus::SendOk);
    // A pull on a queue the topic does not have is refused (not parked).
    let err = b.call(&pull_req("T", 99, 0, 1000)).await.unwrap_err();
    assert!(
        matches!(err, ProtocolError::Remote(ref w) if w.code == ErrorCode::BadRequest),
        "{err}"
    );
}

#[actix_rt::test]
async fn topics_and_offsets_survive_a_clean_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let node = start(dir).await;
    let b = client(node.broker.local_addr()).await;
    b.call(&CreateTopicRequest {
        config: TopicConfig::new("Kept", 2),
    })
    .await
    .unwrap();
    b.call(&SendRequest {
        producer_group: "p".into(),
        topic: "Kept".into(),
        queue_id: 0,
        message: msg("x", None),
    })
    .await
    .unwrap();
    b.call(&CommitOffsetRequest {
        group: "g".into(),
        topic: "Kept".into(),
        queue_id: 0,
        offset: 1,
    })
    .await
    .unwrap();
    let Node { ns, broker, _dir } = node;
    broker.shutdown().await;
    drop(ns);

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
        auto_create_topic: false,
        ..Default::default()
    };
    cfg.store.data_dir = path;
    cfg.store.segment_size = 1 << 20;
    let broker = start_broker(cfg, log()).await.unwrap();
    let b = client(broker.local_addr()).await;
    let stats = b
        .call(&GetTopicStatsRequest {
            topic: "Kept".into(),
        })
        .await
        .unwrap();
    assert_eq!(stats.config.write_queues, 2);
    assert_eq!(stats.queues[0].max_offset, 1);
    let q = QueryOffsetRequest {
        group: "g".into(),
        topic: "Kept".into(),
        queue_id: 0,
    };
    assert_eq!(b.call(&q).await.unwrap().offset, Some(1));
    // Auto-create is off: an unknown topic is refused.
    let err = b
        .call(&SendRequest {
            producer_group: "p".into(),
            topic: "New".into(),
            queue_id: -1,
            message: msg("x", None),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProtocolError::Remote(ref w) if w.code == ErrorCode::TopicNotFound),
        "{err}"
    );
    drop(_dir);
}

/// A start that fails after the store opened closes it again: the data
/// directory's lock is free for the next start in the same process (as
/// controller mode retries), and that start works.
#[actix_rt::test]
async fn a_start_failing_after_the_store_opened_frees_the_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = master_on_ephemeral_ports(&dir);
    let groups = dir.path().join("config").join("subscriptionGroup.json");
    std::fs::create_dir_all(groups.parent().unwrap()).unwrap();
    std::fs::write(&groups, "not json").unwrap();
    let Err(e) = start_broker(cfg.clone(), log()).await else {
        panic!("started with a corrupt subscriptionGroup.json");
    };
    assert!(!e.to_string().contains("in use"), "{e}");
    std::fs::remove_file(&groups).unwrap();
    // The failed start's threads stop asynchronously: allow them a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    let broker = loop {
        match start_broker(cfg.clone(), log()).await {
            Ok(b) => break b,
            Err(e) if e.to_string().contains("in use") && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("the retry failed: {e}"),
        }
    };
    broker.shutdown().await;
}

/// More write than read queues is refused when a create or update sets it,
/// but a topic already laid out that way (made before the check) can still
/// have its permission or order changed.
#[actix_rt::test]
async fn write_queues_above_read_queues_are_refused_unless_the_layout_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut legacy = TopicConfig::new("Legacy", 2);
    legacy.write_queues = 4;
    let config_dir = dir.path().join("config");
    std::fs::create_dir_all(&config_dir).unwrap();
    std::fs::write(
        config_dir.join("topics.json"),
        serde_json::to_vec(&vec![legacy.clone()]).unwrap(),
    )
    .unwrap();
    let node = start(dir).await;
    let b = client(node.broker.local_addr()).await;
    let create = |config: TopicConfig| CreateTopicRequest { config };
    let mut fresh = TopicConfig::new("Fresh", 2);
    fresh.write_queues = 3;
    let e = b.call(&create(fresh)).await.unwrap_err();
    assert!(
        e.to_string().contains("3 write queues above 2 read queues"),
        "{e}"
    );
    // The kept layout with another permission: accepted.
    let mut read_only = legacy.clone();
    read_only.perm = PERM_READ;
    b.call(&create(read_only)).await.unwrap();
    // Changing its counts keeps the rule.
    let mut more = legacy.clone();
    more.write_queues = 5;
    let e = b.call(&create(more)).await.unwrap_err();
    assert!(
        e.to_string().contains("5 write queues above 2 read queues"),
        "{e}"
    );
    let Node { ns, broker, _dir } = node;
    broker.shutdown().await;
    drop(ns);
}

/// The broker's own topics cannot be created, updated or deleted by hand:
/// a config of one routed consumers to pending delayed messages and to
/// half and rolled-back transactional ones (new-user walkthrough). A config
/// made by hand before that (here: in the topics file) can be deleted, and
/// only it goes: the delayed message in its queue stays pending.
#[actix_rt::test]
async fn the_brokers_own_topics_are_refused_by_create_and_a_hand_made_config_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let config_dir = dir.path().join("config");
    std::fs::create_dir_all(&config_dir).unwrap();
    std::fs::write(
        config_dir.join("topics.json"),
        serde_json::to_vec(&vec![TopicConfig::new("SCHEDULE_TOPIC_XXXX", 18)]).unwrap(),
    )
    .unwrap();
    let node = start(dir).await;
    let b = client(node.broker.local_addr()).await;
    let mut delayed = SendRequest {
        producer_group: "p".into(),
        topic: "Later".into(),
        queue_id: 0,
        message: msg("in an hour", None),
    };
    delayed.message.delay_level = 3;
    b.call(&delayed).await.unwrap();
    for internal in [
        "SCHEDULE_TOPIC_XXXX",
        "TIMER_TOPIC_XXXX",
        "RMQ_SYS_TRANS_HALF_TOPIC",
        "RMQ_SYS_TRANS_OP_HALF_TOPIC",
        "TBW102",
    ] {
        let e = b
            .call(&CreateTopicRequest {
                config: TopicConfig::new(internal, 1),
            })
            .await
            .unwrap_err();
        assert!(
            matches!(e, ProtocolError::Remote(ref w) if w.code == ErrorCode::BadRequest
                && w.message.contains("cannot be created or changed by hand")),
            "{internal}: {e}"
        );
    }
    let broker = node.broker.broker.clone();
    let listed = || async {
        let topics = broker
            .send(skylark_actors::broker::ListTopics)
            .await
            .unwrap();
        topics.iter().any(|t| t.name == "SCHEDULE_TOPIC_XXXX")
    };
    assert!(listed().await, "the hand-made config was loaded");
    let delete = DeleteTopicRequest {
        topic: "SCHEDULE_TOPIC_XXXX".into(),
    };
    b.call(&delete).await.unwrap();
    assert!(!listed().await, "the hand-made config is gone");
    let (_, max) = node
        .broker
        .storage
        .send(skylark_actors::storage::GetQueueOffsets {
            topic: "SCHEDULE_TOPIC_XXXX".into(),
            queue_id: 2,
        })
        .await
        .unwrap();
    assert_eq!(max, 1, "the delayed message's queue is kept");
    let e = b.call(&delete).await.unwrap_err();
    assert!(e.to_string().contains("cannot be deleted"), "{e}");
    let Node { ns, broker, _dir } = node;
    broker.shutdown().await;
    drop(ns);
}

/// `BrokerHandle::shutdown` closes the HA listener: it stayed open before,
/// so an in-process restart fell back to an ephemeral HA port and each
/// start/stop cycle leaked the listener.
#[actix_rt::test]
async fn shutdown_closes_the_ha_listener() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = master_on_ephemeral_ports(&dir);
    let broker = start_broker(cfg, log()).await.unwrap();
    let host = broker.config.listen_host.clone();
    let ha = broker.config.ha_port.expect("a master binds an HA port");
    assert!(tokio::net::TcpListener::bind((host.as_str(), ha))
        .await
        .is_err());
    broker.shutdown().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::net::TcpListener::bind((host.as_str(), ha)).await {
            Ok(_) => break,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("HA port {ha} still taken after shutdown: {e}"),
        }
    }
}

/// A taken `ha_port` fails the start naming the port (controller mode logs
/// this error at every retry of a role change: "Address already in use"
/// alone did not say which port).
#[actix_rt::test]
async fn a_taken_ha_port_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut cfg = master_on_ephemeral_ports(&dir);
    cfg.listen_host = "127.0.0.1".into();
    cfg.ha_port = Some(port);
    let Err(e) = start_broker(cfg, log()).await else {
        panic!("started on a taken HA port");
    };
    let text = e.to_string();
    assert!(
        text.contains(&format!("127.0.0.1:{port} (ha_port)")),
        "{text}"
    );
}
