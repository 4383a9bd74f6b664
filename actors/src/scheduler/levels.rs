//! Delay-level arithmetic: parsing the `delay_levels` string and the
//! message forms a delayed send takes in the schedule and timer topics.

use std::collections::BTreeMap;

/// RocketMQ's 18 default levels.
pub const DEFAULT_DELAY_LEVELS: &str = "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h";

/// Topics holding delay-level messages (queue `level - 1` per level) and
/// arbitrary-time (timer) messages (one queue): the protocol's names.
pub use skylark_codec::{SCHEDULE_TOPIC, TIMER_TOPIC};
// Property names are the protocol's (one definition each).
pub use skylark_codec::message::{
    PROPERTY_DELIVER_AT, PROPERTY_REAL_QUEUE_ID as PROPERTY_REAL_QID, PROPERTY_REAL_TOPIC,
};

/// Properties the broker adds for scheduling and removes on delivery.
pub const SCHEDULING_PROPERTIES: [&str; 4] = [
    crate::message_store::record::PROPERTY_DELAY,
    PROPERTY_DELIVER_AT,
    PROPERTY_REAL_TOPIC,
    PROPERTY_REAL_QID,
];

/// Whether `topic` is one of the Scheduler's internal topics.
pub fn is_schedule_topic(topic: &str) -> bool {
    topic == SCHEDULE_TOPIC || topic == TIMER_TOPIC
}

/// Parses `"1s 5s 10m 2h"` into delays in ms. Units: ms, s, m, h, d.
pub fn parse_delay_levels(s: &str) -> Result<Vec<u64>, String> {
    let levels: Vec<u64> = s
        .split_whitespace()
        .map(parse_duration_ms)
        .collect::<Result<_, _>>()?;
    if levels.is_empty() {
        return Err("delay_levels must list at least one duration".into());
    }
    Ok(levels)
}

fn parse_duration_ms(token: &str) -> Result<u64, String> {
    let split = token
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("delay level '{token}' has no unit (ms, s, m, h or d)"))?;
    let (num, unit) = token.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("delay level '{token}' does not start with a number"))?;
    let factor = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("delay level '{token}': unknown unit '{unit}'")),
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("delay level '{token}' is too long"))
}

/// Clamps a requested level to the configured ones (RocketMQ does the same).
pub fn clamp_level(level: u32, levels: usize) -> u32 {
    level.min(u32::try_from(levels).unwrap_or(u32::MAX)).max(1)
}

/// Per-level delivery progress: next schedule-queue offset to deliver.
pub type LevelOffsets = BTreeMap<u32, u64>;

/// Properties of a delayed message's copy in the real topic: the stored
/// ones minus the scheduling ones (tags and keys travel apart).
pub fn delivered_properties<'a>(
    props: impl Iterator<Item = (&'a str, &'a str)>,
) -> Vec<(String, String)> {
    props
        .filter(|(k, _)| {
            !SCHEDULING_PROPERTIES.contains(k)
                && *k != crate::message_store::record::PROPERTY_TAGS
                && *k != crate::message_store::record::PROPERTY_KEYS
        })
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_levels() {
        let l = parse_delay_levels(DEFAULT_DELAY_LEVELS).unwrap();
        assert_eq!(l.len(), 18);
        assert_eq!(l[0], 1000);
        assert_eq!(l[1], 5000);
        assert_eq!(l[4], 60_000);
        assert_eq!(l[17], 7_200_000);
    }

    #[test]
    fn units_and_errors() {
        assert_eq!(
            parse_delay_levels("250ms 1d").unwrap(),
            vec![250, 86_400_000]
        );
        assert!(parse_delay_levels("").is_err());
        assert!(parse_delay_levels("5").is_err());
        assert!(parse_delay_levels("s").is_err());
        assert!(parse_delay_levels("5y").is_err());
        assert!(parse_delay_levels("99999999999999999999h").is_err());
    }

    #[test]
    fn clamping() {
        assert_eq!(clamp_level(3, 18), 3);
        assert_eq!(clamp_level(40, 18), 18);
        assert_eq!(clamp_level(0, 18), 1);
    }

    #[test]
    fn scheduling_properties_are_removed() {
        let props = [
            ("TAGS", "a"),
            ("DELAY", "2"),
            ("REAL_TOPIC", "T"),
            ("REAL_QID", "1"),
            ("UNIQ_KEY", "u"),
            ("__STARTDELIVERTIME", "5"),
        ];
        assert_eq!(
            delivered_properties(props.into_iter()),
            vec![("UNIQ_KEY".to_string(), "u".to_string())]
        );
    }
}
