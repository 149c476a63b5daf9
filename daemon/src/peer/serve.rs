//! Answering a peer's requests from the index (complete files in the HF cache) and from
//! files still downloading. Every chunk is re-hashed as it is read, so a file changed on
//! disk is never passed on as what the manifest says.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::Semaphore;
use xet::XetHash;
use zest_proto::peer;

use super::limits::{
    MAX_GET_CHUNKS, MAX_HAVE_FILES, MAX_MANIFEST_CHUNKS, MAX_REQUEST_FRAME, MAX_UPLOADS,
    MAX_UPLOADS_PER_PEER, MAX_WATCHES_PER_PEER, META_PIECE, REQUEST_WAIT, WATCH_GATHER,
    WATCH_HEARTBEAT, WATCH_HELD_GATHER, WATCH_RECHECK, WRITE_WAIT,
};
use super::live::{LiveFiles, Placed};
use super::stats::PeerStats;
use super::wire::{self, WireError};
use crate::index::{HeldFile, Index};
use crate::metrics::events::{Direction, EVENTS, StateKind};
use crate::rate::Limits;
use crate::totals::Totals;

#[derive(Clone)]
pub struct Provider {
    pub index: Index,
    pub live: Arc<LiveFiles>,
    pub uploads: Arc<Semaphore>,
    pub totals: Arc<Totals>,
    /// Whether public content is served to peers outside the fleet (config `seed_public`).
    pub serve_public: bool,
    /// The upload cap every chunk sent waits on.
    pub limits: Arc<Limits>,
    /// Hub answers this node keeps, for fleet members (`meta`); None answers not_found.
    pub hub_meta: Option<Arc<crate::hubmeta::HubMeta>>,
}

impl Provider {
    pub fn new(
        index: Index,
        live: Arc<LiveFiles>,
        totals: Arc<Totals>,
        limits: Arc<Limits>,
    ) -> Self {
        Provider {
            index,
            live,
            uploads: Arc::new(Semaphore::new(MAX_UPLOADS)),
            totals,
            serve_public: true,
            limits,
            hub_meta: None,
        }
    }
}

/// What the server knows of one connection it serves.
#[derive(Clone)]
pub struct Client {
    pub stats: Arc<PeerStats>,
    /// The peer proved fleet membership.
    pub fleet: bool,
    /// This connection's share of the upload slots.
    pub uploads: Arc<Semaphore>,
    /// Watches this connection may hold open.
    pub watches: Arc<Semaphore>,
    /// The peer's node id (its certificate's), for answers shared in the fleet.
    pub node_id: Arc<str>,
}

impl Client {
    pub fn new(stats: Arc<PeerStats>, fleet: bool, node_id: &str) -> Self {
        Client {
            stats,
            fleet,
            node_id: node_id.into(),
            uploads: Arc::new(Semaphore::new(MAX_UPLOADS_PER_PEER)),
            watches: Arc::new(Semaphore::new(MAX_WATCHES_PER_PEER)),
        }
    }
}

/// Where chunk `i` of a file is, if held.
type Lookup = Box<dyn Fn(u32) -> Option<Placed> + Send>;

/// Where a file's chunks are read from.
enum Source {
    Held(Arc<HeldFile>),
    Live(Arc<super::live::LiveFile>),
}

impl Provider {
    /// Where `hash` can be read from, if this peer may have it: private content exists
    /// for fleet peers only, and for anyone else it is simply not here.
    fn source(&self, hash: &XetHash, fleet: bool) -> Option<Source> {
        if let Some(h) = self.index.held(hash) {
            let open = fleet || (self.serve_public && self.index.is_public(hash));
            if !open {
                tracing::debug!(file = %hash, "not offered: private content, peer outside the fleet");
            }
            return open.then_some(Source::Held(h));
        }
        self.live
            .get(hash)
            .filter(|l| fleet || (self.serve_public && !l.private))
            .map(Source::Live)
    }

    /// The answer for a file `source` did not find: `gone` if it left this cache lately and
    /// the peer could have had it (so that is no lie and earns no strike), else `not_found`.
    /// Private content that left stays `not_found` for strangers, as it was while here.
    fn missing(&self, hash: &XetHash, fleet: bool) -> peer::Response {
        let could_have = fleet || (self.serve_public && self.index.is_public(hash));
        if could_have && self.index.recently_left(hash) {
            wire::error("gone", "the file left this cache")
        } else {
            wire::error("not_found", "no such file here")
        }
    }

    fn have(&self, files: &[Vec<u8>], fleet: bool) -> peer::Response {
        if files.len() > MAX_HAVE_FILES {
            return wire::error("bad_request", "too many files in one have request");
        }
        let mut out = Vec::with_capacity(files.len());
        for f in files {
            let Some(hash) = XetHash::from_slice(f) else {
                return wire::error("bad_request", "a file hash is not 32 bytes");
            };
            out.push(self.file_have(&hash, fleet).0);
        }
        peer::Response {
            kind: Some(peer::response::Kind::Have(peer::HaveReply { files: out })),
        }
    }

    /// What this node tells `fleet` (or not) about `hash` now, and the download in
    /// progress it comes from, if any.
    fn file_have(
        &self,
        hash: &XetHash,
        fleet: bool,
    ) -> (peer::FileHave, Option<Arc<super::live::LiveFile>>) {
        let mut fh = peer::FileHave {
            file: hash.as_bytes().to_vec(),
            ..Default::default()
        };
        let mut live = None;
        match self.source(hash, fleet) {
            Some(Source::Held(h)) => {
                let n = h.chunks.len() as u32;
                fh.complete = true;
                fh.total_chunks = n;
                fh.held = if n > 0 { vec![0, n] } else { Vec::new() };
            }
            Some(Source::Live(l)) => {
                fh.total_chunks = l.total_chunks();
                fh.held = wire::flatten(&l.held_ranges());
                fh.fetching = wire::flatten(&l.fetching_ranges());
                let relayed = l.relayed();
                fh.relayed =
                    (!relayed.is_empty()).then_some(peer::RelayedClaims { claims: relayed });
                fh.quiet_ms = l
                    .quiet()
                    .map(|q| u32::try_from(q.as_millis()).unwrap_or(u32::MAX));
                live = Some(l);
            }
            None => {}
        }
        (fh, live)
    }

    /// Tells the peer what this node holds of a file, and again at every change, until
    /// the peer stops reading (§4.4). Changes are gathered for [`WATCH_GATHER`] (an
    /// urgent one after a quiet spell goes at once), and held ranges that only grew for
    /// [`WATCH_HELD_GATHER`], so landing chunks are a few updates a second, not one each;
    /// while the file downloads here, an update goes at least every [`WATCH_HEARTBEAT`].
    async fn watch(
        &self,
        req: &peer::WatchRequest,
        send: &mut quinn::SendStream,
        client: &Client,
    ) -> Result<(), WireError> {
        let Some(hash) = XetHash::from_slice(&req.file) else {
            return wire::write(
                send,
                &wire::error("bad_request", "file hash is not 32 bytes"),
            )
            .await;
        };
        let Ok(_slot) = client.watches.clone().try_acquire_owned() else {
            return wire::write(send, &wire::error("busy", "too many watches at once")).await;
        };
        let stopped = send.stopped();
        tokio::pin!(stopped);
        let mut registry = self.live.subscribe();
        let mut told: Option<peer::FileHave> = None;
        let mut last_sent = tokio::time::Instant::now();
        loop {
            // Subscribed before the state is read, so no change between the two is missed.
            let mut changes = self.live.get(&hash).map(|l| l.subscribe_changes());
            let (now, live) = self.file_have(&hash, client.fleet);
            let downloading = live.is_some();
            drop(live);
            let since = last_sent.elapsed();
            // Held ranges that only grew can wait for the slower gather; claims cannot.
            let held_waits =
                !super::watch::urgent(told.as_ref(), &now) && since < WATCH_HELD_GATHER;
            let due = match super::watch::diff(told.as_ref(), &now) {
                Some(_) if held_waits => None,
                Some(u) => Some((u, true)),
                None if downloading && since >= WATCH_HEARTBEAT => {
                    Some((super::watch::heartbeat(&now), false))
                }
                None => None,
            };
            let pending = due.is_none()
                && held_waits
                && !told.as_ref().is_some_and(|t| super::watch::same(t, &now));
            if let Some((update, news)) = due {
                let frame = peer::Response {
                    kind: Some(peer::response::Kind::Update(update)),
                };
                write_within(send, &frame).await?;
                EVENTS.peer_state(Direction::Sent, StateKind::Watch, wire::frame_len(&frame));
                // A watch is a standing request: its client is in use, not idle.
                client.stats.heard();
                last_sent = tokio::time::Instant::now();
                if news {
                    told = Some(now);
                }
            }
            let mut wake =
                (last_sent + WATCH_HEARTBEAT).min(tokio::time::Instant::now() + WATCH_RECHECK);
            if pending {
                wake = wake.min(last_sent + WATCH_HELD_GATHER);
            }
            tokio::select! {
                _ = &mut stopped => return Ok(()),
                _ = registry.changed() => {}
                _ = async {
                    match changes.as_mut() {
                        Some(c) => { let _ = c.changed().await; }
                        None => std::future::pending().await,
                    }
                } => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
            // A change that cannot wait (a claim, a range no longer fetched) after a quiet
            // spell goes out at once: the last xorb of a crowd waited here for the gather
            // before its holder's peers heard they could take it. The rest gather.
            if !(last_sent.elapsed() >= WATCH_GATHER
                && self.urgent_change(&hash, client.fleet, told.as_ref()))
            {
                tokio::select! {
                    _ = &mut stopped => return Ok(()),
                    _ = tokio::time::sleep(WATCH_GATHER) => {}
                }
            }
        }
    }

    /// Whether what a watcher was last told of a file differs from now in a way that
    /// cannot wait for the gather ([`super::watch::urgent`]).
    fn urgent_change(&self, hash: &XetHash, fleet: bool, told: Option<&peer::FileHave>) -> bool {
        let (now, _) = self.file_have(hash, fleet);
        super::watch::urgent(told, &now) && !told.is_some_and(|t| super::watch::same(t, &now))
    }

    fn manifest(&self, req: &peer::ManifestRequest, fleet: bool) -> peer::Response {
        let Some(hash) = XetHash::from_slice(&req.file) else {
            return wire::error("bad_request", "the file hash is not 32 bytes");
        };
        if req.start >= req.end || req.end - req.start > MAX_MANIFEST_CHUNKS {
            return wire::error("bad_request", "manifest range empty or too long");
        }
        let claim = |i: u32, h: &XetHash, size: u32| peer::ChunkClaim {
            index: i,
            hash: h.as_bytes().to_vec(),
            size,
        };
        let chunks: Vec<peer::ChunkClaim> = match self.source(&hash, fleet) {
            Some(Source::Held(h)) => (req.start..req.end.min(h.chunks.len() as u32))
                .map(|i| {
                    let c = h.chunks[i as usize];
                    claim(i, &c.hash, c.size)
                })
                .collect(),
            Some(Source::Live(l)) => (req.start..req.end)
                .filter_map(|i| l.claim(i).map(|(h, size)| claim(i, &h, size)))
                .collect(),
            None => return self.missing(&hash, fleet),
        };
        peer::Response {
            kind: Some(peer::response::Kind::Manifest(peer::ManifestReply {
                chunks,
            })),
        }
    }

    /// Streams chunks `[start, end)`; ends with a `not_found` error at the first chunk it
    /// does not hold.
    async fn get(
        &self,
        req: &peer::GetRequest,
        send: &mut quinn::SendStream,
        client: &Client,
    ) -> Result<(), WireError> {
        let (stats, fleet) = (&client.stats, client.fleet);
        let Some(hash) = XetHash::from_slice(&req.file) else {
            return wire::write(
                send,
                &wire::error("bad_request", "file hash is not 32 bytes"),
            )
            .await;
        };
        if req.start >= req.end || req.end - req.start > MAX_GET_CHUNKS {
            return wire::write(send, &wire::error("bad_request", "range empty or too long")).await;
        }
        let Ok(_mine) = client.uploads.clone().try_acquire_owned() else {
            return wire::write(
                send,
                &wire::error("busy", "too many uploads to you at once; retry later"),
            )
            .await;
        };
        let Ok(_permit) = self.uploads.clone().try_acquire_owned() else {
            return wire::write(send, &wire::error("busy", "too many uploads; retry later")).await;
        };
        let mut held_at = None;
        let (file, lookup): (Arc<File>, Lookup) = match self.source(&hash, fleet) {
            Some(Source::Held(h)) => match File::open(&h.path) {
                Ok(f) => {
                    held_at = Some(h.path.clone());
                    let h = h.clone();
                    (
                        Arc::new(f),
                        Box::new(move |i| {
                            let c = h.chunks.get(i as usize)?;
                            Some(Placed {
                                hash: c.hash,
                                size: c.size,
                                offset: h.offsets[i as usize],
                            })
                        }),
                    )
                }
                Err(_) => {
                    // Deleted or moved under us: it leaves the index now, not at the next
                    // watcher event, and the peer hears it is gone (no lie, no strike).
                    let _ = self.index.remove_path(&h.path);
                    return wire::write(send, &wire::error("gone", "the file left this cache"))
                        .await;
                }
            },
            Some(Source::Live(l)) => {
                let file = l.file.clone();
                (file, Box::new(move |i| l.get(i)))
            }
            None => return wire::write(send, &self.missing(&hash, fleet)).await,
        };
        for i in req.start..req.end {
            let Some(p) = lookup(i) else {
                return wire::write(send, &wire::error("not_found", format!("no chunk {i}"))).await;
            };
            let f = file.clone();
            let read = tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; p.size as usize];
                f.read_exact_at(&mut buf, p.offset)?;
                Ok::<_, std::io::Error>(buf)
            })
            .await;
            let data = match read {
                Ok(Ok(d)) if xet::hash::chunk_hash(&d) == p.hash => d,
                Ok(Ok(_)) => {
                    crate::metrics::EVENTS.verify_failed(crate::metrics::VerifySource::Seeding);
                    if let Some(path) = &held_at {
                        self.distrust(&hash, i, path);
                    } else {
                        tracing::warn!(file = %hash, chunk = i, "a chunk of a download in progress no longer matches its hash; not serving it");
                    }
                    return wire::write(send, &wire::error("gone", "stored data changed")).await;
                }
                _ => {
                    return wire::write(send, &wire::error("internal", "cannot read the file"))
                        .await;
                }
            };
            let n = data.len() as u64;
            self.limits.upload.take(n).await;
            let frame = peer::Response {
                kind: Some(peer::response::Kind::Chunk(peer::ChunkData {
                    index: i,
                    data,
                })),
            };
            // A reader that stops reading must not keep the slot.
            match tokio::time::timeout(WRITE_WAIT, wire::write(send, &frame)).await {
                Ok(r) => r?,
                Err(_) => {
                    let _ = send.reset(0u32.into());
                    tracing::info!(file = %hash, chunk = i, "peer stopped reading; upload dropped");
                    return Err(WireError::Stalled(WRITE_WAIT));
                }
            }
            stats.sent(n);
            self.totals.served.fetch_add(n, Ordering::Relaxed);
        }
        Ok(())
    }

    /// A chunk of the held file at `path` no longer hashes as indexed (bit rot, or an edit
    /// that kept the size and mtime): the file stops being offered at once, no pull takes
    /// it as done until it changes, and it is hashed again in the background to index it as
    /// what it now is.
    fn distrust(&self, hash: &XetHash, chunk: u32, path: &std::path::Path) {
        tracing::warn!(
            file = %hash, chunk, path = %path.display(),
            "a stored chunk no longer matches its hash: this file is no longer offered to peers, and is checked again"
        );
        if let Err(e) = self.index.mark_wrong(path) {
            tracing::warn!(path = %path.display(), "cannot record it in the index: {e}");
        }
        let (index, path) = (self.index.clone(), path.to_path_buf());
        tokio::task::spawn_blocking(move || crate::index::scan::recheck(&index, &path));
    }

    /// A Hub answer this node keeps, in pieces (§4.5): for fleet members only. To anyone
    /// else it is not_found, as if this node had none.
    async fn meta(
        &self,
        req: &peer::MetaRequest,
        send: &mut quinn::SendStream,
        client: &Client,
    ) -> Result<(), WireError> {
        let q = match crate::hubmeta::Query::from_wire(req) {
            Ok(q) => q,
            Err(e) => return write_within(send, &wire::error("bad_request", e)).await,
        };
        let answer = match &self.hub_meta {
            Some(m) if client.fleet => {
                let ask = crate::hubmeta::Ask {
                    as_owner: req.as_owner,
                    anchor: req.anchor.clone(),
                    relays: req.relays,
                };
                m.answer_for(&q, &client.node_id, &ask).await
            }
            _ => None,
        };
        let Some(a) = answer else {
            return write_within(send, &wire::error("not_found", "no such answer here")).await;
        };
        tracing::debug!("giving {} to a fleet member", q.describe());
        let total = a.body.len() as u64;
        let mut pieces = a.body.chunks(META_PIECE).peekable();
        if pieces.peek().is_none() {
            return write_within(send, &meta_frame(total, Vec::new(), &a)).await;
        }
        for piece in pieces {
            write_within(send, &meta_frame(total, piece.to_vec(), &a)).await?;
        }
        Ok(())
    }

    /// Handles one request stream to the end.
    pub async fn handle(
        &self,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
        client: &Client,
    ) -> Result<(), WireError> {
        let fleet = client.fleet;
        let read = tokio::time::timeout(
            REQUEST_WAIT,
            wire::read_limited::<peer::Request>(&mut recv, MAX_REQUEST_FRAME),
        )
        .await
        .unwrap_or(Err(WireError::Stalled(REQUEST_WAIT)));
        // One request per stream: whatever else comes on it is dropped, not buffered.
        let _ = recv.stop(0u32.into());
        client.stats.heard();
        let req = match read {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(()),
            Err(e) => {
                let _ = tokio::time::timeout(
                    WRITE_WAIT,
                    wire::write(&mut send, &wire::error("bad_request", e.to_string())),
                )
                .await;
                let _ = send.finish();
                return Err(e);
            }
        };
        let read_len = wire::frame_len(&req);
        let have = matches!(req.kind, Some(peer::request::Kind::Have(_)));
        let reply = match req.kind {
            Some(peer::request::Kind::Have(h)) => {
                EVENTS.peer_state(Direction::Received, StateKind::Have, read_len);
                self.have(&h.files, fleet)
            }
            Some(peer::request::Kind::Watch(w)) if super::watch::enabled() => {
                EVENTS.peer_state(Direction::Received, StateKind::Watch, read_len);
                let r = self.watch(&w, &mut send, client).await;
                let _ = send.finish();
                return r;
            }
            Some(peer::request::Kind::Manifest(m)) => self.manifest(&m, fleet),
            Some(peer::request::Kind::Get(g)) => {
                self.get(&g, &mut send, client).await?;
                send.finish()?;
                return Ok(());
            }
            Some(peer::request::Kind::Meta(m)) => {
                self.meta(&m, &mut send, client).await?;
                send.finish()?;
                return Ok(());
            }
            Some(peer::request::Kind::Route(_)) => match &self.hub_meta {
                Some(m) if fleet => peer::Response {
                    kind: Some(peer::response::Kind::Route(peer::RouteReply {
                        anchors: m
                            .route_entries()
                            .into_iter()
                            .map(|e| peer::RouteEntry {
                                anchor: e.anchor,
                                seq: e.seq,
                                hops: e.hops,
                            })
                            .collect(),
                    })),
                },
                _ => wire::error("not_found", "no routes here"),
            },
            Some(peer::request::Kind::Watch(_)) | None => {
                wire::error("bad_request", "unknown request")
            }
        };
        write_within(&mut send, &reply).await?;
        if have {
            EVENTS.peer_state(Direction::Sent, StateKind::Have, wire::frame_len(&reply));
        }
        send.finish()?;
        Ok(())
    }
}

fn meta_frame(total: u64, piece: Vec<u8>, a: &crate::hubmeta::Answer) -> peer::Response {
    peer::Response {
        kind: Some(peer::response::Kind::Meta(peer::MetaReply {
            total,
            piece,
            seen_unix: a.seen_unix,
            private: a.private,
        })),
    }
}

/// Writes one frame, or gives up after [`WRITE_WAIT`]: a peer that stops reading must not
/// keep a request (or a watch) open.
async fn write_within<M: prost::Message>(
    send: &mut quinn::SendStream,
    msg: &M,
) -> Result<(), WireError> {
    tokio::time::timeout(WRITE_WAIT, wire::write(send, msg))
        .await
        .map_err(|_| WireError::Stalled(WRITE_WAIT))?
}
