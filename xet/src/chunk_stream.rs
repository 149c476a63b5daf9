//! Decoding a chunk data region as it arrives over the network, one chunk at a time, so a
//! download never holds more than one chunk (plus one network read) in memory.

use crate::compression::Decompressor;
use crate::error::{Error, Result};
use crate::xorb::{CHUNK_HEADER_LEN, ChunkHeader};

/// Feeds on bytes in arbitrary pieces; calls back with each decompressed chunk in order.
#[derive(Default)]
pub struct ChunkStreamDecoder {
    /// A chunk split across reads: its header and the compressed bytes seen so far.
    pending: Vec<u8>,
    decompressor: Decompressor,
    chunks: u64,
    stored_bytes: u64,
}

impl ChunkStreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stored (compressed, header included) bytes of the chunks decoded so far: where the
    /// next chunk starts, relative to the first byte fed.
    pub fn stored_bytes_decoded(&self) -> u64 {
        self.stored_bytes
    }

    /// Chunks decoded so far.
    pub fn chunks_decoded(&self) -> u64 {
        self.chunks
    }

    /// Consumes `data`; `on_chunk` receives every chunk completed by it.
    pub fn feed<E>(
        &mut self,
        mut data: &[u8],
        mut on_chunk: impl FnMut(&[u8]) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E>
    where
        E: From<Error>,
    {
        while !data.is_empty() {
            if !self.pending.is_empty() || data.len() < CHUNK_HEADER_LEN {
                // Complete the split chunk first.
                let need = self.needed_for_pending()?;
                let take = need.min(data.len());
                self.pending.extend_from_slice(&data[..take]);
                data = &data[take..];
                if self.needed_for_pending()? == 0 {
                    let pending = std::mem::take(&mut self.pending);
                    self.decode_one(&pending, &mut on_chunk)?;
                    self.pending = pending;
                    self.pending.clear();
                }
                continue;
            }
            // Whole chunks straight from the input, without copying.
            let header = ChunkHeader::parse(data, usize::MAX)?;
            let len = CHUNK_HEADER_LEN + header.compressed_len as usize;
            if data.len() < len {
                self.pending.extend_from_slice(data);
                return Ok(());
            }
            self.decode_one(&data[..len], &mut on_chunk)?;
            data = &data[len..];
        }
        Ok(())
    }

    /// Errors if the input stopped inside a chunk.
    pub fn finish(&self) -> Result<()> {
        if self.pending.is_empty() {
            Ok(())
        } else {
            Err(Error::Truncated {
                what: "chunk stream",
                needed: self.needed_for_pending().unwrap_or(1) + self.pending.len(),
                available: self.pending.len(),
            })
        }
    }

    /// Bytes still missing from the pending chunk (0 when it is complete).
    fn needed_for_pending(&self) -> Result<usize> {
        if self.pending.len() < CHUNK_HEADER_LEN {
            return Ok(CHUNK_HEADER_LEN - self.pending.len());
        }
        let header = ChunkHeader::parse(&self.pending, usize::MAX)?;
        Ok(CHUNK_HEADER_LEN + header.compressed_len as usize - self.pending.len())
    }

    fn decode_one<E: From<Error>>(
        &mut self,
        stored: &[u8],
        on_chunk: &mut impl FnMut(&[u8]) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        let header = ChunkHeader::parse(stored, stored.len() - CHUNK_HEADER_LEN)?;
        let data = self.decompressor.decompress(
            header.scheme,
            &stored[CHUNK_HEADER_LEN..],
            header.uncompressed_len as usize,
        )?;
        self.chunks += 1;
        self.stored_bytes += stored.len() as u64;
        on_chunk(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xorb::{CompressionChoice, XorbBuilder, decode_chunk_region};

    #[test]
    fn any_split_decodes_like_the_whole() {
        let mut b = XorbBuilder::new(CompressionChoice::Smallest);
        let mut rng = 7u64;
        for i in 0..20 {
            let len = 1000 + i * 3001;
            let chunk: Vec<u8> = (0..len)
                .map(|j| {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    if i % 2 == 0 { (j % 7) as u8 } else { rng as u8 }
                })
                .collect();
            b.add_chunk(&chunk).unwrap();
        }
        let (_, xorb) = b.finish().unwrap();
        let (footer, data_len) = crate::xorb::XorbFooter::parse_from_xorb(&xorb).unwrap();
        let region = &xorb[..data_len];
        let mut whole = Vec::new();
        decode_chunk_region(region, &mut whole).unwrap();
        for step in [1usize, 3, 7, 8, 9, 1000, 65536, region.len()] {
            let mut d = ChunkStreamDecoder::new();
            let mut got = Vec::new();
            for piece in region.chunks(step) {
                d.feed::<Error>(piece, |c| {
                    got.extend_from_slice(c);
                    Ok(())
                })
                .unwrap();
            }
            d.finish().unwrap();
            assert_eq!(d.chunks_decoded() as usize, footer.num_chunks());
            assert!(got == whole, "step {step}");
        }
        let mut d = ChunkStreamDecoder::new();
        d.feed::<Error>(&region[..region.len() - 1], |_| Ok(()))
            .unwrap();
        assert!(d.finish().is_err());
    }
}
