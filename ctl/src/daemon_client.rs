//! Connecting to zestd's control socket, with a clear message when nobody answers.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};
use zest_proto::v1::zest_client::ZestClient;

/// How long a zestd that accepted the connection has to answer.
const ANSWER_WAIT: Duration = Duration::from_secs(30);

/// How long a socket that exists may refuse connections before it counts as stale.
const PROBE_WAIT: Duration = Duration::from_secs(3);

/// Connects once, or again while the socket exists and refuses: a zestd that has just
/// bound it has not called listen(2) yet (a test or a unit starting zestd and zestctl
/// back to back meets that window), whereas a crashed one leaves a socket that refuses
/// until the probe gives up.
async fn probe(socket: &Path) -> std::io::Result<UnixStream> {
    loop {
        match UnixStream::connect(socket).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused && socket.exists() => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

/// Connects within a few seconds or explains how to start the daemon.
pub async fn connect(socket: &Path) -> Result<ZestClient<Channel>> {
    let no_daemon = || {
        anyhow!(
            "no zestd is answering on {s}\n  start one with: zestd --socket {s}\n  or as a service: systemctl --user start zestd",
            s = socket.display()
        )
    };
    // Probe first: a missing or stale socket fails fast with the helpful message.
    tokio::time::timeout(PROBE_WAIT, probe(socket))
        .await
        .map_err(|_| no_daemon())?
        .map_err(|_| no_daemon())?;
    let path = socket.to_path_buf();
    // Something listens there, so a slow answer is a busy zestd (a machine under load, a
    // daemon still starting), not a missing one: give it time, and say which it is.
    let busy = || {
        anyhow!(
            "zestd on {} accepted the connection but did not answer within {}s",
            socket.display(),
            ANSWER_WAIT.as_secs()
        )
    };
    // The URI is required by tonic but unused: the connector dials the Unix socket.
    let channel = Endpoint::from_static("http://zestd.local")
        .connect_timeout(ANSWER_WAIT)
        .timeout(ANSWER_WAIT)
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
        .with_context(busy)?;
    Ok(ZestClient::new(channel))
}
