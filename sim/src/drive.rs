//! One node's download of one file, as `zestd::engine::schedule::run` carries it out: look
//! at the peers (`have`), hand the planner a snapshot, carry out its actions. Keep it in
//! step with that loop: this is what makes the simulator run the daemon's own decisions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use rand::seq::SliceRandom;
use rayon::prelude::*;
use zestd::engine::origin_parts;
use zestd::engine::planner::{self, Action, Held, PeerFailure, PeerState, Planner};
use zestd::peer::set::choke_for;

use crate::net::{Flow, Src};
use crate::node::{FileRun, Node, trust};
use crate::params::{Params, Shape};
use crate::ranges;
use crate::world::World;

/// Wire size of a `have` request, and of an answer before its ranges (8 bytes each).
const HAVE_REQUEST: u64 = 48;
const HAVE_ANSWER: u64 = 40;
/// Wire size of a watch update before its ranges (the file hash, flags, framing).
const UPDATE: u64 = 44;
/// zestd's `WATCH_GATHER`, `WATCH_HELD_GATHER` and `WATCH_HEARTBEAT`, seconds.
const GATHER: f64 = 0.05;
const HELD_GATHER: f64 = 0.25;
const HEARTBEAT: f64 = 1.0;
/// Daemons started together spread their first claims over this window
/// (`schedule::FIRST_CLAIM_SPREAD`).
const FIRST_CLAIM_SPREAD: f64 = 0.2;

/// What a node's peers see of its file, as of the start of a tick: taken once per tick for
/// every node, so that all nodes plan in parallel against the same picture (as daemons
/// do, each seeing the others as of their last update) and only carrying out the plans
/// runs in order.
///
/// Kept as two arrays, node by node: the heads, which every pass reads for each of its 64
/// peers, and the states, read only when a head says they changed. 10,000 nodes' heads
/// fit in the cache where their states do not; one array of both made each peer of each
/// pass a cache miss (and an array of arrays, two).
#[derive(Default)]
pub struct Board {
    files: usize,
    heads: Vec<Head>,
    states: Vec<PeerState>,
}

#[derive(Clone, Copy)]
pub struct Head {
    /// The file's version the state is a copy of.
    pub version: u64,
    /// What it says as `quiet_ms` (while it downloads the file and knows of progress).
    pub quiet: Option<Duration>,
}

impl Default for Head {
    fn default() -> Head {
        Head {
            // Never a file's version: the first look copies.
            version: u64::MAX,
            quiet: None,
        }
    }
}

impl Board {
    pub fn head(&self, n: usize, f: usize) -> Head {
        self.heads[n * self.files + f]
    }

    pub fn state(&self, n: usize, f: usize) -> &PeerState {
        &self.states[n * self.files + f]
    }

    /// Room for `nodes` nodes of `files` files each (the files are the model's, fixed).
    fn fit(&mut self, nodes: usize, files: usize) {
        debug_assert!(self.heads.is_empty() || self.files == files);
        self.files = files;
        self.heads.resize_with(nodes * files, Head::default);
        self.states.resize_with(nodes * files, PeerState::default);
    }

    /// Every node's heads and states, `files` apiece, in node order.
    fn all_mut(&mut self) -> (&mut [Head], &mut [PeerState]) {
        (&mut self.heads, &mut self.states)
    }
}

/// What planning reads besides the node itself.
struct Ctx<'a> {
    board: &'a Board,
    now: f64,
    base: Instant,
    p: &'a Params,
    shape: &'a Shape,
    swarm_size: Option<usize>,
    trace: bool,
}

impl Ctx<'_> {
    fn at(&self, t: f64) -> Instant {
        self.base + Duration::from_secs_f64(t)
    }
}

/// One pass of a node's planner over one file: what to carry out, in order.
struct Pass {
    n: usize,
    f: usize,
    actions: Vec<Action>,
}

impl World {
    /// Every node's planner looks at its peers and decides (in parallel: it reads only the
    /// board and changes only its own node); then the decisions are carried out in node
    /// order.
    pub(crate) fn steps(&mut self) {
        self.start_pulls();
        self.show();
        let ctx = Ctx {
            board: &self.board,
            now: self.now,
            base: self.base,
            p: &self.p,
            shape: &self.shape,
            swarm_size: (!self.p.no_swarm_size).then_some(self.alive.len()),
            trace: self.trace,
        };
        let plan_node = |(n, node): (usize, &mut Node)| -> Vec<Pass> {
            if !node.alive || !node.pulls || node.finished.is_some() {
                return Vec::new();
            }
            (0..ctx.shape.files.len())
                .filter_map(|f| plan(node, n, f, &ctx))
                .collect()
        };
        // Traced runs plan in order, so the trace reads in order.
        let passes: Vec<Pass> = if self.trace {
            self.nodes
                .iter_mut()
                .enumerate()
                .flat_map(plan_node)
                .collect()
        } else {
            self.nodes
                .par_iter_mut()
                .enumerate()
                .flat_map_iter(plan_node)
                .collect()
        };
        for Pass { n, f, actions } in passes {
            self.carry_out(n, f, actions);
            let fr = &mut self.nodes[n].files[f];
            if fr.planner.as_ref().is_some_and(Planner::finished) {
                fr.done = true;
            }
        }
        for k in 0..self.alive.len() {
            let node = &mut self.nodes[self.alive[k]];
            if node.pulls && node.finished.is_none() && node.files.iter().all(|f| f.done) {
                node.finished = Some(self.now);
                if self.trace {
                    eprintln!(
                        "{:.2} node {}: finished, pull {:.2}",
                        self.now,
                        self.alive[k],
                        self.now - node.arrived
                    );
                }
            }
        }
    }

    /// Files whose pull starts now get their planner, in node order: daemons started
    /// together see some of the others already involved and spread their first claims,
    /// and the one that starts first sees nobody.
    fn start_pulls(&mut self) {
        let inst = self.at(self.now);
        for k in 0..self.alive.len() {
            let n = self.alive[k];
            if !self.nodes[n].pulls || self.nodes[n].finished.is_some() {
                continue;
            }
            for f in 0..self.shape.files.len() {
                let fr = &self.nodes[n].files[f];
                if fr.done || self.now < fr.not_before || fr.planner.is_some() {
                    continue;
                }
                let shape = &self.shape.files[f];
                let involved = self.nodes[n]
                    .conns
                    .iter()
                    .any(|&c| self.nodes[c].files[f].public.involved);
                let node = &mut self.nodes[n];
                let mut order: Vec<usize> = (0..shape.slots.len()).collect();
                if !node.conns.is_empty() {
                    order.shuffle(&mut node.rng);
                }
                let slots: Vec<_> = shape.slots.iter().map(|&r| vec![r]).collect();
                let pl = Planner::new(
                    node.id.clone(),
                    slots.clone(),
                    slots,
                    order,
                    shape.units,
                    inst,
                );
                let spread = node.rng.random::<f64>() * FIRST_CLAIM_SPREAD;
                let draw = node.rng.random::<f64>();
                let fr = &mut node.files[f];
                fr.snap.origin_draw = draw;
                fr.planner = Some(pl);
                fr.public.involved = true;
                fr.version += 1;
                fr.urgent += 1;
                fr.kick = true;
                if involved {
                    fr.not_before = self.now + spread;
                }
            }
        }
    }

    /// Copies onto the board what changed of each live node's files, when its daemon would
    /// push it (`push`): a peer's view lags what it shows by up to 250 ms of growth, as
    /// zestd's watchers' do. Before, the board showed every change at once, fresher than
    /// any daemon sees its peers (simulated flash of 64 × 2 GiB: 1.172× then, 1.183× now),
    /// and every view re-read its peer at every step.
    fn show(&mut self) {
        let inst = self.at(self.now);
        let now = self.now;
        let poll = self.p.poll;
        let files = self.shape.files.len();
        self.board.fit(self.nodes.len(), files);
        // Who downloads what, read once: counting each pusher's watchers read 64 other
        // nodes' files apiece, a cache miss each.
        let pulling: Vec<bool> = if poll {
            Vec::new()
        } else {
            self.nodes
                .par_iter()
                .flat_map_iter(|node| node.files.iter())
                .map(|w| w.planner.is_some() && !w.done)
                .collect()
        };
        let (heads, states) = self.board.all_mut();
        // Each node shows its own part of the board, so nodes are shown in parallel (this
        // was a serial tenth of a 10,000-node tick); what changed is gathered in node order.
        let shown: Vec<Option<(bool, Vec<usize>)>> = self
            .nodes
            .par_iter_mut()
            .zip(heads.par_chunks_mut(files))
            .zip(states.par_chunks_mut(files))
            .map(|((node, heads), states)| {
                if !node.alive {
                    return None;
                }
                let relinked = std::mem::take(&mut node.relinked);
                // Files whose claims changed, or whose relay must go.
                let mut changed = Vec::new();
                let shown = heads.iter_mut().zip(states.iter_mut());
                for (f, (fr, (h, s))) in node.files.iter_mut().zip(shown).enumerate() {
                    // Pushed state reaches the watchers when zestd's `watch` sends it, not
                    // at every change: polls read it as it is.
                    let sent = poll || {
                        let pushed = push(fr, now);
                        if let Some(size) = pushed {
                            let watchers = node
                                .conns
                                .iter()
                                .filter(|&&c| pulling[c * files + f])
                                .count() as u64;
                            node.msgs += watchers;
                            node.msg_bytes += watchers * size;
                        }
                        pushed.is_some()
                    };
                    // A node first shown is told whole, as a new watch begins with the
                    // whole state.
                    let first = h.version == Head::default().version;
                    if (sent || first) && h.version != fr.version {
                        // What peers relay reads their claims, relays and completion.
                        if !Arc::ptr_eq(&s.fetching, &fr.public.fetching)
                            || !Arc::ptr_eq(&s.relayed, &fr.public.relayed)
                            || s.complete != fr.public.complete
                        {
                            changed.push(f);
                        }
                        s.clone_from(&fr.public);
                        h.version = fr.version;
                    }
                    if fr.done && !fr.public.relayed.is_empty() {
                        changed.push(f);
                    }
                    h.quiet = match fr.planner.as_ref() {
                        Some(pl) if !fr.done => pl.told_quiet(inst),
                        _ => None,
                    };
                }
                Some((relinked, changed))
            })
            .collect();
        let mut changed = Vec::new();
        let mut relinked = Vec::new();
        for (n, (re, ch)) in shown
            .into_iter()
            .enumerate()
            .filter_map(|(n, s)| Some((n, s?)))
        {
            if re {
                relinked.extend((0..files).map(|f| (n, f)));
            }
            changed.extend(ch.into_iter().map(|f| (n, f)));
        }
        self.relay(changed, relinked);
    }

    /// What each node relays of its peers' origin claims (zestd's watch responder, from
    /// its views of the peers: `FileHave.relayed`, docs/PROTOCOL.md §4.1 and §6), recomputed for the
    /// peers of nodes whose claims changed and for nodes whose peers changed; shown from the next tick on, as a watch
    /// update goes 50 ms after the change that caused it.
    fn relay(&mut self, changed: Vec<(usize, usize)>, relinked: Vec<(usize, usize)>) {
        if self.p.no_swarm_size {
            return;
        }
        let swarm = self.alive.len();
        // Nodes whose peers changed recompute from their new set of views.
        let mut dirty: Vec<(usize, usize)> = relinked;
        for (c, f) in changed {
            dirty.push((c, f));
            dirty.extend(self.nodes[c].conns.iter().map(|&n| (n, f)));
        }
        dirty.sort_unstable();
        dirty.dedup();
        // Each relay reads the board and its own node only, so they are worked out in
        // parallel (serially, this was a tenth of a 10,000-node run's wall time) and
        // applied in order.
        let (nodes, board) = (&self.nodes, &self.board);
        let relays: Vec<(usize, usize, Vec<planner::Relayed>)> = dirty
            .into_par_iter()
            .filter_map(|(n, f)| {
                let node = &nodes[n];
                let fr = &node.files[f];
                let downloading = node.alive && fr.planner.is_some() && !fr.done;
                let relayed = if downloading && planner::relays(Some(swarm), node.conns.len()) {
                    let own = fr.planner.as_ref().map(Planner::origin_fetched);
                    planner::relay(
                        &node.id,
                        own.as_deref().unwrap_or_default(),
                        planner::RELAY_HOPS,
                        node.conns.iter().map(|&c| board.state(c, f)),
                    )
                } else {
                    Vec::new()
                };
                (*fr.public.relayed != relayed).then_some((n, f, relayed))
            })
            .collect();
        for (n, f, relayed) in relays {
            let fr = &mut self.nodes[n].files[f];
            fr.public.relayed = relayed.into();
            fr.relay_version += 1;
            fr.version += 1;
            fr.urgent += 1;
        }
    }
}

/// Whether file run `fr` pushes its state to its watchers now (zestd's `watch`,
/// docs/PROTOCOL.md §4.4): changes gathered over 50 ms (claims, completion) or 250 ms
/// (growth of what it holds), and a heartbeat a second while it downloads the file itself.
/// If so, records the push and returns the size of one update: a delta carries the range
/// that landed, the whole `fetching`, and `relayed` when it changed (a range, hops and a
/// 16-character node id each). Counted at the sender, once per watcher.
fn push(fr: &mut FileRun, now: f64) -> Option<u64> {
    let since = now - fr.pushed_at;
    let urgent = fr.urgent != fr.pushed.1;
    let changed = fr.version != fr.pushed.0;
    let downloading = fr.planner.is_some() && !fr.done;
    let due = (urgent && since >= GATHER)
        || (changed && since >= HELD_GATHER)
        || (downloading && since >= HEARTBEAT);
    if !due {
        return None;
    }
    let relayed = if fr.relay_version != fr.relay_pushed {
        26 * fr.public.relayed.len() as u64
    } else {
        0
    };
    let size = UPDATE + 8 * (u64::from(changed) + fr.public.fetching.len() as u64) + relayed;
    fr.pushed = (fr.version, fr.urgent);
    fr.pushed_at = now;
    fr.relay_pushed = fr.relay_version;
    Some(size)
}

/// Whether node `n`'s file `f` is due a pass of the scheduler loop now; if so, runs it.
fn plan(node: &mut Node, n: usize, f: usize, ctx: &Ctx) -> Option<Pass> {
    let inst = ctx.at(ctx.now);
    let fr = &node.files[f];
    if fr.done || ctx.now < fr.not_before {
        return None;
    }
    // The clock first: asking the planner touches every slot of it, for every node every
    // tick.
    let due = fr.kick
        || fr.planner.as_ref().is_none_or(|pl| {
            (fr.last_refresh
                .is_none_or(|t| Planner::refresh_due(Some(ctx.at(t)), inst))
                && pl.waiting())
                || (!fr.claims.is_empty() && !pl.due_claims(inst).is_empty())
        });
    due.then(|| Pass {
        n,
        f,
        actions: step(node, n, f, ctx),
    })
}

/// Takes in what the node's peers say of file `f` now (one `have` each): the planner's
/// view is updated in place, re-reading only peers whose state changed.
fn refresh_views(node: &mut Node, f: usize, ctx: &Ctx) {
    let now = ctx.now;
    let fr = &mut node.files[f];
    let peers = fr.snap.peers_mut();
    let seen = &mut fr.seen;
    // A peer that answered `busy` stays in view (zestd's `PeerSet::choke`).
    if fr.seen_conns != Some(node.conns_changes) {
        peers.clear();
        seen.clear();
        for &c in &node.conns {
            peers.push(ctx.board.state(c, f).clone());
            seen.push((c, ctx.board.head(c, f).version));
        }
        fr.seen_conns = Some(node.conns_changes);
    }
    let mut bytes = 0;
    let views = peers.iter_mut().zip(seen.iter_mut()).zip(&node.links);
    for ((view, (c, version)), link) in views {
        let head = ctx.board.head(*c, f);
        if head.version != *version {
            take_shown(view, ctx.board.state(*c, f));
            *version = head.version;
        }
        view.quiet = head.quiet;
        view.rate = link.rate;
        view.busy = link.choked_until > now;
        view.asked = link.asking;
        // Only polls are counted here (pushed updates are, in `pushes`): the lists' lengths
        // are two reads from memory no other part of the pass touches, for every peer.
        if ctx.p.poll {
            bytes +=
                HAVE_REQUEST + HAVE_ANSWER + 8 * (view.held.len() + view.fetching.len()) as u64;
        }
    }
    if ctx.p.poll {
        node.msgs += 2 * peers.len() as u64;
        node.msg_bytes += bytes;
    }
    fr.last_refresh = Some(now);
}

/// Copies what a peer shows into this node's view of it, field by field: cloning the whole
/// state allocated its id anew for every changed view, every tick (a tenth of a
/// 2,000-node run). The id is not even compared: views are rebuilt when connections
/// change, so it is the same peer's, and the comparison, a cache miss on each id, was 8%
/// of a 10,000-node run's profile. Nor are the shared lists that did not change cloned
/// again: each clone and drop is an atomic write to a counter the 64 observers of the list
/// share.
fn take_shown(view: &mut PeerState, shown: &PeerState) {
    // Destructured, so a field added to `PeerState` is a compile error here, not a view
    // that silently keeps it stale.
    let PeerState {
        id,
        complete,
        involved,
        held,
        fetching,
        rate,
        quiet,
        busy,
        asked,
        relayed,
    } = shown;
    debug_assert_eq!(view.id, *id, "a view is of the peer it was made for");
    view.complete = *complete;
    view.involved = *involved;
    if !Held::same(&view.held, held) {
        view.held.clone_from(held);
    }
    share(&mut view.fetching, fetching);
    view.rate = *rate;
    view.quiet = *quiet;
    view.busy = *busy;
    view.asked = *asked;
    share(&mut view.relayed, relayed);
}

/// `view = shown`, for a shared list: nothing to do when it is the same one.
fn share<T>(view: &mut Arc<T>, shown: &Arc<T>) {
    if !Arc::ptr_eq(view, shown) {
        view.clone_from(shown);
    }
}

/// One pass of `schedule::run`'s loop for node `n`'s file `f`: its planner's decisions,
/// to be carried out in order (those of `assign`, then those of `settle`).
fn step(node: &mut Node, n: usize, f: usize, ctx: &Ctx) -> Vec<Action> {
    let now = ctx.now;
    let inst = ctx.at(now);
    node.files[f].kick = false;
    let peers_off = node.files[f]
        .planner
        .as_ref()
        .is_some_and(Planner::peers_off);
    let connected = node.conns.len();
    let peers_on = !peers_off && connected > 0;
    // Pushed views are read at every step (they change as pushes land); polled ones at the
    // planner's pace.
    let refresh = peers_on
        && (!ctx.p.poll
            || Planner::refresh_due(node.files[f].last_refresh.map(|t| ctx.at(t)), inst));
    if refresh {
        refresh_views(node, f, ctx);
    }
    let swarm_progressed = node
        .swarm_progress
        .is_some_and(|t| now - t < planner::PATIENCE.as_secs_f64());
    let swarm_inflight = node.swarm_inflight;
    // Peers fetching from the origin any file this node still downloads, as zestd's
    // `SwarmOrigin` gathers them from its running file downloads (a finished one reports
    // nothing); the planner asks only while the swarm is all in view, so it is not counted
    // in swarms beyond it (where it would cost every node every pass).
    let (fleet_fetchers, fleet_fetchers_below) =
        if peers_on && ctx.swarm_size.is_none_or(|s| s <= connected + 1) {
            let running: Vec<usize> = (0..node.files.len())
                .filter(|&g| !node.files[g].done)
                .collect();
            let fetching = |c: usize| {
                running
                    .iter()
                    .any(|&g| !ctx.board.state(c, g).fetching.is_empty())
            };
            let mut all = 0;
            let mut below = 0;
            for &c in node.conns.iter().filter(|&&c| fetching(c)) {
                all += 1;
                if ctx.board.state(c, 0).id < node.id {
                    below += 1;
                }
            }
            (all, below)
        } else {
            (0, 0)
        };
    let handed_over = node.handed_over;
    let peer_transfers = node.links.iter().map(|l| l.asking).sum();
    let fr = &mut node.files[f];
    if !peers_on {
        fr.snap.peers_mut().clear();
        fr.seen.clear();
        fr.seen_conns = None;
    }
    fr.snap.now = inst;
    fr.snap.connected = connected;
    fr.snap.swarm_progressed = swarm_progressed;
    fr.snap.swarm_inflight = swarm_inflight;
    fr.snap.fleet_fetchers = fleet_fetchers;
    fr.snap.fleet_fetchers_below = fleet_fetchers_below;
    fr.snap.handed_over = handed_over;
    fr.snap.swarm_size = ctx.swarm_size;
    fr.snap.peer_transfers = peer_transfers;
    let Some(pl) = fr.planner.as_mut() else {
        return Vec::new();
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
            if swarm_covers(fr.snap.peers(), &fr.public.held, 0, units) {
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
    let mut actions = pl.assign(&fr.snap);
    if ctx.trace && actions.iter().any(|a| matches!(a, Action::Claim { .. })) {
        let min_quiet = fr.snap.peers().iter().filter_map(|p| p.quiet).min();
        eprintln!(
            "{now:.2} node {n} file {f}: claims; quiet here {:?}, least quiet in view {min_quiet:?}, admitted {}",
            pl.quiet(inst),
            pl.admitted(&fr.snap)
        );
        eprintln!(
            "   holders of its slots: {:?}; views {}, trusted {}",
            ctx.shape.files[f]
                .slots
                .iter()
                .map(|&(a, b)| fr
                    .snap
                    .peers()
                    .iter()
                    .filter(|p| p.holds_all(&[(a, b)]))
                    .count())
                .collect::<Vec<_>>(),
            fr.snap.peers().len(),
            fr.snap.trusted.iter().filter(|t| **t).count()
        );
        let over = |r: (u32, u32), a: u32, b: u32| r.0 < b && a < r.1;
        eprintln!(
            "   claims seen on its slots (own, relayed): {:?}; swarm {:?}, peers relaying {}",
            ctx.shape.files[f]
                .slots
                .iter()
                .map(|&(a, b)| {
                    let own = fr
                        .snap
                        .peers()
                        .iter()
                        .filter(|p| p.fetching.iter().any(|&r| over(r, a, b)))
                        .count();
                    let relayed = fr
                        .snap
                        .peers()
                        .iter()
                        .flat_map(|p| p.relayed.iter())
                        .filter(|c| over(c.range, a, b))
                        .count();
                    (own, relayed)
                })
                .collect::<Vec<_>>(),
            fr.snap.swarm_size,
            fr.snap
                .peers()
                .iter()
                .filter(|p| !p.relayed.is_empty())
                .count()
        );
    }
    // Claims made long enough ago settle against a fresh look (the daemon looks again
    // after carrying out `assign`'s actions; none of those touches a due claim).
    let due = pl.due_claims(inst);
    if !due.is_empty() {
        // Pushed views taken at this step are as fresh as they can be (the board changes
        // between ticks only); a daemon that polls asks its peers again.
        if peers_on && (ctx.p.poll || !refresh) {
            refresh_views(node, f, ctx);
        }
        let fr = &mut node.files[f];
        if let Some(pl) = fr.planner.as_mut() {
            actions.extend(pl.settle(&due, &fr.snap));
        }
    }
    actions
}

impl World {
    fn carry_out(&mut self, n: usize, f: usize, actions: Vec<Action>) {
        let now = self.now;
        for a in actions {
            if self.trace {
                eprintln!("{now:.2} node {n} file {f}: {a:?}");
            }
            match a {
                Action::FetchFromPeer {
                    slot,
                    peer,
                    ranges,
                    seeders_only,
                } => {
                    let src = self.ids.get(&peer).copied();
                    let Some(src) = src.filter(|&s| self.nodes[s].alive) else {
                        if let Some(pl) = self.nodes[n].files[f].planner.as_mut() {
                            pl.peer_done(slot, &peer, Some(&PeerFailure::Other));
                        }
                        continue;
                    };
                    if self.nodes[src].uploading >= self.p.max_uploads {
                        // It answers `busy`; the daemon leaves it alone for a moment.
                        if self.trace {
                            eprintln!("{now:.2} node {n} file {f} slot {slot}: busy {src}");
                        }
                        let held: u64 = self.nodes[n]
                            .files
                            .iter()
                            .map(|r| ranges::count(&r.public.held))
                            .sum();
                        let total = self.shape.total_units();
                        let choke = choke_for(total.saturating_sub(held), total);
                        if let Some(l) = self.nodes[n].link(src) {
                            l.choked_until = now + choke.as_secs_f64();
                        }
                        if let Some(pl) = self.nodes[n].files[f].planner.as_mut() {
                            pl.peer_done(slot, &peer, Some(&PeerFailure::Busy));
                        }
                        continue;
                    }
                    self.nodes[src].uploading += 1;
                    if let Some(l) = self.nodes[n].link(src) {
                        l.asking += 1;
                    }
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
                        handed: false,
                        seeders_only,
                        parts: 1,
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
                    if let Some(r) = fr.planner.as_ref().map(|pl| pl.ranges(slot).to_vec()) {
                        fr.start_fetching(&r);
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
                    let parts = if self.p.whole_ranges {
                        1
                    } else {
                        origin_parts::count(bytes as u64, self.p.fetch_concurrency)
                    };
                    self.start_origin(Flow {
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
                        handed: false,
                        seeders_only: false,
                        parts: parts as u32,
                    });
                }
            }
        }
    }
}

/// Whether our verified units and the peers' together cover `[a, b)`.
fn swarm_covers(peers: &[PeerState], ours: &[(u32, u32)], a: u32, b: u32) -> bool {
    let mut all = ours.to_vec();
    for p in peers {
        for &(s, e) in p.held.iter() {
            ranges::insert(&mut all, s, e);
        }
    }
    ranges::missing(&all, &[(a, b)]).is_empty()
}
