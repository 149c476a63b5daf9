//! Keeps the index current: a `notify` watcher on the cache triggers a reconcile shortly
//! after changes settle, and a slow periodic reconcile catches anything a watcher missed.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;

use super::Index;
use super::cache_events;
use super::scan::{ScanReport, reconcile};

/// Quiet time after the last event before reconciling, so a burst of writes costs one pass.
const SETTLE: Duration = Duration::from_millis(300);
const PERIODIC: Duration = Duration::from_secs(600);
const PERIODIC_WITHOUT_WATCHER: Duration = Duration::from_secs(30);
/// How often a broken index (its disk was full) checks whether it can be reopened.
const RECOVER_EVERY: Duration = Duration::from_secs(3);

/// Scans once, then watches `cache_dir` until the runtime stops. `on_scan` hears each pass.
pub fn spawn(
    index: Index,
    cache_dir: PathBuf,
    on_scan: impl Fn(ScanReport) + Send + Sync + 'static,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let watcher = cache_events::watch(&cache_dir, tx.clone());
    let periodic = match &watcher {
        Ok(_) => PERIODIC,
        Err(e) => {
            tracing::warn!(
                "cannot watch {} ({e}); rescanning every {}s instead",
                cache_dir.display(),
                PERIODIC_WITHOUT_WATCHER.as_secs()
            );
            PERIODIC_WITHOUT_WATCHER
        }
    };
    // A broken index reopens itself once its disk has room, then catches up with the cache.
    {
        let index = index.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RECOVER_EVERY).await;
                if !index.is_broken() {
                    continue;
                }
                let ix = index.clone();
                if let Ok(true) = tokio::task::spawn_blocking(move || ix.recover()).await
                    && tx.send(()).is_err()
                {
                    return;
                }
            }
        });
    }
    tokio::spawn(async move {
        // Dropping the watcher stops it; it lives as long as this task.
        let _watcher = watcher.ok();
        loop {
            let ix = index.clone();
            let dir = cache_dir.clone();
            // While the index cannot be written a pass would only hash everything again.
            let pass = (!index.is_broken())
                .then(|| tokio::task::spawn_blocking(move || reconcile(&ix, &dir)));
            let Some(pass) = pass else {
                if let Ok(None) = tokio::time::timeout(periodic, rx.recv()).await {
                    return;
                }
                continue;
            };
            match pass.await {
                Ok(r) => {
                    if r.added + r.removed > 0 {
                        tracing::info!(
                            added = r.added,
                            removed = r.removed,
                            kept = r.kept,
                            "index updated"
                        );
                    }
                    on_scan(r);
                }
                Err(e) => tracing::warn!("index scan failed: {e}"),
            }
            if let Ok(None) = tokio::time::timeout(periodic, rx.recv()).await {
                return;
            }
            // Let the burst settle (but not forever), then take it all as one change.
            for _ in 0..10 {
                tokio::time::sleep(SETTLE).await;
                let mut more = false;
                while rx.try_recv().is_ok() {
                    more = true;
                }
                if !more {
                    break;
                }
            }
        }
    });
}
