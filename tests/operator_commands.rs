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
    run(async {
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
    })
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
    assert!(err.contains("PermT"), "{err}");
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
