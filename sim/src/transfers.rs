//! Bytes moving: each step advances every transfer at its rate, hands over verified units,
//! ends finished transfers and abandons peer transfers the daemon would judge too slow.

use std::time::Duration;

use zestd::engine::planner::{self, PeerFailure};
use zestd::engine::swarm_origin;

use crate::net::{Flow, Src};
use crate::node::FileRun;
use crate::ranges;
use crate::world::World;

impl World {
    /// Moves bytes for one step; hands over verified units, ends finished transfers and
    /// abandons peer transfers the daemon would judge too slow.
    pub(crate) fn advance(&mut self, dt: f64) {
        let now = self.now;
        let unit = self.shape.unit_wire;
        let mut ended = Vec::new();
        let mut slow = Vec::new();
        // Transfers each node receives (zestd's `engine::receiving`): a judged one is held
        // to its share of the link. Counted as this step moves them, for the next step's
        // judging: a pass of its own over every transfer made 10,000 nodes' run 5% slower.
        let mut counting = std::mem::take(&mut self.receiving_next);
        counting.clear();
        counting.resize(self.nodes.len(), 0);
        for (k, fl) in self.flows.iter_mut().enumerate() {
            counting[fl.dst] += fl.parts as usize;
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
                    let node = &mut self.nodes[fl.dst];
                    if let Some(pl) = node.files[fl.file].planner.as_mut() {
                        pl.note_receiving(self.base + Duration::from_secs_f64(now + dt));
                    }
                    // As zestd: origin bytes are swarm progress, and the permit is handed
                    // over as the transfer nears its end.
                    node.swarm_progress = Some(now + dt);
                    if fl.permit
                        && swarm_origin::ends_within(
                            fl.done as u64,
                            (fl.bytes - fl.done) as u64,
                            Duration::from_secs_f64((now + dt - fl.first_byte_at).max(0.0)),
                            swarm_origin::HAND_OVER,
                        )
                    {
                        fl.permit = false;
                        fl.handed = true;
                        node.swarm_inflight -= 1;
                        node.handed_over += 1;
                        for fr in &mut node.files {
                            fr.kick = true;
                        }
                    }
                }
                Src::Node(s) => {
                    self.nodes[s].bytes_up += moved;
                    let units = ((fl.done + 1e-6) / unit).floor() as u32;
                    if units > fl.delivered {
                        deliver(&mut self.nodes[fl.dst].files[fl.file], fl, units);
                        self.spread.grew(fl.dst, fl.file);
                        fl.delivered = units;
                    }
                    let since = now + dt - fl.first_byte_at;
                    let judge = planner::Judge {
                        seeders_only: fl.seeders_only,
                        origin_rate: self.nodes[fl.dst].origin_pace.rate(),
                        // The simulator shares a node's cores out exactly; it has no
                        // scheduler whose wake-ups could run late.
                        starved: false,
                        transfers: self.receiving.get(fl.dst).copied().unwrap_or(1),
                    };
                    if planner::behind(
                        fl.done as u64,
                        (fl.bytes - fl.done) as u64,
                        Duration::from_secs_f64(since.max(0.0)),
                        judge,
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
        self.receiving_next = std::mem::replace(&mut self.receiving, counting);
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
            // As zestd's `failure_of`: a transfer judged against the origin that lost to it.
            let why = if fl.seeders_only {
                PeerFailure::Lagging
            } else {
                PeerFailure::Other
            };
            self.peer_failed(fl, why);
        }
    }

    /// Starts an origin transfer if the node has a fetch permit free for each of its
    /// parts and none waits before it (zestd's permits are handed out in order), else
    /// queues it behind the others (its first byte is then a round trip after it starts).
    pub(crate) fn start_origin(&mut self, mut fl: Flow) {
        let node = &mut self.nodes[fl.dst];
        let parts = fl.parts as usize;
        if node.origin_waiting.is_empty()
            && node.origin_active + parts <= self.p.fetch_concurrency.max(1)
        {
            node.origin_active += parts;
            self.flows.push(fl);
        } else {
            fl.first_byte_at = f64::INFINITY;
            node.origin_waiting.push_back(fl);
        }
    }

    /// An origin transfer of node `n` with `parts` permits ended: the ones waiting take
    /// them, in order, as long as enough are free for the first.
    fn origin_ended(&mut self, n: usize, parts: u32) {
        let limit = self.p.fetch_concurrency.max(1);
        let node = &mut self.nodes[n];
        node.origin_active = node.origin_active.saturating_sub(parts as usize);
        while node
            .origin_waiting
            .front()
            .is_some_and(|fl| node.origin_active + fl.parts as usize <= limit)
        {
            let Some(mut fl) = node.origin_waiting.pop_front() else {
                break;
            };
            fl.first_byte_at = self.now + self.p.origin_rtt_ms / 1000.0;
            node.origin_active += fl.parts as usize;
            self.flows.push(fl);
        }
    }

    /// A transfer ended: its sender serves one fewer, and its receiver has one fewer going
    /// from it.
    pub(crate) fn unload(&mut self, fl: &Flow) {
        if let Src::Node(s) = fl.src {
            self.nodes[s].uploading = self.nodes[s].uploading.saturating_sub(1);
            if let Some(l) = self.nodes[fl.dst].link(s) {
                l.asking = l.asking.saturating_sub(1);
            }
        }
    }

    fn flow_done(&mut self, fl: Flow) {
        let units = self.shape.files[fl.file].units;
        let n = fl.dst;
        match fl.src {
            Src::Origin => {
                let node = &mut self.nodes[n];
                let began = fl.first_byte_at - self.p.origin_rtt_ms / 1000.0;
                // One connection's pace, as zestd records it.
                node.origin_pace.record(
                    (fl.bytes / f64::from(fl.parts.max(1))) as u64,
                    Duration::from_secs_f64((self.now - began).max(0.0)),
                );
                if fl.permit {
                    node.swarm_inflight -= 1;
                }
                if fl.handed {
                    node.handed_over -= 1;
                }
                if self.trace {
                    eprintln!(
                        "{:.2} node {n} file {} slot {}: origin done",
                        self.now, fl.file, fl.slot
                    );
                }
                let fr = &mut node.files[fl.file];
                // The xorb is whole: it proves, and its chunks are published.
                for &(a, b) in &fl.ranges {
                    fr.hold(a, b, units);
                }
                self.spread.grew(n, fl.file);
                fr.stop_fetching(&fl.ranges);
                if let Some(pl) = fr.planner.as_mut() {
                    pl.origin_done(fl.slot);
                }
                fr.kick = true;
                self.origin_ended(n, fl.parts);
            }
            Src::Node(s) => {
                let elapsed = (self.now - fl.first_byte_at).max(self.p.tick_ms / 1000.0);
                let node = &mut self.nodes[n];
                let fr = &mut node.files[fl.file];
                let all = ranges::count(&fl.ranges) as u32;
                if self.trace {
                    eprintln!(
                        "{:.2} node {n} file {} slot {}: done {:?} from {s} in {:.2}",
                        self.now, fl.file, fl.slot, fl.ranges, elapsed
                    );
                }
                deliver(fr, &fl, all);
                self.spread.grew(n, fl.file);
                let id = self.nodes[s].id.clone();
                let node = &mut self.nodes[n];
                if let Some(l) = node.link(s) {
                    l.rate = fl.bytes / elapsed;
                }
                let fr = &mut node.files[fl.file];
                if let Some(pl) = fr.planner.as_mut() {
                    pl.peer_done(fl.slot, &id, None);
                }
                fr.kick = true;
            }
        }
    }

    pub(crate) fn peer_failed(&mut self, fl: Flow, why: PeerFailure) {
        let Src::Node(s) = fl.src else { return };
        if self.trace {
            eprintln!(
                "{:.2} node {} file {} slot {}: failed {:?} from {s}: {why:?}",
                self.now, fl.dst, fl.file, fl.slot, fl.ranges
            );
        }
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
