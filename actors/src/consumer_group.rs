//! The `ConsumerGroup` actor: one per consumer group, owner of the group's
//! live members (from heartbeats) and its order locks.
//!
//! * A heartbeat records the member with its connection; a new member (or
//!   changed subscriptions) makes the group push `NotifyConsumerIdsChanged`
//!   to every member so they rebalance at once instead of at their next
//!   periodic rebalance.
//! * Every `group_scan_interval_ms` members whose connection closed, or that
//!   have been silent for `client_expire_secs` (120 s), are dropped — with
//!   the same push to the others — and expired locks are freed.
//! * Locks are queue leases: orderly members and, since concurrent members
//!   must not pull a queue before its previous owner committed and released
//!   it, every clustering member holds them (see the client's
//!   `push_consumer::assign`). Releasing a lock pushes
//!   `NotifyConsumerIdsChanged` too, so a member waiting for the queue
//!   takes it at once.
//! * Members that subscribe differently lose messages (a queue is read with
//!   its owner's filter only): on every membership change the group checks
//!   the members' subscriptions and logs a WARN once per new inconsistency
//!   (and an INFO when it is gone); `GetConsumeProgress` reports it.
//! * Committed offsets are not here: [`ConsumerOffsets`](crate::consumer_offsets)
//!   owns and persists every group's offsets; this actor only tells members
//!   about a reset ([`NotifyReset`]).
//!
//! The plain rules live in [`members`]. Actors are started and found through
//! [`ConsumerGroups`](crate::group_registry::ConsumerGroups).
//!
//! Messages answered: [`GroupHeartbeat`], [`LeaveGroup`], [`GetMembers`],
//! [`LockQueues`], [`UnlockQueues`], [`NotifyReset`], [`CloseGroup`],
//! [`GetSubscriptionConflicts`], [`GetSubscription`].

pub mod members;
pub mod send_back;

use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::BytesMut;
use serde::Serialize;
use skylark_codec::cmd::group::SubscriptionConflict;
use skylark_codec::{
    encode_frame, Command, ConsumerGroupData, ConsumerIdsChanged, Header, QueueRef,
    ResetOffsetNotify,
};
use slog::{info, warn, Logger};

use crate::remoting::{ClientConn, Push};
use members::GroupState;

/// Timing of a group's bookkeeping.
#[derive(Debug, Clone, Copy)]
pub struct GroupTimings {
    /// A member silent this long is dropped.
    pub client_expire: Duration,
    /// How often members and locks are checked.
    pub scan_interval: Duration,
    /// Lease of an order lock.
    pub lock_lease: Duration,
}

/// Owner of one group's members and locks.
pub struct ConsumerGroup {
    group: String,
    state: GroupState<ClientConn>,
    timings: GroupTimings,
    max_frame_size: usize,
    /// The inconsistent subscriptions last logged.
    conflicts: Vec<SubscriptionConflict>,
    log: Logger,
}

impl ConsumerGroup {
    pub fn new(group: String, timings: GroupTimings, max_frame_size: usize, log: &Logger) -> Self {
        ConsumerGroup {
            log: log.new(slog::o!("actor" => "consumer_group", "group" => group.clone())),
            group,
            state: GroupState::default(),
            timings,
            max_frame_size,
            conflicts: Vec::new(),
        }
    }

    /// Sends one push frame to every member.
    fn push_all<T: Serialize>(&self, command: Command, body: &T) {
        let mut buf = BytesMut::new();
        if let Err(e) = encode_frame(
            &Header::push(0, command),
            body,
            &mut buf,
            self.max_frame_size,
        ) {
            warn!(self.log, "cannot encode push"; "error" => %e);
            return;
        }
        let frame = buf.freeze();
        for c in self.state.conns() {
            // A closed connection is dropped at the next scan.
            match c {
                ClientConn::Skylark(a) => {
                    let _ = a.try_send(Push(frame.clone()));
                }
                ClientConn::RocketMq(r) => {
                    if command == Command::NotifyConsumerIdsChanged {
                        r.push(skylark_codec::remoting::notify::consumer_ids_changed(
                            &self.group,
                        ));
                    }
                }
            }
        }
    }

    fn membership_changed(&mut self) {
        info!(self.log, "group membership changed"; "members" => self.state.client_ids().join(","));
        self.check_subscriptions();
        self.push_all(
            Command::NotifyConsumerIdsChanged,
            &ConsumerIdsChanged {
                group: self.group.clone(),
            },
        );
    }

    /// Logs once per change whether the members subscribe alike.
    fn check_subscriptions(&mut self) {
        let now = self.state.subscription_conflicts();
        if now == self.conflicts {
            return;
        }
        if now.is_empty() {
            info!(self.log, "group members subscribe alike again");
        } else {
            let detail: Vec<String> = now.iter().map(|c| c.to_string()).collect();
            warn!(self.log,
                "members of one group subscribe differently: messages only some members' filters match will be skipped; give every member the same subscriptions or use separate groups";
                "inconsistent" => detail.join(" | "));
        }
        self.conflicts = now;
    }

    fn scan(&mut self) {
        let gone = self
            .state
            .expire(Instant::now(), self.timings.client_expire, |c| {
                c.connected()
            });
        if !gone.is_empty() {
            info!(self.log, "members gone"; "clients" => gone.join(","));
            self.membership_changed();
        }
    }
}

impl Actor for ConsumerGroup {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
        ctx.run_interval(self.timings.scan_interval, |act, _| act.scan());
    }
}

/// A member's heartbeat for this group.
#[derive(Message)]
#[rtype(result = "()")]
pub struct GroupHeartbeat {
    pub client_id: String,
    pub conn: ClientConn,
    pub data: ConsumerGroupData,
}

/// A member leaves (clean shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct LeaveGroup {
    pub client_id: String,
}

/// The live members' client ids, sorted.
#[derive(Message)]
#[rtype(result = "Vec<String>")]
pub struct GetMembers;

/// Lock (or renew) queues for a member; answers those it now holds.
#[derive(Message)]
#[rtype(result = "Vec<QueueRef>")]
pub struct LockQueues {
    pub client_id: String,
    pub queues: Vec<QueueRef>,
}

/// Release a member's locks on these queues.
#[derive(Message)]
#[rtype(result = "()")]
pub struct UnlockQueues {
    pub client_id: String,
    pub queues: Vec<QueueRef>,
}

/// Tell every member that the group's offsets were reset.
#[derive(Message)]
#[rtype(result = "()")]
pub struct NotifyReset(pub ResetOffsetNotify);

/// Topics the live members subscribe to differently.
#[derive(Message)]
#[rtype(result = "Vec<SubscriptionConflict>")]
pub struct GetSubscriptionConflicts;

/// The group's subscription to a topic, from its members' heartbeats (for
/// pulls that do not carry one: RocketMQ push consumers by default).
#[derive(Message)]
#[rtype(result = "Option<skylark_codec::Subscription>")]
pub struct GetSubscription(pub String);

impl Handler<GetSubscription> for ConsumerGroup {
    type Result = Option<skylark_codec::Subscription>;
    fn handle(&mut self, m: GetSubscription, _: &mut Self::Context) -> Self::Result {
        self.state.subscription(&m.0)
    }
}

/// The group was deleted: stop.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CloseGroup;

impl Handler<GroupHeartbeat> for ConsumerGroup {
    type Result = ();
    fn handle(&mut self, m: GroupHeartbeat, _: &mut Self::Context) {
        if self
            .state
            .heartbeat(&m.client_id, m.conn, m.data, Instant::now())
        {
            self.membership_changed();
        }
    }
}

impl Handler<LeaveGroup> for ConsumerGroup {
    type Result = ();
    fn handle(&mut self, m: LeaveGroup, _: &mut Self::Context) {
        if self.state.unregister(&m.client_id) {
            self.membership_changed();
        }
    }
}

impl Handler<GetMembers> for ConsumerGroup {
    type Result = Vec<String>;
    fn handle(&mut self, _: GetMembers, _: &mut Self::Context) -> Vec<String> {
        self.state.client_ids()
    }
}

impl Handler<GetSubscriptionConflicts> for ConsumerGroup {
    type Result = Vec<SubscriptionConflict>;
    fn handle(
        &mut self,
        _: GetSubscriptionConflicts,
        _: &mut Self::Context,
    ) -> Vec<SubscriptionConflict> {
        self.state.subscription_conflicts()
    }
}

impl Handler<LockQueues> for ConsumerGroup {
    type Result = Vec<QueueRef>;
    fn handle(&mut self, m: LockQueues, _: &mut Self::Context) -> Vec<QueueRef> {
        self.state.lock(
            &m.client_id,
            &m.queues,
            Instant::now(),
            self.timings.lock_lease,
        )
    }
}

impl Handler<UnlockQueues> for ConsumerGroup {
    type Result = ();
    fn handle(&mut self, m: UnlockQueues, _: &mut Self::Context) {
        if self.state.unlock(&m.client_id, &m.queues) {
            // A member waiting for these queues takes them now rather than
            // at its next retry.
            self.push_all(
                Command::NotifyConsumerIdsChanged,
                &ConsumerIdsChanged {
                    group: self.group.clone(),
                },
            );
        }
    }
}

impl Handler<NotifyReset> for ConsumerGroup {
    type Result = ();
    fn handle(&mut self, m: NotifyReset, _: &mut Self::Context) {
        self.push_all(Command::NotifyResetOffset, &m.0);
    }
}

impl Handler<CloseGroup> for ConsumerGroup {
    type Result = ();
    fn handle(&mut self, _: CloseGroup, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
