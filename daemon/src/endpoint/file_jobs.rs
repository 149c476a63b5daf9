//! The files local clients are downloading through the endpoint, one job per Xet file
//! however many clients ask: the engine downloads the whole file (this cache, peers, the
//! origin, with the caller's own Xet token), and clients are served each chunk once its
//! hash is proven. The finished file goes into the cache's shared store, where
//! huggingface_hub links its own blob to it, and into the index, so it is seeded.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use xet::XetHash;
use xet::remote::{CasClient, CasToken, HubClient};

use crate::cache::shared_store::SharedStore;
use crate::engine::file_checks::XetFileJob;
use crate::engine::file_plan::{PlacedTerm, place_terms};
use crate::engine::{Engine, PullCounters, PullError, xet_file};
use crate::index::HeldFile;
use crate::peer::{LiveFile, Placed};
use crate::sync::lock;

/// Origin ranges in flight for a file a client waits on: few, so xorbs complete and prove
/// in file order while the client reads the ones before (benches/endpoint.sh measured 4
/// against the engine's 24).
const CLIENT_ORIGIN_RANGES: usize = 4;
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
}

/// A chunk ready for a client: proven, and read back from disk matching its hash.
pub struct ReadyChunk {
    pub offset: u64,
    pub data: Vec<u8>,
}

impl FileJob {
    fn set(&self, s: State) {
        *lock(&self.state) = s;
        self.changes.send_modify(|v| *v += 1);
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

    /// File chunk `index`, once it is on disk and proven; read back and checked again.
    pub async fn chunk(&self, index: u32) -> Result<ReadyChunk, String> {
        let deadline = tokio::time::Instant::now() + CHUNK_WAIT;
        loop {
            let state = lock(&self.state).clone();
            let (file, placed, mut wake) = match state {
                State::Failed(e) => return Err(e),
                State::Starting => (None, None, Some(self.changes.subscribe())),
                State::Held { file, held, .. } => {
                    let i = index as usize;
                    let c = held
                        .chunks
                        .get(i)
                        .ok_or_else(|| format!("chunk {index} is past the end of the file"))?;
                    let placed = Placed {
                        hash: c.hash,
                        size: c.size,
                        offset: held.offsets[i],
                    };
                    (Some(file), Some(placed), None)
                }
                State::Live { live, .. } => {
                    let rx = live.subscribe();
                    match live.proven(index) {
                        Some(p) => (Some(live.file.clone()), Some(p), None),
                        None => (None, None, Some(rx)),
                    }
                }
            };
            if let (Some(file), Some(p)) = (file, placed) {
                return read_checked(file, p).await;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!("chunk {index} did not arrive in {CHUNK_WAIT:?}"));
            }
            // Woken by the chunk landing, a proof, or the job changing state; looked at
            // again at least every 200 ms whatever happens.
            let mut job_rx = self.changes.subscribe();
            let landed = async move {
                match wake.as_mut() {
                    Some(rx) => {
                        let _ = rx.changed().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = landed => {}
                _ = job_rx.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }
}

async fn read_checked(file: Arc<File>, p: Placed) -> Result<ReadyChunk, String> {
    tokio::task::spawn_blocking(move || {
        let mut data = vec![0u8; p.size as usize];
        file.read_exact_at(&mut data, p.offset)
            .map_err(|e| format!("reading a chunk back: {e}"))?;
        if xet::hash::chunk_hash(&data) != p.hash {
            return Err("a chunk on disk no longer matches its hash".to_string());
        }
        Ok(ReadyChunk {
            offset: p.offset,
            data,
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
}

pub struct FileJobs {
    engine: Engine,
    staging: PathBuf,
    jobs: Mutex<HashMap<XetHash, Arc<FileJob>>>,
}

impl FileJobs {
    pub fn new(engine: Engine) -> Self {
        let staging = engine.cache_dir.join(".zest").join("endpoint");
        FileJobs {
            engine,
            staging,
            jobs: Mutex::default(),
        }
    }

    /// The job for `hash`, started if none runs (or the last one failed).
    pub fn ensure(self: &Arc<Self>, hash: XetHash, grant: Grant) -> Arc<FileJob> {
        let mut jobs = lock(&self.jobs);
        if let Some(j) = jobs.get(&hash)
            && !matches!(*lock(&j.state), State::Failed(_))
        {
            return j.clone();
        }
        let job = Arc::new(FileJob {
            hash,
            state: Mutex::new(State::Starting),
            changes: tokio::sync::watch::channel(0).0,
        });
        jobs.insert(hash, job.clone());
        let (me, j) = (self.clone(), job.clone());
        tokio::spawn(async move {
            if let Err(e) = me.run(&j, grant).await {
                tracing::warn!(file = %j.hash, "endpoint download failed: {e}");
                j.set(State::Failed(e.to_string()));
            }
        });
        job
    }

    pub fn get(&self, hash: &XetHash) -> Option<Arc<FileJob>> {
        lock(&self.jobs).get(hash).cloned()
    }

    async fn run(&self, job: &FileJob, grant: Grant) -> Result<(), PullError> {
        let hash = job.hash;
        let hub = HubClient::new(&grant.token.endpoint, None)?;
        let cas = Arc::new(CasClient::with_fixed_token(hub, grant.token));
        let recon = cas.reconstruction(&hash).await?;
        let terms = Arc::new(place_terms(&recon));
        let size = recon.unpacked_len();
        let index = &self.engine.index;
        if let Some(held) = index.held(&hash).filter(|h| h.size() == size)
            && let Ok(f) = File::open(&held.path)
        {
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
            sha256: None,
            partial: self.staging.join(format!("{name}.zest.incomplete")),
            journal: self.staging.join(format!("{name}.zest.journal")),
            name: format!("{name} (for a local client)"),
            private: !grant.public,
            origin_ranges: Some(CLIENT_ORIGIN_RANGES),
        };
        if let Err(e) = index.note_visibility(&hash, !grant.public) {
            tracing::debug!("cannot record {name}'s visibility: {e}");
        }
        tracing::info!(file = %name, size, public = grant.public, "downloading for a local client");
        let counters = Arc::new(PullCounters::default());
        let download = xet_file::download_with(&self.engine, &cas, &xjob, &counters, Some(recon));
        tokio::pin!(download);
        let mut published = false;
        let result = loop {
            tokio::select! {
                r = &mut download => break r,
                _ = tokio::time::sleep(Duration::from_millis(20)), if !published => {
                    if let Some(live) = self.engine.live.get(&hash) {
                        job.set(State::Live { live, terms: terms.clone(), size });
                        published = true;
                    }
                }
            }
        };
        counters.add_into(&self.engine.totals);
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
