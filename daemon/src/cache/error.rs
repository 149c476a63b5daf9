//! Why writing the cache failed: a name from the Hub that cannot be a path here, or the
//! filesystem refusing a step (which step, which path, and the OS error).

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A repo path or revision name that would not stay inside its folder.
    #[error("{0}")]
    BadName(String),
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a regular file", .0.display())]
    NotAFile(PathBuf),
    /// A blob moved into the shared store could not be put back in its repo.
    #[error("restoring {}: {source}", blob.display())]
    Restore {
        blob: PathBuf,
        #[source]
        source: Box<CacheError>,
    },
}

impl CacheError {
    /// The OS error underneath, if the filesystem refused.
    pub fn io(&self) -> Option<&std::io::Error> {
        match self {
            CacheError::Io { source, .. } => Some(source),
            CacheError::Restore { source, .. } => source.io(),
            _ => None,
        }
    }
}

pub type Result<T, E = CacheError> = std::result::Result<T, E>;

/// Names the step and the path an I/O error happened at.
pub trait At<T> {
    fn at(self, what: &'static str, path: &Path) -> Result<T>;
}

impl<T> At<T> for std::io::Result<T> {
    fn at(self, what: &'static str, path: &Path) -> Result<T> {
        self.map_err(|source| CacheError::Io {
            what,
            path: path.to_path_buf(),
            source,
        })
    }
}
