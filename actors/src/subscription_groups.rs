//! The `SubscriptionGroups` actor: each consumer group's settings (RocketMQ
//! `SubscriptionGroupManager`, `updateSubGroup`), kept in
//! `<data_dir>/config/subscriptionGroup.json` and replaced atomically on
//! every change.
//!
//! Request handlers read the settings from a read cache that only this
//! actor writes ([`crate::read_cache`]; they hold a read-only
//! [`SubscriptionGroupsView`], docs/architecture.md); the actor runs on a thread of its own
//! (the offsets' arbiter), so its file writes never block a connection.
//! What the settings do:
//! * `consume_enable = false`: the group's pulls are refused
//!   (`PermissionDenied`);
//! * `consume_broadcast_enable = false`: pulls of a group whose members
//!   consume in broadcasting mode are refused, and so are such heartbeats;
//! * `retry_max_times`: deliveries before a failed message goes to the
//!   group's dead-letter topic, winning over the consumer's own value.
//!
//! Messages answered: [`UpdateSubscriptionGroup`], [`RemoveSubscriptionGroup`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use actix::prelude::*;
use skylark_codec::SubscriptionGroupConfig;
use slog::{error, info, Logger};

use crate::read_cache::{CacheView, ReadCache};

/// Group name → its stored settings, read-only; [`SubscriptionGroups`]
/// alone writes them.
pub type SubscriptionGroupsView = CacheView<SubscriptionGroupConfig>;

/// What request handlers hold: the owner and a view of its read cache.
#[derive(Clone)]
pub struct SubscriptionGroupsHandle {
    pub addr: Addr<SubscriptionGroups>,
    pub table: SubscriptionGroupsView,
}

impl SubscriptionGroupsHandle {
    /// The group's stored settings, if any.
    pub fn get(&self, group: &str) -> Option<SubscriptionGroupConfig> {
        self.table.get(group).map(|c| c.clone())
    }
}

/// Owner of the subscription-group settings.
pub struct SubscriptionGroups {
    path: PathBuf,
    table: ReadCache<SubscriptionGroupConfig>,
    log: Logger,
}

impl SubscriptionGroups {
    /// Loads the stored settings; fails if the file is unreadable.
    pub fn open(data_dir: &std::path::Path, log: &Logger) -> std::io::Result<SubscriptionGroups> {
        let path = data_dir.join("config").join("subscriptionGroup.json");
        let stored: BTreeMap<String, SubscriptionGroupConfig> =
            crate::persist::read_json(&path)?.unwrap_or_default();
        Ok(SubscriptionGroups {
            path,
            table: stored.into_iter().collect(),
            log: log.new(slog::o!("actor" => "subscription_groups")),
        })
    }

    /// Starts the actor on `arbiter`; answers its handle.
    pub fn start_on(self, arbiter: &ArbiterHandle) -> SubscriptionGroupsHandle {
        let table = self.table.view();
        let addr = SubscriptionGroups::start_in_arbiter(arbiter, move |_| self);
        SubscriptionGroupsHandle { addr, table }
    }

    /// Writes the table with `change` applied, then publishes it.
    fn save(&mut self, group: &str, change: Option<SubscriptionGroupConfig>) -> Result<(), String> {
        let mut all: BTreeMap<String, SubscriptionGroupConfig> = self
            .table
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect();
        match &change {
            Some(c) => all.insert(group.to_string(), c.clone()),
            None => all.remove(group),
        };
        if let Err(e) = crate::persist::write_json(&self.path, &all) {
            error!(self.log, "cannot persist subscription groups"; "error" => %e);
            return Err(format!("cannot persist subscription group settings: {e}"));
        }
        match change {
            Some(c) => {
                info!(self.log, "subscription group saved"; "group" => group,
                    "consume_enable" => c.consume_enable,
                    "consume_broadcast_enable" => c.consume_broadcast_enable,
                    "retry_max_times" => ?c.retry_max_times);
                self.table.insert(group.to_string(), c);
            }
            None => {
                self.table.remove(group);
            }
        }
        Ok(())
    }
}

impl Actor for SubscriptionGroups {
    type Context = Context<Self>;
}

/// Store a group's settings (persisted before the answer).
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct UpdateSubscriptionGroup(pub SubscriptionGroupConfig);

/// Forget a group's settings (the group was deleted); answers whether it
/// had any.
#[derive(Message)]
#[rtype(result = "Result<bool, String>")]
pub struct RemoveSubscriptionGroup(pub String);

impl Handler<UpdateSubscriptionGroup> for SubscriptionGroups {
    type Result = Result<(), String>;
    fn handle(&mut self, m: UpdateSubscriptionGroup, _: &mut Self::Context) -> Self::Result {
        let group = m.0.group.clone();
        self.save(&group, Some(m.0))
    }
}

impl Handler<RemoveSubscriptionGroup> for SubscriptionGroups {
    type Result = Result<bool, String>;
    fn handle(&mut self, m: RemoveSubscriptionGroup, _: &mut Self::Context) -> Self::Result {
        if !self.table.contains_key(&m.0) {
            return Ok(false);
        }
        self.save(&m.0, None).map(|()| true)
    }
}
