//! Talking to the NameServers: try each in turn, remember the one that works.
//!
//! NameServers do not sync with each other; every broker registers with all
//! of them, so any one that answers is as good as another (RocketMQ's
//! `NettyRemotingClient.getAndCreateNameserverChannel`). A server that
//! answers with an error has answered: its error is returned, the next one
//! is not asked.
//!
//! Except for a route. A NameServer that just restarted knows no broker
//! until each registers again, so its "topic not found", or a route whose
//! broker groups lack their master (a slave registered first), is not the
//! last word: the next NameServer is asked, and the best answer wins — the
//! first route with a master for every group, else the route with the most
//! masters, else "topic not found" once every NameServer said so
//! ([`super::route::route_rank`]). The one that gave it is asked first next
//! time. A master that is really gone is missing from every NameServer's
//! route; that route then stands (consumers read from the slave). A
//! NameServer that could not be reached in the last
//! [`SECOND_OPINION_PAUSE`] is not dialled for a second opinion: a burst of
//! lookups of a topic nobody has does not dial a dead NameServer once each,
//! nor wait each time for one that does not answer SYNs.
//!
//! One connection per NameServer, shared by every request of the handle and
//! its clones. Opening it is single flight: the first request that finds no
//! live connection dials, every request that comes meanwhile waits for that
//! one attempt and shares its outcome (the connection, or the failure — the
//! request after a failure dials again), so a burst of first requests opens
//! one connection, not one each (RocketMQ takes a lock around the same
//! step). A connection a request saw fail is dropped from its slot once,
//! by whichever request noticed first; the others find the new attempt.
//! A request on a kept connection that turns out closed under it (the
//! NameServer restarted or closed it idle, and the client had not seen the
//! close yet) goes once more on a new connection before that NameServer
//! counts as unreached: the close was not its answer.
//!
//! No socket is left behind. An attempt runs as a task of its own, so a
//! caller cancelled while it connects (the one that started it too) cancels
//! nothing: the connection lands in the slot for the next caller. A
//! connection dropped from its slot (a request on it timed out or failed)
//! is closed once the requests still on it have answered or timed out —
//! when the last clone of its `RpcClient` goes — not left open until the
//! NameServer closes it for idleness (120 s), one more socket per timeout
//! under a NameServer slow to answer.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;
use skylark_codec::rpc::RpcClient;
use skylark_codec::{
    ClusterInfo, ErrorCode, GetClusterInfoRequest, GetRouteInfoRequest, GetTopicListRequest,
    Handshake, ProtocolError, Rpc, TopicList, TopicRouteData,
};
use tokio::sync::watch;

use super::error::{ClientError, Result};
use super::route::route_rank;

/// Connects to `addr` and performs the handshake.
pub(crate) async fn connect(
    addr: &str,
    connect_timeout: Duration,
    request_timeout: Duration,
    max_frame: usize,
    (client_id, creds, tls): (
        &str,
        Option<Arc<skylark_codec::Credentials>>,
        Option<&skylark_codec::tls::ClientTls>,
    ),
) -> Result<RpcClient> {
    let conn_err = |error| ClientError::Connection {
        addr: addr.to_string(),
        error,
    };
    let client = tokio::time::timeout(
        connect_timeout,
        RpcClient::connect_tls(addr, request_timeout, max_frame, tls),
    )
    .await
    .map_err(|_| {
        conn_err(ProtocolError::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("connect to {addr} timed out"),
        )))
    })?
    .map_err(conn_err)?
    .with_credentials(creds);
    let hello = Handshake::new(client_id, env!("CARGO_PKG_VERSION"));
    match client.call(&hello).await {
        Ok(_) => Ok(client),
        Err(e) => {
            client.close();
            Err(ClientError::from_call(addr, None, e))
        }
    }
}

/// One attempt to connect to a NameServer, run as a task of its own
/// ([`NameServerClient::dial`]): the first caller that finds the slot
/// spent starts it, the callers that come meanwhile wait on it, and all of
/// them get its outcome (`None` while it runs). A cancelled caller cancels
/// nothing: the attempt runs on and its connection stays in the slot.
/// The connection is shared by its slot and the requests on it; its socket
/// closes with the last clone (`RpcClient`): once the slot has forgotten it
/// (or the handle is dropped) and every request still on it has answered
/// or timed out.
type Dial = Arc<watch::Receiver<Option<Result<RpcClient>>>>;

/// Whether `dial` is over and no use: it failed, its connection closed, or
/// its task ended without an outcome (the System stopping). Still running,
/// or connected: it is the one to wait on, or to use.
fn spent(dial: &Dial) -> bool {
    match &*dial.borrow() {
        None => dial.has_changed().is_err(),
        Some(Ok(c)) => !c.is_connected(),
        Some(Err(_)) => true,
    }
}

/// The connections to the NameServers and the one that answered last: one
/// piece of state, behind one lock, shared by every clone of the handle.
/// The lock is never held across an await: waiting on a connect is waiting
/// on the slot's [`Dial`], outside it.
#[derive(Debug)]
struct Links {
    /// The NameServer asked first (the last one that answered).
    preferred: usize,
    /// One slot per address: its current attempt (none before the first
    /// connect and once the last one was forgotten).
    conns: Vec<Option<Dial>>,
    /// Per address: when a request last failed to reach it (cleared when
    /// one does).
    unreached: Vec<Option<Instant>>,
}

/// How long a NameServer that could not be reached is not asked for a
/// second opinion on a route (it is still asked when no other answers).
pub const SECOND_OPINION_PAUSE: Duration = Duration::from_secs(5);

/// A cheap, clonable handle on the NameServer list. Must be used inside an
/// actix System.
#[derive(Clone)]
pub struct NameServerClient {
    addrs: Arc<[String]>,
    links: Arc<Mutex<Links>>,
    timeout: Duration,
    client_id: Arc<str>,
    creds: Option<Arc<skylark_codec::Credentials>>,
    tls: Option<skylark_codec::tls::ClientTls>,
}

impl std::fmt::Debug for NameServerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NameServerClient({})", self.addrs.join(";"))
    }
}

impl NameServerClient {
    /// A client for `namesrv` (`host:port;host:port`); a `timeout` over
    /// [`MAX_DURATION`](super::config::MAX_DURATION) is refused.
    pub fn new(namesrv: &str, timeout: Duration, client_id: &str) -> Result<Self> {
        super::config::check_duration("NameServerClient", "timeout", timeout, true)?;
        let addrs: Vec<String> = namesrv
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        if addrs.is_empty() {
            return Err(ClientError::InvalidArgument(
                "no NameServer address given (ClientConfig::namesrv; the CLI: --namesrv or SKYLARK_NAMESRV)".into(),
            ));
        }
        Ok(NameServerClient {
            links: Arc::new(Mutex::new(Links {
                preferred: 0,
                conns: addrs.iter().map(|_| None).collect(),
                unreached: addrs.iter().map(|_| None).collect(),
            })),
            addrs: addrs.into(),
            timeout,
            client_id: Arc::from(client_id),
            creds: None,
            tls: None,
        })
    }

    /// Signs every request with `creds` (ACL); `None`: unsigned.
    pub fn with_credentials(mut self, creds: Option<Arc<skylark_codec::Credentials>>) -> Self {
        self.creds = creds;
        self
    }

    /// Connects over TLS with `tls` (`None`: plain TCP).
    pub fn with_tls(mut self, tls: Option<skylark_codec::tls::ClientTls>) -> Self {
        self.tls = tls;
        self
    }

    fn links(&self) -> MutexGuard<'_, Links> {
        // Nothing is left half-updated by a panic under this lock (each
        // update is one assignment).
        self.links.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The connection to NameServer `i`, the attempt that made it (to
    /// [`forget`](Self::forget) it by), and whether it was open already
    /// when asked for (kept from earlier requests: the NameServer may have
    /// closed it since, unseen). Joins the attempt under way, or starts one
    /// if there is none or the last is spent; a failed attempt's error goes
    /// to every caller that waited on it.
    async fn conn(&self, i: usize) -> Result<(RpcClient, Dial, bool)> {
        let (dial, kept) = {
            let mut links = self.links();
            let slot = &mut links.conns[i];
            match slot {
                Some(d) if !spent(d) => (d.clone(), d.borrow().is_some()),
                _ => (slot.insert(self.dial(i)).clone(), false),
            }
        };
        let addr = &self.addrs[i];
        let mut outcome = (*dial).clone();
        let ended = || ClientError::Connection {
            addr: addr.clone(),
            error: ProtocolError::Io(std::io::Error::other(format!(
                "the connect task for {addr} ended"
            ))),
        };
        let link = match &*outcome
            .wait_for(Option::is_some)
            .await
            .map_err(|_| ended())?
        {
            Some(Ok(link)) => link.clone(),
            Some(Err(e)) => return Err(replay(addr, e)),
            None => return Err(ended()),
        };
        Ok((link, dial, kept))
    }

    /// Starts an attempt to connect to NameServer `i` on the current
    /// arbiter. Its outcome stays in the attempt until the slot lets go of
    /// it, whether any caller still waits or not.
    fn dial(&self, i: usize) -> Dial {
        let (tx, rx) = watch::channel(None);
        let addr = self.addrs[i].clone();
        let (timeout, client_id) = (self.timeout, self.client_id.clone());
        let (creds, tls) = (self.creds.clone(), self.tls.clone());
        actix::spawn(async move {
            let link = connect(
                &addr,
                timeout,
                timeout,
                skylark_codec::DEFAULT_MAX_FRAME_SIZE,
                (&client_id, creds, tls.as_ref()),
            )
            .await;
            // Nobody left to take it (the handle was dropped): the
            // connection closes with the refused value.
            let _ = tx.send(Some(link));
        });
        Arc::new(rx)
    }

    /// Drops `dial`'s connection from slot `i` (a request on it failed), if
    /// it is still the slot's: of many requests that saw one connection
    /// fail, the first drops it and the others leave the new one be. The
    /// connection closes once the requests still on it are over.
    fn forget(&self, i: usize, dial: &Dial) {
        let mut links = self.links();
        let slot = &mut links.conns[i];
        if slot.as_ref().is_some_and(|d| Arc::ptr_eq(d, dial)) {
            *slot = None;
        }
    }

    /// Calls the preferred NameServer, then the others in turn.
    pub async fn call<R>(&self, req: &R) -> Result<R::Response>
    where
        R: Rpc + Serialize,
        R::Response: DeserializeOwned,
    {
        self.call_within(req, self.timeout).await
    }

    /// [`call`](Self::call) with each NameServer given `timeout` to answer.
    async fn call_within<R>(&self, req: &R, timeout: Duration) -> Result<R::Response>
    where
        R: Rpc + Serialize,
        R::Response: DeserializeOwned,
    {
        let mut last = String::new();
        for i in self.in_turn() {
            match self.call_one(i, req, timeout).await {
                Err(ClientError::Connection { error, .. }) => last = error.to_string(),
                // Not a NameServer (a broker's address in the list): the
                // next one may be.
                Err(e @ ClientError::Remote { .. })
                    if e.code() == Some(ErrorCode::UnknownCommand) =>
                {
                    last = e.to_string()
                }
                other => {
                    self.links().preferred = i;
                    return other;
                }
            }
        }
        Err(self.unavailable(last))
    }

    /// The NameServers in the order to ask them: the preferred one first.
    fn in_turn(&self) -> impl Iterator<Item = usize> {
        let n = self.addrs.len();
        let first = self.links().preferred;
        (0..n).map(move |k| (first + k) % n)
    }

    /// The error once no NameServer could be reached (`last`: the last
    /// failure's words).
    fn unavailable(&self, last: String) -> ClientError {
        ClientError::NameServerUnavailable {
            addrs: self.addrs.join(";"),
            last,
        }
    }

    /// Calls NameServer `i` alone; a connection that failed under the
    /// request is forgotten. A kept connection found closed under the
    /// request (the NameServer restarted, or closed it idle, and the close
    /// had not been seen yet) is not the NameServer's answer: the request
    /// goes once more, on a new connection (one for every request that
    /// found it so), as the broker's unregister does. A timeout is not
    /// retried: that NameServer did not answer. The close may have come
    /// after the NameServer handled the request: sending it again is safe
    /// because NameServer requests are reads or idempotent writes (a
    /// route, a KV put or delete); such a call can take two timeouts.
    async fn call_one<R>(&self, i: usize, req: &R, timeout: Duration) -> Result<R::Response>
    where
        R: Rpc + Serialize,
        R::Response: DeserializeOwned,
    {
        let answer = match self.call_linked(i, req, timeout).await {
            Err((true, e)) if e.is_connection_closed() => {
                self.call_linked(i, req, timeout).await.map_err(|(_, e)| e)
            }
            other => other.map_err(|(_, e)| e),
        };
        let unreached = matches!(answer, Err(ClientError::Connection { .. }));
        self.links().unreached[i] = unreached.then(Instant::now);
        answer
    }

    /// One request on NameServer `i`'s connection ([`conn`](Self::conn)),
    /// forgotten if it failed under the request; a failure says whether
    /// the connection was a kept one.
    async fn call_linked<R>(
        &self,
        i: usize,
        req: &R,
        timeout: Duration,
    ) -> std::result::Result<R::Response, (bool, ClientError)>
    where
        R: Rpc + Serialize,
        R::Response: DeserializeOwned,
    {
        let (link, dial, kept) = self.conn(i).await.map_err(|e| (false, e))?;
        let answer = link
            .call_timeout(req, timeout)
            .await
            .map_err(|e| ClientError::from_call(&self.addrs[i], None, e));
        if let Err(ClientError::Connection { .. }) = answer {
            self.forget(i, &dial);
        }
        answer.map_err(|e| (kept, e))
    }

    /// Whether NameServer `i` failed to be reached in the last
    /// [`SECOND_OPINION_PAUSE`].
    fn recently_unreached(&self, i: usize) -> bool {
        self.links().unreached[i].is_some_and(|at| at.elapsed() < SECOND_OPINION_PAUSE)
    }

    /// The route of `topic`: the best of the NameServers' answers (module
    /// doc); [`ClientError::TopicNotFound`] if none has one.
    pub async fn route(&self, topic: &str) -> Result<TopicRouteData> {
        self.route_within(topic, Duration::ZERO).await
    }

    /// [`route`](Self::route), but a NameServer without a route for
    /// `topic` holds the answer until a broker registers the topic, for at
    /// most `wait` (capped at [`skylark_codec::MAX_ROUTE_WAIT_MS`]). An
    /// older NameServer answers at once. Only the first NameServer that
    /// answers holds it: one without a complete route asks the next
    /// (module doc), and those are asked without a hold, so the wait is not
    /// paid once per NameServer.
    pub async fn route_within(&self, topic: &str, wait: Duration) -> Result<TopicRouteData> {
        let mut wait_ms = wait
            .as_millis()
            .min(u128::from(skylark_codec::MAX_ROUTE_WAIT_MS)) as u32;
        let mut best: Option<(usize, TopicRouteData)> = None;
        let (mut not_found, mut last) = (None, String::new());
        for i in self.in_turn() {
            let answered = best.is_some() || not_found.is_some();
            if answered && self.recently_unreached(i) {
                continue;
            }
            let req = GetRouteInfoRequest {
                topic: topic.to_string(),
                wait_ms,
            };
            let held = Duration::from_millis(u64::from(wait_ms));
            match self.call_one(i, &req, self.timeout + held).await {
                Err(ClientError::Connection { error, .. }) => {
                    last = error.to_string();
                    continue;
                }
                Err(e) if e.code() == Some(ErrorCode::TopicNotFound) => {
                    not_found.get_or_insert(i);
                }
                Ok(data) => {
                    let complete = route_rank(&data).complete();
                    if best
                        .as_ref()
                        .is_none_or(|(_, b)| route_rank(&data) > route_rank(b))
                    {
                        best = Some((i, data));
                    }
                    if complete {
                        break;
                    }
                }
                // Refused (e.g. an ACL error): the others would say the same.
                Err(e) if best.is_none() && not_found.is_none() => {
                    self.links().preferred = i;
                    return Err(e);
                }
                Err(_) => break,
            }
            wait_ms = 0;
        }
        match (best, not_found) {
            (Some((i, data)), _) => {
                self.links().preferred = i;
                Ok(data)
            }
            (None, Some(i)) => {
                self.links().preferred = i;
                Err(ClientError::TopicNotFound(topic.to_string()))
            }
            (None, None) => Err(self.unavailable(last)),
        }
    }

    /// Clusters, brokers and their addresses.
    pub async fn cluster_info(&self) -> Result<ClusterInfo> {
        self.call(&GetClusterInfoRequest {}).await
    }

    /// Every topic the NameServer knows.
    pub async fn topic_list(&self) -> Result<TopicList> {
        self.call(&GetTopicListRequest {}).await
    }
}

/// Each caller's own copy of a shared attempt's failure (`ClientError`
/// holds an `io::Error`, which is not `Clone`: its kind and message are
/// kept). `connect` fails only with the first three kinds.
fn replay(addr: &str, e: &ClientError) -> ClientError {
    match e {
        ClientError::Connection { addr, error } => ClientError::Connection {
            addr: addr.clone(),
            error: replay_protocol(error),
        },
        ClientError::Remote { addr, topic, error } => ClientError::Remote {
            addr: addr.clone(),
            topic: topic.clone(),
            error: error.clone(),
        },
        ClientError::TlsRequired { addr, reason } => ClientError::TlsRequired {
            addr: addr.clone(),
            reason: reason.clone(),
        },
        other => ClientError::Connection {
            addr: addr.to_string(),
            error: ProtocolError::Io(std::io::Error::other(other.to_string())),
        },
    }
}

/// [`replay`] for the codec's error.
fn replay_protocol(e: &ProtocolError) -> ProtocolError {
    use ProtocolError as P;
    match e {
        P::Io(io) => P::Io(std::io::Error::new(io.kind(), io.to_string())),
        P::FrameTooLarge { size, max } => P::FrameTooLarge {
            size: *size,
            max: *max,
        },
        P::MessageTooLarge { size, max } => P::MessageTooLarge {
            size: *size,
            max: *max,
        },
        P::Malformed(m) => P::Malformed(m.clone()),
        P::UnknownCommand(c) => P::UnknownCommand(*c),
        P::UnsupportedVersion(v) => P::UnsupportedVersion(*v),
        P::InvalidArgument(m) => P::InvalidArgument(m.clone()),
        P::InvalidFilter(m) => P::InvalidFilter(m.clone()),
        P::Encode(m) => P::Encode(m.clone()),
        P::Remote(w) => P::Remote(w.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A timeout over MAX_DURATION is refused (a call's wait, the timeout
    /// plus the route hold, overflowed).
    #[test]
    fn the_timeout_is_bounded() {
        for d in super::super::config::tests::OVERLONG {
            let e = NameServerClient::new("127.0.0.1:1", d, "t").unwrap_err();
            assert!(e.to_string().contains("NameServerClient::timeout"), "{e}");
        }
        assert!(NameServerClient::new("127.0.0.1:1", super::super::MAX_DURATION, "t").is_ok());
    }

    /// Two addresses nobody listens on: every one is tried, the error names
    /// them all, and the handle (shared by its clones) keeps no connection.
    #[actix_rt::test]
    async fn every_nameserver_is_tried_and_named_when_none_answers() {
        let closed = || {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        };
        let (a, b) = (closed(), closed());
        let ns = NameServerClient::new(&format!("{a}; {b};"), Duration::from_secs(2), "t").unwrap();
        let clone = ns.clone();
        match clone.topic_list().await {
            Err(ClientError::NameServerUnavailable { addrs, .. }) => {
                assert_eq!(addrs, format!("{a};{b}"))
            }
            other => panic!("expected NameServerUnavailable, got {other:?}"),
        }
        let links = ns.links();
        assert_eq!(links.preferred, 0);
        assert!(links.conns.iter().flatten().all(spent));
        drop(links);
        assert!(matches!(
            NameServerClient::new(" ; ", Duration::from_secs(1), "t"),
            Err(ClientError::InvalidArgument(_))
        ));
    }

    /// Many requests see one connection fail; the first one's `forget`
    /// empties the slot, and a later one (its request failed after the
    /// slot moved on) leaves the new attempt alone.
    #[test]
    fn a_failed_connection_is_forgotten_once() {
        let ns = NameServerClient::new("127.0.0.1:1", Duration::from_secs(1), "t").unwrap();
        let attempt = || -> Dial { Arc::new(watch::channel(None).1) };
        let old = attempt();
        ns.links().conns[0] = Some(old.clone());
        ns.forget(0, &old);
        assert!(ns.links().conns[0].is_none());
        let new = attempt();
        ns.links().conns[0] = Some(new.clone());
        ns.forget(0, &old);
        assert!(ns.links().conns[0]
            .as_ref()
            .is_some_and(|d| Arc::ptr_eq(d, &new)));
    }

    /// Each waiter's copy of a shared failure reads and classifies like the
    /// original (an answer timeout stays one).
    #[test]
    fn a_replayed_failure_keeps_its_kind_and_words() {
        let timed_out = ClientError::Connection {
            addr: "a:1".into(),
            error: ProtocolError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no answer from a:1 within 1s",
            )),
        };
        let copy = replay("a:1", &timed_out);
        assert!(copy.is_answer_timeout());
        assert_eq!(copy.to_string(), timed_out.to_string());
        let refused = ClientError::Remote {
            addr: "a:1".into(),
            topic: None,
            error: skylark_codec::WireError::new(ErrorCode::AuthFailed, "bad signature"),
        };
        let copy = replay("a:1", &refused);
        assert_eq!(copy.code(), Some(ErrorCode::AuthFailed));
        assert_eq!(copy.to_string(), refused.to_string());
    }
}
