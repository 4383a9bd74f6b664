//! Talking to the NameServers: try each in turn, remember the one that works.
//!
//! NameServers do not sync with each other; every broker registers with all
//! of them, so any one that answers is as good as another (RocketMQ's
//! `NettyRemotingClient.getAndCreateNameserverChannel`). A server that
//! answers with an error (e.g. `TopicNotFound`) has answered: its error is
//! returned, the next one is not asked.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
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

/// A cheap, clonable handle on the NameServer list. Must be used inside an
/// actix System.
#[derive(Clone)]
pub struct NameServerClient {
    addrs: Arc<[String]>,
    preferred: Arc<AtomicUsize>,
    conns: Arc<Mutex<Vec<Option<RpcClient>>>>,
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
                "no NameServer address given (--namesrv or SKYLARK_NAMESRV)".into(),
            ));
        }
        Ok(NameServerClient {
            conns: Arc::new(Mutex::new(vec![None; addrs.len()])),
            addrs: addrs.into(),
            preferred: Arc::new(AtomicUsize::new(0)),
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

    fn cached(&self, i: usize) -> Option<RpcClient> {
        let conns = self.conns.lock().ok()?;
        conns
            .get(i)
            .cloned()
            .flatten()
            .filter(RpcClient::is_connected)
    }

    fn store(&self, i: usize, c: Option<RpcClient>) {
        if let Ok(mut conns) = self.conns.lock() {
            if let Some(slot) = conns.get_mut(i) {
                *slot = c;
            }
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
        let n = self.addrs.len();
        let first = self.preferred.load(Ordering::Relaxed);
        let mut last = String::new();
        for k in 0..n {
            let i = (first + k) % n;
            let answer = match self.conn(i).await {
                Ok(c) => c
                    .call(req)
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
                    self.preferred.store(i, Ordering::Relaxed);
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
        let req = GetRouteInfoRequest {
            topic: topic.to_string(),
        };
        match self.call(&req).await {
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
