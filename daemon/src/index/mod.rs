//! The index: which Xet files this machine holds complete in the HF cache, their chunk
//! manifests, and where xorb chunks sit in them. It lives in sled under the state dir and
//! is derived data only: anything wrong with it is fixed by rebuilding it from the cache.

mod cache_events;
mod codec;
pub mod scan;
pub mod visibility;
pub mod watch;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use xet::XetHash;

use codec::{Reader, Writer};

/// Bumped whenever the stored layout changes; an index of another format is rebuilt.
const FORMAT: &[u8] = b"zest-index-2";

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("index database: {0}")]
    Db(#[from] sled::Error),
    #[error("index entry for {0} is unreadable")]
    Corrupt(String),
    #[error("the index is being reopened (its disk was full)")]
    Unavailable,
}

/// Errors that say nothing about the database's contents: another process holds it, no
/// space, no permission. Deleting the database then would lose what another daemon, or the
/// next start, needs; only a database that is broken is rebuilt.
fn not_a_broken_db(e: &sled::Error) -> bool {
    use std::io::ErrorKind as K;
    match e {
        sled::Error::Io(io) => {
            matches!(
                io.kind(),
                K::PermissionDenied | K::StorageFull | K::QuotaExceeded | K::ReadOnlyFilesystem
            ) || io.to_string().contains("could not acquire lock")
        }
        _ => false,
    }
}

/// One chunk of a file: its hash and size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunk {
    pub hash: XetHash,
    pub size: u32,
}

/// A complete file ready to serve: where it is and its verified manifest.
#[derive(Debug)]
pub struct HeldFile {
    pub hash: XetHash,
    pub path: PathBuf,
    pub chunks: Vec<Chunk>,
    /// Byte offset of each chunk, plus the file size at the end.
    pub offsets: Vec<u64>,
}

impl HeldFile {
    fn new(hash: XetHash, path: PathBuf, chunks: Vec<Chunk>) -> Self {
        let mut offsets = Vec::with_capacity(chunks.len() + 1);
        let mut at = 0u64;
        for c in &chunks {
            offsets.push(at);
            at += u64::from(c.size);
        }
        offsets.push(at);
        HeldFile {
            hash,
            path,
            chunks,
            offsets,
        }
    }
    pub fn size(&self) -> u64 {
        self.offsets.last().copied().unwrap_or(0)
    }
}

/// Where a stretch of a xorb's chunks can be read locally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XorbLocation {
    pub file: XetHash,
    /// File chunk index holding the xorb chunk the lookup asked for.
    pub file_chunk: u32,
}

#[derive(Clone)]
pub struct Index {
    slot: Arc<Slot>,
}

/// The open database, and what reopening it needs. A write that fails for lack of space
/// leaves sled refusing every later write, even once there is room again, so the index
/// notes that it is broken and [`Index::recover`] reopens it in place when the disk has
/// room; the data on disk is kept (sled recovers it from its log).
struct Slot {
    state_dir: PathBuf,
    /// None only while a reopen is under way or after one failed.
    current: RwLock<Option<Arc<Inner>>>,
    broken: AtomicBool,
}

struct Inner {
    db: sled::Db,
    /// file hash → size, paths
    files: sled::Tree,
    /// file hash → packed manifest (32-byte hash + u32 size per chunk)
    manifests: sled::Tree,
    /// real path → file hash, size, mtime (so unchanged files are not hashed again)
    paths: sled::Tree,
    /// chunk hash → file hash + chunk index
    /// xorb hash + first xorb chunk (BE) → file hash + file chunk + chunk count
    xorbs: sled::Tree,
    /// file hash → 0 public, 1 private or gated (what pulls learned from the Hub)
    visibility: sled::Tree,
    /// real path → size, mtime of a file found not to hash as indexed (see `mark_wrong`)
    wrong: sled::Tree,
    /// Manifests recently served, decoded once.
    hot: Mutex<HashMap<XetHash, Arc<HeldFile>>>,
    /// Files that left the index lately, and when: a peer asking for one hears it is
    /// gone (no lie) rather than that it was never here.
    left: Mutex<HashMap<XetHash, std::time::Instant>>,
}

/// Free space the state dir's disk needs before a broken index is reopened.
const MIN_FREE_TO_REOPEN: u64 = 8 << 20;

/// How long a file that left is remembered as having been here.
const REMEMBER_LEFT: std::time::Duration = std::time::Duration::from_secs(600);

/// sled's page cache may grow to 1 GiB unless told otherwise, as the index does: an HF
/// cache of very many files would cost the daemon that much memory. Lookups go mostly
/// through `hot` and the OS page cache, so a small one costs little speed.
fn db_config(dir: &Path) -> sled::Config {
    sled::Config::new().path(dir).cache_capacity(16 << 20)
}

/// What `paths` remembers about a file on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub size: u64,
    pub mtime_ns: i128,
}

impl Stamp {
    pub fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            size: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        }
    }
}

impl Index {
    /// Opens the index under `state_dir`, starting afresh when it is unreadable or of
    /// another format. A fresh index is empty until the next scan fills it.
    pub fn open(state_dir: &Path) -> Result<Self, IndexError> {
        let dir = state_dir.join("index");
        // Visibility is not derived from the cache (it came from the Hub), so it lives
        // apart from the index and survives a rebuild. If it is unreadable it starts empty,
        // which makes everything fleet-only until pulled again: the safe side.
        let vis_dir = state_dir.join("visibility");
        let vis = match db_config(&vis_dir).open() {
            Ok(db) => db,
            Err(e) if not_a_broken_db(&e) => return Err(e.into()),
            Err(e) => {
                tracing::warn!("visibility records unreadable ({e}); starting afresh");
                let _ = std::fs::remove_dir_all(&vis_dir);
                db_config(&vis_dir).open()?
            }
        };
        let visibility = vis.open_tree("visibility")?;
        match Self::try_open(&dir, &visibility) {
            Ok(Some(ix)) => return Ok(ix),
            Ok(None) => tracing::info!("index is of an older format; rebuilding it"),
            Err(IndexError::Db(e)) if not_a_broken_db(&e) => return Err(IndexError::Db(e)),
            Err(e) => tracing::warn!("index unreadable ({e}); rebuilding it from the cache"),
        }
        let _ = std::fs::remove_dir_all(&dir);
        let ix = Self::try_open(&dir, &visibility)?
            .ok_or_else(|| IndexError::Corrupt("format".into()))?;
        Ok(ix)
    }

    fn try_open(dir: &Path, visibility: &sled::Tree) -> Result<Option<Self>, IndexError> {
        let db = db_config(dir).open()?;
        let meta = db.open_tree("meta")?;
        match meta.get("format")? {
            Some(f) if f.as_ref() == FORMAT => {}
            Some(_) => return Ok(None),
            None => {
                if !db
                    .tree_names()
                    .iter()
                    .all(|n| n.as_ref() == b"meta" || n.as_ref() == b"__sled__default")
                {
                    return Ok(None);
                }
                meta.insert("format", FORMAT)?;
            }
        }
        // Earlier builds kept a chunk -> file tree that nothing read: 16,000 random inserts
        // per GiB pulled (7 % of zestd's CPU in a cold pull). Its space is given back.
        db.drop_tree("chunks")?;
        let inner = Inner {
            files: db.open_tree("files")?,
            manifests: db.open_tree("manifests")?,
            paths: db.open_tree("paths")?,
            xorbs: db.open_tree("xorbs")?,
            wrong: db.open_tree("wrong")?,
            visibility: visibility.clone(),
            hot: Mutex::new(HashMap::new()),
            left: Mutex::new(HashMap::new()),
            db,
        };
        Ok(Some(Index {
            slot: Arc::new(Slot {
                state_dir: dir.parent().map(Path::to_path_buf).unwrap_or_default(),
                current: RwLock::new(Some(Arc::new(inner))),
                broken: AtomicBool::new(false),
            }),
        }))
    }

    /// The open database, if any (none only while a reopen is under way or failed). A
    /// caller holding one must not take a second: [`Self::recover`] waits for every holder.
    fn cur(&self) -> Option<Arc<Inner>> {
        self.slot.current.read().ok()?.clone()
    }

    /// Runs a write; an I/O error from sled (a full disk, mostly) marks the index broken,
    /// for [`Self::recover`] to reopen once there is room.
    fn write<T>(&self, f: impl FnOnce(&Inner) -> Result<T, IndexError>) -> Result<T, IndexError> {
        let inner = self.cur().ok_or(IndexError::Unavailable)?;
        let r = f(&inner);
        if let Err(IndexError::Db(sled::Error::Io(e))) = &r {
            self.mark_broken(e);
        }
        r
    }

    fn mark_broken(&self, e: &std::io::Error) {
        if !self.slot.broken.swap(true, Ordering::SeqCst) {
            tracing::warn!(
                state_dir = %self.slot.state_dir.display(),
                "the index cannot be written ({e}); it keeps serving what it holds and is \
                 reopened once its disk has room"
            );
        }
    }

    /// Whether a write failed and the index waits to be reopened.
    pub fn is_broken(&self) -> bool {
        self.slot.broken.load(Ordering::SeqCst)
    }

    /// Reopens a broken index in place once the state dir's disk has room again. True if
    /// it did (the caller then reconciles it with the cache: writes since the failure were
    /// lost). Blocking.
    pub fn recover(&self) -> bool {
        if !self.is_broken() || free_bytes(&self.slot.state_dir) < MIN_FREE_TO_REOPEN {
            return false;
        }
        let Ok(mut slot) = self.slot.current.write() else {
            return false;
        };
        if let Some(old) = slot.take() {
            // sled's file lock goes with the last handle: wait for the calls under way.
            let start = std::time::Instant::now();
            while Arc::strong_count(&old) > 1 && start.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(10));
            }
            drop(old);
        }
        match Index::open(&self.slot.state_dir) {
            Ok(fresh) => {
                let inner = fresh.slot.current.write().ok().and_then(|mut c| c.take());
                *slot = inner;
                let ok = slot.is_some();
                if ok {
                    self.slot.broken.store(false, Ordering::SeqCst);
                    tracing::info!("the index's disk has room again: index reopened");
                }
                ok
            }
            Err(e) => {
                tracing::warn!("reopening the index failed ({e}); trying again later");
                false
            }
        }
    }

    pub fn file_count(&self) -> u64 {
        self.cur().map_or(0, |i| i.files.len() as u64)
    }

    /// The stamp recorded for `path`, if it is indexed.
    pub fn stamp(&self, path: &Path) -> Option<(XetHash, Stamp)> {
        let v = self.cur()?.paths.get(path_key(path)).ok()??;
        let mut r = Reader::new(&v);
        Some((
            r.hash()?,
            Stamp {
                size: r.u64()?,
                mtime_ns: r.i128()?,
            },
        ))
    }

    /// Every indexed path.
    pub fn paths(&self) -> Vec<PathBuf> {
        let Some(inner) = self.cur() else {
            return Vec::new();
        };
        inner
            .paths
            .iter()
            .keys()
            .filter_map(|k| k.ok())
            .filter_map(|k| String::from_utf8(k.to_vec()).ok())
            .map(PathBuf::from)
            .collect()
    }

    /// Records that `path` holds the complete file `hash` with this verified manifest.
    pub fn insert(
        &self,
        hash: XetHash,
        path: &Path,
        stamp: Stamp,
        chunks: &[Chunk],
    ) -> Result<(), IndexError> {
        let mut paths = self.file_paths(&hash);
        if !paths.iter().any(|p| p == path) {
            paths.push(path.to_path_buf());
        }
        self.write(|inner| Self::insert_in(inner, hash, path, stamp, chunks, &paths))
    }

    fn insert_in(
        inner: &Inner,
        hash: XetHash,
        path: &Path,
        stamp: Stamp,
        chunks: &[Chunk],
        paths: &[PathBuf],
    ) -> Result<(), IndexError> {
        let key = hash.as_bytes();
        if inner.manifests.get(key)?.is_none() {
            let mut w = Writer::with_capacity(chunks.len() * 36);
            for c in chunks {
                w.hash(&c.hash);
                w.u32(c.size);
            }
            inner.manifests.insert(key, w.into_vec())?;
        }
        inner.files.insert(key, encode_paths(stamp.size, paths))?;
        let mut w = Writer::with_capacity(56);
        w.hash(&hash);
        w.u64(stamp.size);
        w.i128(stamp.mtime_ns);
        inner.paths.insert(path_key(path), w.into_vec())?;
        Ok(())
    }

    /// Records that the file at `path` no longer hashes as indexed (a chunk read to serve
    /// it did not match): it leaves the index at once, and until it changes on disk no pull
    /// takes it for the file it was.
    pub fn mark_wrong(&self, path: &Path) -> Result<(), IndexError> {
        if let Ok(meta) = std::fs::metadata(path) {
            let stamp = Stamp::of(&meta);
            let mut w = Writer::with_capacity(24);
            w.u64(stamp.size);
            w.i128(stamp.mtime_ns);
            self.write(|inner| Ok(inner.wrong.insert(path_key(path), w.into_vec())?))?;
        }
        self.remove_path(path)
    }

    /// Whether `path` (or the file it links to) is one zest found wrong and that has not
    /// changed since.
    pub fn found_wrong(&self, path: &Path) -> bool {
        let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let Some(inner) = self.cur() else {
            return false;
        };
        let Ok(Some(v)) = inner.wrong.get(path_key(&real)) else {
            return false;
        };
        let mut r = Reader::new(&v);
        let recorded = r
            .u64()
            .zip(r.i128())
            .map(|(size, mtime_ns)| Stamp { size, mtime_ns });
        let now = std::fs::metadata(&real).ok().map(|m| Stamp::of(&m));
        if recorded.is_some() && recorded == now {
            return true;
        }
        // Replaced or gone since: the record no longer says anything.
        let _ = self.write(|inner| Ok(inner.wrong.remove(path_key(&real))?));
        false
    }

    /// Whether `hash` left the index in the last ten minutes and is not back.
    pub fn recently_left(&self, hash: &XetHash) -> bool {
        !self.contains(hash)
            && self.cur().is_some_and(|i| {
                i.left
                    .lock()
                    .is_ok_and(|l| l.get(hash).is_some_and(|t| t.elapsed() < REMEMBER_LEFT))
            })
    }

    /// Forgets `path`; the file leaves the index when no other path holds it.
    pub fn remove_path(&self, path: &Path) -> Result<(), IndexError> {
        let Some((hash, _)) = self.stamp(path) else {
            return Ok(());
        };
        let (size, mut paths) = self.file_entry(&hash).unwrap_or_default();
        paths.retain(|p| p != path);
        self.write(|inner| Self::remove_path_in(inner, path, hash, &paths, size))
    }

    fn remove_path_in(
        inner: &Inner,
        path: &Path,
        hash: XetHash,
        paths: &[PathBuf],
        size: u64,
    ) -> Result<(), IndexError> {
        inner.paths.remove(path_key(path))?;
        if let Ok(mut hot) = inner.hot.lock() {
            hot.remove(&hash);
        }
        if !paths.is_empty() {
            inner
                .files
                .insert(hash.as_bytes(), encode_paths(size, paths))?;
            return Ok(());
        }
        inner.files.remove(hash.as_bytes())?;
        if let Ok(mut left) = inner.left.lock() {
            let now = std::time::Instant::now();
            left.retain(|_, t| now.duration_since(*t) < REMEMBER_LEFT);
            left.insert(hash, now);
        }
        inner.manifests.remove(hash.as_bytes())?;
        let stale: Vec<sled::IVec> = inner
            .xorbs
            .iter()
            .filter_map(|kv| kv.ok())
            .filter(|(_, v)| v.get(..32) == Some(hash.as_bytes().as_slice()))
            .map(|(k, _)| k)
            .collect();
        for k in stale {
            inner.xorbs.remove(k)?;
        }
        Ok(())
    }

    fn file_paths(&self, hash: &XetHash) -> Vec<PathBuf> {
        self.cur()
            .map(|inner| paths_in(&inner, hash))
            .unwrap_or_default()
    }

    /// The file's size and the paths holding it, from one lookup.
    fn file_entry(&self, hash: &XetHash) -> Option<(u64, Vec<PathBuf>)> {
        let v = self.cur()?.files.get(hash.as_bytes()).ok()??;
        decode_paths(&v)
    }

    /// Records what a pull learned from the Hub: whether the repo it took `hash` from
    /// needs a token. Public wins: bytes anyone can download are public wherever else
    /// they also appear.
    pub fn note_visibility(&self, hash: &XetHash, private: bool) -> Result<(), IndexError> {
        self.write(|inner| {
            let t = &inner.visibility;
            if private {
                let none = None as Option<&[u8]>;
                let _ = t.compare_and_swap(hash.as_bytes(), none, Some(&[1u8][..]))?;
            } else {
                t.insert(hash.as_bytes(), &[0u8])?;
            }
            Ok(())
        })
    }

    /// Whether `hash` is known to be public. Files no pull vouched for (put in the cache
    /// by other tools) count as private: they stay inside the fleet.
    pub fn is_public(&self, hash: &XetHash) -> bool {
        self.cur().is_some_and(
            |i| matches!(i.visibility.get(hash.as_bytes()), Ok(Some(v)) if v.as_ref() == [0]),
        )
    }

    /// Whether anything vouched for `hash` either way (a pull, or the Hub asked later).
    pub fn visibility_known(&self, hash: &XetHash) -> bool {
        self.cur()
            .is_some_and(|i| matches!(i.visibility.get(hash.as_bytes()), Ok(Some(_))))
    }

    /// Where `hash` is held in the cache.
    pub fn paths_of(&self, hash: &XetHash) -> Vec<PathBuf> {
        self.file_paths(hash)
    }

    /// Every complete file held: its hash and size.
    pub fn files(&self) -> Vec<(XetHash, u64)> {
        let Some(inner) = self.cur() else {
            return Vec::new();
        };
        inner
            .files
            .iter()
            .filter_map(|kv| kv.ok())
            .filter_map(|(k, v)| Some((XetHash::from_slice(&k)?, decode_paths(&v)?.0)))
            .collect()
    }

    pub fn contains(&self, hash: &XetHash) -> bool {
        self.cur()
            .is_some_and(|i| i.files.contains_key(hash.as_bytes()).unwrap_or(false))
    }

    /// The complete file `hash` with its manifest, if some indexed path still holds it.
    pub fn held(&self, hash: &XetHash) -> Option<Arc<HeldFile>> {
        let inner = self.cur()?;
        if let Ok(hot) = inner.hot.lock()
            && let Some(h) = hot.get(hash)
        {
            return Some(h.clone());
        }
        let m = inner.manifests.get(hash.as_bytes()).ok()??;
        let chunks = decode_manifest(&m)?;
        // Not `self.file_paths`: a second `cur()` while holding one could wait on a reopen
        // that waits for this call to let go.
        let path = paths_in(&inner, hash)
            .into_iter()
            .find(|p| std::fs::metadata(p).is_ok())?;
        let held = Arc::new(HeldFile::new(*hash, path, chunks));
        if let Ok(mut hot) = inner.hot.lock() {
            if hot.len() >= 64 {
                hot.clear();
            }
            hot.insert(*hash, held.clone());
        }
        Some(held)
    }

    /// Records, from a trusted reconstruction, that xorb chunks `[start, end)` are the
    /// file's chunks from `file_chunk` on.
    pub fn record_xorb_range(
        &self,
        xorb: &XetHash,
        start: u32,
        end: u32,
        file: &XetHash,
        file_chunk: u32,
    ) -> Result<(), IndexError> {
        let mut k = Writer::with_capacity(36);
        k.hash(xorb);
        k.u32_be(start);
        let mut v = Writer::with_capacity(40);
        v.hash(file);
        v.u32(file_chunk);
        v.u32(end);
        self.write(|inner| Ok(inner.xorbs.insert(k.into_vec(), v.into_vec()).map(|_| ())?))
    }

    /// A local file holding xorb chunks `[start, end)`, and the file chunk where `start` is.
    pub fn xorb_range(&self, xorb: &XetHash, start: u32, end: u32) -> Option<XorbLocation> {
        let mut lo = Writer::with_capacity(36);
        lo.hash(xorb);
        lo.u32_be(0);
        let mut hi = Writer::with_capacity(36);
        hi.hash(xorb);
        hi.u32_be(start);
        let inner = self.cur()?;
        for kv in inner.xorbs.range(lo.into_vec()..=hi.into_vec()).rev() {
            let (k, v) = kv.ok()?;
            let first = u32::from_be_bytes(k.get(32..36)?.try_into().ok()?);
            let mut r = Reader::new(&v);
            let (file, file_chunk, last) = (r.hash()?, r.u32()?, r.u32()?);
            if first <= start
                && end <= last
                && inner.files.contains_key(file.as_bytes()).unwrap_or(false)
            {
                return Some(XorbLocation {
                    file,
                    file_chunk: file_chunk + (start - first),
                });
            }
        }
        None
    }

    pub fn flush(&self) {
        let Some(inner) = self.cur() else { return };
        for r in [inner.db.flush(), inner.visibility.flush()] {
            if let Err(sled::Error::Io(e)) = r {
                self.mark_broken(&e);
            }
        }
    }
}

fn paths_in(inner: &Inner, hash: &XetHash) -> Vec<PathBuf> {
    let Ok(Some(v)) = inner.files.get(hash.as_bytes()) else {
        return Vec::new();
    };
    decode_paths(&v).map(|(_, p)| p).unwrap_or_default()
}

/// Bytes free to unprivileged writers on the disk holding `dir` (0 if unknown).
fn free_bytes(dir: &Path) -> u64 {
    rustix::fs::statvfs(dir)
        .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
        .unwrap_or(0)
}

fn path_key(p: &Path) -> Vec<u8> {
    p.to_string_lossy().into_owned().into_bytes()
}

fn encode_paths(size: u64, paths: &[PathBuf]) -> Vec<u8> {
    let mut w = Writer::with_capacity(64);
    w.u64(size);
    w.u32(paths.len() as u32);
    for p in paths {
        w.bytes(&path_key(p));
    }
    w.into_vec()
}

pub fn decode_paths(v: &[u8]) -> Option<(u64, Vec<PathBuf>)> {
    let mut r = Reader::new(v);
    let size = r.u64()?;
    let n = r.u32()?;
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(PathBuf::from(String::from_utf8(r.bytes()?.to_vec()).ok()?));
    }
    Some((size, out))
}

pub fn decode_manifest(v: &[u8]) -> Option<Vec<Chunk>> {
    if !v.len().is_multiple_of(36) {
        return None;
    }
    let mut r = Reader::new(v);
    let mut out = Vec::with_capacity(v.len() / 36);
    while !r.is_empty() {
        out.push(Chunk {
            hash: r.hash()?,
            size: r.u32()?,
        });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(n: u8) -> Vec<Chunk> {
        (0..n)
            .map(|i| Chunk {
                hash: XetHash::from_bytes([i; 32]),
                size: 100 + u32::from(i),
            })
            .collect()
    }

    #[test]
    fn insert_lookup_remove() {
        let dir = tempdir();
        let ix = Index::open(&dir).unwrap();
        let f = XetHash::from_bytes([9; 32]);
        let file = dir.join("blob");
        std::fs::write(&file, b"x").unwrap();
        let stamp = Stamp::of(&std::fs::metadata(&file).unwrap());
        ix.insert(f, &file, stamp, &chunks(3)).unwrap();
        ix.record_xorb_range(&XetHash::from_bytes([7; 32]), 10, 13, &f, 0)
            .unwrap();
        let held = ix.held(&f).unwrap();
        assert_eq!(held.chunks.len(), 3);
        assert_eq!(held.offsets, vec![0, 100, 201, 303]);
        assert_eq!(
            ix.xorb_range(&XetHash::from_bytes([7; 32]), 11, 13),
            Some(XorbLocation {
                file: f,
                file_chunk: 1
            })
        );
        assert_eq!(ix.xorb_range(&XetHash::from_bytes([7; 32]), 11, 14), None);
        assert_eq!(ix.stamp(&file).map(|s| s.0), Some(f));
        ix.remove_path(&file).unwrap();
        assert!(ix.held(&f).is_none());
        assert_eq!(ix.xorb_range(&XetHash::from_bytes([7; 32]), 11, 13), None);
        assert_eq!(ix.file_count(), 0);
    }

    #[test]
    fn public_wins_and_unknown_is_private() {
        let dir = tempdir();
        let ix = Index::open(&dir).unwrap();
        let f = XetHash::from_bytes([5; 32]);
        let file = dir.join("blob");
        std::fs::write(&file, b"x").unwrap();
        let stamp = Stamp::of(&std::fs::metadata(&file).unwrap());
        ix.insert(f, &file, stamp, &chunks(1)).unwrap();
        assert!(!ix.is_public(&f), "unknown: fleet only");
        ix.note_visibility(&f, true).unwrap();
        assert!(!ix.is_public(&f));
        ix.note_visibility(&f, false).unwrap();
        assert!(ix.is_public(&f), "the same bytes are public elsewhere");
        ix.note_visibility(&f, true).unwrap();
        assert!(ix.is_public(&f), "public wins");
        assert_eq!(ix.files(), vec![(f, 1)]);
    }

    #[test]
    fn garbage_index_is_rebuilt() {
        let dir = tempdir();
        std::fs::create_dir_all(dir.join("index")).unwrap();
        std::fs::write(dir.join("index/db"), b"this is not a sled database").unwrap();
        std::fs::write(dir.join("index/conf"), b"garbage\x00\xff").unwrap();
        let ix = Index::open(&dir).unwrap();
        assert_eq!(ix.file_count(), 0);
    }

    #[test]
    fn other_format_is_rebuilt() {
        let dir = tempdir();
        {
            let db = sled::open(dir.join("index")).unwrap();
            db.open_tree("meta")
                .unwrap()
                .insert("format", b"zest-index-0".as_slice())
                .unwrap();
            db.open_tree("files").unwrap().insert(b"k", b"v").unwrap();
            db.flush().unwrap();
        }
        let ix = Index::open(&dir).unwrap();
        assert_eq!(ix.file_count(), 0);
    }

    fn tempdir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "zest-index-test-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
