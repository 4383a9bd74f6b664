//! Configuration loading: embedded defaults → file → `SKYLARK_*` environment
//! → command-line flags, with the `config` crate.
//!
//! Nested keys use `__` in the environment: `SKYLARK_STORE__FLUSH_MODE=sync`
//! sets `[store] flush_mode`. Top-level keys use one `_` after the prefix:
//! `SKYLARK_PORT=10912`. (`SKYLARK_NAMESRV` also feeds the CLI's `--namesrv`.)
//!
//! [`STANDALONE_STORE_DEFAULTS`] are the laptop-sized store sizes
//! `skylark standalone` starts from (`broker` keeps RocketMQ's).

use std::path::Path;

use config::{Config, Environment, File, FileFormat};
use serde::de::DeserializeOwned;

/// A configuration that could not be loaded, with the reason.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(String);

/// Loads `T` from (optional) `file`, then the environment, then `overrides`
/// (`key`, value) pairs from command-line flags. Unknown keys are errors.
pub fn load<T: DeserializeOwned>(
    file: Option<&Path>,
    overrides: &[(&str, config::Value)],
) -> Result<T, ConfigError> {
    load_with_defaults(file, &[], overrides)
}

/// [`load`] with `defaults` (`key`, value) layered under everything else:
/// they replace `T`'s serde defaults and lose to the file, the environment
/// and the flags. `standalone` uses it for its laptop-sized store.
pub fn load_with_defaults<T: DeserializeOwned>(
    file: Option<&Path>,
    defaults: &[(&str, config::Value)],
    overrides: &[(&str, config::Value)],
) -> Result<T, ConfigError> {
    let mut b = Config::builder();
    for (k, v) in defaults {
        b = b
            .set_default(*k, v.clone())
            .map_err(|e| ConfigError(e.to_string()))?;
    }
    if let Some(f) = file {
        if !f.exists() {
            return Err(ConfigError(format!("file {} does not exist", f.display())));
        }
        b = b.add_source(File::from(f).format(FileFormat::Toml).required(true));
    }
    b = b.add_source(
        Environment::with_prefix("SKYLARK")
            .prefix_separator("_")
            .separator("__")
            .try_parsing(true)
            .ignore_empty(true),
    );
    for (k, v) in overrides {
        b = b
            .set_override(*k, v.clone())
            .map_err(|e| ConfigError(e.to_string()))?;
    }
    let cfg = b.build().map_err(|e| ConfigError(e.to_string()))?;
    cfg.try_deserialize()
        .map_err(|e| ConfigError(e.to_string()))
}

/// Store sizes `skylark standalone` uses unless the file, the environment or
/// a flag says otherwise: a quickstart should not preallocate a 1 GiB
/// CommitLog segment and a 420 MB IndexFile. `skylark broker` keeps
/// RocketMQ's defaults (1 GiB segments, 300 000 entries per ConsumeQueue
/// file, 5 000 000 index slots × 20 000 000 entries).
///
/// | key | standalone | broker |
/// |---|---|---|
/// | `store.segment_size` | 64 MiB | 1 GiB |
/// | `store.cq_entries_per_file` | 30 000 (600 KB) | 300 000 (6 MB) |
/// | `store.index_slots` | 100 000 | 5 000 000 |
/// | `store.index_entries` | 400 000 (≈8.4 MB a file) | 20 000 000 (≈420 MB) |
pub const STANDALONE_STORE_DEFAULTS: [(&str, i64); 4] = [
    ("store.segment_size", 64 << 20),
    ("store.cq_entries_per_file", 30_000),
    ("store.index_slots", 100_000),
    ("store.index_entries", 400_000),
];

/// [`STANDALONE_STORE_DEFAULTS`] as `config` values.
pub fn standalone_defaults() -> Vec<(&'static str, config::Value)> {
    STANDALONE_STORE_DEFAULTS
        .iter()
        .map(|(k, v)| (*k, config::Value::from(*v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use skylark_actors::config::BrokerConfig;

    #[test]
    fn standalone_defaults_are_laptop_sized_and_lose_to_the_environment_and_flags() {
        let cfg: BrokerConfig = load_with_defaults(None, &standalone_defaults(), &[]).unwrap();
        assert_eq!(cfg.store.segment_size, 64 << 20);
        assert_eq!(cfg.store.index_slots, 100_000);
        assert_eq!(cfg.store.index_entries, 400_000);
        assert_eq!(cfg.store.cq_entries_per_file, 30_000);
        let broker: BrokerConfig = load(None, &[]).unwrap();
        assert_eq!(
            broker.store.segment_size,
            1 << 30,
            "broker keeps RocketMQ's"
        );
        let flag = [("store.segment_size", config::Value::from(1i64 << 20))];
        let cfg: BrokerConfig = load_with_defaults(None, &standalone_defaults(), &flag).unwrap();
        assert_eq!(cfg.store.segment_size, 1 << 20);
    }
}
