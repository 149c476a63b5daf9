//! How many origin ranges this node keeps in flight, over all files, while peers download
//! the same files; and when the swarm last made progress on any of them.
//!
//! Few, and fewer the larger the swarm: the fleet as a whole then keeps about one origin
//! stream per node, so xorbs arrive one after another rather than all at the end, and
//! peers trade each xorb as soon as its chunk hashes verify, while the origin still sends
//! the next. With one other peer, two streams keep a node's own link busy.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::sync::lock;

#[derive(Default)]
pub struct SwarmOrigin {
    inflight: AtomicUsize,
    /// When some file's chunks last grew anywhere in the swarm. Waiting on peers for one
    /// file is reasonable while the swarm is busy with the others.
    progress: Mutex<Option<Instant>>,
}

/// One origin range in flight; released on drop.
pub struct SwarmSlot(Arc<SwarmOrigin>);

impl SwarmOrigin {
    /// Origin ranges in flight allowed with `crowd` peers downloading the same file.
    pub fn limit(crowd: usize) -> usize {
        if crowd >= 2 { 1 } else { 2 }
    }

    pub fn note_progress(&self) {
        *lock(&self.progress) = Some(Instant::now());
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
}
