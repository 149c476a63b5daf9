//! The file reconstruction model: terms, and where to fetch their bytes.
//!
//! Mirrors the CAS reconstruction API: the v1 response (`fetch_info`, one URL per chunk
//! range) and the v2 response (`xorbs`, one URL carrying several byte ranges). Both are
//! normalized to [`Reconstruction`], which is v2-shaped.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::hash::XetHash;
use crate::{MAX_CHUNK_SIZE, MAX_XORB_CHUNKS};

/// Chunk index range `[start, end)` within a xorb.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChunkRange {
    pub start: u32,
    pub end: u32,
}

impl ChunkRange {
    pub fn new(start: u32, end: u32) -> Self {
        ChunkRange { start, end }
    }
    pub fn len(&self) -> u32 {
        self.end.saturating_sub(self.start)
    }
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
    pub fn contains(&self, other: &ChunkRange) -> bool {
        self.start <= other.start && other.end <= self.end
    }
}

/// Byte range `[start, end]`, end inclusive, as in an HTTP `Range` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HttpRange {
    pub start: u64,
    pub end: u64,
}

impl HttpRange {
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }
    pub fn is_empty(&self) -> bool {
        false
    }
    pub fn header_value(&self) -> String {
        format!("bytes={}-{}", self.start, self.end)
    }
}

/// One term: chunks `range` of xorb `hash`, which decompress to `unpacked_length` bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Term {
    pub hash: XetHash,
    pub unpacked_length: u32,
    pub range: ChunkRange,
}

/// v1: a URL for one chunk range of a xorb.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchInfoV1 {
    pub range: ChunkRange,
    pub url: String,
    pub url_range: HttpRange,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconstructionV1 {
    pub offset_into_first_range: u64,
    pub terms: Vec<Term>,
    pub fetch_info: HashMap<XetHash, Vec<FetchInfoV1>>,
}

/// v2: chunks `chunks` of a xorb are at bytes `bytes` of the URL's object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeDescriptor {
    pub chunks: ChunkRange,
    pub bytes: HttpRange,
}

/// v2: one signed URL covering several ranges of a xorb.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct XorbFetch {
    pub url: String,
    pub ranges: Vec<RangeDescriptor>,
}

impl XorbFetch {
    /// The `Range` header value that fetches all of this entry's ranges, which is what the
    /// URL was signed for.
    pub fn range_header(&self) -> String {
        let parts: Vec<String> = self
            .ranges
            .iter()
            .map(|r| format!("{}-{}", r.bytes.start, r.bytes.end))
            .collect();
        format!("bytes={}", parts.join(","))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconstructionV2 {
    pub offset_into_first_range: u64,
    pub terms: Vec<Term>,
    pub xorbs: HashMap<XetHash, Vec<XorbFetch>>,
}

/// A reconstruction, whichever API version answered.
pub type Reconstruction = ReconstructionV2;

impl From<ReconstructionV1> for ReconstructionV2 {
    fn from(v1: ReconstructionV1) -> Self {
        let xorbs = v1
            .fetch_info
            .into_iter()
            .map(|(hash, infos)| {
                let fetches = infos
                    .into_iter()
                    .map(|i| XorbFetch {
                        url: i.url,
                        ranges: vec![RangeDescriptor {
                            chunks: i.range,
                            bytes: i.url_range,
                        }],
                    })
                    .collect();
                (hash, fetches)
            })
            .collect();
        ReconstructionV2 {
            offset_into_first_range: v1.offset_into_first_range,
            terms: v1.terms,
            xorbs,
        }
    }
}

impl ReconstructionV2 {
    /// Total bytes the terms decompress to (before `offset_into_first_range` is applied).
    pub fn unpacked_len(&self) -> u64 {
        self.terms
            .iter()
            .map(|t| u64::from(t.unpacked_length))
            .sum()
    }

    /// The fetch entry and range descriptor whose chunks cover `term`.
    pub fn source_for(&self, term: &Term) -> Option<(&XorbFetch, &RangeDescriptor)> {
        self.xorbs.get(&term.hash)?.iter().find_map(|f| {
            f.ranges
                .iter()
                .find(|r| r.chunks.contains(&term.range))
                .map(|r| (f, r))
        })
    }

    /// Checks the response is self-consistent: non-empty ranges, a source for every term,
    /// byte ranges that are well formed, and an offset inside the first term.
    pub fn validate(&self) -> Result<()> {
        let mut file_chunks = 0u64;
        for (i, t) in self.terms.iter().enumerate() {
            if t.range.is_empty() || t.unpacked_length == 0 {
                return Err(Error::invalid(
                    "reconstruction",
                    format!("term {i} is empty"),
                ));
            }
            // A xorb holds at most MAX_XORB_CHUNKS chunks of at most MAX_CHUNK_SIZE bytes;
            // a term beyond that describes no xorb, and the chunk indices of the whole file
            // must fit the u32 the engine and the peer protocol count them in.
            if t.range.end as usize > MAX_XORB_CHUNKS
                || u64::from(t.unpacked_length) > u64::from(t.range.len()) * MAX_CHUNK_SIZE as u64
            {
                return Err(Error::invalid(
                    "reconstruction",
                    format!("term {i} is larger than a xorb can be"),
                ));
            }
            file_chunks += u64::from(t.range.len());
            if file_chunks > u64::from(u32::MAX) {
                return Err(Error::invalid(
                    "reconstruction",
                    "more chunks than a file can have",
                ));
            }
            if self.source_for(t).is_none() {
                return Err(Error::invalid(
                    "reconstruction",
                    format!("no fetch info covers term {i} ({})", t.hash),
                ));
            }
        }
        for fetches in self.xorbs.values() {
            for r in fetches.iter().flat_map(|f| &f.ranges) {
                if r.bytes.end < r.bytes.start
                    || r.chunks.is_empty()
                    || r.chunks.end as usize > MAX_XORB_CHUNKS
                {
                    return Err(Error::invalid("reconstruction", "malformed fetch range"));
                }
            }
        }
        if let Some(first) = self.terms.first() {
            if self.offset_into_first_range >= u64::from(first.unpacked_length) {
                return Err(Error::invalid(
                    "reconstruction",
                    "offset_into_first_range beyond the first term",
                ));
            }
        } else if self.offset_into_first_range != 0 {
            return Err(Error::invalid("reconstruction", "offset without terms"));
        }
        Ok(())
    }

    /// The part of this reconstruction that covers file bytes `first..=last`, cut at term
    /// boundaries (a term's chunk sizes are not known until its xorb is read): the terms
    /// those bytes fall in, `offset_into_first_range` pointing at `first`, and only the
    /// fetch entries those terms use. A client reads as many bytes as it asked for, so the
    /// tail of the last term is ignored as it is in the CAS's own answers. None when
    /// `first` is past the end of the file or `last < first`.
    pub fn slice(&self, first: u64, last: u64) -> Option<Self> {
        if last < first {
            return None;
        }
        // Positions are in the terms' bytes, where the file starts at the offset.
        let (first, last) = (
            first.checked_add(self.offset_into_first_range)?,
            last.saturating_add(self.offset_into_first_range),
        );
        let mut start = 0u64;
        let mut terms = Vec::new();
        let mut offset = 0;
        for t in &self.terms {
            let end = start + u64::from(t.unpacked_length);
            if end > first && start <= last {
                if terms.is_empty() {
                    offset = first - start;
                }
                terms.push(t.clone());
            }
            start = end;
        }
        if terms.is_empty() {
            return None;
        }
        let xorbs = self
            .xorbs
            .iter()
            .filter(|(h, _)| terms.iter().any(|t| t.hash == **h))
            .map(|(h, f)| (*h, f.clone()))
            .collect();
        Some(ReconstructionV2 {
            offset_into_first_range: offset,
            terms,
            xorbs,
        })
    }

    pub fn from_v1_json(body: &[u8]) -> Result<Self> {
        let v1: ReconstructionV1 = serde_json::from_slice(body)
            .map_err(|e| Error::invalid("reconstruction v1 JSON", e.to_string()))?;
        Ok(v1.into())
    }

    pub fn from_v2_json(body: &[u8]) -> Result<Self> {
        serde_json::from_slice(body)
            .map_err(|e| Error::invalid("reconstruction v2 JSON", e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three_terms() -> Reconstruction {
        let h = |b: u8| XetHash::from_bytes([b; 32]);
        let term = |b: u8, len: u32| Term {
            hash: h(b),
            unpacked_length: len,
            range: ChunkRange::new(0, 1),
        };
        let fetch = |b: u8| {
            (
                h(b),
                vec![XorbFetch {
                    url: format!("http://cdn/{b}"),
                    ranges: vec![RangeDescriptor {
                        chunks: ChunkRange::new(0, 1),
                        bytes: HttpRange { start: 0, end: 9 },
                    }],
                }],
            )
        };
        ReconstructionV2 {
            offset_into_first_range: 0,
            terms: vec![term(1, 100), term(2, 50), term(3, 30)],
            xorbs: [fetch(1), fetch(2), fetch(3)].into_iter().collect(),
        }
    }

    #[test]
    fn a_slice_keeps_the_terms_a_byte_range_falls_in() {
        let r = three_terms();
        let all = r.slice(0, 179).expect("whole");
        assert_eq!(all, r);
        let mid = r.slice(120, 160).expect("middle");
        assert_eq!(mid.terms, r.terms[1..].to_vec());
        assert_eq!(mid.offset_into_first_range, 20);
        assert_eq!(mid.xorbs.len(), 2);
        mid.validate().expect("valid");
        let one = r.slice(100, 100).expect("one byte");
        assert_eq!((one.terms.len(), one.offset_into_first_range), (1, 0));
        assert!(r.slice(180, 200).is_none(), "past the end");
        assert!(r.slice(5, 4).is_none());
        // A range past the end is cut to the file.
        assert_eq!(r.slice(170, u64::MAX).expect("tail").terms.len(), 1);
        // An offset already in the answer shifts positions.
        let shifted = ReconstructionV2 {
            offset_into_first_range: 10,
            ..r.clone()
        };
        let s = shifted.slice(90, 95).expect("shifted");
        assert_eq!(
            (s.terms[0].hash, s.offset_into_first_range),
            (r.terms[1].hash, 0)
        );
    }

    const HASH: &str = "d8d408e608fb9ca213b9909a65d86d725f2de4d8d540324be8a363e7a6e228cb";

    #[test]
    fn parses_v1_example_from_spec() {
        let body = format!(
            r#"{{"offset_into_first_range":0,"terms":[{{"hash":"{HASH}","unpacked_length":263873,"range":{{"start":0,"end":4}}}}],
            "fetch_info":{{"{HASH}":[{{"range":{{"start":0,"end":4}},"url":"https://cdn/x","url_range":{{"start":0,"end":131071}}}}]}}}}"#
        );
        let r = Reconstruction::from_v1_json(body.as_bytes()).unwrap();
        r.validate().unwrap();
        let (fetch, desc) = r.source_for(&r.terms[0]).unwrap();
        assert_eq!(fetch.url, "https://cdn/x");
        assert_eq!(desc.bytes.len(), 131072);
        assert_eq!(fetch.range_header(), "bytes=0-131071");
        assert_eq!(r.unpacked_len(), 263873);
    }

    #[test]
    fn parses_v2_and_rejects_inconsistency() {
        let body = format!(
            r#"{{"offset_into_first_range":5,"terms":[{{"hash":"{HASH}","unpacked_length":100,"range":{{"start":2,"end":3}}}}],
            "xorbs":{{"{HASH}":[{{"url":"u","ranges":[{{"chunks":{{"start":0,"end":1}},"bytes":{{"start":0,"end":9}}}},{{"chunks":{{"start":2,"end":4}},"bytes":{{"start":20,"end":99}}}}]}}]}}}}"#
        );
        let r = Reconstruction::from_v2_json(body.as_bytes()).unwrap();
        r.validate().unwrap();
        assert_eq!(
            r.xorbs[&HASH.parse().unwrap()][0].range_header(),
            "bytes=0-9,20-99"
        );
        let mut bad = r.clone();
        bad.terms[0].range = ChunkRange::new(4, 6);
        assert!(bad.validate().is_err());
        let mut bad = r.clone();
        bad.offset_into_first_range = 100;
        assert!(bad.validate().is_err());
        assert!(Reconstruction::from_v2_json(b"{").is_err());
    }

    /// Found while writing the fuzz target (fuzz/regressions/reconstruction): terms whose
    /// chunk ranges no xorb can have made the file's chunk count overflow its u32.
    #[test]
    fn rejects_terms_no_xorb_can_hold() {
        let body = format!(
            r#"{{"offset_into_first_range":0,"terms":[{{"hash":"{HASH}","unpacked_length":100,"range":{{"start":0,"end":2}}}}],
            "xorbs":{{"{HASH}":[{{"url":"u","ranges":[{{"chunks":{{"start":0,"end":8192}},"bytes":{{"start":0,"end":9}}}}]}}]}}}}"#
        );
        let r = Reconstruction::from_v2_json(body.as_bytes()).unwrap();
        r.validate().unwrap();
        let mut huge = r.clone();
        huge.terms[0].range = ChunkRange::new(0, 3_000_000_000);
        huge.xorbs
            .values_mut()
            .for_each(|f| f[0].ranges[0].chunks.end = 4_000_000_000);
        assert!(huge.validate().is_err());
        let mut past_a_xorb = r.clone();
        past_a_xorb.terms[0].range = ChunkRange::new(8000, 8193);
        assert!(past_a_xorb.validate().is_err());
        let mut too_long = r.clone();
        too_long.terms[0].unpacked_length = 2 * 128 * 1024 + 1;
        assert!(too_long.validate().is_err());
        let mut many = r;
        let term = many.terms[0].clone();
        many.terms = vec![term; 1000];
        many.validate().unwrap();
    }
}
