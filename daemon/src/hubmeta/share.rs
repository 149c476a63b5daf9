//! One Hub request per fleet: when many members need the same answer at once, one asks the
//! Hub and the others take its answer. Each answer has an **owner** among the fleet members
//! that offer `meta` (rendezvous hashing: the highest BLAKE3 of node id and query, so every
//! member picks the same one without talking). A member that is not the owner asks the owner
//! first; the owner answers from what it kept, or, while it is asking the Hub for that answer
//! itself (in flight) or is about to (it is pulling that repo or wants that file), once it
//! has it, within [`OWNER_WAIT`]. Anything else is `not_found` at once, and the asker goes to
//! the Hub itself.

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

/// The owner of `q` among `members` (node ids, this node's included): pure.
pub fn owner<'a>(q: &Query, members: &[&'a str]) -> Option<&'a str> {
    let key = format!("{q:?}");
    members
        .iter()
        .max_by_key(|id| {
            let mut h = blake3::Hasher::new();
            h.update(id.as_bytes());
            h.update(&[0]);
            h.update(key.as_bytes());
            *h.finalize().as_bytes()
        })
        .copied()
}

#[derive(Default)]
pub struct Sharing {
    in_flight: std::sync::Mutex<HashMap<Query, watch::Sender<bool>>>,
    expected: std::sync::Mutex<HashMap<Expect, usize>>,
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
    fn every_member_picks_the_same_owner_and_owners_spread() {
        let ids = ["n1", "n2", "n3", "n4"];
        let mut counts = HashMap::new();
        for i in 0..400 {
            let q = tree(&format!("{i:040x}"));
            let o = owner(&q, &ids).unwrap();
            // The order members are listed in does not matter.
            let mut rev = ids;
            rev.reverse();
            assert_eq!(owner(&q, &rev), Some(o));
            *counts.entry(o).or_insert(0) += 1;
        }
        assert!(counts.values().all(|&n| n > 50), "{counts:?}");
        assert_eq!(owner(&tree("a"), &[]), None);
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
