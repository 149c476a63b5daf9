//! The aggregated hash tree behind xorb hashes and file hashes, and term verification hashes.

use crate::hash::{INTERNAL_NODE_KEY, VERIFICATION_KEY, XetHash, ZERO_KEY};

const MEAN_BRANCHING_FACTOR: u64 = 4;
const MAX_CHILDREN: usize = 2 * MEAN_BRANCHING_FACTOR as usize + 1;
/// One merge line: 64 hex digits, " : ", up to 20 decimal digits, "\n".
const MAX_LINE: usize = 64 + 3 + 20 + 1;

/// How many of the leading entries the next internal node takes.
fn next_merge_cut(entries: &[(XetHash, u64)]) -> usize {
    if entries.len() <= 2 {
        return entries.len();
    }
    let end = MAX_CHILDREN.min(entries.len());
    (2..end)
        .find(|&i| {
            entries[i]
                .0
                .tail_u64()
                .is_multiple_of(MEAN_BRANCHING_FACTOR)
        })
        .map_or(end, |i| i + 1)
}

/// Hash of one internal node: keyed BLAKE3 over "<hex> : <size>\n" per child.
pub fn merge(children: &[(XetHash, u64)]) -> (XetHash, u64) {
    let mut buf = [0u8; MAX_CHILDREN * MAX_LINE];
    let mut pos = 0;
    let mut total = 0u64;
    for (hash, size) in children {
        let mut hex = [0u8; 64];
        hash.write_hex(&mut hex);
        buf[pos..pos + 64].copy_from_slice(&hex);
        pos += 64;
        buf[pos..pos + 3].copy_from_slice(b" : ");
        pos += 3;
        let mut digits = [0u8; 20];
        let mut n = digits.len();
        let mut v = *size;
        loop {
            n -= 1;
            digits[n] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        buf[pos..pos + digits.len() - n].copy_from_slice(&digits[n..]);
        pos += digits.len() - n;
        buf[pos] = b'\n';
        pos += 1;
        total = total.wrapping_add(*size);
    }
    (
        XetHash(*blake3::keyed_hash(&INTERNAL_NODE_KEY, &buf[..pos]).as_bytes()),
        total,
    )
}

/// Root of the aggregated tree over (hash, size) leaves; the zero hash for no leaves.
pub fn merkle_root(leaves: &[(XetHash, u64)]) -> XetHash {
    if leaves.is_empty() {
        return XetHash::ZERO;
    }
    let mut level = leaves.to_vec();
    while level.len() > 1 {
        let mut next = Vec::with_capacity(level.len() / 2 + 1);
        let mut rest = &level[..];
        while !rest.is_empty() {
            let cut = next_merge_cut(rest);
            next.push(merge(&rest[..cut]));
            rest = &rest[cut..];
        }
        level = next;
    }
    level[0].0
}

/// Xorb hash: the tree root over the xorb's chunks.
pub fn xorb_hash(chunks: &[(XetHash, u64)]) -> XetHash {
    merkle_root(chunks)
}

/// File hash: the tree root over the file's chunks, keyed once more with the zero key.
///
/// An empty file hashes to the zero hash. The draft spec says keyed(ZERO_KEY, ZERO_HASH)
/// here, but Hugging Face's implementation (xet-core, hf_xet) returns all zeros, and byte
/// equality with Hugging Face is what counts.
pub fn file_hash(chunks: &[(XetHash, u64)]) -> XetHash {
    if chunks.is_empty() {
        return XetHash::ZERO;
    }
    let root = merkle_root(chunks);
    XetHash(*blake3::keyed_hash(&ZERO_KEY, root.as_bytes()).as_bytes())
}

/// Verification hash of a term: keyed BLAKE3 over the raw chunk hashes of the range.
pub fn verification_hash(chunk_hashes: &[XetHash]) -> XetHash {
    let mut hasher = blake3::Hasher::new_keyed(&VERIFICATION_KEY);
    for h in chunk_hashes {
        hasher.update(h.as_bytes());
    }
    XetHash(*hasher.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> XetHash {
        s.parse().unwrap()
    }

    #[test]
    fn internal_node_vector() {
        let children = [
            (
                h("c28f58387a60d4aa200c311cda7c7f77f686614864f5869eadebf765d0a14a69"),
                100,
            ),
            (
                h("6e4e3263e073ce2c0e78cc770c361e2778db3b054b98ab65e277fc084fa70f22"),
                200,
            ),
        ];
        let (node, size) = merge(&children);
        assert_eq!(
            node.to_string(),
            "be64c7003ccd3cf4357364750e04c9592b3c36705dee76a71590c011766b6c14"
        );
        assert_eq!(size, 300);
        // Two leaves merge into exactly that one node.
        assert_eq!(merkle_root(&children), node);
    }

    #[test]
    fn verification_vector() {
        let a = XetHash::from_raw_hex(
            "aad4607a38588fc2777f7cda1c310c209e86f564486186f6694aa1d065f7ebad",
        )
        .unwrap();
        let b = XetHash::from_raw_hex(
            "2cce73e063324e6e271e360c77cc780e65ab984b053bdb78220fa74f08fc77e2",
        )
        .unwrap();
        assert_eq!(
            verification_hash(&[a, b]).to_string(),
            "eb06a8ad81d588ac05d1d9a079232d9c1e7d0b07232fa58091caa7bf333a2768"
        );
    }

    #[test]
    fn vector_chunk_hashes_are_the_node_vector_children() {
        // The spec's verification vector reuses the node vector's children in raw form.
        let a = XetHash::from_raw_hex(
            "aad4607a38588fc2777f7cda1c310c209e86f564486186f6694aa1d065f7ebad",
        )
        .unwrap();
        assert_eq!(
            a,
            h("c28f58387a60d4aa200c311cda7c7f77f686614864f5869eadebf765d0a14a69")
        );
    }

    #[test]
    fn empty_and_single() {
        assert_eq!(merkle_root(&[]), XetHash::ZERO);
        assert_eq!(file_hash(&[]), XetHash::ZERO);
        let one = (crate::hash::chunk_hash(b"abc"), 3);
        // A single leaf is its own root.
        assert_eq!(merkle_root(&[one]), one.0);
    }

    #[test]
    fn size_line_handles_zero_and_max() {
        let (_, total) = merge(&[(XetHash::ZERO, 0), (XetHash::ZERO, u64::MAX)]);
        assert_eq!(total, u64::MAX);
    }
}
