//! `skylark standalone | namesrv | broker`: load the configuration, start
//! the actors in an actix System, and shut down gracefully on SIGTERM or
//! Ctrl-C (stop accepting, answer what is in flight, flush, checkpoint,
//! unregister from the NameServers).

use anyhow::Context as _;
use config::Value;
use skylark_actors::config::{BrokerConfig, NameServerConfig};
use slog::{info, Logger};

use super::{BrokerArgs, NamesrvArgs, StandaloneArgs};
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

/// Whether `data_dir` holds a CommitLog made with RocketMQ's 1 GiB
/// segments (a standalone store from before its laptop-sized defaults).
fn has_rocketmq_sized_commit_log(data_dir: &std::path::Path) -> bool {
    let rocketmq_segment = skylark_actors::store::StoreConfig::default().segment_size;
    std::fs::read_dir(data_dir.join("commitlog"))
        .map(|d| {
            d.filter_map(Result::ok)
                .any(|e| e.metadata().is_ok_and(|m| m.len() == rocketmq_segment))
        })
        .unwrap_or(false)
}

/// `skylark standalone`: a NameServer and a Broker in one process, with
/// laptop-sized store defaults for a new data directory
/// ([`crate::config::STANDALONE_STORE_DEFAULTS`]).
pub fn standalone(a: StandaloneArgs, log: Logger) -> anyhow::Result<()> {
    let host = a.host.clone().unwrap_or_else(|| "127.0.0.1".to_string());
    let namesrv_addr = format!("{host}:{}", a.namesrv_port);
    let data_dir = Some(
        a.data_dir
            .clone()
            .unwrap_or_else(|| "./data/standalone".to_string()),
    );
    let mut o = broker_overrides(
        &data_dir,
        Some(a.broker_port),
        &Some(host.clone()),
        a.flush,
        &Some(namesrv_addr),
    );
    o.push(("broker_name", Value::from("standalone")));
    // Laptop-sized store, except for a store made before these defaults
    // (1 GiB segments): its files' geometry is fixed, so it keeps
    // RocketMQ's sizes.
    let defaults = match &data_dir {
        Some(d) if has_rocketmq_sized_commit_log(std::path::Path::new(d)) => Vec::new(),
        _ => crate::config::standalone_defaults(),
    };
    let mut bcfg: BrokerConfig =
        crate::config::load_with_defaults(a.config.as_deref(), &defaults, &o)?;
    if bcfg.ha_port.is_none() {
        // No slave replicates a standalone broker unless configured to:
        // don't claim port + 1, take any free port for the HA listener.
        bcfg.ha_port = Some(0);
    }
    let ncfg = NameServerConfig {
        listen_host: host,
        port: a.namesrv_port,
        ..NameServerConfig::default()
    };
    run_system(async move {
        let ns = embedded::start_namesrv(ncfg, log.clone())
            .await
            .context("cannot start the nameserver")?;
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
pub fn namesrv(a: NamesrvArgs, log: Logger) -> anyhow::Result<()> {
    let mut o: Vec<(&str, Value)> = Vec::new();
    if let Some(p) = a.port {
        o.push(("port", Value::from(p as i64)));
    }
    if let Some(h) = a.host {
        o.push(("listen_host", Value::from(h)));
    }
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

/// `skylark broker`.
pub fn broker(a: BrokerArgs, log: Logger) -> anyhow::Result<()> {
    let o = broker_overrides(&a.data_dir, a.port, &a.host, a.flush, &a.namesrv);
    let cfg: BrokerConfig = load(a.config.as_deref(), &o)?;
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
