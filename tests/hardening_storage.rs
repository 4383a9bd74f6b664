//! End-to-end: one flipped byte in the middle of the CommitLog, after a
//! kill -9 and after a clean stop. Every other acknowledged message is
//! consumed through the real binary (push consumer); the damaged one is
//! skipped, not served, and does not freeze its queue (issue 19 items 2, 3).

mod common;

use std::collections::HashSet;
use std::path::Path;

use common::{json_lines, Standalone};
use skylark::codec::MessageId;

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

fn consume_all(node: &Standalone) -> Vec<serde_json::Value> {
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
    json_lines(&out.stdout)
}

fn run(clean_stop: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Standalone::start(dir.path(), &["--flush", "sync"]);
    let acked = produce(&node, 300);
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
    let got = consume_all(&node);
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
}

#[test]
fn hardening_flipped_byte_after_kill9_every_other_message_consumed() {
    run(false);
}

#[test]
fn hardening_flipped_byte_after_clean_stop_queue_does_not_freeze() {
    run(true);
}
