//! The broker's own permission (RocketMQ `brokerPermission`, changed by
//! `wipeWritePerm` / `addWritePerm`): kept in
//! `<data_dir>/config/broker_permission.json` so a broker whose write
//! permission was wiped stays read-only across restarts until an operator
//! adds it back.
//!
//! While the broker lacks write permission every send (and send-back) is
//! refused with `PermissionDenied`, and its registrations carry each topic's
//! permission ANDed with the broker's, so the NameServers' routes show its
//! queues as not writable and producers route elsewhere (RocketMQ's
//! `registerBrokerAll` does the same AND).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use skylark_codec::{ErrorCode, TopicConfig, WireError, PERM_INHERIT, PERM_READ, PERM_WRITE};

use crate::live_settings::{perm_text, LiveSettings};

/// The live-setting key of the broker permission.
pub const KEY: &str = "broker_permission";

#[derive(Debug, Serialize, Deserialize)]
struct Persisted {
    /// `PERM_READ | PERM_WRITE` bits.
    perm: u8,
}

/// The file under the broker's `config/` directory.
pub fn path(config_dir: &Path) -> PathBuf {
    config_dir.join("broker_permission.json")
}

/// Applies the persisted permission, if any, to `live`.
pub fn load(config_dir: &Path, live: &LiveSettings) -> std::io::Result<()> {
    if let Some(p) = crate::persist::read_json::<Persisted>(&path(config_dir))? {
        live.set(KEY, &(p.perm & (PERM_READ | PERM_WRITE)).to_string())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
    }
    Ok(())
}

/// Writes `perm` (blocking: run it off the actor's thread).
pub fn save(config_dir: &Path, perm: u8) -> std::io::Result<()> {
    crate::persist::write_json(&path(config_dir), &Persisted { perm })
}

/// The topic as registered with the NameServers: its permission ANDed
/// with the broker's.
pub fn registered(mut t: TopicConfig, broker_perm: u8) -> TopicConfig {
    t.perm &= broker_perm | PERM_INHERIT;
    t
}

/// Refuses a write while the broker's write permission is wiped.
pub fn check_writable(live: &LiveSettings, broker_name: &str) -> Result<(), WireError> {
    check_broker_perm(
        live,
        PERM_WRITE,
        broker_name,
        "writable",
        "; `skylark admin broker perm add-write` restores it",
    )
}

/// Refuses a pull while the broker's read permission is off.
pub fn check_readable(live: &LiveSettings, broker_name: &str) -> Result<(), WireError> {
    check_broker_perm(live, PERM_READ, broker_name, "readable", "")
}

/// `PermissionDenied` unless the broker's permission has `bit`.
fn check_broker_perm(
    live: &LiveSettings,
    bit: u8,
    broker_name: &str,
    wanted: &str,
    hint: &str,
) -> Result<(), WireError> {
    let perm = live.broker_permission();
    if perm & bit != 0 {
        return Ok(());
    }
    Err(WireError::new(
        ErrorCode::PermissionDenied,
        format!(
            "broker '{broker_name}' is not {wanted} (broker permission {}{hint})",
            perm_text(perm)
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BrokerConfig;

    #[test]
    fn persisted_permission_survives_and_ands_topics() {
        let dir = tempfile::tempdir().unwrap();
        let live = LiveSettings::from_config(&BrokerConfig::default());
        load(dir.path(), &live).unwrap();
        assert_eq!(live.broker_permission(), PERM_READ | PERM_WRITE);
        assert!(check_writable(&live, "b").is_ok());
        save(dir.path(), PERM_READ).unwrap();
        let live = LiveSettings::from_config(&BrokerConfig::default());
        load(dir.path(), &live).unwrap();
        assert_eq!(live.broker_permission(), PERM_READ);
        let e = check_writable(&live, "b").unwrap_err();
        assert_eq!(e.code, ErrorCode::PermissionDenied);
        assert!(e.message.contains("not writable"), "{}", e.message);
        let t = registered(TopicConfig::new("T", 2), PERM_READ);
        assert_eq!(t.perm, PERM_READ);
    }
}
