//! Counters a pull updates as it goes; read by progress streams and `zestctl status`.

use std::sync::{Arc, Mutex};

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::totals::Totals;

#[derive(Default, Debug)]
pub struct PullCounters {
    /// The daemon's totals, which every transfer count also goes to.
    totals: Arc<Totals>,
    pub files_total: AtomicU32,
    pub files_done: AtomicU32,
    pub bytes_total: AtomicU64,
    /// File bytes written and verified, or found already present.
    pub bytes_done: AtomicU64,
    /// Bytes received from the Hub and its CDN (compressed, as sent).
    pub from_origin: AtomicU64,
    pub from_peers: AtomicU64,
    /// File bytes that needed no transfer: already in the cache, or resumed.
    pub from_local: AtomicU64,
    pub commit: Mutex<String>,
    pub phase: Mutex<&'static str>,
    pub current: Mutex<Vec<String>>,
}

impl PullCounters {
    pub fn set_phase(&self, phase: &'static str) {
        if let Ok(mut p) = self.phase.lock() {
            *p = phase;
        }
    }
    pub fn start_file(&self, name: &str) {
        if let Ok(mut c) = self.current.lock() {
            c.push(name.to_string());
        }
    }
    pub fn finish_file(&self, name: &str) {
        if let Ok(mut c) = self.current.lock()
            && let Some(i) = c.iter().position(|n| n == name)
        {
            c.remove(i);
        }
        self.files_done.fetch_add(1, Ordering::Relaxed);
    }

    /// Counters whose transfers also count towards `totals`.
    pub fn new(totals: Arc<Totals>) -> Self {
        PullCounters {
            totals,
            ..Default::default()
        }
    }

    /// Bytes received from the origin (compressed, as sent).
    pub fn add_origin(&self, n: u64) {
        self.from_origin.fetch_add(n, Ordering::Relaxed);
        self.totals.from_origin.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_peer(&self, n: u64) {
        self.from_peers.fetch_add(n, Ordering::Relaxed);
        self.totals.from_peers.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_local(&self, n: u64) {
        self.from_local.fetch_add(n, Ordering::Relaxed);
        self.totals.from_local.fetch_add(n, Ordering::Relaxed);
    }
}
