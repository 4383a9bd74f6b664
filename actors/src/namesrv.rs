//! The `NameServer` actor: discovery for brokers, producers and consumers.
//!
//! Owns the [`RouteInfo`] table. Brokers register every 30 s with every
//! NameServer; one silent for `broker_expire_secs` (120 s) is dropped by the
//! scan that runs every `scan_interval_secs` (10 s). NameServers never talk
//! to each other: each one's table is rebuilt from registrations alone.
//!
//! Messages answered: [`RegisterBroker`], [`UnregisterBroker`],
//! [`GetRouteInfo`], [`GetClusterInfo`], [`GetTopicList`], [`GetRemotingAddrs`]
//! (+ the scan tick).
//! With `dashboard_port` set it also serves the web [`dashboard`]; with
//! `remoting_port` set, RocketMQ's remoting protocol ([`rocketmq`]).

pub mod dashboard;
pub mod rocketmq;
mod route_info;

pub use route_info::RouteInfo;

use std::time::Instant;

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
    config: NameServerConfig,
    log: Logger,
}

impl NameServer {
    pub fn new(config: NameServerConfig, log: Logger) -> Self {
        NameServer {
            route: RouteInfo::default(),
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
        let after = self.route.group_members(&name);
        if self.route.live_brokers() > known {
            info!(self.log, "broker registered"; "broker_name" => &name, "broker_id" => id, "addr" => &addr);
        }
        if before.is_some() && before.as_ref() != after {
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
                        ns.send(GetRouteInfo(topic.clone()))
                            .await
                            .map_err(mailbox)?
                            .ok_or_else(|| {
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
