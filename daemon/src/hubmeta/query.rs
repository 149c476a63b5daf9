//! What can be asked of the fleet instead of the Hub, and its form on the wire.

use xet::XetHash;
use xet::remote::{RepoRef, RepoType};
use zest_proto::peer;

/// One Hub answer zestd keeps. Only `Revision` can go stale: the others are addressed by
/// a commit or a content hash, so any copy of them is the answer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Query {
    /// The commit a branch or tag points at.
    Revision { repo: RepoRef, revision: String },
    /// The recursive listing at a commit.
    Tree { repo: RepoRef, commit: String },
    /// A Xet file's reconstruction.
    Reconstruction(XetHash),
    /// A file stored in git, by blob id (or LFS sha256).
    Blob { repo: RepoRef, blob_id: String },
}

impl Query {
    /// What the log calls it.
    pub fn describe(&self) -> String {
        match self {
            Query::Revision { repo, revision } => format!("{repo}@{revision}"),
            Query::Tree { repo, commit } => format!("the listing of {repo} at {commit}"),
            Query::Reconstruction(h) => format!("the reconstruction of {h}"),
            Query::Blob { repo, blob_id } => format!("blob {blob_id} of {repo}"),
        }
    }

    pub fn to_wire(&self) -> peer::MetaRequest {
        use peer::meta_request::What;
        let rr = |repo: &RepoRef, revision: &str| peer::RepoRevision {
            repo_type: repo.repo_type.as_str().to_string(),
            repo_id: repo.id.clone(),
            revision: revision.to_string(),
        };
        let what = match self {
            Query::Revision { repo, revision } => What::Revision(rr(repo, revision)),
            Query::Tree { repo, commit } => What::Tree(rr(repo, commit)),
            Query::Reconstruction(h) => What::Reconstruction(h.as_bytes().to_vec()),
            Query::Blob { repo, blob_id } => What::Blob(rr(repo, blob_id)),
        };
        peer::MetaRequest {
            what: Some(what),
            ..Default::default()
        }
    }

    /// The query a peer sent, or why it is malformed.
    pub fn from_wire(req: &peer::MetaRequest) -> Result<Query, String> {
        use peer::meta_request::What;
        let repo = |r: &peer::RepoRevision| -> Result<RepoRef, String> {
            let t = RepoType::parse(&r.repo_type)
                .ok_or_else(|| format!("unknown repo type {:?}", r.repo_type))?;
            RepoRef::new(t, &r.repo_id)
        };
        match &req.what {
            Some(What::Revision(r)) if valid_revision(&r.revision) => Ok(Query::Revision {
                repo: repo(r)?,
                revision: r.revision.clone(),
            }),
            Some(What::Tree(r)) if is_commit(&r.revision) => Ok(Query::Tree {
                repo: repo(r)?,
                commit: r.revision.clone(),
            }),
            Some(What::Reconstruction(h)) => XetHash::from_slice(h)
                .map(Query::Reconstruction)
                .ok_or_else(|| "a file hash is not 32 bytes".to_string()),
            Some(What::Blob(r)) if valid_blob_id(&r.revision) => Ok(Query::Blob {
                repo: repo(r)?,
                blob_id: r.revision.clone(),
            }),
            Some(_) => Err("malformed revision, commit or blob id".into()),
            None => Err("empty meta request".into()),
        }
    }
}

pub fn is_commit(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A blob id is a git sha1 (40 hex) or an LFS sha256 (64 hex).
pub fn valid_blob_id(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A branch or tag name as the Hub takes it in a URL: bounded, no control characters.
pub fn valid_revision(s: &str) -> bool {
    !s.is_empty() && s.len() <= 256 && !s.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> RepoRef {
        RepoRef::new(RepoType::Model, "acme/o").unwrap()
    }

    #[test]
    fn queries_round_trip_and_malformed_ones_are_refused() {
        let commit = "a".repeat(40);
        for q in [
            Query::Revision {
                repo: repo(),
                revision: "main".into(),
            },
            Query::Tree {
                repo: repo(),
                commit: commit.clone(),
            },
            Query::Reconstruction(XetHash::from_slice(&[7; 32]).unwrap()),
            Query::Blob {
                repo: repo(),
                blob_id: "b".repeat(64),
            },
        ] {
            assert_eq!(Query::from_wire(&q.to_wire()).unwrap(), q);
        }
        let bad = Query::Tree {
            repo: repo(),
            commit: "main".into(),
        };
        assert!(Query::from_wire(&bad.to_wire()).is_err());
        let bad = Query::Blob {
            repo: repo(),
            blob_id: "../x".into(),
        };
        assert!(Query::from_wire(&bad.to_wire()).is_err());
        let mut w = Query::Reconstruction(XetHash::from_slice(&[7; 32]).unwrap()).to_wire();
        w.what = Some(peer::meta_request::What::Reconstruction(vec![1, 2]));
        assert!(Query::from_wire(&w).is_err());
        assert!(
            Query::from_wire(&peer::MetaRequest {
                what: None,
                ..Default::default()
            })
            .is_err()
        );
    }
}
