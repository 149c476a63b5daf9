//! What `<state>/pulls/<id>.json` holds: a pull that is running, so that a restart resumes
//! it, or one that stopped for good, so that `zestctl status` can say why. Never the token.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Restarts that may resume a pull that made no progress in between: a pull whose work
/// kills or hangs the daemon must not do so forever.
pub const MAX_RESUMES: u32 = 5;

/// How long a stopped pull stays in `zestctl status`.
pub const KEEP_STOPPED: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PullRecord {
    pub repo_type: String,
    pub repo_id: String,
    pub revision: String,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub endpoint: String,
    pub had_token: bool,
    /// Restarts that resumed this pull since it last fetched anything.
    #[serde(default)]
    pub resumes: u32,
    /// Set once the pull failed, or was not resumed: it is not resumed again.
    #[serde(default)]
    pub stopped: Option<Stopped>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Stopped {
    /// A `Kind` name (`network`, `disk`, …).
    pub kind: String,
    pub message: String,
    /// When, in seconds since the Unix epoch.
    pub unix: u64,
}

/// What a starting daemon does with a record it finds.
#[derive(Debug, PartialEq, Eq)]
pub enum OnRestart {
    /// Run it again, counting one more resume.
    Resume,
    /// Do not run it; keep it, stopped for this reason.
    Stop(Stopped),
    /// A stopped pull, still shown.
    Keep,
    /// A stopped pull old enough to drop.
    Forget,
}

/// The decision for `rec` at `now_unix`.
pub fn on_restart(rec: &PullRecord, now_unix: u64) -> OnRestart {
    if let Some(s) = &rec.stopped {
        return if now_unix.saturating_sub(s.unix) > KEEP_STOPPED.as_secs() {
            OnRestart::Forget
        } else {
            OnRestart::Keep
        };
    }
    let stop = |kind: &str, message: String| {
        OnRestart::Stop(Stopped {
            kind: kind.into(),
            message,
            unix: now_unix,
        })
    };
    if rec.had_token {
        return stop(
            "auth",
            "not resumed after a restart: it needed a token, and tokens are never stored; run \
             `zestctl pull` again (verified data is kept and reused)"
                .into(),
        );
    }
    if rec.resumes >= MAX_RESUMES {
        return stop(
            "internal",
            format!(
                "not resumed again: zestd stopped {} times while this pull ran, with nothing \
                 fetched in between; run `zestctl pull` to try again",
                rec.resumes + 1
            ),
        );
    }
    OnRestart::Resume
}

pub fn read(path: &Path) -> Option<PullRecord> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Writes `rec` whole or not at all (a reader never sees half a record).
pub fn write(path: &Path, rec: &PullRecord) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(rec).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, json)?;
    std::fs::rename(&tmp, path)
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

    fn rec() -> PullRecord {
        PullRecord {
            repo_type: "model".into(),
            repo_id: "a/b".into(),
            revision: "main".into(),
            include: vec![],
            exclude: vec![],
            endpoint: "http://hub".into(),
            had_token: false,
            resumes: 0,
            stopped: None,
        }
    }

    #[test]
    fn a_pull_is_resumed_until_it_has_been_resumed_too_often_without_progress() {
        let mut r = rec();
        for n in 0..MAX_RESUMES {
            r.resumes = n;
            assert_eq!(on_restart(&r, 100), OnRestart::Resume);
        }
        r.resumes = MAX_RESUMES;
        let OnRestart::Stop(s) = on_restart(&r, 100) else {
            panic!("resumed a {MAX_RESUMES}th time");
        };
        assert!(s.message.contains("not resumed again"), "{}", s.message);
    }

    #[test]
    fn a_pull_that_needed_a_token_stops_and_says_why() {
        let r = PullRecord {
            had_token: true,
            ..rec()
        };
        let OnRestart::Stop(s) = on_restart(&r, 100) else {
            panic!("resumed without its token");
        };
        assert_eq!(s.kind, "auth");
    }

    #[test]
    fn a_stopped_pull_is_shown_for_a_week_then_forgotten() {
        let r = PullRecord {
            stopped: Some(Stopped {
                kind: "network".into(),
                message: "x".into(),
                unix: 1000,
            }),
            ..rec()
        };
        assert_eq!(on_restart(&r, 1000 + 3600), OnRestart::Keep);
        assert_eq!(
            on_restart(&r, 1000 + KEEP_STOPPED.as_secs() + 1),
            OnRestart::Forget
        );
    }

    #[test]
    fn records_from_before_resume_counting_still_read() {
        let old = br#"{"repo_type":"model","repo_id":"a/b","revision":"main","include":[],
            "exclude":[],"endpoint":"http://hub","had_token":false}"#;
        let r: PullRecord = serde_json::from_slice(old).expect("old record");
        assert_eq!((r.resumes, r.stopped), (0, None));
    }
}
