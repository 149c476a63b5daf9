//! Paths and small writes of the HF cache layout (per repo: `blobs/`, `snapshots/`,
//! `refs/`, `trees/`; cache-wide: `CACHEDIR.TAG`, `.locks/`).

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use super::error::{At, CacheError, Result};

use super::tree_json::{self, TreeCacheEntry};

/// The same text huggingface_hub writes.
const CACHEDIR_TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
# This file is a cache directory tag created by huggingface_hub.\n\
# For information about cache directory tags, see:\n\
#\thttps://bford.info/cachedir/\n";

/// One repo's folder in one cache.
#[derive(Clone, Debug)]
pub struct RepoCache {
    pub cache_dir: PathBuf,
    /// `models--org--name`
    pub folder: String,
}

impl RepoCache {
    pub fn new(cache_dir: &Path, folder: String) -> Self {
        RepoCache {
            cache_dir: cache_dir.to_path_buf(),
            folder,
        }
    }

    pub fn storage(&self) -> PathBuf {
        self.cache_dir.join(&self.folder)
    }
    pub fn blob(&self, etag: &str) -> PathBuf {
        self.storage().join("blobs").join(etag)
    }
    pub fn snapshot(&self, commit: &str) -> PathBuf {
        self.storage().join("snapshots").join(commit)
    }
    pub fn pointer(&self, commit: &str, rel: &Path) -> PathBuf {
        self.snapshot(commit).join(rel)
    }
    pub fn lock_path(&self, etag: &str) -> PathBuf {
        self.cache_dir
            .join(".locks")
            .join(&self.folder)
            .join(format!("{etag}.lock"))
    }

    pub fn ensure_dirs(&self) -> Result<()> {
        let blobs = self.storage().join("blobs");
        std::fs::create_dir_all(&blobs).at("creating", &blobs)?;
        Ok(())
    }

    /// `CACHEDIR.TAG`, if missing, so backup tools skip the cache.
    pub fn write_cachedir_tag(&self) {
        let p = self.cache_dir.join("CACHEDIR.TAG");
        if !p.exists() {
            let _ = std::fs::write(&p, CACHEDIR_TAG);
        }
    }

    /// `refs/<revision>` → commit, atomically, only when it changes (as huggingface_hub).
    pub fn write_ref(&self, revision: &str, commit: &str) -> Result<()> {
        if revision == commit {
            return Ok(());
        }
        let rel = safe_relative_path(revision).map_err(|e| {
            CacheError::BadName(format!("refusing revision name {revision:?}: {e}"))
        })?;
        let path = self.storage().join("refs").join(rel);
        if std::fs::read_to_string(&path).ok().as_deref() == Some(commit) {
            return Ok(());
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).at("creating", parent)?;
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = path.with_file_name(format!("{name}.{}.tmp", random_hex8()));
        std::fs::write(&tmp, commit).at("writing", &tmp)?;
        std::fs::rename(&tmp, &path).at("renaming into", &path)?;
        Ok(())
    }

    /// `trees/<commit>.json`, through a `mkstemp` file (mode 0600) like huggingface_hub.
    pub fn write_tree_cache(&self, commit: &str, entries: &mut [TreeCacheEntry<'_>]) -> Result<()> {
        let dir = self.storage().join("trees");
        std::fs::create_dir_all(&dir).at("creating", &dir)?;
        let path = dir.join(format!("{commit}.json"));
        let tmp = dir.join(format!("tmp{}.tmp", random_hex8()));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .at("creating", &tmp)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .at("setting the mode of", &tmp)?;
        f.write_all(tree_json::render(entries).as_bytes())
            .at("writing", &tmp)?;
        drop(f);
        std::fs::rename(&tmp, &path).at("renaming into", &path)?;
        Ok(())
    }

    /// The mode huggingface_hub gives a new blob: that of a freshly created file in the
    /// same folder (0666 minus the umask), found the same way, by creating one.
    pub fn new_file_mode(&self, dir: &Path) -> u32 {
        let probe = dir.join(format!("tmp_{}", random_hex8()));
        let mode = std::fs::File::create(&probe)
            .and_then(|f| f.metadata())
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(0o644);
        let _ = std::fs::remove_file(&probe);
        mode
    }

    /// Points `snapshots/<commit>/<rel>` at `blobs/<etag>` with a relative symlink.
    pub fn link_pointer(&self, commit: &str, rel: &Path, etag: &str) -> Result<()> {
        let pointer = self.pointer(commit, rel);
        let parent = pointer
            .parent()
            .ok_or_else(|| CacheError::BadName(format!("{} has no folder", pointer.display())))?;
        std::fs::create_dir_all(parent).at("creating", parent)?;
        let target = relative_path(&self.blob(etag), parent);
        if std::fs::read_link(&pointer).is_ok_and(|t| t == target) {
            return Ok(());
        }
        // huggingface_hub may link the same pointer at the same moment: a new link goes in
        // by rename, which replaces whatever is there in one step, so neither tool sees
        // "File exists" or a moment without the link.
        // A short name of its own, so a pointer's name may use the whole NAME_MAX.
        let tmp = parent.join(format!(".zest-link-{:016x}", rand::random::<u64>()));
        std::os::unix::fs::symlink(&target, &tmp).at("linking", &tmp)?;
        if let Err(e) = std::fs::rename(&tmp, &pointer) {
            let _ = std::fs::remove_file(&tmp);
            return Err::<(), _>(e).at("linking", &pointer);
        }
        Ok(())
    }
}

/// Turns a repo path (`/`-separated) into a relative path that cannot leave the folder it
/// is joined to: no absolute paths, no `..`, no empty or `.` segments, no NUL, no
/// backslashes (a Windows separator elsewhere).
pub fn safe_relative_path(repo_path: &str) -> Result<PathBuf> {
    if repo_path.is_empty() {
        return Err(CacheError::BadName("empty path".into()));
    }
    if repo_path.contains('\0') {
        return Err(CacheError::BadName(format!(
            "path {repo_path:?} contains NUL"
        )));
    }
    if repo_path.starts_with('/') || repo_path.contains('\\') {
        return Err(CacheError::BadName(format!(
            "path {repo_path:?} is absolute or uses backslashes"
        )));
    }
    let mut out = PathBuf::new();
    for seg in repo_path.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            return Err(CacheError::BadName(format!(
                "path {repo_path:?} has an empty, `.` or `..` segment"
            )));
        }
        if seg.len() >= 2 && seg.as_bytes()[1] == b':' {
            return Err(CacheError::BadName(format!(
                "path {repo_path:?} has a drive letter"
            )));
        }
        out.push(seg);
    }
    if out.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(CacheError::BadName(format!(
            "path {repo_path:?} escapes its folder"
        )));
    }
    Ok(out)
}

/// `os.path.relpath(target, start)` for absolute, symlink-free paths.
pub fn relative_path(target: &Path, start: &Path) -> PathBuf {
    let t: Vec<_> = target.components().collect();
    let s: Vec<_> = start.components().collect();
    let common = t.iter().zip(&s).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..s.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c.as_os_str());
    }
    out
}

/// Eight random hex digits for temporary names, like huggingface_hub's `uuid4().hex[:8]`.
pub fn random_hex8() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let x = blake3::hash(
        &[
            t.to_le_bytes(),
            N.fetch_add(1, Ordering::Relaxed).to_le_bytes(),
            u64::from(std::process::id()).to_le_bytes(),
        ]
        .concat(),
    );
    x.to_hex()[..8].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pointer_is_linked_replaced_and_left_alone_when_right() {
        let dir = std::env::temp_dir().join(format!("zest-link-{}", rand::random::<u64>()));
        let repo = RepoCache::new(&dir, "models--o--m".into());
        let rel = Path::new("sub/w.bin");
        repo.link_pointer("c0", rel, "aaaa").unwrap();
        let p = repo.pointer("c0", rel);
        assert_eq!(
            std::fs::read_link(&p).unwrap(),
            Path::new("../../../blobs/aaaa")
        );
        // Linked already (by huggingface_hub, or an earlier pull): nothing to do.
        repo.link_pointer("c0", rel, "aaaa").unwrap();
        // Pointing elsewhere: replaced in one step.
        repo.link_pointer("c0", rel, "bbbb").unwrap();
        assert_eq!(
            std::fs::read_link(&p).unwrap(),
            Path::new("../../../blobs/bbbb")
        );
        let names: Vec<_> = std::fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("w.bin")],
            "no temporary link left"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn refuses_escaping_paths() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "a/./b",
            "a\0b",
            "C:\\x",
            "c:x",
            "a\\b",
        ] {
            assert!(safe_relative_path(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            safe_relative_path("nested/a b (1).bin").unwrap(),
            PathBuf::from("nested/a b (1).bin")
        );
    }

    #[test]
    fn relpath_like_python() {
        assert_eq!(
            relative_path(Path::new("/c/m/blobs/e"), Path::new("/c/m/snapshots/x/a/b")),
            PathBuf::from("../../../../blobs/e")
        );
        assert_eq!(
            relative_path(Path::new("/c/blobs/ab/abc"), Path::new("/c/m/blobs")),
            PathBuf::from("../../blobs/ab/abc")
        );
    }
}
