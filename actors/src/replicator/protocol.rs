//! The HA stream between a master and a slave: a plain binary protocol on
//! the master's HA port (`ha_port`), not MessagePack frames, because it
//! carries raw CommitLog bytes and nothing else.
//!
//! * slave → master: 8 bytes, a big-endian `u64`: the slave's CommitLog end.
//!   The first one tells the master where to start; every later one is an
//!   ack (sent after each chunk is applied and after each heartbeat).
//!   Before the first report a slave may send, in this order, an ACL hello
//!   ([`write_hello`]), its name ([`write_name`]: broker name, broker id,
//!   advertised address) and, in controller mode, its epoch
//!   ([`write_ident`]); each starts with an 8-byte magic no CommitLog offset
//!   can equal, so a master tells them from a plain report and a slave that
//!   predates one simply does not send it.
//! * master → slave: a 20-byte header — chunk start offset (`u64` BE), the
//!   master's CommitLog end (`u64` BE), data length (`u32` BE) — then the
//!   data: whole records of one segment (see [`crate::message_store::replica`]). A
//!   length of 0 is a heartbeat, sent when the master has had nothing new
//!   for [`HEARTBEAT`].
//! * A master refuses a connection in the same place with a header whose
//!   offset is [`REFUSED_MAGIC`] and whose data is the reason ([`refusal`]):
//!   a plain slave on a TLS-only HA port is told "the master's HA port
//!   requires TLS ...", not sent bytes it would read as a chunk. A slave
//!   also names an answer of another protocol (a TLS record, a Skylark
//!   error frame) instead of reading it as a chunk header
//!   ([`foreign_answer`]).

use std::io;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Size of a chunk header.
pub const HEADER_LEN: usize = 20;
/// Largest chunk a master sends (and a slave accepts: twice that).
pub const MAX_CHUNK: usize = 1024 * 1024;
/// Idle interval after which a master sends a heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// A slave that hears nothing for this long reconnects.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A chunk header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkHeader {
    /// Physical offset of the first byte of the data.
    pub offset: u64,
    /// The master's CommitLog end when the chunk was sent.
    pub master_max: u64,
    /// Data length (0 = heartbeat).
    pub len: u32,
}

impl ChunkHeader {
    /// The header's 20 bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&self.offset.to_be_bytes());
        b[8..16].copy_from_slice(&self.master_max.to_be_bytes());
        b[16..20].copy_from_slice(&self.len.to_be_bytes());
        b
    }

    /// Parses 20 bytes.
    pub fn decode(b: &[u8; HEADER_LEN]) -> ChunkHeader {
        let mut o = [0u8; 8];
        o.copy_from_slice(&b[0..8]);
        let mut m = [0u8; 8];
        m.copy_from_slice(&b[8..16]);
        let mut l = [0u8; 4];
        l.copy_from_slice(&b[16..20]);
        ChunkHeader {
            offset: u64::from_be_bytes(o),
            master_max: u64::from_be_bytes(m),
            len: u32::from_be_bytes(l),
        }
    }
}

/// Master: writes one chunk (or a heartbeat when `data` is empty).
pub async fn write_chunk<W: AsyncWrite + Unpin>(
    w: &mut W,
    offset: u64,
    master_max: u64,
    data: &[u8],
) -> io::Result<()> {
    let len = u32::try_from(data.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "chunk too large"))?;
    let h = ChunkHeader {
        offset,
        master_max,
        len,
    };
    w.write_all(&h.encode()).await?;
    w.write_all(data).await?;
    w.flush().await
}

/// Slave: reads one chunk; refuses a length above `2 * MAX_CHUNK`. A
/// master's refusal ([`refusal`]) is an error with its reason; so is
/// an answer in another protocol (TLS, a Skylark error frame), named as
/// such ([`foreign_answer`]).
pub async fn read_chunk<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<(ChunkHeader, Bytes)> {
    let mut hb = [0u8; HEADER_LEN];
    read_header(r, &mut hb, 0).await?;
    let h = ChunkHeader::decode(&hb);
    if h.offset == REFUSED_MAGIC || h.len as usize > 2 * MAX_CHUNK {
        if let Some(e) = not_a_chunk(&hb, r).await {
            return Err(e);
        }
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("chunk of {} bytes is above the limit", h.len),
        ));
    }
    let mut data = vec![0u8; h.len as usize];
    r.read_exact(&mut data).await?;
    Ok((h, Bytes::from(data)))
}

/// First 8 bytes of a master's refusal, where a chunk's offset would be
/// (no CommitLog offset can equal it): the header's length is that of the
/// reason (UTF-8) that follows. A slave reads it in place of a chunk or,
/// in controller mode, of the epochs.
pub const REFUSED_MAGIC: u64 = u64::from_be_bytes(*b"SKYLKNO1");

/// Longest refusal reason written or read.
const MAX_REASON: usize = 1024;

/// Master: a refusal of the connection with `reason` ([`REFUSED_MAGIC`]),
/// as bytes to write before closing.
pub fn refusal(reason: &str) -> Bytes {
    let reason = cut(reason, MAX_REASON);
    let h = ChunkHeader {
        offset: REFUSED_MAGIC,
        master_max: 0,
        len: reason.len() as u32,
    };
    let mut b = Vec::with_capacity(HEADER_LEN + reason.len());
    b.extend_from_slice(&h.encode());
    b.extend_from_slice(reason.as_bytes());
    Bytes::from(b)
}

/// The reason a plain slave is refused on a TLS-only HA port.
pub const TLS_REQUIRED: &str = "the master's HA port requires TLS (tls_mode = enforcing): \
    set tls_ca_file on this slave (the CA the master's certificate chains to) \
    so that it replicates over TLS";

/// Slave: the error of a refusal whose header (already read) announced
/// `len` bytes of reason.
async fn read_refusal<R: AsyncRead + Unpin>(r: &mut R, len: u32) -> io::Error {
    let mut reason = vec![0u8; (len as usize).min(MAX_REASON)];
    if let Err(e) = r.read_exact(&mut reason).await {
        return e;
    }
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!(
            "the master refused this slave: {}",
            String::from_utf8_lossy(&reason)
        ),
    )
}

/// Fills `hb` from its byte `got` on; a close before its end is
/// `UnexpectedEof`, unless the bytes that came are an answer in another
/// protocol (a TLS alert is 7 bytes), which is named ([`foreign_answer`]).
async fn read_header<R: AsyncRead + Unpin>(
    r: &mut R,
    hb: &mut [u8; HEADER_LEN],
    mut got: usize,
) -> io::Result<()> {
    while got < HEADER_LEN {
        let n = r.read(&mut hb[got..]).await?;
        if n == 0 {
            if let Some(e) = foreign_answer(&hb[..got], &mut tokio::io::empty()).await {
                return Err(e);
            }
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        got += n;
    }
    Ok(())
}

/// The error of a header that is no chunk's: a refusal ([`REFUSED_MAGIC`],
/// its reason read from `r`) or another protocol's answer.
async fn not_a_chunk<R: AsyncRead + Unpin>(hb: &[u8; HEADER_LEN], r: &mut R) -> Option<io::Error> {
    let h = ChunkHeader::decode(hb);
    if h.offset == REFUSED_MAGIC {
        return Some(read_refusal(r, h.len).await);
    }
    foreign_answer(hb, r).await
}

/// Whether `head` (the first bytes a slave read) starts an answer in
/// another protocol than the HA stream: a TLS record (the master's port
/// speaks TLS and this slave does not) or a Skylark error frame (a master
/// that answers a plain client on a TLS-only port with one, as versions
/// before [`REFUSED_MAGIC`] did; the rest of the frame is read from `r`).
/// The error says what to do.
pub async fn foreign_answer<R: AsyncRead + Unpin>(head: &[u8], r: &mut R) -> Option<io::Error> {
    const TLS_ALERT: u8 = 0x15;
    const TLS_HANDSHAKE: u8 = 0x16;
    let tls_required = || io::Error::new(io::ErrorKind::PermissionDenied, TLS_REQUIRED);
    if let [kind, 0x03, ..] = head {
        if *kind == TLS_ALERT || *kind == TLS_HANDSHAKE {
            return Some(tls_required());
        }
    }
    // A Skylark frame: a u32 length (an error frame is short) and the
    // envelope's fixarray marker.
    let [a, b, c, d, 0x92, ..] = *head else {
        return None;
    };
    let len = u32::from_be_bytes([a, b, c, d]) as usize;
    if !(skylark_codec::MIN_FRAME_LEN..=MAX_REASON * 4).contains(&len) {
        return None;
    }
    let mut frame = head.to_vec();
    let total = skylark_codec::LENGTH_PREFIX_LEN + len;
    if frame.len() < total {
        let mut rest = vec![0u8; total - frame.len()];
        r.read_exact(&mut rest).await.ok()?;
        frame.extend_from_slice(&rest);
    }
    let mut buf = bytes::BytesMut::from(&frame[..]);
    let raw =
        tokio_util::codec::Decoder::decode(&mut skylark_codec::FrameCodec::default(), &mut buf)
            .ok()??;
    let Err(skylark_codec::ProtocolError::Remote(e)) = raw.decode_response::<()>() else {
        return None;
    };
    if skylark_codec::tls::is_plain_refusal(&e) {
        return Some(tls_required());
    }
    Some(io::Error::other(format!(
        "the master's HA port answered with a Skylark error frame, not the HA stream: {}",
        e.message
    )))
}

/// Slave: reports (acks) its CommitLog end.
pub async fn write_offset<W: AsyncWrite + Unpin>(w: &mut W, offset: u64) -> io::Result<()> {
    w.write_all(&offset.to_be_bytes()).await?;
    w.flush().await
}

/// First 8 bytes of a slave's HA hello (ACL): never a real CommitLog
/// offset, so a master tells a hello from a plain first report.
pub const HELLO_MAGIC: u64 = u64::from_be_bytes(*b"SKYLKHA1");

/// Longest access key accepted in an HA hello.
const MAX_HELLO_KEY: usize = 1024;

/// Slave: proves `creds` (the cluster's broker credential) before its
/// first report: magic, then [`skylark_codec::auth::ha_hello`].
pub async fn write_hello<W: AsyncWrite + Unpin>(
    w: &mut W,
    creds: &skylark_codec::Credentials,
    timestamp_ms: u64,
) -> io::Result<()> {
    w.write_all(&HELLO_MAGIC.to_be_bytes()).await?;
    w.write_all(&skylark_codec::auth::ha_hello(creds, timestamp_ms))
        .await
}

/// A slave's HA hello: its access key, and the timestamp and signature.
pub struct Hello {
    pub access_key: String,
    pub proof: Vec<u8>,
}

/// What a master reads before a slave's epoch or first report.
pub struct First {
    /// The ACL hello, if the slave sent one.
    pub hello: Option<Hello>,
    /// The slave's name, unless it predates [`NAME_MAGIC`].
    pub name: Option<SlaveName>,
    /// The next 8 bytes: [`ID_MAGIC`] or the start offset.
    pub next: u64,
}

/// Master: reads the slave's hello and name (each if sent) and the next
/// 8 bytes.
pub async fn read_first<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<First> {
    let mut next = read_offset(r).await?;
    let mut hello = None;
    if next == HELLO_MAGIC {
        hello = Some(read_hello(r).await?);
        next = read_offset(r).await?;
    }
    let mut name = None;
    if next == NAME_MAGIC {
        name = Some(read_name(r).await?);
        next = read_offset(r).await?;
    }
    Ok(First { hello, name, next })
}

/// Reads the hello after [`HELLO_MAGIC`].
async fn read_hello<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Hello> {
    let access_key = read_str(r, MAX_HELLO_KEY, "HA hello access key").await?;
    let mut proof = vec![0u8; 8 + skylark_codec::auth::SIGNATURE_LEN];
    r.read_exact(&mut proof).await?;
    Ok(Hello { access_key, proof })
}

/// A slave names itself after the hello (if any): `NAME_MAGIC`, broker id
/// u64, then broker name and advertised address, each a u16 length and
/// UTF-8 bytes. The master keys the slave's session, metrics and status by
/// it, so a reconnecting slave is the same slave.
pub const NAME_MAGIC: u64 = u64::from_be_bytes(*b"SKYLKNM1");

/// Longest broker name or address accepted in a slave's name.
const MAX_NAME_FIELD: usize = 1024;

/// Who a slave is: what it registers with the NameServers under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaveName {
    pub broker_name: String,
    pub broker_id: u64,
    /// The slave's advertised client address (`host:port`).
    pub addr: String,
}

/// Slave: sends its name (longer fields are cut at 1024 bytes).
pub async fn write_name<W: AsyncWrite + Unpin>(w: &mut W, name: &SlaveName) -> io::Result<()> {
    let mut b = Vec::with_capacity(20 + name.broker_name.len() + name.addr.len());
    b.extend_from_slice(&NAME_MAGIC.to_be_bytes());
    b.extend_from_slice(&name.broker_id.to_be_bytes());
    for field in [&name.broker_name, &name.addr] {
        let f = cut(field, MAX_NAME_FIELD);
        b.extend_from_slice(&(f.len() as u16).to_be_bytes());
        b.extend_from_slice(f.as_bytes());
    }
    w.write_all(&b).await?;
    w.flush().await
}

/// The longest prefix of `s` of at most `max` bytes on a char boundary.
fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Master: reads the name after [`NAME_MAGIC`].
pub async fn read_name<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<SlaveName> {
    let broker_id = read_offset(r).await?;
    let broker_name = read_str(r, MAX_NAME_FIELD, "slave's broker name").await?;
    let addr = read_str(r, MAX_NAME_FIELD, "slave's address").await?;
    Ok(SlaveName {
        broker_name,
        broker_id,
        addr,
    })
}

/// A u16 length and that many bytes of UTF-8, at most `max` bytes.
async fn read_str<R: AsyncRead + Unpin>(r: &mut R, max: usize, what: &str) -> io::Result<String> {
    let mut n = [0u8; 2];
    r.read_exact(&mut n).await?;
    let n = u16::from_be_bytes(n) as usize;
    if n > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{what} is {n} bytes, above the limit of {max}"),
        ));
    }
    let mut b = vec![0u8; n];
    r.read_exact(&mut b).await?;
    String::from_utf8(b)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("{what} is not UTF-8")))
}

/// Master: reads the slave's next report.
pub async fn read_offset<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b).await?;
    Ok(u64::from_be_bytes(b))
}

/// Controller mode: after the hello (if any) and its name, a slave gives
/// its broker id and the master epoch it follows: `ID_MAGIC`, broker id
/// u64, epoch u64. The
/// master answers [`write_epochs`] (or a refusal), then the slave sends its
/// start offset as usual.
pub const ID_MAGIC: u64 = u64::from_be_bytes(*b"SKYLKID1");

/// Most epoch entries a master's answer may carry.
const MAX_EPOCHS: u32 = 1 << 16;

/// The slave's identity (controller mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ident {
    pub broker_id: u64,
    pub epoch: u64,
}

/// Slave: sends its identity (controller mode).
pub async fn write_ident<W: AsyncWrite + Unpin>(w: &mut W, ident: Ident) -> io::Result<()> {
    w.write_all(&ID_MAGIC.to_be_bytes()).await?;
    w.write_all(&ident.broker_id.to_be_bytes()).await?;
    w.write_all(&ident.epoch.to_be_bytes()).await?;
    w.flush().await
}

/// Master: reads the identity after [`ID_MAGIC`].
pub async fn read_ident<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Ident> {
    let broker_id = read_offset(r).await?;
    let epoch = read_offset(r).await?;
    Ok(Ident { broker_id, epoch })
}

/// The master's answer to an identity: its epochs and CommitLog end, or a
/// refusal (it is not the master of that epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EpochAnswer {
    Epochs {
        entries: Vec<crate::message_store::epoch::EpochEntry>,
        end: u64,
    },
    Refused(String),
}

/// Master: `0u8, count u32, (epoch u64, start u64)*, end u64`, or
/// `1u8, len u16, reason`.
pub async fn write_epochs<W: AsyncWrite + Unpin>(w: &mut W, a: &EpochAnswer) -> io::Result<()> {
    let mut b = Vec::new();
    match a {
        EpochAnswer::Epochs { entries, end } => {
            b.push(0u8);
            b.extend_from_slice(&(entries.len() as u32).to_be_bytes());
            for e in entries {
                b.extend_from_slice(&e.epoch.to_be_bytes());
                b.extend_from_slice(&e.start_offset.to_be_bytes());
            }
            b.extend_from_slice(&end.to_be_bytes());
        }
        EpochAnswer::Refused(reason) => {
            let r = &reason.as_bytes()[..reason.len().min(1024)];
            b.push(1u8);
            b.extend_from_slice(&(r.len() as u16).to_be_bytes());
            b.extend_from_slice(r);
        }
    }
    w.write_all(&b).await?;
    w.flush().await
}

/// Slave: reads the master's [`EpochAnswer`].
pub async fn read_epochs<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<EpochAnswer> {
    let mut kind = [0u8; 1];
    r.read_exact(&mut kind).await?;
    if kind[0] > 1 {
        // Not an answer to the identity: a refusal of the connection, or
        // another protocol's answer, read as in place of a chunk.
        let mut hb = [0u8; HEADER_LEN];
        hb[0] = kind[0];
        read_header(r, &mut hb, 1).await?;
        return Err(not_a_chunk(&hb, r).await.unwrap_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad epoch answer (kind {})", kind[0]),
            )
        }));
    }
    if kind[0] == 1 {
        let mut n = [0u8; 2];
        r.read_exact(&mut n).await?;
        let mut reason = vec![0u8; u16::from_be_bytes(n) as usize];
        r.read_exact(&mut reason).await?;
        return Ok(EpochAnswer::Refused(
            String::from_utf8_lossy(&reason).into_owned(),
        ));
    }
    let mut n = [0u8; 4];
    r.read_exact(&mut n).await?;
    let n = u32::from_be_bytes(n);
    if n > MAX_EPOCHS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{n} epochs is above the limit"),
        ));
    }
    let mut entries = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let epoch = read_offset(r).await?;
        let start_offset = read_offset(r).await?;
        entries.push(crate::message_store::epoch::EpochEntry {
            epoch,
            start_offset,
        });
    }
    let end = read_offset(r).await?;
    Ok(EpochAnswer::Epochs { entries, end })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn chunks_and_offsets_round_trip() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        write_chunk(&mut a, 4096, 9000, b"records").await.unwrap();
        write_chunk(&mut a, 4103, 9000, b"").await.unwrap();
        write_offset(&mut a, 77).await.unwrap();
        let (h, d) = read_chunk(&mut b).await.unwrap();
        assert_eq!(
            (h.offset, h.master_max, h.len, &d[..]),
            (4096, 9000, 7, &b"records"[..])
        );
        let (h, d) = read_chunk(&mut b).await.unwrap();
        assert_eq!((h.offset, h.len, d.len()), (4103, 0, 0));
        assert_eq!(read_offset(&mut b).await.unwrap(), 77);
    }

    #[actix_rt::test]
    async fn ident_and_epochs_round_trip() {
        use crate::message_store::epoch::EpochEntry;
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let ident = Ident {
            broker_id: 2,
            epoch: 5,
        };
        write_ident(&mut a, ident).await.unwrap();
        assert_eq!(read_offset(&mut b).await.unwrap(), ID_MAGIC);
        assert_eq!(read_ident(&mut b).await.unwrap(), ident);
        let ok = EpochAnswer::Epochs {
            entries: vec![
                EpochEntry {
                    epoch: 1,
                    start_offset: 0,
                },
                EpochEntry {
                    epoch: 5,
                    start_offset: 999,
                },
            ],
            end: 4242,
        };
        write_epochs(&mut a, &ok).await.unwrap();
        assert_eq!(read_epochs(&mut b).await.unwrap(), ok);
        let no = EpochAnswer::Refused("stale".into());
        write_epochs(&mut a, &no).await.unwrap();
        assert_eq!(read_epochs(&mut b).await.unwrap(), no);
        // A count past the limit is an error, not an allocation.
        a.write_all(&[0u8, 0xff, 0xff, 0xff, 0xff]).await.unwrap();
        assert!(read_epochs(&mut b).await.is_err());
    }

    #[actix_rt::test]
    async fn a_name_round_trips_and_a_slave_without_one_still_reads() {
        let name = SlaveName {
            broker_name: "broker-a".into(),
            broker_id: 2,
            addr: "10.0.0.7:10911".into(),
        };
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        write_name(&mut a, &name).await.unwrap();
        write_offset(&mut a, 4096).await.unwrap();
        let f = read_first(&mut b).await.unwrap();
        assert!(f.hello.is_none());
        assert_eq!((f.name, f.next), (Some(name), 4096));
        // A slave that predates names: its first report as before.
        write_offset(&mut a, 77).await.unwrap();
        let f = read_first(&mut b).await.unwrap();
        assert_eq!((f.name, f.next), (None, 77));
        // A length past the limit is an error, not an allocation.
        a.write_all(&NAME_MAGIC.to_be_bytes()).await.unwrap();
        a.write_all(&[0u8; 8]).await.unwrap();
        a.write_all(&u16::MAX.to_be_bytes()).await.unwrap();
        assert!(read_first(&mut b).await.is_err());
        // A field cut to the limit stays valid UTF-8.
        assert_eq!(cut("aé", 2), "a");
    }

    #[actix_rt::test]
    async fn a_refusal_or_another_protocols_answer_is_named_not_read_as_a_chunk() {
        // The master's refusal, read where a chunk or the epochs would be.
        for epochs in [false, true] {
            let (mut a, mut b) = tokio::io::duplex(1 << 16);
            a.write_all(&refusal(TLS_REQUIRED)).await.unwrap();
            let e = if epochs {
                read_epochs(&mut b).await.unwrap_err()
            } else {
                read_chunk(&mut b).await.unwrap_err()
            };
            assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
            assert!(e.to_string().contains("requires TLS"), "{e}");
            assert!(e.to_string().contains("set tls_ca_file"), "{e}");
        }
        // The Skylark error frame a master sent before (it read as a
        // "chunk of 1668244581 bytes", the bytes of "code").
        let h = skylark_codec::Header {
            request_id: 0,
            kind: skylark_codec::FrameKind::Response,
            command: 0,
        };
        let frame = skylark_codec::wire::error_response(
            &h,
            skylark_codec::WireError::new(
                skylark_codec::ErrorCode::AuthFailed,
                skylark_codec::tls::PLAIN_REFUSAL,
            ),
        );
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        a.write_all(&frame).await.unwrap();
        drop(a);
        let e = read_chunk(&mut b).await.unwrap_err();
        assert!(e.to_string().contains("requires TLS"), "{e}");
        // A TLS alert (7 bytes, then the close).
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        a.write_all(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28])
            .await
            .unwrap();
        drop(a);
        let e = read_chunk(&mut b).await.unwrap_err();
        assert!(e.to_string().contains("requires TLS"), "{e}");
        // A plain close is still a close.
        let (a, mut b) = tokio::io::duplex(1 << 16);
        drop(a);
        let e = read_chunk(&mut b).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[actix_rt::test]
    async fn oversized_and_truncated_chunks_are_errors() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let h = ChunkHeader {
            offset: 0,
            master_max: 0,
            len: u32::MAX,
        };
        a.write_all(&h.encode()).await.unwrap();
        assert!(read_chunk(&mut b).await.is_err());
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        a.write_all(&[0u8; 10]).await.unwrap();
        drop(a);
        assert!(read_chunk(&mut b).await.is_err());
    }
}
