//! The peer set: every peer this daemon knows, however it learned of it (static `--peer`,
//! an incoming connection, later trackers/DHT/LAN through [`PeerSet::add`]), with one
//! QUIC endpoint for listening and dialling, handshakes, bans, chokes and backoff.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use zest_proto::peer;

use super::conn::{PeerConn, short};
use super::fleet::{FleetKey, Role};
use super::serve::{Client, Provider};
use super::stats::PeerStats;
use super::tls::{Identity, remote_node_id};
use super::wire;
use crate::sync::lock;

pub const VERSION: u32 = 1;
const CAPABILITIES: [&str; 6] = ["have", "manifest", "get", WATCH, META, ROUTE];
/// The capability of pushed peer state (docs/PROTOCOL.md §4.4).
pub const WATCH: &str = "watch";
/// The capability of Hub answers shared in the fleet (docs/PROTOCOL.md §4.5).
pub const META: &str = "meta";
/// The capability of routes to the fleet's anchors (docs/PROTOCOL.md §4.6).
pub const ROUTE: &str = "route";
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How long a `busy` peer is left alone.
pub const CHOKE: Duration = Duration::from_secs(1);
/// How long it is left alone by a pull in its endgame ([`choke_for`]).
pub const ENDGAME_CHOKE: Duration = Duration::from_millis(500);
/// The share of a pull still missing at which its endgame begins.
const ENDGAME_SHARE: f64 = 0.05;

/// How long a pull that still misses `missing` of its `total` bytes leaves a `busy` peer
/// alone. A pull near its end asks again sooner: what it misses is what the fewest hold,
/// and a place those holders free otherwise goes to whichever of the crowd asks first, so
/// a node that began early waited for its last xorb like the ninetieth arrival (simulated
/// rollouts, BENCHMARKS.md). The rest keep the longer wait, so a crowd asks no more often.
pub fn choke_for(missing: u64, total: u64) -> Duration {
    if total > 0 && (missing as f64) <= ENDGAME_SHARE * total as f64 {
        ENDGAME_CHOKE
    } else {
        CHOKE
    }
}

/// Benches closer together than this count as repeats.
const BENCH_MEMORY: Duration = Duration::from_secs(60);

/// How long the `n`th bench in a row lasts.
fn bench_time(n: u32) -> Duration {
    Duration::from_secs(2)
        .saturating_mul(1u32 << n.saturating_sub(1).min(4))
        .min(Duration::from_secs(30))
}
/// Requests for chunks a peer said it held, answered `not_found`, before it is banned.
const STRIKES_TO_BAN: u32 = 2;
/// Strikes closer together than this count as one: parallel requests that fail at the same
/// moment (a file changing hands between download and index) are one event, not many.
const STRIKE_WINDOW: Duration = Duration::from_secs(5);
/// Connections allowed by default; more peers are known but left waiting.
pub const DEFAULT_MAX_PEERS: usize = 64;
/// Incoming connections are accepted up to the cap plus this, so newcomers can always
/// reach a full swarm; beyond it they are refused (or an idle one makes room).
pub const INCOMING_HEADROOM: usize = 16;
/// A discovered peer that failed this many dials in a row is forgotten; the source that
/// found it will offer it again if it comes back.
const DISCOVERED_GIVE_UP: u32 = 6;

/// When the incoming cap is reached, an incoming connection whose peer has not been heard
/// ([`PeerStats::heard`]) for this long is closed to make room for a newcomer.
const EVICT_IDLE: Duration = Duration::from_secs(5);
/// Incoming connections whose peer is not heard for this long are closed (keep-alives alone
/// do not keep a connection); the peer redials when it has something to ask.
const IDLE_DROP: Duration = Duration::from_secs(120);

/// How long shutdown waits for connections to finish closing.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// QUIC application close codes.
const CLOSE_VERSION: u32 = 1;
const CLOSE_BANNED: u32 = 2;
const CLOSE_SELF: u32 = 3;
// 4 was `full`: a full acceptor now refuses before the handshake (docs/PROTOCOL.md §3).
const CLOSE_IDLE: u32 = 5;

/// The address whose connection has been idle longest, if that is at least `min`.
fn idlest(conns: &[(SocketAddr, Duration)], min: Duration) -> Option<SocketAddr> {
    conns
        .iter()
        .filter(|(_, idle)| *idle >= min)
        .max_by_key(|(a, idle)| (*idle, std::cmp::Reverse(*a)))
        .map(|(a, _)| *a)
}

/// An incoming connection's reserved place while it is admitted; released on drop.
struct Admitting(PeerSet);

impl Drop for Admitting {
    fn drop(&mut self) {
        let mut st = lock(&self.0.inner.state);
        st.admitting = st.admitting.saturating_sub(1);
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    Static,
    Incoming,
    Discovered(String),
}

impl Origin {
    fn label(&self) -> String {
        match self {
            Origin::Static => "static".into(),
            Origin::Incoming => "incoming".into(),
            Origin::Discovered(s) => s.clone(),
        }
    }

    fn is_lan(&self) -> bool {
        matches!(self, Origin::Discovered(s) if s == "lan")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Just learned of; its dial task has not claimed a connection slot yet.
    New,
    Connecting,
    Connected,
    Unreachable,
    /// Known but not dialled: the connection cap is reached.
    Waiting,
}

struct Entry {
    origin: Origin,
    state: State,
    conn: Option<PeerConn>,
    node_id: String,
    reason: String,
    /// Benched (slow or silent) until then: out of every view.
    choked_until: Option<Instant>,
    /// Answered `busy`: asked for nothing until then, though what it holds still counts.
    busy_until: Option<Instant>,
    /// Times benched lately (slow or silent) and when last: each bench lasts twice the one
    /// before, so a peer that keeps failing costs a pull less and less.
    benched: (u32, Option<Instant>),
    stats: Arc<PeerStats>,
    fleet: bool,
}

#[derive(Default)]
struct SetState {
    peers: HashMap<SocketAddr, Entry>,
    /// node id → why
    banned: HashMap<String, String>,
    /// Strike count and when the last one counted.
    strikes: HashMap<String, (u32, Option<Instant>)>,
    /// Incoming connections between their reserved place and admission (or failure).
    admitting: usize,
    /// Addresses that turned out to be this daemon (a tracker hands us back to ourselves).
    self_addrs: std::collections::HashSet<SocketAddr>,
}

impl SetState {
    fn connected(&self) -> usize {
        self.peers
            .values()
            .filter(|e| matches!(e.state, State::Connected | State::Connecting))
            .count()
    }
}

/// How the peer set behaves.
#[derive(Clone, Debug)]
pub struct SetOptions {
    pub fleet: Option<FleetKey>,
    pub max_peers: usize,
}

impl Default for SetOptions {
    fn default() -> Self {
        SetOptions {
            fleet: None,
            max_peers: DEFAULT_MAX_PEERS,
        }
    }
}

struct Inner {
    endpoint: quinn::Endpoint,
    node_id: String,
    provider: Provider,
    state: Mutex<SetState>,
    opts: SetOptions,
}

#[derive(Clone)]
pub struct PeerSet {
    inner: Arc<Inner>,
}

/// A handle that does not keep the set alive: for what the set's own provider holds (the
/// Hub answers it serves also ask the set), so no cycle outlives shutdown.
#[derive(Clone)]
pub struct WeakPeerSet {
    inner: std::sync::Weak<Inner>,
}

impl WeakPeerSet {
    pub fn upgrade(&self) -> Option<PeerSet> {
        self.inner.upgrade().map(|inner| PeerSet { inner })
    }
}

/// Every state a row of `zestctl peers` can be in.
pub const PEER_STATES: [&str; 7] = [
    "connected",
    "choked",
    "banned",
    "connecting",
    "new",
    "unreachable",
    "waiting",
];

/// One row of `zestctl peers`.
pub struct PeerRow {
    pub addr: SocketAddr,
    pub node_id: String,
    pub state: &'static str,
    pub reason: String,
    pub origin: String,
    pub bytes_from: u64,
    pub bytes_to: u64,
    pub rate_from: f64,
    pub rate_to: f64,
    pub rtt_ms: f64,
    pub fleet: bool,
}

impl PeerSet {
    pub fn downgrade(&self) -> WeakPeerSet {
        WeakPeerSet {
            inner: Arc::downgrade(&self.inner),
        }
    }

    /// Binds the QUIC endpoint on `listen` and starts accepting peers.
    pub fn start(
        listen: SocketAddr,
        identity: &Identity,
        provider: Provider,
        opts: SetOptions,
    ) -> Result<Self> {
        let mut endpoint = quinn::Endpoint::server(identity.server_config()?, listen)
            .with_context(|| format!("listening for peers on {listen} (UDP)"))?;
        endpoint.set_default_client_config(identity.client_config()?);
        let set = PeerSet {
            inner: Arc::new(Inner {
                endpoint,
                node_id: identity.node_id.clone(),
                provider,
                state: Mutex::new(SetState::default()),
                opts,
            }),
        };
        let me = set.clone();
        tokio::spawn(async move { me.accept_loop().await });
        let me = set.clone();
        tokio::spawn(async move { me.drop_idle_loop().await });
        Ok(set)
    }

    /// Incoming connections whose peer has not been heard for [`IDLE_DROP`].
    fn idle_incoming(&self, min: Duration) -> Vec<(SocketAddr, Duration)> {
        lock(&self.inner.state)
            .peers
            .iter()
            .filter(|(_, e)| e.origin == Origin::Incoming && e.conn.is_some())
            .map(|(a, e)| (*a, e.stats.idle()))
            .filter(|(_, idle)| *idle >= min)
            .collect()
    }

    async fn drop_idle_loop(&self) {
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        loop {
            tick.tick().await;
            for (addr, idle) in self.idle_incoming(IDLE_DROP) {
                let conn = lock(&self.inner.state)
                    .peers
                    .get_mut(&addr)
                    .and_then(|e| e.conn.take());
                if let Some(c) = conn {
                    tracing::info!(%addr, ?idle, "closing an idle incoming connection");
                    c.conn.close(CLOSE_IDLE.into(), b"idle");
                }
            }
        }
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.inner.endpoint.local_addr().ok()
    }

    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    pub fn fleet_key(&self) -> Option<&FleetKey> {
        self.inner.opts.fleet.as_ref()
    }

    /// How many peers are connected or being dialled.
    pub fn connected_count(&self) -> usize {
        lock(&self.inner.state).connected()
    }

    /// Adds a peer address from any source; it is dialled, and redialled with backoff.
    pub fn add(&self, addr: SocketAddr, origin: Origin) {
        if Some(addr) == self.local_addr() {
            return;
        }
        {
            let mut st = lock(&self.inner.state);
            if st.peers.contains_key(&addr) || st.self_addrs.contains(&addr) {
                return;
            }
            st.peers.insert(addr, new_entry(origin));
        }
        let me = self.clone();
        tokio::spawn(async move { me.dial_loop(addr).await });
    }

    /// Connected peers that are neither banned nor choked, best first: fastest, then on
    /// the LAN, then nearest.
    pub fn usable(&self) -> Vec<PeerConn> {
        let now = Instant::now();
        let st = lock(&self.inner.state);
        let mut out: Vec<(bool, PeerConn)> = st
            .peers
            .values()
            .filter(|e| e.state == State::Connected && e.choked_until.is_none_or(|t| t <= now))
            .filter(|e| !st.banned.contains_key(&e.node_id))
            .filter_map(|e| e.conn.clone().map(|c| (e.origin.is_lan(), c)))
            .collect();
        drop(st);
        out.sort_by(|(lan_a, a), (lan_b, b)| {
            b.stats
                .rate_from()
                .total_cmp(&a.stats.rate_from())
                .then(lan_b.cmp(lan_a))
                .then(a.conn.rtt().cmp(&b.conn.rtt()))
        });
        let mut out: Vec<PeerConn> = out.into_iter().map(|(_, c)| c).collect();
        // One connection per node, even when both sides dialled.
        let mut seen = std::collections::HashSet::new();
        out.retain(|c| seen.insert(c.node_id.clone()));
        out
    }

    /// The peers a file may be asked of: fleet peers only for private content, so a
    /// stranger never even learns which private file we want.
    pub fn usable_for(&self, private: bool) -> Vec<PeerConn> {
        let mut out = self.usable();
        if private {
            out.retain(|c| c.fleet);
        }
        out
    }

    pub fn is_banned(&self, node_id: &str) -> bool {
        lock(&self.inner.state).banned.contains_key(node_id)
    }

    /// Disconnects `node_id` and refuses it for the rest of this daemon's life.
    pub fn ban(&self, node_id: &str, reason: &str) {
        let conns: Vec<quinn::Connection> = {
            let mut st = lock(&self.inner.state);
            if st.banned.contains_key(node_id) {
                return;
            }
            st.banned.insert(node_id.to_string(), reason.to_string());
            st.peers
                .values_mut()
                .filter(|e| e.node_id == node_id)
                .filter_map(|e| {
                    e.reason = reason.to_string();
                    e.conn.take().map(|c| c.conn)
                })
                .collect()
        };
        tracing::warn!(peer = short(node_id), reason, "banned peer");
        crate::metrics::EVENTS.peer_banned();
        for c in conns {
            c.close(CLOSE_BANNED.into(), b"banned");
        }
    }

    /// A peer answered `not_found` for chunks it said it held; repeat offenders are banned.
    pub fn strike(&self, node_id: &str, reason: &str) {
        let n = {
            let mut st = lock(&self.inner.state);
            let now = Instant::now();
            let e = st.strikes.entry(node_id.to_string()).or_insert((0, None));
            if e.1.is_none_or(|t| now.duration_since(t) >= STRIKE_WINDOW) {
                *e = (e.0 + 1, Some(now));
            }
            e.0
        };
        tracing::info!(peer = node_id, strikes = n, "strike: {reason}");
        if n >= STRIKES_TO_BAN {
            self.ban(node_id, reason);
        }
    }

    /// Leaves a peer that went silent or fell behind the origin alone for a while: 2 s, then
    /// twice as long at each repeat within a minute, up to 30 s.
    pub fn bench(&self, node_id: &str, why: &str) {
        let now = Instant::now();
        for e in lock(&self.inner.state).peers.values_mut() {
            if e.node_id == node_id {
                let (n, last) = e.benched;
                if last.is_some_and(|t| now < t + bench_time(n)) {
                    // Failures of transfers running side by side are one event.
                    continue;
                }
                let n = if last.is_some_and(|t| now.duration_since(t) < BENCH_MEMORY) {
                    n + 1
                } else {
                    1
                };
                let d = bench_time(n);
                e.benched = (n, Some(now));
                e.choked_until = Some(now + d);
                tracing::info!(peer = short(node_id), why, benched_for = ?d, "peer benched");
            }
        }
    }

    /// Leaves a `busy` peer alone for a moment. It stays in the views: the ranges it holds
    /// wait for it rather than go to the origin (a crowd whose uploads are all taken would
    /// otherwise send what it is trading to the origin). For how long is the pull's to say
    /// ([`choke_for`]); the last to say it wins, for every pull of this node.
    pub fn choke(&self, node_id: &str, how_long: Duration) {
        let until = Instant::now() + how_long;
        for e in lock(&self.inner.state).peers.values_mut() {
            if e.node_id == node_id {
                e.busy_until = Some(until);
            }
        }
    }

    /// The nodes that answered `busy` and are still left alone.
    pub fn busy(&self) -> std::collections::HashSet<String> {
        let now = Instant::now();
        lock(&self.inner.state)
            .peers
            .values()
            .filter(|e| e.busy_until.is_some_and(|t| t > now))
            .map(|e| e.node_id.clone())
            .collect()
    }

    pub fn rows(&self) -> Vec<PeerRow> {
        let now = Instant::now();
        let st = lock(&self.inner.state);
        let mut rows: Vec<PeerRow> = st
            .peers
            .iter()
            .map(|(addr, e)| {
                let banned = st.banned.get(&e.node_id);
                let state = match (banned, e.state) {
                    (Some(_), _) => "banned",
                    (None, State::Connected)
                        if e.choked_until.is_some_and(|t| t > now)
                            || e.busy_until.is_some_and(|t| t > now) =>
                    {
                        "choked"
                    }
                    (None, State::Connected) => "connected",
                    (None, State::Connecting) => "connecting",
                    (None, State::New) => "new",
                    (None, State::Unreachable) => "unreachable",
                    (None, State::Waiting) => "waiting",
                };
                PeerRow {
                    addr: *addr,
                    node_id: e.node_id.clone(),
                    state,
                    reason: banned.cloned().unwrap_or_else(|| e.reason.clone()),
                    origin: e.origin.label(),
                    bytes_from: e
                        .stats
                        .bytes_from
                        .load(std::sync::atomic::Ordering::Relaxed),
                    bytes_to: e.stats.bytes_to.load(std::sync::atomic::Ordering::Relaxed),
                    rate_from: e.stats.rate_from(),
                    rate_to: e.stats.rate_to(),
                    rtt_ms: e
                        .conn
                        .as_ref()
                        .map(|c| c.conn.rtt().as_secs_f64() * 1000.0)
                        .unwrap_or(0.0),
                    fleet: e.fleet,
                }
            })
            .collect();
        rows.sort_by_key(|r| r.addr);
        rows
    }

    async fn dial_loop(&self, addr: SocketAddr) {
        let mut backoff = BACKOFF_MIN;
        let mut failures = 0u32;
        loop {
            // Claiming a slot and marking the dial happen under one lock, so peers learned
            // together (a tracker reply) cannot all dial past the cap.
            let (connected, banned, full, discovered) = {
                let mut guard = lock(&self.inner.state);
                let st = &mut *guard;
                let slots_used = st.connected();
                let banned_ids = &st.banned;
                match st.peers.get_mut(&addr) {
                    None => return,
                    Some(e) => {
                        let connected = e.state == State::Connected;
                        let banned = !e.node_id.is_empty() && banned_ids.contains_key(&e.node_id);
                        let full = slots_used >= self.inner.opts.max_peers;
                        if !connected && !banned && e.conn.is_none() {
                            if full {
                                e.state = State::Waiting;
                                e.reason = "connection cap reached".into();
                            } else {
                                e.state = State::Connecting;
                                e.reason.clear();
                            }
                        }
                        (
                            connected,
                            banned,
                            full,
                            matches!(e.origin, Origin::Discovered(_)),
                        )
                    }
                }
            };
            if banned {
                return;
            }
            if connected {
                // It reached us first (or we are connected): look again later.
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
            if full {
                // Over the cap: wait for a slot (a peer leaving frees one).
                tokio::time::sleep(jitter(Duration::from_secs(2))).await;
                continue;
            }
            match self.dial(addr).await {
                Ok(conn) => {
                    backoff = BACKOFF_MIN;
                    failures = 0;
                    let reason = conn.closed().await;
                    self.lost(addr, &conn, &reason.to_string());
                }
                Err(DialError::Myself) => {
                    let mut st = lock(&self.inner.state);
                    st.peers.remove(&addr);
                    st.self_addrs.insert(addr);
                    tracing::debug!(%addr, "that address is this daemon; not dialling it again");
                    return;
                }
                Err(DialError::Other(e)) => {
                    tracing::debug!(%addr, "cannot reach peer: {e:#}");
                    self.set_state(addr, State::Unreachable, &format!("{e:#}"));
                    failures += 1;
                    if discovered && failures >= DISCOVERED_GIVE_UP {
                        let mut st = lock(&self.inner.state);
                        if st.peers.get(&addr).is_some_and(|e| e.conn.is_none()) {
                            st.peers.remove(&addr);
                            tracing::debug!(%addr, "forgetting an unreachable discovered peer");
                            return;
                        }
                    }
                }
            }
            tokio::time::sleep(jitter(backoff)).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    async fn dial(&self, addr: SocketAddr) -> Result<quinn::Connection, DialError> {
        let connecting = self.inner.endpoint.connect(addr, "zest")?;
        let conn = tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting)
            .await
            .context("QUIC handshake timed out")??;
        if remote_node_id(&conn).as_deref() == Some(self.inner.node_id.as_str()) {
            conn.close(CLOSE_SELF.into(), b"self");
            return Err(DialError::Myself);
        }
        let mine = self.hello(&conn, Role::Dialler);
        let hello = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
            let (mut send, mut recv) = conn.open_bi().await?;
            wire::write(&mut send, &mine).await?;
            send.finish()?;
            let theirs = wire::read::<peer::Hello>(&mut recv).await?;
            anyhow::Ok(theirs)
        })
        .await
        .context("zest handshake timed out")??;
        self.admit(conn.clone(), addr, hello, Origin::Static, Role::Acceptor)?;
        Ok(conn)
    }

    fn hello(&self, conn: &quinn::Connection, role: Role) -> peer::Hello {
        peer::Hello {
            version: VERSION,
            capabilities: CAPABILITIES
                .iter()
                .filter(|c| **c != WATCH || super::watch::enabled())
                .map(|s| s.to_string())
                .collect(),
            agent: format!("zestd/{}", env!("CARGO_PKG_VERSION")),
            fleet_proof: self
                .inner
                .opts
                .fleet
                .as_ref()
                .map(|k| k.proof(conn, role))
                .unwrap_or_default(),
        }
    }

    async fn accept_loop(&self) {
        while let Some(incoming) = self.inner.endpoint.accept().await {
            // A place is reserved before the handshake, under the lock: dials that arrive
            // together cannot all pass the cap. When full, an incoming connection whose peer
            // has not been heard for a while makes room; else the newcomer is refused.
            let cap = self.inner.opts.max_peers + INCOMING_HEADROOM;
            let (reserved, evict) = {
                let mut st = lock(&self.inner.state);
                let mut evict = None;
                if st.connected() + st.admitting >= cap {
                    // Fleet members are never pushed out by strangers.
                    let now_idle: Vec<(SocketAddr, Duration)> = st
                        .peers
                        .iter()
                        .filter(|(_, e)| e.origin == Origin::Incoming && !e.fleet)
                        .filter_map(|(a, e)| e.conn.as_ref().map(|_| (*a, e.stats.idle())))
                        .collect();
                    evict = idlest(&now_idle, EVICT_IDLE).and_then(|a| {
                        st.peers
                            .get_mut(&a)
                            .and_then(|e| e.conn.take().map(|c| c.conn))
                    });
                }
                let ok = evict.is_some() || st.connected() + st.admitting < cap;
                if ok {
                    st.admitting += 1;
                }
                (ok, evict)
            };
            if let Some(c) = evict {
                tracing::info!(addr = %c.remote_address(), "closing an idle incoming connection to make room");
                c.close(CLOSE_IDLE.into(), b"idle");
            }
            if !reserved {
                tracing::debug!(addr = %incoming.remote_address(), "incoming peer refused: connection cap reached");
                incoming.refuse();
                continue;
            }
            let me = self.clone();
            tokio::spawn(async move {
                let place = Admitting(me.clone());
                let addr = incoming.remote_address();
                let r = async {
                    let conn = tokio::time::timeout(HANDSHAKE_TIMEOUT, incoming)
                        .await
                        .context("QUIC handshake timed out")??;
                    let (mut send, mut recv) =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, conn.accept_bi())
                            .await
                            .context("no hello")??;
                    let theirs = tokio::time::timeout(
                        HANDSHAKE_TIMEOUT,
                        wire::read::<peer::Hello>(&mut recv),
                    )
                    .await
                    .context("no hello")??;
                    wire::write(&mut send, &me.hello(&conn, Role::Acceptor)).await?;
                    send.finish()?;
                    me.admit(conn.clone(), addr, theirs, Origin::Incoming, Role::Dialler)?;
                    anyhow::Ok(conn)
                }
                .await;
                // Admitted, the connection counts as connected; refused, it counts no more.
                // Either way its reservation ends here, not when the connection does.
                drop(place);
                match r {
                    Ok(conn) => {
                        let reason = conn.closed().await;
                        me.lost(addr, &conn, &reason.to_string());
                    }
                    Err(e) => tracing::debug!(%addr, "incoming peer refused: {e:#}"),
                }
            });
        }
    }

    /// Checks a handshake and puts the connection to use, both to serve and to ask.
    fn admit(
        &self,
        conn: quinn::Connection,
        addr: SocketAddr,
        hello: Option<peer::Hello>,
        origin: Origin,
        their_role: Role,
    ) -> Result<()> {
        let Some(hello) = hello else {
            conn.close(CLOSE_VERSION.into(), b"no hello");
            anyhow::bail!("peer sent no hello");
        };
        if hello.version != VERSION {
            conn.close(CLOSE_VERSION.into(), b"unsupported version");
            anyhow::bail!("peer speaks version {}, we speak {VERSION}", hello.version);
        }
        let node_id = remote_node_id(&conn).context("peer showed no certificate")?;
        if node_id == self.inner.node_id {
            conn.close(CLOSE_SELF.into(), b"self");
            anyhow::bail!("that address is this daemon");
        }
        let fleet = self
            .inner
            .opts
            .fleet
            .as_ref()
            .is_some_and(|k| k.verify(&conn, their_role, &hello.fleet_proof));
        let stats = {
            let mut st = lock(&self.inner.state);
            if let Some(why) = st.banned.get(&node_id) {
                conn.close(CLOSE_BANNED.into(), b"banned");
                anyhow::bail!("peer is banned: {why}");
            }
            let e = st.peers.entry(addr).or_insert_with(|| new_entry(origin));
            // A node keeps its counters across reconnects.
            if e.node_id != node_id {
                e.stats = Arc::new(PeerStats::default());
            }
            e.node_id = node_id.clone();
            e.fleet = fleet;
            e.state = State::Connected;
            e.reason.clear();
            e.stats.clone()
        };
        let pc = PeerConn {
            conn: conn.clone(),
            node_id: node_id.clone(),
            addr,
            stats: stats.clone(),
            fleet,
            watch: super::watch::enabled() && hello.capabilities.iter().any(|c| c == WATCH),
            meta: hello.capabilities.iter().any(|c| c == META),
            route: hello.capabilities.iter().any(|c| c == ROUTE),
        };
        lock(&self.inner.state)
            .peers
            .entry(addr)
            .and_modify(|e| e.conn = Some(pc));
        tracing::info!(%addr, peer = short(&node_id), agent = hello.agent, fleet, "peer connected");
        // A new connection starts its idle clock, whatever the node did before.
        stats.heard();
        let provider = self.inner.provider.clone();
        let client = Client::new(stats, fleet, &node_id);
        tokio::spawn(async move {
            while let Ok((send, recv)) = conn.accept_bi().await {
                let (provider, client) = (provider.clone(), client.clone());
                tokio::spawn(async move {
                    if let Err(e) = provider.handle(send, recv, &client).await {
                        tracing::debug!("peer request ended: {e}");
                    }
                });
            }
        });
        Ok(())
    }

    fn lost(&self, addr: SocketAddr, conn: &quinn::Connection, reason: &str) {
        let mut st = lock(&self.inner.state);
        let Some(e) = st.peers.get_mut(&addr) else {
            return;
        };
        // Only if this was the connection in use; a newer one may have replaced it.
        if e.conn
            .as_ref()
            .is_some_and(|c| c.conn.stable_id() == conn.stable_id())
        {
            e.conn = None;
            e.state = State::Unreachable;
            e.reason = reason.to_string();
            tracing::info!(%addr, reason, "peer disconnected");
        }
        if e.conn.is_none() && e.origin == Origin::Incoming {
            st.peers.remove(&addr);
        }
    }

    fn set_state(&self, addr: SocketAddr, state: State, reason: &str) {
        if let Some(e) = lock(&self.inner.state).peers.get_mut(&addr)
            && e.conn.is_none()
        {
            e.state = state;
            e.reason = reason.to_string();
        }
    }

    /// Closes every connection (daemon shutdown).
    /// Closes every connection (daemon shutdown) and waits, briefly, until the close
    /// frames are out: a process that exits first leaves its peers to time out (30 s).
    pub async fn close(&self) {
        self.inner.endpoint.close(0u32.into(), b"shutting down");
        let _ = tokio::time::timeout(CLOSE_WAIT, self.inner.endpoint.wait_idle()).await;
    }
}

fn new_entry(origin: Origin) -> Entry {
    Entry {
        origin,
        state: State::New,
        conn: None,
        node_id: String::new(),
        reason: String::new(),
        choked_until: None,
        busy_until: None,
        benched: (0, None),
        stats: Arc::new(PeerStats::default()),
        fleet: false,
    }
}

#[derive(Debug, thiserror::Error)]
enum DialError {
    #[error("that address is this daemon")]
    Myself,
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<quinn::ConnectionError> for DialError {
    fn from(e: quinn::ConnectionError) -> Self {
        DialError::Other(e.into())
    }
}

impl From<quinn::ConnectError> for DialError {
    fn from(e: quinn::ConnectError) -> Self {
        DialError::Other(e.into())
    }
}

fn jitter(d: Duration) -> Duration {
    d.mul_f64(0.5 + rand::random::<f64>() * 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pull_near_its_end_asks_a_busy_peer_again_sooner() {
        assert_eq!(choke_for(100, 100), CHOKE);
        assert_eq!(choke_for(6, 100), CHOKE);
        assert_eq!(choke_for(5, 100), ENDGAME_CHOKE);
        assert_eq!(choke_for(0, 100), ENDGAME_CHOKE);
        assert_eq!(
            choke_for(0, 0),
            CHOKE,
            "a pull of unknown size is not near its end"
        );
        assert!(ENDGAME_CHOKE < CHOKE);
    }

    #[test]
    fn the_longest_idle_connection_makes_room_if_idle_long_enough() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let c: SocketAddr = "127.0.0.1:3".parse().unwrap();
        let s = Duration::from_secs;
        let conns = [(a, s(6)), (b, s(30)), (c, s(1))];
        assert_eq!(idlest(&conns, s(5)), Some(b));
        assert_eq!(idlest(&conns, s(31)), None, "none idle long enough");
        assert_eq!(idlest(&[], s(0)), None);
        // Ties go to the lowest address, so the choice does not depend on map order.
        assert_eq!(idlest(&[(b, s(9)), (a, s(9))], s(5)), Some(a));
    }
}
