//! The Hub API as huggingface_hub 2.x uses it for downloads.

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, Response, StatusCode};
use serde::{Deserialize, Serialize};

use super::cas_token::CasToken;
use super::deadline::{Budget, Deadlines, retry_wait};
use super::error::RemoteError;
use super::http::{read_body, read_start, retry_after, same_origin, send_within};
use super::link::find_rel;
use super::retry::{RetryPolicy, retryable_status};
use super::urlenc::{quote_path, quote_segment};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RepoType {
    Model,
    Dataset,
}

impl RepoType {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "model" | "models" | "" => Some(RepoType::Model),
            "dataset" | "datasets" => Some(RepoType::Dataset),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            RepoType::Model => "model",
            RepoType::Dataset => "dataset",
        }
    }
    /// `models` / `datasets`: the API path segment and the cache folder prefix.
    pub fn plural(self) -> &'static str {
        match self {
            RepoType::Model => "models",
            RepoType::Dataset => "datasets",
        }
    }
    /// Prefix of `resolve` URLs: models have none.
    fn url_prefix(self) -> &'static str {
        match self {
            RepoType::Model => "",
            RepoType::Dataset => "datasets/",
        }
    }
}

/// A repository on the Hub.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RepoRef {
    pub repo_type: RepoType,
    pub id: String,
}

impl RepoRef {
    /// Checks the id the way the Hub names repos: `name` or `namespace/name`, each part made
    /// of letters, digits, `-`, `_`, `.`, not starting or ending with `-`/`.`, no `--`/`..`.
    pub fn new(repo_type: RepoType, id: &str) -> Result<Self, String> {
        let parts: Vec<&str> = id.split('/').collect();
        if parts.is_empty() || parts.len() > 2 {
            return Err(format!(
                "invalid repo id {id:?}: expected `namespace/name` or `name`"
            ));
        }
        for p in &parts {
            let ok_chars = p
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if p.is_empty()
                || p.len() > 96
                || !ok_chars
                || p.starts_with(['-', '.'])
                || p.ends_with(['-', '.'])
                || p.contains("--")
                || p.contains("..")
            {
                return Err(format!("invalid repo id {id:?}"));
            }
        }
        Ok(RepoRef {
            repo_type,
            id: id.to_string(),
        })
    }

    /// The repo whose HF cache folder is `folder` (the inverse of [`Self::cache_folder_name`];
    /// repo names cannot contain `--`, so the split is unambiguous).
    pub fn from_cache_folder(folder: &str) -> Option<Self> {
        let mut parts = folder.split("--");
        let repo_type = match parts.next()? {
            "models" => RepoType::Model,
            "datasets" => RepoType::Dataset,
            _ => return None,
        };
        let id = parts.collect::<Vec<_>>().join("/");
        Self::new(repo_type, &id).ok()
    }

    /// `models--org--name`: the repo's folder in the HF cache.
    pub fn cache_folder_name(&self) -> String {
        let mut s = self.repo_type.plural().to_string();
        for part in self.id.split('/') {
            s.push_str("--");
            s.push_str(part);
        }
        s
    }
}

impl std::fmt::Display for RepoRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.repo_type {
            RepoType::Model => write!(f, "{}", self.id),
            RepoType::Dataset => write!(f, "datasets/{}", self.id),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
pub struct RepoInfo {
    pub sha: Option<String>,
    #[serde(default)]
    pub private: Option<bool>,
    /// `false`, or the gating mode (`"auto"`, `"manual"`).
    #[serde(default)]
    pub gated: Option<serde_json::Value>,
}

impl RepoInfo {
    /// Private or gated: its files need a token, so they must not be offered to strangers.
    pub fn restricted(&self) -> bool {
        self.private == Some(true)
            || self.gated.as_ref().is_some_and(|g| {
                !matches!(g, serde_json::Value::Bool(false) | serde_json::Value::Null)
            })
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct LfsInfo {
    /// The sha256 of the content.
    pub oid: String,
    pub size: u64,
    #[serde(rename = "pointerSize", default)]
    pub pointer_size: Option<u64>,
}

/// One entry of `/tree?recursive=true`. Serializes back to the Hub's own field names.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct TreeEntry {
    #[serde(rename = "type")]
    pub kind: String,
    pub path: String,
    #[serde(default)]
    pub size: u64,
    /// Git blob id.
    #[serde(default)]
    pub oid: String,
    #[serde(default)]
    pub lfs: Option<LfsInfo>,
    #[serde(rename = "xetHash", default)]
    pub xet_hash: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XetFileData {
    pub file_hash: String,
    pub refresh_route: String,
}

/// What `HEAD /resolve` says about a file.
#[derive(Clone, Debug)]
pub struct FileMeta {
    pub commit: String,
    /// Normalized: no `W/`, no quotes. The sha256 for LFS/Xet files, the git blob id otherwise.
    pub etag: String,
    pub size: Option<u64>,
    pub location: String,
    pub xet: Option<XetFileData>,
}

/// Pages of a tree listing followed at most (the Hub sends 1 000 entries a page: ten
/// million files).
const MAX_TREE_PAGES: usize = 10_000;

/// Told how every request to the Hub, the CAS or the CDN ended: its HTTP status, or `None`
/// when no answer came (connection refused, timeout, reset). For counting, not deciding.
pub type RequestObserver = std::sync::Arc<dyn Fn(Option<u16>) + Send + Sync>;

/// Asked after each piece of a body this client streams (xorb ranges, plain files), given
/// its size: a wait to make, or `None` (no cap, and no allocation on this per-piece path).
/// How a caller caps its download rate; reading less holds the sender back through TCP
/// flow control.
pub type Pace = std::sync::Arc<
    dyn Fn(u64) -> Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>
        + Send
        + Sync,
>;

/// A Hub client for one endpoint and (optionally) one user token.
#[derive(Clone)]
pub struct HubClient {
    http: reqwest::Client,
    endpoint: String,
    token: Option<String>,
    retry: RetryPolicy,
    deadlines: Deadlines,
    observer: Option<RequestObserver>,
    pace: Option<Pace>,
}

/// An answer from the Hub API, read whole (they are small; see [`super::http::MAX_BODY`]).
pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
}

fn build_http(endpoint: &str, d: &Deadlines) -> Result<reqwest::Client, RemoteError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(d.connect)
        .user_agent(concat!("zest/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| RemoteError::protocol(endpoint, e.to_string()))
}

impl HubClient {
    pub fn new(endpoint: &str, token: Option<String>) -> Result<Self, RemoteError> {
        let deadlines = Deadlines::default();
        Ok(HubClient {
            http: build_http(endpoint, &deadlines)?,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token,
            retry: RetryPolicy::default(),
            deadlines,
            observer: None,
            pace: None,
        })
    }

    pub fn deadlines(&self) -> &Deadlines {
        &self.deadlines
    }

    /// Reports the outcome of every request this client (and CAS clients made from it)
    /// sends to `observer`.
    pub fn with_observer(mut self, observer: RequestObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Paces every body this client (and CAS clients made from it) streams with `pace`.
    pub fn with_pace(mut self, pace: Pace) -> Self {
        self.pace = Some(pace);
        self
    }

    /// Waits as the pace, if any, says after `n` bytes were read.
    pub async fn pace(&self, n: u64) {
        if let Some(wait) = self.pace.as_ref().and_then(|p| p(n)) {
            wait.await;
        }
    }

    /// Tells the observer, if any, how a request ended.
    pub(crate) fn observe<T>(&self, res: &Result<Response, T>) {
        if let Some(o) = &self.observer {
            o(res.as_ref().ok().map(|r| r.status().as_u16()));
        }
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    fn auth_headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(t) = &self.token
            && let Ok(v) = HeaderValue::from_str(&format!("Bearer {t}"))
        {
            h.insert(reqwest::header::AUTHORIZATION, v);
        }
        h
    }

    /// Sends a request to the Hub and reads its answer, retrying transient failures within
    /// the deadlines, and maps error statuses.
    async fn send(
        &self,
        method: Method,
        url: &str,
        ctx: &ErrCtx<'_>,
    ) -> Result<Answer, RemoteError> {
        let budget = Budget::start(&self.deadlines);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (err, server_wait) = match self.exchange(method.clone(), url).await {
                Ok(a) if a.status.is_success() || a.status.is_redirection() => return Ok(a),
                Ok(a) if retryable_status(a.status.as_u16()) => (
                    status_error(a.status, &a.headers, url, ctx, self.has_token()),
                    retry_after(&a.headers),
                ),
                Ok(a) => {
                    return Err(status_error(
                        a.status,
                        &a.headers,
                        url,
                        ctx,
                        self.has_token(),
                    ));
                }
                Err(e) => (e, None),
            };
            let wait = retry_wait(&self.deadlines, server_wait, self.retry.delay(attempt));
            if attempt >= self.retry.max_attempts || !err.is_transient() || !budget.allows(wait) {
                return Err(if attempt > 1 && err.is_transient() {
                    RemoteError::RetriesExhausted {
                        url: url.to_string(),
                        attempts: attempt,
                        secs: budget.elapsed().as_secs(),
                        last: err.to_string(),
                    }
                } else {
                    err
                });
            }
            tracing::debug!(url, attempt, error = %err, "retrying");
            tokio::time::sleep(wait).await;
        }
    }

    /// One request and its whole answer (only the start of an error's body), within the
    /// deadlines.
    async fn exchange(&self, method: Method, url: &str) -> Result<Answer, RemoteError> {
        let req = self
            .http
            .request(method, url)
            .headers(self.auth_headers())
            .header(reqwest::header::ACCEPT_ENCODING, "identity");
        let res = send_within(req, url, &self.deadlines).await;
        self.observe(&res);
        let resp = res?;
        let (status, headers) = (resp.status(), resp.headers().clone());
        let body = if status.is_success() {
            read_body(resp, url, &self.deadlines).await?
        } else {
            read_start(resp, 4096, &self.deadlines).await
        };
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    /// `GET /api/{type}s/{id}/revision/{rev}`.
    pub async fn repo_info(&self, repo: &RepoRef, revision: &str) -> Result<RepoInfo, RemoteError> {
        let url = format!(
            "{}/api/{}/{}/revision/{}",
            self.endpoint,
            repo.repo_type.plural(),
            repo.id,
            quote_segment(revision)
        );
        let ctx = ErrCtx {
            repo,
            revision,
            path: None,
        };
        let answer = self.send(Method::GET, &url, &ctx).await?;
        serde_json::from_slice(&answer.body).map_err(|e| RemoteError::protocol(&url, e.to_string()))
    }

    /// Every file of the repo at `commit` (`/tree/{commit}?recursive=True&expand=False`,
    /// following `Link: rel="next"` pages).
    pub async fn list_files(
        &self,
        repo: &RepoRef,
        commit: &str,
    ) -> Result<Vec<TreeEntry>, RemoteError> {
        let mut url = format!(
            "{}/api/{}/{}/tree/{}?recursive=True&expand=False",
            self.endpoint,
            repo.repo_type.plural(),
            repo.id,
            quote_segment(commit)
        );
        let ctx = ErrCtx {
            repo,
            revision: commit,
            path: None,
        };
        let mut files = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for _page in 0..MAX_TREE_PAGES {
            if !seen.insert(url.clone()) {
                return Err(RemoteError::protocol(
                    &url,
                    "the tree listing's next page is one it already sent (a pagination loop)",
                ));
            }
            let answer = self.send(Method::GET, &url, &ctx).await?;
            let next = answer
                .headers
                .get(reqwest::header::LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(|h| find_rel(h, "next"));
            let page: Vec<TreeEntry> = serde_json::from_slice(&answer.body)
                .map_err(|e| RemoteError::protocol(&url, format!("tree listing: {e}")))?;
            files.extend(page.into_iter().filter(|e| e.kind == "file"));
            match next {
                Some(n) => url = n,
                None => return Ok(files),
            }
        }
        Err(RemoteError::protocol(
            &url,
            format!("the tree listing goes on past {MAX_TREE_PAGES} pages"),
        ))
    }

    /// The `resolve` URL of a file, as huggingface_hub's `hf_hub_url` builds it.
    pub fn resolve_url(&self, repo: &RepoRef, revision: &str, path: &str) -> String {
        format!(
            "{}/{}{}/resolve/{}/{}",
            self.endpoint,
            repo.repo_type.url_prefix(),
            repo.id,
            quote_segment(revision),
            quote_path(path)
        )
    }

    /// `HEAD /resolve`, following only redirects that stay on the Hub's origin: a redirect
    /// to another origin (the CDN or the Xet bridge) carries the metadata itself.
    pub async fn file_meta(
        &self,
        repo: &RepoRef,
        revision: &str,
        path: &str,
    ) -> Result<FileMeta, RemoteError> {
        let mut url = self.resolve_url(repo, revision, path);
        let ctx = ErrCtx {
            repo,
            revision,
            path: Some(path),
        };
        for _ in 0..10 {
            let answer = self.send(Method::HEAD, &url, &ctx).await?;
            let h = &answer.headers;
            let location = h
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(|l| join_url(&url, l));
            if answer.status.is_redirection()
                && let Some(target) = &location
                && same_origin(&url, target)
            {
                url = target.clone();
                continue;
            }
            let get = |name: &str| h.get(name).and_then(|v| v.to_str().ok());
            let commit = get("x-repo-commit").ok_or_else(|| {
                RemoteError::protocol(
                    &url,
                    "no X-Repo-Commit header: this does not look like a Hugging Face Hub (check HF_ENDPOINT)",
                )
            })?;
            let etag = get("x-linked-etag")
                .or_else(|| get("etag"))
                .map(normalize_etag)
                .ok_or_else(|| RemoteError::protocol(&url, "no ETag for the file"))?;
            let size = get("x-linked-size")
                .or_else(|| {
                    if answer.status.is_redirection() {
                        None
                    } else {
                        get("content-length")
                    }
                })
                .and_then(|s| s.parse().ok());
            let xet = get("x-xet-hash").and_then(|hash| {
                let route = get("link")
                    .and_then(|l| find_rel(l, "xet-auth"))
                    .or_else(|| get("x-xet-refresh-route").map(str::to_string))?;
                Some(XetFileData {
                    file_hash: hash.to_string(),
                    refresh_route: route,
                })
            });
            return Ok(FileMeta {
                commit: commit.to_string(),
                etag,
                size,
                location: location.unwrap_or_else(|| url.clone()),
                xet,
            });
        }
        Err(RemoteError::protocol(&url, "too many redirects"))
    }

    /// `GET` of a plain (non-Xet) file's bytes, following redirects. Authorization is sent
    /// only to the Hub's own origin, never to a CDN. An answer that came with `Retry-After`
    /// is retried here; when those retries run out the error is
    /// [`RemoteError::RetriesExhausted`], which is not transient, so a caller's own retry loop
    /// (for bodies that break) does not ask again sooner than the server wished.
    pub async fn get_file(
        &self,
        repo: &RepoRef,
        revision: &str,
        path: &str,
        offset: u64,
    ) -> Result<Response, RemoteError> {
        let start = self.resolve_url(repo, revision, path);
        let ctx = ErrCtx {
            repo,
            revision,
            path: Some(path),
        };
        // A 429 or 5xx before the body starts is retried here, after the server's
        // `Retry-After` (capped) or the backoff; a body that breaks later is the caller's.
        let budget = Budget::start(&self.deadlines);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (err, server_wait) = match self.get_file_once(&start, &ctx, offset).await {
                Ok(r) => return Ok(r),
                Err((e, wait)) => (e, wait),
            };
            let wait = retry_wait(&self.deadlines, server_wait, self.retry.delay(attempt));
            if server_wait.is_none() || !err.is_transient() {
                return Err(err);
            }
            if attempt >= self.retry.max_attempts || !budget.allows(wait) {
                // Not transient any more: the caller must not stack its own retries on these.
                return Err(RemoteError::RetriesExhausted {
                    url: start,
                    attempts: attempt,
                    secs: budget.elapsed().as_secs(),
                    last: err.to_string(),
                });
            }
            tracing::debug!(url = start, attempt, error = %err, "retrying");
            tokio::time::sleep(wait).await;
        }
    }

    /// One `get_file` attempt: the answer, or the error and the `Retry-After` it came with.
    async fn get_file_once(
        &self,
        start: &str,
        ctx: &ErrCtx<'_>,
        offset: u64,
    ) -> Result<Response, (RemoteError, Option<std::time::Duration>)> {
        let mut url = start.to_string();
        for _ in 0..10 {
            let mut req = self
                .http
                .get(&url)
                .header(reqwest::header::ACCEPT_ENCODING, "identity");
            if same_origin(start, &url) {
                req = req.headers(self.auth_headers());
            }
            if offset > 0 {
                req = req.header(reqwest::header::RANGE, format!("bytes={offset}-"));
            }
            let resp = send_within(req, &url, &self.deadlines).await;
            self.observe(&resp);
            let resp = resp.map_err(|e| (e, None))?;
            if resp.status().is_redirection() {
                let loc = resp
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| {
                        (
                            RemoteError::protocol(&url, "redirect without Location"),
                            None,
                        )
                    })?;
                url = join_url(&url, loc);
                continue;
            }
            if !resp.status().is_success() {
                let wait = retryable_status(resp.status().as_u16())
                    .then(|| retry_after(resp.headers()))
                    .flatten();
                return Err((
                    status_error(resp.status(), resp.headers(), &url, ctx, self.has_token()),
                    wait,
                ));
            }
            return Ok(resp);
        }
        Err((RemoteError::protocol(&url, "too many redirects"), None))
    }

    /// Exchanges the user token for a CAS access token at `refresh_route`
    /// (`/api/{type}s/{id}/xet-read-token/{rev}`).
    pub async fn xet_token(
        &self,
        repo: &RepoRef,
        refresh_route: &str,
    ) -> Result<CasToken, RemoteError> {
        let ctx = ErrCtx {
            repo,
            revision: "",
            path: None,
        };
        let answer = self.send(Method::GET, refresh_route, &ctx).await?;
        let h = &answer.headers;
        let get = |name: &str| {
            h.get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let (endpoint, token, exp) = (
            get("x-xet-cas-url"),
            get("x-xet-access-token"),
            get("x-xet-token-expiration").and_then(|s| s.parse::<u64>().ok()),
        );
        let (Some(endpoint), Some(access_token), Some(expires_unix)) = (endpoint, token, exp)
        else {
            return Err(RemoteError::protocol(
                refresh_route,
                "the Xet token response lacks X-Xet-Cas-Url / X-Xet-Access-Token / X-Xet-Token-Expiration",
            ));
        };
        Ok(CasToken {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            access_token,
            expires_unix,
        })
    }
}

/// What a request was about, for error messages.
pub(crate) struct ErrCtx<'a> {
    pub repo: &'a RepoRef,
    pub revision: &'a str,
    pub path: Option<&'a str>,
}

fn status_error(
    status: StatusCode,
    h: &HeaderMap,
    url: &str,
    ctx: &ErrCtx<'_>,
    had_token: bool,
) -> RemoteError {
    let code = h
        .get("x-error-code")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let message = h
        .get("x-error-message")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let repo = ctx.repo.to_string();
    match (code, status) {
        ("RevisionNotFound", _) => RemoteError::RevisionNotFound {
            repo,
            revision: ctx.revision.to_string(),
        },
        ("EntryNotFound", _) => RemoteError::EntryNotFound {
            repo,
            revision: ctx.revision.to_string(),
            path: ctx.path.unwrap_or("").to_string(),
        },
        ("GatedRepo", _) => RemoteError::Gated { repo },
        (_, StatusCode::UNAUTHORIZED)
            if message == "Invalid credentials in Authorization header" =>
        {
            RemoteError::AuthDenied {
                repo,
                detail: message,
            }
        }
        ("RepoNotFound", _) | (_, StatusCode::UNAUTHORIZED) if !had_token => {
            if status == StatusCode::UNAUTHORIZED {
                RemoteError::AuthRequired { repo }
            } else {
                RemoteError::RepoNotFound { repo }
            }
        }
        ("RepoNotFound", _) => RemoteError::RepoNotFound { repo },
        (_, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => RemoteError::AuthDenied {
            repo,
            detail: if message.is_empty() {
                format!("HTTP {status}")
            } else {
                message
            },
        },
        _ => RemoteError::Http {
            url: url.to_string(),
            status: status.as_u16(),
            detail: if message.is_empty() {
                status.canonical_reason().unwrap_or("error").to_string()
            } else {
                message
            },
        },
    }
}

fn normalize_etag(e: &str) -> String {
    e.trim_start_matches("W/").trim_matches('"').to_string()
}

fn join_url(base: &str, location: &str) -> String {
    reqwest::Url::parse(base)
        .and_then(|b| b.join(location))
        .map(|u| u.to_string())
        .unwrap_or_else(|_| location.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_folder_names() {
        let r = RepoRef::new(RepoType::Model, "org/model-1.5").unwrap();
        assert_eq!(r.cache_folder_name(), "models--org--model-1.5");
        let d = RepoRef::new(RepoType::Dataset, "squad").unwrap();
        assert_eq!(d.cache_folder_name(), "datasets--squad");
        for r in [&r, &d] {
            assert_eq!(
                RepoRef::from_cache_folder(&r.cache_folder_name()).as_ref(),
                Some(r)
            );
        }
        for odd in ["spaces--a--b", "models--", "models--a--b--c", "models", "x"] {
            assert_eq!(RepoRef::from_cache_folder(odd), None, "{odd}");
        }
        for bad in [
            "", "a/b/c", "../x", "a/..", "-a/b", "a b/c", "a--b/c", "a/b\0",
        ] {
            assert!(RepoRef::new(RepoType::Model, bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn etags_normalize_like_huggingface_hub() {
        assert_eq!(normalize_etag("W/\"abc\""), "abc");
        assert_eq!(normalize_etag("\"abc\""), "abc");
    }

    #[test]
    fn origins_include_the_port() {
        assert!(same_origin("http://127.0.0.1:80/a", "http://127.0.0.1/b"));
        assert!(!same_origin(
            "http://127.0.0.1:8000/a",
            "http://127.0.0.1:8001/a"
        ));
    }
}
