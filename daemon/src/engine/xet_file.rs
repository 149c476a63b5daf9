//! Downloading one Xet file, from the top: a local copy if the cache holds the file;
//! else reconstruction → layout (`file_plan`) → what an earlier attempt verified (journal)
//! → chunks other local files hold (`local`) → every other range from peers or the origin
//! (`schedule`) → file hash checked. The file is never held in memory.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use tokio::sync::Mutex as AsyncMutex;
use xet::XetHash;
use xet::reconstruction::Reconstruction;
use xet::remote::CasClient;

use super::Engine;
use super::chunk_door;
use super::error::PullError;
use super::file_checks::{XetFileJob, check_file_hash};
use super::file_ctx::FileCtx;
use super::file_plan::{PlacedTerm, group_terms, place_terms, total_chunks};
use super::journal::{ChunkRecord, Journal};
use super::progress::PullCounters;
use super::trust::Trust;
use crate::index::Chunk;
use crate::peer::{LiveFile, LiveGuard, Placed};

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
    download_with(engine, cas, job, counters, None).await
}

/// [`download`], with the file's whole reconstruction when the caller already has it.
pub async fn download_with(
    engine: &Engine,
    cas: &Arc<CasClient>,
    job: &XetFileJob,
    counters: &Arc<PullCounters>,
    recon: Option<Reconstruction>,
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
    let recon = match recon {
        Some(r) => r,
        None => {
            super::hub_answers::reconstruction(
                engine.hub_meta.as_ref(),
                cas,
                &job.xet_hash,
                job.private,
            )
            .await?
        }
    };
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
    let total_chunks = total_chunks(&terms) as usize;

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
    let restored: Vec<(u32, Placed)> = recovered
        .values()
        .map(|r| {
            let p = Placed {
                hash: r.hash,
                size: r.size,
                offset: r.offset,
            };
            (r.index, p)
        })
        .collect();
    let resumed_bytes = chunk_door::restore(&live, counters, &restored);
    if resumed_bytes > 0 {
        tracing::info!(file = %job.name, resumed_bytes, "resuming a partial download");
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
        trust: Trust::new(total_chunks as u32),
        for_client: job.for_client,
    });
    // Served to peers from here on, chunk by chunk as they verify.
    let serving = engine.live.register(live.clone());
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
    // The Xet hash proves every chunk hash.
    live.prove(
        placed
            .iter()
            .enumerate()
            .map(|(i, p)| (i as u32, p.hash))
            .collect::<Vec<_>>(),
    );
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

/// Opens (or creates) the partial file at the right size; true if it held earlier data.
pub fn open_partial(job: &XetFileJob) -> Result<(File, bool), PullError> {
    let old_len = std::fs::metadata(&job.partial).map(|m| m.len()).ok();
    let existing = old_len == Some(job.size);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&job.partial)
        .map_err(|e| PullError::disk("creating the partial file", &e))?;
    if !existing {
        let _ = std::fs::remove_file(&job.journal);
        // Only a file that held something is cut to nothing first: on ext4, cutting a file
        // to zero marks it for writeback when it is closed (its guard for files rewritten in
        // place), so a new download's close would write back the whole file itself, on the
        // pull's time, instead of leaving it to the kernel's flusher as hf_xet's does.
        if old_len.is_some_and(|n| n > 0) {
            f.set_len(0)
                .map_err(|e| PullError::disk("sizing the partial file", &e))?;
        }
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
