//! End-to-end tests of the `skylark` binary: real processes, free ports,
//! temporary data directories.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{bin, json_lines, Standalone};

#[test]
fn kill9_under_sync_flush_loses_no_acknowledged_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Standalone::start(dir.path(), &["--flush", "sync"]);

    // Produce until the broker dies under it; every printed line is an ack.
    let mut produce = Command::new(bin())
        .args([
            "--log-level",
            "off",
            "produce",
            "--topic",
            "Durable",
            "--count",
            "1000000",
            "--body",
            "m",
            "--json",
        ])
        .env("SKYLARK_NAMESRV", node.namesrv())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = produce.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut acked = Vec::new();
    while acked.len() < 500 {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(l) => acked.push(l),
            Err(e) => panic!("producer stalled after {} acks: {e}", acked.len()),
        }
    }
    node.kill9();
    // The producer fails once its broker is gone; collect what it printed.
    let status = produce.wait().unwrap();
    reader.join().unwrap();
    acked.extend(rx.try_iter());
    assert!(
        !status.success(),
        "produce should fail when the broker is killed"
    );
    let acked: Vec<serde_json::Value> = acked
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();

    node.restart();
    let out = node.cli(&[
        "consume",
        "--group",
        "check",
        "--topic",
        "Durable",
        "--idle-timeout",
        "3",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "consume failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = json_lines(&out.stdout);

    // Every queue in order, no gaps, from 0.
    let mut per_queue: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for m in &got {
        per_queue
            .entry(m["queue_id"].as_u64().unwrap())
            .or_default()
            .push(m["queue_offset"].as_u64().unwrap());
    }
    for (q, offs) in &per_queue {
        assert!(
            offs.iter().enumerate().all(|(i, o)| *o == i as u64),
            "queue {q} has gaps or disorder: {offs:?}"
        );
    }
    // Every acknowledged message is there, with its body intact.
    let by_id: BTreeMap<&str, &serde_json::Value> = got
        .iter()
        .map(|m| (m["msg_id"].as_str().unwrap(), m))
        .collect();
    let mut seen_bodies = HashSet::new();
    for (i, a) in acked.iter().enumerate() {
        let id = a["msg_id"].as_str().unwrap();
        let m = by_id
            .get(id)
            .unwrap_or_else(|| panic!("acknowledged message #{i} {id} is lost"));
        assert_eq!(m["queue_id"], a["queue_id"]);
        assert_eq!(m["queue_offset"], a["queue_offset"]);
        let body = m["body"].as_str().unwrap();
        assert!(body.starts_with("m-"), "body {body:?}");
        assert!(
            seen_bodies.insert(body.to_string()),
            "duplicate body {body}"
        );
    }
}

#[test]
fn garbage_then_oversized_then_normal_produce() {
    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start(dir.path(), &[]);

    let mut s = TcpStream::connect(node.broker()).unwrap();
    let junk: Vec<u8> = (0..65536).map(|_| rand::random::<u8>()).collect();
    let _ = s.write_all(&junk);
    drop(s);

    let out = node.cli(&["produce", "--topic", "Big", "--size", "5000000"]);
    assert!(!out.status.success(), "a 5 MB message must be refused");
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(
        err.contains("too large") || err.contains("exceeds"),
        "stderr: {err}"
    );

    let out = node.cli(&[
        "produce", "--topic", "Big", "--count", "5", "--body", "ok", "--json",
    ]);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json_lines(&out.stdout).len(), 5);
}

#[test]
fn produce_consume_round_trip_with_tags_and_committed_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start(dir.path(), &[]);
    for (tag, n) in [("A", "3"), ("B", "2")] {
        let out = node.cli(&[
            "produce", "--topic", "Tags", "--count", n, "--body", tag, "--tag", tag, "--json",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = node.cli(&[
        "consume",
        "--group",
        "ga",
        "--topic",
        "Tags",
        "--filter",
        "A",
        "--idle-timeout",
        "2",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = json_lines(&out.stdout);
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|m| m["tags"] == "A"));
    // The group's offsets were committed: nothing new for it now.
    let out = node.cli(&[
        "consume",
        "--group",
        "ga",
        "--topic",
        "Tags",
        "--filter",
        "A",
        "--idle-timeout",
        "1",
        "--json",
    ]);
    assert!(out.status.success());
    assert_eq!(json_lines(&out.stdout).len(), 0);
    // Another group sees all five.
    let out = node.cli(&[
        "consume",
        "--group",
        "gall",
        "--topic",
        "Tags",
        "--count",
        "5",
        "--idle-timeout",
        "5",
        "--json",
    ]);
    assert_eq!(json_lines(&out.stdout).len(), 5);
}

#[test]
fn admin_topic_commands_and_clean_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Standalone::start(dir.path(), &[]);
    let out = node.cli(&["admin", "topic", "create", "--name", "Adm", "--queues", "6"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ok = common::wait_until(Duration::from_secs(10), || {
        let out = node.cli(&["admin", "--json", "topic", "route", "--name", "Adm"]);
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("6")
    });
    assert!(ok, "route of Adm never showed 6 queues");
    let out = node.cli(&["admin", "topic", "list"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Adm"));
    let out = node.cli(&["produce", "--topic", "Adm", "--count", "3", "--body", "s"]);
    assert!(out.status.success());
    let out = node.cli(&["admin", "--json", "topic", "stats", "--name", "Adm"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = &json_lines(&out.stdout)[0];
    let queues = v["brokers"][0]["queues"].as_array().unwrap();
    assert_eq!(queues.len(), 6);
    assert_eq!(
        queues
            .iter()
            .map(|q| q["max_offset"].as_u64().unwrap())
            .sum::<u64>(),
        3
    );
    let out = node.cli(&["admin", "topic", "create", "--name", "bad name!"]);
    assert!(!out.status.success());
    assert!(!out.stderr.is_empty());
    assert!(node.terminate(), "SIGTERM should stop standalone cleanly");
}

#[test]
fn namesrv_and_broker_as_separate_processes_with_conf_files() {
    let dir = tempfile::tempdir().unwrap();
    let (np, bp) = (common::free_port(), common::free_port());
    let conf = concat!(env!("CARGO_MANIFEST_DIR"), "/conf");
    let _ns = common::KillOnDrop(
        Command::new(bin())
            .args([
                "--log-level",
                "warn",
                "namesrv",
                "-c",
                &format!("{conf}/namesrv.toml"),
                "--port",
                &np.to_string(),
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Layering: the file, then SKYLARK_* (flush mode via env), then flags.
    let _broker = common::KillOnDrop(
        Command::new(bin())
            .args([
                "--log-level",
                "warn",
                "broker",
                "-c",
                &format!("{conf}/broker.toml"),
            ])
            .args([
                "--namesrv",
                &format!("127.0.0.1:{np}"),
                "--port",
                &bp.to_string(),
                "--data-dir",
            ])
            .arg(dir.path())
            .env("SKYLARK_STORE__FLUSH_MODE", "sync")
            .env("SKYLARK_DEFAULT_TOPIC_QUEUES", "2")
            // Any free HA port: port + 1 may belong to a parallel test.
            .env("SKYLARK_HA_PORT", "0")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let ns_addr = format!("127.0.0.1:{np}");
    let cli = |args: &[&str]| {
        Command::new(bin())
            .args(["--log-level", "warn"])
            .args(args)
            .env("SKYLARK_NAMESRV", &ns_addr)
            .output()
            .unwrap()
    };
    let registered = common::wait_until(Duration::from_secs(30), || {
        let out = cli(&["admin", "--json", "cluster", "list"]);
        out.status.success()
            && String::from_utf8_lossy(&out.stdout).contains(&format!("127.0.0.1:{bp}"))
    });
    assert!(registered, "broker never registered");
    let out = cli(&[
        "produce", "--topic", "Sep", "--count", "4", "--body", "x", "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The env layer set two queues per auto-created topic.
    let queues: HashSet<u64> = json_lines(&out.stdout)
        .iter()
        .map(|m| m["queue_id"].as_u64().unwrap())
        .collect();
    assert_eq!(queues, HashSet::from([0, 1]));
    let out = cli(&[
        "consume",
        "--group",
        "g",
        "--topic",
        "Sep",
        "--count",
        "4",
        "--idle-timeout",
        "5",
        "--json",
    ]);
    assert_eq!(json_lines(&out.stdout).len(), 4);
    // A bad config file is a clear error, not a panic.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "port = \"not a number\"\n").unwrap();
    let out = Command::new(bin())
        .args(["broker", "-c"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("error"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bench_modes_report_json() {
    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start(dir.path(), &[]);
    let run = |args: &[&str]| {
        let out = node.cli(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r = json_lines(&out.stdout).pop().expect("one JSON report");
        assert!(r["msgs_per_sec"].as_f64().unwrap() > 0.0, "{r}");
        assert_eq!(r["errors"], 0, "{r}");
        for k in ["mb_per_sec", "p50_us", "p99_us", "p999_us", "max_us"] {
            assert!(r.get(k).is_some(), "missing {k} in {r}");
        }
    };
    run(&[
        "bench",
        "produce",
        "--topic",
        "Bp",
        "--count",
        "3000",
        "--batch",
        "32",
        "--clients",
        "2",
        "--json",
    ]);
    run(&[
        "bench", "consume", "--topic", "Bp", "--count", "3000", "--json",
    ]);
    // e2e on a topic that does not exist yet.
    run(&[
        "bench",
        "e2e",
        "--topic",
        "Be",
        "--count",
        "500",
        "--inflight",
        "4",
        "--json",
    ]);
}
