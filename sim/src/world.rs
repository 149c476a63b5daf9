//! The simulation: nodes arrive, find peers as a tracker hands them out, and run the
//! daemon's planner for each file on the daemon's 50 ms tick; the transfers it asks for
//! move bytes at the rates `net` gives them; bytes become visible to peers exactly when
//! the daemon would publish them (origin bytes once their xorb is proven, peer bytes as
//! each unit verifies).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use zestd::engine::planner::{self, Action, PeerFailure, PeerState, Planner};
use zestd::peer::set::CHOKE;

use crate::net::{Caps, Flow, Src, assign_rates};
use crate::node::{FileRun, Node, trust};
use crate::params::{Params, Scenario, Shape};
use crate::ranges;

/// Wire size of a `have` request, and of an answer before its ranges (8 bytes each).
const HAVE_REQUEST: u64 = 48;
const HAVE_ANSWER: u64 = 40;
/// Daemons started together spread their first claims over this window
/// (`schedule::FIRST_CLAIM_SPREAD`).
const FIRST_CLAIM_SPREAD: f64 = 0.2;

pub struct World {
    pub p: Params,
    pub shape: Shape,
    rng: SmallRng,
    base: Instant,
    pub now: f64,
    pub nodes: Vec<Node>,
    ids: HashMap<String, usize>,
    alive: Vec<usize>,
    flows: Vec<Flow>,
    caps: Caps,
    /// Arrivals still to come (time, holds the model), latest first.
    arrivals: Vec<(f64, bool)>,
    churn_due: f64,
    pub origin_bytes: f64,
    pub cpu_seconds: f64,
    pub peer_failures: u64,
    /// `ZEST_SIM_TRACE` set: every action to stderr.
    trace: bool,
}

impl World {
    pub fn new(p: Params) -> World {
        let shape = Shape::of(&p);
        let mut rng = SmallRng::seed_from_u64(p.seed);
        let mut arrivals: Vec<(f64, bool)> = (0..p.nodes)
            .map(|_| match p.scenario {
                Scenario::Staggered => (rng.random::<f64>() * p.spread_s, false),
                _ => (0.0, false),
            })
            .collect();
        if p.scenario == Scenario::Seeded {
            arrivals.push((0.0, true));
        }
        // Latest first, so the next arrival is popped from the end; a seed comes first.
        arrivals.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let caps = Caps {
            origin: p.origin_bps(),
            node: p.node_bps(),
            cpu_origin_in: p.cpu_origin_in_ns * 1e-9,
            cpu_peer_in: p.cpu_peer_in_ns * 1e-9,
            cpu_peer_out: p.cpu_peer_out_ns * 1e-9,
            cores: p.cores,
            shared_cores: p.shared_cores,
            oversubscription: p.oversubscription,
        };
        World {
            p,
            shape,
            rng,
            base: Instant::now(),
            now: 0.0,
            nodes: Vec::new(),
            ids: HashMap::new(),
            alive: Vec::new(),
            flows: Vec::new(),
            caps,
            arrivals,
            churn_due: 0.0,
            origin_bytes: 0.0,
            cpu_seconds: 0.0,
            peer_failures: 0,
            trace: std::env::var_os("ZEST_SIM_TRACE").is_some(),
        }
    }

    pub fn one_copy_s(&self) -> f64 {
        self.shape.copy_bytes() / self.p.origin_bps()
    }

    fn at(&self, t: f64) -> Instant {
        self.base + Duration::from_secs_f64(t)
    }

    /// Runs until every live node that pulls has the model, or the time limit.
    pub fn run(&mut self) {
        let dt = self.p.tick_ms / 1000.0;
        let limit = self.one_copy_s() * self.p.max_copies_time + self.p.spread_s;
        loop {
            self.arrive();
            self.churn(dt);
            self.announce();
            self.steps();
            let used = assign_rates(&mut self.flows, self.nodes.len(), &self.caps, self.now);
            self.cpu_seconds += used * dt;
            self.advance(dt);
            self.now += dt;
            let pulling = self
                .alive
                .iter()
                .any(|&n| self.nodes[n].pulls && self.nodes[n].finished.is_none());
            if (!pulling && self.arrivals.is_empty()) || self.now > limit {
                if self.trace {
                    self.dump_unfinished();
                }
                break;
            }
        }
    }

    /// With `ZEST_SIM_TRACE`: why each node still pulling has not finished.
    fn dump_unfinished(&self) {
        for &n in &self.alive {
            let node = &self.nodes[n];
            if !node.pulls || node.finished.is_some() {
                continue;
            }
            let flows = self.flows.iter().filter(|f| f.dst == n).count();
            eprintln!(
                "unfinished node {n}: arrived {:.1}, {} conns, {flows} transfers in, swarm permits {}",
                node.arrived,
                node.conns.len(),
                node.swarm_inflight
            );
            for (f, fr) in node.files.iter().enumerate().filter(|(_, fr)| !fr.done) {
                eprintln!(
                    "  file {f}: held {:?}, claims {:?}, waiting {:?}, peers off {:?}, views {}",
                    fr.public.held,
                    fr.claims,
                    fr.planner.as_ref().map(Planner::waiting),
                    fr.planner.as_ref().map(Planner::peers_off),
                    fr.snap.peers.len()
                );
            }
        }
    }

    fn arrive(&mut self) {
        while self.arrivals.last().is_some_and(|a| a.0 <= self.now) {
            let Some((_, holds)) = self.arrivals.pop() else {
                break;
            };
            self.spawn(holds);
        }
    }

    fn spawn(&mut self, holds: bool) -> usize {
        let n = self.nodes.len();
        let id = format!("{:016x}", self.rng.random::<u64>());
        let files = self
            .shape
            .files
            .iter()
            .map(|s| {
                let mut f = FileRun::new(&id, s, self.base, holds);
                f.not_before = self.now + self.p.setup_ms / 1000.0;
                f
            })
            .collect();
        self.ids.insert(id.clone(), n);
        self.nodes.push(Node {
            id,
            alive: true,
            pulls: !holds,
            arrived: self.now,
            finished: holds.then_some(self.now),
            left: None,
            conns: Vec::new(),
            files,
            swarm_inflight: 0,
            swarm_progress: None,
            rates: HashMap::new(),
            uploading: 0,
            choked: HashMap::new(),
            next_announce: self.now + self.p.announce_s,
            bytes_up: 0.0,
            bytes_down: 0.0,
            bytes_origin: 0.0,
            msgs: 0,
            msg_bytes: 0,
        });
        self.connect(n);
        self.alive.push(n);
        n
    }

    /// An announce: the tracker hands out a random sample of the swarm, and the node
    /// connects to those that are not at their connection cap.
    fn connect(&mut self, n: usize) {
        let cap = self.p.max_peers;
        let mut tries = 0;
        let mut handed = 0;
        while handed < self.p.tracker_sample
            && tries < self.p.tracker_sample * 3
            && !self.alive.is_empty()
            && self.nodes[n].conns.len() < cap
        {
            tries += 1;
            let c = self.alive[self.rng.random_range(0..self.alive.len())];
            if c == n || self.nodes[n].conns.contains(&c) {
                continue;
            }
            handed += 1;
            if self.nodes[c].conns.len() >= cap {
                continue;
            }
            self.nodes[n].conns.push(c);
            self.nodes[c].conns.push(n);
        }
    }

    fn announce(&mut self) {
        for k in 0..self.alive.len() {
            let n = self.alive[k];
            if self.nodes[n].next_announce <= self.now {
                self.nodes[n].next_announce = self.now + self.p.announce_s;
                if self.nodes[n].conns.len() < self.p.max_peers {
                    self.connect(n);
                }
            }
        }
    }

    fn churn(&mut self, dt: f64) {
        if self.p.scenario != Scenario::Churn {
            return;
        }
        // Churn lasts while the first crowd pulls; the nodes that join meanwhile then
        // finish without more leaving.
        let crowd_pulling = self
            .alive
            .iter()
            .any(|&n| self.nodes[n].arrived == 0.0 && self.nodes[n].finished.is_none());
        if !crowd_pulling {
            return;
        }
        self.churn_due += self.p.churn_per_min * self.alive.len() as f64 * dt / 60.0;
        while self.churn_due >= 1.0 {
            self.churn_due -= 1.0;
            let k = self.rng.random_range(0..self.alive.len());
            let n = self.alive[k];
            self.leave(n);
            self.spawn(false);
        }
    }

    fn leave(&mut self, n: usize) {
        self.alive.retain(|&x| x != n);
        let node = &mut self.nodes[n];
        node.alive = false;
        node.left = Some(self.now);
        let conns = std::mem::take(&mut node.conns);
        for c in conns {
            self.nodes[c].conns.retain(|&x| x != n);
        }
        // Its downloads stop; what it was sending fails at the receiver.
        let (gone, keep): (Vec<Flow>, Vec<Flow>) = std::mem::take(&mut self.flows)
            .into_iter()
            .partition(|f| f.dst == n || f.src == Src::Node(n));
        self.flows = keep;
        for f in gone {
            self.unload(&f);
            if f.dst != n {
                self.peer_failed(f, PeerFailure::Other);
            }
        }
    }

    fn steps(&mut self) {
        let inst = self.at(self.now);
        for k in 0..self.alive.len() {
            let n = self.alive[k];
            if !self.nodes[n].pulls || self.nodes[n].finished.is_some() {
                continue;
            }
            for f in 0..self.shape.files.len() {
                let fr = &self.nodes[n].files[f];
                if fr.done || self.now < fr.not_before {
                    continue;
                }
                let due = fr.kick
                    || fr.planner.as_ref().is_none_or(|pl| {
                        (pl.waiting()
                            && fr
                                .last_refresh
                                .is_none_or(|t| Planner::refresh_due(Some(self.at(t)), inst)))
                            || (!fr.claims.is_empty() && !pl.due_claims(inst).is_empty())
                    });
                if due {
                    self.step(n, f);
                }
            }
            if self.nodes[n].files.iter().all(|f| f.done) {
                self.nodes[n].finished = Some(self.now);
            }
        }
    }

    /// Takes in what the node's peers say of file `f` now (one `have` each): the
    /// planner's view is updated in place, re-reading only peers whose state changed.
    fn refresh_views(&mut self, n: usize, f: usize) {
        let mut peers = std::mem::take(&mut self.nodes[n].files[f].snap.peers);
        let mut seen = std::mem::take(&mut self.nodes[n].files[f].seen);
        let now = self.now;
        let node = &mut self.nodes[n];
        node.choked.retain(|_, until| *until > now);
        let conns: Vec<usize> = if node.choked.is_empty() {
            node.conns.clone()
        } else {
            node.conns
                .iter()
                .copied()
                .filter(|c| !node.choked.contains_key(c))
                .collect()
        };
        let same_conns =
            seen.len() == conns.len() && seen.iter().zip(&conns).all(|(s, c)| s.0 == *c);
        if !same_conns {
            peers.clear();
            seen.clear();
            for &c in &conns {
                let fr = &self.nodes[c].files[f];
                peers.push(fr.public.clone());
                seen.push((c, fr.version));
            }
        }
        let mut bytes = 0;
        for (view, (c, version)) in peers.iter_mut().zip(seen.iter_mut()) {
            let fr = &self.nodes[*c].files[f];
            if fr.version != *version {
                view.clone_from(&fr.public);
                *version = fr.version;
            }
            view.quiet = match (self.p.swarm_size, fr.planner.as_ref()) {
                (true, Some(pl)) if !fr.done => Some(pl.quiet(self.at(self.now))),
                _ => None,
            };
            view.rate = self.nodes[n].rates.get(c).copied().unwrap_or(0.0);
            bytes +=
                HAVE_REQUEST + HAVE_ANSWER + 8 * (view.held.len() + view.fetching.len()) as u64;
        }
        let node = &mut self.nodes[n];
        node.msgs += 2 * peers.len() as u64;
        node.msg_bytes += bytes;
        let fr = &mut node.files[f];
        fr.snap.peers = peers;
        fr.seen = seen;
        fr.last_refresh = Some(self.now);
    }

    /// One pass of `schedule::run`'s loop for node `n`'s file `f`.
    fn step(&mut self, n: usize, f: usize) {
        let now = self.now;
        let inst = self.at(now);
        self.nodes[n].files[f].kick = false;
        if self.nodes[n].files[f].planner.is_none() {
            let shape = &self.shape.files[f];
            let mut order: Vec<usize> = (0..shape.slots.len()).collect();
            if !self.nodes[n].conns.is_empty() {
                order.shuffle(&mut self.rng);
            }
            let slots: Vec<_> = shape.slots.iter().map(|&r| vec![r]).collect();
            let pl = Planner::new(
                self.nodes[n].id.clone(),
                slots.clone(),
                slots,
                order,
                shape.units,
                inst,
            );
            let involved = self.nodes[n]
                .conns
                .iter()
                .any(|&c| self.nodes[c].files[f].public.involved);
            let spread = self.rng.random::<f64>() * FIRST_CLAIM_SPREAD;
            let draw = self.rng.random::<f64>();
            let fr = &mut self.nodes[n].files[f];
            fr.snap.origin_draw = draw;
            fr.planner = Some(pl);
            fr.public.involved = true;
            fr.version += 1;
            if involved {
                fr.not_before = now + spread;
                fr.kick = true;
                return;
            }
        }
        let peers_off = self.nodes[n].files[f]
            .planner
            .as_ref()
            .is_some_and(Planner::peers_off);
        let connected = self.nodes[n].conns.len();
        let peers_on = !peers_off && connected > 0;
        let refresh = peers_on
            && Planner::refresh_due(
                self.nodes[n].files[f].last_refresh.map(|t| self.at(t)),
                inst,
            );
        if refresh {
            self.refresh_views(n, f);
        }
        let swarm_progressed = self.nodes[n]
            .swarm_progress
            .is_some_and(|t| now - t < planner::PATIENCE.as_secs_f64());
        let swarm_inflight = self.nodes[n].swarm_inflight;
        let swarm_size = self.p.swarm_size.then_some(self.alive.len());
        let node = &mut self.nodes[n];
        let fr = &mut node.files[f];
        if !peers_on {
            fr.snap.peers.clear();
            fr.seen.clear();
        }
        fr.snap.now = inst;
        fr.snap.connected = connected;
        fr.snap.swarm_progressed = swarm_progressed;
        fr.snap.swarm_inflight = swarm_inflight;
        fr.snap.swarm_size = swarm_size;
        let Some(pl) = fr.planner.as_mut() else {
            return;
        };
        if pl.note_progress(&fr.snap) {
            node.swarm_progress = Some(now);
        }
        if let Some(whole) = pl.trust_due(&fr.snap) {
            // Claimed chunk hashes are asked of the peers: a whole-file manifest checks
            // against the file hash once the swarm holds every chunk, a xorb's against
            // the xorb hash once the swarm holds all of it.
            if whole {
                let units = fr.snap.ours.len() as u32;
                if swarm_covers(&fr.snap.peers, &fr.public.held, 0, units) {
                    trust(&mut fr.snap.trusted, 0, units);
                }
            }
            for k in pl.xorbs_to_check(&fr.snap) {
                for &(a, b) in pl.ranges(k) {
                    trust(&mut fr.snap.trusted, a, b);
                }
                node.msgs += 2;
                node.msg_bytes += HAVE_REQUEST + HAVE_ANSWER;
            }
        }
        let actions = pl.assign(&fr.snap);
        if self.trace && actions.iter().any(|a| matches!(a, Action::Claim { .. })) {
            let min_quiet = fr.snap.peers.iter().filter_map(|p| p.quiet).min();
            eprintln!(
                "{now:.2} node {n} file {f}: claims; quiet here {:?}, least quiet in view {min_quiet:?}, admitted {}",
                pl.quiet(inst),
                pl.admitted(&fr.snap)
            );
            eprintln!(
                "   holders of its slots: {:?}; views {}, trusted {}",
                (0..self.shape.files[f].slots.len())
                    .map(|k| {
                        let (a, b) = self.shape.files[f].slots[k];
                        fr.snap
                            .peers
                            .iter()
                            .filter(|p| p.holds_all(&[(a, b)]))
                            .count()
                    })
                    .collect::<Vec<_>>(),
                fr.snap.peers.len(),
                fr.snap.trusted.iter().filter(|t| **t).count()
            );
        }
        self.carry_out(n, f, actions);
        let due = self.nodes[n].files[f]
            .planner
            .as_ref()
            .map(|pl| pl.due_claims(inst))
            .unwrap_or_default();
        if !due.is_empty() {
            if peers_on {
                self.refresh_views(n, f);
            }
            let fr = &mut self.nodes[n].files[f];
            let actions = fr
                .planner
                .as_mut()
                .map(|pl| pl.settle(&due, &fr.snap))
                .unwrap_or_default();
            self.carry_out(n, f, actions);
        }
        let fr = &mut self.nodes[n].files[f];
        if fr.planner.as_ref().is_some_and(Planner::finished) {
            fr.done = true;
        }
    }

    fn carry_out(&mut self, n: usize, f: usize, actions: Vec<Action>) {
        let now = self.now;
        for a in actions {
            if self.trace {
                eprintln!("{now:.2} node {n} file {f}: {a:?}");
            }
            match a {
                Action::FetchFromPeer { slot, peer, ranges } => {
                    let src = self.ids.get(&peer).copied();
                    let Some(src) = src.filter(|&s| self.nodes[s].alive) else {
                        if let Some(pl) = self.nodes[n].files[f].planner.as_mut() {
                            pl.peer_done(slot, &peer, Some(&PeerFailure::Other));
                        }
                        continue;
                    };
                    if self.nodes[src].uploading >= self.p.max_uploads {
                        // It answers `busy`; the daemon leaves it alone for a moment.
                        self.nodes[n].choked.insert(src, now + CHOKE.as_secs_f64());
                        if let Some(pl) = self.nodes[n].files[f].planner.as_mut() {
                            pl.peer_done(slot, &peer, Some(&PeerFailure::Busy));
                        }
                        continue;
                    }
                    self.nodes[src].uploading += 1;
                    let bytes = ranges::count(&ranges) as f64 * self.shape.unit_wire;
                    self.flows.push(Flow {
                        src: Src::Node(src),
                        dst: n,
                        file: f,
                        slot,
                        ranges,
                        bytes,
                        done: 0.0,
                        delivered: 0,
                        first_byte_at: now + self.p.peer_rtt_ms / 1000.0,
                        rate: 0.0,
                        permit: false,
                    });
                }
                Action::Claim { slot, swarm_limit } => {
                    let node = &mut self.nodes[n];
                    let permit = match swarm_limit {
                        None => false,
                        Some(limit) if node.swarm_inflight < limit => {
                            node.swarm_inflight += 1;
                            true
                        }
                        Some(_) => {
                            if let Some(pl) = node.files[f].planner.as_mut() {
                                pl.claim_refused(slot);
                            }
                            continue;
                        }
                    };
                    let fr = &mut node.files[f];
                    if let Some(pl) = fr.planner.as_ref() {
                        fr.public.fetching.extend_from_slice(pl.ranges(slot));
                        fr.version += 1;
                    }
                    fr.claims.insert(slot, permit);
                }
                Action::Withdraw { slot } => {
                    let node = &mut self.nodes[n];
                    let fr = &mut node.files[f];
                    if fr.claims.remove(&slot) == Some(true) {
                        node.swarm_inflight -= 1;
                    }
                    let r = fr.planner.as_ref().map(|pl| pl.ranges(slot).to_vec());
                    fr.stop_fetching(&r.unwrap_or_default());
                }
                Action::FetchFromOrigin { slot } => {
                    let fr = &mut self.nodes[n].files[f];
                    let Some(permit) = fr.claims.remove(&slot) else {
                        continue;
                    };
                    let want = fr
                        .planner
                        .as_ref()
                        .map(|pl| pl.ranges(slot).to_vec())
                        .unwrap_or_default();
                    let r = ranges::missing(&fr.public.held, &want);
                    let bytes = ranges::count(&r) as f64 * self.shape.unit_wire;
                    self.flows.push(Flow {
                        src: Src::Origin,
                        dst: n,
                        file: f,
                        slot,
                        ranges: want,
                        bytes,
                        done: 0.0,
                        delivered: 0,
                        first_byte_at: now + self.p.origin_rtt_ms / 1000.0,
                        rate: 0.0,
                        permit,
                    });
                }
            }
        }
    }

    /// Moves bytes for one step; hands over verified units, ends finished transfers and
    /// abandons peer transfers the daemon would judge too slow.
    fn advance(&mut self, dt: f64) {
        let now = self.now;
        let unit = self.shape.unit_wire;
        let mut ended = Vec::new();
        let mut slow = Vec::new();
        for (k, fl) in self.flows.iter_mut().enumerate() {
            if fl.rate <= 0.0 {
                continue;
            }
            let moved = (fl.rate * dt).min(fl.bytes - fl.done);
            fl.done += moved;
            self.nodes[fl.dst].bytes_down += moved;
            match fl.src {
                Src::Origin => {
                    self.origin_bytes += moved;
                    self.nodes[fl.dst].bytes_origin += moved;
                    if self.p.swarm_size
                        && let Some(pl) = self.nodes[fl.dst].files[fl.file].planner.as_mut()
                    {
                        pl.note_receiving(self.base + Duration::from_secs_f64(now + dt));
                    }
                }
                Src::Node(s) => {
                    self.nodes[s].bytes_up += moved;
                    let units = ((fl.done + 1e-6) / unit).floor() as u32;
                    if units > fl.delivered {
                        deliver(&mut self.nodes[fl.dst].files[fl.file], fl, units);
                        fl.delivered = units;
                    }
                    let since = now + dt - fl.first_byte_at;
                    if planner::behind(
                        fl.done as u64,
                        (fl.bytes - fl.done) as u64,
                        Duration::from_secs_f64(since.max(0.0)),
                    ) {
                        slow.push(k);
                        continue;
                    }
                }
            }
            if fl.done >= fl.bytes - 1e-6 {
                ended.push(k);
            }
        }
        let mut done_flows = Vec::new();
        let mut slow_flows = Vec::new();
        let mut k = self.flows.len();
        while k > 0 {
            k -= 1;
            if ended.binary_search(&k).is_ok() {
                done_flows.push(self.flows.swap_remove(k));
            } else if slow.binary_search(&k).is_ok() {
                slow_flows.push(self.flows.swap_remove(k));
            }
        }
        for fl in done_flows {
            self.unload(&fl);
            self.flow_done(fl);
        }
        for fl in slow_flows {
            self.unload(&fl);
            self.peer_failed(fl, PeerFailure::Other);
        }
    }

    /// A transfer ended: its sender serves one fewer.
    fn unload(&mut self, fl: &Flow) {
        if let Src::Node(s) = fl.src {
            self.nodes[s].uploading = self.nodes[s].uploading.saturating_sub(1);
        }
    }

    fn flow_done(&mut self, fl: Flow) {
        let units = self.shape.files[fl.file].units;
        let n = fl.dst;
        match fl.src {
            Src::Origin => {
                let node = &mut self.nodes[n];
                if fl.permit {
                    node.swarm_inflight -= 1;
                }
                let fr = &mut node.files[fl.file];
                // The xorb is whole: it proves, and its chunks are published.
                for &(a, b) in &fl.ranges {
                    fr.hold(a, b, units);
                }
                fr.stop_fetching(&fl.ranges);
                if let Some(pl) = fr.planner.as_mut() {
                    pl.origin_done(fl.slot);
                }
                fr.kick = true;
            }
            Src::Node(s) => {
                let elapsed = (self.now - fl.first_byte_at).max(self.p.tick_ms / 1000.0);
                let node = &mut self.nodes[n];
                let fr = &mut node.files[fl.file];
                let all = ranges::count(&fl.ranges) as u32;
                deliver(fr, &fl, all);
                let id = self.nodes[s].id.clone();
                let node = &mut self.nodes[n];
                let r = node.rates.entry(s).or_insert(0.0);
                *r = fl.bytes / elapsed;
                let fr = &mut node.files[fl.file];
                if let Some(pl) = fr.planner.as_mut() {
                    pl.peer_done(fl.slot, &id, None);
                }
                fr.kick = true;
            }
        }
    }

    fn peer_failed(&mut self, fl: Flow, why: PeerFailure) {
        let Src::Node(s) = fl.src else { return };
        self.peer_failures += 1;
        let id = self.nodes[s].id.clone();
        let fr = &mut self.nodes[fl.dst].files[fl.file];
        if let Some(pl) = fr.planner.as_mut() {
            pl.peer_done(fl.slot, &id, Some(&why));
        }
        fr.kick = true;
    }
}

/// Hands over a peer transfer's first `upto` units: each is verified on arrival, so it is
/// held and published at once.
fn deliver(fr: &mut FileRun, fl: &Flow, upto: u32) {
    let units = fr.snap.ours.len() as u32;
    let mut skip = fl.delivered;
    let mut left = upto.saturating_sub(fl.delivered);
    for &(a, b) in &fl.ranges {
        let len = b - a;
        if skip >= len {
            skip -= len;
            continue;
        }
        let from = a + skip;
        let to = (from + left).min(b);
        fr.hold(from, to, units);
        left -= to - from;
        skip = 0;
        if left == 0 {
            break;
        }
    }
}

/// Whether our verified units and the peers' together cover `[a, b)`.
fn swarm_covers(peers: &[PeerState], ours: &ranges::Ranges, a: u32, b: u32) -> bool {
    let mut all = ours.clone();
    for p in peers {
        for &(s, e) in &p.held {
            ranges::insert(&mut all, s, e);
        }
    }
    ranges::missing(&all, &[(a, b)]).is_empty()
}
