//! zestd as a local Hugging Face endpoint (`HF_ENDPOINT=http://127.0.0.1:4748`): every
//! request is forwarded to the upstream Hub with the caller's own headers and answered
//! unchanged, except for read traffic of Xet files, whose bytes are served from this cache,
//! peers and (for the rest) the origin, every chunk proven by a Hub/CAS hash first.
//!
//! What changes: a Xet token's CAS URL points at our CAS door (`/cas/{base}`); a
//! reconstruction (forwarded to the real CAS with the caller's token, so the CAS decides
//! who may read) gets its fetch URLs pointed at our xorb door (`/xorb/{id}`); a `resolve`
//! redirect to a Xet bridge points at our file door (`/file/{id}`); URLs of the upstream
//! Hub in `Link` and `Location` headers point at us; CAS telemetry is answered here.

pub mod file_jobs;
pub mod head_hold;
mod headers;
pub mod host;
pub mod rewrite;
pub mod route;
pub mod stand_in;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use xet::XetHash;
use xet::reconstruction::{ChunkRange, HttpRange};
use xet::remote::CasToken;

use crate::engine::Engine;
use crate::engine::file_plan::PlacedTerm;
use crate::metrics::EVENTS;
use crate::peer::RunBound;
use crate::sync::lock;
use file_jobs::{FileJob, FileJobs, Grant};
use route::{CasRoute, Route};

/// The port HF_ENDPOINT names when nothing says otherwise.
pub const DEFAULT_PORT: u16 = 4748;
/// Fetch and file doors remembered at most; the oldest are forgotten first (a client asks
/// for a fresh reconstruction when one is refused).
const MAX_DOORS: usize = 200_000;
/// Bodies the endpoint reads whole to rewrite them (token and reconstruction answers).
const MAX_REWRITTEN_BODY: usize = 64 << 20;

/// What went through the endpoint, for `zestctl status`.
#[derive(Debug)]
pub struct EndpointStats {
    pub requests: AtomicU64,
    /// Of those, through hf_xet's socket door.
    pub socket_requests: AtomicU64,
    pub forwarded: AtomicU64,
    /// The daemon's totals, which bytes served also count towards.
    totals: Arc<crate::totals::Totals>,
}

impl EndpointStats {
    fn new(totals: Arc<crate::totals::Totals>) -> Self {
        EndpointStats {
            requests: AtomicU64::new(0),
            socket_requests: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
            totals,
        }
    }

    /// Verified bytes handed to a local client, counted in the daemon's totals: the one
    /// place `zestctl status` and `/metrics` read them from.
    fn served(&self, n: u64) {
        self.totals
            .served_to_clients
            .fetch_add(n, Ordering::Relaxed);
    }

    /// Verified Xet bytes handed to local clients.
    pub fn served_bytes(&self) -> u64 {
        self.totals.served_to_clients.load(Ordering::Relaxed)
    }
}

/// A reconstruction's fetch URL, as pointed at us.
struct XorbDoor {
    file: XetHash,
    xorb: XetHash,
    ranges: Vec<(ChunkRange, HttpRange)>,
}

/// A whole Xet file a `resolve` redirect was pointed at.
struct FileDoor {
    file: XetHash,
}

#[derive(Default)]
struct Doors {
    xorbs: HashMap<String, XorbDoor>,
    files: HashMap<String, FileDoor>,
    order: std::collections::VecDeque<String>,
}

impl Doors {
    fn remember(&mut self, id: String) {
        self.order.push_back(id);
        while self.order.len() > MAX_DOORS {
            if let Some(old) = self.order.pop_front() {
                self.xorbs.remove(&old);
                self.files.remove(&old);
            }
        }
    }
}

pub struct Endpoint {
    bound: SocketAddr,
    base: String,
    upstream: String,
    jobs: Arc<FileJobs>,
    doors: std::sync::Mutex<Doors>,
    /// Xet access tokens the Hub handed out through us → whether without credentials.
    grants: std::sync::Mutex<HashMap<String, bool>>,
    http: reqwest::Client,
    pub stats: Arc<EndpointStats>,
    /// For `zest.pull()`.
    pulls: Option<Arc<crate::pulls::PullManager>>,
    /// For `/metrics` and `/healthz`.
    metrics: crate::metrics::Sources,
    /// The socket door's path, once it serves.
    xet_socket: std::sync::Mutex<Option<String>>,
    /// Hub answers kept here and in the fleet, for when the Hub cannot answer.
    meta: Option<Arc<crate::hubmeta::HubMeta>>,
    /// Whether a HEAD of a Xet file waits for our download (`head_hold`): only where a
    /// client can link the finished file, the cache's shared blob store.
    hold_heads: bool,
}

fn new_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

impl Endpoint {
    pub fn new(
        bound: SocketAddr,
        engine: Engine,
        pulls: Option<Arc<crate::pulls::PullManager>>,
        metrics: crate::metrics::Sources,
    ) -> anyhow::Result<Arc<Self>> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(120))
            .build()?;
        let totals = engine.totals.clone();
        let meta = engine.hub_meta.clone();
        Ok(Arc::new(Endpoint {
            bound,
            base: format!("http://{bound}"),
            upstream: engine.default_endpoint.trim_end_matches('/').to_string(),
            jobs: Arc::new(FileJobs::new(engine)),
            doors: Default::default(),
            grants: Default::default(),
            http,
            stats: Arc::new(EndpointStats::new(totals)),
            pulls,
            metrics,
            xet_socket: Default::default(),
            meta,
            hold_heads: crate::cache::shared_store::SharedStore::enabled(),
        }))
    }

    pub fn address(&self) -> SocketAddr {
        self.bound
    }

    /// Serves hf_xet's Unix-socket door (`HF_XET_CLIENT_UNIX_SOCKET_PATH`) until `shutdown`.
    pub async fn serve_xet_socket(
        self: Arc<Self>,
        listener: tokio::net::UnixListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        *lock(&self.xet_socket) = listener
            .local_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(|p| p.display().to_string()));
        let app = axum::Router::new().fallback(handle_socket).with_state(self);
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
    }

    /// Serves until the listener fails or `shutdown` fires.
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let app = axum::Router::new().fallback(handle).with_state(self);
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
    }
}

async fn handle(State(ep): State<Arc<Endpoint>>, req: Request) -> Response {
    ep.stats.requests.fetch_add(1, Ordering::Relaxed);
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    if !host::allowed(host, ep.bound) {
        return text(
            StatusCode::FORBIDDEN,
            "zestd: this endpoint answers only requests addressed to its own address (Host)",
        );
    }
    let path = req.uri().path().to_string();
    if let Some(p) = route::pinned(req.method().as_str(), &path)
        && ep.meta.is_some()
    {
        return ep.pinned_read(req, p, path).await;
    }
    dispatch(ep, req, path).await
}

/// What a request gets when nothing stands in for the Hub.
async fn dispatch(ep: Arc<Endpoint>, req: Request, path: String) -> Response {
    match route::classify(req.method().as_str(), &path) {
        Route::XetReadToken { .. } => ep.token(req).await,
        Route::Cas { base, rest } if base == stand_in::FLEET_CAS => match rest {
            CasRoute::Reconstruction { version, hash } => {
                let doors = ep.base.clone();
                ep.fleet_reconstruction(req, &version, &hash, &doors).await
            }
            CasRoute::Telemetry => StatusCode::OK.into_response(),
            CasRoute::Other { .. } => text(
                StatusCode::NOT_FOUND,
                "zestd: the fleet CAS door answers reconstructions only",
            ),
        },
        Route::Cas { base, rest } => match rewrite::decode_base(&base) {
            None => text(StatusCode::NOT_FOUND, "zestd: unknown CAS"),
            Some(cas) => match rest {
                CasRoute::Reconstruction { version, hash } => {
                    let doors = ep.base.clone();
                    ep.reconstruction(req, &cas, &version, &hash, &doors).await
                }
                // Telemetry is the client's to send to Hugging Face, not ours to relay.
                CasRoute::Telemetry => StatusCode::OK.into_response(),
                CasRoute::Other { path } => {
                    let url = with_query(&format!("{cas}{path}"), &req);
                    ep.relay(req, url).await
                }
            },
        },
        Route::XorbFetch { id } => ep.xorb(req, &id).await,
        Route::File { id } => ep.file(req, &id).await,
        Route::Resolve => ep.resolve(req).await,
        Route::ZestStatus => ep.status_json(),
        Route::Metrics => crate::metrics::http::metrics(&ep.metrics),
        Route::Health => crate::metrics::http::healthz(&ep.metrics),
        Route::ZestPull => ep.pull(req).await,
        Route::Forward => {
            let url = with_query(&format!("{}{path}", ep.upstream), &req);
            ep.relay(req, url).await
        }
    }
}

/// hf_xet's socket door: every CAS request of the process, as plain HTTP with the CAS's own
/// `Host`. Reconstructions and xorb fetches are handled as through the endpoint; the rest is
/// forwarded to that host. The Hub exchange never passes here, so zestd sees the short-lived
/// Xet token only, never the user's Hub token.
async fn handle_socket(State(ep): State<Arc<Endpoint>>, req: Request) -> Response {
    ep.stats.socket_requests.fetch_add(1, Ordering::Relaxed);
    let Some(host) = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && !h.contains(['/', '@', ' ']))
        .map(str::to_string)
    else {
        return text(StatusCode::BAD_REQUEST, "zestd: no Host");
    };
    // A URL of our own HTTP endpoint (a process that `zest.enable()`d both doors): the same
    // handling, without a second hop.
    if host::allowed(Some(&host), ep.bound) {
        return handle(State(ep), req).await;
    }
    ep.stats.requests.fetch_add(1, Ordering::Relaxed);
    let cas = socket_origin(&host);
    let path = req.uri().path().to_string();
    let doors = format!("{cas}/__zest");
    if let Some(id) = path.strip_prefix("/__zest/xorb/") {
        return ep.xorb(req, id).await;
    }
    match route::cas_route(req.method().as_str(), path.trim_start_matches('/')) {
        CasRoute::Reconstruction { version, hash } => {
            ep.reconstruction(req, &cas, &version, &hash, &doors).await
        }
        CasRoute::Telemetry => StatusCode::OK.into_response(),
        CasRoute::Other { path } => {
            let url = with_query(&format!("{cas}{path}"), &req);
            ep.relay(req, url).await
        }
    }
}

/// Where a request through the socket goes: https, as hf_xet would have sent it, except to
/// a host on loopback (test servers), which is spoken to in plain http.
fn socket_origin(host: &str) -> String {
    let name = host
        .rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map(|(n, _)| n)
        .unwrap_or(host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let loopback = name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback {
        format!("http://{host}")
    } else {
        format!("https://{host}")
    }
}

fn with_query(url: &str, req: &Request) -> String {
    match req.uri().query() {
        Some(q) => format!("{url}?{q}"),
        None => url.to_string(),
    }
}

/// What a client gets when the upstream cannot be reached: the connection drops before an
/// answer, as it would have dropped had the client tried the Hub itself, so the client
/// raises the same connection error (and, in huggingface_hub, falls back to its cache the
/// same way) instead of an HTTP error of zestd's making.
fn unreachable(why: &str) -> Response {
    let err = std::io::Error::other(format!("zestd: {why}"));
    let body = futures_util::stream::once(async move { Err::<Bytes, _>(err) });
    let mut r = Response::new(Body::from_stream(body));
    *r.status_mut() = StatusCode::BAD_GATEWAY;
    r
}

fn text(status: StatusCode, msg: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain")],
        format!("{msg}\n"),
    )
        .into_response()
}

/// Headers that describe one hop, not the message.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
    )
}

impl Endpoint {
    /// Sends the caller's request on to `url` with its own headers and body.
    async fn send(&self, req: Request, url: &str) -> Result<reqwest::Response, Response> {
        let (parts, body) = req.into_parts();
        let mut headers = reqwest::header::HeaderMap::new();
        for (k, v) in &parts.headers {
            if !hop_by_hop(k) {
                headers.append(k.clone(), v.clone());
            }
        }
        let has_body = !matches!(parts.method, Method::GET | Method::HEAD);
        let mut rb = self
            .http
            .request(parts.method.clone(), url)
            .headers(headers);
        if has_body {
            rb = rb.body(reqwest::Body::wrap_stream(body.into_data_stream()));
        }
        self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
        let res = rb.send().await;
        EVENTS.origin_answered(res.as_ref().ok().map(|r| r.status().as_u16()));
        res.map_err(|e| {
            tracing::info!(url, "upstream unreachable: {e}");
            unreachable(&format!("cannot reach {}: {e}", origin_of(url)))
        })
    }

    /// Forwards and answers with what came back, status, headers and body, only upstream
    /// URLs in link headers moved under us.
    async fn relay(&self, req: Request, url: String) -> Response {
        match self.send(req, &url).await {
            Ok(resp) => self.pass_back(resp, None),
            Err(r) => r,
        }
    }

    fn pass_back(&self, resp: reqwest::Response, location: Option<String>) -> Response {
        let status = resp.status();
        let headers = self.back_headers(resp.headers(), location);
        let body = Body::from_stream(resp.bytes_stream());
        let mut out = Response::new(body);
        *out.status_mut() = status;
        *out.headers_mut() = headers;
        out
    }

    fn back_headers(&self, from: &HeaderMap, location: Option<String>) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in from {
            if hop_by_hop(k) {
                continue;
            }
            let rebased = matches!(k.as_str(), "link" | "location" | "x-xet-refresh-route")
                .then(|| v.to_str().ok())
                .flatten()
                .and_then(|s| rewrite::rebase(s, &self.upstream, &self.base))
                .and_then(|s| HeaderValue::from_str(&s).ok());
            h.append(k.clone(), rebased.unwrap_or_else(|| v.clone()));
        }
        if let Some(l) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            h.insert(header::LOCATION, l);
        }
        h
    }

    fn cas_door(&self, cas: &str) -> String {
        format!("{}/cas/{}", self.base, rewrite::encode_base(cas))
    }

    /// A read at a pinned commit: forwarded, unless the Hub is known to be down; when the
    /// Hub cannot answer (unreachable, 5xx, 429), the fleet's answer stands in for a public
    /// repo (`stand_in`). A whole listing the Hub gives is kept for the fleet.
    async fn pinned_read(
        self: Arc<Self>,
        req: Request,
        p: route::Pinned,
        path: String,
    ) -> Response {
        let Some(meta) = self.meta.clone() else {
            return dispatch(self, req, path).await;
        };
        let method = req.method().clone();
        let query = req.uri().query().map(str::to_string);
        let range = headers::range(req.headers());
        let stand_in = || self.stand_in(&p, &method, query.as_deref(), range.as_deref());
        if meta.outage.is_down(&self.upstream)
            && let Some(r) = stand_in().await
        {
            return r;
        }
        let out = if p.read == route::PinnedRead::Tree && stand_in::whole_listing(query.as_deref())
        {
            self.forward_listing(req, &p).await
        } else {
            dispatch(self.clone(), req, path).await
        };
        if stand_in::unavailable(out.status()) {
            meta.outage.note_down(&self.upstream);
            tracing::warn!(status = %out.status(), commit = %p.commit, "the Hub cannot answer a pinned read; asking the fleet");
            if let Some(r) = stand_in().await {
                return r;
            }
        } else if out.status().is_success() || out.status().is_redirection() {
            meta.outage.note_up(&self.upstream);
        }
        out
    }

    /// A whole listing at a commit: forwarded, answered unchanged, and kept. One taken with
    /// credentials is kept as private until the Hub, asked without them, says the repo is
    /// public (most users send a token to every repo).
    async fn forward_listing(&self, req: Request, p: &route::Pinned) -> Response {
        let anonymous = !req.headers().contains_key(header::AUTHORIZATION);
        let url = with_query(&format!("{}{}", self.upstream, req.uri().path()), &req);
        let resp = match self.send(req, &url).await {
            Ok(r) => r,
            Err(r) => return r,
        };
        let more = resp
            .headers()
            .get_all(header::LINK)
            .iter()
            .any(|v| v.to_str().is_ok_and(|s| s.contains("rel=\"next\"")));
        if !resp.status().is_success() || more {
            return self.pass_back(resp, None);
        }
        let status = resp.status();
        let mut headers = self.back_headers(resp.headers(), None);
        let body = match read_limited(resp).await {
            Ok(b) => b,
            Err(r) => return r,
        };
        if let (Some(meta), Ok(repo), Ok(listing)) = (
            &self.meta,
            xet::remote::RepoRef::new(p.repo_type, &p.repo),
            crate::hubmeta::check::tree(&body),
        ) && let Ok(kept) = serde_json::to_vec(&listing)
        {
            let q = crate::hubmeta::Query::Tree {
                repo: repo.clone(),
                commit: p.commit.clone(),
            };
            meta.record(&q, kept.clone(), !anonymous);
            if !anonymous {
                let (meta, upstream) = (meta.clone(), self.upstream.clone());
                tokio::spawn(async move {
                    let Ok(hub) = xet::remote::HubClient::new(&upstream, None) else {
                        return;
                    };
                    if crate::index::visibility::ask(&hub, &repo).await
                        == Some(crate::index::visibility::Answer::Public)
                    {
                        meta.record(&q, kept, false);
                    }
                });
            }
        }
        headers.remove(header::CONTENT_LENGTH);
        let mut out = Response::new(Body::from(body));
        *out.status_mut() = status;
        *out.headers_mut() = headers;
        out
    }

    /// A Xet read token: forwarded; its CAS URL pointed at our CAS door.
    async fn token(&self, req: Request) -> Response {
        let anonymous = !req.headers().contains_key(header::AUTHORIZATION);
        let url = with_query(&format!("{}{}", self.upstream, req.uri().path()), &req);
        let resp = match self.send(req, &url).await {
            Ok(r) => r,
            Err(r) => return r,
        };
        if !resp.status().is_success() {
            return self.pass_back(resp, None);
        }
        let status = resp.status();
        let mut headers = self.back_headers(resp.headers(), None);
        let body = match read_limited(resp).await {
            Ok(b) => b,
            Err(r) => return r,
        };
        if let Some(cas) = headers
            .get("x-xet-cas-url")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            && let Ok(v) = HeaderValue::from_str(&self.cas_door(&cas))
        {
            headers.insert("x-xet-cas-url", v);
        }
        let token = headers
            .get("x-xet-access-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .or_else(|| {
                serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()?
                    .get("accessToken")?
                    .as_str()
                    .map(str::to_string)
            });
        if let Some(t) = token {
            let mut g = lock(&self.grants);
            if g.len() > MAX_DOORS {
                g.clear();
            }
            g.insert(t, anonymous);
        }
        let body = rewrite::token_body(&body, |u| self.cas_door(u)).unwrap_or(body.to_vec());
        headers.remove(header::CONTENT_LENGTH);
        let mut out = Response::new(Body::from(body));
        *out.status_mut() = status;
        *out.headers_mut() = headers;
        out
    }

    /// A reconstruction: forwarded to the real CAS with the caller's token (the CAS decides
    /// who may read the file); our download of the whole file starts; the fetch URLs point
    /// at our xorb door.
    async fn reconstruction(
        &self,
        req: Request,
        cas: &str,
        version: &str,
        hash: &str,
        doors: &str,
    ) -> Response {
        let bearer = headers::bearer(req.headers());
        let range = headers::range(req.headers());
        let url = with_query(&format!("{cas}/{version}/reconstructions/{hash}"), &req);
        let resp = self.send(req, &url).await;
        let failed = match &resp {
            Ok(r) => stand_in::unavailable(r.status()),
            Err(_) => true,
        };
        // A token the Hub gave for a public file: while the CAS cannot answer, the fleet's
        // copy of the answer stands in (the Hub already said the caller may read it).
        let public_grant = bearer
            .as_ref()
            .is_some_and(|b| lock(&self.grants).get(b).copied().unwrap_or(false));
        if failed
            && public_grant
            && let Some(r) = self
                .reconstruction_from_fleet(version, hash, range.as_deref(), doors)
                .await
        {
            return r;
        }
        let resp = match resp {
            Ok(r) => r,
            Err(r) => return r,
        };
        let (Some(bearer), true, Ok(file)) =
            (bearer, resp.status().is_success(), hash.parse::<XetHash>())
        else {
            return self.pass_back(resp, None);
        };
        let status = resp.status();
        let mut headers = self.back_headers(resp.headers(), None);
        let body = match read_limited(resp).await {
            Ok(b) => b,
            Err(r) => return r,
        };
        let public = lock(&self.grants).get(&bearer).copied().unwrap_or(false);
        let grant = Grant {
            token: CasToken {
                endpoint: cas.to_string(),
                access_token: bearer,
                expires_unix: u64::MAX,
            },
            public,
            from_fleet: false,
        };
        self.jobs.ensure(file, grant);
        let body = match self.point_at_doors(&body, version, file, doors) {
            Some(b) => Bytes::from(b),
            None => {
                tracing::warn!(file = %file, "a reconstruction zestd cannot read: passed on unchanged");
                body
            }
        };
        headers.remove(header::CONTENT_LENGTH);
        let mut out = Response::new(Body::from(body));
        *out.status_mut() = status;
        *out.headers_mut() = headers;
        out
    }

    /// A reconstruction's body with every fetch URL pointed at a xorb door of ours.
    fn point_at_doors(
        &self,
        body: &[u8],
        version: &str,
        file: XetHash,
        doors: &str,
    ) -> Option<Vec<u8>> {
        rewrite::reconstruction_body(body, version, |f| {
            let id = new_id();
            let mut d = lock(&self.doors);
            d.xorbs.insert(
                id.clone(),
                XorbDoor {
                    file,
                    xorb: f.xorb,
                    ranges: f.ranges,
                },
            );
            d.remember(id.clone());
            format!("{doors}/xorb/{id}")
        })
    }

    /// A fetch of chunks of a xorb: answered from our download of the file, chunk by chunk
    /// as each is proven, in the xorb format.
    async fn xorb(&self, req: Request, id: &str) -> Response {
        let (file, xorb, ranges) = {
            let d = lock(&self.doors);
            match d.xorbs.get(id) {
                Some(x) => (x.file, x.xorb, x.ranges.clone()),
                None => {
                    return text(
                        StatusCode::FORBIDDEN,
                        "zestd: unknown or forgotten fetch URL; ask for the reconstruction again",
                    );
                }
            }
        };
        let want = headers::range(req.headers());
        let chunks = match (&want, ranges.as_slice()) {
            (None, [(c, _)]) => *c,
            (Some(w), _) => match ranges.iter().find(|(_, b)| b.header_value() == *w) {
                Some((c, _)) => *c,
                None => {
                    return text(
                        StatusCode::RANGE_NOT_SATISFIABLE,
                        "zestd: this URL serves only the ranges it was given for",
                    );
                }
            },
            (None, _) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    "zestd: name one range (Range header)",
                );
            }
        };
        let (job, terms, _) = match self.layout(&file).await {
            Ok(l) => l,
            Err(r) => return r,
        };
        let mut indices = Vec::with_capacity(chunks.len() as usize);
        for k in chunks.start..chunks.end {
            let i = terms.iter().find_map(|t| {
                (t.xorb == xorb && t.chunks.start <= k && k < t.chunks.end)
                    .then(|| t.first_chunk + (k - t.chunks.start))
            });
            match i {
                Some(i) => indices.push(i),
                None => {
                    tracing::warn!(file = %file, xorb = %xorb, chunk = k, "a fetch range holds a chunk the file does not use");
                    return text(
                        StatusCode::BAD_GATEWAY,
                        "zestd: the range holds chunks this file does not use",
                    );
                }
            }
        }
        let body = runs_stream(job, self.stats.clone(), consecutive_runs(&indices));
        let mut out = Response::new(Body::from_stream(body));
        out.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        out
    }

    /// `resolve`: forwarded; a redirect to a Xet bridge (what a client without hf_xet
    /// follows) points at our file door instead. A HEAD of a Xet file is held while our
    /// download of it is about to finish (`head_hold`).
    async fn resolve(&self, req: Request) -> Response {
        let (is_get, is_head) = (req.method() == Method::GET, req.method() == Method::HEAD);
        let auth = req.headers().get(header::AUTHORIZATION).cloned();
        let url = with_query(&format!("{}{}", self.upstream, req.uri().path()), &req);
        let resp = match self.send(req, &url).await {
            Ok(r) => r,
            Err(r) => return r,
        };
        let xet = resp
            .headers()
            .get("x-xet-hash")
            .and_then(|v| v.to_str().ok())
            .and_then(|h| h.parse::<XetHash>().ok());
        let location = resp
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let readable = resp.status().is_success() || resp.status().is_redirection();
        if let (true, true, Some(file), Some(loc)) =
            (is_get, resp.status().is_redirection(), xet, location)
            && rewrite::rebase(&loc, &self.upstream, &self.base).is_none()
        {
            match self.bridge(resp.headers(), auth, file).await {
                Ok(door) => return self.pass_back(resp, Some(door)),
                Err(e) => {
                    tracing::info!(file = %file, "serving this download from the origin's bridge: {e}")
                }
            }
        } else if let (true, true, Some(file)) = (is_head, readable, xet)
            && self.hold_heads
        {
            self.hold_head(resp.headers(), auth, file).await;
        }
        self.pass_back(resp, None)
    }

    /// Starts our download of a file whose HEAD the Hub answered (with the caller's
    /// credentials, so the caller may read it) and waits while it is about to finish, so a
    /// client on this cache finds the file in the shared store and links it.
    async fn hold_head(
        &self,
        headers: &reqwest::header::HeaderMap,
        auth: Option<HeaderValue>,
        file: XetHash,
    ) {
        if !self.jobs.hold_this_head() {
            tracing::debug!(file = %file, "HEAD not held: recent clients downloaded what they could have linked");
            return;
        }
        let grant = match self.grant_from_hub(headers, auth).await {
            Ok(g) => g,
            Err(e) => {
                tracing::debug!(file = %file, "HEAD answered without our download: {e}");
                return;
            }
        };
        let job = self.jobs.ensure_for_head(file, grant);
        let t0 = tokio::time::Instant::now();
        loop {
            let (size, landed) = job.progress();
            let ended = job.finished() || job.failed();
            match head_hold::verdict(t0.elapsed(), landed, size, ended) {
                head_hold::Verdict::Answer => break,
                head_hold::Verdict::Wait => job.changed_within(Duration::from_millis(50)).await,
            }
        }
        tracing::debug!(file = %file, held = ?t0.elapsed(), finished = job.finished(), "HEAD answered");
        if job.finished() {
            self.jobs.held_to_the_end(job);
        } else {
            let jobs = self.jobs.clone();
            tokio::spawn(async move {
                tokio::time::sleep(head_hold::UNASKED).await;
                jobs.stop_unasked(&job);
            });
        }
    }

    /// Starts our download of a file a `resolve` redirect was about, with a Xet token got
    /// the way hf_xet gets one (the `xet-auth` link, with the caller's own credentials).
    async fn bridge(
        &self,
        headers: &reqwest::header::HeaderMap,
        auth: Option<HeaderValue>,
        file: XetHash,
    ) -> Result<String, String> {
        let grant = self.grant_from_hub(headers, auth).await?;
        self.jobs.ensure(file, grant);
        let id = new_id();
        let mut d = lock(&self.doors);
        d.files.insert(id.clone(), FileDoor { file });
        d.remember(id.clone());
        Ok(format!("{}/file/{id}", self.base))
    }

    /// A Xet token for the file a `resolve` answer was about, got the way hf_xet gets one
    /// (the `xet-auth` link, with the caller's own credentials).
    async fn grant_from_hub(
        &self,
        headers: &reqwest::header::HeaderMap,
        auth: Option<HeaderValue>,
    ) -> Result<Grant, String> {
        let links = headers
            .get_all(header::LINK)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(",");
        let route = links
            .split(',')
            .find(|l| l.contains("rel=\"xet-auth\""))
            .and_then(|l| l.split_once('<'))
            .and_then(|(_, r)| r.split_once('>'))
            .map(|(u, _)| u.to_string())
            .or_else(|| {
                headers
                    .get("x-xet-refresh-route")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            })
            .ok_or("no Xet token route in the answer")?;
        let route = if route.starts_with('/') {
            format!("{}{route}", self.upstream)
        } else {
            route
        };
        let mut rb = self.http.get(&route);
        if let Some(a) = &auth {
            rb = rb.header(header::AUTHORIZATION, a.clone());
        }
        let r = rb.send().await;
        EVENTS.origin_answered(r.as_ref().ok().map(|r| r.status().as_u16()));
        let r = r.map_err(|e| e.to_string())?;
        if !r.status().is_success() {
            return Err(format!("the Xet token route answered {}", r.status()));
        }
        let h = r.headers();
        let get = |k: &str| h.get(k).and_then(|v| v.to_str().ok()).map(str::to_string);
        let (Some(cas), Some(token)) = (get("x-xet-cas-url"), get("x-xet-access-token")) else {
            return Err("the Xet token answer has no CAS URL or token".into());
        };
        Ok(Grant {
            token: CasToken {
                endpoint: cas,
                access_token: token,
                expires_unix: u64::MAX,
            },
            public: auth.is_none(),
            from_fleet: false,
        })
    }

    /// The download behind a door, and the file's layout once the CAS described it.
    async fn layout(
        &self,
        file: &XetHash,
    ) -> Result<(Arc<FileJob>, Arc<Vec<PlacedTerm>>, u64), Response> {
        let Some(job) = self.jobs.get(file) else {
            return Err(text(
                StatusCode::NOT_FOUND,
                "zestd: the download behind this URL is gone; ask the Hub again",
            ));
        };
        match job.terms().await {
            Ok((terms, size)) => Ok((job, terms, size)),
            Err(e) => Err(text(StatusCode::BAD_GATEWAY, &format!("zestd: {e}"))),
        }
    }

    /// A whole Xet file over plain HTTP, with `Range`, chunk by chunk as each is proven.
    async fn file(&self, req: Request, id: &str) -> Response {
        let Some(file) = lock(&self.doors).files.get(id).map(|d| d.file) else {
            return text(
                StatusCode::NOT_FOUND,
                "zestd: unknown or forgotten file URL; ask the Hub again",
            );
        };
        let (job, terms, size) = match self.layout(&file).await {
            Ok(l) => l,
            Err(r) => return r,
        };
        let range = headers::range(req.headers());
        let (a, b, partial) = match range {
            Some(r) => match rewrite::parse_range(&r, size) {
                Some((a, b)) => (a, b, true),
                None => {
                    let mut out = text(StatusCode::RANGE_NOT_SATISFIABLE, "zestd: bad range");
                    if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                        out.headers_mut().insert(header::CONTENT_RANGE, v);
                    }
                    return out;
                }
            },
            None => (0, size.saturating_sub(1), false),
        };
        let len = if size == 0 { 0 } else { b - a + 1 };
        let mut out = if req.method() == Method::HEAD || len == 0 {
            Response::new(Body::empty())
        } else {
            let first = terms
                .iter()
                .find(|t| t.offset <= a && a < t.offset + t.len)
                .map(|t| t.first_chunk)
                .unwrap_or(0);
            let total = crate::engine::file_plan::total_chunks(&terms);
            Response::new(Body::from_stream(range_stream(
                job,
                self.stats.clone(),
                first,
                total,
                a,
                b,
            )))
        };
        let h = out.headers_mut();
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        if partial {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {a}-{b}/{size}")) {
                h.insert(header::CONTENT_RANGE, v);
            }
            *out.status_mut() = StatusCode::PARTIAL_CONTENT;
        }
        out
    }

    /// `zest.pull()`: a pull as `zestctl pull` starts it, answered when it ends.
    async fn pull(&self, req: Request) -> Response {
        #[derive(serde::Deserialize)]
        struct Ask {
            repo_id: String,
            #[serde(default)]
            revision: Option<String>,
            #[serde(default)]
            repo_type: Option<String>,
            #[serde(default)]
            include: Vec<String>,
            #[serde(default)]
            exclude: Vec<String>,
        }
        let Some(pulls) = &self.pulls else {
            return text(StatusCode::SERVICE_UNAVAILABLE, "zestd: pulls are off");
        };
        let token = headers::bearer(req.headers());
        let body = match axum::body::to_bytes(req.into_body(), 1 << 20).await {
            Ok(b) => b,
            Err(e) => return text(StatusCode::BAD_REQUEST, &format!("zestd: {e}")),
        };
        let ask: Ask = match serde_json::from_slice(&body) {
            Ok(a) => a,
            Err(e) => return text(StatusCode::BAD_REQUEST, &format!("zestd: {e}")),
        };
        let kind = ask.repo_type.as_deref().unwrap_or("model");
        let Some(repo_type) = xet::remote::RepoType::parse(kind) else {
            return text(
                StatusCode::BAD_REQUEST,
                &format!("zestd: unknown repo type {kind:?}"),
            );
        };
        let repo = match xet::remote::RepoRef::new(repo_type, &ask.repo_id) {
            Ok(r) => r,
            Err(e) => return text(StatusCode::BAD_REQUEST, &format!("zestd: {e}")),
        };
        let revision = ask.revision.unwrap_or_else(|| "main".into());
        if revision.contains("..") || revision.starts_with('/') || revision.contains('\0') {
            return text(StatusCode::BAD_REQUEST, "zestd: invalid revision");
        }
        let spec = crate::engine::pull::PullSpec {
            repo,
            revision,
            include: ask.include,
            exclude: ask.exclude,
            endpoint: self.upstream.clone(),
            allow_stale_refs: false,
        };
        let mut outcome = pulls.start(spec, token).outcome.clone();
        let done = outcome.wait_for(Option::is_some).await.map(|o| o.clone());
        match done {
            Ok(Some(Ok(d))) => (
                [(header::CONTENT_TYPE, "application/json")],
                serde_json::json!({
                    "snapshot": d.snapshot_path,
                    "commit": d.commit,
                    "files": d.files,
                })
                .to_string(),
            )
                .into_response(),
            Ok(Some(Err(e))) => {
                let status = match e.kind {
                    crate::engine::Kind::RepoNotFound | crate::engine::Kind::RevisionNotFound => {
                        StatusCode::NOT_FOUND
                    }
                    crate::engine::Kind::Auth => StatusCode::UNAUTHORIZED,
                    crate::engine::Kind::Invalid => StatusCode::BAD_REQUEST,
                    _ => StatusCode::BAD_GATEWAY,
                };
                text(status, &format!("zestd: {}", e.message))
            }
            _ => text(StatusCode::SERVICE_UNAVAILABLE, "zestd is shutting down"),
        }
    }

    fn status_json(&self) -> Response {
        let v = serde_json::json!({
            "endpoint": self.base,
            "xet_socket": lock(&self.xet_socket).clone(),
            "upstream": self.upstream,
            "requests": self.stats.requests.load(Ordering::Relaxed),
            "socket_requests": self.stats.socket_requests.load(Ordering::Relaxed),
            "served_bytes": self.stats.served_bytes(),
        });
        ([(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
    }
}

/// File chunk indices as runs of consecutive ones, `[a, b)`, in order.
fn consecutive_runs(indices: &[u32]) -> Vec<(u32, u32)> {
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for &i in indices {
        match runs.last_mut() {
            Some((_, b)) if *b == i => *b += 1,
            _ => runs.push((i, i + 1)),
        }
    }
    runs
}

/// The chunks of `runs`, in the xorb format, a proven run at a time.
fn runs_stream(
    job: Arc<FileJob>,
    stats: Arc<EndpointStats>,
    runs: Vec<(u32, u32)>,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send {
    futures_util::stream::unfold((runs, 0usize), move |(runs, k)| {
        let (job, stats) = (job.clone(), stats.clone());
        async move {
            let &(a, b) = runs.get(k)?;
            let whole = RunBound {
                max_bytes: file_jobs::RUN_BYTES,
                last_byte: u64::MAX,
            };
            let r = match job.run(a, b, whole, true).await {
                Ok(r) => r,
                Err(e) => return Some((Err(std::io::Error::other(e)), (Vec::new(), 0))),
            };
            let data = r.bytes.len() - r.chunks as usize * xet::xorb::CHUNK_HEADER_LEN;
            stats.served(data as u64);
            let mut runs = runs;
            let next = if a + r.chunks < b {
                runs[k].0 = a + r.chunks;
                k
            } else {
                k + 1
            };
            Some((Ok(Bytes::from(r.bytes)), (runs, next)))
        }
    })
}

/// Bytes `a..=b` of the file, a proven run at a time from chunk `first` on.
fn range_stream(
    job: Arc<FileJob>,
    stats: Arc<EndpointStats>,
    first: u32,
    total: u32,
    a: u64,
    b: u64,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send {
    futures_util::stream::unfold(Some(first), move |next| {
        let (job, stats) = (job.clone(), stats.clone());
        async move {
            let mut i = next?;
            loop {
                if i >= total {
                    return None;
                }
                // No chunk past byte `b`: a small ranged read reads and hashes little.
                let bound = RunBound {
                    max_bytes: file_jobs::RUN_BYTES,
                    last_byte: b,
                };
                let r = match job.run(i, total, bound, false).await {
                    Ok(r) => r,
                    Err(e) => return Some((Err(std::io::Error::other(e)), None)),
                };
                let end = r.offset + r.bytes.len() as u64;
                i += r.chunks;
                if end <= a {
                    continue;
                }
                if r.offset > b {
                    return None;
                }
                let from = a.saturating_sub(r.offset) as usize;
                let to = ((b + 1).min(end) - r.offset) as usize;
                let mut bytes = r.bytes;
                bytes.truncate(to);
                let piece = Bytes::from(bytes).slice(from..);
                stats.served(piece.len() as u64);
                let more = (end <= b).then_some(i);
                return Some((Ok(piece), more));
            }
        }
    })
}

/// Reads a body we must rewrite, bounded.
async fn read_limited(resp: reqwest::Response) -> Result<Bytes, Response> {
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_REWRITTEN_BODY as u64)
    {
        return Err(text(
            StatusCode::BAD_GATEWAY,
            "zestd: upstream answer too large",
        ));
    }
    let mut out = Vec::new();
    let mut s = resp.bytes_stream();
    while let Some(part) = s.next().await {
        let part = part.map_err(|e| text(StatusCode::BAD_GATEWAY, &format!("zestd: {e}")))?;
        if out.len() + part.len() > MAX_REWRITTEN_BODY {
            return Err(text(
                StatusCode::BAD_GATEWAY,
                "zestd: upstream answer too large",
            ));
        }
        out.extend_from_slice(&part);
    }
    Ok(Bytes::from(out))
}

fn origin_of(url: &str) -> String {
    reqwest::Url::parse(url)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_else(|_| url.to_string())
}
