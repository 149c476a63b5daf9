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
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinSet;

use super::cdn::{Start, fetch_group};
use super::error::{Kind, PullError};
use super::peer_fetch::{
    ManifestOutcome, PeerFetchError, Trusted, View, acquire_manifest, fetch_from_peer, refresh,
};
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

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum St {
    Todo,
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
        })
        .collect();
    let mut order: Vec<usize> = (0..slots.len()).collect();
    if set.as_ref().is_some_and(|s| !s.usable().is_empty()) {
        // Peers starting together then begin on different ranges.
        order.shuffle(&mut rand::rng());
    }
    let mut tasks: JoinSet<(usize, Outcome)> = JoinSet::new();
    let mut views: HashMap<String, View> = HashMap::new();
    let mut last_refresh: Option<Instant> = None;
    let mut trusted: Option<Arc<Trusted>> = None;
    let mut last_manifest_try: Option<Instant> = None;
    let mut unverifiable = 0u32;
    let mut peers_off = false;
    let mut progress = (0u64, Instant::now());
    let started = Instant::now();

    if let Some(s) = &set {
        let peers = s.usable();
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
            (Some(s), false) => s.usable(),
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
        }
        if trusted.is_none()
            && !views.is_empty()
            && last_manifest_try.is_none_or(|t| t.elapsed() >= Duration::from_millis(300))
        {
            last_manifest_try = Some(Instant::now());
            match acquire_manifest(ctx, &views).await {
                ManifestOutcome::Trusted(t) => trusted = Some(Arc::new(t)),
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
            if let Some(s) = &set {
                views.retain(|id, _| !s.is_banned(id));
            }
        }

        let patient = progress.1.elapsed() < PATIENCE;
        let mut cdn_busy = slots.iter().filter(|s| s.st == St::Cdn).count();
        let mut peer_busy = slots.iter().filter(|s| s.st == St::Peer).count();
        let swarm = views.values().any(|v| v.involved)
            || (!peers.is_empty() && started.elapsed() < SWARM_GRACE);
        let cdn_limit = if swarm { CDN_WITH_PEERS } else { usize::MAX };
        let mut claimed: Vec<(usize, Option<OwnedSemaphorePermit>)> = Vec::new();
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
            if let Some(t) = &trusted
                && peer_busy < PEER_PARALLEL
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
                let (ctx, t, conn) = (ctx.clone(), t.clone(), v.conn.clone());
                tasks.spawn(async move {
                    let r = fetch_from_peer(&ctx, &t, &conn, &missing).await;
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
                    match ctx.engine.swarm_fetch_permits.clone().try_acquire_owned() {
                        Ok(p) => Some(p),
                        Err(_) => continue,
                    }
                } else {
                    None
                };
                for r in &ranges {
                    ctx.live.start_fetching(*r);
                }
                slot.st = St::Cdn;
                cdn_busy += 1;
                claimed.push((i, permit));
            }
        }
        if !claimed.is_empty() && !views.is_empty() {
            // Another node may have claimed the same range a moment ago: look again, and
            // leave contested ranges to the lower node id.
            let fresh = refresh(ctx, &peers).await;
            claimed.retain(|&(i, _)| {
                let slot = &mut slots[i];
                let ranges = ctx.group_ranges(&slot.group);
                let missing = ctx.group_missing(&slot.group);
                let contested = fresh.values().any(|v| {
                    !slot.avoid.contains(&v.conn.node_id)
                        && (v.holds_any(&missing)
                            || (v.fetches_any(&ranges) && v.conn.node_id < my_id))
                });
                if contested && patient {
                    for r in &ranges {
                        ctx.live.stop_fetching(*r);
                    }
                    slot.st = St::Todo;
                    false
                } else {
                    true
                }
            });
            views = fresh;
            last_refresh = Some(Instant::now());
        }
        for (i, swarm_permit) in claimed {
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
                    fetch_group(&ctx, &group, start).await
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
