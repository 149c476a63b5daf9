//! The one door every verified chunk of a Xet download goes through, whatever its source
//! (the origin, a peer, this cache): written at its offset in the partial file, published
//! to the live table (so peers can have it at once), counted by source, and recorded for
//! resume. A chunk can only come in as a [`VerifiedChunk`], which exists only once its
//! bytes were hashed.

use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use xet::XetHash;

use super::error::PullError;
use super::file_ctx::FileCtx;
use super::journal::{Checkpoint, ChunkRecord};
use crate::peer::Placed;
use crate::sync::lock;

/// Where a chunk's bytes came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The CAS/CDN. Its wire bytes are counted where they arrive (compressed, as sent).
    Origin,
    Peer,
    /// Another file in this cache.
    Local,
}

/// Chunk bytes with the hash they were found to have.
pub struct VerifiedChunk<'a> {
    data: &'a [u8],
    hash: XetHash,
    /// The hash itself is proven by a hash from the Hub or CAS.
    proven: bool,
}

impl<'a> VerifiedChunk<'a> {
    /// Bytes from the origin: what they hash to is what they are (the file's Xet hash
    /// checks the whole at the end).
    pub fn hashed(data: &'a [u8]) -> Self {
        VerifiedChunk {
            hash: xet::hash::chunk_hash(data),
            data,
            proven: false,
        }
    }

    /// Bytes from anyone else: only if they hash to `expected`, which must itself be
    /// proven (by the file's Xet hash or a xorb hash, directly or through a verified file
    /// of this cache).
    pub fn matching(data: &'a [u8], expected: &XetHash) -> Option<Self> {
        (xet::hash::chunk_hash(data) == *expected).then_some(VerifiedChunk {
            data,
            hash: *expected,
            proven: true,
        })
    }

    pub fn hash(&self) -> XetHash {
        self.hash
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DoorError {
    #[error("writing the download: {0}")]
    Write(#[source] std::io::Error),
    #[error("writing the resume journal: {0}")]
    Journal(#[source] std::io::Error),
}

impl From<DoorError> for PullError {
    fn from(e: DoorError) -> Self {
        match &e {
            DoorError::Write(io) => PullError::disk("writing the download", io),
            DoorError::Journal(io) => PullError::disk("writing the resume journal", io),
        }
    }
}

/// Whether chunks put but not yet recorded should be recorded now: what a kill or a cancel
/// would make us fetch again is bounded in chunks, in bytes and in time, so even a slow
/// download that is stopped every few seconds keeps what it verified. (A record is a few
/// dozen bytes appended to the journal; no sync.)
pub fn checkpoint_due(chunks: usize, bytes: u64, since_last: Duration) -> bool {
    const CHUNKS: usize = 64;
    const BYTES: u64 = 1 << 20;
    const EVERY: Duration = Duration::from_secs(1);
    chunks >= CHUNKS || bytes >= BYTES || (chunks > 0 && since_last >= EVERY)
}

/// One transfer's way in: chunks it put are recorded in the journal when it flushes.
pub struct ChunkDoor<'a> {
    ctx: &'a FileCtx,
    source: Source,
    pending: Vec<ChunkRecord>,
    pending_bytes: u64,
    last_flush: Instant,
}

impl<'a> ChunkDoor<'a> {
    pub fn new(ctx: &'a FileCtx, source: Source) -> Self {
        ChunkDoor {
            ctx,
            source,
            pending: Vec::new(),
            pending_bytes: 0,
            last_flush: Instant::now(),
        }
    }

    /// Puts file chunk `index` at `offset`. A chunk already on disk (another source was
    /// first) is left as it is. Returns the bytes this call added to the file.
    pub fn put(
        &mut self,
        index: u32,
        offset: u64,
        chunk: &VerifiedChunk<'_>,
    ) -> Result<u64, DoorError> {
        let ctx = self.ctx;
        if ctx.live.has(index) {
            return Ok(0);
        }
        ctx.file
            .write_all_at(chunk.data, offset)
            .map_err(DoorError::Write)?;
        let placed = Placed {
            hash: chunk.hash,
            size: chunk.data.len() as u32,
            offset,
        };
        self.pending.push(ChunkRecord {
            index,
            size: placed.size,
            offset,
            hash: chunk.hash,
        });
        self.pending_bytes += u64::from(placed.size);
        if !ctx.live.set(index, placed) {
            return Ok(0);
        }
        if chunk.proven || ctx.trust.get(index).is_some_and(|t| t.hash == chunk.hash) {
            ctx.live.prove([(index, chunk.hash)]);
        }
        let n = u64::from(placed.size);
        count(ctx, self.source, n);
        Ok(n)
    }

    /// Whether to flush now (see [`checkpoint_due`]).
    pub fn checkpoint_due(&self) -> bool {
        checkpoint_due(
            self.pending.len(),
            self.pending_bytes,
            self.last_flush.elapsed(),
        )
    }

    /// Records the chunks put so far (and where a resumed fetch may start) in the journal.
    pub fn flush(&mut self, checkpoint: Option<Checkpoint>) -> Result<(), DoorError> {
        if self.pending.is_empty() && checkpoint.is_none() {
            return Ok(());
        }
        lock(&self.ctx.journal)
            .append(&self.pending, checkpoint.as_slice())
            .map_err(DoorError::Journal)?;
        self.pending.clear();
        self.pending_bytes = 0;
        self.last_flush = Instant::now();
        Ok(())
    }
}

/// Publishes chunks an earlier attempt wrote and the journal vouched for (their bytes were
/// hashed again): nothing to write or record, only to count as local.
pub fn restore(
    ctx_live: &crate::peer::LiveFile,
    counters: &super::PullCounters,
    placed: &[(u32, Placed)],
) -> u64 {
    let mut n = 0;
    for (index, p) in placed {
        if ctx_live.set(*index, *p) {
            n += u64::from(p.size);
        }
    }
    counters.bytes_done.fetch_add(n, Ordering::Relaxed);
    counters.add_local(n);
    n
}

fn count(ctx: &FileCtx, source: Source, n: u64) {
    let c = &ctx.counters;
    c.bytes_done.fetch_add(n, Ordering::Relaxed);
    match source {
        Source::Origin => {}
        Source::Peer => {
            c.add_peer(n);
        }
        Source::Local => {
            c.add_local(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_come_by_chunks_by_bytes_and_by_time() {
        let ms = Duration::from_millis;
        assert!(!checkpoint_due(0, 0, ms(5000)), "nothing to record");
        assert!(!checkpoint_due(10, 600 << 10, ms(200)));
        assert!(checkpoint_due(64, 64 << 10, ms(1)), "by chunks");
        assert!(checkpoint_due(12, 1 << 20, ms(1)), "by bytes");
        assert!(checkpoint_due(1, 60 << 10, ms(1000)), "by time");
    }
}
