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
//! offset) and creates every ConsumeQueue file and IndexFile they need
//! before writing anything, then dispatches each record to its
//! ConsumeQueue at the queue offset the master gave it, as recovery does. A
//! chunk refused for a file it cannot create is not written: the slave's
//! end stays where it was and the chunk is fetched again, so no record is
//! ever in the slave's CommitLog without its ConsumeQueue entry. (A chunk
//! holding a topic deletion is applied in two parts, split after the
//! deletion record: the second may be refused after the first applied.)

use std::collections::HashMap;

use bytes::Bytes;

use super::error::{Result, StoreError};
use super::record::{self, BLANK_MAGIC, MESSAGE_MAGIC};
use super::{queue_factory, recovery, Store};

/// What [`Store::append_replicated`] did.
#[derive(Debug, Clone, Default)]
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
    /// The chunk's records from `end_offset` on were refused (a file they
    /// need could not be created): nothing of them was written, the ones
    /// before were applied. The caller handles what was applied, then
    /// reports this error.
    pub refused: Option<StoreError>,
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
        let mut out = ReplicaAppend {
            end_offset: self.commit_log.max_offset(),
            ..ReplicaAppend::default()
        };
        let mut touched: HashMap<(&str, u32), u64> = HashMap::new();
        // A deletion record ends a part: the files of the records after it
        // (a topic created again) are made once its queues are gone.
        let mut from = 0;
        for part in records.split_inclusive(|m| m.topic == super::TOPIC_DELETED) {
            let to = match part.last() {
                Some(m) if out.records + part.len() < records.len() => {
                    (m.physical_offset + u64::from(m.record_size) - offset) as usize
                }
                _ => data.len(),
            };
            // Refused before writing: the parts before it stand (`refused`).
            // A failure after the write is a hard error, as for a first part.
            if let Err(e) = self.reserve_replicated_part(part) {
                if from == 0 {
                    return Err(e);
                }
                out.refused = Some(e);
                break;
            }
            self.write_replicated_part(offset + from as u64, &data[from..to], part)?;
            from = to;
            out.end_offset = self.commit_log.max_offset();
            out.records += part.len();
            for m in part {
                if m.topic == super::TOPIC_DELETED {
                    if let Ok(topic) = std::str::from_utf8(m.body) {
                        touched.retain(|(t, _), _| *t != topic);
                        out.dropped.push(topic.to_string());
                    }
                    continue;
                }
                let max = touched.entry((m.topic, m.queue_id)).or_default();
                *max = (*max).max(m.queue_offset + 1);
            }
        }
        if records.is_empty() {
            // Only an end-of-file marker (its segment's tail).
            self.commit_log.append_raw(offset, data)?;
            out.end_offset = self.commit_log.max_offset();
        }
        out.touched = touched
            .into_iter()
            .map(|((t, q), max)| (t.to_string(), q, max))
            .collect();
        Ok(out)
    }

    /// Creates every ConsumeQueue file and IndexFile the records of one part
    /// of a replicated chunk need, before it is written, as
    /// [`Store::append`] does on the master: a part refused for a file that
    /// cannot be created (ENOSPC, read-only) wrote nothing, so the slave's
    /// end stays before it and the next connection fetches it again.
    fn reserve_replicated_part(&mut self, records: &[record::DecodedMessage<'_>]) -> Result<()> {
        let mut keys = 0;
        let mut run: Option<(&str, u32, u64, u64)> = None;
        for m in records {
            keys += super::query::record_keys(m).count();
            if m.topic == super::TOPIC_DELETED {
                continue;
            }
            match &mut run {
                Some((t, q, _, last)) if *t == m.topic && *q == m.queue_id => {
                    *last = (*last).max(m.queue_offset);
                }
                _ => {
                    if let Some(r) = run.take() {
                        self.reserve_replica_queue(r)?;
                    }
                    run = Some((m.topic, m.queue_id, m.queue_offset, m.queue_offset));
                }
            }
        }
        if let Some(r) = run {
            self.reserve_replica_queue(r)?;
        }
        let first_ts = records
            .first()
            .map_or(0, |m| m.store_timestamp.max(0) as u64);
        self.index.reserve(keys, first_ts)
    }

    /// Writes a part [`Self::reserve_replicated_part`] made room for, and
    /// dispatches and indexes its records.
    fn write_replicated_part(
        &mut self,
        at: u64,
        data: &[u8],
        records: &[record::DecodedMessage<'_>],
    ) -> Result<()> {
        self.commit_log.append_raw(at, data)?;
        let new_queue = queue_factory(&self.config);
        for m in records {
            recovery::dispatch(&mut self.queues, &new_queue, m)?;
            // By key and unique id, as the master indexed it: `by-key` and
            // `by-id` on a slave (its master down) found only what was
            // replicated before the slave last opened its store.
            super::query::index_record(&mut self.index, m)?;
        }
        Ok(())
    }

    /// Creates the files of one run of records of a queue (topic, queue
    /// id, first and last queue offset).
    fn reserve_replica_queue(
        &mut self,
        (topic, queue_id, first, last): (&str, u32, u64, u64),
    ) -> Result<()> {
        let cq = super::queue_or_new(&mut self.queues, &self.config, topic, queue_id);
        cq.reserve_range(first, last)
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
