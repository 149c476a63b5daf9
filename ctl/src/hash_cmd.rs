//! `zestctl hash`: Xet file hashes, files in parallel, each streamed.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use rayon::prelude::*;
use serde::Serialize;

#[derive(Serialize)]
struct HashLine {
    path: String,
    hash: String,
    size: u64,
}

pub fn run(files: &[PathBuf], json: bool) -> ExitCode {
    let results: Vec<_> = files
        .par_iter()
        .map(|p| xet::file_hash::hash_path(p))
        .collect();
    let mut ok = Vec::new();
    let mut failed = false;
    let stderr = std::io::stderr();
    for (path, result) in files.iter().zip(results) {
        match result {
            Ok(d) => ok.push((path, d)),
            Err(e) => {
                failed = true;
                let _ = writeln!(stderr.lock(), "zestctl hash: {}: {e}", path.display());
            }
        }
    }
    let mut out = std::io::stdout().lock();
    let written = if json {
        let lines: Vec<HashLine> = ok
            .iter()
            .map(|(p, d)| HashLine {
                path: p.to_string_lossy().into_owned(),
                hash: d.hash.to_string(),
                size: d.size,
            })
            .collect();
        serde_json::to_writer_pretty(&mut out, &lines)
            .map_err(std::io::Error::other)
            .and_then(|()| writeln!(out))
    } else {
        ok.iter()
            .try_for_each(|(p, d)| writeln!(out, "{} {} {}", d.hash, d.size, p.display()))
    };
    if let Err(e) = written.and_then(|()| out.flush()) {
        // A closed pipe (e.g. `| head`) is not worth a second error message.
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            let _ = writeln!(stderr.lock(), "zestctl hash: writing output: {e}");
        }
        return ExitCode::FAILURE;
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
