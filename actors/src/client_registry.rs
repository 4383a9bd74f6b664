//! The `ClientRegistry` actor: what the broker knows of each client from
//! its heartbeats (RocketMQ's `ProducerManager` / `ConsumerManager` channel
//! tables), for `admin group connections` and `admin producer connections`:
//! client id, address, language, version and, for consumers, the model and
//! subscriptions.
//!
//! A client is listed while its connection is open and its last heartbeat
//! is younger than `client_expire_secs`; it is dropped when it unregisters.
//! Not on the send or pull path: heartbeats only.
//!
//! Messages answered: [`ClientHeartbeat`], [`ClientUnregister`],
//! [`GetProducerConnections`], [`GetConsumerConnections`],
//! [`StopClientRegistry`] (the broker's shutdown).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use actix::prelude::*;
use skylark_codec::{
    ClientConnection, ConsumerConnection, ConsumerGroupData, HeartbeatRequest,
    UnregisterClientRequest,
};

use crate::remoting::ClientConn;

/// One client as last heard.
struct Seen {
    conn: ClientConn,
    info: ClientConnection,
    at: Instant,
}

/// Clients by group.
pub struct ClientRegistry {
    expire: Duration,
    producers: HashMap<String, BTreeMap<String, Seen>>,
    consumers: HashMap<String, BTreeMap<String, (Seen, ConsumerGroupData)>>,
}

impl ClientRegistry {
    pub fn new(expire: Duration) -> ClientRegistry {
        ClientRegistry {
            expire,
            producers: HashMap::new(),
            consumers: HashMap::new(),
        }
    }

    fn alive(&self, s: &Seen, now: Instant) -> bool {
        s.conn.connected() && now.duration_since(s.at) < self.expire
    }
}

impl Actor for ClientRegistry {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A client's heartbeat, with where it came from.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ClientHeartbeat {
    pub peer: SocketAddr,
    pub conn: ClientConn,
    pub heartbeat: HeartbeatRequest,
}

/// A client leaving a group (or all of them).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ClientUnregister(pub UnregisterClientRequest);

/// The live clients of a producer group, sorted by client id.
#[derive(Message)]
#[rtype(result = "Vec<ClientConnection>")]
pub struct GetProducerConnections(pub String);

/// The live members of a consumer group, sorted by client id.
#[derive(Message)]
#[rtype(result = "Vec<ConsumerConnection>")]
pub struct GetConsumerConnections(pub String);

/// Stop (the broker's shutdown): answered as the actor stops, so the
/// shutdown does not return while it still runs.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopClientRegistry;

impl Handler<StopClientRegistry> for ClientRegistry {
    type Result = ();
    fn handle(&mut self, _: StopClientRegistry, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl Handler<ClientHeartbeat> for ClientRegistry {
    type Result = ();
    fn handle(&mut self, m: ClientHeartbeat, _: &mut Self::Context) {
        let hb = m.heartbeat;
        let seen = || Seen {
            conn: m.conn.clone(),
            info: ClientConnection {
                client_id: hb.client_id.clone(),
                addr: m.peer.to_string(),
                language: hb.language.clone(),
                version: hb.version.clone(),
                last_heartbeat_ms: now_ms(),
            },
            at: Instant::now(),
        };
        for g in &hb.producer_groups {
            self.producers
                .entry(g.clone())
                .or_default()
                .insert(hb.client_id.clone(), seen());
        }
        for g in &hb.consumer_groups {
            self.consumers
                .entry(g.group.clone())
                .or_default()
                .insert(hb.client_id.clone(), (seen(), g.clone()));
        }
    }
}

impl Handler<ClientUnregister> for ClientRegistry {
    type Result = ();
    fn handle(&mut self, m: ClientUnregister, _: &mut Self::Context) {
        let u = m.0;
        let all = u.producer_group.is_none() && u.consumer_group.is_none();
        for (g, clients) in self.producers.iter_mut() {
            if all || u.producer_group.as_deref() == Some(g.as_str()) {
                clients.remove(&u.client_id);
            }
        }
        for (g, clients) in self.consumers.iter_mut() {
            if all || u.consumer_group.as_deref() == Some(g.as_str()) {
                clients.remove(&u.client_id);
            }
        }
        self.producers.retain(|_, c| !c.is_empty());
        self.consumers.retain(|_, c| !c.is_empty());
    }
}

impl Handler<GetProducerConnections> for ClientRegistry {
    type Result = MessageResult<GetProducerConnections>;
    fn handle(&mut self, m: GetProducerConnections, _: &mut Self::Context) -> Self::Result {
        let now = Instant::now();
        let mut clients = self.producers.remove(&m.0).unwrap_or_default();
        clients.retain(|_, s| self.alive(s, now));
        let out = clients.values().map(|s| s.info.clone()).collect();
        if !clients.is_empty() {
            self.producers.insert(m.0, clients);
        }
        MessageResult(out)
    }
}

impl Handler<GetConsumerConnections> for ClientRegistry {
    type Result = MessageResult<GetConsumerConnections>;
    fn handle(&mut self, m: GetConsumerConnections, _: &mut Self::Context) -> Self::Result {
        let now = Instant::now();
        let mut clients = self.consumers.remove(&m.0).unwrap_or_default();
        clients.retain(|_, (s, _)| self.alive(s, now));
        let out = clients
            .values()
            .map(|(s, d)| ConsumerConnection {
                connection: s.info.clone(),
                consume_type: d.consume_type,
                message_model: d.message_model,
                subscriptions: d.subscriptions.clone(),
            })
            .collect();
        if !clients.is_empty() {
            self.consumers.insert(m.0, clients);
        }
        MessageResult(out)
    }
}
