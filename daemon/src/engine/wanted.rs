//! Files pulls are about to fetch, announced as soon as a pull has listed its repo, so
//! discovery looks for peers while the CAS is still being asked how to rebuild them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use xet::XetHash;

use crate::sync::lock;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WantedFile {
    pub size: u64,
    /// Content of a private or gated repo: looked for on fleet channels only.
    pub private: bool,
}

/// One wanted file.
struct Entry {
    file: WantedFile,
    /// Pulls that want it.
    pulls: usize,
    since: Instant,
    /// How many nodes a tracker last counted in its swarm, and when.
    swarm: Option<(usize, Instant)>,
}

/// A tracker's count of a swarm is believed this long (trackers are asked again every
/// 30 s while a file downloads).
const SWARM_COUNT_AGE: Duration = Duration::from_secs(120);

#[derive(Default)]
pub struct Wanted {
    map: Mutex<HashMap<XetHash, Entry>>,
    /// Woken when files are added, so they are announced at once.
    pub changed: Notify,
    /// When a tracker or the DHT last finished announcing / looking up new swarms.
    answered: Mutex<Option<Instant>>,
    answered_notify: Notify,
}

/// How long a download with no peers yet waits for discovery's first answer.
pub const DISCOVERY_GRACE: Duration = Duration::from_millis(1500);
/// After discovery answered, time for the dials it caused to complete.
const DIAL_TIME: Duration = Duration::from_millis(150);

impl Wanted {
    /// Registers `files` until the guard drops.
    pub fn want(self: &Arc<Self>, files: Vec<(XetHash, WantedFile)>) -> WantedGuard {
        let mut map = lock(&self.map);
        for (h, w) in &files {
            let e = map.entry(*h).or_insert(Entry {
                file: *w,
                pulls: 0,
                since: Instant::now(),
                swarm: None,
            });
            e.file.private |= w.private;
            e.pulls += 1;
        }
        drop(map);
        self.changed.notify_one();
        WantedGuard {
            registry: self.clone(),
            files: files.into_iter().map(|(h, _)| h).collect(),
        }
    }

    pub fn snapshot(&self) -> Vec<(XetHash, WantedFile)> {
        lock(&self.map).iter().map(|(h, e)| (*h, e.file)).collect()
    }

    /// A tracker counted `nodes` in the swarm of `file` (seeders and leechers, ourselves
    /// included). Of counts from several trackers or channels, the largest recent one holds.
    pub fn note_swarm(&self, file: &XetHash, nodes: usize) {
        let now = Instant::now();
        if let Some(e) = lock(&self.map).get_mut(file) {
            let keep = e
                .swarm
                .is_some_and(|(n, at)| n > nodes && now.duration_since(at) < SWARM_COUNT_AGE / 2);
            if !keep {
                e.swarm = Some((nodes, now));
            }
        }
    }

    /// How many nodes the swarm of `file` has, as a tracker counted lately; None when no
    /// tracker said (the peers in view are then all the planner knows of).
    pub fn swarm_size(&self, file: &XetHash) -> Option<usize> {
        let e = lock(&self.map);
        let (n, at) = e.get(file)?.swarm?;
        (at.elapsed() < SWARM_COUNT_AGE).then_some(n)
    }

    /// A discovery source finished a pass over new swarms (its peers are being dialled).
    pub fn note_answered(&self) {
        *lock(&self.answered) = Some(Instant::now());
        self.answered_notify.notify_waiters();
    }

    /// Waits until `has_peers()`, or until discovery answered for `file` (and the dials
    /// it caused had time to finish), or [`DISCOVERY_GRACE`]: a cold start is delayed by
    /// at most that, and usually by one tracker round trip.
    pub async fn wait_for_discovery(&self, file: &XetHash, has_peers: impl Fn() -> bool) {
        let since = match lock(&self.map).get(file) {
            Some(e) => e.since,
            None => return,
        };
        let deadline = since + DISCOVERY_GRACE;
        loop {
            if has_peers() || Instant::now() >= deadline {
                return;
            }
            let answered = *lock(&self.answered);
            if let Some(t) = answered
                && t >= since
            {
                let settle = t + DIAL_TIME;
                if Instant::now() >= settle {
                    return;
                }
                tokio::time::sleep_until(settle.min(deadline).into()).await;
                continue;
            }
            let _ =
                tokio::time::timeout(Duration::from_millis(50), self.answered_notify.notified())
                    .await;
        }
    }
}

pub struct WantedGuard {
    registry: Arc<Wanted>,
    files: Vec<XetHash>,
}

impl Drop for WantedGuard {
    fn drop(&mut self) {
        let mut map = lock(&self.registry.map);
        for h in &self.files {
            if let Some(e) = map.get_mut(h) {
                e.pulls = e.pulls.saturating_sub(1);
                if e.pulls == 0 {
                    map.remove(h);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_stay_wanted_while_any_pull_wants_them() {
        let w = Arc::new(Wanted::default());
        let h = XetHash::default();
        let public = WantedFile {
            size: 1,
            private: false,
        };
        let a = w.want(vec![(h, public)]);
        let b = w.want(vec![(
            h,
            WantedFile {
                private: true,
                ..public
            },
        )]);
        assert_eq!(w.snapshot().len(), 1);
        assert!(w.snapshot()[0].1.private, "private wins");
        drop(a);
        assert_eq!(w.snapshot().len(), 1);
        drop(b);
        assert!(w.snapshot().is_empty());
    }

    #[test]
    fn the_largest_recent_swarm_count_holds_while_the_file_is_wanted() {
        let w = Arc::new(Wanted::default());
        let h = XetHash::default();
        w.note_swarm(&h, 50);
        assert_eq!(w.swarm_size(&h), None, "not wanted: nothing kept");
        let g = w.want(vec![(
            h,
            WantedFile {
                size: 1,
                private: false,
            },
        )]);
        assert_eq!(w.swarm_size(&h), None);
        w.note_swarm(&h, 900);
        w.note_swarm(&h, 40);
        assert_eq!(
            w.swarm_size(&h),
            Some(900),
            "another tracker's smaller count"
        );
        drop(g);
        assert_eq!(w.swarm_size(&h), None);
    }
}
