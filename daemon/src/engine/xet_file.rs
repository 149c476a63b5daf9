//! Downloading one Xet file: reconstruction → each range from a local copy, peers or the
//! CDN (`schedule`) → chunks hashed and written at their offsets → file hash (and sha256)
//! checked. The file is never held in memory, and an interrupted download resumes from
//! its journal.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tokio::sync::Mutex as AsyncMutex;
use xet::XetHash;
use xet::reconstruction::{ChunkRange, HttpRange, Reconstruction};
use xet::remote::CasClient;

use super::Engine;
use super::error::PullError;
use super::journal::{ChunkRecord, Journal};
use super::progress::PullCounters;
use crate::index::Chunk;
use crate::peer::{LiveFile, LiveGuard, Placed};
pub use crate::sync::lock;

pub struct XetFileJob {
    pub xet_hash: XetHash,
    pub size: u64,
    /// The LFS sha256, checked too when known.
    pub sha256: Option<String>,
    pub partial: PathBuf,
    pub journal: PathBuf,
    pub name: String,
    /// From a private or gated repo: only fleet peers are asked for it or served it.
    pub private: bool,
}

/// A term placed in the file.
#[derive(Clone, Debug)]
pub struct PlacedTerm {
    pub xorb: XetHash,
    pub chunks: ChunkRange,
    pub offset: u64,
    pub len: u64,
    /// Index of its first chunk among all the file's chunks.
    pub first_chunk: u32,
}

impl PlacedTerm {
    /// The file chunk indices this term covers.
    pub fn file_chunks(&self) -> (u32, u32) {
        (self.first_chunk, self.first_chunk + self.chunks.len())
    }
}

/// Terms fetched together from the CDN: they share one byte range of one xorb.
#[derive(Clone, Debug)]
pub struct Group {
    pub xorb: XetHash,
    pub chunks: ChunkRange,
    pub bytes: HttpRange,
    pub terms: Vec<usize>,
}

/// Everything the parts of one file's download share.
pub struct FileCtx {
    pub engine: Engine,
    pub cas: Arc<CasClient>,
    pub hash: XetHash,
    pub size: u64,
    pub name: String,
    pub file: Arc<File>,
    pub live: Arc<LiveFile>,
    pub journal: Mutex<Journal>,
    pub counters: Arc<PullCounters>,
    pub terms: Vec<PlacedTerm>,
    pub recon: AsyncMutex<Arc<Reconstruction>>,
}

impl FileCtx {
    /// File chunk ranges of a group's terms, sorted and merged.
    pub fn group_ranges(&self, g: &Group) -> Vec<(u32, u32)> {
        self.term_ranges(&g.terms)
    }

    /// File chunk ranges of the terms at these indices, sorted and merged.
    pub fn term_ranges(&self, terms: &[usize]) -> Vec<(u32, u32)> {
        crate::peer::wire::merge(terms.iter().map(|&t| self.terms[t].file_chunks()).collect())
    }

    /// File chunks of a group not on disk yet, as ranges.
    pub fn group_missing(&self, g: &Group) -> Vec<(u32, u32)> {
        self.group_ranges(g)
            .into_iter()
            .flat_map(|(a, b)| self.live.missing(a, b))
            .collect()
    }
}

/// A verified download, ready to be moved into place.
pub struct Downloaded {
    pub chunks: Vec<Chunk>,
    /// Peers are still served from the download's open file while this lives: the caller
    /// drops it once the index knows the file's place in the cache, so there is no moment
    /// when a peer that was told "held" hears "not found".
    pub serving: Option<LiveGuard>,
}

/// Downloads `job` into `job.partial`, verified, and returns its chunk manifest. The caller
/// moves it into place.
pub async fn download(
    engine: &Engine,
    cas: &Arc<CasClient>,
    job: &XetFileJob,
    counters: &Arc<PullCounters>,
) -> Result<Downloaded, PullError> {
    if job.size == 0 {
        File::create(&job.partial).map_err(|e| PullError::disk("creating an empty file", &e))?;
        check_file_hash(job, &[])?;
        return Ok(Downloaded {
            chunks: Vec::new(),
            serving: None,
        });
    }
    if let Some(chunks) = super::local::copy_held(engine, job, counters).await? {
        return Ok(Downloaded {
            chunks,
            serving: None,
        });
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
    let live = Arc::new(LiveFile::with_visibility(
        job.xet_hash,
        file.clone(),
        total_chunks,
        job.private,
    ));
    let resumed_bytes: u64 = recovered.values().map(|r| u64::from(r.size)).sum();
    for r in recovered.values() {
        live.set(
            r.index,
            Placed {
                hash: r.hash,
                size: r.size,
                offset: r.offset,
            },
        );
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
    let ctx = Arc::new(FileCtx {
        engine: engine.clone(),
        cas: cas.clone(),
        hash: job.xet_hash,
        size: job.size,
        name: job.name.clone(),
        file,
        live: live.clone(),
        journal: Mutex::new(journal),
        counters: counters.clone(),
        terms,
        recon: AsyncMutex::new(Arc::new(recon)),
    });
    // Served to peers from here on, chunk by chunk as they verify.
    let serving = engine.live.register(live.clone());
    let sha = job
        .sha256
        .is_some()
        .then(|| super::prefix_sha256::Background::start(live.clone()));
    super::local::reuse_chunks(&ctx).await?;
    let mut work = Vec::new();
    for g in groups {
        if let Some(start) = super::cdn::resume_point(&g, &ctx, &recovered, &checkpoints) {
            work.push((g, start));
        }
    }
    super::schedule::run(&ctx, work).await?;

    let placed = live.all().ok_or_else(|| {
        PullError::integrity(format!("some chunks of {} never arrived", job.name))
    })?;
    let chunks: Vec<(XetHash, u64)> = placed.iter().map(|p| (p.hash, u64::from(p.size))).collect();
    if let Err(e) = check_file_hash(job, &chunks) {
        // Every chunk hashed as its source described it, yet the whole does not: start over.
        let _ = std::fs::remove_file(&job.journal);
        return Err(e);
    }
    match (sha, &job.sha256) {
        (Some(bg), Some(expected)) => match bg.finish(job.size).await {
            Some(got) => sha256_matches(job, expected, &got)?,
            None => check_sha256(job).await?,
        },
        _ => check_sha256(job).await?,
    }
    for t in &ctx.terms {
        let _ = engine.index.record_xorb_range(
            &t.xorb,
            t.chunks.start,
            t.chunks.end,
            &job.xet_hash,
            t.first_chunk,
        );
    }
    Ok(Downloaded {
        chunks: placed
            .iter()
            .map(|p| Chunk {
                hash: p.hash,
                size: p.size,
            })
            .collect(),
        serving: Some(serving),
    })
}

pub async fn check_sha256(job: &XetFileJob) -> Result<(), PullError> {
    let Some(expected) = &job.sha256 else {
        return Ok(());
    };
    let path = job.partial.clone();
    let got = tokio::task::spawn_blocking(move || sha256_file(&path))
        .await
        .map_err(|e| PullError::new(super::error::Kind::Internal, e.to_string()))?
        .map_err(|e| PullError::disk("reading back the download", &e))?;
    sha256_matches(job, expected, &got)
}

fn sha256_matches(job: &XetFileJob, expected: &str, got: &str) -> Result<(), PullError> {
    if !got.eq_ignore_ascii_case(expected) {
        let _ = std::fs::remove_file(&job.journal);
        return Err(PullError::integrity(format!(
            "{}: sha256 {got} does not match the Hub's {expected}",
            job.name
        )));
    }
    Ok(())
}

pub fn check_file_hash(job: &XetFileJob, chunks: &[(XetHash, u64)]) -> Result<(), PullError> {
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
pub fn open_partial(job: &XetFileJob) -> Result<(File, bool), PullError> {
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
