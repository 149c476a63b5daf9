//! `trees/<commit>.json`, serialized exactly as Python's `json.dump(data, f, indent=1)`
//! writes it, so the file is byte-identical to huggingface_hub's.

use std::fmt::Write as _;

/// One file of the listing, in huggingface_hub's `TreeCacheEntry.to_json` key order.
pub struct TreeCacheEntry<'a> {
    pub path: &'a str,
    pub size: u64,
    pub blob_id: &'a str,
    pub lfs: Option<(&'a str, u64)>,
    pub xet_hash: Option<&'a str>,
}

/// The document; `entries` need not be sorted.
pub fn render(entries: &mut [TreeCacheEntry<'_>]) -> String {
    entries.sort_by(|a, b| python_str_cmp(a.path, b.path));
    let mut s = String::from("{\n \"format_version\": 1,\n \"files\": {");
    if entries.is_empty() {
        s.push_str("}\n}");
        return s;
    }
    for (i, e) in entries.iter().enumerate() {
        s.push_str(if i == 0 { "\n  " } else { ",\n  " });
        push_str_literal(&mut s, e.path);
        let _ = write!(s, ": {{\n   \"size\": {},\n   \"blob_id\": ", e.size);
        push_str_literal(&mut s, e.blob_id);
        if let Some((sha, size)) = e.lfs {
            s.push_str(",\n   \"lfs_sha256\": ");
            push_str_literal(&mut s, sha);
            let _ = write!(s, ",\n   \"lfs_size\": {size}");
        }
        if let Some(x) = e.xet_hash {
            s.push_str(",\n   \"xet_hash\": ");
            push_str_literal(&mut s, x);
        }
        s.push_str("\n  }");
    }
    s.push_str("\n }\n}");
    s
}

/// Python sorts `str` by code point; so does comparing UTF-8 bytes.
fn python_str_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    a.as_bytes().cmp(b.as_bytes())
}

/// A JSON string literal with `ensure_ascii=True`, as Python's encoder writes it.
fn push_str_literal(s: &mut String, v: &str) {
    s.push('"');
    for c in v.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            '\u{8}' => s.push_str("\\b"),
            '\u{c}' => s.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(s, "\\u{unit:04x}");
                }
            }
            c => s.push(c),
        }
    }
    s.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_python() {
        let mut s = String::new();
        push_str_literal(&mut s, "a\"b\\c\nd\u{1}é😀\u{7f}");
        assert_eq!(s, r#""a\"b\\c\nd\u0001\u00e9\ud83d\ude00\u007f""#);
    }

    #[test]
    fn empty_listing() {
        assert_eq!(
            render(&mut []),
            "{\n \"format_version\": 1,\n \"files\": {}\n}"
        );
    }
}
