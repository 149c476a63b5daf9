//! How often the fleet asks the Hub (issue 17), by the daemon's own rules
//! (`zestd::hubmeta::share`, `zestd::hubmeta::anchor`). The answers a pull needs (the ref,
//! the listing, each file's reconstruction, each git-stored file) have one owner, the
//! fleet's anchor (its best-scoring member), which every member learns by asking its peers
//! for their routes every 2 s (one round of [`anchor::table`] per poll). A pull asks its way
//! to the owner, hop by hop; the question stops at the owner, or earlier at a member that
//! knows no better-scoring one (while routes are still spreading): that member, its
//! **root**, answers from what it kept, or sends the first asker to the Hub and later
//! askers to that one (its delegate). So each root costs one node's Hub requests, once, and
//! timing within a root is not modelled. A node that asks the CAS for a reconstruction
//! itself needs its own Xet token: one more request.
//!
//! Before any routes are known (daemons that start with their pulls), a member sees only
//! the peers it is connected to: about N / (peers + 1) members are roots. Once routes have
//! spread (daemons that ran before the model dropped), one per connected fleet.

use std::collections::HashMap;
use zestd::hubmeta::Query;

use zestd::hubmeta::anchor::{self, Hop};

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

/// The member a question for the repo's answers from node `me` stops at, following each
/// member's routes as it sees them when asked (`table_of`), as `HubMeta::owner` and
/// `HubMeta::relay_toward` do (`anchor::next_hop`): pure.
pub fn root(
    me: usize,
    table_of: impl Fn(usize) -> Vec<Hop>,
    index: &HashMap<String, usize>,
) -> usize {
    let mine = table_of(me);
    let Some(best) = mine.first() else {
        return me;
    };
    let mut target = best.anchor.clone();
    let mut at = me;
    let mut table = mine;
    let mut from = None;
    for _ in 0..=anchor::MAX_HOPS {
        let Some((via, t)) = anchor::next_hop(&table, &target) else {
            return at;
        };
        match index.get(via).copied() {
            Some(n) if Some(n) != from => {
                target = t.to_string();
                from = Some(at);
                at = n;
                table = table_of(at);
            }
            _ => return at,
        }
    }
    at
}

/// The Hub requests a root's answers cost: every answer once, and a Xet token.
pub fn per_root(queries: &[Query]) -> u64 {
    lone(queries)
}

/// A lone node's requests: every answer, and its token.
pub fn lone(queries: &[Query]) -> u64 {
    queries.len() as u64
        + u64::from(
            queries
                .iter()
                .any(|q| matches!(q, Query::Reconstruction(_))),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_node_asks_for_everything_and_a_line_climbs_to_one_root() {
        let q = queries(4, 5);
        assert_eq!(lone(&q), 2 + 4 + 5 + 1);
        // A line of members, each connected to its neighbours only: before routes spread,
        // questions stop wherever a member's view ends; once they have, at one member.
        let n: usize = 9;
        let ids: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
        let index: HashMap<String, usize> = ids
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), i))
            .collect();
        let links: Vec<Vec<usize>> = (0..n)
            .map(|i: usize| {
                [i.checked_sub(1), (i + 1 < n).then_some(i + 1)]
                    .into_iter()
                    .flatten()
                    .collect()
            })
            .collect();
        let round = |tables: &[Vec<Hop>]| -> Vec<Vec<Hop>> {
            (0..n)
                .map(|i| {
                    let connected: Vec<&str> = links[i].iter().map(|&p| ids[p].as_str()).collect();
                    let entries: Vec<Vec<anchor::Entry>> = links[i]
                        .iter()
                        .map(|&p| tables[p].iter().map(Hop::entry).collect())
                        .collect();
                    let reports: Vec<anchor::Report<'_>> = links[i]
                        .iter()
                        .zip(&entries)
                        .map(|(&p, e)| anchor::Report {
                            peer: &ids[p],
                            entries: e,
                        })
                        .collect();
                    anchor::table(&ids[i], 1, &connected, &reports, |_, _| true)
                })
                .collect()
        };
        let mut tables = round(&vec![Vec::new(); n]);
        let roots = |t: &[Vec<Hop>]| {
            let mut r: Vec<usize> = (0..n).map(|i| root(i, |k| t[k].clone(), &index)).collect();
            r.sort();
            r.dedup();
            r
        };
        assert!(roots(&tables).len() > 1, "views of 3 cannot agree");
        for _ in 0..n {
            tables = round(&tables);
        }
        assert_eq!(roots(&tables).len(), 1);
    }
}
