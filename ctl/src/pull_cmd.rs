//! `zestctl pull`: asks zestd for a repo and follows the pull until it ends.

use std::io::IsTerminal;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use zest_proto::v1::pull_event::Event;
use zest_proto::v1::{PullProgress, PullRequest};

use crate::daemon_client;

pub struct PullArgs {
    pub repo: String,
    pub revision: Option<String>,
    pub repo_type: String,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub allow_stale_refs: bool,
}

/// Exit code 0 with the snapshot path as the last stdout line, or an error.
pub fn run(socket: &Path, args: PullArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(pull(socket, args))
}

async fn pull(socket: &Path, args: PullArgs) -> Result<()> {
    let mut client = daemon_client::connect(socket).await?;
    let request = PullRequest {
        repo_id: args.repo.clone(),
        repo_type: args.repo_type,
        revision: args.revision.unwrap_or_default(),
        include: args.include,
        exclude: args.exclude,
        // Forwarded for this pull only; zestd neither stores nor logs it.
        token: xet::remote::token::user_token().unwrap_or_default(),
        endpoint: std::env::var("HF_ENDPOINT")
            .ok()
            .map(|e| e.trim_end_matches('/').to_string())
            .unwrap_or_default(),
        allow_stale_refs: args.allow_stale_refs,
    };
    let mut stream = match client.pull(request).await {
        Ok(s) => s.into_inner(),
        Err(status) => bail!("{}", status.message()),
    };
    let mut view = ProgressView::new(&args.repo);
    loop {
        let msg = match stream.message().await {
            Ok(Some(m)) => m,
            Ok(None) => {
                view.finish();
                bail!(
                    "zestd closed the stream before the pull ended (did it stop?); run the same command again to resume"
                )
            }
            Err(status) => {
                view.finish();
                bail!(
                    "lost zestd: {}; run the same command again to resume",
                    status.message()
                )
            }
        };
        match msg.event {
            Some(Event::Progress(p)) => view.update(&p),
            Some(Event::Done(d)) => {
                view.finish();
                for w in &d.warnings {
                    eprintln!("warning: {w}");
                }
                eprintln!(
                    "pulled {} files, {} in {:.1}s (origin {}, peers {}, local {})",
                    d.files,
                    human(d.bytes),
                    d.seconds,
                    human(d.bytes_from_origin),
                    human(d.bytes_from_peers),
                    human(d.bytes_from_local)
                );
                println!("{}", d.snapshot_path);
                return Ok(());
            }
            Some(Event::Failed(f)) => {
                view.finish();
                bail!("{}", f.message)
            }
            None => {}
        }
    }
}

/// A progress bar on a terminal; otherwise a plain line every few seconds, on stderr so
/// stdout carries only the result.
enum ProgressView {
    Bar(ProgressBar),
    Lines { last: Option<Instant>, repo: String },
}

impl ProgressView {
    fn new(repo: &str) -> Self {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg:30!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_message(repo.to_string());
            bar.enable_steady_tick(Duration::from_millis(200));
            ProgressView::Bar(bar)
        } else {
            ProgressView::Lines {
                last: None,
                repo: repo.to_string(),
            }
        }
    }

    fn update(&mut self, p: &PullProgress) {
        match self {
            ProgressView::Bar(bar) => {
                bar.set_length(p.bytes_total);
                bar.set_position(p.bytes_done);
                bar.set_message(format!(
                    "{} {}/{} files",
                    p.phase, p.files_done, p.files_total
                ));
            }
            ProgressView::Lines { last, repo } => {
                if last.is_some_and(|t| t.elapsed() < Duration::from_secs(2)) {
                    return;
                }
                *last = Some(Instant::now());
                eprintln!(
                    "{repo}: {} {}/{} files, {}/{}",
                    p.phase,
                    p.files_done,
                    p.files_total,
                    human(p.bytes_done),
                    human(p.bytes_total)
                );
            }
        }
    }

    fn finish(&self) {
        if let ProgressView::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

pub fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
