//! The BitTorrent Mainline DHT (BEP 5, through the `mainline` crate): `announce_peer` for
//! every public swarm key in the plan, `get_peers` while a file downloads. Opt-in: joining
//! tells the whole DHT this machine's address and what it holds. Only public content is
//! ever put on the DHT; there is no withdrawal in BEP 5, so a key that leaves the plan is
//! simply not re-announced and expires from the DHT.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures_util::StreamExt;
use mainline::async_dht::AsyncDht;
use mainline::{Dht, Id};
use tokio::sync::watch;

use super::plan::{Channel, Plans};
use super::swarm::SwarmKey;
use crate::peer::{Origin, PeerSet};

/// DHT nodes forget announced peers after about 30 minutes (BEP 5 leaves it to them).
const REANNOUNCE: Duration = Duration::from_secs(15 * 60);
/// While a file downloads, look for new peers this often.
const LOOKUP: Duration = Duration::from_secs(5);
/// DHT operations in flight.
const PARALLEL: usize = 4;
const PER_PASS: usize = 32;

/// Joins the DHT: through `bootstrap` (HOST:PORT) if given, else the public bootstrap nodes.
pub async fn start(
    bootstrap: &[String],
    port: Option<u16>,
    listen: std::net::IpAddr,
) -> Result<AsyncDht> {
    let mut b = Dht::builder();
    // On the same interface as the peer endpoint, when that is one address.
    if let std::net::IpAddr::V4(ip) = listen
        && !ip.is_unspecified()
    {
        b.bind_address(ip);
    }
    if !bootstrap.is_empty() {
        b.bootstrap(bootstrap);
    }
    if let Some(p) = port {
        b.port(p);
    }
    let dht = b.build().context("starting the DHT node")?.as_async();
    tracing::info!(
        addr = %dht.info().await.local_addr(),
        bootstrap = if bootstrap.is_empty() { "public".to_string() } else { bootstrap.join(",") },
        "joined the Mainline DHT"
    );
    Ok(dht)
}

struct Entry {
    announced: Option<Instant>,
    looked_up: Option<Instant>,
}

pub async fn run(
    dht: AsyncDht,
    wanted: Arc<crate::engine::wanted::Wanted>,
    set: PeerSet,
    port: u16,
    mut plans: watch::Receiver<Arc<Plans>>,
    mut stop: watch::Receiver<bool>,
) {
    let dht = Arc::new(dht);
    let mut state: HashMap<SwarmKey, Entry> = HashMap::new();
    loop {
        let plan = plans.borrow_and_update().clone();
        let plan = plan.get(Channel::Public);
        state.retain(|k, _| plan.contains_key(k));
        let now = Instant::now();
        let mut jobs: Vec<(SwarmKey, bool, bool)> = Vec::new();
        for (k, left) in plan {
            let e = state.entry(*k).or_insert(Entry {
                announced: None,
                looked_up: None,
            });
            let announce = e.announced.is_none_or(|t| now - t >= REANNOUNCE);
            let lookup = *left > 0 && e.looked_up.is_none_or(|t| now - t >= LOOKUP);
            if announce || lookup {
                jobs.push((*k, announce, lookup));
            }
        }
        // New swarms and lookups for downloads first.
        jobs.sort_by_key(|(k, announce, lookup)| {
            (
                state.get(k).is_some_and(|e| e.announced.is_some()),
                !lookup,
                !announce,
            )
        });
        jobs.truncate(PER_PASS);
        let new_lookups = jobs
            .iter()
            .any(|(k, _, lookup)| *lookup && state.get(k).is_some_and(|e| e.looked_up.is_none()));
        let done: Vec<(SwarmKey, bool, bool)> = futures_util::stream::iter(jobs)
            .map(|(k, announce, lookup)| {
                let (dht, set) = (dht.clone(), set.clone());
                async move {
                    let id = Id::from_bytes(k.0).ok();
                    let Some(id) = id else {
                        return (k, false, false);
                    };
                    // Looking up first: a download waits on what it finds, while our
                    // own announcement helps only those who come later.
                    if lookup {
                        let mut s = dht.get_peers(id);
                        while let Some(peers) = s.next().await {
                            for p in peers {
                                set.add(SocketAddr::V4(p), Origin::Discovered("dht".into()));
                            }
                        }
                    }
                    let mut ok = false;
                    if announce {
                        match dht.announce_peer(id, Some(port)).await {
                            Ok(_) => ok = true,
                            Err(e) => tracing::debug!(swarm = %k, "DHT announce failed: {e}"),
                        }
                    }
                    (k, announce && ok, lookup)
                }
            })
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        let now = Instant::now();
        for (k, announced, looked_up) in done {
            if let Some(e) = state.get_mut(&k) {
                if announced {
                    e.announced = Some(now);
                    tracing::debug!(swarm = %k, "announced on the DHT");
                }
                if looked_up {
                    e.looked_up = Some(now);
                }
            }
        }
        if new_lookups {
            wanted.note_answered();
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = plans.changed() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
