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
    /// Bumped whenever chunks are proven (or the download ends), for those waiting on proofs:
    /// a xorb's worth at a time, not a wake-up per chunk that lands.
    proofs: tokio::sync::watch::Sender<u64>,
    /// When origin bytes for this file last arrived, and when the file last progressed
    /// anywhere this node knows of (the planner's view): what `quiet_ms` tells peers.
    clocks: Mutex<Clocks>,
    /// Bumped whenever what peers are told changes (held or fetching ranges, or the end),
    /// for the peers watching this file.
    changes: tokio::sync::watch::Sender<u64>,
}

struct LiveState {
    chunks: Vec<Option<Placed>>,
    /// The indices of `chunks` that are placed, as sorted merged ranges: kept as chunks
    /// land, so telling a peer costs the ranges, not a pass over every chunk.
    held: Vec<(u32, u32)>,
    /// Chunks whose hash is proven by a hash from the Hub or CAS (the file's Xet hash, or
    /// a xorb hash): only these may be handed to a local client.
    proven: Vec<bool>,
    /// Hash and size of chunks proven by a hash from the Hub or CAS, held or not: what a
    /// `manifest` answers for chunks not here yet (docs/PROTOCOL.md §4.2), so a xorb's
    /// proof reaches peers a hop ahead of its bytes. Empty until the first proof.
    known: Vec<Option<(XetHash, u32)>>,
    /// Chunk ranges being fetched from the origin now (one entry per fetch).
    fetching: Vec<(u32, u32)>,
    /// Origin claims this node passes on to its watchers (docs/PROTOCOL.md §6), as the
    /// download's planner last put them.
    relayed: Vec<zest_proto::peer::RelayedClaim>,
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
                held: Vec::new(),
                proven: vec![false; total_chunks],
                known: Vec::new(),
                fetching: Vec::new(),
                relayed: Vec::new(),
            }),
            proofs: tokio::sync::watch::channel(0).0,
            changes: tokio::sync::watch::channel(0).0,
            clocks: Mutex::default(),
        }
    }

    /// Origin bytes for this file arrived just now (before any chunk of them can be shown:
    /// a xorb is proven whole).
    pub fn note_origin_bytes(&self) {
        lock(&self.clocks).origin_bytes = Some(std::time::Instant::now());
    }

    pub fn origin_bytes_at(&self) -> Option<std::time::Instant> {
        lock(&self.clocks).origin_bytes
    }

    /// The download's planner last saw the file progress at `at`.
    pub fn note_progressed(&self, at: std::time::Instant) {
        let mut c = lock(&self.clocks);
        c.progressed = Some(c.progressed.map_or(at, |p| p.max(at)));
    }

    /// How long since the file last progressed, as far as this node knows; None before
    /// its download's planner has looked.
    pub fn quiet(&self) -> Option<std::time::Duration> {
        lock(&self.clocks).progressed.map(|t| t.elapsed())
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
            self.proofs.send_modify(|v| *v += 1);
        }
    }

    /// Remembers proven chunk hashes and sizes, held or not, for [`LiveFile::claim`].
    pub fn know(&self, proven: impl IntoIterator<Item = (u32, XetHash, u32)>) {
        let mut st = lock(&self.state);
        let total = st.chunks.len();
        for (i, hash, size) in proven {
            let i = i as usize;
            if i >= total {
                continue;
            }
            if st.known.is_empty() {
                st.known = vec![None; total];
            }
            st.known[i] = Some((hash, size));
        }
    }

    /// What this node says chunk `index` is: the chunk it holds, else the proven hash and
    /// size of one it does not hold yet.
    pub fn claim(&self, index: u32) -> Option<(XetHash, u32)> {
        let st = lock(&self.state);
        let i = index as usize;
        match st.chunks.get(i).copied().flatten() {
            Some(p) => Some((p.hash, p.size)),
            None => st.known.get(i).copied().flatten(),
        }
    }

    /// The proven chunks from `start` on, consecutive and before `end`, as [`take_run`]
    /// bounds them: one contiguous run of the file.
    pub fn proven_run(&self, start: u32, end: u32, bound: RunBound) -> Vec<Placed> {
        let st = lock(&self.state);
        let end = (end as usize).min(st.chunks.len());
        let proven =
            (start as usize..end).map_while(|i| match (st.proven.get(i), st.chunks.get(i)) {
                (Some(true), Some(Some(p))) => Some(*p),
                _ => None,
            });
        take_run(proven, bound)
    }

    /// Wakes when chunks are proven or the download ends.
    pub fn subscribe_proofs(&self) -> tokio::sync::watch::Receiver<u64> {
        self.proofs.subscribe()
    }

    /// Tells waiters to look again (the download ended, one way or the other).
    pub fn poke(&self) {
        self.proofs.send_modify(|v| *v += 1);
        self.changed();
    }

    /// Wakes when what peers are told of this file changes, or the download ends.
    pub fn subscribe_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Called for every chunk that lands: nothing to do while nobody watches (a watch
    /// reads the state afresh when it starts).
    fn changed(&self) {
        if self.changes.receiver_count() > 0 {
            self.changes.send_modify(|v| *v = v.wrapping_add(1));
        }
    }

    pub fn total_chunks(&self) -> u32 {
        lock(&self.state).chunks.len() as u32
    }

    /// Records a chunk as written and verified (its hash came from the CAS's bytes or
    /// matched a trusted manifest). True if the slot was empty.
    pub fn set(&self, index: u32, placed: Placed) -> bool {
        let mut st = lock(&self.state);
        let new = match st.chunks.get_mut(index as usize) {
            Some(slot) => slot.replace(placed).is_none(),
            None => false,
        };
        if new {
            super::wire::insert(&mut st.held, index);
        }
        drop(st);
        if new {
            self.changed();
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
        lock(&self.state).held.clone()
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
        self.changed();
    }

    pub fn stop_fetching(&self, range: (u32, u32)) {
        let mut s = lock(&self.state);
        if let Some(i) = s.fetching.iter().position(|r| *r == range) {
            s.fetching.remove(i);
            drop(s);
            self.changed();
        }
    }

    /// Sorted, merged ranges in fetch.
    pub fn fetching_ranges(&self) -> Vec<(u32, u32)> {
        super::wire::merge(lock(&self.state).fetching.clone())
    }

    /// What watchers are told of claims elsewhere from now on; they hear at once when it
    /// changed. True if it did.
    pub fn set_relayed(&self, relayed: Vec<zest_proto::peer::RelayedClaim>) -> bool {
        let mut s = lock(&self.state);
        if s.relayed == relayed {
            return false;
        }
        s.relayed = relayed;
        drop(s);
        self.changed();
        true
    }

    pub fn relayed(&self) -> Vec<zest_proto::peer::RelayedClaim> {
        lock(&self.state).relayed.clone()
    }
}

#[derive(Default)]
struct Clocks {
    origin_bytes: Option<std::time::Instant>,
    progressed: Option<std::time::Instant>,
}

/// How far one read of consecutive chunks for a client goes.
#[derive(Clone, Copy, Debug)]
pub struct RunBound {
    /// Bytes at most (the first chunk is always taken).
    pub max_bytes: u64,
    /// No chunk that starts past this file offset: a ranged read takes no more than it needs.
    pub last_byte: u64,
}

/// The leading chunks of `chunks` within `bound`.
pub fn take_run(chunks: impl Iterator<Item = Placed>, bound: RunBound) -> Vec<Placed> {
    let mut run = Vec::new();
    let mut bytes = 0u64;
    for p in chunks {
        if !run.is_empty()
            && (bytes + u64::from(p.size) > bound.max_bytes || p.offset > bound.last_byte)
        {
            break;
        }
        bytes += u64::from(p.size);
        run.push(p);
    }
    run
}

/// The registry of files in progress, by Xet hash.
pub struct LiveFiles {
    map: Mutex<HashMap<XetHash, Arc<LiveFile>>>,
    /// Bumped when a file is registered or leaves, for the peers watching files.
    registry: tokio::sync::watch::Sender<u64>,
}

impl Default for LiveFiles {
    fn default() -> Self {
        LiveFiles {
            map: Mutex::default(),
            registry: tokio::sync::watch::channel(0).0,
        }
    }
}

impl LiveFiles {
    pub fn get(&self, hash: &XetHash) -> Option<Arc<LiveFile>> {
        lock(&self.map).get(hash).cloned()
    }

    /// Wakes when a download starts or ends.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.registry.subscribe()
    }

    /// Registers `file`; it stays served until the guard drops.
    pub fn register(self: &Arc<Self>, file: Arc<LiveFile>) -> LiveGuard {
        lock(&self.map).insert(file.hash, file.clone());
        self.registry.send_modify(|v| *v = v.wrapping_add(1));
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
        drop(map);
        self.registry
            .registry
            .send_modify(|v| *v = v.wrapping_add(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(sizes: &[u32]) -> Vec<Placed> {
        let mut offset = 0;
        sizes
            .iter()
            .map(|&size| {
                let p = Placed {
                    hash: XetHash::default(),
                    size,
                    offset,
                };
                offset += u64::from(size);
                p
            })
            .collect()
    }

    fn offsets(run: &[Placed]) -> Vec<u64> {
        run.iter().map(|p| p.offset).collect()
    }

    #[test]
    fn a_run_stops_at_its_byte_budget_and_at_the_last_byte_wanted() {
        let c = chunks(&[100, 100, 100, 100]);
        let all = RunBound {
            max_bytes: u64::MAX,
            last_byte: u64::MAX,
        };
        assert_eq!(
            offsets(&take_run(c.iter().copied(), all)),
            [0, 100, 200, 300]
        );
        let budget = RunBound {
            max_bytes: 250,
            ..all
        };
        assert_eq!(offsets(&take_run(c.iter().copied(), budget)), [0, 100]);
        // The first chunk is taken whatever the budget: a run always moves on.
        let tiny = RunBound {
            max_bytes: 1,
            ..all
        };
        assert_eq!(offsets(&take_run(c.iter().copied(), tiny)), [0]);
        // Bytes 0..=150 wanted: the chunk starting at 200 is not read.
        let ranged = RunBound {
            last_byte: 150,
            ..all
        };
        assert_eq!(offsets(&take_run(c.iter().copied(), ranged)), [0, 100]);
    }

    #[test]
    fn a_proven_run_ends_at_the_first_chunk_not_proven() {
        let dir = std::env::temp_dir().join(format!("zest-live-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = Arc::new(File::create(dir.join("f")).unwrap());
        let live = LiveFile::new(XetHash::default(), file, 4);
        let c = chunks(&[10, 10, 10, 10]);
        for (i, p) in c.iter().enumerate() {
            live.set(i as u32, *p);
        }
        let all = RunBound {
            max_bytes: u64::MAX,
            last_byte: u64::MAX,
        };
        assert!(
            live.proven_run(0, 4, all).is_empty(),
            "placed is not proven"
        );
        live.prove([
            (0, XetHash::default()),
            (1, XetHash::default()),
            (3, XetHash::default()),
        ]);
        assert_eq!(offsets(&live.proven_run(0, 4, all)), [0, 10]);
        assert_eq!(offsets(&live.proven_run(3, 4, all)), [30]);
        assert!(live.proven_run(2, 4, all).is_empty());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_chunk_is_claimed_as_held_else_as_proven_and_not_at_all_before() {
        let dir = std::env::temp_dir().join(format!("zest-live-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = Arc::new(File::create(dir.join("f")).unwrap());
        let live = LiveFile::new(XetHash::default(), file, 3);
        let h = |b: u8| XetHash::from_slice(&[b; 32]).unwrap();
        assert_eq!(live.claim(0), None, "nothing known yet");
        live.set(
            0,
            Placed {
                hash: h(1),
                size: 10,
                offset: 0,
            },
        );
        live.know([(1, h(2), 20), (7, h(9), 5)]);
        assert_eq!(live.claim(0), Some((h(1), 10)), "held");
        assert_eq!(live.claim(1), Some((h(2), 20)), "proven, not held yet");
        assert_eq!(live.claim(2), None, "neither");
        assert_eq!(live.claim(7), None, "outside the file: ignored");
        assert!(!live.has(1), "knowing a hash holds nothing");
        assert_eq!(live.held_ranges(), [(0, 1)]);
        let _ = std::fs::remove_dir_all(dir);
    }
}
