//! What a run measured, and which resource held it back.

use serde::Serialize;

use crate::params::{Params, Scenario};
use crate::world::World;

#[derive(Debug, Serialize)]
pub struct Report {
    pub scenario: Scenario,
    pub nodes: usize,
    pub model_gib: f64,
    pub files: usize,
    pub origin_mbit: f64,
    pub node_mbit: f64,
    /// Bytes the origin sent, in copies of the model.
    pub origin_copies: f64,
    /// The model's wire size at the origin's line rate.
    pub one_copy_s: f64,
    /// When the last node that pulls (and did not leave) had the model.
    pub time_to_last_s: f64,
    pub time_to_last_over_one_copy: f64,
    /// Per node, from its arrival to its last byte.
    pub pull_p50_s: f64,
    pub pull_p99_s: f64,
    pub pull_max_over_one_copy: f64,
    pub finish_p50_s: f64,
    pub finish_p99_s: f64,
    /// Bytes each node sent to peers, in copies of the model.
    pub upload_share_p50: f64,
    pub upload_share_p99: f64,
    pub upload_share_max: f64,
    pub control_msgs_per_node_per_s: f64,
    pub control_bytes_per_node_per_s: f64,
    /// When the origin sent its last byte, and how long the last node took after that:
    /// the time the swarm spent spreading what the origin sent last.
    pub origin_last_byte_s: f64,
    pub tail_after_origin_s: f64,
    /// Per slot, seconds from its first verified copy anywhere to every pulling node
    /// holding it (sampled every quarter of a simulated second; slots every node came to hold).
    pub slot_spread_p50_s: f64,
    pub slot_spread_max_s: f64,
    /// Mean use of each resource while nodes pulled, 0..1.
    pub utilization: Utilization,
    /// CPU seconds all nodes spent on the bytes they moved. `benches/fleet.sh`'s machine
    /// CPU for a case also counts the pulls' setup, the clients and the hub and CAS server.
    pub cpu_seconds: f64,
    pub bottleneck: &'static str,
    pub finished: usize,
    pub unfinished: usize,
    pub left: usize,
    pub peer_transfers_abandoned: u64,
    /// Hub requests (API and reconstructions) of all the pulls, and per node, against a
    /// lone node's pull (`hub_asks`).
    pub hub_requests: u64,
    pub hub_requests_per_node: f64,
    pub hub_requests_over_one_node: f64,
    pub sim_wall_s: f64,
}

#[derive(Debug, Serialize)]
pub struct Utilization {
    pub origin_link: f64,
    pub node_downlink: f64,
    pub node_uplink: f64,
    pub cpu: f64,
}

fn pct(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let k = ((v.len() as f64 - 1.0) * q).round() as usize;
    v[k.min(v.len() - 1)]
}

pub fn report(w: &World, p: &Params, wall: f64) -> Report {
    let copy = w.shape.copy_bytes();
    let one = w.one_copy_s();
    let pullers: Vec<_> = w.nodes.iter().filter(|n| n.pulls).collect();
    let survivors: Vec<_> = pullers.iter().filter(|n| n.alive).collect();
    let done: Vec<_> = survivors.iter().filter(|n| n.finished.is_some()).collect();
    let mut finish: Vec<f64> = done.iter().filter_map(|n| n.finished).collect();
    let mut pulls: Vec<f64> = done
        .iter()
        .filter_map(|n| n.finished.map(|f| f - n.arrived))
        .collect();
    let last = finish.iter().copied().fold(0.0, f64::max);
    let pull_max = pulls.iter().copied().fold(0.0, f64::max);
    let mut up: Vec<f64> = w.nodes.iter().map(|n| n.bytes_up / copy).collect();
    let end = w.now;
    let lived: f64 = w
        .nodes
        .iter()
        .map(|n| n.left.unwrap_or(end) - n.arrived)
        .sum();
    let pulled: f64 = pullers
        .iter()
        .map(|n| n.finished.or(n.left).unwrap_or(end) - n.arrived)
        .sum();
    let msgs: u64 = w.nodes.iter().map(|n| n.msgs).sum();
    let msg_bytes: u64 = w.nodes.iter().map(|n| n.msg_bytes).sum();
    let cores = match p.shared_cores {
        Some(s) => s * end,
        None => p.cores * lived,
    };
    let utilization = Utilization {
        origin_link: w.origin_bytes / (p.origin_bps() * end.max(1e-9)),
        node_downlink: w.nodes.iter().map(|n| n.bytes_down).sum::<f64>()
            / (p.node_bps() * pulled.max(1e-9)),
        node_uplink: w.nodes.iter().map(|n| n.bytes_up).sum::<f64>()
            / (p.node_bps() * lived.max(1e-9)),
        cpu: w.cpu_seconds / cores.max(1e-9),
    };
    let named = [
        ("origin link", utilization.origin_link),
        ("node downlinks", utilization.node_downlink),
        ("node uplinks", utilization.node_uplink),
        ("cpu", utilization.cpu),
    ];
    let top = named
        .iter()
        .copied()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or(("none", 0.0));
    // Below half use of everything, the time went to waiting: claims settling, peers
    // waited on, transfers started late.
    let bottleneck = if top.1 >= 0.5 { top.0 } else { "coordination" };
    let spread = w.spread.figures();
    Report {
        scenario: p.scenario,
        nodes: p.nodes,
        model_gib: p.model_gib,
        files: w.shape.files.len(),
        origin_mbit: p.origin_mbit,
        node_mbit: p.node_mbit,
        origin_copies: w.origin_bytes / copy,
        one_copy_s: one,
        time_to_last_s: last,
        time_to_last_over_one_copy: last / one,
        pull_p50_s: pct(&mut pulls, 0.5),
        pull_p99_s: pct(&mut pulls, 0.99),
        pull_max_over_one_copy: pull_max / one,
        finish_p50_s: pct(&mut finish, 0.5),
        finish_p99_s: pct(&mut finish, 0.99),
        upload_share_p50: pct(&mut up, 0.5),
        upload_share_p99: pct(&mut up, 0.99),
        upload_share_max: up.iter().copied().fold(0.0, f64::max),
        control_msgs_per_node_per_s: msgs as f64 / lived.max(1e-9),
        control_bytes_per_node_per_s: msg_bytes as f64 / lived.max(1e-9),
        origin_last_byte_s: w.origin_last_s,
        tail_after_origin_s: (last - w.origin_last_s).max(0.0),
        slot_spread_p50_s: spread.p50_s,
        slot_spread_max_s: spread.max_s,
        utilization,
        cpu_seconds: w.cpu_seconds,
        bottleneck,
        finished: done.len(),
        unfinished: survivors.len() - done.len(),
        left: pullers.len() - survivors.len(),
        peer_transfers_abandoned: w.peer_failures,
        hub_requests: w.hub_requests,
        hub_requests_per_node: w.hub_requests as f64 / pullers.len().max(1) as f64,
        hub_requests_over_one_node: w.hub_requests as f64
            / crate::hub_asks::lone(&w.hub_queries).max(1) as f64,
        sim_wall_s: wall,
    }
}

impl Report {
    pub fn text(&self) -> String {
        format!(
            "{:?}, {} nodes, {:.1} GiB in {} files, origin {} Mbit/s, nodes {} Mbit/s\n\
             origin copies        {:.3}\n\
             one copy at line rate {:.1} s\n\
             time to last node    {:.1} s ({:.2}x one copy)\n\
             pull time p50 / p99  {:.1} / {:.1} s (longest {:.2}x one copy)\n\
             upload per node      p50 {:.2}, p99 {:.2}, max {:.2} copies\n\
             control traffic      {:.1} messages, {:.0} bytes per node per second\n\
             origin's last byte   {:.1} s; last node {:.1} s later; a slot spreads in {:.1} s (p50), {:.1} s (max)\n\
             Hub requests         {} ({:.2} per node; {:.2}x one node's pull)\n\
             utilization          origin {:.2}, downlinks {:.2}, uplinks {:.2}, cpu {:.2} ({:.1} CPU s): bottleneck {}\n\
             finished {}, unfinished {}, left {}; peer transfers abandoned {}; simulated in {:.1} s",
            self.scenario,
            self.nodes,
            self.model_gib,
            self.files,
            self.origin_mbit,
            self.node_mbit,
            self.origin_copies,
            self.one_copy_s,
            self.time_to_last_s,
            self.time_to_last_over_one_copy,
            self.pull_p50_s,
            self.pull_p99_s,
            self.pull_max_over_one_copy,
            self.upload_share_p50,
            self.upload_share_p99,
            self.upload_share_max,
            self.control_msgs_per_node_per_s,
            self.control_bytes_per_node_per_s,
            self.origin_last_byte_s,
            self.tail_after_origin_s,
            self.slot_spread_p50_s,
            self.slot_spread_max_s,
            self.hub_requests,
            self.hub_requests_per_node,
            self.hub_requests_over_one_node,
            self.utilization.origin_link,
            self.utilization.node_downlink,
            self.utilization.node_uplink,
            self.utilization.cpu,
            self.cpu_seconds,
            self.bottleneck,
            self.finished,
            self.unfinished,
            self.left,
            self.peer_transfers_abandoned,
            self.sim_wall_s,
        )
    }
}
