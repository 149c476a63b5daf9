//! Shared fixtures for zest's integration tests: generated test files, the pinned Python
//! environment holding hf_xet and huggingface_hub, and small helpers.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Deterministic xorshift64* generator (no dependency, same bytes on every machine).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
    /// Standard normal sample (Box–Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let u2 = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
    }
}

pub fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; n];
    Rng::new(seed).fill(&mut v);
    v
}

/// Model-weight-like bytes: float32 normals truncated to bfloat16, little-endian.
pub fn bf16_weights(n_bytes: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(n_bytes);
    while out.len() + 2 <= n_bytes {
        let bits = (rng.normal() * 0.02).to_bits();
        out.extend_from_slice(&((bits >> 16) as u16).to_le_bytes());
    }
    out.resize(n_bytes, 0);
    out
}

pub fn repetitive_text(n_bytes: usize) -> Vec<u8> {
    let line = b"The quick brown fox jumps over the lazy dog; zest seeds what the cache holds.\n";
    let mut out = Vec::with_capacity(n_bytes);
    let mut i = 0u64;
    while out.len() < n_bytes {
        out.extend_from_slice(line);
        // A counter every so often keeps boundaries content-defined, not periodic.
        if i.is_multiple_of(97) {
            out.extend_from_slice(format!("line {i}\n").as_bytes());
        }
        i += 1;
    }
    out.truncate(n_bytes);
    out
}

/// The file set every oracle test runs over.
pub fn oracle_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("empty.bin", Vec::new()),
        ("one-byte.bin", vec![0x42]),
        ("8191.bin", random_bytes(8191, 1)),
        ("8192.bin", random_bytes(8192, 2)),
        ("131072.bin", random_bytes(131_072, 3)),
        ("131073.bin", random_bytes(131_073, 4)),
        ("zeros-10MiB.bin", vec![0u8; 10 << 20]),
        ("random-6MiB.bin", random_bytes(6 << 20, 5)),
        ("text-3MiB.txt", repetitive_text(3 << 20)),
        ("bf16-64MiB.safetensors", bf16_weights(64 << 20, 6)),
    ]
}

/// Root of the workspace (tests run from their crate directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The Python interpreter with the pinned hf_xet and huggingface_hub.
///
/// `ZEST_PYTHON` names it; otherwise the workspace's `.venv`, which `scripts/test.sh`
/// creates. A missing interpreter is a setup error, so this panics with what to run.
pub fn python() -> PathBuf {
    let p = std::env::var_os("ZEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/python"));
    assert!(
        p.exists(),
        "no Python environment with hf_xet at {}: run scripts/test.sh (or set ZEST_PYTHON)",
        p.display()
    );
    assert!(
        has_test_hooks(&p),
        "{} lacks zest_test_hooks.pth (without it huggingface_hub's caches are \
         nondeterministic, see tests/python/zest_test_hooks.py): run scripts/test.sh",
        p.display()
    );
    p
}

/// Whether the virtualenv of `python` (`<venv>/bin/python`) has the test hooks installed.
fn has_test_hooks(python: &Path) -> bool {
    let Some(lib) = python
        .parent()
        .and_then(Path::parent)
        .map(|v| v.join("lib"))
    else {
        return false;
    };
    std::fs::read_dir(lib)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| e.path().join("site-packages/zest_test_hooks.pth").is_file())
}

/// Runs a Python snippet with arguments; returns stdout, panicking with stderr on failure.
pub fn run_python(script: &str, args: &[&str]) -> String {
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("starting python: {e}"));
    assert!(
        out.status.success(),
        "python failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A fresh scratch directory under the target dir, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        let dir = workspace_root()
            .join("target")
            .join("test-scratch")
            .join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        Scratch(dir)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // ZEST_KEEP_SCRATCH=1 keeps daemons' logs and caches for a look afterwards.
        if std::env::var_os("ZEST_KEEP_SCRATCH").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}

pub mod harness;
pub mod hub;
pub mod swarms;
