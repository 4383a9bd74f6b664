//! How the `admin` subcommands reach brokers: one request on a fresh
//! connection ([`call`]), the masters of a topic's route or of the whole
//! cluster, the broker a `--broker NAME|ADDR` names ([`resolve_broker`],
//! for every subcommand that takes `--broker`), and the checked group name
//! a request carries. A leaf: the `admin*` modules use it, it uses none of
//! them.

use anyhow::bail;
use skylark_codec::{BrokerData, Rpc};

use crate::client::{ClientConfig, ClientError, NameServerClient};

/// `group`, checked, as a request carries it.
pub(super) fn group_name(group: &str) -> anyhow::Result<String> {
    skylark_codec::validate_group_name(group).map_err(anyhow::Error::msg)?;
    Ok(group.to_string())
}

/// One request on a fresh connection to `addr`; errors name the broker
/// (and `topic`, where given).
pub(super) async fn call<R: Rpc>(
    cfg: &ClientConfig,
    addr: &str,
    topic: Option<&str>,
    req: &R,
) -> Result<R::Response, ClientError> {
    let c = crate::client::connect_broker(cfg, addr).await?;
    let r = c.call(req).await;
    c.close();
    r.map_err(|e| ClientError::from_call(addr, topic, e))
}

/// (broker name, master address) of each of `brokers` that has a master,
/// in their order.
pub(super) fn masters<'a>(
    brokers: impl IntoIterator<Item = &'a BrokerData>,
) -> Vec<(String, String)> {
    brokers
        .into_iter()
        .filter_map(|b| Some((b.broker_name.clone(), b.master_addr()?.to_string())))
        .collect()
}

/// [`masters`] of the brokers hosting `topic`; an error when none has one.
pub(super) async fn topic_masters(
    ns: &NameServerClient,
    topic: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    let all = masters(&ns.route(topic).await?.brokers);
    if all.is_empty() {
        bail!("topic '{topic}': no master broker hosts it");
    }
    Ok(all)
}

/// [`masters`] of every broker group registered with the NameServer, by
/// broker name; an error when there is none.
pub(super) async fn cluster_masters(
    ns: &NameServerClient,
) -> anyhow::Result<Vec<(String, String)>> {
    let all = masters(ns.cluster_info().await?.brokers.values());
    if all.is_empty() {
        bail!("no master broker is registered with the NameServer");
    }
    Ok(all)
}

/// (broker name, master address) for `--broker NAME|ADDR`: a broker name
/// the NameServer knows is its master, an address of a registered broker
/// has that broker's name, and any other `HOST:PORT` is used as given
/// (named by itself).
pub(super) async fn resolve_broker(
    ns: &NameServerClient,
    broker: &str,
) -> anyhow::Result<(String, String)> {
    // An address is used as given when the NameServer does not know it (or
    // does not answer): a broker that failed to register can still be
    // inspected.
    let is_addr = broker
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    let info = match ns.cluster_info().await {
        Ok(info) => info,
        Err(_) if is_addr => return Ok((broker.to_string(), broker.to_string())),
        Err(e) => return Err(e.into()),
    };
    if let Some(b) = info.brokers.get(broker) {
        let Some(addr) = b.master_addr() else {
            bail!("broker '{broker}' has no master registered with the NameServer");
        };
        return Ok((broker.to_string(), addr.to_string()));
    }
    for b in info.brokers.values() {
        if b.addrs.values().any(|a| a == broker) {
            return Ok((b.broker_name.clone(), broker.to_string()));
        }
    }
    if is_addr {
        return Ok((broker.to_string(), broker.to_string()));
    }
    let mut known: Vec<&str> = info.brokers.keys().map(String::as_str).collect();
    known.sort();
    bail!(
        "broker '{broker}' is not registered with the NameServer (known brokers: {})",
        if known.is_empty() {
            "none".to_string()
        } else {
            known.join(", ")
        }
    )
}

/// A write sent to several brokers, tried on every one (a broker that
/// fails does not stop the others) and reported broker by broker: the
/// caller prints each success as it comes, [`Writes::finish`] then prints
/// each failure and fails the command when there was one, naming where it
/// was applied and how to finish (run the same command again: every write
/// that uses this is idempotent).
pub(super) struct Writes {
    what: String,
    applied: Vec<String>,
    failed: Vec<(String, String, String)>,
}

impl Writes {
    /// `what` names the write in the summary ("topic 'T' create").
    pub(super) fn new(what: impl Into<String>) -> Writes {
        Writes {
            what: what.into(),
            applied: Vec::new(),
            failed: Vec::new(),
        }
    }

    /// The write was applied on broker `name` (at `addr`).
    pub(super) fn applied(&mut self, name: &str, addr: &str) {
        self.applied.push(at(name, addr));
    }

    /// A delete was applied on broker `name` (at `addr`): records it and
    /// prints its line, `"{line} on NAME (ADDR)"`, or with `json` the
    /// object `{KEY: VALUE, "broker_name", "addr", "result": "deleted"}`
    /// for `object` = (KEY, VALUE), e.g. `("topic", "T")`.
    pub(super) fn deleted(
        &mut self,
        (key, value): (&str, &str),
        line: &str,
        name: &str,
        addr: &str,
        json: bool,
    ) -> anyhow::Result<()> {
        use std::io::Write as _;
        self.applied(name, addr);
        let mut out = std::io::stdout().lock();
        if json {
            let v = serde_json::json!({key: value, "broker_name": name, "addr": addr,
                "result": "deleted"});
            writeln!(out, "{v}")?;
        } else {
            writeln!(out, "{line} on {name} ({addr})")?;
        }
        Ok(())
    }

    /// The write failed on broker `name` (at `addr`) with `error`.
    pub(super) fn failed(&mut self, name: &str, addr: &str, error: impl std::fmt::Display) {
        self.failed
            .push((name.to_string(), addr.to_string(), format!("{error:#}")));
    }

    /// Whether every broker tried so far took the write.
    pub(super) fn all_applied(&self) -> bool {
        self.failed.is_empty()
    }

    /// Prints each failure (a line, or a JSON line with `"result":
    /// "failed"`) and fails when there was one.
    pub(super) fn finish(self, json: bool) -> anyhow::Result<()> {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        for (name, addr, error) in &self.failed {
            if json {
                let v = serde_json::json!({"broker_name": name, "addr": addr,
                    "result": "failed", "error": error});
                writeln!(out, "{v}")?;
            } else {
                writeln!(out, "failed on {}: {error}", at(name, addr))?;
            }
        }
        if self.failed.is_empty() {
            return Ok(());
        }
        let failed: Vec<String> = self
            .failed
            .iter()
            .map(|(n, a, e)| format!("{}: {e}", at(n, a)))
            .collect();
        bail!(
            "{} failed on {} of {} brokers ({}); applied on: {}; run the same command again to finish (brokers that have it already are left as they are)",
            self.what,
            self.failed.len(),
            self.failed.len() + self.applied.len(),
            failed.join("; "),
            if self.applied.is_empty() {
                "none".to_string()
            } else {
                self.applied.join(", ")
            }
        )
    }
}

/// "NAME (ADDR)", or the address alone when it is the name.
fn at(name: &str, addr: &str) -> String {
    if name == addr {
        name.to_string()
    } else {
        format!("{name} ({addr})")
    }
}

/// The broker's own topics (docs/topics.md): the auto-create route and the
/// queues of delayed and transactional messages. They have no
/// configuration: brokers refuse to create or delete one (`BadRequest`),
/// and the commands that read or change a configuration refuse them here.
const BROKER_TOPICS: [&str; 5] = [
    skylark_codec::AUTO_CREATE_TOPIC_KEY,
    skylark_actors::scheduler::SCHEDULE_TOPIC,
    skylark_actors::scheduler::TIMER_TOPIC,
    skylark_actors::transaction::HALF_TOPIC,
    skylark_actors::transaction::OP_TOPIC,
];

/// An error when `topic` is one of the broker's own, whose configuration
/// `what` ("changed", "read") would need.
pub(super) fn refuse_broker_topic(topic: &str, what: &str) -> anyhow::Result<()> {
    if BROKER_TOPICS.contains(&topic) {
        bail!(
            "topic '{topic}' is reserved: it is the broker's own (the auto-create route, or delayed or transactional messages) and has no configuration to be {what} (see docs/topics.md)"
        );
    }
    Ok(())
}
