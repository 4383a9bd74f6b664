//! Codec hot paths: encoding and decoding the frames that carry most of the
//! traffic (a producer's batch and a consumer's pull response).
//!
//! Run with `cargo bench -p skylark-codec`.

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use skylark_codec::{
    FrameCodec, Header, MessageData, OutFrame, PullResponse, PullStatus, SendBatchRequest,
};
use tokio_util::codec::{Decoder, Encoder};

fn send_batch() -> SendBatchRequest {
    let messages = (0..32)
        .map(|i| MessageData {
            tags: Some("TagA".into()),
            keys: Some(format!("key-{i}")),
            body: Bytes::from(vec![b'x'; 128]),
            born_timestamp: 1_700_000_000_000 + i,
            ..MessageData::default()
        })
        .collect();
    SendBatchRequest {
        producer_group: "bench_producer".into(),
        topic: "BenchTopic".into(),
        queue_id: -1,
        messages,
    }
}

fn pull_response() -> PullResponse {
    PullResponse {
        status: PullStatus::Found,
        next_offset: 132,
        min_offset: 0,
        max_offset: 1000,
        count: 32,
        records: Bytes::from(vec![7u8; 32 * 1024]),
        suggest_slave: false,
        damaged: Vec::new(),
    }
}

fn bench_send_batch(c: &mut Criterion) {
    let req = send_batch();
    let mut codec = FrameCodec::default();
    let mut buf = BytesMut::with_capacity(16 * 1024);
    codec.encode(OutFrame::request(1, &req), &mut buf).unwrap();
    let frame_len = buf.len() as u64;
    buf.clear();

    let mut group = c.benchmark_group("send_batch_32x128B");
    group.throughput(Throughput::Bytes(frame_len));
    group.bench_function("encode", |b| {
        b.iter(|| {
            buf.clear();
            codec
                .encode(OutFrame::request(1, black_box(&req)), &mut buf)
                .unwrap();
        })
    });
    group.bench_function("encode+decode", |b| {
        b.iter(|| {
            buf.clear();
            codec
                .encode(OutFrame::request(1, black_box(&req)), &mut buf)
                .unwrap();
            let frame = codec.decode(&mut buf).unwrap().unwrap();
            let got: SendBatchRequest = frame.decode_request().unwrap();
            black_box(got);
        })
    });
    group.finish();
}

fn bench_pull_response(c: &mut Criterion) {
    let resp = pull_response();
    let request = Header::request(1, skylark_codec::Command::PullMessage);
    let mut codec = FrameCodec::default();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    codec
        .encode(OutFrame::response_ok(&request, &resp), &mut buf)
        .unwrap();
    let frame_len = buf.len() as u64;
    buf.clear();

    let mut group = c.benchmark_group("pull_response_32KiB");
    group.throughput(Throughput::Bytes(frame_len));
    group.bench_function("encode", |b| {
        b.iter(|| {
            buf.clear();
            codec
                .encode(OutFrame::response_ok(&request, black_box(&resp)), &mut buf)
                .unwrap();
        })
    });
    group.bench_function("encode+decode", |b| {
        b.iter(|| {
            buf.clear();
            codec
                .encode(OutFrame::response_ok(&request, black_box(&resp)), &mut buf)
                .unwrap();
            let frame = codec.decode(&mut buf).unwrap().unwrap();
            let got: PullResponse = frame.decode_response().unwrap();
            black_box(got);
        })
    });
    group.finish();
}

criterion_group!(benches, bench_send_batch, bench_pull_response);
criterion_main!(benches);
