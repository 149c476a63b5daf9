//! What a peer holds of a file, as the planner reads it many times a second: its ranges,
//! sorted and disjoint, with the units they cover counted once when the list is made.
//!
//! Short lists are kept in the view itself, longer ones shared. Every planner pass reads
//! every view, one pass per waiting file every 150 ms, and most lists are short (in a
//! simulated crowd of 1,000 a mean of 7 ranges, p90 10-13; of 10,000, 5-6 and 9): behind a
//! pointer, each was a cache miss of its own and, in the simulator, an atomic count that
//! the list's 64 observers share. Those misses were most of what the passes cost.

use std::sync::Arc;

/// Lists up to this long live inline. With 8, a simulated 10,000-node crowd's first
/// minute ran as fast (within this machine's noise) and its second 10% slower: the shared
/// counts of the lists longer than 8 were then a third of the time views took to refresh.
const INLINE: usize = 16;

type Range = (u32, u32);

#[derive(Clone, Debug)]
enum Store {
    Inline { len: u8, ranges: [Range; INLINE] },
    Shared(Arc<[Range]>),
}

/// A peer's held ranges: sorted, disjoint (ranges may touch, as the wire has them) and
/// never changed in place, so the count beside them cannot go stale.
#[derive(Clone, Debug)]
pub struct Held {
    store: Store,
    units: u64,
}

impl Default for Held {
    fn default() -> Self {
        Held {
            store: Store::Inline {
                len: 0,
                ranges: [(0, 0); INLINE],
            },
            units: 0,
        }
    }
}

impl Held {
    /// Chunks (or, in the simulator, units) the ranges cover.
    pub fn units(&self) -> u64 {
        self.units
    }

    /// Whether both are the same list, so a view of one need not take the other: for a
    /// shared list, one pointer compared, not the lists.
    pub fn same(a: &Held, b: &Held) -> bool {
        match (&a.store, &b.store) {
            (Store::Shared(x), Store::Shared(y)) => Arc::ptr_eq(x, y),
            (Store::Inline { .. }, Store::Inline { .. }) => **a == **b,
            _ => false,
        }
    }

    /// Whether one of its ranges holds all of `[a, b)`. Their ends increase, so the only
    /// one that can hold `a` is the first that ends after it: a search, not a scan.
    pub fn covers(&self, a: u32, b: u32) -> bool {
        self.first_ending_after(a)
            .is_some_and(|&(s, e)| s <= a && b <= e)
    }

    /// Whether any of its ranges overlaps `[a, b)`.
    pub fn overlaps(&self, a: u32, b: u32) -> bool {
        self.first_ending_after(a).is_some_and(|&(s, _)| s < b)
    }

    fn first_ending_after(&self, at: u32) -> Option<&Range> {
        let i = self.partition_point(|&(_, e)| e <= at);
        self.get(i)
    }
}

impl From<Vec<Range>> for Held {
    /// Lists from the wire are sorted and disjoint already (`unflatten` checks it); any
    /// other is sorted and merged first, and empty ranges are dropped.
    fn from(mut ranges: Vec<Range>) -> Held {
        let disjoint =
            ranges.iter().all(|&(a, b)| a < b) && ranges.windows(2).all(|w| w[0].1 <= w[1].0);
        if !disjoint {
            ranges.retain(|&(a, b)| a < b);
            ranges = crate::peer::wire::merge(ranges);
        }
        let units = ranges.iter().map(|&(a, b)| u64::from(b - a)).sum();
        let store = match u8::try_from(ranges.len()) {
            Ok(len) if ranges.len() <= INLINE => {
                let mut inline = [(0, 0); INLINE];
                inline[..ranges.len()].copy_from_slice(&ranges);
                Store::Inline {
                    len,
                    ranges: inline,
                }
            }
            _ => Store::Shared(ranges.into()),
        };
        Held { store, units }
    }
}

impl std::ops::Deref for Held {
    type Target = [Range];
    fn deref(&self) -> &[Range] {
        match &self.store {
            Store::Inline { len, ranges } => &ranges[..usize::from(*len)],
            Store::Shared(r) => r,
        }
    }
}

/// The parts of `want` inside `held` (both sorted), in order.
pub fn intersect(held: &[Range], want: &[Range]) -> Vec<Range> {
    let mut out = Vec::new();
    for &(a, b) in want {
        for &(s, e) in held {
            let (x, y) = (a.max(s), b.min(e));
            if x < y {
                out.push((x, y));
            }
        }
    }
    out
}

/// What the lists (peers' held, fetching or relayed ranges) cover of a file of `total`
/// chunks together, so a question about the whole swarm is one look rather than one per
/// peer; as sorted, disjoint ranges with no two touching, whatever order the lists are in:
/// each range is marked in a bitmap of the chunks, and the bitmap read back as runs. A pass
/// asks this of its 64 peers' lists; merging them one into the next cost the merged list's
/// length at every step, where marking costs a word or two per range (profiled in a simulated 10,000-node crowd, 120 simulated seconds in: 20% of
/// the time merged, 16% marked). What lies past `total` is left out: no question is
/// asked of it, and a list cannot make the bitmap larger than the file.
pub fn union<'a>(lists: impl Iterator<Item = &'a [Range]>, total: u32) -> Vec<Range> {
    let mut bits = vec![0u64; (total as usize).div_ceil(64)];
    for &(a, b) in lists.flatten() {
        mark(&mut bits, a, b.min(total));
    }
    runs(&bits)
}

/// Sets bits `[a, b)`.
fn mark(bits: &mut [u64], a: u32, b: u32) {
    let (a, b) = (a as usize, b as usize);
    if a >= b {
        return;
    }
    let (first, last) = (a / 64, (b - 1) / 64);
    let head = u64::MAX << (a % 64);
    let tail = u64::MAX >> (63 - (b - 1) % 64);
    if first == last {
        bits[first] |= head & tail;
    } else {
        bits[first] |= head;
        bits[first + 1..last].fill(u64::MAX);
        bits[last] |= tail;
    }
}

/// The runs of set bits, as ranges.
fn runs(bits: &[u64]) -> Vec<Range> {
    let mut out = Vec::new();
    let mut open: Option<usize> = None;
    for (w, &word) in bits.iter().enumerate() {
        let mut at = 0;
        while at < 64 {
            let rest = word >> at;
            match open {
                None if rest == 0 => break,
                None => {
                    at += rest.trailing_zeros() as usize;
                    open = Some(w * 64 + at);
                }
                Some(start) => {
                    at += rest.trailing_ones() as usize;
                    if at < 64 {
                        out.push((start as u32, (w * 64 + at) as u32));
                        open = None;
                    }
                }
            }
        }
    }
    if let Some(start) = open {
        out.push((start as u32, (bits.len() * 64) as u32));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_lists_answer_alike() {
        for n in [0u32, 1, 3, 8, 9, 40] {
            let ranges: Vec<Range> = (0..n).map(|i| (10 * i, 10 * i + 5)).collect();
            let held = Held::from(ranges.clone());
            assert_eq!(&*held, &ranges[..]);
            assert_eq!(held.units(), 5 * u64::from(n));
            for at in 0..10 * n + 10 {
                for len in 1..7 {
                    let (a, b) = (at, at + len);
                    let covers = ranges.iter().any(|&(s, e)| s <= a && b <= e);
                    let overlaps = ranges.iter().any(|&(s, e)| s < b && a < e);
                    assert_eq!(held.covers(a, b), covers, "n {n} [{a}, {b})");
                    assert_eq!(held.overlaps(a, b), overlaps, "n {n} [{a}, {b})");
                }
            }
        }
    }

    #[test]
    fn unsorted_or_overlapping_lists_are_merged_and_touching_ones_kept() {
        let held = Held::from(vec![(8, 12), (0, 4), (3, 5), (6, 6)]);
        assert_eq!(&*held, &[(0, 5), (8, 12)]);
        assert_eq!(held.units(), 9);
        let touching = Held::from(vec![(0, 4), (4, 8)]);
        assert_eq!(&*touching, &[(0, 4), (4, 8)]);
        assert!(
            !touching.covers(2, 6),
            "one range is asked for, as from the wire"
        );
    }

    #[test]
    fn a_union_takes_sorted_unsorted_and_empty_lists() {
        let lists = [
            vec![(0, 2), (5, 6)],
            vec![(9, 12), (1, 3)],
            vec![],
            vec![(6, 7)],
        ];
        assert_eq!(
            union(lists.iter().map(|l| &l[..]), 20),
            vec![(0, 3), (5, 7), (9, 12)]
        );
        assert_eq!(union(std::iter::empty(), 20), Vec::<Range>::new());
    }

    /// The union, the plain way: every chunk looked at.
    fn union_by_chunk(lists: &[Vec<Range>], total: u32) -> Vec<Range> {
        let mut out: Vec<Range> = Vec::new();
        for c in 0..total {
            if lists.iter().flatten().any(|&(a, b)| a <= c && c < b) {
                match out.last_mut() {
                    Some(l) if l.1 == c => l.1 = c + 1,
                    _ => out.push((c, c + 1)),
                }
            }
        }
        out
    }

    #[test]
    fn the_union_is_every_chunk_some_list_holds_in_maximal_runs() {
        let mut seed = 7u64;
        let mut next = |n: u32| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) % u64::from(n)) as u32
        };
        for total in [0u32, 1, 63, 64, 65, 128, 200, 1000] {
            for _ in 0..50 {
                let lists: Vec<Vec<Range>> = (0..next(6))
                    .map(|_| {
                        let mut at = 0;
                        let mut l = Vec::new();
                        while at < total + 70 && next(4) != 0 {
                            let a = at + next(90);
                            let b = a + 1 + next(150);
                            l.push((a, b));
                            at = b + next(3);
                        }
                        l
                    })
                    .collect();
                assert_eq!(
                    union(lists.iter().map(|l| &l[..]), total),
                    union_by_chunk(&lists, total),
                    "total {total}: {lists:?}"
                );
            }
        }
    }

    #[test]
    fn lists_are_the_same_when_shared_or_equal_inline() {
        let long: Vec<Range> = (0..20).map(|i| (2 * i, 2 * i + 1)).collect();
        let a = Held::from(long.clone());
        assert!(Held::same(&a, &a.clone()));
        assert!(!Held::same(&a, &Held::from(long)));
        assert!(Held::same(
            &Held::from(vec![(1, 2)]),
            &Held::from(vec![(1, 2)])
        ));
        assert!(!Held::same(
            &Held::from(vec![(1, 2)]),
            &Held::from(vec![(1, 3)])
        ));
    }
}
