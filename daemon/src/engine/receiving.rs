//! How many transfers this node receives at once, from peers and the origin, over all
//! files. They share its link, so a transfer judged against the origin is judged by its
//! share of it (`planner::Judge::transfers`): a node taking four files from seeders ran up
//! to 32 transfers (eight per file, before `planner::PEER_TRANSFERS`), each a thirty-second
//! of its link, and held one by one to a whole link's bar it benched every seeder and took
//! the files from the origin (simulated, 256 nodes × 2 GiB with 10% churn a minute, seed 1:
//! 1.018 origin copies, 1.25 with pieces taken beyond view, from the late joiners; 1.000
//! held to its share). The same count, of peer transfers alone, is what the planner keeps
//! within `PEER_TRANSFERS`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Default)]
pub struct Receiving {
    now: AtomicUsize,
}

/// One transfer being received; counted until dropped.
pub struct Receipt(Arc<Receiving>);

impl Receiving {
    pub fn start(self: &Arc<Self>) -> Receipt {
        self.now.fetch_add(1, Ordering::Relaxed);
        Receipt(self.clone())
    }

    /// Transfers being received now.
    pub fn now(&self) -> usize {
        self.now.load(Ordering::Relaxed)
    }
}

impl Drop for Receipt {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfers_count_while_their_receipts_live() {
        let r = Arc::new(Receiving::default());
        let a = r.start();
        let b = r.start();
        assert_eq!(r.now(), 2);
        drop(a);
        assert_eq!(r.now(), 1);
        drop(b);
        assert_eq!(r.now(), 0);
    }
}
