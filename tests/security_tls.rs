//! TLS end to end (issue 15): certificates made here with rcgen, a
//! NameServer and a broker with `tls_mode = enforcing` as real processes,
//! the broker registering over TLS, the CLI producing and consuming over
//! TLS, a plain client refused; and a permissive port taking both.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use bytes::BytesMut;
use common::{bin, free_port, json_lines, make_certs, wait_listening, wait_until, KillOnDrop};
use skylark::codec::{FrameCodec, GetTopicListRequest, OutFrame, WireError};
use tokio_util::codec::Encoder;

/// Writes ca.pem, and server.pem / server.key signed by it for 127.0.0.1
/// and localhost; `other-ca.pem` is a CA that signed nothing.
fn tls_env(dir: &Path, mode: &str) -> Vec<(String, String)> {
    vec![
        ("SKYLARK_TLS_MODE".into(), mode.into()),
        (
            "SKYLARK_TLS_CERT_FILE".into(),
            dir.join("server.pem").display().to_string(),
        ),
        (
            "SKYLARK_TLS_KEY_FILE".into(),
            dir.join("server.key").display().to_string(),
        ),
    ]
}

/// A server process with `args` and `env` (and none of the clients' TLS
/// variables), its log (WARN and up) on `stderr`.
fn spawn_with(args: &[String], env: &[(String, String)], stderr: Stdio) -> KillOnDrop {
    let mut c = Command::new(bin());
    c.args(["--log-level", "warn"]).args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    KillOnDrop(
        c.env_remove("SKYLARK_TLS_CA")
            .env_remove("SKYLARK_TLS_CERT")
            .env_remove("SKYLARK_TLS_KEY")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn skylark"),
    )
}

fn spawn(args: &[String], env: &[(String, String)]) -> KillOnDrop {
    spawn_with(args, env, Stdio::inherit())
}

/// [`spawn`], the process's log lines on the channel returned.
fn spawn_logged(
    args: &[String],
    env: &[(String, String)],
) -> (KillOnDrop, std::sync::mpsc::Receiver<String>) {
    let mut p = spawn_with(args, env, Stdio::piped());
    let (lines, _) = common::pipe_lines(p.0.stderr.take().expect("stderr piped"));
    (p, lines)
}

/// Waits up to 30 s for a line of `lines` for which `want` holds; every
/// line read meanwhile goes to `seen`.
fn wait_line(
    lines: &std::sync::mpsc::Receiver<String>,
    seen: &mut Vec<String>,
    want: impl Fn(&str) -> bool,
) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(l) => {
                let hit = want(&l);
                seen.push(l);
                if hit {
                    return true;
                }
            }
            Err(_) => return false,
        }
    }
    false
}

fn namesrv(dir: &Path, mode: &str) -> (KillOnDrop, u16) {
    let port = free_port();
    let mut ns = spawn(
        &["namesrv".into(), "--port".into(), port.to_string()],
        &tls_env(dir, mode),
    );
    wait_listening(&mut ns.0, &[port]).expect("namesrv up");
    (ns, port)
}

fn cli(namesrv_port: u16, ca: Option<&Path>, args: &[&str]) -> Output {
    let mut c = Command::new(bin());
    c.args(["--log-level", "warn"])
        .args(args)
        .env("SKYLARK_NAMESRV", format!("127.0.0.1:{namesrv_port}"))
        .env_remove("SKYLARK_TLS_CA")
        .stdin(Stdio::null());
    if let Some(ca) = ca {
        c.arg("--tls-ca").arg(ca);
    }
    c.output().expect("run skylark")
}

/// The CLI over TLS presenting `client` (`<dir>/<client>.pem`/`.key`) if given.
fn cli_as(namesrv_port: u16, dir: &Path, client: Option<&str>, args: &[&str]) -> Output {
    let mut c = Command::new(bin());
    c.args(["--log-level", "warn", "--tls-ca"])
        .arg(dir.join("ca.pem"))
        .env("SKYLARK_NAMESRV", format!("127.0.0.1:{namesrv_port}"))
        .env_remove("SKYLARK_TLS_CERT")
        .env_remove("SKYLARK_TLS_KEY")
        .stdin(Stdio::null());
    if let Some(name) = client {
        c.arg("--tls-cert")
            .arg(dir.join(format!("{name}.pem")))
            .arg("--tls-key")
            .arg(dir.join(format!("{name}.key")));
    }
    c.args(args).output().expect("run skylark")
}

/// One request (a topic list) over TLS to `port`, presenting `client`'s
/// certificate if given.
fn rpc_over_tls(port: u16, dir: &Path, client: Option<&str>) -> Result<(), String> {
    use skylark::actors::remoting::RpcClient;
    use skylark::actors::tls::ClientTls;
    let mut tls = ClientTls::from_ca_file(&dir.join("ca.pem").display().to_string())?;
    if let Some(name) = client {
        let file = |ext: &str| dir.join(format!("{name}.{ext}")).display().to_string();
        tls = tls.with_client_cert(&file("pem"), &file("key"))?;
    }
    actix::System::new().block_on(async move {
        let addr = format!("127.0.0.1:{port}");
        let c = RpcClient::connect_tls(
            &addr,
            Duration::from_secs(5),
            skylark::codec::DEFAULT_MAX_FRAME_SIZE,
            Some(&tls),
        )
        .await
        .map_err(|e| e.to_string())?;
        // An answer, even an error frame (a broker does not serve topic
        // lists), means the request crossed the TLS session.
        match c.call(&GetTopicListRequest {}).await {
            Ok(_) | Err(skylark::codec::ProtocolError::Remote(_)) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    })
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A NameServer, and a master (broker id 0) with its slave (id 1), as
/// real processes: all with `env`; the brokers also trust `<dir>/ca.pem`
/// (registration, sync and replication over TLS) and get `broker_env`.
struct MasterSlave {
    _procs: [KillOnDrop; 3],
    ns_port: u16,
    mport: u16,
    sport: u16,
}

impl MasterSlave {
    fn start(dir: &Path, env: &[(String, String)], broker_env: &[(String, String)]) -> MasterSlave {
        let ns_port = free_port();
        let mut ns = spawn(
            &["namesrv".into(), "--port".into(), ns_port.to_string()],
            env,
        );
        wait_listening(&mut ns.0, &[ns_port]).expect("namesrv up");
        let mut env = env.to_vec();
        env.extend([
            (
                "SKYLARK_TLS_CA_FILE".to_string(),
                dir.join("ca.pem").display().to_string(),
            ),
            ("SKYLARK_STORE__SEGMENT_SIZE".into(), "67108864".into()),
            ("SKYLARK_REGISTER_INTERVAL_SECS".into(), "1".into()),
            ("SKYLARK_METADATA_SYNC_INTERVAL_SECS".into(), "1".into()),
            ("SKYLARK_STORE__DISK_SOFT_LIMIT_RATIO".into(), "0.99".into()),
            ("SKYLARK_STORE__DISK_HARD_LIMIT_RATIO".into(), "1.0".into()),
        ]);
        env.extend_from_slice(broker_env);
        let start = |id: u64, port: u16| {
            let mut e = env.clone();
            e.push(("SKYLARK_BROKER_ID".into(), id.to_string()));
            e.push(("SKYLARK_HA_PORT".into(), (port + 1).to_string()));
            let data = dir.join(format!("broker-{id}"));
            let mut b = spawn(
                &[
                    "broker".into(),
                    "--namesrv".into(),
                    format!("127.0.0.1:{ns_port}"),
                    "--port".into(),
                    port.to_string(),
                    "--data-dir".into(),
                    data.display().to_string(),
                ],
                &e,
            );
            wait_listening(&mut b.0, &[port]).expect("broker up");
            b
        };
        let (mport, sport) = (free_port(), free_port());
        let master = start(0, mport);
        let slave = start(1, sport);
        MasterSlave {
            _procs: [ns, master, slave],
            ns_port,
            mport,
            sport,
        }
    }
}

/// One plain frame on a plain socket; the answer (an error) if any.
fn plain_exchange(port: u16) -> Option<WireError> {
    let mut out = BytesMut::new();
    FrameCodec::default()
        .encode(OutFrame::request(1, &GetTopicListRequest {}), &mut out)
        .unwrap();
    common::raw_exchange(&format!("127.0.0.1:{port}"), &out)?
        .decode_body::<Result<serde::de::IgnoredAny, WireError>>()
        .ok()?
        .err()
}

/// A broker with `tls_mode = enforcing` registering over TLS with the
/// NameServer on `ns_port`, listening when this returns; extra `env` too.
fn enforcing_broker(dir: &Path, ns_port: u16, extra: &[(String, String)]) -> (KillOnDrop, u16) {
    let broker_port = free_port();
    let mut env = tls_env(dir, "enforcing");
    env.extend([
        // The broker's own connections (registration) use TLS too.
        (
            "SKYLARK_TLS_CA_FILE".to_string(),
            dir.join("ca.pem").display().to_string(),
        ),
        ("SKYLARK_HA_PORT".into(), free_port().to_string()),
        ("SKYLARK_STORE__SEGMENT_SIZE".into(), "67108864".into()),
        ("SKYLARK_REGISTER_INTERVAL_SECS".into(), "1".into()),
        ("SKYLARK_STORE__DISK_SOFT_LIMIT_RATIO".into(), "0.99".into()),
        ("SKYLARK_STORE__DISK_HARD_LIMIT_RATIO".into(), "1.0".into()),
    ]);
    env.extend(extra.iter().cloned());
    let data = dir.join(format!("broker-{broker_port}"));
    let mut broker = spawn(
        &[
            "broker".into(),
            "--namesrv".into(),
            format!("127.0.0.1:{ns_port}"),
            "--port".into(),
            broker_port.to_string(),
            "--data-dir".into(),
            data.display().to_string(),
        ],
        &env,
    );
    wait_listening(&mut broker.0, &[broker_port]).expect("broker up");
    (broker, broker_port)
}

#[test]
fn tls_enforcing_serves_tls_clients_and_refuses_plain_ones() {
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
    let ca = dir.path().join("ca.pem");
    let (_ns, ns_port) = namesrv(dir.path(), "enforcing");

    let (_broker, broker_port) = enforcing_broker(dir.path(), ns_port, &[]);
    let addr = format!("127.0.0.1:{broker_port}");
    assert!(
        wait_until(Duration::from_secs(30), || {
            let out = cli(ns_port, Some(&ca), &["admin", "cluster", "list"]);
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains(&addr)
        }),
        "the broker never registered over TLS"
    );

    // Plain TCP: refused with a reason, on both ports.
    for port in [ns_port, broker_port] {
        let e = plain_exchange(port).expect("a plain client gets an error frame");
        assert!(e.message.contains("TLS"), "{e:?}");
    }
    let out = cli(ns_port, None, &["admin", "cluster", "list"]);
    assert!(!out.status.success());
    // Named as a TLS problem, not as an ACL one ("auth failed").
    let err = stderr(&out);
    assert!(
        err.contains("TLS required: this port accepts TLS connections only"),
        "{err}"
    );
    assert!(!err.contains("auth failed"), "{err}");
    // A CA that did not sign the server's certificate: refused.
    let other = dir.path().join("other-ca.pem");
    let out = cli(ns_port, Some(&other), &["admin", "cluster", "list"]);
    assert!(!out.status.success(), "an unknown CA was accepted");

    // Produce and consume over TLS.
    let out = cli(
        ns_port,
        Some(&ca),
        &[
            "admin", "topic", "create", "--name", "secure", "--queues", "2",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cli(
        ns_port,
        Some(&ca),
        &[
            "produce", "--topic", "secure", "--count", "5", "--body", "hi", "--json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cli(
        ns_port,
        Some(&ca),
        &common::consume_args("g", "secure", "5"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let got = json_lines(&out.stdout);
    assert_eq!(got.len(), 5);
    let mut bodies: Vec<String> = got
        .iter()
        .map(|m| m["body"].as_str().unwrap_or_default().to_string())
        .collect();
    bodies.sort();
    assert_eq!(bodies, ["hi-0", "hi-1", "hi-2", "hi-3", "hi-4"], "{got:?}");
}

#[test]
fn tls_permissive_accepts_tls_and_plain() {
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
    let ca = dir.path().join("ca.pem");
    let (_ns, port) = namesrv(dir.path(), "permissive");
    let plain = cli(port, None, &["admin", "topic", "list"]);
    assert!(plain.status.success(), "{}", stderr(&plain));
    let tls = cli(port, Some(&ca), &["admin", "topic", "list"]);
    assert!(tls.status.success(), "{}", stderr(&tls));
    assert!(plain_exchange(port).is_none(), "plain request refused");
}

/// ACL and TLS together on every port: a slave with the cluster's broker
/// credential replicates from its master over TLS (HA stream and metadata
/// sync), while clients produce and read over TLS with their own accounts.
#[test]
fn tls_and_acl_replication_reaches_the_slave() {
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
    let ca = dir.path().join("ca.pem");
    let acl = dir.path().join("acl.toml");
    std::fs::write(
        &acl,
        r#"
[[accounts]]
access_key = "broker"
secret_key = "b-secret"
broker = true
[[accounts]]
access_key = "admin"
secret_key = "a-secret"
admin = true
"#,
    )
    .unwrap();
    let mut env = tls_env(dir.path(), "enforcing");
    env.extend([
        ("SKYLARK_ACL_ENABLED".to_string(), "true".to_string()),
        ("SKYLARK_ACL_FILE".to_string(), acl.display().to_string()),
    ]);
    let creds = [
        ("SKYLARK_ACCESS_KEY".to_string(), "broker".to_string()),
        ("SKYLARK_SECRET_KEY".to_string(), "b-secret".to_string()),
    ];
    let pair = MasterSlave::start(dir.path(), &env, &creds);
    let (ns_port, mport, sport) = (pair.ns_port, pair.mport, pair.sport);
    let admin = |args: &[&str]| {
        let mut c = Command::new(bin());
        c.args(["--log-level", "warn", "--tls-ca"])
            .arg(&ca)
            .args(args)
            .env("SKYLARK_NAMESRV", format!("127.0.0.1:{ns_port}"))
            .env("SKYLARK_ACCESS_KEY", "admin")
            .env("SKYLARK_SECRET_KEY", "a-secret")
            .stdin(Stdio::null());
        c.output().expect("run skylark")
    };
    let members = || {
        let out = admin(&["admin", "--json", "cluster", "list"]);
        json_lines(&out.stdout)
            .pop()
            .and_then(|v| v["members"].as_array().cloned())
            .unwrap_or_default()
    };
    let (maddr, saddr) = (format!("127.0.0.1:{mport}"), format!("127.0.0.1:{sport}"));
    assert!(
        wait_until(Duration::from_secs(30), || {
            let m = members();
            m.iter().any(|x| x["addr"] == maddr.as_str())
                && m.iter().any(|x| x["addr"] == saddr.as_str())
        }),
        "master and slave never both registered over TLS with the broker credential"
    );
    let out = admin(&[
        "admin",
        "topic",
        "create",
        "--name",
        "replicated",
        "--queues",
        "1",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = admin(&[
        "produce",
        "--topic",
        "replicated",
        "--count",
        "20",
        "--size",
        "100",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        wait_until(Duration::from_secs(30), || {
            let m = members();
            let find = |a: &str| m.iter().find(|x| x["addr"] == a).cloned();
            let (Some(master), Some(slave)) = (find(&maddr), find(&saddr)) else {
                return false;
            };
            slave["master_connected"].as_bool() == Some(true)
                && master["max_offset"].as_u64().unwrap_or(0) > 0
                && master["max_offset"] == slave["max_offset"]
        }),
        "the slave never caught up over TLS: {:?}",
        members()
    );
}

#[test]
fn tls_and_acl_keys_of_the_conf_files_load() {
    use skylark::actors::config::{BrokerConfig, NameServerConfig};
    use skylark::actors::tls::TlsMode;
    let b: BrokerConfig = skylark::config::load(Some(Path::new("conf/broker.toml")), &[]).unwrap();
    assert_eq!(b.tls_mode, TlsMode::Disabled);
    assert!(!b.acl_enabled && b.acl_file == "conf/acl.toml" && b.access_key.is_none());
    let with_secret = BrokerConfig {
        secret_key: Some(skylark::actors::acl::Secret("hunter2".into())),
        ..b
    };
    assert!(!format!("{with_secret:?}").contains("hunter2"));
    let n: NameServerConfig =
        skylark::config::load(Some(Path::new("conf/namesrv.toml")), &[]).unwrap();
    assert_eq!(n.tls_mode, TlsMode::Disabled);
    assert!(!n.acl_enabled);
    // The modes are spelled in lowercase.
    let mode: TlsMode = serde_json::from_str("\"enforcing\"").unwrap();
    assert_eq!(mode, TlsMode::Enforcing);
}

/// Mutual TLS: with `tls_client_ca_file` on the NameServer and both
/// brokers (enforcing), a client without a certificate, or with one from
/// another CA, is refused at the handshake; the CLI with a certificate from
/// the CA produces and consumes; the brokers present theirs when they
/// register and when the slave replicates from the master.
#[test]
fn tls_client_certificates_are_required_when_a_client_ca_is_set() {
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
    let ca = dir.path().join("ca.pem");
    let mut env = tls_env(dir.path(), "enforcing");
    env.push((
        "SKYLARK_TLS_CLIENT_CA_FILE".to_string(),
        ca.display().to_string(),
    ));
    let pair = MasterSlave::start(dir.path(), &env, &[]);
    let (ns_port, mport, sport) = (pair.ns_port, pair.mport, pair.sport);
    let d = dir.path();

    // No client certificate, or one from another CA: refused, on the
    // NameServer and on the broker's own port; the CA's client: served.
    for who in [None, Some("stranger")] {
        let out = cli_as(ns_port, d, who, &["admin", "topic", "list"]);
        assert!(!out.status.success(), "{who:?} accepted by the NameServer");
        for port in [ns_port, mport] {
            let r = rpc_over_tls(port, d, who);
            assert!(r.is_err(), "{who:?} served on port {port}");
        }
    }
    for port in [ns_port, mport] {
        rpc_over_tls(port, d, Some("client")).expect("the CA's client is served");
    }

    let members = || {
        let out = cli_as(
            ns_port,
            d,
            Some("client"),
            &["admin", "--json", "cluster", "list"],
        );
        json_lines(&out.stdout)
            .pop()
            .and_then(|v| v["members"].as_array().cloned())
            .unwrap_or_default()
    };
    let (maddr, saddr) = (format!("127.0.0.1:{mport}"), format!("127.0.0.1:{sport}"));
    assert!(
        wait_until(Duration::from_secs(30), || {
            let m = members();
            m.iter().any(|x| x["addr"] == maddr.as_str())
                && m.iter().any(|x| x["addr"] == saddr.as_str())
        }),
        "the brokers never registered with their client certificates"
    );
    let out = cli_as(
        ns_port,
        d,
        Some("client"),
        &[
            "admin", "topic", "create", "--name", "mutual", "--queues", "1",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cli_as(
        ns_port,
        d,
        Some("client"),
        &[
            "produce", "--topic", "mutual", "--count", "5", "--body", "m",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cli_as(
        ns_port,
        d,
        Some("client"),
        &common::consume_args("g", "mutual", "5"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json_lines(&out.stdout).len(), 5);
    assert!(
        wait_until(Duration::from_secs(30), || {
            let m = members();
            let find = |a: &str| m.iter().find(|x| x["addr"] == a).cloned();
            let (Some(master), Some(slave)) = (find(&maddr), find(&saddr)) else {
                return false;
            };
            slave["master_connected"].as_bool() == Some(true)
                && master["max_offset"].as_u64().unwrap_or(0) > 0
                && master["max_offset"] == slave["max_offset"]
        }),
        "the slave never replicated over mutual TLS: {:?}",
        members()
    );
}

/// One RocketMQ remoting request over `stream`; its answer.
async fn remoting_call<S>(
    stream: &mut S,
    req: &skylark::codec::remoting::RemotingCommand,
) -> std::io::Result<skylark::codec::remoting::RemotingCommand>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut out = BytesMut::new();
    skylark::codec::remoting::encode_frame(req, &mut out).unwrap();
    stream.write_all(&out).await?;
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await?;
    let mut rest = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut rest).await?;
    skylark::codec::remoting::decode_frame(bytes::Bytes::from(rest))
        .map_err(|e| std::io::Error::other(e.to_string()))
}

/// The RocketMQ remoting ports under `tls_mode = enforcing`: a TLS client
/// trusting the CA gets the route (naming the broker's remoting address)
/// and sends over TLS; a plain connection is closed without an answer.
#[test]
fn tls_rocketmq_compat_remoting_ports_serve_tls_and_refuse_plain() {
    use skylark::codec::remoting::{request, RemotingCommand};
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
    let ca = dir.path().join("ca.pem");
    let (ns_port, ns_remoting, broker_remoting) = (free_port(), free_port(), free_port());
    let mut ns_env = tls_env(dir.path(), "enforcing");
    ns_env.push(("SKYLARK_REMOTING_PORT".into(), ns_remoting.to_string()));
    let mut ns = spawn(
        &["namesrv".into(), "--port".into(), ns_port.to_string()],
        &ns_env,
    );
    wait_listening(&mut ns.0, &[ns_port, ns_remoting]).expect("namesrv up");
    let (_broker, _) = enforcing_broker(
        dir.path(),
        ns_port,
        &[("SKYLARK_REMOTING_PORT".into(), broker_remoting.to_string())],
    );
    assert!(
        wait_until(Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", broker_remoting)).is_ok()
        }),
        "the broker's remoting port never listened"
    );
    let out = cli(
        ns_port,
        Some(&ca),
        &["produce", "--topic", "secure", "--body", "hi"],
    );
    assert!(out.status.success(), "{}", stderr(&out));

    let tls = skylark::actors::tls::ClientTls::from_ca_file(&ca.display().to_string()).unwrap();
    common::tokio_rt().block_on(async {
        let connect = |port: u16| {
            let tls = &tls;
            async move {
                let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
                tls.connect(&format!("127.0.0.1:{port}"), tcp).await
            }
        };
        // The route over TLS names the broker's remoting port.
        let mut route = RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC, 1);
        route.ext_fields.insert("topic".into(), "secure".into());
        let mut s = connect(ns_remoting).await.expect("TLS to the NameServer");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let want = format!("127.0.0.1:{broker_remoting}");
        loop {
            let r = remoting_call(&mut s, &route).await.expect("route over TLS");
            if r.code == 0 && String::from_utf8_lossy(&r.body).contains(&want) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no route naming {want}: {r:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // A send over TLS to the broker's remoting port.
        let mut send =
            RemotingCommand::request(request::SEND_MESSAGE, 2).with_body(&b"over tls"[..]);
        for (k, v) in [
            ("producerGroup", "tls-pg"),
            ("topic", "secure"),
            ("queueId", "0"),
            ("sysFlag", "0"),
            ("bornTimestamp", "0"),
            ("flag", "0"),
        ] {
            send.ext_fields.insert(k.into(), v.into());
        }
        let mut b = connect(broker_remoting).await.expect("TLS to the broker");
        let r = remoting_call(&mut b, &send).await.expect("send over TLS");
        assert_eq!(r.code, 0, "{r:?}");
        // Plain TCP on either enforcing port: closed, no answer.
        for port in [ns_remoting, broker_remoting] {
            let mut plain = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            let r =
                tokio::time::timeout(Duration::from_secs(10), remoting_call(&mut plain, &route))
                    .await
                    .expect("the server closes a plain connection");
            assert!(r.is_err(), "a plain client was answered on {port}: {r:?}");
        }
    });
    // The message sent over TLS is there.
    let out = cli(
        ns_port,
        Some(&ca),
        &common::consume_args("tls-g", "secure", "2"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let bodies: Vec<String> = json_lines(&out.stdout)
        .iter()
        .map(|m| m["body"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(bodies.contains(&"over tls".to_string()), "{bodies:?}");
}

/// Waits up to 30 s for the dashboard on `dash_port` to show the broker on
/// `broker_port` read (no error, its CommitLog end known).
fn assert_dashboard_reads(dash_port: u16, broker_port: u16) {
    let addr = format!("127.0.0.1:{broker_port}");
    let mut last = String::new();
    let sampled = wait_until(Duration::from_secs(30), || {
        let (code, body) = common::http_get(dash_port, "/api/cluster", None);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        last = format!("{code} {body}");
        v["brokers"].as_array().is_some_and(|rows| {
            rows.iter().any(|r| {
                r["addr"] == addr.as_str() && r["error"].is_null() && r["commit_log_end"].is_u64()
            })
        })
    });
    assert!(
        sampled,
        "the dashboard never read the broker over TLS: {last}"
    );
}

/// The dashboard reads brokers whose ports are TLS-only and require client
/// certificates: `skylark namesrv --tls-ca/--tls-cert/--tls-key` set the
/// NameServer's `tls_ca_file`, `tls_client_cert_file` and
/// `tls_client_key_file`, which its sampler connects to brokers with.
#[test]
fn tls_dashboard_samples_enforcing_brokers_with_the_namesrv_tls_flags() {
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
    let d = dir.path();
    let file = |name: &str| d.join(name).display().to_string();
    let (ns_port, dash_port) = (free_port(), free_port());
    let mut env = tls_env(d, "enforcing");
    env.extend([
        ("SKYLARK_DASHBOARD_PORT".to_string(), dash_port.to_string()),
        ("SKYLARK_DASHBOARD_SAMPLE_SECS".into(), "1".into()),
    ]);
    let args: Vec<String> = [
        "--tls-ca",
        &file("ca.pem"),
        "--tls-cert",
        &file("client.pem"),
        "--tls-key",
        &file("client.key"),
        "namesrv",
        "--port",
        &ns_port.to_string(),
    ]
    .map(String::from)
    .to_vec();
    let mut ns = spawn(&args, &env);
    wait_listening(&mut ns.0, &[ns_port, dash_port]).expect("namesrv and dashboard up");
    let client_ca = [("SKYLARK_TLS_CLIENT_CA_FILE".to_string(), file("ca.pem"))];
    let (_broker, broker_port) = enforcing_broker(d, ns_port, &client_ca);
    assert_dashboard_reads(dash_port, broker_port);
}

/// `skylark standalone` with `tls_mode = enforcing` and client
/// certificates required: its NameServer takes the broker's TLS settings,
/// so the dashboard reads its own broker over TLS (it dialled it in plain
/// TCP and showed it unreachable, "TLS required"), the broker registers
/// over TLS, and a client with the CA and a certificate uses both ports.
#[test]
fn tls_standalone_dashboard_reads_its_own_enforcing_broker() {
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
    let d = dir.path();
    let file = |name: &str| d.join(name).display().to_string();
    let (ns_port, broker_port, dash_port) = (free_port(), free_port(), free_port());
    let mut env = tls_env(d, "enforcing");
    env.extend([
        ("SKYLARK_TLS_CA_FILE".to_string(), file("ca.pem")),
        ("SKYLARK_TLS_CLIENT_CA_FILE".into(), file("ca.pem")),
        ("SKYLARK_HA_PORT".into(), free_port().to_string()),
    ]);
    let args: Vec<String> = [
        "standalone",
        "--namesrv-port",
        &ns_port.to_string(),
        "--broker-port",
        &broker_port.to_string(),
        "--dashboard-port",
        &dash_port.to_string(),
        "--no-metrics",
        "--no-remoting",
        "--data-dir",
        &file("data"),
    ]
    .map(String::from)
    .to_vec();
    let mut node = spawn(&args, &env);
    wait_listening(&mut node.0, &[ns_port, broker_port, dash_port]).expect("standalone up");
    assert_dashboard_reads(dash_port, broker_port);
    let out = cli_as(
        ns_port,
        d,
        Some("client"),
        &["produce", "--topic", "own", "--count", "2", "--body", "b"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cli_as(ns_port, d, None, &["admin", "cluster", "list"]);
    assert!(
        !out.status.success(),
        "a client without a certificate was served"
    );
}

/// A plain slave (no `tls_ca_file`) of a master whose HA port is TLS-only
/// is told so in the HA protocol and logs what to set, instead of reading
/// the refusal as a chunk header ("chunk of 1668244581 bytes").
#[test]
fn tls_plain_slave_is_told_the_masters_ha_port_requires_tls() {
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
    let d = dir.path();
    let (_ns, ns_port) = namesrv(d, "permissive");
    let ha = free_port();
    let (_master, _) = enforcing_broker(d, ns_port, &[("SKYLARK_HA_PORT".into(), ha.to_string())]);
    let slave_port = free_port();
    let env: Vec<(String, String)> = [
        ("SKYLARK_BROKER_ID", "1".to_string()),
        ("SKYLARK_MASTER_HA_ADDR", format!("127.0.0.1:{ha}")),
        ("SKYLARK_HA_PORT", free_port().to_string()),
        ("SKYLARK_STORE__SEGMENT_SIZE", "67108864".into()),
        ("SKYLARK_STORE__DISK_SOFT_LIMIT_RATIO", "0.99".into()),
        ("SKYLARK_STORE__DISK_HARD_LIMIT_RATIO", "1.0".into()),
    ]
    .map(|(k, v)| (k.to_string(), v))
    .to_vec();
    let args: Vec<String> = [
        "broker",
        "--namesrv",
        &format!("127.0.0.1:{ns_port}"),
        "--port",
        &slave_port.to_string(),
        "--data-dir",
        &d.join("plain-slave").display().to_string(),
    ]
    .map(String::from)
    .to_vec();
    let (_slave, lines) = spawn_logged(&args, &env);
    let mut seen = Vec::new();
    let told = wait_line(&lines, &mut seen, |l| {
        l.contains("requires TLS") || l.contains("above the limit")
    });
    let last = seen.last().cloned().unwrap_or_default();
    assert!(told, "the slave logged no reason: {seen:?}");
    assert!(
        last.contains("the master's HA port requires TLS") && last.contains("set tls_ca_file"),
        "{last}"
    );
}

/// Mutual TLS refusals are named on both sides: a client without a
/// certificate is told the server requires one, a client with one from
/// another CA that the server does not accept it (not "connection
/// closed"); the server logs one WARN per peer and reason (rate limited).
#[test]
fn tls_client_certificate_refusals_are_named_on_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
    let d = dir.path();
    let mut env = tls_env(d, "enforcing");
    env.push((
        "SKYLARK_TLS_CLIENT_CA_FILE".to_string(),
        d.join("ca.pem").display().to_string(),
    ));
    let port = free_port();
    let (mut ns, lines) =
        spawn_logged(&["namesrv".into(), "--port".into(), port.to_string()], &env);
    wait_listening(&mut ns.0, &[port]).expect("namesrv up");

    let e = rpc_over_tls(port, d, None).unwrap_err();
    assert!(
        e.contains("the server refused the TLS handshake")
            && e.contains("requires a client certificate"),
        "{e}"
    );
    let out = cli_as(port, d, None, &["admin", "topic", "list"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("requires a client certificate"),
        "{}",
        stderr(&out)
    );
    let e = rpc_over_tls(port, d, Some("stranger")).unwrap_err();
    assert!(e.contains("does not accept the client certificate"), "{e}");

    let mut seen = Vec::new();
    let refused = |l: &str, reason: &str| {
        l.contains("connection refused by TLS") && l.contains(reason) && l.contains("127.0.0.1")
    };
    assert!(
        wait_line(&lines, &mut seen, |l| refused(
            l,
            "untrusted_client_certificate"
        )),
        "no WARN for the untrusted certificate: {seen:?}"
    );
    // Two clients without a certificate, one line (the lines keep their order).
    let no_cert = seen
        .iter()
        .filter(|l| refused(l, "no_client_certificate"))
        .count();
    assert_eq!(no_cert, 1, "{seen:?}");
}
