//! The CAS as a download needs it: reconstructions and xorb byte ranges.

use std::future::Future;

use reqwest::StatusCode;
use tokio::sync::Mutex;

use super::cas_token::CasToken;
use super::deadline::{BodyWatch, Budget, retry_wait};
use super::error::RemoteError;
use super::http::{body_error, read_body, read_start, retry_after, send_within};
use super::hub::{HubClient, RepoRef};
use super::retry::{RetryPolicy, retryable_status};
use crate::XetHash;
use crate::reconstruction::{HttpRange, Reconstruction};

/// Where to fetch a byte range from, and a fresh URL when the last one expired.
pub trait UrlSource: Sync {
    /// The URL to use; `expired` is the URL that just answered 403.
    fn url(
        &self,
        expired: Option<&str>,
    ) -> impl Future<Output = Result<String, RemoteError>> + Send;
}

/// Where the CAS token comes from.
enum TokenSource {
    /// Exchanged with the Hub for the repo, and again before it expires.
    Hub {
        repo: RepoRef,
        refresh_route: String,
    },
    /// Handed over by someone else (a local client's own token): used as it is, never
    /// refreshed, so what it may read is decided by whoever issued it.
    Fixed,
}

/// A CAS client for the files of one repo, holding its token.
pub struct CasClient {
    hub: HubClient,
    source: TokenSource,
    token: Mutex<Option<CasToken>>,
    retry: RetryPolicy,
}

impl CasClient {
    pub fn new(hub: HubClient, repo: RepoRef, refresh_route: String) -> Self {
        CasClient {
            hub,
            source: TokenSource::Hub {
                repo,
                refresh_route,
            },
            token: Mutex::new(None),
            retry: RetryPolicy::default(),
        }
    }

    /// A client that uses `token` as it is. `hub` only lends its HTTP client.
    pub fn with_fixed_token(hub: HubClient, token: CasToken) -> Self {
        CasClient {
            hub,
            source: TokenSource::Fixed,
            token: Mutex::new(Some(token)),
            retry: RetryPolicy::default(),
        }
    }

    /// The Hub client whose HTTP client (and, unless the token is fixed, token route) this
    /// uses.
    pub fn hub(&self) -> &HubClient {
        &self.hub
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The current token, exchanged anew when it is about to expire or `force` is set.
    pub async fn token(&self, force: bool) -> Result<CasToken, RemoteError> {
        let mut guard = self.token.lock().await;
        if let Some(t) = guard.as_ref()
            && !force
            && t.fresh()
        {
            return Ok(t.clone());
        }
        match &self.source {
            TokenSource::Hub {
                repo,
                refresh_route,
            } => {
                let t = self.hub.xet_token(repo, refresh_route).await?;
                *guard = Some(t.clone());
                Ok(t)
            }
            TokenSource::Fixed => match guard.as_ref() {
                Some(t) if !force => Ok(t.clone()),
                _ => Err(RemoteError::AuthDenied {
                    repo: "this file".into(),
                    detail: "the CAS refused the Xet token the client gave".into(),
                }),
            },
        }
    }

    /// The file's reconstruction: `/v2/reconstructions`, falling back to `/v1` where the
    /// server does not speak v2.
    pub async fn reconstruction(&self, file_hash: &XetHash) -> Result<Reconstruction, RemoteError> {
        self.reconstruction_in(file_hash, None).await
    }

    /// The reconstruction of just the file bytes `bytes` (the CAS's `Range` support): its
    /// terms cover the chunks those bytes lie in, with fetch ranges for exactly them.
    pub async fn reconstruction_of(
        &self,
        file_hash: &XetHash,
        bytes: HttpRange,
    ) -> Result<Reconstruction, RemoteError> {
        self.reconstruction_in(file_hash, Some(bytes)).await
    }

    async fn reconstruction_in(
        &self,
        file_hash: &XetHash,
        bytes: Option<HttpRange>,
    ) -> Result<Reconstruction, RemoteError> {
        match self.reconstruction_at("v2", file_hash, bytes).await {
            Err(RemoteError::Http { status, .. }) if status == 404 || status == 501 => {
                match self.reconstruction_at("v1", file_hash, bytes).await {
                    Err(RemoteError::Http { status: 404, .. }) => Err(RemoteError::CasNotFound {
                        what: format!("file {file_hash}"),
                    }),
                    other => other,
                }
            }
            other => other,
        }
    }

    async fn reconstruction_at(
        &self,
        version: &str,
        file_hash: &XetHash,
        bytes: Option<HttpRange>,
    ) -> Result<Reconstruction, RemoteError> {
        let d = *self.hub.deadlines();
        let budget = Budget::start(&d);
        let mut force_token = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let token = self.token(force_token).await?;
            let url = format!("{}/{version}/reconstructions/{file_hash}", token.endpoint);
            let mut req = self.hub.http().get(&url).bearer_auth(&token.access_token);
            if let Some(b) = bytes {
                req = req.header(reqwest::header::RANGE, b.header_value());
            }
            let res = send_within(req, &url, &d).await;
            self.hub.observe(&res);
            let (err, server_wait) = match res {
                Ok(resp) if resp.status().is_success() => match read_body(resp, &url, &d).await {
                    Ok(body) => {
                        let r = if version == "v2" {
                            Reconstruction::from_v2_json(&body)?
                        } else {
                            Reconstruction::from_v1_json(&body)?
                        };
                        r.validate()?;
                        return Ok(r);
                    }
                    Err(e) if e.is_transient() => (e, None),
                    Err(e) => return Err(e),
                },
                Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED && !force_token => {
                    force_token = true;
                    continue;
                }
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let wait = retry_after(resp.headers());
                    let e = RemoteError::Http {
                        url: url.clone(),
                        status,
                        // The start of the body says why; the rest is not read.
                        detail: String::from_utf8_lossy(&read_start(resp, 4096, &d).await)
                            .chars()
                            .take(200)
                            .collect(),
                    };
                    if !retryable_status(status) {
                        return Err(e);
                    }
                    (e, wait)
                }
                Err(e) => (e, None),
            };
            let wait = retry_wait(&d, server_wait, self.retry.delay(attempt));
            if attempt >= self.retry.max_attempts || !budget.allows(wait) {
                return Err(RemoteError::RetriesExhausted {
                    url,
                    attempts: attempt,
                    secs: budget.elapsed().as_secs(),
                    last: err.to_string(),
                });
            }
            tracing::debug!(url, attempt, error = %err, "retrying");
            tokio::time::sleep(wait).await;
        }
    }

    /// Streams the bytes of `range` to `sink`, in order, exactly once each. Dropped
    /// connections, truncated bodies, 5xx and 429 resume from the first byte not yet
    /// delivered, after a backoff; an expired URL (403) is replaced through `source`.
    /// An error from `sink` stops the transfer and is returned as is: the caller's own
    /// error type, so what the sink refused needs no side channel.
    pub async fn stream_range<E: From<RemoteError>>(
        &self,
        source: &impl UrlSource,
        range: HttpRange,
        sink: &mut (impl FnMut(&[u8]) -> Result<(), E> + Send),
    ) -> Result<(), E> {
        let d = *self.hub.deadlines();
        let total = range.len();
        let mut delivered = 0u64;
        let mut url = source.url(None).await?;
        let mut failures = 0u32;
        let mut last_error = String::new();
        let mut budget = Budget::start(&d);
        // What the server asked to wait (`Retry-After`), for the next attempt only.
        let mut server_wait = None;
        while delivered < total {
            if failures > 0 {
                let wait = retry_wait(&d, server_wait.take(), self.retry.delay(failures));
                if failures >= self.retry.max_attempts || !budget.allows(wait) {
                    return Err(RemoteError::RetriesExhausted {
                        url,
                        attempts: failures,
                        secs: budget.elapsed().as_secs(),
                        last: last_error,
                    }
                    .into());
                }
                tokio::time::sleep(wait).await;
            }
            let want = HttpRange {
                start: range.start + delivered,
                end: range.end,
            };
            let req = self
                .hub
                .http()
                .get(&url)
                .header(reqwest::header::RANGE, want.header_value());
            let resp = send_within(req, &url, &d).await;
            self.hub.observe(&resp);
            let resp = match resp {
                Ok(r) => r,
                Err(e) => {
                    failures += 1;
                    last_error = e.to_string();
                    continue;
                }
            };
            match resp.status() {
                StatusCode::PARTIAL_CONTENT => {
                    if let Some(start) = content_range_start(resp.headers())
                        && start != want.start
                    {
                        return Err(RemoteError::protocol(
                            &url,
                            format!("asked for bytes from {}, got from {start}", want.start),
                        )
                        .into());
                    }
                }
                // Some servers answer a satisfiable range with 200 and just those bytes;
                // one that ignored the range would send the whole object instead.
                StatusCode::OK if resp.content_length() == Some(want.len()) => {}
                StatusCode::OK => {
                    return Err(
                        RemoteError::protocol(&url, "the server ignored the Range header").into(),
                    );
                }
                StatusCode::FORBIDDEN => {
                    failures += 1;
                    last_error = "URL expired (403)".into();
                    tracing::debug!(url, "fetch URL expired; asking for a fresh one");
                    url = source.url(Some(&url)).await?;
                    continue;
                }
                StatusCode::NOT_FOUND => {
                    return Err(RemoteError::CasNotFound {
                        what: format!("xorb range at {url}"),
                    }
                    .into());
                }
                s if retryable_status(s.as_u16()) => {
                    failures += 1;
                    last_error = format!("HTTP {s}");
                    server_wait = retry_after(resp.headers());
                    continue;
                }
                s => {
                    return Err(RemoteError::Http {
                        url,
                        status: s.as_u16(),
                        detail: "xorb range fetch failed".into(),
                    }
                    .into());
                }
            }
            let mut resp = resp;
            let before = delivered;
            let mut watch = BodyWatch::new(&d);
            loop {
                match watch.next(&mut resp).await {
                    Ok(Some(bytes)) => {
                        let take = (bytes.len() as u64).min(total - delivered) as usize;
                        sink(&bytes[..take])?;
                        delivered += take as u64;
                        self.hub.pace(take as u64).await;
                        if delivered == total {
                            break;
                        }
                    }
                    Ok(None) => {
                        if delivered < total {
                            last_error = format!(
                                "body ended after {} of {} bytes",
                                delivered - before,
                                total - before
                            );
                        }
                        break;
                    }
                    Err(fault) => {
                        last_error = body_error(&url, fault).to_string();
                        break;
                    }
                }
            }
            if delivered < total {
                // Progress earns a fresh budget: only a source that keeps failing without
                // moving forward runs out of attempts or time. A trickle is not progress.
                if delivered - before >= d.stall_bytes {
                    failures = 1;
                    budget.renew();
                } else {
                    failures += 1;
                }
                tracing::debug!(url, delivered, total, error = %last_error, "range interrupted; resuming");
            }
        }
        Ok(())
    }
}

fn content_range_start(h: &reqwest::header::HeaderMap) -> Option<u64> {
    let v = h.get(reqwest::header::CONTENT_RANGE)?.to_str().ok()?;
    let rest = v.strip_prefix("bytes ")?;
    rest.split('-').next()?.trim().parse().ok()
}
