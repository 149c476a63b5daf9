//! zestd's settings: a TOML file (`--config`) holds every option, flags override it, and
//! what neither sets takes the default documented in the README.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

/// The UDP port zestd listens on when nothing says otherwise.
pub const DEFAULT_PORT: u16 = 4747;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("reading the config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
}

/// The config file. Every key is optional; unknown keys are an error, so a typo is not
/// silently ignored.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub socket: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub cache_dir: Option<PathBuf>,
    pub endpoint: Option<String>,
    pub fetch_concurrency: Option<usize>,
    /// `ADDR:PORT`, or `"off"` to serve nobody.
    pub listen: Option<String>,
    pub peers: Option<Vec<String>>,
    /// Public BitTorrent trackers: public content only.
    pub trackers: Option<Vec<String>>,
    /// The fleet's own trackers: private content too, under fleet swarm keys.
    pub private_trackers: Option<Vec<String>>,
    pub dht: Option<bool>,
    pub dht_bootstrap: Option<Vec<String>>,
    pub dht_port: Option<u16>,
    pub mdns: Option<bool>,
    pub fleet_key_file: Option<PathBuf>,
    /// Offer public content to peers outside the fleet (default true).
    pub seed_public: Option<bool>,
    pub max_peers: Option<usize>,
    /// The local Hugging Face endpoint: `ADDR:PORT`, or `"off"`.
    pub hub_listen: Option<String>,
    /// hf_xet's Unix-socket door: a path, or `"off"`.
    pub xet_socket: Option<String>,
    /// What peers may take from this node per second (`20MiB`, `400Mbit`, `off`).
    pub max_upload_rate: Option<String>,
    /// What this node may take from peers and the origin together per second.
    pub max_download_rate: Option<String>,
    /// Prometheus `/metrics` and `/healthz`: `ADDR:PORT`, or `"off"`.
    pub metrics_listen: Option<String>,
    /// While the Hub cannot answer, a branch resolves to the commit the fleet saw it point
    /// at last, with a warning (default false: the pull fails as it would without zest).
    pub allow_stale_refs: Option<bool>,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.display().to_string(),
            message: e.to_string(),
        })
    }
}

/// Where zestd listens for peers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    Off,
    /// Given by the user: failing to bind it is an error.
    Explicit(String),
    /// The default port on every interface; another free port if it is taken.
    Default,
}

pub fn parse_listen(s: &str) -> Listen {
    match s.trim() {
        "off" | "none" | "" => Listen::Off,
        other => Listen::Explicit(other.to_string()),
    }
}

/// Relative paths in a config file are relative to the file.
pub fn resolve_relative(base: &Path, p: PathBuf) -> PathBuf {
    if p.is_absolute() {
        p
    } else {
        base.parent().unwrap_or(Path::new(".")).join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_option_parses_and_typos_are_refused() {
        let text = r#"
socket = "/run/zest.sock"
state_dir = "/var/lib/zest"
cache_dir = "/data/hf"
endpoint = "http://127.0.0.1:9"
fetch_concurrency = 8
listen = "0.0.0.0:4747"
peers = ["10.0.0.2:4747"]
trackers = ["http://127.0.0.1:6969/announce"]
private_trackers = ["http://127.0.0.1:6970/announce"]
dht = true
dht_bootstrap = ["127.0.0.1:6881"]
dht_port = 6881
mdns = false
fleet_key_file = "fleet.key"
seed_public = false
max_peers = 12
"#;
        let c = FileConfig::parse(text, Path::new("/etc/zest/zestd.toml")).unwrap();
        assert_eq!(c.max_peers, Some(12));
        assert_eq!(c.dht, Some(true));
        assert_eq!(c.seed_public, Some(false));
        assert_eq!(
            c.private_trackers.as_deref(),
            Some(&["http://127.0.0.1:6970/announce".to_string()][..])
        );
        let err = FileConfig::parse("trakcers = []", Path::new("x.toml")).unwrap_err();
        assert!(err.to_string().contains("trakcers"), "{err}");
        assert_eq!(
            resolve_relative(Path::new("/etc/zest/zestd.toml"), "fleet.key".into()),
            PathBuf::from("/etc/zest/fleet.key")
        );
        assert_eq!(parse_listen("off"), Listen::Off);
    }
}
