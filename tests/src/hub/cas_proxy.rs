//! The CAS origin: Hugging Face's reference CAS server behind token checks, expiring
//! fetch URLs, injected faults and byte counters; plus the bridge that serves whole Xet
//! files to clients without Xet support.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

use super::Shared;
use super::api::now;
use super::faults::Faults;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

fn token_ok(shared: &Shared, headers: &HeaderMap) -> bool {
    let Some(t) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    shared
        .cas_tokens
        .lock()
        .ok()
        .and_then(|m| m.get(t).copied())
        .is_some_and(|exp| exp > now())
}

fn plain(status: StatusCode, msg: &str) -> Response {
    (status, msg.to_string()).into_response()
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let headers = req.headers().clone();
    let method = req.method().clone();

    if let Some(hash) = path.strip_prefix("/bridge/") {
        return bridge(&shared, hash, method == Method::HEAD);
    }
    if path == "/v1/fetch_term" {
        return fetch_term(&shared, &query, &headers).await;
    }
    if !token_ok(&shared, &headers) {
        return plain(StatusCode::UNAUTHORIZED, "missing or expired CAS token");
    }
    let is_recon =
        path.starts_with("/v1/reconstructions/") || path.starts_with("/v2/reconstructions/");
    if is_recon {
        shared.stats.reconstructions.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut v) = shared.stats.hub_paths.lock() {
            v.push(format!("cas{path}"));
        }
        if Faults::take(&shared.faults.recon_5xx) {
            return plain(StatusCode::SERVICE_UNAVAILABLE, "injected fault");
        }
        if path.starts_with("/v2/") && Faults::take(&shared.faults.no_v2) {
            return plain(StatusCode::NOT_FOUND, "no v2 API here");
        }
    }
    // Forward to the reference server, as if it were reached at our address: it builds
    // fetch URLs from the Host header.
    let url = format!(
        "{}{}{}",
        shared.internal_cas,
        path,
        if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        }
    );
    let host = shared.cas_url.trim_start_matches("http://").to_string();
    let mut fwd = shared
        .http
        .request(method.clone(), &url)
        .header("host", host);
    if let Some(r) = headers.get("range") {
        fwd = fwd.header("range", r);
    }
    let body = axum::body::to_bytes(req.into_body(), 256 << 20)
        .await
        .unwrap_or_default();
    let resp = match fwd.body(body).send().await {
        Ok(r) => r,
        Err(e) => return plain(StatusCode::BAD_GATEWAY, &e.to_string()),
    };
    let status = resp.status();
    let ctype = resp.headers().get("content-type").cloned();
    let bytes = resp.bytes().await.unwrap_or_default();
    if is_recon && status.is_success() {
        let expired = Faults::take(&shared.faults.expire_urls);
        let exp = if expired {
            now().saturating_sub(10)
        } else {
            now() + shared.url_ttl_secs
        };
        if let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&bytes) {
            for key in ["xorbs", "fetch_info"] {
                if let Some(map) = v.get_mut(key).and_then(|m| m.as_object_mut()) {
                    for fetches in map.values_mut() {
                        for f in fetches.as_array_mut().into_iter().flatten() {
                            if let Some(u) = f.get("url").and_then(|u| u.as_str()) {
                                f["url"] = serde_json::Value::String(format!("{u}&zexp={exp}"));
                            }
                        }
                    }
                }
            }
            return axum::Json(v).into_response();
        }
    }
    let mut out = Response::builder().status(status);
    if let Some(c) = ctype {
        out = out.header("content-type", c);
    }
    out.body(Body::from(bytes))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// A xorb byte range, from a URL the proxy signed with an expiry.
async fn fetch_term(shared: &Shared, query: &str, headers: &HeaderMap) -> Response {
    let exp: u64 = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("zexp="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if exp <= now() {
        return plain(StatusCode::FORBIDDEN, "Request has expired");
    }
    shared.stats.xorb_requests.fetch_add(1, Ordering::SeqCst);
    if Faults::take(&shared.faults.fetch_5xx) {
        return plain(StatusCode::SERVICE_UNAVAILABLE, "injected fault");
    }
    let inner_query: Vec<&str> = query
        .split('&')
        .filter(|kv| !kv.starts_with("zexp="))
        .collect();
    let url = format!(
        "{}/v1/fetch_term?{}",
        shared.internal_cas,
        inner_query.join("&")
    );
    let mut fwd = shared.http.get(&url);
    if let Some(r) = headers.get("range") {
        fwd = fwd.header("range", r);
    }
    let resp = match fwd.send().await {
        Ok(r) => r,
        Err(e) => return plain(StatusCode::BAD_GATEWAY, &e.to_string()),
    };
    let mut status = resp.status();
    let mut passthrough = vec![];
    for h in ["content-type", "content-range"] {
        if let Some(v) = resp.headers().get(h) {
            passthrough.push((h, v.clone()));
        }
    }
    // The reference server answers v1 range fetches with 200; a CDN answers 206 with a
    // Content-Range, which is what clients meet in production.
    if status == StatusCode::OK
        && let Some(start) = headers
            .get("range")
            .and_then(|r| r.to_str().ok())
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.split('-').next())
            .and_then(|s| s.parse::<u64>().ok())
        && let Some(len) = resp.content_length().filter(|l| *l > 0)
        && let Ok(v) =
            axum::http::HeaderValue::from_str(&format!("bytes {start}-{}/*", start + len - 1))
    {
        status = StatusCode::PARTIAL_CONTENT;
        passthrough.push(("content-range", v));
    }
    if status.is_success() && Faults::take(&shared.faults.fetch_trickle) {
        let mut out = Response::builder().status(status);
        for (h, v) in passthrough {
            out = out.header(h, v);
        }
        let body = resp.bytes().await.unwrap_or_default();
        return out
            .body(super::faults::trickle(body))
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
    }
    let drop = status.is_success() && Faults::take(&shared.faults.fetch_drop);
    let truncate = status.is_success() && !drop && Faults::take(&shared.faults.fetch_truncate);
    let rate = shared.faults.fetch_rate.load(Ordering::SeqCst);
    if !drop && !truncate && rate == 0 {
        // The common case streams straight through, counting what leaves.
        let mut out = Response::builder().status(status);
        for (h, v) in passthrough {
            out = out.header(h, v);
        }
        if let Some(len) = resp.content_length() {
            out = out.header("content-length", len.to_string());
        }
        let stats = shared.stats.clone();
        let stream = resp.bytes_stream().map(move |c| {
            if let Ok(b) = &c {
                stats.xorb_bytes.fetch_add(b.len() as u64, Ordering::SeqCst);
            }
            c.map_err(std::io::Error::other)
        });
        return out
            .body(Body::from_stream(stream))
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
    }
    let bytes = match resp.bytes().await {
        Ok(b) => b,
        Err(e) => return plain(StatusCode::BAD_GATEWAY, &e.to_string()),
    };
    let full_len = bytes.len();
    let send_len = if drop || truncate {
        full_len / 2
    } else {
        full_len
    };
    let mut out = Response::builder().status(status);
    for (h, v) in passthrough {
        out = out.header(h, v);
    }
    // A truncated body is well formed but short; a dropped one claims the full length and
    // then breaks the connection.
    out = out.header(
        "content-length",
        if truncate { send_len } else { full_len }.to_string(),
    );
    let stats_bytes = shared.stats.clone();
    let piece = 64 * 1024;
    let pieces: Vec<bytes::Bytes> = (0..send_len)
        .step_by(piece)
        .map(|s| bytes.slice(s..(s + piece).min(send_len)))
        .collect();
    let stream = futures_util::stream::iter(pieces.into_iter().map(Ok::<_, std::io::Error>))
        .then(move |chunk| {
            let stats = stats_bytes.clone();
            async move {
                if rate > 0
                    && let Ok(c) = &chunk
                {
                    let secs = c.len() as f64 / rate as f64;
                    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
                }
                if let Ok(c) = &chunk {
                    stats.xorb_bytes.fetch_add(c.len() as u64, Ordering::SeqCst);
                }
                chunk
            }
        })
        .chain(futures_util::stream::iter(drop.then(|| {
            Err(std::io::Error::other("injected connection drop"))
        })));
    out.body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Whole-file download for clients without Xet, as the Hub's bridge does.
fn bridge(shared: &Shared, hash: &str, head: bool) -> Response {
    let Some(content) = shared.by_xet_hash.get(hash) else {
        return plain(StatusCode::NOT_FOUND, "no such file");
    };
    match content.read() {
        Ok(b) if head => Response::builder()
            .header("content-length", b.len().to_string())
            .body(Body::empty())
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()),
        Ok(b) => {
            shared
                .stats
                .plain_bytes
                .fetch_add(b.len() as u64, Ordering::SeqCst);
            Response::new(Body::from(b))
        }
        Err(e) => plain(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}
