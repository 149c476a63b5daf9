//! Faults the test hub injects on request, and what it counts.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// Each counter arms that many occurrences of its fault; each occurrence disarms one.
#[derive(Default, Debug)]
pub struct Faults {
    /// Hub API and resolve requests answer 503.
    pub hub_5xx: AtomicU32,
    /// Reconstruction requests answer 503.
    pub recon_5xx: AtomicU32,
    /// Reconstructions carry URLs that have already expired (fetches answer 403).
    pub expire_urls: AtomicU32,
    /// `/v2/reconstructions` answers 404, as a CAS without the v2 API does.
    pub no_v2: AtomicU32,
    /// Xorb range fetches answer 503.
    pub fetch_5xx: AtomicU32,
    /// Xorb range fetches send part of the body, then reset the connection.
    pub fetch_drop: AtomicU32,
    /// Xorb range fetches send a short body that ends cleanly.
    pub fetch_truncate: AtomicU32,
    /// Xorb range fetches are paced to this many bytes per second (0: unpaced).
    pub fetch_rate: AtomicU64,
    /// Tree listings answer with a `next` link that leads back to a page already sent.
    pub tree_loop: AtomicU32,
    /// Tree listings answer with a 200 MB page.
    pub tree_huge: AtomicU32,
    /// Hub API requests are accepted and never answered.
    pub hub_silent: AtomicU32,
    /// Hub API answers send their body a byte a second.
    pub hub_trickle: AtomicU32,
    /// Hub API requests answer 503 with `Retry-After: 60`.
    pub hub_retry_after: AtomicU32,
    /// Xorb range fetches send their body a byte a second.
    pub fetch_trickle: AtomicU32,
    /// This percentage of Hub API requests answer 429 with `Retry-After: 1`, spread
    /// evenly, until set otherwise (a rate limit, not a count of faults).
    pub hub_429_pct: AtomicU32,
    /// Hub API requests seen, for spreading `hub_429_pct`.
    seen: AtomicU64,
}

/// The fault settings as JSON, for `POST /_test/faults`.
#[derive(Default, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct FaultSettings {
    pub hub_5xx: u32,
    pub recon_5xx: u32,
    pub expire_urls: u32,
    pub no_v2: u32,
    pub fetch_5xx: u32,
    pub fetch_drop: u32,
    pub fetch_truncate: u32,
    pub fetch_rate: u64,
    pub tree_loop: u32,
    pub tree_huge: u32,
    pub hub_silent: u32,
    pub hub_trickle: u32,
    pub hub_retry_after: u32,
    pub fetch_trickle: u32,
    pub hub_429_pct: u32,
}

impl Faults {
    pub fn set(&self, s: &FaultSettings) {
        self.hub_5xx.store(s.hub_5xx, Ordering::SeqCst);
        self.recon_5xx.store(s.recon_5xx, Ordering::SeqCst);
        self.expire_urls.store(s.expire_urls, Ordering::SeqCst);
        self.no_v2.store(s.no_v2, Ordering::SeqCst);
        self.fetch_5xx.store(s.fetch_5xx, Ordering::SeqCst);
        self.fetch_drop.store(s.fetch_drop, Ordering::SeqCst);
        self.fetch_truncate
            .store(s.fetch_truncate, Ordering::SeqCst);
        self.fetch_rate.store(s.fetch_rate, Ordering::SeqCst);
        self.tree_loop.store(s.tree_loop, Ordering::SeqCst);
        self.tree_huge.store(s.tree_huge, Ordering::SeqCst);
        self.hub_silent.store(s.hub_silent, Ordering::SeqCst);
        self.hub_trickle.store(s.hub_trickle, Ordering::SeqCst);
        self.hub_retry_after
            .store(s.hub_retry_after, Ordering::SeqCst);
        self.fetch_trickle.store(s.fetch_trickle, Ordering::SeqCst);
        self.hub_429_pct
            .store(s.hub_429_pct.min(100), Ordering::SeqCst);
    }

    /// Whether this Hub API request is one `hub_429_pct` rate-limits.
    pub fn rate_limited(&self) -> bool {
        let pct = u64::from(self.hub_429_pct.load(Ordering::SeqCst));
        let n = self.seen.fetch_add(1, Ordering::SeqCst);
        pct > 0 && (n * pct) % 100 < pct
    }

    /// Disarms one occurrence of `counter`'s fault; true if one was armed.
    pub fn take(counter: &AtomicU32) -> bool {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    pub fn armed(&self) -> u32 {
        [
            &self.hub_5xx,
            &self.recon_5xx,
            &self.expire_urls,
            &self.no_v2,
            &self.fetch_5xx,
            &self.fetch_drop,
            &self.fetch_truncate,
            &self.tree_loop,
            &self.tree_huge,
            &self.hub_silent,
            &self.hub_trickle,
            &self.hub_retry_after,
            &self.fetch_trickle,
        ]
        .iter()
        .map(|c| c.load(Ordering::SeqCst))
        .sum()
    }
}

/// Traffic counters: what the origin sent.
#[derive(Default, Debug)]
pub struct Stats {
    pub xorb_bytes: AtomicU64,
    pub xorb_requests: AtomicU64,
    pub reconstructions: AtomicU64,
    pub resolves: AtomicU64,
    pub plain_bytes: AtomicU64,
    /// Every Hub API request (revision, tree, xet-read-token, resolve), answered or not.
    pub hub_requests: AtomicU64,
    /// Of those, the ones answered 429.
    pub hub_429s: AtomicU64,
    /// Requests for a path that was answered 429 (Retry-After: 1) less than 0.9 s before:
    /// a client that did not honour Retry-After.
    pub hub_early_retries: AtomicU64,
    /// Every Hub API request's path, in order (for benchmarks that say which were asked).
    pub hub_paths: std::sync::Mutex<Vec<String>>,
    /// Path → when it was last answered 429.
    pub last_429: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

#[derive(Default, Debug, Serialize, Deserialize, Clone, Copy, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub xorb_bytes: u64,
    pub xorb_requests: u64,
    pub reconstructions: u64,
    pub resolves: u64,
    pub plain_bytes: u64,
    pub hub_requests: u64,
    pub hub_429s: u64,
    pub hub_early_retries: u64,
}

/// A body sent a byte a second, as a server that is alive but useless sends it.
pub fn trickle(body: bytes::Bytes) -> axum::body::Body {
    use futures_util::StreamExt;
    let bytes: Vec<u8> = body.to_vec();
    let stream = futures_util::stream::iter(bytes).then(|b| async move {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(&[b]))
    });
    axum::body::Body::from_stream(stream)
}

impl Stats {
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            xorb_bytes: self.xorb_bytes.load(Ordering::SeqCst),
            xorb_requests: self.xorb_requests.load(Ordering::SeqCst),
            reconstructions: self.reconstructions.load(Ordering::SeqCst),
            resolves: self.resolves.load(Ordering::SeqCst),
            plain_bytes: self.plain_bytes.load(Ordering::SeqCst),
            hub_requests: self.hub_requests.load(Ordering::SeqCst),
            hub_429s: self.hub_429s.load(Ordering::SeqCst),
            hub_early_retries: self.hub_early_retries.load(Ordering::SeqCst),
        }
    }
}
