//! How often the fleet asks the Hub (issue 17), by the daemon's own rule
//! (`zestd::hubmeta::share`). The answers a pull needs (the ref, the listing, each file's
//! reconstruction, each git-stored file) have one owner per repo among the fleet members a
//! node is connected to and the node itself; a node asks the owner, and only a node that is
//! its own owner asks the Hub. Every member it could ask pulls the same repo now or pulled
//! it before (and kept the answer), and an owner that has nothing yet sends the first asker
//! to the Hub and later ones to that one (its delegate), so timing is not modelled. A node
//! that asks the CAS for a reconstruction itself needs its own Xet token: one more request.
//!
//! With views smaller than the fleet, owners differ between nodes: the Hub is asked by
//! every node that is the owner in its own view, about N / (peers + 1) of them.

use zestd::hubmeta::Query;
use zestd::hubmeta::share::{owner, owner_key};

fn repo() -> &'static xet::remote::RepoRef {
    static REPO: std::sync::OnceLock<xet::remote::RepoRef> = std::sync::OnceLock::new();
    REPO.get_or_init(|| {
        xet::remote::RepoRef::new(xet::remote::RepoType::Model, "sim/model")
            .expect("a valid repo id")
    })
}

/// What a pull of the simulated model asks the Hub, besides the Xet token.
pub fn queries(files: usize, git_files: usize) -> Vec<Query> {
    let repo = repo().clone();
    let commit = "0".repeat(40);
    let mut q = vec![
        Query::Revision {
            repo: repo.clone(),
            revision: "main".into(),
        },
        Query::Tree {
            repo: repo.clone(),
            commit,
        },
    ];
    for i in 0..files {
        let mut h = [0u8; 32];
        h[..8].copy_from_slice(&(i as u64).to_le_bytes());
        q.push(Query::Reconstruction(xet::XetHash::from_bytes(h)));
    }
    for i in 0..git_files {
        q.push(Query::Blob {
            repo: repo.clone(),
            blob_id: format!("{i:040x}"),
        });
    }
    q
}

/// The Hub requests one node makes when it starts its pull, seeing `view` (the fleet
/// members it is connected to): the answers it owns in its own view, plus its Xet token if
/// it owns a reconstruction. Pure.
pub fn asks(me: &str, view: &[&str], queries: &[Query]) -> u64 {
    let mut ids: Vec<&str> = view.to_vec();
    ids.push(me);
    let mut n = 0;
    let mut token = false;
    for q in queries {
        if owner(&owner_key(q, Some(repo())), &ids) == Some(me) {
            n += 1;
            token |= matches!(q, Query::Reconstruction(_));
        }
    }
    n + u64::from(token)
}

/// A lone node's requests: every answer, and its token.
pub fn lone(queries: &[Query]) -> u64 {
    asks("lone", &[], queries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_node_asks_for_everything_and_a_full_view_shares_it() {
        let q = queries(4, 5);
        assert_eq!(lone(&q), 2 + 4 + 5 + 1);
        // Four nodes that all see each other: every answer asked once, plus a token for
        // each node that owns a reconstruction.
        let ids = ["a", "b", "c", "d"];
        let total: u64 = ids
            .iter()
            .map(|me| {
                let view: Vec<&str> = ids.iter().copied().filter(|i| i != me).collect();
                asks(me, &view, &q)
            })
            .sum();
        // One repo, one owner: it asks for everything, with one token.
        assert_eq!(total, lone(&q));
    }
}
