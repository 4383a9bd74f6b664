//! ACL end to end (issue 15): a NameServer and a broker with
//! `acl_enabled = true` as real processes, driven by the CLI and by raw
//! frames on a socket (to send exactly the unsigned, tampered, replayed
//! and forged requests an attacker would).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use common::{bin, free_port, wait_listening, wait_until, KillOnDrop};
use skylark::codec::auth::{encode_signed_frame, ha_hello};
use skylark::codec::{
    Credentials, ErrorCode, FrameCodec, GetTopicListRequest, Header, OutFrame, RawFrame,
    RegisterBrokerRequest, SendRequest, SendResult, TopicConfig, WireError,
};
use tokio_util::codec::Encoder;

const BROKER_SECRET: &str = "cluster-broker-secret";
const ADMIN_SECRET: &str = "admin-secret";
const APP_SECRET: &str = "app-secret";

fn acl_file(app_orders_perm: &str) -> String {
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
default_topic_perm = "DENY"
default_group_perm = "SUB"
topic_perms = {{ orders = "{app_orders_perm}" }}
"#
    )
}

/// A NameServer and a master broker, both with ACL on.
struct Cluster {
    _namesrv: KillOnDrop,
    _broker: KillOnDrop,
    namesrv_port: u16,
    broker_port: u16,
    ha_port: u16,
    acl_path: PathBuf,
    /// `/metrics` of the NameServer and of the broker.
    namesrv_metrics: u16,
    broker_metrics: u16,
    /// The broker's environment, to start it again the same way.
    broker_env: Vec<(&'static str, String)>,
    broker_data: PathBuf,
    /// The servers' log lines (their stderr), as they come.
    namesrv_log: Receiver<String>,
    broker_log: Receiver<String>,
}

fn spawn(args: &[&str], env: &[(&str, String)]) -> KillOnDrop {
    let mut c = Command::new(bin());
    c.args(["--log-level", "warn"])
        .args(args)
        .env_remove("SKYLARK_ACCESS_KEY")
        .env_remove("SKYLARK_SECRET_KEY");
    for (k, v) in env {
        c.env(k, v);
    }
    KillOnDrop(
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn skylark"),
    )
}

/// The lines of `child`'s stderr (taken from it).
fn log_of(child: &mut KillOnDrop) -> Receiver<String> {
    common::pipe_lines(child.0.stderr.take().expect("stderr piped")).0
}

/// Waits until a line of `log` contains every one of `want`; the lines
/// seen, if none did within 30 s.
fn wait_log_line(log: &Receiver<String>, want: &[&str]) -> Result<String, Vec<String>> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match log.recv_timeout(left) {
            Ok(line) if want.iter().all(|w| line.contains(w)) => return Ok(line),
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    Err(seen)
}

/// The value of the `skylark_auth_refusals_total` series for `reason`
/// on the `/metrics` served at `port`.
fn auth_refusals(port: u16, reason: &str) -> u64 {
    let (status, body) = common::http_get(port, "/metrics", None);
    assert_eq!(status, 200, "{body}");
    let series = format!("skylark_auth_refusals_total{{reason=\"{reason}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&series))
        .unwrap_or_else(|| panic!("no {series} in /metrics"))
        .trim()
        .parse()
        .unwrap()
}

/// A master broker with ACL on, listening when this returns, and its log.
fn spawn_broker(
    namesrv_port: u16,
    broker_port: u16,
    data: &Path,
    env: &[(&'static str, String)],
    metrics_port: u16,
) -> (KillOnDrop, Receiver<String>) {
    let mut broker = Command::new(bin());
    broker
        .args(["--log-level", "warn", "broker", "--namesrv"])
        .envs(common::ROOMY_DISK)
        .arg(format!("127.0.0.1:{namesrv_port}"))
        .args(["--port", &broker_port.to_string(), "--data-dir"])
        .arg(data)
        // The broker's own credential: its flags (they set its
        // access_key / secret_key; they were ignored, and the broker ran
        // unsigned). The NameServer's comes from the environment.
        .args(["--access-key", "broker", "--secret-key", BROKER_SECRET])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        broker.env(k, v);
    }
    let mut broker = KillOnDrop(broker.spawn().expect("spawn broker"));
    let ha_port = broker_port + 1;
    wait_listening(&mut broker.0, &[broker_port, ha_port, metrics_port]).expect("broker up");
    let log = log_of(&mut broker);
    (broker, log)
}

impl Cluster {
    fn start(dir: &Path) -> Cluster {
        Cluster::start_with_dashboard(dir, None)
    }

    /// The cluster, its NameServer serving the dashboard on `dashboard`
    /// (signing its broker RPCs as the admin account) if given.
    fn start_with_dashboard(dir: &Path, dashboard: Option<u16>) -> Cluster {
        let acl_path = dir.join("acl.toml");
        std::fs::write(&acl_path, acl_file("PUB|SUB")).unwrap();
        let acl_env = vec![
            ("SKYLARK_ACL_ENABLED", "true".to_string()),
            ("SKYLARK_ACL_FILE", acl_path.display().to_string()),
        ];
        let namesrv_port = free_port();
        let namesrv_metrics = free_port();
        let mut ns_env = acl_env.clone();
        ns_env.push(("SKYLARK_METRICS_PORT", namesrv_metrics.to_string()));
        if let Some(port) = dashboard {
            ns_env.extend([
                ("SKYLARK_DASHBOARD_PORT", port.to_string()),
                ("SKYLARK_ACCESS_KEY", "admin".to_string()),
                ("SKYLARK_SECRET_KEY", ADMIN_SECRET.to_string()),
            ]);
        }
        let mut ns = spawn(&["namesrv", "--port", &namesrv_port.to_string()], &ns_env);
        let mut ns_ports = vec![namesrv_port, namesrv_metrics];
        ns_ports.extend(dashboard);
        wait_listening(&mut ns.0, &ns_ports).expect("namesrv up");
        let namesrv_log = log_of(&mut ns);
        let broker_port = free_port();
        let ha_port = broker_port + 1;
        let broker_metrics = free_port();
        let mut env = acl_env.clone();
        env.extend([
            ("SKYLARK_HA_PORT", ha_port.to_string()),
            ("SKYLARK_METRICS_PORT", broker_metrics.to_string()),
            ("SKYLARK_STORE__SEGMENT_SIZE", "67108864".to_string()),
            ("SKYLARK_REGISTER_INTERVAL_SECS", "1".to_string()),
            // Seven developers share this disk; these tests are not about it.
            ("SKYLARK_STORE__DISK_SOFT_LIMIT_RATIO", "0.99".to_string()),
            ("SKYLARK_STORE__DISK_HARD_LIMIT_RATIO", "1.0".to_string()),
        ]);
        let broker_data = dir.join("broker");
        let (broker, broker_log) = spawn_broker(
            namesrv_port,
            broker_port,
            &broker_data,
            &env,
            broker_metrics,
        );
        let c = Cluster {
            _namesrv: ns,
            _broker: broker,
            namesrv_port,
            broker_port,
            ha_port,
            acl_path,
            namesrv_metrics,
            broker_metrics,
            broker_env: env,
            broker_data,
            namesrv_log,
            broker_log,
        };
        let addr = c.broker_addr();
        assert!(
            wait_until(Duration::from_secs(30), || {
                let out = c.cli(Some(("admin", ADMIN_SECRET)), &["admin", "cluster", "list"]);
                out.status.success() && String::from_utf8_lossy(&out.stdout).contains(&addr)
            }),
            "the broker never registered with its credential"
        );
        c
    }

    /// kill -9 the broker and start it again on the same ports and data
    /// directory (a new process: a new replay cache).
    fn restart_broker(&mut self) {
        let _ = self._broker.0.kill();
        let _ = self._broker.0.wait();
        let port = self.broker_port;
        assert!(
            wait_until(Duration::from_secs(10), || {
                std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
            }),
            "the old broker's port stayed taken"
        );
        let (broker, log) = spawn_broker(
            self.namesrv_port,
            port,
            &self.broker_data,
            &self.broker_env,
            self.broker_metrics,
        );
        self._broker = broker;
        self.broker_log = log;
    }

    fn namesrv(&self) -> String {
        format!("127.0.0.1:{}", self.namesrv_port)
    }

    fn broker_addr(&self) -> String {
        format!("127.0.0.1:{}", self.broker_port)
    }

    /// Runs a client command with `(access_key, secret_key)` in the
    /// environment (or none).
    /// Creates topic `orders` (1 queue) as the admin account.
    fn create_orders(&self) {
        let out = self.cli(
            Some(("admin", ADMIN_SECRET)),
            &[
                "admin", "topic", "create", "--name", "orders", "--queues", "1",
            ],
        );
        assert!(out.status.success(), "{}", stderr(&out));
    }

    fn cli(&self, creds: Option<(&str, &str)>, args: &[&str]) -> Output {
        let mut c = Command::new(bin());
        c.args(["--log-level", "warn"])
            .args(args)
            .env("SKYLARK_NAMESRV", self.namesrv())
            .env_remove("SKYLARK_ACCESS_KEY")
            .env_remove("SKYLARK_SECRET_KEY")
            .stdin(Stdio::null());
        if let Some((a, s)) = creds {
            c.env("SKYLARK_ACCESS_KEY", a).env("SKYLARK_SECRET_KEY", s);
        }
        c.output().expect("run skylark")
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a refused CLI run: non-zero, a one-line reason containing
/// `want`, and no secret anywhere in its output.
fn assert_refused(o: &Output, want: &str) {
    let err = stderr(o);
    assert!(
        !o.status.success(),
        "expected a refusal, got success: {err}"
    );
    assert!(err.contains(want), "stderr lacks {want:?}: {err}");
    assert_eq!(err.trim().lines().count(), 1, "not one line: {err}");
    for secret in [APP_SECRET, ADMIN_SECRET, BROKER_SECRET, "wrong-secret"] {
        assert!(!err.contains(secret), "a secret leaked: {err}");
        assert!(!String::from_utf8_lossy(&o.stdout).contains(secret));
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Sends one frame (raw bytes) on a fresh connection, returns the answer.
fn exchange(addr: &str, frame: &[u8]) -> RawFrame {
    common::raw_exchange(addr, frame).expect("connection closed without an answer")
}

fn signed<B: serde::Serialize>(header: Header, body: &B, creds: &Credentials, ts: u64) -> BytesMut {
    let mut buf = BytesMut::new();
    encode_signed_frame(&header, body, creds, ts, &mut buf, 1 << 20).unwrap();
    buf
}

fn unsigned<B: serde::Serialize>(header: Header, body: &B) -> BytesMut {
    let mut buf = BytesMut::new();
    FrameCodec::default()
        .encode(OutFrame::new(header, body), &mut buf)
        .unwrap();
    buf
}

fn error_of(f: &RawFrame) -> WireError {
    match f.decode_body::<Result<serde::de::IgnoredAny, WireError>>() {
        Ok(Err(e)) => e,
        Ok(Ok(_)) => panic!("expected an error answer"),
        Err(e) => panic!("undecodable answer: {e}"),
    }
}

fn is_ok(f: &RawFrame) -> bool {
    matches!(
        f.decode_body::<Result<serde::de::IgnoredAny, WireError>>(),
        Ok(Ok(_))
    )
}

fn send_req(topic: &str) -> SendRequest {
    SendRequest {
        producer_group: "pg".into(),
        topic: topic.into(),
        queue_id: 0,
        message: skylark::codec::MessageData::new(bytes::Bytes::from_static(b"hello")),
    }
}

#[test]
fn acl_cli_permissions_are_enforced_and_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path());
    let admin = Some(("admin", ADMIN_SECRET));
    let app = Some(("app", APP_SECRET));

    // Admin commands: an admin account only.
    let create = [
        "admin", "topic", "create", "--name", "orders", "--queues", "2",
    ];
    assert_refused(
        &c.cli(app, &create),
        "admin rights needed to create or update topic 'orders'",
    );
    let out = c.cli(admin, &create);
    assert!(out.status.success(), "{}", stderr(&out));
    // `topic perm` is a topic update on the broker: said so, by name.
    let perm = ["admin", "topic", "perm", "--name", "orders", "--perm", "r"];
    assert_refused(
        &c.cli(app, &perm),
        "access key 'app' lacks admin rights needed to create or update topic 'orders'",
    );
    let create_secret = [
        "admin", "topic", "create", "--name", "payroll", "--queues", "1",
    ];
    assert!(c.cli(admin, &create_secret).status.success());

    // Sends: topic PUB.
    let produce = |creds, topic: &str| {
        c.cli(
            creds,
            &[
                "produce", "--topic", topic, "--count", "3", "--body", "x", "--json",
            ],
        )
    };
    let out = produce(app, "orders");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_refused(&produce(app, "payroll"), "PUB on topic 'payroll'");
    assert_refused(&produce(None, "orders"), "not signed");
    assert_refused(
        &produce(Some(("app", "wrong-secret")), "orders"),
        "signature mismatch",
    );
    assert_refused(
        &produce(Some(("nobody", "x")), "orders"),
        "unknown access key",
    );

    // Pulls, offsets, heartbeats: group SUB + topic SUB.
    let out = c.cli(app, &common::consume_args("g1", "orders", "3"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(common::json_lines(&out.stdout).len(), 3);

    // The file changes: app loses PUB on orders, without a restart.
    std::fs::write(&c.acl_path, acl_file("SUB")).unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || {
            let out = produce(app, "orders");
            !out.status.success() && stderr(&out).contains("PUB on topic 'orders'")
        }),
        "the ACL file change never took effect"
    );
    // A file that does not parse is refused; the last good one stays.
    std::fs::write(&c.acl_path, "this is [not toml").unwrap();
    std::fs::write(&c.acl_path, acl_file("PUB")).unwrap();
    assert!(wait_until(Duration::from_secs(20), || produce(
        app, "orders"
    )
    .status
    .success()));
    // PUB only: a consumer is refused at once with the reason (it used to
    // wait out --idle-timeout and exit 0 having read nothing).
    assert_refused(
        &c.cli(app, &common::consume_args("g1", "orders", "3")),
        "SUB on topic 'orders'",
    );
}

#[test]
fn acl_raw_requests_get_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path());
    let admin = Credentials::new("admin", ADMIN_SECRET);
    c.create_orders();
    let broker = c.broker_addr();
    let app = Credentials::new("app", APP_SECRET);
    let h = Header::request(1, skylark::codec::Command::SendMessage);

    // The right account works.
    let good = signed(h, &send_req("orders"), &app, now_ms());
    let f = exchange(&broker, &good);
    assert!(is_ok(&f), "{:?}", error_of(&f));

    let refused = |frame: &[u8]| error_of(&exchange(&broker, frame));
    // Replayed inside the window: the very same signed bytes again, on a
    // new connection, are refused (the nonce makes honest repeats differ).
    let e = refused(&good);
    assert_eq!(e.code, ErrorCode::AuthFailed, "{e:?}");
    assert!(e.message.contains("replayed request"), "{e:?}");
    let again = signed(h, &send_req("orders"), &app, now_ms());
    assert!(is_ok(&exchange(&broker, &again)), "a fresh signature works");
    let e = refused(&unsigned(h, &send_req("orders")));
    assert_eq!(e.code, ErrorCode::AuthFailed, "{e:?}");
    let wrong = Credentials::new("app", "wrong-secret");
    let e = refused(&signed(h, &send_req("orders"), &wrong, now_ms()));
    assert_eq!(e.code, ErrorCode::AuthFailed, "{e:?}");
    assert!(!e.message.contains("wrong-secret") && !e.message.contains(APP_SECRET));
    // Replayed: a valid signature with a timestamp a minute old.
    let e = refused(&signed(h, &send_req("orders"), &app, now_ms() - 60_000));
    assert_eq!(e.code, ErrorCode::AuthFailed, "{e:?}");
    assert!(e.message.contains("window"), "{e:?}");
    // Tampered: signed for `orders`, the topic changed on the way.
    let mut frame = signed(h, &send_req("orders"), &app, now_ms()).to_vec();
    let at = frame.windows(6).position(|w| w == b"orders").unwrap();
    frame[at..at + 6].copy_from_slice(b"ordery");
    let e = refused(&frame);
    assert_eq!(e.code, ErrorCode::AuthFailed, "{e:?}");
    // No PUB on the topic.
    let e = refused(&signed(h, &send_req("payroll"), &app, now_ms()));
    assert_eq!(e.code, ErrorCode::NoPermission, "{e:?}");
    assert!(e.message.contains("PUB on topic 'payroll'"), "{e:?}");
    // An admin command from a non-admin account.
    let del = Header::request(2, skylark::codec::Command::DeleteTopic);
    let body = skylark::codec::DeleteTopicRequest {
        topic: "orders".into(),
    };
    let e = refused(&signed(del, &body, &app, now_ms()));
    assert_eq!(e.code, ErrorCode::NoPermission, "{e:?}");
    // Said in the user's words, not as the internal command name.
    let want = "access key 'app' lacks admin rights needed to delete topic 'orders'";
    assert!(e.message.contains(want), "{e:?}");
    // The NameServer checks too.
    let list = Header::request(3, skylark::codec::Command::GetTopicList);
    let e = error_of(&exchange(
        &c.namesrv(),
        &unsigned(list, &GetTopicListRequest {}),
    ));
    assert_eq!(e.code, ErrorCode::AuthFailed, "{e:?}");
    let f = exchange(
        &c.namesrv(),
        &signed(list, &GetTopicListRequest {}, &admin, now_ms()),
    );
    assert!(is_ok(&f));
}

/// The issue's attack: one RegisterBroker frame naming the real broker
/// with an attacker's address. Without the cluster's broker credential it
/// is refused, the route keeps the real address and no made-up cluster
/// appears.
#[test]
fn acl_forged_register_broker_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path());
    let admin = Some(("admin", ADMIN_SECRET));
    c.create_orders();
    let forged = RegisterBrokerRequest {
        cluster_name: "EvilCluster".into(),
        broker_name: "broker-a".into(),
        broker_id: 0,
        broker_addr: "127.0.0.1:1".into(),
        ha_addr: None,
        topics: vec![TopicConfig {
            name: "orders".into(),
            ..TopicConfig::default()
        }],
        data_version: u64::MAX / 2,
        ..RegisterBrokerRequest::default()
    };
    let h = Header::request(7, skylark::codec::Command::RegisterBroker);
    let ns = c.namesrv();
    let e = error_of(&exchange(&ns, &unsigned(h, &forged)));
    assert_eq!(e.code, ErrorCode::AuthFailed, "{e:?}");
    for who in [
        Credentials::new("app", APP_SECRET),
        Credentials::new("admin", ADMIN_SECRET),
    ] {
        let e = error_of(&exchange(&ns, &signed(h, &forged, &who, now_ms())));
        assert_eq!(e.code, ErrorCode::NoPermission, "{e:?}");
        assert!(e.message.contains("broker credential"), "{e:?}");
    }
    let e = error_of(&exchange(
        &ns,
        &signed(h, &forged, &Credentials::new("broker", "guess"), now_ms()),
    ));
    assert_eq!(e.code, ErrorCode::AuthFailed, "{e:?}");

    let route = c.cli(
        admin,
        &["admin", "--json", "topic", "route", "--name", "orders"],
    );
    let text = String::from_utf8_lossy(&route.stdout);
    assert!(route.status.success(), "{}", stderr(&route));
    assert!(text.contains(&c.broker_addr()), "{text}");
    assert!(!text.contains("127.0.0.1:1\""), "{text}");
    let clusters = c.cli(admin, &["admin", "--json", "cluster", "list"]);
    assert!(!String::from_utf8_lossy(&clusters.stdout).contains("EvilCluster"));
}

/// Reads from the HA port until a 20-byte chunk header arrives (true) or
/// the master closes the connection (false).
fn ha_answers(port: u16, first: &[u8]) -> bool {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(first).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    while got.len() < 20 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    true
}

#[test]
fn acl_fake_slave_cannot_pull_the_ha_stream() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path());
    let offset0 = 0u64.to_be_bytes();
    // A plain slave report: the stream is not served.
    assert!(!ha_answers(c.ha_port, &offset0));
    let hello = |creds: &Credentials| {
        let mut v = u64::from_be_bytes(*b"SKYLKHA1").to_be_bytes().to_vec();
        v.extend(ha_hello(creds, now_ms()));
        v.extend_from_slice(&offset0);
        v
    };
    // A valid account that is not the broker credential, a wrong secret.
    assert!(!ha_answers(
        c.ha_port,
        &hello(&Credentials::new("app", APP_SECRET))
    ));
    assert!(!ha_answers(
        c.ha_port,
        &hello(&Credentials::new("broker", "guess"))
    ));
    // The cluster's broker credential gets the stream (a heartbeat at least).
    assert!(ha_answers(
        c.ha_port,
        &hello(&Credentials::new("broker", BROKER_SECRET))
    ));
}

/// With ACL on, the dashboard's message search (message bodies) needs an
/// admin account's signed `Authorization` header; the overview stays open.
#[test]
fn acl_dashboard_message_search_needs_an_admin_signature() {
    use skylark::codec::auth::http_authorization;
    let dir = tempfile::tempdir().unwrap();
    let dport = free_port();
    let c = Cluster::start_with_dashboard(dir.path(), Some(dport));
    c.create_orders();
    let out = c.cli(
        Some(("app", APP_SECRET)),
        &[
            "produce",
            "--topic",
            "orders",
            "--count",
            "2",
            "--body",
            "secret-body",
            "--key",
            "k1",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));

    let (code, body) = common::http_get(dport, "/api/overview", None);
    assert_eq!(code, 200, "the overview stays open: {body}");
    let path = "/api/messages?topic=orders&key=k1";
    let (code, body) = common::http_get(dport, path, None);
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("admin account"), "{body}");
    assert!(!body.contains("secret-body"));

    let sign = |who: &Credentials, p: &str| http_authorization(who, "GET", p, now_ms());
    let app = Credentials::new("app", APP_SECRET);
    let (code, body) = common::http_get(dport, path, Some(&sign(&app, path)));
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains("admin rights needed to search messages on the dashboard"),
        "{body}"
    );
    let wrong = Credentials::new("admin", "guess");
    let (code, body) = common::http_get(dport, path, Some(&sign(&wrong, path)));
    assert_eq!(code, 401, "{body}");
    assert!(!body.contains("guess") && !body.contains(ADMIN_SECRET));

    let root = Credentials::new("admin", ADMIN_SECRET);
    // Signed for another query: the signature covers path and query.
    let other = sign(&root, "/api/messages?topic=orders&key=k2");
    let (code, body) = common::http_get(dport, path, Some(&other));
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("signature mismatch"), "{body}");

    let header = sign(&root, path);
    let (code, body) = common::http_get(dport, path, Some(&header));
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["messages"].as_array().map(Vec::len), Some(2), "{body}");
    assert!(body.contains("secret-body"), "{body}");
    // The same header again: a replay.
    let (code, body) = common::http_get(dport, path, Some(&header));
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("replayed"), "{body}");
}

/// With ACL on, a controller serves `ElectMaster` only signed by an admin
/// account: unsigned → `AuthFailed`, a non-admin → `NoPermission`, the CLI
/// without credentials exits non-zero with the reason, with an admin's it
/// elects.
#[test]
fn acl_controller_election_needs_an_admin() {
    use skylark::actors::controller::client::ControllerClient;
    use skylark::actors::controller::proto::{Request, Response};
    let dir = tempfile::tempdir().unwrap();
    let acl = dir.path().join("acl.toml");
    std::fs::write(&acl, acl_file("PUB")).unwrap();
    let port = free_port();
    let mut ctl = spawn(
        &[
            "controller",
            "--node-id",
            "1",
            "--port",
            &port.to_string(),
            "--peers",
            &format!("1=127.0.0.1:{port}"),
            "--data-dir",
            &dir.path().join("ctl").display().to_string(),
        ],
        &[
            ("SKYLARK_ACL_ENABLED", "true".to_string()),
            ("SKYLARK_ACL_FILE", acl.display().to_string()),
            // The cluster's broker credential (signs its raft RPCs).
            ("SKYLARK_ACCESS_KEY", "broker".to_string()),
            ("SKYLARK_SECRET_KEY", BROKER_SECRET.to_string()),
            ("SKYLARK_RAFT_HEARTBEAT_INTERVAL_MS", "100".to_string()),
            ("SKYLARK_RAFT_ELECTION_TIMEOUT_MIN_MS", "300".to_string()),
            ("SKYLARK_RAFT_ELECTION_TIMEOUT_MAX_MS", "600".to_string()),
        ],
    );
    wait_listening(&mut ctl.0, &[port]).expect("controller up");
    let addr = format!("127.0.0.1:{port}");
    let rt = common::tokio_rt();
    let mut c = ControllerClient::new(&addr, Duration::from_secs(5));
    let hb = common::controller_heartbeat("g1", 0);
    // Heartbeats need the cluster's broker credential (signed afresh each try).
    let broker = Credentials::new("broker", BROKER_SECRET);
    let mut registered = None;
    assert!(
        wait_until(Duration::from_secs(30), || {
            registered = rt
                .block_on(c.leader_request(&hb.signed(&broker).unwrap()))
                .ok();
            matches!(registered, Some(Response::Group(_)))
        }),
        "the broker never registered: {registered:?}"
    );
    let elect = Request::ElectMaster {
        broker_name: "g1".into(),
        broker_id: Some(0),
    };
    let mut ask = |r: &Request| rt.block_on(c.leader_request(r)).expect("answered");
    match ask(&elect) {
        Response::AccessDenied(e) => {
            assert_eq!(e.code, ErrorCode::AuthFailed, "{e:?}");
            assert!(e.message.contains("admin account"), "{e:?}");
        }
        other => panic!("unsigned election not refused: {other:?}"),
    }
    let app = Credentials::new("app", APP_SECRET);
    match ask(&elect.signed(&app).unwrap()) {
        Response::AccessDenied(e) => assert_eq!(e.code, ErrorCode::NoPermission, "{e:?}"),
        other => panic!("non-admin election not refused: {other:?}"),
    }
    let wrong = Credentials::new("admin", "guess");
    match ask(&elect.signed(&wrong).unwrap()) {
        Response::AccessDenied(e) => assert_eq!(e.code, ErrorCode::AuthFailed, "{e:?}"),
        other => panic!("wrong secret not refused: {other:?}"),
    }
    let root = Credentials::new("admin", ADMIN_SECRET);
    let signed = elect.signed(&root).unwrap();
    match ask(&signed) {
        Response::Group(g) => assert_eq!(g.master_id, Some(0)),
        other => panic!("admin election refused: {other:?}"),
    }
    match ask(&signed) {
        Response::AccessDenied(e) => assert!(e.message.contains("replayed"), "{e:?}"),
        other => panic!("replayed election served: {other:?}"),
    }

    let cli = |creds: Option<(&str, &str)>| {
        let mut cmd = Command::new(bin());
        // `admin` requires a NameServer; elections never use it.
        cmd.args(["--log-level", "warn", "admin", "--namesrv", "127.0.0.1:1"])
            .args(["controller", "elect", "--controller", &addr])
            .args(["--broker-name", "g1", "--broker-id", "0"])
            .env_remove("SKYLARK_ACCESS_KEY")
            .env_remove("SKYLARK_SECRET_KEY")
            .stdin(Stdio::null());
        if let Some((a, s)) = creds {
            cmd.env("SKYLARK_ACCESS_KEY", a)
                .env("SKYLARK_SECRET_KEY", s);
        }
        cmd.output().expect("run skylark")
    };
    assert_refused(&cli(None), "admin account");
    assert_refused(
        &cli(Some(("app", APP_SECRET))),
        "admin rights needed to elect a master (admin controller elect)",
    );
    let out = cli(Some(("admin", ADMIN_SECRET)));
    assert!(out.status.success(), "{}", stderr(&out));
}

fn queue_offset(f: &RawFrame) -> u64 {
    match f.decode_body::<Result<SendResult, WireError>>() {
        Ok(Ok(r)) => r.queue_offset,
        other => panic!("expected SendOk, got {other:?}"),
    }
}

/// A signed request captured and sent again after the broker restarted
/// (its replay cache empty, the timestamp still inside the window) is
/// refused: the restarted server takes nothing signed before it started.
#[test]
fn acl_a_request_captured_before_a_restart_is_refused_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::start(dir.path());
    c.create_orders();
    let app = Credentials::new("app", APP_SECRET);
    let h = Header::request(1, skylark::codec::Command::SendMessage);
    let captured = signed(h, &send_req("orders"), &app, now_ms());
    assert_eq!(queue_offset(&exchange(&c.broker_addr(), &captured)), 0);

    c.restart_broker();
    let e = error_of(&exchange(&c.broker_addr(), &captured));
    assert_eq!(e.code, ErrorCode::AuthFailed, "{e:?}");
    assert!(e.message.contains("before"), "{e:?}");
    assert!(e.message.contains("when this server started"), "{e:?}");
    // Stored once: a fresh request gets the next offset.
    let fresh = signed(h, &send_req("orders"), &app, now_ms());
    assert_eq!(queue_offset(&exchange(&c.broker_addr(), &fresh)), 1);
    assert!(auth_refusals(c.broker_metrics, "stale") >= 1);
}

/// Every kind of refusal counts in `skylark_auth_refusals_total{reason}`
/// and is logged at WARN with peer, access key, request and reason (never
/// a secret); a flood of one kind from one peer logs one line.
#[test]
fn acl_refusals_are_counted_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path());
    c.create_orders();
    let broker = c.broker_addr();
    let app = Credentials::new("app", APP_SECRET);
    let h = Header::request(1, skylark::codec::Command::SendMessage);
    let reasons = [
        "bad_signature",
        "unknown_key",
        "unsigned",
        "stale",
        "replayed",
        "no_permission",
    ];
    let before: Vec<u64> = reasons
        .iter()
        .map(|r| auth_refusals(c.broker_metrics, r))
        .collect();

    // A wrong secret, 20 times: counted 20 times, logged once.
    let wrong = Credentials::new("app", "wrong-secret");
    for _ in 0..20 {
        let f = exchange(&broker, &signed(h, &send_req("orders"), &wrong, now_ms()));
        assert_eq!(error_of(&f).code, ErrorCode::AuthFailed);
    }
    let line = wait_log_line(&c.broker_log, &["request refused by ACL", "bad_signature"])
        .unwrap_or_else(|seen| panic!("no refusal line in the broker log: {seen:#?}"));
    for want in [
        "WARN",
        "127.0.0.1",
        "app",
        "SendMessage",
        "signature mismatch",
    ] {
        assert!(line.contains(want), "{want:?} missing: {line}");
    }
    assert!(!line.contains("wrong-secret") && !line.contains(APP_SECRET));

    let ghost = Credentials::new("ghost", "x");
    exchange(&broker, &signed(h, &send_req("orders"), &ghost, now_ms()));
    exchange(&broker, &unsigned(h, &send_req("orders")));
    exchange(
        &broker,
        &signed(h, &send_req("orders"), &app, now_ms() - 60_000),
    );
    let good = signed(h, &send_req("orders"), &app, now_ms());
    assert!(is_ok(&exchange(&broker, &good)));
    exchange(&broker, &good);
    exchange(&broker, &signed(h, &send_req("payroll"), &app, now_ms()));
    let lines = [
        ("unknown_key", "ghost"),
        ("unsigned", "SendMessage"),
        ("stale", "app"),
        ("replayed", "app"),
        ("no_permission", "payroll"),
    ];
    for (reason, want) in lines {
        let seen = wait_log_line(&c.broker_log, &["request refused by ACL", reason, want])
            .map_err(|seen| format!("no {reason} line: {seen:#?}"))
            .unwrap();
        assert!(!seen.contains(APP_SECRET), "{seen}");
        let _ = seen;
    }
    let after: Vec<u64> = reasons
        .iter()
        .map(|r| auth_refusals(c.broker_metrics, r))
        .collect();
    let delta: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    assert_eq!(delta, [20, 1, 1, 1, 1, 1], "{reasons:?}");

    // The NameServer counts and logs its refusals too.
    let ns_before = auth_refusals(c.namesrv_metrics, "unsigned");
    let list = Header::request(3, skylark::codec::Command::GetTopicList);
    exchange(&c.namesrv(), &unsigned(list, &GetTopicListRequest {}));
    assert_eq!(auth_refusals(c.namesrv_metrics, "unsigned"), ns_before + 1);
    wait_log_line(
        &c.namesrv_log,
        &["request refused by ACL", "unsigned", "GetTopicList"],
    )
    .unwrap_or_else(|seen| panic!("no refusal line in the NameServer log: {seen:#?}"));
}
