//! Content-defined chunking (Gearhash), streaming: feed buffers of any size, get boundaries.
//!
//! The chunker never holds data; it only remembers how long the current chunk is
//! and the rolling hash. Callers keep the bytes.

use crate::{MAX_CHUNK_SIZE, MIN_CHUNK_SIZE};

/// A boundary is cut where the rolling hash has its top 16 bits clear.
const MASK: u64 = 0xFFFF_0000_0000_0000;
/// The Gear hash shifts one bit per byte, so its state depends on the last 64 bytes only.
const HASH_WINDOW: usize = 64;

/// Streaming boundary finder.
///
/// Its boundaries equal the draft spec's `chunk_file` and xet-core's chunker for any
/// way the input is split into buffers.
#[derive(Clone)]
pub struct Chunker {
    /// The rolling Gear hash over the chunk in progress.
    hash: u64,
    /// Bytes already assigned to the chunk in progress.
    len: usize,
}

impl Default for Chunker {
    fn default() -> Self {
        Self::new()
    }
}

impl Chunker {
    pub fn new() -> Self {
        Chunker { hash: 0, len: 0 }
    }

    /// Bytes in the chunk in progress.
    pub fn pending(&self) -> usize {
        self.len
    }

    /// Scans `data`, which continues the stream. Returns `Some(n)` if the chunk in progress
    /// ends after `data[..n]` (the next chunk starts at `data[n]`; call again with the rest),
    /// or `None` if all of `data` belongs to the chunk in progress.
    pub fn next_boundary(&mut self, data: &[u8]) -> Option<usize> {
        let mut pos = 0;

        // Bytes more than one hash window before the first allowed cut cannot influence
        // the hash there, so they are skipped without hashing.
        let hash_from = MIN_CHUNK_SIZE - HASH_WINDOW;
        if self.len < hash_from {
            let skip = (hash_from - self.len).min(data.len());
            pos += skip;
            self.len += skip;
        }

        // Warm the hash over the window that precedes the first allowed cut.
        let check_from = MIN_CHUNK_SIZE - 1;
        if self.len < check_from && pos < data.len() {
            let n = (check_from - self.len).min(data.len() - pos);
            for &b in &data[pos..pos + n] {
                self.hash = roll(self.hash, b);
            }
            pos += n;
            self.len += n;
        }
        if pos == data.len() {
            return None;
        }

        // Positions MIN-1 ..= MAX-2 cut on a hash match; position MAX-1 cuts unconditionally.
        let scan = ((MAX_CHUNK_SIZE - 1) - self.len).min(data.len() - pos);
        if let Some(m) = next_match(&mut self.hash, &data[pos..pos + scan]) {
            self.reset();
            return Some(pos + m);
        }
        pos += scan;
        self.len += scan;
        if self.len == MAX_CHUNK_SIZE - 1 && pos < data.len() {
            self.reset();
            return Some(pos + 1);
        }
        None
    }

    /// Ends the stream: the length of the final chunk, if any bytes are pending.
    pub fn finish(&mut self) -> Option<usize> {
        let n = self.len;
        self.reset();
        (n > 0).then_some(n)
    }

    fn reset(&mut self) {
        self.len = 0;
        self.hash = 0;
    }
}

#[inline(always)]
fn roll(hash: u64, byte: u8) -> u64 {
    (hash << 1).wrapping_add(gearhash::DEFAULT_TABLE[byte as usize])
}

/// Bytes per lane in [`next_match`]'s blocks.
const STRIP: usize = 2048;
const LANES: usize = 4;

/// Rolls `hash` over `data`; returns the length of the shortest prefix after which the hash
/// has its top 16 bits clear (the hash is then left as it stands), or None (the hash is then
/// the one after all of `data`).
///
/// One rolling hash is a chain of dependent shift-adds, a byte every two cycles at best, and
/// chunking is what bounds `zestctl hash`. So each block of 4 × 2 KiB is scanned as four
/// independent lanes in step. Lanes 1-3 start from zero 64 bytes before their strip: the
/// hash shifts one bit per byte, so 64 bytes on it no longer depends on anything before, and
/// each lane is exact from its strip's first byte. The first lane that matches, at its
/// first match, is where the sequential scan would have stopped. (The gearhash crate's
/// vector scan runs 4 lanes of 256 bytes, so a quarter of its work is warming lanes up.)
fn next_match(hash: &mut u64, data: &[u8]) -> Option<usize> {
    next_match_under(hash, data, MASK)
}

/// [`next_match`] with any mask of top bits (tests use narrow ones, to match often).
#[inline(always)]
fn next_match_under(hash: &mut u64, data: &[u8], mask: u64) -> Option<usize> {
    let mut base = 0;
    while data.len() - base >= STRIP * LANES {
        let block = &data[base..base + STRIP * LANES];
        let (s0, rest) = block.split_at(STRIP);
        let (s1, rest) = rest.split_at(STRIP);
        let (s2, s3) = rest.split_at(STRIP);
        let warm = |strip_start: usize| {
            block[strip_start - HASH_WINDOW..strip_start]
                .iter()
                .fold(0u64, |h, &b| roll(h, b))
        };
        let (mut h0, mut h1, mut h2, mut h3) =
            (*hash, warm(STRIP), warm(2 * STRIP), warm(3 * STRIP));
        let mut first = [usize::MAX; LANES];
        for (i, (((&b0, &b1), &b2), &b3)) in s0.iter().zip(s1).zip(s2).zip(s3).enumerate() {
            h0 = roll(h0, b0);
            h1 = roll(h1, b1);
            h2 = roll(h2, b2);
            h3 = roll(h3, b3);
            if (h0 & mask == 0) | (h1 & mask == 0) | (h2 & mask == 0) | (h3 & mask == 0) {
                if h0 & mask == 0 {
                    return Some(base + i + 1);
                }
                for (k, h) in [h1, h2, h3].into_iter().enumerate() {
                    if h & mask == 0 && first[k + 1] == usize::MAX {
                        first[k + 1] = i;
                    }
                }
            }
        }
        if let Some(k) = (1..LANES).find(|&k| first[k] != usize::MAX) {
            return Some(base + k * STRIP + first[k] + 1);
        }
        *hash = h3;
        base += STRIP * LANES;
    }
    for (i, &b) in data[base..].iter().enumerate() {
        *hash = roll(*hash, b);
        if *hash & mask == 0 {
            return Some(base + i + 1);
        }
    }
    None
}

/// Chunk lengths of a whole in-memory buffer (convenience for tests and small data).
pub fn chunk_lengths(data: &[u8]) -> Vec<usize> {
    let mut chunker = Chunker::new();
    let mut out = Vec::new();
    let mut rest = data;
    // Each call starts at a chunk start, so a returned offset is the chunk's length.
    while let Some(n) = chunker.next_boundary(rest) {
        out.push(n);
        rest = &rest[n..];
    }
    if let Some(n) = chunker.finish() {
        out.push(n);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spec's reference algorithm, byte at a time, as an executable oracle.
    fn spec_chunks(data: &[u8]) -> Vec<usize> {
        let table = &gearhash::DEFAULT_TABLE;
        let mut h: u64 = 0;
        let mut start = 0;
        let mut out = Vec::new();
        for (i, &b) in data.iter().enumerate() {
            h = (h << 1).wrapping_add(table[b as usize]);
            let size = i - start + 1;
            if size < MIN_CHUNK_SIZE {
                continue;
            }
            if size >= MAX_CHUNK_SIZE || h & MASK == 0 {
                out.push(size);
                start = i + 1;
                h = 0;
            }
        }
        if start < data.len() {
            out.push(data.len() - start);
        }
        out
    }

    fn pseudo_random(n: usize, mut seed: u64) -> Vec<u8> {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect()
    }

    fn streamed(data: &[u8], piece: usize) -> Vec<usize> {
        let mut chunker = Chunker::new();
        let mut out = Vec::new();
        let mut carried = 0;
        for mut block in data.chunks(piece.max(1)) {
            while let Some(n) = chunker.next_boundary(block) {
                out.push(carried + n);
                carried = 0;
                block = &block[n..];
            }
            carried += block.len();
        }
        if let Some(n) = chunker.finish() {
            assert_eq!(n, carried);
            out.push(n);
        }
        out
    }

    #[test]
    fn matches_spec_on_random_data() {
        let data = pseudo_random(3 << 20, 7);
        let expected = spec_chunks(&data);
        assert!(expected.len() > 20);
        assert_eq!(chunk_lengths(&data), expected);
        for piece in [1, 63, 64, 65, 8191, 8192, 100_000, 131_072, 1 << 20] {
            assert_eq!(streamed(&data, piece), expected, "piece {piece}");
        }
    }

    /// Lanes matching in every combination: with the top 6 bits as the mask a match comes
    /// every 64 bytes or so, so blocks hold matches in one lane, several, or none.
    #[test]
    fn lanes_find_the_first_match_as_one_rolling_hash_does() {
        let table = &gearhash::DEFAULT_TABLE;
        for (seed, mask_bits) in [(1u64, 6u32), (2, 9), (3, 12), (4, 14), (5, 16)] {
            let mask = !0u64 << (64 - mask_bits);
            let data = pseudo_random(200_000, seed);
            let mut at = 0;
            let (mut h_lanes, mut h_one) = (seed.wrapping_mul(0x9e37), seed.wrapping_mul(0x9e37));
            while at < data.len() {
                let got = next_match_under(&mut h_lanes, &data[at..], mask);
                let mut want = None;
                for (i, &b) in data[at..].iter().enumerate() {
                    h_one = (h_one << 1).wrapping_add(table[b as usize]);
                    if h_one & mask == 0 {
                        want = Some(i + 1);
                        break;
                    }
                }
                assert_eq!(got, want, "seed {seed}, mask {mask_bits} bits, from {at}");
                match got {
                    Some(n) => {
                        at += n;
                        // Past a cut the hash restarts, as the chunker's does.
                        h_lanes = 0;
                        h_one = 0;
                    }
                    None => {
                        assert_eq!(h_lanes, h_one);
                        break;
                    }
                }
            }
        }
    }

    #[test]
    fn matches_spec_on_many_chunks() {
        let data = pseudo_random(40 << 20, 11);
        let expected = spec_chunks(&data);
        assert!(expected.len() > 400);
        assert_eq!(chunk_lengths(&data), expected);
        assert_eq!(streamed(&data, 1 << 20), expected);
        assert_eq!(streamed(&data, 12_345), expected);
    }

    #[test]
    fn matches_spec_on_constant_data() {
        // Constant input never matches the mask: every chunk is cut at the maximum.
        let data = vec![0u8; 1_000_000];
        let expected = spec_chunks(&data);
        assert!(
            expected[..expected.len() - 1]
                .iter()
                .all(|&n| n == MAX_CHUNK_SIZE)
        );
        assert_eq!(chunk_lengths(&data), expected);
        assert_eq!(streamed(&data, 4096), expected);
    }

    #[test]
    fn small_inputs() {
        assert!(chunk_lengths(&[]).is_empty());
        assert_eq!(chunk_lengths(&[1]), vec![1]);
        assert_eq!(chunk_lengths(&vec![5; 8191]), vec![8191]);
        for n in [8192, 8193, 131_071, 131_072, 131_073] {
            let data = pseudo_random(n, n as u64);
            assert_eq!(chunk_lengths(&data), spec_chunks(&data), "len {n}");
        }
    }
}
