//! Framing: how one request or response travels on a TCP stream.
//!
//! This module owns the byte layout; everything else is typed bodies.
//!
//! ```text
//! +----------------+--------------------------------------------------+
//! | length: u32 BE | MessagePack value: [header, body]   (length bytes)|
//! +----------------+--------------------------------------------------+
//! header = [request_id: u64, kind: u8, command: u16]   (positional array)
//! body   = the command's body type, structs as maps keyed by field name
//! ```
//!
//! * `length` counts the bytes after the prefix. It is checked against
//!   [`FrameCodec::max_frame_size`] before anything is reserved, and must be
//!   at least [`MIN_FRAME_LEN`]. Room for the payload is reserved as its
//!   bytes arrive, [`READ_RESERVE_STEP`] at a time, never for the whole
//!   announced length at once.
//! * The envelope is always a `fixarray` of 2 (`0x92`). The header is a fixed
//!   positional triple: it never changes without a protocol version bump.
//!   Bodies encode structs as *maps* (field name → value) so fields can be
//!   added later: unknown keys are ignored and new `Option` fields default to
//!   `None`, which lets brokers and clients of different versions talk.
//! * Enums encode unit variants as their name (`"SendOk"`) and newtype
//!   variants as a one-entry map (`{"Timestamp": 123}`); byte payloads are
//!   MessagePack `bin`.
//! * A response reuses the request's `request_id` and `command` with
//!   `kind = Response`; its body is `Result<T, WireError>` in serde's
//!   encoding (`{"Ok": body}` or `{"Err": {"code": n, "message": s}}`).
//!
//! [`FrameCodec`] decodes a [`RawFrame`]: the header is decoded, the body is
//! only checked to be exactly one well-formed MessagePack value and kept as a
//! zero-copy slice, so a server can route on the command (and answer an
//! unknown one) before decoding the body with [`RawFrame::decode_body`].
//!
//! A signed request (ACL, see `crate::auth`) is a `fixarray` of 3
//! (`0x93`): `[header, body, auth]`; the trailer lands in [`RawFrame::auth`].

use bytes::{BufMut, Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio_util::codec::{Decoder, Encoder};

use crate::command::{Command, Rpc};
use crate::error::{ProtocolError, Result, WireError};
use crate::frame_auth::FrameAuth;
use crate::skip::skip_value;
use crate::DEFAULT_MAX_FRAME_SIZE;

/// Size of the big-endian length prefix.
pub const LENGTH_PREFIX_LEN: usize = 4;

/// Smallest possible frame payload: the envelope marker, a 4-byte header
/// (`[fixint, fixint, fixint]`) and a 1-byte body.
pub const MIN_FRAME_LEN: usize = 1 + 4 + 1;

/// The MessagePack marker of the `[header, body]` envelope (fixarray of 2).
const ENVELOPE_MARKER: u8 = 0x92;
/// The marker of a signed `[header, body, auth]` envelope (fixarray of 3).
const SIGNED_ENVELOPE_MARKER: u8 = 0x93;

/// Maximum nesting accepted when decoding a body (our types nest < 10 deep;
/// the bound keeps hostile input from using deep recursion).
const MAX_DECODE_DEPTH: usize = 32;

/// What a frame is, which tells the receiver whether to answer it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// Expects exactly one [`FrameKind::Response`] with the same request id.
    Request = 0,
    /// Answer to a request: same request id and command.
    Response = 1,
    /// A request that must not be answered (fire and forget).
    Oneway = 2,
    /// Unsolicited message from the server to the client.
    Push = 3,
}

impl TryFrom<u8> for FrameKind {
    type Error = ProtocolError;

    fn try_from(n: u8) -> Result<Self> {
        match n {
            0 => Ok(FrameKind::Request),
            1 => Ok(FrameKind::Response),
            2 => Ok(FrameKind::Oneway),
            3 => Ok(FrameKind::Push),
            other => Err(ProtocolError::Malformed(format!(
                "unknown frame kind {other}"
            ))),
        }
    }
}

impl Serialize for FrameKind {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_u8(*self as u8)
    }
}

impl<'de> Deserialize<'de> for FrameKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let n = u8::deserialize(d)?;
        // The caller wraps this text in `Malformed`: give the bare reason.
        FrameKind::try_from(n)
            .map_err(|_| serde::de::Error::custom(format!("unknown frame kind {n}")))
    }
}

/// The routing part of every frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// Chosen by the requester, echoed in the response.
    pub request_id: u64,
    /// Request, response, oneway or push.
    pub kind: FrameKind,
    /// The raw command number (see [`Command`]); kept raw so that an unknown
    /// command still decodes and can be answered with `UnknownCommand`.
    pub command: u16,
}

impl Header {
    /// Header of a request.
    pub fn request(request_id: u64, command: Command) -> Self {
        Header {
            request_id,
            kind: FrameKind::Request,
            command: command.as_u16(),
        }
    }

    /// Header of a oneway request.
    pub fn oneway(request_id: u64, command: Command) -> Self {
        Header {
            request_id,
            kind: FrameKind::Oneway,
            command: command.as_u16(),
        }
    }

    /// Header of a server push.
    pub fn push(request_id: u64, command: Command) -> Self {
        Header {
            request_id,
            kind: FrameKind::Push,
            command: command.as_u16(),
        }
    }

    /// Header of the response to `request_id` carrying raw `command`.
    pub fn response(request_id: u64, command: u16) -> Self {
        Header {
            request_id,
            kind: FrameKind::Response,
            command,
        }
    }

    /// Header of the response to the frame with this header.
    pub fn response_to(&self) -> Self {
        Header::response(self.request_id, self.command)
    }

    /// The command, or `UnknownCommand` for a number this build lacks.
    pub fn command(&self) -> Result<Command> {
        Command::try_from(self.command)
    }
}

impl Serialize for Header {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        (self.request_id, self.kind, self.command).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Header {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (request_id, kind, command) = <(u64, FrameKind, u16)>::deserialize(d)?;
        Ok(Header {
            request_id,
            kind,
            command,
        })
    }
}

/// The header of a frame from its first payload bytes (after the length
/// prefix), if they hold the envelope marker and a whole header: how a
/// server answers a frame it will not read (too large) with the request's
/// id and command, so the client knows which request failed.
pub fn peek_header(payload: &[u8]) -> Option<Header> {
    let rest = payload.strip_prefix(&[ENVELOPE_MARKER])?;
    let mut de = rmp_serde::Deserializer::from_read_ref(rest);
    Header::deserialize(&mut de).ok()
}

/// The body of every response: the success body or a [`WireError`].
pub type ResponseBody<T> = std::result::Result<T, WireError>;

/// A decoded frame whose body is still raw MessagePack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    /// The decoded header.
    pub header: Header,
    /// The MessagePack bytes of the body value (a slice of the frame buffer).
    pub body: Bytes,
    /// The signature trailer of a signed request (ACL), if any.
    pub auth: Option<Box<FrameAuth>>,
}

impl RawFrame {
    /// The command, or `UnknownCommand` for a number this build lacks.
    pub fn command(&self) -> Result<Command> {
        self.header.command()
    }

    /// Decodes the body as `T`. The body must be exactly one MessagePack
    /// value of `T`'s shape; anything else (trailing bytes, garbage, wrong
    /// type) is [`ProtocolError::Malformed`].
    ///
    /// Byte payloads marked with [`crate::shared_bytes`] (message bodies,
    /// pulled records) come out as slices of this frame's buffer, not copies.
    pub fn decode_body<'a, T: Deserialize<'a>>(&'a self) -> Result<T> {
        crate::shared_bytes::with_base(&self.body, || decode_value(&self.body))
    }

    /// Decodes a request body after checking that the frame's command is
    /// `R::COMMAND`.
    pub fn decode_request<R: Rpc>(&self) -> Result<R> {
        if self.header.command != R::COMMAND.as_u16() {
            return Err(ProtocolError::Malformed(format!(
                "command {} does not carry a {} body",
                self.header.command,
                R::COMMAND
            )));
        }
        self.decode_body()
    }

    /// Decodes a response body (`Result<T, WireError>`), turning an error
    /// response into [`ProtocolError::Remote`].
    pub fn decode_response<T: DeserializeOwned>(&self) -> Result<T> {
        self.decode_body::<ResponseBody<T>>()?
            .map_err(ProtocolError::Remote)
    }
}

/// Decodes one MessagePack value that must fill `buf` exactly, into at
/// most [`crate::budget::budget_for`]`(buf.len())` bytes of memory: a value
/// that would take more (a hostile array of millions of empty strings) is
/// [`ProtocolError::Malformed`] before it is built.
pub fn decode_value<'a, T: Deserialize<'a>>(buf: &'a [u8]) -> Result<T> {
    let end = skip_value(buf).map_err(ProtocolError::Malformed)?;
    if end != buf.len() {
        return Err(ProtocolError::Malformed(format!(
            "{} trailing bytes after the value",
            buf.len() - end
        )));
    }
    let mut de = rmp_serde::Deserializer::from_read_ref(buf);
    de.set_max_depth(MAX_DECODE_DEPTH);
    crate::budget::decode(&mut de, crate::budget::budget_for(buf.len()))
        .map_err(|e| ProtocolError::Malformed(e.to_string()))
}

/// A frame to encode: a header and any serializable body (usually a
/// reference to a request, or a [`ResponseBody`]).
#[derive(Debug, Clone, PartialEq)]
pub struct OutFrame<B> {
    /// The header to send.
    pub header: Header,
    /// The body to serialize.
    pub body: B,
}

impl<B: Serialize> OutFrame<B> {
    /// A frame with an explicit header.
    pub fn new(header: Header, body: B) -> Self {
        OutFrame { header, body }
    }
}

impl<'a, R: Rpc> OutFrame<&'a R> {
    /// A request for `R::COMMAND`.
    pub fn request(request_id: u64, body: &'a R) -> Self {
        OutFrame::new(Header::request(request_id, R::COMMAND), body)
    }

    /// A oneway request for `R::COMMAND` (not answered).
    pub fn oneway(request_id: u64, body: &'a R) -> Self {
        OutFrame::new(Header::oneway(request_id, R::COMMAND), body)
    }
}

impl<'a, T: Serialize> OutFrame<ResponseBody<&'a T>> {
    /// A successful response to the request with header `request`.
    pub fn response_ok(request: &Header, body: &'a T) -> Self {
        OutFrame::new(request.response_to(), Ok(body))
    }

    /// A response (success or error) to the request with header `request`.
    pub fn response(request: &Header, body: ResponseBody<&'a T>) -> Self {
        OutFrame::new(request.response_to(), body)
    }
}

impl OutFrame<ResponseBody<()>> {
    /// An error response to the request with header `request` (works for
    /// unknown command numbers too).
    pub fn response_err(request: &Header, error: WireError) -> Self {
        OutFrame::new(request.response_to(), Err(error))
    }
}

/// Appends one frame (length prefix, `[header, body]`) to `dst`, serializing
/// straight into the buffer. On error `dst` is left as it was.
pub fn encode_frame<B: Serialize + ?Sized>(
    header: &Header,
    body: &B,
    dst: &mut BytesMut,
    max_frame_size: usize,
) -> Result<()> {
    let start = dst.len();
    let result = write_frame(header, body, dst, start, max_frame_size);
    if result.is_err() {
        dst.truncate(start);
    }
    result
}

fn write_frame<B: Serialize + ?Sized>(
    header: &Header,
    body: &B,
    dst: &mut BytesMut,
    start: usize,
    max_frame_size: usize,
) -> Result<()> {
    write_frame_parts::<B, fn(&mut BytesMut, usize) -> Result<()>>(
        header,
        body,
        dst,
        start,
        max_frame_size,
        None,
    )
}

/// Writes prefix, envelope, header and body; then, for a signed frame,
/// `trailer(dst, body_start)` appends the auth trailer. The caller
/// truncates `dst` on error.
pub(crate) fn write_frame_parts<B, F>(
    header: &Header,
    body: &B,
    dst: &mut BytesMut,
    start: usize,
    max_frame_size: usize,
    trailer: Option<F>,
) -> Result<()>
where
    B: Serialize + ?Sized,
    F: FnOnce(&mut BytesMut, usize) -> Result<()>,
{
    dst.reserve(LENGTH_PREFIX_LEN + 64);
    dst.put_u32(0);
    dst.put_u8(if trailer.is_some() {
        SIGNED_ENVELOPE_MARKER
    } else {
        ENVELOPE_MARKER
    });
    let body_at;
    {
        let mut ser = rmp_serde::Serializer::new((&mut *dst).writer()).with_struct_map();
        header
            .serialize(&mut ser)
            .map_err(|e| ProtocolError::Encode(e.to_string()))?;
        body_at = ser.get_ref().get_ref().len();
        body.serialize(&mut ser)
            .map_err(|e| ProtocolError::Encode(e.to_string()))?;
    }
    if let Some(t) = trailer {
        t(dst, body_at)?;
    }
    let len = dst.len() - start - LENGTH_PREFIX_LEN;
    if len > max_frame_size || len > u32::MAX as usize {
        return Err(ProtocolError::FrameTooLarge {
            size: len,
            max: max_frame_size,
        });
    }
    dst[start..start + LENGTH_PREFIX_LEN].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(())
}

/// [`encode_frame`] for a body whose serialization ends with an empty
/// MessagePack `bin` (an empty `Bytes` field declared last, as
/// [`crate::PullResponse::records`]): the frame is written as if that `bin`
/// held `tail_len` more bytes, which the caller sends right after `dst`
/// from wherever they are (a pull answer's records, from the mapped
/// CommitLog) instead of copying them in. The receiver decodes an ordinary
/// frame. On error `dst` is left as it was.
pub fn encode_frame_with_tail<B: Serialize + ?Sized>(
    header: &Header,
    body: &B,
    tail_len: usize,
    dst: &mut BytesMut,
    max_frame_size: usize,
) -> Result<()> {
    const EMPTY_BIN: [u8; 2] = [0xc4, 0x00];
    let start = dst.len();
    let result = write_frame(header, body, dst, start, max_frame_size).and_then(|()| {
        if !dst[start..].ends_with(&EMPTY_BIN) {
            return Err(ProtocolError::Encode(
                "the body does not end with an empty bin".into(),
            ));
        }
        let too_large = |size| ProtocolError::FrameTooLarge {
            size,
            max: max_frame_size,
        };
        let tail = u32::try_from(tail_len).map_err(|_| too_large(tail_len))?;
        dst.truncate(dst.len() - EMPTY_BIN.len());
        dst.put_u8(0xc6);
        dst.put_u32(tail);
        let len = dst.len() - start - LENGTH_PREFIX_LEN + tail_len;
        if len > max_frame_size || len > u32::MAX as usize {
            return Err(too_large(len));
        }
        dst[start..start + LENGTH_PREFIX_LEN].copy_from_slice(&(len as u32).to_be_bytes());
        Ok(())
    });
    if result.is_err() {
        dst.truncate(start);
    }
    result
}

/// Splits a frame payload (after the length prefix) into header and body.
fn parse_payload(payload: Bytes) -> Result<RawFrame> {
    let signed = match payload.first() {
        Some(&ENVELOPE_MARKER) => false,
        Some(&SIGNED_ENVELOPE_MARKER) => true,
        _ => {
            return Err(ProtocolError::Malformed(
                "frame is not a [header, body] array".into(),
            ))
        }
    };
    let rest = &payload[1..];
    let header_len = skip_value(rest).map_err(ProtocolError::Malformed)?;
    let header: Header = decode_value(&rest[..header_len])?;
    let mut body = payload.slice(1 + header_len..);
    let body_len = skip_value(&body).map_err(ProtocolError::Malformed)?;
    let mut auth = None;
    if signed {
        let trailer: FrameAuth = decode_value(&body[body_len..])?;
        auth = Some(Box::new(trailer));
        body.truncate(body_len);
    } else if body_len != body.len() {
        return Err(ProtocolError::Malformed(format!(
            "{} trailing bytes after the body",
            body.len() - body_len
        )));
    }
    Ok(RawFrame { header, body, auth })
}

/// How far past what is buffered an incomplete frame's read buffer grows
/// at a time: 64 KiB.
///
/// A decoder used to reserve a whole frame as soon as its length prefix was
/// in, so a peer sending a 16 MiB prefix and one byte cost 16 MiB of memory
/// for nothing; now the buffer grows as the bytes arrive (by at most this
/// much beyond them, and by doubling as a `Vec` does, so a large frame
/// still costs few copies), and a prefix alone costs nothing.
pub const READ_RESERVE_STEP: usize = 64 * 1024;

/// Makes room in `src` for the next bytes of a frame of `total` bytes
/// (prefix included) of which `src` holds the start: the rest of the frame,
/// but at most [`READ_RESERVE_STEP`]. Shared by both protocols' decoders.
pub(crate) fn reserve_toward(src: &mut BytesMut, total: usize) {
    src.reserve((total - src.len()).min(READ_RESERVE_STEP));
}

/// What another protocol's first 4 bytes say it is, where a Skylark frame
/// has its length (read as one, they announce a frame of some 1.2 GB or
/// 370 MB): an HTTP request or answer, or a TLS record (a client or server
/// speaking TLS to a plain port).
fn foreign_protocol(prefix: &[u8; LENGTH_PREFIX_LEN]) -> Option<&'static str> {
    match prefix {
        b"GET " | b"POST" | b"PUT " | b"HEAD" | b"HTTP" => Some("HTTP"),
        [0x16, 0x03, ..] => Some("a TLS handshake"),
        [0x15, 0x03, ..] => Some("a TLS alert"),
        _ => None,
    }
}

/// Length-prefixed MessagePack frames for `tokio_util::codec`
/// (`FramedRead`/`FramedWrite`/`Framed`).
///
/// The read buffer of an incomplete frame grows as its bytes arrive, not to
/// the size its prefix announces ([`READ_RESERVE_STEP`]).
///
/// Decoding errors: [`ProtocolError::FrameTooLarge`] (prefix over the max;
/// nothing consumed, close the connection) and [`ProtocolError::Malformed`]
/// (the bad frame has been consumed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameCodec {
    /// Largest accepted frame payload (bytes after the length prefix), for
    /// both directions.
    pub max_frame_size: usize,
}

impl FrameCodec {
    /// A codec with the given maximum frame size.
    pub fn new(max_frame_size: usize) -> Self {
        FrameCodec { max_frame_size }
    }
}

impl Default for FrameCodec {
    fn default() -> Self {
        FrameCodec::new(DEFAULT_MAX_FRAME_SIZE)
    }
}

impl Decoder for FrameCodec {
    type Item = RawFrame;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<RawFrame>> {
        let Some(prefix) = src.get(..LENGTH_PREFIX_LEN) else {
            return Ok(None);
        };
        let mut len_bytes = [0u8; LENGTH_PREFIX_LEN];
        len_bytes.copy_from_slice(prefix);
        if let Some(what) = foreign_protocol(&len_bytes) {
            let _ = src.split_to(LENGTH_PREFIX_LEN);
            return Err(ProtocolError::Malformed(format!(
                "not a Skylark frame (looks like {what}: is this the right port, is tls_mode on?)"
            )));
        }
        let len = u32::from_be_bytes(len_bytes) as usize;
        if len > self.max_frame_size {
            return Err(ProtocolError::FrameTooLarge {
                size: len,
                max: self.max_frame_size,
            });
        }
        if len < MIN_FRAME_LEN {
            // Consume the bogus prefix so a caller that keeps reading
            // does not see it again.
            let _ = src.split_to(LENGTH_PREFIX_LEN);
            return Err(ProtocolError::Malformed(format!(
                "frame length {len} is below the minimum {MIN_FRAME_LEN}"
            )));
        }
        // Reject garbage as soon as its first payload byte is in, before
        // reserving room for (or waiting on) a length that random bytes
        // made up: every frame starts with the `[header, body]` marker.
        let total = LENGTH_PREFIX_LEN + len;
        if let Some(&marker) = src.get(LENGTH_PREFIX_LEN) {
            if marker != ENVELOPE_MARKER && marker != SIGNED_ENVELOPE_MARKER {
                let _ = src.split_to(total.min(src.len()));
                return Err(ProtocolError::Malformed(format!(
                    "frame does not start with the envelope marker 0x{ENVELOPE_MARKER:02x} (got 0x{marker:02x})"
                )));
            }
        }
        if src.len() < total {
            reserve_toward(src, total);
            return Ok(None);
        }
        let frame = src.split_to(total).freeze();
        parse_payload(frame.slice(LENGTH_PREFIX_LEN..)).map(Some)
    }
}

impl<B: Serialize> Encoder<OutFrame<B>> for FrameCodec {
    type Error = ProtocolError;

    fn encode(&mut self, item: OutFrame<B>, dst: &mut BytesMut) -> Result<()> {
        encode_frame(&item.header, &item.body, dst, self.max_frame_size)
    }
}

/// Re-encodes a decoded frame as is (for proxies and tests).
impl Encoder<RawFrame> for FrameCodec {
    type Error = ProtocolError;

    fn encode(&mut self, item: RawFrame, dst: &mut BytesMut) -> Result<()> {
        let start = dst.len();
        dst.put_u32(0);
        dst.put_u8(if item.auth.is_some() {
            SIGNED_ENVELOPE_MARKER
        } else {
            ENVELOPE_MARKER
        });
        let header_result = rmp_serde::encode::write(&mut (&mut *dst).writer(), &item.header);
        if let Err(e) = header_result {
            dst.truncate(start);
            return Err(ProtocolError::Encode(e.to_string()));
        }
        dst.extend_from_slice(&item.body);
        if let Some(auth) = &item.auth {
            if let Err(e) = rmp_serde::encode::write(&mut (&mut *dst).writer(), auth) {
                dst.truncate(start);
                return Err(ProtocolError::Encode(e.to_string()));
            }
        }
        let len = dst.len() - start - LENGTH_PREFIX_LEN;
        if len > self.max_frame_size || len > u32::MAX as usize {
            dst.truncate(start);
            return Err(ProtocolError::FrameTooLarge {
                size: len,
                max: self.max_frame_size,
            });
        }
        dst[start..start + LENGTH_PREFIX_LEN].copy_from_slice(&(len as u32).to_be_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_with_its_tail_sent_apart_decodes_as_the_whole() {
        let records = Bytes::from(vec![7u8; 300]);
        let full = crate::PullResponse {
            status: crate::PullStatus::Found,
            next_offset: 9,
            count: 2,
            records: records.clone(),
            damaged: vec![crate::DamagedRecord {
                queue_offset: 3,
                ..Default::default()
            }],
            ..Default::default()
        };
        let header = Header::response(5, Command::PullMessage as u16);
        let mut head = BytesMut::new();
        let empty = crate::PullResponse {
            records: Bytes::new(),
            ..full.clone()
        };
        let body: std::result::Result<_, crate::WireError> = Ok(&empty);
        encode_frame_with_tail(&header, &body, records.len(), &mut head, 1 << 20).unwrap();
        head.extend_from_slice(&records);
        let frame = FrameCodec::default().decode(&mut head).unwrap().unwrap();
        assert!(head.is_empty());
        let got: crate::PullResponse = frame.decode_response().unwrap();
        assert_eq!(got, full);

        // The tail counts against the frame limit, and a body that does not
        // end with an empty bin is refused, leaving the buffer as it was.
        let mut buf = BytesMut::from(&b"xy"[..]);
        assert!(encode_frame_with_tail(&header, &body, 2 << 20, &mut buf, 1 << 20).is_err());
        let no_tail: std::result::Result<u32, crate::WireError> = Ok(1);
        assert!(encode_frame_with_tail(&header, &no_tail, 1, &mut buf, 1 << 20).is_err());
        assert_eq!(&buf[..], b"xy");
    }

    #[test]
    fn peek_header_reads_a_header_from_a_payload_prefix() {
        let h = Header::request(77, Command::SendMessage);
        let mut buf = BytesMut::new();
        FrameCodec::new(1 << 20)
            .encode(OutFrame::new(h, &crate::Ack {}), &mut buf)
            .unwrap();
        assert_eq!(peek_header(&buf[LENGTH_PREFIX_LEN..]), Some(h));
        assert_eq!(
            peek_header(&buf[LENGTH_PREFIX_LEN..LENGTH_PREFIX_LEN + 2]),
            None
        );
        assert_eq!(peek_header(&[0x00, 0x93]), None);
        assert_eq!(peek_header(&[]), None);
    }

    /// A 16 MiB prefix and one byte used to reserve 16 MiB at once.
    #[test]
    fn a_large_length_prefix_alone_does_not_reserve_the_frame() {
        let mut codec = FrameCodec::new(DEFAULT_MAX_FRAME_SIZE);
        let len = DEFAULT_MAX_FRAME_SIZE as u32;
        let mut buf = BytesMut::new();
        buf.put_u32(len);
        buf.put_u8(ENVELOPE_MARKER);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert!(
            buf.capacity() <= 2 * READ_RESERVE_STEP,
            "reserved {} bytes for 5",
            buf.capacity()
        );
        // The frame still decodes once it is all in, however it arrives.
        let mut whole = BytesMut::new();
        let body = serde_bytes::ByteBuf::from(vec![7u8; 300_000]);
        codec
            .encode(
                OutFrame::new(Header::request(3, Command::SendMessage), &body),
                &mut whole,
            )
            .unwrap();
        let mut buf = BytesMut::new();
        let mut got = None;
        for chunk in whole.chunks(10_000) {
            assert!(got.is_none());
            buf.extend_from_slice(chunk);
            got = codec.decode(&mut buf).unwrap();
            assert!(buf.capacity() <= 2 * buf.len() + 2 * READ_RESERVE_STEP);
        }
        let f = got.expect("the whole frame decodes");
        assert_eq!(f.decode_body::<serde_bytes::ByteBuf>().unwrap(), body);
    }

    #[test]
    fn header_layout_is_positional() {
        let h = Header::request(7, Command::SendMessage);
        let bytes = rmp_serde::to_vec_named(&h).unwrap();
        assert_eq!(bytes, vec![0x93, 7, 0, 10]);
    }

    #[test]
    fn http_and_tls_on_the_port_are_named_not_taken_for_huge_frames() {
        for (bytes, want) in [
            (&b"GET / HTTP/1.1\r\n"[..], "looks like HTTP"),
            (b"POST /x HTTP/1.1\r\n", "looks like HTTP"),
            (b"HTTP/1.1 400 Bad Request\r\n", "looks like HTTP"),
            (
                &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01],
                "looks like a TLS handshake",
            ),
        ] {
            let mut buf = BytesMut::from(bytes);
            let e = FrameCodec::default().decode(&mut buf).unwrap_err();
            let text = e.to_string();
            assert!(matches!(e, ProtocolError::Malformed(_)), "{text}");
            assert!(
                text.contains("not a Skylark frame") && text.contains(want),
                "{text}"
            );
        }
    }

    #[test]
    fn an_unknown_frame_kind_is_named_once() {
        // [request_id 1, kind 9, command 1]
        let e = decode_value::<Header>(&[0x93, 0x01, 0x09, 0x01]).unwrap_err();
        assert_eq!(e.to_string(), "malformed frame: unknown frame kind 9");
    }

    #[test]
    fn smallest_frame_decodes() {
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::new();
        codec
            .encode(
                OutFrame::new(Header::request(0, Command::Handshake), ()),
                &mut buf,
            )
            .unwrap();
        assert_eq!(buf.len(), LENGTH_PREFIX_LEN + MIN_FRAME_LEN);
        let f = codec.decode(&mut buf).unwrap().unwrap();
        assert_eq!(f.body.as_ref(), &[0xc0]);
        assert!(buf.is_empty());
    }

    #[test]
    fn oversized_encode_leaves_buffer_untouched() {
        let mut codec = FrameCodec::new(100);
        let mut buf = BytesMut::from(&b"abc"[..]);
        let big = serde_bytes::ByteBuf::from(vec![0u8; 200]);
        let err = codec
            .encode(
                OutFrame::new(Header::request(1, Command::SendMessage), &big),
                &mut buf,
            )
            .unwrap_err();
        assert!(matches!(err, ProtocolError::FrameTooLarge { .. }));
        assert_eq!(&buf[..], b"abc");
    }
}
