//! `skylark admin delay stats`: every master broker's delayed-message
//! backlog — pending messages per delay level and in the timer (arbitrary
//! delivery times), from the `GetScheduleStats` command.

use std::io::Write;

use serde_json::json;
use skylark_codec::GetScheduleStatsRequest;

use crate::client::{ClientConfig, NameServerClient};

/// Prints the Scheduler's backlog of every master (or of `broker` only: a
/// broker name or address, as for `broker status`).
pub async fn stats(
    ns: &NameServerClient,
    cfg: &ClientConfig,
    broker: Option<&str>,
    json: bool,
) -> anyhow::Result<()> {
    let targets: Vec<(String, String)> = match broker {
        Some(b) => vec![super::admin_broker::resolve_broker(ns, b).await?],
        None => super::admin_broker::masters(ns.cluster_info().await?.brokers.values()),
    };
    let mut out = std::io::stdout().lock();
    for (name, addr) in targets {
        let s = super::admin_broker::call(cfg, &addr, None, &GetScheduleStatsRequest {}).await?;
        if json {
            let v = json!({
                "broker_name": name,
                "addr": addr,
                "levels": s.levels,
                "level_pending": s.levels.iter().map(|l| l.pending).sum::<u64>(),
                "timer_pending": s.timer_pending,
                "timer_delivered_up_to_ms": s.timer_delivered_up_to_ms,
                "max_delay_ms": s.max_delay_ms,
            });
            writeln!(out, "{v}")?;
            continue;
        }
        writeln!(out, "broker {name} ({addr})")?;
        writeln!(
            out,
            "{:>6} {:>10} {:>12} {:>16}",
            "LEVEL", "DELAY", "PENDING", "DELIVERED_OFFSET"
        )?;
        for l in &s.levels {
            writeln!(
                out,
                "{:>6} {:>10} {:>12} {:>16}",
                l.level,
                format!("{}ms", l.delay_ms),
                l.pending,
                l.delivered_offset
            )?;
        }
        writeln!(
            out,
            "timer pending {} (delivered up to {} ms, max delay {} ms)",
            s.timer_pending, s.timer_delivered_up_to_ms, s.max_delay_ms
        )?;
    }
    Ok(())
}
