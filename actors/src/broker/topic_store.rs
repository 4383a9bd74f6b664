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
//!   off. A complete line whose CRC or JSON is wrong is skipped with a
//!   warning, and every later line still applies.
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
    logger: Logger,
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
        let (entries, good_len, skipped) = replay(&log_path, &mut topics)?;
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
        if skipped > 0 {
            warn!(log, "topic log entries failed their check and were skipped";
                "path" => %log_path.display(), "skipped" => skipped);
        }
        if entries > 0 {
            info!(log, "topic log replayed"; "entries" => entries, "topics" => topics.len());
        }
        let store = TopicStore {
            snapshot_path,
            log_path,
            log: file,
            entries,
            logger: log.clone(),
        };
        Ok((store, topics))
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

/// Applies the log at `path` to `topics`; answers (entries applied, length
/// of the log up to its last complete line, complete lines skipped).
fn replay(path: &Path, topics: &mut Topics) -> io::Result<(usize, u64, usize)> {
    let data = match fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((0, 0, 0)),
        Err(e) => return Err(e),
    };
    let (mut applied, mut skipped, mut at) = (0, 0, 0usize);
    while let Some(nl) = data[at..].iter().position(|&b| b == b'\n') {
        let line = &data[at..at + nl];
        at += nl + 1;
        match parse_line(line) {
            Some(Entry::Put(cfg)) => {
                topics.insert(cfg.name.clone(), cfg);
                applied += 1;
            }
            Some(Entry::Delete(name)) => {
                topics.remove(&name);
                applied += 1;
            }
            None => skipped += 1,
        }
    }
    Ok((applied, at as u64, skipped))
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

    #[test]
    fn a_torn_tail_is_cut_and_a_bad_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = TopicStore::open(dir.path(), &logger()).unwrap();
        for n in ["A", "B", "C"] {
            s.put(&TopicConfig::new(n, 1)).unwrap();
        }
        let path = s.log_path().to_path_buf();
        drop(s);
        let mut data = fs::read(&path).unwrap();
        // Flip a byte inside B's line: B is skipped, C still applies.
        let b_line = data.iter().position(|&b| b == b'\n').unwrap() + 20;
        data[b_line] ^= 0x01;
        // A torn append after C.
        let torn = b"1234abcd {\"put\":{\"na";
        data.extend_from_slice(torn);
        fs::write(&path, &data).unwrap();
        let (mut s, t) = TopicStore::open(dir.path(), &logger()).unwrap();
        assert_eq!(names(&t), ["A", "C"]);
        assert_eq!(fs::read(&path).unwrap().len(), data.len() - torn.len());
        // Appends after the cut are whole lines again.
        s.put(&TopicConfig::new("D", 1)).unwrap();
        drop(s);
        let (_, t) = TopicStore::open(dir.path(), &logger()).unwrap();
        assert_eq!(names(&t), ["A", "C", "D"]);
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
