//! The xorb format: chunk headers, the chunk data region, and the CasObjectInfo footer.
//!
//! Parsing is defensive: every length is checked against the bytes actually present
//! and against protocol limits before anything is allocated or decompressed.

use crate::compression::{CompressionScheme, compress_into, decompress_into};
use crate::error::{Error, Result};
use crate::hash::{XetHash, chunk_hash};
use crate::merkle::xorb_hash;
use crate::reader::Reader;
use crate::{MAX_CHUNK_SIZE, MAX_XORB_BYTES, MAX_XORB_CHUNKS};

pub const CHUNK_HEADER_LEN: usize = 8;
const CHUNK_HEADER_VERSION: u8 = 0;

const IDENT: &[u8; 7] = b"XETBLOB";
const IDENT_HASHES: &[u8; 7] = b"XBLBHSH";
const IDENT_BOUNDARIES: &[u8; 7] = b"XBLBBND";
const FOOTER_VERSION: u8 = 1;
const HASHES_VERSION: u8 = 0;
const BOUNDARIES_VERSION: u8 = 1;
const RESERVED_LEN: usize = 16;
/// Footer bytes that do not depend on the chunk count.
const FOOTER_FIXED_LEN: usize = 7 + 1 + 32 + (7 + 1 + 4) + (7 + 1 + 4) + 4 + 4 + 4 + RESERVED_LEN;
/// Footer bytes per chunk: a hash and two u32 offsets.
const FOOTER_PER_CHUNK: usize = 32 + 4 + 4;

/// The 8-byte header in front of each chunk's (compressed) bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkHeader {
    pub scheme: CompressionScheme,
    pub compressed_len: u32,
    pub uncompressed_len: u32,
}

impl ChunkHeader {
    /// Parses and validates a header; `remaining` is how many bytes follow it.
    pub fn parse(bytes: &[u8], remaining: usize) -> Result<Self> {
        let b: &[u8; CHUNK_HEADER_LEN] = bytes
            .get(..CHUNK_HEADER_LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or(Error::Truncated {
                what: "chunk header",
                needed: CHUNK_HEADER_LEN,
                available: bytes.len(),
            })?;
        if b[0] != CHUNK_HEADER_VERSION {
            return Err(Error::UnsupportedVersion {
                what: "chunk header",
                version: u64::from(b[0]),
            });
        }
        let compressed_len = u32::from_le_bytes([b[1], b[2], b[3], 0]);
        let scheme = CompressionScheme::try_from(b[4])?;
        let uncompressed_len = u32::from_le_bytes([b[5], b[6], b[7], 0]);
        if uncompressed_len == 0 || uncompressed_len as usize > MAX_CHUNK_SIZE {
            return Err(Error::invalid(
                "chunk header",
                format!("uncompressed size {uncompressed_len}"),
            ));
        }
        if compressed_len == 0 || compressed_len as usize > MAX_CHUNK_SIZE {
            return Err(Error::invalid(
                "chunk header",
                format!("compressed size {compressed_len}"),
            ));
        }
        if compressed_len as usize > remaining {
            return Err(Error::Truncated {
                what: "chunk data",
                needed: compressed_len as usize,
                available: remaining,
            });
        }
        Ok(ChunkHeader {
            scheme,
            compressed_len,
            uncompressed_len,
        })
    }

    pub fn to_bytes(&self) -> [u8; CHUNK_HEADER_LEN] {
        let c = self.compressed_len.to_le_bytes();
        let u = self.uncompressed_len.to_le_bytes();
        [
            CHUNK_HEADER_VERSION,
            c[0],
            c[1],
            c[2],
            self.scheme as u8,
            u[0],
            u[1],
            u[2],
        ]
    }
}

/// One chunk as stored: its header and its compressed bytes.
#[derive(Clone, Copy, Debug)]
pub struct StoredChunk<'a> {
    pub header: ChunkHeader,
    pub compressed: &'a [u8],
}

impl StoredChunk<'_> {
    /// Decompresses the chunk, appending to `out`.
    pub fn decompress_into(&self, out: &mut Vec<u8>) -> Result<()> {
        decompress_into(
            self.header.scheme,
            self.compressed,
            self.header.uncompressed_len as usize,
            out,
        )
    }

    /// Bytes the chunk occupies in a xorb, header included.
    pub fn stored_len(&self) -> usize {
        CHUNK_HEADER_LEN + self.compressed.len()
    }
}

/// Iterates the chunks of a chunk data region (a whole xorb's, or a byte range of one as
/// the CDN returns it: no footer). Yields an error and then stops on malformed input.
pub struct ChunkIter<'a> {
    rest: &'a [u8],
    failed: bool,
}

pub fn chunks(data: &[u8]) -> ChunkIter<'_> {
    ChunkIter {
        rest: data,
        failed: false,
    }
}

impl<'a> Iterator for ChunkIter<'a> {
    type Item = Result<StoredChunk<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() || self.failed {
            return None;
        }
        let remaining = self.rest.len().saturating_sub(CHUNK_HEADER_LEN);
        match ChunkHeader::parse(self.rest, remaining) {
            Ok(header) => {
                let end = CHUNK_HEADER_LEN + header.compressed_len as usize;
                let compressed = &self.rest[CHUNK_HEADER_LEN..end];
                self.rest = &self.rest[end..];
                Some(Ok(StoredChunk { header, compressed }))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Decompresses a whole chunk data region into `out`; returns each chunk's length.
pub fn decode_chunk_region(data: &[u8], out: &mut Vec<u8>) -> Result<Vec<usize>> {
    let mut lens = Vec::new();
    for chunk in chunks(data) {
        let chunk = chunk?;
        chunk.decompress_into(out)?;
        lens.push(chunk.header.uncompressed_len as usize);
    }
    Ok(lens)
}

/// The CasObjectInfo footer (format version 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XorbFooter {
    pub xorb_hash: XetHash,
    pub chunk_hashes: Vec<XetHash>,
    /// End offset of each chunk in the chunk data region, headers included.
    pub chunk_boundary_offsets: Vec<u32>,
    /// End offset of each chunk in the concatenated uncompressed data.
    pub unpacked_chunk_offsets: Vec<u32>,
}

impl XorbFooter {
    pub fn num_chunks(&self) -> usize {
        self.chunk_hashes.len()
    }

    pub fn serialized_len(&self) -> usize {
        FOOTER_FIXED_LEN + FOOTER_PER_CHUNK * self.num_chunks()
    }

    /// Writes the footer followed by its 4-byte length.
    pub fn write_to(&self, out: &mut Vec<u8>) -> Result<()> {
        let n = self.num_chunks();
        if self.chunk_boundary_offsets.len() != n || self.unpacked_chunk_offsets.len() != n {
            return Err(Error::invalid("xorb footer", "section lengths disagree"));
        }
        let n32 = u32::try_from(n).map_err(|_| Error::invalid("xorb footer", "too many chunks"))?;
        let start = out.len();
        out.extend_from_slice(IDENT);
        out.push(FOOTER_VERSION);
        out.extend_from_slice(self.xorb_hash.as_bytes());

        out.extend_from_slice(IDENT_HASHES);
        out.push(HASHES_VERSION);
        out.extend_from_slice(&n32.to_le_bytes());
        for h in &self.chunk_hashes {
            out.extend_from_slice(h.as_bytes());
        }

        out.extend_from_slice(IDENT_BOUNDARIES);
        out.push(BOUNDARIES_VERSION);
        out.extend_from_slice(&n32.to_le_bytes());
        for v in self
            .chunk_boundary_offsets
            .iter()
            .chain(&self.unpacked_chunk_offsets)
        {
            out.extend_from_slice(&v.to_le_bytes());
        }

        let boundary_from_end = (7 + 1 + 4 + 8 * n + 12 + RESERVED_LEN) as u32;
        let hashes_from_end = (7 + 1 + 4 + 32 * n) as u32 + boundary_from_end;
        out.extend_from_slice(&n32.to_le_bytes());
        out.extend_from_slice(&hashes_from_end.to_le_bytes());
        out.extend_from_slice(&boundary_from_end.to_le_bytes());
        out.extend_from_slice(&[0u8; RESERVED_LEN]);
        let info_len = (out.len() - start) as u32;
        out.extend_from_slice(&info_len.to_le_bytes());
        Ok(())
    }

    /// Parses the footer at the end of a serialized xorb; returns it and the length of
    /// the chunk data region in front of it.
    pub fn parse_from_xorb(xorb: &[u8]) -> Result<(XorbFooter, usize)> {
        let total = xorb.len();
        if total < 4 {
            return Err(Error::Truncated {
                what: "xorb",
                needed: 4,
                available: total,
            });
        }
        let info_len = Reader {
            buf: xorb,
            pos: total - 4,
        }
        .u32()? as usize;
        if info_len < FOOTER_FIXED_LEN || info_len > total - 4 {
            return Err(Error::invalid(
                "xorb footer",
                format!("length {info_len} in a {total}-byte xorb"),
            ));
        }
        let footer_start = total - 4 - info_len;
        let f = &xorb[footer_start..total - 4];
        let mut r = Reader { buf: f, pos: 0 };
        if r.take(7)? != IDENT {
            return Err(Error::BadMagic("xorb footer"));
        }
        let version = r.u8()?;
        if version != FOOTER_VERSION {
            return Err(Error::UnsupportedVersion {
                what: "xorb footer",
                version: u64::from(version),
            });
        }
        let xorb_hash = r.hash()?;
        if r.take(7)? != IDENT_HASHES {
            return Err(Error::BadMagic("xorb hash section"));
        }
        let hv = r.u8()?;
        if hv != HASHES_VERSION {
            return Err(Error::UnsupportedVersion {
                what: "xorb hash section",
                version: u64::from(hv),
            });
        }
        let n = r.u32()? as usize;
        // The chunk count must fit the footer length exactly; checking first means a
        // hostile count cannot drive the allocations below.
        if n > MAX_XORB_CHUNKS || info_len != FOOTER_FIXED_LEN + FOOTER_PER_CHUNK * n {
            return Err(Error::invalid(
                "xorb footer",
                format!("{n} chunks in a {info_len}-byte footer"),
            ));
        }
        let chunk_hashes = (0..n).map(|_| r.hash()).collect::<Result<Vec<_>>>()?;
        if r.take(7)? != IDENT_BOUNDARIES {
            return Err(Error::BadMagic("xorb boundary section"));
        }
        let bv = r.u8()?;
        if bv != BOUNDARIES_VERSION {
            return Err(Error::UnsupportedVersion {
                what: "xorb boundary section",
                version: u64::from(bv),
            });
        }
        if r.u32()? as usize != n {
            return Err(Error::invalid(
                "xorb footer",
                "boundary section chunk count differs",
            ));
        }
        let chunk_boundary_offsets = (0..n).map(|_| r.u32()).collect::<Result<Vec<_>>>()?;
        let unpacked_chunk_offsets = (0..n).map(|_| r.u32()).collect::<Result<Vec<_>>>()?;
        if r.u32()? as usize != n {
            return Err(Error::invalid("xorb footer", "trailer chunk count differs"));
        }
        let hashes_from_end = r.u32()? as usize;
        let boundary_from_end = r.u32()? as usize;
        // The reserved bytes may carry an upload nonce; readers ignore them.
        r.take(RESERVED_LEN)?;
        if boundary_from_end != 7 + 1 + 4 + 8 * n + 12 + RESERVED_LEN
            || hashes_from_end != boundary_from_end + 7 + 1 + 4 + 32 * n
        {
            return Err(Error::invalid(
                "xorb footer",
                "section offsets do not match the layout",
            ));
        }
        let footer = XorbFooter {
            xorb_hash,
            chunk_hashes,
            chunk_boundary_offsets,
            unpacked_chunk_offsets,
        };
        footer.check_monotonic(footer_start)?;
        Ok((footer, footer_start))
    }

    fn check_monotonic(&self, region_len: usize) -> Result<()> {
        let mut prev = 0u32;
        for &b in &self.chunk_boundary_offsets {
            if b <= prev {
                return Err(Error::invalid(
                    "xorb footer",
                    "chunk boundaries not increasing",
                ));
            }
            prev = b;
        }
        if prev as usize != region_len {
            return Err(Error::invalid(
                "xorb footer",
                format!("chunks end at {prev} but the data region is {region_len} bytes"),
            ));
        }
        let mut prev = 0u32;
        for &u in &self.unpacked_chunk_offsets {
            if u <= prev || (u - prev) as usize > MAX_CHUNK_SIZE {
                return Err(Error::invalid("xorb footer", "bad unpacked chunk offsets"));
            }
            prev = u;
        }
        Ok(())
    }

    /// Byte range `[start, end)` of chunks `[first, last)` in the chunk data region.
    pub fn chunk_byte_range(&self, first: usize, last: usize) -> Option<(u32, u32)> {
        if first >= last || last > self.num_chunks() {
            return None;
        }
        let start = if first == 0 {
            0
        } else {
            self.chunk_boundary_offsets[first - 1]
        };
        Some((start, self.chunk_boundary_offsets[last - 1]))
    }

    /// Uncompressed length of chunk `i`.
    pub fn chunk_len(&self, i: usize) -> Option<u32> {
        let end = *self.unpacked_chunk_offsets.get(i)?;
        let start = if i == 0 {
            0
        } else {
            self.unpacked_chunk_offsets[i - 1]
        };
        Some(end - start)
    }
}

/// A parsed, fully verified xorb.
#[derive(Debug)]
pub struct Xorb<'a> {
    pub footer: XorbFooter,
    /// The chunk data region (headers and compressed bytes).
    pub data: &'a [u8],
}

impl<'a> Xorb<'a> {
    /// Parses a serialized xorb and checks it completely: chunk headers against the footer's
    /// offsets, every chunk's hash against the footer, and the footer's xorb hash against
    /// the chunk hashes.
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        if bytes.len()
            > MAX_XORB_BYTES + (FOOTER_FIXED_LEN + FOOTER_PER_CHUNK * MAX_XORB_CHUNKS) + 4
        {
            return Err(Error::invalid(
                "xorb",
                format!("{} bytes exceeds the xorb size limit", bytes.len()),
            ));
        }
        let (footer, region_len) = XorbFooter::parse_from_xorb(bytes)?;
        let data = &bytes[..region_len];
        let mut offset = 0usize;
        let mut unpacked = 0u32;
        let mut scratch = Vec::with_capacity(MAX_CHUNK_SIZE);
        let mut pairs = Vec::with_capacity(footer.num_chunks());
        let mut iter = chunks(data);
        for i in 0..footer.num_chunks() {
            let chunk = iter.next().ok_or_else(|| {
                Error::invalid("xorb", format!("data region ends before chunk {i}"))
            })??;
            offset += chunk.stored_len();
            unpacked += chunk.header.uncompressed_len;
            if footer.chunk_boundary_offsets[i] as usize != offset
                || footer.unpacked_chunk_offsets[i] != unpacked
            {
                return Err(Error::invalid(
                    "xorb",
                    format!("chunk {i} disagrees with the footer offsets"),
                ));
            }
            scratch.clear();
            chunk.decompress_into(&mut scratch)?;
            let actual = chunk_hash(&scratch);
            if actual != footer.chunk_hashes[i] {
                return Err(Error::ChunkHashMismatch {
                    index: i,
                    expected: footer.chunk_hashes[i],
                    actual,
                });
            }
            pairs.push((actual, scratch.len() as u64));
        }
        let actual = xorb_hash(&pairs);
        if actual != footer.xorb_hash {
            return Err(Error::XorbHashMismatch {
                expected: footer.xorb_hash,
                actual,
            });
        }
        Ok(Xorb { footer, data })
    }

    pub fn chunks(&self) -> ChunkIter<'a> {
        chunks(self.data)
    }

    /// Decompressed bytes of chunks `[first, last)`.
    pub fn extract(&self, first: usize, last: usize) -> Result<Vec<u8>> {
        let (s, e) = self.footer.chunk_byte_range(first, last).ok_or_else(|| {
            Error::invalid(
                "chunk range",
                format!("{first}..{last} of {}", self.footer.num_chunks()),
            )
        })?;
        let mut out = Vec::new();
        decode_chunk_region(&self.data[s as usize..e as usize], &mut out)?;
        Ok(out)
    }
}

/// How the builder picks each chunk's compression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompressionChoice {
    /// Use this scheme (falling back to None where it does not shrink the chunk).
    Fixed(CompressionScheme),
    /// Try LZ4 and byte-grouped LZ4 and keep the smallest.
    Smallest,
}

/// Builds a serialized xorb from chunk data.
pub struct XorbBuilder {
    choice: CompressionChoice,
    data: Vec<u8>,
    hashes: Vec<(XetHash, u64)>,
    boundaries: Vec<u32>,
    unpacked: Vec<u32>,
}

impl XorbBuilder {
    pub fn new(choice: CompressionChoice) -> Self {
        XorbBuilder {
            choice,
            data: Vec::new(),
            hashes: Vec::new(),
            boundaries: Vec::new(),
            unpacked: Vec::new(),
        }
    }

    pub fn num_chunks(&self) -> usize {
        self.hashes.len()
    }

    /// Adds one chunk. Fails, leaving the builder unchanged, if the chunk is empty or too
    /// large, or if the xorb would pass its chunk-count or byte limits.
    pub fn add_chunk(&mut self, chunk: &[u8]) -> Result<XetHash> {
        if chunk.is_empty() || chunk.len() > MAX_CHUNK_SIZE {
            return Err(Error::invalid("chunk", format!("{} bytes", chunk.len())));
        }
        if self.hashes.len() >= MAX_XORB_CHUNKS {
            return Err(Error::invalid("xorb", "chunk count limit reached"));
        }
        let (scheme, compressed) = self.compress(chunk)?;
        let stored = CHUNK_HEADER_LEN + compressed.len();
        let footer_after = FOOTER_FIXED_LEN + FOOTER_PER_CHUNK * (self.hashes.len() + 1) + 4;
        if self.data.len() + stored + footer_after > MAX_XORB_BYTES {
            return Err(Error::invalid("xorb", "size limit reached"));
        }
        let header = ChunkHeader {
            scheme,
            compressed_len: compressed.len() as u32,
            uncompressed_len: chunk.len() as u32,
        };
        self.data.extend_from_slice(&header.to_bytes());
        self.data.extend_from_slice(&compressed);
        let hash = chunk_hash(chunk);
        self.hashes.push((hash, chunk.len() as u64));
        self.boundaries.push(self.data.len() as u32);
        let prev = self.unpacked.last().copied().unwrap_or(0);
        self.unpacked.push(prev + chunk.len() as u32);
        Ok(hash)
    }

    fn compress(&self, chunk: &[u8]) -> Result<(CompressionScheme, Vec<u8>)> {
        let candidates = match self.choice {
            CompressionChoice::Fixed(s) => vec![s],
            CompressionChoice::Smallest => {
                vec![CompressionScheme::Lz4, CompressionScheme::ByteGrouping4Lz4]
            }
        };
        // Like xet-core: a chunk that does not shrink is stored uncompressed.
        let mut best = (CompressionScheme::None, chunk.to_vec());
        for scheme in candidates {
            if scheme == CompressionScheme::None {
                continue;
            }
            let mut out = Vec::with_capacity(chunk.len());
            compress_into(scheme, chunk, &mut out)?;
            if out.len() < best.1.len() {
                best = (scheme, out);
            }
        }
        Ok(best)
    }

    pub fn xorb_hash(&self) -> XetHash {
        xorb_hash(&self.hashes)
    }

    /// Serializes the xorb (chunk data, footer, footer length); returns it and its hash.
    pub fn finish(self) -> Result<(XetHash, Vec<u8>)> {
        let hash = xorb_hash(&self.hashes);
        let footer = XorbFooter {
            xorb_hash: hash,
            chunk_hashes: self.hashes.iter().map(|(h, _)| *h).collect(),
            chunk_boundary_offsets: self.boundaries,
            unpacked_chunk_offsets: self.unpacked,
        };
        let mut out = self.data;
        footer.write_to(&mut out)?;
        Ok((hash, out))
    }
}
