//! One node's download of one file, as `zestd::engine::schedule::run` carries it out: look
//! at the peers (`have`), hand the planner a snapshot, carry out its actions. Keep it in
//! step with that loop: this is what makes the simulator run the daemon's own decisions.

use rand::Rng;
use rand::seq::SliceRandom;
use zestd::engine::planner::{self, Action, PeerFailure, PeerState, Planner};
use zestd::peer::set::CHOKE;

use crate::net::{Flow, Src};
use crate::node::trust;
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

impl World {
    pub(crate) fn steps(&mut self) {
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
        // A peer that answered `busy` stays in view (zestd's `PeerSet::choke`).
        let conns = node.conns.clone();
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
            // zestd says `quiet_ms` while it downloads the file.
            view.quiet = match fr.planner.as_ref() {
                Some(pl) if !fr.done => Some(pl.quiet(self.at(self.now))),
                _ => None,
            };
            view.rate = self.nodes[n].rates.get(c).copied().unwrap_or(0.0);
            view.busy = self.nodes[n].choked.contains_key(c);
            bytes +=
                HAVE_REQUEST + HAVE_ANSWER + 8 * (view.held.len() + view.fetching.len()) as u64;
        }
        let node = &mut self.nodes[n];
        if self.p.poll {
            node.msgs += 2 * peers.len() as u64;
            node.msg_bytes += bytes;
        }
        let fr = &mut node.files[f];
        fr.snap.peers = peers;
        fr.seen = seen;
        fr.last_refresh = Some(self.now);
    }

    /// What pushed peer state costs (`watch`, docs/PROTOCOL.md §4.4): every node tells
    /// the peers downloading a file it changed, changes gathered over 50 ms, and sends a
    /// heartbeat a second while it downloads the file itself. Counted at the sender.
    pub(crate) fn pushes(&mut self) {
        if self.p.poll {
            return;
        }
        let now = self.now;
        for k in 0..self.alive.len() {
            let n = self.alive[k];
            for f in 0..self.shape.files.len() {
                let fr = &self.nodes[n].files[f];
                let since = now - fr.pushed_at;
                let urgent = fr.urgent != fr.pushed.1;
                let changed = fr.version != fr.pushed.0;
                let downloading = fr.planner.is_some() && !fr.done;
                let due = (urgent && since >= GATHER)
                    || (changed && since >= HELD_GATHER)
                    || (downloading && since >= HEARTBEAT);
                if !due {
                    continue;
                }
                let watchers = self.nodes[n]
                    .conns
                    .iter()
                    .filter(|&&c| {
                        let w = &self.nodes[c].files[f];
                        w.planner.is_some() && !w.done
                    })
                    .count() as u64;
                let fr = &self.nodes[n].files[f];
                // A delta carries the range that landed and the whole `fetching`.
                let size = UPDATE + 8 * (u64::from(changed) + fr.public.fetching.len() as u64);
                let node = &mut self.nodes[n];
                node.msgs += watchers;
                node.msg_bytes += watchers * size;
                let fr = &mut node.files[f];
                fr.pushed = (fr.version, fr.urgent);
                fr.pushed_at = now;
            }
        }
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
            fr.urgent += 1;
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
        // Pushed views are current at every step; polled ones at the planner's pace.
        let refresh = peers_on
            && (!self.p.poll
                || Planner::refresh_due(
                    self.nodes[n].files[f].last_refresh.map(|t| self.at(t)),
                    inst,
                ));
        if refresh {
            self.refresh_views(n, f);
        }
        let swarm_progressed = self.nodes[n]
            .swarm_progress
            .is_some_and(|t| now - t < planner::PATIENCE.as_secs_f64());
        let swarm_inflight = self.nodes[n].swarm_inflight;
        let swarm_size = (!self.p.no_swarm_size).then_some(self.alive.len());
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
                        fr.urgent += 1;
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
