//! One simulated daemon: its connections, and per file the daemon's own planner with what
//! it sees (a `Snapshot` kept up to date in place) and what it tells peers.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::time::Instant;

use rand::rngs::SmallRng;

use zestd::engine::planner::{PeerState, Planner, Snapshot};

use crate::params::FileShape;
use crate::ranges;

/// Maps keyed by node index, looked up per peer per step: SipHash was a tenth of the
/// simulator's time, and these keys come from the simulation, not from an adversary.
pub type NodeMap<V> = HashMap<usize, V, BuildHasherDefault<NodeHasher>>;

#[derive(Default)]
pub struct NodeHasher(u64);

impl Hasher for NodeHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
    fn write_u64(&mut self, i: u64) {
        // A multiplicative hash: spreads consecutive indexes over the high bits, which
        // hashbrown uses.
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

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
    pub conns: Vec<usize>,
    /// Its connections changed since its relay was last computed (zestd recomputes the
    /// relay every tick, so a new peer's claims are relayed from the next one on).
    pub relinked: bool,
    pub files: Vec<FileRun>,
    /// Origin ranges in flight for swarms, over all files (the engine's `SwarmOrigin`).
    pub swarm_inflight: usize,
    pub swarm_progress: Option<f64>,
    /// Origin transfers going now, and those waiting for one of them to end (zestd's
    /// `fetch_permits`, a fair semaphore: first come, first served).
    pub origin_active: usize,
    pub origin_waiting: std::collections::VecDeque<crate::net::Flow>,
    /// Bytes per second recently received from each peer.
    pub rates: NodeMap<f64>,
    /// Transfers this node serves now (zestd answers `busy` beyond `MAX_UPLOADS`).
    pub uploading: usize,
    /// How fast its origin transfers went (zestd's own estimate, the same code).
    pub origin_pace: zestd::engine::origin_pace::OriginPace,
    /// Peers that answered `busy`, left alone until then (zestd's `CHOKE`).
    pub choked: NodeMap<f64>,
    /// Transfers this node has going from each peer, over all files (zestd's
    /// `PeerStats::asked`, which its planner reads to ask a peer no more than it serves).
    pub asking: NodeMap<usize>,
    pub next_announce: f64,
    pub bytes_up: f64,
    pub bytes_down: f64,
    pub bytes_origin: f64,
    pub msgs: u64,
    pub msg_bytes: u64,
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
