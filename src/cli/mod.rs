//! The `skylark` command line (README "Command line", docs/architecture.md):
//! a contract scripts depend on.
//!
//! Server commands (`standalone`, `namesrv`, `broker`) live in [`server`];
//! client commands in [`produce`], [`consume`], [`admin`] and [`bench`].
//! Every failure exits non-zero with a one-line reason on stderr.
//!
//! Exit status: 0 success; 1 failure (the reason on stderr); 2 bad usage
//! (clap's own); [`EXIT_SEND_NOT_OK`] (3) when `produce` had a message
//! stored but not as asked — a send status other than `SendOk`
//! (`FlushDiskTimeout`, `FlushSlaveTimeout`, `SlaveNotAvailable`) — unless
//! `--accept-status` was given.

/// `eprintln!` that cannot panic: a line on stderr, dropped when stderr is
/// a closed pipe (`skylark produce ... 2>&1 | head -1`); `eprintln!` would
/// panic there, and a failing command must exit with its own code.
macro_rules! note {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}

pub mod admin;
pub mod admin_broker;
pub mod admin_delay;
pub mod admin_group;
pub mod admin_ops;
pub mod admin_query;
pub mod admin_topic;
pub mod bench;
pub mod consume;
pub mod controller;
pub mod produce;
pub mod produce_tx;
pub mod server;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// Exit status of `produce` when the broker stored a message but answered a
/// send status other than `SendOk` (not flushed / not replicated as the
/// broker's role promises) and `--accept-status` was not given.
pub const EXIT_SEND_NOT_OK: i32 = 3;

/// A failure that asks for a specific exit status (see the module doc);
/// `main` prints it as `error: ...` and exits with `code`.
#[derive(Debug)]
pub struct ExitError {
    /// Process exit status.
    pub code: i32,
    /// The reason, printed on stderr.
    pub message: String,
}

impl std::fmt::Display for ExitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ExitError {}

/// A count within `LO..=HI`: the counts that size memory or threads up
/// front (a batch is built whole, each in-flight slot and client holds
/// buffers), so an absurd value is a usage error, not an abort.
fn within<const LO: usize, const HI: usize>(s: &str) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|e| format!("{e}"))?;
    if (LO..=HI).contains(&n) {
        Ok(n)
    } else {
        Err(format!("{n} is not within {LO}..={HI}"))
    }
}

/// A Unix time in milliseconds: before 1970 it was taken as 0 or "now"
/// without a word.
pub(crate) fn unix_millis(s: &str) -> Result<i64, String> {
    let n: i64 = s.parse().map_err(|e| format!("{e}"))?;
    if n < 0 {
        return Err(format!(
            "{n} is before 1970: give a Unix time in milliseconds (0 or more)"
        ));
    }
    Ok(n)
}

/// The process exit status for a command's error: [`ExitError::code`] if it
/// carries one, else 1.
pub fn exit_code(e: &anyhow::Error) -> i32 {
    e.downcast_ref::<ExitError>().map_or(1, |x| x.code)
}

/// Runs a client command's future on a fresh actix `System`, and gives the
/// actors it spawned a turn before the runtime goes.
///
/// Why: `Producer::start` and friends spawn actors (a `ClientInstance`, a
/// `TransactionChecker`) whose `started` arms `run_interval` timers. An
/// actor spawned but never polled (e.g. `produce --count 0`, which awaits
/// nothing) is still unstarted when `block_on` returns; dropping the
/// runtime then drops its task, and actix's context, on drop, polls it once
/// so it can stop — which runs `started` for the first time, outside any
/// Tokio runtime, and panics ("there is no reactor running"). Yielding to
/// the local task set here lets every such actor start (and its timers bind
/// to the live runtime), so they are torn down quietly with the runtime.
pub fn block_on<F>(fut: F) -> anyhow::Result<()>
where
    F: std::future::Future<Output = anyhow::Result<()>>,
{
    actix::System::new().block_on(async move {
        let r = fut.await;
        settle().await;
        r
    })
}

/// Refuses a client command whose stdout is closed (`>&-`). A Rust
/// program started with descriptor 1 closed finds it open on `/dev/null`
/// (the runtime reopens closed standard descriptors, read-write), so
/// `consume` committed the offsets of messages it printed nowhere and
/// `produce` printed no acknowledgement, both exiting 0. A shell's
/// `> /dev/null` opens it write-only, and stays allowed.
pub fn require_stdout() -> anyhow::Result<()> {
    // SAFETY: fstat and F_GETFL only read descriptor 1's state into a
    // zeroed struct of the right type.
    let reopened = unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        let null = libc::fstat(1, &mut st) == 0
            && (st.st_mode & libc::S_IFMT) == libc::S_IFCHR
            && st.st_rdev == libc::makedev(1, 3);
        let flags = libc::fcntl(1, libc::F_GETFL);
        null && flags != -1 && (flags & libc::O_ACCMODE) == libc::O_RDWR
    };
    if reopened {
        anyhow::bail!("stdout is closed: this command prints its results there (send them to /dev/null to discard them)");
    }
    Ok(())
}

/// `--instance`: one path component, since it names a directory of the
/// local offset files (`~/.skylark_offsets/<instance>/`).
fn instance_name(s: &str) -> Result<String, String> {
    let bad = s.is_empty()
        || s == "."
        || s == ".."
        || s.len() > 255
        || s.chars().any(|c| c == '/' || c == '\\' || c.is_control());
    if bad {
        return Err(format!(
            "{s:?} is not an instance name: give one path component (letters, digits, '-', '_', '.'; not '.' or '..', no '/'), at most 255 bytes"
        ));
    }
    Ok(s.to_string())
}

/// Yields to the local task set until actors spawned by the command (and
/// those they spawn in `started`) have been polled once.
async fn settle() {
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
}

/// A progress bar on stderr for long runs, drawn only when stderr is a
/// terminal (hidden when piped, so scripts see clean output).
pub fn progress_bar(len: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} ({per_sec})")
    {
        bar.set_style(style);
    }
    bar
}

/// The ACL credentials given on the command line, for every client command.
static CREDENTIALS: std::sync::OnceLock<skylark_codec::Credentials> = std::sync::OnceLock::new();
/// The `--tls-ca` of the command line, loaded.
static TLS: std::sync::OnceLock<skylark_actors::tls::ClientTls> = std::sync::OnceLock::new();

/// Loads `--tls-ca` (and `--tls-cert`/`--tls-key`) for [`client_config`].
pub fn set_tls_ca(
    ca_file: Option<&str>,
    cert_file: Option<&str>,
    key_file: Option<&str>,
) -> anyhow::Result<()> {
    let identity = match (cert_file, key_file) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => anyhow::bail!(
            "--tls-cert and --tls-key (SKYLARK_TLS_CERT / SKYLARK_TLS_KEY) go together"
        ),
    };
    let Some(f) = ca_file else {
        if identity.is_some() {
            anyhow::bail!("--tls-cert needs --tls-ca (SKYLARK_TLS_CA): a client certificate is sent over TLS only");
        }
        return Ok(());
    };
    let mut tls = skylark_actors::tls::ClientTls::from_ca_file(f).map_err(anyhow::Error::msg)?;
    if let Some((c, k)) = identity {
        tls = tls.with_client_cert(c, k).map_err(anyhow::Error::msg)?;
    }
    let _ = TLS.set(tls);
    Ok(())
}

/// The command line's credentials (`--access-key/--secret-key`), if given.
pub fn credentials() -> Option<&'static skylark_codec::Credentials> {
    CREDENTIALS.get()
}

/// Remembers `--access-key/--secret-key` for [`client_config`]; both or
/// neither must be given.
pub fn set_credentials(
    access_key: Option<String>,
    secret_key: Option<String>,
) -> anyhow::Result<()> {
    match (access_key, secret_key) {
        (Some(a), Some(s)) => {
            let _ = CREDENTIALS.set(skylark_codec::Credentials::new(a, s));
            Ok(())
        }
        (None, None) => Ok(()),
        _ => anyhow::bail!(
            "--access-key and --secret-key (SKYLARK_ACCESS_KEY / SKYLARK_SECRET_KEY) go together"
        ),
    }
}

/// The global security flags as a server subcommand takes them: settings
/// of the server itself (its own account, the CA it verifies the servers
/// it dials against, the certificate it presents), winning over its file
/// and environment like its other flags (docs/security.md).
#[derive(Debug, Default)]
pub struct ServerFlags {
    /// `--access-key`/`--secret-key` (or `SKYLARK_ACCESS_KEY` /
    /// `SKYLARK_SECRET_KEY`, which are the servers' own environment keys).
    pub credentials: Option<(String, String)>,
    /// `--tls-ca`, `--tls-cert`, `--tls-key` when typed on the command
    /// line: their environment variables are a client's, and a server's
    /// are `SKYLARK_TLS_CA_FILE`, ... .
    pub tls: [Option<String>; 3],
}

impl ServerFlags {
    /// The flags as configuration overrides of `skylark {server}`:
    /// `tls_keys` are the keys the three TLS flags set, `None` when the
    /// server dials nothing over TLS (the flags are then refused).
    pub fn overrides(
        &self,
        server: &str,
        tls_keys: Option<[&'static str; 3]>,
    ) -> anyhow::Result<Vec<(&'static str, config::Value)>> {
        const FLAGS: [&str; 3] = ["--tls-ca", "--tls-cert", "--tls-key"];
        let mut o = Vec::new();
        if let Some((a, s)) = &self.credentials {
            o.push(("access_key", config::Value::from(a.clone())));
            o.push(("secret_key", config::Value::from(s.clone())));
        }
        for (flag, (v, key)) in FLAGS.iter().zip(self.tls.iter().zip(0..)) {
            let Some(v) = v else { continue };
            match tls_keys {
                Some(keys) => o.push((keys[key], config::Value::from(v.clone()))),
                None => anyhow::bail!(
                    "{flag} is not a setting of `skylark {server}`: it dials no server over TLS \
                     (its own TLS is tls_mode, tls_cert_file and tls_key_file in its file)"
                ),
            }
        }
        Ok(o)
    }
}

/// The keys `--tls-ca`, `--tls-cert` and `--tls-key` set on a server
/// that dials others over TLS: a broker (its NameServers and master) and a
/// NameServer (its dashboard's connections to brokers).
pub const OUTGOING_TLS_KEYS: [&str; 3] =
    ["tls_ca_file", "tls_client_cert_file", "tls_client_key_file"];

/// The client configuration of a CLI command: these NameServers, signed
/// with the command line's credentials if any.
pub fn client_config(namesrv: &str) -> crate::client::ClientConfig {
    let mut c = crate::client::ClientConfig::new(namesrv);
    c.credentials = CREDENTIALS.get().cloned().map(std::sync::Arc::new);
    c.tls = TLS.get().cloned();
    c.route_wait_notice = Some(crate::client::RouteWaitNotice::new(|topic, wait| {
        note!(
            "waiting up to {} ms for a route of topic '{topic}' (no broker has registered it with the NameServer yet)",
            wait.as_millis()
        );
    }));
    c
}

/// Skylark: a distributed message broker in the family of Apache RocketMQ.
#[derive(Debug, Parser)]
#[command(name = "skylark", version, about, propagate_version = true)]
pub struct Cli {
    /// Log level: error, warn, info, debug, trace, off.
    #[arg(long, global = true, env = "SKYLARK_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true)]
    pub log_json: bool,
    /// ACL access key every client request is signed with (docs/security.md).
    #[arg(long, global = true, env = "SKYLARK_ACCESS_KEY")]
    pub access_key: Option<String>,
    /// ACL secret key (prefer the environment variable: flags show in `ps`).
    #[arg(
        long,
        global = true,
        env = "SKYLARK_SECRET_KEY",
        hide_env_values = true
    )]
    pub secret_key: Option<String>,
    /// Connect to NameServers and brokers over TLS, verifying them against
    /// the CA certificates in this PEM file.
    #[arg(long, global = true, env = "SKYLARK_TLS_CA")]
    pub tls_ca: Option<String>,
    /// Client certificate chain (PEM) presented to servers that require
    /// one (mutual TLS); with --tls-key and --tls-ca.
    #[arg(long, global = true, env = "SKYLARK_TLS_CERT")]
    pub tls_cert: Option<String>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, global = true, env = "SKYLARK_TLS_KEY")]
    pub tls_key: Option<String>,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run a NameServer and a Broker in one process (embedded defaults).
    Standalone(StandaloneArgs),
    /// Run a NameServer.
    Namesrv(NamesrvArgs),
    /// Run a Broker.
    Broker(BrokerArgs),
    /// Run one controller of the failover group (openraft; docs/controller.md).
    Controller(controller::ControllerArgs),
    /// Send messages.
    Produce(ProduceArgs),
    /// Receive messages.
    Consume(ConsumeArgs),
    /// Administer topics, groups, offsets and the cluster.
    Admin(AdminArgs),
    /// Measure throughput and latency against a running cluster.
    Bench(BenchArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FlushArg {
    Async,
    Sync,
}

impl FlushArg {
    pub fn as_str(self) -> &'static str {
        match self {
            FlushArg::Async => "async",
            FlushArg::Sync => "sync",
        }
    }
}

#[derive(Debug, Args)]
pub struct StandaloneArgs {
    /// Broker configuration file (the [store] and broker keys of
    /// conf/broker.toml; its `namesrv` is ignored: the broker registers
    /// with this process's NameServer). A flag wins over the file and the
    /// SKYLARK_* environment, which win over standalone's defaults.
    #[arg(short = 'c', long = "config")]
    pub config: Option<PathBuf>,
    /// Data directory [default: the file's or environment's
    /// `[store] data_dir`, else ./data/standalone].
    #[arg(long)]
    pub data_dir: Option<String>,
    /// NameServer port.
    #[arg(long, default_value_t = 9876)]
    pub namesrv_port: u16,
    /// Broker port [default: the file's or environment's `port`, else 10911].
    #[arg(long)]
    pub broker_port: Option<u16>,
    /// Address the NameServer and the broker listen on [default: the
    /// file's or environment's `listen_host`, else 127.0.0.1]. On 0.0.0.0
    /// the broker advertises this machine's address unless
    /// `advertised_addr` is set.
    #[arg(long)]
    pub host: Option<String>,
    /// async: flush on an interval; sync: every acknowledged send is on disk.
    #[arg(long, value_enum)]
    pub flush: Option<FlushArg>,
    /// Serve Prometheus metrics (GET /metrics) on this port [default: 5557,
    /// skipped with a warning when taken; a port given here must be free].
    #[arg(long, conflicts_with = "no_metrics")]
    pub metrics_port: Option<u16>,
    /// Do not serve metrics.
    #[arg(long)]
    pub no_metrics: bool,
    /// Web dashboard port (docs/dashboard.md). Default 8088, served only if
    /// that port is free; a port given here must be free.
    #[arg(long, conflicts_with = "no_dashboard")]
    pub dashboard_port: Option<u16>,
    /// Serve no dashboard.
    #[arg(long)]
    pub no_dashboard: bool,
    /// The dashboard alerts on a consumer group lagging above this many messages.
    #[arg(long, default_value_t = 10_000)]
    pub dashboard_lag_alert: u64,
    /// NameServer port for unmodified RocketMQ clients (RocketMQ remoting
    /// protocol, docs/rocketmq-compat.md). Default 9886, served only if that
    /// port is free; a port given here must be free.
    #[arg(long, conflicts_with = "no_remoting")]
    pub namesrv_remoting_port: Option<u16>,
    /// Broker port for unmodified RocketMQ clients (the routes they get
    /// name it). Default 9887, or an ephemeral port when that one is taken;
    /// a port given here must be free.
    #[arg(long, conflicts_with = "no_remoting")]
    pub broker_remoting_port: Option<u16>,
    /// Serve no RocketMQ remoting port.
    #[arg(long)]
    pub no_remoting: bool,
}

#[derive(Debug, Args)]
pub struct NamesrvArgs {
    /// Configuration file (conf/namesrv.toml).
    #[arg(short = 'c', long = "config")]
    pub config: Option<PathBuf>,
    /// Port to listen on.
    #[arg(long)]
    pub port: Option<u16>,
    /// Address to listen on.
    #[arg(long)]
    pub host: Option<String>,
}

#[derive(Debug, Args)]
pub struct BrokerArgs {
    /// Configuration file (conf/broker.toml).
    #[arg(short = 'c', long = "config")]
    pub config: Option<PathBuf>,
    /// NameServer addresses, HOST:PORT separated by ';'.
    #[arg(long)]
    pub namesrv: Option<String>,
    /// Data directory.
    #[arg(long)]
    pub data_dir: Option<String>,
    /// Port to listen on.
    #[arg(long)]
    pub port: Option<u16>,
    /// Address to listen on.
    #[arg(long)]
    pub host: Option<String>,
    /// async: flush on an interval; sync: every acknowledged send is on disk.
    #[arg(long, value_enum)]
    pub flush: Option<FlushArg>,
}

#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// NameServer address(es).
    #[arg(long, env = "SKYLARK_NAMESRV")]
    pub namesrv: String,
    /// Topic to send to.
    #[arg(long)]
    pub topic: String,
    /// Number of messages.
    #[arg(long, default_value_t = 1)]
    pub count: u64,
    /// Body size in bytes (random printable body).
    #[arg(long, conflicts_with = "body")]
    pub size: Option<usize>,
    /// Body text (a message index is appended when --count > 1 unless --exact-body).
    #[arg(long)]
    pub body: Option<String>,
    /// Tag.
    #[arg(long)]
    pub tag: Option<String>,
    /// Key(s), space separated.
    #[arg(long)]
    pub key: Option<String>,
    /// RocketMQ delay level (1..=18).
    #[arg(long, conflicts_with_all = ["delay_ms", "deliver_at"])]
    pub delay_level: Option<u32>,
    /// Deliver after this many milliseconds (brokers accept up to their
    /// max_delay_ms, 3 days by default; one whose delivery time would not
    /// fit in a Unix time in milliseconds is a usage error).
    #[arg(long, conflicts_with = "deliver_at", value_parser = produce::parse_delay_ms)]
    pub delay_ms: Option<u64>,
    /// Deliver at this Unix time in milliseconds.
    #[arg(long, value_parser = unix_millis)]
    pub deliver_at: Option<i64>,
    /// Messages with the same order key go to the same queue, in order.
    #[arg(long)]
    pub order_key: Option<String>,
    /// Messages per batch send.
    #[arg(long, default_value_t = 1, value_parser = within::<1, 10_000>)]
    pub batch: usize,
    /// Producer group.
    #[arg(long, default_value = "skylark-cli-producer")]
    pub group: String,
    /// Send --body as is, without the "-{i}" suffix when --count > 1.
    #[arg(long, conflicts_with = "size")]
    pub exact_body: bool,
    /// User property NAME=VALUE (repeatable).
    #[arg(long = "property", value_name = "NAME=VALUE")]
    pub properties: Vec<String>,
    /// One JSON object per sent message on stdout (with --transaction and
    /// --linger-secs, also one per check-back answered: `check_msg_id`).
    #[arg(long)]
    pub json: bool,
    /// Exit 0 even when the broker answers a send status other than SendOk
    /// (FlushDiskTimeout, FlushSlaveTimeout, SlaveNotAvailable: stored, but
    /// not flushed or replicated as its role promises). Without it such a
    /// status stops the run with exit status 3 and the reason on stderr.
    #[arg(long)]
    pub accept_status: bool,
    /// Send transactional (half) messages; the local transaction decides this.
    #[arg(long, value_enum, conflicts_with_all = ["delay_level", "delay_ms", "deliver_at", "order_key", "batch"])]
    pub transaction: Option<produce_tx::TxStateArg>,
    /// With --transaction: the answer to the broker's check-backs.
    #[arg(long, value_enum, default_value = "unknown", requires = "transaction")]
    pub check_answer: produce_tx::TxStateArg,
    /// With --transaction: keep answering check-backs this many seconds.
    #[arg(long, default_value_t = 0, requires = "transaction")]
    pub linger_secs: u64,
}

/// Longest `consume --rebalance-interval-ms`: a year, the client's
/// [`MAX_DURATION`](crate::client::MAX_DURATION) (a longer timer period
/// would overflow the clock's arithmetic).
const MAX_REBALANCE_INTERVAL_MS: u64 = crate::client::MAX_DURATION.as_millis() as u64;

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// NameServer address(es).
    #[arg(long, env = "SKYLARK_NAMESRV")]
    pub namesrv: String,
    /// Consumer group.
    #[arg(long)]
    pub group: String,
    /// Topic to consume.
    #[arg(long)]
    pub topic: String,
    /// Tag filter, e.g. 'TagA || TagB' (a tag cannot contain '|').
    #[arg(long, conflicts_with = "sql")]
    pub filter: Option<String>,
    /// SQL-92 property filter.
    #[arg(long)]
    pub sql: Option<String>,
    /// Stop after this many messages.
    #[arg(long)]
    pub count: Option<u64>,
    /// Stop after this many seconds without a message.
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=31_536_000))]
    pub idle_timeout: Option<u64>,
    /// Every member of the group gets every message (offsets kept locally).
    #[arg(long)]
    pub broadcast: bool,
    /// Where a group with no committed offset starts: first, last or a Unix time in ms.
    #[arg(long, default_value = "first")]
    pub from: String,
    /// How the group's members split queues: average, average-by-circle,
    /// consistent-hash.
    #[arg(long, default_value = "average")]
    pub strategy: String,
    /// Periodic rebalance, in ms, from 1 to a year (members also rebalance
    /// at once when one joins or leaves). 0 is a usage error: it used to
    /// mean 10 ms without a word.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=MAX_REBALANCE_INTERVAL_MS))]
    pub rebalance_interval_ms: u64,
    /// Instance name: names the local offset file of a broadcast consumer.
    #[arg(long, default_value = "DEFAULT", requires = "broadcast", value_parser = instance_name)]
    pub instance: String,
    /// Local offset file of a broadcast consumer (overrides --instance).
    #[arg(long, requires = "broadcast")]
    pub offset_file: Option<String>,
    /// One JSON object per received message on stdout.
    #[arg(long)]
    pub json: bool,
    /// Consume each queue in order under a broker lock (RocketMQ's
    /// MessageListenerOrderly): one member per queue, messages in queue
    /// order; a failed message is retried in place, blocking its queue.
    #[arg(long)]
    pub orderly: bool,
    /// Fail every N-th delivery (answer Retry instead of consuming it), to
    /// watch the retry path: concurrent mode sends it back to
    /// %RETRY%<group> with the next delay level, and after
    /// --max-reconsume-times failures to %DLQ%<group>.
    #[arg(long, value_name = "N")]
    pub fail_every: Option<u64>,
    /// Fail every delivery whose body contains TEXT (it ends in %DLQ%<group>
    /// after --max-reconsume-times retries; broadcasting, it is dropped then).
    #[arg(long, value_name = "TEXT")]
    pub fail_on: Option<String>,
    /// Retries after which a failed message goes to %DLQ%<group>
    /// (RocketMQ's maxReconsumeTimes); broadcasting, after which it is
    /// dropped.
    #[arg(long, default_value_t = 16)]
    pub max_reconsume_times: u32,
}

#[derive(Debug, Args)]
pub struct AdminArgs {
    /// NameServer address(es).
    #[arg(long, env = "SKYLARK_NAMESRV")]
    pub namesrv: String,
    /// Print JSON.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub cmd: AdminCmd,
}

#[derive(Debug, Subcommand)]
pub enum AdminCmd {
    /// Topics.
    #[command(subcommand)]
    Topic(TopicCmd),
    /// The cluster.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Delayed messages (delay levels and timer).
    #[command(subcommand)]
    Delay(DelayCmd),
    /// Look messages up by key, id or time.
    #[command(subcommand)]
    Message(MessageCmd),
    /// A broker's live settings.
    #[command(subcommand)]
    Broker(BrokerCmd),
    /// Consumer groups: list, progress, delete.
    #[command(subcommand)]
    Group(GroupCmd),
    /// Consumer offsets: reset (backtrack) to a time.
    #[command(subcommand)]
    Offset(OffsetCmd),
    /// The failover controllers: status, elect.
    #[command(subcommand)]
    Controller(controller::ControllerCmd),
    /// Producer groups: their live connections.
    #[command(subcommand)]
    Producer(admin_ops::ProducerCmd),
}

#[derive(Debug, Subcommand)]
pub enum DelayCmd {
    /// Pending delayed messages per level and in the timer, per master.
    Stats {
        /// Only this broker (name or address; default: every master).
        #[arg(long)]
        broker: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum MessageCmd {
    /// Messages of a topic with a key (or unique id), through the brokers' index.
    ByKey(MessageByKeyArgs),
    /// The message with this id: an offset message id (as `produce --json`
    /// prints it) or its UNIQ_KEY (the producer's unique id).
    ById(MessageByIdArgs),
    /// Per queue, messages from the first one stored at or after a time.
    ByTime(MessageByTimeArgs),
    /// The message at a queue offset, with its properties (RocketMQ queryMsgByOffset).
    ByOffset(admin_ops::MessageByOffsetArgs),
}

#[derive(Debug, Args)]
pub struct MessageByKeyArgs {
    /// Topic.
    #[arg(long)]
    pub topic: String,
    /// The key (one of a message's keys, or its unique id).
    pub key: String,
    /// Earliest store time, ms since the epoch (default: 0).
    #[arg(long, value_parser = unix_millis)]
    pub begin: Option<i64>,
    /// Latest store time, ms since the epoch (default: now).
    #[arg(long, value_parser = unix_millis)]
    pub end: Option<i64>,
    /// At most this many messages per broker.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub max: u32,
}

#[derive(Debug, Args)]
pub struct MessageByIdArgs {
    /// Offset message id (hex; names the storing broker and the offset), or
    /// a UNIQ_KEY (the producer's unique id, looked up in the IndexFile).
    pub id: String,
    /// Look a UNIQ_KEY up in this topic only (default: every topic).
    #[arg(long)]
    pub topic: Option<String>,
}

#[derive(Debug, Args)]
pub struct MessageByTimeArgs {
    /// Topic.
    #[arg(long)]
    pub topic: String,
    /// Store time, ms since the epoch.
    #[arg(long, value_parser = unix_millis)]
    pub timestamp: i64,
    /// Messages printed per queue, from the first at or after the time.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_per_queue: u32,
}

#[derive(Debug, Subcommand)]
pub enum BrokerCmd {
    /// Live settings: `get` lists them, `set KEY VALUE` changes one.
    #[command(subcommand)]
    Config(BrokerConfigCmd),
    /// The whole broker's write permission: wipe-write, add-write.
    #[command(subcommand)]
    Perm(admin_ops::BrokerPermCmd),
    /// Runtime figures: put/get TPS, disk ratio, flush latency, CommitLog, recovery.
    Status(admin_ops::BrokerStatusArgs),
}

#[derive(Debug, Subcommand)]
pub enum BrokerConfigCmd {
    /// Every live setting and its value.
    Get(BrokerAddrArgs),
    /// Change one live setting (until the broker stops).
    Set(BrokerSetArgs),
}

#[derive(Debug, Args)]
pub struct BrokerAddrArgs {
    /// Only this broker (name or address; default: every master the NameServer knows).
    #[arg(long)]
    pub broker: Option<String>,
}

#[derive(Debug, Args)]
pub struct BrokerSetArgs {
    /// Setting name (see `broker config get`).
    pub key: String,
    /// New value.
    pub value: String,
    /// Only this broker (name or address; default: every master the NameServer knows).
    #[arg(long)]
    pub broker: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum GroupCmd {
    /// Every consumer group the brokers know.
    List,
    /// Per queue: broker max offset, committed offset, lag, last consumed time.
    Progress(GroupNameArgs),
    /// Forget a group's offsets, members and locks on every broker.
    Delete(GroupNameArgs),
    /// The group's settings: retry max, consume enable, broadcast (RocketMQ updateSubGroup).
    #[command(subcommand)]
    Config(admin_ops::GroupConfigCmd),
    /// The group's live members: client id, address, language, version, subscriptions.
    Connections(GroupNameArgs),
}

#[derive(Debug, Args)]
pub struct GroupNameArgs {
    /// Consumer group.
    #[arg(long)]
    pub group: String,
}

#[derive(Debug, Subcommand)]
pub enum OffsetCmd {
    /// Set the group's offsets of a topic to the first message stored at or
    /// after a time; live members re-read from there.
    Reset(OffsetResetArgs),
}

#[derive(Debug, Args)]
pub struct OffsetResetArgs {
    /// Consumer group.
    #[arg(long)]
    pub group: String,
    /// Topic.
    #[arg(long)]
    pub topic: String,
    /// Unix time in milliseconds.
    #[arg(long, value_parser = unix_millis)]
    pub timestamp: i64,
}

#[derive(Debug, Subcommand)]
pub enum TopicCmd {
    /// Create a topic on every master broker (refused where it exists).
    Create(TopicCreateArgs),
    /// Update an existing topic's queue counts / order flag; flags not
    /// given keep their current value.
    Update(TopicCreateArgs),
    /// Delete a topic.
    Delete(TopicNameArgs),
    /// Show a topic's route.
    Route(TopicNameArgs),
    /// Show a topic's per-queue min/max offsets on every master.
    Stats(TopicNameArgs),
    /// List topics.
    List,
    /// Set a topic's read/write permission (RocketMQ updateTopicPerm).
    Perm(admin_ops::TopicPermArgs),
}

#[derive(Debug, Args)]
pub struct TopicCreateArgs {
    /// Topic name.
    #[arg(long)]
    pub name: String,
    /// Read and write queue count (create: default 8; update: unchanged
    /// unless given).
    #[arg(long, conflicts_with_all = ["read_queues", "write_queues"])]
    pub queues: Option<u32>,
    /// Queues consumers read (RocketMQ's readQueueNums).
    #[arg(long)]
    pub read_queues: Option<u32>,
    /// Queues producers write (RocketMQ's writeQueueNums). To shrink a
    /// topic, lower this first, let consumers drain the queues above it,
    /// then lower --read-queues (docs/topics.md).
    #[arg(long)]
    pub write_queues: Option<u32>,
    /// Mark the topic as ordered.
    #[arg(long, conflicts_with = "no_order")]
    pub order: bool,
    /// Update: mark the topic as not ordered.
    #[arg(long)]
    pub no_order: bool,
    /// Only on this broker (name or address; default: every master the NameServer knows).
    #[arg(long)]
    pub broker: Option<String>,
}

#[derive(Debug, Args)]
pub struct TopicNameArgs {
    /// Topic name.
    #[arg(long)]
    pub name: String,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// Every broker group, its members and addresses.
    List,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchMode {
    Produce,
    Consume,
    E2e,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(value_enum)]
    pub mode: BenchMode,
    /// NameServer address(es).
    #[arg(long, env = "SKYLARK_NAMESRV")]
    pub namesrv: String,
    /// Topic.
    #[arg(long)]
    pub topic: String,
    /// Body size in bytes.
    #[arg(long, default_value_t = 128)]
    pub size: usize,
    /// Messages in total.
    #[arg(long, default_value_t = 1_000_000)]
    pub count: u64,
    /// Connections.
    #[arg(long, default_value_t = 1, value_parser = within::<1, 1024>)]
    pub clients: usize,
    /// Messages per send request.
    #[arg(long, default_value_t = 1, value_parser = within::<1, 10_000>)]
    pub batch: usize,
    /// Requests each client keeps awaiting an answer (default 1). With
    /// --rate, the most each client may have awaiting an answer (default:
    /// one second of its share of the rate, at most 1024).
    #[arg(long, value_parser = within::<1, 65_536>)]
    pub inflight: Option<usize>,
    /// Target total msgs/s, sent open-loop on a schedule; the run fails
    /// below 95% of it (0: as fast as possible, closed-loop).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Consumer group (consume / e2e).
    #[arg(long, default_value = "skylark-bench")]
    pub group: String,
    /// Print one final JSON object.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use super::{ServerFlags, OUTGOING_TLS_KEYS};

    #[test]
    fn server_flags_become_the_servers_keys_or_are_refused() {
        let flags = ServerFlags {
            credentials: Some(("broker".into(), "s".into())),
            tls: [Some("ca.pem".into()), None, Some("c.key".into())],
        };
        let expected = [
            "access_key",
            "secret_key",
            "tls_ca_file",
            "tls_client_key_file",
        ];
        // A broker and a NameServer (its dashboard dials brokers) take them.
        for server in ["broker", "namesrv"] {
            let keys: Vec<&str> = flags
                .overrides(server, Some(OUTGOING_TLS_KEYS))
                .unwrap()
                .into_iter()
                .map(|(k, _)| k)
                .collect();
            assert_eq!(keys, expected, "{server}");
        }
        let e = flags.overrides("controller", None).unwrap_err().to_string();
        assert!(
            e.contains("--tls-ca is not a setting of `skylark controller`"),
            "{e}"
        );
        let creds_only = ServerFlags {
            credentials: Some(("admin".into(), "s".into())),
            ..ServerFlags::default()
        };
        assert_eq!(creds_only.overrides("controller", None).unwrap().len(), 2);
    }
}
