//! Hub answers kept and shared in the fleet: the commit a ref pointed at, the listing at a
//! commit, Xet reconstructions, files stored in git. A node keeps what it took from the
//! Hub (`store`), answers fleet members' `meta` requests with it (`peer::serve`), and asks
//! fleet members when the Hub cannot answer (`engine::hub_answers` decides when). Nothing
//! here is given to or taken from a peer outside the fleet.

pub mod check;
pub mod outage;
pub mod query;
pub mod share;
pub mod store;

use std::path::PathBuf;
use std::sync::OnceLock;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use crate::cache::RepoCache;
use crate::peer::limits::{MAX_META_BODY, META_WAIT};
use crate::peer::{PeerSet, WeakPeerSet};
pub use outage::Outage;
pub use query::Query;
pub use store::{Answer, MetaStore, now_unix};
use xet::remote::RepoRef;

pub struct HubMeta {
    store: MetaStore,
    cache_dir: PathBuf,
    peers: OnceLock<WeakPeerSet>,
    pub outage: Outage,
    pub sharing: share::Sharing,
}

impl HubMeta {
    pub fn new(store: MetaStore, cache_dir: PathBuf) -> Self {
        HubMeta {
            store,
            cache_dir,
            peers: OnceLock::new(),
            outage: Outage::default(),
            sharing: share::Sharing::default(),
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
    /// (`share`). Blocking reads run off the async threads.
    pub async fn answer_for(
        self: &std::sync::Arc<Self>,
        q: &Query,
        asker: &str,
        as_owner: bool,
    ) -> Option<Answer> {
        use share::{Next, Pending};
        let asked = tokio::time::Instant::now();
        let mut since = asked;
        loop {
            let (me, q2) = (self.clone(), q.clone());
            let kept = tokio::task::spawn_blocking(move || me.kept(&q2))
                .await
                .ok()
                .flatten();
            if kept.is_some() {
                return kept;
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
                Next::GiveUp if as_owner => return self.through_delegate(q, asker).await,
                Next::GiveUp => return None,
            }
        }
    }

    /// Nothing here for `q`, asked of this node as its owner: the member that asked first
    /// is sent to the Hub and later askers get that member's answer through this node
    /// (`share`).
    async fn through_delegate(&self, q: &Query, asker: &str) -> Option<Answer> {
        let d = self.sharing.delegate(q, asker)?;
        tracing::debug!(
            "passing on {} from the member asking the Hub for it",
            q.describe()
        );
        self.ask_member(&d, q).await
    }

    /// `q` as fleet member `node` answers it, unchecked (whoever uses it checks it).
    async fn ask_member(&self, node: &str, q: &Query) -> Option<Answer> {
        let c = self.members().into_iter().find(|c| c.node_id == node)?;
        let wait = share::OWNER_WAIT + std::time::Duration::from_secs(1);
        match c.meta(q.to_wire(), wait).await {
            Ok(Some(r)) => Some(Answer {
                body: r.piece,
                seen_unix: r.seen_unix,
                private: r.private,
            }),
            Ok(None) => None,
            Err(e) => {
                tracing::debug!(peer = ?c, "no answer for {}: {e}", q.describe());
                None
            }
        }
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

    /// The fleet member that asks the Hub for `q` on the fleet's behalf (`repo`: the repo a
    /// reconstruction is asked for, `share::owner_key`), unless that is this node (or there
    /// is no fleet).
    pub fn owner(&self, q: &Query, repo: Option<&RepoRef>) -> Option<crate::peer::PeerConn> {
        let peers = self.peers()?;
        let members = self.members();
        if members.is_empty() {
            return None;
        }
        let mut ids: Vec<&str> = members.iter().map(|c| c.node_id.as_str()).collect();
        ids.push(peers.node_id());
        let o = share::owner(&share::owner_key(q, repo), &ids)?.to_string();
        members.into_iter().find(|c| c.node_id == o)
    }

    /// `q` from its owner (`share`), checked, if the owner is another member and has it or
    /// gets it in time.
    pub async fn ask_owner<T>(
        &self,
        q: &Query,
        repo: Option<&RepoRef>,
        check: impl Fn(&[u8]) -> Result<T, String>,
    ) -> Option<(T, Answer)> {
        let Some(c) = self.owner(q, repo) else {
            return self.delegates_answer(q, check).await;
        };
        tracing::debug!(peer = ?c, "asking the owner of {} first", q.describe());
        let wait = share::OWNER_WAIT + std::time::Duration::from_secs(1);
        let mut req = q.to_wire();
        req.as_owner = true;
        let reply = match c.meta(req, wait).await {
            Ok(Some(r)) => r,
            Ok(None) => {
                tracing::debug!(peer = ?c, "the owner of {} has none", q.describe());
                return None;
            }
            Err(e) => {
                tracing::debug!(peer = ?c, "the owner of {} did not answer: {e}", q.describe());
                return None;
            }
        };
        match check(&reply.piece) {
            Ok(v) => {
                tracing::debug!(peer = ?c, "took {} from its owner in the fleet", q.describe());
                Some((
                    v,
                    Answer {
                        body: reply.piece,
                        seen_unix: reply.seen_unix,
                        private: reply.private,
                    },
                ))
            }
            Err(e) => {
                if let Some(peers) = self.peers() {
                    peers.strike(&c.node_id, &format!("{}: {e}", q.describe()));
                }
                None
            }
        }
    }

    /// This node owns `q`, and a member it sent to the Hub for it is getting it: its answer,
    /// checked.
    async fn delegates_answer<T>(
        &self,
        q: &Query,
        check: impl Fn(&[u8]) -> Result<T, String>,
    ) -> Option<(T, Answer)> {
        let d = self.sharing.delegate_of(q)?;
        let a = self.ask_member(&d, q).await?;
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
                    out.push((
                        v,
                        Answer {
                            body: reply.piece,
                            seen_unix: reply.seen_unix,
                            private: reply.private,
                        },
                    ));
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
