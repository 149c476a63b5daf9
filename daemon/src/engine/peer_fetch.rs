//! The peer side of a file's download: what peers hold (views), a chunk manifest we can
//! trust (verified against the Hub's Xet hash before any peer byte is used), and fetching
//! a range from one peer with every chunk checked against that manifest.

use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;
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

/// What we may check peers' chunks against: for each file chunk, its hash, size and offset,
/// once they are proven by the file's Xet hash (a whole manifest) or by the xorb hash of a
/// xorb the file uses from its first chunk. Entries are only ever added, never changed.
pub struct Trust {
    state: Mutex<TrustState>,
}

struct TrustState {
    chunks: Vec<Option<TrustedChunk>>,
    /// Chunks still without an entry, so the scheduler's per-tick "all trusted?" is cheap.
    untrusted: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrustedChunk {
    pub hash: XetHash,
    pub size: u32,
    pub offset: u64,
}

impl Trust {
    pub fn new(total: u32) -> Self {
        Trust {
            state: Mutex::new(TrustState {
                chunks: vec![None; total as usize],
                untrusted: total as usize,
            }),
        }
    }

    pub fn get(&self, i: u32) -> Option<TrustedChunk> {
        lock(&self.state).chunks.get(i as usize).copied().flatten()
    }

    /// True if every chunk of every range is trusted.
    pub fn covers(&self, ranges: &[(u32, u32)]) -> bool {
        let st = lock(&self.state);
        let c = &st.chunks;
        ranges
            .iter()
            .all(|&(a, b)| (a..b).all(|i| c.get(i as usize).is_some_and(|t| t.is_some())))
    }

    pub fn is_full(&self) -> bool {
        lock(&self.state).untrusted == 0
    }

    fn fill(&self, entries: impl IntoIterator<Item = (u32, TrustedChunk)>) {
        let mut st = lock(&self.state);
        for (i, t) in entries {
            if let Some(slot) = st.chunks.get_mut(i as usize)
                && slot.is_none()
            {
                *slot = Some(t);
                st.untrusted -= 1;
            }
        }
    }

    /// Trusts a whole-file manifest if it hashes to the file's Xet hash and agrees with the
    /// file's size and the CAS's term lengths.
    fn fill_file(&self, ctx: &FileCtx, chunks: &[(XetHash, u32)]) -> bool {
        let pairs: Vec<(XetHash, u64)> = chunks.iter().map(|(h, s)| (*h, u64::from(*s))).collect();
        if chunks.len() != ctx.live.total_chunks() as usize
            || xet::merkle::file_hash(&pairs) != ctx.hash
        {
            return false;
        }
        let mut offsets = Vec::with_capacity(chunks.len());
        let mut at = 0u64;
        for (_, s) in chunks {
            offsets.push(at);
            at += u64::from(*s);
        }
        if at != ctx.size {
            return false;
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
        if terms_agree {
            self.fill(chunks.iter().zip(&offsets).enumerate().map(
                |(i, ((hash, size), offset))| {
                    (
                        i as u32,
                        TrustedChunk {
                            hash: *hash,
                            size: *size,
                            offset: *offset,
                        },
                    )
                },
            ));
        }
        terms_agree
    }
}

/// A xorb this file uses from its first chunk on: its terms here cover xorb chunks
/// `[0, len)` with no gap, so claimed hashes for them can be checked against the xorb hash.
/// (If the xorb has chunks beyond `len`, the check fails and nobody is to blame.)
pub struct XorbSpan {
    pub xorb: XetHash,
    pub len: u32,
    /// Indices into the file's terms.
    pub terms: Vec<usize>,
}

impl XorbSpan {
    /// The spans of a file's xorbs that can be checked this way.
    pub fn of(ctx: &FileCtx) -> Vec<XorbSpan> {
        let mut by_xorb: HashMap<XetHash, Vec<usize>> = HashMap::new();
        for (i, t) in ctx.terms.iter().enumerate() {
            by_xorb.entry(t.xorb).or_default().push(i);
        }
        let mut spans: Vec<XorbSpan> = by_xorb
            .into_iter()
            .filter_map(|(xorb, terms)| {
                let merged = crate::peer::wire::merge(
                    terms
                        .iter()
                        .map(|&t| (ctx.terms[t].chunks.start, ctx.terms[t].chunks.end))
                        .collect(),
                );
                match merged.as_slice() {
                    [(0, len)] => Some(XorbSpan {
                        xorb,
                        len: *len,
                        terms,
                    }),
                    _ => None,
                }
            })
            .collect();
        spans.sort_by_key(|s| ctx.terms[s.terms[0]].first_chunk);
        spans
    }

    /// The file chunk ranges the span's terms occupy.
    pub fn file_ranges(&self, ctx: &FileCtx) -> Vec<(u32, u32)> {
        ctx.term_ranges(&self.terms)
    }
}

/// Claimed hash and size of each chunk of `ranges`: ours where we hold it (verified), else
/// from a peer that holds it. None while some chunk is held by nobody we can ask.
async fn collect_claims(
    ctx: &FileCtx,
    views: &HashMap<String, View>,
    ranges: &[(u32, u32)],
) -> Option<HashMap<u32, (XetHash, u32)>> {
    let mut claims: HashMap<u32, (XetHash, u32)> = HashMap::new();
    let slots = ctx.live.slots();
    let mut missing = Vec::new();
    for &(a, b) in ranges {
        for i in a..b {
            match slots.get(i as usize).copied().flatten() {
                Some(p) => {
                    claims.insert(i, (p.hash, p.size));
                }
                None => missing.push(i),
            }
        }
    }
    for (a, b) in crate::peer::wire::merge(missing.iter().map(|&i| (i, i + 1)).collect()) {
        let mut start = a;
        while start < b {
            let v = views
                .values()
                .find(|v| v.held.iter().any(|&(s, e)| s <= start && start < e))?;
            let end = v
                .held
                .iter()
                .find(|&&(s, e)| s <= start && start < e)
                .map(|&(_, e)| e.min(b))
                .unwrap_or(b)
                .min(start + MAX_MANIFEST_CHUNKS);
            let list = v.conn.manifest(&ctx.hash, start, end).await.ok()?;
            let mut got = HashMap::new();
            add_claims(&mut got, list, start, end);
            for i in start..end {
                claims.insert(i, *got.get(&i)?);
            }
            start = end;
        }
    }
    Some(claims)
}

/// How checking a xorb's claimed chunk hashes went.
pub enum XorbOutcome {
    Trusted,
    /// Some chunk is held by nobody we can ask yet.
    NotYet,
    /// The claims do not hash to the xorb hash (a liar, or a xorb with chunks this file
    /// does not use); nobody can be blamed.
    Failed,
}

/// Trusts the span's chunks if their claimed hashes, in xorb order, hash to the xorb hash
/// and their sizes add up to each term's length.
pub async fn verify_xorb(
    ctx: &FileCtx,
    trust: &Trust,
    views: &HashMap<String, View>,
    span: &XorbSpan,
) -> XorbOutcome {
    let ranges = span.file_ranges(ctx);
    let Some(claims) = collect_claims(ctx, views, &ranges).await else {
        return XorbOutcome::NotYet;
    };
    let mut in_xorb: Vec<Option<(XetHash, u32)>> = vec![None; span.len as usize];
    for &ti in &span.terms {
        let t = &ctx.terms[ti];
        let mut sum = 0u64;
        for j in 0..t.chunks.len() {
            let Some(&c) = claims.get(&(t.first_chunk + j)) else {
                return XorbOutcome::NotYet;
            };
            let slot = &mut in_xorb[(t.chunks.start + j) as usize];
            if slot.is_some_and(|had| had != c) {
                return XorbOutcome::Failed;
            }
            *slot = Some(c);
            sum += u64::from(c.1);
        }
        if sum != t.len {
            return XorbOutcome::Failed;
        }
    }
    let Some(list) = in_xorb
        .into_iter()
        .map(|c| c.map(|(h, s)| (h, u64::from(s))))
        .collect::<Option<Vec<_>>>()
    else {
        return XorbOutcome::NotYet;
    };
    if xet::merkle::xorb_hash(&list) != span.xorb {
        return XorbOutcome::Failed;
    }
    let mut entries = Vec::new();
    for &ti in &span.terms {
        let t = &ctx.terms[ti];
        let mut offset = t.offset;
        for j in 0..t.chunks.len() {
            let (hash, size) = list[(t.chunks.start + j) as usize];
            let size = size as u32;
            entries.push((t.first_chunk + j, TrustedChunk { hash, size, offset }));
            offset += u64::from(size);
        }
    }
    trust.fill(entries);
    XorbOutcome::Trusted
}

/// How getting a whole-file manifest went.
pub enum ManifestOutcome {
    Trusted,
    /// Not possible yet (nobody holds enough).
    NotYet,
    /// Peers' claims were put together and did not verify; nobody can be blamed.
    Unverifiable,
}

/// Trusts a whole manifest: from one peer that holds the whole file (a wrong one gets it
/// banned), else pieced together from what every peer holds plus what we hold ourselves.
pub async fn acquire_manifest(
    ctx: &FileCtx,
    trust: &Trust,
    views: &HashMap<String, View>,
) -> ManifestOutcome {
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
        if list.is_some_and(|l| trust.fill_file(ctx, &l)) {
            tracing::debug!(file = %ctx.name, peer = ?v.conn, "manifest verified");
            return ManifestOutcome::Trusted;
        }
        set.ban(
            &v.conn.node_id,
            "said it holds a file, but its manifest does not hash to the file's Xet hash",
        );
    }
    let Some(claims) = collect_claims(ctx, views, &[(0, total)]).await else {
        return ManifestOutcome::NotYet;
    };
    let list: Option<Vec<(XetHash, u32)>> = (0..total).map(|i| claims.get(&i).copied()).collect();
    match list {
        Some(l) if trust.fill_file(ctx, &l) => ManifestOutcome::Trusted,
        Some(_) => ManifestOutcome::Unverifiable,
        None => ManifestOutcome::NotYet,
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

/// Fetches `ranges` of the file from one peer, checking each chunk against `trust`
/// before it is written.
pub async fn fetch_from_peer(
    ctx: &FileCtx,
    trust: &Trust,
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
                    let Some(TrustedChunk { hash, size, offset }) = trust.get(i) else {
                        // Only trusted ranges are asked for; a chunk outside them is noise.
                        return Err(PeerError::Protocol(format!(
                            "sent chunk {i}, not asked for"
                        )));
                    };
                    if data.len() != size as usize || xet::hash::chunk_hash(data) != hash {
                        return Err(PeerError::Rejected(format!(
                            "sent chunk {i} of {} with the wrong content",
                            ctx.hash
                        )));
                    }
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
