//! What a request to the local endpoint is, from its method and path alone. Pure.

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

#[cfg(test)]
mod tests {
    use super::*;

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
