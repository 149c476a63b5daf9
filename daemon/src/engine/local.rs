//! The first source of a file: what this cache already holds. A whole file with the same
//! Xet hash (another repo, a cache without the shared store), or the xorb chunks of single
//! terms inside other files (another revision). Copied chunk by chunk, each chunk checked
//! against the index's manifest, so a copy that changed on disk is never trusted.

use crate::metrics::{EVENTS, VerifySource};
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use xet::XetHash;

use super::Engine;
use super::chunk_door::{ChunkDoor, Source, VerifiedChunk};
use super::error::{Kind, PullError};
use super::file_checks::{XetFileJob, check_file_hash};
use super::file_ctx::FileCtx;
use super::progress::PullCounters;
use crate::index::{Chunk, HeldFile};

/// Copies the file from a local holder if there is one; None when there is none or the
/// copy did not verify (the caller then downloads it).
pub async fn copy_held(
    engine: &Engine,
    job: &XetFileJob,
    counters: &Arc<PullCounters>,
) -> Result<Option<Vec<Chunk>>, PullError> {
    let Some(held) = engine.index.held(&job.xet_hash) else {
        return Ok(None);
    };
    if held.size() != job.size {
        return Ok(None);
    }
    let partial = job.partial.clone();
    let h = held.clone();
    let copied = tokio::task::spawn_blocking(move || -> std::io::Result<bool> {
        let mut src = File::open(&h.path)?;
        let mut dst = File::create(&partial)?;
        let mut buf = vec![0u8; xet::MAX_CHUNK_SIZE];
        for c in &h.chunks {
            let b = &mut buf[..c.size as usize];
            src.read_exact(b)?;
            if xet::hash::chunk_hash(b) != c.hash {
                return Ok(false);
            }
            dst.write_all(b)?;
        }
        dst.sync_data()?;
        Ok(true)
    })
    .await
    .map_err(|e| PullError::new(Kind::Internal, e.to_string()))?;
    match copied {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(path = %held.path.display(), "local copy changed on disk; downloading instead");
            let _ = std::fs::remove_file(&job.partial);
            return Ok(None);
        }
        Err(e) if e.kind() == std::io::ErrorKind::StorageFull => {
            let _ = std::fs::remove_file(&job.partial);
            return Err(PullError::disk("copying a local copy", &e));
        }
        Err(e) => {
            tracing::warn!(path = %held.path.display(), "cannot copy the local copy ({e}); downloading instead");
            let _ = std::fs::remove_file(&job.partial);
            return Ok(None);
        }
    }
    let pairs: Vec<_> = held
        .chunks
        .iter()
        .map(|c| (c.hash, u64::from(c.size)))
        .collect();
    check_file_hash(job, &pairs)?;
    tracing::info!(file = %job.name, from = %held.path.display(), "copied from the local cache");
    counters.bytes_done.fetch_add(job.size, Ordering::Relaxed);
    counters.add_local(job.size);
    Ok(Some(held.chunks.clone()))
}

/// Takes every term whose xorb chunks some other complete local file holds (learned from
/// that file's reconstruction) from that file: dedup across files and revisions. Each chunk
/// must hash to the holder's manifest entry; a term that does not is left to other sources.
pub async fn reuse_chunks(ctx: &Arc<FileCtx>) -> Result<(), PullError> {
    let c = ctx.clone();
    tokio::task::spawn_blocking(move || reuse_blocking(&c))
        .await
        .map_err(|e| PullError::new(Kind::Internal, e.to_string()))?
}

fn reuse_blocking(ctx: &FileCtx) -> Result<(), PullError> {
    let index = &ctx.engine.index;
    let mut opened: HashMap<XetHash, (Arc<HeldFile>, File)> = HashMap::new();
    let mut reused = 0u64;
    let mut buf = vec![0u8; xet::MAX_CHUNK_SIZE];
    for t in &ctx.terms {
        let (a, b) = t.file_chunks();
        if ctx.live.missing(a, b).is_empty() {
            continue;
        }
        let Some(loc) = index.xorb_range(&t.xorb, t.chunks.start, t.chunks.end) else {
            continue;
        };
        if loc.file == ctx.hash {
            continue;
        }
        let (held, src) = match opened.entry(loc.file) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let Some(held) = index.held(&loc.file) else {
                    continue;
                };
                let Ok(f) = File::open(&held.path) else {
                    continue;
                };
                v.insert((held, f))
            }
        };
        let first = loc.file_chunk as usize;
        let Some(chunks) = held.chunks.get(first..first + (b - a) as usize) else {
            continue;
        };
        if chunks.iter().map(|c| u64::from(c.size)).sum::<u64>() != t.len {
            continue;
        }
        let mut offset = t.offset;
        let mut door = ChunkDoor::new(ctx, Source::Local);
        for (k, c) in chunks.iter().enumerate() {
            let data = &mut buf[..c.size as usize];
            if src.read_exact_at(data, held.offsets[first + k]).is_err() {
                break;
            }
            let Some(chunk) = VerifiedChunk::matching(data, &c.hash) else {
                EVENTS.verify_failed(VerifySource::Local);
                break;
            };
            reused += door.put(a + k as u32, offset, &chunk)?;
            offset += u64::from(c.size);
        }
        door.flush(None)?;
    }
    if reused > 0 {
        tracing::info!(file = %ctx.name, bytes = reused, "reused chunks already in the cache");
    }
    Ok(())
}
