//! Slave side: the HA connection to the master and the metadata sync.
//!
//! [`run`] loops forever: ask the [`Replicator`](super::Replicator) for the
//! master's HA address, connect, name this slave ([`protocol::SlaveName`]:
//! the master keys its session, metrics and status by it), report this
//! store's CommitLog end, then
//! apply every chunk through the Storage actor ([`AppendReplicated`]: the
//! bytes land at the same physical offsets, records are CRC-checked and
//! dispatched to ConsumeQueues), ack the new end, and wake the pulls parked
//! on the queues the chunk touched. Any error closes the connection; the
//! loop reconnects a second later and resumes from the store's own end, so a
//! restarted slave resumes where its files end.
//!
//! A slave serves every message it holds as soon as it holds it: before a
//! chunk is acked, every topic it touched that this broker does not know
//! (or knows with too few queues) is created through the Broker
//! ([`LearnTopics`]); the same is done at each connect for every queue the
//! store already holds (records replicated before a crash). The learned
//! config is replaced by the master's own at the next metadata sync, which
//! a newly learned topic asks for at once ([`SyncSoon`]).

use std::collections::HashMap;
use std::time::Duration;

use actix::Addr;
use slog::{info, warn, Logger};
use tokio::net::TcpStream;

use super::protocol::{self, READ_TIMEOUT};
use super::{GetMasterHa, Replicator, SlaveProgress, SyncSoon};
use crate::broker::{Broker, LearnTopics, TopicsView};
use crate::message_store::epoch::{self, EpochEntry};
use crate::storage::{AppendReplicated, GetStorageStats, ListQueues, Storage};

/// Pause between connection attempts.
const RECONNECT: Duration = Duration::from_secs(1);

/// The actors the slave loop talks to.
pub struct SlavePeers {
    pub replicator: Addr<Replicator>,
    pub storage: Addr<Storage>,
    pub broker: Addr<Broker>,
    pub registry: TopicsView,
    /// The cluster's broker credential, proved to the master (ACL).
    pub creds: Option<std::sync::Arc<skylark_codec::Credentials>>,
    /// TLS to the master's HA port (the broker's `tls_ca_file`).
    pub tls: Option<crate::tls::ClientTls>,
    /// Controller mode: name this slave to the master and compare epochs.
    pub controller: Option<ControllerSide>,
    /// Who this slave is, sent first on every connection.
    pub name: protocol::SlaveName,
}

/// A controller-mode slave's epoch bookkeeping.
#[derive(Clone)]
pub struct ControllerSide {
    pub view: std::sync::Arc<crate::controller::view::RoleView>,
    /// Where the epoch file lives.
    pub data_dir: std::path::PathBuf,
}

impl ControllerSide {
    /// Copies the master's epochs as far as this slave's log reaches
    /// (fsynced before anything later is acked).
    async fn adopt(&self, master: &[EpochEntry], end: u64) -> std::io::Result<()> {
        let mut local = self.view.get().epochs;
        if !epoch::adopt(&mut local, master, end) {
            return Ok(());
        }
        let (dir, entries) = (self.data_dir.clone(), local.clone());
        tokio::task::spawn_blocking(move || epoch::store(&dir, &entries))
            .await
            .map_err(std::io::Error::other)??;
        self.view.update(|v| v.epochs = local);
        Ok(())
    }
}

/// Topic → the read queue count this broker is known to serve.
type KnownQueues = HashMap<String, u32>;

/// Replicates from the master for as long as the System runs.
pub async fn run(peers: SlavePeers, log: Logger) {
    let SlavePeers {
        replicator,
        storage,
        broker,
        registry,
        creds,
        tls,
        controller,
        name,
    } = peers;
    let mut topics = TopicLearner {
        broker,
        replicator: replicator.clone(),
        registry,
        known: KnownQueues::new(),
    };
    let mut last_error = String::new();
    // Whether the next connection names this slave. A master older than
    // its slaves refuses the name (it reads it as an offset past its end)
    // and closes before streaming: the next attempt goes without it, so a
    // rolling upgrade may take the slaves first. Any other outcome names it
    // again (the master may have been upgraded meanwhile).
    let mut named = true;
    loop {
        let addr = match replicator.send(GetMasterHa).await {
            Ok(Some(a)) => a,
            Ok(None) => {
                tokio::time::sleep(RECONNECT).await;
                continue;
            }
            Err(_) => return,
        };
        let master = (addr.as_str(), creds.as_deref(), tls.as_ref());
        let me = (named.then_some(&name), controller.as_ref());
        let outcome = replicate_from(master, me, (&replicator, &storage), &mut topics, &log).await;
        let refused = outcome.as_ref().is_err_and(RefusedBeforeStream::is);
        named = !(refused && named);
        match outcome {
            Ok(()) => {}
            Err(e) => {
                let msg = e.to_string();
                if msg != last_error {
                    warn!(log, "replication from master interrupted"; "master_ha" => &addr, "error" => &msg);
                    last_error = msg;
                }
            }
        }
        replicator.do_send(SlaveProgress {
            connected: false,
            applied: None,
            master_max: None,
        });
        tokio::time::sleep(RECONNECT).await;
    }
}

async fn replicate_from(
    (addr, creds, tls): (
        &str,
        Option<&skylark_codec::Credentials>,
        Option<&crate::tls::ClientTls>,
    ),
    (name, controller): (Option<&protocol::SlaveName>, Option<&ControllerSide>),
    (replicator, storage): (&Addr<Replicator>, &Addr<Storage>),
    topics: &mut TopicLearner,
    log: &Logger,
) -> std::io::Result<()> {
    let io_err = |m: String| std::io::Error::other(m);
    // Records replicated before a restart whose topic was never saved.
    let held = storage
        .send(ListQueues)
        .await
        .map_err(|e| io_err(format!("storage gone: {e}")))?;
    topics
        .learn(held.into_iter().map(|q| (q.topic, q.queue_id)), log)
        .await?;
    let stream = tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(addr))
        .await
        .map_err(|_| io_err(format!("connect to {addr} timed out")))??;
    let _ = stream.set_nodelay(true);
    let stream = match tls {
        None => crate::tls::MaybeTls::Plain(stream),
        Some(t) => t.connect(addr, stream).await?,
    };
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut end = storage
        .send(GetStorageStats)
        .await
        .map_err(|e| io_err(format!("storage gone: {e}")))?
        .max_physical_offset;
    if let Some(creds) = creds {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        protocol::write_hello(&mut wr, creds, now).await?;
    }
    if let Some(name) = name {
        let mut name = name.clone();
        if let Some(side) = controller {
            // Controller mode: the identity the controller knows this broker by.
            name.broker_id = side.view.get().broker_id;
        }
        protocol::write_name(&mut wr, &name).await?;
    }
    let mut master_epochs = Vec::new();
    if let Some(side) = controller {
        let v = side.view.get();
        let ident = protocol::Ident {
            broker_id: v.broker_id,
            epoch: v.master_epoch,
        };
        protocol::write_ident(&mut wr, ident)
            .await
            .map_err(|e| before_stream(e, false, addr))?;
        let answer = tokio::time::timeout(READ_TIMEOUT, protocol::read_epochs(&mut rd))
            .await
            .map_err(|_| io_err(format!("master {addr} sent no epochs")))?
            .map_err(|e| before_stream(e, false, addr))?;
        let (entries, master_end) = match answer {
            protocol::EpochAnswer::Epochs { entries, end } => (entries, end),
            protocol::EpochAnswer::Refused(r) => {
                return Err(io_err(format!("master {addr} refused: {r}")))
            }
        };
        let common = epoch::common_end(&v.epochs, end, &entries, master_end);
        if common < end {
            warn!(log, "commit log diverged from the master's: relaunching to cut it";
                "end" => end, "common" => common, "master_end" => master_end);
            side.view.request_truncation(common);
            return Err(io_err(format!(
                "this slave's log ends at {end}, past the last epoch it shares with the master ({common})"
            )));
        }
        side.adopt(&entries, end).await?;
        master_epochs = entries;
    }
    protocol::write_offset(&mut wr, end)
        .await
        .map_err(|e| before_stream(e, false, addr))?;
    info!(log, "replicating from master"; "master_ha" => addr, "from" => end);
    replicator.do_send(SlaveProgress {
        connected: true,
        applied: Some(end),
        master_max: None,
    });
    let mut streaming = false;
    loop {
        let (h, data) = tokio::time::timeout(READ_TIMEOUT, protocol::read_chunk(&mut rd))
            .await
            .map_err(|_| io_err("master silent: no chunk nor heartbeat".into()))?
            .map_err(|e| before_stream(e, streaming, addr))?;
        streaming = true;
        if h.offset != end {
            return Err(io_err(format!(
                "master sent a chunk at {} but this slave ends at {end}",
                h.offset
            )));
        }
        if !data.is_empty() {
            let applied = storage
                .send(AppendReplicated { offset: end, data })
                .await
                .map_err(|e| io_err(format!("storage gone: {e}")))?
                .map_err(|e| io_err(format!("cannot apply chunk at {end}: {e}")))?;
            end = applied.end_offset;
            let seen = applied.touched.iter().map(|(t, q, _)| (t.clone(), *q));
            // Storage itself woke the pulls parked on the touched queues.
            topics.learn(seen, log).await?;
            if let Some(side) = controller {
                side.adopt(&master_epochs, end).await?;
            }
        }
        protocol::write_offset(&mut wr, end).await?;
        replicator.do_send(SlaveProgress {
            connected: true,
            applied: Some(end),
            master_max: Some(h.master_max),
        });
    }
}

/// The master closed an HA connection it had accepted before its first
/// chunk (a master writes one at once, empty when the slave is caught up):
/// it refused this slave. [`run`] answers by trying once without the
/// slave's name, which a master older than this slave refuses that way.
#[derive(Debug)]
struct RefusedBeforeStream(String);

impl std::fmt::Display for RefusedBeforeStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RefusedBeforeStream {}

impl RefusedBeforeStream {
    fn is(e: &std::io::Error) -> bool {
        e.get_ref().is_some_and(|i| i.is::<RefusedBeforeStream>())
    }
}

/// A connection closed before the master's first chunk: it refused this
/// slave, and says why in its log ([`RefusedBeforeStream`]).
fn before_stream(e: std::io::Error, streaming: bool, addr: &str) -> std::io::Error {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    // A master that closes with our name unread in its buffer resets.
    let closed = matches!(
        e.kind(),
        UnexpectedEof | ConnectionReset | BrokenPipe | ConnectionAborted
    );
    if streaming || !closed {
        return e;
    }
    std::io::Error::other(RefusedBeforeStream(format!(
        "master {addr} closed the HA connection before streaming: it refused this slave \
         (see the master's log; a master older than this slave refuses its name, so \
         every other attempt goes without it)"
    )))
}

/// Makes sure this broker serves every topic and queue it holds records of.
struct TopicLearner {
    broker: Addr<Broker>,
    replicator: Addr<Replicator>,
    registry: TopicsView,
    known: KnownQueues,
}

impl TopicLearner {
    /// Creates (or grows) every topic in `seen` this broker does not serve
    /// yet; returns once they are saved. Cheap when nothing is new: one
    /// map look-up per topic and queue.
    async fn learn(
        &mut self,
        seen: impl Iterator<Item = (String, u32)>,
        log: &Logger,
    ) -> std::io::Result<()> {
        let mut wanted: HashMap<String, u32> = HashMap::new();
        for (topic, queue_id) in seen {
            let need = queue_id.saturating_add(1);
            if self.known.get(&topic).is_some_and(|&q| q >= need) {
                continue;
            }
            if let Err(e) = skylark_codec::validate_topic_name(&topic) {
                // No config can have this name (the queues of an older
                // version's dispatch of a record it did not know, such as
                // a topic deletion's): skip it, never fail replication.
                warn!(log, "replicated queue of a name no topic can have: not served"; "topic" => &topic, "error" => e);
                self.known.insert(topic, u32::MAX);
                continue;
            }
            let w = wanted.entry(topic).or_default();
            *w = (*w).max(need);
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let new = wanted.keys().any(|t| !self.registry.contains_key(t));
        let answer = self
            .broker
            .send(LearnTopics(wanted.into_iter().collect()))
            .await
            .map_err(|e| std::io::Error::other(format!("broker gone: {e}")))?
            .map_err(|e| {
                warn!(log, "cannot create replicated topics"; "error" => %e);
                std::io::Error::other(format!("cannot create replicated topics: {e}"))
            })?;
        self.known.extend(answer);
        if new {
            self.replicator.do_send(SyncSoon);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::before_stream;
    use std::io::{Error, ErrorKind};

    #[test]
    fn a_close_before_the_first_chunk_says_why_it_may_be() {
        let eof = || Error::new(ErrorKind::UnexpectedEof, "early eof");
        let e = before_stream(eof(), false, "10.0.0.1:10912");
        assert!(e.to_string().contains("10.0.0.1:10912"), "{e}");
        assert!(e.to_string().contains("refuses its name"), "{e}");
        assert!(super::RefusedBeforeStream::is(&e));
        // A master that is down refuses the TCP connect: not a refusal of
        // the name.
        let down = Error::new(ErrorKind::ConnectionRefused, "connection refused");
        assert!(!super::RefusedBeforeStream::is(&down));
        // Once streaming, or another error: as it was.
        assert_eq!(before_stream(eof(), true, "m").to_string(), "early eof");
        let other = Error::new(ErrorKind::InvalidData, "bad");
        assert_eq!(before_stream(other, false, "m").to_string(), "bad");
    }
}
