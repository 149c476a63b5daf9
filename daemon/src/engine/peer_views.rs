//! What peers hold of a file, as the planner's [`PeerState`]s beside the connection to
//! reach each one. Peers that push (capability `watch`, docs/PROTOCOL.md §4.4) are
//! followed: one watch each, whose updates keep their view current with no asking. Older
//! peers, and any whose watch was refused, are asked with `have` when the loop says so.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::AbortHandle;
use xet::XetHash;
use zest_proto::peer::{FileHave, RelayedClaim};

use super::file_ctx::FileCtx;
use super::planner::{PeerState, RELAY_CAP, Relayed, covered};
use crate::peer::limits::WATCH_SILENCE;
use crate::peer::wire::unflatten;
use crate::peer::{PeerConn, PeerError, PeerSet, watch};
use crate::sync::lock;

/// One peer's answer about the file, and the way to reach it.
pub struct View {
    pub conn: PeerConn,
    pub state: PeerState,
}

/// How long a `have` may take: the download loop waits on it, so a frozen peer must not
/// hold it up for long (and is benched, see [`PeerViews::poll`]). The first look waits as
/// long for watches' first updates.
const HAVE_WAIT: Duration = Duration::from_millis(500);

/// A watch that ended on a connection still up is asked again after this, not at every
/// turn of the loop.
const REWATCH: Duration = Duration::from_secs(1);

/// How a watch of one peer stands.
#[derive(Clone, Debug)]
enum Follow {
    /// Asked; nothing heard yet.
    Waiting,
    /// The peer's state as last pushed, and when (None: it said something this file
    /// cannot be). Boxed: a state holds a short held list inline.
    Heard(Option<Box<PeerState>>, Instant),
    /// The peer refused the watch or broke it: asked with `have` for this download.
    Refused,
    /// The watch ended then (connection lost, peer frozen): watched again after
    /// [`REWATCH`], or at once on a new connection.
    Ended(Instant),
}

struct Watched {
    /// Which connection the watch runs on: a reconnect is a new watch.
    conn_id: usize,
    task: AbortHandle,
}

/// The views of one file's download; dropping it ends its watches.
pub struct PeerViews {
    hash: XetHash,
    total: u32,
    follows: Arc<Mutex<HashMap<String, Follow>>>,
    /// Bumped at every update a watch takes in, for [`PeerViews::first_look`].
    news: tokio::sync::watch::Sender<u64>,
    watched: HashMap<String, Watched>,
    polled: HashMap<String, (PeerState, Instant)>,
    set: Option<PeerSet>,
}

impl Drop for PeerViews {
    fn drop(&mut self) {
        for w in self.watched.values() {
            w.task.abort();
        }
    }
}

impl PeerViews {
    pub fn new(ctx: &FileCtx) -> Self {
        PeerViews {
            hash: ctx.hash,
            total: ctx.live.total_chunks(),
            follows: Arc::default(),
            news: tokio::sync::watch::channel(0).0,
            watched: HashMap::new(),
            polled: HashMap::new(),
            set: ctx.engine.peers.clone(),
        }
    }

    /// Views of `peers` as they stand, after the first updates of new watches (or
    /// [`HAVE_WAIT`]) and one `have` to every peer that does not push.
    pub async fn first_look(&mut self, peers: &[PeerConn]) -> HashMap<String, View> {
        self.follow(peers);
        let mut news = self.news.subscribe();
        let follows = self.follows.clone();
        let waiting = || {
            lock(&follows)
                .values()
                .any(|f| matches!(f, Follow::Waiting))
        };
        let heard = async {
            while waiting() {
                if news.changed().await.is_err() {
                    break;
                }
            }
        };
        let poll = self.poll(peers);
        let (_, ()) = tokio::join!(tokio::time::timeout(HAVE_WAIT, heard), poll);
        self.current(peers)
    }

    /// Starts watching the peers that push and are not watched on their current
    /// connection; ends the watches of peers no longer in `peers`.
    pub fn follow(&mut self, peers: &[PeerConn]) {
        let ids: HashSet<&str> = peers.iter().map(|p| p.node_id.as_str()).collect();
        let mut follows = lock(&self.follows);
        self.watched.retain(|id, w| {
            let keep = ids.contains(id.as_str());
            if !keep {
                w.task.abort();
                follows.remove(id);
            }
            keep
        });
        for p in peers.iter().filter(|p| p.watch) {
            let conn_id = p.conn.stable_id();
            let watched = self.watched.get(&p.node_id);
            // Kept: a refusal for this download, or this connection's watch unless it ended
            // more than REWATCH ago.
            let keep = match (watched, follows.get(&p.node_id)) {
                (_, Some(Follow::Refused)) => true,
                (Some(w), Some(f)) if w.conn_id == conn_id => {
                    !matches!(f, Follow::Ended(at) if at.elapsed() >= REWATCH)
                }
                _ => false,
            };
            if keep {
                continue;
            }
            if let Some(w) = watched {
                w.task.abort();
            }
            follows.insert(p.node_id.clone(), Follow::Waiting);
            let task = tokio::spawn(watch_one(
                p.clone(),
                self.hash,
                self.total,
                self.follows.clone(),
                self.news.clone(),
                self.set.clone(),
            ))
            .abort_handle();
            self.watched
                .insert(p.node_id.clone(), Watched { conn_id, task });
        }
    }

    /// Asks every peer that does not push what it holds, at once. Peers that answer
    /// nonsense are left out this round; peers that do not answer in time are benched, so
    /// the next rounds do not wait on them again.
    pub async fn poll(&mut self, peers: &[PeerConn]) {
        let ask: Vec<PeerConn> = {
            let follows = lock(&self.follows);
            peers
                .iter()
                .filter(|p| !p.watch || matches!(follows.get(&p.node_id), Some(Follow::Refused)))
                .cloned()
                .collect()
        };
        if ask.is_empty() {
            self.polled.clear();
            return;
        }
        let asks = ask.into_iter().map(|p| {
            let hash = self.hash;
            async move {
                let r = tokio::time::timeout(HAVE_WAIT, p.have(&[hash])).await;
                (p, r)
            }
        });
        let mut polled = HashMap::new();
        for (p, r) in futures_util::future::join_all(asks).await {
            let files = match r {
                Ok(Ok(files)) => files,
                Err(_) | Ok(Err(PeerError::Stalled(_))) => {
                    if let Some(set) = &self.set {
                        set.bench(&p.node_id, "did not answer `have` in time");
                    }
                    continue;
                }
                Ok(Err(_)) => continue,
            };
            let Some(fh) = files.into_iter().find(|f| f.file == self.hash.as_bytes()) else {
                continue;
            };
            if let Some(state) = parse_state(&p.node_id, fh, self.total) {
                polled.insert(p.node_id.clone(), (state, Instant::now()));
            }
        }
        self.polled = polled;
    }

    /// What every peer in `peers` holds, as last pushed or polled.
    pub fn current(&self, peers: &[PeerConn]) -> HashMap<String, View> {
        let follows = lock(&self.follows);
        peers
            .iter()
            .filter_map(|p| {
                let (mut state, at) = match follows.get(&p.node_id) {
                    Some(Follow::Heard(s, at)) => s.as_deref().map(|s| (s.clone(), *at)),
                    Some(Follow::Refused) | None => self.polled.get(&p.node_id).cloned(),
                    Some(Follow::Waiting | Follow::Ended(_)) => None,
                }?;
                // How quiet the peer said the file was, aged by the time since it said so.
                state.quiet = state.quiet.map(|q| q + at.elapsed());
                Some((
                    p.node_id.clone(),
                    View {
                        conn: p.clone(),
                        state,
                    },
                ))
            })
            .collect()
    }
}

/// Follows one peer's updates about the file until the watch ends, keeping its entry of
/// `follows` current.
async fn watch_one(
    conn: PeerConn,
    hash: XetHash,
    total: u32,
    follows: Arc<Mutex<HashMap<String, Follow>>>,
    news: tokio::sync::watch::Sender<u64>,
    set: Option<PeerSet>,
) {
    let id = conn.node_id.clone();
    let set_follow = |f: Follow| {
        lock(&follows).insert(id.clone(), f);
        news.send_modify(|v| *v = v.wrapping_add(1));
    };
    let mut w = match conn.watch(&hash).await {
        Ok(w) => w,
        Err(PeerError::Connection(_)) => return set_follow(Follow::Ended(Instant::now())),
        Err(e) => {
            tracing::debug!(peer = ?conn, "watch refused ({e}); asking with `have` instead");
            return set_follow(Follow::Refused);
        }
    };
    let mut told: Option<FileHave> = None;
    loop {
        // A peer downloading the file sends at least every heartbeat; silence then means
        // it froze, and its claims must not hold anyone up.
        let downloading = told
            .as_ref()
            .is_some_and(|t| t.total_chunks != 0 && !t.complete);
        // A peer whose copy is complete, or that holds nothing, sends no heartbeat: it is
        // only heard from when something changes, however long that takes.
        let wait = match &told {
            None => Some(HAVE_WAIT * 3),
            Some(_) if downloading => Some(WATCH_SILENCE),
            Some(_) => None,
        };
        let update = match w.next(wait).await {
            Ok(Some(u)) => u,
            Ok(None) if told.is_none() => {
                tracing::debug!(peer = ?conn, "no first watch update in time; asking with `have` instead");
                return set_follow(Follow::Refused);
            }
            Ok(None) => {
                if let Some(set) = &set {
                    set.bench(&id, "went silent on a watch while downloading");
                }
                return set_follow(Follow::Ended(Instant::now()));
            }
            Err(PeerError::Connection(e)) => {
                tracing::debug!(peer = ?conn, "watch ended: {e}");
                return set_follow(Follow::Ended(Instant::now()));
            }
            Err(e) => {
                // `busy`, or an error this version does not expect: ask instead.
                tracing::debug!(peer = ?conn, "watch refused ({e}); asking with `have` instead");
                return set_follow(Follow::Refused);
            }
        };
        match watch::apply(told.as_ref(), update, hash.as_bytes()) {
            Ok(fh) => {
                let state = parse_state(&id, fh.clone(), total);
                told = Some(fh);
                set_follow(Follow::Heard(state.map(Box::new), Instant::now()));
            }
            Err(e) => {
                tracing::info!(peer = ?conn, "watch update refused: {e}; leaving this peer out of this file's views");
                break;
            }
        }
    }
    // The stream is stopped, and the task parks: its entry stays, so no new watch starts
    // on this connection for this download.
    drop(w);
    set_follow(Follow::Heard(None, Instant::now()));
    std::future::pending::<()>().await;
}

pub fn parse_state(id: &str, fh: FileHave, total: u32) -> Option<PeerState> {
    if fh.total_chunks != 0 && fh.total_chunks != total {
        // Not the file the CAS describes; nothing it says about it is useful.
        return None;
    }
    let held = unflatten(&fh.held)?;
    let fetching = unflatten(&fh.fetching)?;
    if held.last().is_some_and(|r| r.1 > total) || fetching.last().is_some_and(|r| r.1 > total) {
        return None;
    }
    let relayed = parse_relayed(crate::peer::watch::relayed(&fh), total)?;
    Some(PeerState {
        id: id.to_string(),
        involved: fh.total_chunks != 0 || !held.is_empty() || !fetching.is_empty(),
        complete: fh.complete && covered(&held, 0, total),
        held: held.into(),
        fetching: fetching.into(),
        rate: 0.0,
        quiet: fh.quiet_ms.map(|ms| Duration::from_millis(u64::from(ms))),
        busy: false,
        asked: 0,
        relayed: relayed.into(),
    })
}

/// The claims a peer relays, checked as its own ranges are: a claim outside the file, an
/// empty one, or more than [`RELAY_CAP`] of them make the state malformed. What they say
/// is believed as a peer's own `fetching` is: it can make this node wait, for as long as
/// the swarm keeps progressing, never take a byte unverified.
fn parse_relayed(wire: &[RelayedClaim], total: u32) -> Option<Vec<Relayed>> {
    if wire.len() > RELAY_CAP {
        return None;
    }
    wire.iter()
        .map(|c| {
            (c.start < c.end && c.end <= total && !c.node.is_empty() && c.node.len() <= 64).then(
                || Relayed {
                    by: c.node.clone(),
                    range: (c.start, c.end),
                    hops: u8::try_from(c.hops).unwrap_or(u8::MAX),
                    done: c.done,
                },
            )
        })
        .collect()
}

/// The wire form of what this node relays (`planner::relay`).
pub fn relayed_to_wire(relayed: &[Relayed]) -> Vec<RelayedClaim> {
    relayed
        .iter()
        .map(|c| RelayedClaim {
            node: c.by.clone(),
            start: c.range.0,
            end: c.range.1,
            hops: u32::from(c.hops),
            done: c.done,
        })
        .collect()
}
