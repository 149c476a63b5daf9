//! zestd run from a config file alone, with a flag that overrides it: every value the file
//! sets takes effect (paths relative to the file, the endpoint, static peers, the
//! connection cap, the fleet key), the flag wins where both speak, and a typo in the file
//! stops zestd with an error that names it.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use zest_tests::Scratch;
use zest_tests::harness::{Daemon, bin, fleet_key, free_udp_port, pulled_path, wait_until};
use zest_tests::hub::fixtures::{self, MODEL};
use zest_tests::hub::{HubConfig, TestHub};

/// A zestd started by hand (no harness flags), killed when dropped.
struct Bare(Child);

impl Drop for Bare {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn zestctl(socket: &Path, args: &[&str]) -> std::process::Output {
    Command::new(bin("zestctl"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .env_remove("HF_TOKEN")
        .env_remove("HF_ENDPOINT")
        .output()
        .expect("zestctl")
}

fn json(out: std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("zestctl JSON")
}

#[test]
fn config_file_applies_and_flags_override_it() {
    let scratch = Scratch::new("config");
    let hub = TestHub::start(HubConfig::new(
        scratch.path().join("hub"),
        fixtures::standard(),
    ))
    .expect("test hub");
    let secret = "a fleet secret for the config test";
    // Two peers: `member` shares the fleet key the config file names, `outsider` does not.
    let member = Daemon::start_peer_with(
        &scratch.path().join("member"),
        &hub.endpoint,
        &[],
        &fleet_key(&scratch.path().join("member.key"), secret),
    );
    let outsider = Daemon::start_peer(&scratch.path().join("outsider"), &hub.endpoint, &[]);
    let (m, o) = (member.listen(), outsider.listen());

    let etc = scratch.path().join("etc");
    std::fs::create_dir_all(&etc).expect("config dir");
    std::fs::write(etc.join("fleet.key"), secret).expect("fleet key");
    let file_port = free_udp_port();
    let flag_port = free_udp_port();
    let config = etc.join("zestd.toml");
    std::fs::write(
        &config,
        format!(
            r#"# Relative paths are relative to this file.
socket = "run/zestd.sock"
state_dir = "state"
cache_dir = "../cache"
endpoint = "{endpoint}"
listen = "127.0.0.1:{file_port}"
peers = ["{m}", "{o}"]
max_peers = 1
mdns = false
fleet_key_file = "fleet.key"
"#,
            endpoint = hub.endpoint
        ),
    )
    .expect("writing the config");
    let log = std::fs::File::create(scratch.path().join("zestd.log")).expect("log");
    let _zestd = Bare(
        Command::new(bin("zestd"))
            .arg("--config")
            .arg(&config)
            .args(["--listen", &format!("127.0.0.1:{flag_port}")])
            .env("RUST_LOG", "info,zestd=debug")
            .env_remove("HF_ENDPOINT")
            .env_remove("HF_HOME")
            .env_remove("HF_HUB_CACHE")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("zestd"),
    );
    let daemon_log =
        || std::fs::read_to_string(scratch.path().join("zestd.log")).unwrap_or_default();
    let socket = etc.join("run/zestd.sock");
    assert!(
        wait_until(Duration::from_secs(20), || socket.exists()),
        "no control socket where the config file put it\n{}",
        daemon_log()
    );

    let status = json(zestctl(&socket, &["status", "--json"]));
    let canon = |p: &Path| p.canonicalize().expect("path exists");
    assert_eq!(
        canon(Path::new(status["cache_dir"].as_str().unwrap_or_default())),
        canon(&scratch.path().join("cache")),
        "{status}"
    );
    assert_eq!(
        canon(Path::new(status["state_dir"].as_str().unwrap_or_default())),
        canon(&etc.join("state")),
        "{status}"
    );
    assert_eq!(
        status["listen"],
        format!("127.0.0.1:{flag_port}"),
        "the --listen flag did not override the file"
    );

    // Both peers from the file are known; the file's cap of one lets one connect.
    let peers = || json(zestctl(&socket, &["peers", "--json"]));
    assert!(
        wait_until(Duration::from_secs(20), || {
            let p = peers();
            let states: Vec<&str> = p
                .as_array()
                .map(|a| a.iter().filter_map(|x| x["state"].as_str()).collect())
                .unwrap_or_default();
            states.len() == 2
                && states.iter().filter(|s| **s == "connected").count() == 1
                && states.contains(&"waiting")
        }),
        "expected one connected and one waiting peer: {}\n{}",
        peers(),
        daemon_log()
    );
    // The fleet key from the file is in use: the member is a fleet peer, the outsider not.
    for p in peers().as_array().into_iter().flatten() {
        if p["state"] == "connected" {
            assert_eq!(p["fleet"] == true, p["addr"] == m.as_str(), "{p}");
        }
    }

    // The endpoint and cache from the file: a pull lands in <scratch>/cache.
    let out = Command::new(bin("zestctl"))
        .arg("--socket")
        .arg(&socket)
        .args(["pull", MODEL])
        .env_remove("HF_TOKEN")
        .env_remove("HF_ENDPOINT")
        .env("HF_HOME", scratch.path().join("client-hf-home"))
        .output()
        .expect("zestctl pull");
    let snapshot = pulled_path(&out);
    assert!(
        snapshot.starts_with(canon(&scratch.path().join("cache"))),
        "{}",
        snapshot.display()
    );
}

#[test]
fn a_typo_in_the_config_file_is_an_error_that_names_it() {
    let scratch = Scratch::new("config-typo");
    let config = scratch.path().join("zestd.toml");
    std::fs::write(&config, "listen = \"off\"\nmax_peer = 3\n").expect("config");
    let out = Command::new(bin("zestd"))
        .arg("--config")
        .arg(&config)
        .args(["--socket"])
        .arg(scratch.path().join("zestd.sock"))
        .output()
        .expect("zestd");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("max_peer") && err.contains("zestd.toml"),
        "{err}"
    );
    assert!(!scratch.path().join("zestd.sock").exists());
}

#[test]
fn a_second_zestd_on_the_same_state_dir_refuses_and_touches_nothing() {
    let scratch = Scratch::new("config-two-daemons");
    let first = Daemon::start(&scratch.path().join("a"), "http://127.0.0.1:9");
    let state = first.state();
    let before: Vec<_> = std::fs::read_dir(&state)
        .expect("state dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(state.join("index").is_dir(), "{before:?}");
    let second_socket = scratch.path().join("b.sock");
    let out = Command::new(bin("zestd"))
        .arg("--socket")
        .arg(&second_socket)
        .arg("--state-dir")
        .arg(&state)
        .arg("--cache-dir")
        .arg(scratch.path().join("b-cache"))
        .args([
            "--endpoint",
            "http://127.0.0.1:9",
            "--listen",
            "off",
            "--no-mdns",
        ])
        .args(["--hub-listen", "off", "--xet-socket", "off"])
        .env_remove("HF_TOKEN")
        .output()
        .expect("zestd");
    assert!(!out.status.success(), "the second zestd started");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("another zestd") && err.contains(&*state.to_string_lossy()),
        "{err}"
    );
    assert!(!second_socket.exists());
    // The first daemon's index and visibility records are where they were, and it answers.
    assert!(state.join("index").is_dir() && state.join("visibility").is_dir());
    let v = first.status_json();
    assert!(v.is_object(), "the first zestd stopped answering: {v}");
    drop(first);
    // Once the first is gone, the state dir is free again.
    let mut again = Daemon::start(&scratch.path().join("a"), "http://127.0.0.1:9");
    assert!(again.status_json().is_object(), "{}", again.log());
    again.kill9();
}

#[test]
fn a_socket_path_that_is_not_a_socket_is_left_alone() {
    // Issue 16: `--socket` must never delete anything but a stale socket.
    let scratch = Scratch::new("config-socket-file");
    let in_the_way = scratch.path().join("zestd.sock");
    std::fs::write(&in_the_way, b"someone's notes\n").expect("writing a file");
    let out = Command::new(bin("zestd"))
        .arg("--socket")
        .arg(&in_the_way)
        .arg("--state-dir")
        .arg(scratch.path().join("state"))
        .arg("--cache-dir")
        .arg(scratch.path().join("cache"))
        .args(["--endpoint", "http://127.0.0.1:9", "--listen", "off"])
        .args(["--no-mdns", "--hub-listen", "off", "--xet-socket", "off"])
        .env_remove("HF_TOKEN")
        .output()
        .expect("zestd");
    assert!(!out.status.success(), "zestd started over a regular file");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not a socket; not touching it"), "{err}");
    assert_eq!(
        std::fs::read(&in_the_way).expect("the file is still there"),
        b"someone's notes\n"
    );
}

#[test]
fn the_service_units_verify_and_the_plist_parses() {
    // Issue 16: systemd's own checker passes on both units (with ExecStart pointed at the
    // zestd just built, since it checks the binary exists), both start the endpoint the
    // README documents, and launchd's plist parses as a property list.
    let scratch = Scratch::new("config-units");
    let root = zest_tests::workspace_root();
    let zestd = bin("zestd");
    for (unit, exec) in [
        ("zestd-system.service", "/usr/local/bin/zestd"),
        ("zestd.service", "%h/.cargo/bin/zestd"),
    ] {
        let text = std::fs::read_to_string(root.join("systemd").join(unit)).expect("unit");
        assert!(text.contains(&format!("ExecStart={exec} ")), "{unit}");
        assert!(text.contains("--hub-listen 127.0.0.1:4748"), "{unit}");
        let dir = scratch.path().join(unit.trim_end_matches(".service"));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("zestd.service");
        std::fs::write(&path, text.replace(exec, &zestd.display().to_string())).expect("write");
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .output()
            .expect("systemd-analyze (Debian's systemd; scripts/test.sh installs it)");
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{unit}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let system = std::fs::read_to_string(root.join("systemd/zestd-system.service")).expect("unit");
    assert!(system.contains("/metrics") && system.contains("--metrics-listen"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README");
    assert!(readme.contains("127.0.0.1:4748") && readme.contains("--metrics-listen"));

    let args = zest_tests::run_python(
        "import json, plistlib, sys\n\
         p = plistlib.load(open(sys.argv[1], 'rb'))\n\
         print(json.dumps([p['Label'], p['ProgramArguments']]))",
        &[&root
            .join("launchd/dev.zest.zestd.plist")
            .display()
            .to_string()],
    );
    let v: serde_json::Value = serde_json::from_str(&args).expect("plist JSON");
    assert_eq!(v[0], "dev.zest.zestd");
    let argv: Vec<&str> = v[1]
        .as_array()
        .expect("ProgramArguments")
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert!(argv[0].ends_with("/zestd"), "{argv:?}");
    assert!(
        argv.windows(2)
            .any(|w| w == ["--hub-listen", "127.0.0.1:4748"]),
        "{argv:?}"
    );
}
