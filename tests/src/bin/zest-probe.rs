//! Asks a zest peer for one file the way any stranger could: dials it, says hello (with a
//! fleet proof if given a fleet key), sends `have` (and with `--manifest`, `manifest` of
//! the whole file), `get` for chunk 0 and `meta` for the file's reconstruction, prints what
//! came back as one JSON line, and closes the connection (with `--vanish`, it does not).
//! The private-content tests use it to show that a peer outside the fleet is refused.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;
use xet::XetHash;
use zest_proto::peer;
use zestd::peer::fleet::{FleetKey, Role};
use zestd::peer::stats::PeerStats;
use zestd::peer::tls::{Identity, remote_node_id};
use zestd::peer::{PeerConn, wire};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    peer: SocketAddr,
    /// Xet hash of the file to ask for.
    #[arg(long)]
    file: XetHash,
    /// Where the probe keeps its own identity.
    #[arg(long)]
    state: PathBuf,
    #[arg(long)]
    fleet_key_file: Option<PathBuf>,
    /// Also asks a `manifest` of the whole file and counts the chunks it claims, and
    /// those of them the peer does not hold.
    #[arg(long)]
    manifest: bool,
    /// Exits without closing the connection, as a crashed or unplugged peer would: the
    /// other side hears nothing more until QUIC's idle timeout.
    #[arg(long)]
    vanish: bool,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.state)?;
    let identity = Identity::load_or_create(&args.state)?;
    let fleet = match &args.fleet_key_file {
        Some(p) => Some(FleetKey::from_file(p)?),
        None => None,
    };
    let mut endpoint = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    endpoint.set_default_client_config(identity.client_config()?);
    let conn = endpoint.connect(args.peer, "zest")?.await.context("QUIC")?;
    let (mut send, mut recv) = conn.open_bi().await?;
    let hello = peer::Hello {
        version: zestd::peer::set::VERSION,
        capabilities: vec!["have".into(), "get".into()],
        agent: "zest-probe".into(),
        fleet_proof: fleet
            .as_ref()
            .map(|k| k.proof(&conn, Role::Dialler))
            .unwrap_or_default(),
    };
    wire::write(&mut send, &hello).await?;
    send.finish()?;
    wire::read::<peer::Hello>(&mut recv)
        .await?
        .context("no hello back")?;
    let pc = PeerConn {
        node_id: remote_node_id(&conn).unwrap_or_default(),
        addr: args.peer,
        stats: Arc::new(PeerStats::default()),
        fleet: fleet.is_some(),
        watch: false,
        meta: true,
        route: false,
        conn,
    };
    let have = pc.have(&[args.file]).await?;
    let held: u32 = have
        .iter()
        .map(|h| {
            h.held
                .chunks(2)
                .map(|r| r[1].saturating_sub(r[0]))
                .sum::<u32>()
        })
        .sum();
    let total: u32 = have.iter().map(|h| h.total_chunks).max().unwrap_or(0);
    let (mut claimed, mut claimed_not_held) = (0usize, 0usize);
    if args.manifest && total > 0 {
        let held_at = |i: u32| {
            have.iter().any(|h| {
                h.held
                    .chunks(2)
                    .any(|r| r.len() == 2 && r[0] <= i && i < r[1])
            })
        };
        for c in pc.manifest(&args.file, 0, total).await? {
            claimed += 1;
            if !held_at(c.index) {
                claimed_not_held += 1;
            }
        }
    }
    let mut bytes = 0usize;
    let no_cap = zestd::rate::RateLimit::new(None);
    let get = match pc
        .get::<zestd::peer::PeerError>(
            &args.file,
            0,
            1,
            &no_cap,
            || zestd::peer::limits::Patience::USUAL,
            |_, d| {
                bytes += d.len();
                Ok(())
            },
        )
        .await
    {
        Ok(()) => "ok".to_string(),
        Err(e) => e.to_string(),
    };
    let meta = match pc
        .meta(
            zestd::hubmeta::Query::Reconstruction(args.file).to_wire(),
            std::time::Duration::from_secs(10),
        )
        .await
    {
        Ok(Some(m)) => m.piece.len(),
        Ok(None) => 0,
        Err(e) => anyhow::bail!("meta: {e}"),
    };
    println!(
        "{}",
        serde_json::json!({
            "held_chunks": held,
            "total_chunks": total,
            "claimed_chunks": claimed,
            "claimed_not_held": claimed_not_held,
            "get": get,
            "bytes": bytes,
            "meta_bytes": meta,
        })
    );
    if args.vanish {
        // Skips the runtime's shutdown too, so nothing gets a chance to send a close.
        std::process::exit(0);
    }
    pc.conn.close(0u32.into(), b"done");
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), endpoint.wait_idle()).await;
    Ok(())
}
