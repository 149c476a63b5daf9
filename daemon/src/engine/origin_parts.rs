//! How an origin range is cut into requests sent at once. A xorb from the origin can be
//! traded onward only once it is whole (its hash is proven by all of its chunks, `trust`),
//! so a node's origin connections should finish xorbs one after another. Each range taking
//! one connection, a node alone with 24 of them fetched 24 xorbs side by side and held none
//! for most of a one-copy time, while the nodes arriving after it had nothing to take from
//! it. Cut into parts of [`PART_BYTES`], the same connections work on three xorbs at a
//! time, and one becomes tradeable every few seconds.
//!
//! The cost is resume progress: only the first part is decoded as it comes (the bytes of
//! a later one can be placed only once the ones before it are parsed), so a kill loses
//! what the later parts of the ranges in flight had brought. So a range is cut only where
//! that buys something: when the node can trade (it has peers, or finds them), and not
//! when it resumes (a node killed in a loop would lose the same parts every time).

use xet::reconstruction::HttpRange;

/// Bytes per request, about: a request's round trip is small beside this at any link rate
/// the fleet is built for, and a 64 MiB xorb takes seven or eight.
pub const PART_BYTES: u64 = 8 << 20;

/// How many requests fetch a range of `len` bytes: [`count`]'s, if the node `trades`
/// (it has peers, or finds them) and the range is fetched from its start, else one.
pub fn requests(len: u64, connections: usize, trades: bool, from_start: bool) -> usize {
    if trades && from_start {
        count(len, connections)
    } else {
        1
    }
}

/// How many requests fetch `len` bytes: one per [`PART_BYTES`] begun, at most
/// `connections` (the node's origin connections) and at least one.
pub fn count(len: u64, connections: usize) -> usize {
    let by_size = usize::try_from(len.div_ceil(PART_BYTES)).unwrap_or(usize::MAX);
    by_size.clamp(1, connections.max(1))
}

/// `range` cut into `parts` consecutive ranges of equal length (the first ones a byte
/// longer where it does not divide), in order; fewer when it has fewer bytes than that.
pub fn split(range: HttpRange, parts: usize) -> Vec<HttpRange> {
    let len = range.len();
    let parts = (parts.max(1) as u64).min(len);
    let (each, extra) = (len / parts, len % parts);
    let mut out = Vec::with_capacity(parts as usize);
    let mut start = range.start;
    for k in 0..parts {
        let n = each + u64::from(k < extra);
        out.push(HttpRange {
            start,
            end: start + n - 1,
        });
        start += n;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_xorb_takes_a_part_per_eight_mib_within_the_connections() {
        assert_eq!(count(1, 24), 1);
        assert_eq!(count(PART_BYTES, 24), 1);
        assert_eq!(count(PART_BYTES + 1, 24), 2);
        assert_eq!(count(55 << 20, 24), 7);
        assert_eq!(count(64 << 20, 24), 8);
        assert_eq!(count(64 << 20, 4), 4, "never more than the connections");
        assert_eq!(count(64 << 20, 0), 1);
        assert_eq!(count(0, 24), 1);
    }

    #[test]
    fn only_a_node_that_trades_cuts_and_never_a_resumed_range() {
        let xorb = 55 << 20;
        assert_eq!(requests(xorb, 24, true, true), 7);
        assert_eq!(requests(xorb, 24, false, true), 1, "nobody to trade with");
        assert_eq!(requests(xorb, 24, true, false), 1, "resumed");
    }

    #[test]
    fn parts_cover_the_range_in_order_without_overlap() {
        for (start, end, parts) in [(0, 999, 3), (10, 10, 4), (5, 104, 100), (0, 1 << 26, 7)] {
            let r = HttpRange { start, end };
            let got = split(r, parts);
            assert_eq!(got.len() as u64, (parts as u64).min(r.len()));
            assert_eq!(got[0].start, start);
            assert_eq!(got.last().map(|p| p.end), Some(end));
            for w in got.windows(2) {
                assert_eq!(w[1].start, w[0].end + 1);
                assert!(w[0].len() >= w[1].len() && w[0].len() - w[1].len() <= 1);
            }
        }
    }
}
