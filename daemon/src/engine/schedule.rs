//! Which source each range of a file comes from, and when.
//!
//! Each group (a byte range of one xorb, as the CAS serves it) goes to the first that
//! works: a peer that holds its chunks, once a trusted manifest is in hand; else, if some
//! peer is fetching or holding it already and the swarm is making progress, it waits (so a
//! flash crowd fetches each range from the origin about once); else the CDN. Contested
//! claims are settled by node id. A peer that fails a range is avoided for it, a lying one
//! is banned, and the CDN is always the fallback, so peers never make a pull slower by more
//! than a short patience window.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use tokio::task::JoinSet;

use super::cdn::{Start, fetch_group};
use super::error::{Kind, PullError};
use super::peer_fetch::{
    ManifestOutcome, PeerFetchError, Trust, View, XorbOutcome, XorbSpan, acquire_manifest,
    fetch_from_peer, refresh, verify_xorb,
};
use super::swarm_origin::{SwarmOrigin, SwarmSlot};
use super::xet_file::{FileCtx, Group};
use crate::peer::PeerError;

/// How stale a view of the peers may get.
const REFRESH: Duration = Duration::from_millis(150);
/// How long to wait on peers that make no progress before taking a range from the CDN.
const PATIENCE: Duration = Duration::from_secs(4);
/// Origin ranges in flight per file while peers download it too (they fetch the rest);
/// the engine's swarm permits bound it over all files.
const CDN_WITH_PEERS: usize = 2;
/// Daemons asked to pull the same thing at the same moment spread their first claims over
/// this window, so each sees the others' claims before it makes its own.
const FIRST_CLAIM_SPREAD: Duration = Duration::from_millis(200);
/// With peers connected but none (yet) downloading this file, the origin is used as
/// sparingly as in a swarm for this long, so peers starting a moment later find work left.
const SWARM_GRACE: Duration = Duration::from_secs(1);
/// Peer transfers in flight per file.
const PEER_PARALLEL: usize = 8;
const TICK: Duration = Duration::from_millis(50);
/// Pieced-together manifests that fail before peers are given up on for this file.
const MAX_UNVERIFIABLE: u32 = 3;
/// Failed checks of a xorb's claimed chunk hashes before only the whole-file manifest is
/// waited for (a xorb this file uses only part of can never pass).
const MAX_XORB_TRIES: u32 = 2;
/// A claim is announced this long before the origin is asked, and then checked against
/// the peers' claims once more. Longer than [`REFRESH`]: two nodes that claim the same range
/// within this window both see both claims at their check (and the lower node id keeps it);
/// a node claiming later already saw the earlier claim and does not claim at all.
const CLAIM_SETTLE: Duration = Duration::from_millis(250);
/// How often claims are gathered again to extend what we can check peers' chunks against.
const TRUST_RETRY: Duration = Duration::from_millis(300);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum St {
    Todo,
    /// Announced as `fetching`, waiting out [`CLAIM_SETTLE`] before the origin is asked.
    Claimed,
    Cdn,
    Peer,
    Done,
}

struct Slot {
    group: Group,
    start: Start,
    st: St,
    /// Peers that failed this group.
    avoid: HashSet<String>,
    /// While claimed: since when, and this node's share of origin streams.
    claim: Option<(Instant, Option<SwarmSlot>)>,
}

enum Outcome {
    Cdn(Result<(), PullError>),
    Peer(String, Result<(), PeerFetchError>),
}

pub async fn run(ctx: &Arc<FileCtx>, work: Vec<(Group, Start)>) -> Result<(), PullError> {
    let set = ctx.engine.peers.clone();
    let my_id = set
        .as_ref()
        .map(|s| s.node_id().to_string())
        .unwrap_or_default();
    let mut slots: Vec<Slot> = work
        .into_iter()
        .map(|(group, start)| Slot {
            group,
            start,
            st: St::Todo,
            avoid: HashSet::new(),
            claim: None,
        })
        .collect();
    if let Some(s) = &set
        && ctx.engine.discovering
    {
        let private = ctx.live.private;
        ctx.engine
            .wanted
            .wait_for_discovery(&ctx.hash, || !s.usable_for(private).is_empty())
            .await;
    }
    let mut order: Vec<usize> = (0..slots.len()).collect();
    if set
        .as_ref()
        .is_some_and(|s| !s.usable_for(ctx.live.private).is_empty())
    {
        // Peers starting together then begin on different ranges.
        order.shuffle(&mut rand::rng());
    }
    let mut tasks: JoinSet<(usize, Outcome)> = JoinSet::new();
    let mut views: HashMap<String, View> = HashMap::new();
    let mut last_refresh: Option<Instant> = None;
    let trust = Arc::new(Trust::new(ctx.live.total_chunks()));
    let spans = XorbSpan::of(ctx);
    let mut span_tries = vec![0u32; spans.len()];
    let mut last_trust_try: Option<Instant> = None;
    let mut unverifiable = 0u32;
    let mut peers_off = false;
    let mut progress = (0u64, Instant::now());
    let started = Instant::now();

    if let Some(s) = &set {
        let peers = s.usable_for(ctx.live.private);
        if !peers.is_empty() {
            views = refresh(ctx, &peers).await;
            last_refresh = Some(Instant::now());
            if views.values().any(|v| v.involved) {
                tokio::time::sleep(FIRST_CLAIM_SPREAD.mul_f64(rand::random::<f64>())).await;
                // What peers claimed meanwhile is what the spread is for: look again.
                last_refresh = None;
            }
        }
    }

    loop {
        if tasks.is_empty() && slots.iter().all(|s| s.st == St::Done) {
            return Ok(());
        }
        let peers = match (&set, peers_off) {
            (Some(s), false) => s.usable_for(ctx.live.private),
            _ => Vec::new(),
        };
        if peers.is_empty() {
            views.clear();
        } else if last_refresh.is_none_or(|t| t.elapsed() >= REFRESH) {
            views = refresh(ctx, &peers).await;
            last_refresh = Some(Instant::now());
        }
        if let Some(s) = &set {
            views.retain(|id, _| !s.is_banned(id));
        }
        let held = views.values().map(View::held_count).sum::<u64>() + ctx.live.held_count() as u64;
        if held > progress.0 {
            progress = (held, Instant::now());
            ctx.engine.swarm_origin.note_progress();
        }
        if !views.is_empty()
            && !trust.is_full()
            && last_trust_try.is_none_or(|t| t.elapsed() >= TRUST_RETRY)
        {
            last_trust_try = Some(Instant::now());
            // The whole file at once when a peer has it all (one request, and a liar is
            // caught) or the swarm holds every chunk.
            let whole = [(0, ctx.live.total_chunks())];
            if views.values().any(|v| v.complete) || held_somewhere(ctx, &views, &whole) {
                match acquire_manifest(ctx, &trust, &views).await {
                    ManifestOutcome::Trusted => {
                        tracing::debug!(file = %ctx.name, after = ?started.elapsed(), "chunk manifest trusted");
                    }
                    ManifestOutcome::NotYet => {}
                    ManifestOutcome::Unverifiable => {
                        unverifiable += 1;
                        tracing::warn!(file = %ctx.name, "chunk hashes pieced together from peers do not verify");
                        if unverifiable >= MAX_UNVERIFIABLE {
                            tracing::warn!(file = %ctx.name, "fetching the rest of this file from the origin");
                            peers_off = true;
                            views.clear();
                        }
                    }
                }
            }
            // Otherwise xorb by xorb, as soon as each is held somewhere: peers then trade a
            // xorb while the origin still sends others, instead of waiting for whole files.
            for (k, span) in spans.iter().enumerate() {
                let ranges = span.file_ranges(ctx);
                if views.is_empty()
                    || span_tries[k] >= MAX_XORB_TRIES
                    || trust.covers(&ranges)
                    || !held_somewhere(ctx, &views, &ranges)
                {
                    continue;
                }
                match verify_xorb(ctx, &trust, &views, span).await {
                    XorbOutcome::Trusted => {
                        tracing::debug!(file = %ctx.name, xorb = %span.xorb, after = ?started.elapsed(), "xorb chunk hashes trusted")
                    }
                    XorbOutcome::NotYet => {}
                    XorbOutcome::Failed => {
                        span_tries[k] += 1;
                        tracing::debug!(file = %ctx.name, xorb = %span.xorb, "claimed chunk hashes do not hash to the xorb");
                    }
                }
            }
            if let Some(s) = &set {
                views.retain(|id, _| !s.is_banned(id));
            }
        }

        // Peers are waited for while the swarm makes progress, on this file or on another
        // one of the same pull (a fleet works through the files' xorbs a few at a time).
        let patient =
            progress.1.elapsed() < PATIENCE || ctx.engine.swarm_origin.progressed_within(PATIENCE);
        let mut cdn_busy = slots
            .iter()
            .filter(|s| matches!(s.st, St::Cdn | St::Claimed))
            .count();
        let mut peer_busy = slots.iter().filter(|s| s.st == St::Peer).count();
        let swarm = views.values().any(|v| v.involved)
            || (!peers.is_empty() && started.elapsed() < SWARM_GRACE);
        let cdn_limit = if swarm { CDN_WITH_PEERS } else { usize::MAX };
        let mut start_now: Vec<(usize, Option<SwarmSlot>)> = Vec::new();
        for &i in &order {
            let slot = &mut slots[i];
            if slot.st != St::Todo {
                continue;
            }
            let missing = ctx.group_missing(&slot.group);
            if missing.is_empty() {
                slot.st = St::Done;
                continue;
            }
            if peer_busy < PEER_PARALLEL
                && trust.covers(&missing)
                && let Some(v) = views
                    .values()
                    .filter(|v| !slot.avoid.contains(&v.conn.node_id) && v.holds_all(&missing))
                    .max_by(|a, b| {
                        a.conn
                            .stats
                            .rate_from()
                            .total_cmp(&b.conn.stats.rate_from())
                    })
            {
                let (ctx, t, conn) = (ctx.clone(), trust.clone(), v.conn.clone());
                tasks.spawn(async move {
                    let t0 = Instant::now();
                    let r = fetch_from_peer(&ctx, &t, &conn, &missing).await;
                    tracing::debug!(file = %ctx.name, peer = ?conn, ranges = ?missing, took = ?t0.elapsed(), ok = r.is_ok(), "peer range ended");
                    (i, Outcome::Peer(conn.node_id.clone(), r))
                });
                slot.st = St::Peer;
                peer_busy += 1;
                continue;
            }
            let ranges = ctx.group_ranges(&slot.group);
            let elsewhere = views.values().any(|v| {
                !slot.avoid.contains(&v.conn.node_id)
                    && (v.holds_any(&missing) || v.fetches_any(&ranges))
            });
            if elsewhere && patient {
                continue;
            }
            if cdn_busy < cdn_limit {
                let permit = if swarm {
                    // In the first moments of a pull, connected peers count as a crowd
                    // forming: daemons started together do not see each other's claims
                    // yet, and two streams each would put every xorb into one wave.
                    let mut crowd = views.values().filter(|v| v.involved).count();
                    if started.elapsed() < SWARM_GRACE {
                        crowd = crowd.max(peers.len());
                    }
                    match ctx.engine.swarm_origin.try_take(SwarmOrigin::limit(crowd)) {
                        Some(p) => Some(p),
                        None => continue,
                    }
                } else {
                    None
                };
                cdn_busy += 1;
                for r in &ranges {
                    ctx.live.start_fetching(*r);
                }
                if views.is_empty() {
                    slot.st = St::Cdn;
                    start_now.push((i, permit));
                } else {
                    slot.st = St::Claimed;
                    slot.claim = Some((Instant::now(), permit));
                }
            }
        }
        let due: Vec<usize> = (0..slots.len())
            .filter(|&i| {
                slots[i].st == St::Claimed
                    && slots[i]
                        .claim
                        .as_ref()
                        .is_some_and(|(at, _)| at.elapsed() >= CLAIM_SETTLE)
            })
            .collect();
        if !due.is_empty() {
            // Another node may have claimed the same range meanwhile: look again, and
            // leave contested ranges to the lower node id.
            let fresh = if peers.is_empty() {
                HashMap::new()
            } else {
                refresh(ctx, &peers).await
            };
            for i in due {
                let slot = &mut slots[i];
                let ranges = ctx.group_ranges(&slot.group);
                let missing = ctx.group_missing(&slot.group);
                let contested = fresh.values().any(|v| {
                    !slot.avoid.contains(&v.conn.node_id)
                        && (v.holds_any(&missing)
                            || (v.fetches_any(&ranges) && v.conn.node_id < my_id))
                });
                let permit = slot.claim.take().and_then(|(_, p)| p);
                if contested && patient {
                    for r in &ranges {
                        ctx.live.stop_fetching(*r);
                    }
                    slot.st = St::Todo;
                } else {
                    // Still announced as `fetching`; the fetch task ends that when done.
                    slot.st = St::Cdn;
                    start_now.push((i, permit));
                }
            }
            if !peers.is_empty() {
                views = fresh;
                last_refresh = Some(Instant::now());
            }
        }
        for (i, swarm_permit) in start_now {
            let (ctx, group, start) = (ctx.clone(), slots[i].group.clone(), slots[i].start);
            tasks.spawn(async move {
                let _swarm_permit = swarm_permit;
                let r = async {
                    let _permit = ctx
                        .engine
                        .fetch_permits
                        .acquire()
                        .await
                        .map_err(|_| PullError::new(Kind::Internal, "shutting down"))?;
                    let t0 = Instant::now();
                    let r = fetch_group(&ctx, &group, start).await;
                    tracing::debug!(file = %ctx.name, xorb = %group.xorb, chunks = ?group.chunks, took = ?t0.elapsed(), ok = r.is_ok(), "origin range ended");
                    r
                }
                .await;
                for range in ctx.group_ranges(&group) {
                    ctx.live.stop_fetching(range);
                }
                (i, Outcome::Cdn(r))
            });
        }

        let next = tokio::select! {
            r = tasks.join_next(), if !tasks.is_empty() => r,
            _ = tokio::time::sleep(TICK) => None,
        };
        let Some(joined) = next else { continue };
        let (i, outcome) = joined
            .map_err(|e| PullError::new(Kind::Internal, format!("download task failed: {e}")))?;
        match outcome {
            Outcome::Cdn(r) => {
                r?;
                slots[i].st = St::Done;
            }
            Outcome::Peer(node, r) => {
                let slot = &mut slots[i];
                slot.st = St::Todo;
                match r {
                    Ok(()) => {}
                    Err(PeerFetchError::Fatal(e)) => return Err(e),
                    Err(PeerFetchError::Peer(e)) => {
                        peer_failed(ctx, &node, &e);
                        if !matches!(e, PeerError::Busy) {
                            slot.avoid.insert(node);
                        }
                    }
                }
            }
        }
    }
}

/// True if every chunk of `ranges` is on our disk or held by some peer.
fn held_somewhere(ctx: &FileCtx, views: &HashMap<String, View>, ranges: &[(u32, u32)]) -> bool {
    ranges.iter().all(|&(a, b)| {
        ctx.live.missing(a, b).into_iter().all(|(mut at, end)| {
            while at < end {
                let next = views
                    .values()
                    .flat_map(|v| v.held.iter())
                    .filter(|&&(s, e)| s <= at && at < e)
                    .map(|&(_, e)| e)
                    .max();
                match next {
                    Some(e) => at = e,
                    None => return false,
                }
            }
            true
        })
    })
}

/// What a failed peer transfer says about the peer.
fn peer_failed(ctx: &FileCtx, node: &str, e: &PeerError) {
    let Some(set) = &ctx.engine.peers else { return };
    let short = crate::peer::conn::short(node);
    match e {
        PeerError::Rejected(why) => set.ban(node, why),
        PeerError::Protocol(why) => set.ban(node, &format!("broke the protocol: {why}")),
        PeerError::NotFound(_) => {
            tracing::info!(peer = short, file = %ctx.name, "peer lacked chunks it said it held");
            set.strike(node, "repeatedly lacked chunks it said it held");
        }
        PeerError::Busy => set.choke(node),
        other => tracing::info!(peer = short, file = %ctx.name, "peer transfer abandoned: {other}"),
    }
}
