//! Sorted, disjoint, half-open unit ranges, kept merged as units arrive.

pub type Ranges = Vec<(u32, u32)>;

/// Adds `[a, b)`, merging with what it touches.
pub fn insert(r: &mut Ranges, a: u32, b: u32) {
    if a >= b {
        return;
    }
    let first = r.partition_point(|&(_, e)| e < a);
    let mut last = first;
    let (mut lo, mut hi) = (a, b);
    while last < r.len() && r[last].0 <= b {
        lo = lo.min(r[last].0);
        hi = hi.max(r[last].1);
        last += 1;
    }
    r.splice(first..last, [(lo, hi)]);
}

pub fn count(r: &[(u32, u32)]) -> u64 {
    r.iter().map(|&(a, b)| u64::from(b - a)).sum()
}

/// The parts of `want` not covered by `have`.
pub fn missing(have: &[(u32, u32)], want: &[(u32, u32)]) -> Ranges {
    let mut out = Vec::new();
    for &(a, b) in want {
        let mut at = a;
        for &(s, e) in have.iter().filter(|&&(s, e)| s < b && a < e) {
            if s > at {
                out.push((at, s));
            }
            at = at.max(e);
        }
        if at < b {
            out.push((at, b));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_merge_and_missing_is_the_complement() {
        let mut r = Vec::new();
        insert(&mut r, 4, 6);
        insert(&mut r, 0, 2);
        insert(&mut r, 2, 3);
        assert_eq!(r, vec![(0, 3), (4, 6)]);
        insert(&mut r, 3, 4);
        assert_eq!(r, vec![(0, 6)]);
        insert(&mut r, 8, 9);
        assert_eq!(missing(&r, &[(0, 10)]), vec![(6, 8), (9, 10)]);
        assert_eq!(count(&r), 7);
    }
}
