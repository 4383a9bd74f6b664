//! Hostile frames over the wire: a body that would decode into far more
//! memory than its bytes (a 16 MiB heartbeat of empty group names, 24 bytes
//! of `String` each) is answered `BadRequest` by a real broker, which keeps
//! serving that connection and others (`skylark_codec::budget`).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::BytesMut;
use common::Standalone;
use skylark::actors::remoting::wire;
use skylark::codec::{
    Ack, Command as Cmd, ErrorCode, FrameCodec, Handshake, HandshakeResponse, Header,
    HeartbeatRequest, ProtocolError, RawFrame, DEFAULT_MAX_FRAME_SIZE, PROTOCOL_VERSION,
};
use tokio_util::codec::Decoder;

/// Reads one frame; panics on EOF or after 30 s.
fn read_frame(s: &mut TcpStream, buf: &mut BytesMut) -> RawFrame {
    let mut codec = FrameCodec::default();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(f) = codec.decode(buf).expect("a well-formed answer") {
            return f;
        }
        let n = s.read(&mut chunk).expect("an answer within 30 s");
        assert!(n > 0, "the broker closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A heartbeat request frame whose `producer_groups` is `count` empty
/// strings (`0xa0` each), written by hand: no client would encode it.
fn hostile_heartbeat(id: u64, count: u32) -> Vec<u8> {
    let mut payload = vec![0x92];
    payload.extend(rmp_serde::to_vec(&Header::request(id, Cmd::Heartbeat)).unwrap());
    let str_ = |s: &str| rmp_serde::to_vec(s).unwrap();
    payload.push(0x83); // a map of 3 entries
    payload.extend(str_("client_id"));
    payload.extend(str_("hostile@test"));
    payload.extend(str_("producer_groups"));
    payload.push(0xdd); // array 32
    payload.extend(count.to_be_bytes());
    payload.resize(payload.len() + count as usize, 0xa0);
    payload.extend(str_("consumer_groups"));
    payload.push(0x90); // an empty array
    let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
    frame.extend(payload);
    frame
}

#[test]
fn a_heartbeat_of_16_million_empty_names_is_answered_bad_request_and_the_broker_serves_on() {
    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start(dir.path(), &[]);
    let mut s = TcpStream::connect(node.broker()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut buf = BytesMut::new();
    let hello = Handshake {
        protocol_version: PROTOCOL_VERSION,
        client_id: "hostile@test".into(),
        client_version: "test".into(),
    };
    s.write_all(&wire::encode(Header::request(1, Cmd::Handshake), &hello))
        .unwrap();
    read_frame(&mut s, &mut buf)
        .decode_response::<HandshakeResponse>()
        .expect("handshake answer");

    let frame = hostile_heartbeat(2, (DEFAULT_MAX_FRAME_SIZE - 4096) as u32);
    assert!(frame.len() - 4 <= DEFAULT_MAX_FRAME_SIZE);
    s.write_all(&frame).unwrap();
    let answer = read_frame(&mut s, &mut buf);
    assert_eq!(answer.header.request_id, 2);
    match answer.decode_response::<Ack>() {
        Err(ProtocolError::Remote(e)) => {
            assert_eq!(e.code, ErrorCode::BadRequest, "{e}");
            assert!(e.message.contains("would exceed"), "{e}");
        }
        other => panic!("expected BadRequest, got {other:?}"),
    }

    // The same connection still serves a real heartbeat...
    let hb = HeartbeatRequest {
        client_id: "hostile@test".into(),
        producer_groups: vec!["PG".into()],
        ..HeartbeatRequest::default()
    };
    s.write_all(&wire::encode(Header::request(3, Cmd::Heartbeat), &hb))
        .unwrap();
    let ok = read_frame(&mut s, &mut buf);
    assert_eq!(ok.header.request_id, 3);
    ok.decode_response::<Ack>().expect("heartbeat accepted");
    // ...and so does the broker, for other clients.
    let out = node.cli(&["admin", "--json", "cluster", "list"]);
    assert!(out.status.success(), "{out:?}");
}
