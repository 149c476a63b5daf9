//! The gRPC control service on a Unix socket only this user can open.

use std::future::Future;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};
use zest_proto::v1::pull_event::Event;
use zest_proto::v1::zest_server::{Zest, ZestServer};
use zest_proto::v1::{
    CancelReply, CancelRequest, LimitsReply, LimitsRequest, PeerInfo, PeersReply, PeersRequest,
    PullEvent, PullRequest, StatusReply, StatusRequest,
};

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use xet::remote::{RepoRef, RepoType};

use crate::engine::pull::PullSpec;
use crate::pulls::{PullManager, shutting_down};

pub struct ControlService {
    pub cache_dir: PathBuf,
    pub state_dir: PathBuf,
    pub pulls: Arc<PullManager>,
    pub shutdown: watch::Receiver<bool>,
    /// The local Hugging Face endpoint, when it is on.
    pub endpoint: Option<Arc<crate::endpoint::Endpoint>>,
    /// hf_xet's socket door, when it is on.
    pub xet_socket: Option<PathBuf>,
    /// Bandwidth caps, changeable while running.
    pub limits: Arc<crate::rate::Limits>,
    /// Where `--metrics-listen` serves, once bound.
    pub metrics: Option<std::net::SocketAddr>,
}

fn peer_infos(engine: &crate::engine::Engine) -> Vec<PeerInfo> {
    let Some(set) = &engine.peers else {
        return Vec::new();
    };
    set.rows()
        .into_iter()
        .map(|r| PeerInfo {
            addr: r.addr.to_string(),
            node_id: r.node_id,
            state: r.state.to_string(),
            reason: r.reason,
            bytes_from: r.bytes_from,
            bytes_to: r.bytes_to,
            rate_from: r.rate_from,
            rate_to: r.rate_to,
            rtt_ms: r.rtt_ms,
            source: r.origin,
            fleet: r.fleet,
        })
        .collect()
}

type PullStream = Pin<Box<dyn Stream<Item = Result<PullEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Zest for ControlService {
    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusReply>, Status> {
        let t = &self.pulls.engine().totals;
        let active = self.pulls.active();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Ok(Response::new(StatusReply {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            pid: std::process::id(),
            cache_dir: self.cache_dir.display().to_string(),
            state_dir: self.state_dir.display().to_string(),
            bytes_from_origin: get(&t.from_origin),
            bytes_from_peers: get(&t.from_peers),
            bytes_from_local: get(&t.from_local),
            bytes_served: get(&t.served),
            pulls: active.iter().map(|p| p.progress()).collect(),
            pulls_completed: t.pulls_completed.load(Ordering::Relaxed),
            pulls_failed: t.pulls_failed.load(Ordering::Relaxed),
            pulls_cancelled: t.pulls_cancelled.load(Ordering::Relaxed),
            stopped: self.pulls.stopped(),
            peers: peer_infos(self.pulls.engine())
                .into_iter()
                .filter(|p| p.state == "connected" || p.state == "choked")
                .collect(),
            listen: self
                .pulls
                .engine()
                .peers
                .as_ref()
                .and_then(|p| p.local_addr())
                .map(|a| a.to_string())
                .unwrap_or_default(),
            node_id: self
                .pulls
                .engine()
                .peers
                .as_ref()
                .map(|p| p.node_id().to_string())
                .unwrap_or_default(),
            indexed_files: self.pulls.engine().index.file_count(),
            hub_endpoint: self
                .endpoint
                .as_ref()
                .map(|e| format!("http://{}", e.address()))
                .unwrap_or_default(),
            endpoint_requests: self
                .endpoint
                .as_ref()
                .map(|e| e.stats.requests.load(Ordering::Relaxed))
                .unwrap_or(0),
            bytes_to_clients: self
                .endpoint
                .as_ref()
                .map(|e| e.stats.served_bytes())
                .unwrap_or(0),
            xet_socket: self
                .xet_socket
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            max_upload_rate: self.limits.upload.get().unwrap_or(0),
            max_download_rate: self.limits.download.get().unwrap_or(0),
            metrics_endpoint: self
                .metrics
                .map(|a| format!("http://{a}"))
                .unwrap_or_default(),
        }))
    }

    async fn limits(
        &self,
        request: Request<LimitsRequest>,
    ) -> Result<Response<LimitsReply>, Status> {
        let req = request.into_inner();
        if let Some(up) = req.upload {
            let rate = crate::rate::parse_rate(&up).map_err(Status::invalid_argument)?;
            self.limits.upload.set(rate);
            tracing::info!(upload = %crate::rate::describe(rate), "upload cap changed");
        }
        if let Some(down) = req.download {
            let rate = crate::rate::parse_rate(&down).map_err(Status::invalid_argument)?;
            self.limits.download.set(rate);
            tracing::info!(download = %crate::rate::describe(rate), "download cap changed");
        }
        Ok(Response::new(LimitsReply {
            max_upload_rate: self.limits.upload.get().unwrap_or(0),
            max_download_rate: self.limits.download.get().unwrap_or(0),
        }))
    }

    async fn cancel(
        &self,
        request: Request<CancelRequest>,
    ) -> Result<Response<CancelReply>, Status> {
        let req = request.into_inner();
        let repo_type = match req.repo_type.as_str() {
            "" => None,
            t => Some(RepoType::parse(t).ok_or_else(|| {
                Status::invalid_argument(format!("unknown repo type {t:?}: use model or dataset"))
            })?),
        };
        let pull_ids = self.pulls.cancel(&req.target, repo_type);
        Ok(Response::new(CancelReply { pull_ids }))
    }

    async fn peers(&self, _: Request<PeersRequest>) -> Result<Response<PeersReply>, Status> {
        Ok(Response::new(PeersReply {
            peers: peer_infos(self.pulls.engine()),
        }))
    }

    type PullStream = PullStream;

    async fn pull(&self, request: Request<PullRequest>) -> Result<Response<PullStream>, Status> {
        let req = request.into_inner();
        let repo_type = RepoType::parse(&req.repo_type).ok_or_else(|| {
            Status::invalid_argument(format!(
                "unknown repo type {:?}: use model or dataset",
                req.repo_type
            ))
        })?;
        let repo = RepoRef::new(repo_type, &req.repo_id).map_err(Status::invalid_argument)?;
        let revision = if req.revision.is_empty() {
            "main".to_string()
        } else {
            req.revision
        };
        if revision.contains("..") || revision.starts_with('/') || revision.contains('\0') {
            return Err(Status::invalid_argument(format!(
                "invalid revision {revision:?}"
            )));
        }
        let endpoint = if req.endpoint.is_empty() {
            self.pulls.engine().default_endpoint.clone()
        } else {
            req.endpoint
        };
        let token = (!req.token.is_empty()).then_some(req.token);
        let spec = PullSpec {
            repo,
            revision,
            include: req.include,
            exclude: req.exclude,
            endpoint,
            allow_stale_refs: req.allow_stale_refs,
        };
        let pull = self.pulls.start(spec, token);
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let mut outcome = pull.outcome.clone();
        let mut shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let ev = PullEvent { event: Some(Event::Progress(pull.progress())) };
                        if tx.send(Ok(ev)).await.is_err() {
                            return; // the client left; the pull goes on
                        }
                    }
                    changed = outcome.changed() => {
                        let last = outcome.borrow().clone();
                        let event = match (changed, last) {
                            (Ok(()), Some(Ok(done))) => Event::Done(done),
                            (Ok(()), Some(Err(e))) => Event::Failed((&e).into()),
                            (Ok(()), None) => continue,
                            (Err(_), _) => Event::Failed((&shutting_down()).into()),
                        };
                        let _ = tx.send(Ok(PullEvent { event: Some(Event::Progress(pull.progress())) })).await;
                        let _ = tx.send(Ok(PullEvent { event: Some(event) })).await;
                        return;
                    }
                    _ = shutdown.changed() => {
                        let _ = tx.send(Ok(PullEvent { event: Some(Event::Failed((&shutting_down()).into())) })).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(
            Box::pin(ReceiverStream::new(rx)) as PullStream
        ))
    }
}

/// Binds the socket (`unix_socket::bind_private`) and serves until `shutdown` resolves.
pub async fn serve(
    socket: &Path,
    service: ControlService,
    shutdown: impl Future<Output = ()>,
    on_ready: impl FnOnce(),
) -> Result<()> {
    let listener = crate::unix_socket::bind_private(socket).await?;
    tracing::info!(socket = %socket.display(), "control socket ready");
    on_ready();
    let result = tonic::transport::Server::builder()
        .add_service(ZestServer::new(service))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await;
    let _ = std::fs::remove_file(socket);
    result.context("gRPC server")
}
