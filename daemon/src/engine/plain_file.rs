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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use xet::remote::{RepoType, RetryPolicy};

    use super::*;

    /// Answers every request 429 with `Retry-After: 0`; counts requests.
    async fn always_429() -> (String, Arc<AtomicU32>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicU32::new(0));
        let counted = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let counted = counted.clone();
                tokio::spawn(async move {
                    let mut req = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => req.extend_from_slice(&buf[..n]),
                        }
                    }
                    counted.fetch_add(1, Ordering::SeqCst);
                    let _ = s
                        .write_all(
                            b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 0\r\n\
                              Content-Length: 0\r\nConnection: close\r\n\r\n",
                        )
                        .await;
                });
            }
        });
        (format!("http://{addr}"), hits)
    }

    /// The Hub's `Retry-After` retries are `get_file`'s; once they run out the download
    /// fails without asking again on its own clock (it used to, after 0-100 ms, up to eight
    /// rounds of `get_file`'s retries).
    #[tokio::test]
    async fn a_file_rate_limited_past_its_retries_is_not_asked_again() {
        let (endpoint, hits) = always_429().await;
        let hub = HubClient::new(&endpoint, None)
            .unwrap()
            .with_retry(RetryPolicy {
                max_attempts: 3,
                base_delay: std::time::Duration::from_millis(1),
                max_delay: std::time::Duration::from_millis(1),
            });
        let repo = RepoRef::new(RepoType::Model, "org/model").unwrap();
        let job = PlainJob {
            repo: &repo,
            commit: "0123456789abcdef0123456789abcdef01234567",
            path: "config.json",
            size: 2,
            blob_id: "0000000000000000000000000000000000000000",
            lfs_sha256: None,
        };
        // No answer starts, so nothing is created here.
        let dest = std::env::temp_dir().join(format!(
            "zest-plain-file-test-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let err = download(&hub, &job, &dest, &PullCounters::default())
            .await
            .unwrap_err();
        assert!(!dest.exists());
        assert_eq!(err.kind, Kind::Network, "{err}");
        assert!(err.message.contains("gave up"), "{err}");
        assert_eq!(hits.load(Ordering::SeqCst), 3, "{err}");
    }
}
