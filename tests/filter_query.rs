//! End-to-end tests of the SQL-92 property filter, the IndexFile queries
//! (`admin message by-key / by-id / by-time`) and the admin command set,
//! against real `skylark standalone` processes.

mod common;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::{json_lines, wait_until, Standalone};

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "expected failure, got: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A broker conf with small segments and a small IndexFile (rolls over).
fn small_conf(dir: &Path) -> String {
    let path = dir.join("broker.toml");
    std::fs::write(
        &path,
        "[store]\nsegment_size = 1048576\nindex_slots = 16\nindex_entries = 9\n",
    )
    .unwrap();
    path.to_string_lossy().into_owned()
}

fn start(dir: &Path) -> Standalone {
    let conf = small_conf(dir);
    let data = dir.join("data");
    Standalone::start(&data, &["-c", &conf])
}

/// Waits until the NameServer routes `topic` (a topic auto-created by a
/// send is registered by the broker right after).
fn wait_route(node: &Standalone, topic: &str) {
    assert!(
        wait_until(Duration::from_secs(10), || {
            node.cli(&["admin", "topic", "route", "--name", topic])
                .status
                .success()
        }),
        "topic '{topic}' never got a route"
    );
}

fn consume_sql(node: &Standalone, group: &str, topic: &str, sql: &str, count: &str) -> Output {
    node.cli(&[
        "consume",
        "--group",
        group,
        "--topic",
        topic,
        "--sql",
        sql,
        "--count",
        count,
        "--idle-timeout",
        "3",
        "--json",
    ])
}

#[test]
fn sql_filter_on_tags_and_properties() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path());
    for tag in ["A", "B", "C"] {
        ok(&node.cli(&[
            "produce", "--topic", "Sql", "--count", "30", "--body", tag, "--tag", tag,
        ]));
    }
    // Exactly the 60 A and C messages; B never reaches the client (the
    // client does not filter SQL itself).
    let out = consume_sql(&node, "g-sql", "Sql", "TAGS IN ('A','C')", "1000");
    let got = json_lines(ok(&out).as_bytes());
    assert_eq!(got.len(), 60);
    assert_eq!(got.iter().filter(|m| m["tags"] == "A").count(), 30);
    assert_eq!(got.iter().filter(|m| m["tags"] == "C").count(), 30);
    // The group's offsets moved past the B messages too: nothing is left.
    let out = consume_sql(&node, "g-sql", "Sql", "TAGS IN ('A','C')", "1000");
    assert_eq!(json_lines(ok(&out).as_bytes()).len(), 0);

    // A property filter: a > 5 AND b = 'x'
    for (a, b) in [("3", "x"), ("7", "x"), ("9", "y"), ("10", "x"), ("6", "xx")] {
        let pa = format!("a={a}");
        let pb = format!("b={b}");
        let body = format!("{a}{b}");
        ok(&node.cli(&[
            "produce",
            "--topic",
            "Props",
            "--body",
            &body,
            "--property",
            &pa,
            "--property",
            &pb,
        ]));
    }
    ok(&node.cli(&["produce", "--topic", "Props", "--body", "none"]));
    let out = consume_sql(&node, "g-props", "Props", "a > 5 AND b = 'x'", "1000");
    let mut bodies: Vec<String> = json_lines(ok(&out).as_bytes())
        .iter()
        .map(|m| m["body"].as_str().unwrap().to_string())
        .collect();
    bodies.sort();
    assert_eq!(bodies, vec!["10x", "7x"]);
    let out = consume_sql(&node, "g-null", "Props", "a IS NULL", "1000");
    let got = json_lines(ok(&out).as_bytes());
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["body"], "none");

    // A malformed expression: non-zero exit with the parser's reason.
    let err = fails(&consume_sql(&node, "g-bad", "Sql", "TAGS IN (", "1"));
    assert!(err.contains("TAGS IN ("), "{err}");
    assert!(err.contains("Expected"), "parser reason missing: {err}");

    // The broker refuses SQL while enable_property_filter is off (a live setting).
    ok(&node.cli(&[
        "admin",
        "broker",
        "config",
        "set",
        "enable_property_filter",
        "false",
    ]));
    let err = fails(&consume_sql(&node, "g-off", "Sql", "TAGS = 'A'", "1"));
    assert!(err.contains("enable_property_filter"), "{err}");
    ok(&node.cli(&[
        "admin",
        "broker",
        "config",
        "set",
        "enable_property_filter",
        "true",
    ]));
    let out = consume_sql(&node, "g-on", "Sql", "TAGS = 'A'", "30");
    assert_eq!(json_lines(ok(&out).as_bytes()).len(), 30);
}

/// Integers around 2^53 (where an f64 stops holding every integer) and
/// property values that Rust's f64 parser reads but are not numbers: the
/// broker compares two integers exactly, and `inf` / `NaN` match no
/// numeric comparison (the filter read both through an f64: `n =
/// 9007199254740993` matched `9007199254740992`, and `inf` was above
/// every number).
#[test]
fn sql_compares_integers_past_2_pow_53_exactly_and_inf_is_not_a_number() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path());
    for n in [
        "9007199254740991",
        "9007199254740992",
        "9007199254740993",
        "9007199254740994",
        "9007199254740995",
        "inf",
        "NaN",
        "infinity",
    ] {
        let prop = format!("n={n}");
        ok(&node.cli(&[
            "produce",
            "--topic",
            "Big",
            "--body",
            n,
            "--property",
            &prop,
        ]));
    }
    let bodies = |group: &str, sql: &str| {
        let out = consume_sql(&node, group, "Big", sql, "1000");
        let mut got: Vec<String> = json_lines(ok(&out).as_bytes())
            .iter()
            .map(|m| m["body"].as_str().unwrap().to_string())
            .collect();
        got.sort();
        got
    };
    assert_eq!(
        bodies("g-big-eq", "n = 9007199254740993"),
        vec!["9007199254740993"]
    );
    assert_eq!(
        bodies("g-big-ge", "n >= 9007199254740993"),
        vec!["9007199254740993", "9007199254740994", "9007199254740995"]
    );
}

fn by_key(node: &Standalone, topic: &str, key: &str) -> Vec<serde_json::Value> {
    json_lines(
        ok(&node.cli(&[
            "admin", "message", "by-key", "--topic", topic, key, "--json",
        ]))
        .as_bytes(),
    )
}

#[test]
fn query_by_key_survives_restarts_and_by_id_reads_the_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = start(dir.path());
    let mut ids = Vec::new();
    for i in 0..12 {
        let key = format!("order-{i} shared");
        let body = format!("body-{i}");
        let out = ok(&node.cli(&[
            "produce", "--topic", "Keys", "--key", &key, "--body", &body, "--json",
        ]));
        ids.push(
            json_lines(out.as_bytes())[0]["msg_id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    wait_route(&node, "Keys");
    // 12 messages × 3 index entries over files of 8 entries: several files
    let index_files = std::fs::read_dir(dir.path().join("data").join("index"))
        .unwrap()
        .count();
    assert!(index_files >= 4, "index files: {index_files}");

    let check = |node: &Standalone| {
        let got = by_key(node, "Keys", "order-3");
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0]["body"], "body-3");
        assert_eq!(got[0]["keys"], "order-3 shared");
        assert_eq!(got[0]["msg_id"], ids[3].as_str());
        assert_eq!(by_key(node, "Keys", "shared").len(), 12);
        // the producer's unique id is indexed too
        let uniq = got[0]["properties"]["UNIQ_KEY"]
            .as_str()
            .unwrap()
            .to_string();
        let by_uniq = by_key(node, "Keys", &uniq);
        assert_eq!(by_uniq.len(), 1);
        assert_eq!(by_uniq[0]["body"], "body-3");
        let out = node.cli(&["admin", "message", "by-id", &ids[11], "--json"]);
        let got = json_lines(ok(&out).as_bytes());
        assert_eq!(got.len(), 1);
        assert_eq!(got[0]["body"], "body-11");
        assert_eq!(got[0]["msg_id"], ids[11].as_str());
    };
    check(&node);
    // a time range that excludes everything
    let err = fails(&node.cli(&[
        "admin", "message", "by-key", "--topic", "Keys", "order-3", "--begin", "0", "--end", "1",
    ]));
    assert!(err.contains("order-3") && err.contains("Keys"), "{err}");

    // kill -9: the index is recovered or rebuilt from the CommitLog
    node.restart();
    check(&node);
    // the index directory lost entirely: rebuilt at start
    node.kill9();
    std::fs::remove_dir_all(dir.path().join("data").join("index")).unwrap();
    node.restart();
    check(&node);
    // clean shutdown and start
    assert!(node.terminate());
    node.restart();
    check(&node);

    // text output and errors naming the object
    let out = ok(&node.cli(&["admin", "message", "by-id", &ids[0]]));
    assert!(out.contains("body=body-0"), "{out}");
    let err = fails(&node.cli(&["admin", "message", "by-id", "nothex"]));
    assert!(err.contains("'nothex'"), "{err}");
    let err = fails(&node.cli(&[
        "admin",
        "message",
        "by-key",
        "--topic",
        "Keys",
        "absent-key",
    ]));
    assert!(err.contains("'absent-key'"), "{err}");
    let err = fails(&node.cli(&["admin", "message", "by-key", "--topic", "NoSuchTopic", "k"]));
    assert!(err.contains("NoSuchTopic"), "{err}");
}

#[test]
fn query_by_time_gives_the_first_message_of_each_queue() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path());
    ok(&node.cli(&[
        "admin", "topic", "create", "--name", "Timed", "--queues", "2",
    ]));
    assert!(wait_until(Duration::from_secs(10), || {
        node.cli(&["admin", "topic", "route", "--name", "Timed"])
            .status
            .success()
    }));
    ok(&node.cli(&[
        "produce", "--topic", "Timed", "--count", "4", "--body", "early",
    ]));
    let all = json_lines(
        ok(&node.cli(&[
            "admin",
            "message",
            "by-time",
            "--topic",
            "Timed",
            "--timestamp",
            "0",
            "--max-per-queue",
            "10",
            "--json",
        ]))
        .as_bytes(),
    );
    assert_eq!(all.len(), 4);
    let last_early = all
        .iter()
        .map(|m| m["store_timestamp"].as_i64().unwrap())
        .max()
        .unwrap();
    // Later messages: by-time after the early ones finds only them.
    assert!(wait_until(Duration::from_secs(5), || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
            > last_early + 5
    }));
    ok(&node.cli(&[
        "produce", "--topic", "Timed", "--count", "2", "--body", "late",
    ]));
    let got = json_lines(
        ok(&node.cli(&[
            "admin",
            "message",
            "by-time",
            "--topic",
            "Timed",
            "--timestamp",
            &(last_early + 1).to_string(),
            "--json",
        ]))
        .as_bytes(),
    );
    assert_eq!(got.len(), 2, "one late message per queue: {got:?}");
    assert!(
        got.iter()
            .all(|m| m["body"].as_str().unwrap().starts_with("late")),
        "{got:?}"
    );
    // consume --from MILLIS starts each queue at the first message stored
    // at or after it (SearchOffsetByTime).
    let from = (last_early + 1).to_string();
    let out = ok(&node.cli(&[
        "consume",
        "--group",
        "g-from",
        "--topic",
        "Timed",
        "--from",
        &from,
        "--idle-timeout",
        "2",
        "--json",
    ]));
    let consumed = json_lines(out.as_bytes());
    assert_eq!(consumed.len(), 2, "{consumed:?}");
    assert!(consumed
        .iter()
        .all(|m| m["body"].as_str().unwrap().starts_with("late")));
    let first_per_queue = json_lines(
        ok(&node.cli(&[
            "admin",
            "message",
            "by-time",
            "--topic",
            "Timed",
            "--timestamp",
            "0",
            "--json",
        ]))
        .as_bytes(),
    );
    assert_eq!(first_per_queue.len(), 2, "one per queue");
    assert!(first_per_queue.iter().all(|m| m["queue_offset"] == 0));
    let err = fails(&node.cli(&[
        "admin",
        "message",
        "by-time",
        "--topic",
        "Timed",
        "--timestamp",
        &i64::MAX.to_string(),
    ]));
    assert!(err.contains("Timed"), "{err}");
}

#[test]
fn admin_commands_against_a_live_broker() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path());
    let broker = node.broker();

    // cluster list
    let out = ok(&node.cli(&["admin", "--json", "cluster", "list"]));
    assert!(out.contains(&broker), "{out}");
    let out = ok(&node.cli(&["admin", "cluster", "list"]));
    assert!(
        out.contains("DefaultCluster") && out.contains(&broker),
        "{out}"
    );
    let row = out
        .lines()
        .find(|l| l.contains(&broker))
        .unwrap_or_default();
    assert!(row.ends_with("  ok"), "a live master's STATE: {out}");

    // topic create / route / list / stats / update / delete
    ok(&node.cli(&[
        "admin", "topic", "create", "--name", "AdmT", "--queues", "3",
    ]));
    let route_queues = |n: u64| {
        wait_until(Duration::from_secs(10), || {
            let out = node.cli(&["admin", "--json", "topic", "route", "--name", "AdmT"]);
            out.status.success()
                && json_lines(&out.stdout)[0]["route"]["queues"][0]["read_queues"] == n
        })
    };
    assert!(route_queues(3), "route never showed 3 queues");
    let out = ok(&node.cli(&["admin", "--json", "topic", "list"]));
    assert!(json_lines(out.as_bytes())[0]["topics"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t == "AdmT"));
    ok(&node.cli(&["produce", "--topic", "AdmT", "--count", "5", "--body", "s"]));
    let out = ok(&node.cli(&["admin", "--json", "topic", "stats", "--name", "AdmT"]));
    let v = &json_lines(out.as_bytes())[0];
    let queues = v["brokers"][0]["queues"].as_array().unwrap();
    assert_eq!(queues.len(), 3);
    let total: u64 = queues
        .iter()
        .map(|q| q["max_offset"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 5);
    ok(&node.cli(&[
        "admin", "topic", "update", "--name", "AdmT", "--queues", "5",
    ]));
    assert!(route_queues(5), "route never showed 5 queues after update");
    ok(&node.cli(&["admin", "topic", "delete", "--name", "AdmT"]));
    assert!(
        wait_until(Duration::from_secs(10), || {
            !node
                .cli(&["admin", "topic", "route", "--name", "AdmT"])
                .status
                .success()
        }),
        "route of a deleted topic still served"
    );
    let err = fails(&node.cli(&["admin", "topic", "stats", "--name", "AdmT"]));
    assert!(err.contains("AdmT"), "{err}");
    // Nothing is left to delete: every master is asked, none has it.
    let err = fails(&node.cli(&["admin", "topic", "delete", "--name", "AdmT"]));
    assert!(err.contains("does not exist on any master"), "{err}");

    // broker config get / set
    let out = ok(&node.cli(&["admin", "--json", "broker", "config", "get"]));
    let v = &json_lines(out.as_bytes())[0];
    assert_eq!(v["broker"], broker.as_str());
    assert_eq!(v["settings"]["long_poll_max_ms"], "15000");
    assert_eq!(v["settings"]["enable_property_filter"], "true");
    ok(&node.cli(&[
        "admin",
        "broker",
        "config",
        "set",
        "long_poll_max_ms",
        "2000",
        "--broker",
        &broker,
    ]));
    let out = ok(&node.cli(&["admin", "broker", "config", "get", "--broker", &broker]));
    assert!(out.contains("long_poll_max_ms = 2000"), "{out}");
    // default_topic_queues applies to the next auto-created topic
    ok(&node.cli(&[
        "admin",
        "broker",
        "config",
        "set",
        "default_topic_queues",
        "2",
    ]));
    ok(&node.cli(&["produce", "--topic", "Auto2", "--body", "x"]));
    wait_route(&node, "Auto2");
    let out = ok(&node.cli(&["admin", "--json", "topic", "stats", "--name", "Auto2"]));
    assert_eq!(
        json_lines(out.as_bytes())[0]["brokers"][0]["queues"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // auto_create_topic off: a send to a new topic is refused
    ok(&node.cli(&[
        "admin",
        "broker",
        "config",
        "set",
        "auto_create_topic",
        "false",
    ]));
    let err = fails(&node.cli(&["produce", "--topic", "NotCreated", "--body", "x"]));
    assert!(err.contains("NotCreated"), "{err}");
    // refusals name the key
    let err = fails(&node.cli(&["admin", "broker", "config", "set", "no_such_key", "1"]));
    assert!(err.contains("'no_such_key'"), "{err}");
    let err = fails(&node.cli(&["admin", "broker", "config", "set", "port", "1"]));
    assert!(
        err.contains("'port'") && err.contains("cannot be changed"),
        "{err}"
    );
    let err = fails(&node.cli(&["admin", "broker", "config", "set", "max_pull_bytes", "zero"]));
    assert!(err.contains("'max_pull_bytes'"), "{err}");
}

/// The broker itself refuses a malformed SQL subscription, on a pull and
/// on a heartbeat, with `InvalidFilter` and the parser's reason (a client
/// that does not validate locally gets the same answer).
#[test]
fn broker_refuses_malformed_sql_on_pull_and_heartbeat() {
    use skylark::client::{connect_broker, ClientConfig};
    use skylark_codec::{
        ConsumerGroupData, ErrorCode, ExpressionType, HeartbeatRequest, ProtocolError, PullRequest,
        Subscription,
    };
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path());
    ok(&node.cli(&["produce", "--topic", "Raw", "--body", "x", "--tag", "A"]));
    let broker = node.broker();
    let namesrv = node.namesrv();
    actix::System::new().block_on(async move {
        let cfg = ClientConfig::new(&namesrv);
        let c = connect_broker(&cfg, &broker).await.unwrap();
        let pull = |sql: &str| PullRequest {
            consumer_group: "raw".into(),
            topic: "Raw".into(),
            queue_id: 0,
            queue_offset: 0,
            max_messages: 32,
            max_bytes: 1 << 20,
            sql: Some(sql.into()),
            ..PullRequest::default()
        };
        let invalid = |r: Result<_, ProtocolError>| match r {
            Err(ProtocolError::Remote(w)) => {
                assert_eq!(w.code, ErrorCode::InvalidFilter, "{w:?}");
                w.message
            }
            other => panic!("expected InvalidFilter, got {other:?}"),
        };
        let msg = invalid(c.call(&pull("TAGS IN (")).await.map(|_| ()));
        assert!(msg.contains("Expected") && msg.contains("'Raw'"), "{msg}");
        let msg = invalid(c.call(&pull("a LIKE 'x%'")).await.map(|_| ()));
        assert!(msg.contains("not supported"), "{msg}");
        // a valid expression is served (every queue answers, none errs)
        let mut found = 0;
        for queue_id in 0..4 {
            let r = c
                .call(&PullRequest {
                    queue_id,
                    ..pull("TAGS = 'A'")
                })
                .await
                .unwrap();
            found += r.count;
        }
        assert_eq!(found, 1);
        let hb = |expr: &str| HeartbeatRequest {
            client_id: "raw-client".into(),
            language: String::new(),
            version: String::new(),
            producer_groups: Vec::new(),
            consumer_groups: vec![ConsumerGroupData {
                group: "raw".into(),
                subscriptions: vec![Subscription {
                    topic: "Raw".into(),
                    expression_type: ExpressionType::Sql,
                    expression: expr.into(),
                }],
                ..ConsumerGroupData::default()
            }],
        };
        let msg = invalid(c.call(&hb("a >")).await.map(|_| ()));
        assert!(
            msg.contains("group 'raw'") && msg.contains("'a >'"),
            "{msg}"
        );
        c.call(&hb("a > 1")).await.unwrap();
        c.close();
    });
}

/// Filters built to exhaust the broker's stack (found by the codec's
/// fuzz tests): a long `OR` chain is served, deep nesting is refused with
/// `InvalidFilter`, and the broker goes on serving. Before, each of them
/// overflowed the stack of the thread compiling it and aborted the broker.
#[test]
fn hostile_sql_filters_do_not_bring_the_broker_down() {
    use skylark::client::{connect_broker, ClientConfig};
    use skylark_codec::{ErrorCode, ProtocolError, PullRequest};
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path());
    ok(&node.cli(&["produce", "--topic", "Hostile", "--body", "x", "--tag", "A"]));
    let (broker, namesrv) = (node.broker(), node.namesrv());
    let chain = vec!["a=1"; 500].join(" OR ");
    let nots = format!("{}a = 1", "NOT ".repeat(63));
    let parens = format!("{}a = 1{}", "(".repeat(62), ")".repeat(62));
    actix::System::new().block_on(async move {
        let cfg = ClientConfig::new(&namesrv);
        let c = connect_broker(&cfg, &broker).await.unwrap();
        let pull = |sql: &str, queue_id| PullRequest {
            consumer_group: "hostile".into(),
            topic: "Hostile".into(),
            queue_id,
            queue_offset: 0,
            max_messages: 32,
            max_bytes: 1 << 20,
            sql: Some(sql.into()),
            ..PullRequest::default()
        };
        // A flat chain is a filter like any other (no message has `a`).
        for q in 0..4 {
            let r = c.call(&pull(&chain, q)).await.unwrap();
            assert_eq!(r.count, 0, "queue {q}");
        }
        for deep in [&nots, &parens] {
            match c.call(&pull(deep, 0)).await {
                Err(ProtocolError::Remote(w)) => {
                    assert_eq!(w.code, ErrorCode::InvalidFilter, "{w:?}")
                }
                other => panic!("expected InvalidFilter, got {other:?}"),
            }
        }
        let mut found = 0;
        for q in 0..4 {
            found += c.call(&pull("TAGS = 'A'", q)).await.unwrap().count;
        }
        assert_eq!(found, 1, "the broker still serves");
        c.close();
    });
}
