//! Peers: zest's QUIC protocol (docs/PROTOCOL.md). The server side answers from the
//! index and from downloads in progress; the client side is used by the download engine.

pub mod conn;
pub mod fleet;
pub mod limits;
pub mod live;
pub mod serve;
pub mod set;
pub mod stats;
pub mod tls;
pub mod watch;
pub mod wire;

pub use conn::{PeerConn, PeerError};
pub use fleet::FleetKey;
pub use live::{LiveFile, LiveFiles, LiveGuard, Placed, RunBound, take_run};
pub use set::{Origin, PeerSet, SetOptions, WeakPeerSet};
