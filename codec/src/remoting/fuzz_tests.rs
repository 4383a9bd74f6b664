//! Property tests over everything here that reads a peer's bytes: the
//! frame codec, both header codecs, the stored-message layout and the ACL
//! signature check. Arbitrary, mutated, truncated and extended input must
//! give a [`RemotingError`] (or a value), never a panic or a large
//! allocation; whatever encodes must decode back to itself.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::{BufMut, Bytes, BytesMut};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use tokio_util::codec::{Decoder, Encoder};

use super::message::{
    decode_stored, decode_stored_all, encode_stored, SYSFLAG_BORNHOST_V6, SYSFLAG_COMPRESSED,
    SYSFLAG_STOREHOST_V6,
};
use super::*;
use crate::record::DecodedMessage;

/// Feeds `input` to a fresh codec until it stops giving frames.
fn feed(input: &[u8]) {
    let mut codec = RemotingCodec::new(1 << 16);
    let mut buf = BytesMut::from(input);
    let cap = buf.capacity();
    for _ in 0..8 {
        match codec.decode(&mut buf) {
            Ok(Some(cmd)) => {
                let _ = cmd.is_response();
                let _ = acl::verify("sk", &cmd);
                let _ = message::decode_stored_all(&cmd.body);
            }
            Ok(None) | Err(_) => break,
        }
    }
    // Waiting on a claimed length reserves at most the codec's limit.
    assert!(buf.capacity() <= cap + 2 * (4 + (1 << 16)));
}

fn command(ty: SerializeType) -> impl Strategy<Value = RemotingCommand> {
    let binary = ty == SerializeType::RocketMq;
    let small = |binary: bool| {
        if binary {
            (i16::MIN as i32..=i16::MAX as i32).boxed()
        } else {
            any::<i32>().boxed()
        }
    };
    (
        small(binary),
        if binary {
            any::<u8>().boxed()
        } else {
            (0u8..13).boxed()
        },
        small(binary),
        any::<i32>(),
        any::<i32>(),
        proptest::option::of("\\PC{0,12}"),
        btree_map("\\PC{0,8}", "\\PC{0,12}", 0..5),
        vec(any::<u8>(), 0..32),
    )
        .prop_map(
            move |(code, language, version, opaque, flag, remark, ext_fields, body)| {
                RemotingCommand {
                    code,
                    language: LanguageCode(language),
                    version,
                    opaque,
                    flag,
                    // The binary layout writes no remark and an empty one alike.
                    remark: remark.filter(|r| !(binary && r.is_empty())),
                    ext_fields,
                    serialize_type: ty,
                    body: Bytes::from(body),
                }
            },
        )
}

fn any_command() -> impl Strategy<Value = RemotingCommand> {
    prop_oneof![
        command(SerializeType::Json),
        command(SerializeType::RocketMq)
    ]
}

fn host() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, port)| {
            let ip = Ipv6Addr::from(ip);
            // A v4-mapped v6 address is written (and read back) as v4.
            match ip.to_ipv4_mapped() {
                Some(v4) => SocketAddr::new(IpAddr::V4(v4), port),
                None => SocketAddr::new(IpAddr::V6(ip), port),
            }
        }),
    ]
}

/// What a stored message is built from.
type StoredParts = (
    [u64; 4],
    (SocketAddr, SocketAddr),
    Vec<u8>,
    String,
    Vec<(String, String)>,
);

fn stored_parts() -> impl Strategy<Value = StoredParts> {
    (
        any::<[u64; 4]>(),
        (host(), host()),
        vec(any::<u8>(), 0..64),
        "[a-zA-Z0-9%_-]{0,40}",
        vec(("[a-zA-Z_]{1,8}", "[a-zA-Z0-9 ]{0,8}"), 0..4),
    )
}

fn raw_properties(props: &[(String, String)]) -> String {
    props
        .iter()
        .map(|(k, v)| format!("{k}\u{1}{v}\u{2}"))
        .collect()
}

fn decoded<'a>(parts: &'a StoredParts, props: &'a str) -> DecodedMessage<'a> {
    let ([a, b, c, d], (born, store), body, topic, _) = parts;
    DecodedMessage {
        record_size: 0,
        queue_id: *a as u32,
        flag: (*a >> 32) as i32,
        queue_offset: *b,
        physical_offset: *c,
        // Only the bits encode_stored keeps (it sets the host bits itself).
        sys_flag: (*d as u32)
            & !(SYSFLAG_COMPRESSED | SYSFLAG_BORNHOST_V6 | SYSFLAG_STOREHOST_V6) as u32,
        born_timestamp: *d as i64,
        born_host: *born,
        store_timestamp: (*d >> 7) as i64,
        store_host: *store,
        reconsume_times: (*b >> 40) as u32,
        prepared_tx_offset: c.rotate_left(9),
        body,
        topic,
        raw_properties: props,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn random_bytes_never_panic(input in vec(any::<u8>(), 0..256)) {
        feed(&input);
        let _ = decode_frame(Bytes::from(input.clone()));
        let _ = RemotingCommand::decode_header(SerializeType::Json, &input);
        let _ = RemotingCommand::decode_header(SerializeType::RocketMq, &input);
        let _ = decode_stored_all(&input);
    }

    #[test]
    fn random_content_after_a_valid_length_never_panics(
        mark_type in 0u8..3,
        header_len in prop_oneof![0u32..64, Just(0x00FF_FFFF), any::<u32>()],
        rest in vec(any::<u8>(), 0..200),
    ) {
        let mut f = BytesMut::new();
        f.put_i32(4 + rest.len() as i32);
        f.put_u32((u32::from(mark_type) << 24) | (header_len & 0x00FF_FFFF));
        f.put_slice(&rest);
        feed(&f);
    }

    #[test]
    fn length_prefixes_over_the_limit_or_negative_are_refused_at_once(
        total in prop_oneof![i32::MIN..4, (1 << 16) + 1..=i32::MAX],
        rest in vec(any::<u8>(), 0..16),
    ) {
        let mut f = BytesMut::new();
        f.put_i32(total);
        f.put_slice(&rest);
        let cap = f.capacity();
        let r = RemotingCodec::new(1 << 16).decode(&mut f);
        prop_assert!(
            matches!(r, Err(RemotingError::FrameTooShort(_) | RemotingError::FrameTooLarge { .. })),
            "{:?}", r
        );
        prop_assert_eq!(f.capacity(), cap, "nothing reserved");
    }

    #[test]
    fn commands_round_trip_through_the_codec(cmd in any_command(), split in any::<usize>()) {
        let mut wire = BytesMut::new();
        RemotingCodec::default().encode(cmd.clone(), &mut wire).unwrap();
        let cut = split % (wire.len() + 1);
        let mut codec = RemotingCodec::default();
        let mut buf = BytesMut::from(&wire[..cut]);
        if cut < wire.len() {
            prop_assert_eq!(codec.decode(&mut buf).unwrap(), None);
            buf.extend_from_slice(&wire[cut..]);
        }
        let got = codec.decode(&mut buf).unwrap().expect("a whole frame");
        prop_assert!(buf.is_empty());
        prop_assert_eq!(got, cmd);
    }

    #[test]
    fn mutated_truncated_and_extended_headers_never_panic(
        cmd in any_command(),
        edits in vec((any::<usize>(), any::<u8>()), 1..4),
        cut in any::<usize>(),
        extra in vec(any::<u8>(), 0..8),
    ) {
        let ty = cmd.serialize_type;
        let mut header = cmd.encode_header().unwrap();
        for (at, b) in edits {
            if !header.is_empty() {
                let at = at % header.len();
                header[at] = b;
            }
        }
        let _ = RemotingCommand::decode_header(ty, &header);
        let _ = RemotingCommand::decode_header(ty, &header[..cut % (header.len() + 1)]);
        header.extend_from_slice(&extra);
        let _ = RemotingCommand::decode_header(ty, &header);
        let mut wire = BytesMut::new();
        encode_frame(&cmd, &mut wire).unwrap();
        let at = cut % wire.len();
        wire[at] ^= 0x80;
        feed(&wire);
    }

    #[test]
    fn binary_header_length_fields_are_checked(
        field in 0usize..4,
        len in prop_oneof![Just(-1i32), Just(i32::MIN), Just(i32::MAX), any::<i32>()],
    ) {
        // code, language, version, opaque, flag, then the lengths under test.
        let mut h = vec![0, 105, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0];
        match field {
            0 => { h.put_i32(len); h.put_i32(0); }
            1 => { h.put_i32(0); h.put_i32(len); }
            2 => { h.put_i32(0); h.put_i32(6); h.put_i16(len as i16); h.put_i32(0); }
            _ => { h.put_i32(0); h.put_i32(7); h.put_i16(1); h.put_u8(b'k'); h.put_i32(len); }
        }
        let r = RemotingCommand::decode_header(SerializeType::RocketMq, &h);
        prop_assert!(r.is_err() || len == 0 || (field == 2 && len as i16 == 0), "{:?}", r);
    }

    #[test]
    fn stored_messages_round_trip(parts in stored_parts(), twice in any::<bool>()) {
        let props = raw_properties(&parts.4);
        let m = decoded(&parts, &props);
        let mut out = BytesMut::new();
        encode_stored(&m, &mut out).unwrap();
        if twice {
            encode_stored(&m, &mut out).unwrap();
        }
        let all = decode_stored_all(&out).unwrap();
        prop_assert_eq!(all.len(), if twice { 2 } else { 1 });
        let d = &all[0];
        prop_assert_eq!(d.queue_id, m.queue_id as i32);
        prop_assert_eq!(d.flag, m.flag);
        prop_assert_eq!(d.queue_offset, m.queue_offset as i64);
        prop_assert_eq!(d.physical_offset, m.physical_offset as i64);
        prop_assert_eq!(d.born_timestamp, m.born_timestamp);
        prop_assert_eq!(d.store_timestamp, m.store_timestamp);
        prop_assert_eq!((d.born_host, d.store_host), (m.born_host, m.store_host));
        prop_assert_eq!(d.reconsume_times, m.reconsume_times as i32);
        prop_assert_eq!(d.prepared_tx_offset, m.prepared_tx_offset as i64);
        let host_bits = SYSFLAG_BORNHOST_V6 | SYSFLAG_STOREHOST_V6;
        prop_assert_eq!(d.sys_flag & !host_bits, m.sys_flag as i32);
        prop_assert_eq!(&d.body[..], m.body);
        prop_assert_eq!(&d.topic, m.topic);
        prop_assert_eq!(&d.properties, &parts.4);
    }

    #[test]
    fn mutated_stored_messages_never_panic(
        parts in stored_parts(),
        edits in vec((any::<usize>(), any::<u8>()), 1..4),
        cut in any::<usize>(),
    ) {
        let props = raw_properties(&parts.4);
        let mut out = BytesMut::new();
        encode_stored(&decoded(&parts, &props), &mut out).unwrap();
        let mut bytes = out.to_vec();
        for (at, b) in edits {
            let at = at % bytes.len();
            bytes[at] = b;
        }
        let _ = decode_stored_all(&bytes);
        let _ = decode_stored_all(&bytes[..cut % (bytes.len() + 1)]);
    }

    #[test]
    fn acl_verify_never_panics_on_any_signature(
        sig in "\\PC{0,64}",
        fields in btree_map("\\PC{0,6}", "\\PC{0,6}", 0..4),
        body in vec(any::<u8>(), 0..32),
    ) {
        let mut cmd = RemotingCommand::request(10, 1).with_body(body);
        cmd.ext_fields = fields;
        cmd.ext_fields.insert(acl::SIGNATURE.into(), sig);
        let _ = acl::verify("sk", &cmd);
        let good = acl::sign("sk", &cmd);
        cmd.ext_fields.insert(acl::SIGNATURE.into(), good);
        prop_assert!(acl::verify("sk", &cmd));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn transaction_checks_of_any_record_never_panic(
        record in vec(any::<u8>(), 0..200),
        magic in any::<bool>(),
    ) {
        let mut record = record;
        if magic && record.len() >= 12 {
            let len = record.len() as u32;
            record[..4].copy_from_slice(&len.to_be_bytes());
            record[4..8].copy_from_slice(&crate::record::MESSAGE_MAGIC.to_be_bytes());
            let crc = crc32fast::hash(&record[12..]);
            record[8..12].copy_from_slice(&crc.to_be_bytes());
        }
        let req = crate::CheckTransactionStateRequest {
            record: Bytes::from(record),
            ..Default::default()
        };
        let _ = notify::check_transaction_state(&req, "127.0.0.1:10911".parse().unwrap());
    }

    #[test]
    fn route_bodies_of_any_bytes_decode_or_fail(
        body in prop_oneof![
            vec(any::<u8>(), 0..128),
            "[\\[\\]{}\":,0-9a-zA-Z ]{0,128}".prop_map(String::into_bytes),
        ],
    ) {
        let _ = serde_json::from_slice::<route::TopicRouteData>(&body);
        let _ = serde_json::from_slice::<route::ClusterInfo>(&body);
        let _ = serde_json::from_slice::<route::TopicList>(&body);
    }
}

#[test]
fn stored_message_lengths_are_checked() {
    let parts: StoredParts = (
        [1, 2, 3, 4],
        (
            "10.0.0.1:1".parse().unwrap(),
            "[2001:db8::1]:2".parse().unwrap(),
        ),
        Vec::new(),
        "T".into(),
        vec![],
    );
    let mut out = BytesMut::new();
    encode_stored(&decoded(&parts, ""), &mut out).unwrap();
    let good = out.to_vec();
    // An empty body, then topic length 1, "T", properties length 0: a
    // negative body length read as 0 would decode.
    let body_len_at = good.len() - 4 - 1 - 1 - 2;
    assert_eq!(&good[body_len_at..body_len_at + 4], &0i32.to_be_bytes());
    for (at, value) in [
        (0, -1i32),
        (0, i32::MIN),
        (0, i32::MAX),
        (0, 3),
        (body_len_at, -1),
        (body_len_at, i32::MIN),
        (body_len_at, i32::MAX),
        (body_len_at, 1000),
    ] {
        let mut bad = good.clone();
        bad[at..at + 4].copy_from_slice(&value.to_be_bytes());
        assert!(
            decode_stored(&bad).is_err(),
            "field at {at} = {value} decoded"
        );
    }
    assert!(decode_stored(&good).is_ok());
}

#[test]
fn json_headers_nested_deeply_are_errors() {
    for depth in [200, 100_000] {
        let header = format!(
            "{{\"code\":1,\"x\":{}1{}}}",
            "[".repeat(depth),
            "]".repeat(depth)
        );
        // An unknown field is skipped without recursing (serde_json keeps
        // the open brackets in a list): deep is fine, it only must not crash.
        let _ = RemotingCommand::decode_header(SerializeType::Json, header.as_bytes());
        let header = format!(
            "{{\"code\":1,\"extFields\":{{\"k\":{}}}}}",
            "{\"a\":".repeat(depth)
        );
        assert!(RemotingCommand::decode_header(SerializeType::Json, header.as_bytes()).is_err());
    }
}
