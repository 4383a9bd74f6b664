//! Pull answers whose records leave the broker as slices of the mapped
//! CommitLog (`writev` behind the answer's head, no copy into the frame):
//! large answers, records of one queue interleaved with other queues' on
//! disk (many slices) and in adjacent runs (batch sends, one slice), all
//! read back byte for byte and in queue order by a real consumer.

mod common;

use std::collections::{BTreeMap, HashSet};

use common::{json_lines, Standalone};

fn ok(out: &std::process::Output) -> Vec<serde_json::Value> {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    json_lines(&out.stdout)
}

#[test]
fn large_pull_answers_arrive_whole_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start(&dir.path().join("data"), &[]);
    // 6 KiB bodies: a pull of 32 is ~200 KB, far past the size below which
    // the connection copies a tail instead of writing it as slices.
    let base: String = "0123456789abcdef".repeat(384);
    let body = |tag: &str| format!("{tag}{base}");
    // One message per send: successive messages land in different queues,
    // so one queue's records are apart on disk (one slice each).
    ok(&node.cli(&[
        "produce",
        "--topic",
        "ZeroCopy",
        "--count",
        "300",
        "--body",
        &body("single"),
        "--json",
    ]));
    // Batches: each batch goes to one queue, its records adjacent on disk
    // (one slice per run).
    ok(&node.cli(&[
        "produce",
        "--topic",
        "ZeroCopy",
        "--count",
        "160",
        "--batch",
        "16",
        "--body",
        &body("batch"),
        "--json",
    ]));
    let got = ok(&node.cli(&[
        "consume",
        "--group",
        "zc",
        "--topic",
        "ZeroCopy",
        "--count",
        "460",
        "--idle-timeout",
        "10",
        "--json",
    ]));
    assert_eq!(got.len(), 460, "every message once");
    let mut seen = HashSet::new();
    let mut per_queue: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for m in &got {
        let b = m["body"].as_str().expect("body");
        let (prefix, index) = b.rsplit_once('-').expect("an indexed body");
        assert!(
            prefix == body("single") || prefix == body("batch"),
            "body damaged in transit: {} bytes, starts {:?}",
            b.len(),
            &b[..b.len().min(40)]
        );
        assert!(
            seen.insert((
                prefix.len(),
                prefix.starts_with("single"),
                index.to_string()
            )),
            "duplicate {index}"
        );
        let q = m["queue_id"].as_u64().expect("queue_id");
        per_queue
            .entry(q)
            .or_default()
            .push(m["queue_offset"].as_u64().expect("queue_offset"));
    }
    for (q, offsets) in per_queue {
        let mut sorted = offsets.clone();
        sorted.sort_unstable();
        assert_eq!(offsets, sorted, "queue {q} out of order");
    }
}
