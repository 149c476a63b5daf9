//! What to announce on each kind of channel, recomputed from the index (everything held:
//! passive seeding) and the pulls in progress, and published to the source tasks.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use super::swarm::{SwarmKey, fleet_key, public_key};
use crate::engine::wanted::Wanted;
use crate::index::Index;
use crate::peer::FleetKey;

/// How often the plan is recomputed; new files are announced within this.
const REPLAN: Duration = Duration::from_millis(500);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    /// Public trackers and the DHT: public content only, under public keys.
    Public,
    /// The fleet's private trackers: everything, private content under fleet keys.
    Fleet,
}

/// Swarm key → bytes still to download (0: we seed it).
pub type Plan = HashMap<SwarmKey, u64>;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plans {
    pub public: Plan,
    pub fleet: Plan,
    /// The file each key of a file being downloaded stands for: a tracker's count of that
    /// swarm is the planner's (`Wanted::note_swarm`).
    pub downloading: HashMap<SwarmKey, xet::XetHash>,
}

impl Plans {
    pub fn get(&self, c: Channel) -> &Plan {
        match c {
            Channel::Public => &self.public,
            Channel::Fleet => &self.fleet,
        }
    }
}

pub struct Planner {
    pub index: Index,
    pub wanted: Arc<Wanted>,
    pub fleet: Option<FleetKey>,
    pub seed_public: bool,
}

impl Planner {
    /// One file: `open` if it may be offered to everyone.
    fn place(&self, plans: &mut Plans, hash: &xet::XetHash, open: bool, left: u64) {
        let key = if open {
            let k = public_key(hash);
            plans.public.insert(k, left);
            plans.fleet.insert(k, left);
            k
        } else if let Some(f) = &self.fleet {
            let k = fleet_key(f, hash);
            plans.fleet.insert(k, left);
            k
        } else {
            return;
        };
        if left > 0 {
            plans.downloading.insert(key, *hash);
        }
    }

    pub fn compute(&self) -> Plans {
        let mut plans = Plans::default();
        let held = self.index.files();
        let held_set: std::collections::HashSet<_> = held.iter().map(|(h, _)| *h).collect();
        for (h, _) in &held {
            let open = self.seed_public && self.index.is_public(h);
            self.place(&mut plans, h, open, 0);
        }
        for (h, w) in self.wanted.snapshot() {
            if !held_set.contains(&h) {
                self.place(
                    &mut plans,
                    &h,
                    self.seed_public && !w.private,
                    w.size.max(1),
                );
            }
        }
        plans
    }

    pub fn spawn(
        self,
        tasks: &mut JoinSet<()>,
        mut stop: watch::Receiver<bool>,
    ) -> watch::Receiver<Arc<Plans>> {
        let (tx, rx) = watch::channel(Arc::new(self.compute()));
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(REPLAN) => {}
                    _ = self.wanted.changed.notified() => {}
                    _ = stop.changed() => return,
                }
                let plans = self.compute();
                tx.send_if_modified(|cur| {
                    if **cur == plans {
                        return false;
                    }
                    *cur = Arc::new(plans);
                    true
                });
            }
        });
        rx
    }
}
