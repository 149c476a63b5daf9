//! Everything the parts of one Xet file's download share: the open partial file, its live
//! chunk table, its journal and counters, and its layout.

use std::fs::File;
use std::sync::{Arc, Mutex};

use tokio::sync::Mutex as AsyncMutex;
use xet::XetHash;
use xet::reconstruction::Reconstruction;
use xet::remote::CasClient;

use super::Engine;
use super::file_plan::{Group, PlacedTerm, term_ranges};
use super::journal::Journal;
use super::progress::PullCounters;
use super::trust::{Trust, TrustedChunk};
use crate::peer::LiveFile;

pub struct FileCtx {
    pub engine: Engine,
    pub cas: Arc<CasClient>,
    pub hash: XetHash,
    pub size: u64,
    pub name: String,
    pub file: Arc<File>,
    pub live: Arc<LiveFile>,
    pub journal: Mutex<Journal>,
    pub counters: Arc<PullCounters>,
    pub terms: Vec<PlacedTerm>,
    /// The latest reconstruction: its signed URLs are replaced when they expire.
    pub recon: AsyncMutex<Arc<Reconstruction>>,
    /// Chunk hashes proven so far, what peers' chunks are checked against.
    pub trust: Trust,
    /// A local client waits on this download (see `XetFileJob::for_client`).
    pub for_client: bool,
}

impl FileCtx {
    /// Takes proven chunk hashes: peers' chunks are checked against them from now on, and
    /// chunks already on disk with these hashes count as proven.
    pub fn learn(&self, entries: Vec<(u32, TrustedChunk)>) {
        self.live
            .know(entries.iter().map(|(i, t)| (*i, t.hash, t.size)));
        self.live.prove(
            entries
                .iter()
                .map(|(i, t)| (*i, t.hash))
                .collect::<Vec<_>>(),
        );
        self.trust.fill(entries);
    }

    /// File chunk ranges of a group's terms, sorted and merged.
    pub fn group_ranges(&self, g: &Group) -> Vec<(u32, u32)> {
        term_ranges(&self.terms, &g.terms)
    }
}
