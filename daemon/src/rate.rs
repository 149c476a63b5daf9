//! Bandwidth caps: a token bucket callers wait on before they send (or after they take)
//! bytes, changeable while it runs, and the parser for rates as users write them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use tokio::sync::Mutex as AsyncMutex;

/// The most a bucket lets through at once, in seconds of its rate: short, so every
/// 5-second window stays close to the cap.
const BURST_SECS: f64 = 0.05;

/// The node's caps, shared by what sends and what receives and by `zestctl`.
#[derive(Debug)]
pub struct Limits {
    /// What peers get from this node.
    pub upload: RateLimit,
    /// What this node takes from peers and the origin together: every transfer waits on
    /// it after each piece it reads, so the sender is held back by flow control.
    pub download: RateLimit,
}

impl Limits {
    pub fn new(upload: Option<u64>, download: Option<u64>) -> Self {
        Limits {
            upload: RateLimit::new(upload),
            download: RateLimit::new(download),
        }
    }

    /// No caps.
    pub fn none() -> Self {
        Self::new(None, None)
    }
}

/// A byte rate cap shared by everyone who sends through it. Waiters queue in arrival
/// order (tokio's mutex is fair), so streams and peers take turns.
#[derive(Debug)]
pub struct RateLimit {
    /// Bytes per second; 0 is no cap.
    rate: AtomicU64,
    bucket: AsyncMutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimit {
    pub fn new(rate: Option<u64>) -> Self {
        RateLimit {
            rate: AtomicU64::new(rate.unwrap_or(0)),
            bucket: AsyncMutex::new(Bucket {
                tokens: 0.0,
                at: Instant::now(),
            }),
        }
    }

    /// The cap in bytes per second, if any.
    pub fn get(&self) -> Option<u64> {
        Some(self.rate.load(Ordering::Relaxed)).filter(|r| *r > 0)
    }

    /// Changes the cap; waiters already queued see it at their next refill.
    pub fn set(&self, rate: Option<u64>) {
        self.rate.store(rate.unwrap_or(0), Ordering::Relaxed);
    }

    /// Waits until `n` bytes may pass.
    pub async fn take(&self, n: u64) {
        if self.get().is_none() {
            return;
        }
        let mut b = self.bucket.lock().await;
        loop {
            let Some(rate) = self.get() else { return };
            let rate = rate as f64;
            let now = Instant::now();
            let burst = (rate * BURST_SECS).max(n as f64);
            b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(burst);
            b.at = now;
            if b.tokens >= n as f64 {
                b.tokens -= n as f64;
                return;
            }
            let short = n as f64 - b.tokens;
            // Wake at most every 100 ms, so a cap raised meanwhile takes effect.
            let wait = (short / rate).min(0.1);
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        }
    }
}

/// The download cap as a Hub client's pace: origin bodies wait on it as they are read.
pub fn download_pace(limits: Arc<Limits>) -> xet::remote::Pace {
    Arc::new(move |n| {
        limits.download.get()?;
        let limits = limits.clone();
        Some(Box::pin(async move { limits.download.take(n).await }))
    })
}

/// Parses a rate per second as users write it: `20MiB`, `100MB`, `400Mbit`, `1.5GB`,
/// `512KiB`, plain bytes, or `off`/`0` for no cap. Returns bytes per second.
pub fn parse_rate(s: &str) -> Result<Option<u64>, String> {
    let t = s.trim();
    let t = t
        .strip_suffix("/s")
        .or_else(|| t.strip_suffix("ps"))
        .unwrap_or(t);
    if t.eq_ignore_ascii_case("off") || t.eq_ignore_ascii_case("none") || t == "0" {
        return Ok(None);
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a rate (try 20MiB, 100MB or 400Mbit)"))?;
    let mult: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "kbit" | "Kbit" => 1e3 / 8.0,
        "Mbit" => 1e6 / 8.0,
        "Gbit" => 1e9 / 8.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {s:?} (bytes: B, KB, MB, GB, KiB, MiB, GiB; bits: kbit, Mbit, Gbit)"
            ));
        }
    };
    let bytes = (value * mult).round();
    if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 {
        return Err(format!("{s:?} is not a usable rate"));
    }
    Ok(Some(bytes as u64))
}

/// A rate as `zestctl status` shows it.
pub fn describe(rate: Option<u64>) -> String {
    match rate {
        None => "off".into(),
        Some(r) if r >= 1 << 20 => format!("{:.1} MiB/s", r as f64 / f64::from(1 << 20)),
        Some(r) => format!("{:.1} KiB/s", r as f64 / 1024.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_as_users_write_them() {
        assert_eq!(parse_rate("20MiB"), Ok(Some(20 << 20)));
        assert_eq!(parse_rate("100MB"), Ok(Some(100_000_000)));
        assert_eq!(parse_rate("400Mbit"), Ok(Some(50_000_000)));
        assert_eq!(parse_rate("1.5GB/s"), Ok(Some(1_500_000_000)));
        assert_eq!(parse_rate("4096"), Ok(Some(4096)));
        assert_eq!(parse_rate("off"), Ok(None));
        assert_eq!(parse_rate("0"), Ok(None));
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("20 parsecs").is_err());
        assert!(parse_rate("0.0001B").is_err());
    }

    #[tokio::test]
    async fn a_capped_bucket_passes_its_rate_and_no_more() {
        let cap = 20_000_000u64;
        let limit = RateLimit::new(Some(cap));
        let t0 = Instant::now();
        for _ in 0..100 {
            limit.take(65_536).await;
        }
        let rate = 100.0 * 65_536.0 / t0.elapsed().as_secs_f64();
        assert!(
            rate <= cap as f64 * 1.05 && rate >= cap as f64 * 0.85,
            "{rate} B/s under a {cap} B/s cap"
        );
        limit.set(None);
        let t1 = Instant::now();
        limit.take(10 << 20).await;
        assert!(t1.elapsed() < Duration::from_millis(5), "no cap, no wait");
    }
}
