//! zestd: the long-running zest daemon. Pulls repos into the Hugging Face cache on
//! request (`zestctl pull`), over a private control socket.

use zestd::{config, control, discovery, endpoint, engine, index, peer, pulls};

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
    /// A TOML file holding any of these options (same names, with `_`); flags override it
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
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
    /// Xorb ranges fetched at once, over all pulls [default: 24]
    #[arg(long)]
    fetch_concurrency: Option<usize>,
    /// Serve peers over QUIC on this UDP address, or `off` [default: 0.0.0.0:4747, another
    /// port if that one is taken]
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<String>,
    /// A peer to exchange chunks with (HOST:PORT); repeatable
    #[arg(long = "peer", value_name = "HOST:PORT")]
    peers: Vec<String>,
    /// A public BitTorrent tracker (http://…/announce) to announce public content to; repeatable
    #[arg(long = "tracker", value_name = "URL")]
    trackers: Vec<String>,
    /// A tracker of this fleet's own: private content is announced there too, under fleet
    /// keys; repeatable
    #[arg(long = "private-tracker", value_name = "URL")]
    private_trackers: Vec<String>,
    /// Join the Mainline DHT (public content only) [default: off]
    #[arg(long)]
    dht: bool,
    /// DHT bootstrap node (HOST:PORT) instead of the public ones; repeatable
    #[arg(long = "dht-bootstrap", value_name = "HOST:PORT")]
    dht_bootstrap: Vec<String>,
    /// UDP port of the DHT node [default: any free port]
    #[arg(long, value_name = "PORT")]
    dht_port: Option<u16>,
    /// Do not announce or browse on the LAN (mDNS) [default: on, on the listen interfaces]
    #[arg(long, conflicts_with = "mdns")]
    no_mdns: bool,
    /// Announce and browse on the LAN even if the config file says not to
    #[arg(long)]
    mdns: bool,
    /// The fleet's shared secret (a file of at least 16 bytes)
    #[arg(long, value_name = "FILE")]
    fleet_key_file: Option<PathBuf>,
    /// Offer public content to fleet peers only [default: to everyone]
    #[arg(long)]
    no_public_seeding: bool,
    /// While the Hub cannot answer, resolve a branch to the commit the fleet saw it point at
    /// last (with a warning) [default: refuse, as without zest]
    #[arg(long)]
    allow_stale_refs: bool,
    /// Connections to peers at most [default: 64]
    #[arg(long)]
    max_peers: Option<usize>,
    /// Serve a local Hugging Face endpoint (HF_ENDPOINT) on this TCP address, or `off`
    /// [default: 127.0.0.1:4748, another port if that one is taken]. Callers' tokens pass
    /// through it: bind another address than loopback only on purpose
    #[arg(long, value_name = "ADDR:PORT")]
    hub_listen: Option<String>,
    /// Serve hf_xet's CAS traffic on this Unix socket (HF_XET_CLIENT_UNIX_SOCKET_PATH), or
    /// `off` [default: beside the control socket, `zestd.sock` -> `zestd-xet.sock`]
    #[arg(long, value_name = "PATH")]
    xet_socket: Option<String>,
    /// What peers may take from this node per second, e.g. `20MiB`, `100MB`, `400Mbit`,
    /// or `off` [default: off]
    #[arg(long, value_name = "RATE")]
    max_upload_rate: Option<String>,
    /// What this node may take from peers and the origin together per second, e.g.
    /// `50MiB`, `800Mbit`, or `off` [default: off]
    #[arg(long, value_name = "RATE")]
    max_download_rate: Option<String>,
    /// Serve Prometheus `/metrics` and `/healthz` (nothing else) on this TCP address, or
    /// `off` [default: off; the local endpoint serves both anyway]
    #[arg(long, value_name = "ADDR:PORT")]
    metrics_listen: Option<String>,
}

/// Every option, after the config file and the flags.
struct Settings {
    socket: PathBuf,
    state_dir: PathBuf,
    cache_dir: PathBuf,
    endpoint: String,
    fetch_concurrency: usize,
    listen: config::Listen,
    peers: Vec<String>,
    discovery: discovery::DiscoveryConfig,
    fleet_key_file: Option<PathBuf>,
    max_peers: usize,
    hub_listen: config::Listen,
    xet_socket: Option<PathBuf>,
    max_upload_rate: Option<u64>,
    max_download_rate: Option<u64>,
    /// `None`: off.
    metrics_listen: Option<String>,
    allow_stale_refs: bool,
}

fn settings(args: Args) -> Result<Settings> {
    let (file, base) = match &args.config {
        Some(p) => (config::FileConfig::load(p)?, p.clone()),
        None => (config::FileConfig::default(), PathBuf::from(".")),
    };
    let rel = |p: PathBuf| config::resolve_relative(&base, p);
    let list = |flag: Vec<String>, conf: Option<Vec<String>>| {
        if flag.is_empty() {
            conf.unwrap_or_default()
        } else {
            flag
        }
    };
    let endpoint = args
        .endpoint
        .or(file.endpoint)
        .or_else(|| std::env::var("HF_ENDPOINT").ok().filter(|e| !e.is_empty()))
        .unwrap_or_else(|| "https://huggingface.co".into())
        .trim_end_matches('/')
        .to_string();
    let listen = match args.listen.or(file.listen) {
        Some(l) => config::parse_listen(&l),
        None => config::Listen::Default,
    };
    let hub_listen = match args.hub_listen.or(file.hub_listen) {
        Some(l) => config::parse_listen(&l),
        None => config::Listen::Default,
    };
    let socket = args
        .socket
        .or(file.socket.map(rel))
        .unwrap_or_else(paths::default_socket);
    let xet_socket = match args.xet_socket.or(file.xet_socket) {
        Some(s) if matches!(s.as_str(), "off" | "none" | "") => None,
        Some(s) => Some(rel(PathBuf::from(s))),
        None => {
            let stem = socket
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "zestd".into());
            Some(socket.with_file_name(format!("{stem}-xet.sock")))
        }
    };
    let max_upload_rate = match args.max_upload_rate.or(file.max_upload_rate) {
        Some(r) => {
            zestd::rate::parse_rate(&r).map_err(|e| anyhow::anyhow!("max_upload_rate: {e}"))?
        }
        None => None,
    };
    let max_download_rate = match args.max_download_rate.or(file.max_download_rate) {
        Some(r) => {
            zestd::rate::parse_rate(&r).map_err(|e| anyhow::anyhow!("max_download_rate: {e}"))?
        }
        None => None,
    };
    let metrics_listen = args
        .metrics_listen
        .or(file.metrics_listen)
        .filter(|l| !matches!(l.as_str(), "off" | "none" | ""));
    let mdns = if args.no_mdns {
        false
    } else {
        args.mdns || file.mdns.unwrap_or(true)
    };
    Ok(Settings {
        socket,
        state_dir: args
            .state_dir
            .or(file.state_dir.map(rel))
            .unwrap_or_else(default_state_dir),
        cache_dir: args
            .cache_dir
            .or(file.cache_dir.map(rel))
            .unwrap_or_else(paths::hf_hub_cache),
        endpoint,
        fetch_concurrency: args
            .fetch_concurrency
            .or(file.fetch_concurrency)
            .unwrap_or(engine::DEFAULT_FETCH_CONCURRENCY),
        listen,
        peers: list(args.peers, file.peers),
        discovery: discovery::DiscoveryConfig {
            trackers: list(args.trackers, file.trackers),
            private_trackers: list(args.private_trackers, file.private_trackers),
            dht: args.dht || file.dht.unwrap_or(false),
            dht_bootstrap: list(args.dht_bootstrap, file.dht_bootstrap),
            dht_port: args.dht_port.or(file.dht_port),
            mdns,
            seed_public: !args.no_public_seeding && file.seed_public.unwrap_or(true),
        },
        allow_stale_refs: args.allow_stale_refs || file.allow_stale_refs.unwrap_or(false),
        fleet_key_file: args.fleet_key_file.or(file.fleet_key_file.map(rel)),
        max_peers: args
            .max_peers
            .or(file.max_peers)
            .unwrap_or(peer::set::DEFAULT_MAX_PEERS)
            .max(1),
        hub_listen,
        xet_socket,
        max_upload_rate,
        max_download_rate,
        metrics_listen,
    })
}

/// Binds the peer endpoint: an explicit address must work; the default port falls back to
/// any free port (a second daemon on one machine, say).
fn start_peer_set(
    listen: &config::Listen,
    identity: &peer::tls::Identity,
    provider: peer::serve::Provider,
    opts: peer::SetOptions,
) -> Result<Option<peer::PeerSet>> {
    match listen {
        config::Listen::Off => Ok(None),
        config::Listen::Explicit(a) => {
            peer::PeerSet::start(resolve(a)?, identity, provider, opts).map(Some)
        }
        config::Listen::Default => {
            let preferred = SocketAddr::from(([0, 0, 0, 0], config::DEFAULT_PORT));
            match peer::PeerSet::start(preferred, identity, provider.clone(), opts.clone()) {
                Ok(s) => Ok(Some(s)),
                Err(e) => {
                    tracing::info!("{e:#}; listening on another port");
                    let any = SocketAddr::from(([0, 0, 0, 0], 0));
                    peer::PeerSet::start(any, identity, provider, opts).map(Some)
                }
            }
        }
    }
}

/// Binds the local Hugging Face endpoint: an explicit address must work; the default
/// (loopback, port 4748) falls back to any free loopback port.
async fn bind_hub(listen: &config::Listen) -> Result<Option<tokio::net::TcpListener>> {
    use tokio::net::TcpListener;
    match listen {
        config::Listen::Off => Ok(None),
        config::Listen::Explicit(a) => {
            let addr = resolve(a)?;
            let l = TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the hub endpoint on {addr}"))?;
            Ok(Some(l))
        }
        config::Listen::Default => {
            let preferred = SocketAddr::from(([127, 0, 0, 1], endpoint::DEFAULT_PORT));
            match TcpListener::bind(preferred).await {
                Ok(l) => Ok(Some(l)),
                Err(e) => {
                    tracing::info!("hub endpoint: {preferred}: {e}; using another port");
                    let l = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
                        .await
                        .context("binding the hub endpoint")?;
                    Ok(Some(l))
                }
            }
        }
    }
}

/// Resolves HOST:PORT (names too) to one socket address.
fn resolve(s: &str) -> Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    s.to_socket_addrs()
        .with_context(|| format!("{s:?} is not HOST:PORT"))?
        .next()
        .with_context(|| format!("{s:?} resolves to no address"))
}

/// huggingface_hub's switch for "never talk to the Hub".
fn hub_offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .map(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "on" | "yes" | "true"))
        .unwrap_or(false)
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
        // Colour for a terminal only: journald and log files get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    let cfg = settings(args)?;
    let socket = cfg.socket.clone();
    let cache_dir = cfg.cache_dir.clone();
    let state_dir = cfg.state_dir.clone();
    let endpoint = cfg.endpoint.clone();
    std::fs::create_dir_all(&cache_dir)
        .with_context(|| format!("creating cache dir {}", cache_dir.display()))?;
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("creating state dir {}", state_dir.display()))?;
    // One daemon per state dir: a second one would find the index locked and take it for
    // corrupt. Held for the daemon's life; the lock file stays, as lock files do.
    let lock_path = state_dir.join("zestd.lock");
    let _state_lock = zestd::cache::lock::try_lock(&lock_path, 0o600)
        .with_context(|| format!("locking {}", lock_path.display()))?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "another zestd is running on the state dir {} (it holds {}); stop it, or give this one its own --state-dir",
                state_dir.display(),
                lock_path.display()
            )
        })?;
    // The index keys files by real path; the cache dir must be spelled the same way.
    let cache_dir = std::fs::canonicalize(&cache_dir).unwrap_or(cache_dir);
    tracing::info!(cache = %cache_dir.display(), state = %state_dir.display(), endpoint, "zestd starting");

    let static_peers = cfg
        .peers
        .iter()
        .map(|p| resolve(p))
        .collect::<Result<Vec<_>>>()?;
    let fleet = match &cfg.fleet_key_file {
        Some(p) => Some(peer::FleetKey::from_file(p)?),
        None => None,
    };
    if fleet.is_none() && !cfg.discovery.private_trackers.is_empty() {
        tracing::warn!(
            "private trackers without a fleet key: only public content is announced there"
        );
    }

    let index = index::Index::open(&state_dir)
        .with_context(|| format!("opening the index in {}", state_dir.display()))?;
    index::watch::spawn(index.clone(), cache_dir.clone(), |_| {});
    if cfg.discovery.seed_public && cfg.listen != config::Listen::Off && !hub_offline() {
        index::visibility::spawn(index.clone(), cache_dir.clone(), endpoint.clone());
    }
    let totals = Arc::new(zestd::totals::Totals::default());
    let mut engine = engine::Engine::new(
        cache_dir.clone(),
        endpoint,
        cfg.fetch_concurrency,
        index.clone(),
        totals.clone(),
    );
    let identity = peer::tls::Identity::load_or_create(&state_dir)
        .context("loading this daemon's peer identity")?;
    let limits = Arc::new(zestd::rate::Limits::new(
        cfg.max_upload_rate,
        cfg.max_download_rate,
    ));
    engine.limits = limits.clone();
    engine.allow_stale_refs = cfg.allow_stale_refs;
    let hub_meta = Arc::new(zestd::hubmeta::HubMeta::new(
        zestd::hubmeta::MetaStore::open(&state_dir)
            .with_context(|| format!("opening kept Hub answers in {}", state_dir.display()))?,
        cache_dir.clone(),
    ));
    engine.hub_meta = Some(hub_meta.clone());
    let flush_index = index.clone();
    let mut provider =
        peer::serve::Provider::new(index.clone(), engine.live.clone(), totals, limits.clone());
    provider.serve_public = cfg.discovery.seed_public;
    provider.hub_meta = Some(hub_meta.clone());
    let opts = peer::SetOptions {
        fleet,
        max_peers: cfg.max_peers,
    };
    let mut discovery = None;
    if let Some(set) = start_peer_set(&cfg.listen, &identity, provider, opts)? {
        let local = set
            .local_addr()
            .context("the peer endpoint has no address")?;
        tracing::info!(
            listen = %local,
            node = peer::conn::short(set.node_id()),
            fleet = set.fleet_key().is_some(),
            "serving peers (QUIC, ALPN zest/1)"
        );
        engine.discovering = !cfg.discovery.trackers.is_empty()
            || !cfg.discovery.private_trackers.is_empty()
            || cfg.discovery.dht;
        engine.finds_peers = engine.discovering || cfg.discovery.mdns || !static_peers.is_empty();
        for p in static_peers {
            set.add(p, peer::Origin::Static);
        }
        hub_meta.set_peers(&set);
        tokio::spawn(hub_meta.clone().poll_routes());
        discovery = Some(
            discovery::Discovery::start(&cfg.discovery, &set, local, index, engine.wanted.clone())
                .await?,
        );
        engine.peers = Some(set);
    } else if !static_peers.is_empty() {
        anyhow::bail!("--peer needs a listening peer endpoint (--listen is off)");
    }
    let peer_set = engine.peers.clone();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let pulls = pulls::PullManager::new(engine, &state_dir)
        .with_context(|| format!("state dir {}", state_dir.display()))?;
    let sources = zestd::metrics::Sources {
        pulls: pulls.clone(),
        limits: limits.clone(),
        stopping: stop_rx.clone(),
    };
    let metrics = match &cfg.metrics_listen {
        Some(l) => {
            let addr = resolve(l)?;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the metrics listener on {addr}"))?;
            let bound = listener.local_addr()?;
            let (sources, mut stop) = (Arc::new(sources.clone()), stop_rx.clone());
            tokio::spawn(async move {
                let stopped = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                if let Err(e) = zestd::metrics::http::serve(listener, sources, stopped).await {
                    tracing::error!("metrics listener stopped: {e}");
                }
            });
            tracing::info!(metrics = %format!("http://{bound}/metrics"), "serving metrics and health");
            Some(bound)
        }
        None => None,
    };
    let tcp = bind_hub(&cfg.hub_listen).await?;
    let xet_listener = match &cfg.xet_socket {
        Some(path) => match zestd::unix_socket::bind_private(path).await {
            Ok(l) => Some((l, path.clone())),
            Err(e) => {
                tracing::warn!("hf_xet socket door off: {e:#}");
                None
            }
        },
        None => None,
    };
    let mut hub = None;
    let mut xet_socket = None;
    if tcp.is_some() || xet_listener.is_some() {
        let bound = match &tcp {
            Some(l) => l.local_addr()?,
            None => SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let engine = pulls.engine().clone();
        let ep = endpoint::Endpoint::new(bound, engine.clone(), Some(pulls.clone()), sources)?;
        if let Some(listener) = tcp {
            let (server, mut stop) = (ep.clone(), stop_rx.clone());
            tokio::spawn(async move {
                let stopped = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                if let Err(e) = server.serve(listener, stopped).await {
                    tracing::error!("hub endpoint stopped: {e}");
                }
            });
            tracing::info!(endpoint = %format!("http://{bound}"), upstream = %engine.default_endpoint, "local Hugging Face endpoint ready (HF_ENDPOINT)");
            hub = Some(ep.clone());
        }
        if let Some((listener, path)) = xet_listener {
            let (server, mut stop) = (ep.clone(), stop_rx.clone());
            let p = path.clone();
            tokio::spawn(async move {
                let stopped = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                if let Err(e) = server.serve_xet_socket(listener, stopped).await {
                    tracing::error!("hf_xet socket door stopped: {e}");
                }
                let _ = std::fs::remove_file(&p);
            });
            tracing::info!(socket = %path.display(), "hf_xet socket door ready (HF_XET_CLIENT_UNIX_SOCKET_PATH)");
            xet_socket = Some(path);
        }
    }
    let service = control::ControlService {
        cache_dir,
        state_dir,
        pulls: pulls.clone(),
        shutdown: stop_rx,
        endpoint: hub,
        xet_socket,
        limits,
        metrics,
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
    // Trackers hear `stopped`, the LAN a goodbye, peers a clean close (code 0) rather
    // than waiting out the idle timeout.
    if let Some(d) = discovery {
        d.stop().await;
    }
    if let Some(set) = peer_set {
        set.close().await;
    }
    // Tasks may still hold the index and the kept answers when the process exits, so their
    // Drop (sled's last flush) cannot be relied on: what the last pull recorded is written now.
    flush_index.flush();
    hub_meta.flush();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn with_file(text: &str, flags: &[&str]) -> Settings {
        let dir = std::env::temp_dir().join(format!("zestd-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join(format!("{}.toml", flags.len()));
        std::fs::write(&file, text).expect("config");
        let mut argv = vec!["zestd".to_string(), "--config".into()];
        argv.push(file.display().to_string());
        argv.extend(flags.iter().map(|f| f.to_string()));
        settings(Args::try_parse_from(argv).expect("flags")).expect("settings")
    }

    #[test]
    fn flags_override_the_file_and_lists_replace_lists() {
        let file = r#"
peers = ["10.0.0.2:4747", "10.0.0.3:4747"]
trackers = ["http://127.0.0.1:6969/announce"]
dht = true
mdns = false
max_peers = 5
seed_public = true
fleet_key_file = "fleet.key"
"#;
        let s = with_file(file, &[]);
        assert_eq!(s.peers.len(), 2);
        assert!(s.discovery.dht && !s.discovery.mdns && s.discovery.seed_public);
        assert_eq!(s.max_peers, 5);
        assert_eq!(s.listen, config::Listen::Default);
        assert!(s.fleet_key_file.is_some_and(|p| p.is_absolute()));

        let s = with_file(
            file,
            &[
                "--peer",
                "10.0.0.9:1",
                "--mdns",
                "--max-peers",
                "9",
                "--no-public-seeding",
                "--listen",
                "off",
            ],
        );
        assert_eq!(s.peers, ["10.0.0.9:1"], "a flag list replaces the file's");
        assert_eq!(s.discovery.trackers.len(), 1, "untouched by flags");
        assert!(s.discovery.mdns && !s.discovery.seed_public);
        assert_eq!(s.max_peers, 9);
        assert_eq!(s.listen, config::Listen::Off);

        let s = with_file("mdns = true\n", &["--no-mdns"]);
        assert!(!s.discovery.mdns);
    }
}
