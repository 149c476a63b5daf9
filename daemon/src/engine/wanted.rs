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

#[derive(Default)]
pub struct Wanted {
    /// hash → what is wanted, how many pulls want it, and since when.
    map: Mutex<HashMap<XetHash, (WantedFile, usize, Instant)>>,
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
            let e = map.entry(*h).or_insert((*w, 0, Instant::now()));
            e.0.private |= w.private;
            e.1 += 1;
        }
        drop(map);
        self.changed.notify_one();
        WantedGuard {
            registry: self.clone(),
            files: files.into_iter().map(|(h, _)| h).collect(),
        }
    }

    pub fn snapshot(&self) -> Vec<(XetHash, WantedFile)> {
        lock(&self.map)
            .iter()
            .map(|(h, (w, _, _))| (*h, *w))
            .collect()
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
            Some((_, _, t)) => *t,
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
                e.1 = e.1.saturating_sub(1);
                if e.1 == 0 {
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
}
