//! zestd: the long-running zest daemon. Pulls repos into the Hugging Face cache on
//! request (`zestctl pull`), over a private control socket.

use zestd::{control, engine, index, peer, pulls};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

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
    /// Serve peers over QUIC on this UDP address, e.g. 0.0.0.0:4747 [default: no listening;
    /// with --peer, an ephemeral port]
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<String>,
    /// A peer to exchange chunks with (HOST:PORT); repeatable
    #[arg(long = "peer", value_name = "HOST:PORT")]
    peers: Vec<String>,
}

/// Resolves HOST:PORT (names too) to one socket address.
fn resolve(s: &str) -> Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    s.to_socket_addrs()
        .with_context(|| format!("{s:?} is not HOST:PORT"))?
        .next()
        .with_context(|| format!("{s:?} resolves to no address"))
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
    // The index keys files by real path; the cache dir must be spelled the same way.
    let cache_dir = std::fs::canonicalize(&cache_dir).unwrap_or(cache_dir);
    tracing::info!(cache = %cache_dir.display(), state = %state_dir.display(), endpoint, "zestd starting");

    let listen = match (&args.listen, args.peers.is_empty()) {
        (Some(l), _) => Some(resolve(l)?),
        (None, false) => Some(SocketAddr::from(([0, 0, 0, 0], 0))),
        (None, true) => None,
    };
    let static_peers = args
        .peers
        .iter()
        .map(|p| resolve(p))
        .collect::<Result<Vec<_>>>()?;

    let index = index::Index::open(&state_dir)
        .with_context(|| format!("opening the index in {}", state_dir.display()))?;
    index::watch::spawn(index.clone(), cache_dir.clone(), |_| {});
    let totals = Arc::new(engine::Totals::default());
    let mut engine = engine::Engine::new(
        cache_dir.clone(),
        endpoint,
        args.fetch_concurrency,
        index.clone(),
        totals.clone(),
    );
    if let Some(listen) = listen {
        let identity = peer::tls::Identity::load_or_create(&state_dir)
            .context("loading this daemon's peer identity")?;
        let provider = peer::serve::Provider::new(index, engine.live.clone(), totals);
        let set = peer::PeerSet::start(listen, &identity, provider)?;
        tracing::info!(
            listen = %set.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            node = peer::conn::short(set.node_id()),
            "serving peers (QUIC, ALPN zest/1)"
        );
        for p in static_peers {
            set.add(p, peer::Origin::Static);
        }
        engine.peers = Some(set);
    }
    let peer_set = engine.peers.clone();
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
    let served = server
        .await
        .with_context(|| format!("control socket {}", socket.display()));
    // Peers hear a clean close (code 0) rather than waiting out the idle timeout.
    if let Some(set) = peer_set {
        set.close();
    }
    served
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
