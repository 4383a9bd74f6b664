//! Typed bodies of every command, one module per command family.
//!
//! Each module defines the request and response bodies of its family and
//! implements [`crate::Rpc`] for each request type, which fixes its command
//! number and response type in one line next to the type.

pub mod broker;
pub mod group;
pub mod handshake;
pub mod heartbeat;
pub mod offset;
pub mod ops;
pub mod pull;
pub mod query;
pub mod replication;
pub mod route;
pub mod runtime;
pub mod schedule;
pub mod send;
pub mod topic;
pub mod transaction;

use serde::{Deserialize, Serialize};

/// Empty success response of commands that only need a yes (encodes as an
/// empty map, so fields can be added later).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Ack {}
