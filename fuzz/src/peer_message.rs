//! Frames from a peer: a 4-byte length and a protobuf message, read as a server reads
//! requests and as a downloader reads replies, then checked the way the engine checks them.

use prost::Message;
use xet::XetHash;
use zest_proto::peer;
use zestd::engine::peer_views::parse_state;
use zestd::peer::limits::MAX_FRAME;
use zestd::peer::watch;
use zestd::peer::wire::{flatten, merge, unflatten};

pub fn run(data: &[u8]) {
    // A watch's updates fold into one state, frame after frame, as a watcher folds them.
    let mut told: Option<peer::FileHave> = None;
    let mut rest = data;
    while rest.len() >= 4 {
        let n = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if n > MAX_FRAME {
            return;
        }
        let body = &rest[4..];
        let body = &body[..n.min(body.len())];
        frame(body, &mut told);
        rest = &rest[(4 + body.len()).min(rest.len())..];
    }
}

fn frame(body: &[u8], told: &mut Option<peer::FileHave>) {
    let _ = peer::Hello::decode(body);
    if let Ok(req) = peer::Request::decode(body) {
        // Re-encoding what decoded gives a message that decodes the same.
        let again = peer::Request::decode(req.encode_to_vec().as_slice());
        assert_eq!(again.ok(), Some(req));
    }
    let Ok(resp) = peer::Response::decode(body) else {
        return;
    };
    match resp.kind {
        Some(peer::response::Kind::Have(h)) => {
            for fh in h.files {
                let total = fh.total_chunks;
                if let Some(state) = parse_state("fuzz", fh, total.max(1)) {
                    for r in state.held.iter().chain(state.fetching.iter()) {
                        assert!(r.0 < r.1 && r.1 <= total.max(1));
                    }
                }
            }
        }
        Some(peer::response::Kind::Update(u)) => {
            let file = u.have.as_ref().map(|h| h.file.clone()).unwrap_or_default();
            if let Ok(now) = watch::apply(told.as_ref(), u, &file) {
                // A state a watcher accepted has well-formed ranges...
                assert!(unflatten(&now.held).is_some() && unflatten(&now.fetching).is_some());
                // ...and the update from the last one to it leads there again.
                if let Some(prev) = told.as_ref().filter(|p| p.file == now.file)
                    && let Some(u) = watch::diff(Some(prev), &now)
                {
                    let again = watch::apply(Some(prev), u, &now.file);
                    assert!(again.is_ok_and(|a| watch::same(&a, &now)));
                }
                *told = Some(now);
            }
        }
        Some(peer::response::Kind::Manifest(m)) => {
            let claims: Vec<(XetHash, u32)> = m
                .chunks
                .iter()
                .filter_map(|c| Some((XetHash::from_slice(&c.hash)?, c.size)))
                .collect();
            let _ = xet::merkle::file_hash(
                &claims
                    .iter()
                    .map(|(h, s)| (*h, u64::from(*s)))
                    .collect::<Vec<_>>(),
            );
            let flat: Vec<u32> = m.chunks.iter().map(|c| c.index).collect();
            if let Some(ranges) = unflatten(&flat) {
                // Merged ranges are sorted and disjoint, and never more than went in.
                let merged = merge(ranges);
                assert!(merged.windows(2).all(|w| w[0].1 < w[1].0));
                assert!(flatten(&merged).len() <= flat.len());
            }
        }
        _ => {}
    }
}
