//! Power loss (issue 19): every write not covered by an fsync is lost, and
//! under sync flush every acknowledged message survives.
//!
//! Each round puts a real `skylark standalone` broker's whole data directory
//! on a fresh ext4 file system on a loop device, loads it with producers
//! that pipeline sends to every queue, freezes the process with SIGSTOP at a
//! random moment, and copies the loop device's backing image as a power cut
//! would leave the disk: what the loop driver had written to the image is
//! in the copy; what was still only in the page cache above it (the
//! broker's dirty mapped pages, ext4's dirty metadata buffers) is not. The
//! copy is mounted elsewhere (ext4 replays its journal, as after a real
//! cut), a fresh broker recovers from it, every queue is read back from
//! offset 0, and the round is counted the way OpenChaos counts: sent,
//! acknowledged, recovered, lost, duplicated, out of order, misplaced.
//! docs/reliability.md explains the model, what it leaves out, and the
//! figures.
//!
//! Needs root and loop devices (`/dev/loop-control`, `losetup`,
//! `mkfs.ext4`, `mount`). Without them the tests fail and say why; set
//! `SKYLARK_SKIP_POWER_LOSS=1` to skip them explicitly (they then print a
//! loud SKIPPED line). `SKYLARK_POWER_LOSS_SEED` replays a run's freeze
//! moments (each run prints its seed).
//!
//! The same loop-device file system also holds the disk-full test at the
//! end: a real ENOSPC, not a usage ratio.

mod common;

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::{bin, free_port, wait_listening, wait_until, KillOnDrop};
use rand::{rngs::StdRng, Rng, SeedableRng};
use skylark::actors::remoting::wire;
use skylark::codec::{
    Command as Cmd, FrameCodec, Handshake, HandshakeResponse, Header, MessageData, PullRequest,
    PullResponse, PullStatus, QueryMessageByKeyRequest, QueryMessageResponse, RawFrame,
    SendRequest, SendResult, SendStatus, PROTOCOL_VERSION,
};
use tokio_util::codec::Decoder;

const TOPIC: &str = "PowerLoss";
/// Queues of the topic; one producer connection per queue.
const QUEUES: u32 = 4;
/// Requests each producer connection keeps in flight (so sync-flush group
/// commit covers several appends per fsync).
const INFLIGHT: usize = 8;
/// Every body is this long: `<queue>:<seq>:` padded with dots.
const BODY_LEN: usize = 200;
/// Small segments (256 KiB) and ConsumeQueue files (500 entries), so every
/// round but the shortest rolls both under load and the cut can fall just
/// after a new file was created.
const SEGMENT_SIZE: &str = "262144";
const CQ_ENTRIES_PER_FILE: &str = "500";
/// Size of the (sparse) image file holding the ext4 file system.
const IMAGE_BYTES: u64 = 256 << 20;
/// Under async flush (500 ms interval) an acknowledged message may be lost
/// only if it was acknowledged this shortly before the cut (the interval
/// plus generous slack for a loaded 2-core box).
const ASYNC_LOSS_WINDOW: Duration = Duration::from_secs(5);

/// Power-loss rounds run one at a time (they share the CPU with the load).
static SERIAL: Mutex<()> = Mutex::new(());

// ---------------------------------------------------------------- host tools

fn run(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {cmd}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "{cmd} {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Why this machine cannot run the test, if it cannot.
fn missing_prerequisite() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not running as root (loop devices and mount need it)".into());
    }
    if !Path::new("/dev/loop-control").exists() {
        return Some("/dev/loop-control is missing (no loop device support)".into());
    }
    for tool in ["losetup", "mkfs.ext4", "mount", "umount", "cp"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Some(format!("{tool} is not installed"));
        }
    }
    None
}

/// Fails loudly (or skips loudly, when asked to) without loop devices.
fn require_loop_devices(test: &str) -> bool {
    let Some(why) = missing_prerequisite() else {
        return true;
    };
    if std::env::var_os("SKYLARK_SKIP_POWER_LOSS").is_some_and(|v| v == "1") {
        eprintln!("\n*** SKIPPED {test}: {why} (SKYLARK_SKIP_POWER_LOSS=1) ***\n");
        return false;
    }
    panic!(
        "{test} cannot run: {why}. It needs root, /dev/loop-control, losetup, mkfs.ext4 \
         and mount; set SKYLARK_SKIP_POWER_LOSS=1 to skip it explicitly"
    );
}

/// An ext4 image attached to a loop device and mounted; unmounted and
/// detached when dropped (the broker using it must be gone first).
struct Mounted {
    dev: String,
    mnt: PathBuf,
    mounted: bool,
}

impl Mounted {
    fn mount(image: &Path, mnt: &Path) -> Result<Mounted, String> {
        std::fs::create_dir_all(mnt).map_err(|e| e.to_string())?;
        let image = image.to_str().ok_or("image path is not UTF-8")?;
        let dev = run("losetup", &["--find", "--show", image])?;
        let mut m = Mounted {
            dev,
            mnt: mnt.to_path_buf(),
            mounted: false,
        };
        let target = mnt.to_str().ok_or("mount path is not UTF-8")?;
        // A long journal commit interval: ext4 then writes nothing on its
        // own between the broker's fsyncs, so what reaches the image is
        // what the broker forced there (plus rare background writeback).
        run("mount", &["-t", "ext4", "-o", "commit=60", &m.dev, target])?;
        m.mounted = true;
        Ok(m)
    }

    fn release(&mut self) -> Result<(), String> {
        if self.mounted {
            let target = self.mnt.to_string_lossy().to_string();
            let mut last = Ok(String::new());
            // A just-killed broker's mappings go away asynchronously.
            wait_until(Duration::from_secs(10), || {
                last = run("umount", &[&target]);
                last.is_ok()
            });
            last?;
            self.mounted = false;
        }
        if !self.dev.is_empty() {
            run("losetup", &["--detach", &self.dev])?;
            self.dev.clear();
        }
        Ok(())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Err(e) = self.release() {
            eprintln!("power_loss cleanup: {e}");
        }
    }
}

fn make_ext4_image(path: &Path) -> Result<(), String> {
    let f = std::fs::File::create(path).map_err(|e| e.to_string())?;
    f.set_len(IMAGE_BYTES).map_err(|e| e.to_string())?;
    drop(f);
    // No blocks reserved for root: the broker runs as root, and the
    // disk-full test fills the file system to what `statvfs` calls free.
    run(
        "mkfs.ext4",
        &["-q", "-F", "-m", "0", &path.to_string_lossy()],
    )
    .map(|_| ())
}

/// Stops `pid` and waits until every one of its threads is stopped: a
/// thread inside a system call (an fsync) stops only when the call returns,
/// so after this the broker has no I/O of its own in flight.
fn freeze(pid: u32) {
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGSTOP) }, 0);
    let all_stopped = wait_until(Duration::from_secs(30), || {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return false;
        };
        tasks.flatten().all(|t| {
            let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|s| s.trim().chars().next());
            matches!(state, Some('T' | 't' | 'Z' | 'X') | None)
        })
    });
    assert!(all_stopped, "broker threads did not stop after SIGSTOP");
}

// ------------------------------------------------------------------ broker

struct Node {
    child: KillOnDrop,
    namesrv_port: u16,
    broker_port: u16,
}

impl Node {
    fn start(data_dir: &Path, flush: &str) -> Node {
        Node::start_with(data_dir, flush, &[])
    }

    /// [`Node::start`] with more settings (`SKYLARK_…` variables).
    fn start_with(data_dir: &Path, flush: &str, env: &[(&str, &str)]) -> Node {
        let (namesrv_port, broker_port) = (free_port(), free_port());
        let child = Command::new(bin())
            .args(["--log-level", "warn", "standalone", "--data-dir"])
            .envs(common::ROOMY_DISK)
            .arg(data_dir)
            .args(["--namesrv-port", &namesrv_port.to_string()])
            .args(["--broker-port", &broker_port.to_string()])
            .args(["--flush", flush])
            .env("SKYLARK_STORE__SEGMENT_SIZE", SEGMENT_SIZE)
            .env("SKYLARK_STORE__CQ_ENTRIES_PER_FILE", CQ_ENTRIES_PER_FILE)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn skylark standalone");
        let mut node = Node {
            child: KillOnDrop(child),
            namesrv_port,
            broker_port,
        };
        wait_listening(&mut node.child.0, &[namesrv_port, broker_port])
            .expect("standalone listening");
        let broker = node.broker();
        assert!(
            wait_until(Duration::from_secs(30), || {
                let out = node.cli(&["admin", "--json", "cluster", "list"]);
                out.status.success() && String::from_utf8_lossy(&out.stdout).contains(&broker)
            }),
            "broker never registered with the nameserver"
        );
        node
    }

    fn broker(&self) -> String {
        format!("127.0.0.1:{}", self.broker_port)
    }

    fn cli(&self, args: &[&str]) -> Output {
        common::cli(&format!("127.0.0.1:{}", self.namesrv_port), args)
    }

    /// Creates TOPIC with QUEUES queues.
    fn create_topic(&self) {
        let queues = QUEUES.to_string();
        let out = self.cli(&[
            "admin", "topic", "create", "--name", TOPIC, "--queues", &queues,
        ]);
        assert!(
            out.status.success(),
            "topic create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

// ---------------------------------------------------------------- the wire

enum Read1 {
    Frame(RawFrame),
    Timeout,
    Closed,
}

fn read_frame(s: &mut TcpStream, buf: &mut BytesMut) -> Read1 {
    let mut codec = FrameCodec::default();
    let mut chunk = [0u8; 16384];
    loop {
        match codec.decode(buf) {
            Ok(Some(f)) => return Read1::Frame(f),
            Ok(None) => {}
            Err(_) => return Read1::Closed,
        }
        match s.read(&mut chunk) {
            Ok(0) => return Read1::Closed,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Read1::Timeout
            }
            Err(_) => return Read1::Closed,
        }
    }
}

/// Connects and handshakes.
fn connect(addr: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect to the broker");
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let hs = Handshake {
        protocol_version: PROTOCOL_VERSION,
        client_id: "power-loss@test".into(),
        client_version: "test".into(),
    };
    s.write_all(&wire::encode(Header::request(0, Cmd::Handshake), &hs))
        .unwrap();
    let mut buf = BytesMut::new();
    let Read1::Frame(f) = read_frame(&mut s, &mut buf) else {
        panic!("no handshake answer");
    };
    f.decode_response::<HandshakeResponse>()
        .expect("handshake answer");
    s
}

fn body(queue: u32, seq: u64) -> Vec<u8> {
    let mut b = format!("{queue}:{seq}:").into_bytes();
    b.resize(BODY_LEN, b'.');
    b
}

/// The message key of (queue, seq), for the index check.
fn key(queue: u32, seq: u64) -> String {
    format!("pl-{queue}-{seq}")
}

fn parse_body(b: &[u8]) -> Option<(u32, u64)> {
    let s = std::str::from_utf8(b).ok()?;
    let mut it = s.split(':');
    let q = it.next()?.parse().ok()?;
    let seq = it.next()?.parse().ok()?;
    (b.len() == BODY_LEN && it.next()?.bytes().all(|c| c == b'.')).then_some((q, seq))
}

/// The send of message `seq` to `queue` (request id `seq + 1`).
fn send_frame(queue: u32, seq: u64) -> bytes::Bytes {
    let req = SendRequest {
        producer_group: "power-loss".into(),
        topic: TOPIC.into(),
        queue_id: queue as i32,
        message: MessageData {
            keys: Some(key(queue, seq)),
            ..MessageData::new(body(queue, seq))
        },
    };
    wire::encode(Header::request(seq + 1, Cmd::SendMessage), &req)
}

/// What one producer connection did. Times are from the round's start.
#[derive(Default)]
struct ProducerLog {
    /// When each seq (0..len) was written to the socket.
    sent_at: Vec<Duration>,
    /// Answers: seq -> (status, queue offset, when it arrived).
    acks: HashMap<u64, (SendStatus, u64, Duration)>,
    /// Error answers (e.g. Busy): not stored.
    refused: u64,
}

/// Sends to `queue` keeping INFLIGHT requests in flight until `stop`, then
/// reads every answer still arriving until the socket goes quiet.
fn produce(
    addr: String,
    queue: u32,
    t0: Instant,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
) -> ProducerLog {
    let mut s = connect(&addr);
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s.set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut log = ProducerLog::default();
    let mut buf = BytesMut::new();
    let mut outstanding = 0usize;
    let mut can_send = true;
    loop {
        while can_send && !stop.load(Ordering::Relaxed) && outstanding < INFLIGHT {
            let seq = log.sent_at.len() as u64;
            let frame = send_frame(queue, seq);
            log.sent_at.push(t0.elapsed());
            outstanding += 1;
            if s.write_all(&frame).is_err() {
                // Possibly half written: send no more on this connection.
                can_send = false;
            }
        }
        match read_frame(&mut s, &mut buf) {
            Read1::Frame(f) => {
                outstanding = outstanding.saturating_sub(1);
                let seq = f.header.request_id.wrapping_sub(1);
                match f.decode_response::<SendResult>() {
                    Ok(r) => {
                        assert_eq!(r.queue_id, queue, "answer for another queue");
                        log.acks
                            .insert(seq, (r.status, r.queue_offset, t0.elapsed()));
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => log.refused += 1,
                }
            }
            // The broker is frozen (or gone) and nothing more arrives.
            Read1::Timeout if stop.load(Ordering::Relaxed) => break,
            Read1::Timeout => {}
            Read1::Closed => break,
        }
    }
    log
}

/// A message read back after recovery.
struct Recovered {
    queue: u32,
    queue_offset: u64,
    body: bytes::Bytes,
}

/// Reads every queue of the topic from offset 0 to its end.
fn read_back(addr: &str) -> (Vec<Recovered>, usize) {
    let mut s = connect(addr);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut damaged = 0;
    let mut id = 1;
    for queue in 0..QUEUES {
        let mut offset = 0;
        loop {
            id += 1;
            let req = PullRequest {
                consumer_group: "power-loss-check".into(),
                topic: TOPIC.into(),
                queue_id: queue,
                queue_offset: offset,
                max_messages: 1024,
                max_bytes: 1 << 20,
                ..PullRequest::default()
            };
            s.write_all(&wire::encode(Header::request(id, Cmd::PullMessage), &req))
                .unwrap();
            let Read1::Frame(f) = read_frame(&mut s, &mut buf) else {
                panic!("no pull answer for queue {queue} at {offset}");
            };
            assert_eq!(f.header.request_id, id);
            let r: PullResponse = f
                .decode_response()
                .unwrap_or_else(|e| panic!("pull of queue {queue} at {offset} failed: {e}"));
            damaged += r.damaged.len();
            let msgs = skylark::client::decode_records(&r.records, addr, None)
                .unwrap_or_else(|e| panic!("undecodable pull answer: {e}"));
            for m in msgs {
                out.push(Recovered {
                    queue,
                    queue_offset: m.queue_offset,
                    body: m.body,
                });
            }
            if r.status == PullStatus::NoNewMessage || r.next_offset <= offset {
                assert!(
                    offset >= r.max_offset,
                    "queue {queue} stopped at {offset} below its end {}",
                    r.max_offset
                );
                break;
            }
            offset = r.next_offset;
        }
    }
    (out, damaged)
}

// ---------------------------------------------------------------- counting

/// OpenChaos-style counts of one round.
#[derive(Debug, Default, Clone)]
struct Counts {
    /// Sends written to the socket.
    sent: u64,
    /// `SendOk` answers: stored (and, under sync flush, fsynced).
    acked: u64,
    /// Stored but the sync flush timed out (not promised durable).
    acked_flush_timeout: u64,
    /// Error answers (nothing stored).
    refused: u64,
    /// Messages read back after recovery.
    recovered: u64,
    /// ... of which were `SendOk`-acknowledged.
    recovered_acked: u64,
    /// ... of which had no answer at the cut (in flight): allowed either way.
    recovered_in_doubt: u64,
    /// `SendOk` messages not read back.
    lost: u64,
    /// Of the lost: acknowledged more than ASYNC_LOSS_WINDOW before the cut.
    lost_old: u64,
    /// Oldest loss: how long before the cut it was acknowledged.
    lost_max_age: Duration,
    /// Bodies read back more than once.
    duplicated: u64,
    /// Messages stored before a message of the same queue that was
    /// acknowledged before they were even sent.
    out_of_order: u64,
    /// Acknowledged messages read back at another queue offset than their
    /// answer named.
    misplaced: u64,
    /// Bodies that match no sent message.
    unknown: u64,
    /// Records the broker reported damaged while reading back.
    damaged: u64,
    /// Lost messages below a recovered one of the same queue (a hole
    /// rather than a lost tail).
    holes: u64,
    /// Recovered messages looked up by key, and how many the index missed.
    index_checked: u64,
    unindexed: u64,
    /// CommitLog segments and ConsumeQueue files in the recovered store.
    segments: usize,
    cq_files: usize,
}

fn count(logs: &[ProducerLog], back: &[Recovered], damaged: usize, cut: Duration) -> Counts {
    let mut c = Counts {
        damaged: damaged as u64,
        ..Counts::default()
    };
    for log in logs {
        c.sent += log.sent_at.len() as u64;
        c.refused += log.refused;
        for (st, ..) in log.acks.values() {
            match st {
                SendStatus::SendOk => c.acked += 1,
                _ => c.acked_flush_timeout += 1,
            }
        }
    }
    let mut seen: HashMap<(u32, u64), u64> = HashMap::new();
    // Per queue, recovered (queue offset, seq) in offset order.
    let mut per_queue: Vec<Vec<(u64, u64)>> = vec![Vec::new(); QUEUES as usize];
    for r in back {
        c.recovered += 1;
        let Some((q, seq)) = parse_body(&r.body) else {
            c.unknown += 1;
            continue;
        };
        let Some(log) = logs.get(q as usize).filter(|_| q == r.queue) else {
            c.unknown += 1;
            continue;
        };
        if seq >= log.sent_at.len() as u64 {
            c.unknown += 1;
            continue;
        }
        let n = seen.entry((q, seq)).or_default();
        *n += 1;
        if *n > 1 {
            c.duplicated += 1;
            continue;
        }
        match log.acks.get(&seq) {
            Some((SendStatus::SendOk, off, _)) => {
                c.recovered_acked += 1;
                if *off != r.queue_offset {
                    c.misplaced += 1;
                }
            }
            Some(_) => {}
            None => c.recovered_in_doubt += 1,
        }
        per_queue[q as usize].push((r.queue_offset, seq));
    }
    for (q, log) in logs.iter().enumerate() {
        let msgs = &mut per_queue[q];
        msgs.sort_unstable();
        let end = msgs.last().map_or(0, |(off, _)| off + 1);
        for (seq, (st, off, at)) in &log.acks {
            if *st == SendStatus::SendOk && !seen.contains_key(&(q as u32, *seq)) {
                c.lost += 1;
                if *off < end {
                    c.holes += 1;
                }
                let age = cut.saturating_sub(*at);
                c.lost_max_age = c.lost_max_age.max(age);
                if age > ASYNC_LOSS_WINDOW {
                    c.lost_old += 1;
                }
            }
        }
        // Walking the queue backwards, keep the earliest answer time of
        // everything stored after: a message sent after that answer
        // arrived, yet stored before it, is out of order.
        let mut earliest_later_ack = Duration::MAX;
        for (_, seq) in msgs.iter().rev() {
            if log.sent_at[*seq as usize] > earliest_later_ack {
                c.out_of_order += 1;
            }
            if let Some((_, _, at)) = log.acks.get(seq) {
                earliest_later_ack = earliest_later_ack.min(*at);
            }
        }
    }
    c
}

// ------------------------------------------------------------------ rounds

/// One power cut: load, freeze at `freeze_after`, copy the image, recover
/// from the copy, count.
fn round(work: &Path, flush: &str, freeze_after: Duration, stray: Option<&mut StdRng>) -> Counts {
    let image = work.join("disk.img");
    let copy = work.join("after-cut.img");
    make_ext4_image(&image).unwrap_or_else(|e| panic!("mkfs: {e}"));
    let t0 = Instant::now();
    let (logs, cut) = {
        let mut disk = Mounted::mount(&image, &work.join("disk"))
            .unwrap_or_else(|e| panic!("mount the loop device: {e}"));
        let node = Node::start(&disk.mnt.join("data"), flush);
        node.create_topic();
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let producers: Vec<_> = (0..QUEUES)
            .map(|q| {
                let (addr, stop, acked) = (node.broker(), stop.clone(), acked.clone());
                std::thread::spawn(move || produce(addr, q, t0, stop, acked))
            })
            .collect();
        // The load is running once answers come back; the cut falls at a
        // random moment after that.
        assert!(
            wait_until(Duration::from_secs(30), || acked.load(Ordering::Relaxed)
                >= 20),
            "the broker acknowledged nothing under load"
        );
        std::thread::sleep(freeze_after);
        freeze(node.child.0.id());
        let cut = t0.elapsed();
        if let Some(rng) = stray {
            stray_writeback(&disk.mnt.join("data"), rng);
        }
        // The power cut: the disk is the image as the loop driver left it.
        run(
            "cp",
            &[
                "--sparse=always",
                &image.to_string_lossy(),
                &copy.to_string_lossy(),
            ],
        )
        .unwrap_or_else(|e| panic!("copy the image: {e}"));
        stop.store(true, Ordering::Relaxed);
        let logs: Vec<ProducerLog> = producers
            .into_iter()
            .map(|p| p.join().expect("producer thread"))
            .collect();
        drop(node); // kill -9 (a stopped process dies too)
        disk.release().unwrap_or_else(|e| panic!("unmount: {e}"));
        (logs, cut)
    };
    std::fs::remove_file(&image).unwrap();

    let restored = Mounted::mount(&copy, &work.join("after-cut"))
        .unwrap_or_else(|e| panic!("mount the copy (journal replay): {e}"));
    let node = Node::start(&restored.mnt.join("data"), flush);
    let (back, damaged) = read_back(&node.broker());
    let sample = index_sample(&back);
    let unindexed = unindexed(&node.broker(), &sample);
    drop(node);
    let data = restored.mnt.join("data");
    let segments = files_under(&data.join("commitlog"));
    let cq_files = files_under(&data.join("consumequeue"));
    drop(restored);
    std::fs::remove_file(&copy).unwrap();
    Counts {
        segments,
        cq_files,
        index_checked: sample.len() as u64,
        unindexed,
        ..count(&logs, &back, damaged, cut)
    }
}

/// Keys of recovered messages to look up: per queue the newest 25 (the
/// ones whose index entries were most likely still unflushed at the cut)
/// and every 50th before them.
fn index_sample(back: &[Recovered]) -> Vec<String> {
    let mut per_queue: Vec<Vec<(u64, u32, u64)>> = vec![Vec::new(); QUEUES as usize];
    for r in back {
        if let Some((q, seq)) = parse_body(&r.body) {
            if let Some(v) = per_queue.get_mut(q as usize) {
                v.push((r.queue_offset, q, seq));
            }
        }
    }
    let mut keys = Vec::new();
    for mut v in per_queue {
        v.sort_unstable();
        let newest = v.len().saturating_sub(25);
        for (i, (_, q, seq)) in v.iter().enumerate() {
            if i >= newest || i % 50 == 0 {
                keys.push(key(*q, *seq));
            }
        }
    }
    keys
}

/// How many of `keys` a query by key does not find.
fn unindexed(addr: &str, keys: &[String]) -> u64 {
    let mut s = connect(addr);
    let mut buf = BytesMut::new();
    let mut missing = 0;
    for (i, k) in keys.iter().enumerate() {
        let req = QueryMessageByKeyRequest {
            topic: TOPIC.into(),
            key: k.clone(),
            begin_ms: 0,
            end_ms: i64::MAX,
            max: 4,
        };
        let id = i as u64 + 1;
        s.write_all(&wire::encode(
            Header::request(id, Cmd::QueryMessageByKey),
            &req,
        ))
        .unwrap();
        let Read1::Frame(f) = read_frame(&mut s, &mut buf) else {
            panic!("no answer to a query by key");
        };
        assert_eq!(f.header.request_id, id);
        let r: QueryMessageResponse = f
            .decode_response()
            .unwrap_or_else(|e| panic!("query by key {k} failed: {e}"));
        let found = skylark::client::decode_records(&r.records, addr, None)
            .unwrap_or_else(|e| panic!("undecodable query answer: {e}"))
            .iter()
            .any(|m| m.keys.as_deref() == Some(k.as_str()));
        if !found {
            missing += 1;
        }
    }
    missing
}

/// The kernel may write any dirty page back at any time, in any order:
/// before the cut, write a random quarter of the pages of every store file
/// (CommitLog, ConsumeQueue, index, checkpoint, topic log) to the device,
/// so the image also holds some writes no fsync covered — a later page
/// without an earlier one, an index header without its entries.
fn stray_writeback(dir: &Path, rng: &mut StdRng) {
    use std::os::fd::AsRawFd;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => stray_writeback(&path, rng),
            Ok(t) if t.is_file() => {
                let Ok(f) = std::fs::File::open(&path) else {
                    continue;
                };
                let len = f.metadata().map_or(0, |m| m.len());
                for page in 0..len.div_ceil(4096) {
                    if rng.gen_ratio(1, 4) {
                        // SAFETY: a plain syscall on an open descriptor.
                        unsafe {
                            libc::sync_file_range(
                                f.as_raw_fd(),
                                (page * 4096) as libc::off64_t,
                                4096,
                                libc::SYNC_FILE_RANGE_WAIT_BEFORE
                                    | libc::SYNC_FILE_RANGE_WRITE
                                    | libc::SYNC_FILE_RANGE_WAIT_AFTER,
                            );
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

/// Number of regular files below `dir`.
fn files_under(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => files_under(&e.path()),
            Ok(t) if t.is_file() => 1,
            _ => 0,
        })
        .sum()
}

fn seed() -> u64 {
    std::env::var("SKYLARK_POWER_LOSS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
}

fn rounds(test: &str, flush: &str, n: usize) -> Vec<Counts> {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let seed = seed();
    eprintln!("{test}: {n} rounds, flush {flush}, SKYLARK_POWER_LOSS_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let work = tempfile::tempdir().unwrap();
    let mut all = Vec::new();
    for i in 0..n {
        let freeze_after = Duration::from_millis(rng.gen_range(0..2500));
        // Every other round, stray writeback before the cut.
        let stray = i % 2 == 1;
        let c = round(work.path(), flush, freeze_after, stray.then_some(&mut rng));
        eprintln!(
            "round {:2} {flush:5}{} cut +{:4} ms: sent {:6} acked {:6} (flush timeout {}) \
             refused {} | recovered {:6} = acked {:6} + in doubt {:3} | lost {} \
             (oldest {} ms before the cut) duplicated {} out of order {} misplaced {} \
             unknown {} damaged {} holes {} | index misses {} of {} | {} segments, \
             {} consume queue files",
            i + 1,
            if stray { " +stray writeback" } else { "" },
            freeze_after.as_millis(),
            c.sent,
            c.acked,
            c.acked_flush_timeout,
            c.refused,
            c.recovered,
            c.recovered_acked,
            c.recovered_in_doubt,
            c.lost,
            c.lost_max_age.as_millis(),
            c.duplicated,
            c.out_of_order,
            c.misplaced,
            c.unknown,
            c.damaged,
            c.holes,
            c.unindexed,
            c.index_checked,
            c.segments,
            c.cq_files
        );
        all.push(c);
    }
    let sum = |f: fn(&Counts) -> u64| all.iter().map(f).sum::<u64>();
    eprintln!(
        "{test} totals over {n} rounds: acked {} recovered {} lost {} duplicated {} \
         out of order {} misplaced {} unknown {} damaged {} holes {} index misses {} of {}",
        sum(|c| c.acked),
        sum(|c| c.recovered),
        sum(|c| c.lost),
        sum(|c| c.duplicated),
        sum(|c| c.out_of_order),
        sum(|c| c.misplaced),
        sum(|c| c.unknown),
        sum(|c| c.damaged),
        sum(|c| c.holes),
        sum(|c| c.unindexed),
        sum(|c| c.index_checked)
    );
    all
}

/// Checks that hold in every flush mode.
fn assert_consistent(all: &[Counts]) {
    for (i, c) in all.iter().enumerate() {
        let r = i + 1;
        assert!(
            c.acked > 0,
            "round {r}: nothing acknowledged before the cut"
        );
        assert_eq!(c.duplicated, 0, "round {r}: duplicated messages");
        assert_eq!(c.out_of_order, 0, "round {r}: messages out of order");
        assert_eq!(
            c.misplaced, 0,
            "round {r}: messages at another queue offset"
        );
        assert_eq!(c.unknown, 0, "round {r}: messages nobody sent");
        assert_eq!(
            c.unindexed, 0,
            "round {r}: {} of {} recovered messages not found by key",
            c.unindexed, c.index_checked
        );
    }
}

/// 20 power cuts under sync flush: not one acknowledged message lost.
#[test]
fn hardening_power_loss_sync_flush_loses_no_acknowledged_message() {
    let test = "hardening_power_loss_sync_flush_loses_no_acknowledged_message";
    if !require_loop_devices(test) {
        return;
    }
    let all = rounds(test, "sync", 20);
    assert_consistent(&all);
    for (i, c) in all.iter().enumerate() {
        assert_eq!(
            c.lost,
            0,
            "round {}: {} acknowledged (fsynced) messages lost",
            i + 1,
            c.lost
        );
    }
}

/// Power cuts under async flush: acknowledged messages may be lost, but
/// only those acknowledged within the flush interval (plus slack) before
/// the cut; the loss is counted and printed, never duplicated or reordered.
#[test]
fn hardening_power_loss_async_flush_loss_is_bounded() {
    let test = "hardening_power_loss_async_flush_loss_is_bounded";
    if !require_loop_devices(test) {
        return;
    }
    let all = rounds(test, "async", 5);
    assert_consistent(&all);
    for (i, c) in all.iter().enumerate() {
        assert_eq!(
            c.lost_old,
            0,
            "round {}: {} messages lost that were acknowledged more than {:?} before \
             the cut (oldest {:?})",
            i + 1,
            c.lost_old,
            ASYNC_LOSS_WINDOW,
            c.lost_max_age
        );
    }
}

// ---------------------------------------------------------------- disk full

/// Sends to `queue` from `seq` on, INFLIGHT in flight, until the broker
/// refuses one (or `count` are answered). Returns the acknowledged
/// `(seq, queue offset)` pairs and the first refusal.
fn send_until_refused(
    addr: &str,
    queue: u32,
    seq: u64,
    count: u64,
) -> (Vec<(u64, u64)>, Option<skylark::codec::WireError>) {
    let mut s = connect(addr);
    let mut buf = BytesMut::new();
    let (mut next, mut outstanding) = (seq, 0usize);
    let (mut acked, mut refused) = (Vec::new(), None);
    loop {
        while refused.is_none() && next < seq + count && outstanding < INFLIGHT {
            s.write_all(&send_frame(queue, next)).unwrap();
            next += 1;
            outstanding += 1;
        }
        if outstanding == 0 {
            return (acked, refused);
        }
        let Read1::Frame(f) = read_frame(&mut s, &mut buf) else {
            panic!("queue {queue}: no answer from the broker");
        };
        outstanding -= 1;
        let sent = f.header.request_id - 1;
        match f.decode_response::<SendResult>() {
            Ok(r) => {
                assert_eq!(r.status, SendStatus::SendOk, "queue {queue} seq {sent}");
                acked.push((sent, r.queue_offset));
            }
            Err(e) => {
                refused.get_or_insert(skylark::codec::WireError::from(&e));
            }
        }
    }
}

/// Every acknowledged `(queue, seq, offset)` is read back at its offset
/// with its own body, nothing else is there (a refused send was not
/// stored), and no record is damaged.
fn assert_all_there(addr: &str, acked: &[(u32, u64, u64)], when: &str) {
    let (back, damaged) = read_back(addr);
    assert_eq!(damaged, 0, "{when}: damaged records");
    assert_eq!(
        back.len(),
        acked.len(),
        "{when}: messages read back vs acknowledged"
    );
    let at: HashMap<(u32, u64), Option<(u32, u64)>> = back
        .iter()
        .map(|r| ((r.queue, r.queue_offset), parse_body(&r.body)))
        .collect();
    for &(q, seq, offset) in acked {
        assert_eq!(
            at.get(&(q, offset)),
            Some(&Some((q, seq))),
            "{when}: acknowledged message {q}:{seq} is not at queue offset {offset}"
        );
    }
}

/// A real full disk, not a usage ratio: the data directory on a small ext4
/// file system filled until a new store file gets ENOSPC (both limit ratios
/// at 1.0, so only the file system refuses). Sends are refused `DiskFull`
/// and nothing acknowledged is lost: every message is read back while the
/// disk is full, after a kill -9 and a restart on the still-full disk, and
/// after space is freed, when writes resume by themselves.
#[test]
fn hardening_a_really_full_disk_refuses_sends_and_keeps_every_acknowledged_message() {
    let test = "hardening_a_really_full_disk_refuses_sends_and_keeps_every_acknowledged_message";
    if !require_loop_devices(test) {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let work = tempfile::tempdir().unwrap();
    let image = work.path().join("disk.img");
    make_ext4_image(&image).unwrap_or_else(|e| panic!("mkfs: {e}"));
    let disk = Mounted::mount(&image, &work.path().join("disk"))
        .unwrap_or_else(|e| panic!("mount the loop device: {e}"));
    let env = [
        ("SKYLARK_STORE__DISK_SOFT_LIMIT_RATIO", "1.0"),
        ("SKYLARK_STORE__DISK_HARD_LIMIT_RATIO", "1.0"),
        ("SKYLARK_STORE__INDEX_SLOTS", "1000"),
        ("SKYLARK_STORE__INDEX_ENTRIES", "4000"),
    ];
    let data = disk.mnt.join("data");
    let mut node = Node::start_with(&data, "sync", &env);
    node.create_topic();

    // Leave about 3 MiB: a dozen 256 KiB segments and their queue files.
    let filler = disk.mnt.join("filler");
    {
        // SAFETY: statvfs on a valid NUL-terminated path into a zeroed struct.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        let path = std::ffi::CString::new(disk.mnt.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::statvfs(path.as_ptr(), &mut st) }, 0);
        let free = st.f_bavail as u64 * st.f_frsize as u64;
        let f = std::fs::File::create(&filler).unwrap();
        use std::os::unix::io::AsRawFd;
        // The filler's own extent blocks come out of the same space: step
        // down until it fits.
        let filled = (0..64u64).any(|i| {
            let len = (free - (3 << 20) - i * (64 << 10)) as libc::off_t;
            // SAFETY: fallocate on an open descriptor.
            unsafe { libc::posix_fallocate(f.as_raw_fd(), 0, len) == 0 }
        });
        assert!(filled, "cannot fill the file system");
    }

    // Fill it, 500 messages to each queue in turn, until the broker refuses.
    let mut acked: Vec<(u32, u64, u64)> = Vec::new();
    let mut next = [0u64; QUEUES as usize];
    let refusal = 'fill: loop {
        for q in 0..QUEUES {
            let (ok, refused) = send_until_refused(&node.broker(), q, next[q as usize], 500);
            next[q as usize] += ok.len() as u64 + u64::from(refused.is_some());
            acked.extend(ok.into_iter().map(|(s, o)| (q, s, o)));
            if let Some(e) = refused {
                break 'fill e;
            }
        }
    };
    assert_eq!(
        refusal.code,
        skylark::codec::ErrorCode::DiskFull,
        "{refusal}"
    );
    assert!(
        refusal.message.contains("ENOSPC"),
        "the file system refused: {refusal}"
    );
    eprintln!(
        "{test}: {} messages acknowledged before the disk was full",
        acked.len()
    );
    assert!(acked.len() > 2000, "only {} messages fitted", acked.len());
    assert_all_there(&node.broker(), &acked, "disk full");

    // kill -9 and a restart with the disk still full.
    drop(node);
    node = Node::start_with(&data, "sync", &env);
    assert_all_there(&node.broker(), &acked, "restarted on the full disk");
    let (_, refused) = send_until_refused(&node.broker(), 0, next[0], 1);
    assert_eq!(
        refused.map(|e| e.code),
        Some(skylark::codec::ErrorCode::DiskFull)
    );

    // Space freed: writes resume without a restart.
    std::fs::remove_file(&filler).unwrap();
    let mut resumed = Vec::new();
    assert!(
        wait_until(Duration::from_secs(30), || {
            let (ok, refused) = send_until_refused(&node.broker(), 0, next[0], 1);
            resumed.extend(ok);
            refused.is_none()
        }),
        "sends still refused after space was freed"
    );
    for q in 0..QUEUES {
        let from = if q == 0 {
            next[0] + 1
        } else {
            next[q as usize]
        };
        let (ok, refused) = send_until_refused(&node.broker(), q, from, 200);
        assert!(
            refused.is_none(),
            "queue {q} refused after space was freed: {refused:?}"
        );
        acked.extend(ok.into_iter().map(|(s, o)| (q, s, o)));
    }
    acked.extend(resumed.into_iter().map(|(s, o)| (0, s, o)));
    assert_all_there(&node.broker(), &acked, "after space was freed");
    drop(node);
}
