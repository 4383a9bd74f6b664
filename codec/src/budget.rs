//! The decoded-size budget: a body of N bytes may decode into at most
//! [`budget_for`]`(N)` = 8 × N + 16 KiB of memory, whatever it holds.
//!
//! Why: [`crate::frame::decode_value`] already refuses any length that runs
//! past the input, but one byte of MessagePack can still become much more
//! than one byte of Rust: an empty `str` (`0xa0`) is a 24-byte `String`, a
//! 10-byte positional array is a 136-byte `MessageData`. A 16 MiB frame of
//! empty strings in a heartbeat's `producer_groups` decoded to ~390 MB, and
//! any client that can connect could send it. With the budget such a body
//! is [`crate::ProtocolError::Malformed`] (a server answers `BadRequest`)
//! before the list is built.
//!
//! How: `decode` wraps the MessagePack deserializer in `De`, which
//! passes every call through and charges, against one counter:
//!
//! * a sequence (`deserialize_seq`: `Vec`, `VecDeque`, sets) its
//!   *capacity* times `size_of` its element: what serde preallocates from
//!   the size hint, then each doubling of a growing `Vec`. A sequence whose
//!   elements cannot all fit is refused before its first element is
//!   decoded, so a hostile list costs neither the memory nor the CPU;
//! * a map (`deserialize_map`) 2 × `size_of` key + value per entry (a
//!   B-tree's nodes are at worst half full);
//! * owned strings and byte strings (`deserialize_string`, `_bytes`,
//!   `_byte_buf`, `_any`) their length. `Bytes` sliced from the frame
//!   ([`crate::shared_bytes`]) cost no copy but are charged anyway.
//!
//! Structs, tuples, options and enums cost nothing themselves: they live
//! inline in what holds them, which was charged their `size_of`. Borrowed
//! `&str` and `&[u8]` cost nothing. The size hint a charged sequence
//! reports is cut to `left / 256`, so serde's preallocation (hint ×
//! `size_of`) stays within the budget for elements up to 256 bytes; every
//! protocol type is smaller (a unit test checks the large ones).
//!
//! Cost on the decode path, all integer operations on one `Cell`: per
//! sequence element a compare and an increment (a multiply and two compares
//! more when the capacity doubles, and once per sequence for the
//! up-front check), per map entry and per owned string a compare and a
//! subtract. Nothing is allocated.
//!
//! What is bounded is the memory live once each allocation is done: a
//! `Vec` that doubles holds its old block too while it copies (glibc moves
//! a large block with `mremap`, without a copy, but a smaller one may be
//! copied), so for that instant a growing list can take up to half its
//! capacity more.
//!
//! Why 8 × N: a list of short names is the most expensive legitimate shape
//! (a 4-character name is 5 bytes on the wire and a 24-byte `String` plus
//! its 4 bytes, in a `Vec` up to twice as long as it is full: up to ~7.5 ×
//! N measured). A batch of 1-byte messages at the frame limit takes 3 × N,
//! a slave's metadata sync 1.8 × N, 100 K topic names of 15 characters
//! 3.6 × N (`codec/tests/amplification.rs`). 4 × N would refuse long lists
//! of 10-character names. With 8 × N, lists of names of 5 characters or
//! more decode in any frame up to the 16 MiB limit, of 3 or 4 characters
//! up to about a million names, of 1 or 2 up to about a thousand (the
//! 16 KiB is for small frames like those).

use std::cell::Cell;
use std::fmt;
use std::mem::size_of;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};

/// Decoded bytes allowed per input byte.
pub const DECODE_BUDGET_FACTOR: usize = 8;

/// Decoded bytes allowed on top of [`DECODE_BUDGET_FACTOR`] × input.
pub const DECODE_BUDGET_SLACK: usize = 16 * 1024;

/// Largest element the size hint a sequence reports is sized for: serde
/// preallocates `hint × size_of` bytes, so with the hint cut to
/// `left / 256` that stays within the budget for elements up to 256 bytes
/// (every protocol type is smaller; a unit test checks the big ones).
const HINT_ELEMENT_SIZE: usize = 256;

/// serde's preallocation cap (`serde::__private::size_hint::cautious`):
/// a sequence starts with at most this many bytes of capacity.
const SERDE_MAX_PREALLOC: usize = 1024 * 1024;

/// The decoded-size budget for `len` bytes of input.
pub fn budget_for(len: usize) -> usize {
    len.saturating_mul(DECODE_BUDGET_FACTOR)
        .saturating_add(DECODE_BUDGET_SLACK)
}

/// Deserializes one `T` from `de`, charging what it builds against
/// `budget` bytes.
pub(crate) fn decode<'de, T, D>(de: D, budget: usize) -> Result<T, D::Error>
where
    T: de::Deserialize<'de>,
    D: Deserializer<'de>,
{
    decode_or_refused(de, budget).map_err(|(e, _)| e)
}

/// [`decode`], telling a refusal by the budget (`true` with the error)
/// apart from input that is bad otherwise: the RocketMQ remoting header
/// answers the first and closes on the second.
pub(crate) fn decode_or_refused<'de, T, D>(de: D, budget: usize) -> Result<T, (D::Error, bool)>
where
    T: de::Deserialize<'de>,
    D: Deserializer<'de>,
{
    let budget = Budget {
        left: Cell::new(budget),
        total: budget,
        refused: Cell::new(false),
    };
    T::deserialize(De {
        inner: de,
        b: &budget,
    })
    .map_err(|e| (e, budget.refused.get()))
}

/// What is left of one decode's budget.
struct Budget {
    left: Cell<usize>,
    total: usize,
    /// The budget refused something (the error is [`Budget::exceeded`]'s).
    refused: Cell<bool>,
}

impl Budget {
    #[inline]
    fn charge<E: de::Error>(&self, bytes: usize) -> Result<(), E> {
        let left = self.left.get();
        if bytes > left {
            return Err(self.exceeded());
        }
        self.left.set(left - bytes);
        Ok(())
    }

    #[cold]
    fn exceeded<E: de::Error>(&self) -> E {
        self.refused.set(true);
        E::custom(format_args!(
            "the decoded value would exceed {} bytes ({DECODE_BUDGET_FACTOR} x the input + {DECODE_BUDGET_SLACK})",
            self.total
        ))
    }

    /// A size hint cut to what the budget left can hold (see
    /// [`HINT_ELEMENT_SIZE`]).
    #[inline]
    fn cap_hint(&self, hint: Option<usize>) -> Option<usize> {
        hint.map(|h| h.min(self.left.get() / HINT_ELEMENT_SIZE))
    }

    /// The size hint of a sequence or map: cut ([`Self::cap_hint`]) when
    /// its elements are owned, as it is otherwise.
    #[inline]
    fn hint_of(&self, owned: bool, hint: Option<usize>) -> Option<usize> {
        if owned {
            self.cap_hint(hint)
        } else {
            hint
        }
    }

    /// `seed`, decoding under this budget.
    #[inline]
    fn seed<S>(&self, seed: S) -> Seed<'_, S> {
        Seed {
            inner: seed,
            b: self,
        }
    }
}

/// The budgeted deserializer: forwards to `inner`, wrapping visitors.
struct De<'b, D> {
    inner: D,
    b: &'b Budget,
}

/// A visitor whose sequences, maps and strings are charged when `owned`
/// (the value being built allocates them), and whose nested values are
/// decoded through [`De`] either way.
struct Wrap<'b, V> {
    inner: V,
    b: &'b Budget,
    owned: bool,
}

macro_rules! forward {
    ($($method:ident($($arg:ident: $ty:ty),*) => $owned:expr;)*) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
            let wrapped = Wrap { inner: visitor, b: self.b, owned: $owned };
            self.inner.$method($($arg,)* wrapped)
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for De<'_, D> {
    type Error = D::Error;

    forward! {
        deserialize_any() => true;
        deserialize_bool() => false;
        deserialize_i8() => false;
        deserialize_i16() => false;
        deserialize_i32() => false;
        deserialize_i64() => false;
        deserialize_i128() => false;
        deserialize_u8() => false;
        deserialize_u16() => false;
        deserialize_u32() => false;
        deserialize_u64() => false;
        deserialize_u128() => false;
        deserialize_f32() => false;
        deserialize_f64() => false;
        deserialize_char() => false;
        deserialize_str() => false;
        deserialize_string() => true;
        deserialize_bytes() => true;
        deserialize_byte_buf() => true;
        deserialize_option() => false;
        deserialize_unit() => false;
        deserialize_unit_struct(name: &'static str) => false;
        deserialize_newtype_struct(name: &'static str) => false;
        deserialize_seq() => true;
        deserialize_tuple(len: usize) => false;
        deserialize_tuple_struct(name: &'static str, len: usize) => false;
        deserialize_map() => true;
        deserialize_struct(name: &'static str, fields: &'static [&'static str]) => false;
        deserialize_enum(name: &'static str, variants: &'static [&'static str]) => false;
        deserialize_identifier() => false;
        deserialize_ignored_any() => false;
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// Decodes a seed's value through [`De`].
struct Seed<'b, S> {
    inner: S,
    b: &'b Budget,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.inner.deserialize(De {
            inner: d,
            b: self.b,
        })
    }
}

macro_rules! pass {
    ($($method:ident($ty:ty);)*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
            self.inner.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    pass! {
        visit_bool(bool);
        visit_i8(i8);
        visit_i16(i16);
        visit_i32(i32);
        visit_i64(i64);
        visit_i128(i128);
        visit_u8(u8);
        visit_u16(u16);
        visit_u32(u32);
        visit_u64(u64);
        visit_u128(u128);
        visit_f32(f32);
        visit_f64(f64);
        visit_char(char);
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<V::Value, E> {
        self.charge_len(v.len())?;
        self.inner.visit_str(v)
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<V::Value, E> {
        self.charge_len(v.len())?;
        self.inner.visit_borrowed_str(v)
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<V::Value, E> {
        self.charge_len(v.len())?;
        self.inner.visit_string(v)
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<V::Value, E> {
        self.charge_len(v.len())?;
        self.inner.visit_bytes(v)
    }

    fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<V::Value, E> {
        self.charge_len(v.len())?;
        self.inner.visit_borrowed_bytes(v)
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<V::Value, E> {
        self.charge_len(v.len())?;
        self.inner.visit_byte_buf(v)
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.inner.visit_some(De {
            inner: d,
            b: self.b,
        })
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.inner.visit_newtype_struct(De {
            inner: d,
            b: self.b,
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.inner.visit_seq(Seq {
            inner: seq,
            b: self.b,
            owned: self.owned,
            len: 0,
            cap: 0,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(Map {
            inner: map,
            b: self.b,
            owned: self.owned,
            key_size: 0,
        })
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.inner.visit_enum(Enum {
            inner: data,
            b: self.b,
        })
    }
}

impl<V> Wrap<'_, V> {
    #[inline]
    fn charge_len<E: de::Error>(&self, len: usize) -> Result<(), E> {
        if self.owned {
            self.b.charge(len)
        } else {
            Ok(())
        }
    }
}

/// A sequence's elements; when `owned`, charged as the `Vec` that holds
/// them allocates: `cap` is the capacity it has reached, `len` the
/// elements decoded.
struct Seq<'b, A> {
    inner: A,
    b: &'b Budget,
    owned: bool,
    len: usize,
    cap: usize,
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Seq<'_, A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        let size = size_of::<T::Value>();
        let charged = self.owned && size > 0;
        if charged && self.len == 0 {
            self.start(size)?;
        }
        let element = self.inner.next_element_seed(self.b.seed(seed))?;
        if element.is_some() {
            if charged && self.len == self.cap {
                self.grow(size)?;
            }
            self.len += 1;
        }
        Ok(element)
    }

    fn size_hint(&self) -> Option<usize> {
        self.b.hint_of(self.owned, self.inner.size_hint())
    }
}

impl<'de, A: SeqAccess<'de>> Seq<'_, A> {
    /// Before the first element of `size` bytes: refuses a sequence whose
    /// remaining elements cannot fit, then charges the capacity serde
    /// preallocated from the hint [`Self::size_hint`] reported.
    fn start(&mut self, size: usize) -> Result<(), A::Error> {
        let remaining = self.inner.size_hint();
        if let Some(n) = remaining {
            if n.saturating_mul(size) > self.b.left.get() {
                return Err(self.b.exceeded());
            }
        }
        let hinted = self.b.cap_hint(remaining).unwrap_or(0);
        self.cap = hinted.min(SERDE_MAX_PREALLOC / size);
        self.b.charge(self.cap * size)
    }

    /// Pushing one more element makes the `Vec` grow (RawVec's amortized
    /// doubling, to at least 4 elements): the capacity added is charged.
    #[cold]
    fn grow(&mut self, size: usize) -> Result<(), A::Error> {
        let grown = self.cap.saturating_mul(2).max(4);
        self.b.charge((grown - self.cap).saturating_mul(size))?;
        self.cap = grown;
        Ok(())
    }
}

/// A map's entries; when `owned`, each is charged twice its key and value
/// size (B-tree nodes are at worst half full).
struct Map<'b, A> {
    inner: A,
    b: &'b Budget,
    owned: bool,
    key_size: usize,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Map<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.key_size = size_of::<K::Value>();
        self.inner.next_key_seed(self.b.seed(seed))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        let value = self.inner.next_value_seed(self.b.seed(seed))?;
        if self.owned {
            let entry = self.key_size.saturating_add(size_of::<V::Value>());
            self.b.charge(entry.saturating_mul(2))?;
        }
        Ok(value)
    }

    fn size_hint(&self) -> Option<usize> {
        self.b.hint_of(self.owned, self.inner.size_hint())
    }
}

/// An enum's variant, its content decoded through [`De`].
struct Enum<'b, A> {
    inner: A,
    b: &'b Budget,
}

impl<'b, 'de, A: EnumAccess<'de>> EnumAccess<'de> for Enum<'b, A> {
    type Error = A::Error;
    type Variant = Enum<'b, A::Variant>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self::Variant), A::Error> {
        let b = self.b;
        let (value, variant) = self.inner.variant_seed(Seed { inner: seed, b })?;
        Ok((value, Enum { inner: variant, b }))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Enum<'_, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, A::Error> {
        self.inner.newtype_variant_seed(self.b.seed(seed))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        let wrapped = Wrap {
            inner: visitor,
            b: self.b,
            owned: false,
        };
        self.inner.tuple_variant(len, wrapped)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        let wrapped = Wrap {
            inner: visitor,
            b: self.b,
            owned: false,
        };
        self.inner.struct_variant(fields, wrapped)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::mem::size_of;

    use super::*;
    use crate::*;

    fn decode_with<'a, T: de::Deserialize<'a>>(
        buf: &'a [u8],
        budget: usize,
    ) -> std::result::Result<T, String> {
        let mut de = rmp_serde::Deserializer::from_read_ref(buf);
        decode(&mut de, budget).map_err(|e| e.to_string())
    }

    #[test]
    fn list_element_types_fit_the_hint_cut() {
        // Elements of charged sequences must be at most HINT_ELEMENT_SIZE
        // bytes for serde's preallocation to stay within the budget.
        let sizes = [
            size_of::<MessageData>(),
            size_of::<OffsetEntry>(),
            size_of::<TopicConfig>(),
            size_of::<ConsumerGroupData>(),
            size_of::<Subscription>(),
            size_of::<SendResult>(),
            size_of::<QueueRef>(),
            size_of::<QueueOffsetEntry>(),
            size_of::<QueueProgress>(),
            size_of::<DamagedRecord>(),
            size_of::<BrokerData>(),
            size_of::<QueueData>(),
            size_of::<SlaveStatus>(),
            size_of::<ConsumerConnection>(),
            size_of::<ClientConnection>(),
            size_of::<DelayLevelStats>(),
            size_of::<QueueStats>(),
            size_of::<(String, String)>(),
        ];
        for (i, s) in sizes.iter().enumerate() {
            assert!(*s <= HINT_ELEMENT_SIZE, "type #{i} is {s} bytes");
        }
    }

    #[test]
    fn a_list_is_charged_its_capacity_and_its_strings() {
        let names: Vec<String> = (0..100).map(|i| format!("name{i:03}")).collect();
        let buf = rmp_serde::to_vec(&names).unwrap();
        assert_eq!(decode_with::<Vec<String>>(&buf, 1 << 20), Ok(names));
        // Refused up front: 100 elements of 24 bytes cannot fit in 2000.
        let err = decode_with::<Vec<String>>(&buf, 2000).unwrap_err();
        assert!(err.contains("would exceed 2000 bytes"), "{err}");
        // Under 256 bytes left the hint is 0: the Vec grows to 4 elements
        // (96 bytes) for 3 one-byte strings.
        let three = rmp_serde::to_vec(&["a", "b", "c"]).unwrap();
        assert!(decode_with::<Vec<String>>(&three, 99).is_ok());
        assert!(decode_with::<Vec<String>>(&three, 98).is_err());
        assert!(decode_with::<Vec<u8>>(&[0x90], 0).is_ok());
    }

    #[test]
    fn borrowed_strings_structs_and_options_cost_nothing_themselves() {
        let buf = rmp_serde::to_vec_named(&("a name", Some(7u64), Ack {})).unwrap();
        let v: (&str, Option<u64>, Ack) = decode_with(&buf, 0).unwrap();
        assert_eq!(v.0, "a name");
        assert!(decode_with::<(String, Option<u64>, Ack)>(&buf, 5).is_err());
        assert!(decode_with::<(String, Option<u64>, Ack)>(&buf, 6).is_ok());
    }

    #[test]
    fn a_map_entry_costs_twice_its_key_and_value() {
        let m: BTreeMap<u64, u64> = (0..10).map(|i| (i, i)).collect();
        let buf = rmp_serde::to_vec(&m).unwrap();
        assert_eq!(decode_with::<BTreeMap<u64, u64>>(&buf, 320), Ok(m));
        assert!(decode_with::<BTreeMap<u64, u64>>(&buf, 319).is_err());
    }

    #[test]
    fn enums_and_results_decode_through_the_wrapper() {
        let v: ResponseBody<Vec<ConsumeFrom>> =
            Ok(vec![ConsumeFrom::Timestamp(5), ConsumeFrom::Last]);
        let buf = rmp_serde::to_vec_named(&v).unwrap();
        assert_eq!(
            decode_with::<ResponseBody<Vec<ConsumeFrom>>>(&buf, 1 << 20),
            Ok(v)
        );
        let e: ResponseBody<()> = Err(WireError::new(ErrorCode::Busy, "later"));
        let buf = rmp_serde::to_vec_named(&e).unwrap();
        assert_eq!(decode_with::<ResponseBody<()>>(&buf, 1 << 20), Ok(e));
    }
}
