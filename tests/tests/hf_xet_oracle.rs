//! zest's `xet` crate against hf_xet (pinned 1.8.0), the Python package huggingface_hub uses.
//!
//! hf_xet uploads the oracle files into a local CAS directory (its `local://` endpoint),
//! writing xorbs and shards with Hugging Face's full upload pipeline. zest must parse
//! every one, verify every hash, rebuild every file byte for byte, and re-serialize the
//! shards to identical bytes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use xet::XetHash;
use xet::shard::Shard;
use xet::xorb::Xorb;
use zest_tests::{Scratch, oracle_files, run_python, sha256};

const UPLOAD: &str = r#"
import json, sys, hf_xet
cas, paths = sys.argv[1], sys.argv[2:]
up = hf_xet.upload_files(paths, "local://" + cas, None, None, None, None)
hashed = hf_xet.hash_files(paths)
print(json.dumps([{"path": p, "upload": u.hash, "hash": h.hash, "size": h.file_size, "sha256": u.sha256}
                  for p, u, h in zip(paths, up, hashed)]))
"#;

fn files_under(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(suffix))
            {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn hf_xet_uploads_are_read_exactly() {
    let scratch = Scratch::new("hf-xet-oracle");
    let src = scratch.path().join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    let mut originals: HashMap<String, Vec<u8>> = HashMap::new();
    let mut paths = Vec::new();
    for (name, data) in oracle_files() {
        let p = src.join(name);
        std::fs::write(&p, &data).expect("write");
        paths.push(p.to_string_lossy().into_owned());
        originals.insert(p.to_string_lossy().into_owned(), data);
    }
    let cas = scratch.path().join("cas");
    let mut args = vec![cas.to_str().expect("utf-8 path")];
    args.extend(paths.iter().map(String::as_str));
    let report: serde_json::Value =
        serde_json::from_str(&run_python(UPLOAD, &args)).expect("json from python");

    // Every xorb hf_xet wrote parses, verifies, and is indexed by its hash.
    let xorb_files: Vec<PathBuf> = files_under(&cas, "")
        .into_iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("default.") && !n.ends_with(".tagset"))
        })
        .collect();
    assert!(
        !xorb_files.is_empty(),
        "hf_xet wrote no xorbs under {}",
        cas.display()
    );
    let mut xorbs: HashMap<XetHash, Vec<u8>> = HashMap::new();
    for p in &xorb_files {
        let bytes = std::fs::read(p).expect("read xorb");
        let parsed = Xorb::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let name_hash: XetHash = p
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("default."))
            .expect("xorb file name")
            .parse()
            .expect("hash in name");
        assert_eq!(parsed.footer.xorb_hash, name_hash, "{}", p.display());
        xorbs.insert(name_hash, bytes);
    }

    // Every shard parses and re-serializes to the same bytes.
    let shard_files = files_under(&cas, ".mdb");
    assert!(!shard_files.is_empty(), "hf_xet wrote no shards");
    let mut shards = Vec::new();
    for p in &shard_files {
        let bytes = std::fs::read(p).expect("read shard");
        let shard = Shard::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let again = shard.serialize(shard.form()).expect("serialize");
        let first_diff = again.iter().zip(&bytes).position(|(a, b)| a != b);
        assert!(
            again == bytes,
            "{}: re-serialized shard differs (lengths {} vs {}, first difference at {:?})",
            p.display(),
            again.len(),
            bytes.len(),
            first_diff
        );
        shards.push(shard);
    }

    for entry in report.as_array().expect("array") {
        let path = entry["path"].as_str().expect("path");
        let data = &originals[path];
        let hash: XetHash = entry["hash"]
            .as_str()
            .expect("hash")
            .parse()
            .expect("hash string");
        assert_eq!(
            entry["upload"], entry["hash"],
            "{path}: hf_xet upload and hash disagree"
        );
        assert_eq!(entry["size"].as_u64(), Some(data.len() as u64));
        assert_eq!(
            xet::file_hash::hash_bytes(data).hash,
            hash,
            "{path}: file hash"
        );
        // The form `zestctl hash` and the cache index use: pieces of the file on disk
        // (for files over 8 MiB), and pieces small enough to be joined every 100 kB.
        let on_disk = xet::file_hash::hash_path(Path::new(path)).expect("hash the file");
        assert_eq!(on_disk.hash, hash, "{path}: file hash from disk");
        let joined = xet::piece_hash::hash_in_pieces(&data[..], data.len() as u64, 100_003)
            .expect("in memory");
        assert_eq!(
            joined.hash, hash,
            "{path}: file hash in pieces of 100,003 bytes"
        );
        if data.is_empty() {
            continue;
        }
        let info = shards
            .iter()
            .find_map(|s| s.file(&hash))
            .unwrap_or_else(|| panic!("{path}: in no shard"));
        // Rebuild the file from the shard's terms and the xorbs, as a download would.
        let mut rebuilt = Vec::with_capacity(data.len());
        for (i, term) in info.terms.iter().enumerate() {
            let x = Xorb::parse(&xorbs[&term.xorb_hash]).expect("xorb");
            let bytes = x
                .extract(term.chunk_start as usize, term.chunk_end as usize)
                .expect("term");
            assert_eq!(
                bytes.len(),
                term.unpacked_bytes as usize,
                "{path}: term {i} length"
            );
            if let Some(v) = &info.verification {
                let hashes =
                    &x.footer.chunk_hashes[term.chunk_start as usize..term.chunk_end as usize];
                assert_eq!(
                    v[i],
                    xet::merkle::verification_hash(hashes),
                    "{path}: term {i} verification"
                );
            }
            rebuilt.extend_from_slice(&bytes);
        }
        assert!(rebuilt == *data, "{path}: rebuilt bytes differ");
        if let Some(s) = info.sha256 {
            let hex: String = sha256(data).iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(s.to_string(), hex, "{path}: sha256 in the shard");
            assert_eq!(entry["sha256"].as_str(), Some(hex.as_str()));
        }
    }
}
