//! Fleet membership: daemons that share a secret prove it to each other on every QUIC
//! connection, without sending the secret or anything replayable.
//!
//! The proof is `BLAKE3-keyed(auth key, role || exporter)`, where the exporter is 32 bytes
//! of TLS keying material (RFC 5705/8446 exporter, label [`EXPORTER_LABEL`]) that only the
//! two ends of this one connection know. A proof seen on one connection is useless on any
//! other, and the role byte stops a peer from reflecting our own proof back at us.

use std::path::Path;

use thiserror::Error;

const AUTH_CONTEXT: &str = "zest 2026-11 fleet auth key v1";
const SWARM_CONTEXT: &str = "zest 2026-11 fleet swarm key v1";
const EXPORTER_LABEL: &[u8] = b"EXPORTER-zest-fleet-v1";
/// Shortest secret accepted: 128 bits.
pub const MIN_SECRET: usize = 16;

#[derive(Debug, Error)]
pub enum FleetKeyError {
    #[error("reading the fleet key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "the fleet key in {0} is shorter than {MIN_SECRET} bytes; make one with `head -c 32 /dev/urandom | base64 > FILE`"
    )]
    TooShort(String),
}

/// Which end of the connection computed a proof.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Dialler,
    Acceptor,
}

impl Role {
    fn byte(self) -> u8 {
        match self {
            Role::Dialler => b'd',
            Role::Acceptor => b'a',
        }
    }
}

/// The keys a fleet secret stands for. The secret itself is not kept.
#[derive(Clone)]
pub struct FleetKey {
    auth: [u8; 32],
    swarm: [u8; 32],
}

impl std::fmt::Debug for FleetKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FleetKey(..)")
    }
}

impl FleetKey {
    /// The secret is the file's bytes with surrounding whitespace removed.
    pub fn from_file(path: &Path) -> Result<Self, FleetKeyError> {
        let raw = std::fs::read(path).map_err(|source| FleetKeyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let secret = raw.trim_ascii();
        if secret.len() < MIN_SECRET {
            return Err(FleetKeyError::TooShort(path.display().to_string()));
        }
        Ok(Self::from_secret(secret))
    }

    pub fn from_secret(secret: &[u8]) -> Self {
        FleetKey {
            auth: blake3::derive_key(AUTH_CONTEXT, secret),
            swarm: blake3::derive_key(SWARM_CONTEXT, secret),
        }
    }

    /// The key fleet-only swarm keys are derived with (see `discovery::swarm`).
    pub fn swarm_key(&self) -> &[u8; 32] {
        &self.swarm
    }

    fn proof_for(&self, role: Role, exporter: &[u8; 32]) -> [u8; 32] {
        let mut h = blake3::Hasher::new_keyed(&self.auth);
        h.update(&[role.byte()]);
        h.update(exporter);
        *h.finalize().as_bytes()
    }

    /// Our proof on `conn`, sent in our hello.
    pub fn proof(&self, conn: &quinn::Connection, role: Role) -> Vec<u8> {
        match exporter(conn) {
            Some(x) => self.proof_for(role, &x).to_vec(),
            None => Vec::new(),
        }
    }

    /// Whether `theirs`, from the other end's hello, proves it holds the same secret.
    pub fn verify(&self, conn: &quinn::Connection, their_role: Role, theirs: &[u8]) -> bool {
        let Some(x) = exporter(conn) else {
            return false;
        };
        let want = blake3::Hash::from(self.proof_for(their_role, &x));
        // blake3::Hash compares in constant time.
        <[u8; 32]>::try_from(theirs).is_ok_and(|t| want == blake3::Hash::from(t))
    }
}

fn exporter(conn: &quinn::Connection) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    conn.export_keying_material(&mut out, EXPORTER_LABEL, b"")
        .ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_depend_on_secret_role_and_connection() {
        let a = FleetKey::from_secret(b"0123456789abcdef-secret");
        let b = FleetKey::from_secret(b"0123456789abcdef-other");
        let x = [7u8; 32];
        let y = [8u8; 32];
        assert_ne!(
            a.proof_for(Role::Dialler, &x),
            b.proof_for(Role::Dialler, &x)
        );
        assert_ne!(
            a.proof_for(Role::Dialler, &x),
            a.proof_for(Role::Acceptor, &x)
        );
        assert_ne!(
            a.proof_for(Role::Dialler, &x),
            a.proof_for(Role::Dialler, &y)
        );
        assert_ne!(a.swarm_key(), b.swarm_key());
        assert_ne!(a.swarm_key(), &a.auth);
    }

    #[test]
    fn short_or_missing_key_files_are_refused() {
        let dir = std::env::temp_dir().join(format!("zest-fleet-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let short = dir.join("short");
        std::fs::write(&short, "  tiny \n").unwrap();
        assert!(matches!(
            FleetKey::from_file(&short),
            Err(FleetKeyError::TooShort(_))
        ));
        assert!(matches!(
            FleetKey::from_file(&dir.join("missing")),
            Err(FleetKeyError::Read { .. })
        ));
        let ok = dir.join("ok");
        std::fs::write(&ok, "0123456789abcdef0123\n").unwrap();
        let k = FleetKey::from_file(&ok).unwrap();
        assert_eq!(
            k.swarm_key(),
            FleetKey::from_secret(b"0123456789abcdef0123").swarm_key()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
