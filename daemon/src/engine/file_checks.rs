//! One Xet file to download, and the end-to-end checks a finished file must pass before it
//! may be moved into the cache: its chunks must hash to the Hub's Xet hash and, when the
//! Hub gave one, its bytes to the LFS sha256.

use crate::metrics::{EVENTS, VerifySource};
use std::fs::File;
use std::path::PathBuf;

use xet::XetHash;

use super::error::{Kind, PullError};

pub struct XetFileJob {
    pub xet_hash: XetHash,
    pub size: u64,
    /// The LFS sha256, checked too when known.
    pub sha256: Option<String>,
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

/// Reads the partial file back and checks it against the LFS sha256, if the Hub gave one.
pub async fn check_sha256(job: &XetFileJob) -> Result<(), PullError> {
    let Some(expected) = &job.sha256 else {
        return Ok(());
    };
    let path = job.partial.clone();
    let got = tokio::task::spawn_blocking(move || sha256_file(&path))
        .await
        .map_err(|e| PullError::new(Kind::Internal, e.to_string()))?
        .map_err(|e| PullError::disk("reading back the download", &e))?;
    sha256_matches(job, expected, &got)
}

/// A wrong sha256 after every chunk verified means the journal cannot be trusted either.
pub fn sha256_matches(job: &XetFileJob, expected: &str, got: &str) -> Result<(), PullError> {
    if !got.eq_ignore_ascii_case(expected) {
        EVENTS.verify_failed(VerifySource::File);
        let _ = std::fs::remove_file(&job.journal);
        return Err(PullError::integrity(format!(
            "{}: sha256 {got} does not match the Hub's {expected}",
            job.name
        )));
    }
    Ok(())
}

pub fn sha256_file(path: &std::path::Path) -> std::io::Result<String> {
    use sha2::Digest;
    use std::io::Read;
    let mut f = File::open(path)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}
