//! Structural validation of MessagePack bytes without decoding them.
//!
//! The frame decoder must find where the header ends and check that the body
//! is exactly one well-formed MessagePack value, without knowing the body's
//! type and without trusting any length written in the input. [`skip_value`]
//! walks the markers iteratively (no recursion, so no stack overflow on deep
//! nesting), jumps over `str`/`bin`/`ext` payloads in O(1), and rejects any
//! length that runs past the end of the buffer before acting on it.

/// Returns the number of bytes taken by the single MessagePack value at the
/// start of `buf`, or a description of why `buf` does not start with one.
pub(crate) fn skip_value(buf: &[u8]) -> Result<usize, String> {
    let mut pos = 0usize;
    // Values still to be read (array elements, map keys and values).
    let mut pending: u64 = 1;
    while pending > 0 {
        pending -= 1;
        let marker = *buf
            .get(pos)
            .ok_or_else(|| format!("truncated value at byte {pos}"))?;
        pos += 1;
        let (payload, children): (u64, u64) = match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0),
            0x80..=0x8f => (0, 2 * u64::from(marker & 0x0f)),
            0x90..=0x9f => (0, u64::from(marker & 0x0f)),
            0xa0..=0xbf => (u64::from(marker & 0x1f), 0),
            0xc1 => return Err(format!("reserved marker 0xc1 at byte {}", pos - 1)),
            0xc4 | 0xd9 => (read_len(buf, &mut pos, 1)?, 0),
            0xc5 | 0xda => (read_len(buf, &mut pos, 2)?, 0),
            0xc6 | 0xdb => (read_len(buf, &mut pos, 4)?, 0),
            0xc7 => (read_len(buf, &mut pos, 1)? + 1, 0),
            0xc8 => (read_len(buf, &mut pos, 2)? + 1, 0),
            0xc9 => (read_len(buf, &mut pos, 4)? + 1, 0),
            0xca => (4, 0),
            0xcb => (8, 0),
            0xcc | 0xd0 => (1, 0),
            0xcd | 0xd1 => (2, 0),
            0xce | 0xd2 => (4, 0),
            0xcf | 0xd3 => (8, 0),
            0xd4 => (2, 0),
            0xd5 => (3, 0),
            0xd6 => (5, 0),
            0xd7 => (9, 0),
            0xd8 => (17, 0),
            0xdc => (0, read_len(buf, &mut pos, 2)?),
            0xdd => (0, read_len(buf, &mut pos, 4)?),
            0xde => (0, 2 * read_len(buf, &mut pos, 2)?),
            0xdf => (0, 2 * read_len(buf, &mut pos, 4)?),
        };
        let left = (buf.len() - pos) as u64;
        if payload > left {
            return Err(format!(
                "value at byte {pos} claims {payload} bytes, {left} left"
            ));
        }
        pos += payload as usize;
        pending += children;
        // Every pending value takes at least one byte: fail early on lengths
        // the input cannot possibly satisfy.
        if pending > (buf.len() - pos) as u64 {
            return Err(format!(
                "container claims {pending} more values, {} bytes left",
                buf.len() - pos
            ));
        }
    }
    Ok(pos)
}

/// Reads a big-endian length of `width` bytes at `*pos`.
fn read_len(buf: &[u8], pos: &mut usize, width: usize) -> Result<u64, String> {
    let bytes = buf
        .get(*pos..*pos + width)
        .ok_or_else(|| format!("truncated length at byte {}", *pos))?;
    *pos += width;
    Ok(bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
}

#[cfg(test)]
mod tests {
    use super::skip_value;
    use proptest::collection::vec;
    use proptest::prelude::*;

    /// A MessagePack value, written with `rmp`'s own encoder (which picks
    /// the smallest marker for each length), so these tests do not share
    /// the walker's idea of the format.
    #[derive(Debug, Clone)]
    enum V {
        Nil,
        Bool(bool),
        Int(i64),
        UInt(u64),
        F32(f32),
        F64(f64),
        Str(String),
        Bin(Vec<u8>),
        Ext(i8, Vec<u8>),
        Arr(Vec<V>),
        Map(Vec<(V, V)>),
    }

    fn write(v: &V, out: &mut Vec<u8>) {
        use rmp::encode::*;
        let r = match v {
            V::Nil => write_nil(out).map_err(|_| ()),
            V::Bool(b) => write_bool(out, *b).map_err(|_| ()),
            V::Int(n) => write_sint(out, *n).map(|_| ()).map_err(|_| ()),
            V::UInt(n) => write_uint(out, *n).map(|_| ()).map_err(|_| ()),
            V::F32(x) => write_f32(out, *x).map_err(|_| ()),
            V::F64(x) => write_f64(out, *x).map_err(|_| ()),
            V::Str(s) => write_str(out, s).map_err(|_| ()),
            V::Bin(b) => write_bin(out, b).map_err(|_| ()),
            V::Ext(ty, data) => write_ext_meta(out, data.len() as u32, *ty)
                .map(|_| out.extend_from_slice(data))
                .map_err(|_| ()),
            V::Arr(items) => write_array_len(out, items.len() as u32)
                .map(|_| items.iter().for_each(|i| write(i, out)))
                .map_err(|_| ()),
            V::Map(entries) => write_map_len(out, entries.len() as u32)
                .map(|_| {
                    entries.iter().for_each(|(k, v)| {
                        write(k, out);
                        write(v, out);
                    })
                })
                .map_err(|_| ()),
        };
        r.expect("writing to a Vec");
    }

    fn value() -> impl Strategy<Value = V> {
        let leaf = prop_oneof![
            Just(V::Nil),
            any::<bool>().prop_map(V::Bool),
            any::<i64>().prop_map(V::Int),
            any::<u64>().prop_map(V::UInt),
            any::<f32>().prop_map(V::F32),
            any::<f64>().prop_map(V::F64),
            "\\PC{0,40}".prop_map(V::Str),
            vec(any::<u8>(), 0..300).prop_map(V::Bin),
            (any::<i8>(), vec(any::<u8>(), 0..20)).prop_map(|(t, d)| V::Ext(t, d)),
            (
                any::<i8>(),
                prop_oneof![Just(1usize), Just(2), Just(4), Just(8), Just(16)]
            )
                .prop_map(|(t, n)| V::Ext(t, vec![7; n])),
        ];
        leaf.prop_recursive(4, 48, 8, |inner| {
            prop_oneof![
                vec(inner.clone(), 0..18).prop_map(V::Arr),
                vec((inner.clone(), inner), 0..18).prop_map(V::Map),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn any_bytes_give_a_length_inside_them_or_an_error(
            buf in vec(any::<u8>(), 0..128),
        ) {
            if let Ok(n) = skip_value(&buf) {
                prop_assert!(n >= 1 && n <= buf.len());
            }
        }

        #[test]
        fn huge_claimed_lengths_are_errors(
            marker in proptest::sample::select(vec![
                0xc4u8, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf,
            ]),
            len in prop_oneof![Just(u32::MAX), Just(0x7fff_ffff), Just(0xffff), any::<u32>()],
            rest in vec(any::<u8>(), 0..16),
        ) {
            let width = match marker {
                0xc4 | 0xc7 | 0xd9 => 1,
                0xc5 | 0xc8 | 0xda | 0xdc | 0xde => 2,
                _ => 4,
            };
            let mut buf = vec![marker];
            buf.extend_from_slice(&len.to_be_bytes()[4 - width..]);
            let claimed = u64::from(len) & ((1u64 << (8 * width)) - 1);
            buf.extend_from_slice(&rest);
            if claimed > rest.len() as u64 {
                prop_assert!(skip_value(&buf).is_err());
            } else if let Ok(n) = skip_value(&buf) {
                prop_assert!(n <= buf.len());
            }
        }
    }

    proptest! {
        // Trees of up to a few hundred values: fewer cases.
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn values_written_by_rmp_are_skipped_exactly(
            v in value(),
            tail in vec(any::<u8>(), 0..4),
            cuts in vec(any::<usize>(), 16),
        ) {
            let mut buf = Vec::new();
            write(&v, &mut buf);
            let len = buf.len();
            prop_assert_eq!(skip_value(&buf), Ok(len));
            // Strict prefixes: the last bytes, and some anywhere.
            let near_end = (0..len).rev().take(8);
            for cut in near_end.chain(cuts.iter().map(|c| c % len)) {
                prop_assert!(skip_value(&buf[..cut]).is_err(), "prefix {}", cut);
            }
            buf.extend_from_slice(&tail);
            prop_assert_eq!(skip_value(&buf), Ok(len));
        }
    }

    #[test]
    fn skips_nested_values() {
        let v = (
            1u8,
            "hello",
            vec![vec![1i64, -70000], vec![]],
            serde_bytes::ByteBuf::from(vec![7u8; 300]),
            Some(2.5f64),
        );
        let bytes = rmp_serde::to_vec_named(&v).unwrap();
        assert_eq!(skip_value(&bytes), Ok(bytes.len()));
        for cut in 0..bytes.len() {
            assert!(skip_value(&bytes[..cut]).is_err(), "prefix {cut}");
        }
    }

    #[test]
    fn rejects_huge_claims_and_deep_nesting_is_fine() {
        assert!(skip_value(&[0xdd, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(skip_value(&[0xc6, 0xff, 0xff, 0xff, 0xff, 0]).is_err());
        let mut deep = vec![0x91u8; 1_000_000];
        deep.push(0xc0);
        assert_eq!(skip_value(&deep), Ok(deep.len()));
    }
}
