//! zestctl: the small command line in front of zestd.

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Hash { json, files } => hash_cmd::run(&files, json),
    }
}
