//! Per-peer byte counts and recent rates.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Rates are averaged over this window.
const WINDOW: Duration = Duration::from_secs(5);

pub struct PeerStats {
    pub bytes_from: AtomicU64,
    pub bytes_to: AtomicU64,
    /// When the peer was last heard: a request from it, a reply to one of ours, or an update
    /// pushed on a watch it keeps open.
    last_request: Mutex<Instant>,

    from: Meter,
    to: Meter,
    /// Chunk transfers this node has going from the peer now.
    asked: AtomicUsize,
}

impl Default for PeerStats {
    fn default() -> Self {
        PeerStats {
            bytes_from: AtomicU64::new(0),
            bytes_to: AtomicU64::new(0),
            last_request: Mutex::new(Instant::now()),
            from: Meter::default(),
            to: Meter::default(),
            asked: AtomicUsize::new(0),
        }
    }
}

impl PeerStats {
    /// The peer sent a request or answered one of ours; or a watch it keeps open (a
    /// standing request) was pushed an update. Requests we send it do not count: a peer
    /// that vanished without closing still takes them until QUIC's idle timeout.
    pub fn heard(&self) {
        if let Ok(mut t) = self.last_request.lock() {
            *t = Instant::now();
        }
    }
    /// How long since the peer was last heard (since connecting if it has not been).
    pub fn idle(&self) -> Duration {
        self.last_request
            .lock()
            .map(|t| t.elapsed())
            .unwrap_or_default()
    }
    pub fn received(&self, n: u64) {
        self.bytes_from.fetch_add(n, Ordering::Relaxed);
        self.from.add(n);
    }
    pub fn sent(&self, n: u64) {
        self.bytes_to.fetch_add(n, Ordering::Relaxed);
        self.to.add(n);
    }
    pub fn rate_from(&self) -> f64 {
        self.from.rate()
    }
    /// A chunk transfer from the peer starts; it counts until the guard is dropped.
    pub fn ask(self: &Arc<Self>) -> Asked {
        self.asked.fetch_add(1, Ordering::Relaxed);
        Asked(self.clone())
    }
    /// Chunk transfers this node has going from the peer now.
    pub fn asked(&self) -> usize {
        self.asked.load(Ordering::Relaxed)
    }
    pub fn rate_to(&self) -> f64 {
        self.to.rate()
    }
}

/// One chunk transfer from a peer, counted while it lives.
pub struct Asked(Arc<PeerStats>);

impl Drop for Asked {
    fn drop(&mut self) {
        self.0.asked.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Bytes per one-second bucket over the last few seconds.
#[derive(Default)]
struct Meter {
    buckets: Mutex<Vec<(Instant, u64)>>,
}

impl Meter {
    fn add(&self, n: u64) {
        let now = Instant::now();
        let Ok(mut b) = self.buckets.lock() else {
            return;
        };
        match b.last_mut() {
            Some((t, total)) if now.duration_since(*t) < Duration::from_secs(1) => *total += n,
            _ => b.push((now, n)),
        }
        b.retain(|(t, _)| now.duration_since(*t) <= WINDOW);
    }
    fn rate(&self) -> f64 {
        let now = Instant::now();
        let Ok(b) = self.buckets.lock() else {
            return 0.0;
        };
        let total: u64 = b
            .iter()
            .filter(|(t, _)| now.duration_since(*t) <= WINDOW)
            .map(|(_, n)| n)
            .sum();
        total as f64 / WINDOW.as_secs_f64()
    }
}
