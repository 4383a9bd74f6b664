//! Access control (issue 15): who may send, pull, administer and register.
//!
//! With `acl_enabled = true` every request frame must carry a signature
//! trailer ([`skylark_codec::auth`]): an access key, a timestamp and an
//! HMAC-SHA256 over the command, the request id and the body bytes. The
//! [`Connection`](crate::remoting::Connection) calls [`Acl::check`] where it
//! decodes the frame, before any actor sees the request:
//!
//! 1. unsigned, unknown access key, timestamp outside the window (a
//!    stale request), a wrong signature, or a signed frame already seen
//!    inside the window (a replay: [`replay`]), or signed before this
//!    server started (its replay cache cannot vouch for it) → `AuthFailed`;
//! 2. an address outside the account's `allowed_addresses`, or a missing
//!    permission ([`rules`]) → `NoPermission`, naming what was missing
//!    and what the request tried, in the user's words ([`phrase`]).
//!
//! Every refusal is counted and logged, rate limited ([`refusals`]).
//!
//! With ACL off no [`Acl`] exists and the connection skips the check: the
//! request path costs one `Option` test.
//!
//! Ownership: the table is owned by the [`AclWatcher`] actor, which runs on
//! its own arbiter (it reads the file, blocking I/O), looks at the file every
//! second and publishes a new snapshot when it changed; connections read the
//! current snapshot (an `Arc` behind a read lock). A file that no longer
//! parses is refused with an error in the log and the old table stays.
//! [`AclWatcherHandle`] stops that arbiter (its owner's shutdown, or drop).
//! Secrets never appear in logs or error texts.
//!
//! Messages answered by [`AclWatcher`]: [`Reload`] (look at the file now).

pub mod phrase;
pub mod reason;
pub mod refusals;
pub mod replay;
pub mod rules;
pub mod table;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use actix::prelude::*;
use skylark_codec::auth::{verify_ha_hello, verify_request};
use skylark_codec::{Command, ErrorCode, RawFrame, WireError};
use slog::{error, info, Logger};

use refusals::{Reason, RefusalLog, Refused};

pub use table::{Account, AclTable, Perm};

/// A secret read from a configuration: `Debug` shows `***`, so printing
/// a config struct never shows it.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// How often the watcher looks at the ACL file.
pub const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The current ACL of a server: cheap to clone, shared by every connection.
#[derive(Clone)]
pub struct Acl {
    table: Arc<RwLock<Arc<AclTable>>>,
    replay: Arc<replay::ReplayCache>,
    refusals: Arc<RefusalLog>,
}

impl std::fmt::Debug for Acl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Acl({} accounts)", self.snapshot().accounts.len())
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn auth_failed(msg: String) -> WireError {
    WireError::new(ErrorCode::AuthFailed, msg)
}

/// A refused request: the answer, and why (for the log and the counter;
/// `None` for an answer that is no ACL refusal, a body that does not
/// decode).
struct Refusal {
    reason: Option<Reason>,
    error: WireError,
}

impl Refusal {
    fn auth(reason: Reason, msg: String) -> Refusal {
        Refusal {
            reason: Some(reason),
            error: auth_failed(msg),
        }
    }

    fn address(key: &str, ip: IpAddr) -> Refusal {
        Refusal {
            reason: Some(Reason::AddressNotAllowed),
            error: WireError::new(
                ErrorCode::NoPermission,
                format!("access key '{key}' may not be used from address {ip}"),
            ),
        }
    }

    /// A permission rule's answer: `NoPermission` counts as a refusal.
    fn rule(error: WireError) -> Refusal {
        let reason = matches!(
            error.code,
            ErrorCode::NoPermission | ErrorCode::PermissionDenied
        )
        .then_some(Reason::NoPermission);
        Refusal { reason, error }
    }
}

impl Acl {
    /// An ACL with this table (fixed until [`Acl::replace`]) that logs
    /// refusals nowhere (they are still counted).
    pub fn new(table: AclTable) -> Acl {
        Acl::with_log(table, Logger::root(slog::Discard, slog::o!()))
    }

    /// An ACL with this table that logs its refusals to `log`.
    pub fn with_log(table: AclTable, log: Logger) -> Acl {
        Acl {
            replay: Arc::new(replay::ReplayCache::new(table.replay_cache_entries)),
            table: Arc::new(RwLock::new(Arc::new(table))),
            refusals: Arc::new(RefusalLog::new(log)),
        }
    }

    /// `result`, its refusal (if any) counted and logged.
    fn reported<T>(
        &self,
        result: Result<T, Refusal>,
        peer: Option<IpAddr>,
        access_key: Option<&str>,
        request: impl FnOnce() -> String,
    ) -> Result<T, WireError> {
        result.map_err(|r| {
            if let Some(reason) = r.reason {
                self.refusals.report(&Refused {
                    peer,
                    access_key,
                    request: &request(),
                    reason,
                    error: &r.error.message,
                });
            }
            r.error
        })
    }

    /// The table now in force.
    pub fn snapshot(&self) -> Arc<AclTable> {
        match self.table.read() {
            Ok(t) => t.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Puts `table` in force for every later request.
    pub fn replace(&self, table: AclTable) {
        self.replay.set_capacity(table.replay_cache_entries);
        let t = Arc::new(table);
        match self.table.write() {
            Ok(mut g) => *g = t,
            Err(poisoned) => *poisoned.into_inner() = t,
        }
    }

    /// Checks a request frame: signature, replay window, address, and the
    /// permission `cmd` needs (see the module doc).
    pub fn check(&self, cmd: Command, frame: &RawFrame, peer: IpAddr) -> Result<(), WireError> {
        let key = frame.auth.as_deref().map(|a| a.access_key.as_str());
        self.reported(self.check_frame(cmd, frame, peer), Some(peer), key, || {
            format!("{cmd:?}")
        })
    }

    fn check_frame(&self, cmd: Command, frame: &RawFrame, peer: IpAddr) -> Result<(), Refusal> {
        let Some(auth) = frame.auth.as_deref() else {
            return Err(Refusal::auth(Reason::Unsigned, format!(
                "{cmd:?} request is not signed: this server requires ACL credentials (access key and secret key)"
            )));
        };
        let table = self.snapshot();
        let account = self.authenticate(
            &table,
            &auth.access_key,
            auth.timestamp_ms,
            &auth.signature,
            |a| verify_request(&a.secret_key, auth, &frame.header, &frame.body),
            Some(peer),
        )?;
        rules::authorize(account, cmd, &frame.body).map_err(Refusal::rule)
    }

    /// Checks a request on a RocketMQ remoting port, signed as RocketMQ's
    /// `AclClientRPCHook` signs ([`skylark_codec::remoting::acl`]): known
    /// access key, the signature under its secret, an allowed address, then
    /// `authorize` with the account (the permission the request needs).
    /// RocketMQ's signatures carry no timestamp: there is no replay window.
    pub fn check_remoting(
        &self,
        req: &skylark_codec::remoting::RemotingCommand,
        peer: IpAddr,
        authorize: impl FnOnce(&Account) -> Result<(), WireError>,
    ) -> Result<(), WireError> {
        let key = req.ext(skylark_codec::remoting::acl::ACCESS_KEY);
        let result = self.check_remoting_inner(req, key, peer, authorize);
        self.reported(result, Some(peer), key, || {
            format!("request code {}", req.code)
        })
    }

    fn check_remoting_inner(
        &self,
        req: &skylark_codec::remoting::RemotingCommand,
        key: Option<&str>,
        peer: IpAddr,
        authorize: impl FnOnce(&Account) -> Result<(), WireError>,
    ) -> Result<(), Refusal> {
        use skylark_codec::remoting::acl;
        let Some(key) = key else {
            return Err(Refusal::auth(
                Reason::Unsigned,
                format!(
                    "request code {} is not signed: this server requires ACL credentials \
                     (the client's AclClientRPCHook with an access key and secret key)",
                    req.code
                ),
            ));
        };
        let table = self.snapshot();
        let Some(account) = table.accounts.get(key) else {
            return Err(Refusal::auth(
                Reason::UnknownKey,
                format!("unknown access key '{key}'"),
            ));
        };
        if !acl::verify(&account.secret_key, req) {
            return Err(Refusal::auth(Reason::BadSignature, format!(
                "signature mismatch for access key '{key}' (wrong secret key, or the request was altered)"
            )));
        }
        if !account.address_allowed(peer) {
            return Err(Refusal::address(key, peer));
        }
        authorize(account).map_err(Refusal::rule)
    }

    /// Checks a slave's HA hello: the access key must be a broker account,
    /// `rest` (timestamp and signature) valid and within the window.
    pub fn check_ha_hello(
        &self,
        access_key: &str,
        rest: &[u8],
        peer: IpAddr,
    ) -> Result<(), String> {
        let result = self.check_ha_hello_inner(access_key, rest, peer);
        self.reported(result, Some(peer), Some(access_key), || "HA hello".into())
            .map_err(|e| e.message)
    }

    fn check_ha_hello_inner(
        &self,
        access_key: &str,
        rest: &[u8],
        peer: IpAddr,
    ) -> Result<(), Refusal> {
        let table = self.snapshot();
        let account = table.accounts.get(access_key).ok_or_else(|| {
            Refusal::auth(
                Reason::UnknownKey,
                format!("unknown access key '{access_key}'"),
            )
        })?;
        if !account.broker {
            return Err(Refusal::rule(WireError::new(
                ErrorCode::NoPermission,
                format!("access key '{access_key}' is not the cluster's broker credential"),
            )));
        }
        let ts = verify_ha_hello(&account.secret_key, access_key, rest).ok_or_else(|| {
            Refusal::auth(
                Reason::BadSignature,
                format!("signature mismatch for access key '{access_key}'"),
            )
        })?;
        if now_ms().abs_diff(ts) > table.window_ms {
            return Err(Refusal::auth(
                Reason::Stale,
                "HA hello timestamp outside the window".into(),
            ));
        }
        let mut sig = [0u8; skylark_codec::auth::SIGNATURE_LEN];
        sig.copy_from_slice(&rest[8..]);
        self.not_replayed(ts, &sig, &table)?;
        if !account.address_allowed(peer) {
            return Err(Refusal::address(access_key, peer));
        }
        Ok(())
    }
}

impl Acl {
    /// Checks a signed HTTP request that needs an admin account (the
    /// dashboard's message bodies): the `Authorization` header
    /// ([`skylark_codec::auth::http_authorization`]), window, replay,
    /// address and the admin flag. `AuthFailed` / `NoPermission` as for
    /// frames.
    pub fn check_http_admin(
        &self,
        authorization: Option<&str>,
        method: &str,
        path_and_query: &str,
        peer: Option<IpAddr>,
        what: &str,
    ) -> Result<(), WireError> {
        let auth = authorization.map(skylark_codec::auth::parse_http_authorization);
        let key = match &auth {
            Some(Ok(a)) => Some(a.access_key.as_str()),
            _ => None,
        };
        let result = match &auth {
            None => Err(Refusal::auth(
                Reason::Unsigned,
                format!(
                "an admin account's signed Authorization header is needed to {what} (ACL is on)"
            ),
            )),
            Some(Err(e)) => Err(Refusal::auth(Reason::BadSignature, e.clone())),
            Some(Ok(auth)) => {
                let table = self.snapshot();
                self.authenticate(
                    &table,
                    &auth.access_key,
                    auth.timestamp_ms,
                    &auth.signature,
                    |a| {
                        skylark_codec::auth::verify_http(
                            &a.secret_key,
                            auth,
                            method,
                            path_and_query,
                        )
                    },
                    peer,
                )
                .and_then(|account| require_admin(account, what).map_err(Refusal::rule))
            }
        };
        // The path only: a query may hold what the user searched for.
        let path = path_and_query.split('?').next().unwrap_or_default();
        self.reported(result, peer, key, || format!("HTTP {method} {path}"))
    }

    /// Checks a signed opaque payload (a controller request):
    /// [`skylark_codec::auth::sign_payload`]'s signature, window, replay,
    /// address, and what `need` asks of the account
    /// ([`rules::Need::Authenticated`], [`rules::Need::Admin`] or
    /// [`rules::Need::Broker`]; any other need is refused, failing closed).
    /// `what` names the request in a `NoPermission` text.
    #[allow(clippy::too_many_arguments)]
    pub fn check_payload(
        &self,
        access_key: &str,
        timestamp_ms: u64,
        nonce: u64,
        signature: &[u8],
        payload: &[u8],
        peer: Option<IpAddr>,
        need: rules::Need,
        what: &str,
    ) -> Result<(), WireError> {
        // One body, so every refusal below is reported once.
        let result = (|| -> Result<(), Refusal> {
            let Ok(sig) = <[u8; skylark_codec::auth::SIGNATURE_LEN]>::try_from(signature) else {
                return Err(Refusal::auth(
                    Reason::BadSignature,
                    format!(
                        "signature must be {} bytes",
                        skylark_codec::auth::SIGNATURE_LEN
                    ),
                ));
            };
            let table = self.snapshot();
            let account = self.authenticate(
                &table,
                access_key,
                timestamp_ms,
                &sig,
                |a| {
                    skylark_codec::auth::verify_payload(
                        &a.secret_key,
                        access_key,
                        timestamp_ms,
                        nonce,
                        payload,
                        &sig,
                    )
                },
                peer,
            )?;
            match need {
                rules::Need::Authenticated => Ok(()),
                rules::Need::Broker => require_broker(account, what),
                _ => require_admin(account, what),
            }
            .map_err(Refusal::rule)
        })();
        self.reported(result, peer, Some(access_key), || what.to_string())
    }

    /// Whether `creds` is a broker account (`broker = true`) of the table
    /// in force with this secret: a server that signs its own requests
    /// with it (a controller's raft RPCs) checks this at start, so a typo
    /// fails there and not as refused RPCs. The error never shows a secret.
    pub fn check_own_broker_credential(
        &self,
        creds: &skylark_codec::Credentials,
    ) -> Result<(), String> {
        let table = self.snapshot();
        let key = &creds.access_key;
        match table.accounts.get(key) {
            None => Err(format!("access key '{key}' is not in the ACL file")),
            Some(a) if !a.broker => Err(format!(
                "access key '{key}' is not the cluster's broker credential (broker = true)"
            )),
            Some(a) if a.secret_key != creds.secret_key => Err(format!(
                "the secret key of access key '{key}' does not match the ACL file's"
            )),
            Some(_) => Ok(()),
        }
    }

    /// The account `key` if the request is its: known key, timestamp in
    /// the window, `verify` true (the signature under its secret), not a
    /// replay, and `peer` among its allowed addresses.
    fn authenticate<'t>(
        &self,
        table: &'t AclTable,
        key: &str,
        timestamp_ms: u64,
        signature: &[u8; skylark_codec::auth::SIGNATURE_LEN],
        verify: impl FnOnce(&Account) -> bool,
        peer: Option<IpAddr>,
    ) -> Result<&'t Account, Refusal> {
        let Some(account) = table.accounts.get(key) else {
            return Err(Refusal::auth(
                Reason::UnknownKey,
                format!("unknown access key '{key}'"),
            ));
        };
        let skew = now_ms().abs_diff(timestamp_ms);
        if skew > table.window_ms {
            return Err(Refusal::auth(Reason::Stale, format!(
                "request timestamp is {skew} ms away from the server's clock, outside the {} ms window (replayed or stale request, or clock skew)",
                table.window_ms
            )));
        }
        if !verify(account) {
            return Err(Refusal::auth(Reason::BadSignature, format!(
                "signature mismatch for access key '{key}' (wrong secret key, or the request was altered)"
            )));
        }
        self.not_replayed(timestamp_ms, signature, table)?;
        if let Some(ip) = peer.filter(|ip| !account.address_allowed(*ip)) {
            return Err(Refusal::address(key, ip));
        }
        Ok(account)
    }

    /// Records a verified signature; refused if it was seen before in the
    /// window, is older than the replay cache still covers, or was signed
    /// before this server started.
    fn not_replayed(
        &self,
        ts: u64,
        signature: &[u8; skylark_codec::auth::SIGNATURE_LEN],
        table: &AclTable,
    ) -> Result<(), Refusal> {
        let refused = match self
            .replay
            .check_and_record(ts, signature, now_ms(), table.window_ms)
        {
            Ok(()) => return Ok(()),
            Err(r) => r,
        };
        Err(match refused {
            replay::Refusal::Replayed => Refusal::auth(Reason::Replayed, format!(
                "replayed request: this signed frame was already received within the {} ms window",
                table.window_ms
            )),
            replay::Refusal::BeyondReach { floor_ms } => Refusal::auth(Reason::Stale, format!(
                "request timestamp {ts} is not after {floor_ms}, the oldest the replay cache still covers \
                 (more signed requests arrived within the window than replay_cache_entries holds); \
                 send a fresh request"
            )),
            replay::Refusal::BeforeStart { started_ms } => Refusal::auth(Reason::Stale, format!(
                "request timestamp {ts} is before {started_ms}, when this server started: it may be \
                 a request replayed from before a restart (or the client's clock lags the server's); \
                 send a fresh request"
            )),
        })
    }
}

fn require_broker(account: &Account, what: &str) -> Result<(), WireError> {
    if account.broker {
        return Ok(());
    }
    Err(WireError::new(
        ErrorCode::NoPermission,
        format!(
            "the cluster's broker credential needed for {what}: access key '{}' is not a broker account",
            account.access_key
        ),
    ))
}

fn require_admin(account: &Account, what: &str) -> Result<(), WireError> {
    if account.admin {
        return Ok(());
    }
    Err(WireError::new(
        ErrorCode::NoPermission,
        format!(
            "admin rights needed to {what}: access key '{}' is not an admin account",
            account.access_key
        ),
    ))
}

/// The ACL file as last loaded: re-reads it when its modification time or
/// size changed. Shared by [`AclWatcher`] (actix) and [`watch_on_tokio`].
struct FileWatch {
    path: PathBuf,
    seen: Option<(SystemTime, u64)>,
}

impl FileWatch {
    /// Loads `path` (an error if it cannot be read or parsed): the shared
    /// [`Acl`], the watch of its file and the watcher's logger.
    fn open(path: PathBuf, log: Logger) -> Result<(Acl, FileWatch, Logger), String> {
        let seen = stamp(&path);
        let table = AclTable::load(&path)?;
        let log = log.new(slog::o!("actor" => "acl"));
        info!(log, "ACL loaded"; "file" => %path.display(), "accounts" => table.accounts.len());
        let acl = Acl::with_log(table, log.clone());
        Ok((acl, FileWatch { path, seen }, log))
    }

    /// [`FileWatch::reload`] on the watcher's tick: a refused file is
    /// logged and the previous table stays in force.
    fn tick(&mut self, acl: &Acl, log: &Logger) {
        if let Err(e) = self.reload(acl, log) {
            error!(log, "ACL file refused, the previous ACL stays in force"; "error" => e);
        }
    }

    fn reload(&mut self, acl: &Acl, log: &Logger) -> Result<bool, String> {
        let now = stamp(&self.path);
        if now.is_none() || now == self.seen {
            return Ok(false);
        }
        self.seen = now;
        let table = AclTable::load(&self.path)?;
        info!(log, "ACL reloaded"; "file" => %self.path.display(), "accounts" => table.accounts.len());
        acl.replace(table);
        Ok(true)
    }
}

/// Loads `path` and re-reads it every [`RELOAD_CHECK_INTERVAL`] from a
/// tokio task, for a process without an actix System (the controller);
/// abort the task to stop watching.
pub fn watch_on_tokio(
    path: impl Into<PathBuf>,
    log: Logger,
) -> Result<(Acl, tokio::task::JoinHandle<()>), String> {
    let (acl, mut watch, log) = FileWatch::open(path.into(), log)?;
    let a = acl.clone();
    let task = tokio::spawn(async move {
        loop {
            tokio::time::sleep(RELOAD_CHECK_INTERVAL).await;
            // A small file, read once a second: not worth a blocking thread.
            watch.tick(&a, &log);
        }
    });
    Ok((acl, task))
}

/// Owner of the ACL table: reloads it when the file changes.
pub struct AclWatcher {
    acl: Acl,
    /// The file and its modification time and length as last loaded.
    watch: FileWatch,
    log: Logger,
}

/// Look at the ACL file now; answers whether a new table was put in force.
#[derive(Message)]
#[rtype(result = "Result<bool, String>")]
pub struct Reload;

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// A running [`AclWatcher`]: [`AclWatcherHandle::stop`] (or dropping it)
/// stops the watcher's arbiter. The [`Acl`] keeps working with the table
/// last loaded.
pub struct AclWatcherHandle {
    arbiter: Option<Arbiter>,
    addr: Addr<AclWatcher>,
}

impl AclWatcherHandle {
    /// The watcher (send it [`Reload`]).
    pub fn addr(&self) -> &Addr<AclWatcher> {
        &self.addr
    }

    /// Stops the watcher and its arbiter's thread.
    pub fn stop(&mut self) {
        if let Some(a) = self.arbiter.take() {
            a.stop();
        }
    }
}

impl Drop for AclWatcherHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

impl std::fmt::Debug for AclWatcherHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AclWatcherHandle(running: {})", self.arbiter.is_some())
    }
}

impl AclWatcher {
    /// Loads `path` (an error if it cannot be read or parsed) and starts
    /// the watcher on an arbiter of its own; returns the shared [`Acl`] and
    /// the handle that stops the watcher.
    pub fn start(path: impl Into<PathBuf>, log: Logger) -> Result<(Acl, AclWatcherHandle), String> {
        let (acl, watch, log) = FileWatch::open(path.into(), log)?;
        let watcher = AclWatcher {
            acl: acl.clone(),
            watch,
            log,
        };
        let arbiter = Arbiter::new();
        let addr = AclWatcher::start_in_arbiter(&arbiter.handle(), move |_| watcher);
        Ok((
            acl,
            AclWatcherHandle {
                arbiter: Some(arbiter),
                addr,
            },
        ))
    }

    fn reload(&mut self) -> Result<bool, String> {
        self.watch.reload(&self.acl, &self.log)
    }
}

impl Actor for AclWatcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(RELOAD_CHECK_INTERVAL, |act, _| {
            act.watch.tick(&act.acl, &act.log);
        });
    }
}

impl Handler<Reload> for AclWatcher {
    type Result = Result<bool, String>;
    fn handle(&mut self, _: Reload, _ctx: &mut Self::Context) -> Self::Result {
        self.reload()
    }
}

/// The credential a server signs its own requests with, when both halves
/// are configured (`access_key`, `secret_key` of a broker or controller).
pub fn own_credentials(
    access_key: &Option<String>,
    secret_key: &Option<Secret>,
) -> Option<std::sync::Arc<skylark_codec::Credentials>> {
    match (access_key, secret_key) {
        (Some(a), Some(s)) => Some(std::sync::Arc::new(skylark_codec::Credentials::new(
            a.as_str(),
            s.0.as_str(),
        ))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use skylark_codec::auth::encode_signed_frame;
    use skylark_codec::{Credentials, FrameCodec, Header, OutFrame, SendRequest};
    use tokio_util::codec::{Decoder, Encoder};

    const FILE: &str = r#"
        [[accounts]]
        access_key = "app"
        secret_key = "app-secret"
        topic_perms = { orders = "PUB" }
        [[accounts]]
        access_key = "root"
        secret_key = "root-secret"
        admin = true
    "#;

    fn acl() -> Acl {
        acl_of(FILE)
    }

    fn acl_of(file: &str) -> Acl {
        Acl::new(AclTable::parse(file).unwrap())
    }

    fn signed<B: serde::Serialize>(
        cmd: Command,
        body: &B,
        creds: &Credentials,
        ts: u64,
    ) -> RawFrame {
        let mut buf = BytesMut::new();
        encode_signed_frame(&Header::request(1, cmd), body, creds, ts, &mut buf, 1 << 20).unwrap();
        FrameCodec::default().decode(&mut buf).unwrap().unwrap()
    }

    fn send(topic: &str) -> SendRequest {
        SendRequest {
            topic: topic.into(),
            ..SendRequest::default()
        }
    }

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn acl_checks_signature_window_and_permission() {
        let acl = acl();
        let app = Credentials::new("app", "app-secret");
        let ok = signed(Command::SendMessage, &send("orders"), &app, now_ms());
        acl.check(Command::SendMessage, &ok, LOCAL).unwrap();

        let code = |f: &RawFrame, cmd| acl.check(cmd, f, LOCAL).unwrap_err();
        let e = code(
            &signed(Command::SendMessage, &send("audit"), &app, now_ms()),
            Command::SendMessage,
        );
        assert_eq!(e.code, ErrorCode::NoPermission);
        assert!(e.message.contains("PUB on topic 'audit'"), "{}", e.message);

        let wrong = Credentials::new("app", "guess");
        let e = code(
            &signed(Command::SendMessage, &send("orders"), &wrong, now_ms()),
            Command::SendMessage,
        );
        assert_eq!(e.code, ErrorCode::AuthFailed);
        assert!(!e.message.contains("app-secret") && !e.message.contains("guess"));

        let old = signed(
            Command::SendMessage,
            &send("orders"),
            &app,
            now_ms() - 120_000,
        );
        assert_eq!(code(&old, Command::SendMessage).code, ErrorCode::AuthFailed);

        let mut plain = BytesMut::new();
        FrameCodec::default()
            .encode(OutFrame::request(1, &send("orders")), &mut plain)
            .unwrap();
        let plain = FrameCodec::default().decode(&mut plain).unwrap().unwrap();
        assert_eq!(
            code(&plain, Command::SendMessage).code,
            ErrorCode::AuthFailed
        );

        // A field changed after signing (the topic) breaks the signature.
        let mut tampered = ok.clone();
        let mut body = tampered.body.to_vec();
        let at = body.windows(6).position(|w| w == b"orders").unwrap();
        body[at..at + 6].copy_from_slice(b"orderz");
        tampered.body = body.into();
        assert_eq!(
            code(&tampered, Command::SendMessage).code,
            ErrorCode::AuthFailed
        );

        let del = skylark_codec::DeleteTopicRequest {
            topic: "orders".into(),
        };
        let e = code(
            &signed(Command::DeleteTopic, &del, &app, now_ms()),
            Command::DeleteTopic,
        );
        assert_eq!(e.code, ErrorCode::NoPermission);
        let root = Credentials::new("root", "root-secret");
        let f = signed(Command::DeleteTopic, &del, &root, now_ms());
        acl.check(Command::DeleteTopic, &f, LOCAL).unwrap();
        // Admins are not brokers.
        let reg = skylark_codec::RegisterBrokerRequest::default();
        let f = signed(Command::RegisterBroker, &reg, &root, now_ms());
        assert_eq!(
            code(&f, Command::RegisterBroker).code,
            ErrorCode::NoPermission
        );
    }

    #[test]
    fn acl_refuses_a_replayed_frame_but_not_a_fresh_copy() {
        let acl = acl();
        let app = Credentials::new("app", "app-secret");
        let f = signed(Command::SendMessage, &send("orders"), &app, now_ms());
        acl.check(Command::SendMessage, &f, LOCAL).unwrap();
        let e = acl.check(Command::SendMessage, &f, LOCAL).unwrap_err();
        assert_eq!(e.code, ErrorCode::AuthFailed);
        assert!(e.message.contains("replayed request"), "{}", e.message);
        // The same request signed again in the same millisecond: a new nonce.
        let ts = f.auth.as_deref().unwrap().timestamp_ms;
        let again = signed(Command::SendMessage, &send("orders"), &app, ts);
        acl.check(Command::SendMessage, &again, LOCAL).unwrap();
        // A first-version frame (no nonce) verifies once, and not twice.
        let mut buf = BytesMut::new();
        skylark_codec::auth::encode_signed_frame_with_nonce(
            &Header::request(2, Command::SendMessage),
            &send("orders"),
            &app,
            now_ms(),
            None,
            &mut buf,
            1 << 20,
        )
        .unwrap();
        let v1 = FrameCodec::default().decode(&mut buf).unwrap().unwrap();
        acl.check(Command::SendMessage, &v1, LOCAL).unwrap();
        assert_eq!(
            acl.check(Command::SendMessage, &v1, LOCAL)
                .unwrap_err()
                .code,
            ErrorCode::AuthFailed
        );
    }

    #[test]
    fn acl_refuses_a_replayed_ha_hello() {
        let acl = acl_of(
            r#"[[accounts]]
                access_key = "broker"
                secret_key = "bs"
                broker = true"#,
        );
        let hello = skylark_codec::auth::ha_hello(&Credentials::new("broker", "bs"), now_ms());
        let rest = &hello[2 + "broker".len()..];
        acl.check_ha_hello("broker", rest, LOCAL).unwrap();
        let e = acl.check_ha_hello("broker", rest, LOCAL).unwrap_err();
        assert!(e.contains("replayed"), "{e}");
    }

    #[test]
    fn acl_refuses_what_was_signed_before_it_started() {
        // Inside the window, but before this server (its replay cache)
        // started: a request the previous process may have taken.
        let acl = acl_of(&format!(
            "{FILE}\n[[accounts]]\naccess_key = \"broker\"\nsecret_key = \"bs\"\nbroker = true"
        ));
        let before = now_ms() - 5_000;
        let app = Credentials::new("app", "app-secret");
        let f = signed(Command::SendMessage, &send("orders"), &app, before);
        let e = acl.check(Command::SendMessage, &f, LOCAL).unwrap_err();
        assert_eq!(e.code, ErrorCode::AuthFailed);
        assert!(
            e.message.contains("when this server started"),
            "{}",
            e.message
        );

        let hello = skylark_codec::auth::ha_hello(&Credentials::new("broker", "bs"), before);
        let e = acl
            .check_ha_hello("broker", &hello[2 + "broker".len()..], LOCAL)
            .unwrap_err();
        assert!(e.contains("when this server started"), "{e}");

        let root = Credentials::new("root", "root-secret");
        let path = "/api/messages?topic=orders";
        let header = skylark_codec::auth::http_authorization(&root, "GET", path, before);
        let e = acl
            .check_http_admin(Some(&header), "GET", path, Some(LOCAL), "search messages")
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::AuthFailed);
        assert!(
            e.message.contains("when this server started"),
            "{}",
            e.message
        );
        // Signed now, the same request passes.
        let header = skylark_codec::auth::http_authorization(&root, "GET", path, now_ms());
        acl.check_http_admin(Some(&header), "GET", path, Some(LOCAL), "search messages")
            .unwrap();
    }

    #[test]
    fn acl_refusals_are_counted_by_reason() {
        let count = |r: Reason| {
            crate::metrics::process_registry()
                .auth_refusals
                .with_label_values(&[r.label()])
                .get()
        };
        let acl = acl();
        let (unknown, bad, unsigned) = (
            count(Reason::UnknownKey),
            count(Reason::BadSignature),
            count(Reason::Unsigned),
        );
        let ghost = Credentials::new("ghost", "x");
        let f = signed(Command::SendMessage, &send("orders"), &ghost, now_ms());
        acl.check(Command::SendMessage, &f, LOCAL).unwrap_err();
        let wrong = Credentials::new("app", "guess");
        let f = signed(Command::SendMessage, &send("orders"), &wrong, now_ms());
        acl.check(Command::SendMessage, &f, LOCAL).unwrap_err();
        acl.check_http_admin(None, "GET", "/api/messages", None, "search messages")
            .unwrap_err();
        // Other tests of this process count too: at least ours.
        assert!(count(Reason::UnknownKey) > unknown);
        assert!(count(Reason::BadSignature) > bad);
        assert!(count(Reason::Unsigned) > unsigned);
    }

    #[test]
    fn acl_payload_checks_the_need_and_own_broker_credential() {
        use skylark_codec::auth::{fresh_nonce, sign_payload};
        let acl = Acl::new(
            AclTable::parse(&format!(
                "{FILE}\n[[accounts]]\naccess_key = \"broker\"\nsecret_key = \"bs\"\nbroker = true"
            ))
            .unwrap(),
        );
        let check = |creds: &Credentials, need| {
            let (ts, nonce) = (now_ms(), fresh_nonce());
            let sig = sign_payload(&creds.secret_key, &creds.access_key, ts, nonce, b"req");
            acl.check_payload(
                &creds.access_key,
                ts,
                nonce,
                &sig,
                b"req",
                Some(LOCAL),
                need,
                "BrokerHeartbeat",
            )
        };
        let broker = Credentials::new("broker", "bs");
        let root = Credentials::new("root", "root-secret");
        check(&broker, rules::Need::Broker).unwrap();
        let e = check(&root, rules::Need::Broker).unwrap_err();
        assert_eq!(e.code, ErrorCode::NoPermission);
        assert!(e
            .message
            .contains("broker credential needed for BrokerHeartbeat"));
        check(&root, rules::Need::Admin).unwrap();
        let e = check(&broker, rules::Need::Admin).unwrap_err();
        assert_eq!(e.code, ErrorCode::NoPermission);
        check(
            &Credentials::new("app", "app-secret"),
            rules::Need::Authenticated,
        )
        .unwrap();
        let e = check(&Credentials::new("broker", "guess"), rules::Need::Broker).unwrap_err();
        assert_eq!(e.code, ErrorCode::AuthFailed);
        // Needs the payload check does not know fail closed (as admin).
        let e = check(&broker, rules::Need::TopicPub).unwrap_err();
        assert_eq!(e.code, ErrorCode::NoPermission);

        acl.check_own_broker_credential(&broker).unwrap();
        for (c, want) in [
            (
                Credentials::new("root", "root-secret"),
                "not the cluster's broker",
            ),
            (Credentials::new("broker", "guess"), "does not match"),
            (Credentials::new("nobody", "x"), "not in the ACL file"),
        ] {
            let e = acl.check_own_broker_credential(&c).unwrap_err();
            assert!(e.contains(want) && !e.contains("guess"), "{e}");
        }
    }

    #[actix_rt::test]
    async fn acl_watcher_stops_with_its_handle() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acl.toml");
        std::fs::write(&path, FILE).unwrap();
        let log = Logger::root(slog::Discard, slog::o!());
        let (acl, mut handle) = AclWatcher::start(&path, log).unwrap();
        let addr = handle.addr().clone();
        assert_eq!(addr.send(Reload).await.unwrap(), Ok(false));
        handle.stop();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while addr.connected() {
            assert!(
                std::time::Instant::now() < deadline,
                "the watcher still runs after stop"
            );
            actix_rt::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(addr.send(Reload).await.is_err());
        // The table last loaded stays in force.
        assert_eq!(acl.snapshot().accounts.len(), 2);
    }

    #[test]
    fn acl_heartbeat_needs_group_and_topic_sub() {
        let acl = acl_of(
            r#"[[accounts]]
                access_key = "c"
                secret_key = "s"
                default_group_perm = "DENY"
                group_perms = { g = "SUB" }
                topic_perms = { t = "SUB", w = "PUB" }"#,
        );
        let creds = Credentials::new("c", "s");
        let hb = |group: &str, topic: &str| skylark_codec::HeartbeatRequest {
            client_id: "x".into(),
            producer_groups: vec![],
            consumer_groups: vec![skylark_codec::ConsumerGroupData {
                group: group.into(),
                subscriptions: vec![skylark_codec::Subscription {
                    topic: topic.into(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            language: String::new(),
            version: String::new(),
        };
        let check = |g, t| {
            let f = signed(Command::Heartbeat, &hb(g, t), &creds, now_ms());
            acl.check(Command::Heartbeat, &f, LOCAL)
        };
        check("g", "t").unwrap();
        assert!(check("g", "w")
            .unwrap_err()
            .message
            .contains("SUB on topic 'w'"));
        assert!(check("h", "t")
            .unwrap_err()
            .message
            .contains("SUB on group 'h'"));
    }
}
