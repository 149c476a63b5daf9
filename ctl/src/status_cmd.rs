//! `zestctl status` and `zestctl peers`.

use std::path::Path;

use zest_proto::v1::{LimitsRequest, PeerInfo, PeersRequest, StatusReply, StatusRequest};

use crate::daemon_client;
use crate::pull_cmd::human;

fn block_on<T>(f: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

fn peer_json(p: &PeerInfo) -> serde_json::Value {
    serde_json::json!({
        "addr": p.addr, "node_id": p.node_id, "state": p.state, "reason": p.reason,
        "source": p.source, "bytes_from": p.bytes_from, "bytes_to": p.bytes_to,
        "rate_from": p.rate_from, "rate_to": p.rate_to, "rtt_ms": p.rtt_ms,
        "fleet": p.fleet,
    })
}

fn status_json(reply: &StatusReply) -> serde_json::Value {
    let pulls: Vec<_> = reply
        .pulls
        .iter()
        .map(|p| {
            serde_json::json!({
                "id": p.pull_id, "repo": p.repo, "revision": p.revision, "commit": p.commit,
                "phase": p.phase, "files_total": p.files_total, "files_done": p.files_done,
                "bytes_total": p.bytes_total, "bytes_done": p.bytes_done, "current": p.current,
                "bytes_from_origin": p.bytes_from_origin, "bytes_from_peers": p.bytes_from_peers,
                "bytes_from_local": p.bytes_from_local,
            })
        })
        .collect();
    serde_json::json!({
        "version": reply.version,
        "pid": reply.pid,
        "cache_dir": reply.cache_dir,
        "state_dir": reply.state_dir,
        "node_id": reply.node_id,
        "listen": reply.listen,
        "indexed_files": reply.indexed_files,
        "hub_endpoint": reply.hub_endpoint,
        "endpoint_requests": reply.endpoint_requests,
        "bytes_to_clients": reply.bytes_to_clients,
        "xet_socket": reply.xet_socket,
        "bytes_from_origin": reply.bytes_from_origin,
        "bytes_from_peers": reply.bytes_from_peers,
        "bytes_from_local": reply.bytes_from_local,
        "bytes_served": reply.bytes_served,
        "max_upload_rate": reply.max_upload_rate,
        "max_download_rate": reply.max_download_rate,
        "metrics_endpoint": reply.metrics_endpoint,
        "pulls_completed": reply.pulls_completed,
        "pulls_failed": reply.pulls_failed,
        "pulls_cancelled": reply.pulls_cancelled,
        "pulls": pulls,
        "stopped": reply.stopped.iter().map(|s| serde_json::json!({
            "id": s.pull_id, "repo": s.repo, "revision": s.revision, "kind": s.kind,
            "message": s.message, "unix_time": s.unix_time,
        })).collect::<Vec<_>>(),
        "peers": reply.peers.iter().map(peer_json).collect::<Vec<_>>(),
    })
}

pub fn status(socket: &Path, json: bool) -> anyhow::Result<()> {
    let reply = block_on(async {
        let mut client = daemon_client::connect(socket).await?;
        Ok(client.status(StatusRequest {}).await?.into_inner())
    })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status_json(&reply))?);
        return Ok(());
    }
    println!("zestd {} (pid {})", reply.version, reply.pid);
    println!("cache:        {}", reply.cache_dir);
    println!("state:        {}", reply.state_dir);
    if reply.listen.is_empty() {
        println!("peers:        off (start zestd with --listen or --peer)");
    } else {
        println!(
            "listening:    {} (node {})",
            reply.listen,
            reply.node_id.get(..12).unwrap_or(&reply.node_id)
        );
        println!("peers:        {} connected", reply.peers.len());
    }
    if reply.hub_endpoint.is_empty() {
        println!("endpoint:     off (start zestd with --hub-listen)");
    } else {
        println!(
            "endpoint:     {} (HF_ENDPOINT; {} requests, {} to local clients)",
            reply.hub_endpoint,
            reply.endpoint_requests,
            human(reply.bytes_to_clients)
        );
    }
    if !reply.xet_socket.is_empty() {
        println!(
            "xet socket:   {} (HF_XET_CLIENT_UNIX_SOCKET_PATH)",
            reply.xet_socket
        );
    }
    if !reply.metrics_endpoint.is_empty() {
        println!(
            "metrics:      {}/metrics, {}/healthz",
            reply.metrics_endpoint, reply.metrics_endpoint
        );
    }
    println!("indexed:      {} files", reply.indexed_files);
    println!(
        "from origin:  {} (download cap, with peers: {})",
        human(reply.bytes_from_origin),
        cap(reply.max_download_rate)
    );
    println!("from peers:   {}", human(reply.bytes_from_peers));
    println!("from local:   {}", human(reply.bytes_from_local));
    println!(
        "served:       {} (upload cap: {})",
        human(reply.bytes_served),
        cap(reply.max_upload_rate)
    );
    println!(
        "pulls:        {} done, {} failed, {} cancelled, {} running",
        reply.pulls_completed,
        reply.pulls_failed,
        reply.pulls_cancelled,
        reply.pulls.len()
    );
    for p in &reply.pulls {
        println!(
            "  [{}] {} @ {}: {} {}/{} files, {}/{}",
            p.pull_id,
            p.repo,
            p.revision,
            p.phase,
            p.files_done,
            p.files_total,
            human(p.bytes_done),
            human(p.bytes_total)
        );
    }
    if !reply.stopped.is_empty() {
        println!("stopped (not resumed; `zestctl pull` tries again):");
    }
    for s in &reply.stopped {
        println!(
            "  [{}] {} @ {}: {}: {}",
            s.pull_id, s.repo, s.revision, s.kind, s.message
        );
    }
    Ok(())
}

/// A cap in bytes per second (0: none), as people read it.
fn cap(rate: u64) -> String {
    if rate == 0 {
        "off".into()
    } else {
        format!("{}/s", human(rate))
    }
}

pub fn limits(
    socket: &Path,
    upload: Option<String>,
    download: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let reply = block_on(async {
        let mut client = daemon_client::connect(socket).await?;
        Ok(client
            .limits(LimitsRequest { upload, download })
            .await?
            .into_inner())
    })?;
    if json {
        let v = serde_json::json!({
            "max_upload_rate": reply.max_upload_rate,
            "max_download_rate": reply.max_download_rate,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("upload cap:   {}", cap(reply.max_upload_rate));
        println!("download cap: {}", cap(reply.max_download_rate));
    }
    Ok(())
}

pub fn peers(socket: &Path, json: bool) -> anyhow::Result<()> {
    let reply = block_on(async {
        let mut client = daemon_client::connect(socket).await?;
        Ok(client.peers(PeersRequest {}).await?.into_inner())
    })?;
    if json {
        let v: Vec<_> = reply.peers.iter().map(peer_json).collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    if reply.peers.is_empty() {
        println!("no peers");
        return Ok(());
    }
    println!(
        "{:<22} {:<12} {:<11} {:>9} {:>9} {:>10} {:>10} {:>7}  note",
        "ADDRESS", "NODE", "STATE", "FROM", "TO", "FROM/s", "TO/s", "RTT"
    );
    for p in &reply.peers {
        println!(
            "{:<22} {:<12} {:<11} {:>9} {:>9} {:>10} {:>10} {:>5.1}ms  {}{}",
            p.addr,
            p.node_id.get(..12).unwrap_or(&p.node_id),
            p.state,
            human(p.bytes_from),
            human(p.bytes_to),
            human(p.rate_from as u64),
            human(p.rate_to as u64),
            p.rtt_ms,
            if p.fleet {
                format!("{} (fleet)", p.source)
            } else {
                p.source.clone()
            },
            if p.reason.is_empty() {
                String::new()
            } else {
                format!(": {}", p.reason)
            }
        );
    }
    Ok(())
}
