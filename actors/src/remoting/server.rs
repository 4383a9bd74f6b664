//! The accept loop: one listener, connections spread over worker arbiters.
//!
//! An actix `System` runs its actors on one thread, so connections are handed
//! to a set of `Arbiter`s (one per core) to use every core; the state owners
//! (Broker, TopicQueue, Storage, ...) stay single. Each new connection goes
//! to the worker with the fewest open connections (round-robin among ties):
//! plain round-robin put both of a two-producer bench's connections on one
//! worker whenever a short-lived connection (an admin call, a warm-up send)
//! came in between, leaving a core idle.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix::ArbiterHandle;
use slog::{error, info, Logger};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::{Connection, Service};

/// Limits applied to every connection of a server.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    pub max_frame_size: usize,
    pub max_inflight: usize,
}

/// A running accept loop. Dropping it stops accepting new connections;
/// established connections live on until their peers close them.
pub struct ServerHandle {
    /// The address actually bound (useful with port 0).
    pub local_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl ServerHandle {
    /// Stops accepting new connections.
    pub fn stop_accepting(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
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
    let local_addr = listener.local_addr()?;
    let (tx, mut rx) = oneshot::channel::<()>();
    let workers = if workers.is_empty() {
        vec![actix::Arbiter::current()]
    } else {
        workers
    };
    info!(log, "listening"; "addr" => %local_addr);
    let loads: Vec<Arc<AtomicUsize>> = workers.iter().map(|_| Arc::default()).collect();
    actix_rt::spawn(async move {
        let mut next = 0usize;
        loop {
            tokio::select! {
                _ = &mut rx => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _peer)) => {
                        let svc = service.clone();
                        let log2 = log.clone();
                        let i = least_loaded(&loads, next);
                        next = next.wrapping_add(1);
                        let load = WorkerLoad::enter(loads[i].clone());
                        workers[i].spawn(async move {
                            match Connection::start(stream, svc, opts.max_frame_size, opts.max_inflight, log2.clone()) {
                                Ok(addr) => load.hold_until_stopped(addr),
                                Err(e) => error!(log2, "cannot start connection"; "error" => %e),
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
    });
    Ok(ServerHandle {
        local_addr,
        stop: Some(tx),
    })
}

/// The worker with the fewest open connections, starting the search at
/// `next` so that ties go round-robin.
fn least_loaded(loads: &[Arc<AtomicUsize>], next: usize) -> usize {
    let n = loads.len().max(1);
    (0..n)
        .map(|k| (next + k) % n)
        .min_by_key(|&i| loads.get(i).map_or(0, |l| l.load(Ordering::Relaxed)))
        .unwrap_or(0)
}

/// One open connection counted against its worker until it stops.
struct WorkerLoad(Arc<AtomicUsize>);

impl WorkerLoad {
    fn enter(load: Arc<AtomicUsize>) -> WorkerLoad {
        load.fetch_add(1, Ordering::Relaxed);
        WorkerLoad(load)
    }

    /// Keeps the count until the connection actor has stopped.
    fn hold_until_stopped(self, addr: actix::Addr<Connection>) {
        // A weak address: a strong one would keep the actor alive.
        let weak = addr.downgrade();
        drop(addr);
        actix_rt::spawn(async move {
            // Check on the connection's own thread every second.
            while weak.upgrade().is_some_and(|a| a.connected()) {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            drop(self);
        });
    }
}

impl Drop for WorkerLoad {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_connections_go_to_the_least_loaded_worker() {
        let loads: Vec<Arc<AtomicUsize>> = (0..2).map(|_| Arc::default()).collect();
        let a = WorkerLoad::enter(loads[least_loaded(&loads, 0)].clone());
        let short = WorkerLoad::enter(loads[least_loaded(&loads, 1)].clone());
        drop(short); // a short-lived connection came and went
        let b_at = least_loaded(&loads, 2);
        assert_eq!(
            b_at, 1,
            "the second long connection goes to the idle worker"
        );
        drop(a);
    }
}
