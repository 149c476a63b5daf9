//! Running zestd and zestctl as a user would, and comparing caches file by file.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A binary of this workspace, built next to the running test (`cargo build --bins`).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/<name>; a helper binary of this crate
    // (zest-soak) runs from target/<profile> itself.
    let mut dir = exe.parent().expect("executable in a directory");
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir = dir.parent().expect("target/<profile>/deps");
    }
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --workspace --bins` (scripts/test.sh does) first",
        p.display()
    );
    p
}

/// What `zest-probe` (a peer client that is not zestd's engine) gets from the peer at
/// `peer` for `file`, with its identity kept in `state` and `args` besides (`--manifest`,
/// `--vanish`, `--fleet-key-file K`); Err with its stderr if it failed.
pub fn zest_probe(
    peer: &str,
    file: &str,
    state: &Path,
    args: &[&std::ffi::OsStr],
) -> Result<serde_json::Value, String> {
    let out = std::process::Command::new(bin("zest-probe"))
        .args(["--peer", peer, "--file", file])
        .args(args)
        .arg("--state")
        .arg(state)
        .output()
        .map_err(|e| format!("zest-probe did not start: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "zest-probe: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    serde_json::from_slice(out.stdout.trim_ascii()).map_err(|e| format!("probe JSON: {e}"))
}

/// Asserts two HF caches are identical, file by file.
pub fn assert_same_cache(expected: &Path, actual: &Path) {
    let diffs = compare_caches(expected, actual);
    assert!(diffs.is_empty(), "caches differ:\n{}", diffs.join("\n"));
}

/// Pulls `repo` on every daemon at once (with `env`); every pull must succeed.
pub fn pull_all(daemons: &[&Daemon], repo: &str, env: &[(&str, &str)]) {
    std::thread::scope(|s| {
        let handles: Vec<_> = daemons
            .iter()
            .map(|d| s.spawn(move || d.pull(&[repo], env)))
            .collect();
        for (h, d) in handles.into_iter().zip(daemons) {
            let out = h.join().expect("pull thread");
            assert!(
                out.status.success(),
                "pull on {} failed: {}\n{}",
                d.dir.display(),
                String::from_utf8_lossy(&out.stderr),
                d.log()
            );
        }
    });
}

/// Waits until `d` has `n` connected peers.
pub fn wait_connected(d: &Daemon, n: usize) {
    assert!(
        wait_until(Duration::from_secs(20), || d
            .peers_in_state("connected")
            .len()
            >= n),
        "{} never had {n} peers: {:?}\n{}",
        d.dir.display(),
        d.peers_json(),
        d.log()
    );
}

/// Writes a fleet secret to `path` and returns the zestd arguments that use it.
pub fn fleet_key(path: &Path, secret: &str) -> Vec<String> {
    std::fs::write(path, format!("{secret}\n")).expect("writing the fleet key");
    vec!["--fleet-key-file".into(), path.display().to_string()]
}

/// A UDP port on loopback nobody is using right now.
pub fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("binding a UDP port");
    s.local_addr().expect("local addr").port()
}

/// `--listen` on a free loopback port, and `--peer` for each of `peers`.
fn peer_args(peers: &[String]) -> Vec<String> {
    let mut args = vec![
        "--listen".to_string(),
        format!("127.0.0.1:{}", free_udp_port()),
    ];
    for p in peers {
        args.push("--peer".into());
        args.push(p.clone());
    }
    args
}

/// A zestd process with its own socket, state dir and cache. Killed when dropped.
pub struct Daemon {
    pub dir: PathBuf,
    pub endpoint: String,
    /// Extra zestd arguments (--listen, --peer, ...), kept across restarts.
    pub args: Vec<String>,
    /// Run inside this network namespace (`ip netns exec`).
    pub netns: Option<String>,
    /// Extra environment, kept across restarts.
    pub env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Daemon {
    pub fn start(dir: &Path, endpoint: &str) -> Daemon {
        Self::start_with(dir, endpoint, &[])
    }

    pub fn start_with(dir: &Path, endpoint: &str, args: &[String]) -> Daemon {
        let mut d = Daemon {
            dir: dir.to_path_buf(),
            endpoint: endpoint.to_string(),
            args: args.to_vec(),
            netns: None,
            env: Vec::new(),
            child: None,
        };
        d.spawn();
        d
    }

    /// A daemon inside network namespace `ns` (its control socket is a file, so zestctl
    /// still reaches it from here).
    pub fn start_in_netns(dir: &Path, endpoint: &str, ns: &str, args: &[String]) -> Daemon {
        let mut d = Daemon {
            dir: dir.to_path_buf(),
            endpoint: endpoint.to_string(),
            args: args.to_vec(),
            netns: Some(ns.to_string()),
            env: Vec::new(),
            child: None,
        };
        d.spawn();
        d
    }

    /// A daemon serving peers on a free loopback port, with these static peers.
    pub fn start_peer(dir: &Path, endpoint: &str, peers: &[String]) -> Daemon {
        Self::start_peer_with(dir, endpoint, peers, &[])
    }

    /// [`Daemon::start_peer`] with more zestd arguments.
    pub fn start_peer_with(
        dir: &Path,
        endpoint: &str,
        peers: &[String],
        extra: &[String],
    ) -> Daemon {
        let mut args = peer_args(peers);
        args.extend_from_slice(extra);
        Self::start_with(dir, endpoint, &args)
    }

    /// [`Daemon::start_peer`] with more environment.
    pub fn start_peer_env(
        dir: &Path,
        endpoint: &str,
        peers: &[String],
        env: &[(&str, &str)],
    ) -> Daemon {
        let mut d = Daemon {
            dir: dir.to_path_buf(),
            endpoint: endpoint.to_string(),
            args: peer_args(peers),
            netns: None,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
        };
        d.spawn();
        d
    }

    /// The peer address it listens on. Asked again for up to 10 s: under load a status
    /// can fail or come before the address is known (a test once dialled "").
    pub fn listen(&self) -> String {
        let t0 = Instant::now();
        loop {
            let v = self.status_json();
            match v["listen"].as_str() {
                Some(a) if !a.is_empty() => return a.to_string(),
                _ if t0.elapsed() > Duration::from_secs(10) => {
                    panic!("no listen address in zestd's status after 10 s: {v}")
                }
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// `zestctl peers --json`.
    pub fn peers_json(&self) -> Vec<serde_json::Value> {
        let out = Command::new(bin("zestctl"))
            .arg("--socket")
            .arg(self.socket())
            .args(["peers", "--json"])
            .output()
            .expect("zestctl peers");
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    }

    /// Peers in `state` (connected, banned, ...), by address.
    pub fn peers_in_state(&self, state: &str) -> Vec<String> {
        self.peers_json()
            .iter()
            .filter(|p| p["state"] == state)
            .filter_map(|p| p["addr"].as_str().map(String::from))
            .collect()
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("run/zestd.sock")
    }
    pub fn cache(&self) -> PathBuf {
        self.dir.join("cache")
    }
    pub fn state(&self) -> PathBuf {
        self.dir.join("state")
    }

    pub fn spawn(&mut self) {
        let _ = std::fs::create_dir_all(&self.dir);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("zestd.log"))
            .expect("daemon log");
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(bin("zestd"));
                c
            }
            None => Command::new(bin("zestd")),
        };
        let child = cmd
            .arg("--socket")
            .arg(self.socket())
            .arg("--state-dir")
            .arg(self.state())
            .arg("--cache-dir")
            .arg(self.cache())
            .arg("--endpoint")
            .arg(&self.endpoint)
            .args(self.default_args())
            .args(&self.args)
            .env("RUST_LOG", "info,zestd=debug")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env_remove("HF_TOKEN")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting zestd");
        self.child = Some(child);
        let start = Instant::now();
        while !self.socket().exists() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "zestd did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Tests stay on loopback and off the LAN unless they ask otherwise.
    fn default_args(&self) -> Vec<String> {
        let mut a = Vec::new();
        if !self.args.iter().any(|x| x == "--listen") {
            a.extend(["--listen".to_string(), "127.0.0.1:0".to_string()]);
        }
        if !self.args.iter().any(|x| x == "--mdns") {
            a.push("--no-mdns".to_string());
        }
        a
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("zestd.log")).unwrap_or_default()
    }

    /// SIGKILL: no chance to clean up, as in a crash.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(self.socket());
    }

    /// SIGTERM, and how long the daemon took to exit.
    pub fn terminate(&mut self) -> Duration {
        let start = Instant::now();
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    panic!("zestd ignored SIGTERM for 30 s");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        start.elapsed()
    }

    /// `zestctl pull` against this daemon; `env` adds variables (HF_TOKEN is cleared first).
    pub fn pull(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.zestctl_cmd(args, env)
            .output()
            .expect("running zestctl")
    }

    pub fn zestctl_cmd(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut c = Command::new(bin("zestctl"));
        c.arg("--socket").arg(self.socket()).arg("pull").args(args);
        c.env_remove("HF_TOKEN")
            .env_remove("HF_ENDPOINT")
            .env("HF_HOME", self.dir.join("hf-home"));
        for (k, v) in env {
            c.env(k, v);
        }
        c
    }

    /// Any other zestctl command against this daemon.
    pub fn zestctl(&self, args: &[&str]) -> Output {
        Command::new(bin("zestctl"))
            .arg("--socket")
            .arg(self.socket())
            .args(args)
            .output()
            .expect("running zestctl")
    }

    pub fn status_json(&self) -> serde_json::Value {
        let out = Command::new(bin("zestctl"))
            .arg("--socket")
            .arg(self.socket())
            .args(["status", "--json"])
            .output()
            .expect("zestctl status");
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The snapshot path a successful `zestctl pull` printed last; panics with its stderr.
pub fn pulled_path(out: &Output) -> PathBuf {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "zestctl pull failed ({}): {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        stdout
    );
    PathBuf::from(stdout.lines().last().unwrap_or("").trim())
}

/// What a cache entry is, for comparison: type, mode, and content or link target.
#[derive(Debug, PartialEq, Eq)]
pub enum Entry {
    Dir(u32),
    File(u32, u64, [u8; 32]),
    Link(PathBuf),
}

/// Every entry under `root`, by relative path.
pub fn snapshot_tree(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap_or(&p).to_path_buf();
            let Ok(md) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            let mode = md.permissions().mode() & 0o7777;
            if md.file_type().is_symlink() {
                out.insert(rel, Entry::Link(std::fs::read_link(&p).unwrap_or_default()));
            } else if md.is_dir() {
                out.insert(rel, Entry::Dir(mode));
                stack.push(p);
            } else {
                let mut data = std::fs::read(&p).unwrap_or_default();
                if p.extension().is_some_and(|e| e == "refs") {
                    // A shared-store manifest is a set: concurrent downloads append in
                    // whatever order they finish.
                    let text = String::from_utf8_lossy(&data).into_owned();
                    let mut lines: Vec<&str> = text.lines().collect();
                    lines.sort_unstable();
                    data = lines.join("\n").into_bytes();
                }
                out.insert(rel, Entry::File(mode, md.len(), crate::sha256(&data)));
            }
        }
    }
    out
}

/// Differences between two caches, as readable lines (empty when identical).
pub fn compare_caches(expected: &Path, actual: &Path) -> Vec<String> {
    let a = snapshot_tree(expected);
    let b = snapshot_tree(actual);
    let mut diffs = Vec::new();
    for (p, e) in &a {
        match b.get(p) {
            None => diffs.push(format!("missing: {} ({e:?})", p.display())),
            Some(x) if x != e => diffs.push(format!(
                "differs: {}: expected {e:?}, got {x:?}",
                p.display()
            )),
            _ => {}
        }
    }
    for (p, e) in &b {
        if !a.contains_key(p) {
            diffs.push(format!("unexpected: {} ({e:?})", p.display()));
        }
    }
    diffs
}

/// Runs `python -c script` with a Hugging Face environment pointed at `endpoint`/`cache`.
pub fn hf_python(
    script: &str,
    args: &[&str],
    endpoint: &str,
    cache: &Path,
    home: &Path,
    extra_env: &[(&str, &str)],
) -> Output {
    let mut c = Command::new(crate::python());
    c.arg("-c")
        .arg(script)
        .args(args)
        .env("HF_ENDPOINT", endpoint)
        .env("HF_HUB_CACHE", cache)
        .env("HF_HOME", home)
        .env("HF_HUB_DISABLE_TELEMETRY", "1")
        .env("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        .env_remove("HF_TOKEN");
    for (k, v) in extra_env {
        c.env(k, v);
    }
    c.output().expect("running python")
}

/// Like [`hf_python`], panicking with stderr on failure; returns stdout.
pub fn hf_python_ok(
    script: &str,
    args: &[&str],
    endpoint: &str,
    cache: &Path,
    home: &Path,
    extra_env: &[(&str, &str)],
) -> String {
    let out = hf_python(script, args, endpoint, cache, home, extra_env);
    assert!(
        out.status.success(),
        "python failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `f` until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    false
}

/// Creates the shared blob store exactly as huggingface_hub's first download does. Its
/// download threads race to create it, and a thread that loses skips the store for its file,
/// which would make the reference itself vary from run to run.
pub fn seed_shared_store(cache: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let store = cache.join("blobs");
    std::fs::create_dir_all(&store).expect("store");
    let mode = std::fs::metadata(cache)
        .expect("cache")
        .permissions()
        .mode()
        & 0o7777;
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(mode)).expect("mode");
    let marker = store.join(".huggingface-shared-blobs");
    std::fs::write(&marker, "1\n").expect("marker");
    let read = 0o400
        | if mode & 0o010 != 0 { 0o040 } else { 0 }
        | if mode & 0o001 != 0 { 0o004 } else { 0 };
    std::fs::set_permissions(&marker, std::fs::Permissions::from_mode(read)).expect("mode");
}

/// A zest-evilpeer process, killed when dropped.
pub struct EvilPeer {
    child: Child,
    pub addr: String,
}

impl EvilPeer {
    /// `mode`: `wrong-bytes`, `false-claims` or `stall`; it serves what `cache` holds.
    pub fn start(dir: &Path, cache: &Path, mode: &str) -> EvilPeer {
        let port = free_udp_port();
        let mut child = Command::new(bin("zest-evilpeer"))
            .args(["--listen", &format!("127.0.0.1:{port}"), "--mode", mode])
            .arg("--cache")
            .arg(cache)
            .arg("--state")
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting zest-evilpeer");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
            .expect("evil peer ready line");
        assert!(line.starts_with("ready"), "evil peer said {line:?}");
        assert!(
            !line.contains("(0 files)"),
            "evil peer holds nothing: {line}"
        );
        EvilPeer {
            child,
            addr: format!("127.0.0.1:{port}"),
        }
    }
}

impl Drop for EvilPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Scrapes `{base}/metrics` and parses it with prometheus_client's own parser: samples keyed
/// `name{"label":"value",…}` (labels sorted; just `name` without labels), family types by
/// name, and the Content-Type the server sent.
pub fn scrape(base: &str) -> Scraped {
    const SCRAPE: &str = r#"
import json, sys, urllib.request
from prometheus_client.parser import text_string_to_metric_families
with urllib.request.urlopen(sys.argv[1] + "/metrics", timeout=20) as r:
    ctype, text = r.headers.get("Content-Type"), r.read().decode()
out = {"content_type": ctype, "types": {}, "samples": {}}
for fam in text_string_to_metric_families(text):
    out["types"][fam.name] = fam.type
    for s in fam.samples:
        labels = json.dumps(dict(sorted(s.labels.items())), separators=(",", ":"))
        out["samples"][s.name + (labels if s.labels else "")] = s.value
print(json.dumps(out))
"#;
    let v: serde_json::Value =
        serde_json::from_str(&crate::run_python(SCRAPE, &[base])).expect("scrape output");
    Scraped(v)
}

/// What [`scrape`] read.
pub struct Scraped(pub serde_json::Value);

impl Scraped {
    /// The sample `name` with exactly these labels; None if the server did not send it.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut l: Vec<_> = labels.to_vec();
        l.sort();
        let key = if l.is_empty() {
            name.to_string()
        } else {
            let m: serde_json::Map<String, serde_json::Value> = l
                .iter()
                .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
                .collect();
            format!("{name}{}", serde_json::Value::Object(m))
        };
        self.0["samples"][key].as_f64()
    }

    /// Like [`Scraped::get`], panicking with the whole scrape if the sample is missing.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no sample {name} {labels:?} in {}", self.0))
    }

    /// The family's type as the parser understood it (`counter`, `gauge`, `histogram` …).
    pub fn kind(&self, family: &str) -> &str {
        self.0["types"][family].as_str().unwrap_or("")
    }
}

/// GET `url`: its status and body (any status; transport errors panic).
pub fn http_get(url: &str) -> (u16, String) {
    const GET: &str = r#"
import sys, urllib.request, urllib.error
try:
    with urllib.request.urlopen(sys.argv[1], timeout=20) as r:
        print(r.status); print(r.read().decode(), end="")
except urllib.error.HTTPError as e:
    print(e.code); print(e.read().decode(), end="")
"#;
    let out = crate::run_python(GET, &[url]);
    let (status, body) = out.split_once('\n').unwrap_or((&out, ""));
    (status.trim().parse().unwrap_or(0), body.to_string())
}

/// Peak resident memory of process `pid` (VmHWM), bytes.
pub fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmHWM")
        * 1024
}
