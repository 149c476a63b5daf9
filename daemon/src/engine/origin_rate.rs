//! How fast one origin range arrives, as this node last saw it: what a peer transfer is
//! measured against (a peer that falls well behind it loses its range to the origin).

use std::sync::Mutex;
use std::time::Duration;

use crate::sync::lock;

/// Ranges shorter than this say more about latency than rate and are not counted.
const MIN_BYTES: u64 = 4 << 20;
/// Weight of the newest range in the running average.
const NEWEST: f64 = 0.3;

#[derive(Default, Debug)]
pub struct OriginRate {
    /// Decoded bytes per second of one range, averaged.
    rate: Mutex<Option<f64>>,
}

impl OriginRate {
    /// One origin range delivered `bytes` (decoded) in `took`.
    pub fn record(&self, bytes: u64, took: Duration) {
        if bytes < MIN_BYTES || took.is_zero() {
            return;
        }
        let r = bytes as f64 / took.as_secs_f64();
        let mut g = lock(&self.rate);
        *g = Some(match *g {
            None => r,
            Some(old) => old * (1.0 - NEWEST) + r * NEWEST,
        });
    }

    /// Bytes per second one range gets from the origin; None until measured.
    pub fn per_range(&self) -> Option<f64> {
        *lock(&self.rate)
    }
}
