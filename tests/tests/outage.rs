//! The fleet outlives the Hub (issue 17): what a pull needs besides Xet bytes — the commit
//! a branch points at, the listing at a commit, reconstructions, files stored in git — is
//! kept by the daemon that took it from the Hub and given to fleet members, never to
//! strangers, when the Hub cannot answer.

use std::path::Path;

use zest_tests::Scratch;
use zest_tests::harness::{
    Daemon, fleet_key, hf_python, pulled_path, snapshot_tree, wait_connected, zest_probe,
};
use zest_tests::hub::fixtures::{self, MODEL, PRIVATE_MODEL};
use zest_tests::hub::{HubConfig, TEST_TOKEN, TestHub};

/// What zest-probe gets from `peer` for `file`, as a stranger or with `fleet_key`.
fn probe(scratch: &Scratch, peer: &str, file: &str, fleet_key: Option<&str>) -> serde_json::Value {
    let state = scratch
        .path()
        .join(format!("probe-{}", fleet_key.is_some()));
    let args: Vec<&std::ffi::OsStr> = fleet_key
        .into_iter()
        .flat_map(|k| ["--fleet-key-file", k])
        .map(std::ffi::OsStr::new)
        .collect();
    zest_probe(peer, file, &state, &args).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_fleet_pulls_what_it_holds_while_the_hub_is_down() {
    let scratch = Scratch::new("outage-fleet");
    let hub = TestHub::start(HubConfig::new(
        scratch.path().join("hub"),
        fixtures::standard(),
    ))
    .expect("test hub");
    let key_file = scratch.path().join("fleet.key");
    let fleet = fleet_key(&key_file, "outage test fleet secret");
    let a = Daemon::start_peer_with(&scratch.path().join("a"), &hub.endpoint, &[], &fleet);
    let token = [("HF_TOKEN", TEST_TOKEN)];
    let a_snap = pulled_path(&a.pull(&[MODEL], &[]));
    let a_private = pulled_path(&a.pull(&[PRIVATE_MODEL], &token));
    let commit = hub.repo(MODEL).commit.clone();
    let private_commit = hub.repo(PRIVATE_MODEL).commit.clone();
    let xet_file = hub
        .repo(MODEL)
        .files
        .values()
        .find_map(|f| f.xet_hash.clone().filter(|_| f.size > 0))
        .expect("a Xet file");

    let b = Daemon::start_peer_with(
        &scratch.path().join("b"),
        &hub.endpoint,
        &[a.listen()],
        &fleet,
    );
    // A daemon outside the fleet, peered with A all the same.
    let stranger = Daemon::start_peer(&scratch.path().join("c"), &hub.endpoint, &[a.listen()]);
    // A member whose clients go through its local endpoint; it pulls nothing itself.
    let e = Daemon::start_peer_with(
        &scratch.path().join("e"),
        &hub.endpoint,
        &[a.listen()],
        &fleet,
    );
    wait_connected(&b, 1);
    wait_connected(&stranger, 1);
    wait_connected(&e, 1);

    // A stranger gets no Hub answers; a fleet member does.
    let key = key_file.to_str().expect("utf-8 path");
    assert_eq!(
        probe(&scratch, &a.listen(), &xet_file, None)["meta_bytes"],
        0
    );
    assert!(probe(&scratch, &a.listen(), &xet_file, Some(key))["meta_bytes"].as_u64() > Some(0));

    drop(hub);
    let t = std::time::Instant::now();

    // A pinned commit: listing, reconstructions, git-stored files and Xet bytes all from A.
    let out = b.pull(&[MODEL, "--revision", &commit], &[]);
    let b_snap = pulled_path(&out);
    assert_eq!(
        snapshot_tree(&a_snap),
        snapshot_tree(&b_snap),
        "{}",
        b.log()
    );
    // From the repo's owner when that is A, else (B owns it, and the Hub is down) from
    // whichever member answers: A either way.
    let log = b.log();
    assert!(
        log.contains("from a fleet member") || log.contains("from its owner in the fleet"),
        "{log}"
    );
    eprintln!("pinned pull with the Hub down: {:?}", t.elapsed());

    // A private repo, pinned, with the user's token: the fleet may give it to a member.
    let out = b.pull(&[PRIVATE_MODEL, "--revision", &private_commit], &token);
    assert_eq!(snapshot_tree(&a_private), snapshot_tree(&pulled_path(&out)));
    eprintln!("private pinned pull done: {:?}", t.elapsed());

    // A branch: refused without permission, with the way out named...
    let out = b.pull(&[MODEL], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("--allow-stale-refs"), "{err}");
    eprintln!("branch refused: {:?}", t.elapsed());
    // ...and with it, the commit A saw, with a warning saying how old that is.
    let out = b.pull(&[MODEL, "--allow-stale-refs"], &[]);
    assert_eq!(pulled_path(&out), b_snap);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning:") && err.contains(&commit) && err.contains(" ago"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(b.cache().join("models--zest-test--tiny-model/refs/main"))
            .expect("refs/main"),
        commit
    );

    eprintln!("stale branch pulled: {:?}", t.elapsed());
    // The stranger holds nothing and is given nothing.
    let out = stranger.pull(&[MODEL, "--revision", &commit], &[]);
    assert!(
        !out.status.success(),
        "a stranger pulled without the Hub: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("stranger refused: {:?}", t.elapsed());

    // Through the local endpoint, clients pinned to the commit start: the listing, the Xet
    // token for zestd's own CAS door, the reconstructions and git-stored files come from
    // the fleet, every byte checked.
    let ep = e.status_json()["hub_endpoint"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(ep.starts_with("http://127.0.0.1:"), "no endpoint: {ep:?}");
    let home = scratch.path().join("home");
    let client = |name: &str, script: &str, args: &[&str], env: &[(&str, &str)]| {
        hf_python(script, args, &ep, &scratch.path().join(name), &home, env)
    };
    let ok = |o: std::process::Output| {
        let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success(),
            "python failed: {}\n{stdout}\n{}",
            String::from_utf8_lossy(&o.stderr),
            e.log()
        );
        stdout
    };
    let out = ok(client(
        "c-snapshot",
        PINNED_SNAPSHOT,
        &[MODEL, &commit],
        &[],
    ));
    same_contents(&a_snap, Path::new(out.trim()));
    eprintln!("endpoint snapshot_download: {:?}", t.elapsed());
    // One file at a time, without a cached listing (a HEAD per file), with hf_xet and
    // without it (then the redirect goes to zestd's file door).
    let names = [
        "config.json",
        "model.safetensors",
        "tokenizer/tokenizer.json",
    ];
    for (cache, env) in [
        ("c-files", vec![]),
        ("c-files-no-xet", vec![("HF_HUB_DISABLE_XET", "1")]),
    ] {
        let mut args = vec![MODEL, commit.as_str()];
        args.extend(names);
        let out = ok(client(cache, PINNED_FILES, &args, &env));
        assert_eq!(out.lines().count(), names.len(), "{out}");
        for line in out.lines() {
            let (name, path) = line.split_once('\t').expect("name and path");
            assert_eq!(
                std::fs::read(path).expect("downloaded"),
                std::fs::read(a_snap.join(name)).expect("reference"),
                "{name} ({cache})"
            );
        }
    }
    assert!(e.log().contains("answered from the fleet"), "{}", e.log());
    eprintln!("endpoint single files: {:?}", t.elapsed());
    // A branch is not answered for the Hub, nor is a private repo: the Hub decides who may
    // read it, and cannot be asked.
    let branch = client("c-branch", PINNED_SNAPSHOT, &[MODEL, "main"], &[]);
    assert!(
        !branch.status.success(),
        "a branch resolved without the Hub"
    );
    let private = client(
        "c-private",
        PINNED_SNAPSHOT,
        &[PRIVATE_MODEL, &private_commit],
        &[("HF_TOKEN", TEST_TOKEN)],
    );
    assert!(
        !private.status.success(),
        "a private repo was handed to a local client without the Hub"
    );
}

const PINNED_SNAPSHOT: &str = r#"
import sys
from huggingface_hub import snapshot_download
print(snapshot_download(sys.argv[1], revision=sys.argv[2]))
"#;

const PINNED_FILES: &str = r#"
import sys
from huggingface_hub import hf_hub_download
for name in sys.argv[3:]:
    print(name + "\t" + hf_hub_download(sys.argv[1], name, revision=sys.argv[2]))
"#;

/// Every file under `want` is in `got` with the same bytes, and nothing else is.
fn same_contents(want: &Path, got: &Path) {
    let files = |root: &Path| -> std::collections::BTreeMap<std::path::PathBuf, Vec<u8>> {
        let mut out = std::collections::BTreeMap::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).expect("a folder").flatten() {
                let p = entry.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let rel = p.strip_prefix(root).expect("under root").to_path_buf();
                    out.insert(rel, std::fs::read(&p).expect("readable"));
                }
            }
        }
        out
    };
    let (w, g) = (files(want), files(got));
    assert_eq!(
        w.keys().collect::<Vec<_>>(),
        g.keys().collect::<Vec<_>>(),
        "different files"
    );
    for (k, v) in &w {
        assert!(g.get(k) == Some(v), "{} differs", k.display());
    }
}

/// Hub API requests plus CAS reconstructions: what a pull asks of Hugging Face besides bytes.
fn hub_asks(hub: &TestHub) -> u64 {
    let s = hub.stats.snapshot();
    s.hub_requests + s.reconstructions
}

fn hub_for(name: &str) -> (Scratch, TestHub) {
    let scratch = Scratch::new(name);
    let hub = TestHub::start(HubConfig::new(
        scratch.path().join("hub"),
        fixtures::standard(),
    ))
    .expect("test hub");
    (scratch, hub)
}

/// One daemon alone pulls MODEL: its snapshot, and what it asked of the Hub.
fn lone_pull(scratch: &Scratch, hub: &TestHub) -> (std::path::PathBuf, u64) {
    let lone = Daemon::start_peer(&scratch.path().join("lone"), &hub.endpoint, &[]);
    let before = hub_asks(hub);
    let snap = pulled_path(&lone.pull(&[MODEL], &[]));
    (snap, hub_asks(hub) - before)
}

#[test]
fn a_flash_crowd_asks_the_hub_about_as_often_as_one_node_and_pulls_through_429s() {
    let (scratch, hub) = hub_for("outage-crowd");
    // One daemon alone: what a pull asks of the Hub.
    let (lone_snap, one) = lone_pull(&scratch, &hub);

    // Four fleet members at once, each peered with the others.
    let fleet = fleet_key(&scratch.path().join("fleet.key"), "crowd test fleet secret");
    let mut crowd: Vec<Daemon> = Vec::new();
    for i in 0..4 {
        let peers: Vec<String> = crowd.iter().map(|d| d.listen()).collect();
        crowd.push(Daemon::start_peer_with(
            &scratch.path().join(format!("n{i}")),
            &hub.endpoint,
            &peers,
            &fleet,
        ));
    }
    for d in &crowd {
        wait_connected(d, 3);
    }
    let before = hub_asks(&hub);
    let refs: Vec<&Daemon> = crowd.iter().collect();
    zest_tests::harness::pull_all(&refs, MODEL, &[]);
    let four = hub_asks(&hub) - before;
    eprintln!(
        "Hub requests: one node {one}, four at once {four} ({:.2}x)",
        four as f64 / one as f64
    );
    for d in &crowd {
        let snap = pulled_path(&d.pull(&[MODEL], &[]));
        assert_eq!(snapshot_tree(&lone_snap), snapshot_tree(&snap));
    }
    // Without sharing, four daemons ask four times as often; the goal is 1.2x (one owner per
    // repo asks for all of it, and a member sent to the Hub because the owner had not begun
    // is the one the others are sent to).
    assert!(
        four as f64 <= 1.2 * one as f64,
        "four daemons asked the Hub {four} times, one alone {one}"
    );

    // A Hub that answers 429 (Retry-After: 1) to two requests in three. A new member's pull
    // finishes, its answers taken from the fleet (from the repo's owner, or, where it owns
    // the repo itself, from the kept answers once the Hub is slow).
    hub.set_faults(&zest_tests::hub::FaultSettings {
        hub_429_pct: 67,
        ..Default::default()
    });
    let late = Daemon::start_peer_with(
        &scratch.path().join("late"),
        &hub.endpoint,
        &crowd.iter().map(|d| d.listen()).collect::<Vec<_>>(),
        &fleet,
    );
    wait_connected(&late, 4);
    let before = hub_asks(&hub);
    let t = std::time::Instant::now();
    let snap = pulled_path(&late.pull(&[MODEL], &[]));
    eprintln!(
        "fleet member's pull under a 429 storm: {:?}, {} Hub requests",
        t.elapsed(),
        hub_asks(&hub) - before
    );
    assert_eq!(snapshot_tree(&lone_snap), snapshot_tree(&snap));
    // A daemon with no fleet to ask rides the storm out on its own, honouring Retry-After.
    // The Hub tells clients apart only by path, so the fleet stops first and its 429s are
    // forgotten: a path asked again early below is this daemon's own early retry.
    drop(late);
    drop(crowd);
    if let Ok(mut m) = hub.stats.last_429.lock() {
        m.clear();
    }
    let early_before = hub.stats.snapshot().hub_early_retries;
    let alone = Daemon::start_peer(&scratch.path().join("alone"), &hub.endpoint, &[]);
    let t = std::time::Instant::now();
    let snap = pulled_path(&alone.pull(&[MODEL], &[]));
    let s = hub.stats.snapshot();
    eprintln!(
        "lone pull under a 429 storm: {:?}, {} answers were 429",
        t.elapsed(),
        s.hub_429s
    );
    assert_eq!(snapshot_tree(&lone_snap), snapshot_tree(&snap));
    assert!(s.hub_429s > 0, "no 429 was answered");
    // Retry-After: 1 honoured: no path asked again within 0.9 s of its 429.
    assert_eq!(s.hub_early_retries - early_before, 0, "{s:?}");
}

/// The anchor a daemon's log last named (`hubmeta::anchor`), and whether it is that daemon.
fn anchor_in_log(d: &Daemon) -> Option<(String, bool)> {
    let log = d.log();
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("the fleet's anchor"))?;
    let id = line
        .split("anchor=")
        .nth(1)?
        .split_whitespace()
        .next()?
        .to_string();
    Some((id, line.contains("this node is the fleet's anchor")))
}

#[test]
fn a_fleet_in_a_line_climbs_to_one_anchor_and_asks_the_hub_once() {
    let (scratch, hub) = hub_for("outage-line");
    // One daemon alone: what a pull asks of the Hub.
    let (lone_snap, one) = lone_pull(&scratch, &hub);

    // n0 - n1 - n2 - n3 - n4: each member is connected to its neighbours only, so no member
    // sees the whole fleet, and a member's best-scoring neighbour is not the fleet's anchor.
    let fleet = fleet_key(&scratch.path().join("fleet.key"), "line test fleet secret");
    let mut line: Vec<Daemon> = Vec::new();
    for i in 0..5 {
        let peers: Vec<String> = line.last().map(|d| d.listen()).into_iter().collect();
        line.push(Daemon::start_peer_with(
            &scratch.path().join(format!("n{i}")),
            &hub.endpoint,
            &peers,
            &fleet,
        ));
    }
    for (i, d) in line.iter().enumerate() {
        wait_connected(d, if i == 0 || i == 4 { 1 } else { 2 });
    }
    // Routes spread a hop per poll (2 s): wait until every member names the same anchor,
    // and the anchor names itself.
    let agreed = zest_tests::harness::wait_until(std::time::Duration::from_secs(30), || {
        let seen: Vec<Option<(String, bool)>> = line.iter().map(anchor_in_log).collect();
        let Some(Some((first, _))) = seen.first() else {
            return false;
        };
        seen.iter()
            .all(|s| s.as_ref().is_some_and(|(a, _)| a == first))
            && seen
                .iter()
                .filter(|s| s.as_ref().is_some_and(|(_, me)| *me))
                .count()
                == 1
    });
    assert!(
        agreed,
        "the members did not agree on an anchor: {:?}",
        line.iter().map(anchor_in_log).collect::<Vec<_>>()
    );
    for d in &line {
        assert!(d.peers_in_state("connected").len() <= 2, "not a line");
    }
    // Whichever member it is, the anchor is two hops or more from a member at an end.
    let farthest = line
        .iter()
        .filter_map(|d| {
            let log = d.log();
            let l = log
                .lines()
                .rev()
                .find(|l| l.contains("the fleet's anchor"))?;
            l.split("hops=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<u32>()
                .ok()
        })
        .max();
    assert!(farthest >= Some(2), "routes of {farthest:?} hops");

    let before = hub_asks(&hub);
    let refs: Vec<&Daemon> = line.iter().collect();
    zest_tests::harness::pull_all(&refs, MODEL, &[]);
    let five = hub_asks(&hub) - before;
    eprintln!(
        "Hub requests: one node {one}, a line of five at once {five} ({:.2}x)",
        five as f64 / one as f64
    );
    for d in &line {
        let snap = pulled_path(&d.pull(&[MODEL], &[]));
        assert_eq!(snapshot_tree(&lone_snap), snapshot_tree(&snap));
    }
    // Without routes, each member that is the best-scoring in its own view asks the Hub:
    // in a line of five, usually two or three of them.
    assert!(
        five as f64 <= 1.2 * one as f64,
        "a line of five asked the Hub {five} times, one node alone {one}"
    );
}
