//! Property tests: round trips, and no parser panics or over-allocates on arbitrary bytes.

use proptest::prelude::*;
use xet::compression::CompressionScheme;
use xet::file_hash::{FileHasher, hash_bytes};
use xet::shard::Shard;
use xet::xorb::{CompressionChoice, Xorb, XorbBuilder, XorbFooter, chunks, decode_chunk_region};
use xet::{XetHash, chunking};

fn build(chunks_in: &[Vec<u8>], choice: CompressionChoice) -> (XetHash, Vec<u8>) {
    let mut b = XorbBuilder::new(choice);
    for c in chunks_in {
        b.add_chunk(c).unwrap();
    }
    b.finish().unwrap()
}

fn chunk_strategy() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(
        prop_oneof![
            prop::collection::vec(any::<u8>(), 1..3000),
            (1usize..5000, any::<u8>()).prop_map(|(n, b)| vec![b; n]),
        ],
        1..12,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn xorb_round_trip(cs in chunk_strategy(), pick in 0usize..4) {
        let choice = [
            CompressionChoice::Smallest,
            CompressionChoice::Fixed(CompressionScheme::None),
            CompressionChoice::Fixed(CompressionScheme::Lz4),
            CompressionChoice::Fixed(CompressionScheme::ByteGrouping4Lz4),
        ][pick];
        let (hash, bytes) = build(&cs, choice);
        let x = Xorb::parse(&bytes).unwrap();
        prop_assert_eq!(x.footer.xorb_hash, hash);
        prop_assert_eq!(x.footer.num_chunks(), cs.len());
        let all: Vec<u8> = cs.concat();
        prop_assert_eq!(x.extract(0, cs.len()).unwrap(), all);
        for (i, c) in cs.iter().enumerate() {
            prop_assert_eq!(&x.extract(i, i + 1).unwrap(), c);
        }
        let mut out = Vec::new();
        let lens = decode_chunk_region(x.data, &mut out).unwrap();
        prop_assert_eq!(lens, cs.iter().map(|c| c.len()).collect::<Vec<_>>());
    }

    #[test]
    fn corrupting_a_xorb_is_detected(cs in chunk_strategy(), pos in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let (_, mut bytes) = build(&cs, CompressionChoice::Smallest);
        let i = pos.index(bytes.len());
        bytes[i] ^= flip;
        // Either the parse fails, or the flipped byte was in ignored reserved space.
        if let Ok(x) = Xorb::parse(&bytes) {
            prop_assert_eq!(x.extract(0, cs.len()).unwrap(), cs.concat());
        }
    }

    #[test]
    fn parsers_never_panic(data in prop::collection::vec(any::<u8>(), 0..4096)) {
        let _ = Xorb::parse(&data);
        let _ = XorbFooter::parse_from_xorb(&data);
        let _ = Shard::parse(&data);
        for c in chunks(&data).map_while(Result::ok) {
            let mut out = Vec::new();
            let _ = c.decompress_into(&mut out);
            prop_assert!(out.len() <= xet::MAX_CHUNK_SIZE);
        }
        let mut out = Vec::new();
        let _ = decode_chunk_region(&data, &mut out);
        let _ = xet::reconstruction::Reconstruction::from_v2_json(&data);
    }

    #[test]
    fn shard_parser_survives_mutation(pos in any::<prop::sample::Index>(), val in any::<u8>()) {
        let shard = sample_shard();
        let mut bytes = shard.serialize(xet::shard::ShardForm::Stored).unwrap();
        let i = pos.index(bytes.len());
        bytes[i] = val;
        let _ = Shard::parse(&bytes);
    }

    #[test]
    fn hashing_is_split_invariant(data in prop::collection::vec(any::<u8>(), 0..300_000), split in 1usize..70_000) {
        let whole = hash_bytes(&data);
        let mut h = FileHasher::new();
        for piece in data.chunks(split) {
            h.update(piece);
        }
        prop_assert_eq!(h.finish(), whole.clone());
        let lens: Vec<u64> = chunking::chunk_lengths(&data).into_iter().map(|n| n as u64).collect();
        prop_assert_eq!(lens, whole.chunks.iter().map(|c| c.size).collect::<Vec<_>>());
    }

    #[test]
    fn hash_strings_round_trip(bytes in any::<[u8; 32]>()) {
        let h = XetHash(bytes);
        prop_assert_eq!(h.to_string().parse::<XetHash>().unwrap(), h);
        prop_assert_eq!(XetHash::from_raw_hex(&h.to_raw_hex()).unwrap(), h);
    }
}

fn sample_shard() -> Shard {
    use xet::shard::*;
    let (xh, bytes) = build(
        &[b"abc".to_vec(), b"defgh".to_vec()],
        CompressionChoice::Smallest,
    );
    let x = Xorb::parse(&bytes).unwrap();
    Shard {
        files: vec![FileInfo {
            file_hash: xet::hash::chunk_hash(b"f"),
            terms: vec![FileTerm {
                xorb_hash: xh,
                xorb_flags: 0,
                unpacked_bytes: 8,
                chunk_start: 0,
                chunk_end: 2,
            }],
            verification: Some(vec![xet::merkle::verification_hash(&x.footer.chunk_hashes)]),
            sha256: None,
        }],
        xorbs: vec![XorbInfo {
            xorb_hash: xh,
            xorb_flags: 0,
            num_bytes_in_xorb: 8,
            num_bytes_on_disk: bytes.len() as u32,
            chunks: x
                .footer
                .chunk_hashes
                .iter()
                .enumerate()
                .map(|(i, h)| XorbChunkEntry {
                    chunk_hash: *h,
                    byte_range_start: if i == 0 { 0 } else { 3 },
                    unpacked_bytes: if i == 0 { 3 } else { 5 },
                    flags: 0,
                })
                .collect(),
        }],
        footer: None,
    }
}

#[test]
fn malformed_xorbs_give_typed_errors() {
    let (_, good) = build(
        &[vec![1u8; 100], vec![2u8; 200]],
        CompressionChoice::Smallest,
    );
    assert!(Xorb::parse(&good).is_ok());
    // Truncation anywhere.
    for n in 0..good.len() {
        assert!(Xorb::parse(&good[..n]).is_err(), "prefix {n}");
    }
    // Unknown chunk header version.
    let mut bad = good.clone();
    bad[0] = 1;
    assert!(matches!(
        Xorb::parse(&bad),
        Err(xet::Error::UnsupportedVersion { .. })
    ));
    // Unknown compression scheme.
    let mut bad = good.clone();
    bad[4] = 9;
    assert!(matches!(
        Xorb::parse(&bad),
        Err(xet::Error::UnknownCompression(9))
    ));
    // Oversize uncompressed length.
    let mut bad = good.clone();
    bad[5..8].copy_from_slice(&[0xff, 0xff, 0xff]);
    assert!(Xorb::parse(&bad).is_err());
    // Zero sizes.
    let mut bad = good.clone();
    bad[1..4].copy_from_slice(&[0, 0, 0]);
    assert!(Xorb::parse(&bad).is_err());
    // A footer whose xorb hash disagrees with the chunks.
    let info_len = u32::from_le_bytes(good[good.len() - 4..].try_into().unwrap()) as usize;
    let footer_start = good.len() - 4 - info_len;
    let mut bad = good.clone();
    bad[footer_start + 8] ^= 1;
    assert!(matches!(
        Xorb::parse(&bad),
        Err(xet::Error::XorbHashMismatch { .. })
    ));
    // A footer claiming a huge chunk count is refused before allocating.
    let mut bad = good.clone();
    let n_at = footer_start + 8 + 32 + 8;
    bad[n_at..n_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(Xorb::parse(&bad).is_err());
    // Builder limits.
    let mut b = XorbBuilder::new(CompressionChoice::Smallest);
    assert!(b.add_chunk(&[]).is_err());
    assert!(b.add_chunk(&vec![0; xet::MAX_CHUNK_SIZE + 1]).is_err());
}
