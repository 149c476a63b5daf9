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
}
