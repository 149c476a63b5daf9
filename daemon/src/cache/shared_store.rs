//! huggingface_hub's cache-wide shared blob store: `blobs/<2 hex>/<xet hash>` holds each
//! Xet file once; per-repo `blobs/<etag>` are relative symlinks into it, each recorded in
//! the entry's `.refs` manifest before the symlink appears. Same paths, modes, locks and
//! order of steps as `huggingface_hub/utils/_shared_blobs.py`.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::error::{At, CacheError, Result};

use super::layout::{random_hex8, relative_path};
use super::lock;

const MARKER: &str = ".huggingface-shared-blobs";
const MARKER_CONTENT: &str = "1\n";

pub struct SharedStore {
    cache_dir: PathBuf,
}

fn valid_hash(h: &str) -> bool {
    h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl SharedStore {
    pub fn new(cache_dir: &Path) -> Self {
        SharedStore {
            cache_dir: cache_dir.to_path_buf(),
        }
    }

    /// Whether the store may be used at all (huggingface_hub's switches).
    pub fn enabled() -> bool {
        let on = |v: &str| {
            std::env::var(v)
                .map(|s| matches!(s.to_ascii_lowercase().as_str(), "1" | "on" | "yes" | "true"))
                .unwrap_or(false)
        };
        !on("HF_HUB_DISABLE_SHARED_BLOBS")
            && !on("HF_HUB_DISABLE_XET")
            && !on("HF_HUB_DISABLE_SYMLINKS")
    }

    fn dir(&self) -> PathBuf {
        self.cache_dir.join("blobs")
    }

    pub fn entry(&self, xet_hash: &str) -> PathBuf {
        self.dir().join(&xet_hash[..2]).join(xet_hash)
    }

    fn cache_mode(&self) -> Option<u32> {
        std::fs::metadata(&self.cache_dir)
            .ok()
            .map(|m| m.mode() & 0o7777)
    }

    /// Read-only, readable by whoever can traverse the cache root.
    fn blob_mode(&self) -> u32 {
        match self.cache_mode() {
            None => 0o400,
            Some(m) => {
                0o400
                    | if m & 0o010 != 0 { 0o040 } else { 0 }
                    | if m & 0o001 != 0 { 0o004 } else { 0 }
            }
        }
    }

    fn dir_mode(&self) -> u32 {
        self.cache_mode().unwrap_or(0o700)
    }

    fn is_marked(&self) -> bool {
        let marker = self.dir().join(MARKER);
        std::fs::symlink_metadata(&marker).is_ok_and(|m| m.file_type().is_file())
            && std::fs::read_to_string(&marker).ok().as_deref() == Some(MARKER_CONTENT)
    }

    /// Creates and marks the store; never adopts an unmarked folder with content.
    fn ensure(&self) -> Result<bool> {
        // Two of our own downloads creating the store at once would see each other's
        // temporary marker as foreign content and refuse the store (huggingface_hub has that
        // race between its threads); within this process, one at a time.
        static CREATING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = CREATING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let dir = self.dir();
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).at("creating", &dir),
        }
        if self.is_marked() {
            return Ok(true);
        }
        if !std::fs::symlink_metadata(&dir)
            .at("reading", &dir)?
            .is_dir()
            || std::fs::read_dir(&dir)
                .at("listing", &dir)?
                .next()
                .is_some()
        {
            tracing::debug!(dir = %dir.display(), "refusing an unmarked shared blob folder");
            return Ok(false);
        }
        repair_mode(&dir, self.dir_mode())?;
        let tmp = dir.join(format!("{MARKER}.{}.tmp", random_hex8()));
        std::fs::write(&tmp, MARKER_CONTENT).at("writing", &tmp)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(self.blob_mode()))
            .at("setting the mode of", &tmp)?;
        let marker = dir.join(MARKER);
        std::fs::rename(&tmp, &marker).at("renaming into", &marker)?;
        Ok(self.is_marked())
    }

    fn ensure_prefix(&self, xet_hash: &str) -> Result<Option<PathBuf>> {
        if !self.ensure()? {
            return Ok(None);
        }
        let prefix = self.dir().join(&xet_hash[..2]);
        match std::fs::create_dir(&prefix) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).at("creating", &prefix),
        }
        if !std::fs::symlink_metadata(&prefix)
            .at("reading", &prefix)?
            .is_dir()
        {
            return Ok(None);
        }
        repair_mode(&prefix, self.dir_mode())?;
        Ok(Some(prefix))
    }

    /// Whether the store already holds a usable copy of this file.
    pub fn has(&self, xet_hash: &str, size: u64) -> bool {
        valid_hash(xet_hash) && self.is_marked() && usable(&self.entry(xet_hash), size)
    }

    /// The path of `blob` relative to the cache root, as the manifest records it.
    fn manifest_line(&self, blob: &Path) -> Option<String> {
        let rel = blob.strip_prefix(&self.cache_dir).ok()?;
        let s = rel.to_str()?;
        (!s.contains('\n') && !s.contains('\r') && rel.components().count() == 3)
            .then(|| s.to_string())
    }

    /// If `blob` links to the store's entry for `xet_hash`, makes sure the entry's manifest
    /// lists it (a cache deleted under running downloads can leave a link its manifest lost,
    /// and a manifest is what tells `hf cache` the entry is still in use).
    pub async fn ensure_listed(&self, blob: &Path, xet_hash: &str) -> Result<()> {
        if !valid_hash(xet_hash) {
            return Ok(());
        }
        let entry = self.entry(xet_hash);
        let links_here = std::fs::canonicalize(blob)
            .ok()
            .zip(std::fs::canonicalize(&entry).ok())
            .is_some_and(|(a, b)| a == b)
            && std::fs::symlink_metadata(blob).is_ok_and(|m| m.file_type().is_symlink());
        let Some(line) = self.manifest_line(blob).filter(|_| links_here) else {
            return Ok(());
        };
        let lock_path = with_suffix(&entry, ".lock");
        let _guard = lock::lock(&lock_path, 0o666)
            .await
            .at("locking", &lock_path)?;
        append_manifest(&with_suffix(&entry, ".refs"), &line)
    }

    /// Makes `blob` a symlink to an existing store entry. False when there is none.
    pub async fn link_existing(&self, blob: &Path, xet_hash: &str, size: u64) -> Result<bool> {
        if !valid_hash(xet_hash) || !self.is_marked() {
            return Ok(false);
        }
        let Some(line) = self.manifest_line(blob) else {
            return Ok(false);
        };
        let entry = self.entry(xet_hash);
        let lock_path = with_suffix(&entry, ".lock");
        let _guard = lock::lock(&lock_path, 0o666)
            .await
            .at("locking", &lock_path)?;
        if !usable(&entry, size) {
            return Ok(false);
        }
        let tmp = temp_link(blob, &entry)?;
        let result = append_manifest(&with_suffix(&entry, ".refs"), &line)
            .and_then(|()| std::fs::rename(&tmp, blob).at("linking", blob));
        let _ = std::fs::remove_file(&tmp);
        result.map(|()| true)
    }

    /// Moves a verified file that no repo refers to yet into the store (a file a local
    /// client is downloading through zestd: huggingface_hub links its own blob to this entry
    /// when it publishes, so the cache holds one copy). Returns the entry's path, or None
    /// when the store cannot be used; an entry already there is kept and `file` removed.
    pub async fn adopt(&self, file: &Path, xet_hash: &str, size: u64) -> Result<Option<PathBuf>> {
        if !valid_hash(xet_hash) {
            return Ok(None);
        }
        if self.ensure_prefix(xet_hash)?.is_none() {
            return Ok(None);
        }
        let entry = self.entry(xet_hash);
        let lock_path = with_suffix(&entry, ".lock");
        let _guard = lock::lock(&lock_path, 0o666)
            .await
            .at("locking", &lock_path)?;
        if usable(&entry, size) {
            let _ = std::fs::remove_file(file);
            return Ok(Some(entry));
        }
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(self.blob_mode()))
            .at("setting the mode of", file)?;
        std::fs::rename(file, &entry).at("moving into the store", &entry)?;
        Ok(Some(entry))
    }

    /// Moves a freshly verified `blob` into the store and leaves a symlink in its place.
    /// On any failure the blob stays a regular file in the repo, as huggingface_hub does.
    /// An entry already there is kept (and linked to) unless `replace_entry`.
    pub async fn publish(
        &self,
        blob: &Path,
        xet_hash: &str,
        size: u64,
        replace_entry: bool,
    ) -> Result<bool> {
        if !valid_hash(xet_hash) {
            return Ok(false);
        }
        let Some(prefix) = self.ensure_prefix(xet_hash)? else {
            return Ok(false);
        };
        let Some(line) = self.manifest_line(blob) else {
            return Ok(false);
        };
        let entry = self.entry(xet_hash);
        let lock_path = with_suffix(&entry, ".lock");
        let _guard = lock::lock(&lock_path, 0o666)
            .await
            .at("locking", &lock_path)?;
        let tmp = temp_link(blob, &entry)?;
        let mut moved = false;
        let result = (|| -> Result<()> {
            let existing = !replace_entry && usable(&entry, size);
            append_manifest(&with_suffix(&entry, ".refs"), &line)?;
            if !existing {
                std::fs::set_permissions(blob, std::fs::Permissions::from_mode(self.blob_mode()))
                    .at("setting the mode of", blob)?;
                let gid = std::fs::metadata(&prefix).at("reading", &prefix)?.gid();
                if std::fs::metadata(blob).at("reading", blob)?.gid() != gid {
                    let _ = std::os::unix::fs::chown(blob, None, Some(gid));
                }
                std::fs::rename(blob, &entry).at("moving into the store", &entry)?;
                moved = true;
            }
            if let Err(e) = std::fs::rename(&tmp, blob) {
                if moved {
                    std::fs::copy(&entry, blob).at("copying back", blob)?;
                    moved = false;
                }
                return Err(e).at("linking", blob);
            }
            Ok(())
        })();
        let _ = std::fs::remove_file(&tmp);
        match result {
            Ok(()) => Ok(true),
            Err(e) if !moved => {
                tracing::debug!(blob = %blob.display(), "not shared: {e}");
                Ok(false)
            }
            Err(e) => Err(CacheError::Restore {
                blob: blob.to_path_buf(),
                source: Box::new(e),
            }),
        }
    }
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn usable(entry: &Path, size: u64) -> bool {
    std::fs::symlink_metadata(entry).is_ok_and(|m| m.file_type().is_file() && m.len() == size)
        && std::fs::File::open(entry).is_ok()
}

fn repair_mode(dir: &Path, mode: u32) -> Result<()> {
    let cur = std::fs::symlink_metadata(dir).at("reading", dir)?.mode() & 0o7777;
    if cur != mode {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
            .at("setting the mode of", dir)?;
    }
    Ok(())
}

/// `.<name>.<8 hex>.shared` next to `blob`, pointing at `entry`.
fn temp_link(blob: &Path, entry: &Path) -> Result<PathBuf> {
    let parent = blob
        .parent()
        .ok_or_else(|| CacheError::BadName(format!("{} has no folder", blob.display())))?;
    let name = blob
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = parent.join(format!(".{name}.{}.shared", random_hex8()));
    std::os::unix::fs::symlink(relative_path(entry, parent), &tmp).at("linking", &tmp)?;
    Ok(tmp)
}

/// Appends one line and flushes it to disk before the symlink it describes appears.
fn append_manifest(path: &Path, line: &str) -> Result<()> {
    let mut f = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o666)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .at("opening", path)?;
    if !f.metadata().at("reading", path)?.is_file() {
        return Err(CacheError::NotAFile(path.to_path_buf()));
    }
    let _ = f.set_permissions(std::fs::Permissions::from_mode(0o666));
    // Readers take the manifest as a set; a blob published again (a corrupt entry replaced)
    // is not listed twice.
    if std::fs::read_to_string(path).is_ok_and(|m| m.lines().any(|l| l == line)) {
        return Ok(());
    }
    f.write_all(format!("{line}\n").as_bytes())
        .at("appending to", path)?;
    f.sync_all().at("syncing", path)?;
    Ok(())
}
