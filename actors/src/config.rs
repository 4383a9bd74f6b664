//! Configuration structs of the server actors.
//!
//! Every field has a serde default so an empty file (or none) is a working
//! configuration; `conf/*.toml` documents each key with its default. The
//! `skylark` package layers file → `SKYLARK_*` environment → flags on top
//! with the `config` crate and deserializes into these structs.

use std::time::Duration;

use serde::Deserialize;

use crate::message_store::StoreConfig;

pub mod words;
pub use words::choice;

/// The server a configuration file is written for: its `role` key, which
/// every file of `conf/` carries. Each server refuses a file whose `role`
/// is another's (`skylark::config` checks it when it loads the file), so
/// an operator who picks the wrong file gets an error, not a broker on the
/// NameServer's port with every other setting at its default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(try_from = "String", into = "String")]
pub enum ConfRole {
    /// `skylark namesrv`.
    Namesrv,
    /// `skylark broker` (and `skylark standalone`, which takes a broker file).
    Broker,
    /// `skylark controller`.
    Controller,
}

crate::config::words::setting_words!(
    ConfRole,
    "role",
    [
        ("namesrv", ConfRole::Namesrv),
        ("broker", ConfRole::Broker),
        ("controller", ConfRole::Controller),
    ]
);

impl ConfRole {
    /// Every role, in the order errors list them.
    pub const ALL: [ConfRole; 3] = [ConfRole::Namesrv, ConfRole::Broker, ConfRole::Controller];

    /// The value of the `role` key, and the `skylark` subcommand that runs it.
    pub fn as_str(self) -> &'static str {
        match self {
            ConfRole::Namesrv => "namesrv",
            ConfRole::Broker => "broker",
            ConfRole::Controller => "controller",
        }
    }

    /// The server, as an error names it ("a NameServer's configuration").
    pub fn server(self) -> &'static str {
        match self {
            ConfRole::Namesrv => "NameServer",
            ConfRole::Broker => "broker",
            ConfRole::Controller => "controller",
        }
    }
}

impl From<ConfRole> for String {
    fn from(r: ConfRole) -> String {
        r.as_str().to_string()
    }
}

/// NameServer settings (`conf/namesrv.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct NameServerConfig {
    /// The server the file is written for ([`ConfRole`]); a file whose
    /// `role` is not `namesrv` is refused when it is loaded.
    pub role: Option<ConfRole>,
    /// Address to listen on.
    pub listen_host: String,
    /// TCP port for brokers and clients.
    pub port: u16,
    /// A broker silent for this long is removed from the route table.
    pub broker_expire_secs: u64,
    /// How often liveness is checked.
    pub scan_interval_secs: u64,
    /// Largest accepted frame in bytes.
    pub max_frame_size: usize,
    /// Connection limits (see README "Limits"): open connections this
    /// listener accepts; more get one `Busy` error frame and are closed.
    pub max_connections: usize,
    /// Descriptors kept free for the store and everything else: the
    /// process accepts at most `RLIMIT_NOFILE - fd_reserve` connections.
    pub fd_reserve: usize,
    /// A frame begun must be complete within this (ms), or the connection
    /// is closed (slowloris).
    pub frame_read_timeout_ms: u64,
    /// A connection with no frame in and no byte out for this long is closed.
    pub connection_idle_secs: u64,
    /// A connection stops reading requests at this many unsent answer bytes ...
    pub write_high_water_bytes: usize,
    /// ... and reads again at or below this many.
    pub write_low_water_bytes: usize,
    /// A connection stops reading requests at this many in flight ...
    pub inflight_high_water: usize,
    /// ... and reads again at or below this many.
    pub inflight_low_water: usize,
    /// Unsent answer bytes over all connections of the process: every
    /// connection stops reading while they are above this.
    pub buffered_answer_budget_bytes: usize,
    /// Request frames still arriving over all connections of the process
    /// (their announced sizes): a frame that does not arrive whole in one
    /// read waits, unread, while they are at or above this.
    pub incomplete_frame_budget_bytes: usize,
    /// Metrics (docs/metrics.md): serve `GET /metrics` on this port of
    /// `listen_host`; absent = off.
    pub metrics_port: Option<u16>,
    /// Web dashboard (docs/dashboard.md): HTTP port; absent = off.
    pub dashboard_port: Option<u16>,
    /// RocketMQ remoting protocol (docs/rocketmq-compat.md): port of
    /// `listen_host` for unmodified RocketMQ clients; absent = off.
    pub remoting_port: Option<u16>,
    /// How often the dashboard samples the brokers, in seconds.
    pub dashboard_sample_secs: u64,
    /// The dashboard alerts on a consumer group lagging above this many messages.
    pub dashboard_lag_alert: u64,
    /// ACL (docs/security.md): every request must be signed by an account
    /// of `acl_file` and have the permission its command needs.
    pub acl_enabled: bool,
    /// The ACL file (accounts, permissions), reloaded when it changes.
    pub acl_file: String,
    /// The account the dashboard signs its broker RPCs with when the
    /// brokers have ACL on (an admin account: message search by id is an
    /// admin command).
    pub access_key: Option<String>,
    /// Its secret (never logged: `Debug` shows `***`).
    pub secret_key: Option<crate::acl::Secret>,
    /// TLS on the client port: `disabled`, `permissive` or `enforcing`.
    pub tls_mode: crate::tls::TlsMode,
    /// PEM certificate chain of this server (TLS on).
    pub tls_cert_file: Option<String>,
    /// PEM private key of this server (TLS on).
    pub tls_key_file: Option<String>,
    /// CA (PEM) client certificates must chain to (mutual TLS): set, TLS
    /// clients without such a certificate are refused (`enforcing`).
    pub tls_client_ca_file: Option<String>,
    /// CA (PEM) that brokers' certificates chain to: set, the dashboard's
    /// connections to brokers (its sampler, message search) use TLS.
    pub tls_ca_file: Option<String>,
    /// Certificate chain and key (PEM) the NameServer presents when a
    /// broker asks for one (mutual TLS); unset: `tls_cert_file` and
    /// `tls_key_file`.
    pub tls_client_cert_file: Option<String>,
    pub tls_client_key_file: Option<String>,
}

impl Default for NameServerConfig {
    fn default() -> Self {
        NameServerConfig {
            role: None,
            listen_host: "127.0.0.1".into(),
            port: 9876,
            broker_expire_secs: 120,
            scan_interval_secs: 10,
            max_frame_size: skylark_codec::DEFAULT_MAX_FRAME_SIZE,
            max_connections: 10_000,
            fd_reserve: 256,
            frame_read_timeout_ms: 30_000,
            connection_idle_secs: 120,
            write_high_water_bytes: 4 << 20,
            write_low_water_bytes: 1 << 20,
            inflight_high_water: 256,
            inflight_low_water: 128,
            buffered_answer_budget_bytes: 256 << 20,
            incomplete_frame_budget_bytes: 256 << 20,
            metrics_port: None,
            dashboard_port: None,
            remoting_port: None,
            dashboard_sample_secs: 5,
            dashboard_lag_alert: 10_000,
            acl_enabled: false,
            acl_file: "conf/acl.toml".into(),
            access_key: None,
            secret_key: None,
            tls_mode: crate::tls::TlsMode::Disabled,
            tls_cert_file: None,
            tls_key_file: None,
            tls_client_ca_file: None,
            tls_ca_file: None,
            tls_client_cert_file: None,
            tls_client_key_file: None,
        }
    }
}

impl NameServerConfig {
    /// The TLS of the NameServer's ports (client and RocketMQ remoting):
    /// `None` with `tls_mode = disabled`.
    pub fn server_tls(&self) -> Result<Option<std::sync::Arc<crate::tls::ServerTls>>, String> {
        crate::tls::ServerTls::load(
            self.tls_mode,
            self.tls_cert_file.as_deref(),
            self.tls_key_file.as_deref(),
            self.tls_client_ca_file.as_deref(),
        )
    }

    /// The TLS of the NameServer's own connections to brokers (the
    /// dashboard's): `None` without `tls_ca_file`.
    pub fn outgoing_tls(&self) -> Result<Option<crate::tls::ClientTls>, String> {
        crate::tls::outgoing(
            self.tls_ca_file.as_deref(),
            [&self.tls_client_cert_file, &self.tls_client_key_file],
            [&self.tls_cert_file, &self.tls_key_file],
        )
    }
    pub fn broker_expire(&self) -> Duration {
        Duration::from_secs(self.broker_expire_secs)
    }
    pub fn scan_interval(&self) -> Duration {
        Duration::from_secs(self.scan_interval_secs.max(1))
    }
}

/// Broker settings (`conf/broker.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct BrokerConfig {
    /// The server the file is written for ([`ConfRole`]); a file whose
    /// `role` is not `broker` is refused when it is loaded.
    pub role: Option<ConfRole>,
    /// Cluster this broker belongs to.
    pub cluster_name: String,
    /// Broker group name, shared by a master and its slaves.
    pub broker_name: String,
    /// 0 = master, > 0 = slave.
    pub broker_id: u64,
    /// Address to listen on.
    pub listen_host: String,
    /// TCP port for clients.
    pub port: u16,
    /// Address published to the NameServers and written into message ids
    /// (default: listen_host:port; on 0.0.0.0 or ::, this machine's address).
    pub advertised_addr: Option<String>,
    /// NameServer addresses, `host:port` separated by `;`.
    pub namesrv: String,
    /// Create a topic on its first send.
    pub auto_create_topic: bool,
    /// Queue count of auto-created topics.
    pub default_topic_queues: u32,
    /// Register with every NameServer this often.
    pub register_interval_secs: u64,
    /// Longest time a pull may be parked waiting for messages.
    pub long_poll_max_ms: u64,
    /// Requests a single connection may have in flight before `Busy`.
    pub max_inflight_per_connection: usize,
    /// Largest accepted frame in bytes.
    pub max_frame_size: usize,
    /// Largest pull answer in bytes.
    pub max_pull_bytes: u32,
    /// Delay levels, space separated (`1s 5s 10s 30s 1m ... 2h`): level L
    /// (1-based) waits the L-th duration.
    pub delay_levels: String,
    /// Longest accepted delay of an arbitrary-time (`deliver_at`) message.
    pub max_delay_ms: u64,
    /// How often the Scheduler looks for due delayed messages.
    pub schedule_tick_ms: u64,
    /// An undecided half message is first checked with its producer this
    /// long after it was stored (ms).
    pub transaction_timeout_ms: u64,
    /// Then checked again this often (ms).
    pub transaction_check_interval_ms: u64,
    /// At most this many checks; then the half message is discarded.
    pub transaction_check_max: u32,
    /// Serve SQL-92 property filters (`consume --sql`); when off, such
    /// subscriptions are refused.
    pub enable_property_filter: bool,
    /// A consumer silent this long is dropped from its group.
    pub client_expire_secs: u64,
    /// How often consumer groups drop gone members and expired locks.
    pub group_scan_interval_ms: u64,
    /// Lease of an orderly consumer's queue lock.
    pub order_lock_lease_secs: u64,
    /// Storage engine settings (`[store]`); `store.data_dir` is the broker's
    /// data directory (CommitLog, ConsumeQueues and the `config/` metadata).
    pub store: StoreConfig,
    /// Replication role: `ASYNC_MASTER`, `SYNC_MASTER` or `SLAVE` (a broker
    /// id > 0 is always a slave).
    pub broker_role: BrokerRole,
    /// Master: port slaves replicate from. Absent: `port + 1` (ephemeral
    /// when `port` is 0 or `port + 1` is taken); 0: ephemeral.
    pub ha_port: Option<u16>,
    /// SYNC_MASTER: longest wait for a slave's ack before answering
    /// `FLUSH_SLAVE_TIMEOUT` (default 2000 ms: below the client's 3 s
    /// request timeout, so a producer gets that answer, not a timeout of
    /// its own, when a slave hangs). Counted from the append, so it runs
    /// alongside the sync-flush wait.
    pub sync_replication_timeout_ms: u64,
    /// Slave: the master's HA address; absent = as the NameServer reports it.
    pub master_ha_addr: Option<String>,
    /// Slave: how often topics and consumer offsets are copied from the master.
    pub metadata_sync_interval_secs: u64,
    /// A consumer this many messages behind the end of a queue is told to
    /// read that queue from a slave of the group (relieving the master);
    /// 0 turns the suggestion off.
    pub slave_read_lag_messages: u64,
    /// Threads serving client connections (decode, answers); the first
    /// also runs Storage. 0 = one per core but one, at least one: on two
    /// cores one worker left the second to the flusher, the prefaulter
    /// and the kernel's network work, and cut broker CPU per message by a
    /// quarter (docs/benchmarks.md, "Connection workers").
    pub connection_workers: usize,
    /// Connection limits (see README "Limits"): open connections this
    /// listener accepts; more get one `Busy` error frame and are closed.
    pub max_connections: usize,
    /// Descriptors kept free for the store and everything else: the
    /// process accepts at most `RLIMIT_NOFILE - fd_reserve` connections.
    pub fd_reserve: usize,
    /// A frame begun must be complete within this (ms), or the connection
    /// is closed (slowloris).
    pub frame_read_timeout_ms: u64,
    /// A connection with no frame in and no byte out for this long is closed.
    pub connection_idle_secs: u64,
    /// A connection stops reading requests at this many unsent answer bytes ...
    pub write_high_water_bytes: usize,
    /// ... and reads again at or below this many.
    pub write_low_water_bytes: usize,
    /// A connection stops reading requests at this many in flight ...
    pub inflight_high_water: usize,
    /// ... and reads again at or below this many.
    pub inflight_low_water: usize,
    /// Unsent answer bytes over all connections of the process: every
    /// connection stops reading while they are above this.
    pub buffered_answer_budget_bytes: usize,
    /// Request frames still arriving over all connections of the process
    /// (their announced sizes): a frame that does not arrive whole in one
    /// read waits, unread, while they are at or above this.
    pub incomplete_frame_budget_bytes: usize,
    /// Metrics (docs/metrics.md): serve `GET /metrics` on this port of
    /// `listen_host`; absent = off.
    pub metrics_port: Option<u16>,
    /// RocketMQ remoting protocol (docs/rocketmq-compat.md): port of
    /// `listen_host` for unmodified RocketMQ clients; absent = off.
    pub remoting_port: Option<u16>,
    /// Set by `skylark standalone` for its default `remoting_port`: when
    /// that port is taken, an ephemeral one is used (RocketMQ clients learn
    /// it from the routes). Not a config file key.
    #[serde(skip)]
    pub remoting_port_fallback: bool,
    /// `skylark_alert_consumer_lag` is 1 while a group's lag on a topic is
    /// above this many messages; 0 = no lag alert.
    pub metrics_lag_alert_threshold: u64,
    /// `skylark_alert_slave_not_replicating` is 1 once a slave behind has
    /// acked nothing new for this long.
    pub metrics_replication_stall_secs: u64,
    /// ACL (docs/security.md): every request must be signed by an account
    /// of `acl_file` and have the permission its command needs.
    pub acl_enabled: bool,
    /// The ACL file (accounts, permissions), reloaded when it changes.
    pub acl_file: String,
    /// The cluster's broker credential this broker signs with when it
    /// registers with NameServers and, as a slave, talks to its master.
    pub access_key: Option<String>,
    /// Its secret (never logged: `Debug` shows `***`).
    pub secret_key: Option<crate::acl::Secret>,
    /// TLS on the client port: `disabled`, `permissive` or `enforcing`.
    pub tls_mode: crate::tls::TlsMode,
    /// PEM certificate chain of this server (TLS on).
    pub tls_cert_file: Option<String>,
    /// PEM private key of this server (TLS on).
    pub tls_key_file: Option<String>,
    /// CA (PEM) that NameServers' and the master's certificates chain to:
    /// set, this broker's own connections to them use TLS.
    pub tls_ca_file: Option<String>,
    /// CA (PEM) client certificates must chain to on the client and HA
    /// ports (mutual TLS): set, TLS clients without one are refused.
    pub tls_client_ca_file: Option<String>,
    /// Certificate chain and key (PEM) this broker presents when a server
    /// asks for one (NameServers, its master); unset: `tls_cert_file` and
    /// `tls_key_file`.
    pub tls_client_cert_file: Option<String>,
    pub tls_client_key_file: Option<String>,
    /// Controller mode (docs/failover.md): no fixed role; the controller
    /// group (`controller_addr`) decides who is master and fails over.
    /// `broker_id` is then this broker's identity in its group (1, 2, ...),
    /// and it registers with the NameServers as id 0 while it is master.
    pub enable_controller_mode: bool,
    /// Controller mode: the controllers, `HOST:PORT` separated by `;`.
    pub controller_addr: String,
    /// Controller mode: how often this broker heartbeats the controller
    /// leader (and a master reports its in-sync set).
    pub controller_heartbeat_interval_ms: u64,
    /// Controller mode: a slave is in sync while it is at most this many
    /// bytes behind the master's CommitLog end ...
    pub ha_max_gap_bytes: u64,
    /// ... and caught up with the master's end within this long (ms).
    pub ha_max_time_slave_not_catchup_ms: u64,
    /// Controller mode: a send is acknowledged once every member of the
    /// in-sync set has it (RocketMQ's `allAckInSyncStateSet`); false: as
    /// `broker_role` says for a master.
    pub in_sync_ack: bool,
    /// Controller mode: a master refuses sends (`SLAVE_NOT_AVAILABLE`)
    /// while its in-sync set, itself included, is smaller than this.
    pub min_in_sync_replicas: usize,
    /// Loaded from `tls_ca_file` at start (not a configuration key).
    #[serde(skip)]
    pub outgoing_tls: Option<crate::tls::ClientTls>,
    /// Controller mode: the role and in-sync set as the controller last
    /// answered, written by the controller-mode driver (not a key).
    #[serde(skip)]
    pub controller_view: Option<std::sync::Arc<crate::controller::view::RoleView>>,
}

/// A broker's replication role (RocketMQ's `brokerRole`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "String")]
pub enum BrokerRole {
    /// Answer a send once it is stored locally; slaves catch up after.
    #[default]
    AsyncMaster,
    /// Answer a send once a slave has acked it (or the timeout passed).
    SyncMaster,
    /// Replicates from the master, serves reads, refuses sends.
    Slave,
}

crate::config::words::setting_words!(
    BrokerRole,
    "broker_role",
    [
        ("ASYNC_MASTER", BrokerRole::AsyncMaster),
        ("SYNC_MASTER", BrokerRole::SyncMaster),
        ("SLAVE", BrokerRole::Slave),
    ]
);

impl BrokerRole {
    /// The role's name as in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            BrokerRole::AsyncMaster => "ASYNC_MASTER",
            BrokerRole::SyncMaster => "SYNC_MASTER",
            BrokerRole::Slave => "SLAVE",
        }
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            role: None,
            cluster_name: "DefaultCluster".into(),
            broker_name: "broker-a".into(),
            broker_id: 0,
            listen_host: "127.0.0.1".into(),
            port: 10911,
            advertised_addr: None,
            namesrv: "127.0.0.1:9876".into(),
            auto_create_topic: true,
            default_topic_queues: 4,
            register_interval_secs: 30,
            long_poll_max_ms: 15_000,
            max_inflight_per_connection: 1024,
            max_frame_size: skylark_codec::DEFAULT_MAX_FRAME_SIZE,
            max_pull_bytes: 1024 * 1024,
            delay_levels: crate::scheduler::levels::DEFAULT_DELAY_LEVELS.into(),
            max_delay_ms: 3 * 24 * 3600 * 1000,
            schedule_tick_ms: 20,
            transaction_timeout_ms: 6_000,
            transaction_check_interval_ms: 60_000,
            transaction_check_max: 15,
            enable_property_filter: true,
            client_expire_secs: 120,
            group_scan_interval_ms: 1000,
            order_lock_lease_secs: 60,
            store: StoreConfig::default(),
            broker_role: BrokerRole::AsyncMaster,
            ha_port: None,
            sync_replication_timeout_ms: 2000,
            master_ha_addr: None,
            metadata_sync_interval_secs: 10,
            slave_read_lag_messages: 1_000_000,
            connection_workers: 0,
            max_connections: 10_000,
            fd_reserve: 256,
            frame_read_timeout_ms: 30_000,
            connection_idle_secs: 120,
            write_high_water_bytes: 4 << 20,
            write_low_water_bytes: 1 << 20,
            inflight_high_water: 256,
            inflight_low_water: 128,
            buffered_answer_budget_bytes: 256 << 20,
            incomplete_frame_budget_bytes: 256 << 20,
            metrics_port: None,
            remoting_port: None,
            remoting_port_fallback: false,
            metrics_lag_alert_threshold: 100_000,
            metrics_replication_stall_secs: 30,
            acl_enabled: false,
            acl_file: "conf/acl.toml".into(),
            access_key: None,
            secret_key: None,
            tls_mode: crate::tls::TlsMode::Disabled,
            tls_cert_file: None,
            tls_key_file: None,
            tls_ca_file: None,
            tls_client_ca_file: None,
            tls_client_cert_file: None,
            tls_client_key_file: None,
            enable_controller_mode: false,
            controller_addr: String::new(),
            controller_heartbeat_interval_ms: 500,
            ha_max_gap_bytes: 256 << 20,
            ha_max_time_slave_not_catchup_ms: 15_000,
            in_sync_ack: false,
            min_in_sync_replicas: 1,
            outgoing_tls: None,
            controller_view: None,
        }
    }
}

/// `HOST:PORT` with a port from 1 to 65535 and a host (a name or an
/// address; `[v6]:PORT` too). Names are resolved when used, not here.
fn check_host_port(addr: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("'{addr}' is not HOST:PORT ({why})"));
    let Some((host, port)) = addr.rsplit_once(':') else {
        return bad("no port");
    };
    if host.is_empty() || host.chars().any(char::is_whitespace) {
        return bad("no host");
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => bad("the port must be a number from 1 to 65535"),
    }
}

impl BrokerConfig {
    /// Refuses settings the broker could start with but not work with, so
    /// that the start fails before the broker binds or registers.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=1024).contains(&self.default_topic_queues) {
            return Err(format!(
                "default_topic_queues must be a whole number from 1 to 1024, not {}",
                self.default_topic_queues
            ));
        }
        crate::scheduler::levels::parse_delay_levels(&self.delay_levels)
            .map_err(|e| format!("delay_levels: {e}"))?;
        for addr in self.namesrv_addrs() {
            check_host_port(&addr).map_err(|why| format!("namesrv: {why}"))?;
            if self.registers_with_itself(&addr) {
                return Err(format!(
                    "port {} is also the port of the NameServer this broker registers with (namesrv = \"{}\"): a broker cannot be its own NameServer. A NameServer's file is run with `skylark namesrv -c FILE`; a broker's needs another port (RocketMQ's is 10911)",
                    self.port, self.namesrv
                ));
            }
        }
        if self.write_high_water_bytes < self.write_low_water_bytes {
            return Err(format!(
                "write_high_water_bytes ({}) is below write_low_water_bytes ({}): a connection paused at the high mark would resume at once, so its back-pressure would never hold",
                self.write_high_water_bytes, self.write_low_water_bytes
            ));
        }
        if self.store.max_message_size.saturating_add(64 * 1024) > self.max_frame_size {
            return Err(format!(
                "store.max_message_size ({}) does not fit a frame of max_frame_size ({}) with room for its headers (64 KiB): such messages could never be sent",
                self.store.max_message_size, self.max_frame_size
            ));
        }
        self.check_ports_distinct()?;
        if self.enable_controller_mode {
            if self.controller_heartbeat_interval_ms == 0 {
                return Err("controller_heartbeat_interval_ms must be positive (milliseconds between this broker's heartbeats to the controller; default 500)".into());
            }
            if self.min_in_sync_replicas == 0 {
                return Err("min_in_sync_replicas must be at least 1: the in-sync set always holds the master itself (default 1)".into());
            }
        }
        self.store.validate().map_err(|e| match e {
            crate::message_store::StoreError::InvalidConfig(why) => format!("store: {why}"),
            other => other.to_string(),
        })
    }

    /// The client, HA and remoting ports set to one number: the second
    /// listener could never bind.
    fn check_ports_distinct(&self) -> Result<(), String> {
        let ports = [
            ("port", Some(self.port)),
            ("ha_port", self.ha_port),
            ("remoting_port", self.remoting_port),
        ];
        for (i, (a, pa)) in ports.iter().enumerate() {
            for (b, pb) in &ports[i + 1..] {
                if let (Some(pa), Some(pb)) = (pa, pb) {
                    if *pa != 0 && pa == pb {
                        return Err(format!(
                            "{a} and {b} are both {pa}: each listener needs its own port"
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether NameServer address `addr` (HOST:PORT) is this broker's own
    /// port on this machine: a copy of a NameServer's file without its
    /// `role` (`port = 9876`) would start a broker there, registering
    /// with itself.
    fn registers_with_itself(&self, addr: &str) -> bool {
        let Some((host, port)) = addr.rsplit_once(':') else {
            return false;
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let local = ["127.0.0.1", "localhost", "::1", "0.0.0.0", "::"].contains(&host)
            || host == self.listen_host
            || self
                .advertised_addr
                .as_deref()
                .is_some_and(|a| a.rsplit_once(':').is_some_and(|(h, _)| h == host));
        self.port != 0 && port.parse() == Ok(self.port) && local
    }

    /// The NameServer addresses, split on `;` (and `,`), blanks removed.
    pub fn namesrv_addrs(&self) -> Vec<String> {
        split_addrs(&self.namesrv)
    }
    /// The effective role: a broker id > 0 is a slave whatever `broker_role` says.
    pub fn role(&self) -> BrokerRole {
        if self.broker_id > 0 {
            BrokerRole::Slave
        } else {
            self.broker_role
        }
    }
    /// Whether this broker replicates from a master (and refuses sends).
    pub fn is_slave(&self) -> bool {
        self.role() == BrokerRole::Slave
    }
    /// The HA port to bind (0 = ephemeral).
    pub fn ha_bind_port(&self) -> u16 {
        match self.ha_port {
            Some(p) => p,
            None if self.port == 0 => 0,
            None => self.port.saturating_add(1),
        }
    }
    /// The HA address published to NameServers (masters only, once bound).
    pub fn ha_advertised(&self) -> Option<String> {
        if self.is_slave() {
            return None;
        }
        let host = self.advertised_host();
        self.ha_port.map(|p| format!("{host}:{p}"))
    }
    /// The credential this broker signs its own requests with, if set.
    pub fn credentials(&self) -> Option<std::sync::Arc<skylark_codec::Credentials>> {
        crate::acl::own_credentials(&self.access_key, &self.secret_key)
    }
    /// The TLS of this broker's own connections (to NameServers and its
    /// master): `None` without `tls_ca_file`.
    pub fn load_outgoing_tls(&self) -> Result<Option<crate::tls::ClientTls>, String> {
        crate::tls::outgoing(
            self.tls_ca_file.as_deref(),
            [&self.tls_client_cert_file, &self.tls_client_key_file],
            [&self.tls_cert_file, &self.tls_key_file],
        )
    }
    /// A connection to a NameServer or the master, signed and over TLS as
    /// configured.
    pub async fn connect_peer(
        &self,
        addr: &str,
    ) -> Result<crate::remoting::RpcClient, skylark_codec::ProtocolError> {
        let c = crate::remoting::RpcClient::connect_tls(
            addr,
            Duration::from_secs(3),
            skylark_codec::DEFAULT_MAX_FRAME_SIZE,
            self.outgoing_tls.as_ref(),
        )
        .await?;
        Ok(c.with_credentials(self.credentials()))
    }
    /// The address published to NameServers and written into message ids
    /// (and, with their ports, the HA and RocketMQ remoting addresses):
    /// `advertised_addr`, else [`Self::advertised_host`] with `port`.
    pub fn advertised(&self) -> String {
        self.advertised_addr
            .clone()
            .unwrap_or_else(|| format!("{}:{}", self.advertised_host(), self.port))
    }

    /// The RocketMQ remoting address published to the NameServers: the
    /// advertised host with `remoting_port`, if that is set.
    pub fn remoting_advertised(&self) -> Option<String> {
        let host = self.advertised_host();
        self.remoting_port.map(|p| format!("{host}:{p}"))
    }

    /// The host part of the advertised address (`[v6]` bracketed):
    /// `advertised_addr`'s; without one `listen_host`, or, when that is
    /// every address (`0.0.0.0`, `::`), [`Self::every_address_advertises`]
    /// — a client given `0.0.0.0` would connect to itself.
    fn advertised_host(&self) -> String {
        if let Some((host, _)) = self
            .advertised_addr
            .as_deref()
            .and_then(|a| a.rsplit_once(':'))
        {
            return host.to_string();
        }
        match self.every_address_advertises() {
            Some(h) => bracketed(&h.ip().to_string()),
            None => bracketed(&self.listen_host),
        }
    }

    /// The host advertised instead of `listen_host` when that is every
    /// address (`0.0.0.0`, `::`) and `advertised_addr` is not set; `None`
    /// otherwise. RocketMQ's broker does the same (brokerIP1 defaults to
    /// a local address): the address this machine sends from to a public
    /// address ([`LocalHost::Found`]), else 127.0.0.1
    /// ([`LocalHost::Loopback`], reachable from this machine only).
    pub fn every_address_advertises(&self) -> Option<LocalHost> {
        if self.advertised_addr.is_some() {
            return None;
        }
        let host = self
            .listen_host
            .trim_start_matches('[')
            .trim_end_matches(']');
        let ip: std::net::IpAddr = host.parse().ok()?;
        if !ip.is_unspecified() {
            return None;
        }
        Some(local_host(ip.is_ipv6()))
    }
}

/// What a broker listening on every address advertises
/// ([`BrokerConfig::every_address_advertises`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalHost {
    /// The address this machine sends from to other hosts.
    Found(std::net::IpAddr),
    /// No such address (no route off this machine): 127.0.0.1.
    Loopback(std::net::IpAddr),
}

impl LocalHost {
    /// The address advertised.
    pub fn ip(self) -> std::net::IpAddr {
        match self {
            LocalHost::Found(ip) | LocalHost::Loopback(ip) => ip,
        }
    }
}

/// This machine's address towards other hosts, looked up once per process
/// (it is on the path of every registration): the source address the
/// kernel picks for a UDP socket connected to a public address (connecting
/// a UDP socket sends nothing). IPv4 first; an IPv6 one only for a broker
/// on `::`, which also accepts IPv4.
fn local_host(v6_listener: bool) -> LocalHost {
    use std::net::{IpAddr, Ipv4Addr, UdpSocket};
    use std::sync::OnceLock;
    fn source(bind: &str, public: &str) -> Option<IpAddr> {
        let s = UdpSocket::bind(bind).ok()?;
        s.connect(public).ok()?;
        let ip = s.local_addr().ok()?.ip();
        (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
    }
    static V4: OnceLock<Option<IpAddr>> = OnceLock::new();
    static V6: OnceLock<Option<IpAddr>> = OnceLock::new();
    let v4 = *V4.get_or_init(|| source("0.0.0.0:0", "8.8.8.8:53"));
    let v6 = || *V6.get_or_init(|| source("[::]:0", "[2001:4860:4860::8888]:53"));
    match v4.or_else(|| if v6_listener { v6() } else { None }) {
        Some(ip) => LocalHost::Found(ip),
        None => LocalHost::Loopback(IpAddr::V4(Ipv4Addr::LOCALHOST)),
    }
}

/// `host` as the host part of `HOST:PORT`: an IPv6 address in brackets.
pub fn bracketed(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// Splits `a:1;b:2` (or comma separated) into addresses.
pub fn split_addrs(s: &str) -> Vec<String> {
    s.split([';', ','])
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(String::from)
        .collect()
}

/// The connection limits of a listener, from a configuration's keys.
macro_rules! serve_options {
    ($c:expr, $max_inflight:expr, $listener:expr) => {
        crate::remoting::server::ServeOptions {
            limits: crate::remoting::connection::FlowLimits {
                max_frame_size: $c.max_frame_size,
                max_inflight: $max_inflight,
                inflight_high_water: $c.inflight_high_water.max(1),
                inflight_low_water: $c.inflight_low_water.min($c.inflight_high_water),
                write_high_water_bytes: $c.write_high_water_bytes.max(1),
                write_low_water_bytes: $c.write_low_water_bytes.min($c.write_high_water_bytes),
                buffered_answer_budget: $c.buffered_answer_budget_bytes.max(1),
                incomplete_frame_budget: $c.incomplete_frame_budget_bytes.max(1),
                frame_read_timeout: Duration::from_millis($c.frame_read_timeout_ms.max(1)),
                idle_timeout: Duration::from_secs($c.connection_idle_secs.max(1)),
                ..Default::default()
            },
            max_connections: $c.max_connections.max(1),
            fd_reserve: $c.fd_reserve,
            listener: $listener,
        }
    };
}

impl NameServerConfig {
    /// Limits of the NameServer's listener.
    pub fn serve_options(&self) -> crate::remoting::server::ServeOptions {
        serve_options!(self, 1024, crate::metrics::Listener::NameServer)
    }
}

impl BrokerConfig {
    /// Limits of the broker's client listener.
    pub fn serve_options(&self) -> crate::remoting::server::ServeOptions {
        serve_options!(
            self,
            self.max_inflight_per_connection.max(1),
            crate::metrics::Listener::Broker
        )
    }
}

#[cfg(test)]
mod validate_tests {
    use super::*;

    fn refusal(c: BrokerConfig) -> String {
        c.validate().expect_err("must be refused")
    }

    #[test]
    fn one_port_for_two_listeners_is_refused() {
        let e = refusal(BrokerConfig {
            port: 10911,
            ha_port: Some(10911),
            ..BrokerConfig::default()
        });
        assert!(e.contains("port and ha_port are both 10911"), "{e}");
        let e = refusal(BrokerConfig {
            ha_port: Some(9000),
            remoting_port: Some(9000),
            ..BrokerConfig::default()
        });
        assert!(e.contains("ha_port and remoting_port"), "{e}");
        // Ephemeral ports (0) do not clash.
        BrokerConfig {
            port: 0,
            ha_port: Some(0),
            ..BrokerConfig::default()
        }
        .validate()
        .unwrap();
    }

    #[test]
    fn controller_mode_values_that_cannot_work_are_refused() {
        let controller = || BrokerConfig {
            enable_controller_mode: true,
            controller_addr: "127.0.0.1:9878".into(),
            ..BrokerConfig::default()
        };
        controller().validate().unwrap();
        let e = refusal(BrokerConfig {
            min_in_sync_replicas: 0,
            ..controller()
        });
        assert!(e.contains("min_in_sync_replicas must be at least 1"), "{e}");
        let e = refusal(BrokerConfig {
            controller_heartbeat_interval_ms: 0,
            ..controller()
        });
        assert!(e.contains("controller_heartbeat_interval_ms"), "{e}");
    }
}

#[cfg(test)]
mod advertised_tests {
    use super::*;

    fn broker(listen_host: &str, advertised_addr: Option<&str>) -> BrokerConfig {
        BrokerConfig {
            listen_host: listen_host.into(),
            port: 10911,
            ha_port: Some(10912),
            remoting_port: Some(9887),
            advertised_addr: advertised_addr.map(str::to_string),
            ..BrokerConfig::default()
        }
    }

    /// On every address, the message ids, the registration, the HA and the
    /// remoting address all name one real host of this machine.
    #[test]
    fn a_broker_on_every_address_advertises_one_address_of_this_machine() {
        for any in ["0.0.0.0", "::", "[::]"] {
            let c = broker(any, None);
            let host = c.every_address_advertises().expect(any).ip();
            assert!(!host.is_unspecified(), "{any}: {host}");
            let host = bracketed(&host.to_string());
            assert_eq!(c.advertised(), format!("{host}:10911"), "{any}");
            assert_eq!(c.ha_advertised(), Some(format!("{host}:10912")), "{any}");
            assert_eq!(c.remoting_advertised(), Some(format!("{host}:9887")));
            c.advertised()
                .parse::<std::net::SocketAddr>()
                .expect("a message id's store host");
        }
    }

    #[test]
    fn advertised_addr_or_a_specific_listen_host_is_advertised_as_it_is() {
        let c = broker("0.0.0.0", Some("10.0.0.5:10911"));
        assert_eq!(c.every_address_advertises(), None);
        assert_eq!(c.advertised(), "10.0.0.5:10911");
        assert_eq!(c.ha_advertised().as_deref(), Some("10.0.0.5:10912"));
        let c = broker("127.0.0.1", None);
        assert_eq!(c.every_address_advertises(), None);
        assert_eq!(c.advertised(), "127.0.0.1:10911");
        assert_eq!(broker("::1", None).advertised(), "[::1]:10911");
    }
}
