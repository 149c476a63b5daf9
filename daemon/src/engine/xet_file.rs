//! Downloading one Xet file: reconstruction → ranges fetched in parallel → chunks
//! decompressed, hashed and written at their offsets → file hash (and sha256) checked.
//! The file is never held in memory, and an interrupted download resumes from its journal.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tokio::sync::Mutex as AsyncMutex;
use tokio::task::JoinSet;
use xet::XetHash;
use xet::chunk_stream::ChunkStreamDecoder;
use xet::reconstruction::{ChunkRange, HttpRange, Reconstruction};
use xet::remote::{CasClient, RemoteError, UrlSource};

use super::Engine;
use super::error::PullError;
use super::journal::{Checkpoint, ChunkRecord, Journal};
use super::progress::PullCounters;

pub struct XetFileJob {
    pub xet_hash: XetHash,
    pub size: u64,
    /// The LFS sha256, checked too when known.
    pub sha256: Option<String>,
    pub partial: PathBuf,
    pub journal: PathBuf,
    pub name: String,
}

/// Each chunk of the file, once it is on disk and hashed: its hash and size.
type ChunkTable = Vec<Option<(XetHash, u32)>>;

/// A term placed in the file.
#[derive(Clone, Debug)]
struct PlacedTerm {
    xorb: XetHash,
    chunks: ChunkRange,
    offset: u64,
    len: u64,
    /// Index of its first chunk among all the file's chunks.
    first_chunk: u32,
}

/// Terms fetched together: they share one byte range of one xorb.
#[derive(Clone, Debug)]
struct Group {
    xorb: XetHash,
    chunks: ChunkRange,
    bytes: HttpRange,
    terms: Vec<usize>,
}

/// Downloads `job` into `job.partial`, verified. The caller moves it into place.
pub async fn download(
    engine: &Engine,
    cas: &Arc<CasClient>,
    job: &XetFileJob,
    counters: &Arc<PullCounters>,
) -> Result<(), PullError> {
    if job.size == 0 {
        File::create(&job.partial).map_err(|e| PullError::disk("creating an empty file", &e))?;
        return check_file_hash(job, &[]);
    }
    let recon = cas.reconstruction(&job.xet_hash).await?;
    if recon.offset_into_first_range != 0 || recon.unpacked_len() != job.size {
        return Err(PullError::integrity(format!(
            "the CAS describes {} as {} bytes, the Hub says {}",
            job.name,
            recon.unpacked_len(),
            job.size
        )));
    }
    let terms = place_terms(&recon);
    let groups = group_terms(&recon, &terms)?;
    let total_chunks = terms
        .last()
        .map(|t| t.first_chunk + t.chunks.len())
        .unwrap_or(0) as usize;

    // Resume what an earlier attempt verified, if its bytes still hash right.
    let (file, verified) = open_partial(job)?;
    let file = Arc::new(file);
    let (journal, records, checkpoints) = Journal::open(&job.journal, &job.xet_hash, job.size)
        .map_err(|e| PullError::disk("opening the resume journal", &e))?;
    let recovered = recover(&file, &records, &terms, verified);
    let table: Arc<Mutex<ChunkTable>> = Arc::new(Mutex::new(vec![None; total_chunks]));
    let resumed_bytes: u64 = recovered.values().map(|r| u64::from(r.size)).sum();
    {
        let mut t = lock(&table);
        for r in recovered.values() {
            if let Some(slot) = t.get_mut(r.index as usize) {
                *slot = Some((r.hash, r.size));
            }
        }
    }
    let journal = Arc::new(Mutex::new(journal));
    let mut todo: Vec<(Group, Start)> = Vec::new();
    for g in groups {
        if let Some(start) = resume_point(&g, &terms, &recovered, &checkpoints) {
            todo.push((g, start));
        }
    }
    if resumed_bytes > 0 {
        tracing::info!(file = %job.name, resumed_bytes, "resuming a partial download");
        counters
            .bytes_done
            .fetch_add(resumed_bytes, Ordering::Relaxed);
        counters
            .from_local
            .fetch_add(resumed_bytes, Ordering::Relaxed);
    }
    let recovered = Arc::new(recovered);

    let terms = Arc::new(terms);
    let recon = Arc::new(AsyncMutex::new(Arc::new(recon)));
    let mut tasks = JoinSet::new();
    for (group, start) in todo {
        let recovered = recovered.clone();
        let (engine, cas, file, terms, table, journal, recon, counters) = (
            engine.clone(),
            cas.clone(),
            file.clone(),
            terms.clone(),
            table.clone(),
            journal.clone(),
            recon.clone(),
            counters.clone(),
        );
        let file_hash = job.xet_hash;
        tasks.spawn(async move {
            let _permit = engine
                .fetch_permits
                .acquire()
                .await
                .map_err(|_| PullError::new(super::error::Kind::Internal, "shutting down"))?;
            let source = GroupUrl {
                cas: &cas,
                recon: &recon,
                file_hash,
                group: &group,
            };
            let ctx = GroupCtx {
                group: &group,
                start,
                terms: &terms,
                recovered: &recovered,
                file: &file,
                journal: &journal,
                counters: &counters,
            };
            let records = fetch_group(&cas, &source, &ctx).await?;
            let mut t = lock(&table);
            for r in &records {
                if let Some(slot) = t.get_mut(r.index as usize) {
                    *slot = Some((r.hash, r.size));
                }
            }
            Ok::<_, PullError>(())
        });
    }
    while let Some(res) = tasks.join_next().await {
        match res {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tasks.abort_all();
                return Err(e);
            }
            Err(e) => {
                tasks.abort_all();
                return Err(PullError::new(
                    super::error::Kind::Internal,
                    format!("download task failed: {e}"),
                ));
            }
        }
    }

    let chunks: Vec<(XetHash, u64)> = {
        let t = lock(&table);
        let mut out = Vec::with_capacity(t.len());
        for (i, c) in t.iter().enumerate() {
            match c {
                Some((h, s)) => out.push((*h, u64::from(*s))),
                None => {
                    return Err(PullError::integrity(format!(
                        "chunk {i} of {} never arrived",
                        job.name
                    )));
                }
            }
        }
        out
    };
    if let Err(e) = check_file_hash(job, &chunks) {
        // Every chunk hashed as the CAS described it, yet the whole does not: start over.
        let _ = std::fs::remove_file(&job.journal);
        return Err(e);
    }
    if let Some(expected) = &job.sha256 {
        let path = job.partial.clone();
        let got = tokio::task::spawn_blocking(move || sha256_file(&path))
            .await
            .map_err(|e| PullError::new(super::error::Kind::Internal, e.to_string()))?
            .map_err(|e| PullError::disk("reading back the download", &e))?;
        if !got.eq_ignore_ascii_case(expected) {
            let _ = std::fs::remove_file(&job.journal);
            return Err(PullError::integrity(format!(
                "{}: sha256 {got} does not match the Hub's {expected}",
                job.name
            )));
        }
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn check_file_hash(job: &XetFileJob, chunks: &[(XetHash, u64)]) -> Result<(), PullError> {
    let got = xet::merkle::file_hash(chunks);
    if got != job.xet_hash {
        return Err(PullError::integrity(format!(
            "{}: the chunks hash to {got}, not to the Hub's Xet hash {}",
            job.name, job.xet_hash
        )));
    }
    let size: u64 = chunks.iter().map(|c| c.1).sum();
    if size != job.size {
        return Err(PullError::integrity(format!(
            "{}: {size} bytes, expected {}",
            job.name, job.size
        )));
    }
    Ok(())
}

fn place_terms(recon: &Reconstruction) -> Vec<PlacedTerm> {
    let mut offset = 0u64;
    let mut first_chunk = 0u32;
    recon
        .terms
        .iter()
        .map(|t| {
            let p = PlacedTerm {
                xorb: t.hash,
                chunks: t.range,
                offset,
                len: u64::from(t.unpacked_length),
                first_chunk,
            };
            offset += u64::from(t.unpacked_length);
            first_chunk += t.range.len();
            p
        })
        .collect()
}

/// Groups terms by the fetch range that covers them, so shared ranges are fetched once.
fn group_terms(recon: &Reconstruction, terms: &[PlacedTerm]) -> Result<Vec<Group>, PullError> {
    let mut index: HashMap<(XetHash, usize, usize), usize> = HashMap::new();
    let mut groups: Vec<Group> = Vec::new();
    for (ti, t) in terms.iter().enumerate() {
        let fetches = recon
            .xorbs
            .get(&t.xorb)
            .ok_or_else(|| PullError::integrity(format!("no fetch info for xorb {}", t.xorb)))?;
        let found = fetches.iter().enumerate().find_map(|(fi, f)| {
            f.ranges
                .iter()
                .enumerate()
                .find(|(_, r)| r.chunks.contains(&t.chunks))
                .map(|(ri, r)| (fi, ri, r))
        });
        let Some((fi, ri, r)) = found else {
            return Err(PullError::integrity(format!(
                "no fetch range covers a term of xorb {}",
                t.xorb
            )));
        };
        let gi = *index.entry((t.xorb, fi, ri)).or_insert_with(|| {
            groups.push(Group {
                xorb: t.xorb,
                chunks: r.chunks,
                bytes: r.bytes,
                terms: Vec::new(),
            });
            groups.len() - 1
        });
        groups[gi].terms.push(ti);
    }
    Ok(groups)
}

/// Opens (or creates) the partial file at the right size; true if it held earlier data.
fn open_partial(job: &XetFileJob) -> Result<(File, bool), PullError> {
    let existing = std::fs::metadata(&job.partial)
        .map(|m| m.len() == job.size)
        .unwrap_or(false);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&job.partial)
        .map_err(|e| PullError::disk("creating the partial file", &e))?;
    if !existing {
        let _ = std::fs::remove_file(&job.journal);
        f.set_len(0)
            .map_err(|e| PullError::disk("sizing the partial file", &e))?;
        f.set_len(job.size)
            .map_err(|e| PullError::disk("sizing the partial file", &e))?;
    }
    Ok((f, existing))
}

/// The journal's records whose bytes are on disk, hash right, and sit where the terms say.
fn recover(
    file: &File,
    records: &[ChunkRecord],
    terms: &[PlacedTerm],
    had_data: bool,
) -> HashMap<u32, ChunkRecord> {
    let mut ok = HashMap::new();
    if !had_data {
        return ok;
    }
    let by_index: HashMap<u32, &ChunkRecord> = records.iter().map(|r| (r.index, r)).collect();
    let mut buf = Vec::new();
    for t in terms {
        let mut offset = t.offset;
        let mut good = Vec::new();
        for c in t.first_chunk..t.first_chunk + t.chunks.len() {
            let Some(r) = by_index.get(&c) else { break };
            if r.offset != offset || r.size as usize > xet::MAX_CHUNK_SIZE {
                break;
            }
            buf.resize(r.size as usize, 0);
            if file.read_exact_at(&mut buf, r.offset).is_err()
                || xet::hash::chunk_hash(&buf) != r.hash
            {
                break;
            }
            offset += u64::from(r.size);
            good.push(**r);
        }
        // A verified prefix of the term counts, even when the term is unfinished.
        if offset <= t.offset + t.len {
            for r in good {
                ok.insert(r.index, r);
            }
        }
    }
    ok
}

/// Hands out the URL for a group's range, fetching a fresh reconstruction when it expired.
struct GroupUrl<'a> {
    cas: &'a CasClient,
    recon: &'a AsyncMutex<Arc<Reconstruction>>,
    file_hash: XetHash,
    group: &'a Group,
}

impl GroupUrl<'_> {
    fn url_in(&self, r: &Reconstruction) -> Option<String> {
        r.xorbs.get(&self.group.xorb)?.iter().find_map(|f| {
            f.ranges
                .iter()
                .any(|d| d.chunks.contains(&self.group.chunks) && d.bytes == self.group.bytes)
                .then(|| f.url.clone())
        })
    }
}

impl UrlSource for GroupUrl<'_> {
    async fn url(&self, expired: Option<&str>) -> Result<String, RemoteError> {
        let mut guard = self.recon.lock().await;
        if let Some(u) = self.url_in(&guard)
            && Some(u.as_str()) != expired
        {
            return Ok(u);
        }
        if expired.is_none() {
            return Err(RemoteError::UrlExpired {
                what: format!("xorb {}", self.group.xorb),
            });
        }
        let fresh = Arc::new(self.cas.reconstruction(&self.file_hash).await?);
        *guard = fresh.clone();
        // The same bytes may be split differently now; any range holding ours will do.
        self.url_in(&fresh)
            .or_else(|| {
                fresh.xorbs.get(&self.group.xorb)?.iter().find_map(|f| {
                    f.ranges
                        .iter()
                        .any(|d| d.chunks.contains(&self.group.chunks))
                        .then(|| f.url.clone())
                })
            })
            .ok_or_else(|| RemoteError::UrlExpired {
                what: format!("xorb {} (no longer offered by the CAS)", self.group.xorb),
            })
    }
}

/// Where a group's fetch starts: a chunk of the xorb and the byte it starts at.
#[derive(Clone, Copy, Debug)]
struct Start {
    chunk: u32,
    byte: u64,
}

/// Whether a group still needs fetching, and from where: the latest checkpoint at or
/// before the first chunk some term of it still lacks.
fn resume_point(
    g: &Group,
    terms: &[PlacedTerm],
    recovered: &HashMap<u32, ChunkRecord>,
    checkpoints: &[Checkpoint],
) -> Option<Start> {
    let first_missing = g
        .terms
        .iter()
        .filter_map(|&ti| {
            let t = &terms[ti];
            (t.chunks.start..t.chunks.end)
                .find(|x| !recovered.contains_key(&(t.first_chunk + (x - t.chunks.start))))
        })
        .min()?;
    let best = checkpoints
        .iter()
        .filter(|c| {
            c.xorb == g.xorb
                && c.chunk >= g.chunks.start
                && c.chunk <= first_missing
                && c.byte_offset >= g.bytes.start
                && c.byte_offset <= g.bytes.end
        })
        .max_by_key(|c| c.chunk);
    Some(match best {
        Some(c) => Start {
            chunk: c.chunk,
            byte: c.byte_offset,
        },
        None => Start {
            chunk: g.chunks.start,
            byte: g.bytes.start,
        },
    })
}

/// Everything a group fetch reads or writes.
struct GroupCtx<'a> {
    group: &'a Group,
    start: Start,
    terms: &'a [PlacedTerm],
    recovered: &'a HashMap<u32, ChunkRecord>,
    file: &'a File,
    journal: &'a Mutex<Journal>,
    counters: &'a PullCounters,
}

/// Chunk records are flushed to the journal, with a checkpoint, about every this many
/// chunks (~4 MiB), so a kill loses little.
const CHECKPOINT_EVERY: usize = 64;

/// Fetches one group's range and writes every chunk of it to each term that uses it.
async fn fetch_group(
    cas: &CasClient,
    source: &GroupUrl<'_>,
    ctx: &GroupCtx<'_>,
) -> Result<Vec<ChunkRecord>, PullError> {
    let GroupCtx {
        group,
        start,
        terms,
        recovered,
        file,
        journal,
        counters,
    } = *ctx;
    let mut decoder = ChunkStreamDecoder::new();
    let mut next = start.chunk;
    // Per term: where its next chunk goes. A resumed fetch starts after chunks already on disk.
    let mut cursors: Vec<(usize, u64)> = Vec::with_capacity(group.terms.len());
    for &ti in &group.terms {
        let t = &terms[ti];
        let mut cursor = t.offset;
        for x in t.chunks.start..start.chunk.min(t.chunks.end).max(t.chunks.start) {
            match recovered.get(&(t.first_chunk + (x - t.chunks.start))) {
                Some(r) => cursor += u64::from(r.size),
                None => {
                    return Err(PullError::integrity(
                        "resume point ahead of the verified data",
                    ));
                }
            }
        }
        cursors.push((ti, cursor));
    }
    let mut records = Vec::new();
    let mut flushed = 0usize;
    let mut failure: Option<PullError> = None;
    let mut sink = |bytes: &[u8]| -> Result<(), RemoteError> {
        counters
            .from_origin
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        decoder.feed(bytes, |chunk: &[u8]| -> Result<(), RemoteError> {
            let k = next;
            next += 1;
            if k >= group.chunks.end {
                failure = Some(PullError::integrity(format!(
                    "xorb {} sent more chunks than asked",
                    group.xorb
                )));
                return Err(RemoteError::Sink("integrity".into()));
            }
            let hash = xet::hash::chunk_hash(chunk);
            for (ti, cursor) in cursors.iter_mut() {
                let t = &terms[*ti];
                if k < t.chunks.start || k >= t.chunks.end {
                    continue;
                }
                if *cursor + chunk.len() as u64 > t.offset + t.len {
                    failure = Some(PullError::integrity(format!(
                        "xorb {} chunk {k} overruns its term",
                        group.xorb
                    )));
                    return Err(RemoteError::Sink("integrity".into()));
                }
                if let Err(e) = file.write_all_at(chunk, *cursor) {
                    failure = Some(PullError::disk("writing the download", &e));
                    return Err(RemoteError::Sink("disk".into()));
                }
                records.push(ChunkRecord {
                    index: t.first_chunk + (k - t.chunks.start),
                    size: chunk.len() as u32,
                    offset: *cursor,
                    hash,
                });
                *cursor += chunk.len() as u64;
                counters
                    .bytes_done
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
            Ok(())
        })?;
        if records.len() - flushed >= CHECKPOINT_EVERY {
            let cp = Checkpoint {
                xorb: group.xorb,
                chunk: next,
                byte_offset: start.byte + decoder.stored_bytes_decoded(),
            };
            if let Err(e) = lock(journal).append(&records[flushed..], &[cp]) {
                failure = Some(PullError::disk("writing the resume journal", &e));
                return Err(RemoteError::Sink("disk".into()));
            }
            flushed = records.len();
        }
        Ok(())
    };
    let range = HttpRange {
        start: start.byte,
        end: group.bytes.end,
    };
    let result = cas.stream_range(source, range, &mut sink).await;
    if let Some(f) = failure {
        return Err(f);
    }
    result?;
    decoder.finish()?;
    if next != group.chunks.end {
        return Err(PullError::integrity(format!(
            "xorb {}: got chunks {}..{next}, expected up to {}",
            group.xorb, start.chunk, group.chunks.end
        )));
    }
    for (ti, cursor) in cursors {
        let t = &terms[ti];
        if cursor != t.offset + t.len {
            return Err(PullError::integrity(format!(
                "xorb {}: a term decompressed to {} bytes, the CAS said {}",
                group.xorb,
                cursor - t.offset,
                t.len
            )));
        }
    }
    lock(journal)
        .append(&records[flushed..], &[])
        .map_err(|e| PullError::disk("writing the resume journal", &e))?;
    Ok(records)
}

pub fn sha256_file(path: &std::path::Path) -> std::io::Result<String> {
    use sha2::Digest;
    use std::io::Read;
    let mut f = File::open(path)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}
