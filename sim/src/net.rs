//! Transfers in flight and the rates they get: each shares its sender's uplink and its
//! receiver's downlink equally with the other transfers there (the origin's link likewise),
//! and a node short of CPU slows all of its transfers alike.

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
}

/// Sets every flow's rate for the next step; returns the CPU seconds per second used.
pub fn assign_rates(flows: &mut [Flow], nodes: usize, caps: &Caps, now: f64) -> f64 {
    let mut up = vec![0u32; nodes];
    let mut down = vec![0u32; nodes];
    let mut origin = 0u32;
    for f in flows.iter().filter(|f| f.active(now)) {
        down[f.dst] += 1;
        match f.src {
            Src::Origin => origin += 1,
            Src::Node(s) => up[s] += 1,
        }
    }
    let mut demand = vec![0f64; nodes];
    for f in flows.iter_mut() {
        if !f.active(now) {
            f.rate = 0.0;
            continue;
        }
        let down_share = caps.node / f64::from(down[f.dst]);
        f.rate = match f.src {
            Src::Origin => down_share.min(caps.origin / f64::from(origin)),
            Src::Node(s) => down_share.min(caps.node / f64::from(up[s])),
        };
        match f.src {
            Src::Origin => demand[f.dst] += f.rate * caps.cpu_origin_in,
            Src::Node(s) => {
                demand[f.dst] += f.rate * caps.cpu_peer_in;
                demand[s] += f.rate * caps.cpu_peer_out;
            }
        }
    }
    let scale: Vec<f64> = match caps.shared_cores {
        Some(shared) => {
            let total: f64 = demand.iter().sum();
            let s = if total > shared { shared / total } else { 1.0 };
            vec![s; nodes]
        }
        None => demand
            .iter()
            .map(|d| if *d > caps.cores { caps.cores / d } else { 1.0 })
            .collect(),
    };
    let mut used = 0.0;
    for f in flows.iter_mut().filter(|f| f.rate > 0.0) {
        let s = match f.src {
            Src::Origin => scale[f.dst],
            Src::Node(src) => scale[f.dst].min(scale[src]),
        };
        f.rate *= s;
        used += f.rate
            * match f.src {
                Src::Origin => caps.cpu_origin_in,
                Src::Node(_) => caps.cpu_peer_in + caps.cpu_peer_out,
            };
    }
    used
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
        }
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
        }
    }

    #[test]
    fn links_are_shared_and_cpu_slows_what_it_cannot_keep_up_with() {
        let mut f = vec![
            flow(Src::Origin, 0),
            flow(Src::Origin, 1),
            flow(Src::Node(0), 1),
        ];
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
}
