//! Faults on the data directory: a file that cannot be created while a
//! batch is appended, ConsumeQueue files lost, with extra bytes or left as
//! empty directories. Each test fails without the repair it names.

use std::path::{Path, PathBuf};

use super::tests::{config, logger, Captured};
use super::*;

fn keyed<'a>(topic: &'a str, body: &'a [u8]) -> AppendMessage<'a> {
    AppendMessage {
        keys: Some("a b c"),
        ..AppendMessage::for_test(topic, body)
    }
}

/// Every body of `topic`/0 from its min offset, in order.
fn bodies(store: &Store, topic: &str) -> Vec<Vec<u8>> {
    let min = store.min_queue_offset(topic, 0).unwrap_or(0);
    let r = store
        .read_filtered(topic, 0, min, 10_000, 1 << 30, None, UNFILTERED)
        .unwrap();
    let bytes = r.records.to_bytes();
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let (m, n) = decode(&bytes[at..]).unwrap();
        out.push(m.body.to_vec());
        at += n;
    }
    out
}

fn queue_dir(dir: &Path, topic: &str) -> PathBuf {
    dir.join("consumequeue").join(topic).join("0")
}

/// Puts a regular file where the directory `path` is (moved to `aside`):
/// creating a file in it fails (ENOTDIR), as it would on a read-only or
/// full file system, whatever the test's user may do.
fn block_dir(path: &Path, aside: &Path) {
    std::fs::rename(path, aside).unwrap();
    std::fs::write(path, b"in the way").unwrap();
}

fn unblock_dir(path: &Path, aside: &Path) {
    std::fs::remove_file(path).unwrap();
    std::fs::rename(aside, path).unwrap();
}

/// A send refused because the next IndexFile could not be created stored
/// nothing (it was committed before, so every retry added a copy); the
/// error names the file; the retry after the fault stores one copy, also
/// as a full recovery scan of the CommitLog sees it.
#[test]
fn a_send_refused_for_an_index_file_it_cannot_create_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        index_slots: 4,
        index_entries: 4, // 3 entries a file: one message of 3 keys fills it
        ..config(dir.path())
    };
    let mut store = Store::open(cfg.clone(), logger()).unwrap();
    store.append(&[keyed("TopicA", b"first")]).unwrap();
    let (end, max) = (
        store.max_physical_offset(),
        store.max_queue_offset("TopicA", 0),
    );
    let (idx, aside) = (dir.path().join("index"), dir.path().join("index.aside"));
    block_dir(&idx, &aside);
    let err = store
        .append(&[keyed("TopicA", b"retried")])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&idx.display().to_string()),
        "names the file: {err}"
    );
    assert_eq!(store.max_physical_offset(), end, "nothing written");
    assert_eq!(store.max_queue_offset("TopicA", 0), max);
    assert_eq!(bodies(&store, "TopicA"), [b"first".to_vec()]);
    unblock_dir(&idx, &aside);
    store.append(&[keyed("TopicA", b"retried")]).unwrap();
    store.flush_blocking().unwrap();
    drop(store);
    // No checkpoint: the whole CommitLog is scanned and re-dispatched.
    std::fs::remove_file(dir.path().join("checkpoint")).unwrap();
    let store = Store::open(cfg, logger()).unwrap();
    assert_eq!(
        bodies(&store, "TopicA"),
        [b"first".to_vec(), b"retried".to_vec()]
    );
}

/// A batch whose second message needs a ConsumeQueue file that cannot be
/// created stores neither message: the first is not stored either.
#[test]
fn a_batch_refused_for_a_consume_queue_file_stores_none_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(config(dir.path()), logger()).unwrap();
    store.append(&[keyed("TopicA", b"first")]).unwrap();
    let end = store.max_physical_offset();
    let blocked = dir.path().join("consumequeue").join("TopicZ");
    std::fs::write(&blocked, b"in the way").unwrap();
    let batch = [keyed("TopicA", b"second"), keyed("TopicZ", b"new queue")];
    let err = store.append(&batch).unwrap_err().to_string();
    assert!(err.contains("TopicZ"), "names the directory: {err}");
    assert_eq!(store.max_physical_offset(), end);
    assert_eq!(store.max_queue_offset("TopicA", 0), Some(1));
    std::fs::remove_file(&blocked).unwrap();
    store.append(&batch).unwrap();
    assert_eq!(
        bodies(&store, "TopicA"),
        [b"first".to_vec(), b"second".to_vec()]
    );
    assert_eq!(bodies(&store, "TopicZ"), [b"new queue".to_vec()]);
}

/// Appends `n` messages of 200 bytes to `topic`/0, body `<topic> <i>`.
fn fill(store: &mut Store, topic: &str, from: usize, n: usize) {
    for i in from..from + n {
        let mut body = format!("{topic} {i} ").into_bytes();
        body.resize(200, b'.');
        store
            .append(&[AppendMessage::for_test(topic, &body)])
            .unwrap();
    }
}

fn first_cq_file(dir: &Path, topic: &str) -> PathBuf {
    mapped_file::list_files(&queue_dir(dir, topic)).unwrap()[0]
        .1
        .clone()
}

/// The first ConsumeQueue file deleted: its messages are rebuilt from the
/// CommitLog (they were silently hidden: the queue started at 64).
#[test]
fn a_lost_first_consume_queue_file_is_rebuilt_from_the_commit_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(config(dir.path()), logger()).unwrap();
    fill(&mut store, "TopicA", 0, 74); // files of 64 entries: 2 files
    let want = bodies(&store, "TopicA");
    store.shutdown().unwrap();
    drop(store);
    let lost = first_cq_file(dir.path(), "TopicA");
    std::fs::remove_file(&lost).unwrap();
    let log = Captured::default();
    let store = Store::open(config(dir.path()), Logger::root(log.clone(), slog::o!())).unwrap();
    assert_eq!(store.min_queue_offset("TopicA", 0), Some(0));
    assert_eq!(bodies(&store, "TopicA"), want);
    assert!(
        log.has(slog::Level::Warning, "rebuilt from the commit log"),
        "{:?}",
        log.0.lock().unwrap()
    );
    assert!(log.has(
        slog::Level::Warning,
        &format!("missing_file={}", lost.display())
    ));
}

/// The first ConsumeQueue file deleted after the CommitLog segments of its
/// records were retained away: nothing to rebuild, and a WARN names the
/// queue, the file and the offset the queue is served from.
#[test]
fn a_lost_first_consume_queue_file_the_log_no_longer_holds_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(config(dir.path()), logger()).unwrap();
    fill(&mut store, "TopicA", 0, 64); // one full file, in segments 0 and 1
    fill(&mut store, "TopicB", 0, 200); // about 4 segments
    fill(&mut store, "TopicA", 64, 10);
    store.shutdown().unwrap();
    let segments = store.segment_paths();
    drop(store);
    // Retention of segments 0 and 1, as if the queue's file were kept.
    for seg in &segments[..2] {
        std::fs::remove_file(seg).unwrap();
    }
    let lost = first_cq_file(dir.path(), "TopicA");
    std::fs::remove_file(&lost).unwrap();
    let log = Captured::default();
    let store = Store::open(config(dir.path()), Logger::root(log.clone(), slog::o!())).unwrap();
    assert_eq!(store.min_queue_offset("TopicA", 0), Some(64));
    assert_eq!(bodies(&store, "TopicA").len(), 10);
    let warned = |text: &str| log.has(slog::Level::Warning, text);
    assert!(
        warned("LOST ITS FIRST FILE(S)")
            && warned("topic=TopicA")
            && warned("served_from=64")
            && warned(&format!("missing_file={}", lost.display())),
        "{:?}",
        log.0.lock().unwrap()
    );
}

/// After a lost first ConsumeQueue file was reported (nothing left in the
/// log) or rebuilt in part (the log held only its later records), the next
/// clean start neither warns nor rescans the CommitLog: the queue's new
/// start is recorded in it (every start repeated both until retention
/// passed the queue's first record; a part-rebuilt queue was rescanned once
/// and its lost offsets came back as damaged placeholders). Retention
/// passing the recorded start removes the record.
#[test]
fn a_lost_first_consume_queue_file_is_reported_once() {
    // (messages before the loss, segments retained away, served from)
    for (n, retained, from) in [(64, 2, 64), (120, 1, 51)] {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(config(dir.path()), logger()).unwrap();
        fill(&mut store, "TopicA", 0, n);
        fill(&mut store, "TopicB", 0, 200);
        fill(&mut store, "TopicA", n, 10);
        store.shutdown().unwrap();
        let segments = store.segment_paths();
        drop(store);
        for seg in &segments[..retained] {
            std::fs::remove_file(seg).unwrap();
        }
        std::fs::remove_file(first_cq_file(dir.path(), "TopicA")).unwrap();
        let mut store = Store::open(config(dir.path()), logger()).unwrap();
        assert_eq!(store.recovery_report().kind, OpenKind::Unclean);
        let want = bodies(&store, "TopicA");
        assert_eq!(want.len(), n + 10 - from as usize);
        store.shutdown().unwrap();
        drop(store);
        let log = Captured::default();
        let mut store =
            Store::open(config(dir.path()), Logger::root(log.clone(), slog::o!())).unwrap();
        let said = log.0.lock().unwrap().clone();
        assert_eq!(store.recovery_report().kind, OpenKind::Clean, "{said:?}");
        assert!(
            said.iter().all(|(l, _)| *l > slog::Level::Warning),
            "{said:?}"
        );
        assert_eq!(store.min_queue_offset("TopicA", 0), Some(from));
        assert_eq!(bodies(&store, "TopicA"), want);
        let recorded = queue_dir(dir.path(), "TopicA").join(consume_queue::MIN_OFFSET_FILE);
        assert!(recorded.exists());
        // Retention passes every TopicA record: the record goes with the
        // file holding it (the last file of a queue is kept, and so is
        // the record of a start in it), and the queue starts clean.
        fill(&mut store, "TopicB", 200, 400);
        let far = SystemTime::now() + Duration::from_secs(1000 * 3600);
        let hour = store.config().delete_when_hour;
        store.clean_expired_files_at(far, hour).unwrap();
        assert_eq!(store.min_queue_offset("TopicA", 0), Some(n as u64 + 10));
        assert_eq!(recorded.exists(), from == 64, "served from {from}");
        store.shutdown().unwrap();
        drop(store);
        let log = Captured::default();
        let store = Store::open(config(dir.path()), Logger::root(log.clone(), slog::o!())).unwrap();
        assert_eq!(store.recovery_report().kind, OpenKind::Clean);
        assert_eq!(store.min_queue_offset("TopicA", 0), Some(n as u64 + 10));
        assert_eq!(log.count("consume queue"), 0);
    }
}

/// Extra bytes at the end of a ConsumeQueue file (a partial entry) are no
/// longer refused at startup as a configuration error: the file is set
/// aside, never deleted, and rebuilt from the CommitLog. Files all of
/// another `cq_entries_per_file` are still refused, saying so.
#[test]
fn a_consume_queue_file_with_extra_bytes_is_set_aside_and_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(config(dir.path()), logger()).unwrap();
    fill(&mut store, "TopicA", 0, 10);
    let want = bodies(&store, "TopicA");
    store.shutdown().unwrap();
    drop(store);
    let file = first_cq_file(dir.path(), "TopicA");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes.extend_from_slice(&[7; 7]);
    std::fs::write(&file, &bytes).unwrap();
    let log = Captured::default();
    let mut store = Store::open(config(dir.path()), Logger::root(log.clone(), slog::o!())).unwrap();
    assert_eq!(bodies(&store, "TopicA"), want);
    let aside: Vec<PathBuf> = std::fs::read_dir(queue_dir(dir.path(), "TopicA"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "set aside, not deleted");
    assert_eq!(std::fs::read(&aside[0]).unwrap(), bytes);
    assert!(log.has(
        slog::Level::Warning,
        &format!("file={}", aside[0].display())
    ));
    store.shutdown().unwrap();
    drop(store);
    let store = Store::open(config(dir.path()), logger()).unwrap();
    assert_eq!(store.recovery_report().kind, OpenKind::Clean);
    drop(store);
    let other = StoreConfig {
        cq_entries_per_file: 32,
        ..config(dir.path())
    };
    let err = Store::open(other, logger()).err().unwrap().to_string();
    assert!(err.contains("cq_entries_per_file is 32"), "{err}");
}

/// An empty ConsumeQueue directory (left when a topic's first file could
/// not be created) no longer makes every start unclean.
#[test]
fn an_empty_consume_queue_directory_is_harmless() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(config(dir.path()), logger()).unwrap();
    fill(&mut store, "TopicA", 0, 5);
    store.shutdown().unwrap();
    drop(store);
    let empty = [
        dir.path().join("consumequeue").join("Ghost").join("0"),
        dir.path().join("consumequeue").join("TopicA").join("7"),
    ];
    for d in &empty {
        std::fs::create_dir_all(d).unwrap();
    }
    for _ in 0..2 {
        let mut store = Store::open(config(dir.path()), logger()).unwrap();
        assert_eq!(store.recovery_report().kind, OpenKind::Clean);
        assert_eq!(bodies(&store, "TopicA").len(), 5);
        assert_eq!(store.topics_and_queues().len(), 1);
        store.shutdown().unwrap();
    }
    assert!(empty.iter().all(|d| !d.exists()));
}

/// The slave's side of replication: the master's next chunk from the
/// slave's end (empty when it has everything).
fn next_chunk(master: &Store, slave: &Store) -> (u64, bytes::Bytes) {
    let from = slave.max_physical_offset();
    (from, master.read_commit_log(from, 1 << 20).unwrap())
}

/// A replicated chunk whose records need a ConsumeQueue file, or an
/// IndexFile, the slave cannot create is refused with nothing written (it
/// was written and left undispatched: the slave's end moved past records
/// none of its queues served, and the retry was refused as a gap); the
/// same chunk fetched again after the fault is applied once.
#[test]
fn a_replicated_chunk_refused_for_a_file_it_cannot_create_writes_nothing() {
    let (md, sd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let cfg = |dir: &Path| StoreConfig {
        index_slots: 4,
        index_entries: 4, // 3 entries a file: one message of 3 keys fills it
        ..config(dir)
    };
    let mut master = Store::open(cfg(md.path()), logger()).unwrap();
    let mut slave = Store::open(cfg(sd.path()), logger()).unwrap();
    master.append(&[keyed("TopicA", b"first")]).unwrap();
    let (from, chunk) = next_chunk(&master, &slave);
    slave.append_replicated(from, &chunk).unwrap();
    // A new queue whose directory cannot be created on the slave.
    master
        .append(&[AppendMessage::for_test("TopicZ", b"z")])
        .unwrap();
    let blocked = sd.path().join("consumequeue").join("TopicZ");
    std::fs::write(&blocked, b"in the way").unwrap();
    let (from, chunk) = next_chunk(&master, &slave);
    let err = slave
        .append_replicated(from, &chunk)
        .unwrap_err()
        .to_string();
    assert!(err.contains("TopicZ"), "names the directory: {err}");
    assert_eq!(slave.max_physical_offset(), from, "nothing written");
    std::fs::remove_file(&blocked).unwrap();
    slave.append_replicated(from, &chunk).unwrap();
    assert_eq!(bodies(&slave, "TopicZ"), [b"z".to_vec()]);
    // A record whose keys need an IndexFile the slave cannot create.
    master.append(&[keyed("TopicA", b"second")]).unwrap();
    let (idx, aside) = (sd.path().join("index"), sd.path().join("index.aside"));
    block_dir(&idx, &aside);
    let (from, chunk) = next_chunk(&master, &slave);
    let err = slave
        .append_replicated(from, &chunk)
        .unwrap_err()
        .to_string();
    assert!(err.contains(&idx.display().to_string()), "{err}");
    assert_eq!(slave.max_physical_offset(), from, "nothing written");
    unblock_dir(&idx, &aside);
    slave.append_replicated(from, &chunk).unwrap();
    assert_eq!(slave.max_physical_offset(), master.max_physical_offset());
    assert_eq!(bodies(&slave, "TopicA"), bodies(&master, "TopicA"));
    let window = KeyWindow::any_time(8);
    assert_eq!(slave.query_by_key("TopicA", "b", window).unwrap().1, 2);
}
