//! HTTP helpers the Hub and CAS clients share: error text, `Retry-After`, bodies, origins.

use std::time::Duration;

use reqwest::Response;
use reqwest::header::HeaderMap;

use super::deadline::{BodyFault, BodyWatch, Deadlines};
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

/// What `Retry-After` asks for, in seconds (capped later, by [`super::deadline::retry_wait`]).
pub(crate) fn retry_after(h: &HeaderMap) -> Option<Duration> {
    let secs: u64 = h
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs))
}

/// Sends a request, waiting at most `d.first_byte` for the status line and headers.
pub(crate) async fn send_within(
    req: reqwest::RequestBuilder,
    url: &str,
    d: &Deadlines,
) -> Result<Response, RemoteError> {
    match tokio::time::timeout(d.first_byte, req.send()).await {
        Ok(Ok(resp)) => Ok(resp),
        Ok(Err(e)) => Err(RemoteError::Unreachable {
            url: url.to_string(),
            detail: describe_reqwest(&e),
        }),
        Err(_) => Err(RemoteError::Unreachable {
            url: url.to_string(),
            detail: format!("no answer within {} s", d.first_byte.as_secs()),
        }),
    }
}

/// A body that ended early, as the error a caller retries.
pub(crate) fn body_error(url: &str, fault: BodyFault) -> RemoteError {
    RemoteError::Unreachable {
        url: url.to_string(),
        detail: fault.to_string(),
    }
}

/// Largest answer read whole (JSON from the Hub and the CAS). A Hub tree page is a few
/// hundred KiB and a reconstruction of a terabyte file a few MiB; a server sending more is
/// broken or hostile, and must not make us hold it.
pub(crate) const MAX_BODY: usize = 64 << 20;

/// Reads a whole answer, refusing one over [`MAX_BODY`] before holding it, and one that
/// stalls (see [`Deadlines`]).
pub(crate) async fn read_body(
    resp: Response,
    url: &str,
    d: &Deadlines,
) -> Result<bytes::Bytes, RemoteError> {
    read_body_limited(resp, url, MAX_BODY, d).await
}

/// The first `max` bytes of an answer at most (an error's explanation), whatever follows,
/// and whatever arrived before the body stalled.
pub(crate) async fn read_start(mut resp: Response, max: usize, d: &Deadlines) -> bytes::Bytes {
    let mut body = bytes::BytesMut::new();
    let mut watch = BodyWatch::new(d);
    while body.len() < max {
        match watch.next(&mut resp).await {
            Ok(Some(piece)) => {
                let take = piece.len().min(max - body.len());
                body.extend_from_slice(&piece[..take]);
            }
            _ => break,
        }
    }
    body.freeze()
}

async fn read_body_limited(
    mut resp: Response,
    url: &str,
    max: usize,
    d: &Deadlines,
) -> Result<bytes::Bytes, RemoteError> {
    let too_large = || RemoteError::protocol(url, format!("answer larger than {max} bytes"));
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let mut body = bytes::BytesMut::new();
    let mut watch = BodyWatch::new(d);
    loop {
        match watch.next(&mut resp).await {
            Ok(Some(piece)) => {
                if body.len() + piece.len() > max {
                    return Err(too_large());
                }
                body.extend_from_slice(&piece);
            }
            Ok(None) => return Ok(body.freeze()),
            Err(fault) => return Err(body_error(url, fault)),
        }
    }
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
