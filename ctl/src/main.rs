//! zestctl: the small command line in front of zestd.

mod cancel_cmd;
mod daemon_client;
mod hash_cmd;
mod pull_cmd;
mod status_cmd;

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
        /// While the Hub cannot answer, take a branch or tag as the commit a fleet member saw
        /// it point at last (zestd warns how old that is) [default: fail, as without zest]
        #[arg(long)]
        allow_stale_refs: bool,
    },
    /// Stop a running pull: by its id (see `zestctl status`) or every pull of a repo.
    ///
    /// Verified data is kept: pulling again picks up where it stopped.
    Cancel {
        /// A pull id, or `namespace/name`
        target: String,
        /// With a repo: only its pulls of this type (model or dataset)
        #[arg(long)]
        repo_type: Option<String>,
    },
    /// Show the daemon's state, transfer totals and connected peers.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List every peer the daemon knows, with rates and state (connected, choked, banned, ...).
    Peers {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show or change the daemon's bandwidth caps, at once, while it runs.
    Limits {
        /// What peers may take from this node per second: `20MiB`, `100MB`, `400Mbit`, or `off`
        #[arg(long, value_name = "RATE")]
        upload: Option<String>,
        /// What this node may take from peers and the origin together per second, or `off`
        #[arg(long, value_name = "RATE")]
        download: Option<String>,
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
            allow_stale_refs,
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
                    allow_stale_refs,
                },
            ))
        }
        Command::Cancel { target, repo_type } => {
            let socket = cli.socket.unwrap_or_else(zest_proto::paths::default_socket);
            report(cancel_cmd::run(&socket, target, repo_type))
        }
        Command::Status { json } => {
            let socket = cli.socket.unwrap_or_else(zest_proto::paths::default_socket);
            report(status_cmd::status(&socket, json))
        }
        Command::Peers { json } => {
            let socket = cli.socket.unwrap_or_else(zest_proto::paths::default_socket);
            report(status_cmd::peers(&socket, json))
        }
        Command::Limits {
            upload,
            download,
            json,
        } => {
            let socket = cli.socket.unwrap_or_else(zest_proto::paths::default_socket);
            report(status_cmd::limits(&socket, upload, download, json))
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
