//! Every limit of the peer protocol in one place (docs/PROTOCOL.md, "Limits").

use std::time::Duration;

/// Largest frame either side accepts (a manifest of 65536 chunks fits).
pub const MAX_FRAME: usize = 4 << 20;
/// Most files in one HaveRequest.
pub const MAX_HAVE_FILES: usize = 256;
/// Most chunks in one ManifestRequest.
pub const MAX_MANIFEST_CHUNKS: u32 = 65_536;
/// Most chunks in one GetRequest (about 64 MiB).
pub const MAX_GET_CHUNKS: u32 = 1024;
/// Requests a peer may have open on one connection at once.
pub const MAX_STREAMS: u32 = 64;
/// GetRequests served at once over all peers; beyond that a peer hears `busy`.
pub const MAX_UPLOADS: usize = 48;
/// Unacknowledged bytes a receiver allows on one stream and on one connection.
pub const STREAM_WINDOW: u32 = 8 << 20;
pub const CONNECTION_WINDOW: u32 = 64 << 20;
/// A stream that delivers nothing for this long is abandoned.
pub const STALL: Duration = Duration::from_secs(3);
/// Connections idle this long are closed (keep-alives keep live ones open).
pub const IDLE: Duration = Duration::from_secs(30);

pub fn transport() -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(MAX_STREAMS.into());
    t.max_concurrent_uni_streams(0u8.into());
    t.stream_receive_window(STREAM_WINDOW.into());
    t.receive_window(CONNECTION_WINDOW.into());
    t.send_window(u64::from(CONNECTION_WINDOW));
    t.keep_alive_interval(Some(Duration::from_secs(5)));
    if let Ok(idle) = IDLE.try_into() {
        t.max_idle_timeout(Some(idle));
    }
    t
}
