//! Percent-encoding the way huggingface_hub's `urllib.parse.quote` does it, so the URLs
//! we request are the URLs the reference client requests.

/// Encodes everything except ASCII letters, digits, `_.-~` and the bytes in `safe`.
pub fn quote(s: &str, safe: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"_.-~".contains(&b) || safe.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A repo path inside a URL: slashes stay.
pub fn quote_path(s: &str) -> String {
    quote(s, b"/")
}

/// A revision inside a URL: `refs/pr/1` becomes one segment.
pub fn quote_segment(s: &str) -> String {
    quote(s, b"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_python_quote() {
        assert_eq!(quote_path("a b/(c)#d.bin"), "a%20b/%28c%29%23d.bin");
        assert_eq!(quote_segment("refs/pr/1"), "refs%2Fpr%2F1");
        assert_eq!(quote_path("é"), "%C3%A9");
    }
}
