//! Run Skylark inside your own actix System.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use skylark::embedded;
//! let log = slog::Logger::root(slog::Discard, slog::o!());
//! let dir = std::env::temp_dir().join("skylark-embedded");
//! let node = embedded::start_standalone(&dir, 0, 0, log).await?;
//! println!("nameserver on {}", node.namesrv_addr());
//! node.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Port 0 picks free ports; [`Standalone::namesrv_addr`] tells which.
//!
//! [`Standalone::shutdown`] stops both completely: listeners closed,
//! established connections closed (a connected client gets a connection
//! error), every actor the broker started stopped (consumer groups' too,
//! on the caller's arbiter: [`BrokerHandle::actors`]), threads ended and
//! store files closed, so a start after it in the same process and System
//! begins from nothing left over.
//!
//! The store has `skylark standalone`'s laptop-sized defaults
//! ([`crate::config::STANDALONE_STORE_DEFAULTS`]: 64 MiB CommitLog
//! segments, ≈8.4 MB IndexFiles), except in a data directory whose
//! CommitLog was made with RocketMQ's 1 GiB segments, which keeps them.

use std::net::SocketAddr;
use std::path::Path;

pub use skylark_actors::config::{BrokerConfig, NameServerConfig};
pub use skylark_actors::launch::{
    start_broker, start_namesrv, BrokerHandle, LaunchError, NameServerHandle,
};

/// A NameServer and a Broker started together (what `skylark standalone` runs).
pub struct Standalone {
    pub namesrv: NameServerHandle,
    pub broker: BrokerHandle,
}

impl Standalone {
    /// Where clients find the NameServer.
    pub fn namesrv_addr(&self) -> SocketAddr {
        self.namesrv.local_addr()
    }
    /// The broker's client address.
    pub fn broker_addr(&self) -> SocketAddr {
        self.broker.local_addr()
    }
    /// Graceful stop of both: the broker first (it unregisters from the
    /// NameServer), then the NameServer with its connections
    /// ([`NameServerHandle::shutdown`]): a client still connected gets a
    /// connection error, not answers from a stopped server.
    pub async fn shutdown(self) {
        self.broker.shutdown().await;
        self.namesrv.shutdown().await;
    }
}

/// Starts a NameServer and a Broker on 127.0.0.1 with default settings and
/// data in `data_dir`. Must be called inside a running actix System.
pub async fn start_standalone(
    data_dir: &Path,
    namesrv_port: u16,
    broker_port: u16,
    log: slog::Logger,
) -> anyhow::Result<Standalone> {
    let ncfg = NameServerConfig {
        port: namesrv_port,
        ..NameServerConfig::default()
    };
    let namesrv = start_namesrv(ncfg, log.clone()).await?;
    let mut bcfg = BrokerConfig {
        broker_name: "standalone".into(),
        port: broker_port,
        namesrv: namesrv.local_addr().to_string(),
        ..BrokerConfig::default()
    };
    if !crate::config::has_rocketmq_sized_commit_log(data_dir) {
        bcfg.store = standalone_store()?;
    }
    bcfg.store.data_dir = data_dir.to_path_buf();
    let broker = start_broker(bcfg, log).await?;
    Ok(Standalone { namesrv, broker })
}

/// The store of `skylark standalone` ([`crate::config::standalone_defaults`]
/// over the store's serde defaults), without the file or the environment
/// `skylark standalone` also reads: an embedding application configures
/// through [`start_broker`].
fn standalone_store() -> anyhow::Result<skylark_actors::message_store::StoreConfig> {
    let mut b = config::Config::builder();
    for (k, v) in crate::config::standalone_defaults() {
        b = b.set_default(k, v)?;
    }
    let cfg: BrokerConfig = b.build()?.try_deserialize()?;
    Ok(cfg.store)
}
