//! Talking to the NameServers: try each in turn, remember the one that works.
//!
//! NameServers do not sync with each other; every broker registers with all
//! of them, so any one that answers is as good as another (RocketMQ's
//! `NettyRemotingClient.getAndCreateNameserverChannel`). A server that
//! answers with an error (e.g. `TopicNotFound`) has answered: its error is
//! returned, the next one is not asked.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use skylark_codec::rpc::RpcClient;
use skylark_codec::{
    ClusterInfo, ErrorCode, GetClusterInfoRequest, GetRouteInfoRequest, GetTopicListRequest,
    Handshake, ProtocolError, Rpc, TopicList, TopicRouteData,
};

use super::error::{ClientError, Result};

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

/// The connections to the NameServers and the one that answered last: one
/// piece of state, behind one lock, shared by every clone of the handle.
#[derive(Debug)]
struct Links {
    /// The NameServer asked first (the last one that answered).
    preferred: usize,
    /// One slot per address; `None` until connected, or after it failed.
    conns: Vec<Option<RpcClient>>,
}

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
    /// A client for `namesrv` (`host:port;host:port`).
    pub fn new(namesrv: &str, timeout: Duration, client_id: &str) -> Result<Self> {
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
                conns: vec![None; addrs.len()],
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

    fn cached(&self, i: usize) -> Option<RpcClient> {
        self.links()
            .conns
            .get(i)
            .cloned()
            .flatten()
            .filter(RpcClient::is_connected)
    }

    fn store(&self, i: usize, c: Option<RpcClient>) {
        if let Some(slot) = self.links().conns.get_mut(i) {
            *slot = c;
        }
    }

    async fn conn(&self, i: usize) -> Result<RpcClient> {
        if let Some(c) = self.cached(i) {
            return Ok(c);
        }
        let addr = &self.addrs[i];
        let c = connect(
            addr,
            self.timeout,
            self.timeout,
            skylark_codec::DEFAULT_MAX_FRAME_SIZE,
            (&self.client_id, self.creds.clone(), self.tls.as_ref()),
        )
        .await?;
        self.store(i, Some(c.clone()));
        Ok(c)
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
        let n = self.addrs.len();
        let first = self.links().preferred;
        let mut last = String::new();
        for k in 0..n {
            let i = (first + k) % n;
            let answer = match self.conn(i).await {
                Ok(c) => c
                    .call_timeout(req, timeout)
                    .await
                    .map_err(|e| ClientError::from_call(&self.addrs[i], None, e)),
                Err(e) => Err(e),
            };
            match answer {
                Err(ClientError::Connection { error, .. }) => {
                    self.store(i, None);
                    last = error.to_string();
                }
                other => {
                    self.links().preferred = i;
                    return other;
                }
            }
        }
        Err(ClientError::NameServerUnavailable {
            addrs: self.addrs.join(";"),
            last,
        })
    }

    /// The route of `topic`; [`ClientError::TopicNotFound`] if there is none.
    pub async fn route(&self, topic: &str) -> Result<TopicRouteData> {
        self.route_within(topic, Duration::ZERO).await
    }

    /// [`route`](Self::route), but a NameServer without a route for
    /// `topic` holds the answer until a broker registers the topic, for at
    /// most `wait` (capped at [`skylark_codec::MAX_ROUTE_WAIT_MS`]). An
    /// older NameServer answers at once.
    pub async fn route_within(&self, topic: &str, wait: Duration) -> Result<TopicRouteData> {
        let wait_ms = wait
            .as_millis()
            .min(u128::from(skylark_codec::MAX_ROUTE_WAIT_MS)) as u32;
        let req = GetRouteInfoRequest {
            topic: topic.to_string(),
            wait_ms,
        };
        let held = Duration::from_millis(u64::from(wait_ms));
        match self.call_within(&req, self.timeout + held).await {
            Err(e) if e.code() == Some(ErrorCode::TopicNotFound) => {
                Err(ClientError::TopicNotFound(topic.to_string()))
            }
            other => other,
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(links.conns.iter().all(Option::is_none));
        drop(links);
        assert!(matches!(
            NameServerClient::new(" ; ", Duration::from_secs(1), "t"),
            Err(ClientError::InvalidArgument(_))
        ));
    }
}
