//! Talking to Hugging Face over HTTP: the Hub API (repo info, tree, resolve, Xet tokens) and
//! the CAS (reconstructions, xorb byte ranges). Only what a download needs.
//!
//! Everything here retries transient failures itself (see [`retry`]), within time limits (see
//! [`deadline`]), and turns the rest into a [`RemoteError`] that says what happened in words
//! a user can act on.

pub mod cas;
pub mod cas_token;
pub mod deadline;
pub mod error;
pub mod http;
pub mod hub;
pub mod link;
pub mod retry;
pub mod token;
pub mod urlenc;

pub use cas::{CasClient, UrlSource};
pub use cas_token::CasToken;
pub use deadline::Deadlines;
pub use error::RemoteError;
pub use hub::{
    FileMeta, HubClient, Pace, RepoInfo, RepoRef, RepoType, RequestObserver, TreeEntry, XetFileData,
};
pub use retry::RetryPolicy;
