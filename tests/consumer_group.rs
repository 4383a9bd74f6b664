//! Consumer groups end to end, with real processes: clustering members
//! split a topic's queues, broadcast members each get everything, a killed
//! member's queues move to the survivor, a reset by timestamp re-delivers
//! exactly the later messages, and the group admin commands.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{bin, json_lines, wait_until, KillOnDrop, Standalone};

/// (queue id, queue offset): a message's identity within one broker.
type Key = (u64, u64);

/// A `skylark consume --json` process writing to a file.
struct Member {
    child: KillOnDrop,
    out: PathBuf,
}

impl Member {
    fn start(node: &Standalone, dir: &Path, name: &str, args: &[&str]) -> Member {
        Member::start_with_stderr(node, dir, name, args, Stdio::inherit())
    }

    fn start_with_stderr(
        node: &Standalone,
        dir: &Path,
        name: &str,
        args: &[&str],
        stderr: Stdio,
    ) -> Member {
        let out = dir.join(format!("{name}.jsonl"));
        let child = Command::new(bin())
            .args(["--log-level", "warn", "consume", "--json"])
            .args(args)
            .env("SKYLARK_NAMESRV", node.namesrv())
            .stdin(Stdio::null())
            .stdout(File::create(&out).unwrap())
            .stderr(stderr)
            .spawn()
            .unwrap();
        Member {
            child: KillOnDrop(child),
            out,
        }
    }

    /// Every complete JSON line written so far.
    fn messages(&self) -> Vec<serde_json::Value> {
        let data = std::fs::read(&self.out).unwrap_or_default();
        let end = data.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        json_lines(&data[..end])
    }

    fn keys(&self) -> Vec<Key> {
        self.messages().iter().map(key).collect()
    }

    fn wait_exit(&mut self, timeout: Duration) -> bool {
        let c = &mut self.child.0;
        wait_until(timeout, || matches!(c.try_wait(), Ok(Some(_))))
    }
}

fn key(m: &serde_json::Value) -> Key {
    (
        m["queue_id"].as_u64().unwrap(),
        m["queue_offset"].as_u64().unwrap(),
    )
}

fn ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn create_topic(node: &Standalone, topic: &str, queues: &str) {
    ok(&node.cli(&[
        "admin", "topic", "create", "--name", topic, "--queues", queues,
    ]));
    assert!(wait_until(Duration::from_secs(10), || {
        node.cli(&["admin", "topic", "route", "--name", topic])
            .status
            .success()
    }));
}

/// Produces `count` messages and returns their keys.
fn produce(node: &Standalone, topic: &str, count: u32) -> Vec<Key> {
    let out = node.cli(&[
        "produce",
        "--topic",
        topic,
        "--count",
        &count.to_string(),
        "--body",
        "m",
        "--json",
    ]);
    ok(&out);
    json_lines(&out.stdout)
        .iter()
        .map(|r| {
            (
                r["queue_id"].as_u64().unwrap(),
                r["queue_offset"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// The group's live members per `admin group progress --json`.
fn members(node: &Standalone, group: &str) -> usize {
    let out = node.cli(&["admin", "--json", "group", "progress", "--group", group]);
    if !out.status.success() {
        return 0;
    }
    json_lines(&out.stdout)
        .first()
        .and_then(|v| v["members"].as_array().map(|a| a.len()))
        .unwrap_or(0)
}

#[test]
fn clustering_members_split_and_broadcast_members_each_get_all() {
    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start(&dir.path().join("data"), &[]);
    create_topic(&node, "Split", "8");

    let args = [
        "--group",
        "split",
        "--topic",
        "Split",
        "--from",
        "first",
        "--idle-timeout",
        "30",
        "--rebalance-interval-ms",
        "2000",
    ];
    let a = Member::start(&node, dir.path(), "a", &args);
    let b = Member::start(&node, dir.path(), "b", &args);
    assert!(
        wait_until(Duration::from_secs(10), || members(&node, "split") == 2),
        "both consumers should join the group"
    );
    let sent: BTreeSet<Key> = produce(&node, "Split", 2000).into_iter().collect();
    assert_eq!(sent.len(), 2000);
    assert!(wait_until(Duration::from_secs(30), || {
        let got: BTreeSet<Key> = a.keys().into_iter().chain(b.keys()).collect();
        got == sent
    }));
    let (ka, kb) = (a.keys(), b.keys());
    assert!(!ka.is_empty() && !kb.is_empty(), "both members consume");
    // Duplicates only around a rebalance: the members' split settles within
    // milliseconds of the second joining, before (or just as) the messages
    // arrive, so at most the first pulls of a queue can be read twice.
    let dups = ka.len() + kb.len() - 2000;
    assert!(dups <= 8 * 32, "{dups} duplicates");
    // Done with them (the idle timeout is long so that a slow start under
    // load cannot end them before the messages arrive).
    drop((a, b));

    // Broadcasting: each member reads all 2000, with its own local offsets.
    let bc = |name: &str| {
        let file = dir.path().join(format!("{name}.offsets.json"));
        Member::start(
            &node,
            dir.path(),
            name,
            &[
                "--group",
                "bc",
                "--topic",
                "Split",
                "--broadcast",
                "--from",
                "first",
                "--idle-timeout",
                "3",
                "--offset-file",
                file.to_str().unwrap(),
            ],
        )
    };
    let mut x = bc("x");
    let mut y = bc("y");
    assert!(x.wait_exit(Duration::from_secs(40)) && y.wait_exit(Duration::from_secs(40)));
    for m in [&x, &y] {
        let got: BTreeSet<Key> = m.keys().into_iter().collect();
        assert_eq!(got, sent);
        assert_eq!(m.keys().len(), 2000);
    }
    // The local offsets were kept: a second run of x finds nothing new.
    let mut x2 = bc("x");
    assert!(x2.wait_exit(Duration::from_secs(20)));
    assert_eq!(x2.keys().len(), 0);
    assert!(dir.path().join("x.offsets.json").exists());
}

#[test]
fn a_killed_members_queues_move_to_the_survivor() {
    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start(&dir.path().join("data"), &[]);
    create_topic(&node, "Handover", "8");
    let args = [
        "--group",
        "ho",
        "--topic",
        "Handover",
        "--from",
        "first",
        "--idle-timeout",
        "30",
        "--rebalance-interval-ms",
        "3000",
    ];
    let mut a = Member::start(&node, dir.path(), "a", &args);
    let b = Member::start(&node, dir.path(), "b", &args);
    assert!(wait_until(Duration::from_secs(10), || members(&node, "ho") == 2));
    let first: BTreeSet<Key> = produce(&node, "Handover", 1000).into_iter().collect();
    assert!(wait_until(Duration::from_secs(30), || {
        let got: BTreeSet<Key> = a.keys().into_iter().chain(b.keys()).collect();
        got == first
    }));
    let a_queues: BTreeSet<u64> = a.keys().iter().map(|k| k.0).collect();
    assert!(!a_queues.is_empty());

    // kill -9: no clean leave; the broker notices the closed connection and
    // tells b, which takes a's queues at once.
    let _ = a.child.0.kill();
    let _ = a.child.0.wait();
    let killed = std::time::Instant::now();
    assert!(wait_until(Duration::from_secs(10), || members(&node, "ho") == 1));
    let second: BTreeSet<Key> = produce(&node, "Handover", 1000).into_iter().collect();
    let all: BTreeSet<Key> = first.union(&second).cloned().collect();
    assert!(
        wait_until(Duration::from_secs(20), || {
            let got: BTreeSet<Key> = a.keys().into_iter().chain(b.keys()).collect();
            got == all
        }),
        "nothing lost after the handover"
    );
    // b now reads a's former queues, within one rebalance period (3 s) plus
    // the broker's scan and the produce run.
    let b_queues: BTreeSet<u64> = b
        .keys()
        .iter()
        .filter(|k| second.contains(k))
        .map(|k| k.0)
        .collect();
    assert!(a_queues.is_subset(&b_queues), "{a_queues:?} {b_queues:?}");
    assert!(killed.elapsed() < Duration::from_secs(25));
}

#[test]
fn reset_by_timestamp_redelivers_exactly_the_later_messages_and_admin_commands() {
    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start(&dir.path().join("data"), &[]);
    create_topic(&node, "Back", "4");
    produce(&node, "Back", 100);
    produce(&node, "Back", 100);

    // A live member reads all 200 ...
    let c = Member::start(
        &node,
        dir.path(),
        "c",
        &[
            "--group",
            "back",
            "--topic",
            "Back",
            "--from",
            "first",
            "--idle-timeout",
            "6",
        ],
    );
    assert!(wait_until(Duration::from_secs(20), || c.keys().len() == 200));
    let all = c.messages();
    let mut stamps: Vec<i64> = all
        .iter()
        .map(|m| m["store_timestamp"].as_i64().unwrap())
        .collect();
    stamps.sort();
    // A time in the middle of the stored range.
    let t = stamps[stamps.len() / 2];
    let expected: BTreeSet<Key> = all
        .iter()
        .filter(|m| m["store_timestamp"].as_i64().unwrap() >= t)
        .map(key)
        .collect();
    assert!(!expected.is_empty() && expected.len() < 200);

    // ... then the group is reset to t while the member runs: it is told,
    // and re-delivers exactly the messages stored at or after t.
    let out = node.cli(&[
        "admin",
        "--json",
        "offset",
        "reset",
        "--group",
        "back",
        "--topic",
        "Back",
        "--timestamp",
        &t.to_string(),
    ]);
    ok(&out);
    assert!(
        wait_until(Duration::from_secs(20), || c.keys().len()
            >= 200 + expected.len()),
        "the live member re-reads after the reset"
    );
    let again: Vec<Key> = c.keys()[200..].to_vec();
    assert_eq!(again.iter().cloned().collect::<BTreeSet<Key>>(), expected);
    assert_eq!(again.len(), expected.len());

    // Progress: every queue consumed, no lag; the member is listed.
    let mut c = c;
    assert!(wait_until(Duration::from_secs(20), || {
        let out = node.cli(&["admin", "--json", "group", "progress", "--group", "back"]);
        let v = json_lines(&out.stdout);
        v.first().is_some_and(|v| {
            v["total_lag"] == 0 && v["queues"].as_array().is_some_and(|q| q.len() == 4)
        })
    }));
    let out = node.cli(&["admin", "--json", "group", "progress", "--group", "back"]);
    let v = &json_lines(&out.stdout)[0];
    let per_queue: BTreeMap<u64, u64> = v["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| {
            assert!(q["last_consumed_ms"].as_i64().is_some());
            (
                q["queue_id"].as_u64().unwrap(),
                q["consumer_offset"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(per_queue.values().sum::<u64>(), 200);
    assert!(c.wait_exit(Duration::from_secs(20)));

    // A reset of a stopped group applies on the next run.
    ok(&node.cli(&[
        "admin",
        "offset",
        "reset",
        "--group",
        "back",
        "--topic",
        "Back",
        "--timestamp",
        &t.to_string(),
    ]));
    let out = node.cli(&[
        "consume",
        "--group",
        "back",
        "--topic",
        "Back",
        "--idle-timeout",
        "3",
        "--json",
    ]);
    ok(&out);
    let got: Vec<Key> = json_lines(&out.stdout).iter().map(key).collect();
    assert_eq!(got.iter().cloned().collect::<BTreeSet<Key>>(), expected);
    assert_eq!(got.len(), expected.len());

    // consume --from MILLIS for a new group starts at the same place.
    let out = node.cli(&[
        "consume",
        "--group",
        "fresh",
        "--topic",
        "Back",
        "--from",
        &t.to_string(),
        "--idle-timeout",
        "3",
        "--json",
    ]);
    ok(&out);
    let got: BTreeSet<Key> = json_lines(&out.stdout).iter().map(key).collect();
    assert_eq!(got, expected);

    // group list / delete.
    let out = node.cli(&["admin", "--json", "group", "list"]);
    ok(&out);
    let groups = json_lines(&out.stdout)[0]["groups"].clone();
    assert!(groups.as_array().unwrap().contains(&"back".into()));
    ok(&node.cli(&["admin", "group", "delete", "--group", "back"]));
    let out = node.cli(&["admin", "group", "progress", "--group", "back"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
    let out = node.cli(&["admin", "--json", "group", "list"]);
    let groups = json_lines(&out.stdout)[0]["groups"].clone();
    assert!(!groups.as_array().unwrap().contains(&"back".into()));
}

/// Orderly push consumers (in this test's actix System) against a real
/// server: two members lock disjoint queues, and every order key's messages
/// arrive in the order they were sent although each member runs 4 workers.
#[test]
fn orderly_members_lock_disjoint_queues_and_keep_per_key_order() {
    use skylark::client::{
        ClientConfig, ConsumeFrom, ConsumeResult, MessageData, Producer, PushConsumer,
        PushConsumerOptions, ReceivedMessage,
    };
    use std::sync::{Arc, Mutex};

    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start(&dir.path().join("data"), &[]);
    create_topic(&node, "Ordered", "8");
    let namesrv = node.namesrv();
    actix::System::new().block_on(async move {
        // (member, key, step) in arrival order.
        let seen: Arc<Mutex<Vec<(usize, String, usize)>>> = Arc::default();
        let mut members = Vec::new();
        for i in 0..2 {
            let mut cfg = ClientConfig::new(&namesrv);
            cfg.client_id = format!("orderly-{i}");
            let s = seen.clone();
            let opts = PushConsumerOptions {
                orderly: true,
                consume_from: ConsumeFrom::First,
                consume_threads: 4,
                rebalance_interval: Duration::from_secs(2),
                ..PushConsumerOptions::default()
            };
            let c = PushConsumer::builder(cfg, "orderly")
                .subscribe("Ordered", "*")
                .options(opts)
                .start(move |msgs: &[ReceivedMessage]| {
                    for m in msgs {
                        let body = m.body_str().unwrap_or_default().to_string();
                        let (key, step) = body.split_once(' ').unwrap();
                        // Slow enough that workers would overtake each other.
                        std::thread::sleep(Duration::from_millis(1));
                        s.lock()
                            .unwrap()
                            .push((i, key.to_string(), step.parse().unwrap()));
                    }
                    ConsumeResult::Success
                })
                .unwrap();
            members.push(c);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let (a, b) = (members[0].assigned(), members[1].assigned());
            let split = !a.is_empty() && !b.is_empty() && a.len() + b.len() == 8;
            if split || std::time::Instant::now() > deadline {
                assert!(split, "the members should split the 8 queues");
                assert!(a.iter().all(|q| !b.contains(q)));
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let producer = Producer::start(ClientConfig::new(&namesrv), "orderly-producer").unwrap();
        const KEYS: usize = 16;
        const STEPS: usize = 20;
        for step in 0..STEPS {
            for k in 0..KEYS {
                let key = format!("k{k}");
                producer
                    .send_ordered("Ordered", MessageData::new(format!("{key} {step}")), &key)
                    .await
                    .unwrap();
            }
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while seen.lock().unwrap().len() < KEYS * STEPS && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for m in members {
            m.shutdown().await;
        }
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), KEYS * STEPS);
        let mut per_key: BTreeMap<String, (BTreeSet<usize>, Vec<usize>)> = BTreeMap::new();
        for (member, key, step) in seen {
            let e = per_key.entry(key).or_default();
            e.0.insert(member);
            e.1.push(step);
        }
        let mut used = BTreeSet::new();
        for (key, (by, steps)) in per_key {
            assert_eq!(steps, (0..STEPS).collect::<Vec<_>>(), "{key}");
            assert_eq!(by.len(), 1, "{key} consumed by one member");
            used.extend(by);
        }
        assert_eq!(used.len(), 2, "both members consumed");
    });
}

/// A message the listener fails, once past `max_reconsume_times`, is sent
/// back to the broker, which stores it in `%DLQ%<group>` (created on first
/// use), an ordinary topic that keeps the original topic and id.
///
/// With `max_reconsume_times = 0` the first failure is final, so this does
/// not depend on delayed delivery; the full path (16 retries through
/// `%RETRY%<group>` on the delay levels) needs the Scheduler.
#[test]
fn a_failed_message_past_the_maximum_lands_in_the_dead_letter_topic() {
    use skylark::client::{
        ClientConfig, ConsumeFrom, ConsumeResult, MessageData, Producer, PullConsumer,
        PushConsumer, PushConsumerOptions, ReceivedMessage,
    };
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start(&dir.path().join("data"), &[]);
    create_topic(&node, "Fails", "2");
    let namesrv = node.namesrv();
    actix::System::new().block_on(async move {
        let producer = Producer::start(ClientConfig::new(&namesrv), "p").unwrap();
        let sent = producer
            .send("Fails", MessageData::new("poison"))
            .await
            .unwrap();
        producer
            .send("Fails", MessageData::new("fine"))
            .await
            .unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let ok = Arc::new(AtomicUsize::new(0));
        let (c2, o2) = (calls.clone(), ok.clone());
        let opts = PushConsumerOptions {
            consume_from: ConsumeFrom::First,
            max_reconsume_times: 0,
            commit_interval: Duration::from_millis(200),
            ..PushConsumerOptions::default()
        };
        let consumer = PushConsumer::builder(ClientConfig::new(&namesrv), "dlqg")
            .subscribe("Fails", "*")
            .options(opts)
            .start(move |msgs: &[ReceivedMessage]| {
                if msgs.iter().any(|m| m.body_str() == Some("poison")) {
                    c2.fetch_add(1, Ordering::SeqCst);
                    ConsumeResult::Retry
                } else {
                    o2.fetch_add(1, Ordering::SeqCst);
                    ConsumeResult::Success
                }
            })
            .unwrap();
        // The dead-letter topic appears with the poison message in it.
        let reader = PullConsumer::start(ClientConfig::new(&namesrv), "dlq-reader").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let dead = loop {
            assert!(std::time::Instant::now() < deadline, "no DLQ message");
            if let Ok(qs) = reader.queues("%DLQ%dlqg").await {
                let r = reader
                    .pull(&qs[0], 0, 32, None, Duration::ZERO)
                    .await
                    .unwrap();
                if let Some(m) = r.messages.into_iter().next() {
                    break m;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(dead.body_str(), Some("poison"));
        assert_eq!(dead.property("RETRY_TOPIC"), Some("Fails"));
        assert_eq!(
            dead.property("ORIGIN_MESSAGE_ID"),
            Some(sent.msg_id.as_str())
        );
        assert_eq!(dead.reconsume_times, 1);
        assert_eq!(calls.load(Ordering::SeqCst), 1, "the failure was final");
        assert_eq!(ok.load(Ordering::SeqCst), 1);
        // Sent back means done: the group's offsets move past it.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let mut committed = 0;
            for q in reader.queues("Fails").await.unwrap() {
                let c = PullConsumer::start(ClientConfig::new(&namesrv), "dlqg").unwrap();
                committed += c.query_offset(&q).await.unwrap().unwrap_or(0);
            }
            if committed == 2 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "offsets not committed"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        consumer.shutdown().await;
    });
}

/// Flow control and suspend: while the listener is stuck, a queue's cache
/// stops growing near `cache_max_messages`; a batch answered `Suspend` comes
/// back later without counting as a failure.
#[test]
fn flow_control_caps_the_cache_and_suspend_redelivers_without_a_failure() {
    use skylark::client::{
        ClientConfig, ConsumeFrom, ConsumeResult, PushConsumer, PushConsumerOptions,
        ReceivedMessage,
    };
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start(&dir.path().join("data"), &[]);
    create_topic(&node, "Flow", "1");
    produce(&node, "Flow", 600);
    let namesrv = node.namesrv();
    actix::System::new().block_on(async move {
        let release = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        // The reconsume count of every delivery of offset 0.
        let first: Arc<Mutex<Vec<u32>>> = Arc::default();
        let (r2, d2, f2) = (release.clone(), done.clone(), first.clone());
        let opts = PushConsumerOptions {
            consume_from: ConsumeFrom::First,
            consume_threads: 1,
            cache_max_messages: 100,
            pull_batch_size: 32,
            ..PushConsumerOptions::default()
        };
        let consumer = PushConsumer::builder(ClientConfig::new(&namesrv), "flow")
            .subscribe("Flow", "*")
            .options(opts)
            .start(move |msgs: &[ReceivedMessage]| {
                let m = &msgs[0];
                if m.queue_offset == 0 {
                    let mut f = f2.lock().unwrap();
                    f.push(m.reconsume_times);
                    if f.len() == 1 {
                        return ConsumeResult::Suspend(Duration::from_millis(300));
                    }
                }
                while !r2.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                d2.fetch_add(1, Ordering::SeqCst);
                ConsumeResult::Success
            })
            .unwrap();
        let cached = |c: &PushConsumer| c.cached().iter().map(|(_, n, _)| *n).sum::<usize>();
        // The cache fills past the limit by at most one pull, then stops.
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while cached(&consumer) <= 100 {
            assert!(std::time::Instant::now() < deadline, "cache never filled");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for _ in 0..50 {
            let n = cached(&consumer);
            assert!(n <= 100 + 32, "cache grew to {n}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        release.store(true, Ordering::SeqCst);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while done.load(Ordering::SeqCst) < 600 {
            assert!(std::time::Instant::now() < deadline, "not all consumed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Offset 0 was delivered twice, both times as a first attempt.
        assert_eq!(*first.lock().unwrap(), vec![0, 0]);
        assert_eq!(cached(&consumer), 0);
        consumer.shutdown().await;
    });
}

/// `consume --count N` commits exactly what it printed: the next run of the
/// group continues with the first message not printed, even though more
/// were already pulled.
#[test]
fn count_limited_runs_continue_where_the_last_one_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start(&dir.path().join("data"), &[]);
    create_topic(&node, "Counted", "2");
    let sent: BTreeSet<Key> = produce(&node, "Counted", 10).into_iter().collect();
    let run = |count: Option<&str>| -> Vec<Key> {
        let mut args = vec![
            "consume",
            "--group",
            "counted",
            "--topic",
            "Counted",
            "--idle-timeout",
            "2",
            "--json",
        ];
        if let Some(c) = count {
            args.extend(["--count", c]);
        }
        let out = node.cli(&args);
        ok(&out);
        json_lines(&out.stdout).iter().map(key).collect()
    };
    let first = run(Some("3"));
    assert_eq!(first.len(), 3);
    let second = run(Some("4"));
    assert_eq!(second.len(), 4);
    let rest = run(None);
    assert_eq!(rest.len(), 3);
    let all: BTreeSet<Key> = first.iter().chain(&second).chain(&rest).cloned().collect();
    assert_eq!(all, sent, "every message exactly once across the runs");
}

/// SIGTERM (how systemd and Kubernetes stop a process) ends a run as Ctrl-C
/// does: what was printed is committed and the exit is 0. It killed the
/// consumer before its final commit, and the next run got it all again.
#[test]
fn a_consumer_stopped_with_sigterm_commits_what_it_printed() {
    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start(&dir.path().join("data"), &[]);
    create_topic(&node, "Termed", "2");
    produce(&node, "Termed", 20);
    let child = Command::new(bin())
        .args(["--log-level", "warn"])
        .args(common::consume_args("termed", "Termed", "1000"))
        .env("SKYLARK_NAMESRV", node.namesrv())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let (lines, _reader) = common::pipe_lines(child.0.stdout.take().unwrap());
    let mut printed = 0;
    assert!(
        wait_until(Duration::from_secs(30), || {
            printed += lines.try_iter().count();
            printed == 20
        }),
        "printed {printed} of 20"
    );
    common::unsafe_sigterm(child.0.id());
    let st = child.0.wait().unwrap();
    assert!(st.success(), "consume stopped by SIGTERM exited {st:?}");
    let out = node.cli(&[
        "consume",
        "--group",
        "termed",
        "--topic",
        "Termed",
        "--idle-timeout",
        "2",
        "--json",
    ]);
    ok(&out);
    assert_eq!(json_lines(&out.stdout).len(), 0, "delivered again");
}

/// Orderly: a failing message blocks its queue (retried in place, in order)
/// until it has been retried `max_reconsume_times` times; then it goes to
/// the dead-letter topic and the messages behind it follow, in order.
#[test]
fn orderly_retries_in_place_then_dead_letters_and_moves_on() {
    use skylark::client::{
        ClientConfig, ConsumeFrom, ConsumeResult, MessageData, Producer, PullConsumer,
        PushConsumer, PushConsumerOptions, ReceivedMessage,
    };
    use std::sync::{Arc, Mutex};

    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start(&dir.path().join("data"), &[]);
    create_topic(&node, "OrdFail", "1");
    // A group retry max above the consumer's own: the orderly consumer's
    // give-up still goes to the DLQ (a retry copy would come back out of
    // the queue's order).
    let set = node.cli(&[
        "admin",
        "group",
        "config",
        "set",
        "--group",
        "ordfail",
        "--retry-max",
        "16",
    ]);
    assert!(set.status.success(), "{set:?}");
    let namesrv = node.namesrv();
    actix::System::new().block_on(async move {
        let producer = Producer::start(ClientConfig::new(&namesrv), "p").unwrap();
        for body in ["a", "poison", "b", "c"] {
            producer
                .send_ordered("OrdFail", MessageData::new(body), "k")
                .await
                .unwrap();
        }
        // (body, reconsume times) of every listener call.
        let calls: Arc<Mutex<Vec<(String, u32)>>> = Arc::default();
        let c2 = calls.clone();
        let opts = PushConsumerOptions {
            orderly: true,
            consume_from: ConsumeFrom::First,
            max_reconsume_times: 2,
            retry_delay: Duration::from_millis(20),
            ..PushConsumerOptions::default()
        };
        let consumer = PushConsumer::builder(ClientConfig::new(&namesrv), "ordfail")
            .subscribe("OrdFail", "*")
            .options(opts)
            .start(move |msgs: &[ReceivedMessage]| {
                let m = &msgs[0];
                let body = m.body_str().unwrap_or_default().to_string();
                c2.lock().unwrap().push((body.clone(), m.reconsume_times));
                if body == "poison" {
                    ConsumeResult::Retry
                } else {
                    ConsumeResult::Success
                }
            })
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while calls.lock().unwrap().last().map(|c| c.0.as_str()) != Some("c") {
            assert!(std::time::Instant::now() < deadline, "queue never moved on");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let got = calls.lock().unwrap().clone();
        let expected: Vec<(String, u32)> = [
            ("a", 0),
            ("poison", 0),
            ("poison", 1),
            ("poison", 2),
            ("b", 0),
            ("c", 0),
        ]
        .iter()
        .map(|(b, n)| (b.to_string(), *n))
        .collect();
        assert_eq!(got, expected);
        let reader = PullConsumer::start(ClientConfig::new(&namesrv), "r").unwrap();
        // The broker registers the new topic with the NameServer right away.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let qs = loop {
            if let Ok(qs) = reader.queues("%DLQ%ordfail").await {
                break qs;
            }
            assert!(std::time::Instant::now() < deadline, "no DLQ route");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let r = reader
            .pull(&qs[0], 0, 8, None, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(r.messages.len(), 1);
        assert_eq!(r.messages[0].body_str(), Some("poison"));
        consumer.shutdown().await;
    });
}

/// The full retry path: a listener that fails every time sees the message
/// 17 times (the first delivery and 16 retries through `%RETRY%<group>` on
/// the delay levels, which keep the reconsume count), then it lands in
/// `%DLQ%<group>` and is never delivered again.
#[test]
fn a_listener_failing_17_times_sends_the_message_to_the_dlq_through_retries() {
    use skylark::client::{
        ClientConfig, ConsumeFrom, ConsumeResult, MessageData, Producer, PullConsumer,
        PushConsumer, PushConsumerOptions, ReceivedMessage,
    };
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    // Short delay levels so 16 retries take seconds, not hours.
    let conf = dir.path().join("broker.toml");
    let levels = vec!["50ms"; 18].join(" ");
    std::fs::write(&conf, format!("delay_levels = \"{levels}\"\n")).unwrap();
    let node = Standalone::start(&dir.path().join("data"), &["-c", conf.to_str().unwrap()]);
    create_topic(&node, "Poison", "1");
    let namesrv = node.namesrv();
    actix::System::new().block_on(async move {
        let producer = Producer::start(ClientConfig::new(&namesrv), "p").unwrap();
        producer
            .send("Poison", MessageData::new("poison"))
            .await
            .unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let c2 = calls.clone();
        let opts = PushConsumerOptions {
            consume_from: ConsumeFrom::First,
            commit_interval: Duration::from_millis(200),
            ..PushConsumerOptions::default()
        };
        let consumer = PushConsumer::builder(ClientConfig::new(&namesrv), "retryg")
            .subscribe("Poison", "*")
            .options(opts)
            .start(move |msgs: &[ReceivedMessage]| {
                c2.fetch_add(msgs.len(), Ordering::SeqCst);
                ConsumeResult::Retry
            })
            .unwrap();
        let reader = PullConsumer::start(ClientConfig::new(&namesrv), "dlq-reader").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let dead = loop {
            assert!(
                std::time::Instant::now() < deadline,
                "no DLQ message after {} deliveries",
                calls.load(Ordering::SeqCst)
            );
            if let Ok(qs) = reader.queues("%DLQ%retryg").await {
                let r = reader
                    .pull(&qs[0], 0, 32, None, Duration::ZERO)
                    .await
                    .unwrap();
                if let Some(m) = r.messages.into_iter().next() {
                    break m;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(dead.body_str(), Some("poison"));
        assert_eq!(dead.property("RETRY_TOPIC"), Some("Poison"));
        assert_eq!(calls.load(Ordering::SeqCst), 17, "1 delivery + 16 retries");
        // Dead means done: no further delivery.
        let before = calls.load(Ordering::SeqCst);
        let quiet_until = std::time::Instant::now() + Duration::from_millis(1500);
        while std::time::Instant::now() < quiet_until {
            assert_eq!(
                calls.load(Ordering::SeqCst),
                before,
                "delivered after the DLQ"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        consumer.shutdown().await;
    });
}

/// Two members of a new group started in the same instant over messages
/// already stored: whichever member first sees only itself takes every
/// queue, then hands half of them over. The new owner takes a queue only
/// once the broker grants it the queue's lease, which the previous owner
/// releases after its final commit was acknowledged, and reads the offset
/// only then: nothing is delivered twice. 20 rounds, one fresh group each.
#[test]
fn members_started_together_deliver_nothing_twice() {
    use skylark::client::{
        ClientConfig, ConsumeFrom, ConsumeResult, PushConsumer, PushConsumerOptions,
        ReceivedMessage,
    };
    use std::sync::{Arc, Mutex};

    const ROUNDS: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start(&dir.path().join("data"), &[]);
    create_topic(&node, "Together", "4");
    let keys: BTreeSet<Key> = produce(&node, "Together", 400).into_iter().collect();
    assert_eq!(keys.len(), 400);
    let mut max: BTreeMap<u64, u64> = BTreeMap::new();
    for (q, o) in &keys {
        let m = max.entry(*q).or_default();
        *m = (*m).max(o + 1);
    }
    let namesrv = node.namesrv();
    let started = std::time::Instant::now();
    actix::System::new().block_on(async move {
        let mut handovers = 0;
        for round in 0..ROUNDS {
            let group = format!("together-{round}");
            // (member, queue id, queue offset) per delivery.
            let seen: Arc<Mutex<Vec<(usize, u64, u64)>>> = Arc::default();
            let mut members = Vec::new();
            for i in 0..2 {
                if i == 1 {
                    // "Together": the second member within 0-200 ms of the
                    // first, so some rounds see the first take every queue
                    // and hand half of them over mid-way.
                    let gap = (round % 5) as u64 * 50;
                    tokio::time::sleep(Duration::from_millis(gap)).await;
                }
                let mut cfg = ClientConfig::new(&namesrv);
                cfg.client_id = format!("{group}-{i}");
                let s = seen.clone();
                let opts = PushConsumerOptions {
                    consume_from: ConsumeFrom::First,
                    consume_threads: 4,
                    ..PushConsumerOptions::default()
                };
                let c = PushConsumer::builder(cfg, &group)
                    .subscribe("Together", "*")
                    .options(opts)
                    .start(move |msgs: &[ReceivedMessage]| {
                        // Slow enough that the first member is mid-queue
                        // when the second one arrives.
                        std::thread::sleep(Duration::from_millis(1));
                        let mut s = s.lock().unwrap();
                        for m in msgs {
                            s.push((i, u64::from(m.queue_id), m.queue_offset));
                        }
                        ConsumeResult::Success
                    })
                    .unwrap();
                members.push(c);
            }
            // Done: every message seen, the queues split between the two,
            // each pulled to its end with nothing left in flight (so a
            // duplicate would have been delivered by now).
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            let done = loop {
                let distinct: BTreeSet<Key> = seen
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|(_, q, o)| (*q, *o))
                    .collect();
                let pos: Vec<Vec<(u64, u64)>> = members
                    .iter()
                    .map(|m| {
                        m.positions()
                            .into_iter()
                            .filter(|(q, _)| q.topic == "Together")
                            .map(|(q, o)| (u64::from(q.queue_id), o))
                            .collect()
                    })
                    .collect();
                let split = pos.iter().all(|p| !p.is_empty())
                    && pos.iter().map(Vec::len).sum::<usize>() == max.len()
                    && pos.iter().flatten().all(|(q, o)| max.get(q) == Some(o));
                let idle = members
                    .iter()
                    .all(|m| m.cached().iter().all(|(_, n, _)| *n == 0));
                if (distinct == keys && split && idle) || std::time::Instant::now() > deadline {
                    break distinct == keys && split && idle;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            };
            for m in members {
                m.shutdown().await;
            }
            let seen = seen.lock().unwrap().clone();
            assert!(
                done,
                "round {round}: not settled; {} deliveries",
                seen.len()
            );
            let mut count: BTreeMap<(u64, u64), Vec<usize>> = BTreeMap::new();
            for (member, q, o) in &seen {
                count.entry((*q, *o)).or_default().push(*member);
            }
            let shared: BTreeSet<u64> = (0..max.len() as u64)
                .filter(|q| {
                    let by: BTreeSet<usize> = seen
                        .iter()
                        .filter(|(_, sq, _)| sq == q)
                        .map(|(m, _, _)| *m)
                        .collect();
                    by.len() > 1
                })
                .collect();
            if !shared.is_empty() {
                handovers += 1; // a queue moved from one member to the other
            }
            let twice: Vec<_> = count.iter().filter(|(_, by)| by.len() > 1).collect();
            assert!(
                twice.is_empty(),
                "round {round}: {} of {} messages delivered twice, e.g. {:?}",
                twice.len(),
                keys.len(),
                &twice[..twice.len().min(5)]
            );
        }
        eprintln!(
            "{ROUNDS} rounds in {:?}, {handovers} with a queue handed over mid-way",
            started.elapsed()
        );
    });
}

/// A `skylark standalone` whose log goes to a file (the shared harness
/// inherits stderr).
struct LoggedStandalone {
    _child: KillOnDrop,
    namesrv: String,
    broker: String,
    log: PathBuf,
}

impl LoggedStandalone {
    fn start(dir: &Path) -> LoggedStandalone {
        let (n, b) = (common::free_port(), common::free_port());
        let log = dir.join("standalone.log");
        let mut child = Command::new(bin())
            .args(["--log-level", "info", "standalone", "--data-dir"])
            .envs(common::ROOMY_DISK)
            .arg(dir.join("data"))
            .args(["--namesrv-port", &n.to_string()])
            .args(["--broker-port", &b.to_string()])
            .env("SKYLARK_STORE__SEGMENT_SIZE", "67108864")
            .stdin(Stdio::null())
            .stdout(File::create(&log).unwrap())
            .stderr(File::options().append(true).open(&log).unwrap())
            .spawn()
            .unwrap();
        common::wait_listening(&mut child, &[n, b]).unwrap();
        let s = LoggedStandalone {
            _child: KillOnDrop(child),
            namesrv: format!("127.0.0.1:{n}"),
            broker: format!("127.0.0.1:{b}"),
            log,
        };
        assert!(wait_until(Duration::from_secs(30), || {
            let out = s.cli(&["admin", "--json", "cluster", "list"]);
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains(&s.broker)
        }));
        s
    }

    fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(bin())
            .args(["--log-level", "warn"])
            .args(args)
            .env("SKYLARK_NAMESRV", &self.namesrv)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Members of one group that filter differently (`--filter A`, `--filter
/// B`) would each skip the other's messages in their own queues: the
/// broker warns once in its log and reports the inconsistency in the group
/// progress answer; it is gone from the answer when one member leaves.
#[test]
fn members_subscribing_differently_are_reported_in_the_log_and_progress() {
    use skylark::client::{connect_broker, ClientConfig};
    use skylark::codec::GetConsumeProgressRequest;

    let dir = tempfile::tempdir().unwrap();
    let node = LoggedStandalone::start(dir.path());
    ok(&node.cli(&[
        "admin", "topic", "create", "--name", "Mixed", "--queues", "4",
    ]));
    let consume = |name: &str, filter: &str| {
        let out = dir.path().join(format!("{name}.jsonl"));
        KillOnDrop(
            Command::new(bin())
                .args(["--log-level", "warn", "consume", "--json"])
                .args(["--group", "mixed", "--topic", "Mixed", "--filter", filter])
                .env("SKYLARK_NAMESRV", &node.namesrv)
                .stdin(Stdio::null())
                .stdout(File::create(out).unwrap())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap(),
        )
    };
    let a = consume("a", "A");
    let b = consume("b", "B");
    let broker = node.broker.clone();
    let namesrv = node.namesrv.clone();
    let progress = move || {
        let (broker, namesrv) = (broker.clone(), namesrv.clone());
        actix::System::new().block_on(async move {
            let c = connect_broker(&ClientConfig::new(&namesrv), &broker)
                .await
                .unwrap();
            c.call(&GetConsumeProgressRequest {
                group: "mixed".into(),
            })
            .await
            .unwrap()
        })
    };
    let mut last = None;
    assert!(
        wait_until(Duration::from_secs(20), || {
            let p = progress();
            let found = p.client_ids.len() == 2 && !p.subscription_conflicts.is_empty();
            last = Some(p);
            found
        }),
        "no conflict reported: {last:?}"
    );
    let p = last.unwrap();
    let c = p
        .subscription_conflicts
        .iter()
        .find(|c| c.topic == "Mixed")
        .unwrap_or_else(|| panic!("{p:?}"));
    let exprs: Vec<Option<&str>> = c.variants.iter().map(|v| v.expression.as_deref()).collect();
    assert_eq!(exprs, vec![Some("A"), Some("B")], "{c:?}");
    assert!(c.variants.iter().all(|v| v.client_ids.len() == 1), "{c:?}");
    let text = c.to_string();
    assert!(text.starts_with("topic Mixed: 'A' by "), "{text}");
    // The CLI's --json keeps the structure (it printed the text).
    let out = node.cli(&["admin", "--json", "group", "progress", "--group", "mixed"]);
    let v = &common::json_lines(&out.stdout)[0]["subscription_conflicts"][0];
    assert_eq!(v["topic"], "Mixed", "{v}");
    assert_eq!(v["variants"][0]["expression"], "A", "{v}");
    assert_eq!(
        v["variants"][1]["client_ids"].as_array().map(Vec::len),
        Some(1),
        "{v}"
    );
    assert!(wait_until(Duration::from_secs(10), || node
        .log()
        .contains("subscribe differently")));
    let log = node.log();
    assert_eq!(
        log.matches("subscribe differently").count(),
        1,
        "one warning per change:\n{log}"
    );
    assert!(log.contains("'A' by") && log.contains("'B' by"), "{log}");
    // One member leaves: the members subscribe alike again.
    drop(b);
    assert!(wait_until(Duration::from_secs(20), || {
        let p = progress();
        p.client_ids.len() == 1 && p.subscription_conflicts.is_empty()
    }));
    assert!(wait_until(Duration::from_secs(10), || node
        .log()
        .contains("subscribe alike again")));
    drop(a);
}

#[test]
fn a_broadcasting_consumer_drops_a_message_still_failing_after_its_retries() {
    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start(&dir.path().join("data"), &[]);
    let create = node.cli(&[
        "admin", "topic", "create", "--name", "BcFail", "--queues", "1",
    ]);
    assert!(create.status.success());
    for body in ["poison", "fine"] {
        let out = node.cli(&[
            "produce",
            "--topic",
            "BcFail",
            "--body",
            body,
            "--exact-body",
        ]);
        assert!(out.status.success(), "{out:?}");
    }
    let offsets = dir.path().join("bc.json");
    let consume = || {
        node.cli(&[
            "consume",
            "--group",
            "bcfail",
            "--topic",
            "BcFail",
            "--broadcast",
            "--offset-file",
            offsets.to_str().unwrap(),
            "--from",
            "first",
            "--fail-on",
            "poison",
            "--max-reconsume-times",
            "1",
            "--idle-timeout",
            "4",
            "--json",
        ])
    };
    // It used to retry "poison" once a second for as long as it ran, and
    // every later run again.
    let out = consume();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let got: Vec<String> = json_lines(&out.stdout)
        .iter()
        .map(|m| m["body"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, ["fine"], "{err}");
    assert!(err.contains("1 message(s) still failing"), "{err}");
    // The offset moved past it: the next run has nothing to retry.
    let out = consume();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(json_lines(&out.stdout).is_empty(), "{err}");
    assert!(!err.contains("still failing"), "{err}");
}

/// How a running consumer's pulls come to be refused: a setting (the
/// command that sets it, then the value that refuses the pulls and the
/// value that lifts the refusal) and what the consumer's error must say.
struct Refusal<'a> {
    group: &'a str,
    sql: Option<&'a str>,
    setting: &'a [&'a str],
    refuse: &'a str,
    lift: &'a str,
    says: &'a str,
}

/// A running `skylark consume` whose pulls the broker starts refusing for
/// good — SQL filtering switched off, the group's `consume_enable` off,
/// the topic made write-only — exits 1 naming the refusal (it retried
/// them in silence forever); a broker restart is only waited for.
#[test]
fn a_running_consumer_whose_pulls_are_refused_exits_1_naming_the_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Standalone::start(&dir.path().join("data"), &[]);
    create_topic(&node, "RefusedT", "2");
    let produce_one = |node: &Standalone| {
        ok(&node.cli(&[
            "produce",
            "--topic",
            "RefusedT",
            "--body",
            "m",
            "--property",
            "n=1",
        ]))
    };
    let set = |node: &Standalone, setting: &[&str], value: &str| {
        let mut args = setting.to_vec();
        args.push(value);
        ok(&node.cli(&args));
    };
    let cases = [
        Refusal {
            group: "g-sql-off",
            sql: Some("n > 0"),
            setting: &["admin", "broker", "config", "set", "enable_property_filter"],
            refuse: "false",
            lift: "true",
            says: "enable_property_filter is off",
        },
        Refusal {
            group: "g-disabled",
            sql: None,
            setting: &[
                "admin",
                "group",
                "config",
                "set",
                "--group",
                "g-disabled",
                "--consume-enable",
            ],
            refuse: "false",
            lift: "true",
            says: "consumer group 'g-disabled' may not consume",
        },
        Refusal {
            group: "g-write-only",
            sql: None,
            setting: &["admin", "topic", "perm", "--name", "RefusedT", "--perm"],
            refuse: "w",
            lift: "rw",
            says: "not readable",
        },
    ];
    for (i, case) in cases.iter().enumerate() {
        produce_one(&node);
        let err_path = dir.path().join(format!("{}.stderr", case.group));
        let mut args = vec!["--group", case.group, "--topic", "RefusedT"];
        if let Some(sql) = case.sql {
            args.extend(["--sql", sql]);
        }
        let mut member = Member::start_with_stderr(
            &node,
            dir.path(),
            case.group,
            &args,
            File::create(&err_path).unwrap().into(),
        );
        // Running and consuming: every message so far (one per case).
        assert!(
            wait_until(Duration::from_secs(30), || member.messages().len() > i),
            "{}: consumed {:?}",
            case.group,
            member.keys()
        );
        if i == 0 {
            // A broker restart is transient: waited for, not a refusal.
            node.restart();
            produce_one(&node);
            assert!(
                wait_until(Duration::from_secs(30), || member.messages().len() > 1),
                "after the restart: consumed {:?}; stderr: {}",
                member.keys(),
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
            assert!(
                matches!(member.child.0.try_wait(), Ok(None)),
                "exited at a restart"
            );
        }
        set(&node, case.setting, case.refuse);
        let exited = member.wait_exit(Duration::from_secs(30));
        let err = std::fs::read_to_string(&err_path).unwrap_or_default();
        assert!(
            exited,
            "{}: still running once refused; stderr: {err}",
            case.group
        );
        let status = member.child.0.wait().unwrap();
        assert_eq!(status.code(), Some(1), "{}: {err}", case.group);
        assert!(
            err.contains(&format!("consumer group '{}': pulls of", case.group))
                && err.contains("are refused")
                && err.contains(case.says),
            "{}: {err}",
            case.group
        );
        set(&node, case.setting, case.lift);
    }
}
