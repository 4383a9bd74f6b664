//! The client's error type: one line that names the broker and topic.
//!
//! Errors answered by a broker keep their wire [`ErrorCode`] (so callers can
//! match on it and the retry policy can decide) and print the broker's own
//! reason first, e.g. `message too large: 5242880 bytes, limit 4194304
//! (broker 127.0.0.1:10911, topic 'T')`.

use skylark_codec::{ErrorCode, ProtocolError, WireError};

/// Result alias of the client.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// What can go wrong in the client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No NameServer answered.
    #[error("no NameServer reachable at {addrs}: {last}")]
    NameServerUnavailable {
        /// The addresses tried.
        addrs: String,
        /// The last failure.
        last: String,
    },
    /// The NameServer knows no route for the topic.
    #[error("topic '{0}' not found")]
    TopicNotFound(String),
    /// The route has no queue a producer may write (or a consumer read).
    #[error("topic '{topic}' has no {what} queue on a broker with a known address")]
    NoQueue {
        /// Topic name.
        topic: String,
        /// "writable" or "readable".
        what: &'static str,
    },
    /// Every broker hosting the topic denies what was asked: a topic permission (`admin topic perm`) or a drained
    /// broker (`admin broker perm wipe-write`).
    #[error("{}", permission_line(.topic, .what))]
    PermissionDenied {
        /// Topic name.
        topic: String,
        /// "writable" or "readable".
        what: &'static str,
    },
    /// The topic does not exist, and every broker that would create it on
    /// first send (the route of `TBW102`) refuses writes.
    #[error("topic '{topic}' does not exist, and no broker that would create it on first send is writable (a broker's write permission taken with `admin broker perm`; `admin topic route --name TBW102` shows PERM); create it with `admin topic create`, or give a broker back its write permission")]
    AutoCreateDenied {
        /// Topic name.
        topic: String,
    },
    /// A server answered with an error.
    #[error("{}", remote_line(.addr, .topic.as_deref(), .error))]
    Remote {
        /// Server address.
        addr: String,
        /// Topic of the request, if any.
        topic: Option<String>,
        /// The server's error.
        error: WireError,
    },
    /// A server with `tls_mode = enforcing` refused this plain-TCP client
    /// (its answer is [`skylark_codec::tls::PLAIN_REFUSAL`], code
    /// `AuthFailed` on the wire): connect with TLS (`--tls-ca`,
    /// [`ClientConfig::tls`](super::ClientConfig)). Not an ACL failure,
    /// so it does not say "auth failed".
    #[error("{} (server {addr})", tls_required_line(.reason))]
    TlsRequired {
        /// Server address.
        addr: String,
        /// The server's reason.
        reason: String,
    },
    /// The connection failed, closed or timed out.
    #[error("broker {addr}: {error}")]
    Connection {
        /// Server address.
        addr: String,
        /// What happened (not a `#[source]`: it is already in the line).
        error: ProtocolError,
    },
    /// A pulled record could not be decoded.
    #[error("corrupt record from broker {addr}: {reason}")]
    Decode {
        /// Broker address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// A message refused by the client before sending: its body is over
    /// [`ClientConfig::max_message_size`](super::ClientConfig) (RocketMQ's
    /// producer-side `maxMessageSize` check), or a request would not fit in
    /// one frame. Same wording as the broker's `MessageTooLarge` answer.
    #[error("message too large: {size} bytes, limit {limit} (refused by the client before sending, topic '{topic}')")]
    MessageTooLarge {
        /// Topic of the send.
        topic: String,
        /// Body size (or a batch's total) in bytes.
        size: usize,
        /// The limit it is over.
        limit: usize,
    },
    /// A caller-side mistake (bad filter, bad name, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The client actor is gone (its System stopped).
    #[error("client stopped")]
    Stopped,
}

/// Lowercase phrase for a code, used to prefix a reason that lacks one.
fn phrase(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::Unknown => "error",
        ErrorCode::Internal => "internal error",
        ErrorCode::Busy => "broker busy",
        ErrorCode::BadRequest => "bad request",
        ErrorCode::UnknownCommand => "unknown command",
        ErrorCode::UnsupportedVersion => "unsupported version",
        ErrorCode::TopicNotFound => "topic not found",
        ErrorCode::MessageTooLarge => "message too large",
        ErrorCode::NotMaster => "not master",
        ErrorCode::FlushDiskTimeout => "flush disk timeout",
        ErrorCode::FlushSlaveTimeout => "flush slave timeout",
        ErrorCode::SlaveNotAvailable => "slave not available",
        ErrorCode::DiskFull => "disk full",
        ErrorCode::PermissionDenied => "permission denied",
        ErrorCode::GroupNotFound => "group not found",
        ErrorCode::InvalidFilter => "invalid filter",
        ErrorCode::AuthFailed => "auth failed",
        ErrorCode::FrameTooLarge => "frame too large",
        ErrorCode::ServiceNotAvailable => "service not available",
        ErrorCode::TransactionNotFound => "transaction not found",
        ErrorCode::OffsetNotFound => "offset not found",
        ErrorCode::NoPermission => "no permission",
        ErrorCode::MessageDeleted => "message deleted",
    }
}

fn remote_line(addr: &str, topic: Option<&str>, error: &WireError) -> String {
    let p = phrase(error.code);
    let msg = error.message.trim();
    let reason = if msg.is_empty() {
        p.to_string()
    } else if msg.to_lowercase().starts_with(p) {
        msg.to_string()
    } else {
        format!("{p}: {msg}")
    };
    match topic {
        Some(t) => format!("{reason} (broker {addr}, topic '{t}')"),
        None => format!("{reason} (server {addr})"),
    }
}

/// Why no broker takes a send (a topic or a broker permission) or a pull
/// (only a topic permission: `admin broker perm` takes writes alone).
fn permission_line(topic: &str, what: &str) -> String {
    let cause = if what == "writable" {
        "a topic permission set with `admin topic perm`, or a broker's write permission taken with `admin broker perm`"
    } else {
        "a topic permission set with `admin topic perm`"
    };
    format!("topic '{topic}' is not {what} on any broker hosting it ({cause}; `admin topic route` shows PERM)")
}

/// The server's reason, led by "TLS required" (servers before that
/// wording sent the reason alone).
fn tls_required_line(reason: &str) -> String {
    let reason = reason.trim();
    if reason.to_ascii_lowercase().starts_with("tls required") {
        reason.to_string()
    } else {
        format!("TLS required: {reason}")
    }
}

impl ClientError {
    /// Wraps a failed call to `addr`: server errors keep their code, the rest
    /// are connection failures.
    pub fn from_call(addr: &str, topic: Option<&str>, e: ProtocolError) -> Self {
        match e {
            ProtocolError::Remote(error) if skylark_codec::tls::is_plain_refusal(&error) => {
                ClientError::TlsRequired {
                    addr: addr.to_string(),
                    reason: error.message,
                }
            }
            ProtocolError::Remote(error) => ClientError::Remote {
                addr: addr.to_string(),
                topic: topic.map(String::from),
                error,
            },
            error => ClientError::Connection {
                addr: addr.to_string(),
                error,
            },
        }
    }

    /// The server's error code, if a server answered with an error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Remote { error, .. } => Some(error.code),
            ClientError::TopicNotFound(_) => Some(ErrorCode::TopicNotFound),
            ClientError::MessageTooLarge { .. } => Some(ErrorCode::MessageTooLarge),
            ClientError::PermissionDenied { .. } | ClientError::AutoCreateDenied { .. } => {
                Some(ErrorCode::PermissionDenied)
            }
            // The wire code of the refusal: callers that stop at once on
            // `AuthFailed` (a consumer's probe) stop on this too.
            ClientError::TlsRequired { .. } => Some(ErrorCode::AuthFailed),
            _ => None,
        }
    }

    /// Whether a request went out and its answer did not come within the
    /// request timeout: the server may have done it.
    pub fn is_answer_timeout(&self) -> bool {
        matches!(self, ClientError::Connection { error: ProtocolError::Io(e), .. }
            if e.kind() == std::io::ErrorKind::TimedOut)
    }

    /// Whether the connection closed under the request without an answer
    /// (nor a last word from the server): the server restarted or closed
    /// it, maybe before the request reached it.
    pub fn is_connection_closed(&self) -> bool {
        matches!(self, ClientError::Connection { error: ProtocolError::Io(e), .. }
            if e.kind() == std::io::ErrorKind::ConnectionAborted)
    }

    /// Whether a server refused the request for good: the ACL
    /// (`NoPermission`, `AuthFailed`, a TLS-only port) or a permission or
    /// setting of a topic, group or broker (`PermissionDenied`). The same
    /// request fails the same way until an operator changes something.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self.code(),
            Some(ErrorCode::NoPermission | ErrorCode::PermissionDenied | ErrorCode::AuthFailed)
        )
    }

    /// Whether the same send may succeed on another broker.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Connection { .. } => true,
            ClientError::Remote { error, .. } => error.code.is_retryable(),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_error_is_one_line_with_reason_first() {
        let e = ClientError::Remote {
            addr: "127.0.0.1:10911".into(),
            topic: Some("T".into()),
            error: WireError::new(ErrorCode::MessageTooLarge, "5242880 bytes, limit 4194304"),
        };
        assert_eq!(
            e.to_string(),
            "message too large: 5242880 bytes, limit 4194304 (broker 127.0.0.1:10911, topic 'T')"
        );
        let e = ClientError::Remote {
            addr: "b".into(),
            topic: None,
            error: WireError::new(ErrorCode::MessageTooLarge, "Message too large: 5 > 4"),
        };
        assert_eq!(e.to_string(), "Message too large: 5 > 4 (server b)");
        assert!(!e.is_retryable());
        assert_eq!(e.code(), Some(ErrorCode::MessageTooLarge));
    }

    #[test]
    fn client_side_too_large_reads_like_the_brokers_answer() {
        let e = ClientError::MessageTooLarge {
            topic: "T".into(),
            size: 20_000_000,
            limit: 4_194_304,
        };
        assert!(e
            .to_string()
            .starts_with("message too large: 20000000 bytes, limit 4194304"));
        assert_eq!(e.code(), Some(ErrorCode::MessageTooLarge));
        assert!(!e.is_retryable());
    }

    #[test]
    fn a_plain_refusal_says_tls_required_not_auth_failed() {
        // This server's wording, and that of servers before it.
        for msg in [
            skylark_codec::tls::PLAIN_REFUSAL,
            "this port accepts TLS connections only (tls_mode = enforcing): connect with TLS",
        ] {
            let e = ClientError::from_call(
                "127.0.0.1:9876",
                None,
                ProtocolError::Remote(WireError::new(ErrorCode::AuthFailed, msg)),
            );
            assert!(matches!(e, ClientError::TlsRequired { .. }), "{e:?}");
            assert_eq!(
                e.to_string(),
                "TLS required: this port accepts TLS connections only (tls_mode = enforcing): \
                 connect with TLS (server 127.0.0.1:9876)"
            );
            assert_eq!(e.code(), Some(ErrorCode::AuthFailed));
            assert!(!e.is_retryable());
        }
        // An ACL failure is still one.
        let e = ClientError::from_call(
            "b:1",
            Some("T"),
            ProtocolError::Remote(WireError::new(ErrorCode::AuthFailed, "signature mismatch")),
        );
        assert!(matches!(e, ClientError::Remote { .. }), "{e:?}");
        assert!(e.to_string().starts_with("auth failed: signature mismatch"));
    }

    #[test]
    fn connection_errors_are_retryable() {
        let e = ClientError::from_call(
            "x:1",
            None,
            ProtocolError::Io(std::io::Error::other("closed")),
        );
        assert!(e.is_retryable());
        assert!(e.to_string().contains("x:1"));
    }
}
