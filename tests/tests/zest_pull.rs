//! `zestctl pull` through zestd, against the test hub in front of Hugging Face's reference
//! CAS, checked against the cache huggingface_hub writes from the same hub.

use std::path::{Path, PathBuf};
use std::time::Duration;

use zest_tests::Scratch;
use zest_tests::harness::{
    Daemon, compare_caches, hf_python_ok, pulled_path, seed_shared_store, wait_until,
};
use zest_tests::hub::fixtures::{self, DATASET, MODEL, PRIVATE_MODEL};
use zest_tests::hub::{FaultSettings, FileSpec, HubConfig, RepoSpec, TEST_TOKEN, TestHub};

/// huggingface_hub's cache for `pulls`, each `(repo, type, allow, ignore)`.
fn reference_cache(hub: &TestHub, dir: &Path, pulls: &[(&str, &str, &[&str], &[&str])]) -> PathBuf {
    let cache = dir.join("hf-cache");
    seed_shared_store(&cache);
    for (repo, repo_type, allow, ignore) in pulls {
        let list = |v: &[&str]| {
            if v.is_empty() {
                "None".to_string()
            } else {
                format!("{v:?}")
            }
        };
        let script = format!(
            "import sys\nfrom huggingface_hub import snapshot_download\n\
             print(snapshot_download(sys.argv[1], repo_type=sys.argv[2], token=sys.argv[3], \
             allow_patterns={}, ignore_patterns={}))",
            list(allow),
            list(ignore)
        );
        hf_python_ok(
            &script,
            &[repo, repo_type, TEST_TOKEN],
            &hub.endpoint,
            &cache,
            &dir.join("hf-home"),
            &[],
        );
    }
    cache
}

fn assert_same(expected: &Path, actual: &Path) {
    let diffs = compare_caches(expected, actual);
    assert!(diffs.is_empty(), "caches differ:\n{}", diffs.join("\n"));
}

fn start_hub(scratch: &Scratch, repos: Vec<RepoSpec>) -> TestHub {
    TestHub::start(HubConfig::new(scratch.path().join("hub"), repos)).expect("test hub")
}

#[test]
fn pull_writes_the_cache_huggingface_hub_writes() {
    let scratch = Scratch::new("pull-matches-hf");
    let hub = start_hub(&scratch, fixtures::standard());
    let reference = reference_cache(
        &hub,
        scratch.path(),
        &[
            (MODEL, "model", &[], &[]),
            (DATASET, "dataset", &[], &[]),
            (PRIVATE_MODEL, "model", &[], &[]),
        ],
    );

    let daemon = Daemon::start(&scratch.path().join("zest"), &hub.endpoint);
    let model = pulled_path(&daemon.pull(&[MODEL], &[]));
    assert_eq!(
        model,
        daemon.cache().join(format!(
            "models--zest-test--tiny-model/snapshots/{}",
            hub.repo(MODEL).commit
        ))
    );
    pulled_path(&daemon.pull(&[DATASET, "--repo-type", "dataset"], &[]));
    pulled_path(&daemon.pull(&[PRIVATE_MODEL], &[("HF_TOKEN", TEST_TOKEN)]));
    assert_same(&reference, &daemon.cache());

    // huggingface_hub reads zest's cache offline, and its cache scanner finds it sound.
    let check = r#"
import sys, json
from huggingface_hub import snapshot_download, scan_cache_dir
paths = [snapshot_download(sys.argv[1], local_files_only=True),
         snapshot_download(sys.argv[2], repo_type="dataset", local_files_only=True),
         snapshot_download(sys.argv[3], local_files_only=True)]
info = scan_cache_dir()
print(json.dumps({"paths": paths, "warnings": [str(w) for w in info.warnings],
                  "repos": sorted([r.repo_id, r.repo_type, r.nb_files, r.size_on_disk] for r in info.repos)}))
"#;
    let out = hf_python_ok(
        check,
        &[MODEL, DATASET, PRIVATE_MODEL],
        &hub.endpoint,
        &daemon.cache(),
        &scratch.path().join("hf-home-2"),
        &[("HF_HUB_OFFLINE", "1")],
    );
    let v: serde_json::Value =
        serde_json::from_str(out.lines().last().unwrap_or("")).expect("json");
    assert_eq!(v["warnings"], serde_json::json!([]), "{v}");
    assert_eq!(
        v["paths"][0],
        serde_json::json!(model.display().to_string())
    );
    let repos = v["repos"].as_array().expect("repos");
    assert_eq!(repos.len(), 3, "{v}");

    // Pulling again is free: everything comes from the cache.
    let before = hub.stats.snapshot();
    let again = daemon.pull(&[MODEL], &[]);
    assert_eq!(pulled_path(&again), model);
    assert_eq!(hub.stats.snapshot().xorb_bytes, before.xorb_bytes);
    let status = daemon.status_json();
    assert!(
        status["bytes_from_origin"].as_u64().unwrap_or(0) > 0,
        "{status}"
    );
    assert!(
        status["bytes_from_local"].as_u64().unwrap_or(0) > 0,
        "{status}"
    );
    assert_eq!(status["bytes_from_peers"].as_u64(), Some(0), "{status}");
}

#[test]
fn private_repos_need_a_token_and_errors_are_clear() {
    let scratch = Scratch::new("pull-private");
    let hub = start_hub(&scratch, fixtures::standard());
    let daemon = Daemon::start(&scratch.path().join("zest"), &hub.endpoint);

    let stderr = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
    let no_token = daemon.pull(&[PRIVATE_MODEL], &[]);
    assert!(!no_token.status.success());
    assert!(
        stderr(&no_token).contains("HF_TOKEN"),
        "{}",
        stderr(&no_token)
    );
    assert!(no_token.stdout.is_empty());

    let wrong = daemon.pull(&[PRIVATE_MODEL], &[("HF_TOKEN", "hf_wrong")]);
    assert!(!wrong.status.success());
    assert!(stderr(&wrong).contains("denied"), "{}", stderr(&wrong));

    // The token file works like HF_TOKEN.
    let home = daemon.dir.join("hf-home");
    std::fs::create_dir_all(&home).expect("hf home");
    std::fs::write(home.join("token"), format!("{TEST_TOKEN}\n")).expect("token file");
    let ok = daemon.pull(&[PRIVATE_MODEL], &[]);
    let path = pulled_path(&ok);
    assert!(path.join("model.safetensors").exists());
    std::fs::remove_file(home.join("token")).expect("token file");
    // The daemon never wrote the token anywhere.
    assert!(!daemon.log().contains(TEST_TOKEN), "token in the log");
    let mut leaked = vec![];
    for dir in [daemon.state(), daemon.cache()] {
        for entry in walk(&dir) {
            if std::fs::read(&entry).is_ok_and(|b| {
                b.windows(TEST_TOKEN.len())
                    .any(|w| w == TEST_TOKEN.as_bytes())
            }) {
                leaked.push(entry);
            }
        }
    }
    assert!(leaked.is_empty(), "token written to {leaked:?}");

    let missing = daemon.pull(&["zest-test/no-such-model"], &[("HF_TOKEN", TEST_TOKEN)]);
    assert!(
        stderr(&missing).contains("not found"),
        "{}",
        stderr(&missing)
    );
    let bad_rev = daemon.pull(&[MODEL, "--revision", "v9"], &[]);
    assert!(
        stderr(&bad_rev).contains("revision \"v9\" not found"),
        "{}",
        stderr(&bad_rev)
    );
    let bad_type = daemon.pull(&[MODEL, "--repo-type", "space"], &[]);
    assert!(
        stderr(&bad_type).contains("repo type"),
        "{}",
        stderr(&bad_type)
    );
    let bad_name = daemon.pull(&["../../etc"], &[]);
    assert!(
        stderr(&bad_name).contains("invalid repo id"),
        "{}",
        stderr(&bad_name)
    );
    let unreachable = daemon.pull(&[MODEL], &[("HF_ENDPOINT", "http://127.0.0.1:9")]);
    assert!(
        stderr(&unreachable).contains("cannot reach"),
        "{}",
        stderr(&unreachable)
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            match std::fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => stack.push(p),
                Ok(m) if m.is_file() => out.push(p),
                _ => {}
            }
        }
    }
    out
}

#[test]
fn include_and_exclude_select_what_huggingface_hub_selects() {
    let scratch = Scratch::new("pull-filter");
    let hub = start_hub(&scratch, fixtures::standard());
    let allow: &[&str] = &["*.json", "nested/"];
    let ignore: &[&str] = &["tokenizer/*"];
    let reference = reference_cache(&hub, scratch.path(), &[(MODEL, "model", allow, ignore)]);
    let daemon = Daemon::start(&scratch.path().join("zest"), &hub.endpoint);
    let snap = pulled_path(&daemon.pull(
        &[
            MODEL,
            "--include",
            "*.json",
            "--include",
            "nested/",
            "--exclude",
            "tokenizer/*",
        ],
        &[],
    ));
    assert!(snap.join("config.json").exists());
    assert!(snap.join("nested/deeper/weights (copy 1).bin").exists());
    assert!(!snap.join("model.safetensors").exists());
    assert!(!snap.join("tokenizer/tokenizer.json").exists());
    assert_same(&reference, &daemon.cache());
}

#[test]
fn faults_at_the_origin_still_end_in_identical_files() {
    let scratch = Scratch::new("pull-faults");
    let hub = start_hub(&scratch, fixtures::standard());
    let reference = reference_cache(
        &hub,
        scratch.path(),
        &[(MODEL, "model", &[], &[]), (DATASET, "dataset", &[], &[])],
    );
    let daemon = Daemon::start(&scratch.path().join("zest"), &hub.endpoint);
    hub.set_faults(&FaultSettings {
        hub_5xx: 2,
        recon_5xx: 2,
        expire_urls: 1,
        no_v2: 2,
        fetch_5xx: 3,
        fetch_drop: 3,
        fetch_truncate: 3,
        fetch_rate: 0,
        ..Default::default()
    });
    pulled_path(&daemon.pull(&[MODEL], &[]));
    pulled_path(&daemon.pull(&[DATASET, "--repo-type", "dataset"], &[]));
    assert_eq!(
        hub.faults.armed(),
        0,
        "some injected faults never fired: {:?}",
        hub.faults
    );
    assert_same(&reference, &daemon.cache());
    assert!(!daemon.log().contains("panicked"));
}

#[test]
fn a_killed_daemon_resumes_without_refetching_and_shows_nothing_partial() {
    let scratch = Scratch::new("pull-kill");
    let dir = scratch.path().join("bigfiles");
    std::fs::create_dir_all(&dir).expect("dir");
    let big = dir.join("big.safetensors");
    std::fs::write(&big, zest_tests::bf16_weights(24 << 20, 9)).expect("fixture");
    let repo = RepoSpec::model(
        "zest-test/slow-model",
        vec![
            FileSpec::plain("config.json", "{}"),
            FileSpec::xet_file("big.safetensors", big.clone()),
        ],
    );
    let hub = start_hub(&scratch, vec![repo]);
    let reference = reference_cache(
        &hub,
        scratch.path(),
        &[("zest-test/slow-model", "model", &[], &[])],
    );
    let total_xorb_bytes = hub.stats.snapshot().xorb_bytes;

    // Slow the origin so the pull is caught in the middle.
    hub.set_faults(&FaultSettings {
        fetch_rate: 6 << 20,
        ..Default::default()
    });
    let mut daemon = Daemon::start(&scratch.path().join("zest"), &hub.endpoint);
    let start_bytes = hub.stats.snapshot().xorb_bytes;
    let child = daemon
        .zestctl_cmd(&["zest-test/slow-model"], &[])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("zestctl");
    let snapshot = daemon.cache().join(format!(
        "models--zest-test--slow-model/snapshots/{}",
        hub.repo("zest-test/slow-model").commit
    ));
    assert!(
        wait_until(Duration::from_secs(30), || hub.stats.snapshot().xorb_bytes
            - start_bytes
            > 6 << 20),
        "the pull never got going: {}",
        daemon.log()
    );
    daemon.kill9();
    let out = child.wait_with_output().expect("zestctl");
    assert!(
        !out.status.success(),
        "zestctl succeeded although its daemon died"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("again"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Nothing partial is visible in the snapshot.
    assert!(!snapshot.join("big.safetensors").exists());
    let fetched_before_kill = hub.stats.snapshot().xorb_bytes - start_bytes;

    // SIGTERM mid-pull: a prompt, clean exit.
    daemon.spawn();
    assert!(
        wait_until(Duration::from_secs(30), || hub.stats.snapshot().xorb_bytes
            - start_bytes
            > fetched_before_kill + (2 << 20)),
        "the resumed pull did not continue: {}",
        daemon.log()
    );
    let took = daemon.terminate();
    assert!(took < Duration::from_secs(5), "SIGTERM took {took:?}");
    assert!(!snapshot.join("big.safetensors").exists());

    // The next start resumes by itself; zestctl follows it to the end.
    hub.set_faults(&FaultSettings::default());
    daemon.spawn();
    let path = pulled_path(&daemon.pull(&["zest-test/slow-model"], &[]));
    assert_eq!(path, snapshot);
    assert_same(&reference, &daemon.cache());
    let fetched = hub.stats.snapshot().xorb_bytes - start_bytes;
    // Verified data was kept: well under two full downloads crossed the wire.
    assert!(
        fetched < total_xorb_bytes + total_xorb_bytes / 2,
        "fetched {fetched} bytes for a {total_xorb_bytes}-byte download"
    );
    assert!(
        daemon.log().contains("resuming a partial download"),
        "{}",
        daemon.log()
    );
    assert!(
        daemon.log().contains("resuming an unfinished pull"),
        "{}",
        daemon.log()
    );
}

#[test]
fn zest_and_huggingface_hub_share_one_cache_at_the_same_time() {
    let scratch = Scratch::new("pull-concurrent");
    let hub = start_hub(&scratch, fixtures::standard());
    let reference = reference_cache(
        &hub,
        scratch.path(),
        &[(MODEL, "model", &[], &[]), (DATASET, "dataset", &[], &[])],
    );
    let daemon = Daemon::start(&scratch.path().join("zest"), &hub.endpoint);
    let py = {
        let cache = daemon.cache();
        let endpoint = hub.endpoint.clone();
        let home = scratch.path().join("hf-home-c");
        std::thread::spawn(move || {
            hf_python_ok(
                "import sys\nfrom huggingface_hub import snapshot_download\nprint(snapshot_download(sys.argv[1]))\nprint(snapshot_download(sys.argv[2], repo_type='dataset'))",
                &[MODEL, DATASET],
                &endpoint,
                &cache,
                &home,
                &[],
            )
        })
    };
    // Two pulls at once, each with its own progress stream.
    let spawn = |args: &[&str]| {
        daemon
            .zestctl_cmd(args, &[])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("zestctl")
    };
    let a = spawn(&[MODEL]);
    let b = spawn(&[DATASET, "--repo-type", "dataset"]);
    pulled_path(&a.wait_with_output().expect("zestctl"));
    pulled_path(&b.wait_with_output().expect("zestctl"));
    py.join().expect("python thread");
    assert_same(&reference, &daemon.cache());
}

#[test]
fn repo_paths_that_escape_the_snapshot_are_refused() {
    let scratch = Scratch::new("pull-escape");
    let hub = start_hub(
        &scratch,
        vec![RepoSpec::model(
            "zest-test/evil",
            vec![
                FileSpec::plain("ok.txt", "fine"),
                FileSpec::plain("../../../escaped.txt", "gotcha"),
            ],
        )],
    );
    let daemon = Daemon::start(&scratch.path().join("zest"), &hub.endpoint);
    let out = daemon.pull(&["zest-test/evil"], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing"), "{err}");
    assert!(
        walk(&daemon.dir)
            .iter()
            .all(|p| !p.ends_with("escaped.txt"))
    );
    assert!(!scratch.path().join("escaped.txt").exists());
}
