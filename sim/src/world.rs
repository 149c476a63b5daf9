//! The simulation's clock and population: nodes arrive, find peers as a tracker hands
//! them out, leave and are replaced; each 50 ms tick (the daemon's scheduler tick)
//! `drive` runs every node's planner and `transfers` moves the bytes it asked for, at the
//! rates `net` gives them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use zestd::engine::planner::{PeerFailure, Planner};

use crate::drive::Board;
use crate::net::{Caps, Flow, Src, assign_rates};
use crate::node::{FileRun, Node};
use crate::params::{Params, Scenario, Shape};

pub struct World {
    pub p: Params,
    pub shape: Shape,
    pub(crate) rng: SmallRng,
    pub(crate) base: Instant,
    pub now: f64,
    pub nodes: Vec<Node>,
    pub(crate) ids: HashMap<String, usize>,
    pub(crate) alive: Vec<usize>,
    pub(crate) flows: Vec<Flow>,
    /// What each node shows its peers, per file, as of the current tick's start.
    pub(crate) board: Board,
    pub(crate) caps: Caps,
    /// Arrivals still to come (time, holds the model), latest first.
    pub(crate) arrivals: Vec<(f64, bool)>,
    pub(crate) churn_due: f64,
    pub origin_bytes: f64,
    pub cpu_seconds: f64,
    pub peer_failures: u64,
    /// Hub requests (API and reconstructions) the pulls made, by `hub_asks`.
    pub hub_requests: u64,
    /// The answers each pull needs from the Hub.
    pub(crate) hub_queries: Vec<zestd::hubmeta::Query>,
    /// Each node's routes to the fleet's anchors (`zestd::hubmeta::anchor`), by node.
    pub(crate) routes: Vec<Vec<zestd::hubmeta::anchor::Hop>>,
    /// When the routes were last polled (simulated seconds).
    pub(crate) routes_at: f64,
    /// Members whose Hub answers were asked of the Hub once (`hub_asks::root`).
    pub(crate) roots: std::collections::HashSet<usize>,
    /// `ZEST_SIM_TRACE` set: every action to stderr.
    pub(crate) trace: bool,
    /// When the origin last sent a byte (simulated seconds).
    pub origin_last_s: f64,
    pub spread: crate::spread::SlotSpread,
    /// Transfers each node received at the last step (zestd's `engine::receiving`),
    /// counted while that step moved them; and the list the next count goes into.
    pub receiving: Vec<usize>,
    pub receiving_next: Vec<usize>,
}

impl World {
    pub fn new(p: Params) -> World {
        let shape = Shape::of(&p);
        let (shape_files, p_git_files) = (shape.files.len(), p.git_files);
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
            link_share: p.link_share,
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
            board: Board::default(),
            caps,
            arrivals,
            churn_due: 0.0,
            origin_bytes: 0.0,
            cpu_seconds: 0.0,
            peer_failures: 0,
            hub_requests: 0,
            hub_queries: crate::hub_asks::queries(shape_files, p_git_files),
            routes: Vec::new(),
            routes_at: 0.0,
            roots: std::collections::HashSet::new(),
            trace: std::env::var_os("ZEST_SIM_TRACE").is_some(),
            origin_last_s: 0.0,
            spread: crate::spread::SlotSpread::default(),
            receiving: Vec::new(),
            receiving_next: Vec::new(),
        }
    }

    pub fn one_copy_s(&self) -> f64 {
        self.shape.copy_bytes() / self.p.origin_bps()
    }

    pub(crate) fn at(&self, t: f64) -> Instant {
        self.base + Duration::from_secs_f64(t)
    }

    /// Runs until every live node that pulls has the model, or the time limit.
    pub fn run(&mut self) {
        let dt = self.p.tick_ms / 1000.0;
        let limit = self.one_copy_s() * self.p.max_copies_time + self.p.spread_s;
        if self.p.hub_only {
            while !self.arrivals.is_empty() {
                self.arrive();
                self.announce();
                self.now += dt;
            }
            return;
        }
        loop {
            self.arrive();
            self.churn(dt);
            self.announce();
            self.steps();
            let used = assign_rates(&mut self.flows, self.nodes.len(), &self.caps, self.now);
            self.cpu_seconds += used * dt;
            let origin_before = self.origin_bytes;
            self.advance(dt);
            let shown = (self.now / 10.0).floor();
            self.now += dt;
            if self.origin_bytes > origin_before {
                self.origin_last_s = self.now;
            }
            if self.p.progress && (self.now / 10.0).floor() > shown {
                self.show_progress();
            }
            let pulling = self
                .alive
                .iter()
                .any(|&n| self.nodes[n].pulls && self.nodes[n].finished.is_none());
            let last = (!pulling && self.arrivals.is_empty()) || self.now > limit;
            self.sample_spread(last);
            if last {
                if self.trace {
                    self.dump_unfinished();
                }
                break;
            }
        }
    }

    fn sample_spread(&mut self, last: bool) {
        if !self.spread.due(self.now, last) {
            return;
        }
        let pulling: Vec<usize> = self
            .alive
            .iter()
            .copied()
            .filter(|&n| self.nodes[n].pulls)
            .collect();
        self.spread
            .sample(self.now, &self.shape, &self.nodes, &pulling);
    }

    fn show_progress(&self) {
        let finished = self
            .nodes
            .iter()
            .filter(|n| n.pulls && n.finished.is_some())
            .count();
        eprintln!(
            "{:.0} s simulated: {finished} of {} pulls finished, {:.3} origin copies, {:.0} s wall",
            self.now,
            self.nodes.iter().filter(|n| n.pulls).count(),
            self.origin_bytes / self.shape.copy_bytes(),
            self.base.elapsed().as_secs_f64()
        );
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
                    fr.snap.peers().len()
                );
            }
        }
    }

    fn arrive(&mut self) {
        let mut pulling = Vec::new();
        while self.arrivals.last().is_some_and(|a| a.0 <= self.now) {
            let Some((_, holds)) = self.arrivals.pop() else {
                break;
            };
            let n = self.spawn(holds);
            if !holds {
                pulling.push(n);
            }
        }
        // Pulls start once this moment's arrivals have connected (a node's first peers
        // answer within milliseconds of its start).
        self.count_hub_requests(&pulling);
    }

    /// What the pulls of `pulling` ask the Hub: one node's requests for each member their
    /// questions stop at that had not been asked before (`hub_asks`), with the routes the
    /// daemons' polls have spread by now (all the way, with `--settled-routes`).
    pub(crate) fn count_hub_requests(&mut self, pulling: &[usize]) {
        self.poll_routes();
        if pulling.is_empty() {
            return;
        }
        let entries = self.polled();
        // Each root follows routes from what the members said at the last poll only, so
        // they are found in parallel (serially, a 2,000-node crowd's arrival was a third of
        // its run's serial part).
        let roots: Vec<usize> = pulling
            .par_iter()
            .map(|&n| crate::hub_asks::root(n, |k| self.table_now(k, &entries), &self.ids))
            .collect();
        for r in roots {
            if self.roots.insert(r) {
                self.hub_requests += crate::hub_asks::per_root(&self.hub_queries);
            }
        }
    }

    /// The route polls due since the last ones: every member asks each of its peers at
    /// once, every `anchor::POLL`.
    fn poll_routes(&mut self) {
        use zestd::hubmeta::anchor::{MAX_HOPS, POLL};
        let poll = POLL.as_secs_f64();
        if self.p.settled_routes {
            for _ in 0..4 * MAX_HOPS {
                if !self.route_round() {
                    break;
                }
            }
            return;
        }
        let due = ((self.now - self.routes_at) / poll).floor().max(0.0);
        self.routes_at += due * poll;
        for _ in 0..(due as u32).min(4 * MAX_HOPS) {
            if !self.route_round() {
                break;
            }
        }
    }

    /// One round of route polls, as each daemon's `HubMeta::poll_routes` and
    /// `anchor::table` do; whether any node's routes changed. A heartbeat is the anchor's
    /// clock, so a departed anchor's beats age out.
    fn route_round(&mut self) -> bool {
        let entries = self.polled();
        // Each node's table reads only what the others said at the last poll: worked out
        // in parallel (early in a 10,000-node run, rounds were about a third of a tick's
        // serial part).
        let tables: Vec<_> = self
            .alive
            .par_iter()
            .map(|&n| self.table_now(n, &entries))
            .collect();
        let mut changed = false;
        for (k, t) in tables.into_iter().enumerate() {
            let n = self.alive[k];
            if t != self.routes[n] {
                changed = true;
                self.routes[n] = t;
            }
        }
        changed
    }

    /// What each node said at the last poll.
    fn polled(&mut self) -> Vec<Vec<zestd::hubmeta::anchor::Entry>> {
        use zestd::hubmeta::anchor::Hop;
        self.routes.resize(self.nodes.len(), Vec::new());
        self.routes
            .iter()
            .map(|t| t.iter().map(Hop::entry).collect())
            .collect()
    }

    /// Node `n`'s routes as it works them out when asked: its connections now, and what
    /// they said at the last poll (`HubMeta::route_table`).
    fn table_now(
        &self,
        n: usize,
        entries: &[Vec<zestd::hubmeta::anchor::Entry>],
    ) -> Vec<zestd::hubmeta::anchor::Hop> {
        use zestd::hubmeta::anchor::{self, Report, STALE_AFTER};
        let now_ms = (self.now * 1000.0) as u64;
        let stale = STALE_AFTER.as_millis() as u64;
        let node = &self.nodes[n];
        let connected: Vec<&str> = node
            .conns
            .iter()
            .map(|&c| self.nodes[c].id.as_str())
            .collect();
        let reports: Vec<Report<'_>> = node
            .conns
            .iter()
            .map(|&c| Report {
                peer: self.nodes[c].id.as_str(),
                entries: &entries[c],
            })
            .collect();
        anchor::table(&node.id, now_ms, &connected, &reports, |_, seq| {
            now_ms.saturating_sub(seq) < stale
        })
    }

    fn spawn(&mut self, holds: bool) -> usize {
        let n = self.nodes.len();
        let id = format!("{:016x}", self.rng.random::<u64>());
        let rng = SmallRng::seed_from_u64(self.rng.random());
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
        if self.trace {
            eprintln!("{:.2} node {n}: arrives, holds {holds}", self.now);
        }
        if holds {
            for f in 0..self.shape.files.len() {
                self.spread.grew(n, f);
            }
        }
        self.nodes.push(Node {
            id,
            rng,
            alive: true,
            pulls: !holds,
            arrived: self.now,
            finished: holds.then_some(self.now),
            left: None,
            conns: Vec::new(),
            links: Vec::new(),
            conns_changes: 0,
            relinked: false,
            files,
            swarm_inflight: 0,
            handed_over: 0,
            swarm_progress: None,
            origin_active: 0,
            origin_waiting: Default::default(),
            uploading: 0,
            origin_pace: Default::default(),
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
    /// connects to those that are not at their connection cap. It dials up to its cap; a
    /// node accepts dials up to the cap plus zestd's `INCOMING_HEADROOM`, so that newcomers
    /// can reach a swarm whose first members filled their caps with each other.
    fn connect(&mut self, n: usize) {
        let cap = self.p.max_peers;
        let accept_cap = cap + zestd::peer::set::INCOMING_HEADROOM;
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
            if self.nodes[c].conns.len() >= accept_cap {
                continue;
            }
            self.nodes[n].link_to(c);
            self.nodes[c].link_to(n);
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
            let joined = self.spawn(false);
            self.count_hub_requests(&[joined]);
        }
    }

    pub(crate) fn leave(&mut self, n: usize) {
        self.alive.retain(|&x| x != n);
        let node = &mut self.nodes[n];
        node.alive = false;
        node.left = Some(self.now);
        node.origin_waiting.clear();
        node.origin_active = 0;
        for c in node.unlink_all() {
            self.nodes[c].unlink(n);
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
}
