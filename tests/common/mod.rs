//! Test harness: real `skylark` processes on free 127.0.0.1 ports with a
//! temporary data directory, killed when the handle drops. Waits are on
//! conditions with deadlines, never fixed sleeps.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `skylark` binary built for this test run.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_skylark")
}

/// A port for a test server, free when returned.
///
/// Ports come from outside the kernel's ephemeral range, so no outgoing
/// connection and no server bound to port 0 (HA listeners, other tests'
/// in-process servers) can take one between this call and the child's bind.
/// Within a test binary a counter hands each port out once; the process id
/// spreads test binaries run side by side (nextest) over the pool. Ports go
/// in pairs, leaving `port + 1` free for a broker's default HA port.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let (base, pairs) = test_port_pool();
    if pairs == 0 {
        // No room beside the ephemeral range: let the kernel choose.
        return TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
    }
    let start = std::process::id().wrapping_mul(7919) % pairs;
    for _ in 0..pairs {
        let n = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % pairs;
        let port = (base + 2 * n) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok()
            && TcpListener::bind(("127.0.0.1", port + 1)).is_ok()
        {
            return port;
        }
    }
    panic!("no free test port in {base}..{}", base + 2 * pairs);
}

/// First port and number of port pairs of the pool: the larger gap beside
/// `ip_local_port_range` (32768–60999 by default).
fn test_port_pool() -> (u32, u32) {
    let (lo, hi) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|v| v.parse::<u32>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999));
    let below = lo.saturating_sub(10_000);
    let above = 65_534u32.saturating_sub(hi + 1);
    if below >= above {
        (10_000, below / 2)
    } else {
        (hi + 1, above / 2)
    }
}

/// Waits up to 30 s until `child` accepts connections on every port; fails
/// at once, with its exit status, if the child exits first. A child still
/// running but not listening after 30 s is killed before the error: a
/// caller that panics on it (most `expect` it) leaves no process behind,
/// wrapped in [`KillOnDrop`] yet or not.
pub fn wait_listening(child: &mut Child, ports: &[u16]) -> Result<(), String> {
    let mut exited = None;
    let up = wait_until(Duration::from_secs(30), || {
        if let Ok(Some(st)) = child.try_wait() {
            exited = Some(st);
            return true;
        }
        ports
            .iter()
            .all(|&p| TcpStream::connect(("127.0.0.1", p)).is_ok())
    });
    match (up, exited) {
        (_, Some(st)) => Err(format!("exited first ({st}) on ports {ports:?}")),
        (true, None) => Ok(()),
        (false, None) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!("not listening on {ports:?} after 30 s (killed)"))
        }
    }
}

/// Pause between two looks of [`wait_until`] and [`wait_until_async`].
const WAIT_PACE: Duration = Duration::from_millis(20);

/// One look at `f` in a wait ending at `deadline`: the wait's answer once
/// it is over, `None` while it goes on.
fn wait_over(deadline: Instant, f: &mut impl FnMut() -> bool) -> Option<bool> {
    if f() {
        Some(true)
    } else {
        (Instant::now() >= deadline).then_some(false)
    }
}

/// Polls `f` until it is true or `timeout` passes; returns whether it became true.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        match wait_over(deadline, &mut f) {
            Some(answer) => return answer,
            None => std::thread::sleep(WAIT_PACE),
        }
    }
}

/// [`wait_until`] inside an actix System: waits with the System's timer,
/// so the actors whose work is awaited keep running.
pub async fn wait_until_async(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        match wait_over(deadline, &mut f) {
            Some(answer) => return answer,
            None => actix_rt::time::sleep(WAIT_PACE).await,
        }
    }
}

/// What each descriptor this process has open refers to (`socket:[..]`,
/// `anon_inode:[eventpoll]`, a file's path, ...), from /proc/self/fd.
pub fn open_descriptors() -> Vec<String> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|t| t.to_string_lossy().into_owned())
        .collect()
}

/// Sockets this process has open.
pub fn open_sockets() -> usize {
    open_descriptors()
        .iter()
        .filter(|t| t.starts_with("socket:"))
        .count()
}

/// Disk limits for test brokers: write refusal only when the disk is
/// really full, so a busy shared disk does not fail unrelated tests.
pub const ROOMY_DISK: [(&str, &str); 2] = [
    ("SKYLARK_STORE__DISK_SOFT_LIMIT_RATIO", "0.99"),
    ("SKYLARK_STORE__DISK_HARD_LIMIT_RATIO", "0.999"),
];

/// A `skylark standalone` process.
pub struct Standalone {
    pub child: Option<Child>,
    pub namesrv_port: u16,
    pub broker_port: u16,
    pub data_dir: PathBuf,
    extra: Vec<String>,
    env: Vec<(String, String)>,
}

impl Standalone {
    /// Starts standalone on fresh ports in `data_dir` with extra flags.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Standalone {
        Self::start_env(data_dir, extra, &[])
    }

    /// Like [`Standalone::start`], with extra `SKYLARK_*` environment; these
    /// win over the harness's own (the disk limits below).
    pub fn start_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Standalone {
        let mut s = Standalone {
            child: None,
            namesrv_port: free_port(),
            broker_port: free_port(),
            data_dir: data_dir.to_path_buf(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let child = Command::new(bin())
            .args(["--log-level", "warn", "standalone", "--data-dir"])
            .arg(&self.data_dir)
            .args(["--namesrv-port", &self.namesrv_port.to_string()])
            .args(["--broker-port", &self.broker_port.to_string()])
            .args(&self.extra)
            // 64 MiB segments: each broker preallocates its active segment,
            // and many tests run at once on one disk.
            .env("SKYLARK_STORE__SEGMENT_SIZE", "67108864")
            // The test disk is shared with builds and other machines' work:
            // a nearly full disk must not refuse the writes of tests that
            // are not about disk space (the default refuses above 90 %).
            .envs(ROOMY_DISK)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn skylark standalone");
        let child = self.child.insert(child);
        if let Err(e) = wait_listening(child, &[self.namesrv_port, self.broker_port]) {
            panic!("standalone did not start listening: {e}");
        }
        // Ready means the broker has registered with the NameServer.
        let broker = self.broker();
        assert!(
            wait_until(Duration::from_secs(30), || {
                let out = self.cli(&["admin", "--json", "cluster", "list"]);
                out.status.success() && String::from_utf8_lossy(&out.stdout).contains(&broker)
            }),
            "broker never registered with the nameserver"
        );
    }

    /// Like [`Standalone::start_env`], also serving RocketMQ's remoting
    /// protocol on fresh ports (no dashboard): `(node, NameServer remoting
    /// port, broker remoting port)`, both listening when this returns.
    pub fn start_with_remoting(data_dir: &Path, env: &[(&str, &str)]) -> (Standalone, u16, u16) {
        let (ns, broker) = (free_port(), free_port());
        let node = Self::start_env(
            data_dir,
            &[
                "--namesrv-remoting-port",
                &ns.to_string(),
                "--broker-remoting-port",
                &broker.to_string(),
                "--no-dashboard",
            ],
            env,
        );
        for port in [ns, broker] {
            assert!(
                wait_until(Duration::from_secs(30), || TcpStream::connect((
                    "127.0.0.1",
                    port
                ))
                .is_ok()),
                "remoting port {port} never listened"
            );
        }
        (node, ns, broker)
    }

    /// `127.0.0.1:<namesrv port>`.
    pub fn namesrv(&self) -> String {
        format!("127.0.0.1:{}", self.namesrv_port)
    }

    /// `127.0.0.1:<broker port>`.
    pub fn broker(&self) -> String {
        format!("127.0.0.1:{}", self.broker_port)
    }

    /// kill -9, then wait for the process to be gone.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit; returns whether it exited 0.
    pub fn terminate(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return false;
        };
        unsafe_sigterm(c.id());
        let ok = wait_until(Duration::from_secs(30), || {
            matches!(c.try_wait(), Ok(Some(_)))
        });
        if !ok {
            let _ = c.kill();
        }
        matches!(c.wait(), Ok(st) if st.success())
    }

    /// Starts again on the same ports and data directory.
    pub fn restart(&mut self) {
        self.kill9();
        let (n, b) = (self.namesrv_port, self.broker_port);
        // The old process is gone; its ports are free again.
        assert!(wait_ports_free(&[n, b]), "ports {n}, {b} never came free");
        self.spawn();
    }

    /// Runs a client subcommand (`produce`, `consume`, `admin`, ...) against this cluster.
    pub fn cli(&self, args: &[&str]) -> Output {
        cli(&self.namesrv(), args)
    }
}

/// A NameServer process on a fresh port, listening when this returns; its
/// port.
pub fn spawn_namesrv() -> (KillOnDrop, u16) {
    spawn_namesrv_with(None)
}

/// [`spawn_namesrv`], serving its dashboard on `dashboard` if given
/// (listening there too when this returns).
pub fn spawn_namesrv_with(dashboard: Option<u16>) -> (KillOnDrop, u16) {
    let port = free_port();
    (namesrv_on(port, dashboard), port)
}

/// A NameServer process on `port` (where one was killed: a restart, once
/// the port is free again), listening when this returns.
pub fn spawn_namesrv_on(port: u16) -> KillOnDrop {
    assert!(wait_ports_free(&[port]), "port {port} never came free");
    namesrv_on(port, None)
}

/// Waits up to 10 s until every one of `ports` can be bound again (the
/// process that had them is gone); whether they could.
pub fn wait_ports_free(ports: &[u16]) -> bool {
    wait_until(Duration::from_secs(10), || {
        ports
            .iter()
            .all(|&p| TcpListener::bind(("127.0.0.1", p)).is_ok())
    })
}

fn namesrv_on(port: u16, dashboard: Option<u16>) -> KillOnDrop {
    let child = Command::new(bin())
        .args([
            "--log-level",
            "warn",
            "namesrv",
            "--port",
            &port.to_string(),
        ])
        .envs(dashboard.map(|d| ("SKYLARK_DASHBOARD_PORT", d.to_string())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn namesrv");
    let mut child = KillOnDrop(child);
    let ports: Vec<u16> = std::iter::once(port).chain(dashboard).collect();
    if let Err(e) = wait_listening(&mut child.0, &ports) {
        panic!("namesrv did not start: {e}");
    }
    child
}

/// The CommitLog segment files under a broker's data dir, in order.
pub fn commitlog_segments(data_dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<std::path::PathBuf> = std::fs::read_dir(data_dir.join("commitlog"))
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Runs a client subcommand against the NameServer at `namesrv`.
pub fn cli(namesrv: &str, args: &[&str]) -> Output {
    Command::new(bin())
        .args(["--log-level", "warn"])
        .args(args)
        .env("SKYLARK_NAMESRV", namesrv)
        .stdin(Stdio::null())
        .output()
        .expect("run skylark")
}

impl Drop for Standalone {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Sends SIGTERM to process `pid` (a stop by systemd or Kubernetes).
pub fn unsafe_sigterm(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
}

/// Parses stdout as JSON lines.
pub fn json_lines(out: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(out)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// Broker group `name` as the controller leader among `controllers`
/// (`;`-separated) has applied it (`admin controller status --json`; open
/// with ACL on). `None` while no controller answers as the leader.
pub fn controller_group(controllers: &str, name: &str) -> Option<serde_json::Value> {
    controllers.split(';').find_map(|addr| {
        let out = Command::new(bin())
            .args(["--log-level", "error", "admin", "--namesrv", "127.0.0.1:1"])
            .args(["controller", "status", "--json", "--controller", addr])
            .stdin(Stdio::null())
            .output()
            .ok()?;
        let st = json_lines(&out.stdout).into_iter().next()?;
        if st.get("leader_id")?.as_u64() != st.get("node_id")?.as_u64() {
            return None;
        }
        st["groups"]
            .as_array()?
            .iter()
            .find(|g| g["broker_name"] == name)
            .cloned()
    })
}

/// The master's broker id of group `name` ([`controller_group`]).
pub fn controller_master(controllers: &str, name: &str) -> Option<u64> {
    controller_group(controllers, name)?
        .get("master_id")?
        .as_u64()
}

/// The in-sync set of group `name` ([`controller_group`]); empty if unknown.
pub fn controller_in_sync(controllers: &str, name: &str) -> Vec<u64> {
    controller_group(controllers, name)
        .and_then(|g| {
            g["sync_state_set"]
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_u64()).collect())
        })
        .unwrap_or_default()
}

/// Kills (and reaps) a child process when dropped, so a failing test
/// leaves no server behind.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends `frame` (the raw bytes of one or more frames) on a fresh plain
/// connection to `addr` and reads one answer frame; `None` if the server
/// closes the connection (or says nothing for 10 s) before a whole frame.
pub fn raw_exchange(addr: &str, frame: &[u8]) -> Option<skylark::codec::RawFrame> {
    use std::io::{Read, Write};
    use tokio_util::codec::Decoder;
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    // A server that refuses at once may close before taking every byte.
    let _ = s.write_all(frame);
    let mut buf = bytes::BytesMut::new();
    let mut codec = skylark::codec::FrameCodec::default();
    let mut chunk = [0u8; 4096];
    loop {
        if let Ok(Some(f)) = codec.decode(&mut buf) {
            return Some(f);
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The arguments of a `consume` run: `count` messages of `topic` as
/// `group`, from the first offset, JSON lines out, giving up after 20 s idle.
pub fn consume_args<'a>(group: &'a str, topic: &'a str, count: &'a str) -> [&'a str; 12] {
    [
        "consume",
        "--group",
        group,
        "--topic",
        topic,
        "--count",
        count,
        "--from",
        "first",
        "--idle-timeout",
        "20",
        "--json",
    ]
}

/// `GET path` on 127.0.0.1:`port`, with an `Authorization` header if
/// given: (status code, body).
pub fn http_get(port: u16, path: &str, authorization: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect HTTP server");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let auth = authorization.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read answer");
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {raw:?}"));
    let body = raw
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// A current-thread tokio runtime (to drive a controller client).
pub fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A controller request: broker `id` of group `broker_name` (at
/// 127.0.0.1:1, nothing stored yet) heartbeats.
pub fn controller_heartbeat(
    broker_name: &str,
    id: u64,
) -> skylark::actors::controller::proto::Request {
    use skylark::actors::controller::proto::{BrokerHeartbeat, Request};
    Request::BrokerHeartbeat(BrokerHeartbeat {
        cluster: "DefaultCluster".into(),
        broker_name: broker_name.into(),
        broker_id: id,
        addr: "127.0.0.1:1".into(),
        epoch: 0,
        max_offset: 0,
        ha_addr: None,
    })
}

/// Test certificates in `dir`: a CA (`ca.pem`), a server certificate for
/// 127.0.0.1 / localhost signed by it (`server.pem`, `server.key`), another
/// CA (`other-ca.pem`), and client certificates `client.*` (signed by the
/// CA) and `stranger.*` (signed by the other one).
pub fn make_certs(dir: &Path) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
    let other_key = rcgen::KeyPair::generate().unwrap();
    let mut other = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    other.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let other = other.self_signed(&other_key).unwrap();
    std::fs::write(dir.join("other-ca.pem"), other.pem()).unwrap();
    // Client certificates (mutual TLS): one from the CA, one from the other.
    for (name, issuer, issuer_key) in [("client", &ca, &ca_key), ("stranger", &other, &other_key)] {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, issuer, issuer_key).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    }
}

/// The lines of a child's pipe (`stdout` or `stderr` taken from it), as
/// they come, on a channel fed by a thread that ends with the pipe (or
/// when the receiver is dropped); join it to wait for the last line.
pub fn pipe_lines(
    pipe: impl std::io::Read + Send + 'static,
) -> (
    std::sync::mpsc::Receiver<String>,
    std::thread::JoinHandle<()>,
) {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (rx, reader)
}
