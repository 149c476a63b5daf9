//! A stand-in for the Hugging Face Hub, for tests and the demo, on loopback.
//!
//! Two origins, as in production: the hub (`/api/...`, `/resolve/...`), and a CAS origin
//! that fronts Hugging Face's own reference CAS server (`xet-client`'s `LocalServer`) with
//! token checks, expiring URLs, fault injection and byte counters. Xet files are uploaded
//! into that CAS through Hugging Face's own upload pipeline (`xet-data`), so what a client
//! downloads was written by the reference implementation.

mod api;
mod cas_proxy;
pub mod faults;
pub mod fixtures;
pub mod repo;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use tokio::net::TcpListener;

pub use faults::{FaultSettings, Faults, Stats, StatsSnapshot};
pub use repo::{Content, FileSpec, HubFile, HubRepo, RepoSpec};

/// The user token that opens private repos.
pub const TEST_TOKEN: &str = "hf_zest_test_token";

pub struct HubConfig {
    /// Holds the CAS data, upload scratch and the upload record (reused across runs).
    pub data_dir: PathBuf,
    pub repos: Vec<RepoSpec>,
    /// Lifetime of CAS access tokens.
    pub token_ttl_secs: u64,
    /// Lifetime of xorb fetch URLs.
    pub url_ttl_secs: u64,
    /// Tree listing page size (small, so pagination is exercised).
    pub page_size: usize,
    pub hub_port: u16,
    pub cas_port: u16,
    /// Address the hub and CAS listen on (loopback unless a benchmark puts them in a
    /// network namespace of their own).
    pub host: String,
}

impl HubConfig {
    pub fn new(data_dir: impl Into<PathBuf>, repos: Vec<RepoSpec>) -> Self {
        HubConfig {
            data_dir: data_dir.into(),
            repos,
            token_ttl_secs: 3600,
            url_ttl_secs: 3600,
            page_size: 3,
            hub_port: 0,
            cas_port: 0,
            host: "127.0.0.1".into(),
        }
    }
}

/// State shared by the hub and CAS handlers.
pub(crate) struct Shared {
    pub repos: Vec<HubRepo>,
    pub faults: Arc<Faults>,
    pub stats: Arc<Stats>,
    pub cas_url: String,
    pub internal_cas: String,
    /// CAS access token → expiry (unix seconds).
    pub cas_tokens: Mutex<HashMap<String, u64>>,
    pub token_ttl_secs: u64,
    pub url_ttl_secs: u64,
    pub page_size: usize,
    /// Xet hash → content, for the bridge that serves whole files to non-Xet clients.
    pub by_xet_hash: HashMap<String, Content>,
    pub http: reqwest::Client,
}

impl Shared {
    pub fn find(&self, repo_type: &str, id: &str) -> Option<&HubRepo> {
        self.repos
            .iter()
            .find(|r| r.repo_type == repo_type && r.id == id)
    }
}

/// A running test hub. Dropping it stops the servers.
pub struct TestHub {
    pub endpoint: String,
    pub cas_url: String,
    pub faults: Arc<Faults>,
    pub stats: Arc<Stats>,
    pub repos: Vec<HubRepo>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl TestHub {
    /// Starts the hub on its own runtime, for synchronous tests.
    pub fn start(config: HubConfig) -> Result<TestHub> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("test-hub")
            .build()?;
        let mut hub = runtime.block_on(Self::start_async(config))?;
        hub.runtime = Some(runtime);
        Ok(hub)
    }

    /// Starts the hub on the current runtime.
    pub async fn start_async(config: HubConfig) -> Result<TestHub> {
        std::fs::create_dir_all(&config.data_dir)?;
        let cas_data = config.data_dir.join("cas");
        let ctx = xet_runtime::core::XetContext::default()
            .map_err(|e| anyhow::anyhow!("xet context: {e}"))?;

        // Hugging Face's reference CAS server, on a private port.
        let internal = TcpListener::bind("127.0.0.1:0").await?;
        let internal_addr = internal.local_addr()?;
        let server = xet_client::cas_client::LocalServer::new(
            ctx.clone(),
            xet_client::cas_client::LocalServerConfig {
                data_directory: cas_data,
                host: "127.0.0.1".into(),
                port: internal_addr.port(),
                in_memory: false,
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("starting the reference CAS server: {e}"))?;
        let (_stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            // Never stopped explicitly: it ends with the runtime.
            let _keep = _stop_tx;
            if let Err(e) = server.serve_until_stopped(internal, stop_rx).await {
                tracing::error!("reference CAS server: {e}");
            }
        });
        let internal_cas = format!("http://{internal_addr}");

        let repos = build_repos(&ctx, &config, &internal_cas).await?;

        let hub_listener = TcpListener::bind((config.host.as_str(), config.hub_port)).await?;
        let cas_listener = TcpListener::bind((config.host.as_str(), config.cas_port)).await?;
        let endpoint = format!("http://{}", hub_listener.local_addr()?);
        let cas_url = format!("http://{}", cas_listener.local_addr()?);

        let mut by_xet_hash = HashMap::new();
        for r in &repos {
            for f in r.files.values() {
                if let Some(h) = &f.xet_hash {
                    by_xet_hash.insert(h.clone(), f.content.clone());
                }
            }
        }
        let faults = Arc::new(Faults::default());
        let stats = Arc::new(Stats::default());
        let shared = Arc::new(Shared {
            repos: repos.clone(),
            faults: faults.clone(),
            stats: stats.clone(),
            cas_url: cas_url.clone(),
            internal_cas,
            cas_tokens: Mutex::new(HashMap::new()),
            token_ttl_secs: config.token_ttl_secs,
            url_ttl_secs: config.url_ttl_secs,
            page_size: config.page_size.max(1),
            by_xet_hash,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
        });
        let hub_app = api::router(shared.clone());
        let cas_app = cas_proxy::router(shared);
        tokio::spawn(async move {
            let _ = axum::serve(hub_listener, hub_app).await;
        });
        tokio::spawn(async move {
            let _ = axum::serve(cas_listener, cas_app).await;
        });
        Ok(TestHub {
            endpoint,
            cas_url,
            faults,
            stats,
            repos,
            runtime: None,
        })
    }

    pub fn repo(&self, id: &str) -> &HubRepo {
        self.repos
            .iter()
            .find(|r| r.id == id)
            .unwrap_or_else(|| panic!("no repo {id} on the test hub"))
    }

    pub fn set_faults(&self, s: &FaultSettings) {
        self.faults.set(s);
    }
}

impl Drop for TestHub {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Turns specs into served repos, uploading Xet files through xet-data.
async fn build_repos(
    ctx: &xet_runtime::core::XetContext,
    config: &HubConfig,
    internal_cas: &str,
) -> Result<Vec<HubRepo>> {
    let upload_dir = config.data_dir.join("upload");
    std::fs::create_dir_all(&upload_dir)?;
    let record_path = config.data_dir.join("uploaded.json");
    // sha256 → xet hash of content already in the CAS from an earlier run.
    let mut record: HashMap<String, String> = std::fs::read(&record_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();

    struct Pending {
        path: String,
        sha256: String,
        on_disk: PathBuf,
    }
    let mut repos = Vec::new();
    let mut pending = Vec::new();
    for spec in &config.repos {
        let mut files = std::collections::BTreeMap::new();
        for f in &spec.files {
            let (size, sha256, blob_of_content) = match &f.content {
                Content::Bytes(b) => (
                    b.len() as u64,
                    repo::sha256_hex(b),
                    (!f.xet).then(|| repo::git_blob_id(b)),
                ),
                Content::Path(p) => {
                    let b = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
                    (
                        b.len() as u64,
                        repo::sha256_hex(&b),
                        (!f.xet).then(|| repo::git_blob_id(&b)),
                    )
                }
            };
            let hub_file = if f.xet {
                let pointer = repo::lfs_pointer(&sha256, size);
                if !record.contains_key(&sha256) {
                    let on_disk = match &f.content {
                        Content::Path(p) => p.clone(),
                        Content::Bytes(b) => {
                            let p = upload_dir.join(&sha256);
                            std::fs::write(&p, b)?;
                            p
                        }
                    };
                    pending.push(Pending {
                        path: f.path.clone(),
                        sha256: sha256.clone(),
                        on_disk,
                    });
                }
                HubFile {
                    path: f.path.clone(),
                    size,
                    blob_id: repo::git_blob_id(pointer.as_bytes()),
                    lfs: Some(repo::Lfs {
                        sha256: sha256.clone(),
                        size,
                        pointer_size: pointer.len() as u64,
                    }),
                    xet_hash: record.get(&sha256).cloned(),
                    content: f.content.clone(),
                }
            } else {
                HubFile {
                    path: f.path.clone(),
                    size,
                    blob_id: blob_of_content.unwrap_or_default(),
                    lfs: None,
                    xet_hash: None,
                    content: f.content.clone(),
                }
            };
            files.insert(f.path.clone(), hub_file);
        }
        repos.push(HubRepo {
            repo_type: spec.repo_type.clone(),
            id: spec.id.clone(),
            private: spec.private,
            commit: String::new(),
            files,
        });
    }

    if !pending.is_empty() {
        let cfg = xet_data::processing::configurations::TranslatorConfig::test_server_config(
            ctx,
            internal_cas,
            config.data_dir.join("upload-session"),
        )
        .map_err(|e| anyhow::anyhow!("upload config: {e}"))?;
        let session = xet_data::processing::FileUploadSession::new(Arc::new(cfg))
            .await
            .map_err(|e| anyhow::anyhow!("upload session: {e}"))?;
        let infos = session
            .upload_files(pending.iter().map(|p| {
                (
                    p.on_disk.clone(),
                    xet_data::processing::Sha256Policy::Compute,
                )
            }))
            .await
            .map_err(|e| anyhow::anyhow!("uploading through xet-data: {e}"))?;
        session
            .finalize()
            .await
            .map_err(|e| anyhow::anyhow!("finalizing the upload: {e}"))?;
        anyhow::ensure!(
            infos.len() == pending.len(),
            "upload returned {} infos for {} files",
            infos.len(),
            pending.len()
        );
        for (p, info) in pending.iter().zip(infos) {
            if let Some(s) = &info.sha256 {
                anyhow::ensure!(
                    *s == p.sha256,
                    "xet-data's sha256 of {} differs from ours",
                    p.path
                );
            }
            record.insert(p.sha256.clone(), info.hash.clone());
        }
        std::fs::write(&record_path, serde_json::to_vec_pretty(&record)?)?;
    }
    for r in &mut repos {
        for f in r.files.values_mut() {
            if let Some(l) = &f.lfs {
                f.xet_hash = record.get(&l.sha256).cloned();
            }
        }
        r.commit = repo::commit_id(&format!("{}/{}", r.repo_type, r.id), &r.files);
    }
    Ok(repos)
}
