//! Carries out the planner's decisions for one file: looks at the peers, hands the
//! planner a [`Snapshot`], runs the transfers it asks for (peer ranges, origin ranges,
//! checks of claimed chunk hashes) and feeds their outcomes back. All the deciding is in
//! [`super::planner`]; this loop only does I/O.

use crate::metrics::{EVENTS, VerifySource};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use tokio::task::JoinSet;
use xet::XetHash;
use xet::reconstruction::HttpRange;

use super::CLIENT_ORIGIN_RANGES;
use super::cdn::Start;
use super::error::{Kind, PullError};
use super::file_ctx::FileCtx;
use super::file_plan::{Group, XorbSpan, file_xorbs, total_chunks};
use super::origin_parts;
use super::origin_patch::fetch_from_origin;
use super::peer_fetch::{
    ManifestOutcome, PeerFetchError, XorbOutcome, acquire_manifest, failure_of, fetch_from_peer,
    verify_xorb,
};
use super::peer_views::{PeerViews, View, relayed_to_wire};
use super::planner::{self, Action, Planner, Snapshot, Verdict, ends_first};
use super::swarm_origin::{HeldPermit, SwarmSlot};
use super::trust::xorb_entries;
use crate::peer::{PeerConn, PeerError};

/// Daemons asked to pull the same thing at the same moment spread their first claims over
/// this window, so each sees the others' claims before it makes its own.
const FIRST_CLAIM_SPREAD: Duration = Duration::from_millis(200);
const TICK: Duration = Duration::from_millis(50);

enum Outcome {
    Origin(Result<(), PullError>),
    /// The peer, whether the transfer was judged against the origin, how it ended.
    Peer(String, bool, Result<(), PeerFetchError>),
}

/// What the loop has set going: transfers, and claims announced but not yet fetched (with
/// their share of the node's origin streams).
#[derive(Default)]
struct InFlight {
    tasks: JoinSet<(usize, Outcome)>,
    claims: HashMap<usize, Option<SwarmSlot>>,
}

/// Downloads every group of `work` (with where its fetch starts) into the file.
pub async fn run(ctx: &Arc<FileCtx>, work: Vec<(Group, Start)>) -> Result<(), PullError> {
    let set = ctx.engine.peers.clone();
    let private = ctx.live.private;
    let usable = || -> Vec<PeerConn> {
        set.as_ref()
            .map(|s| s.usable_for(private))
            .unwrap_or_default()
    };
    if let Some(s) = &set
        && ctx.engine.discovering
    {
        ctx.engine
            .wanted
            .wait_for_discovery(&ctx.hash, || !s.usable_for(private).is_empty())
            .await;
    }
    let mut order: Vec<usize> = if ctx.for_client {
        // A client reads the file in order; its last xorb, which the next file of a
        // snapshot usually shares, comes early so that file's first chunks prove early too.
        ends_first(work.len())
    } else {
        (0..work.len()).collect()
    };
    if !usable().is_empty() {
        // Peers starting together then begin on different ranges.
        order.shuffle(&mut rand::rng());
    }
    let spans = XorbSpan::of(&ctx.terms);
    let total = total_chunks(&ctx.terms);
    let my_id = set
        .as_ref()
        .map(|s| s.node_id().to_string())
        .unwrap_or_default();
    let mut planner = Planner::new(
        my_id.clone(),
        work.iter().map(|(g, _)| ctx.group_ranges(g)).collect(),
        spans.iter().map(|s| s.file_ranges(&ctx.terms)).collect(),
        order,
        total,
        Instant::now(),
    )
    .with_origin_limit(ctx.for_client.then_some(CLIENT_ORIGIN_RANGES))
    .with_slot_bytes(&work.iter().map(|(g, _)| g.bytes.len()).collect::<Vec<_>>());
    // This node's draw for the file: in a swarm larger than its view, whether it is one
    // of the few that fetch from the origin (`Planner::admitted`).
    let origin_draw = rand::random::<f64>();
    let mut flight = InFlight::default();
    let mut views: HashMap<String, View> = HashMap::new();
    let mut looks = PeerViews::new(ctx);
    let fetchers = ctx.engine.swarm_origin.fetcher_report();
    let mut last_refresh: Option<Instant> = None;
    let started = Instant::now();
    let mut heard_relays = false;

    let peers = usable();
    if !peers.is_empty() {
        views = looks.first_look(&peers).await;
        last_refresh = Some(Instant::now());
        if views.values().any(|v| v.state.involved) {
            tokio::time::sleep(FIRST_CLAIM_SPREAD.mul_f64(rand::random::<f64>())).await;
            // What peers claimed meanwhile is what the spread is for: look again.
            last_refresh = None;
        }
    }

    let xorbs = file_xorbs(&ctx.terms);
    let _lease = ctx.engine.xorb_pool.lease(xorbs.iter().copied());
    let mut settled = vec![false; xorbs.len()];
    let mut pool_seen = ctx.engine.xorb_pool.proofs();
    prove_xorbs(ctx, &xorbs, &mut settled);
    loop {
        let pool_now = ctx.engine.xorb_pool.proofs();
        if pool_now != pool_seen {
            // Another download proved a xorb: it may be one this file shares.
            pool_seen = pool_now;
            prove_xorbs(ctx, &xorbs, &mut settled);
        }
        if planner.finished() {
            return Ok(());
        }
        let peers = if planner.peers_off() {
            Vec::new()
        } else {
            usable()
        };
        if peers.is_empty() {
            views.clear();
        } else {
            // Watched peers' views are as current as their last update; the others are
            // asked at the planner's pace.
            looks.follow(&peers);
            if Planner::refresh_due(last_refresh, Instant::now()) {
                looks.poll(&peers).await;
                last_refresh = Some(Instant::now());
            }
            views = looks.current(&peers);
        }
        drop_banned(ctx, &mut views);
        fetchers.set(
            views
                .values()
                .filter(|v| !v.state.fetching.is_empty())
                .map(|v| v.state.id.clone()),
        );

        if let Some(t) = ctx.live.origin_bytes_at() {
            planner.note_receiving(t);
            // The swarm progresses while the origin sends, though nothing of it can be
            // shown before its xorb is whole: a node whose permit was handed over before
            // its range ended (`HAND_OVER`) stays patient with the crowd, and a claim it
            // makes on another file settles against theirs instead of duplicating them.
            ctx.engine.swarm_origin.note_progress_at(t);
        }
        let snap = snapshot(ctx, &views, peers.len(), origin_draw);
        if planner.note_progress(&snap) {
            ctx.engine.swarm_origin.note_progress();
        }
        // Beyond its view, what this node tells its watchers of origin claims elsewhere.
        let relayed = if planner::relays(snap.swarm_size, snap.peers().len()) {
            planner::relay(
                &my_id,
                &planner.origin_fetched(),
                planner::RELAY_HOPS,
                snap.peers(),
            )
        } else {
            Vec::new()
        };
        if ctx.live.set_relayed(relayed_to_wire(&relayed)) && !relayed.is_empty() {
            tracing::debug!(file = %ctx.name, claims = relayed.len(), "relaying origin claims");
        }
        if !heard_relays && snap.peers().iter().any(|p| !p.relayed.is_empty()) {
            heard_relays = true;
            tracing::debug!(file = %ctx.name, "peers relay origin claims from beyond this node's view");
        }
        // What peers hear of how quiet the file is (`quiet_ms`); nothing until this node
        // knows of some progress.
        if let Some(q) = planner.told_quiet(snap.now) {
            ctx.live
                .note_progressed(snap.now.checked_sub(q).unwrap_or(snap.now));
        }
        if let Some(whole) = planner.trust_due(&snap) {
            if whole {
                match acquire_manifest(ctx, &views).await {
                    ManifestOutcome::Trusted => {
                        tracing::debug!(file = %ctx.name, after = ?started.elapsed(), "chunk manifest trusted");
                    }
                    ManifestOutcome::NotYet => {}
                    ManifestOutcome::Unverifiable => {
                        tracing::warn!(file = %ctx.name, "chunk hashes pieced together from peers do not verify");
                        if planner.manifest_unverifiable() {
                            tracing::warn!(file = %ctx.name, "fetching the rest of this file from the origin");
                            views.clear();
                        }
                    }
                }
            }
            let snap = snapshot(ctx, &views, peers.len(), origin_draw);
            for k in planner.xorbs_to_check(&snap) {
                let span = &spans[k];
                match verify_xorb(ctx, &views, span).await {
                    XorbOutcome::Trusted => {
                        tracing::debug!(file = %ctx.name, xorb = %span.xorb, after = ?started.elapsed(), "xorb chunk hashes trusted")
                    }
                    XorbOutcome::NotYet => {}
                    XorbOutcome::Failed => {
                        planner.xorb_failed(k);
                        tracing::debug!(file = %ctx.name, xorb = %span.xorb, "claimed chunk hashes do not hash to the xorb");
                    }
                }
            }
            drop_banned(ctx, &mut views);
        }

        let snap = snapshot(ctx, &views, peers.len(), origin_draw);
        let actions = planner.assign(&snap);
        carry_out(ctx, &mut planner, &mut flight, &views, &work, actions);
        let due = planner.due_claims(Instant::now());
        if !due.is_empty() {
            // Another node may have claimed the same range meanwhile: look again (watched
            // peers have told us already).
            let fresh = if peers.is_empty() {
                HashMap::new()
            } else {
                looks.poll(&peers).await;
                looks.current(&peers)
            };
            let snap = snapshot(ctx, &fresh, peers.len(), origin_draw);
            let actions = planner.settle(&due, &snap);
            if !peers.is_empty() {
                views = fresh;
                last_refresh = Some(Instant::now());
            }
            carry_out(ctx, &mut planner, &mut flight, &views, &work, actions);
        }

        let next = tokio::select! {
            r = flight.tasks.join_next(), if !flight.tasks.is_empty() => r,
            _ = tokio::time::sleep(TICK) => None,
        };
        let Some(joined) = next else { continue };
        let (i, outcome) = joined
            .map_err(|e| PullError::new(Kind::Internal, format!("download task failed: {e}")))?;
        match outcome {
            Outcome::Origin(r) => {
                r?;
                planner.origin_done(i);
                prove_xorbs(ctx, &xorbs, &mut settled);
            }
            Outcome::Peer(node, _, Ok(())) => {
                planner.peer_done(i, &node, None);
            }
            Outcome::Peer(_, _, Err(PeerFetchError::Fatal(e))) => return Err(e),
            Outcome::Peer(node, seeders_only, Err(PeerFetchError::Peer(e))) => {
                let failure = failure_of(&e, seeders_only);
                if let Some(v) = planner.peer_done(i, &node, Some(&failure)) {
                    apply(ctx, &node, v, &e);
                }
            }
        }
    }
}

/// Proves this file's chunks xorb by xorb: our placed chunks go into the node's xorb
/// pool, and a xorb whose chunks are all there, ours or other files' too, proves ours.
/// Origin bytes are then proven long before the file's Xet hash can be checked.
fn prove_xorbs(ctx: &FileCtx, xorbs: &[XetHash], settled: &mut [bool]) {
    // A proven xorb stays proven: each is settled once, not at every range that ends.
    if settled.iter().all(|s| *s) {
        return;
    }
    let slots = ctx.live.slots();
    let slots = &slots;
    for (x, done) in xorbs.iter().zip(settled.iter_mut()) {
        if *done {
            continue;
        }
        let ours = ctx.terms.iter().filter(|t| t.xorb == *x).flat_map(|t| {
            (0..t.chunks.len()).filter_map(move |j| {
                let p = slots.get((t.first_chunk + j) as usize).copied().flatten()?;
                Some((t.chunks.start + j, (p.hash, p.size)))
            })
        });
        let Some(list) = ctx.engine.xorb_pool.offer(x, ours) else {
            continue;
        };
        *done = true;
        match xorb_entries(x, &ctx.terms, &list) {
            Some(entries) => {
                tracing::debug!(file = %ctx.name, xorb = %x, chunks = entries.len(), "xorb proven");
                ctx.learn(entries)
            }
            None => {
                tracing::warn!(file = %ctx.name, xorb = %x, "the reconstruction's terms do not fit the proven xorb: these chunks wait for the file hash")
            }
        }
    }
}

/// What the planner sees now.
fn snapshot(
    ctx: &FileCtx,
    views: &HashMap<String, View>,
    connected: usize,
    origin_draw: f64,
) -> Snapshot {
    let busy = ctx
        .engine
        .peers
        .as_ref()
        .map(|set| set.busy())
        .unwrap_or_default();
    let peers = views
        .values()
        .map(|v| {
            let mut p = v.state.clone();
            p.rate = v.conn.stats.rate_from();
            p.busy = busy.contains(&p.id);
            p.asked = v.conn.stats.asked();
            p
        })
        .collect();
    let mut snap = Snapshot::new(
        Instant::now(),
        peers,
        ctx.live.held_bitmap(),
        ctx.trust.bitmap(),
    );
    snap.connected = connected;
    snap.swarm_progressed = ctx
        .engine
        .swarm_origin
        .progressed_within(super::planner::PATIENCE);
    snap.swarm_inflight = ctx.engine.swarm_origin.inflight();
    let me = ctx.engine.peers.as_ref().map(|set| set.node_id());
    (snap.fleet_fetchers, snap.fleet_fetchers_below) = ctx
        .engine
        .swarm_origin
        .fleet_fetchers(me.unwrap_or_default());
    snap.handed_over = ctx.engine.swarm_origin.handed_over();
    // As a tracker counts the swarm; without one, the peers in view are all of it.
    snap.swarm_size = ctx.engine.wanted.swarm_size(&ctx.hash);
    snap.origin_draw = origin_draw;
    snap.peer_transfers = ctx.engine.peer_transfers.now();
    snap
}

fn drop_banned(ctx: &FileCtx, views: &mut HashMap<String, View>) {
    if let Some(s) = &ctx.engine.peers {
        views.retain(|id, _| !s.is_banned(id));
    }
}

fn carry_out(
    ctx: &Arc<FileCtx>,
    planner: &mut Planner,
    flight: &mut InFlight,
    views: &HashMap<String, View>,
    work: &[(Group, Start)],
    actions: Vec<Action>,
) {
    let InFlight { tasks, claims } = flight;
    for a in actions {
        match a {
            Action::FetchFromPeer {
                slot,
                peer,
                ranges,
                seeders_only,
            } => {
                let Some(v) = views.get(&peer) else {
                    // Cannot happen: the planner chose from these views.
                    planner.peer_done(slot, &peer, None);
                    continue;
                };
                let (ctx, conn) = (ctx.clone(), v.conn.clone());
                // Counted from now, so the next pass of every file sees it.
                let counted = ctx.engine.peer_transfers.start();
                tasks.spawn(async move {
                    let t0 = Instant::now();
                    let r = fetch_from_peer(&ctx, &conn, &ranges, seeders_only).await;
                    drop(counted);
                    tracing::debug!(file = %ctx.name, peer = ?conn, ranges = ?ranges, seeders_only, took = ?t0.elapsed(), ok = r.is_ok(), "peer range ended");
                    (slot, Outcome::Peer(conn.node_id.clone(), seeders_only, r))
                });
            }
            Action::Claim { slot, swarm_limit } => {
                let permit = match swarm_limit {
                    None => None,
                    Some(limit) => match ctx.engine.swarm_origin.try_take(limit) {
                        Some(p) => Some(p),
                        None => {
                            planner.claim_refused(slot);
                            continue;
                        }
                    },
                };
                for r in planner.ranges(slot) {
                    ctx.live.start_fetching(*r);
                }
                claims.insert(slot, permit);
            }
            Action::Withdraw { slot } => {
                claims.remove(&slot);
                for r in planner.ranges(slot) {
                    ctx.live.stop_fetching(*r);
                }
            }
            Action::FetchFromOrigin { slot } => {
                // Absent when its claim found no free permit: the slot waits again.
                let Some(swarm_permit) = claims.remove(&slot) else {
                    continue;
                };
                let (ctx, group, start) = (ctx.clone(), work[slot].0.clone(), work[slot].1);
                let ranges = planner.ranges(slot).to_vec();
                tasks.spawn(async move {
                    let r = async {
                        let shutting = |_| PullError::new(Kind::Internal, "shutting down");
                        let _client = if ctx.for_client {
                            Some(ctx.engine.client_permits.acquire().await.map_err(shutting)?)
                        } else {
                            None
                        };
                        // One permit per request the range goes out as, taken together and
                        // in turn: the node's requests work on few xorbs and finish them one
                        // after another (`origin_parts`).
                        let range = HttpRange {
                            start: start.byte,
                            end: group.bytes.end,
                        };
                        let parts = origin_parts::requests(
                            range.len(),
                            ctx.engine.origin_requests,
                            ctx.engine.trades(),
                            start.byte == group.bytes.start,
                        );
                        let _permits = ctx
                            .engine
                            .fetch_permits
                            .acquire_many(parts as u32)
                            .await
                            .map_err(shutting)?;
                        let _receiving: Vec<_> =
                            (0..parts).map(|_| ctx.engine.receiving.start()).collect();
                        let t0 = Instant::now();
                        // Held until the transfer nears its end (its pace counted from here).
                        let mut swarm_permit = HeldPermit::new(swarm_permit);
                        let r =
                            fetch_from_origin(&ctx, &group, start, parts, &mut swarm_permit).await;
                        if r.as_ref().is_err_and(|e| e.kind == Kind::Integrity) {
                            EVENTS.verify_failed(VerifySource::Origin);
                        }
                        tracing::debug!(file = %ctx.name, xorb = %group.xorb, chunks = ?group.chunks, parts, took = ?t0.elapsed(), ok = r.is_ok(), "origin range ended");
                        r
                    }
                    .await;
                    for range in ranges {
                        ctx.live.stop_fetching(range);
                    }
                    (slot, Outcome::Origin(r))
                });
            }
        }
    }
}

/// Acts on what a failed transfer says about the peer.
fn apply(ctx: &FileCtx, node: &str, verdict: Verdict, e: &PeerError) {
    let Some(set) = &ctx.engine.peers else { return };
    let short = crate::peer::conn::short(node);
    match verdict {
        Verdict::Ban(why) => set.ban(node, &why),
        Verdict::Strike(why) => {
            tracing::info!(peer = short, file = %ctx.name, "peer lacked chunks it said it held");
            set.strike(node, why);
        }
        Verdict::Choke => {
            let c = &ctx.counters;
            let total = c.bytes_total.load(Ordering::Relaxed);
            let missing = total.saturating_sub(c.bytes_done.load(Ordering::Relaxed));
            set.choke(node, crate::peer::set::choke_for(missing, total))
        }
        Verdict::Bench(why) => {
            tracing::info!(peer = short, file = %ctx.name, "peer transfer abandoned: {e}");
            set.bench(node, why);
        }
        Verdict::Abandon => {
            tracing::info!(peer = short, file = %ctx.name, "peer transfer abandoned: {e}")
        }
    }
}
