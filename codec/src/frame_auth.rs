//! The signature trailer of a signed frame ([`FrameAuth`]): what
//! `crate::frame` reads and writes after a signed request's body, and what
//! `crate::auth` signs and checks. Its own module so the frame layer and
//! the signing layer both look down at it instead of at each other.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Length of a signature (HMAC-SHA256).
pub const SIGNATURE_LEN: usize = 32;

/// The signature trailer of a signed frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameAuth {
    /// Who signed.
    pub access_key: String,
    /// When, in ms since the Unix epoch (checked against a window).
    pub timestamp_ms: u64,
    /// HMAC-SHA256 over the frame (see the module doc).
    pub signature: [u8; SIGNATURE_LEN],
    /// Unique per signed frame of a signer (absent in the first version's
    /// trailer); covered by the signature.
    pub nonce: Option<u64>,
}

impl Serialize for FrameAuth {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let sig = serde_bytes::Bytes::new(&self.signature);
        match self.nonce {
            Some(n) => (&self.access_key, self.timestamp_ms, sig, n).serialize(s),
            None => (&self.access_key, self.timestamp_ms, sig).serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for FrameAuth {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_seq(FrameAuthVisitor)
    }
}

/// Reads a 3-element (first version) or 4-element (with nonce) trailer.
struct FrameAuthVisitor;

impl<'de> serde::de::Visitor<'de> for FrameAuthVisitor {
    type Value = FrameAuth;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "[access_key, timestamp_ms, signature] or [access_key, timestamp_ms, signature, nonce]",
        )
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<FrameAuth, A::Error> {
        use serde::de::Error;
        let access_key: String = seq
            .next_element()?
            .ok_or_else(|| A::Error::invalid_length(0, &self))?;
        let timestamp_ms: u64 = seq
            .next_element()?
            .ok_or_else(|| A::Error::invalid_length(1, &self))?;
        let sig: serde_bytes::ByteBuf = seq
            .next_element()?
            .ok_or_else(|| A::Error::invalid_length(2, &self))?;
        let signature: [u8; SIGNATURE_LEN] = sig.as_slice().try_into().map_err(|_| {
            A::Error::custom(format!(
                "signature must be {SIGNATURE_LEN} bytes, got {}",
                sig.len()
            ))
        })?;
        let nonce: Option<u64> = seq.next_element()?;
        if nonce.is_some() && seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
            return Err(A::Error::invalid_length(5, &self));
        }
        Ok(FrameAuth {
            access_key,
            timestamp_ms,
            signature,
            nonce,
        })
    }
}
