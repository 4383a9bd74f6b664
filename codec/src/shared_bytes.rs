//! Zero-copy byte payloads: a `bin` decoded from a frame becomes a slice
//! of that frame's buffer instead of a copy.
//!
//! serde hands a deserializer's borrowed bytes to a visitor as `&[u8]`;
//! `Bytes`' own `Deserialize` copies them. While [`RawFrame::decode_body`]
//! runs, the frame's body buffer is known on this thread, so
//! [`deserialize`] (used as `#[serde(deserialize_with = ...)]` on message
//! bodies and pulled records) returns `body.slice_ref(bytes)` when the
//! borrowed bytes lie inside it: the payload shares the frame's allocation
//! and costs no copy. Outside a frame decode (or for owned bytes) it
//! copies, exactly like `Bytes`' own impl.
//!
//! [`RawFrame::decode_body`]: crate::RawFrame::decode_body

use std::cell::RefCell;
use std::fmt;

use bytes::Bytes;
use serde::de::{Deserializer, Error, SeqAccess, Visitor};

thread_local! {
    static BASE: RefCell<Option<Bytes>> = const { RefCell::new(None) };
}

/// Runs `f` with `base` as the buffer decoded bytes may be sliced from.
pub(crate) fn with_base<R>(base: &Bytes, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Bytes>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let prev = self.0.take();
            BASE.with(|b| *b.borrow_mut() = prev);
        }
    }
    let prev = BASE.with(|b| b.borrow_mut().replace(base.clone()));
    let _restore = Restore(prev);
    f()
}

fn slice_or_copy(v: &[u8]) -> Bytes {
    BASE.with(|b| match &*b.borrow() {
        Some(base) if within(base, v) => base.slice_ref(v),
        _ => Bytes::copy_from_slice(v),
    })
}

fn within(base: &[u8], v: &[u8]) -> bool {
    let (b, p) = (base.as_ptr() as usize, v.as_ptr() as usize);
    !v.is_empty() && p >= b && p + v.len() <= b + base.len()
}

struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Bytes;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_borrowed_bytes<E: Error>(self, v: &'de [u8]) -> Result<Bytes, E> {
        Ok(slice_or_copy(v))
    }

    fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Bytes, E> {
        Ok(Bytes::copy_from_slice(v))
    }

    fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
        Ok(Bytes::from(v))
    }

    fn visit_str<E: Error>(self, v: &str) -> Result<Bytes, E> {
        Ok(Bytes::copy_from_slice(v.as_bytes()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bytes, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(b) = seq.next_element::<u8>()? {
            out.push(b);
        }
        Ok(Bytes::from(out))
    }
}

/// `deserialize_with` for a `Bytes` field: a slice of the frame being
/// decoded where possible, a copy otherwise.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
    d.deserialize_bytes(BytesVisitor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Body {
        #[serde(deserialize_with = "deserialize")]
        data: Bytes,
    }

    #[test]
    fn decoded_bytes_share_the_frame_buffer() {
        #[derive(serde::Serialize)]
        struct Out<'a> {
            #[serde(with = "serde_bytes")]
            data: &'a [u8],
        }
        let wire = Bytes::from(rmp_serde::to_vec_named(&Out { data: b"payload" }).unwrap());
        let b: Body = with_base(&wire, || crate::decode_value(&wire)).unwrap();
        assert_eq!(&b.data[..], b"payload");
        assert!(within(&wire, &b.data), "a slice of the frame, not a copy");
        // Outside a frame decode the bytes are copied.
        let c: Body = crate::decode_value(&wire).unwrap();
        assert_eq!(&c.data[..], b"payload");
        assert!(!within(&wire, &c.data));
    }
}
