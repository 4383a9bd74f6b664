//! Configuration loading: embedded defaults → file → `SKYLARK_*` environment
//! → command-line flags, with the `config` crate.
//!
//! Nested keys use `__` in the environment: `SKYLARK_STORE__FLUSH_MODE=sync`
//! sets `[store] flush_mode`. Top-level keys use one `_` after the prefix:
//! `SKYLARK_PORT=10912`. (`SKYLARK_NAMESRV` also feeds the CLI's `--namesrv`.)

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
    let mut b = Config::builder();
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
