//! `Handshake` (1): the first request on every connection.
//!
//! It exists so that a version mismatch is a typed error
//! (`UnsupportedVersion`) instead of a confusing decode failure later, and so
//! that the broker knows who it is talking to (the client id also appears in
//! heartbeats and logs).

use serde::{Deserialize, Serialize};

use crate::command::{rpc, Command};
use crate::error::{ProtocolError, Result};
use crate::PROTOCOL_VERSION;

/// Client → server: protocol version and identity.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Handshake {
    /// The protocol version the client speaks ([`PROTOCOL_VERSION`]).
    pub protocol_version: u16,
    /// Stable id of the client instance (`ip@pid` like RocketMQ).
    pub client_id: String,
    /// Version of the client software, for logs.
    pub client_version: String,
}

/// Server → client: the version the server will speak.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HandshakeResponse {
    /// The protocol version the server speaks.
    pub protocol_version: u16,
    /// Version of the server software, for logs.
    pub server_version: String,
}

rpc!(Handshake => HandshakeResponse, Command::Handshake);

impl Handshake {
    /// A handshake for this build's protocol version.
    pub fn new(client_id: impl Into<String>, client_version: impl Into<String>) -> Self {
        Handshake {
            protocol_version: PROTOCOL_VERSION,
            client_id: client_id.into(),
            client_version: client_version.into(),
        }
    }

    /// Errors with [`ProtocolError::UnsupportedVersion`] unless the client
    /// speaks this build's version.
    pub fn check_version(&self) -> Result<()> {
        if self.protocol_version != PROTOCOL_VERSION {
            return Err(ProtocolError::UnsupportedVersion(self.protocol_version));
        }
        Ok(())
    }
}
