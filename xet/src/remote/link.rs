//! The HTTP `Link` header (RFC 8288), as far as the Hub uses it: `<url>; rel="name"` pairs.

/// The URL of the first link whose `rel` includes `rel`.
pub fn find_rel(header: &str, rel: &str) -> Option<String> {
    let mut rest = header;
    loop {
        let open = rest.find('<')?;
        let close = open + rest[open..].find('>')?;
        let url = &rest[open + 1..close];
        let after = &rest[close + 1..];
        // Parameters run until the next link, which starts with ", <".
        let params_end = after.find(", <").map(|i| i + 1).unwrap_or(after.len());
        let params = &after[..params_end];
        for param in params.split(';') {
            let param = param.trim().trim_matches(',').trim();
            if let Some((k, v)) = param.split_once('=')
                && k.trim().eq_ignore_ascii_case("rel")
                && v.trim()
                    .trim_matches('"')
                    .split_whitespace()
                    .any(|r| r == rel)
            {
                return Some(url.to_string());
            }
        }
        rest = &after[params_end..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_xet_auth() {
        let h = r#"<https://hub/api/models/a/b/xet-read-token/abc>; rel="xet-auth", <https://cas/v1/reconstructions/x>; rel="xet-reconstruction-info""#;
        assert_eq!(
            find_rel(h, "xet-auth").as_deref(),
            Some("https://hub/api/models/a/b/xet-read-token/abc")
        );
        assert_eq!(
            find_rel(h, "xet-reconstruction-info").as_deref(),
            Some("https://cas/v1/reconstructions/x")
        );
        assert_eq!(find_rel(h, "next"), None);
        assert_eq!(
            find_rel(r#"<https://h/t?cursor=a,b>; rel="next""#, "next").as_deref(),
            Some("https://h/t?cursor=a,b")
        );
        assert_eq!(find_rel("garbage", "next"), None);
    }
}
