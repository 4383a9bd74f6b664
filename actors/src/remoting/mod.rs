//! TCP plumbing shared by every Skylark server and client.
//!
//! * [`server`] accepts connections and hands each one to a [`connection::Connection`]
//!   actor on one of several arbiters (one per core), the least loaded first.
//! * [`connection`] is the server-side session actor (actix chat-tcp pattern):
//!   a gated framed read stream in, a counted write queue drained by a write
//!   task out, requests handed to a [`Service`] and answered by request id,
//!   in whatever order they finish.
//! * [`frame_budget`] is the process-wide budget of request frames still
//!   arriving, which the connections' read sides take from.
//! * [`client`] is the client-side connection actor: typed calls
//!   (`RpcClient::call::<SendRequest>(..)`) matched to answers by request id.
//!   It is the protocol crate's `skylark_codec::rpc` (a client needs it
//!   without the broker), re-exported here for the broker's own outgoing
//!   connections.
//!
//! * [`rocketmq`] is the listener for RocketMQ's own remoting protocol
//!   (NameServer and Broker each give it their answer function).
//!
//! * [`bad_input`] rate-limits the WARN lines of bad input on every port.
//!
//! Nothing here knows what a command means; the NameServer and Broker each
//! implement [`Service`].

pub mod bad_input;
pub mod connection;
pub mod frame_budget;
pub mod rocketmq;
pub mod server;
pub(crate) mod tracker;
pub mod wire;

#[cfg(test)]
mod hostile_wire_tests;

pub use skylark_codec::rpc as client;

pub use client::RpcClient;
pub use connection::{ConnInfo, Connection, Push};
pub use server::{serve, ServerHandle};

use actix::Addr;
use bytes::Bytes;
use futures::future::LocalBoxFuture;
use skylark_codec::{Command, RawFrame};

/// What a server does with one request frame.
///
/// The [`Connection`] has already answered unknown command numbers and the
/// handshake; `call` gets every other command, runs on the connection's
/// arbiter thread, and returns a future producing the already-encoded answer
/// frame (or `None` for a oneway request; [`wire::not_served`] for a command
/// this server does not serve). Implementations are cheap to clone (a
/// bundle of `Addr`s).
pub trait Service: Clone + Send + 'static {
    fn call(
        &self,
        cmd: Command,
        frame: RawFrame,
        conn: &ConnInfo,
    ) -> LocalBoxFuture<'static, Option<Bytes>>;

    /// The access control the connection applies to every request before
    /// `call` (see [`crate::acl`]); `None` (the default): ACL is off.
    fn acl(&self) -> Option<crate::acl::Acl> {
        None
    }

    /// Whether the connection should time each request for [`observe`]
    /// (read once per connection; a request is timed only while the
    /// process records metrics).
    ///
    /// [`observe`]: Service::observe
    fn times_requests(&self) -> bool {
        false
    }

    /// A request of `cmd` was answered `elapsed` after it was handed to
    /// [`call`](Service::call).
    fn observe(&self, _cmd: Command, _elapsed: std::time::Duration) {}
}

/// The connection a client's heartbeat came in on, whichever protocol it
/// speaks: consumer groups and the client registry keep one per member, to
/// tell whether it is still connected and to push notifications to it.
#[derive(Clone)]
pub enum ClientConn {
    /// A Skylark connection.
    Skylark(Addr<Connection>),
    /// A RocketMQ remoting connection.
    RocketMq(rocketmq::RemotingConn),
}

impl ClientConn {
    /// Whether the connection is still open.
    pub fn connected(&self) -> bool {
        match self {
            ClientConn::Skylark(a) => a.connected(),
            ClientConn::RocketMq(r) => r.connected(),
        }
    }
}
