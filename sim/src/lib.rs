//! zest-sim: a fleet of zest daemons in virtual time. Each node runs the daemon's own
//! download planner (`zestd::engine::planner`) and trust rules; links, CPU, discovery,
//! arrivals and churn are modelled. It answers what no machine here can measure: origin
//! copies and time to the last node for fleets of thousands.

pub mod drive;
pub mod hub_asks;
pub mod link_share;
pub mod net;
pub mod node;
pub mod params;
pub mod ranges;
pub mod report;
pub mod spread;
pub mod transfers;
pub mod world;

use std::time::Instant;

pub use params::{Params, Scenario};
pub use report::Report;

pub fn simulate(p: &Params) -> Report {
    let t0 = Instant::now();
    let mut w = world::World::new(p.clone());
    w.run();
    report::report(&w, p, t0.elapsed().as_secs_f64())
}
