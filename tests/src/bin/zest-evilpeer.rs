//! A hostile zest peer for the tests. It speaks the wire protocol correctly but lies:
//!
//! - `wrong-bytes`: holds the real files and manifests, sends every chunk with a byte
//!   flipped;
//! - `false-claims`: says it holds every file it knows of, sends made-up chunk hashes and
//!   has no chunk to give;
//! - `stall`: honest manifests, then goes silent after two chunks of any transfer;
//! - `stall-midway`: honest, but goes silent halfway through every transfer;
//! - `wrong-midway`: honest, but the chunk halfway through every transfer has a byte
//!   flipped;
//! - `watch-frozen`: lists `watch`; its first update says it is downloading the file and
//!   fetching all of it from the origin, then it says nothing more, ever (a frozen
//!   daemon whose claims would hold a crowd up);
//! - `watch-garbage`: lists `watch`; its updates are malformed (a delta first, then ranges
//!   out of order, then another file's state).
//!
//! The other modes do not list `watch`: they stand for peers from before it, which are
//! asked with `have`.
//!
//! It knows files by indexing `--cache` (an HF cache) with zestd's own indexer.

use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use xet::XetHash;
use zest_proto::peer;
use zestd::index::Index;
use zestd::peer::tls::Identity;
use zestd::peer::wire;

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Mode {
    WrongBytes,
    FalseClaims,
    Stall,
    StallMidway,
    WrongMidway,
    WatchFrozen,
    WatchGarbage,
}

#[derive(Parser)]
struct Args {
    #[arg(long)]
    listen: SocketAddr,
    #[arg(long)]
    cache: PathBuf,
    #[arg(long)]
    state: PathBuf,
    #[arg(long, value_enum)]
    mode: Mode,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.state)?;
    let index = Index::open(&args.state)?;
    let report = zestd::index::scan::reconcile(&index, &args.cache);
    let identity = Identity::load_or_create(&args.state)?;
    let endpoint =
        quinn::Endpoint::server(identity.server_config()?, args.listen).context("binding")?;
    println!(
        "ready {} ({} files)",
        endpoint.local_addr()?,
        report.added + report.kept
    );
    let index = Arc::new(index);
    while let Some(incoming) = endpoint.accept().await {
        let (index, mode) = (index.clone(), args.mode);
        tokio::spawn(async move {
            let Ok(conn) = incoming.await else { return };
            let Ok((mut send, mut recv)) = conn.accept_bi().await else {
                return;
            };
            if wire::read::<peer::Hello>(&mut recv).await.is_err() {
                return;
            }
            let hello = peer::Hello {
                version: zestd::peer::set::VERSION,
                capabilities: ["have", "manifest", "get"]
                    .into_iter()
                    .chain(
                        matches!(mode, Mode::WatchFrozen | Mode::WatchGarbage).then_some("watch"),
                    )
                    .map(String::from)
                    .collect(),
                agent: format!("zest-evilpeer/{mode:?}"),
                fleet_proof: Vec::new(),
            };
            if wire::write(&mut send, &hello).await.is_err() {
                return;
            }
            let _ = send.finish();
            while let Ok((send, recv)) = conn.accept_bi().await {
                let index = index.clone();
                tokio::spawn(async move {
                    let _ = handle(&index, mode, send, recv).await;
                });
            }
        });
    }
    Ok(())
}

async fn handle(
    index: &Index,
    mode: Mode,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) -> Result<()> {
    let Some(req) = wire::read::<peer::Request>(&mut recv).await? else {
        return Ok(());
    };
    match req.kind {
        Some(peer::request::Kind::Have(h)) => {
            let files = h
                .files
                .iter()
                .map(|f| {
                    let held = XetHash::from_slice(f).and_then(|h| index.held(&h));
                    match held {
                        Some(h) => peer::FileHave {
                            file: f.clone(),
                            complete: true,
                            total_chunks: h.chunks.len() as u32,
                            held: vec![0, h.chunks.len() as u32],
                            fetching: vec![],
                            quiet_ms: None,
                            relayed: None,
                        },
                        None => peer::FileHave {
                            file: f.clone(),
                            ..Default::default()
                        },
                    }
                })
                .collect();
            let reply = peer::Response {
                kind: Some(peer::response::Kind::Have(peer::HaveReply { files })),
            };
            wire::write(&mut send, &reply).await?;
        }
        Some(peer::request::Kind::Manifest(m)) => {
            let Some(held) = XetHash::from_slice(&m.file).and_then(|h| index.held(&h)) else {
                wire::write(&mut send, &wire::error("not_found", "no")).await?;
                send.finish()?;
                return Ok(());
            };
            let chunks = (m.start..m.end.min(held.chunks.len() as u32))
                .map(|i| {
                    let c = held.chunks[i as usize];
                    let hash = if mode == Mode::FalseClaims {
                        let mut b = *c.hash.as_bytes();
                        b[0] ^= 0xff;
                        b.to_vec()
                    } else {
                        c.hash.as_bytes().to_vec()
                    };
                    peer::ChunkClaim {
                        index: i,
                        hash,
                        size: c.size,
                    }
                })
                .collect();
            let reply = peer::Response {
                kind: Some(peer::response::Kind::Manifest(peer::ManifestReply {
                    chunks,
                })),
            };
            wire::write(&mut send, &reply).await?;
        }
        Some(peer::request::Kind::Get(g)) => {
            let held = XetHash::from_slice(&g.file).and_then(|h| index.held(&h));
            let Some(held) = held.filter(|_| mode != Mode::FalseClaims) else {
                wire::write(&mut send, &wire::error("not_found", "no such chunk")).await?;
                send.finish()?;
                return Ok(());
            };
            let file = std::fs::File::open(&held.path)?;
            let midway = (g.end.saturating_sub(g.start) / 2) as usize;
            for (n, i) in (g.start..g.end).enumerate() {
                if (mode == Mode::Stall && n == 2) || (mode == Mode::StallMidway && n == midway) {
                    // Hold the stream open and say nothing more.
                    tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                }
                let Some(c) = held.chunks.get(i as usize) else {
                    break;
                };
                let mut data = vec![0u8; c.size as usize];
                file.read_exact_at(&mut data, held.offsets[i as usize])?;
                if mode == Mode::WrongBytes || (mode == Mode::WrongMidway && n == midway) {
                    let mid = data.len() / 2;
                    data[mid] ^= 0x01;
                }
                let frame = peer::Response {
                    kind: Some(peer::response::Kind::Chunk(peer::ChunkData {
                        index: i,
                        data,
                    })),
                };
                wire::write(&mut send, &frame).await?;
            }
        }
        Some(peer::request::Kind::Watch(w)) => {
            let n = XetHash::from_slice(&w.file)
                .and_then(|h| index.held(&h))
                .map_or(0, |h| h.chunks.len() as u32);
            let update =
                |file: Vec<u8>, delta: bool, held: Vec<u32>, fetching: Vec<u32>| peer::Response {
                    kind: Some(peer::response::Kind::Update(peer::HaveUpdate {
                        have: Some(peer::FileHave {
                            file,
                            complete: false,
                            total_chunks: n,
                            held,
                            fetching,
                            quiet_ms: None,
                            relayed: None,
                        }),
                        delta,
                    })),
                };
            let frames = match mode {
                Mode::WatchFrozen => vec![update(w.file.clone(), false, vec![], vec![0, n])],
                _ => vec![
                    update(w.file.clone(), true, vec![0, 1], vec![]),
                    update(w.file.clone(), false, vec![5, 3], vec![]),
                    update(vec![0xee; 32], false, vec![0, n], vec![]),
                ],
            };
            for f in frames {
                wire::write(&mut send, &f).await?;
            }
            // Frozen: the stream stays open and silent.
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
        }
        // Not in anyone's fleet, so it keeps no Hub answers for anyone.
        Some(peer::request::Kind::Meta(_) | peer::request::Kind::Route(_)) => {
            wire::write(&mut send, &wire::error("not_found", "no")).await?;
        }
        None => {}
    }
    send.finish()?;
    Ok(())
}
