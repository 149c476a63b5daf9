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
use super::serve::Provider;
use super::stats::PeerStats;
use super::tls::{Identity, remote_node_id};
use super::wire;
use crate::sync::lock;

pub const VERSION: u32 = 1;
const CAPABILITIES: [&str; 3] = ["have", "manifest", "get"];
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How long a `busy` peer is left alone.
const CHOKE: Duration = Duration::from_secs(1);
/// Requests for chunks a peer said it held, answered `not_found`, before it is banned.
const STRIKES_TO_BAN: u32 = 2;
/// Strikes closer together than this count as one: parallel requests that fail at the same
/// moment (a file changing hands between download and index) are one event, not many.
const STRIKE_WINDOW: Duration = Duration::from_secs(5);

/// QUIC application close codes.
const CLOSE_VERSION: u32 = 1;
const CLOSE_BANNED: u32 = 2;
const CLOSE_SELF: u32 = 3;

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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Connecting,
    Connected,
    Unreachable,
}

struct Entry {
    origin: Origin,
    state: State,
    conn: Option<PeerConn>,
    node_id: String,
    reason: String,
    choked_until: Option<Instant>,
    stats: Arc<PeerStats>,
}

#[derive(Default)]
struct SetState {
    peers: HashMap<SocketAddr, Entry>,
    /// node id → why
    banned: HashMap<String, String>,
    /// Strike count and when the last one counted.
    strikes: HashMap<String, (u32, Option<Instant>)>,
}

struct Inner {
    endpoint: quinn::Endpoint,
    node_id: String,
    provider: Provider,
    state: Mutex<SetState>,
}

#[derive(Clone)]
pub struct PeerSet {
    inner: Arc<Inner>,
}

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
}

impl PeerSet {
    /// Binds the QUIC endpoint on `listen` and starts accepting peers.
    pub fn start(listen: SocketAddr, identity: &Identity, provider: Provider) -> Result<Self> {
        let mut endpoint = quinn::Endpoint::server(identity.server_config()?, listen)
            .with_context(|| format!("listening for peers on {listen} (UDP)"))?;
        endpoint.set_default_client_config(identity.client_config()?);
        let set = PeerSet {
            inner: Arc::new(Inner {
                endpoint,
                node_id: identity.node_id.clone(),
                provider,
                state: Mutex::new(SetState::default()),
            }),
        };
        let me = set.clone();
        tokio::spawn(async move { me.accept_loop().await });
        Ok(set)
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.inner.endpoint.local_addr().ok()
    }

    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    /// Adds a peer address from any source; it is dialled, and redialled with backoff.
    pub fn add(&self, addr: SocketAddr, origin: Origin) {
        if Some(addr) == self.local_addr() {
            return;
        }
        {
            let mut st = lock(&self.inner.state);
            if st.peers.contains_key(&addr) {
                return;
            }
            st.peers.insert(addr, new_entry(origin));
        }
        let me = self.clone();
        tokio::spawn(async move { me.dial_loop(addr).await });
    }

    /// Connected peers that are neither banned nor choked, fastest first.
    pub fn usable(&self) -> Vec<PeerConn> {
        let now = Instant::now();
        let st = lock(&self.inner.state);
        let mut out: Vec<PeerConn> = st
            .peers
            .values()
            .filter(|e| e.state == State::Connected && e.choked_until.is_none_or(|t| t <= now))
            .filter(|e| !st.banned.contains_key(&e.node_id))
            .filter_map(|e| e.conn.clone())
            .collect();
        out.sort_by(|a, b| b.stats.rate_from().total_cmp(&a.stats.rate_from()));
        // One connection per node, even when both sides dialled.
        let mut seen = std::collections::HashSet::new();
        out.retain(|c| seen.insert(c.node_id.clone()));
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
        if n >= STRIKES_TO_BAN {
            self.ban(node_id, reason);
        }
    }

    /// Leaves a `busy` peer alone for a moment.
    pub fn choke(&self, node_id: &str) {
        let until = Instant::now() + CHOKE;
        for e in lock(&self.inner.state).peers.values_mut() {
            if e.node_id == node_id {
                e.choked_until = Some(until);
            }
        }
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
                    (None, State::Connected) if e.choked_until.is_some_and(|t| t > now) => "choked",
                    (None, State::Connected) => "connected",
                    (None, State::Connecting) => "connecting",
                    (None, State::Unreachable) => "unreachable",
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
                }
            })
            .collect();
        rows.sort_by_key(|r| r.addr);
        rows
    }

    async fn dial_loop(&self, addr: SocketAddr) {
        let mut backoff = BACKOFF_MIN;
        loop {
            let (connected, banned) = {
                let st = lock(&self.inner.state);
                match st.peers.get(&addr) {
                    None => return,
                    Some(e) => (
                        e.state == State::Connected,
                        !e.node_id.is_empty() && st.banned.contains_key(&e.node_id),
                    ),
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
            self.set_state(addr, State::Connecting, "");
            match self.dial(addr).await {
                Ok(conn) => {
                    backoff = BACKOFF_MIN;
                    let reason = conn.closed().await;
                    self.lost(addr, &conn, &reason.to_string());
                }
                Err(e) => {
                    tracing::debug!(%addr, "cannot reach peer: {e:#}");
                    self.set_state(addr, State::Unreachable, &format!("{e:#}"));
                }
            }
            tokio::time::sleep(jitter(backoff)).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    async fn dial(&self, addr: SocketAddr) -> Result<quinn::Connection> {
        let connecting = self.inner.endpoint.connect(addr, "zest")?;
        let conn = tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting)
            .await
            .context("QUIC handshake timed out")??;
        let hello = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
            let (mut send, mut recv) = conn.open_bi().await?;
            wire::write(&mut send, &hello()).await?;
            send.finish()?;
            let theirs = wire::read::<peer::Hello>(&mut recv).await?;
            anyhow::Ok(theirs)
        })
        .await
        .context("zest handshake timed out")??;
        self.admit(conn.clone(), addr, hello, Origin::Static)?;
        Ok(conn)
    }

    async fn accept_loop(&self) {
        while let Some(incoming) = self.inner.endpoint.accept().await {
            let me = self.clone();
            tokio::spawn(async move {
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
                    wire::write(&mut send, &hello()).await?;
                    send.finish()?;
                    me.admit(conn.clone(), addr, theirs, Origin::Incoming)?;
                    anyhow::Ok(conn)
                }
                .await;
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
            e.state = State::Connected;
            e.reason.clear();
            e.stats.clone()
        };
        let pc = PeerConn {
            conn: conn.clone(),
            node_id: node_id.clone(),
            addr,
            stats: stats.clone(),
        };
        lock(&self.inner.state)
            .peers
            .entry(addr)
            .and_modify(|e| e.conn = Some(pc));
        tracing::info!(%addr, peer = short(&node_id), agent = hello.agent, "peer connected");
        let provider = self.inner.provider.clone();
        tokio::spawn(async move {
            while let Ok((send, recv)) = conn.accept_bi().await {
                let (provider, stats) = (provider.clone(), stats.clone());
                tokio::spawn(async move {
                    if let Err(e) = provider.handle(send, recv, &stats).await {
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
    pub fn close(&self) {
        self.inner.endpoint.close(0u32.into(), b"shutting down");
    }
}

fn new_entry(origin: Origin) -> Entry {
    Entry {
        origin,
        state: State::Connecting,
        conn: None,
        node_id: String::new(),
        reason: String::new(),
        choked_until: None,
        stats: Arc::new(PeerStats::default()),
    }
}

fn hello() -> peer::Hello {
    peer::Hello {
        version: VERSION,
        capabilities: CAPABILITIES.iter().map(|s| s.to_string()).collect(),
        agent: format!("zestd/{}", env!("CARGO_PKG_VERSION")),
    }
}

fn jitter(d: Duration) -> Duration {
    d.mul_f64(0.5 + rand::random::<f64>() * 0.5)
}
