use thiserror::Error;

/// What went wrong talking to the Hub or the CAS, phrased for the person running the pull.
#[derive(Debug, Error)]
pub enum RemoteError {
    #[error(
        "repository {repo} not found: check the name and --repo-type; if it is private or gated, \
         set HF_TOKEN or run `hf auth login`"
    )]
    RepoNotFound { repo: String },
    #[error("revision {revision:?} not found in {repo}")]
    RevisionNotFound { repo: String, revision: String },
    #[error("{path:?} not found in {repo} at {revision}")]
    EntryNotFound {
        repo: String,
        revision: String,
        path: String,
    },
    #[error(
        "{repo} was not found, or it is private or gated and needs a token: set HF_TOKEN \
         (or run `hf auth login`) with a token that can read it"
    )]
    AuthRequired { repo: String },
    #[error(
        "access to {repo} was denied with the token given ({detail}); check that HF_TOKEN is valid and has access"
    )]
    AuthDenied { repo: String, detail: String },
    #[error(
        "{repo} is gated: accept its conditions on the Hub with the account whose token you use"
    )]
    Gated { repo: String },
    #[error("cannot reach {url}: {detail} (is the network up? is HF_ENDPOINT right?)")]
    Unreachable { url: String, detail: String },
    #[error("{url} answered HTTP {status}: {detail}")]
    Http {
        url: String,
        status: u16,
        detail: String,
    },
    #[error("the signed URL for {what} has expired")]
    UrlExpired { what: String },
    #[error("{what} not found on the CAS")]
    CasNotFound { what: String },
    #[error("unexpected response from {url}: {detail}")]
    Protocol { url: String, detail: String },
    #[error("gave up on {url} after {attempts} attempts in {secs} s: {last}")]
    RetriesExhausted {
        url: String,
        attempts: u32,
        secs: u64,
        last: String,
    },
    #[error("invalid Xet data: {0}")]
    Xet(#[from] crate::Error),
}

impl RemoteError {
    pub(crate) fn protocol(url: &str, detail: impl Into<String>) -> Self {
        RemoteError::Protocol {
            url: url.to_string(),
            detail: detail.into(),
        }
    }

    /// Whether trying the same request again later could succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            RemoteError::Unreachable { .. } => true,
            RemoteError::Http { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}
