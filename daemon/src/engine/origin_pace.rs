//! How fast one origin transfer has lately brought this node its bytes: what a peer
//! transfer from seeders alone is judged against (`planner::Judge`), so that a seeder
//! slower than the origin never makes a pull slower than the origin alone.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Transfers smaller than this say more about latency than about rate.
const MIN_SAMPLE: u64 = 1 << 20;
/// The weight of the newest transfer in the estimate.
const WEIGHT: f64 = 0.3;

/// Bytes per second of one origin transfer (decoded bytes, request to last byte), as the
/// bits of an f64; 0 before any. An atomic, not a lock: every chunk a seeder sends reads it.
#[derive(Default)]
pub struct OriginPace {
    rate: AtomicU64,
}

impl OriginPace {
    /// One origin transfer brought `bytes` in `took`.
    pub fn record(&self, bytes: u64, took: Duration) {
        if let Some(sample) = sample(bytes, took) {
            let _ = self
                .rate
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                    Some(blend(known(bits), sample).to_bits())
                });
        }
    }

    pub fn rate(&self) -> Option<f64> {
        known(self.rate.load(Ordering::Relaxed))
    }
}

fn known(bits: u64) -> Option<f64> {
    Some(f64::from_bits(bits)).filter(|r| *r > 0.0)
}

fn sample(bytes: u64, took: Duration) -> Option<f64> {
    (bytes >= MIN_SAMPLE && !took.is_zero()).then(|| bytes as f64 / took.as_secs_f64())
}

/// The estimate after one more transfer: the first sets it, later ones move it.
fn blend(old: Option<f64>, sample: f64) -> f64 {
    old.map_or(sample, |o| o + WEIGHT * (sample - o))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_transfers_do_not_count_and_later_ones_move_the_estimate() {
        let p = OriginPace::default();
        assert_eq!(p.rate(), None);
        p.record(1000, Duration::from_millis(1));
        assert_eq!(p.rate(), None, "a small transfer measures latency");
        p.record(100 << 20, Duration::from_secs(1));
        assert_eq!(p.rate(), Some(100.0 * (1 << 20) as f64));
        p.record(200 << 20, Duration::from_secs(1));
        assert_eq!(p.rate(), Some(130.0 * (1 << 20) as f64));
        p.record(200 << 20, Duration::ZERO);
        assert_eq!(p.rate(), Some(130.0 * (1 << 20) as f64));
    }
}
