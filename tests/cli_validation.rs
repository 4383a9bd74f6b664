//! Arguments the CLI must refuse (a clear reason on stderr, a non-zero
//! exit) instead of silently doing nothing, found by a new-user
//! walkthrough; and `--broker NAME` in every admin command that takes
//! `--broker`. Usage errors run with no server (they are refused before
//! anything connects); the rest share one standalone.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{bin, json_lines, Standalone};

/// No NameServer listens here: a command that got as far as connecting
/// would fail with a connection error, not the reason asserted.
const NO_NAMESRV: &str = "127.0.0.1:1";

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts `o` exited with `code` and its stderr says every one of `says`.
fn refused(o: &Output, code: i32, says: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "exit status; stderr: {err}");
    for s in says {
        assert!(err.contains(s), "stderr should say {s:?}: {err}");
    }
    assert!(
        o.stdout.is_empty(),
        "nothing on stdout: {}",
        String::from_utf8_lossy(&o.stdout)
    );
}

fn offline(args: &[&str]) -> Output {
    common::cli(NO_NAMESRV, args)
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{o:?}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn flags_that_do_nothing_are_usage_errors() {
    // clap's usage errors: exit 2, naming both flags.
    refused(
        &offline(&[
            "consume",
            "--group",
            "g",
            "--topic",
            "T",
            "--offset-file",
            "/tmp/x.json",
        ]),
        2,
        &["--broadcast", "--offset-file"],
    );
    refused(
        &offline(&["produce", "--topic", "T", "--linger-secs", "5"]),
        2,
        &["--transaction", "--linger-secs"],
    );
    refused(
        &offline(&["produce", "--topic", "T", "--check-answer", "commit"]),
        2,
        &["--transaction", "--check-answer"],
    );
    refused(
        &offline(&["produce", "--topic", "T", "--size", "10", "--exact-body"]),
        2,
        &["--exact-body", "--size"],
    );
    refused(
        &offline(&[
            "consume",
            "--group",
            "g",
            "--topic",
            "T",
            "--instance",
            "i2",
        ]),
        2,
        &["--broadcast", "--instance"],
    );
    refused(
        &offline(&[
            "produce",
            "--topic",
            "T",
            "--transaction",
            "commit",
            "--batch",
            "4",
        ]),
        2,
        &["--transaction", "--batch"],
    );
    // The defaults of --check-answer, --linger-secs, --batch and
    // --instance do not count as given: a plain produce or consume parses
    // (and --count 0 does nothing, so it needs no server).
    let o = offline(&["produce", "--topic", "T", "--count", "0", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = offline(&[
        "produce",
        "--topic",
        "T",
        "--transaction",
        "commit",
        "--count",
        "0",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = offline(&["consume", "--group", "g", "--topic", "T", "--count", "0"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// A time before 1970 was taken as 0 or "now" without a word.
#[test]
fn a_time_before_1970_is_refused() {
    for args in [
        &[
            "admin",
            "offset",
            "reset",
            "--group",
            "g",
            "--topic",
            "T",
            "--timestamp=-1",
        ][..],
        &[
            "admin",
            "message",
            "by-time",
            "--topic",
            "T",
            "--timestamp=-5",
        ],
        &[
            "admin",
            "message",
            "by-key",
            "--topic",
            "T",
            "k",
            "--begin=-5",
        ],
        &["produce", "--topic", "T", "--body", "b", "--deliver-at=-5"],
    ] {
        refused(&offline(args), 2, &["is before 1970"]);
    }
    refused(
        &offline(&["consume", "--group", "g", "--topic", "T", "--from=-5"]),
        1,
        &["--from -5 is before 1970"],
    );
}

#[test]
fn zero_limits_and_a_reversed_time_range_are_refused() {
    refused(
        &offline(&[
            "admin", "message", "by-key", "--topic", "Demo", "order-42", "--max", "0",
        ]),
        2,
        &["'0'", "--max"],
    );
    refused(
        &offline(&[
            "admin",
            "message",
            "by-time",
            "--topic",
            "Demo",
            "--timestamp",
            "0",
            "--max-per-queue",
            "0",
        ]),
        2,
        &["'0'", "--max-per-queue"],
    );
    refused(
        &offline(&[
            "admin", "message", "by-key", "--topic", "Demo", "order-42", "--begin", "5", "--end",
            "1",
        ]),
        1,
        &["--begin 5 is after --end 1"],
    );
    // Only --begin, in the future: after the default --end (now).
    refused(
        &offline(&[
            "admin",
            "message",
            "by-key",
            "--topic",
            "Demo",
            "order-42",
            "--begin",
            "99999999999999",
        ]),
        1,
        &["--begin 99999999999999 is after now"],
    );
}

#[test]
fn a_rebalance_interval_of_zero_is_a_usage_error() {
    // It used to run with a 10 ms period without a word.
    let consume = |ms: &str| {
        offline(&[
            "consume",
            "--group",
            "g",
            "--topic",
            "T",
            "--rebalance-interval-ms",
            ms,
            "--count",
            "0",
        ])
    };
    refused(&consume("0"), 2, &["'0'", "--rebalance-interval-ms", "1.."]);
    // Past a year: the timer's arithmetic would overflow.
    refused(
        &consume("31536000001"),
        2,
        &["'31536000001'", "--rebalance-interval-ms"],
    );
    // The ends of the range parse (and --count 0 needs no server).
    for ms in ["1", "31536000000"] {
        let o = consume(ms);
        assert!(o.status.success(), "{ms}: {}", stderr(&o));
    }
}

#[test]
fn a_delay_past_the_largest_delivery_time_is_a_usage_error() {
    // Sent saturated before, as a delivery time of i64::MAX ms.
    for huge in ["18446744073709551615", "9223372036854775807"] {
        refused(
            &offline(&["produce", "--topic", "T", "--body", "x", "--delay-ms", huge]),
            2,
            &[
                "--delay-ms",
                huge,
                "the delay must be at most",
                "max_delay_ms",
            ],
        );
    }
}

/// `bench` with a bad topic or a body above `max_message_size` failed
/// every send of the run, one by one; both are usage errors now, refused
/// before anything connects.
#[test]
fn bench_refuses_a_bad_topic_and_an_oversized_body_at_once() {
    for mode in ["produce", "consume", "e2e"] {
        refused(
            &offline(&["bench", mode, "--topic", "no spaces", "--count", "10"]),
            2,
            &["--topic:", "no spaces"],
        );
    }
    for mode in ["produce", "e2e"] {
        refused(
            &offline(&["bench", mode, "--topic", "T", "--size", "4194305"]),
            2,
            &["--size 4194305", "4194304 bytes", "max_message_size"],
        );
    }
}

#[test]
fn a_single_bar_in_a_tag_filter_is_refused_suggesting_two() {
    // Taken as the literal tag "TagA | TagB" before: it matched nothing.
    for f in ["TagA | TagB", "TagA|TagB"] {
        refused(
            &offline(&["consume", "--group", "g", "--topic", "T", "--filter", f]),
            1,
            &["--filter", "contains '|'", "'||'"],
        );
    }
}

/// `--property TRAN_MSG=true` without `--transaction` was answered SendOk
/// at an offset of the half queue: a half message no producer would
/// commit, never delivered (new-user walkthrough). System property names
/// are refused, naming the flag that sets them.
#[test]
fn a_system_property_is_refused_naming_its_flag() {
    for (p, flag) in [
        ("TRAN_MSG=true", "--transaction"),
        ("PGROUP=g", "--transaction"),
        ("DELAY=3", "--delay-level"),
        ("TAGS=A", "--tag"),
        ("REAL_TOPIC=Other", "the broker"),
    ] {
        for cmd in [
            &["produce"][..],
            &["produce", "--transaction", "commit"][..],
        ] {
            let args = [cmd, &["--topic", "T", "--property", p]].concat();
            refused(
                &offline(&args),
                1,
                &["is a system property", &format!("set by {flag}")],
            );
        }
    }
}

#[test]
fn topic_update_without_a_change_is_refused() {
    refused(
        &offline(&["admin", "topic", "update", "--name", "Q5"]),
        1,
        &["nothing to update", "--queues", "--order"],
    );
    refused(
        &offline(&[
            "admin",
            "topic",
            "update",
            "--name",
            "Q5",
            "--broker",
            "standalone",
        ]),
        1,
        &["nothing to update"],
    );
}

#[test]
fn an_unwritable_broadcast_offset_file_is_refused_before_joining() {
    let broadcast = |file: &str| {
        offline(&[
            "consume",
            "--group",
            "bc",
            "--topic",
            "T",
            "--broadcast",
            "--offset-file",
            file,
            "--count",
            "1",
            "--idle-timeout",
            "5",
        ])
    };
    // The walkthrough's command: it used to wait out --idle-timeout and exit 0.
    refused(
        &broadcast("/proc/nope/off.json"),
        1,
        &["cannot write the local offset file /proc/nope/off.json"],
    );
    // A regular file where the file's directory should be (refused even
    // for root, who may write anywhere else).
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, "x").unwrap();
    let file = blocker.join("off.json");
    let file = file.to_str().unwrap();
    refused(
        &broadcast(file),
        1,
        &["cannot write the local offset file", file],
    );
    // A directory given as the file.
    refused(
        &broadcast(dir.path().to_str().unwrap()),
        1,
        &["cannot write the local offset file", "is a directory"],
    );
    // A file that is there but not offsets: said so, not "cannot write".
    let garbage = dir.path().join("garbage.json");
    std::fs::write(&garbage, "not json").unwrap();
    refused(
        &broadcast(garbage.to_str().unwrap()),
        1,
        &["cannot be read as an offsets file", "move it aside"],
    );
}

/// `--instance` names a directory under `~/.skylark_offsets`: `../../x`
/// wrote the offsets file at `/x/GROUP/offsets.json`.
#[test]
fn an_instance_name_that_leaves_the_offsets_directory_is_refused() {
    for name in ["../../x", "..", "a/b", ""] {
        let o = offline(&[
            "consume",
            "--group",
            "bc",
            "--topic",
            "T",
            "--broadcast",
            "--instance",
            name,
            "--count",
            "1",
        ]);
        refused(&o, 2, &["is not an instance name"]);
    }
}

/// A client command whose stdout is closed (`>&-`) is refused before it
/// connects: `consume` with a closed stdout exited 0 having committed the
/// offsets of messages it never printed.
#[test]
fn a_client_command_with_stdout_closed_is_refused() {
    for cmd in [
        "consume --group g --topic T --count 1",
        "produce --topic T --body b",
        "admin topic list",
    ] {
        let o = Command::new("sh")
            .arg("-c")
            .arg(format!("exec \"$0\" {cmd} >&-"))
            .arg(bin())
            .env("SKYLARK_NAMESRV", NO_NAMESRV)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        refused(&o, 1, &["stdout is closed"]);
    }
}

/// Runs `skylark CMD -c FILE` and returns its output once it exits; a
/// server that starts instead is killed after a deadline and the test
/// fails. Flags give it free ports and a temporary data directory, so a
/// server that does start takes no shipped port.
fn refused_start(cmd: &str, file: &std::path::Path, dir: &std::path::Path) -> Output {
    let mut c = Command::new(bin());
    c.args(["--log-level", "warn", cmd, "-c"]).arg(file);
    let port = common::free_port().to_string();
    let data = dir.join(format!("{cmd}-{port}"));
    match cmd {
        "namesrv" => c.args(["--port", &port]),
        "broker" => c
            .args(["--port", &port, "--namesrv", NO_NAMESRV, "--data-dir"])
            .arg(&data)
            .env("SKYLARK_HA_PORT", "0")
            .envs(common::ROOMY_DISK),
        "controller" => c.args(["--port", &port, "--data-dir"]).arg(&data),
        "standalone" => c
            .args(["--namesrv-port", &port])
            .args(["--broker-port", &common::free_port().to_string()])
            .args([
                "--no-dashboard",
                "--no-metrics",
                "--no-remoting",
                "--data-dir",
            ])
            .arg(&data)
            .envs(common::ROOMY_DISK),
        other => panic!("no such server {other}"),
    };
    exit_of(c, &format!("`skylark {cmd} -c {}`", file.display()))
}

/// The output of `c` once it exits; killed, failing the test, if it is
/// still running after a deadline (a server that started).
fn exit_of(mut c: Command, what: &str) -> Output {
    let mut child = common::KillOnDrop(
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let exited = common::wait_until(Duration::from_secs(20), || {
        matches!(child.0.try_wait(), Ok(Some(_)))
    });
    assert!(exited, "{what} started");
    let read = |pipe: Option<&mut dyn std::io::Read>| {
        let mut bytes = Vec::new();
        pipe.unwrap().read_to_end(&mut bytes).unwrap();
        bytes
    };
    let stdout = read(child.0.stdout.as_mut().map(|p| p as _));
    let stderr = read(child.0.stderr.as_mut().map(|p| p as _));
    Output {
        status: child.0.wait().unwrap(),
        stdout,
        stderr,
    }
}

/// `skylark broker -c conf/namesrv-1.toml` started a broker on the
/// NameServer's port with every other setting at its default: each key of
/// that file is a broker key too (operator walkthrough). Every server
/// refuses every shipped file written for another, naming the file, whose
/// it is and the command that runs it; `standalone -c` takes broker files.
#[test]
fn a_shipped_conf_file_is_refused_by_every_other_server() {
    let conf = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
    let dir = tempfile::tempdir().unwrap();
    let servers = [
        ("namesrv", "NameServer"),
        ("broker", "broker"),
        ("controller", "controller"),
    ];
    let mut refusals = 0;
    for entry in std::fs::read_dir(&conf).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some((own, server)) = servers.iter().find(|(r, _)| name.starts_with(r)) else {
            continue;
        };
        for cmd in ["namesrv", "broker", "controller", "standalone"] {
            if cmd == *own || (cmd == "standalone" && *own == "broker") {
                continue;
            }
            let out = refused_start(cmd, &path, dir.path());
            refused(
                &out,
                1,
                &[
                    &format!("{} is a {server}'s configuration", path.display()),
                    &format!("role = \"{own}\""),
                    &format!("run it with `skylark {own} -c {}`", path.display()),
                ],
            );
            refusals += 1;
        }
    }
    // 3 NameServer, 8 broker and 3 controller files.
    assert!(
        refusals >= 3 * 3 + 8 * 2 + 3 * 3,
        "only {refusals} refusals"
    );
}

/// A copy of a NameServer's file without its `role` holds only keys a
/// broker has too: `skylark broker -c` started a broker on the NameServer's
/// port, which then registered with itself (its default `namesrv` is that
/// port on this host; here it comes from the environment, to use a free
/// port). Refused, saying what the file looks like.
#[test]
fn a_broker_on_the_port_of_its_own_namesrv_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port().to_string();
    let shipped = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/namesrv-1.toml"),
    )
    .unwrap();
    let copy: String = shipped
        .lines()
        .filter(|l| !l.starts_with("role"))
        .map(|l| match l.starts_with("port") {
            true => format!("port = {port}\n"),
            false => format!("{l}\n"),
        })
        .collect();
    let file = dir.path().join("namesrv-copy.toml");
    std::fs::write(&file, copy).unwrap();
    let mut c = Command::new(bin());
    c.args(["--log-level", "warn", "broker", "-c"])
        .arg(&file)
        .arg("--data-dir")
        .arg(dir.path().join("never"))
        .envs(common::ROOMY_DISK)
        .env("SKYLARK_HA_PORT", "0")
        .env("SKYLARK_NAMESRV", format!("127.0.0.1:{port}"));
    let out = exit_of(c, "a broker on its NameServer's port");
    refused(
        &out,
        1,
        &[
            &format!("port {port} is also the port of the NameServer this broker registers with"),
            "skylark namesrv -c FILE",
        ],
    );
}

#[test]
fn with_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start(
        &dir.path().join("data"),
        &["--no-dashboard", "--no-metrics"],
    );
    let addr = node.broker();

    // A broker's address first in the NameServer list: the next one is
    // asked (it failed with "GetTopicList is not served by a broker").
    let list = format!("{addr};{}", node.namesrv());
    ok(&common::cli(&list, &["admin", "topic", "list"]));

    // A broker's address given as a controller's: "malformed frame" before.
    let elect = ["--broker-name", "standalone", "--broker-id", "0"];
    for args in [
        &["admin", "controller", "status", "--controller", &addr][..],
        &[
            &["admin", "controller", "elect", "--controller", &addr][..],
            &elect,
        ]
        .concat(),
    ] {
        refused(
            &node.cli(args),
            1,
            &[&format!(
                "controller {addr}: this address does not answer as a controller"
            )],
        );
    }

    // --broker NAME in every admin command that takes --broker (it worked
    // only for `broker status|perm` before: "invalid socket address").
    let out = ok(&node.cli(&[
        "admin",
        "--json",
        "topic",
        "create",
        "--name",
        "V",
        "--queues",
        "2",
        "--broker",
        "standalone",
    ]));
    let v = &json_lines(out.as_bytes())[0];
    assert_eq!(v["brokers"][0]["broker_name"], "standalone", "{out}");
    assert_eq!(v["brokers"][0]["addr"], addr.as_str(), "{out}");
    let out = ok(&node.cli(&[
        "admin",
        "topic",
        "update",
        "--name",
        "V",
        "--read-queues",
        "2",
        "--broker",
        "standalone",
    ]));
    assert!(out.contains("updated topic 'V'"), "{out}");
    let out = ok(&node.cli(&["admin", "broker", "config", "get", "--broker", "standalone"]));
    assert!(
        out.contains(&format!("{addr} long_poll_max_ms = ")),
        "{out}"
    );
    let out = ok(&node.cli(&[
        "admin",
        "broker",
        "config",
        "set",
        "long_poll_max_ms",
        "4000",
        "--broker",
        "standalone",
    ]));
    assert!(out.contains("long_poll_max_ms = 4000"), "{out}");
    let out = ok(&node.cli(&[
        "admin",
        "--json",
        "delay",
        "stats",
        "--broker",
        "standalone",
    ]));
    let v = &json_lines(out.as_bytes())[0];
    assert_eq!(v["broker_name"], "standalone", "{out}");
    assert_eq!(v["addr"], addr.as_str(), "{out}");
    // An address still works; an unknown name is an error naming the known ones.
    ok(&node.cli(&["admin", "broker", "config", "get", "--broker", &addr]));
    for args in [
        &["admin", "broker", "config", "get", "--broker", "nosuch"][..],
        &["admin", "delay", "stats", "--broker", "nosuch"],
        &[
            "admin", "topic", "create", "--name", "W", "--broker", "nosuch",
        ],
    ] {
        refused(
            &node.cli(args),
            1,
            &["broker 'nosuch' is not registered", "standalone"],
        );
    }

    // A key query with --max 1 still works (the range check lets it through).
    ok(&node.cli(&[
        "produce", "--topic", "V", "--key", "order-42", "--body", "a",
    ]));
    let found = |args: &[&str]| {
        let out = node.cli(args);
        out.status.success() && !out.stdout.is_empty()
    };
    assert!(
        common::wait_until(Duration::from_secs(20), || found(&[
            "admin", "message", "by-key", "--topic", "V", "order-42", "--max", "1",
        ])),
        "by-key --max 1 found nothing"
    );

    // A broadcast consumer with a writable file: exit 0, the file holds
    // its offset.
    let offsets = dir.path().join("offsets");
    let good = offsets.join("good.json");
    let out = ok(&node.cli(&[
        "consume",
        "--group",
        "bc",
        "--topic",
        "V",
        "--broadcast",
        "--from",
        "first",
        "--offset-file",
        good.to_str().unwrap(),
        "--count",
        "1",
        "--idle-timeout",
        "20",
    ]));
    assert!(out.contains("body=a"), "{out}");
    let stored = std::fs::read_to_string(&good).unwrap();
    assert!(stored.contains("V@standalone@"), "{stored}");

    // The file's directory turns into a regular file mid-run: the final
    // persist fails, which the client does not report; the CLI does.
    let sub = offsets.join("sub");
    let file = sub.join("off.json");
    let mut child = Command::new(bin())
        .args([
            "--log-level",
            "warn",
            "consume",
            "--group",
            "bc2",
            "--topic",
            "V",
        ])
        .args(["--broadcast", "--from", "first", "--count", "2"])
        .args(["--idle-timeout", "60", "--offset-file"])
        .arg(&file)
        .env("SKYLARK_NAMESRV", node.namesrv())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (rx, reader) = common::pipe_lines(child.stdout.take().unwrap());
    let first = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the broadcast consumer printed the first message");
    assert!(first.contains("body=a"), "{first}");
    // Its periodic persist may be writing in `sub` right now: retry.
    assert!(
        common::wait_until(Duration::from_secs(10), || {
            std::fs::remove_dir_all(&sub).is_ok() && std::fs::write(&sub, "x").is_ok()
        }),
        "could not replace {} with a file",
        sub.display()
    );
    ok(&node.cli(&["produce", "--topic", "V", "--body", "b"]));
    let out = child.wait_with_output().unwrap();
    reader.join().unwrap();
    let second: Vec<String> = rx.try_iter().collect();
    assert!(second.iter().any(|l| l.contains("body=b")), "{second:?}");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(
        err.contains("cannot write the local offset file") && err.contains("off.json"),
        "{err}"
    );
    assert!(err.contains("receives its messages again"), "{err}");

    // topic delete's line per broker with --json (printed by the method
    // group delete shares).
    let out = ok(&node.cli(&["admin", "--json", "topic", "delete", "--name", "V"]));
    assert_eq!(
        json_lines(out.as_bytes())[0],
        serde_json::json!({"topic": "V", "broker_name": "standalone", "addr": addr,
            "result": "deleted"}),
        "{out}"
    );
}

/// A broker that refuses every connection (`Busy`: its `max_connections`
/// reached) used to leave `consume --idle-timeout` silent and exit 0 with
/// nothing read, as if the topic were empty. Now it says why on stderr
/// while it waits and exits 1 naming the reason; once the broker takes
/// connections again the same run reads, and a reachable broker with
/// nothing to read still exits 0.
#[test]
fn consume_from_a_broker_refusing_connections_says_why_and_fails() {
    const CAP: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start_env(
        &dir.path().join("data"),
        &["--no-dashboard", "--no-metrics"],
        &[("SKYLARK_MAX_CONNECTIONS", &CAP.to_string())],
    );
    ok(&node.cli(&[
        "admin", "topic", "create", "--name", "Full", "--queues", "1",
    ]));
    ok(&node.cli(&["produce", "--topic", "Full", "--count", "3", "--body", "m"]));
    // Hold more plain connections than the cap, until the broker refuses
    // the clients' own.
    let held: Vec<_> = (0..CAP + 4)
        .map(|_| std::net::TcpStream::connect(node.broker()).expect("connect"))
        .collect();
    let busy = common::wait_until(Duration::from_secs(30), || {
        let o = node.cli(&["admin", "topic", "stats", "--name", "Full"]);
        !o.status.success() && stderr(&o).contains("too many connections")
    });
    assert!(busy, "the broker never refused a connection");

    let run = |group: &str| {
        node.cli(&[
            "consume",
            "--group",
            group,
            "--topic",
            "Full",
            "--count",
            "3",
            "--from",
            "first",
            "--json",
            "--idle-timeout",
            "3",
        ])
    };
    let o = run("g");
    refused(
        &o,
        1,
        &[
            "warning: no broker of topic 'Full' can be reached yet",
            "no broker of topic 'Full' could be reached",
            "too many connections",
            "max_connections",
        ],
    );

    drop(held);
    assert!(
        common::wait_until(Duration::from_secs(30), || node
            .cli(&["admin", "topic", "stats", "--name", "Full"])
            .status
            .success()),
        "the broker never took connections again"
    );
    let o = run("g");
    assert_eq!(json_lines(ok(&o).as_bytes()).len(), 3, "{}", stderr(&o));
    // Reachable, nothing to read: exit 0 as before, with nothing said.
    let o = run("g");
    assert!(ok(&o).is_empty());
    assert!(!stderr(&o).contains("reached"), "{}", stderr(&o));
}
