//! RocketMQ remoting protocol on the NameServer and the Broker (issue 17):
//! a real `skylark standalone` with `--namesrv-remoting-port` and
//! `--broker-remoting-port`, raw TCP
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
/// Server-initiated requests read while waiting for an answer are kept in
/// the second field.
struct Conn(TcpStream, Vec<RemotingCommand>);

impl Conn {
    fn open(port: u16) -> Conn {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the remoting port");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Conn(s, Vec::new())
    }

    /// Reads one frame; `None` if the server closed first.
    fn read_frame(&mut self) -> Option<RemotingCommand> {
        let mut len = [0u8; 4];
        self.0.read_exact(&mut len).ok()?;
        let mut rest = vec![0u8; i32::from_be_bytes(len) as usize];
        self.0.read_exact(&mut rest).ok()?;
        Some(decode_frame(Bytes::from(rest)).expect("a well-formed frame"))
    }

    /// Sends `frame`, reads one answer; `None` if the server closed first.
    fn call(&mut self, frame: &[u8]) -> Option<RemotingCommand> {
        let _ = self.0.write_all(frame);
        loop {
            let f = self.read_frame()?;
            if f.is_response() {
                return Some(f);
            }
            self.1.push(f);
        }
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
    let (dir, node, port, _) = start_both();
    (dir, node, port)
}

/// A standalone with both remoting ports and one queue per new topic;
/// answers the NameServer's and the Broker's remoting ports.
fn start_both() -> (tempfile::TempDir, Standalone, u16, u16) {
    start_both_env(&[])
}

fn start_both_env(env: &[(&str, &str)]) -> (tempfile::TempDir, Standalone, u16, u16) {
    let dir = tempfile::tempdir().unwrap();
    let (node, port, bport) = Standalone::start_with_remoting(
        dir.path(),
        &[&[("SKYLARK_DEFAULT_TOPIC_QUEUES", "1")], env].concat(),
    );
    (dir, node, port, bport)
}

/// `frame` with a body after the header.
fn with_body(mut f: Vec<u8>, body: &[u8]) -> Vec<u8> {
    let total = i32::from_be_bytes([f[0], f[1], f[2], f[3]]) + body.len() as i32;
    f[..4].copy_from_slice(&total.to_be_bytes());
    f.extend_from_slice(body);
    f
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
    // The broker is named at its RocketMQ remoting address.
    let remoting_broker = brokers[0]["brokerAddrs"]["0"].as_str().unwrap().to_string();
    assert_ne!(remoting_broker, node.broker(), "{j}");
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
        assert_eq!(group["brokerAddrs"]["0"], remoting_broker.as_str(), "{c}");
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

fn ext<'a>(a: &'a RemotingCommand, k: &str) -> &'a str {
    a.ext(k)
        .unwrap_or_else(|| panic!("answer has no {k}: {a:?}"))
}

#[test]
fn rocketmq_compat_broker_send_pull_offsets_cross_both_protocols() {
    use skylark::codec::remoting::message::decode_stored_all;
    let (_dir, node, ns_port, bport) = start_both();
    // A Skylark client's message first (it also creates the topic).
    let out = node.cli(&[
        "produce",
        "--topic",
        "RmqX",
        "--body",
        "from-skylark",
        "--tag",
        "TagS",
        "--key",
        "ks",
    ]);
    assert!(out.status.success(), "produce: {out:?}");
    // The route a RocketMQ client gets names the broker's remoting port.
    let mut ns = Conn::open(ns_port);
    assert!(
        wait_until(Duration::from_secs(60), || {
            ns.call(&json_request(105, 1, &[("topic", "RmqX")]))
                .is_some_and(|a| {
                    a.code == 0
                        && body_json(&a)["brokerDatas"][0]["brokerAddrs"]["0"]
                            == format!("127.0.0.1:{bport}").as_str()
                })
        }),
        "the route never named 127.0.0.1:{bport}"
    );

    // SEND_MESSAGE_V2 (short keys), binary header, properties as RocketMQ
    // writes them.
    let mut b = Conn::open(bport);
    let props = "TAGS\u{1}TagR\u{2}KEYS\u{1}kr\u{2}UNIQ_KEY\u{1}C0A80001000000000001\u{2}color\u{1}red\u{2}";
    let born = "1700000000000";
    let send = with_body(
        binary_request(
            310,
            21,
            &[
                ("a", "PG"),
                ("b", "RmqX"),
                ("c", "TBW102"),
                ("d", "4"),
                ("e", "0"),
                ("f", "0"),
                ("g", born),
                ("h", "0"),
                ("i", props),
                ("j", "0"),
                ("k", "false"),
            ],
        ),
        b"from-rocketmq",
    );
    let a = b.call(&send).expect("a send answer");
    assert_eq!((a.code, a.opaque), (0, 21), "{a:?}");
    assert_eq!(ext(&a, "queueId"), "0");
    assert_eq!(ext(&a, "queueOffset"), "1");
    let msg_id = ext(&a, "msgId").to_string();
    assert_eq!(msg_id.len(), 32, "RocketMQ's offsetMsgId: {msg_id}");

    // PULL_MESSAGE, JSON header: both messages in RocketMQ's stored layout.
    let pull = |c: &mut Conn, opaque: i32, offset: &str, sub: &str, extra: &[(&str, &str)]| {
        let mut f = vec![
            ("consumerGroup", "RG"),
            ("topic", "RmqX"),
            ("queueId", "0"),
            ("queueOffset", offset),
            ("maxMsgNums", "32"),
            ("sysFlag", "0"),
            ("commitOffset", "0"),
            ("suspendTimeoutMillis", "0"),
            ("subscription", sub),
            ("subVersion", "0"),
            ("expressionType", "TAG"),
        ];
        for (k, v) in extra {
            f.retain(|(fk, _)| fk != k);
            f.push((k, v));
        }
        c.call(&json_request(11, opaque, &f))
            .expect("a pull answer")
    };
    let a = pull(&mut b, 22, "0", "*", &[]);
    assert_eq!((a.code, a.opaque), (0, 22), "{a:?}");
    assert_eq!(ext(&a, "nextBeginOffset"), "2");
    assert_eq!(ext(&a, "minOffset"), "0");
    assert_eq!(ext(&a, "maxOffset"), "2");
    assert_eq!(ext(&a, "suggestWhichBrokerId"), "0");
    let msgs = decode_stored_all(&a.body).expect("RocketMQ stored messages");
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0].body, b"from-skylark");
    assert_eq!(msgs[0].property("TAGS"), Some("TagS"));
    assert_eq!(msgs[0].property("KEYS"), Some("ks"));
    let r = &msgs[1];
    assert_eq!(r.body, b"from-rocketmq");
    assert_eq!(
        (r.topic.as_str(), r.queue_id, r.queue_offset),
        ("RmqX", 0, 1)
    );
    assert_eq!(r.property("TAGS"), Some("TagR"));
    assert_eq!(r.property("KEYS"), Some("kr"));
    assert_eq!(r.property("color"), Some("red"));
    assert_eq!(r.property("UNIQ_KEY"), Some("C0A80001000000000001"));
    assert_eq!(r.born_timestamp, 1_700_000_000_000);
    assert_eq!(
        r.offset_msg_id(),
        msg_id,
        "the message id resolves to the stored record"
    );

    // A tag the messages do not carry: nothing is returned.
    let a = pull(&mut b, 23, "0", "NoSuchTag", &[]);
    assert!(matches!(a.code, 19 | 20), "{a:?}");
    assert!(a.body.is_empty());
    // SQL92 on a user property, filtered on the broker.
    let a = pull(
        &mut b,
        24,
        "0",
        "color = 'red'",
        &[("expressionType", "SQL92")],
    );
    assert_eq!(a.code, 0, "{a:?}");
    let msgs = decode_stored_all(&a.body).unwrap();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].body, b"from-rocketmq");
    // A pull without its subscription (a RocketMQ push consumer's default)
    // is filtered by the group's, from its heartbeat.
    let hb = serde_json::json!({
        "clientID": "sql-member", "producerDataSet": [],
        "consumerDataSet": [{
            "groupName": "SqlG", "consumeType": "CONSUME_PASSIVELY",
            "messageModel": "CLUSTERING", "consumeFromWhere": "CONSUME_FROM_FIRST_OFFSET",
            "subscriptionDataSet": [{"topic": "RmqX", "subString": "color = 'red'",
                                     "expressionType": "SQL92"}]
        }]
    });
    let a = b
        .call(&with_body(
            json_request(34, 40, &[]),
            hb.to_string().as_bytes(),
        ))
        .unwrap();
    assert_eq!(a.code, 0, "{a:?}");
    let a = b
        .call(&json_request(
            11,
            41,
            &[
                ("consumerGroup", "SqlG"),
                ("topic", "RmqX"),
                ("queueId", "0"),
                ("queueOffset", "0"),
                ("maxMsgNums", "32"),
                ("sysFlag", "0"),
            ],
        ))
        .unwrap();
    assert_eq!(a.code, 0, "{a:?}");
    let msgs = decode_stored_all(&a.body).unwrap();
    assert_eq!(msgs.len(), 1, "the group's SQL92 filter applies");
    assert_eq!(msgs[0].body, b"from-rocketmq");
    // Long polling at the end of the queue answers PULL_NOT_FOUND once the
    // suspend time is over.
    let a = pull(
        &mut b,
        25,
        "2",
        "*",
        &[("sysFlag", "2"), ("suspendTimeoutMillis", "200")],
    );
    assert_eq!((a.code, a.opaque), (19, 25), "{a:?}");

    // Offsets: not found before a commit, the committed one after.
    let q = json_request(
        14,
        26,
        &[("consumerGroup", "RG"), ("topic", "RmqX"), ("queueId", "0")],
    );
    assert_eq!(b.call(&q).unwrap().code, 22);
    let a = b
        .call(&json_request(
            15,
            27,
            &[
                ("consumerGroup", "RG"),
                ("topic", "RmqX"),
                ("queueId", "0"),
                ("commitOffset", "2"),
            ],
        ))
        .unwrap();
    assert_eq!((a.code, a.opaque), (0, 27), "{a:?}");
    let a = b.call(&q).unwrap();
    assert_eq!((a.code, ext(&a, "offset")), (0, "2"));
    for (code, want) in [(30, "2"), (31, "0")] {
        let a = b
            .call(&binary_request(
                code,
                28,
                &[("topic", "RmqX"), ("queueId", "0")],
            ))
            .unwrap();
        assert_eq!((a.code, ext(&a, "offset")), (0, want), "{a:?}");
    }
    let a = b
        .call(&json_request(
            29,
            29,
            &[("topic", "RmqX"), ("queueId", "0"), ("timestamp", "0")],
        ))
        .unwrap();
    assert_eq!((a.code, ext(&a, "offset")), (0, "0"), "{a:?}");

    // Bad input: a missing field is a typed error, an unknown code 3; the
    // connection stays usable.
    let a = b.call(&json_request(11, 30, &[("topic", "RmqX")])).unwrap();
    assert_eq!(a.code, 13, "{a:?}");
    assert!(a.remark.unwrap().contains("consumerGroup"));
    let a = b.call(&binary_request(999, 31, &[])).unwrap();
    assert_eq!(a.code, 3);
    assert!(a.remark.unwrap().contains("not supported"));

    // SEND_BATCH_MESSAGE: RocketMQ's batch body, one queue, every id.
    let batch = batch_body(
        [
            (&b"b1"[..], "TAGS\u{1}T1\u{2}"),
            (&b"b2"[..], "TAGS\u{1}T2\u{2}"),
        ]
        .into_iter(),
    );
    let a = b
        .call(&with_body(
            binary_request(
                320,
                32,
                &[
                    ("a", "PG"),
                    ("b", "RmqX"),
                    ("e", "0"),
                    ("g", born),
                    ("m", "true"),
                ],
            ),
            &batch,
        ))
        .unwrap();
    assert_eq!((a.code, ext(&a, "queueOffset")), (0, "2"), "{a:?}");
    assert_eq!(ext(&a, "msgId").split(',').count(), 2);
    let a = pull(&mut b, 33, "2", "T2", &[]);
    let msgs = decode_stored_all(&a.body).unwrap();
    assert_eq!(msgs.len(), 1, "{a:?}");
    assert_eq!(
        (msgs[0].body.as_slice(), msgs[0].queue_offset),
        (&b"b2"[..], 3)
    );
    // A cut batch body is a typed error.
    let a = b
        .call(&with_body(
            binary_request(320, 34, &[("a", "PG"), ("b", "RmqX"), ("m", "true")]),
            &batch[..batch.len() - 3],
        ))
        .unwrap();
    assert_eq!(a.code, 13, "{a:?}");

    // VIEW_MESSAGE_BY_ID by the physical offset the message id carries.
    let a = b
        .call(&json_request(
            33,
            35,
            &[("offset", &r.physical_offset.to_string())],
        ))
        .unwrap();
    assert_eq!(a.code, 0, "{a:?}");
    let viewed = decode_stored_all(&a.body).unwrap();
    assert_eq!(viewed[0].body, b"from-rocketmq");

    // CONSUMER_SEND_MSG_BACK with delay level -1: straight to the DLQ.
    let a = b
        .call(&json_request(
            36,
            36,
            &[
                ("offset", &r.physical_offset.to_string()),
                ("group", "RG"),
                ("delayLevel", "-1"),
                ("originMsgId", &msg_id),
                ("originTopic", "RmqX"),
                ("maxReconsumeTimes", "16"),
            ],
        ))
        .unwrap();
    assert_eq!(a.code, 0, "{a:?}");
    let a = pull(&mut b, 37, "0", "*", &[("topic", "%DLQ%RG")]);
    assert_eq!(a.code, 0, "{a:?}");
    let dlq = decode_stored_all(&a.body).unwrap();
    assert_eq!(dlq[0].body, b"from-rocketmq");
    assert_eq!(dlq[0].property("TAGS"), Some("TagR"));

    // The RocketMQ client's message reaches a Skylark consumer intact.
    let out = node.cli(&[
        "consume",
        "--topic",
        "RmqX",
        "--group",
        "SkyG",
        "--from",
        "first",
        "--count",
        "2",
        "--idle-timeout",
        "20",
        "--json",
    ]);
    assert!(out.status.success(), "consume: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("from-rocketmq"))
        .unwrap_or_else(|| panic!("no RocketMQ message in {text}"));
    let j: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(j["tags"], "TagR", "{j}");
    assert_eq!(j["keys"], "kr", "{j}");
    assert!(line.contains("red"), "{line}");
}

fn heartbeat(client: &str, group: &str) -> Vec<u8> {
    let body = serde_json::json!({
        "clientID": client,
        "producerDataSet": [{"groupName": "PG"}],
        "consumerDataSet": [{
            "groupName": group,
            "consumeType": "CONSUME_PASSIVELY",
            "messageModel": "CLUSTERING",
            "consumeFromWhere": "CONSUME_FROM_LAST_OFFSET",
            "subscriptionDataSet": [{
                "classFilterMode": false, "topic": "RmqG", "subString": "*",
                "tagsSet": [], "codeSet": [], "subVersion": 1, "expressionType": "TAG"
            }],
            "unitMode": false
        }]
    });
    with_body(json_request(34, 50, &[]), body.to_string().as_bytes())
}

#[test]
fn rocketmq_compat_broker_heartbeats_form_a_group_with_locks_and_notifications() {
    let (_dir, node, _ns_port, bport) = start_both();
    let out = node.cli(&["produce", "--topic", "RmqG", "--body", "x"]);
    assert!(out.status.success(), "produce: {out:?}");
    let (mut a, mut b) = (Conn::open(bport), Conn::open(bport));
    let r = a.call(&heartbeat("client-a", "RG2")).unwrap();
    assert_eq!((r.code, r.opaque), (0, 50), "{r:?}");
    let list = json_request(38, 51, &[("consumerGroup", "RG2")]);
    let r = a.call(&list).unwrap();
    assert_eq!(
        body_json(&r)["consumerIdList"],
        serde_json::json!(["client-a"])
    );

    // A second member: the first is told (oneway NOTIFY_CONSUMER_IDS_CHANGED).
    a.1.clear();
    let r = b.call(&heartbeat("client-b", "RG2")).unwrap();
    assert_eq!(r.code, 0, "{r:?}");
    let notify = a.read_frame().expect("a notification");
    assert_eq!(notify.code, 40, "{notify:?}");
    assert!(notify.is_oneway() && !notify.is_response());
    assert_eq!(notify.ext("consumerGroup"), Some("RG2"));
    let r = a.call(&list).unwrap();
    assert_eq!(
        body_json(&r)["consumerIdList"],
        serde_json::json!(["client-a", "client-b"])
    );
    // The admin CLI lists the RocketMQ client among the group's connections.
    let out = node.cli(&["admin", "--json", "group", "connections", "--group", "RG2"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("client-b"));

    // Queue locks: the first asker gets the queue, the other does not
    // until it is released.
    let lock = |client: &str, code: i32| {
        let body = serde_json::json!({
            "consumerGroup": "RG2", "clientId": client,
            "mqSet": [{"topic": "RmqG", "brokerName": "standalone", "queueId": 0}]
        });
        with_body(json_request(code, 52, &[]), body.to_string().as_bytes())
    };
    let r = a.call(&lock("client-a", 41)).unwrap();
    assert_eq!(body_json(&r)["lockOKMQSet"][0]["queueId"], 0, "{r:?}");
    assert_eq!(body_json(&r)["lockOKMQSet"][0]["brokerName"], "standalone");
    let r = b.call(&lock("client-b", 41)).unwrap();
    assert_eq!(body_json(&r)["lockOKMQSet"], serde_json::json!([]));
    assert_eq!(a.call(&lock("client-a", 42)).unwrap().code, 0);
    let r = b.call(&lock("client-b", 41)).unwrap();
    assert_eq!(body_json(&r)["lockOKMQSet"][0]["queueId"], 0, "{r:?}");

    // Unregistering leaves the group; a bad heartbeat body is a typed error.
    let r = a
        .call(&json_request(
            35,
            53,
            &[("clientID", "client-a"), ("consumerGroup", "RG2")],
        ))
        .unwrap();
    assert_eq!(r.code, 0, "{r:?}");
    let r = b.call(&list).unwrap();
    assert_eq!(
        body_json(&r)["consumerIdList"],
        serde_json::json!(["client-b"])
    );
    let r = b
        .call(&with_body(json_request(34, 54, &[]), b"{not json"))
        .unwrap();
    assert_eq!(r.code, 13, "{r:?}");
    assert!(r.remark.unwrap().contains("HeartbeatData"));
    // A member whose connection closes is dropped from the group.
    drop(a);
    drop(b);
    let mut c = Conn::open(bport);
    assert!(
        wait_until(Duration::from_secs(30), || {
            let r = c.call(&list).unwrap();
            body_json(&r)["consumerIdList"] == serde_json::json!([])
        }),
        "closed members stayed in the group"
    );
}

#[test]
fn rocketmq_compat_broker_transactions_commit_rollback_and_check_back() {
    use skylark::codec::remoting::message::{decode_stored, decode_stored_all};
    let (_dir, node, _ns, bport) = start_both_env(&[
        ("SKYLARK_TRANSACTION_TIMEOUT_MS", "100"),
        ("SKYLARK_TRANSACTION_CHECK_INTERVAL_MS", "200"),
    ]);
    let out = node.cli(&["produce", "--topic", "RmqT", "--body", "plain"]);
    assert!(out.status.success(), "produce: {out:?}");
    let mut p = Conn::open(bport);
    let hb = serde_json::json!({
        "clientID": "tx-producer", "producerDataSet": [{"groupName": "TXG"}],
        "consumerDataSet": []
    });
    let r = p
        .call(&with_body(
            json_request(34, 60, &[]),
            hb.to_string().as_bytes(),
        ))
        .unwrap();
    assert_eq!(r.code, 0, "{r:?}");
    let half = |c: &mut Conn, opaque: i32, uniq: &str, body: &[u8]| {
        let props = format!("TRAN_MSG\u{1}true\u{2}PGROUP\u{1}TXG\u{2}UNIQ_KEY\u{1}{uniq}\u{2}");
        let a = c
            .call(&with_body(
                binary_request(
                    310,
                    opaque,
                    &[
                        ("a", "TXG"),
                        ("b", "RmqT"),
                        ("e", "0"),
                        ("f", "4"),
                        ("i", &props),
                    ],
                ),
                body,
            ))
            .unwrap();
        assert_eq!(a.code, 0, "{a:?}");
        let id = ext(&a, "msgId").to_string();
        let physical = u64::from_str_radix(&id[id.len() - 16..], 16).unwrap();
        (physical, ext(&a, "queueOffset").to_string())
    };
    let end = |c: &mut Conn, opaque: i32, physical: u64, qoff: &str, uniq: &str, how: &str| {
        c.call(&json_request(
            37,
            opaque,
            &[
                ("producerGroup", "TXG"),
                ("tranStateTableOffset", qoff),
                ("commitLogOffset", &physical.to_string()),
                ("commitOrRollback", how),
                ("fromTransactionCheck", "false"),
                ("msgId", uniq),
                ("transactionId", uniq),
            ],
        ))
        .unwrap()
    };
    let visible = |c: &mut Conn| -> Vec<Vec<u8>> {
        let a = c
            .call(&json_request(
                11,
                61,
                &[
                    ("consumerGroup", "TXC"),
                    ("topic", "RmqT"),
                    ("queueId", "0"),
                    ("queueOffset", "0"),
                    ("maxMsgNums", "32"),
                    ("sysFlag", "0"),
                    ("subscription", "*"),
                ],
            ))
            .unwrap();
        decode_stored_all(&a.body)
            .unwrap()
            .into_iter()
            .map(|m| m.body)
            .collect()
    };
    // Commit: the message appears; rollback: it never does.
    let (ph, qo) = half(&mut p, 62, "TX1", b"committed");
    assert_eq!(visible(&mut p), vec![b"plain".to_vec()]);
    assert_eq!(end(&mut p, 63, ph, &qo, "TX1", "8").code, 0);
    let (ph2, qo2) = half(&mut p, 64, "TX2", b"rolled-back");
    assert_eq!(end(&mut p, 65, ph2, &qo2, "TX2", "12").code, 0);
    assert_eq!(
        visible(&mut p),
        vec![b"plain".to_vec(), b"committed".to_vec()]
    );
    // A bad outcome is a typed error.
    let a = end(&mut p, 66, ph2, &qo2, "TX2", "5");
    assert_eq!(a.code, 13, "{a:?}");

    // Unknown: the broker asks this producer (oneway CHECK_TRANSACTION_STATE
    // with the half message under its real topic); the producer's answer
    // commits it.
    let (_, _) = half(&mut p, 67, "TX3", b"checked");
    let check = loop {
        let f = p
            .read_frame()
            .expect("a check-back before the connection closed");
        if f.code == 39 {
            break f;
        }
    };
    assert!(check.is_oneway());
    assert_eq!(check.ext("transactionId"), Some("TX3"));
    let (m, _) = decode_stored(&check.body).unwrap();
    assert_eq!(
        (m.topic.as_str(), m.body.as_slice()),
        ("RmqT", &b"checked"[..])
    );
    let physical: u64 = check.ext("commitLogOffset").unwrap().parse().unwrap();
    let qoff = check.ext("tranStateTableOffset").unwrap().to_string();
    let mut answer = json_request(
        37,
        68,
        &[
            ("producerGroup", "TXG"),
            ("tranStateTableOffset", &qoff),
            ("commitLogOffset", &physical.to_string()),
            ("commitOrRollback", "8"),
            ("fromTransactionCheck", "true"),
            ("transactionId", "TX3"),
        ],
    );
    // Oneway, as RocketMQ's producer answers a check.
    let header = String::from_utf8(answer[8..].to_vec())
        .unwrap()
        .replace("\"flag\":0", "\"flag\":2");
    answer = frame(0, header.as_bytes());
    p.0.write_all(&answer).unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || visible(&mut p).len() == 3),
        "the checked transaction was never committed"
    );
    assert_eq!(visible(&mut p)[2], b"checked");
}

/// A JSON header of `n` unique 6-character `extFields` keys with empty
/// values (12 bytes each, ~100 decoded): within the 16 MiB frame limit, but
/// 8.5 × its length once decoded.
fn hostile_json_header(code: i32, opaque: i32, n: usize) -> Vec<u8> {
    let mut h = format!("{{\"code\":{code},\"opaque\":{opaque},\"extFields\":{{").into_bytes();
    h.reserve(n * 12);
    for i in 0..n {
        if i > 0 {
            h.push(b',');
        }
        h.extend_from_slice(format!("\"{i:06x}\":\"\"").as_bytes());
    }
    h.extend_from_slice(b"}}");
    h
}

#[test]
fn rocketmq_compat_a_header_over_the_decode_budget_is_answered_message_illegal_then_closed() {
    let (_dir, _node, ns_port, bport) = start_both();
    let n = (16 * 1024 * 1024 - 4096) / 12;
    for (port, code) in [(bport, 10), (ns_port, 105)] {
        let mut c = Conn::open(port);
        c.0.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let a = c
            .call(&frame(0, &hostile_json_header(code, 41, n)))
            .expect("an answer before the close");
        assert_eq!((a.code, a.opaque), (13, 41), "MESSAGE_ILLEGAL: {a:?}");
        let remark = a.remark.unwrap_or_default();
        assert!(remark.contains("would decode into more than"), "{remark}");
        assert!(c.closed_by_server(), "connection left open on port {port}");
        // The server serves on, and a big legitimate header still decodes.
        let fields: Vec<(String, String)> = (0..5_000)
            .map(|i| (format!("customHeader{i:05}"), format!("value-{i:05}")))
            .collect();
        let mut fields: Vec<(&str, &str)> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        fields.push(("topic", "NoSuchTopic"));
        let mut c = Conn::open(port);
        let a = c.call(&json_request(105, 42, &fields)).unwrap();
        // The NameServer finds no route; the Broker does not serve 105.
        assert_eq!(
            (a.opaque, a.code),
            (42, if port == ns_port { 17 } else { 3 })
        );
    }
}

/// A HEART_BEAT body of half a million one-letter consumers (9.4 MB of
/// JSON that would decode into some 125 MB) is refused as a bad request
/// (MESSAGE_ILLEGAL) within the decode budget, and the same connection
/// then forms a group with a real heartbeat.
#[test]
fn rocketmq_compat_a_heartbeat_body_over_the_decode_budget_is_refused_and_the_connection_serves_on()
{
    let (_dir, _node, _ns_port, bport) = start_both();
    let mut body = br#"{"clientID":"x","consumerDataSet":["#.to_vec();
    for _ in 0..1 << 19 {
        body.extend_from_slice(br#"{"groupName":"g"},"#);
    }
    body.extend_from_slice(br#"{"groupName":"g"}]}"#);
    let mut c = Conn::open(bport);
    c.0.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let r = c
        .call(&with_body(json_request(34, 60, &[]), &body))
        .unwrap();
    assert_eq!((r.code, r.opaque), (13, 60), "{r:?}");
    let remark = r.remark.unwrap_or_default();
    assert!(remark.contains("would decode into more than"), "{remark}");
    let r = c.call(&heartbeat("client-a", "RGB")).unwrap();
    assert_eq!((r.code, r.opaque), (0, 50), "{r:?}");
}

/// RocketMQ's SEND_BATCH_MESSAGE body of `(body, properties)` messages.
fn batch_body<'a>(messages: impl Iterator<Item = (&'a [u8], &'a str)>) -> Vec<u8> {
    let mut batch = Vec::new();
    for (body, props) in messages {
        let total = 4 + 4 + 4 + 4 + 4 + body.len() + 2 + props.len();
        batch.put_i32(total as i32);
        batch.put_i32(0);
        batch.put_i32(0);
        batch.put_i32(0);
        batch.put_i32(body.len() as i32);
        batch.put_slice(body);
        batch.put_i16(props.len() as i16);
        batch.put_slice(props.as_bytes());
    }
    batch
}

/// A SEND_BATCH_MESSAGE of half a million 27-byte messages, each with one
/// empty property (about 230 bytes apiece decoded, 8.5 times the body) is
/// refused MESSAGE_ILLEGAL within the decode budget, stores nothing, and
/// the connection serves on.
#[test]
fn rocketmq_compat_a_batch_over_the_decode_budget_is_refused_and_stores_nothing() {
    let (_dir, node, _ns_port, bport) = start_both();
    let out = node.cli(&[
        "admin", "topic", "create", "--name", "RmqB", "--queues", "1",
    ]);
    assert!(out.status.success(), "topic create: {out:?}");
    let header = [
        ("a", "PG"),
        ("b", "RmqB"),
        ("e", "0"),
        ("g", "0"),
        ("m", "true"),
    ];
    let hostile = batch_body(std::iter::repeat_n((&b"x"[..], "a\u{1}\u{2}"), 500_000));
    let mut c = Conn::open(bport);
    c.0.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let a = c
        .call(&with_body(binary_request(320, 70, &header), &hostile))
        .unwrap();
    assert_eq!((a.code, a.opaque), (13, 70), "answered {:?}", a.remark);
    let remark = a.remark.unwrap_or_default();
    assert!(remark.contains("would decode into more than"), "{remark}");
    // A real batch on the same connection: stored from offset 0.
    let real = batch_body([(&b"b1"[..], "TAGS\u{1}T1\u{2}")].into_iter());
    let a = c
        .call(&with_body(binary_request(320, 71, &header), &real))
        .unwrap();
    assert_eq!((a.code, ext(&a, "queueOffset")), (0, "0"), "{a:?}");
}

/// SEND_MESSAGE with a producer group RocketMQ's clients refuse ('', a
/// space or slash, 10 KB) or a queue id below -1 is answered
/// MESSAGE_ILLEGAL naming the field and stores nothing; what a RocketMQ
/// client with no group set sends (`DEFAULT_PRODUCER`) is stored. A JSON
/// header's `language` may be any number (read leniently).
#[test]
fn rocketmq_compat_a_send_with_a_bad_group_or_queue_is_refused_message_illegal() {
    let (_dir, _node, _ns_port, bport) = start_both();
    let mut c = Conn::open(bport);
    let send = |opaque: i32, group: &str, queue: &str| {
        let header = [("a", group), ("b", "RmqG"), ("e", queue), ("g", "0")];
        with_body(binary_request(310, opaque, &header), b"x")
    };
    let long = "g".repeat(10 * 1024);
    for (opaque, group, queue, want) in [
        (80, "", "0", "producer_group"),
        (81, "a/b c", "0", "producer_group"),
        (82, long.as_str(), "0", "producer_group"),
        (83, "PG", "-5", "queue_id -5"),
    ] {
        let a = c.call(&send(opaque, group, queue)).unwrap();
        assert_eq!((a.code, a.opaque), (13, opaque), "{a:?}");
        let remark = a.remark.unwrap_or_default();
        assert!(remark.contains(want), "{remark}");
    }
    let a = c.call(&send(84, "DEFAULT_PRODUCER", "0")).unwrap();
    assert_eq!((a.code, ext(&a, "queueOffset")), (0, "0"), "{a:?}");

    let header = String::from_utf8(
        json_request(
            10,
            85,
            &[("producerGroup", "PG"), ("topic", "RmqG"), ("queueId", "0")],
        )[8..]
            .to_vec(),
    )
    .unwrap()
    .replace("\"language\":\"JAVA\"", "\"language\":12345");
    let a = c
        .call(&with_body(frame(0, header.as_bytes()), b"y"))
        .expect("an answer, not a close");
    assert_eq!((a.code, ext(&a, "queueOffset")), (0, "1"), "{a:?}");
}
