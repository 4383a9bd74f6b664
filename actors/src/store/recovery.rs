//! Recovery at open: make the CommitLog and the ConsumeQueues agree again.
//!
//! After a clean shutdown (checkpoint flag set, every ConsumeQueue intact)
//! the checkpoint's offset is the end of the log and nothing is scanned.
//! Otherwise the CommitLog is validated record by record (size, magic, CRC
//! and the record's own physical offset) from the start of the segment
//! holding the checkpoint's safe point — or earlier, from the end of the last
//! intact entry of any damaged ConsumeQueue — to the first invalid byte:
//!
//! * every valid record met is re-dispatched (its ConsumeQueue entry is
//!   written at its stored queue offset; idempotent for existing entries);
//! * the log is cut at the first invalid record: the rest of that segment is
//!   zeroed and later segments are deleted, so nothing after damage is ever
//!   served and nothing stale can resurface under a later append;
//! * ConsumeQueue entries pointing at or past the valid end are cut.

use slog::{info, warn, Logger};

use super::checkpoint::Checkpoint;
use super::commit_log::CommitLog;
use super::consume_queue::{ConsumeQueue, CqEntry};
use super::error::Result;
use super::record::{tag_hash, DecodedMessage};
use super::Queues;

/// Everything recovery needs to know besides the files.
pub(crate) struct RecoveryInput {
    pub checkpoint: Option<Checkpoint>,
    /// CommitLog end offsets of the intact prefix of damaged queues (the
    /// CommitLog minimum for a queue with no intact entry).
    pub damaged_from: Vec<u64>,
    /// No ConsumeQueue exists at all (e.g. the directory was removed).
    pub no_queues: bool,
}

/// Writes the ConsumeQueue entry of a stored record.
pub(crate) fn dispatch(
    queues: &mut Queues,
    new_queue: impl Fn(&str, u32) -> ConsumeQueue,
    m: &DecodedMessage<'_>,
) -> Result<()> {
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

/// Runs recovery; returns the valid end of the CommitLog.
pub(crate) fn recover(
    cl: &mut CommitLog,
    queues: &mut Queues,
    new_queue: impl Fn(&str, u32) -> ConsumeQueue,
    input: RecoveryInput,
    logger: &Logger,
) -> Result<u64> {
    let cl_min = cl.min_offset();
    let mapped_end = cl.max_offset();
    let clean = input.checkpoint.filter(|c| c.clean);
    if let Some(cp) = clean {
        if input.damaged_from.is_empty()
            && cl.first_short_segment().is_none()
            && cp.commit_log_flushed >= cl_min
            && cp.commit_log_flushed <= mapped_end
        {
            cl.truncate_clean(cp.commit_log_flushed)?;
            info!(logger, "clean shutdown: recovery scan skipped"; "end" => cp.commit_log_flushed);
            return Ok(cp.commit_log_flushed);
        }
    }
    let ss = cl.segment_size();
    let mut from = match input.checkpoint {
        Some(cp) if !input.no_queues => {
            let safe = cp.cq_safe.min(cp.commit_log_flushed);
            safe - safe % ss
        }
        _ => cl_min,
    };
    for d in input.damaged_from.iter().chain(&cl.first_short_segment()) {
        from = from.min(*d);
    }
    let from = from.clamp(cl_min, mapped_end);
    let mut first_err = None;
    let mut records = 0u64;
    let valid_end = cl.scan(from, |m| {
        records += 1;
        if first_err.is_none() {
            first_err = dispatch(queues, &new_queue, m).err();
        }
    });
    if let Some(e) = first_err {
        return Err(e);
    }
    cl.truncate(valid_end)?;
    let mut cut = 0;
    for topic_queues in queues.values_mut() {
        for cq in topic_queues.values_mut() {
            cut += usize::from(cq.cut_past(valid_end)?);
        }
    }
    if let Some(cp) = input.checkpoint {
        if valid_end < cp.commit_log_flushed {
            warn!(logger, "commit log damaged below the flushed checkpoint";
                "valid_end" => valid_end, "checkpoint" => cp.commit_log_flushed);
        }
    }
    info!(logger, "recovered after unclean shutdown";
        "scanned_from" => from, "records" => records, "valid_end" => valid_end,
        "mapped_end" => mapped_end, "queues_cut" => cut,
        "damaged_queues" => input.damaged_from.len());
    Ok(valid_end)
}
