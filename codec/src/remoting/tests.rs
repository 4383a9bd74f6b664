//! Round trips of both header codecs, hand-made frames decoded field by
//! field, and malformed input that must give errors, never panics.

use bytes::{BufMut, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::*;

fn sample(ty: SerializeType) -> RemotingCommand {
    let mut cmd = RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC, 77);
    cmd.language = LanguageCode::GO;
    cmd.version = 317;
    cmd.flag = FLAG_ONEWAY;
    cmd.remark = Some("héllo".into());
    cmd.ext_fields.insert("topic".into(), "TopicTest".into());
    cmd.ext_fields.insert("k2".into(), String::new());
    cmd.serialize_type = ty;
    cmd.with_body(&b"{\"a\":1}"[..])
}

fn roundtrip(cmd: &RemotingCommand) -> RemotingCommand {
    let mut buf = BytesMut::new();
    let mut codec = RemotingCodec::default();
    codec.encode(cmd.clone(), &mut buf).unwrap();
    let got = codec.decode(&mut buf).unwrap().expect("a whole frame");
    assert!(buf.is_empty());
    got
}

#[test]
fn json_and_binary_headers_round_trip() {
    for ty in [SerializeType::Json, SerializeType::RocketMq] {
        let cmd = sample(ty);
        assert_eq!(roundtrip(&cmd), cmd, "{ty:?}");
        let bare = RemotingCommand {
            serialize_type: ty,
            ..RemotingCommand::request(request::GET_BROKER_CLUSTER_INFO, -5)
        };
        assert_eq!(roundtrip(&bare), bare, "{ty:?}");
    }
}

#[test]
fn response_keeps_codec_opaque_and_sets_flag() {
    let req = sample(SerializeType::RocketMq);
    let resp = req.response_to(response::TOPIC_NOT_EXIST, Some("no route".into()));
    assert!(resp.is_response() && !resp.is_oneway());
    assert_eq!(resp.opaque, 77);
    assert_eq!(resp.serialize_type, SerializeType::RocketMq);
    assert_eq!(roundtrip(&resp), resp);
    assert!(req.is_oneway() && !req.is_response());
}

#[test]
fn hand_made_binary_frame_decodes_field_by_field() {
    let mut h = Vec::new();
    h.put_i16(105); // code
    h.put_u8(0); // JAVA
    h.put_i16(399); // version
    h.put_i32(0x0102_0304); // opaque
    h.put_i32(0); // flag
    h.put_i32(2);
    h.put_slice(b"rm");
    let mut ext = Vec::new();
    ext.put_i16(5);
    ext.put_slice(b"topic");
    ext.put_i32(3);
    ext.put_slice(b"Top");
    h.put_i32(ext.len() as i32);
    h.put_slice(&ext);
    let mut f = BytesMut::new();
    f.put_i32((4 + h.len() + 3) as i32);
    f.put_u32((1 << 24) | h.len() as u32);
    f.put_slice(&h);
    f.put_slice(b"xyz");
    let cmd = RemotingCodec::default().decode(&mut f).unwrap().unwrap();
    assert_eq!(cmd.serialize_type, SerializeType::RocketMq);
    assert_eq!(cmd.code, 105);
    assert_eq!(cmd.language, LanguageCode::JAVA);
    assert_eq!(cmd.version, 399);
    assert_eq!(cmd.opaque, 0x0102_0304);
    assert_eq!(cmd.flag, 0);
    assert_eq!(cmd.remark.as_deref(), Some("rm"));
    assert_eq!(cmd.ext("topic"), Some("Top"));
    assert_eq!(cmd.ext_fields.len(), 1);
    assert_eq!(&cmd.body[..], b"xyz");
}

#[test]
fn hand_made_json_frame_decodes_field_by_field() {
    // What a Java client's fastjson writes for GET_ROUTEINFO_BY_TOPIC.
    let h = br#"{"code":105,"extFields":{"topic":"TopicTest","n":7},"flag":2,"language":"JAVA","opaque":12,"serializeTypeCurrentRPC":"JSON","version":317}"#;
    let mut f = BytesMut::new();
    f.put_i32((4 + h.len()) as i32);
    f.put_u32(h.len() as u32);
    f.put_slice(h);
    let cmd = RemotingCodec::default().decode(&mut f).unwrap().unwrap();
    assert_eq!(cmd.serialize_type, SerializeType::Json);
    assert_eq!(cmd.code, 105);
    assert_eq!(cmd.language, LanguageCode::JAVA);
    assert_eq!(cmd.version, 317);
    assert_eq!(cmd.opaque, 12);
    assert!(cmd.is_oneway());
    assert_eq!(cmd.remark, None);
    assert_eq!(cmd.ext("topic"), Some("TopicTest"));
    assert_eq!(cmd.ext("n"), Some("7"));
    assert!(cmd.body.is_empty());
}

#[test]
fn json_header_is_written_like_fastjson() {
    let mut cmd = RemotingCommand::request(106, 3).response_to(0, None);
    cmd.ext_fields.insert("b".into(), "2".into());
    let h = String::from_utf8(cmd.encode_header().unwrap()).unwrap();
    assert_eq!(
        h,
        r#"{"code":0,"extFields":{"b":"2"},"flag":1,"language":"JAVA","opaque":3,"serializeTypeCurrentRPC":"JSON","version":0}"#
    );
}

#[test]
fn language_names_and_numbers() {
    assert_eq!(LanguageCode::from_name("go"), LanguageCode::GO);
    assert_eq!(LanguageCode::from_name("COBOL"), LanguageCode::OTHER);
    assert_eq!(LanguageCode::RUST.name(), "RUST");
    assert_eq!(LanguageCode(200).name(), "OTHER");
    let h = br#"{"code":1,"language":9}"#;
    let cmd = RemotingCommand::decode_header(SerializeType::Json, h).unwrap();
    assert_eq!(cmd.language, LanguageCode::GO);
    // Read leniently: a number no byte holds is OTHER, as an unknown name is.
    for h in [
        &br#"{"code":1,"language":12345}"#[..],
        br#"{"code":1,"language":-1}"#,
        br#"{"code":1,"language":1.5}"#,
        br#"{"code":1,"language":"KLINGON"}"#,
    ] {
        let cmd = RemotingCommand::decode_header(SerializeType::Json, h)
            .unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(h)));
        assert_eq!(cmd.language, LanguageCode::OTHER);
    }
}

#[test]
fn json_header_read_leniently_and_refused_clearly() {
    use super::header_json::decode;
    // Numbers, booleans and nulls among the fields; unknown fields; nulls
    // for the optional numbers and the remark.
    let h = br#"{"code":11,"extFields":{"a":1,"b":true,"c":null,"d":"x","e":-2,"f":1.5,"g":18446744073709551615,"h":"y","h":null},"flag":null,"remark":null,"unknown":{"deep":[1,2]},"opaque":5}"#;
    let cmd = decode(h).unwrap();
    assert_eq!((cmd.code, cmd.flag, cmd.opaque, cmd.version), (11, 0, 5, 0));
    assert_eq!(cmd.language, LanguageCode::JAVA);
    assert_eq!(cmd.remark, None);
    let ext: Vec<(&str, &str)> = cmd
        .ext_fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        ext,
        [
            ("a", "1"),
            ("b", "true"),
            ("d", "x"),
            ("e", "-2"),
            ("f", "1.5"),
            ("g", "18446744073709551615")
        ]
    );
    // Escapes are decoded.
    let cmd = decode(br#"{"code":1,"extFields":{"k":"a\"b\u00e9"}}"#).unwrap();
    assert_eq!(cmd.ext_fields["k"], "a\"b\u{e9}");
    for bad in [
        &br#"[1,2]"#[..],
        br#"{"extFields":{}}"#,
        br#"{"code":"eleven"}"#,
        br#"{"code":4294967296}"#,
        br#"{"code":1,"extFields":{"k":{"nested":1}}}"#,
        br#"{"code":1,"extFields":[1]}"#,
        br#"{"code":1,"remark":7}"#,
    ] {
        assert!(
            matches!(decode(bad), Err(RemotingError::Json(_))),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

fn frame_of(mark: u32, header: &[u8], total: Option<i32>) -> BytesMut {
    let mut f = BytesMut::new();
    f.put_i32(total.unwrap_or((4 + header.len()) as i32));
    f.put_u32(mark);
    f.put_slice(header);
    f
}

#[test]
fn malformed_frames_are_typed_errors() {
    let mut c = RemotingCodec::default();
    // Total length below the header mark, negative, above 16 MiB.
    for (total, want) in [
        (2, RemotingError::FrameTooShort(2)),
        (-1, RemotingError::FrameTooShort(-1)),
    ] {
        let mut f = BytesMut::new();
        f.put_i32(total);
        assert_eq!(c.decode(&mut f).unwrap_err(), want);
    }
    let mut f = BytesMut::new();
    f.put_i32(DEFAULT_MAX_FRAME_SIZE as i32 + 1);
    assert!(matches!(
        c.decode(&mut f),
        Err(RemotingError::FrameTooLarge { .. })
    ));
    // Header longer than the frame; unknown serialize type.
    let mut f = frame_of(100, b"{}", None);
    assert!(matches!(
        c.decode(&mut f),
        Err(RemotingError::HeaderOverrun { .. })
    ));
    let mut f = frame_of((7 << 24) | 2, b"{}", None);
    assert_eq!(
        c.decode(&mut f).unwrap_err(),
        RemotingError::UnknownSerializeType(7)
    );
    // JSON that is not JSON, or lacks the code.
    let mut f = frame_of(3, b"{x}", None);
    assert!(matches!(c.decode(&mut f), Err(RemotingError::Json(_))));
    let mut f = frame_of(2, b"{}", None);
    assert!(matches!(c.decode(&mut f), Err(RemotingError::Json(_))));
    // Binary header cut short, with a lying remark length, bad UTF-8.
    let mut f = frame_of((1 << 24) | 3, &[0, 105, 0], None);
    assert!(matches!(c.decode(&mut f), Err(RemotingError::Truncated(_))));
    let mut h = vec![0, 105, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0];
    h.put_i32(1000);
    let mut f = frame_of((1 << 24) | h.len() as u32, &h, None);
    assert!(matches!(
        c.decode(&mut f),
        Err(RemotingError::BadLength { .. })
    ));
    let mut h = vec![0, 105, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0];
    h.put_i32(1);
    h.put_u8(0xff);
    h.put_i32(0);
    let mut f = frame_of((1 << 24) | h.len() as u32, &h, None);
    assert_eq!(
        c.decode(&mut f).unwrap_err(),
        RemotingError::InvalidUtf8("remark")
    );
}

#[test]
fn truncated_frames_wait_for_more_bytes() {
    let mut whole = BytesMut::new();
    encode_frame(&sample(SerializeType::RocketMq), &mut whole).unwrap();
    let mut c = RemotingCodec::default();
    for cut in 0..whole.len() {
        let mut part = BytesMut::from(&whole[..cut]);
        assert_eq!(c.decode(&mut part).unwrap(), None, "cut at {cut}");
    }
    // A header cut short inside a whole frame is an error, not a wait.
    for ty in [SerializeType::Json, SerializeType::RocketMq] {
        let header = sample(ty).encode_header().unwrap();
        for cut in 0..header.len() {
            assert!(
                RemotingCommand::decode_header(ty, &header[..cut]).is_err(),
                "{ty:?} cut at {cut}"
            );
        }
    }
}

#[test]
fn random_bytes_never_panic() {
    // A small xorshift: deterministic, no dependency.
    let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let valid = {
        let mut b = BytesMut::new();
        encode_frame(&sample(SerializeType::RocketMq), &mut b).unwrap();
        encode_frame(&sample(SerializeType::Json), &mut b).unwrap();
        b
    };
    for round in 0..20_000 {
        let mut buf = if round % 2 == 0 {
            // Pure noise, with a plausible length prefix half of the time.
            let n = (next() % 96) as usize;
            let mut b: BytesMut = (0..n).map(|_| next() as u8).collect();
            if round % 4 == 0 && n >= 8 {
                b[..4].copy_from_slice(&((n - 4) as i32).to_be_bytes());
                b[4] = (next() % 2) as u8;
            }
            b
        } else {
            // A valid frame pair with a few bytes flipped.
            let mut b = valid.clone();
            for _ in 0..1 + next() % 4 {
                let i = (next() as usize) % b.len();
                b[i] = next() as u8;
            }
            b
        };
        let mut c = RemotingCodec::default();
        while let Ok(Some(_)) = c.decode(&mut buf) {}
    }
}

#[test]
fn route_body_uses_rocketmq_field_names() {
    let mut addrs = std::collections::BTreeMap::new();
    addrs.insert(0u64, "127.0.0.1:10911".to_string());
    let ours = crate::TopicRouteData {
        queues: vec![crate::QueueData {
            broker_name: "b".into(),
            read_queues: 4,
            write_queues: 3,
            perm: 6,
            order: false,
        }],
        brokers: vec![crate::BrokerData {
            cluster: "c".into(),
            broker_name: "b".into(),
            addrs,
        }],
    };
    let json: serde_json::Value =
        serde_json::from_slice(&route::to_json(&route::TopicRouteData::from(&ours))).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "queueDatas": [{"brokerName": "b", "readQueueNums": 4, "writeQueueNums": 3,
                            "perm": 6, "topicSysFlag": 0}],
            "brokerDatas": [{"cluster": "c", "brokerName": "b",
                             "brokerAddrs": {"0": "127.0.0.1:10911"},
                             "enableActingMaster": false}],
            "filterServerTable": {}
        })
    );
}
