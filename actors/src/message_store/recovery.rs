//! Recovery at open: make the CommitLog and the ConsumeQueues agree again.
//!
//! After a clean shutdown (checkpoint flag set, every ConsumeQueue intact)
//! the checkpoint's offset is the end of the log and nothing is scanned.
//! That holds when no ConsumeQueue is left because every topic was deleted:
//! the clean checkpoint says so ([`Checkpoint::no_queues`]); without it an
//! empty queue directory means a lost one, rebuilt by a scan of the whole
//! log.
//! A brand-new directory (no checkpoint, no segment) has nothing to scan
//! either. Otherwise the CommitLog is validated record by record (size,
//! magic, CRC and the record's own physical offset) from the checkpoint's
//! safe point itself — a record boundary, so a scan covers only what was
//! written after the last checkpoint — or earlier, from the end of the last
//! intact entry of any damaged ConsumeQueue:
//!
//! * every valid record met is re-dispatched (its ConsumeQueue entry is
//!   written at its stored queue offset; idempotent for existing entries);
//! * a bad record **below the flushed checkpoint** is damage, not a torn
//!   tail: those bytes were fsynced and acknowledged, and the records after
//!   them are too. It is skipped (the scan resumes at the next record whose
//!   magic, size, CRC and offset check out), its bytes are copied to
//!   `quarantine/<offset>.bin`, it is logged at ERROR and counted
//!   ([`RecoveryReport::damaged`]). Its bytes stay where they are and its
//!   ConsumeQueue entry, if any, is kept: a read meets it, reports it and
//!   steps over it (see `Store::read_filtered`), so queue offsets are never
//!   reused;
//! * past the flushed checkpoint a bad record is damage too when an intact
//!   record follows it (within `commit_log::RESYNC_WINDOW`, or at the start
//!   of the next segment): a crash tears only the last record written, and
//!   under sync flush a later acknowledged record means this one was
//!   fsynced — acknowledged after the last checkpoint was written;
//! * only a bad record past the flushed checkpoint with nothing intact
//!   after it is the torn tail: the log is cut there (the rest of that
//!   segment is zeroed and later segments are deleted, so nothing
//!   unacknowledged is ever served and nothing stale can resurface under a
//!   later append). Without a checkpoint (lost or damaged) "flushed" means
//!   every segment before the last;
//! * ConsumeQueue entries pointing at or past the valid end are cut.

use std::path::PathBuf;

use slog::{error, info, warn, Logger};

use super::checkpoint::Checkpoint;
use super::commit_log::CommitLog;
use super::consume_queue::{ConsumeQueue, CqEntry};
use super::error::Result;
use super::mapped_file::file_name;
use super::record::{tag_hash, DecodedMessage};
use super::{Queues, TOPIC_DELETED};

/// Everything recovery needs to know besides the files.
pub(crate) struct RecoveryInput {
    pub checkpoint: Option<Checkpoint>,
    /// CommitLog end offsets of the intact prefix of damaged queues (the
    /// CommitLog minimum for a queue with no intact entry).
    pub damaged_from: Vec<u64>,
    /// No ConsumeQueue exists at all (e.g. the directory was removed).
    pub no_queues: bool,
    /// Where damaged byte ranges are copied (`<data_dir>/quarantine`).
    pub quarantine_dir: PathBuf,
}

/// How the store was found at open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OpenKind {
    /// A brand-new data directory: nothing to recover.
    #[default]
    NewStore,
    /// A clean shutdown: no scan.
    Clean,
    /// A crash (or a lost/damaged checkpoint): the tail was scanned.
    Unclean,
}

/// A damaged byte range met below the flushed checkpoint and skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedRange {
    /// First damaged byte (where an intact record was expected).
    pub from: u64,
    /// Where the next intact record (or the checkpoint) starts.
    pub to: u64,
    /// The quarantine file holding a copy of the bytes, if it was written.
    pub quarantined: Option<PathBuf>,
}

/// What recovery did, for logs, tests and the admin view.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecoveryReport {
    pub kind: OpenKind,
    /// Where the scan started (the valid end when nothing was scanned).
    pub scanned_from: u64,
    /// Bytes and records the scan walked.
    pub scanned_bytes: u64,
    pub scanned_records: u64,
    /// The recovered end of the CommitLog.
    pub valid_end: u64,
    /// Damaged ranges skipped below the flushed checkpoint.
    pub damaged: Vec<DamagedRange>,
}

/// Largest damaged range copied to quarantine (the rest stays in place in
/// the CommitLog segment anyway).
const MAX_QUARANTINE_BYTES: u64 = 64 << 20;

/// A queue slot left empty below a re-dispatched entry: the entry of a
/// damaged record that was rebuilt past (topic, queue id, queue offset of
/// the entry after the hole).
type Hole = (String, u32, u64);

/// Writes the ConsumeQueue entry of a stored record; notes a hole when the
/// slot before it is empty (its record was damaged and skipped).
fn dispatch_noting_holes(
    queues: &mut Queues,
    new_queue: impl Fn(&str, u32) -> ConsumeQueue,
    m: &DecodedMessage<'_>,
    holes: &mut Vec<Hole>,
) -> Result<()> {
    let hole = queues
        .get(m.topic)
        .and_then(|q| q.get(&m.queue_id))
        .is_some_and(|cq| {
            m.queue_offset > cq.min_offset() && cq.slot(m.queue_offset - 1).is_none()
        });
    if hole {
        holes.push((m.topic.to_string(), m.queue_id, m.queue_offset));
    }
    dispatch(queues, new_queue, m)
}

/// Fills each hole with placeholder entries pointing at the damaged range
/// between its neighbours, so the queue keeps its offsets and a read
/// reports the damaged message (by its queue offset) instead of the queue
/// ending at the hole.
fn fill_holes(queues: &mut Queues, holes: &[Hole], damaged: &[(u64, u64)]) -> Result<usize> {
    let mut filled = 0;
    for (topic, queue_id, next) in holes {
        let Some(cq) = queues.get_mut(topic).and_then(|q| q.get_mut(queue_id)) else {
            continue;
        };
        let Some(after) = cq.slot(*next) else {
            continue;
        };
        let mut first = *next;
        while first > cq.min_offset() && cq.slot(first - 1).is_none() {
            first -= 1;
        }
        let prev_end = first
            .checked_sub(1)
            .and_then(|i| cq.slot(i))
            .map_or(0, |e| e.end());
        let between: Vec<&(u64, u64)> = damaged
            .iter()
            .filter(|(a, b)| *a >= prev_end && *b <= after.physical_offset)
            .collect();
        for (i, idx) in (first..*next).enumerate() {
            let e = match between.get(i).or(between.last()) {
                Some((a, b)) => CqEntry {
                    physical_offset: *a,
                    size: u32::try_from(b - a).unwrap_or(u32::MAX),
                    tag_hash: 0,
                },
                // No damaged range found: an entry that can never verify
                // (no record is 1 byte long), so reads report it.
                None => CqEntry {
                    physical_offset: prev_end,
                    size: 1,
                    tag_hash: 0,
                },
            };
            cq.put(idx, e)?;
            filled += 1;
        }
    }
    Ok(filled)
}

/// Writes the ConsumeQueue entry of a stored record; a
/// [`TOPIC_DELETED`] record drops the queues of the topic it names instead.
pub(crate) fn dispatch(
    queues: &mut Queues,
    new_queue: impl Fn(&str, u32) -> ConsumeQueue,
    m: &DecodedMessage<'_>,
) -> Result<()> {
    if m.topic == TOPIC_DELETED {
        if let Ok(topic) = std::str::from_utf8(m.body) {
            drop_topic_queues(queues, topic)?;
        }
        return Ok(());
    }
    let topic_queues = match queues.get_mut(m.topic) {
        Some(q) => q,
        None => queues.entry(m.topic.to_string()).or_default(),
    };
    let cq = topic_queues
        .entry(m.queue_id)
        .or_insert_with(|| new_queue(m.topic, m.queue_id));
    cq.put(
        m.queue_offset,
        CqEntry {
            physical_offset: m.physical_offset,
            size: m.record_size,
            tag_hash: tag_hash(m.tags().unwrap_or("")),
        },
    )
}

/// Removes every ConsumeQueue of `topic`, in memory and on disk (the
/// topic's directory too, made durable by an fsync of the queues' root);
/// returns how many there were.
pub(crate) fn drop_topic_queues(queues: &mut Queues, topic: &str) -> Result<usize> {
    let Some(topic_queues) = queues.get_mut(topic) else {
        return Ok(0);
    };
    let n = topic_queues.len();
    let mut topic_dir = None;
    // A queue leaves the map once its files are gone: a failure part-way
    // leaves the rest for the next try (the topic still has queues).
    let ids: Vec<u32> = topic_queues.keys().copied().collect();
    for id in ids {
        if let Some(cq) = topic_queues.get_mut(&id) {
            topic_dir = cq.dir().parent().map(std::path::Path::to_path_buf);
            cq.destroy()?;
            topic_queues.remove(&id);
        }
    }
    queues.remove(topic);
    if let Some(dir) = topic_dir {
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        if let Some(root) = dir.parent() {
            std::fs::File::open(root)?.sync_all()?;
        }
    }
    Ok(n)
}

/// Runs recovery; returns what it did (the valid end of the CommitLog
/// among it).
pub(crate) fn recover(
    cl: &mut CommitLog,
    queues: &mut Queues,
    new_queue: impl Fn(&str, u32) -> ConsumeQueue,
    input: RecoveryInput,
    logger: &Logger,
) -> Result<RecoveryReport> {
    let cl_min = cl.min_offset();
    let mapped_end = cl.max_offset();
    let nothing_flushed = input.checkpoint.is_none_or(|c| c.commit_log_flushed == 0);
    if cl.segment_count() == 0 && nothing_flushed {
        cl.truncate_clean(0)?;
        info!(logger, "new store: nothing to recover");
        return Ok(RecoveryReport::default());
    }
    let clean = input.checkpoint.filter(|c| c.clean);
    if let Some(cp) = clean {
        // No ConsumeQueue at all while the log holds records: the
        // directory was removed (rebuild them, clean stop or not) unless
        // the clean checkpoint says there were none (every topic deleted).
        if input.damaged_from.is_empty()
            && (!input.no_queues || cp.no_queues)
            && cl.first_short_segment().is_none()
            && cp.commit_log_flushed >= cl_min
            && cp.commit_log_flushed <= mapped_end
        {
            cl.truncate_clean(cp.commit_log_flushed)?;
            cl.set_resync_below(cp.commit_log_flushed);
            info!(logger, "clean shutdown: recovery scan skipped"; "end" => cp.commit_log_flushed);
            return Ok(RecoveryReport {
                kind: OpenKind::Clean,
                scanned_from: cp.commit_log_flushed,
                valid_end: cp.commit_log_flushed,
                ..RecoveryReport::default()
            });
        }
    }
    // The checkpoint's offsets are record boundaries (the log's end when it
    // was written): the scan starts exactly there, not at its segment's
    // start, so it covers one checkpoint interval of writes.
    let mut from = match input.checkpoint {
        Some(cp) if !input.no_queues => cp.cq_safe.min(cp.commit_log_flushed),
        _ => cl_min,
    };
    for d in input.damaged_from.iter().chain(&cl.first_short_segment()) {
        from = from.min(*d);
    }
    let from = from.clamp(cl_min, mapped_end);
    // Below this a bad record is damage, not a torn tail: the flushed
    // checkpoint; without one (lost or damaged), every segment before the
    // last (the log rolled past them, so they were complete).
    let last_segment_start = mapped_end.saturating_sub(cl.segment_size()).max(cl_min);
    let trusted_end = input
        .checkpoint
        .map_or(last_segment_start, |c| c.commit_log_flushed);
    let mut first_err = None;
    let mut records = 0u64;
    let mut damaged = Vec::new();
    let mut holes = Vec::new();
    let valid_end = cl.scan_resync(
        from,
        trusted_end,
        |m| {
            records += 1;
            if first_err.is_none() {
                first_err = dispatch_noting_holes(queues, &new_queue, m, &mut holes).err();
            }
        },
        |a, b| damaged.push((a, b)),
    );
    if let Some(e) = first_err {
        return Err(e);
    }
    let placeholders = fill_holes(queues, &holes, &damaged)?;
    if placeholders > 0 {
        warn!(logger, "consume queue entries of damaged records rebuilt as placeholders";
            "entries" => placeholders);
    }
    let damaged: Vec<DamagedRange> = damaged
        .into_iter()
        .map(|(a, b)| quarantine(cl, &input.quarantine_dir, a, b, logger))
        .collect();
    cl.truncate(valid_end)?;
    cl.set_resync_below(valid_end);
    let mut cut = 0;
    for topic_queues in queues.values_mut() {
        for cq in topic_queues.values_mut() {
            cut += usize::from(cq.cut_past(valid_end)?);
        }
    }
    if valid_end < trusted_end {
        warn!(logger, "commit log ends below the flushed checkpoint (segments missing)";
            "valid_end" => valid_end, "checkpoint" => trusted_end);
    }
    let what = if input.checkpoint.is_some() {
        "recovered after unclean shutdown"
    } else {
        "recovered without a checkpoint (lost or damaged): whole log scanned"
    };
    info!(logger, "{}", what;
        "scanned_from" => from, "records" => records, "valid_end" => valid_end,
        "mapped_end" => mapped_end, "queues_cut" => cut,
        "damaged_queues" => input.damaged_from.len(),
        "damaged_records" => damaged.len());
    Ok(RecoveryReport {
        kind: OpenKind::Unclean,
        scanned_from: from,
        scanned_bytes: valid_end.saturating_sub(from),
        scanned_records: records,
        valid_end,
        damaged,
    })
}

/// Copies the damaged range `from..to` to `<quarantine>/<from>.bin` (fsynced)
/// and logs it loudly. A failed copy is logged too: the bytes stay in the
/// CommitLog either way, nothing is zeroed.
fn quarantine(
    cl: &CommitLog,
    dir: &std::path::Path,
    from: u64,
    to: u64,
    logger: &Logger,
) -> DamagedRange {
    let end = to.min(from.saturating_add(MAX_QUARANTINE_BYTES));
    let path = dir.join(format!("{}.bin", file_name(from)));
    let written = cl
        .bytes_between(from, end)
        .ok_or_else(|| std::io::Error::other("range not mapped"))
        .and_then(|bytes| write_synced(dir, &path, bytes));
    let quarantined = match written {
        Ok(()) => Some(path),
        Err(e) => {
            error!(logger, "cannot write the quarantine copy of a damaged record";
                "path" => %path.display(), "error" => %e);
            None
        }
    };
    error!(logger, "DAMAGED RECORD in the commit log: skipped, the records after it kept";
        "from" => from, "to" => to, "bytes" => to - from,
        "quarantine" => quarantined.as_ref().map(|p| p.display().to_string()));
    DamagedRange {
        from,
        to,
        quarantined,
    }
}

fn write_synced(
    dir: &std::path::Path,
    path: &std::path::Path,
    bytes: &[u8],
) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::File::open(dir)?.sync_all()
}
