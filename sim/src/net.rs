//! Transfers in flight and the rates they get: each shares its sender's uplink and its
//! receiver's downlink with the other transfers there (the origin's link likewise),
//! max-min fairly by default ([`crate::link_share`]) or split equally, and a node short of
//! CPU slows all of its transfers alike.

use crate::params::LinkShare;
use crate::ranges::Ranges;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Src {
    Origin,
    Node(usize),
}

#[derive(Clone, Debug)]
pub struct Flow {
    pub src: Src,
    pub dst: usize,
    pub file: usize,
    pub slot: usize,
    /// The units it delivers, in order.
    pub ranges: Ranges,
    pub bytes: f64,
    pub done: f64,
    /// Peer transfers: units handed over so far (each is verified as it arrives).
    pub delivered: u32,
    /// When its first byte can arrive (request time plus a round trip).
    pub first_byte_at: f64,
    pub rate: f64,
    /// Origin transfers: holds one of the node's swarm origin permits.
    pub permit: bool,
    /// Origin transfers: handed its permit over before its end (counted in the node's
    /// `handed_over` until it ends).
    pub handed: bool,
    /// Peer transfers: judged against the origin (`planner::Judge::seeders_only`).
    pub seeders_only: bool,
    /// Connections it takes: 1 from a peer; from the origin, the requests its range is cut
    /// into (`origin_parts`), each holding a fetch permit and a share of the links.
    pub parts: u32,
}

impl Flow {
    pub fn active(&self, now: f64) -> bool {
        now >= self.first_byte_at
    }
}

/// The capacities rates are shared out of.
pub struct Caps {
    pub origin: f64,
    pub node: f64,
    /// CPU seconds per byte: received from the origin, received from a peer, sent.
    pub cpu_origin_in: f64,
    pub cpu_peer_in: f64,
    pub cpu_peer_out: f64,
    pub cores: f64,
    pub shared_cores: Option<f64>,
    /// Shared cores only: each busy node beyond the cores makes every byte cost this
    /// much more (scheduling, caches), fitted to the seeded runs of 4 and 8 daemons.
    pub oversubscription: f64,
    pub link_share: LinkShare,
}

/// Sets every flow's rate for the next step; returns the CPU seconds per second used.
pub fn assign_rates(flows: &mut [Flow], nodes: usize, caps: &Caps, now: f64) -> f64 {
    let mut up = vec![0u32; nodes];
    let mut down = vec![0u32; nodes];
    let mut origin = 0u32;
    for f in flows.iter().filter(|f| f.active(now)) {
        down[f.dst] += f.parts;
        match f.src {
            Src::Origin => origin += f.parts,
            Src::Node(s) => up[s] += f.parts,
        }
    }
    // Links: the origin's, then each node's uplink, then each node's downlink.
    let fair = (caps.link_share == LinkShare::MaxMin).then(|| {
        let link_caps: Vec<f64> = std::iter::once(caps.origin)
            .chain(std::iter::repeat_n(caps.node, 2 * nodes))
            .collect();
        let crossing: Vec<(usize, usize, u32)> = flows
            .iter()
            .filter(|f| f.active(now))
            .map(|f| {
                let from = match f.src {
                    Src::Origin => 0,
                    Src::Node(s) => 1 + s,
                };
                (from, 1 + nodes + f.dst, f.parts)
            })
            .collect();
        crate::link_share::max_min(&crossing, &link_caps)
    });
    let mut fair_rates = fair.iter().flatten();
    // Each end of a transfer is a thread that wants CPU for the bytes it handles.
    let mut ends: Vec<(usize, usize, f64)> = Vec::new(); // (flow, node, CPU s per s)
    for (k, f) in flows.iter_mut().enumerate() {
        if !f.active(now) {
            f.rate = 0.0;
            continue;
        }
        let down_share = caps.node / f64::from(down[f.dst]);
        let equal = f64::from(f.parts)
            * match f.src {
                Src::Origin => down_share.min(caps.origin / f64::from(origin)),
                Src::Node(s) => down_share.min(caps.node / f64::from(up[s])),
            };
        f.rate = match &fair {
            Some(_) => fair_rates.next().copied().unwrap_or(equal),
            None => equal,
        };
        match f.src {
            Src::Origin => ends.push((k, f.dst, f.rate * caps.cpu_origin_in)),
            Src::Node(s) => {
                ends.push((k, f.dst, f.rate * caps.cpu_peer_in));
                ends.push((k, s, f.rate * caps.cpu_peer_out));
            }
        }
    }
    // The scheduler shares cores between threads: all of the machine's with shared
    // cores (where each busy daemon beyond the cores makes every byte cost more), else
    // each node's own.
    let penalty = match caps.shared_cores {
        Some(shared) => {
            let mut busy: Vec<usize> = ends.iter().map(|e| e.1).collect();
            busy.sort_unstable();
            busy.dedup();
            1.0 + caps.oversubscription * (busy.len() as f64 - shared).max(0.0)
        }
        None => 1.0,
    };
    let mut scale = vec![1.0f64; flows.len()];
    let mut groups: Vec<Vec<usize>> = match caps.shared_cores {
        Some(_) => vec![(0..ends.len()).collect()],
        None => {
            let mut by_node: std::collections::HashMap<usize, Vec<usize>> = Default::default();
            for (i, e) in ends.iter().enumerate() {
                by_node.entry(e.1).or_default().push(i);
            }
            by_node.into_values().collect()
        }
    };
    let cores = caps.shared_cores.unwrap_or(caps.cores) / penalty;
    for g in &mut groups {
        let demand: Vec<f64> = g.iter().map(|&i| ends[i].2).collect();
        for (i, met) in g.iter().zip(fair_share(&demand, cores)) {
            let k = ends[*i].0;
            scale[k] = scale[k].min(met);
        }
    }
    let mut used = 0.0;
    for (f, s) in flows.iter_mut().zip(scale) {
        if f.rate <= 0.0 {
            continue;
        }
        f.rate *= s;
        used += penalty
            * f.rate
            * match f.src {
                Src::Origin => caps.cpu_origin_in,
                Src::Node(_) => caps.cpu_peer_in + caps.cpu_peer_out,
            };
    }
    used
}

/// How much of its CPU demand each node gets when they share `cores` as a scheduler
/// shares them: equally, a node needing less than its share leaving the rest to others.
/// Returns, per node, the fraction of its demand met.
fn fair_share(demand: &[f64], cores: f64) -> Vec<f64> {
    let mut busy: Vec<usize> = (0..demand.len()).filter(|&i| demand[i] > 0.0).collect();
    busy.sort_by(|&a, &b| demand[a].total_cmp(&demand[b]));
    let mut scale = vec![1.0; demand.len()];
    let mut left = cores;
    for (k, &i) in busy.iter().enumerate() {
        let share = left / (busy.len() - k) as f64;
        let got = demand[i].min(share);
        scale[i] = got / demand[i];
        left -= got;
    }
    scale
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(src: Src, dst: usize) -> Flow {
        Flow {
            src,
            dst,
            file: 0,
            slot: 0,
            ranges: vec![(0, 1)],
            bytes: 1.0,
            done: 0.0,
            delivered: 0,
            first_byte_at: 0.0,
            rate: 0.0,
            permit: false,
            handed: false,
            seeders_only: false,
            parts: 1,
        }
    }

    /// Nodes 0 and 1 each receive from the origin; node 0 sends to node 1.
    fn two_from_the_origin_one_between() -> Vec<Flow> {
        vec![
            flow(Src::Origin, 0),
            flow(Src::Origin, 1),
            flow(Src::Node(0), 1),
        ]
    }

    fn caps(shared: Option<f64>) -> Caps {
        Caps {
            origin: 100.0,
            node: 1000.0,
            cpu_origin_in: 0.001,
            cpu_peer_in: 0.001,
            cpu_peer_out: 0.001,
            cores: 1.0,
            shared_cores: shared,
            oversubscription: 0.0,
            link_share: LinkShare::Equal,
        }
    }

    #[test]
    fn links_are_shared_and_cpu_slows_what_it_cannot_keep_up_with() {
        let mut f = two_from_the_origin_one_between();
        assign_rates(&mut f, 2, &caps(None), 0.0);
        assert_eq!(f[0].rate, 50.0);
        assert_eq!(f[1].rate, 50.0);
        // Node 1 receives 50 + 500 (half its downlink) and would need 0.55 s of CPU per
        // second; node 0 sends 500 and receives 50: 0.55 too. Both keep up.
        assert_eq!(f[2].rate, 500.0);
        // Sharing half a core between them, everything slows to fit.
        let used = assign_rates(&mut f, 2, &caps(Some(0.5)), 0.0);
        assert!((used - 0.5).abs() < 1e-9, "{used}");
    }

    #[test]
    fn max_min_sharing_gives_a_transfer_what_another_cannot_use() {
        let mut f = two_from_the_origin_one_between();
        let mut c = caps(None);
        c.cores = 100.0;
        c.link_share = LinkShare::MaxMin;
        assign_rates(&mut f, 2, &c, 0.0);
        assert_eq!(f[0].rate, 50.0);
        assert_eq!(f[1].rate, 50.0);
        // Node 1's downlink carries the origin's 50; the peer transfer takes the other 950
        // (an equal split gave it 500 and left 450 unused).
        assert_eq!(f[2].rate, 950.0);
    }

    #[test]
    fn shared_cores_go_first_to_whoever_needs_less_than_an_equal_share() {
        let s = fair_share(&[0.1, 2.0, 0.0, 3.0], 2.0);
        assert_eq!(s[0], 1.0);
        assert_eq!(s[2], 1.0);
        // 1.9 cores left for two: 0.95 each.
        assert!((s[1] - 0.95 / 2.0).abs() < 1e-9);
        assert!((s[3] - 0.95 / 3.0).abs() < 1e-9);
    }
}
