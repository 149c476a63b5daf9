//! The advisory locks huggingface_hub takes (`filelock.FileLock`: `flock(2)` on a file that
//! stays behind), so zest and huggingface_hub exclude each other.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use rustix::fs::{FlockOperation, flock};

/// Held until dropped; the lock file itself stays, as filelock leaves it.
pub struct FileLock {
    _file: File,
}

/// Takes an exclusive lock on `path`, creating it with `mode` (as filelock does: the mode is
/// set explicitly, ignoring the umask, only when this call creates the file). Waits for
/// another holder, logging every 10 s like huggingface_hub.
pub async fn lock(path: &Path, mode: u32) -> std::io::Result<FileLock> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let path = path.to_path_buf();
    let started = std::time::Instant::now();
    let mut last_log = started;
    loop {
        let file = open_lock_file(&path, mode)?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {
                return Ok(FileLock { _file: file });
            }
            Err(e) if e == rustix::io::Errno::WOULDBLOCK || e == rustix::io::Errno::INTR => {
                if last_log.elapsed() >= Duration::from_secs(10) {
                    tracing::info!(
                        lock = %path.display(),
                        waited_s = started.elapsed().as_secs(),
                        "still waiting for a lock held by another download"
                    );
                    last_log = std::time::Instant::now();
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Takes an exclusive lock on `path` if nobody holds it; None if someone does.
pub fn try_lock(path: &Path, mode: u32) -> std::io::Result<Option<FileLock>> {
    let file = open_lock_file(path, mode)?;
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(FileLock { _file: file })),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn open_lock_file(path: &Path, mode: u32) -> std::io::Result<File> {
    match OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
    {
        Ok(f) => {
            f.set_permissions(std::fs::Permissions::from_mode(mode))?;
            Ok(f)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(path),
        Err(e) => Err(e),
    }
}
