//! `skylark controller` (run one member of the controller group) and
//! `skylark admin controller status | elect` (docs/controller.md).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use config::Value;
use skylark_actors::controller::client::ControllerClient;
use skylark_actors::controller::proto::{ControllerStatus, Request, Response};
use skylark_actors::controller::types::GroupInfo;
use skylark_actors::controller::{self, ControllerConfig};
use slog::{info, Logger};

use crate::config::load;

#[derive(Debug, Args)]
pub struct ControllerArgs {
    /// Configuration file (conf/controller-1.toml).
    #[arg(short = 'c', long = "config")]
    pub config: Option<PathBuf>,
    /// This controller's id (a key of `peers`).
    #[arg(long)]
    pub node_id: Option<u64>,
    /// Port to listen on.
    #[arg(long)]
    pub port: Option<u16>,
    /// Data directory (raft log, vote, snapshots).
    #[arg(long)]
    pub data_dir: Option<String>,
    /// The whole group: ID=HOST:PORT separated by ';'.
    #[arg(long)]
    pub peers: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ControllerCmd {
    /// Every controller's view: leader, term, broker groups, masters,
    /// epochs, in-sync sets.
    Status(ControllerAddrArgs),
    /// Make a broker the master of its group now (it must be alive and in
    /// the in-sync set unless the controllers allow unclean elections).
    Elect(ElectArgs),
}

#[derive(Debug, Args)]
pub struct ControllerAddrArgs {
    /// Controller addresses, HOST:PORT separated by ';'.
    #[arg(long, env = "SKYLARK_CONTROLLER")]
    pub controller: String,
}

#[derive(Debug, Args)]
pub struct ElectArgs {
    #[command(flatten)]
    pub addr: ControllerAddrArgs,
    /// The broker group.
    #[arg(long)]
    pub broker_name: String,
    /// The broker id to make master.
    #[arg(long)]
    pub broker_id: u64,
}

/// `skylark controller`: runs until SIGTERM or Ctrl-C.
pub fn run(a: ControllerArgs, flags: &super::ServerFlags, log: Logger) -> anyhow::Result<()> {
    let mut o: Vec<(&str, Value)> = Vec::new();
    if let Some(n) = a.node_id {
        o.push(("node_id", Value::from(n)));
    }
    if let Some(p) = a.port {
        o.push(("port", Value::from(p as i64)));
    }
    if let Some(d) = a.data_dir {
        o.push(("data_dir", Value::from(d)));
    }
    if let Some(p) = a.peers {
        o.push(("peers", Value::from(p)));
    }
    o.extend(flags.overrides("controller", None)?);
    let cfg: ControllerConfig = load(a.config.as_deref(), &o)?;
    cfg.peer_map()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    rt.block_on(async move {
        let c = controller::start(cfg, log.clone())
            .await
            .context("cannot start the controller")?;
        info!(log, "controller ready"; "addr" => %c.local_addr());
        super::server::shutdown_signal().await;
        info!(log, "shutting down");
        c.shutdown().await;
        info!(log, "stopped");
        Ok(())
    })
}

/// A line on stdout; a closed pipe is an error of the command, not a panic.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($t)*)?
    }};
}

const TIMEOUT: Duration = Duration::from_secs(5);

/// `skylark admin controller ...`.
pub async fn admin(cmd: ControllerCmd, json: bool) -> anyhow::Result<()> {
    match cmd {
        ControllerCmd::Status(a) => status(&a.controller, json).await,
        ControllerCmd::Elect(e) => elect(e, json).await,
    }
}

async fn status(addrs: &str, json: bool) -> anyhow::Result<()> {
    let mut client = ControllerClient::new(addrs, TIMEOUT);
    if client.addrs().is_empty() {
        bail!("--controller names no address");
    }
    let mut views: Vec<Result<ControllerStatus, String>> = Vec::new();
    for addr in client.addrs().to_vec() {
        views.push(match client.ask(&addr, &Request::Status).await {
            Ok(Response::Status(s)) => Ok(s),
            Ok(other) => Err(format!("{addr}: unexpected answer {other:?}")),
            Err(e) => Err(e.to_string()),
        });
    }
    if views.iter().all(Result::is_err) {
        let why: Vec<String> = views.into_iter().filter_map(Result::err).collect();
        bail!("no controller answered: {}", why.join("; "));
    }
    if json {
        for v in &views {
            let line = match v {
                Ok(s) => serde_json::json!({
                    "node_id": s.node_id, "addr": s.addr, "leader_id": s.leader_id,
                    "leader_addr": s.leader_addr, "term": s.term,
                    "last_applied_index": s.last_applied_index,
                    "groups": s.groups.iter().map(|g| {
                        let mut j = group_json(g);
                        j["alive"] = alive_json(s, g);
                        j
                    }).collect::<Vec<_>>(),
                }),
                Err(e) => serde_json::json!({ "error": e }),
            };
            out!("{line}");
        }
        return Ok(());
    }
    for v in &views {
        match v {
            Ok(s) => {
                out!(
                    "controller {} {} term {} leader {} applied {}",
                    s.node_id,
                    s.addr,
                    s.term,
                    s.leader_addr.as_deref().unwrap_or("-"),
                    s.last_applied_index.map_or("-".into(), |i| i.to_string()),
                );
                for g in &s.groups {
                    let alive = s.alive.as_ref().and_then(|a| a.get(&g.broker_name));
                    out!(
                        "  {} master {} ({}) epoch {} in-sync {:?} (epoch {}) replicas {:?} alive {}",
                        g.broker_name,
                        g.master_id.map_or("-".into(), |i| i.to_string()),
                        g.master_addr().unwrap_or("-"),
                        g.master_epoch,
                        g.sync_state_set,
                        g.sync_state_set_epoch,
                        g.replicas,
                        alive.map_or("- (not the leader)".into(), |a| format!("{a:?}")),
                    );
                }
            }
            Err(e) => out!("unreachable: {e}"),
        }
    }
    Ok(())
}

/// Replica id → whether the leader heard from it within the broker
/// timeout; `null` from a follower (liveness is the leader's memory).
fn alive_json(s: &ControllerStatus, g: &GroupInfo) -> serde_json::Value {
    match s.alive.as_ref() {
        Some(a) => {
            let live = a.get(&g.broker_name);
            let ids = g.replicas.keys();
            let by_id = ids.map(|id| (id.to_string(), live.is_some_and(|l| l.contains(id))));
            serde_json::Value::Object(by_id.map(|(k, v)| (k, v.into())).collect())
        }
        None => serde_json::Value::Null,
    }
}

fn group_json(g: &GroupInfo) -> serde_json::Value {
    serde_json::json!({
        "cluster": g.cluster, "broker_name": g.broker_name,
        "master_id": g.master_id, "master_addr": g.master_addr(),
        "master_epoch": g.master_epoch,
        "sync_state_set": g.sync_state_set, "sync_state_set_epoch": g.sync_state_set_epoch,
        "replicas": g.replicas,
    })
}

async fn elect(e: ElectArgs, json: bool) -> anyhow::Result<()> {
    let mut client = ControllerClient::new(&e.addr.controller, TIMEOUT);
    let mut req = Request::ElectMaster {
        broker_name: e.broker_name.clone(),
        broker_id: Some(e.broker_id),
    };
    // With ACL on the controllers, an election needs an admin's signature.
    if let Some(creds) = super::credentials() {
        req = req.signed(creds).map_err(anyhow::Error::msg)?;
    }
    match client.leader_request(&req).await? {
        Response::Group(g) => {
            if json {
                out!("{}", group_json(&g));
            } else {
                out!(
                    "{}: master {} ({}) epoch {}",
                    g.broker_name,
                    e.broker_id,
                    g.master_addr().unwrap_or("-"),
                    g.master_epoch
                );
            }
            Ok(())
        }
        Response::Refused(why) => bail!("election refused: {why}"),
        Response::AccessDenied(e) => bail!("election refused: {e}"),
        Response::NotLeader { .. } => bail!("no controller leader is known yet; try again"),
        other => bail!("unexpected answer: {other:?}"),
    }
}
