//! What the daemon is doing, for operators: Prometheus text on `GET /metrics` and a probe on
//! `GET /healthz`, served on `--metrics-listen` and on the local Hugging Face endpoint.
//!
//! `events` counts what happens deep inside (bans, failed checks, origin answers, announces,
//! pull durations); `gather` reads those and the daemon's own state into families;
//! `exposition` writes families as text (pure); `http` serves them.

pub mod events;
pub mod exposition;
pub mod gather;
pub mod http;

pub use events::{AnnounceChannel, Direction, EVENTS, StateKind, VerifySource};
pub use gather::Sources;
