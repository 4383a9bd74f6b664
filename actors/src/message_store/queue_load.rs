//! Loading every ConsumeQueue at open (`consumequeue/<topic>/<queue id>/`),
//! and what a fault on the data directory can have left there:
//!
//! * a damaged queue (torn or missing file after its first, a hole) keeps
//!   its intact prefix and is rebuilt from the CommitLog by recovery;
//! * a file that cannot be one of the queue's (extra bytes, a partial
//!   entry) is renamed aside to `<name>.corrupt-<ms>` and rebuilt the same
//!   way ([`ConsumeQueue::load`]);
//! * a queue whose first files are gone while its first remaining entry
//!   is still above the CommitLog's start (retention never leaves that,
//!   see [`ConsumeQueue::delete_below`]) is rebuilt from the whole log;
//!   what the log no longer holds is reported at WARN, with the offset the
//!   queue is now served from, and that start is recorded in the queue's
//!   `min_offset` file, so the next open takes the queue as it is: no
//!   rescan, no WARN ([`report_missing_heads`]);
//! * an empty queue directory (a queue whose first file could not be
//!   created, e.g. ENOSPC when the topic was created) is removed: it holds
//!   nothing, and taking it for a lost queue made every start unclean.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use slog::{warn, Logger};

use super::config::StoreConfig;
use super::consume_queue::{ConsumeQueue, CQ_ENTRY_SIZE, MIN_OFFSET_FILE};
use super::error::{Result, StoreError};
use super::mapped_file::file_name;
use super::{Queues, TOPIC_DELETED};

/// A queue whose first files are missing: recovery rebuilds what the
/// CommitLog still holds of it.
pub(crate) struct MissingHead {
    pub topic: String,
    pub queue_id: u32,
    /// The queue's first offset as loaded.
    pub served_from: u64,
    /// The file that held the entries just before it.
    pub missing_file: PathBuf,
}

/// What [`load_queues`] found.
pub(crate) struct LoadedQueues {
    pub queues: Queues,
    /// For each damaged queue, where re-dispatching must start.
    pub damaged_from: Vec<u64>,
    pub missing_heads: Vec<MissingHead>,
}

/// A topic's directory under `consumequeue/` and its queue directories.
pub(crate) struct TopicDir {
    pub topic: String,
    pub path: PathBuf,
    /// Queue id and directory, by id.
    pub queues: Vec<(u32, PathBuf)>,
}

/// The queue directories under `root`: per topic directory, its numbered
/// queue directories (anything else is skipped).
pub(crate) fn queue_dirs(root: &Path) -> Result<Vec<TopicDir>> {
    let list = |dir: &Path| std::fs::read_dir(dir).map_err(|e| StoreError::io_at("list", dir, e));
    let mut out = Vec::new();
    for topic_dir in list(root)? {
        let topic_dir = topic_dir.map_err(|e| StoreError::io_at("list", root, e))?;
        let Some(topic) = topic_dir.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if !topic_dir.path().is_dir() {
            continue;
        }
        let mut ids = Vec::new();
        for qdir in list(&topic_dir.path())? {
            let qdir = qdir.map_err(|e| StoreError::io_at("list", &topic_dir.path(), e))?;
            let id = qdir
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok());
            if let Some(id) = id.filter(|_| qdir.path().is_dir()) {
                ids.push((id, qdir.path()));
            }
        }
        ids.sort_unstable_by_key(|(id, _)| *id);
        out.push(TopicDir {
            topic,
            path: topic_dir.path(),
            queues: ids,
        });
    }
    Ok(out)
}

/// Every topic with ConsumeQueue directories in the store at `config`, and
/// its queue count (highest queue id + 1): what the broker restores when
/// its topic table lost a topic. Empty when nothing was ever stored.
pub fn stored_queue_counts(config: &StoreConfig) -> Result<BTreeMap<String, u32>> {
    let root = config.consume_queue_dir();
    if !root.is_dir() {
        return Ok(BTreeMap::new());
    }
    Ok(queue_dirs(&root)?
        .into_iter()
        .filter(|t| t.topic != TOPIC_DELETED)
        .filter_map(|t| Some((t.topic, t.queues.last()?.0.checked_add(1)?)))
        .collect())
}

/// Loads every ConsumeQueue (see the module doc for what is repaired).
pub(crate) fn load_queues(
    config: &StoreConfig,
    cl_min: u64,
    logger: &Logger,
) -> Result<LoadedQueues> {
    let root = config.consume_queue_dir();
    std::fs::create_dir_all(&root).map_err(|e| StoreError::io_at("create", &root, e))?;
    let mut out = LoadedQueues {
        queues: Queues::new(),
        damaged_from: Vec::new(),
        missing_heads: Vec::new(),
    };
    for TopicDir {
        topic,
        path: topic_dir,
        queues: ids,
    } in queue_dirs(&root)?
    {
        if topic == TOPIC_DELETED {
            // Built by a slave of an older version, which took a deletion
            // record for a message: this version drops queues there instead.
            warn!(logger, "removing the queues an older version built of topic deletion records";
                "dir" => %topic_dir.display());
            std::fs::remove_dir_all(&topic_dir)
                .map_err(|e| StoreError::io_at("remove", &topic_dir, e))?;
            continue;
        }
        for (queue_id, qdir) in ids {
            let loaded = ConsumeQueue::load(qdir.clone(), config.cq_entries_per_file)?;
            if loaded.empty {
                warn!(logger, "empty consume queue directory removed (a queue whose first file could not be created)";
                    "dir" => %qdir.display());
                let _ = std::fs::remove_file(qdir.join(MIN_OFFSET_FILE));
                let _ = std::fs::remove_dir(&qdir);
                continue;
            }
            for aside in &loaded.quarantined {
                warn!(logger, "CONSUME QUEUE FILE CORRUPT (extra bytes or a partial entry): set aside, its entries are rebuilt from the commit log";
                    "topic" => &topic, "queue_id" => queue_id, "file" => %aside.display());
            }
            let mut cq = loaded.queue;
            if loaded.damaged {
                let from = cq.last_entry_end().unwrap_or(cl_min);
                warn!(logger, "consume queue damaged, will rebuild";
                    "topic" => &topic, "queue_id" => queue_id, "from" => from);
                out.damaged_from.push(from);
            }
            cq.delete_below(cl_min)?;
            if let Some(head) = missing_head(&cq, &topic, queue_id, cl_min, config) {
                out.damaged_from.push(cl_min);
                out.missing_heads.push(head);
            }
            out.queues
                .entry(topic.clone())
                .or_default()
                .insert(queue_id, cq);
        }
        // Only removes a topic directory left empty.
        let _ = std::fs::remove_dir(&topic_dir);
    }
    Ok(out)
}

/// Whether `cq` lost its first files: it starts on a file boundary above
/// offset 0 with an entry the CommitLog's start is below, so the records of
/// the offsets before it may still be in the log (retention deletes a file
/// only once the next one's first record is gone from the log too).
fn missing_head(
    cq: &ConsumeQueue,
    topic: &str,
    queue_id: u32,
    cl_min: u64,
    config: &StoreConfig,
) -> Option<MissingHead> {
    // Found and reported at an earlier open ([`report_missing_heads`]).
    let start = cq
        .starts_at_file()
        .filter(|s| *s > 0 && cq.recorded_min() != Some(*s))?;
    let first = cq.slot(start)?;
    if first.physical_offset <= cl_min {
        return None;
    }
    let epf = u64::from(config.cq_entries_per_file);
    let before = (start - epf.min(start)) * CQ_ENTRY_SIZE;
    Some(MissingHead {
        topic: topic.to_string(),
        queue_id,
        served_from: start,
        missing_file: cq.dir().join(file_name(before)),
    })
}

/// After recovery: says, for each queue that had lost its first files,
/// what was rebuilt from the CommitLog and from which offset it is served,
/// and records that start in the queue ([`MIN_OFFSET_FILE`]) so the next
/// open neither rescans the log for it nor says it again.
pub(crate) fn report_missing_heads(queues: &mut Queues, heads: &[MissingHead], logger: &Logger) {
    for h in heads {
        let Some(cq) = queues
            .get_mut(&h.topic)
            .and_then(|q| q.get_mut(&h.queue_id))
        else {
            continue;
        };
        if cq.min_offset() < h.served_from {
            warn!(logger, "consume queue had lost its first file(s): rebuilt from the commit log";
                "topic" => &h.topic, "queue_id" => h.queue_id, "missing_file" => %h.missing_file.display(),
                "rebuilt_from" => cq.min_offset(), "rebuilt_to" => h.served_from);
        } else {
            warn!(logger, "CONSUME QUEUE LOST ITS FIRST FILE(S) and the commit log no longer holds their records: the messages before the served offset cannot be consumed";
                "topic" => &h.topic, "queue_id" => h.queue_id, "missing_file" => %h.missing_file.display(),
                "served_from" => h.served_from, "lost_offsets" => format!("..{}", h.served_from));
        }
        if cq.min_offset() > 0 {
            if let Err(e) = cq.record_min_offset() {
                warn!(logger, "cannot record the consume queue's new start: the next start rescans the commit log for it";
                    "topic" => &h.topic, "queue_id" => h.queue_id, "error" => %e);
            }
        }
    }
}
