//! Framing: `total length: i32 | header mark: i32 | header | body`, and a
//! tokio [`RemotingCodec`] over it.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::{RemotingCommand, RemotingError, Result, SerializeType};

/// Largest `total length` accepted: 16 MiB, as RocketMQ's `NettyDecoder`.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 16 * 1024 * 1024;

/// Header length field: the low 24 bits of the header mark.
const MAX_HEADER_LEN: usize = 0x00FF_FFFF;

/// Encodes `cmd` as one whole frame, length prefix included.
pub fn encode_frame(cmd: &RemotingCommand, out: &mut BytesMut) -> Result<()> {
    let header = cmd.encode_header()?;
    if header.len() > MAX_HEADER_LEN {
        return Err(RemotingError::OutOfRange {
            field: "header length",
            value: header.len() as i64,
        });
    }
    let total = 4 + header.len() + cmd.body.len();
    let total_i32 = i32::try_from(total).map_err(|_| RemotingError::OutOfRange {
        field: "frame length",
        value: total as i64,
    })?;
    out.reserve(4 + total);
    out.put_i32(total_i32);
    out.put_u32((u32::from(cmd.serialize_type.code()) << 24) | header.len() as u32);
    out.put_slice(&header);
    out.put_slice(&cmd.body);
    Ok(())
}

/// Decodes one frame's content (what follows the length prefix).
pub fn decode_frame(mut frame: Bytes) -> Result<RemotingCommand> {
    let len = frame.len();
    if len < 4 {
        return Err(RemotingError::FrameTooShort(len as i64));
    }
    let mark = frame.get_u32();
    let ty = SerializeType::from_code((mark >> 24) as u8)?;
    let header_len = (mark & MAX_HEADER_LEN as u32) as usize;
    if header_len > frame.len() {
        return Err(RemotingError::HeaderOverrun {
            header: header_len,
            frame: len,
        });
    }
    let header = frame.split_to(header_len);
    let mut cmd = RemotingCommand::decode_header(ty, &header)?;
    cmd.body = frame;
    Ok(cmd)
}

/// Frames `RemotingCommand`s on a byte stream; refuses frames above
/// `max_frame_size` before buffering them, and grows the buffer of an
/// incomplete frame as its bytes arrive
/// ([`crate::frame::READ_RESERVE_STEP`]), not to its announced length.
#[derive(Debug, Clone)]
pub struct RemotingCodec {
    max_frame_size: usize,
}

impl Default for RemotingCodec {
    fn default() -> Self {
        RemotingCodec::new(DEFAULT_MAX_FRAME_SIZE)
    }
}

impl RemotingCodec {
    /// A codec refusing frames whose total length is above `max_frame_size`.
    pub fn new(max_frame_size: usize) -> Self {
        RemotingCodec { max_frame_size }
    }
}

impl Decoder for RemotingCodec {
    type Item = RemotingCommand;
    type Error = RemotingError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<RemotingCommand>> {
        if src.len() < 4 {
            return Ok(None);
        }
        let total = i32::from_be_bytes([src[0], src[1], src[2], src[3]]);
        if total < 4 {
            return Err(RemotingError::FrameTooShort(total.into()));
        }
        let total = total as usize;
        if total > self.max_frame_size {
            return Err(RemotingError::FrameTooLarge {
                len: total,
                max: self.max_frame_size,
            });
        }
        if src.len() < 4 + total {
            // Room as the bytes arrive, not for the announced length.
            crate::frame::reserve_toward(src, 4 + total);
            return Ok(None);
        }
        src.advance(4);
        decode_frame(src.split_to(total).freeze()).map(Some)
    }
}

impl Encoder<RemotingCommand> for RemotingCodec {
    type Error = RemotingError;

    fn encode(&mut self, cmd: RemotingCommand, dst: &mut BytesMut) -> Result<()> {
        encode_frame(&cmd, dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 16 MiB `total length` and one byte used to reserve 16 MiB at once.
    #[test]
    fn a_large_length_prefix_alone_does_not_reserve_the_frame() {
        let mut codec = RemotingCodec::default();
        let mut buf = BytesMut::new();
        buf.put_i32(DEFAULT_MAX_FRAME_SIZE as i32);
        buf.put_u8(0);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        let step = crate::frame::READ_RESERVE_STEP;
        assert!(
            buf.capacity() <= 2 * step,
            "reserved {} bytes for 5",
            buf.capacity()
        );
    }
}
