//! Benchmark: what a fleet asks of the Hub (issue 17). A test hub in front of Hugging
//! Face's reference CAS counts every Hub API request and CAS reconstruction; fleets of N
//! zestd daemons (one fleet key, every daemon peered with every other, all on loopback)
//! pull the same repo at once, N = 1 first as the baseline. Then a crowd's pull time with
//! the Hub answering 429 (Retry-After: 1) to a share of its requests, against the same
//! crowd unthrottled. Prints a Markdown report.
//!
//! `zest-hubbench [--nodes 1,4,8] [--runs 3] [--storm-nodes 4] [--storm-pct 67]`;
//! ZEST_HUBBENCH_PATHS=1 lists, for every run, which paths were asked how often.
//! (benches/hub_requests.sh builds it and runs it from target/release).

use std::time::Instant;

use clap::Parser;
use zest_tests::Scratch;
use zest_tests::harness::{Daemon, fleet_key, pull_all, wait_connected};
use zest_tests::hub::fixtures::{self, MODEL};
use zest_tests::hub::{FaultSettings, HubConfig, TestHub};

#[derive(Parser)]
struct Args {
    /// Fleet sizes, in order; the first is the baseline the others are compared with.
    #[arg(long, value_delimiter = ',', default_value = "1,4,8")]
    nodes: Vec<usize>,
    /// Fresh hub and fresh daemons for each run.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    #[arg(long, default_value_t = 4)]
    storm_nodes: usize,
    /// Share of Hub requests answered 429 in the storm.
    #[arg(long, default_value_t = 67)]
    storm_pct: u32,
}

/// Hub API requests plus CAS reconstructions: what a pull asks of Hugging Face besides bytes.
fn hub_asks(hub: &TestHub) -> u64 {
    let s = hub.stats.snapshot();
    s.hub_requests + s.reconstructions
}

/// N fleet members, each peered with every one started before it, all connected.
fn fleet(scratch: &Scratch, hub: &TestHub, n: usize) -> Vec<Daemon> {
    let key = fleet_key(&scratch.path().join("fleet.key"), "hub bench fleet secret");
    let mut crowd: Vec<Daemon> = Vec::new();
    for i in 0..n {
        let peers: Vec<String> = crowd.iter().map(|d| d.listen()).collect();
        crowd.push(Daemon::start_peer_with(
            &scratch.path().join(format!("n{i}")),
            &hub.endpoint,
            &peers,
            &key,
        ));
    }
    for d in &crowd {
        wait_connected(d, n - 1);
    }
    crowd
}

/// One crowd pull on a fresh hub: (Hub requests, seconds, 429s answered).
fn crowd_pull(name: &str, n: usize, faults: Option<&FaultSettings>) -> (u64, f64, u64) {
    let scratch = Scratch::new(name);
    let hub = TestHub::start(HubConfig::new(
        scratch.path().join("hub"),
        fixtures::standard(),
    ))
    .expect("test hub");
    let crowd = fleet(&scratch, &hub, n);
    if let Some(f) = faults {
        hub.set_faults(f);
    }
    let before = hub_asks(&hub);
    let refs: Vec<&Daemon> = crowd.iter().collect();
    let t = Instant::now();
    pull_all(&refs, MODEL, &[]);
    let secs = t.elapsed().as_secs_f64();
    if std::env::var_os("ZEST_HUBBENCH_PATHS").is_some() {
        let paths = hub
            .stats
            .hub_paths
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default();
        let mut counts = std::collections::BTreeMap::new();
        for p in paths {
            *counts.entry(p).or_insert(0u32) += 1;
        }
        eprintln!("{name}: {counts:#?}");
    }
    (hub_asks(&hub) - before, secs, hub.stats.snapshot().hub_429s)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args = Args::parse();
    let Some(&base_n) = args.nodes.first() else {
        eprintln!("zest-hubbench: --nodes names no fleet size");
        std::process::exit(2);
    };
    println!("### Hub requests of a crowd pulling `{MODEL}` at once\n");
    println!("| nodes | Hub requests per run | per node | median vs {base_n} node(s) |");
    println!("|---|---|---|---|");
    let mut base = None;
    for &n in &args.nodes {
        let mut asks = Vec::new();
        for r in 0..args.runs {
            let (a, _, _) = crowd_pull(&format!("hubbench-n{n}-r{r}"), n, None);
            asks.push(a as f64);
        }
        let m = median(&mut asks.clone());
        let b = *base.get_or_insert(m);
        let list: Vec<String> = asks.iter().map(|a| format!("{a:.0}")).collect();
        println!(
            "| {n} | {} | {:.1} | {:.2}× |",
            list.join(", "),
            m / n as f64,
            m / b
        );
    }
    let storm = FaultSettings {
        hub_429_pct: args.storm_pct,
        ..Default::default()
    };
    let n = args.storm_nodes;
    println!(
        "\n### A crowd of {n} under a 429 storm ({}% of Hub requests answered 429, Retry-After: 1)\n",
        args.storm_pct
    );
    println!("| run | unthrottled | storm | ratio | 429s answered |");
    println!("|---|---|---|---|---|");
    let (mut calm, mut stormy) = (Vec::new(), Vec::new());
    for r in 0..args.runs {
        let (_, c, _) = crowd_pull(&format!("hubbench-calm-r{r}"), n, None);
        let (_, s, n429) = crowd_pull(&format!("hubbench-storm-r{r}"), n, Some(&storm));
        println!(
            "| {} | {c:.2} s | {s:.2} s | {:.2}× | {n429} |",
            r + 1,
            s / c
        );
        calm.push(c);
        stormy.push(s);
    }
    let (c, s) = (median(&mut calm), median(&mut stormy));
    println!(
        "\nMedians: unthrottled {c:.2} s, storm {s:.2} s ({:.2}×).",
        s / c
    );
}
