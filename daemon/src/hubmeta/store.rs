//! The Hub answers this node took (`<state>/hubmeta`, sled): kept apart from the index
//! because they come from the Hub, not from the cache, so an index rebuild cannot make
//! them up again. Blobs are not kept here: they are the cache's own files.

use std::path::Path;

use xet::remote::RepoRef;

use super::query::Query;

/// An answer, as kept and as passed between fleet members.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub body: Vec<u8>,
    /// When it came from the Hub (Unix seconds).
    pub seen_unix: u64,
    /// The repo it belongs to is private or gated.
    pub private: bool,
}

impl From<zest_proto::peer::MetaReply> for Answer {
    fn from(r: zest_proto::peer::MetaReply) -> Answer {
        Answer {
            body: r.piece,
            seen_unix: r.seen_unix,
            private: r.private,
        }
    }
}

pub struct MetaStore {
    db: sled::Db,
    refs: sled::Tree,
    trees: sled::Tree,
    recons: sled::Tree,
    /// Repo → whether it was private or gated when last listed.
    repos: sled::Tree,
}

impl MetaStore {
    /// Opens the store under `state_dir`, starting empty if it is unreadable (nothing is
    /// lost that the Hub cannot give again).
    pub fn open(state_dir: &Path) -> Result<Self, sled::Error> {
        let dir = state_dir.join("hubmeta");
        let config = |d: &Path| sled::Config::new().path(d).cache_capacity(4 << 20);
        let db = match config(&dir).open() {
            Ok(db) => db,
            Err(sled::Error::Io(e)) => return Err(sled::Error::Io(e)),
            Err(e) => {
                tracing::warn!("kept Hub answers unreadable ({e}); starting afresh");
                let _ = std::fs::remove_dir_all(&dir);
                config(&dir).open()?
            }
        };
        Ok(MetaStore {
            db: db.clone(),
            refs: db.open_tree("refs")?,
            trees: db.open_tree("trees")?,
            recons: db.open_tree("reconstructions")?,
            repos: db.open_tree("repos")?,
        })
    }

    fn place(&self, q: &Query) -> Option<(&sled::Tree, Vec<u8>)> {
        match q {
            Query::Revision { repo, revision } => Some((&self.refs, key(repo, revision))),
            Query::Tree { repo, commit } => Some((&self.trees, key(repo, commit))),
            Query::Reconstruction(h) => Some((&self.recons, h.as_bytes().to_vec())),
            Query::Blob { .. } => None,
        }
    }

    /// Keeps `answer`; a failure to write is logged, never the pull's failure.
    pub fn put(&self, q: &Query, answer: &Answer) {
        let Some((tree, key)) = self.place(q) else {
            return;
        };
        let mut v = Vec::with_capacity(9 + answer.body.len());
        v.extend_from_slice(&answer.seen_unix.to_be_bytes());
        v.push(u8::from(answer.private));
        v.extend_from_slice(&answer.body);
        if let Err(e) = tree.insert(key, v) {
            tracing::warn!("cannot keep {}: {e}", q.describe());
        }
    }

    pub fn flush(&self) {
        if let Err(e) = self.db.flush() {
            tracing::warn!("cannot write kept Hub answers to disk: {e}");
        }
    }

    pub fn note_repo(&self, repo: &RepoRef, private: bool) {
        if let Err(e) = self.repos.insert(key(repo, ""), &[u8::from(private)]) {
            tracing::warn!("cannot keep {repo}'s visibility: {e}");
        }
    }

    pub fn repo_private(&self, repo: &RepoRef) -> Option<bool> {
        let v = self.repos.get(key(repo, "")).ok().flatten()?;
        Some(v.first().is_some_and(|b| *b != 0))
    }

    pub fn get(&self, q: &Query) -> Option<Answer> {
        let (tree, key) = self.place(q)?;
        let v = tree.get(key).ok().flatten()?;
        decode(&v)
    }
}

fn key(repo: &RepoRef, rev: &str) -> Vec<u8> {
    format!("{}/{}\n{rev}", repo.repo_type.as_str(), repo.id).into_bytes()
}

fn decode(v: &[u8]) -> Option<Answer> {
    let seen = u64::from_be_bytes(v.get(..8)?.try_into().ok()?);
    let private = *v.get(8)? != 0;
    Some(Answer {
        body: v.get(9..)?.to_vec(),
        seen_unix: seen,
        private,
    })
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use xet::remote::RepoType;

    #[test]
    fn answers_are_kept_per_query_and_survive_a_reopen() {
        let dir = std::env::temp_dir().join(format!("zest-hubmeta-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let repo = RepoRef::new(RepoType::Model, "acme/o").unwrap();
        let main = Query::Revision {
            repo: repo.clone(),
            revision: "main".into(),
        };
        let dev = Query::Revision {
            repo: repo.clone(),
            revision: "dev".into(),
        };
        let a = Answer {
            body: b"c".repeat(40),
            seen_unix: 1_700_000_000,
            private: true,
        };
        {
            let s = MetaStore::open(&dir).unwrap();
            s.put(&main, &a);
            assert_eq!(s.get(&main), Some(a.clone()));
            assert_eq!(s.get(&dev), None);
        }
        let s = MetaStore::open(&dir).unwrap();
        assert_eq!(s.get(&main), Some(a));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
