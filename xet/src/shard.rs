//! The shard (MDB) format: header, file info section, xorb (CAS) info section,
//! lookup tables and footer.
//!
//! Shards carry the file → terms mapping and per-xorb chunk lists. Parsing bounds every
//! count by the bytes present, so a hostile shard cannot force a large allocation.

use std::cmp::Ordering;

use crate::error::{Error, Result};
use crate::hash::XetHash;
use crate::reader::Reader;

const ENTRY: usize = 48;
const HEADER_LEN: usize = 48;
pub const FOOTER_LEN: usize = 200;
const HEADER_VERSION: u64 = 2;
const FOOTER_VERSION: u64 = 1;

/// "HFRepoMetaData", a NUL, then the fixed magic sequence.
pub const HEADER_TAG: [u8; 32] = [
    b'H', b'F', b'R', b'e', b'p', b'o', b'M', b'e', b't', b'a', b'D', b'a', b't', b'a', 0, 0x55,
    0x69, 0x67, 0x45, 0x6a, 0x7b, 0x81, 0x57, 0x83, 0xa5, 0xbd, 0xd9, 0x5c, 0xcd, 0xd1, 0x4a, 0xa9,
];

pub const FLAG_WITH_VERIFICATION: u32 = 1 << 31;
pub const FLAG_WITH_METADATA_EXT: u32 = 1 << 30;
/// Chunk flag: eligible for global dedup queries.
pub const CHUNK_FLAG_GLOBAL_DEDUP: u32 = 1 << 31;

/// One term of a file: a chunk range of a xorb.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileTerm {
    pub xorb_hash: XetHash,
    pub xorb_flags: u32,
    pub unpacked_bytes: u32,
    pub chunk_start: u32,
    pub chunk_end: u32,
}

/// A file's reconstruction as a shard stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileInfo {
    pub file_hash: XetHash,
    pub terms: Vec<FileTerm>,
    /// One verification (range) hash per term, when present.
    pub verification: Option<Vec<XetHash>>,
    /// SHA-256 of the file's bytes, when present. xet-core stores it as it stores hashes
    /// (four little-endian words), so its Xet string form is the usual SHA-256 hex.
    pub sha256: Option<XetHash>,
}

impl FileInfo {
    pub fn size(&self) -> u64 {
        self.terms.iter().map(|t| u64::from(t.unpacked_bytes)).sum()
    }
}

/// One chunk of a xorb as a shard lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XorbChunkEntry {
    pub chunk_hash: XetHash,
    /// Offset of the chunk in the xorb's uncompressed data.
    pub byte_range_start: u32,
    pub unpacked_bytes: u32,
    pub flags: u32,
}

/// A xorb as a shard lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XorbInfo {
    pub xorb_hash: XetHash,
    pub xorb_flags: u32,
    pub num_bytes_in_xorb: u32,
    pub num_bytes_on_disk: u32,
    pub chunks: Vec<XorbChunkEntry>,
}

/// The stored-shard footer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardFooter {
    pub file_info_offset: u64,
    pub xorb_info_offset: u64,
    pub file_lookup_offset: u64,
    pub file_lookup_num_entries: u64,
    pub xorb_lookup_offset: u64,
    pub xorb_lookup_num_entries: u64,
    pub chunk_lookup_offset: u64,
    pub chunk_lookup_num_entries: u64,
    /// Key protecting chunk hashes (global dedup answers); zero when unprotected.
    pub chunk_hash_key: XetHash,
    pub creation_timestamp: u64,
    pub key_expiry: u64,
    pub stored_bytes_on_disk: u64,
    pub materialized_bytes: u64,
    pub stored_bytes: u64,
    pub footer_offset: u64,
}

/// The shapes a serialized shard takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardForm {
    /// No footer: what the upload API takes.
    Upload,
    /// Footer and lookup tables: what clients cache locally.
    Stored,
    /// Footer with empty lookup tables: what the CAS stores server-side.
    StoredWithoutLookups,
}

/// A parsed shard.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Shard {
    pub files: Vec<FileInfo>,
    pub xorbs: Vec<XorbInfo>,
    /// Present for stored shards, absent for shards as uploaded.
    pub footer: Option<ShardFooter>,
}

/// xet-core orders hashes as four native u64 words; shards list files and xorbs that way.
fn word_order(a: &XetHash, b: &XetHash) -> Ordering {
    a.words().cmp(&b.words())
}

/// First word of a hash: the lookup tables' key.
pub fn truncated(h: &XetHash) -> u64 {
    h.words()[0]
}

impl Shard {
    /// Parses a shard, with or without footer.
    pub fn parse(bytes: &[u8]) -> Result<Shard> {
        let mut r = Reader { buf: bytes, pos: 0 };
        let tag = r.take(32)?;
        if tag[15..] != HEADER_TAG[15..] {
            return Err(Error::BadMagic("shard header"));
        }
        let version = r.u64()?;
        if version != HEADER_VERSION {
            return Err(Error::UnsupportedVersion {
                what: "shard header",
                version,
            });
        }
        let footer_size = r.u64()?;
        let footer = match footer_size {
            0 => None,
            n if n as usize == FOOTER_LEN => Some(parse_footer(bytes)?),
            n => return Err(Error::invalid("shard header", format!("footer size {n}"))),
        };
        let body_end = footer
            .as_ref()
            .map_or(bytes.len(), |f| f.footer_offset as usize);
        if let Some(f) = &footer
            && f.file_info_offset != HEADER_LEN as u64
        {
            return Err(Error::invalid(
                "shard footer",
                "file info does not follow the header",
            ));
        }
        let mut r = Reader {
            buf: &bytes[..body_end],
            pos: HEADER_LEN,
        };

        let mut files = Vec::new();
        loop {
            let hash = r.hash()?;
            let flags = r.u32()?;
            let n = r.u32()? as usize;
            r.take(8)?;
            if hash.0 == [0xff; 32] {
                break;
            }
            let has_ver = flags & FLAG_WITH_VERIFICATION != 0;
            let has_ext = flags & FLAG_WITH_METADATA_EXT != 0;
            let needed = n * ENTRY * (1 + usize::from(has_ver)) + usize::from(has_ext) * ENTRY;
            if needed > r.buf.len() - r.pos {
                return Err(Error::Truncated {
                    what: "shard file info",
                    needed,
                    available: r.buf.len() - r.pos,
                });
            }
            let mut terms = Vec::with_capacity(n);
            for _ in 0..n {
                terms.push(FileTerm {
                    xorb_hash: r.hash()?,
                    xorb_flags: r.u32()?,
                    unpacked_bytes: r.u32()?,
                    chunk_start: r.u32()?,
                    chunk_end: r.u32()?,
                });
            }
            for t in &terms {
                if t.chunk_start >= t.chunk_end {
                    return Err(Error::invalid(
                        "shard file term",
                        format!("chunk range {}..{}", t.chunk_start, t.chunk_end),
                    ));
                }
            }
            let verification = if has_ver {
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(r.hash()?);
                    r.take(16)?;
                }
                Some(v)
            } else {
                None
            };
            let sha256 = if has_ext {
                let s = r.hash()?;
                r.take(16)?;
                Some(s)
            } else {
                None
            };
            files.push(FileInfo {
                file_hash: hash,
                terms,
                verification,
                sha256,
            });
        }

        if let Some(f) = &footer
            && f.xorb_info_offset != r.pos as u64
        {
            return Err(Error::invalid(
                "shard footer",
                "xorb info offset disagrees with the file section",
            ));
        }
        let mut xorbs = Vec::new();
        loop {
            let hash = r.hash()?;
            let flags = r.u32()?;
            let n = r.u32()? as usize;
            let num_bytes_in_xorb = r.u32()?;
            let num_bytes_on_disk = r.u32()?;
            if hash.0 == [0xff; 32] {
                break;
            }
            if n * ENTRY > r.buf.len() - r.pos {
                return Err(Error::Truncated {
                    what: "shard xorb info",
                    needed: n * ENTRY,
                    available: r.buf.len() - r.pos,
                });
            }
            let mut chunks = Vec::with_capacity(n);
            for _ in 0..n {
                chunks.push(XorbChunkEntry {
                    chunk_hash: r.hash()?,
                    byte_range_start: r.u32()?,
                    unpacked_bytes: r.u32()?,
                    flags: r.u32()?,
                });
                r.take(4)?;
            }
            xorbs.push(XorbInfo {
                xorb_hash: hash,
                xorb_flags: flags,
                num_bytes_in_xorb,
                num_bytes_on_disk,
                chunks,
            });
        }
        if let Some(f) = &footer {
            let tables_end = f.chunk_lookup_offset + f.chunk_lookup_num_entries * 16;
            let in_order = r.pos as u64 <= f.file_lookup_offset
                && f.file_lookup_offset + f.file_lookup_num_entries * 12 <= f.xorb_lookup_offset
                && f.xorb_lookup_offset + f.xorb_lookup_num_entries * 12 <= f.chunk_lookup_offset
                && tables_end <= f.footer_offset;
            if !in_order {
                return Err(Error::invalid("shard footer", "lookup tables out of place"));
            }
        }
        Ok(Shard {
            files,
            xorbs,
            footer,
        })
    }

    /// The form this shard was parsed from (for a shard built in memory: `Upload` unless
    /// it has a footer).
    pub fn form(&self) -> ShardForm {
        match &self.footer {
            None => ShardForm::Upload,
            Some(f)
                if f.file_lookup_num_entries
                    + f.xorb_lookup_num_entries
                    + f.chunk_lookup_num_entries
                    == 0
                    && !(self.files.is_empty() && self.xorbs.is_empty()) =>
            {
                ShardForm::StoredWithoutLookups
            }
            Some(_) => ShardForm::Stored,
        }
    }

    /// Serializes the shard in the given form. Files and xorbs are written in xet-core's
    /// order, so equal content gives equal bytes.
    pub fn serialize(&self, form: ShardForm) -> Result<Vec<u8>> {
        let with_footer = form != ShardForm::Upload;
        let mut files: Vec<&FileInfo> = self.files.iter().collect();
        files.sort_by(|a, b| word_order(&a.file_hash, &b.file_hash));
        let mut xorbs: Vec<&XorbInfo> = self.xorbs.iter().collect();
        xorbs.sort_by(|a, b| word_order(&a.xorb_hash, &b.xorb_hash));

        let mut out = Vec::new();
        out.extend_from_slice(&HEADER_TAG);
        out.extend_from_slice(&HEADER_VERSION.to_le_bytes());
        out.extend_from_slice(&(if with_footer { FOOTER_LEN as u64 } else { 0 }).to_le_bytes());

        let file_info_offset = out.len() as u64;
        let mut file_lookup = Vec::new();
        let mut index = 0u32;
        for f in &files {
            if let Some(v) = &f.verification
                && v.len() != f.terms.len()
            {
                return Err(Error::invalid(
                    "shard file info",
                    "verification entries do not match terms",
                ));
            }
            file_lookup.push((truncated(&f.file_hash), index));
            let mut flags = 0;
            if f.verification.is_some() {
                flags |= FLAG_WITH_VERIFICATION;
            }
            if f.sha256.is_some() {
                flags |= FLAG_WITH_METADATA_EXT;
            }
            let n = u32::try_from(f.terms.len())
                .map_err(|_| Error::invalid("shard file info", "too many terms"))?;
            out.extend_from_slice(f.file_hash.as_bytes());
            out.extend_from_slice(&flags.to_le_bytes());
            out.extend_from_slice(&n.to_le_bytes());
            out.extend_from_slice(&[0; 8]);
            for t in &f.terms {
                out.extend_from_slice(t.xorb_hash.as_bytes());
                for v in [t.xorb_flags, t.unpacked_bytes, t.chunk_start, t.chunk_end] {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
            for h in f.verification.iter().flatten() {
                out.extend_from_slice(h.as_bytes());
                out.extend_from_slice(&[0; 16]);
            }
            if let Some(s) = &f.sha256 {
                out.extend_from_slice(s.as_bytes());
                out.extend_from_slice(&[0; 16]);
            }
            index +=
                1 + n * (1 + u32::from(f.verification.is_some())) + u32::from(f.sha256.is_some());
        }
        write_bookend(&mut out);

        let xorb_info_offset = out.len() as u64;
        let mut xorb_lookup = Vec::new();
        let mut chunk_lookup = Vec::new();
        let mut index = 0u32;
        for x in &xorbs {
            xorb_lookup.push((truncated(&x.xorb_hash), index));
            let n = u32::try_from(x.chunks.len())
                .map_err(|_| Error::invalid("shard xorb info", "too many chunks"))?;
            out.extend_from_slice(x.xorb_hash.as_bytes());
            for v in [x.xorb_flags, n, x.num_bytes_in_xorb, x.num_bytes_on_disk] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            for (i, c) in x.chunks.iter().enumerate() {
                out.extend_from_slice(c.chunk_hash.as_bytes());
                for v in [c.byte_range_start, c.unpacked_bytes, c.flags, 0] {
                    out.extend_from_slice(&v.to_le_bytes());
                }
                chunk_lookup.push((truncated(&c.chunk_hash), index, i as u32));
            }
            index += 1 + n;
        }
        write_bookend(&mut out);
        if !with_footer {
            return Ok(out);
        }

        if form == ShardForm::StoredWithoutLookups {
            file_lookup.clear();
            xorb_lookup.clear();
            chunk_lookup.clear();
        }
        // The sort is stable on the key only, as xet-core's is, so ties keep insertion order.
        chunk_lookup.sort_by_key(|&(k, _, _)| k);
        let file_lookup_offset = out.len() as u64;
        for (k, i) in &file_lookup {
            out.extend_from_slice(&k.to_le_bytes());
            out.extend_from_slice(&i.to_le_bytes());
        }
        let xorb_lookup_offset = out.len() as u64;
        for (k, i) in &xorb_lookup {
            out.extend_from_slice(&k.to_le_bytes());
            out.extend_from_slice(&i.to_le_bytes());
        }
        let chunk_lookup_offset = out.len() as u64;
        for (k, x, c) in &chunk_lookup {
            out.extend_from_slice(&k.to_le_bytes());
            out.extend_from_slice(&x.to_le_bytes());
            out.extend_from_slice(&c.to_le_bytes());
        }
        let footer = ShardFooter {
            file_info_offset,
            xorb_info_offset,
            file_lookup_offset,
            file_lookup_num_entries: file_lookup.len() as u64,
            xorb_lookup_offset,
            xorb_lookup_num_entries: xorb_lookup.len() as u64,
            chunk_lookup_offset,
            chunk_lookup_num_entries: chunk_lookup.len() as u64,
            chunk_hash_key: self
                .footer
                .as_ref()
                .map_or(XetHash::ZERO, |f| f.chunk_hash_key),
            creation_timestamp: self.footer.as_ref().map_or(0, |f| f.creation_timestamp),
            key_expiry: self.footer.as_ref().map_or(u64::MAX, |f| f.key_expiry),
            stored_bytes_on_disk: xorbs.iter().map(|x| u64::from(x.num_bytes_on_disk)).sum(),
            materialized_bytes: files.iter().map(|f| f.size()).sum(),
            stored_bytes: xorbs.iter().map(|x| u64::from(x.num_bytes_in_xorb)).sum(),
            footer_offset: out.len() as u64,
        };
        write_footer(&footer, &mut out);
        Ok(out)
    }

    pub fn file(&self, hash: &XetHash) -> Option<&FileInfo> {
        self.files.iter().find(|f| f.file_hash == *hash)
    }
}

fn write_bookend(out: &mut Vec<u8>) {
    out.extend_from_slice(&[0xff; 32]);
    out.extend_from_slice(&[0; 16]);
}

fn write_footer(f: &ShardFooter, out: &mut Vec<u8>) {
    let head = [
        FOOTER_VERSION,
        f.file_info_offset,
        f.xorb_info_offset,
        f.file_lookup_offset,
        f.file_lookup_num_entries,
        f.xorb_lookup_offset,
        f.xorb_lookup_num_entries,
        f.chunk_lookup_offset,
        f.chunk_lookup_num_entries,
    ];
    for v in head {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(f.chunk_hash_key.as_bytes());
    for v in [f.creation_timestamp, f.key_expiry, 0, 0, 0, 0, 0, 0] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for v in [
        f.stored_bytes_on_disk,
        f.materialized_bytes,
        f.stored_bytes,
        f.footer_offset,
    ] {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn parse_footer(bytes: &[u8]) -> Result<ShardFooter> {
    if bytes.len() < HEADER_LEN + FOOTER_LEN {
        return Err(Error::Truncated {
            what: "shard",
            needed: HEADER_LEN + FOOTER_LEN,
            available: bytes.len(),
        });
    }
    let start = bytes.len() - FOOTER_LEN;
    let mut r = Reader {
        buf: &bytes[start..],
        pos: 0,
    };
    let version = r.u64()?;
    if version != FOOTER_VERSION {
        return Err(Error::UnsupportedVersion {
            what: "shard footer",
            version,
        });
    }
    let mut f = ShardFooter {
        file_info_offset: r.u64()?,
        xorb_info_offset: r.u64()?,
        file_lookup_offset: r.u64()?,
        file_lookup_num_entries: r.u64()?,
        xorb_lookup_offset: r.u64()?,
        xorb_lookup_num_entries: r.u64()?,
        chunk_lookup_offset: r.u64()?,
        chunk_lookup_num_entries: r.u64()?,
        chunk_hash_key: r.hash()?,
        creation_timestamp: r.u64()?,
        key_expiry: r.u64()?,
        stored_bytes_on_disk: 0,
        materialized_bytes: 0,
        stored_bytes: 0,
        footer_offset: 0,
    };
    r.take(48)?;
    f.stored_bytes_on_disk = r.u64()?;
    f.materialized_bytes = r.u64()?;
    f.stored_bytes = r.u64()?;
    f.footer_offset = r.u64()?;
    if f.footer_offset != start as u64 {
        return Err(Error::invalid(
            "shard footer",
            format!("footer offset {} but footer at {start}", f.footer_offset),
        ));
    }
    // Bounding each table by the shard's size keeps the arithmetic in parse() from overflowing.
    let len = bytes.len() as u64;
    for (off, n) in [
        (f.file_lookup_offset, f.file_lookup_num_entries),
        (f.xorb_lookup_offset, f.xorb_lookup_num_entries),
        (f.chunk_lookup_offset, f.chunk_lookup_num_entries),
    ] {
        if off > len || n > len {
            return Err(Error::invalid(
                "shard footer",
                "lookup table beyond the shard",
            ));
        }
    }
    if f.file_info_offset > len || f.xorb_info_offset > len {
        return Err(Error::invalid(
            "shard footer",
            "section offset beyond the shard",
        ));
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::chunk_hash;

    fn sample() -> Shard {
        let x = chunk_hash(b"xorb");
        Shard {
            files: vec![FileInfo {
                file_hash: chunk_hash(b"file"),
                terms: vec![FileTerm {
                    xorb_hash: x,
                    xorb_flags: 0,
                    unpacked_bytes: 10,
                    chunk_start: 0,
                    chunk_end: 2,
                }],
                verification: Some(vec![chunk_hash(b"v")]),
                sha256: Some(XetHash([7; 32])),
            }],
            xorbs: vec![XorbInfo {
                xorb_hash: x,
                xorb_flags: 0,
                num_bytes_in_xorb: 10,
                num_bytes_on_disk: 40,
                chunks: vec![
                    XorbChunkEntry {
                        chunk_hash: chunk_hash(b"a"),
                        byte_range_start: 0,
                        unpacked_bytes: 4,
                        flags: 0,
                    },
                    XorbChunkEntry {
                        chunk_hash: chunk_hash(b"b"),
                        byte_range_start: 4,
                        unpacked_bytes: 6,
                        flags: 0,
                    },
                ],
            }],
            footer: None,
        }
    }

    #[test]
    fn round_trip_with_and_without_footer() {
        let s = sample();
        let bare = s.serialize(ShardForm::Upload).unwrap();
        assert_eq!(Shard::parse(&bare).unwrap(), s);
        let stored = s.serialize(ShardForm::Stored).unwrap();
        let parsed = Shard::parse(&stored).unwrap();
        assert_eq!(parsed.files, s.files);
        assert_eq!(parsed.xorbs, s.xorbs);
        assert_eq!(parsed.form(), ShardForm::Stored);
        assert_eq!(parsed.serialize(ShardForm::Stored).unwrap(), stored);
        let lean = s.serialize(ShardForm::StoredWithoutLookups).unwrap();
        assert_eq!(
            Shard::parse(&lean).unwrap().form(),
            ShardForm::StoredWithoutLookups
        );
        let f = parsed.footer.unwrap();
        assert_eq!(f.materialized_bytes, 10);
        assert_eq!(f.chunk_lookup_num_entries, 2);
    }

    #[test]
    fn truncations_are_errors() {
        let stored = sample().serialize(ShardForm::Stored).unwrap();
        for n in 0..stored.len() {
            assert!(Shard::parse(&stored[..n]).is_err(), "prefix {n}");
        }
    }
}
