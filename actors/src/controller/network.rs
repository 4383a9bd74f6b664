//! openraft's network between controllers over [`super::proto`]: one
//! connection per peer, opened on first use and again after a failure.
//! With a credential (the cluster's broker credential) every RPC travels
//! as a [`Request::Signed`], signed afresh for each send, so a peer with
//! ACL on can tell a controller from a forger (docs/security.md).

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;

use super::proto::{self, Conn, Request, Response};
use super::types::{NodeId, TypeConfig};

/// Makes a [`PeerClient`] per peer.
#[derive(Clone, Default)]
pub struct Network {
    /// Signs every RPC when set.
    pub creds: Option<Arc<skylark_codec::Credentials>>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            target,
            addr: node.addr.clone(),
            conn: None,
            creds: self.creds.clone(),
        }
    }
}

/// The connection to one peer controller.
pub struct PeerClient {
    target: NodeId,
    addr: String,
    conn: Option<Conn>,
    creds: Option<Arc<skylark_codec::Credentials>>,
}

type RpcErr<E> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

impl PeerClient {
    async fn rpc<E: std::error::Error>(
        &mut self,
        req: Request,
        option: &RPCOption,
    ) -> Result<Response, RpcErr<E>> {
        let timeout = option.hard_ttl().max(Duration::from_millis(50));
        let req = match &self.creds {
            Some(c) => req.signed(c).map_err(|reason| {
                let e = proto::CallError {
                    addr: self.addr.clone(),
                    reason,
                };
                RPCError::Network(NetworkError::new(&e))
            })?,
            None => req,
        };
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => proto::connect(&self.addr, timeout)
                .await
                .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?,
        };
        let resp = proto::call(&mut conn, &self.addr, &req, timeout)
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        self.conn = Some(conn);
        Ok(resp)
    }
}

fn unexpected<E: std::error::Error>(addr: &str, r: Response) -> RpcErr<E> {
    let e = proto::CallError {
        addr: addr.to_string(),
        reason: format!("unexpected answer {r:?}"),
    };
    RPCError::Network(NetworkError::new(&e))
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr<openraft::error::Infallible>> {
        match self.rpc(Request::AppendEntries(rpc), &option).await? {
            Response::AppendEntries(r) => r.map_err(|e| RPCError::RemoteError(remote(self, e))),
            other => Err(unexpected(&self.addr, other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        match self.rpc(Request::InstallSnapshot(rpc), &option).await? {
            Response::InstallSnapshot(r) => r.map_err(|e| RPCError::RemoteError(remote(self, e))),
            other => Err(unexpected(&self.addr, other)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr<openraft::error::Infallible>> {
        match self.rpc(Request::Vote(rpc), &option).await? {
            Response::Vote(r) => r.map_err(|e| RPCError::RemoteError(remote(self, e))),
            other => Err(unexpected(&self.addr, other)),
        }
    }
}

fn remote<E: std::error::Error>(
    p: &PeerClient,
    e: RaftError<NodeId, E>,
) -> openraft::error::RemoteError<NodeId, BasicNode, RaftError<NodeId, E>> {
    openraft::error::RemoteError::new_with_node(p.target, BasicNode::new(p.addr.clone()), e)
}
