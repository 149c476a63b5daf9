//! How many origin ranges this node keeps in flight, over all files, while peers download
//! the same files; which peers in view fetch any of them from the origin; and when the
//! swarm last made progress on any of them.
//!
//! Few, and fewer the larger the swarm: one per node with two or more peers downloading,
//! two with one (they keep a node's own link busy); within view the planner narrows the
//! crowd to one stream over all files ([`super::planner::VIEW_FLEET_STREAMS`]), so xorbs
//! arrive one after another rather than all at the end, and peers trade each xorb as soon
//! as its chunk hashes verify, while the origin still sends the next.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::sync::lock;

/// An origin range this close to its end (at the pace it has gone) hands its permit over:
/// the next range's claim then settles ([`super::planner::CLAIM_SETTLE`]) and starts while
/// this one ends, instead of the origin link idling for the settle window after each
/// range (measured, a crowd of 4: 0.25-0.9 s per node between one xorb and the next).
pub const HAND_OVER: Duration = Duration::from_millis(400);

/// Whether a transfer that has `got` bytes in `elapsed` and `left` bytes to go will end
/// within `lead` at its pace so far.
pub fn ends_within(got: u64, left: u64, elapsed: Duration, lead: Duration) -> bool {
    if got == 0 || elapsed.is_zero() {
        return false;
    }
    left as f64 <= got as f64 / elapsed.as_secs_f64() * lead.as_secs_f64()
}

#[derive(Default)]
pub struct SwarmOrigin {
    inflight: AtomicUsize,
    /// When some file's chunks last grew anywhere in the swarm, or this node's origin
    /// transfers last received bytes. Waiting on peers for one file is reasonable while
    /// the swarm is busy with the others.
    progress: Mutex<Option<Instant>>,
    /// Per running file download: the peers seen fetching that file from the origin.
    fetchers: Mutex<HashMap<u64, HashSet<String>>>,
    next_key: AtomicU64,
    /// Origin transfers still running whose permit was handed over ([`HeldPermit`]).
    handed_over: AtomicUsize,
}

/// One origin range in flight; released on drop.
pub struct SwarmSlot(Arc<SwarmOrigin>);

/// An origin transfer's swarm permit, given back at [`HAND_OVER`] before the end.
pub struct HeldPermit {
    permit: Option<SwarmSlot>,
    /// Set once the permit is handed over: counted in `handed_over` until the drop.
    handed: Option<Arc<SwarmOrigin>>,
    started: Instant,
}

impl HeldPermit {
    pub fn new(permit: Option<SwarmSlot>) -> Self {
        HeldPermit {
            permit,
            handed: None,
            started: Instant::now(),
        }
    }

    /// The transfer has `got` of its bytes and `left` to go.
    pub fn note(&mut self, got: u64, left: u64) {
        if self.permit.is_some()
            && ends_within(got, left, self.started.elapsed(), HAND_OVER)
            && let Some(slot) = self.permit.take()
        {
            // Counted as handed over before the permit (`slot`, dropped here) is freed.
            slot.0.handed_over.fetch_add(1, Ordering::AcqRel);
            self.handed = Some(slot.0.clone());
        }
    }
}

impl Drop for HeldPermit {
    fn drop(&mut self) {
        if let Some(origin) = self.handed.take() {
            origin.handed_over.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// One file download's entry in [`SwarmOrigin::fleet_fetchers`]; removed on drop.
pub struct FetcherReport {
    origin: Arc<SwarmOrigin>,
    key: u64,
}

impl FetcherReport {
    /// The peers in view now fetching this file from the origin.
    pub fn set(&self, peers: impl IntoIterator<Item = String>) {
        let mut all = lock(&self.origin.fetchers);
        let entry = all.entry(self.key).or_default();
        entry.clear();
        entry.extend(peers);
    }
}

impl Drop for FetcherReport {
    fn drop(&mut self) {
        lock(&self.origin.fetchers).remove(&self.key);
    }
}

impl SwarmOrigin {
    /// Origin ranges in flight allowed with `crowd` peers downloading the same file.
    pub fn limit(crowd: usize) -> usize {
        if crowd >= 2 { 1 } else { 2 }
    }

    pub fn note_progress(&self) {
        self.note_progress_at(Instant::now());
    }

    pub fn note_progress_at(&self, t: Instant) {
        let mut p = lock(&self.progress);
        *p = Some(p.map_or(t, |q| q.max(t)));
    }

    /// A file download's place to report which peers fetch it from the origin.
    pub fn fetcher_report(self: &Arc<Self>) -> FetcherReport {
        FetcherReport {
            origin: self.clone(),
            key: self.next_key.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Peers in view fetching any file this node downloads from the origin now, each
    /// counted once: all of them, and those whose node id sorts below `me`.
    pub fn fleet_fetchers(&self, me: &str) -> (usize, usize) {
        let all = lock(&self.fetchers);
        let mut seen: HashSet<&str> = HashSet::new();
        for ids in all.values() {
            seen.extend(ids.iter().map(String::as_str));
        }
        let below = seen.iter().filter(|id| **id < me).count();
        (seen.len(), below)
    }

    /// Origin transfers still running whose permit was handed over.
    pub fn handed_over(&self) -> usize {
        self.handed_over.load(Ordering::Acquire)
    }

    pub fn progressed_within(&self, d: Duration) -> bool {
        lock(&self.progress).is_some_and(|t| t.elapsed() < d)
    }

    /// Origin ranges in flight now.
    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Acquire)
    }

    pub fn try_take(self: &Arc<Self>, limit: usize) -> Option<SwarmSlot> {
        self.inflight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| SwarmSlot(self.clone()))
    }
}

impl Drop for SwarmSlot {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_and_released() {
        let o = Arc::new(SwarmOrigin::default());
        let a = o.try_take(2);
        let b = o.try_take(2);
        assert!(a.is_some() && b.is_some());
        assert!(o.try_take(2).is_none());
        assert!(o.try_take(1).is_none());
        drop(a);
        assert!(o.try_take(1).is_none(), "one still in flight");
        assert!(o.try_take(2).is_some());
    }

    #[test]
    fn a_transfer_ends_within_the_lead_at_its_pace_so_far() {
        let s = Duration::from_secs(1);
        let lead = Duration::from_millis(400);
        // 100 bytes a second: 40 bytes left end within 400 ms, 41 do not.
        assert!(ends_within(100, 40, s, lead));
        assert!(!ends_within(100, 41, s, lead));
        // Nothing received yet, or no time passed: no pace to judge by.
        assert!(!ends_within(0, 1, s, lead));
        assert!(!ends_within(100, 1, Duration::ZERO, lead));
        assert!(ends_within(100, 0, s, lead));
    }

    #[test]
    fn a_permit_is_handed_over_near_the_end() {
        let o = Arc::new(SwarmOrigin::default());
        let mut held = HeldPermit::new(o.try_take(1));
        std::thread::sleep(Duration::from_millis(20));
        held.note(1_000, 1_000_000_000);
        assert_eq!(o.inflight(), 1, "far from the end");
        held.note(1_000_000_000, 1);
        assert_eq!(o.inflight(), 0, "handed over");
        assert_eq!(o.handed_over(), 1, "still running");
        assert!(o.try_take(1).is_some());
        drop(held);
        assert_eq!(o.handed_over(), 0);
    }

    #[test]
    fn fleet_fetchers_count_each_peer_once_while_its_file_runs() {
        let o = Arc::new(SwarmOrigin::default());
        let a = o.fetcher_report();
        let b = o.fetcher_report();
        a.set(["p1".to_string(), "p2".to_string()]);
        b.set(["p2".to_string(), "p3".to_string()]);
        assert_eq!(o.fleet_fetchers("p2"), (3, 1));
        a.set([]);
        assert_eq!(o.fleet_fetchers("p2"), (2, 0));
        drop(b);
        assert_eq!(o.fleet_fetchers("p9"), (0, 0));
    }
}
