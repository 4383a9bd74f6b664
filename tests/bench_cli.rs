//! `skylark bench` with `--rate`: open-loop runs report the rate asked for,
//! the rate reached and the client's CPU time, and fail when the rate is
//! not reached. Real `skylark standalone` on pool ports, temporary data
//! directory. No timing assertions beyond "reached / not reached".

mod common;

use common::{json_lines, Standalone};

/// Runs a bench and returns (exit success, its JSON report, stderr).
fn bench(node: &Standalone, args: &[&str]) -> (bool, serde_json::Value, String) {
    let out = node.cli(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = json_lines(&out.stdout)
        .pop()
        .unwrap_or_else(|| panic!("{args:?}: no JSON report; stderr: {stderr}"));
    (out.status.success(), report, stderr)
}

fn f64_field(r: &serde_json::Value, k: &str) -> f64 {
    r[k].as_f64()
        .unwrap_or_else(|| panic!("missing number {k} in {r}"))
}

#[test]
fn e2e_at_a_reachable_rate_passes_and_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start(dir.path(), &[]);
    // 3000 messages at 500 msgs/s: a 6 s schedule, far below what even a
    // loaded test machine sustains; the run misses 95% only if the last
    // message takes over 300 ms.
    let (ok, r, stderr) = bench(
        &node,
        &[
            "bench", "e2e", "--topic", "Rate", "--count", "3000", "--rate", "500", "--json",
        ],
    );
    assert!(ok, "{r}\n{stderr}");
    assert_eq!(r["target_rate"], 500, "{r}");
    let achieved = f64_field(&r, "achieved_rate");
    assert!(achieved >= 475.0, "{r}");
    // Open-loop: nothing is sent before it is due, so it cannot run ahead.
    assert!(achieved <= 501.0, "{r}");
    let cpu = f64_field(&r, "client_cpu_secs");
    assert!(cpu > 0.0 && cpu < 60.0, "{r}");
    assert_eq!(r["errors"], 0, "{r}");
    for k in [
        "msgs_per_sec",
        "mb_per_sec",
        "p50_us",
        "p99_us",
        "p999_us",
        "max_us",
        "inflight_window",
        "window_full_waits",
        "send_lag_p99_us",
        "send_lag_max_us",
    ] {
        assert!(r.get(k).is_some(), "missing {k} in {r}");
    }
    assert!(r["p50_us"].as_u64().unwrap() <= r["p99_us"].as_u64().unwrap());

    // produce with a rate reports the same fields.
    let (ok, r, stderr) = bench(
        &node,
        &[
            "bench", "produce", "--topic", "Rate", "--count", "2000", "--rate", "500", "--batch",
            "4", "--json",
        ],
    );
    assert!(ok, "{r}\n{stderr}");
    assert_eq!(r["target_rate"], 500, "{r}");
    assert!(f64_field(&r, "achieved_rate") >= 475.0, "{r}");
    assert!(f64_field(&r, "client_cpu_secs") > 0.0, "{r}");
}

#[test]
fn e2e_at_an_absurd_rate_fails_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start(dir.path(), &[]);
    // 10 M msgs/s: the 3000-message schedule is all due within 0.3 ms,
    // which no broker round trip can match.
    let (ok, r, stderr) = bench(
        &node,
        &[
            "bench", "e2e", "--topic", "Absurd", "--count", "3000", "--rate", "10000000", "--json",
        ],
    );
    assert!(!ok, "must exit non-zero: {r}\n{stderr}");
    assert_eq!(r["target_rate"], 10_000_000, "{r}");
    assert!(f64_field(&r, "achieved_rate") < 9_500_000.0, "{r}");
    assert!(f64_field(&r, "client_cpu_secs") > 0.0, "{r}");
    assert!(
        stderr.contains("target rate not reached"),
        "stderr must say why: {stderr}"
    );
}

#[test]
fn runs_without_a_rate_carry_cpu_but_no_rate_fields() {
    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start(dir.path(), &[]);
    let (ok, r, stderr) = bench(
        &node,
        &[
            "bench", "produce", "--topic", "Free", "--count", "500", "--json",
        ],
    );
    assert!(ok, "{r}\n{stderr}");
    assert!(f64_field(&r, "client_cpu_secs") > 0.0, "{r}");
    assert!(r.get("target_rate").is_none(), "{r}");
    assert!(r.get("achieved_rate").is_none(), "{r}");
    // consume does not pace: --rate is ignored, and said so.
    let (ok, r, stderr) = bench(
        &node,
        &[
            "bench", "consume", "--topic", "Free", "--count", "500", "--rate", "100", "--json",
        ],
    );
    assert!(ok, "{r}\n{stderr}");
    assert!(f64_field(&r, "client_cpu_secs") > 0.0, "{r}");
    assert!(r.get("target_rate").is_none(), "{r}");
    assert!(stderr.contains("--rate is ignored"), "{stderr}");
    assert!(!stderr.contains("fewer than --count"), "{stderr}");
    // More asked than the backlog holds: said, and the figures are for what
    // was there.
    let (ok, r, stderr) = bench(
        &node,
        &[
            "bench", "consume", "--topic", "Free", "--count", "100000", "--json",
        ],
    );
    assert!(ok, "{r}\n{stderr}");
    assert!(
        stderr.contains("message(s), fewer than --count 100000"),
        "{stderr}"
    );
}
