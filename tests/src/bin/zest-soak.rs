//! The soak (issue 16, part 5): several zestd on loopback, peered with each other and with a
//! peer that lies, pulling several repos over and over while daemons are killed (SIGKILL or
//! SIGTERM) and restarted at random and caches are wiped under them; at the end every cache
//! must be identical to huggingface_hub's, and a daemon that ran throughout must show flat
//! memory and open files. Not a CI test: `scripts/soak.sh` runs it (30 minutes by default).
//!
//! `zest-soak MINUTES DAEMONS WORKDIR` prints progress to stderr and a JSON summary to stdout;
//! it exits non-zero if a cache differs or a final pull fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use zest_tests::harness::{Daemon, EvilPeer, compare_caches, hf_python_ok, pulled_path};
use zest_tests::hub::fixtures::{self, DATASET, MODEL};
use zest_tests::hub::{FileSpec, HubConfig, RepoSpec, TestHub};

/// The repos pulled, as `(repo, repo type)`.
const BIG: &str = "zest-soak/big-model";

fn repos() -> [(&'static str, &'static str); 3] {
    [(MODEL, "model"), (DATASET, "dataset"), (BIG, "model")]
}

/// A small xorshift: the soak's choices, reproducible from the seed it prints.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Resident memory and open files of a process, from /proc.
fn rss_and_fds(pid: u64) -> (u64, u64) {
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    (rss, fds)
}

fn pull_cmd(d: &Daemon, repo: &str, repo_type: &str) -> Command {
    let mut c = d.zestctl_cmd(&[repo, "--repo-type", repo_type], &[]);
    c.stdout(Stdio::null()).stderr(Stdio::null());
    c
}

fn reference(hub: &TestHub, dir: &Path) -> PathBuf {
    let cache = dir.join("reference");
    zest_tests::harness::seed_shared_store(&cache);
    for (repo, repo_type) in repos() {
        hf_python_ok(
            "import sys\nfrom huggingface_hub import snapshot_download\n\
             print(snapshot_download(sys.argv[1], repo_type=sys.argv[2]))",
            &[repo, repo_type],
            &hub.endpoint,
            &cache,
            &dir.join("hf-home"),
            &[],
        );
    }
    cache
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(minutes), Some(n), Some(work)) = (
        args.get(1).and_then(|s| s.parse::<f64>().ok()),
        args.get(2).and_then(|s| s.parse::<usize>().ok()),
        args.get(3).map(PathBuf::from),
    ) else {
        eprintln!("usage: zest-soak MINUTES DAEMONS WORKDIR");
        std::process::exit(2);
    };
    let n = n.max(2);
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("work dir");
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64 | 1)
        .unwrap_or(0x9E37_79B9);
    let mut dice = Dice(seed);
    eprintln!(
        "soak: {minutes} min, {n} daemons, seed {seed}, in {}",
        work.display()
    );

    let big = work.join("big.safetensors");
    std::fs::write(&big, zest_tests::bf16_weights(48 << 20, 77)).expect("fixture");
    let mut specs = fixtures::standard();
    specs.push(RepoSpec::model(
        BIG,
        vec![
            FileSpec::plain("config.json", "{}"),
            FileSpec::xet_file("model.safetensors", big),
        ],
    ));
    let hub = TestHub::start(HubConfig::new(work.join("hub"), specs)).expect("hub");
    let reference = reference(&hub, &work);
    let liar = EvilPeer::start(&work.join("liar"), &reference, "wrong-bytes");

    // Fixed ports, so that a restarted daemon is found where it was.
    let mut daemons: Vec<Daemon> = Vec::new();
    for i in 0..n {
        let mut peers: Vec<String> = daemons.iter().map(Daemon::listen).collect();
        peers.push(liar.addr.clone());
        daemons.push(Daemon::start_peer(
            &work.join(format!("d{i}")),
            &hub.endpoint,
            &peers,
        ));
    }
    // Daemon 0 is never stopped: its memory and open files are the ones watched.
    let watched_pid = daemons[0].status_json()["pid"].as_u64().unwrap_or(0);

    let started = Instant::now();
    let end = started + Duration::from_secs_f64(minutes * 60.0);
    let mut running: Vec<Child> = Vec::new();
    let (mut kills, mut terms, mut wipes, mut pulls) = (0u32, 0u32, 0u32, 0u32);
    let mut samples: Vec<(f64, u64, u64)> = Vec::new();
    let mut next_sample = started;
    while Instant::now() < end {
        running.retain_mut(|c| matches!(c.try_wait(), Ok(None)));
        if running.len() < 2 * n {
            let d = &daemons[dice.below(n as u64) as usize];
            let (repo, repo_type) = repos()[dice.below(3) as usize];
            if let Ok(c) = pull_cmd(d, repo, repo_type).spawn() {
                running.push(c);
                pulls += 1;
            }
        }
        match dice.below(20) {
            0 => {
                let i = 1 + dice.below(n as u64 - 1) as usize;
                daemons[i].kill9();
                std::thread::sleep(Duration::from_millis(dice.below(2000)));
                daemons[i].spawn();
                kills += 1;
            }
            1 => {
                let i = 1 + dice.below(n as u64 - 1) as usize;
                let _ = daemons[i].terminate();
                daemons[i].spawn();
                terms += 1;
            }
            2 => {
                // A wiped cache (under a running daemon): its next pulls transfer again.
                let i = dice.below(n as u64) as usize;
                let _ = std::fs::remove_dir_all(daemons[i].cache());
                let _ = std::fs::create_dir_all(daemons[i].cache());
                wipes += 1;
            }
            _ => {}
        }
        if Instant::now() >= next_sample {
            let (rss, fds) = rss_and_fds(watched_pid);
            let t = started.elapsed().as_secs_f64();
            eprintln!(
                "soak: {:>6.0} s  pulls {pulls}  kill -9 {kills}  SIGTERM {terms}  wipes {wipes}  \
                 daemon 0: {} MiB, {fds} fds",
                t,
                rss >> 20
            );
            samples.push((t, rss, fds));
            next_sample += Duration::from_secs(30);
        }
        std::thread::sleep(Duration::from_millis(500));
    }

    // The end: no more faults; every daemon pulls every repo to completion.
    for c in &mut running {
        let _ = c.wait();
    }
    let mut failures = Vec::new();
    for (i, d) in daemons.iter().enumerate() {
        for (repo, repo_type) in repos() {
            let out = d.pull(&[repo, "--repo-type", repo_type], &[]);
            if !out.status.success() {
                failures.push(format!(
                    "d{i} {repo}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            } else {
                pulled_path(&out);
            }
        }
    }
    let mut differing = Vec::new();
    for (i, d) in daemons.iter().enumerate() {
        let diff = compare_caches(&reference, &d.cache());
        if !diff.is_empty() {
            differing.push(format!("d{i}: {}", diff.join("; ")));
        }
    }
    let (rss, fds) = rss_and_fds(watched_pid);
    samples.push((started.elapsed().as_secs_f64(), rss, fds));
    let banned: usize = daemons
        .iter()
        .filter(|d| d.peers_in_state("banned").contains(&liar.addr))
        .count();
    // Flat: the second half of the run against the first (after a minute of warming up).
    let half = |from: f64, to: f64| -> (u64, u64) {
        let s: Vec<_> = samples
            .iter()
            .filter(|(t, _, _)| *t >= from && *t < to)
            .collect();
        let k = s.len().max(1) as u64;
        (
            s.iter().map(|x| x.1).sum::<u64>() / k,
            s.iter().map(|x| x.2).sum::<u64>() / k,
        )
    };
    let total = started.elapsed().as_secs_f64();
    let (rss1, fds1) = half(60.0, total / 2.0);
    let (rss2, fds2) = half(total / 2.0, f64::MAX);
    let summary = serde_json::json!({
        "seed": seed,
        "minutes": minutes,
        "daemons": n,
        "pulls_started": pulls,
        "kill9": kills,
        "sigterm": terms,
        "cache_wipes": wipes,
        "final_pull_failures": failures,
        "caches_differing": differing,
        "daemons_that_banned_the_liar": banned,
        "daemon0_rss_mib_first_half": rss1 >> 20,
        "daemon0_rss_mib_second_half": rss2 >> 20,
        "daemon0_fds_first_half": fds1,
        "daemon0_fds_second_half": fds2,
        "daemon0_rss_mib_max": samples.iter().map(|s| s.1).max().unwrap_or(0) >> 20,
        "origin_bytes": hub.stats.snapshot().xorb_bytes,
    });
    println!("{summary}");
    // `exit` runs no destructors: the daemons and the liar are stopped here, not left behind.
    drop(daemons);
    drop(liar);
    if !failures.is_empty() || !differing.is_empty() {
        std::process::exit(1);
    }
}
