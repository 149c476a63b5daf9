//! What is simulated: the fleet, the model, the links and CPU, and the scenario.

use clap::{Parser, ValueEnum};
use serde::Serialize;

/// How links share capacity among transfers ([`crate::link_share`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinkShare {
    MaxMin,
    Equal,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Every node asks at the same moment; nobody holds the model.
    Flash,
    /// One node holds the model; the others ask at the same moment.
    Seeded,
    /// Nodes arrive one after another, spread evenly at random over `--spread-s`.
    Staggered,
    /// A flash crowd in which a share of the nodes leaves every minute, mid-pull, and as
    /// many fresh nodes join.
    Churn,
}

#[derive(Clone, Debug, Parser, Serialize)]
#[command(
    name = "zest-sim",
    about = "Simulates a fleet of zest daemons pulling one model, in virtual time, with the daemon's own planner"
)]
pub struct Params {
    /// Nodes that pull (in `seeded`, plus the one holder).
    #[arg(long, default_value_t = 64)]
    pub nodes: usize,
    /// Model size, uncompressed.
    #[arg(long, default_value_t = 10.0)]
    pub model_gib: f64,
    #[arg(long, value_enum, default_value_t = Scenario::Flash)]
    pub scenario: Scenario,
    /// Files the model is split into (safetensors shards); 0: one per 5 GiB, at least 4.
    #[arg(long, default_value_t = 0)]
    pub files: usize,
    /// Uncompressed bytes per xorb.
    #[arg(long, default_value_t = 64)]
    pub xorb_mib: u32,
    /// The planner's unit: a run of chunks treated as one (a real chunk is ~64 KiB; larger
    /// units make large fleets cheap to simulate and only coarsen the trading grain).
    #[arg(long, default_value_t = 4)]
    pub unit_mib: u32,
    /// Bytes on the wire per byte of model (xorbs are LZ4-compressed).
    #[arg(long, default_value_t = 0.865)]
    pub wire_ratio: f64,
    /// The origin's (CDN's) link to the fleet.
    #[arg(long, default_value_t = 400.0)]
    pub origin_mbit: f64,
    /// Each node's link, up and down.
    #[arg(long, default_value_t = 1000.0)]
    pub node_mbit: f64,
    /// Round trip between nodes, and to the origin, before a transfer's first byte.
    #[arg(long, default_value_t = 1.0)]
    pub peer_rtt_ms: f64,
    #[arg(long, default_value_t = 20.0)]
    pub origin_rtt_ms: f64,
    /// A pull's fixed cost before its first transfer: listing, reconstructions, manifests.
    /// Measured in zestd's debug log in `benches/fleet.sh` on 2026-12-06: the lone node's
    /// first origin range ended 0.41 s after its pull started, a seeded puller's first
    /// peer range 0.33 s after. (It was 1.25 s, fitted to the lone node's whole pull, 10.5-
    /// 10.8 s for 9.3 s at line rate; that put a second into every seeded pull that the
    /// seeded runs, CPU-bound from their start, do not spend.)
    #[arg(long, default_value_t = 400.0)]
    pub setup_ms: f64,
    /// CPU cores each node gives zestd.
    #[arg(long, default_value_t = 4.0)]
    pub cores: f64,
    /// If set, every node shares this many cores (all daemons on one machine, as
    /// `benches/fleet.sh` runs them) instead of `--cores` each.
    #[arg(long)]
    pub shared_cores: Option<f64>,
    /// With shared cores: how much more each byte costs per busy node beyond the cores
    /// (fitted with the three costs below to `benches/fleet.sh`'s runs of 4 and 8 daemons,
    /// seeded and flash).
    #[arg(long, default_value_t = 0.1125)]
    pub oversubscription: f64,
    /// CPU per byte received from the origin (decode, BLAKE3, write), nanoseconds. The
    /// daemon's side only: in `benches/fleet.sh` the hub and CAS server share the machine
    /// too (a lone pull there costs the machine 3.8-4.9 CPU seconds), but a real origin
    /// does not.
    #[arg(long, default_value_t = 1.34)]
    pub cpu_origin_in_ns: f64,
    /// CPU per byte received from a peer (the same, plus QUIC decryption), nanoseconds.
    /// This and the next are fitted to `benches/fleet.sh` with 4 and 8 daemons on 2
    /// cores, with `--oversubscription` and a setup of 0.4 s, as measured on 2026-12-06
    /// at 651be0c (the medians of the day's runs: seeded, 11 runs of 3 pullers 3.37 s and
    /// 7 of 7 pullers 9.09 s; 18 flash crowds of 4, 10.95 s, and 14 of 8, 12.52 s): a
    /// common factor of the three costs and the oversubscription, on a grid, for the least
    /// worst error against the medians (3.7%, seeds 1-3). The seeded runs use the
    /// machine's 2 cores from start to end (3 pullers: 5.9-7.2 CPU seconds in 3.2-3.8 s);
    /// the simulated seeded pulls spend 5.2-5.5 on the bytes alone. Earlier fits
    /// (BENCHMARKS.md): 2.6, 3.25, 2.87 ns and 0.07, from runs that paid more of this
    /// VM's cost of touching new memory; 1.04, 1.3, 1.15 and 0.25, from the seeded runs
    /// alone; 1.14, 1.43, 1.27 and 0.175, all four runs with a setup of 1.25 s, which
    /// overstated the seeded run of 3 by a fifth.
    #[arg(long, default_value_t = 1.68)]
    pub cpu_peer_in_ns: f64,
    /// CPU per byte sent to a peer (read, hash, QUIC encryption), nanoseconds.
    #[arg(long, default_value_t = 1.49)]
    pub cpu_peer_out_ns: f64,
    /// Transfers a node serves at once before it answers `busy` (zestd's `MAX_UPLOADS`).
    #[arg(long, default_value_t = zestd::peer::limits::MAX_UPLOADS)]
    pub max_uploads: usize,
    /// Origin requests a node has going at once, over all files; the ranges that would
    /// need more wait their turn in order (zestd's `fetch_concurrency`, its engine-wide
    /// `fetch_permits`). A range takes one per part it is cut into (`origin_parts`).
    #[arg(long, default_value_t = zestd::engine::DEFAULT_FETCH_CONCURRENCY)]
    pub fetch_concurrency: usize,
    /// Each origin range is one request, as zestd fetched them before 2026-12-05, rather
    /// than cut into parts of `origin_parts::PART_BYTES` fetched at once.
    #[arg(long)]
    pub whole_ranges: bool,
    /// Connections per node at most (zestd's default cap).
    #[arg(long, default_value_t = 64)]
    pub max_peers: usize,
    /// Peers a tracker hands out per announce.
    #[arg(long, default_value_t = 50)]
    pub tracker_sample: usize,
    /// How often a node below its connection cap announces again.
    #[arg(long, default_value_t = 30.0)]
    pub announce_s: f64,
    /// `staggered`: arrivals spread over this long.
    #[arg(long, default_value_t = 120.0)]
    pub spread_s: f64,
    /// `churn`: share of the live nodes that leave (and are replaced) per minute.
    #[arg(long, default_value_t = 0.10)]
    pub churn_per_min: f64,
    /// Discovery gives no swarm counts (the DHT, static peers): each planner takes the
    /// peers in its view as the whole swarm. By default a tracker's announce answer counts
    /// the swarm, and zestd hands that count to the planner, so in a swarm larger than a
    /// node's view only a drawn few fetch from the origin (`Planner::admitted`).
    #[arg(long)]
    pub no_swarm_size: bool,
    /// Peer state is polled (`have` every 150 ms per peer per file, as zestd did before
    /// the `watch` capability) rather than pushed. Changes only what control traffic
    /// counts: the planner sees current views either way.
    #[arg(long)]
    pub poll: bool,
    /// How a link's capacity is shared among the transfers crossing it: `max-min` (what
    /// congestion-controlled streams settle near: capacity one transfer cannot use goes to
    /// the others), or `equal` (each link split equally, a transfer taking the smaller
    /// share at either end; this simulator's model before 2026-12-04).
    #[arg(long, value_enum, default_value_t = LinkShare::MaxMin)]
    pub link_share: LinkShare,
    /// The simulation's step: the daemon's scheduler tick.
    #[arg(long, default_value_t = 50.0)]
    pub tick_ms: f64,
    /// Gives up (and reports the unfinished) after this many one-copy times.
    #[arg(long, default_value_t = 40.0)]
    pub max_copies_time: f64,
    /// Files of the repo stored in git (config, tokenizer …): each one more Hub answer.
    #[arg(long, default_value_t = 5)]
    pub git_files: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Every 10 simulated seconds, a line on stderr: time, nodes finished, origin copies
    /// so far and the wall time taken (for long runs).
    #[arg(long)]
    pub progress: bool,
    /// Simulates arrivals and discovery only, for the Hub-request count (fast at any fleet
    /// size); nothing is downloaded, so the report's other figures mean nothing.
    #[arg(long)]
    pub hub_only: bool,
    /// The daemons ran before the pulls, so their routes to the fleet's anchors have spread
    /// (Hub-request count); otherwise routes spread from the first arrival, a poll every 2 s.
    #[arg(long)]
    pub settled_routes: bool,
    /// Print the report as one JSON object on the last line of stdout.
    #[arg(long)]
    pub json: bool,
}

impl Params {
    pub fn unit_bytes(&self) -> f64 {
        f64::from(self.unit_mib) * 1024.0 * 1024.0
    }
    pub fn origin_bps(&self) -> f64 {
        self.origin_mbit * 1e6 / 8.0
    }
    pub fn node_bps(&self) -> f64 {
        self.node_mbit * 1e6 / 8.0
    }
}

/// The model as the planner sees it: per file, its units and its slots (one per xorb).
#[derive(Clone, Debug)]
pub struct Shape {
    pub files: Vec<FileShape>,
    /// Wire bytes of one unit.
    pub unit_wire: f64,
}

#[derive(Clone, Debug)]
pub struct FileShape {
    pub units: u32,
    pub slots: Vec<(u32, u32)>,
}

impl Shape {
    pub fn of(p: &Params) -> Shape {
        let total_units = ((p.model_gib * 1024.0 / f64::from(p.unit_mib)).ceil() as u64).max(1);
        let files = if p.files > 0 {
            p.files
        } else {
            ((p.model_gib / 5.0).ceil() as usize).max(4)
        }
        .min(total_units as usize);
        let per_xorb = (p.xorb_mib / p.unit_mib).max(1);
        let files = (0..files as u64)
            .map(|i| {
                let units =
                    (total_units * (i + 1) / files as u64 - total_units * i / files as u64) as u32;
                let slots = (0..units)
                    .step_by(per_xorb as usize)
                    .map(|a| (a, (a + per_xorb).min(units)))
                    .collect();
                FileShape { units, slots }
            })
            .collect();
        Shape {
            files,
            unit_wire: p.unit_bytes() * p.wire_ratio,
        }
    }

    pub fn total_units(&self) -> u64 {
        self.files.iter().map(|f| u64::from(f.units)).sum()
    }

    /// Wire bytes of one whole copy of the model.
    pub fn copy_bytes(&self) -> f64 {
        self.total_units() as f64 * self.unit_wire
    }
}
