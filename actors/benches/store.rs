//! Storage engine benchmarks (criterion): async-flush appends, sync-flush
//! appends with 32 concurrent writers through the Storage actor (group
//! commit), and sequential queue reads. Results go to docs/benchmarks.md.
//!
//! `CARGO_TARGET_DIR=/tmp/target-store cargo bench -p skylark-actors --bench store`

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Arbiter;
use bytes::Bytes;
use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use skylark_actors::message_store::{AppendMessage, FlushMode, Store, StoreConfig, UNFILTERED};
use skylark_actors::storage::{PutMessages, Storage, StoredMessage};
use slog::{o, Logger};

const BATCH: usize = 32;

fn logger() -> Logger {
    Logger::root(slog::Discard, o!())
}

fn host() -> SocketAddr {
    "127.0.0.1:10911".parse().unwrap_or_else(|_| unreachable!())
}

fn config(dir: &std::path::Path, mode: FlushMode) -> StoreConfig {
    StoreConfig {
        segment_size: 256 << 20,
        flush_mode: mode,
        ..StoreConfig::new(dir)
    }
}

/// A benchmark group with this file's measurement settings (5 s, 10 samples).
fn group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.measurement_time(Duration::from_secs(5)).sample_size(10);
    g
}

/// An async-flush store in a fresh temporary directory (removed when the
/// returned `TempDir` is dropped, so keep it alive as long as the store).
fn async_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(config(dir.path(), FlushMode::Async), logger()).expect("open");
    (dir, store)
}

/// The message every benchmark stores: topic `BenchTopic`, tag `TagA`, no
/// keys or properties.
fn message(body: &Bytes, queue_id: u32) -> StoredMessage {
    StoredMessage {
        topic: Arc::from("BenchTopic"),
        queue_id,
        flag: 0,
        tags: Some("TagA".into()),
        keys: None,
        properties: Vec::new(),
        body: body.clone(),
        born_timestamp: 0,
        born_host: host(),
        store_host: host(),
        reconsume_times: 0,
        sys_flag: 0,
        prepared_tx_offset: 0,
    }
}

/// `n` messages spread over queues 0-3.
fn batch(body: &Bytes, n: usize) -> Vec<StoredMessage> {
    (0..n).map(|i| message(body, (i % 4) as u32)).collect()
}

/// The borrowed form [`Store::append`] takes.
fn as_append(msgs: &[StoredMessage]) -> Vec<AppendMessage<'_>> {
    msgs.iter().map(StoredMessage::as_append).collect()
}

/// What the Storage actor's flush timer does: a `flush_tick` (fsync on the
/// flusher thread) every `flush_interval_ms` (500 ms by default) of time,
/// whatever the append rate.
struct FlushTicker {
    last: Instant,
    every: Duration,
}

impl FlushTicker {
    fn new() -> FlushTicker {
        FlushTicker {
            last: Instant::now(),
            every: Duration::from_millis(StoreConfig::default().flush_interval_ms),
        }
    }

    fn tick(&mut self, store: &mut Store) {
        if self.last.elapsed() >= self.every {
            store.flush_tick().expect("flush tick");
            self.last = Instant::now();
        }
    }
}

fn append_async(c: &mut Criterion) {
    let mut g = group(c, "store_append_async");
    for size in [128usize, 1024] {
        let (_dir, mut store) = async_store();
        let body = Bytes::from(vec![b'x'; size]);
        let stored = batch(&body, BATCH);
        let msgs = as_append(&stored);
        let mut ticker = FlushTicker::new();
        g.throughput(Throughput::Elements(BATCH as u64));
        g.bench_with_input(BenchmarkId::new("batch32", size), &size, |b, _| {
            b.iter(|| {
                store.append(&msgs).expect("append");
                ticker.tick(&mut store);
            })
        });
    }
    g.finish();
}

/// As `append_async` (128 B bodies), but every message has a key and a
/// distinct unique id (`UNIQ_KEY`, as the Skylark producer sends): two
/// IndexFile entries per message on the append path. 131 072 distinct ids
/// are cycled so slot writes spread over the whole slot table.
fn append_async_indexed(c: &mut Criterion) {
    let mut g = group(c, "store_append_async_indexed");
    let (_dir, mut store) = async_store();
    let body = Bytes::from(vec![b'x'; 128]);
    const BATCHES: usize = 4096;
    let stored: Vec<Vec<StoredMessage>> = (0..BATCHES)
        .map(|b| {
            let mut msgs = batch(&body, BATCH);
            for (i, m) in msgs.iter_mut().enumerate() {
                let id = b * BATCH + i;
                m.keys = Some("order-1".into());
                m.properties = vec![("UNIQ_KEY".to_string(), format!("7F000001{id:024X}"))];
            }
            msgs
        })
        .collect();
    let batches: Vec<Vec<AppendMessage<'_>>> = stored.iter().map(|b| as_append(b)).collect();
    let mut n = 0usize;
    let mut ticker = FlushTicker::new();
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("batch32/128", |b| {
        b.iter(|| {
            store.append(&batches[n % BATCHES]).expect("append");
            n += 1;
            ticker.tick(&mut store);
        })
    });
    g.finish();
}

fn sync_writers(c: &mut Criterion) {
    let mut g = group(c, "store_append_sync_32_writers");
    let sys = actix_rt::System::new();
    for per_put in [1usize, 32] {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = config(dir.path(), FlushMode::Sync);
        let (arbiter, storage) = sys.block_on(async {
            let arbiter = Arbiter::new();
            let storage = Storage::start_on(&arbiter.handle(), cfg, logger())
                .await
                .expect("start");
            (arbiter, storage)
        });
        let msg = message(&Bytes::from(vec![b'x'; 128]), 0);
        g.throughput(Throughput::Elements((32 * per_put) as u64));
        g.bench_with_input(
            BenchmarkId::new("msgs_per_put", per_put),
            &per_put,
            |b, &per_put| {
                b.iter_custom(|iters| {
                    sys.block_on(async {
                        let start = Instant::now();
                        let writers = (0..32u32).map(|w| {
                            let storage = storage.clone();
                            let mut m = msg.clone();
                            m.queue_id = w % 4;
                            async move {
                                for _ in 0..iters {
                                    let messages = vec![m.clone(); per_put];
                                    let r = storage.send(PutMessages { messages }).await;
                                    assert!(matches!(r, Ok(Ok(_))));
                                }
                            }
                        });
                        futures::future::join_all(writers).await;
                        start.elapsed()
                    })
                })
            },
        );
        arbiter.stop();
    }
    g.finish();
}

fn read_sequential(c: &mut Criterion) {
    let mut g = group(c, "store_read_sequential");
    let (_dir, mut store) = async_store();
    let body = Bytes::from(vec![b'x'; 128]);
    let stored: Vec<StoredMessage> = (0..BATCH).map(|_| message(&body, 0)).collect();
    let msgs = as_append(&stored);
    for _ in 0..(500_000 / BATCH) {
        store.append(&msgs).expect("append");
    }
    let max = store.max_queue_offset("BenchTopic", 0).unwrap_or(0);
    let mut off = 0;
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("batch32_128B", |b| {
        b.iter(|| {
            let r = store
                .read_filtered("BenchTopic", 0, off, BATCH, 1 << 20, None, UNFILTERED)
                .expect("read");
            off = if r.next_queue_offset >= max {
                0
            } else {
                r.next_queue_offset
            };
            r.records
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    append_async,
    append_async_indexed,
    sync_writers,
    read_sequential
);
criterion_main!(benches);
