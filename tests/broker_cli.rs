//! End-to-end tests of the `skylark` binary: real processes, free ports,
//! temporary data directories.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::net::TcpStream;
use std::process::{Command, Stdio};
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
    let (rx, reader) = common::pipe_lines(produce.stdout.take().unwrap());
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
            // conf/broker.toml's 0.90 hard limit would refuse sends on a
            // busy shared CI disk; the env layer overrides it.
            .envs(common::ROOMY_DISK)
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
        .envs(common::ROOMY_DISK)
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("error"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Settings it could start with but not work with fail the start, before
    // it binds or registers, naming the key.
    for (text, says) in [
        ("default_topic_queues = 0\n", "default_topic_queues must be"),
        (
            "delay_levels = \"1s 5x\"\n",
            "delay_levels: delay level '5x'",
        ),
        (
            "[store]\ndelete_when_hour = 30\n",
            "store: delete_when_hour",
        ),
        (
            "namesrv = \"nonsense\"\n",
            "namesrv: 'nonsense' is not HOST:PORT",
        ),
        (
            "namesrv = \"127.0.0.1:9876;host:0\"\n",
            "namesrv: 'host:0' is not HOST:PORT",
        ),
        (
            "write_high_water_bytes = 10\nwrite_low_water_bytes = 100\n",
            "write_high_water_bytes (10) is below write_low_water_bytes (100)",
        ),
        (
            "[store]\nflush_interval_ms = 0\n",
            "store: flush_interval_ms and clean_interval_ms must be positive",
        ),
        (
            "[store]\nmax_message_size = 100000000\n",
            "store.max_message_size (100000000) does not fit a frame",
        ),
    ] {
        std::fs::write(&bad, text).unwrap();
        let out = Command::new(bin())
            .args(["--log-level", "warn", "broker", "-c"])
            .arg(&bad)
            .args(["--port", &common::free_port().to_string(), "--data-dir"])
            .arg(dir.path().join("never"))
            .envs(common::ROOMY_DISK)
            .env("SKYLARK_HA_PORT", "0")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{text}: {err}");
        assert!(err.contains(says), "{text}: {err}");
        assert_eq!(err.matches(says).count(), 1, "said twice: {err}");
    }
    // A directory is not a configuration file.
    let out = Command::new(bin())
        .args(["namesrv", "-c"])
        .arg(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is a directory, not a configuration file"),
        "{err}"
    );
    // A data directory that is a file: the error names it (it said only
    // "File exists"), and the file is left as it was.
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let out = Command::new(bin())
        .args(["--log-level", "warn", "broker", "--data-dir"])
        .arg(&file)
        .args([
            "--port",
            &common::free_port().to_string(),
            "--namesrv",
            "127.0.0.1:1",
        ])
        .envs(common::ROOMY_DISK)
        .env("SKYLARK_HA_PORT", "0")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "cannot create the data directory {}",
            file.display()
        )),
        "{err}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
}

/// Two brokers on one data directory would overwrite each other's
/// acknowledged messages: the second is refused, naming the first's pid.
#[test]
fn a_second_broker_on_a_data_directory_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start(dir.path(), &[]);
    let out = Command::new(bin())
        .args(["--log-level", "warn", "broker", "--data-dir"])
        .arg(dir.path())
        .args(["--port", &common::free_port().to_string()])
        .args(["--namesrv", &node.namesrv()])
        .envs(common::ROOMY_DISK)
        .env("SKYLARK_HA_PORT", "0")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("is in use by another process (pid "), "{err}");
    assert_eq!(err.matches("in use by another process").count(), 1, "{err}");
    // The first one still serves, and TBW102 is not a topic to send to.
    let sent = node.cli(&["produce", "--topic", "Kept", "--count", "1", "--body", "x"]);
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    let tbw = node.cli(&[
        "produce", "--topic", "TBW102", "--count", "1", "--body", "x",
    ]);
    let err = String::from_utf8_lossy(&tbw.stderr);
    assert!(!tbw.status.success(), "a send to TBW102 was accepted");
    assert!(err.contains("'TBW102' is reserved"), "{err}");
}

/// A data directory a controller-mode broker wrote (it has `epoch.json`)
/// started with a fixed role would take writes the group's master never
/// has, and could not rejoin: it is refused, for `broker` and `standalone`.
#[test]
fn a_controller_mode_data_directory_is_refused_with_a_fixed_role() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("epoch.json"),
        br#"[{"epoch":3,"start_offset":0}]"#,
    )
    .unwrap();
    let port = common::free_port().to_string();
    let ns = format!("127.0.0.1:{}", common::free_port());
    for args in [
        &["broker", "--port", &port, "--namesrv", &ns][..],
        &[
            "standalone",
            "--broker-port",
            &port,
            "--namesrv-port",
            &ns[10..],
            "--no-metrics",
            "--no-dashboard",
            "--no-remoting",
        ],
    ] {
        let mut child = Command::new(bin())
            .args(["--log-level", "warn"])
            .args(args)
            .arg("--data-dir")
            .arg(dir.path())
            .env("SKYLARK_HA_PORT", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let exited = common::wait_until(Duration::from_secs(20), || {
            child.try_wait().ok().flatten().is_some()
        });
        if !exited {
            let _ = child.kill();
        }
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(exited, "{args:?} started on a controller-mode data dir");
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("was written by a broker in controller mode")
                && err.contains("enable_controller_mode = true"),
            "{args:?}: {err}"
        );
        assert!(
            !dir.path().join("commitlog").exists(),
            "{args:?} wrote a store"
        );
    }
}

/// A producer started before any broker waits for a route (the NameServer
/// holds its request) and sends as soon as a broker registers.
#[test]
fn a_producer_started_before_any_broker_sends_once_one_registers() {
    let dir = tempfile::tempdir().unwrap();
    let (_ns, np) = common::spawn_namesrv();
    let ns_addr = format!("127.0.0.1:{np}");
    let mut producer = common::KillOnDrop(
        Command::new(bin())
            .args(["--log-level", "warn", "produce", "--topic", "Early"])
            .args(["--count", "3", "--body", "x", "--json"])
            .env("SKYLARK_NAMESRV", &ns_addr)
            .env("SKYLARK_ROUTE_WAIT_MS", "60000")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (rx, _) = common::pipe_lines(producer.0.stderr.take().unwrap());
    let said = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("producer says it waits");
    assert!(said.contains("waiting up to 60000 ms"), "{said}");

    let bp = common::free_port();
    let _broker = common::KillOnDrop(
        Command::new(bin())
            .args(["--log-level", "warn", "broker", "-c"])
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/conf/broker.toml"))
            .args([
                "--namesrv",
                &ns_addr,
                "--port",
                &bp.to_string(),
                "--data-dir",
            ])
            .arg(dir.path())
            .envs(common::ROOMY_DISK)
            .env("SKYLARK_HA_PORT", "0")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let done = common::wait_until(Duration::from_secs(60), || {
        matches!(producer.0.try_wait(), Ok(Some(_)))
    });
    assert!(
        done,
        "the producer did not finish after the broker registered"
    );
    let status = producer.0.wait().unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(&mut producer.0.stdout.take().unwrap(), &mut out).unwrap();
    let errs: Vec<String> = rx.try_iter().collect();
    assert!(status.success(), "{status}: {errs:?}");
    let sent = json_lines(out.as_bytes());
    assert_eq!(sent.len(), 3, "{out}");
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

/// Fails with the case's name unless the run neither panicked nor left its
/// failure unexplained: no panic text on stderr, an exit status of 0 (when
/// `ok`) or a documented failure status (1, 2 for usage, 3 for a not-OK
/// send status) with an `error` line on stderr.
fn assert_clean_exit(case: &str, out: &std::process::Output, ok: Option<bool>) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("panicked") && !err.contains("no reactor running"),
        "{case}: panic text on stderr: {err}"
    );
    let code = out.status.code();
    assert!(
        matches!(code, Some(0..=3)),
        "{case}: exit status {code:?} (killed or panicked?), stderr: {err}"
    );
    if code != Some(0) {
        assert!(
            err.to_lowercase().contains("error"),
            "{case}: failed without a reason on stderr: {err}"
        );
    }
    if let Some(ok) = ok {
        assert_eq!(
            out.status.success(),
            ok,
            "{case}: exit status {code:?}, stderr: {err}"
        );
    }
}

#[test]
fn every_subcommand_with_degenerate_arguments_exits_cleanly_without_panic() {
    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start(dir.path(), &[]);
    let out = node.cli(&[
        "admin", "topic", "create", "--name", "Demo", "--queues", "2",
    ]);
    assert_clean_exit("create Demo", &out, Some(true));
    // (arguments, Some(expected success) or None: either is fine)
    let cases: &[(&[&str], Option<bool>)] = &[
        (
            &["produce", "--topic", "Demo", "--count", "0", "--body", "x"],
            Some(true),
        ),
        (
            &["produce", "--topic", "Demo", "--count", "0", "--json"],
            Some(true),
        ),
        (
            &[
                "produce",
                "--topic",
                "Demo",
                "--count",
                "0",
                "--transaction",
                "commit",
            ],
            Some(true),
        ),
        (
            &[
                "produce",
                "--topic",
                "Demo",
                "--count",
                "0",
                "--transaction",
                "commit",
                "--json",
            ],
            Some(true),
        ),
        (
            &[
                "produce",
                "--topic",
                "Demo",
                "--count",
                "0",
                "--order-key",
                "k",
            ],
            Some(true),
        ),
        (
            &["produce", "--topic", "Demo", "--count", "0", "--batch", "4"],
            Some(true),
        ),
        (&["produce", "--topic", "", "--body", "x"], Some(false)),
        (
            &["produce", "--topic", "bad topic", "--body", "x"],
            Some(false),
        ),
        (&["produce", "--topic", "Demo", "--batch", "0"], Some(false)),
        // Counts that size memory up front: refused, not an abort.
        (
            &["produce", "--topic", "Demo", "--batch", "100000000"],
            Some(false),
        ),
        (
            &[
                "bench",
                "produce",
                "--topic",
                "Demo",
                "--count",
                "3",
                "--inflight",
                "4294967295",
            ],
            Some(false),
        ),
        (
            &[
                "consume",
                "--group",
                "g",
                "--topic",
                "Demo",
                "--idle-timeout",
                "18446744073709551615",
            ],
            Some(false),
        ),
        (
            &["produce", "--topic", "Demo", "--body", "x", "--group", ""],
            Some(false),
        ),
        (
            &[
                "produce",
                "--topic",
                "Demo",
                "--body",
                "x",
                "--group",
                "",
                "--transaction",
                "commit",
            ],
            Some(false),
        ),
        (
            &["produce", "--topic", "Demo", "--delay-level", "0"],
            Some(false),
        ),
        (
            &["produce", "--topic", "Demo", "--property", "=x"],
            Some(false),
        ),
        // Refused by the client, as RocketMQ's producer refuses an empty body.
        (&["produce", "--topic", "Demo", "--body", ""], Some(false)),
        (&["produce", "--topic", "Demo", "--size", "0"], Some(false)),
        (
            &["produce", "--namesrv", "", "--topic", "Demo"],
            Some(false),
        ),
        (
            &["produce", "--namesrv", "nohost", "--topic", "Demo"],
            Some(false),
        ),
        (
            &["consume", "--group", "g", "--topic", "Demo", "--count", "0"],
            Some(true),
        ),
        (
            &[
                "consume",
                "--group",
                "g",
                "--topic",
                "Demo",
                "--idle-timeout",
                "0",
            ],
            Some(true),
        ),
        (
            &[
                "consume",
                "--group",
                "",
                "--topic",
                "Demo",
                "--idle-timeout",
                "1",
            ],
            Some(false),
        ),
        (
            &[
                "consume",
                "--group",
                "g",
                "--topic",
                "",
                "--idle-timeout",
                "1",
            ],
            Some(false),
        ),
        (
            &[
                "consume",
                "--group",
                "g",
                "--topic",
                "bad topic",
                "--idle-timeout",
                "1",
            ],
            Some(false),
        ),
        (
            &[
                "consume",
                "--group",
                "g",
                "--topic",
                "Demo",
                "--filter",
                "",
                "--idle-timeout",
                "1",
            ],
            None,
        ),
        (
            &["consume", "--group", "g", "--topic", "Demo", "--from", ""],
            Some(false),
        ),
        (
            &[
                "consume",
                "--group",
                "g",
                "--topic",
                "Demo",
                "--strategy",
                "",
            ],
            Some(false),
        ),
        (&["admin", "topic", "create", "--name", ""], Some(false)),
        (
            &["admin", "topic", "create", "--name", "Z", "--queues", "0"],
            Some(false),
        ),
        (&["admin", "topic", "update", "--name", ""], Some(false)),
        (&["admin", "topic", "delete", "--name", ""], Some(false)),
        (&["admin", "topic", "route", "--name", ""], Some(false)),
        (&["admin", "topic", "stats", "--name", ""], Some(false)),
        (
            &["admin", "topic", "stats", "--name", "NoSuchTopic"],
            Some(false),
        ),
        (&["admin", "message", "by-id", ""], Some(false)),
        (&["admin", "message", "by-id", "zz"], Some(false)),
        (&["admin", "message", "by-key", "--topic", "Demo", ""], None),
        (
            &["admin", "message", "by-key", "--topic", "", "k"],
            Some(false),
        ),
        (
            &[
                "admin",
                "message",
                "by-time",
                "--topic",
                "Demo",
                "--timestamp",
                "0",
                "--max-per-queue",
                "0",
            ],
            None,
        ),
        (&["admin", "group", "progress", "--group", ""], Some(false)),
        (&["admin", "group", "delete", "--group", ""], Some(false)),
        (
            &[
                "admin",
                "offset",
                "reset",
                "--group",
                "",
                "--topic",
                "Demo",
                "--timestamp",
                "0",
            ],
            Some(false),
        ),
        (&["admin", "broker", "config", "set", "", ""], Some(false)),
        (
            &["admin", "broker", "config", "get", "--broker", ""],
            Some(false),
        ),
        (&["admin", "delay", "stats", "--broker", ""], Some(false)),
        (
            &["bench", "produce", "--topic", "Demo", "--count", "0"],
            Some(false),
        ),
        (
            &["bench", "consume", "--topic", "Demo", "--count", "0"],
            Some(false),
        ),
        (
            &["bench", "e2e", "--topic", "Demo", "--count", "0"],
            Some(false),
        ),
        (
            &[
                "bench",
                "produce",
                "--topic",
                "Demo",
                "--count",
                "1",
                "--clients",
                "0",
            ],
            Some(false),
        ),
        (
            &[
                "bench", "produce", "--topic", "Demo", "--count", "1", "--batch", "0",
            ],
            Some(false),
        ),
    ];
    for (args, ok) in cases {
        let out = node.cli(args);
        assert_clean_exit(&args.join(" "), &out, *ok);
    }
    // The server commands refuse nonsense without panicking too.
    for args in [
        &["broker", "-c", "/nonexistent.toml"][..],
        &["--log-level", "loud", "namesrv"][..],
        &["namesrv", "-c", "/nonexistent.toml"][..],
        &["standalone", "-c", "/nonexistent.toml"][..],
    ] {
        let out = Command::new(bin())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_clean_exit(&args.join(" "), &out, Some(false));
    }
}

#[test]
fn produce_over_the_frame_limit_is_refused_by_the_client_as_too_large() {
    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start(dir.path(), &[]);
    for size in ["5000000", "20000000"] {
        let out = node.cli(&["produce", "--topic", "Big", "--size", size]);
        assert_clean_exit(size, &out, Some(false));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("message too large: {size} bytes")),
            "size {size}: {err}"
        );
        assert!(!err.contains("unexpected frame kind"), "{err}");
    }
    let out = node.cli(&["produce", "--topic", "Big", "--body", ""]);
    assert_clean_exit("empty body", &out, Some(false));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("message body is empty"), "{err}");
    // A tag no tag filter could select (`||` separates tags).
    let out = node.cli(&["produce", "--topic", "Big", "--body", "x", "--tag", "A|B"]);
    assert_clean_exit("tag with a bar", &out, Some(false));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("contains '|'"), "{err}");
    // The broker and its connections are fine afterwards.
    let out = node.cli(&["produce", "--topic", "Big", "--body", "ok"]);
    assert_clean_exit("small after big", &out, Some(true));
}

#[test]
fn produce_to_sync_master_without_slave_exits_3_unless_accept_status() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("sync.toml");
    std::fs::write(
        &conf,
        "broker_role = \"SYNC_MASTER\"\nsync_replication_timeout_ms = 200\n",
    )
    .unwrap();
    let node = Standalone::start(&dir.path().join("data"), &["-c", conf.to_str().unwrap()]);
    let out = node.cli(&[
        "produce", "--topic", "Sync", "--count", "3", "--body", "b", "--json",
    ]);
    assert_clean_exit("no slave", &out, Some(false));
    assert_eq!(out.status.code(), Some(3), "distinct exit status");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("SlaveNotAvailable") || err.contains("FlushSlaveTimeout"),
        "{err}"
    );
    assert!(err.contains("--accept-status"), "{err}");
    // The stored message was printed, and the run stopped there.
    let lines = json_lines(&out.stdout);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_ne!(lines[0]["status"], "SendOk");

    let out = node.cli(&[
        "produce",
        "--topic",
        "Sync",
        "--count",
        "3",
        "--body",
        "b",
        "--json",
        "--accept-status",
    ]);
    assert_clean_exit("accepted", &out, Some(true));
    assert_eq!(json_lines(&out.stdout).len(), 3);

    let out = node.cli(&[
        "produce",
        "--topic",
        "Sync",
        "--body",
        "t",
        "--transaction",
        "commit",
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The commit is stored on the master only, and the producer is told
    // so (it was answered OK whatever the slave wait gave).
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("outcome not confirmed")
            && said.contains("no slave is connected")
            && said.contains("end_transaction again confirms it"),
        "{said}"
    );
}

#[test]
fn consume_fail_on_goes_through_retry_to_dlq_and_orderly_keeps_queue_order() {
    let dir = tempfile::tempdir().unwrap();
    // Short delay levels: the retry path takes milliseconds, not minutes.
    let conf = dir.path().join("broker.toml");
    let levels = vec!["50ms"; 18].join(" ");
    std::fs::write(&conf, format!("delay_levels = \"{levels}\"\n")).unwrap();
    let node = Standalone::start(&dir.path().join("data"), &["-c", conf.to_str().unwrap()]);
    let out = node.cli(&[
        "admin", "topic", "create", "--name", "Flaky", "--queues", "1",
    ]);
    assert_clean_exit("create", &out, Some(true));
    for body in ["fine-0", "poison", "fine-1"] {
        let out = node.cli(&["produce", "--topic", "Flaky", "--body", body]);
        assert_clean_exit(body, &out, Some(true));
    }
    let out = node.cli(&[
        "consume",
        "--group",
        "fg",
        "--topic",
        "Flaky",
        "--fail-on",
        "poison",
        "--max-reconsume-times",
        "1",
        "--idle-timeout",
        "4",
        "--json",
    ]);
    assert_clean_exit("consume --fail-on", &out, Some(true));
    let bodies: Vec<String> = json_lines(&out.stdout)
        .iter()
        .map(|m| m["body"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(bodies, ["fine-0", "fine-1"], "the poison is never consumed");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.matches("failing on purpose").count(),
        2,
        "1 delivery + 1 retry: {err}"
    );
    assert!(err.contains("reconsume_times=1"), "{err}");
    let out = node.cli(&[
        "consume",
        "--group",
        "dlq-reader",
        "--topic",
        "%DLQ%fg",
        "--idle-timeout",
        "4",
        "--json",
    ]);
    assert_clean_exit("consume DLQ", &out, Some(true));
    let dead = json_lines(&out.stdout);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["body"], "poison");

    // Orderly: every 2nd delivery fails and is retried in place, so the
    // queue is still printed in offset order, each message once.
    let out = node.cli(&[
        "consume",
        "--group",
        "og",
        "--topic",
        "Flaky",
        "--orderly",
        "--fail-every",
        "2",
        "--count",
        "3",
        "--idle-timeout",
        "10",
        "--json",
    ]);
    assert_clean_exit("consume --orderly", &out, Some(true));
    let offsets: Vec<u64> = json_lines(&out.stdout)
        .iter()
        .map(|m| m["queue_offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, [0, 1, 2]);
    let out = node.cli(&[
        "consume",
        "--group",
        "x",
        "--topic",
        "Flaky",
        "--fail-every",
        "0",
    ]);
    assert_clean_exit("--fail-every 0", &out, Some(false));
}

#[test]
fn consume_validates_the_topic_and_says_when_it_does_not_exist_yet() {
    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start(dir.path(), &[]);
    let out = node.cli(&[
        "consume",
        "--group",
        "g",
        "--topic",
        "bad topic",
        "--idle-timeout",
        "1",
    ]);
    assert_clean_exit("bad topic", &out, Some(false));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("contains ' '"),
        "validated like produce: {err}"
    );

    // Without --idle-timeout: a warning at once, then it keeps waiting and
    // receives the message once the topic is created.
    let mut consume = Command::new(bin())
        .args([
            "--log-level",
            "warn",
            "consume",
            "--group",
            "g",
            "--topic",
            "Later",
        ])
        .args(["--count", "1", "--json"])
        .env("SKYLARK_NAMESRV", node.namesrv())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (rx, _) = common::pipe_lines(consume.stderr.take().unwrap());
    let warning = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("a warning on stderr");
    assert!(
        warning.contains("topic 'Later' does not exist (yet)") && warning.contains("waiting"),
        "{warning}"
    );
    assert!(consume.try_wait().unwrap().is_none(), "keeps waiting");
    let out = node.cli(&["produce", "--topic", "Later", "--body", "finally"]);
    assert_clean_exit("produce", &out, Some(true));
    let mut consume = common::KillOnDrop(consume);
    assert!(
        common::wait_until(Duration::from_secs(60), || matches!(
            consume.0.try_wait(),
            Ok(Some(_))
        )),
        "consume never got the message"
    );
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut consume.0.stdout.take().unwrap(), &mut stdout).unwrap();
    assert!(stdout.contains("finally"), "{stdout}");

    // With --idle-timeout: gives up naming the topic.
    let out = node.cli(&[
        "consume",
        "--group",
        "g",
        "--topic",
        "Never",
        "--idle-timeout",
        "1",
    ]);
    assert_clean_exit("never", &out, Some(false));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("topic 'Never' does not exist"), "{err}");
}

#[test]
fn offset_reset_refuses_unknown_group_and_by_id_accepts_uniq_key() {
    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start(dir.path(), &[]);
    let out = node.cli(&[
        "produce", "--topic", "Q", "--body", "hello", "--key", "k1", "--json",
    ]);
    assert_clean_exit("produce", &out, Some(true));
    let offset_id = json_lines(&out.stdout)[0]["msg_id"]
        .as_str()
        .unwrap()
        .to_string();

    let out = node.cli(&[
        "admin",
        "offset",
        "reset",
        "--group",
        "nosuch",
        "--topic",
        "Q",
        "--timestamp",
        "0",
    ]);
    assert_clean_exit("reset nosuch", &out, Some(false));
    assert!(String::from_utf8_lossy(&out.stderr).contains("consumer group 'nosuch' not found"));
    let out = node.cli(&["admin", "--json", "group", "list"]);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("nosuch"),
        "no phantom group"
    );

    // A group that exists (it committed) can be reset.
    let out = node.cli(&[
        "consume", "--group", "real", "--topic", "Q", "--count", "1", "--json",
    ]);
    assert_clean_exit("consume", &out, Some(true));
    let uniq = json_lines(&out.stdout)[0]["properties"]["UNIQ_KEY"]
        .as_str()
        .expect("UNIQ_KEY property")
        .to_string();
    let out = node.cli(&[
        "admin",
        "offset",
        "reset",
        "--group",
        "real",
        "--topic",
        "Q",
        "--timestamp",
        "0",
    ]);
    assert_clean_exit("reset real", &out, Some(true));

    for id in [offset_id.as_str(), uniq.as_str()] {
        let out = node.cli(&["admin", "--json", "message", "by-id", id]);
        assert_clean_exit(id, &out, Some(true));
        let found = json_lines(&out.stdout);
        assert_eq!(found.len(), 1, "{id}: {found:?}");
        assert_eq!(found[0]["body"], "hello");
    }
    let out = node.cli(&["admin", "message", "by-id", &uniq, "--topic", "Q"]);
    assert_clean_exit("uniq with topic", &out, Some(true));
    let out = node.cli(&[
        "admin",
        "message",
        "by-id",
        "0123456789ABCDEF0123456789ABCDEF",
    ]);
    assert_clean_exit("unknown id", &out, Some(false));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
}

/// Retention deleted the oldest CommitLog segments (64 KiB segments, every
/// rolled one expired at once, retention at any hour: usage is above a 0
/// soft limit) under a group that committed before them. `group progress`
/// counted lag over the deleted messages; `message by-id` of a deleted
/// message said "no broker holds it" though its broker answered.
#[test]
fn a_group_and_a_message_id_below_the_retained_minimum() {
    let dir = tempfile::tempdir().unwrap();
    let dashboard = common::free_port();
    let metrics = common::free_port();
    let node = Standalone::start_env(
        dir.path(),
        &[
            "--dashboard-port",
            &dashboard.to_string(),
            "--metrics-port",
            &metrics.to_string(),
        ],
        &[
            ("SKYLARK_STORE__SEGMENT_SIZE", "65536"),
            ("SKYLARK_STORE__FILE_RESERVED_HOURS", "0"),
            ("SKYLARK_STORE__DISK_SOFT_LIMIT_RATIO", "0.0"),
            ("SKYLARK_STORE__CLEAN_INTERVAL_MS", "100"),
        ],
    );
    let run = |case: &str, args: &[&str]| {
        let out = node.cli(args);
        assert_clean_exit(case, &out, Some(true));
        out.stdout
    };
    run(
        "create",
        &["admin", "topic", "create", "--name", "R", "--queues", "1"],
    );
    let out = run(
        "produce first",
        &["produce", "--topic", "R", "--body", "first", "--json"],
    );
    let first_id = json_lines(&out)[0]["msg_id"].as_str().unwrap().to_string();
    run(
        "consume",
        &[
            "consume", "--group", "old", "--topic", "R", "--from", "first", "--count", "1",
        ],
    );
    run(
        "produce more",
        &[
            "produce", "--topic", "R", "--count", "300", "--size", "1000", "--json",
        ],
    );
    let queue = || {
        let out = node.cli(&["admin", "--json", "topic", "stats", "--name", "R"]);
        let v = json_lines(&out.stdout).pop()?;
        let q = &v["brokers"][0]["queues"][0];
        Some((q["min_offset"].as_u64()?, q["max_offset"].as_u64()?))
    };
    // Retention goes on until only the segment being written is left:
    // wait for that, so the min offset read below stays put.
    let segments = || {
        std::fs::read_dir(dir.path().join("commitlog"))
            .map_or(0, |d| d.filter_map(Result::ok).count())
    };
    assert!(
        common::wait_until(Duration::from_secs(30), || segments() == 1
            && queue().is_some_and(|(min, _)| min > 1)),
        "retention left {} segments, queue {:?}",
        segments(),
        queue()
    );
    let (min, max) = queue().unwrap();

    let out = run(
        "progress --json",
        &["admin", "--json", "group", "progress", "--group", "old"],
    );
    let v = &json_lines(&out)[0];
    let q = &v["queues"][0];
    assert_eq!(q["consumer_offset"], 1, "{v}");
    assert_eq!(q["lag"], max - min, "lag counts what is left: {v}");
    assert_eq!(v["total_lag"], max - min, "{v}");
    assert_eq!(q["min_offset"], min, "{v}");
    assert_eq!(q["below_retention"], true, "{v}");
    // The metric counts lag the same way.
    let (_, scrape) = common::http_get(metrics, "/metrics", None);
    let lag = scrape
        .lines()
        .find(|l| {
            l.starts_with("rocketmq_consumer_lag_messages{")
                && l.contains("consumer_group=\"old\"")
                && l.contains("topic=\"R\"")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok());
    assert_eq!(lag, Some(max - min), "{scrape}");
    let text = String::from_utf8_lossy(&run(
        "progress",
        &["admin", "group", "progress", "--group", "old"],
    ))
    .into_owned();
    assert!(
        text.contains(&format!(
            "committed offset 1 is below the queue's retained minimum {min}"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("total lag: {}", max - min)),
        "{text}"
    );

    let out = node.cli(&["admin", "message", "by-id", &first_id]);
    assert_clean_exit("by-id", &out, Some(false));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("broker {} no longer holds it", node.broker()))
            && err.contains("below this broker's retained minimum")
            && !err.contains("no broker holds it"),
        "{err}"
    );
    // The dashboard's search: not found, naming the broker (it was a 502
    // "unreachable" with the broker's new answer, an empty one before).
    let (code, body) = common::http_get(dashboard, &format!("/api/messages?id={first_id}"), None);
    assert_eq!(code, 404, "{body}");
    assert!(
        body.contains(&format!("broker {} no longer holds it", node.broker())),
        "{body}"
    );
}

#[test]
fn topic_update_keeps_unset_values_create_refuses_existing_and_queues_split() {
    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start(dir.path(), &[]);
    let route = |name: &str| -> (u64, u64, bool) {
        let out = node.cli(&["admin", "--json", "topic", "route", "--name", name]);
        let v = &json_lines(&out.stdout)[0]["route"]["queues"][0];
        (
            v["read_queues"].as_u64().unwrap(),
            v["write_queues"].as_u64().unwrap(),
            v["order"].as_bool().unwrap(),
        )
    };
    let until =
        |want: (u64, u64, bool)| common::wait_until(Duration::from_secs(20), || route("T") == want);
    let out = node.cli(&["admin", "topic", "create", "--name", "T", "--queues", "2"]);
    assert_clean_exit("create", &out, Some(true));
    assert!(until((2, 2, false)));
    let out = node.cli(&["admin", "topic", "update", "--name", "T", "--order"]);
    assert_clean_exit("update --order", &out, Some(true));
    assert!(
        until((2, 2, true)),
        "update --order kept 2 queues: {:?}",
        route("T")
    );

    let out = node.cli(&["admin", "topic", "create", "--name", "T", "--queues", "8"]);
    assert_clean_exit("create again", &out, Some(false));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    let out = node.cli(&[
        "admin", "topic", "update", "--name", "Nope", "--queues", "3",
    ]);
    assert_clean_exit("update missing", &out, Some(false));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));

    // Drain before shrinking: fewer write queues, the read queues stay.
    let out = node.cli(&[
        "admin",
        "topic",
        "update",
        "--name",
        "T",
        "--write-queues",
        "1",
    ]);
    assert_clean_exit("write-queues", &out, Some(true));
    assert!(until((2, 1, true)), "{:?}", route("T"));
    let out = node.cli(&["admin", "--json", "topic", "stats", "--name", "T"]);
    let v = &json_lines(&out.stdout)[0]["brokers"][0];
    assert_eq!(
        (v["read_queues"].as_u64(), v["write_queues"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(v["queues"].as_array().unwrap().len(), 2);
    let out = node.cli(&["admin", "topic", "stats", "--name", "T"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 read / 1 write queues"));
    let out = node.cli(&[
        "admin",
        "topic",
        "update",
        "--name",
        "T",
        "--read-queues",
        "0",
    ]);
    assert_clean_exit("read-queues 0", &out, Some(false));
    // More write queues than read queues would fill queues nobody reads.
    let out = node.cli(&[
        "admin",
        "topic",
        "update",
        "--name",
        "T",
        "--write-queues",
        "4",
    ]);
    assert_clean_exit("write above read", &out, Some(false));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("4 write queues above 2 read queues"), "{err}");
    assert!(
        until((2, 1, true)),
        "refused update changed the route: {:?}",
        route("T")
    );
    let out = node.cli(&[
        "admin",
        "topic",
        "create",
        "--name",
        "W",
        "--read-queues",
        "2",
        "--write-queues",
        "4",
    ]);
    assert_clean_exit("create write above read", &out, Some(false));
}

#[test]
fn standalone_new_store_is_laptop_sized() {
    let dir = tempfile::tempdir().unwrap();
    // Not through the harness, which pins 64 MiB segments by environment.
    let (np, bp) = (common::free_port(), common::free_port());
    let child = Command::new(bin())
        .args(["--log-level", "warn", "standalone", "--data-dir"])
        .envs(common::ROOMY_DISK)
        .arg(dir.path())
        .args([
            "--namesrv-port",
            &np.to_string(),
            "--broker-port",
            &bp.to_string(),
        ])
        .env_remove("SKYLARK_STORE__SEGMENT_SIZE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = common::KillOnDrop(child);
    common::wait_listening(&mut child.0, &[np, bp]).unwrap();
    let produce = || {
        Command::new(bin())
            .args([
                "--log-level",
                "warn",
                "produce",
                "--topic",
                "Small",
                "--body",
                "x",
            ])
            .env("SKYLARK_NAMESRV", format!("127.0.0.1:{np}"))
            .output()
            .unwrap()
    };
    assert!(common::wait_until(Duration::from_secs(30), || produce()
        .status
        .success()));
    let total: u64 = walk(dir.path());
    assert!(
        total <= 100 << 20,
        "a new standalone store takes {} MiB",
        total >> 20
    );
    let segments: Vec<u64> = std::fs::read_dir(dir.path().join("commitlog"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .collect();
    assert_eq!(segments, [64 << 20]);

    // It starts again on the store it made.
    drop(child);
    let child = Command::new(bin())
        .args(["--log-level", "warn", "standalone", "--data-dir"])
        .envs(common::ROOMY_DISK)
        .arg(dir.path())
        .args([
            "--namesrv-port",
            &np.to_string(),
            "--broker-port",
            &bp.to_string(),
        ])
        .env_remove("SKYLARK_STORE__SEGMENT_SIZE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = common::KillOnDrop(child);
    common::wait_listening(&mut child.0, &[np, bp]).unwrap();
    assert!(common::wait_until(Duration::from_secs(30), || produce()
        .status
        .success()));
}

/// Bytes of every file under `dir`.
fn walk(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => walk(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn a_command_whose_stdout_and_stderr_are_closed_pipes_exits_1_not_by_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start(dir.path(), &[]);
    // `skylark produce ... 2>&1 | head -1`: the reader goes away, the next
    // line on stdout fails, and so does the error line on stderr.
    for args in [
        &["produce", "--topic", "Pipe", "--body", "x", "--count", "50"][..],
        &[
            "consume",
            "--group",
            "g",
            "--topic",
            "NoSuchTopic",
            "--idle-timeout",
            "1",
        ][..],
    ] {
        let mut child = Command::new(bin())
            .args(["--log-level", "warn"])
            .args(args)
            .env("SKYLARK_NAMESRV", node.namesrv())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        drop(child.stderr.take());
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(1), "{args:?}: {status}");
    }
}

/// A broker stopped with SIGTERM unregisters from its NameServer even when
/// the connection it registered on was closed meanwhile (here the
/// NameServer closed it idle): it called on the closed connection, logged
/// "unregister failed ... connection closed", and stayed in the routes
/// until the NameServer's broker timeout (120 s).
#[test]
fn a_stopped_broker_unregisters_even_when_its_namesrv_connection_was_closed() {
    let dir = tempfile::tempdir().unwrap();
    let ns_port = common::free_port();
    let mut ns = Command::new(bin())
        .args(["--log-level", "debug", "namesrv", "--port"])
        .arg(ns_port.to_string())
        .env("SKYLARK_CONNECTION_IDLE_SECS", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (ns_log, _reader) = common::pipe_lines(ns.stderr.take().unwrap());
    let mut ns = common::KillOnDrop(ns);
    common::wait_listening(&mut ns.0, &[ns_port]).unwrap();
    let namesrv = format!("127.0.0.1:{ns_port}");
    let port = common::free_port();
    let broker = Command::new(bin())
        .args([
            "--log-level",
            "warn",
            "broker",
            "--namesrv",
            &namesrv,
            "--port",
        ])
        .arg(port.to_string())
        .arg("--data-dir")
        .arg(dir.path())
        .envs(common::ROOMY_DISK)
        .env("SKYLARK_HA_PORT", "0")
        .env("SKYLARK_STORE__SEGMENT_SIZE", "67108864")
        // No registration nor heartbeat reopens the connection.
        .env("SKYLARK_REGISTER_INTERVAL_SECS", "600")
        .env_remove("SKYLARK_NAMESRV")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut broker = common::KillOnDrop(broker);
    common::wait_listening(&mut broker.0, &[port]).unwrap();
    let addr = format!("127.0.0.1:{port}");
    let listed = || {
        let out = common::cli(&namesrv, &["admin", "--json", "cluster", "list"]);
        String::from_utf8_lossy(&out.stdout).contains(&addr)
    };
    assert!(common::wait_until(Duration::from_secs(30), listed));
    // The broker's registration connection is closed by the NameServer.
    assert!(
        common::wait_until(Duration::from_secs(30), || ns_log
            .try_iter()
            .any(|l| l.contains("closing idle connection"))),
        "the NameServer never closed an idle connection"
    );
    common::unsafe_sigterm(broker.0.id());
    let st = broker.0.wait().unwrap();
    assert!(st.success(), "{st:?}");
    assert!(
        !listed(),
        "the stopped broker is still in the NameServer's list"
    );
}
