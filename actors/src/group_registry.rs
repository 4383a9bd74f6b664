//! The `ConsumerGroups` actor: starts one [`ConsumerGroup`] actor per group
//! on first use and publishes their addresses in a read cache
//! ([`crate::read_cache`]) that only this actor writes; request handlers
//! get a read-only [`GroupsView`] (like the Broker's topic registry).
//! One group's own state lives in its actor,
//! [`consumer_group`](crate::consumer_group); this file is the registry of
//! those actors.
//!
//! The broker's shutdown stops every group's actor and then this one
//! ([`StopGroups`]): a group's scan timer would otherwise keep it running
//! on the caller's arbiter after an embedded broker stopped.
//!
//! Messages answered: [`EnsureGroup`], [`RemoveGroup`], [`StopGroups`].

use actix::prelude::*;
use slog::Logger;

use crate::consumer_group::{CloseGroup, ConsumerGroup, GroupTimings};
use crate::read_cache::{CacheView, ReadCache};

/// Group name → its ConsumerGroup actor, read-only
/// ([`ConsumerGroups::groups_view`]); [`ConsumerGroups`] alone writes it.
pub type GroupsView = CacheView<Addr<ConsumerGroup>>;

/// Starts and stops group actors.
pub struct ConsumerGroups {
    registry: ReadCache<Addr<ConsumerGroup>>,
    timings: GroupTimings,
    max_frame_size: usize,
    log: Logger,
}

impl ConsumerGroups {
    pub fn new(timings: GroupTimings, max_frame_size: usize, log: Logger) -> Self {
        ConsumerGroups {
            registry: ReadCache::new(),
            timings,
            max_frame_size,
            log,
        }
    }

    /// The group registry, read-only: the ConsumerGroup actor of each group.
    pub fn groups_view(&self) -> GroupsView {
        self.registry.view()
    }
}

impl Actor for ConsumerGroups {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
    }
}

/// The actor of a group, started if needed.
#[derive(Message)]
#[rtype(result = "Addr<ConsumerGroup>")]
pub struct EnsureGroup(pub String);

/// Stop a group's actor (the group was deleted).
#[derive(Message)]
#[rtype(result = "()")]
pub struct RemoveGroup(pub String);

/// Stop every group's actor, then this one (the broker's shutdown);
/// answered once every group's actor has stopped.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopGroups;

impl Handler<EnsureGroup> for ConsumerGroups {
    type Result = MessageResult<EnsureGroup>;
    fn handle(&mut self, m: EnsureGroup, _: &mut Self::Context) -> Self::Result {
        if let Some(a) = self.registry.get(&m.0) {
            return MessageResult(a.clone());
        }
        let addr =
            ConsumerGroup::new(m.0.clone(), self.timings, self.max_frame_size, &self.log).start();
        self.registry.insert(m.0, addr.clone());
        MessageResult(addr)
    }
}

impl Handler<RemoveGroup> for ConsumerGroups {
    type Result = ();
    fn handle(&mut self, m: RemoveGroup, _: &mut Self::Context) {
        if let Some((_, a)) = self.registry.remove(&m.0) {
            a.do_send(CloseGroup);
        }
    }
}

impl Handler<StopGroups> for ConsumerGroups {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, _: StopGroups, ctx: &mut Self::Context) -> Self::Result {
        let names: Vec<String> = self.registry.iter().map(|e| e.key().clone()).collect();
        let groups: Vec<Addr<ConsumerGroup>> = names
            .iter()
            .filter_map(|n| self.registry.remove(n).map(|(_, a)| a))
            .collect();
        ctx.stop();
        // A group's actor answers `CloseGroup` as it stops; the answer
        // comes once it is stopped (or it was already gone).
        Box::pin(async move {
            for a in groups {
                let _ = a.send(CloseGroup).await;
            }
        })
    }
}
