//! The accept loop: one listener, connections spread over worker arbiters.
//!
//! An actix `System` runs its actors on one thread, so connections are handed
//! to a set of `Arbiter`s (one per core) to use every core, each new one to
//! the worker with the fewest open connections; the state owners (Broker,
//! TopicQueue, Storage, ...) stay single.
//!
//! Connection caps: a listener holds at most `max_connections` open
//! connections, and the whole process at most `RLIMIT_NOFILE` minus
//! `fd_reserve` (the soft limit is first raised to the hard one), so the
//! store's flusher, checkpoint and segment files always find a descriptor.
//! A connection over a cap gets one `Busy` error frame saying so and is
//! closed.
//!
//! [`ServerHandle::shutdown`] stops accepting, closes every established
//! connection and returns once their sockets are closed: a stopped server
//! answers nobody (dropping the handle only stops accepting).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix::ArbiterHandle;
use bytes::Bytes;
use skylark_codec::{ErrorCode, FrameKind, Header, WireError};
use slog::{error, info, warn, Logger};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use super::connection::ConnSlot;
use super::connection::FlowLimits;
use super::tracker::{track_connections, Connections};
use super::{wire, Connection, Service};

/// Limits applied to every connection of a server.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// Per-connection flow control and timeouts.
    pub limits: FlowLimits,
    /// Open connections this listener accepts at most.
    pub max_connections: usize,
    /// Descriptors kept free for everything but client connections.
    pub fd_reserve: usize,
    /// Which port this is, for `skylark_connections{listener}`.
    pub listener: crate::metrics::Listener,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            limits: FlowLimits::default(),
            max_connections: 10_000,
            fd_reserve: 256,
            listener: crate::metrics::Listener::Broker,
        }
    }
}

// Connections open in this process, over every listener: the counter
// lives with the metrics, which export it; the listeners count.
use crate::metrics::{CountedConnection, PROCESS_CONNECTIONS};

/// The worker with the fewest open connections, searching from `next` so
/// that ties go round-robin. Plain round-robin put both connections of a
/// two-producer bench on one worker whenever a short-lived connection (an
/// admin call, a warm-up send) came in between, leaving a core idle.
fn least_loaded(loads: &[Arc<AtomicUsize>], next: usize) -> usize {
    let n = loads.len().max(1);
    (0..n)
        .map(|k| (next + k) % n)
        .min_by_key(|&i| loads.get(i).map_or(0, |l| l.load(Ordering::Relaxed)))
        .unwrap_or(0)
}

/// The descriptor limit (soft `RLIMIT_NOFILE`, raised to the hard limit
/// once per process when allowed); `None` if unknown or unlimited.
pub fn descriptor_limit() -> Option<usize> {
    static LIMIT: OnceLock<Option<usize>> = OnceLock::new();
    *LIMIT.get_or_init(|| {
        let mut rl = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit only read and write the struct given.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) != 0 {
                return None;
            }
            if rl.rlim_cur < rl.rlim_max {
                let raised = libc::rlimit {
                    rlim_cur: rl.rlim_max,
                    rlim_max: rl.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    rl.rlim_cur = rl.rlim_max;
                }
            }
        }
        if rl.rlim_cur == libc::RLIM_INFINITY {
            None
        } else {
            usize::try_from(rl.rlim_cur).ok()
        }
    })
}

/// Why a new connection must be refused, if it must.
fn over_cap(open: &AtomicUsize, opts: &ServeOptions, fd_cap: usize) -> Option<String> {
    if open.load(Ordering::Relaxed) >= opts.max_connections {
        return Some(format!(
            "too many connections: this listener's cap of {} (max_connections) is reached",
            opts.max_connections
        ));
    }
    if PROCESS_CONNECTIONS.load(Ordering::Relaxed) >= fd_cap {
        return Some(format!(
            "too many connections: {fd_cap} open, the descriptor limit minus a reserve of {} (fd_reserve)",
            opts.fd_reserve
        ));
    }
    None
}

/// Writes one error frame (request id 0) and closes, within a second.
async fn refuse(mut stream: TcpStream, reason: String) {
    crate::metrics::note_busy(crate::metrics::BusyReason::Connections);
    let h = Header {
        request_id: 0,
        kind: FrameKind::Response,
        command: 0,
    };
    let frame: Bytes = wire::error_response(&h, WireError::new(ErrorCode::Busy, reason));
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(&frame).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// A running accept loop. Dropping it stops accepting new connections;
/// established connections live on until their peers close them, or
/// [`ServerHandle::shutdown`] closes them.
pub struct ServerHandle {
    /// The address actually bound (useful with port 0).
    pub local_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    connections: Connections,
}

impl ServerHandle {
    /// Stops accepting new connections.
    pub fn stop_accepting(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    /// Stops accepting, closes every established connection (answers not
    /// yet written are dropped) and returns once all their sockets are
    /// closed.
    pub async fn shutdown(&mut self) {
        self.stop_accepting();
        self.connections.close_all().await;
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop_accepting();
    }
}

/// Accepts on `listener` and starts a [`Connection`] per client on the
/// `workers` arbiters in turn (the current arbiter if `workers` is empty).
/// Must be called inside a running actix System.
pub fn serve<S: Service>(
    listener: TcpListener,
    service: S,
    opts: ServeOptions,
    workers: Vec<ArbiterHandle>,
    log: Logger,
) -> std::io::Result<ServerHandle> {
    serve_tls(listener, service, opts, workers, None, log)
}

/// [`serve`] with TLS on this port per `tls` (see [`crate::tls`]); the
/// handshake runs on the connection's worker before its session starts.
pub fn serve_tls<S: Service>(
    listener: TcpListener,
    service: S,
    opts: ServeOptions,
    workers: Vec<ArbiterHandle>,
    tls: Option<Arc<crate::tls::ServerTls>>,
    log: Logger,
) -> std::io::Result<ServerHandle> {
    let local_addr = listener.local_addr()?;
    let (tx, mut rx) = oneshot::channel::<()>();
    let (tracker, connections) = track_connections();
    let workers = if workers.is_empty() {
        vec![actix::Arbiter::current()]
    } else {
        workers
    };
    let fd_cap = descriptor_limit()
        .map(|n| n.saturating_sub(opts.fd_reserve).max(1))
        .unwrap_or(usize::MAX);
    opts.listener.listening();
    info!(log, "listening"; "addr" => %local_addr,
        "max_connections" => opts.max_connections, "process_connection_cap" => fd_cap);
    let open = Arc::new(AtomicUsize::new(0));
    let loads: Vec<Arc<AtomicUsize>> = workers.iter().map(|_| Arc::default()).collect();
    actix_rt::spawn(async move {
        let mut next = 0usize;
        let mut refused = 0u64;
        loop {
            tokio::select! {
                _ = &mut rx => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        if let Some(reason) = over_cap(&open, &opts, fd_cap) {
                            // Say so once in a while, not per connection.
                            if refused.is_multiple_of(1000) {
                                warn!(log, "refusing connection"; "peer" => %peer, "reason" => &reason, "refused" => refused + 1);
                            }
                            refused += 1;
                            actix_rt::spawn(refuse(stream, reason));
                            continue;
                        }
                        open.fetch_add(1, Ordering::Relaxed);
                        let counted = CountedConnection::new(opts.listener);
                        let i = least_loaded(&loads, next);
                        next = next.wrapping_add(1);
                        loads[i].fetch_add(1, Ordering::Relaxed);
                        let slot = ConnSlot(open.clone(), loads[i].clone(), Some(tracker.for_connection()), counted);
                        let svc = service.clone();
                        let log2 = log.clone();
                        let tls = tls.clone();
                        // Registered with this thread's reactor, the socket's
                        // every readiness event would pass through this thread
                        // and wake the worker from here (two wake-ups per
                        // event, and the accept thread busy with every
                        // connection's I/O): hand the worker a plain socket
                        // that it registers with its own reactor.
                        let stream = match stream.into_std() {
                            Ok(s) => s,
                            Err(e) => {
                                error!(log, "cannot hand the connection to a worker"; "peer" => %peer, "error" => %e);
                                continue;
                            }
                        };
                        workers[i].spawn(async move {
                            let stream = match TcpStream::from_std(stream) {
                                Ok(s) => s,
                                Err(e) => {
                                    error!(log2, "cannot register the connection"; "peer" => %peer, "error" => %e);
                                    return;
                                }
                            };
                            let stream = match tls {
                                None => stream.into(),
                                Some(t) => {
                                    let accepted = tokio::select! {
                                        a = t.accept(stream, &log2) => a,
                                        _ = slot.closed() => return,
                                    };
                                    // A refusal is logged (rate limited) by `accept`.
                                    match accepted {
                                        Ok(s) => s,
                                        Err(_) => return,
                                    }
                                }
                            };
                            if let Err(e) = Connection::start_with_slot(stream, svc, opts.limits, Some(slot), log2.clone()) {
                                error!(log2, "cannot start connection"; "error" => %e);
                            }
                        });
                    }
                    Err(e) => {
                        // EMFILE and friends: back off a little instead of spinning.
                        error!(log, "accept failed"; "error" => %e);
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                }
            }
        }
        info!(log, "stopped accepting"; "addr" => %local_addr);
        drop(tracker);
    });
    Ok(ServerHandle {
        local_addr,
        stop: Some(tx),
        connections,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_connections_go_to_the_least_loaded_worker() {
        let loads: Vec<Arc<AtomicUsize>> = (0..2).map(|_| Arc::default()).collect();
        let slot = |i: usize| {
            loads[i].fetch_add(1, Ordering::Relaxed);
            let counted = CountedConnection::new(crate::metrics::Listener::Broker);
            ConnSlot(
                Arc::new(AtomicUsize::new(1)),
                loads[i].clone(),
                None,
                counted,
            )
        };
        let a = slot(least_loaded(&loads, 0));
        let short = slot(least_loaded(&loads, 1));
        drop(short); // a short-lived connection came and went
        let b = least_loaded(&loads, 2);
        assert_eq!(b, 1, "the second long connection goes to the idle worker");
        drop(a);
    }
}
