//! The pulls a daemon runs: one task per distinct request (a second identical request
//! follows the first), a record of each in the state dir (see [`record`]) so that a restart
//! resumes it and a failure stays visible, cancellation, and progress for anyone watching.

pub mod record;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};
use xet::remote::{RepoRef, RepoType};
use zest_proto::v1::{PullDone, PullProgress, StoppedPull};

use crate::engine::pull::{self, PullSpec};
use crate::engine::{Engine, Kind, PullCounters, PullError};
use record::{OnRestart, PullRecord, Stopped};

pub type Outcome = Option<Result<PullDone, PullError>>;

pub struct ActivePull {
    pub id: String,
    pub spec: PullSpec,
    pub counters: Arc<PullCounters>,
    pub outcome: watch::Receiver<Outcome>,
    cancel: Arc<Notify>,
}

impl ActivePull {
    pub fn progress(&self) -> PullProgress {
        let c = &self.counters;
        PullProgress {
            pull_id: self.id.clone(),
            repo: self.spec.repo.to_string(),
            revision: self.spec.revision.clone(),
            commit: c.commit.lock().map(|s| s.clone()).unwrap_or_default(),
            phase: c.phase.lock().map(|p| p.to_string()).unwrap_or_default(),
            files_total: c.files_total.load(Ordering::Relaxed),
            files_done: c.files_done.load(Ordering::Relaxed),
            bytes_total: c.bytes_total.load(Ordering::Relaxed),
            bytes_done: c
                .bytes_done
                .load(Ordering::Relaxed)
                .min(c.bytes_total.load(Ordering::Relaxed)),
            current: c.current.lock().map(|v| v.clone()).unwrap_or_default(),
            bytes_from_origin: c.from_origin.load(Ordering::Relaxed),
            bytes_from_peers: c.from_peers.load(Ordering::Relaxed),
            bytes_from_local: c.from_local.load(Ordering::Relaxed),
        }
    }
}

pub struct PullManager {
    engine: Engine,
    records: PathBuf,
    active: Mutex<HashMap<String, Arc<ActivePull>>>,
}

impl PullManager {
    pub fn new(engine: Engine, state_dir: &std::path::Path) -> std::io::Result<Arc<Self>> {
        let records = state_dir.join("pulls");
        std::fs::create_dir_all(&records)?;
        Ok(Arc::new(PullManager {
            engine,
            records,
            active: Mutex::new(HashMap::new()),
        }))
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn active(&self) -> Vec<Arc<ActivePull>> {
        self.active
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Starts the pull, or follows the identical one already running.
    pub fn start(self: &Arc<Self>, spec: PullSpec, token: Option<String>) -> Arc<ActivePull> {
        self.start_counting(spec, token, 0)
    }

    /// Stops the running pulls whose id is `target`, or whose repo is (`namespace/name`, of
    /// `repo_type` when given); returns the ids stopped. Verified data is kept.
    pub fn cancel(&self, target: &str, repo_type: Option<RepoType>) -> Vec<String> {
        self.active()
            .into_iter()
            .filter(|p| {
                p.id == target
                    || (p.spec.repo.id == target
                        && repo_type.is_none_or(|t| t == p.spec.repo.repo_type))
            })
            .map(|p| {
                p.cancel.notify_one();
                p.id.clone()
            })
            .collect()
    }

    /// Pulls that stopped for good (failed, or not resumed), newest first, with why.
    pub fn stopped(&self) -> Vec<StoppedPull> {
        let mut out: Vec<StoppedPull> = std::fs::read_dir(&self.records)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let path = e.path();
                let id = record_id(&path)?;
                let r = record::read(&path)?;
                let s = r.stopped?;
                Some(StoppedPull {
                    pull_id: id,
                    repo: format!("{}:{}", r.repo_type, r.repo_id),
                    revision: r.revision,
                    kind: s.kind,
                    message: s.message,
                    unix_time: s.unix,
                })
            })
            .collect();
        out.sort_by_key(|s| std::cmp::Reverse(s.unix_time));
        out
    }

    /// Starts the pull, `resumes` being how often restarts resumed it without progress.
    fn start_counting(
        self: &Arc<Self>,
        spec: PullSpec,
        token: Option<String>,
        resumes: u32,
    ) -> Arc<ActivePull> {
        let key = format!(
            "{}|{}|{}|{:?}|{:?}|{}",
            spec.repo.repo_type.as_str(),
            spec.repo.id,
            spec.revision,
            spec.include,
            spec.exclude,
            spec.endpoint
        );
        let id = blake3::hash(key.as_bytes()).to_hex()[..16].to_string();
        let mut active = match self.active.lock() {
            Ok(a) => a,
            Err(p) => p.into_inner(),
        };
        if let Some(a) = active.get(&id) {
            return a.clone();
        }
        let record = PullRecord {
            repo_type: spec.repo.repo_type.as_str().into(),
            repo_id: spec.repo.id.clone(),
            revision: spec.revision.clone(),
            include: spec.include.clone(),
            exclude: spec.exclude.clone(),
            endpoint: spec.endpoint.clone(),
            had_token: token.is_some(),
            resumes,
            stopped: None,
        };
        let record_path = self.records.join(format!("{id}.json"));
        save(&record_path, &record);
        let (tx, rx) = watch::channel(None);
        let cancel = Arc::new(Notify::new());
        let pull = Arc::new(ActivePull {
            id: id.clone(),
            spec: spec.clone(),
            counters: Arc::new(PullCounters::new(self.engine.totals.clone())),
            outcome: rx,
            cancel: cancel.clone(),
        });
        active.insert(id.clone(), pull.clone());
        drop(active);

        let me = self.clone();
        let counters = pull.counters.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            tracing::info!(pull = %id, repo = %spec.repo, revision = %spec.revision, "pull started");
            let run = pull::run(&me.engine, &spec, token, &counters);
            tokio::pin!(run);
            let mut record = record;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let result = loop {
                tokio::select! {
                    r = &mut run => break r,
                    () = cancel.notified() => break Err(cancelled()),
                    _ = tick.tick(), if record.resumes > 0 => {
                        // Fetching anything is progress: the resumes before it no longer count.
                        if counters.from_origin.load(Ordering::Relaxed)
                            + counters.from_peers.load(Ordering::Relaxed) > 0
                        {
                            record.resumes = 0;
                            save(&record_path, &record);
                        }
                    }
                }
            };
            crate::metrics::EVENTS.pull_finished(started.elapsed());
            let outcome = match result {
                Ok(o) => {
                    me.engine
                        .totals
                        .pulls_completed
                        .fetch_add(1, Ordering::Relaxed);
                    let done = PullDone {
                        snapshot_path: o.snapshot.display().to_string(),
                        commit: o.commit,
                        files: o.files,
                        bytes: o.bytes,
                        bytes_from_origin: counters.from_origin.load(Ordering::Relaxed),
                        bytes_from_peers: counters.from_peers.load(Ordering::Relaxed),
                        bytes_from_local: counters.from_local.load(Ordering::Relaxed),
                        seconds: started.elapsed().as_secs_f64(),
                        warnings: o.warnings,
                    };
                    tracing::info!(
                        pull = %id, repo = %spec.repo, files = done.files, bytes = done.bytes,
                        from_origin = done.bytes_from_origin, from_local = done.bytes_from_local,
                        seconds = done.seconds, "pull done"
                    );
                    Ok(done)
                }
                Err(e) if e.kind == Kind::Cancelled => {
                    me.engine
                        .totals
                        .pulls_cancelled
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::info!(pull = %id, repo = %spec.repo, "pull cancelled");
                    Err(e)
                }
                Err(e) => {
                    me.engine
                        .totals
                        .pulls_failed
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(pull = %id, repo = %spec.repo, kind = e.kind.as_str(), "pull failed: {e}");
                    Err(e)
                }
            };
            match &outcome {
                // A failure stays on record, so that status says why and a restart does not
                // run into it again.
                Err(e) if e.kind != Kind::Cancelled => {
                    record.stopped = Some(Stopped {
                        kind: e.kind.as_str().into(),
                        message: e.message.clone(),
                        unix: record::now_unix(),
                    });
                    save(&record_path, &record);
                }
                _ => {
                    let _ = std::fs::remove_file(&record_path);
                }
            }
            if let Ok(mut a) = me.active.lock() {
                a.remove(&id);
            }
            let _ = tx.send(Some(outcome));
        });
        pull
    }

    /// Restarts the pulls a previous run of the daemon left unfinished, except those that
    /// must not run again (see [`record::on_restart`]).
    pub fn resume_unfinished(self: &Arc<Self>) {
        let Ok(dir) = std::fs::read_dir(&self.records) else {
            return;
        };
        for entry in dir.flatten() {
            let path = entry.path();
            if record_id(&path).is_none() {
                continue; // a temporary file of a write that did not finish
            }
            let Some(mut rec) = record::read(&path) else {
                tracing::warn!("ignoring unreadable pull record {}", path.display());
                let _ = std::fs::remove_file(&path);
                continue;
            };
            match record::on_restart(&rec, record::now_unix()) {
                OnRestart::Keep => continue,
                OnRestart::Forget => {
                    let _ = std::fs::remove_file(&path);
                    continue;
                }
                OnRestart::Stop(why) => {
                    tracing::warn!(repo = %rec.repo_id, "{}", why.message);
                    rec.stopped = Some(why);
                    save(&path, &rec);
                    continue;
                }
                OnRestart::Resume => {}
            }
            let repo = match RepoType::parse(&rec.repo_type)
                .ok_or_else(|| format!("repo type {:?}", rec.repo_type))
                .and_then(|t| RepoRef::new(t, &rec.repo_id))
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("ignoring pull record {}: {e}", path.display());
                    let _ = std::fs::remove_file(&path);
                    continue;
                }
            };
            tracing::info!(repo = %repo, revision = %rec.revision, resumes = rec.resumes + 1, "resuming an unfinished pull");
            self.start_counting(
                PullSpec {
                    repo,
                    revision: rec.revision,
                    include: rec.include,
                    exclude: rec.exclude,
                    endpoint: rec.endpoint,
                    // The daemon's own setting still applies (`Engine::allow_stale_refs`).
                    allow_stale_refs: false,
                },
                None,
                rec.resumes + 1,
            );
        }
    }
}

/// The pull id a record file stands for; None for anything else in the directory.
fn record_id(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let id = name.strip_suffix(".json")?;
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_string())
}

fn save(path: &Path, rec: &PullRecord) {
    if let Err(e) = record::write(path, rec) {
        tracing::warn!("cannot record the pull in {}: {e}", path.display());
    }
}

pub fn cancelled() -> PullError {
    PullError::new(
        Kind::Cancelled,
        "cancelled (zestctl cancel); verified data is kept, and `zestctl pull` picks up where it stopped",
    )
}

impl From<&PullError> for zest_proto::v1::PullFailed {
    fn from(e: &PullError) -> Self {
        zest_proto::v1::PullFailed {
            message: e.message.clone(),
            kind: e.kind.as_str().into(),
        }
    }
}

pub fn shutting_down() -> PullError {
    PullError::new(
        Kind::Internal,
        "zestd is shutting down; the pull resumes when it starts again (verified data is kept)",
    )
}
