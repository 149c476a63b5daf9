//! What a local client sends the endpoint: method, path, `Host` and `Range`, one per line.

use std::net::SocketAddr;

use zestd::endpoint::{host, rewrite, route};

use crate::input::fields;

pub fn run(data: &[u8]) {
    let f = fields(data, 5);
    let get = |i: usize| f.get(i).map(String::as_str).unwrap_or("");
    let (method, path, host_header, range, size) = (get(0), get(1), get(2), get(3), get(4));
    if let route::Route::Cas { base, rest } = route::classify(method, path) {
        // The CAS door only ever talks to an http(s) origin the segment names.
        if let Some(url) = rewrite::decode_base(&base) {
            assert!(url.starts_with("http://") || url.starts_with("https://"));
        }
        if let route::CasRoute::Reconstruction { version, .. } = rest {
            assert!(version == "v1" || version == "v2", "{version:?}");
        }
    }
    let _ = rewrite::rebase(path, "http://127.0.0.1:80", "http://127.0.0.1:4748");
    let bound: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 4748));
    if host::allowed(Some(host_header), bound) {
        // Only the endpoint's own names pass (DNS rebinding).
        let h = host_header.trim().to_ascii_lowercase();
        assert!(h.ends_with(":4748"), "{host_header:?} was allowed");
    }
    let size = size.trim().parse::<u64>().unwrap_or(1 << 20);
    if let Some((a, b)) = rewrite::parse_range(range, size) {
        assert!(a <= b && b < size, "range {a}-{b} of {size} bytes");
    }
    // A base the endpoint encoded decodes to what it was, or not at all.
    if let Some(back) = rewrite::decode_base(&rewrite::encode_base(path)) {
        assert_eq!(back, path);
    }
}
