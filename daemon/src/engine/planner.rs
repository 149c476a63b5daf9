//! The download planner of one Xet file: from what is known at a moment (which chunks we
//! hold, which chunk hashes are trusted, what each peer holds and is fetching, the clock),
//! it decides what to do next: take a range from a peer, wait for the swarm, claim a range,
//! go to the origin, withdraw a contested claim, check claimed hashes, give up on peers.
//! It returns [`Action`]s; `schedule` carries them out and feeds the results back.
//!
//! Pure: no I/O, and no clock or randomness it is not handed, so tests (and a simulator)
//! can drive it step by step.
//!
//! The policy: each slot (a byte range of one xorb, as the CAS serves it) goes to the first
//! source that works. A peer that holds its missing chunks, once their hashes are trusted;
//! else, if some peer holds or is fetching it and the swarm is making progress, it waits (so
//! a flash crowd fetches each range from the origin about once); else it is claimed, and
//! after a settle window fetched from the origin unless a peer with a lower node id claimed
//! it too. A peer that fails a slot is avoided for it, and the origin is always the
//! fallback, so peers never make a pull slower by more than a patience window.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::held;
pub use super::held::Held;
use super::pieces;
use super::swarm_origin::SwarmOrigin;

/// How stale a view of the peers may get.
pub const REFRESH: Duration = Duration::from_millis(150);
/// How long to wait on peers that make no progress before taking a range from the origin.
pub const PATIENCE: Duration = Duration::from_secs(4);
/// Origin transfers per file a swarm larger than any node's view keeps going at once,
/// fleet-wide, in expectation ([`Planner::admitted`]).
pub const FLEET_ORIGIN_STREAMS: f64 = 2.0;
/// Nodes fetching a file from the origin at once that a node sees among its peers before
/// it starts another origin stream for that file, itself included, while every node of
/// the swarm is in its view ([`Planner::assign`]).
pub const VIEW_ORIGIN_STREAMS: usize = 2;
/// Origin streams a crowd whose every node is in view keeps going at once over all the
/// files of its pulls, this node's own included ([`Planner::assign`]).
pub const VIEW_FLEET_STREAMS: usize = 1;
/// A slot this small on the wire (a few chunks of a xorb several files share, say) takes
/// no place among the origin streams: it is claimed beside them. Behind the one stream of
/// a crowd in view, each such range had cost the link a settle window (measured, a crowd
/// of 4: its large xorbs began 0.7 s into the pull, a lone node's 1.3 s).
pub const SMALL_SLOT_BYTES: u64 = 1 << 20;
/// How long progress that peers only report (no chunk of it visible to us) keeps us
/// waiting on the swarm.
pub const HEARSAY_CAP: Duration = Duration::from_secs(30);
/// Origin ranges in flight per file while peers download it too (they fetch the rest);
/// the engine's swarm permits bound it over all files.
const CDN_WITH_PEERS: usize = 2;
/// With peers connected but none (yet) downloading this file, the origin is used as
/// sparingly as in a swarm for this long, so peers starting a moment later find work left.
const SWARM_GRACE: Duration = Duration::from_secs(1);
/// Peer transfers a node keeps going at once, over all files: as many as one peer serves
/// (`peer::limits::MAX_UPLOADS`), so with links alike they fill its downlink when every
/// peer it asks serves that many. Eight per file (32 for a model of four files) split a
/// late joiner's link into shares that held the upload slots of the few nodes with the
/// newest xorbs for seconds at a tenth of their link, and every node waiting for those
/// xorbs was answered `busy` (simulated staggered rollout over 120 s, 64 and 256 nodes ×
/// 2 GiB: the longest pull 1.23x and 1.28x the one-copy time on average over ten seeds,
/// 1.10x and 1.18x capped).
pub const PEER_TRANSFERS: usize = crate::peer::limits::MAX_UPLOADS;
/// Transfers this node keeps going from one peer, over all files: what a peer serves one
/// connection at once (`peer::limits::MAX_UPLOADS_PER_PEER`). Asking more only earns
/// `busy` answers, and each costs its slot the pause a `busy` peer is given.
pub const PER_PEER: usize = crate::peer::limits::MAX_UPLOADS_PER_PEER;
/// Pieced-together manifests that fail before peers are given up on for this file.
const MAX_UNVERIFIABLE: u32 = 3;
/// Failed checks of a xorb's claimed chunk hashes before only the whole-file manifest is
/// waited for (a xorb this file uses only part of can never pass).
const MAX_XORB_TRIES: u32 = 2;
/// A claim is announced this long before the origin is asked, and then checked against
/// the peers' claims once more. Longer than [`REFRESH`]: two nodes that claim the same range
/// within this window both see both claims at their check (and the lower node id keeps it);
/// a node claiming later already saw the earlier claim and does not claim at all.
pub const CLAIM_SETTLE: Duration = Duration::from_millis(250);
/// A slot seeders hold but have not taken up for this long goes to the origin.
const HEDGE_WAIT: Duration = Duration::from_secs(1);
/// How often claims are gathered again to extend what we can check peers' chunks against.
const TRUST_RETRY: Duration = Duration::from_millis(300);

pub type PeerId = String;
pub type Ranges = Vec<(u32, u32)>;
/// A peer's lists, shared by every view of it: a snapshot is taken many times a second,
/// and copying each peer's lists into each (in the simulator, into each of 64 observers)
/// was most of the cost of a planner pass.
pub type SharedRanges = Arc<Ranges>;

/// What one peer holds of the file, as it last said.
#[derive(Clone, Debug, Default)]
pub struct PeerState {
    pub id: PeerId,
    pub complete: bool,
    /// The peer knows the file (holds, fetches or is downloading some of it).
    pub involved: bool,
    pub held: Held,
    pub fetching: SharedRanges,
    /// Bytes per second recently received from it.
    pub rate: f64,
    /// How long, as it answered, since the swarm last progressed on this file as far as
    /// it knows ([`Planner::quiet`]); None from peers that do not say.
    pub quiet: Option<Duration>,
    /// It answered `busy` a moment ago: nothing is asked of it now, but what it holds
    /// still counts, so its ranges wait for it instead of going to the origin.
    pub busy: bool,
    /// Transfers this node has going from it now, over all files.
    pub asked: usize,
    /// Origin claims the peer relays ([`relay`]: its own peers' and what they relay, up to
    /// [`RELAY_HOPS`] away): beyond a node's view, two drawn fetchers that cannot see each
    /// other otherwise take the same ranges from the origin.
    pub relayed: SharedClaims,
}

/// A claim heard through a peer: `by` is fetching `range` from the origin, `hops` nodes
/// away from the peer that tells it (1: one of its own peers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relayed {
    pub by: PeerId,
    pub range: (u32, u32),
    pub hops: u8,
    /// `by` has the range from the origin already (it spreads from there), rather than
    /// still fetching it.
    pub done: bool,
}

pub type SharedClaims = Arc<Vec<Relayed>>;

/// At most this many claims are relayed per file: beyond a node's view only the few drawn
/// fetchers claim (with 2 ranges each at most), so a fleet's claims on one file are a
/// handful whatever its size; a node that began alone, before the swarm grew past its
/// view, claimed many, and [`relay`] tells them as runs. Peers take more as malformed.
pub const RELAY_CAP: usize = 64;

/// How far from its source a claim is told: three hops beyond the peers that see it
/// directly. Tracker-made meshes are not random graphs: nodes that joined late find the
/// early ones at their connection cap, and two fetchers often share no peer (simulated,
/// 256 nodes × 2 GiB: 1.25 copies relaying 1 hop, 1.00-1.06 with 2). In a rollout of
/// thousands, two hops left a file's drawn fetchers out of each other's hearing, and each
/// took slots the other had taken 1-19 s before (simulated, 4,000 × 10 GiB staggered over
/// 120 s, seed 1: 1.125 copies with 2 hops, 1.044 with 3).
pub const RELAY_HOPS: u8 = 3;

/// Whether a node relays its peers' claims: only where the swarm is larger than its view
/// (`swarm_size` as a tracker counts it, `peers` in view). Within one view every node
/// sees every claim already, and relaying there would multiply control traffic by the
/// number of peers for nothing.
pub fn relays(swarm_size: Option<usize>, peers: usize) -> bool {
    swarm_size.is_some_and(|n| n > peers + 1)
}

/// `a == b`, for node ids compared by the thousand per pass (every relayed claim against
/// this node's own): ids of one length mostly differ in their last byte, and looking at it
/// first spares a call to `memcmp` (6% of a simulated 10,000-node crowd's time).
fn same_id(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.as_bytes().last() == b.as_bytes().last() && a == b
}

/// The claims node `me` relays to its watchers, recomputed from the peers' current states
/// (so a claim dropped at its source is gone everywhere within `max_hops` updates); each
/// once at its fewest hops, one node's touching claims of one distance and kind as one
/// run, nearest first, up to [`RELAY_CAP`]:
/// - the ranges it took from the origin itself (`own_done`, 0 hops, done);
/// - its peers' own origin claims, and each complete peer as the whole file taken (1 hop);
/// - what its peers relay from fewer than `max_hops` hops away, except its own claims.
///
/// Ranges taken are told, not just ranges in flight: a xorb shows as held only to the
/// peers it has reached, and a fetcher a few hops away took it again until then. They are
/// told even once this node holds them (its watchers see them held here; theirs would not
/// hear of them: leaving them out took 1.13-1.25 copies where telling took 1.00-1.06,
/// simulated), and once whoever took them, so complete peers do not fill the list. Complete
/// peers count because in a rollout the first nodes finish, and stop telling what they
/// took, long before the last arrive two hops away (simulated, 256 × 2 GiB arriving over
/// 120 s: 1.31 copies without them, 1.03 with them).
pub fn relay<'a>(
    me: &str,
    own_done: &[(u32, u32)],
    max_hops: u8,
    peers: impl IntoIterator<Item = &'a PeerState>,
) -> Vec<Relayed> {
    let mut out: Vec<Relayed> = own_done
        .iter()
        .map(|&range| Relayed {
            by: me.to_string(),
            range,
            hops: 0,
            done: true,
        })
        .collect();
    for p in peers {
        let whole = p.complete.then(|| p.held.first().copied()).flatten();
        let own = p
            .fetching
            .iter()
            .map(|&range| (p.id.as_str(), range, 1u8, false))
            .chain(whole.map(|range| (p.id.as_str(), range, 1u8, true)));
        let heard = p
            .relayed
            .iter()
            .filter(|c| c.hops < max_hops && !same_id(&c.by, me))
            .map(|c| (c.by.as_str(), c.range, c.hops + 1, c.done));
        for (by, range, hops, done) in own.chain(heard) {
            // A range taken is told once, whoever took it: where it is held matters to
            // nobody but the node that holds it, and complete peers would fill the list.
            match out
                .iter_mut()
                .find(|c| c.range == range && (c.by == by || (done && c.done)))
            {
                Some(c) => {
                    c.hops = c.hops.min(hops);
                    c.done |= done;
                }
                None => out.push(Relayed {
                    by: by.to_string(),
                    range,
                    hops,
                    done,
                }),
            }
        }
    }
    out.sort_by(|a, b| (a.hops, &a.by, a.done, a.range).cmp(&(b.hops, &b.by, b.done, b.range)));
    // One node's claims at one distance, told range by range, filled the list: a node
    // that began alone claims every slot of a file, and the ranges cut off were its last
    // ones, which nodes two hops away then took from the origin again (simulated
    // staggered rollout, 256 nodes × 10 GiB, seed 1: 1.081 copies; 1.000 told as runs).
    out.dedup_by(|next, run| {
        let joins = next.hops == run.hops
            && next.done == run.done
            && next.range.0 <= run.range.1
            && next.by == run.by;
        if joins {
            run.range.1 = run.range.1.max(next.range.1);
        }
        joins
    });
    out.truncate(RELAY_CAP);
    out
}

impl PeerState {
    pub fn held_count(&self) -> u64 {
        self.held.units()
    }
    pub fn holds_all(&self, ranges: &[(u32, u32)]) -> bool {
        ranges.iter().all(|&(a, b)| self.held.covers(a, b))
    }
    pub fn holds_any(&self, ranges: &[(u32, u32)]) -> bool {
        ranges.iter().any(|&(a, b)| self.held.overlaps(a, b))
    }
    pub fn fetches_any(&self, ranges: &[(u32, u32)]) -> bool {
        ranges.iter().any(|&(a, b)| overlaps(&self.fetching, a, b))
    }
    /// Whether it can prove the hashes of `ranges` (a xorb): it holds part of them and
    /// fetches none of them from the origin, so it took that part from peers, which it
    /// could only do once it had proven them all; and it answers a `manifest` for them,
    /// held or not (docs/PROTOCOL.md §4.2).
    pub fn proves(&self, ranges: &[(u32, u32)]) -> bool {
        self.holds_any(ranges) && !self.fetches_any(ranges)
    }
    /// The claims it relays that overlap `ranges`, leaving out `me`'s own (told back).
    fn relays<'a>(
        &'a self,
        me: &'a str,
        ranges: &'a [(u32, u32)],
    ) -> impl Iterator<Item = &'a Relayed> + 'a {
        // The ranges first: comparing ids is the dearer test, and most claims fail the other.
        self.relayed.iter().filter(move |c| {
            ranges.iter().any(|&(a, b)| c.range.0 < b && a < c.range.1) && !same_id(&c.by, me)
        })
    }
}

/// What node `me` takes of slot `index` (`ranges`) from a downloader that can give `avail`:
/// one piece, the one the fewest peers in `s` hold (`pieces::pick`).
fn piece(
    s: &Snapshot,
    me: &str,
    index: usize,
    ranges: &[(u32, u32)],
    avail: &[(u32, u32)],
) -> Ranges {
    pieces::pick(ranges, avail, pieces::turn(me, index), |r, up_to| {
        s.peers
            .iter()
            .filter(|q| q.holds_all(r))
            .take(up_to)
            .count()
    })
}

pub fn covered(ranges: &[(u32, u32)], a: u32, b: u32) -> bool {
    ranges.iter().any(|&(s, e)| s <= a && b <= e)
}

fn overlaps(ranges: &[(u32, u32)], a: u32, b: u32) -> bool {
    ranges.iter().any(|&(s, e)| s < b && a < e)
}

/// Whether the merged list `u` (sorted, disjoint: what [`held::union`] makes) overlaps any of `r`.
/// Its ends are increasing too, so the one range that can overlap `[a, b)` is the first
/// that ends after `a`.
fn any_overlap(u: &[(u32, u32)], r: &[(u32, u32)]) -> bool {
    r.iter().any(|&(a, b)| {
        let i = u.partition_point(|&(_, e)| e <= a);
        u.get(i).is_some_and(|&(s, _)| s < b)
    })
}

/// The claims of other nodes that the peers relay, merged, kept from one pass to the next
/// while every peer's list is the one it was (the lists are shared, so that is one pointer
/// each to compare). Lists change when a claim within [`RELAY_HOPS`] does, a few times a second
/// at most, while a waiting file is planned every [`REFRESH`], and there are up to
/// [`RELAY_CAP`] claims per peer to compare with this node's id and merge.
#[derive(Default)]
struct RelayedUnion {
    /// The lists merged, peer by peer; held here, so a pointer seen equal is the same list
    /// and not a new one at a freed one's address.
    from: Vec<SharedClaims>,
    ranges: Ranges,
}

impl RelayedUnion {
    /// `me`: this node, whose own claims peers relay back.
    fn of(&mut self, s: &Snapshot, me: &str) -> &Ranges {
        let same = self.from.len() == s.peers.len()
            && self
                .from
                .iter()
                .zip(&s.peers)
                .all(|(a, p)| Arc::ptr_eq(a, &p.relayed));
        if !same {
            self.from.clear();
            self.from.extend(s.peers.iter().map(|p| p.relayed.clone()));
            let claims: Ranges = s
                .peers
                .iter()
                .flat_map(|p| p.relayed.iter())
                .filter(|c| !same_id(&c.by, me))
                .map(|c| c.range)
                .collect();
            self.ranges = held::union(std::iter::once(&claims[..]), s.chunks());
        }
        &self.ranges
    }
}

/// What all peers hold without being complete, and fetch, each merged the first time a
/// question of the pass needs it, then kept for the pass (what they hold is kept by the
/// snapshot, what they relay across passes, in [`RelayedUnion`]): most slots are
/// answered by what peers hold, and the other merges are never made. (Merging all four at
/// every pass was 45% of a simulated 2,000-node crowd's time.)
#[derive(Default)]
struct Swarm {
    partial: Option<Ranges>,
    fetching: Option<Ranges>,
    seeders: Option<bool>,
}

impl Swarm {
    /// Whether a peer in view holds the whole file. Without one, whoever holds a chunk is
    /// downloading it too: no slot is held by seeders alone, and what the partial peers
    /// hold is what all of them hold.
    fn seeders(&mut self, s: &Snapshot) -> bool {
        *self
            .seeders
            .get_or_insert_with(|| s.peers.iter().any(|p| p.complete))
    }

    fn partial(&mut self, s: &Snapshot) -> &Ranges {
        self.partial.get_or_insert_with(|| {
            let partial = s.peers.iter().filter(|p| !p.complete);
            held::union(partial.map(|p| &*p.held), s.chunks())
        })
    }

    fn fetching(&mut self, s: &Snapshot) -> &Ranges {
        self.fetching
            .get_or_insert_with(|| held::union(s.peers.iter().map(|p| &p.fetching[..]), s.chunks()))
    }

    /// Whether a peer fetches part of `ranges` or relays another node's claim on it.
    fn fetched(
        &mut self,
        s: &Snapshot,
        me: &str,
        kept: &mut RelayedUnion,
        ranges: &[(u32, u32)],
    ) -> bool {
        any_overlap(self.fetching(s), ranges) || any_overlap(kept.of(s, me), ranges)
    }

    /// Whether some peer not in `avoid` holds a missing chunk of the slot or fetches it;
    /// and whether only complete peers do (nobody fetching it): the hedge's condition.
    fn elsewhere(
        &mut self,
        s: &Snapshot,
        me: &str,
        kept: &mut RelayedUnion,
        avoid: &HashSet<PeerId>,
        ranges: &[(u32, u32)],
        missing: &[(u32, u32)],
    ) -> (bool, bool) {
        if avoid.is_empty() {
            // elsewhere = fetched || held; seeders only = elsewhere && !fetched && !partial,
            // asked in the order that leaves the costliest merges unmade most often.
            if !any_overlap(s.held_union(), missing) {
                return (self.fetched(s, me, kept, ranges), false);
            }
            if !self.seeders(s) || any_overlap(self.partial(s), missing) {
                return (true, false);
            }
            return (true, !self.fetched(s, me, kept, ranges));
        }
        let others = || s.peers.iter().filter(|p| !avoid.contains(&p.id));
        let fetched = |p: &PeerState| {
            p.fetches_any(ranges) || p.relays(me, ranges).any(|c| !avoid.contains(&c.by))
        };
        let elsewhere = others().any(|p| p.holds_any(missing) || fetched(p));
        let crowd = others().any(|p| fetched(p) || (p.holds_any(missing) && !p.complete));
        (elsewhere, elsewhere && !crowd)
    }
}

/// Peers in view fetching some of the file from the origin now.
fn fetchers_in_view(s: &Snapshot) -> usize {
    s.peers.iter().filter(|p| !p.fetching.is_empty()).count()
}

/// Whether a transfer may be asked of `p` now: not choked, not serving this node all it
/// serves one connection (counting the transfers this pass asked of it, `asked`), and not
/// failed for this slot.
fn askable(p: &PeerState, asked: usize, avoid: &HashSet<PeerId>) -> bool {
    !p.busy && p.asked + asked < PER_PEER && (avoid.is_empty() || !avoid.contains(&p.id))
}

/// Whether every peer outside `avoid` that holds part of `missing` answered `busy` lately,
/// or serves this node all it serves one connection.
fn seeders_busy(s: &Snapshot, avoid: &HashSet<PeerId>, missing: &[(u32, u32)]) -> bool {
    let mut holders = s
        .peers
        .iter()
        .filter(|p| !avoid.contains(&p.id) && p.holds_any(missing))
        .peekable();
    holders.peek().is_some() && holders.all(|p| p.busy || p.asked >= PER_PEER)
}

/// What the planner sees at one moment.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub now: Instant,
    /// Usable peers connected, whether or not they know this file.
    pub connected: usize,
    /// Peers that answered about this file: read with [`Snapshot::peers`], changed only
    /// through [`Snapshot::peers_mut`], which forgets what was merged from them.
    peers: Vec<PeerState>,
    /// What the peers hold together ([`held::union`]), made the first time a question
    /// needs it: one pass asks it up to three times (trust, xorbs to check, assign).
    held_union: std::sync::OnceLock<Ranges>,
    /// File chunks on our disk.
    pub ours: Vec<bool>,
    /// File chunks whose hashes are trusted.
    pub trusted: Vec<bool>,
    /// The swarm made progress on another file of this node within [`PATIENCE`].
    pub swarm_progressed: bool,
    /// Origin ranges this node has in flight for swarms, over all files.
    pub swarm_inflight: usize,
    /// Peers in view fetching some file of this node's downloads from the origin now, each
    /// counted once; and those of them whose node id sorts below this node's.
    pub fleet_fetchers: usize,
    pub fleet_fetchers_below: usize,
    /// This node's origin transfers still running whose swarm permit was handed over.
    pub handed_over: usize,
    /// How many nodes the file's swarm has, as a tracker counts them; None when unknown
    /// (the peers in view are then all of it).
    pub swarm_size: Option<usize>,
    /// This node's draw in [0, 1) for the file, fixed for the pull (see [`Planner::admitted`]).
    pub origin_draw: f64,
    /// Transfers this node has going from peers now, over all files.
    pub peer_transfers: usize,
}

impl Snapshot {
    /// A snapshot at `now` of `peers`, all of them connected, with no swarm elsewhere
    /// known: the caller sets the rest.
    pub fn new(now: Instant, peers: Vec<PeerState>, ours: Vec<bool>, trusted: Vec<bool>) -> Self {
        Snapshot {
            now,
            connected: peers.len(),
            peers,
            held_union: Default::default(),
            ours,
            trusted,
            swarm_progressed: false,
            swarm_inflight: 0,
            fleet_fetchers: 0,
            fleet_fetchers_below: 0,
            handed_over: 0,
            swarm_size: None,
            origin_draw: 0.0,
            peer_transfers: 0,
        }
    }

    pub fn peers(&self) -> &[PeerState] {
        &self.peers
    }

    /// The peers, to change in place.
    pub fn peers_mut(&mut self) -> &mut Vec<PeerState> {
        self.held_union.take();
        &mut self.peers
    }

    /// What the peers hold together, sorted and merged.
    fn held_union(&self) -> &Ranges {
        self.held_union
            .get_or_init(|| held::union(self.peers.iter().map(|p| &*p.held), self.chunks()))
    }

    /// The file's chunk count.
    fn chunks(&self) -> u32 {
        u32::try_from(self.ours.len()).unwrap_or(u32::MAX)
    }

    /// The swarm's size where it is larger than what this node sees: then nobody sees
    /// everyone's claims, and claims alone cannot keep the fleet at one copy
    /// ([`Planner::admitted`]).
    fn beyond_view(&self) -> Option<usize> {
        self.swarm_size.filter(|&n| n > self.peers.len() + 1)
    }

    /// The ranges of `[a, b)` not on our disk (chunks past the file's end count as not),
    /// added to `out`. Every waiting slot asks this at every pass: the flags are searched
    /// for the ends of runs, not tested one by one, and a slot with nothing on disk yet
    /// (most of a crowd's, most of the time) is one search.
    fn missing_into(&self, a: u32, b: u32, out: &mut Ranges) {
        let end = (b as usize).min(self.ours.len()).max(a as usize);
        let flags = self.ours.get(a as usize..end).unwrap_or_default();
        let mut i = 0;
        let mut last_reaches_end = false;
        while let Some(k) = flags[i..].iter().position(|have| !have) {
            let start = i + k;
            let run = flags[start..].iter().position(|have| *have);
            i = run.map_or(flags.len(), |r| start + r);
            out.push((a + start as u32, a + i as u32));
            last_reaches_end = run.is_none();
            if last_reaches_end {
                break;
            }
        }
        let past_end = a + flags.len() as u32;
        if past_end < b {
            match out.last_mut() {
                Some(last) if last_reaches_end => last.1 = b,
                _ => out.push((past_end, b)),
            }
        }
    }

    fn missing_of(&self, ranges: &[(u32, u32)]) -> Ranges {
        let mut out = Vec::new();
        self.missing_into_list(ranges, &mut out);
        out
    }

    /// [`Snapshot::missing_of`], added to `out`.
    fn missing_into_list(&self, ranges: &[(u32, u32)], out: &mut Ranges) {
        for &(a, b) in ranges {
            self.missing_into(a, b, out);
        }
    }

    fn trusts(&self, ranges: &[(u32, u32)]) -> bool {
        ranges.iter().all(|&(a, b)| {
            a >= b
                || self
                    .trusted
                    .get(a as usize..b as usize)
                    .is_some_and(|t| !t.contains(&false))
        })
    }

    /// True if every chunk of `ranges` is on our disk or held by some peer.
    fn held_somewhere(&self, ranges: &[(u32, u32)]) -> bool {
        let held = self.held_union();
        self.missing_of(ranges)
            .into_iter()
            .all(|(a, b)| covered(held, a, b))
    }

    /// Whether some peer [`PeerState::proves`] `ranges`. So a xorb's hashes spread a hop
    /// ahead of its bytes: waiting for a peer that holds it all made every hop of a xorb a
    /// whole 64 MiB copy (simulated, 1000 × 2 GiB: 1.35x the one-copy time, 1.26x with the
    /// proof passed on).
    fn proven_by_a_peer(&self, ranges: &[(u32, u32)]) -> bool {
        // Most xorbs not trusted yet are held by no peer in view at all: the union already
        // made says so in one search, where asking peer by peer was a fifth of a simulated
        // 10,000-node crowd's time.
        any_overlap(self.held_union(), ranges) && self.peers.iter().any(|p| p.proves(ranges))
    }

    fn held_total(&self) -> u64 {
        self.peers.iter().map(PeerState::held_count).sum::<u64>()
            + self.ours.iter().filter(|h| **h).count() as u64
    }
}

/// A peer transfer is judged only this long after its first chunk: before, its rate says
/// little.
pub const JUDGE_AFTER: Duration = Duration::from_secs(3);
/// Below this, a transfer loses its range to the origin. Judging sooner, or against the
/// origin's measured rate, took 1.5-2 origin copies in a 4-node crowd of endpoint clients
/// behind a 400 Mbit/s link (peers starved of CPU by their clients looked slow): a peer
/// that stops is caught by silence detection instead, well under a second in.
pub const MIN_RATE: f64 = 2.0 * 1024.0 * 1024.0;
/// A transfer from seeders alone ([`Judge::seeders_only`]) is judged this soon.
pub const JUDGE_SOON: Duration = Duration::from_millis(250);
/// The silence a transfer from seeders alone is allowed: a seeder serves from its disk, so
/// its first chunk comes within a round trip and a read, and its stream has no reason to
/// pause. Losing a range to the origin costs no crowd a copy, while each moment waited on
/// a stopped seeder is added to the pull.
pub const SEEDER_PATIENCE: crate::peer::limits::Patience = crate::peer::limits::Patience {
    first: JUDGE_SOON,
    floor: Duration::from_millis(150),
};
/// With nothing measured of the origin yet, a transfer from seeders alone slower than this
/// loses its range to the origin: any peer worth asking delivers far more (a seeder on
/// loopback serving three nodes at once on a busy 2-core machine: 60 MB/s and more).
pub const SEEDER_FLOOR: f64 = 8.0 * 1024.0 * 1024.0;
/// A transfer from seeders alone loses its range when the origin delivers more than this
/// many times its rate to this node.
pub const ORIGIN_ADVANTAGE: f64 = 2.0;

/// What a peer transfer is judged against.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Judge {
    /// When it was assigned, only complete peers held the range and nobody fetched it:
    /// taking it from the origin costs no crowd anything, so the transfer is judged
    /// against the origin ([`JUDGE_SOON`]). Otherwise only a transfer that stays below
    /// [`MIN_RATE`] for [`JUDGE_AFTER`] loses its range (crowds stay at one copy).
    pub seeders_only: bool,
    /// Bytes per second one origin transfer brought this node lately; None before any.
    pub origin_rate: Option<f64>,
    /// This node was short of CPU a moment ago (`sched_lag`): with no origin rate to
    /// judge against, a seeder is then not held to [`SEEDER_FLOOR`], which only a node
    /// that is not itself the bottleneck can tell.
    pub starved: bool,
    /// Transfers this node receives at once, this one included (`engine::receiving`):
    /// the bar is this transfer's share of what the origin would bring.
    pub transfers: usize,
}

/// Whether a peer transfer that delivered `got` bytes in `elapsed` since its first chunk,
/// with `remaining` to go, is too slow to keep. Its range then goes to the origin, which
/// sends only what is still missing.
pub fn behind(got: u64, remaining: u64, elapsed: Duration, judge: Judge) -> bool {
    if remaining == 0 || elapsed.is_zero() {
        return false;
    }
    let rate = got as f64 / elapsed.as_secs_f64();
    if judge.seeders_only && elapsed >= JUDGE_SOON {
        let share = judge.transfers.max(1) as f64;
        let bar = match judge.origin_rate {
            Some(o) => Some(o / ORIGIN_ADVANTAGE / share),
            None => (!judge.starved).then_some(SEEDER_FLOOR / share),
        };
        if bar.is_some_and(|bar| rate < bar) {
            return true;
        }
    }
    elapsed >= JUDGE_AFTER && rate < MIN_RATE
}

/// `0..n` in file order, but with the last slot second.
pub fn ends_first(n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    if n > 2 {
        order[1..].rotate_right(1);
    }
    order
}

/// What the scheduler is to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Fetch these missing chunks of the slot from the peer, each checked against trust.
    /// `seeders_only`: see [`Judge::seeders_only`].
    FetchFromPeer {
        slot: usize,
        peer: PeerId,
        ranges: Ranges,
        seeders_only: bool,
    },
    /// Announce the slot's ranges as `fetching`, holding one of the node's swarm origin
    /// permits under `swarm_limit` when given (if none is free, report
    /// [`Planner::claim_refused`]).
    Claim {
        slot: usize,
        swarm_limit: Option<usize>,
    },
    /// Fetch the claimed slot from the origin now.
    FetchFromOrigin { slot: usize },
    /// Withdraw the slot's claim: a peer holds it, or claimed it first.
    Withdraw { slot: usize },
}

/// How a peer transfer failed, as far as the planner cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerFailure {
    /// Sent bytes that did not match their trusted hash.
    Lied(String),
    BrokeProtocol(String),
    /// Lacked chunks it said it held.
    Lacked,
    /// Said the file left it (its cache changed, or it found its own copy corrupt): honest,
    /// so no strike; it is not asked for this file's chunks again.
    Gone,
    Busy,
    /// A transfer judged against the origin ([`Judge::seeders_only`]) fell behind it or
    /// went silent: the peer is not asked for this file again (the origin is faster).
    Lagging,
    /// Silent, too slow ([`behind`]), connection lost: not its fault as far as we can tell.
    Other,
}

/// What a failure says about the peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Ban(String),
    Strike(&'static str),
    Choke,
    /// It lost to the origin where only seeders held the range: out of every view of this
    /// node for a while, so the other files' ranges go to the origin too, at once.
    Bench(&'static str),
    /// Nothing against it; this slot goes elsewhere.
    Abandon,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum St {
    Todo,
    /// Announced as `fetching`, waiting out [`CLAIM_SETTLE`] before the origin is asked.
    Claimed,
    Origin,
    Peer,
    Done,
}

struct Slot {
    ranges: Ranges,
    st: St,
    /// Peers that failed this slot.
    avoid: HashSet<PeerId>,
    claimed_at: Option<Instant>,
    /// Since when only complete seeders hold it (and nobody fetches it).
    waiting_since: Option<Instant>,
    /// Goes to the origin although peers hold it: it waited too long on seeders.
    hedged: bool,
    /// At most [`SMALL_SLOT_BYTES`] on the wire ([`Planner::with_slot_bytes`]).
    small: bool,
    /// Its fetch from the origin finished: this node tells the swarm ([`relay`]).
    from_origin: bool,
}

pub struct Planner {
    my_id: PeerId,
    slots: Vec<Slot>,
    order: Vec<usize>,
    spans: Vec<Ranges>,
    span_tries: Vec<u32>,
    total: u32,
    started: Instant,
    /// The most chunks seen held anywhere, and when that number last grew (or our own
    /// origin transfers last received bytes).
    progress: (u64, Instant),
    /// The latest progress anywhere in the swarm that peers told of.
    heard: Instant,
    /// The latest progress this node knows happened (its own held chunks or origin bytes,
    /// or what peers told), for telling peers: unlike `progress` and `heard`, it does not
    /// start at the pull's start, nor count the first look at the peers as growth. A node
    /// that had just started used to tell its peers the swarm had just progressed, and in
    /// a fleet where nodes keep joining, nobody's quiet clock ever reached the point
    /// where a file no node was drawn for gets taken up (simulated: 256 nodes × 2 GiB
    /// with 10%/min churn, 9.5-14.9× the one-copy time).
    known: Option<Instant>,
    /// `note_progress` has looked at the peers before: later growth is progress.
    looked: bool,
    /// The swarm's size when this node was last drawn to fetch from the origin: it stays
    /// drawn for the file until the swarm has doubled since (and another node fetches it),
    /// so the few that were keep taking slots nobody has until the file is whole
    /// somewhere, while the draws of a growing swarm do not pile up ([`Planner::admitted`]).
    drawn: Option<usize>,
    last_trust_try: Option<Instant>,
    /// Xorbs [`Planner::xorbs_to_check`] has named: one it has not is checked at once.
    span_named: Vec<bool>,
    unverifiable: u32,
    peers_off: bool,
    /// Origin ranges in flight at most while no peer shares the file.
    origin_alone: usize,
    relayed: RelayedUnion,
    /// Whether the seeders (complete peers) in view were there before this node held any
    /// of the file, decided when it first sees one: a seeded pull, where a seeder is
    /// waited for rather than parts taken from the downloaders beside it. A seeder that
    /// appears later is a crowd's first node to finish.
    seeders_first: Option<bool>,
}

impl Planner {
    /// `slots`: the file chunk ranges of each slot; `spans`: those of each xorb whose
    /// claimed hashes can be checked against its xorb hash; `order`: the order in which
    /// slots are considered (shuffled when peers start together).
    pub fn new(
        my_id: PeerId,
        slots: Vec<Ranges>,
        spans: Vec<Ranges>,
        order: Vec<usize>,
        total: u32,
        now: Instant,
    ) -> Self {
        Planner {
            my_id,
            slots: slots
                .into_iter()
                .map(|ranges| Slot {
                    ranges,
                    st: St::Todo,
                    avoid: HashSet::new(),
                    claimed_at: None,
                    waiting_since: None,
                    hedged: false,
                    from_origin: false,
                    small: false,
                })
                .collect(),
            order,
            span_tries: vec![0; spans.len()],
            span_named: vec![false; spans.len()],
            spans,
            total,
            started: now,
            progress: (0, now),
            heard: now,
            known: None,
            looked: false,
            drawn: None,
            last_trust_try: None,
            unverifiable: 0,
            peers_off: false,
            origin_alone: usize::MAX,
            relayed: RelayedUnion::default(),
            seeders_first: None,
        }
    }

    /// Marks the slots whose origin range is at most [`SMALL_SLOT_BYTES`] (`bytes`: each
    /// slot's, in order).
    pub fn with_slot_bytes(mut self, bytes: &[u64]) -> Self {
        for (slot, b) in self.slots.iter_mut().zip(bytes) {
            slot.small = *b <= SMALL_SLOT_BYTES;
        }
        self
    }

    /// Bounds the origin ranges in flight while no peer shares the file (None: no bound).
    pub fn with_origin_limit(mut self, limit: Option<usize>) -> Self {
        self.origin_alone = limit.map_or(usize::MAX, |l| l.max(1));
        self
    }

    pub fn finished(&self) -> bool {
        self.slots.iter().all(|s| s.st == St::Done)
    }

    /// Whether some slot waits for a source (is neither in flight nor done). While none
    /// does, nothing but a transfer ending or a claim settling can change a decision.
    pub fn waiting(&self) -> bool {
        self.slots.iter().any(|s| s.st == St::Todo)
    }

    /// Peers' chunk hashes never verified: the rest comes from the origin.
    pub fn peers_off(&self) -> bool {
        self.peers_off
    }

    pub fn ranges(&self, slot: usize) -> &[(u32, u32)] {
        &self.slots[slot].ranges
    }

    /// Whether views of the peers last taken at `last` should be taken again.
    pub fn refresh_due(last: Option<Instant>, now: Instant) -> bool {
        last.is_none_or(|t| now.saturating_duration_since(t) >= REFRESH)
    }

    /// Notes how much the swarm holds; true if it grew (the node-wide clock of swarm
    /// progress should hear of it).
    pub fn note_progress(&mut self, s: &Snapshot) -> bool {
        if let Some(q) = s.peers.iter().filter_map(|p| p.quiet).min()
            && let Some(t) = s.now.checked_sub(q)
        {
            self.heard = self.heard.max(t);
            self.know(t);
        }
        let held = s.held_total();
        let first = !std::mem::replace(&mut self.looked, true);
        if held > self.progress.0 {
            self.progress = (held, s.now);
            if !first {
                self.know(s.now);
            }
            true
        } else {
            false
        }
    }

    fn know(&mut self, t: Instant) {
        self.known = Some(self.known.map_or(t, |k| k.max(t)));
    }

    /// Our origin transfers received bytes: the swarm progresses, though no chunk of it
    /// can be shown before its xorb is whole.
    pub fn note_receiving(&mut self, now: Instant) {
        self.progress.1 = self.progress.1.max(now);
        self.know(now);
    }

    /// What this node tells peers as `quiet_ms`: how long since the file last progressed
    /// as far as it knows for certain; None while it knows of no progress at all.
    pub fn told_quiet(&self, now: Instant) -> Option<Duration> {
        self.known.map(|t| now.saturating_duration_since(t))
    }

    /// How long since the swarm last progressed on this file, as far as this node knows
    /// (itself or what peers said), counting from the pull's start: what its own
    /// decisions go by. Peers are told [`Planner::told_quiet`], so that progress at the
    /// few nodes that fetch from the origin reaches every node within a few hops.
    pub fn quiet(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.progress.1.max(self.heard))
    }

    /// Whether this node may start origin transfers. In a swarm larger than its view,
    /// about [`FLEET_ORIGIN_STREAMS`] nodes may, whatever the swarm's size: those whose
    /// draw falls below that share. The others take what the swarm spreads. Each further
    /// [`PATIENCE`] the swarm stays quiet doubles the share, so a file nobody drew is
    /// taken up by a few nodes at a time, never by the whole fleet at once. The share grows
    /// smoothly, not in steps: nodes let in at the same moment, out of each other's view,
    /// took the same slots from the origin (simulated, 256 x 2 GiB: 1.06 copies), where
    /// one let in after another sees the other's claim relayed.
    ///
    /// A node once drawn stays drawn for the file until the swarm has doubled since and it
    /// hears of another node fetching the file. Drawn for good, the draws of a rollout
    /// piled up: each doubling of the swarm draws about two more nodes per file, and 2,000
    /// nodes arriving over two minutes kept 8-12 drawn per file, 35 origin streams at
    /// once, each so slow (36 s per 64 MiB) that nodes three hops away took its range again
    /// before it was done (simulated: 1.07 copies).
    pub fn admitted(&self, s: &Snapshot) -> bool {
        let Some(n) = s.beyond_view() else {
            return true;
        };
        self.drawn
            .is_some_and(|was| n <= 2 * was || !self.hears_other_fetchers(s))
            || self.draws(s, n)
    }

    /// Whether some other node is fetching this file from the origin, in view or as its
    /// peers relay: a drawn node steps down only then, for a file nobody else fetched was
    /// left to the slow doubling of the share (simulated, 256 × 2 GiB arriving over 120 s,
    /// seed 7: 1.78× the one-copy time, 1.21× staying on).
    fn hears_other_fetchers(&self, s: &Snapshot) -> bool {
        s.peers.iter().any(|p| {
            !p.fetching.is_empty()
                || p.relayed
                    .iter()
                    .any(|c| !c.done && !same_id(&c.by, &self.my_id))
        })
    }

    /// Whether this node's draw falls within the share of a swarm of `n` now.
    fn draws(&self, s: &Snapshot, n: usize) -> bool {
        let waits = self.quiet(s.now).as_secs_f64() / PATIENCE.as_secs_f64();
        s.origin_draw < FLEET_ORIGIN_STREAMS * 2f64.powf(waits.min(64.0)) / n as f64
    }

    fn patient(&self, s: &Snapshot) -> bool {
        let quiet = s.now.saturating_duration_since(self.progress.1);
        // What peers heard counts for a while only: a peer that says the swarm progresses
        // while nothing reaches us holds us up for at most HEARSAY_CAP.
        let heard = s.now.saturating_duration_since(self.heard) < PATIENCE && quiet < HEARSAY_CAP;
        quiet < PATIENCE || heard || s.swarm_progressed
    }

    /// Whether to gather peers' claimed chunk hashes now; `Some(true)` when a whole-file
    /// manifest is worth asking for first (a peer has it all, or the swarm holds every
    /// chunk), then [`Planner::xorbs_to_check`]. At most every [`TRUST_RETRY`], except
    /// that within view a xorb worth checking that no try has named yet is checked at
    /// once: its holder, one hop from every node, has just made it whole, and each of the
    /// crowd's xorbs waited for the next retry before anyone could take it (measured, a
    /// crowd of 4: 0.06-0.35 s from the xorb's last origin byte to the first peer transfer
    /// of it, the last xorb's 0.27 s). Beyond view a xorb's proof travels a hop ahead of
    /// its bytes, and checking at once there bought little (simulated, 1,000 and 10,000
    /// nodes × 10 GiB: 1.049x → 1.045x and 1.049x → 1.050x the one-copy time) for planning
    /// 11% slower (asking at every pass whether anything became checkable).
    pub fn trust_due(&mut self, s: &Snapshot) -> Option<bool> {
        if s.peers.is_empty() || s.trusted.iter().all(|t| *t) {
            return None;
        }
        let waited = self
            .last_trust_try
            .is_none_or(|t| s.now.saturating_duration_since(t) >= TRUST_RETRY);
        if !waited && (s.beyond_view().is_some() || !self.new_to_check(s)) {
            return None;
        }
        self.last_trust_try = Some(s.now);
        Some(s.peers.iter().any(|p| p.complete) || s.held_somewhere(&[(0, self.total)]))
    }

    /// Whether some xorb is worth checking that no try named yet.
    fn new_to_check(&self, s: &Snapshot) -> bool {
        !self.peers_off
            && (0..self.spans.len()).any(|k| !self.span_named[k] && self.checkable(s, k))
    }

    fn checkable(&self, s: &Snapshot, k: usize) -> bool {
        let r = &self.spans[k];
        self.span_tries[k] < MAX_XORB_TRIES
            && !s.trusts(r)
            && (s.held_somewhere(r) || s.proven_by_a_peer(r))
    }

    /// A manifest pieced together from peers did not verify. True when peers are now given
    /// up on for this file.
    pub fn manifest_unverifiable(&mut self) -> bool {
        self.unverifiable += 1;
        if self.unverifiable >= MAX_UNVERIFIABLE {
            self.peers_off = true;
        }
        self.peers_off
    }

    /// The xorbs whose claimed chunk hashes are worth checking now: held somewhere, or
    /// proven by a peer that holds part of them ([`Snapshot::proven_by_a_peer`]); not
    /// trusted yet, not failed too often. Peers then trade a xorb while the origin still
    /// sends others, instead of waiting for whole files.
    pub fn xorbs_to_check(&mut self, s: &Snapshot) -> Vec<usize> {
        if s.peers.is_empty() || self.peers_off {
            return Vec::new();
        }
        let due: Vec<usize> = (0..self.spans.len())
            .filter(|&k| self.checkable(s, k))
            .collect();
        for &k in &due {
            self.span_named[k] = true;
        }
        due
    }

    pub fn xorb_failed(&mut self, span: usize) {
        if let Some(t) = self.span_tries.get_mut(span) {
            *t += 1;
        }
    }

    /// Assigns every slot that waits for a source.
    pub fn assign(&mut self, s: &Snapshot) -> Vec<Action> {
        let patient = self.patient(s);
        let mut origin_busy = self
            .slots
            .iter()
            .filter(|x| !x.small && matches!(x.st, St::Origin | St::Claimed))
            .count();
        // This file's own transfers are among the node's, but may be counted there only
        // from the next pass on.
        let mut peer_busy = s
            .peer_transfers
            .max(self.slots.iter().filter(|x| x.st == St::Peer).count());
        let young = s.now.saturating_duration_since(self.started) < SWARM_GRACE;
        let swarm = s.peers.iter().any(|p| p.involved) || (s.connected > 0 && young);
        let origin_limit = if swarm {
            CDN_WITH_PEERS
        } else {
            self.origin_alone
        };
        let mut permits_taken = 0usize;
        let mut actions = Vec::new();
        let beyond_view = s.beyond_view().is_some();
        // Asked within view only, where it decides anything (below).
        if self.seeders_first.is_none() && !beyond_view && s.peers.iter().any(|p| p.complete) {
            self.seeders_first = Some(!s.ours.contains(&true));
        }
        let admitted = self.admitted(s);
        if let Some(n) = s.beyond_view().filter(|&n| self.draws(s, n)) {
            self.drawn = Some(n);
        }
        // Merged as slots ask, not at every pass.
        let mut merged = Swarm::default();
        // Transfers this pass asks of each peer (by its place in `s.peers`), beside those
        // it has going already; made at the first ask, as most passes ask nothing.
        let mut asked: Vec<usize> = Vec::new();
        let asked_of = |asked: &[usize], k: usize| asked.get(k).copied().unwrap_or(0);
        // Each slot's missing ranges, in one list reused from slot to slot.
        let mut missing = Vec::new();
        for &i in &self.order {
            let slot = &mut self.slots[i];
            if slot.st != St::Todo {
                continue;
            }
            missing.clear();
            s.missing_into_list(&slot.ranges, &mut missing);
            if missing.is_empty() {
                slot.st = St::Done;
                continue;
            }
            if peer_busy < PEER_TRANSFERS
                && s.trusts(&missing)
                && let Some((k, p)) = s
                    .peers
                    .iter()
                    .enumerate()
                    .filter(|&(k, p)| {
                        p.holds_all(&missing) && askable(p, asked_of(&asked, k), &slot.avoid)
                    })
                    .max_by(|a, b| a.1.rate.total_cmp(&b.1.rate))
            {
                asked.resize(s.peers.len(), 0);
                asked[k] += 1;
                let seeders_only = merged.seeders(s)
                    && merged
                        .elsewhere(
                            s,
                            &self.my_id,
                            &mut self.relayed,
                            &slot.avoid,
                            &slot.ranges,
                            &missing,
                        )
                        .1;
                // From a downloader, a piece at a time (`pieces`), within view.
                let ranges = if p.complete || beyond_view {
                    missing.clone()
                } else {
                    piece(s, &self.my_id, i, &slot.ranges, &missing)
                };
                actions.push(Action::FetchFromPeer {
                    slot: i,
                    peer: p.id.clone(),
                    ranges,
                    seeders_only,
                });
                slot.st = St::Peer;
                peer_busy += 1;
                continue;
            }
            // Waiting for a whole slot at each hop made the spread a relay of 64 MiB
            // copies: part of a slot is taken from a peer that has part of it. Beyond a
            // node's view a xorb reaches most nodes over several hops (simulated, 256 × 2
            // GiB: 1.39-1.49x the one-copy time whole, 1.27-1.37x in parts); within it,
            // the few holders' upload slots are the limit (64 × 2 GiB: 1.30x, 1.24x) while
            // nobody holds the whole file. A seeder in view is waited for: parts taken from
            // other downloaders beside it, on daemons short of CPU, lost their ranges to the
            // origin (simulated, 7 pulling from one seed on 2 shared cores: 0.13-0.38
            // copies where there had been none); but only a seeder that was there first
            // ([`Planner::seeders_first`]). At a crowd's end, the first node to finish is
            // a seeder with four upload slots while many nodes hold parts of the last
            // xorbs: waiting on it left most of a crowd idle (simulated, 64 × 2 GiB: a
            // tail of 5-9 s after the origin's last byte, 4-7 s trading parts).
            if (beyond_view
                || self.seeders_first != Some(true)
                || !s.peers.iter().any(|p| p.complete))
                && peer_busy < PEER_TRANSFERS
                && s.trusts(&missing)
                && let Some((k, p, part)) = s
                    .peers
                    .iter()
                    .enumerate()
                    // Whether it holds any of them first: that is one search, and most
                    // peers hold none (intersecting with each was a list made per peer).
                    .filter(|&(k, p)| {
                        p.holds_any(&missing) && askable(p, asked_of(&asked, k), &slot.avoid)
                    })
                    .map(|(k, p)| (k, p, held::intersect(&p.held, &missing)))
                    .filter(|(_, _, part)| !part.is_empty())
                    .max_by_key(|(_, _, part)| part.first().map(|r| r.1 - r.0).unwrap_or(0))
            {
                asked.resize(s.peers.len(), 0);
                asked[k] += 1;
                let part = if beyond_view {
                    vec![part[0]]
                } else {
                    piece(s, &self.my_id, i, &slot.ranges, &part)
                };
                actions.push(Action::FetchFromPeer {
                    slot: i,
                    peer: p.id.clone(),
                    ranges: part,
                    seeders_only: false,
                });
                slot.st = St::Peer;
                peer_busy += 1;
                continue;
            }
            // A node not admitted takes nothing from the origin, and with no seeder in view
            // no hedge clock runs (see below): asking where the slot is held would change
            // nothing. Most of a large crowd is in that state most of the time, and asking
            // merges peers' lists (with those merges, 28% of a simulated 10,000-node
            // crowd's time).
            if beyond_view && !admitted && !merged.seeders(s) {
                slot.waiting_since = None;
                continue;
            }
            let (elsewhere, seeders_only) = merged.elsewhere(
                s,
                &self.my_id,
                &mut self.relayed,
                &slot.avoid,
                &slot.ranges,
                &missing,
            );
            // Seeders busy with other ranges for too long: the origin takes this one
            // meanwhile, so slow seeders never make a pull slower. In a swarm (peers
            // fetching it) waiting stays the rule: that is what keeps a crowd at one copy.
            // The clock runs only while seeders alone hold it: a range that was waited on
            // while the swarm fetched it, and whose chunk hashes are checked only now that
            // it is whole somewhere, is not hedged the moment it appears (in a simulated
            // crowd of 8 that took 1.12 copies).
            // Nor while every seeder holding it answered `busy`: a seeder serving others at
            // capacity is not a slow one, and hedging it sent a seeded fleet's ranges to
            // the origin (0.37 copies with 4 uploads at once). Nor while this node has all
            // the peer transfers it keeps going ([`PEER_TRANSFERS`]): each is judged
            // against the origin itself (`Judge`), and ranges hedged beside them took
            // their link (simulated staggered rollouts of 16 nodes × 2 GiB, eight
            // transfers at once: 1.9-2.9 origin copies when the rest hedged, 1.00 waiting).
            if slot.waiting_since.is_some()
                && (!seeders_only
                    || peer_busy >= PEER_TRANSFERS
                    || seeders_busy(s, &slot.avoid, &missing))
            {
                slot.waiting_since = None;
            }
            let hedge = seeders_only
                && s.now
                    .saturating_duration_since(*slot.waiting_since.get_or_insert(s.now))
                    >= HEDGE_WAIT;
            if (elsewhere && patient && !hedge) || (beyond_view && !admitted) {
                continue;
            }
            // A small slot is claimed beside the streams (`SMALL_SLOT_BYTES`).
            let small = slot.small;
            if !small && origin_busy >= origin_limit {
                continue;
            }
            // Within view, the crowd keeps a few origin streams per file, as the drawn few
            // do beyond it: streams started together share the origin link and end
            // together, and each such wave of xorbs then has to reach every node at once
            // (simulated, 16 and 32 nodes × 2 GiB: 1.31x and 1.80x the one-copy time with
            // a stream per node, 1.17x and 1.21x with two per file). While the swarm stalls,
            // any node may take more.
            if !small
                && swarm
                && !beyond_view
                && patient
                && fetchers_in_view(s) + origin_busy >= VIEW_ORIGIN_STREAMS
            {
                continue;
            }
            // And one stream over all the files: a stream per file still started a wave
            // per node, its xorbs all whole at the end together, and the crowd then traded
            // the last wave with the origin idle (measured, 4 daemons on 2 cores: 1.8 s of
            // a 12.7 s pull after the origin's last byte). One stream at a time makes each
            // xorb whole while the next one comes, and hands its permit over before its end
            // (`swarm_origin::HAND_OVER`), so the link stays busy (simulated: 4 × 0.5 GiB
            // on 2 shared cores 1.42-1.44x → 1.25-1.27x the one-copy time). A node whose
            // stream is ending goes on unless a peer with a lower node id fetches too: two
            // streams started together (before either saw the other) then become one,
            // where each waiting on the other left the link idle for a settle window.
            let others = if s.handed_over > 0 {
                s.fleet_fetchers_below
            } else {
                s.fleet_fetchers.max(fetchers_in_view(s))
            };
            if !small
                && swarm
                && !beyond_view
                && patient
                && others + s.swarm_inflight + permits_taken >= VIEW_FLEET_STREAMS
            {
                continue;
            }
            let swarm_limit = if swarm && !small {
                // In the first moments of a pull, connected peers count as a crowd
                // forming: daemons started together do not see each other's claims yet,
                // and two streams each would put every xorb into one wave.
                let mut crowd = s.peers.iter().filter(|p| p.involved).count();
                if young {
                    crowd = crowd.max(s.connected);
                }
                let limit = SwarmOrigin::limit(crowd);
                if s.swarm_inflight + permits_taken >= limit {
                    continue;
                }
                permits_taken += 1;
                Some(limit)
            } else {
                None
            };
            if !small {
                origin_busy += 1;
            }
            slot.hedged = hedge && elsewhere;
            // A node that fetches while the swarm fits its view counts as drawn at that
            // size: when arrivals take the swarm beyond its view, it keeps the file's
            // origin stream until the swarm has doubled and another node fetches, as a
            // drawn node does. Never drawn, such a node lost its place the moment the
            // swarm outgrew its view, and with arrivals copying what the swarm held
            // (progress, so never quiet enough for the share to grow) nobody took the
            // rest of the file up (simulated, 256 × 2 GiB over 120 s, seeds 44 and 58:
            // no origin bytes for 35 s, 2.2× and 2.0× the one-copy time).
            if !beyond_view && self.drawn.is_none() {
                self.drawn = s.swarm_size;
            }
            actions.push(Action::Claim {
                slot: i,
                swarm_limit,
            });
            if s.peers.is_empty() {
                slot.st = St::Origin;
                actions.push(Action::FetchFromOrigin { slot: i });
            } else {
                slot.st = St::Claimed;
                slot.claimed_at = Some(s.now);
            }
        }
        actions
    }

    /// Claims whose settle window has passed: look at the peers again, then [`Planner::settle`].
    pub fn due_claims(&self, now: Instant) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&i| {
                let x = &self.slots[i];
                x.st == St::Claimed
                    && x.claimed_at
                        .is_some_and(|at| now.saturating_duration_since(at) >= CLAIM_SETTLE)
            })
            .collect()
    }

    /// Settles due claims against a fresh look at the peers: a range some peer now holds,
    /// or one a peer with a lower node id claimed too, is withdrawn while the swarm makes
    /// progress; the rest go to the origin.
    pub fn settle(&mut self, due: &[usize], fresh: &Snapshot) -> Vec<Action> {
        let patient = self.patient(fresh);
        let mut actions = Vec::new();
        for &i in due {
            let slot = &mut self.slots[i];
            if slot.st != St::Claimed {
                continue;
            }
            let missing = fresh.missing_of(&slot.ranges);
            // A claim relayed by a peer settles as a direct one does: the lower node id
            // keeps it, so two drawn fetchers out of each other's view do not both withdraw.
            let me = self.my_id.as_str();
            let contested = fresh.peers.iter().any(|p| {
                !slot.avoid.contains(&p.id)
                    && (p.holds_any(&missing)
                        || (p.fetches_any(&slot.ranges) && p.id.as_str() < me)
                        || p.relays(me, &slot.ranges)
                            .any(|c| c.done || c.by.as_str() < me))
            });
            // Within view the crowd keeps one origin stream over all files
            // ([`VIEW_FLEET_STREAMS`]): when a stream ends, every node sees none and claims
            // a slot of its own; all but the lowest node id's withdraw. Settled slot by
            // slot, they all went to the origin together, and their xorbs became whole
            // together for the crowd to trade at once (simulated, 32 × 2 GiB: eleven
            // streams at a time, a 9.6 s tail after the origin's last byte).
            let crowded =
                !slot.small && fresh.beyond_view().is_none() && fresh.fleet_fetchers_below > 0;
            slot.claimed_at = None;
            if (contested || crowded) && patient && !slot.hedged {
                slot.st = St::Todo;
                actions.push(Action::Withdraw { slot: i });
            } else {
                slot.st = St::Origin;
                actions.push(Action::FetchFromOrigin { slot: i });
            }
        }
        actions
    }

    /// No swarm permit was free for a claim after all.
    pub fn claim_refused(&mut self, slot: usize) {
        let x = &mut self.slots[slot];
        x.st = St::Todo;
        x.claimed_at = None;
    }

    pub fn origin_done(&mut self, slot: usize) {
        self.slots[slot].st = St::Done;
        self.slots[slot].from_origin = true;
    }

    /// The ranges this node took from the origin, for [`relay`].
    pub fn origin_fetched(&self) -> Ranges {
        self.slots
            .iter()
            .filter(|x| x.from_origin)
            .flat_map(|x| x.ranges.iter().copied())
            .collect()
    }

    /// A peer transfer ended; on failure, what to do about the peer.
    pub fn peer_done(
        &mut self,
        slot: usize,
        peer: &str,
        failure: Option<&PeerFailure>,
    ) -> Option<Verdict> {
        let x = &mut self.slots[slot];
        // Whatever is still missing is assigned again at the next pass.
        x.st = St::Todo;
        let f = failure?;
        if *f != PeerFailure::Busy {
            x.avoid.insert(peer.to_string());
        }
        if matches!(f, PeerFailure::Gone | PeerFailure::Lagging) {
            // The whole file left that peer, or the origin beats it: not just this slot.
            for other in &mut self.slots {
                other.avoid.insert(peer.to_string());
            }
        }
        Some(match f {
            PeerFailure::Lied(why) => Verdict::Ban(why.clone()),
            PeerFailure::BrokeProtocol(why) => Verdict::Ban(format!("broke the protocol: {why}")),
            PeerFailure::Lacked => Verdict::Strike("repeatedly lacked chunks it said it held"),
            PeerFailure::Busy => Verdict::Choke,
            PeerFailure::Gone => Verdict::Abandon,
            PeerFailure::Lagging => Verdict::Bench("fell behind the origin, or went silent"),
            // Only this slot goes elsewhere: in a crowd, peers starved of CPU by their own
            // clients go quiet now and then, and benching them cost origin copies.
            PeerFailure::Other => Verdict::Abandon,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0_MS: u64 = 0;

    /// Four slots of 10 chunks each.
    fn planner(now: Instant) -> Planner {
        Planner::new(
            "m".into(),
            (0..4).map(|i| vec![(i * 10, i * 10 + 10)]).collect(),
            vec![vec![(0, 20)], vec![(20, 40)]],
            vec![0, 1, 2, 3],
            40,
            now,
        )
    }

    fn snap(now: Instant, peers: Vec<PeerState>) -> Snapshot {
        Snapshot::new(now, peers, vec![false; 40], vec![false; 40])
    }

    /// A peer in the swarm for the file, holding and fetching nothing.
    fn idle(id: &str) -> PeerState {
        PeerState {
            id: id.into(),
            involved: true,
            ..PeerState::default()
        }
    }

    fn peer(id: &str, held: Ranges, fetching: Ranges, rate: f64) -> PeerState {
        PeerState {
            id: id.into(),
            complete: held == vec![(0, 40)],
            involved: true,
            held: held.into(),
            fetching: fetching.into(),
            rate,
            quiet: None,
            busy: false,
            asked: 0,
            relayed: Default::default(),
        }
    }

    /// A snapshot in which every chunk's hash is trusted.
    fn trusted_snap(t0: Instant, peers: Vec<PeerState>) -> Snapshot {
        let mut s = snap(t0, peers);
        s.trusted = vec![true; 40];
        s
    }

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms + T0_MS)
    }

    #[test]
    fn a_peer_transfer_is_behind_when_it_stays_under_the_minimum_rate() {
        let ms = Duration::from_millis;
        let mib = 1u64 << 20;
        let crowd = Judge {
            seeders_only: false,
            origin_rate: Some(400.0 * mib as f64),
            starved: false,
            transfers: 1,
        };
        assert!(!behind(0, 64 * mib, ms(2900), crowd));
        assert!(!behind(0, 0, ms(5000), crowd));
        assert!(behind(3 * mib, 60 * mib, ms(3000), crowd));
        assert!(
            !behind(9 * mib, 60 * mib, ms(3000), crowd),
            "in a crowd only the minimum rate counts, however fast the origin"
        );
    }

    #[test]
    fn a_transfer_from_seeders_alone_is_judged_against_the_origin_a_quarter_second_in() {
        let ms = Duration::from_millis;
        let mib = 1u64 << 20;
        let unknown = Judge {
            seeders_only: true,
            origin_rate: None,
            starved: false,
            transfers: 1,
        };
        assert!(!behind(mib, 60 * mib, ms(200), unknown), "too soon");
        assert!(
            behind(2 * mib, 60 * mib, ms(500), unknown),
            "4 MiB/s: under the floor"
        );
        assert!(!behind(8 * mib, 60 * mib, ms(500), unknown), "16 MiB/s");
        assert!(
            !behind(2 * mib, 0, ms(500), unknown),
            "nothing left to move"
        );
        let starved = Judge {
            starved: true,
            ..unknown
        };
        assert!(
            !behind(2 * mib, 60 * mib, ms(500), starved),
            "a node short of CPU cannot tell a slow seeder with nothing to compare"
        );
        assert!(
            behind(2 * mib, 60 * mib, ms(3000), starved),
            "the minimum rate holds for everyone"
        );
        assert!(
            behind(
                2 * mib,
                60 * mib,
                ms(500),
                Judge {
                    origin_rate: Some(400.0 * mib as f64),
                    ..starved
                }
            ),
            "a measured origin is compared whatever the load"
        );
        let fast_origin = Judge {
            seeders_only: true,
            origin_rate: Some(400.0 * mib as f64),
            starved: false,
            transfers: 1,
        };
        assert!(
            behind(50 * mib, 200 * mib, ms(500), fast_origin),
            "100 MiB/s against 400"
        );
        assert!(
            !behind(110 * mib, 200 * mib, ms(500), fast_origin),
            "220 MiB/s against 400"
        );
        let slow_origin = Judge {
            seeders_only: true,
            origin_rate: Some(4.0 * mib as f64),
            starved: false,
            transfers: 1,
        };
        assert!(
            !behind(2 * mib, 60 * mib, ms(500), slow_origin),
            "a seeder as fast as the origin is kept"
        );
    }

    #[test]
    fn a_judged_transfer_is_held_to_its_share_of_the_link() {
        let ms = Duration::from_millis;
        let mib = 1u64 << 20;
        // 4 MiB/s: under the floor alone, its share of it among 32 transfers.
        let alone = Judge {
            seeders_only: true,
            origin_rate: None,
            starved: false,
            transfers: 1,
        };
        let among_32 = Judge {
            transfers: 32,
            ..alone
        };
        assert!(behind(2 * mib, 60 * mib, ms(500), alone));
        assert!(!behind(2 * mib, 60 * mib, ms(500), among_32));
        // Against a measured origin of 400 MiB/s: half of it is the bar alone, a
        // thirty-second of that among 32.
        let origin = Judge {
            origin_rate: Some(400.0 * mib as f64),
            ..alone
        };
        assert!(behind(50 * mib, 200 * mib, ms(500), origin));
        assert!(!behind(
            50 * mib,
            200 * mib,
            ms(500),
            Judge {
                transfers: 32,
                ..origin
            }
        ));
        assert!(
            behind(
                2 * mib,
                200 * mib,
                ms(500),
                Judge {
                    transfers: 32,
                    ..origin
                }
            ),
            "4 MiB/s is under a thirty-second of 200"
        );
        // Transfers unknown count as one.
        assert!(behind(
            2 * mib,
            60 * mib,
            ms(500),
            Judge {
                transfers: 0,
                ..alone
            }
        ));
    }

    /// Twelve slots of 10 chunks, all trusted, a seeder holding them all.
    fn seeded(t0: Instant) -> (Planner, impl Fn(Instant, Vec<PeerState>) -> Snapshot) {
        let p = Planner::new(
            "m".into(),
            (0..12).map(|i| vec![(i * 10, i * 10 + 10)]).collect(),
            vec![],
            (0..12).collect(),
            120,
            t0,
        );
        let snap = |now, peers| Snapshot {
            connected: 1,
            swarm_progressed: true,
            ..Snapshot::new(now, peers, vec![false; 120], vec![true; 120])
        };
        (p, snap)
    }

    fn origin_slots(a: &[Action]) -> Vec<usize> {
        a.iter()
            .filter_map(|x| match x {
                Action::FetchFromOrigin { slot } => Some(*slot),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn slots_beyond_the_node_s_peer_transfers_wait_for_seeders_not_the_origin() {
        let t0 = Instant::now();
        let (mut p, snap) = seeded(t0);
        // Five seeders could take ten slots, but the node keeps only PEER_TRANSFERS going.
        let seeders = |asked: [usize; 5]| -> Vec<PeerState> {
            (0..5)
                .map(|k| PeerState {
                    id: format!("s{k}"),
                    complete: true,
                    involved: true,
                    held: vec![(0, 120)].into(),
                    fetching: vec![].into(),
                    rate: 1e6 * (5 - k) as f64,
                    quiet: None,
                    busy: false,
                    asked: asked[k],
                    relayed: Default::default(),
                })
                .collect()
        };
        let a = p.assign(&snap(t0, seeders([0; 5])));
        let to_peer: Vec<(usize, String)> = a
            .iter()
            .filter_map(|x| match x {
                Action::FetchFromPeer { slot, peer, .. } => Some((*slot, peer.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(to_peer.len(), PEER_TRANSFERS, "{a:?}");
        assert!(
            !a.iter().any(|x| matches!(x, Action::Claim { .. })),
            "{a:?}"
        );
        // What they were asked, as their counters and the node's now say. Seconds on,
        // past the hedge wait, the rest still waits: the seeders with room are not slow,
        // the node has all it takes at once.
        let going = |now| Snapshot {
            peer_transfers: PEER_TRANSFERS,
            ..snap(now, seeders([2, 2, 0, 0, 0]))
        };
        for ms in [500, 1000, 3000] {
            let a = p.assign(&going(at(t0, ms)));
            assert!(a.is_empty(), "{ms} ms: {a:?}");
        }
        // Two end: two more go to peers, none to the origin.
        for (slot, peer) in &to_peer[..2] {
            assert_eq!(p.peer_done(*slot, peer, None), None);
        }
        let a = p.assign(&Snapshot {
            peer_transfers: PEER_TRANSFERS - 2,
            ..snap(at(t0, 3100), seeders([0, 2, 0, 0, 0]))
        });
        assert_eq!(
            a.iter()
                .filter(|x| matches!(x, Action::FetchFromPeer { .. }))
                .count(),
            2,
            "{a:?}"
        );
        assert!(
            !a.iter().any(|x| matches!(x, Action::Claim { .. })),
            "{a:?}"
        );
    }

    #[test]
    fn another_file_s_peer_transfers_count_against_the_node_s() {
        let t0 = Instant::now();
        let (mut p, snap) = seeded(t0);
        let seeder = PeerState {
            id: "s".into(),
            complete: true,
            involved: true,
            held: vec![(0, 120)].into(),
            rate: 1e6,
            ..PeerState::default()
        };
        // The node's other downloads have every transfer it keeps going: this file asks
        // nothing of the seeder and waits (no hedge), until one of them ends.
        let busy_node = |now| Snapshot {
            peer_transfers: PEER_TRANSFERS,
            ..snap(now, vec![seeder.clone()])
        };
        for ms in [0, 1000, 2000] {
            let a = p.assign(&busy_node(at(t0, ms)));
            assert!(a.is_empty(), "{ms} ms: {a:?}");
        }
        let a = p.assign(&Snapshot {
            peer_transfers: PEER_TRANSFERS - 1,
            ..snap(at(t0, 2100), vec![seeder.clone()])
        });
        assert_eq!(a.len(), 1, "{a:?}");
        assert!(matches!(a[0], Action::FetchFromPeer { .. }), "{a:?}");
    }

    #[test]
    fn the_swarm_taken_together_answers_as_peer_by_peer() {
        // The one-look answers (no peer avoided) against the per-peer scan (an avoid set
        // naming nobody), over pseudo-random swarms.
        struct Xs(u64);
        impl Xs {
            fn next(&mut self, m: u32) -> u32 {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                (self.0 % u64::from(m)) as u32
            }
            fn ranges(&mut self, n: u32) -> Ranges {
                let mut r: Ranges = (0..n)
                    .map(|_| {
                        let a = self.next(40);
                        (a, a + 1 + self.next(8))
                    })
                    .collect();
                r.sort_unstable();
                r
            }
        }
        let mut x = Xs(0x2545_f491_4f6c_dd1d);
        let nobody: HashSet<PeerId> = ["nobody".to_string()].into();
        for _ in 0..2000 {
            let n = x.next(4);
            let peers: Vec<PeerState> = (0..n)
                .map(|i| {
                    let (h, f, r) = (x.next(3), x.next(2), x.next(2));
                    let relayed = x
                        .ranges(r)
                        .into_iter()
                        .map(|range| Relayed {
                            // Now and then this node's own claim, told back.
                            by: ["me", "far"][x.next(2) as usize].to_string(),
                            range,
                            hops: 1,
                            done: x.next(2) == 0,
                        })
                        .collect::<Vec<_>>();
                    PeerState {
                        id: format!("p{i}"),
                        complete: x.next(4) == 0,
                        involved: true,
                        held: x.ranges(h).into(),
                        fetching: x.ranges(f).into(),
                        relayed: relayed.into(),
                        ..Default::default()
                    }
                })
                .collect();
            let snap = snap(Instant::now(), peers);
            let (a, b) = (1 + x.next(2), 1 + x.next(2));
            let slot = x.ranges(a);
            let missing = x.ranges(b);
            let mut swarm = Swarm::default();
            let mut kept = RelayedUnion::default();
            assert_eq!(
                swarm.elsewhere(&snap, "me", &mut kept, &HashSet::new(), &slot, &missing),
                swarm.elsewhere(&snap, "me", &mut kept, &nobody, &slot, &missing),
                "{:?} {slot:?} {missing:?}",
                snap.peers
            );
        }
    }

    fn claims(a: &[Action]) -> usize {
        a.iter()
            .filter(|x| matches!(x, Action::Claim { .. }))
            .count()
    }

    #[test]
    fn beyond_its_view_a_node_goes_to_the_origin_only_if_drawn_and_more_are_drawn_as_the_swarm_stays_quiet()
     {
        let t0 = Instant::now();
        // Three peers in view, involved, holding and fetching nothing.
        let view = vec![idle("a"), idle("b"), idle("c")];
        let look = |ms, size| Snapshot {
            swarm_size: size,
            // 2 in 1000 are drawn at first; this node is not among them.
            origin_draw: 0.005,
            ..snap(at(t0, ms), view.clone())
        };
        // Within its view, as ever: it claims at once.
        let mut p = planner(t0);
        assert!(claims(&p.assign(&look(0, Some(4)))) > 0);
        assert!(claims(&planner(t0).assign(&look(0, None))) > 0);
        // In a swarm of 1000 it waits: the share, 2 in 1000 doubling every 4 quiet
        // seconds, stays under its draw for 4 log2(2.5) = 5.3 s.
        let mut p = planner(t0);
        for ms in [0, 2000, 4500, 5200] {
            let s = look(ms, Some(1000));
            p.note_progress(&s);
            assert_eq!(claims(&p.assign(&s)), 0, "{ms} ms");
        }
        // A node with a lower draw was let in earlier, not at the same moment: nodes drawn
        // together on a quiet file took the same slots (simulated, 256 x 2 GiB: 1.06 copies
        // with the share doubled in steps, 1.00 growing smoothly).
        let mut lower = planner(t0);
        let s = Snapshot {
            origin_draw: 0.004,
            ..look(4500, Some(1000))
        };
        lower.note_progress(&s);
        assert!(
            claims(&lower.assign(&s)) > 0,
            "0.004 is in at 4 log2(2) = 4 s"
        );
        // 5.4 quiet seconds make the share 5.1 in 1000: now it is drawn.
        let s = look(5400, Some(1000));
        p.note_progress(&s);
        assert!(claims(&p.assign(&s)) > 0);
        // The swarm progresses again (its own transfer receives): the share is back to 2
        // in 1000, but a node once drawn keeps taking slots; one never drawn does not.
        p.note_receiving(at(t0, 5500));
        let s = look(5600, Some(1000));
        assert!(claims(&p.assign(&s)) > 0);
        let mut never = planner(t0);
        never.note_receiving(at(t0, 5500));
        assert_eq!(claims(&never.assign(&s)), 0);
    }

    #[test]
    fn a_node_that_fetched_within_view_keeps_its_place_when_the_swarm_outgrows_its_view() {
        let t0 = Instant::now();
        let view = vec![idle("a"), idle("b"), idle("c")];
        let look = |ms, size| Snapshot {
            swarm_size: Some(size),
            origin_draw: 0.5,
            ..snap(at(t0, ms), view.clone())
        };
        // A swarm of 4 fits the view: it claims, whatever its draw.
        let mut p = planner(t0);
        assert!(claims(&p.assign(&look(0, 4))) > 0);
        // Arrivals take the swarm to 1000 while the swarm progresses (so the share stays
        // at 2 in 1000, far below its draw) and nobody else fetches: it goes on taking
        // slots, as a drawn node does; one that never fetched does not.
        p.note_receiving(at(t0, 5500));
        assert!(claims(&p.assign(&look(5600, 1000))) > 0);
        let mut never = planner(t0);
        never.note_receiving(at(t0, 5500));
        assert_eq!(claims(&never.assign(&look(5600, 1000))), 0);
        // Once the swarm has doubled and another node fetches, it steps down.
        let fetcher = PeerState {
            fetching: Arc::new(vec![(30, 40)]),
            ..idle("c")
        };
        let s = Snapshot {
            swarm_size: Some(1000),
            origin_draw: 0.5,
            ..snap(at(t0, 5700), vec![idle("a"), idle("b"), fetcher])
        };
        assert!(!p.admitted(&s));
    }

    #[test]
    fn a_drawn_node_stays_drawn_until_the_swarm_has_doubled_and_another_node_fetches() {
        let t0 = Instant::now();
        // Peer c fetches the file from the origin.
        let c = PeerState {
            fetching: Arc::new(vec![(30, 40)]),
            ..idle("c")
        };
        let view = vec![idle("a"), idle("b"), c];
        let look = |size, draw| Snapshot {
            swarm_size: Some(size),
            origin_draw: draw,
            ..snap(t0, view.clone())
        };
        // Drawn in a swarm of 100: 0.015 is within the share of 2 in 100.
        let mut p = planner(t0);
        assert!(claims(&p.assign(&look(100, 0.015))) > 0);
        assert!(
            p.admitted(&look(200, 0.015)),
            "still drawn in a swarm of 200, where 0.015 is beyond the share"
        );
        assert!(
            !planner(t0).admitted(&look(200, 0.015)),
            "one never drawn is not"
        );
        assert!(
            !p.admitted(&look(201, 0.015)),
            "once the swarm has doubled, its draw counts as anyone's"
        );
        let alone = Snapshot {
            swarm_size: Some(201),
            origin_draw: 0.015,
            ..snap(t0, vec![idle("a"), idle("b"), idle("c")])
        };
        assert!(
            p.admitted(&alone),
            "but it stays on while it hears of nobody else fetching the file"
        );
        let relayed_only = Snapshot {
            swarm_size: Some(201),
            origin_draw: 0.015,
            ..snap(
                t0,
                vec![PeerState {
                    relayed: Arc::new(vec![Relayed {
                        by: "far".into(),
                        range: (20, 30),
                        hops: 2,
                        done: false,
                    }]),
                    ..idle("a")
                }],
            )
        };
        assert!(
            !p.admitted(&relayed_only),
            "a fetcher heard of through a peer counts"
        );
        // Drawn again as the swarm grows (0.005 is within 2 in 300): counted from there.
        let mut q = planner(t0);
        q.assign(&look(100, 0.005));
        q.assign(&look(300, 0.005));
        assert!(q.admitted(&look(600, 0.005)));
        assert!(!q.admitted(&look(601, 0.005)));
    }

    #[test]
    fn a_node_tells_peers_only_progress_it_knows_of_not_its_own_start() {
        let t0 = Instant::now();
        let holder = |held: Ranges, quiet| PeerState {
            id: "h".into(),
            involved: true,
            held: held.into(),
            quiet,
            ..PeerState::default()
        };
        let mut p = planner(t0);
        assert_eq!(p.told_quiet(at(t0, 100)), None);
        // The first look finds chunks held: what was there before, not progress.
        p.note_progress(&snap(at(t0, 100), vec![holder(vec![(0, 10)], None)]));
        assert_eq!(p.told_quiet(at(t0, 500)), None);
        // A peer says the swarm last progressed 60 s ago: passed on as it is, while our
        // own decisions count from our start (here the first look, 100 ms in).
        p.note_progress(&snap(
            at(t0, 500),
            vec![holder(vec![(0, 10)], Some(Duration::from_secs(60)))],
        ));
        assert_eq!(
            p.told_quiet(at(t0, 1500)),
            Some(Duration::from_millis(61_000))
        );
        assert_eq!(p.quiet(at(t0, 1500)), Duration::from_millis(1400));
        // Growth seen after the first look is progress.
        p.note_progress(&snap(at(t0, 2000), vec![holder(vec![(0, 20)], None)]));
        assert_eq!(p.told_quiet(at(t0, 2500)), Some(Duration::from_millis(500)));
        // So are our own origin bytes.
        let mut p = planner(t0);
        p.note_receiving(at(t0, 300));
        assert_eq!(p.told_quiet(at(t0, 400)), Some(Duration::from_millis(100)));
    }

    #[test]
    fn progress_peers_report_keeps_a_node_waiting_but_only_for_a_while() {
        let t0 = Instant::now();
        // A peer fetching everything: waited for while the swarm progresses.
        let fetcher = |quiet| PeerState {
            id: "f".into(),
            involved: true,
            fetching: vec![(0, 40)].into(),
            quiet,
            ..PeerState::default()
        };
        let mut p = planner(t0);
        // It says nothing of progress: after PATIENCE with nothing held, we claim.
        let s = snap(at(t0, 4100), vec![fetcher(None)]);
        p.note_progress(&s);
        assert!(claims(&p.assign(&s)) > 0);
        // It says the swarm progressed a moment ago, each time we look: we wait...
        let mut p = planner(t0);
        for ms in (0..29_000).step_by(1000) {
            let s = snap(at(t0, ms), vec![fetcher(Some(Duration::from_millis(100)))]);
            p.note_progress(&s);
            assert_eq!(claims(&p.assign(&s)), 0, "{ms} ms");
        }
        // ...but hearsay alone holds us for HEARSAY_CAP at most.
        let s = snap(at(t0, 30_500), vec![fetcher(Some(Duration::ZERO))]);
        p.note_progress(&s);
        assert!(claims(&p.assign(&s)) > 0);
        // Our own origin transfers receiving bytes count as progress, and we tell peers.
        let mut p = planner(t0);
        p.note_receiving(at(t0, 6000));
        assert_eq!(p.quiet(at(t0, 6500)), Duration::from_millis(500));
        let s = snap(at(t0, 6500), vec![fetcher(None)]);
        assert_eq!(claims(&p.assign(&s)), 0);
    }

    #[test]
    fn the_hedge_clock_starts_when_only_seeders_hold_the_slot() {
        let t0 = Instant::now();
        let (mut p, snap) = seeded(t0);
        let fetcher = PeerState {
            id: "f".into(),
            complete: false,
            involved: true,
            held: vec![].into(),
            fetching: vec![(0, 120)].into(),
            rate: 0.0,
            quiet: None,
            busy: false,
            asked: 0,
            relayed: Default::default(),
        };
        // Five seconds of a crowd fetching everything: waited for, not claimed.
        for ms in [0, 1000, 3000, 5000] {
            let a = p.assign(&snap(at(t0, ms), vec![fetcher.clone()]));
            assert!(a.is_empty(), "{ms} ms: {a:?}");
        }
        // Then it completes, but its chunk hashes are not trusted yet: it is waited for
        // (the trust check comes next), not hedged at once.
        let done = PeerState {
            complete: true,
            held: vec![(0, 120)].into(),
            fetching: vec![].into(),
            ..fetcher
        };
        let untrusted = |now| Snapshot {
            trusted: vec![false; 120],
            ..snap(now, vec![done.clone()])
        };
        assert!(p.assign(&untrusted(at(t0, 5050))).is_empty());
        assert!(p.assign(&untrusted(at(t0, 5500))).is_empty());
        // A second later with still no way to take it from the seeder, the origin does.
        let a = p.assign(&untrusted(at(t0, 6050)));
        assert!(a.iter().any(|x| matches!(x, Action::Claim { .. })), "{a:?}");
    }

    #[test]
    fn a_seeder_that_answers_busy_is_waited_for_not_hedged() {
        let t0 = Instant::now();
        let (mut p, snap) = seeded(t0);
        let mut seeder = PeerState {
            id: "s".into(),
            complete: true,
            involved: true,
            held: vec![(0, 120)].into(),
            rate: 1e6,
            busy: true,
            asked: 0,
            ..PeerState::default()
        };
        // Busy for seconds on end (serving others at capacity): nothing is claimed.
        for ms in [0, 1000, 2000, 3000] {
            let a = p.assign(&snap(at(t0, ms), vec![seeder.clone()]));
            assert!(a.is_empty(), "{ms} ms: {a:?}");
        }
        // Free again but not taking the slots up (slow): the hedge clock starts only now.
        seeder.busy = false;
        seeder.rate = 0.0;
        let first = p.assign(&snap(at(t0, 3050), vec![seeder.clone()]));
        assert!(
            first
                .iter()
                .all(|x| matches!(x, Action::FetchFromPeer { .. })),
            "{first:?}"
        );
    }

    #[test]
    fn slots_a_crowd_is_fetching_are_waited_for_not_hedged() {
        let t0 = Instant::now();
        let (mut p, snap) = seeded(t0);
        // A peer downloading too: it holds slot 0..8 and fetches the rest.
        let crowd = PeerState {
            id: "c".into(),
            complete: false,
            involved: true,
            held: vec![(0, 80)].into(),
            fetching: vec![(80, 120)].into(),
            rate: 1e6,
            quiet: None,
            busy: false,
            asked: 0,
            relayed: Default::default(),
        };
        let first = p.assign(&snap(t0, vec![crowd.clone()]));
        assert_eq!(first.len(), PER_PEER, "{first:?}");
        // Its two transfers still going, three seconds on: the rest waits for it.
        let a = p.assign(&snap(
            at(t0, 3000),
            vec![PeerState {
                asked: PER_PEER,
                ..crowd
            }],
        ));
        assert!(origin_slots(&a).is_empty() && a.is_empty(), "{a:?}");
    }

    #[test]
    fn alone_every_slot_goes_to_the_origin_at_once() {
        let t0 = Instant::now();
        let mut p = planner(t0);
        let a = p.assign(&snap(t0, vec![]));
        let expected: Vec<Action> = (0..4)
            .flat_map(|slot| {
                [
                    Action::Claim {
                        slot,
                        swarm_limit: None,
                    },
                    Action::FetchFromOrigin { slot },
                ]
            })
            .collect();
        assert_eq!(a, expected);
        assert!(p.assign(&snap(t0, vec![])).is_empty(), "all in flight");
        for slot in 0..4 {
            assert!(!p.finished());
            p.origin_done(slot);
        }
        assert!(p.finished());
    }

    /// `missing_of` and `trusts` search for runs; they must answer as a walk over the flags
    /// one by one does, for every pattern of flags and every range, past the end too.
    #[test]
    fn missing_and_trusted_ranges_match_a_walk_flag_by_flag() {
        // The flags walked one by one, by the wire's own run finder over "not held".
        let walk = |flags: &[bool], a: u32, b: u32| -> Ranges {
            let missing = (a..b).map(|i| !flags.get(i as usize).copied().unwrap_or(false));
            crate::peer::wire::ranges_of(missing)
                .into_iter()
                .map(|(s, e)| (a + s, a + e))
                .collect()
        };
        let t0 = Instant::now();
        for len in 0..7usize {
            for bits in 0..(1u32 << len) {
                let flags: Vec<bool> = (0..len).map(|i| bits >> i & 1 == 1).collect();
                let s = Snapshot::new(t0, Vec::new(), flags.clone(), flags.clone());
                for a in 0..=len as u32 + 2 {
                    for b in 0..=len as u32 + 2 {
                        let want = walk(&flags, a, b);
                        assert_eq!(s.missing_of(&[(a, b)]), want, "{flags:?} [{a}, {b})");
                        assert_eq!(s.trusts(&[(a, b)]), want.is_empty(), "{flags:?} [{a}, {b})");
                        let two = [(0, a.min(b)), (a.min(b), b.max(a))];
                        let mut both = walk(&flags, two[0].0, two[0].1);
                        both.extend(walk(&flags, two[1].0, two[1].1));
                        assert_eq!(s.missing_of(&two), both, "{flags:?} {two:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn ends_first_puts_the_last_slot_second() {
        assert_eq!(ends_first(0), Vec::<usize>::new());
        assert_eq!(ends_first(2), vec![0, 1]);
        assert_eq!(ends_first(5), vec![0, 4, 1, 2, 3]);
    }

    #[test]
    fn an_origin_limit_bounds_ranges_in_flight_in_file_order() {
        let t0 = Instant::now();
        let mut p = planner(t0).with_origin_limit(Some(2));
        let a = p.assign(&snap(t0, vec![]));
        let started: Vec<usize> = a
            .iter()
            .filter_map(|x| match x {
                Action::FetchFromOrigin { slot } => Some(*slot),
                _ => None,
            })
            .collect();
        assert_eq!(started, vec![0, 1]);
        p.origin_done(0);
        let a = p.assign(&snap(t0, vec![]));
        assert!(a.contains(&Action::FetchFromOrigin { slot: 2 }), "{a:?}");
        assert!(!a.contains(&Action::FetchFromOrigin { slot: 3 }), "{a:?}");
    }

    #[test]
    fn chunks_already_here_need_no_source() {
        let t0 = Instant::now();
        let mut p = planner(t0);
        let mut s = snap(t0, vec![]);
        s.ours = vec![true; 40];
        assert!(p.assign(&s).is_empty());
        assert!(p.finished());
    }

    #[test]
    fn trusted_ranges_go_to_the_fastest_peer_holding_them() {
        let t0 = Instant::now();
        let mut p = planner(t0);
        let mut s = snap(
            t0,
            vec![
                peer("a", vec![(0, 40)], vec![], 1.0),
                peer("b", vec![(0, 40)], vec![], 9.0),
                peer("c", vec![(0, 15)], vec![], 99.0),
            ],
        );
        s.trusted = vec![true; 40];
        s.ours[12] = true;
        let a = p.assign(&s);
        assert_eq!(
            a[1],
            Action::FetchFromPeer {
                slot: 1,
                peer: "b".into(),
                ranges: vec![(10, 12), (13, 20)],
                seeders_only: false,
            }
        );
        // From a downloader, one piece of it (`pieces`).
        assert_eq!(
            a[0],
            Action::FetchFromPeer {
                slot: 0,
                peer: "c".into(),
                ranges: pieces::pick(&[(0, 10)], &[(0, 10)], pieces::turn("m", 0), |_, _| 3),
                seeders_only: false,
            },
            "the fastest peer that holds all of the slot's missing chunks"
        );
        assert!(
            matches!(&a[0], Action::FetchFromPeer { ranges, .. } if ranges.len() == 1 && ranges[0].1 - ranges[0].0 <= 3)
        );
        assert_eq!(a.len(), 4);
    }

    #[test]
    fn untrusted_chunks_are_waited_for_while_the_swarm_progresses() {
        let t0 = Instant::now();
        let mut p = planner(t0);
        let peers = vec![peer("a", vec![(0, 40)], vec![], 1.0)];
        let s = snap(t0, peers.clone());
        assert!(p.note_progress(&s));
        assert!(
            p.assign(&s).is_empty(),
            "held by a peer, hashes not trusted yet"
        );
        // Four seconds with no growth anywhere: the origin, under the swarm limit.
        let later = snap(at(t0, 4_100), peers);
        assert!(!p.note_progress(&later));
        let a = p.assign(&later);
        assert_eq!(
            a,
            vec![
                Action::Claim {
                    slot: 0,
                    swarm_limit: Some(2)
                },
                Action::Claim {
                    slot: 1,
                    swarm_limit: Some(2)
                }
            ],
            "two origin streams beside one peer"
        );
    }

    #[test]
    fn a_crowd_keeps_one_origin_stream_per_node() {
        let t0 = Instant::now();
        let mut p = planner(t0);
        let crowd = vec![
            peer("a", vec![], vec![], 0.0),
            peer("b", vec![], vec![], 0.0),
        ];
        let mut s = snap(t0, crowd);
        let a = p.assign(&s);
        assert_eq!(
            a,
            vec![Action::Claim {
                slot: 0,
                swarm_limit: Some(1)
            }]
        );
        // The node's one permit is taken (by this file or another): nothing more.
        s.swarm_inflight = 1;
        assert!(p.assign(&s).is_empty());
    }

    #[test]
    fn a_small_slot_is_claimed_beside_the_crowds_stream() {
        let t0 = Instant::now();
        // Slot 1 is a few chunks on the wire; another node carries the crowd's stream.
        let mut p = planner(t0).with_slot_bytes(&[64 << 20, 100 << 10, 64 << 20, 64 << 20]);
        let mut s = snap(t0, vec![peer("a", vec![], vec![], 0.0)]);
        s.fleet_fetchers = 1;
        let a = p.assign(&s);
        assert_eq!(
            a,
            vec![Action::Claim {
                slot: 1,
                swarm_limit: None
            }]
        );
        // Nobody streams: the node takes the stream as well, the small claim beside it.
        s.fleet_fetchers = 0;
        let a = p.assign(&s);
        assert_eq!(
            a,
            vec![Action::Claim {
                slot: 0,
                swarm_limit: Some(2)
            }]
        );
    }

    #[test]
    fn within_view_a_crowd_keeps_one_origin_stream_over_all_files() {
        let t0 = Instant::now();
        // Two peers in view fetch slots 0 and 1 from the origin: slots 2 and 3 wait.
        let fetching = vec![
            peer("a", vec![], vec![(0, 10)], 0.0),
            peer("b", vec![], vec![(10, 20)], 0.0),
            peer("c", vec![], vec![], 0.0),
        ];
        let mut p = planner(t0);
        let s = snap(t0, fetching.clone());
        p.note_progress(&s);
        let a = p.assign(&s);
        assert!(
            !a.iter().any(|x| matches!(x, Action::Claim { .. })),
            "{a:?}"
        );
        let claims = |a: &[Action]| {
            a.iter()
                .filter(|x| matches!(x, Action::Claim { .. }))
                .count()
        };
        // One fetcher of this file in view: it is the crowd's one stream.
        let one = vec![fetching[0].clone(), fetching[2].clone()];
        let a = planner(t0).assign(&snap(t0, one));
        assert_eq!(claims(&a), 0, "{a:?}");
        // Nobody fetches this file, but a peer fetches another one: the same.
        let idle = vec![fetching[2].clone()];
        let mut other = snap(t0, idle.clone());
        other.fleet_fetchers = 1;
        let a = planner(t0).assign(&other);
        assert_eq!(claims(&a), 0, "{a:?}");
        // Nobody fetches anything: one stream, not one per free slot.
        let a = planner(t0).assign(&snap(t0, idle.clone()));
        assert_eq!(claims(&a), 1, "{a:?}");
        // Nor while this node's permit is out (on this file or another).
        let mut own = snap(t0, idle.clone());
        own.swarm_inflight = 1;
        let a = planner(t0).assign(&own);
        assert_eq!(claims(&a), 0, "{a:?}");
        // This node's stream is ending (its permit handed over) and another node fetches
        // too: the lower node id goes on, the other stops.
        let mut ending = snap(t0, idle);
        ending.handed_over = 1;
        ending.fleet_fetchers = 1;
        ending.fleet_fetchers_below = 1;
        let a = planner(t0).assign(&ending);
        assert_eq!(claims(&a), 0, "{a:?}");
        ending.fleet_fetchers_below = 0;
        let a = planner(t0).assign(&ending);
        assert_eq!(claims(&a), 1, "{a:?}");
        // The swarm quiet for longer than the patience: the bound gives way.
        let later = snap(at(t0, 4_100), fetching);
        assert!(!p.note_progress(&later));
        let a = p.assign(&later);
        assert!(a.iter().any(|x| matches!(x, Action::Claim { .. })), "{a:?}");
        // Beyond its view the draw decides instead (`admitted`).
        let mut beyond = snap(
            t0,
            vec![
                peer("a", vec![], vec![(0, 10)], 0.0),
                peer("b", vec![], vec![(10, 20)], 0.0),
            ],
        );
        beyond.swarm_size = Some(1000);
        beyond.origin_draw = 0.0;
        let a = planner(t0).assign(&beyond);
        assert!(a.iter().any(|x| matches!(x, Action::Claim { .. })), "{a:?}");
    }

    #[test]
    fn a_busy_holder_is_waited_for_not_asked_and_not_replaced_by_the_origin() {
        let t0 = Instant::now();
        let mut p = planner(t0);
        // Another downloader holds slot 0 (trusted), and answered `busy` a moment ago.
        let mut holder = peer("h", vec![(0, 10)], vec![(10, 40)], 1e6);
        holder.busy = true;
        let mut s = snap(t0, vec![holder.clone()]);
        s.trusted[..10].fill(true);
        p.note_progress(&s);
        let a = p.assign(&s);
        assert!(
            !a.iter().any(|x| matches!(x, Action::FetchFromPeer { .. })),
            "a busy peer is asked nothing: {a:?}"
        );
        assert!(
            !a.iter().any(|x| matches!(x, Action::Claim { slot: 0, .. })),
            "what it holds waits for it: {a:?}"
        );
        // A moment later it is free again: the slot comes from it.
        holder.busy = false;
        let mut s = snap(at(t0, 1000), vec![holder]);
        s.trusted[..10].fill(true);
        let a = p.assign(&s);
        assert!(
            a.iter()
                .any(|x| matches!(x, Action::FetchFromPeer { slot: 0, peer, .. } if peer == "h")),
            "{a:?}"
        );
    }

    #[test]
    fn claims_settle_to_the_lower_node_id() {
        let t0 = Instant::now();
        let mut p = planner(t0);
        let s = snap(t0, vec![peer("z", vec![], vec![], 0.0)]);
        p.note_progress(&s);
        let a = p.assign(&s);
        assert!(matches!(a[0], Action::Claim { slot: 0, .. }));
        // Within view one claim at a time: with no permit taken here (the engine's), the
        // next pass claims the next slot.
        let a = p.assign(&s);
        assert!(matches!(a[0], Action::Claim { slot: 1, .. }));
        assert!(p.due_claims(at(t0, 100)).is_empty(), "still settling");
        let due = p.due_claims(at(t0, 300));
        assert_eq!(due, vec![0, 1]);
        // Slot 0 is claimed by a lower id too, slot 1 by a higher one.
        let fresh = snap(
            at(t0, 300),
            vec![
                peer("a", vec![], vec![(0, 10)], 0.0),
                peer("z", vec![], vec![(10, 20)], 0.0),
            ],
        );
        let a = p.settle(&due, &fresh);
        assert_eq!(
            a,
            vec![
                Action::Withdraw { slot: 0 },
                Action::FetchFromOrigin { slot: 1 }
            ]
        );
    }

    #[test]
    fn an_impatient_settle_keeps_the_claim() {
        let t0 = Instant::now();
        let mut p = planner(t0);
        let s = snap(t0, vec![peer("z", vec![], vec![], 0.0)]);
        p.assign(&s);
        // No progress for longer than the patience: contested or not, fetch it.
        let fresh = snap(at(t0, 5_000), vec![peer("a", vec![], vec![(0, 40)], 0.0)]);
        let due = p.due_claims(fresh.now);
        let a = p.settle(&due, &fresh);
        assert!(
            a.iter()
                .all(|x| matches!(x, Action::FetchFromOrigin { .. }))
        );
    }

    #[test]
    fn a_peer_whose_file_left_is_not_struck_and_not_asked_for_that_file_again() {
        let now = Instant::now();
        let mut p = planner(now);
        assert_eq!(
            p.peer_done(1, "a", Some(&PeerFailure::Gone)),
            Some(Verdict::Abandon)
        );
        assert!(p.slots.iter().all(|s| s.avoid.contains("a")));
    }

    #[test]
    fn a_seeder_that_loses_to_the_origin_is_benched_and_avoided_for_the_whole_file() {
        let t0 = Instant::now();
        let mut p = planner(t0);
        let s = trusted_snap(t0, vec![peer("a", vec![(0, 40)], vec![], 1.0)]);
        let a = p.assign(&s);
        assert!(
            a.iter().all(|x| matches!(
                x,
                Action::FetchFromPeer {
                    seeders_only: true,
                    ..
                }
            )),
            "only a seeder holds the file, nobody fetches it: judged against the origin {a:?}"
        );
        assert!(matches!(
            p.peer_done(0, "a", Some(&PeerFailure::Lagging)),
            Some(Verdict::Bench(_))
        ));
        assert!(p.slots.iter().all(|s| s.avoid.contains("a")));
    }

    #[test]
    fn a_peer_is_asked_what_it_serves_one_connection_and_the_rest_wait_for_it() {
        let t0 = Instant::now();
        let mut p = planner(t0);
        let mut seeder = peer("a", vec![(0, 40)], vec![], 1.0);
        let a = p.assign(&trusted_snap(t0, vec![seeder.clone()]));
        assert_eq!(a.len(), PER_PEER, "{a:?}");
        assert!(a.iter().all(|x| matches!(x, Action::FetchFromPeer { .. })));
        seeder.asked = PER_PEER;
        let a = p.assign(&trusted_snap(at(t0, 1500), vec![seeder.clone()]));
        assert!(
            a.is_empty(),
            "a seeder busy with our own transfers is waited for, not hedged: {a:?}"
        );
        seeder.asked = PER_PEER - 1;
        p.peer_done(0, "a", None);
        let a = p.assign(&trusted_snap(at(t0, 1600), vec![seeder]));
        assert_eq!(a.len(), 1, "{a:?}");
    }

    #[test]
    fn a_range_a_crowd_trades_is_not_judged_against_the_origin() {
        let t0 = Instant::now();
        let mut p = planner(t0);
        let s = trusted_snap(
            t0,
            vec![
                peer("a", vec![(0, 40)], vec![], 1.0),
                peer("b", vec![(0, 10)], vec![(10, 20)], 1.0),
                peer("c", vec![(0, 40)], vec![], 1.0),
            ],
        );
        let a = p.assign(&s);
        for (slot, judged) in [(0, false), (1, false), (2, true), (3, true)] {
            assert!(
                a.iter().any(|x| matches!(x, Action::FetchFromPeer { slot: k, seeders_only, .. } if *k == slot && *seeders_only == judged)),
                "slot {slot}: a partial holder or a fetcher makes it a crowd's range {a:?}"
            );
        }
    }

    #[test]
    fn a_lying_peer_is_banned_and_avoided_a_busy_one_only_choked() {
        let t0 = Instant::now();
        let mut p = planner(t0);
        let mut s = snap(t0, vec![peer("a", vec![(0, 40)], vec![], 1.0)]);
        s.trusted = vec![true; 40];
        assert_eq!(
            p.assign(&s).len(),
            PER_PEER,
            "what one peer serves one connection"
        );
        let v = p.peer_done(0, "a", Some(&PeerFailure::Lied("bad chunk".into())));
        assert_eq!(v, Some(Verdict::Ban("bad chunk".into())));
        let v = p.peer_done(1, "a", Some(&PeerFailure::Busy));
        assert_eq!(v, Some(Verdict::Choke));
        // Both transfers ended: the peer may be asked again.
        let a = p.assign(&s);
        assert!(
            a.contains(&Action::FetchFromPeer {
                slot: 1,
                peer: "a".into(),
                ranges: vec![(10, 20)],
                seeders_only: true,
            }),
            "busy is no reason to avoid a peer: {a:?}"
        );
        assert!(
            !a.iter()
                .any(|x| matches!(x, Action::FetchFromPeer { slot: 0, .. })),
            "the liar is not asked for the slot it failed"
        );
        assert_eq!(p.peer_done(2, "a", None), None);
        assert_eq!(
            p.peer_done(1, "a", Some(&PeerFailure::BrokeProtocol("x".into()))),
            Some(Verdict::Ban("broke the protocol: x".into()))
        );
        assert_eq!(
            p.peer_done(3, "a", Some(&PeerFailure::Lacked)),
            Some(Verdict::Strike("repeatedly lacked chunks it said it held"))
        );
    }

    #[test]
    fn trust_is_sought_from_a_complete_peer_and_not_too_often() {
        let t0 = Instant::now();
        let mut p = planner(t0);
        assert_eq!(p.trust_due(&snap(t0, vec![])), None, "nobody to ask");
        let s = snap(t0, vec![peer("a", vec![(0, 40)], vec![], 1.0)]);
        assert_eq!(p.trust_due(&s), Some(true));
        assert_eq!(p.xorbs_to_check(&s), vec![0, 1]);
        assert_eq!(p.trust_due(&snap(at(t0, 100), s.peers.clone())), None);
        // "a" takes the rest of the second xorb from the origin: its part of it is the
        // origin's, not proven.
        let partial = snap(
            at(t0, 400),
            vec![peer("a", vec![(0, 25)], vec![(25, 40)], 1.0)],
        );
        assert_eq!(p.trust_due(&partial), Some(false));
        assert_eq!(
            p.xorbs_to_check(&partial),
            vec![0],
            "only the xorb held whole"
        );
        p.xorb_failed(0);
        p.xorb_failed(0);
        assert!(
            p.xorbs_to_check(&partial).is_empty(),
            "given up on that xorb"
        );
        let mut all = snap(at(t0, 800), s.peers.clone());
        all.trusted = vec![true; 40];
        assert_eq!(p.trust_due(&all), None, "everything trusted");
    }

    #[test]
    fn a_xorb_made_whole_is_checked_at_once_and_a_named_one_waits_for_the_retry() {
        let t0 = Instant::now();
        let mut p = planner(t0);
        // "a" holds the first xorb and fetches the second from the origin.
        let first = snap(t0, vec![peer("a", vec![(0, 25)], vec![(25, 40)], 1.0)]);
        assert_eq!(p.trust_due(&first), Some(false));
        assert_eq!(p.xorbs_to_check(&first), vec![0]);
        // Its check found nothing yet (the peer's claims lagged): it waits for the retry.
        assert_eq!(p.trust_due(&snap(at(t0, 50), first.peers.clone())), None);
        // 100 ms later "a" holds the second xorb whole: checked at once, not at the retry.
        let second = snap(at(t0, 100), vec![peer("a", vec![(0, 40)], vec![], 1.0)]);
        assert_eq!(p.trust_due(&second), Some(true));
        assert_eq!(p.xorbs_to_check(&second), vec![0, 1]);
        assert_eq!(p.trust_due(&snap(at(t0, 150), second.peers.clone())), None);
        assert_eq!(
            p.trust_due(&snap(
                at(t0, 100 + TRUST_RETRY.as_millis() as u64),
                second.peers.clone()
            )),
            Some(true),
            "the retry still comes"
        );
    }

    #[test]
    fn beyond_view_a_new_xorb_is_checked_at_the_retry() {
        let t0 = Instant::now();
        let mut p = planner(t0);
        let mut first = snap(t0, vec![peer("a", vec![(0, 25)], vec![(25, 40)], 1.0)]);
        first.swarm_size = Some(100);
        assert_eq!(p.trust_due(&first), Some(false));
        assert_eq!(p.xorbs_to_check(&first), vec![0]);
        let mut second = snap(at(t0, 100), vec![peer("a", vec![(0, 40)], vec![], 1.0)]);
        second.swarm_size = Some(100);
        assert_eq!(p.trust_due(&second), None, "beyond view: at the retry");
        second.now = at(t0, TRUST_RETRY.as_millis() as u64);
        assert_eq!(p.trust_due(&second), Some(true));
    }

    #[test]
    fn a_xorb_is_checked_with_a_peer_that_took_part_of_it_from_peers() {
        let t0 = Instant::now();
        let mut p = planner(t0);
        // "b" holds a part of the second xorb and fetches none of it from the origin: it
        // took that part from peers, so it proved the whole xorb's hashes first.
        let s = snap(
            t0,
            vec![
                peer("a", vec![(0, 5)], vec![(5, 20)], 1.0),
                peer("b", vec![(22, 24)], vec![], 1.0),
            ],
        );
        assert_eq!(
            p.xorbs_to_check(&s),
            vec![1],
            "not the first: its only holder is still taking it from the origin"
        );
        let none = snap(t0, vec![peer("a", vec![(0, 5)], vec![(0, 20)], 1.0)]);
        assert!(p.xorbs_to_check(&none).is_empty());
    }

    #[test]
    fn peers_are_given_up_after_three_unverifiable_manifests() {
        let t0 = Instant::now();
        let mut p = planner(t0);
        assert!(!p.manifest_unverifiable());
        assert!(!p.manifest_unverifiable());
        assert!(p.manifest_unverifiable());
        assert!(p.peers_off());
        let s = snap(t0, vec![peer("a", vec![(0, 40)], vec![], 1.0)]);
        assert!(p.xorbs_to_check(&s).is_empty());
    }

    #[test]
    fn a_refused_claim_is_assigned_again() {
        let t0 = Instant::now();
        let mut p = planner(t0);
        let s = snap(t0, vec![peer("a", vec![], vec![], 0.0)]);
        let a = p.assign(&s);
        assert!(matches!(a[0], Action::Claim { slot: 0, .. }));
        p.claim_refused(0);
        assert!(!p.due_claims(at(t0, 1_000)).contains(&0));
        let a = p.assign(&s);
        assert!(matches!(a[0], Action::Claim { slot: 0, .. }));
    }

    fn relayed(by: &str, range: (u32, u32), hops: u8, done: bool) -> Relayed {
        Relayed {
            by: by.into(),
            range,
            hops,
            done,
        }
    }

    #[test]
    fn a_claim_is_relayed_three_hops_at_its_fewest_and_never_back_to_its_maker() {
        let mut a = peer("a", vec![], vec![(0, 10)], 0.0);
        a.relayed = Arc::new(vec![
            relayed("far", (10, 20), 1, false),
            relayed("farther", (20, 30), 2, true),
            relayed("farthest", (40, 50), 3, false),
            // This node's own claim, told back.
            relayed("m", (30, 40), 1, false),
        ]);
        let mut b = peer("b", vec![], vec![], 0.0);
        b.relayed = Arc::new(vec![relayed("a", (0, 10), 1, false)]);
        let out = relay("m", &[(30, 40)], RELAY_HOPS, [&a, &b]);
        assert_eq!(
            out,
            vec![
                relayed("m", (30, 40), 0, true),
                relayed("a", (0, 10), 1, false),
                relayed("far", (10, 20), 2, false),
                relayed("farther", (20, 30), 3, true),
            ],
            "a's claim once, at 1 hop; what a heard at 3 hops goes no further"
        );
        assert!(
            !relays(None, 3),
            "without a tracker's count, the view is the swarm"
        );
        assert!(!relays(Some(4), 3));
        assert!(relays(Some(1000), 64));
    }

    #[test]
    fn a_lone_fetcher_s_claims_are_relayed_as_runs_and_its_last_ones_are_not_cut_off() {
        // A node that began alone claimed every slot of a file: 100 ranges, 60 taken
        // and 40 in flight, slot by slot.
        let mut lone = peer(
            "lone",
            vec![],
            (60..100).map(|i| (i * 4, i * 4 + 4)).collect(),
            0.0,
        );
        lone.relayed = Arc::new(
            (0..60)
                .map(|i| relayed("lone", (i * 4, i * 4 + 4), 0, true))
                .collect(),
        );
        // Beside it, claims of other nodes that do not touch (a gap between them).
        let mut other = peer("other", vec![], vec![], 0.0);
        other.relayed = Arc::new(
            (0..30)
                .map(|i| relayed(&format!("n{i:02}"), (i * 20, i * 20 + 1), 1, false))
                .collect(),
        );
        let out = relay("m", &[], RELAY_HOPS, [&lone, &other]);
        assert!(out.len() <= RELAY_CAP);
        let of_lone: Vec<&Relayed> = out.iter().filter(|c| c.by == "lone").collect();
        assert_eq!(
            of_lone,
            vec![
                &relayed("lone", (240, 400), 1, false),
                &relayed("lone", (0, 240), 1, true),
            ],
            "{out:?}"
        );
        // Claims with a gap between them, or of another distance or kind, stay apart.
        assert_eq!(out.iter().filter(|c| c.hops == 2).count(), 30, "{out:?}");
        let mut gap = peer("g", vec![], vec![(0, 4), (8, 12)], 0.0);
        gap.relayed = Arc::new(vec![relayed("far", (4, 8), 1, true)]);
        assert_eq!(
            relay("m", &[], RELAY_HOPS, [&gap]),
            vec![
                relayed("g", (0, 4), 1, false),
                relayed("g", (8, 12), 1, false),
                relayed("far", (4, 8), 2, true),
            ]
        );
    }

    #[test]
    fn a_complete_peer_is_relayed_as_the_whole_file_taken_once_whoever_holds_it() {
        let c = peer("c", vec![(0, 40)], vec![], 0.0);
        let d = peer("d", vec![(0, 40)], vec![], 0.0);
        let mut e = peer("e", vec![(0, 5)], vec![], 0.0);
        e.relayed = Arc::new(vec![relayed("far", (0, 40), 1, true)]);
        assert_eq!(
            relay("m", &[], RELAY_HOPS, [&c, &d, &e]),
            vec![relayed("c", (0, 40), 1, true)],
            "one entry for the whole file, at its fewest hops"
        );
    }

    #[test]
    fn beyond_its_view_a_node_waits_for_claims_relayed_and_settles_them_by_node_id() {
        let t0 = Instant::now();
        let look = |ms, claims: Vec<Relayed>| {
            let mut a = peer("a", vec![], vec![], 0.0);
            a.relayed = Arc::new(claims);
            Snapshot {
                swarm_size: Some(1000),
                // Drawn: it may fetch from the origin.
                origin_draw: 0.0,
                ..snap(at(t0, ms), vec![a])
            }
        };
        // Slots 0-2 are being fetched, or were taken, two and three hops away: the node
        // claims slot 3 alone.
        let mut p = planner(t0);
        let s = look(
            0,
            vec![
                relayed("b", (0, 10), 1, false),
                relayed("z", (10, 20), 2, false),
                relayed("c", (20, 30), 1, true),
            ],
        );
        p.note_progress(&s);
        let a = p.assign(&s);
        assert_eq!(claims(&a), 1);
        assert!(matches!(a[0], Action::Claim { slot: 3, .. }), "{a:?}");
        // Meanwhile node "b" (a lower id than "m") claimed slot 3 too: "m" withdraws.
        let s = look(300, vec![relayed("b", (30, 40), 2, false)]);
        assert!(matches!(
            p.settle(&[3], &s)[..],
            [Action::Withdraw { slot: 3 }]
        ));
        // Against "z" (higher), "m" keeps it.
        let mut p = planner(t0);
        p.note_progress(&look(0, vec![]));
        p.assign(&look(0, vec![]));
        let s = look(300, vec![relayed("z", (0, 10), 2, false)]);
        assert!(matches!(
            p.settle(&[0], &s)[..],
            [Action::FetchFromOrigin { slot: 0 }]
        ));
        // A range already taken from the origin somewhere is withdrawn whoever took it.
        let s = look(300, vec![relayed("z", (10, 20), 2, true)]);
        assert!(matches!(
            p.settle(&[1], &s)[..],
            [Action::Withdraw { slot: 1 }]
        ));
    }

    #[test]
    fn part_of_a_slot_is_taken_from_a_peer_that_has_part_of_it() {
        let t0 = Instant::now();
        let partial = peer("a", vec![(0, 6)], vec![], 0.0);
        let look = |size| Snapshot {
            swarm_size: size,
            origin_draw: 0.9,
            ..trusted_snap(t0, vec![partial.clone()])
        };
        // Beyond its view, all of what that peer holds of it.
        let a = planner(t0).assign(&look(Some(1000)));
        assert!(
            a.iter().any(|x| matches!(x, Action::FetchFromPeer { slot: 0, ranges, .. } if ranges == &vec![(0, 6)])),
            "{a:?}"
        );
        // Within its view too (the few holders' upload slots are the limit there), one of
        // the two pieces of slot 0 (0..10 cut at 3, 6 and 9) it holds.
        let a = planner(t0).assign(&look(None));
        assert!(
            a.iter().any(|x| matches!(x, Action::FetchFromPeer { slot: 0, ranges, .. } if ranges == &vec![(0, 3)] || ranges == &vec![(3, 6)])),
            "{a:?}"
        );
    }

    #[test]
    fn a_seeder_there_first_is_waited_for_and_a_crowd_s_first_finisher_is_not() {
        let t0 = Instant::now();
        let mut seeder = peer("s", vec![(0, 40)], vec![], 1e6);
        seeder.busy = true;
        let partial = peer("a", vec![(0, 6)], vec![], 0.0);
        let look = |ours: Vec<bool>| Snapshot {
            ours,
            ..trusted_snap(t0, vec![seeder.clone(), partial.clone()])
        };
        let parts = |a: &[Action]| {
            a.iter()
                .any(|x| matches!(x, Action::FetchFromPeer { peer, .. } if peer == "a"))
        };
        // Seeded: the seeder was in view before this node held anything. Busy, it is
        // waited for; the downloader beside it is not asked.
        let mut seeded = planner(t0);
        let a = seeded.assign(&look(vec![false; 40]));
        assert!(!parts(&a), "{a:?}");
        // Later, holding part of the file, it still waits for that seeder.
        let mut some = vec![false; 40];
        some[30..40].fill(true);
        let a = seeded.assign(&look(some.clone()));
        assert!(!parts(&a), "{a:?}");
        // A crowd: this node held part of the file when a peer first finished it. That
        // peer's upload slots are full; the part another downloader holds is taken.
        let a = planner(t0).assign(&look(some));
        assert!(parts(&a), "{a:?}");
    }
}
