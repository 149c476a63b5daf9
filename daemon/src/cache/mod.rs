//! Writing the Hugging Face cache exactly as huggingface_hub 2.4 does: the same paths,
//! modes, lock files, shared blob store and tree listing, so either tool can read, resume
//! or delete what the other wrote, and both can work on one cache at the same time.

pub mod error;
pub mod layout;
pub mod lock;
pub mod shared_store;
pub mod snapshot_paths;
pub mod tree_json;

pub use error::CacheError;
pub use layout::{RepoCache, safe_relative_path};
