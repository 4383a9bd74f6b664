//! Encoding typed bodies into frame bytes: requests (signed when the
//! connection has credentials) and answers. Both sides use these: a client
//! for its requests, a server for its answers.

use bytes::{Bytes, BytesMut};
use serde::Serialize;
use tokio_util::codec::Encoder;

use crate::{ErrorCode, FrameCodec, FrameKind, Header, OutFrame, WireError};

/// Encodes one frame (header + body) into fresh bytes.
pub fn encode<T: Serialize>(header: Header, body: &T) -> Bytes {
    let mut buf = BytesMut::new();
    // Encoding into memory only fails if serde refuses the value, which
    // our protocol types never do; a failure becomes an Internal error frame.
    match FrameCodec::default().encode(OutFrame::new(header, body), &mut buf) {
        Ok(()) => buf.freeze(),
        Err(e) => {
            let mut buf = BytesMut::new();
            let err: Result<(), WireError> =
                Err(WireError::new(ErrorCode::Internal, e.to_string()));
            let h = Header {
                kind: FrameKind::Response,
                ..header
            };
            let _ = FrameCodec::default().encode(OutFrame::new(h, &err), &mut buf);
            buf.freeze()
        }
    }
}

/// Encodes one request frame, signed with `creds` when given (ACL).
pub fn encode_request<T: Serialize>(
    header: Header,
    body: &T,
    creds: Option<&crate::Credentials>,
) -> Bytes {
    let Some(creds) = creds else {
        return encode(header, body);
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut buf = BytesMut::new();
    match crate::auth::encode_signed_frame(
        &header,
        body,
        creds,
        now,
        &mut buf,
        crate::DEFAULT_MAX_FRAME_SIZE,
    ) {
        Ok(()) => buf.freeze(),
        // Same fallback as `encode`: the peer gets a frame it can answer.
        Err(_) => encode(header, body),
    }
}

/// The answer frame to `req` carrying `Ok(body)`.
pub fn response<T: Serialize>(req: &Header, body: &T) -> Bytes {
    let h = Header {
        request_id: req.request_id,
        kind: FrameKind::Response,
        command: req.command,
    };
    encode(h, &Ok::<&T, WireError>(body))
}

/// The answer frame to `req` carrying an error.
pub fn error_response(req: &Header, err: WireError) -> Bytes {
    let h = Header {
        request_id: req.request_id,
        kind: FrameKind::Response,
        command: req.command,
    };
    encode(h, &Err::<(), WireError>(err))
}
