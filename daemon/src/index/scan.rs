//! Bringing the index in line with the cache: every complete Xet-sized blob is chunked and
//! hashed once (unchanged files are recognised by size and mtime), vanished ones leave.

use std::path::{Path, PathBuf};

use xet::XetHash;

use super::{Chunk, Index, Stamp};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ScanReport {
    pub added: usize,
    pub kept: usize,
    pub removed: usize,
    pub skipped: usize,
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A file worth indexing, and the Xet hash its name promises, if any.
struct Candidate {
    path: PathBuf,
    named_hash: Option<String>,
}

/// Complete blobs in the cache: huggingface_hub's shared store (`blobs/<2>/<xet hash>`,
/// named by Xet hash) and each repo's `blobs/<sha256>` that is a regular file. Git blobs
/// (40-hex names) are small text files that never travel as Xet; `.incomplete` files are
/// downloads in progress.
fn candidates(cache_dir: &Path) -> Vec<Candidate> {
    let mut out = Vec::new();
    let regular = |p: &Path| {
        std::fs::symlink_metadata(p)
            .map(|m| m.file_type().is_file())
            .unwrap_or(false)
    };
    let Ok(top) = std::fs::read_dir(cache_dir) else {
        return out;
    };
    for e in top.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name == "blobs" {
            for prefix in std::fs::read_dir(e.path()).into_iter().flatten().flatten() {
                let pname = prefix.file_name().to_string_lossy().into_owned();
                if !is_hex(&pname, 2) {
                    continue;
                }
                for f in std::fs::read_dir(prefix.path())
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    let fname = f.file_name().to_string_lossy().into_owned();
                    if is_hex(&fname, 64) && fname.starts_with(&pname) && regular(&f.path()) {
                        out.push(Candidate {
                            path: f.path(),
                            named_hash: Some(fname),
                        });
                    }
                }
            }
        } else if name.contains("--") {
            for f in std::fs::read_dir(e.path().join("blobs"))
                .into_iter()
                .flatten()
                .flatten()
            {
                let fname = f.file_name().to_string_lossy().into_owned();
                if is_hex(&fname, 64) && regular(&f.path()) {
                    out.push(Candidate {
                        path: f.path(),
                        named_hash: None,
                    });
                }
            }
        }
    }
    out
}

/// Reconciles the index with the cache. Blocking: run it off the async runtime.
pub fn reconcile(index: &Index, cache_dir: &Path) -> ScanReport {
    let mut report = ScanReport::default();
    let found = candidates(cache_dir);
    let mut seen = std::collections::HashSet::new();
    for c in &found {
        if index.is_broken() {
            // Nothing can be recorded until the index is reopened; that pass redoes this.
            return report;
        }
        seen.insert(c.path.clone());
        let Ok(meta) = std::fs::metadata(&c.path) else {
            continue;
        };
        let stamp = Stamp::of(&meta);
        if let Some((_, old)) = index.stamp(&c.path) {
            if old == stamp {
                report.kept += 1;
                continue;
            }
            let _ = index.remove_path(&c.path);
        }
        match index_file(index, &c.path, c.named_hash.as_deref()) {
            Ok(true) => report.added += 1,
            Ok(false) => report.skipped += 1,
            Err(e) => {
                tracing::warn!(path = %c.path.display(), "cannot index: {e}");
                report.skipped += 1;
            }
        }
    }
    for p in index.paths() {
        if !seen.contains(&p) {
            match index.remove_path(&p) {
                Ok(()) => report.removed += 1,
                Err(e) => tracing::warn!(path = %p.display(), "cannot drop from the index: {e}"),
            }
        }
    }
    index.flush();
    report
}

/// Chunks and hashes one file and records it. False when its content does not match the
/// Xet hash its name promises (it is then not served).
fn index_file(index: &Index, path: &Path, named: Option<&str>) -> anyhow::Result<bool> {
    let before = Stamp::of(&std::fs::metadata(path)?);
    let digest = xet::file_hash::hash_path(path)?;
    if let Some(name) = named
        && digest.hash.to_hex() != name
    {
        tracing::warn!(path = %path.display(), got = %digest.hash, "content does not match its Xet hash name; not serving it");
        return Ok(false);
    }
    let after = Stamp::of(&std::fs::metadata(path)?);
    if before != after {
        // Written while we read it: the next event brings it back.
        return Ok(false);
    }
    let chunks: Vec<Chunk> = digest
        .chunks
        .iter()
        .map(|c| Chunk {
            hash: c.hash,
            size: c.size as u32,
        })
        .collect();
    index.insert(digest.hash, path, after, &chunks)?;
    tracing::debug!(path = %path.display(), hash = %digest.hash, chunks = chunks.len(), "indexed");
    Ok(true)
}

/// Hashes `path` again after it was found wrong ([`Index::mark_wrong`]) and indexes it as
/// what it now is: a file that changed on disk comes back under its new content's hash (or
/// not at all, if its name promised another), one that reads right again comes back as it
/// was. Blocking.
pub fn recheck(index: &Index, path: &Path) {
    let named = shared_store_name(path);
    match index_file(index, path, named.as_deref()) {
        Ok(true) => tracing::info!(path = %path.display(), "re-checked: indexed as it is now"),
        Ok(false) => {}
        Err(e) => tracing::info!(path = %path.display(), "re-checked: not indexed ({e})"),
    }
}

/// The Xet hash a shared-store path (`blobs/<2 hex>/<xet hash>`) is named by.
fn shared_store_name(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let prefix = path.parent()?.file_name()?.to_str()?;
    (is_hex(prefix, 2) && is_hex(name, 64) && name.starts_with(prefix)).then(|| name.to_string())
}

/// Records a file zest has just verified and moved into place, without hashing it again.
pub fn record_pulled(index: &Index, path: &Path, hash: XetHash, chunks: &[Chunk]) {
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    match std::fs::metadata(&real) {
        Ok(meta) => {
            if let Err(e) = index.insert(hash, &real, Stamp::of(&meta), chunks) {
                tracing::warn!("cannot index {}: {e}", real.display());
            }
        }
        Err(e) => tracing::warn!("cannot index {}: {e}", real.display()),
    }
}
