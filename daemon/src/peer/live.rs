//! Files being downloaded right now, shared between the download that fills them and the
//! peer server that serves their verified chunks onward (serve while downloading).

use std::collections::HashMap;
use std::fs::File;
use std::sync::{Arc, Mutex};

use xet::XetHash;

use crate::sync::lock;

/// A chunk on disk: its hash, size and offset in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placed {
    pub hash: XetHash,
    pub size: u32,
    pub offset: u64,
}

pub struct LiveFile {
    pub hash: XetHash,
    /// An open handle, so serving survives the rename into the cache.
    pub file: Arc<File>,
    /// Content of a private or gated repo: served to fleet peers only.
    pub private: bool,
    state: Mutex<LiveState>,
    /// Bumped whenever a chunk lands or is proven, for those waiting on chunks.
    changes: tokio::sync::watch::Sender<u64>,
    /// Bumped whenever chunks are proven (or the download ends), for those waiting on proofs:
    /// a xorb's worth at a time, not a wake-up per chunk that lands.
    proofs: tokio::sync::watch::Sender<u64>,
}

struct LiveState {
    chunks: Vec<Option<Placed>>,
    /// Chunks whose hash is proven by a hash from the Hub or CAS (the file's Xet hash, or
    /// a xorb hash): only these may be handed to a local client.
    proven: Vec<bool>,
    /// Chunk ranges being fetched from the origin now (one entry per fetch).
    fetching: Vec<(u32, u32)>,
}

impl LiveFile {
    pub fn new(hash: XetHash, file: Arc<File>, total_chunks: usize) -> Self {
        Self::with_visibility(hash, file, total_chunks, false)
    }

    pub fn with_visibility(
        hash: XetHash,
        file: Arc<File>,
        total_chunks: usize,
        private: bool,
    ) -> Self {
        LiveFile {
            hash,
            file,
            private,
            state: Mutex::new(LiveState {
                chunks: vec![None; total_chunks],
                proven: vec![false; total_chunks],
                fetching: Vec::new(),
            }),
            changes: tokio::sync::watch::channel(0).0,
            proofs: tokio::sync::watch::channel(0).0,
        }
    }

    /// Marks chunks proven, if they are placed with the proven hash.
    pub fn prove(&self, proven: impl IntoIterator<Item = (u32, XetHash)>) {
        let mut st = lock(&self.state);
        let mut any = false;
        for (i, h) in proven {
            let i = i as usize;
            if st
                .chunks
                .get(i)
                .copied()
                .flatten()
                .is_some_and(|p| p.hash == h)
                && let Some(slot) = st.proven.get_mut(i)
                && !*slot
            {
                *slot = true;
                any = true;
            }
        }
        drop(st);
        if any {
            self.changes.send_modify(|v| *v += 1);
            self.proofs.send_modify(|v| *v += 1);
        }
    }

    /// The proven chunks from `start` on, consecutive, before `end` and within `max_bytes`
    /// (at least one if `start` is proven): one contiguous run of the file.
    pub fn proven_run(&self, start: u32, end: u32, max_bytes: u64) -> Vec<Placed> {
        let st = lock(&self.state);
        let mut run = Vec::new();
        let mut bytes = 0u64;
        for i in start as usize..(end as usize).min(st.chunks.len()) {
            let (Some(true), Some(Some(p))) = (st.proven.get(i), st.chunks.get(i)) else {
                break;
            };
            if !run.is_empty() && bytes + u64::from(p.size) > max_bytes {
                break;
            }
            bytes += u64::from(p.size);
            run.push(*p);
        }
        run
    }

    /// Wakes when chunks are proven or the download ends.
    pub fn subscribe_proofs(&self) -> tokio::sync::watch::Receiver<u64> {
        self.proofs.subscribe()
    }

    /// A chunk that is placed and proven.
    pub fn proven(&self, index: u32) -> Option<Placed> {
        let st = lock(&self.state);
        let i = index as usize;
        if st.proven.get(i).copied().unwrap_or(false) {
            st.chunks.get(i).copied().flatten()
        } else {
            None
        }
    }

    /// Wakes when chunks land or are proven.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Tells waiters to look again (the download ended, one way or the other).
    pub fn poke(&self) {
        self.changes.send_modify(|v| *v += 1);
        self.proofs.send_modify(|v| *v += 1);
    }

    pub fn total_chunks(&self) -> u32 {
        lock(&self.state).chunks.len() as u32
    }

    /// Records a chunk as written and verified (its hash came from the CAS's bytes or
    /// matched a trusted manifest). True if the slot was empty.
    pub fn set(&self, index: u32, placed: Placed) -> bool {
        let new = match lock(&self.state).chunks.get_mut(index as usize) {
            Some(slot) => slot.replace(placed).is_none(),
            None => false,
        };
        if new {
            self.changes.send_modify(|v| *v += 1);
        }
        new
    }

    pub fn get(&self, index: u32) -> Option<Placed> {
        lock(&self.state)
            .chunks
            .get(index as usize)
            .copied()
            .flatten()
    }

    pub fn has(&self, index: u32) -> bool {
        self.get(index).is_some()
    }

    /// The ranges of `[start, end)` not on disk yet.
    pub fn missing(&self, start: u32, end: u32) -> Vec<(u32, u32)> {
        let s = lock(&self.state);
        let slots = s
            .chunks
            .get(start as usize..end as usize)
            .unwrap_or_default();
        super::wire::ranges_of(slots.iter().map(|c| c.is_none()))
            .into_iter()
            .map(|(a, b)| (a + start, b + start))
            .collect()
    }

    pub fn held_ranges(&self) -> Vec<(u32, u32)> {
        super::wire::ranges_of(lock(&self.state).chunks.iter().map(|c| c.is_some()))
    }

    /// Which chunks are on disk, as a bitmap.
    pub fn held_bitmap(&self) -> Vec<bool> {
        lock(&self.state)
            .chunks
            .iter()
            .map(Option::is_some)
            .collect()
    }

    /// Every chunk, if all are present.
    pub fn all(&self) -> Option<Vec<Placed>> {
        lock(&self.state).chunks.iter().copied().collect()
    }

    /// Copies of every slot.
    pub fn slots(&self) -> Vec<Option<Placed>> {
        lock(&self.state).chunks.clone()
    }

    pub fn start_fetching(&self, range: (u32, u32)) {
        lock(&self.state).fetching.push(range);
    }

    pub fn stop_fetching(&self, range: (u32, u32)) {
        let mut s = lock(&self.state);
        if let Some(i) = s.fetching.iter().position(|r| *r == range) {
            s.fetching.remove(i);
        }
    }

    /// Sorted, merged ranges in fetch.
    pub fn fetching_ranges(&self) -> Vec<(u32, u32)> {
        super::wire::merge(lock(&self.state).fetching.clone())
    }
}

/// The registry of files in progress, by Xet hash.
#[derive(Default)]
pub struct LiveFiles {
    map: Mutex<HashMap<XetHash, Arc<LiveFile>>>,
}

impl LiveFiles {
    pub fn get(&self, hash: &XetHash) -> Option<Arc<LiveFile>> {
        lock(&self.map).get(hash).cloned()
    }

    /// Registers `file`; it stays served until the guard drops.
    pub fn register(self: &Arc<Self>, file: Arc<LiveFile>) -> LiveGuard {
        lock(&self.map).insert(file.hash, file.clone());
        LiveGuard {
            registry: self.clone(),
            file,
        }
    }
}

pub struct LiveGuard {
    registry: Arc<LiveFiles>,
    pub file: Arc<LiveFile>,
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        let mut map = lock(&self.registry.map);
        if map
            .get(&self.file.hash)
            .is_some_and(|f| Arc::ptr_eq(f, &self.file))
        {
            map.remove(&self.file.hash);
        }
    }
}
