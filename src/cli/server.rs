//! `skylark standalone | namesrv | broker`: load the configuration, start
//! the actors in an actix System, and shut down gracefully on SIGTERM or
//! Ctrl-C (stop accepting, answer what is in flight, flush, checkpoint,
//! unregister from the NameServers).

use anyhow::Context as _;
use config::Value;
use skylark_actors::config::{BrokerConfig, LocalHost, NameServerConfig};
use skylark_actors::namesrv::{dashboard, rocketmq};
use slog::{info, warn, Logger};

use super::{BrokerArgs, NamesrvArgs, ServerFlags, StandaloneArgs};
use crate::config::load;
use crate::embedded;

/// Runs a server future in a fresh actix System. When starting fails
/// half-way, the actors already spawned get polled once (they start and
/// see the System stopping) before the runtime is dropped, so a failed
/// start is an error message, never a panic in a half-torn-down runtime.
fn run_system<F>(fut: F) -> anyhow::Result<()>
where
    F: std::future::Future<Output = anyhow::Result<()>>,
{
    actix::System::new().block_on(async move {
        let r = fut.await;
        if r.is_err() {
            actix::System::current().stop();
            for _ in 0..8 {
                tokio::task::yield_now().await;
            }
        }
        r
    })
}

/// Waits for SIGTERM or Ctrl-C.
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn broker_overrides<'a>(
    data_dir: &Option<String>,
    port: Option<u16>,
    host: &Option<String>,
    flush: Option<super::FlushArg>,
    namesrv: &Option<String>,
) -> Vec<(&'a str, Value)> {
    let mut o: Vec<(&str, Value)> = Vec::new();
    if let Some(d) = data_dir {
        o.push(("store.data_dir", Value::from(d.clone())));
    }
    if let Some(p) = port {
        o.push(("port", Value::from(p as i64)));
    }
    if let Some(h) = host {
        o.push(("listen_host", Value::from(h.clone())));
    }
    if let Some(f) = flush {
        o.push(("store.flush_mode", Value::from(f.as_str())));
    }
    if let Some(n) = namesrv {
        o.push(("namesrv", Value::from(n.clone())));
    }
    o
}

/// The dashboard of `skylark standalone`: on `--dashboard-port`, else on
/// the default port when it is free (a warning when it is not, so several
/// standalone nodes can run on one host), or none with `--no-dashboard`.
fn standalone_dashboard(
    a: &StandaloneArgs,
    ncfg: &NameServerConfig,
    ns: &embedded::NameServerHandle,
    log: &Logger,
) -> anyhow::Result<Option<dashboard::DashboardHandle>> {
    if a.no_dashboard {
        return Ok(None);
    }
    let port = a.dashboard_port.unwrap_or(dashboard::STANDALONE_PORT);
    let cfg = dashboard::DashboardConfig::of(&NameServerConfig {
        dashboard_port: Some(port),
        dashboard_lag_alert: a.dashboard_lag_alert,
        ..ncfg.clone()
    });
    let Some(mut cfg) = cfg else { return Ok(None) };
    // It reads the broker as the broker reads its NameServer: over TLS
    // with the broker's CA and client certificate (standalone_namesrv_config).
    cfg.tls = ncfg.outgoing_tls().map_err(anyhow::Error::msg)?;
    match dashboard::start(cfg, ns.addr.clone(), log.clone()) {
        Ok(d) => {
            info!(log, "dashboard"; "url" => format!("http://{}/", d.local_addr));
            Ok(Some(d))
        }
        Err(e) if a.dashboard_port.is_none() => {
            warn!(log, "no dashboard: default port taken (use --dashboard-port)"; "error" => %e);
            Ok(None)
        }
        Err(e) => Err(anyhow::Error::new(e).context("cannot start the dashboard")),
    }
}

/// The RocketMQ remoting port of `skylark standalone`'s NameServer: on
/// `--namesrv-remoting-port`, else on the default port when it is free (a
/// warning when it is not), or none with `--no-remoting`.
async fn standalone_remoting(
    a: &StandaloneArgs,
    ncfg: &NameServerConfig,
    ns: &embedded::NameServerHandle,
    log: &Logger,
) -> anyhow::Result<Option<rocketmq::RemotingListenerHandle>> {
    if a.no_remoting {
        return Ok(None);
    }
    let port = a.namesrv_remoting_port.unwrap_or(rocketmq::STANDALONE_PORT);
    let limits = rocketmq::RemotingLimits::of(ncfg);
    let tls = ncfg.server_tls().map_err(anyhow::Error::msg)?;
    match rocketmq::start(
        &ncfg.listen_host,
        port,
        ns.addr.clone(),
        None,
        limits,
        tls,
        log.clone(),
    )
    .await
    {
        Ok(l) => Ok(Some(l)),
        Err(e) if a.namesrv_remoting_port.is_none() => {
            warn!(log, "no RocketMQ remoting port: default port taken (use --namesrv-remoting-port)"; "error" => %e);
            Ok(None)
        }
        Err(e) => Err(anyhow::Error::new(e).context("cannot start the RocketMQ remoting listener")),
    }
}

/// The broker configuration of `skylark standalone`: its defaults
/// ([`crate::config::standalone_broker_defaults`]) under the file, the
/// environment and the flags given. The broker registers with this
/// process's NameServer: a `namesrv` of the file or the environment is
/// ignored with a warning (a copy of conf/broker.toml names one, and
/// `SKYLARK_NAMESRV` is also the clients' variable, so refusing them would
/// refuse ordinary setups).
fn standalone_broker_config(
    a: &StandaloneArgs,
    flags: &ServerFlags,
    log: &Logger,
) -> anyhow::Result<BrokerConfig> {
    let mut o = broker_overrides(&a.data_dir, a.broker_port, &a.host, a.flush, &None);
    o.extend(flags.overrides("standalone", Some(super::OUTGOING_TLS_KEYS))?);
    let load = |store_sizes: bool| {
        let mut d = crate::config::standalone_broker_defaults(store_sizes);
        // Empty unless the file or the environment sets one.
        d.push(("namesrv", Value::from("")));
        crate::config::load_with_defaults::<BrokerConfig>(a.config.as_deref(), &d, &o)
    };
    let mut bcfg = load(true)?;
    // Laptop-sized store, except for a store made before these defaults
    // (1 GiB segments): its files' geometry is fixed, so it keeps
    // RocketMQ's sizes.
    if crate::config::has_rocketmq_sized_commit_log(&bcfg.store.data_dir) {
        bcfg = load(false)?;
    }
    let own = standalone_namesrv_addr(&bcfg.listen_host, a.namesrv_port);
    if !bcfg.namesrv.trim().is_empty() && bcfg.namesrv_addrs() != [own.clone()] {
        warn!(log, "namesrv of the configuration file or the environment ignored: the standalone broker registers with its own NameServer";
            "ignored" => &bcfg.namesrv, "namesrv" => &own);
    }
    bcfg.namesrv = own;
    Ok(bcfg)
}

/// The NameServer of `skylark standalone`, on `host:port`, with the
/// broker's TLS settings: its ports (client, RocketMQ remoting) speak TLS
/// as the broker's do (`tls_mode`, `tls_cert_file`, `tls_key_file`,
/// `tls_client_ca_file`), and its dashboard dials the broker as the broker
/// dials it (`tls_ca_file`, `tls_client_cert_file`/`tls_client_key_file`,
/// else the broker's own certificate). Without `tls_ca_file`, a broker
/// with `tls_mode = enforcing` could neither register with it (its
/// registration would be plain, which `enforcing` refuses) nor be read by
/// the dashboard: refused with what to set.
fn standalone_namesrv_config(
    bcfg: &BrokerConfig,
    host: String,
    port: u16,
) -> anyhow::Result<NameServerConfig> {
    if bcfg.tls_mode == skylark_actors::tls::TlsMode::Enforcing && bcfg.tls_ca_file.is_none() {
        anyhow::bail!(
            "tls_mode = enforcing in `skylark standalone` needs tls_ca_file (or --tls-ca): \
             the CA its certificate (tls_cert_file) chains to; its broker registers with its \
             NameServer, and the dashboard reads the broker, over TLS verified against it"
        );
    }
    Ok(NameServerConfig {
        listen_host: host,
        port,
        tls_mode: bcfg.tls_mode,
        tls_cert_file: bcfg.tls_cert_file.clone(),
        tls_key_file: bcfg.tls_key_file.clone(),
        tls_client_ca_file: bcfg.tls_client_ca_file.clone(),
        tls_ca_file: bcfg.tls_ca_file.clone(),
        tls_client_cert_file: bcfg.tls_client_cert_file.clone(),
        tls_client_key_file: bcfg.tls_client_key_file.clone(),
        ..NameServerConfig::default()
    })
}

/// The address standalone's broker registers at with its NameServer,
/// which listens on `host`: the loopback address when that is every
/// address.
fn standalone_namesrv_addr(host: &str, port: u16) -> String {
    let every = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_unspecified());
    let host = if every { "127.0.0.1" } else { host };
    format!("{}:{port}", skylark_actors::config::bracketed(host))
}

/// Says which address a broker listening on every address advertises
/// ([`BrokerConfig::every_address_advertises`]): at INFO when it is this
/// machine's, with a warning when it is the loopback address.
fn log_advertised(cfg: &BrokerConfig, log: &Logger) {
    match cfg.every_address_advertises() {
        None => {}
        Some(LocalHost::Found(ip)) => {
            info!(log, "listening on every address: advertising this machine's address (set advertised_addr to choose another)";
            "listen_host" => &cfg.listen_host, "advertised_host" => %ip)
        }
        Some(LocalHost::Loopback(ip)) => {
            warn!(log, "listening on every address but no address of this machine routes off it: advertising the loopback address, which other hosts cannot reach; set advertised_addr";
            "listen_host" => &cfg.listen_host, "advertised_host" => %ip)
        }
    }
}

/// `skylark standalone`: a NameServer and a Broker in one process, with
/// laptop-sized store defaults for a new data directory
/// ([`crate::config::STANDALONE_STORE_DEFAULTS`]).
pub fn standalone(a: StandaloneArgs, flags: &ServerFlags, log: Logger) -> anyhow::Result<()> {
    let mut bcfg = standalone_broker_config(&a, flags, &log)?;
    refuse_controller_data_dir(&bcfg)?;
    let host = bcfg.listen_host.clone();
    for w in waits_past_the_client_timeout(&bcfg) {
        warn!(log, "{w}");
    }
    if bcfg.ha_port.is_none() {
        // No slave replicates a standalone broker unless configured to:
        // don't claim port + 1, take any free port for the HA listener.
        bcfg.ha_port = Some(0);
    }
    // One metrics endpoint for the process (it shows the NameServer and
    // the Broker): started here, not by the broker.
    let metrics_port = match (a.no_metrics, a.metrics_port, bcfg.metrics_port.take()) {
        (true, _, _) => None,
        (false, Some(p), _) | (false, None, Some(p)) => Some((p, true)),
        (false, None, None) => Some((skylark_actors::metrics::STANDALONE_METRICS_PORT, false)),
    };
    log_advertised(&bcfg, &log);
    let ncfg = standalone_namesrv_config(&bcfg, host.clone(), a.namesrv_port)?;
    run_system(async move {
        let _metrics = match metrics_port {
            None => None,
            Some((port, explicit)) => {
                match skylark_actors::metrics::serve(&host, port, &log).await {
                    Ok(m) => Some(m),
                    Err(e) if explicit => return Err(e.into()),
                    Err(e) => {
                        slog::warn!(log, "default metrics port unavailable, metrics off";
                            "port" => port, "error" => %e);
                        None
                    }
                }
            }
        };
        let ns = embedded::start_namesrv(ncfg.clone(), log.clone())
            .await
            .context("cannot start the nameserver")?;
        let _dashboard = standalone_dashboard(&a, &ncfg, &ns, &log)?;
        let _remoting = standalone_remoting(&a, &ncfg, &ns, &log).await?;
        let mut bcfg = bcfg;
        // The broker's RocketMQ remoting port: the flag's (it must be
        // free), else the default, or an ephemeral port when that is taken
        // (RocketMQ clients learn it from the routes).
        if bcfg.remoting_port.is_none() && !a.no_remoting {
            bcfg.remoting_port = Some(
                a.broker_remoting_port
                    .unwrap_or(skylark_actors::processor::rocketmq::STANDALONE_PORT),
            );
            bcfg.remoting_port_fallback = a.broker_remoting_port.is_none();
        }
        let broker = embedded::start_broker(bcfg, log.clone())
            .await
            .context("cannot start the broker")?;
        info!(log, "standalone ready"; "namesrv" => %ns.local_addr(), "broker" => %broker.local_addr());
        shutdown_signal().await;
        info!(log, "shutting down");
        broker.shutdown().await;
        drop(ns);
        info!(log, "stopped");
        Ok(())
    })
}

/// `skylark namesrv`.
pub fn namesrv(a: NamesrvArgs, flags: &ServerFlags, log: Logger) -> anyhow::Result<()> {
    let mut o: Vec<(&str, Value)> = Vec::new();
    if let Some(p) = a.port {
        o.push(("port", Value::from(p as i64)));
    }
    if let Some(h) = a.host {
        o.push(("listen_host", Value::from(h)));
    }
    o.extend(flags.overrides("namesrv", Some(super::OUTGOING_TLS_KEYS))?);
    let cfg: NameServerConfig = load(a.config.as_deref(), &o)?;
    run_system(async move {
        let ns = embedded::start_namesrv(cfg, log.clone())
            .await
            .context("cannot start the nameserver")?;
        info!(log, "nameserver ready"; "addr" => %ns.local_addr());
        shutdown_signal().await;
        info!(log, "stopped");
        Ok(())
    })
}

/// The broker's waits that are not shorter than a client's default
/// request timeout, as warnings: a producer that gives up first gets a
/// timeout of its own instead of the broker's `FlushSlaveTimeout` /
/// `FlushDiskTimeout`, and cannot tell whether its message was stored.
fn waits_past_the_client_timeout(cfg: &BrokerConfig) -> Vec<String> {
    let client = crate::client::ClientConfig::default().request_timeout;
    let client_ms = u64::try_from(client.as_millis()).unwrap_or(u64::MAX);
    let waits_for_slaves = cfg.role() == skylark_actors::config::BrokerRole::SyncMaster
        || (cfg.enable_controller_mode && cfg.in_sync_ack);
    let sync_flush = cfg.store.flush_mode == skylark_actors::message_store::FlushMode::Sync;
    [
        (
            waits_for_slaves,
            "sync_replication_timeout_ms",
            cfg.sync_replication_timeout_ms,
            "FlushSlaveTimeout",
        ),
        (
            sync_flush,
            "store.sync_flush_timeout_ms",
            cfg.store.sync_flush_timeout_ms,
            "FlushDiskTimeout",
        ),
    ]
    .into_iter()
    .filter(|&(applies, _, ms, _)| applies && ms >= client_ms)
    .map(|(_, key, ms, answer)| {
        format!(
            "{key} = {ms} is not below the clients' default request timeout ({client_ms} ms): \
             a producer gives up before the broker answers {answer}"
        )
    })
    .collect()
}

/// Refuses a fixed role on a data directory a controller-mode broker
/// wrote (it has `epoch.json`): such a broker takes writes outside the
/// controller's epochs, the group's master never has them, and when the
/// directory rejoins controller mode its log cannot be reconciled — its
/// acknowledged messages are lost and its replication stalls.
fn refuse_controller_data_dir(cfg: &BrokerConfig) -> anyhow::Result<()> {
    let epochs = skylark_actors::message_store::epoch::path(&cfg.store.data_dir);
    if !cfg.enable_controller_mode && epochs.exists() {
        anyhow::bail!(
            "data directory {} was written by a broker in controller mode ({} exists): \
             start it with enable_controller_mode = true; to run it with a fixed role \
             instead, give the broker a new data directory",
            cfg.store.data_dir.display(),
            epochs.display()
        );
    }
    Ok(())
}

/// `skylark broker`.
pub fn broker(a: BrokerArgs, flags: &ServerFlags, log: Logger) -> anyhow::Result<()> {
    let mut o = broker_overrides(&a.data_dir, a.port, &a.host, a.flush, &a.namesrv);
    o.extend(flags.overrides("broker", Some(super::OUTGOING_TLS_KEYS))?);
    let cfg: BrokerConfig = load(a.config.as_deref(), &o)?;
    refuse_controller_data_dir(&cfg)?;
    for w in waits_past_the_client_timeout(&cfg) {
        warn!(log, "{w}");
    }
    log_advertised(&cfg, &log);
    if cfg.enable_controller_mode {
        // The role comes from the controller (docs/failover.md).
        return run_system(async move {
            skylark_actors::controller::member::run(cfg, log.clone(), shutdown_signal())
                .await
                .context("cannot start the broker")?;
            info!(log, "stopped");
            Ok(())
        });
    }
    run_system(async move {
        let broker = embedded::start_broker(cfg, log.clone())
            .await
            .context("cannot start the broker")?;
        info!(log, "broker ready"; "addr" => %broker.local_addr());
        shutdown_signal().await;
        info!(log, "shutting down");
        broker.shutdown().await;
        info!(log, "stopped");
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Standalone's NameServer takes the broker's TLS (it had none: the
    /// dashboard could not read an `enforcing` broker); `enforcing`
    /// without a CA is refused, as neither registration nor the dashboard
    /// could verify the broker's certificate.
    #[test]
    fn the_standalone_namesrv_takes_the_brokers_tls() {
        use skylark_actors::tls::TlsMode;
        let plain = standalone_namesrv_config(&BrokerConfig::default(), "h".into(), 1).unwrap();
        assert_eq!(plain.tls_mode, TlsMode::Disabled);
        assert_eq!(plain.tls_ca_file, None);
        let some = |f: &str| Some(f.to_string());
        let tls = BrokerConfig {
            tls_mode: TlsMode::Enforcing,
            tls_cert_file: some("s.pem"),
            tls_key_file: some("s.key"),
            tls_client_ca_file: some("cca.pem"),
            tls_ca_file: some("ca.pem"),
            tls_client_cert_file: some("c.pem"),
            tls_client_key_file: some("c.key"),
            ..BrokerConfig::default()
        };
        let n = standalone_namesrv_config(&tls, "h".into(), 1).unwrap();
        assert_eq!((n.listen_host.as_str(), n.port), ("h", 1));
        assert_eq!(n.tls_mode, TlsMode::Enforcing);
        let files = [
            &n.tls_cert_file,
            &n.tls_key_file,
            &n.tls_client_ca_file,
            &n.tls_ca_file,
            &n.tls_client_cert_file,
            &n.tls_client_key_file,
        ];
        let want = ["s.pem", "s.key", "cca.pem", "ca.pem", "c.pem", "c.key"];
        assert_eq!(files.map(|f| f.as_deref()), want.map(Some));
        let no_ca = BrokerConfig {
            tls_ca_file: None,
            ..tls.clone()
        };
        let e = standalone_namesrv_config(&no_ca, "h".into(), 1).unwrap_err();
        assert!(
            e.to_string().contains("needs tls_ca_file (or --tls-ca)"),
            "{e}"
        );
        let permissive = BrokerConfig {
            tls_mode: TlsMode::Permissive,
            ..no_ca
        };
        assert!(standalone_namesrv_config(&permissive, "h".into(), 1).is_ok());
    }

    #[test]
    fn waits_not_below_the_client_timeout_are_warned_about_where_they_apply() {
        let defaults = BrokerConfig {
            broker_role: skylark_actors::config::BrokerRole::SyncMaster,
            ..BrokerConfig::default()
        };
        let mut sync = defaults.clone();
        sync.store.flush_mode = skylark_actors::message_store::FlushMode::Sync;
        assert!(waits_past_the_client_timeout(&sync).is_empty(), "defaults");
        let mut slow = sync.clone();
        slow.sync_replication_timeout_ms = 3000;
        slow.store.sync_flush_timeout_ms = 5000;
        let w = waits_past_the_client_timeout(&slow);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].starts_with("sync_replication_timeout_ms = 3000 is not below"),
            "{w:?}"
        );
        assert!(w[1].contains("FlushDiskTimeout"), "{w:?}");
        // An ASYNC_MASTER with async flush waits for neither.
        let quiet = BrokerConfig {
            sync_replication_timeout_ms: 3000,
            ..BrokerConfig::default()
        };
        assert!(waits_past_the_client_timeout(&quiet).is_empty());
    }
}
