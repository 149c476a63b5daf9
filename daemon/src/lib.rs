//! zestd's library: the pieces of the daemon, public so the integration tests can drive
//! the peer protocol directly (a hostile peer is written against it).

pub mod cache;
pub mod config;
pub mod control;
pub mod discovery;
pub mod endpoint;
pub mod engine;
pub mod hubmeta;
pub mod index;
pub mod metrics;
pub mod peer;
pub mod pulls;
pub mod rate;
pub mod sync;
pub mod totals;
pub mod unix_socket;
