//! How a Xet file is laid out, from its reconstruction: terms placed at file offsets and
//! chunk indices, grouped by the fetch range that covers them (one fetch serves repeated
//! terms), and the xorbs whose chunk hashes can be checked against their xorb hash. Pure:
//! no I/O, so the planner, the fetchers and tests share one description of the file.

use std::collections::HashMap;

use xet::XetHash;
use xet::reconstruction::{ChunkRange, HttpRange, Reconstruction};

use super::error::PullError;
use crate::peer::wire::merge;

/// A term placed in the file.
#[derive(Clone, Debug)]
pub struct PlacedTerm {
    pub xorb: XetHash,
    pub chunks: ChunkRange,
    pub offset: u64,
    pub len: u64,
    /// Index of its first chunk among all the file's chunks.
    pub first_chunk: u32,
}

impl PlacedTerm {
    /// The file chunk indices this term covers.
    pub fn file_chunks(&self) -> (u32, u32) {
        (self.first_chunk, self.first_chunk + self.chunks.len())
    }
}

/// Terms fetched together from the CDN: they share one byte range of one xorb.
#[derive(Clone, Debug)]
pub struct Group {
    pub xorb: XetHash,
    pub chunks: ChunkRange,
    pub bytes: HttpRange,
    pub terms: Vec<usize>,
}

/// Places each term of the reconstruction at its file offset and first chunk index.
pub fn place_terms(recon: &Reconstruction) -> Vec<PlacedTerm> {
    let mut offset = 0u64;
    let mut first_chunk = 0u32;
    recon
        .terms
        .iter()
        .map(|t| {
            let p = PlacedTerm {
                xorb: t.hash,
                chunks: t.range,
                offset,
                len: u64::from(t.unpacked_length),
                first_chunk,
            };
            offset += u64::from(t.unpacked_length);
            first_chunk += t.range.len();
            p
        })
        .collect()
}

/// How many chunks the file has.
pub fn total_chunks(terms: &[PlacedTerm]) -> u32 {
    terms
        .last()
        .map(|t| t.first_chunk + t.chunks.len())
        .unwrap_or(0)
}

/// The xorbs a file uses, each once, in the order the file first uses them.
pub fn file_xorbs(terms: &[PlacedTerm]) -> Vec<XetHash> {
    let mut seen = std::collections::HashSet::new();
    terms
        .iter()
        .filter(|t| seen.insert(t.xorb))
        .map(|t| t.xorb)
        .collect()
}

/// File chunk ranges of the terms at these indices, sorted and merged.
pub fn term_ranges(terms: &[PlacedTerm], which: &[usize]) -> Vec<(u32, u32)> {
    merge(which.iter().map(|&t| terms[t].file_chunks()).collect())
}

/// Groups terms by the fetch range that covers them, so shared ranges are fetched once.
pub fn group_terms(recon: &Reconstruction, terms: &[PlacedTerm]) -> Result<Vec<Group>, PullError> {
    let mut index: HashMap<(XetHash, usize, usize), usize> = HashMap::new();
    let mut groups: Vec<Group> = Vec::new();
    for (ti, t) in terms.iter().enumerate() {
        let fetches = recon
            .xorbs
            .get(&t.xorb)
            .ok_or_else(|| PullError::integrity(format!("no fetch info for xorb {}", t.xorb)))?;
        let found = fetches.iter().enumerate().find_map(|(fi, f)| {
            f.ranges
                .iter()
                .enumerate()
                .find(|(_, r)| r.chunks.contains(&t.chunks))
                .map(|(ri, r)| (fi, ri, r))
        });
        let Some((fi, ri, r)) = found else {
            return Err(PullError::integrity(format!(
                "no fetch range covers a term of xorb {}",
                t.xorb
            )));
        };
        let gi = *index.entry((t.xorb, fi, ri)).or_insert_with(|| {
            groups.push(Group {
                xorb: t.xorb,
                chunks: r.chunks,
                bytes: r.bytes,
                terms: Vec::new(),
            });
            groups.len() - 1
        });
        groups[gi].terms.push(ti);
    }
    Ok(groups)
}

/// A xorb this file uses from its first chunk on: its terms here cover xorb chunks
/// `[0, len)` with no gap, so claimed hashes for them can be checked against the xorb hash.
/// (If the xorb has chunks beyond `len`, the check fails and nobody is to blame.)
pub struct XorbSpan {
    pub xorb: XetHash,
    pub len: u32,
    /// Indices into the file's terms.
    pub terms: Vec<usize>,
}

impl XorbSpan {
    /// The spans of a file's xorbs that can be checked this way, in file order.
    pub fn of(terms: &[PlacedTerm]) -> Vec<XorbSpan> {
        let mut by_xorb: HashMap<XetHash, Vec<usize>> = HashMap::new();
        for (i, t) in terms.iter().enumerate() {
            by_xorb.entry(t.xorb).or_default().push(i);
        }
        let mut spans: Vec<XorbSpan> = by_xorb
            .into_iter()
            .filter_map(|(xorb, idx)| {
                let merged = merge(
                    idx.iter()
                        .map(|&t| (terms[t].chunks.start, terms[t].chunks.end))
                        .collect(),
                );
                match merged.as_slice() {
                    [(0, len)] => Some(XorbSpan {
                        xorb,
                        len: *len,
                        terms: idx,
                    }),
                    _ => None,
                }
            })
            .collect();
        spans.sort_by_key(|s| terms[s.terms[0]].first_chunk);
        spans
    }

    /// The file chunk ranges the span's terms occupy.
    pub fn file_ranges(&self, terms: &[PlacedTerm]) -> Vec<(u32, u32)> {
        term_ranges(terms, &self.terms)
    }
}
