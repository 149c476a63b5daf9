//! Discovery: how daemons find each other. Every source (BitTorrent trackers, the Mainline
//! DHT, mDNS on the LAN) feeds the one [`PeerSet`] through [`PeerSet::add`].
//!
//! [`plan`] decides what is announced where (passive seeding of everything in the index,
//! plus what pulls are fetching now), under which swarm key; the source tasks only diff
//! that plan against what they announced last. The policy (docs/PROTOCOL.md, "Fleets"):
//! private or gated content is announced only on fleet channels, under fleet keys.

pub mod bencode;
pub mod dht;
pub mod mdns;
pub mod plan;
pub mod swarm;
pub mod tracker;
pub mod tracker_wire;
pub mod udp_tracker;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Result;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::engine::wanted::Wanted;
use crate::index::Index;
use crate::peer::PeerSet;

pub use plan::{Channel, Plan, Plans};

/// What the daemon was told to use.
#[derive(Clone, Debug, Default)]
pub struct DiscoveryConfig {
    pub trackers: Vec<String>,
    pub private_trackers: Vec<String>,
    pub dht: bool,
    pub dht_bootstrap: Vec<String>,
    pub dht_port: Option<u16>,
    pub mdns: bool,
    pub seed_public: bool,
}

/// The running discovery tasks; [`Discovery::stop`] withdraws announcements.
pub struct Discovery {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    mdns: Option<mdns::Lan>,
}

impl Discovery {
    pub async fn start(
        cfg: &DiscoveryConfig,
        set: &PeerSet,
        listen: SocketAddr,
        index: Index,
        wanted: Arc<Wanted>,
    ) -> Result<Self> {
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let plans = plan::Planner {
            index,
            wanted: wanted.clone(),
            fleet: set.fleet_key().cloned(),
            seed_public: cfg.seed_public,
        }
        .spawn(&mut tasks, stop_rx.clone());
        let peer_id = tracker_wire::peer_id();
        for (url, channel) in cfg
            .trackers
            .iter()
            .map(|u| (u, Channel::Public))
            .chain(cfg.private_trackers.iter().map(|u| (u, Channel::Fleet)))
        {
            let t = tracker::Tracker::new(
                url,
                channel,
                set.clone(),
                peer_id,
                listen.port(),
                wanted.clone(),
            )?;
            tracing::info!(tracker = url, ?channel, "announcing to tracker");
            tasks.spawn(t.run(plans.clone(), stop_rx.clone()));
        }
        if cfg.dht {
            let node = dht::start(&cfg.dht_bootstrap, cfg.dht_port, listen.ip()).await?;
            tasks.spawn(dht::run(
                node,
                wanted.clone(),
                set.clone(),
                listen.port(),
                plans.clone(),
                stop_rx.clone(),
            ));
        }
        let mdns = if cfg.mdns {
            match mdns::Lan::start(listen, set) {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!("LAN discovery (mDNS) is off: {e:#}");
                    None
                }
            }
        } else {
            None
        };
        Ok(Discovery { stop, tasks, mdns })
    }

    /// Tells trackers we are leaving (bounded in time) and leaves the LAN.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(m) = self.mdns.take() {
            m.stop();
        }
        let _ = tokio::time::timeout(std::time::Duration::from_secs(3), async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
    }
}
