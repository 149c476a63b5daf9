//! Reads the daemon's state and event counts into metric families, one scrape at a time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;

use super::events::{
    AnnounceChannel, Direction, EVENTS, PULL_SECONDS_BUCKETS, StateKind, VerifySource,
};
use super::exposition::{Family, Kind};
use crate::peer::set::PEER_STATES;
use crate::pulls::PullManager;
use crate::rate::Limits;

/// Everything a scrape or a health probe reads.
#[derive(Clone)]
pub struct Sources {
    pub pulls: Arc<PullManager>,
    pub limits: Arc<Limits>,
    /// True once the daemon is shutting down.
    pub stopping: watch::Receiver<bool>,
}

/// What `/healthz` says.
#[derive(Debug, serde::Serialize)]
pub struct Health {
    pub status: &'static str,
    pub version: &'static str,
    pub pulls_active: usize,
    pub peers_connected: usize,
    pub indexed_files: u64,
}

impl Sources {
    pub fn health(&self) -> Health {
        let engine = self.pulls.engine();
        Health {
            status: if *self.stopping.borrow() {
                "stopping"
            } else {
                "ok"
            },
            version: env!("CARGO_PKG_VERSION"),
            pulls_active: self.pulls.active().len(),
            peers_connected: engine.peers.as_ref().map_or(0, |p| p.connected_count()),
            indexed_files: engine.index.file_count(),
        }
    }

    pub fn families(&self) -> Vec<Family> {
        let engine = self.pulls.engine();
        let t = &engine.totals;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
        let mut out = vec![
            Family::new(
                "zest_build_info",
                Kind::Gauge,
                "The zestd build serving these metrics (always 1).",
            )
            .with(&[("version", env!("CARGO_PKG_VERSION"))], 1.0),
            Family::new(
                "zest_received_bytes_total",
                Kind::Counter,
                "Bytes pulls and client downloads took, by source: origin (Hub/CAS/CDN, as sent), peer (verified chunks), local (already in this cache).",
            )
            .with(&[("source", "origin")], get(&t.from_origin))
            .with(&[("source", "peer")], get(&t.from_peers))
            .with(&[("source", "local")], get(&t.from_local)),
            Family::new(
                "zest_served_bytes_total",
                Kind::Counter,
                "Verified bytes this node handed out: chunks to peers, file bytes to local clients of the endpoint.",
            )
            .with(&[("to", "peer")], get(&t.served))
            .with(&[("to", "client")], get(&t.served_to_clients)),
            Family::new(
                "zest_pulls_total",
                Kind::Counter,
                "Pulls (zestctl pull, zest.pull) that ended, by result.",
            )
            .with(&[("result", "ok")], get(&t.pulls_completed))
            .with(&[("result", "failed")], get(&t.pulls_failed))
            .with(&[("result", "cancelled")], get(&t.pulls_cancelled)),
            Family::new("zest_pulls_active", Kind::Gauge, "Pulls running now.")
                .with(&[], self.pulls.active().len() as f64),
        ];
        let h = EVENTS.pull_durations();
        out.push(Family::histogram(
            "zest_pull_duration_seconds",
            "How long pulls took, start to end, whatever their result.",
            &PULL_SECONDS_BUCKETS,
            &h.cumulative,
            h.count,
            h.sum_seconds,
        ));

        let mut peers = Family::new(
            "zest_peers",
            Kind::Gauge,
            "Peers this node knows, by state (the states of zestctl peers).",
        );
        let rows = engine.peers.as_ref().map(|p| p.rows()).unwrap_or_default();
        for state in PEER_STATES {
            let n = rows.iter().filter(|r| r.state == state).count();
            peers = peers.with(&[("state", state)], n as f64);
        }
        out.push(peers);
        out.push(
            Family::new(
                "zest_peer_bans_total",
                Kind::Counter,
                "Peers banned for sending bytes that failed their hash, or for repeated false claims.",
            )
            .with(&[], EVENTS.peer_bans() as f64),
        );
        let (mut msgs, mut bytes) = (
            Family::new(
                "zest_peer_state_messages_total",
                Kind::Counter,
                "Messages about what peers hold, by direction and kind: have (requests and replies) or watch (requests and the updates pushed).",
            ),
            Family::new(
                "zest_peer_state_bytes_total",
                Kind::Counter,
                "Bytes of those messages as framed on the wire (QUIC's own overhead not included), by direction.",
            ),
        );
        for d in Direction::ALL {
            for k in StateKind::ALL {
                let (m, b) = EVENTS.peer_state_count(d, k);
                let labels = [("direction", d.label()), ("kind", k.label())];
                msgs = msgs.with(&labels, m as f64);
                bytes = bytes.with(&labels, b as f64);
            }
        }
        out.push(msgs);
        out.push(bytes);
        let mut verify = Family::new(
            "zest_verify_failures_total",
            Kind::Counter,
            "Hash checks that failed, by where the bytes were: peer, origin, local (a cache file to reuse), file (a whole download), seeding (a cached chunk about to go to a peer).",
        );
        for s in VerifySource::ALL {
            verify = verify.with(&[("source", s.label())], EVENTS.verify_failures(s) as f64);
        }
        out.push(verify);
        let mut origin = Family::new(
            "zest_origin_requests_total",
            Kind::Counter,
            "Requests to the Hub, CAS and CDN (including ones forwarded for local clients), by HTTP status; none: no answer.",
        );
        for (status, n) in EVENTS.origin_answers() {
            origin = origin.with(&[("status", &status)], n as f64);
        }
        out.push(origin);
        let files = engine.index.files();
        out.push(
            Family::new(
                "zest_index_files",
                Kind::Gauge,
                "Complete Xet files in the index, ready to serve.",
            )
            .with(&[], files.len() as f64),
        );
        out.push(
            Family::new(
                "zest_index_bytes",
                Kind::Gauge,
                "Bytes of the complete Xet files in the index.",
            )
            .with(&[], files.iter().map(|(_, size)| *size as f64).sum()),
        );
        let mut announces = Family::new(
            "zest_announces_total",
            Kind::Counter,
            "Announces of this node's swarms, by channel and result.",
        );
        for c in AnnounceChannel::ALL {
            for (ok, result) in [(true, "ok"), (false, "failed")] {
                announces = announces.with(
                    &[("channel", c.label()), ("result", result)],
                    EVENTS.announces(c, ok) as f64,
                );
            }
        }
        out.push(announces);
        out.push(
            Family::new(
                "zest_upload_rate_limit_bytes_per_second",
                Kind::Gauge,
                "The cap on what peers may take from this node, bytes per second; 0: no cap.",
            )
            .with(&[], self.limits.upload.get().unwrap_or(0) as f64),
        );
        out.push(
            Family::new(
                "zest_download_rate_limit_bytes_per_second",
                Kind::Gauge,
                "The cap on what this node takes from peers and the origin together, bytes per second; 0: no cap.",
            )
            .with(&[], self.limits.download.get().unwrap_or(0) as f64),
        );
        out.extend(process_families());
        out
    }
}

/// The standard process families, from /proc (absent where there is none).
fn process_families() -> Vec<Family> {
    let mut out = Vec::new();
    if let Some(rss) = resident_bytes() {
        out.push(
            Family::new(
                "process_resident_memory_bytes",
                Kind::Gauge,
                "Resident memory size in bytes.",
            )
            .with(&[], rss as f64),
        );
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        out.push(
            Family::new(
                "process_open_fds",
                Kind::Gauge,
                "Number of open file descriptors.",
            )
            .with(&[], fds.count() as f64),
        );
    }
    out
}

fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let page = rustix::param::page_size() as u64;
    Some(pages * page)
}
