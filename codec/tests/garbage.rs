//! Hostile input: random, mutated, truncated and oversized bytes given to the
//! decoder and to `decode_body` must produce errors (or "need more bytes"),
//! never a panic, a wrong frame or a large allocation.

use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;
use skylark_codec::*;
use tokio_util::codec::{Decoder, Encoder};

/// Small deterministic PRNG (xorshift64*), so failures are reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn sample_frames() -> Vec<Vec<u8>> {
    let mut codec = FrameCodec::default();
    let mut out = Vec::new();
    let mut push = |buf: BytesMut| out.push(buf.to_vec());
    let msg = MessageData {
        tags: Some("TagA".into()),
        keys: Some("k1 k2".into()),
        properties: vec![("a".into(), "b".into())],
        body: Bytes::from_static(&[1, 2, 3, 4, 5, 6, 7, 8]),
        deliver_at_ms: Some(5),
        ..MessageData::default()
    };
    let mut b = BytesMut::new();
    let req = SendBatchRequest {
        producer_group: "pg".into(),
        topic: "t".into(),
        queue_id: -1,
        messages: vec![msg.clone(), msg.clone()],
    };
    codec.encode(OutFrame::request(7, &req), &mut b).unwrap();
    push(b);
    let mut b = BytesMut::new();
    let hb = HeartbeatRequest {
        client_id: "c".into(),
        language: "RUST".into(),
        version: "1".into(),
        producer_groups: vec!["p".into()],
        consumer_groups: vec![ConsumerGroupData {
            group: "g".into(),
            consume_from: ConsumeFrom::Timestamp(9),
            subscriptions: vec![Subscription {
                topic: "t".into(),
                expression_type: ExpressionType::Tag,
                expression: "*".into(),
            }],
            ..ConsumerGroupData::default()
        }],
    };
    codec.encode(OutFrame::request(8, &hb), &mut b).unwrap();
    push(b);
    let mut b = BytesMut::new();
    let pull = PullResponse {
        status: PullStatus::Found,
        count: 2,
        records: Bytes::from(vec![9u8; 40]),
        ..PullResponse::default()
    };
    let h = Header::request(9, Command::PullMessage);
    codec
        .encode(OutFrame::response_ok(&h, &pull), &mut b)
        .unwrap();
    push(b);
    let mut b = BytesMut::new();
    let err = WireError::new(ErrorCode::TopicNotFound, "no topic t");
    codec
        .encode(OutFrame::response_err(&h, err), &mut b)
        .unwrap();
    push(b);
    // Signed requests ([header, body, auth]): with a nonce and without.
    let creds = Credentials::new("ak", "sk");
    for nonce in [Some(77), None] {
        let mut b = BytesMut::new();
        skylark_codec::auth::encode_signed_frame_with_nonce(
            &Header::request(10, Command::SendBatch),
            &req,
            &creds,
            1_700_000_000_000,
            nonce,
            &mut b,
            1 << 20,
        )
        .unwrap();
        push(b);
    }
    out
}

/// Decodes a frame's body as several types; must never panic.
fn poke_body(frame: &RawFrame) {
    let _ = frame.decode_body::<SendBatchRequest>();
    let _ = frame.decode_body::<HeartbeatRequest>();
    let _ = frame.decode_body::<ClusterInfo>();
    let _ = frame.decode_response::<PullResponse>();
    let _ = frame.decode_response::<Ack>();
    let _ = frame.command();
    if let Some(auth) = &frame.auth {
        let _ = skylark_codec::auth::verify_request("sk", auth, &frame.header, &frame.body);
    }
}

/// Feeds `input` to a fresh decoder until it stops producing frames;
/// returns how many frames decoded.
fn feed(input: &[u8]) -> usize {
    let mut codec = FrameCodec::new(1 << 20);
    let mut buf = BytesMut::from(input);
    let mut frames = 0;
    for _ in 0..8 {
        match codec.decode(&mut buf) {
            Ok(Some(frame)) => {
                poke_body(&frame);
                frames += 1;
            }
            Ok(None) | Err(_) => break,
        }
    }
    frames
}

#[test]
fn hundred_thousand_random_inputs_never_panic() {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for _ in 0..60_000 {
        let n = rng.below(80);
        let _ = feed(&rng.bytes(n));
    }
    // Valid length prefix, random payload.
    for _ in 0..60_000 {
        let n = 6 + rng.below(60);
        let mut input = (n as u32).to_be_bytes().to_vec();
        input.extend(rng.bytes(n));
        if rng.below(2) == 0 {
            input[4] = 0x92; // a plausible envelope
        }
        let _ = feed(&input);
    }
}

#[test]
fn mutated_valid_frames_never_panic() {
    let frames = sample_frames();
    let mut rng = Rng(0x0dd_ba11_cafe_f00d);
    let mut decoded = 0;
    for i in 0..60_000 {
        let mut f = frames[i % frames.len()].clone();
        for _ in 0..1 + rng.below(4) {
            // Leave the length prefix alone most of the time so the
            // mutation reaches the MessagePack decoding.
            let lo = if rng.below(8) == 0 { 0 } else { 4 };
            let at = lo + rng.below(f.len() - lo);
            match rng.below(3) {
                0 => f[at] ^= 1 << rng.below(8),
                1 => f[at] = rng.next() as u8,
                _ => f[at] = [0x00, 0x7f, 0xc0, 0xc1, 0xc4, 0xdc, 0xdd, 0xdf, 0xff][rng.below(9)],
            }
        }
        decoded += feed(&f);
    }
    // The mutations must also reach body decoding, not only the framing.
    assert!(decoded > 1_000, "only {decoded} mutated frames decoded");
}

#[test]
fn every_prefix_of_a_valid_frame_needs_more_bytes() {
    for frame in sample_frames() {
        for cut in 0..frame.len() {
            let mut codec = FrameCodec::default();
            let mut buf = BytesMut::from(&frame[..cut]);
            assert!(matches!(codec.decode(&mut buf), Ok(None)), "prefix {cut}");
            assert_eq!(buf.len(), cut, "nothing consumed");
            buf.extend_from_slice(&frame[cut..]);
            let got = codec.decode(&mut buf).unwrap().expect("whole frame");
            poke_body(&got);
        }
    }
}

#[test]
fn length_over_max_is_refused_without_allocating() {
    let mut codec = FrameCodec::default();
    let mut buf = BytesMut::with_capacity(16);
    buf.put_u32(u32::MAX); // claims 4 GiB
    buf.put_slice(&[0x92, 0x93]);
    let cap = buf.capacity();
    match codec.decode(&mut buf) {
        Err(ProtocolError::FrameTooLarge { size, max }) => {
            assert_eq!(size, u32::MAX as usize);
            assert_eq!(max, DEFAULT_MAX_FRAME_SIZE);
        }
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
    assert_eq!(buf.capacity(), cap, "nothing reserved");
    assert_eq!(
        ProtocolError::FrameTooLarge { size: 1, max: 0 }.code(),
        ErrorCode::FrameTooLarge
    );

    let mut codec = FrameCodec::new(1000);
    let mut buf = BytesMut::new();
    buf.put_u32(1001);
    assert!(matches!(
        codec.decode(&mut buf),
        Err(ProtocolError::FrameTooLarge {
            size: 1001,
            max: 1000
        })
    ));
}

#[test]
fn length_below_minimum_is_malformed() {
    for len in 0..MIN_FRAME_LEN as u32 {
        let mut buf = BytesMut::new();
        buf.put_u32(len);
        buf.put_slice(&[0x92, 0x93, 0, 0, 1, 0xc0]);
        let r = FrameCodec::default().decode(&mut buf);
        assert!(
            matches!(r, Err(ProtocolError::Malformed(_))),
            "{len}: {r:?}"
        );
    }
}

#[test]
fn unknown_command_decodes_and_is_answered() {
    let mut codec = FrameCodec::default();
    let mut wire = BytesMut::new();
    let header = Header {
        request_id: 77,
        kind: FrameKind::Request,
        command: 4242,
    };
    codec
        .encode(OutFrame::new(header, &Ack {}), &mut wire)
        .unwrap();
    let frame = codec.decode(&mut wire).unwrap().unwrap();
    assert_eq!(frame.header, header);
    let err = Command::try_from(frame.header.command).unwrap_err();
    assert!(matches!(err, ProtocolError::UnknownCommand(4242)));
    assert!(matches!(
        frame.command(),
        Err(ProtocolError::UnknownCommand(4242))
    ));
    assert_eq!(err.code(), ErrorCode::UnknownCommand);

    // The server answers with the same request id and raw command.
    codec
        .encode(
            OutFrame::response_err(&frame.header, err.to_wire()),
            &mut wire,
        )
        .unwrap();
    let resp = codec.decode(&mut wire).unwrap().unwrap();
    assert_eq!(resp.header, Header::response(77, 4242));
    match resp.decode_response::<Ack>() {
        Err(ProtocolError::Remote(w)) => assert_eq!(w.code, ErrorCode::UnknownCommand),
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_frame_kind_is_malformed() {
    let mut buf = BytesMut::new();
    buf.put_u32(6);
    buf.put_slice(&[0x92, 0x93, 1, 9, 1, 0xc0]);
    let r = FrameCodec::default().decode(&mut buf);
    assert!(matches!(r, Err(ProtocolError::Malformed(_))), "{r:?}");
    assert!(buf.is_empty(), "the bad frame is consumed");
}

#[test]
fn trailing_bytes_after_body_are_malformed() {
    let mut wire = BytesMut::new();
    FrameCodec::default()
        .encode(OutFrame::request(1, &GetTopicListRequest {}), &mut wire)
        .unwrap();
    // Append one byte inside the frame and fix the length.
    wire.put_u8(0xc0);
    let len = (wire.len() - 4) as u32;
    wire[..4].copy_from_slice(&len.to_be_bytes());
    let r = FrameCodec::default().decode(&mut wire);
    assert!(matches!(r, Err(ProtocolError::Malformed(_))), "{r:?}");

    // And decode_body on a hand-made RawFrame with trailing bytes.
    let frame = RawFrame {
        header: Header::request(1, Command::GetTopicList),
        body: Bytes::from_static(&[0x80, 0xc0]),
        auth: None,
    };
    assert!(matches!(
        frame.decode_body::<GetTopicListRequest>(),
        Err(ProtocolError::Malformed(_))
    ));
}

#[test]
fn deep_nesting_and_huge_claims_in_body_are_errors() {
    // {"x": [[[[ ... ]]]]} 100k deep: structurally valid, but too deep to
    // decode; must error without overflowing the stack.
    let mut body = vec![0x81, 0xa1, b'x'];
    body.extend(vec![0x91u8; 100_000]);
    body.push(0xc0);
    let frame = RawFrame {
        header: Header::request(1, Command::Handshake),
        body: Bytes::from(body),
        auth: None,
    };
    assert!(frame.decode_body::<HandshakeResponse>().is_err());
    assert!(frame.decode_body::<ClusterInfo>().is_err());

    for body in [
        vec![0xdd, 0xff, 0xff, 0xff, 0xff],
        vec![0xdf, 0xff, 0xff, 0xff, 0xff, 0xc0],
        vec![0xc6, 0xff, 0xff, 0xff, 0xff, 1, 2],
        vec![0xdb, 0x7f, 0xff, 0xff, 0xff],
    ] {
        let frame = RawFrame {
            header: Header::request(1, Command::PullMessage),
            body: Bytes::from(body),
            auth: None,
        };
        assert!(matches!(
            frame.decode_body::<PullResponse>(),
            Err(ProtocolError::Malformed(_))
        ));
    }
}

#[test]
fn wrong_body_type_is_malformed() {
    let mut codec = FrameCodec::default();
    let mut wire = BytesMut::new();
    let req = SendRequest::default();
    codec.encode(OutFrame::request(3, &req), &mut wire).unwrap();
    let frame = codec.decode(&mut wire).unwrap().unwrap();
    assert!(matches!(
        frame.decode_body::<PullRequest>(),
        Err(ProtocolError::Malformed(_))
    ));
    assert!(matches!(
        frame.decode_request::<PullRequest>(),
        Err(ProtocolError::Malformed(_))
    ));
    assert!(frame.decode_response::<SendResult>().is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_after_a_valid_length_are_malformed(
        payload in proptest::collection::vec(any::<u8>(), 6..200),
    ) {
        prop_assume!(payload[0] != 0x92 && payload[0] != 0x93);
        let mut buf = BytesMut::new();
        buf.put_u32(payload.len() as u32);
        buf.put_slice(&payload);
        let r = FrameCodec::default().decode(&mut buf);
        prop_assert!(matches!(r, Err(ProtocolError::Malformed(_))), "{:?}", r);
        prop_assert!(buf.is_empty());
    }

    /// A plain (0x92) or signed (0x93) envelope around random bytes.
    #[test]
    fn random_envelopes_decode_or_are_malformed(
        marker in prop_oneof![Just(0x92u8), Just(0x93u8)],
        payload in proptest::collection::vec(any::<u8>(), 5..200),
    ) {
        let mut buf = BytesMut::new();
        buf.put_u32(payload.len() as u32 + 1);
        buf.put_u8(marker);
        buf.put_slice(&payload);
        match FrameCodec::default().decode(&mut buf) {
            Ok(Some(frame)) => poke_body(&frame),
            Err(ProtocolError::Malformed(_)) => {}
            other => prop_assert!(false, "unexpected {:?}", other),
        }
    }

    #[test]
    fn random_payload_prefixes_give_a_header_or_none(
        payload in proptest::collection::vec(any::<u8>(), 0..24),
    ) {
        let mut with_marker = vec![0x92];
        with_marker.extend_from_slice(&payload);
        let _ = skylark_codec::frame::peek_header(&payload);
        let _ = skylark_codec::frame::peek_header(&with_marker);
    }

    #[test]
    fn frames_delivered_in_any_chunks_decode_as_sent(
        order in proptest::collection::vec(0usize..6, 1..8),
        chunks in proptest::collection::vec(1usize..64, 1..40),
    ) {
        let samples = sample_frames();
        let mut codec = FrameCodec::default();
        let want: Vec<RawFrame> = order
            .iter()
            .map(|&i| {
                let mut b = BytesMut::from(&samples[i % samples.len()][..]);
                codec.decode(&mut b).unwrap().unwrap()
            })
            .collect();
        let wire: Vec<u8> = order
            .iter()
            .flat_map(|&i| samples[i % samples.len()].clone())
            .collect();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut at = 0;
        for &n in chunks.iter().cycle() {
            if at >= wire.len() {
                break;
            }
            let end = (at + n).min(wire.len());
            buf.extend_from_slice(&wire[at..end]);
            at = end;
            while let Some(frame) = codec.decode(&mut buf).unwrap() {
                got.push(frame);
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(got, want);
    }

    #[test]
    fn random_bodies_give_errors_not_panics(
        body in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let frame = RawFrame {
            header: Header::request(1, Command::SendBatch),
            body: Bytes::from(body),
            auth: None,
        };
        poke_body(&frame);
        let _ = frame.decode_body::<RegisterBrokerRequest>();
        let _ = frame.decode_body::<PullRequest>();
        let _ = frame.decode_response::<TopicRouteData>();
    }
}

#[test]
fn garbage_is_refused_before_its_claimed_length_arrives() {
    // Random bytes claiming a 10 MB frame: refused at the first payload
    // byte instead of waiting (and reserving) for 10 MB.
    let mut buf = BytesMut::new();
    buf.put_u32(10_000_000);
    buf.put_u8(0x17);
    let cap = buf.capacity();
    let r = FrameCodec::default().decode(&mut buf);
    assert!(matches!(r, Err(ProtocolError::Malformed(_))), "{r:?}");
    assert!(buf.capacity() <= cap.max(64));
}
