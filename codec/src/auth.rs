//! Request signatures (ACL): who sent a frame, and proof that they hold the
//! secret.
//!
//! A signed frame carries a third element after `[header, body]`: the
//! envelope is a `fixarray` of 3 (`0x93`) and the trailer is
//!
//! ```text
//! auth = [access_key: str, timestamp_ms: u64, signature: bin 32]
//! signature = HMAC-SHA256(secret_key,
//!     "skylark-acl-v1" | command u16 BE | kind u8 | request_id u64 BE
//!     | timestamp_ms u64 BE | len(access_key) u16 BE | access_key | body)
//! ```
//!
//! `body` is the frame's MessagePack body exactly as it travels, so every
//! field of the request is covered without re-encoding anything: the
//! server checks the signature over the bytes it already holds, and the
//! client signs the bytes it has just written (see [`encode_signed_frame`]).
//! The trailer comes last so the signer can write the body straight into its
//! buffer and sign it in place.
//!
//! Verification compares in constant time ([`hmac::Mac::verify_slice`]).
//! A server with ACL off ignores the trailer; an unsigned frame is the
//! plain 2-element envelope, byte for byte what it was before.
//!
//! The HA stream (raw CommitLog bytes, not frames) proves the slave's
//! credential once per connection with [`ha_hello`] / [`verify_ha_hello`].

use std::fmt;

use bytes::{BufMut, BytesMut};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::error::{ProtocolError, Result};
use crate::frame::{write_frame_parts, Header};

type HmacSha256 = Hmac<Sha256>;

/// Length of a signature (HMAC-SHA256).
pub const SIGNATURE_LEN: usize = 32;

/// Domain tag mixed into every request signature.
const REQUEST_TAG: &[u8] = b"skylark-acl-v1";
/// Domain tag of the HA hello (so a request signature never passes as one).
const HA_TAG: &[u8] = b"skylark-ha-v1";

/// An access key and its secret. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Public name of the account (sent with every request).
    pub access_key: String,
    /// Shared secret (never sent, never logged).
    pub secret_key: String,
}

impl Credentials {
    /// Credentials from a key pair.
    pub fn new(access_key: impl Into<String>, secret_key: impl Into<String>) -> Self {
        Credentials {
            access_key: access_key.into(),
            secret_key: secret_key.into(),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({}, secret: ***)", self.access_key)
    }
}

/// The signature trailer of a signed frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameAuth {
    /// Who signed.
    pub access_key: String,
    /// When, in ms since the Unix epoch (checked against a window).
    pub timestamp_ms: u64,
    /// HMAC-SHA256 over the frame (see the module doc).
    pub signature: [u8; SIGNATURE_LEN],
}

impl Serialize for FrameAuth {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        (
            &self.access_key,
            self.timestamp_ms,
            serde_bytes::Bytes::new(&self.signature),
        )
            .serialize(s)
    }
}

impl<'de> Deserialize<'de> for FrameAuth {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (access_key, timestamp_ms, sig) =
            <(String, u64, serde_bytes::ByteBuf)>::deserialize(d)?;
        let signature: [u8; SIGNATURE_LEN] = sig.as_slice().try_into().map_err(|_| {
            serde::de::Error::custom(format!(
                "signature must be {SIGNATURE_LEN} bytes, got {}",
                sig.len()
            ))
        })?;
        Ok(FrameAuth {
            access_key,
            timestamp_ms,
            signature,
        })
    }
}

fn request_mac(
    secret: &str,
    access_key: &str,
    header: &Header,
    timestamp_ms: u64,
    body: &[u8],
) -> HmacSha256 {
    // HMAC takes keys of any length: new_from_slice cannot fail.
    let mut mac = match HmacSha256::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => unreachable_key(),
    };
    mac.update(REQUEST_TAG);
    mac.update(&header.command.to_be_bytes());
    mac.update(&[header.kind as u8]);
    mac.update(&header.request_id.to_be_bytes());
    mac.update(&timestamp_ms.to_be_bytes());
    let key = access_key.as_bytes();
    mac.update(&(key.len().min(u16::MAX as usize) as u16).to_be_bytes());
    mac.update(key);
    mac.update(body);
    mac
}

#[cold]
fn unreachable_key() -> ! {
    // `Hmac::new_from_slice` accepts every key length; kept out of line
    // so the signing path has no panic branch of its own.
    panic!("HMAC-SHA256 refused a key")
}

/// The signature of a request frame (see the module doc).
pub fn sign_request(
    secret: &str,
    access_key: &str,
    header: &Header,
    timestamp_ms: u64,
    body: &[u8],
) -> [u8; SIGNATURE_LEN] {
    request_mac(secret, access_key, header, timestamp_ms, body)
        .finalize()
        .into_bytes()
        .into()
}

/// Whether `auth` is a valid signature of this frame under `secret`,
/// compared in constant time.
pub fn verify_request(secret: &str, auth: &FrameAuth, header: &Header, body: &[u8]) -> bool {
    request_mac(secret, &auth.access_key, header, auth.timestamp_ms, body)
        .verify_slice(&auth.signature)
        .is_ok()
}

/// Appends one signed frame (`[header, body, auth]`) to `dst`: the body is
/// serialized into the buffer, signed where it lies, and the trailer
/// appended. On error `dst` is left as it was.
pub fn encode_signed_frame<B: Serialize + ?Sized>(
    header: &Header,
    body: &B,
    creds: &Credentials,
    timestamp_ms: u64,
    dst: &mut BytesMut,
    max_frame_size: usize,
) -> Result<()> {
    let start = dst.len();
    let sign = |dst: &mut BytesMut, body_at: usize| {
        let signature = sign_request(
            &creds.secret_key,
            &creds.access_key,
            header,
            timestamp_ms,
            &dst[body_at..],
        );
        let auth = FrameAuth {
            access_key: creds.access_key.clone(),
            timestamp_ms,
            signature,
        };
        rmp_serde::encode::write(&mut (&mut *dst).writer(), &auth)
            .map_err(|e| ProtocolError::Encode(e.to_string()))
    };
    let r = write_frame_parts(header, body, dst, start, max_frame_size, Some(sign));
    if r.is_err() {
        dst.truncate(start);
    }
    r
}

/// Length of the HA hello a slave sends first when ACL is on:
/// `len(access_key) u16 BE | access_key | timestamp_ms u64 BE | signature`.
pub fn ha_hello_len(access_key: &str) -> usize {
    2 + access_key.len() + 8 + SIGNATURE_LEN
}

fn ha_mac(secret: &str, access_key: &str, timestamp_ms: u64) -> HmacSha256 {
    let mut mac = match HmacSha256::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => unreachable_key(),
    };
    mac.update(HA_TAG);
    mac.update(&timestamp_ms.to_be_bytes());
    mac.update(access_key.as_bytes());
    mac
}

/// The HA hello bytes proving `creds` at `timestamp_ms`.
pub fn ha_hello(creds: &Credentials, timestamp_ms: u64) -> Vec<u8> {
    let key = creds.access_key.as_bytes();
    let mut out = Vec::with_capacity(ha_hello_len(&creds.access_key));
    out.extend_from_slice(&(key.len().min(u16::MAX as usize) as u16).to_be_bytes());
    out.extend_from_slice(&key[..key.len().min(u16::MAX as usize)]);
    out.extend_from_slice(&timestamp_ms.to_be_bytes());
    let sig: [u8; SIGNATURE_LEN] = ha_mac(&creds.secret_key, &creds.access_key, timestamp_ms)
        .finalize()
        .into_bytes()
        .into();
    out.extend_from_slice(&sig);
    out
}

/// Whether an HA hello's signature (`rest` = timestamp and signature, after
/// the key) is valid for `access_key` under `secret`; returns the timestamp.
pub fn verify_ha_hello(secret: &str, access_key: &str, rest: &[u8]) -> Option<u64> {
    if rest.len() != 8 + SIGNATURE_LEN {
        return None;
    }
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&rest[..8]);
    let ts = u64::from_be_bytes(ts);
    ha_mac(secret, access_key, ts)
        .verify_slice(&rest[8..])
        .ok()
        .map(|_| ts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Command;
    use crate::frame::FrameCodec;
    use tokio_util::codec::Decoder;

    #[test]
    fn signed_frame_round_trips_and_verifies() {
        let creds = Credentials::new("ak", "sk");
        let h = Header::request(9, Command::GetTopicList);
        let mut buf = BytesMut::new();
        encode_signed_frame(
            &h,
            &crate::GetTopicListRequest {},
            &creds,
            1234,
            &mut buf,
            1 << 20,
        )
        .unwrap();
        let f = FrameCodec::default().decode(&mut buf).unwrap().unwrap();
        let auth = f.auth.as_deref().unwrap();
        assert_eq!(auth.access_key, "ak");
        assert_eq!(auth.timestamp_ms, 1234);
        assert!(verify_request("sk", auth, &f.header, &f.body));
        assert!(!verify_request("other", auth, &f.header, &f.body));
        let mut tampered = f.header;
        tampered.request_id = 10;
        assert!(!verify_request("sk", auth, &tampered, &f.body));
        let mut late = auth.clone();
        late.timestamp_ms += 1;
        assert!(!verify_request("sk", &late, &f.header, &f.body));
        assert!(f.decode_body::<crate::GetTopicListRequest>().is_ok());
    }

    #[test]
    fn debug_hides_the_secret() {
        let s = format!("{:?}", Credentials::new("ak", "hunter2"));
        assert!(!s.contains("hunter2"), "{s}");
    }

    #[test]
    fn ha_hello_verifies_only_with_the_secret() {
        let creds = Credentials::new("broker", "cluster-secret");
        let hello = ha_hello(&creds, 77);
        assert_eq!(hello.len(), ha_hello_len("broker"));
        let rest = &hello[2 + 6..];
        assert_eq!(verify_ha_hello("cluster-secret", "broker", rest), Some(77));
        assert_eq!(verify_ha_hello("guess", "broker", rest), None);
        assert_eq!(verify_ha_hello("cluster-secret", "other", rest), None);
    }
}
