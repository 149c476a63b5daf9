//! Fetching a group's byte range of a xorb from the CAS/CDN: chunks are decoded as they
//! stream in, hashed, and put through the chunk door for every term that uses them.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Mutex as AsyncMutex;
use xet::XetHash;
use xet::chunk_stream::ChunkStreamDecoder;
use xet::reconstruction::{HttpRange, Reconstruction};
use xet::remote::{CasClient, RemoteError, UrlSource};

use super::chunk_door::{ChunkDoor, Source, VerifiedChunk};
use super::error::PullError;
use super::file_ctx::FileCtx;
use super::file_plan::{Group, PlacedTerm};
use super::journal::{Checkpoint, ChunkRecord};
use super::origin_parts;
use super::swarm_origin::HeldPermit;
use crate::sync::lock;

/// Hands out the URL for a group's range, fetching a fresh reconstruction when it expired.
pub struct GroupUrl<'a> {
    pub cas: &'a CasClient,
    pub recon: &'a AsyncMutex<Arc<Reconstruction>>,
    pub file_hash: XetHash,
    /// The file bytes `recon` was asked for, if not the whole file.
    pub bytes: Option<HttpRange>,
    pub group: &'a Group,
}

impl GroupUrl<'_> {
    fn url_in(&self, r: &Reconstruction) -> Option<String> {
        r.xorbs.get(&self.group.xorb)?.iter().find_map(|f| {
            f.ranges
                .iter()
                .any(|d| d.chunks.contains(&self.group.chunks) && d.bytes == self.group.bytes)
                .then(|| f.url.clone())
        })
    }
}

impl UrlSource for GroupUrl<'_> {
    async fn url(&self, expired: Option<&str>) -> Result<String, RemoteError> {
        let mut guard = self.recon.lock().await;
        if let Some(u) = self.url_in(&guard)
            && Some(u.as_str()) != expired
        {
            return Ok(u);
        }
        if expired.is_none() {
            return Err(RemoteError::UrlExpired {
                what: format!("xorb {}", self.group.xorb),
            });
        }
        let fresh = Arc::new(match self.bytes {
            None => self.cas.reconstruction(&self.file_hash).await?,
            Some(b) => self.cas.reconstruction_of(&self.file_hash, b).await?,
        });
        *guard = fresh.clone();
        // The same bytes may be split differently now; any range holding ours will do.
        self.url_in(&fresh)
            .or_else(|| {
                fresh.xorbs.get(&self.group.xorb)?.iter().find_map(|f| {
                    f.ranges
                        .iter()
                        .any(|d| d.chunks.contains(&self.group.chunks))
                        .then(|| f.url.clone())
                })
            })
            .ok_or_else(|| RemoteError::UrlExpired {
                what: format!("xorb {} (no longer offered by the CAS)", self.group.xorb),
            })
    }
}

/// Where a group's fetch starts: a chunk of the xorb and the byte it starts at.
#[derive(Clone, Copy, Debug)]
pub struct Start {
    pub chunk: u32,
    pub byte: u64,
}

impl Start {
    pub fn of(g: &Group) -> Self {
        Start {
            chunk: g.chunks.start,
            byte: g.bytes.start,
        }
    }
}

/// Whether a group still needs fetching, and from where: the latest checkpoint at or
/// before the first chunk some term of it still lacks. Only chunks recovered from the
/// journal count; the latest checkpoint before the first gap is safe to start from.
pub fn resume_point(
    g: &Group,
    ctx: &FileCtx,
    recovered: &HashMap<u32, ChunkRecord>,
    checkpoints: &[Checkpoint],
) -> Option<Start> {
    let first_missing = g
        .terms
        .iter()
        .filter_map(|&ti| {
            let t = &ctx.terms[ti];
            (t.chunks.start..t.chunks.end)
                .find(|x| !recovered.contains_key(&(t.first_chunk + (x - t.chunks.start))))
        })
        .min()?;
    let best = checkpoints
        .iter()
        .filter(|c| {
            c.xorb == g.xorb
                && c.chunk >= g.chunks.start
                && c.chunk <= first_missing
                && c.byte_offset >= g.bytes.start
                && c.byte_offset <= g.bytes.end
        })
        .max_by_key(|c| c.chunk);
    Some(match best {
        Some(c) => Start {
            chunk: c.chunk,
            byte: c.byte_offset,
        },
        None => Start::of(g),
    })
}

/// Fetches one group's range and puts every chunk of it through the door for each term
/// that uses it, in `parts` requests at once at most (`origin_parts`). Chunks before
/// `start` must already be on disk (resume).
pub async fn fetch_group(
    ctx: &FileCtx,
    group: &Group,
    start: Start,
    parts: usize,
    permit: &mut HeldPermit,
) -> Result<(), PullError> {
    let source = GroupUrl {
        cas: &ctx.cas,
        recon: &ctx.recon,
        file_hash: ctx.hash,
        bytes: None,
        group,
    };
    stream_group(ctx, &ctx.terms, group, start, parts, &source, permit).await
}

/// Streams `group` (whose term indices point into `terms`, placed in this file) from
/// `start` to its end, through the door; `permit` is handed over as the end nears.
///
/// The range goes out as up to `parts` requests at once (`origin_parts`). The first one's
/// bytes are decoded as they come, and it alone leaves resume checkpoints; the later ones
/// are held in memory until the bytes before them are decoded. That costs up to a group's
/// wire size in memory (a xorb: 64 MiB at most), and nothing in time: the xorb proves, and
/// its chunks can go onward, only once all of it is in.
pub async fn stream_group(
    ctx: &FileCtx,
    terms: &[PlacedTerm],
    group: &Group,
    start: Start,
    parts: usize,
    source: &impl UrlSource,
    permit: &mut HeldPermit,
) -> Result<(), PullError> {
    let mut decoder = ChunkStreamDecoder::new();
    let mut next = start.chunk;
    // Per term: where its next chunk goes. A resumed fetch starts after chunks on disk.
    let mut cursors: Vec<(usize, u64)> = Vec::with_capacity(group.terms.len());
    for &ti in &group.terms {
        let t = &terms[ti];
        let mut cursor = t.offset;
        for x in t.chunks.start..start.chunk.min(t.chunks.end).max(t.chunks.start) {
            match ctx.live.get(t.first_chunk + (x - t.chunks.start)) {
                Some(p) => cursor += u64::from(p.size),
                None => {
                    return Err(PullError::integrity(
                        "resume point ahead of the verified data",
                    ));
                }
            }
        }
        cursors.push((ti, cursor));
    }
    let mut door = ChunkDoor::new(ctx, Source::Origin);
    let counters = &ctx.counters;
    let t0 = std::time::Instant::now();
    let mut decoded = 0u64;
    let range = HttpRange {
        start: start.byte,
        end: group.bytes.end,
    };
    let wire = range.len();
    let got = AtomicU64::new(0);
    let permit = std::sync::Mutex::new(permit);
    // Bytes in from any request: counted, and the swarm permit handed over near the end.
    let arrived = |n: usize| {
        counters.add_origin(n as u64);
        ctx.live.note_origin_bytes();
        let sum = got.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        lock(&permit).note(sum, wire.saturating_sub(sum));
    };
    // Bytes in range order: decoded, and every chunk put through the door.
    let mut feed = |bytes: &[u8]| -> Result<(), PullError> {
        decoder.feed(bytes, |data: &[u8]| -> Result<(), PullError> {
            let k = next;
            next += 1;
            if k >= group.chunks.end {
                return Err(PullError::integrity(format!(
                    "xorb {} sent more chunks than asked",
                    group.xorb
                )));
            }
            let chunk = VerifiedChunk::hashed(data);
            decoded += data.len() as u64;
            for (ti, cursor) in cursors.iter_mut() {
                let t = &terms[*ti];
                if k < t.chunks.start || k >= t.chunks.end {
                    continue;
                }
                if *cursor + chunk.len() as u64 > t.offset + t.len {
                    return Err(PullError::integrity(format!(
                        "xorb {} chunk {k} overruns its term",
                        group.xorb
                    )));
                }
                door.put(t.first_chunk + (k - t.chunks.start), *cursor, &chunk)?;
                *cursor += chunk.len() as u64;
            }
            Ok(())
        })?;
        if door.checkpoint_due() {
            door.flush(Some(Checkpoint {
                xorb: group.xorb,
                chunk: next,
                byte_offset: start.byte + decoder.stored_bytes_decoded(),
            }))?;
        }
        Ok(())
    };
    let pieces = origin_parts::split(range, origin_parts::count(wire, parts));
    let (first, later) = pieces.split_first().unwrap_or((&range, &[]));
    let mut decode_as_it_comes = |bytes: &[u8]| {
        arrived(bytes.len());
        feed(bytes)
    };
    let live = ctx
        .cas
        .stream_range(source, *first, &mut decode_as_it_comes);
    let held = futures_util::future::try_join_all(later.iter().map(|r| {
        let arrived = &arrived;
        async move {
            // The CAS's range lengths are not a peer's claim, but a term that says gigabytes
            // should not reserve them before a byte came.
            let mut buf = Vec::with_capacity(r.len().min(16 << 20) as usize);
            ctx.cas
                .stream_range(source, *r, &mut |bytes: &[u8]| -> Result<(), PullError> {
                    arrived(bytes.len());
                    buf.extend_from_slice(bytes);
                    Ok(())
                })
                .await?;
            Ok::<_, PullError>(buf)
        }
    }));
    let ((), held) = futures_util::future::try_join(live, held).await?;
    for bytes in held {
        feed(&bytes)?;
    }
    decoder.finish()?;
    if next != group.chunks.end {
        return Err(PullError::integrity(format!(
            "xorb {}: got chunks {}..{next}, expected up to {}",
            group.xorb, start.chunk, group.chunks.end
        )));
    }
    for (ti, cursor) in cursors {
        let t = &terms[ti];
        if cursor != t.offset + t.len {
            return Err(PullError::integrity(format!(
                "xorb {}: a term decompressed to {} bytes, the CAS said {}",
                group.xorb,
                cursor - t.offset,
                t.len
            )));
        }
    }
    door.flush(None)?;
    // One request's pace (what a seeder is judged against): the group's over its parts.
    let requests = pieces.len().max(1) as u64;
    ctx.engine
        .origin_pace
        .record(decoded / requests, t0.elapsed());
    Ok(())
}
