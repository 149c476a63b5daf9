//! How links share their capacity among the transfers crossing them.
//!
//! Congestion-controlled streams (QUIC's, TCP's) sharing links settle near max-min
//! fairness: a transfer held back at one end leaves what it cannot use at the other end to
//! the transfers that can. Splitting each link equally and taking the smaller share at
//! either end instead strands that capacity: a holder serving 4 peers, one of which also
//! receives 7 other transfers, sent at most 3 quarters of its uplink.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Max-min fair rates: each transfer crosses links `a` and `b` (indices into `caps`) as
/// `w` connections (an origin range fetched in parts is several); a transfer's rate is
/// raised, `w` shares at a time, until one of its links is full, links filling in order of
/// their fair share. Every link ends with its capacity used, or every transfer through it
/// held back by its other link.
pub fn max_min(transfers: &[(usize, usize, u32)], caps: &[f64]) -> Vec<f64> {
    let links = caps.len();
    // Transfers through each link, as one flat list (start offsets per link).
    let mut start = vec![0usize; links + 1];
    let mut open = vec![0u32; links];
    for &(a, b, w) in transfers {
        start[a + 1] += 1;
        start[b + 1] += 1;
        open[a] += w;
        open[b] += w;
    }
    for l in 0..links {
        start[l + 1] += start[l];
    }
    let mut fill = start.clone();
    let mut through = vec![0usize; start[links]];
    for (t, &(a, b, _)) in transfers.iter().enumerate() {
        for l in [a, b] {
            through[fill[l]] = t;
            fill[l] += 1;
        }
    }
    let mut left: Vec<f64> = caps.to_vec();
    let mut rate = vec![f64::NAN; transfers.len()];
    let mut heap: BinaryHeap<Share> = (0..links)
        .filter(|&l| open[l] > 0)
        .map(|l| Share {
            share: left[l] / f64::from(open[l]),
            link: l,
        })
        .collect();
    while let Some(Share { share, link }) = heap.pop() {
        // Entries are pushed again when a link's share changes; only the current one counts.
        if open[link] == 0 || share != left[link] / f64::from(open[link]) {
            continue;
        }
        for &t in &through[start[link]..start[link + 1]] {
            if !rate[t].is_nan() {
                continue;
            }
            let (a, b, w) = transfers[t];
            rate[t] = share * f64::from(w);
            for l in [a, b] {
                left[l] = (left[l] - rate[t]).max(0.0);
                open[l] -= w;
                if l != link && open[l] > 0 {
                    heap.push(Share {
                        share: left[l] / f64::from(open[l]),
                        link: l,
                    });
                }
            }
        }
    }
    rate
}

/// A link's fair share of what it has left, smallest first out of the heap.
struct Share {
    share: f64,
    link: usize,
}

impl PartialEq for Share {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Share {}
impl PartialOrd for Share {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Share {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: BinaryHeap pops the largest. Ties by link, so runs are reproducible.
        other
            .share
            .total_cmp(&self.share)
            .then(other.link.cmp(&self.link))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_link_is_split_equally() {
        let r = max_min(
            &[(0, 1, 1), (0, 2, 1), (0, 3, 1)],
            &[90.0, 1000.0, 1000.0, 1000.0],
        );
        assert_eq!(r, vec![30.0, 30.0, 30.0]);
    }

    #[test]
    fn what_a_transfer_cannot_use_goes_to_the_others() {
        // Links: 0 the origin (100), 1 node A's uplink, 2 node B's downlink (1000 each).
        // B receives from the origin (held to 100 there) and from A: A's transfer gets
        // the other 900 of B's downlink, not an equal half.
        let r = max_min(&[(0, 2, 1), (1, 2, 1)], &[100.0, 1000.0, 1000.0]);
        assert_eq!(r, vec![100.0, 900.0]);
    }

    #[test]
    fn every_link_is_full_or_each_of_its_transfers_is_held_elsewhere() {
        // Holder 0 serves nodes 1-4 (uplink 0); node 1 also receives from holders 5-11.
        // Links: uplink of node i is i, downlink of node i is 100 + i.
        let mut caps = vec![0.0; 112];
        for c in caps.iter_mut() {
            *c = 120.0;
        }
        let mut t = vec![(0, 101, 1), (0, 102, 1), (0, 103, 1), (0, 104, 1)];
        t.extend((5..12).map(|h| (h, 101, 1)));
        let r = max_min(&t, &caps);
        // Node 1's downlink: 8 transfers, 15 each; holder 0's other three take the rest.
        assert!((r[0] - 15.0).abs() < 1e-9, "{r:?}");
        for k in 1..4 {
            assert!((r[k] - 35.0).abs() < 1e-9, "{r:?}");
        }
        let up0: f64 = r[..4].iter().sum();
        assert!((up0 - 120.0).abs() < 1e-9);
        let down1: f64 = r[4..].iter().sum::<f64>() + r[0];
        assert!((down1 - 120.0).abs() < 1e-9);
    }

    #[test]
    fn a_transfer_of_several_connections_takes_as_many_shares() {
        // The origin (100) carries one range in 3 parts and two of one connection each.
        let r = max_min(
            &[(0, 1, 3), (0, 2, 1), (0, 3, 1)],
            &[100.0, 1000.0, 1000.0, 1000.0],
        );
        assert_eq!(r, vec![60.0, 20.0, 20.0]);
        // Held back at its other end, it leaves the rest to the others.
        let r = max_min(&[(0, 1, 3), (0, 2, 1)], &[100.0, 30.0, 1000.0]);
        assert_eq!(r, vec![30.0, 70.0]);
    }

    #[test]
    fn no_transfers_no_rates() {
        assert!(max_min(&[], &[1.0, 2.0]).is_empty());
    }
}
