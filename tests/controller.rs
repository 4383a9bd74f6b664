//! The failover controller group (issue 13, docs/controller.md): three real
//! `skylark controller` processes elect a raft leader, replicate writes,
//! survive the leader's kill -9, and a restarted member catches up from its
//! disk. The brokers' side is played by a client speaking the controller
//! protocol (heartbeats, in-sync set reports), so the election rules are
//! tested against the real controllers.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{bin, free_port, wait_listening, wait_until, KillOnDrop};
use skylark::actors::controller::client::ControllerClient;
use skylark::actors::controller::proto::{AlterSyncStateSet, BrokerHeartbeat, Request, Response};
use skylark::actors::controller::types::GroupInfo;

struct Controller {
    id: u64,
    port: u16,
    dir: PathBuf,
    peers: String,
    timeout_ms: u64,
    child: Option<KillOnDrop>,
}

impl Controller {
    fn spawn(&mut self) {
        let mut child = Command::new(bin())
            .args(["--log-level", "warn", "controller", "--node-id"])
            .arg(self.id.to_string())
            .args(["--port", &self.port.to_string(), "--peers", &self.peers])
            .arg("--data-dir")
            .arg(&self.dir)
            .env(
                "SKYLARK_CONTROLLER_BROKER_TIMEOUT_MS",
                self.timeout_ms.to_string(),
            )
            // As the README's quickstart exports it: the CLI's own variable
            // is passed over (it was an unknown field of the controller).
            .env("SKYLARK_NAMESRV", "127.0.0.1:9876")
            .env("SKYLARK_RAFT_HEARTBEAT_INTERVAL_MS", "100")
            .env("SKYLARK_RAFT_ELECTION_TIMEOUT_MIN_MS", "500")
            .env("SKYLARK_RAFT_ELECTION_TIMEOUT_MAX_MS", "1000")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn skylark controller");
        wait_listening(&mut child, &[self.port]).expect("controller listening");
        self.child = Some(KillOnDrop(child));
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn kill9(&mut self) {
        self.child = None;
    }
}

fn group(root: &Path, timeout_ms: u64) -> Vec<Controller> {
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let peers = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}=127.0.0.1:{p}", i + 1))
        .collect::<Vec<_>>()
        .join(";");
    let mut cs: Vec<Controller> = ports
        .iter()
        .enumerate()
        .map(|(i, &port)| Controller {
            id: i as u64 + 1,
            port,
            dir: root.join(format!("c{}", i + 1)),
            peers: peers.clone(),
            timeout_ms,
            child: None,
        })
        .collect();
    for c in &mut cs {
        c.spawn();
    }
    cs
}

fn all_addrs(cs: &[Controller]) -> String {
    cs.iter()
        .map(Controller::addr)
        .collect::<Vec<_>>()
        .join(";")
}

/// `skylark admin controller status --json` against one controller.
fn status(addr: &str) -> Option<serde_json::Value> {
    let out = Command::new(bin())
        .args(["--log-level", "warn", "admin", "--namesrv", "127.0.0.1:1"])
        .args(["controller", "status", "--json", "--controller", addr])
        .stdin(Stdio::null())
        .output()
        .expect("run skylark admin");
    if !out.status.success() {
        return None;
    }
    common::json_lines(&out.stdout)
        .into_iter()
        .next()
        .filter(|v| v.get("error").is_none())
}

/// The leader id every live controller agrees on.
fn agreed_leader(cs: &[Controller]) -> Option<u64> {
    let mut leaders = BTreeSet::new();
    for c in cs.iter().filter(|c| c.child.is_some()) {
        leaders.insert(status(&c.addr())?.get("leader_id")?.as_u64()?);
    }
    (leaders.len() == 1).then(|| *leaders.iter().next().unwrap_or(&0))
}

fn wait_leader(cs: &[Controller], not: Option<u64>) -> u64 {
    let mut leader = None;
    assert!(
        wait_until(Duration::from_secs(30), || {
            leader = agreed_leader(cs).filter(|l| Some(*l) != not);
            leader.is_some()
        }),
        "no agreed controller leader (other than {not:?})"
    );
    leader.unwrap_or_default()
}

/// The group `name` as controller `addr` has applied it.
fn group_at(addr: &str, name: &str) -> Option<serde_json::Value> {
    status(addr)?
        .get("groups")?
        .as_array()?
        .iter()
        .find(|g| g["broker_name"] == name)
        .cloned()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn heartbeat(
    rt: &tokio::runtime::Runtime,
    c: &mut ControllerClient,
    name: &str,
    id: u64,
) -> Response {
    heartbeat_at(rt, c, name, id, &format!("127.0.0.1:{}", 20000 + id))
}

/// [`heartbeat`] from broker `id` at `addr`.
fn heartbeat_at(
    rt: &tokio::runtime::Runtime,
    c: &mut ControllerClient,
    name: &str,
    id: u64,
    addr: &str,
) -> Response {
    let hb = BrokerHeartbeat {
        cluster: "DefaultCluster".into(),
        broker_name: name.into(),
        broker_id: id,
        addr: addr.into(),
        epoch: 0,
        max_offset: 100 * id,
        ha_addr: None,
    };
    rt.block_on(c.leader_request(&Request::BrokerHeartbeat(hb)))
        .expect("heartbeat answered")
}

fn expect_group(r: Response) -> GroupInfo {
    match r {
        Response::Group(g) => g,
        other => panic!("expected a group, got {other:?}"),
    }
}

#[test]
fn controllers_elect_replicate_survive_leader_kill_and_restart_from_disk() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut cs = group(tmp.path(), 10_000);
    let first = wait_leader(&cs, None);
    let rt = rt();
    let mut client = ControllerClient::new(&all_addrs(&cs), Duration::from_secs(3));

    // A write (a broker registering) replicates to every controller.
    let g = expect_group(heartbeat(&rt, &mut client, "broker-a", 0));
    assert_eq!((g.master_id, g.master_epoch), (Some(0), 1));
    for c in &cs {
        assert!(
            wait_until(Duration::from_secs(10), || group_at(&c.addr(), "broker-a")
                .is_some_and(|g| g["master_id"] == 0)),
            "controller {} never applied the registration",
            c.id
        );
    }

    // The leader dies: another takes over and takes writes.
    let killed = cs
        .iter()
        .position(|c| c.id == first)
        .expect("leader listed");
    cs[killed].kill9();
    let second = wait_leader(&cs, Some(first));
    assert_ne!(second, first);
    let g = expect_group(heartbeat(&rt, &mut client, "broker-a", 1));
    assert_eq!(g.replicas.len(), 2);

    // The killed one restarts and catches up (its own disk plus the leader).
    cs[killed].spawn();
    let addr = cs[killed].addr();
    assert!(
        wait_until(Duration::from_secs(20), || group_at(&addr, "broker-a")
            .is_some_and(|g| g["replicas"]
                .as_object()
                .is_some_and(|r| r.len() == 2))),
        "the restarted controller never caught up"
    );

    // Everything from disk alone: kill -9 all three, restart all.
    for c in &mut cs {
        c.kill9();
    }
    for c in &mut cs {
        c.spawn();
    }
    wait_leader(&cs, None);
    for c in &cs {
        let g = group_at(&c.addr(), "broker-a").expect("state survived a restart");
        assert_eq!(g["replicas"].as_object().map(|r| r.len()), Some(2));
        assert_eq!(g["master_id"], 0);
    }
}

#[test]
fn controller_elects_an_in_sync_slave_when_the_master_goes_silent() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut cs = group(tmp.path(), 2_000);
    let first_leader = wait_leader(&cs, None);
    let rt = rt();
    let mut client = ControllerClient::new(&all_addrs(&cs), Duration::from_secs(3));
    let name = "broker-b";
    let g = expect_group(heartbeat(&rt, &mut client, name, 0));
    assert_eq!(g.master_id, Some(0));
    heartbeat(&rt, &mut client, name, 1);
    let g = expect_group(heartbeat(&rt, &mut client, name, 2));
    assert_eq!(g.sync_state_set, BTreeSet::from([0]));

    // The master reports slave 1 in sync (slave 2 is not).
    let alter = AlterSyncStateSet {
        broker_name: name.into(),
        master_id: 0,
        master_epoch: g.master_epoch,
        sync_state_set_epoch: g.sync_state_set_epoch,
        new_set: BTreeSet::from([0, 1]),
    };
    let g = expect_group(
        rt.block_on(client.leader_request(&Request::AlterSyncStateSet(alter.clone())))
            .expect("alter answered"),
    );
    assert_eq!(g.sync_state_set, BTreeSet::from([0, 1]));
    // The same report again carries a stale set epoch: refused.
    let stale = rt
        .block_on(client.leader_request(&Request::AlterSyncStateSet(alter)))
        .expect("alter answered");
    assert!(matches!(stale, Response::Refused(_)), "{stale:?}");

    // Forcing the out-of-sync slave is refused without unclean elections.
    let out = Command::new(bin())
        .args(["--log-level", "warn", "admin", "--namesrv", "127.0.0.1:1"])
        .args(["controller", "elect", "--controller", &all_addrs(&cs)])
        .args(["--broker-name", name, "--broker-id", "2"])
        .stdin(Stdio::null())
        .output()
        .expect("run skylark admin");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("in-sync"));

    // The master goes silent; both slaves keep heartbeating. Slave 2 is more
    // advanced (max_offset) but not in sync: slave 1 must win.
    let mut elected = None;
    let ok = wait_until(Duration::from_secs(20), || {
        heartbeat(&rt, &mut client, name, 2);
        let g = expect_group(heartbeat(&rt, &mut client, name, 1));
        elected = Some(g.clone());
        g.master_id != Some(0)
    });
    let g = elected.clone().expect("heartbeats answered");
    assert!(ok, "no election after the master went silent: {g:?}");
    assert_eq!(g.master_id, Some(1));
    assert_eq!(g.master_epoch, 2);
    assert_eq!(g.sync_state_set, BTreeSet::from([1]));

    // The controller leader dies; the next one still handles a broker
    // failure: master 1 goes silent, only out-of-sync slave 2 is alive, so
    // the group is left without a master (no unclean election)...
    let i = cs
        .iter()
        .position(|c| c.id == first_leader)
        .expect("listed");
    cs[i].kill9();
    wait_leader(&cs, Some(first_leader));
    let ok = wait_until(Duration::from_secs(20), || {
        let g = expect_group(heartbeat(&rt, &mut client, name, 2));
        elected = Some(g.clone());
        g.master_id.is_none()
    });
    let g = elected.clone().expect("heartbeats answered");
    assert!(ok, "master 1 was never replaced: {g:?}");
    assert_eq!(g.master_epoch, 3);
    // ... until the in-sync broker comes back and takes it again.
    let g = expect_group(heartbeat(&rt, &mut client, name, 1));
    assert_eq!((g.master_id, g.master_epoch), (Some(1), 4));
}

/// Writes one length-prefixed frame to a controller.
fn write_frame(s: &mut std::net::TcpStream, body: &[u8]) {
    use std::io::Write;
    let len = u32::try_from(body.len()).expect("frame length");
    s.write_all(&len.to_be_bytes()).expect("write");
    s.write_all(body).expect("write");
}

/// Reads one answer from a controller.
fn read_frame(s: &mut std::net::TcpStream) -> Response {
    use std::io::Read;
    let mut len = [0u8; 4];
    s.read_exact(&mut len).expect("answer length");
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).expect("answer body");
    rmp_serde::from_slice(&body).expect("answer decodes")
}

/// Asks for a `Status` on `s` and checks node 1 answers: the connection serves.
fn expect_status_of_node_1(s: &mut std::net::TcpStream) {
    write_frame(
        s,
        &rmp_serde::to_vec_named(&Request::Status).expect("encode"),
    );
    match read_frame(s) {
        Response::Status(st) => assert_eq!(st.node_id, 1),
        other => panic!("expected a status, got {other:?}"),
    }
}

#[test]
fn controller_answers_a_malformed_frame_with_an_error_and_keeps_the_connection() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cs = group(tmp.path(), 10_000);
    let mut s = std::net::TcpStream::connect(cs[0].addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write_frame(&mut s, &[0xc1u8, 0xff, 0x00, 0x13]);
    assert!(matches!(read_frame(&mut s), Response::Error(_)));
    expect_status_of_node_1(&mut s);
}

#[test]
fn controller_conf_files_form_one_group_on_ports_no_other_conf_uses() {
    use skylark::actors::config::{BrokerConfig, NameServerConfig};
    use skylark::actors::controller::ControllerConfig;
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
    let mut taken = BTreeSet::new();
    for entry in std::fs::read_dir(&conf).expect("conf dir") {
        let path = entry.expect("conf entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("namesrv") {
            let c: NameServerConfig = skylark::config::load(Some(&path), &[]).expect(name);
            taken.insert(c.port);
        } else if name.starts_with("broker") {
            let c: BrokerConfig = skylark::config::load(Some(&path), &[]).expect(name);
            taken.insert(c.port);
            taken.insert(c.ha_bind_port());
        }
    }
    let mut peers = BTreeSet::new();
    for id in 1..=3u64 {
        let file = conf.join(format!("controller-{id}.toml"));
        let c: ControllerConfig = skylark::config::load(Some(&file), &[]).expect("loads");
        assert_eq!(c.node_id, id);
        let map = c.peer_map().expect("valid peers");
        assert_eq!(map.len(), 3);
        assert_eq!(map[&id], format!("{}:{}", c.listen_host, c.port));
        assert!(!taken.contains(&c.port), "port {} clashes", c.port);
        peers.insert(c.peers.clone());
    }
    assert_eq!(peers.len(), 1, "every member lists the same group");
}

/// A second controller on a data directory in use is refused before it
/// opens the raft files: a stray `skylark controller` started with the
/// default data directory from a cluster's working directory took the
/// running node 1's log, stood for election as node 1, won, and made the
/// group elect away a healthy master (operator walkthrough).
#[test]
fn a_second_controller_on_a_data_directory_in_use_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let cs = group(root.path(), 3000);
    wait_leader(&cs, None);
    // Node 1's own address (another is refused before the lock is tried):
    // the data directory is locked before the port is bound.
    // Before the lock it ran (and campaigned) instead of exiting.
    let port = cs[0].port.to_string();
    let (code, err) = refused_controller(
        &["--node-id", "1", "--port", &port, "--peers", &cs[0].peers],
        &cs[0].dir,
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("is in use by another process (pid "), "{err}");
    // The group kept its leader and its members.
    assert!(agreed_leader(&cs).is_some(), "the group lost its leader");
}

/// Runs a controller that must refuse to start; its exit code and stderr.
fn refused_controller(args: &[&str], data_dir: &Path) -> (Option<i32>, String) {
    refused(
        Command::new(bin())
            .args(["--log-level", "warn", "controller"])
            .args(args)
            .arg("--data-dir")
            .arg(data_dir),
    )
}

/// Runs a server that must refuse to start (within 20 s); its exit code
/// and stderr.
fn refused(cmd: &mut Command) -> (Option<i32>, String) {
    let mut c = KillOnDrop(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let exited = wait_until(Duration::from_secs(20), || {
        matches!(c.0.try_wait(), Ok(Some(_)))
    });
    assert!(exited, "{cmd:?} kept running");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut c.0.stderr.take().unwrap(), &mut err).unwrap();
    (c.0.wait().unwrap().code(), err)
}

/// A controller whose listen address is not the one `peers` lists for its
/// `node_id` is refused before it binds: started with conf/controller-2.toml
/// and `--node-id 1`, or with a copy of controller-1.toml whose port was
/// changed, it took part in the group's elections as node 1 from node 2's
/// (or a new) address (operator walkthrough).
#[test]
fn a_controller_not_at_its_node_ids_address_in_peers_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let conf2 = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/controller-2.toml");
    let (code, err) = refused_controller(&["-c", conf2, "--node-id", "1"], &root.path().join("c"));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("node_id 1 is at 127.0.0.1:9881 in peers")
            && err.contains("listens on 127.0.0.1:9882 (peers lists it for node 2)"),
        "{err}"
    );
    // Against a running group: node 1's peers, another port.
    let cs = group(root.path(), 3000);
    wait_leader(&cs, None);
    let stray_port = free_port();
    let (code, err) = refused_controller(
        &[
            "--node-id",
            "1",
            "--port",
            &stray_port.to_string(),
            "--peers",
            &cs[0].peers,
        ],
        &root.path().join("stray"),
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("node_id 1 is at {} in peers", cs[0].addr()))
            && err.contains(&format!("listens on 127.0.0.1:{stray_port}:")),
        "{err}"
    );
    assert!(agreed_leader(&cs).is_some(), "the group lost its leader");
}

/// A frame of blank raft entries costs ~13 bytes each on the wire and ~160
/// decoded: without the codec's decode budget one 12 MiB frame, from anyone
/// who can connect (ACL is checked after decoding), took ~200 MB of the
/// controller's memory. Refused before it is built; the connection serves on.
#[test]
fn controller_refuses_a_frame_that_would_decode_into_far_more_memory() {
    use skylark::actors::controller::openraft::{
        raft::AppendEntriesRequest, CommittedLeaderId, Entry, EntryPayload, LogId, Vote,
    };
    use skylark::actors::controller::types::TypeConfig;
    let tmp = tempfile::tempdir().expect("tempdir");
    let cs = group(tmp.path(), 10_000);
    let entry = Entry::<TypeConfig> {
        log_id: LogId::new(CommittedLeaderId::new(0, 0), 0),
        payload: EntryPayload::Blank,
    };
    let one = rmp_serde::to_vec(&Request::AppendEntries(AppendEntriesRequest {
        vote: Vote::new(0, 0),
        prev_log_id: None,
        entries: vec![entry.clone()],
        leader_commit: None,
    }))
    .expect("encode");
    let e = rmp_serde::to_vec(&entry).expect("encode entry");
    // The one-entry array (0x91, then the entry) becomes one of `n`.
    let mut one_entry = vec![0x91u8];
    one_entry.extend_from_slice(&e);
    let at = one
        .windows(one_entry.len())
        .position(|w| w == one_entry.as_slice())
        .expect("the entries array in the encoding");
    let n: u32 = 12 * 1024 * 1024 / u32::try_from(e.len()).expect("entry size");
    let mut frame = one[..at].to_vec();
    frame.push(0xdd);
    frame.extend_from_slice(&n.to_be_bytes());
    for _ in 0..n {
        frame.extend_from_slice(&e);
    }
    frame.extend_from_slice(&one[at + one_entry.len()..]);

    let mut s = std::net::TcpStream::connect(cs[0].addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write_frame(&mut s, &frame);
    match read_frame(&mut s) {
        Response::Error(e) => assert!(e.contains("would exceed"), "{e}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    expect_status_of_node_1(&mut s);
}

/// A broker id alive at one address is refused to a heartbeat from
/// another (a copy of a broker's configuration with another port): the
/// walkthrough's copy took over replica 1's address, and both brokers with
/// id 1 became master of one epoch (143 acknowledged sends lost). The id
/// moves once its holder is dead past the broker timeout (the same broker
/// restarted on a new port). `status` marks a dead replica `alive: false`.
#[test]
fn a_live_broker_id_is_refused_to_another_address_until_it_is_dead() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cs = group(tmp.path(), 2_000);
    wait_leader(&cs, None);
    let rt = rt();
    let mut client = ControllerClient::new(&all_addrs(&cs), Duration::from_secs(3));
    let (name, a, b) = ("broker-dup", "127.0.0.1:21001", "127.0.0.1:22001");
    let g = expect_group(heartbeat_at(&rt, &mut client, name, 1, a));
    assert_eq!(g.master_id, Some(1));
    expect_group(heartbeat(&rt, &mut client, name, 2));
    match heartbeat_at(&rt, &mut client, name, 1, b) {
        Response::IdInUse {
            broker_id, holder, ..
        } => assert_eq!((broker_id, holder.as_str()), (1, a)),
        other => panic!("expected IdInUse, got {other:?}"),
    }
    let leader = all_addrs(&cs);
    let replica = |id: &str| {
        let g = common::controller_group(&leader, name)?;
        Some((g["replicas"][id].clone(), g["alive"][id].clone()))
    };
    assert_eq!(replica("1"), Some((a.into(), true.into())));
    // Broker 2 goes silent: still listed, marked dead.
    let mut seen = None;
    assert!(
        wait_until(Duration::from_secs(20), || {
            expect_group(heartbeat_at(&rt, &mut client, name, 1, a));
            seen = replica("2");
            seen.as_ref().is_some_and(|(_, alive)| alive == false)
        }),
        "replica 2 still alive: {seen:?}"
    );
    assert_eq!(seen.map(|r| r.0), Some("127.0.0.1:20002".into()));
    // Broker 1 at `a` goes silent; the id moves to `b` once it is dead,
    // and then `a` is the one refused.
    let mut last = None;
    assert!(
        wait_until(Duration::from_secs(20), || {
            let r = heartbeat_at(&rt, &mut client, name, 1, b);
            let moved = matches!(&r, Response::Group(g) if g.replicas[&1] == b);
            last = Some(r);
            moved
        }),
        "the id never moved to {b}: {last:?}"
    );
    assert!(matches!(
        heartbeat_at(&rt, &mut client, name, 1, a),
        Response::IdInUse { .. }
    ));
}

/// A controller-mode broker (`skylark broker`, broker-dup group) with the
/// controllers at `controllers` and a NameServer at `namesrv`.
fn controller_mode_broker(
    id: u64,
    port: u16,
    dir: &Path,
    namesrv: &str,
    controllers: &str,
) -> Command {
    let mut c = Command::new(bin());
    c.args(["--log-level", "warn", "broker", "--data-dir"])
        .arg(dir)
        .args(["--port", &port.to_string()])
        .envs(common::ROOMY_DISK)
        .env("SKYLARK_NAMESRV", namesrv)
        .env("SKYLARK_BROKER_NAME", "broker-dup")
        .env("SKYLARK_BROKER_ID", id.to_string())
        .env("SKYLARK_HA_PORT", free_port().to_string())
        .env("SKYLARK_ENABLE_CONTROLLER_MODE", "true")
        .env("SKYLARK_CONTROLLER_ADDR", controllers)
        .env("SKYLARK_CONTROLLER_HEARTBEAT_INTERVAL_MS", "200")
        .env("SKYLARK_IN_SYNC_ACK", "true");
    c
}

/// Real brokers: a copy of broker 1's configuration on another port and
/// data directory exits at startup naming the live holder of its id (it
/// ran as a second master); a broker whose data directory another broker
/// holds exits as in a fixed role, without registering (it retried every
/// 0.5 s for ever and stayed listed by the controllers).
#[test]
fn a_controller_mode_broker_with_a_taken_id_or_data_dir_exits_at_startup() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cs = group(tmp.path(), 10_000);
    wait_leader(&cs, None);
    let ctl = all_addrs(&cs);
    let (_ns, ns_port) = common::spawn_namesrv();
    let namesrv = format!("127.0.0.1:{ns_port}");
    let port = free_port();
    let dir = tmp.path().join("b1");
    let mut b1 = controller_mode_broker(1, port, &dir, &namesrv, &ctl)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn broker");
    wait_listening(&mut b1, &[port]).expect("broker listening");
    let _b1 = KillOnDrop(b1);
    assert!(
        wait_until(Duration::from_secs(20), || common::controller_master(
            &ctl,
            "broker-dup"
        ) == Some(1)),
        "broker 1 never became master"
    );
    let addr1 = format!("127.0.0.1:{port}");

    let copy_port = free_port();
    let (code, err) = refused(&mut controller_mode_broker(
        1,
        copy_port,
        &tmp.path().join("copy"),
        &namesrv,
        &ctl,
    ));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "broker_id 1 of broker-dup is in use by a live broker at {addr1} \
             (this broker is 127.0.0.1:{copy_port})"
        )),
        "{err}"
    );

    let (code, err) = refused(&mut controller_mode_broker(
        2,
        free_port(),
        &dir,
        &namesrv,
        &ctl,
    ));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("error: cannot start the broker: cannot open the store: data directory")
            && err.contains("is in use by another process (pid"),
        "{err}"
    );
    assert!(!err.contains("retrying"), "{err}");

    let g = common::controller_group(&ctl, "broker-dup").expect("group");
    assert_eq!(g["master_id"], 1);
    assert_eq!(g["replicas"], serde_json::json!({ "1": addr1 }), "{g}");
}
