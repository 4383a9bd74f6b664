//! Lookups beside the pull path: query by key (through the IndexFile), by
//! time (per queue, binary search on store timestamps) and the
//! [`RecordFilter`] check of a read. Also opens and rebuilds the index at store open.

use bytes::{Bytes, BytesMut};
use slog::{info, Logger};

use super::commit_log::CommitLog;
use super::config::StoreConfig;
use super::consume_queue::CqEntry;
use super::error::Result;
use super::index_file::{IndexService, KeyWindow};
use super::record::{self, PROPERTY_UNIQ_KEY};
use super::{RecordFilter, Store, UNFILTERED};

/// The index keys of a message: each of its space-separated keys, then its
/// unique id.
pub(crate) fn index_keys<'a>(
    keys: Option<&'a str>,
    properties: &'a [(String, String)],
) -> impl Iterator<Item = &'a str> {
    let uniq = properties
        .iter()
        .find(|(k, _)| k == PROPERTY_UNIQ_KEY)
        .map(|(_, v)| v.as_str());
    split_keys(keys).chain(uniq.filter(|u| !u.is_empty()))
}

fn split_keys(keys: Option<&str>) -> impl Iterator<Item = &str> {
    keys.unwrap_or("").split(' ').filter(|k| !k.is_empty())
}

/// Indexes stored record `m` by its keys and unique id (a record read back
/// from the CommitLog: at open, or replicated to a slave).
pub(crate) fn index_record(index: &mut IndexService, m: &record::DecodedMessage<'_>) -> Result<()> {
    let end = m.physical_offset + m.record_size as u64;
    index.index(
        m.topic,
        record_keys(m),
        m.physical_offset,
        end,
        m.store_timestamp,
    )
}

/// The keys [`index_record`] indexes stored record `m` under.
pub(crate) fn record_keys<'a>(m: &record::DecodedMessage<'a>) -> impl Iterator<Item = &'a str> {
    let uniq = m.property(PROPERTY_UNIQ_KEY).filter(|u| !u.is_empty());
    split_keys(m.keys()).chain(uniq)
}

/// Opens the index files and indexes every record of the CommitLog past the
/// index's end (`valid_end`: the recovered end of the log).
pub(crate) fn open_index(
    config: &StoreConfig,
    commit_log: &CommitLog,
    valid_end: u64,
    durable: Option<u64>,
    logger: &Logger,
) -> Result<IndexService> {
    let mut index = IndexService::open(
        config.index_dir(),
        config.index_slots,
        config.index_entries,
        logger,
    )?;
    // After an unclean stop only what the last checkpoint fsynced is
    // trusted: a power cut may have kept newer pages of an index file and
    // lost older ones (issue 19, found by tests/power_loss.rs).
    if let Some(durable) = durable {
        let dropped = index.trim_to_durable(durable)?;
        if dropped > 0 {
            info!(logger, "index entries past the last checkpoint dropped, re-indexing";
                "entries" => dropped, "from" => durable);
        }
    }
    index.cut_past(valid_end);
    let from = index.end_phys_offset().max(commit_log.min_offset());
    if from >= valid_end {
        return Ok(index);
    }
    let mut first_err = None;
    let mut records = 0u64;
    commit_log.scan(from, |m| {
        if first_err.is_some() || m.physical_offset >= valid_end {
            return;
        }
        records += 1;
        if let Err(e) = index_record(&mut index, m) {
            first_err = Some(e);
        }
    });
    if let Some(e) = first_err {
        return Err(e);
    }
    info!(logger, "index rebuilt"; "from" => from, "to" => valid_end, "records" => records);
    Ok(index)
}

impl Store {
    /// Whether `filter` accepts the record of `e` (an unreadable record is
    /// not accepted).
    pub(crate) fn record_accepted<F: RecordFilter + ?Sized>(
        &self,
        e: &CqEntry,
        filter: &F,
    ) -> bool {
        let Some(bytes) = self.commit_log.slice(e.physical_offset, e.size as usize) else {
            return false;
        };
        match record::decode(bytes) {
            Ok((m, _)) => filter.accepts(&m),
            Err(_) => false,
        }
    }

    /// Stored records of `topic` whose keys or unique id equal `key`, stored
    /// within the window, newest first, at most `w.max`; concatenated as a
    /// pull answer carries them.
    pub fn query_by_key(&self, topic: &str, key: &str, w: KeyWindow) -> Result<(Bytes, u32)> {
        let mut buf = BytesMut::new();
        let mut count = 0u32;
        let candidates = KeyWindow {
            max: w.max.saturating_mul(2),
            ..w
        };
        for phys in self.index.lookup(topic, key, candidates) {
            if count as usize >= w.max {
                break;
            }
            if phys < self.commit_log.min_offset() {
                continue;
            }
            // Stale or colliding entries are filtered by the record itself.
            let Ok(rec) = self.read_at(phys, 0) else {
                continue;
            };
            let Ok((m, _)) = record::decode(&rec) else {
                continue;
            };
            let has_key = split_keys(m.keys()).any(|k| k == key)
                || m.property(PROPERTY_UNIQ_KEY) == Some(key);
            if m.topic == topic && has_key && w.holds(m.store_timestamp) {
                buf.extend_from_slice(&rec);
                count += 1;
            }
        }
        Ok((buf.freeze(), count))
    }

    /// For each queue of `topic` (by id): up to `per_queue` records from the
    /// first one stored at or after `millis`; concatenated, at most about
    /// [`QUERY_ANSWER_BYTES`] in all (the answer is one frame): queues past
    /// that are left out.
    pub fn query_by_time(
        &self,
        topic: &str,
        millis: i64,
        per_queue: usize,
    ) -> Result<(Bytes, u32)> {
        self.query_by_time_within(topic, millis, per_queue, QUERY_ANSWER_BYTES)
    }

    fn query_by_time_within(
        &self,
        topic: &str,
        millis: i64,
        per_queue: usize,
        budget: usize,
    ) -> Result<(Bytes, u32)> {
        let mut ids: Vec<u32> = self
            .queues
            .get(topic)
            .map(|q| q.keys().copied().collect())
            .unwrap_or_default();
        ids.sort_unstable();
        let mut buf = BytesMut::new();
        let mut count = 0;
        for id in ids {
            // The budget is shared: a fixed one per queue cut a queue at its
            // first large message (a 4 MiB one after a small one ended the
            // queue's list, silently), and many queues of large messages
            // could pass the frame limit.
            let Some(left) = budget.checked_sub(buf.len()).filter(|&l| l > 0) else {
                break;
            };
            let offset = self.queue_offset_by_time(topic, id, millis);
            let r =
                self.read_filtered(topic, id, offset, per_queue.max(1), left, None, UNFILTERED)?;
            for c in r.records.chunks() {
                buf.extend_from_slice(c);
            }
            count += r.count;
        }
        Ok((buf.freeze(), count))
    }

    /// Number of IndexFiles.
    pub fn index_file_count(&self) -> usize {
        self.index.file_count()
    }
}

/// What a by-time answer holds at most, about: its last queue may add one
/// record past it (a read returns at least one), and with the largest
/// record (4 MiB) that stays well inside a 16 MiB frame.
pub const QUERY_ANSWER_BYTES: usize = 8 << 20;

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::index_file::tests::win;
    use super::super::{AppendMessage, DecodedMessage, FlushMode, ReadStatus, Store, StoreConfig};
    use super::*;

    fn logger() -> Logger {
        Logger::root(slog::Discard, slog::o!())
    }

    fn config(dir: &Path) -> StoreConfig {
        StoreConfig {
            segment_size: 16 * 1024,
            cq_entries_per_file: 64,
            index_slots: 4,
            index_entries: 9,
            flush_mode: FlushMode::Async,
            ..StoreConfig::new(dir)
        }
    }

    /// Appends `n` messages to `topic` queue `i % 2`, keys `key-i common`,
    /// unique id `uniq-i`, tag `A|B|C` and property `a = i`.
    fn append(store: &mut Store, topic: &str, n: usize) {
        for i in 0..n {
            let keys = format!("key-{i} common");
            let tag = ["A", "B", "C"][i % 3];
            let props = vec![
                (PROPERTY_UNIQ_KEY.to_string(), format!("uniq-{i}")),
                ("a".to_string(), i.to_string()),
            ];
            let body = format!("body-{i}");
            let m = AppendMessage {
                queue_id: (i % 2) as u32,
                tags: Some(tag),
                keys: Some(&keys),
                properties: &props,
                born_timestamp: 1,
                ..AppendMessage::for_test(topic, body.as_bytes())
            };
            store.append(&[m]).unwrap();
        }
    }

    fn bodies(records: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < records.len() {
            let (m, n) = record::decode(&records[pos..]).unwrap();
            out.push(String::from_utf8(m.body.to_vec()).unwrap());
            pos += n;
        }
        out
    }

    fn by_key(store: &Store, topic: &str, key: &str) -> Vec<String> {
        let (recs, n) = store
            .query_by_key(topic, key, KeyWindow::any_time(64))
            .unwrap();
        let b = bodies(&recs);
        assert_eq!(b.len(), n as usize);
        b
    }

    #[test]
    fn query_by_key_and_unique_id_across_rolled_index_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(config(dir.path()), logger()).unwrap();
        append(&mut store, "T", 20);
        append(&mut store, "U", 2);
        // 3 entries per message, 8 per file, 4 slots: many files, collisions
        assert!(store.index_file_count() > 5);
        assert_eq!(by_key(&store, "T", "key-7"), vec!["body-7"]);
        assert_eq!(by_key(&store, "T", "uniq-13"), vec!["body-13"]);
        assert_eq!(by_key(&store, "U", "key-1"), vec!["body-1"]);
        assert!(by_key(&store, "T", "key-99").is_empty());
        assert!(by_key(&store, "V", "key-1").is_empty());
        let common = by_key(&store, "T", "common");
        assert_eq!(common.len(), 20);
        assert_eq!(common[0], "body-19", "newest first");
        // a time range before everything finds nothing
        let (_, n) = store.query_by_key("T", "key-7", win(0, 1, 64)).unwrap();
        assert_eq!(n, 0);
        let (_, n) = store
            .query_by_key("T", "common", KeyWindow::any_time(5))
            .unwrap();
        assert_eq!(n, 5);
    }

    /// One batch whose messages carry 0, 1, 2 or 3 index keys: each key
    /// finds its own message, with index files rolling inside the batch,
    /// and so does the index rebuilt after a crash.
    #[test]
    fn one_batch_with_uneven_keys_indexes_each_message_under_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let n = 24;
        let keys: Vec<Option<String>> = (0..n)
            .map(|i| match i % 3 {
                0 => None,
                1 => Some(format!("solo-{i}")),
                _ => Some(format!("a-{i}  b-{i}")),
            })
            .collect();
        let props: Vec<Vec<(String, String)>> = (0..n)
            .map(|i| match i % 2 {
                0 => vec![(PROPERTY_UNIQ_KEY.to_string(), format!("u-{i}"))],
                _ => Vec::new(),
            })
            .collect();
        let bodies_sent: Vec<String> = (0..n).map(|i| format!("body-{i}")).collect();
        let batch: Vec<AppendMessage<'_>> = (0..n)
            .map(|i| AppendMessage {
                keys: keys[i].as_deref(),
                properties: &props[i],
                ..AppendMessage::for_test("T", bodies_sent[i].as_bytes())
            })
            .collect();
        let check = |store: &Store| {
            for i in 0..n {
                let mut own = Vec::new();
                match i % 3 {
                    1 => own.push(format!("solo-{i}")),
                    2 => own.extend([format!("a-{i}"), format!("b-{i}")]),
                    _ => {}
                }
                if i % 2 == 0 {
                    own.push(format!("u-{i}"));
                }
                for key in &own {
                    assert_eq!(by_key(store, "T", key), vec![format!("body-{i}")]);
                    // The index itself holds one entry per key: no message
                    // was indexed under another message's keys.
                    let entries = store.index.lookup("T", key, KeyWindow::any_time(8));
                    assert_eq!(entries.len(), 1, "{key}");
                }
            }
            assert!(by_key(store, "T", "solo-0").is_empty());
        };
        {
            let mut store = Store::open(config(dir.path()), logger()).unwrap();
            store.append(&batch).unwrap();
            // 8 entries per file and 36 entries: the batch rolled files
            assert!(store.index_file_count() >= 5);
            check(&store);
        }
        let store = Store::open(config(dir.path()), logger()).unwrap();
        check(&store);
    }

    #[test]
    fn index_is_rebuilt_after_crash_and_after_loss() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut store = Store::open(config(dir.path()), logger()).unwrap();
            append(&mut store, "T", 10);
            // dropped without shutdown: a crash as far as the files go
        }
        {
            let store = Store::open(config(dir.path()), logger()).unwrap();
            assert_eq!(by_key(&store, "T", "key-3"), vec!["body-3"]);
            assert_eq!(by_key(&store, "T", "common").len(), 10);
        }
        // the whole index directory is lost: rebuilt from the CommitLog
        std::fs::remove_dir_all(dir.path().join("index")).unwrap();
        let mut store = Store::open(config(dir.path()), logger()).unwrap();
        assert_eq!(by_key(&store, "T", "key-9"), vec!["body-9"]);
        assert_eq!(by_key(&store, "T", "common").len(), 10, "no duplicates");
        append(&mut store, "T", 3);
        store.shutdown().unwrap();
        drop(store);
        let store = Store::open(config(dir.path()), logger()).unwrap();
        assert_eq!(by_key(&store, "T", "common").len(), 13);
    }

    /// A crash with a checkpoint in the middle of several index files
    /// (issue 19's index repair keeps what the checkpoint covered).
    #[test]
    fn hardening_index_after_crash_with_checkpoint_between_files() {
        for before in [0, 1, 3, 5, 8, 11] {
            let dir = tempfile::tempdir().unwrap();
            {
                let mut store = Store::open(config(dir.path()), logger()).unwrap();
                append(&mut store, "T", before);
                store.flush_tick().unwrap();
                append(&mut store, "T", 12 - before);
                // dropped without shutdown: a crash as far as the files go
            }
            let store = Store::open(config(dir.path()), logger()).unwrap();
            assert_eq!(
                by_key(&store, "T", "common").len(),
                12,
                "checkpoint after {before} messages"
            );
        }
    }

    #[test]
    fn hash_collisions_are_filtered_by_the_record() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(config(dir.path()), logger()).unwrap();
        append(&mut store, "T", 3);
        // Forge an entry whose hash is that of "ghost" pointing at a record
        // that does not carry it: the lookup finds it, the query drops it.
        let phys = store.queue("T", 0).unwrap().get(0).unwrap().physical_offset;
        store
            .index
            .index(
                "T",
                ["ghost"].into_iter(),
                phys,
                phys + 1,
                super::super::now_millis(),
            )
            .unwrap();
        assert_eq!(
            store.index.lookup("T", "ghost", KeyWindow::any_time(8)),
            vec![phys]
        );
        assert!(by_key(&store, "T", "ghost").is_empty());
    }

    #[test]
    fn filtered_read_skips_records_the_filter_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(config(dir.path()), logger()).unwrap();
        append(&mut store, "T", 30);
        let a = |m: &DecodedMessage<'_>| m.property("a").and_then(|v| v.parse::<u32>().ok());
        let a_or_c_from_4 =
            |m: &DecodedMessage<'_>| matches!(m.tags(), Some("A" | "C")) && a(m) >= Some(4);
        let r = store
            .read_filtered("T", 0, 0, 100, 1 << 20, None, Some(&a_or_c_from_4))
            .unwrap();
        // queue 0 holds the even i; of those A (i%3==0) or C (i%3==2), i >= 4
        let want: Vec<String> = (4..30)
            .filter(|i| i % 2 == 0 && i % 3 != 1)
            .map(|i| format!("body-{i}"))
            .collect();
        assert_eq!(bodies(&r.records.to_bytes()), want);
        assert_eq!((r.status, r.next_queue_offset), (ReadStatus::Found, 15));
        let none = |m: &DecodedMessage<'_>| a(m) > Some(1000);
        let r = store
            .read_filtered("T", 0, 0, 100, 1 << 20, None, Some(&none))
            .unwrap();
        assert_eq!(
            (r.status, r.count, r.next_queue_offset),
            (ReadStatus::NoMatchedMessage, 0, 15)
        );
    }

    #[test]
    fn query_by_time_gives_each_queue_from_the_first_at_or_after() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(config(dir.path()), logger()).unwrap();
        append(&mut store, "T", 4);
        let (recs, n) = store.query_by_time("T", 0, 1).unwrap();
        assert_eq!(
            (bodies(&recs), n),
            (vec!["body-0".into(), "body-1".into()], 2)
        );
        let (recs, n) = store.query_by_time("T", 0, 10).unwrap();
        assert_eq!(n, 4);
        assert_eq!(bodies(&recs), vec!["body-0", "body-2", "body-1", "body-3"]);
        let (_, n) = store.query_by_time("T", i64::MAX / 2, 10).unwrap();
        assert_eq!(n, 0);
        let (_, n) = store.query_by_time("Nope", 0, 10).unwrap();
        assert_eq!(n, 0);
        // The budget is the whole answer's: once it is spent, the queues
        // after are left out (each record here is over 100 bytes: queue 0
        // gives its first, and nothing is left for queue 1).
        let (recs, n) = store.query_by_time_within("T", 0, 10, 100).unwrap();
        assert_eq!((bodies(&recs), n), (vec!["body-0".into()], 1));
    }

    /// A 4 MiB message after a small one ended its queue's list: each queue
    /// had a fixed 4 MiB budget, and the messages after it were left out.
    #[test]
    fn query_by_time_lists_the_messages_after_a_large_one() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = StoreConfig {
            segment_size: 16 << 20,
            ..config(dir.path())
        };
        let mut store = Store::open(cfg, logger()).unwrap();
        let big = vec![b'x'; 4 << 20];
        for body in [&b"small-0"[..], &big, b"small-2"] {
            store.append(&[AppendMessage::for_test("T", body)]).unwrap();
        }
        let (recs, n) = store.query_by_time("T", 0, 5).unwrap();
        assert_eq!(n, 3);
        let b = bodies(&recs);
        assert_eq!((b[0].as_str(), b[2].as_str()), ("small-0", "small-2"));
    }
}
