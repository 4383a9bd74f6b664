//! Store-level tests: reads across segments, recovery from damage,
//! group commit, retention and disk-full handling. Small segments (16 KiB)
//! and ConsumeQueue files (64 entries) exercise rolling everywhere.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use rand::{Rng, SeedableRng};

use super::*;

pub(super) fn logger() -> Logger {
    Logger::root(slog::Discard, slog::o!())
}

pub(super) fn config(dir: &Path) -> StoreConfig {
    StoreConfig {
        segment_size: 16 * 1024,
        cq_entries_per_file: 64,
        max_message_size: 4096,
        index_slots: 64,
        index_entries: 512,
        ..StoreConfig::new(dir)
    }
}

const TOPICS: [&str; 3] = ["TopicA", "TopicB", "%RETRY%group"];

/// What a test appended, to compare with what the store serves.
#[derive(Clone)]
struct Sent {
    topic: &'static str,
    queue_id: u32,
    body: Vec<u8>,
    tag: &'static str,
    at: AppendResult,
}

fn append_random(store: &mut Store, rng: &mut impl Rng, batches: usize, sent: &mut Vec<Sent>) {
    for _ in 0..batches {
        let n = rng.gen_range(1..8);
        let specs: Vec<(&'static str, u32, Vec<u8>, &'static str)> = (0..n)
            .map(|_| {
                let len = rng.gen_range(0..600);
                let body = (0..len).map(|_| rng.gen()).collect();
                let tag = if rng.gen_bool(0.5) { "TagA" } else { "TagB" };
                (TOPICS[rng.gen_range(0..3)], rng.gen_range(0..2), body, tag)
            })
            .collect();
        let batch: Vec<AppendMessage<'_>> = specs
            .iter()
            .map(|(t, q, b, tag)| AppendMessage {
                queue_id: *q,
                tags: Some(tag),
                keys: Some("k1"),
                born_timestamp: 1,
                ..AppendMessage::for_test(t, b)
            })
            .collect();
        let res = store.append(&batch).unwrap();
        for ((t, q, b, tag), at) in specs.into_iter().zip(res.results) {
            sent.push(Sent {
                topic: t,
                queue_id: q,
                body: b,
                tag,
                at,
            });
        }
    }
}

/// Reads every queue in full and checks it is exactly `expected` (in
/// order), that queue offsets are contiguous and that every entry points at
/// a valid record of its own topic/queue.
fn check(store: &Store, expected: &[Sent]) {
    check_except(store, expected, None);
}

/// [`check`], where `damaged` (one of `expected`) is not served but
/// reported as damaged at its queue offset.
fn check_except(store: &Store, expected: &[Sent], damaged: Option<&Sent>) {
    let is_damaged = |s: &Sent| damaged.is_some_and(|d| d.at == s.at && d.topic == s.topic);
    for topic in TOPICS {
        for q in 0..2 {
            let want: Vec<&Sent> = expected
                .iter()
                .filter(|s| s.topic == topic && s.queue_id == q)
                .collect();
            let max = store.max_queue_offset(topic, q).unwrap_or(0);
            let min = store.min_queue_offset(topic, q).unwrap_or(0);
            assert_eq!(max, want.len() as u64, "{topic}/{q} max offset");
            let (mut got, mut bad) = (Vec::new(), Vec::new());
            let mut off = min;
            while off < max {
                let r = store
                    .read_filtered(topic, q, off, 7, 1 << 20, None, UNFILTERED)
                    .unwrap();
                if damaged.is_none() {
                    assert_eq!(r.status, ReadStatus::Found);
                }
                assert!(r.next_queue_offset > off, "{topic}/{q} stalled at {off}");
                let records = r.records.to_bytes();
                let mut buf = &records[..];
                let mut damaged_here = r.damaged.iter().map(|d| d.queue_offset).peekable();
                while !buf.is_empty() {
                    let (m, n) = decode(buf).unwrap();
                    while damaged_here.next_if(|d| *d < m.queue_offset).is_some() {
                        bad.push(min + (got.len() + bad.len()) as u64);
                    }
                    assert_eq!(m.topic, topic);
                    assert_eq!(m.queue_id, q);
                    assert_eq!(m.queue_offset, min + (got.len() + bad.len()) as u64);
                    got.push(m.body.to_vec());
                    buf = &buf[n..];
                }
                bad.extend(damaged_here);
                off = r.next_queue_offset;
            }
            let want_bodies: Vec<Vec<u8>> = want
                .iter()
                .filter(|s| !is_damaged(s))
                .map(|s| s.body.clone())
                .collect();
            assert_eq!(got, want_bodies, "{topic}/{q} bodies");
            let want_bad: Vec<u64> = want
                .iter()
                .filter(|s| is_damaged(s))
                .map(|s| s.at.queue_offset)
                .collect();
            assert_eq!(bad, want_bad, "{topic}/{q} damaged");
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

/// Fills a store (several segments), waits for a checkpoint, crashes it
/// (drop without shutdown) and returns what was sent.
fn crashed_store(dir: &Path, seed: u64, batches: usize) -> Vec<Sent> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut store = Store::open(config(dir), logger()).unwrap();
    let mut sent = Vec::new();
    append_random(&mut store, &mut rng, batches / 2, &mut sent);
    store.flush_tick().unwrap();
    wait_checkpoint(dir, store.max_physical_offset());
    append_random(&mut store, &mut rng, batches / 2, &mut sent);
    drop(store);
    sent
}

fn wait_checkpoint(dir: &Path, end: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let cp = Checkpoint::load(&dir.join("checkpoint")).unwrap();
        if cp.is_some_and(|c| c.cq_safe >= end) {
            return;
        }
        assert!(Instant::now() < deadline, "checkpoint not written");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn segment_path(dir: &Path, start: u64) -> PathBuf {
    dir.join("commitlog").join(mapped_file::file_name(start))
}

#[test]
fn append_and_read_across_segments_then_clean_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut sent = Vec::new();
    let mut store = Store::open(config(dir.path()), logger()).unwrap();
    append_random(&mut store, &mut rng, 150, &mut sent);
    assert!(
        store.segment_count() > 5,
        "segments: {}",
        store.segment_count()
    );
    check(&store, &sent);
    for s in sent.iter().step_by(17) {
        let rec = store.read_at(s.at.physical_offset, s.at.size).unwrap();
        let (m, _) = decode(&rec).unwrap();
        assert_eq!(m.body, &s.body[..]);
        assert_eq!(m.tags(), Some(s.tag));
        assert_eq!(m.keys(), Some("k1"));
        assert_eq!(store.read_at(s.at.physical_offset, 0).unwrap(), rec);
    }
    assert!(store.read_at(sent[1].at.physical_offset + 1, 0).is_err());
    store.shutdown().unwrap();
    drop(store);
    let mut store = Store::open(config(dir.path()), logger()).unwrap();
    check(&store, &sent);
    append_random(&mut store, &mut rng, 20, &mut sent);
    check(&store, &sent);
    assert_eq!(store.topics_and_queues().len(), 6);
}

#[test]
fn read_statuses_limits_and_tag_filter() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    let mut sent = Vec::new();
    let mut store = Store::open(config(dir.path()), logger()).unwrap();
    append_random(&mut store, &mut rng, 60, &mut sent);
    let max = store.max_queue_offset("TopicA", 0).unwrap();
    let r = store
        .read_filtered("nope", 0, 0, 32, 1 << 20, None, UNFILTERED)
        .unwrap();
    assert_eq!(r.status, ReadStatus::NoQueue);
    let r = store
        .read_filtered("TopicA", 0, max, 32, 1 << 20, None, UNFILTERED)
        .unwrap();
    assert_eq!(
        (r.status, r.next_queue_offset),
        (ReadStatus::NoNewMessage, max)
    );
    let r = store
        .read_filtered("TopicA", 0, max + 1, 32, 1 << 20, None, UNFILTERED)
        .unwrap();
    assert_eq!(
        (r.status, r.next_queue_offset),
        (ReadStatus::OffsetTooBig, max)
    );
    // max_bytes: at least one record, never more than asked beyond that
    let r = store
        .read_filtered("TopicA", 0, 0, 32, 1, None, UNFILTERED)
        .unwrap();
    assert_eq!(r.count, 1);
    // tag filter: only TagA, offsets advance past skipped entries
    let want: Vec<&Sent> = sent
        .iter()
        .filter(|s| s.topic == "TopicA" && s.queue_id == 0 && s.tag == "TagA")
        .collect();
    let filter = [tag_hash("TagA")];
    let (mut off, mut got) = (0, 0);
    while off < max {
        let r = store
            .read_filtered("TopicA", 0, off, 3, 1 << 20, Some(&filter), UNFILTERED)
            .unwrap();
        let records = r.records.to_bytes();
        let mut buf = &records[..];
        while !buf.is_empty() {
            let (m, n) = decode(buf).unwrap();
            assert_eq!(m.tags(), Some("TagA"));
            assert_eq!(m.body, &want[got].body[..]);
            got += 1;
            buf = &buf[n..];
        }
        assert!(r.next_queue_offset > off);
        off = r.next_queue_offset;
    }
    assert_eq!(got, want.len());
    let r = store
        .read_filtered(
            "TopicA",
            0,
            0,
            3,
            1 << 20,
            Some(&[tag_hash("None")]),
            UNFILTERED,
        )
        .unwrap();
    assert_eq!(
        (r.status, r.next_queue_offset),
        (ReadStatus::NoMatchedMessage, max)
    );
}

#[test]
fn oversized_message_fails_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(config(dir.path()), logger()).unwrap();
    let big = vec![0u8; 5000];
    let m = |body: &'static [u8]| AppendMessage::for_test("T", body);
    let mut huge = m(b"x");
    huge.body = &big;
    let err = store.append(&[m(b"ok"), huge]).unwrap_err();
    assert!(matches!(err, StoreError::MessageTooLarge { .. }));
    assert_eq!(store.max_physical_offset(), 0);
    assert_eq!(store.max_queue_offset("T", 0), None);
    store.append(&[m(b"ok")]).unwrap();
    assert_eq!(store.max_queue_offset("T", 0), Some(1));
}

#[test]
fn queue_offset_by_store_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let mut sent = Vec::new();
    let mut store = Store::open(config(dir.path()), logger()).unwrap();
    for _ in 0..4 {
        append_random(&mut store, &mut rng, 5, &mut sent);
        std::thread::sleep(Duration::from_millis(3));
    }
    for topic in TOPICS {
        let mine: Vec<&Sent> = sent
            .iter()
            .filter(|s| s.topic == topic && s.queue_id == 1)
            .collect();
        for (i, s) in mine.iter().enumerate() {
            let first = mine
                .iter()
                .position(|o| o.at.store_timestamp >= s.at.store_timestamp)
                .unwrap_or(i);
            assert_eq!(
                store.queue_offset_by_time(topic, 1, s.at.store_timestamp),
                first as u64
            );
        }
        assert_eq!(store.queue_offset_by_time(topic, 1, 0), 0);
        assert_eq!(
            store.queue_offset_by_time(topic, 1, i64::MAX),
            mine.len() as u64
        );
    }
}

/// (a) torn tail: the last segment truncated at random points.
#[test]
fn recovery_truncated_last_segment() {
    let base = tempfile::tempdir().unwrap();
    let sent = crashed_store(base.path(), 10, 120);
    let last = sent.iter().map(|s| s.at.physical_offset).max().unwrap();
    let seg_start = last - last % 16384;
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    for _ in 0..6 {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(base.path(), dir.path());
        let cut = rng.gen_range(0..=(last + 10 - seg_start));
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(segment_path(dir.path(), seg_start))
            .unwrap();
        f.set_len(cut).unwrap();
        let cut = seg_start + cut;
        let survivors: Vec<Sent> = sent
            .iter()
            .filter(|s| s.at.physical_offset + u64::from(s.at.size) <= cut)
            .cloned()
            .collect();
        let mut store = Store::open(config(dir.path()), logger()).unwrap();
        check(&store, &survivors);
        // the store goes on from there
        let mut more = survivors.clone();
        append_random(&mut store, &mut rng, 5, &mut more);
        check(&store, &more);
        drop(store);
        let store = Store::open(config(dir.path()), logger()).unwrap();
        check(&store, &more);
    }
}

/// (b) a flipped byte inside a record past the checkpoint: when intact
/// records follow, only that record is lost (skipped, reported by reads:
/// a crash tears only the last record written); as the last record it is
/// the torn tail and cut. Below the checkpoint see
/// `hardening_flipped_byte_below_checkpoint_after_crash`.
#[test]
fn recovery_flipped_byte() {
    let base = tempfile::tempdir().unwrap();
    let sent = crashed_store(base.path(), 20, 120);
    let flushed = Checkpoint::load(&base.path().join("checkpoint"))
        .unwrap()
        .unwrap()
        .commit_log_flushed;
    let mut rng = rand::rngs::StdRng::seed_from_u64(21);
    let last = sent.iter().map(|s| s.at.physical_offset).max().unwrap();
    let seg_start = last - last % 16384;
    let in_last: Vec<&Sent> = sent
        .iter()
        .filter(|s| s.at.physical_offset >= seg_start.max(flushed))
        .collect();
    let mut victims: Vec<&Sent> = (0..4)
        .map(|_| in_last[rng.gen_range(0..in_last.len())])
        .collect();
    victims.push(in_last[in_last.len() - 1]); // the last record: a torn tail
    for victim in victims {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(base.path(), dir.path());
        let path = segment_path(dir.path(), seg_start);
        let mut bytes = std::fs::read(&path).unwrap();
        let at = (victim.at.physical_offset - seg_start) as usize
            + rng.gen_range(0..victim.at.size as usize);
        bytes[at] ^= 0x10;
        std::fs::write(&path, bytes).unwrap();
        let store = Store::open(config(dir.path()), logger()).unwrap();
        if victim.at.physical_offset == last {
            let survivors: Vec<Sent> = sent
                .iter()
                .filter(|s| s.at.physical_offset < victim.at.physical_offset)
                .cloned()
                .collect();
            check(&store, &survivors);
            assert_eq!(store.max_physical_offset(), victim.at.physical_offset);
        } else {
            check_except(&store, &sent, Some(victim));
            assert_eq!(store.recovery_report().damaged.len(), 1);
        }
    }
}

/// (c) roll across segments, crash: everything in the page cache survives.
#[test]
fn recovery_after_crash_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut sent = crashed_store(dir.path(), 30, 100);
    let mut store = Store::open(config(dir.path()), logger()).unwrap();
    assert!(store.segment_count() > 3);
    check(&store, &sent);
    let mut rng = rand::rngs::StdRng::seed_from_u64(31);
    append_random(&mut store, &mut rng, 30, &mut sent);
    drop(store);
    // and with the checkpoint gone
    std::fs::remove_file(dir.path().join("checkpoint")).unwrap();
    let store = Store::open(config(dir.path()), logger()).unwrap();
    check(&store, &sent);
}

/// (d) ConsumeQueue files deleted or truncated after a clean shutdown.
#[test]
fn recovery_rebuilds_consume_queues() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(40);
    let mut sent = Vec::new();
    let mut store = Store::open(config(dir.path()), logger()).unwrap();
    append_random(&mut store, &mut rng, 200, &mut sent);
    store.shutdown().unwrap();
    drop(store);
    let cq = |t: &str, q: u32| dir.path().join("consumequeue").join(t).join(q.to_string());
    let a0 = mapped_file::list_files(&cq("TopicA", 0)).unwrap();
    assert!(a0.len() >= 3, "need several cq files, got {}", a0.len());
    std::fs::remove_file(&a0[1].1).unwrap(); // a middle file
    let b1 = mapped_file::list_files(&cq("TopicB", 1)).unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&b1.last().unwrap().1)
        .unwrap();
    f.set_len(30).unwrap(); // torn last file
    let store = Store::open(config(dir.path()), logger()).unwrap();
    check(&store, &sent);
    drop(store);
    // the whole consumequeue directory gone
    std::fs::remove_dir_all(dir.path().join("consumequeue")).unwrap();
    let mut store = Store::open(config(dir.path()), logger()).unwrap();
    check(&store, &sent);
    // ... also after a clean shutdown (no scan otherwise)
    store.shutdown().unwrap();
    drop(store);
    std::fs::remove_dir_all(dir.path().join("consumequeue")).unwrap();
    let store = Store::open(config(dir.path()), logger()).unwrap();
    check(&store, &sent);
}

#[test]
fn sync_flush_group_commit() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(50);
    let mut sent = Vec::new();
    let mut store = Store::open(config(dir.path()), logger()).unwrap();
    // 200 writers each waiting for its own message: the requests queue up
    // faster than one fsync takes, so the flusher answers them in a few
    // batches. (Interleaving appends and requests made this depend on how
    // fast the disk's fsync is against how fast the test appends.)
    let mut ends = Vec::new();
    for _ in 0..200 {
        append_random(&mut store, &mut rng, 1, &mut sent);
        ends.push(store.max_physical_offset());
    }
    let replies: Vec<_> = ends.into_iter().map(|e| store.request_flush(e)).collect();
    for r in replies {
        futures::executor::block_on(r).unwrap().unwrap();
    }
    assert!(store.flushed_offset() >= store.max_physical_offset());
    let fsyncs = store.fsync_count();
    // One fsync per request would be >= 200; a few batches sync each
    // segment about once.
    let segments = store.segment_count() as u64;
    assert!(
        fsyncs <= 2 * segments,
        "fsyncs {fsyncs} for 200 appends over {segments} segments"
    );
    // already covered: answered without a new fsync
    futures::executor::block_on(store.request_flush(1))
        .unwrap()
        .unwrap();
    assert_eq!(store.fsync_count(), fsyncs);
}

fn set_mtime(path: &Path, t: SystemTime) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_modified(t).unwrap();
}

#[test]
fn retention_deletes_expired_segments_and_queues() {
    let dir = tempfile::tempdir().unwrap();
    let usage = FixedDiskUsage::new(0.5);
    let cfg = StoreConfig {
        cq_entries_per_file: 8,
        ..config(dir.path())
    };
    let mut store =
        Store::open_with_disk_usage(cfg.clone(), logger(), Box::new(usage.clone())).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(60);
    let mut sent = Vec::new();
    append_random(&mut store, &mut rng, 250, &mut sent);
    let now = SystemTime::now();
    let old = now - Duration::from_secs(100 * 3600);
    let paths = store.segment_paths();
    assert!(paths.len() > 8);
    for p in &paths[..4] {
        set_mtime(p, old);
    }
    set_mtime(&paths[5], old); // not contiguous from the oldest: stays
    let other_hour = (store.config().delete_when_hour + 1) % 24;
    let r = store.clean_expired_files_at(now, other_hour).unwrap();
    assert_eq!((r.triggered, r.deleted_segments), (false, 0));
    let r = store.clean_expired_files_at(now, 4).unwrap();
    assert_eq!((r.triggered, r.deleted_segments), (true, 4));
    assert!(r.deleted_cq_files > 0);
    let min = store.min_physical_offset();
    assert_eq!(min, 4 * 16384);
    for topic in TOPICS {
        for q in 0..2 {
            let all: Vec<&Sent> = sent
                .iter()
                .filter(|s| s.topic == topic && s.queue_id == q)
                .collect();
            let first_kept = all
                .iter()
                .position(|s| s.at.physical_offset >= min)
                .unwrap_or(all.len());
            assert_eq!(store.min_queue_offset(topic, q), Some(first_kept as u64));
            if first_kept > 0 {
                let r = store
                    .read_filtered(topic, q, 0, 1, 1 << 20, None, UNFILTERED)
                    .unwrap();
                assert_eq!(r.status, ReadStatus::OffsetTooSmall);
            }
            let r = store
                .read_filtered(topic, q, first_kept as u64, 1000, 1 << 30, None, UNFILTERED)
                .unwrap();
            assert_eq!(r.count as usize, all.len() - first_kept);
        }
    }
    // soft limit: deletes at any hour
    set_mtime(&paths[4], old);
    usage.set(0.8);
    let r = store.clean_expired_files_at(now, other_hour).unwrap();
    assert_eq!((r.triggered, r.deleted_segments), (true, 2));
    drop(store);
    let store = Store::open(cfg, logger()).unwrap();
    assert_eq!(store.min_physical_offset(), 6 * 16384);
    for s in sent.iter().filter(|s| s.at.physical_offset >= 6 * 16384) {
        let r = store
            .read_filtered(
                s.topic,
                s.queue_id,
                s.at.queue_offset,
                1,
                1,
                None,
                UNFILTERED,
            )
            .unwrap();
        assert_eq!(decode(&r.records.to_bytes()).unwrap().0.body, &s.body[..]);
    }
}

/// A segment refused with ENOSPC below the hard ratio makes the store
/// report disk full (metrics, dashboard, status), though usage is low.
#[test]
fn a_segment_refused_for_space_is_disk_full_below_the_ratio() {
    let dir = tempfile::tempdir().unwrap();
    let usage = FixedDiskUsage::new(0.5);
    let mut store =
        Store::open_with_disk_usage(config(dir.path()), logger(), Box::new(usage)).unwrap();
    assert!(!store.is_disk_full());
    store.commit_log.fail_next_segment(StoreError::DiskFull {
        usage: 0.82,
        limit: 0.9,
    });
    assert!(store.is_disk_full());
    store
        .commit_log
        .fail_next_segment(StoreError::Corrupt("not space".into()));
    assert!(!store.is_disk_full(), "only a refusal for space counts");
}

#[test]
fn disk_full_refuses_writes_and_keeps_files_valid() {
    let dir = tempfile::tempdir().unwrap();
    let usage = FixedDiskUsage::new(0.5);
    let mut store =
        Store::open_with_disk_usage(config(dir.path()), logger(), Box::new(usage.clone())).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(70);
    let mut sent = Vec::new();
    append_random(&mut store, &mut rng, 20, &mut sent);
    usage.set(0.95);
    store.flush_tick().unwrap();
    assert!(store.is_disk_full());
    let end = store.max_physical_offset();
    let m = AppendMessage::for_test("TopicA", b"refused");
    assert!(matches!(
        store.append(&[m]),
        Err(StoreError::DiskFull { .. })
    ));
    assert_eq!(store.max_physical_offset(), end);
    check(&store, &sent);
    usage.set(0.5);
    store.check_disk();
    append_random(&mut store, &mut rng, 5, &mut sent);
    drop(store);
    let store = Store::open(config(dir.path()), logger()).unwrap();
    check(&store, &sent);
}

fn rss_anon_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Stores 10^7 small messages and prints anonymous RSS along the way: it
/// must stay flat (nothing per message in RAM). Run with
/// `cargo test -p skylark-actors --release -- --ignored rss --nocapture`.
#[test]
#[ignore]
fn rss_stays_flat_over_ten_million_messages() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        segment_size: 256 << 20,
        ..StoreConfig::new(dir.path())
    };
    let mut store = Store::open(cfg, logger()).unwrap();
    let body = [7u8; 64];
    let topics: Vec<String> = (0..4).map(|i| format!("Topic{i}")).collect();
    let batch: Vec<AppendMessage<'_>> = (0..32)
        .map(|i| AppendMessage {
            queue_id: (i % 8) as u32,
            tags: Some("TagA"),
            ..AppendMessage::for_test(&topics[i % 4], &body)
        })
        .collect();
    let start = Instant::now();
    let total = 10_000_000u64;
    let mut stored = 0u64;
    println!("messages,rss_anon_kb,elapsed_s");
    while stored < total {
        store.append(&batch).unwrap();
        stored += batch.len() as u64;
        if stored.is_multiple_of(1 << 15) {
            store.flush_tick().unwrap();
        }
        if stored % 1_000_000 < 32 {
            println!(
                "{stored},{},{:.1}",
                rss_anon_kb(),
                start.elapsed().as_secs_f64()
            );
        }
    }
    println!(
        "{stored},{},{:.1}",
        rss_anon_kb(),
        start.elapsed().as_secs_f64()
    );
}

/// Appends `n` messages (bodies `msg-<i>`, 200 bytes) to `Hard/0`, flushes
/// and waits for the checkpoint to cover them all (as sync flush would).
fn filled_and_flushed(dir: &Path, n: usize) -> (Store, Vec<AppendResult>) {
    let mut store = Store::open(config(dir), logger()).unwrap();
    let mut at = Vec::new();
    for i in 0..n {
        let body = format!("msg-{i:0>196}");
        let m = AppendMessage::for_test("Hard", body.as_bytes());
        at.push(store.append(&[m]).unwrap().results[0]);
    }
    store.flush_tick().unwrap();
    wait_checkpoint(dir, store.max_physical_offset());
    (store, at)
}

/// Reads `Hard/0` from its min to its max in batches of 7: the bodies'
/// indexes served and the damaged entries reported.
fn read_hard(store: &Store) -> (Vec<usize>, Vec<DamagedEntry>) {
    let (mut got, mut damaged) = (Vec::new(), Vec::new());
    let max = store.max_queue_offset("Hard", 0).unwrap();
    let mut off = store.min_queue_offset("Hard", 0).unwrap();
    while off < max {
        let r = store
            .read_filtered("Hard", 0, off, 7, 1 << 20, None, UNFILTERED)
            .unwrap();
        assert!(r.next_queue_offset > off, "read stalled at {off}");
        let records = r.records.to_bytes();
        let mut buf = &records[..];
        while !buf.is_empty() {
            let (m, n) = decode(buf).unwrap();
            let body = std::str::from_utf8(m.body).unwrap();
            got.push(body[4..].trim_start_matches('0').parse().unwrap_or(0));
            buf = &buf[n..];
        }
        damaged.extend(r.damaged);
        off = r.next_queue_offset;
    }
    (got, damaged)
}

fn flip(dir: &Path, physical_offset: u64, segment_size: u64) -> Vec<u8> {
    let seg_start = physical_offset - physical_offset % segment_size;
    let path = segment_path(dir, seg_start);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[(physical_offset - seg_start) as usize] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();
    bytes
}

/// kill -9 after everything was flushed, then one flipped byte in a record
/// in the middle of the log (body, size field or magic). Whether recovery
/// walks over it (ConsumeQueue lost and rebuilt; a checkpoint far behind)
/// or not (the scan starts at the checkpoint, past it): every other record
/// is read, the damaged one is reported by the read at its queue offset,
/// recovery quarantines what it walked over, nothing is zeroed.
#[test]
fn hardening_flipped_byte_below_checkpoint_after_crash() {
    let seg = 16 * 1024;
    for mode in ["queues intact", "queues lost", "old checkpoint"] {
        for (case, delta) in [("body", 150u64), ("size field", 2), ("magic", 5)] {
            let what = format!("{mode}, {case}");
            let dir = tempfile::tempdir().unwrap();
            let (store, at) = filled_and_flushed(dir.path(), 300);
            let end = store.max_physical_offset();
            drop(store); // crash: no clean checkpoint
            let victim = at[150];
            let flipped = flip(dir.path(), victim.physical_offset + delta, seg);
            match mode {
                "queues lost" => {
                    std::fs::remove_dir_all(dir.path().join("consumequeue")).unwrap();
                }
                "old checkpoint" => Checkpoint {
                    commit_log_flushed: end,
                    cq_safe: at[10].physical_offset,
                    clean: false,
                    no_queues: false,
                }
                .store(&dir.path().join("checkpoint"))
                .unwrap(),
                _ => {}
            }
            let store = Store::open(config(dir.path()), logger()).unwrap();
            let rep = store.recovery_report().clone();
            assert_eq!(rep.kind, OpenKind::Unclean, "{what}");
            assert_eq!(store.max_physical_offset(), end, "{what}: log cut");
            if mode == "queues intact" {
                assert!(rep.damaged.is_empty(), "{what}: scan starts past it");
            } else {
                assert_eq!(rep.damaged.len(), 1, "{what}: {rep:?}");
                let d = &rep.damaged[0];
                assert_eq!(d.from, victim.physical_offset, "{what}");
                assert_eq!(d.to, victim.physical_offset + u64::from(victim.size));
                assert_eq!(store.damaged_records(), 1);
                // The quarantine copy holds the damaged bytes as they were.
                let q = std::fs::read(d.quarantined.as_ref().unwrap()).unwrap();
                let in_seg = (victim.physical_offset % seg) as usize;
                assert_eq!(q, flipped[in_seg..in_seg + victim.size as usize]);
            }
            // Nothing zeroed: the segment is byte for byte what was there.
            let seg_start = victim.physical_offset - victim.physical_offset % seg;
            let now = std::fs::read(segment_path(dir.path(), seg_start)).unwrap();
            assert!(now == flipped, "{what}: segment changed");
            let (got, damaged) = read_hard(&store);
            let want: Vec<usize> = (0..300).filter(|i| *i != 150).collect();
            assert_eq!(got, want, "{what}");
            assert_eq!(damaged.len(), 1, "{what}");
            assert_eq!(damaged[0].queue_offset, 150);
            assert_eq!(damaged[0].physical_offset, victim.physical_offset);
            assert_eq!(store.damaged_records(), 1, "{what}: counted once");
            // The store goes on; a later crash does not walk the damage again.
            let mut store = store;
            store
                .append(&[AppendMessage::for_test("Hard", b"msg-300")])
                .unwrap();
            drop(store);
            let store = Store::open(config(dir.path()), logger()).unwrap();
            assert!(store.recovery_report().damaged.is_empty(), "{what}");
            assert_eq!(store.recovery_report().scanned_records, 1, "{what}");
            let (got, damaged) = read_hard(&store);
            assert_eq!((got.len(), damaged.len()), (300, 1), "{what}");
        }
    }
}

/// After a clean stop, a flipped byte: reads serve the records around it,
/// report it with its queue offset and move past it; a read of only the bad
/// record answers `NoMatchedMessage` past it; lookup by offset refuses it.
#[test]
fn hardening_flipped_byte_after_clean_stop() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, at) = filled_and_flushed(dir.path(), 120);
    store.shutdown().unwrap();
    drop(store);
    let victim = at[60];
    flip(dir.path(), victim.physical_offset + 130, 16 * 1024);
    let store = Store::open(config(dir.path()), logger()).unwrap();
    assert_eq!(store.recovery_report().kind, OpenKind::Clean);
    let (got, damaged) = read_hard(&store);
    assert_eq!(got, (0..120).filter(|i| *i != 60).collect::<Vec<_>>());
    assert_eq!(damaged.len(), 1);
    assert_eq!(damaged[0].queue_offset, 60);
    assert!(damaged[0].reason.contains("CRC"), "{}", damaged[0].reason);
    // A read from the bad record answers the next good one.
    let r = store
        .read_filtered("Hard", 0, 60, 1, 1 << 20, None, UNFILTERED)
        .unwrap();
    assert_eq!(
        (r.status, r.count, r.next_queue_offset),
        (ReadStatus::Found, 1, 62)
    );
    assert_eq!(r.damaged.len(), 1);
    let r = store
        .read_filtered("Hard", 0, 58, 4, 1 << 20, None, UNFILTERED)
        .unwrap();
    assert_eq!(
        (r.status, r.count, r.next_queue_offset),
        (ReadStatus::Found, 4, 63)
    );
    assert!(matches!(
        store.read_at(victim.physical_offset, victim.size),
        Err(StoreError::NoRecord(_))
    ));
    assert!(store.read_at(at[61].physical_offset, 0).is_ok());
    assert_eq!(store.damaged_records(), 1, "counted once over many reads");
    // Only a damaged record left to read: `NoMatchedMessage` past it.
    drop(store);
    flip(dir.path(), at[119].physical_offset + 130, 16 * 1024);
    let store = Store::open(config(dir.path()), logger()).unwrap();
    let r = store
        .read_filtered("Hard", 0, 119, 8, 1 << 20, None, UNFILTERED)
        .unwrap();
    assert_eq!(r.status, ReadStatus::NoMatchedMessage);
    assert_eq!((r.count, r.next_queue_offset), (0, 120));
    assert_eq!(r.damaged[0].queue_offset, 119);
}

/// Recovery after kill -9 starts at the checkpoint and walks only what was
/// written after it (it used to start at the checkpoint's segment start:
/// offset 0 for the first GiB). A new directory says so; a clean stop
/// scans nothing.
#[test]
fn hardening_recovery_scan_bounded_by_checkpoint_interval() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path()), logger()).unwrap();
    assert_eq!(store.recovery_report().kind, OpenKind::NewStore);
    drop(store);
    let (mut store, _) = filled_and_flushed(dir.path(), 40);
    let cp = Checkpoint::load(&dir.path().join("checkpoint"))
        .unwrap()
        .unwrap();
    assert!(
        !cp.commit_log_flushed.is_multiple_of(16 * 1024),
        "checkpoint mid-segment"
    );
    for i in 0..7 {
        let body = format!("after-{i}");
        store
            .append(&[AppendMessage::for_test("Hard", body.as_bytes())])
            .unwrap();
    }
    let end = store.max_physical_offset();
    drop(store);
    let store = Store::open(config(dir.path()), logger()).unwrap();
    let rep = store.recovery_report();
    assert_eq!(rep.kind, OpenKind::Unclean);
    assert_eq!(rep.scanned_from, cp.commit_log_flushed.min(cp.cq_safe));
    assert_eq!(rep.scanned_records, 7, "{rep:?}");
    assert_eq!(rep.scanned_bytes, end - rep.scanned_from);
    assert_eq!(store.max_queue_offset("Hard", 0), Some(47));
    let mut store = store;
    store.shutdown().unwrap();
    drop(store);
    let store = Store::open(config(dir.path()), logger()).unwrap();
    assert_eq!(store.recovery_report().kind, OpenKind::Clean);
    assert_eq!(store.recovery_report().scanned_records, 0);
}

pub(super) use crate::test_log::Captured;

/// Disk full is visible: one WARN when writes start being refused, one
/// INFO when they resume, and the error gives the real ratio and limit.
#[test]
fn hardening_disk_full_logs_and_error_text() {
    let dir = tempfile::tempdir().unwrap();
    let log = Captured::default();
    let usage = FixedDiskUsage::new(0.5);
    let cfg = StoreConfig {
        disk_hard_limit_ratio: 0.85,
        ..config(dir.path())
    };
    let root = Logger::root(log.clone(), slog::o!());
    let mut store = Store::open_with_disk_usage(cfg, root, Box::new(usage.clone())).unwrap();
    usage.set(0.953);
    store.check_disk();
    store.check_disk();
    assert!(log.has(slog::Level::Warning, "writes are now refused"));
    assert_eq!(
        log.count("writes are now refused"),
        1,
        "once, not per check"
    );
    let err = store
        .append(&[AppendMessage::for_test("T", b"x")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("95.3%") && err.contains("85.0%"), "{err}");
    usage.set(0.6);
    store.check_disk();
    assert!(log.has(slog::Level::Info, "writes resume"));
    store.append(&[AppendMessage::for_test("T", b"x")]).unwrap();
}

#[test]
fn a_data_directory_open_in_one_store_is_refused_to_another_until_it_closes() {
    let dir = tempfile::tempdir().unwrap();
    let first = Store::open(config(dir.path()), logger()).unwrap();
    let Err(e) = Store::open(config(dir.path()), logger()) else {
        panic!("a second store opened a data directory in use");
    };
    assert!(matches!(e, StoreError::InUse { .. }), "{e}");
    let text = e.to_string();
    assert!(text.contains("in use by another process"), "{text}");
    assert!(
        text.contains(&format!("pid {}", std::process::id())),
        "{text}"
    );
    drop(first);
    Store::open(config(dir.path()), logger()).expect("reopened once the first closed");
}

/// `drop_topic` (a deleted topic): its queues go, the other topics keep
/// theirs, the name starts again at queue offset 0, and a crash recovery
/// re-dispatching across the deletion, or a rebuild of every queue from
/// the first record, ends in the same state.
#[test]
fn a_dropped_topic_loses_its_queues_at_its_point_of_the_log_across_crash_and_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(50);
    let mut sent = Vec::new();
    let mut store = Store::open(config(dir.path()), logger()).unwrap();
    append_random(&mut store, &mut rng, 60, &mut sent);
    store.flush_tick().unwrap();
    wait_checkpoint(dir.path(), store.max_physical_offset());
    // Past the checkpoint: a crash recovery re-dispatches these and the
    // deletion after them.
    append_random(&mut store, &mut rng, 20, &mut sent);
    let host = "127.0.0.1:10911".parse().unwrap();
    let end = store.max_physical_offset();
    let (queues, after) = store.drop_topic("TopicA", host).unwrap();
    assert_eq!(queues, 2);
    assert!(after > end, "the deletion is a record of the log");
    assert!(!dir.path().join("consumequeue").join("TopicA").exists());
    assert_eq!(store.max_queue_offset("TopicA", 0), None);
    sent.retain(|s| s.topic != "TopicA");
    append_random(&mut store, &mut rng, 40, &mut sent);
    assert!(
        sent.iter()
            .any(|s| s.topic == "TopicA" && s.at.queue_offset == 0),
        "the name starts again at queue offset 0"
    );
    check(&store, &sent);
    assert_eq!(store.drop_topic("NoSuchTopic", host).unwrap().0, 0);
    let forged = AppendMessage::for_test(TOPIC_DELETED, b"TopicB");
    assert!(matches!(
        store.append(&[forged]),
        Err(StoreError::BadMessage(_))
    ));
    drop(store); // a crash
    let store = Store::open(config(dir.path()), logger()).unwrap();
    assert_eq!(store.recovery_report().kind, OpenKind::Unclean);
    check(&store, &sent);
    drop(store);
    std::fs::remove_dir_all(dir.path().join("consumequeue")).unwrap();
    let store = Store::open(config(dir.path()), logger()).unwrap();
    check(&store, &sent);
}

/// Every topic deleted (as `DeleteTopic` does, through `drop_topic`), then
/// a clean stop: the next open trusts the checkpoint — no queue left is
/// what it describes — and scans nothing (it used to take the empty queue
/// directory for a lost one and rescan the whole log at every start). A
/// crash still scans as before, and topics created again are recovered
/// after a clean stop and after a crash.
#[test]
fn a_clean_start_after_every_topic_was_deleted_does_not_rescan_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(60);
    let host = "127.0.0.1:10911".parse().unwrap();
    let mut store = Store::open(config(dir.path()), logger()).unwrap();
    append_random(&mut store, &mut rng, 60, &mut Vec::new());
    assert!(store.segment_count() > 1);
    for topic in TOPICS {
        assert_eq!(store.drop_topic(topic, host).unwrap().0, 2);
    }
    assert!(store.topics_and_queues().is_empty());
    store.shutdown().unwrap();
    drop(store);

    let store = Store::open(config(dir.path()), logger()).unwrap();
    let rep = store.recovery_report().clone();
    assert_eq!(rep.kind, OpenKind::Clean, "{rep:?}");
    assert_eq!((rep.scanned_records, rep.scanned_bytes), (0, 0), "{rep:?}");
    assert_eq!(rep.valid_end, store.max_physical_offset());
    assert!(store.topics_and_queues().is_empty());
    drop(store); // a crash: nothing vouches for the empty directory
    let mut store = Store::open(config(dir.path()), logger()).unwrap();
    let rep = store.recovery_report().clone();
    assert_eq!(rep.kind, OpenKind::Unclean, "{rep:?}");
    assert_eq!(rep.scanned_from, store.min_physical_offset(), "{rep:?}");
    assert!(rep.scanned_records > 60, "{rep:?}");
    assert!(store.topics_and_queues().is_empty());

    // The topics created again: their messages survive a clean stop ...
    let mut again = Vec::new();
    append_random(&mut store, &mut rng, 20, &mut again);
    store.shutdown().unwrap();
    drop(store);
    let mut store = Store::open(config(dir.path()), logger()).unwrap();
    assert_eq!(store.recovery_report().kind, OpenKind::Clean);
    assert_eq!(store.recovery_report().scanned_records, 0);
    check(&store, &again);
    // ... and a crash, which re-dispatches them from the checkpoint.
    store.flush_tick().unwrap();
    wait_checkpoint(dir.path(), store.max_physical_offset());
    append_random(&mut store, &mut rng, 20, &mut again);
    drop(store);
    let store = Store::open(config(dir.path()), logger()).unwrap();
    let rep = store.recovery_report();
    assert_eq!(rep.kind, OpenKind::Unclean, "{rep:?}");
    assert!(rep.scanned_from > store.min_physical_offset(), "{rep:?}");
    check(&store, &again);
}
