//! The controller's replicated state: per broker group, who is master, the
//! master epoch and the in-sync replica set (RocketMQ's `SyncStateSet`) with
//! its epoch; and the commands that change it.
//!
//! Every command is decided by the controller leader and applied by every
//! controller in log order. Commands carry the epochs they expect
//! (compare-and-set), so two decisions raced against the same state cannot
//! both win: the second is answered [`CommandResult::Rejected`].

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;

use serde::{Deserialize, Serialize};

openraft::declare_raft_types!(
    /// The openraft type configuration of the controller group.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
);

/// A controller's id in the raft group.
pub type NodeId = u64;

/// One broker group (a broker name: one master and its slaves).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInfo {
    pub cluster: String,
    pub broker_name: String,
    /// broker id → the broker's client address, every broker that ever joined.
    pub replicas: BTreeMap<u64, String>,
    /// broker id → its HA address (where slaves replicate from while it
    /// is master), as it last reported.
    #[serde(default)]
    pub ha_addrs: BTreeMap<u64, String>,
    /// The master's broker id; `None` while the group has no master.
    pub master_id: Option<u64>,
    /// Bumped by every election (also one that leaves no master).
    pub master_epoch: u64,
    /// The in-sync replica set, the master included.
    pub sync_state_set: BTreeSet<u64>,
    /// Bumped by every change of the in-sync set.
    pub sync_state_set_epoch: u64,
}

impl GroupInfo {
    /// The master's client address.
    pub fn master_addr(&self) -> Option<&str> {
        self.master_id
            .and_then(|id| self.replicas.get(&id))
            .map(String::as_str)
    }

    /// The master's HA address.
    pub fn master_ha_addr(&self) -> Option<&str> {
        self.master_id
            .and_then(|id| self.ha_addrs.get(&id))
            .map(String::as_str)
    }
}

/// A change to the controller's state, proposed by the leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// A broker joined (or came back with a new address). A group with no
    /// master takes it as master when it may be one: the group is new (no
    /// in-sync set yet) or the broker is in the in-sync set.
    RegisterBroker {
        cluster: String,
        broker_name: String,
        broker_id: u64,
        addr: String,
        #[serde(default)]
        ha_addr: Option<String>,
        /// The replica's address the leader decided against (compare-and-set:
        /// two brokers registering the same id at once cannot both win).
        /// Entries written before it existed apply unchecked.
        #[serde(default)]
        replaces: AddrGuard,
    },
    /// Makes `new_master` the master (`None`: no master) if the master epoch
    /// is still `expected_master_epoch`; bumps the master epoch. A new master
    /// starts with an in-sync set of itself.
    ElectMaster {
        broker_name: String,
        expected_master_epoch: u64,
        new_master: Option<u64>,
    },
    /// The master reports its in-sync set; applied only if master, master
    /// epoch and set epoch are the current ones.
    AlterSyncStateSet {
        broker_name: String,
        master_id: u64,
        master_epoch: u64,
        sync_state_set_epoch: u64,
        new_set: BTreeSet<u64>,
    },
}

/// What [`Command::RegisterBroker`] expects of the id's current address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum AddrGuard {
    /// No check (log entries written before the guard existed).
    #[default]
    Unchecked,
    /// The id has no address yet.
    Vacant,
    /// The id is at this address.
    At(String),
}

impl AddrGuard {
    /// The guard that holds for `current` (the id's address now).
    pub fn of(current: Option<&String>) -> AddrGuard {
        current.map_or(AddrGuard::Vacant, |a| AddrGuard::At(a.clone()))
    }

    fn holds(&self, current: Option<&String>) -> bool {
        match self {
            AddrGuard::Unchecked => true,
            AddrGuard::Vacant => current.is_none(),
            AddrGuard::At(a) => current == Some(a),
        }
    }
}

/// The result of applying a [`Command`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResult {
    /// Applied (or a no-op); the group as it is now.
    Group(GroupInfo),
    /// Not applied: the state moved on, or the command is invalid.
    Rejected(String),
    /// Raft-internal entries (blank, membership) have no result.
    None,
}

/// Everything the state machine holds besides raft bookkeeping.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerState {
    /// broker name → its group.
    pub groups: BTreeMap<String, GroupInfo>,
}

impl ControllerState {
    /// Applies one command (deterministic: every controller gets the same result).
    pub fn apply(&mut self, cmd: &Command) -> CommandResult {
        let applied = match cmd {
            Command::RegisterBroker {
                cluster,
                broker_name,
                broker_id,
                addr,
                ha_addr,
                replaces,
            } => self.register(
                cluster,
                broker_name,
                (*broker_id, addr),
                ha_addr.as_deref(),
                replaces,
            ),
            Command::ElectMaster {
                broker_name,
                expected_master_epoch,
                new_master,
            } => self.elect(broker_name, *expected_master_epoch, *new_master),
            Command::AlterSyncStateSet {
                broker_name,
                master_id,
                master_epoch,
                sync_state_set_epoch,
                new_set,
            } => self.alter_sync_state_set(
                broker_name,
                (*master_id, *master_epoch),
                *sync_state_set_epoch,
                new_set,
            ),
        };
        match applied {
            Ok(g) => CommandResult::Group(g.clone()),
            Err(why) => CommandResult::Rejected(why),
        }
    }

    fn group(&mut self, broker_name: &str) -> Result<&mut GroupInfo, String> {
        self.groups
            .get_mut(broker_name)
            .ok_or_else(|| format!("no broker group {broker_name}"))
    }

    /// `(broker_id, addr)`: who registers, and where.
    fn register(
        &mut self,
        cluster: &str,
        broker_name: &str,
        (broker_id, addr): (u64, &str),
        ha_addr: Option<&str>,
        replaces: &AddrGuard,
    ) -> Result<&GroupInfo, String> {
        let current = self
            .groups
            .get(broker_name)
            .and_then(|g| g.replicas.get(&broker_id));
        if current.map(String::as_str) != Some(addr) && !replaces.holds(current) {
            return Err(format!(
                "broker {broker_name} id {broker_id} moved to {} meanwhile",
                current.map_or("-", String::as_str)
            ));
        }
        let g = self
            .groups
            .entry(broker_name.to_string())
            .or_insert_with(|| GroupInfo {
                cluster: cluster.to_string(),
                broker_name: broker_name.to_string(),
                ..GroupInfo::default()
            });
        g.cluster = cluster.to_string();
        g.replicas.insert(broker_id, addr.to_string());
        if let Some(ha) = ha_addr {
            g.ha_addrs.insert(broker_id, ha.to_string());
        }
        if g.master_id.is_none()
            && (g.sync_state_set.is_empty() || g.sync_state_set.contains(&broker_id))
        {
            g.master_id = Some(broker_id);
            g.master_epoch += 1;
            g.sync_state_set = BTreeSet::from([broker_id]);
            g.sync_state_set_epoch += 1;
        }
        Ok(g)
    }

    fn elect(
        &mut self,
        broker_name: &str,
        expected_master_epoch: u64,
        new_master: Option<u64>,
    ) -> Result<&GroupInfo, String> {
        let g = self.group(broker_name)?;
        if g.master_epoch != expected_master_epoch {
            return Err(format!(
                "master epoch is {}, not {expected_master_epoch}",
                g.master_epoch
            ));
        }
        if let Some(id) = new_master {
            if !g.replicas.contains_key(&id) {
                return Err(format!(
                    "broker {broker_name} id {id} never joined the group"
                ));
            }
            g.sync_state_set = BTreeSet::from([id]);
            g.sync_state_set_epoch += 1;
        }
        g.master_id = new_master;
        g.master_epoch += 1;
        Ok(g)
    }

    /// `master`: the reporting master's id and the master epoch it is at.
    fn alter_sync_state_set(
        &mut self,
        broker_name: &str,
        (master_id, master_epoch): (u64, u64),
        sync_state_set_epoch: u64,
        new_set: &BTreeSet<u64>,
    ) -> Result<&GroupInfo, String> {
        let g = self.group(broker_name)?;
        if g.master_id != Some(master_id) || g.master_epoch != master_epoch {
            return Err(format!(
                "broker {master_id} at epoch {master_epoch} is not the master (epoch {})",
                g.master_epoch
            ));
        }
        if g.sync_state_set_epoch != sync_state_set_epoch {
            return Err(format!(
                "in-sync set epoch is {}, not {sync_state_set_epoch}",
                g.sync_state_set_epoch
            ));
        }
        if !new_set.contains(&master_id) || new_set.iter().any(|b| !g.replicas.contains_key(b)) {
            return Err("an in-sync set holds the master and only known replicas".to_string());
        }
        if *new_set != g.sync_state_set {
            g.sync_state_set = new_set.clone();
            g.sync_state_set_epoch += 1;
        }
        Ok(g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(id: u64) -> Command {
        Command::RegisterBroker {
            cluster: "c".into(),
            broker_name: "b".into(),
            broker_id: id,
            addr: format!("127.0.0.1:{}", 1000 + id),
            ha_addr: None,
            replaces: AddrGuard::Unchecked,
        }
    }

    fn group(r: CommandResult) -> GroupInfo {
        match r {
            CommandResult::Group(g) => g,
            other => panic!("expected a group, got {other:?}"),
        }
    }

    #[test]
    fn first_broker_becomes_master_and_others_join() {
        let mut s = ControllerState::default();
        let g = group(s.apply(&reg(0)));
        assert_eq!((g.master_id, g.master_epoch), (Some(0), 1));
        let g = group(s.apply(&reg(1)));
        assert_eq!((g.master_id, g.master_epoch), (Some(0), 1));
        assert_eq!(g.sync_state_set, BTreeSet::from([0]));
        assert_eq!(g.master_addr(), Some("127.0.0.1:1000"));
    }

    /// Two brokers registering one id from two addresses, decided against
    /// the same state: only the first is applied.
    #[test]
    fn register_is_compare_and_set_on_the_ids_address() {
        let mut s = ControllerState::default();
        let at = |port: u16, replaces: AddrGuard| Command::RegisterBroker {
            cluster: "c".into(),
            broker_name: "b".into(),
            broker_id: 1,
            addr: format!("127.0.0.1:{port}"),
            ha_addr: None,
            replaces,
        };
        group(s.apply(&at(1, AddrGuard::Vacant)));
        assert!(matches!(
            s.apply(&at(2, AddrGuard::Vacant)),
            CommandResult::Rejected(_)
        ));
        // The same broker again, and a move decided against the address now.
        group(s.apply(&at(1, AddrGuard::Vacant)));
        let g = group(s.apply(&at(2, AddrGuard::At("127.0.0.1:1".into()))));
        assert_eq!(g.replicas[&1], "127.0.0.1:2");
        assert!(matches!(
            s.apply(&at(3, AddrGuard::At("127.0.0.1:1".into()))),
            CommandResult::Rejected(_)
        ));
    }

    #[test]
    fn elect_is_compare_and_set_on_the_epoch() {
        let mut s = ControllerState::default();
        s.apply(&reg(0));
        s.apply(&reg(1));
        let elect = |e, m| Command::ElectMaster {
            broker_name: "b".into(),
            expected_master_epoch: e,
            new_master: m,
        };
        let g = group(s.apply(&elect(1, Some(1))));
        assert_eq!((g.master_id, g.master_epoch), (Some(1), 2));
        assert_eq!(g.sync_state_set, BTreeSet::from([1]));
        assert!(matches!(
            s.apply(&elect(1, Some(0))),
            CommandResult::Rejected(_)
        ));
        assert!(matches!(
            s.apply(&elect(2, Some(7))),
            CommandResult::Rejected(_)
        ));
        // No candidate: the group is left without a master, the set kept.
        let g = group(s.apply(&elect(2, None)));
        assert_eq!((g.master_id, g.master_epoch), (None, 3));
        assert_eq!(g.sync_state_set, BTreeSet::from([1]));
        // Only an in-sync broker takes a masterless group by registering.
        let g = group(s.apply(&reg(0)));
        assert_eq!(g.master_id, None);
        let g = group(s.apply(&reg(1)));
        assert_eq!((g.master_id, g.master_epoch), (Some(1), 4));
    }

    #[test]
    fn alter_sync_state_set_checks_master_and_epochs() {
        let mut s = ControllerState::default();
        s.apply(&reg(0));
        s.apply(&reg(1));
        let alter = |m, me, se, set: &[u64]| Command::AlterSyncStateSet {
            broker_name: "b".into(),
            master_id: m,
            master_epoch: me,
            sync_state_set_epoch: se,
            new_set: set.iter().copied().collect(),
        };
        let g = group(s.apply(&alter(0, 1, 1, &[0, 1])));
        assert_eq!((g.sync_state_set.len(), g.sync_state_set_epoch), (2, 2));
        assert!(matches!(
            s.apply(&alter(0, 1, 1, &[0])),
            CommandResult::Rejected(_)
        ));
        assert!(matches!(
            s.apply(&alter(1, 1, 2, &[1])),
            CommandResult::Rejected(_)
        ));
        assert!(matches!(
            s.apply(&alter(0, 1, 2, &[1])),
            CommandResult::Rejected(_)
        ));
        assert!(matches!(
            s.apply(&alter(0, 1, 2, &[0, 9])),
            CommandResult::Rejected(_)
        ));
    }
}
