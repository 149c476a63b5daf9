//! The 32-byte hash type, its string form, and the keyed BLAKE3 hashes of chunks.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;

/// BLAKE3 key for chunk (leaf) hashes.
pub const DATA_KEY: [u8; 32] = [
    0x66, 0x97, 0xf5, 0x77, 0x5b, 0x95, 0x50, 0xde, 0x31, 0x35, 0xcb, 0xac, 0xa5, 0x97, 0x18, 0x1c,
    0x9d, 0xe4, 0x21, 0x10, 0x9b, 0xeb, 0x2b, 0x58, 0xb4, 0xd0, 0xb0, 0x4b, 0x93, 0xad, 0xf2, 0x29,
];

/// BLAKE3 key for internal Merkle nodes.
pub const INTERNAL_NODE_KEY: [u8; 32] = [
    0x01, 0x7e, 0xc5, 0xc7, 0xa5, 0x47, 0x29, 0x96, 0xfd, 0x94, 0x66, 0x66, 0xb4, 0x8a, 0x02, 0xe6,
    0x5d, 0xdd, 0x53, 0x6f, 0x37, 0xc7, 0x6d, 0xd2, 0xf8, 0x63, 0x52, 0xe6, 0x4a, 0x53, 0x71, 0x3f,
];

/// BLAKE3 key for the final step of a file hash.
pub const ZERO_KEY: [u8; 32] = [0; 32];

/// BLAKE3 key for term verification (range) hashes.
pub const VERIFICATION_KEY: [u8; 32] = [
    0x7f, 0x18, 0x57, 0xd6, 0xce, 0x56, 0xed, 0x66, 0x12, 0x7f, 0xf9, 0x13, 0xe7, 0xa5, 0xc3, 0xf3,
    0xa4, 0xcd, 0x26, 0xd5, 0xb5, 0xdb, 0x49, 0xe6, 0x41, 0x24, 0x98, 0x7f, 0x28, 0xfb, 0x94, 0xc3,
];

/// A Xet hash: chunk, xorb, file or verification hash, held as raw bytes.
///
/// Its string form (`Display`/`FromStr`) is the Xet one: four little-endian
/// u64 words, each printed as 16 hex digits. That is what the CAS API, the Hub's
/// `X-Xet-Hash` header and the HF cache use.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct XetHash(pub [u8; 32]);

impl XetHash {
    pub const ZERO: XetHash = XetHash([0; 32]);

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        XetHash(bytes)
    }

    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(XetHash)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The last 8 bytes as a little-endian u64; the Merkle tree and global dedup cut on it.
    pub fn tail_u64(&self) -> u64 {
        self.words()[3]
    }

    /// The hash as four little-endian u64 words: how xet-core holds, orders and prints it.
    pub fn words(&self) -> [u64; 4] {
        let mut w = [0u64; 4];
        for (v, bytes) in w.iter_mut().zip(self.0.chunks_exact(8)) {
            let mut x = [0u8; 8];
            x.copy_from_slice(bytes);
            *v = u64::from_le_bytes(x);
        }
        w
    }

    /// The Xet string form written into a fixed buffer (no allocation; Merkle nodes are hot).
    pub fn write_hex(&self, out: &mut [u8; 64]) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        for word in 0..4 {
            let bytes = &self.0[word * 8..word * 8 + 8];
            // Printing the little-endian word big-end first means walking its bytes backwards.
            for (i, b) in bytes.iter().rev().enumerate() {
                out[word * 16 + i * 2] = DIGITS[(b >> 4) as usize];
                out[word * 16 + i * 2 + 1] = DIGITS[(b & 0xf) as usize];
            }
        }
    }

    pub fn to_hex(&self) -> String {
        let mut buf = [0u8; 64];
        self.write_hex(&mut buf);
        buf.iter().map(|&b| b as char).collect()
    }

    /// Plain hex of the raw bytes in order (not the Xet string form).
    pub fn to_raw_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn from_raw_hex(s: &str) -> Result<Self, Error> {
        let bytes = s.as_bytes();
        if bytes.len() != 64 {
            return Err(Error::InvalidHashString(s.to_owned()));
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            out[i] = (hex_val(pair[0], s)? << 4) | hex_val(pair[1], s)?;
        }
        Ok(XetHash(out))
    }
}

fn hex_val(c: u8, whole: &str) -> Result<u8, Error> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(Error::InvalidHashString(whole.to_owned())),
    }
}

impl FromStr for XetHash {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bytes = s.as_bytes();
        if bytes.len() != 64 {
            return Err(Error::InvalidHashString(s.to_owned()));
        }
        let mut out = [0u8; 32];
        for word in 0..4 {
            let mut value = 0u64;
            for &c in &bytes[word * 16..word * 16 + 16] {
                value = (value << 4) | u64::from(hex_val(c, s)?);
            }
            out[word * 8..word * 8 + 8].copy_from_slice(&value.to_le_bytes());
        }
        Ok(XetHash(out))
    }
}

impl fmt::Display for XetHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 64];
        self.write_hex(&mut buf);
        // write_hex only emits ASCII hex digits.
        f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for XetHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for XetHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for XetHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Hash of one chunk's bytes.
pub fn chunk_hash(data: &[u8]) -> XetHash {
    XetHash(*blake3::keyed_hash(&DATA_KEY, data).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_hash_vector() {
        let h = chunk_hash(b"Hello World!");
        assert_eq!(
            h.to_raw_hex(),
            "a29cfb08e608d4d8726dd8659a90b9134b3240d5d8e42d5fcb28e2a6e763a3e8"
        );
        assert_eq!(
            h.to_string(),
            "d8d408e608fb9ca213b9909a65d86d725f2de4d8d540324be8a363e7a6e228cb"
        );
    }

    #[test]
    fn string_conversion_vector() {
        let mut bytes = [0u8; 32];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = i as u8;
        }
        let h = XetHash(bytes);
        let s = "07060504030201000f0e0d0c0b0a090817161514131211101f1e1d1c1b1a1918";
        assert_eq!(h.to_string(), s);
        assert_eq!(s.parse::<XetHash>().unwrap(), h);
        assert_eq!(s.to_uppercase().parse::<XetHash>().unwrap(), h);
    }

    #[test]
    fn bad_strings_are_errors() {
        for s in [
            "",
            "00",
            &"g".repeat(64),
            &"0".repeat(63),
            &"0".repeat(65),
            &"é".repeat(32),
        ] {
            assert!(s.parse::<XetHash>().is_err(), "{s:?}");
            assert!(XetHash::from_raw_hex(s).is_err(), "{s:?}");
        }
    }

    #[test]
    fn serde_uses_string_form() {
        let h = chunk_hash(b"x");
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(json, format!("\"{h}\""));
        assert_eq!(serde_json::from_str::<XetHash>(&json).unwrap(), h);
    }
}
