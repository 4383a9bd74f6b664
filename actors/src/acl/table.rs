//! The ACL file (`conf/acl.toml`) and the in-memory table made from it:
//! accounts, their secrets, and what each may do. Plain Rust, no actors, so
//! it is unit-tested as is.
//!
//! Permissions are RocketMQ's: `DENY`, `PUB`, `SUB`, `PUB|SUB` (also
//! written `SUB|PUB`). A topic or group named in `topic_perms` /
//! `group_perms` gets that permission; every other one gets the account's
//! `default_topic_perm` (default `DENY`) / `default_group_perm` (default
//! `SUB`). `admin = true` accounts may do everything except act as a
//! broker; `broker = true` marks the cluster's broker credential (broker
//! registration, slave metadata sync and the HA stream).

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;
use serde::Deserialize;

/// What an account may do with one topic or group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Perm {
    /// May publish (send to a topic).
    pub publish: bool,
    /// May subscribe (pull a topic, consume as a group).
    pub subscribe: bool,
}

impl Perm {
    /// `DENY`.
    pub const DENY: Perm = Perm {
        publish: false,
        subscribe: false,
    };
    /// `PUB`.
    pub const PUB: Perm = Perm {
        publish: true,
        subscribe: false,
    };
    /// `SUB`.
    pub const SUB: Perm = Perm {
        publish: false,
        subscribe: true,
    };

    /// Whether this permission covers `need`.
    pub fn allows(self, need: Perm) -> bool {
        (self.publish || !need.publish) && (self.subscribe || !need.subscribe)
    }
}

impl std::str::FromStr for Perm {
    type Err = String;

    fn from_str(s: &str) -> Result<Perm, String> {
        let mut p = Perm::DENY;
        let t = s.trim();
        if t.eq_ignore_ascii_case("DENY") {
            return Ok(p);
        }
        for part in t.split('|') {
            match part.trim().to_ascii_uppercase().as_str() {
                "PUB" => p.publish = true,
                "SUB" => p.subscribe = true,
                _ => {
                    return Err(format!(
                        "bad permission '{s}': expected DENY, PUB, SUB or PUB|SUB"
                    ))
                }
            }
        }
        Ok(p)
    }
}

impl fmt::Display for Perm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match (self.publish, self.subscribe) {
            (false, false) => "DENY",
            (true, false) => "PUB",
            (false, true) => "SUB",
            (true, true) => "PUB|SUB",
        })
    }
}

/// One account as written in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountFile {
    access_key: String,
    secret_key: String,
    #[serde(default)]
    admin: bool,
    #[serde(default)]
    broker: bool,
    #[serde(default)]
    default_topic_perm: Option<String>,
    #[serde(default)]
    default_group_perm: Option<String>,
    #[serde(default)]
    topic_perms: HashMap<String, String>,
    #[serde(default)]
    group_perms: HashMap<String, String>,
    #[serde(default)]
    allowed_addresses: Vec<String>,
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct AclFile {
    #[serde(default = "default_window")]
    timestamp_window_secs: u64,
    #[serde(default = "default_replay_entries")]
    replay_cache_entries: usize,
    #[serde(default)]
    accounts: Vec<AccountFile>,
}

fn default_window() -> u64 {
    60
}

fn default_replay_entries() -> usize {
    super::replay::DEFAULT_ENTRIES
}

/// One account, ready to check requests against.
#[derive(Clone)]
pub struct Account {
    /// Public name.
    pub access_key: String,
    /// The shared secret (never logged: `Debug` hides it).
    pub(crate) secret_key: String,
    /// May run admin commands and bypasses topic/group permissions.
    pub admin: bool,
    /// The cluster's broker credential.
    pub broker: bool,
    /// Permission on topics not listed.
    pub default_topic_perm: Perm,
    /// Permission on groups not listed.
    pub default_group_perm: Perm,
    topic_perms: HashMap<String, Perm>,
    group_perms: HashMap<String, Perm>,
    /// Empty: any address; else the peer must match one entry.
    allowed: Vec<IpNet>,
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("access_key", &self.access_key)
            .field("secret_key", &"***")
            .field("admin", &self.admin)
            .field("broker", &self.broker)
            .finish_non_exhaustive()
    }
}

impl Account {
    /// The account's permission on `topic`.
    pub fn topic_perm(&self, topic: &str) -> Perm {
        self.topic_perms
            .get(topic)
            .copied()
            .unwrap_or(self.default_topic_perm)
    }

    /// The account's permission on `group`.
    pub fn group_perm(&self, group: &str) -> Perm {
        self.group_perms
            .get(group)
            .copied()
            .unwrap_or(self.default_group_perm)
    }

    /// Whether requests from `ip` may use this account.
    pub fn address_allowed(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.allowed.is_empty() || self.allowed.iter().any(|n| n.contains(&ip))
    }
}

/// Every account, by access key, the replay window and the replay cache's
/// bound.
#[derive(Debug, Clone)]
pub struct AclTable {
    /// Accounts by access key.
    pub accounts: HashMap<String, Account>,
    /// A signed request's timestamp may differ from this server's clock by
    /// at most this much (ms).
    pub window_ms: u64,
    /// Signed requests remembered within the window (replay detection).
    pub replay_cache_entries: usize,
}

impl Default for AclTable {
    fn default() -> Self {
        AclTable {
            accounts: HashMap::new(),
            window_ms: default_window() * 1000,
            replay_cache_entries: default_replay_entries(),
        }
    }
}

impl AclTable {
    /// Parses the TOML text of an ACL file.
    pub fn parse(text: &str) -> Result<AclTable, String> {
        // Not the error's Display: it quotes the offending line, which may
        // be a secret_key.
        let file: AclFile = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|r| text.get(..r.start).unwrap_or(text).matches('\n').count() + 1);
            match line {
                Some(l) => format!("line {l}: {}", e.message()),
                None => e.message().to_string(),
            }
        })?;
        if file.replay_cache_entries == 0 {
            return Err("replay_cache_entries must be positive".into());
        }
        let mut accounts = HashMap::new();
        for a in file.accounts {
            let key = a.access_key.clone();
            if key.is_empty() || a.secret_key.is_empty() {
                return Err("an account has an empty access_key or secret_key".into());
            }
            let account = build_account(a).map_err(|e| format!("account '{key}': {e}"))?;
            if accounts.insert(key.clone(), account).is_some() {
                return Err(format!("access_key '{key}' appears twice"));
            }
        }
        Ok(AclTable {
            accounts,
            window_ms: file.timestamp_window_secs.saturating_mul(1000),
            replay_cache_entries: file.replay_cache_entries,
        })
    }

    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<AclTable, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read ACL file {}: {e}", path.display()))?;
        AclTable::parse(&text).map_err(|e| format!("ACL file {}: {e}", path.display()))
    }
}

fn build_account(a: AccountFile) -> Result<Account, String> {
    let perm = |s: &Option<String>, default: Perm| -> Result<Perm, String> {
        s.as_deref().map_or(Ok(default), str::parse)
    };
    let perms = |m: HashMap<String, String>| -> Result<HashMap<String, Perm>, String> {
        m.into_iter()
            .map(|(k, v)| v.parse().map(|p| (k, p)))
            .collect()
    };
    let allowed = a
        .allowed_addresses
        .iter()
        .map(|s| parse_net(s))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Account {
        default_topic_perm: perm(&a.default_topic_perm, Perm::DENY)?,
        default_group_perm: perm(&a.default_group_perm, Perm::SUB)?,
        topic_perms: perms(a.topic_perms)?,
        group_perms: perms(a.group_perms)?,
        allowed,
        access_key: a.access_key,
        secret_key: a.secret_key,
        admin: a.admin,
        broker: a.broker,
    })
}

/// `10.0.0.0/8`, `::1/128` or a bare address (one host).
fn parse_net(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    if s.contains('/') {
        s.parse::<IpNet>()
            .map_err(|e| format!("bad allowed address '{s}': {e}"))
    } else {
        s.parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|e| format!("bad allowed address '{s}': {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
        timestamp_window_secs = 30
        [[accounts]]
        access_key = "app"
        secret_key = "s3cret"
        default_topic_perm = "SUB"
        topic_perms = { orders = "PUB|SUB", audit = "DENY" }
        group_perms = { g1 = "DENY" }
        allowed_addresses = ["10.0.0.0/8", "127.0.0.1"]
        [[accounts]]
        access_key = "root"
        secret_key = "x"
        admin = true
    "#;

    #[test]
    fn parses_accounts_and_permissions() {
        let t = AclTable::parse(SAMPLE).unwrap();
        assert_eq!(t.window_ms, 30_000);
        let a = &t.accounts["app"];
        assert!(!a.admin);
        assert_eq!(a.topic_perm("orders"), "PUB|SUB".parse().unwrap());
        assert_eq!(a.topic_perm("audit"), Perm::DENY);
        assert_eq!(a.topic_perm("other"), Perm::SUB);
        assert_eq!(a.group_perm("g1"), Perm::DENY);
        assert_eq!(a.group_perm("g2"), Perm::SUB);
        assert!(a.address_allowed("10.1.2.3".parse().unwrap()));
        assert!(a.address_allowed("127.0.0.1".parse().unwrap()));
        assert!(a.address_allowed("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!a.address_allowed("192.168.1.1".parse().unwrap()));
        let r = &t.accounts["root"];
        assert!(r.admin && r.address_allowed("192.168.1.1".parse().unwrap()));
        assert_eq!(r.topic_perm("x"), Perm::DENY);
    }

    #[test]
    fn bad_files_are_errors_that_hide_secrets() {
        for bad in [
            "[[accounts]]\naccess_key = \"a\"\nsecret_key = \"hunter2\"\ndefault_topic_perm = \"WRITE\"",
            "[[accounts]]\naccess_key = \"a\"\nsecret_key = \"hunter2\"\nallowed_addresses = [\"nope\"]",
            "[[accounts]]\naccess_key = \"a\"\nsecret_key = \"hunter2\"\n[[accounts]]\naccess_key = \"a\"\nsecret_key = \"hunter2\"",
            "[[accounts]]\naccess_key = \"a\"\nsecret_key = \"\"",
            "[[accounts]]\naccess_key = \"a\"\nsecret_key = \"hunter2\"\nadmn = true",
            "not toml [",
            "[[accounts]]\naccess_key = \"a\"\nsecret_key = hunter2",
        ] {
            let e = AclTable::parse(bad).unwrap_err();
            assert!(!e.contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn the_example_acl_file_parses() {
        let t = AclTable::parse(include_str!("../../../conf/acl.toml")).unwrap();
        assert!(t.accounts["broker"].broker);
        assert!(t.accounts["ops"].admin);
        let app = &t.accounts["order-service"];
        assert!(app.topic_perm("orders").allows(Perm::PUB));
        assert_eq!(app.group_perm("other"), Perm::DENY);
    }

    #[test]
    fn perm_covers() {
        let both: Perm = "sub|pub".parse().unwrap();
        assert!(both.allows(Perm::PUB) && both.allows(Perm::SUB));
        assert!(!Perm::PUB.allows(Perm::SUB));
        assert!(Perm::DENY.allows(Perm::DENY));
        assert_eq!(both.to_string(), "PUB|SUB");
    }
}
