//! The fleet's anchors: the few members a fleet's Hub questions climb to, so that a fleet
//! too big for each member to be connected to every other still asks the Hub once.
//!
//! A member scores node ids (BLAKE3 of a label and the id: highest wins) and tells fleet
//! peers that ask (`route`, docs/PROTOCOL.md §4.6) the best-scoring members it knows a way
//! to: at most [`ANCHORS`], each with the anchor's heartbeat and the number of hops to it.
//! From its peers' reports, its connected peers and itself it takes, for each anchor, the
//! peer that reported it with fewest hops (distance-vector routing). Only an anchor advances
//! its own heartbeat, so a departed anchor's reports stop advancing and are dropped after
//! [`STALE_AFTER`] instead of circling the fleet (no counting to infinity). Every member
//! converges on the fleet's best-scoring member within (diameter × [`POLL`]): it owns every
//! Hub answer the fleet needs, and a question climbs to it hop by hop along the routes
//! ([`next_hop`]), every member on the way answering from what it kept. Until routes have
//! spread, a question climbs as far as members know: each hop to a better-scoring one.
//!
//! The decisions here are pure: the clock comes in as an argument.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How many anchors a member keeps routes to: the best-scoring one owns every answer.
/// (More would spread answers over owners, but a member that knows no route yet to the
/// owner of a question would stop it early, and a fleet that has just started has many.)
pub const ANCHORS: usize = 1;
/// The longest route kept, and the most relays a request may take.
pub const MAX_HOPS: u32 = 8;
/// How often a member asks each fleet peer for its routes.
pub const POLL: Duration = Duration::from_secs(2);
/// An anchor whose heartbeat has not advanced for this long has left.
pub const STALE_AFTER: Duration = Duration::from_secs(10);
/// The most entries a route reply may carry.
pub const MAX_ENTRIES: usize = 16;

/// One anchor, as a member reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub anchor: String,
    /// The anchor's heartbeat (its clock in milliseconds) as the reporter last heard it.
    pub seq: u64,
    pub hops: u32,
}

/// Where this node sends a question for one anchor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hop {
    pub anchor: String,
    /// The peer the route goes through; None: this node is the anchor.
    pub via: Option<String>,
    pub hops: u32,
    pub seq: u64,
}

impl Hop {
    pub fn entry(&self) -> Entry {
        Entry {
            anchor: self.anchor.clone(),
            seq: self.seq,
            hops: self.hops,
        }
    }
}

/// An id's score: the highest-scoring members are the anchors.
pub fn score(id: &str) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"zest anchor v1\0");
    h.update(id.as_bytes());
    *h.finalize().as_bytes()
}

/// What one peer said, as [`table`] reads it.
pub struct Report<'a> {
    pub peer: &'a str,
    pub entries: &'a [Entry],
}

/// The anchors this node routes to, best-scoring first, at most [`ANCHORS`]: pure.
/// `connected`: fleet peers it may ask (each is a candidate one hop away, reported or not,
/// so a fleet whose members all see each other needs no report); `reports`: what those
/// peers said (a report from a peer no longer connected is not used); `fresh(anchor, seq)`:
/// whether that heartbeat is recent ([`Heartbeats::fresh`]).
pub fn table(
    me: &str,
    my_seq: u64,
    connected: &[&str],
    reports: &[Report<'_>],
    fresh: impl Fn(&str, u64) -> bool,
) -> Vec<Hop> {
    let mut best: HashMap<String, Hop> = HashMap::new();
    let mut offer = |h: Hop| {
        let rank = |h: &Hop| (h.hops, std::cmp::Reverse(h.seq), h.via.clone());
        if best.get(&h.anchor).is_none_or(|o| rank(&h) < rank(o)) {
            best.insert(h.anchor.clone(), h);
        }
    };
    offer(Hop {
        anchor: me.to_string(),
        via: None,
        hops: 0,
        seq: my_seq,
    });
    for p in connected {
        if *p != me {
            offer(Hop {
                anchor: p.to_string(),
                via: Some(p.to_string()),
                hops: 1,
                seq: 0,
            });
        }
    }
    for r in reports {
        if r.peer == me || !connected.contains(&r.peer) {
            continue;
        }
        for e in r.entries.iter().take(MAX_ENTRIES) {
            if e.anchor == me || e.hops >= MAX_HOPS || !fresh(&e.anchor, e.seq) {
                continue;
            }
            offer(Hop {
                anchor: e.anchor.clone(),
                via: Some(r.peer.to_string()),
                hops: e.hops + 1,
                seq: e.seq,
            });
        }
    }
    let mut hops: Vec<Hop> = best.into_values().collect();
    hops.sort_by_cached_key(|h| std::cmp::Reverse(score(&h.anchor)));
    hops.truncate(ANCHORS);
    hops
}

/// Where a question climbing to anchor `target` goes from this node, whose routes are
/// `table`: on toward `target`; or, if this node knows no way to it (it is `target`, or
/// the route is gone), toward the best anchor it knows, if that scores higher than
/// `target`; else nowhere (None: this node answers it). Targets only ever rise, so a
/// question never circles. Pure. Returns (the peer to ask, the target to name).
pub fn next_hop<'a>(table: &'a [Hop], target: &'a str) -> Option<(&'a str, &'a str)> {
    if let Some(h) = toward(table, target) {
        return h.via.as_deref().map(|v| (v, target));
    }
    let best = table.first()?;
    if score(&best.anchor) > score(target) {
        best.via.as_deref().map(|v| (v, best.anchor.as_str()))
    } else {
        None
    }
}

/// The hop toward `anchor` in `table`, if this node knows a way to it.
pub fn toward<'a>(table: &'a [Hop], anchor: &str) -> Option<&'a Hop> {
    table.iter().find(|h| h.anchor == anchor)
}

/// The anchors' heartbeats as this node heard them: the highest seen for each, and when it
/// last advanced.
#[derive(Default)]
pub struct Heartbeats {
    seen: HashMap<String, (u64, Instant)>,
}

impl Heartbeats {
    pub fn note(&mut self, anchor: &str, seq: u64, now: Instant) {
        match self.seen.get_mut(anchor) {
            Some((max, at)) if seq > *max => {
                *max = seq;
                *at = now;
            }
            Some(_) => {}
            None => {
                self.seen.insert(anchor.to_string(), (seq, now));
            }
        }
        self.seen
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < STALE_AFTER * 6);
    }

    /// Whether `anchor` is alive (its heartbeat advanced within [`STALE_AFTER`]) and `seq` is
    /// a recent beat of it (a report that circled through a loop carries an old one).
    pub fn fresh(&self, anchor: &str, seq: u64, now: Instant) -> bool {
        self.seen.get(anchor).is_some_and(|(max, at)| {
            now.saturating_duration_since(*at) < STALE_AFTER
                && max.saturating_sub(seq) < STALE_AFTER.as_millis() as u64
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs rounds of polling on a graph until no table changes; every anchor beats at
    /// `seq`. Returns each node's table.
    fn converge(ids: &[String], links: &[Vec<usize>]) -> Vec<Vec<Hop>> {
        let mut tables: Vec<Vec<Hop>> = vec![Vec::new(); ids.len()];
        for _ in 0..50 {
            let entries: Vec<Vec<Entry>> = tables
                .iter()
                .map(|t| t.iter().map(Hop::entry).collect())
                .collect();
            let next: Vec<Vec<Hop>> = (0..ids.len())
                .map(|n| {
                    let connected: Vec<&str> = links[n].iter().map(|&p| ids[p].as_str()).collect();
                    let reports: Vec<Report<'_>> = links[n]
                        .iter()
                        .map(|&p| Report {
                            peer: &ids[p],
                            entries: &entries[p],
                        })
                        .collect();
                    table(&ids[n], 1, &connected, &reports, |_, _| true)
                })
                .collect();
            if next == tables {
                return tables;
            }
            tables = next;
        }
        panic!("no convergence");
    }

    fn best_ids(ids: &[String]) -> Vec<String> {
        let mut v = ids.to_vec();
        v.sort_by_key(|i| std::cmp::Reverse(score(i)));
        v.truncate(ANCHORS);
        v
    }

    #[test]
    fn a_ring_of_members_agrees_on_the_anchors_and_routes_along_it() {
        const N: usize = 14;
        let ids: Vec<String> = (0..N).map(|i| format!("node{i}")).collect();
        let links: Vec<Vec<usize>> = (0..N).map(|i| vec![(i + N - 1) % N, (i + 1) % N]).collect();
        let dist = |a: usize, b: usize| a.abs_diff(b).min(N - a.abs_diff(b));
        let t = converge(&ids, &links);
        let want = best_ids(&ids);
        for (n, table) in t.iter().enumerate() {
            let got: Vec<String> = table.iter().map(|h| h.anchor.clone()).collect();
            assert_eq!(got, want, "node {n}");
            for h in table {
                let a = ids.iter().position(|i| *i == h.anchor).unwrap();
                assert_eq!(h.hops as usize, dist(a, n), "node {n} to {a}");
                match &h.via {
                    None => assert_eq!(a, n),
                    Some(v) => {
                        let v = ids.iter().position(|i| i == v).unwrap();
                        assert_eq!(dist(v, n), 1);
                        assert!(dist(v, a) < dist(n, a), "the hop leads nearer");
                    }
                }
            }
        }
    }

    #[test]
    fn a_question_climbs_to_better_anchors_only() {
        let hop = |anchor: &str, via: Option<&str>| Hop {
            anchor: anchor.into(),
            via: via.map(str::to_string),
            hops: u32::from(via.is_some()),
            seq: 1,
        };
        let mut ids = ["a", "b", "c"];
        ids.sort_by_key(|i| std::cmp::Reverse(score(i)));
        let [high, mid, low] = ids;
        // On toward the named anchor while there is a route to it.
        assert_eq!(next_hop(&[hop(mid, Some("x"))], mid), Some(("x", mid)));
        // The named anchor itself, or a member that lost the route: on toward a better one.
        assert_eq!(next_hop(&[hop(high, Some("y"))], mid), Some(("y", high)));
        // Never toward a worse one: the question stops here.
        assert_eq!(next_hop(&[hop(low, Some("y"))], mid), None);
        // Here is the best: it stops here.
        assert_eq!(next_hop(&[hop(mid, None)], mid), None);
        assert_eq!(next_hop(&[], mid), None);
    }

    #[test]
    fn a_full_mesh_needs_no_reports() {
        let ids: Vec<String> = (0..6).map(|i| format!("m{i}")).collect();
        for me in &ids {
            let connected: Vec<&str> = ids
                .iter()
                .filter(|i| *i != me)
                .map(|s| s.as_str())
                .collect();
            let t = table(me, 5, &connected, &[], |_, _| false);
            let got: Vec<String> = t.iter().map(|h| h.anchor.clone()).collect();
            assert_eq!(got, best_ids(&ids));
            assert!(t.iter().all(|h| h.hops <= 1));
        }
    }

    #[test]
    fn stale_far_and_looping_reports_are_not_used() {
        let now = Instant::now();
        let mut hb = Heartbeats::default();
        hb.note("gone", 1_000, now);
        hb.note("alive", 1_000, now);
        let later = now + STALE_AFTER + Duration::from_secs(1);
        hb.note("alive", 12_000, later);
        assert!(!hb.fresh("gone", 1_000, later), "it stopped beating");
        assert!(hb.fresh("alive", 12_000, later));
        assert!(
            !hb.fresh("alive", 1_000, later),
            "an old beat that circled a loop"
        );
        assert!(!hb.fresh("unknown", 1, later));
        let entries = [
            Entry {
                anchor: "far".into(),
                seq: 1,
                hops: MAX_HOPS,
            },
            Entry {
                anchor: "me".into(),
                seq: 1,
                hops: 1,
            },
        ];
        let t = table(
            "me",
            1,
            &["p"],
            &[
                Report {
                    peer: "p",
                    entries: &entries,
                },
                Report {
                    peer: "not connected",
                    entries: &entries,
                },
            ],
            |_, _| true,
        );
        let best = if score("me") > score("p") { "me" } else { "p" };
        let got: Vec<&str> = t.iter().map(|h| h.anchor.as_str()).collect();
        assert_eq!(
            got,
            [best],
            "the far anchor is not taken, nor a route to itself"
        );
    }
}
