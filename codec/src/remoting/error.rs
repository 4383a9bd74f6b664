//! Errors of the RocketMQ remoting codec.
//!
//! Every malformed input maps onto one of these; the listener closes the
//! connection on any of them (a broken frame leaves no way to find the
//! next one), as RocketMQ's own `NettyDecoder` does, answering first the
//! one it can: [`RemotingError::HeaderOverBudget`].

/// What went wrong while reading or writing a `RemotingCommand`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemotingError {
    /// The frame's length field is above the limit; nothing was allocated.
    #[error("remoting frame of {len} bytes is above the limit of {max} bytes")]
    FrameTooLarge { len: usize, max: usize },
    /// The frame's length field cannot even hold the 4-byte header mark.
    #[error("remoting frame length {0} is shorter than its 4-byte header mark")]
    FrameTooShort(i64),
    /// The header length in the header mark overruns the frame.
    #[error("remoting header length {header} overruns a frame of {frame} bytes")]
    HeaderOverrun { header: usize, frame: usize },
    /// The serialize type (high byte of the header mark) is neither 0 (JSON) nor 1 (ROCKETMQ).
    #[error("unknown remoting serialize type {0} (0 = JSON, 1 = ROCKETMQ)")]
    UnknownSerializeType(u8),
    /// A binary header ended inside a field.
    #[error("binary remoting header truncated in {0}")]
    Truncated(&'static str),
    /// A binary header length field is negative or overruns the header.
    #[error("binary remoting header: bad length {len} for {field}")]
    BadLength { field: &'static str, len: i64 },
    /// A binary header string is not UTF-8.
    #[error("binary remoting header: {0} is not UTF-8")]
    InvalidUtf8(&'static str),
    /// Bytes left over after the last field of a binary header.
    #[error("binary remoting header: {0} trailing bytes")]
    TrailingBytes(usize),
    /// A JSON header that does not parse, or lacks `code`.
    #[error("JSON remoting header: {0}")]
    Json(String),
    /// A header (JSON or binary) that would decode into more than its
    /// budget (`skylark_codec::budget`: 8 × its length + 16 KiB), e.g. a
    /// million empty `extFields`. The frame itself was whole, so `request`
    /// holds what the listener needs to answer it: code, language, version,
    /// opaque, flag and codec (no remark, extFields or body).
    #[error("remoting header of {len} bytes would decode into more than {budget} bytes (8 x its length + 16 KiB)")]
    HeaderOverBudget {
        len: usize,
        budget: usize,
        request: Box<super::RemotingCommand>,
    },
    /// A value does not fit its binary field (e.g. a code above i16).
    #[error("{field} = {value} does not fit the ROCKETMQ binary header")]
    OutOfRange { field: &'static str, value: i64 },
    /// Reading or writing the socket failed.
    #[error("remoting i/o: {0}")]
    Io(String),
}

impl From<std::io::Error> for RemotingError {
    fn from(e: std::io::Error) -> Self {
        RemotingError::Io(e.to_string())
    }
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, RemotingError>;
