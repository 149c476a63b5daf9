//! Every limit of the peer protocol in one place (docs/PROTOCOL.md, "Limits").

use std::time::Duration;

/// Largest frame either side accepts (a manifest of 65536 chunks fits).
pub const MAX_FRAME: usize = 4 << 20;
/// Most files in one HaveRequest.
/// The longest Hub answer (a listing, a reconstruction, a git-stored file) passed
/// between fleet members (§4.5), and the piece of it one frame carries.
pub const MAX_META_BODY: u64 = 64 << 20;
pub const META_PIECE: usize = 1 << 20;
/// How long a node waits for fleet members' Hub answers before it asks the Hub itself.
pub const META_WAIT: Duration = Duration::from_secs(3);
pub const MAX_HAVE_FILES: usize = 256;
/// Most chunks in one ManifestRequest.
pub const MAX_MANIFEST_CHUNKS: u32 = 65_536;
/// Most chunks in one GetRequest (about 64 MiB).
pub const MAX_GET_CHUNKS: u32 = 1024;
/// Largest request frame a server reads (a `have` for [`MAX_HAVE_FILES`] files is about
/// 9 KiB). With [`MAX_STREAMS`] streams per connection and the incoming connection cap, this
/// bounds what half-sent requests can make a server hold: 80 × 64 × 16 KiB = 80 MiB.
pub const MAX_REQUEST_FRAME: usize = 16 << 10;
/// A request frame must arrive whole within this, or its stream is dropped.
pub const REQUEST_WAIT: Duration = Duration::from_secs(5);
/// Requests a peer may have open on one connection at once.
pub const MAX_STREAMS: u32 = 64;
/// GetRequests served at once over all peers; beyond that a peer hears `busy`. Few, as
/// BitTorrent's unchoke slots are few: each transfer then gets a real share of the uplink,
/// a range reaches the next hop sooner and is traded onward from there. Simulated with
/// 64 to 1,000 nodes (BENCHMARKS.md), 4 instead of 48 brings a flash crowd from 2.4–3.5×
/// to 1.3–1.8× the one-copy time; measured with 4 nodes, the same within noise. (A
/// seeder answering `busy` is waited for, not hedged: `planner`.)
pub const MAX_UPLOADS: usize = 4;
/// GetRequests served at once to one connection: no peer holds more than this many of the
/// upload slots, so one connection that stops reading cannot take them all.
pub const MAX_UPLOADS_PER_PEER: usize = 2;
/// Watches (pushed `have`) one connection may hold open at once; beyond that, `busy`.
pub const MAX_WATCHES_PER_PEER: usize = 32;
/// A responder lets changes to a watched file gather this long before it tells them, so a
/// burst of landing chunks goes out as one update. Well under the 250 ms a claim waits
/// before it is settled, so claims made together are seen by both sides in time.
pub const WATCH_GATHER: Duration = Duration::from_millis(50);
/// Held ranges that only grew wait this long since the last update: a peer can take a
/// range from a holder only once it holds all of it, so telling every landed chunk at
/// once buys little, while claims (`fetching`) are told within [`WATCH_GATHER`].
pub const WATCH_HELD_GATHER: Duration = Duration::from_millis(250);
/// While a watched file downloads, the responder sends at least this often (a heartbeat
/// when nothing changed), so a watcher can tell a frozen peer from a quiet one.
pub const WATCH_HEARTBEAT: Duration = Duration::from_secs(1);
/// A responder looks again this often even without a change notice (a file entering or
/// leaving the index raises none).
pub const WATCH_RECHECK: Duration = Duration::from_secs(1);
/// A watcher that hears nothing for this long from a peer whose file was downloading
/// takes that peer for frozen.
pub const WATCH_SILENCE: Duration = Duration::from_millis(2500);
/// A chunk frame must be taken off our hands (written into the connection's send window)
/// within this; a reader that stops reading loses the stream and its upload slot.
pub const WRITE_WAIT: Duration = Duration::from_secs(10);
/// Unacknowledged bytes a receiver allows on one stream and on one connection.
pub const STREAM_WINDOW: u32 = 8 << 20;
pub const CONNECTION_WINDOW: u32 = 64 << 20;
/// A one-frame reply (`have`, `manifest`) must arrive within this.
pub const REPLY_WAIT: Duration = Duration::from_millis(1500);
/// A `get` stream's first chunk may take this long: the request's round trip and the
/// peer's first read.
pub const FIRST_CHUNK_WAIT: Duration = Duration::from_secs(1);
/// After the first chunk, silence longer than this many mean gaps between chunks so far,
/// kept within [`Patience::floor`, `SILENCE_MAX`], is a stall: a frozen peer is noticed well
/// under a second into its silence, and a steady slow one is judged by its rate instead.
pub const SILENCE_GAPS: u32 = 8;
pub const SILENCE_MIN: Duration = Duration::from_millis(300);
pub const SILENCE_MAX: Duration = Duration::from_millis(800);

/// How much silence a `get` stream is allowed: before its first chunk, and at least after.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Patience {
    pub first: Duration,
    pub floor: Duration,
}

impl Patience {
    /// For a peer in a crowd, which may be busy with its own downloads.
    pub const USUAL: Patience = Patience {
        first: FIRST_CHUNK_WAIT,
        floor: SILENCE_MIN,
    };
}

/// How long a `get` stream may stay silent, having delivered `chunks` chunks over
/// `elapsed` since its first.
pub fn silence_allowed(chunks: u32, elapsed: Duration, patience: Patience) -> Duration {
    if chunks == 0 {
        return patience.first;
    }
    (elapsed / chunks * SILENCE_GAPS).clamp(patience.floor, SILENCE_MAX.max(patience.floor))
}
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

#[cfg(test)]
mod tests {
    use prost::Message;
    use zest_proto::peer;

    #[test]
    fn the_largest_legal_request_fits_the_request_frame() {
        let have = peer::Request {
            kind: Some(peer::request::Kind::Have(peer::HaveRequest {
                files: vec![vec![0xff; 32]; MAX_HAVE_FILES],
            })),
        };
        let get = peer::Request {
            kind: Some(peer::request::Kind::Get(peer::GetRequest {
                file: vec![0xff; 32],
                start: u32::MAX - 1,
                end: u32::MAX,
            })),
        };
        for r in [have, get] {
            assert!(r.encoded_len() <= MAX_REQUEST_FRAME, "{}", r.encoded_len());
        }
    }

    use super::*;

    #[test]
    fn silence_allowed_follows_the_stream_within_bounds() {
        assert_eq!(
            silence_allowed(0, Duration::ZERO, Patience::USUAL),
            FIRST_CHUNK_WAIT
        );
        // A fast stream (1 ms per chunk): the floor.
        assert_eq!(
            silence_allowed(100, Duration::from_millis(100), Patience::USUAL),
            SILENCE_MIN
        );
        // 50 ms per chunk: eight gaps.
        assert_eq!(
            silence_allowed(10, Duration::from_millis(500), Patience::USUAL),
            Duration::from_millis(400)
        );
        // A crawl: the ceiling.
        assert_eq!(
            silence_allowed(2, Duration::from_secs(2), Patience::USUAL),
            SILENCE_MAX
        );
    }
}
