//! Connecting to zestd's control socket, with a clear message when nobody answers.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};
use zest_proto::v1::zest_client::ZestClient;

/// Connects within a few seconds or explains how to start the daemon.
pub async fn connect(socket: &Path) -> Result<ZestClient<Channel>> {
    let no_daemon = || {
        anyhow!(
            "no zestd is answering on {s}\n  start one with: zestd --socket {s}\n  or as a service: systemctl --user start zestd",
            s = socket.display()
        )
    };
    // Probe first: a missing or stale socket fails fast with the helpful message.
    tokio::time::timeout(Duration::from_secs(3), UnixStream::connect(socket))
        .await
        .map_err(|_| no_daemon())?
        .map_err(|_| no_daemon())?;
    let path = socket.to_path_buf();
    // The URI is required by tonic but unused: the connector dials the Unix socket.
    let channel = Endpoint::from_static("http://zestd.local")
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(10))
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
        .with_context(no_daemon)?;
    Ok(ZestClient::new(channel))
}
