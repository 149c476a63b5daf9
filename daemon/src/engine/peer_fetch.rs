//! Taking chunks from peers: their claimed chunk hashes gathered and proven (by the file's
//! Xet hash or a xorb hash) before any peer byte is used, and a range fetched from one peer
//! with every chunk checked against what is proven, through the chunk door.

use crate::metrics::{EVENTS, VerifySource};
use std::collections::HashMap;
use std::time::Instant;

use xet::XetHash;

use super::chunk_door::{ChunkDoor, DoorError, Source, VerifiedChunk};
use super::error::PullError;
use super::file_ctx::FileCtx;
use super::file_plan::XorbSpan;
use super::peer_views::View;
use super::planner::{Judge, PeerFailure, SEEDER_PATIENCE, behind};
use super::trust::{TrustedChunk, XorbCheck, check_xorb, file_entries};
use crate::peer::limits::{MAX_GET_CHUNKS, MAX_MANIFEST_CHUNKS, Patience};
use crate::peer::{PeerConn, PeerError};

/// Claimed hash and size of each chunk of `ranges`: ours where we hold it (verified), else
/// from a peer that holds it, else from a peer that holds part of `ranges` it took from
/// peers (it proved the hashes of all of them first, and answers for chunks it does not
/// hold yet: docs/PROTOCOL.md §4.2). None while some chunk's claim is nowhere to be had.
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
            let holder = views.values().find_map(|v| {
                let &(_, e) = v
                    .state
                    .held
                    .iter()
                    .find(|&&(s, e)| s <= start && start < e)?;
                Some((v, e.min(b)))
            });
            let (v, end) = match holder {
                Some(found) => found,
                None => (prover(views, ranges)?, b),
            };
            let end = end.min(start + MAX_MANIFEST_CHUNKS);
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

/// A peer that can prove the hashes of `ranges` (`PeerState::proves`, the planner's rule).
fn prover<'a>(views: &'a HashMap<String, View>, ranges: &[(u32, u32)]) -> Option<&'a View> {
    views.values().find(|v| v.state.proves(ranges))
}

/// How checking a xorb's claimed chunk hashes went.
pub enum XorbOutcome {
    Trusted,
    /// Some chunk is held by nobody we can ask yet.
    NotYet,
    /// The claims do not hash to the xorb hash; nobody can be blamed.
    Failed,
}

/// Trusts the span's chunks if their claimed hashes, in xorb order, hash to the xorb hash
/// and their sizes add up to each term's length.
pub async fn verify_xorb(
    ctx: &FileCtx,
    views: &HashMap<String, View>,
    span: &XorbSpan,
) -> XorbOutcome {
    let ranges = span.file_ranges(&ctx.terms);
    let Some(claims) = collect_claims(ctx, views, &ranges).await else {
        return XorbOutcome::NotYet;
    };
    match check_xorb(span, &ctx.terms, &claims) {
        XorbCheck::Proven(entries) => {
            ctx.learn(entries);
            XorbOutcome::Trusted
        }
        XorbCheck::Incomplete => XorbOutcome::NotYet,
        XorbCheck::Failed => XorbOutcome::Failed,
    }
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
pub async fn acquire_manifest(ctx: &FileCtx, views: &HashMap<String, View>) -> ManifestOutcome {
    let total = ctx.live.total_chunks();
    let Some(set) = &ctx.engine.peers else {
        return ManifestOutcome::NotYet;
    };
    let fill = |list: &[(XetHash, u32)]| match file_entries(&ctx.hash, ctx.size, &ctx.terms, list) {
        Some(entries) => {
            ctx.learn(entries);
            true
        }
        None => false,
    };
    let mut complete: Vec<&View> = views.values().filter(|v| v.state.complete).collect();
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
        if list.is_some_and(|l| fill(&l)) {
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
        Some(l) if fill(&l) => ManifestOutcome::Trusted,
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
#[derive(Debug)]
pub enum PeerFetchError {
    /// The peer's doing, or the link's: the range goes elsewhere.
    Peer(PeerError),
    /// Ours (the disk): the file's download fails.
    Fatal(PullError),
}

impl From<PeerError> for PeerFetchError {
    fn from(e: PeerError) -> Self {
        PeerFetchError::Peer(e)
    }
}

impl From<DoorError> for PeerFetchError {
    fn from(e: DoorError) -> Self {
        PeerFetchError::Fatal(e.into())
    }
}

/// What a failed transfer says about the peer, for the planner. A transfer from seeders
/// alone that went silent or fell behind the origin is [`PeerFailure::Lagging`].
pub fn failure_of(e: &PeerError, seeders_only: bool) -> PeerFailure {
    match e {
        PeerError::Stalled(_) | PeerError::Stopped(_) if seeders_only => PeerFailure::Lagging,
        PeerError::Rejected(why) => PeerFailure::Lied(why.clone()),
        PeerError::Protocol(why) => PeerFailure::BrokeProtocol(why.clone()),
        PeerError::NotFound(_) => PeerFailure::Lacked,
        PeerError::Gone(_) => PeerFailure::Gone,
        PeerError::Busy => PeerFailure::Busy,
        _ => PeerFailure::Other,
    }
}

/// Fetches `ranges` of the file from one peer, checking each chunk against `trust`
/// before it goes through the door. `seeders_only`: judged against the origin
/// ([`Judge::seeders_only`]).
pub async fn fetch_from_peer(
    ctx: &FileCtx,
    peer: &PeerConn,
    ranges: &[(u32, u32)],
    seeders_only: bool,
) -> Result<(), PeerFetchError> {
    // The rate is measured from the first chunk on: the request's round trip and a busy
    // peer's first read are latency, which silence detection bounds on its own.
    let mut first: Option<(Instant, u64)> = None;
    let mut got = 0u64;
    // Every chunk asked for is trusted, so its size is known.
    let total: u64 = ranges
        .iter()
        .flat_map(|&(a, b)| a..b)
        .filter_map(|i| ctx.trust.get(i).map(|t| u64::from(t.size)))
        .sum();
    let _asked = peer.stats.ask();
    let _receiving = ctx.engine.receiving.start();
    let mut door = ChunkDoor::new(ctx, Source::Peer);
    let pace = &ctx.engine.limits.download;
    // Under a download cap every transfer is slowed on purpose: no peer is judged slow.
    let capped = pace.get().is_some();
    // A seeder that does not start sending soon, or pauses, loses the range to the origin;
    // in a crowd a peer busy with its own downloads gets the usual allowance.
    // Held to a seeder's standard only while this node is not the bottleneck itself
    // (`sched_lag`, watched for as long as such a transfer runs).
    let judged = seeders_only && !capped;
    let _watch = judged.then(|| ctx.engine.sched_lag.watch());
    let starved = || ctx.engine.sched_lag.starved(Instant::now());
    let patience = || {
        if judged && !starved() {
            SEEDER_PATIENCE
        } else {
            Patience::USUAL
        }
    };
    for &(a, b) in ranges {
        let mut start = a;
        while start < b {
            let end = b.min(start + MAX_GET_CHUNKS);
            let r: Result<(), PeerFetchError> = peer
                .get(&ctx.hash, start, end, pace, &patience, |i, data| {
                    let Some(TrustedChunk { hash, size, offset }) = ctx.trust.get(i) else {
                        // Only trusted ranges are asked for; a chunk outside them is noise.
                        return Err(
                            PeerError::Protocol(format!("sent chunk {i}, not asked for")).into(),
                        );
                    };
                    let chunk = (data.len() == size as usize)
                        .then(|| VerifiedChunk::matching(data, &hash))
                        .flatten()
                        .ok_or_else(|| {
                            EVENTS.verify_failed(VerifySource::Peer);
                            PeerError::Rejected(format!(
                                "sent chunk {i} of {} with the wrong content",
                                ctx.hash
                            ))
                        })?;
                    door.put(i, offset, &chunk)?;
                    got += data.len() as u64;
                    // Peers must never make a pull slower: one that stays slow loses the
                    // rest of the range to the origin.
                    let left = total.saturating_sub(got);
                    let (t0, at0) = *first.get_or_insert((Instant::now(), got));
                    let judge = Judge {
                        seeders_only,
                        origin_rate: ctx.engine.origin_pace.rate(),
                        starved: judged && starved(),
                        transfers: ctx.engine.receiving.now(),
                    };
                    let elapsed = t0.elapsed();
                    if !capped && behind(got - at0, left, elapsed, judge) {
                        // What it delivered, so a log says how slow (it found the
                        // starved-node case).
                        return Err(PeerError::Stopped(format!(
                            "slower than the origin ({} KiB in {} ms after its first chunk)",
                            (got - at0) >> 10,
                            elapsed.as_millis()
                        ))
                        .into());
                    }
                    Ok(())
                })
                .await;
            // What verified is kept, whatever ended the transfer.
            door.flush(None)?;
            r?;
            start = end;
        }
    }
    Ok(())
}
