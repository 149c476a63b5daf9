//! Asking one peer: have, manifest and get requests over one QUIC connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use xet::XetHash;
use zest_proto::peer;

use super::limits::{MAX_FRAME, MAX_META_BODY, Patience, REPLY_WAIT, silence_allowed};
use super::stats::PeerStats;
use super::wire::{self, WireError};
use crate::metrics::events::{Direction, EVENTS, StateKind};

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("peer sent nothing for {0:?}")]
    Stalled(Duration),
    #[error("peer is busy")]
    Busy,
    #[error("peer does not have it: {0}")]
    NotFound(String),
    /// The peer held the file but no longer does (it left its cache, or failed the peer's
    /// own check): not a lie, and not worth asking that peer for the file again.
    #[error("peer no longer has the file: {0}")]
    Gone(String),
    /// The peer could not serve it for reasons of its own (`internal`, or a code this
    /// version does not know): try elsewhere.
    #[error("peer could not serve it: {0}")]
    Unavailable(String),
    #[error("peer broke the protocol: {0}")]
    Protocol(String),
    #[error("peer connection: {0}")]
    Connection(String),
    /// The caller refused what the peer sent (it did not verify).
    #[error("{0}")]
    Rejected(String),
    /// The caller stopped the transfer for its own reasons (not the peer's fault).
    #[error("stopped: {0}")]
    Stopped(String),
}

impl From<WireError> for PeerError {
    fn from(e: WireError) -> Self {
        match e {
            WireError::TooLarge(..) | WireError::Decode(_) => PeerError::Protocol(e.to_string()),
            WireError::Stalled(d) => PeerError::Stalled(d),
            other => PeerError::Connection(other.to_string()),
        }
    }
}

impl From<quinn::ConnectionError> for PeerError {
    fn from(e: quinn::ConnectionError) -> Self {
        PeerError::Connection(e.to_string())
    }
}

/// A live connection to a peer that passed the handshake.
#[derive(Clone)]
pub struct PeerConn {
    pub conn: quinn::Connection,
    pub node_id: String,
    pub addr: SocketAddr,
    pub stats: Arc<PeerStats>,
    /// It proved it holds our fleet key (`peer::fleet`).
    pub fleet: bool,
    /// It listed the `watch` capability: it pushes what it holds instead of being asked.
    pub watch: bool,
    /// It listed the `meta` capability: it may be asked for Hub answers (if in the fleet).
    pub meta: bool,
    /// It listed the `route` capability: it tells its routes to the fleet's anchors.
    pub route: bool,
}

impl std::fmt::Debug for PeerConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "peer {} ({})", self.addr, short(&self.node_id))
    }
}

pub fn short(node_id: &str) -> &str {
    node_id.get(..12).unwrap_or(node_id)
}

impl PeerConn {
    async fn send(
        &self,
        kind: peer::request::Kind,
    ) -> Result<(quinn::SendStream, quinn::RecvStream), PeerError> {
        // Not counted as activity: a peer that has gone away silently still takes requests
        // until QUIC gives up on it, and must not look busy meanwhile. Its replies count.
        let (mut send, recv) = self.conn.open_bi().await?;
        let req = peer::Request { kind: Some(kind) };
        let state_kind = match req.kind {
            Some(peer::request::Kind::Have(_)) => Some(StateKind::Have),
            Some(peer::request::Kind::Watch(_)) => Some(StateKind::Watch),
            _ => None,
        };
        if let Some(k) = state_kind {
            EVENTS.peer_state(Direction::Sent, k, wire::frame_len(&req));
        }
        wire::write(&mut send, &req).await?;
        send.finish()
            .map_err(|e| PeerError::Connection(e.to_string()))?;
        Ok((send, recv))
    }

    async fn one_reply(&self, kind: peer::request::Kind) -> Result<peer::Response, PeerError> {
        let (_send, mut recv) = self.send(kind).await?;
        match tokio::time::timeout(REPLY_WAIT, wire::read::<peer::Response>(&mut recv)).await {
            Err(_) => Err(PeerError::Stalled(REPLY_WAIT)),
            Ok(Err(e)) => Err(e.into()),
            Ok(Ok(None)) => Err(PeerError::Protocol("empty reply".into())),
            Ok(Ok(Some(r))) => {
                self.stats.heard();
                Ok(r)
            }
        }
    }

    /// What the peer holds of each file.
    pub async fn have(&self, files: &[XetHash]) -> Result<Vec<peer::FileHave>, PeerError> {
        let req = peer::request::Kind::Have(peer::HaveRequest {
            files: files.iter().map(|h| h.as_bytes().to_vec()).collect(),
        });
        let reply = self.one_reply(req).await?;
        EVENTS.peer_state(
            Direction::Received,
            StateKind::Have,
            wire::frame_len(&reply),
        );
        match reply.kind {
            Some(peer::response::Kind::Have(h)) => Ok(h.files),
            other => Err(unexpected(other)),
        }
    }

    /// The routes to the fleet's anchors the peer knows (§4.6); none from a peer that
    /// does not take us for a fleet member.
    pub async fn route(&self) -> Result<Vec<crate::hubmeta::anchor::Entry>, PeerError> {
        use crate::hubmeta::anchor::{Entry, MAX_ENTRIES};
        match self
            .one_reply(peer::request::Kind::Route(peer::RouteRequest {}))
            .await?
            .kind
        {
            Some(peer::response::Kind::Route(r)) => {
                if r.anchors.len() > MAX_ENTRIES
                    || r.anchors
                        .iter()
                        .any(|e| e.anchor.is_empty() || e.anchor.len() > 128)
                {
                    return Err(PeerError::Protocol("a malformed route reply".into()));
                }
                Ok(r.anchors
                    .into_iter()
                    .map(|e| Entry {
                        anchor: e.anchor,
                        seq: e.seq,
                        hops: e.hops,
                    })
                    .collect())
            }
            Some(peer::response::Kind::Error(e)) if e.code == "not_found" => Ok(Vec::new()),
            other => Err(unexpected(other)),
        }
    }

    /// Asks the peer to tell what it holds of `file` now and at every change (§4.4).
    /// Only for peers that listed `watch`.
    pub async fn watch(&self, file: &XetHash) -> Result<Watch, PeerError> {
        let req = peer::request::Kind::Watch(peer::WatchRequest {
            file: file.as_bytes().to_vec(),
        });
        let (send, recv) = self.send(req).await?;
        Ok(Watch {
            _send: send,
            recv,
            stats: self.stats.clone(),
        })
    }

    /// The chunk hashes the peer claims for `[start, end)` of `file`. Unverified.
    pub async fn manifest(
        &self,
        file: &XetHash,
        start: u32,
        end: u32,
    ) -> Result<Vec<peer::ChunkClaim>, PeerError> {
        let req = peer::request::Kind::Manifest(peer::ManifestRequest {
            file: file.as_bytes().to_vec(),
            start,
            end,
        });
        match self.one_reply(req).await?.kind {
            Some(peer::response::Kind::Manifest(m)) => Ok(m.chunks),
            other => Err(unexpected(other)),
        }
    }

    /// A Hub answer the peer keeps (§4.5), or None if it has none. Unverified: the caller
    /// checks it as `hubmeta::check` says.
    /// The first frame may take up to `first_wait` (an owner answers once it has the
    /// answer itself, §4.5); later ones, [`REPLY_WAIT`] each.
    pub async fn meta(
        &self,
        req: peer::MetaRequest,
        first_wait: Duration,
    ) -> Result<Option<peer::MetaReply>, PeerError> {
        let (_send, mut recv) = self.send(peer::request::Kind::Meta(req)).await?;
        let mut whole: Option<peer::MetaReply> = None;
        loop {
            let wait = if whole.is_none() {
                first_wait
            } else {
                REPLY_WAIT
            };
            let frame =
                match tokio::time::timeout(wait, wire::read::<peer::Response>(&mut recv)).await {
                    Err(_) => return Err(PeerError::Stalled(wait)),
                    Ok(r) => r?,
                };
            self.stats.heard();
            let reply = match frame.map(|f| f.kind) {
                None if whole.is_none() => return Err(PeerError::Protocol("empty reply".into())),
                None => return Err(PeerError::Protocol("a meta reply ended early".into())),
                Some(Some(peer::response::Kind::Meta(m))) => m,
                Some(Some(peer::response::Kind::Error(e)))
                    if whole.is_none() && e.code == "not_found" =>
                {
                    return Ok(None);
                }
                Some(other) => return Err(unexpected(other)),
            };
            let w = whole.get_or_insert_with(|| peer::MetaReply {
                total: reply.total,
                piece: Vec::new(),
                seen_unix: reply.seen_unix,
                private: reply.private,
            });
            if reply.total != w.total || reply.total > MAX_META_BODY {
                return Err(PeerError::Protocol(
                    "a meta reply of changing or excessive length".into(),
                ));
            }
            w.piece.extend_from_slice(&reply.piece);
            match (w.piece.len() as u64).cmp(&w.total) {
                std::cmp::Ordering::Less if !reply.piece.is_empty() => {}
                std::cmp::Ordering::Equal => return Ok(whole),
                _ => {
                    return Err(PeerError::Protocol(
                        "a meta reply longer than it said".into(),
                    ));
                }
            }
        }
    }

    /// Streams chunks `[start, end)` of `file` into `on_chunk`, in order, which checks
    /// each one. A stream that goes quiet for longer than [`silence_allowed`] is abandoned.
    /// What `on_chunk` refuses ends the transfer and comes back as the caller's own error.
    pub async fn get<E: From<PeerError>>(
        &self,
        file: &XetHash,
        start: u32,
        end: u32,
        pace: &crate::rate::RateLimit,
        patience: impl Fn() -> Patience,
        mut on_chunk: impl FnMut(u32, &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let req = peer::request::Kind::Get(peer::GetRequest {
            file: file.as_bytes().to_vec(),
            start,
            end,
        });
        let (_send, mut recv) = self.send(req).await.map_err(E::from)?;
        let mut next = start;
        let mut first: Option<std::time::Instant> = None;
        let result = async {
            while next < end {
                let read = wire::read::<peer::Response>(&mut recv);
                tokio::pin!(read);
                let waiting = std::time::Instant::now();
                let frame = loop {
                    // Asked again at each wait's end: the caller's patience may have grown
                    // meanwhile (a seeder is given more while this node is short of CPU).
                    let quiet = silence_allowed(
                        next - start,
                        first.map(|t| t.elapsed()).unwrap_or_default(),
                        patience(),
                    );
                    let left = quiet.saturating_sub(waiting.elapsed());
                    if left.is_zero() {
                        return Err(PeerError::Stalled(quiet).into());
                    }
                    if let Ok(r) = tokio::time::timeout(left, &mut read).await {
                        break r.map_err(PeerError::from)?;
                    }
                };
                first.get_or_insert_with(std::time::Instant::now);
                self.stats.heard();
                match frame.and_then(|f| f.kind) {
                    Some(peer::response::Kind::Chunk(c)) => {
                        if c.index != next {
                            return Err(PeerError::Protocol(format!(
                                "sent chunk {} where {next} was due",
                                c.index
                            ))
                            .into());
                        }
                        if c.data.len() > xet::MAX_CHUNK_SIZE {
                            return Err(
                                PeerError::Protocol("chunk over the size limit".into()).into()
                            );
                        }
                        self.stats.received(c.data.len() as u64);
                        on_chunk(c.index, &c.data)?;
                        next += 1;
                        // Our own wait: the silence allowed is measured on reads only.
                        pace.take(c.data.len() as u64).await;
                    }
                    other => return Err(unexpected(other).into()),
                }
            }
            Ok(())
        }
        .await;
        if result.is_err() {
            // Tell the peer to stop sending what we no longer read.
            let _ = recv.stop(0u32.into());
        }
        result
    }
}

/// A watch in progress: the updates a peer pushes about one file. Dropping it stops the
/// stream, which tells the peer to stop sending.
pub struct Watch {
    _send: quinn::SendStream,
    recv: quinn::RecvStream,
    stats: Arc<PeerStats>,
}

impl Watch {
    /// The next update, waiting at most `wait` for it (for ever without one): None if
    /// none came in time. A frame cut short by the deadline is lost, so a caller that gets
    /// None ends the watch rather than read on.
    pub async fn next(
        &mut self,
        wait: Option<Duration>,
    ) -> Result<Option<peer::HaveUpdate>, PeerError> {
        let read = wire::read::<peer::Response>(&mut self.recv);
        let frame = match wait {
            Some(d) => match tokio::time::timeout(d, read).await {
                Err(_) => return Ok(None),
                Ok(r) => r?,
            },
            None => read.await?,
        };
        let Some(frame) = frame else {
            return Err(PeerError::Connection("the peer ended the watch".into()));
        };
        EVENTS.peer_state(
            Direction::Received,
            StateKind::Watch,
            wire::frame_len(&frame),
        );
        self.stats.heard();
        match frame.kind {
            Some(peer::response::Kind::Update(u)) => Ok(Some(u)),
            other => Err(unexpected(other)),
        }
    }
}

fn unexpected(kind: Option<peer::response::Kind>) -> PeerError {
    match kind {
        Some(peer::response::Kind::Error(e)) => match e.code.as_str() {
            "busy" => PeerError::Busy,
            "not_found" => PeerError::NotFound(e.message),
            "gone" => PeerError::Gone(e.message),
            "bad_request" => PeerError::Protocol(format!("bad_request: {}", e.message)),
            // `internal`, and codes from newer versions: the peer's own trouble.
            _ => PeerError::Unavailable(format!("{}: {}", e.code, e.message)),
        },
        None => PeerError::Protocol("stream ended early".into()),
        Some(_) => PeerError::Protocol("unexpected reply".into()),
    }
}

const _: () = assert!(MAX_FRAME > xet::MAX_CHUNK_SIZE + 64);
