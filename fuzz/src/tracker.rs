//! BitTorrent tracker replies: bencoded HTTP announce answers and UDP announce packets.

use zestd::discovery::{bencode, tracker, udp_tracker};

pub fn run(data: &[u8]) {
    match bencode::decode_first(data) {
        Ok((_, rest)) => {
            assert!(rest <= data.len());
            assert_eq!(bencode::decode(data).is_ok(), rest == 0);
        }
        Err(_) => assert!(bencode::decode(data).is_err()),
    }
    if let Ok(reply) = tracker::parse_reply(data) {
        // Compact peers are 6 bytes each: a reply cannot name more peers than it has bytes.
        assert!(reply.peers.len() <= data.len() / 6);
    }
    for ipv6 in [false, true] {
        if let Ok(reply) = udp_tracker::parse_announce(data, ipv6) {
            assert!(reply.peers.len() <= data.len() / 6);
        }
    }
}
