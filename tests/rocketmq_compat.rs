//! RocketMQ remoting protocol on the NameServer (issue 17, first slice):
//! a real `skylark standalone` with `--namesrv-remoting-port`, raw TCP
//! connections, RocketMQ `RemotingCommand` frames encoded by hand here (JSON
//! and ROCKETMQ binary headers) and the answers checked field by field.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{BufMut, Bytes};
use common::{bin, free_port, wait_listening, wait_until, KillOnDrop, Standalone};
use skylark::codec::remoting::{decode_frame, RemotingCommand, SerializeType};

/// One request frame with a JSON header, written as a Java client's
/// fastjson writes it.
fn json_request(code: i32, opaque: i32, ext: &[(&str, &str)]) -> Vec<u8> {
    let ext: Vec<String> = ext
        .iter()
        .map(|(k, v)| format!("\"{k}\":\"{v}\""))
        .collect();
    let header = format!(
        "{{\"code\":{code},\"extFields\":{{{}}},\"flag\":0,\"language\":\"JAVA\",\"opaque\":{opaque},\"serializeTypeCurrentRPC\":\"JSON\",\"version\":317}}",
        ext.join(",")
    );
    frame(0, header.as_bytes())
}

/// One request frame with a ROCKETMQ binary header.
fn binary_request(code: i16, opaque: i32, ext: &[(&str, &str)]) -> Vec<u8> {
    let mut h = Vec::new();
    h.put_i16(code);
    h.put_u8(9); // GO
    h.put_i16(317);
    h.put_i32(opaque);
    h.put_i32(0); // a request, not oneway
    h.put_i32(0); // no remark
    let mut fields = Vec::new();
    for (k, v) in ext {
        fields.put_i16(k.len() as i16);
        fields.put_slice(k.as_bytes());
        fields.put_i32(v.len() as i32);
        fields.put_slice(v.as_bytes());
    }
    h.put_i32(fields.len() as i32);
    h.put_slice(&fields);
    frame(1, &h)
}

fn frame(serialize_type: u8, header: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.put_i32(4 + header.len() as i32);
    f.put_u32((u32::from(serialize_type) << 24) | header.len() as u32);
    f.put_slice(header);
    f
}

/// A connection to the remoting port reading whole answer frames.
struct Conn(TcpStream);

impl Conn {
    fn open(port: u16) -> Conn {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the remoting port");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Conn(s)
    }

    /// Sends `frame`, reads one answer; `None` if the server closed first.
    fn call(&mut self, frame: &[u8]) -> Option<RemotingCommand> {
        let _ = self.0.write_all(frame);
        let mut len = [0u8; 4];
        self.0.read_exact(&mut len).ok()?;
        let mut rest = vec![0u8; i32::from_be_bytes(len) as usize];
        self.0.read_exact(&mut rest).ok()?;
        Some(decode_frame(Bytes::from(rest)).expect("a well-formed answer"))
    }

    /// Whether the server closed the connection (no answer within 10 s
    /// counts as not closed).
    fn closed_by_server(&mut self) -> bool {
        let mut b = [0u8; 1];
        match self.0.read(&mut b) {
            Ok(n) => n == 0,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

fn body_json(cmd: &RemotingCommand) -> serde_json::Value {
    serde_json::from_slice(&cmd.body).expect("a JSON body")
}

fn start() -> (tempfile::TempDir, Standalone, u16) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let node = Standalone::start(
        dir.path(),
        &[
            "--namesrv-remoting-port",
            &port.to_string(),
            "--no-dashboard",
        ],
    );
    (dir, node, port)
}

#[test]
fn rocketmq_compat_namesrv_answers_route_and_cluster_in_both_codecs() {
    let (_dir, node, port) = start();
    let out = node.cli(&["produce", "--topic", "RmqRoute", "--body", "hello"]);
    assert!(out.status.success(), "produce: {out:?}");

    // The route appears once the broker has registered the new topic.
    let mut conn = Conn::open(port);
    let mut route = None;
    assert!(
        wait_until(Duration::from_secs(60), || {
            let a = conn
                .call(&json_request(105, 1, &[("topic", "RmqRoute")]))
                .expect("an answer");
            let found = a.code == 0;
            route = Some(a);
            found
        }),
        "no route for RmqRoute over remoting: {route:?}"
    );
    let a = route.unwrap();
    assert!(a.is_response());
    assert_eq!(a.opaque, 1);
    assert_eq!(a.serialize_type, SerializeType::Json);
    let j = body_json(&a);
    let brokers = j["brokerDatas"].as_array().unwrap();
    assert_eq!(brokers.len(), 1, "{j}");
    assert_eq!(brokers[0]["brokerName"], "standalone");
    assert!(brokers[0]["cluster"].is_string());
    assert_eq!(brokers[0]["brokerAddrs"]["0"], node.broker());
    let queues = j["queueDatas"].as_array().unwrap();
    assert_eq!(queues.len(), 1, "{j}");
    assert_eq!(queues[0]["brokerName"], "standalone");
    assert!(queues[0]["readQueueNums"].as_u64().unwrap() > 0);
    assert!(queues[0]["writeQueueNums"].as_u64().unwrap() > 0);
    assert_eq!(queues[0]["perm"], 6);
    assert_eq!(queues[0]["topicSysFlag"], 0);
    assert!(j["filterServerTable"].as_object().unwrap().is_empty());

    // The same request in the binary codec gets the same route, in binary.
    let b = conn
        .call(&binary_request(105, 2, &[("topic", "RmqRoute")]))
        .unwrap();
    assert_eq!((b.code, b.opaque), (0, 2));
    assert_eq!(b.serialize_type, SerializeType::RocketMq);
    assert_eq!(body_json(&b), j);

    // An unknown topic: TOPIC_NOT_EXIST with a remark, in both codecs.
    for (req, ty) in [
        (
            json_request(105, 3, &[("topic", "NoSuchTopic")]),
            SerializeType::Json,
        ),
        (
            binary_request(105, 3, &[("topic", "NoSuchTopic")]),
            SerializeType::RocketMq,
        ),
    ] {
        let a = conn.call(&req).unwrap();
        assert_eq!((a.code, a.opaque, a.serialize_type), (17, 3, ty));
        assert!(a.remark.unwrap().contains("NoSuchTopic"));
    }

    // Cluster info names the broker group and its address.
    for req in [json_request(106, 4, &[]), binary_request(106, 4, &[])] {
        let a = conn.call(&req).unwrap();
        assert_eq!((a.code, a.opaque), (0, 4));
        let c = body_json(&a);
        let group = &c["brokerAddrTable"]["standalone"];
        assert_eq!(group["brokerAddrs"]["0"], node.broker(), "{c}");
        let cluster = group["cluster"].as_str().unwrap();
        assert_eq!(c["clusterAddrTable"][cluster][0], "standalone", "{c}");
    }

    // Every topic, RmqRoute among them.
    let a = conn.call(&binary_request(206, 7, &[])).unwrap();
    assert_eq!((a.code, a.opaque), (0, 7));
    let topics = body_json(&a)["topicList"].as_array().unwrap().clone();
    assert!(topics.iter().any(|t| t == "RmqRoute"), "{topics:?}");

    // A oneway request gets no answer: the next answer is the next request's.
    let mut oneway = json_request(106, 40, &[]);
    let mark = 4 + 4;
    let oneway_header = String::from_utf8(oneway[mark..].to_vec())
        .unwrap()
        .replace("\"flag\":0", "\"flag\":2");
    oneway = frame(0, oneway_header.as_bytes());
    conn.0.write_all(&oneway).unwrap();
    let a = conn.call(&binary_request(106, 41, &[])).unwrap();
    assert_eq!((a.code, a.opaque), (0, 41));

    // KV config: not found (Skylark keeps none); unknown codes: 3.
    let a = conn
        .call(&json_request(
            101,
            5,
            &[("namespace", "ORDER_TOPIC_CONFIG"), ("key", "RmqRoute")],
        ))
        .unwrap();
    assert_eq!((a.code, a.opaque), (22, 5));
    for req in [json_request(310, 6, &[]), binary_request(999, 6, &[])] {
        let a = conn.call(&req).unwrap();
        assert_eq!((a.code, a.opaque), (3, 6));
        assert!(a.remark.unwrap().contains("not supported"));
    }
}

#[test]
fn rocketmq_compat_garbage_closes_only_that_connection() {
    let (_dir, _node, port) = start();
    // A frame length over 16 MiB, a negative one, an unknown serialize
    // type, a JSON header that is not JSON, a binary header cut short.
    let mut bad_type = frame(7, b"{}");
    bad_type.extend_from_slice(&json_request(106, 1, &[]));
    let garbage: Vec<Vec<u8>> = vec![
        (17 * 1024 * 1024i32).to_be_bytes().to_vec(),
        (-5i32).to_be_bytes().to_vec(),
        bad_type,
        frame(0, b"{not json"),
        frame(1, &[0, 105, 0]),
    ];
    for g in &garbage {
        let mut c = Conn::open(port);
        let answer = c.call(g);
        assert!(answer.is_none(), "an answer to garbage {g:?}: {answer:?}");
        assert!(c.closed_by_server(), "connection left open after {g:?}");
    }
    // The server still serves a new connection.
    let mut c = Conn::open(port);
    let a = c.call(&binary_request(106, 9, &[])).unwrap();
    assert_eq!((a.code, a.opaque), (0, 9));
}

#[test]
fn rocketmq_compat_namesrv_remoting_port_from_config() {
    let (port, remoting) = (free_port(), free_port());
    let child = std::process::Command::new(bin())
        .args([
            "--log-level",
            "warn",
            "namesrv",
            "--port",
            &port.to_string(),
        ])
        .env("SKYLARK_REMOTING_PORT", remoting.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    wait_listening(&mut child.0, &[port, remoting]).unwrap();
    // No broker registered: an empty cluster table, no route.
    let mut c = Conn::open(remoting);
    let a = c.call(&json_request(106, 1, &[])).unwrap();
    assert_eq!(a.code, 0);
    assert_eq!(
        body_json(&a),
        serde_json::json!({"brokerAddrTable": {}, "clusterAddrTable": {}})
    );
    let a = c.call(&binary_request(105, 2, &[("topic", "T")])).unwrap();
    assert_eq!((a.code, a.opaque), (17, 2));
    // A request without its topic field: SYSTEM_ERROR with a remark.
    let a = c.call(&json_request(105, 3, &[])).unwrap();
    assert_eq!(a.code, 1);
    assert!(a.remark.unwrap().contains("topic"));
}

#[test]
fn rocketmq_compat_remoting_port_refused_with_acl() {
    let out = std::process::Command::new(bin())
        .args([
            "--log-level",
            "warn",
            "namesrv",
            "--port",
            &free_port().to_string(),
        ])
        .env("SKYLARK_REMOTING_PORT", free_port().to_string())
        .env("SKYLARK_ACL_ENABLED", "true")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("remoting_port"), "{err}");
}

#[test]
fn rocketmq_compat_standalone_starts_when_default_remoting_port_is_taken() {
    // Hold the default port (unless another test's standalone already does).
    let _held = std::net::TcpListener::bind(("127.0.0.1", 9886));
    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start(dir.path(), &["--no-dashboard"]);
    let out = node.cli(&["admin", "--json", "cluster", "list"]);
    assert!(out.status.success(), "{out:?}");
    // An explicit port that is taken fails the start.
    let taken = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = std::process::Command::new(bin())
        .args(["--log-level", "warn", "standalone", "--data-dir"])
        .envs(common::ROOMY_DISK)
        .arg(dir.path().join("second"))
        .args(["--namesrv-port", &free_port().to_string()])
        .args(["--broker-port", &free_port().to_string()])
        .args([
            "--namesrv-remoting-port",
            &port.to_string(),
            "--no-dashboard",
        ])
        .args(["--no-metrics"])
        .env("SKYLARK_STORE__SEGMENT_SIZE", "67108864")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("RocketMQ remoting"), "{err}");
}

#[test]
fn rocketmq_compat_unfinished_frame_is_closed_after_frame_read_timeout() {
    let (port, remoting) = (free_port(), free_port());
    let child = std::process::Command::new(bin())
        .args([
            "--log-level",
            "error",
            "namesrv",
            "--port",
            &port.to_string(),
        ])
        .env("SKYLARK_REMOTING_PORT", remoting.to_string())
        .env("SKYLARK_FRAME_READ_TIMEOUT_MS", "300")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    wait_listening(&mut child.0, &[port, remoting]).unwrap();
    let mut quiet = Conn::open(remoting);
    let mut slow = Conn::open(remoting);
    let whole = json_request(106, 1, &[]);
    let started = std::time::Instant::now();
    slow.0.write_all(&whole[..6]).unwrap();
    assert!(slow.closed_by_server(), "an unfinished frame was kept open");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(5),
        "{took:?}"
    );
    // A connection with no frame begun is only subject to the idle timeout.
    let a = quiet.call(&whole).unwrap();
    assert_eq!((a.code, a.opaque), (0, 1));
}
