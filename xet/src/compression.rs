//! Chunk compression schemes: None, LZ4 frame, and byte-grouping-4 + LZ4 frame.
//!
//! Decompression is told the size the chunk header promises and never produces, or
//! allocates for, more than that.

use std::io::Write;

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
    let start = out.len();
    out.resize(start + expected_len, 0);
    let r = decompress_to(scheme, compressed, &mut out[start..], &mut Vec::new());
    if r.is_err() {
        out.truncate(start);
    }
    r
}

/// Decompresses one chunk into `dst`, which it must fill exactly; `grouped` is scratch
/// space for BG4's grouped bytes.
fn decompress_to(
    scheme: CompressionScheme,
    compressed: &[u8],
    dst: &mut [u8],
    grouped: &mut Vec<u8>,
) -> Result<()> {
    match scheme {
        CompressionScheme::None => {
            check_stored_len(compressed, dst.len())?;
            dst.copy_from_slice(compressed);
        }
        CompressionScheme::Lz4 => lz4_frame_decompress_to(compressed, dst)?,
        CompressionScheme::ByteGrouping4Lz4 => {
            let grouped = room(grouped, dst.len());
            lz4_frame_decompress_to(compressed, grouped)?;
            byte_ungroup_4_to(grouped, dst);
        }
    }
    Ok(())
}

/// An uncompressed chunk must be as long as its header says.
fn check_stored_len(stored: &[u8], expected_len: usize) -> Result<()> {
    if stored.len() == expected_len {
        return Ok(());
    }
    Err(Error::invalid(
        "uncompressed chunk",
        format!(
            "stored {} bytes but header says {expected_len}",
            stored.len()
        ),
    ))
}

/// The first `n` bytes of `buf`, grown (zeroed) only when it is shorter.
fn room(buf: &mut Vec<u8>, n: usize) -> &mut [u8] {
    if buf.len() < n {
        buf.resize(n, 0);
    }
    &mut buf[..n]
}

/// Decodes one LZ4 frame that must fill `dst` exactly, block by block: no frame decoder
/// with buffers of its own to allocate, zero and copy out of for every chunk. The frame's
/// optional xxHash checksums are skipped, not checked: every decoded chunk is checked
/// against its BLAKE3 hash right after, which proves more.
fn lz4_frame_decompress_to(compressed: &[u8], dst: &mut [u8]) -> Result<()> {
    let expected_len = dst.len();
    match lz4_frame_into(compressed, dst) {
        Ok(got) if got == expected_len => Ok(()),
        Ok(got) => Err(Error::Decompress(format!(
            "lz4 frame expands to {got} bytes, header says {expected_len}"
        ))),
        Err(e) => Err(Error::Decompress(format!("lz4 frame: {e}"))),
    }
}

/// Decodes chunk after chunk into buffers it keeps: no allocation, and no zeroing of a
/// buffer about to be overwritten, per chunk (a download decodes 16,000 chunks per GiB).
#[derive(Default)]
pub struct Decompressor {
    out: Vec<u8>,
    grouped: Vec<u8>,
}

impl Decompressor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Decompresses one chunk that must expand to exactly `expected_len` bytes. An
    /// uncompressed chunk is handed back as it was stored, without a copy.
    pub fn decompress<'a>(
        &'a mut self,
        scheme: CompressionScheme,
        compressed: &'a [u8],
        expected_len: usize,
    ) -> Result<&'a [u8]> {
        if scheme == CompressionScheme::None {
            check_stored_len(compressed, expected_len)?;
            return Ok(compressed);
        }
        let dst = room(&mut self.out, expected_len);
        decompress_to(scheme, compressed, dst, &mut self.grouped)?;
        Ok(dst)
    }
}

const LZ4_MAGIC: u32 = 0x184D_2204;
const FLG_INDEPENDENT_BLOCKS: u8 = 0b0010_0000;
const FLG_BLOCK_CHECKSUMS: u8 = 0b0001_0000;
const FLG_CONTENT_SIZE: u8 = 0b0000_1000;
const FLG_CONTENT_CHECKSUM: u8 = 0b0000_0100;
const FLG_DICTIONARY_ID: u8 = 0b0000_0001;
/// LZ4's match window: a linked block refers back at most this far.
const LZ4_WINDOW: usize = 64 * 1024;

/// Decodes the frame into `dst`; returns how many bytes it holds, or why not (including
/// "more than `dst` holds").
fn lz4_frame_into(frame: &[u8], dst: &mut [u8]) -> std::result::Result<usize, String> {
    let mut at = 0usize;
    let take = |at: &mut usize, n: usize| -> std::result::Result<&[u8], String> {
        let s = frame
            .get(*at..*at + n)
            .ok_or_else(|| "truncated".to_string())?;
        *at += n;
        Ok(s)
    };
    let u32_at = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    if u32_at(take(&mut at, 4)?) != LZ4_MAGIC {
        return Err("not an LZ4 frame (magic number)".into());
    }
    let fd = take(&mut at, 2)?;
    let (flg, bd) = (fd[0], fd[1]);
    if flg >> 6 != 0b01 {
        return Err(format!("unsupported frame version {}", flg >> 6));
    }
    if flg & 0b10 != 0 || bd & 0b1000_1111 != 0 {
        return Err("reserved bits set".into());
    }
    if flg & FLG_DICTIONARY_ID != 0 {
        return Err("frames with a dictionary are not supported".into());
    }
    let max_block = match (bd >> 4) & 0b111 {
        4 => 64 << 10,
        5 => 256 << 10,
        6 => 1 << 20,
        7 => 4 << 20,
        other => return Err(format!("unsupported block size code {other}")),
    };
    let content_size = if flg & FLG_CONTENT_SIZE != 0 {
        let b = take(&mut at, 8)?;
        Some(u64::from_le_bytes([
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
        ]))
    } else {
        None
    };
    take(&mut at, 1)?; // header checksum
    let linked = flg & FLG_INDEPENDENT_BLOCKS == 0;
    let block_sums = flg & FLG_BLOCK_CHECKSUMS != 0;
    let mut pos = 0usize;
    loop {
        let word = u32_at(take(&mut at, 4)?);
        if word == 0 {
            break;
        }
        let len = (word & 0x7FFF_FFFF) as usize;
        if len > max_block {
            return Err(format!("block of {len} bytes over the frame's {max_block}"));
        }
        let block = take(&mut at, len)?;
        if block_sums {
            take(&mut at, 4)?;
        }
        let room = dst.len() - pos;
        if word & 0x8000_0000 != 0 {
            if len > room {
                return Err("expands to more bytes than the header says".into());
            }
            dst[pos..pos + len].copy_from_slice(block);
            pos += len;
            continue;
        }
        let (done, rest) = dst.split_at_mut(pos);
        let window = rest.len().min(max_block);
        let n = if linked && pos > 0 {
            let dict = &done[pos.saturating_sub(LZ4_WINDOW)..];
            lz4_flex::block::decompress_into_with_dict(block, &mut rest[..window], dict)
        } else {
            lz4_flex::block::decompress_into(block, &mut rest[..window])
        }
        .map_err(|e| {
            if room < max_block {
                format!("{e} (or expands to more bytes than the header says)")
            } else {
                e.to_string()
            }
        })?;
        pos += n;
    }
    if flg & FLG_CONTENT_CHECKSUM != 0 {
        take(&mut at, 4)?;
    }
    if content_size.is_some_and(|c| c != pos as u64) {
        return Err("content size field does not match".into());
    }
    // Like the reference's frame decoder, whatever follows the end mark is not read.
    Ok(pos)
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
    let base = out.len();
    out.resize(base + grouped.len(), 0);
    byte_ungroup_4_to(grouped, &mut out[base..]);
}

/// Inverse of [`byte_group_4`] into `dst`, which is as long as `grouped`.
fn byte_ungroup_4_to(grouped: &[u8], dst: &mut [u8]) {
    let n = grouped.len();
    debug_assert_eq!(dst.len(), n);
    let sizes = group_sizes(n);
    let (g0, rest) = grouped.split_at(sizes[0]);
    let (g1, rest) = rest.split_at(sizes[1]);
    let (g2, g3) = rest.split_at(sizes[2]);
    let full = n / 4;
    let done = interleave_4(&mut dst[..4 * full], [g0, g1, g2, g3]);
    let word = |x: &[u8]| {
        let mut w = [0u8; 8];
        w.copy_from_slice(x);
        u64::from_le_bytes(w)
    };
    // Eight bytes of each group at a time, interleaved in registers: about twice as fast as
    // a byte-by-byte loop, for what the vector loop left.
    for ((((q, a), b), c), d) in dst[4 * done..4 * full]
        .chunks_exact_mut(32)
        .zip(g0[done..].chunks_exact(8))
        .zip(g1[done..].chunks_exact(8))
        .zip(g2[done..].chunks_exact(8))
        .zip(g3[done..].chunks_exact(8))
    {
        let (a, b, c, d) = (word(a), word(b), word(c), word(d));
        for (i, out4) in q.chunks_exact_mut(4).enumerate() {
            let s = 8 * i;
            let v = ((a >> s) & 0xff)
                | ((b >> s) & 0xff) << 8
                | ((c >> s) & 0xff) << 16
                | ((d >> s) & 0xff) << 24;
            out4.copy_from_slice(&(v as u32).to_le_bytes());
        }
    }
    for i in done + (full - done) / 8 * 8..full {
        dst[4 * i..4 * i + 4].copy_from_slice(&[g0[i], g1[i], g2[i], g3[i]]);
    }
    for (k, g) in [g0, g1, g2].into_iter().take(n % 4).enumerate() {
        dst[4 * full + k] = g[full];
    }
}

/// Interleaves the first bytes of the four groups into `dst` (`dst[4i + k] = groups[k][i]`),
/// 16 bytes of each at a time in SSE2 registers; returns how many bytes of each group it
/// took (a multiple of 16; the caller does the rest). bf16 weights are all byte-grouped, so
/// this runs over most of a model's bytes: 3-4x the scalar loop's speed.
#[cfg(target_arch = "x86_64")]
fn interleave_4(dst: &mut [u8], groups: [&[u8]; 4]) -> usize {
    use std::arch::x86_64::{
        __m128i, _mm_loadu_si128, _mm_storeu_si128, _mm_unpackhi_epi8, _mm_unpackhi_epi16,
        _mm_unpacklo_epi8, _mm_unpacklo_epi16,
    };
    let [g0, g1, g2, g3] = groups;
    let n = (dst.len() / 4)
        .min(g0.len())
        .min(g1.len())
        .min(g2.len())
        .min(g3.len())
        / 16
        * 16;
    for ((((q, a), b), c), d) in dst[..4 * n]
        .chunks_exact_mut(64)
        .zip(g0.chunks_exact(16))
        .zip(g1.chunks_exact(16))
        .zip(g2.chunks_exact(16))
        .zip(g3.chunks_exact(16))
    {
        // SAFETY: SSE2 is part of every x86_64 CPU. Each load reads 16 bytes from a slice
        // `chunks_exact(16)` made exactly 16 bytes long, each store writes 16 bytes at
        // offsets 0, 16, 32 and 48 of a slice `chunks_exact_mut(64)` made exactly 64 bytes
        // long; the unaligned forms need no alignment.
        unsafe {
            let a = _mm_loadu_si128(a.as_ptr().cast::<__m128i>());
            let b = _mm_loadu_si128(b.as_ptr().cast::<__m128i>());
            let c = _mm_loadu_si128(c.as_ptr().cast::<__m128i>());
            let d = _mm_loadu_si128(d.as_ptr().cast::<__m128i>());
            // a0 b0 a1 b1 …, then a0 b0 c0 d0 a1 b1 c1 d1 …
            let ab_lo = _mm_unpacklo_epi8(a, b);
            let ab_hi = _mm_unpackhi_epi8(a, b);
            let cd_lo = _mm_unpacklo_epi8(c, d);
            let cd_hi = _mm_unpackhi_epi8(c, d);
            let out = q.as_mut_ptr().cast::<__m128i>();
            _mm_storeu_si128(out, _mm_unpacklo_epi16(ab_lo, cd_lo));
            _mm_storeu_si128(out.add(1), _mm_unpackhi_epi16(ab_lo, cd_lo));
            _mm_storeu_si128(out.add(2), _mm_unpacklo_epi16(ab_hi, cd_hi));
            _mm_storeu_si128(out.add(3), _mm_unpackhi_epi16(ab_hi, cd_hi));
        }
    }
    n
}

#[cfg(not(target_arch = "x86_64"))]
fn interleave_4(_dst: &mut [u8], _groups: [&[u8]; 4]) -> usize {
    0
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

    /// The vector, the eight-byte and the byte-at-a-time paths each take a share of these
    /// lengths; every byte must land where the spec's definition puts it.
    #[test]
    fn ungroup_matches_the_definition_at_every_length() {
        for n in 0usize..300 {
            let grouped: Vec<u8> = (0..n).map(|i| (i * 31 % 253) as u8).collect();
            let sizes = group_sizes(n);
            let mut expected = vec![0u8; n];
            let mut at = 0;
            for (k, &len) in sizes.iter().enumerate() {
                for i in 0..len {
                    expected[4 * i + k] = grouped[at + i];
                }
                at += len;
            }
            let mut out = vec![7];
            byte_ungroup_4_into(&grouped, &mut out);
            assert_eq!(out[0], 7);
            assert_eq!(&out[1..], &expected[..], "length {n}");
        }
    }

    /// Its buffers outlive each chunk: a short chunk after a long one, or one after a chunk
    /// that failed, must come out exactly as it went in.
    #[test]
    fn a_reused_decompressor_gives_each_chunk_exactly() {
        let mut d = Decompressor::new();
        let schemes = [
            CompressionScheme::ByteGrouping4Lz4,
            CompressionScheme::Lz4,
            CompressionScheme::None,
        ];
        for (i, n) in [65_537usize, 3, 70_000, 0, 1000, 131_072, 17]
            .into_iter()
            .enumerate()
        {
            let data: Vec<u8> = (0..n).map(|j| ((j * 13 + i) % 7) as u8).collect();
            for s in schemes {
                let mut c = Vec::new();
                compress_into(s, &data, &mut c).unwrap();
                assert_eq!(d.decompress(s, &c, n).unwrap(), &data[..], "{s:?} {n}");
                if s != CompressionScheme::None && n > 0 {
                    assert!(d.decompress(s, &c[..c.len() - 1], n).is_err());
                    assert!(d.decompress(s, &c, n + 1).is_err());
                }
            }
        }
    }

    #[test]
    fn round_trips() {
        for n in [0usize, 1, 2, 3, 4, 5, 31, 32, 33, 35, 36, 1000, 65_537] {
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
    fn every_frame_kind_decodes_as_lz4_flex_does() {
        use lz4_flex::frame::{BlockMode, BlockSize, FrameEncoder, FrameInfo};
        let d: Vec<u8> = (0..300_000u32)
            .map(|i| (i % 251) as u8 ^ (i / 4093) as u8)
            .collect();
        for mode in [BlockMode::Independent, BlockMode::Linked] {
            for (block_sums, content_sum, size_field) in [
                (false, false, false),
                (true, true, true),
                (false, true, false),
            ] {
                let mut info = FrameInfo::new()
                    .block_size(BlockSize::Max64KB)
                    .block_mode(mode)
                    .block_checksums(block_sums)
                    .content_checksum(content_sum);
                if size_field {
                    info = info.content_size(Some(d.len() as u64));
                }
                let mut e = FrameEncoder::with_frame_info(info, Vec::new());
                e.write_all(&d).unwrap();
                let frame = e.finish().unwrap();
                let mut out = vec![7];
                decompress_into(CompressionScheme::Lz4, &frame, d.len(), &mut out).unwrap();
                assert!(out[1..] == d[..], "{mode:?} {block_sums} {content_sum}");
                // A promise one byte short or long is refused, and nothing is left behind.
                for wrong in [d.len() - 1, d.len() + 1] {
                    let mut out = vec![7];
                    assert!(
                        decompress_into(CompressionScheme::Lz4, &frame, wrong, &mut out).is_err()
                    );
                    assert_eq!(out, vec![7]);
                }
            }
        }
        // Garbage and truncation are errors, not panics.
        let mut out = Vec::new();
        for bad in [
            &b""[..],
            b"\x04\x22\x4d\x18",
            b"\x04\x22\x4d\x18\x64\x40\xa7\xff\xff\xff\x7f",
        ] {
            assert!(decompress_into(CompressionScheme::Lz4, bad, 10, &mut out).is_err());
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
