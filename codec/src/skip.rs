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
