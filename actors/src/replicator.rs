//! The `Replicator` actor: master/slave replication of the CommitLog
//! (RocketMQ's HAService).
//!
//! * **Master** (`ASYNC_MASTER` / `SYNC_MASTER`): listens on the HA port;
//!   each slave session ([`master`]) streams the CommitLog from the offset
//!   the slave reports and its acks come here. This actor owns the sessions
//!   and their acked offsets ([`acks::AckTracker`]) and answers
//!   [`WaitReplicated`]: a SYNC_MASTER send is answered once a slave acked
//!   an offset at or past the message's end, `FLUSH_SLAVE_TIMEOUT` after
//!   `sync_replication_timeout_ms`, `SLAVE_NOT_AVAILABLE` at once when no
//!   slave is connected.
//! * **Slave** (broker id > 0): learns its master's addresses from the
//!   NameServer's registration answers ([`MasterAddrs`], or
//!   `master_ha_addr` in the config), replicates over the HA stream
//!   ([`slave`]), creating every topic it receives records of before it
//!   acks them, and copies topics and consumer offsets every 10 s and
//!   hands the master's Scheduler progress to the local Scheduler
//!   ([`metadata`]).
//!
//! The HA wire format is in [`protocol`]. File I/O always goes through the
//! Storage actor: this actor and its tasks never touch the mapped files.
//!
//! Messages answered: [`SessionOpened`], [`SessionClosed`], [`SlaveAck`],
//! [`WaitReplicated`], [`InSyncSlaves`], [`SetRequiredSlaves`] (master);
//! [`MasterAddrs`], [`GetMasterHa`], [`SlaveProgress`], [`SyncSoon`]
//! (slave); [`GetStatus`], [`StopReplication`] (both).

pub mod acks;
pub mod master;
pub mod metadata;
pub mod protocol;
pub mod slave;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use skylark_codec::{ReplicationStatus, SlaveStatus};
use slog::{info, warn, Logger};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Published by the Broker (`broker/master_watch.rs`); re-exported
/// for the controller's member, which sends it too.
pub use crate::broker::MasterAddrs;
use crate::broker::{Broker, TopicsView};
use crate::config::BrokerConfig;
use crate::consumer_offsets::ConsumerOffsets;
use crate::scheduler::Scheduler;
use crate::storage::{GetStorageStats, Storage};
pub use acks::WaitOutcome;
use acks::{AckTracker, Wait};

/// The actors a [`Replicator`] talks to.
pub struct Peers {
    pub storage: Addr<Storage>,
    pub broker: Addr<Broker>,
    pub offsets: Addr<ConsumerOffsets>,
    pub scheduler: Addr<Scheduler>,
    pub registry: TopicsView,
    /// From [`crate::storage::SubscribeAppends`].
    pub appends: watch::Receiver<u64>,
    /// Master: slaves must prove the cluster's broker credential (ACL on).
    pub acl: Option<crate::acl::Acl>,
    /// Master: TLS on the HA port (the broker's `tls_mode`).
    pub tls: Option<Arc<crate::tls::ServerTls>>,
}

/// The replication state owner of a broker.
pub struct Replicator {
    config: Arc<BrokerConfig>,
    storage: Addr<Storage>,
    broker: Addr<Broker>,
    offsets: Addr<ConsumerOffsets>,
    scheduler: Addr<Scheduler>,
    registry: TopicsView,
    listener: Option<TcpListener>,
    acl: Option<crate::acl::Acl>,
    tls: Option<Arc<crate::tls::ServerTls>>,
    /// Master: sessions and acks.
    acks: AckTracker,
    /// Master: per session, what ends its stream when a newer session of
    /// the same slave supersedes it.
    kicks: std::collections::HashMap<u64, tokio::sync::oneshot::Sender<()>>,
    /// Master: the Storage actor's CommitLog end (wakes idle sessions).
    appends: watch::Receiver<u64>,
    /// Slave: the master's client and HA addresses.
    master_addr: Option<String>,
    master_ha: Option<String>,
    /// Slave: HA connection state and progress.
    connected: bool,
    applied: u64,
    master_max: u64,
    /// Slave: push local offsets on the next successful metadata sync.
    push_offsets: bool,
    syncing: bool,
    /// The HA accept loop (master) or the HA client (slave): aborted when
    /// the replicator stops, which closes the HA listener.
    ha_task: Option<tokio::task::JoinHandle<()>>,
    log: Logger,
}

impl Replicator {
    /// A replicator; `listener` is the bound HA port of a master.
    pub fn new(
        config: Arc<BrokerConfig>,
        peers: Peers,
        listener: Option<TcpListener>,
        log: Logger,
    ) -> Replicator {
        let Peers {
            storage,
            broker,
            offsets,
            scheduler,
            registry,
            appends,
            acl,
            tls,
        } = peers;
        let master_ha = config.master_ha_addr.clone();
        Replicator {
            config,
            storage,
            broker,
            offsets,
            scheduler,
            registry,
            listener,
            acl,
            tls,
            acks: AckTracker::default(),
            kicks: Default::default(),
            appends,
            master_addr: None,
            master_ha,
            connected: false,
            applied: 0,
            master_max: 0,
            push_offsets: true,
            syncing: false,
            ha_task: None,
            log: log.new(slog::o!("actor" => "replicator")),
        }
    }

    fn sync_metadata(&mut self, ctx: &mut Context<Self>) {
        let Some(addr) = self.master_addr.clone() else {
            return;
        };
        if self.syncing {
            return;
        }
        self.syncing = true;
        let push = self.push_offsets;
        let (broker, offsets, scheduler, id) = (
            self.broker.clone(),
            self.offsets.clone(),
            self.scheduler.clone(),
            self.config.broker_id,
        );
        let creds = self.config.clone();
        let fut = async move {
            let master = (addr.as_str(), creds);
            metadata::sync_once(master, id, push, &broker, &offsets, &scheduler).await
        };
        ctx.spawn(fut.into_actor(self).map(move |res, act, _| {
            act.syncing = false;
            match res {
                Ok(()) => act.push_offsets = false,
                Err(e) => {
                    if !act.push_offsets {
                        warn!(act.log, "metadata sync with master failed"; "error" => &e);
                    }
                    act.push_offsets = true;
                }
            }
        }));
    }
}

impl Actor for Replicator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
        if self.config.is_slave() {
            let peers =
                slave::SlavePeers {
                    replicator: ctx.address(),
                    storage: self.storage.clone(),
                    broker: self.broker.clone(),
                    registry: self.registry.clone(),
                    creds: self.config.credentials(),
                    tls: self.config.outgoing_tls.clone(),
                    controller: self.config.controller_view.clone().map(|v| {
                        slave::ControllerSide {
                            view: v,
                            data_dir: self.config.store.data_dir.clone(),
                        }
                    }),
                    name: protocol::SlaveName {
                        broker_name: self.config.broker_name.clone(),
                        broker_id: self.config.broker_id,
                        addr: self.config.advertised(),
                    },
                };
            let fut = slave::run(peers, self.log.clone());
            self.ha_task = Some(actix_rt::spawn(fut));
            let every = Duration::from_secs(self.config.metadata_sync_interval_secs.max(1));
            ctx.run_interval(every, |act, ctx| act.sync_metadata(ctx));
        } else if let Some(listener) = self.listener.take() {
            if let Ok(a) = listener.local_addr() {
                info!(self.log, "HA port open"; "addr" => %a, "role" => self.config.role().as_str());
            }
            let fut = master::accept_loop(
                listener,
                self.storage.clone(),
                ctx.address(),
                self.appends.clone(),
                (
                    self.acl.clone(),
                    self.tls.clone(),
                    self.config.controller_view.clone(),
                ),
                self.log.clone(),
            );
            self.ha_task = Some(actix_rt::spawn(fut));
        }
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if let Some(t) = self.ha_task.take() {
            t.abort();
        }
        // Ends every slave session (each waits on its kick).
        self.kicks.clear();
    }
}

/// Stops replication: the HA listener closes, slave sessions end (the
/// broker's shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopReplication;

impl Handler<StopReplication> for Replicator {
    type Result = ();
    fn handle(&mut self, _: StopReplication, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// Master: a slave session started.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SessionOpened {
    pub id: u64,
    pub addr: String,
    /// The slave's broker id from its controller-mode identity.
    pub broker_id: Option<u64>,
    /// The slave's name (broker name, id, advertised address), unless it
    /// predates names.
    pub name: Option<protocol::SlaveName>,
    /// Fired (or dropped) to end the session: a newer one of the same
    /// slave replaced it.
    pub kick: tokio::sync::oneshot::Sender<()>,
}

/// Master: a slave session ended.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SessionClosed {
    pub id: u64,
}

/// Master: a slave acked its CommitLog end.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SlaveAck {
    pub id: u64,
    pub offset: u64,
}

/// Master (SYNC_MASTER): answer once a slave has `..offset`, or once
/// `sync_replication_timeout_ms` has passed since `since`.
///
/// `since` is when the send was appended to this broker's store: the wait for the
/// slave runs alongside the wait for the local fsync (sync flush), as
/// RocketMQ 5's `handleDiskFlushAndHA` does, so a slow disk and a hung slave
/// at once cost the longer of the two timeouts, not their sum.
#[derive(Message)]
#[rtype(result = "WaitOutcome")]
pub struct WaitReplicated {
    pub offset: u64,
    pub since: Instant,
}

/// Master (controller mode): the broker ids of the slaves in sync now
/// (`ha_max_gap_bytes`, `ha_max_time_slave_not_catchup_ms`).
#[derive(Message)]
#[rtype(result = "std::collections::BTreeSet<u64>")]
pub struct InSyncSlaves;

/// Master (controller mode, `in_sync_ack`): the slaves every send must
/// reach before it is answered.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetRequiredSlaves(pub Option<std::collections::BTreeSet<u64>>);

/// Slave: the HA address to replicate from, if known.
#[derive(Message)]
#[rtype(result = "Option<String>")]
pub struct GetMasterHa;

/// Slave: HA connection state and progress.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SlaveProgress {
    pub connected: bool,
    pub applied: Option<u64>,
    pub master_max: Option<u64>,
}

/// Slave: a topic was learned from replicated records; fetch the master's
/// configs now rather than at the next tick.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SyncSoon;

/// This broker's replication state (command `GetReplicationStatus`).
#[derive(Message)]
#[rtype(result = "ReplicationStatus")]
pub struct GetStatus;

impl Handler<SessionOpened> for Replicator {
    type Result = ();
    fn handle(&mut self, m: SessionOpened, _: &mut Self::Context) {
        let addr = m.addr.clone();
        let superseded = self.acks.open_named(m.id, m.addr, m.broker_id, m.name);
        for old in superseded {
            info!(self.log, "slave reconnected: its previous session is closed";
                "session" => old, "slave" => &addr);
            if let Some(k) = self.kicks.remove(&old) {
                let _ = k.send(());
            }
        }
        self.kicks.insert(m.id, m.kick);
    }
}

impl Handler<SessionClosed> for Replicator {
    type Result = ();
    fn handle(&mut self, m: SessionClosed, _: &mut Self::Context) {
        self.acks.close(m.id);
        self.kicks.remove(&m.id);
    }
}

impl Handler<SlaveAck> for Replicator {
    type Result = ();
    fn handle(&mut self, m: SlaveAck, _: &mut Self::Context) {
        self.acks.ack(m.id, m.offset);
    }
}

impl Handler<WaitReplicated> for Replicator {
    type Result = ResponseFuture<WaitOutcome>;
    fn handle(&mut self, m: WaitReplicated, _: &mut Self::Context) -> Self::Result {
        let deadline = m.since + Duration::from_millis(self.config.sync_replication_timeout_ms);
        match self.acks.wait(m.offset) {
            Wait::Now(o) => Box::pin(futures::future::ready(o)),
            Wait::Later(rx) => Box::pin(async move {
                match tokio::time::timeout_at(deadline.into(), rx).await {
                    Ok(Ok(())) => WaitOutcome::Replicated,
                    _ => WaitOutcome::Timeout,
                }
            }),
        }
    }
}

impl Handler<MasterAddrs> for Replicator {
    type Result = ();
    fn handle(&mut self, m: MasterAddrs, ctx: &mut Self::Context) {
        let first = self.master_addr.is_none() && m.master_addr.is_some();
        if m.master_addr.is_some() {
            self.master_addr = m.master_addr;
        }
        // Controller mode: only the controller names the master.
        let from_ns = self.config.controller_view.is_none();
        if from_ns && self.config.master_ha_addr.is_none() && m.ha_master_addr.is_some() {
            if self.master_ha != m.ha_master_addr {
                info!(self.log, "master HA address"; "addr" => m.ha_master_addr.as_deref());
            }
            self.master_ha = m.ha_master_addr;
        }
        if first {
            self.sync_metadata(ctx);
        }
    }
}

impl Handler<InSyncSlaves> for Replicator {
    type Result = MessageResult<InSyncSlaves>;
    fn handle(&mut self, _: InSyncSlaves, _: &mut Self::Context) -> Self::Result {
        let end = *self.appends.borrow();
        let max_time = Duration::from_millis(self.config.ha_max_time_slave_not_catchup_ms);
        MessageResult(
            self.acks
                .in_sync(end, self.config.ha_max_gap_bytes, max_time),
        )
    }
}

impl Handler<SetRequiredSlaves> for Replicator {
    type Result = ();
    fn handle(&mut self, m: SetRequiredSlaves, _: &mut Self::Context) {
        self.acks.set_required(m.0);
    }
}

impl Handler<SyncSoon> for Replicator {
    type Result = ();
    fn handle(&mut self, _: SyncSoon, ctx: &mut Self::Context) {
        self.sync_metadata(ctx);
    }
}

impl Handler<GetMasterHa> for Replicator {
    type Result = Option<String>;
    fn handle(&mut self, _: GetMasterHa, _: &mut Self::Context) -> Option<String> {
        self.master_ha.clone()
    }
}

impl Handler<SlaveProgress> for Replicator {
    type Result = ();
    fn handle(&mut self, m: SlaveProgress, ctx: &mut Self::Context) {
        let was = std::mem::replace(&mut self.connected, m.connected);
        if was && !m.connected {
            // The master may be down, and consumers then commit their
            // offsets here: push them at the next sync. Waiting for a
            // sync to fail missed an outage shorter than the sync interval,
            // and the next sync copied the master's older table over them.
            self.push_offsets = true;
        } else if !was && m.connected && self.push_offsets {
            // Replicating again: push now, before consumers back on the
            // master read its older offsets for a whole sync interval.
            self.sync_metadata(ctx);
        }
        if let Some(a) = m.applied {
            self.applied = a;
        }
        if let Some(x) = m.master_max {
            self.master_max = x;
        }
    }
}

impl Handler<GetStatus> for Replicator {
    type Result = ResponseFuture<ReplicationStatus>;
    fn handle(&mut self, _: GetStatus, _: &mut Self::Context) -> Self::Result {
        let c = &self.config;
        let slave = c.is_slave();
        let mut status = ReplicationStatus {
            broker_name: c.broker_name.clone(),
            broker_id: c.broker_id,
            role: c.role().as_str().to_string(),
            max_offset: self.applied,
            ha_addr: c.ha_advertised(),
            slaves: self
                .acks
                .sessions()
                .into_iter()
                .map(|s| SlaveStatus {
                    addr: s.addr,
                    acked_offset: s.acked,
                    broker_id: s.broker_id,
                    broker_name: s.name.as_ref().map(|n| n.broker_name.clone()),
                    broker_addr: s.name.map(|n| n.addr),
                })
                .collect(),
            master_ha_addr: if slave { self.master_ha.clone() } else { None },
            master_connected: slave && self.connected,
            master_max_offset: self.master_max,
        };
        let storage = self.storage.clone();
        Box::pin(async move {
            if let Ok(s) = storage.send(GetStorageStats).await {
                status.max_offset = s.max_physical_offset;
            }
            status
        })
    }
}
