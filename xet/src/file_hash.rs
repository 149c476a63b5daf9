//! File hashing: chunk a byte stream and compute every chunk hash and the file hash.
//!
//! [`FileHasher`] is the simple streaming form (any buffer sizes, one thread).
//! [`hash_reader`] hashes any `Read` in parallel: one thread reads, one chunks, and the rayon
//! pool hashes the chunks of earlier blocks, with a bounded number of blocks in flight.
//! [`hash_path`] hashes a file on disk; a large one in pieces on every core
//! ([`crate::piece_hash`]), which needs positional reads that a `Read` does not offer.

use std::io::{self, Read};
use std::sync::mpsc;

use rayon::prelude::*;

use crate::chunking::Chunker;
use crate::hash::{DATA_KEY, XetHash, chunk_hash};
use crate::merkle::file_hash;

/// One chunk of a file: its hash and its length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkInfo {
    pub hash: XetHash,
    pub size: u64,
}

/// Everything hashing a file yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileDigest {
    pub hash: XetHash,
    pub size: u64,
    pub chunks: Vec<ChunkInfo>,
}

impl FileDigest {
    pub fn from_chunks(chunks: Vec<ChunkInfo>) -> Self {
        let pairs: Vec<(XetHash, u64)> = chunks.iter().map(|c| (c.hash, c.size)).collect();
        FileDigest {
            hash: file_hash(&pairs),
            size: chunks.iter().map(|c| c.size).sum(),
            chunks,
        }
    }
}

/// Streaming hasher: feed any buffers, one thread, bounded memory (no chunk is buffered:
/// BLAKE3 is fed incrementally).
pub struct FileHasher {
    chunker: Chunker,
    current: blake3::Hasher,
    current_len: u64,
    chunks: Vec<ChunkInfo>,
}

impl Default for FileHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl FileHasher {
    pub fn new() -> Self {
        FileHasher {
            chunker: Chunker::new(),
            current: blake3::Hasher::new_keyed(&DATA_KEY),
            current_len: 0,
            chunks: Vec::new(),
        }
    }

    pub fn update(&mut self, mut data: &[u8]) {
        while let Some(n) = self.chunker.next_boundary(data) {
            self.current.update(&data[..n]);
            self.current_len += n as u64;
            self.close_chunk();
            data = &data[n..];
        }
        self.current.update(data);
        self.current_len += data.len() as u64;
    }

    fn close_chunk(&mut self) {
        let hash = XetHash(*self.current.finalize().as_bytes());
        self.chunks.push(ChunkInfo {
            hash,
            size: self.current_len,
        });
        self.current.reset();
        self.current_len = 0;
    }

    pub fn finish(mut self) -> FileDigest {
        if self.chunker.finish().is_some() {
            self.close_chunk();
        }
        FileDigest::from_chunks(self.chunks)
    }
}

/// Read size of the fast path, and the unit of work handed to the hashing pool.
const BLOCK: usize = 8 << 20;
/// Blocks read ahead of the hashing pool; bounds memory at about (DEPTH + 2) * BLOCK.
const DEPTH: usize = 2;

/// What the chunker hands the hashers: a block as read, the chunk that ended in it after
/// starting in an earlier block (copied whole: at most one per block, ≤ 128 KiB), and the
/// chunks that lie wholly inside it.
struct Batch {
    block: Vec<u8>,
    spanning: Option<Vec<u8>>,
    /// (start, end) offsets into `block`, in order, after `spanning`.
    ranges: Vec<(usize, usize)>,
}

/// Hashes everything `reader` yields, in parallel, with bounded memory: one thread reads,
/// one chunks, the rayon pool hashes. The read's copy out of the page cache used to sit on
/// the chunker's thread, which is what bounds the whole (on 2 cores the other one hashed
/// and still had time to spare).
pub fn hash_reader<R: Read + Send>(mut reader: R) -> io::Result<FileDigest> {
    let (raw_tx, raw_rx) = mpsc::sync_channel::<Vec<u8>>(DEPTH);
    let (tx, rx) = mpsc::sync_channel::<Batch>(DEPTH);
    let (recycle_tx, recycle_rx) = mpsc::channel::<Vec<u8>>();
    let reread = recycle_tx.clone();

    let mut chunks = Vec::new();
    std::thread::scope(|scope| {
        let read = scope.spawn(move || -> io::Result<()> {
            loop {
                let mut buf = recycle_rx
                    .try_recv()
                    .unwrap_or_else(|_| Vec::with_capacity(BLOCK));
                buf.clear();
                let eof = fill(&mut reader, &mut buf, BLOCK)?;
                if !buf.is_empty() && raw_tx.send(buf).is_err() {
                    return Ok(());
                }
                if eof {
                    return Ok(());
                }
            }
        });
        let chunk = scope.spawn(move || {
            let mut chunker = Chunker::new();
            // Bytes of the chunk in progress that earlier blocks held.
            let mut carry: Vec<u8> = Vec::new();
            for block in raw_rx {
                let mut spanning = None;
                let mut ranges = Vec::with_capacity(BLOCK / crate::TARGET_CHUNK_SIZE * 2);
                let mut pos = 0;
                while let Some(n) = chunker.next_boundary(&block[pos..]) {
                    if pos == 0 && !carry.is_empty() {
                        carry.extend_from_slice(&block[..n]);
                        spanning = Some(std::mem::take(&mut carry));
                    } else {
                        ranges.push((pos, pos + n));
                    }
                    pos += n;
                }
                carry.extend_from_slice(&block[pos..]);
                if spanning.is_none() && ranges.is_empty() {
                    let _ = reread.send(block);
                    continue;
                }
                let batch = Batch {
                    block,
                    spanning,
                    ranges,
                };
                if tx.send(batch).is_err() {
                    return;
                }
            }
            // The input ended: what is left is the last chunk.
            if chunker.finish().is_some() {
                let _ = tx.send(Batch {
                    block: Vec::new(),
                    spanning: Some(carry),
                    ranges: Vec::new(),
                });
            }
        });

        for batch in rx {
            if let Some(c) = &batch.spanning {
                chunks.push(ChunkInfo {
                    hash: chunk_hash(c),
                    size: c.len() as u64,
                });
            }
            let hashed: Vec<ChunkInfo> = batch
                .ranges
                .par_iter()
                .map(|&(s, e)| ChunkInfo {
                    hash: chunk_hash(&batch.block[s..e]),
                    size: (e - s) as u64,
                })
                .collect();
            chunks.extend(hashed);
            let _ = recycle_tx.send(batch.block);
        }
        let chunked = chunk.join();
        let read = read
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("reading thread panicked")));
        if chunked.is_err() {
            return Err(io::Error::other("chunking thread panicked"));
        }
        read
    })?;

    Ok(FileDigest::from_chunks(chunks))
}

/// Reads until `buf` holds `want` more bytes or the reader ends; returns true at end of input.
/// `read_to_end` reads into the buffer's spare capacity without zeroing it first, which a
/// `resize` before each read did: 1 GiB of memset per GiB hashed, on the chunker's thread.
fn fill<R: Read>(reader: &mut R, buf: &mut Vec<u8>, want: usize) -> io::Result<bool> {
    buf.reserve(want);
    let got = reader.take(want as u64).read_to_end(buf)?;
    Ok(got < want)
}

/// Hashes a file on disk: in pieces on the rayon pool ([`crate::piece_hash`]) unless it is small.
pub fn hash_path(path: &std::path::Path) -> io::Result<FileDigest> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    if len <= BLOCK as u64 {
        // A file smaller than one block is read whole into a buffer of its own size: the
        // pipeline's block buffers (and a thread per call) would cost each of thousands of
        // small files 8 MiB of zeroed memory, and the allocator keeps what it was given.
        let mut data = Vec::with_capacity(len as usize);
        f.read_to_end(&mut data)?;
        return Ok(hash_bytes(&data));
    }
    crate::piece_hash::hash_at(&f, len)
}

/// Hashes an in-memory buffer (one thread).
pub fn hash_bytes(data: &[u8]) -> FileDigest {
    let mut h = FileHasher::new();
    h.update(data);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize) -> Vec<u8> {
        let mut x = 0x9e3779b97f4a7c15u64;
        (0..n)
            .map(|i| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                if i % 3 == 0 { 0 } else { (x >> 33) as u8 }
            })
            .collect()
    }

    #[test]
    fn a_small_file_hashes_as_its_bytes_do() {
        let dir = std::env::temp_dir().join(format!("zest-hash-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        for n in [0, 1, 8 << 10, 200_000, BLOCK] {
            let d = data(n);
            let p = dir.join(format!("{n}"));
            std::fs::write(&p, &d).expect("write");
            let got = hash_path(&p).expect("hash");
            assert_eq!(got.hash, hash_bytes(&d).hash, "{n} bytes");
            assert_eq!(
                got.hash,
                hash_reader(&d[..]).expect("stream").hash,
                "{n} bytes"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn streaming_equals_parallel_for_any_split() {
        let d = data(BLOCK * 2 + 12345);
        let whole = hash_bytes(&d);
        assert_eq!(whole.size, d.len() as u64);
        let mut h = FileHasher::new();
        for piece in d.chunks(77_777) {
            h.update(piece);
        }
        assert_eq!(h.finish(), whole);
        assert_eq!(hash_reader(&d[..]).unwrap(), whole);
        // A reader that hands out tiny reads exercises the refill loop.
        struct Dribble<'a>(&'a [u8]);
        impl Read for Dribble<'_> {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(out.len()).min(1000);
                out[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        assert_eq!(hash_reader(Dribble(&d)).unwrap(), whole);
    }

    /// Blocks that end inside a chunk, exactly at a cut, and a last block too short to hold
    /// any cut: the chunk that spans blocks is hashed whole, in its place.
    #[test]
    fn chunks_spanning_blocks_hash_in_order() {
        for n in [BLOCK * 2 + 5, BLOCK * 3, BLOCK + 1] {
            let d = data(n);
            assert_eq!(hash_reader(&d[..]).unwrap(), hash_bytes(&d), "{n} bytes");
        }
        // A block that ends exactly where a chunk does: constant bytes never match, so they
        // are cut every MAX_CHUNK_SIZE, which divides the block.
        assert_eq!(BLOCK % crate::MAX_CHUNK_SIZE, 0);
        let mut d = vec![0u8; BLOCK];
        d.extend(data(200_000));
        assert_eq!(hash_reader(&d[..]).unwrap(), hash_bytes(&d));
    }

    #[test]
    fn empty_input() {
        let d = hash_reader(&[][..]).unwrap();
        assert_eq!(d.hash, XetHash::ZERO);
        assert_eq!(d.size, 0);
        assert!(d.chunks.is_empty());
        assert_eq!(hash_bytes(&[]), d);
    }

    #[test]
    fn read_errors_surface() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk on fire"))
            }
        }
        assert!(hash_reader(Broken).is_err());
    }
}
