//! End-to-end: one flipped byte in the middle of the CommitLog, after a
//! kill -9 and after a clean stop. Every other acknowledged message is
//! consumed through the real binary (push consumer); the damaged one is
//! skipped, not served, and does not freeze its queue (issue 19 items 2, 3);
//! the operator sees it in `/metrics` and on the dashboard's alerts. And a
//! corrupt line of the topic log (`config/topics.log`) no longer hides its
//! topic after a restart.

mod common;

use std::collections::HashSet;
use std::path::Path;

use common::{free_port, http_get, json_lines, wait_until, Standalone};
use skylark::codec::MessageId;
use std::time::Duration;

/// The segment size the test harness gives every standalone broker.
const SEGMENT_SIZE: u64 = 67_108_864;
/// The body starts 108 bytes into a record (see `store/record.rs`).
const BODY_AT: u64 = 108;

fn produce(node: &Standalone, count: usize) -> Vec<serde_json::Value> {
    let out = node.cli(&[
        "produce",
        "--topic",
        "Hardening",
        "--count",
        &count.to_string(),
        "--body",
        "m",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "produce failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let acked = json_lines(&out.stdout);
    assert_eq!(acked.len(), count);
    acked
}

/// Flips one bit of the body of the record at `physical_offset`.
fn flip_body_byte(data_dir: &Path, physical_offset: u64) {
    let start = physical_offset - physical_offset % SEGMENT_SIZE;
    let path = data_dir.join("commitlog").join(format!("{start:020}"));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[(physical_offset - start + BODY_AT) as usize] ^= 0x10;
    std::fs::write(&path, bytes).unwrap();
}

/// Every message the CLI consumer receives, and what it said on stderr.
fn consume_all(node: &Standalone) -> (Vec<serde_json::Value>, String) {
    let out = node.cli(&[
        "consume",
        "--group",
        "hardening-check",
        "--topic",
        "Hardening",
        "--idle-timeout",
        "3",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "consume failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        json_lines(&out.stdout),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The value of the one series of `name` in the broker's `/metrics`.
fn metric(port: u16, name: &str) -> Option<f64> {
    let (_, body) = http_get(port, "/metrics", None);
    body.lines()
        .find(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with(['{', ' ']))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

fn run(clean_stop: bool) {
    let dir = tempfile::tempdir().unwrap();
    let (metrics, dashboard) = (free_port(), free_port());
    let ports = [metrics.to_string(), dashboard.to_string()];
    let mut node = Standalone::start(
        dir.path(),
        &[
            "--flush",
            "sync",
            "--metrics-port",
            &ports[0],
            "--dashboard-port",
            &ports[1],
        ],
    );
    let acked = produce(&node, 300);
    assert_eq!(metric(metrics, "skylark_store_damaged_records"), Some(0.0));
    assert_eq!(metric(metrics, "skylark_alert_damaged_records"), Some(0.0));
    if clean_stop {
        assert!(node.terminate(), "clean stop failed");
    } else {
        node.kill9();
    }
    let victim = &acked[150];
    let victim_id = victim["msg_id"].as_str().unwrap().to_string();
    let offset = MessageId::from_hex(&victim_id).unwrap().physical_offset;
    flip_body_byte(dir.path(), offset);
    node.restart();
    let (got, said) = consume_all(&node);
    // The consumer tells its user: nothing was delivered for it.
    assert!(
        said.contains("message(s) were damaged on the broker"),
        "{said}"
    );
    let ids: HashSet<&str> = got.iter().map(|m| m["msg_id"].as_str().unwrap()).collect();
    assert_eq!(got.len(), ids.len(), "duplicates");
    assert!(
        !ids.contains(victim_id.as_str()),
        "the damaged record was served"
    );
    for (i, a) in acked.iter().enumerate() {
        let id = a["msg_id"].as_str().unwrap();
        if id != victim_id {
            assert!(ids.contains(id), "acknowledged message #{i} {id} is lost");
        }
    }
    assert_eq!(got.len(), 299);
    // Counted once, however often it was met, and raised as an alert.
    assert_eq!(metric(metrics, "skylark_store_damaged_records"), Some(1.0));
    assert_eq!(metric(metrics, "skylark_alert_damaged_records"), Some(1.0));
    let broker = node.broker();
    let mut alerts = String::new();
    assert!(
        wait_until(Duration::from_secs(30), || {
            alerts = http_get(dashboard, "/api/alerts", None).1;
            alerts.contains("damaged_records")
        }),
        "no damaged_records alert on the dashboard: {alerts}"
    );
    assert!(alerts.contains(&broker), "{alerts}");
}

#[test]
fn hardening_flipped_byte_after_kill9_every_other_message_consumed() {
    run(false);
}

#[test]
fn hardening_flipped_byte_after_clean_stop_queue_does_not_freeze() {
    run(true);
}

/// The line of `topics.log` that created the topic is corrupt after a
/// clean stop: the topic was gone after the restart (its messages with it,
/// for consumers). Now it is restored from its stored queues, every
/// message is consumed, and the log as found is kept aside.
#[test]
fn hardening_a_corrupt_topic_log_line_does_not_hide_its_topic() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Standalone::start(dir.path(), &[]);
    let acked = produce(&node, 20);
    assert!(node.terminate(), "clean stop failed");
    let log = dir.path().join("config").join("topics.log");
    let mut data = std::fs::read(&log).unwrap();
    let name = b"\"Hardening\"";
    let at = data
        .windows(name.len())
        .position(|w| w == name)
        .expect("the topic's line");
    data[at + 3] ^= 0x01; // the CRC no longer matches
    std::fs::write(&log, &data).unwrap();
    node.restart();
    let (got, said) = consume_all(&node);
    assert_eq!(got.len(), acked.len(), "{said}");
    let aside = std::fs::read_dir(dir.path().join("config"))
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().starts_with("topics.log.corrupt-")
        })
        .count();
    assert_eq!(aside, 1);
}
