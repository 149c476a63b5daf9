//! The BitTorrent Mainline DHT (BEP 5, through the `mainline` crate): `announce_peer` for
//! every public swarm key in the plan, `get_peers` while a file downloads. Opt-in: joining
//! tells the whole DHT this machine's address and what it holds. Only public content is
//! ever put on the DHT; there is no withdrawal in BEP 5, so a key that leaves the plan is
//! simply not re-announced and expires from the DHT.

use crate::metrics::{AnnounceChannel, EVENTS};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures_util::StreamExt;
use mainline::async_dht::AsyncDht;
use mainline::{Dht, Id};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::plan::{Channel, Plans};
use super::swarm::SwarmKey;
use crate::peer::{Origin, PeerSet};

/// DHT nodes forget announced peers after about 30 minutes (BEP 5 leaves it to them).
const REANNOUNCE: Duration = Duration::from_secs(15 * 60);
/// While a file downloads, look for new peers this often: after 1 s, 2 s, 4 s, then
/// every 5 s. A flash crowd starts within a second or so, and its members have announced
/// by the first follow-up; later arrivals find us through their own lookups.
const LOOKUP: Duration = Duration::from_secs(5);
const FIRST_FOLLOW_UP: Duration = Duration::from_secs(1);
/// Keys with a DHT operation in flight.
const PARALLEL: usize = 16;

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

#[derive(Default)]
struct Entry {
    announced: Option<Instant>,
    looked_up: Option<Instant>,
    lookups: u32,
    /// A job for this key is running.
    busy: bool,
}

impl Entry {
    fn lookup_due(&self, now: Instant) -> bool {
        let every = FIRST_FOLLOW_UP
            .saturating_mul(1 << self.lookups.saturating_sub(1).min(8))
            .min(LOOKUP);
        self.looked_up.is_none_or(|t| now - t >= every)
    }
}

/// What one job did for its key.
struct Done {
    key: SwarmKey,
    announced: bool,
    looked_up: bool,
    first_lookup: bool,
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
    // Each key is handled on its own, so a slow lookup (the DHT waits out unresponsive
    // nodes) never holds back a new download's first lookup.
    let mut jobs: JoinSet<Done> = JoinSet::new();
    let mut job_keys: HashMap<tokio::task::Id, SwarmKey> = HashMap::new();
    loop {
        let plan = plans.borrow_and_update().clone();
        let plan = plan.get(Channel::Public);
        state.retain(|k, e| e.busy || plan.contains_key(k));
        let now = Instant::now();
        let mut due: Vec<(SwarmKey, bool, bool, bool)> = Vec::new();
        for (k, left) in plan {
            let e = state.entry(*k).or_default();
            if e.busy {
                continue;
            }
            let announce = e.announced.is_none_or(|t| now - t >= REANNOUNCE);
            let lookup = *left > 0 && e.lookup_due(now);
            if announce || lookup {
                due.push((*k, announce, lookup, e.announced.is_some()));
            }
        }
        // Downloads first, then swarms never announced.
        due.sort_by_key(|(_, announce, lookup, was_announced)| {
            (!lookup, *was_announced, !announce)
        });
        for (k, announce, lookup, _) in due.into_iter().take(PARALLEL.saturating_sub(jobs.len())) {
            let Ok(id) = Id::from_bytes(k.0) else {
                continue;
            };
            let e = state.entry(k).or_default();
            e.busy = true;
            let first_lookup = lookup && e.looked_up.is_none();
            let (dht, set) = (dht.clone(), set.clone());
            let job = jobs.spawn(async move {
                // The lookup and our announcement run together: a download acts on
                // peers as they stream in, and a crowd that starts at the same moment
                // is announced by the time its members look again.
                let lookup_fut = async {
                    if lookup {
                        get_peers(&dht, id, &set).await;
                    }
                };
                let announce_fut = async {
                    if !announce {
                        return false;
                    }
                    let ok = match dht.announce_peer(id, Some(port)).await {
                        Ok(_) => true,
                        Err(e) => {
                            tracing::debug!(swarm = %k, "DHT announce failed: {e}");
                            false
                        }
                    };
                    EVENTS.announced(AnnounceChannel::Dht, ok);
                    ok
                };
                let ((), announced) = tokio::join!(lookup_fut, announce_fut);
                Done {
                    key: k,
                    announced,
                    looked_up: lookup,
                    first_lookup,
                }
            });
            job_keys.insert(job.id(), k);
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = plans.changed() => {}
            Some(done) = jobs.join_next_with_id(), if !jobs.is_empty() => {
                let done = match done {
                    Ok((id, done)) => {
                        job_keys.remove(&id);
                        done
                    }
                    Err(e) => {
                        // Free the key so it is tried again.
                        if let Some(k) = job_keys.remove(&e.id())
                            && let Some(entry) = state.get_mut(&k)
                        {
                            entry.busy = false;
                        }
                        tracing::warn!("a DHT job failed: {e}");
                        continue;
                    }
                };
                let now = Instant::now();
                if let Some(e) = state.get_mut(&done.key) {
                    e.busy = false;
                    if done.announced {
                        e.announced = Some(now);
                        tracing::debug!(swarm = %done.key, "announced on the DHT");
                    }
                    if done.looked_up {
                        e.looked_up = Some(now);
                        e.lookups = e.lookups.saturating_add(1);
                    }
                }
                if done.first_lookup {
                    wanted.note_answered();
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}

/// Adds every peer the DHT knows for `id` to the peer set.
async fn get_peers(dht: &AsyncDht, id: Id, set: &PeerSet) {
    let mut s = dht.get_peers(id);
    while let Some(peers) = s.next().await {
        for p in peers {
            set.add(SocketAddr::V4(p), Origin::Discovered("dht".into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_follow_up_fast_then_settle() {
        let t0 = Instant::now();
        let mut e = Entry::default();
        assert!(e.lookup_due(t0), "a new download looks at once");
        let mut gaps = Vec::new();
        for _ in 0..6 {
            e.looked_up = Some(t0);
            e.lookups += 1;
            let gap = (1..=10)
                .map(Duration::from_secs)
                .find(|d| e.lookup_due(t0 + *d))
                .expect("due within 10 s");
            gaps.push(gap.as_secs());
        }
        assert_eq!(gaps, [1, 2, 4, 5, 5, 5]);
    }
}
