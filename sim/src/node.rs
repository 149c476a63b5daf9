//! One simulated daemon: its connections, and per file the daemon's own planner with what
//! it sees (a `Snapshot` kept up to date in place) and what it tells peers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use rand::rngs::SmallRng;

use zestd::engine::planner::{PeerState, Planner, Snapshot};

use crate::params::FileShape;
use crate::ranges;

pub struct Node {
    pub id: String,
    /// Its own randomness (slot order, first-claim spread, origin draw), so nodes can plan
    /// in parallel and a run stays the same for a seed.
    pub rng: SmallRng,
    pub alive: bool,
    /// Pulls the model (false: holds it from the start).
    pub pulls: bool,
    pub arrived: f64,
    pub finished: Option<f64>,
    pub left: Option<f64>,
    /// Its connections, changed only through [`Node::link_to`] and [`Node::unlink`], which
    /// keep `links` beside them.
    pub conns: Vec<usize>,
    /// What it knows of each connection, at the same place as in `conns`: read for every
    /// peer of every pass, where maps keyed by peer were a cache miss each (a fifth of a
    /// 10,000-node run's time).
    pub links: Vec<Link>,
    /// Bumped at every change of `conns`: views built at the same count are of the same
    /// peers. Comparing the lists at every pass was 2% of a 2,000-node run's profile.
    pub conns_changes: u64,
    /// Its connections changed since its relay was last computed (zestd recomputes the
    /// relay every tick, so a new peer's claims are relayed from the next one on).
    pub relinked: bool,
    pub files: Vec<FileRun>,
    /// Origin ranges in flight for swarms, over all files (the engine's `SwarmOrigin`).
    pub swarm_inflight: usize,
    /// Its origin transfers still running whose permit was handed over (`HeldPermit`).
    pub handed_over: usize,
    pub swarm_progress: Option<f64>,
    /// Origin transfers going now, and those waiting for one of them to end (zestd's
    /// `fetch_permits`, a fair semaphore: first come, first served).
    pub origin_active: usize,
    pub origin_waiting: std::collections::VecDeque<crate::net::Flow>,
    /// Transfers this node serves now (zestd answers `busy` beyond `MAX_UPLOADS`).
    pub uploading: usize,
    /// How fast its origin transfers went (zestd's own estimate, the same code).
    pub origin_pace: zestd::engine::origin_pace::OriginPace,
    pub next_announce: f64,
    pub bytes_up: f64,
    pub bytes_down: f64,
    pub bytes_origin: f64,
    pub msgs: u64,
    pub msg_bytes: u64,
}

/// What a node knows of one of its connections.
#[derive(Clone, Copy)]
pub struct Link {
    /// Bytes per second recently received from the peer.
    pub rate: f64,
    /// It answered `busy`: left alone until then (zestd's `choke_for`).
    pub choked_until: f64,
    /// Transfers this node has going from it, over all files (zestd's `PeerStats::asked`,
    /// which its planner reads to ask a peer no more than it serves).
    pub asking: usize,
}

impl Default for Link {
    fn default() -> Link {
        Link {
            rate: 0.0,
            choked_until: f64::NEG_INFINITY,
            asking: 0,
        }
    }
}

impl Node {
    /// A new connection, to `peer`.
    pub fn link_to(&mut self, peer: usize) {
        self.conns.push(peer);
        self.links.push(Link::default());
        self.conns_changes += 1;
        self.relinked = true;
    }

    /// The connection to `peer` is gone.
    pub fn unlink(&mut self, peer: usize) {
        if let Some(k) = self.conns.iter().position(|&c| c == peer) {
            self.conns.remove(k);
            self.links.remove(k);
        }
        self.conns_changes += 1;
        self.relinked = true;
    }

    /// All its connections are gone; the peers it had.
    pub fn unlink_all(&mut self) -> Vec<usize> {
        self.links.clear();
        self.conns_changes += 1;
        std::mem::take(&mut self.conns)
    }

    /// What it knows of its connection to `peer`, if it has one.
    pub fn link(&mut self, peer: usize) -> Option<&mut Link> {
        let k = self.conns.iter().position(|&c| c == peer)?;
        self.links.get_mut(k)
    }
}

pub struct FileRun {
    pub planner: Option<Planner>,
    /// What this node tells peers about the file: what it holds (verified) and fetches.
    pub public: PeerState,
    /// What the planner sees; `ours`, `trusted` and `peers` live here between steps.
    pub snap: Snapshot,
    /// Claims announced and not yet fetched or withdrawn, with whether each holds a
    /// swarm origin permit.
    pub claims: HashMap<usize, bool>,
    pub last_refresh: Option<f64>,
    /// Something happened that the planner should look at in the next step.
    pub kick: bool,
    /// Earliest time of the next step (the first one waits for the pull's setup).
    pub not_before: f64,
    pub done: bool,
    /// Bumped at every change of `public`, so peers re-read only what changed.
    pub version: u64,
    /// Per entry of `snap.peers`: the connection it came from and the version read.
    pub seen: Vec<(usize, u64)>,
    /// The node's `conns_changes` when `seen` was built; None while there are no views.
    pub seen_conns: Option<u64>,
    /// Bumped at changes of `public` a watcher is told at once (claims, completion);
    /// growth of `held` alone bumps only `version`.
    pub urgent: u64,
    /// The `version` and `urgent` last pushed to watchers, and when (`watch`).
    pub pushed: (u64, u64),
    pub pushed_at: f64,
    /// Bumped when `public.relayed` changes, and the value last pushed: an update carries
    /// the relayed claims only when they changed.
    pub relay_version: u64,
    pub relay_pushed: u64,
    /// The ranges of the claims behind `public.fetching`, one entry per claim: peers are
    /// told them sorted and merged, as zestd's `LiveFile::fetching_ranges` tells them.
    pub claimed: Vec<(u32, u32)>,
}

impl FileRun {
    pub fn new(id: &str, shape: &FileShape, base: Instant, holds: bool) -> FileRun {
        let n = shape.units as usize;
        FileRun {
            planner: None,
            public: PeerState {
                id: id.to_string(),
                complete: holds,
                involved: holds,
                held: if holds {
                    vec![(0, shape.units)].into()
                } else {
                    Default::default()
                },
                fetching: Default::default(),
                rate: 0.0,
                quiet: None,
                busy: false,
                asked: 0,
                relayed: Default::default(),
            },
            snap: Snapshot::new(base, Vec::new(), vec![holds; n], vec![holds; n]),
            claims: HashMap::new(),
            last_refresh: None,
            kick: true,
            not_before: 0.0,
            done: holds,
            version: 0,
            seen: Vec::new(),
            seen_conns: None,
            urgent: 0,
            pushed: (0, 0),
            pushed_at: 0.0,
            relay_version: 0,
            relay_pushed: 0,
            claimed: Vec::new(),
        }
    }

    /// Verified units: on disk, trusted, and told to peers.
    pub fn hold(&mut self, a: u32, b: u32, units: u32) {
        for i in a..b {
            self.snap.ours[i as usize] = true;
            self.snap.trusted[i as usize] = true;
        }
        // A new list, counted anew (`Held`); the old one was shared with the board anyway.
        let mut held = self.public.held.to_vec();
        ranges::insert(&mut held, a, b);
        self.public.held = held.into();
        let complete = self.public.held.first() == Some(&(0, units));
        if complete != self.public.complete {
            self.urgent += 1;
        }
        self.public.complete = complete;
        self.version += 1;
    }

    pub fn start_fetching(&mut self, r: &[(u32, u32)]) {
        self.claimed.extend_from_slice(r);
        self.tell_fetching();
    }

    pub fn stop_fetching(&mut self, r: &[(u32, u32)]) {
        for x in r {
            if let Some(k) = self.claimed.iter().position(|y| y == x) {
                self.claimed.swap_remove(k);
            }
        }
        self.tell_fetching();
    }

    /// What peers are told of the claims changed: at once (`urgent`).
    fn tell_fetching(&mut self) {
        self.public.fetching = Arc::new(zestd::peer::wire::merge(self.claimed.clone()));
        self.version += 1;
        self.urgent += 1;
    }
}

/// Units whose chunk hashes are now trusted.
pub fn trust(trusted: &mut [bool], a: u32, b: u32) {
    for t in &mut trusted[a as usize..b as usize] {
        *t = true;
    }
}
