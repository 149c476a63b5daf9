//! How long a HEAD for a Xet file is held. huggingface_hub asks `resolve` with HEAD before
//! it downloads a file, and when the cache's shared blob store already has the file it
//! links that entry instead of downloading (`try_link_from_shared_store`). A client on
//! zestd's own cache (the default deployment) then writes no second copy and spends no CPU
//! on the bytes: the HEAD starts zestd's download and is answered once the file is in the
//! store, or as soon as it will not be there soon. A client that downloads after all (one
//! on a cache of its own) reads what zestd already has, but waited up to `MOST` for it; so
//! HEADs are held only while recent clients linked what was held for them.

use std::time::Duration;

/// The longest a HEAD is held: well inside huggingface_hub's 10 s HEAD timeout.
pub const MOST: Duration = Duration::from_secs(4);
/// How long the download runs before its pace is judged.
pub const LOOK: Duration = Duration::from_millis(500);
/// How long after an early answer a download started by a HEAD waits for a client to ask
/// for the bytes before it is stopped (a dry run, `file_exists`: a HEAD and nothing more).
pub const UNASKED: Duration = Duration::from_secs(5);

/// How many recent held HEADs `worth_holding` looks back on.
pub const RECENT: usize = 4;
/// While holding is not worth it, one HEAD in this many is held anyway, so a client that
/// starts linking is noticed.
pub const PROBE_EVERY: u32 = 8;

/// Whether to hold a HEAD at all, from what clients did after the recent HEADs held until
/// zestd's download finished (`true`: no client asked for the bytes, so it linked the file;
/// `false`: a client downloaded the file from zestd after all, as one on a cache of its own
/// must) and how many HEADs have not been held since. Holding pays where clients link and
/// costs where they cannot: most recent outcomes decide.
pub fn worth_holding(recent_links: &[bool], declined: u32) -> bool {
    let recent = &recent_links[recent_links.len().saturating_sub(RECENT)..];
    let misses = recent.iter().filter(|linked| !**linked).count();
    misses * 2 <= recent.len() || declined % PROBE_EVERY == PROBE_EVERY - 1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Wait,
    Answer,
}

/// Whether to go on holding a HEAD `elapsed` after the download started: `landed` bytes of
/// a file of `size` (unknown until the CAS described it) received or found so far; `ended`
/// once the download finished or failed.
pub fn verdict(elapsed: Duration, landed: u64, size: Option<u64>, ended: bool) -> Verdict {
    if ended || elapsed >= MOST {
        return Verdict::Answer;
    }
    if elapsed < LOOK {
        return Verdict::Wait;
    }
    match size {
        // At the pace so far (setup included, so it errs towards answering), the whole
        // download takes `elapsed * size / landed`.
        Some(size) if landed > 0 => {
            let whole = elapsed.as_secs_f64() * size as f64 / landed as f64;
            if whole <= MOST.as_secs_f64() {
                Verdict::Wait
            } else {
                Verdict::Answer
            }
        }
        _ => Verdict::Answer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_download_that_ended_is_answered_at_once() {
        assert_eq!(verdict(ms(0), 0, None, true), Verdict::Answer);
        assert_eq!(verdict(ms(100), 5, Some(GIB), true), Verdict::Answer);
    }

    #[test]
    fn the_pace_is_judged_only_after_a_look() {
        assert_eq!(verdict(ms(0), 0, None, false), Verdict::Wait);
        assert_eq!(verdict(ms(499), 0, Some(GIB), false), Verdict::Wait);
    }

    #[test]
    fn a_download_that_will_finish_soon_is_waited_for() {
        // 1 GiB at 512 MiB/s: 2 s in all.
        assert_eq!(verdict(ms(500), GIB / 4, Some(GIB), false), Verdict::Wait);
        assert_eq!(verdict(ms(1900), GIB - 1, Some(GIB), false), Verdict::Wait);
    }

    #[test]
    fn a_slow_or_silent_download_is_answered_at_the_look() {
        // 1 GiB behind 1 Gbit/s: about 9 s.
        assert_eq!(
            verdict(ms(500), 60 << 20, Some(GIB), false),
            Verdict::Answer
        );
        assert_eq!(verdict(ms(500), 0, Some(GIB), false), Verdict::Answer);
        // The CAS has not described the file yet.
        assert_eq!(verdict(ms(500), 0, None, false), Verdict::Answer);
    }

    #[test]
    fn heads_are_held_until_clients_download_after_all() {
        assert!(worth_holding(&[], 0));
        assert!(worth_holding(&[true, true, true], 0));
        assert!(worth_holding(&[true, false], 0));
        // A client on a cache of its own downloaded what zestd had finished.
        assert!(!worth_holding(&[false], 0));
        assert!(!worth_holding(&[true, false, false], 0));
        // Only the last few count.
        assert!(worth_holding(
            &[false, false, false, true, true, true, true],
            0
        ));
    }

    #[test]
    fn a_declined_hold_is_tried_again_now_and_then() {
        let held: Vec<u32> = (0..24).filter(|&d| worth_holding(&[false], d)).collect();
        assert_eq!(held, vec![7, 15, 23]);
    }

    #[test]
    fn no_head_is_held_past_the_limit() {
        assert_eq!(verdict(MOST, GIB - 1, Some(GIB), false), Verdict::Answer);
        assert_eq!(verdict(ms(3999), GIB - 1, Some(GIB), false), Verdict::Wait);
    }
}
