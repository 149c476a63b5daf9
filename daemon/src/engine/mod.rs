//! The download engine: a pull lists the repo, fetches each file it does not hold yet
//! (Xet files chunk by chunk from the CAS, other files from `resolve`), verifies every
//! byte, and writes the Hugging Face cache.
//!
//! A Xet file's download, top to bottom: `xet_file` orchestrates; `schedule` runs the
//! transfers that the pure `planner` decides on; `cdn`, `peer_fetch` and `local` fetch;
//! every verified chunk, whatever its source, enters the file through `chunk_door`;
//! `file_plan`, `file_ctx`, `trust`, `held` and `file_checks` are the shared vocabulary
//! below.

pub mod cdn;
pub mod chunk_door;
pub mod error;
pub mod file_checks;
pub mod file_ctx;
pub mod file_plan;
pub mod filter;
pub mod held;
pub mod hub_answers;
pub mod journal;
pub mod local;
pub mod origin_pace;
pub mod origin_parts;
pub mod origin_patch;
pub mod peer_fetch;
pub mod peer_views;
pub mod pieces;
pub mod plain_file;
pub mod planner;
pub mod progress;
pub mod pull;
pub mod receiving;
pub mod sched_lag;
pub mod schedule;
pub mod swarm_origin;
pub mod trust;
pub mod wanted;
pub mod xet_file;
pub mod xorb_pool;

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::index::Index;
use crate::peer::{LiveFiles, PeerSet};
use crate::totals::Totals;

pub use error::{Kind, PullError};
pub use progress::PullCounters;

/// How many origin requests are in flight at once, over all pulls (a xorb's range takes
/// several, `origin_parts`).
pub const DEFAULT_FETCH_CONCURRENCY: usize = 24;
/// How many origin ranges the downloads local clients wait on keep in flight, over all of
/// them: few, so xorbs complete (and prove) one after another while clients read the ones
/// before, instead of all together at the end.
pub const CLIENT_ORIGIN_RANGES: usize = 4;
/// How many files of one pull are worked on at once.
pub const FILE_CONCURRENCY: usize = 8;

#[derive(Clone)]
pub struct Engine {
    pub cache_dir: PathBuf,
    pub default_endpoint: String,
    /// Origin requests in flight, over all pulls: a range takes one per part it is cut
    /// into (`origin_parts`), out of [`Engine::origin_requests`].
    pub fetch_permits: Arc<Semaphore>,
    /// The size of `fetch_permits` (`fetch_concurrency`).
    pub origin_requests: usize,
    /// Origin ranges in flight for downloads local clients wait on ([`CLIENT_ORIGIN_RANGES`]).
    pub client_permits: Arc<Semaphore>,
    /// Origin ranges in flight, over all files, while peers download the same files.
    pub swarm_origin: Arc<swarm_origin::SwarmOrigin>,
    /// How fast one origin transfer brings bytes lately (what seeders are judged against).
    pub origin_pace: Arc<origin_pace::OriginPace>,
    /// Transfers this node receives now (a judged transfer's share of the link).
    pub receiving: Arc<receiving::Receiving>,
    /// Transfers this node receives from peers now, over all files: what keeps them to
    /// `planner::PEER_TRANSFERS` (files planned at the same moment may each take the last
    /// place, so it can be passed by a few).
    pub peer_transfers: Arc<receiving::Receiving>,
    /// Whether this node is short of CPU lately (then seeders are not judged on a guess).
    pub sched_lag: Arc<sched_lag::SchedLag>,
    pub totals: Arc<Totals>,
    /// Complete files in the cache, for local reuse and for serving.
    pub index: Index,
    /// Files downloading now, served to peers as their chunks verify.
    pub live: Arc<LiveFiles>,
    /// Where chunks come from besides the origin; None when peers are off.
    pub peers: Option<PeerSet>,
    /// Files pulls are about to fetch, for discovery.
    pub wanted: Arc<wanted::Wanted>,
    /// Chunk hashes of the xorbs downloads use, pooled so shared xorbs prove early.
    pub xorb_pool: Arc<xorb_pool::XorbPool>,
    /// Trackers or the DHT are on: a download with no peers yet waits briefly for them.
    pub discovering: bool,
    /// This node looks for peers itself (static peers, trackers, the DHT or mDNS): its
    /// origin ranges are cut into parts even before a peer connects (`origin_parts`).
    pub finds_peers: bool,
    /// The node's bandwidth caps (the download cap paces every transfer a pull reads).
    pub limits: Arc<crate::rate::Limits>,
    /// Hub answers kept and shared with the fleet, for when the Hub cannot answer.
    pub hub_meta: Option<Arc<crate::hubmeta::HubMeta>>,
    /// A branch may resolve to the commit the fleet saw last while the Hub cannot answer
    /// (config `allow_stale_refs`; a pull may also ask for it).
    pub allow_stale_refs: bool,
}

impl Engine {
    pub fn new(
        cache_dir: PathBuf,
        default_endpoint: String,
        fetch_concurrency: usize,
        index: Index,
        totals: Arc<Totals>,
    ) -> Self {
        Engine {
            cache_dir,
            default_endpoint,
            fetch_permits: Arc::new(Semaphore::new(fetch_concurrency.max(1))),
            origin_requests: fetch_concurrency.max(1),
            client_permits: Arc::new(Semaphore::new(CLIENT_ORIGIN_RANGES)),
            swarm_origin: Arc::default(),
            origin_pace: Arc::default(),
            receiving: Arc::default(),
            peer_transfers: Arc::default(),
            sched_lag: Arc::default(),
            totals,
            index,
            live: Arc::new(LiveFiles::default()),
            peers: None,
            wanted: Arc::default(),
            xorb_pool: Arc::default(),
            discovering: false,
            finds_peers: false,
            limits: Arc::new(crate::rate::Limits::none()),
            hub_meta: None,
            allow_stale_refs: false,
        }
    }

    /// Whether what this node fetches can go onward: it has a peer now, or looks for them.
    pub fn trades(&self) -> bool {
        self.finds_peers || self.peers.as_ref().is_some_and(|s| s.connected_count() > 0)
    }
}
