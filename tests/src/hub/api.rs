//! The Hub's HTTP API, as far as huggingface_hub 2.x downloads use it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::faults::{FaultSettings, Faults};

/// An early answer; boxed because a `Response` is large.
type Reject = Box<Response>;
use super::repo::HubRepo;
use super::{Shared, TEST_TOKEN};

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

/// The faults that make the Hub dead or useless rather than wrong, then the Hub.
async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let is_test_route = req.uri().path().starts_with("/_test/");
    if !is_test_route {
        shared.stats.hub_requests.fetch_add(1, Ordering::SeqCst);
        let path = req.uri().path().to_string();
        if let Ok(mut v) = shared.stats.hub_paths.lock() {
            v.push(path.clone());
        }
        let early = shared
            .stats
            .last_429
            .lock()
            .ok()
            .and_then(|m| m.get(&path).copied())
            .is_some_and(|t| t.elapsed() < std::time::Duration::from_millis(900));
        if early {
            shared
                .stats
                .hub_early_retries
                .fetch_add(1, Ordering::SeqCst);
        }
        if shared.faults.rate_limited() {
            shared.stats.hub_429s.fetch_add(1, Ordering::SeqCst);
            if let Ok(mut m) = shared.stats.last_429.lock() {
                m.insert(path, std::time::Instant::now());
            }
            let mut r = error(
                StatusCode::TOO_MANY_REQUESTS,
                None,
                "injected rate limit",
                None,
            );
            r.headers_mut()
                .insert("retry-after", HeaderValue::from_static("1"));
            return r;
        }
    }
    if !is_test_route && Faults::take(&shared.faults.hub_silent) {
        tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
    }
    if !is_test_route && Faults::take(&shared.faults.hub_retry_after) {
        let mut r = error(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            "injected fault",
            None,
        );
        r.headers_mut()
            .insert("retry-after", HeaderValue::from_static("60"));
        return r;
    }
    let trickle = !is_test_route && Faults::take(&shared.faults.hub_trickle);
    let resp = answer(shared, req).await;
    if !trickle {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    parts.headers.remove("content-length");
    Response::from_parts(parts, super::faults::trickle(body))
}

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) =
                u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn error(status: StatusCode, code: Option<&str>, message: &str, commit: Option<&str>) -> Response {
    let mut r = Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("x-error-message", message);
    if let Some(c) = code {
        r = r.header("x-error-code", c);
    }
    if let Some(c) = commit {
        r = r.header("x-repo-commit", c);
    }
    r.body(Body::from(json!({ "error": message }).to_string()))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

enum Auth {
    None,
    Valid,
    Invalid,
}

fn auth(headers: &HeaderMap) -> Auth {
    match headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        None => Auth::None,
        Some(t) if t == TEST_TOKEN => Auth::Valid,
        Some(_) => Auth::Invalid,
    }
}

/// The repo, if this caller may see it; otherwise the Hub's answer.
fn visible<'a>(
    shared: &'a Shared,
    headers: &HeaderMap,
    repo_type: &str,
    id: &str,
) -> Result<&'a HubRepo, Reject> {
    let a = auth(headers);
    if let Auth::Invalid = a {
        return Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            None,
            "Invalid credentials in Authorization header",
            None,
        )));
    }
    match shared.find(repo_type, id) {
        Some(r) if !r.private || matches!(a, Auth::Valid) => Ok(r),
        _ => Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            Some("RepoNotFound"),
            "Repository not found",
            None,
        ))),
    }
}

fn check_revision(repo: &HubRepo, rev: &str) -> Result<(), Reject> {
    if rev == "main" || rev == repo.commit {
        Ok(())
    } else {
        Err(Box::new(error(
            StatusCode::NOT_FOUND,
            Some("RevisionNotFound"),
            &format!("Invalid rev id: {rev}"),
            None,
        )))
    }
}

fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}")
}

async fn answer(shared: Arc<Shared>, req: Request) -> Response {
    let method = req.method().clone();
    let headers = req.headers().clone();
    let uri = req.uri().clone();
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or("").to_string();

    if path == "/_test/faults" && method == Method::POST {
        let body = axum::body::to_bytes(req.into_body(), 1 << 20)
            .await
            .unwrap_or_default();
        return match serde_json::from_slice::<FaultSettings>(&body) {
            Ok(s) => {
                shared.faults.set(&s);
                StatusCode::NO_CONTENT.into_response()
            }
            Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
        };
    }
    if path == "/_test/stats" {
        return axum::Json(shared.stats.snapshot()).into_response();
    }
    if Faults::take(&shared.faults.hub_5xx) {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            "injected fault",
            None,
        );
    }

    let segs: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    if segs.first().map(String::as_str) == Some("api") && segs.len() >= 3 {
        let repo_type = match segs[1].as_str() {
            "models" => "model",
            "datasets" => "dataset",
            _ => return error(StatusCode::NOT_FOUND, None, "Not Found", None),
        };
        let rest = &segs[2..];
        let Some(k) = rest.iter().position(|s| {
            matches!(
                s.as_str(),
                "revision" | "tree" | "xet-read-token" | "paths-info"
            )
        }) else {
            // `/api/models/{id}`: the repo at its default branch.
            if method == Method::GET && (1..=2).contains(&rest.len()) {
                return match visible(&shared, &headers, repo_type, &rest.join("/")) {
                    Ok(r) => repo_info(r),
                    Err(resp) => *resp,
                };
            }
            return error(StatusCode::NOT_FOUND, None, "Not Found", None);
        };
        let id = rest[..k].join("/");
        let Some(rev) = rest.get(k + 1) else {
            return error(StatusCode::NOT_FOUND, None, "Not Found", None);
        };
        let repo = match visible(&shared, &headers, repo_type, &id) {
            Ok(r) => r,
            Err(resp) => return *resp,
        };
        if let Err(resp) = check_revision(repo, rev) {
            return *resp;
        }
        if rest[k] == "paths-info" {
            let body = axum::body::to_bytes(req.into_body(), 1 << 20)
                .await
                .unwrap_or_default();
            return paths_info(repo, &body);
        }
        return match rest[k].as_str() {
            "revision" => repo_info(repo),
            "tree" => tree(
                &shared,
                &headers,
                repo,
                rev,
                &rest[k + 2..].join("/"),
                &query,
            ),
            _ => xet_token(&shared, repo),
        };
    }

    // /{id}/resolve/{rev}/{path} and /datasets/{id}/resolve/{rev}/{path}
    let (repo_type, segs) = if segs.first().map(String::as_str) == Some("datasets") {
        ("dataset", &segs[1..])
    } else {
        ("model", &segs[..])
    };
    let Some(k) = segs.iter().position(|s| s == "resolve") else {
        return error(StatusCode::NOT_FOUND, None, "Not Found", None);
    };
    let id = segs[..k].join("/");
    let (Some(rev), file_path) = (segs.get(k + 1), segs.get(k + 2..).map(|s| s.join("/"))) else {
        return error(StatusCode::NOT_FOUND, None, "Not Found", None);
    };
    shared.stats.resolves.fetch_add(1, Ordering::SeqCst);
    let repo = match visible(&shared, &headers, repo_type, &id) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    if let Err(resp) = check_revision(repo, rev) {
        return *resp;
    }
    let file_path = file_path.unwrap_or_default();
    let Some(file) = repo.files.get(&file_path) else {
        return error(
            StatusCode::NOT_FOUND,
            Some("EntryNotFound"),
            "Entry not found",
            Some(&repo.commit),
        );
    };
    if let (Some(xet_hash), Some(lfs)) = (&file.xet_hash, &file.lfs) {
        // Xet files: a redirect to the CAS bridge, carrying everything a Xet client needs.
        let base = base_url(&headers);
        let token_route = format!(
            "{base}/api/{}s/{}/xet-read-token/{}",
            repo.repo_type, repo.id, repo.commit
        );
        let link = format!(
            "<{token_route}>; rel=\"xet-auth\", <{}/v1/reconstructions/{xet_hash}>; rel=\"xet-reconstruction-info\"",
            shared.cas_url
        );
        return Response::builder()
            .status(StatusCode::FOUND)
            .header("location", format!("{}/bridge/{xet_hash}", shared.cas_url))
            .header("x-repo-commit", &repo.commit)
            .header("x-linked-etag", format!("\"{}\"", lfs.sha256))
            .header("x-linked-size", lfs.size.to_string())
            .header("x-xet-hash", xet_hash)
            .header("link", link)
            .header("etag", format!("\"{}\"", file.blob_id))
            .header("accept-ranges", "bytes")
            .header("content-length", "0")
            .body(Body::empty())
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
    }
    let bytes = match file.content.read() {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                None,
                &e.to_string(),
                None,
            );
        }
    };
    let mut r = Response::builder()
        .status(StatusCode::OK)
        .header("x-repo-commit", &repo.commit)
        .header("etag", format!("\"{}\"", file.blob_id))
        .header("accept-ranges", "bytes")
        .header("content-type", "application/octet-stream");
    if method == Method::HEAD {
        r = r.header("content-length", bytes.len().to_string());
        return r
            .body(Body::empty())
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
    }
    shared
        .stats
        .plain_bytes
        .fetch_add(bytes.len() as u64, Ordering::SeqCst);
    r.body(Body::from(bytes))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn repo_info(repo: &HubRepo) -> Response {
    let siblings: Vec<_> = repo
        .files
        .keys()
        .map(|p| json!({ "rfilename": p }))
        .collect();
    let body = json!({
        "_id": format!("{:0>24}", &repo.commit[..24]),
        "id": repo.id,
        "author": repo.id.split('/').next().unwrap_or(""),
        "sha": repo.commit,
        "lastModified": "2026-11-01T00:00:00.000Z",
        "createdAt": "2026-11-01T00:00:00.000Z",
        "private": repo.private,
        "gated": false,
        "disabled": false,
        "downloads": 0,
        "likes": 0,
        "tags": [],
        "siblings": siblings,
    });
    axum::Json(body).into_response()
}

/// A 200 MB tree page, made as it is sent (a listing no client should read whole).
fn huge_listing() -> Response {
    const ENTRIES: usize = 2_500_000;
    const PER_PIECE: usize = 10_000;
    let pieces = futures_util::stream::unfold(0usize, |i| async move {
        if i >= ENTRIES {
            return None;
        }
        let mut s = String::with_capacity(PER_PIECE * 90);
        if i == 0 {
            s.push('[');
        }
        for k in i..(i + PER_PIECE).min(ENTRIES) {
            if k > 0 {
                s.push(',');
            }
            s.push_str(&format!(
                r#"{{"type":"file","oid":"{k:040x}","size":1,"path":"f/{k:08}"}}"#
            ));
        }
        if i + PER_PIECE >= ENTRIES {
            s.push(']');
        }
        Some((
            Ok::<_, std::io::Error>(bytes::Bytes::from(s)),
            i + PER_PIECE,
        ))
    });
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from_stream(pieces))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn tree(
    shared: &Shared,
    headers: &HeaderMap,
    repo: &HubRepo,
    rev: &str,
    path_in_repo: &str,
    query: &str,
) -> Response {
    if Faults::take(&shared.faults.tree_huge) {
        return huge_listing();
    }
    let recursive = query
        .split('&')
        .any(|kv| kv.eq_ignore_ascii_case("recursive=true"));
    let cursor: usize = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("cursor="))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let prefix = if path_in_repo.is_empty() {
        String::new()
    } else {
        format!("{path_in_repo}/")
    };
    // Entries: files and the directories that hold them, like the Hub lists them.
    let mut entries: std::collections::BTreeMap<String, serde_json::Value> = Default::default();
    for f in repo.files.values() {
        let Some(rel) = f.path.strip_prefix(&prefix) else {
            continue;
        };
        let parts: Vec<&str> = rel.split('/').collect();
        for d in 1..parts.len() {
            if !recursive && d > 1 {
                break;
            }
            let dir = format!("{prefix}{}", parts[..d].join("/"));
            entries.entry(dir.clone()).or_insert_with(|| {
                json!({ "type": "directory", "oid": super::repo::git_blob_id(dir.as_bytes()), "size": 0, "path": dir })
            });
        }
        if !recursive && parts.len() > 1 {
            continue;
        }
        entries.insert(f.path.clone(), file_entry(f));
    }
    let all: Vec<_> = entries.into_values().collect();
    let end = (cursor + shared.page_size).min(all.len());
    let page = all.get(cursor..end).unwrap_or(&[]).to_vec();
    let mut resp = axum::Json(page).into_response();
    // The loop fault: page 0 says the next page is at cursor 0 again.
    let end = if Faults::take(&shared.faults.tree_loop) {
        0
    } else {
        end
    };
    if end < all.len() {
        let next = format!(
            "<{}/api/{}s/{}/tree/{}{}?recursive={}&expand=False&cursor={end}>; rel=\"next\"",
            base_url(headers),
            repo.repo_type,
            repo.id,
            rev,
            if path_in_repo.is_empty() {
                String::new()
            } else {
                format!("/{path_in_repo}")
            },
            if recursive { "True" } else { "False" },
        );
        if let Ok(v) = HeaderValue::from_str(&next) {
            resp.headers_mut().insert("link", v);
        }
    }
    resp
}

fn file_entry(f: &super::repo::HubFile) -> serde_json::Value {
    let mut e = json!({ "type": "file", "oid": f.blob_id, "size": f.size, "path": f.path });
    if let Some(l) = &f.lfs {
        e["lfs"] = json!({ "oid": l.sha256, "size": l.size, "pointerSize": l.pointer_size });
    }
    if let Some(x) = &f.xet_hash {
        e["xetHash"] = json!(x);
    }
    e
}

/// `POST …/paths-info/{rev}` with a form body `paths=…&paths=…`: one entry per path that
/// exists, a file or a directory, as the Hub answers it.
fn paths_info(repo: &HubRepo, body: &[u8]) -> Response {
    let form = String::from_utf8_lossy(body);
    let mut out = Vec::new();
    for kv in form.split('&') {
        let Some(v) = kv.strip_prefix("paths=") else {
            continue;
        };
        let path = percent_decode(&v.replace('+', " "));
        let path = path.trim_matches('/');
        if let Some(f) = repo.files.get(path) {
            out.push(file_entry(f));
        } else if path.is_empty()
            || repo
                .files
                .keys()
                .any(|p| p.starts_with(&format!("{path}/")))
        {
            out.push(json!({ "type": "directory", "oid": super::repo::git_blob_id(path.as_bytes()), "size": 0, "path": path }));
        }
    }
    axum::Json(out).into_response()
}

fn xet_token(shared: &Shared, repo: &HubRepo) -> Response {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let token = format!("xet_read_{n}_{}", &repo.commit[..8]);
    let exp = now() + shared.token_ttl_secs;
    if let Ok(mut t) = shared.cas_tokens.lock() {
        t.insert(token.clone(), exp);
    }
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .header("x-xet-cas-url", &shared.cas_url)
        .header("x-xet-access-token", &token)
        .header("x-xet-token-expiration", exp.to_string())
        .body(Body::from(
            json!({ "casUrl": shared.cas_url, "accessToken": token, "exp": exp }).to_string(),
        ))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
