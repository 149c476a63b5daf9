//! Daemons that find each other with no static peers: through Debian's opentracker or
//! aquatic's UDP tracker, a local Mainline DHT, or mDNS on a LAN of network namespaces;
//! private repos that stay in the fleet; peers that come and go mid-pull. Origin bytes come
//! from the test CAS's counters, tracker contents from their scrape replies, DHT contents
//! from its nodes.

use std::process::Command;
use std::time::{Duration, Instant};

use xet::XetHash;
use zest_tests::Scratch;
use zest_tests::harness::{
    Daemon, assert_same_cache, fleet_key, hf_python_ok, pull_all, pulled_path, scrape,
    seed_shared_store, wait_until, zest_probe,
};
use zest_tests::hub::fixtures::{self, MODEL, PRIVATE_MODEL};
use zest_tests::hub::{HubConfig, RepoSpec, TEST_TOKEN, TestHub};
use zest_tests::swarms::{AquaticUdp, LocalDht, NetnsLan, Opentracker};
use zestd::discovery::swarm::{SwarmKey, fleet_key as fleet_swarm_key, public_key};
use zestd::peer::FleetKey;

fn start_hub(scratch: &Scratch, repos: Vec<RepoSpec>) -> TestHub {
    TestHub::start(HubConfig::new(scratch.path().join("hub"), repos)).expect("test hub")
}

/// The standard repos and a 24 MiB benchmark model (whose id is returned).
fn hub_with_bench(scratch: &Scratch) -> (TestHub, String) {
    let bench = fixtures::bench(&scratch.path().join("bench-data"), 24 << 20).expect("fixture");
    let bench_repo = bench[0].id.clone();
    let mut repos = fixtures::standard();
    repos.extend(bench);
    (start_hub(scratch, repos), bench_repo)
}

/// The largest swarm a tracker's answer counted, as the daemons logged them.
fn max_counted(logs: &[String]) -> Option<usize> {
    logs.iter()
        .flat_map(|log| log.split("counted=Some(").skip(1))
        .filter_map(|rest| rest.split(')').next()?.parse::<usize>().ok())
        .max()
}

fn xorb_bytes(hub: &TestHub) -> u64 {
    hub.stats.snapshot().xorb_bytes
}

/// The Xet files of `repo` that have content.
fn xet_files(hub: &TestHub, repo: &str) -> Vec<XetHash> {
    let mut v: Vec<XetHash> = hub
        .repo(repo)
        .files
        .values()
        .filter(|f| f.size > 0)
        .filter_map(|f| f.xet_hash.as_deref()?.parse().ok())
        .collect();
    v.sort();
    v.dedup();
    v
}

fn public_keys(hub: &TestHub, repos: &[&str]) -> Vec<SwarmKey> {
    repos
        .iter()
        .flat_map(|r| xet_files(hub, r))
        .map(|h| public_key(&h))
        .collect()
}

fn num(d: &Daemon, key: &str) -> u64 {
    d.status_json()[key].as_u64().unwrap_or(0)
}

/// Peers `d` learned from `source` (tracker, dht, lan, incoming, static).
fn peers_from(d: &Daemon, source: &str) -> usize {
    d.peers_json()
        .iter()
        .filter(|p| p["source"] == source)
        .count()
}

fn args(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// A seed pulls `repo`; once discovery shows it, `nodes` pull at once and must take
/// (almost) nothing from the origin, get identical caches, and have learned of a peer
/// through `source` (the only one they were given).
fn seeded_then_crowd(
    hub: &TestHub,
    seed: &Daemon,
    nodes: &[Daemon],
    source: &str,
    announced: impl Fn() -> bool,
) {
    let out = seed.pull(&[MODEL], &[]);
    let _ = pulled_path(&out);
    let one_copy = xorb_bytes(hub);
    assert!(
        wait_until(Duration::from_secs(30), &announced),
        "the seed's files never showed up in discovery:\n{}",
        seed.log()
    );
    let before = xorb_bytes(hub);
    pull_all(&nodes.iter().collect::<Vec<_>>(), MODEL, &[]);
    let origin = xorb_bytes(hub) - before;
    eprintln!("seeded pulls took {origin} bytes from the origin (one copy is {one_copy})");
    assert!(
        origin * 100 <= one_copy,
        "seeded pulls took {origin} bytes from the origin (one copy is {one_copy})\n{}",
        nodes
            .iter()
            .map(|n| n.log())
            .collect::<Vec<_>>()
            .join("\n---- next node ----\n")
    );
    for n in nodes {
        assert_same_cache(&seed.cache(), &n.cache());
        assert!(num(n, "bytes_from_peers") > 0, "{}", n.status_json());
        assert!(n.peers_json().iter().all(|p| p["source"] != "static"));
    }
    assert!(
        peers_from(&nodes[0], source) >= 1,
        "{:?}",
        nodes[0].peers_json()
    );
    if source == "tracker" {
        // The tracker's answers count the swarm: what the planner is told of swarms
        // larger than a node's view. Whether an answer counts the announcer itself is the
        // tracker's choice (aquatic's does not), and which node announced first is a race,
        // but the last of the crowd to announce is answered with the seed and at least one
        // other node.
        let logs: Vec<String> = nodes.iter().map(|n| n.log()).collect();
        let counted = max_counted(&logs);
        assert!(
            counted.is_some_and(|n| n >= 2),
            "no swarm count of 2 or more in the tracker's answers ({counted:?}):\n{}",
            logs.join("\n")
        );
    }
}

/// `crowd`, holding none of `repo`, pull it at the same moment. Together they must take at
/// most 1.5 copies from the origin, where a copy is what one daemon pulling it alone, with
/// no peers, takes; and each must end with that lone daemon's cache.
fn flash_crowd(scratch: &Scratch, hub: &TestHub, crowd: &[Daemon], repo: &str, how: &str) {
    let before = xorb_bytes(hub);
    pull_all(&crowd.iter().collect::<Vec<_>>(), repo, &[]);
    let took = xorb_bytes(hub) - before;
    // Pulled after the crowd, by a daemon no discovery knows, so it cannot have helped.
    let lone = Daemon::start(&scratch.path().join(format!("lone-{how}")), &hub.endpoint);
    let b = xorb_bytes(hub);
    let out = lone.pull(&[repo], &[]);
    let _ = pulled_path(&out);
    let one_copy = (xorb_bytes(hub) - b).max(1);
    let copies = took as f64 / one_copy as f64;
    eprintln!(
        "flash crowd of {} through {how}: {copies:.2} copies from the origin",
        crowd.len()
    );
    assert!(
        copies <= 1.5,
        "a flash crowd of {} found through {how} took {copies:.2} copies from the origin\n{}",
        crowd.len(),
        crowd[0].log()
    );
    // Some of the crowd hold other repos too.
    let folder = format!("models--{}", repo.replace('/', "--"));
    for d in crowd {
        assert_same_cache(&lone.cache().join(&folder), &d.cache().join(&folder));
    }
}

/// After `seeded_then_crowd` with two nodes: the tracker lists the seed and both nodes as
/// seeds; once the nodes stop (event=stopped), only the seed.
fn seeds_listed_then_withdrawn(
    keys: &[SwarmKey],
    nodes: Vec<Daemon>,
    scrape: impl Fn(&SwarmKey) -> (i64, i64),
) {
    assert!(
        wait_until(Duration::from_secs(20), || keys
            .iter()
            .all(|k| scrape(k).0 >= 3)),
        "completed pulls were not announced as seeds: {:?}",
        keys.iter().map(&scrape).collect::<Vec<_>>()
    );
    for mut n in nodes {
        n.terminate();
    }
    assert!(
        wait_until(Duration::from_secs(10), || keys
            .iter()
            .all(|k| scrape(k).0 == 1)),
        "stopped daemons are still listed: {:?}",
        keys.iter().map(&scrape).collect::<Vec<_>>()
    );
}

#[test]
fn tracker_only_fleet_seeds_and_shares_a_flash_crowd() {
    let scratch = Scratch::new("disc-tracker");
    let (hub, bench_repo) = hub_with_bench(&scratch);
    let keys = public_keys(&hub, &[MODEL, &bench_repo]);
    let tracker = Opentracker::start(&scratch.path().join("tracker"), &keys);
    let t = args(&["--tracker", &tracker.announce_url()]);
    let start =
        |name: &str| Daemon::start_peer_with(&scratch.path().join(name), &hub.endpoint, &[], &t);

    // Seeded: three nodes find the seed through the tracker alone.
    let seed = start("seed");
    let nodes: Vec<Daemon> = (0..3).map(|i| start(&format!("node{i}"))).collect();
    let model_keys = public_keys(&hub, &[MODEL]);
    seeded_then_crowd(&hub, &seed, &nodes, "tracker", || {
        model_keys.iter().all(|k| tracker.scrape(k).0 >= 1)
    });

    // A flash crowd: four fresh daemons pull a new model at the same moment.
    let crowd: Vec<Daemon> = (0..4).map(|i| start(&format!("crowd{i}"))).collect();
    flash_crowd(&scratch, &hub, &crowd, &bench_repo, "tracker");
    // Completed downloads are announced as seeds.
    let bench_keys = public_keys(&hub, &[&bench_repo]);
    assert!(
        wait_until(Duration::from_secs(20), || bench_keys
            .iter()
            .all(|k| tracker.scrape(k).0 >= 4)),
        "{:?}",
        bench_keys
            .iter()
            .map(|k| tracker.scrape(k))
            .collect::<Vec<_>>()
    );
    // A daemon that stops withdraws (event=stopped).
    let before: i64 = model_keys.iter().map(|k| tracker.scrape(k).0).sum();
    for mut n in nodes {
        n.terminate();
    }
    assert!(
        wait_until(Duration::from_secs(10), || model_keys
            .iter()
            .map(|k| tracker.scrape(k).0)
            .sum::<i64>()
            < before),
        "stopped daemons are still listed"
    );
}

/// A crowd of 3 in a swarm the tracker counts as 13 (10 members it cannot reach): each
/// node sees only part of the swarm, so only drawn nodes fetch from the origin, claims
/// travel three hops (`FileHave.relayed`) and slots may be taken in part. The crowd must
/// still end with the lone daemon's cache and take about one copy from the origin, and the
/// claims must have gone over the wire: relayed by some node, heard by some node.
#[test]
fn a_crowd_in_a_swarm_larger_than_its_view_relays_claims_and_takes_one_copy() {
    let scratch = Scratch::new("disc-relay");
    let (hub, bench_repo) = hub_with_bench(&scratch);
    let keys = public_keys(&hub, &[&bench_repo]);
    let tracker = Opentracker::start(&scratch.path().join("tracker"), &keys);
    for k in &keys {
        tracker.announce_phantoms(k, 10);
        assert_eq!(tracker.scrape(k).1, 10, "the phantoms are counted");
    }
    let t = args(&["--tracker", &tracker.announce_url()]);
    let crowd: Vec<Daemon> = (0..3)
        .map(|i| {
            Daemon::start_peer_with(
                &scratch.path().join(format!("crowd{i}")),
                &hub.endpoint,
                &[],
                &t,
            )
        })
        .collect();
    flash_crowd(&scratch, &hub, &crowd, &bench_repo, "tracker, 13 counted");
    let logs: Vec<String> = crowd.iter().map(|n| n.log()).collect();
    let counted = max_counted(&logs);
    assert!(
        counted.is_some_and(|n| n >= 10),
        "the tracker's answers never counted the phantoms ({counted:?})"
    );
    let all = logs.join("\n");
    assert!(
        all.contains("relaying origin claims"),
        "no node relayed a claim:\n{all}"
    );
    assert!(
        all.contains("peers relay origin claims"),
        "no node heard a relayed claim:\n{all}"
    );
}

#[test]
fn udp_tracker_only_fleet_seeds_and_withdraws() {
    // The same opentracker, spoken to over BEP 15 only; its HTTP scrape shows the swarms.
    let scratch = Scratch::new("disc-udp-tracker");
    let hub = start_hub(&scratch, fixtures::standard());
    let keys = public_keys(&hub, &[MODEL]);
    let tracker = Opentracker::start(&scratch.path().join("tracker"), &keys);
    let t = args(&["--tracker", &tracker.udp_announce_url()]);
    let start =
        |name: &str| Daemon::start_peer_with(&scratch.path().join(name), &hub.endpoint, &[], &t);
    let seed = start("seed");
    let nodes: Vec<Daemon> = (0..2).map(|i| start(&format!("node{i}"))).collect();
    seeded_then_crowd(&hub, &seed, &nodes, "tracker", || {
        keys.iter().all(|k| tracker.scrape(k).0 >= 1)
    });
    // The seed's metrics say it announced and served.
    let m = scrape(seed.status_json()["hub_endpoint"].as_str().unwrap_or(""));
    assert!(
        m.value(
            "zest_announces_total",
            &[("channel", "tracker"), ("result", "ok")]
        ) >= 1.0
    );
    assert_eq!(
        m.value("zest_served_bytes_total", &[("to", "peer")]),
        num(&seed, "bytes_served") as f64
    );
    assert!(num(&seed, "bytes_served") > 0);
    seeds_listed_then_withdrawn(&keys, nodes, |k| tracker.scrape(k));
}

#[test]
fn a_second_tracker_implementation_aquatic_udp_links_the_fleet() {
    // Not opentracker: aquatic's BEP 15 tracker, built from crates.io. Its scrape replies
    // (BEP 15 too) show the swarms.
    let scratch = Scratch::new("disc-aquatic");
    let hub = start_hub(&scratch, fixtures::standard());
    let keys = public_keys(&hub, &[MODEL]);
    let tracker = AquaticUdp::start(&scratch.path().join("tracker"));
    let t = args(&["--tracker", &tracker.announce_url()]);
    let start =
        |name: &str| Daemon::start_peer_with(&scratch.path().join(name), &hub.endpoint, &[], &t);
    let seed = start("seed");
    let nodes: Vec<Daemon> = (0..2).map(|i| start(&format!("node{i}"))).collect();
    seeded_then_crowd(&hub, &seed, &nodes, "tracker", || {
        keys.iter().all(|k| tracker.scrape(k).0 >= 1)
    });
    seeds_listed_then_withdrawn(&keys, nodes, |k| tracker.scrape(k));
}

#[test]
fn dht_only_fleet_seeds_and_shares_a_flash_crowd() {
    let scratch = Scratch::new("disc-dht");
    let (hub, bench_repo) = hub_with_bench(&scratch);
    let dht = LocalDht::start(5);
    let a = dht.args();
    let start =
        |name: &str| Daemon::start_peer_with(&scratch.path().join(name), &hub.endpoint, &[], &a);
    let seed = start("seed");
    let nodes: Vec<Daemon> = (0..3).map(|i| start(&format!("node{i}"))).collect();
    let model_keys = public_keys(&hub, &[MODEL]);
    seeded_then_crowd(&hub, &seed, &nodes, "dht", || {
        model_keys.iter().all(|k| !dht.peers(k).is_empty())
    });
    let m = scrape(seed.status_json()["hub_endpoint"].as_str().unwrap_or(""));
    assert!(
        m.value(
            "zest_announces_total",
            &[("channel", "dht"), ("result", "ok")]
        ) >= 1.0
    );
    // Four fresh daemons, which only the DHT can introduce to each other.
    let crowd: Vec<Daemon> = (0..4).map(|i| start(&format!("crowd{i}"))).collect();
    flash_crowd(&scratch, &hub, &crowd, &bench_repo, "the DHT");
}

#[test]
fn lan_only_fleet_seeds_and_shares_a_flash_crowd_in_network_namespaces() {
    let lan = NetnsLan::create(4);
    let scratch = Scratch::new("disc-lan");
    let bench = fixtures::bench(&scratch.path().join("bench-data"), 24 << 20).expect("fixture");
    let bench_repo = bench[0].id.clone();
    let mut repos = fixtures::standard();
    repos.extend(bench);
    let mut cfg = HubConfig::new(scratch.path().join("hub"), repos);
    cfg.host = lan.gateway.clone();
    let hub = TestHub::start(cfg).expect("test hub on the LAN gateway");
    let daemons: Vec<Daemon> = lan
        .hosts
        .iter()
        .zip(&lan.host_ips)
        .enumerate()
        .map(|(i, (ns, ip))| {
            Daemon::start_in_netns(
                &scratch.path().join(format!("host{i}")),
                &hub.endpoint,
                ns,
                &args(&["--listen", &format!("{ip}:4747"), "--mdns"]),
            )
        })
        .collect();
    let (seed, nodes) = daemons.split_first().expect("four hosts");
    // mDNS announces presence, not content: every host finds every other (some connect
    // first from the other side, so they show as incoming; nothing else could have told
    // them).
    for d in &daemons {
        assert!(
            wait_until(Duration::from_secs(20), || {
                d.peers_in_state("connected").len() >= 3
                    && d.peers_json()
                        .iter()
                        .all(|p| p["source"] == "lan" || p["source"] == "incoming")
            }),
            "{} found {:?} on the LAN\n{}",
            d.dir.display(),
            d.peers_json(),
            d.log()
        );
    }
    assert!(
        daemons.iter().map(|d| peers_from(d, "lan")).sum::<usize>() >= 1,
        "nobody was found through mDNS: {:?}",
        daemons.iter().map(|d| d.peers_json()).collect::<Vec<_>>()
    );
    let out = seed.pull(&[MODEL], &[]);
    let _ = pulled_path(&out);
    let one_copy = xorb_bytes(&hub);
    let before = xorb_bytes(&hub);
    pull_all(&nodes.iter().collect::<Vec<_>>(), MODEL, &[]);
    let origin = xorb_bytes(&hub) - before;
    assert!(
        origin * 100 <= one_copy,
        "seeded LAN pulls took {origin} bytes from the origin (one copy is {one_copy})"
    );
    for n in nodes {
        assert_same_cache(&seed.cache(), &n.cache());
    }
    // All four hosts pull a model none of them has, at the same moment.
    flash_crowd(&scratch, &hub, &daemons, &bench_repo, "mDNS");
}

#[test]
fn loopback_mdns_stays_on_loopback() {
    // A daemon listening on loopback announces there only: nothing is sent on other
    // interfaces. Run in a namespace of its own with a veth, and watch that veth.
    let lan = NetnsLan::create(1);
    let scratch = Scratch::new("disc-lo");
    let hub = start_hub(&scratch, fixtures::standard());
    let ns = &lan.hosts[0];
    let veth = lan.veth(0);
    let packets = || -> u64 {
        let out = Command::new("ip")
            .args(["-n", ns, "-s", "-j", "link", "show", &veth])
            .output()
            .expect("ip");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v[0]["stats64"]["tx"]["packets"].as_u64().unwrap_or(0)
    };
    let before = packets();
    let d = Daemon::start_in_netns(
        &scratch.path().join("d"),
        &hub.endpoint,
        ns,
        &args(&["--listen", "127.0.0.1:4747", "--mdns"]),
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        d.log()
            .contains("LAN discovery (mDNS) is off: listening on loopback"),
        "{}",
        d.log()
    );
    assert_eq!(
        packets(),
        before,
        "a loopback daemon sent packets on the LAN"
    );
}

/// zest-probe asks `peer` about `file` (have, then get chunk 0), as a stranger or, with
/// a fleet key file, as a fleet member.
fn probe(
    scratch: &Scratch,
    peer: &str,
    file: &XetHash,
    fleet: Option<&std::path::Path>,
) -> serde_json::Value {
    let state = scratch.path().join(if fleet.is_some() {
        "probe-member"
    } else {
        "probe-stranger"
    });
    let args: Vec<&std::ffi::OsStr> = fleet
        .into_iter()
        .flat_map(|k| [std::ffi::OsStr::new("--fleet-key-file"), k.as_os_str()])
        .collect();
    zest_probe(peer, &file.to_string(), &state, &args).unwrap_or_else(|e| panic!("{e}"))
}

/// Counts mDNS packets (UDP 5353, group 224.0.0.251) reaching `ip` in namespace `ns` for
/// `secs` seconds. Ready when this returns.
struct MdnsWatch(std::process::Child);

const MDNS_WATCH: &str = r#"
import socket, sys, time
ip, secs = sys.argv[1], float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 5353))
s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
             socket.inet_aton("224.0.0.251") + socket.inet_aton(ip))
print("ready", flush=True)
end, n, src = time.time() + secs, 0, set()
while time.time() < end:
    s.settimeout(max(0.01, end - time.time()))
    try:
        _, a = s.recvfrom(9000)
        n += 1
        src.add(a[0])
    except socket.timeout:
        pass
print(n, *sorted(src), flush=True)
"#;

impl MdnsWatch {
    fn start(ns: &str, ip: &str, secs: u32) -> MdnsWatch {
        use std::io::BufRead;
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, "python3", "-c", MDNS_WATCH, ip])
            .arg(secs.to_string())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 mDNS watcher");
        let mut line = String::new();
        let stdout = child.stdout.as_mut().expect("watcher stdout");
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("watcher output");
        assert_eq!(line.trim(), "ready");
        MdnsWatch(child)
    }

    /// (packets, their source addresses)
    fn finish(self) -> (u64, String) {
        let out = self.0.wait_with_output().expect("watcher");
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let mut words = text.split_whitespace();
        let n = words
            .next()
            .and_then(|w| w.parse().ok())
            .expect("packet count");
        (n, words.collect::<Vec<_>>().join(" "))
    }
}

#[test]
fn mdns_stays_on_the_listen_interface() {
    // Host 0 has two links: the LAN, and one to an observer. Listening on its LAN address,
    // its daemon finds host 1 over mDNS and the observer hears no mDNS from it; listening
    // on every interface (the control), the observer hears it.
    let lan = NetnsLan::create(2);
    let (observer, observer_ip) = lan.attach_observer(0);
    let scratch = Scratch::new("disc-mdns-if");
    let mut cfg = HubConfig::new(scratch.path().join("hub"), fixtures::standard());
    cfg.host = lan.gateway.clone();
    let hub = TestHub::start(cfg).expect("test hub on the LAN gateway");
    let start = |i: usize, listen: &str, name: &str| {
        Daemon::start_in_netns(
            &scratch.path().join(name),
            &hub.endpoint,
            &lan.hosts[i],
            &args(&["--listen", listen, "--mdns"]),
        )
    };
    let watch = MdnsWatch::start(&observer, &observer_ip, 8);
    let mut a = start(0, &format!("{}:4747", lan.host_ips[0]), "a");
    let b = start(1, &format!("{}:4747", lan.host_ips[1]), "b");
    assert!(
        wait_until(Duration::from_secs(20), || {
            a.peers_in_state("connected").len() == 1 && b.peers_in_state("connected").len() == 1
        }),
        "the two hosts did not meet: {:?} {:?}\n{}",
        a.peers_json(),
        b.peers_json(),
        a.log()
    );
    assert!(peers_from(&a, "lan") + peers_from(&b, "lan") >= 1);
    let (heard, from) = watch.finish();
    assert_eq!(heard, 0, "the observer heard mDNS from {from}");

    a.kill9();
    let watch = MdnsWatch::start(&observer, &observer_ip, 6);
    let _all = start(0, "0.0.0.0:4747", "a-all");
    let (heard, from) = watch.finish();
    assert!(
        heard > 0,
        "the control failed: a daemon on 0.0.0.0 was not heard on the observer's link"
    );
    assert!(from.contains("10.214."), "{from}");
}

#[test]
fn private_repo_stays_inside_the_fleet() {
    let scratch = Scratch::new("disc-private");
    let hub = start_hub(&scratch, fixtures::standard());
    let secret = "the fleet's shared secret, 32+ bytes long";
    let fkey = FleetKey::from_secret(secret.as_bytes());
    let private_files = xet_files(&hub, PRIVATE_MODEL);
    assert!(!private_files.is_empty());
    let private_public_keys: Vec<SwarmKey> = private_files.iter().map(public_key).collect();
    let private_fleet_keys: Vec<SwarmKey> = private_files
        .iter()
        .map(|h| fleet_swarm_key(&fkey, h))
        .collect();
    // Both trackers would accept every key, so only zest's policy keeps them off.
    let mut all = public_keys(&hub, &[MODEL]);
    all.extend(&private_public_keys);
    all.extend(&private_fleet_keys);
    let public_tracker = Opentracker::start(&scratch.path().join("public-tracker"), &all);
    let fleet_tracker = Opentracker::start(&scratch.path().join("fleet-tracker"), &all);
    let dht = LocalDht::start(5);
    let mut fleet_args = fleet_key(&scratch.path().join("fleet.key"), secret);
    fleet_args.extend(args(&[
        "--tracker",
        &public_tracker.announce_url(),
        "--private-tracker",
        &fleet_tracker.announce_url(),
    ]));
    fleet_args.extend(dht.args());
    let a = Daemon::start_peer_with(&scratch.path().join("a"), &hub.endpoint, &[], &fleet_args);
    let token = [("HF_TOKEN", TEST_TOKEN)];
    let out = a.pull(&[PRIVATE_MODEL], &token);
    let _ = pulled_path(&out);
    let out = a.pull(&[MODEL], &[]);
    let _ = pulled_path(&out);
    let one_copy = xorb_bytes(&hub);

    // The fleet tracker has the private files under fleet keys; public content is on the
    // public tracker and the DHT.
    assert!(
        wait_until(Duration::from_secs(30), || private_fleet_keys
            .iter()
            .all(|k| fleet_tracker.scrape(k).0 >= 1)),
        "private files never reached the fleet tracker\n{}",
        a.log()
    );
    let model_keys = public_keys(&hub, &[MODEL]);
    assert!(
        wait_until(Duration::from_secs(30), || model_keys.iter().all(
            |k| public_tracker.scrape(k).0 >= 1 && !dht.peers(k).is_empty()
        )),
        "public files never reached the public tracker and the DHT"
    );

    // Another fleet node finds it on the fleet tracker and takes the private repo from it.
    let b = Daemon::start_peer_with(&scratch.path().join("b"), &hub.endpoint, &[], &fleet_args);
    let before = xorb_bytes(&hub);
    let out = b.pull(&[PRIVATE_MODEL], &token);
    let _ = pulled_path(&out);
    assert!(
        (xorb_bytes(&hub) - before) * 100 <= one_copy,
        "the fleet node took the private repo from the origin\n{}",
        b.log()
    );
    assert!(num(&b, "bytes_from_peers") > 0);
    assert!(b.peers_json().iter().any(|p| p["fleet"] == true));

    // Never announced where strangers look: not on the public tracker (under any key),
    // not on the DHT, and not under its public key on the fleet tracker.
    std::thread::sleep(Duration::from_secs(2));
    for k in private_public_keys.iter().chain(&private_fleet_keys) {
        assert_eq!(public_tracker.scrape(k), (0, 0), "public tracker holds {k}");
        assert!(dht.peers(k).is_empty(), "the DHT holds {k}");
    }
    for k in &private_public_keys {
        assert_eq!(
            fleet_tracker.scrape(k),
            (0, 0),
            "fleet tracker holds public key {k}"
        );
    }

    // A stranger asking for a private file is refused; a fleet member is served.
    let fleet_file = scratch.path().join("fleet.key");
    let stranger = probe(&scratch, &a.listen(), &private_files[0], None);
    assert_eq!(stranger["held_chunks"], 0, "{stranger}");
    assert_eq!(stranger["bytes"], 0, "{stranger}");
    assert!(
        stranger["get"]
            .as_str()
            .is_some_and(|g| g.contains("does not have")),
        "{stranger}"
    );
    let member = probe(&scratch, &a.listen(), &private_files[0], Some(&fleet_file));
    assert!(member["held_chunks"].as_u64().unwrap_or(0) > 0, "{member}");
    assert_eq!(member["get"], "ok", "{member}");

    // A daemon outside the fleet, told of `a` directly, pulls the private repo with its
    // own token: it gets nothing from `a`, and `a` serves it nothing.
    let served = num(&a, "bytes_served");
    let c = Daemon::start_peer_with(&scratch.path().join("c"), &hub.endpoint, &[a.listen()], &[]);
    assert!(wait_until(Duration::from_secs(20), || !c
        .peers_in_state("connected")
        .is_empty()));
    let out = c.pull(&[PRIVATE_MODEL], &token);
    let _ = pulled_path(&out);
    assert_eq!(num(&c, "bytes_from_peers"), 0, "{}", c.status_json());
    assert_eq!(num(&a, "bytes_served"), served);
    assert_same_cache(
        &a.cache().join("models--zest-test--private-model"),
        &c.cache().join("models--zest-test--private-model"),
    );
}

#[test]
fn files_another_tool_cached_are_public_only_if_the_hub_says_so() {
    // huggingface_hub fills the cache of a daemon with no fleet: a public model and,
    // with a token, a private one. zestd asks the Hub anonymously; the public model is then
    // served to strangers and announced on the public tracker, the private one neither.
    let scratch = Scratch::new("disc-hf-written");
    let hub = start_hub(&scratch, fixtures::standard());
    let mut keys = public_keys(&hub, &[MODEL, PRIVATE_MODEL]);
    keys.sort();
    let tracker = Opentracker::start(&scratch.path().join("tracker"), &keys);
    let t = args(&["--tracker", &tracker.announce_url()]);
    let holder = Daemon::start_peer_with(&scratch.path().join("holder"), &hub.endpoint, &[], &t);
    seed_shared_store(&holder.cache());
    let download = |repo: &str, env: &[(&str, &str)]| {
        hf_python_ok(
            "import sys\nfrom huggingface_hub import snapshot_download\nprint(snapshot_download(sys.argv[1]))",
            &[repo],
            &hub.endpoint,
            &holder.cache(),
            &scratch.path().join("hf-home"),
            env,
        )
    };
    download(MODEL, &[]);
    download(PRIVATE_MODEL, &[("HF_TOKEN", TEST_TOKEN)]);
    let public_files = xet_files(&hub, MODEL);
    let private_files = xet_files(&hub, PRIVATE_MODEL);
    let expected = (public_files.len() + private_files.len()) as u64;
    assert!(
        wait_until(Duration::from_secs(20), || num(&holder, "indexed_files")
            >= expected),
        "{}",
        holder.log()
    );
    let model_keys = public_keys(&hub, &[MODEL]);
    assert!(
        wait_until(Duration::from_secs(30), || model_keys
            .iter()
            .all(|k| tracker.scrape(k).0 >= 1)),
        "the public model never reached the public tracker\n{}",
        holder.log()
    );
    let seen = probe(&scratch, &holder.listen(), &public_files[0], None);
    assert!(seen["held_chunks"].as_u64().unwrap_or(0) > 0, "{seen}");
    assert_eq!(seen["get"], "ok", "{seen}");

    // The private model: once the Hub refused the anonymous question, still refused to a
    // stranger, and never on the tracker.
    assert!(
        wait_until(Duration::from_secs(20), || holder.log().lines().any(|l| l
            .contains("models--zest-test--private-model")
            && l.contains("public=false"))),
        "the private repo was never settled\n{}",
        holder.log()
    );
    let refused = probe(&scratch, &holder.listen(), &private_files[0], None);
    assert_eq!(refused["held_chunks"], 0, "{refused}");
    for h in &private_files {
        assert_eq!(tracker.scrape(&public_key(h)), (0, 0));
    }

    // A stranger that finds the holder on the tracker pulls the public model from it.
    let before = xorb_bytes(&hub);
    let stranger =
        Daemon::start_peer_with(&scratch.path().join("stranger"), &hub.endpoint, &[], &t);
    let out = stranger.pull(&[MODEL], &[]);
    let _ = pulled_path(&out);
    assert!(
        (xorb_bytes(&hub) - before) * 100 <= before.max(1),
        "the stranger went to the origin\n{}",
        stranger.log()
    );
    assert!(num(&stranger, "bytes_from_peers") > 0);
}

#[test]
fn peers_joining_and_leaving_mid_pull_neither_stall_nor_corrupt() {
    let scratch = Scratch::new("disc-churn");
    let bench = fixtures::bench(&scratch.path().join("bench-data"), 24 << 20).expect("fixture");
    let repo = bench[0].id.clone();
    let hub = start_hub(&scratch, bench);
    let keys = public_keys(&hub, &[&repo]);
    let tracker = Opentracker::start(&scratch.path().join("tracker"), &keys);
    let t = args(&["--tracker", &tracker.announce_url()]);
    let start =
        |name: &str| Daemon::start_peer_with(&scratch.path().join(name), &hub.endpoint, &[], &t);
    // A slow origin, so the pulls last long enough for peers to come and go.
    hub.faults
        .fetch_rate
        .store(6 << 20, std::sync::atomic::Ordering::SeqCst);
    let mut leaver = start("leaver");
    let stayers: Vec<Daemon> = (0..2).map(|i| start(&format!("stay{i}"))).collect();
    let repo: &str = &repo;
    let began = Instant::now();
    std::thread::scope(|s| {
        let pulls: Vec<_> = stayers
            .iter()
            .map(|d| s.spawn(move || d.pull(&[repo], &[])))
            .collect();
        let mut leaving = leaver
            .zestctl_cmd(&[repo], &[])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("zestctl");
        std::thread::sleep(Duration::from_millis(1500));
        // One peer dies mid-pull, another arrives mid-pull.
        leaver.kill9();
        let _ = leaving.wait();
        let joiner = start("joiner");
        let out = joiner.pull(&[repo], &[]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for (p, d) in pulls.into_iter().zip(&stayers) {
            let out = p.join().expect("pull thread");
            assert!(
                out.status.success(),
                "{}: {}\n{}",
                d.dir.display(),
                String::from_utf8_lossy(&out.stderr),
                d.log()
            );
        }
        assert_same_cache(&stayers[0].cache(), &joiner.cache());
    });
    hub.faults
        .fetch_rate
        .store(0, std::sync::atomic::Ordering::SeqCst);
    // One copy at 6 MiB/s is ~4 s; a stall would wait out timeouts many times over.
    assert!(
        began.elapsed() < Duration::from_secs(40),
        "the pulls took {:?}",
        began.elapsed()
    );
    assert_same_cache(&stayers[0].cache(), &stayers[1].cache());
    let lone = start("lone");
    let out = lone.pull(&[repo], &[]);
    let _ = pulled_path(&out);
    assert_same_cache(&lone.cache(), &stayers[0].cache());
}
