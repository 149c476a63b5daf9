//! `zestctl hash` against `hf_xet.hash_files` on the oracle files, and its error handling.

use std::process::Command;

use zest_tests::{Scratch, oracle_files, run_python};

const HF_HASH: &str = r#"
import json, sys, hf_xet
print(json.dumps([{"path": p, "hash": r.hash, "size": r.file_size} for p, r in zip(sys.argv[1:], hf_xet.hash_files(sys.argv[1:]))]))
"#;

fn zestctl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_zestctl"))
}

#[test]
fn hashes_equal_hf_xet() {
    let scratch = Scratch::new("hash-cli");
    let mut paths = Vec::new();
    for (name, data) in oracle_files() {
        let p = scratch.path().join(name);
        std::fs::write(&p, data).expect("write");
        paths.push(p.to_string_lossy().into_owned());
    }
    // Odd names are just paths.
    let odd = scratch.path().join("weights (copy) #1.bin");
    std::fs::write(&odd, zest_tests::random_bytes(200_000, 9)).expect("write");
    paths.push(odd.to_string_lossy().into_owned());

    let reference: serde_json::Value = serde_json::from_str(&run_python(
        HF_HASH,
        &paths.iter().map(String::as_str).collect::<Vec<_>>(),
    ))
    .expect("json");

    let out = zestctl()
        .arg("hash")
        .args(&paths)
        .output()
        .expect("run zestctl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), paths.len());

    let json_out = zestctl()
        .args(["hash", "--json"])
        .args(&paths)
        .output()
        .expect("run zestctl");
    assert!(json_out.status.success());
    let ours: serde_json::Value = serde_json::from_slice(&json_out.stdout).expect("zestctl --json");

    for (i, r) in reference.as_array().expect("array").iter().enumerate() {
        let expected = format!(
            "{} {} {}",
            r["hash"].as_str().expect("hash"),
            r["size"],
            r["path"].as_str().expect("p")
        );
        assert_eq!(lines[i], expected);
        assert_eq!(ours[i]["hash"], r["hash"]);
        assert_eq!(ours[i]["size"], r["size"]);
        assert_eq!(ours[i]["path"], r["path"]);
    }
}

#[test]
fn unreadable_files_are_reported_and_the_rest_hashed() {
    let scratch = Scratch::new("hash-cli-errors");
    let good = scratch.path().join("good.bin");
    std::fs::write(&good, b"Hello World!").expect("write");
    let missing = scratch.path().join("missing.bin");
    let out = zestctl()
        .arg("hash")
        .arg(&missing)
        .arg(scratch.path())
        .arg(&good)
        .output()
        .expect("run zestctl");
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.starts_with("a9dae0ad88b060bdd7e7c87abdcf95b132c95a0414b06d4f6beb68d287b87165 12 "),
        "{stdout}"
    );
    assert_eq!(stderr.lines().count(), 2, "{stderr}");
    assert!(stderr.contains("missing.bin"), "{stderr}");
}
