//! Hub answers kept and shared in the fleet: the commit a ref pointed at, the listing at a
//! commit, Xet reconstructions, files stored in git. A node keeps what it took from the
//! Hub (`store`), answers fleet members' `meta` requests with it (`peer::serve`), and asks
//! fleet members when the Hub cannot answer (`engine::hub_answers` decides when). Nothing
//! here is given to or taken from a peer outside the fleet.

pub mod anchor;
pub mod check;
pub mod outage;
pub mod query;
pub mod share;
pub mod store;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::OnceLock;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use crate::cache::RepoCache;
use crate::peer::limits::{MAX_META_BODY, META_WAIT};
use crate::peer::{PeerSet, WeakPeerSet};
use crate::sync::lock;
pub use outage::Outage;
pub use query::Query;
pub use store::{Answer, MetaStore, now_unix};

pub struct HubMeta {
    store: MetaStore,
    cache_dir: PathBuf,
    peers: OnceLock<WeakPeerSet>,
    pub outage: Outage,
    pub sharing: share::Sharing,
    routes: std::sync::Mutex<Routes>,
    /// This node's heartbeat clock, should it be an anchor: milliseconds since the epoch at
    /// start, advanced by a monotonic clock (a wall clock set back must not stop it).
    born: (std::time::Instant, u64),
}

/// What fleet peers last said of their routes to the anchors (`anchor`).
#[derive(Default)]
struct Routes {
    reports: HashMap<String, Vec<anchor::Entry>>,
    beats: anchor::Heartbeats,
    /// The anchor last logged, and how far it was.
    logged: Option<(String, u32)>,
}

/// How a fleet member asked this node for an answer (§4.5, §4.6).
#[derive(Clone, Debug, Default)]
pub struct Ask {
    /// The asker takes this node for the answer's owner, or for a member on the way to it.
    pub as_owner: bool,
    /// The anchor the question climbs to (empty: this node is the owner).
    pub anchor: String,
    /// How many members passed the question on before it came here.
    pub relays: u32,
}

impl HubMeta {
    pub fn new(store: MetaStore, cache_dir: PathBuf) -> Self {
        HubMeta {
            store,
            cache_dir,
            peers: OnceLock::new(),
            outage: Outage::default(),
            sharing: share::Sharing::default(),
            routes: std::sync::Mutex::default(),
            born: (std::time::Instant::now(), now_unix().saturating_mul(1000)),
        }
    }

    /// The fleet to ask (set once the peer set runs).
    pub fn set_peers(&self, peers: &PeerSet) {
        let _ = self.peers.set(peers.downgrade());
    }

    fn peers(&self) -> Option<PeerSet> {
        self.peers.get().and_then(WeakPeerSet::upgrade)
    }

    /// Writes what was kept to disk (at shutdown: sled's own flusher runs only every 500 ms).
    pub fn flush(&self) {
        self.store.flush();
    }

    /// Keeps an answer the Hub just gave.
    pub fn record(&self, q: &Query, body: Vec<u8>, private: bool) {
        if let Query::Revision { repo, .. } | Query::Tree { repo, .. } = q {
            self.store.note_repo(repo, private);
        }
        self.store.put(
            q,
            &Answer {
                body,
                seen_unix: now_unix(),
                private,
            },
        );
    }

    /// What this node holds for `q`: a kept answer, or for a blob, the cache's own file
    /// (whoever wrote it; the asker checks it against the blob id).
    pub fn kept(&self, q: &Query) -> Option<Answer> {
        match q {
            Query::Blob { repo, blob_id } => {
                let rc = RepoCache::new(&self.cache_dir, repo.cache_folder_name());
                let path = rc.blob(blob_id);
                let meta = std::fs::metadata(&path).ok()?;
                if !meta.is_file() || meta.len() > MAX_META_BODY {
                    return None;
                }
                let body = std::fs::read(&path).ok()?;
                // A blob is as private as the repo's listing says; unknown counts as private.
                let private = self.private_repo(repo);
                Some(Answer {
                    seen_unix: meta
                        .modified()
                        .ok()
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map_or(0, |d| d.as_secs()),
                    body,
                    private,
                })
            }
            _ => self.store.get(q),
        }
    }

    /// Whether the repo was private or gated when this node last asked the Hub; unknown
    /// counts as private.
    fn private_repo(&self, repo: &xet::remote::RepoRef) -> bool {
        self.store.repo_private(repo).unwrap_or(true)
    }

    /// What a fleet member asking for `q` gets: what this node kept, or, while it is
    /// getting that answer from the Hub itself (or about to), that answer once it has it
    /// (`share`). Otherwise, asked on the way to an anchor, the answer from further up
    /// (`anchor`); asked as the owner, the answer of the member it sent to the Hub, or
    /// nothing (the asker goes to the Hub); asked as the one sent there, the answer of the
    /// member it sent on in turn. Blocking reads run off the async threads.
    pub async fn answer_for(
        self: &std::sync::Arc<Self>,
        q: &Query,
        asker: &str,
        ask: &Ask,
    ) -> Option<Answer> {
        use share::{Next, Pending};
        let up = if ask.as_owner {
            self.relay_toward(&ask.anchor, asker, ask.relays)
        } else {
            None
        };
        let asked = tokio::time::Instant::now();
        let mut since = asked;
        // A question on its way to the owner wants the Hub's answer of now: a branch's commit
        // kept from long ago does not stop it (an outage's question takes any).
        let usable = |a: &Answer| !(ask.as_owner && share::stale_ref(q, a.seen_unix, now_unix()));
        loop {
            if let Some(a) = self.kept_async(q).await.filter(usable) {
                return Some(a);
            }
            let pending = self.sharing.pending(q);
            let flight = matches!(pending, Pending::InFlight(_));
            let expected = !matches!(pending, Pending::Nothing);
            match share::next(flight, expected, since.elapsed(), asked.elapsed()) {
                Next::AwaitFlight => {
                    if let Pending::InFlight(mut rx) = pending {
                        let until = asked + share::OWNER_WAIT;
                        let _ = tokio::time::timeout_at(until, rx.wait_for(|done| *done)).await;
                    }
                    since = tokio::time::Instant::now();
                }
                Next::Poll => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
                Next::GiveUp => break,
            }
        }
        if let Some((c, target)) = up {
            let left = (asked + share::OWNER_WAIT)
                .saturating_duration_since(tokio::time::Instant::now())
                .max(std::time::Duration::from_millis(500));
            if let Some(a) = self.climb(&c, q, &target, ask.relays, left).await {
                return Some(a);
            }
            // This node's own pull may have been sent to the Hub meanwhile.
            if let Pending::InFlight(mut rx) = self.sharing.pending(q) {
                let _ = tokio::time::timeout(share::OWNER_WAIT, rx.wait_for(|done| *done)).await;
                if let Some(a) = self.kept_async(q).await.filter(usable) {
                    return Some(a);
                }
            }
        }
        if ask.as_owner {
            self.through_delegate(q, asker, ask.relays).await
        } else {
            self.own_delegates_answer(q, asker, ask.relays).await
        }
    }

    async fn kept_async(self: &std::sync::Arc<Self>, q: &Query) -> Option<Answer> {
        let (me, q2) = (self.clone(), q.clone());
        tokio::task::spawn_blocking(move || me.kept(&q2))
            .await
            .ok()
            .flatten()
    }

    /// Passes `q` on toward anchor `target` through `c`, and keeps the answer if it is
    /// sound.
    async fn climb(
        &self,
        c: &crate::peer::PeerConn,
        q: &Query,
        target: &str,
        relays: u32,
        wait: std::time::Duration,
    ) -> Option<Answer> {
        tracing::debug!(peer = ?c, "passing {} on toward its owner", q.describe());
        let mut req = q.to_wire();
        req.as_owner = true;
        req.anchor = target.to_string();
        req.relays = relays + 1;
        self.asked(c, q, req, wait).await
    }

    /// `q` asked of fleet member `c` with `req`: its answer, checked and kept (`sound`).
    async fn asked(
        &self,
        c: &crate::peer::PeerConn,
        q: &Query,
        req: zest_proto::peer::MetaRequest,
        wait: std::time::Duration,
    ) -> Option<Answer> {
        match c.meta(req, wait).await {
            Ok(Some(r)) => self.sound(&c.node_id, q, r.into()),
            Ok(None) => None,
            Err(e) => {
                tracing::debug!(peer = ?c, "no answer for {}: {e}", q.describe());
                None
            }
        }
    }

    /// `a`, from fleet member `from`, kept and given on if it passes `q`'s check; a strike
    /// for `from` if not.
    fn sound(&self, from: &str, q: &Query, a: Answer) -> Option<Answer> {
        match check::answer(q, &a.body) {
            Ok(()) => {
                self.keep(q, &a);
                Some(a)
            }
            Err(e) => {
                if let Some(peers) = self.peers() {
                    peers.strike(from, &format!("{}: {e}", q.describe()));
                }
                None
            }
        }
    }

    /// Keeps an answer a fleet member gave (already checked), so that this node answers the
    /// next member that asks.
    pub fn keep(&self, q: &Query, a: &Answer) {
        if let Query::Revision { repo, .. } | Query::Tree { repo, .. } = q {
            self.store.note_repo(repo, a.private);
        }
        self.store.put(q, a);
    }

    /// Nothing here for `q`, asked of this node as its owner: the member that asked first
    /// is sent to the Hub and later askers get that member's answer through this node
    /// (`share`).
    async fn through_delegate(&self, q: &Query, asker: &str, relays: u32) -> Option<Answer> {
        let d = self.sharing.delegate(q, asker)?;
        tracing::debug!(
            "passing on {} from the member asking the Hub for it",
            q.describe()
        );
        self.ask_member(&d, q, relays).await
    }

    /// Nothing here for `q`, asked of this node as a member an owner sent to the Hub: if
    /// it sent its own asker on in turn (it was on the way to the anchor), that member's
    /// answer.
    async fn own_delegates_answer(&self, q: &Query, asker: &str, relays: u32) -> Option<Answer> {
        let d = self.sharing.delegate_of(q)?;
        if d == asker || relays >= anchor::MAX_HOPS {
            return None;
        }
        self.ask_member(&d, q, relays).await
    }

    /// `q` as fleet member `node` answers it, checked and kept.
    async fn ask_member(&self, node: &str, q: &Query, relays: u32) -> Option<Answer> {
        let c = self.members().into_iter().find(|c| c.node_id == node)?;
        let wait = share::OWNER_WAIT + std::time::Duration::from_secs(1);
        let mut req = q.to_wire();
        req.relays = relays + 1;
        self.asked(&c, q, req, wait).await
    }

    /// What this node kept for `q`, else the first fleet member's answer, checked.
    pub async fn kept_or_fleet<T>(
        &self,
        q: &Query,
        check: impl Fn(&[u8]) -> Result<T, String>,
    ) -> Option<(T, Answer)> {
        if let Some(a) = self.kept(q) {
            match check(&a.body) {
                Ok(v) => return Some((v, a)),
                Err(e) => tracing::warn!("a kept answer for {} is unusable: {e}", q.describe()),
            }
        }
        self.ask_fleet(q, false, check).await.into_iter().next()
    }

    /// Connected fleet members that may be asked for Hub answers.
    fn members(&self) -> Vec<crate::peer::PeerConn> {
        self.peers().map_or_else(Vec::new, |p| {
            p.usable()
                .into_iter()
                .filter(|c| c.fleet && c.meta)
                .collect()
        })
    }

    /// This node's heartbeat, should it be an anchor.
    fn my_seq(&self) -> u64 {
        self.born.1 + self.born.0.elapsed().as_millis() as u64
    }

    /// The anchors this node routes Hub questions to (`anchor`), best first; just this node
    /// outside a fleet.
    pub fn route_table(&self) -> Vec<anchor::Hop> {
        let me = match self.peers() {
            Some(p) => p.node_id().to_string(),
            None => return Vec::new(),
        };
        let members = self.members();
        let ids: Vec<&str> = members.iter().map(|c| c.node_id.as_str()).collect();
        let r = lock(&self.routes);
        let now = std::time::Instant::now();
        let reports: Vec<anchor::Report<'_>> = r
            .reports
            .iter()
            .map(|(peer, entries)| anchor::Report { peer, entries })
            .collect();
        anchor::table(&me, self.my_seq(), &ids, &reports, |a, seq| {
            r.beats.fresh(a, seq, now)
        })
    }

    /// What this node tells a fleet member that asks for its routes.
    pub fn route_entries(&self) -> Vec<anchor::Entry> {
        self.route_table().iter().map(anchor::Hop::entry).collect()
    }

    /// Asks every fleet member that tells routes for them, every [`anchor::POLL`], while the
    /// peer set lives.
    pub async fn poll_routes(self: std::sync::Arc<Self>) {
        let mut tick = tokio::time::interval(anchor::POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if self.peers.get().is_some() && self.peers().is_none() {
                return;
            }
            let members: Vec<_> = self.members().into_iter().filter(|c| c.route).collect();
            let asks = members.into_iter().map(|c| async move {
                let r = tokio::time::timeout(anchor::POLL, c.route()).await;
                (c.node_id, r)
            });
            let got = futures_util::future::join_all(asks).await;
            let now = std::time::Instant::now();
            let mut r = lock(&self.routes);
            let asked: HashSet<&str> = got.iter().map(|(id, _)| id.as_str()).collect();
            r.reports.retain(|id, _| asked.contains(id.as_str()));
            for (id, res) in &got {
                match res {
                    Ok(Ok(entries)) => {
                        for e in entries {
                            r.beats.note(&e.anchor, e.seq, now);
                        }
                        r.reports.insert(id.clone(), entries.clone());
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(peer = crate::peer::conn::short(id), "no routes: {e}");
                        r.reports.remove(id);
                    }
                    Err(_) => {
                        r.reports.remove(id);
                    }
                }
            }
            drop(r);
            self.log_anchor();
        }
    }

    /// Says which member is the fleet's anchor when that changes (an operator's view of
    /// who asks the Hub for the fleet).
    fn log_anchor(&self) {
        if self.members().is_empty() {
            return;
        }
        let table = self.route_table();
        let Some(best) = table.first() else { return };
        let now = (best.anchor.clone(), best.hops);
        let mut r = lock(&self.routes);
        if r.logged.as_ref() == Some(&now) {
            return;
        }
        r.logged = Some(now);
        drop(r);
        let short = crate::peer::conn::short;
        match &best.via {
            None => tracing::info!(
                anchor = %short(&best.anchor),
                hops = 0,
                "this node is the fleet's anchor: it asks the Hub for the fleet"
            ),
            Some(via) => tracing::info!(
                anchor = %short(&best.anchor),
                hops = best.hops,
                via = %short(via),
                "the fleet's anchor, which asks the Hub for the fleet"
            ),
        }
    }

    /// The fleet member to ask for Hub answers on the way to their owner, the best anchor
    /// this node knows (`anchor`), and that owner; None if this node is the owner (or
    /// there is no fleet).
    pub fn owner(&self) -> Option<(crate::peer::PeerConn, String)> {
        let members = self.members();
        if members.is_empty() {
            return None;
        }
        let table = self.route_table();
        let best = table.first()?;
        let (via, owner) = anchor::next_hop(&table, &best.anchor)?;
        let c = members.into_iter().find(|c| c.node_id == via)?;
        Some((c, owner.to_string()))
    }

    /// The fleet member to pass a question climbing to `target` on to, and the target to
    /// name (`anchor::next_hop`); None if it stops here, or the way goes back to the asker.
    fn relay_toward(
        &self,
        target: &str,
        asker: &str,
        relays: u32,
    ) -> Option<(crate::peer::PeerConn, String)> {
        if target.is_empty() || relays >= anchor::MAX_HOPS {
            return None;
        }
        let table = self.route_table();
        let (via, target) = anchor::next_hop(&table, target)?;
        if via == asker {
            return None;
        }
        let c = self.members().into_iter().find(|c| c.node_id == via)?;
        Some((c, target.to_string()))
    }

    /// `q` from its owner (`share`), checked, if the owner is another member and has it or
    /// gets it in time (asked through the members on the way to it).
    pub async fn ask_owner<T>(
        &self,
        q: &Query,
        check: impl Fn(&[u8]) -> Result<T, String>,
    ) -> Option<(T, Answer)> {
        let Some((c, owner)) = self.owner() else {
            return self.delegates_answer(q, check).await;
        };
        tracing::debug!(peer = ?c, owner = crate::peer::conn::short(&owner), "asking the owner of {} first", q.describe());
        let wait = share::OWNER_WAIT + std::time::Duration::from_secs(1);
        let mut req = q.to_wire();
        req.as_owner = true;
        req.anchor = owner;
        let reply = match c.meta(req, wait).await {
            Ok(Some(r)) => r,
            // This node may have passed another member's question on, and been sent to the
            // Hub for it, then sent that member there in turn: its answer, if so.
            Ok(None) => {
                tracing::debug!(peer = ?c, "the owner of {} has none", q.describe());
                return self.delegates_answer(q, check).await;
            }
            Err(e) => {
                tracing::debug!(peer = ?c, "the owner of {} did not answer: {e}", q.describe());
                return self.delegates_answer(q, check).await;
            }
        };
        match check(&reply.piece) {
            Ok(v) => {
                tracing::debug!(peer = ?c, "took {} from its owner in the fleet", q.describe());
                Some((v, Answer::from(reply)))
            }
            Err(e) => {
                if let Some(peers) = self.peers() {
                    peers.strike(&c.node_id, &format!("{}: {e}", q.describe()));
                }
                None
            }
        }
    }

    /// This node owns `q`, or passed a question for it on, and a member it sent to the Hub
    /// for it is getting it: its answer, checked.
    async fn delegates_answer<T>(
        &self,
        q: &Query,
        check: impl Fn(&[u8]) -> Result<T, String>,
    ) -> Option<(T, Answer)> {
        let d = self.sharing.delegate_of(q)?;
        let a = self.ask_member(&d, q, 0).await?;
        match check(&a.body) {
            Ok(v) => {
                tracing::debug!("took {} from the member that asked the Hub", q.describe());
                Some((v, a))
            }
            Err(e) => {
                if let Some(peers) = self.peers() {
                    peers.strike(&d, &format!("{}: {e}", q.describe()));
                }
                None
            }
        }
    }

    /// Asks every fleet member that offers `meta` at once and gives the answers that pass
    /// `check`, within [`META_WAIT`]: the first one, or with `all`, every one that came in
    /// time (a ref is taken from whichever member saw it last). A member whose answer fails
    /// its check gets a strike.
    pub async fn ask_fleet<T>(
        &self,
        q: &Query,
        all: bool,
        check: impl Fn(&[u8]) -> Result<T, String>,
    ) -> Vec<(T, Answer)> {
        let Some(peers) = self.peers() else {
            return Vec::new();
        };
        let members = self.members();
        if members.is_empty() {
            return Vec::new();
        }
        let wire = q.to_wire();
        let mut asks: FuturesUnordered<_> = members
            .into_iter()
            .map(|c| {
                let req = wire.clone();
                async move { (c.meta(req, META_WAIT).await, c) }
            })
            .collect();
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + META_WAIT;
        while let Ok(Some((r, c))) = tokio::time::timeout_at(deadline, asks.next()).await {
            let reply = match r {
                Ok(Some(reply)) => reply,
                Ok(None) => continue,
                Err(e) => {
                    tracing::debug!(peer = ?c, "no answer for {}: {e}", q.describe());
                    continue;
                }
            };
            match check(&reply.piece) {
                Ok(v) => {
                    tracing::info!(peer = ?c, "took {} from a fleet member", q.describe());
                    out.push((v, Answer::from(reply)));
                    if !all {
                        break;
                    }
                }
                Err(e) => peers.strike(&c.node_id, &format!("{}: {e}", q.describe())),
            }
        }
        out
    }
}
