//! Command numbers and the [`Rpc`] trait that ties each request type to its
//! command and its response type.
//!
//! The frame header carries the command as a raw `u16` so that a frame with
//! a number this build does not know still decodes; [`Command::try_from`]
//! turns it into a [`Command`] or a [`ProtocolError::UnknownCommand`] that the
//! server answers with [`crate::ErrorCode::UnknownCommand`].
//!
//! Numbers are stable and grouped by family in blocks of ten, leaving gaps for
//! later commands (consumer-group admin, transactions, admin tools).

use std::fmt;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::ProtocolError;

/// Every command of the protocol. The discriminant is the wire number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u16)]
pub enum Command {
    /// [`crate::Handshake`] → [`crate::HandshakeResponse`].
    Handshake = 1,
    /// [`crate::SendRequest`] → [`crate::SendResult`].
    SendMessage = 10,
    /// [`crate::SendBatchRequest`] → [`crate::SendBatchResponse`].
    SendBatch = 11,
    /// [`crate::PullRequest`] → [`crate::PullResponse`].
    PullMessage = 20,
    /// [`crate::QueryOffsetRequest`] → [`crate::QueryOffsetResponse`].
    QueryConsumerOffset = 30,
    /// [`crate::CommitOffsetRequest`] → [`crate::Ack`].
    UpdateConsumerOffset = 31,
    /// [`crate::GetQueueOffsetsRequest`] → [`crate::QueueOffsets`].
    GetQueueOffsets = 32,
    /// [`crate::HeartbeatRequest`] → [`crate::Ack`].
    Heartbeat = 40,
    /// [`crate::UnregisterClientRequest`] → [`crate::Ack`].
    UnregisterClient = 41,
    /// [`crate::RegisterBrokerRequest`] → [`crate::RegisterBrokerResponse`].
    RegisterBroker = 50,
    /// [`crate::UnregisterBrokerRequest`] → [`crate::Ack`].
    UnregisterBroker = 51,
    /// [`crate::GetRouteInfoRequest`] → [`crate::TopicRouteData`].
    GetRouteInfo = 52,
    /// [`crate::GetClusterInfoRequest`] → [`crate::ClusterInfo`].
    GetClusterInfo = 53,
    /// [`crate::GetTopicListRequest`] → [`crate::TopicList`].
    GetTopicList = 54,
    /// [`crate::CreateTopicRequest`] → [`crate::Ack`].
    CreateTopic = 60,
    /// [`crate::DeleteTopicRequest`] → [`crate::Ack`].
    DeleteTopic = 61,
    /// [`crate::GetTopicStatsRequest`] → [`crate::TopicStats`].
    GetTopicStats = 62,
    // Consumer groups (33-39, 42-49): add here.
    /// [`crate::GetConsumerListRequest`] → [`crate::ConsumerList`].
    GetConsumerList = 34,
    /// Server push [`crate::ConsumerIdsChanged`]: rebalance now.
    NotifyConsumerIdsChanged = 35,
    /// [`crate::LockBatchRequest`] → [`crate::LockBatchResponse`].
    LockBatchMq = 36,
    /// [`crate::UnlockBatchRequest`] → [`crate::Ack`].
    UnlockBatchMq = 37,
    /// [`crate::ResetOffsetRequest`] → [`crate::ResetOffsetResponse`].
    ResetOffset = 38,
    /// Server push [`crate::ResetOffsetNotify`]: continue from these offsets.
    NotifyResetOffset = 39,
    /// [`crate::GetConsumeProgressRequest`] → [`crate::ConsumeProgress`].
    GetConsumeProgress = 42,
    /// [`crate::GetGroupListRequest`] → [`crate::GroupList`].
    GetGroupList = 43,
    /// [`crate::DeleteGroupRequest`] → [`crate::Ack`].
    DeleteGroup = 44,
    /// [`crate::SendBackRequest`] → [`crate::SendBackResponse`].
    ConsumerSendBack = 46,
    // Queries and admin (70-89): add here.
    /// [`crate::GetScheduleStatsRequest`] → [`crate::ScheduleStats`].
    GetScheduleStats = 90,
    /// [`crate::SearchOffsetByTimeRequest`] → [`crate::SearchOffsetByTimeResponse`]
    /// (in the offsets block by number, listed here by owner).
    SearchOffsetByTime = 33,
    /// [`crate::QueryMessageByKeyRequest`] → [`crate::QueryMessageResponse`].
    QueryMessageByKey = 70,
    /// [`crate::ViewMessageByIdRequest`] → [`crate::QueryMessageResponse`].
    ViewMessageById = 71,
    /// [`crate::QueryMessageByTimeRequest`] → [`crate::QueryMessageResponse`].
    QueryMessageByTime = 72,
    /// [`crate::GetBrokerConfigRequest`] → [`crate::BrokerSettings`].
    GetBrokerConfig = 73,
    /// [`crate::SetBrokerConfigRequest`] → [`crate::Ack`].
    SetBrokerConfig = 74,
    /// [`crate::UpdateSubscriptionGroupRequest`] → [`crate::Ack`].
    UpdateSubscriptionGroup = 75,
    /// [`crate::GetSubscriptionGroupRequest`] → [`crate::SubscriptionGroupInfo`].
    GetSubscriptionGroup = 76,
    /// [`crate::GetConsumerConnectionsRequest`] → [`crate::ConsumerConnections`].
    GetConsumerConnections = 77,
    /// [`crate::GetProducerConnectionsRequest`] → [`crate::ProducerConnections`].
    GetProducerConnections = 78,
    /// [`crate::GetBrokerRuntimeStatusRequest`] → [`crate::BrokerRuntimeStatus`].
    GetBrokerRuntimeStatus = 79,
    /// [`crate::GetBrokerRuntimeRequest`] → [`crate::BrokerRuntime`].
    GetBrokerRuntime = 89,
    // Scheduler (90-99): add here.
    // Transactions (100-109).
    /// [`crate::EndTransactionRequest`] → [`crate::Ack`].
    EndTransaction = 100,
    /// [`crate::CheckTransactionStateRequest`] (server push) → no answer.
    CheckTransactionState = 101,
    // Replication (110-119).
    /// [`crate::SyncMetadataRequest`] → [`crate::MetadataSnapshot`].
    SyncMetadata = 110,
    /// [`crate::GetReplicationStatusRequest`] → [`crate::ReplicationStatus`].
    GetReplicationStatus = 111,
}

impl Command {
    /// Every command, in numeric order.
    pub const ALL: &'static [Command] = &[
        Command::Handshake,
        Command::SendMessage,
        Command::SendBatch,
        Command::PullMessage,
        Command::QueryConsumerOffset,
        Command::UpdateConsumerOffset,
        Command::GetQueueOffsets,
        Command::Heartbeat,
        Command::UnregisterClient,
        Command::RegisterBroker,
        Command::UnregisterBroker,
        Command::GetRouteInfo,
        Command::GetClusterInfo,
        Command::GetTopicList,
        Command::CreateTopic,
        Command::DeleteTopic,
        Command::GetTopicStats,
        // Consumer groups: add here.
        Command::GetConsumerList,
        Command::NotifyConsumerIdsChanged,
        Command::LockBatchMq,
        Command::UnlockBatchMq,
        Command::ResetOffset,
        Command::NotifyResetOffset,
        Command::GetConsumeProgress,
        Command::GetGroupList,
        Command::DeleteGroup,
        Command::ConsumerSendBack,
        // Queries and admin: add here.
        Command::GetScheduleStats,
        Command::SearchOffsetByTime,
        Command::QueryMessageByKey,
        Command::ViewMessageById,
        Command::QueryMessageByTime,
        Command::GetBrokerConfig,
        Command::SetBrokerConfig,
        Command::UpdateSubscriptionGroup,
        Command::GetSubscriptionGroup,
        Command::GetConsumerConnections,
        Command::GetProducerConnections,
        Command::GetBrokerRuntimeStatus,
        Command::GetBrokerRuntime,
        // Scheduler: add here.
        // Transactions.
        Command::EndTransaction,
        Command::CheckTransactionState,
        // Replication.
        Command::SyncMetadata,
        Command::GetReplicationStatus,
    ];

    /// The wire number.
    pub fn as_u16(self) -> u16 {
        self as u16
    }
}

impl TryFrom<u16> for Command {
    type Error = ProtocolError;

    fn try_from(n: u16) -> Result<Self, Self::Error> {
        Command::ALL
            .iter()
            .copied()
            .find(|c| c.as_u16() == n)
            .ok_or(ProtocolError::UnknownCommand(n))
    }
}

impl From<Command> for u16 {
    fn from(c: Command) -> Self {
        c.as_u16()
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}({})", self, self.as_u16())
    }
}

/// A request body type: its command number and the body of its successful
/// response. Clients use it to send typed requests
/// ([`crate::OutFrame::request`]) and decode typed answers; servers use it to
/// decode the body once they have routed on [`crate::RawFrame::command`].
pub trait Rpc: Serialize + DeserializeOwned {
    /// The command number that carries this request.
    const COMMAND: Command;
    /// The body of a successful response.
    type Response: Serialize + DeserializeOwned;
}

/// Implements [`Rpc`] for a request type.
macro_rules! rpc {
    ($req:ty => $resp:ty, $cmd:expr) => {
        impl $crate::command::Rpc for $req {
            const COMMAND: $crate::command::Command = $cmd;
            type Response = $resp;
        }
    };
}
pub(crate) use rpc;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip_and_unknown_fails() {
        for &c in Command::ALL {
            assert_eq!(Command::try_from(c.as_u16()).unwrap(), c);
        }
        assert!(matches!(
            Command::try_from(9999),
            Err(ProtocolError::UnknownCommand(9999))
        ));
    }
}
