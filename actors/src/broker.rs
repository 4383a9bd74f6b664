//! The `Broker` actor: this broker's role, its topic configs, and its
//! registration with every NameServer.
//!
//! * Owns the topic table (persisted atomically to `<data_dir>/config/topics.json`)
//!   and starts one [`TopicQueue`] actor per topic; the address of each is
//!   published in a `DashMap` read cache that connection handlers read and
//!   only this actor writes.
//! * Registers with **every** NameServer in `namesrv` at start, every
//!   `register_interval_secs` (30 s), and at once when a topic changes;
//!   unregisters on a clean shutdown.
//!
//! Messages answered: [`EnsureTopic`], [`CreateTopic`], [`DeleteTopic`],
//! [`ListTopics`], [`Unregister`] (+ the registration tick).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use dashmap::DashMap;
use skylark_codec::{
    validate_topic_name, ErrorCode, RegisterBrokerRequest, TopicConfig, UnregisterBrokerRequest,
    WireError,
};
use slog::{error, info, warn, Logger};

use crate::config::BrokerConfig;
use crate::live_settings::{LiveSettings, SettingError};
use crate::persist;
use crate::remoting::RpcClient;
use crate::storage::Storage;
use crate::topic_queue::{TopicHandle, TopicQueue};

/// The pseudo topic whose route lists the brokers that auto-create topics.
pub const AUTO_CREATE_TOPIC_KEY: &str = "TBW102";

/// Topic name → its TopicQueue actor and config snapshot. Written by the
/// Broker actor only (request handlers read it on every send and pull).
pub type TopicRegistry = Arc<DashMap<String, TopicHandle>>;

/// The broker's state owner.
pub struct Broker {
    config: Arc<BrokerConfig>,
    live: Arc<LiveSettings>,
    topics: BTreeMap<String, TopicConfig>,
    registry: TopicRegistry,
    storage: Addr<Storage>,
    namesrv: Vec<(String, Option<RpcClient>)>,
    registering: bool,
    /// Slave: told the master's addresses from each registration answer.
    master_watch: Option<Recipient<crate::replicator::MasterAddrs>>,
    register_again: bool,
    /// A quick retry for unreachable NameServers is pending.
    retry_scheduled: bool,
    data_version: u64,
    topics_path: PathBuf,
    /// Where TopicQueues run: not on this actor's own thread, which fsyncs
    /// topics.json on every topic change.
    queue_arbiter: ArbiterHandle,
    log: Logger,
}

impl Broker {
    /// Loads the persisted topic table; fails if it is unreadable.
    pub fn new(
        config: Arc<BrokerConfig>,
        storage: Addr<Storage>,
        registry: TopicRegistry,
        log: Logger,
    ) -> std::io::Result<Broker> {
        let topics_path = PathBuf::from(&config.store.data_dir)
            .join("config")
            .join("topics.json");
        let list: Vec<TopicConfig> = persist::read_json(&topics_path)?.unwrap_or_default();
        let topics = list.into_iter().map(|t| (t.name.clone(), t)).collect();
        let namesrv = config
            .namesrv_addrs()
            .into_iter()
            .map(|a| (a, None))
            .collect();
        Ok(Broker {
            live: Arc::new(LiveSettings::from_config(&config)),
            config,
            topics,
            registry,
            storage,
            namesrv,
            registering: false,
            master_watch: None,
            register_again: false,
            retry_scheduled: false,
            data_version: 1,
            topics_path,
            // The caller's arbiter (the System's, from `start_broker`).
            queue_arbiter: Arbiter::current(),
            log: log.new(slog::o!("actor" => "broker")),
        })
    }

    /// The live settings this broker owns (request handlers read them).
    pub fn live_settings(&self) -> Arc<LiveSettings> {
        self.live.clone()
    }

    fn start_topic_queue(&mut self, cfg: &TopicConfig) -> TopicHandle {
        let tq = TopicQueue::new(
            cfg.clone(),
            self.storage.clone(),
            self.config.clone(),
            self.log.clone(),
        );
        let addr = TopicQueue::start_in_arbiter(&self.queue_arbiter, move |_| tq);
        let handle = TopicHandle::new(addr, cfg);
        self.registry.insert(cfg.name.clone(), handle.clone());
        handle
    }

    fn persist_topics(&self) -> Result<(), WireError> {
        let list: Vec<&TopicConfig> = self.topics.values().collect();
        persist::write_json(&self.topics_path, &list).map_err(|e| {
            error!(self.log, "cannot persist topic configs"; "error" => %e);
            WireError::new(
                ErrorCode::Internal,
                format!("cannot persist topic configs: {e}"),
            )
        })
    }

    fn put_topic(
        &mut self,
        cfg: TopicConfig,
        ctx: &mut Context<Self>,
    ) -> Result<TopicHandle, WireError> {
        validate_topic_name(&cfg.name).map_err(|e| WireError::new(ErrorCode::BadRequest, e))?;
        if cfg.write_queues == 0
            || cfg.read_queues == 0
            || cfg.write_queues > 1024
            || cfg.read_queues > 1024
        {
            return Err(WireError::new(
                ErrorCode::BadRequest,
                "queue counts must be between 1 and 1024",
            ));
        }
        let previous = self.topics.insert(cfg.name.clone(), cfg.clone());
        if let Err(e) = self.persist_topics() {
            match previous {
                Some(p) => self.topics.insert(p.name.clone(), p),
                None => self.topics.remove(&cfg.name),
            };
            return Err(e);
        }
        let addr = match self.registry.get(&cfg.name).map(|a| a.addr.clone()) {
            Some(addr) => {
                addr.do_send(crate::topic_queue::UpdateConfig(cfg.clone()));
                let handle = TopicHandle::new(addr, &cfg);
                self.registry.insert(cfg.name.clone(), handle.clone());
                handle
            }
            None => self.start_topic_queue(&cfg),
        };
        info!(self.log, "topic saved"; "topic" => &cfg.name, "queues" => cfg.write_queues);
        self.data_version += 1;
        self.register_all(ctx);
        Ok(addr)
    }

    fn register_request(&self) -> RegisterBrokerRequest {
        let mut topics: Vec<TopicConfig> = self.topics.values().cloned().collect();
        if self.live.auto_create_topic() {
            // RocketMQ's convention: a broker that creates topics on first
            // send publishes the pseudo topic TBW102, so a producer that
            // finds no route for a new topic knows where it may send.
            topics.push(TopicConfig::new(
                AUTO_CREATE_TOPIC_KEY,
                self.live.default_topic_queues(),
            ));
        }
        RegisterBrokerRequest {
            cluster_name: self.config.cluster_name.clone(),
            broker_name: self.config.broker_name.clone(),
            broker_id: self.config.broker_id,
            broker_addr: self.config.advertised(),
            ha_addr: self.config.ha_advertised(),
            topics,
            data_version: self.data_version,
        }
    }

    /// Registers with every NameServer at once, (re)connecting where needed.
    /// A request made while one is in flight runs right after it.
    fn register_all(&mut self, ctx: &mut Context<Self>) {
        if self.registering {
            self.register_again = true;
            return;
        }
        self.registering = true;
        let req = Arc::new(self.register_request());
        let conns = std::mem::take(&mut self.namesrv);
        let log = self.log.clone();
        let watch = self.master_watch.clone();
        let each = conns.into_iter().map(move |(addr, client)| {
            let (req, log, watch) = (req.clone(), log.clone(), watch.clone());
            async move {
                let client = match client.filter(|c| c.is_connected()) {
                    Some(c) => Some(c),
                    None => match RpcClient::connect(&addr, Duration::from_secs(3)).await {
                        Ok(c) => Some(c),
                        Err(e) => {
                            warn!(log, "nameserver unreachable"; "namesrv" => &addr, "error" => %e);
                            None
                        }
                    },
                };
                if let Some(c) = &client {
                    match c.call(&*req).await {
                        Ok(resp) => {
                            if let Some(w) = &watch {
                                w.do_send(crate::replicator::MasterAddrs {
                                    master_addr: resp.master_addr,
                                    ha_master_addr: resp.ha_master_addr,
                                });
                            }
                        }
                        Err(e) => {
                            warn!(log, "register with nameserver failed"; "namesrv" => &addr, "error" => %e)
                        }
                    }
                }
                (addr, client)
            }
        });
        let fut = futures::future::join_all(each);
        ctx.spawn(fut.into_actor(self).map(|conns, act, ctx| {
            // A NameServer that could not be reached (e.g. still starting)
            // is tried again in 2 s rather than at the next 30 s round.
            let unreachable = conns.iter().any(|(_, c)| c.is_none());
            act.namesrv = conns;
            act.registering = false;
            if std::mem::take(&mut act.register_again) {
                act.register_all(ctx);
            } else if unreachable && !act.retry_scheduled {
                act.retry_scheduled = true;
                ctx.run_later(Duration::from_secs(2), |act, ctx| {
                    act.retry_scheduled = false;
                    act.register_all(ctx);
                });
            }
        }));
    }
}

impl Actor for Broker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
        let topics: Vec<TopicConfig> = self.topics.values().cloned().collect();
        for t in &topics {
            self.start_topic_queue(t);
        }
        info!(self.log, "broker started"; "broker_name" => &self.config.broker_name,
              "broker_id" => self.config.broker_id, "topics" => topics.len());
        self.register_all(ctx);
        let every = Duration::from_secs(self.config.register_interval_secs.max(1));
        ctx.run_interval(every, |act, ctx| act.register_all(ctx));
    }
}

/// The handle of topic `name`, auto-creating the topic when allowed.
#[derive(Message)]
#[rtype(result = "Result<TopicHandle, WireError>")]
pub struct EnsureTopic {
    pub name: String,
    /// Create the topic if it does not exist and auto-create is on.
    pub auto_create: bool,
}

/// Create or update a topic.
#[derive(Message)]
#[rtype(result = "Result<(), WireError>")]
pub struct CreateTopic(pub TopicConfig);

/// Delete a topic's config (its stored messages age out with retention).
#[derive(Message)]
#[rtype(result = "Result<(), WireError>")]
pub struct DeleteTopic(pub String);

/// Every topic config.
#[derive(Message)]
#[rtype(result = "Vec<TopicConfig>")]
pub struct ListTopics;

/// Unregister from every NameServer (clean shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unregister;

impl Handler<EnsureTopic> for Broker {
    type Result = Result<TopicHandle, WireError>;
    fn handle(&mut self, msg: EnsureTopic, ctx: &mut Self::Context) -> Self::Result {
        if let Some(a) = self.registry.get(&msg.name) {
            return Ok(a.clone());
        }
        if !(msg.auto_create && self.live.auto_create_topic()) {
            return Err(WireError::new(
                ErrorCode::TopicNotFound,
                format!("topic '{}' does not exist", msg.name),
            ));
        }
        let cfg = TopicConfig::new(msg.name, self.live.default_topic_queues());
        self.put_topic(cfg, ctx)
    }
}

impl Handler<CreateTopic> for Broker {
    type Result = Result<(), WireError>;
    fn handle(&mut self, msg: CreateTopic, ctx: &mut Self::Context) -> Self::Result {
        self.put_topic(msg.0, ctx).map(|_| ())
    }
}

impl Handler<DeleteTopic> for Broker {
    type Result = Result<(), WireError>;
    fn handle(&mut self, msg: DeleteTopic, ctx: &mut Self::Context) -> Self::Result {
        let Some(old) = self.topics.remove(&msg.0) else {
            return Err(WireError::new(
                ErrorCode::TopicNotFound,
                format!("topic '{}' does not exist", msg.0),
            ));
        };
        if let Err(e) = self.persist_topics() {
            self.topics.insert(old.name.clone(), old);
            return Err(e);
        }
        if let Some((_, handle)) = self.registry.remove(&msg.0) {
            handle.addr.do_send(crate::topic_queue::Close);
        }
        info!(self.log, "topic deleted"; "topic" => &msg.0);
        self.data_version += 1;
        self.register_all(ctx);
        Ok(())
    }
}

impl Handler<ListTopics> for Broker {
    type Result = MessageResult<ListTopics>;
    fn handle(&mut self, _: ListTopics, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.topics.values().cloned().collect())
    }
}

impl Handler<Unregister> for Broker {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, _: Unregister, _: &mut Self::Context) -> Self::Result {
        let req = UnregisterBrokerRequest {
            cluster_name: self.config.cluster_name.clone(),
            broker_name: self.config.broker_name.clone(),
            broker_id: self.config.broker_id,
            broker_addr: self.config.advertised(),
        };
        let clients: Vec<RpcClient> = self.namesrv.iter().filter_map(|(_, c)| c.clone()).collect();
        let log = self.log.clone();
        Box::pin(async move {
            for c in clients {
                if let Err(e) = c.call_timeout(&req, Duration::from_secs(2)).await {
                    warn!(log, "unregister failed"; "namesrv" => c.remote(), "error" => %e);
                }
            }
        })
    }
}

/// The live settings and their values.
#[derive(Message)]
#[rtype(result = "Vec<(String, String)>")]
pub struct GetBrokerSettings;

/// Change one live setting (an auto-create change is re-registered at once).
#[derive(Message)]
#[rtype(result = "Result<(), SettingError>")]
pub struct SetBrokerSetting {
    pub key: String,
    pub value: String,
}

impl Handler<GetBrokerSettings> for Broker {
    type Result = MessageResult<GetBrokerSettings>;
    fn handle(&mut self, _: GetBrokerSettings, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.live.list())
    }
}

impl Handler<SetBrokerSetting> for Broker {
    type Result = Result<(), SettingError>;
    fn handle(&mut self, m: SetBrokerSetting, ctx: &mut Self::Context) -> Self::Result {
        let before = self.live.get(&m.key);
        self.live.set(&m.key, &m.value)?;
        info!(self.log, "broker setting changed"; "key" => &m.key,
            "from" => before.unwrap_or_default(), "to" => self.live.get(&m.key).unwrap_or_default());
        if m.key == "auto_create_topic" || m.key == "default_topic_queues" {
            self.data_version += 1;
            self.register_all(ctx);
        }
        Ok(())
    }
}

/// Slave: send the master's addresses from every registration answer to
/// this recipient (the Replicator).
#[derive(Message)]
#[rtype(result = "()")]
pub struct WatchMaster(pub Recipient<crate::replicator::MasterAddrs>);

impl Handler<WatchMaster> for Broker {
    type Result = ();
    fn handle(&mut self, msg: WatchMaster, ctx: &mut Self::Context) {
        self.master_watch = Some(msg.0);
        self.register_all(ctx);
    }
}
