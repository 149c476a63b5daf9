//! Frames on a QUIC stream: a 4-byte big-endian length, then one protobuf message.

use prost::Message;
use zest_proto::peer;

use super::limits::MAX_FRAME;

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("peer stream: {0}")]
    Read(#[from] quinn::ReadExactError),
    #[error("peer stream: {0}")]
    Write(#[from] quinn::WriteError),
    #[error("frame of {0} bytes is over the {1}-byte limit")]
    TooLarge(usize, usize),
    #[error("peer stream: nothing moved for {0:?}")]
    Stalled(std::time::Duration),
    #[error("malformed frame: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("peer stream: {0}")]
    Closed(#[from] quinn::ClosedStream),
}

pub async fn write<M: Message>(send: &mut quinn::SendStream, msg: &M) -> Result<(), WireError> {
    let body = msg.encode_to_vec();
    if body.len() > MAX_FRAME {
        return Err(WireError::TooLarge(body.len(), MAX_FRAME));
    }
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    send.write_all(&frame).await?;
    Ok(())
}

/// Bytes `msg` takes on the wire as a frame.
pub fn frame_len<M: Message>(msg: &M) -> u64 {
    4 + msg.encoded_len() as u64
}

/// The next frame, or None when the other side finished the stream cleanly.
pub async fn read<M: Message + Default>(
    recv: &mut quinn::RecvStream,
) -> Result<Option<M>, WireError> {
    read_limited(recv, MAX_FRAME).await
}

/// Like [`read`], refusing a frame longer than `max` before reading its body.
pub async fn read_limited<M: Message + Default>(
    recv: &mut quinn::RecvStream,
    max: usize,
) -> Result<Option<M>, WireError> {
    let mut len = [0u8; 4];
    match recv.read_exact(&mut len).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let n = u32::from_be_bytes(len) as usize;
    if n > max {
        return Err(WireError::TooLarge(n, max));
    }
    let mut body = vec![0u8; n];
    recv.read_exact(&mut body).await?;
    Ok(Some(M::decode(body.as_slice())?))
}

pub fn error(code: &str, message: impl Into<String>) -> peer::Response {
    peer::Response {
        kind: Some(peer::response::Kind::Error(peer::Error {
            code: code.into(),
            message: message.into(),
        })),
    }
}

/// Flat `[start, end)` pairs from sorted ranges.
pub fn flatten(ranges: &[(u32, u32)]) -> Vec<u32> {
    ranges.iter().flat_map(|&(a, b)| [a, b]).collect()
}

/// Ranges from flat pairs; None if malformed (odd length, empty or unsorted ranges).
pub fn unflatten(flat: &[u32]) -> Option<Vec<(u32, u32)>> {
    if !flat.len().is_multiple_of(2) {
        return None;
    }
    let mut out: Vec<(u32, u32)> = Vec::with_capacity(flat.len() / 2);
    for p in flat.chunks_exact(2) {
        let (a, b) = (p[0], p[1]);
        if a >= b || out.last().is_some_and(|l| l.1 > a) {
            return None;
        }
        out.push((a, b));
    }
    Some(out)
}

/// Sorts ranges and merges the ones that overlap or touch.
pub fn merge(mut ranges: Vec<(u32, u32)>) -> Vec<(u32, u32)> {
    ranges.sort_unstable();
    let mut out: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
    for (a, b) in ranges {
        match out.last_mut() {
            Some(l) if a <= l.1 => l.1 = l.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// Adds index `i` to sorted, merged ranges, keeping them so.
pub fn insert(ranges: &mut Vec<(u32, u32)>, i: u32) {
    // The first range that ends at or after i: i is in it, touches it, or goes before it.
    let k = ranges.partition_point(|r| r.1 < i);
    match ranges.get(k).copied() {
        Some((a, b)) if a <= i && i < b => {}
        Some((_, b)) if b == i => {
            // Range k grows by one, and swallows the next if that starts right after.
            let end = match ranges.get(k + 1).copied() {
                Some((na, nb)) if na == i + 1 => {
                    ranges.remove(k + 1);
                    nb
                }
                _ => i + 1,
            };
            ranges[k].1 = end;
        }
        Some((a, _)) if a == i + 1 => ranges[k].0 = i,
        _ => ranges.insert(k, (i, i + 1)),
    }
}

/// The parts of sorted, merged `a` that `b` (sorted, merged) does not cover.
pub fn subtract(a: &[(u32, u32)], b: &[(u32, u32)]) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    let mut k = 0;
    for &(mut s, e) in a {
        while k < b.len() && b[k].1 <= s {
            k += 1;
        }
        let mut j = k;
        while s < e {
            match b.get(j) {
                Some(&(bs, be)) if bs < e => {
                    if bs > s {
                        out.push((s, bs));
                    }
                    s = s.max(be);
                    j += 1;
                }
                _ => {
                    out.push((s, e));
                    break;
                }
            }
        }
    }
    out
}

/// Sorted, merged ranges of the indices for which `held` is true.
pub fn ranges_of(held: impl Iterator<Item = bool>) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    let mut start: Option<u32> = None;
    let mut i = 0u32;
    for h in held {
        match (h, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push((s, i));
                start = None;
            }
            _ => {}
        }
        i += 1;
    }
    if let Some(s) = start {
        out.push((s, i));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_round_trip() {
        let r = ranges_of([true, true, false, true, false, false, true].into_iter());
        assert_eq!(r, vec![(0, 2), (3, 4), (6, 7)]);
        assert_eq!(unflatten(&flatten(&r)), Some(r));
        assert_eq!(unflatten(&[3, 2]), None);
        assert_eq!(unflatten(&[0, 4, 2, 6]), None);
        assert_eq!(unflatten(&[1]), None);
        assert_eq!(
            merge(vec![(5, 7), (0, 2), (1, 3), (3, 4)]),
            vec![(0, 4), (5, 7)]
        );
    }

    #[test]
    fn insert_and_subtract_agree_with_a_bitmap() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = |m: u32| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng % u64::from(m)) as u32
        };
        for _ in 0..300 {
            let n = 1 + next(60);
            let (mut a, mut b) = (vec![false; n as usize], vec![false; n as usize]);
            let (mut ra, mut rb) = (Vec::new(), Vec::new());
            for _ in 0..next(2 * n) {
                let i = next(n);
                a[i as usize] = true;
                insert(&mut ra, i);
                let j = next(n);
                b[j as usize] = true;
                insert(&mut rb, j);
            }
            assert_eq!(ra, ranges_of(a.iter().copied()));
            assert_eq!(rb, ranges_of(b.iter().copied()));
            let want = ranges_of(a.iter().zip(&b).map(|(x, y)| *x && !*y));
            assert_eq!(subtract(&ra, &rb), want, "{ra:?} - {rb:?}");
        }
    }
}
