//! Operator commands (issue 18 item 10) against a live `skylark
//! standalone`: each command is checked for what it *does* (a refused send,
//! a route that changed, a setting that survives a restart), not only for
//! what it prints.

mod common;

use std::process::Output;
use std::time::Duration;

use common::{json_lines, wait_until, Standalone};
use skylark::actors::remoting::RpcClient;
use skylark::codec::{
    ErrorCode, MessageData, ProtocolError, PullRequest, SendRequest, PERM_READ, PERM_WRITE,
};

const WAIT: Duration = Duration::from_secs(30);

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "command failed: {}\nstdout: {}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "command should fail, printed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn create_topic(s: &Standalone, topic: &str, queues: u32) {
    ok(&s.cli(&[
        "admin",
        "topic",
        "create",
        "--name",
        topic,
        "--queues",
        &queues.to_string(),
    ]));
}

fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    actix::System::new().block_on(f)
}

/// One raw send to the broker: the typed answer, not the client's view.
fn raw_send(broker: &str, topic: &str) -> Result<(), ProtocolError> {
    run(async {
        let c = RpcClient::connect(broker, Duration::from_secs(5)).await?;
        let r = c
            .call(&SendRequest {
                producer_group: "PG".into(),
                topic: topic.into(),
                queue_id: 0,
                message: MessageData::new("raw"),
            })
            .await;
        c.close();
        r.map(|_| ())
    })
}

/// One raw pull of queue 0 from offset 0.
fn raw_pull(broker: &str, topic: &str, group: &str) -> Result<u32, ProtocolError> {
    run(pull_async(broker, topic, group))
}

async fn pull_async(broker: &str, topic: &str, group: &str) -> Result<u32, ProtocolError> {
    {
        let c = RpcClient::connect(broker, Duration::from_secs(5)).await?;
        let r = c
            .call(&PullRequest {
                consumer_group: group.into(),
                topic: topic.into(),
                queue_id: 0,
                queue_offset: 0,
                max_messages: 32,
                max_bytes: 1 << 20,
                suspend_timeout_ms: 0,
                subscription: None,
                sql: None,
                commit_offset: None,
            })
            .await;
        c.close();
        r.map(|p| p.count)
    }
}

fn denied(r: Result<impl std::fmt::Debug, ProtocolError>, says: &str) {
    match r {
        Err(ProtocolError::Remote(e)) => {
            assert_eq!(e.code, ErrorCode::PermissionDenied, "{e:?}");
            assert!(
                e.message.contains(says),
                "{:?} should say {says:?}",
                e.message
            );
        }
        other => panic!("expected PermissionDenied ({says}), got {other:?}"),
    }
}

/// The perm bits the NameServer routes for the topic (first queue data).
fn routed_perm(s: &Standalone, topic: &str) -> u8 {
    let out = ok(&s.cli(&["admin", "--json", "topic", "route", "--name", topic]));
    let v = &json_lines(out.as_bytes())[0];
    v["route"]["queues"][0]["perm"].as_u64().expect("perm") as u8
}

fn produce(s: &Standalone, topic: &str, extra: &[&str]) -> Output {
    let mut args = vec!["produce", "--topic", topic, "--count", "1", "--json"];
    args.extend_from_slice(extra);
    s.cli(&args)
}

#[test]
fn topic_perm_read_only_refuses_sends_and_write_only_refuses_pulls() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Standalone::start(dir.path(), &[]);
    create_topic(&s, "PermT", 1);
    ok(&produce(&s, "PermT", &["--body", "before"]));

    let out = ok(&s.cli(&["admin", "topic", "perm", "--name", "PermT", "--perm", "r"]));
    assert!(out.contains("rw -> r-"), "{out}");
    denied(raw_send(&s.broker(), "PermT"), "not writable");
    assert!(wait_until(WAIT, || routed_perm(&s, "PermT") == PERM_READ));
    let err = fails(&produce(&s, "PermT", &["--body", "refused"]));
    assert!(err.contains("topic 'PermT' is not writable"), "{err}");
    // A bench into the same refusal stops after 100 failures in a row,
    // names the first error and exits non-zero.
    let out = s.cli(&[
        "bench", "produce", "--topic", "PermT", "--count", "1000000", "--json",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("stopped after 100 failures in a row"), "{err}");
    assert!(err.contains("is not writable"), "{err}");
    let r = &json_lines(&out.stdout)[0];
    assert_eq!(r["errors"], 100, "{r}");
    assert!(
        r["first_error"].as_str().unwrap().contains("not writable"),
        "{r}"
    );
    // An open-loop (paced) one stops at its warm-up send, with the reason.
    let out = s.cli(&[
        "bench", "produce", "--topic", "PermT", "--count", "1000000", "--rate", "2000", "--json",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("is not writable"), "{err}");
    assert_eq!(raw_pull(&s.broker(), "PermT", "g1").unwrap(), 1);

    // RocketMQ's number for write-only.
    ok(&s.cli(&["admin", "topic", "perm", "--name", "PermT", "--perm", "2"]));
    denied(raw_pull(&s.broker(), "PermT", "g1"), "not readable");
    raw_send(&s.broker(), "PermT").expect("writable again");

    // Persisted with the topic: still write-only after a restart.
    s.restart();
    denied(raw_pull(&s.broker(), "PermT", "g1"), "not readable");
    assert_eq!(
        routed_perm(&s, "PermT") & (PERM_READ | PERM_WRITE),
        PERM_WRITE
    );

    let err = fails(&s.cli(&["admin", "topic", "perm", "--name", "PermT", "--perm", "x"]));
    assert!(err.contains("bad --perm 'x'"), "{err}");
    let err = fails(&s.cli(&[
        "admin", "topic", "perm", "--name", "NoSuchT", "--perm", "rw",
    ]));
    assert!(err.contains("NoSuchT"), "{err}");
}

#[test]
fn wipe_write_perm_refuses_sends_routes_elsewhere_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Standalone::start(dir.path(), &[]);
    create_topic(&s, "WipeT", 1);
    ok(&produce(&s, "WipeT", &["--body", "before"]));
    let broker = s.broker();

    let out = ok(&s.cli(&["admin", "broker", "perm", "wipe-write", "--broker", &broker]));
    assert!(out.contains("rw -> r-"), "{out}");
    denied(raw_send(&broker, "WipeT"), "is not writable");
    // The NameServer's route shows the queues as not writable at once
    // (re-registered), so producers have nowhere to send.
    assert!(wait_until(WAIT, || routed_perm(&s, "WipeT") & PERM_WRITE == 0));
    fails(&produce(&s, "WipeT", &["--body", "refused"]));
    // A topic that does not exist yet has the route of TBW102, which is
    // not writable either: the error says the topic does not exist.
    assert!(wait_until(WAIT, || routed_perm(&s, "TBW102") & PERM_WRITE == 0));
    let err = fails(&produce(&s, "BrandNewT", &["--body", "refused"]));
    assert!(
        err.contains("topic 'BrandNewT' does not exist, and no broker that would create it"),
        "{err}"
    );
    // Reads go on.
    assert_eq!(raw_pull(&broker, "WipeT", "g1").unwrap(), 1);

    s.restart();
    denied(raw_send(&s.broker(), "WipeT"), "is not writable");
    assert!(wait_until(WAIT, || routed_perm(&s, "WipeT") & PERM_WRITE == 0));
    let cfg = ok(&s.cli(&["admin", "broker", "config", "get"]));
    assert!(cfg.contains("broker_permission = r-"), "{cfg}");

    // By broker name this time.
    let out = ok(&s.cli(&[
        "admin",
        "broker",
        "perm",
        "add-write",
        "--broker",
        "standalone",
    ]));
    assert!(out.contains("r- -> rw"), "{out}");
    raw_send(&s.broker(), "WipeT").expect("writable again");
    assert!(wait_until(WAIT, || routed_perm(&s, "WipeT") & PERM_WRITE != 0));
    ok(&produce(&s, "WipeT", &["--body", "after"]));

    let err = fails(&s.cli(&[
        "admin",
        "broker",
        "perm",
        "wipe-write",
        "--broker",
        "nosuch",
    ]));
    assert!(err.contains("'nosuch' is not registered"), "{err}");
}

#[test]
fn query_msg_by_offset_prints_the_message_and_its_properties() {
    let dir = tempfile::tempdir().unwrap();
    let s = Standalone::start(dir.path(), &[]);
    create_topic(&s, "OffT", 1);
    for body in ["zero", "one", "two"] {
        ok(&produce(
            &s,
            "OffT",
            &[
                "--body",
                body,
                "--key",
                &format!("k-{body}"),
                "--tag",
                "TagA",
            ],
        ));
    }
    let out = ok(&s.cli(&[
        "admin",
        "--json",
        "message",
        "by-offset",
        "--topic",
        "OffT",
        "--queue",
        "0",
        "--offset",
        "1",
    ]));
    let v = &json_lines(out.as_bytes())[0];
    assert_eq!(v["body"], "one", "{v}");
    assert_eq!(v["queue_offset"], 1, "{v}");
    assert_eq!(v["keys"], "k-one", "{v}");
    assert_eq!(v["tags"], "TagA", "{v}");
    assert!(v["properties"].to_string().contains("UNIQ_KEY"), "{v}");

    let out = ok(&s.cli(&[
        "admin",
        "message",
        "by-offset",
        "--topic",
        "OffT",
        "--queue",
        "0",
        "--offset",
        "2",
    ]));
    assert!(
        out.contains("body=two") && out.contains("properties:"),
        "{out}"
    );

    let err = fails(&s.cli(&[
        "admin",
        "message",
        "by-offset",
        "--topic",
        "OffT",
        "--queue",
        "0",
        "--offset",
        "3",
    ]));
    assert!(
        err.contains("no message at offset 3") && err.contains("0..3"),
        "{err}"
    );
    let err = fails(&s.cli(&[
        "admin",
        "message",
        "by-offset",
        "--topic",
        "OffT",
        "--queue",
        "5",
        "--offset",
        "0",
    ]));
    assert!(err.contains("queue 5 does not exist"), "{err}");
}

use skylark::codec::{
    ConsumerGroupData, HeartbeatRequest, MessageId, MessageModel, SendBackRequest, Subscription,
};

fn group_config(s: &Standalone, args: &[&str]) -> Output {
    let mut a = vec!["admin", "group", "config"];
    a.extend_from_slice(args);
    s.cli(&a)
}

#[test]
fn sub_group_consume_disable_refuses_pulls_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Standalone::start(dir.path(), &[]);
    create_topic(&s, "SubT", 1);
    ok(&produce(&s, "SubT", &["--body", "m"]));
    assert_eq!(raw_pull(&s.broker(), "SubT", "CG1").unwrap(), 1);

    let out = ok(&group_config(&s, &["show", "--group", "CG1"]));
    assert!(
        out.contains("consume_enable=true") && out.contains("(defaults)"),
        "{out}"
    );
    ok(&group_config(
        &s,
        &["set", "--group", "CG1", "--consume-enable", "false"],
    ));
    denied(raw_pull(&s.broker(), "SubT", "CG1"), "may not consume");
    // The CLI consumer says so and exits non-zero, with or without an
    // idle timeout (it used to exit 0 having read nothing, or wait forever).
    for extra in [&["--idle-timeout", "3"][..], &[][..]] {
        let mut a = vec![
            "consume", "--group", "CG1", "--topic", "SubT", "--count", "1",
        ];
        a.extend_from_slice(extra);
        let err = fails(&s.cli(&a));
        assert!(err.contains("may not consume"), "{extra:?}: {err}");
    }
    // Another group is not affected.
    assert_eq!(raw_pull(&s.broker(), "SubT", "CG2").unwrap(), 1);

    s.restart();
    denied(raw_pull(&s.broker(), "SubT", "CG1"), "may not consume");
    let out = ok(&s.cli(&[
        "admin", "--json", "group", "config", "show", "--group", "CG1",
    ]));
    let v = &json_lines(out.as_bytes())[0];
    assert_eq!(v["consume_enable"], false, "{v}");
    assert_eq!(v["stored"], true, "{v}");

    ok(&group_config(
        &s,
        &["set", "--group", "CG1", "--consume-enable", "true"],
    ));
    assert_eq!(raw_pull(&s.broker(), "SubT", "CG1").unwrap(), 1);

    let err = fails(&group_config(
        &s,
        &["set", "--group", "CG1", "--retry-max", "100"],
    ));
    assert!(err.contains("over the limit"), "{err}");
    let err = fails(&group_config(&s, &["set", "--group", "CG1"]));
    assert!(err.contains("nothing to set"), "{err}");
    let err = fails(&group_config(
        &s,
        &["set", "--group", "bad group", "--broadcast", "false"],
    ));
    assert!(err.contains("bad group"), "{err}");
}

#[test]
fn sub_group_retry_max_sends_a_failed_message_to_the_dlq_sooner() {
    let dir = tempfile::tempdir().unwrap();
    let s = Standalone::start(dir.path(), &[]);
    create_topic(&s, "RetryT", 1);
    let out = ok(&produce(&s, "RetryT", &["--body", "fails"]));
    let msg_id = json_lines(out.as_bytes())[0]["msg_id"]
        .as_str()
        .unwrap()
        .to_string();
    let offset = MessageId::from_hex(&msg_id).unwrap().physical_offset;
    // Second failure, the consumer allowing its default 16 attempts.
    let send_back = || {
        run(async {
            let c = RpcClient::connect(&s.broker(), Duration::from_secs(5))
                .await
                .unwrap();
            let r = c
                .call(&SendBackRequest {
                    group: "RG".into(),
                    physical_offset: offset,
                    reconsume_times: 1,
                    max_reconsume_times: Some(16),
                    dead_letter: false,
                })
                .await
                .unwrap();
            c.close();
            r.topic
        })
    };
    assert_eq!(send_back(), "%RETRY%RG");
    ok(&group_config(
        &s,
        &["set", "--group", "RG", "--retry-max", "1"],
    ));
    let out = ok(&group_config(&s, &["show", "--group", "RG"]));
    assert!(out.contains("retry_max=1"), "{out}");
    assert_eq!(send_back(), "%DLQ%RG");
    ok(&group_config(
        &s,
        &["set", "--group", "RG", "--client-retry-max"],
    ));
    assert_eq!(send_back(), "%RETRY%RG");
}

fn heartbeat(group: &str, model: MessageModel, producer_group: Option<&str>) -> HeartbeatRequest {
    HeartbeatRequest {
        client_id: format!("raw-{group}"),
        producer_groups: producer_group.into_iter().map(String::from).collect(),
        consumer_groups: vec![ConsumerGroupData {
            group: group.into(),
            message_model: model,
            subscriptions: vec![Subscription {
                topic: "BcT".into(),
                expression: "*".into(),
                ..Default::default()
            }],
            ..Default::default()
        }],
        language: "TEST".into(),
        version: "9.9".into(),
    }
}

#[test]
fn sub_group_broadcast_disable_refuses_broadcasting_members() {
    let dir = tempfile::tempdir().unwrap();
    let s = Standalone::start(dir.path(), &[]);
    create_topic(&s, "BcT", 1);
    ok(&produce(&s, "BcT", &["--body", "m"]));
    ok(&group_config(
        &s,
        &["set", "--group", "BG", "--broadcast", "false"],
    ));
    run(async {
        let c = RpcClient::connect(&s.broker(), Duration::from_secs(5))
            .await
            .unwrap();
        denied(
            c.call(&heartbeat("BG", MessageModel::Broadcasting, None))
                .await,
            "broadcasting",
        );
        // Clustering members of the group are welcome.
        c.call(&heartbeat("BG", MessageModel::Clustering, None))
            .await
            .unwrap();
        c.close();
    });
    // The CLI's broadcasting consumer is refused with the reason (it used
    // to pull everything without being a member).
    let off = dir.path().join("bg.json");
    let err = fails(&s.cli(&[
        "consume",
        "--group",
        "BG",
        "--topic",
        "BcT",
        "--broadcast",
        "--offset-file",
        off.to_str().unwrap(),
        "--idle-timeout",
        "3",
    ]));
    assert!(err.contains("broadcasting"), "{err}");
    // A broadcasting member known from before the change cannot pull.
    ok(&group_config(
        &s,
        &["set", "--group", "BG2", "--broadcast", "true"],
    ));
    run(async {
        let c = RpcClient::connect(&s.broker(), Duration::from_secs(5))
            .await
            .unwrap();
        c.call(&heartbeat("BG2", MessageModel::Broadcasting, None))
            .await
            .unwrap();
        ok(&group_config(
            &s,
            &["set", "--group", "BG2", "--broadcast", "false"],
        ));
        denied(pull_async(&s.broker(), "BcT", "BG2").await, "broadcasting");
        c.close();
    });
}

#[test]
fn consumer_and_producer_connections_come_from_heartbeats() {
    let dir = tempfile::tempdir().unwrap();
    let s = Standalone::start(dir.path(), &[]);
    create_topic(&s, "ConnT", 1);
    let consumer = common::KillOnDrop(
        std::process::Command::new(common::bin())
            .args([
                "--log-level",
                "warn",
                "consume",
                "--group",
                "ConnG",
                "--topic",
                "ConnT",
            ])
            .args(["--filter", "TagA || TagB", "--idle-timeout", "60"])
            .env("SKYLARK_NAMESRV", s.namesrv())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut member = serde_json::Value::Null;
    assert!(wait_until(WAIT, || {
        let out = s.cli(&[
            "admin",
            "--json",
            "group",
            "connections",
            "--group",
            "ConnG",
        ]);
        match json_lines(&out.stdout).into_iter().next() {
            Some(v) if out.status.success() => {
                member = v;
                true
            }
            _ => false,
        }
    }));
    assert_eq!(member["language"], "RUST", "{member}");
    assert_eq!(member["version"], env!("CARGO_PKG_VERSION"), "{member}");
    assert!(
        member["addr"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{member}"
    );
    assert_eq!(member["message_model"], "Clustering", "{member}");
    assert_eq!(member["subscriptions"][0]["topic"], "ConnT", "{member}");
    assert_eq!(
        member["subscriptions"][0]["expression"], "TagA || TagB",
        "{member}"
    );
    drop(consumer);
    // A member whose connection closed is no longer listed.
    assert!(wait_until(WAIT, || {
        !s.cli(&["admin", "group", "connections", "--group", "ConnG"])
            .status
            .success()
    }));

    let err = fails(&s.cli(&["admin", "producer", "connections", "--group", "PG1"]));
    assert!(err.contains("no live client"), "{err}");
    run(async {
        let c = RpcClient::connect(&s.broker(), Duration::from_secs(5))
            .await
            .unwrap();
        c.call(&heartbeat("unused", MessageModel::Clustering, Some("PG1")))
            .await
            .unwrap();
        let out = ok(&s.cli(&[
            "admin",
            "--json",
            "producer",
            "connections",
            "--group",
            "PG1",
        ]));
        let v = &json_lines(out.as_bytes())[0];
        assert_eq!(v["client_id"], "raw-unused", "{v}");
        assert_eq!(v["language"], "TEST", "{v}");
        assert_eq!(v["version"], "9.9", "{v}");
        c.close();
    });
    assert!(wait_until(WAIT, || {
        !s.cli(&["admin", "producer", "connections", "--group", "PG1"])
            .status
            .success()
    }));
}

fn status(s: &Standalone) -> serde_json::Value {
    let out = ok(&s.cli(&["admin", "--json", "broker", "status"]));
    json_lines(out.as_bytes())[0]["status"].clone()
}

#[test]
fn broker_status_reports_tps_disk_flush_and_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Standalone::start(dir.path(), &[]);
    create_topic(&s, "StatT", 1);
    ok(&s.cli(&[
        "produce", "--topic", "StatT", "--count", "20", "--body", "x",
    ]));
    let v = status(&s);
    assert_eq!(v["recovery_kind"], "NewStore", "{v}");
    assert_eq!(v["recovery_damaged_records"], "0", "{v}");
    assert_eq!(v["broker_permission"], "rw", "{v}");
    assert!(
        v["put_messages_total"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 20,
        "{v}"
    );
    let ratio: f64 = v["commit_log_disk_ratio"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((0.0..=1.0).contains(&ratio) && ratio > 0.0, "{v}");
    assert!(v["commit_log_max_offset"].as_str().unwrap() != "0", "{v}");
    for k in [
        "flush_latency_max_us",
        "commit_log_mapped_bytes",
        "get_found_tps_10s",
    ] {
        assert!(v.get(k).is_some(), "{k} missing: {v}");
    }
    // TPS comes from once-a-second samples.
    assert!(wait_until(WAIT, || {
        status(&s)["put_tps_10s"]
            .as_str()
            .unwrap()
            .parse::<f64>()
            .unwrap()
            > 0.0
    }));
    assert!(raw_pull(&s.broker(), "StatT", "SG").unwrap() > 0);
    assert!(status(&s)["get_found_messages_total"].as_str().unwrap() != "0");

    s.kill9();
    s.restart();
    let v = status(&s);
    assert_eq!(v["recovery_kind"], "Unclean", "{v}");
    let human = ok(&s.cli(&["admin", "broker", "status", "--broker", "standalone"]));
    assert!(human.contains("recovery_damaged_records"), "{human}");
    let err = fails(&s.cli(&["admin", "broker", "status", "--broker", "nosuch"]));
    assert!(err.contains("nosuch"), "{err}");
}

/// Issue 18 item 2 (broker side): a frame over the limit is answered with a
/// typed `FrameTooLarge` error that says so, echoing the request's id and
/// command so the client can tell which request it was; only that
/// connection closes.
#[test]
fn oversize_frame_gets_a_typed_too_large_answer_on_a_raw_socket() {
    use skylark::codec::{FrameCodec, FrameKind};
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let s = Standalone::start(dir.path(), &[]);
    let mut sock = std::net::TcpStream::connect(s.broker()).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    // Length 20,000,000, then the envelope and header [77, Request, SendMessage(10)].
    let mut frame = 20_000_000u32.to_be_bytes().to_vec();
    frame.extend_from_slice(&[0x92, 0x93, 77, 0, 10]);
    frame.extend_from_slice(&[0x80; 64]);
    sock.write_all(&frame).unwrap();
    let mut answer = Vec::new();
    // The broker answers, then closes this connection.
    let _ = sock.read_to_end(&mut answer);
    let mut buf = bytes::BytesMut::from(&answer[..]);
    let mut codec = FrameCodec::new(skylark::codec::DEFAULT_MAX_FRAME_SIZE);
    let f = tokio_util::codec::Decoder::decode(&mut codec, &mut buf)
        .unwrap()
        .expect("an answer frame");
    assert_eq!(f.header.kind, FrameKind::Response);
    assert_eq!((f.header.request_id, f.header.command), (77, 10));
    let e = match f.decode_response::<skylark::codec::Ack>() {
        Err(ProtocolError::Remote(e)) => e,
        other => panic!("expected an error answer, got {other:?}"),
    };
    assert_eq!(e.code, ErrorCode::FrameTooLarge, "{e:?}");
    assert!(
        e.message.contains("too large") && e.message.contains("20000000"),
        "{}",
        e.message
    );
    // The broker still serves everyone else.
    raw_send(&s.broker(), "TBW102").ok();
    create_topic(&s, "AfterT", 1);
    ok(&produce(&s, "AfterT", &["--body", "fine"]));
}

/// `recovery_damaged_records` is the store's count (`Store::damaged_records`),
/// not a constant: a record damaged on disk while the broker was down is
/// counted once a read meets it.
#[test]
fn broker_status_counts_a_damaged_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Standalone::start(dir.path(), &[]);
    create_topic(&s, "DmgT", 1);
    for body in ["first-intact-body", "DAMAGE-ME-PLEASE", "third-intact-body"] {
        ok(&produce(&s, "DmgT", &["--body", body]));
    }
    assert!(s.terminate(), "clean shutdown");
    let log_dir = dir.path().join("commitlog");
    let segment = std::fs::read_dir(&log_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .min()
        .expect("a CommitLog segment");
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = bytes
        .windows(16)
        .position(|w| w == b"DAMAGE-ME-PLEASE")
        .expect("the body on disk");
    bytes[at] ^= 0xff;
    std::fs::write(&segment, &bytes).unwrap();
    drop(bytes);

    s.restart();
    assert_eq!(status(&s)["recovery_damaged_records"], "0");
    // Reading the queue meets the damaged record (skipped, reported).
    let _ = raw_pull(&s.broker(), "DmgT", "DG");
    let v = status(&s);
    assert_eq!(v["recovery_damaged_records"], "1", "{v}");
    assert_eq!(v["recovery_kind"], "Clean", "{v}");
}

/// Deleting the broker's own topics is refused: their queues hold pending
/// delayed and transactional messages, and TBW102 is the auto-create route.
#[test]
fn the_brokers_own_topics_cannot_be_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start(dir.path(), &[]);
    ok(&node.cli(&[
        "produce",
        "--topic",
        "Own",
        "--body",
        "m",
        "--delay-level",
        "10",
    ]));
    for internal in ["SCHEDULE_TOPIC_XXXX", "RMQ_SYS_TRANS_HALF_TOPIC", "TBW102"] {
        let err = fails(&node.cli(&["admin", "topic", "delete", "--name", internal]));
        assert!(err.contains("cannot be deleted"), "{internal}: {err}");
    }
    // Nor can a client write into them; all answer one code.
    for internal in [
        "SCHEDULE_TOPIC_XXXX",
        "TIMER_TOPIC_XXXX",
        "RMQ_SYS_TRANS_HALF_TOPIC",
        "RMQ_SYS_TRANS_OP_HALF_TOPIC",
        "TBW102",
    ] {
        match raw_send(&node.broker(), internal) {
            Err(ProtocolError::Remote(e)) => {
                assert_eq!(e.code, ErrorCode::PermissionDenied, "{internal}: {e:?}");
                assert!(e.message.contains("reserved"), "{internal}: {e:?}");
            }
            other => panic!("a send to {internal} answered {other:?}"),
        }
    }
    assert!(
        wait_until(WAIT, || {
            ok(&node.cli(&["admin", "--json", "delay", "stats"])).contains("\"level_pending\":1")
        }),
        "the delayed message is no longer pending"
    );
}

/// A consumer running while its topic is deleted and at once created
/// again reads the new topic from its start: its pull parked on the old
/// queue is woken by the delete (and told its offset is gone) instead of
/// reading the new queue at the old offset.
#[test]
fn a_live_consumer_reads_a_topic_deleted_and_created_again_from_its_start() {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start(dir.path(), &[]);
    let create = || ok(&node.cli(&["admin", "topic", "create", "--name", "LV", "--queues", "1"]));
    create();
    ok(&node.cli(&["produce", "--topic", "LV", "--count", "5", "--body", "old"]));
    let mut consume = common::KillOnDrop(
        Command::new(common::bin())
            .args([
                "consume", "--group", "lvg", "--topic", "LV", "--count", "13", "--json",
            ])
            .env("SKYLARK_NAMESRV", node.namesrv())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (rx, _) = common::pipe_lines(consume.0.stdout.take().unwrap());
    let mut bodies = Vec::new();
    let next = |bodies: &mut Vec<String>| {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no more messages after {bodies:?}"));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        bodies.push(v["body"].as_str().unwrap_or_default().to_string());
    };
    for _ in 0..5 {
        next(&mut bodies);
    }
    // Its next pull is parked on the old queue at offset 5.
    ok(&node.cli(&["admin", "topic", "delete", "--name", "LV"]));
    create();
    ok(&node.cli(&["produce", "--topic", "LV", "--count", "8", "--body", "new"]));
    for _ in 0..8 {
        next(&mut bodies);
    }
    let new: Vec<&String> = bodies[5..].iter().collect();
    let want: Vec<String> = (0..8).map(|i| format!("new-{i}")).collect();
    assert_eq!(new, want.iter().collect::<Vec<_>>(), "{bodies:?}");
    let _ = consume.0.wait();
}

// Admin writes over several brokers with one frozen (was tests/admin_partial.rs):
// Admin writes over several brokers when one of them does not answer
// (frozen with SIGSTOP, so connections are accepted and requests time
// out): the write is applied on the others, each broker's outcome is
// printed, the command exits non-zero, and running it again finishes it.
// Also `topic update` of a topic not on every master, and the broker's own
// topics refused by `update`, `perm` and `stats`.

/// (stdout, stderr) of a command that must fail.
fn failed_with(out: &Output) -> (String, String) {
    assert!(
        !out.status.success(),
        "command should fail, printed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A standalone node (broker "standalone") and a second broker "bro-b"
/// registered with its NameServer.
struct TwoBrokers {
    node: Standalone,
    bro_b: common::KillOnDrop,
    _dirs: [tempfile::TempDir; 2],
}

impl TwoBrokers {
    fn start() -> TwoBrokers {
        let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let node = Standalone::start(d1.path(), &[]);
        let port = common::free_port();
        let mut child = std::process::Command::new(common::bin())
            .args([
                "--log-level",
                "warn",
                "broker",
                "--namesrv",
                &node.namesrv(),
            ])
            .args(["--port", &port.to_string(), "--data-dir"])
            .arg(d2.path())
            .env("SKYLARK_BROKER_NAME", "bro-b")
            .env("SKYLARK_HA_PORT", "0")
            .env("SKYLARK_STORE__SEGMENT_SIZE", "67108864")
            .envs(common::ROOMY_DISK)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("spawn broker");
        common::wait_listening(&mut child, &[port]).expect("bro-b listens");
        let addr = format!("127.0.0.1:{port}");
        assert!(
            wait_until(WAIT, || {
                let out = node.cli(&["admin", "--json", "cluster", "list"]);
                String::from_utf8_lossy(&out.stdout).contains(&addr)
            }),
            "bro-b never registered"
        );
        TwoBrokers {
            node,
            bro_b: common::KillOnDrop(child),
            _dirs: [d1, d2],
        }
    }

    fn cli(&self, args: &[&str]) -> Output {
        self.node.cli(args)
    }

    /// SIGSTOP (`-STOP`) or SIGCONT (`-CONT`) to bro-b; a stop returns once
    /// the process is stopped.
    fn signal_b(&self, sig: &str) {
        let pid = self.bro_b.0.id().to_string();
        let sent = std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap();
        assert!(sent.success(), "kill {sig} {pid}");
        let stat = format!("/proc/{pid}/stat");
        let stopped = || {
            std::fs::read_to_string(&stat)
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')
                        .map(|(_, r)| r.trim_start().starts_with('T'))
                })
                .unwrap_or(false)
        };
        assert!(wait_until(WAIT, || stopped() == (sig == "-STOP")));
    }

    /// The broker names of `topic`'s route.
    fn routed(&self, topic: &str) -> Vec<String> {
        let out = self.cli(&["admin", "--json", "topic", "route", "--name", topic]);
        json_lines(&out.stdout)
            .first()
            .and_then(|v| v["route"]["brokers"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|b| b["broker_name"].as_str().map(String::from))
            .collect()
    }
}

/// `topic create`, `topic perm` and `topic delete` with bro-b frozen:
/// applied on standalone, bro-b's failure printed, exit non-zero; run
/// again once bro-b answers, each completes.
#[test]
fn topic_writes_with_a_broker_down_are_applied_elsewhere_and_completed_by_running_them_again() {
    let c = TwoBrokers::start();
    c.signal_b("-STOP");
    let create = [
        "admin", "topic", "create", "--name", "PartT", "--queues", "2",
    ];
    let (out, err) = failed_with(&c.cli(&create));
    assert!(
        out.contains("created topic 'PartT' (2 queues) on standalone"),
        "{out}"
    );
    assert!(out.contains("failed on bro-b"), "{out}");
    assert!(
        err.contains("bro-b") && err.contains("run the same command again"),
        "{err}"
    );
    c.signal_b("-CONT");
    // Run again: standalone has it as asked, bro-b gets it.
    let out = ok(&c.cli(&create));
    assert!(out.contains("already on standalone"), "{out}");
    assert!(
        out.contains("created topic 'PartT' (2 queues) on bro-b"),
        "{out}"
    );
    assert!(wait_until(WAIT, || c.routed("PartT").len() == 2));

    c.signal_b("-STOP");
    let perm = [
        "admin", "--json", "topic", "perm", "--name", "PartT", "--perm", "r",
    ];
    let (out, err) = failed_with(&c.cli(&perm));
    let lines = json_lines(out.as_bytes());
    assert!(
        lines
            .iter()
            .any(|v| v["broker_name"] == "standalone" && v["perm"] == "r-"),
        "{out}"
    );
    assert!(
        lines
            .iter()
            .any(|v| v["broker_name"] == "bro-b" && v["result"] == "failed"),
        "{out}"
    );
    assert!(err.contains("applied on: standalone"), "{err}");

    let (out, err) = failed_with(&c.cli(&["admin", "topic", "delete", "--name", "PartT"]));
    assert!(out.contains("deleted topic 'PartT' on standalone"), "{out}");
    assert!(err.contains("bro-b"), "{err}");
    c.signal_b("-CONT");
    let out = ok(&c.cli(&["admin", "topic", "delete", "--name", "PartT"]));
    assert!(out.contains("deleted topic 'PartT' on bro-b"), "{out}");
}

/// `group delete` with bro-b frozen does not say "deleted" and exit 0:
/// it names where it deleted and where it failed.
#[test]
fn group_delete_with_a_broker_down_fails_naming_it() {
    let c = TwoBrokers::start();
    // A stored setting makes the group exist on both masters.
    let set = ok(&c.cli(&[
        "admin",
        "group",
        "config",
        "set",
        "--group",
        "DelG",
        "--retry-max",
        "3",
    ]));
    assert!(set.contains("standalone") && set.contains("bro-b"), "{set}");
    c.signal_b("-STOP");
    let delete = ["admin", "group", "delete", "--group", "DelG"];
    let (out, err) = failed_with(&c.cli(&delete));
    assert!(
        out.contains("consumer group 'DelG' deleted on standalone"),
        "{out}"
    );
    assert!(err.contains("failed on 1 of 2 brokers (bro-b"), "{err}");
    c.signal_b("-CONT");
    // Standalone no longer knows it (nothing to do there), bro-b deletes.
    let out = ok(&c.cli(&delete));
    assert!(
        out.contains("deleted on bro-b") && !out.contains("standalone"),
        "{out}"
    );
    let (_, err) = failed_with(&c.cli(&delete));
    assert!(err.contains("not found on any master"), "{err}");
    // On the wire a group a broker does not know is `GroupNotFound` (it
    // was `BadRequest`, which the CLI had to tell apart by its text).
    let answer = run(async {
        let c = RpcClient::connect(&c.node.broker(), Duration::from_secs(5))
            .await
            .unwrap();
        let r = c
            .call(&skylark::codec::DeleteGroupRequest {
                group: "DelG".into(),
            })
            .await;
        c.close();
        r
    });
    assert!(
        matches!(&answer, Err(ProtocolError::Remote(e)) if e.code == ErrorCode::GroupNotFound),
        "{answer:?}"
    );
}

/// `topic update` writes to the masters hosting the topic, not to every
/// master; `create --broker` adds it to another. The broker's own topics
/// are refused by `update`, `perm` and `stats` as reserved.
#[test]
fn update_targets_the_hosting_masters_and_reserved_topics_are_refused() {
    let c = TwoBrokers::start();
    ok(&c.cli(&[
        "admin",
        "topic",
        "create",
        "--name",
        "OnlyS",
        "--queues",
        "2",
        "--broker",
        "standalone",
    ]));
    assert!(wait_until(WAIT, || c.routed("OnlyS") == ["standalone"]));
    let out = ok(&c.cli(&[
        "admin", "topic", "update", "--name", "OnlyS", "--queues", "4",
    ]));
    assert!(
        out.contains("updated topic 'OnlyS' (4 queues) on standalone") && !out.contains("bro-b"),
        "{out}"
    );
    let out = ok(&c.cli(&[
        "admin", "topic", "create", "--name", "OnlyS", "--queues", "4", "--broker", "bro-b",
    ]));
    assert!(
        out.contains("created topic 'OnlyS' (4 queues) on bro-b"),
        "{out}"
    );

    for args in [
        &[
            "admin", "topic", "update", "--name", "TBW102", "--queues", "4",
        ][..],
        &["admin", "topic", "perm", "--name", "TBW102", "--perm", "r"],
        &["admin", "topic", "stats", "--name", "TBW102"],
        &[
            "admin",
            "topic",
            "perm",
            "--name",
            "SCHEDULE_TOPIC_XXXX",
            "--perm",
            "r",
        ],
    ] {
        let (_, err) = failed_with(&c.cli(args));
        assert!(err.contains("is reserved"), "{args:?}: {err}");
    }
}
