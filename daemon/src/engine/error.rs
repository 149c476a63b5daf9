//! Why a pull failed, in a form both the log and `zestctl` can show.

use xet::remote::RemoteError;

use crate::cache::CacheError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    RepoNotFound,
    RevisionNotFound,
    Auth,
    Network,
    Integrity,
    Disk,
    Invalid,
    Internal,
    /// Stopped on request (`zestctl cancel`).
    Cancelled,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::RepoNotFound => "repo_not_found",
            Kind::RevisionNotFound => "revision_not_found",
            Kind::Auth => "auth",
            Kind::Network => "network",
            Kind::Integrity => "integrity",
            Kind::Disk => "disk",
            Kind::Invalid => "invalid",
            Kind::Internal => "internal",
            Kind::Cancelled => "cancelled",
        }
    }
}

#[derive(Clone, Debug)]
pub struct PullError {
    pub kind: Kind,
    pub message: String,
}

impl PullError {
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        PullError {
            kind,
            message: message.into(),
        }
    }
    pub fn integrity(message: impl Into<String>) -> Self {
        Self::new(Kind::Integrity, message)
    }
    pub fn disk(what: &str, e: &std::io::Error) -> Self {
        Self::new(Kind::Disk, format!("{what}: {e}{}", full_hint(e)))
    }
    /// Names the directory whose disk is full, if that is what went wrong.
    pub fn on_disk_of(mut self, dir: &std::path::Path) -> Self {
        self.message = self.message.replacen(
            DISK_FULL,
            &format!("the disk holding {} is full", dir.display()),
            1,
        );
        self
    }

    /// Adds what was being done to the message.
    pub fn context(mut self, what: &str) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }
}

const DISK_FULL: &str = "the disk is full";

fn full_hint(e: &std::io::Error) -> String {
    if e.raw_os_error() == Some(28) {
        format!(" ({DISK_FULL}: free some space and pull again; verified data is kept)")
    } else {
        String::new()
    }
}

impl From<CacheError> for PullError {
    fn from(e: CacheError) -> Self {
        match (&e, e.io()) {
            (CacheError::BadName(_), _) => PullError::new(Kind::Invalid, e.to_string()),
            (_, Some(io)) => PullError::new(Kind::Disk, format!("{e}{}", full_hint(io))),
            _ => PullError::new(Kind::Disk, e.to_string()),
        }
    }
}

impl std::fmt::Display for PullError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PullError {}

impl From<RemoteError> for PullError {
    fn from(e: RemoteError) -> Self {
        let kind = match &e {
            RemoteError::RepoNotFound { .. } => Kind::RepoNotFound,
            RemoteError::RevisionNotFound { .. } => Kind::RevisionNotFound,
            RemoteError::EntryNotFound { .. } | RemoteError::CasNotFound { .. } => Kind::Invalid,
            RemoteError::AuthRequired { .. }
            | RemoteError::AuthDenied { .. }
            | RemoteError::Gated { .. } => Kind::Auth,
            RemoteError::Unreachable { .. }
            | RemoteError::Http { .. }
            | RemoteError::UrlExpired { .. }
            | RemoteError::RetriesExhausted { .. } => Kind::Network,
            RemoteError::Protocol { .. } => Kind::Network,
            RemoteError::Xet(_) => Kind::Integrity,
        };
        PullError::new(kind, e.to_string())
    }
}

impl From<xet::Error> for PullError {
    fn from(e: xet::Error) -> Self {
        PullError::integrity(e.to_string())
    }
}
