//! What the HTTP and UDP tracker clients share: announce events, replies, errors, the peer
//! id, and the compact peer encodings (BEP 23, BEP 7, BEP 15).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use thiserror::Error;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Started,
    Completed,
    Stopped,
    /// A regular re-announce.
    None,
}

impl Event {
    pub(super) fn param(self) -> Option<&'static str> {
        match self {
            Event::Started => Some("started"),
            Event::Completed => Some("completed"),
            Event::Stopped => Some("stopped"),
            Event::None => None,
        }
    }
}

#[derive(Debug, Error)]
pub enum TrackerError {
    #[error("tracker unreachable: {0}")]
    Http(String),
    #[error("tracker answered HTTP {0}")]
    Status(u16),
    #[error("tracker refused: {0}")]
    Failure(String),
    #[error("tracker reply unreadable: {0}")]
    Reply(String),
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reply {
    pub interval: Option<Duration>,
    pub min_interval: Option<Duration>,
    pub peers: Vec<SocketAddr>,
    /// Nodes in the swarm as the tracker counts them (seeders + leechers), if it says.
    pub swarm: Option<usize>,
}

/// A fresh BitTorrent peer id: `-ZS0100-` and 12 random characters.
pub fn peer_id() -> [u8; 20] {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut id = *b"-ZS0100-000000000000";
    for b in &mut id[8..] {
        *b = ALPHABET[rand::random_range(0..ALPHABET.len())];
    }
    id
}

/// Compact IPv4 peers (BEP 23, and BEP 15 replies): 4 address bytes, 2 port bytes each.
/// Entries no one can dial (port 0, unspecified address) are dropped.
pub fn compact_v4(b: &[u8]) -> impl Iterator<Item = SocketAddr> + '_ {
    b.chunks_exact(6)
        .map(|c| {
            let ip = Ipv4Addr::new(c[0], c[1], c[2], c[3]);
            SocketAddr::from((ip, u16::from_be_bytes([c[4], c[5]])))
        })
        .filter(dialable)
}

/// Compact IPv6 peers (BEP 7 `peers6`, and BEP 15 over IPv6): 16 + 2 bytes each.
pub fn compact_v6(b: &[u8]) -> impl Iterator<Item = SocketAddr> + '_ {
    b.chunks_exact(18)
        .map(|c| {
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&c[..16]);
            SocketAddr::from((Ipv6Addr::from(ip), u16::from_be_bytes([c[16], c[17]])))
        })
        .filter(dialable)
}

pub fn dialable(p: &SocketAddr) -> bool {
    p.port() != 0 && !p.ip().is_unspecified()
}
