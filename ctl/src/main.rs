//! zestctl: the small command line in front of zestd.

mod daemon_client;
mod hash_cmd;
mod pull_cmd;

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
    /// Download a repo into the Hugging Face cache through zestd.
    ///
    /// Progress goes to stderr; on success the snapshot path is the last line of stdout.
    /// Uses HF_TOKEN (or the token file) and HF_ENDPOINT like huggingface_hub.
    Pull {
        /// `namespace/name`
        repo: String,
        /// Branch, tag or commit [default: main]
        #[arg(long)]
        revision: Option<String>,
        /// model or dataset
        #[arg(long, default_value = "model")]
        repo_type: String,
        /// Only files matching this pattern (fnmatch, as huggingface_hub's allow_patterns); repeatable
        #[arg(long)]
        include: Vec<String>,
        /// Skip files matching this pattern; repeatable
        #[arg(long)]
        exclude: Vec<String>,
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
        Command::Pull {
            repo,
            revision,
            repo_type,
            include,
            exclude,
        } => {
            let socket = cli.socket.unwrap_or_else(zest_proto::paths::default_socket);
            report(pull_cmd::run(
                &socket,
                pull_cmd::PullArgs {
                    repo,
                    revision,
                    repo_type,
                    include,
                    exclude,
                },
            ))
        }
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
    if json {
        let v = serde_json::json!({
            "version": reply.version,
            "pid": reply.pid,
            "cache_dir": reply.cache_dir,
            "state_dir": reply.state_dir,
            "bytes_from_origin": reply.bytes_from_origin,
            "bytes_from_peers": reply.bytes_from_peers,
            "bytes_from_local": reply.bytes_from_local,
            "bytes_served": reply.bytes_served,
            "pulls_completed": reply.pulls_completed,
            "pulls_failed": reply.pulls_failed,
            "pulls": pulls,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        use pull_cmd::human;
        println!("zestd {} (pid {})", reply.version, reply.pid);
        println!("cache:        {}", reply.cache_dir);
        println!("state:        {}", reply.state_dir);
        println!("from origin:  {}", human(reply.bytes_from_origin));
        println!("from peers:   {}", human(reply.bytes_from_peers));
        println!("from local:   {}", human(reply.bytes_from_local));
        println!("served:       {}", human(reply.bytes_served));
        println!(
            "pulls:        {} done, {} failed, {} running",
            reply.pulls_completed,
            reply.pulls_failed,
            reply.pulls.len()
        );
        for p in &reply.pulls {
            println!(
                "  {} @ {}: {} {}/{} files, {}/{}",
                p.repo,
                p.revision,
                p.phase,
                p.files_done,
                p.files_total,
                human(p.bytes_done),
                human(p.bytes_total)
            );
        }
    }
    Ok(())
}
