//! Files other tools put in the cache (`hf download`, `transformers`) come with no word on
//! whether their repo is public, so they start out fleet-only. This task asks the Hub
//! anonymously, once per repo, as anyone on the internet could: a repo that answers and is
//! neither private nor gated makes its files public (served and announced to everyone);
//! any refusal makes them private for good. Unreachable Hubs are asked again later.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use xet::XetHash;
use xet::remote::{HubClient, RemoteError, RepoRef};

use super::Index;

/// How often the index is looked over for files nobody vouched for (the first look comes
/// after [`FIRST_PASS`], once the start-up scan has had a moment).
const PASS: Duration = Duration::from_secs(10);
const FIRST_PASS: Duration = Duration::from_secs(1);
/// How long to wait before asking again about a repo whose answer did not arrive.
const RETRY: Duration = Duration::from_secs(10 * 60);

/// What the Hub said about a repo, asked without a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    Public,
    Restricted,
}

/// The repo folders (`models--org--name`) that hold `path`, a file of `cache_dir`: its own
/// folder for a repo blob; for an entry of the shared blob store, every folder its `.refs`
/// manifest lists.
pub fn repo_folders(cache_dir: &Path, path: &Path) -> Vec<String> {
    let Ok(rel) = path.strip_prefix(cache_dir) else {
        return Vec::new();
    };
    let first = |p: &Path| {
        p.components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .map(str::to_string)
    };
    match first(rel) {
        Some(top) if top == "blobs" => {
            let mut refs = path.as_os_str().to_owned();
            refs.push(".refs");
            let text = std::fs::read_to_string(PathBuf::from(refs)).unwrap_or_default();
            let mut v: Vec<String> = text
                .lines()
                .filter_map(|l| first(Path::new(l.trim())))
                .collect();
            v.sort();
            v.dedup();
            v
        }
        Some(top) => vec![top],
        None => Vec::new(),
    }
}

/// The anonymous answer, or `None` when there was none (network, server trouble).
pub async fn ask(hub: &HubClient, repo: &RepoRef) -> Option<Answer> {
    match hub.repo_info(repo, "main").await {
        Ok(info) if info.restricted() => Some(Answer::Restricted),
        Ok(_) => Some(Answer::Public),
        Err(
            RemoteError::RepoNotFound { .. }
            | RemoteError::AuthRequired { .. }
            | RemoteError::AuthDenied { .. }
            | RemoteError::Gated { .. },
        ) => Some(Answer::Restricted),
        Err(e) => {
            tracing::debug!(%repo, "cannot tell whether the repo is public yet: {e}");
            None
        }
    }
}

/// Looks over the index every [`PASS`] and settles what it can; runs until the daemon exits.
pub fn spawn(index: Index, cache_dir: PathBuf, endpoint: String) {
    let hub = match HubClient::new(&endpoint, None) {
        Ok(h) => h.with_observer(crate::metrics::events::origin_observer()),
        Err(e) => {
            tracing::warn!("cannot check which cached repos are public: {e}");
            return;
        }
    };
    tokio::spawn(async move {
        // Answers, kept for the daemon's life: files that land later in a repo already
        // asked about are settled without asking again.
        let mut answers: HashMap<String, Answer> = HashMap::new();
        let mut unanswered: HashMap<String, Instant> = HashMap::new();
        let mut wait = FIRST_PASS;
        loop {
            tokio::time::sleep(wait).await;
            wait = PASS;
            let idx = index.clone();
            let cache = cache_dir.clone();
            let Ok(holders) =
                tokio::task::spawn_blocking(move || unknown_files(&idx, &cache)).await
            else {
                continue;
            };
            let mut folders: Vec<&String> = holders.values().flatten().collect();
            folders.sort();
            folders.dedup();
            for folder in folders {
                if answers.contains_key(folder)
                    || unanswered.get(folder).is_some_and(|t| t.elapsed() < RETRY)
                {
                    continue;
                }
                // Folders that name no repo (odd names) keep their files fleet-only.
                let answer = match RepoRef::from_cache_folder(folder) {
                    Some(repo) => ask(&hub, &repo).await,
                    None => Some(Answer::Restricted),
                };
                match answer {
                    Some(a) => {
                        tracing::info!(
                            repo = folder,
                            public = a == Answer::Public,
                            "the Hub says who may read what another tool cached"
                        );
                        unanswered.remove(folder);
                        answers.insert(folder.clone(), a);
                    }
                    None => {
                        unanswered.insert(folder.clone(), Instant::now());
                    }
                }
            }
            for (h, held_in) in holders {
                if let Some(private) = decide(&held_in, &answers)
                    && let Err(e) = index.note_visibility(&h, private)
                {
                    tracing::warn!("recording visibility: {e}");
                }
            }
        }
    });
}

/// Whether a file held in these repo folders is private: public as soon as one of them is
/// (public wins), private once every one has refused (or there is none to ask), undecided
/// while any is unanswered.
fn decide(held_in: &[String], answers: &HashMap<String, Answer>) -> Option<bool> {
    let mut undecided = false;
    for f in held_in {
        match answers.get(f) {
            Some(Answer::Public) => return Some(false),
            Some(Answer::Restricted) => {}
            None => undecided = true,
        }
    }
    (!undecided).then_some(true)
}

/// Files nobody vouched for, and the repo folders holding each.
fn unknown_files(index: &Index, cache_dir: &Path) -> HashMap<XetHash, Vec<String>> {
    let mut out = HashMap::new();
    for (h, _) in index.files() {
        if index.visibility_known(&h) {
            continue;
        }
        let mut folders: Vec<String> = index
            .paths_of(&h)
            .iter()
            .flat_map(|p| repo_folders(cache_dir, p))
            .collect();
        folders.sort();
        folders.dedup();
        out.insert(h, folders);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_folders_come_from_the_path_or_the_shared_store_manifest() {
        let dir = std::env::temp_dir().join(format!("zest-vis-{}", std::process::id()));
        let entry = dir.join("blobs/ab/ab12");
        std::fs::create_dir_all(entry.parent().unwrap()).unwrap();
        std::fs::write(
            dir.join("blobs/ab/ab12.refs"),
            "models--a--b/blobs/e1\ndatasets--c/blobs/e2\nmodels--a--b/blobs/e3\n",
        )
        .unwrap();
        assert_eq!(
            repo_folders(&dir, &entry),
            ["datasets--c".to_string(), "models--a--b".to_string()]
        );
        assert_eq!(
            repo_folders(&dir, &dir.join("models--x--y/blobs/0123")),
            ["models--x--y".to_string()]
        );
        assert!(repo_folders(&dir, Path::new("/elsewhere/f")).is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn public_wins_and_private_waits_for_every_repo() {
        let answers: HashMap<String, Answer> = [
            ("models--a--pub".to_string(), Answer::Public),
            ("models--a--priv".to_string(), Answer::Restricted),
        ]
        .into();
        let f = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            decide(&f(&["models--a--priv", "models--a--pub"]), &answers),
            Some(false)
        );
        assert_eq!(decide(&f(&["models--a--priv"]), &answers), Some(true));
        assert_eq!(
            decide(&f(&["models--a--priv", "models--a--later"]), &answers),
            None
        );
        assert_eq!(
            decide(&[], &answers),
            Some(true),
            "nothing to ask: fleet-only"
        );
    }
}
