//! Request signatures (ACL): who sent a frame, and proof that they hold the
//! secret.
//!
//! A signed frame carries a third element after `[header, body]`: the
//! envelope is a `fixarray` of 3 (`0x93`) and the trailer is
//!
//! ```text
//! auth = [access_key: str, timestamp_ms: u64, signature: bin 32, nonce: u64]
//! signature = HMAC-SHA256(secret_key,
//!     "skylark-acl-v2" | command u16 BE | kind u8 | request_id u64 BE
//!     | timestamp_ms u64 BE | nonce u64 BE
//!     | len(access_key) u16 BE | access_key | body)
//! ```
//!
//! The nonce makes two requests that are otherwise identical (same command,
//! request id, body and millisecond, e.g. two CLI runs) sign differently, so
//! a server may refuse a signature it has already seen within the window as
//! a replay (`actors/src/acl/replay.rs`) without refusing honest repeats.
//! [`encode_signed_frame`] takes a fresh one per frame ([`fresh_nonce`]).
//! The first version's 3-element trailer (no nonce, tag `skylark-acl-v1`,
//! no nonce in the MAC) still decodes and verifies; a server's replay cache
//! covers it as well, keyed by its signature.
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
//!
//! HTTP requests (the dashboard's message search) carry
//! `Authorization: Skylark <access_key>:<timestamp_ms>:<nonce>:<hex signature>`
//! ([`http_authorization`]), the signature being HMAC-SHA256 over the text
//!
//! ```text
//! "skylark-http-v1\n" METHOD "\n" path?query "\n" timestamp_ms "\n" nonce "\n" access_key
//! ```
//!
//! (numbers in decimal, `path?query` exactly as in the request line), so a
//! browser (WebCrypto) or a shell (`openssl dgst -hmac`) can make one and
//! the secret never crosses the wire.

use std::fmt;

use bytes::{BufMut, BytesMut};
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use crate::error::{ProtocolError, Result};
use crate::frame::{write_frame_parts, Header};

type HmacSha256 = Hmac<Sha256>;

pub use crate::frame_auth::{FrameAuth, SIGNATURE_LEN};

/// Domain tag of a request signature without a nonce (first version).
const REQUEST_TAG_V1: &[u8] = b"skylark-acl-v1";
/// Domain tag of a request signature with a nonce.
const REQUEST_TAG: &[u8] = b"skylark-acl-v2";
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

/// A nonce no earlier call in this process returned: a per-process random
/// start (from the standard library's hash keys, so no extra dependency)
/// plus a counter. Unique, not secret: the signature is what an attacker
/// cannot make.
pub fn fresh_nonce() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static START: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let start = *START.get_or_init(|| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        h.write_u32(std::process::id());
        h.finish()
    });
    start.wrapping_add(COUNTER.fetch_add(1, Ordering::Relaxed))
}

fn request_mac(
    secret: &str,
    access_key: &str,
    header: &Header,
    timestamp_ms: u64,
    nonce: Option<u64>,
    body: &[u8],
) -> HmacSha256 {
    // HMAC takes keys of any length: new_from_slice cannot fail.
    let mut mac = match HmacSha256::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => unreachable_key(),
    };
    mac.update(if nonce.is_some() {
        REQUEST_TAG
    } else {
        REQUEST_TAG_V1
    });
    mac.update(&header.command.to_be_bytes());
    mac.update(&[header.kind as u8]);
    mac.update(&header.request_id.to_be_bytes());
    mac.update(&timestamp_ms.to_be_bytes());
    if let Some(n) = nonce {
        mac.update(&n.to_be_bytes());
    }
    signer_and(mac, access_key, body)
}

/// The tail every signature covers: the signer's key (length-prefixed) and
/// then the signed bytes.
fn signer_and(mut mac: HmacSha256, access_key: &str, data: &[u8]) -> HmacSha256 {
    let key = access_key.as_bytes();
    mac.update(&(key.len().min(u16::MAX as usize) as u16).to_be_bytes());
    mac.update(key);
    mac.update(data);
    mac
}

#[cold]
fn unreachable_key() -> ! {
    // `Hmac::new_from_slice` accepts every key length; kept out of line
    // so the signing path has no panic branch of its own.
    panic!("HMAC-SHA256 refused a key")
}

/// The signed trailer of a request frame under `creds` (see the module
/// doc); `nonce: None` makes the first version's signature.
pub fn sign_request(
    creds: &Credentials,
    header: &Header,
    timestamp_ms: u64,
    nonce: Option<u64>,
    body: &[u8],
) -> FrameAuth {
    let mac = request_mac(
        &creds.secret_key,
        &creds.access_key,
        header,
        timestamp_ms,
        nonce,
        body,
    );
    FrameAuth {
        access_key: creds.access_key.clone(),
        timestamp_ms,
        signature: mac.finalize().into_bytes().into(),
        nonce,
    }
}

/// Whether `auth` is a valid signature of this frame under `secret`,
/// compared in constant time.
pub fn verify_request(secret: &str, auth: &FrameAuth, header: &Header, body: &[u8]) -> bool {
    request_mac(
        secret,
        &auth.access_key,
        header,
        auth.timestamp_ms,
        auth.nonce,
        body,
    )
    .verify_slice(&auth.signature)
    .is_ok()
}

/// Appends one signed frame (`[header, body, auth]`) to `dst` with a
/// [`fresh_nonce`]: the body is serialized into the buffer, signed where it
/// lies, and the trailer appended. On error `dst` is left as it was.
pub fn encode_signed_frame<B: Serialize + ?Sized>(
    header: &Header,
    body: &B,
    creds: &Credentials,
    timestamp_ms: u64,
    dst: &mut BytesMut,
    max_frame_size: usize,
) -> Result<()> {
    encode_signed_frame_with_nonce(
        header,
        body,
        creds,
        timestamp_ms,
        Some(fresh_nonce()),
        dst,
        max_frame_size,
    )
}

/// [`encode_signed_frame`] with a given nonce (`None`: the first version's
/// 3-element trailer).
pub fn encode_signed_frame_with_nonce<B: Serialize + ?Sized>(
    header: &Header,
    body: &B,
    creds: &Credentials,
    timestamp_ms: u64,
    nonce: Option<u64>,
    dst: &mut BytesMut,
    max_frame_size: usize,
) -> Result<()> {
    let start = dst.len();
    let sign = |dst: &mut BytesMut, body_at: usize| {
        let auth = sign_request(creds, header, timestamp_ms, nonce, &dst[body_at..]);
        rmp_serde::encode::write(&mut (&mut *dst).writer(), &auth)
            .map_err(|e| ProtocolError::Encode(e.to_string()))
    };
    let r = write_frame_parts(header, body, dst, start, max_frame_size, Some(sign));
    if r.is_err() {
        dst.truncate(start);
    }
    r
}

/// Scheme name of a signed HTTP `Authorization` header.
pub const HTTP_AUTH_SCHEME: &str = "Skylark";

/// The parts of a signed HTTP `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpAuth {
    /// Who signed.
    pub access_key: String,
    /// When, in ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// Unique per request of a signer.
    pub nonce: u64,
    /// HMAC-SHA256 (see the module doc).
    pub signature: [u8; SIGNATURE_LEN],
}

fn http_mac(
    secret: &str,
    access_key: &str,
    method: &str,
    path_and_query: &str,
    timestamp_ms: u64,
    nonce: u64,
) -> HmacSha256 {
    let mut mac = match HmacSha256::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => unreachable_key(),
    };
    let text = format!(
        "skylark-http-v1\n{method}\n{path_and_query}\n{timestamp_ms}\n{nonce}\n{access_key}"
    );
    mac.update(text.as_bytes());
    mac
}

/// The `Authorization` header value signing `METHOD path?query` with
/// `creds` at `timestamp_ms`, with a [`fresh_nonce`].
pub fn http_authorization(
    creds: &Credentials,
    method: &str,
    path_and_query: &str,
    timestamp_ms: u64,
) -> String {
    let nonce = fresh_nonce();
    let sig = http_mac(
        &creds.secret_key,
        &creds.access_key,
        method,
        path_and_query,
        timestamp_ms,
        nonce,
    )
    .finalize()
    .into_bytes();
    let hex: String = sig.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{HTTP_AUTH_SCHEME} {}:{timestamp_ms}:{nonce}:{hex}",
        creds.access_key
    )
}

/// Parses an `Authorization` header value made by [`http_authorization`].
pub fn parse_http_authorization(value: &str) -> std::result::Result<HttpAuth, String> {
    let bad = || {
        format!("Authorization must be '{HTTP_AUTH_SCHEME} ACCESS_KEY:TIMESTAMP_MS:NONCE:HEX_SIGNATURE'")
    };
    let rest = value
        .strip_prefix(HTTP_AUTH_SCHEME)
        .and_then(|r| r.strip_prefix(' '))
        .ok_or_else(bad)?;
    let mut parts = rest.trim().rsplitn(4, ':');
    let (Some(sig), Some(nonce), Some(ts), Some(key)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let timestamp_ms = ts.parse().map_err(|_| bad())?;
    let nonce = nonce.parse().map_err(|_| bad())?;
    if sig.len() != SIGNATURE_LEN * 2 || key.is_empty() {
        return Err(bad());
    }
    let mut signature = [0u8; SIGNATURE_LEN];
    for (i, out) in signature.iter_mut().enumerate() {
        *out = sig
            .get(2 * i..2 * i + 2)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .ok_or_else(bad)?;
    }
    Ok(HttpAuth {
        access_key: key.to_string(),
        timestamp_ms,
        nonce,
        signature,
    })
}

/// Whether `auth` signs `METHOD path?query` under `secret`, in constant time.
pub fn verify_http(secret: &str, auth: &HttpAuth, method: &str, path_and_query: &str) -> bool {
    http_mac(
        secret,
        &auth.access_key,
        method,
        path_and_query,
        auth.timestamp_ms,
        auth.nonce,
    )
    .verify_slice(&auth.signature)
    .is_ok()
}

/// Domain tag of a signed opaque payload (the controller's requests).
const PAYLOAD_TAG: &[u8] = b"skylark-payload-v1";

fn payload_mac(
    secret: &str,
    access_key: &str,
    timestamp_ms: u64,
    nonce: u64,
    payload: &[u8],
) -> HmacSha256 {
    let mut mac = match HmacSha256::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => unreachable_key(),
    };
    mac.update(PAYLOAD_TAG);
    mac.update(&timestamp_ms.to_be_bytes());
    mac.update(&nonce.to_be_bytes());
    signer_and(mac, access_key, payload)
}

/// The signature of an opaque payload (a controller request's bytes):
/// HMAC-SHA256 over a domain tag, the timestamp, the nonce, the access key
/// and the payload.
pub fn sign_payload(
    secret: &str,
    access_key: &str,
    timestamp_ms: u64,
    nonce: u64,
    payload: &[u8],
) -> [u8; SIGNATURE_LEN] {
    payload_mac(secret, access_key, timestamp_ms, nonce, payload)
        .finalize()
        .into_bytes()
        .into()
}

/// Whether `signature` is [`sign_payload`]'s under `secret`, in constant time.
pub fn verify_payload(
    secret: &str,
    access_key: &str,
    timestamp_ms: u64,
    nonce: u64,
    payload: &[u8],
    signature: &[u8],
) -> bool {
    payload_mac(secret, access_key, timestamp_ms, nonce, payload)
        .verify_slice(signature)
        .is_ok()
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
        assert!(auth.nonce.is_some());
        let mut other_nonce = auth.clone();
        other_nonce.nonce = auth.nonce.map(|n| n.wrapping_add(1));
        assert!(!verify_request("sk", &other_nonce, &f.header, &f.body));
        let mut stripped = auth.clone();
        stripped.nonce = None;
        assert!(!verify_request("sk", &stripped, &f.header, &f.body));
    }

    #[test]
    fn same_request_signs_differently_and_first_version_still_verifies() {
        let creds = Credentials::new("ak", "sk");
        let h = Header::request(1, Command::GetTopicList);
        let frame = |nonce| {
            let mut buf = BytesMut::new();
            match nonce {
                Some(()) => encode_signed_frame(
                    &h,
                    &crate::GetTopicListRequest {},
                    &creds,
                    5,
                    &mut buf,
                    1 << 20,
                ),
                None => encode_signed_frame_with_nonce(
                    &h,
                    &crate::GetTopicListRequest {},
                    &creds,
                    5,
                    None,
                    &mut buf,
                    1 << 20,
                ),
            }
            .unwrap();
            FrameCodec::default().decode(&mut buf).unwrap().unwrap()
        };
        let (a, b) = (frame(Some(())), frame(Some(())));
        let (aa, ba) = (a.auth.unwrap(), b.auth.unwrap());
        assert_ne!(aa.nonce, ba.nonce);
        assert_ne!(aa.signature, ba.signature);
        let v1 = frame(None);
        let v1a = v1.auth.as_deref().unwrap();
        assert_eq!(v1a.nonce, None);
        assert!(verify_request("sk", v1a, &v1.header, &v1.body));
        // A v1 signature does not pass as a v2 one with any nonce.
        let mut as_v2 = v1a.clone();
        as_v2.nonce = Some(0);
        assert!(!verify_request("sk", &as_v2, &v1.header, &v1.body));
    }

    #[test]
    fn trailer_with_too_many_elements_is_an_error() {
        let t = ("ak", 1u64, serde_bytes::Bytes::new(&[0u8; 32]), 2u64, 3u64);
        let bytes = rmp_serde::to_vec(&t).unwrap();
        assert!(rmp_serde::from_slice::<FrameAuth>(&bytes).is_err());
        let short = rmp_serde::to_vec(&("ak", 1u64)).unwrap();
        assert!(rmp_serde::from_slice::<FrameAuth>(&short).is_err());
    }

    #[test]
    fn http_authorization_round_trips_and_covers_the_query() {
        let creds = Credentials::new("ops:eu", "sk");
        let v = http_authorization(&creds, "GET", "/api/messages?topic=T&key=k", 42);
        let a = parse_http_authorization(&v).unwrap();
        assert_eq!((a.access_key.as_str(), a.timestamp_ms), ("ops:eu", 42));
        assert!(verify_http("sk", &a, "GET", "/api/messages?topic=T&key=k"));
        assert!(!verify_http("sk", &a, "GET", "/api/messages?topic=U&key=k"));
        assert!(!verify_http(
            "sk",
            &a,
            "POST",
            "/api/messages?topic=T&key=k"
        ));
        assert!(!verify_http(
            "guess",
            &a,
            "GET",
            "/api/messages?topic=T&key=k"
        ));
        for bad in [
            "",
            "Basic b3BzOnNr",
            "Skylark ops",
            "Skylark a:1:2:zz",
            "Skylark :1:2:00",
        ] {
            assert!(parse_http_authorization(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn http_signature_matches_the_documented_text() {
        // What docs/security.md tells a shell to compute with openssl.
        let text = "skylark-http-v1\nGET\n/api/messages?id=x\n7\n9\nops";
        let mut mac = HmacSha256::new_from_slice(b"sk").unwrap();
        mac.update(text.as_bytes());
        let expected: [u8; 32] = mac.finalize().into_bytes().into();
        let a = HttpAuth {
            access_key: "ops".into(),
            timestamp_ms: 7,
            nonce: 9,
            signature: expected,
        };
        assert!(verify_http("sk", &a, "GET", "/api/messages?id=x"));
    }

    #[test]
    fn payload_signature_covers_every_part() {
        let sig = sign_payload("sk", "ak", 1, 2, b"req");
        assert!(verify_payload("sk", "ak", 1, 2, b"req", &sig));
        assert!(!verify_payload("sk", "ak", 1, 2, b"reQ", &sig));
        assert!(!verify_payload("sk", "ak", 1, 3, b"req", &sig));
        assert!(!verify_payload("sk", "ak", 2, 2, b"req", &sig));
        assert!(!verify_payload("sk", "bk", 1, 2, b"req", &sig));
        assert!(!verify_payload("xx", "ak", 1, 2, b"req", &sig));
        assert!(!verify_payload("sk", "ak", 1, 2, b"req", &sig[..31]));
    }

    #[test]
    fn debug_hides_the_secret() {
        let s = format!("{:?}", Credentials::new("ak", "hunter2"));
        assert!(!s.contains("hunter2"), "{s}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]

        #[test]
        fn any_authorization_header_parses_or_is_refused(value in "\\PC{0,120}") {
            if let Ok(a) = parse_http_authorization(&value) {
                proptest::prop_assert!(!a.access_key.is_empty());
                let _ = verify_http("sk", &a, "GET", "/");
            }
            let _ = parse_http_authorization(&format!("{HTTP_AUTH_SCHEME} {value}"));
        }

        #[test]
        fn signed_http_headers_round_trip_and_mutations_do_not_verify(
            key in "[!-~]{1,12}",
            ts in proptest::prelude::any::<u64>(),
            path in "/[a-z?=&]{0,16}",
            at in proptest::prelude::any::<usize>(),
            x in 1u8..=127,
        ) {
            let creds = Credentials::new(key.clone(), "sk");
            let v = http_authorization(&creds, "GET", &path, ts);
            let a = parse_http_authorization(&v).unwrap();
            proptest::prop_assert_eq!((&a.access_key, a.timestamp_ms), (&key, ts));
            proptest::prop_assert!(verify_http("sk", &a, "GET", &path));
            // One changed ASCII byte: refused, or a header that fails to
            // verify (a hex digit's case, or a '+' sign, may still parse
            // to the same numbers: then it verifies, and that is fine).
            let mut bytes = v.into_bytes();
            let at = at % bytes.len();
            bytes[at] = (bytes[at] ^ x) & 0x7f;
            let changed = String::from_utf8(bytes).unwrap();
            if let Ok(b) = parse_http_authorization(&changed) {
                if verify_http("sk", &b, "GET", &path) {
                    proptest::prop_assert_eq!(b, a);
                }
            }
        }

        #[test]
        fn any_ha_hello_tail_is_checked_without_panicking(
            rest in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        ) {
            proptest::prop_assert_eq!(verify_ha_hello("sk", "broker", &rest), None);
        }

        #[test]
        fn any_trailer_bytes_decode_or_are_malformed(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        ) {
            let _ = crate::frame::decode_value::<FrameAuth>(&bytes);
        }

        #[test]
        fn trailers_round_trip(
            key in "\\PC{0,16}",
            ts in proptest::prelude::any::<u64>(),
            signature in proptest::prelude::any::<[u8; SIGNATURE_LEN]>(),
            nonce in proptest::option::of(proptest::prelude::any::<u64>()),
            cut in proptest::prelude::any::<usize>(),
        ) {
            let auth = FrameAuth { access_key: key, timestamp_ms: ts, signature, nonce };
            let bytes = rmp_serde::to_vec(&auth).unwrap();
            let back: FrameAuth = crate::frame::decode_value(&bytes).unwrap();
            proptest::prop_assert_eq!(&back, &auth);
            let cut = cut % bytes.len();
            proptest::prop_assert!(crate::frame::decode_value::<FrameAuth>(&bytes[..cut]).is_err());
        }
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
