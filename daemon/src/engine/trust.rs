//! What peers' chunks may be checked against: for each file chunk, its hash, size and
//! offset, once proven by the file's Xet hash (a whole manifest) or by the xorb hash of a
//! xorb the file uses from its first chunk. Entries are only ever added, never changed.
//! Deciding what a list of claims proves is pure; asking peers for claims is `peer_fetch`'s.

use std::collections::HashMap;
use std::sync::Mutex;

use xet::XetHash;

use super::file_plan::{PlacedTerm, XorbSpan};
use crate::sync::lock;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrustedChunk {
    pub hash: XetHash,
    pub size: u32,
    pub offset: u64,
}

pub struct Trust {
    state: Mutex<TrustState>,
}

struct TrustState {
    chunks: Vec<Option<TrustedChunk>>,
}

/// What checking a xorb's claimed chunk hashes proved.
#[derive(Debug, PartialEq, Eq)]
pub enum XorbCheck {
    /// These file chunks are proven.
    Proven(Vec<(u32, TrustedChunk)>),
    /// Some chunk has no claim yet.
    Incomplete,
    /// The claims do not hash to the xorb hash (a liar, or a xorb with chunks this file
    /// does not use); nobody can be blamed.
    Failed,
}

impl Trust {
    pub fn new(total: u32) -> Self {
        Trust {
            state: Mutex::new(TrustState {
                chunks: vec![None; total as usize],
            }),
        }
    }

    pub fn get(&self, i: u32) -> Option<TrustedChunk> {
        lock(&self.state).chunks.get(i as usize).copied().flatten()
    }

    /// Which chunks are trusted, as a bitmap.
    pub fn bitmap(&self) -> Vec<bool> {
        lock(&self.state)
            .chunks
            .iter()
            .map(Option::is_some)
            .collect()
    }

    pub fn fill(&self, entries: impl IntoIterator<Item = (u32, TrustedChunk)>) {
        let mut st = lock(&self.state);
        for (i, t) in entries {
            if let Some(slot) = st.chunks.get_mut(i as usize)
                && slot.is_none()
            {
                *slot = Some(t);
            }
        }
    }
}

/// The trusted entries a whole-file manifest gives, if it proves itself.
pub fn file_entries(
    file_hash: &XetHash,
    size: u64,
    terms: &[PlacedTerm],
    chunks: &[(XetHash, u32)],
) -> Option<Vec<(u32, TrustedChunk)>> {
    let total = super::file_plan::total_chunks(terms);
    let pairs: Vec<(XetHash, u64)> = chunks.iter().map(|(h, s)| (*h, u64::from(*s))).collect();
    if chunks.len() != total as usize || xet::merkle::file_hash(&pairs) != *file_hash {
        return None;
    }
    let mut offsets = Vec::with_capacity(chunks.len());
    let mut at = 0u64;
    for (_, s) in chunks {
        offsets.push(at);
        at += u64::from(*s);
    }
    if at != size {
        return None;
    }
    let terms_agree = terms.iter().all(|t| {
        let (a, b) = t.file_chunks();
        offsets.get(a as usize) == Some(&t.offset)
            && chunks[a as usize..b as usize]
                .iter()
                .map(|c| u64::from(c.1))
                .sum::<u64>()
                == t.len
    });
    terms_agree.then(|| {
        chunks
            .iter()
            .zip(&offsets)
            .enumerate()
            .map(|(i, ((hash, size), offset))| {
                (
                    i as u32,
                    TrustedChunk {
                        hash: *hash,
                        size: *size,
                        offset: *offset,
                    },
                )
            })
            .collect()
    })
}

/// The trusted entries of every chunk the file uses from `xorb`, given the xorb's proven
/// chunks; None if a term does not fit them (a chunk index past the xorb's end, or sizes
/// that do not add up to the term's length).
pub fn xorb_entries(
    xorb: &XetHash,
    terms: &[PlacedTerm],
    proven: &[(XetHash, u32)],
) -> Option<Vec<(u32, TrustedChunk)>> {
    let mut entries = Vec::new();
    for t in terms.iter().filter(|t| t.xorb == *xorb) {
        let mut offset = t.offset;
        for j in 0..t.chunks.len() {
            let &(hash, size) = proven.get((t.chunks.start + j) as usize)?;
            entries.push((t.first_chunk + j, TrustedChunk { hash, size, offset }));
            offset += u64::from(size);
        }
        if offset - t.offset != t.len {
            return None;
        }
    }
    Some(entries)
}

/// What the claimed hash and size of each file chunk of `span` prove: the span's chunks,
/// if the claims, in xorb order, hash to the xorb hash and add up to each term's length.
pub fn check_xorb(
    span: &XorbSpan,
    terms: &[PlacedTerm],
    claims: &HashMap<u32, (XetHash, u32)>,
) -> XorbCheck {
    let mut in_xorb: Vec<Option<(XetHash, u32)>> = vec![None; span.len as usize];
    for &ti in &span.terms {
        let t = &terms[ti];
        let mut sum = 0u64;
        for j in 0..t.chunks.len() {
            let Some(&c) = claims.get(&(t.first_chunk + j)) else {
                return XorbCheck::Incomplete;
            };
            let slot = &mut in_xorb[(t.chunks.start + j) as usize];
            if slot.is_some_and(|had| had != c) {
                return XorbCheck::Failed;
            }
            *slot = Some(c);
            sum += u64::from(c.1);
        }
        if sum != t.len {
            return XorbCheck::Failed;
        }
    }
    let Some(list) = in_xorb
        .into_iter()
        .map(|c| c.map(|(h, s)| (h, u64::from(s))))
        .collect::<Option<Vec<_>>>()
    else {
        return XorbCheck::Incomplete;
    };
    if xet::merkle::xorb_hash(&list) != span.xorb {
        return XorbCheck::Failed;
    }
    let mut entries = Vec::new();
    for &ti in &span.terms {
        let t = &terms[ti];
        let mut offset = t.offset;
        for j in 0..t.chunks.len() {
            let (hash, size) = list[(t.chunks.start + j) as usize];
            let size = size as u32;
            entries.push((t.first_chunk + j, TrustedChunk { hash, size, offset }));
            offset += u64::from(size);
        }
    }
    XorbCheck::Proven(entries)
}
