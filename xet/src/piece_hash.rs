//! Hashing a file as pieces chunked and hashed in parallel, joined where their cuts agree.
//!
//! One chunker over a whole file is a chain of dependent steps, and on two cores it was what
//! bounded `zestctl hash`: one core chunked while the other hashed what it had cut. Here each
//! piece of the file is read, chunked and hashed by one task, as if a chunk began at the
//! piece's start, so every core does all three kinds of work on data still in its cache.
//!
//! Why the join is exact: the chunker's state resets at every cut, so two chunkers that cut
//! at the same offset cut at the same offsets from there on. A piece's own cuts are the
//! file's from the first offset where both cut. The join runs the file's chunker from the
//! last cut it knows until it reaches a cut of the next piece (matches are far apart beside
//! the minimum chunk size, so both soon cut at the same match), and takes the piece's chunks
//! and hashes from there. Where they never meet (long runs of data that never matches, cut
//! only at the maximum size), the join chunks that stretch itself, which is slower, never
//! wrong.

use std::io;

use rayon::prelude::*;

use crate::chunking::Chunker;
use crate::file_hash::{ChunkInfo, FileDigest};
use crate::hash::{XetHash, chunk_hash};

/// Positional reads, so that many tasks read one file without sharing a cursor.
pub trait ReadAt: Sync {
    /// Fills `buf` from `offset`; an input shorter than that is an error.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

impl ReadAt for std::fs::File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, offset).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                io::Error::new(e.kind(), "the file shrank while it was being hashed")
            } else {
                e
            }
        })
    }
}

impl ReadAt for [u8] {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).ok().filter(|&s| s <= self.len());
        match start.and_then(|s| self.get(s..s + buf.len())) {
            Some(src) => {
                buf.copy_from_slice(src);
                Ok(())
            }
            None => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past the end of the input",
            )),
        }
    }
}

/// Bytes read at a time within a piece: small enough that a block is still in the core's
/// own cache when it is hashed after being chunked.
const BLOCK: usize = 1 << 20;
/// Largest piece; more pieces than cores lets a core that is shared with other work do less.
const MAX_PIECE: u64 = 64 << 20;
/// Smallest piece worth a task of its own.
const MIN_PIECE: u64 = 4 << 20;

/// Hashes the first `len` bytes of `src`, using the rayon pool.
pub fn hash_at<R: ReadAt + ?Sized>(src: &R, len: u64) -> io::Result<FileDigest> {
    let size = piece_size(len, rayon::current_num_threads() as u64);
    hash_in_pieces(src, len, size)
}

/// How long each piece is: about four per core, within [`MIN_PIECE`, `MAX_PIECE`].
fn piece_size(len: u64, cores: u64) -> u64 {
    (len / (4 * cores.max(1))).clamp(MIN_PIECE, MAX_PIECE)
}

/// [`hash_at`] with a given piece length (tests use tiny ones, to join often).
pub fn hash_in_pieces<R: ReadAt + ?Sized>(src: &R, len: u64, piece: u64) -> io::Result<FileDigest> {
    let piece = piece.max(1);
    let starts: Vec<u64> = (0..len).step_by(piece as usize).collect();
    let pieces = starts
        .par_iter()
        .map(|&start| chunk_piece(src, start, (start + piece).min(len)))
        .collect::<io::Result<Vec<_>>>()?;
    join(src, len, &pieces).map(FileDigest::from_chunks)
}

/// What one piece's chunker found, starting fresh at the piece's start.
struct Piece {
    start: u64,
    /// Offsets (in the file) where the piece's chunker cut, in order.
    cuts: Vec<u64>,
    /// The hash of the chunk that ends at each cut.
    hashes: Vec<XetHash>,
}

impl Piece {
    /// Where the piece's last chunk ended: the bytes after it belong to a chunk that
    /// continues into the next piece.
    fn tail(&self) -> u64 {
        self.cuts.last().copied().unwrap_or(self.start)
    }

    /// Whether the piece's chunker was at a cut at `offset` (its start counts as one).
    fn cuts_at(&self, offset: u64) -> bool {
        offset == self.start || self.cuts.binary_search(&offset).is_ok()
    }

    /// The piece's chunks after `offset`, which must be one of its cuts.
    fn chunks_after(&self, offset: u64) -> impl Iterator<Item = ChunkInfo> + '_ {
        let first = self.cuts.partition_point(|&c| c <= offset);
        let mut prev = if first == 0 {
            self.start
        } else {
            self.cuts[first - 1]
        };
        self.cuts[first..]
            .iter()
            .zip(&self.hashes[first..])
            .map(move |(&cut, &hash)| {
                let size = cut - prev;
                prev = cut;
                ChunkInfo { hash, size }
            })
    }
}

/// Reads, chunks and hashes `start..end` as if a chunk began at `start`.
fn chunk_piece<R: ReadAt + ?Sized>(src: &R, start: u64, end: u64) -> io::Result<Piece> {
    // The chunk in progress never exceeds MAX_CHUNK_SIZE, so it always fits before a block.
    let mut buf = vec![0u8; BLOCK + crate::MAX_CHUNK_SIZE];
    let mut chunker = Chunker::new();
    let mut cuts = Vec::new();
    let mut hashes = Vec::new();
    // `buf[..held]` holds the file from `buf_at`; the chunk in progress starts at buf[0].
    let mut buf_at = start;
    let mut held = 0;
    let mut next = start;
    while next < end {
        let n = BLOCK.min((end - next) as usize);
        src.read_exact_at(&mut buf[held..held + n], next)?;
        let mut scanned = held;
        held += n;
        next += n as u64;
        let mut chunk_start = 0;
        while let Some(k) = chunker.next_boundary(&buf[scanned..held]) {
            let cut = scanned + k;
            hashes.push(chunk_hash(&buf[chunk_start..cut]));
            cuts.push(buf_at + cut as u64);
            chunk_start = cut;
            scanned = cut;
        }
        buf.copy_within(chunk_start..held, 0);
        held -= chunk_start;
        buf_at += chunk_start as u64;
    }
    Ok(Piece {
        start,
        cuts,
        hashes,
    })
}

/// The file's own chunking, run from a cut it is known to make.
struct Chain {
    chunker: Chunker,
    /// The file from the chunk in progress's start; `scanned` of it were given the chunker.
    buf: Vec<u8>,
    buf_at: u64,
    scanned: usize,
}

impl Chain {
    fn at(offset: u64) -> Self {
        Chain {
            chunker: Chunker::new(),
            buf: Vec::new(),
            buf_at: offset,
            scanned: 0,
        }
    }

    /// The next chunk of the file: its end and hash; None once the file is chunked.
    fn next<R: ReadAt + ?Sized>(
        &mut self,
        src: &R,
        len: u64,
    ) -> io::Result<Option<(u64, ChunkInfo)>> {
        loop {
            if let Some(k) = self.chunker.next_boundary(&self.buf[self.scanned..]) {
                let cut = self.scanned + k;
                let chunk = self.take(cut);
                return Ok(Some((self.buf_at, chunk)));
            }
            self.scanned = self.buf.len();
            let end = self.buf_at + self.buf.len() as u64;
            if end >= len {
                return Ok(self.chunker.finish().map(|n| (end, self.take(n))));
            }
            // A maximum chunk's worth is always enough to reach the next cut.
            let n = (crate::MAX_CHUNK_SIZE as u64).min(len - end) as usize;
            let held = self.buf.len();
            self.buf.resize(held + n, 0);
            src.read_exact_at(&mut self.buf[held..], end)?;
        }
    }

    /// Ends the chunk in progress after `buf[..n]` and moves past it.
    fn take(&mut self, n: usize) -> ChunkInfo {
        let chunk = ChunkInfo {
            hash: chunk_hash(&self.buf[..n]),
            size: n as u64,
        };
        self.buf.drain(..n);
        self.buf_at += n as u64;
        self.scanned = 0;
        chunk
    }
}

/// Joins pieces into the file's chunks: the file's chunker runs from each piece's last cut
/// until it cuts where the next piece did, and that piece's chunks are taken from there.
fn join<R: ReadAt + ?Sized>(src: &R, len: u64, pieces: &[Piece]) -> io::Result<Vec<ChunkInfo>> {
    let mut chunks = Vec::with_capacity(pieces.iter().map(|p| p.cuts.len()).sum::<usize>() + 1);
    // A cut of the file's own chunking: everything before it is in `chunks`.
    let mut at = 0;
    for piece in pieces {
        let mut chain = Chain::at(at);
        let mut met = piece.cuts_at(at);
        while !met && at < piece.tail() {
            let Some((cut, chunk)) = chain.next(src, len)? else {
                break;
            };
            chunks.push(chunk);
            at = cut;
            met = piece.cuts_at(at);
        }
        if met {
            chunks.extend(piece.chunks_after(at));
            at = piece.tail();
        }
    }
    // The chunk that runs to the end of the file.
    let mut chain = Chain::at(at);
    while let Some((_, chunk)) = chain.next(src, len)? {
        chunks.push(chunk);
    }
    Ok(chunks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file_hash::hash_bytes;

    fn data(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn pieces_of_any_size_join_into_the_files_chunks() {
        let d = data(3 << 20, 7);
        let whole = hash_bytes(&d);
        assert!(whole.chunks.len() > 20);
        for piece in [100, 8 << 10, 70_001, 1 << 20, 5 << 20] {
            let got = hash_in_pieces(&d[..], d.len() as u64, piece).expect("in memory");
            assert_eq!(got, whole, "pieces of {piece} bytes");
        }
    }

    /// Constant bytes never match, so the file cuts them every MAX_CHUNK_SIZE from where the
    /// run began and a piece from its own start: the two never meet inside the run, and the
    /// join has to chunk all of it itself.
    #[test]
    fn pieces_inside_a_run_that_never_matches_are_chunked_by_the_join() {
        let mut d = data(300_000, 3);
        d.extend(std::iter::repeat_n(0u8, 2 << 20));
        d.extend(data(500_000, 5));
        d.extend(std::iter::repeat_n(0u8, 300_001));
        let whole = hash_bytes(&d);
        for piece in [99_999, 1 << 20, 131_072] {
            let got = hash_in_pieces(&d[..], d.len() as u64, piece).expect("in memory");
            assert_eq!(got, whole, "pieces of {piece} bytes");
        }
    }

    #[test]
    fn empty_and_tiny_inputs() {
        for n in [0, 1, 8191, 8192, 8193, 200_000] {
            let d = data(n, 11);
            let got = hash_in_pieces(&d[..], n as u64, 4096).expect("in memory");
            assert_eq!(got, hash_bytes(&d), "{n} bytes");
        }
    }

    #[test]
    fn an_input_shorter_than_said_is_an_error() {
        let d = data(100_000, 13);
        assert!(hash_in_pieces(&d[..], 200_000, 30_000).is_err());
    }

    #[test]
    fn pieces_are_about_four_per_core_within_bounds() {
        assert_eq!(piece_size(1 << 30, 2), MAX_PIECE);
        assert_eq!(piece_size(64 << 20, 2), 8 << 20);
        assert_eq!(piece_size(1 << 20, 2), MIN_PIECE);
        assert_eq!(piece_size(1 << 30, 0), MAX_PIECE);
    }
}
