//! Decoding a frame of N bytes allocates at most `budget_for(N)` = 8 × N +
//! 16 KiB, whatever it holds (`skylark_codec::budget`): hostile bodies of
//! millions of tiny elements are refused within that bound, and large
//! legitimate ones (a slave's metadata sync, a batch of tiny messages at
//! the frame limit, a long topic list) still decode.
//!
//! Allocation is measured, not timed: this test binary's global allocator
//! wraps `System` and tracks, per thread, the bytes live and their peak.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use skylark_codec::*;
use tokio_util::codec::{Decoder, Encoder};

struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn track(delta: isize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call is passed to `System` unchanged; only counters move.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            track(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            track(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        track(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            // Counted as growing in place (the bound is on memory live
            // once each allocation is done; see `skylark_codec::budget`).
            track(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns its result with the peak of the bytes it had live
/// at once on this thread (its result included).
fn peak_of<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let start = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(start));
    let r = f();
    let peak = PEAK.with(Cell::get) - start;
    (r, peak.max(0) as usize)
}

/// A request frame for `command` whose body is the raw MessagePack `body`,
/// decoded by the frame codec (outside any measurement).
fn raw_frame(command: Command, body: &[u8]) -> RawFrame {
    let mut payload = vec![0x92];
    payload.extend(rmp_serde::to_vec(&Header::request(1, command)).unwrap());
    payload.extend_from_slice(body);
    let mut wire = BytesMut::new();
    wire.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    wire.extend_from_slice(&payload);
    FrameCodec::default().decode(&mut wire).unwrap().unwrap()
}

/// MessagePack: a map header of `n` entries.
fn map(out: &mut Vec<u8>, n: u32) {
    rmp::encode::write_map_len(out, n).unwrap();
}

fn key(out: &mut Vec<u8>, k: &str) {
    rmp::encode::write_str(out, k).unwrap();
}

/// `count` copies of `element` (one MessagePack value) as an array.
fn array_of(out: &mut Vec<u8>, element: &[u8], count: usize) {
    rmp::encode::write_array_len(out, count as u32).unwrap();
    for _ in 0..count {
        out.extend_from_slice(element);
    }
}

/// A heartbeat whose `producer_groups` is `count` × `element`.
fn heartbeat_body(element: &[u8], count: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(count * element.len() + 64);
    map(&mut b, 3);
    key(&mut b, "client_id");
    key(&mut b, "c");
    key(&mut b, "producer_groups");
    array_of(&mut b, element, count);
    key(&mut b, "consumer_groups");
    array_of(&mut b, &[], 0);
    b
}

/// A batch whose `messages` is `count` × `element`.
fn batch_body(element: &[u8], count: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(count * element.len() + 64);
    map(&mut b, 4);
    key(&mut b, "producer_group");
    key(&mut b, "");
    key(&mut b, "topic");
    key(&mut b, "T");
    key(&mut b, "queue_id");
    b.push(0);
    key(&mut b, "messages");
    array_of(&mut b, element, count);
    b
}

/// A `MessageData` in its smallest form: a positional array of its eight
/// fields, each empty (10 bytes for 136 decoded).
const EMPTY_MESSAGE: [u8; 10] = [0x98, 0, 0xc0, 0xc0, 0x90, 0xc4, 0, 0, 0, 0xc0];

/// An `OffsetEntry` as a positional array of empty fields (5 bytes).
const EMPTY_OFFSET: [u8; 5] = [0x94, 0xa0, 0xa0, 0, 0];

/// A slave's sync answer whose `offsets` is `count` × `element`.
fn snapshot_body(element: &[u8], count: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(count * element.len() + 64);
    map(&mut b, 1);
    key(&mut b, "Ok");
    map(&mut b, 2);
    key(&mut b, "topics");
    array_of(&mut b, &[], 0);
    key(&mut b, "offsets");
    array_of(&mut b, element, count);
    b
}

/// Frames a little under the 16 MiB default limit.
const NEAR_LIMIT: usize = DEFAULT_MAX_FRAME_SIZE - 4096;

fn assert_refused_within_budget<T: std::fmt::Debug>(
    what: &str,
    body_len: usize,
    decode: impl FnOnce() -> Result<T>,
) {
    let (result, peak) = peak_of(decode);
    let budget = budget_for(body_len);
    eprintln!("{what}: {body_len} bytes, peak {peak}, budget {budget}");
    assert!(
        peak <= budget,
        "{what}: {body_len}-byte body took {peak} bytes (budget {budget})"
    );
    let err = result.expect_err(what);
    assert_eq!(err.code(), ErrorCode::BadRequest, "{what}: {err}");
}

#[test]
fn a_heartbeat_of_16_million_empty_group_names_is_refused_within_budget() {
    let body = heartbeat_body(&[0xa0], NEAR_LIMIT - 64);
    let frame = raw_frame(Command::Heartbeat, &body);
    assert_refused_within_budget("heartbeat", body.len(), || {
        frame.decode_request::<HeartbeatRequest>()
    });
}

#[test]
fn a_batch_of_empty_messages_at_the_frame_limit_is_refused_within_budget() {
    let body = batch_body(&EMPTY_MESSAGE, (NEAR_LIMIT - 64) / EMPTY_MESSAGE.len());
    let frame = raw_frame(Command::SendBatch, &body);
    assert_refused_within_budget("batch", body.len(), || {
        frame.decode_request::<SendBatchRequest>()
    });
}

#[test]
fn a_sync_answer_of_empty_offsets_is_refused_within_budget() {
    let body = snapshot_body(&EMPTY_OFFSET, (NEAR_LIMIT - 64) / EMPTY_OFFSET.len());
    let mut frame = raw_frame(Command::SyncMetadata, &body);
    frame.header.kind = FrameKind::Response;
    assert_refused_within_budget("sync answer", body.len(), || {
        frame.decode_response::<MetadataSnapshot>()
    });
}

#[test]
fn a_heartbeat_of_4_million_3_byte_group_names_stays_within_budget() {
    // 4 bytes for 27 decoded: passes the up-front check, and decodes or is
    // refused as the Vec grows, never past the budget.
    let body = heartbeat_body(&[0xa3, b'a', b'b', b'c'], (NEAR_LIMIT - 64) / 4);
    let frame = raw_frame(Command::Heartbeat, &body);
    let (result, peak) = peak_of(|| frame.decode_request::<HeartbeatRequest>());
    let budget = budget_for(body.len());
    eprintln!(
        "3-byte names: {} bytes, peak {peak}, budget {budget}, ok {}",
        body.len(),
        result.is_ok()
    );
    assert!(
        peak <= budget,
        "{} bytes took {peak} (budget {budget})",
        body.len()
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any number of tiny elements, in any of the lists above: the decode
    /// succeeds or fails, but never takes more than the budget.
    #[test]
    fn tiny_elements_never_take_more_than_the_budget(
        shape in 0usize..5,
        count in prop_oneof![0usize..4_000, 0usize..400_000, Just(0xffff), Just(0x1_0000)],
    ) {
        let (command, body) = match shape {
            0 => (Command::Heartbeat, heartbeat_body(&[0xa0], count)),
            1 => (Command::Heartbeat, heartbeat_body(&[0xa1, b'g'], count)),
            // 4 bytes for 27: passes the up-front check, then meets the
            // budget as the Vec grows.
            2 => (Command::Heartbeat, heartbeat_body(&[0xa3, b'a', b'b', b'c'], count)),
            3 => (Command::SendBatch, batch_body(&EMPTY_MESSAGE, count)),
            _ => (Command::SyncMetadata, snapshot_body(&EMPTY_OFFSET, count)),
        };
        let frame = raw_frame(command, &body);
        let (ok, peak) = peak_of(|| match shape {
            0..=2 => frame.decode_request::<HeartbeatRequest>().map(|h| h.producer_groups.len()),
            3 => frame.decode_request::<SendBatchRequest>().map(|b| b.messages.len()),
            _ => frame.decode_body::<ResponseBody<MetadataSnapshot>>()
                .map(|s| s.map_or(0, |s| s.offsets.len())),
        });
        let budget = budget_for(body.len());
        prop_assert!(peak <= budget, "{} bytes took {} (budget {})", body.len(), peak, budget);
        if let Ok(n) = ok {
            prop_assert_eq!(n, count);
        }
    }
}

/// Encodes `body` as one frame (within the default limit) and decodes it
/// back, returning the frame's body length with the decode's peak.
fn frame_of<T: serde::Serialize>(header: Header, body: &T) -> RawFrame {
    let mut wire = BytesMut::new();
    FrameCodec::default()
        .encode(OutFrame::new(header, body), &mut wire)
        .expect("within the frame limit");
    FrameCodec::default().decode(&mut wire).unwrap().unwrap()
}

fn assert_decodes_within_budget<T: PartialEq + std::fmt::Debug>(
    what: &str,
    frame: &RawFrame,
    expected: &T,
    decode: impl FnOnce() -> Result<T>,
) {
    let (got, peak) = peak_of(decode);
    let got = got.unwrap_or_else(|e| panic!("{what}: {e}"));
    let budget = budget_for(frame.body.len());
    eprintln!(
        "{what}: {} bytes, peak {peak}, budget {budget}",
        frame.body.len()
    );
    assert!(
        peak <= budget,
        "{what}: {} bytes took {peak} (budget {budget})",
        frame.body.len()
    );
    assert!(&got == expected, "{what}: decoded value differs");
}

#[test]
fn a_slave_sync_of_100k_offsets_and_topics_still_decodes() {
    let snapshot = MetadataSnapshot {
        topics: (0..100_000)
            .map(|i| TopicConfig::new(format!("T{i}"), 8))
            .collect(),
        offsets: (0..100_000u32)
            .map(|i| OffsetEntry {
                group: format!("G{}", i % 97),
                topic: format!("T{}", i / 8),
                queue_id: i % 8,
                offset: u64::from(i) * 1000,
            })
            .collect(),
        schedule: None,
    };
    let ok: ResponseBody<&MetadataSnapshot> = Ok(&snapshot);
    let frame = frame_of(Header::response(1, Command::SyncMetadata.as_u16()), &ok);
    assert_decodes_within_budget("sync", &frame, &snapshot, || {
        frame.decode_response::<MetadataSnapshot>()
    });
}

#[test]
fn a_batch_of_one_byte_messages_at_the_frame_limit_still_decodes() {
    let message = |i: usize| MessageData {
        body: Bytes::from(vec![i as u8]),
        born_timestamp: 1_700_000_000_000 + i as i64,
        ..MessageData::default()
    };
    let one = rmp_serde::to_vec_named(&message(0)).unwrap().len();
    let batch = SendBatchRequest {
        producer_group: "PG".into(),
        topic: "TopicTest".into(),
        queue_id: 0,
        messages: (0..NEAR_LIMIT / one).map(message).collect(),
    };
    let frame = frame_of(Header::request(1, Command::SendBatch), &batch);
    assert!(frame.body.len() > DEFAULT_MAX_FRAME_SIZE / 2);
    assert_decodes_within_budget("batch", &frame, &batch, || {
        frame.decode_request::<SendBatchRequest>()
    });
}

#[test]
fn a_list_of_100k_topic_names_still_decodes() {
    let list = TopicList {
        topics: (0..100_000).map(|i| format!("TopicTest{i:06}")).collect(),
    };
    let ok: ResponseBody<&TopicList> = Ok(&list);
    let frame = frame_of(Header::response(1, Command::GetTopicList.as_u16()), &ok);
    assert_decodes_within_budget("topic list", &frame, &list, || {
        frame.decode_response::<TopicList>()
    });
}

/// RocketMQ remoting headers (`skylark_codec::remoting`): the JSON header's
/// `extFields` and the ROCKETMQ binary header's are decoded under the same
/// budget, counted on the header's length.
#[cfg(feature = "remoting")]
mod remoting_header {
    use super::*;
    use skylark_codec::remoting::heartbeat::HeartbeatData;
    use skylark_codec::remoting::{
        decode_frame, RemotingCommand, RemotingError, SerializeType,
        DEFAULT_MAX_FRAME_SIZE as REMOTING_MAX,
    };

    /// The `i`-th 4-character key in ascending order: unique, and inserted
    /// in order they leave the B-tree's nodes only about half full (the
    /// costliest map; in random order they fill to about two thirds).
    fn sorted_key(i: usize, out: &mut Vec<u8>) {
        const ALPHABET: &[u8; 64] =
            b"-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz";
        for shift in [18, 12, 6, 0] {
            out.push(ALPHABET[(i >> shift) & 63]);
        }
    }

    /// A frame's content (what follows the length prefix) with `header`.
    fn frame(ty: SerializeType, header: &[u8]) -> Bytes {
        let mut f = Vec::with_capacity(4 + header.len());
        f.extend_from_slice(&((u32::from(ty.code()) << 24) | header.len() as u32).to_be_bytes());
        f.extend_from_slice(header);
        Bytes::from(f)
    }

    /// Header bytes allowed: the header mark's 24 bits, within the frame.
    const HEADER_MAX: usize = REMOTING_MAX - 4096;

    /// `{"code":10,"opaque":7,"extFields":{"----":"","---0":"",...}}` up
    /// to about `len` bytes: 10 bytes of JSON per entry.
    fn hostile_json(len: usize) -> Vec<u8> {
        let mut h = Vec::with_capacity(len + 64);
        h.extend_from_slice(br#"{"code":10,"opaque":7,"extFields":{"#);
        let mut i = 0;
        while h.len() < len - 16 {
            if i > 0 {
                h.push(b',');
            }
            h.push(b'"');
            sorted_key(i, &mut h);
            h.extend_from_slice(br#"":"""#);
            i += 1;
        }
        h.extend_from_slice(b"}}");
        h
    }

    /// A ROCKETMQ binary header with `extFields` of unique 4-character keys
    /// and empty values (10 bytes per entry) up to about `len` bytes.
    fn hostile_binary(len: usize) -> Vec<u8> {
        let mut ext = Vec::with_capacity(len);
        let mut i = 0;
        let mut key = Vec::new();
        while ext.len() < len - 64 {
            key.clear();
            sorted_key(i, &mut key);
            ext.extend_from_slice(&(key.len() as i16).to_be_bytes());
            ext.extend_from_slice(&key);
            ext.extend_from_slice(&0i32.to_be_bytes());
            i += 1;
        }
        let mut h = Vec::with_capacity(ext.len() + 32);
        h.extend_from_slice(&10i16.to_be_bytes()); // code
        h.push(0); // JAVA
        h.extend_from_slice(&317i16.to_be_bytes()); // version
        h.extend_from_slice(&7i32.to_be_bytes()); // opaque
        h.extend_from_slice(&0i32.to_be_bytes()); // flag
        h.extend_from_slice(&0i32.to_be_bytes()); // no remark
        h.extend_from_slice(&(ext.len() as i32).to_be_bytes());
        h.extend_from_slice(&ext);
        h
    }

    fn assert_header_refused_within_budget(what: &str, ty: SerializeType, header: &[u8]) {
        let f = frame(ty, header);
        let (result, peak) = peak_of(|| decode_frame(f));
        let budget = budget_for(header.len());
        eprintln!(
            "{what}: {} bytes, peak {peak} ({:.1} x), budget {budget}",
            header.len(),
            peak as f64 / header.len() as f64
        );
        assert!(
            peak <= budget,
            "{what}: {}-byte header took {peak} bytes (budget {budget})",
            header.len()
        );
        match result {
            Err(RemotingError::HeaderOverBudget { request, .. }) => {
                // What the listener needs to answer: code, opaque, codec.
                assert_eq!((request.code, request.opaque), (10, 7), "{what}");
                assert_eq!(request.serialize_type, ty, "{what}");
                assert!(request.ext_fields.is_empty(), "{what}");
            }
            Err(e) => panic!("{what}: expected HeaderOverBudget, got {e}"),
            Ok(cmd) => panic!("{what}: decoded {} extFields", cmd.ext_fields.len()),
        }
    }

    /// A `HeartbeatData` body of 2^19 + 1 `{"groupName":""}`s (8.9 MB)
    /// costs about 14 times its size decoded as it is (the list's capacity
    /// has just doubled to 2^20); under the budget it is refused at a
    /// fraction of that, and a real heartbeat still decodes.
    #[test]
    fn a_json_body_of_half_a_million_empty_consumers_is_refused_within_budget() {
        let mut body = br#"{"clientID":"x","consumerDataSet":["#.to_vec();
        for _ in 0..1 << 19 {
            body.extend_from_slice(br#"{"groupName":""},"#);
        }
        body.extend_from_slice(br#"{"groupName":""}]}"#);
        let budget = budget_for(body.len());
        let (plain, unbudgeted) = peak_of(|| serde_json::from_slice::<HeartbeatData>(&body));
        assert!(plain.is_ok());
        assert!(
            unbudgeted > budget + budget / 2,
            "the hostile body is not hostile: {unbudgeted} bytes decoded"
        );
        let (result, peak) =
            peak_of(|| skylark_codec::remoting::decode_json_body::<HeartbeatData>(&body));
        eprintln!(
            "HeartbeatData: {} bytes, {unbudgeted} decoded as it is ({:.1} x), \
             peak {peak} under the budget {budget}",
            body.len(),
            unbudgeted as f64 / body.len() as f64
        );
        let e = result.err().expect("refused");
        assert!(e.contains("would decode into more than"), "{e}");
        assert!(peak <= budget, "took {peak} bytes (budget {budget})");
        let real = br#"{"clientID":"c","consumerDataSet":[{"groupName":"G","consumeType":"CONSUME_PASSIVELY","subscriptionDataSet":[]}]}"#;
        let hb: HeartbeatData = skylark_codec::remoting::decode_json_body(real).unwrap();
        assert_eq!(hb.consumer_data_set[0].group_name, "G");
    }

    /// A 16 MiB `properties` string of `a\u{1}\u{2}` entries (what a
    /// binary SEND_MESSAGE header can carry) is refused before it is split
    /// into owned pairs, which would take some 26 times its size.
    #[test]
    fn a_properties_string_longer_than_any_record_is_not_split() {
        let props = "a\u{1}\u{2}".repeat(HEADER_MAX / 3);
        let (parsed, peak) = peak_of(|| {
            skylark_codec::remoting::message::parse_properties(&props, u16::MAX as usize)
        });
        assert!(parsed.is_none(), "refused");
        assert!(peak < 1024, "{peak} bytes allocated to refuse it");
        let (parsed, _) = peak_of(|| {
            skylark_codec::remoting::message::parse_properties("TAGS\u{1}t\u{2}a\u{1}b", 64)
        });
        assert_eq!(
            parsed,
            Some(vec![("TAGS".into(), "t".into()), ("a".into(), "b".into())])
        );
    }

    #[test]
    fn a_json_header_of_a_million_empty_ext_fields_is_refused_within_budget() {
        let header = hostile_json(HEADER_MAX);
        assert_header_refused_within_budget("JSON extFields", SerializeType::Json, &header);
    }

    #[test]
    fn a_binary_header_of_a_million_empty_ext_fields_is_refused_within_budget() {
        let header = hostile_binary(HEADER_MAX);
        assert_header_refused_within_budget("binary extFields", SerializeType::RocketMq, &header);
    }

    /// A SEND_MESSAGE request as a Java producer writes it, with `props`
    /// user properties in `properties` (`name\u0001value\u0002`, escaped
    /// by fastjson) and `extra` more header fields of realistic size.
    fn send_message(ty: SerializeType, props: usize, extra: usize) -> RemotingCommand {
        let mut cmd = RemotingCommand::request(10, 7);
        cmd.serialize_type = ty;
        cmd.version = 453;
        let mut p = String::from("UNIQ_KEY\u{1}7F0000010B3418B4AAC2123456780000\u{2}WAIT\u{1}true\u{2}TAGS\u{1}TagA\u{2}");
        for i in 0..props {
            p.push_str(&format!("userProperty{i:05}\u{1}some value {i:05}\u{2}"));
        }
        let fields: [(&str, String); 12] = [
            ("producerGroup", "please_rename_unique_group_name".into()),
            ("topic", "TopicTest".into()),
            ("defaultTopic", "TBW102".into()),
            ("defaultTopicQueueNums", "4".into()),
            ("queueId", "3".into()),
            ("sysFlag", "0".into()),
            ("bornTimestamp", "1700000000000".into()),
            ("flag", "0".into()),
            ("properties", p),
            ("reconsumeTimes", "0".into()),
            ("unitMode", "false".into()),
            ("batch", "false".into()),
        ];
        for (k, v) in fields {
            cmd.ext_fields.insert(k.into(), v);
        }
        for i in 0..extra {
            cmd.ext_fields
                .insert(format!("customHeader{i:05}"), format!("value-{i:05}"));
        }
        cmd
    }

    fn assert_header_decodes_within_budget(what: &str, cmd: &RemotingCommand) {
        let header = cmd.encode_header().unwrap();
        let f = frame(cmd.serialize_type, &header);
        let (got, peak) = peak_of(|| decode_frame(f));
        let got = got.unwrap_or_else(|e| panic!("{what}: {e}"));
        let budget = budget_for(header.len());
        eprintln!(
            "{what}: {} bytes, peak {peak} ({:.1} x), budget {budget}",
            header.len(),
            peak as f64 / header.len() as f64
        );
        assert!(peak <= budget, "{what}: {} bytes took {peak}", header.len());
        assert_eq!(&got, cmd, "{what}: decoded header differs");
    }

    #[test]
    fn legitimate_send_message_headers_still_decode() {
        for ty in [SerializeType::Json, SerializeType::RocketMq] {
            assert_header_decodes_within_budget(
                &format!("{ty:?} plain send"),
                &send_message(ty, 0, 0),
            );
            assert_header_decodes_within_budget(
                &format!("{ty:?} send, 10k properties"),
                &send_message(ty, 10_000, 0),
            );
            assert_header_decodes_within_budget(
                &format!("{ty:?} send, 10k extra header fields"),
                &send_message(ty, 0, 10_000),
            );
        }
    }
}
