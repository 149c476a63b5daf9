//! zest's `xet` crate against xet-core (Hugging Face's Rust implementation, pinned 1.8.0):
//! chunk boundaries, chunk/xorb/file/verification hashes, and xorbs in both directions.

use std::io::Cursor;

use xet::XetHash;
use xet::file_hash::{hash_bytes, hash_reader};
use xet::xorb::{CompressionChoice, Xorb, XorbBuilder};
use xet_core_structures::merklehash::{MerkleHash, compute_data_hash, file_hash, xorb_hash};
use xet_core_structures::metadata_shard::chunk_verification::range_hash_from_chunks;
use xet_core_structures::xorb_object::{RawXorbData, SerializedXorbObject, XorbObject};
use xet_data::deduplication::{Chunk, Chunker};
use zest_tests::oracle_files;

fn ours(h: &MerkleHash) -> XetHash {
    XetHash::from_slice(h.as_bytes()).expect("32-byte hash")
}

fn reference_chunks(data: &[u8]) -> Vec<Chunk> {
    Chunker::default().next_block(data, true)
}

#[test]
fn chunks_and_hashes_equal_xet_core() {
    for (name, data) in oracle_files() {
        let reference = reference_chunks(&data);
        let digest = hash_bytes(&data);
        assert_eq!(
            hash_reader(&data[..]).expect("in-memory read"),
            digest,
            "{name}: parallel vs streaming"
        );

        let ref_lens: Vec<u64> = reference.iter().map(|c| c.data.len() as u64).collect();
        let our_lens: Vec<u64> = digest.chunks.iter().map(|c| c.size).collect();
        assert_eq!(our_lens, ref_lens, "{name}: chunk boundaries");

        for (i, (r, o)) in reference.iter().zip(&digest.chunks).enumerate() {
            assert_eq!(o.hash, ours(&r.hash), "{name}: chunk {i} hash");
            assert_eq!(
                ours(&compute_data_hash(&r.data)),
                xet::hash::chunk_hash(&r.data),
                "{name}: chunk {i}"
            );
        }

        let pairs: Vec<(MerkleHash, u64)> = reference
            .iter()
            .map(|c| (c.hash, c.data.len() as u64))
            .collect();
        assert_eq!(digest.hash, ours(&file_hash(&pairs)), "{name}: file hash");

        let our_pairs: Vec<(XetHash, u64)> =
            digest.chunks.iter().map(|c| (c.hash, c.size)).collect();
        // Xorb hashes over several groupings, including the whole file and odd cut points.
        for k in [1usize, 2, 3, 4, 5, 9, 10, 17, 64, 1000, pairs.len()] {
            let k = k.min(pairs.len());
            if k == 0 {
                continue;
            }
            assert_eq!(
                xet::merkle::xorb_hash(&our_pairs[..k]),
                ours(&xorb_hash(&pairs[..k])),
                "{name}: xorb hash of the first {k} chunks"
            );
        }

        let hashes: Vec<MerkleHash> = reference.iter().map(|c| c.hash).collect();
        let our_hashes: Vec<XetHash> = digest.chunks.iter().map(|c| c.hash).collect();
        for (a, b) in [(0usize, 1usize), (0, 2), (1, 7), (0, hashes.len())] {
            if b <= hashes.len() && a < b {
                assert_eq!(
                    xet::merkle::verification_hash(&our_hashes[a..b]),
                    ours(&range_hash_from_chunks(&hashes[a..b])),
                    "{name}: verification hash {a}..{b}"
                );
            }
        }
    }
}

/// Chunks grouped the way xorbs are: at most 1024 per xorb here, to get several xorbs.
fn xorb_groups(chunks: &[Chunk]) -> Vec<&[Chunk]> {
    chunks.chunks(1024).collect()
}

#[test]
fn xet_core_xorbs_parse_and_decompress_with_zest() {
    for (name, data) in oracle_files() {
        let reference = reference_chunks(&data);
        let mut offset = 0usize;
        for group in xorb_groups(&reference) {
            for policy in ["auto", "none", "lz4", "bg4-lz4"] {
                let raw = RawXorbData::from_chunks(group, vec![0]);
                let serialized = SerializedXorbObject::from_xorb(raw, true, policy, 16)
                    .expect("xet-core serializes");
                let xorb = Xorb::parse(&serialized.serialized_data).unwrap_or_else(|e| {
                    panic!("{name}/{policy}: zest rejects a xet-core xorb: {e}")
                });
                assert_eq!(
                    xorb.footer.xorb_hash,
                    ours(&serialized.hash),
                    "{name}/{policy}"
                );
                let bytes = xorb.extract(0, group.len()).expect("extract");
                let len: usize = group.iter().map(|c| c.data.len()).sum();
                assert_eq!(
                    bytes,
                    &data[offset..offset + len],
                    "{name}/{policy}: decompressed bytes"
                );
                // A bare chunk range as a CDN serves it (no footer) decodes too.
                if group.len() >= 3 {
                    let (s, e) = xorb.footer.chunk_byte_range(1, 3).expect("range");
                    let mut out = Vec::new();
                    let lens = xet::xorb::decode_chunk_region(
                        &xorb.data[s as usize..e as usize],
                        &mut out,
                    )
                    .expect("range decodes");
                    assert_eq!(lens.len(), 2);
                    let start = offset + group[0].data.len();
                    assert_eq!(out, &data[start..start + out.len()]);
                }
            }
            offset += group.iter().map(|c| c.data.len()).sum::<usize>();
        }
    }
}

#[test]
fn zest_xorbs_are_accepted_by_xet_core() {
    for (name, data) in oracle_files() {
        let reference = reference_chunks(&data);
        let mut offset = 0usize;
        for group in xorb_groups(&reference) {
            let mut builder = XorbBuilder::new(CompressionChoice::Smallest);
            for c in group {
                builder.add_chunk(&c.data).expect("chunk fits");
            }
            let (hash, bytes) = builder.finish().expect("serialize");
            let merkle = MerkleHash::from_slice(hash.as_bytes()).expect("hash");
            let validated = XorbObject::validate_xorb_object(&mut Cursor::new(&bytes), &merkle)
                .unwrap_or_else(|e| panic!("{name}: xet-core errors on a zest xorb: {e}"))
                .unwrap_or_else(|| {
                    panic!("{name}: xet-core says the zest xorb does not hash to its name")
                });
            let all = validated
                .get_all_bytes(&mut Cursor::new(&bytes))
                .expect("xet-core reads it");
            let len: usize = group.iter().map(|c| c.data.len()).sum();
            assert_eq!(all, &data[offset..offset + len], "{name}");
            offset += len;
        }
    }
}
