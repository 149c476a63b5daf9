//! Every fuzz target over its committed corpus and every past finding (`fuzz/regressions`),
//! then over seeded mutations of that corpus: on stable Rust, in CI, so what the
//! coverage-guided runs found stays fixed even where no nightly toolchain is installed.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use zest_fuzz::{TARGETS, Target};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The files of `corpus/<target>` and `regressions/<target>`, sorted by path.
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root().join(dir).join(target)) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_file() {
                let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                out.push((p, bytes));
            }
        }
    }
    out.sort();
    out
}

fn survives(t: Target, data: &[u8]) -> bool {
    catch_unwind(AssertUnwindSafe(|| t(data))).is_ok()
}

#[test]
fn every_target_survives_its_corpus_and_past_findings() {
    let mut failed = Vec::new();
    for (name, t) in TARGETS {
        let inputs = inputs(name);
        assert!(
            inputs
                .iter()
                .any(|(p, _)| p.starts_with(root().join("corpus"))),
            "target {name} has no corpus (cargo run -p zest-fuzz --bin zest-fuzz-seeds)"
        );
        for (p, data) in &inputs {
            if !survives(*t, data) {
                failed.push(p.display().to_string());
            }
        }
    }
    assert!(failed.is_empty(), "targets panicked on: {failed:#?}");
}

/// xorshift64*: a fixed sequence, so a failure here is the same failure on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const INTERESTING: &[u8] = &[0, 1, 0x7f, 0x80, 0xff, b'"', b'-', b'0', b'e', b'{', b'['];

fn mutate(rng: &mut Rng, data: &mut Vec<u8>, other: &[u8]) {
    for _ in 0..1 + rng.below(4) {
        let len = data.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                data[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                data.splice(i..i, bytes);
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(16));
                data.drain(i..i + n);
            }
            4 => data.truncate(rng.below(len + 1)),
            5 if !other.is_empty() => {
                // Splice in a piece of another input of the same target.
                let a = rng.below(other.len());
                let b = a + 1 + rng.below(other.len() - a);
                let i = rng.below(len + 1);
                data.splice(i..i, other[a..b].iter().copied());
            }
            6 if len >= 4 => {
                // Overwrite a little-endian or big-endian word (lengths and counts).
                let i = rng.below(len - 3);
                let v = [0u32, 1, 0xff, 0xffff, 0x7fff_ffff, u32::MAX][rng.below(6)];
                let b = if rng.below(2) == 0 {
                    v.to_le_bytes()
                } else {
                    v.to_be_bytes()
                };
                data[i..i + 4].copy_from_slice(&b);
            }
            _ => {}
        }
    }
}

#[test]
fn every_target_survives_seeded_mutations_of_its_corpus() {
    let per_target: usize = std::env::var("ZEST_FUZZ_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let findings = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-findings");
    let mut failed = Vec::new();
    for (ti, (name, t)) in TARGETS.iter().enumerate() {
        let inputs = inputs(name);
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (ti as u64 + 1));
        for i in 0..per_target {
            let mut data = inputs[i % inputs.len()].1.clone();
            let other = &inputs[rng.below(inputs.len())].1;
            mutate(&mut rng, &mut data, other);
            if !survives(*t, &data) {
                std::fs::create_dir_all(&findings).expect("target dir is writable");
                let p = findings.join(format!("{name}-{i}"));
                std::fs::write(&p, &data).expect("target dir is writable");
                failed.push(p.display().to_string());
                break;
            }
        }
    }
    assert!(
        failed.is_empty(),
        "targets panicked on (move each to fuzz/regressions/<target>/ once fixed): {failed:#?}"
    );
}
