//! The controller's wire protocol: frames of a 4-byte big-endian length and
//! one MessagePack value (the framing of docs/architecture.md, through
//! `tokio_util`'s `LengthDelimitedCodec`), one request answered by one
//! response, in order, on a connection.
//!
//! Requests come from the other controllers (the raft RPCs, openraft's own
//! types carried as they are), from brokers in controller mode (heartbeat,
//! in-sync set report) and from `skylark admin controller` (status, elect).
//! A request that only the leader answers gets [`Response::NotLeader`]
//! naming the leader when this controller knows it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use super::types::{GroupInfo, NodeId, TypeConfig};

/// Largest frame either side accepts.
pub const MAX_FRAME: usize = 16 * 1024 * 1024;

/// A broker's heartbeat to the controller leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BrokerHeartbeat {
    pub cluster: String,
    pub broker_name: String,
    pub broker_id: u64,
    /// The broker's client address (what the NameServers publish).
    pub addr: String,
    /// The master epoch the broker acts under (0: none yet).
    pub epoch: u64,
    /// The broker's CommitLog max offset, to elect the most advanced.
    pub max_offset: u64,
    /// The HA address slaves replicate from while it is master.
    #[serde(default)]
    pub ha_addr: Option<String>,
}

/// A master's report of its in-sync set.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlterSyncStateSet {
    pub broker_name: String,
    pub master_id: u64,
    pub master_epoch: u64,
    pub sync_state_set_epoch: u64,
    pub new_set: BTreeSet<u64>,
}

/// One controller as `status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ControllerStatus {
    pub node_id: NodeId,
    pub addr: String,
    pub leader_id: Option<NodeId>,
    pub leader_addr: Option<String>,
    pub term: u64,
    pub last_applied_index: Option<u64>,
    pub members: Vec<(NodeId, String)>,
    pub groups: Vec<GroupInfo>,
    /// broker name → the replicas heard from within
    /// `controller_broker_timeout_ms` (the rest of `replicas` are dead).
    /// Liveness is the leader's memory: `None` from a follower.
    #[serde(default)]
    pub alive: Option<BTreeMap<String, BTreeSet<u64>>>,
}

/// A request to a controller.
#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// Leader only: records liveness, registers a new broker; answers the group.
    BrokerHeartbeat(BrokerHeartbeat),
    /// Leader only: answers the group as it is after the change.
    AlterSyncStateSet(AlterSyncStateSet),
    /// Leader only: elect `broker_id` (or the controller's pick when `None`).
    ElectMaster {
        broker_name: String,
        broker_id: Option<u64>,
    },
    /// Any controller: its view (groups as it has applied them).
    Status,
    /// Another request signed by an account (ACL): with `acl_enabled`,
    /// `ElectMaster` is served only inside one signed by an admin.
    Signed(SignedRequest),
}

/// A request (`request`: its MessagePack bytes, as [`call`] encodes one)
/// signed with [`skylark_codec::auth::sign_payload`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignedRequest {
    pub access_key: String,
    pub timestamp_ms: u64,
    pub nonce: u64,
    pub signature: Vec<u8>,
    pub request: Vec<u8>,
}

impl Request {
    /// This request signed with `creds` now.
    pub fn signed(&self, creds: &skylark_codec::Credentials) -> Result<Request, String> {
        let request = rmp_serde::to_vec_named(self).map_err(|e| format!("encode: {e}"))?;
        let timestamp_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let nonce = skylark_codec::auth::fresh_nonce();
        let signature = skylark_codec::auth::sign_payload(
            &creds.secret_key,
            &creds.access_key,
            timestamp_ms,
            nonce,
            &request,
        )
        .to_vec();
        Ok(Request::Signed(SignedRequest {
            access_key: creds.access_key.clone(),
            timestamp_ms,
            nonce,
            signature,
            request,
        }))
    }
}

/// A controller's answer.
#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    Group(GroupInfo),
    Status(ControllerStatus),
    /// This controller is not the leader; `leader` is its address if known.
    NotLeader {
        leader: Option<String>,
    },
    /// The request was understood and refused (e.g. an unclean election
    /// without `enable_elect_unclean_master`, a stale epoch).
    Refused(String),
    /// The request could not be decoded or served.
    Error(String),
    /// A heartbeat refused: `broker_id` of `broker_name` is held by a live
    /// broker (heard within `controller_broker_timeout_ms`) at `holder`,
    /// another address than the heartbeat's — two brokers with one id
    /// would both act as master (split brain).
    IdInUse {
        broker_name: String,
        broker_id: u64,
        holder: String,
    },
    /// ACL: `AuthFailed` (unsigned, bad signature, stale, replayed) or
    /// `NoPermission` (not an admin account), with the reason.
    AccessDenied(skylark_codec::WireError),
}

/// A framed connection to a controller.
pub type Conn = Framed<TcpStream, LengthDelimitedCodec>;

/// The frame codec both sides use.
pub fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME)
        .new_codec()
}

/// A transport failure (connect, I/O, decode, timeout).
#[derive(Debug, thiserror::Error)]
#[error("controller {addr}: {reason}")]
pub struct CallError {
    pub addr: String,
    pub reason: String,
}

/// Connects to `addr` within `timeout`.
pub async fn connect(addr: &str, timeout: Duration) -> Result<Conn, CallError> {
    let err = |reason: String| CallError {
        addr: addr.to_string(),
        reason,
    };
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| err("connect timed out".into()))?
        .map_err(|e| err(format!("connect: {e}")))?;
    let _ = stream.set_nodelay(true);
    Ok(Framed::new(stream, codec()))
}

/// Why an answer that is not a controller's came from a broker or a
/// NameServer: a frame of Skylark's client protocol (`codec::frame`, the
/// same length prefix), whose error answer read as "malformed frame".
fn not_a_controller(frame: &[u8]) -> Option<String> {
    skylark_codec::frame::peek_header(frame)?;
    Some(
        "this address does not answer as a controller: a Skylark broker or NameServer answered (give a controller's address: the `port` of its conf/controller-*.toml)"
            .into(),
    )
}

/// Sends one request on `conn` and waits up to `timeout` for its answer.
pub async fn call(
    conn: &mut Conn,
    addr: &str,
    req: &Request,
    timeout: Duration,
) -> Result<Response, CallError> {
    let err = |reason: String| CallError {
        addr: addr.to_string(),
        reason,
    };
    let bytes = rmp_serde::to_vec_named(req).map_err(|e| err(format!("encode: {e}")))?;
    let round_trip = async {
        conn.send(bytes::Bytes::from(bytes))
            .await
            .map_err(|e| err(format!("send: {e}")))?;
        match conn.next().await {
            Some(Ok(frame)) => skylark_codec::frame::decode_value(&frame).map_err(|e| {
                err(not_a_controller(&frame).unwrap_or_else(|| format!("bad answer: {e}")))
            }),
            Some(Err(e)) => Err(err(format!("receive: {e}"))),
            None => Err(err("connection closed".into())),
        }
    };
    tokio::time::timeout(timeout, round_trip)
        .await
        .map_err(|_| err("timed out".into()))?
}
