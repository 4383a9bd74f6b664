//! The `Broker` actor: this broker's role, its topic configs, and its
//! registration with every NameServer.
//!
//! * Owns the topic table (`<data_dir>/config/topics.json` plus the
//!   append-only `topics.log`, see [`topic_store`]: a change costs one
//!   append, and one fsync shared by every change made meanwhile, run on a
//!   blocking thread) and starts one [`TopicQueue`] actor per topic; the
//!   address of each is published in a read cache ([`crate::read_cache`])
//!   that only this actor writes; connection handlers and the other actors
//!   get a read-only [`TopicsView`]. A create or delete is
//!   answered once its log entry is durable.
//! * Registers with **every** NameServer in `namesrv` ([`registration`]):
//!   the full table at start, a delta of the changed topics at once when
//!   topics change (coalesced while a registration is in flight), and a
//!   light heartbeat on its own connection every `register_interval_secs`
//!   (30 s); unregisters on a clean shutdown. A NameServer that closed the
//!   broker's connections (it restarted) is asked again within a second,
//!   and one that cannot be reached is retried after 1 s, doubling up to
//!   the period, so a restarted NameServer learns the broker at once.
//!
//! * A slave also learns topics from the records it replicates
//!   ([`LearnTopics`]), so it serves every message it holds even before the
//!   metadata sync has copied the master's topic configs.
//!
//! Messages answered: [`EnsureTopic`], [`CreateTopic`], [`DeleteTopic`], [`TopicDeleted`],
//! [`CreateTopics`], [`ListTopics`], [`LearnTopics`], [`Unregister`], [`GetBrokerSettings`],
//! [`SetBrokerSetting`], [`WatchMaster`] (+ the registration tick and the
//! NameServer link check).

mod master_watch;
pub mod permission;
mod registration;
pub mod topic_store;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures::future::LocalBoxFuture;
use skylark_codec::cmd::broker::RegisterKind;
use skylark_codec::{
    validate_topic_name, ErrorCode, RegisterBrokerRequest, TopicConfig, UnregisterBrokerRequest,
    WireError,
};
use slog::{error, info, warn, Logger};
use tokio::sync::oneshot;

use crate::config::BrokerConfig;
use crate::live_settings::{LiveSettings, SettingError};
use crate::read_cache::{CacheView, ReadCache};
use crate::remoting::RpcClient;
use crate::storage::Storage;
use crate::topic_queue::{TopicHandle, TopicQueue};
pub use master_watch::{MasterAddrs, WatchMaster};
use registration::{NsLink, Sent};
use topic_store::TopicStore;

/// The pseudo topic whose route lists the brokers that auto-create topics.
pub use skylark_codec::AUTO_CREATE_TOPIC_KEY;

/// Topic name → its TopicQueue actor, as every actor but the Broker sees
/// it: read-only ([`Broker::topics_view`]); the Broker alone writes it.
pub type TopicsView = CacheView<TopicHandle>;

/// Group commit of the topic log: appends are numbered; one fsync (on a
/// blocking thread) answers every append it covers.
#[derive(Default)]
struct TopicSync {
    appended: u64,
    synced: u64,
    in_flight: bool,
    waiters: Vec<(u64, oneshot::Sender<Result<(), String>>)>,
}

/// The broker's state owner.
pub struct Broker {
    config: Arc<BrokerConfig>,
    live: Arc<LiveSettings>,
    topics: BTreeMap<String, TopicConfig>,
    store: TopicStore,
    sync: TopicSync,
    /// Topic name → its TopicQueue actor; [`TopicsView`]s read it.
    registry: ReadCache<TopicHandle>,
    storage: Addr<Storage>,
    links: Vec<NsLink>,
    /// Topic names changed since the last registration round.
    changed: BTreeSet<String>,
    registering: bool,
    heartbeating: bool,
    /// Slave: told the master's addresses from each registration answer.
    master_watch: Option<Recipient<MasterAddrs>>,
    /// The latest of those answers, for a watcher subscribing after it
    /// came (it would otherwise wait for the next heartbeat's, 30 s).
    master_seen: Option<MasterAddrs>,
    register_again: bool,
    /// The retry pending for unreachable NameServers: when it runs.
    retry: Option<(std::time::Instant, SpawnHandle)>,
    data_version: u64,
    /// Where TopicQueues run: not on this actor's own thread.
    queue_arbiter: ArbiterHandle,
    /// Topics being deleted, since when: not created again (auto-create
    /// included) until their queues and offsets are gone
    /// ([`TopicDeleted`]), or [`DELETE_HOLD`] has passed (a delete whose
    /// caller went away). A message acknowledged into a topic created
    /// again meanwhile would be dropped with the old queues.
    deleting: HashMap<String, std::time::Instant>,
    log: Logger,
}

/// The longest a topic being deleted refuses to be created again.
const DELETE_HOLD: Duration = Duration::from_secs(60);

/// A wait for the topic log to be durable up to some append.
type Durable = LocalBoxFuture<'static, Result<(), WireError>>;

impl Broker {
    /// Loads the persisted topic table; fails if it is unreadable.
    pub fn new(
        config: Arc<BrokerConfig>,
        storage: Addr<Storage>,
        log: Logger,
    ) -> std::io::Result<Broker> {
        let log = log.new(slog::o!("actor" => "broker"));
        let dir = std::path::PathBuf::from(&config.store.data_dir).join("config");
        let (mut store, mut topics) = TopicStore::open(&dir, &log)?;
        // Lines of the topic log were lost: topics with stored queues come
        // back (see topic_store).
        if store.lost_lines() > 0 {
            let stored = crate::message_store::stored_queue_counts(&config.store)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            store.restore_missing(&mut topics, stored)?;
        }
        let live = Arc::new(LiveSettings::from_config(&config));
        permission::load(&dir, &live)?;
        let links = config
            .namesrv_addrs()
            .into_iter()
            .map(NsLink::new)
            .collect();
        // A new incarnation never reuses a version a NameServer may hold.
        let data_version = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(1)
            << 16;
        Ok(Broker {
            live,
            config,
            topics,
            store,
            sync: TopicSync::default(),
            registry: ReadCache::new(),
            deleting: HashMap::new(),
            storage,
            links,
            changed: BTreeSet::new(),
            registering: false,
            heartbeating: false,
            master_watch: None,
            master_seen: None,
            register_again: false,
            retry: None,
            data_version,
            // The caller's arbiter (the System's, from `start_broker`).
            queue_arbiter: Arbiter::current(),
            log,
        })
    }

    /// The topic registry, read-only: the TopicQueue of each topic.
    pub fn topics_view(&self) -> TopicsView {
        self.registry.view()
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

    fn persist_error(&self, e: impl std::fmt::Display) -> WireError {
        error!(self.log, "cannot persist topic configs"; "error" => %e);
        WireError::new(
            ErrorCode::Internal,
            format!("cannot persist topic configs: {e}"),
        )
    }

    /// Answers once the topic log is durable up to append `seq`.
    fn durable(&mut self, seq: u64, ctx: &mut Context<Self>) -> Durable {
        if self.sync.synced >= seq {
            return Box::pin(futures::future::ready(Ok(())));
        }
        let (tx, rx) = oneshot::channel();
        self.sync.waiters.push((seq, tx));
        self.sync_topic_log(ctx);
        Box::pin(async move {
            match rx.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(WireError::new(
                    ErrorCode::Internal,
                    format!("cannot persist topic configs: {e}"),
                )),
                Err(_) => Err(WireError::new(ErrorCode::Internal, "broker stopped")),
            }
        })
    }

    /// Starts one fsync of the topic log if appends wait and none runs.
    fn sync_topic_log(&mut self, ctx: &mut Context<Self>) {
        if self.sync.in_flight || self.sync.synced >= self.sync.appended {
            return;
        }
        let target = self.sync.appended;
        let file = match self.store.sync_handle() {
            Ok(f) => f,
            Err(e) => return self.synced(target, Err(e.to_string()), ctx),
        };
        self.sync.in_flight = true;
        let fut = tokio::task::spawn_blocking(move || file.sync_data());
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            act.sync.in_flight = false;
            let res = match res {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            act.synced(target, res, ctx);
        }));
    }

    fn synced(&mut self, target: u64, res: Result<(), String>, ctx: &mut Context<Self>) {
        if let Err(e) = &res {
            error!(self.log, "cannot fsync the topic log"; "error" => e);
        } else {
            self.sync.synced = target;
        }
        let (done, wait): (Vec<_>, Vec<_>) = std::mem::take(&mut self.sync.waiters)
            .into_iter()
            .partition(|(seq, _)| *seq <= target);
        self.sync.waiters = wait;
        for (_, tx) in done {
            let _ = tx.send(res.clone());
        }
        if res.is_ok() && self.store.wants_compaction(self.topics.len()) {
            if let Err(e) = self.store.compact(&self.topics) {
                error!(self.log, "topic log compaction failed (the log keeps growing)"; "error" => %e);
            }
        }
        self.sync_topic_log(ctx);
    }

    /// Saves `cfg` (an append to the topic log) and starts or updates its
    /// TopicQueue; answers the queue and the append to wait on.
    fn put_topic(
        &mut self,
        cfg: TopicConfig,
        ctx: &mut Context<Self>,
    ) -> Result<(TopicHandle, u64), WireError> {
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
        if let Err(e) = self.store.put(&cfg) {
            return Err(self.persist_error(e));
        }
        self.sync.appended += 1;
        let seq = self.sync.appended;
        self.topics.insert(cfg.name.clone(), cfg.clone());
        let addr = match self.registry.get(&cfg.name).map(|a| a.addr.clone()) {
            Some(addr) => {
                addr.do_send(crate::topic_queue::UpdateConfig(cfg.clone()));
                // A new snapshot for the request handlers.
                let handle = TopicHandle::new(addr, &cfg);
                self.registry.insert(cfg.name.clone(), handle.clone());
                handle
            }
            None => self.start_topic_queue(&cfg),
        };
        info!(self.log, "topic saved"; "topic" => &cfg.name, "queues" => cfg.write_queues);
        self.topic_changed(cfg.name, ctx);
        Ok((addr, seq))
    }

    /// A full registration with every NameServer now (after the broker
    /// permission changed every topic's registered permission); waits for
    /// a round in flight, whose answer would mark the old version acked.
    fn register_full_now(&mut self, ctx: &mut Context<Self>) {
        if self.registering {
            ctx.run_later(Duration::from_millis(20), |act, ctx| {
                act.register_full_now(ctx)
            });
            return;
        }
        for link in &mut self.links {
            link.acked = None;
        }
        self.register_all(ctx);
    }

    /// Registers a change of topic `name` with the NameServers.
    fn topic_changed(&mut self, name: String, ctx: &mut Context<Self>) {
        self.data_version += 1;
        self.changed.insert(name);
        self.register_all(ctx);
    }

    fn request(&self, kind: RegisterKind, topics: Vec<TopicConfig>) -> RegisterBrokerRequest {
        RegisterBrokerRequest {
            cluster_name: self.config.cluster_name.clone(),
            broker_name: self.config.broker_name.clone(),
            broker_id: self.config.broker_id,
            broker_addr: self.config.advertised(),
            ha_addr: self.config.ha_advertised(),
            remoting_addr: self.config.remoting_advertised(),
            topics: topics
                .into_iter()
                .map(|t| permission::registered(t, self.live.broker_permission()))
                .collect(),
            data_version: self.data_version,
            kind,
            base_version: 0,
            deleted_topics: Vec::new(),
        }
    }

    /// The pseudo topic TBW102 when auto-create is on: RocketMQ's
    /// convention, so a producer that finds no route for a new topic knows
    /// where it may send.
    fn auto_create_key(&self) -> Option<TopicConfig> {
        self.live
            .auto_create_topic()
            .then(|| TopicConfig::new(AUTO_CREATE_TOPIC_KEY, self.live.default_topic_queues()))
    }

    /// A full registration: a `Full` request with the first topics and
    /// `Delta`s on the same version with the rest (see
    /// [`registration::TOPICS_PER_REQUEST`]).
    fn full_requests(&self) -> Vec<Arc<RegisterBrokerRequest>> {
        let mut all: Vec<TopicConfig> = self.topics.values().cloned().collect();
        all.extend(self.auto_create_key());
        let mut chunks = all.chunks(registration::TOPICS_PER_REQUEST);
        let first = chunks.next().map(|c| c.to_vec()).unwrap_or_default();
        let mut reqs = vec![Arc::new(self.request(RegisterKind::Full, first))];
        for c in chunks {
            let mut r = self.request(RegisterKind::Delta, c.to_vec());
            r.base_version = self.data_version;
            reqs.push(Arc::new(r));
        }
        reqs
    }

    /// The changed topics as they are now, and the deleted ones.
    fn delta(&self, changed: &BTreeSet<String>) -> (Vec<TopicConfig>, Vec<String>) {
        let (mut topics, mut deleted) = (Vec::new(), Vec::new());
        for name in changed {
            let now = if name == AUTO_CREATE_TOPIC_KEY {
                self.auto_create_key()
            } else {
                self.topics.get(name).cloned()
            };
            match now {
                Some(t) => topics.push(t),
                None => deleted.push(name.clone()),
            }
        }
        (topics, deleted)
    }

    /// One registration round with every NameServer: a full registration
    /// where one is due, else a delta of the topics changed since the last
    /// round. A request made while a round is in flight runs right after it.
    fn register_all(&mut self, ctx: &mut Context<Self>) {
        if self.registering {
            self.register_again = true;
            return;
        }
        let changed = std::mem::take(&mut self.changed);
        if changed.is_empty() && !self.links.iter().any(NsLink::needs_full) {
            return;
        }
        self.registering = true;
        let version = self.data_version;
        let full = self
            .links
            .iter()
            .any(NsLink::needs_full)
            .then(|| self.full_requests());
        let (topics, deleted) = self.delta(&changed);
        // What each NameServer gets: nothing, the full table, or the delta
        // from the version it acknowledged.
        let plans: Vec<Vec<Arc<RegisterBrokerRequest>>> = self
            .links
            .iter()
            .map(|link| match link.acked {
                _ if link.needs_full() => full.clone().unwrap_or_default(),
                Some(_) if changed.is_empty() => Vec::new(),
                base => {
                    let mut r = self.request(RegisterKind::Delta, topics.clone());
                    r.base_version = base.unwrap_or_default();
                    r.deleted_topics = deleted.clone();
                    vec![Arc::new(r)]
                }
            })
            .collect();
        let log = self.log.clone();
        let creds = self.config.clone();
        let sends = self.links.iter_mut().zip(plans).map(|(link, reqs)| {
            let (addr, client, log) = (link.addr.clone(), link.client.take(), log.clone());
            let addr = (addr, creds.clone());
            async move {
                if reqs.is_empty() {
                    let sent = Sent {
                        client,
                        answer: None,
                    };
                    return (true, sent);
                }
                let timeout = registration::REGISTER_TIMEOUT;
                (
                    false,
                    registration::send_all(addr, client, reqs, timeout, log).await,
                )
            }
        });
        let fut = futures::future::join_all(sends.collect::<Vec<_>>());
        ctx.spawn(fut.into_actor(self).map(move |results, act, ctx| {
            act.registering = false;
            let (mut retry, mut full_due) = (false, false);
            let period = act.register_period();
            let mut masters = Vec::new();
            for (link, (skipped, sent)) in act.links.iter_mut().zip(results) {
                link.client = sent.client;
                if skipped {
                    continue;
                }
                match sent.answer {
                    Some(resp) => {
                        link.reached();
                        link.supports_delta = resp.supports_delta;
                        link.acked = (!resp.need_full).then_some(version);
                        full_due |= resp.need_full;
                        masters.push(MasterAddrs {
                            master_addr: resp.master_addr,
                            ha_master_addr: resp.ha_master_addr,
                        });
                    }
                    None => {
                        link.unreachable(period);
                        retry = true;
                    }
                }
            }
            for m in masters {
                act.note_master(m);
            }
            if std::mem::take(&mut act.register_again) || full_due {
                act.register_all(ctx);
            } else if retry {
                act.schedule_retry(ctx);
            }
        }));
    }

    /// The registration period (`register_interval_secs`), which is also
    /// the longest backoff.
    fn register_period(&self) -> Duration {
        Duration::from_secs(self.config.register_interval_secs.max(1))
    }

    /// A registration round for the NameServers that could not be reached
    /// (e.g. restarting), after the shortest of their backoffs, not at the
    /// next tick; moved earlier if one already pending runs later.
    fn schedule_retry(&mut self, ctx: &mut Context<Self>) {
        let Some(wait) = self
            .links
            .iter()
            .map(|l| l.backoff)
            .filter(|b| !b.is_zero())
            .min()
        else {
            return;
        };
        let at = std::time::Instant::now() + wait;
        match self.retry.take() {
            Some((when, handle)) if when <= at => {
                self.retry = Some((when, handle));
                return;
            }
            Some((_, handle)) => {
                ctx.cancel_future(handle);
            }
            None => {}
        }
        let handle = ctx.run_later(wait, |act, ctx| {
            act.retry = None;
            act.register_all(ctx);
        });
        self.retry = Some((at, handle));
    }

    /// The link check: a NameServer that closed a connection of ours may
    /// have restarted and forgotten this broker, so it is asked now (a
    /// heartbeat; it answers `need_full` if it forgot), not at the next
    /// tick. Waits while a heartbeat round is out (it reports its own).
    fn check_links(&mut self, ctx: &mut Context<Self>) {
        if self.heartbeating {
            return;
        }
        let lost: Vec<usize> = self
            .links
            .iter_mut()
            .enumerate()
            .filter_map(|(i, l)| l.lost_connection().then_some(i))
            .collect();
        if lost.is_empty() {
            return;
        }
        if lost.iter().any(|&i| self.links[i].needs_full()) {
            self.register_all(ctx);
        }
        self.heartbeat(|i| lost.contains(&i), ctx);
    }

    /// The periodic tick: a heartbeat to every NameServer that takes them
    /// (on its own connection), a full registration to any other.
    fn heartbeat_all(&mut self, ctx: &mut Context<Self>) {
        self.register_all(ctx);
        self.heartbeat(|_| true, ctx);
    }

    /// A heartbeat to each NameServer `pick` chooses that takes them. One
    /// that could not be reached gets a full registration after its backoff.
    fn heartbeat(&mut self, pick: impl Fn(usize) -> bool, ctx: &mut Context<Self>) {
        if self.heartbeating {
            return;
        }
        let mut sends = Vec::new();
        let template = self.request(RegisterKind::Heartbeat, Vec::new());
        for (i, link) in self.links.iter_mut().enumerate() {
            if let (true, false, Some(v)) = (pick(i), link.needs_full(), link.acked) {
                let mut hb = template.clone();
                hb.data_version = v;
                sends.push((i, link.addr.clone(), link.hb_client.take(), hb));
            }
        }
        if sends.is_empty() {
            return;
        }
        self.heartbeating = true;
        let log = self.log.clone();
        let creds = self.config.clone();
        let each = sends.into_iter().map(move |(i, addr, client, hb)| {
            let (log, creds) = (log.clone(), creds.clone());
            async move {
                let client = registration::connected((&addr, creds), client, &log).await;
                let answer = match &client {
                    Some(c) => c.call_timeout(&hb, registration::HEARTBEAT_TIMEOUT).await,
                    None => return (i, client, None),
                };
                if let Err(e) = &answer {
                    warn!(log, "heartbeat to nameserver failed"; "namesrv" => &addr, "error" => %e);
                }
                (i, client, Some(answer))
            }
        });
        let fut = futures::future::join_all(each);
        ctx.spawn(fut.into_actor(self).map(|results, act, ctx| {
            act.heartbeating = false;
            let (mut full_due, mut retry) = (false, false);
            let period = act.register_period();
            for (i, client, answer) in results {
                let Some(link) = act.links.get_mut(i) else {
                    continue;
                };
                link.hb_client = client;
                match answer {
                    Some(Ok(resp)) => {
                        link.reached();
                        if resp.need_full || !resp.supports_delta {
                            link.acked = None;
                            full_due = true;
                        }
                        act.note_master(MasterAddrs {
                            master_addr: resp.master_addr,
                            ha_master_addr: resp.ha_master_addr,
                        });
                    }
                    // The NameServer answered with an error: it may not
                    // know heartbeats after all.
                    Some(Err(skylark_codec::ProtocolError::Remote(_))) => {
                        link.supports_delta = false;
                        full_due = true;
                    }
                    // Slow, not gone: the next tick asks again.
                    Some(Err(skylark_codec::ProtocolError::Io(e)))
                        if e.kind() == std::io::ErrorKind::TimedOut => {}
                    // Not reached (refused, closed): it may come back
                    // having forgotten this broker.
                    _ => {
                        link.unreachable(period);
                        retry = true;
                    }
                }
            }
            if full_due {
                act.register_all(ctx);
            } else if retry {
                act.schedule_retry(ctx);
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
        ctx.run_interval(self.register_period(), |act, ctx| act.heartbeat_all(ctx));
        ctx.run_interval(registration::LINK_CHECK, |act, ctx| act.check_links(ctx));
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

/// Create or update several topics; answered after one fsync (a slave's
/// metadata sync).
#[derive(Message)]
#[rtype(result = "Result<(), WireError>")]
pub struct CreateTopics(pub Vec<TopicConfig>);

/// Delete a topic's config (`processor::admin::delete_topic` then drops its
/// queues and offsets; its stored messages age out with retention).
#[derive(Message)]
#[rtype(result = "Result<(), WireError>")]
pub struct DeleteTopic(pub String);

/// A deletion begun by [`DeleteTopic`] is over (its queues and offsets
/// are gone, or it failed): the topic may be created again.
#[derive(Message)]
#[rtype(result = "()")]
pub struct TopicDeleted(pub String);

/// Every topic config.
#[derive(Message)]
#[rtype(result = "Vec<TopicConfig>")]
pub struct ListTopics;

/// Unregister from every NameServer (clean shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unregister;

fn ready<T: 'static>(r: Result<T, WireError>) -> LocalBoxFuture<'static, Result<T, WireError>> {
    Box::pin(futures::future::ready(r))
}

impl Broker {
    /// `Busy` (a client retries it) while `name` is being deleted.
    fn refuse_while_deleting(&mut self, name: &str) -> Result<(), WireError> {
        match self.deleting.get(name) {
            Some(since) if since.elapsed() < DELETE_HOLD => Err(WireError::new(
                ErrorCode::Busy,
                format!("topic '{name}' is being deleted: retry once the delete is done"),
            )),
            Some(_) => {
                self.deleting.remove(name);
                Ok(())
            }
            None => Ok(()),
        }
    }
}

impl Handler<EnsureTopic> for Broker {
    type Result = LocalBoxFuture<'static, Result<TopicHandle, WireError>>;
    fn handle(&mut self, msg: EnsureTopic, ctx: &mut Self::Context) -> Self::Result {
        if let Some(a) = self.registry.get(&msg.name) {
            return ready(Ok(a.clone()));
        }
        if let Err(e) = self.refuse_while_deleting(&msg.name) {
            return ready(Err(e));
        }
        if !(msg.auto_create && self.live.auto_create_topic()) {
            return ready(Err(WireError::new(
                ErrorCode::TopicNotFound,
                format!("topic '{}' does not exist", msg.name),
            )));
        }
        let cfg = TopicConfig::new(msg.name, self.live.default_topic_queues());
        match self.put_topic(cfg, ctx) {
            Ok((addr, seq)) => {
                let durable = self.durable(seq, ctx);
                Box::pin(async move { durable.await.map(|()| addr) })
            }
            Err(e) => ready(Err(e)),
        }
    }
}

impl Handler<CreateTopic> for Broker {
    type Result = Durable;
    fn handle(&mut self, msg: CreateTopic, ctx: &mut Self::Context) -> Self::Result {
        let cfg = &msg.0;
        if let Err(e) = self.refuse_while_deleting(&cfg.name) {
            return ready(Err(e));
        }
        // A layout kept as it is (a permission or order change of a topic
        // made before this check) is not refused.
        let counts_change = self
            .topics
            .get(&cfg.name)
            .is_none_or(|t| (t.read_queues, t.write_queues) != (cfg.read_queues, cfg.write_queues));
        if cfg.write_queues > cfg.read_queues && counts_change {
            // Sends would fill queues no consumer reads, and no stats or
            // lag would show them. Read queues above write queues is fine:
            // that is how a topic drains before it shrinks.
            return ready(Err(WireError::new(
                ErrorCode::BadRequest,
                format!(
                    "topic '{}': {} write queues above {} read queues would store messages in queues no consumer reads; raise the read queues first (or both together), lower the write queues first to shrink",
                    cfg.name, cfg.write_queues, cfg.read_queues
                ),
            )));
        }
        match self.put_topic(msg.0, ctx) {
            Ok((_, seq)) => self.durable(seq, ctx),
            Err(e) => ready(Err(e)),
        }
    }
}

impl Handler<CreateTopics> for Broker {
    type Result = Durable;
    fn handle(&mut self, msg: CreateTopics, ctx: &mut Self::Context) -> Self::Result {
        let mut last = 0;
        for cfg in msg.0 {
            match self.put_topic(cfg, ctx) {
                Ok((_, seq)) => last = seq,
                Err(e) => return ready(Err(e)),
            }
        }
        self.durable(last, ctx)
    }
}

impl Handler<DeleteTopic> for Broker {
    type Result = Durable;
    fn handle(&mut self, msg: DeleteTopic, ctx: &mut Self::Context) -> Self::Result {
        // Also when the config is gone: the caller may go on to drop what
        // is left of the topic.
        self.deleting
            .insert(msg.0.clone(), std::time::Instant::now());
        if !self.topics.contains_key(&msg.0) {
            return ready(Err(WireError::new(
                ErrorCode::TopicNotFound,
                format!("topic '{}' does not exist", msg.0),
            )));
        }
        if let Err(e) = self.store.delete(&msg.0) {
            return ready(Err(self.persist_error(e)));
        }
        self.sync.appended += 1;
        let seq = self.sync.appended;
        self.topics.remove(&msg.0);
        if let Some((_, handle)) = self.registry.remove(&msg.0) {
            handle.addr.do_send(crate::topic_queue::Close);
        }
        info!(self.log, "topic deleted"; "topic" => &msg.0);
        self.topic_changed(msg.0, ctx);
        self.durable(seq, ctx)
    }
}

impl Handler<TopicDeleted> for Broker {
    type Result = ();
    fn handle(&mut self, msg: TopicDeleted, _: &mut Self::Context) {
        self.deleting.remove(&msg.0);
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
        // Every NameServer, on its open connection if there is one, else
        // (or when that one turns out closed: the NameServer restarted, or
        // closed it idle) on a new one, so a stopped broker is not left in
        // a route until the NameServer's broker timeout.
        let links: Vec<(String, Option<RpcClient>)> = self
            .links
            .iter()
            .map(|l| {
                let c = l.client.clone().or_else(|| l.hb_client.clone());
                (l.addr.clone(), c)
            })
            .collect();
        let (log, config) = (self.log.clone(), self.config.clone());
        Box::pin(async move {
            const TIMEOUT: Duration = Duration::from_secs(2);
            for (addr, cached) in links {
                if let Some(c) = cached {
                    if c.call_timeout(&req, TIMEOUT).await.is_ok() {
                        continue;
                    }
                }
                let fresh = match config.connect_peer(&addr).await {
                    Ok(c) => c.call_timeout(&req, TIMEOUT).await.map(|_| ()),
                    Err(e) => Err(e),
                };
                if let Err(e) = fresh {
                    warn!(log, "unregister failed"; "namesrv" => &addr, "error" => %e);
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
    type Result = ResponseActFuture<Self, Result<(), SettingError>>;
    fn handle(&mut self, m: SetBrokerSetting, ctx: &mut Self::Context) -> Self::Result {
        let before = self.live.get(&m.key);
        if let Err(e) = self.live.set(&m.key, &m.value) {
            return Box::pin(fut::ready(Err(e)));
        }
        info!(self.log, "broker setting changed"; "key" => &m.key,
            "from" => before.clone().unwrap_or_default(), "to" => self.live.get(&m.key).unwrap_or_default());
        if m.key == "auto_create_topic" || m.key == "default_topic_queues" {
            self.topic_changed(AUTO_CREATE_TOPIC_KEY.to_string(), ctx);
        }
        if m.key != permission::KEY {
            return Box::pin(fut::ready(Ok(())));
        }
        // The broker permission lasts across restarts: answered once it is
        // on disk, then every NameServer gets the full table with the new
        // permissions at once.
        let dir = std::path::PathBuf::from(&self.config.store.data_dir).join("config");
        let perm = self.live.broker_permission();
        let saved = tokio::task::spawn_blocking(move || permission::save(&dir, perm));
        Box::pin(saved.into_actor(self).map(move |res, act, ctx| {
            let res = match res {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = res {
                error!(act.log, "cannot persist the broker permission"; "error" => &e);
                if let Some(b) = &before {
                    let _ = act.live.set(permission::KEY, b);
                }
                return Err(SettingError::Persist(permission::KEY.to_string(), e));
            }
            act.data_version += 1;
            act.register_full_now(ctx);
            Ok(())
        }))
    }
}

/// Slave: topics seen in replicated records, each with the smallest queue
/// count that covers the queue ids seen. A topic this broker does not know
/// is created (at least `default_topic_queues` queues); a known topic with
/// fewer queues grows. Answers every named topic's read queue count after
/// the change, once it is persisted and its TopicQueue runs, so the slave
/// can serve the records before it acks them.
#[derive(Message)]
#[rtype(result = "Result<Vec<(String, u32)>, WireError>")]
pub struct LearnTopics(pub Vec<(String, u32)>);

impl Handler<LearnTopics> for Broker {
    type Result = LocalBoxFuture<'static, Result<Vec<(String, u32)>, WireError>>;
    fn handle(&mut self, msg: LearnTopics, ctx: &mut Self::Context) -> Self::Result {
        let mut known = Vec::with_capacity(msg.0.len());
        let mut last = 0;
        for (name, min_queues) in msg.0 {
            let min_queues = min_queues.clamp(1, 1024);
            let cfg = match self.topics.get(&name) {
                Some(t) if t.read_queues >= min_queues => {
                    known.push((name, t.read_queues));
                    continue;
                }
                Some(t) => TopicConfig {
                    read_queues: min_queues,
                    write_queues: t.write_queues.max(min_queues),
                    ..t.clone()
                },
                None => TopicConfig::new(&name, min_queues.max(self.live.default_topic_queues())),
            };
            info!(self.log, "topic learned from replicated records"; "topic" => &name,
                "queues" => cfg.read_queues);
            let queues = cfg.read_queues;
            match self.put_topic(cfg, ctx) {
                Ok((_, seq)) => last = seq,
                Err(e) => return ready(Err(e)),
            }
            known.push((name, queues));
        }
        let durable = self.durable(last, ctx);
        Box::pin(async move { durable.await.map(|()| known) })
    }
}

impl Broker {
    /// A NameServer answered with the master's addresses: keep them and
    /// tell the watcher.
    fn note_master(&mut self, addrs: MasterAddrs) {
        if let Some(w) = &self.master_watch {
            w.do_send(addrs.clone());
        }
        self.master_seen = Some(addrs);
    }
}

impl Handler<WatchMaster> for Broker {
    type Result = ();
    fn handle(&mut self, msg: WatchMaster, ctx: &mut Self::Context) {
        // An answer that came before the watcher subscribed is not lost.
        if let Some(seen) = &self.master_seen {
            msg.0.do_send(seen.clone());
        }
        self.master_watch = Some(msg.0);
        self.register_all(ctx);
    }
}
