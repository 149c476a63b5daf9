//! Which `Host` headers the endpoint answers. Tokens pass through it, so a web page that
//! points a name of its own at 127.0.0.1 (DNS rebinding) must not be able to use it: only
//! the endpoint's own address, and loopback names, with its port.

use std::net::SocketAddr;

pub fn allowed(host: Option<&str>, bound: SocketAddr) -> bool {
    let Some(host) = host else { return false };
    let host = host.trim().to_ascii_lowercase();
    let port = bound.port();
    let own = if bound.is_ipv6() {
        format!("[{}]:{port}", bound.ip())
    } else {
        format!("{}:{port}", bound.ip())
    };
    host == own
        || host == format!("localhost:{port}")
        || (bound.ip().is_loopback()
            && (host == format!("127.0.0.1:{port}") || host == format!("[::1]:{port}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_own_names() {
        let b: SocketAddr = "127.0.0.1:4748".parse().unwrap();
        assert!(allowed(Some("127.0.0.1:4748"), b));
        assert!(allowed(Some("localhost:4748"), b));
        assert!(allowed(Some("LOCALHOST:4748"), b));
        assert!(!allowed(Some("evil.example:4748"), b), "DNS rebinding");
        assert!(!allowed(Some("127.0.0.1:80"), b));
        assert!(!allowed(Some("127.0.0.1"), b));
        assert!(!allowed(None, b));
        let lan: SocketAddr = "10.1.2.3:4748".parse().unwrap();
        assert!(allowed(Some("10.1.2.3:4748"), lan));
        assert!(!allowed(Some("127.0.0.1:4748"), lan));
    }
}
