//! One pull: a repo at a revision, filtered, into the cache.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_util::StreamExt;
use xet::XetHash;
use xet::remote::{CasClient, HubClient, RepoRef, TreeEntry};

use super::error::{Kind, PullError};
use super::filter::Filter;
use super::hub_answers::HubAnswers;
use super::progress::PullCounters;
use super::{Engine, FILE_CONCURRENCY, plain_file, xet_file};
use crate::cache::layout::random_hex8;
use crate::cache::lock;
use crate::cache::shared_store::SharedStore;
use crate::cache::tree_json::TreeCacheEntry;
use crate::cache::{RepoCache, safe_relative_path};

#[derive(Clone, Debug)]
pub struct PullSpec {
    pub repo: RepoRef,
    pub revision: String,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub endpoint: String,
    /// While the Hub cannot answer, a branch may resolve to the commit the fleet saw last.
    pub allow_stale_refs: bool,
}

pub struct PullOutcome {
    pub snapshot: PathBuf,
    pub commit: String,
    pub files: u32,
    pub bytes: u64,
    /// What the user must hear even though the pull succeeded.
    pub warnings: Vec<String>,
}

pub fn is_commit_hash(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A file to fetch, with what the tree listing says about it.
struct FileTask {
    entry: TreeEntry,
    rel: PathBuf,
    etag: String,
    xet: Option<XetHash>,
}

pub async fn run(
    engine: &Engine,
    spec: &PullSpec,
    token: Option<String>,
    counters: &Arc<PullCounters>,
) -> Result<PullOutcome, PullError> {
    let had_token = token.is_some();
    let hub = HubClient::new(&spec.endpoint, token)?
        .with_observer(crate::metrics::events::origin_observer())
        .with_pace(crate::rate::download_pace(engine.limits.clone()));
    counters.set_phase("listing");
    // Fleet members asking this node for the repo's Hub answers wait for them (hubmeta::share).
    let _expecting = engine.hub_meta.as_ref().map(|m| {
        m.sharing
            .expect(vec![crate::hubmeta::share::Expect::Repo(spec.repo.clone())])
    });
    let answers = HubAnswers {
        hub: &hub,
        meta: engine.hub_meta.as_ref(),
        allow_stale_refs: spec.allow_stale_refs || engine.allow_stale_refs,
    };
    let resolved = answers
        .resolve(&spec.repo, &spec.revision, had_token)
        .await?;
    let commit = resolved.commit;
    if !is_commit_hash(&commit) {
        return Err(PullError::new(
            Kind::Invalid,
            format!("the Hub answered a malformed commit id {commit:?}"),
        ));
    }
    if let Ok(mut c) = counters.commit.lock() {
        *c = commit.clone();
    }
    let (listing, private) = answers
        .tree(&spec.repo, &commit, resolved.private, had_token)
        .await?;
    // Private or gated content never leaves the fleet (docs/PROTOCOL.md, "Fleets"). A pull
    // that worked without a token is public by construction.
    tracing::debug!(repo = %spec.repo, private, "repo visibility");
    let warnings: Vec<String> = resolved.warning.into_iter().collect();

    let rc = RepoCache::new(&engine.cache_dir, spec.repo.cache_folder_name());
    rc.ensure_dirs()?;

    let xet_hashes_valid = listing.iter().all(|f| {
        f.xet_hash
            .as_deref()
            .is_none_or(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
    });
    if xet_hashes_valid {
        let mut entries: Vec<TreeCacheEntry<'_>> = listing
            .iter()
            .map(|f| TreeCacheEntry {
                path: &f.path,
                size: f.size,
                blob_id: &f.oid,
                lfs: f.lfs.as_ref().map(|l| (l.oid.as_str(), l.size)),
                xet_hash: f.xet_hash.as_deref(),
            })
            .collect();
        rc.write_tree_cache(&commit, &mut entries)
            .map_err(|e| PullError::from(e).context("writing the tree listing"))?;
    }

    let filter = Filter::new(&spec.include, &spec.exclude);
    let mut tasks = Vec::new();
    for entry in listing.into_iter().filter(|f| filter.accepts(&f.path)) {
        let rel = safe_relative_path(&entry.path).map_err(|e| {
            PullError::new(
                Kind::Invalid,
                format!("refusing a file the repo lists: {e}"),
            )
        })?;
        let etag = entry
            .lfs
            .as_ref()
            .map(|l| l.oid.clone())
            .unwrap_or_else(|| entry.oid.clone());
        if !valid_etag(&etag) {
            return Err(PullError::new(
                Kind::Invalid,
                format!("{}: malformed blob id {etag:?}", entry.path),
            ));
        }
        let xet = match &entry.xet_hash {
            Some(h) => Some(
                h.parse::<XetHash>()
                    .map_err(|e| PullError::new(Kind::Invalid, format!("{}: {e}", entry.path)))?,
            ),
            None => None,
        };
        tasks.push(FileTask {
            entry,
            rel,
            etag,
            xet,
        });
    }
    // Paths that cannot all be linked are refused before anything is written.
    let rels: Vec<PathBuf> = tasks.iter().map(|t| t.rel.clone()).collect();
    crate::cache::snapshot_paths::check(&rels).map_err(|e| {
        PullError::new(
            Kind::Invalid,
            format!("cannot make this repo's snapshot: {e}"),
        )
    })?;
    for t in &tasks {
        if let Some(h) = &t.xet
            && let Err(e) = engine.index.note_visibility(h, private)
        {
            tracing::warn!("cannot record {}'s visibility: {e}", t.entry.path);
        }
    }
    let _expecting_files = engine.hub_meta.as_ref().map(|m| {
        m.sharing.expect(
            tasks
                .iter()
                .filter_map(|t| t.xet.map(crate::hubmeta::share::Expect::File))
                .collect(),
        )
    });
    let _wanted = engine.wanted.want(
        tasks
            .iter()
            .filter_map(|t| {
                let w = super::wanted::WantedFile {
                    size: t.entry.size,
                    private,
                };
                t.xet.map(|h| (h, w))
            })
            .collect(),
    );
    if tasks.is_empty() && (!spec.include.is_empty() || !spec.exclude.is_empty()) {
        tracing::warn!(repo = %spec.repo, "no files matched the include/exclude patterns");
    }
    counters
        .files_total
        .store(tasks.len() as u32, Ordering::Relaxed);
    counters
        .bytes_total
        .store(tasks.iter().map(|t| t.entry.size).sum(), Ordering::Relaxed);
    counters.set_phase("downloading");

    let refresh_route = format!(
        "{}/api/{}/{}/xet-read-token/{commit}",
        hub.endpoint(),
        spec.repo.repo_type.plural(),
        spec.repo.id
    );
    let cas = Arc::new(CasClient::new(
        hub.clone(),
        spec.repo.clone(),
        refresh_route,
    ));
    // Collected first so the futures' lifetimes are concrete (a closure in `map` over a
    // stream trips the compiler's higher-ranked lifetime inference when spawned).
    let ctx = PullCtx {
        engine,
        answers: &answers,
        hub: &hub,
        cas: &cas,
        rc: &rc,
        spec,
        commit: &commit,
        counters,
        private,
    };
    let futures: Vec<_> = tasks.iter().map(|t| fetch_tracked(&ctx, t)).collect();
    let results: Vec<Result<(), PullError>> = futures_util::stream::iter(futures)
        .buffer_unordered(FILE_CONCURRENCY)
        .collect()
        .await;
    if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
        return Err(e);
    }

    // Only now does the snapshot show the files: all of them, each complete, or none that
    // this pull added; and only then does the ref point at it.
    counters.set_phase("linking");
    link_all(&rc, &commit, &tasks)?;
    let snapshot = rc.snapshot(&commit);
    std::fs::create_dir_all(&snapshot)
        .map_err(|e| PullError::disk("creating the snapshot folder", &e))?;
    rc.write_ref(&spec.revision, &commit)
        .map_err(|e| PullError::from(e).context(&format!("writing refs/{}", spec.revision)))?;
    Ok(PullOutcome {
        snapshot,
        commit,
        files: tasks.len() as u32,
        bytes: tasks.iter().map(|t| t.entry.size).sum(),
        warnings,
    })
}

/// Links every task's pointer; if one fails, removes the pointers and folders this call
/// made, so the snapshot is as it was.
fn link_all(rc: &RepoCache, commit: &str, tasks: &[FileTask]) -> Result<(), PullError> {
    let snapshot = rc.snapshot(commit);
    let mut made: Vec<PathBuf> = Vec::new();
    for t in tasks {
        let pointer = rc.pointer(commit, &t.rel);
        // The folders this link will create, outermost first.
        let mut new_dirs: Vec<PathBuf> = pointer
            .ancestors()
            .skip(1)
            .take_while(|d| d.starts_with(&snapshot) && !d.exists())
            .map(Path::to_path_buf)
            .collect();
        new_dirs.reverse();
        let existed = std::fs::symlink_metadata(&pointer).is_ok();
        if let Err(e) = rc.link_pointer(commit, &t.rel, &t.etag) {
            for p in made.iter().rev() {
                let _ = std::fs::remove_file(p).or_else(|_| std::fs::remove_dir(p));
            }
            for d in new_dirs.iter().rev() {
                let _ = std::fs::remove_dir(d);
            }
            return Err(PullError::from(e).context(&format!("linking {}", t.entry.path)));
        }
        made.extend(new_dirs);
        if !existed {
            made.push(pointer);
        }
    }
    Ok(())
}

/// What every file of one pull shares.
struct PullCtx<'a> {
    engine: &'a Engine,
    answers: &'a HubAnswers<'a>,
    hub: &'a HubClient,
    cas: &'a Arc<CasClient>,
    rc: &'a RepoCache,
    spec: &'a PullSpec,
    commit: &'a str,
    counters: &'a Arc<PullCounters>,
    private: bool,
}

async fn fetch_tracked(ctx: &PullCtx<'_>, t: &FileTask) -> Result<(), PullError> {
    ctx.counters.start_file(&t.entry.path);
    let r = fetch_file(ctx, t)
        .await
        .map_err(|e| e.on_disk_of(&ctx.rc.storage()).context(&t.entry.path));
    ctx.counters.finish_file(&t.entry.path);
    r
}

fn valid_etag(e: &str) -> bool {
    !e.is_empty() && e.len() <= 128 && e.bytes().all(|b| b.is_ascii_alphanumeric())
}

async fn fetch_file(ctx: &PullCtx<'_>, t: &FileTask) -> Result<(), PullError> {
    let PullCtx {
        engine,
        answers,
        hub,
        cas,
        rc,
        spec,
        commit,
        counters,
        private,
    } = *ctx;
    let size = t.entry.size;
    let local = |counters: &PullCounters| {
        counters.bytes_done.fetch_add(size, Ordering::Relaxed);
        counters.add_local(size);
    };
    // A file already in the snapshot is done, as huggingface_hub sees it; unless zest found
    // it wrong while serving it, and it has not changed since: then it is downloaded again.
    let pointer = rc.pointer(commit, &t.rel);
    let found_wrong = engine.index.found_wrong(&pointer);
    if found_wrong {
        tracing::warn!(path = %pointer.display(), "the cached copy was found corrupt; downloading it again");
    }
    if pointer.exists() && !found_wrong {
        if let Some(h) = &t.xet
            && SharedStore::enabled()
            && let Err(e) = SharedStore::new(&engine.cache_dir)
                .ensure_listed(&rc.blob(&t.etag), &h.to_string())
                .await
        {
            tracing::debug!(path = %t.entry.path, "cannot check the shared store's manifest: {e}");
        }
        local(counters);
        return Ok(());
    }
    rc.write_cachedir_tag();
    let _lock = lock::lock(&rc.lock_path(&t.etag), 0o664)
        .await
        .map_err(|e| PullError::disk("taking the download lock", &e))?;
    let blob = rc.blob(&t.etag);
    if blob.exists() && !engine.index.found_wrong(&blob) {
        local(counters);
        return Ok(());
    }
    let store = SharedStore::new(&engine.cache_dir);
    let use_store = SharedStore::enabled();
    let blobs_dir = rc.storage().join("blobs");
    match t.xet {
        Some(xet_hash) => {
            let hash_str = xet_hash.to_string();
            if use_store
                && store.has(&hash_str, size)
                && !engine.index.found_wrong(&store.entry(&hash_str))
                && store.link_existing(&blob, &hash_str, size).await?
            {
                local(counters);
                return Ok(());
            }
            let job = super::file_checks::XetFileJob {
                xet_hash,
                size,
                partial: blobs_dir.join(format!("{}.zest.incomplete", t.etag)),
                journal: blobs_dir.join(format!("{}.zest.journal", t.etag)),
                name: t.entry.path.clone(),
                private,
                for_client: false,
            };
            let done = xet_file::download(engine, cas, &job, counters).await?;
            let mode = rc.new_file_mode(&blobs_dir);
            set_mode(&job.partial, mode)?;
            std::fs::rename(&job.partial, &blob)
                .map_err(|e| PullError::disk("moving the download into place", &e))?;
            let _ = std::fs::remove_file(&job.journal);
            if use_store {
                // A store entry zest found corrupt is replaced by this verified copy (in one
                // rename: the repos linking to it see the old file or the new, never none).
                let replace = engine.index.found_wrong(&store.entry(&hash_str));
                store.publish(&blob, &hash_str, size, replace).await?;
            }
            crate::index::scan::record_pulled(&engine.index, &blob, xet_hash, &done.chunks);
            drop(done.serving);
        }
        None => {
            let tmp = blobs_dir.join(format!("{}.{}.incomplete", t.etag, random_hex8()));
            let job = plain_file::PlainJob {
                repo: &spec.repo,
                commit,
                path: &t.entry.path,
                size,
                blob_id: &t.entry.oid,
                lfs_sha256: t.entry.lfs.as_ref().map(|l| l.oid.as_str()),
            };
            // Members asking for this file wait for it until it is in place.
            let _in_flight = answers.in_flight(&crate::hubmeta::Query::Blob {
                repo: spec.repo.clone(),
                blob_id: t.etag.clone(),
            });
            // From the Hub, or a fleet member's copy when the Hub is down or slow.
            let r = if answers.hub_known_down()
                && let Some(body) = answers.blob(&spec.repo, &t.etag).await
            {
                write_fleet_blob(t, &body, &tmp, counters)
            } else {
                let from_hub = plain_file::download(hub, &job, &tmp, counters);
                match answers.race_blob(&spec.repo, &t.etag, from_hub).await {
                    Ok(None) => Ok(()),
                    Ok(Some(body)) => write_fleet_blob(t, &body, &tmp, counters),
                    Err(e) => Err(e),
                }
            };
            if let Err(e) = r {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
            let mode = rc.new_file_mode(&blobs_dir);
            set_mode(&tmp, mode)?;
            if let Err(e) = std::fs::rename(&tmp, &blob) {
                let _ = std::fs::remove_file(&tmp);
                return Err(PullError::disk("moving the download into place", &e));
            }
        }
    }
    Ok(())
}

/// Writes a git-stored file a fleet member (or this node's cache) gave, already checked
/// against its blob id, where the Hub's download would have gone.
fn write_fleet_blob(
    t: &FileTask,
    body: &[u8],
    tmp: &Path,
    counters: &PullCounters,
) -> Result<(), PullError> {
    if body.len() as u64 != t.entry.size {
        return Err(PullError::integrity(format!(
            "{}: a fleet member's copy has {} bytes, the listing says {}",
            t.entry.path,
            body.len(),
            t.entry.size
        )));
    }
    std::fs::write(tmp, body).map_err(|e| PullError::disk("writing a download", &e))?;
    counters.add_peer(t.entry.size);
    counters
        .bytes_done
        .fetch_add(t.entry.size, Ordering::Relaxed);
    Ok(())
}

fn set_mode(p: &std::path::Path, mode: u32) -> Result<(), PullError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .map_err(|e| PullError::disk("setting file mode", &e))
}
