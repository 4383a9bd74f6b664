//! `skylark standalone` takes its broker settings from `-c FILE` and the
//! `SKYLARK_*` environment where no flag gives them (a flag wins over
//! both), and a broker listening on every address advertises an address
//! of this machine, never `0.0.0.0`. Real processes on pool ports, each in
//! a temporary working directory, so a `./data/standalone` it should not
//! have used shows.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// A standalone node started in `cwd` with `args` and `env`: no metrics,
/// dashboard or remoting port; its NameServer on a fresh port.
struct Node {
    _child: KillOnDrop,
    namesrv: String,
}

impl Node {
    fn start(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Node {
        let namesrv_port = free_port();
        let child = Command::new(bin())
            .current_dir(cwd)
            .args(["--log-level", "warn", "standalone"])
            .args(["--namesrv-port", &namesrv_port.to_string()])
            .args(["--no-metrics", "--no-dashboard", "--no-remoting"])
            .args(args)
            // A copy of conf/broker.toml asks for 1 GiB segments.
            .env("SKYLARK_STORE__SEGMENT_SIZE", "67108864")
            .envs(ROOMY_DISK)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn skylark standalone");
        let mut child = KillOnDrop(child);
        if let Err(e) = wait_listening(&mut child.0, &[namesrv_port]) {
            panic!("standalone did not start: {e}");
        }
        Node {
            _child: child,
            namesrv: format!("127.0.0.1:{namesrv_port}"),
        }
    }

    /// The one broker registered with this node's NameServer (its
    /// `cluster list` member), once it has registered.
    fn registered(&self) -> serde_json::Value {
        let mut member = None;
        let ok = wait_until(Duration::from_secs(30), || {
            let out = cli(&self.namesrv, &["admin", "--json", "cluster", "list"]);
            member = json_lines(&out.stdout)
                .first()
                .and_then(|v| v["members"].get(0).cloned());
            member.is_some()
        });
        assert!(ok, "no broker registered with {}", self.namesrv);
        member.unwrap_or_default()
    }
}

/// conf/broker.toml with `[store] data_dir` and `port` replaced.
fn broker_file(dir: &Path, data_dir: &Path, port: u16) -> std::path::PathBuf {
    let conf = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/conf/broker.toml"))
        .expect("conf/broker.toml");
    let text: String = conf
        .lines()
        .map(|l| {
            if l.starts_with("data_dir = ") {
                format!("data_dir = {:?}", data_dir.display().to_string())
            } else if l.starts_with("port = ") {
                format!("port = {port}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(text.contains(&format!("\nport = {port}\n")), "{text}");
    let path = dir.join("b.toml");
    std::fs::write(&path, text).expect("write b.toml");
    path
}

fn has_store(dir: &Path) -> bool {
    dir.join("commitlog").is_dir()
}

#[test]
fn the_files_data_dir_port_and_name_are_used_when_no_flag_gives_them() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, port) = (tmp.path().join("bx"), free_port());
    let file = broker_file(tmp.path(), &data, port);
    let node = Node::start(tmp.path(), &["-c", file.to_str().unwrap()], &[]);
    let m = node.registered();
    assert_eq!(m["addr"], format!("127.0.0.1:{port}"), "{m}");
    assert_eq!(m["broker_name"], "broker-a", "the file's broker_name: {m}");
    assert!(has_store(&data), "the file's [store] data_dir is used");
    assert!(
        !tmp.path().join("data").exists(),
        "./data/standalone unused"
    );
}

#[test]
fn the_environments_data_dir_and_port_are_used_when_no_flag_gives_them() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, port) = (tmp.path().join("envdir"), free_port());
    let node = Node::start(
        tmp.path(),
        &[],
        &[
            ("SKYLARK_STORE__DATA_DIR", data.to_str().unwrap()),
            ("SKYLARK_PORT", &port.to_string()),
        ],
    );
    let m = node.registered();
    assert_eq!(m["addr"], format!("127.0.0.1:{port}"), "{m}");
    assert_eq!(m["broker_name"], "standalone", "standalone's default: {m}");
    assert!(has_store(&data), "SKYLARK_STORE__DATA_DIR is used");
    assert!(
        !tmp.path().join("data").exists(),
        "./data/standalone unused"
    );
}

/// file → environment → flags, later wins: the port of the flag, the data
/// directory of the environment, the broker name of the file.
#[test]
fn a_flag_wins_over_the_environment_which_wins_over_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (in_file, in_env) = (tmp.path().join("file"), tmp.path().join("env"));
    let (file_port, env_port, flag_port) = (free_port(), free_port(), free_port());
    let file = broker_file(tmp.path(), &in_file, file_port);
    let node = Node::start(
        tmp.path(),
        &[
            "-c",
            file.to_str().unwrap(),
            "--broker-port",
            &flag_port.to_string(),
        ],
        &[
            ("SKYLARK_STORE__DATA_DIR", in_env.to_str().unwrap()),
            ("SKYLARK_PORT", &env_port.to_string()),
        ],
    );
    let m = node.registered();
    assert_eq!(m["addr"], format!("127.0.0.1:{flag_port}"), "{m}");
    assert_eq!(m["broker_name"], "broker-a", "the file's broker_name: {m}");
    assert!(
        has_store(&in_env),
        "SKYLARK_STORE__DATA_DIR over the file's"
    );
    assert!(!in_file.exists(), "the file's data_dir unused");
    assert!(
        !tmp.path().join("data").exists(),
        "./data/standalone unused"
    );

    // --data-dir over both.
    drop(node);
    let in_flag = tmp.path().join("flag");
    let node = Node::start(
        tmp.path(),
        &[
            "-c",
            file.to_str().unwrap(),
            "--data-dir",
            in_flag.to_str().unwrap(),
        ],
        &[("SKYLARK_STORE__DATA_DIR", in_env.to_str().unwrap())],
    );
    let m = node.registered();
    assert_eq!(m["addr"], format!("127.0.0.1:{file_port}"), "{m}");
    assert!(has_store(&in_flag), "--data-dir is used");
    assert!(!in_file.exists(), "the file's data_dir unused");
}

/// `--host 0.0.0.0` without `advertised_addr`: the registration (and so
/// the routes and message ids) names an address of this machine that a
/// client reaches, not 0.0.0.0.
#[test]
fn a_broker_on_every_address_registers_an_address_of_this_machine() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let node = Node::start(
        tmp.path(),
        &[
            "--host",
            "0.0.0.0",
            "--data-dir",
            tmp.path().join("d").to_str().unwrap(),
            "--broker-port",
            &port.to_string(),
        ],
        &[],
    );
    let m = node.registered();
    let addr = m["addr"].as_str().unwrap_or_default().to_string();
    let ha = m["ha_addr"].as_str().unwrap_or_default();
    assert!(addr.ends_with(&format!(":{port}")), "{m}");
    for a in [addr.as_str(), ha] {
        let ip: std::net::IpAddr = a.rsplit_once(':').unwrap().0.parse().expect(a);
        assert!(!ip.is_unspecified(), "registered {a}: {m}");
    }
    // A client following the route reaches the broker.
    let out = cli(
        &node.namesrv,
        &["produce", "--topic", "T", "--count", "1", "--body", "x"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
