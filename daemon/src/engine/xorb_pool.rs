//! Chunk hashes of xorbs, pooled across every download of this node, so a xorb is proven
//! against its xorb hash as soon as the node holds all of its chunks, whichever files they
//! came for. An upload packs files one after another into xorbs, so a file's first and last
//! xorbs usually hold the neighbouring files' chunks too: alone, a file can prove those
//! chunks only by its Xet hash, once all of it is here; with its neighbours downloading
//! beside it (a snapshot), the shared xorbs are proven while it downloads.
//!
//! Only hashes of chunks this node placed enter the pool (computed from their bytes, or
//! checked against trust); a wrong one can keep a xorb from proving, never prove a wrong
//! chunk, since the xorb hash commits to every chunk hash and size.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use xet::XetHash;

use crate::sync::lock;

/// Hash and size of each chunk of a proven xorb, in xorb order.
pub type XorbChunks = Arc<Vec<(XetHash, u32)>>;

#[derive(Default)]
pub struct XorbPool {
    xorbs: Mutex<HashMap<XetHash, Pieces>>,
    /// Counts the xorbs proven: downloads look at the pool again when it moves.
    proofs: AtomicU64,
}

#[derive(Default)]
struct Pieces {
    chunks: BTreeMap<u32, (XetHash, u32)>,
    /// Length of the longest prefix last tried against the xorb hash.
    tried: u32,
    proven: Option<XorbChunks>,
    users: usize,
}

impl XorbPool {
    /// A download that uses these xorbs starts; [`Lease`] ends its interest.
    pub fn lease(self: &Arc<Self>, xorbs: impl IntoIterator<Item = XetHash>) -> Lease {
        let mut xs: Vec<XetHash> = xorbs.into_iter().collect();
        xs.sort_unstable();
        xs.dedup();
        let mut map = lock(&self.xorbs);
        for x in &xs {
            map.entry(*x).or_default().users += 1;
        }
        Lease {
            pool: self.clone(),
            xorbs: xs,
        }
    }

    /// Adds placed chunks of `xorb` (by xorb chunk index); returns the xorb's chunks if
    /// they are now proven.
    pub fn offer(
        &self,
        xorb: &XetHash,
        pieces: impl IntoIterator<Item = (u32, (XetHash, u32))>,
    ) -> Option<XorbChunks> {
        let mut map = lock(&self.xorbs);
        let p = map.get_mut(xorb)?;
        if let Some(done) = &p.proven {
            return Some(done.clone());
        }
        for (i, c) in pieces {
            // The first claim stays: a second, different one cannot both be right.
            p.chunks.entry(i).or_insert(c);
        }
        let prefix = contiguous_prefix(&p.chunks);
        if prefix <= p.tried {
            return None;
        }
        p.tried = prefix;
        let list: Vec<(XetHash, u32)> = p.chunks.values().take(prefix as usize).copied().collect();
        if proves(xorb, &list) {
            let done = Arc::new(list);
            p.chunks.clear();
            p.proven = Some(done.clone());
            self.proofs.fetch_add(1, Ordering::Relaxed);
            return Some(done);
        }
        None
    }

    /// How many xorbs were proven so far; when it moves, another download may have proven
    /// a xorb this one shares.
    pub fn proofs(&self) -> u64 {
        self.proofs.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        lock(&self.xorbs).len()
    }
}

/// Ends a download's interest in its xorbs; a xorb nobody downloads is forgotten.
pub struct Lease {
    pool: Arc<XorbPool>,
    xorbs: Vec<XetHash>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut map = lock(&self.pool.xorbs);
        for x in &self.xorbs {
            if let Some(p) = map.get_mut(x) {
                p.users -= 1;
                if p.users == 0 {
                    map.remove(x);
                }
            }
        }
    }
}

/// How many chunks from index 0 on are present without a gap.
fn contiguous_prefix(chunks: &BTreeMap<u32, (XetHash, u32)>) -> u32 {
    let mut n = 0u32;
    for &i in chunks.keys() {
        if i != n {
            break;
        }
        n += 1;
    }
    n
}

/// Whether these chunk hashes and sizes, in order, are the whole xorb.
pub fn proves(xorb: &XetHash, list: &[(XetHash, u32)]) -> bool {
    let pairs: Vec<(XetHash, u64)> = list.iter().map(|(h, s)| (*h, u64::from(*s))).collect();
    !pairs.is_empty() && xet::merkle::xorb_hash(&pairs) == *xorb
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(n: u8) -> (XetHash, u32) {
        (xet::hash::chunk_hash(&[n; 100]), 100)
    }

    fn xorb_of(chunks: &[(XetHash, u32)]) -> XetHash {
        let pairs: Vec<(XetHash, u64)> = chunks.iter().map(|(h, s)| (*h, u64::from(*s))).collect();
        xet::merkle::xorb_hash(&pairs)
    }

    #[test]
    fn two_files_halves_prove_a_shared_xorb() {
        let all: Vec<_> = (0..6).map(chunk).collect();
        let x = xorb_of(&all);
        let pool = Arc::new(XorbPool::default());
        let a = pool.lease([x]);
        let b = pool.lease([x]);
        // File A ends with the xorb's first four chunks: not enough alone.
        assert!(
            pool.offer(&x, (0..4).map(|i| (i, all[i as usize])))
                .is_none()
        );
        // File B begins with the last two: now the xorb is whole and proven.
        let proven = pool.offer(&x, (4..6).map(|i| (i, all[i as usize])));
        assert_eq!(proven.as_deref(), Some(&all));
        // Asking again answers at once.
        assert!(pool.offer(&x, []).is_some());
        drop(a);
        assert_eq!(pool.tracked(), 1);
        drop(b);
        assert_eq!(pool.tracked(), 0, "a xorb nobody downloads is forgotten");
    }

    #[test]
    fn a_wrong_chunk_never_proves() {
        let all: Vec<_> = (0..4).map(chunk).collect();
        let x = xorb_of(&all);
        let pool = Arc::new(XorbPool::default());
        let _l = pool.lease([x]);
        let mut bad = all.clone();
        bad[2] = chunk(99);
        assert!(
            pool.offer(&x, (0..4).map(|i| (i, bad[i as usize])))
                .is_none()
        );
        // The right claim for chunk 2 does not replace the first: still unproven.
        assert!(pool.offer(&x, [(2, all[2])]).is_none());
        // A size that lies is caught too.
        let y = xorb_of(&all[..2]);
        let _m = pool.lease([y]);
        assert!(pool.offer(&y, [(0, all[0]), (1, (all[1].0, 99))]).is_none());
    }

    #[test]
    fn a_gap_waits_and_an_unleased_xorb_is_ignored() {
        let all: Vec<_> = (0..3).map(chunk).collect();
        let x = xorb_of(&all);
        let pool = Arc::new(XorbPool::default());
        assert!(
            pool.offer(&x, (0..3).map(|i| (i, all[i as usize])))
                .is_none()
        );
        let _l = pool.lease([x]);
        assert!(pool.offer(&x, [(0, all[0]), (2, all[2])]).is_none());
        assert!(pool.offer(&x, [(1, all[1])]).is_some());
    }
}
