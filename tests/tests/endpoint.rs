//! zestd as a local Hugging Face endpoint: huggingface_hub, hf_xet and the `hf` CLI,
//! unchanged but for HF_ENDPOINT (or `zest.enable()`), download through a zestd whose peer
//! holds the model. The oracle is a direct download from the same hub by the same
//! huggingface_hub; origin bytes are read from the test CAS's own counters.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use zest_tests::Scratch;
use zest_tests::harness::{
    Daemon, EvilPeer, assert_same_cache, fleet_key, hf_python, hf_python_ok, http_get, pulled_path,
    scrape, wait_until,
};
use zest_tests::hub::fixtures::{self, LOADABLE, MODEL, PRIVATE_MODEL};
use zest_tests::hub::{HubConfig, TEST_TOKEN, TestHub};

const SNAPSHOT: &str = r#"
import sys
from huggingface_hub import snapshot_download
print(snapshot_download(sys.argv[1]))
"#;

struct Fleet {
    scratch: Scratch,
    hub: TestHub,
    /// Kept running: the node's only peer.
    _seed: Daemon,
    node: Daemon,
}

impl Fleet {
    /// A seed that pulled the standard test model from the origin, and a node with the
    /// seed as its peer, whose endpoint the clients use.
    fn start(name: &str) -> Fleet {
        Fleet::start_with(name, fixtures::standard(), MODEL, &[], None)
    }

    /// The same over `repos`: the seed pulls `repo` (with `env`); with a fleet secret both
    /// daemons are members of that fleet.
    fn start_with(
        name: &str,
        repos: Vec<zest_tests::hub::RepoSpec>,
        repo: &str,
        env: &[(&str, &str)],
        fleet_secret: Option<&str>,
    ) -> Fleet {
        let scratch = Scratch::new(name);
        let hub =
            TestHub::start(HubConfig::new(scratch.path().join("hub"), repos)).expect("test hub");
        let fleet = fleet_secret
            .map(|s| fleet_key(&scratch.path().join("fleet.key"), s))
            .unwrap_or_default();
        let seed =
            Daemon::start_peer_with(&scratch.path().join("seed"), &hub.endpoint, &[], &fleet);
        let _ = pulled_path(&seed.pull(&[repo], env));
        let node = connected_node(
            &scratch.path().join("node"),
            &hub,
            std::slice::from_ref(&seed.listen()),
            &fleet,
            1,
        );
        Fleet {
            scratch,
            hub,
            _seed: seed,
            node,
        }
    }

    fn endpoint(&self) -> String {
        let e = status_str(&self.node, "hub_endpoint");
        assert!(
            e.starts_with("http://127.0.0.1:"),
            "no endpoint in status: {e:?}"
        );
        e
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.scratch.path().join(name)
    }

    fn origin_bytes(&self) -> u64 {
        self.hub.stats.snapshot().xorb_bytes
    }

    /// The cache a direct download from the hub writes: the oracle.
    fn reference(&self, repo: &str, token: Option<&str>) -> PathBuf {
        let cache = self.dir(&format!("ref-{}", repo.replace('/', "_")));
        let env: Vec<(&str, &str)> = token.map(|t| ("HF_TOKEN", t)).into_iter().collect();
        hf_python_ok(
            SNAPSHOT,
            &[repo],
            &self.hub.endpoint,
            &cache,
            &self.dir("ref-home"),
            &env,
        );
        cache
    }
}

/// A test hub with the standard repos, and a direct download of the test model from it
/// (the oracle) in `ref`, made with `home` as HF_HOME.
fn standard_hub(name: &str) -> (Scratch, TestHub, PathBuf, PathBuf) {
    let scratch = Scratch::new(name);
    let hub = TestHub::start(HubConfig::new(
        scratch.path().join("hub"),
        fixtures::standard(),
    ))
    .expect("test hub");
    let home = scratch.path().join("home");
    let reference = scratch.path().join("ref");
    hf_python_ok(SNAPSHOT, &[MODEL], &hub.endpoint, &reference, &home, &[]);
    (scratch, hub, home, reference)
}

/// A daemon with these peers (and extra flags), once connected to `n` of them.
fn connected_node(
    dir: &Path,
    hub: &TestHub,
    peers: &[String],
    extra: &[String],
    n: usize,
) -> Daemon {
    let node = Daemon::start_peer_with(dir, &hub.endpoint, peers, extra);
    assert!(
        wait_until(Duration::from_secs(20), || node
            .peers_in_state("connected")
            .len()
            >= n),
        "{} never connected to {n} peers: {}",
        dir.display(),
        node.log()
    );
    node
}

/// A string field of `zestctl status --json`.
fn status_str(d: &Daemon, key: &str) -> String {
    d.status_json()[key]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn num(d: &Daemon, key: &str) -> u64 {
    d.status_json()[key].as_u64().unwrap_or(0)
}

/// The one snapshot folder of the test model in `cache`.
fn snapshot_of(cache: &Path) -> PathBuf {
    std::fs::read_dir(cache.join("models--zest-test--tiny-model/snapshots"))
        .expect("a snapshot folder")
        .flatten()
        .next()
        .expect("one snapshot")
        .path()
}

/// `hf download MODEL [extra…]` with HF_ENDPOINT on `ep`; panics with stderr on failure.
fn hf_download(ep: &str, cache: &Path, home: &Path, extra: &[&std::ffi::OsStr]) {
    let st = Command::new(hf_cli())
        .args(["download", MODEL])
        .args(extra)
        .env("HF_ENDPOINT", ep)
        .env("HF_HUB_CACHE", cache)
        .env("HF_HOME", home)
        .env("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        .env_remove("HF_TOKEN")
        .output()
        .expect("running hf");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
}

fn hf_cli() -> PathBuf {
    zest_tests::python().with_file_name("hf")
}

/// Lines of `name\tpath` a client printed: `n` of them, each file with the bytes of `name`
/// below `snap`.
fn same_as_listed<'a>(out: &'a str, snap: &Path, n: usize) -> Vec<(&'a str, &'a str)> {
    let files: Vec<(&str, &str)> = out.lines().filter_map(|l| l.split_once('\t')).collect();
    assert_eq!(files.len(), n, "{out}");
    for (name, path) in &files {
        assert_eq!(
            std::fs::read(path).unwrap(),
            std::fs::read(snap.join(name)).unwrap(),
            "{name}"
        );
    }
    files
}

/// Every file below `a` has the same bytes below `b` (symlinks followed).
fn same_files(a: &Path, b: &Path) {
    for e in walk(a) {
        let rel = e.strip_prefix(a).unwrap();
        let (x, y) = (std::fs::read(&e).unwrap(), std::fs::read(b.join(rel)));
        assert_eq!(Some(&x), y.as_ref().ok(), "{} differs", rel.display());
    }
}

fn walk(d: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(d).unwrap().flatten() {
        let p = e.path();
        if p.file_name().is_some_and(|n| n == ".cache") {
            continue;
        }
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn every_client_downloads_through_the_endpoint_from_peers() {
    let f = Fleet::start("endpoint-clients");
    let reference = f.reference(MODEL, None);
    let ep = f.endpoint();
    let home = f.dir("home");

    // 1. snapshot_download, HF_ENDPOINT only.
    let before = f.origin_bytes();
    let cache = f.dir("c-snapshot");
    hf_python_ok(SNAPSHOT, &[MODEL], &ep, &cache, &home, &[]);
    assert_same_cache(&reference, &cache);
    assert_eq!(
        f.origin_bytes() - before,
        0,
        "the CAS sent Xet bytes although the peer held them all"
    );
    assert!(
        wait_until(Duration::from_secs(10), || num(&f.node, "bytes_from_peers")
            > 0),
        "the node's counters show nothing from peers: {}",
        f.node.status_json()
    );
    assert!(num(&f.node, "bytes_to_clients") > 0);
    assert!(num(&f.node, "endpoint_requests") > 0);

    // 2. hf_hub_download, one file at a time.
    let snap = snapshot_of(&reference);
    let out = hf_python_ok(
        r#"
import sys
from huggingface_hub import hf_hub_download
for name in ["model.safetensors", "tokenizer/tokenizer.json", "config.json"]:
    print(name + "\t" + hf_hub_download(sys.argv[1], name))
"#,
        &[MODEL],
        &ep,
        &f.dir("c-file"),
        &home,
        &[],
    );
    same_as_listed(&out, &snap, 3);
    // This client's cache is not zestd's: it downloaded the first file after its HEAD was
    // held, so the next HEADs were answered at once.
    assert!(
        f.node
            .log()
            .contains("HEAD not held: recent clients downloaded what they could have linked"),
        "{}",
        f.node.log()
    );

    // 3. The `hf` CLI, into the cache and into a folder.
    let cache = f.dir("c-cli");
    hf_download(&ep, &cache, &home, &[]);
    assert_same_cache(&reference, &cache);
    let folder = f.dir("c-local-dir");
    hf_download(
        &ep,
        &f.dir("c-local-dir-cache"),
        &home,
        &["--local-dir".as_ref(), folder.as_os_str()],
    );
    same_files(&snap, &folder);

    // 4. HfFileSystem reads, whole and ranged.
    let got = hf_python_ok(
        r#"
import sys, hashlib
from huggingface_hub import HfFileSystem
fs = HfFileSystem()
with fs.open(f"{sys.argv[1]}/model.safetensors", "rb") as fh:
    print(hashlib.sha256(fh.read()).hexdigest())
with fs.open(f"{sys.argv[1]}/model.safetensors", "rb") as fh:
    fh.seek(1000)
    print(hashlib.sha256(fh.read(5000)).hexdigest())
"#,
        &[MODEL],
        &ep,
        &f.dir("c-fs"),
        &home,
        &[],
    );
    let weights = std::fs::read(snap.join("model.safetensors")).unwrap();
    let hex = |d: &[u8]| -> String {
        zest_tests::sha256(d)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    assert_eq!(
        got.lines().collect::<Vec<_>>(),
        vec![hex(&weights), hex(&weights[1000..6000])],
        "HfFileSystem read other bytes"
    );
    assert_eq!(
        f.origin_bytes() - before,
        0,
        "no client made the CAS send Xet bytes"
    );
}

#[test]
fn the_client_on_zestds_own_cache_keeps_one_copy() {
    let f = Fleet::start("endpoint-one-copy");
    let reference = f.reference(MODEL, None);
    let ep = f.endpoint();
    hf_python_ok(
        SNAPSHOT,
        &[MODEL],
        &ep,
        &f.node.cache(),
        &f.dir("home"),
        &[],
    );
    // The node's cache now holds the repo huggingface_hub wrote, beside what zestd kept.
    let blobs = f.node.cache().join("models--zest-test--tiny-model/blobs");
    let mut shared = 0;
    for e in std::fs::read_dir(&blobs).unwrap().flatten() {
        let meta = std::fs::symlink_metadata(e.path()).unwrap();
        let size = std::fs::metadata(e.path()).unwrap().len();
        if size > 100_000 {
            assert!(
                meta.file_type().is_symlink(),
                "{} is a second copy, not a link to the shared store",
                e.path().display()
            );
            shared += 1;
        }
    }
    assert!(shared >= 2, "no large blob went through the shared store");
    same_files(&snapshot_of(&reference), &snapshot_of(&f.node.cache()));
}

/// `hf_hub_download` asks `resolve` with HEAD first; zestd holds that HEAD while its own
/// download of the file finishes, so a client on zestd's cache finds the file in the shared
/// store and links it: no bytes go to the client, no second copy is written.
#[test]
fn a_head_on_zestds_own_cache_waits_for_zestd_and_the_client_links_its_file() {
    let f = Fleet::start("endpoint-head-link");
    let reference = f.reference(MODEL, None);
    let snap = snapshot_of(&reference);
    let ep = f.endpoint();
    let to_clients = num(&f.node, "bytes_to_clients");
    let names = ["model.safetensors", "tokenizer/tokenizer.json"];
    let mut args = vec![MODEL];
    args.extend(names);
    let out = hf_python_ok(
        r#"
import sys
from huggingface_hub import hf_hub_download
for name in sys.argv[2:]:
    print(name + "\t" + hf_hub_download(sys.argv[1], name))
"#,
        &args,
        &ep,
        &f.node.cache(),
        &f.dir("home"),
        &[],
    );
    let blobs = f.node.cache().join("models--zest-test--tiny-model/blobs");
    for (name, path) in same_as_listed(&out, &snap, names.len()) {
        let blob = std::fs::canonicalize(path).unwrap();
        assert!(
            blob.starts_with(std::fs::canonicalize(f.node.cache().join("blobs")).unwrap()),
            "{name} is not the shared store's entry: {}",
            blob.display()
        );
    }
    for e in std::fs::read_dir(&blobs).unwrap().flatten() {
        assert!(
            std::fs::symlink_metadata(e.path())
                .unwrap()
                .file_type()
                .is_symlink(),
            "{} is a copy the client wrote",
            e.path().display()
        );
    }
    assert_eq!(
        num(&f.node, "bytes_to_clients"),
        to_clients,
        "the client downloaded what zestd had finished: {}",
        f.node.log()
    );
    assert!(!f.node.log().contains("HEAD not held"), "{}", f.node.log());
    assert!(num(&f.node, "bytes_from_peers") > 0);
}

/// A HEAD alone (a dry run, `file_exists`) is answered as soon as zestd's download will
/// not finish soon, and that download stops when no client asks for the bytes: zestd does
/// not fetch a file nobody wants.
#[test]
fn a_download_started_by_a_head_nobody_follows_is_stopped() {
    let (scratch, hub, home, reference) = standard_hub("endpoint-head-unasked");
    let node = Daemon::start_peer_with(&scratch.path().join("node"), &hub.endpoint, &[], &[]);
    let ep = status_str(&node, "hub_endpoint");
    // 6 MiB of weights at 400 kB/s: about 15 s, far past what a HEAD waits for.
    hub.faults
        .fetch_rate
        .store(400_000, std::sync::atomic::Ordering::SeqCst);
    let before = hub.stats.snapshot().xorb_bytes;
    let out = hf_python_ok(
        r#"
import sys
from huggingface_hub import get_hf_file_metadata, hf_hub_url
m = get_hf_file_metadata(hf_hub_url(sys.argv[1], "model.safetensors"))
print(m.size)
"#,
        &[MODEL],
        &ep,
        &scratch.path().join("c-head"),
        &home,
        &[],
    );
    assert_eq!(out.trim(), (6u64 << 20).to_string(), "{out}");
    assert!(
        wait_until(Duration::from_secs(20), || node
            .log()
            .contains("no client asked for the file after its HEAD")),
        "the download a lone HEAD started went on: {}",
        node.log()
    );
    let stopped = hub.stats.snapshot().xorb_bytes;
    assert!(
        stopped - before < 6 << 20,
        "the whole file was fetched for a HEAD"
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        hub.stats.snapshot().xorb_bytes,
        stopped,
        "the origin still sends after the stop"
    );
    // A client that does want the file gets it, from a new download.
    hub.faults
        .fetch_rate
        .store(0, std::sync::atomic::Ordering::SeqCst);
    let cache = scratch.path().join("c-file");
    let out = hf_python_ok(
        r#"
import sys
from huggingface_hub import hf_hub_download
print(hf_hub_download(sys.argv[1], "model.safetensors"))
"#,
        &[MODEL],
        &ep,
        &cache,
        &home,
        &[],
    );
    assert_eq!(
        std::fs::read(out.trim()).unwrap(),
        std::fs::read(snapshot_of(&reference).join("model.safetensors")).unwrap()
    );
}

#[test]
fn without_hf_xet_the_plain_http_path_is_served_verified() {
    let f = Fleet::start("endpoint-no-xet");
    let reference = f.reference(MODEL, None);
    let ep = f.endpoint();
    let before = f.origin_bytes();
    let cache = f.dir("c-noxet");
    hf_python_ok(
        SNAPSHOT,
        &[MODEL],
        &ep,
        &cache,
        &f.dir("home"),
        &[("HF_HUB_DISABLE_XET", "1")],
    );
    same_files(&snapshot_of(&reference), &snapshot_of(&cache));
    assert_eq!(
        f.origin_bytes() - before,
        0,
        "the whole files came from the peer"
    );
    assert!(num(&f.node, "bytes_to_clients") > 6 << 20);
}

#[test]
fn errors_and_private_repos_are_the_hubs_to_decide() {
    let f = Fleet::start("endpoint-errors");
    let ep = f.endpoint();
    let home = f.dir("home");
    let probe = r#"
import sys
from huggingface_hub import hf_hub_download, snapshot_download
from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError
cases = [
    ("repo", lambda: snapshot_download("zest-test/does-not-exist")),
    ("rev", lambda: snapshot_download(sys.argv[1], revision="no-such-branch")),
    ("file", lambda: hf_hub_download(sys.argv[1], "no/such/file.bin")),
    ("private", lambda: snapshot_download(sys.argv[2])),
]
for name, call in cases:
    try:
        call()
        print(name, "ok")
    except Exception as e:
        print(name, type(e).__name__)
"#;
    let direct = hf_python_ok(
        probe,
        &[MODEL, PRIVATE_MODEL],
        &f.hub.endpoint,
        &f.dir("d1"),
        &home,
        &[],
    );
    let through = hf_python_ok(
        probe,
        &[MODEL, PRIVATE_MODEL],
        &ep,
        &f.dir("d2"),
        &home,
        &[],
    );
    assert_eq!(
        direct, through,
        "the same exceptions as straight from the Hub"
    );
    assert!(
        through.contains("repo RepositoryNotFoundError"),
        "{through}"
    );
    assert!(through.contains("rev RevisionNotFoundError"), "{through}");
    assert!(
        through.contains("file RemoteEntryNotFoundError"),
        "{through}"
    );
    assert!(!through.contains("private ok"), "{through}");

    // With the token the private model comes through, identical to a direct download.
    let reference = f.reference(PRIVATE_MODEL, Some(TEST_TOKEN));
    let cache = f.dir("c-private");
    hf_python_ok(
        SNAPSHOT,
        &[PRIVATE_MODEL],
        &ep,
        &cache,
        &home,
        &[("HF_TOKEN", TEST_TOKEN)],
    );
    assert_same_cache(&reference, &cache);
    // zestd now holds it; a second local client without a token still cannot read it.
    let again = hf_python(
        SNAPSHOT,
        &[PRIVATE_MODEL],
        &ep,
        &f.dir("c-private-2"),
        &home,
        &[],
    );
    assert!(
        !again.status.success(),
        "a tokenless client read a private model"
    );

    // A dead upstream: the client gets the error it gets from a dead Hub, soon, not a hang.
    let dead = f.dir("c-dead");
    drop(f.hub);
    let probe = r#"
from huggingface_hub import hf_hub_download
try:
    hf_hub_download("zest-test/tiny-model", "config.json", revision="main", force_download=True)
    print("ok")
except Exception as e:
    print(type(e).__name__)
"#;
    let env = [
        ("HF_HUB_ETAG_TIMEOUT", "5"),
        ("HF_HUB_DOWNLOAD_TIMEOUT", "5"),
    ];
    let t0 = std::time::Instant::now();
    let through = hf_python_ok(probe, &[], &ep, &dead, &home, &env);
    assert!(
        t0.elapsed() < Duration::from_secs(60),
        "took {:?}",
        t0.elapsed()
    );
    let direct = hf_python_ok(probe, &[], "http://127.0.0.1:9", &dead, &home, &env);
    assert_eq!(
        through, direct,
        "a dead Hub behind zestd looks like a dead Hub"
    );
    assert_ne!(through.trim(), "ok");
}

#[test]
fn zest_enable_reaches_functions_imported_earlier() {
    let f = Fleet::start("endpoint-python");
    let reference = f.reference(MODEL, None);
    let ep = f.endpoint();
    let python_pkg = zest_tests::workspace_root().join("python");
    let pythonpath = python_pkg.to_string_lossy().to_string();
    let before = f.origin_bytes();
    let requests_before = num(&f.node, "endpoint_requests");
    // HF_ENDPOINT names the hub itself: only zest.enable() sends the process through zestd,
    // after huggingface_hub was imported and its functions taken by name.
    let cache = f.dir("c-enable");
    let out = hf_python_ok(
        r#"
import sys, os, subprocess, warnings
import huggingface_hub
from huggingface_hub import snapshot_download
import zest
assert zest.enable(sys.argv[2]), "no zestd"
print("path", snapshot_download(sys.argv[1]))
print("child", subprocess.run([sys.executable, "-c", "import os; print(os.environ['HF_ENDPOINT'])"], capture_output=True, text=True).stdout.strip())
st = zest.status(sys.argv[2])
print("served", st["served_bytes"])
print("socket", st["socket_requests"], os.environ.get("HF_XET_CLIENT_UNIX_SOCKET_PATH") == st["xet_socket"])
zest.disable()
print("after", os.environ.get("HF_ENDPOINT"))
"#,
        &[MODEL, &ep],
        &f.hub.endpoint,
        &cache,
        &f.dir("home"),
        &[("PYTHONPATH", &pythonpath)],
    );
    assert_same_cache(&reference, &cache);
    assert_eq!(f.origin_bytes() - before, 0, "{out}\n{}", f.node.log());
    assert!(num(&f.node, "endpoint_requests") > requests_before);
    assert!(out.contains(&format!("child {ep}")), "{out}");
    assert!(out.contains(&format!("after {}", f.hub.endpoint)), "{out}");
    let served: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("served "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(served > 6 << 20, "{out}");
    // hf_xet was not imported yet: its CAS traffic went over zestd's socket door.
    let socket: Vec<&str> = out
        .lines()
        .find_map(|l| l.strip_prefix("socket "))
        .map(|v| v.split(' ').collect())
        .unwrap_or_default();
    assert_eq!(socket.get(1), Some(&"True"), "{out}");
    assert!(
        socket
            .first()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
            > 0,
        "nothing came over the socket: {out}"
    );

    // No zestd there: one warning, and huggingface_hub works as before.
    let out = hf_python(
        r#"
import sys, warnings
import zest
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter("always")
    ok = zest.enable("http://127.0.0.1:9")
    zest.enable("http://127.0.0.1:9")
print("enabled", ok, "warnings", len(w))
from huggingface_hub import hf_hub_download
print(open(hf_hub_download(sys.argv[1], "config.json")).read())
"#,
        &[MODEL],
        &f.hub.endpoint,
        &f.dir("c-nozestd"),
        &f.dir("home"),
        &[("PYTHONPATH", &pythonpath)],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("enabled False warnings 1"), "{stdout}");
    assert!(stdout.contains("TinyForCausalLM"), "{stdout}");

    // zest.pull: zestd pulls into its own cache and says where.
    let out = hf_python_ok(
        "import sys, zest\nprint(zest.pull(sys.argv[1], endpoint=sys.argv[2]))",
        &[MODEL, &ep],
        &f.hub.endpoint,
        &f.dir("c-unused"),
        &f.dir("home"),
        &[("PYTHONPATH", &pythonpath)],
    );
    let snap = PathBuf::from(out.trim());
    assert!(snap.starts_with(f.node.cache()), "{out}");
    same_files(&snapshot_of(&reference), &snap);
}

#[test]
fn a_lying_peer_is_banned_and_the_client_gets_the_right_bytes() {
    let (scratch, hub, home, reference) = standard_hub("endpoint-hostile");
    // The liar holds the model (it read a real cache) and sends wrong bytes for every chunk.
    let evil = EvilPeer::start(&scratch.path().join("evil"), &reference, "wrong-bytes");
    let node = connected_node(
        &scratch.path().join("node"),
        &hub,
        std::slice::from_ref(&evil.addr),
        &[],
        1,
    );
    let ep = status_str(&node, "hub_endpoint");
    let cache = scratch.path().join("client");
    hf_python_ok(SNAPSHOT, &[MODEL], &ep, &cache, &home, &[]);
    assert_same_cache(&reference, &cache);
    assert_eq!(
        node.peers_in_state("banned"),
        vec![evil.addr.clone()],
        "{:?}",
        node.peers_json()
    );
}

#[test]
fn metrics_and_health_say_what_the_node_did() {
    let (scratch, hub, home, reference) = standard_hub("endpoint-metrics");
    let evil = EvilPeer::start(&scratch.path().join("evil"), &reference, "wrong-bytes");
    let node = connected_node(
        &scratch.path().join("node"),
        &hub,
        std::slice::from_ref(&evil.addr),
        &[
            "--metrics-listen".into(),
            "127.0.0.1:0".into(),
            // Nothing listens there: its announces fail.
            "--tracker".into(),
            "http://127.0.0.1:9/announce".into(),
        ],
        1,
    );
    let metrics = status_str(&node, "metrics_endpoint");
    assert!(metrics.starts_with("http://127.0.0.1:"), "{metrics:?}");
    let ep = status_str(&node, "hub_endpoint");

    // Before anything: every family is there, at zero, typed as Prometheus reads it.
    let m = scrape(&metrics);
    assert_eq!(
        m.0["content_type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    for (family, kind) in [
        ("zest_build_info", "gauge"),
        ("zest_received_bytes", "counter"),
        ("zest_served_bytes", "counter"),
        ("zest_pulls", "counter"),
        ("zest_pull_duration_seconds", "histogram"),
        ("zest_peers", "gauge"),
        ("zest_peer_bans", "counter"),
        ("zest_verify_failures", "counter"),
        ("zest_origin_requests", "counter"),
        ("zest_index_files", "gauge"),
        ("zest_index_bytes", "gauge"),
        ("zest_announces", "counter"),
    ] {
        assert_eq!(m.kind(family), kind, "{family}: {}", m.0);
    }
    let version = node.status_json()["version"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert_eq!(m.value("zest_build_info", &[("version", &version)]), 1.0);
    assert_eq!(m.value("zest_peers", &[("state", "connected")]), 1.0);
    assert_eq!(
        m.value("zest_received_bytes_total", &[("source", "origin")]),
        0.0
    );
    assert!(m.value("process_resident_memory_bytes", &[]) > 1e6);

    // A client downloads through the endpoint; the only peer lies about every chunk.
    let before = hub.stats.snapshot().xorb_bytes;
    hf_python_ok(
        SNAPSHOT,
        &[MODEL],
        &ep,
        &scratch.path().join("client"),
        &home,
        &[],
    );
    let origin = hub.stats.snapshot().xorb_bytes - before;
    let m = scrape(&metrics);
    assert_eq!(
        m.value("zest_received_bytes_total", &[("source", "origin")]),
        origin as f64,
        "what the node counts from the origin is what the CAS sent"
    );
    assert_eq!(
        m.value("zest_received_bytes_total", &[("source", "peer")]),
        0.0
    );
    let to_clients = m.value("zest_served_bytes_total", &[("to", "client")]);
    assert!(to_clients >= (6 << 20) as f64, "{to_clients}");
    assert_eq!(
        to_clients,
        node.status_json()["bytes_to_clients"]
            .as_f64()
            .unwrap_or(-1.0)
    );
    assert_eq!(m.value("zest_peer_bans_total", &[]), 1.0);
    assert_eq!(m.value("zest_peers", &[("state", "banned")]), 1.0);
    assert_eq!(m.value("zest_peers", &[("state", "connected")]), 0.0);
    assert!(m.value("zest_verify_failures_total", &[("source", "peer")]) >= 1.0);
    for clean in ["origin", "local", "file", "seeding"] {
        assert_eq!(
            m.value("zest_verify_failures_total", &[("source", clean)]),
            0.0,
            "{clean}"
        );
    }
    assert!(m.value("zest_origin_requests_total", &[("status", "200")]) >= 1.0);
    assert_eq!(
        m.get("zest_origin_requests_total", &[("status", "none")]),
        None
    );
    assert!(wait_until(Duration::from_secs(10), || {
        scrape(&metrics).value("zest_index_files", &[]) >= 1.0
    }));
    assert!(scrape(&metrics).value("zest_index_bytes", &[]) >= (6 << 20) as f64);
    // What it now holds, it announces; the tracker is not there.
    assert!(wait_until(Duration::from_secs(20), || {
        scrape(&metrics).value(
            "zest_announces_total",
            &[("channel", "tracker"), ("result", "failed")],
        ) >= 1.0
    }));

    // A pull of what the cache now holds: one more pull, timed.
    let _ = pulled_path(&node.pull(&[MODEL], &[]));
    let m = scrape(&metrics);
    assert_eq!(m.value("zest_pulls_total", &[("result", "ok")]), 1.0);
    assert_eq!(m.value("zest_pulls_total", &[("result", "failed")]), 0.0);
    assert_eq!(m.value("zest_pull_duration_seconds_count", &[]), 1.0);
    assert_eq!(
        m.value("zest_pull_duration_seconds_bucket", &[("le", "+Inf")]),
        1.0
    );
    assert!(m.value("zest_received_bytes_total", &[("source", "local")]) >= (6 << 20) as f64);

    // The endpoint serves the same families; both answer health probes; the metrics
    // listener serves nothing else.
    let via_endpoint = scrape(&ep);
    assert_eq!(via_endpoint.0["types"], m.0["types"]);
    assert_eq!(via_endpoint.value("zest_peer_bans_total", &[]), 1.0);
    for base in [&metrics, &ep] {
        let (status, body) = http_get(&format!("{base}/healthz"));
        assert_eq!(status, 200, "{body}");
        let h: serde_json::Value = serde_json::from_str(&body).expect("health JSON");
        assert_eq!(h["status"], "ok", "{body}");
    }
    assert_eq!(http_get(&format!("{metrics}/api/models/{MODEL}")).0, 404);
}

#[test]
fn a_flash_crowd_of_clients_takes_about_one_copy_from_the_origin() {
    let (scratch, hub, home, reference) = standard_hub("endpoint-crowd");
    // The fresh hub has sent one copy: the oracle's.
    let one_copy = hub.stats.snapshot().xorb_bytes;
    assert!(one_copy > 6 << 20);
    // Four daemons that hold nothing, each naming the ones before it.
    let mut nodes: Vec<Daemon> = Vec::new();
    for i in 0..4 {
        let peers: Vec<String> = nodes.iter().map(Daemon::listen).collect();
        nodes.push(Daemon::start_peer(
            &scratch.path().join(format!("n{i}")),
            &hub.endpoint,
            &peers,
        ));
    }
    for n in &nodes {
        assert!(wait_until(Duration::from_secs(20), || n
            .peers_in_state("connected")
            .len()
            >= 3));
    }
    let endpoints: Vec<String> = nodes
        .iter()
        .map(|n| {
            n.status_json()["hub_endpoint"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    let before = hub.stats.snapshot().xorb_bytes;
    std::thread::scope(|s| {
        for (i, ep) in endpoints.iter().enumerate() {
            let (cache, home) = (scratch.path().join(format!("c{i}")), home.clone());
            s.spawn(move || hf_python_ok(SNAPSHOT, &[MODEL], ep, &cache, &home, &[]));
        }
    });
    let origin = hub.stats.snapshot().xorb_bytes - before;
    for i in 0..4 {
        assert_same_cache(&reference, &scratch.path().join(format!("c{i}")));
    }
    let copies = origin as f64 / one_copy as f64;
    eprintln!(
        "flash crowd of 4 clients through their endpoints: {copies:.3} copies from the origin"
    );
    assert!(
        copies <= 1.1,
        "four vanilla clients took {copies:.2} copies from the origin"
    );
}

#[test]
fn hf_xet_through_the_socket_door_keeps_its_own_endpoint_and_token() {
    let token = [("HF_TOKEN", TEST_TOKEN)];
    // zestd never sees the Hub exchange through the socket, so it treats what it fetches as
    // private: fleet peers only. Seed and node share a fleet key.
    let f = Fleet::start_with(
        "endpoint-socket",
        fixtures::standard(),
        PRIVATE_MODEL,
        &token,
        Some("socket door test fleet secret"),
    );
    let (hub, node) = (&f.hub, &f.node);
    let home = f.dir("home");
    let reference = f.reference(PRIVATE_MODEL, Some(TEST_TOKEN));
    let sock = status_str(node, "xet_socket");
    assert!(Path::new(&sock).exists(), "no socket door: {sock:?}");
    let before = hub.stats.snapshot().xorb_bytes;
    let requests = num(node, "endpoint_requests");
    let cache = f.dir("client");
    // HF_ENDPOINT names the hub itself: the Hub API and the user's token go there.
    hf_python_ok(
        SNAPSHOT,
        &[PRIVATE_MODEL],
        &hub.endpoint,
        &cache,
        &home,
        &[
            ("HF_TOKEN", TEST_TOKEN),
            ("HF_XET_CLIENT_UNIX_SOCKET_PATH", &sock),
        ],
    );
    assert_same_cache(&reference, &cache);
    assert_eq!(
        hub.stats.snapshot().xorb_bytes - before,
        0,
        "the Xet bytes came from the fleet peer\n{}",
        node.log()
    );
    assert!(
        num(node, "endpoint_requests") > requests,
        "nothing came through the socket"
    );
    assert!(num(node, "bytes_to_clients") >= 2 << 20);
    assert!(
        !node.log().contains(TEST_TOKEN),
        "the Hub token reached zestd"
    );
}

#[test]
fn transformers_and_safetensors_load_what_came_through() {
    let f = Fleet::start_with(
        "endpoint-transformers",
        fixtures::loadable(),
        LOADABLE,
        &[],
        None,
    );
    let (hub, ep) = (&f.hub, f.endpoint());
    let before = hub.stats.snapshot().xorb_bytes;
    let out = hf_python_ok(
        r#"
import sys, hashlib
from transformers import AutoConfig, AutoTokenizer
from huggingface_hub import hf_hub_download
from safetensors import safe_open
repo = sys.argv[1]
print("model_type", AutoConfig.from_pretrained(repo).model_type)
print("ids", AutoTokenizer.from_pretrained(repo)("hello zest world")["input_ids"])
with safe_open(hf_hub_download(repo, "model.safetensors"), "np") as f:
    print("w", hashlib.sha256(f.get_tensor("w").tobytes()).hexdigest())
"#,
        &[LOADABLE],
        &ep,
        &f.dir("client"),
        &f.dir("home"),
        &[("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")],
    );
    let want: String = zest_tests::sha256(&fixtures::loadable_weights())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(out.contains("model_type gpt2"), "{out}");
    assert!(out.contains("ids [1, 2, 3]"), "{out}");
    assert!(out.contains(&format!("w {want}")), "{out}");
    assert_eq!(
        hub.stats.snapshot().xorb_bytes - before,
        0,
        "the weights came from the peer"
    );
}
