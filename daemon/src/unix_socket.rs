//! Binding a private Unix socket (the control socket, hf_xet's socket door): mode 0600 in a
//! 0700 folder created for it, so nobody else can reach it between bind and chmod. A stale
//! socket from a crash is replaced; a live one (another zestd answers on it), or anything
//! that is not a socket, is left alone and binding fails with what is in the way.

use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result, bail};
use tokio::net::UnixListener;

pub async fn bind_private(path: &Path) -> Result<UnixListener> {
    if let Some(parent) = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty() && !p.exists())
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            bail!(
                "{} exists and is not a socket; not touching it",
                path.display()
            );
        }
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            bail!("another zestd is already listening on {}", path.display());
        }
        std::fs::remove_file(path)
            .with_context(|| format!("removing stale socket {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("setting the mode of {}", path.display()))?;
    Ok(listener)
}
