//! The first source of a file: another copy already in this cache (another repo, another
//! revision, a cache without the shared store). Copied chunk by chunk, each chunk checked
//! against the index's manifest, so a copy that changed on disk is never trusted.

use std::fs::File;
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::Engine;
use super::error::{Kind, PullError};
use super::progress::PullCounters;
use super::xet_file::{XetFileJob, check_file_hash, check_sha256};
use crate::index::Chunk;

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
    check_sha256(job).await?;
    tracing::info!(file = %job.name, from = %held.path.display(), "copied from the local cache");
    counters.bytes_done.fetch_add(job.size, Ordering::Relaxed);
    counters.from_local.fetch_add(job.size, Ordering::Relaxed);
    Ok(Some(held.chunks.clone()))
}
