//! Chunk compression schemes: None, LZ4 frame, and byte-grouping-4 + LZ4 frame.
//!
//! Decompression is told the size the chunk header promises and never produces, or
//! allocates for, more than that.

use std::io::{Read, Write};

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum CompressionScheme {
    None = 0,
    Lz4 = 1,
    ByteGrouping4Lz4 = 2,
}

impl TryFrom<u8> for CompressionScheme {
    type Error = Error;
    fn try_from(v: u8) -> Result<Self> {
        match v {
            0 => Ok(Self::None),
            1 => Ok(Self::Lz4),
            2 => Ok(Self::ByteGrouping4Lz4),
            other => Err(Error::UnknownCompression(other)),
        }
    }
}

impl CompressionScheme {
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Lz4 => "lz4",
            Self::ByteGrouping4Lz4 => "bg4-lz4",
        }
    }
}

/// Compresses `data` with `scheme`, appending to `out`.
pub fn compress_into(scheme: CompressionScheme, data: &[u8], out: &mut Vec<u8>) -> Result<()> {
    match scheme {
        CompressionScheme::None => out.extend_from_slice(data),
        CompressionScheme::Lz4 => lz4_frame_compress(data, out)?,
        CompressionScheme::ByteGrouping4Lz4 => lz4_frame_compress(&byte_group_4(data), out)?,
    }
    Ok(())
}

fn lz4_frame_compress(data: &[u8], out: &mut Vec<u8>) -> Result<()> {
    let mut enc = lz4_flex::frame::FrameEncoder::new(out);
    enc.write_all(data)?;
    enc.finish()
        .map_err(|e| Error::Decompress(format!("lz4 encoder: {e}")))?;
    Ok(())
}

/// Decompresses one chunk that must expand to exactly `expected_len` bytes, appending to `out`.
pub fn decompress_into(
    scheme: CompressionScheme,
    compressed: &[u8],
    expected_len: usize,
    out: &mut Vec<u8>,
) -> Result<()> {
    match scheme {
        CompressionScheme::None => {
            if compressed.len() != expected_len {
                return Err(Error::invalid(
                    "uncompressed chunk",
                    format!(
                        "stored {} bytes but header says {expected_len}",
                        compressed.len()
                    ),
                ));
            }
            out.extend_from_slice(compressed);
        }
        CompressionScheme::Lz4 => {
            let start = out.len();
            lz4_frame_decompress(compressed, expected_len, out)?;
            debug_assert_eq!(out.len() - start, expected_len);
        }
        CompressionScheme::ByteGrouping4Lz4 => {
            let mut grouped = Vec::with_capacity(expected_len);
            lz4_frame_decompress(compressed, expected_len, &mut grouped)?;
            byte_ungroup_4_into(&grouped, out);
        }
    }
    Ok(())
}

fn lz4_frame_decompress(compressed: &[u8], expected_len: usize, out: &mut Vec<u8>) -> Result<()> {
    let start = out.len();
    out.reserve(expected_len);
    // Reading one byte past the promise tells "too long" apart from "exact" without
    // letting a hostile frame grow the buffer.
    let mut limited = lz4_flex::frame::FrameDecoder::new(compressed).take(expected_len as u64 + 1);
    limited
        .read_to_end(out)
        .map_err(|e| Error::Decompress(format!("lz4 frame: {e}")))?;
    let got = out.len() - start;
    if got != expected_len {
        out.truncate(start);
        return Err(Error::Decompress(format!(
            "lz4 frame expands to {}{got} bytes, header says {expected_len}",
            if got > expected_len { "more than " } else { "" }
        )));
    }
    Ok(())
}

/// Splits bytes by their position mod 4: all byte 0s, then byte 1s, byte 2s, byte 3s.
pub fn byte_group_4(data: &[u8]) -> Vec<u8> {
    let n = data.len();
    let mut out = vec![0u8; n];
    let sizes = group_sizes(n);
    let mut offsets = [0usize; 4];
    for g in 1..4 {
        offsets[g] = offsets[g - 1] + sizes[g - 1];
    }
    let (g0, rest) = out.split_at_mut(sizes[0]);
    let (g1, rest) = rest.split_at_mut(sizes[1]);
    let (g2, g3) = rest.split_at_mut(sizes[2]);
    let full = n / 4;
    for i in 0..full {
        let q = &data[4 * i..4 * i + 4];
        g0[i] = q[0];
        g1[i] = q[1];
        g2[i] = q[2];
        g3[i] = q[3];
    }
    let tail = &data[4 * full..];
    let groups: [&mut [u8]; 3] = [g0, g1, g2];
    for (g, &b) in groups.into_iter().zip(tail) {
        g[full] = b;
    }
    out
}

/// Inverse of [`byte_group_4`], appending to `out`.
pub fn byte_ungroup_4_into(grouped: &[u8], out: &mut Vec<u8>) {
    let n = grouped.len();
    let sizes = group_sizes(n);
    let (g0, rest) = grouped.split_at(sizes[0]);
    let (g1, rest) = rest.split_at(sizes[1]);
    let (g2, g3) = rest.split_at(sizes[2]);
    let base = out.len();
    out.resize(base + n, 0);
    let dst = &mut out[base..];
    let full = n / 4;
    // Zipped exact-size iterators carry no bounds checks, so this loop vectorizes.
    for ((((q, &a), &b), &c), &d) in dst.chunks_exact_mut(4).zip(g0).zip(g1).zip(g2).zip(g3) {
        q[0] = a;
        q[1] = b;
        q[2] = c;
        q[3] = d;
    }
    for (k, g) in [g0, g1, g2].into_iter().take(n % 4).enumerate() {
        dst[4 * full + k] = g[full];
    }
}

/// Group sizes: the first `n % 4` groups carry one extra byte.
fn group_sizes(n: usize) -> [usize; 4] {
    let (base, rem) = (n / 4, n % 4);
    [0, 1, 2, 3].map(|g| base + usize::from(g < rem))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_example_from_spec() {
        let d: Vec<u8> = (0..10).collect();
        // Group sizes 3, 3, 2, 2.
        assert_eq!(byte_group_4(&d), vec![0, 4, 8, 1, 5, 9, 2, 6, 3, 7]);
        let mut back = Vec::new();
        byte_ungroup_4_into(&byte_group_4(&d), &mut back);
        assert_eq!(back, d);
    }

    #[test]
    fn round_trips() {
        for n in [0usize, 1, 2, 3, 4, 5, 1000, 65_537] {
            let d: Vec<u8> = (0..n).map(|i| (i * 7 % 251) as u8).collect();
            for s in [
                CompressionScheme::None,
                CompressionScheme::Lz4,
                CompressionScheme::ByteGrouping4Lz4,
            ] {
                let mut c = Vec::new();
                compress_into(s, &d, &mut c).unwrap();
                let mut out = vec![9];
                decompress_into(s, &c, n, &mut out).unwrap();
                assert_eq!(&out[1..], &d[..], "{s:?} {n}");
            }
        }
    }

    #[test]
    fn wrong_length_is_rejected() {
        let d = vec![1u8; 1000];
        let mut c = Vec::new();
        compress_into(CompressionScheme::Lz4, &d, &mut c).unwrap();
        let mut out = Vec::new();
        assert!(decompress_into(CompressionScheme::Lz4, &c, 999, &mut out).is_err());
        assert!(out.is_empty());
        assert!(decompress_into(CompressionScheme::Lz4, &c, 1001, &mut out).is_err());
        assert!(decompress_into(CompressionScheme::None, &d, 999, &mut out).is_err());
        assert!(decompress_into(CompressionScheme::Lz4, b"garbage", 10, &mut out).is_err());
        assert!(CompressionScheme::try_from(3).is_err());
    }
}
