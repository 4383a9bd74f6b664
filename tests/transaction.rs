//! End-to-end tests of transactional messages: a real `skylark standalone`
//! process (small check-back intervals from a config file), in-process
//! [`TransactionProducer`]s, `skylark produce --transaction` child processes
//! for the producer-crash case, and `skylark consume` as the consumer.
//!
//! Every test asserts what consumers of the real topic see: a committed
//! message exactly once, a rolled-back or discarded one never.

mod common;

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{bin, json_lines, KillOnDrop, Standalone};
use skylark::client::{ClientConfig, MessageData, TransactionProducer, TransactionState};

/// Starts standalone whose broker checks undecided halves after
/// `timeout_ms`, then every `interval_ms`, at most `max` times.
fn start(dir: &Path, timeout_ms: u64, interval_ms: u64, max: u32) -> Standalone {
    let conf = dir.join("broker.toml");
    std::fs::write(
        &conf,
        format!(
            "transaction_timeout_ms = {timeout_ms}\n\
             transaction_check_interval_ms = {interval_ms}\n\
             transaction_check_max = {max}\n"
        ),
    )
    .unwrap();
    let data = dir.join("data");
    Standalone::start(&data, &["-c", conf.to_str().unwrap()])
}

static GROUPS: AtomicU64 = AtomicU64::new(0);

/// Bodies of every message of `topic`, read from the start by a fresh
/// consumer group (runs off the actix thread).
async fn consume(namesrv: String, topic: &str) -> Vec<String> {
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        let group = format!(
            "tx-check-{}-{}",
            std::process::id(),
            GROUPS.fetch_add(1, Ordering::Relaxed)
        );
        let out = Command::new(bin())
            .args(["--log-level", "warn", "consume", "--namesrv", &namesrv])
            .args(["--group", &group, "--topic", &topic])
            .args(["--from", "first", "--idle-timeout", "1", "--json"])
            .stdin(Stdio::null())
            .output()
            .expect("run skylark consume");
        assert!(
            out.status.success(),
            "consume failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        json_lines(&out.stdout)
            .iter()
            .map(|v| v["body"].as_str().unwrap_or_default().to_string())
            .collect()
    })
    .await
    .unwrap()
}

/// How many times `body` occurs in `seen`.
fn count(seen: &[String], body: &str) -> usize {
    seen.iter().filter(|b| *b == body).count()
}

/// Polls `consume` until `done(bodies)` or the deadline; returns the last bodies.
async fn consume_until(
    namesrv: &str,
    topic: &str,
    timeout: Duration,
    done: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let seen = consume(namesrv.to_string(), topic).await;
        if done(&seen) || Instant::now() >= deadline {
            return seen;
        }
    }
}

/// Waits (without blocking the actix thread) until `f` or the deadline.
async fn wait_for(timeout: Duration, f: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !f() {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// Check-backs received, per message body.
type Checks = Rc<RefCell<HashMap<String, u32>>>;

/// A producer of `group` whose check listener answers `answer(body)` and
/// counts the checks per body.
fn producer(
    s: &Standalone,
    group: &str,
    answer: impl Fn(&str) -> TransactionState + 'static,
) -> (TransactionProducer, Checks) {
    let checks: Checks = Rc::default();
    let c = checks.clone();
    let p = TransactionProducer::start_with(
        ClientConfig::new(s.namesrv()),
        group,
        Duration::from_millis(200),
        move |m| {
            let body = m.body_str().unwrap_or_default().to_string();
            *c.borrow_mut().entry(body.clone()).or_default() += 1;
            answer(&body)
        },
    )
    .unwrap();
    (p, checks)
}

fn checks_of(checks: &Checks, body: &str) -> u32 {
    checks.borrow().get(body).copied().unwrap_or(0)
}

#[test]
fn transaction_commit_and_rollback_deliver_once_or_never() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), 60_000, 60_000, 15);
    let ns = s.namesrv();
    actix::System::new().block_on(async move {
        let (p, _) = producer(&s, "pg-basic", |_| TransactionState::Unknown);
        let c = p
            .send_in_transaction("TxBasic", MessageData::new("committed"), |_| {
                TransactionState::Commit
            })
            .await
            .unwrap();
        assert_eq!(c.end_error, None);
        let r = p
            .send_in_transaction("TxBasic", MessageData::new("rolled-back"), |_| {
                TransactionState::Rollback
            })
            .await
            .unwrap();
        assert_eq!(r.end_error, None);
        // Second outcomes are ignored: no double commit, no late commit.
        p.end_transaction(&c.send_result, &c.transaction_id, TransactionState::Commit)
            .await
            .unwrap();
        p.end_transaction(&r.send_result, &r.transaction_id, TransactionState::Commit)
            .await
            .unwrap();
        let seen = consume_until(&ns, "TxBasic", Duration::from_secs(10), |b| {
            count(b, "committed") > 0
        })
        .await;
        assert_eq!(count(&seen, "committed"), 1, "{seen:?}");
        assert_eq!(count(&seen, "rolled-back"), 0, "{seen:?}");
        assert_eq!(seen.len(), 1, "{seen:?}");
        drop(s);
    });
}

#[test]
fn transaction_check_back_resolves_to_commit_and_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), 300, 300, 15);
    let ns = s.namesrv();
    actix::System::new().block_on(async move {
        let (p, checks) = producer(&s, "pg-check", |body| match body {
            "check-commit" => TransactionState::Commit,
            _ => TransactionState::Rollback,
        });
        for body in ["check-commit", "check-rollback"] {
            let r = p
                .send_in_transaction("TxCheck", MessageData::new(body), |_| {
                    TransactionState::Unknown
                })
                .await
                .unwrap();
            assert_eq!(r.local_state, TransactionState::Unknown);
        }
        assert!(
            wait_for(Duration::from_secs(20), || checks_of(
                &checks,
                "check-commit"
            ) > 0
                && checks_of(&checks, "check-rollback") > 0)
            .await,
            "no check-back arrived: {:?}",
            checks.borrow()
        );
        let seen = consume_until(&ns, "TxCheck", Duration::from_secs(10), |b| {
            count(b, "check-commit") > 0
        })
        .await;
        assert_eq!(count(&seen, "check-commit"), 1, "{seen:?}");
        // Both are decided: no further check-backs come (an undecided half
        // would be asked again every 300 ms).
        let before = checks.borrow().clone();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(*checks.borrow(), before);
        let seen = consume(ns.clone(), "TxCheck").await;
        assert_eq!(seen, vec!["check-commit".to_string()]);
        drop(s);
    });
}

#[test]
fn transaction_discarded_after_max_checks_even_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = start(dir.path(), 300, 300, 3);
    let ns = s.namesrv();
    actix::System::new().block_on(async move {
        let (p, checks) = producer(&s, "pg-discard", |_| TransactionState::Unknown);
        let r = p
            .send_in_transaction("TxDiscard", MessageData::new("never"), |_| {
                TransactionState::Unknown
            })
            .await
            .unwrap();
        assert!(
            wait_for(Duration::from_secs(20), || checks_of(&checks, "never") >= 3).await,
            "checks: {:?}",
            checks.borrow()
        );
        // Asked exactly `max` times, then discarded: no 4th check.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(checks_of(&checks, "never"), 3);
        // A late commit is ignored.
        p.end_transaction(&r.send_result, &r.transaction_id, TransactionState::Commit)
            .await
            .unwrap();
        assert!(consume(ns.clone(), "TxDiscard").await.is_empty());
        // The discard is on disk: after kill -9 and restart it is not checked again.
        s.restart();
        let (p2, checks2) = producer(&s, "pg-discard", |_| TransactionState::Commit);
        // A control half sent now is checked after the timeout: once it has
        // been, the restarted broker's check scan has run past the discarded
        // one, which must not have been asked about again.
        p2.send_in_transaction("TxDiscard", MessageData::new("control"), |_| {
            TransactionState::Unknown
        })
        .await
        .unwrap();
        assert!(
            wait_for(Duration::from_secs(20), || checks_of(&checks2, "control")
                >= 1)
            .await,
            "the control half was never checked"
        );
        assert_eq!(checks_of(&checks2, "never"), 0);
        let seen = consume_until(&ns, "TxDiscard", Duration::from_secs(20), |b| {
            count(b, "control") > 0
        })
        .await;
        assert_eq!(count(&seen, "never"), 0, "{seen:?}");
        drop(s);
    });
}

#[test]
fn transaction_broker_kill9_between_half_and_commit() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = start(dir.path(), 1_000, 300, 15);
    let ns = s.namesrv();
    actix::System::new().block_on(async move {
        let (p, checks) = producer(&s, "pg-crash", |_| TransactionState::Commit);
        // Both halves are stored, neither is decided when the broker dies.
        let retried = p
            .send_in_transaction("TxCrash", MessageData::new("retried"), |_| {
                TransactionState::Unknown
            })
            .await
            .unwrap();
        p.send_in_transaction("TxCrash", MessageData::new("checked"), |_| {
            TransactionState::Unknown
        })
        .await
        .unwrap();
        s.restart();
        // The producer retries its commit (twice) until the broker is back.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let res = p
                .end_transaction(
                    &retried.send_result,
                    &retried.transaction_id,
                    TransactionState::Commit,
                )
                .await;
            if res.is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "commit never accepted: {res:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        p.end_transaction(
            &retried.send_result,
            &retried.transaction_id,
            TransactionState::Commit,
        )
        .await
        .unwrap();
        // The other one is resolved by a check-back after the restart.
        let seen = consume_until(&ns, "TxCrash", Duration::from_secs(20), |b| {
            count(b, "checked") > 0 && count(b, "retried") > 0
        })
        .await;
        assert_eq!(count(&seen, "retried"), 1, "{seen:?}");
        assert_eq!(count(&seen, "checked"), 1, "{seen:?}");
        assert!(checks_of(&checks, "checked") >= 1);
        // One outcome survives another crash: nothing is committed twice.
        // Without the progress file the state comes from the op log alone.
        s.kill9();
        let progress = s.data_dir.join("config").join("transaction.json");
        assert!(progress.exists(), "check progress was never persisted");
        std::fs::remove_file(&progress).unwrap();
        s.restart();
        // A control half, checked after the timeout: by the time it is
        // delivered the rebuilt state has been scanned for check-backs, so a
        // wrongly re-committed half would be there too.
        let (p3, _) = producer(&s, "pg-crash", |_| TransactionState::Commit);
        p3.send_in_transaction("TxCrash", MessageData::new("control"), |_| {
            TransactionState::Unknown
        })
        .await
        .unwrap();
        let seen = consume_until(&ns, "TxCrash", Duration::from_secs(20), |b| {
            count(b, "control") > 0
        })
        .await;
        assert_eq!(count(&seen, "retried"), 1, "{seen:?}");
        assert_eq!(count(&seen, "checked"), 1, "{seen:?}");
        assert_eq!(seen.len(), 3, "{seen:?}");
        drop(s);
    });
}

/// A `skylark produce --transaction unknown` process that stays alive
/// (answering check-backs with unknown); returns it once its half is sent.
fn undecided_producer_process(s: &Standalone, group: &str, body: &str) -> KillOnDrop {
    let mut child = Command::new(bin())
        .args(["--log-level", "warn", "produce", "--namesrv", &s.namesrv()])
        .args([
            "--topic",
            "TxProducerCrash",
            "--group",
            group,
            "--body",
            body,
        ])
        .args(["--transaction", "unknown", "--check-answer", "unknown"])
        .args(["--linger-secs", "120", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn skylark produce");
    let stdout = child.stdout.take().unwrap();
    let child = KillOnDrop(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
    assert_eq!(v["local_state"], "Unknown", "{line}");
    child
}

#[test]
fn transaction_producer_kill9_before_deciding_new_producer_answers() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), 500, 300, 15);
    let ns = s.namesrv();
    let mut a = undecided_producer_process(&s, "pg-gone", "orphan-commit");
    let mut b = undecided_producer_process(&s, "pg-gone", "orphan-rollback");
    // kill -9 both producers before they decide.
    let _ = a.0.kill();
    let _ = a.0.wait();
    let _ = b.0.kill();
    let _ = b.0.wait();
    actix::System::new().block_on(async move {
        let (_p, checks) = producer(&s, "pg-gone", |body| match body {
            "orphan-commit" => TransactionState::Commit,
            _ => TransactionState::Rollback,
        });
        assert!(
            wait_for(Duration::from_secs(20), || checks_of(
                &checks,
                "orphan-commit"
            ) > 0
                && checks_of(&checks, "orphan-rollback") > 0)
            .await,
            "the new producer was never asked: {:?}",
            checks.borrow()
        );
        let seen = consume_until(&ns, "TxProducerCrash", Duration::from_secs(10), |b| {
            count(b, "orphan-commit") > 0
        })
        .await;
        assert_eq!(count(&seen, "orphan-commit"), 1, "{seen:?}");
        let before = checks.borrow().clone();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(
            *checks.borrow(),
            before,
            "decided halves were checked again"
        );
        let seen = consume(ns.clone(), "TxProducerCrash").await;
        assert_eq!(seen, vec!["orphan-commit".to_string()]);
        drop(s);
    });
}
