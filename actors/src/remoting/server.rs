//! The accept loop: one listener, connections spread over worker arbiters.
//!
//! An actix `System` runs its actors on one thread, so connections are handed
//! round-robin to a set of `Arbiter`s (one per core) to use every core; the
//! state owners (Broker, TopicQueue, Storage, ...) stay single.

use std::net::SocketAddr;

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
    actix_rt::spawn(async move {
        let mut next = 0usize;
        loop {
            tokio::select! {
                _ = &mut rx => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _peer)) => {
                        let svc = service.clone();
                        let log2 = log.clone();
                        let worker = &workers[next % workers.len()];
                        next = next.wrapping_add(1);
                        worker.spawn(async move {
                            if let Err(e) = Connection::start(stream, svc, opts.max_frame_size, opts.max_inflight, log2.clone()) {
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
    });
    Ok(ServerHandle {
        local_addr,
        stop: Some(tx),
    })
}
