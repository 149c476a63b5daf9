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
    hasher: gearhash::Hasher<'static>,
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
        Chunker {
            hasher: gearhash::Hasher::default(),
            len: 0,
        }
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
            self.hasher.update(&data[pos..pos + n]);
            pos += n;
            self.len += n;
        }
        if pos == data.len() {
            return None;
        }

        // Positions MIN-1 ..= MAX-2 cut on a hash match; position MAX-1 cuts unconditionally.
        let scan = ((MAX_CHUNK_SIZE - 1) - self.len).min(data.len() - pos);
        if let Some(m) = self.hasher.next_match(&data[pos..pos + scan], MASK) {
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
        self.hasher.set_hash(0);
    }
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
