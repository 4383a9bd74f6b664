//! Slave side: the HA connection to the master and the metadata sync.
//!
//! [`run`] loops forever: ask the [`Replicator`](super::Replicator) for the
//! master's HA address, connect, report this store's CommitLog end, then
//! apply every chunk through the Storage actor ([`AppendReplicated`]: the
//! bytes land at the same physical offsets, records are CRC-checked and
//! dispatched to ConsumeQueues), ack the new end, and wake the pulls parked
//! on the queues the chunk touched. Any error closes the connection; the
//! loop reconnects a second later and resumes from the store's own end, so a
//! restarted slave resumes where its files end.

use std::time::Duration;

use actix::Addr;
use slog::{info, warn, Logger};
use tokio::net::TcpStream;

use super::protocol::{self, READ_TIMEOUT};
use super::{GetMasterHa, Replicator, SlaveProgress};
use crate::broker::TopicRegistry;
use crate::storage::{AppendReplicated, GetStorageStats, Storage};

/// Pause between connection attempts.
const RECONNECT: Duration = Duration::from_secs(1);

/// Replicates from the master for as long as the System runs.
pub async fn run(
    replicator: Addr<Replicator>,
    storage: Addr<Storage>,
    registry: TopicRegistry,
    log: Logger,
) {
    let mut last_error = String::new();
    loop {
        let addr = match replicator.send(GetMasterHa).await {
            Ok(Some(a)) => a,
            Ok(None) => {
                tokio::time::sleep(RECONNECT).await;
                continue;
            }
            Err(_) => return,
        };
        match replicate_from(&addr, &replicator, &storage, &registry, &log).await {
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
    addr: &str,
    replicator: &Addr<Replicator>,
    storage: &Addr<Storage>,
    _registry: &TopicRegistry,
    log: &Logger,
) -> std::io::Result<()> {
    let io_err = |m: String| std::io::Error::other(m);
    let stream = tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(addr))
        .await
        .map_err(|_| io_err(format!("connect to {addr} timed out")))??;
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let mut end = storage
        .send(GetStorageStats)
        .await
        .map_err(|e| io_err(format!("storage gone: {e}")))?
        .max_physical_offset;
    protocol::write_offset(&mut wr, end).await?;
    info!(log, "replicating from master"; "master_ha" => addr, "from" => end);
    replicator.do_send(SlaveProgress {
        connected: true,
        applied: Some(end),
        master_max: None,
    });
    loop {
        let (h, data) = tokio::time::timeout(READ_TIMEOUT, protocol::read_chunk(&mut rd))
            .await
            .map_err(|_| io_err("master silent: no chunk nor heartbeat".into()))??;
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
            // Storage itself woke the pulls parked on the touched queues.
            end = applied.end_offset;
        }
        protocol::write_offset(&mut wr, end).await?;
        replicator.do_send(SlaveProgress {
            connected: true,
            applied: Some(end),
            master_max: Some(h.master_max),
        });
    }
}
