//! Daemon-wide transfer totals since start: what pulls and client downloads took from each
//! source, what peers and local clients were served. Counted as bytes move (not when a
//! pull ends), so they only ever grow: `zestctl status` and `/metrics` read them as they are.

use std::sync::atomic::AtomicU64;

/// Daemon-wide totals since start.
#[derive(Default, Debug)]
pub struct Totals {
    pub from_origin: AtomicU64,
    pub from_peers: AtomicU64,
    pub from_local: AtomicU64,
    /// Chunk bytes sent to peers.
    pub served: AtomicU64,
    /// Verified Xet bytes handed to local clients through the endpoint.
    pub served_to_clients: AtomicU64,
    pub pulls_completed: AtomicU64,
    pub pulls_failed: AtomicU64,
    pub pulls_cancelled: AtomicU64,
}
