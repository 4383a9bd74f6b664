//! The broker settings that can be changed while it runs
//! (`skylark admin broker config set KEY VALUE`, RocketMQ's
//! `updateBrokerConfig` for the keys that take effect at once).
//!
//! The [`Broker`](crate::broker::Broker) actor owns them and is the only
//! writer (its `SetBrokerSetting` handler); request handlers read them
//! through the shared `Arc` (atomics: a read cache the owner writes, as
//! docs/architecture.md allows). Changes last until the broker stops; the
//! configuration file stays the source of the values at start.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};

use crate::config::BrokerConfig;

/// Every live key, in the order `broker config get` lists them.
pub const LIVE_KEYS: &[&str] = &[
    "auto_create_topic",
    "default_topic_queues",
    "long_poll_max_ms",
    "max_pull_bytes",
    "enable_property_filter",
    "broker_permission",
];

/// Why a setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingError {
    #[error("unknown broker setting '{0}' (live settings: {keys})", keys = LIVE_KEYS.join(", "))]
    Unknown(String),
    #[error("broker setting '{0}' cannot be changed while the broker runs (live settings: {keys})", keys = LIVE_KEYS.join(", "))]
    NotLive(String),
    #[error("cannot persist broker setting '{0}': {1}")]
    Persist(String, String),
    #[error("bad value '{value}' for broker setting '{key}': {reason}")]
    BadValue {
        key: String,
        value: String,
        reason: String,
    },
}

/// Settings of [`BrokerConfig`] that are not live (refused with
/// [`SettingError::NotLive`] rather than "unknown").
const STATIC_KEYS: &[&str] = &[
    "cluster_name",
    "broker_name",
    "broker_id",
    "listen_host",
    "port",
    "advertised_addr",
    "namesrv",
    "register_interval_secs",
    "max_inflight_per_connection",
    "max_frame_size",
    "max_connections",
    "fd_reserve",
    "frame_read_timeout_ms",
    "connection_idle_secs",
    "write_high_water_bytes",
    "write_low_water_bytes",
    "inflight_high_water",
    "inflight_low_water",
    "buffered_answer_budget_bytes",
    "incomplete_frame_budget_bytes",
    "store",
];

/// The live settings' current values.
#[derive(Debug)]
pub struct LiveSettings {
    auto_create_topic: AtomicBool,
    default_topic_queues: AtomicU32,
    long_poll_max_ms: AtomicU64,
    max_pull_bytes: AtomicU32,
    enable_property_filter: AtomicBool,
    /// The broker's own read/write permission (RocketMQ `brokerPermission`,
    /// `PERM_READ | PERM_WRITE` bits); persisted by the Broker actor.
    broker_permission: AtomicU8,
}

impl LiveSettings {
    /// The values of the configuration the broker started with.
    pub fn from_config(c: &BrokerConfig) -> LiveSettings {
        LiveSettings {
            auto_create_topic: AtomicBool::new(c.auto_create_topic),
            default_topic_queues: AtomicU32::new(c.default_topic_queues),
            long_poll_max_ms: AtomicU64::new(c.long_poll_max_ms),
            max_pull_bytes: AtomicU32::new(c.max_pull_bytes),
            enable_property_filter: AtomicBool::new(c.enable_property_filter),
            broker_permission: AtomicU8::new(skylark_codec::PERM_READ | skylark_codec::PERM_WRITE),
        }
    }

    pub fn auto_create_topic(&self) -> bool {
        self.auto_create_topic.load(Relaxed)
    }
    pub fn default_topic_queues(&self) -> u32 {
        self.default_topic_queues.load(Relaxed)
    }
    pub fn long_poll_max_ms(&self) -> u64 {
        self.long_poll_max_ms.load(Relaxed)
    }
    pub fn max_pull_bytes(&self) -> u32 {
        self.max_pull_bytes.load(Relaxed)
    }
    pub fn enable_property_filter(&self) -> bool {
        self.enable_property_filter.load(Relaxed)
    }
    /// `PERM_READ | PERM_WRITE` bits of the whole broker.
    pub fn broker_permission(&self) -> u8 {
        self.broker_permission.load(Relaxed)
    }

    /// Every live setting as `(key, value)` text.
    pub fn list(&self) -> Vec<(String, String)> {
        LIVE_KEYS
            .iter()
            .map(|k| (k.to_string(), self.get(k).unwrap_or_default()))
            .collect()
    }

    /// One setting as text.
    pub fn get(&self, key: &str) -> Option<String> {
        Some(match key {
            "auto_create_topic" => self.auto_create_topic().to_string(),
            "default_topic_queues" => self.default_topic_queues().to_string(),
            "long_poll_max_ms" => self.long_poll_max_ms().to_string(),
            "max_pull_bytes" => self.max_pull_bytes().to_string(),
            "enable_property_filter" => self.enable_property_filter().to_string(),
            "broker_permission" => perm_text(self.broker_permission()),
            _ => return None,
        })
    }

    /// Parses and applies `value` (the Broker actor calls this).
    pub(crate) fn set(&self, key: &str, value: &str) -> Result<(), SettingError> {
        let bad = |reason: &str| SettingError::BadValue {
            key: key.to_string(),
            value: value.to_string(),
            reason: reason.to_string(),
        };
        let boolean = || match value.trim() {
            v if v.eq_ignore_ascii_case("true") => Ok(true),
            v if v.eq_ignore_ascii_case("false") => Ok(false),
            _ => Err(bad("expected true or false")),
        };
        let positive = |max: u64| match value.trim().parse::<u64>() {
            Ok(n) if n >= 1 && n <= max => Ok(n),
            _ => Err(bad(&format!("expected a whole number from 1 to {max}"))),
        };
        match key {
            "auto_create_topic" => self.auto_create_topic.store(boolean()?, Relaxed),
            "enable_property_filter" => self.enable_property_filter.store(boolean()?, Relaxed),
            "broker_permission" => self
                .broker_permission
                .store(parse_perm(value).map_err(|e| bad(&e))?, Relaxed),
            "default_topic_queues" => self
                .default_topic_queues
                .store(positive(1024)? as u32, Relaxed),
            "long_poll_max_ms" => self.long_poll_max_ms.store(positive(3_600_000)?, Relaxed),
            "max_pull_bytes" => self
                .max_pull_bytes
                .store(positive(u32::MAX as u64)? as u32, Relaxed),
            k if STATIC_KEYS.contains(&k) || k.starts_with("store.") => {
                return Err(SettingError::NotLive(k.to_string()))
            }
            k => return Err(SettingError::Unknown(k.to_string())),
        }
        Ok(())
    }
}

/// `rw`, `r-`, `-w` or `--` for `PERM_READ | PERM_WRITE` bits.
pub fn perm_text(perm: u8) -> String {
    let r = if perm & skylark_codec::PERM_READ != 0 {
        'r'
    } else {
        '-'
    };
    let w = if perm & skylark_codec::PERM_WRITE != 0 {
        'w'
    } else {
        '-'
    };
    format!("{r}{w}")
}

/// Reads a permission: `rw`, `r`, `w`, `-`/`none` (also `r-`, `-w`, `--`)
/// or RocketMQ's numbers 6, 4, 2, 0.
pub fn parse_perm(value: &str) -> Result<u8, String> {
    use skylark_codec::{PERM_READ as R, PERM_WRITE as W};
    Ok(match value.trim().to_ascii_lowercase().as_str() {
        "rw" | "6" => R | W,
        "r" | "r-" | "4" => R,
        "w" | "-w" | "2" => W,
        "-" | "--" | "none" | "0" => 0,
        _ => return Err("expected rw, r, w or - (or RocketMQ's 6, 4, 2, 0)".to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_set_and_refusals_name_the_key() {
        let s = LiveSettings::from_config(&BrokerConfig::default());
        assert_eq!(s.list().len(), LIVE_KEYS.len());
        assert_eq!(s.get("enable_property_filter").as_deref(), Some("true"));
        s.set("enable_property_filter", "false").unwrap();
        assert!(!s.enable_property_filter());
        s.set("long_poll_max_ms", "2000").unwrap();
        assert_eq!(s.long_poll_max_ms(), 2000);
        s.set("default_topic_queues", "8").unwrap();
        assert_eq!(s.get("default_topic_queues").as_deref(), Some("8"));
        let e = s.set("no_such_key", "1").unwrap_err();
        assert!(e.to_string().contains("'no_such_key'"), "{e}");
        let e = s.set("port", "1").unwrap_err();
        assert!(matches!(e, SettingError::NotLive(_)) && e.to_string().contains("'port'"));
        let e = s.set("max_pull_bytes", "0").unwrap_err();
        assert!(e.to_string().contains("'max_pull_bytes'"), "{e}");
        let e = s.set("auto_create_topic", "yes").unwrap_err();
        assert!(e.to_string().contains("'auto_create_topic'"), "{e}");
        assert!(s.auto_create_topic());
        assert_eq!(s.get("broker_permission").as_deref(), Some("rw"));
        s.set("broker_permission", "4").unwrap();
        assert_eq!(s.get("broker_permission").as_deref(), Some("r-"));
        s.set("broker_permission", "-").unwrap();
        assert_eq!(s.broker_permission(), 0);
        assert!(s.set("broker_permission", "x").is_err());
    }
}
