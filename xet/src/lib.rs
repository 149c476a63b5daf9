//! The Xet protocol as Hugging Face speaks it, byte for byte.
//!
//! This crate knows nothing about peers: it chunks, hashes, (de)compresses,
//! parses and writes xorbs and shards, and models file reconstructions.
//! Everything here is checked against Hugging Face's reference
//! implementation by the tests in the `zest-tests` crate.

pub mod chunk_stream;
pub mod chunking;
pub mod compression;
pub mod error;
pub mod file_hash;
pub mod hash;
pub mod merkle;
pub mod piece_hash;
mod reader;
pub mod reconstruction;
pub mod remote;
pub mod shard;
pub mod xorb;

pub use error::{Error, Result};
pub use hash::XetHash;

/// Target chunk size of the content-defined chunker (64 KiB).
pub const TARGET_CHUNK_SIZE: usize = 64 * 1024;
/// No chunk boundary is placed before this many bytes (8 KiB).
pub const MIN_CHUNK_SIZE: usize = TARGET_CHUNK_SIZE / 8;
/// A boundary is forced after this many bytes (128 KiB).
pub const MAX_CHUNK_SIZE: usize = TARGET_CHUNK_SIZE * 2;
/// Largest serialized xorb (64 MiB).
pub const MAX_XORB_BYTES: usize = 64 * 1024 * 1024;
/// Most chunks one xorb may hold.
pub const MAX_XORB_CHUNKS: usize = 8 * 1024;
