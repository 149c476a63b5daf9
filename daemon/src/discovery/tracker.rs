//! A BitTorrent tracker client, HTTP (BEP 3 announce, BEP 23 compact replies) or UDP
//! (BEP 15, [`super::udp_tracker`]): announces the plan's swarm keys with `started` /
//! `completed` / `stopped`, honours the tracker's `interval`, and hands the peers it
//! returns to the peer set.

use crate::metrics::{AnnounceChannel, EVENTS};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures_util::StreamExt;
use tokio::sync::watch;

use super::bencode::{self, Value};
use super::plan::{Channel, Plans};
use super::swarm::{SwarmKey, url_encode};
use super::tracker_wire::{Event, Reply, TrackerError, compact_v4, compact_v6, dialable};
use crate::peer::{Origin, PeerSet};

/// Used until the tracker names its own interval.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(1800);
/// Never announce a key more often than this, whatever the tracker says.
const FLOOR_INTERVAL: Duration = Duration::from_secs(30);
/// While a file downloads, ask for new peers this often (bounded by `min interval`).
const DOWNLOADING_INTERVAL: Duration = Duration::from_secs(30);
/// Announces in flight to one tracker.
const PARALLEL: usize = 8;
/// Announces started per pass, so a huge cache is announced in a steady stream.
const PER_PASS: usize = 64;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
const NUMWANT: u32 = 50;
/// Bytes of a reply read at most.
const MAX_REPLY: usize = 256 * 1024;

pub fn parse_reply(body: &[u8]) -> Result<Reply, TrackerError> {
    let (v, rest) = bencode::decode_first(body).map_err(|e| TrackerError::Reply(e.to_string()))?;
    if rest > 0 {
        tracing::debug!(
            bytes = rest,
            "tracker reply has bytes after its value; ignored"
        );
    }
    if let Some(f) = v.get("failure reason").and_then(Value::bytes) {
        return Err(TrackerError::Failure(String::from_utf8_lossy(f).into()));
    }
    let secs = |k: &str| {
        v.get(k)
            .and_then(Value::int)
            .filter(|s| *s > 0)
            .map(|s| Duration::from_secs(s as u64))
    };
    let mut peers = Vec::new();
    match v.get("peers") {
        Some(Value::Bytes(b)) => peers.extend(compact_v4(b)),
        // The original, non-compact form: a list of dicts.
        Some(Value::List(l)) => {
            for p in l {
                let ip = p
                    .get("ip")
                    .and_then(Value::bytes)
                    .and_then(|b| std::str::from_utf8(b).ok())
                    .and_then(|s| s.parse::<std::net::IpAddr>().ok());
                let port = p.get("port").and_then(Value::int);
                if let (Some(ip), Some(port)) = (ip, port.and_then(|p| u16::try_from(p).ok()))
                    && dialable(&SocketAddr::new(ip, port))
                {
                    peers.push(SocketAddr::new(ip, port));
                }
            }
        }
        _ => {}
    }
    if let Some(b) = v.get("peers6").and_then(Value::bytes) {
        peers.extend(compact_v6(b));
    }
    let count = |k: &str| {
        v.get(k)
            .and_then(Value::int)
            .and_then(|n| usize::try_from(n).ok())
    };
    // BEP 3 (as trackers extend it): `complete` seeders, `incomplete` leechers.
    let swarm = match (count("complete"), count("incomplete")) {
        (None, None) => None,
        (c, i) => Some(c.unwrap_or(0).saturating_add(i.unwrap_or(0))),
    };
    Ok(Reply {
        interval: secs("interval"),
        min_interval: secs("min interval"),
        peers,
        swarm,
    })
}

/// What was last said to the tracker about one key.
struct Announced {
    left: u64,
    next: Instant,
    /// The tracker accepted a `started` for it.
    acked: bool,
}

enum Transport {
    Http(reqwest::Client),
    Udp(super::udp_tracker::UdpTracker),
}

pub struct Tracker {
    url: String,
    wanted: Arc<crate::engine::wanted::Wanted>,
    channel: Channel,
    set: PeerSet,
    peer_id: [u8; 20],
    port: u16,
    transport: Transport,
}

impl Tracker {
    pub fn new(
        url: &str,
        channel: Channel,
        set: PeerSet,
        peer_id: [u8; 20],
        port: u16,
        wanted: Arc<crate::engine::wanted::Wanted>,
    ) -> Result<Self> {
        let parsed = reqwest::Url::parse(url).with_context(|| format!("tracker URL {url:?}"))?;
        let transport = match parsed.scheme() {
            "http" | "https" => Transport::Http(
                reqwest::Client::builder()
                    .timeout(REQUEST_TIMEOUT)
                    .user_agent(concat!("zestd/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .context("HTTP client for trackers")?,
            ),
            "udp" => Transport::Udp(
                super::udp_tracker::UdpTracker::new(url).map_err(anyhow::Error::msg)?,
            ),
            _ => anyhow::bail!(
                "tracker URL {url:?}: only http://, https:// and udp:// trackers are supported"
            ),
        };
        Ok(Tracker {
            url: url.to_string(),
            wanted,
            channel,
            set,
            peer_id,
            port,
            transport,
        })
    }

    pub fn announce_url(&self, key: &SwarmKey, left: u64, event: Event) -> String {
        let sep = if self.url.contains('?') { '&' } else { '?' };
        let mut u = format!(
            "{}{sep}info_hash={}&peer_id={}&port={}&uploaded=0&downloaded=0&left={left}&compact=1&numwant={}",
            self.url,
            key.url_encoded(),
            url_encode(&self.peer_id),
            self.port,
            if event == Event::Stopped { 0 } else { NUMWANT },
        );
        if let Some(e) = event.param() {
            u.push_str("&event=");
            u.push_str(e);
        }
        u
    }

    pub async fn announce(
        &self,
        key: &SwarmKey,
        left: u64,
        event: Event,
    ) -> Result<Reply, TrackerError> {
        let http = match &self.transport {
            Transport::Http(c) => c,
            Transport::Udp(u) => {
                return u
                    .announce(&super::udp_tracker::Announce {
                        key,
                        peer_id: &self.peer_id,
                        left,
                        event,
                        num_want: if event == Event::Stopped { 0 } else { NUMWANT },
                        port: self.port,
                    })
                    .await;
            }
        };
        let resp = http
            .get(self.announce_url(key, left, event))
            .send()
            .await
            .map_err(|e| TrackerError::Http(e.without_url().to_string()))?;
        if !resp.status().is_success() {
            return Err(TrackerError::Status(resp.status().as_u16()));
        }
        let mut body = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(part) = stream.next().await {
            let part = part.map_err(|e| TrackerError::Http(e.without_url().to_string()))?;
            if body.len() + part.len() > MAX_REPLY {
                return Err(TrackerError::Reply("reply too large".into()));
            }
            body.extend_from_slice(&part);
        }
        parse_reply(&body)
    }

    /// Announces the plan for this tracker's channel until `stop`, then says `stopped`
    /// for everything it announced.
    pub async fn run(
        self,
        mut plans: watch::Receiver<Arc<Plans>>,
        mut stop: watch::Receiver<bool>,
    ) {
        let me = Arc::new(self);
        let mut state: HashMap<SwarmKey, Announced> = HashMap::new();
        let mut interval = DEFAULT_INTERVAL;
        let mut min_interval = FLOOR_INTERVAL;
        let mut failing = false;
        loop {
            let all = plans.borrow_and_update().clone();
            let plan = all.get(me.channel);
            let now = Instant::now();
            let mut jobs: Vec<(SwarmKey, u64, Event)> = Vec::new();
            for (k, left) in plan {
                match state.get(k) {
                    None => jobs.push((*k, *left, Event::Started)),
                    Some(a) if a.acked && a.left > 0 && *left == 0 => {
                        jobs.push((*k, 0, Event::Completed))
                    }
                    Some(a) if now >= a.next => {
                        let ev = if a.acked { Event::None } else { Event::Started };
                        jobs.push((*k, *left, ev))
                    }
                    _ => {}
                }
            }
            for (k, a) in &state {
                if !plan.contains_key(k) {
                    jobs.push((*k, a.left, Event::Stopped));
                }
            }
            // Withdrawals and new swarms first; then the rest in key order.
            jobs.sort_by_key(|(k, _, e)| (*e == Event::None, *k));
            jobs.truncate(PER_PASS);
            let answers_new = jobs.iter().any(|(_, _, e)| *e == Event::Started);
            let results: Vec<_> = futures_util::stream::iter(jobs)
                .map(|(k, left, ev)| {
                    let me = me.clone();
                    async move { (k, left, ev, me.announce(&k, left, ev).await) }
                })
                .buffer_unordered(PARALLEL)
                .collect()
                .await;
            let counted = match me.channel {
                Channel::Public => AnnounceChannel::Tracker,
                Channel::Fleet => AnnounceChannel::FleetTracker,
            };
            for (k, left, ev, r) in results {
                EVENTS.announced(counted, r.is_ok());
                match r {
                    Ok(reply) => {
                        if failing {
                            tracing::info!(tracker = me.url, "tracker reachable again");
                            failing = false;
                        }
                        interval = reply.interval.unwrap_or(interval).max(FLOOR_INTERVAL);
                        min_interval = reply.min_interval.unwrap_or(min_interval);
                        if ev == Event::Stopped {
                            state.remove(&k);
                            continue;
                        }
                        let every = if left > 0 {
                            DOWNLOADING_INTERVAL.max(min_interval).min(interval)
                        } else {
                            interval
                        };
                        state.insert(
                            k,
                            Announced {
                                left,
                                next: Instant::now() + jitter(every),
                                acked: true,
                            },
                        );
                        tracing::debug!(tracker = me.url, swarm = %k, ?ev, peers = reply.peers.len(), counted = ?reply.swarm, "announced");
                        if let (Some(n), Some(file)) = (reply.swarm, all.downloading.get(&k)) {
                            me.wanted.note_swarm(file, n);
                        }
                        for p in reply.peers {
                            me.set.add(p, Origin::Discovered("tracker".into()));
                        }
                    }
                    Err(e) => {
                        if !failing {
                            tracing::warn!(tracker = me.url, "announce failed: {e}");
                            failing = true;
                        } else {
                            tracing::debug!(tracker = me.url, "announce failed: {e}");
                        }
                        if ev == Event::Stopped {
                            state.remove(&k);
                        } else {
                            // Retry later; a key never acknowledged is retried as `started`.
                            let retry = Instant::now() + jitter(FLOOR_INTERVAL);
                            match state.get_mut(&k) {
                                Some(a) => a.next = retry,
                                None if ev == Event::Started => {
                                    let acked = false;
                                    state.insert(
                                        k,
                                        Announced {
                                            left,
                                            next: retry,
                                            acked,
                                        },
                                    );
                                }
                                None => {}
                            }
                        }
                    }
                }
            }
            if answers_new {
                me.wanted.note_answered();
            }
            tokio::select! {
                _ = stop.changed() => break,
                _ = plans.changed() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        // Leaving: withdraw everything, in parallel, bounded by the caller's timeout.
        let keys: Vec<(SwarmKey, u64)> = state
            .iter()
            .filter(|(_, a)| a.acked)
            .map(|(k, a)| (*k, a.left))
            .collect();
        futures_util::stream::iter(keys)
            .map(|(k, left)| {
                let me = me.clone();
                async move {
                    let _ = me.announce(&k, left, Event::Stopped).await;
                }
            })
            .buffer_unordered(PARALLEL)
            .collect::<Vec<()>>()
            .await;
    }
}

fn jitter(d: Duration) -> Duration {
    d.mul_f64(0.9 + rand::random::<f64>() * 0.2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::tracker_wire::peer_id;

    #[test]
    fn compact_and_dict_replies_and_failures() {
        let mut r = b"d8:intervali900e5:peers12:".to_vec();
        r.extend_from_slice(&[127, 0, 0, 1, 0x12, 0x8b, 10, 0, 0, 2, 0, 0]);
        r.extend_from_slice(b"e");
        let reply = parse_reply(&r).unwrap();
        assert_eq!(reply.interval, Some(Duration::from_secs(900)));
        assert_eq!(reply.swarm, None, "no counts, no size");
        let counted = b"d8:completei3e10:incompletei997e8:intervali900e5:peers0:e";
        assert_eq!(parse_reply(counted).unwrap().swarm, Some(1000));
        assert_eq!(
            reply.peers,
            vec!["127.0.0.1:4747".parse().unwrap()],
            "port 0 dropped"
        );

        let dict = b"d5:peersld2:ip9:127.0.0.14:porti4748eeee";
        assert_eq!(
            parse_reply(dict).unwrap().peers,
            vec!["127.0.0.1:4748".parse().unwrap()]
        );
        let fail = b"d14:failure reason14:not authorizede";
        assert!(
            matches!(parse_reply(fail), Err(TrackerError::Failure(m)) if m == "not authorized")
        );
        assert!(parse_reply(b"<html>").is_err());
        // What real trackers append after the value (a CRLF, a newline, more) is ignored.
        for tail in [&b"\r\n"[..], b"\n", b"\r\n\r\n<!-- -->"] {
            let mut with = r.clone();
            with.extend_from_slice(tail);
            assert_eq!(parse_reply(&with).unwrap().peers, reply.peers);
        }
        let id = peer_id();
        assert!(id.starts_with(b"-ZS0100-"));
    }
}
