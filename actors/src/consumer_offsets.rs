//! The `ConsumerOffsets` actor: every consumer group's committed offsets.
//!
//! Offsets live in memory (one `u64` per group × topic × queue, not per
//! message) and are persisted atomically to `<data_dir>/config/consumer_offsets.json`
//! every `flush_interval` when something changed and on [`FlushOffsets`]
//! (clean shutdown). A kill -9 may lose the last few seconds of commits;
//! consumers then see those messages again — at-least-once, never a loss.
//!
//! Messages answered: [`CommitOffset`], [`QueryOffset`], [`FlushOffsets`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use actix::prelude::*;
use slog::{error, Logger};

use crate::persist;

type Table = BTreeMap<String, BTreeMap<String, BTreeMap<u32, u64>>>;

/// Owner of committed offsets: group → topic → queue id → next offset to consume.
pub struct ConsumerOffsets {
    table: Table,
    dirty: bool,
    path: PathBuf,
    flush_interval: Duration,
    log: Logger,
}

impl ConsumerOffsets {
    /// Loads `<data_dir>/config/consumer_offsets.json` if present.
    pub fn open(
        data_dir: &std::path::Path,
        flush_interval: Duration,
        log: Logger,
    ) -> std::io::Result<Self> {
        let path = data_dir.join("config").join("consumer_offsets.json");
        let table = persist::read_json(&path)?.unwrap_or_default();
        Ok(ConsumerOffsets {
            table,
            dirty: false,
            path,
            flush_interval,
            log: log.new(slog::o!("actor" => "consumer_offsets")),
        })
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.dirty {
            persist::write_json(&self.path, &self.table)?;
            self.dirty = false;
        }
        Ok(())
    }

    /// Records `offset` as the next offset `group` will consume.
    pub fn commit(&mut self, group: &str, topic: &str, queue_id: u32, offset: u64) {
        let queues = self
            .table
            .entry(group.to_string())
            .or_default()
            .entry(topic.to_string())
            .or_default();
        if queues.insert(queue_id, offset) != Some(offset) {
            self.dirty = true;
        }
    }

    /// The committed offset, if the group ever committed one.
    pub fn query(&self, group: &str, topic: &str, queue_id: u32) -> Option<u64> {
        self.table.get(group)?.get(topic)?.get(&queue_id).copied()
    }
}

impl Actor for ConsumerOffsets {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
        ctx.run_interval(self.flush_interval, |act, _| {
            if let Err(e) = act.flush() {
                error!(act.log, "cannot persist consumer offsets"; "error" => %e);
            }
        });
    }
    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        if let Err(e) = self.flush() {
            error!(self.log, "cannot persist consumer offsets"; "error" => %e);
        }
        Running::Stop
    }
}

/// Store a group's next offset for one queue.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CommitOffset {
    pub group: String,
    pub topic: String,
    pub queue_id: u32,
    pub offset: u64,
}

/// A group's committed offset for one queue.
#[derive(Message)]
#[rtype(result = "Option<u64>")]
pub struct QueryOffset {
    pub group: String,
    pub topic: String,
    pub queue_id: u32,
}

/// Persist now (clean shutdown).
#[derive(Message)]
#[rtype(result = "std::io::Result<()>")]
pub struct FlushOffsets;

impl Handler<CommitOffset> for ConsumerOffsets {
    type Result = ();
    fn handle(&mut self, m: CommitOffset, _: &mut Self::Context) {
        self.commit(&m.group, &m.topic, m.queue_id, m.offset);
    }
}

impl Handler<QueryOffset> for ConsumerOffsets {
    type Result = Option<u64>;
    fn handle(&mut self, m: QueryOffset, _: &mut Self::Context) -> Option<u64> {
        self.query(&m.group, &m.topic, m.queue_id)
    }
}

impl Handler<FlushOffsets> for ConsumerOffsets {
    type Result = std::io::Result<()>;
    fn handle(&mut self, _: FlushOffsets, _: &mut Self::Context) -> Self::Result {
        self.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let log = Logger::root(slog::Discard, slog::o!());
        let mut o = ConsumerOffsets::open(d, Duration::from_secs(5), log.clone()).unwrap();
        o.commit("g", "T", 1, 42);
        o.commit("g", "T", 2, 7);
        o.flush().unwrap();
        let o = ConsumerOffsets::open(d, Duration::from_secs(5), log).unwrap();
        assert_eq!(o.query("g", "T", 1), Some(42));
        assert_eq!(o.query("g", "T", 2), Some(7));
        assert_eq!(o.query("g", "T", 3), None);
        assert_eq!(o.query("h", "T", 1), None);
    }
}

/// Every committed offset (replication: a master's snapshot, a slave's push).
#[derive(Message)]
#[rtype(result = "Vec<skylark_codec::OffsetEntry>")]
pub struct SnapshotOffsets;

/// Take offsets from another broker of the group: with `keep_larger`, an
/// entry only raises an offset (a master merging a slave's commits);
/// otherwise it replaces it (a slave copying its master).
#[derive(Message)]
#[rtype(result = "()")]
pub struct MergeOffsets {
    pub entries: Vec<skylark_codec::OffsetEntry>,
    pub keep_larger: bool,
}

impl Handler<SnapshotOffsets> for ConsumerOffsets {
    type Result = MessageResult<SnapshotOffsets>;
    fn handle(&mut self, _: SnapshotOffsets, _: &mut Self::Context) -> Self::Result {
        let mut out = Vec::new();
        for (group, topics) in &self.table {
            for (topic, queues) in topics {
                for (queue_id, offset) in queues {
                    out.push(skylark_codec::OffsetEntry {
                        group: group.clone(),
                        topic: topic.clone(),
                        queue_id: *queue_id,
                        offset: *offset,
                    });
                }
            }
        }
        MessageResult(out)
    }
}

impl Handler<MergeOffsets> for ConsumerOffsets {
    type Result = ();
    fn handle(&mut self, m: MergeOffsets, _: &mut Self::Context) {
        for e in m.entries {
            let current = self.query(&e.group, &e.topic, e.queue_id);
            if !m.keep_larger || current.is_none_or(|c| e.offset > c) {
                self.commit(&e.group, &e.topic, e.queue_id, e.offset);
            }
        }
    }
}
