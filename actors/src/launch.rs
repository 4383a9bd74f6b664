//! Starting and stopping a whole broker, or a NameServer
//! ([`start_namesrv`]), inside any actix System.
//!
//! [`start_broker`] binds the client port, opens the store (recovery runs
//! here) on a dedicated Arbiter, only then listens (ready means ready: no
//! client waits on a recovering broker), starts the ConsumerOffsets, Broker and TopicQueue actors, and
//! accepts connections on one worker Arbiter per core. [`BrokerHandle::shutdown`]
//! is the graceful stop: no new connections, unregister from the
//! NameServers, persist offsets, flush and write a clean checkpoint so the
//! next start skips the recovery scan; it also stops what runs on the
//! caller's arbiter (the RocketMQ remoting connections, the Transaction
//! actor, whose tick would pin the stopped threads' runtimes, the consumer
//! group actors, whose scan timers kept them running), and waits for the
//! broker's threads to end, so that starts and stops in one process leave
//! nothing open or running ([`BrokerHandle::actors`]).
//! [`NameServerHandle::shutdown`] stops a NameServer with its connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use slog::{error, info, Logger};

use crate::broker::{Broker, Unregister};
use crate::config::BrokerConfig;
use crate::consumer_group::GroupTimings;
use crate::consumer_offsets::{ConsumerOffsets, FlushOffsets};
use crate::group_registry::ConsumerGroups;
use crate::namesrv::{NameServer, NameServerService};
use crate::processor::{BrokerService, Shared};
use crate::remoting::{self, ServerHandle};
use crate::replicator::Replicator;
use crate::scheduler::Scheduler;
use crate::storage::{Shutdown, Storage};
use crate::transaction::Transaction;

/// Why a broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    // Not a `#[source]`: the text already carries it, and an error chain
    // printed with its sources would say it twice.
    #[error("cannot open the store: {0}")]
    Store(crate::message_store::StoreError),
    #[error("cannot listen on {addr}: {err}")]
    Bind { addr: String, err: std::io::Error },
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl From<crate::message_store::StoreError> for LaunchError {
    fn from(e: crate::message_store::StoreError) -> Self {
        LaunchError::Store(e)
    }
}

/// A running broker.
pub struct BrokerHandle {
    pub broker: Addr<Broker>,
    pub storage: Addr<Storage>,
    pub offsets: Addr<ConsumerOffsets>,
    pub replicator: Addr<crate::replicator::Replicator>,
    /// Stopped at shutdown: it runs on the caller's arbiter, which lives on.
    transaction: Addr<Transaction>,
    /// The configuration it runs with (ports as bound).
    pub config: Arc<BrokerConfig>,
    server: ServerHandle,
    /// `GET /metrics` when `metrics_port` is set; the source below feeds
    /// every metrics endpoint of the process while the broker runs.
    metrics: Option<crate::metrics::MetricsServer>,
    _metrics_source: Arc<dyn crate::metrics::Source>,
    /// Connection workers; the first also runs Storage.
    workers: Vec<Arbiter>,
    scheduler_arbiter: Arbiter,
    offsets_arbiter: Arbiter,
    broker_arbiter: Arbiter,
    /// The ACL file's watcher (ACL on): stopped with the broker.
    acl_watcher: Option<crate::acl::AclWatcherHandle>,
    /// The RocketMQ remoting listener, when `remoting_port` is set.
    rocketmq: Option<remoting::rocketmq::RemotingListenerHandle>,
    /// Stopped at shutdown (they run on the caller's arbiter): the group
    /// registry with every group's actor, and the client registry.
    group_manager: Addr<ConsumerGroups>,
    groups: crate::group_registry::GroupsView,
    clients: Addr<crate::client_registry::ClientRegistry>,
    /// Stopped with their threads; held for [`BrokerHandle::actors`].
    scheduler: Addr<Scheduler>,
    sub_groups: Addr<crate::subscription_groups::SubscriptionGroups>,
    topics: crate::broker::TopicsView,
    log: Logger,
}

/// The actors of a running broker, held weakly (holding this keeps none
/// of them running), to tell which still run: none once
/// [`BrokerHandle::shutdown`] has returned.
pub struct BrokerActors(Vec<(String, Box<dyn Fn() -> bool>)>);

impl BrokerActors {
    fn add<A: Actor>(&mut self, name: impl Into<String>, a: &Addr<A>) {
        let weak = a.downgrade();
        self.0
            .push((name.into(), Box::new(move || weak.upgrade().is_some())));
    }

    /// The names of those still running (`consumer group G`,
    /// `topic queue T`, `storage`, ...).
    pub fn running(&self) -> Vec<String> {
        self.0
            .iter()
            .filter(|(_, alive)| alive())
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// How many actors this names.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it names none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl BrokerHandle {
    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr
    }

    /// The RocketMQ remoting address, when `remoting_port` is set.
    pub fn remoting_addr(&self) -> Option<SocketAddr> {
        self.rocketmq.as_ref().map(|r| r.local_addr)
    }

    /// Every actor this broker started so far: Broker, Storage,
    /// ConsumerOffsets, SubscriptionGroups, Scheduler, Transaction,
    /// Replicator, ClientRegistry, ConsumerGroups, and one per consumer
    /// group and topic existing now.
    pub fn actors(&self) -> BrokerActors {
        let mut a = BrokerActors(Vec::new());
        a.add("broker", &self.broker);
        a.add("storage", &self.storage);
        a.add("consumer offsets", &self.offsets);
        a.add("subscription groups", &self.sub_groups);
        a.add("scheduler", &self.scheduler);
        a.add("transaction", &self.transaction);
        a.add("replicator", &self.replicator);
        a.add("client registry", &self.clients);
        a.add("consumer groups", &self.group_manager);
        for g in self.groups.iter() {
            a.add(format!("consumer group {}", g.key()), g.value());
        }
        for t in self.topics.iter() {
            a.add(format!("topic queue {}", t.key()), &t.value().addr);
        }
        a
    }

    /// Graceful stop: stop accepting, unregister, persist offsets, flush and
    /// checkpoint the store, then close every client connection (both
    /// ports), stop every actor it started ([`BrokerHandle::actors`]) and
    /// wait for its threads to end: when this returns, none of them runs.
    pub async fn shutdown(mut self) {
        self.server.stop_accepting();
        // Its connections run on this arbiter, not on the workers stopped
        // below: closed here.
        if let Some(r) = self.rocketmq.take() {
            r.shutdown().await;
        }
        let _ = self
            .replicator
            .send(crate::replicator::StopReplication)
            .await;
        if let Some(m) = self.metrics.take() {
            m.stop().await;
        }
        self.scheduler_arbiter.stop();
        let _ = self.broker.send(Unregister).await;
        match self.offsets.send(FlushOffsets).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => error!(self.log, "cannot persist consumer offsets"; "error" => %e),
            Err(e) => error!(self.log, "consumer offsets actor gone"; "error" => %e),
        }
        let _ = self
            .transaction
            .send(crate::transaction::StopTransaction)
            .await;
        match self.storage.send(Shutdown).await {
            Ok(Ok(())) => info!(self.log, "store flushed and checkpointed"),
            Ok(Err(e)) => error!(self.log, "store shutdown failed"; "error" => %e),
            Err(e) => error!(self.log, "storage actor gone"; "error" => %e),
        }
        // Connections closed before their threads stop: when this
        // returns, no client is still connected.
        self.server.shutdown().await;
        // They run on the caller's arbiter, which lives on: a group's
        // scan timer kept its actor running after the broker stopped.
        let _ = self
            .group_manager
            .send(crate::group_registry::StopGroups)
            .await;
        let _ = self
            .clients
            .send(crate::client_registry::StopClientRegistry)
            .await;
        if let Some(w) = self.acl_watcher.as_mut() {
            w.stop();
        }
        let mut threads = std::mem::take(&mut self.workers);
        threads.extend([
            self.offsets_arbiter,
            self.broker_arbiter,
            self.scheduler_arbiter,
        ]);
        for t in &threads {
            t.stop();
        }
        // A thread ends once its actors are dropped (Storage closes its
        // files then); joined off this thread, which may be one of the
        // caller's that other work runs on.
        let joined = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
        if joined.is_err() {
            error!(self.log, "a broker thread panicked while stopping");
        }
    }
}

/// Backlog of the client listener.
const LISTEN_BACKLOG: u32 = 1024;

/// A TCP socket bound to `host:port` that does not listen yet: connects to
/// it are refused until [`tokio::net::TcpSocket::listen`].
async fn bind_unlistened(host: &str, port: u16) -> std::io::Result<tokio::net::TcpSocket> {
    let addr = tokio::net::lookup_host((host, port))
        .await?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address"))?;
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    Ok(socket)
}

/// Starts a broker inside the current actix System.
pub async fn start_broker(config: BrokerConfig, log: Logger) -> Result<BrokerHandle, LaunchError> {
    config.validate().map_err(LaunchError::Config)?;
    let log = log.new(slog::o!("broker" => config.broker_name.clone()));
    // Bound now (the port is ours and known), listening only once the
    // store is recovered: until then a client is refused at once instead
    // of hanging on a socket nobody answers.
    let socket = bind_unlistened(&config.listen_host, config.port)
        .await
        .map_err(|err| LaunchError::Bind {
            addr: format!("{}:{}", config.listen_host, config.port),
            err,
        })?;
    let mut config = config;
    if config.port == 0 {
        config.port = socket.local_addr()?.port();
    }
    let ha_listener = if config.is_slave() {
        None
    } else {
        let host = config.listen_host.as_str();
        let l = match tokio::net::TcpListener::bind((host, config.ha_bind_port())).await {
            Ok(l) => l,
            // The default `port + 1` is taken: any port will do, slaves
            // learn it from the NameServers.
            Err(e) if config.ha_port.is_none() => {
                slog::warn!(log, "default HA port unavailable, using an ephemeral one";
                    "port" => config.ha_bind_port(), "error" => %e);
                tokio::net::TcpListener::bind((host, 0)).await?
            }
            Err(err) => {
                return Err(LaunchError::Bind {
                    addr: format!("{host}:{} (ha_port)", config.ha_bind_port()),
                    err,
                })
            }
        };
        config.ha_port = Some(l.local_addr()?.port());
        Some(l)
    };
    // Bound before anything starts: a taken remoting port fails the start
    // (standalone's default falls back to an ephemeral port instead).
    let rocketmq_listener = match config.remoting_port {
        None => None,
        Some(port) => {
            let host = config.listen_host.as_str();
            let l = match remoting::rocketmq::bind(host, port).await {
                Ok(l) => l,
                Err(e) if config.remoting_port_fallback => {
                    slog::warn!(log, "default RocketMQ remoting port unavailable, using an ephemeral one (named in the routes)";
                        "port" => port, "error" => %e);
                    remoting::rocketmq::bind(host, 0).await?
                }
                Err(e) => return Err(e.into()),
            };
            config.remoting_port = Some(l.local_addr()?.port());
            Some(l)
        }
    };
    // Bound before anything starts: a taken metrics port fails the start.
    let metrics_server = match config.metrics_port {
        Some(port) => Some(
            crate::metrics::serve(&config.listen_host, port, &log)
                .await
                .map_err(|err| LaunchError::Bind {
                    addr: format!("{}:{port} (metrics_port)", config.listen_host),
                    err,
                })?,
        ),
        None => None,
    };
    let server_tls = crate::tls::ServerTls::load(
        config.tls_mode,
        config.tls_cert_file.as_deref(),
        config.tls_key_file.as_deref(),
        config.tls_client_ca_file.as_deref(),
    )
    .map_err(LaunchError::Config)?;
    config.outgoing_tls = config.load_outgoing_tls().map_err(LaunchError::Config)?;
    let (acl, acl_watcher) = if config.acl_enabled {
        let (a, w) = crate::acl::AclWatcher::start(&config.acl_file, log.clone())
            .map_err(LaunchError::Config)?;
        (Some(a), Some(w))
    } else {
        (None, None)
    };
    let store_host: SocketAddr = config.advertised().parse().map_err(|e| {
        LaunchError::Config(format!("advertised address '{}': {e}", config.advertised()))
    })?;
    let config = Arc::new(config);

    // Connection workers (`connection_workers`, by default one per core
    // but one). Storage lives on the first: the sends of the connections
    // served there reach it without crossing threads (no wake-up syscalls,
    // no context switch per batch), which on a small box is a quarter of a
    // send's broker CPU (docs/benchmarks.md, "Storage on a connection
    // worker"). Connections on the other workers hand it their batches.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers: Vec<Arbiter> = (0..worker_count(config.connection_workers, cores))
        .map(|_| Arbiter::new())
        .collect();
    let mut started = StartGuard {
        storage: None,
        arbiters: workers.iter().map(Arbiter::handle).collect(),
    };
    let storage =
        Storage::start_on(&workers[0].handle(), config.store.clone(), log.clone()).await?;
    started.storage = Some(storage.clone());
    // Recovery is done: accept clients (they queue in the backlog until
    // the service below is up, which takes no disk scan).
    let listener = socket.listen(LISTEN_BACKLOG)?;
    info!(log, "store recovered, accepting connections"; "port" => config.port);
    // Offsets are written and fsynced by their owner: on a thread of its own.
    let offsets_state =
        ConsumerOffsets::open(&config.store.data_dir, Duration::from_secs(5), log.clone())?;
    let offsets_arbiter = Arbiter::new();
    started.arbiters.push(offsets_arbiter.handle());
    let offsets =
        ConsumerOffsets::start_in_arbiter(&offsets_arbiter.handle(), move |_| offsets_state);
    let sub_groups =
        crate::subscription_groups::SubscriptionGroups::open(&config.store.data_dir, &log)?
            .start_on(&offsets_arbiter.handle());
    let broker = Broker::new(config.clone(), storage.clone(), log.clone())?;
    let registry = broker.topics_view();
    let live = broker.live_settings();
    // topics.json is fsynced by its owner on a thread of its own; the
    // TopicQueues (on every send's path) stay on this one.
    let broker_arbiter = Arbiter::new();
    started.arbiters.push(broker_arbiter.handle());
    let broker = Broker::start_in_arbiter(&broker_arbiter.handle(), move |_| broker);

    let scheduler_arbiter = Arbiter::new();
    started.arbiters.push(scheduler_arbiter.handle());
    let scheduler = Scheduler::start_on(
        &scheduler_arbiter.handle(),
        &config,
        storage.clone(),
        broker.clone(),
        registry.clone(),
        log.clone(),
    )
    .await
    .map_err(LaunchError::Config)?;

    let transaction = Transaction::load(
        &config,
        storage.clone(),
        broker.clone(),
        registry.clone(),
        store_host,
        log.clone(),
    )
    .await?
    .start();
    let timings = GroupTimings {
        client_expire: Duration::from_secs(config.client_expire_secs.max(1)),
        scan_interval: Duration::from_millis(config.group_scan_interval_ms.max(10)),
        lock_lease: Duration::from_secs(config.order_lock_lease_secs.max(1)),
    };
    let group_manager = ConsumerGroups::new(timings, config.max_frame_size, log.clone());
    let groups = group_manager.groups_view();
    let group_manager = group_manager.start();
    let peers = crate::replicator::Peers {
        storage: storage.clone(),
        broker: broker.clone(),
        offsets: offsets.clone(),
        scheduler: scheduler.addr.clone(),
        registry: registry.clone(),
        appends: storage
            .send(crate::storage::SubscribeAppends)
            .await
            .map_err(|_| crate::message_store::StoreError::ShutDown)?,
        acl: acl.clone(),
        tls: server_tls.clone(),
    };
    let replicator = Replicator::new(config.clone(), peers, ha_listener, log.clone()).start();
    if config.is_slave() {
        broker.do_send(crate::broker::WatchMaster(replicator.clone().recipient()));
    }
    let metrics = Arc::new(crate::metrics::broker::BrokerMetrics::new(
        &config.cluster_name,
        &config.broker_name,
    ));
    let metrics_source: Arc<dyn crate::metrics::Source> =
        Arc::new(crate::metrics::broker_source::BrokerSource::new(
            config.clone(),
            metrics.clone(),
            crate::metrics::broker_source::BrokerOwners {
                storage: storage.clone(),
                offsets: offsets.clone(),
                replicator: replicator.clone(),
                scheduler: scheduler.addr.clone(),
                transaction: transaction.clone(),
                topics: registry.clone(),
                groups: groups.clone(),
            },
        ));
    crate::metrics::register_source(&metrics_source);
    let clients = crate::client_registry::ClientRegistry::new(Duration::from_secs(
        config.client_expire_secs.max(1),
    ))
    .start();
    let (groups_of_handle, topics_of_handle) = (groups.clone(), registry.clone());
    let (scheduler_addr, sub_groups_addr) = (scheduler.addr.clone(), sub_groups.addr.clone());
    let shared = Shared {
        metrics,
        live,
        config: config.clone(),
        broker: broker.clone(),
        storage: storage.clone(),
        offsets: offsets.clone(),
        topics: registry,
        groups,
        group_manager: group_manager.clone(),
        replicator: replicator.clone(),
        store_host,
        scheduler,
        transaction: transaction.clone(),
        sub_groups,
        clients: clients.clone(),
        acl,
    };
    let opts = config.serve_options();
    let service = BrokerService::new(shared);
    let rocketmq = match rocketmq_listener {
        Some(l) => Some(remoting::rocketmq::serve(
            (l, crate::metrics::Listener::BrokerRemoting),
            service.rocketmq_answer(),
            service.rocketmq_limits(),
            server_tls.clone(),
            log.clone(),
        )?),
        None => None,
    };
    let server = remoting::server::serve_tls(
        listener,
        service,
        opts,
        workers.iter().map(|w| w.handle()).collect(),
        server_tls,
        log.clone(),
    )?;
    started.disarm();
    Ok(BrokerHandle {
        broker,
        storage,
        offsets,
        replicator,
        transaction,
        config,
        server,
        metrics: metrics_server,
        _metrics_source: metrics_source,
        workers,
        scheduler_arbiter,
        offsets_arbiter,
        broker_arbiter,
        acl_watcher,
        rocketmq,
        group_manager,
        groups: groups_of_handle,
        clients,
        scheduler: scheduler_addr,
        sub_groups: sub_groups_addr,
        topics: topics_of_handle,
        log,
    })
}

/// Undoes a broker start that failed after its store opened: closes the
/// store (and with it the data directory's lock, so a retry in this
/// process, as controller mode does, can open it) and stops the threads
/// started so far. Disarmed once the broker is up.
struct StartGuard {
    storage: Option<Addr<Storage>>,
    arbiters: Vec<ArbiterHandle>,
}

impl StartGuard {
    fn disarm(&mut self) {
        self.storage = None;
        self.arbiters.clear();
    }
}

impl Drop for StartGuard {
    fn drop(&mut self) {
        if let Some(storage) = self.storage.take() {
            storage.do_send(Shutdown);
        }
        // Stopping Storage's thread drops the actor and its store even if
        // the Shutdown above was not handled first.
        for a in self.arbiters.drain(..) {
            a.stop();
        }
    }
}

/// A running NameServer: the actor and its listener.
pub struct NameServerHandle {
    pub addr: Addr<NameServer>,
    pub server: ServerHandle,
    /// `GET /metrics` when `metrics_port` is set; the source feeds every
    /// metrics endpoint of the process while this handle lives.
    pub metrics: Option<crate::metrics::MetricsServer>,
    _metrics_source: std::sync::Arc<dyn crate::metrics::Source>,
    /// The web dashboard, when `dashboard_port` is set.
    pub dashboard: Option<crate::namesrv::dashboard::DashboardHandle>,
    /// The ACL file's watcher (ACL on); dropping the handle stops it.
    pub acl_watcher: Option<crate::acl::AclWatcherHandle>,
    /// The RocketMQ remoting listener, when `remoting_port` is set.
    pub remoting: Option<crate::namesrv::rocketmq::RemotingListenerHandle>,
}

impl NameServerHandle {
    /// The bound address (useful when the port was 0).
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.server.local_addr
    }

    /// Stops the NameServer: no new connections, every established one
    /// closed (client port and RocketMQ remoting port: a client that was
    /// connected gets a connection error, not answers from a stopped
    /// server), the dashboard, metrics endpoint and ACL watcher stopped.
    /// Returns once the connections' sockets are closed. Dropping the
    /// handle instead only stops accepting.
    pub async fn shutdown(self) {
        let NameServerHandle {
            addr,
            mut server,
            metrics,
            _metrics_source,
            dashboard,
            acl_watcher,
            remoting,
        } = self;
        server.shutdown().await;
        if let Some(r) = remoting {
            r.shutdown().await;
        }
        if let Some(m) = metrics {
            m.stop().await;
        }
        drop((dashboard, acl_watcher, _metrics_source));
        let _ = addr.send(crate::namesrv::StopNameServer).await;
    }
}

/// Starts a NameServer inside the current actix System: its listener, the
/// actor, the dashboard and the metrics source when configured.
pub async fn start_namesrv(
    config: crate::config::NameServerConfig,
    log: Logger,
) -> std::io::Result<NameServerHandle> {
    let listener = tokio::net::TcpListener::bind((config.listen_host.as_str(), config.port))
        .await
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "cannot listen on {}:{}: {e}",
                    config.listen_host, config.port
                ),
            )
        })?;
    let opts = config.serve_options();
    let remoting = config.remoting_port.map(|p| {
        (
            config.listen_host.clone(),
            p,
            crate::namesrv::rocketmq::RemotingLimits::of(&config),
        )
    });
    let metrics = match config.metrics_port {
        Some(port) => Some(crate::metrics::serve(&config.listen_host, port, &log).await?),
        None => None,
    };
    let node_id = listener.local_addr()?.to_string();
    let mut dash = crate::namesrv::dashboard::DashboardConfig::of(&config);
    let (acl, acl_watcher) = if config.acl_enabled {
        let (a, w) = crate::acl::AclWatcher::start(&config.acl_file, log.clone())
            .map_err(std::io::Error::other)?;
        (Some(a), Some(w))
    } else {
        (None, None)
    };
    // Read at start whether or not the dashboard runs: a bad file fails it.
    let to_brokers = config.outgoing_tls().map_err(std::io::Error::other)?;
    if let Some(d) = dash.as_mut() {
        d.acl = acl.clone();
        d.tls = to_brokers;
    }
    let tls = config.server_tls().map_err(std::io::Error::other)?;
    let addr = NameServer::new(config, log.clone()).start();
    let dashboard = match dash {
        Some(d) => Some(crate::namesrv::dashboard::start(
            d,
            addr.clone(),
            log.clone(),
        )?),
        None => None,
    };
    let remoting = match remoting {
        Some((host, port, limits)) => Some(
            crate::namesrv::rocketmq::start(
                &host,
                port,
                addr.clone(),
                acl.clone(),
                limits,
                tls.clone(),
                log.clone(),
            )
            .await?,
        ),
        None => None,
    };
    let ns_metrics = std::sync::Arc::new(crate::metrics::namesrv::NameServerMetrics::new(&node_id));
    let metrics_source: std::sync::Arc<dyn crate::metrics::Source> =
        std::sync::Arc::new(crate::metrics::namesrv_source::NameServerSource::new(
            addr.clone(),
            &node_id,
            ns_metrics.clone(),
        ));
    crate::metrics::register_source(&metrics_source);
    let server = remoting::server::serve_tls(
        listener,
        NameServerService::new(addr.clone())
            .with_acl(acl)
            .with_metrics(Some(ns_metrics)),
        opts,
        Vec::new(),
        tls,
        log,
    )?;
    Ok(NameServerHandle {
        addr,
        server,
        metrics,
        _metrics_source: metrics_source,
        dashboard,
        acl_watcher,
        remoting,
    })
}

/// Connection workers for `connection_workers = configured` on `cores`
/// cores: as configured, or for 0 one per core but one, at least one.
fn worker_count(configured: usize, cores: usize) -> usize {
    match configured {
        0 => cores.saturating_sub(1).max(1),
        n => n,
    }
}

#[cfg(test)]
mod worker_tests {
    use super::worker_count;

    #[test]
    fn connection_workers_default_leaves_a_core() {
        assert_eq!(worker_count(0, 1), 1);
        assert_eq!(worker_count(0, 2), 1);
        assert_eq!(worker_count(0, 8), 7);
        assert_eq!(worker_count(3, 2), 3);
    }
}
