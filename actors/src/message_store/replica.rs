//! Replication at the store level: reading the CommitLog as raw bytes on a
//! master, and appending those bytes at the same physical offsets on a slave.
//!
//! A chunk is a run of whole records inside one segment, starting at a record
//! boundary. If the run meets the segment's end-of-file marker, the chunk
//! carries the marker and the zeroed tail up to the segment end, so the
//! slave's next chunk starts the next segment exactly where the master's
//! did: the slave's segment files end up byte-identical to the master's.
//!
//! The slave validates every record (magic, size, CRC, its own physical
//! offset) before writing anything, then dispatches each record to its
//! ConsumeQueue at the queue offset the master gave it, as recovery does.

use std::collections::HashMap;

use bytes::Bytes;

use super::error::{Result, StoreError};
use super::record::{self, BLANK_MAGIC, MESSAGE_MAGIC};
use super::{queue_factory, recovery, Store};

/// What [`Store::append_replicated`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReplicaAppend {
    /// The CommitLog end after the chunk (what the slave acks).
    pub end_offset: u64,
    /// Every `(topic, queue id, max queue offset)` the chunk touched, to wake
    /// pulls parked on those queues.
    pub touched: Vec<(String, u32, u64)>,
    /// Records dispatched.
    pub records: usize,
    /// Topics whose queues a deletion record of the chunk dropped.
    pub dropped: Vec<String>,
}

fn corrupt(msg: String) -> StoreError {
    StoreError::Corrupt(msg)
}

impl Store {
    /// Master side: up to about `max_bytes` of whole records from `offset`
    /// (a record boundary; the slave's end), never crossing a segment end. At
    /// least one record when one is there; empty at the end of the log.
    pub fn read_commit_log(&self, offset: u64, max_bytes: usize) -> Result<Bytes> {
        let end = self.commit_log.max_offset();
        if offset >= end {
            return Ok(Bytes::new());
        }
        if offset < self.commit_log.min_offset() {
            return Err(StoreError::NoRecord(offset));
        }
        let ss = self.commit_log.segment_size();
        let seg_end = offset - offset % ss + ss;
        let mut pos = offset;
        while pos < end.min(seg_end) {
            let head = self
                .commit_log
                .slice(pos, 8)
                .ok_or(StoreError::NoRecord(pos))?;
            let (size, magic) = record::peek_header(head).ok_or(StoreError::NoRecord(pos))?;
            match magic {
                BLANK_MAGIC if pos + size as u64 == seg_end => {
                    pos = seg_end;
                    break;
                }
                MESSAGE_MAGIC if size > 0 => {
                    if pos > offset && (pos + size as u64 - offset) as usize > max_bytes {
                        break;
                    }
                    pos += size as u64;
                }
                _ => return Err(corrupt(format!("no record boundary at {pos}"))),
            }
        }
        // The marker's zeroed tail is not "written" as far as `slice` goes
        // when the log has not rolled yet; it has when `pos == seg_end`.
        let len = (pos - offset) as usize;
        let bytes = self
            .commit_log
            .slice(offset, len)
            .ok_or(StoreError::NoRecord(offset))?;
        Ok(Bytes::copy_from_slice(bytes))
    }

    /// Slave side: validates `data` (records of the master's CommitLog from
    /// `offset`, which must be this log's end), writes it as-is and
    /// dispatches every record to its ConsumeQueue.
    pub fn append_replicated(&mut self, offset: u64, data: &[u8]) -> Result<ReplicaAppend> {
        if self.shut_down {
            return Err(StoreError::ShutDown);
        }
        let ss = self.commit_log.segment_size();
        let seg_end = offset - offset % ss + ss;
        if offset + data.len() as u64 > seg_end {
            return Err(corrupt(format!(
                "replicated chunk at {offset} of {} bytes crosses a segment end",
                data.len()
            )));
        }
        let mut records = Vec::new();
        let mut at = 0usize;
        while at < data.len() {
            let pos = offset + at as u64;
            let rest = &data[at..];
            match record::peek_header(rest) {
                Some((size, BLANK_MAGIC))
                    if pos + size as u64 == seg_end && rest.len() == size as usize =>
                {
                    at = data.len();
                }
                Some((_, MESSAGE_MAGIC)) => {
                    let (m, n) = record::decode(rest)?;
                    if m.physical_offset != pos {
                        return Err(corrupt(format!(
                            "replicated record at {pos} says it is at {}",
                            m.physical_offset
                        )));
                    }
                    records.push(m);
                    at += n;
                }
                _ => return Err(corrupt(format!("no valid record at {pos}"))),
            }
        }
        self.commit_log.append_raw(offset, data)?;
        let new_queue = queue_factory(&self.config);
        let mut touched: HashMap<(&str, u32), u64> = HashMap::new();
        let mut dropped = Vec::new();
        for m in &records {
            recovery::dispatch(&mut self.queues, &new_queue, m)?;
            // By key and unique id, as the master indexed it: `by-key` and
            // `by-id` on a slave (its master down) found only what was
            // replicated before the slave last opened its store.
            super::query::index_record(&mut self.index, m)?;
            if m.topic == super::TOPIC_DELETED {
                if let Ok(topic) = std::str::from_utf8(m.body) {
                    touched.retain(|(t, _), _| *t != topic);
                    dropped.push(topic.to_string());
                }
                continue;
            }
            let max = touched.entry((m.topic, m.queue_id)).or_default();
            *max = (*max).max(m.queue_offset + 1);
        }
        Ok(ReplicaAppend {
            end_offset: self.commit_log.max_offset(),
            touched: touched
                .into_iter()
                .map(|((t, q), max)| (t.to_string(), q, max))
                .collect(),
            records: records.len(),
            dropped,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::message_store::{AppendMessage, ReadStatus, StoreConfig, UNFILTERED};

    fn logger() -> slog::Logger {
        slog::Logger::root(slog::Discard, slog::o!())
    }

    fn config(dir: &Path) -> StoreConfig {
        StoreConfig {
            segment_size: 8 * 1024,
            cq_entries_per_file: 32,
            max_message_size: 2048,
            ..StoreConfig::new(dir)
        }
    }

    fn append_n(store: &mut Store, from: usize, n: usize) {
        for i in from..from + n {
            let body = vec![b'x'; 100 + (i * 37) % 700];
            let topic = if i % 3 == 0 { "A" } else { "B" };
            let m = AppendMessage {
                queue_id: (i % 4) as u32,
                tags: Some("T"),
                born_timestamp: i as i64,
                ..AppendMessage::for_test(topic, &body)
            };
            store.append(&[m]).unwrap();
        }
    }

    /// Ships chunks until the slave has everything; returns the chunk count.
    fn catch_up(master: &Store, slave: &mut Store, max_bytes: usize) -> usize {
        let mut chunks = 0;
        loop {
            let from = slave.max_physical_offset();
            let chunk = master.read_commit_log(from, max_bytes).unwrap();
            if chunk.is_empty() {
                return chunks;
            }
            let r = slave.append_replicated(from, &chunk).unwrap();
            assert_eq!(r.end_offset, from + chunk.len() as u64);
            chunks += 1;
        }
    }

    fn assert_same_files(master: &Store, slave: &Store) {
        let (m, s) = (master.segment_paths(), slave.segment_paths());
        assert_eq!(m.len(), s.len());
        assert!(m.len() > 3, "segments must roll in this test");
        for (a, b) in m.iter().zip(&s) {
            assert_eq!(a.file_name(), b.file_name());
            assert!(std::fs::read(a).unwrap() == std::fs::read(b).unwrap());
        }
    }

    #[test]
    fn replication_gives_identical_segments_and_queues_and_resumes() {
        let (md, sd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut master = Store::open(config(md.path()), logger()).unwrap();
        let mut slave = Store::open(config(sd.path()), logger()).unwrap();
        append_n(&mut master, 0, 150);
        assert!(catch_up(&master, &mut slave, 3000) > 10);
        assert_eq!(slave.max_physical_offset(), master.max_physical_offset());
        assert_same_files(&master, &slave);
        for t in ["A", "B"] {
            for q in 0..4 {
                let a = master
                    .read_filtered(t, q, 0, 1000, 1 << 20, None, UNFILTERED)
                    .unwrap();
                let b = slave
                    .read_filtered(t, q, 0, 1000, 1 << 20, None, UNFILTERED)
                    .unwrap();
                assert_eq!(a, b);
            }
        }
        // The slave crashes (no clean shutdown) and resumes from its end.
        drop(slave);
        let mut slave = Store::open(config(sd.path()), logger()).unwrap();
        append_n(&mut master, 150, 100);
        catch_up(&master, &mut slave, 1 << 20);
        assert_same_files(&master, &slave);
        let r = slave
            .read_filtered("B", 1, 0, 1000, 1 << 20, None, UNFILTERED)
            .unwrap();
        assert_eq!(r.status, ReadStatus::Found);
        assert_eq!(
            Some(r.next_queue_offset),
            master.max_queue_offset("B", 1),
            "every B/1 message is on the slave"
        );
    }

    /// A slave indexes what it replicates as it arrives, so a query by key
    /// or unique id on it (its master down) finds it without a restart.
    #[test]
    fn replicated_records_are_indexed_by_key_and_unique_id_at_once() {
        let (md, sd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut master = Store::open(config(md.path()), logger()).unwrap();
        let mut slave = Store::open(config(sd.path()), logger()).unwrap();
        let props = [(record::PROPERTY_UNIQ_KEY.to_string(), "U-1".to_string())];
        master
            .append(&[AppendMessage {
                keys: Some("order-7 customer-3"),
                properties: &props,
                ..AppendMessage::for_test("K", b"found")
            }])
            .unwrap();
        catch_up(&master, &mut slave, 1 << 20);
        let window = crate::message_store::KeyWindow::any_time(8);
        for key in ["order-7", "customer-3", "U-1"] {
            let (_, n) = slave.query_by_key("K", key, window).unwrap();
            assert_eq!(n, 1, "{key}");
        }
    }

    #[test]
    fn a_topic_dropped_on_the_master_is_dropped_on_the_slave_at_the_same_point() {
        let (md, sd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut master = Store::open(config(md.path()), logger()).unwrap();
        let mut slave = Store::open(config(sd.path()), logger()).unwrap();
        append_n(&mut master, 0, 60);
        catch_up(&master, &mut slave, 3000);
        append_n(&mut master, 60, 30); // not shipped before the deletion
        let host = "127.0.0.1:10911".parse().unwrap();
        assert_eq!(master.drop_topic("A", host).unwrap().0, 4);
        append_n(&mut master, 90, 60);
        catch_up(&master, &mut slave, 3000);
        let same = |slave: &Store| {
            for t in ["A", "B"] {
                for q in 0..4 {
                    let a = master.read_filtered(t, q, 0, 1000, 1 << 20, None, UNFILTERED);
                    let b = slave.read_filtered(t, q, 0, 1000, 1 << 20, None, UNFILTERED);
                    assert_eq!(a.unwrap(), b.unwrap(), "{t}/{q}");
                }
            }
        };
        same(&slave);
        // Only what was sent after the deletion is in A, from offset 0.
        let a0 = master.max_queue_offset("A", 0).unwrap();
        assert!(a0 > 0 && a0 < 10, "A/0 holds {a0} messages");
        drop(slave); // a crash
        let slave = Store::open(config(sd.path()), logger()).unwrap();
        same(&slave);
    }

    #[test]
    fn replication_rejects_bad_chunks_without_writing() {
        let (md, sd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut master = Store::open(config(md.path()), logger()).unwrap();
        let mut slave = Store::open(config(sd.path()), logger()).unwrap();
        append_n(&mut master, 0, 5);
        let chunk = master.read_commit_log(0, 1 << 20).unwrap();
        let mut bad = chunk.to_vec();
        bad[200] ^= 0xff; // body byte of the first record: CRC mismatch
        assert!(slave.append_replicated(0, &bad).is_err());
        assert_eq!(slave.max_physical_offset(), 0);
        // Wrong offset: the chunk must start at the slave's end.
        assert!(slave.append_replicated(10, &chunk[..10]).is_err());
        // Truncated chunk (half a record).
        assert!(slave.append_replicated(0, &chunk[..50]).is_err());
        slave.append_replicated(0, &chunk).unwrap();
        assert_eq!(slave.max_physical_offset(), master.max_physical_offset());
    }
}
