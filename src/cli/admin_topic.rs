//! `skylark admin topic create|update`: write a topic's configuration to
//! every master broker (or to `--broker`).
//!
//! `create` refuses a topic that already exists on a target broker with
//! another layout (it would silently overwrite its queue counts) and
//! leaves one that has it as asked (so running it again after a partial
//! create completes it); `update` writes to the masters hosting the topic
//! (or `--broker`, where it must exist) and changes only what its flags name (with none, it is refused:
//! "nothing to update"): each broker's current
//! configuration (read with `GetTopicStats`) is the starting point, so
//! `update --order` on a 2-queue topic keeps 2 queues. Read and write queue
//! counts are separate, as RocketMQ's `readQueueNums`/`writeQueueNums`:
//! shrink a topic by lowering `--write-queues` first, letting consumers
//! drain the queues above it, then lowering `--read-queues`.

use std::io::Write;

use anyhow::bail;
use serde_json::json;
use skylark_codec::{CreateTopicRequest, ErrorCode, GetTopicStatsRequest, TopicConfig};

use super::admin_broker::Writes;
use super::{admin_broker, TopicCreateArgs};
use crate::client::{ClientConfig, NameServerClient};

macro_rules! out {
    ($($t:tt)*) => {
        writeln!(std::io::stdout().lock(), $($t)*)?
    };
}

/// Queue count of `topic create` without `--queues`.
const DEFAULT_QUEUES: u32 = 8;

/// Create or update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Create,
    Update,
}

impl Verb {
    fn done(self) -> &'static str {
        match self {
            Verb::Create => "created",
            Verb::Update => "updated",
        }
    }
}

/// The configuration to write: `current` (update) or the defaults
/// (create), with the flags given applied on top.
pub fn merged(t: &TopicCreateArgs, current: Option<&TopicConfig>) -> anyhow::Result<TopicConfig> {
    let mut c = match current {
        Some(c) => c.clone(),
        None => TopicConfig::new(t.name.clone(), DEFAULT_QUEUES),
    };
    if let Some(q) = t.queues {
        c.read_queues = q;
        c.write_queues = q;
    }
    if let Some(r) = t.read_queues {
        c.read_queues = r;
    }
    if let Some(w) = t.write_queues {
        c.write_queues = w;
    }
    if t.order {
        c.order = true;
    }
    if t.no_order {
        c.order = false;
    }
    if c.read_queues == 0 || c.write_queues == 0 {
        bail!("--queues, --read-queues and --write-queues must be at least 1");
    }
    let counts_change =
        current.is_none_or(|t| (t.read_queues, t.write_queues) != (c.read_queues, c.write_queues));
    if c.write_queues > c.read_queues && counts_change {
        // Checked here too (the broker refuses it), so that a refusal on
        // one broker cannot leave another one updated.
        bail!(
            "topic '{}': {} write queues above {} read queues would store messages in queues no consumer reads; raise the read queues first (or both together), lower the write queues first to shrink",
            c.name,
            c.write_queues,
            c.read_queues
        );
    }
    Ok(c)
}

/// Whether `update` was given a flag that changes the configuration
/// (`--broker` only picks where).
fn changes_anything(t: &TopicCreateArgs) -> bool {
    t.queues.is_some()
        || t.read_queues.is_some()
        || t.write_queues.is_some()
        || t.order
        || t.no_order
}

/// The topic's configuration on the broker at `addr`, or `None` where it
/// does not exist.
async fn current(
    cfg: &ClientConfig,
    addr: &str,
    topic: &str,
) -> anyhow::Result<Option<TopicConfig>> {
    let req = GetTopicStatsRequest {
        topic: topic.to_string(),
    };
    match admin_broker::call(cfg, addr, Some(topic), &req).await {
        Ok(s) => Ok(Some(s.config)),
        Err(e) if e.code() == Some(ErrorCode::TopicNotFound) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// (broker name, address) of the brokers to write to: `--broker`, else
/// for `create` every master, for `update` the masters hosting the topic
/// (a broker that joined after the topic was created has none to update).
async fn targets(
    ns: &NameServerClient,
    t: &TopicCreateArgs,
    verb: Verb,
) -> anyhow::Result<Vec<(String, String)>> {
    let targets: Vec<(String, String)> = match (&t.broker, verb) {
        (Some(b), _) => vec![admin_broker::resolve_broker(ns, b).await?],
        (None, Verb::Create) => admin_broker::masters(ns.cluster_info().await?.brokers.values()),
        (None, Verb::Update) => match ns.route(&t.name).await {
            Ok(route) => admin_broker::masters(&route.brokers),
            Err(e) if e.code() == Some(ErrorCode::TopicNotFound) => bail!(
                "topic '{}' does not exist on any master; use `admin topic create`",
                t.name
            ),
            Err(e) => return Err(e.into()),
        },
    };
    if targets.is_empty() {
        bail!(
            "cannot write topic '{}': no master broker is registered with the NameServer",
            t.name
        );
    }
    Ok(targets)
}

/// What one target gets: the configuration to write, or (`create` run
/// again) the one it already has as asked.
struct Step<'a> {
    name: &'a str,
    addr: &'a str,
    config: TopicConfig,
    exists: bool,
}

/// The steps of a write, from each target's current configuration; a
/// target that does not answer is recorded in `writes` and left out. An
/// error, before anything is written, when the write would be refused on
/// one (a create over another layout, an update of a topic a `--broker`
/// does not have, a layout no consumer could read).
async fn plan<'a>(
    cfg: &ClientConfig,
    t: &TopicCreateArgs,
    verb: Verb,
    targets: &'a [(String, String)],
    writes: &mut Writes,
) -> anyhow::Result<Vec<Step<'a>>> {
    let mut steps = Vec::new();
    for (name, addr) in targets {
        let now = match current(cfg, addr, &t.name).await {
            Ok(now) => now,
            Err(e) => {
                writes.failed(name, addr, e);
                continue;
            }
        };
        let (name, addr) = (name.as_str(), addr.as_str());
        match (verb, now) {
            (Verb::Create, Some(c)) => {
                let want = merged(t, None)?;
                if (c.read_queues, c.write_queues, c.order)
                    != (want.read_queues, want.write_queues, want.order)
                {
                    bail!(
                        "topic '{}' already exists on {name} ({addr}) with {}{}; use `admin topic update` to change it (or create it with these flags to complete the brokers that lack it)",
                        t.name,
                        queue_counts(&c),
                        if c.order { ", ordered" } else { "" }
                    );
                }
                steps.push(Step { name, addr, config: c, exists: true });
            }
            (Verb::Update, None) if t.broker.is_some() => bail!(
                "topic '{}' does not exist on {name} ({addr}); use `admin topic create --broker {name}` to add it there",
                t.name
            ),
            // The route lags a delete: nothing to update there.
            (Verb::Update, None) => note!(
                "note: topic '{}' is no longer on {name} ({addr}); left out",
                t.name
            ),
            (_, now) => steps.push(Step {
                name,
                addr,
                config: merged(t, now.as_ref())?,
                exists: false,
            }),
        }
    }
    Ok(steps)
}

/// `admin topic create|update`: every target is written even when one
/// fails; the command then fails, naming where it was applied, and running
/// it again completes it (a `create` skips the brokers that have the topic
/// as asked).
pub async fn write(
    ns: &NameServerClient,
    cfg: &ClientConfig,
    t: &TopicCreateArgs,
    verb: Verb,
    json: bool,
) -> anyhow::Result<()> {
    skylark_codec::validate_topic_name(&t.name).map_err(anyhow::Error::msg)?;
    if verb == Verb::Update {
        admin_broker::refuse_broker_topic(&t.name, "changed")?;
    }
    if verb == Verb::Update && !changes_anything(t) {
        bail!("nothing to update: give --queues, --read-queues, --write-queues, --order or --no-order");
    }
    // The flags alone, before connecting (an update's layout is checked
    // against each broker's current one below).
    if verb == Verb::Create {
        merged(t, None)?;
    } else if [t.queues, t.read_queues, t.write_queues].contains(&Some(0)) {
        bail!("--queues, --read-queues and --write-queues must be at least 1");
    }
    let targets = targets(ns, t, verb).await?;
    let noun = match verb {
        Verb::Create => "create",
        Verb::Update => "update",
    };
    let mut writes = Writes::new(format!("{noun} of topic '{}'", t.name));
    let mut done = Vec::new();
    for step in plan(cfg, t, verb, &targets, &mut writes).await? {
        if !step.exists {
            let req = CreateTopicRequest {
                config: step.config.clone(),
            };
            if let Err(e) = admin_broker::call(cfg, step.addr, Some(&t.name), &req).await {
                writes.failed(step.name, step.addr, e);
                continue;
            }
        }
        writes.applied(step.name, step.addr);
        done.push(step);
    }
    print_done(t, verb, &done, json)?;
    writes.finish(json)
}

/// The lines of the brokers written (or found as asked).
fn print_done(t: &TopicCreateArgs, verb: Verb, done: &[Step], json: bool) -> anyhow::Result<()> {
    let result = |s: &Step| if s.exists { "exists" } else { verb.done() };
    if json {
        let Some(first) = done.first().map(|s| &s.config) else {
            return Ok(());
        };
        let brokers: Vec<_> = done
            .iter()
            .map(|s| {
                let c = &s.config;
                json!({"broker_name": s.name, "addr": s.addr, "read_queues": c.read_queues,
                    "write_queues": c.write_queues, "order": c.order, "result": result(s)})
            })
            .collect();
        out!(
            "{}",
            json!({"topic": t.name, "queues": first.read_queues.max(first.write_queues),
                "read_queues": first.read_queues, "write_queues": first.write_queues,
                "order": first.order, "brokers": brokers, "result": verb.done()})
        );
        return Ok(());
    }
    for s in done {
        let c = &s.config;
        let layout = format!(
            "{}{}",
            queue_counts(c),
            if c.order { ", ordered" } else { "" }
        );
        if s.exists {
            out!(
                "topic '{}' ({layout}) already on {} ({}): left as is",
                t.name,
                s.name,
                s.addr
            );
        } else {
            out!(
                "{} topic '{}' ({layout}) on {} ({})",
                verb.done(),
                t.name,
                s.name,
                s.addr
            );
        }
    }
    Ok(())
}

/// "8 queues", or "4 read / 2 write queues" when they differ.
fn queue_counts(c: &TopicConfig) -> String {
    if c.read_queues == c.write_queues {
        format!("{} queues", c.read_queues)
    } else {
        format!("{} read / {} write queues", c.read_queues, c.write_queues)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(f: impl FnOnce(&mut TopicCreateArgs)) -> TopicCreateArgs {
        let mut a = TopicCreateArgs {
            name: "T".into(),
            queues: None,
            read_queues: None,
            write_queues: None,
            order: false,
            no_order: false,
            broker: None,
        };
        f(&mut a);
        a
    }

    #[test]
    fn update_keeps_current_values_for_flags_not_given() {
        let two = TopicConfig::new("T", 2);
        let c = merged(&args(|a| a.order = true), Some(&two)).unwrap();
        assert_eq!((c.read_queues, c.write_queues, c.order), (2, 2, true));
        let c = merged(&args(|a| a.write_queues = Some(1)), Some(&c)).unwrap();
        assert_eq!((c.read_queues, c.write_queues, c.order), (2, 1, true));
        let c = merged(&args(|a| a.no_order = true), Some(&c)).unwrap();
        assert!(!c.order);
    }

    #[test]
    fn update_needs_a_change() {
        assert!(!changes_anything(&args(|a| a.broker = Some("b".into()))));
        assert!(changes_anything(&args(|a| a.no_order = true)));
        assert!(changes_anything(&args(|a| a.write_queues = Some(2))));
    }

    #[test]
    fn create_defaults_and_zero_counts() {
        let c = merged(&args(|_| {}), None).unwrap();
        assert_eq!((c.read_queues, c.write_queues), (8, 8));
        assert!(merged(&args(|a| a.read_queues = Some(0)), None).is_err());
        assert!(merged(&args(|a| a.queues = Some(0)), None).is_err());
    }
}
