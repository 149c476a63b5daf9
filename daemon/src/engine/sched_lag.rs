//! Whether this node has lately been short of CPU, as its runtime's late wake-ups show.
//!
//! A transfer from seeders alone is judged against the origin's measured rate, or, before
//! any is measured, against a floor any healthy seeder clears (`planner::SEEDER_FLOOR`).
//! On a node starved of CPU every source looks slow, the origin too, so that guess says
//! nothing about the seeder: seeded crowds on a 2-core machine loaded with six busy loops
//! gave 0.47-0.83 of an origin copy to ranges their seed held, each taken from a seed
//! judged too slow at 1-8 MB/s while every process on the machine starved.
//!
//! Only a transfer's own measurement tells, so the watch runs only while seeders are
//! being judged: an idle daemon sets no timer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How often the watch wakes.
const TICK: Duration = Duration::from_millis(10);
/// A wake-up this late means runnable work waited for a CPU (a quiet machine wakes a
/// 1 ms-resolution timer within a millisecond or two).
pub const LATE: Duration = Duration::from_millis(5);
/// A late wake-up counts this long: about a judged transfer's first quarter second and
/// the pause before it.
pub const MEMORY: Duration = Duration::from_secs(1);

pub struct SchedLag {
    epoch: Instant,
    /// Milliseconds since `epoch` of the last late wake-up, plus one; 0 for none.
    last_late: AtomicU64,
    /// Milliseconds since `epoch` the watch is next due, plus one; 0 while it is not
    /// running. Overdue now is as telling as late before: a transfer judged at the
    /// moment a long stall ends may run before the watch does.
    due: AtomicU64,
    watchers: AtomicUsize,
    running: AtomicBool,
}

impl Default for SchedLag {
    fn default() -> Self {
        SchedLag {
            epoch: Instant::now(),
            last_late: AtomicU64::new(0),
            due: AtomicU64::new(0),
            watchers: AtomicUsize::new(0),
            running: AtomicBool::new(false),
        }
    }
}

/// Keeps the watch running while held.
pub struct LagWatch(Arc<SchedLag>);

impl Drop for LagWatch {
    fn drop(&mut self) {
        self.0.watchers.fetch_sub(1, Ordering::AcqRel);
    }
}

impl SchedLag {
    /// Starts the watch if it is not running (on the current tokio runtime), until every
    /// returned guard is dropped.
    pub fn watch(self: &Arc<Self>) -> LagWatch {
        self.watchers.fetch_add(1, Ordering::AcqRel);
        if self
            .running
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            let me = self.clone();
            tokio::spawn(async move { me.tick().await });
        }
        LagWatch(self.clone())
    }

    async fn tick(&self) {
        loop {
            while self.watchers.load(Ordering::Acquire) > 0 {
                let due = Instant::now() + TICK;
                self.due.store(self.ms(due) + 1, Ordering::Relaxed);
                tokio::time::sleep_until(due.into()).await;
                let now = Instant::now();
                if now.saturating_duration_since(due) >= LATE {
                    self.note_late(now);
                }
            }
            self.due.store(0, Ordering::Relaxed);
            self.running.store(false, Ordering::Release);
            // A guard taken between the last check and the store saw the watch running
            // and started none: take it up again.
            if self.watchers.load(Ordering::Acquire) == 0
                || self
                    .running
                    .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                    .is_err()
            {
                return;
            }
        }
    }

    fn ms(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_millis() as u64
    }

    fn note_late(&self, at: Instant) {
        self.last_late.store(self.ms(at) + 1, Ordering::Relaxed);
    }

    /// Whether a wake-up was late within the last [`MEMORY`] before `now`, or the next
    /// one is late already.
    pub fn starved(&self, now: Instant) -> bool {
        let now_ms = self.ms(now);
        recently(self.last_late.load(Ordering::Relaxed), now_ms)
            || overdue(self.due.load(Ordering::Relaxed), now_ms)
    }
}

/// `last_late` as stored (0: never) is within [`MEMORY`] of `now_ms`.
fn recently(last_late: u64, now_ms: u64) -> bool {
    last_late != 0 && now_ms.saturating_sub(last_late - 1) < MEMORY.as_millis() as u64
}

/// The watch, due at `due` as stored (0: not running), is [`LATE`] behind at `now_ms`.
fn overdue(due: u64, now_ms: u64) -> bool {
    due != 0 && now_ms.saturating_sub(due - 1) >= LATE.as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_wake_up_counts_for_a_while() {
        assert!(!recently(0, 0));
        assert!(!recently(0, 5_000));
        assert!(recently(1, 0));
        assert!(recently(1001, 1999));
        assert!(!recently(1001, 2000));
    }

    #[test]
    fn a_watch_overdue_counts_as_late() {
        assert!(!overdue(0, 10_000), "not running");
        assert!(!overdue(101, 104));
        assert!(overdue(101, 105));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_runtime_held_busy_is_seen_starved_for_a_while_and_the_watch_stops_with_its_guard() {
        let lag = Arc::new(SchedLag::default());
        let w = lag.watch();
        tokio::time::sleep(Duration::from_millis(60)).await;
        // The only thread is held for 50 ms: the watch's next wake-up is that late. (Whether
        // it was seen starved before depends on the machine running the test, so that is
        // not asserted.)
        std::thread::sleep(Duration::from_millis(50));
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(lag.starved(Instant::now()));
        drop(w);
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(
            !lag.running.load(Ordering::Acquire),
            "the watch stops with its last guard"
        );
        assert!(!lag.starved(Instant::now() + MEMORY + Duration::from_millis(5)));
    }
}
