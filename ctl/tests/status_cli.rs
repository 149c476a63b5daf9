//! `zestctl status` against a real zestd on a private socket, and without one.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use zest_tests::Scratch;

fn zestd_exe() -> PathBuf {
    // Cargo builds every workspace binary into the same directory for `cargo test --workspace`.
    let p = Path::new(env!("CARGO_BIN_EXE_zestctl")).with_file_name("zestd");
    assert!(
        p.exists(),
        "zestd not built at {}: run `cargo build --workspace --bins` first (scripts/test.sh does)",
        p.display()
    );
    p
}

struct Daemon(Child);
impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(path: &Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "zestd never created {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn status_talks_to_zestd_over_a_private_socket() {
    let scratch = Scratch::new("status-cli");
    let socket = scratch.path().join("run/zestd.sock");
    let cache = scratch.path().join("hf/hub");
    let daemon = Daemon(
        Command::new(zestd_exe())
            .arg("--socket")
            .arg(&socket)
            .env("HF_HUB_CACHE", &cache)
            .stderr(Stdio::null())
            .spawn()
            .expect("start zestd"),
    );
    wait_for(&socket);
    let mode = std::fs::metadata(&socket)
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "socket mode {mode:o}");

    let out = Command::new(env!("CARGO_BIN_EXE_zestctl"))
        .arg("--socket")
        .arg(&socket)
        .args(["status", "--json"])
        .output()
        .expect("run zestctl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["pid"].as_u64(), Some(u64::from(daemon.0.id())));
    assert_eq!(v["cache_dir"].as_str(), cache.to_str());
    assert_eq!(v["bytes_from_peers"].as_u64(), Some(0));

    // SIGTERM stops it cleanly and removes the socket.
    let pid = daemon.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let mut daemon = daemon;
    let status = daemon.0.wait().expect("wait");
    assert!(status.success(), "zestd exit {status}");
    assert!(!socket.exists(), "socket left behind");
}

#[test]
fn status_without_a_daemon_says_how_to_start_one() {
    let scratch = Scratch::new("status-none");
    let socket = scratch.path().join("nobody.sock");
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_zestctl"))
        .arg("--socket")
        .arg(&socket)
        .arg("status")
        .output()
        .expect("run zestctl");
    assert!(start.elapsed() < Duration::from_secs(10), "zestctl hung");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no zestd is answering") && err.contains("zestd --socket"),
        "{err}"
    );
}

#[test]
fn pull_without_a_daemon_says_how_to_start_one() {
    let scratch = Scratch::new("pull-none");
    let socket = scratch.path().join("nobody.sock");
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_zestctl"))
        .arg("--socket")
        .arg(&socket)
        .args(["pull", "org/model"])
        .output()
        .expect("run zestctl");
    assert!(start.elapsed() < Duration::from_secs(10), "zestctl hung");
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no zestd is answering") && err.contains("zestd --socket"),
        "{err}"
    );
}
