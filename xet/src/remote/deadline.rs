//! Time limits on every request to the Hub, the CAS and the CDN, so that a dead, silent or
//! crawling server ends in a clear error instead of a hang.
//!
//! A request has three limits of its own (connect, first byte, stall), and the retries of
//! one request share a budget ([`Budget`]): once it is spent, the last error is final. A
//! stream that makes progress renews its budget, so only a source that keeps failing
//! without moving forward runs out.

use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::Response;

#[derive(Clone, Copy, Debug)]
pub struct Deadlines {
    /// To open a connection (TCP and TLS).
    pub connect: Duration,
    /// From sending a request to its status line and headers.
    pub first_byte: Duration,
    /// A body must bring at least `stall_bytes` in every `stall_window` spent waiting for
    /// it (time spent elsewhere, pacing to a download cap or writing to disk, does not
    /// count): a server that trickles a byte a second is as dead as a silent one.
    pub stall_window: Duration,
    pub stall_bytes: u64,
    /// How long one request may go on failing, retries and their waits included.
    pub give_up: Duration,
    /// The longest `Retry-After` honoured: a server asking for more is retried sooner, and a
    /// wait that would not fit in what is left of `give_up` ends the request at once.
    pub max_retry_after: Duration,
}

impl Default for Deadlines {
    /// About two minutes from a dead Hub to a clear error, while a slow but moving link
    /// (down to ~800 B/s) is never cut.
    fn default() -> Self {
        Deadlines {
            connect: Duration::from_secs(10),
            first_byte: Duration::from_secs(30),
            stall_window: Duration::from_secs(20),
            stall_bytes: 16 << 10,
            give_up: Duration::from_secs(120),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

/// Why a body stopped before its end.
#[derive(Debug)]
pub enum BodyFault {
    /// The connection failed (reset, TLS error, …).
    Read(reqwest::Error),
    /// Fewer than `stall_bytes` arrived in a whole window.
    Stalled { got: u64, window: Duration },
}

impl std::fmt::Display for BodyFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyFault::Read(e) => f.write_str(&super::http::describe_reqwest(e)),
            BodyFault::Stalled { got, window } => {
                write!(f, "the body stalled: {got} bytes in {} s", window.as_secs())
            }
        }
    }
}

/// Reads a body piece by piece, holding it to the stall rule of [`Deadlines`].
pub struct BodyWatch {
    window: Duration,
    min_bytes: u64,
    waited: Duration,
    got: u64,
}

impl BodyWatch {
    pub fn new(d: &Deadlines) -> Self {
        BodyWatch {
            window: d.stall_window,
            min_bytes: d.stall_bytes,
            waited: Duration::ZERO,
            got: 0,
        }
    }

    /// The next piece of `resp`'s body; `None` at its end.
    pub async fn next(&mut self, resp: &mut Response) -> Result<Option<Bytes>, BodyFault> {
        loop {
            let left = self.window.saturating_sub(self.waited);
            let started = Instant::now();
            let got = tokio::time::timeout(left, resp.chunk()).await;
            self.waited += started.elapsed();
            match got {
                Ok(Ok(Some(piece))) => {
                    self.got += piece.len() as u64;
                    self.close_window()?;
                    return Ok(Some(piece));
                }
                Ok(Ok(None)) => return Ok(None),
                Ok(Err(e)) => return Err(BodyFault::Read(e)),
                Err(_) => {
                    self.waited = self.window;
                    self.close_window()?;
                }
            }
        }
    }

    /// At the end of a window: too little is a stall, enough starts the next window.
    fn close_window(&mut self) -> Result<(), BodyFault> {
        if self.waited < self.window {
            return Ok(());
        }
        if self.got < self.min_bytes {
            return Err(BodyFault::Stalled {
                got: self.got,
                window: self.window,
            });
        }
        self.waited = Duration::ZERO;
        self.got = 0;
        Ok(())
    }
}

/// The time one request has to succeed, retries included.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    started: Instant,
    give_up: Duration,
}

impl Budget {
    pub fn start(d: &Deadlines) -> Self {
        Budget {
            started: Instant::now(),
            give_up: d.give_up,
        }
    }

    /// Progress was made: the failures before it no longer count.
    pub fn renew(&mut self) {
        self.started = Instant::now();
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Whether waiting `wait` and trying again still fits.
    pub fn allows(&self, wait: Duration) -> bool {
        self.started.elapsed() + wait < self.give_up
    }
}

/// The wait before retrying a request that failed with `retry_after` (if the server said
/// one): the server's wish up to the cap, else the backoff's.
pub fn retry_wait(d: &Deadlines, retry_after: Option<Duration>, backoff: Duration) -> Duration {
    retry_after.map_or(backoff, |w| w.min(d.max_retry_after))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_retry_after_is_capped_and_a_short_one_kept() {
        let d = Deadlines::default();
        let b = Duration::from_millis(200);
        assert_eq!(
            retry_wait(&d, Some(Duration::from_secs(3600)), b),
            d.max_retry_after
        );
        assert_eq!(
            retry_wait(&d, Some(Duration::from_secs(2)), b),
            Duration::from_secs(2)
        );
        assert_eq!(retry_wait(&d, None, b), b);
    }

    #[test]
    fn the_budget_refuses_a_wait_past_it() {
        let d = Deadlines {
            give_up: Duration::from_secs(120),
            ..Deadlines::default()
        };
        let b = Budget::start(&d);
        assert!(b.allows(Duration::from_secs(30)));
        assert!(!b.allows(Duration::from_secs(120)));
    }

    #[test]
    fn a_window_with_too_few_bytes_is_a_stall_and_enough_starts_another() {
        let d = Deadlines {
            stall_window: Duration::from_secs(20),
            stall_bytes: 100,
            ..Deadlines::default()
        };
        let mut w = BodyWatch::new(&d);
        w.got = 99;
        w.waited = Duration::from_secs(20);
        assert!(matches!(
            w.close_window(),
            Err(BodyFault::Stalled { got: 99, .. })
        ));
        let mut w = BodyWatch::new(&d);
        w.got = 100;
        w.waited = Duration::from_secs(21);
        assert!(w.close_window().is_ok());
        assert_eq!((w.got, w.waited), (0, Duration::ZERO));
        w.got = 1;
        w.waited = Duration::from_secs(19);
        assert!(w.close_window().is_ok());
        assert_eq!(w.got, 1, "a window not yet over is not judged");
    }
}
