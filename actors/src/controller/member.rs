//! A broker in controller mode (`enable_controller_mode = true`,
//! docs/failover.md): the driver that heartbeats the controller leader and
//! runs the broker in the role the controller answers.
//!
//! The broker itself ([`crate::launch::start_broker`]) keeps a fixed role
//! for its lifetime, so a role change **relaunches it in-process**: the
//! running incarnation is shut down gracefully (unregistered from the
//! NameServers, store flushed and checkpointed, so the next open skips the
//! recovery scan) and a new one is started with the new role — as master
//! it registers with the NameServers as broker id 0 and opens the HA port,
//! as slave it registers under its own id and replicates from the master
//! the controller named. Every incarnation runs on an Arbiter of its own,
//! stopped with it, so nothing of the old role survives.
//!
//! Each heartbeat carries the CommitLog end (the controller elects the most
//! advanced in-sync replica). A master also reports its in-sync set — the
//! slaves the Replicator finds within `ha_max_gap_bytes` and caught up
//! within `ha_max_time_slave_not_catchup_ms` — when it differs from the
//! controller's; with `in_sync_ack`, sends wait for the union of the
//! confirmed and the proposed set until the controller answers.
//!
//! At startup every failure is fatal, as for a fixed-role broker: the data
//! directory is checked before the first heartbeat registers the broker,
//! and a heartbeat answered `IdInUse` (its `broker_id` is alive at another
//! address) ends it. Later, a broker whose id the controller has at another
//! address is displaced (`Role::Displaced`): neither master nor replicating.
//!
//! A new master writes `(epoch, CommitLog end)` to its epoch file before
//! it takes a single write; a slave whose log diverged from its master's
//! (see [`crate::message_store::epoch`]) is relaunched after cutting the log back
//! to the last common epoch. A controller that cannot be reached changes
//! nothing: the broker keeps its role (and a master whose slaves left it
//! stops acknowledging `in_sync_ack` sends, see docs/failover.md).

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use slog::{error, info, warn, Logger};
use tokio::sync::oneshot;

use super::client::ControllerClient;
use super::proto::{AlterSyncStateSet, BrokerHeartbeat, Request, Response};
use super::types::GroupInfo;
use super::view::{RoleView, ViewState};
use crate::config::{BrokerConfig, BrokerRole};
use crate::launch::{start_broker, LaunchError};
use crate::message_store::epoch;
use crate::replicator::{InSyncSlaves, MasterAddrs, Replicator, SetRequiredSlaves};
use crate::storage::{GetStorageStats, Storage};

/// The role the controller's answer gives this broker.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Role {
    Master {
        epoch: u64,
    },
    /// `master`: the master's id, epoch, client and HA address (`None`
    /// while the group has no master or its HA address is not known yet).
    Slave {
        master: Option<(u64, u64, String, String)>,
    },
    /// The controller has this broker's id at another address (another
    /// broker took the id over while this one was dead): neither master
    /// nor replicating, until the id is free again.
    Displaced,
}

/// `(broker_id, client address)`: who a broker is to the controller.
type Me<'a> = (u64, &'a str);

impl Role {
    fn of(g: &GroupInfo, (me, addr): Me) -> Role {
        // By id *and* address: two brokers with one id must never both
        // see themselves as master.
        if g.replicas.get(&me).is_some_and(|a| a != addr) {
            return Role::Displaced;
        }
        match g.master_id {
            Some(m) if m == me => Role::Master {
                epoch: g.master_epoch,
            },
            Some(m) => Role::Slave {
                master: match (g.master_addr(), g.master_ha_addr()) {
                    (Some(a), Some(h)) => Some((m, g.master_epoch, a.to_string(), h.to_string())),
                    _ => None,
                },
            },
            None => Role::Slave { master: None },
        }
    }

    /// Whether the broker running as `self` must relaunch for `g`.
    fn changed_by(&self, g: &GroupInfo, me: Me) -> bool {
        let next = Role::of(g, me);
        match (self, &next) {
            (Role::Master { .. } | Role::Displaced, _) | (_, Role::Displaced) => *self != next,
            (Role::Slave { .. }, Role::Master { .. }) => true,
            // Masterless, or the new master's HA address is not known yet:
            // keep following (or waiting) as now.
            (Role::Slave { .. }, Role::Slave { master: None }) => false,
            (Role::Slave { master }, Role::Slave { master: n }) => master != n,
        }
    }
}

/// A heartbeat's outcome.
enum Beat {
    /// The group as the controller answered it.
    Group(GroupInfo),
    /// Refused: this broker's id is alive at `holder`, another address.
    IdInUse { holder: String },
    /// No answer (or another refusal): nothing changes.
    Lost,
}

/// One running broker (an incarnation in one role).
struct Incarnation {
    stop: oneshot::Sender<()>,
    done: oneshot::Receiver<()>,
    arbiter: Arbiter,
    storage: Addr<Storage>,
    replicator: Addr<Replicator>,
    config: Arc<BrokerConfig>,
}

type Started = (Addr<Storage>, Addr<Replicator>, Arc<BrokerConfig>);

impl Incarnation {
    /// Starts a broker on an Arbiter of its own.
    async fn start(cfg: BrokerConfig, log: Logger) -> Result<Incarnation, LaunchError> {
        let arbiter = Arbiter::new();
        let (ready_tx, ready_rx) = oneshot::channel::<Result<Started, LaunchError>>();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (done_tx, done_rx) = oneshot::channel::<()>();
        arbiter.spawn_fn(move || {
            actix_rt::spawn(async move {
                match start_broker(cfg, log).await {
                    Ok(h) => {
                        let parts = (h.storage.clone(), h.replicator.clone(), h.config.clone());
                        let _ = ready_tx.send(Ok(parts));
                        let _ = stop_rx.await;
                        h.shutdown().await;
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
                let _ = done_tx.send(());
            });
        });
        let started = ready_rx
            .await
            .map_err(|_| LaunchError::Config("the broker's arbiter stopped".into()));
        match started.and_then(|r| r) {
            Ok((storage, replicator, config)) => Ok(Incarnation {
                stop: stop_tx,
                done: done_rx,
                arbiter,
                storage,
                replicator,
                config,
            }),
            Err(e) => {
                arbiter.stop();
                Err(e)
            }
        }
    }

    /// Graceful stop, then the Arbiter and everything on it.
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.done.await;
        self.arbiter.stop();
        let arbiter = self.arbiter;
        let _ = tokio::task::spawn_blocking(move || arbiter.join()).await;
    }
}

/// What the driver keeps between incarnations.
struct Driver {
    base: BrokerConfig,
    me: u64,
    /// This broker's client address, as it heartbeats it.
    addr: String,
    client: ControllerClient,
    view: Arc<RoleView>,
    interval: Duration,
    /// Given to each incarnation's `start_broker`, which names the broker.
    launch_log: Logger,
    /// The driver's own lines: the broker's name and the mode.
    log: Logger,
    /// Heartbeat failures logged while they last.
    complaints: Complaints,
}

/// At most one line per kind of heartbeat failure this often.
const COMPLAINT_INTERVAL: Duration = Duration::from_secs(30);

/// Keeps a lasting heartbeat failure (a controller outage, an id taken by
/// another broker) from logging every `controller_heartbeat_interval_ms`:
/// the first failure of a kind is logged, then one line every
/// [`COMPLAINT_INTERVAL`] saying how many were left out, and one line when
/// heartbeats are answered again.
#[derive(Debug, Default)]
struct Complaints {
    current: Option<(&'static str, Instant)>,
    suppressed: u64,
}

impl Complaints {
    /// A failure of `kind` at `now`: `Some(left out since the last line)`
    /// when it is to be logged.
    fn note(&mut self, kind: &'static str, now: Instant) -> Option<u64> {
        match self.current {
            Some((k, at)) if k == kind && now.duration_since(at) < COMPLAINT_INTERVAL => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.current = Some((kind, now));
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }

    /// A heartbeat was answered: whether failures had been logged.
    fn cleared(&mut self) -> bool {
        self.suppressed = 0;
        self.current.take().is_some()
    }
}

/// Runs a controller-mode broker until `stop` completes.
pub async fn run(
    base: BrokerConfig,
    log: Logger,
    stop: impl Future<Output = ()>,
) -> Result<(), LaunchError> {
    // Here, not only in each start: a bad setting would otherwise be
    // retried every heartbeat for ever.
    base.validate().map_err(LaunchError::Config)?;
    if base.controller_addr.trim().is_empty() {
        return Err(LaunchError::Config(
            "enable_controller_mode needs controller_addr".into(),
        ));
    }
    if base.broker_id == 0 {
        return Err(LaunchError::Config(
            "in controller mode broker_id is the broker's identity in its group and must be > 0 \
             (it registers as id 0 while it is master)"
                .into(),
        ));
    }
    if base.port == 0 {
        return Err(LaunchError::Config(
            "controller mode needs a fixed port (the controller publishes it)".into(),
        ));
    }
    // The broker adds its own name to its log (`start_broker`); the driver's
    // lines get it here, so no line names it twice.
    let launch_log = log.new(slog::o!("mode" => "controller"));
    let log = launch_log.new(slog::o!("broker" => base.broker_name.clone()));
    let me = base.broker_id;
    // Before the first heartbeat registers this broker: a data directory
    // another broker holds would leave a replica the controller lists, and
    // no broker behind it.
    probe_data_dir(&base, &log)?;
    let view = Arc::new(RoleView::new(ViewState {
        broker_id: me,
        epochs: epoch::load(&base.store.data_dir)?,
        ..ViewState::default()
    }));
    let mut d = Driver {
        // Signed with the cluster's broker credential: a controller with
        // ACL on serves heartbeats and in-sync reports only from it.
        client: ControllerClient::new(&base.controller_addr, Duration::from_secs(2))
            .with_credentials(base.credentials()),
        interval: Duration::from_millis(base.controller_heartbeat_interval_ms.max(20)),
        addr: base.advertised(),
        base,
        me,
        view,
        launch_log,
        log,
        complaints: Complaints::default(),
    };
    tokio::pin!(stop);
    // The group as the controller knows it, before anything starts.
    let mut group = loop {
        tokio::select! {
            _ = &mut stop => return Ok(()),
            g = d.heartbeat(None) => match g {
                Beat::Group(g) => break g,
                Beat::IdInUse { holder } => return Err(d.id_in_use(&holder)),
                Beat::Lost => tokio::time::sleep(d.interval).await,
            },
        }
    };
    let my_addr = d.addr.clone();
    let me: Me = (me, &my_addr);
    let mut truncate_to: Option<u64> = None;
    let mut first = true;
    loop {
        if let Some(cut) = truncate_to.take() {
            d.truncate(cut)?;
        }
        let role = Role::of(&group, me);
        let inc = match d.launch(&role, &group).await {
            Ok(i) => i,
            // At startup as in a fixed role: the broker cannot run.
            Err(e) if first => return Err(e),
            Err(e) => {
                warn!(d.log, "cannot start the broker in its new role, retrying"; "error" => %e);
                tokio::select! {
                    _ = &mut stop => return Ok(()),
                    _ = tokio::time::sleep(d.interval) => {}
                }
                d.heartbeat(None).await.apply_to(&mut group, me.0);
                continue;
            }
        };
        first = false;
        if let Role::Master { epoch } = role {
            if let Err(e) = d.begin_epoch(&inc, epoch).await {
                warn!(d.log, "cannot write the epoch file; not taking writes"; "error" => %e);
            }
        }
        // Run until the role changes or the broker is stopped.
        let stopped = loop {
            tokio::select! {
                _ = &mut stop => break true,
                _ = d.view.relaunch.notified() => {
                    if let Some(cut) = d.view.get().truncate_to {
                        truncate_to = Some(cut);
                        break false;
                    }
                }
                _ = tokio::time::sleep(d.interval) => {}
            }
            if !d.heartbeat(Some(&inc)).await.apply_to(&mut group, me.0) {
                continue;
            }
            if role.changed_by(&group, me) {
                info!(d.log, "role change"; "from" => ?role, "to" => ?Role::of(&group, me),
                    "epoch" => group.master_epoch);
                break false;
            }
            if matches!(role, Role::Master { .. }) {
                if let Some(g) = d.report_in_sync(&inc, &group).await {
                    group = g;
                }
            }
            d.view.update(|v| {
                v.in_sync = group.sync_state_set.clone();
                v.master_addr = group.master_addr().map(String::from);
            });
        };
        d.view.update(|v| {
            v.is_master = false;
            v.truncate_to = None;
        });
        inc.stop().await;
        if stopped {
            return Ok(());
        }
    }
}

impl Driver {
    /// One heartbeat; the group as the controller answers it.
    async fn heartbeat(&mut self, inc: Option<&Incarnation>) -> Beat {
        let (max_offset, ha_addr) = match inc {
            Some(i) => match i.storage.send(GetStorageStats).await {
                Ok(end) => (end.max_physical_offset, i.config.ha_advertised()),
                Err(_) => return Beat::Lost,
            },
            None => (0, None),
        };
        let hb = BrokerHeartbeat {
            cluster: self.base.cluster_name.clone(),
            broker_name: self.base.broker_name.clone(),
            broker_id: self.me,
            addr: self.addr.clone(),
            epoch: self.view.get().master_epoch,
            max_offset,
            ha_addr,
        };
        match self
            .client
            .leader_request(&Request::BrokerHeartbeat(hb))
            .await
        {
            Ok(Response::Group(g)) => {
                if self.complaints.cleared() {
                    info!(self.log, "the controller answers heartbeats again");
                }
                Beat::Group(g)
            }
            Ok(Response::IdInUse { holder, .. }) => {
                if let Some(n) = self.complaints.note("id in use", Instant::now()) {
                    error!(self.log, "controller refused the heartbeat: this broker_id is in use by a live broker at another address";
                        "broker_id" => self.me, "addr" => &self.addr, "holder" => &holder,
                        "left_out" => n);
                }
                Beat::IdInUse { holder }
            }
            Ok(other) => {
                if let Some(n) = self.complaints.note("refused", Instant::now()) {
                    warn!(self.log, "controller refused the heartbeat"; "answer" => ?other,
                        "left_out" => n);
                }
                Beat::Lost
            }
            Err(e) => {
                if let Some(n) = self.complaints.note("unreachable", Instant::now()) {
                    warn!(self.log, "no controller leader answered the heartbeat"; "error" => %e, "left_out" => n);
                }
                Beat::Lost
            }
        }
    }

    /// The error a broker refused at startup exits with.
    fn id_in_use(&self, holder: &str) -> LaunchError {
        LaunchError::Config(format!(
            "broker_id {id} of {name} is in use by a live broker at {holder} (this broker is {addr}): \
             two brokers with one broker_id would both act as master; give this broker its own \
             broker_id and data_dir, or stop the other one (the id is free again \
             controller_broker_timeout_ms after its broker stops)",
            id = self.me,
            name = self.base.broker_name,
            addr = self.addr,
        ))
    }

    /// Cuts the CommitLog (no store is open) and the epochs past `cut`.
    fn truncate(&mut self, cut: u64) -> Result<(), LaunchError> {
        epoch::truncate_commit_log(&self.base.store, cut, &self.log)?;
        let mut entries = self.view.get().epochs;
        if cut == 0 {
            entries.clear();
        } else {
            entries.retain(|e| e.start_offset <= cut);
        }
        epoch::store(&self.base.store.data_dir, &entries)?;
        self.view.update(|v| v.epochs = entries);
        Ok(())
    }

    /// The configuration of an incarnation in `role`.
    fn role_config(&self, role: &Role) -> BrokerConfig {
        let mut c = self.base.clone();
        c.controller_view = Some(self.view.clone());
        match role {
            Role::Master { .. } => {
                c.broker_id = 0;
                c.broker_role = if c.in_sync_ack {
                    BrokerRole::SyncMaster
                } else if c.broker_role == BrokerRole::Slave {
                    BrokerRole::AsyncMaster
                } else {
                    c.broker_role
                };
                c.master_ha_addr = None;
            }
            Role::Slave { master } => {
                c.broker_role = BrokerRole::Slave;
                c.master_ha_addr = master.as_ref().map(|(_, _, _, ha)| ha.clone());
            }
            Role::Displaced => {
                c.broker_role = BrokerRole::Slave;
                c.master_ha_addr = None;
            }
        }
        c
    }

    async fn launch(&mut self, role: &Role, g: &GroupInfo) -> Result<Incarnation, LaunchError> {
        self.view.update(|v| {
            v.is_master = false;
            v.master_epoch = g.master_epoch;
            v.master_addr = g.master_addr().map(String::from);
            v.in_sync = g.sync_state_set.clone();
        });
        let cfg = self.role_config(role);
        info!(self.log, "starting"; "role" => ?role, "epoch" => g.master_epoch);
        let inc = Incarnation::start(cfg, self.launch_log.clone()).await?;
        match role {
            Role::Slave {
                master: Some((_, _, addr, _)),
            } => inc.replicator.do_send(MasterAddrs {
                master_addr: Some(addr.clone()),
                ha_master_addr: None,
            }),
            Role::Master { .. } if self.base.in_sync_ack => {
                let slaves = without(&g.sync_state_set, self.me);
                inc.replicator.do_send(SetRequiredSlaves(Some(slaves)));
            }
            _ => {}
        }
        Ok(inc)
    }

    /// A new master: `(epoch, CommitLog end)` into the epoch file, then
    /// writes are taken (the view says master only now).
    async fn begin_epoch(&mut self, inc: &Incarnation, epoch: u64) -> Result<(), LaunchError> {
        let end = inc
            .storage
            .send(GetStorageStats)
            .await
            .map_err(|_| crate::message_store::StoreError::ShutDown)?
            .max_physical_offset;
        let mut entries = self.view.get().epochs;
        if epoch::begin_epoch(&mut entries, epoch, end) {
            epoch::store(&self.base.store.data_dir, &entries)?;
        }
        info!(self.log, "master"; "epoch" => epoch, "start_offset" => end);
        self.view.update(|v| {
            v.epochs = entries;
            v.is_master = true;
        });
        Ok(())
    }

    /// Master: reports the in-sync set when it differs from the
    /// controller's; answers the group after an accepted change.
    async fn report_in_sync(&mut self, inc: &Incarnation, g: &GroupInfo) -> Option<GroupInfo> {
        let mut set = inc.replicator.send(InSyncSlaves).await.ok()?;
        set.insert(self.me);
        set.retain(|b| g.replicas.contains_key(b));
        let in_sync_ack = self.base.in_sync_ack;
        if set == g.sync_state_set {
            if in_sync_ack {
                let slaves = without(&g.sync_state_set, self.me);
                inc.replicator.do_send(SetRequiredSlaves(Some(slaves)));
            }
            return None;
        }
        if in_sync_ack {
            // Until the controller answers, wait for both sets.
            let both: BTreeSet<u64> = g.sync_state_set.union(&set).copied().collect();
            let _ = inc
                .replicator
                .send(SetRequiredSlaves(Some(without(&both, self.me))))
                .await;
        }
        let req = Request::AlterSyncStateSet(AlterSyncStateSet {
            broker_name: g.broker_name.clone(),
            master_id: self.me,
            master_epoch: g.master_epoch,
            sync_state_set_epoch: g.sync_state_set_epoch,
            new_set: set.clone(),
        });
        match self.client.leader_request(&req).await {
            Ok(Response::Group(n)) => {
                info!(self.log, "in-sync set"; "set" => ?n.sync_state_set,
                    "epoch" => n.sync_state_set_epoch);
                if in_sync_ack {
                    let slaves = without(&n.sync_state_set, self.me);
                    inc.replicator.do_send(SetRequiredSlaves(Some(slaves)));
                }
                Some(n)
            }
            other => {
                warn!(self.log, "in-sync set change not accepted"; "set" => ?set, "answer" => ?other);
                None
            }
        }
    }
}

impl Beat {
    /// Brings `group` up to this answer (a refusal: the controller has
    /// `me` at the holder's address); whether there was an answer.
    fn apply_to(self, group: &mut GroupInfo, me: u64) -> bool {
        match self {
            Beat::Group(g) => *group = g,
            Beat::IdInUse { holder } => {
                group.replicas.insert(me, holder);
            }
            Beat::Lost => return false,
        }
        true
    }
}

/// Fails as opening the store would if another process holds the data
/// directory; a directory not made yet is nobody's.
fn probe_data_dir(base: &BrokerConfig, log: &Logger) -> Result<(), LaunchError> {
    let dir = std::path::Path::new(&base.store.data_dir);
    if dir.is_dir() {
        drop(crate::message_store::lock_data_dir(dir, log)?);
    }
    Ok(())
}

fn without(set: &BTreeSet<u64>, me: u64) -> BTreeSet<u64> {
    set.iter().copied().filter(|b| *b != me).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lasting_heartbeat_failure_is_logged_once_per_interval() {
        let mut c = Complaints::default();
        let t0 = Instant::now();
        assert_eq!(c.note("unreachable", t0), Some(0));
        for i in 1..=5 {
            assert_eq!(
                c.note("unreachable", t0 + Duration::from_millis(500 * i)),
                None
            );
        }
        // Another kind is news: logged at once, with what was left out.
        assert_eq!(c.note("id in use", t0 + Duration::from_secs(3)), Some(5));
        assert_eq!(c.note("id in use", t0 + Duration::from_secs(4)), None);
        // The same kind again once the interval has passed.
        assert_eq!(
            c.note(
                "id in use",
                t0 + Duration::from_secs(3) + COMPLAINT_INTERVAL
            ),
            Some(1)
        );
        assert!(c.cleared());
        assert!(!c.cleared());
        assert_eq!(c.note("id in use", t0 + Duration::from_secs(40)), Some(0));
    }

    fn group(master: Option<u64>, epoch: u64, ha: bool) -> GroupInfo {
        let mut g = GroupInfo {
            master_id: master,
            master_epoch: epoch,
            ..GroupInfo::default()
        };
        for id in 1..=3 {
            g.replicas.insert(id, format!("h:{id}"));
            if ha {
                g.ha_addrs.insert(id, format!("h:{}", id + 100));
            }
        }
        g
    }

    #[test]
    fn roles_follow_the_controllers_answer() {
        let m = Role::of(&group(Some(1), 1, true), (1, "h:1"));
        assert_eq!(m, Role::Master { epoch: 1 });
        assert!(!m.changed_by(&group(Some(1), 1, true), (1, "h:1")));
        assert!(
            m.changed_by(&group(Some(2), 2, true), (1, "h:1")),
            "deposed"
        );
        assert!(
            m.changed_by(&group(None, 2, true), (1, "h:1")),
            "left masterless"
        );
        assert!(
            m.changed_by(&group(Some(1), 3, true), (1, "h:1")),
            "re-elected, new epoch"
        );

        let s = Role::of(&group(Some(1), 1, true), (2, "h:2"));
        assert!(
            matches!(&s, Role::Slave { master: Some((1, 1, a, h)) } if a == "h:1" && h == "h:101")
        );
        assert!(
            !s.changed_by(&group(None, 2, true), (2, "h:2")),
            "masterless: keep"
        );
        assert!(
            !s.changed_by(&group(Some(3), 2, false), (2, "h:2")),
            "HA address unknown yet"
        );
        assert!(
            s.changed_by(&group(Some(3), 2, true), (2, "h:2")),
            "new master"
        );
        assert!(
            s.changed_by(&group(Some(2), 2, true), (2, "h:2")),
            "elected"
        );
    }

    /// Two brokers with one id: only the one at the replica's address is
    /// ever master; the other is displaced (walkthrough: both became
    /// master of one epoch and acknowledged sends were lost).
    #[test]
    fn a_broker_not_at_its_ids_address_is_never_master() {
        let g = group(Some(1), 1, true);
        assert_eq!(Role::of(&g, (1, "h:1")), Role::Master { epoch: 1 });
        assert_eq!(Role::of(&g, (1, "h:9")), Role::Displaced);
        assert_eq!(Role::of(&g, (2, "h:9")), Role::Displaced);
        let m = Role::Master { epoch: 1 };
        assert!(m.changed_by(&g, (1, "h:9")), "a master steps down");
        let s = Role::of(&g, (2, "h:2"));
        assert!(s.changed_by(&g, (2, "h:9")), "a slave stops replicating");
        assert!(!Role::Displaced.changed_by(&g, (1, "h:9")));
        assert!(
            Role::Displaced.changed_by(&g, (1, "h:1")),
            "the id is free again"
        );
    }
}
