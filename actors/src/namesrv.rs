//! The `NameServer` actor: discovery for brokers, producers and consumers.
//!
//! Owns the [`RouteInfo`] table. Brokers register every 30 s with every
//! NameServer; one silent for `broker_expire_secs` (120 s) is dropped by the
//! scan that runs every `scan_interval_secs` (10 s). NameServers never talk
//! to each other: each one's table is rebuilt from registrations alone.
//!
//! Messages answered: [`RegisterBroker`], [`UnregisterBroker`],
//! [`GetRouteInfo`], [`WaitRouteInfo`], [`GetClusterInfo`], [`GetTopicList`],
//! [`GetRemotingAddrs`], [`StopNameServer`] (+ the scan tick).
//!
//! A client that finds no route for a topic (no broker has registered it
//! yet) can ask with `wait_ms` ([`WaitRouteInfo`]): its answer is held
//! until a registration brings the topic, instead of the client polling.
//! With `dashboard_port` set it also serves the web [`dashboard`]; with
//! `remoting_port` set, RocketMQ's remoting protocol ([`rocketmq`]).

pub mod dashboard;
pub mod rocketmq;
mod route_info;

pub use route_info::RouteInfo;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use futures::future::LocalBoxFuture;
use skylark_codec::{
    Ack, ClusterInfo, Command, ErrorCode, GetClusterInfoRequest, GetRouteInfoRequest,
    GetTopicListRequest, HandshakeResponse, RawFrame, RegisterBrokerRequest,
    RegisterBrokerResponse, TopicList, TopicRouteData, UnregisterBrokerRequest, WireError,
};
use slog::{info, warn, Logger};

use crate::config::NameServerConfig;
use crate::remoting::{wire, ConnInfo, Service};

/// The NameServer's state owner.
pub struct NameServer {
    route: RouteInfo,
    /// Held route requests ([`WaitRouteInfo`]) by topic, answered when a
    /// registration brings the topic; at most [`MAX_WAITING`] in all.
    waiting: HashMap<String, Vec<tokio::sync::oneshot::Sender<TopicRouteData>>>,
    /// By (broker name, id): the address another one took the place of.
    /// When it registers again the two alternate (see `RegisterBroker`).
    displaced: HashMap<(String, u64), String>,
    config: NameServerConfig,
    log: Logger,
}

/// Route requests held at most at once; more are answered at once.
pub const MAX_WAITING: usize = 10_000;

impl NameServer {
    pub fn new(config: NameServerConfig, log: Logger) -> Self {
        NameServer {
            route: RouteInfo::default(),
            waiting: HashMap::new(),
            displaced: HashMap::new(),
            config,
            log: log.new(slog::o!("actor" => "namesrv")),
        }
    }
}

impl Actor for NameServer {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
        ctx.run_interval(self.config.scan_interval(), |act, _| {
            for addr in act
                .route
                .scan_expired(Instant::now(), act.config.broker_expire())
            {
                warn!(act.log, "broker expired"; "addr" => addr);
            }
            // Held requests whose client gave up (timed out, went away).
            act.waiting.retain(|_, held| {
                held.retain(|tx| !tx.is_closed());
                !held.is_empty()
            });
        });
    }
}

impl NameServer {
    /// Whether fewer than [`MAX_WAITING`] requests are held, not counting
    /// those whose client gave up (dropped first when the count is high).
    fn may_hold_another(&mut self) -> bool {
        let held = |w: &HashMap<String, Vec<_>>| w.values().map(Vec::len).sum::<usize>();
        if held(&self.waiting) < MAX_WAITING {
            return true;
        }
        self.waiting.retain(|_, held| {
            held.retain(|tx| !tx.is_closed());
            !held.is_empty()
        });
        held(&self.waiting) < MAX_WAITING
    }

    /// Answers the held requests of every topic a registration brought.
    fn answer_waiting(&mut self) {
        if self.waiting.is_empty() {
            return;
        }
        let route = &self.route;
        self.waiting.retain(|topic, held| match route.route(topic) {
            Some(data) => {
                for tx in held.drain(..) {
                    let _ = tx.send(data.clone());
                }
                false
            }
            None => true,
        });
    }
}

/// A broker (re-)registers itself and its topics.
#[derive(Message)]
#[rtype(result = "RegisterBrokerResponse")]
pub struct RegisterBroker(pub RegisterBrokerRequest);

/// A broker leaves cleanly.
#[derive(Message)]
#[rtype(result = "()")]
pub struct UnregisterBroker(pub UnregisterBrokerRequest);

/// The route of one topic, if any live broker serves it.
#[derive(Message)]
#[rtype(result = "Option<TopicRouteData>")]
pub struct GetRouteInfo(pub String);

/// The route of one topic, held up to `wait` (capped at
/// [`skylark_codec::MAX_ROUTE_WAIT_MS`]) while no live broker serves it;
/// `None` when none registered it by then.
#[derive(Message)]
#[rtype(result = "Option<TopicRouteData>")]
pub struct WaitRouteInfo {
    pub topic: String,
    pub wait: Duration,
}

/// Every cluster and broker group.
#[derive(Message)]
#[rtype(result = "ClusterInfo")]
pub struct GetClusterInfo;

/// Skylark address → RocketMQ remoting address of the live brokers that
/// serve one ([`rocketmq`] routes name those).
#[derive(Message)]
#[rtype(result = "std::collections::HashMap<String, String>")]
pub struct GetRemotingAddrs;

impl Handler<GetRemotingAddrs> for NameServer {
    type Result = MessageResult<GetRemotingAddrs>;
    fn handle(&mut self, _: GetRemotingAddrs, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.route.remoting_addrs())
    }
}

/// Stops the actor (its scan tick would keep it alive for ever):
/// [`crate::launch::NameServerHandle::shutdown`] sends it last.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopNameServer;

impl Handler<StopNameServer> for NameServer {
    type Result = ();
    fn handle(&mut self, _: StopNameServer, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

/// Every topic with a live master.
#[derive(Message)]
#[rtype(result = "TopicList")]
pub struct GetTopicList;

impl Handler<RegisterBroker> for NameServer {
    type Result = MessageResult<RegisterBroker>;
    fn handle(&mut self, msg: RegisterBroker, _: &mut Self::Context) -> Self::Result {
        let known = self.route.live_brokers();
        let (name, id, addr) = (
            msg.0.broker_name.clone(),
            msg.0.broker_id,
            msg.0.broker_addr.clone(),
        );
        let before = self.route.group_members(&name).cloned();
        let resp = self.route.register(msg.0, Instant::now());
        self.answer_waiting();
        let after = self.route.group_members(&name);
        if self.route.live_brokers() > known {
            info!(self.log, "broker registered"; "broker_name" => &name, "broker_id" => id, "addr" => &addr);
        }
        let displaced = before
            .as_ref()
            .and_then(|b| b.get(&id))
            .filter(|prev| **prev != addr && after.and_then(|a| a.get(&id)) == Some(&addr));
        if let Some(prev) = displaced {
            // A broker that moved (or a failover's new master) does this
            // once; two live brokers with one name and id (a default
            // config, a wrong `-c`) take each other's place at every
            // registration, each hiding the other from every route.
            let key = (name.clone(), id);
            if self.displaced.get(&key) == Some(&addr) {
                warn!(self.log, "two brokers register with one broker_name and broker_id and take each other's place in the routes: give each its own (check their configs); in controller mode a master that was paused or cut off does this once, until it learns of the new epoch";
                    "broker_name" => &name, "broker_id" => id, "addrs" => format!("{prev}, {addr}"));
            } else {
                info!(self.log, "broker id taken over by another address";
                    "broker_name" => &name, "broker_id" => id, "old_addr" => prev, "new_addr" => &addr);
            }
            self.displaced.insert(key, prev.clone());
        } else if before.is_some() && before.as_ref() != after {
            // A group's id → address map changed under a live group: rare
            // (a role or address change) and worth a trace.
            info!(self.log, "broker group members changed"; "broker_name" => &name,
                "by_id" => id, "by_addr" => &addr,
                "before" => ?before, "after" => ?after);
        }
        MessageResult(resp)
    }
}

impl Handler<UnregisterBroker> for NameServer {
    type Result = ();
    fn handle(&mut self, msg: UnregisterBroker, _: &mut Self::Context) {
        info!(self.log, "broker unregistered"; "broker_name" => &msg.0.broker_name, "addr" => &msg.0.broker_addr);
        self.route.unregister(&msg.0);
    }
}

impl Handler<GetRouteInfo> for NameServer {
    type Result = Option<TopicRouteData>;
    fn handle(&mut self, msg: GetRouteInfo, _: &mut Self::Context) -> Self::Result {
        self.route.route(&msg.0)
    }
}

impl Handler<WaitRouteInfo> for NameServer {
    type Result = ResponseFuture<Option<TopicRouteData>>;
    fn handle(&mut self, msg: WaitRouteInfo, _: &mut Self::Context) -> Self::Result {
        let route = self.route.route(&msg.topic);
        if route.is_some() || msg.wait.is_zero() || !self.may_hold_another() {
            return Box::pin(std::future::ready(route));
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.waiting.entry(msg.topic).or_default().push(tx);
        let wait = msg.wait.min(Duration::from_millis(u64::from(
            skylark_codec::MAX_ROUTE_WAIT_MS,
        )));
        Box::pin(async move {
            match tokio::time::timeout(wait, rx).await {
                Ok(Ok(data)) => Some(data),
                _ => None,
            }
        })
    }
}

impl Handler<GetClusterInfo> for NameServer {
    type Result = MessageResult<GetClusterInfo>;
    fn handle(&mut self, _: GetClusterInfo, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.route.cluster_info())
    }
}

impl Handler<GetTopicList> for NameServer {
    type Result = MessageResult<GetTopicList>;
    fn handle(&mut self, _: GetTopicList, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.route.topic_list())
    }
}

/// Turns NameServer requests on the wire into actor messages.
#[derive(Clone)]
pub struct NameServerService {
    ns: Addr<NameServer>,
    /// Access control (None: ACL off); broker registration needs the
    /// cluster's broker credential.
    acl: Option<crate::acl::Acl>,
    /// Request latency (`rocketmq_rpc_latency`) when metrics are served.
    metrics: Option<std::sync::Arc<crate::metrics::namesrv::NameServerMetrics>>,
}

impl NameServerService {
    pub fn new(ns: Addr<NameServer>) -> Self {
        NameServerService {
            ns,
            acl: None,
            metrics: None,
        }
    }

    /// The same service timing each request into `metrics`.
    pub fn with_metrics(
        mut self,
        metrics: Option<std::sync::Arc<crate::metrics::namesrv::NameServerMetrics>>,
    ) -> Self {
        self.metrics = metrics;
        self
    }

    /// The same service checking every request against `acl`.
    pub fn with_acl(mut self, acl: Option<crate::acl::Acl>) -> Self {
        self.acl = acl;
        self
    }
}

fn mailbox(e: MailboxError) -> WireError {
    WireError::new(
        ErrorCode::ServiceNotAvailable,
        format!("nameserver unavailable: {e}"),
    )
}

impl Service for NameServerService {
    fn call(
        &self,
        cmd: Command,
        frame: RawFrame,
        _conn: &ConnInfo,
    ) -> LocalBoxFuture<'static, Option<Bytes>> {
        let ns = self.ns.clone();
        let header = frame.header;
        Box::pin(async move {
            match cmd {
                Command::RegisterBroker => {
                    wire::dispatch(frame, |r: RegisterBrokerRequest| async move {
                        ns.send(RegisterBroker(r)).await.map_err(mailbox)
                    })
                    .await
                }
                Command::UnregisterBroker => {
                    wire::dispatch(frame, |r: UnregisterBrokerRequest| async move {
                        ns.send(UnregisterBroker(r)).await.map_err(mailbox)?;
                        Ok(Ack {})
                    })
                    .await
                }
                Command::GetRouteInfo => {
                    wire::dispatch(frame, |r: GetRouteInfoRequest| async move {
                        let topic = r.topic;
                        let wait = Duration::from_millis(u64::from(r.wait_ms));
                        let asked = WaitRouteInfo {
                            topic: topic.clone(),
                            wait,
                        };
                        ns.send(asked).await.map_err(mailbox)?.ok_or_else(|| {
                            WireError::new(
                                ErrorCode::TopicNotFound,
                                format!("no route for topic '{topic}'"),
                            )
                        })
                    })
                    .await
                }
                Command::GetClusterInfo => {
                    wire::dispatch(frame, |_: GetClusterInfoRequest| async move {
                        ns.send(GetClusterInfo).await.map_err(mailbox)
                    })
                    .await
                }
                Command::GetTopicList => {
                    wire::dispatch(frame, |_: GetTopicListRequest| async move {
                        ns.send(GetTopicList).await.map_err(mailbox)
                    })
                    .await
                }
                other => wire::not_served(&header, other, "nameserver"),
            }
        })
    }

    fn acl(&self) -> Option<crate::acl::Acl> {
        self.acl.clone()
    }

    fn times_requests(&self) -> bool {
        self.metrics.is_some()
    }

    fn observe(&self, cmd: Command, elapsed: std::time::Duration) {
        if let Some(m) = &self.metrics {
            m.observe(cmd, elapsed);
        }
    }
}

/// The answer every server gives to a handshake.
pub(crate) fn handshake_response() -> HandshakeResponse {
    HandshakeResponse {
        protocol_version: skylark_codec::PROTOCOL_VERSION,
        server_version: env!("CARGO_PKG_VERSION").into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skylark_codec::TopicConfig;

    fn reg(topics: &[&str]) -> RegisterBroker {
        RegisterBroker(RegisterBrokerRequest {
            cluster_name: "c".into(),
            broker_name: "b".into(),
            broker_id: 0,
            broker_addr: "127.0.0.1:1".into(),
            topics: topics.iter().map(|t| TopicConfig::new(*t, 4)).collect(),
            data_version: 1,
            ..Default::default()
        })
    }

    fn start() -> Addr<NameServer> {
        let log = Logger::root(slog::Discard, slog::o!());
        NameServer::new(NameServerConfig::default(), log).start()
    }

    fn wait(topic: &str, ms: u64) -> WaitRouteInfo {
        WaitRouteInfo {
            topic: topic.into(),
            wait: Duration::from_millis(ms),
        }
    }

    #[actix_rt::test]
    async fn a_held_route_request_is_answered_by_the_registration_that_brings_the_topic() {
        let ns = start();
        let held = ns.send(wait("T", 20_000));
        let other = ns.send(wait("U", 20_000));
        let (route, _) = futures::join!(held, async {
            // Registrations of other topics leave it held; the one that
            // brings T answers it, long before the 20 s.
            ns.send(reg(&["V"])).await.unwrap();
            ns.send(reg(&["V", "T"])).await.unwrap();
        });
        let route = route.unwrap().expect("answered with the route");
        assert_eq!(route.queues[0].broker_name, "b");
        // U is still held; a registration of U answers it too.
        let (u, _) = futures::join!(other, ns.send(reg(&["T", "U"])));
        assert!(u.unwrap().is_some());
        assert!(ns.send(GetRouteInfo("T".into())).await.unwrap().is_some());
    }

    #[actix_rt::test]
    async fn a_held_route_request_ends_without_a_route_after_its_wait() {
        let ns = start();
        let begun = Instant::now();
        assert!(ns.send(wait("T", 50)).await.unwrap().is_none());
        assert!(begun.elapsed() >= Duration::from_millis(50));
        // wait 0: at once.
        assert!(ns.send(wait("T", 0)).await.unwrap().is_none());
    }
}
