//! [`ClientInstance`]: the actor that owns a client's shared state.
//!
//! One per client (RocketMQ's `MQClientInstance`): topic routes learnt from
//! the NameServers (refreshed every `route_refresh` and after failures), one
//! connection per broker address (re-established when it closed), the
//! producer's round-robin counters and latency fault tolerance, the queues a
//! broker told the consumer to read from a slave. Handles ask
//! it for routing decisions and report outcomes; they run the RPCs
//! themselves.

use skylark_codec::AUTO_CREATE_TOPIC_KEY;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::fut::{ready, wrap_future, ActorFutureExt, LocalBoxActorFuture};
use actix::prelude::*;
use skylark_codec::rpc::RpcClient;

use super::config::{ClientConfig, RouteWaitNotice};
use super::error::{ClientError, Result};
use super::fault::{LatencyFaultTolerance, Outcome};
use super::namesrv::{connect, NameServerClient};
use super::route::{select_by_key, select_round_robin, MessageQueue, TopicRoute};

struct CachedRoute {
    route: Arc<TopicRoute>,
    stale: bool,
}

/// How long a send waits for a topic's route (its own, or `TBW102`'s)
/// when the NameServer knows neither — right after a restart, before the
/// broker has registered: RocketMQ's producer waits likewise.
pub const DEFAULT_ROUTE_WAIT: Duration = Duration::from_secs(3);

/// The route wait: `SKYLARK_ROUTE_WAIT_MS` if set (0: fail at once), else
/// [`DEFAULT_ROUTE_WAIT`].
pub fn route_wait() -> Duration {
    std::env::var("SKYLARK_ROUTE_WAIT_MS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_millis)
        .unwrap_or(DEFAULT_ROUTE_WAIT)
}

/// Asks the NameServer for `topic`'s route, or else `TBW102`'s (brokers
/// that create topics on first send), for up to `wait`; tells `notice`
/// once that it is waiting. The NameServer holds both requests until a broker
/// registers either topic (`wait_ms`), so the route comes the moment it
/// exists; against a NameServer that answers at once (an older one) the
/// requests are repeated every 200 ms. `TopicNotFound` when `wait` passes.
async fn wait_for_route(
    ns: NameServerClient,
    topic: String,
    wait: Duration,
    notice: Option<RouteWaitNotice>,
) -> Result<Arc<TopicRoute>> {
    const PACE: Duration = Duration::from_millis(200);
    let deadline = Instant::now() + wait;
    let mut said = false;
    loop {
        if let Ok(data) = ns.route(AUTO_CREATE_TOPIC_KEY).await {
            return Ok(Arc::new(TopicRoute::auto_create(&topic, data)));
        }
        let asked = Instant::now();
        if asked >= deadline {
            return Err(ClientError::TopicNotFound(topic));
        }
        if !said {
            said = true;
            if let Some(notice) = &notice {
                notice.tell(&topic, wait);
            }
        }
        let left = deadline - asked;
        if let Some(route) = first_route(&ns, &topic, left).await {
            return Ok(Arc::new(route));
        }
        let now = Instant::now();
        if now - asked < PACE && now < deadline {
            tokio::time::sleep((PACE - (now - asked)).min(deadline - now)).await;
        }
    }
}

/// The first route the NameServer gives within `wait`, of `topic` or of
/// `TBW102`, asked for both at once; `None` when neither came.
async fn first_route(ns: &NameServerClient, topic: &str, wait: Duration) -> Option<TopicRoute> {
    let own = ns.route_within(topic, wait);
    let auto = ns.route_within(AUTO_CREATE_TOPIC_KEY, wait);
    tokio::pin!(own, auto);
    let (mut own_done, mut auto_done) = (false, false);
    while !(own_done && auto_done) {
        let answer = tokio::select! {
            r = &mut own, if !own_done => { own_done = true; r.map(|d| TopicRoute::new(topic, d)) }
            r = &mut auto, if !auto_done => { auto_done = true; r.map(|d| TopicRoute::auto_create(topic, d)) }
        };
        if let Ok(route) = answer {
            return Some(route);
        }
    }
    None
}

/// How often the actor checks whether any handle still refers to it.
const UNREFERENCED_CHECK: Duration = Duration::from_millis(500);

/// The actor; start it with [`ClientInstance::start_with`] (or through
/// [`Producer::start`](super::Producer::start) /
/// [`PullConsumer::start`](super::PullConsumer::start)).
pub struct ClientInstance {
    config: Arc<ClientConfig>,
    namesrv: NameServerClient,
    routes: HashMap<String, CachedRoute>,
    brokers: HashMap<String, RpcClient>,
    fault: LatencyFaultTolerance,
    counters: HashMap<String, usize>,
    /// Queues a broker told us to read from a slave (we are far behind);
    /// cleared when a pull answer no longer suggests it.
    slave_reads: HashSet<MessageQueue>,
}

impl Actor for ClientInstance {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
        // Stopped before it ever ran: its System is being torn down, and
        // actix polls the actor once while dropping it, outside any
        // runtime, where creating a timer panics ("there is no reactor
        // running"). It has nothing to do but stop.
        if ctx.state().stopping() {
            return;
        }
        // The intervals keep an actor running after its last handle is gone,
        // and with it every broker and NameServer connection it holds: a
        // process making a producer per request kept two sockets of each.
        // Once no handle is left, it stops (its RpcClients close with it).
        ctx.run_interval(UNREFERENCED_CHECK, |_, ctx| {
            if !ctx.connected() {
                ctx.stop();
            }
        });
        ctx.run_interval(self.config.route_refresh, |act, ctx| {
            for c in act.routes.values_mut() {
                c.stale = true;
            }
            let topics: Vec<String> = act.routes.keys().cloned().collect();
            for t in topics {
                ctx.spawn(act.fetch_route(t).map(|_, _, _| ()));
            }
        });
    }
}

impl ClientInstance {
    /// Starts the actor on the current arbiter.
    pub fn start_with(
        config: ClientConfig,
    ) -> Result<(Addr<Self>, NameServerClient, Arc<ClientConfig>)> {
        // A duration its timers or deadlines cannot take is refused here,
        // not a panic later in a timer.
        config.validate()?;
        if actix::System::try_current().is_none() || tokio::runtime::Handle::try_current().is_err()
        {
            // Starting the actor would panic (no LocalSet, no reactor).
            return Err(ClientError::InvalidArgument(
                "a Skylark client must start inside a running actix System (actix::System::new().block_on(..), #[actix::main] or #[actix_rt::main])".into(),
            ));
        }
        let namesrv =
            NameServerClient::new(&config.namesrv, config.request_timeout, &config.client_id)?
                .with_credentials(config.credentials.clone())
                .with_tls(config.tls.clone());
        let config = Arc::new(config);
        let actor = ClientInstance {
            fault: LatencyFaultTolerance::new(config.isolation),
            config: config.clone(),
            namesrv: namesrv.clone(),
            routes: HashMap::new(),
            brokers: HashMap::new(),
            counters: HashMap::new(),
            slave_reads: HashSet::new(),
        };
        Ok((actor.start(), namesrv, config))
    }

    /// Fetches `topic`'s route and caches it; on failure a cached route is
    /// kept (and returned) unless the NameServers say the topic is gone.
    /// The answer is already the best of the NameServers' (one that just
    /// restarted and forgot the topic, or its master, is not the last word:
    /// see [`NameServerClient::route`]), so a cached route with its master
    /// is replaced by one without it, or dropped, only when every
    /// NameServer that answered says so.
    fn fetch_route(&self, topic: String) -> LocalBoxActorFuture<Self, Result<Arc<TopicRoute>>> {
        let ns = self.namesrv.clone();
        let t = topic.clone();
        wrap_future::<_, Self>(async move { ns.route(&t).await })
            .map(move |res, act, _| match res {
                Ok(data) => {
                    let route = Arc::new(TopicRoute::new(&topic, data));
                    act.routes.insert(
                        topic,
                        CachedRoute {
                            route: route.clone(),
                            stale: false,
                        },
                    );
                    Ok(route)
                }
                Err(ClientError::TopicNotFound(t)) => {
                    act.routes.remove(&t);
                    Err(ClientError::TopicNotFound(t))
                }
                Err(e) => match act.routes.get(&topic) {
                    Some(c) => Ok(c.route.clone()),
                    None => Err(e),
                },
            })
            .boxed_local()
    }

    /// The cached route (refreshing it in the background if stale), or a
    /// fetch.
    fn route(
        &self,
        topic: String,
        refresh: bool,
        ctx: &mut Context<Self>,
    ) -> LocalBoxActorFuture<Self, Result<Arc<TopicRoute>>> {
        match self.routes.get(&topic) {
            Some(c) if !refresh => {
                if c.stale {
                    ctx.spawn(self.fetch_route(topic).map(|_, _, _| ()));
                }
                ready(Ok(c.route.clone())).boxed_local()
            }
            _ => self.fetch_route(topic),
        }
    }

    /// The route to send to: the topic's own, or — for a topic no broker
    /// has yet — the route of RocketMQ's pseudo topic `TBW102`, which lists
    /// the brokers that create topics on first send. Not cached: once a
    /// broker has created the topic, its real route is used.
    fn route_for_send(
        &self,
        topic: String,
        ctx: &mut Context<Self>,
    ) -> LocalBoxActorFuture<Self, Result<Arc<TopicRoute>>> {
        self.route(topic, false, ctx)
            .then(move |res, act, _ctx| match res {
                // Only a send that must wait pays for these clones.
                Err(ClientError::TopicNotFound(t)) => {
                    let ns = act.namesrv.clone();
                    let notice = act.config.route_wait_notice.clone();
                    wrap_future::<_, Self>(wait_for_route(ns, t, route_wait(), notice))
                        .boxed_local()
                }
                other => ready(other).boxed_local(),
            })
            .boxed_local()
    }

    /// A live connection to `addr`, connecting (and handshaking) if needed.
    /// A failed connect isolates `broker_name`.
    fn connection(
        &self,
        addr: String,
        broker_name: Option<String>,
    ) -> LocalBoxActorFuture<Self, Result<RpcClient>> {
        if let Some(c) = self.brokers.get(&addr).filter(|c| c.is_connected()) {
            return ready(Ok(c.clone())).boxed_local();
        }
        let cfg = self.config.clone();
        let a = addr.clone();
        let started = Instant::now();
        wrap_future::<_, Self>(async move {
            connect(
                &a,
                cfg.connect_timeout,
                cfg.request_timeout,
                cfg.max_frame_size,
                (&cfg.client_id, cfg.credentials.clone(), cfg.tls.as_ref()),
            )
            .await
        })
        .map(move |res, act, _| match res {
            Ok(c) => {
                if let Some(existing) = act.brokers.get(&addr).filter(|e| e.is_connected()) {
                    c.close();
                    return Ok(existing.clone());
                }
                act.brokers.insert(addr, c.clone());
                Ok(c)
            }
            Err(e) => {
                if let Some(b) = broker_name {
                    let took = started.elapsed();
                    act.fault.update(&b, started, took, Outcome::Unreachable);
                }
                Err(e)
            }
        })
        .boxed_local()
    }

    fn select(&mut self, route: &TopicRoute, msg: &SelectQueue) -> Result<MessageQueue> {
        let queues = &route.write_queues;
        let picked = match &msg.order_key {
            Some(key) => select_by_key(queues, key),
            None => {
                // No key allocation per send: insert only the first time.
                if !self.counters.contains_key(&route.topic) {
                    self.counters
                        .insert(route.topic.clone(), usize::from(rand::random::<u16>()));
                }
                let counter = self.counters.get_mut(&route.topic).expect("inserted above");
                let fault = self.config.send_latency_fault_enable.then_some(&self.fault);
                select_round_robin(
                    queues,
                    counter,
                    msg.last_failed.as_deref(),
                    fault,
                    Instant::now(),
                )
            }
        };
        picked.cloned().ok_or_else(|| route.no_queue(true))
    }
}

/// A queue to write to and a connection to its broker.
#[derive(Debug, Clone)]
pub struct Selected {
    /// The queue.
    pub queue: MessageQueue,
    /// A connection to `queue.broker_addr`.
    pub client: RpcClient,
    /// Whether an answer that was not slow must still be reported with
    /// [`ReportOutcome`]: fault avoidance is on and some broker is being
    /// avoided (a fast answer may lift that). Otherwise such a report would
    /// change nothing, and skipping it saves an actor message per send.
    pub report_answers: bool,
}

/// Pick a writable queue of `topic` (round-robin with fault avoidance, or by
/// order key) and a connection to its master.
#[derive(Message)]
#[rtype(result = "Result<Selected>")]
pub struct SelectQueue {
    pub topic: String,
    pub order_key: Option<String>,
    /// Broker name of the previous failed attempt, avoided this time.
    pub last_failed: Option<String>,
}

impl Handler<SelectQueue> for ClientInstance {
    type Result = ResponseActFuture<Self, Result<Selected>>;

    fn handle(&mut self, msg: SelectQueue, ctx: &mut Self::Context) -> Self::Result {
        self.route_for_send(msg.topic.clone(), ctx)
            .then(
                move |res, act, _| match res.and_then(|route| act.select(&route, &msg)) {
                    Ok(queue) => {
                        let report_answers =
                            act.config.send_latency_fault_enable && !act.fault.is_quiet();
                        act.connection(queue.broker_addr.clone(), Some(queue.broker_name.clone()))
                            .map(move |c, _, _| {
                                c.map(|client| Selected {
                                    queue,
                                    client,
                                    report_answers,
                                })
                            })
                            .boxed_local()
                    }
                    Err(e) => ready(Err(e)).boxed_local(),
                },
            )
            .boxed_local()
    }
}

/// The route of a topic (cached unless `refresh`).
#[derive(Message)]
#[rtype(result = "Result<Arc<TopicRoute>>")]
pub struct GetRoute {
    pub topic: String,
    pub refresh: bool,
}

impl Handler<GetRoute> for ClientInstance {
    type Result = ResponseActFuture<Self, Result<Arc<TopicRoute>>>;

    fn handle(&mut self, msg: GetRoute, ctx: &mut Self::Context) -> Self::Result {
        self.route(msg.topic, msg.refresh, ctx)
    }
}

/// A live connection to a broker address.
#[derive(Message)]
#[rtype(result = "Result<RpcClient>")]
pub struct GetConnection {
    pub addr: String,
}

impl Handler<GetConnection> for ClientInstance {
    type Result = ResponseActFuture<Self, Result<RpcClient>>;

    fn handle(&mut self, msg: GetConnection, _ctx: &mut Self::Context) -> Self::Result {
        self.connection(msg.addr, None)
    }
}

/// Outcome of a request to a broker, for fault avoidance; a failure also
/// marks the topic's route for refresh.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReportOutcome {
    pub topic: String,
    pub broker_name: String,
    /// When the request was sent, and how long it took to settle.
    pub sent: Instant,
    pub latency: Duration,
    pub outcome: Outcome,
}

impl Handler<ReportOutcome> for ClientInstance {
    type Result = ();

    fn handle(&mut self, msg: ReportOutcome, ctx: &mut Self::Context) {
        if self.config.send_latency_fault_enable {
            self.fault
                .update(&msg.broker_name, msg.sent, msg.latency, msg.outcome);
        }
        if msg.outcome != Outcome::Answered {
            if let Some(c) = self.routes.get_mut(&msg.topic) {
                if !c.stale {
                    c.stale = true;
                    ctx.spawn(self.fetch_route(msg.topic).map(|_, _, _| ()));
                }
            }
        }
    }
}

/// Every broker address this client has a connection to (for heartbeats).
#[derive(Message)]
#[rtype(result = "Vec<String>")]
pub struct ConnectedBrokers;

impl Handler<ConnectedBrokers> for ClientInstance {
    type Result = Vec<String>;

    fn handle(&mut self, _: ConnectedBrokers, _ctx: &mut Self::Context) -> Vec<String> {
        let mut v: Vec<String> = self.brokers.keys().cloned().collect();
        v.sort();
        v
    }
}

/// Whether pulls of `0` go to a slave first (its broker suggested it).
#[derive(Message)]
#[rtype(result = "bool")]
pub struct ReadsFromSlave(pub MessageQueue);

impl Handler<ReadsFromSlave> for ClientInstance {
    type Result = bool;

    fn handle(&mut self, msg: ReadsFromSlave, _ctx: &mut Self::Context) -> bool {
        self.slave_reads.contains(&msg.0)
    }
}

/// A pull answer of `queue` suggested (`suggest`) reading from a slave, or
/// no longer does.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SuggestSlave {
    pub queue: MessageQueue,
    pub suggest: bool,
}

impl Handler<SuggestSlave> for ClientInstance {
    type Result = ();

    fn handle(&mut self, msg: SuggestSlave, _ctx: &mut Self::Context) {
        if msg.suggest {
            self.slave_reads.insert(msg.queue);
        } else {
            self.slave_reads.remove(&msg.queue);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn the_instance_owns_which_queues_read_from_a_slave() {
        let (instance, _, _) =
            ClientInstance::start_with(ClientConfig::new("127.0.0.1:1")).unwrap();
        let q = |id| MessageQueue {
            topic: "T".into(),
            broker_name: "b".into(),
            broker_addr: "127.0.0.1:2".into(),
            queue_id: id,
        };
        assert!(!instance.send(ReadsFromSlave(q(0))).await.unwrap());
        instance.do_send(SuggestSlave {
            queue: q(0),
            suggest: true,
        });
        // In mailbox order: the next question sees the suggestion.
        assert!(instance.send(ReadsFromSlave(q(0))).await.unwrap());
        assert!(!instance.send(ReadsFromSlave(q(1))).await.unwrap());
        instance.do_send(SuggestSlave {
            queue: q(0),
            suggest: false,
        });
        assert!(!instance.send(ReadsFromSlave(q(0))).await.unwrap());
    }

    #[actix_rt::test]
    async fn a_route_wait_tells_its_notice_once_and_ends_with_topic_not_found() {
        // Nothing listens on port 1: every route request fails at once.
        let ns = NameServerClient::new("127.0.0.1:1", Duration::from_secs(1), "t@1").unwrap();
        let told = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = told.clone();
        let notice = RouteWaitNotice::new(move |topic, wait| {
            log.lock().unwrap().push((topic.to_string(), wait));
        });
        let wait = Duration::from_millis(450);
        let r = wait_for_route(ns.clone(), "Early".into(), wait, Some(notice)).await;
        assert!(matches!(r, Err(ClientError::TopicNotFound(t)) if t == "Early"));
        assert_eq!(*told.lock().unwrap(), vec![("Early".to_string(), wait)]);
        // Without a notice the library says nothing and ends the same way.
        let r = wait_for_route(ns, "Early".into(), Duration::from_millis(50), None).await;
        assert!(matches!(r, Err(ClientError::TopicNotFound(_))));
    }
}
