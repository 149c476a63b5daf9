//! Pushed peer state (capability `watch`): what a file's state update says, as pure
//! functions both ends share. The responder turns two states into the update that leads
//! from one to the other ([`diff`]); the requester folds updates back into a state
//! ([`apply`]). docs/PROTOCOL.md §4.4 is the specification.

use zest_proto::peer::{FileHave, HaveUpdate, RelayedClaim, RelayedClaims};

use super::wire::{flatten, merge, subtract, unflatten};

/// Whether this daemon pushes and asks for pushed peer state. `ZEST_PEER_WATCH=0` turns it
/// off, so it behaves as a peer from before `watch` did: for benchmarks that compare the two,
/// and tests of how old and new peers meet.
pub fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("ZEST_PEER_WATCH").map_or(true, |v| v != "0"))
}

/// The update that takes a watcher from `prev` (what it was last told, None at the start)
/// to `now`; None when nothing changed.
pub fn diff(prev: Option<&FileHave>, now: &FileHave) -> Option<HaveUpdate> {
    let whole = || HaveUpdate {
        have: Some(now.clone()),
        delta: false,
    };
    let Some(prev) = prev else {
        return Some(whole());
    };
    if same(prev, now) {
        return None;
    }
    let (Some(was), Some(is)) = (unflatten(&prev.held), unflatten(&now.held)) else {
        return Some(whole());
    };
    if !subtract(&was, &is).is_empty() || prev.total_chunks != now.total_chunks {
        // Held shrank (the file left, or a new download of it began): start again.
        return Some(whole());
    }
    Some(HaveUpdate {
        have: Some(FileHave {
            file: now.file.clone(),
            complete: now.complete,
            total_chunks: now.total_chunks,
            held: flatten(&subtract(&is, &was)),
            fetching: now.fetching.clone(),
            quiet_ms: now.quiet_ms,
            // Only when it changed: it is the longest part of an update, and changes
            // far less often than held ranges grow. Cleared: said as an empty list.
            relayed: (relayed(prev) != relayed(now)).then(|| RelayedClaims {
                claims: relayed(now).to_vec(),
            }),
        }),
        delta: true,
    })
}

/// Whether two states say the same, `quiet_ms` aside: it changes every millisecond, and
/// only rides along with updates that go anyway (heartbeats included).
pub fn same(a: &FileHave, b: &FileHave) -> bool {
    a.file == b.file
        && a.complete == b.complete
        && a.total_chunks == b.total_chunks
        && a.held == b.held
        && a.fetching == b.fetching
        && relayed(a) == relayed(b)
}

/// The claims a state relays (none when the field is absent).
pub fn relayed(s: &FileHave) -> &[RelayedClaim] {
    s.relayed.as_ref().map_or(&[], |r| &r.claims)
}

/// Whether going from `prev` to `now` changes more than held ranges growing: a first
/// state, a claim made or dropped, completion, a new length or a shrink. Those are told
/// at once; growth alone may wait a little (docs/PROTOCOL.md §4.4).
pub fn urgent(prev: Option<&FileHave>, now: &FileHave) -> bool {
    let Some(prev) = prev else { return true };
    if prev.fetching != now.fetching
        || relayed(prev) != relayed(now)
        || prev.complete != now.complete
        || prev.total_chunks != now.total_chunks
    {
        return true;
    }
    match (unflatten(&prev.held), unflatten(&now.held)) {
        (Some(was), Some(is)) => !subtract(&was, &is).is_empty(),
        _ => true,
    }
}

/// A heartbeat: a delta that changes nothing, so a watcher knows the responder is alive.
pub fn heartbeat(now: &FileHave) -> HaveUpdate {
    HaveUpdate {
        have: Some(FileHave {
            held: Vec::new(),
            relayed: None,
            ..now.clone()
        }),
        delta: true,
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UpdateError {
    #[error("a watch update carries no file state")]
    Empty,
    #[error("a watch update names another file")]
    OtherFile,
    #[error("a watch began with a delta")]
    DeltaFirst,
    #[error("a watch update's chunk ranges are malformed")]
    Ranges,
}

/// The state after `update`, given the state before it (None before the first update).
pub fn apply(
    prev: Option<&FileHave>,
    update: HaveUpdate,
    file: &[u8],
) -> Result<FileHave, UpdateError> {
    let have = update.have.ok_or(UpdateError::Empty)?;
    if have.file != file {
        return Err(UpdateError::OtherFile);
    }
    let fetching = unflatten(&have.fetching).ok_or(UpdateError::Ranges)?;
    let added = unflatten(&have.held).ok_or(UpdateError::Ranges)?;
    // An empty list and an absent one say the same: kept as absent, so states compare
    // alike whichever updates led to them.
    let normal = |r: Option<RelayedClaims>| r.filter(|r| !r.claims.is_empty());
    if !update.delta {
        // Touching ranges are joined, so the state reads the same whichever updates led to
        // it (a delta's ranges are merged into what was held).
        return Ok(FileHave {
            held: flatten(&merge(added)),
            relayed: normal(have.relayed.clone()),
            ..have
        });
    }
    let prev = prev.ok_or(UpdateError::DeltaFirst)?;
    let mut held = unflatten(&prev.held).ok_or(UpdateError::Ranges)?;
    held.extend(added);
    let relayed = normal(have.relayed.clone().or_else(|| prev.relayed.clone()));
    Ok(FileHave {
        held: flatten(&merge(held)),
        fetching: flatten(&fetching),
        relayed,
        ..have
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(complete: bool, total: u32, held: &[(u32, u32)], fetching: &[(u32, u32)]) -> FileHave {
        FileHave {
            file: vec![7; 32],
            complete,
            total_chunks: total,
            held: flatten(held),
            fetching: flatten(fetching),
            quiet_ms: None,
            relayed: None,
        }
    }

    /// Walks a watcher through `states` the way the responder would tell them.
    fn replay(states: &[FileHave]) -> Vec<HaveUpdate> {
        let mut told: Option<FileHave> = None;
        let mut seen: Option<FileHave> = None;
        let mut sent = Vec::new();
        for s in states {
            if let Some(u) = diff(told.as_ref(), s) {
                sent.push(u.clone());
                seen = Some(apply(seen.as_ref(), u, &s.file).unwrap());
            }
            told = Some(s.clone());
            assert_eq!(
                seen.as_ref(),
                Some(s),
                "the watcher sees what the responder holds"
            );
        }
        sent
    }

    #[test]
    fn a_watcher_ends_up_with_the_responders_state_through_deltas() {
        let states = [
            state(false, 0, &[], &[]),
            state(false, 100, &[], &[(0, 10)]),
            state(false, 100, &[(0, 4)], &[(0, 10)]),
            state(false, 100, &[(0, 4)], &[(0, 10)]),
            state(false, 100, &[(0, 10)], &[(40, 50)]),
            state(false, 100, &[(0, 10), (40, 50)], &[]),
            state(true, 100, &[(0, 100)], &[]),
        ];
        let sent = replay(&states);
        // One whole state, then only changes: the repeat sends nothing.
        assert_eq!(sent.len(), 6);
        assert!(!sent[0].delta);
        assert!(sent[2..].iter().all(|u| u.delta), "{sent:?}");
        // A delta carries only what is new.
        assert_eq!(sent[3].have.as_ref().unwrap().held, vec![4, 10]);
    }

    #[test]
    fn only_growth_of_held_ranges_may_wait() {
        let a = state(false, 100, &[(0, 4)], &[(0, 10)]);
        assert!(urgent(None, &a));
        assert!(!urgent(Some(&a), &a));
        assert!(!urgent(Some(&a), &state(false, 100, &[(0, 6)], &[(0, 10)])));
        assert!(urgent(Some(&a), &state(false, 100, &[(0, 6)], &[])));
        assert!(urgent(Some(&a), &state(false, 100, &[(0, 2)], &[(0, 10)])));
        assert!(urgent(Some(&a), &state(true, 100, &[(0, 4)], &[(0, 10)])));
    }

    #[test]
    fn claims_relayed_are_told_at_once_and_only_when_they_change() {
        let claim = |node: &str, start, done| RelayedClaim {
            node: node.into(),
            start,
            end: start + 10,
            hops: 1,
            done,
        };
        let with = |s: &FileHave, claims: Vec<RelayedClaim>| FileHave {
            relayed: Some(RelayedClaims { claims }),
            ..s.clone()
        };
        let a = state(false, 100, &[(0, 4)], &[]);
        let b = with(&a, vec![claim("n1", 10, false)]);
        let c = with(
            &state(false, 100, &[(0, 6)], &[]),
            vec![claim("n1", 10, true), claim("n2", 50, false)],
        );
        let c2 = with(&state(false, 100, &[(0, 8)], &[]), relayed(&c).to_vec());
        let d = state(false, 100, &[(0, 8)], &[]);
        assert!(urgent(Some(&a), &b));
        assert!(urgent(Some(&b), &c));
        assert!(!urgent(Some(&c), &c2), "held growth alone");
        assert!(urgent(Some(&c2), &d));
        assert!(!same(&a, &b));
        let sent = replay(&[a, b, c.clone(), c2, d]);
        assert_eq!(sent.len(), 5);
        assert!(sent[1..].iter().all(|u| u.delta), "{sent:?}");
        let told = |k: usize| sent[k].have.as_ref().unwrap().relayed.clone();
        assert_eq!(told(2).unwrap().claims, relayed(&c));
        assert_eq!(told(3), None, "unchanged: not repeated");
        assert_eq!(told(4).unwrap().claims, vec![], "cleared: said");
    }

    #[test]
    fn a_shrink_or_a_new_length_is_told_whole() {
        let sent = replay(&[
            state(true, 100, &[(0, 100)], &[]),
            state(false, 0, &[], &[]),
            state(false, 80, &[(0, 2)], &[]),
        ]);
        assert!(sent.iter().all(|u| !u.delta), "{sent:?}");
    }

    #[test]
    fn bad_updates_are_refused() {
        let s = state(false, 100, &[(0, 4)], &[]);
        let delta = diff(Some(&state(false, 100, &[], &[])), &s).unwrap();
        assert_eq!(
            apply(None, delta.clone(), &s.file),
            Err(UpdateError::DeltaFirst)
        );
        assert_eq!(apply(None, delta, &[1; 32]), Err(UpdateError::OtherFile));
        let mut bad = diff(None, &s).unwrap();
        bad.have.as_mut().unwrap().held = vec![5, 3];
        assert_eq!(apply(None, bad, &s.file), Err(UpdateError::Ranges));
        let empty = HaveUpdate {
            have: None,
            delta: false,
        };
        assert_eq!(apply(None, empty, &s.file), Err(UpdateError::Empty));
        // A heartbeat changes nothing.
        let hb = heartbeat(&s);
        assert_eq!(apply(Some(&s), hb, &s.file), Ok(s));
    }

    /// Found by fuzzing (fuzz/regressions/peer_message): a whole state whose held ranges
    /// touch ([0,3) and [3,5)) was kept as sent, while the same ranges after a delta came
    /// out joined, so a diff and its apply led to a state that read differently.
    #[test]
    fn touching_ranges_in_a_whole_state_are_joined() {
        let sent = FileHave {
            held: vec![0, 3, 3, 5],
            ..state(false, 10, &[], &[])
        };
        let now = apply(None, diff(None, &sent).unwrap(), &sent.file).unwrap();
        assert_eq!(now.held, vec![0, 5]);
        let next = state(false, 10, &[(0, 5), (6, 7)], &[]);
        let u = diff(Some(&now), &next).unwrap();
        assert!(same(&apply(Some(&now), u, &now.file).unwrap(), &next));
    }
}
