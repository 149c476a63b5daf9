//! HTTP helpers the Hub and CAS clients share: error text, `Retry-After`, bodies, origins.

use std::time::Duration;

use reqwest::Response;
use reqwest::header::HeaderMap;

use super::error::RemoteError;

pub(crate) fn describe_reqwest(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

pub(crate) fn retry_after(h: &HeaderMap) -> Option<Duration> {
    let secs: u64 = h
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs.min(60)))
}

pub(crate) async fn read_body(resp: Response, url: &str) -> Result<bytes::Bytes, RemoteError> {
    resp.bytes().await.map_err(|e| RemoteError::Unreachable {
        url: url.to_string(),
        detail: describe_reqwest(&e),
    })
}

fn origin(url: &str) -> Option<(String, String, u16)> {
    let u = reqwest::Url::parse(url).ok()?;
    Some((
        u.scheme().to_string(),
        u.host_str()?.to_ascii_lowercase(),
        u.port_or_known_default()?,
    ))
}

pub(crate) fn same_origin(a: &str, b: &str) -> bool {
    match (origin(a), origin(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}
