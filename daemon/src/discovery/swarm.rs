//! Swarm keys: the 20-byte BitTorrent info-hashes zest announces content under.
//!
//! One swarm per Xet file (docs/PROTOCOL.md, "Swarms", says why not per xorb). The key is
//! never the file's hash itself: public keys are a BLAKE3 derivation of it under a
//! zest-specific context, so a tracker or DHT observer holding a key cannot turn it back
//! into a hash to ask the CAS for; fleet keys are additionally keyed by the fleet secret,
//! so nobody outside the fleet can even tell which file a fleet key stands for.

use xet::XetHash;

use crate::peer::FleetKey;

const PUBLIC_CONTEXT: &str = "zest 2026-11 public swarm key v1";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SwarmKey(pub [u8; 20]);

impl SwarmKey {
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// `%XX` for every byte: what a tracker's `info_hash=` parameter takes.
    pub fn url_encoded(&self) -> String {
        url_encode(&self.0)
    }
}

impl std::fmt::Display for SwarmKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.hex())
    }
}

pub fn url_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("%{b:02X}")).collect()
}

fn truncate(h: [u8; 32]) -> SwarmKey {
    let mut k = [0u8; 20];
    k.copy_from_slice(&h[..20]);
    SwarmKey(k)
}

/// The swarm key public content is announced under (public trackers, the DHT).
pub fn public_key(file: &XetHash) -> SwarmKey {
    truncate(blake3::derive_key(PUBLIC_CONTEXT, file.as_bytes()))
}

/// The swarm key fleet-only content is announced under (the fleet's private trackers).
pub fn fleet_key(fleet: &FleetKey, file: &XetHash) -> SwarmKey {
    truncate(*blake3::keyed_hash(fleet.swarm_key(), file.as_bytes()).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_not_the_hash_and_fleet_keys_depend_on_the_secret() {
        let h: XetHash = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"
            .parse()
            .unwrap();
        let p = public_key(&h);
        assert_ne!(&p.0[..], &h.as_bytes()[..20]);
        assert_eq!(p, public_key(&h), "deterministic");
        let f1 = fleet_key(&FleetKey::from_secret(b"fleet one secret!!"), &h);
        let f2 = fleet_key(&FleetKey::from_secret(b"fleet two secret!!"), &h);
        assert_ne!(f1, f2);
        assert_ne!(f1, p);
        assert_eq!(p.hex().len(), 40);
        assert_eq!(SwarmKey([0xab; 20]).url_encoded().len(), 60);
        assert!(SwarmKey([0x0f; 20]).url_encoded().starts_with("%0F%0F"));
    }
}
