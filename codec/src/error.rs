//! Error codes and error types of the wire protocol.
//!
//! Two kinds of errors live here, on purpose in one place so that the mapping
//! between them is written exactly once:
//!
//! * [`ErrorCode`] / [`WireError`]: what travels *over the wire* inside an
//!   error response. The numbers are part of the protocol and never change;
//!   a peer that receives a number it does not know decodes it as
//!   [`ErrorCode::Unknown`] instead of failing.
//! * [`ProtocolError`]: what the codec returns *locally* (I/O, a frame that is
//!   too large or malformed, an error answered by the peer, ...).
//!   [`ProtocolError::code`] maps each one onto an [`ErrorCode`] so a server
//!   can answer a bad request with a typed error.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Stable numeric error codes carried in error responses (serialized as a
/// MessagePack unsigned integer).
///
/// The numbers are part of the protocol: never renumber, only append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u16)]
pub enum ErrorCode {
    /// A code this build does not know (sent by a newer peer). Decoding any
    /// unknown number yields this variant; the raw number is not kept.
    /// Encodes as 0, which is never sent on purpose.
    Unknown = 0,
    /// Unexpected failure inside the server (a bug or an I/O error).
    Internal = 1,
    /// The server is overloaded (full queue or mailbox); retry later.
    Busy = 2,
    /// The request is invalid: undecodable body, bad field value, bad name.
    BadRequest = 3,
    /// The command number is not known to the server.
    UnknownCommand = 4,
    /// The client's protocol version is not supported by the server.
    UnsupportedVersion = 5,
    /// The topic does not exist (and auto-creation is off).
    TopicNotFound = 6,
    /// A message body (or the whole message) exceeds the maximum message size.
    MessageTooLarge = 7,
    /// A write was sent to a slave broker; writes must go to the master.
    NotMaster = 8,
    /// Synchronous flush to disk did not finish in time (the message was
    /// stored but may not be durable yet).
    FlushDiskTimeout = 9,
    /// Synchronous replication to the slave did not finish in time.
    FlushSlaveTimeout = 10,
    /// Synchronous replication is required but no slave is connected.
    SlaveNotAvailable = 11,
    /// The store's disk is too full to accept writes.
    DiskFull = 12,
    /// The topic or broker does not allow this operation (read/write perm).
    PermissionDenied = 13,
    /// The consumer group is not known to the broker.
    GroupNotFound = 14,
    /// A subscription expression (tag expression or SQL filter) is invalid.
    InvalidFilter = 15,
    /// Authentication failed (bad credentials or signature).
    AuthFailed = 16,
    /// A frame exceeded the maximum frame size.
    FrameTooLarge = 17,
    /// The service is shutting down (or not started yet); try another broker.
    ServiceNotAvailable = 18,
    /// The transaction (half message) referred to does not exist.
    TransactionNotFound = 19,
    /// No committed offset exists for the (group, topic, queue).
    OffsetNotFound = 20,
    /// ACL: the account is valid but lacks the permission the request
    /// needs (the message names it, e.g. `PUB on topic 'T'`).
    NoPermission = 21,
    /// The message an offset message id names was deleted by retention:
    /// its CommitLog offset is below the broker's retained minimum.
    MessageDeleted = 22,
}

impl ErrorCode {
    /// Every known code, in numeric order (without [`ErrorCode::Unknown`]).
    pub const ALL: [ErrorCode; 22] = [
        ErrorCode::Internal,
        ErrorCode::Busy,
        ErrorCode::BadRequest,
        ErrorCode::UnknownCommand,
        ErrorCode::UnsupportedVersion,
        ErrorCode::TopicNotFound,
        ErrorCode::MessageTooLarge,
        ErrorCode::NotMaster,
        ErrorCode::FlushDiskTimeout,
        ErrorCode::FlushSlaveTimeout,
        ErrorCode::SlaveNotAvailable,
        ErrorCode::DiskFull,
        ErrorCode::PermissionDenied,
        ErrorCode::GroupNotFound,
        ErrorCode::InvalidFilter,
        ErrorCode::AuthFailed,
        ErrorCode::FrameTooLarge,
        ErrorCode::ServiceNotAvailable,
        ErrorCode::TransactionNotFound,
        ErrorCode::OffsetNotFound,
        ErrorCode::NoPermission,
        ErrorCode::MessageDeleted,
    ];

    /// The number sent on the wire.
    pub fn as_u16(self) -> u16 {
        self as u16
    }

    /// Maps a wire number to a code; unknown numbers map to
    /// [`ErrorCode::Unknown`] (never fails).
    pub fn from_u16(n: u16) -> ErrorCode {
        ErrorCode::ALL
            .iter()
            .copied()
            .find(|c| c.as_u16() == n)
            .unwrap_or(ErrorCode::Unknown)
    }

    /// Whether a client may retry the same request later (possibly on
    /// another broker) and expect it to succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::Busy
                | ErrorCode::NotMaster
                | ErrorCode::FlushDiskTimeout
                | ErrorCode::FlushSlaveTimeout
                | ErrorCode::SlaveNotAvailable
                | ErrorCode::ServiceNotAvailable
                | ErrorCode::DiskFull
        )
    }
}

impl From<u16> for ErrorCode {
    fn from(n: u16) -> Self {
        ErrorCode::from_u16(n)
    }
}

impl From<ErrorCode> for u16 {
    fn from(c: ErrorCode) -> Self {
        c.as_u16()
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}({})", self, self.as_u16())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_u16(self.as_u16())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        u16::deserialize(d).map(ErrorCode::from_u16)
    }
}

/// An error as carried in an error response: a stable code and a
/// human-readable message (for logs and operators, not for matching).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WireError {
    /// What went wrong, as a stable number.
    pub code: ErrorCode,
    /// Details for humans.
    pub message: String,
}

impl WireError {
    /// Builds a wire error.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        WireError {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for WireError {}

/// Errors returned by the codec (and by decoding a peer's error response).
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// Reading or writing the transport failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// A frame's length prefix exceeds the configured maximum. The bytes are
    /// not consumed: the connection cannot resynchronise and must close.
    #[error("frame too large: {size} bytes exceeds the maximum of {max} bytes")]
    FrameTooLarge {
        /// Length announced (or produced) for the frame.
        size: usize,
        /// Configured maximum frame size.
        max: usize,
    },
    /// A message exceeds the maximum message size.
    #[error("message of {size} bytes exceeds the maximum of {max} bytes")]
    MessageTooLarge {
        /// Size of the message body.
        size: usize,
        /// Configured maximum message size.
        max: usize,
    },
    /// Bytes that are not a valid frame or not a valid body of the expected
    /// type.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// A command number this build does not know.
    #[error("unknown command {0}")]
    UnknownCommand(u16),
    /// A protocol version this build does not speak.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u16),
    /// A field value that decodes but is not acceptable (bad message id,
    /// bad name, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A subscription expression that cannot be parsed.
    #[error("invalid filter expression: {0}")]
    InvalidFilter(String),
    /// A value could not be serialized (should not happen for codec types).
    #[error("cannot encode: {0}")]
    Encode(String),
    /// The peer answered with an error response.
    #[error("remote error: {0}")]
    Remote(WireError),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, ProtocolError>;

impl ProtocolError {
    /// The wire code that describes this error, used to answer a request
    /// that failed with it.
    pub fn code(&self) -> ErrorCode {
        match self {
            ProtocolError::Io(_) | ProtocolError::Encode(_) => ErrorCode::Internal,
            ProtocolError::FrameTooLarge { .. } => ErrorCode::FrameTooLarge,
            ProtocolError::MessageTooLarge { .. } => ErrorCode::MessageTooLarge,
            ProtocolError::Malformed(_) | ProtocolError::InvalidArgument(_) => {
                ErrorCode::BadRequest
            }
            ProtocolError::UnknownCommand(_) => ErrorCode::UnknownCommand,
            ProtocolError::UnsupportedVersion(_) => ErrorCode::UnsupportedVersion,
            ProtocolError::InvalidFilter(_) => ErrorCode::InvalidFilter,
            ProtocolError::Remote(w) => w.code,
        }
    }

    /// The error response to send for this error. A [`ProtocolError::Remote`]
    /// is passed through unchanged.
    pub fn to_wire(&self) -> WireError {
        match self {
            ProtocolError::Remote(w) => w.clone(),
            other => WireError::new(other.code(), other.to_string()),
        }
    }
}

impl From<WireError> for ProtocolError {
    fn from(w: WireError) -> Self {
        ProtocolError::Remote(w)
    }
}

impl From<&ProtocolError> for WireError {
    fn from(e: &ProtocolError) -> Self {
        e.to_wire()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_and_unique() {
        for (i, c) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(c.as_u16() as usize, i + 1);
            assert_eq!(ErrorCode::from_u16(c.as_u16()), *c);
        }
        assert_eq!(ErrorCode::from_u16(0), ErrorCode::Unknown);
        assert_eq!(ErrorCode::from_u16(9999), ErrorCode::Unknown);
    }

    #[test]
    fn unknown_code_decodes() {
        let bytes = rmp_serde::to_vec(&777u16).unwrap();
        let c: ErrorCode = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(c, ErrorCode::Unknown);
        let bytes = rmp_serde::to_vec(&ErrorCode::NotMaster).unwrap();
        assert_eq!(bytes, vec![8]);
    }
}
