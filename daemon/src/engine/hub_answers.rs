//! Where a pull's Hub answers come from. The Hub first, and what it answers is kept
//! (`hubmeta`); when the Hub cannot answer — unreachable, 5xx, 429 after its Retry-After —
//! what this node kept or a fleet member gives (docs/PROTOCOL.md §4.5). Answers addressed by
//! a commit or a content hash never change, so they are taken as they are; the commit a
//! branch points at can change, so it is taken from the fleet only where the user allowed
//! stale refs, with a warning that says how old it is. A 401, 403 or 404 is the Hub's own
//! answer and is never replaced.

use std::sync::Arc;

use xet::reconstruction::Reconstruction;
use xet::remote::{CasClient, HubClient, RemoteError, RepoRef, TreeEntry};

use super::error::{Kind, PullError};
use crate::hubmeta::outage::unavailable;
use crate::hubmeta::{Answer, HubMeta, Query, check, now_unix};

/// How long the Hub may take before the fleet is asked meanwhile: the Hub answers in well
/// under a second unless it is retrying (429, 5xx) or cannot be reached.
pub const HEDGE_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

pub use crate::hubmeta::share::REF_FRESH_SECS;

/// Where an answer came from.
enum Got<T> {
    Hub(T),
    /// Kept by this node, or given by a fleet member.
    Kept(T, Answer),
}

/// A revision resolved to a commit.
pub struct Resolved {
    pub commit: String,
    /// Whether the repo is private or gated, when known (the Hub's repo info, or the kept
    /// answer); None when the pull did not ask (a pinned commit without a token).
    pub private: Option<bool>,
    /// What the user must hear: the ref came from the fleet, and how old it is.
    pub warning: Option<String>,
}

pub struct HubAnswers<'a> {
    pub hub: &'a HubClient,
    pub meta: Option<&'a Arc<HubMeta>>,
    pub allow_stale_refs: bool,
}

impl HubAnswers<'_> {
    fn hub_down(&self) -> bool {
        self.meta
            .is_some_and(|m| m.outage.is_down(self.hub.endpoint()))
    }

    /// Notes what the Hub's answer says of its health; true if the fleet may stand in.
    fn note(&self, r: Result<(), &RemoteError>) -> bool {
        let Some(m) = self.meta else { return false };
        match r {
            Ok(()) => {
                m.outage.note_up(self.hub.endpoint());
                false
            }
            Err(e) if unavailable(e) => {
                tracing::warn!("the Hub cannot answer now ({e}); asking the fleet");
                m.outage.note_down(self.hub.endpoint());
                true
            }
            Err(_) => false,
        }
    }

    /// The commit `revision` names, and the repo's visibility when it had to be asked.
    pub async fn resolve(
        &self,
        repo: &RepoRef,
        revision: &str,
        had_token: bool,
    ) -> Result<Resolved, PullError> {
        let pinned = super::pull::is_commit_hash(revision);
        // A pinned commit needs the Hub only to say whether a token's repo is private, and
        // while the Hub is known to be down, the listing's keeper says that.
        if pinned && (!had_token || self.hub_down()) {
            return Ok(Resolved {
                commit: revision.to_string(),
                private: None,
                warning: None,
            });
        }
        let q = Query::Revision {
            repo: repo.clone(),
            revision: revision.to_string(),
        };
        if self.allow_stale_refs
            && self.hub_down()
            && let Some(r) = self.stale(repo, revision, &q).await
        {
            return Ok(r);
        }
        if !pinned
            && !self.hub_down()
            && let Some((commit, a)) = self.owners_answer(&q, check::commit).await
            && now_unix().saturating_sub(a.seen_unix) <= REF_FRESH_SECS
        {
            return Ok(Resolved {
                commit,
                private: Some(a.private),
                warning: None,
            });
        }
        let in_flight = self.in_flight(&q);
        let info = self.hub.repo_info(repo, revision).await;
        let err = match info {
            Ok(info) => {
                self.note(Ok(()));
                let private = had_token && info.restricted();
                let commit = match (pinned, info.sha) {
                    (true, _) => revision.to_string(),
                    (false, Some(sha)) => sha,
                    (false, None) => {
                        return Err(PullError::new(
                            Kind::Network,
                            "the Hub's repo info has no commit sha",
                        ));
                    }
                };
                if let Some(m) = self.meta
                    && !pinned
                    && super::pull::is_commit_hash(&commit)
                {
                    m.record(&q, commit.clone().into_bytes(), private);
                }
                drop(in_flight);
                return Ok(Resolved {
                    commit,
                    private: Some(private),
                    warning: None,
                });
            }
            Err(e) => e,
        };
        if !self.note(Err(&err)) {
            return Err(err.into());
        }
        if pinned {
            // The listing's keeper says whether it is private.
            return Ok(Resolved {
                commit: revision.to_string(),
                private: None,
                warning: None,
            });
        }
        if !self.allow_stale_refs {
            return Err(PullError::from(err).context(&format!(
                "cannot resolve {revision:?} while the Hub cannot answer (pin a commit, or allow \
                 the commit the fleet saw last with --allow-stale-refs or allow_stale_refs = true)"
            )));
        }
        match self.stale(repo, revision, &q).await {
            Some(r) => Ok(r),
            None => Err(PullError::from(err).context(&format!(
                "cannot resolve {revision:?}: the Hub cannot answer and no fleet member has seen it"
            ))),
        }
    }

    /// `revision` as the newest commit this node or a fleet member saw it point at, with
    /// the warning the user must hear.
    async fn stale(&self, repo: &RepoRef, revision: &str, q: &Query) -> Option<Resolved> {
        let (commit, a, from) = self.newest_ref(q).await?;
        let warning = format!(
            "the Hub cannot answer, so {repo}@{revision} is taken as {commit}: the commit {from} \
             saw it point at {} ago; it may have moved since",
            age(now_unix().saturating_sub(a.seen_unix))
        );
        tracing::warn!("{warning}");
        Some(Resolved {
            commit,
            private: Some(a.private),
            warning: Some(warning),
        })
    }

    /// The newest commit this node or any fleet member saw `q` point at.
    async fn newest_ref(&self, q: &Query) -> Option<(String, Answer, &'static str)> {
        let m = self.meta?;
        let mut best: Option<(String, Answer, &'static str)> = m
            .kept(q)
            .and_then(|a| Some((check::commit(&a.body).ok()?, a, "this node")));
        for (c, a) in m.ask_fleet(q, true, check::commit).await {
            if best.as_ref().is_none_or(|b| a.seen_unix > b.1.seen_unix) {
                best = Some((c, a, "a fleet member"));
            }
        }
        best
    }

    /// The recursive listing at `commit`, and whether the repo is private or gated.
    pub async fn tree(
        &self,
        repo: &RepoRef,
        commit: &str,
        private: Option<bool>,
        had_token: bool,
    ) -> Result<(Vec<TreeEntry>, bool), PullError> {
        let q = Query::Tree {
            repo: repo.clone(),
            commit: commit.to_string(),
        };
        match self
            .hedged(&q, self.hub.list_files(repo, commit), check::tree)
            .await
        {
            Ok(Got::Hub(listing)) => {
                // Without repo info, a listing that needed no token is public, and one
                // taken with a token is treated as private (the safe side).
                let private = private.unwrap_or(had_token);
                if let Some(m) = self.meta
                    && let Ok(body) = serde_json::to_vec(&listing)
                {
                    m.record(&q, body, private);
                }
                Ok((listing, private))
            }
            Ok(Got::Kept(listing, a)) => Ok((listing, private.unwrap_or(a.private))),
            Err(e) => Err(e),
        }
    }

    /// The Hub's answer to `q` (`hub`), or one kept or given by a fleet member in its
    /// stead, for answers that never change (addressed by commit or hash):
    /// - while the Hub is known to be down (within [`OUTAGE_HOLD`]), the kept or fleet
    ///   answer first, the Hub only if nobody has one;
    /// - if the Hub takes longer than [`HEDGE_AFTER`] (retrying a 429 or a 5xx, or a
    ///   connection that never opens), the fleet is asked meanwhile, and a public answer
    ///   from it is taken at once (a private one only once the Hub has failed: while the
    ///   Hub may still answer, it decides);
    /// - if the Hub fails in a way the fleet may stand in for, the kept or fleet answer.
    ///
    /// [`OUTAGE_HOLD`]: crate::hubmeta::outage::OUTAGE_HOLD
    async fn hedged<T, C>(
        &self,
        q: &Query,
        hub: impl std::future::Future<Output = Result<T, RemoteError>>,
        check: C,
    ) -> Result<Got<T>, PullError>
    where
        C: Fn(&[u8]) -> Result<T, String> + Clone,
    {
        if self.meta.is_none() {
            return Ok(Got::Hub(hub.await?));
        }
        if self.hub_down()
            && let Some((v, a)) = self.kept_or_fleet(q, check.clone()).await
        {
            return Ok(Got::Kept(v, a));
        }
        // One Hub request per fleet: the answer's owner asks the Hub, the others ask it.
        if let Some((v, a)) = self.owners_answer(q, check.clone()).await {
            return Ok(Got::Kept(v, a));
        }
        let _in_flight = self.meta.map(|m| m.sharing.begin(q));
        let mut hub = std::pin::pin!(hub);
        let mut held_back = None;
        let r = tokio::select! {
            r = &mut hub => r,
            _ = tokio::time::sleep(HEDGE_AFTER) => {
                tracing::info!("the Hub is slow to give {}; asking the fleet meanwhile", q.describe());
                let fleet = self.kept_or_fleet(q, check.clone());
                tokio::select! {
                    r = &mut hub => r,
                    f = fleet => match f {
                        Some((v, a)) if !a.private => return Ok(Got::Kept(v, a)),
                        other => {
                            held_back = other;
                            hub.await
                        }
                    },
                }
            }
        };
        match r {
            Ok(v) => {
                self.note(Ok(()));
                Ok(Got::Hub(v))
            }
            Err(e) if self.note(Err(&e)) => {
                let got = match held_back {
                    Some(g) => Some(g),
                    None => self.kept_or_fleet(q, check).await,
                };
                match got {
                    Some((v, a)) => Ok(Got::Kept(v, a)),
                    None => Err(PullError::from(e)
                        .context(&format!("and no fleet member holds {}", q.describe()))),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// `q` from its owner in the fleet (`hubmeta::share`), if that is another member and it
    /// has or gets the answer in time. A private repo's ref and listing are not taken this
    /// way: the Hub decides, per node and token, who may read them; once it has, the
    /// reconstructions and git-stored files of the listing may come from a member.
    async fn owners_answer<T>(
        &self,
        q: &Query,
        check: impl Fn(&[u8]) -> Result<T, String>,
    ) -> Option<(T, Answer)> {
        let m = self.meta?;
        let (v, a) = m.ask_owner(q, check).await?;
        let per_node = matches!(q, Query::Revision { .. } | Query::Tree { .. });
        if a.private && per_node {
            return None;
        }
        // Kept, so that members whose way to the owner passes here are answered here.
        m.keep(q, &a);
        Some((v, a))
    }

    /// Marks `q` as being asked of the Hub here until the guard drops, so members asking
    /// for it wait for this node's answer.
    pub fn in_flight(&self, q: &Query) -> Option<crate::hubmeta::share::InFlight<'_>> {
        self.meta.map(|m| m.sharing.begin(q))
    }

    async fn kept_or_fleet<T>(
        &self,
        q: &Query,
        check: impl Fn(&[u8]) -> Result<T, String>,
    ) -> Option<(T, Answer)> {
        self.meta?.kept_or_fleet(q, check).await
    }

    /// A git-stored file's bytes from this node's cache or a fleet member, checked against
    /// `blob_id`; for when the Hub cannot serve it.
    pub async fn blob(&self, repo: &RepoRef, blob_id: &str) -> Option<Vec<u8>> {
        let q = Query::Blob {
            repo: repo.clone(),
            blob_id: blob_id.to_string(),
        };
        let id = blob_id.to_string();
        self.kept_or_fleet(&q, move |b| check::blob(&id, b))
            .await
            .map(|(_, a)| a.body)
    }

    /// A git-stored file: `from_hub` writes it, unless the Hub is slow (then a fleet
    /// member's copy is taken meanwhile if one has it) or fails in a way the fleet may stand
    /// in for. Ok(None): the Hub's download is in place; Ok(Some): the checked bytes the
    /// fleet gave, for the caller to write (the Hub's download was dropped).
    pub async fn race_blob(
        &self,
        repo: &RepoRef,
        blob_id: &str,
        from_hub: impl std::future::Future<Output = Result<(), PullError>>,
    ) -> Result<Option<Vec<u8>>, PullError> {
        if self.meta.is_none() {
            return from_hub.await.map(|()| None);
        }
        let q = Query::Blob {
            repo: repo.clone(),
            blob_id: blob_id.to_string(),
        };
        let id = blob_id.to_string();
        if let Some((_, a)) = self.owners_answer(&q, move |b| check::blob(&id, b)).await {
            return Ok(Some(a.body));
        }
        let mut from_hub = std::pin::pin!(from_hub);
        let r = tokio::select! {
            r = &mut from_hub => r,
            _ = tokio::time::sleep(HEDGE_AFTER) => {
                tokio::select! {
                    r = &mut from_hub => r,
                    b = self.blob(repo, blob_id) => match b {
                        Some(body) => return Ok(Some(body)),
                        None => from_hub.await,
                    },
                }
            }
        };
        match r {
            Ok(()) => Ok(None),
            Err(e) if self.stand_in(&e) => match self.blob(repo, blob_id).await {
                Some(body) => Ok(Some(body)),
                None => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// Whether a download from the Hub failed in a way the fleet may stand in for (no
    /// answer, or a broken one: what the fleet gives is checked against the blob id), and
    /// notes it so.
    fn stand_in(&self, e: &PullError) -> bool {
        let Some(m) = self.meta else { return false };
        if e.kind != Kind::Network {
            return false;
        }
        tracing::warn!("the Hub cannot serve a file now ({e}); asking the fleet");
        m.outage.note_down(self.hub.endpoint());
        true
    }

    /// The Hub failed lately in a way the fleet may stand in for (within
    /// [`OUTAGE_HOLD`](crate::hubmeta::outage::OUTAGE_HOLD)).
    pub fn hub_known_down(&self) -> bool {
        self.hub_down()
    }
}

/// A Xet file's reconstruction: the CAS, kept on success; when the CAS (or the Hub's token
/// route) cannot answer, what this node kept or a fleet member gives. Its fetch URLs may
/// have expired by then; its terms have not, and every chunk is checked against the file's
/// Xet hash as it lands, whoever sends it.
pub async fn reconstruction(
    meta: Option<&Arc<HubMeta>>,
    cas: &CasClient,
    file: &xet::XetHash,
    private: bool,
) -> Result<Reconstruction, PullError> {
    let q = Query::Reconstruction(*file);
    let answers = HubAnswers {
        hub: cas.hub(),
        meta,
        allow_stale_refs: false,
    };
    match answers
        .hedged(&q, cas.reconstruction(file), check::reconstruction)
        .await?
    {
        Got::Hub(r) => {
            if let Some(m) = meta
                && let Ok(body) = serde_json::to_vec(&r)
            {
                m.record(&q, body, private);
            }
            Ok(r)
        }
        Got::Kept(r, _) => Ok(r),
    }
}

/// "3 min", "2 h", "5 days": how old a kept ref is, as a user reads it.
pub fn age(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::age;

    #[test]
    fn ages_read_as_a_user_says_them() {
        assert_eq!(age(5), "5 s");
        assert_eq!(age(600), "10 min");
        assert_eq!(age(3 * 3600), "3 h");
        assert_eq!(age(10 * 86_400), "10 days");
    }
}
