//! Property tests: every request and response type survives the full
//! `FrameCodec` round trip (encode → decode → typed body), including error
//! responses, with the bytes delivered in two arbitrary pieces; and hostile
//! copies of each of those bodies (bytes changed, cut short, extended, a
//! huge length spliced in) decode or are `Malformed`, never panic.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::net::{IpAddr, SocketAddr};

use bytes::{Bytes, BytesMut};
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde::Serialize;
use skylark_codec::*;
use tokio_util::codec::{Decoder, Encoder};

/// Decodes `wire` delivered as two pieces split at `split` (modulo length).
fn decode_split(wire: &[u8], split: usize) -> RawFrame {
    let mut codec = FrameCodec::default();
    let cut = split % (wire.len() + 1);
    let mut buf = BytesMut::from(&wire[..cut]);
    if cut < wire.len() {
        assert!(codec.decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(&wire[cut..]);
    }
    let frame = codec.decode(&mut buf).unwrap().expect("whole frame");
    assert!(buf.is_empty());
    frame
}

/// Markers that change what a value is, or claim a length.
const HOSTILE_MARKERS: [u8; 22] = [
    0x00, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xc4, 0xc6, 0xca, 0xcb, 0xcf,
    0xd3, 0xd9, 0xdc, 0xdd, 0xdf, 0xff,
];

/// Hostile copies of a valid body, derived from `seed`: each must decode
/// as `T` or be `Malformed` (or, for a response, an error answer), never
/// panic.
fn poke_mutations<T: DeserializeOwned>(frame: &RawFrame, seed: u64) {
    let body = frame.body.to_vec();
    let mut s = seed | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s as usize
    };
    for round in 0..10 {
        let mut b = body.clone();
        let at = next() % b.len();
        match round % 5 {
            0 => b[at] ^= 1 << (next() % 8),
            1 => b[at] = HOSTILE_MARKERS[next() % HOSTILE_MARKERS.len()],
            2 => b.truncate(at),
            3 => b.extend_from_slice(&HOSTILE_MARKERS[..next() % 4]),
            // A 32-bit array, map, str or bin length claiming ~4 GiB.
            _ => {
                let marker = [0xdd, 0xdf, 0xdb, 0xc6][next() % 4];
                b.splice(at..at, [marker, 0xff, 0xff, 0xff, 0xf0]);
            }
        }
        let hostile = RawFrame {
            header: frame.header,
            body: Bytes::from(b),
            auth: None,
        };
        match hostile.decode_body::<T>() {
            Ok(_) | Err(ProtocolError::Malformed(_)) => {}
            Err(e) => panic!("round {round}: {e:?}"),
        }
    }
}

fn check_request<R: Rpc + PartialEq + Debug>(id: u64, split: usize, req: &R) {
    let mut wire = BytesMut::new();
    FrameCodec::default()
        .encode(OutFrame::request(id, req), &mut wire)
        .unwrap();
    let frame = decode_split(&wire, split);
    poke_mutations::<R>(&frame, id ^ split as u64);
    assert_eq!(frame.header, Header::request(id, R::COMMAND));
    assert_eq!(frame.command().unwrap(), R::COMMAND);
    assert_eq!(&frame.decode_request::<R>().unwrap(), req);
    assert_eq!(&frame.decode_body::<R>().unwrap(), req);

    // Oneway frames carry the same body.
    let mut wire = BytesMut::new();
    FrameCodec::default()
        .encode(OutFrame::oneway(id, req), &mut wire)
        .unwrap();
    let frame = decode_split(&wire, split);
    assert_eq!(frame.header.kind, FrameKind::Oneway);
    assert_eq!(&frame.decode_request::<R>().unwrap(), req);

    // Re-encoding the raw frame gives the same bytes.
    let mut again = BytesMut::new();
    FrameCodec::default().encode(frame, &mut again).unwrap();
    assert_eq!(again, wire);
}

fn check_response<T: Serialize + DeserializeOwned + PartialEq + Debug>(
    request: Header,
    split: usize,
    resp: &T,
    err: &WireError,
) {
    let mut codec = FrameCodec::default();
    let mut wire = BytesMut::new();
    codec
        .encode(OutFrame::response_ok(&request, resp), &mut wire)
        .unwrap();
    let frame = decode_split(&wire, split);
    assert_eq!(frame.header, request.response_to());
    assert_eq!(frame.header.kind, FrameKind::Response);
    assert_eq!(&frame.decode_response::<T>().unwrap(), resp);
    poke_mutations::<ResponseBody<T>>(&frame, request.request_id ^ split as u64);

    let mut wire = BytesMut::new();
    codec
        .encode(OutFrame::response_err(&request, err.clone()), &mut wire)
        .unwrap();
    let frame = decode_split(&wire, split);
    assert_eq!(frame.header, request.response_to());
    match frame.decode_response::<T>() {
        Err(ProtocolError::Remote(got)) => assert_eq!(&got, err),
        other => panic!("expected a remote error, got {other:?}"),
    }
}

/// Round-trips a request and its response type.
fn check_rpc<R: Rpc + PartialEq + Debug>(
    id: u64,
    split: usize,
    req: &R,
    resp: &R::Response,
    err: &WireError,
) where
    R::Response: PartialEq + Debug,
{
    check_request(id, split, req);
    check_response(Header::request(id, R::COMMAND), split, resp, err);
}

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,12}"
}

fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    prop::sample::select(ErrorCode::ALL.to_vec())
}

fn wire_error() -> impl Strategy<Value = WireError> {
    (error_code(), text()).prop_map(|(code, message)| WireError { code, message })
}

prop_compose! {
    fn message_data()(
        flag in any::<i32>(), tags in option::of(text()), keys in option::of(text()),
        properties in vec((text(), text()), 0..4), body in bytes(300),
        born_timestamp in any::<i64>(), delay_level in any::<u32>(),
        deliver_at_ms in option::of(any::<i64>()),
    ) -> MessageData {
        MessageData { flag, tags, keys, properties, body, born_timestamp, delay_level, deliver_at_ms }
    }
}

fn send_status() -> impl Strategy<Value = SendStatus> {
    prop_oneof![
        Just(SendStatus::SendOk),
        Just(SendStatus::FlushDiskTimeout),
        Just(SendStatus::FlushSlaveTimeout),
        Just(SendStatus::SlaveNotAvailable),
    ]
}

prop_compose! {
    fn send_result()(status in send_status(), msg_id in text(), queue_id in any::<u32>(),
                     queue_offset in any::<u64>()) -> SendResult {
        SendResult { status, msg_id, queue_id, queue_offset }
    }
}

prop_compose! {
    fn topic_config()(name in text(), read_queues in any::<u32>(), write_queues in any::<u32>(),
                      perm in any::<u8>(), order in any::<bool>()) -> TopicConfig {
        TopicConfig { name, read_queues, write_queues, perm, order }
    }
}

prop_compose! {
    fn broker_data()(cluster in text(), broker_name in text(),
                     addrs in btree_map(any::<u64>(), text(), 0..4)) -> BrokerData {
        BrokerData { cluster, broker_name, addrs }
    }
}

prop_compose! {
    fn subscription()(topic in text(), sql in any::<bool>(), expression in text()) -> Subscription {
        let expression_type = if sql { ExpressionType::Sql } else { ExpressionType::Tag };
        Subscription { topic, expression_type, expression }
    }
}

prop_compose! {
    fn consumer_group()(
        group in text(), pull in any::<bool>(), broadcast in any::<bool>(),
        from in prop_oneof![Just(ConsumeFrom::First), Just(ConsumeFrom::Last),
                            any::<i64>().prop_map(ConsumeFrom::Timestamp)],
        subscriptions in vec(subscription(), 0..3),
    ) -> ConsumerGroupData {
        ConsumerGroupData {
            group,
            consume_type: if pull { ConsumeType::Pull } else { ConsumeType::Push },
            message_model: if broadcast { MessageModel::Broadcasting } else { MessageModel::Clustering },
            consume_from: from,
            subscriptions,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn handshake(id in any::<u64>(), split in any::<usize>(), err in wire_error(),
                 v in any::<u16>(), a in text(), b in text(), c in text()) {
        let req = Handshake { protocol_version: v, client_id: a, client_version: b };
        let resp = HandshakeResponse { protocol_version: v, server_version: c };
        check_rpc(id, split, &req, &resp, &err);
    }

    #[test]
    fn send(id in any::<u64>(), split in any::<usize>(), err in wire_error(),
            g in text(), t in text(), q in any::<i32>(), m in message_data(), r in send_result()) {
        let req = SendRequest { producer_group: g, topic: t, queue_id: q, message: m };
        check_rpc(id, split, &req, &r, &err);
    }

    #[test]
    fn send_batch(id in any::<u64>(), split in any::<usize>(), err in wire_error(),
                  g in text(), t in text(), q in any::<i32>(),
                  messages in vec(message_data(), 0..5), results in vec(send_result(), 0..5)) {
        let req = SendBatchRequest { producer_group: g, topic: t, queue_id: q, messages };
        check_rpc(id, split, &req, &SendBatchResponse { results }, &err);
    }

    #[test]
    fn pull(id in any::<u64>(), split in any::<usize>(), err in wire_error(),
            g in text(), t in text(), nums in any::<(u32, u64, u32, u32, u64)>(),
            subscription in option::of(text()), sql in option::of(text()),
            commit_offset in option::of(any::<u64>()),
            status in prop_oneof![Just(PullStatus::Found), Just(PullStatus::NoNewMessage),
                                  Just(PullStatus::NoMatchedMessage), Just(PullStatus::OffsetIllegal)],
            offs in any::<(u64, u64, u64, u32)>(), records in bytes(2000),
            suggest_slave in any::<bool>()) {
        let req = PullRequest {
            consumer_group: g, topic: t, queue_id: nums.0, queue_offset: nums.1,
            max_messages: nums.2, max_bytes: nums.3, suspend_timeout_ms: nums.4,
            subscription, sql, commit_offset,
        };
        let resp = PullResponse {
            status, next_offset: offs.0, min_offset: offs.1, max_offset: offs.2, count: offs.3, records,
            suggest_slave, damaged: Vec::new(),
        };
        check_rpc(id, split, &req, &resp, &err);
    }

    #[test]
    fn offsets(id in any::<u64>(), split in any::<usize>(), err in wire_error(),
               g in text(), t in text(), q in any::<u32>(), o in any::<u64>(),
               committed in option::of(any::<u64>()), min in any::<u64>()) {
        let query = QueryOffsetRequest { group: g.clone(), topic: t.clone(), queue_id: q };
        check_rpc(id, split, &query, &QueryOffsetResponse { offset: committed }, &err);
        let commit = CommitOffsetRequest { group: g, topic: t.clone(), queue_id: q, offset: o };
        check_rpc(id, split, &commit, &Ack {}, &err);
        let range = GetQueueOffsetsRequest { topic: t, queue_id: q };
        check_rpc(id, split, &range, &QueueOffsets { min_offset: min, max_offset: o }, &err);
    }

    #[test]
    fn heartbeat(id in any::<u64>(), split in any::<usize>(), err in wire_error(),
                 client_id in text(), producer_groups in vec(text(), 0..3),
                 consumer_groups in vec(consumer_group(), 0..3),
                 pg in option::of(text()), cg in option::of(text())) {
        let hb = HeartbeatRequest { client_id: client_id.clone(), producer_groups, consumer_groups, language: "RUST".into(), version: String::new() };
        check_rpc(id, split, &hb, &Ack {}, &err);
        let unreg = UnregisterClientRequest { client_id, producer_group: pg, consumer_group: cg };
        check_rpc(id, split, &unreg, &Ack {}, &err);
    }

    #[test]
    fn broker(id in any::<u64>(), split in any::<usize>(), err in wire_error(),
              names in (text(), text(), text()), broker_id in any::<u64>(),
              ha_addr in option::of(text()), topics in vec(topic_config(), 0..4),
              data_version in any::<u64>(),
              master in (option::of(text()), option::of(text()))) {
        let (cluster_name, broker_name, broker_addr) = names;
        let reg = RegisterBrokerRequest {
            cluster_name: cluster_name.clone(), broker_name: broker_name.clone(), broker_id,
            broker_addr: broker_addr.clone(), ha_addr, topics, data_version, ..Default::default()
        };
        let resp = RegisterBrokerResponse {
            master_addr: master.0, ha_master_addr: master.1, ..Default::default()
        };
        check_rpc(id, split, &reg, &resp, &err);
        let unreg = UnregisterBrokerRequest { cluster_name, broker_name, broker_id, broker_addr };
        check_rpc(id, split, &unreg, &Ack {}, &err);
    }

    #[test]
    fn route(id in any::<u64>(), split in any::<usize>(), err in wire_error(), topic in text(),
             queues in vec((text(), any::<u32>(), any::<u32>(), any::<u8>(), any::<bool>()), 0..4),
             brokers in vec(broker_data(), 0..3),
             clusters in btree_map(text(), vec(text(), 0..3), 0..3),
             by_name in btree_map(text(), broker_data(), 0..3),
             topics in vec(text(), 0..5)) {
        let queues = queues.into_iter().map(|(broker_name, read_queues, write_queues, perm, order)| {
            QueueData { broker_name, read_queues, write_queues, perm, order }
        }).collect();
        check_rpc(id, split, &GetRouteInfoRequest { topic, wait_ms: 0 }, &TopicRouteData { queues, brokers }, &err);
        let info = ClusterInfo { clusters, brokers: by_name };
        check_rpc(id, split, &GetClusterInfoRequest {}, &info, &err);
        check_rpc(id, split, &GetTopicListRequest {}, &TopicList { topics }, &err);
    }

    #[test]
    fn topic_admin(id in any::<u64>(), split in any::<usize>(), err in wire_error(),
                   config in topic_config(), topic in text()) {
        check_rpc(id, split, &CreateTopicRequest { config }, &Ack {}, &err);
        check_rpc(id, split, &DeleteTopicRequest { topic: topic.clone() }, &Ack {}, &err);
    }

    #[test]
    fn topic_stats(id in any::<u64>(), split in any::<usize>(), err in wire_error(),
                   config in topic_config(), topic in text(),
                   queues in vec((any::<u32>(), any::<u64>(), any::<u64>()), 0..8),
                   messages_put in any::<u64>(), parked_pulls in any::<u64>()) {
        let queues = queues.into_iter().map(|(queue_id, min_offset, max_offset)| {
            QueueStats { queue_id, min_offset, max_offset }
        }).collect();
        let stats = TopicStats { config, queues, messages_put, parked_pulls };
        check_rpc(id, split, &GetTopicStatsRequest { topic }, &stats, &err);
    }

    #[test]
    fn unknown_error_codes_decode(id in any::<u64>(), code in 21u16.., message in text()) {
        // A newer peer's error code: decodes as Unknown, keeps the message.
        #[derive(Serialize)]
        struct FutureError { code: u16, message: String }
        let body: std::result::Result<(), FutureError> = Err(FutureError { code, message: message.clone() });
        let mut wire = BytesMut::new();
        let request = Header::request(id, Command::SendMessage);
        FrameCodec::default().encode(OutFrame::new(request.response_to(), &body), &mut wire).unwrap();
        let frame = decode_split(&wire, 0);
        match frame.decode_response::<SendResult>() {
            Err(ProtocolError::Remote(e)) => {
                prop_assert_eq!(e.code, ErrorCode::Unknown);
                prop_assert_eq!(e.message, message);
            }
            other => prop_assert!(false, "unexpected {:?}", other),
        }
    }

    #[test]
    fn message_ids(v6 in any::<bool>(), ip4 in any::<[u8; 4]>(), ip6 in any::<[u8; 16]>(),
                   port in any::<u16>(), offset in any::<u64>()) {
        let ip = if v6 { IpAddr::from(ip6) } else { IpAddr::from(ip4) };
        let id = MessageId::new(SocketAddr::new(ip, port), offset);
        let hex = id.to_hex();
        prop_assert!(hex.chars().all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()));
        prop_assert_eq!(MessageId::from_hex(&hex).unwrap(), id);
    }

    #[test]
    fn message_id_garbage_never_panics(s in "\\PC{0,60}") {
        let _ = MessageId::from_hex(&s);
    }

    #[test]
    fn tag_expression_never_panics(s in "[ A-Za-z|*]{0,20}") {
        if let Ok(Some(tags)) = parse_tag_expression(&s) {
            prop_assert!(tags.iter().all(|t| !t.is_empty() && t.trim() == t && !t.contains('|')));
        }
    }
}

#[test]
fn many_frames_in_one_buffer() {
    let mut codec = FrameCodec::default();
    let mut wire = BytesMut::new();
    for i in 0..100u64 {
        let req = GetQueueOffsetsRequest {
            topic: format!("t{i}"),
            queue_id: i as u32,
        };
        codec.encode(OutFrame::request(i, &req), &mut wire).unwrap();
    }
    for i in 0..100u64 {
        let f = codec.decode(&mut wire).unwrap().unwrap();
        assert_eq!(f.header.request_id, i);
        let req: GetQueueOffsetsRequest = f.decode_request().unwrap();
        assert_eq!(req.queue_id, i as u32);
    }
    assert!(codec.decode(&mut wire).unwrap().is_none());
}

#[test]
fn bodies_are_maps_and_bytes_are_bin() {
    let msg = MessageData::new(Bytes::from_static(b"hi"));
    let mut wire = BytesMut::new();
    let req = SendRequest {
        message: msg,
        ..SendRequest::default()
    };
    FrameCodec::default()
        .encode(OutFrame::request(1, &req), &mut wire)
        .unwrap();
    let frame = FrameCodec::default().decode(&mut wire).unwrap().unwrap();
    // A map of 4 fields; the body `hi` appears as bin8 of length 2.
    assert_eq!(frame.body[0], 0x84);
    assert!(frame.body.windows(4).any(|w| w == [0xc4, 2, b'h', b'i']));
}

#[test]
fn older_peer_missing_optional_fields_and_newer_peer_extra_fields() {
    // A body with an extra unknown field and without the optional ones.
    let mut m = BTreeMap::new();
    m.insert("protocol_version", rmpv_like::U(1));
    m.insert("server_version", rmpv_like::S("x".into()));
    m.insert("from_the_future", rmpv_like::U(9));
    let mut wire = BytesMut::new();
    let header = Header::response(5, Command::Handshake.as_u16());
    let body: ResponseBody<_> = Ok(&m);
    FrameCodec::default()
        .encode(OutFrame::new(header, body), &mut wire)
        .unwrap();
    let frame = FrameCodec::default().decode(&mut wire).unwrap().unwrap();
    let resp: HandshakeResponse = frame.decode_response().unwrap();
    assert_eq!(resp.server_version, "x");

    let mut m = BTreeMap::new();
    m.insert("group", rmpv_like::S("g".into()));
    m.insert("topic", rmpv_like::S("t".into()));
    m.insert("queue_id", rmpv_like::U(3));
    let mut wire = BytesMut::new();
    FrameCodec::default()
        .encode(
            OutFrame::new(Header::response(1, 30), Ok::<_, WireError>(&m)),
            &mut wire,
        )
        .unwrap();
    let frame = FrameCodec::default().decode(&mut wire).unwrap().unwrap();
    // QueryOffsetResponse has only an Option field: missing means None.
    let resp: QueryOffsetResponse = frame.decode_response().unwrap();
    assert_eq!(resp.offset, None);
}

mod rmpv_like {
    use serde::Serialize;

    #[derive(Serialize)]
    #[serde(untagged)]
    pub enum V {
        U(u64),
        S(String),
    }
    pub use V::{S, U};
}

fn transaction_state() -> impl Strategy<Value = TransactionState> {
    prop_oneof![
        Just(TransactionState::Commit),
        Just(TransactionState::Rollback),
        Just(TransactionState::Unknown),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn schedule_stats(id in any::<u64>(), split in any::<usize>(), err in wire_error(),
                      levels in vec((any::<u32>(), any::<u64>(), any::<u64>(), any::<u64>()), 0..20),
                      timer_pending in any::<u64>(), up_to in any::<i64>(), max in any::<u64>()) {
        let levels = levels.into_iter().map(|(level, delay_ms, pending, delivered_offset)| {
            DelayLevelStats { level, delay_ms, pending, delivered_offset }
        }).collect();
        let stats = ScheduleStats {
            levels,
            timer_pending,
            timer_delivered_up_to_ms: up_to,
            max_delay_ms: max,
        };
        check_rpc(id, split, &GetScheduleStatsRequest {}, &stats, &err);
    }

    #[test]
    fn transaction(id in any::<u64>(), split in any::<usize>(), err in wire_error(),
                   g in text(), tx in text(), msg_id in text(), qo in any::<u64>(),
                   state in transaction_state(), from_check in any::<bool>(),
                   times in any::<u32>(), record in bytes(256)) {
        let end = EndTransactionRequest {
            producer_group: g.clone(), transaction_id: tx.clone(), msg_id: msg_id.clone(),
            queue_offset: qo, state, from_check,
        };
        check_rpc(id, split, &end, &Ack {}, &err);
        let check = CheckTransactionStateRequest {
            producer_group: g, transaction_id: tx, msg_id, queue_offset: qo,
            check_times: times, record,
        };
        check_rpc(id, split, &check, &Ack {}, &err);
    }

    #[test]
    fn message_queries_and_broker_config(id in any::<u64>(), split in any::<usize>(),
                   err in wire_error(), topic in text(), key in text(),
                   begin_ms in any::<i64>(), end_ms in any::<i64>(), max in any::<u32>(),
                   count in any::<u32>(), records in bytes(512),
                   settings in vec((text(), text()), 0..8), value in text(),
                   text_topic in text(), offset in any::<u64>()) {
        let resp = QueryMessageResponse { count, records };
        let by_key = QueryMessageByKeyRequest {
            topic: topic.clone(), key: key.clone(), begin_ms, end_ms, max,
        };
        check_rpc(id, split, &by_key, &resp, &err);
        check_rpc(id, split, &ViewMessageByIdRequest { msg_id: key.clone() }, &resp, &err);
        let by_time = QueryMessageByTimeRequest { topic, timestamp_ms: begin_ms, max_per_queue: max };
        check_rpc(id, split, &by_time, &resp, &err);
        check_rpc(id, split, &GetBrokerConfigRequest {}, &BrokerSettings { settings }, &err);
        check_rpc(id, split, &SetBrokerConfigRequest { key, value }, &Ack {}, &err);
        let search = SearchOffsetByTimeRequest { topic: text_topic, queue_id: max, timestamp_ms: end_ms };
        check_rpc(id, split, &search, &SearchOffsetByTimeResponse { offset }, &err);
    }
}

fn queue_ref() -> impl Strategy<Value = QueueRef> {
    (text(), any::<u32>()).prop_map(|(topic, queue_id)| QueueRef { topic, queue_id })
}

fn queue_offset_entry() -> impl Strategy<Value = QueueOffsetEntry> {
    (any::<u32>(), any::<u64>())
        .prop_map(|(queue_id, offset)| QueueOffsetEntry { queue_id, offset })
}

/// Checks a server push body round trip.
fn check_push<T: Serialize + DeserializeOwned + PartialEq + Debug>(
    cmd: Command,
    split: usize,
    body: &T,
) {
    let mut wire = BytesMut::new();
    FrameCodec::default()
        .encode(OutFrame::new(Header::push(0, cmd), body), &mut wire)
        .unwrap();
    let frame = decode_split(&wire, split);
    assert_eq!(frame.header.kind, FrameKind::Push);
    assert_eq!(frame.command().unwrap(), cmd);
    assert_eq!(&frame.decode_body::<T>().unwrap(), body);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn consumer_group_commands(id in any::<u64>(), split in any::<usize>(), err in wire_error(),
                               g in text(), t in text(), c in text(), ids in vec(text(), 0..4),
                               qs in vec(queue_ref(), 0..4), qs2 in vec(queue_ref(), 0..4),
                               offs in vec(queue_offset_entry(), 0..4), ts in any::<i64>(),
                               q in any::<u32>(), o in any::<u64>(), o2 in any::<u64>(),
                               last in option::of(any::<i64>())) {
        check_rpc(id, split, &GetConsumerListRequest { group: g.clone() },
                  &ConsumerList { client_ids: ids.clone() }, &err);
        check_rpc(id, split, &LockBatchRequest { group: g.clone(), client_id: c.clone(), queues: qs.clone() },
                  &LockBatchResponse { locked: qs2 }, &err);
        check_rpc(id, split, &UnlockBatchRequest { group: g.clone(), client_id: c.clone(), queues: qs },
                  &Ack {}, &err);
        check_rpc(id, split, &ResetOffsetRequest { group: g.clone(), topic: t.clone(), timestamp_ms: ts },
                  &ResetOffsetResponse { offsets: offs.clone() }, &err);
        let progress = ConsumeProgress {
            queues: vec![QueueProgress { topic: t.clone(), queue_id: q, broker_offset: o,
                                         consumer_offset: o2, last_commit_ms: last,
                                         min_offset: o2 / 2 }],
            client_ids: ids.clone(),
            subscription_conflicts: vec![skylark_codec::cmd::group::SubscriptionConflict {
                topic: t.clone(),
                variants: vec![skylark_codec::cmd::group::SubscriptionVariant {
                    expression_type: skylark_codec::ExpressionType::Tag,
                    expression: Some(g.clone()),
                    client_ids: ids.clone(),
                }],
            }],
        };
        check_rpc(id, split, &GetConsumeProgressRequest { group: g.clone() }, &progress, &err);
        check_rpc(id, split, &GetGroupListRequest {}, &GroupList { groups: ids }, &err);
        check_rpc(id, split, &DeleteGroupRequest { group: g.clone() }, &Ack {}, &err);
        check_rpc(id, split, &SendBackRequest { group: g.clone(), physical_offset: o,
                                                reconsume_times: q, max_reconsume_times: Some(q),
                                                dead_letter: q % 2 == 0 },
                  &SendBackResponse { topic: t.clone(), queue_offset: o2 }, &err);
        check_push(Command::NotifyConsumerIdsChanged, split, &ConsumerIdsChanged { group: g.clone() });
        check_push(Command::NotifyResetOffset, split,
                   &ResetOffsetNotify { group: g, topic: t, broker_addr: c, offsets: offs });
    }
}

prop_compose! {
    fn offset_entry()(group in text(), topic in text(), queue_id in any::<u32>(),
                      offset in any::<u64>()) -> OffsetEntry {
        OffsetEntry { group, topic, queue_id, offset }
    }
}

proptest! {
    #[test]
    fn replication_commands(id in any::<u64>(), split in any::<usize>(), err in wire_error(),
                            broker_id in any::<u64>(), slave_offsets in vec(offset_entry(), 0..4),
                            topics in vec(topic_config(), 0..4), offsets in vec(offset_entry(), 0..4),
                            names in (text(), text(), option::of(text()), option::of(text())),
                            nums in (any::<u64>(), any::<u64>(), any::<bool>()),
                            slaves in vec((text(), any::<u64>()), 0..3),
                            schedule in option::of((vec((any::<u32>(), any::<u64>()), 0..4),
                                any::<u64>(), any::<i64>(), any::<u64>(), any::<u64>()))) {
        let schedule = schedule.map(|(level_offsets, indexed, at, phys, end)| ScheduleProgress {
            level_offsets,
            timer_indexed_offset: indexed,
            timer_cursor_at: at,
            timer_cursor_phys: phys,
            commit_log_end: end,
        });
        check_rpc(id, split, &SyncMetadataRequest { broker_id, slave_offsets },
                  &MetadataSnapshot { topics, offsets, schedule }, &err);
        let status = ReplicationStatus {
            broker_name: names.0,
            broker_id,
            role: names.1,
            max_offset: nums.0,
            ha_addr: names.2,
            slaves: slaves.into_iter()
                .map(|(addr, acked_offset)| SlaveStatus { addr, acked_offset, ..Default::default() }).collect(),
            master_ha_addr: names.3,
            master_connected: nums.2,
            master_max_offset: nums.1,
        };
        check_rpc(id, split, &GetReplicationStatusRequest {}, &status, &err);
    }

    #[test]
    fn broker_runtime(id in any::<u64>(), split in any::<usize>(), err in wire_error(),
                      usage in 0.0f64..=1.0, limit in 0.0f64..=1.0, full in any::<bool>(),
                      half in any::<u64>(), damaged in any::<u64>()) {
        let r = BrokerRuntime {
            disk_usage_ratio: usage, disk_hard_limit_ratio: limit, disk_full: full, half_pending: half,
            damaged_records: damaged,
        };
        check_rpc(id, split, &GetBrokerRuntimeRequest {}, &r, &err);
    }
}
