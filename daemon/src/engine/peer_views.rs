//! What peers hold of a file, asked of them all at once (`have`), as the planner's
//! [`PeerState`]s beside the connection to reach each one.

use std::collections::HashMap;
use std::time::Duration;

use zest_proto::peer::FileHave;

use super::file_ctx::FileCtx;
use super::planner::{PeerState, covered};
use crate::peer::PeerConn;
use crate::peer::wire::unflatten;

/// One peer's answer about the file, and the way to reach it.
pub struct View {
    pub conn: PeerConn,
    pub state: PeerState,
}

/// How long a `have` may take: the download loop waits on it, so a frozen peer must not
/// hold it up for long (and is benched, see [`refresh`]).
const HAVE_WAIT: Duration = Duration::from_millis(500);

/// Asks every peer what it holds of the file, at once. Peers that answer nonsense are left
/// out this round; peers that do not answer in time are benched, so the next rounds do
/// not wait on them again.
pub async fn refresh(ctx: &FileCtx, peers: &[PeerConn]) -> HashMap<String, View> {
    let total = ctx.live.total_chunks();
    let asks = peers.iter().map(|p| {
        let p = p.clone();
        let hash = ctx.hash;
        async move {
            let r = tokio::time::timeout(HAVE_WAIT, p.have(&[hash])).await;
            (p, r)
        }
    });
    let mut views = HashMap::new();
    for (p, r) in futures_util::future::join_all(asks).await {
        let files = match r {
            Ok(Ok(files)) => files,
            Err(_) | Ok(Err(crate::peer::PeerError::Stalled(_))) => {
                if let Some(set) = &ctx.engine.peers {
                    set.bench(&p.node_id, "did not answer `have` in time");
                }
                continue;
            }
            Ok(Err(_)) => continue,
        };
        let Some(fh) = files.into_iter().find(|f| f.file == ctx.hash.as_bytes()) else {
            continue;
        };
        if let Some(state) = parse_state(&p.node_id, fh, total) {
            views.insert(p.node_id.clone(), View { conn: p, state });
        }
    }
    views
}

pub fn parse_state(id: &str, fh: FileHave, total: u32) -> Option<PeerState> {
    if fh.total_chunks != 0 && fh.total_chunks != total {
        // Not the file the CAS describes; nothing it says about it is useful.
        return None;
    }
    let held = unflatten(&fh.held)?;
    let fetching = unflatten(&fh.fetching)?;
    if held.last().is_some_and(|r| r.1 > total) || fetching.last().is_some_and(|r| r.1 > total) {
        return None;
    }
    Some(PeerState {
        id: id.to_string(),
        involved: fh.total_chunks != 0 || !held.is_empty() || !fetching.is_empty(),
        complete: fh.complete && covered(&held, 0, total),
        held,
        fetching,
        rate: 0.0,
        quiet: None,
    })
}
