//! Encoding helpers between typed bodies and frame bytes.
//!
//! Servers answer with [`response`]/[`error_response`] (the protocol's
//! `skylark_codec::wire`, re-exported here); [`dispatch`] turns a
//! typed async handler into the bytes of its answer so each command handler
//! is one line in a `match`.

use std::future::Future;

use bytes::{Bytes, BytesMut};
use serde::Serialize;
use skylark_codec::{ErrorCode, FrameKind, Header, RawFrame, Rpc, WireError};

pub use skylark_codec::wire::{encode, encode_request, error_response, response};

/// Decodes the request body as `R`, runs `f`, and encodes its answer.
/// A body that does not decode is answered with `BadRequest`.
pub async fn dispatch<R, F, Fut>(frame: RawFrame, f: F) -> Option<Bytes>
where
    R: Rpc + serde::de::DeserializeOwned,
    R::Response: Serialize,
    F: FnOnce(R) -> Fut,
    Fut: Future<Output = Result<R::Response, WireError>>,
{
    let header = frame.header;
    let req: R = match frame.decode_body() {
        Ok(r) => r,
        Err(e) => {
            return answer::<()>(
                &header,
                Err(WireError::new(
                    ErrorCode::BadRequest,
                    format!("bad request body: {e}"),
                )),
            );
        }
    };
    let result = f(req).await;
    answer(&header, result)
}

/// Tails below this are copied into the answer frame (see
/// [`dispatch_with_tail`]).
pub const COPY_TAIL: usize = 16 * 1024;

/// [`dispatch`] for a command whose answer ends with a large `bin` held as
/// slices elsewhere (a pull answer's records, in the mapped CommitLog):
/// `f` answers the body with that field left empty, plus the slices. The
/// head is encoded with [`skylark_codec::encode_frame_with_tail`] and
/// handed with the slices behind it to `queue` (the connection's
/// `AnswerWithTail`), so they reach the socket without being copied into
/// the frame; without slices the answer is an ordinary frame.
pub async fn dispatch_with_tail<R, F, Fut, Q>(frame: RawFrame, queue: Q, f: F) -> Option<Bytes>
where
    R: Rpc + serde::de::DeserializeOwned,
    R::Response: Serialize,
    F: FnOnce(R) -> Fut,
    Q: FnOnce(Bytes, Vec<Bytes>),
    Fut: Future<Output = Result<(R::Response, Vec<Bytes>), WireError>>,
{
    let header = frame.header;
    let req: R = match frame.decode_body() {
        Ok(r) => r,
        Err(e) => {
            let e = WireError::new(ErrorCode::BadRequest, format!("bad request body: {e}"));
            return answer::<()>(&header, Err(e));
        }
    };
    let (body, tail) = match f(req).await {
        Ok(ok) => ok,
        Err(e) => return answer::<()>(&header, Err(e)),
    };
    if header.kind == FrameKind::Oneway {
        return None;
    }
    if tail.is_empty() {
        return Some(response(&header, &body));
    }
    let h = Header {
        request_id: header.request_id,
        kind: FrameKind::Response,
        command: header.command,
    };
    let tail_len = tail.iter().map(Bytes::len).sum();
    let mut head = BytesMut::new();
    let ok = Ok::<&R::Response, WireError>(&body);
    let max = skylark_codec::DEFAULT_MAX_FRAME_SIZE;
    match skylark_codec::encode_frame_with_tail(&h, &ok, tail_len, &mut head, max) {
        Ok(()) if tail_len < COPY_TAIL => {
            // A small tail is copied behind the head: cheaper than a trip
            // through the connection's mailbox and more iovecs.
            head.reserve(tail_len);
            for c in &tail {
                head.extend_from_slice(c);
            }
            Some(head.freeze())
        }
        Ok(()) => {
            queue(head.freeze(), tail);
            None
        }
        Err(e) => Some(error_response(
            &header,
            WireError::new(ErrorCode::Internal, e.to_string()),
        )),
    }
}

fn answer<T: Serialize>(header: &Header, result: Result<T, WireError>) -> Option<Bytes> {
    if header.kind == FrameKind::Oneway {
        return None;
    }
    Some(match result {
        Ok(body) => response(header, &body),
        Err(e) => error_response(header, e),
    })
}

/// The answer to a known command this server does not serve.
pub fn not_served(header: &Header, cmd: skylark_codec::Command, server: &str) -> Option<Bytes> {
    let e = WireError::new(
        ErrorCode::UnknownCommand,
        format!("command {cmd:?} is not served by a {server}"),
    );
    Some(error_response(header, e))
}
