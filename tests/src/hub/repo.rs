//! What the test hub serves: repos, their commits and files, with the metadata the Hub
//! computes for them (git blob ids, LFS pointers, Xet hashes).

use std::collections::BTreeMap;
use std::path::PathBuf;

use sha1::{Digest as _, Sha1};
use sha2::Sha256;

/// Where a file's bytes live.
#[derive(Clone, Debug)]
pub enum Content {
    Bytes(Vec<u8>),
    /// A file on disk, for content too large to hold in memory.
    Path(PathBuf),
}

impl Content {
    pub fn read(&self) -> std::io::Result<Vec<u8>> {
        match self {
            Content::Bytes(b) => Ok(b.clone()),
            Content::Path(p) => std::fs::read(p),
        }
    }
}

/// A file as a test declares it.
#[derive(Clone, Debug)]
pub struct FileSpec {
    pub path: String,
    pub content: Content,
    /// Stored in Xet (uploaded to the CAS) rather than in git.
    pub xet: bool,
}

impl FileSpec {
    pub fn plain(path: &str, bytes: impl Into<Vec<u8>>) -> Self {
        FileSpec {
            path: path.into(),
            content: Content::Bytes(bytes.into()),
            xet: false,
        }
    }
    pub fn xet(path: &str, bytes: impl Into<Vec<u8>>) -> Self {
        FileSpec {
            path: path.into(),
            content: Content::Bytes(bytes.into()),
            xet: true,
        }
    }
    pub fn xet_file(path: &str, on_disk: PathBuf) -> Self {
        FileSpec {
            path: path.into(),
            content: Content::Path(on_disk),
            xet: true,
        }
    }
}

#[derive(Clone, Debug)]
pub struct RepoSpec {
    /// `model` or `dataset`.
    pub repo_type: String,
    pub id: String,
    pub private: bool,
    pub files: Vec<FileSpec>,
}

impl RepoSpec {
    pub fn model(id: &str, files: Vec<FileSpec>) -> Self {
        RepoSpec {
            repo_type: "model".into(),
            id: id.into(),
            private: false,
            files,
        }
    }
    pub fn dataset(id: &str, files: Vec<FileSpec>) -> Self {
        RepoSpec {
            repo_type: "dataset".into(),
            ..Self::model(id, files)
        }
    }
    pub fn private(mut self) -> Self {
        self.private = true;
        self
    }
}

/// LFS metadata of a Xet-stored file.
#[derive(Clone, Debug)]
pub struct Lfs {
    pub sha256: String,
    pub size: u64,
    pub pointer_size: u64,
}

/// A file as the hub serves it.
#[derive(Clone, Debug)]
pub struct HubFile {
    pub path: String,
    pub size: u64,
    /// Git blob id: of the content for plain files, of the LFS pointer for Xet files.
    pub blob_id: String,
    pub lfs: Option<Lfs>,
    pub xet_hash: Option<String>,
    pub content: Content,
}

#[derive(Clone, Debug)]
pub struct HubRepo {
    pub repo_type: String,
    pub id: String,
    pub private: bool,
    pub commit: String,
    /// By path, so listings come out sorted.
    pub files: BTreeMap<String, HubFile>,
}

pub fn git_blob_id(content: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(format!("blob {}\0", content.len()).as_bytes());
    h.update(content);
    hex(&h.finalize())
}

pub fn lfs_pointer(sha256: &str, size: u64) -> String {
    format!("version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n")
}

pub fn sha256_hex(content: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(content);
    hex(&h.finalize())
}

/// A commit id that depends on everything in the repo, as a real one would.
pub fn commit_id(spec_id: &str, files: &BTreeMap<String, HubFile>) -> String {
    let mut h = Sha1::new();
    h.update(spec_id.as_bytes());
    for f in files.values() {
        h.update(f.path.as_bytes());
        h.update([0]);
        h.update(f.blob_id.as_bytes());
    }
    hex(&h.finalize())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
