//! Files that are not in Xet come straight from `resolve`, checked against their git blob
//! id (or LFS sha256) before they count.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering;

use sha1::Digest as _;
use xet::remote::deadline::{BodyWatch, Budget};
use xet::remote::{HubClient, RepoRef};

use super::error::{Kind, PullError};
use super::progress::PullCounters;

pub struct PlainJob<'a> {
    pub repo: &'a RepoRef,
    pub commit: &'a str,
    pub path: &'a str,
    pub size: u64,
    /// Git blob id of the content (non-LFS files).
    pub blob_id: &'a str,
    /// sha256 of the content (LFS files).
    pub lfs_sha256: Option<&'a str>,
}

pub async fn download(
    hub: &HubClient,
    job: &PlainJob<'_>,
    dest: &Path,
    counters: &PullCounters,
) -> Result<(), PullError> {
    let mut attempt = 0u32;
    let policy = xet::remote::RetryPolicy::default();
    let budget = Budget::start(hub.deadlines());
    loop {
        attempt += 1;
        let result = match hub.get_file(job.repo, job.commit, job.path, 0).await {
            Ok(resp) => receive(resp, hub, job, dest, counters).await,
            // What `get_file` did not retry itself (a connection that failed, a 5xx without
            // `Retry-After`) is retried below; what it did, or what cannot change, is final.
            Err(e) if !e.is_transient() => return Err(e.into()),
            Err(e) => Err(e.into()),
        };
        match result {
            Ok(()) => return Ok(()),
            Err(e)
                if e.kind == Kind::Network
                    && attempt < policy.max_attempts
                    && budget.allows(policy.delay(attempt)) =>
            {
                tracing::debug!(path = job.path, attempt, "retrying: {e}");
                tokio::time::sleep(policy.delay(attempt)).await;
            }
            Err(e) if e.kind == Kind::Network && attempt > 1 => {
                return Err(e.context(&format!(
                    "gave up after {attempt} attempts in {} s",
                    budget.elapsed().as_secs()
                )));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Streams one answer's body into `dest`, checking its length and hash.
async fn receive(
    mut resp: reqwest::Response,
    hub: &HubClient,
    job: &PlainJob<'_>,
    dest: &Path,
    counters: &PullCounters,
) -> Result<(), PullError> {
    let mut out = std::io::BufWriter::with_capacity(
        1 << 20,
        std::fs::File::create(dest).map_err(|e| PullError::disk("creating a download file", &e))?,
    );
    let mut sha1 = sha1::Sha1::new();
    sha1.update(format!("blob {}\0", job.size).as_bytes());
    let mut sha256 = sha2::Sha256::new();
    let mut got = 0u64;
    let mut watch = BodyWatch::new(hub.deadlines());
    loop {
        let chunk = match watch.next(&mut resp).await {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e) => return Err(PullError::new(Kind::Network, format!("{}: {e}", job.path))),
        };
        got += chunk.len() as u64;
        if got > job.size {
            return Err(PullError::integrity(format!(
                "{}: more than the {} bytes listed",
                job.path, job.size
            )));
        }
        sha1.update(&chunk);
        if job.lfs_sha256.is_some() {
            sha2::Digest::update(&mut sha256, &chunk);
        }
        out.write_all(&chunk)
            .map_err(|e| PullError::disk("writing a download", &e))?;
        counters.add_origin(chunk.len() as u64);
        hub.pace(chunk.len() as u64).await;
    }
    out.flush()
        .map_err(|e| PullError::disk("writing a download", &e))?;
    if got != job.size {
        return Err(PullError::new(
            Kind::Network,
            format!("{}: body ended after {got} of {} bytes", job.path, job.size),
        ));
    }
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    match job.lfs_sha256 {
        Some(expected) => {
            let h = hex(&sha2::Digest::finalize(sha256));
            if !h.eq_ignore_ascii_case(expected) {
                return Err(PullError::integrity(format!(
                    "{}: sha256 {h}, the Hub says {expected}",
                    job.path
                )));
            }
        }
        None => {
            let h = hex(&sha1.finalize());
            if h != job.blob_id {
                return Err(PullError::integrity(format!(
                    "{}: git blob id {h}, the Hub says {}",
                    job.path, job.blob_id
                )));
            }
        }
    }
    counters.bytes_done.fetch_add(job.size, Ordering::Relaxed);
    Ok(())
}
