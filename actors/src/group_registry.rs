//! The `ConsumerGroups` actor: starts one [`ConsumerGroup`] actor per group
//! on first use and publishes their addresses in a `DashMap` read cache
//! ([`GroupRegistry`]) that request handlers read and only this actor
//! writes (like the Broker's topic registry).
//! One group's own state lives in its actor,
//! [`consumer_group`](crate::consumer_group); this file is the registry of
//! those actors.
//!
//! Messages answered: [`EnsureGroup`], [`RemoveGroup`].

use std::sync::Arc;

use actix::prelude::*;
use dashmap::DashMap;
use slog::Logger;

use crate::consumer_group::{CloseGroup, ConsumerGroup, GroupTimings};

/// Group name → its ConsumerGroup actor. Written by [`ConsumerGroups`] only.
pub type GroupRegistry = Arc<DashMap<String, Addr<ConsumerGroup>>>;

/// Starts and stops group actors.
pub struct ConsumerGroups {
    registry: GroupRegistry,
    timings: GroupTimings,
    max_frame_size: usize,
    log: Logger,
}

impl ConsumerGroups {
    pub fn new(
        registry: GroupRegistry,
        timings: GroupTimings,
        max_frame_size: usize,
        log: Logger,
    ) -> Self {
        ConsumerGroups {
            registry,
            timings,
            max_frame_size,
            log,
        }
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
