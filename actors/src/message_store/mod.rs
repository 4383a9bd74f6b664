//! Skylark's storage engine: RocketMQ's CommitLog / ConsumeQueue design in
//! plain Rust, owned at run time by the `Storage` actor
//! ([`crate::storage`]) and testable without an actix System.
//!
//! * [`record`]: the record format, written straight into mapped files and
//!   sent as-is to consumers, who parse it with [`record::decode`].
//! * [`commit_log`]: every message once, in fixed-size mapped segments.
//! * [`consume_queue`]: per topic/queue 20-byte index entries; a queue
//!   offset is an entry index.
//! * [`index_file`]: RocketMQ's IndexFile (hash of `topic#key` → CommitLog
//!   offset), written on append, rebuilt at open; `query` answers lookups
//!   by key and by time and runs a caller's [`RecordFilter`] (the broker's
//!   SQL-92 filter) during reads; the engine itself knows no filter syntax.
//! * [`flush`]: the flusher thread (fsync off the store thread, group commit).
//! * [`prefault`]: a thread that maps the next pages of the active segment
//!   before the writer touches them (page faults off the store thread).
//! * [`checkpoint`] and [`recovery`]: what survives a crash and how the files
//!   are made consistent again at open; [`queue_load`]: what a fault left of
//!   the ConsumeQueues (lost first files, corrupt files set aside, empty
//!   directories).
//! * [`retention`]: deleting old segments, refusing writes on a full disk.
//!
//! Memory: nothing is kept per stored message; per queue only its mapped
//! files and min/max offsets. The hot path (`append`) encodes into the mapped
//! segment with no per-message heap allocation.

pub mod checkpoint;
pub mod commit_log;
pub mod config;
pub mod consume_queue;
pub mod epoch;
pub mod error;
#[cfg(test)]
mod fault_tests;
pub mod flush;
pub mod index_file;
pub mod mapped_file;
pub mod prefault;
mod query;
mod queue_load;
pub mod record;
mod recovery;
pub mod replica;
pub mod retention;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use slog::{error, info, o, warn, Logger};

pub use checkpoint::Checkpoint;
pub use config::{FlushMode, StoreConfig};
pub use consume_queue::CqEntry;
pub use error::{Result, StoreError};
pub use flush::FlushReply;
pub use index_file::KeyWindow;
pub use queue_load::stored_queue_counts;
pub use record::{decode, tag_hash, AppendMessage, DecodedMessage, MessageOf};
pub use recovery::{DamagedRange, OpenKind, RecoveryReport};
pub use retention::{DiskUsage, FixedDiskUsage, RetentionReport, StatvfsDiskUsage};

use commit_log::CommitLog;
use consume_queue::ConsumeQueue;
use flush::Flusher;
use index_file::IndexService;
use record::{Placement, MESSAGE_MAGIC, OFF_STORE_TIMESTAMP};

type Queues = HashMap<String, HashMap<u32, ConsumeQueue>>;

/// The topic of the record [`Store::drop_topic`] writes, whose body names
/// the deleted topic. No client can send to it: `:` is in no valid topic
/// name (`skylark_codec::validate_topic_name`), and [`Store::append`]
/// refuses it whatever the path.
pub const TOPIC_DELETED: &str = "skylark:topic-deleted";

/// A check on a stored record, run by [`Store::read_filtered`] after the
/// tag hash matched. The store decodes the record and asks; what the check
/// means (the broker's SQL-92 property filter, a test's closure) is the
/// caller's business, so the engine does not depend on any filter language.
pub trait RecordFilter {
    /// Whether `message` is served.
    fn accepts(&self, message: &DecodedMessage<'_>) -> bool;
}

/// No record filter, for [`Store::read_filtered`].
pub const UNFILTERED: Option<&dyn RecordFilter> = None;

impl<F: Fn(&DecodedMessage<'_>) -> bool> RecordFilter for F {
    fn accepts(&self, message: &DecodedMessage<'_>) -> bool {
        self(message)
    }
}

/// Entries a read may skip over (tag filter) before answering.
const MAX_FILTER_SCAN: u64 = 16_000;

/// Where one appended message was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendResult {
    pub queue_id: u32,
    pub queue_offset: u64,
    pub physical_offset: u64,
    pub size: u32,
    pub store_timestamp: i64,
}

/// The outcome of [`Store::append`], in batch order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendBatchResult {
    pub results: Vec<AppendResult>,
    /// CommitLog end after the batch: what a flush must cover.
    pub end_offset: u64,
    /// Sync flush only: the fsync did not complete within
    /// `sync_flush_timeout_ms`. The messages are stored (RocketMQ's
    /// `FLUSH_DISK_TIMEOUT` send status). Always false from [`Store::append`].
    pub flush_timed_out: bool,
    /// When the batch was appended: a SYNC_MASTER's wait for a slave counts
    /// from here, alongside the fsync wait.
    pub appended_at: Instant,
}

/// Status of a read, in RocketMQ's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadStatus {
    /// At least one record is returned.
    Found,
    /// The offset is the queue's max: nothing new yet (park the pull).
    NoNewMessage,
    /// Entries were scanned but none matched the tag filter.
    NoMatchedMessage,
    /// The offset is below the queue's min (deleted by retention).
    OffsetTooSmall,
    /// The offset is past the queue's max.
    OffsetTooBig,
    /// The topic/queue has never stored a message.
    NoQueue,
}

/// A ConsumeQueue entry whose record failed validation on a read: it was
/// not served, the read went on past it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedEntry {
    pub queue_offset: u64,
    pub physical_offset: u64,
    pub size: u32,
    /// Why the record was refused (CRC mismatch, bad magic, size mismatch).
    pub reason: String,
}

impl From<DamagedEntry> for skylark_codec::DamagedRecord {
    fn from(d: DamagedEntry) -> Self {
        skylark_codec::DamagedRecord {
            queue_offset: d.queue_offset,
            physical_offset: d.physical_offset,
            size: d.size,
            reason: d.reason,
        }
    }
}

/// The outcome of [`Store::read_filtered`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadResult {
    pub status: ReadStatus,
    /// Stored records as they are on disk, as slices of the mapped
    /// CommitLog (decode each with [`record::decode`]).
    pub records: Records,
    pub count: u32,
    /// Where the next read of this queue should start.
    pub next_queue_offset: u64,
    pub min_offset: u64,
    pub max_offset: u64,
    /// Entries of the scanned range whose records are damaged: skipped
    /// (`next_queue_offset` is past them) and reported, so a consumer moves
    /// on and an operator sees what was lost. When a read met only damaged
    /// records the status is `NoMatchedMessage`.
    pub damaged: Vec<DamagedEntry>,
}

/// The records of one read: slices of the mapped CommitLog, one per run
/// of records adjacent on disk, that concatenated are the records as
/// stored. Pull answers write the slices to the socket as they are (one
/// copy, the kernel's); other readers take [`Records::to_bytes`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Records {
    chunks: Vec<Bytes>,
    len: usize,
}

impl Records {
    /// Records from slices in order.
    pub fn from_chunks(chunks: Vec<Bytes>) -> Records {
        let len = chunks.iter().map(Bytes::len).sum();
        Records { chunks, len }
    }

    /// The slices, in order.
    pub fn chunks(&self) -> &[Bytes] {
        &self.chunks
    }

    /// Total bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no records.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The records as one contiguous buffer (a copy only when they are in
    /// more than one slice).
    pub fn to_bytes(&self) -> Bytes {
        match self.chunks.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            many => {
                let mut b = BytesMut::with_capacity(self.len);
                for c in many {
                    b.extend_from_slice(c);
                }
                b.freeze()
            }
        }
    }

    /// Takes the slices out.
    pub fn into_chunks(self) -> Vec<Bytes> {
        self.chunks
    }
}

impl From<Bytes> for Records {
    fn from(b: Bytes) -> Records {
        Records::from_chunks(if b.is_empty() { Vec::new() } else { vec![b] })
    }
}

/// Damaged records this store knows of (found by recovery or by reads);
/// each is logged once.
#[derive(Default)]
struct DamageLog {
    /// Physical offsets already logged (bounded; past the bound a damaged
    /// record is counted once per read that meets it).
    seen: std::sync::Mutex<std::collections::HashSet<u64>>,
    count: std::sync::atomic::AtomicU64,
}

/// Distinct damaged offsets remembered for log-once.
const MAX_DAMAGE_SEEN: usize = 65_536;

impl DamageLog {
    /// Records damage at `offset`; true the first time it is seen.
    fn note(&self, offset: u64) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let new = if seen.len() < MAX_DAMAGE_SEEN {
            seen.insert(offset)
        } else {
            !seen.contains(&offset)
        };
        if new {
            self.count
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        new
    }
}

/// A topic/queue and its offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueInfo {
    pub topic: String,
    pub queue_id: u32,
    pub min_offset: u64,
    pub max_offset: u64,
}

/// The storage engine: one CommitLog, its ConsumeQueues, the flusher.
pub struct Store {
    config: StoreConfig,
    logger: Logger,
    commit_log: CommitLog,
    queues: Queues,
    flusher: Flusher,
    index: IndexService,
    disk_usage: Box<dyn DiskUsage>,
    disk_full: Option<f64>,
    sizes: Vec<usize>,
    /// Index key hashes of the batch being appended, and where each
    /// message's hashes end in it (reused buffers).
    key_hashes: Vec<u32>,
    key_ends: Vec<usize>,
    /// Per queue the batch appends to: the index of its first message in
    /// the batch and how many messages it gets (reused buffer).
    queue_counts: Vec<(usize, u64)>,
    shut_down: bool,
    /// Appends are staged and written by [`Store::commit_writes`], not at
    /// the end of each [`Store::append`].
    defer_writes: bool,
    /// A CommitLog write failed: the log's end counts bytes that are not in
    /// the file, so no further append is taken until a restart recovers.
    write_failed: Option<String>,
    /// What recovery did at open.
    recovery: RecoveryReport,
    damage: DamageLog,
    /// `<data_dir>/lock`, locked while this store is open (released when
    /// the file closes, also when the process dies).
    _dir_lock: std::fs::File,
}

/// Locks `<dir>/lock` for this process (an advisory `flock`, as RocketMQ's
/// store locks its `lock` file) and writes our pid into it;
/// [`StoreError::InUse`] naming the holder's pid when another process has
/// it.
pub(crate) fn lock_data_dir(dir: &std::path::Path, logger: &Logger) -> Result<std::fs::File> {
    use std::io::{Read, Write};
    let path = dir.join("lock");
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)?;
    match f.try_lock() {
        Ok(()) => {
            f.set_len(0)?;
            writeln!(f, "{}", std::process::id())?;
            Ok(f)
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = f.read_to_string(&mut pid);
            let pid = pid.trim();
            Err(StoreError::InUse {
                dir: dir.display().to_string(),
                holder: if pid.is_empty() {
                    String::new()
                } else {
                    format!(" (pid {pid})")
                },
            })
        }
        // A file system without locks (some NFS or CIFS mounts): run as
        // before, unguarded, and say so.
        Err(std::fs::TryLockError::Error(e))
            if e.kind() == std::io::ErrorKind::Unsupported || e.raw_os_error() == Some(37) /* ENOLCK */ =>
        {
            warn!(logger, "the file system cannot lock the data directory: nothing stops a second process from opening it";
                "lock" => %path.display(), "error" => %e);
            Ok(f)
        }
        Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
    }
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn queue_factory(config: &StoreConfig) -> impl Fn(&str, u32) -> ConsumeQueue {
    let root = config.consume_queue_dir();
    let epf = config.cq_entries_per_file;
    move |topic, queue_id| ConsumeQueue::new(root.join(topic).join(queue_id.to_string()), epf)
}

/// The ConsumeQueue of `topic`/`queue_id`, created (in memory) if new.
fn queue_or_new<'q>(
    queues: &'q mut Queues,
    config: &StoreConfig,
    topic: &str,
    queue_id: u32,
) -> &'q mut ConsumeQueue {
    // No `String` for a topic already there (the hot path); the borrow
    // checker cannot return the first lookup's borrow, hence two.
    if !queues.contains_key(topic) {
        queues.insert(topic.to_string(), HashMap::new());
    }
    let topic_queues = queues.get_mut(topic).expect("inserted above");
    topic_queues
        .entry(queue_id)
        .or_insert_with(|| queue_factory(config)(topic, queue_id))
}

/// Whether two messages of a batch go to the same queue.
fn same_queue(a: &AppendMessage<'_>, b: &AppendMessage<'_>) -> bool {
    a.queue_id == b.queue_id && a.topic == b.topic
}

/// Creates every ConsumeQueue file the batch's entries need, before any
/// record is written, and returns the queue of the batch's first message
/// for the append to go on with (`None` for an empty batch). `counts` (a
/// reused buffer) gets, per queue, its first message and message count.
/// One lookup per queue; a message of the same queue as the one before it
/// is counted without a search.
fn reserve_queue_files<'q>(
    queues: &'q mut Queues,
    config: &StoreConfig,
    counts: &mut Vec<(usize, u64)>,
    batch: &[AppendMessage<'_>],
) -> Result<Option<&'q mut ConsumeQueue>> {
    counts.clear();
    let mut last = 0;
    for (i, m) in batch.iter().enumerate() {
        let of_m = |&(first, _): &(usize, u64)| same_queue(&batch[first], m);
        if !counts.get(last).is_some_and(of_m) {
            last = counts.iter().position(of_m).unwrap_or_else(|| {
                counts.push((i, 0));
                counts.len() - 1
            });
        }
        counts[last].1 += 1;
    }
    let Some((&(first, n), rest)) = counts.split_first() else {
        return Ok(None);
    };
    for &(i, n) in rest {
        let m = &batch[i];
        queue_or_new(queues, config, m.topic, m.queue_id).reserve(n)?;
    }
    let m = &batch[first];
    let cq = queue_or_new(queues, config, m.topic, m.queue_id);
    cq.reserve(n)?;
    Ok(Some(cq))
}

impl Store {
    /// Opens (creating if needed) the store in `config.data_dir` and
    /// recovers it; disk usage comes from `statvfs`.
    pub fn open(config: StoreConfig, logger: Logger) -> Result<Store> {
        Store::open_with_disk_usage(config, logger, Box::new(StatvfsDiskUsage))
    }

    /// [`Store::open`] with an injected disk usage source.
    pub fn open_with_disk_usage(
        config: StoreConfig,
        logger: Logger,
        disk_usage: Box<dyn DiskUsage>,
    ) -> Result<Store> {
        config.validate()?;
        let logger = logger.new(o!("component" => "store"));
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            // The bare error ("File exists") would not say which path.
            std::io::Error::new(
                e.kind(),
                format!(
                    "cannot create the data directory {}: {e}",
                    config.data_dir.display()
                ),
            )
        })?;
        let dir_lock = lock_data_dir(&config.data_dir, &logger)?;
        let cp_path = config.checkpoint_path();
        let checkpoint = Checkpoint::load(&cp_path).unwrap_or_else(|e| {
            warn!(logger, "ignoring checkpoint"; "error" => %e);
            None
        });
        let mut commit_log = CommitLog::open(
            &config.commit_log_dir(),
            config.segment_size,
            logger.clone(),
        )?;
        commit_log.set_disk_hard_limit(config.disk_hard_limit_ratio);
        commit_log.set_zero_ahead(config.flush_mode == FlushMode::Sync);
        let loaded = queue_load::load_queues(&config, commit_log.min_offset(), &logger)?;
        let mut queues = loaded.queues;
        let input = recovery::RecoveryInput {
            checkpoint,
            damaged_from: loaded.damaged_from,
            no_queues: queues.is_empty(),
            quarantine_dir: config.data_dir.join("quarantine"),
        };
        let report = recovery::recover(
            &mut commit_log,
            &mut queues,
            queue_factory(&config),
            input,
            &logger,
        )?;
        queue_load::report_missing_heads(&mut queues, &loaded.missing_heads, &logger);
        let end = report.valid_end;
        // After an unclean stop the index is trusted only up to where the
        // old checkpoint says its files were fsynced; it is repaired before
        // the new checkpoint below vouches for it.
        let index_durable = (report.kind == recovery::OpenKind::Unclean)
            .then(|| checkpoint.map_or(0, |c| c.cq_safe.min(c.commit_log_flushed)));
        let mut index = query::open_index(&config, &commit_log, end, index_durable, &logger)?;
        // Make the recovered state durable and mark the store as running
        // (not clean) before accepting writes.
        commit_log.sync_all()?;
        for cq in queues.values_mut().flat_map(HashMap::values_mut) {
            cq.sync_all()?;
        }
        index.sync_all()?;
        Checkpoint {
            commit_log_flushed: end,
            cq_safe: end,
            clean: false,
            no_queues: false,
        }
        .store(&cp_path)?;
        let flusher = Flusher::start(
            commit_log.segment_files(),
            config.segment_size,
            end,
            cp_path,
            logger.clone(),
        )?;
        info!(logger, "store opened"; "dir" => %config.data_dir.display(),
            "min_offset" => commit_log.min_offset(), "max_offset" => end,
            "queues" => queues.values().map(HashMap::len).sum::<usize>());
        let mut store = Store {
            config,
            logger,
            commit_log,
            queues,
            flusher,
            index,
            disk_usage,
            disk_full: None,
            sizes: Vec::new(),
            key_hashes: Vec::new(),
            key_ends: Vec::new(),
            queue_counts: Vec::new(),
            shut_down: false,
            defer_writes: false,
            write_failed: None,
            recovery: RecoveryReport::default(),
            damage: DamageLog::default(),
            _dir_lock: dir_lock,
        };
        for d in &report.damaged {
            store.damage.note(d.from);
        }
        store.recovery = report;
        store.check_disk();
        Ok(store)
    }

    /// The configuration the store runs with.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// What recovery did when the store was opened (kind of open, scan
    /// length, damaged ranges skipped and quarantined).
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// Damaged records known since open: ranges recovery skipped below the
    /// flushed checkpoint plus records reads refused (each counted once).
    /// For the admin view and metrics.
    pub fn damaged_records(&self) -> u64 {
        self.damage.count.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Checks the record a ConsumeQueue entry points at; a damaged one is
    /// logged (once) and counted, and its reason returned.
    fn check_record(&self, queue: Option<(&str, u32, u64)>, e: &CqEntry) -> Option<String> {
        let bytes = self
            .commit_log
            .slice(e.physical_offset, e.size as usize)
            .unwrap_or_default();
        let reason = record::verify(bytes, e.size, e.physical_offset).err()?;
        if self.damage.note(e.physical_offset) {
            error!(self.logger, "DAMAGED RECORD met by a read: not served, skipped";
                "queue" => queue.map(|(t, q, o)| format!("{t}/{q} at queue offset {o}")),
                "physical_offset" => e.physical_offset, "size" => e.size,
                "reason" => &reason);
        }
        Some(reason)
    }

    /// Stores a batch of messages (any topics/queues). The whole batch is
    /// validated first: an invalid or oversized message fails the batch with
    /// nothing written. Returns where each message went.
    pub fn append(&mut self, batch: &[AppendMessage<'_>]) -> Result<AppendBatchResult> {
        self.check_writable()?;
        if let Some(usage) = self.disk_full {
            return Err(StoreError::DiskFull {
                usage,
                limit: self.config.disk_hard_limit_ratio,
            });
        }
        let max_record = self.commit_log.max_record_size();
        let mut sizes = std::mem::take(&mut self.sizes);
        sizes.clear();
        for m in batch {
            let checked = if m.topic == TOPIC_DELETED {
                Err(StoreError::BadMessage(format!(
                    "topic {TOPIC_DELETED:?} is reserved"
                )))
            } else {
                m.validate(self.config.max_message_size, max_record)
            };
            match checked {
                Ok(s) => sizes.push(s),
                Err(e) => {
                    self.sizes = sizes;
                    return Err(e);
                }
            }
        }
        let mut hashes = std::mem::take(&mut self.key_hashes);
        let mut ends = std::mem::take(&mut self.key_ends);
        hashes.clear();
        ends.clear();
        for m in batch {
            let keys = query::index_keys(m.keys, m.properties);
            self.index.hash_and_prefetch(m.topic, keys, &mut hashes);
            ends.push(hashes.len());
        }
        let mut result = self.append_validated(batch, &sizes, &hashes, &ends);
        self.sizes = sizes;
        self.key_hashes = hashes;
        self.key_ends = ends;
        if !self.defer_writes {
            if let Err(e) = self.commit_writes() {
                result = Err(e);
            }
        }
        result
    }

    fn check_writable(&self) -> Result<()> {
        if self.shut_down {
            return Err(StoreError::ShutDown);
        }
        if let Some(e) = &self.write_failed {
            return Err(StoreError::FlushFailed(format!(
                "an earlier commit log write failed ({e}); writes are refused until a restart recovers the store"
            )));
        }
        Ok(())
    }

    /// Deletes `topic`'s ConsumeQueues, as RocketMQ's `deleteTopics` does:
    /// its messages stay in the CommitLog until retention deletes their
    /// segments, but no queue serves them any more, and a topic created
    /// again under the name starts at queue offset 0. The deletion is
    /// itself a record of the CommitLog ([`TOPIC_DELETED`]), so a slave
    /// replicating the log, and a recovery re-dispatching it, drop the same
    /// queues at the same point. Allowed above the disk's hard limit (the
    /// record is a few bytes; it needs no new segment unless the current
    /// one is full). A topic without queues writes nothing. Returns how many
    /// queues there were and the log's end after the record: flush to it
    /// before answering.
    pub fn drop_topic(&mut self, topic: &str, host: std::net::SocketAddr) -> Result<(usize, u64)> {
        self.check_writable()?;
        if !self.queues.contains_key(topic) {
            return Ok((0, self.commit_log.max_offset()));
        }
        let store_timestamp = now_millis();
        let m = AppendMessage {
            topic: TOPIC_DELETED,
            queue_id: 0,
            flag: 0,
            tags: None,
            keys: None,
            properties: &[],
            body: topic.as_bytes(),
            born_timestamp: store_timestamp,
            born_host: host,
            store_host: host,
            reconsume_times: 0,
            sys_flag: 0,
            prepared_tx_offset: 0,
        };
        let size = m.validate(
            self.config.max_message_size,
            self.commit_log.max_record_size(),
        )?;
        self.commit_log.reserve(std::iter::once(size))?;
        self.commit_log.append_with(size, |buf, physical_offset| {
            let at = Placement {
                queue_offset: 0,
                physical_offset,
                store_timestamp,
            };
            record::encode_into(&m, at, buf);
        })?;
        if !self.defer_writes {
            self.commit_writes()?;
        }
        let queues = recovery::drop_topic_queues(&mut self.queues, topic)?;
        info!(self.logger, "topic's consume queues deleted"; "topic" => topic, "queues" => queues,
            "at" => self.commit_log.max_offset());
        Ok((queues, self.commit_log.max_offset()))
    }

    /// From now on [`Store::append`] only stages its records; the caller
    /// writes them with [`Store::commit_writes`] before it reads, flushes
    /// or answers (the Storage actor does so once per `PutGroups`: one
    /// `pwrite` for every send of the batch).
    pub fn defer_writes(&mut self) {
        self.defer_writes = true;
    }

    /// Writes what appends staged to the CommitLog and ends a
    /// [`Store::defer_writes`] span. A failed write fails every append it
    /// held (the caller must answer them with this error) and the store
    /// refuses later appends: the log's end already counts those bytes.
    pub fn commit_writes(&mut self) -> Result<()> {
        self.defer_writes = false;
        match self.commit_log.commit() {
            Ok(()) => Ok(()),
            Err(e) => {
                error!(self.logger, "COMMIT LOG WRITE FAILED: refusing writes until restart";
                    "error" => %e, "end" => self.commit_log.max_offset());
                self.write_failed = Some(e.to_string());
                Err(e)
            }
        }
    }

    /// Appends a validated batch. Every step that can fail on the disk
    /// (CommitLog segments, ConsumeQueue files, index files) runs before
    /// the first record is written: a refused batch stored nothing, so a
    /// producer's retry stores one copy, not two.
    fn append_validated(
        &mut self,
        batch: &[AppendMessage<'_>],
        sizes: &[usize],
        key_hashes: &[u32],
        key_ends: &[usize],
    ) -> Result<AppendBatchResult> {
        let store_timestamp = now_millis();
        self.commit_log.reserve(sizes.iter().copied())?;
        let first_queue = reserve_queue_files(
            &mut self.queues,
            &self.config,
            &mut self.queue_counts,
            batch,
        )?;
        self.index
            .reserve(key_hashes.len(), store_timestamp.max(0) as u64)?;
        let mut results = Vec::with_capacity(batch.len());
        if let Some(mut cq) = first_queue {
            // `cq` is the queue of `batch[cq_of]`: looked up again only
            // where the batch moves to another queue.
            let (mut cq_of, mut key_start) = (0, 0);
            for (i, ((m, &size), &key_end)) in batch.iter().zip(sizes).zip(key_ends).enumerate() {
                if !same_queue(&batch[cq_of], m) {
                    cq = queue_or_new(&mut self.queues, &self.config, m.topic, m.queue_id);
                    cq_of = i;
                }
                // Its file was created by `reserve_queue_files`.
                let queue_offset = cq.max_offset();
                let physical_offset =
                    self.commit_log.append_with(size, |buf, physical_offset| {
                        let at = Placement {
                            queue_offset,
                            physical_offset,
                            store_timestamp,
                        };
                        record::encode_into(m, at, buf);
                    })?;
                let entry = CqEntry {
                    physical_offset,
                    size: size as u32,
                    tag_hash: tag_hash(m.tags.unwrap_or("")),
                };
                cq.put(queue_offset, entry)?;
                self.index.index_hashed(
                    key_hashes[key_start..key_end].iter().copied(),
                    physical_offset,
                    physical_offset + size as u64,
                    store_timestamp,
                )?;
                key_start = key_end;
                results.push(AppendResult {
                    queue_id: m.queue_id,
                    queue_offset,
                    physical_offset,
                    size: size as u32,
                    store_timestamp,
                });
            }
        }
        Ok(AppendBatchResult {
            results,
            end_offset: self.commit_log.max_offset(),
            flush_timed_out: false,
            appended_at: Instant::now(),
        })
    }

    fn queue(&self, topic: &str, queue_id: u32) -> Option<&ConsumeQueue> {
        self.queues.get(topic)?.get(&queue_id)
    }

    /// Reads up to `max_messages` records (and about `max_bytes`, at least
    /// one record) of a queue from `queue_offset`. With a tag filter, entries
    /// whose tag hash is not listed are skipped using the ConsumeQueue only;
    /// then records `filter` does not accept are skipped (decoded from the
    /// mapped file). [`UNFILTERED`] reads without a record filter.
    #[allow(clippy::too_many_arguments)]
    pub fn read_filtered<F: RecordFilter + ?Sized>(
        &self,
        topic: &str,
        queue_id: u32,
        queue_offset: u64,
        max_messages: usize,
        max_bytes: usize,
        tag_filter: Option<&[u64]>,
        filter: Option<&F>,
    ) -> Result<ReadResult> {
        let empty = |status, next, min, max| ReadResult {
            status,
            records: Records::default(),
            count: 0,
            next_queue_offset: next,
            min_offset: min,
            max_offset: max,
            damaged: Vec::new(),
        };
        let Some(cq) = self.queue(topic, queue_id) else {
            return Ok(empty(ReadStatus::NoQueue, 0, 0, 0));
        };
        let (min, max) = (cq.min_offset(), cq.max_offset());
        if queue_offset < min {
            return Ok(empty(ReadStatus::OffsetTooSmall, min, min, max));
        }
        if queue_offset > max {
            return Ok(empty(ReadStatus::OffsetTooBig, max, min, max));
        }
        let mut picked: Vec<CqEntry> = Vec::with_capacity(max_messages.min(256));
        let mut damaged = Vec::new();
        let (mut idx, mut bytes, mut skipped) = (queue_offset, 0usize, 0u64);
        let scan_end = max.min(queue_offset + MAX_FILTER_SCAN + max_messages as u64);
        let cl_min = self.commit_log.min_offset();
        while idx < scan_end && picked.len() < max_messages {
            let Some(e) = cq.get(idx) else {
                // A hole below the max (an entry lost with its record when
                // a ConsumeQueue was rebuilt past damage): report, step on.
                damaged.push(DamagedEntry {
                    queue_offset: idx,
                    physical_offset: 0,
                    size: 0,
                    reason: "consume queue entry missing".into(),
                });
                idx += 1;
                continue;
            };
            if tag_filter.is_some_and(|f| !f.contains(&e.tag_hash)) || e.physical_offset < cl_min {
                skipped += 1;
                idx += 1;
                continue;
            }
            if !picked.is_empty() && bytes + e.size as usize > max_bytes {
                break;
            }
            // A damaged record is never served: it is reported and the
            // read goes on past it, so the queue does not stall on it.
            if let Some(reason) = self.check_record(Some((topic, queue_id, idx)), &e) {
                damaged.push(DamagedEntry {
                    queue_offset: idx,
                    physical_offset: e.physical_offset,
                    size: e.size,
                    reason,
                });
                idx += 1;
                continue;
            }
            if filter.is_some_and(|f| !self.record_accepted(&e, f)) {
                skipped += 1;
                idx += 1;
                continue;
            }
            bytes += e.size as usize;
            picked.push(e);
            idx += 1;
        }
        let mut chunks = Vec::new();
        let mut i = 0;
        while i < picked.len() {
            // Runs of records adjacent in the CommitLog are one slice.
            let start = picked[i].physical_offset;
            let mut end = picked[i].end();
            let mut j = i + 1;
            while j < picked.len() && picked[j].physical_offset == end {
                end = picked[j].end();
                j += 1;
            }
            match self.commit_log.slice_shared(start, (end - start) as usize) {
                Some(s) => chunks.push(s),
                None => {
                    for e in &picked[i..j] {
                        let s = self
                            .commit_log
                            .slice_shared(e.physical_offset, e.size as usize)
                            .ok_or(StoreError::NoRecord(e.physical_offset))?;
                        chunks.push(s);
                    }
                }
            }
            i = j;
        }
        let status = if !picked.is_empty() {
            ReadStatus::Found
        } else if skipped > 0 || !damaged.is_empty() {
            ReadStatus::NoMatchedMessage
        } else {
            ReadStatus::NoNewMessage
        };
        Ok(ReadResult {
            status,
            records: Records::from_chunks(chunks),
            count: picked.len() as u32,
            next_queue_offset: idx,
            min_offset: min,
            max_offset: max,
            damaged,
        })
    }

    /// The record at `physical_offset` (lookup by message id). `size` 0
    /// means "read it from the record header". A damaged record answers
    /// `NoRecord`.
    pub fn read_at(&self, physical_offset: u64, size: u32) -> Result<Bytes> {
        let not_found = StoreError::NoRecord(physical_offset);
        let head = self
            .commit_log
            .slice(physical_offset, 8)
            .ok_or(not_found.clone())?;
        let (stored, magic) = record::peek_header(head).ok_or(not_found.clone())?;
        if magic != MESSAGE_MAGIC || (size != 0 && size != stored) {
            return Err(not_found);
        }
        let rec = self
            .commit_log
            .slice(physical_offset, stored as usize)
            .ok_or(not_found.clone())?;
        // A damaged record is not served: every caller treats `NoRecord` as
        // "gone" and moves on (the damage is logged once and counted).
        let entry = CqEntry {
            physical_offset,
            size: stored,
            tag_hash: 0,
        };
        if self.check_record(None, &entry).is_some() {
            return Err(not_found);
        }
        Ok(Bytes::copy_from_slice(rec))
    }

    /// Next queue offset to be written, if the queue exists.
    pub fn max_queue_offset(&self, topic: &str, queue_id: u32) -> Option<u64> {
        self.queue(topic, queue_id).map(ConsumeQueue::max_offset)
    }

    /// First queue offset still stored, if the queue exists.
    pub fn min_queue_offset(&self, topic: &str, queue_id: u32) -> Option<u64> {
        self.queue(topic, queue_id).map(ConsumeQueue::min_offset)
    }

    fn store_timestamp_at(&self, e: &CqEntry) -> Option<i64> {
        let b = self
            .commit_log
            .slice(e.physical_offset + OFF_STORE_TIMESTAMP as u64, 8)?;
        Some(record::be_u64(b, 0) as i64)
    }

    /// The first queue offset whose message was stored at or after `millis`
    /// (the max offset if none; 0 for an unknown queue).
    pub fn queue_offset_by_time(&self, topic: &str, queue_id: u32, millis: i64) -> u64 {
        let Some(cq) = self.queue(topic, queue_id) else {
            return 0;
        };
        let (mut lo, mut hi) = (cq.min_offset(), cq.max_offset());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let ts = cq.get(mid).and_then(|e| self.store_timestamp_at(&e));
            let older = !matches!(ts, Some(ts) if ts >= millis);
            if older {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Every topic/queue with its offsets (to rebuild broker state).
    pub fn topics_and_queues(&self) -> Vec<QueueInfo> {
        let mut out: Vec<QueueInfo> = self
            .queues
            .iter()
            .flat_map(|(topic, qs)| {
                qs.iter().map(|(id, cq)| QueueInfo {
                    topic: topic.clone(),
                    queue_id: *id,
                    min_offset: cq.min_offset(),
                    max_offset: cq.max_offset(),
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.topic, a.queue_id).cmp(&(&b.topic, b.queue_id)));
        out
    }

    /// First physical offset still stored.
    pub fn min_physical_offset(&self) -> u64 {
        self.commit_log.min_offset()
    }

    /// CommitLog end.
    pub fn max_physical_offset(&self) -> u64 {
        self.commit_log.max_offset()
    }

    /// CommitLog offset known to be on disk.
    pub fn flushed_offset(&self) -> u64 {
        self.flusher.flushed()
    }

    /// fdatasync calls made on CommitLog segments by the flusher.
    pub fn fsync_count(&self) -> u64 {
        self.flusher.fsync_count()
    }

    /// Duration of the latest and of the longest CommitLog flush, in µs.
    pub fn flush_latency_us(&self) -> (u64, u64) {
        self.flusher.flush_latency_us()
    }

    /// Number of CommitLog segment files.
    pub fn segment_count(&self) -> usize {
        self.commit_log.segment_count()
    }

    /// Paths of the CommitLog segments, oldest first.
    pub fn segment_paths(&self) -> Vec<PathBuf> {
        self.commit_log.segment_paths()
    }

    /// Group commit: the reply resolves once `..end_offset` is on disk.
    pub fn request_flush(&self, end_offset: u64) -> FlushReply {
        self.flusher.request(end_offset)
    }

    /// The periodic tick: flushes the CommitLog and the ConsumeQueue files
    /// written since the last tick on the flusher thread, then writes the
    /// checkpoint there; also refreshes the disk-full state. Never blocks on
    /// the disk.
    pub fn flush_tick(&mut self) -> Result<()> {
        let mut files = Vec::new();
        for cq in self.queues.values_mut().flat_map(HashMap::values_mut) {
            cq.take_dirty_files(&mut files)?;
        }
        self.index.take_dirty_files(&mut files)?;
        let end = self.commit_log.max_offset();
        if !files.is_empty() || end > self.flusher.flushed() {
            self.flusher.request_checkpoint(end, files);
        }
        self.check_disk();
        Ok(())
    }

    /// Flushes everything on the calling thread (tests, tools).
    pub fn flush_blocking(&mut self) -> Result<()> {
        self.commit_writes()?;
        self.commit_log.sync_all()?;
        for cq in self.queues.values_mut().flat_map(HashMap::values_mut) {
            cq.sync_all()?;
        }
        self.index.sync_all()?;
        self.flusher.mark_flushed(self.commit_log.max_offset());
        Ok(())
    }

    /// Flushes everything and writes a clean checkpoint, so the next open
    /// skips the recovery scan. Later appends answer `ShutDown`.
    pub fn shutdown(&mut self) -> Result<()> {
        if self.shut_down {
            return Ok(());
        }
        self.flusher.stop();
        self.flush_blocking()?;
        let end = self.commit_log.max_offset();
        // Every topic deleted: say so, or the next open would take the
        // empty queue directory for a lost one and rescan the whole log.
        // A queue without a file (its first could not be created) leaves
        // no directory: it does not count.
        let no_queues = self
            .queues
            .values()
            .flat_map(HashMap::values)
            .all(ConsumeQueue::has_no_file);
        Checkpoint {
            commit_log_flushed: end,
            cq_safe: end,
            clean: true,
            no_queues,
        }
        .store(&self.config.checkpoint_path())?;
        self.shut_down = true;
        info!(self.logger, "store shut down cleanly"; "end" => end, "no_queues" => no_queues);
        Ok(())
    }

    /// Reads the disk usage and updates the disk-full state; returns it.
    pub fn check_disk(&mut self) -> f64 {
        let usage = match self.disk_usage.usage_ratio(&self.config.data_dir) {
            Ok(u) => u,
            Err(e) => {
                error!(self.logger, "disk usage unavailable"; "error" => %e);
                return self.disk_full.unwrap_or(0.0);
            }
        };
        let limit = self.config.disk_hard_limit_ratio;
        let full = usage > limit;
        match (self.disk_full.is_some(), full) {
            (false, true) => warn!(self.logger,
                "disk full: writes are now refused until usage falls below the hard limit";
                "usage" => format!("{:.1}%", usage * 100.0),
                "hard_limit" => format!("{:.1}%", limit * 100.0),
                "data_dir" => %self.config.data_dir.display()),
            (true, false) => info!(self.logger, "disk usage below the hard limit: writes resume";
                "usage" => format!("{:.1}%", usage * 100.0),
                "hard_limit" => format!("{:.1}%", limit * 100.0)),
            _ => {}
        }
        self.disk_full = full.then_some(usage);
        usage
    }

    /// Whether appends are currently refused for lack of disk: usage over
    /// the hard ratio, or the next segment refused with ENOSPC below it.
    pub fn is_disk_full(&self) -> bool {
        self.disk_full.is_some() || self.commit_log.segment_refused_for_space()
    }

    /// Runs retention now (see [`retention`]).
    pub fn clean_expired_files(&mut self) -> Result<RetentionReport> {
        let now = SystemTime::now();
        self.clean_expired_files_at(now, retention::local_hour(now))
    }

    /// Runs retention as if it were `now` at local hour `hour`.
    pub fn clean_expired_files_at(&mut self, now: SystemTime, hour: u8) -> Result<RetentionReport> {
        let usage = self.check_disk();
        let triggered =
            hour == self.config.delete_when_hour || usage > self.config.disk_soft_limit_ratio;
        let mut report = RetentionReport {
            usage_ratio: usage,
            triggered,
            ..RetentionReport::default()
        };
        if triggered {
            let reserved = Duration::from_secs(self.config.file_reserved_hours * 3600);
            report.deleted_segments = self.commit_log.delete_expired(now, reserved)?;
            if report.deleted_segments > 0 {
                let cl_min = self.commit_log.min_offset();
                for cq in self.queues.values_mut().flat_map(HashMap::values_mut) {
                    report.deleted_cq_files += cq.delete_below(cl_min)?;
                }
                self.index.delete_below(cl_min)?;
                report.usage_ratio = self.check_disk();
            }
        }
        report.disk_full = self.disk_full.is_some();
        Ok(report)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // Without shutdown() this is a crash as far as the files go: the
        // flusher finishes what was queued, no clean checkpoint is written.
        self.flusher.stop();
    }
}
