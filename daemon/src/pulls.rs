//! The pulls a daemon runs: one task per distinct request (a second identical request
//! follows the first), a record of each in the state dir while it runs so that a restart
//! resumes it, and progress for anyone watching.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use xet::remote::{RepoRef, RepoType};
use zest_proto::v1::{PullDone, PullProgress};

use crate::engine::pull::{self, PullSpec};
use crate::engine::{Engine, Kind, PullCounters, PullError};

/// What is written to `<state>/pulls/<id>.json`. Never the token.
#[derive(Serialize, Deserialize)]
struct PullRecord {
    repo_type: String,
    repo_id: String,
    revision: String,
    include: Vec<String>,
    exclude: Vec<String>,
    endpoint: String,
    had_token: bool,
}

pub type Outcome = Option<Result<PullDone, PullError>>;

pub struct ActivePull {
    pub id: String,
    pub spec: PullSpec,
    pub counters: Arc<PullCounters>,
    pub outcome: watch::Receiver<Outcome>,
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
        };
        let record_path = self.records.join(format!("{id}.json"));
        if let Ok(json) = serde_json::to_vec_pretty(&record)
            && let Err(e) = std::fs::write(&record_path, json)
        {
            tracing::warn!("cannot record the pull in {}: {e}", record_path.display());
        }
        let (tx, rx) = watch::channel(None);
        let pull = Arc::new(ActivePull {
            id: id.clone(),
            spec: spec.clone(),
            counters: Arc::new(PullCounters::new(self.engine.totals.clone())),
            outcome: rx,
        });
        active.insert(id.clone(), pull.clone());
        drop(active);

        let me = self.clone();
        let counters = pull.counters.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            tracing::info!(pull = %id, repo = %spec.repo, revision = %spec.revision, "pull started");
            let result = pull::run(&me.engine, &spec, token, &counters).await;
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
                    };
                    tracing::info!(
                        pull = %id, repo = %spec.repo, files = done.files, bytes = done.bytes,
                        from_origin = done.bytes_from_origin, from_local = done.bytes_from_local,
                        seconds = done.seconds, "pull done"
                    );
                    Ok(done)
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
            let _ = std::fs::remove_file(&record_path);
            if let Ok(mut a) = me.active.lock() {
                a.remove(&id);
            }
            let _ = tx.send(Some(outcome));
        });
        pull
    }

    /// Restarts the pulls a previous run of the daemon left unfinished.
    pub fn resume_unfinished(self: &Arc<Self>) {
        let Ok(dir) = std::fs::read_dir(&self.records) else {
            return;
        };
        for entry in dir.flatten() {
            let path = entry.path();
            let record: PullRecord = match std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
            {
                Some(r) => r,
                None => {
                    tracing::warn!("ignoring unreadable pull record {}", path.display());
                    let _ = std::fs::remove_file(&path);
                    continue;
                }
            };
            let _ = std::fs::remove_file(&path);
            if record.had_token {
                tracing::warn!(
                    repo = %record.repo_id,
                    "not resuming a pull that needed a token (tokens are never stored); \
                     run `zestctl pull` again: verified data is kept and reused"
                );
                continue;
            }
            let repo = match RepoType::parse(&record.repo_type)
                .ok_or_else(|| format!("repo type {:?}", record.repo_type))
                .and_then(|t| RepoRef::new(t, &record.repo_id))
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("ignoring pull record {}: {e}", path.display());
                    continue;
                }
            };
            tracing::info!(repo = %repo, revision = %record.revision, "resuming an unfinished pull");
            self.start(
                PullSpec {
                    repo,
                    revision: record.revision,
                    include: record.include,
                    exclude: record.exclude,
                    endpoint: record.endpoint,
                },
                None,
            );
        }
    }
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
