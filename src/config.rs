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
/// (`key`, value) pairs from command-line flags. A key of the file that
/// `T` has no setting for is an error that names it.
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
        if f.is_dir() {
            return Err(ConfigError(format!(
                "{} is a directory, not a configuration file",
                f.display()
            )));
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
    let mut ignored = Vec::new();
    let value: T = serde_ignored::deserialize(cfg, |path| ignored.push(path.to_string()))
        .map_err(|e| ConfigError(e.to_string()))?;
    if let Some(f) = file {
        refuse_unknown_keys(f, &ignored)?;
    }
    Ok(value)
}

/// A key of the file that no setting has is an error naming it: a typo
/// (`flush_mod = "sync"`) must not leave a broker running on the default
/// it meant to change. Unknown `SKYLARK_*` variables are passed over: the
/// environment also carries the CLI's own (`SKYLARK_NAMESRV`, ...).
fn refuse_unknown_keys(file: &Path, ignored: &[String]) -> Result<(), ConfigError> {
    if ignored.is_empty() {
        return Ok(());
    }
    let in_file = Config::builder()
        .add_source(File::from(file).format(FileFormat::Toml).required(true))
        .build()
        .map_err(|e| ConfigError(e.to_string()))?;
    let unknown: Vec<&str> = ignored
        .iter()
        .filter(|k| in_file.get::<config::Value>(k).is_ok())
        .map(String::as_str)
        .collect();
    match unknown.as_slice() {
        [] => Ok(()),
        keys => Err(ConfigError(format!(
            "{}: unknown key{} {} (no such setting; conf/*.toml lists every key with its default)",
            file.display(),
            if keys.len() > 1 { "s" } else { "" },
            keys.iter()
                .map(|k| format!("'{k}'"))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
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

    fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn a_key_of_the_file_that_no_setting_has_is_refused_by_name() {
        let f = file("port = 10999\nflush_mod = \"sync\"\n[store]\nflush_mode = \"sync\"\nflushinterval_ms = 5\n");
        let e = load::<BrokerConfig>(Some(f.path()), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("'flush_mod'"), "{e}");
        assert!(e.contains("'store.flushinterval_ms'"), "{e}");
        assert!(e.contains("unknown keys"), "{e}");
        assert!(
            !e.contains("'port'") && !e.contains("'store.flush_mode'"),
            "{e}"
        );

        let ok = file("port = 10999\n[store]\nflush_mode = \"sync\"\n");
        let cfg: BrokerConfig = load(Some(ok.path()), &[]).unwrap();
        assert_eq!(cfg.port, 10999);
        // A NameServer file with a broker's key is refused too.
        let ns = file("port = 9877\nbroker_name = \"b\"\n");
        let e = load::<skylark_actors::config::NameServerConfig>(Some(ns.path()), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown key 'broker_name'"), "{e}");
    }

    #[test]
    fn a_word_setting_with_a_wrong_word_lists_the_right_ones() {
        for (text, says) in [
            (
                "[store]\nflush_mode = \"syncc\"\n",
                "'syncc' is not a value of flush_mode (one of: async, sync)",
            ),
            (
                "broker_role = \"MASTER\"\n",
                "'MASTER' is not a value of broker_role (one of: ASYNC_MASTER, SYNC_MASTER, SLAVE)",
            ),
            (
                "tls_mode = \"on\"\n",
                "'on' is not a value of tls_mode (one of: disabled, permissive, enforcing)",
            ),
        ] {
            let f = file(text);
            let e = load::<BrokerConfig>(Some(f.path()), &[])
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{text}: {e}");
        }
        let f = file("broker_role = \"SYNC_MASTER\"\ntls_mode = \"permissive\"\n[store]\nflush_mode = \"sync\"\n");
        let cfg: BrokerConfig = load(Some(f.path()), &[]).unwrap();
        assert_eq!(
            cfg.broker_role,
            skylark_actors::config::BrokerRole::SyncMaster
        );
        assert_eq!(cfg.tls_mode, skylark_actors::tls::TlsMode::Permissive);
        assert_eq!(
            cfg.store.flush_mode,
            skylark_actors::message_store::FlushMode::Sync
        );
    }

    #[test]
    fn every_shipped_configuration_file_loads() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
        let mut n = 0;
        for entry in std::fs::read_dir(&root).unwrap() {
            let p = entry.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let r = if name.starts_with("namesrv") {
                load::<skylark_actors::config::NameServerConfig>(Some(&p), &[]).map(drop)
            } else if name.starts_with("broker") || name.starts_with("standalone") {
                load::<BrokerConfig>(Some(&p), &[]).map(drop)
            } else if name.starts_with("controller") {
                load::<skylark_actors::controller::ControllerConfig>(Some(&p), &[]).map(drop)
            } else {
                continue;
            };
            r.unwrap_or_else(|e| panic!("{name}: {e}"));
            n += 1;
        }
        assert!(n >= 3, "only {n} configuration files under conf/");
    }
}
