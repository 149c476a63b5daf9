//! Fuzz targets: one function per kind of untrusted input, each feeding arbitrary bytes to
//! the same parsers and checks zestd runs on that input, and asserting what must hold
//! whatever the bytes (no panic, bounded allocation, round trips, agreement between two
//! decoders of the same format).
//!
//! Each target is driven three ways: coverage-guided by libFuzzer (`fuzz/libfuzzer`,
//! `scripts/fuzz.sh`), over the committed corpus and every past finding by the replay test
//! (`fuzz/tests/replay.rs`, stable, in CI), and over seeded mutations of that corpus by the
//! same test.

pub mod config;
pub mod endpoint;
pub mod hub_json;
pub mod input;
pub mod peer_message;
pub mod reconstruction;
pub mod shard;
pub mod state;
pub mod tracker;
pub mod xorb;

/// A fuzz target: must not panic on any input.
pub type Target = fn(&[u8]);

/// Every target, by the name its corpus folder and its libFuzzer binary carry.
pub const TARGETS: &[(&str, Target)] = &[
    ("xorb", xorb::run),
    ("shard", shard::run),
    ("reconstruction", reconstruction::run),
    ("hub_json", hub_json::run),
    ("tracker", tracker::run),
    ("peer_message", peer_message::run),
    ("config", config::run),
    ("state", state::run),
    ("endpoint", endpoint::run),
];

pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}
