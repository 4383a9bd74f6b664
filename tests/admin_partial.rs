//! Admin writes over several brokers when one of them does not answer
//! (frozen with SIGSTOP, so connections are accepted and requests time
//! out): the write is applied on the others, each broker's outcome is
//! printed, the command exits non-zero, and running it again finishes it.
//! Also `topic update` of a topic not on every master, and the broker's own
//! topics refused by `update`, `perm` and `stats`.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{bin, free_port, json_lines, wait_listening, wait_until, KillOnDrop, Standalone};

const WAIT: Duration = Duration::from_secs(30);

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "command failed: {}\nstdout: {}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// (stdout, stderr) of a command that must fail.
fn fails(out: &Output) -> (String, String) {
    assert!(
        !out.status.success(),
        "command should fail, printed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A standalone node (broker "standalone") and a second broker "bro-b"
/// registered with its NameServer.
struct TwoBrokers {
    node: Standalone,
    bro_b: KillOnDrop,
    _dirs: [tempfile::TempDir; 2],
}

impl TwoBrokers {
    fn start() -> TwoBrokers {
        let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let node = Standalone::start(d1.path(), &[]);
        let port = free_port();
        let mut child = Command::new(bin())
            .args([
                "--log-level",
                "warn",
                "broker",
                "--namesrv",
                &node.namesrv(),
            ])
            .args(["--port", &port.to_string(), "--data-dir"])
            .arg(d2.path())
            .env("SKYLARK_BROKER_NAME", "bro-b")
            .env("SKYLARK_HA_PORT", "0")
            .env("SKYLARK_STORE__SEGMENT_SIZE", "67108864")
            .envs(common::ROOMY_DISK)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn broker");
        wait_listening(&mut child, &[port]).expect("bro-b listens");
        let addr = format!("127.0.0.1:{port}");
        assert!(
            wait_until(WAIT, || {
                let out = node.cli(&["admin", "--json", "cluster", "list"]);
                String::from_utf8_lossy(&out.stdout).contains(&addr)
            }),
            "bro-b never registered"
        );
        TwoBrokers {
            node,
            bro_b: KillOnDrop(child),
            _dirs: [d1, d2],
        }
    }

    fn cli(&self, args: &[&str]) -> Output {
        self.node.cli(args)
    }

    /// SIGSTOP (`-STOP`) or SIGCONT (`-CONT`) to bro-b; a stop returns once
    /// the process is stopped.
    fn signal_b(&self, sig: &str) {
        let pid = self.bro_b.0.id().to_string();
        let sent = Command::new("kill").args([sig, &pid]).status().unwrap();
        assert!(sent.success(), "kill {sig} {pid}");
        let stat = format!("/proc/{pid}/stat");
        let stopped = || {
            std::fs::read_to_string(&stat)
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')
                        .map(|(_, r)| r.trim_start().starts_with('T'))
                })
                .unwrap_or(false)
        };
        assert!(wait_until(WAIT, || stopped() == (sig == "-STOP")));
    }

    /// The broker names of `topic`'s route.
    fn routed(&self, topic: &str) -> Vec<String> {
        let out = self.cli(&["admin", "--json", "topic", "route", "--name", topic]);
        json_lines(&out.stdout)
            .first()
            .and_then(|v| v["route"]["brokers"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|b| b["broker_name"].as_str().map(String::from))
            .collect()
    }
}

/// `topic create`, `topic perm` and `topic delete` with bro-b frozen:
/// applied on standalone, bro-b's failure printed, exit non-zero; run
/// again once bro-b answers, each completes.
#[test]
fn topic_writes_with_a_broker_down_are_applied_elsewhere_and_completed_by_running_them_again() {
    let c = TwoBrokers::start();
    c.signal_b("-STOP");
    let create = [
        "admin", "topic", "create", "--name", "PartT", "--queues", "2",
    ];
    let (out, err) = fails(&c.cli(&create));
    assert!(
        out.contains("created topic 'PartT' (2 queues) on standalone"),
        "{out}"
    );
    assert!(out.contains("failed on bro-b"), "{out}");
    assert!(
        err.contains("bro-b") && err.contains("run the same command again"),
        "{err}"
    );
    c.signal_b("-CONT");
    // Run again: standalone has it as asked, bro-b gets it.
    let out = ok(&c.cli(&create));
    assert!(out.contains("already on standalone"), "{out}");
    assert!(
        out.contains("created topic 'PartT' (2 queues) on bro-b"),
        "{out}"
    );
    assert!(wait_until(WAIT, || c.routed("PartT").len() == 2));

    c.signal_b("-STOP");
    let perm = [
        "admin", "--json", "topic", "perm", "--name", "PartT", "--perm", "r",
    ];
    let (out, err) = fails(&c.cli(&perm));
    let lines = json_lines(out.as_bytes());
    assert!(
        lines
            .iter()
            .any(|v| v["broker_name"] == "standalone" && v["perm"] == "r-"),
        "{out}"
    );
    assert!(
        lines
            .iter()
            .any(|v| v["broker_name"] == "bro-b" && v["result"] == "failed"),
        "{out}"
    );
    assert!(err.contains("applied on: standalone"), "{err}");

    let (out, err) = fails(&c.cli(&["admin", "topic", "delete", "--name", "PartT"]));
    assert!(out.contains("deleted topic 'PartT' on standalone"), "{out}");
    assert!(err.contains("bro-b"), "{err}");
    c.signal_b("-CONT");
    let out = ok(&c.cli(&["admin", "topic", "delete", "--name", "PartT"]));
    assert!(out.contains("deleted topic 'PartT' on bro-b"), "{out}");
}

/// `group delete` with bro-b frozen does not say "deleted" and exit 0:
/// it names where it deleted and where it failed.
#[test]
fn group_delete_with_a_broker_down_fails_naming_it() {
    let c = TwoBrokers::start();
    // A stored setting makes the group exist on both masters.
    let set = ok(&c.cli(&[
        "admin",
        "group",
        "config",
        "set",
        "--group",
        "DelG",
        "--retry-max",
        "3",
    ]));
    assert!(set.contains("standalone") && set.contains("bro-b"), "{set}");
    c.signal_b("-STOP");
    let delete = ["admin", "group", "delete", "--group", "DelG"];
    let (out, err) = fails(&c.cli(&delete));
    assert!(
        out.contains("consumer group 'DelG' deleted on standalone"),
        "{out}"
    );
    assert!(err.contains("failed on 1 of 2 brokers (bro-b"), "{err}");
    c.signal_b("-CONT");
    // Standalone no longer knows it (nothing to do there), bro-b deletes.
    let out = ok(&c.cli(&delete));
    assert!(
        out.contains("deleted on bro-b") && !out.contains("standalone"),
        "{out}"
    );
    let (_, err) = fails(&c.cli(&delete));
    assert!(err.contains("not found on any master"), "{err}");
}

/// `topic update` writes to the masters hosting the topic, not to every
/// master; `create --broker` adds it to another. The broker's own topics
/// are refused by `update`, `perm` and `stats` as reserved.
#[test]
fn update_targets_the_hosting_masters_and_reserved_topics_are_refused() {
    let c = TwoBrokers::start();
    ok(&c.cli(&[
        "admin",
        "topic",
        "create",
        "--name",
        "OnlyS",
        "--queues",
        "2",
        "--broker",
        "standalone",
    ]));
    assert!(wait_until(WAIT, || c.routed("OnlyS") == ["standalone"]));
    let out = ok(&c.cli(&[
        "admin", "topic", "update", "--name", "OnlyS", "--queues", "4",
    ]));
    assert!(
        out.contains("updated topic 'OnlyS' (4 queues) on standalone") && !out.contains("bro-b"),
        "{out}"
    );
    let out = ok(&c.cli(&[
        "admin", "topic", "create", "--name", "OnlyS", "--queues", "4", "--broker", "bro-b",
    ]));
    assert!(
        out.contains("created topic 'OnlyS' (4 queues) on bro-b"),
        "{out}"
    );

    for args in [
        &[
            "admin", "topic", "update", "--name", "TBW102", "--queues", "4",
        ][..],
        &["admin", "topic", "perm", "--name", "TBW102", "--perm", "r"],
        &["admin", "topic", "stats", "--name", "TBW102"],
        &[
            "admin",
            "topic",
            "perm",
            "--name",
            "SCHEDULE_TOPIC_XXXX",
            "--perm",
            "r",
        ],
    ] {
        let (_, err) = fails(&c.cli(args));
        assert!(err.contains("is reserved"), "{args:?}: {err}");
    }
}
