//! End-to-end tests of delayed delivery (delay levels and arbitrary time)
//! against a real `skylark standalone` process: timing windows, the
//! max-delay limit, and kill -9 with 10,000 messages pending.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{bin, json_lines, wait_until, KillOnDrop, Standalone};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn ok(out: &std::process::Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts `consume --json` in the background; each line arrives on the
/// channel with the wall-clock time (ms) it was read.
fn consume_live(
    s: &Standalone,
    group: &str,
    topic: &str,
    count: usize,
) -> (KillOnDrop, mpsc::Receiver<(i64, serde_json::Value)>) {
    let mut child = Command::new(bin())
        .args(["--log-level", "warn", "consume", "--json", "--group", group])
        .args(["--topic", topic, "--count", &count.to_string()])
        .args(["--idle-timeout", "30"])
        .env("SKYLARK_NAMESRV", s.namesrv())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn consume");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str(&line) {
                if tx.send((now_ms(), v)).is_err() {
                    break;
                }
            }
        }
    });
    (KillOnDrop(child), rx)
}

fn pending(s: &Standalone) -> (u64, u64) {
    let out = s.cli(&["admin", "--json", "delay", "stats"]);
    ok(&out, "admin delay stats");
    let v = &json_lines(&out.stdout)[0];
    (
        v["level_pending"].as_u64().unwrap(),
        v["timer_pending"].as_u64().unwrap(),
    )
}

#[test]
fn level_2_and_delay_ms_arrive_on_time() {
    let dir = tempfile::tempdir().unwrap();
    let s = Standalone::start(dir.path(), &[]);
    ok(
        &s.cli(&[
            "admin", "topic", "create", "--name", "Delayed", "--queues", "2",
        ]),
        "topic create",
    );
    let (_consumer, rx) = consume_live(&s, "g-delay", "Delayed", 3);
    ok(
        &s.cli(&["produce", "--topic", "Delayed", "--body", "now"]),
        "produce now",
    );
    // The consumer is running once the immediate message has arrived.
    let (_, first) = rx.recv_timeout(Duration::from_secs(30)).expect("immediate");
    assert_eq!(first["body"], "now");

    let out = s.cli(&[
        "produce",
        "--topic",
        "Delayed",
        "--body",
        "level2",
        "--delay-level",
        "2",
    ]);
    ok(&out, "produce level 2");
    let out = s.cli(&[
        "produce",
        "--topic",
        "Delayed",
        "--body",
        "ms1500",
        "--delay-ms",
        "1500",
    ]);
    ok(&out, "produce delay-ms");

    let mut got = HashMap::new();
    while got.len() < 2 {
        let (at, v) = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("delayed message never arrived");
        let born = v["born_timestamp"].as_i64().unwrap();
        got.insert(v["body"].as_str().unwrap().to_string(), (at - born, v));
    }
    let (l2, v) = &got["level2"];
    assert!(
        (4_900..=7_000).contains(l2),
        "level 2 arrived after {l2} ms"
    );
    assert!(v["properties"].get("DELAY").is_none(), "{v}");
    assert!(v["properties"].get("REAL_TOPIC").is_none(), "{v}");
    let (ms, _) = &got["ms1500"];
    assert!(
        (1_400..=2_600).contains(ms),
        "--delay-ms 1500 arrived after {ms} ms"
    );
    assert_eq!(pending(&s), (0, 0));
}

#[test]
fn too_long_a_delay_is_refused_and_past_times_deliver_now() {
    let dir = tempfile::tempdir().unwrap();
    let s = Standalone::start(dir.path(), &[]);
    let out = s.cli(&[
        "produce",
        "--topic",
        "Far",
        "--body",
        "x",
        "--delay-ms",
        "400000000",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("maximum delay is 259200000 ms"),
        "unexpected error: {err}"
    );
    let past = (now_ms() - 60_000).to_string();
    ok(
        &s.cli(&[
            "produce",
            "--topic",
            "Far",
            "--body",
            "past",
            "--deliver-at",
            &past,
        ]),
        "produce past",
    );
    let out = s.cli(&[
        "consume",
        "--json",
        "--group",
        "g",
        "--topic",
        "Far",
        "--count",
        "1",
        "--idle-timeout",
        "10",
    ]);
    ok(&out, "consume");
    let v = &json_lines(&out.stdout)[0];
    assert_eq!(v["body"], "past");
    assert!(v["properties"].get("__STARTDELIVERTIME").is_none(), "{v}");
}

#[test]
fn kill9_with_10000_pending_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Standalone::start(dir.path(), &[]);
    ok(
        &s.cli(&[
            "admin", "topic", "create", "--name", "Crash", "--queues", "4",
        ]),
        "topic create",
    );
    let sent_at = now_ms();
    let out = s.cli(&[
        "produce",
        "--topic",
        "Crash",
        "--count",
        "5000",
        "--batch",
        "100",
        "--body",
        "timer",
        "--delay-ms",
        "8000",
    ]);
    ok(&out, "produce timer");
    let out = s.cli(&[
        "produce",
        "--topic",
        "Crash",
        "--count",
        "5000",
        "--batch",
        "100",
        "--body",
        "level",
        "--delay-level",
        "2",
    ]);
    ok(&out, "produce level");
    // Everything is parked and indexed, nothing delivered yet.
    assert!(
        wait_until(Duration::from_secs(5), || pending(&s) == (5000, 5000)),
        "pending before the kill: {:?}",
        pending(&s)
    );
    assert!(
        now_ms() - sent_at < 4_500,
        "sending took too long for the test's premise"
    );
    s.kill9();
    s.restart();

    let out = s.cli(&[
        "consume",
        "--json",
        "--group",
        "g-crash",
        "--topic",
        "Crash",
        "--count",
        "10000",
        "--idle-timeout",
        "15",
    ]);
    ok(&out, "consume");
    let lines = json_lines(&out.stdout);
    let mut seen: HashMap<String, u32> = HashMap::new();
    for v in &lines {
        *seen
            .entry(v["body"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    for kind in ["timer", "level"] {
        for i in 0..5000 {
            let body = format!("{kind}-{i}");
            assert_eq!(
                seen.get(&body),
                Some(&1),
                "{body} delivered {:?} times",
                seen.get(&body)
            );
        }
    }
    assert_eq!(lines.len(), 10_000);
    // Each arrived once due, not before.
    for v in &lines {
        let delay = if v["body"].as_str().unwrap().starts_with("timer") {
            8_000
        } else {
            5_000
        };
        let late = v["store_timestamp"].as_i64().unwrap() - v["born_timestamp"].as_i64().unwrap();
        assert!(late >= delay - 100, "delivered early: {v}");
    }
    assert_eq!(pending(&s), (0, 0));
}

#[test]
fn kill9_during_delivery_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Standalone::start(dir.path(), &[]);
    ok(
        &s.cli(&["admin", "topic", "create", "--name", "Mid", "--queues", "2"]),
        "topic create",
    );
    // Due times spread over the ~1-2 s the sending takes.
    let out = s.cli(&[
        "produce",
        "--topic",
        "Mid",
        "--count",
        "4000",
        "--batch",
        "20",
        "--body",
        "m",
        "--delay-ms",
        "2000",
    ]);
    ok(&out, "produce");
    // Kill while part is delivered and part is still pending.
    assert!(
        wait_until(Duration::from_secs(20), || {
            let (_, t) = pending(&s);
            t > 0 && t < 3_500
        }),
        "delivery never got under way"
    );
    s.kill9();
    s.restart();
    let out = s.cli(&[
        "consume",
        "--json",
        "--group",
        "g-mid",
        "--topic",
        "Mid",
        "--count",
        "8000",
        "--idle-timeout",
        "4",
    ]);
    ok(&out, "consume");
    let mut seen: HashMap<String, u32> = HashMap::new();
    for v in json_lines(&out.stdout) {
        *seen
            .entry(v["body"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    for i in 0..4000 {
        assert!(seen.contains_key(&format!("m-{i}")), "m-{i} lost");
    }
    // Only the deliveries of the tick the kill interrupted may repeat.
    let dups: u32 = seen.values().map(|n| n - 1).sum();
    eprintln!("re-delivered after kill -9 mid-delivery: {dups}");
    assert!(dups < 2_000, "{dups} duplicates");
    assert_eq!(pending(&s), (0, 0));
}
