//! zestctl: the small command line in front of zestd.

mod daemon_client;
mod hash_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "zestctl",
    version,
    about = "zest: peer-to-peer acceleration for Hugging Face downloads"
)]
struct Cli {
    /// zestd's control socket [default: $XDG_RUNTIME_DIR/zest/zestd.sock, else <HF cache>/.zest/zestd.sock]
    #[arg(long, global = true)]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Compute Xet file hashes locally (no daemon needed).
    ///
    /// Prints one line per file: `<xet hash> <size> <path>`.
    Hash {
        /// Print a JSON array instead of lines.
        #[arg(long)]
        json: bool,
        /// Files to hash.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Show the daemon's state and transfer totals.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Hash { json, files } => hash_cmd::run(&files, json),
        Command::Status { json } => {
            let socket = cli.socket.unwrap_or_else(zest_proto::paths::default_socket);
            report(status(&socket, json))
        }
    }
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("zestctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn status(socket: &std::path::Path, json: bool) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let reply = rt.block_on(async {
        let mut client = daemon_client::connect(socket).await?;
        let reply = client.status(zest_proto::v1::StatusRequest {}).await?;
        anyhow::Ok(reply.into_inner())
    })?;
    if json {
        let v = serde_json::json!({
            "version": reply.version,
            "pid": reply.pid,
            "cache_dir": reply.cache_dir,
            "bytes_from_origin": reply.bytes_from_origin,
            "bytes_from_peers": reply.bytes_from_peers,
            "bytes_from_local": reply.bytes_from_local,
            "bytes_served": reply.bytes_served,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("zestd {} (pid {})", reply.version, reply.pid);
        println!("cache:        {}", reply.cache_dir);
        println!("from origin:  {} bytes", reply.bytes_from_origin);
        println!("from peers:   {} bytes", reply.bytes_from_peers);
        println!("from local:   {} bytes", reply.bytes_from_local);
        println!("served:       {} bytes", reply.bytes_served);
    }
    Ok(())
}
