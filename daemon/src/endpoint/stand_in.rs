//! The Hub's answers at a pinned commit, from what this node kept or a fleet member gives,
//! for when the Hub cannot answer (unreachable, 5xx, 429): so `snapshot_download(repo,
//! revision=commit)` and a server pinned to a commit start during an outage.
//!
//! Only public repos are answered here. Whether a caller may read a private or gated repo is
//! the Hub's decision, and a Hub that cannot be asked cannot decide: the caller gets the
//! Hub's own failure, as without zest. Everything handed out is what the Hub itself said
//! at that commit (listing, git-stored files checked against their blob ids, reconstructions
//! whose every chunk is checked against the file's Xet hash before a client sees it).

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use xet::XetHash;
use xet::remote::{CasToken, RepoRef, TreeEntry};

use super::file_jobs::Grant;
use super::route::{Pinned, PinnedRead};
use super::{Endpoint, rewrite, text};
use crate::hubmeta::{Query, check, now_unix};
use crate::sync::lock;

/// The CAS door segment of the Xet tokens this node hands out while the Hub is away
/// (`/cas/fleet/…`): reconstructions behind it come from the fleet, never from a CAS.
pub const FLEET_CAS: &str = "fleet";
/// Tokens handed out here start so, and are good for an hour, as the Hub's are.
const FLEET_TOKEN_PREFIX: &str = "zest-fleet-";
const FLEET_TOKEN_SECS: u64 = 3600;

/// The Hub could not give an answer it would give later: the same line as
/// `hubmeta::outage::unavailable` draws for zestd's own requests.
pub fn unavailable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// A listing request huggingface_hub's `list_repo_tree(recursive=True)` sends (its first
/// page: a later one names a `cursor`, which a whole listing has no use for).
pub fn whole_listing(query: Option<&str>) -> bool {
    let pairs = || {
        query
            .unwrap_or("")
            .split('&')
            .filter_map(|kv| kv.split_once('='))
    };
    pairs().any(|(k, v)| k == "recursive" && matches!(v, "true" | "True" | "1"))
        && !pairs().any(|(k, _)| k == "cursor")
}

/// `GET /api/{type}/{repo}/revision/{commit}` as the Hub shapes it, from the listing.
pub fn revision_info(p: &Pinned, listing: &[TreeEntry]) -> serde_json::Value {
    let siblings: Vec<serde_json::Value> = listing
        .iter()
        .filter(|e| e.kind == "file")
        .map(|e| serde_json::json!({ "rfilename": e.path }))
        .collect();
    serde_json::json!({
        "id": p.repo,
        "sha": p.commit,
        "private": false,
        "gated": false,
        "disabled": false,
        "siblings": siblings,
    })
}

fn json(body: Vec<u8>) -> Response {
    let mut out = Response::new(Body::from(body));
    out.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    out
}

fn set(out: &mut Response, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        out.headers_mut().insert(name, v);
    }
}

/// What every stand-in answer carries: the commit, and who answered.
fn mark(mut out: Response, commit: &str) -> Response {
    set(&mut out, "x-repo-commit", commit);
    set(&mut out, "x-zest-answered-by", "fleet");
    out
}

impl Endpoint {
    /// The listing at the pinned commit, kept here or given by a fleet member, if the repo
    /// is public.
    async fn public_listing(&self, p: &Pinned) -> Option<(RepoRef, Vec<TreeEntry>)> {
        let meta = self.meta.as_ref()?;
        let repo = RepoRef::new(p.repo_type, &p.repo).ok()?;
        let q = Query::Tree {
            repo: repo.clone(),
            commit: p.commit.clone(),
        };
        let (listing, a) = meta.kept_or_fleet(&q, check::tree).await?;
        if a.private {
            tracing::info!(repo = %repo, "the Hub cannot answer, and this repo is private or gated: the Hub's failure stands");
            return None;
        }
        Some((repo, listing))
    }

    /// The Hub's answer to `p` from the fleet, or None when the fleet cannot give it (the
    /// caller then gets the Hub's own failure).
    pub(super) async fn stand_in(
        &self,
        p: &Pinned,
        method: &Method,
        query: Option<&str>,
        range: Option<&str>,
    ) -> Option<Response> {
        if p.read == PinnedRead::Tree && !whole_listing(query) {
            return None;
        }
        let (repo, listing) = self.public_listing(p).await?;
        let out = match &p.read {
            PinnedRead::Tree => json(serde_json::to_vec(&listing).ok()?),
            PinnedRead::RevisionInfo => json(serde_json::to_vec(&revision_info(p, &listing)).ok()?),
            PinnedRead::XetReadToken => self.fleet_token(),
            PinnedRead::Resolve { path } => {
                self.resolve_from_fleet(p, &repo, &listing, path, method, range)
                    .await?
            }
        };
        tracing::info!(repo = %repo, commit = %p.commit, read = ?p.read, "the Hub cannot answer: answered from the fleet");
        Some(mark(out, &p.commit))
    }

    /// A Xet token for our fleet CAS door; good only here.
    fn fleet_token(&self) -> Response {
        let token = format!("{FLEET_TOKEN_PREFIX}{}", super::new_id());
        let exp = now_unix() + FLEET_TOKEN_SECS;
        let cas = format!("{}/cas/{FLEET_CAS}", self.base);
        {
            let mut g = lock(&self.grants);
            if g.len() > super::MAX_DOORS {
                g.clear();
            }
            g.insert(token.clone(), true);
        }
        let body = serde_json::json!({ "accessToken": token, "exp": exp, "casUrl": cas });
        let mut out = json(body.to_string().into_bytes());
        set(&mut out, "x-xet-access-token", &token);
        set(&mut out, "x-xet-token-expiration", &exp.to_string());
        set(&mut out, "x-xet-cas-url", &cas);
        out
    }

    /// `resolve` of one file at the pinned commit: a git-stored file's checked bytes, or a
    /// Xet file's metadata (HEAD) and a redirect to our file door (GET).
    async fn resolve_from_fleet(
        &self,
        p: &Pinned,
        repo: &RepoRef,
        listing: &[TreeEntry],
        path: &str,
        method: &Method,
        range: Option<&str>,
    ) -> Option<Response> {
        let Some(entry) = listing.iter().find(|e| e.kind == "file" && e.path == path) else {
            // The listing at a commit is complete: the Hub would say the same.
            let mut out = text(StatusCode::NOT_FOUND, "Entry not found");
            set(&mut out, "x-error-code", "EntryNotFound");
            return Some(out);
        };
        if let (Some(x), Some(lfs)) = (&entry.xet_hash, &entry.lfs) {
            let file: XetHash = x.parse().ok()?;
            let etag = format!("\"{}\"", lfs.oid);
            let auth = format!(
                "<{}/api/{}/{}/xet-read-token/{}>; rel=\"xet-auth\"",
                self.base,
                p.repo_type.plural(),
                p.repo,
                p.commit
            );
            let mut out = if *method == Method::HEAD {
                // No Location: huggingface_hub follows a redirect to this same host, and the
                // file's metadata is what it came for.
                let mut r = Response::new(Body::empty());
                r.headers_mut()
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(lfs.size));
                r
            } else {
                let door = self.fleet_file_door(file);
                let mut r = Response::new(Body::empty());
                *r.status_mut() = StatusCode::FOUND;
                set(&mut r, "location", &door);
                r
            };
            set(&mut out, "etag", &etag);
            set(&mut out, "x-linked-etag", &etag);
            set(&mut out, "x-linked-size", &lfs.size.to_string());
            set(&mut out, "x-xet-hash", x);
            set(&mut out, "link", &auth);
            return Some(out);
        }
        let blob_id = entry
            .lfs
            .as_ref()
            .map_or(entry.oid.as_str(), |l| l.oid.as_str());
        let q = Query::Blob {
            repo: repo.clone(),
            blob_id: blob_id.to_string(),
        };
        let id = blob_id.to_string();
        let meta = self.meta.as_ref()?;
        let (_, a) = meta.kept_or_fleet(&q, move |b| check::blob(&id, b)).await?;
        if a.private {
            return None;
        }
        Some(bytes_response(
            a.body,
            &format!("\"{blob_id}\""),
            method,
            range,
        ))
    }

    /// A file door whose download takes its reconstruction from the fleet.
    fn fleet_file_door(&self, file: XetHash) -> String {
        self.jobs.ensure(file, self.fleet_grant());
        let id = super::new_id();
        let mut d = lock(&self.doors);
        d.files.insert(id.clone(), super::FileDoor { file });
        d.remember(id.clone());
        format!("{}/file/{id}", self.base)
    }

    fn fleet_grant(&self) -> Grant {
        Grant {
            token: CasToken {
                endpoint: self.upstream.clone(),
                access_token: String::new(),
                expires_unix: u64::MAX,
            },
            public: true,
            from_fleet: true,
        }
    }

    /// A reconstruction behind our fleet CAS door: the kept or a fleet member's answer for
    /// a public file, cut to the caller's `Range`, its fetch URLs pointed at our xorb door.
    pub(super) async fn fleet_reconstruction(
        &self,
        req: Request,
        version: &str,
        hash: &str,
        doors: &str,
    ) -> Response {
        let minted = super::headers::bearer(req.headers()).is_some_and(|t| {
            t.starts_with(FLEET_TOKEN_PREFIX) && lock(&self.grants).contains_key(&t)
        });
        if !minted {
            return text(
                StatusCode::UNAUTHORIZED,
                "zestd: this CAS door takes only the tokens zestd handed out; ask for a new one",
            );
        }
        let range = req
            .headers()
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        match self
            .reconstruction_from_fleet(version, hash, range.as_deref(), doors)
            .await
        {
            Some(r) => r,
            None => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "zestd: the Hub cannot be reached and no fleet member holds this public file's reconstruction",
            ),
        }
    }

    /// The kept or a fleet member's reconstruction of a public file, as the CAS would answer
    /// `GET /{version}/reconstructions/{hash}` with `range`; None if there is none to give.
    pub(super) async fn reconstruction_from_fleet(
        &self,
        version: &str,
        hash: &str,
        range: Option<&str>,
        doors: &str,
    ) -> Option<Response> {
        if version != "v2" {
            return Some(text(
                StatusCode::NOT_IMPLEMENTED,
                "zestd: reconstructions from the fleet are answered in v2 only",
            ));
        }
        let file: XetHash = hash.parse().ok()?;
        let meta = self.meta.as_ref()?;
        let (r, a) = meta
            .kept_or_fleet(&Query::Reconstruction(file), check::reconstruction)
            .await?;
        if a.private {
            return None;
        }
        let len = r.unpacked_len() - r.offset_into_first_range;
        let r = match range {
            None => r,
            Some(h) => match rewrite::parse_range(h, len).and_then(|(a, b)| r.slice(a, b)) {
                Some(s) => s,
                None => return Some(text(StatusCode::RANGE_NOT_SATISFIABLE, "zestd: bad range")),
            },
        };
        self.jobs.ensure(file, self.fleet_grant());
        let body = serde_json::to_vec(&r).ok()?;
        let body = self.point_at_doors(&body, "v2", file, doors)?;
        tracing::info!(file = %file, "the CAS cannot answer: reconstruction from the fleet");
        let mut out = json(body);
        set(&mut out, "x-zest-answered-by", "fleet");
        Some(out)
    }
}

/// A git-stored file's bytes as `resolve` answers them, with `Range`.
fn bytes_response(body: Vec<u8>, etag: &str, method: &Method, range: Option<&str>) -> Response {
    let size = body.len() as u64;
    let (a, b, partial) = match range.map(|r| rewrite::parse_range(r, size)) {
        None => (0, size, false),
        Some(Some((a, b))) => (a, b + 1, true),
        Some(None) => return text(StatusCode::RANGE_NOT_SATISFIABLE, "zestd: bad range"),
    };
    let part = body
        .get(a as usize..b as usize)
        .map(<[u8]>::to_vec)
        .unwrap_or_default();
    let len = part.len() as u64;
    let mut out = if *method == Method::HEAD {
        Response::new(Body::empty())
    } else {
        Response::new(Body::from(part))
    };
    let h = out.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    if partial {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {a}-{}/{size}", b - 1)) {
            h.insert(header::CONTENT_RANGE, v);
        }
        *out.status_mut() = StatusCode::PARTIAL_CONTENT;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_whole_first_page_is_a_whole_listing() {
        assert!(whole_listing(Some("recursive=True&expand=False")));
        assert!(whole_listing(Some("expand=false&recursive=true")));
        assert!(!whole_listing(Some("recursive=false")));
        assert!(!whole_listing(None));
        assert!(!whole_listing(Some("recursive=True&cursor=abc")));
    }

    #[test]
    fn what_counts_as_the_hub_being_unable() {
        assert!(unavailable(StatusCode::TOO_MANY_REQUESTS));
        assert!(unavailable(StatusCode::BAD_GATEWAY));
        assert!(unavailable(StatusCode::SERVICE_UNAVAILABLE));
        assert!(!unavailable(StatusCode::NOT_FOUND));
        assert!(!unavailable(StatusCode::UNAUTHORIZED));
        assert!(!unavailable(StatusCode::FORBIDDEN));
    }

    #[test]
    fn git_bytes_answer_ranges() {
        let body = b"0123456789".to_vec();
        let r = bytes_response(body.clone(), "\"x\"", &Method::GET, Some("bytes=2-4"));
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(r.headers()[header::CONTENT_RANGE], "bytes 2-4/10");
        assert_eq!(r.headers()[header::CONTENT_LENGTH], "3");
        let r = bytes_response(body.clone(), "\"x\"", &Method::HEAD, None);
        assert_eq!(r.headers()[header::CONTENT_LENGTH], "10");
        let r = bytes_response(body, "\"x\"", &Method::GET, Some("bytes=20-"));
        assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    }
}
