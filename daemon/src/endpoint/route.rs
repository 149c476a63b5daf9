//! What a request to the local endpoint is, from its method and path alone. Pure.

use xet::remote::RepoType;

/// The kinds of request the endpoint treats specially; everything else is forwarded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET /api/{models|datasets|spaces}/{repo}/xet-read-token/{rev}`: forwarded, and its
    /// CAS URL pointed at us.
    XetReadToken {
        repo_type: String,
        repo: String,
    },
    /// `/cas/{base}/{rest}`: a request for the CAS whose URL `base` encodes.
    Cas {
        base: String,
        rest: CasRoute,
    },
    /// `GET /xorb/{id}`: a xorb range we pointed a reconstruction's URL at.
    XorbFetch {
        id: String,
    },
    /// `GET /file/{id}`: a whole file we pointed a `resolve` redirect at.
    File {
        id: String,
    },
    /// `GET /{…}/resolve/{rev}/{path}`: forwarded; a redirect to a Xet bridge is pointed at us.
    Resolve,
    /// zestd's own small API for the Python package.
    ZestStatus,
    ZestPull,
    /// `GET /metrics`, `GET /healthz`: the daemon's own, never the Hub's.
    Metrics,
    Health,
    Forward,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CasRoute {
    Reconstruction {
        version: String,
        hash: String,
    },
    Telemetry,
    /// Anything else the CAS serves: forwarded untouched.
    Other {
        path: String,
    },
}

pub fn classify(method: &str, path: &str) -> Route {
    let get = method == "GET" || method == "HEAD";
    if let Some(rest) = path.strip_prefix("/cas/") {
        let (base, tail) = rest.split_once('/').unwrap_or((rest, ""));
        return Route::Cas {
            base: base.to_string(),
            rest: cas_route(method, tail),
        };
    }
    if get && let Some(id) = path.strip_prefix("/xorb/") {
        return Route::XorbFetch { id: id.to_string() };
    }
    if get && let Some(id) = path.strip_prefix("/file/") {
        return Route::File { id: id.to_string() };
    }
    if path == "/metrics" && get {
        return Route::Metrics;
    }
    if path == "/healthz" && get {
        return Route::Health;
    }
    if path == "/zest/status" && get {
        return Route::ZestStatus;
    }
    if path == "/zest/pull" && method == "POST" {
        return Route::ZestPull;
    }
    if method == "GET"
        && let Some(rest) = path.strip_prefix("/api/")
        && let Some((repo_type, rest)) = rest.split_once('/')
        && matches!(repo_type, "models" | "datasets" | "spaces")
        && let Some((repo, _rev)) = rest.split_once("/xet-read-token/")
        && !repo.is_empty()
    {
        return Route::XetReadToken {
            repo_type: repo_type.to_string(),
            repo: repo.to_string(),
        };
    }
    if get && !path.starts_with("/api/") && path.contains("/resolve/") {
        return Route::Resolve;
    }
    Route::Forward
}

pub fn cas_route(method: &str, tail: &str) -> CasRoute {
    for version in ["v1", "v2"] {
        if method == "GET"
            && let Some(hash) = tail
                .strip_prefix(version)
                .and_then(|t| t.strip_prefix("/reconstructions/"))
            && hash.len() == 64
            && hash.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return CasRoute::Reconstruction {
                version: version.to_string(),
                hash: hash.to_string(),
            };
        }
    }
    if method == "POST" && tail.starts_with("v1/telemetry") {
        return CasRoute::Telemetry;
    }
    CasRoute::Other {
        path: format!("/{tail}"),
    }
}

/// A read of the Hub API at a fixed commit: what the fleet can answer while the Hub cannot
/// (the answer at a commit never changes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pinned {
    pub repo_type: RepoType,
    pub repo: String,
    pub commit: String,
    pub read: PinnedRead,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PinnedRead {
    /// `GET /api/{type}/{repo}/revision/{commit}`
    RevisionInfo,
    /// `GET /api/{type}/{repo}/tree/{commit}` (the whole repo; a subfolder is not answered)
    Tree,
    /// `GET /api/{type}/{repo}/xet-read-token/{commit}`
    XetReadToken,
    /// `GET|HEAD /[{type}/]{repo}/resolve/{commit}/{path}`, the path percent-decoded.
    Resolve { path: String },
}

fn is_commit(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A repo id as the Hub's paths name one: `name` or `namespace/name`.
fn repo_id(parts: &[&str]) -> Option<String> {
    (matches!(parts.len(), 1 | 2)
        && parts
            .iter()
            .all(|p| !p.is_empty() && *p != ".." && *p != "."))
    .then(|| parts.join("/"))
}

/// The pinned read `method path` is, if it is one. Pure.
pub fn pinned(method: &str, path: &str) -> Option<Pinned> {
    let get = method == "GET";
    let parts: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
    if let ["api", kind, rest @ ..] = parts.as_slice() {
        if !get || rest.len() < 3 {
            return None;
        }
        let repo_type = RepoType::parse(kind).filter(|_| kind.ends_with('s'))?;
        let (repo, tail) = rest.split_at(rest.len() - 2);
        let read = match tail[0] {
            "revision" => PinnedRead::RevisionInfo,
            "tree" => PinnedRead::Tree,
            "xet-read-token" => PinnedRead::XetReadToken,
            _ => return None,
        };
        let commit = tail[1];
        if !is_commit(commit) {
            return None;
        }
        return Some(Pinned {
            repo_type,
            repo: repo_id(repo)?,
            commit: commit.to_string(),
            read,
        });
    }
    if !(get || method == "HEAD") {
        return None;
    }
    let (repo_type, rest) = match parts.first() {
        Some(&"datasets") => (RepoType::Dataset, &parts[1..]),
        _ => (RepoType::Model, &parts[..]),
    };
    let at = rest.iter().position(|p| *p == "resolve")?;
    let commit = rest.get(at + 1).filter(|c| is_commit(c))?;
    let file = rest.get(at + 2..).filter(|f| !f.is_empty())?.join("/");
    let file = percent_decode(&file)?;
    if file
        .split('/')
        .any(|p| p.is_empty() || p == "." || p == "..")
    {
        return None;
    }
    Some(Pinned {
        repo_type,
        repo: repo_id(&rest[..at])?,
        commit: commit.to_string(),
        read: PinnedRead::Resolve { path: file },
    })
}

/// `%XX` escapes decoded; None for a malformed escape or bytes that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_reads() {
        let c = "0123456789abcdef0123456789abcdef01234567";
        let p = |m: &str, path: &str| pinned(m, path);
        assert_eq!(
            p("GET", &format!("/api/models/acme/m/tree/{c}")),
            Some(Pinned {
                repo_type: RepoType::Model,
                repo: "acme/m".into(),
                commit: c.into(),
                read: PinnedRead::Tree
            })
        );
        assert_eq!(
            p("GET", &format!("/api/datasets/d/revision/{c}")).map(|x| (
                x.repo_type,
                x.repo,
                x.read
            )),
            Some((RepoType::Dataset, "d".into(), PinnedRead::RevisionInfo))
        );
        assert_eq!(
            p("GET", &format!("/api/models/acme/m/xet-read-token/{c}")).map(|x| x.read),
            Some(PinnedRead::XetReadToken)
        );
        assert_eq!(
            p("GET", &format!("/acme/m/resolve/{c}/sub/a%20b.json")).map(|x| (x.repo, x.read)),
            Some((
                "acme/m".into(),
                PinnedRead::Resolve {
                    path: "sub/a b.json".into()
                }
            ))
        );
        assert_eq!(
            p("HEAD", &format!("/datasets/acme/d/resolve/{c}/x.bin")).map(|x| x.repo_type),
            Some(RepoType::Dataset)
        );
        // A branch, a subfolder listing, a write, a climb out of the repo: not pinned reads.
        assert_eq!(p("GET", "/api/models/acme/m/tree/main"), None);
        assert_eq!(p("GET", &format!("/api/models/acme/m/tree/{c}/sub")), None);
        assert_eq!(p("POST", &format!("/api/models/acme/m/tree/{c}")), None);
        assert_eq!(p("GET", &format!("/acme/m/resolve/{c}/..%2F..%2Fx")), None);
        assert_eq!(p("GET", &format!("/acme/m/resolve/{c}/a/../b")), None);
        assert_eq!(p("GET", &format!("/acme/m/resolve/{c}/%zz")), None);
        assert_eq!(p("GET", &format!("/a/b/c/resolve/{c}/x")), None);
        assert_eq!(p("GET", &format!("/api/spaces/acme/s/tree/{c}")), None);
    }

    #[test]
    fn routes() {
        assert_eq!(
            classify("GET", "/api/models/acme/m/xet-read-token/main"),
            Route::XetReadToken {
                repo_type: "models".into(),
                repo: "acme/m".into()
            }
        );
        assert_eq!(
            classify("GET", "/api/datasets/d/xet-read-token/refs%2Fpr%2F1"),
            Route::XetReadToken {
                repo_type: "datasets".into(),
                repo: "d".into()
            }
        );
        assert_eq!(
            classify("GET", "/api/models/acme/m/xet-write-token/main"),
            Route::Forward,
            "write tokens are forwarded untouched"
        );
        assert_eq!(classify("GET", "/metrics"), Route::Metrics);
        assert_eq!(classify("HEAD", "/healthz"), Route::Health);
        assert_eq!(
            classify("POST", "/metrics"),
            Route::Forward,
            "only reads are the daemon's"
        );
        let h = "ab".repeat(32);
        assert_eq!(
            classify("GET", &format!("/cas/Zm9v/v2/reconstructions/{h}")),
            Route::Cas {
                base: "Zm9v".into(),
                rest: CasRoute::Reconstruction {
                    version: "v2".into(),
                    hash: h.clone()
                }
            }
        );
        assert_eq!(
            classify("POST", "/cas/Zm9v/v1/telemetry"),
            Route::Cas {
                base: "Zm9v".into(),
                rest: CasRoute::Telemetry
            }
        );
        assert_eq!(
            classify("GET", "/cas/Zm9v/v1/reconstructions/nothex"),
            Route::Cas {
                base: "Zm9v".into(),
                rest: CasRoute::Other {
                    path: "/v1/reconstructions/nothex".into()
                }
            }
        );
        assert_eq!(
            classify("GET", "/xorb/abc"),
            Route::XorbFetch { id: "abc".into() }
        );
        assert_eq!(
            classify("GET", "/acme/m/resolve/main/config.json"),
            Route::Resolve
        );
        assert_eq!(
            classify("GET", "/datasets/d/resolve/main/x.bin"),
            Route::Resolve
        );
        assert_eq!(
            classify("POST", "/api/models/acme/m/commit/main"),
            Route::Forward
        );
        assert_eq!(classify("GET", "/api/models/acme/m"), Route::Forward);
    }
}
