use thiserror::Error;

/// Everything that can go wrong while decoding or encoding Xet data.
///
/// Every malformed input maps to one of these; nothing in this crate panics on input.
#[derive(Debug, Error)]
pub enum Error {
    #[error("invalid hash string {0:?}: expected 64 hexadecimal digits")]
    InvalidHashString(String),
    #[error("truncated {what}: needed {needed} bytes, had {available}")]
    Truncated {
        what: &'static str,
        needed: usize,
        available: usize,
    },
    #[error("unsupported {what} version {version}")]
    UnsupportedVersion { what: &'static str, version: u64 },
    #[error("unknown compression scheme {0}")]
    UnknownCompression(u8),
    #[error("bad magic in {0}")]
    BadMagic(&'static str),
    #[error("invalid {what}: {detail}")]
    Invalid { what: &'static str, detail: String },
    #[error("chunk {index} hash mismatch: expected {expected}, got {actual}")]
    ChunkHashMismatch {
        index: usize,
        expected: crate::XetHash,
        actual: crate::XetHash,
    },
    #[error("xorb hash mismatch: footer says {expected}, chunks hash to {actual}")]
    XorbHashMismatch {
        expected: crate::XetHash,
        actual: crate::XetHash,
    },
    #[error("decompression failed: {0}")]
    Decompress(String),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    pub(crate) fn invalid(what: &'static str, detail: impl Into<String>) -> Self {
        Error::Invalid {
            what,
            detail: detail.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
