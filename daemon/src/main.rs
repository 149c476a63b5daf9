//! zestd: the long-running zest daemon.
//!
//! Today it serves the control API (`Status`) on a private Unix socket; pulling and
//! peer serving are built on top of this skeleton.

mod control;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use zest_proto::paths;

#[derive(Parser, Debug)]
#[command(
    name = "zestd",
    version,
    about = "zest daemon: peer-to-peer acceleration for Hugging Face downloads"
)]
struct Args {
    /// Control socket path [default: $XDG_RUNTIME_DIR/zest/zestd.sock, else <HF cache>/.zest/zestd.sock]
    #[arg(long)]
    socket: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let socket = args.socket.unwrap_or_else(paths::default_socket);
    let cache_dir = paths::hf_hub_cache();
    control::serve(&socket, cache_dir, shutdown_signal())
        .await
        .with_context(|| format!("control socket {}", socket.display()))
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot watch SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down");
}
