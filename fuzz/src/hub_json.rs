//! What the Hub answers: tree listings (their paths become cache paths), revision info,
//! xet-read-token bodies, `Link` headers, repo names.

use std::path::{Component, PathBuf};

use xet::remote::hub::{RepoInfo, RepoRef, RepoType, TreeEntry};
use xet::remote::link::find_rel;
use zestd::cache::layout::safe_relative_path;
use zestd::cache::snapshot_paths;
use zestd::endpoint::rewrite;

pub fn run(data: &[u8]) {
    if let Ok(page) = serde_json::from_slice::<Vec<TreeEntry>>(data) {
        let mut rels: Vec<PathBuf> = Vec::new();
        for e in page.iter().filter(|e| e.kind == "file") {
            if let Ok(rel) = safe_relative_path(&e.path) {
                // Whatever the Hub sends, a file lands inside the snapshot folder.
                assert!(
                    rel.components().all(|c| matches!(c, Component::Normal(_))),
                    "{:?} escapes the snapshot",
                    e.path
                );
                rels.push(rel);
            }
        }
        let _ = snapshot_paths::check(&rels);
    }
    let _ = serde_json::from_slice::<RepoInfo>(data);
    if let Some(out) = rewrite::token_body(data, |u| format!("http://127.0.0.1:4748/cas/{u}"))
        && serde_json::from_slice::<serde_json::Value>(&out).is_err()
    {
        panic!("the rewritten token answer is not JSON");
    }
    let text = String::from_utf8_lossy(data);
    let _ = find_rel(&text, "next");
    if let Ok(r) = RepoRef::new(RepoType::Model, &text) {
        // A name the Hub could have given maps to a cache folder and back.
        let folder = r.cache_folder_name();
        assert_eq!(RepoRef::from_cache_folder(&folder), Some(r));
    }
    let _ = RepoRef::from_cache_folder(&text);
}
