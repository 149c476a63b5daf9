//! What the endpoint reads from a client's request headers, in one place.

use axum::http::{HeaderMap, header};

/// The token of an `Authorization: Bearer …` header (the scheme in either case, as
/// huggingface_hub and hf_xet send it).
pub fn bearer(h: &HeaderMap) -> Option<String> {
    h.get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::to_string)
}

/// The `Range` header, as text.
pub fn range(h: &HeaderMap) -> Option<String> {
    h.get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_bearer_token_and_a_range() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        assert_eq!(range(&h), None);
        h.insert(header::AUTHORIZATION, "bearer hf_x".parse().unwrap());
        h.insert(header::RANGE, "bytes=0-9".parse().unwrap());
        assert_eq!(bearer(&h).as_deref(), Some("hf_x"));
        assert_eq!(range(&h).as_deref(), Some("bytes=0-9"));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
    }
}
