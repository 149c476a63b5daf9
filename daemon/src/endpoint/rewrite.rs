//! The few changes the endpoint makes to what passes through, as pure functions: URLs of the
//! upstream Hub pointed at us, the CAS URL of a Xet token pointed at our CAS door, and the
//! fetch URLs of a reconstruction pointed at our xorb door.

use serde_json::Value;
use xet::XetHash;
use xet::reconstruction::{ChunkRange, HttpRange};

/// A CAS base URL as one path segment (hex, so any URL survives unchanged).
pub fn encode_base(url: &str) -> String {
    url.bytes().map(|b| format!("{b:02x}")).collect()
}

/// The CAS base URL a path segment encodes; only http(s) URLs without a path query.
pub fn decode_base(seg: &str) -> Option<String> {
    if !seg.len().is_multiple_of(2) || seg.len() > 2048 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..seg.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(seg.get(i..i + 2)?, 16).ok())
        .collect();
    let s = String::from_utf8(bytes?).ok()?;
    let ok = (s.starts_with("https://") || s.starts_with("http://"))
        && !s.contains(['?', '#', ' ', '\r', '\n']);
    ok.then_some(s)
}

/// `value` with every URL under `upstream` moved under `ours` (Link, Location, refresh routes).
pub fn rebase(value: &str, upstream: &str, ours: &str) -> Option<String> {
    let up = upstream.trim_end_matches('/');
    if up.is_empty() || !value.contains(up) {
        return None;
    }
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    let mut changed = false;
    while let Some(i) = rest.find(up) {
        let after = &rest[i + up.len()..];
        out.push_str(&rest[..i]);
        // Only whole origins: `http://h:80` must not match `http://h:8000`.
        if after.is_empty() || after.starts_with(['/', '>', '"', ';', ',', ' ']) {
            out.push_str(ours.trim_end_matches('/'));
            changed = true;
        } else {
            out.push_str(up);
        }
        rest = after;
    }
    out.push_str(rest);
    changed.then_some(out)
}

/// The JSON body of a Xet token answer with `casUrl` replaced.
pub fn token_body(body: &[u8], cas: impl Fn(&str) -> String) -> Option<Vec<u8>> {
    let mut v: Value = serde_json::from_slice(body).ok()?;
    let url = v.get("casUrl")?.as_str()?.to_string();
    v["casUrl"] = Value::String(cas(&url));
    serde_json::to_vec(&v).ok()
}

/// One fetch URL of a reconstruction: which xorb, which chunk ranges at which bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchUrl {
    pub xorb: XetHash,
    pub url: String,
    pub ranges: Vec<(ChunkRange, HttpRange)>,
}

/// A reconstruction answer (v1 or v2) with every fetch URL replaced by what `to` returns for
/// it; everything else is kept as the CAS sent it. None if it is not a reconstruction.
pub fn reconstruction_body(
    body: &[u8],
    version: &str,
    mut to: impl FnMut(FetchUrl) -> String,
) -> Option<Vec<u8>> {
    let mut v: Value = serde_json::from_slice(body).ok()?;
    let key = if version == "v1" {
        "fetch_info"
    } else {
        "xorbs"
    };
    let map = v.get_mut(key)?.as_object_mut()?;
    for (hash, entries) in map.iter_mut() {
        let xorb: XetHash = hash.parse().ok()?;
        for e in entries.as_array_mut()? {
            let url = e.get("url")?.as_str()?.to_string();
            let ranges = if version == "v1" {
                let chunks: ChunkRange = serde_json::from_value(e.get("range")?.clone()).ok()?;
                let bytes: HttpRange = serde_json::from_value(e.get("url_range")?.clone()).ok()?;
                vec![(chunks, bytes)]
            } else {
                let mut out = Vec::new();
                for r in e.get("ranges")?.as_array()? {
                    let chunks: ChunkRange =
                        serde_json::from_value(r.get("chunks")?.clone()).ok()?;
                    let bytes: HttpRange = serde_json::from_value(r.get("bytes")?.clone()).ok()?;
                    out.push((chunks, bytes));
                }
                out
            };
            let new = to(FetchUrl { xorb, url, ranges });
            e["url"] = Value::String(new);
        }
    }
    serde_json::to_vec(&v).ok()
}

/// The header the xorb format puts before a chunk of `size` bytes, stored uncompressed:
/// hf_xet decodes any compression scheme, so nothing needs to be recompressed.
pub fn chunk_header(size: u32) -> [u8; xet::xorb::CHUNK_HEADER_LEN] {
    xet::xorb::ChunkHeader {
        scheme: xet::compression::CompressionScheme::None,
        compressed_len: size,
        uncompressed_len: size,
    }
    .to_bytes()
}

/// `bytes=a-b` (one range; `b` may be open): the first and last byte, inclusive.
pub fn parse_range(header: &str, size: u64) -> Option<(u64, u64)> {
    let spec = header.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = match (a.trim(), b.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().ok()?;
            (size.checked_sub(n.min(size))?, size.checked_sub(1)?)
        }
        (a, "") => (a.parse().ok()?, size.checked_sub(1)?),
        (a, b) => (
            a.parse().ok()?,
            b.parse::<u64>().ok()?.min(size.checked_sub(1)?),
        ),
    };
    (a <= b && b < size).then_some((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bases_round_trip_and_refuse_junk() {
        let u = "https://cas-server.example:443";
        assert_eq!(decode_base(&encode_base(u)).as_deref(), Some(u));
        assert_eq!(decode_base("zz"), None);
        assert_eq!(decode_base(&encode_base("file:///etc/passwd")), None);
        assert_eq!(decode_base(&encode_base("http://h/?q")), None);
    }

    #[test]
    fn rebase_whole_origins_only() {
        let up = "http://127.0.0.1:80";
        assert_eq!(
            rebase(
                "<http://127.0.0.1:80/api/models/a/xet-read-token/c>; rel=\"xet-auth\"",
                up,
                "http://127.0.0.1:4748"
            )
            .as_deref(),
            Some("<http://127.0.0.1:4748/api/models/a/xet-read-token/c>; rel=\"xet-auth\"")
        );
        assert_eq!(rebase("http://127.0.0.1:8000/x", up, "http://us"), None);
        assert_eq!(rebase("https://cdn.example/x", up, "http://us"), None);
    }

    #[test]
    fn token_cas_url_is_replaced() {
        let b = br#"{"accessToken":"t","exp":5,"casUrl":"http://cas:1"}"#;
        let out = token_body(b, |u| format!("http://us/cas/{}", encode_base(u))).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["accessToken"], "t");
        assert_eq!(
            v["casUrl"],
            format!("http://us/cas/{}", encode_base("http://cas:1"))
        );
    }

    #[test]
    fn reconstruction_urls_are_replaced_both_versions() {
        let x = "11".repeat(32);
        let v2 = format!(
            r#"{{"offset_into_first_range":0,"terms":[],"xorbs":{{"{x}":[{{"url":"https://cdn/a","ranges":[{{"chunks":{{"start":0,"end":3}},"bytes":{{"start":0,"end":99}}}}]}}]}},"extra":1}}"#
        );
        let mut seen = Vec::new();
        let out = reconstruction_body(v2.as_bytes(), "v2", |f| {
            seen.push(f);
            "http://us/xorb/1".into()
        })
        .unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].url, "https://cdn/a");
        assert_eq!(seen[0].ranges[0].0, ChunkRange { start: 0, end: 3 });
        assert_eq!(seen[0].ranges[0].1, HttpRange { start: 0, end: 99 });
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["xorbs"][&x][0]["url"], "http://us/xorb/1");
        assert_eq!(v["extra"], 1, "what we do not know is kept");
        let v1 = format!(
            r#"{{"offset_into_first_range":0,"terms":[],"fetch_info":{{"{x}":[{{"range":{{"start":2,"end":4}},"url":"https://cdn/b","url_range":{{"start":10,"end":20}}}}]}}}}"#
        );
        let out = reconstruction_body(v1.as_bytes(), "v1", |f| {
            assert_eq!(f.ranges[0].0, ChunkRange { start: 2, end: 4 });
            "http://us/xorb/2".into()
        })
        .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["fetch_info"][&x][0]["url"], "http://us/xorb/2");
        assert!(reconstruction_body(b"{}", "v2", |_| String::new()).is_none());
    }

    #[test]
    fn chunks_decode_as_hf_would() {
        let data = b"hello xorb";
        let mut enc = chunk_header(data.len() as u32).to_vec();
        enc.extend_from_slice(data);
        let h = xet::xorb::ChunkHeader::parse(&enc, enc.len() - 8).unwrap();
        assert_eq!(h.uncompressed_len as usize, data.len());
        assert_eq!(&enc[8..], data);
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=95-200", 100), Some((95, 99)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
    }
}
