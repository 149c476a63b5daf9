//! The gRPC control service on a Unix socket only this user can open.

use std::future::Future;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};
use zest_proto::v1::zest_server::{Zest, ZestServer};
use zest_proto::v1::{StatusReply, StatusRequest};

struct ControlService {
    cache_dir: PathBuf,
}

#[tonic::async_trait]
impl Zest for ControlService {
    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusReply>, Status> {
        Ok(Response::new(StatusReply {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            pid: std::process::id(),
            cache_dir: self.cache_dir.display().to_string(),
            ..Default::default()
        }))
    }
}

/// Binds the socket (mode 0600, parent 0700) and serves until `shutdown` resolves.
pub async fn serve(
    socket: &Path,
    cache_dir: PathBuf,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    if let Some(parent) = socket
        .parent()
        .filter(|p| !p.as_os_str().is_empty() && !p.exists())
    {
        // A private directory keeps the socket unreachable by others between bind and chmod.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    if socket.exists() {
        // A live daemon answers on it; a stale file from a crash does not.
        if tokio::net::UnixStream::connect(socket).await.is_ok() {
            bail!("another zestd is already listening on {}", socket.display());
        }
        std::fs::remove_file(socket)
            .with_context(|| format!("removing stale socket {}", socket.display()))?;
    }
    let listener = UnixListener::bind(socket)?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
    tracing::info!(socket = %socket.display(), "control socket ready");
    let result = tonic::transport::Server::builder()
        .add_service(ZestServer::new(ControlService { cache_dir }))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await;
    let _ = std::fs::remove_file(socket);
    result.context("gRPC server")
}
