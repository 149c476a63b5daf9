//! The download engine: a pull lists the repo, fetches each file it does not hold yet
//! (Xet files chunk by chunk from the CAS, other files from `resolve`), verifies every
//! byte, and writes the Hugging Face cache.
//!
//! Chunk data reaches a file only through `xet_file::fetch_group`'s sink, which hashes each
//! chunk; a second source of chunks (peers) plugs in there, beside the CDN.

pub mod error;
pub mod filter;
pub mod journal;
pub mod plain_file;
pub mod progress;
pub mod pull;
pub mod xet_file;

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::Semaphore;

pub use error::{Kind, PullError};
pub use progress::{PullCounters, Totals};

/// How many xorb ranges are fetched at once, over all pulls.
pub const DEFAULT_FETCH_CONCURRENCY: usize = 24;
/// How many files of one pull are worked on at once.
pub const FILE_CONCURRENCY: usize = 8;

#[derive(Clone)]
pub struct Engine {
    pub cache_dir: PathBuf,
    pub default_endpoint: String,
    pub fetch_permits: Arc<Semaphore>,
    pub totals: Arc<Totals>,
}

impl Engine {
    pub fn new(cache_dir: PathBuf, default_endpoint: String, fetch_concurrency: usize) -> Self {
        Engine {
            cache_dir,
            default_endpoint,
            fetch_permits: Arc::new(Semaphore::new(fetch_concurrency.max(1))),
            totals: Arc::new(Totals::default()),
        }
    }
}
