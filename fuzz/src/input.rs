//! Carving structured values out of fuzz bytes.

/// The input cut at newlines into at most `n` fields, the last one taking the rest.
pub fn fields(data: &[u8], n: usize) -> Vec<String> {
    String::from_utf8_lossy(data)
        .splitn(n, '\n')
        .map(str::to_string)
        .collect()
}
