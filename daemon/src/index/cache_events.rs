//! Hears that something in the cache may have changed, for `watch` to reconcile the index.
//!
//! On Linux this listens to inotify itself rather than through `notify`, whose fixed mask
//! includes `IN_MODIFY`: with it every chunk zestd writes into a download in progress (16,000
//! writes per GiB) queued an event, woke the watcher's thread and built an event for a file
//! the index skips anyway, about a tenth of zestd's CPU in a cold pull. Files appear in the
//! cache by a rename or a create, change by a write that ends in a close, and go by a delete
//! or a rename away, so those are what is asked for. Everything else keeps `notify`.

use std::path::Path;

use tokio::sync::mpsc::UnboundedSender;

/// Keeps the watch alive; dropping it stops it.
pub struct CacheEvents {
    #[cfg(target_os = "linux")]
    _task: AbortOnDrop,
    #[cfg(not(target_os = "linux"))]
    _watcher: notify::RecommendedWatcher,
}

/// Files that are never indexed: downloads in progress, journals, locks.
pub fn is_scratch(name: &std::ffi::OsStr) -> bool {
    let name = name.to_string_lossy();
    name.ends_with(".incomplete") || name.ends_with(".journal") || name.ends_with(".lock")
}

/// Sends `()` on `tx` after anything under `dir` (but scratch files) may have changed.
/// Must be called inside a tokio runtime.
pub fn watch(dir: &Path, tx: UnboundedSender<()>) -> std::io::Result<CacheEvents> {
    imp::watch(dir, tx)
}

#[cfg(target_os = "linux")]
struct AbortOnDrop(tokio::task::AbortHandle);

#[cfg(target_os = "linux")]
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};

    use futures_util::StreamExt;
    use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};
    use tokio::sync::mpsc::UnboundedSender;

    use super::{AbortOnDrop, CacheEvents, is_scratch};

    fn mask() -> WatchMask {
        WatchMask::CREATE
            | WatchMask::DELETE
            | WatchMask::CLOSE_WRITE
            | WatchMask::MOVED_FROM
            | WatchMask::MOVED_TO
            | WatchMask::ATTRIB
            | WatchMask::DELETE_SELF
            | WatchMask::MOVE_SELF
            | WatchMask::ONLYDIR
            | WatchMask::DONT_FOLLOW
    }

    /// Watches `dir` and every directory below it (symlinks are not followed: the cache's
    /// links point at files, and a linked directory is somebody else's tree).
    fn add_tree(watches: &mut Watches, dirs: &mut HashMap<WatchDescriptor, PathBuf>, dir: &Path) {
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            match watches.add(&d, mask()) {
                Ok(wd) => {
                    dirs.insert(wd, d.clone());
                }
                // Gone already, or not a directory: nothing to watch there.
                Err(e) => {
                    tracing::debug!("not watching {}: {e}", d.display());
                    continue;
                }
            }
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
    }

    pub fn watch(dir: &Path, tx: UnboundedSender<()>) -> std::io::Result<CacheEvents> {
        let inotify = Inotify::init()?;
        let mut watches = inotify.watches();
        let mut dirs = HashMap::new();
        // The root must be watched; below it, whatever can be.
        let root = watches.add(dir, mask())?;
        dirs.insert(root, dir.to_path_buf());
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    add_tree(&mut watches, &mut dirs, &e.path());
                }
            }
        }
        let mut stream = inotify.into_event_stream([0u8; 8192])?;
        let task = tokio::spawn(async move {
            while let Some(ev) = stream.next().await {
                let ev = match ev {
                    Ok(ev) => ev,
                    Err(e) => {
                        tracing::warn!("cache watch ended: {e}");
                        let _ = tx.send(());
                        return;
                    }
                };
                if ev.mask.contains(EventMask::Q_OVERFLOW) {
                    // Events were lost: a full reconcile finds whatever they said.
                    if tx.send(()).is_err() {
                        return;
                    }
                    continue;
                }
                if ev.mask.contains(EventMask::IGNORED) {
                    dirs.remove(&ev.wd);
                    continue;
                }
                let Some(name) = ev.name.as_deref() else {
                    // The watched directory itself moved or went.
                    if tx.send(()).is_err() {
                        return;
                    }
                    continue;
                };
                if ev.mask.contains(EventMask::ISDIR)
                    && ev.mask.intersects(EventMask::CREATE | EventMask::MOVED_TO)
                    && let Some(parent) = dirs.get(&ev.wd)
                {
                    let path = parent.join(name);
                    add_tree(&mut watches, &mut dirs, &path);
                } else if is_scratch(name) {
                    continue;
                }
                if tx.send(()).is_err() {
                    return;
                }
            }
        });
        Ok(CacheEvents {
            _task: AbortOnDrop(task.abort_handle()),
        })
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::path::Path;

    use notify::{RecursiveMode, Watcher};
    use tokio::sync::mpsc::UnboundedSender;

    use super::{CacheEvents, is_scratch};

    pub fn watch(dir: &Path, tx: UnboundedSender<()>) -> std::io::Result<CacheEvents> {
        let mut w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if let Ok(ev) = res
                && !ev.kind.is_access()
                && !ev
                    .paths
                    .iter()
                    .all(|p| p.file_name().is_some_and(is_scratch))
            {
                let _ = tx.send(());
            }
        })
        .map_err(std::io::Error::other)?;
        w.watch(dir, RecursiveMode::Recursive)
            .map_err(std::io::Error::other)?;
        Ok(CacheEvents { _watcher: w })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn heard(rx: &mut tokio::sync::mpsc::UnboundedReceiver<()>) -> bool {
        let got = tokio::time::timeout(Duration::from_millis(500), rx.recv())
            .await
            .is_ok();
        while rx.try_recv().is_ok() {}
        got
    }

    #[tokio::test]
    async fn hears_files_appear_change_and_go_but_not_writes_into_scratch() {
        let dir = std::env::temp_dir().join(format!(
            "zest-cache-events-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let blobs = dir.join("models--a--b").join("blobs");
        std::fs::create_dir_all(&blobs).unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let _w = watch(&dir, tx).unwrap();

        // A download in progress: created (one event), written many times (none), renamed in.
        let partial = blobs.join("abc.zest.incomplete");
        let f = std::fs::File::create(&partial).unwrap();
        assert!(
            !heard(&mut rx).await,
            "creating a scratch file is not a change"
        );
        use std::os::unix::fs::FileExt;
        for i in 0..100u64 {
            f.write_all_at(&[1; 4096], i * 4096).unwrap();
        }
        assert!(
            !heard(&mut rx).await,
            "writes into a scratch file are not changes"
        );
        drop(f);
        std::fs::rename(&partial, blobs.join("abc")).unwrap();
        assert!(heard(&mut rx).await, "a file renamed into the cache");

        // Rewritten in place by another tool, then removed.
        std::fs::write(blobs.join("abc"), b"other").unwrap();
        assert!(heard(&mut rx).await, "a file rewritten in place");
        std::fs::remove_file(blobs.join("abc")).unwrap();
        assert!(heard(&mut rx).await, "a file removed");

        // A directory that appears later is watched too, and so is one inside it.
        let snap = dir.join("models--c--d").join("snapshots").join("r1");
        std::fs::create_dir_all(&snap).unwrap();
        assert!(heard(&mut rx).await, "a new repo folder");
        tokio::time::sleep(Duration::from_millis(50)).await;
        std::fs::write(snap.join("config.json"), b"{}").unwrap();
        assert!(
            heard(&mut rx).await,
            "a file in a directory created after the watch began"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
