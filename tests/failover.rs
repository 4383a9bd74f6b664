//! Automatic failover in controller mode (issue 13, docs/failover.md), with
//! real processes: a NameServer, three `skylark controller`s and three
//! brokers of one group in controller mode (`enable_controller_mode`),
//! sending with `in_sync_ack`.
//!
//! * `failover_kill9_master_elects_a_new_master_and_keeps_every_acked_message`
//!   — producers keep sending while the master is killed -9; a new master
//!   takes writes within 15 s and every acknowledged message is consumable
//!   afterwards, at the queue offset it was acknowledged with.
//! * `failover_old_master_rejoins_as_slave_truncates_and_converges` — the
//!   master stores messages its (paused) slaves never get, is killed -9 and
//!   restarted: it rejoins as a slave, cuts those messages (the last epoch
//!   it shares with the new master) and its CommitLog becomes byte for
//!   byte the new master's.
//! * `failover_after_the_controller_leader_is_killed_still_elects_a_new_master`,
//!   `failover_min_in_sync_replicas_refuses_writes_while_the_set_is_too_small`,
//!   `failover_master_cut_off_from_the_controllers_acknowledges_nothing_the_new_master_lacks`,
//!   `failover_conf_files_describe_one_controller_mode_group`.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{bin, cli, free_port, json_lines, wait_listening, wait_until, KillOnDrop};

const GROUP: &str = "broker-f";

fn spawn_namesrv() -> (KillOnDrop, String) {
    let (child, port) = common::spawn_namesrv();
    (child, format!("127.0.0.1:{port}"))
}

/// `consume --from first` of up to `count` messages of `topic` as `group`,
/// stopping after 5 s without a message; JSON lines on stdout.
fn consume_from_first(namesrv: &str, group: &str, topic: &str, count: usize) -> Output {
    cli(
        namesrv,
        &[
            "consume",
            "--group",
            group,
            "--topic",
            topic,
            "--from",
            "first",
            "--count",
            &count.to_string(),
            "--idle-timeout",
            "5",
            "--json",
        ],
    )
}

/// Three controllers with a short broker timeout; answers them and their
/// addresses (`a;b;c`).
fn spawn_controllers(root: &Path, timeout_ms: u64) -> (Vec<KillOnDrop>, String) {
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let peers = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}=127.0.0.1:{p}", i + 1))
        .collect::<Vec<_>>()
        .join(";");
    let mut procs = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let mut child = Command::new(bin())
            .args(["--log-level", "warn", "controller", "--node-id"])
            .arg((i + 1).to_string())
            .args(["--port", &port.to_string(), "--peers", &peers])
            .arg("--data-dir")
            .arg(root.join(format!("c{}", i + 1)))
            .env(
                "SKYLARK_CONTROLLER_BROKER_TIMEOUT_MS",
                timeout_ms.to_string(),
            )
            .env("SKYLARK_RAFT_HEARTBEAT_INTERVAL_MS", "100")
            .env("SKYLARK_RAFT_ELECTION_TIMEOUT_MIN_MS", "500")
            .env("SKYLARK_RAFT_ELECTION_TIMEOUT_MAX_MS", "1000")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
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

/// A broker of the group in controller mode.
struct Broker {
    port: u16,
    dir: PathBuf,
    env: Vec<(String, String)>,
    proc: Option<KillOnDrop>,
}

impl Broker {
    fn new(root: &Path, id: u64, namesrv: &str, controllers: &str, extra: &[(&str, &str)]) -> Self {
        let mut env: Vec<(String, String)> = [
            ("SKYLARK_NAMESRV", namesrv),
            ("SKYLARK_BROKER_NAME", GROUP),
            ("SKYLARK_ENABLE_CONTROLLER_MODE", "true"),
            ("SKYLARK_CONTROLLER_ADDR", controllers),
            ("SKYLARK_CONTROLLER_HEARTBEAT_INTERVAL_MS", "200"),
            ("SKYLARK_IN_SYNC_ACK", "true"),
            ("SKYLARK_SYNC_REPLICATION_TIMEOUT_MS", "2000"),
            ("SKYLARK_REGISTER_INTERVAL_SECS", "1"),
            ("SKYLARK_METADATA_SYNC_INTERVAL_SECS", "1"),
            ("SKYLARK_STORE__SEGMENT_SIZE", "4194304"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        env.push(("SKYLARK_BROKER_ID".into(), id.to_string()));
        for (k, v) in extra {
            env.retain(|(key, _)| key != k);
            env.push((k.to_string(), v.to_string()));
        }
        Broker {
            port: free_port(),
            dir: root.join(format!("b{id}")),
            env,
            proc: None,
        }
    }

    fn spawn(&mut self) {
        let mut child = Command::new(bin())
            .args(["--log-level", "warn", "broker", "--data-dir"])
            .envs(common::ROOMY_DISK)
            .arg(&self.dir)
            .args(["--port", &self.port.to_string()])
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn broker");
        wait_listening(&mut child, &[self.port]).expect("broker listening");
        self.proc = Some(KillOnDrop(child));
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn kill9(&mut self) {
        self.proc = None;
    }

    fn signal(&self, sig: &str) {
        let pid = self.proc.as_ref().expect("running").0.id();
        let ok = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(ok.success(), "kill {sig} {pid}");
    }

    fn segments(&self) -> Vec<PathBuf> {
        common::commitlog_segments(&self.dir)
    }
}

/// The group's master and in-sync set as the controller leader has
/// applied them.
fn master_of(controllers: &str) -> Option<u64> {
    common::controller_master(controllers, GROUP)
}

fn in_sync(controllers: &str) -> Vec<u64> {
    common::controller_in_sync(controllers, GROUP)
}

/// CommitLog ends by broker address (`admin cluster list`).
fn max_offsets(namesrv: &str) -> HashMap<String, u64> {
    let out = cli(namesrv, &["admin", "--json", "cluster", "list"]);
    json_lines(&out.stdout)
        .pop()
        .and_then(|v| v["members"].as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| Some((m["addr"].as_str()?.to_string(), m["max_offset"].as_u64()?)))
        .collect()
}

/// Starts three brokers (broker 1 first, so it is the first master) and
/// waits until all three are in the in-sync set and the topic exists.
fn start_group(
    root: &Path,
    namesrv: &str,
    controllers: &str,
    extra: &[(&str, &str)],
    topic: &str,
) -> Vec<Broker> {
    start_group_via(root, namesrv, (controllers, controllers), extra, topic)
}

/// [`start_group`] with broker 1 reaching the controllers at `first`.
fn start_group_via(
    root: &Path,
    namesrv: &str,
    (controllers, first): (&str, &str),
    extra: &[(&str, &str)],
    topic: &str,
) -> Vec<Broker> {
    let mut bs: Vec<Broker> = (1..=3)
        .map(|id| {
            let via = if id == 1 { first } else { controllers };
            Broker::new(root, id, namesrv, via, extra)
        })
        .collect();
    bs[0].spawn();
    assert!(
        wait_until(Duration::from_secs(20), || master_of(controllers)
            == Some(1)),
        "broker 1 never became master"
    );
    bs[1].spawn();
    bs[2].spawn();
    assert!(
        wait_until(Duration::from_secs(20), || {
            let out = cli(
                namesrv,
                &["admin", "topic", "create", "--name", topic, "--queues", "4"],
            );
            out.status.success()
        }),
        "topic never created"
    );
    assert!(
        wait_until(Duration::from_secs(30), || in_sync(controllers)
            == vec![1, 2, 3]),
        "the slaves never joined the in-sync set: {:?}",
        in_sync(controllers)
    );
    bs
}

/// One acknowledged message.
#[derive(Debug, Clone)]
struct Acked {
    at: Instant,
    msg_id: String,
    queue_id: u64,
    queue_offset: u64,
}

/// Keeps `skylark produce` runs going (each stops at its first failure,
/// the next one starts over) and collects the `SendOk` answers.
fn produce_until(namesrv: String, topic: String, stop: Arc<AtomicBool>) -> Arc<Mutex<Vec<Acked>>> {
    let acked = Arc::new(Mutex::new(Vec::new()));
    let out = acked.clone();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let child = Command::new(bin())
                .args(["--log-level", "error", "produce", "--topic", &topic])
                .args(["--count", "200", "--size", "64", "--json"])
                .env("SKYLARK_NAMESRV", &namesrv)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn();
            let Ok(mut child) = child else { continue };
            if let Some(stdout) = child.stdout.take() {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                        continue;
                    };
                    if v["status"] != "SendOk" {
                        continue;
                    }
                    let a = Acked {
                        at: Instant::now(),
                        msg_id: v["msg_id"].as_str().unwrap_or_default().to_string(),
                        queue_id: v["queue_id"].as_u64().unwrap_or(u64::MAX),
                        queue_offset: v["queue_offset"].as_u64().unwrap_or(u64::MAX),
                    };
                    if let Ok(mut g) = out.lock() {
                        g.push(a);
                    }
                }
            }
            let _ = child.wait();
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    acked
}

fn acked_count(a: &Mutex<Vec<Acked>>) -> usize {
    a.lock().map(|g| g.len()).unwrap_or(0)
}

#[test]
fn failover_kill9_master_elects_a_new_master_and_keeps_every_acked_message() {
    let tmp = tempfile::tempdir().unwrap();
    let (_ns, namesrv) = spawn_namesrv();
    let (_ctrls, controllers) = spawn_controllers(tmp.path(), 2000);
    let topic = "Failover";
    let mut bs = start_group(tmp.path(), &namesrv, &controllers, &[], topic);

    let stop = Arc::new(AtomicBool::new(false));
    let acked = produce_until(namesrv.clone(), topic.into(), stop.clone());
    assert!(
        wait_until(Duration::from_secs(30), || acked_count(&acked) >= 300),
        "too few acks before the kill: {}",
        acked_count(&acked)
    );
    bs[0].kill9();
    let killed = Instant::now();
    // A new master (an in-sync slave) takes writes.
    let mut first_after = None;
    let took_over = wait_until(Duration::from_secs(15), || {
        first_after = acked
            .lock()
            .ok()
            .and_then(|g| g.iter().find(|a| a.at > killed).map(|a| a.at));
        first_after.is_some()
    });
    assert!(took_over, "no write acknowledged within 15 s of the kill");
    let failover = first_after.unwrap_or(killed).duration_since(killed);
    eprintln!("failover: first acknowledged write {failover:?} after kill -9");
    let new_master = master_of(&controllers).expect("a master");
    assert!(new_master == 2 || new_master == 3, "master is {new_master}");
    let target = acked_count(&acked) + 200;
    assert!(
        wait_until(Duration::from_secs(20), || acked_count(&acked) >= target),
        "the new master stopped taking writes"
    );
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<Acked> = acked.lock().unwrap().clone();

    // Every acknowledged message is there, at its acknowledged queue offset.
    let out = consume_from_first(&namesrv, "after-failover", topic, acked.len() + 2000);
    assert!(
        out.status.success(),
        "consume: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut got: HashMap<String, (u64, u64)> = HashMap::new();
    let mut per_queue: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for v in json_lines(&out.stdout) {
        let (Some(id), Some(q), Some(o)) = (
            v["msg_id"].as_str(),
            v["queue_id"].as_u64(),
            v["queue_offset"].as_u64(),
        ) else {
            continue;
        };
        got.insert(id.to_string(), (q, o));
        per_queue.entry(q).or_default().push(o);
    }
    for (q, offsets) in &per_queue {
        assert!(
            offsets.windows(2).all(|w| w[0] < w[1]),
            "queue {q} consumed out of order"
        );
    }
    let missing: Vec<&Acked> = acked
        .iter()
        .filter(|a| got.get(&a.msg_id) != Some(&(a.queue_id, a.queue_offset)))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged messages missing or moved, first: {:?}",
        missing.len(),
        acked.len(),
        missing.first()
    );
}

#[test]
fn failover_old_master_rejoins_as_slave_truncates_and_converges() {
    let tmp = tempfile::tempdir().unwrap();
    let (_ns, namesrv) = spawn_namesrv();
    let (_ctrls, controllers) = spawn_controllers(tmp.path(), 2000);
    let topic = "Rejoin";
    // Paused slaves stay in sync (a long catch-up allowance) so that one
    // of them is elected; sends to the master alone time out quickly.
    let extra = [
        ("SKYLARK_HA_MAX_TIME_SLAVE_NOT_CATCHUP_MS", "60000"),
        ("SKYLARK_SYNC_REPLICATION_TIMEOUT_MS", "100"),
        ("SKYLARK_STORE__SEGMENT_SIZE", "33554432"),
    ];
    let mut bs = start_group(tmp.path(), &namesrv, &controllers, &extra, topic);
    let produce = |count: &str, accept: bool| {
        let mut args = vec!["produce", "--topic", topic, "--count", count];
        args.extend(["--batch", count, "--size", "64", "--json"]);
        if accept {
            args.push("--accept-status");
        }
        cli(&namesrv, &args)
    };
    let out = produce("100", false);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = max_offsets(&namesrv)[&bs[0].addr()];
    // The slaves pause: the master stores messages only it has (their
    // sends time out waiting for the in-sync set, unacknowledged).
    bs[1].signal("-STOP");
    bs[2].signal("-STOP");
    // More than the loopback socket buffers hold, so that the tail never
    // leaves the master (what is in flight reaches the slaves on SIGCONT).
    let out = cli(
        &namesrv,
        &[
            "produce",
            "--topic",
            topic,
            "--count",
            "48",
            "--size",
            "500000",
            "--accept-status",
            "--json",
        ],
    );
    let lost = json_lines(&out.stdout);
    assert_eq!(lost.len(), 48, "{}", String::from_utf8_lossy(&out.stderr));
    assert!(lost.iter().all(|l| l["status"] != "SendOk"), "{lost:?}");
    bs[0].kill9();
    bs[1].signal("-CONT");
    bs[2].signal("-CONT");
    assert!(
        wait_until(Duration::from_secs(15), || {
            matches!(master_of(&controllers), Some(2) | Some(3))
        }),
        "no new master"
    );
    let new_master = master_of(&controllers).unwrap_or(0) as usize - 1;
    // The new master takes writes (the master alone may be the in-sync set).
    assert!(
        wait_until(Duration::from_secs(15), || produce("50", false)
            .status
            .success()),
        "the new master takes no writes"
    );
    // The old master comes back: a slave now, cut back and caught up.
    bs[0].spawn();
    let (old, new) = (bs[0].addr(), bs[new_master].addr());
    let converged = wait_until(Duration::from_secs(30), || {
        let e = max_offsets(&namesrv);
        e.contains_key(&old) && e.get(&old) == e.get(&new) && in_sync(&controllers).len() == 3
    });
    assert!(
        converged,
        "old master never caught up: {:?}",
        max_offsets(&namesrv)
    );
    assert!(
        max_offsets(&namesrv)[&old] > before,
        "nothing written after the cut"
    );
    let (a, b) = (bs[new_master].segments(), bs[0].segments());
    assert_eq!(
        a.iter().map(|p| p.file_name()).collect::<Vec<_>>(),
        b.iter().map(|p| p.file_name()).collect::<Vec<_>>(),
        "segment file names differ"
    );
    for (x, y) in a.iter().zip(&b) {
        let (x, y) = (std::fs::read(x).unwrap(), std::fs::read(y).unwrap());
        assert!(
            x == y,
            "a segment of {} bytes differs from the new master's",
            x.len()
        );
    }
    // What only the old master had (never acknowledged) is gone.
    let out = cli(
        &namesrv,
        &[
            "consume",
            "--group",
            "after",
            "--topic",
            topic,
            "--from",
            "first",
            "--count",
            "1000",
            "--idle-timeout",
            "3",
            "--json",
        ],
    );
    let ids: Vec<String> = json_lines(&out.stdout)
        .iter()
        .filter_map(|v| v["msg_id"].as_str().map(String::from))
        .collect();
    assert!(
        ids.len() >= 150,
        "100 before, 50 after the failover: {}",
        ids.len()
    );
    let cut = lost
        .iter()
        .filter(|l| !ids.iter().any(|i| Some(i.as_str()) == l["msg_id"].as_str()))
        .count();
    assert!(
        cut > 0,
        "every message only the old master had survived: nothing was cut"
    );
    eprintln!("{cut} of 48 unacknowledged messages were cut from the old master");
}

#[test]
fn failover_conf_files_describe_one_controller_mode_group() {
    use skylark::actors::config::BrokerConfig;
    use skylark::actors::controller::ControllerConfig;
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
    let controllers: Vec<String> = (1..=3)
        .map(|i| {
            let c: ControllerConfig =
                skylark::config::load(Some(&conf.join(format!("controller-{i}.toml"))), &[])
                    .expect("controller conf");
            format!("{}:{}", c.listen_host, c.port)
        })
        .collect();
    // Every port any broker file claims, the controller-mode ones included.
    let mut ports = std::collections::HashSet::new();
    for entry in std::fs::read_dir(&conf).expect("conf dir") {
        let path = entry.expect("entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !name.starts_with("broker-") {
            continue;
        }
        let c: BrokerConfig = skylark::config::load(Some(&path), &[]).expect(name);
        assert!(ports.insert(c.port), "{name}: port {} reused", c.port);
        if c.enable_controller_mode || !c.is_slave() {
            assert!(ports.insert(c.ha_bind_port()), "{name}: HA port reused");
        }
    }
    let mut dirs = std::collections::HashSet::new();
    for id in 1..=3u64 {
        let file = conf.join(format!("broker-c-{id}.toml"));
        let c: BrokerConfig = skylark::config::load(Some(&file), &[]).expect("broker-c conf");
        assert!(c.enable_controller_mode && c.in_sync_ack);
        assert_eq!((c.broker_name.as_str(), c.broker_id), ("broker-c", id));
        assert_eq!(
            c.controller_addr.split(';').collect::<Vec<_>>(),
            controllers,
            "broker-c-{id} lists the controllers of conf/controller-*.toml"
        );
        assert!(c.min_in_sync_replicas >= 1 && c.min_in_sync_replicas <= 3);
        assert!(dirs.insert(c.store.data_dir.clone()), "data dir reused");
    }
}

/// The controller leader's node id, as the first answering controller sees it.
fn controller_leader(controllers: &str) -> Option<u64> {
    controllers.split(';').find_map(|addr| {
        let out = Command::new(bin())
            .args(["--log-level", "error", "admin", "--namesrv", "127.0.0.1:1"])
            .args(["controller", "status", "--json", "--controller", addr])
            .stdin(Stdio::null())
            .output()
            .ok()?;
        json_lines(&out.stdout)
            .into_iter()
            .next()?
            .get("leader_id")?
            .as_u64()
    })
}

#[test]
fn failover_after_the_controller_leader_is_killed_still_elects_a_new_master() {
    let tmp = tempfile::tempdir().unwrap();
    let (_ns, namesrv) = spawn_namesrv();
    let (mut ctrls, controllers) = spawn_controllers(tmp.path(), 2000);
    let topic = "LeaderKill";
    let mut bs = start_group(tmp.path(), &namesrv, &controllers, &[], topic);
    let leader = controller_leader(&controllers).expect("a controller leader");
    let victim = &mut ctrls[leader as usize - 1].0;
    let _ = victim.kill();
    let _ = victim.wait();
    assert!(
        wait_until(Duration::from_secs(15), || {
            controller_leader(&controllers).is_some_and(|l| l != leader)
        }),
        "no new controller leader"
    );
    // The healthy master stays master under the new leader ...
    assert_eq!(master_of(&controllers), Some(1));
    let send = |n: &str| cli(&namesrv, &["produce", "--topic", topic, "--count", n]);
    assert!(send("20").status.success(), "the master takes writes");
    // ... and its death is still handled.
    bs[0].kill9();
    assert!(
        wait_until(Duration::from_secs(15), || {
            matches!(master_of(&controllers), Some(2) | Some(3))
        }),
        "no new master after the controller leader changed"
    );
    assert!(
        wait_until(Duration::from_secs(15), || send("20").status.success()),
        "the new master takes no writes"
    );
}

#[test]
fn failover_min_in_sync_replicas_refuses_writes_while_the_set_is_too_small() {
    let tmp = tempfile::tempdir().unwrap();
    let (_ns, namesrv) = spawn_namesrv();
    let (_ctrls, controllers) = spawn_controllers(tmp.path(), 2000);
    let topic = "MinIsr";
    let extra = [("SKYLARK_MIN_IN_SYNC_REPLICAS", "2")];
    let mut bs = start_group(tmp.path(), &namesrv, &controllers, &extra, topic);
    let send = || cli(&namesrv, &["produce", "--topic", topic, "--count", "10"]);
    let out = send();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Both slaves die: the master reports an in-sync set of itself ...
    bs[1].kill9();
    bs[2].kill9();
    assert!(
        wait_until(Duration::from_secs(15), || in_sync(&controllers) == vec![1]),
        "the in-sync set never shrank: {:?}",
        in_sync(&controllers)
    );
    // ... and refuses sends, saying why.
    let out = send();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a send was accepted with one in-sync replica"
    );
    assert!(err.contains("min_in_sync_replicas"), "{err}");
    // A slave back in sync: writes are taken again.
    bs[1].spawn();
    assert!(
        wait_until(Duration::from_secs(20), || send().status.success()),
        "writes never resumed"
    );
    assert!(in_sync(&controllers).len() >= 2);
}

/// A TCP forwarder the test can cut: while `cut` is set it drops every
/// connection it carries and refuses new ones.
struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
}

impl Proxy {
    fn start(target: String) -> Proxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let cut = Arc::new(AtomicBool::new(false));
        let c = cut.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if c.load(Ordering::Relaxed) {
                    continue;
                }
                let Ok(server) = std::net::TcpStream::connect(&target) else {
                    continue;
                };
                for (from, to) in [
                    (client.try_clone(), server.try_clone()),
                    (server.try_clone(), client.try_clone()),
                ] {
                    let (Ok(from), Ok(to)) = (from, to) else {
                        continue;
                    };
                    let c = c.clone();
                    std::thread::spawn(move || pipe(from, to, &c));
                }
            }
        });
        Proxy { port, cut }
    }
}

fn pipe(mut from: std::net::TcpStream, mut to: std::net::TcpStream, cut: &AtomicBool) {
    use std::io::{Read, Write};
    let _ = from.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf = [0u8; 16384];
    while !cut.load(Ordering::Relaxed) {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    let _ = from.shutdown(std::net::Shutdown::Both);
    let _ = to.shutdown(std::net::Shutdown::Both);
}

#[test]
fn failover_master_cut_off_from_the_controllers_acknowledges_nothing_the_new_master_lacks() {
    let tmp = tempfile::tempdir().unwrap();
    let (_ns, namesrv) = spawn_namesrv();
    let (_ctrls, controllers) = spawn_controllers(tmp.path(), 2000);
    let proxies: Vec<Proxy> = controllers
        .split(';')
        .map(|a| Proxy::start(a.to_string()))
        .collect();
    let via = proxies
        .iter()
        .map(|p| format!("127.0.0.1:{}", p.port))
        .collect::<Vec<_>>()
        .join(";");
    let topic = "Partition";
    let mut bs = start_group_via(tmp.path(), &namesrv, (&controllers, &via), &[], topic);
    let stop = Arc::new(AtomicBool::new(false));
    let acked = produce_until(namesrv.clone(), topic.into(), stop.clone());
    assert!(wait_until(Duration::from_secs(30), || acked_count(&acked) >= 200));
    // The master loses the controllers (it keeps running, thinking it is master).
    for p in &proxies {
        p.cut.store(true, Ordering::Relaxed);
    }
    assert!(
        wait_until(Duration::from_secs(15), || {
            matches!(master_of(&controllers), Some(2) | Some(3))
        }),
        "no new master while the old one is cut off"
    );
    let target = acked_count(&acked) + 100;
    assert!(
        wait_until(Duration::from_secs(30), || acked_count(&acked) >= target),
        "no writes during the partition"
    );
    // The partition heals: the old master learns it was replaced and rejoins.
    for p in &proxies {
        p.cut.store(false, Ordering::Relaxed);
    }
    assert!(
        wait_until(Duration::from_secs(30), || in_sync(&controllers).len() == 3),
        "the old master never rejoined: {:?}",
        in_sync(&controllers)
    );
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<Acked> = acked.lock().unwrap().clone();
    bs[0].kill9();
    let out = consume_from_first(&namesrv, "after-partition", topic, acked.len() + 2000);
    let got: HashMap<String, (u64, u64)> = json_lines(&out.stdout)
        .iter()
        .filter_map(|v| {
            Some((
                v["msg_id"].as_str()?.to_string(),
                (v["queue_id"].as_u64()?, v["queue_offset"].as_u64()?),
            ))
        })
        .collect();
    let missing: Vec<&Acked> = acked
        .iter()
        .filter(|a| got.get(&a.msg_id) != Some(&(a.queue_id, a.queue_offset)))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged messages missing or moved (split brain), first: {:?}",
        missing.len(),
        acked.len(),
        missing.first()
    );
}
