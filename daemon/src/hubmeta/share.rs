//! One Hub request per fleet: when many members need the same answer at once, one asks the
//! Hub and the others take its answer. Every answer has one **owner**, the fleet's anchor
//! (`anchor`: the best-scoring member, which every member learns from its peers' routes). A
//! member that is not the owner asks its way to the owner first (through the members on the
//! way, each answering from what it kept if it can); the owner answers from what it kept, or, while it is asking the Hub for that answer
//! itself (in flight) or is about to (it is pulling that repo or wants that file), once it
//! has it, within [`OWNER_WAIT`]. Otherwise the asker is told `not_found` and goes to the Hub
//! itself, and the owner remembers it as the answer's **delegate** for [`DELEGATE_HOLD`]:
//! later askers, and the owner's own pull, take the answer from the delegate through the
//! owner. So a crowd asks the Hub once even when the owner starts its pull last.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::watch;
use xet::XetHash;
use xet::remote::RepoRef;

use super::query::Query;
use crate::sync::lock;

/// How long an owner makes an asker wait for an answer it is getting from the Hub.
pub const OWNER_WAIT: Duration = Duration::from_secs(8);
/// How long an owner that is pulling the repo (or wants the file) but has not asked the Hub
/// yet waits for itself to start: daemons of a flash crowd start within moments.
pub const OWNER_GRACE: Duration = Duration::from_millis(1500);

/// How fresh the owner's answer for a branch must be to stand for the Hub's (while the Hub is
/// not known to be down): it asked the Hub a moment ago, for the same flash crowd. Anything
/// older is a stale ref, taken only where the user allowed it; an owner holding only such
/// an answer asks (or sends an asker to) the Hub again.
pub const REF_FRESH_SECS: u64 = 10;

/// Whether a kept answer `a` to `q` is a branch's commit too old to stand for the Hub's.
pub fn stale_ref(q: &Query, seen_unix: u64, now_unix: u64) -> bool {
    matches!(q, Query::Revision { .. }) && now_unix.saturating_sub(seen_unix) > REF_FRESH_SECS
}

/// How long the member an owner sent to the Hub for an answer stays the one to ask for it.
pub const DELEGATE_HOLD: Duration = Duration::from_secs(30);

/// What a pull is about to ask the Hub for: a repo's ref and listing and git-stored files,
/// or one Xet file's reconstruction.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Expect {
    Repo(RepoRef),
    File(XetHash),
}

impl Expect {
    pub fn of(q: &Query) -> Expect {
        match q {
            Query::Revision { repo, .. } | Query::Tree { repo, .. } | Query::Blob { repo, .. } => {
                Expect::Repo(repo.clone())
            }
            Query::Reconstruction(h) => Expect::File(*h),
        }
    }
}

#[derive(Default)]
pub struct Sharing {
    in_flight: std::sync::Mutex<HashMap<Query, watch::Sender<bool>>>,
    expected: std::sync::Mutex<HashMap<Expect, usize>>,
    /// Query → the member asking the Hub for it on this owner's word, and since when.
    delegates: std::sync::Mutex<HashMap<Query, (String, std::time::Instant)>>,
}

/// While it lives, `q` is being asked of the Hub here; dropping it wakes those waiting.
pub struct InFlight<'a> {
    sharing: &'a Sharing,
    q: Query,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(tx) = lock(&self.sharing.in_flight).remove(&self.q) {
            let _ = tx.send(true);
        }
    }
}

/// While it lives, this node expects to ask the Hub about these.
pub struct Expecting<'a> {
    sharing: &'a Sharing,
    keys: Vec<Expect>,
}

impl Drop for Expecting<'_> {
    fn drop(&mut self) {
        let mut m = lock(&self.sharing.expected);
        for k in &self.keys {
            if let Some(n) = m.get_mut(k) {
                *n -= 1;
                if *n == 0 {
                    m.remove(k);
                }
            }
        }
    }
}

impl Sharing {
    pub fn begin(&self, q: &Query) -> InFlight<'_> {
        lock(&self.in_flight)
            .entry(q.clone())
            .or_insert_with(|| watch::channel(false).0);
        InFlight {
            sharing: self,
            q: q.clone(),
        }
    }

    pub fn expect(&self, keys: Vec<Expect>) -> Expecting<'_> {
        let mut m = lock(&self.expected);
        for k in &keys {
            *m.entry(k.clone()).or_insert(0) += 1;
        }
        drop(m);
        Expecting {
            sharing: self,
            keys,
        }
    }

    /// The member asking the Hub for `q` because this node, its owner, had nothing: `asker`
    /// becomes it (None: go to the Hub) unless another member already is (Some: ask that
    /// one).
    pub fn delegate(&self, q: &Query, asker: &str) -> Option<String> {
        let mut m = lock(&self.delegates);
        m.retain(|_, (_, since)| since.elapsed() < DELEGATE_HOLD);
        match m.get(q) {
            Some((d, _)) if d != asker => Some(d.clone()),
            _ => {
                m.insert(q.clone(), (asker.to_string(), std::time::Instant::now()));
                None
            }
        }
    }

    /// The member asking the Hub for `q` on this owner's word, if one is.
    pub fn delegate_of(&self, q: &Query) -> Option<String> {
        lock(&self.delegates)
            .get(q)
            .filter(|(_, since)| since.elapsed() < DELEGATE_HOLD)
            .map(|(d, _)| d.clone())
    }

    /// Whether `q` is being asked of the Hub here now (a receiver that turns true when it
    /// lands), or this node expects to ask for it.
    pub fn pending(&self, q: &Query) -> Pending {
        if let Some(tx) = lock(&self.in_flight).get(q) {
            return Pending::InFlight(tx.subscribe());
        }
        if lock(&self.expected).contains_key(&Expect::of(q)) {
            Pending::Expected
        } else {
            Pending::Nothing
        }
    }
}

pub enum Pending {
    InFlight(watch::Receiver<bool>),
    Expected,
    Nothing,
}

/// What an owner asked for `q` does next, given how it stands: pure. `since` is the time
/// since the request came, or since the owner's own Hub request for it ended, whichever
/// is later (the answer is kept a moment after the request ends).
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Wait for the Hub request in flight to end, then look again.
    AwaitFlight,
    /// Look again shortly.
    Poll,
    /// Say there is none.
    GiveUp,
}

pub fn next(in_flight: bool, expected: bool, since: Duration, waited: Duration) -> Next {
    if waited >= OWNER_WAIT {
        Next::GiveUp
    } else if in_flight {
        Next::AwaitFlight
    } else if expected && since < OWNER_GRACE {
        Next::Poll
    } else {
        Next::GiveUp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xet::remote::RepoType;

    fn tree(commit: &str) -> Query {
        Query::Tree {
            repo: RepoRef::new(RepoType::Model, "acme/o").unwrap(),
            commit: commit.into(),
        }
    }

    #[test]
    fn only_a_branch_commit_goes_stale() {
        let rev = Query::Revision {
            repo: RepoRef::new(RepoType::Model, "acme/o").unwrap(),
            revision: "main".into(),
        };
        assert!(!stale_ref(&rev, 1000, 1000 + REF_FRESH_SECS));
        assert!(stale_ref(&rev, 1000, 1001 + REF_FRESH_SECS));
        assert!(
            !stale_ref(&tree(&"a".repeat(40)), 0, 1_000_000),
            "a listing never changes"
        );
    }

    #[test]
    fn an_owner_waits_for_what_it_is_getting_and_no_longer() {
        let ms = Duration::from_millis;
        assert_eq!(next(true, false, ms(0), ms(0)), Next::AwaitFlight);
        assert_eq!(next(false, true, ms(100), ms(100)), Next::Poll);
        assert_eq!(next(false, true, OWNER_GRACE, OWNER_GRACE), Next::GiveUp);
        // Just after its own request ended, it looks again before giving up.
        assert_eq!(next(false, true, ms(10), ms(5000)), Next::Poll);
        assert_eq!(next(false, false, ms(0), ms(0)), Next::GiveUp);
        assert_eq!(next(true, true, ms(0), OWNER_WAIT), Next::GiveUp);
    }

    #[test]
    fn the_first_member_sent_to_the_hub_is_the_one_asked_after() {
        let s = Sharing::default();
        let q = tree(&"b".repeat(40));
        assert_eq!(s.delegate_of(&q), None);
        assert_eq!(
            s.delegate(&q, "m1"),
            None,
            "the first asker goes to the Hub"
        );
        assert_eq!(s.delegate(&q, "m1"), None, "and may ask again");
        assert_eq!(s.delegate(&q, "m2").as_deref(), Some("m1"));
        assert_eq!(s.delegate_of(&q).as_deref(), Some("m1"));
        assert_eq!(s.delegate_of(&tree(&"c".repeat(40))), None);
    }

    #[tokio::test]
    async fn pending_follows_the_guards() {
        let s = Sharing::default();
        let q = tree(&"a".repeat(40));
        assert!(matches!(s.pending(&q), Pending::Nothing));
        let e = s.expect(vec![Expect::of(&q)]);
        assert!(matches!(s.pending(&q), Pending::Expected));
        let f = s.begin(&q);
        let Pending::InFlight(mut rx) = s.pending(&q) else {
            panic!("not in flight")
        };
        drop(f);
        assert!(*rx.wait_for(|d| *d).await.unwrap());
        drop(e);
        assert!(matches!(s.pending(&q), Pending::Nothing));
    }
}
