//! Runs the test hub (a Hub stand-in in front of Hugging Face's reference CAS server) on
//! loopback until interrupted. Prints one JSON line with its addresses when ready.

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;
use zest_tests::hub::{HubConfig, TEST_TOKEN, TestHub, fixtures};

#[derive(Parser)]
#[command(about = "A Hugging Face Hub stand-in for tests and the demo, on loopback")]
struct Args {
    /// Where the CAS keeps its data (reused across runs).
    #[arg(long)]
    data: PathBuf,
    /// Which repos to serve: `standard` (small test repos), `bench` (a ~1 GiB model) or
    /// `none`.
    #[arg(long, default_value = "standard")]
    fixture: String,
    /// Size of the bench model.
    #[arg(long, default_value_t = 1 << 30)]
    bench_bytes: u64,
    #[arg(long, default_value_t = 0)]
    hub_port: u16,
    #[arg(long, default_value_t = 0)]
    cas_port: u16,
    /// Address to listen on (benchmarks put the hub in its own network namespace).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Also run a local Mainline DHT of this many nodes on loopback (its bootstrap
    /// addresses are printed as `dht_bootstrap`), so daemons can find each other on it.
    #[arg(long, default_value_t = 0)]
    dht_nodes: usize,
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let repos = match args.fixture.as_str() {
        "standard" => fixtures::standard(),
        "bench" => fixtures::bench(&args.data.join("bench-files"), args.bench_bytes)?,
        // No repos: a local DHT for benchmarks, in the namespace of the daemons.
        "none" => Vec::new(),
        other => anyhow::bail!("unknown fixture {other:?}: use `standard`, `bench` or `none`"),
    };
    let mut config = HubConfig::new(&args.data, repos);
    config.hub_port = args.hub_port;
    config.cas_port = args.cas_port;
    config.host = args.host;
    let hub = TestHub::start(config)?;
    let dht = (args.dht_nodes > 0).then(|| zest_tests::swarms::LocalDht::start(args.dht_nodes));
    let dht_bootstrap: Vec<String> = dht
        .as_ref()
        .map(|d| d.bootstrap.clone())
        .unwrap_or_default();
    let repos: Vec<_> = hub
        .repos
        .iter()
        .map(|r| {
            // The public swarm key of each Xet file, for trackers that take a whitelist.
            let mut keys: Vec<String> = r
                .files
                .values()
                .filter(|f| f.size > 0)
                .filter_map(|f| f.xet_hash.as_deref()?.parse::<xet::XetHash>().ok())
                .map(|h| zestd::discovery::swarm::public_key(&h).to_string())
                .collect();
            keys.sort();
            keys.dedup();
            serde_json::json!({
                "type": r.repo_type, "id": r.id, "commit": r.commit, "private": r.private,
                "files": r.files.len(),
                "bytes": r.files.values().map(|f| f.size).sum::<u64>(),
                "swarm_keys": keys,
            })
        })
        .collect();
    println!(
        "{}",
        serde_json::json!({ "endpoint": hub.endpoint, "cas": hub.cas_url, "token": TEST_TOKEN, "repos": repos, "dht_bootstrap": dht_bootstrap })
    );
    // Serve until a signal ends the process.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        Ok::<_, anyhow::Error>(())
    })?;
    drop(hub);
    drop(dht);
    Ok(())
}
