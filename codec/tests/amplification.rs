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
