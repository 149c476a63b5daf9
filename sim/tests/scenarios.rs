//! The simulator on small fleets, where the answer is known: the daemon's planner alone
//! takes one copy at about the line rate; a seeded fleet takes nothing from the origin;
//! a small flash crowd about one copy; churn loses no surviving node.

use clap::Parser;
use zest_sim::{Params, Report, simulate};

fn run(args: &str) -> Report {
    let argv = std::iter::once("zest-sim").chain(args.split_whitespace());
    simulate(&Params::parse_from(argv))
}

#[test]
fn one_node_alone_takes_one_copy_at_about_the_line_rate() {
    let r = run("--nodes 1 --model-gib 0.25 --files 2 --setup-ms 500");
    assert!((r.origin_copies - 1.0).abs() < 1e-6, "{}", r.text());
    // The transfer itself, after the pull's fixed 0.5 s.
    let ratio = (r.time_to_last_s - 0.5) / r.one_copy_s;
    assert!(ratio > 1.0 && ratio < 1.1, "{ratio}: {}", r.text());
    assert_eq!(r.bottleneck, "origin link");
    // Alone, it is done with the origin's last byte, and every slot is everyone's as soon
    // as it is anyone's.
    assert!(r.origin_last_byte_s > 0.5, "{}", r.text());
    assert!(r.tail_after_origin_s < 0.2, "{}", r.text());
    assert_eq!(r.slot_spread_max_s, 0.0, "{}", r.text());
}

#[test]
fn a_seeded_fleet_takes_nothing_from_the_origin() {
    let r = run("--nodes 6 --model-gib 0.25 --files 2 --scenario seeded");
    assert_eq!(r.origin_copies, 0.0, "{}", r.text());
    assert_eq!(r.finished, 6, "{}", r.text());
    assert!(r.upload_share_max >= 1.0, "{}", r.text());
    // Every slot was the seed's from the start and took the swarm a while to spread.
    assert_eq!(r.origin_last_byte_s, 0.0, "{}", r.text());
    assert!(r.slot_spread_p50_s >= 1.0, "{}", r.text());
    assert!(r.slot_spread_max_s >= r.slot_spread_p50_s, "{}", r.text());
}

#[test]
fn a_small_flash_crowd_takes_about_one_copy() {
    for seed in 1..=3 {
        let r = run(&format!(
            "--nodes 4 --model-gib 0.5 --files 4 --seed {seed}"
        ));
        assert_eq!(r.finished, 4, "{}", r.text());
        assert!(r.origin_copies <= 1.05, "seed {seed}: {}", r.text());
        assert!(r.control_msgs_per_node_per_s > 0.0);
    }
}

#[test]
fn churn_loses_no_surviving_node() {
    let r = run("--nodes 16 --model-gib 0.25 --files 2 --scenario churn --churn-per-min 0.5");
    assert!(r.left > 0, "{}", r.text());
    assert_eq!(r.unfinished, 0, "{}", r.text());
    assert!(r.finished >= 16, "{}", r.text());
}

#[test]
fn beyond_every_view_drawn_fetchers_take_a_fraction_of_the_copies_claims_alone_take() {
    // 128 nodes, each seeing at most 64: claims alone cannot keep the origin at one copy.
    let alone = run("--nodes 128 --model-gib 0.5 --files 2 --no-swarm-size");
    let drawn = run("--nodes 128 --model-gib 0.5 --files 2");
    assert_eq!(drawn.unfinished, 0, "{}", drawn.text());
    assert!(alone.origin_copies >= 2.0, "{}", alone.text());
    assert!(drawn.origin_copies <= 1.1, "{}", drawn.text());
    assert!(drawn.origin_copies * 2.0 <= alone.origin_copies);
}

#[test]
fn pushed_peer_state_costs_a_fraction_of_polling_it() {
    // 32 nodes that all see each other: polling asks every peer every 150 ms per file;
    // pushing tells only changes, gathered over 50 ms, plus a heartbeat a second.
    let args = "--nodes 32 --model-gib 0.5 --files 2";
    let push = run(args);
    let poll = run(&format!("{args} --poll"));
    for r in [&push, &poll] {
        assert_eq!(r.unfinished, 0, "{}", r.text());
    }
    assert!(
        push.control_msgs_per_node_per_s * 2.0 < poll.control_msgs_per_node_per_s,
        "push {} vs poll {}",
        push.text(),
        poll.text()
    );
}
