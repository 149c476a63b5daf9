//! The peer side of a file's download: what peers hold (views), a chunk manifest we can
//! trust (verified against the Hub's Xet hash before any peer byte is used), and fetching
//! a range from one peer with every chunk checked against that manifest.

use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use xet::XetHash;
use zest_proto::peer::FileHave;

use super::error::PullError;
use super::journal::ChunkRecord;
use super::xet_file::{FileCtx, lock};
use crate::peer::limits::{MAX_GET_CHUNKS, MAX_MANIFEST_CHUNKS};
use crate::peer::wire::unflatten;
use crate::peer::{PeerConn, PeerError, Placed};

/// What one peer holds of the file, as it last said.
pub struct View {
    pub conn: PeerConn,
    pub complete: bool,
    /// The peer knows the file (holds, fetches or is downloading some of it).
    pub involved: bool,
    pub held: Vec<(u32, u32)>,
    pub fetching: Vec<(u32, u32)>,
}

impl View {
    pub fn held_count(&self) -> u64 {
        self.held.iter().map(|(a, b)| u64::from(b - a)).sum()
    }
    pub fn holds_all(&self, ranges: &[(u32, u32)]) -> bool {
        ranges.iter().all(|&(a, b)| covered(&self.held, a, b))
    }
    pub fn holds_any(&self, ranges: &[(u32, u32)]) -> bool {
        ranges.iter().any(|&(a, b)| overlaps(&self.held, a, b))
    }
    pub fn fetches_any(&self, ranges: &[(u32, u32)]) -> bool {
        ranges.iter().any(|&(a, b)| overlaps(&self.fetching, a, b))
    }
}

fn covered(ranges: &[(u32, u32)], a: u32, b: u32) -> bool {
    ranges.iter().any(|&(s, e)| s <= a && b <= e)
}

fn overlaps(ranges: &[(u32, u32)], a: u32, b: u32) -> bool {
    ranges.iter().any(|&(s, e)| s < b && a < e)
}

/// Asks every peer what it holds of the file, at once. Peers that do not answer in time,
/// or answer nonsense, are left out this round.
pub async fn refresh(ctx: &FileCtx, peers: &[PeerConn]) -> HashMap<String, View> {
    let total = ctx.live.total_chunks();
    let asks = peers.iter().map(|p| {
        let p = p.clone();
        let hash = ctx.hash;
        async move {
            let r = tokio::time::timeout(Duration::from_secs(2), p.have(&[hash])).await;
            (p, r)
        }
    });
    let mut views = HashMap::new();
    for (p, r) in futures_util::future::join_all(asks).await {
        let Ok(Ok(files)) = r else { continue };
        let Some(fh) = files.into_iter().find(|f| f.file == ctx.hash.as_bytes()) else {
            continue;
        };
        if let Some(v) = parse_view(p, fh, total) {
            views.insert(v.conn.node_id.clone(), v);
        }
    }
    views
}

fn parse_view(conn: PeerConn, fh: FileHave, total: u32) -> Option<View> {
    if fh.total_chunks != 0 && fh.total_chunks != total {
        // Not the file the CAS describes; nothing it says about it is useful.
        return None;
    }
    let held = unflatten(&fh.held)?;
    let fetching = unflatten(&fh.fetching)?;
    if held.last().is_some_and(|r| r.1 > total) || fetching.last().is_some_and(|r| r.1 > total) {
        return None;
    }
    Some(View {
        conn,
        involved: fh.total_chunks != 0 || !held.is_empty() || !fetching.is_empty(),
        complete: fh.complete && covered(&held, 0, total),
        held,
        fetching,
    })
}

/// A chunk manifest of the file that hashes to the Hub's Xet hash, with chunk offsets.
pub struct Trusted {
    pub chunks: Vec<(XetHash, u32)>,
    pub offsets: Vec<u64>,
}

impl Trusted {
    /// Checks `chunks` against the file's Xet hash, size and the CAS's term lengths.
    fn verify(ctx: &FileCtx, chunks: Vec<(XetHash, u32)>) -> Option<Self> {
        let pairs: Vec<(XetHash, u64)> = chunks.iter().map(|(h, s)| (*h, u64::from(*s))).collect();
        if chunks.len() != ctx.live.total_chunks() as usize
            || xet::merkle::file_hash(&pairs) != ctx.hash
        {
            return None;
        }
        let mut offsets = Vec::with_capacity(chunks.len());
        let mut at = 0u64;
        for (_, s) in &chunks {
            offsets.push(at);
            at += u64::from(*s);
        }
        if at != ctx.size {
            return None;
        }
        let terms_agree = ctx.terms.iter().all(|t| {
            let (a, b) = t.file_chunks();
            offsets.get(a as usize) == Some(&t.offset)
                && chunks[a as usize..b as usize]
                    .iter()
                    .map(|c| u64::from(c.1))
                    .sum::<u64>()
                    == t.len
        });
        terms_agree.then_some(Trusted { chunks, offsets })
    }
}

/// How getting a manifest went.
pub enum ManifestOutcome {
    Trusted(Trusted),
    /// Not possible yet (nobody holds enough).
    NotYet,
    /// Peers' claims were put together and did not verify; nobody can be blamed.
    Unverifiable,
}

/// Gets a trusted manifest: from one peer that holds the whole file (a wrong one gets it
/// banned), else pieced together from what every peer holds plus what we hold ourselves.
pub async fn acquire_manifest(ctx: &FileCtx, views: &HashMap<String, View>) -> ManifestOutcome {
    let total = ctx.live.total_chunks();
    let Some(set) = &ctx.engine.peers else {
        return ManifestOutcome::NotYet;
    };
    let mut complete: Vec<&View> = views.values().filter(|v| v.complete).collect();
    complete.sort_by(|a, b| {
        b.conn
            .stats
            .rate_from()
            .total_cmp(&a.conn.stats.rate_from())
    });
    for v in complete {
        let mut claims: HashMap<u32, (XetHash, u32)> = HashMap::new();
        let mut ok = true;
        let mut start = 0;
        while start < total {
            let end = total.min(start + MAX_MANIFEST_CHUNKS);
            match v.conn.manifest(&ctx.hash, start, end).await {
                Ok(list) => add_claims(&mut claims, list, start, end),
                Err(e) => {
                    tracing::debug!(peer = ?v.conn, "manifest request failed: {e}");
                    ok = false;
                    break;
                }
            }
            start = end;
        }
        if !ok {
            continue;
        }
        let list: Option<Vec<(XetHash, u32)>> =
            (0..total).map(|i| claims.get(&i).copied()).collect();
        match list.and_then(|l| Trusted::verify(ctx, l)) {
            Some(t) => {
                tracing::debug!(file = %ctx.name, peer = ?v.conn, "manifest verified");
                return ManifestOutcome::Trusted(t);
            }
            None => set.ban(
                &v.conn.node_id,
                "said it holds a file, but its manifest does not hash to the file's Xet hash",
            ),
        }
    }
    // Piece it together: ours, plus each missing run from some peer that holds it.
    let mut slots: Vec<Option<(XetHash, u32)>> = ctx
        .live
        .slots()
        .into_iter()
        .map(|s| s.map(|p| (p.hash, p.size)))
        .collect();
    let missing = crate::peer::wire::ranges_of(slots.iter().map(|s| s.is_none()));
    for &(a, b) in &missing {
        let mut start = a;
        while start < b {
            let Some(v) = views
                .values()
                .find(|v| v.held.iter().any(|&(s, e)| s <= start && start < e))
            else {
                return ManifestOutcome::NotYet;
            };
            let end = v
                .held
                .iter()
                .find(|&&(s, e)| s <= start && start < e)
                .map(|&(_, e)| e.min(b))
                .unwrap_or(b)
                .min(start + MAX_MANIFEST_CHUNKS);
            let Ok(list) = v.conn.manifest(&ctx.hash, start, end).await else {
                return ManifestOutcome::NotYet;
            };
            let mut claims = HashMap::new();
            add_claims(&mut claims, list, start, end);
            for i in start..end {
                match claims.get(&i) {
                    Some(c) => slots[i as usize] = Some(*c),
                    None => return ManifestOutcome::NotYet,
                }
            }
            start = end;
        }
    }
    let list: Option<Vec<(XetHash, u32)>> = slots.into_iter().collect();
    match list.and_then(|l| Trusted::verify(ctx, l)) {
        Some(t) => ManifestOutcome::Trusted(t),
        None => ManifestOutcome::Unverifiable,
    }
}

fn add_claims(
    into: &mut HashMap<u32, (XetHash, u32)>,
    list: Vec<zest_proto::peer::ChunkClaim>,
    start: u32,
    end: u32,
) {
    for c in list {
        if c.index < start || c.index >= end || c.size as usize > xet::MAX_CHUNK_SIZE {
            continue;
        }
        if let Some(h) = XetHash::from_slice(&c.hash) {
            into.insert(c.index, (h, c.size));
        }
    }
}

/// Why a peer fetch ended early.
pub enum PeerFetchError {
    Peer(PeerError),
    Fatal(PullError),
}

/// Below this rate after [`SLOW_AFTER`], a peer is dropped for this range so the CDN (or a
/// faster peer) takes over: peers must never make a pull slower.
const MIN_RATE: f64 = 2.0 * 1024.0 * 1024.0;
const SLOW_AFTER: Duration = Duration::from_secs(3);

/// Fetches `ranges` of the file from one peer, checking each chunk against `trusted`
/// before it is written.
pub async fn fetch_from_peer(
    ctx: &FileCtx,
    trusted: &Trusted,
    peer: &PeerConn,
    ranges: &[(u32, u32)],
) -> Result<(), PeerFetchError> {
    let started = Instant::now();
    let mut got = 0u64;
    for &(a, b) in ranges {
        let mut start = a;
        while start < b {
            let end = b.min(start + MAX_GET_CHUNKS);
            let mut records = Vec::new();
            let mut fatal: Option<PullError> = None;
            let r = peer
                .get(&ctx.hash, start, end, |i, data| {
                    let (hash, size) = trusted.chunks[i as usize];
                    if data.len() != size as usize || xet::hash::chunk_hash(data) != hash {
                        return Err(PeerError::Rejected(format!(
                            "sent chunk {i} of {} with the wrong content",
                            ctx.hash
                        )));
                    }
                    let offset = trusted.offsets[i as usize];
                    let placed = Placed { hash, size, offset };
                    if !ctx.live.has(i) {
                        if let Err(e) = ctx.file.write_all_at(data, offset) {
                            fatal = Some(PullError::disk("writing the download", &e));
                            return Err(PeerError::Stopped("disk".into()));
                        }
                        if ctx.live.set(i, placed) {
                            ctx.counters
                                .bytes_done
                                .fetch_add(u64::from(size), Ordering::Relaxed);
                            ctx.counters
                                .from_peers
                                .fetch_add(u64::from(size), Ordering::Relaxed);
                        }
                        records.push(ChunkRecord {
                            index: i,
                            size,
                            offset,
                            hash,
                        });
                    }
                    got += data.len() as u64;
                    let secs = started.elapsed();
                    if secs > SLOW_AFTER && (got as f64) / secs.as_secs_f64() < MIN_RATE {
                        return Err(PeerError::Stopped("too slow".into()));
                    }
                    Ok(())
                })
                .await;
            if !records.is_empty()
                && let Err(e) = lock(&ctx.journal).append(&records, &[])
            {
                return Err(PeerFetchError::Fatal(PullError::disk(
                    "writing the resume journal",
                    &e,
                )));
            }
            if let Some(f) = fatal {
                return Err(PeerFetchError::Fatal(f));
            }
            r.map_err(PeerFetchError::Peer)?;
            start = end;
        }
    }
    Ok(())
}
