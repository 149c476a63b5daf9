//! The test hub is only useful if it behaves like the Hub: vanilla huggingface_hub with
//! hf_xet must download from it, with its error types for the error cases.

use zest_tests::harness::hf_python_ok;
use zest_tests::hub::fixtures::{self, DATASET, MODEL, PRIVATE_MODEL};
use zest_tests::hub::{HubConfig, TEST_TOKEN, TestHub};
use zest_tests::{Scratch, sha256};

#[test]
fn huggingface_hub_downloads_from_the_test_hub() {
    let scratch = Scratch::new("hub-faithful");
    let specs = fixtures::standard();
    let hub = TestHub::start(HubConfig::new(scratch.path().join("hub"), specs.clone()))
        .expect("test hub");
    let cache = scratch.path().join("hf-cache");
    let home = scratch.path().join("hf-home");

    let script = r#"
import sys, json
from huggingface_hub import snapshot_download, scan_cache_dir, HfApi
from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError
from huggingface_hub import hf_hub_download
out = {}
out["model"] = snapshot_download(sys.argv[1])
out["dataset"] = snapshot_download(sys.argv[2], repo_type="dataset")
try:
    snapshot_download(sys.argv[3])
    out["private_without_token"] = "downloaded"
except RepositoryNotFoundError:
    out["private_without_token"] = "RepositoryNotFoundError"
out["private"] = snapshot_download(sys.argv[3], token=sys.argv[4])
try:
    snapshot_download(sys.argv[1], revision="no-such-branch")
    out["bad_revision"] = "downloaded"
except RevisionNotFoundError:
    out["bad_revision"] = "RevisionNotFoundError"
try:
    hf_hub_download(sys.argv[1], "no/such/file.bin")
    out["bad_file"] = "downloaded"
except EntryNotFoundError:
    out["bad_file"] = "EntryNotFoundError"
files = list(HfApi().list_repo_tree(sys.argv[1], recursive=True))
out["tree_entries"] = len(files)
out["xet_files"] = sorted(f.path for f in files if getattr(f, "xet_hash", None))
info = scan_cache_dir()
out["scan_warnings"] = [str(w) for w in info.warnings]
out["scan_repos"] = sorted((r.repo_id, r.repo_type, r.nb_files) for r in info.repos)
print(json.dumps(out))
"#;
    let stdout = hf_python_ok(
        script,
        &[MODEL, DATASET, PRIVATE_MODEL, TEST_TOKEN],
        &hub.endpoint,
        &cache,
        &home,
        &[],
    );
    let out: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(out["private_without_token"], "RepositoryNotFoundError");
    assert_eq!(out["bad_revision"], "RevisionNotFoundError");
    assert_eq!(out["bad_file"], "EntryNotFoundError");
    assert_eq!(out["scan_warnings"], serde_json::json!([]));
    assert_eq!(
        out["xet_files"],
        serde_json::json!([
            "model.safetensors",
            "nested/deeper/weights (copy 1).bin",
            "tokenizer/tokenizer.json"
        ])
    );
    assert_eq!(out["scan_repos"].as_array().map(Vec::len), Some(3));

    // Every file huggingface_hub wrote is the content the hub was given.
    for (key, spec) in [
        ("model", &specs[0]),
        ("private", &specs[1]),
        ("dataset", &specs[2]),
    ] {
        let snap = std::path::PathBuf::from(out[key].as_str().expect("snapshot path"));
        for f in &spec.files {
            let got =
                std::fs::read(snap.join(&f.path)).unwrap_or_else(|e| panic!("{}: {e}", f.path));
            let want = f.content.read().expect("fixture content");
            assert!(sha256(&got) == sha256(&want), "{key}/{} differs", f.path);
        }
    }
    // Xet files went through the CAS (hf_xet), not the whole-file bridge.
    let stats = hub.stats.snapshot();
    assert!(
        stats.xorb_bytes > 0 && stats.reconstructions > 0,
        "{stats:?}"
    );
    assert!(stats.plain_bytes < 100_000, "{stats:?}");
}
