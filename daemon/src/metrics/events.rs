//! Counts of events as the parts of the daemon see them. Process-wide, as metrics registries
//! are (one daemon per process): the places that see these events sit deep in the engine,
//! the peer server and discovery, and a handle threaded to each would be plumbing for an
//! increment. Every label a count carries comes from a closed set.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub static EVENTS: Events = Events::new();

/// Counts the answers every request of a Hub client gets.
pub fn origin_observer() -> xet::remote::RequestObserver {
    std::sync::Arc::new(|status| EVENTS.origin_answered(status))
}

/// Where bytes were when they failed a hash check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifySource {
    /// A chunk a peer sent.
    Peer,
    /// A xorb range from the CAS/CDN that did not decode into the chunks it should.
    Origin,
    /// A chunk of another file of this cache, read to be reused.
    Local,
    /// A whole downloaded file against the Hub's Xet hash or sha256.
    File,
    /// A chunk of this cache about to be served to a peer.
    Seeding,
}

impl VerifySource {
    pub const ALL: [VerifySource; 5] = [
        VerifySource::Peer,
        VerifySource::Origin,
        VerifySource::Local,
        VerifySource::File,
        VerifySource::Seeding,
    ];

    pub fn label(self) -> &'static str {
        match self {
            VerifySource::Peer => "peer",
            VerifySource::Origin => "origin",
            VerifySource::Local => "local",
            VerifySource::File => "file",
            VerifySource::Seeding => "seeding",
        }
    }
}

/// Where this node announces the swarms it is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnnounceChannel {
    /// A public BitTorrent tracker (HTTP or UDP).
    Tracker,
    /// One of the fleet's private trackers.
    FleetTracker,
    /// The Mainline DHT.
    Dht,
}

impl AnnounceChannel {
    pub const ALL: [AnnounceChannel; 3] = [
        AnnounceChannel::Tracker,
        AnnounceChannel::FleetTracker,
        AnnounceChannel::Dht,
    ];

    pub fn label(self) -> &'static str {
        match self {
            AnnounceChannel::Tracker => "tracker",
            AnnounceChannel::FleetTracker => "fleet_tracker",
            AnnounceChannel::Dht => "dht",
        }
    }
}

/// Which way a peer message went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Sent,
    Received,
}

impl Direction {
    pub const ALL: [Direction; 2] = [Direction::Sent, Direction::Received];

    pub fn label(self) -> &'static str {
        match self {
            Direction::Sent => "sent",
            Direction::Received => "received",
        }
    }
}

/// How peer state travelled: asked (`have` and its reply) or pushed (`watch` and its
/// updates).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateKind {
    Have,
    Watch,
}

impl StateKind {
    pub const ALL: [StateKind; 2] = [StateKind::Have, StateKind::Watch];

    pub fn label(self) -> &'static str {
        match self {
            StateKind::Have => "have",
            StateKind::Watch => "watch",
        }
    }
}

/// Upper bounds of the pull duration buckets, seconds: a small file on a LAN to a large
/// model over a slow link.
pub const PULL_SECONDS_BUCKETS: [f64; 12] = [
    0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// HTTP status codes are below 600; a code outside that is counted as `other`.
const STATUS_CODES: usize = 600;

pub struct Events {
    peer_bans: AtomicU64,
    verify_failures: [AtomicU64; VerifySource::ALL.len()],
    origin_status: [AtomicU64; STATUS_CODES],
    origin_other_status: AtomicU64,
    origin_unanswered: AtomicU64,
    /// Per channel: [ok, failed].
    announces: [[AtomicU64; 2]; AnnounceChannel::ALL.len()],
    /// Per bucket (not cumulative), then the ones above the last bound.
    pull_buckets: [AtomicU64; PULL_SECONDS_BUCKETS.len() + 1],
    pull_micros: AtomicU64,
    /// Peer-state messages, per direction and kind: [messages, bytes].
    peer_state: [[[AtomicU64; 2]; StateKind::ALL.len()]; Direction::ALL.len()],
}

/// A histogram as read at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramReading {
    /// Cumulative counts, one per bound of [`PULL_SECONDS_BUCKETS`].
    pub cumulative: Vec<u64>,
    pub count: u64,
    pub sum_seconds: f64,
}

impl Events {
    pub const fn new() -> Self {
        Events {
            peer_bans: AtomicU64::new(0),
            verify_failures: [const { AtomicU64::new(0) }; VerifySource::ALL.len()],
            origin_status: [const { AtomicU64::new(0) }; STATUS_CODES],
            origin_other_status: AtomicU64::new(0),
            origin_unanswered: AtomicU64::new(0),
            announces: [const { [const { AtomicU64::new(0) }; 2] }; AnnounceChannel::ALL.len()],
            pull_buckets: [const { AtomicU64::new(0) }; PULL_SECONDS_BUCKETS.len() + 1],
            pull_micros: AtomicU64::new(0),
            peer_state: [const { [const { [const { AtomicU64::new(0) }; 2] }; StateKind::ALL.len()] };
                Direction::ALL.len()],
        }
    }

    /// A message about what a peer holds went `direction`, `bytes` long as framed.
    pub fn peer_state(&self, direction: Direction, kind: StateKind, bytes: u64) {
        let [msgs, total] = &self.peer_state[direction as usize][kind as usize];
        msgs.fetch_add(1, Ordering::Relaxed);
        total.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Peer-state messages of `kind` and their bytes that went `direction` so far.
    pub fn peer_state_count(&self, direction: Direction, kind: StateKind) -> (u64, u64) {
        let [msgs, total] = &self.peer_state[direction as usize][kind as usize];
        (msgs.load(Ordering::Relaxed), total.load(Ordering::Relaxed))
    }

    pub fn peer_banned(&self) {
        self.peer_bans.fetch_add(1, Ordering::Relaxed);
    }

    pub fn verify_failed(&self, source: VerifySource) {
        self.verify_failures[source as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// A request to the Hub, CAS or CDN ended: with this status, or with no answer.
    pub fn origin_answered(&self, status: Option<u16>) {
        match status {
            Some(s) => match self.origin_status.get(usize::from(s)) {
                Some(c) => c.fetch_add(1, Ordering::Relaxed),
                None => self.origin_other_status.fetch_add(1, Ordering::Relaxed),
            },
            None => self.origin_unanswered.fetch_add(1, Ordering::Relaxed),
        };
    }

    pub fn announced(&self, channel: AnnounceChannel, ok: bool) {
        self.announces[channel as usize][usize::from(!ok)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn pull_finished(&self, took: Duration) {
        let s = took.as_secs_f64();
        let bucket = PULL_SECONDS_BUCKETS
            .iter()
            .position(|&b| s <= b)
            .unwrap_or(PULL_SECONDS_BUCKETS.len());
        self.pull_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.pull_micros.fetch_add(micros, Ordering::Relaxed);
    }

    pub fn peer_bans(&self) -> u64 {
        self.peer_bans.load(Ordering::Relaxed)
    }

    pub fn verify_failures(&self, source: VerifySource) -> u64 {
        self.verify_failures[source as usize].load(Ordering::Relaxed)
    }

    /// Answers by status: every code seen, `other` for codes outside 0..600, `none` for
    /// requests that got no answer at all. Codes never seen are left out.
    pub fn origin_answers(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = self
            .origin_status
            .iter()
            .enumerate()
            .map(|(code, c)| (code.to_string(), c.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect();
        for (label, c) in [
            ("other", &self.origin_other_status),
            ("none", &self.origin_unanswered),
        ] {
            let n = c.load(Ordering::Relaxed);
            if n > 0 {
                out.push((label.to_string(), n));
            }
        }
        out
    }

    pub fn announces(&self, channel: AnnounceChannel, ok: bool) -> u64 {
        self.announces[channel as usize][usize::from(!ok)].load(Ordering::Relaxed)
    }

    pub fn pull_durations(&self) -> HistogramReading {
        let counts: Vec<u64> = self
            .pull_buckets
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let cumulative: Vec<u64> = counts[..PULL_SECONDS_BUCKETS.len()]
            .iter()
            .scan(0u64, |acc, n| {
                *acc += n;
                Some(*acc)
            })
            .collect();
        HistogramReading {
            cumulative,
            count: counts.iter().sum(),
            sum_seconds: self.pull_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

impl Default for Events {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_durations_fall_in_cumulative_buckets() {
        let e = Events::new();
        for s in [0.2, 0.5, 3.0, 7200.0] {
            e.pull_finished(Duration::from_secs_f64(s));
        }
        let h = e.pull_durations();
        assert_eq!(h.count, 4);
        // 0.2 and 0.5 are both ≤ 0.5 (bounds are inclusive); 3.0 first fits under 5.0.
        assert_eq!(&h.cumulative[..4], &[2, 2, 2, 3]);
        assert_eq!(
            *h.cumulative.last().unwrap(),
            3,
            "7200 s is above every bound"
        );
        assert!((h.sum_seconds - 7203.7).abs() < 1e-6);
    }

    #[test]
    fn origin_answers_keep_codes_seen_and_name_the_rest() {
        let e = Events::new();
        e.origin_answered(Some(200));
        e.origin_answered(Some(200));
        e.origin_answered(Some(429));
        e.origin_answered(Some(999));
        e.origin_answered(None);
        assert_eq!(
            e.origin_answers(),
            vec![
                ("200".to_string(), 2),
                ("429".to_string(), 1),
                ("other".to_string(), 1),
                ("none".to_string(), 1)
            ]
        );
    }

    #[test]
    fn announces_count_by_channel_and_result() {
        let e = Events::new();
        e.announced(AnnounceChannel::Dht, true);
        e.announced(AnnounceChannel::FleetTracker, false);
        assert_eq!(e.announces(AnnounceChannel::Dht, true), 1);
        assert_eq!(e.announces(AnnounceChannel::Dht, false), 0);
        assert_eq!(e.announces(AnnounceChannel::FleetTracker, false), 1);
    }
}
