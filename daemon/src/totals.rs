//! Daemon-wide transfer totals since start: what pulls took from each source and what
//! peers were served. Pulls add to them when they end; the peer server counts as it sends.

use std::sync::atomic::AtomicU64;

/// Daemon-wide totals since start.
#[derive(Default, Debug)]
pub struct Totals {
    pub from_origin: AtomicU64,
    pub from_peers: AtomicU64,
    pub from_local: AtomicU64,
    pub served: AtomicU64,
    pub pulls_completed: AtomicU64,
    pub pulls_failed: AtomicU64,
}
