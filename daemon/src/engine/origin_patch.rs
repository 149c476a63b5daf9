//! After a peer failed partway through a range, the origin is asked for only the chunks
//! still missing, not the whole range again. A signed URL covers fixed bytes of a xorb,
//! and where a chunk starts in those bytes is known only from a reconstruction: so the
//! CAS is asked for the reconstruction of just the file bytes the missing chunks hold,
//! and its fetch ranges are exactly theirs. Whether the caller may read them is again
//! the CAS's decision.

use std::sync::Arc;

use tokio::sync::Mutex as AsyncMutex;
use xet::reconstruction::{HttpRange, Reconstruction};

use super::cdn::{GroupUrl, Start, fetch_group, stream_group};
use super::error::PullError;
use super::file_ctx::FileCtx;
use super::file_plan::{Group, PlacedTerm, group_terms, place_terms};
use super::swarm_origin::HeldPermit;

/// File bytes the origin is to send again: `chunks` file chunks from `first_chunk` on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Patch {
    pub bytes: HttpRange,
    pub first_chunk: u32,
    pub chunks: u32,
}

/// Whether fetching `group` from `start` would fetch chunks already on disk again.
pub fn worth_narrowing(
    terms: &[PlacedTerm],
    group: &Group,
    start: Start,
    held: impl Fn(u32) -> bool,
) -> bool {
    group.terms.iter().any(|&ti| {
        let t = &terms[ti];
        (t.chunks.start.max(start.chunk)..t.chunks.end)
            .any(|x| held(t.first_chunk + (x - t.chunks.start)))
    })
}

/// The patches covering the group's missing chunks: per term, from its first missing chunk
/// to its last. Held chunks between them are fetched again, because where a missing chunk
/// starts in the file is known only from the sizes of the held chunks before it (or after
/// it, from the term's end). Touching patches merge. `size_of` is the size of a held chunk.
/// None if the held chunks' sizes do not fit their terms.
pub fn patches(
    terms: &[PlacedTerm],
    group: &Group,
    size_of: impl Fn(u32) -> Option<u32>,
) -> Option<Vec<Patch>> {
    let mut out: Vec<Patch> = Vec::new();
    for &ti in &group.terms {
        let t = terms.get(ti)?;
        let (f0, f1) = t.file_chunks();
        let Some(first) = (f0..f1).find(|&i| size_of(i).is_none()) else {
            continue;
        };
        let last = (f0..f1).rev().find(|&i| size_of(i).is_none())?;
        let before: u64 = (f0..first).filter_map(|i| size_of(i).map(u64::from)).sum();
        let after: u64 = (last + 1..f1)
            .filter_map(|i| size_of(i).map(u64::from))
            .sum();
        let start = t.offset + before;
        let end = (t.offset + t.len).checked_sub(after)?;
        if end <= start {
            return None;
        }
        out.push(Patch {
            bytes: HttpRange {
                start,
                end: end - 1,
            },
            first_chunk: first,
            chunks: last + 1 - first,
        });
    }
    out.sort_by_key(|p| p.first_chunk);
    out.dedup();
    let mut merged: Vec<Patch> = Vec::with_capacity(out.len());
    for p in out {
        match merged.last_mut() {
            Some(m)
                if m.first_chunk + m.chunks == p.first_chunk
                    && m.bytes.end + 1 == p.bytes.start =>
            {
                m.chunks += p.chunks;
                m.bytes.end = p.bytes.end;
            }
            _ => merged.push(p),
        }
    }
    Some(merged)
}

/// The terms of the CAS's reconstruction of `patch`, placed in the file. None unless they
/// are exactly the patch's chunks: the same chunks of the same xorbs as the file's terms
/// there, starting on a chunk boundary and adding up to the patch's bytes.
pub fn place_patch(
    recon: &Reconstruction,
    patch: &Patch,
    file_terms: &[PlacedTerm],
) -> Option<Vec<PlacedTerm>> {
    if recon.offset_into_first_range != 0 {
        return None;
    }
    let placed: Vec<PlacedTerm> = place_terms(recon)
        .into_iter()
        .map(|mut t| {
            t.offset += patch.bytes.start;
            t.first_chunk += patch.first_chunk;
            t
        })
        .collect();
    let chunks: u32 = placed.iter().map(|t| t.chunks.len()).sum();
    let bytes: u64 = placed.iter().map(|t| t.len).sum();
    if chunks != patch.chunks || bytes != patch.bytes.len() {
        return None;
    }
    let same = placed.iter().all(|t| {
        (0..t.chunks.len()).all(|j| {
            let at = t.first_chunk + j;
            let i = file_terms.partition_point(|f| f.first_chunk <= at);
            i.checked_sub(1)
                .and_then(|i| file_terms.get(i))
                .is_some_and(|f| {
                    at < f.first_chunk + f.chunks.len()
                        && f.xorb == t.xorb
                        && f.chunks.start + (at - f.first_chunk) == t.chunks.start + j
                })
        })
    });
    same.then_some(placed)
}

/// Fetches what `group` still lacks from the origin: narrowed to the missing chunks when
/// some after `start` are already on disk (a peer delivered part of it), else the range;
/// in up to `parts` requests at once (`origin_parts`).
pub async fn fetch_from_origin(
    ctx: &FileCtx,
    group: &Group,
    start: Start,
    parts: usize,
    permit: &mut HeldPermit,
) -> Result<(), PullError> {
    // Only the group's chunks are looked at: no copy of the whole chunk table per range.
    let size_of = |i: u32| ctx.live.get(i).map(|p| p.size);
    if !worth_narrowing(&ctx.terms, group, start, |i| size_of(i).is_some()) {
        return fetch_group(ctx, group, start, parts, permit).await;
    }
    let Some(list) = patches(&ctx.terms, group, size_of) else {
        tracing::warn!(file = %ctx.name, xorb = %group.xorb, "held chunks do not fit their terms: fetching the whole range");
        return fetch_group(ctx, group, Start::of(group), parts, permit).await;
    };
    for patch in list {
        let recon = ctx.cas.reconstruction_of(&ctx.hash, patch.bytes).await?;
        let Some(terms) = place_patch(&recon, &patch, &ctx.terms) else {
            tracing::warn!(file = %ctx.name, xorb = %group.xorb, "the CAS's reconstruction of the missing bytes does not fit the file: fetching the whole range");
            return fetch_group(ctx, group, Start::of(group), parts, permit).await;
        };
        tracing::debug!(file = %ctx.name, xorb = %group.xorb, chunks = patch.chunks, bytes = patch.bytes.len(), "fetching only the missing chunks from the origin");
        let groups = group_terms(&recon, &terms)?;
        let recon = AsyncMutex::new(Arc::new(recon));
        for g in &groups {
            let source = GroupUrl {
                cas: &ctx.cas,
                recon: &recon,
                file_hash: ctx.hash,
                bytes: Some(patch.bytes),
                group: g,
            };
            stream_group(ctx, &terms, g, Start::of(g), parts, &source, permit).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use xet::XetHash;
    use xet::reconstruction::{ChunkRange, RangeDescriptor, Term, XorbFetch};

    fn xorb(b: u8) -> XetHash {
        XetHash::from_bytes([b; 32])
    }

    /// One xorb of 10 chunks of 100 bytes, used by one term at file offset 0.
    fn one_term() -> (Vec<PlacedTerm>, Group) {
        let terms = vec![PlacedTerm {
            xorb: xorb(1),
            chunks: ChunkRange::new(0, 10),
            offset: 0,
            len: 1000,
            first_chunk: 0,
        }];
        let group = Group {
            xorb: xorb(1),
            chunks: ChunkRange::new(0, 10),
            bytes: HttpRange { start: 0, end: 999 },
            terms: vec![0],
        };
        (terms, group)
    }

    #[test]
    fn a_missing_tail_is_one_patch_of_just_its_bytes() {
        let (terms, group) = one_term();
        let held = |i: u32| (i < 6).then_some(100);
        assert!(worth_narrowing(&terms, &group, Start::of(&group), |i| {
            held(i).is_some()
        }));
        assert_eq!(
            patches(&terms, &group, held).unwrap(),
            vec![Patch {
                bytes: HttpRange {
                    start: 600,
                    end: 999
                },
                first_chunk: 6,
                chunks: 4
            }]
        );
    }

    #[test]
    fn holes_are_spanned_from_first_to_last_missing_chunk() {
        let (terms, group) = one_term();
        // Chunk 3 and 7 missing, 4..7 held between them.
        let held = |i: u32| (i != 3 && i != 7).then_some(100);
        assert_eq!(
            patches(&terms, &group, held).unwrap(),
            vec![Patch {
                bytes: HttpRange {
                    start: 300,
                    end: 799
                },
                first_chunk: 3,
                chunks: 5
            }]
        );
    }

    #[test]
    fn nothing_held_after_the_start_is_not_narrowed_and_nothing_missing_has_no_patch() {
        let (terms, group) = one_term();
        let resumed = Start { chunk: 4, byte: 0 };
        assert!(!worth_narrowing(&terms, &group, resumed, |i| i < 4));
        assert_eq!(patches(&terms, &group, |_| Some(100)), Some(vec![]));
        // Held sizes that overrun the term: no patch can be placed.
        assert_eq!(patches(&terms, &group, |i| (i != 5).then_some(200)), None);
    }

    #[test]
    fn touching_patches_of_neighbouring_terms_merge() {
        let terms = vec![
            PlacedTerm {
                xorb: xorb(1),
                chunks: ChunkRange::new(0, 4),
                offset: 0,
                len: 400,
                first_chunk: 0,
            },
            PlacedTerm {
                xorb: xorb(1),
                chunks: ChunkRange::new(4, 8),
                offset: 400,
                len: 400,
                first_chunk: 4,
            },
        ];
        let group = Group {
            xorb: xorb(1),
            chunks: ChunkRange::new(0, 8),
            bytes: HttpRange { start: 0, end: 799 },
            terms: vec![0, 1],
        };
        let held = |i: u32| (i < 2).then_some(100);
        assert_eq!(
            patches(&terms, &group, held).unwrap(),
            vec![Patch {
                bytes: HttpRange {
                    start: 200,
                    end: 799
                },
                first_chunk: 2,
                chunks: 6
            }]
        );
    }

    fn recon(offset: u64, terms: Vec<Term>) -> Reconstruction {
        let mut xorbs = std::collections::HashMap::new();
        xorbs.insert(
            xorb(1),
            vec![XorbFetch {
                url: "http://cas/x".into(),
                ranges: vec![RangeDescriptor {
                    chunks: ChunkRange::new(0, 10),
                    bytes: HttpRange { start: 0, end: 999 },
                }],
            }],
        );
        Reconstruction {
            offset_into_first_range: offset,
            terms,
            xorbs,
        }
    }

    #[test]
    fn the_cas_answer_must_be_exactly_the_patch() {
        let (terms, _) = one_term();
        let patch = Patch {
            bytes: HttpRange {
                start: 600,
                end: 999,
            },
            first_chunk: 6,
            chunks: 4,
        };
        let term = |a, b, len| Term {
            hash: xorb(1),
            unpacked_length: len,
            range: ChunkRange::new(a, b),
        };
        let placed = place_patch(&recon(0, vec![term(6, 10, 400)]), &patch, &terms)
            .expect("an exact answer fits");
        assert_eq!((placed[0].offset, placed[0].first_chunk), (600, 6));
        // Other chunks of the xorb, a different length, or not starting on a chunk
        // boundary: refused.
        assert!(place_patch(&recon(0, vec![term(5, 9, 400)]), &patch, &terms).is_none());
        assert!(place_patch(&recon(0, vec![term(6, 10, 399)]), &patch, &terms).is_none());
        assert!(place_patch(&recon(1, vec![term(6, 10, 400)]), &patch, &terms).is_none());
    }
}
