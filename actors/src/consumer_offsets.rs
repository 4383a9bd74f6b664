//! The `ConsumerOffsets` actor: every consumer group's committed offsets.
//!
//! Offsets live in memory (one `u64` per group × topic × queue, not per
//! message) and are persisted atomically to `<data_dir>/config/consumer_offsets.json`
//! every `flush_interval` when something changed and on [`FlushOffsets`]
//! (clean shutdown). A kill -9 may lose the last few seconds of commits;
//! consumers then see those messages again — at-least-once, never a loss.
//!
//! The time of the last commit per queue (for `admin group progress`) is
//! persisted beside them, in `consumer_offsets_times.json`, on the same
//! schedule.
//!
//! Messages answered: [`CommitOffset`], [`QueryOffset`], [`FlushOffsets`],
//! [`GroupOffsets`], [`ListOffsetGroups`], [`DeleteGroupOffsets`],
//! [`DeleteTopicOffsets`], and for
//! replication [`SnapshotOffsets`] (every offset, for a slave's sync) and
//! [`MergeOffsets`] (take another broker's offsets) (+ the flush tick).

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
    /// group → topic → queue id → ms since the epoch of the last commit.
    last_commit: BTreeMap<String, BTreeMap<String, BTreeMap<u32, i64>>>,
    times_dirty: bool,
    path: PathBuf,
    times_path: PathBuf,
    flush_interval: Duration,
    /// Groups and topics whose offsets were deleted since this process
    /// started (and not committed again here since): another broker's
    /// offsets for them (a slave that was away pushing its own) are not
    /// taken back, or a deleted group, or a deleted topic's offsets, would
    /// return.
    forgotten_groups: std::collections::HashSet<String>,
    forgotten_topics: std::collections::HashSet<String>,
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
        let times_path = data_dir.join("config").join("consumer_offsets_times.json");
        // The times are informational: an unreadable file is not fatal.
        let last_commit = persist::read_json(&times_path)
            .ok()
            .flatten()
            .unwrap_or_default();
        Ok(ConsumerOffsets {
            table,
            dirty: false,
            last_commit,
            times_dirty: false,
            path,
            times_path,
            flush_interval,
            forgotten_groups: Default::default(),
            forgotten_topics: Default::default(),
            log: log.new(slog::o!("actor" => "consumer_offsets")),
        })
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.dirty {
            persist::write_json(&self.path, &self.table)?;
            self.dirty = false;
        }
        if self.times_dirty {
            persist::write_json(&self.times_path, &self.last_commit)?;
            self.times_dirty = false;
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
        self.last_commit
            .entry(group.to_string())
            .or_default()
            .entry(topic.to_string())
            .or_default()
            .insert(queue_id, now_ms());
        self.times_dirty = true;
    }

    /// Every (topic, queue id, offset, last commit ms) of `group`.
    pub fn group_offsets(&self, group: &str) -> Vec<GroupQueueOffset> {
        let Some(topics) = self.table.get(group) else {
            return Vec::new();
        };
        topics
            .iter()
            .flat_map(|(topic, queues)| {
                queues
                    .iter()
                    .map(move |(&queue_id, &offset)| GroupQueueOffset {
                        topic: topic.clone(),
                        queue_id,
                        offset,
                        last_commit_ms: self
                            .last_commit
                            .get(group)
                            .and_then(|t| t.get(topic))
                            .and_then(|q| q.get(&queue_id))
                            .copied(),
                    })
            })
            .collect()
    }

    /// Forgets a group's offsets; true if it had any.
    pub fn delete_group(&mut self, group: &str) -> bool {
        self.forgotten_groups.insert(group.to_string());
        self.times_dirty |= self.last_commit.remove(group).is_some();
        let had = self.table.remove(group).is_some();
        self.dirty |= had;
        had
    }

    /// Forgets every group's offsets of `topic` (a deleted topic: one
    /// created again under the name starts at 0); answers how many groups
    /// had some.
    pub fn delete_topic(&mut self, topic: &str) -> usize {
        self.forgotten_topics.insert(topic.to_string());
        let mut groups = 0;
        self.table.retain(|_, topics| {
            groups += usize::from(topics.remove(topic).is_some());
            !topics.is_empty()
        });
        self.dirty |= groups > 0;
        self.last_commit.retain(|_, topics| {
            self.times_dirty |= topics.remove(topic).is_some();
            !topics.is_empty()
        });
        groups
    }

    /// The committed offset, if the group ever committed one.
    pub fn query(&self, group: &str, topic: &str, queue_id: u32) -> Option<u64> {
        self.table.get(group)?.get(topic)?.get(&queue_id).copied()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// One queue's committed offset of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupQueueOffset {
    pub topic: String,
    pub queue_id: u32,
    pub offset: u64,
    /// When it was last committed (since this broker started).
    pub last_commit_ms: Option<i64>,
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

/// The wire requests carry exactly these fields.
impl From<skylark_codec::CommitOffsetRequest> for CommitOffset {
    fn from(r: skylark_codec::CommitOffsetRequest) -> Self {
        CommitOffset {
            group: r.group,
            topic: r.topic,
            queue_id: r.queue_id,
            offset: r.offset,
        }
    }
}

impl From<skylark_codec::QueryOffsetRequest> for QueryOffset {
    fn from(r: skylark_codec::QueryOffsetRequest) -> Self {
        QueryOffset {
            group: r.group,
            topic: r.topic,
            queue_id: r.queue_id,
        }
    }
}

/// Persist now (clean shutdown).
#[derive(Message)]
#[rtype(result = "std::io::Result<()>")]
pub struct FlushOffsets;

/// Every committed offset of a group.
#[derive(Message)]
#[rtype(result = "Vec<GroupQueueOffset>")]
pub struct GroupOffsets(pub String);

/// Every group with committed offsets, sorted.
#[derive(Message)]
#[rtype(result = "Vec<String>")]
pub struct ListOffsetGroups;

/// Forget a group's offsets; answers whether it had any.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct DeleteGroupOffsets(pub String);

/// Forget every group's offsets of these topics, persisted at once (one
/// write); answers how many (group, topic) pairs had some.
#[derive(Message)]
#[rtype(result = "std::io::Result<usize>")]
pub struct DeleteTopicOffsets(pub Vec<String>);

impl Handler<DeleteTopicOffsets> for ConsumerOffsets {
    type Result = std::io::Result<usize>;
    fn handle(&mut self, m: DeleteTopicOffsets, _: &mut Self::Context) -> Self::Result {
        let groups: usize = m.0.iter().map(|t| self.delete_topic(t)).sum();
        // At once, not at the next tick: offsets of the old topic coming
        // back after a crash would be those of a topic created again.
        if groups > 0 {
            self.flush()?;
        }
        Ok(groups)
    }
}

impl Handler<GroupOffsets> for ConsumerOffsets {
    type Result = MessageResult<GroupOffsets>;
    fn handle(&mut self, m: GroupOffsets, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.group_offsets(&m.0))
    }
}

impl Handler<ListOffsetGroups> for ConsumerOffsets {
    type Result = Vec<String>;
    fn handle(&mut self, _: ListOffsetGroups, _: &mut Self::Context) -> Vec<String> {
        self.table.keys().cloned().collect()
    }
}

impl Handler<DeleteGroupOffsets> for ConsumerOffsets {
    type Result = bool;
    fn handle(&mut self, m: DeleteGroupOffsets, _: &mut Self::Context) -> bool {
        self.delete_group(&m.0)
    }
}

impl Handler<CommitOffset> for ConsumerOffsets {
    type Result = ();
    fn handle(&mut self, m: CommitOffset, _: &mut Self::Context) {
        // A consumer of this broker commits again: the group (and the
        // topic) are live here once more.
        self.forgotten_groups.remove(&m.group);
        self.forgotten_topics.remove(&m.topic);
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

    #[test]
    fn group_listing_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let log = Logger::root(slog::Discard, slog::o!());
        let mut o = ConsumerOffsets::open(dir.path(), Duration::from_secs(5), log.clone()).unwrap();
        o.commit("g", "T", 1, 42);
        o.commit("h", "T", 0, 1);
        let g = o.group_offsets("g");
        assert_eq!(g.len(), 1);
        assert_eq!((g[0].queue_id, g[0].offset), (1, 42));
        assert!(g[0].last_commit_ms.is_some());
        assert!(o.delete_group("g"));
        assert!(!o.delete_group("g"));
        o.flush().unwrap();
        let o = ConsumerOffsets::open(dir.path(), Duration::from_secs(5), log).unwrap();
        assert!(o.group_offsets("g").is_empty());
        assert_eq!(o.query("h", "T", 0), Some(1));
        // The last-commit time survived the restart.
        assert!(o.group_offsets("h")[0].last_commit_ms.is_some());
    }

    /// A slave that was away pushes the offsets it kept: a group or topic
    /// deleted here meanwhile does not come back, until it commits here
    /// again.
    #[test]
    fn offsets_pushed_back_for_a_deleted_group_or_topic_are_not_taken() {
        let dir = tempfile::tempdir().unwrap();
        let log = Logger::root(slog::Discard, slog::o!());
        actix::System::new().block_on(async move {
            let o = ConsumerOffsets::open(dir.path(), Duration::from_secs(5), log)
                .unwrap()
                .start();
            let entry = |group: &str, topic: &str| skylark_codec::OffsetEntry {
                group: group.into(),
                topic: topic.into(),
                queue_id: 0,
                offset: 10,
            };
            let commit = |group: &str, topic: &str| CommitOffset {
                group: group.into(),
                topic: topic.into(),
                queue_id: 0,
                offset: 3,
            };
            o.send(commit("G", "T")).await.unwrap();
            o.send(commit("H", "U")).await.unwrap();
            assert!(o.send(DeleteGroupOffsets("G".into())).await.unwrap());
            assert_eq!(
                o.send(DeleteTopicOffsets(vec!["U".into()]))
                    .await
                    .unwrap()
                    .unwrap(),
                1
            );
            let push = MergeOffsets {
                entries: vec![entry("G", "T"), entry("H", "U"), entry("K", "V")],
                keep_larger: true,
            };
            o.send(push).await.unwrap();
            assert!(o.send(GroupOffsets("G".into())).await.unwrap().is_empty());
            assert!(o.send(GroupOffsets("H".into())).await.unwrap().is_empty());
            assert_eq!(o.send(GroupOffsets("K".into())).await.unwrap().len(), 1);
            // Committed here again: a later push raises it as before.
            o.send(commit("G", "T")).await.unwrap();
            o.send(MergeOffsets {
                entries: vec![entry("G", "T")],
                keep_larger: true,
            })
            .await
            .unwrap();
            assert_eq!(
                o.send(GroupOffsets("G".into())).await.unwrap()[0].offset,
                10
            );
        });
    }

    #[test]
    fn a_deleted_topic_loses_every_groups_offsets_and_only_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let log = Logger::root(slog::Discard, slog::o!());
        let mut o = ConsumerOffsets::open(dir.path(), Duration::from_secs(5), log.clone()).unwrap();
        o.commit("g", "T", 1, 42);
        o.commit("g", "U", 0, 5);
        o.commit("h", "T", 0, 1);
        o.flush().unwrap();
        assert_eq!(o.delete_topic("T"), 2);
        assert_eq!(o.delete_topic("T"), 0);
        o.flush().unwrap();
        let o = ConsumerOffsets::open(dir.path(), Duration::from_secs(5), log).unwrap();
        assert_eq!(o.query("g", "T", 1), None);
        assert_eq!(o.query("h", "T", 0), None);
        assert_eq!(o.query("g", "U", 0), Some(5));
        assert!(
            o.group_offsets("h").is_empty(),
            "a group left with no topic is gone"
        );
    }
}

/// Every committed offset (replication: a master's snapshot, a slave's push).
#[derive(Message)]
#[rtype(result = "Vec<skylark_codec::OffsetEntry>")]
pub struct SnapshotOffsets;

/// Take offsets from another broker of the group: with `keep_larger`, an
/// entry only raises an offset (a master merging a slave's commits), and
/// none is taken for a group or topic deleted here since start; otherwise
/// it replaces it (a slave copying its master).
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
            if m.keep_larger
                && (self.forgotten_groups.contains(&e.group)
                    || self.forgotten_topics.contains(&e.topic))
            {
                continue;
            }
            let current = self.query(&e.group, &e.topic, e.queue_id);
            if !m.keep_larger || current.is_none_or(|c| e.offset > c) {
                self.commit(&e.group, &e.topic, e.queue_id, e.offset);
            }
        }
    }
}
