//! Whether the Hub can answer now: which failures mean "ask the fleet instead", and a
//! short memory of them, so a pull that found the Hub down does not wait out a retry
//! budget again for every file.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use xet::remote::RemoteError;

use crate::sync::lock;

/// How long a Hub that failed is asked only after the fleet.
pub const OUTAGE_HOLD: Duration = Duration::from_secs(30);

/// The Hub could not give an answer it would give later: unreachable, overloaded (5xx),
/// rate-limiting (429), or retries ran out on one of those. A 401, 403 or 404 is the Hub's
/// answer and is never replaced by the fleet's.
pub fn unavailable(e: &RemoteError) -> bool {
    match e {
        RemoteError::RetriesExhausted { .. } => true,
        other => other.is_transient(),
    }
}

#[derive(Default)]
pub struct Outage {
    since: Mutex<HashMap<String, Instant>>,
}

impl Outage {
    pub fn note_down(&self, endpoint: &str) {
        lock(&self.since)
            .entry(endpoint.to_string())
            .or_insert_with(Instant::now);
    }

    pub fn note_up(&self, endpoint: &str) {
        lock(&self.since).remove(endpoint);
    }

    /// The Hub at `endpoint` failed within [`OUTAGE_HOLD`].
    pub fn is_down(&self, endpoint: &str) -> bool {
        let mut m = lock(&self.since);
        match m.get(endpoint) {
            Some(t) if t.elapsed() < OUTAGE_HOLD => true,
            Some(_) => {
                m.remove(endpoint);
                false
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_failures_the_hub_would_not_repeat_later_send_a_pull_to_the_fleet() {
        let http = |status| RemoteError::Http {
            url: "u".into(),
            status,
            detail: String::new(),
        };
        assert!(unavailable(&http(503)));
        assert!(unavailable(&http(429)));
        assert!(!unavailable(&http(404)));
        assert!(!unavailable(&RemoteError::AuthRequired {
            repo: "r".into()
        }));
        assert!(unavailable(&RemoteError::Unreachable {
            url: "u".into(),
            detail: "refused".into()
        }));
        assert!(unavailable(&RemoteError::RetriesExhausted {
            url: "u".into(),
            attempts: 5,
            secs: 10,
            last: "503".into()
        }));
        let o = Outage::default();
        assert!(!o.is_down("h"));
        o.note_down("h");
        assert!(o.is_down("h") && !o.is_down("g"));
        o.note_up("h");
        assert!(!o.is_down("h"));
    }
}
