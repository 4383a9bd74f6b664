//! Configuration loading: embedded defaults → file → `SKYLARK_*` environment
//! → command-line flags, with the `config` crate.
//!
//! Nested keys use `__` in the environment: `SKYLARK_STORE__FLUSH_MODE=sync`
//! sets `[store] flush_mode`. Top-level keys use one `_` after the prefix:
//! `SKYLARK_PORT=10912`. (`SKYLARK_NAMESRV` also feeds the CLI's `--namesrv`.)
//!
//! [`STANDALONE_STORE_DEFAULTS`] are the laptop-sized store sizes
//! `skylark standalone` starts from (`broker` keeps RocketMQ's), and
//! [`STANDALONE_BROKER_DEFAULTS`] its own data directory, host and name:
//! defaults, under the file, the environment and the flags.
//!
//! Each server refuses a file written for another ([`RoleConfig`]): by its
//! `role` key, which every file of `conf/` carries, or, in a file without
//! one, when it has keys this server lacks and every key is another
//! server's setting. A file of keys every server has (`port = 10999`, or
//! no key at all) is taken as it is: nothing in it says whose it is.

use std::path::Path;

use config::{Config, Environment, File, FileFormat};
use serde::de::DeserializeOwned;
use skylark_actors::config::{BrokerConfig, ConfRole, NameServerConfig};
use skylark_actors::controller::ControllerConfig;

/// The configuration of one server: the loader refuses a file written for
/// another ([`ConfRole`]).
pub trait RoleConfig: DeserializeOwned {
    /// The `role` a file of this server may declare.
    const ROLE: ConfRole;
}

impl RoleConfig for NameServerConfig {
    const ROLE: ConfRole = ConfRole::Namesrv;
}

impl RoleConfig for BrokerConfig {
    const ROLE: ConfRole = ConfRole::Broker;
}

impl RoleConfig for ControllerConfig {
    const ROLE: ConfRole = ConfRole::Controller;
}

/// A configuration that could not be loaded, with the reason.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(String);

/// Loads `T` from (optional) `file`, then the environment, then `overrides`
/// (`key`, value) pairs from command-line flags. A key of the file that
/// `T` has no setting for is an error that names it; so is a file written
/// for another server.
pub fn load<T: RoleConfig>(
    file: Option<&Path>,
    overrides: &[(&str, config::Value)],
) -> Result<T, ConfigError> {
    load_with_defaults(file, &[], overrides)
}

/// [`load`] with `defaults` (`key`, value) layered under everything else:
/// they replace `T`'s serde defaults and lose to the file, the environment
/// and the flags. `standalone` uses it for its laptop-sized store.
pub fn load_with_defaults<T: RoleConfig>(
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
        refuse_another_role(f, T::ROLE)?;
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
    let cfg = b
        .build()
        .map_err(|e| ConfigError(one_line(&e.to_string())))?;
    let mut ignored = Vec::new();
    let value: T = serde_ignored::deserialize(cfg, |path| ignored.push(path.to_string()))
        .map_err(|e| ConfigError(with_origin(file, overrides, &e.to_string())))?;
    if let Some(f) = file {
        refuse_unknown_keys(f, T::ROLE, &ignored)?;
    }
    Ok(value)
}

/// A parse error of the `toml` crate on one line: its excerpt of the file
/// with a caret (`1 | port =` / `  |        ^`) dropped, the rest joined.
fn one_line(msg: &str) -> String {
    let excerpt = |l: &str| {
        let l = l.trim_start();
        l.trim_start_matches(|c: char| c.is_ascii_digit())
            .trim_start()
            .starts_with('|')
    };
    msg.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !excerpt(l))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A value's error ("... for key `port`") with where the value came from,
/// in the order the layers win: a flag, the environment variable, the file.
fn with_origin(file: Option<&Path>, overrides: &[(&str, config::Value)], msg: &str) -> String {
    let Some(key) = msg
        .rsplit_once("for key `")
        .and_then(|(_, k)| k.split_once('`'))
        .map(|(k, _)| k)
    else {
        return msg.to_string();
    };
    let var = format!("SKYLARK_{}", key.to_uppercase().replace('.', "__"));
    let in_file =
        || file.filter(|f| file_only(f).is_ok_and(|c| c.get::<config::Value>(key).is_ok()));
    let from = if overrides.iter().any(|(k, _)| *k == key) {
        "from a command-line flag".to_string()
    } else if std::env::var_os(&var).is_some() {
        format!("from the environment, {var}")
    } else if let Some(f) = in_file() {
        format!("in {}", f.display())
    } else {
        return msg.to_string();
    };
    format!("{msg} ({from})")
}

/// The file alone: no defaults, no environment, no flags.
fn file_only(file: &Path) -> Result<Config, ConfigError> {
    Config::builder()
        .add_source(File::from(file).format(FileFormat::Toml).required(true))
        .build()
        .map_err(|e| ConfigError(one_line(&e.to_string())))
}

/// A file whose `role` names another server is refused, naming the file,
/// its role and the command that runs it.
fn refuse_another_role(file: &Path, role: ConfRole) -> Result<(), ConfigError> {
    let Ok(declared) = file_only(file)?.get::<config::Value>("role") else {
        return Ok(());
    };
    let declared = declared
        .into_string()
        .map_err(|e| e.to_string())
        .and_then(ConfRole::try_from)
        .map_err(|e| ConfigError(format!("{}: {e}", file.display())))?;
    if declared == role {
        return Ok(());
    }
    Err(ConfigError(format!(
        "{f} is a {theirs}'s configuration (role = \"{word}\"), not a {ours}'s: run it with `skylark {word} -c {f}`",
        f = file.display(),
        theirs = declared.server(),
        word = declared.as_str(),
        ours = role.server(),
    )))
}

/// A key of the file that no setting has is an error naming it: a typo
/// (`flush_mod = "sync"`) must not leave a broker running on the default
/// it meant to change. When another server has a setting for every key of
/// a file without `role`, the error says whose the file looks. Unknown
/// `SKYLARK_*` variables are passed over: the environment also carries the
/// CLI's own (`SKYLARK_NAMESRV`, ...).
fn refuse_unknown_keys(file: &Path, role: ConfRole, ignored: &[String]) -> Result<(), ConfigError> {
    if ignored.is_empty() {
        return Ok(());
    }
    let in_file = file_only(file)?;
    let unknown: Vec<&str> = ignored
        .iter()
        .filter(|k| in_file.get::<config::Value>(k).is_ok())
        .map(String::as_str)
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    let keys = format!(
        "{}: unknown key{} {}",
        file.display(),
        if unknown.len() > 1 { "s" } else { "" },
        unknown
            .iter()
            .map(|k| format!("'{k}'"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    match looks_written_for(&in_file, role) {
        Some(theirs) => Err(ConfigError(format!(
            "{keys} for a {ours}: the file looks like a {theirs}'s configuration (a {theirs} has a setting for every key of it): run it with `skylark {word} -c {f}`",
            ours = role.server(),
            theirs = theirs.server(),
            word = theirs.as_str(),
            f = file.display(),
        ))),
        None => Err(ConfigError(format!(
            "{keys} (no such setting; conf/*.toml lists every key with its default)"
        ))),
    }
}

/// The other server with a setting for every key of a file that does not
/// say whose it is (no `role`), if there is one.
fn looks_written_for(in_file: &Config, role: ConfRole) -> Option<ConfRole> {
    if in_file.get::<config::Value>("role").is_ok() {
        return None;
    }
    ConfRole::ALL.into_iter().find(|&r| {
        r != role
            && match r {
                ConfRole::Namesrv => fits::<NameServerConfig>(in_file),
                ConfRole::Broker => fits::<BrokerConfig>(in_file),
                ConfRole::Controller => fits::<ControllerConfig>(in_file),
            }
    })
}

/// Whether `T` has a setting for every key of `in_file`.
fn fits<T: DeserializeOwned>(in_file: &Config) -> bool {
    let mut ignored = false;
    let value: Result<T, _> = serde_ignored::deserialize(in_file.clone(), |_| ignored = true);
    value.is_ok() && !ignored
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

/// The broker settings of `skylark standalone` unless the file, the
/// environment or a flag says otherwise: its own data directory, port,
/// host and name. `namesrv` is not among them: standalone's broker
/// registers with standalone's own NameServer, whatever the file says.
pub const STANDALONE_BROKER_DEFAULTS: [(&str, &str); 3] = [
    ("store.data_dir", "./data/standalone"),
    ("listen_host", "127.0.0.1"),
    ("broker_name", "standalone"),
];

/// The broker port of `skylark standalone` unless the file, the
/// environment or `--broker-port` says otherwise (RocketMQ's).
pub const STANDALONE_BROKER_PORT: u16 = 10911;

/// Every default of `skylark standalone`'s broker as `config` values: the
/// [`STANDALONE_BROKER_DEFAULTS`], the port, and the laptop-sized store
/// ([`STANDALONE_STORE_DEFAULTS`]) when `store_sizes`.
pub fn standalone_broker_defaults(store_sizes: bool) -> Vec<(&'static str, config::Value)> {
    let mut d: Vec<(&str, config::Value)> = STANDALONE_BROKER_DEFAULTS
        .iter()
        .map(|(k, v)| (*k, config::Value::from(*v)))
        .collect();
    d.push((
        "port",
        config::Value::from(i64::from(STANDALONE_BROKER_PORT)),
    ));
    if store_sizes {
        d.extend(standalone_defaults());
    }
    d
}

/// Whether `data_dir` holds a CommitLog made with RocketMQ's 1 GiB
/// segments (a standalone store from before its laptop-sized defaults).
pub(crate) fn has_rocketmq_sized_commit_log(data_dir: &Path) -> bool {
    let rocketmq_segment = skylark_actors::message_store::StoreConfig::default().segment_size;
    std::fs::read_dir(data_dir.join("commitlog"))
        .map(|d| {
            d.filter_map(Result::ok)
                .any(|e| e.metadata().is_ok_and(|m| m.len() == rocketmq_segment))
        })
        .unwrap_or(false)
}

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

    /// A TOML syntax error is one line (the `toml` crate's excerpt with a
    /// caret dropped), and a bad value says where it came from: the file
    /// (its error named only the key) or a flag.
    #[test]
    fn errors_are_one_line_and_say_where_a_bad_value_came_from() {
        let f = file("port = \n");
        let e = load::<BrokerConfig>(Some(f.path()), &[])
            .unwrap_err()
            .to_string();
        assert!(!e.contains('\n') && !e.contains('^'), "{e}");
        assert!(
            e.contains("line 1, column 8") && e.contains("invalid string"),
            "{e}"
        );
        let f = file("port = 99999\n");
        let e = load::<BrokerConfig>(Some(f.path()), &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("for key `port`") && e.contains(&format!("(in {})", f.path().display())),
            "{e}"
        );
        let e = load::<BrokerConfig>(Some(f.path()), &[("port", config::Value::from(70000))])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`70000`") && e.contains("(from a command-line flag)"),
            "{e}"
        );
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

    /// The role a file of `conf/` is written for, by its name.
    fn role_by_name(name: &str) -> Option<ConfRole> {
        ConfRole::ALL
            .into_iter()
            .find(|r| name.starts_with(r.as_str()))
    }

    fn load_as(role: ConfRole, p: &Path) -> Result<Option<ConfRole>, ConfigError> {
        match role {
            ConfRole::Namesrv => load::<NameServerConfig>(Some(p), &[]).map(|c| c.role),
            ConfRole::Broker => load::<BrokerConfig>(Some(p), &[]).map(|c| c.role),
            ConfRole::Controller => load::<ControllerConfig>(Some(p), &[]).map(|c| c.role),
        }
    }

    /// Every server file of `conf/` says whose it is, loads for its own
    /// server and is refused by the others, naming the file and the
    /// command that runs it.
    #[test]
    fn every_shipped_configuration_file_loads_for_its_role_only() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
        let mut n = 0;
        for entry in std::fs::read_dir(&root).unwrap() {
            let p = entry.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let Some(own) = role_by_name(&name) else {
                continue;
            };
            let declared = load_as(own, &p).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(declared, Some(own), "{name} says whose it is");
            for other in ConfRole::ALL.into_iter().filter(|&r| r != own) {
                let e = load_as(other, &p).unwrap_err().to_string();
                for says in [
                    format!("{} is a {}'s configuration", p.display(), own.server()),
                    format!("not a {}'s", other.server()),
                    format!("skylark {} -c {}", own.as_str(), p.display()),
                ] {
                    assert!(e.contains(&says), "{name} as {other:?}: {e}");
                }
            }
            n += 1;
        }
        assert!(n >= 3, "only {n} configuration files under conf/");
    }

    /// A file without `role`: refused, naming whose it looks, only when this
    /// server lacks some of its keys and another has them all; a file of
    /// keys every server has (or of none) loads.
    #[test]
    fn a_file_without_role_is_refused_only_when_its_keys_are_another_servers() {
        let ns = file("port = 9877\nbroker_expire_secs = 60\n");
        let e = load_as(ConfRole::Broker, ns.path())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("looks like a NameServer's configuration")
                && e.contains("skylark namesrv -c"),
            "{e}"
        );
        let broker = file("broker_name = \"b\"\n[store]\nflush_mode = \"sync\"\n");
        for role in [ConfRole::Namesrv, ConfRole::Controller] {
            let e = load_as(role, broker.path()).unwrap_err().to_string();
            assert!(
                e.contains("looks like a broker's configuration")
                    && e.contains("skylark broker -c"),
                "{role:?}: {e}"
            );
        }
        let controller = file("node_id = 2\npeers = \"2=127.0.0.1:9882\"\n");
        let e = load_as(ConfRole::Broker, controller.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("looks like a controller's configuration"), "{e}");
        // A typo fits no server: the unknown key is named as before.
        let typo = file("port = 9877\nbroker_expire_sec = 60\n");
        let e = load_as(ConfRole::Namesrv, typo.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown key 'broker_expire_sec'"), "{e}");
        for text in ["", "port = 10999\nlisten_host = \"0.0.0.0\"\n"] {
            let f = file(text);
            for role in ConfRole::ALL {
                load_as(role, f.path()).unwrap_or_else(|e| panic!("{text:?} as {role:?}: {e}"));
            }
        }
        let f = file("role = \"nameserver\"\n");
        let e = load_as(ConfRole::Namesrv, f.path())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("'nameserver' is not a value of role (one of: namesrv, broker, controller)"),
            "{e}"
        );
    }
}
