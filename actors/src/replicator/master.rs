//! Master side of the HA stream: accept slaves on the HA port and, per
//! slave, stream the CommitLog from the offset it reports while its acks go
//! to the [`Replicator`](super::Replicator).
//!
//! The CommitLog is read through the Storage actor ([`ReadCommitLog`]); a
//! session waits on the Storage actor's CommitLog-end watch
//! ([`SubscribeAppends`](crate::storage::SubscribeAppends)) when it has caught up,
//! and sends a heartbeat after [`HEARTBEAT`](super::protocol::HEARTBEAT) of
//! silence.
//!
//! A slave the master will not stream to (an offset past its end, a
//! CommitLog it cannot read there) is sent a refusal with the reason
//! ([`protocol::refusal`]), which the slave logs, before the close. A
//! connection is logged as a slave's ("slave connected") once its first
//! offset report is in; what ends before that (a port scan, garbage) is
//! logged at DEBUG or rate limited ([`crate::remoting::bad_input`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use actix::Addr;
use slog::{debug, info, warn, Logger};
use tokio::net::TcpListener;

use crate::tls::{MaybeTls, ServerTls};
use tokio::sync::watch;

use super::protocol::{self, HEARTBEAT, MAX_CHUNK};
use super::{Replicator, SessionClosed, SessionOpened, SlaveAck};
use crate::controller::view::RoleView;
use crate::storage::{GetStorageStats, ReadCommitLog, Storage};

/// What a master answers a slave that named itself: its epochs, unless it
/// is not the master of the epoch the slave follows (a stale master never
/// serves a slave of a newer epoch).
fn epoch_answer(
    view: Option<&RoleView>,
    ident: protocol::Ident,
    end: u64,
) -> protocol::EpochAnswer {
    let Some(view) = view else {
        return protocol::EpochAnswer::Refused("this broker is not in controller mode".into());
    };
    let v = view.get();
    if !v.is_master || ident.epoch > v.master_epoch {
        return protocol::EpochAnswer::Refused(format!(
            "broker {} is not the master of epoch {} (it runs under epoch {}{})",
            v.broker_id,
            ident.epoch,
            v.master_epoch,
            if v.is_master { "" } else { " as a slave" }
        ));
    }
    protocol::EpochAnswer::Epochs {
        entries: v.epochs,
        end,
    }
}

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// Accepts slaves forever; one task per session.
pub async fn accept_loop(
    listener: TcpListener,
    storage: Addr<Storage>,
    replicator: Addr<Replicator>,
    appended: watch::Receiver<u64>,
    (acl, tls, view): (
        Option<crate::acl::Acl>,
        Option<Arc<ServerTls>>,
        Option<Arc<RoleView>>,
    ),
    log: Logger,
) {
    crate::metrics::Listener::Ha.listening();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                warn!(log, "HA accept failed"; "error" => %e);
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let id = NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
        let (storage, replicator, appended, log, acl) = (
            storage.clone(),
            replicator.clone(),
            appended.clone(),
            log.clone(),
            acl.clone(),
        );
        let (tls, view) = (tls.clone(), view.clone());
        let counted = crate::metrics::CountedConnection::new(crate::metrics::Listener::Ha);
        actix_rt::spawn(async move {
            let _counted = counted;
            let addr = peer.to_string();
            let stream: MaybeTls = match tls {
                None => stream.into(),
                // A plain slave on a TLS-only port is told so in the HA
                // protocol; every refusal is logged (rate limited) there.
                Some(t) => {
                    let refusal = protocol::refusal(protocol::TLS_REQUIRED);
                    match t.accept_answering(stream, refusal, &log).await {
                        Ok(s) => s,
                        Err(_) => return,
                    }
                }
            };
            let log = log.new(slog::o!("slave" => addr.clone()));
            let mut connected = false;
            let res = session(
                id,
                (addr, peer.ip()),
                stream,
                (storage, acl, view),
                replicator.clone(),
                appended,
                (&log, &mut connected),
            )
            .await;
            replicator.do_send(SessionClosed { id });
            if let Err(e) = res {
                ended(&log, peer.ip(), connected, &e);
            }
        });
    }
}

/// Logs why a session ended: a slave's (it had reported its offset) at
/// WARN, every time (a flapping slave must show), a connection that never
/// was a slave's (a port scan: closed before a byte; garbage, a refused
/// hello) at DEBUG or rate limited ([`crate::remoting::bad_input`]).
fn ended(log: &Logger, ip: std::net::IpAddr, connected: bool, e: &std::io::Error) {
    use crate::remoting::bad_input::warn_limited;
    if connected {
        warn!(log, "slave session ended"; "peer" => %ip, "error" => %e);
    } else if e.kind() == std::io::ErrorKind::UnexpectedEof {
        debug!(log, "HA connection closed before a slave's first report"; "error" => %e);
    } else {
        warn_limited(
            log,
            ip,
            "HA connection refused before streaming",
            "refused",
            e,
        );
    }
}

/// Writes a refusal with `reason` ([`protocol::refusal`]) so that the
/// slave logs why, and returns it as the session's error.
async fn refuse<W: tokio::io::AsyncWrite + Unpin>(wr: &mut W, reason: String) -> std::io::Error {
    use tokio::io::AsyncWriteExt;
    let _ = wr.write_all(&protocol::refusal(&reason)).await;
    let _ = wr.flush().await;
    std::io::Error::other(reason)
}

async fn session(
    id: u64,
    (addr, ip): (String, std::net::IpAddr),
    stream: MaybeTls,
    (storage, acl, view): (
        Addr<Storage>,
        Option<crate::acl::Acl>,
        Option<Arc<RoleView>>,
    ),
    replicator: Addr<Replicator>,
    mut appended: watch::Receiver<u64>,
    (log, connected): (&Logger, &mut bool),
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = tokio::io::split(stream);
    let protocol::First {
        hello,
        name,
        next: mut start,
    } = tokio::time::timeout(protocol::READ_TIMEOUT, protocol::read_first(&mut rd))
        .await
        // A peer that connects and says nothing is let go, not waited on.
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "peer sent nothing"))??;
    // ACL: only a holder of the cluster's broker credential gets the stream.
    if let Some(acl) = &acl {
        let Some(h) = hello else {
            return Err(std::io::Error::other(
                "slave sent no HA hello: ACL is on, set the broker's access_key/secret_key",
            ));
        };
        acl.check_ha_hello(&h.access_key, &h.proof, ip)
            .map_err(|e| std::io::Error::other(format!("slave refused: {e}")))?;
    }
    let end = match storage.send(GetStorageStats).await {
        Ok(s) => s.max_physical_offset,
        Err(e) => return Err(std::io::Error::other(format!("storage gone: {e}"))),
    };
    let mut broker_id = None;
    if start == protocol::ID_MAGIC {
        let ident = protocol::read_ident(&mut rd).await?;
        let answer = epoch_answer(view.as_deref(), ident, end);
        protocol::write_epochs(&mut wr, &answer).await?;
        if let protocol::EpochAnswer::Refused(r) = answer {
            return Err(std::io::Error::other(format!("slave refused: {r}")));
        }
        broker_id = Some(ident.broker_id);
        start = protocol::read_offset(&mut rd).await?;
    }
    // The slave's first report: from here on it is a slave, not a scan.
    *connected = true;
    info!(log, "slave connected"; "from" => start);
    if start > end {
        return Err(refuse(&mut wr, past_end(start, end)).await);
    }
    let (kick, kicked) = tokio::sync::oneshot::channel();
    replicator.do_send(SessionOpened {
        id,
        addr,
        broker_id,
        name,
        kick,
    });
    replicator.do_send(SlaveAck { id, offset: start });
    // What has been sent: an ack above it is a confused peer, clamped.
    let sent = Arc::new(AtomicU64::new(start));
    let acks = replicator.clone();
    let sent_r = sent.clone();
    let reader = actix_rt::spawn(async move {
        while let Ok(offset) = protocol::read_offset(&mut rd).await {
            let offset = offset.min(sent_r.load(Ordering::Acquire));
            acks.do_send(SlaveAck { id, offset });
        }
        acks.do_send(SessionClosed { id });
    });
    let result = tokio::select! {
        r = stream_log(start, (&storage, &sent), &mut wr, &mut appended, &reader) => r,
        kick = kicked => match kick {
            Ok(()) => Err(std::io::Error::other(
                "superseded by a newer session of the same slave",
            )),
            // The Replicator closed the session (its reader ended) or stopped.
            Err(_) => Ok(()),
        },
    };
    reader.abort();
    result
}

fn past_end(pos: u64, end: u64) -> String {
    format!("slave is at {pos}, past the master's end {end}: refusing to replicate")
}

/// Streams the CommitLog from `start` until the reader ends or an error;
/// `sent` is what has been written.
async fn stream_log<W: tokio::io::AsyncWrite + Unpin>(
    start: u64,
    (storage, sent): (&Addr<Storage>, &AtomicU64),
    wr: &mut W,
    appended: &mut watch::Receiver<u64>,
    reader: &tokio::task::JoinHandle<()>,
) -> std::io::Result<()> {
    let mut pos = start;
    // As if the last write were a heartbeat ago: the first pass writes at
    // once (a chunk, or an empty one when the slave is caught up), so the
    // slave knows it was accepted and never takes a later close for a
    // refusal of its name (`slave::before_stream`).
    let mut last_write = Instant::now()
        .checked_sub(HEARTBEAT)
        .unwrap_or_else(Instant::now);
    loop {
        if reader.is_finished() {
            break Ok(());
        }
        let read = storage
            .send(ReadCommitLog {
                offset: pos,
                max_bytes: MAX_CHUNK,
            })
            .await;
        // The slave is told why the stream stops ([`refuse`]).
        let (data, end) = match read {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => {
                break Err(refuse(wr, format!("cannot read the commit log at {pos}: {e}")).await)
            }
            Err(e) => break Err(refuse(wr, format!("storage gone: {e}")).await),
        };
        if pos > end {
            break Err(refuse(wr, past_end(pos, end)).await);
        }
        if !data.is_empty() {
            protocol::write_chunk(wr, pos, end, &data).await?;
            pos += data.len() as u64;
            sent.store(pos, Ordering::Release);
            last_write = Instant::now();
            continue;
        }
        if last_write.elapsed() >= HEARTBEAT {
            protocol::write_chunk(wr, pos, end, &[]).await?;
            last_write = Instant::now();
        }
        // Caught up: wait for an append (or the heartbeat interval).
        if let Ok(Err(_)) = tokio::time::timeout(HEARTBEAT, appended.changed()).await {
            // The watch is gone (shutting down): do not spin.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}
