//! The resume journal of a partial Xet download: which chunks are on disk, where, and
//! with which hash. Appended after the bytes are written; trusted only after the bytes are
//! hashed again on resume, so a torn write or a lost page costs a refetch, never a wrong
//! file.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use xet::XetHash;

const MAGIC: &[u8; 8] = b"ZESTJ002";
const HEADER_LEN: usize = 8 + 32 + 8;
const ENTRY_LEN: usize = 4 + 4 + 8 + 32;
const CHECKPOINT_LEN: usize = 32 + 4 + 8;

/// Where a chunk starts inside a xorb: lets a resumed fetch start mid-range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub xorb: XetHash,
    pub chunk: u32,
    pub byte_offset: u64,
}

/// One chunk of the file, written and verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkRecord {
    /// Index of the chunk in the file (over all terms).
    pub index: u32,
    pub size: u32,
    pub offset: u64,
    pub hash: XetHash,
}

pub struct Journal {
    file: File,
}

impl Journal {
    /// Opens the journal for `(file_hash, size)`, returning the records it holds. A journal
    /// for other content, or one that cannot be read, starts over empty.
    pub fn open(
        path: &Path,
        file_hash: &XetHash,
        size: u64,
    ) -> std::io::Result<(Journal, Vec<ChunkRecord>, Vec<Checkpoint>)> {
        let mut header = Vec::with_capacity(HEADER_LEN);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(file_hash.as_bytes());
        header.extend_from_slice(&size.to_le_bytes());

        let mut existing = Vec::new();
        if let Ok(mut f) = File::open(path) {
            let _ = f.read_to_end(&mut existing);
        }
        let matches = existing.starts_with(&header);
        let (records, checkpoints, valid_len) = if matches {
            parse_records(&existing[HEADER_LEN..])
        } else {
            (Vec::new(), Vec::new(), 0)
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        if matches {
            // Drop a torn tail so appends follow the last good record.
            file.set_len((HEADER_LEN + valid_len) as u64)?;
        } else {
            file.set_len(0)?;
            file.write_all_at(&header, 0)?;
        }
        let mut journal = Journal { file };
        journal.seek_end()?;
        Ok((journal, records, checkpoints))
    }

    fn seek_end(&mut self) -> std::io::Result<()> {
        use std::io::Seek;
        self.file.seek(std::io::SeekFrom::End(0)).map(|_| ())
    }

    /// Appends chunk records and checkpoints as a single checksummed record.
    pub fn append(
        &mut self,
        records: &[ChunkRecord],
        checkpoints: &[Checkpoint],
    ) -> std::io::Result<()> {
        if records.is_empty() && checkpoints.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(4 + records.len() * ENTRY_LEN + 8);
        buf.extend_from_slice(&(records.len() as u32).to_le_bytes());
        for r in records {
            buf.extend_from_slice(&r.index.to_le_bytes());
            buf.extend_from_slice(&r.size.to_le_bytes());
            buf.extend_from_slice(&r.offset.to_le_bytes());
            buf.extend_from_slice(r.hash.as_bytes());
        }
        buf.extend_from_slice(&(checkpoints.len() as u32).to_le_bytes());
        for c in checkpoints {
            buf.extend_from_slice(c.xorb.as_bytes());
            buf.extend_from_slice(&c.chunk.to_le_bytes());
            buf.extend_from_slice(&c.byte_offset.to_le_bytes());
        }
        let sum = blake3::hash(&buf);
        buf.extend_from_slice(&sum.as_bytes()[..8]);
        self.file.write_all(&buf)
    }
}

/// Records up to the first damaged one, and how many bytes they span.
pub fn parse_records(mut body: &[u8]) -> (Vec<ChunkRecord>, Vec<Checkpoint>, usize) {
    let mut out = Vec::new();
    let mut checkpoints = Vec::new();
    let mut used = 0;
    let u32_at = |b: &[u8], i: usize| -> Option<u32> {
        let s = b.get(i..i + 4)?;
        Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    };
    while let Some(n) = u32_at(body, 0).map(|n| n as usize) {
        let chunks_end = 4 + n.saturating_mul(ENTRY_LEN);
        let Some(m) = u32_at(body, chunks_end).map(|m| m as usize) else {
            break;
        };
        let len = chunks_end + 4 + m.saturating_mul(CHECKPOINT_LEN);
        let Some(rec) = body.get(..len) else { break };
        let Some(sum) = body.get(len..len + 8) else {
            break;
        };
        if &blake3::hash(rec).as_bytes()[..8] != sum {
            break;
        }
        for e in rec[4..chunks_end].chunks_exact(ENTRY_LEN) {
            let mut off = [0u8; 8];
            off.copy_from_slice(&e[8..16]);
            let mut h = [0u8; 32];
            h.copy_from_slice(&e[16..48]);
            out.push(ChunkRecord {
                index: u32_at(e, 0).unwrap_or(0),
                size: u32_at(e, 4).unwrap_or(0),
                offset: u64::from_le_bytes(off),
                hash: XetHash::from_bytes(h),
            });
        }
        for e in rec[chunks_end + 4..].chunks_exact(CHECKPOINT_LEN) {
            let mut h = [0u8; 32];
            h.copy_from_slice(&e[..32]);
            let mut off = [0u8; 8];
            off.copy_from_slice(&e[36..44]);
            checkpoints.push(Checkpoint {
                xorb: XetHash::from_bytes(h),
                chunk: u32_at(e, 32).unwrap_or(0),
                byte_offset: u64::from_le_bytes(off),
            });
        }
        used += len + 8;
        body = &body[len + 8..];
    }
    (out, checkpoints, used)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_a_torn_tail_and_rejects_other_content() {
        let dir = std::env::temp_dir().join(format!("zest-journal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("j");
        let _ = std::fs::remove_file(&p);
        let h = xet::hash::chunk_hash(b"file");
        let rec = |i: u32| ChunkRecord {
            index: i,
            size: 10,
            offset: u64::from(i) * 10,
            hash: xet::hash::chunk_hash(&i.to_le_bytes()),
        };
        let cp = Checkpoint {
            xorb: h,
            chunk: 7,
            byte_offset: 12345,
        };
        {
            let (mut j, recs, _) = Journal::open(&p, &h, 100).unwrap();
            assert!(recs.is_empty());
            j.append(&[rec(0), rec(1)], &[cp]).unwrap();
            j.append(&[rec(2)], &[]).unwrap();
        }
        // Tear the last record.
        let len = std::fs::metadata(&p).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        {
            let (mut j, recs, cps) = Journal::open(&p, &h, 100).unwrap();
            assert_eq!(recs, vec![rec(0), rec(1)]);
            assert_eq!(cps, vec![cp]);
            j.append(&[rec(5)], &[]).unwrap();
        }
        let (_, recs, _) = Journal::open(&p, &h, 100).unwrap();
        assert_eq!(recs, vec![rec(0), rec(1), rec(5)]);
        let (_, recs, _) = Journal::open(&p, &h, 101).unwrap();
        assert!(recs.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
