//! One Xet file to download, and the end-to-end check a finished file must pass before it
//! may be moved into the cache: its chunks, in order, must hash to the Hub's Xet hash.
//!
//! That check is complete without reading the file back: every chunk's bytes were hashed
//! before they were written (received, copied from a local file, or re-read on resume),
//! and the Xet hash is a Merkle root over those chunk hashes and sizes, so a match proves
//! the file holds exactly the bytes the Hub stored. The LFS sha256 comes from the same
//! Hub answer as the Xet hash (the tree listing, or the HEAD of `resolve`), so checking it
//! too would add no second authority, only a second pass over every byte (a fifth of the
//! daemon's CPU in a cold pull). huggingface_hub and hf_xet check neither. Files without a
//! Xet hash are checked against their sha256 while they stream (`plain_file`).

use crate::metrics::{EVENTS, VerifySource};
use std::path::PathBuf;

use xet::XetHash;

use super::error::PullError;

pub struct XetFileJob {
    pub xet_hash: XetHash,
    pub size: u64,
    pub partial: PathBuf,
    pub journal: PathBuf,
    pub name: String,
    /// From a private or gated repo: only fleet peers are asked for it or served it.
    pub private: bool,
    /// A local client waits on this download: its origin ranges come few at a time, from
    /// the node's client permits, in file order (the last range early), so its xorbs
    /// complete and prove one after another while the client reads.
    pub for_client: bool,
}

pub fn check_file_hash(job: &XetFileJob, chunks: &[(XetHash, u64)]) -> Result<(), PullError> {
    let got = xet::merkle::file_hash(chunks);
    if got != job.xet_hash {
        EVENTS.verify_failed(VerifySource::File);
        return Err(PullError::integrity(format!(
            "{}: the chunks hash to {got}, not to the Hub's Xet hash {}",
            job.name, job.xet_hash
        )));
    }
    let size: u64 = chunks.iter().map(|c| c.1).sum();
    if size != job.size {
        return Err(PullError::integrity(format!(
            "{}: {size} bytes, expected {}",
            job.name, job.size
        )));
    }
    Ok(())
}
