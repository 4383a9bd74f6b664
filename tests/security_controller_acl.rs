//! ACL on the controller's port (issue 15, docs/security.md "Controller"),
//! with real processes:
//!
//! * `acl_controller_refuses_forged_broker_requests_and_raft_frames` — one
//!   controller with ACL on: heartbeats and in-sync set reports that are
//!   unsigned, signed with a wrong secret, by a non-broker account or
//!   replayed are refused with `AuthFailed` / `NoPermission` and change
//!   nothing (`Status`, the controller's view); so are raft RPCs (a `Vote`
//!   and an `AppendEntries` of a made-up higher term). The same requests
//!   signed by the cluster's broker credential are served.
//! * `acl_controller_without_the_broker_credential_does_not_start`.
//! * `acl_controller_mode_cluster_elects_and_fails_over` — NameServer,
//!   three controllers and two controller-mode brokers, all with ACL on:
//!   the raft group elects a leader over signed RPCs, broker 1 becomes
//!   master, both join the in-sync set, and when broker 1 is killed -9
//!   broker 2 takes over and takes writes.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{bin, free_port, wait_listening, wait_until, KillOnDrop};
use skylark::actors::controller::client::ControllerClient;
use skylark::actors::controller::openraft::raft::{AppendEntriesRequest, VoteRequest};
use skylark::actors::controller::openraft::Vote;
use skylark::actors::controller::proto::{
    AlterSyncStateSet, BrokerHeartbeat, ControllerStatus, Request, Response,
};
use skylark::codec::{Credentials, ErrorCode};

const BROKER_SECRET: &str = "cluster-broker-secret";
const ADMIN_SECRET: &str = "admin-secret";
const APP_SECRET: &str = "app-secret";
const GROUP: &str = "broker-acl";

fn write_acl(dir: &Path) -> String {
    let path = dir.join("acl.toml");
    std::fs::write(
        &path,
        format!(
            r#"
timestamp_window_secs = 30
[[accounts]]
access_key = "broker"
secret_key = "{BROKER_SECRET}"
broker = true
[[accounts]]
access_key = "admin"
secret_key = "{ADMIN_SECRET}"
admin = true
[[accounts]]
access_key = "app"
secret_key = "{APP_SECRET}"
default_topic_perm = "PUB|SUB"
"#
        ),
    )
    .unwrap();
    path.display().to_string()
}

/// `skylark ARGS` with ACL on (`acl_file`) and `creds` as its own
/// credential (none: neither variable is set).
fn spawn(
    args: &[&str],
    acl_file: &str,
    creds: Option<(&str, &str)>,
    env: &[(&str, &str)],
) -> Command {
    let mut c = Command::new(bin());
    c.args(["--log-level", "warn"])
        .args(args)
        .env_remove("SKYLARK_ACCESS_KEY")
        .env_remove("SKYLARK_SECRET_KEY")
        .env("SKYLARK_ACL_ENABLED", "true")
        .env("SKYLARK_ACL_FILE", acl_file)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    if let Some((a, s)) = creds {
        c.env("SKYLARK_ACCESS_KEY", a).env("SKYLARK_SECRET_KEY", s);
    }
    c
}

/// Controllers `1..=n` with ACL on and the broker credential; their
/// processes and addresses (`a;b;c`).
fn spawn_controllers(root: &Path, acl_file: &str, n: usize) -> (Vec<KillOnDrop>, String) {
    let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
    let peers = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}=127.0.0.1:{p}", i + 1))
        .collect::<Vec<_>>()
        .join(";");
    let mut procs = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let id = (i + 1).to_string();
        let port_s = port.to_string();
        let data = root.join(format!("c{id}")).display().to_string();
        let args = [
            "controller",
            "--node-id",
            &id,
            "--port",
            &port_s,
            "--peers",
            &peers,
            "--data-dir",
            &data,
        ];
        let env = [
            ("SKYLARK_CONTROLLER_BROKER_TIMEOUT_MS", "2000"),
            ("SKYLARK_RAFT_HEARTBEAT_INTERVAL_MS", "100"),
            ("SKYLARK_RAFT_ELECTION_TIMEOUT_MIN_MS", "500"),
            ("SKYLARK_RAFT_ELECTION_TIMEOUT_MAX_MS", "1000"),
        ];
        let mut child = spawn(&args, acl_file, Some(("broker", BROKER_SECRET)), &env)
            .spawn()
            .expect("spawn controller");
        wait_listening(&mut child, &[*port]).expect("controller listening");
        procs.push(KillOnDrop(child));
    }
    let addrs = ports
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(";");
    (procs, addrs)
}

fn heartbeat(id: u64, addr: &str) -> Request {
    Request::BrokerHeartbeat(BrokerHeartbeat {
        cluster: "DefaultCluster".into(),
        broker_name: GROUP.into(),
        broker_id: id,
        addr: addr.into(),
        epoch: 0,
        max_offset: 0,
        ha_addr: None,
    })
}

fn assert_denied(r: Response, code: ErrorCode, want: &str, what: &str) {
    match r {
        Response::AccessDenied(e) => {
            assert_eq!(e.code, code, "{what}: {e:?}");
            assert!(e.message.contains(want), "{what}: {e:?} lacks {want:?}");
            for secret in [BROKER_SECRET, ADMIN_SECRET, APP_SECRET, "guess"] {
                assert!(!e.message.contains(secret), "{what}: a secret leaked");
            }
        }
        other => panic!("{what} was not refused: {other:?}"),
    }
}

#[test]
fn acl_controller_refuses_forged_broker_requests_and_raft_frames() {
    let dir = tempfile::tempdir().unwrap();
    let acl = write_acl(dir.path());
    let (_ctl, addr) = spawn_controllers(dir.path(), &acl, 1);
    let rt = common::tokio_rt();
    // Sends requests exactly as given (signed or not).
    let mut raw = ControllerClient::new(&addr, Duration::from_secs(5));
    let broker = Credentials::new("broker", BROKER_SECRET);
    let mut signed = ControllerClient::new(&addr, Duration::from_secs(5))
        .with_credentials(Some(broker.clone().into()));
    let status = || -> ControllerStatus {
        let mut c = ControllerClient::new(&addr, Duration::from_secs(5));
        match rt.block_on(c.ask(&addr, &Request::Status)) {
            Ok(Response::Status(s)) => s,
            other => panic!("status: {other:?}"),
        }
    };
    // The legitimate brokers 1 (the master) and 2 register.
    assert!(
        wait_until(Duration::from_secs(30), || {
            matches!(
                rt.block_on(signed.leader_request(&heartbeat(1, "127.0.0.1:11"))),
                Ok(Response::Group(g)) if g.master_id == Some(1)
            )
        }),
        "broker 1 never became master"
    );
    match rt.block_on(signed.leader_request(&heartbeat(2, "127.0.0.1:12"))) {
        Ok(Response::Group(g)) => assert_eq!(g.replicas.len(), 2, "{g:?}"),
        other => panic!("signed heartbeat refused: {other:?}"),
    }
    let before = status();
    let g0 = before.groups[0].clone();
    assert_eq!(g0.sync_state_set, BTreeSet::from([1]));

    let wrong = Credentials::new("broker", "guess");
    let app = Credentials::new("app", APP_SECRET);
    let admin = Credentials::new("admin", ADMIN_SECRET);
    let alter = || {
        Request::AlterSyncStateSet(AlterSyncStateSet {
            broker_name: GROUP.into(),
            master_id: 1,
            master_epoch: g0.master_epoch,
            sync_state_set_epoch: g0.sync_state_set_epoch,
            new_set: BTreeSet::from([1, 2]),
        })
    };
    // The attacker takes over broker 1's address, adds a fake replica,
    // alters the in-sync set: unsigned, with a guessed secret, or with
    // accounts that are not the cluster's broker credential.
    let forged = [
        heartbeat(1, "10.6.6.6:1"),
        heartbeat(9, "10.6.6.6:9"),
        alter(),
    ];
    let mut ask = |r: &Request| rt.block_on(raw.leader_request(r)).expect("answered");
    for req in &forged {
        let what = format!("{req:?}");
        assert_denied(ask(req), ErrorCode::AuthFailed, "not signed", &what);
        let r = ask(&req.signed(&wrong).unwrap());
        assert_denied(r, ErrorCode::AuthFailed, "signature mismatch", &what);
        for creds in [&app, &admin] {
            let r = ask(&req.signed(creds).unwrap());
            assert_denied(r, ErrorCode::NoPermission, "broker credential", &what);
        }
    }
    // A captured signed heartbeat sent again is a replay.
    let once = heartbeat(2, "127.0.0.1:12").signed(&broker).unwrap();
    assert!(matches!(ask(&once), Response::Group(_)));
    assert_denied(
        ask(&once),
        ErrorCode::AuthFailed,
        "replayed",
        "replayed heartbeat",
    );

    // Forged raft RPCs of a made-up controller with a higher term.
    let term = before.term + 100;
    let vote = Request::Vote(VoteRequest::new(Vote::new(term, 7), None));
    let append = Request::AppendEntries(AppendEntriesRequest {
        vote: Vote::new_committed(term, 7),
        prev_log_id: None,
        entries: vec![],
        leader_commit: None,
    });
    for req in [&vote, &append] {
        let what = format!("{req:?}");
        assert_denied(ask(req), ErrorCode::AuthFailed, "not signed", &what);
        let r = ask(&req.signed(&wrong).unwrap());
        assert_denied(r, ErrorCode::AuthFailed, "signature mismatch", &what);
        let r = ask(&req.signed(&admin).unwrap());
        assert_denied(r, ErrorCode::NoPermission, "broker credential", &what);
    }

    // Nothing changed: the same group, term and leader.
    let after = status();
    assert_eq!(
        after.groups, before.groups,
        "a forged request changed the state"
    );
    assert_eq!(
        (after.term, after.leader_id),
        (before.term, before.leader_id)
    );
    // The same report from the real master is applied.
    match rt.block_on(signed.leader_request(&alter())) {
        Ok(Response::Group(g)) => assert_eq!(g.sync_state_set, BTreeSet::from([1, 2])),
        other => panic!("the master's signed report refused: {other:?}"),
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn acl_controller_without_the_broker_credential_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let acl = write_acl(dir.path());
    let port = free_port().to_string();
    let peers = format!("1=127.0.0.1:{port}");
    let data = dir.path().join("c1").display().to_string();
    let args = [
        "controller",
        "--node-id",
        "1",
        "--port",
        &port,
        "--peers",
        &peers,
        "--data-dir",
        &data,
    ];
    let out = |creds| {
        spawn(&args, &acl, creds, &[])
            .stderr(Stdio::piped())
            .output()
            .expect("run controller")
    };
    for (creds, want) in [
        (None, "broker credential"),
        (
            Some(("app", APP_SECRET)),
            "is not the cluster's broker credential",
        ),
        (Some(("broker", "guess")), "does not match"),
    ] {
        let o = out(creds);
        assert!(!o.status.success(), "started with {creds:?}");
        let err = stderr(&o);
        assert!(err.contains(want), "{creds:?}: {err}");
        assert!(!err.contains("guess") && !err.contains(APP_SECRET), "{err}");
    }
}

/// The group as the controller leader has applied it.
fn group(controllers: &str) -> Option<serde_json::Value> {
    common::controller_group(controllers, GROUP)
}

fn master_of(controllers: &str) -> Option<u64> {
    common::controller_master(controllers, GROUP)
}

fn in_sync(controllers: &str) -> Vec<u64> {
    common::controller_in_sync(controllers, GROUP)
}

#[test]
fn acl_controller_mode_cluster_elects_and_fails_over() {
    let dir = tempfile::tempdir().unwrap();
    let acl = write_acl(dir.path());
    let ns_port = free_port();
    let mut ns = spawn(
        &["namesrv", "--port", &ns_port.to_string()],
        &acl,
        None,
        &[],
    )
    .spawn()
    .expect("spawn namesrv");
    wait_listening(&mut ns, &[ns_port]).expect("namesrv up");
    let _ns = KillOnDrop(ns);
    let namesrv = format!("127.0.0.1:{ns_port}");
    let (_ctls, controllers) = spawn_controllers(dir.path(), &acl, 3);
    let broker = |id: u64| {
        let port = free_port();
        let data = dir.path().join(format!("b{id}")).display().to_string();
        let (port_s, id_s) = (port.to_string(), id.to_string());
        let env = [
            ("SKYLARK_NAMESRV", namesrv.as_str()),
            ("SKYLARK_BROKER_NAME", GROUP),
            ("SKYLARK_BROKER_ID", id_s.as_str()),
            ("SKYLARK_ENABLE_CONTROLLER_MODE", "true"),
            ("SKYLARK_CONTROLLER_ADDR", controllers.as_str()),
            ("SKYLARK_CONTROLLER_HEARTBEAT_INTERVAL_MS", "200"),
            ("SKYLARK_REGISTER_INTERVAL_SECS", "1"),
            ("SKYLARK_METADATA_SYNC_INTERVAL_SECS", "1"),
            ("SKYLARK_STORE__SEGMENT_SIZE", "4194304"),
        ];
        let args = ["broker", "--data-dir", &data, "--port", &port_s];
        let mut child = spawn(&args, &acl, Some(("broker", BROKER_SECRET)), &env)
            // A busy shared disk must not refuse these writes.
            .envs(common::ROOMY_DISK)
            .spawn()
            .expect("spawn broker");
        wait_listening(&mut child, &[port]).expect("broker listening");
        KillOnDrop(child)
    };
    let mut b1 = broker(1);
    assert!(
        wait_until(Duration::from_secs(30), || master_of(&controllers)
            == Some(1)),
        "broker 1 never became master (signed heartbeats): {:?}",
        group(&controllers)
    );
    let _b2 = broker(2);
    let cli = |args: &[&str]| {
        Command::new(bin())
            .args(["--log-level", "warn"])
            .args(args)
            .env("SKYLARK_NAMESRV", &namesrv)
            .env("SKYLARK_ACCESS_KEY", "admin")
            .env("SKYLARK_SECRET_KEY", ADMIN_SECRET)
            .stdin(Stdio::null())
            .output()
            .expect("run skylark")
    };
    let topic = "AclFailover";
    assert!(
        wait_until(Duration::from_secs(20), || cli(&[
            "admin", "topic", "create", "--name", topic, "--queues", "2"
        ])
        .status
        .success()),
        "topic never created"
    );
    assert!(
        wait_until(Duration::from_secs(30), || in_sync(&controllers)
            == vec![1, 2]),
        "broker 2 never joined the in-sync set (signed reports): {:?}",
        group(&controllers)
    );
    let send = || cli(&["produce", "--topic", topic, "--count", "10"]);
    let o = send();
    assert!(
        o.status.success(),
        "the master takes no writes: {}",
        stderr(&o)
    );
    let _ = b1.0.kill();
    let _ = b1.0.wait();
    assert!(
        wait_until(Duration::from_secs(20), || master_of(&controllers)
            == Some(2)),
        "broker 2 never took over: {:?}",
        group(&controllers)
    );
    assert!(
        wait_until(Duration::from_secs(20), || send().status.success()),
        "the new master takes no writes"
    );
}
