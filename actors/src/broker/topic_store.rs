//! The broker's topic table on disk: a snapshot (`topics.json`) plus an
//! append-only change log (`topics.log`), so creating or deleting a topic
//! costs one small append and one fsync, whatever the number of topics.
//!
//! * `topics.json` is the JSON array of every [`TopicConfig`] the broker
//!   wrote before this log existed, and what compaction writes now: data
//!   from older versions loads as it is (the migration is "start a log").
//! * `topics.log` holds one line per change since the snapshot:
//!   `<crc32 of the JSON, 8 hex digits> <JSON>\n`, the JSON being
//!   `{"put":{..config..}}` or `{"delete":"name"}`.
//! * Loading reads the snapshot, then replays the log in order. A last line
//!   without its newline is a torn append (never acknowledged): it is cut
//!   off. A complete line whose CRC or JSON is wrong is skipped, and every
//!   later line still applies; the log as found is kept aside
//!   (`topics.log.corrupt-<ms>`), the log is rewritten without the bad
//!   lines, and the broker restores every topic that has ConsumeQueues in
//!   the store but no config any more ([`TopicStore::restore_missing`],
//!   with its queue count and default permissions), each with a WARN.
//! * Compaction, once the log has as many entries as there are topics (and
//!   at least [`COMPACT_MIN_ENTRIES`]), writes a new snapshot atomically
//!   ([`crate::persist::write_atomic`]) and then empties the log. A crash in
//!   between replays entries the snapshot already holds, which changes
//!   nothing: every entry is a whole config or a delete. The compaction
//!   threshold grows with the table, so its cost stays O(1) per change on
//!   average.
//!
//! Plain Rust and blocking I/O: the [`Broker`](super::Broker) decides on
//! which thread the fsyncs run ([`TopicStore::sync_handle`]).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use skylark_codec::TopicConfig;
use slog::{info, warn, Logger};

use crate::persist;

/// Topics whose queues the broker itself keeps (no config of their own).
pub const INTERNAL_TOPICS: [&str; 5] = [
    skylark_codec::AUTO_CREATE_TOPIC_KEY,
    skylark_codec::SCHEDULE_TOPIC,
    skylark_codec::TIMER_TOPIC,
    skylark_codec::HALF_TOPIC,
    skylark_codec::OP_TOPIC,
];

/// Compaction never runs for fewer log entries than this.
pub const COMPACT_MIN_ENTRIES: usize = 1024;

/// One change in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Entry {
    Put(TopicConfig),
    Delete(String),
}

/// The topic table's files.
pub struct TopicStore {
    snapshot_path: PathBuf,
    log_path: PathBuf,
    log: File,
    entries: usize,
    /// Complete lines that failed their check at open (set aside).
    lost_lines: usize,
    logger: Logger,
}

/// What replaying the log found.
struct Replay {
    applied: usize,
    /// Length of the log up to its last complete line.
    good_len: u64,
    /// 1-based numbers of the complete lines that failed their check.
    bad_lines: Vec<usize>,
    /// The good complete lines, as they were.
    kept: Vec<u8>,
}

/// Every topic, by name.
pub type Topics = BTreeMap<String, TopicConfig>;

impl TopicStore {
    /// Opens (creating if needed) the table in `dir` and loads every topic.
    pub fn open(dir: &Path, log: &Logger) -> io::Result<(TopicStore, Topics)> {
        fs::create_dir_all(dir)?;
        let snapshot_path = dir.join("topics.json");
        let log_path = dir.join("topics.log");
        let list: Vec<TopicConfig> = persist::read_json(&snapshot_path)?.unwrap_or_default();
        let mut topics: Topics = list.into_iter().map(|t| (t.name.clone(), t)).collect();
        let r = replay(&log_path, &mut topics)?;
        let mut good_len = r.good_len;
        if !r.bad_lines.is_empty() {
            let aside = set_aside(&log_path, &r.kept)?;
            good_len = r.kept.len() as u64;
            warn!(log, "TOPIC LOG LINES CORRUPT: skipped, the log as found kept aside and rewritten without them; topics with stored queues but no config are restored";
                "path" => %log_path.display(), "kept_at" => %aside.display(),
                "lines" => format!("{:?}", r.bad_lines));
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        if file.metadata()?.len() != good_len {
            warn!(log, "topic log ends with a torn entry: cut off"; "path" => %log_path.display(),
                "at" => good_len);
            file.set_len(good_len)?;
            file.sync_all()?;
        }
        if r.applied > 0 {
            info!(log, "topic log replayed"; "entries" => r.applied, "topics" => topics.len());
        }
        let store = TopicStore {
            snapshot_path,
            log_path,
            log: file,
            entries: r.applied,
            lost_lines: r.bad_lines.len(),
            logger: log.clone(),
        };
        Ok((store, topics))
    }

    /// Complete lines of the log that failed their check at open: their
    /// changes are lost, see [`Self::restore_missing`].
    pub fn lost_lines(&self) -> usize {
        self.lost_lines
    }

    /// After lines of the log were lost (see the module doc): adds a
    /// config (default permissions, `stored[name]` queues) for every topic
    /// of `stored` (topic → queue count in the store) that `topics` lacks,
    /// but internal topics, and makes it durable. Answers the names.
    pub fn restore_missing(
        &mut self,
        topics: &mut Topics,
        stored: BTreeMap<String, u32>,
    ) -> io::Result<Vec<String>> {
        let mut restored = Vec::new();
        for (name, queues) in stored {
            if topics.contains_key(&name)
                || INTERNAL_TOPICS.contains(&name.as_str())
                || skylark_codec::validate_topic_name(&name).is_err()
                || !(1..=1024).contains(&queues)
            {
                continue;
            }
            let cfg = TopicConfig::new(name.clone(), queues);
            self.put(&cfg)?;
            warn!(self.logger, "topic restored from its stored queues (its config was in a corrupt topic log line): default permissions";
                "topic" => &name, "queues" => queues);
            topics.insert(name.clone(), cfg);
            restored.push(name);
        }
        if !restored.is_empty() {
            self.log.sync_data()?;
        }
        Ok(restored)
    }

    /// Appends a put of `cfg` (not yet fsynced: see [`Self::sync_handle`]).
    pub fn put(&mut self, cfg: &TopicConfig) -> io::Result<()> {
        self.append(&Entry::Put(cfg.clone()))
    }

    /// Appends a delete of `name` (not yet fsynced).
    pub fn delete(&mut self, name: &str) -> io::Result<()> {
        self.append(&Entry::Delete(name.to_string()))
    }

    fn append(&mut self, e: &Entry) -> io::Result<()> {
        let json = serde_json::to_vec(e).map_err(io::Error::other)?;
        let mut line = format!("{:08x} ", crc32fast::hash(&json)).into_bytes();
        line.extend_from_slice(&json);
        line.push(b'\n');
        // One write: an append-mode write of a few hundred bytes either
        // lands whole or, on a crash, leaves a torn last line.
        self.log.write_all(&line)?;
        self.entries += 1;
        Ok(())
    }

    /// A handle whose `sync_data` makes every append so far durable; it may
    /// be used on another thread.
    pub fn sync_handle(&self) -> io::Result<File> {
        self.log.try_clone()
    }

    /// Whether the log is long enough to be folded into the snapshot.
    pub fn wants_compaction(&self, topics: usize) -> bool {
        self.entries >= COMPACT_MIN_ENTRIES.max(topics)
    }

    /// Writes `topics` as the new snapshot and empties the log. Every
    /// append must be synced first (the snapshot then covers them all).
    pub fn compact(&mut self, topics: &Topics) -> io::Result<()> {
        let list: Vec<&TopicConfig> = topics.values().collect();
        let data = serde_json::to_vec(&list).map_err(io::Error::other)?;
        persist::write_atomic(&self.snapshot_path, &data)?;
        self.log.set_len(0)?;
        self.log.sync_all()?;
        info!(self.logger, "topic log compacted"; "entries" => self.entries,
            "topics" => topics.len(), "snapshot_bytes" => data.len());
        self.entries = 0;
        Ok(())
    }

    /// Entries in the log since the last snapshot.
    pub fn log_entries(&self) -> usize {
        self.entries
    }

    /// The log file's path.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }
}

/// Applies the log at `path` to `topics`.
fn replay(path: &Path, topics: &mut Topics) -> io::Result<Replay> {
    let data = match fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    let mut r = Replay {
        applied: 0,
        good_len: 0,
        bad_lines: Vec::new(),
        kept: Vec::new(),
    };
    let (mut at, mut line_no) = (0usize, 0usize);
    while let Some(nl) = data[at..].iter().position(|&b| b == b'\n') {
        line_no += 1;
        let entry = parse_line(&data[at..at + nl]);
        if entry.is_some() {
            r.applied += 1;
            r.kept.extend_from_slice(&data[at..=at + nl]);
        } else {
            r.bad_lines.push(line_no);
        }
        match entry {
            Some(Entry::Put(cfg)) => {
                topics.insert(cfg.name.clone(), cfg);
            }
            Some(Entry::Delete(name)) => {
                topics.remove(&name);
            }
            None => {}
        }
        at += nl + 1;
    }
    r.good_len = at as u64;
    Ok(r)
}

/// Copies the log as found to `<path>.corrupt-<unix ms>`, then replaces it
/// (atomically) with `kept`; answers where the copy is.
fn set_aside(path: &Path, kept: &[u8]) -> io::Result<PathBuf> {
    let aside = persist::corrupt_copy_path(path);
    fs::copy(path, &aside)?;
    File::open(&aside)?.sync_all()?;
    persist::write_atomic(path, kept)?;
    Ok(aside)
}

fn parse_line(line: &[u8]) -> Option<Entry> {
    if line.len() < 10 || line[8] != b' ' {
        return None;
    }
    let crc = u32::from_str_radix(std::str::from_utf8(&line[..8]).ok()?, 16).ok()?;
    let json = &line[9..];
    if crc32fast::hash(json) != crc {
        return None;
    }
    serde_json::from_slice(json).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logger() -> Logger {
        Logger::root(slog::Discard, slog::o!())
    }

    fn names(t: &Topics) -> Vec<&str> {
        t.keys().map(String::as_str).collect()
    }

    #[test]
    fn puts_and_deletes_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, t) = TopicStore::open(dir.path(), &logger()).unwrap();
        assert!(t.is_empty());
        s.put(&TopicConfig::new("A", 4)).unwrap();
        s.put(&TopicConfig::new("B", 4)).unwrap();
        s.put(&TopicConfig::new("A", 8)).unwrap();
        s.delete("B").unwrap();
        s.sync_handle().unwrap().sync_data().unwrap();
        drop(s);
        let (s, t) = TopicStore::open(dir.path(), &logger()).unwrap();
        assert_eq!(names(&t), ["A"]);
        assert_eq!(t["A"].read_queues, 8);
        assert_eq!(s.log_entries(), 4);
    }

    #[test]
    fn an_old_topics_json_loads_and_the_log_applies_over_it() {
        let dir = tempfile::tempdir().unwrap();
        let old = vec![TopicConfig::new("Old", 2), TopicConfig::new("Gone", 2)];
        persist::write_json(&dir.path().join("topics.json"), &old).unwrap();
        let (mut s, t) = TopicStore::open(dir.path(), &logger()).unwrap();
        assert_eq!(names(&t), ["Gone", "Old"]);
        s.delete("Gone").unwrap();
        s.put(&TopicConfig::new("New", 1)).unwrap();
        drop(s);
        let (_, t) = TopicStore::open(dir.path(), &logger()).unwrap();
        assert_eq!(names(&t), ["New", "Old"]);
    }

    /// Puts topics A, B and C of `queues` queues in a log in `dir`, then
    /// flips a byte inside B's line; answers the log's path and bytes.
    fn log_with_bad_b_line(dir: &Path, queues: u32) -> (PathBuf, Vec<u8>) {
        let (mut s, _) = TopicStore::open(dir, &logger()).unwrap();
        for n in ["A", "B", "C"] {
            s.put(&TopicConfig::new(n, queues)).unwrap();
        }
        let path = s.log_path().to_path_buf();
        drop(s);
        let mut data = fs::read(&path).unwrap();
        let b_line = data.iter().position(|&b| b == b'\n').unwrap() + 20;
        data[b_line] ^= 0x01;
        (path, data)
    }

    #[test]
    fn a_torn_tail_is_cut_and_a_bad_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        // B's line is bad: B is skipped, C still applies.
        let (path, mut data) = log_with_bad_b_line(dir.path(), 1);
        // A torn append after C.
        let torn = b"1234abcd {\"put\":{\"na";
        data.extend_from_slice(torn);
        fs::write(&path, &data).unwrap();
        let (mut s, t) = TopicStore::open(dir.path(), &logger()).unwrap();
        assert_eq!(names(&t), ["A", "C"]);
        // The bad line is set aside with the log as found; the torn tail is cut.
        let lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
        let bad_len = lines[1].len() + 1;
        assert_eq!(
            fs::read(&path).unwrap().len(),
            data.len() - torn.len() - bad_len
        );
        // Appends after the cut are whole lines again.
        s.put(&TopicConfig::new("D", 1)).unwrap();
        drop(s);
        let (_, t) = TopicStore::open(dir.path(), &logger()).unwrap();
        assert_eq!(names(&t), ["A", "C", "D"]);
    }

    /// A bad line hid its topic: the log as found is kept aside, the log
    /// is rewritten without the line, and the topic comes back from its
    /// stored queues (queue count from the store, default permissions);
    /// internal topics and names no topic may have do not.
    #[test]
    fn a_bad_line_is_set_aside_and_a_topic_with_stored_queues_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let (path, data) = log_with_bad_b_line(dir.path(), 2);
        fs::write(&path, &data).unwrap();
        let (mut s, mut t) = TopicStore::open(dir.path(), &logger()).unwrap();
        assert_eq!((names(&t), s.lost_lines()), (vec!["A", "C"], 1));
        let aside: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains("topics.log.corrupt-"))
            .collect();
        assert_eq!(aside.len(), 1);
        assert_eq!(fs::read(&aside[0]).unwrap(), data, "kept as found");
        let stored = BTreeMap::from([
            ("B".to_string(), 3),
            ("C".to_string(), 2),
            (skylark_codec::SCHEDULE_TOPIC.to_string(), 18),
            ("not a topic!".to_string(), 1),
        ]);
        assert_eq!(s.restore_missing(&mut t, stored).unwrap(), ["B"]);
        assert_eq!(t["B"], TopicConfig::new("B", 3));
        drop(s);
        let (s, t) = TopicStore::open(dir.path(), &logger()).unwrap();
        assert_eq!((names(&t), s.lost_lines()), (vec!["A", "B", "C"], 0));
        assert_eq!(t["B"].write_queues, 3);
    }

    #[test]
    fn compaction_folds_the_log_into_the_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, mut t) = TopicStore::open(dir.path(), &logger()).unwrap();
        let mut compactions = 0;
        for i in 0..3000 {
            let cfg = TopicConfig::new(format!("T{i}"), 1);
            s.put(&cfg).unwrap();
            t.insert(cfg.name.clone(), cfg);
            if s.wants_compaction(t.len()) {
                s.compact(&t).unwrap();
                compactions += 1;
            }
        }
        // The log is folded once it is as long as the table (at least
        // 1024 entries): here once, at 1024 topics; while the table only
        // grows the log stays shorter than it, so a replay at open reads
        // at most twice the table.
        assert_eq!(compactions, 1);
        assert_eq!(s.log_entries(), 3000 - 1024);
        assert!(s.log_entries() < t.len());
        drop(s);
        let (_, again) = TopicStore::open(dir.path(), &logger()).unwrap();
        assert_eq!(again, t);
    }

    #[test]
    fn a_crash_between_snapshot_and_log_truncation_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, mut t) = TopicStore::open(dir.path(), &logger()).unwrap();
        for n in ["A", "B"] {
            let cfg = TopicConfig::new(n, 1);
            s.put(&cfg).unwrap();
            t.insert(cfg.name.clone(), cfg);
        }
        s.delete("A").unwrap();
        t.remove("A");
        // The snapshot is written but the log is not emptied.
        let list: Vec<&TopicConfig> = t.values().collect();
        persist::write_json(&dir.path().join("topics.json"), &list).unwrap();
        drop(s);
        let (_, again) = TopicStore::open(dir.path(), &logger()).unwrap();
        assert_eq!(again, t);
    }
}
