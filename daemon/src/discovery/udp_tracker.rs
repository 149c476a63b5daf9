//! The UDP tracker protocol (BEP 15): a `connect` exchange buys a connection id (good for
//! a minute), then each `announce` is one datagram each way. The same announces as the
//! HTTP client, in a fraction of the bytes; replies carry `interval` but no `min interval`.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

use super::swarm::SwarmKey;
use super::tracker_wire::{Event, Reply, TrackerError, compact_v4, compact_v6};
use crate::sync::lock;

const PROTOCOL_ID: u64 = 0x0417_2710_1980;
const CONNECT: u32 = 0;
const ANNOUNCE: u32 = 1;
const ERROR: u32 = 3;
/// BEP 15: a connection id may be used for one minute after it was received.
const CONNECTION_ID_LIFE: Duration = Duration::from_secs(60);
/// Waits for each attempt's reply: BEP 15 asks for 15 s · 2ⁿ, which would leave a download
/// without peers for minutes on a lost datagram; three quick tries cost as much as one HTTP
/// timeout.
const ATTEMPTS: [Duration; 3] = [
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
];
const MAX_DATAGRAM: usize = 64 * 1024;

/// One UDP tracker, `udp://HOST:PORT`.
pub struct UdpTracker {
    host: String,
    connection: Mutex<Option<(u64, Instant)>>,
}

/// What the announce says about us.
pub struct Announce<'a> {
    pub key: &'a SwarmKey,
    pub peer_id: &'a [u8; 20],
    pub left: u64,
    pub event: Event,
    pub num_want: u32,
    pub port: u16,
}

impl UdpTracker {
    /// `url` is `udp://HOST:PORT[/anything]`.
    pub fn new(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("udp://")
            .ok_or_else(|| format!("tracker URL {url:?} is not udp://"))?;
        let host = rest.split('/').next().unwrap_or_default();
        if host
            .rsplit_once(':')
            .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
        {
            return Err(format!("tracker URL {url:?}: expected udp://HOST:PORT"));
        }
        Ok(UdpTracker {
            host: host.to_string(),
            connection: Mutex::new(None),
        })
    }

    pub async fn announce(&self, a: &Announce<'_>) -> Result<Reply, TrackerError> {
        let addr = tokio::net::lookup_host(&self.host)
            .await
            .map_err(|e| TrackerError::Http(format!("resolving {}: {e}", self.host)))?
            .next()
            .ok_or_else(|| TrackerError::Http(format!("{} has no address", self.host)))?;
        let bind: SocketAddr = if addr.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let sock = UdpSocket::bind(bind)
            .await
            .map_err(|e| TrackerError::Http(format!("UDP socket: {e}")))?;
        sock.connect(addr)
            .await
            .map_err(|e| TrackerError::Http(format!("UDP to {addr}: {e}")))?;
        // An id the tracker no longer honours gets an error reply: connect afresh once.
        for fresh in [false, true] {
            let id = match self.valid_connection().filter(|_| !fresh) {
                Some(id) => id,
                None => {
                    let id = connect(&sock).await?;
                    *lock(&self.connection) = Some((id, Instant::now()));
                    id
                }
            };
            let tid: u32 = rand::random();
            let req = announce_request(id, tid, a);
            match exchange(&sock, &req, tid, ANNOUNCE).await {
                Ok(body) => return parse_announce(&body, addr.is_ipv6()),
                Err(TrackerError::Failure(m)) if !fresh => {
                    tracing::debug!(tracker = self.host, "announce refused ({m}); reconnecting");
                    *lock(&self.connection) = None;
                }
                Err(e) => return Err(e),
            }
        }
        Err(TrackerError::Failure("refused twice".into()))
    }

    fn valid_connection(&self) -> Option<u64> {
        lock(&self.connection)
            .filter(|(_, t)| t.elapsed() < CONNECTION_ID_LIFE - Duration::from_secs(5))
            .map(|(id, _)| id)
    }
}

async fn connect(sock: &UdpSocket) -> Result<u64, TrackerError> {
    let tid: u32 = rand::random();
    let mut req = Vec::with_capacity(16);
    req.extend_from_slice(&PROTOCOL_ID.to_be_bytes());
    req.extend_from_slice(&CONNECT.to_be_bytes());
    req.extend_from_slice(&tid.to_be_bytes());
    let body = exchange(sock, &req, tid, CONNECT).await?;
    let id = body
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| TrackerError::Reply("short connect reply".into()))?;
    Ok(id)
}

fn announce_request(connection_id: u64, tid: u32, a: &Announce<'_>) -> Vec<u8> {
    let event: u32 = match a.event {
        Event::None => 0,
        Event::Completed => 1,
        Event::Started => 2,
        Event::Stopped => 3,
    };
    let mut r = Vec::with_capacity(98);
    r.extend_from_slice(&connection_id.to_be_bytes());
    r.extend_from_slice(&ANNOUNCE.to_be_bytes());
    r.extend_from_slice(&tid.to_be_bytes());
    r.extend_from_slice(&a.key.0);
    r.extend_from_slice(a.peer_id);
    r.extend_from_slice(&0u64.to_be_bytes()); // downloaded
    r.extend_from_slice(&a.left.to_be_bytes());
    r.extend_from_slice(&0u64.to_be_bytes()); // uploaded
    r.extend_from_slice(&event.to_be_bytes());
    r.extend_from_slice(&0u32.to_be_bytes()); // IP: the packet's source
    r.extend_from_slice(&rand::random::<u32>().to_be_bytes()); // key
    r.extend_from_slice(&a.num_want.to_be_bytes());
    r.extend_from_slice(&a.port.to_be_bytes());
    r
}

/// Sends `req` until a reply with our transaction id and `action` arrives; returns what
/// follows the 8-byte header. An error reply (action 3) is a [`TrackerError::Failure`].
async fn exchange(
    sock: &UdpSocket,
    req: &[u8],
    tid: u32,
    action: u32,
) -> Result<Vec<u8>, TrackerError> {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    for wait in ATTEMPTS {
        sock.send(req)
            .await
            .map_err(|e| TrackerError::Http(format!("UDP send: {e}")))?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let n = match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
                Err(_) => break,
                // ICMP port unreachable shows up here: nobody listens.
                Ok(Err(e)) => return Err(TrackerError::Http(format!("UDP receive: {e}"))),
                Ok(Ok(n)) => n,
            };
            let Some(head) = buf.get(..n).filter(|b| b.len() >= 8) else {
                continue;
            };
            let got_action = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
            let got_tid = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
            if got_tid != tid {
                continue; // a late reply to an earlier attempt
            }
            let body = head[8..].to_vec();
            if got_action == ERROR {
                return Err(TrackerError::Failure(
                    String::from_utf8_lossy(&body).into_owned(),
                ));
            }
            if got_action != action {
                return Err(TrackerError::Reply(format!(
                    "action {got_action} in reply to {action}"
                )));
            }
            return Ok(body);
        }
    }
    Err(TrackerError::Http("no reply (UDP)".into()))
}

/// interval, leechers, seeders, then 6-byte (IPv4) or 18-byte (IPv6) peers.
pub fn parse_announce(body: &[u8], ipv6: bool) -> Result<Reply, TrackerError> {
    let word = |i: usize| {
        body.get(i * 4..i * 4 + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let interval = word(0).ok_or_else(|| TrackerError::Reply("short announce reply".into()))?;
    let peers_bytes = body.get(12..).unwrap_or_default();
    let peers = if ipv6 {
        compact_v6(peers_bytes).collect()
    } else {
        compact_v4(peers_bytes).collect()
    };
    let swarm = match (word(1), word(2)) {
        (Some(leechers), Some(seeders)) => Some(leechers as usize + seeders as usize),
        _ => None,
    };
    Ok(Reply {
        interval: (interval > 0).then(|| Duration::from_secs(u64::from(interval))),
        min_interval: None,
        peers,
        swarm,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announce_layout_and_replies() {
        let key = SwarmKey([7; 20]);
        let id = *b"-ZS0100-abcdefghijkl";
        let a = Announce {
            key: &key,
            peer_id: &id,
            left: 5,
            event: Event::Started,
            num_want: 50,
            port: 4747,
        };
        let r = announce_request(0x1122_3344_5566_7788, 9, &a);
        assert_eq!(r.len(), 98, "BEP 15 announce is 98 bytes");
        assert_eq!(&r[..8], &0x1122_3344_5566_7788u64.to_be_bytes());
        assert_eq!(&r[8..12], &1u32.to_be_bytes());
        assert_eq!(&r[16..36], &[7; 20]);
        assert_eq!(&r[64..72], &5u64.to_be_bytes(), "left");
        assert_eq!(&r[80..84], &2u32.to_be_bytes(), "started");
        assert_eq!(&r[96..98], &4747u16.to_be_bytes());

        let mut body = Vec::new();
        for w in [1800u32, 1, 2] {
            body.extend_from_slice(&w.to_be_bytes());
        }
        body.extend_from_slice(&[127, 0, 0, 1, 0x12, 0x8b, 10, 0, 0, 2, 0, 0]);
        let reply = parse_announce(&body, false).unwrap();
        assert_eq!(reply.interval, Some(Duration::from_secs(1800)));
        assert_eq!(reply.peers, vec!["127.0.0.1:4747".parse().unwrap()]);
        assert_eq!(reply.swarm, Some(3), "1 leecher + 2 seeders");
        assert!(parse_announce(&[0, 0], false).is_err());

        assert!(UdpTracker::new("udp://tracker.example:6969/announce").is_ok());
        for bad in ["udp://nohost", "udp://:1", "http://x:1", "udp://h:99999"] {
            assert!(UdpTracker::new(bad).is_err(), "{bad}");
        }
    }
}
