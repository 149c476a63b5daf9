//! The files local clients are downloading through the endpoint, one job per Xet file
//! however many clients ask: the engine downloads the whole file (this cache, peers, the
//! origin, with the caller's own Xet token), and clients are served each chunk once its
//! hash is proven. The finished file goes into the cache's shared store, where
//! huggingface_hub links its own blob to it, and into the index, so it is seeded.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use xet::XetHash;
use xet::remote::{CasClient, CasToken, HubClient};

use crate::cache::shared_store::SharedStore;
use crate::engine::file_checks::XetFileJob;
use crate::engine::file_plan::{PlacedTerm, place_terms};
use crate::engine::{Engine, PullCounters, PullError, xet_file};
use crate::index::HeldFile;
use crate::peer::{LiveFile, Placed, RunBound, take_run};
use crate::sync::lock;

/// How long a client waits for one chunk before it is told the download is stuck.
const CHUNK_WAIT: Duration = Duration::from_secs(120);

/// Where a job stands.
#[derive(Clone)]
enum State {
    /// Asking the CAS for the reconstruction.
    Starting,
    /// Downloading (or done): chunks are served from the live table as they are proven.
    Live {
        live: Arc<LiveFile>,
        terms: Arc<Vec<PlacedTerm>>,
        size: u64,
    },
    /// The cache held the file already.
    Held {
        file: Arc<File>,
        held: Arc<HeldFile>,
        terms: Arc<Vec<PlacedTerm>>,
    },
    Failed(String),
}

pub struct FileJob {
    pub hash: XetHash,
    state: Mutex<State>,
    changes: tokio::sync::watch::Sender<u64>,
    /// What the download has received and written so far, for a held HEAD's judgement.
    counters: Arc<PullCounters>,
    /// A client asked for the file's bytes (a reconstruction, a file door), not only its HEAD.
    asked: AtomicBool,
    /// The file is downloaded and in its place (the shared store, or zestd's corner).
    finished: AtomicBool,
    /// Stopped because nobody asked for it: a later request starts a new job.
    abandoned: AtomicBool,
    /// A HEAD was held until the file was finished, and what the client did next is not
    /// recorded yet (`FileJobs::hold_outcomes`).
    held_to_the_end: AtomicBool,
    stop: tokio::sync::Notify,
}

/// Consecutive chunks ready for a client: proven, and read back from disk matching their
/// hashes.
pub struct ReadyRun {
    /// File offset of the first chunk.
    pub offset: u64,
    /// How many chunks.
    pub chunks: u32,
    /// Their bytes, each behind a xorb chunk header when asked for `framed`.
    pub bytes: Vec<u8>,
}

/// How much one read for a client takes at most: large reads, few wake-ups, bounded memory.
pub const RUN_BYTES: u64 = 4 << 20;

impl FileJob {
    fn set(&self, s: State) {
        *lock(&self.state) = s;
        self.changes.send_modify(|v| *v += 1);
    }

    /// Whether the file is downloaded and in its place.
    pub fn finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    /// Whether the download ended without the file.
    pub fn failed(&self) -> bool {
        matches!(*lock(&self.state), State::Failed(_))
    }

    /// The file's size once known, and the bytes received or found for it so far.
    pub fn progress(&self) -> (Option<u64>, u64) {
        let size = match &*lock(&self.state) {
            State::Live { size, .. } => Some(*size),
            State::Held { held, .. } => Some(held.size()),
            State::Starting | State::Failed(_) => None,
        };
        let c = &self.counters;
        let received = c.from_origin.load(Ordering::Relaxed)
            + c.from_peers.load(Ordering::Relaxed)
            + c.from_local.load(Ordering::Relaxed);
        let landed = c.bytes_done.load(Ordering::Relaxed).max(received);
        (size, landed)
    }

    /// Until the job changes state, or `within` passed.
    pub async fn changed_within(&self, within: Duration) {
        let mut rx = self.changes.subscribe();
        let _ = tokio::time::timeout(within, rx.changed()).await;
    }

    /// Until the job's download has ended, one way or the other.
    async fn ended(&self) {
        let mut rx = self.changes.subscribe();
        while !(self.finished() || self.failed()) {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// The file's layout, once known.
    pub async fn terms(&self) -> Result<(Arc<Vec<PlacedTerm>>, u64), String> {
        let mut rx = self.changes.subscribe();
        loop {
            match lock(&self.state).clone() {
                State::Live { terms, size, .. } => return Ok((terms, size)),
                State::Held { terms, held, .. } => return Ok((terms, held.size())),
                State::Failed(e) => return Err(e),
                State::Starting => {}
            }
            if tokio::time::timeout(CHUNK_WAIT, rx.changed())
                .await
                .is_err()
            {
                return Err("the CAS did not describe the file in time".into());
            }
        }
    }

    /// File chunks from `start` on (before `end`), as many consecutive ones as are proven
    /// and within `bound`, once chunk `start` is proven; read back and checked again.
    pub async fn run(
        &self,
        start: u32,
        end: u32,
        bound: RunBound,
        framed: bool,
    ) -> Result<ReadyRun, String> {
        let deadline = tokio::time::Instant::now() + CHUNK_WAIT;
        loop {
            let state = lock(&self.state).clone();
            let (file, run, mut wake) = match state {
                State::Failed(e) => return Err(e),
                State::Starting => (None, Vec::new(), Some(self.changes.subscribe())),
                State::Held { file, held, .. } => {
                    let end = (end as usize).min(held.chunks.len());
                    let chunks = (start as usize..end).map(|i| Placed {
                        hash: held.chunks[i].hash,
                        size: held.chunks[i].size,
                        offset: held.offsets[i],
                    });
                    let run = take_run(chunks, bound);
                    if run.is_empty() {
                        return Err(format!("chunk {start} is past the end of the file"));
                    }
                    (Some(file), run, None)
                }
                State::Live { live, .. } => {
                    // Subscribed before looking, so a proof in between is not missed.
                    let rx = live.subscribe_proofs();
                    let run = live.proven_run(start, end, bound);
                    if run.is_empty() {
                        (None, run, Some(rx))
                    } else {
                        (Some(live.file.clone()), run, None)
                    }
                }
            };
            if let Some(file) = file {
                return read_checked(file, run, framed).await;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!("chunk {start} did not arrive in {CHUNK_WAIT:?}"));
            }
            // Woken by a proof or the job changing state; looked at again at least every
            // 200 ms whatever happens.
            let mut job_rx = self.changes.subscribe();
            let proved = async move {
                match wake.as_mut() {
                    Some(rx) => {
                        let _ = rx.changed().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = proved => {}
                _ = job_rx.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }
}

/// Reads a run of consecutive chunks into one buffer and checks each against its hash:
/// what a client gets is checked on its way out, whoever else can write the cache.
async fn read_checked(file: Arc<File>, run: Vec<Placed>, framed: bool) -> Result<ReadyRun, String> {
    tokio::task::spawn_blocking(move || {
        let header = if framed {
            xet::xorb::CHUNK_HEADER_LEN
        } else {
            0
        };
        let total: usize = run.iter().map(|p| header + p.size as usize).sum();
        let mut bytes = vec![0u8; total];
        let mut at = 0usize;
        for p in &run {
            if framed {
                bytes[at..at + header].copy_from_slice(&super::rewrite::chunk_header(p.size));
                at += header;
            }
            let data = &mut bytes[at..at + p.size as usize];
            file.read_exact_at(data, p.offset)
                .map_err(|e| format!("reading a chunk back: {e}"))?;
            if xet::hash::chunk_hash(data) != p.hash {
                return Err("a chunk on disk no longer matches its hash".to_string());
            }
            at += p.size as usize;
        }
        Ok(ReadyRun {
            offset: run.first().map_or(0, |p| p.offset),
            chunks: run.len() as u32,
            bytes,
        })
    })
    .await
    .map_err(|e| e.to_string())?
}

/// How a job learns what it may do: the caller's token, and whether the Hub handed it out
/// without credentials (then the file is public and any peer may be asked or served).
#[derive(Clone)]
pub struct Grant {
    pub token: CasToken,
    pub public: bool,
    /// The Hub could not be asked: the reconstruction comes from what this node kept or a
    /// fleet member gives (a public file's only), and `token` is no CAS's.
    pub from_fleet: bool,
}

pub struct FileJobs {
    engine: Engine,
    staging: PathBuf,
    jobs: Mutex<HashMap<XetHash, Arc<FileJob>>>,
    hold_outcomes: Mutex<HoldOutcomes>,
}

/// What clients did after the recent HEADs held until the file was finished.
#[derive(Default)]
struct HoldOutcomes {
    /// Whether the client linked the file (no request for its bytes followed), newest last.
    linked: std::collections::VecDeque<bool>,
    /// HEADs not held since the last one that was.
    declined: u32,
}

impl FileJobs {
    pub fn new(engine: Engine) -> Self {
        let staging = engine.cache_dir.join(".zest").join("endpoint");
        FileJobs {
            engine,
            staging,
            jobs: Mutex::default(),
            hold_outcomes: Mutex::default(),
        }
    }

    /// The job for `hash`, for a client that asked for the file's bytes; started if none
    /// runs (or the last one failed or was abandoned).
    pub fn ensure(self: &Arc<Self>, hash: XetHash, grant: Grant) -> Arc<FileJob> {
        self.start(hash, grant, true)
    }

    /// The job for `hash`, for a HEAD only: a job it starts is stopped if no client asks
    /// for the bytes soon after (`stop_unasked`), as after a dry run or `file_exists`.
    pub fn ensure_for_head(self: &Arc<Self>, hash: XetHash, grant: Grant) -> Arc<FileJob> {
        self.start(hash, grant, false)
    }

    fn start(self: &Arc<Self>, hash: XetHash, grant: Grant, asked: bool) -> Arc<FileJob> {
        let mut jobs = lock(&self.jobs);
        let before = jobs.get(&hash).cloned();
        if let Some(j) = &before
            && !j.failed()
            && !j.abandoned.load(Ordering::Acquire)
        {
            if asked {
                j.asked.store(true, Ordering::Release);
                if j.held_to_the_end.swap(false, Ordering::AcqRel) {
                    // The client downloads what it could have linked.
                    self.note_hold(false);
                }
            }
            return j.clone();
        }
        let job = Arc::new(FileJob {
            hash,
            state: Mutex::new(State::Starting),
            changes: tokio::sync::watch::channel(0).0,
            counters: Arc::new(PullCounters::new(self.engine.totals.clone())),
            asked: AtomicBool::new(asked),
            finished: AtomicBool::new(false),
            abandoned: AtomicBool::new(false),
            held_to_the_end: AtomicBool::new(false),
            stop: tokio::sync::Notify::new(),
        });
        jobs.insert(hash, job.clone());
        let (me, j) = (self.clone(), job.clone());
        tokio::spawn(async move {
            // An abandoned download writes the same partial file until it has stopped.
            if let Some(b) = before {
                b.ended().await;
            }
            if let Err(e) = me.run(&j, grant).await {
                if e.kind == crate::engine::Kind::Cancelled {
                    tracing::info!(file = %j.hash, "{e}");
                } else {
                    tracing::warn!(file = %j.hash, "endpoint download failed: {e}");
                }
                j.set(State::Failed(e.to_string()));
            }
        });
        job
    }

    /// Whether to hold this HEAD, from what clients did after the recent held ones
    /// (`head_hold::worth_holding`).
    pub fn hold_this_head(&self) -> bool {
        let mut o = lock(&self.hold_outcomes);
        let declined = o.declined;
        let hold = super::head_hold::worth_holding(o.linked.make_contiguous(), declined);
        o.declined = if hold { 0 } else { declined + 1 };
        hold
    }

    fn note_hold(&self, linked: bool) {
        let mut o = lock(&self.hold_outcomes);
        o.linked.push_back(linked);
        while o.linked.len() > super::head_hold::RECENT {
            o.linked.pop_front();
        }
    }

    /// A HEAD was answered once `job` had finished: what the client does next is recorded
    /// when it asks for the bytes, or after `head_hold::UNASKED` as a link.
    pub fn held_to_the_end(self: &Arc<Self>, job: Arc<FileJob>) {
        job.held_to_the_end.store(true, Ordering::Release);
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(super::head_hold::UNASKED).await;
            if job.held_to_the_end.swap(false, Ordering::AcqRel) {
                me.note_hold(true);
            }
        });
    }

    /// Stops `job` if no client has asked for its bytes (only its HEAD came): a request
    /// from now on starts a new job, which resumes from what this one verified.
    pub fn stop_unasked(&self, job: &Arc<FileJob>) {
        let jobs = lock(&self.jobs);
        if job.asked.load(Ordering::Acquire) || job.finished() || job.failed() {
            return;
        }
        if jobs.get(&job.hash).is_some_and(|j| Arc::ptr_eq(j, job)) {
            job.abandoned.store(true, Ordering::Release);
            job.stop.notify_one();
        }
    }

    pub fn get(&self, hash: &XetHash) -> Option<Arc<FileJob>> {
        lock(&self.jobs).get(hash).cloned()
    }

    async fn run(&self, job: &FileJob, grant: Grant) -> Result<(), PullError> {
        let hash = job.hash;
        let hub = HubClient::new(&grant.token.endpoint, None)?
            .with_observer(crate::metrics::events::origin_observer())
            .with_pace(crate::rate::download_pace(self.engine.limits.clone()));
        let (public, from_fleet) = (grant.public, grant.from_fleet);
        let cas = Arc::new(CasClient::with_fixed_token(hub, grant.token));
        let meta = self.engine.hub_meta.as_ref();
        let recon = if from_fleet {
            let q = crate::hubmeta::Query::Reconstruction(hash);
            match meta {
                Some(m) => match m
                    .kept_or_fleet(&q, crate::hubmeta::check::reconstruction)
                    .await
                {
                    Some((r, a)) if !a.private => r,
                    _ => {
                        return Err(PullError::new(
                            crate::engine::Kind::Network,
                            "the Hub cannot be reached and no fleet member holds this public file's reconstruction",
                        ));
                    }
                },
                None => {
                    return Err(PullError::new(
                        crate::engine::Kind::Network,
                        "the Hub cannot be reached",
                    ));
                }
            }
        } else {
            crate::engine::hub_answers::reconstruction(meta, &cas, &hash, !public).await?
        };
        let terms = Arc::new(place_terms(&recon));
        let size = recon.unpacked_len();
        let index = &self.engine.index;
        if let Some(held) = index.held(&hash).filter(|h| h.size() == size)
            && let Ok(f) = File::open(&held.path)
        {
            job.finished.store(true, Ordering::Release);
            job.set(State::Held {
                file: Arc::new(f),
                held,
                terms,
            });
            return Ok(());
        }
        std::fs::create_dir_all(&self.staging)
            .map_err(|e| PullError::disk(&format!("creating {}", self.staging.display()), &e))?;
        let name = hash.to_string();
        let xjob = XetFileJob {
            xet_hash: hash,
            size,
            partial: self.staging.join(format!("{name}.zest.incomplete")),
            journal: self.staging.join(format!("{name}.zest.journal")),
            name: format!("{name} (for a local client)"),
            private: !public,
            for_client: true,
        };
        if let Err(e) = index.note_visibility(&hash, !public) {
            tracing::debug!("cannot record {name}'s visibility: {e}");
        }
        tracing::info!(file = %name, size, public, "downloading for a local client");
        let counters = job.counters.clone();
        let download = xet_file::download_with(&self.engine, &cas, &xjob, &counters, Some(recon));
        tokio::pin!(download);
        let mut published = false;
        let result = loop {
            tokio::select! {
                r = &mut download => break r,
                () = job.stop.notified() => {
                    return Err(PullError::new(
                        crate::engine::Kind::Cancelled,
                        "stopped: no client asked for the file after its HEAD; what was verified is kept",
                    ));
                }
                _ = tokio::time::sleep(Duration::from_millis(20)), if !published => {
                    if let Some(live) = self.engine.live.get(&hash) {
                        job.set(State::Live { live, terms: terms.clone(), size });
                        published = true;
                    }
                }
            }
        };
        let done = result?;
        let kept = SharedStore::new(&self.engine.cache_dir)
            .adopt(&xjob.partial, &name, size)
            .await
            .unwrap_or_else(|e| {
                tracing::debug!("not shared: {e}");
                None
            });
        let _ = std::fs::remove_file(&xjob.journal);
        let path = match kept {
            Some(p) => p,
            None => {
                // No shared store here: the copy stays in zestd's corner of the cache.
                let p = self.staging.join(&name);
                std::fs::rename(&xjob.partial, &p)
                    .map_err(|e| PullError::disk("moving the download into place", &e))?;
                p
            }
        };
        crate::index::scan::record_pulled(index, &path, hash, &done.chunks);
        job.finished.store(true, Ordering::Release);
        if !published {
            // A download that ended at once (a whole local copy, an empty file) never showed
            // its live table: serve from the finished file.
            let held = index.held(&hash).ok_or_else(|| {
                PullError::new(
                    crate::engine::Kind::Internal,
                    "the finished file is not indexed",
                )
            })?;
            let f =
                File::open(&held.path).map_err(|e| PullError::disk("opening the download", &e))?;
            job.set(State::Held {
                file: Arc::new(f),
                held,
                terms,
            });
        } else {
            job.changes.send_modify(|v| *v += 1);
        }
        drop(done.serving);
        tracing::info!(file = %hash, size, "downloaded for a local client");
        Ok(())
    }
}
