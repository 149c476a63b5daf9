//! zestd: the long-running zest daemon. Pulls repos into the Hugging Face cache on
//! request (`zestctl pull`), over a private control socket.

mod cache;
mod control;
mod engine;
mod pulls;

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
    /// Where zestd keeps its own state (unfinished pulls) [default: $XDG_STATE_HOME/zest, else ~/.local/state/zest]
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// The Hugging Face hub cache to fill [default: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub]
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Hub endpoint for pulls that do not name one [default: $HF_ENDPOINT, else https://huggingface.co]
    #[arg(long)]
    endpoint: Option<String>,
    /// Xorb ranges fetched at once, over all pulls.
    #[arg(long, default_value_t = engine::DEFAULT_FETCH_CONCURRENCY)]
    fetch_concurrency: usize,
}

fn default_state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("zest");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/state/zest"),
        None => paths::hf_hub_cache().join(".zest/state"),
    }
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
    let cache_dir = args.cache_dir.unwrap_or_else(paths::hf_hub_cache);
    let state_dir = args.state_dir.unwrap_or_else(default_state_dir);
    let endpoint = args
        .endpoint
        .or_else(|| std::env::var("HF_ENDPOINT").ok().filter(|e| !e.is_empty()))
        .unwrap_or_else(|| "https://huggingface.co".into())
        .trim_end_matches('/')
        .to_string();
    std::fs::create_dir_all(&cache_dir)
        .with_context(|| format!("creating cache dir {}", cache_dir.display()))?;
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("creating state dir {}", state_dir.display()))?;
    tracing::info!(cache = %cache_dir.display(), state = %state_dir.display(), endpoint, "zestd starting");

    let engine = engine::Engine::new(cache_dir.clone(), endpoint, args.fetch_concurrency);
    let pulls = pulls::PullManager::new(engine, &state_dir)
        .with_context(|| format!("state dir {}", state_dir.display()))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let service = control::ControlService {
        cache_dir,
        state_dir,
        pulls: pulls.clone(),
        shutdown: stop_rx,
    };
    let shutdown = async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    };
    // Bind first: a second daemon on the same socket must fail before it resumes anything.
    let server = control::serve(&socket, service, shutdown, move || {
        pulls.resume_unfinished()
    });
    server
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
    tracing::info!("shutting down; unfinished pulls resume on the next start");
}
