//! Xorbs and chunk streams, as the CAS (or a peer) sends them.

use xet::chunk_stream::ChunkStreamDecoder;
use xet::xorb::{Xorb, XorbFooter, decode_chunk_region};

pub fn run(data: &[u8]) {
    // A whole xorb: what `parse` accepts it has verified, so every chunk must extract and
    // add up to the footer's unpacked length.
    if let Ok(x) = Xorb::parse(data) {
        let n = x.footer.num_chunks();
        let all = match x.extract(0, n) {
            Ok(all) => all,
            Err(e) => panic!("a xorb that parsed does not extract: {e}"),
        };
        let unpacked = x.footer.unpacked_chunk_offsets.last().copied().unwrap_or(0);
        assert_eq!(all.len() as u64, u64::from(unpacked));
    }
    let _ = XorbFooter::parse_from_xorb(data);

    // A chunk data region (a fetched range of a xorb): decoded whole, and fed in pieces of
    // the size the first byte picks, as the network delivers it. The two must agree.
    let Some((&piece, region)) = data.split_first() else {
        return;
    };
    let piece = usize::from(piece) + 1;
    let mut whole = Vec::new();
    let whole_ok = decode_chunk_region(region, &mut whole).is_ok();
    let mut streamed = Vec::new();
    let mut dec = ChunkStreamDecoder::new();
    let mut stream_ok = true;
    for p in region.chunks(piece) {
        let fed = dec.feed::<xet::Error>(p, |c| {
            streamed.extend_from_slice(c);
            Ok(())
        });
        if fed.is_err() {
            stream_ok = false;
            break;
        }
    }
    stream_ok = stream_ok && dec.finish().is_ok();
    assert_eq!(
        whole_ok, stream_ok,
        "the whole-region and the streaming decoder disagree on whether the region is valid"
    );
    if whole_ok {
        assert_eq!(whole, streamed);
        assert_eq!(dec.stored_bytes_decoded(), region.len() as u64);
    }
}
