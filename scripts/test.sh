#!/usr/bin/env bash
# The one test command: installs what the tests need on a fresh machine, then runs
# formatting and lint checks and every test. CI (.ci/run) calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

log "Python environment with the reference implementations (tests/requirements.txt)"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -c 'import importlib.metadata as m, sys; sys.exit(0 if (m.version("hf_xet"), m.version("huggingface_hub"), m.version("transformers"), m.version("prometheus_client"), m.version("aioquic")) == ("1.8.0", "2.4.0", "5.24.0", "0.26.0", "1.7.2") else 1)' 2>/dev/null; then
  .venv/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
fi
# The Python package installs as users install it (pure Python, no network needed).
.venv/bin/pip install --quiet --disable-pip-version-check --no-deps ./python
# A test-only hook that removes a race in huggingface_hub's shared blob store, so caches it
# writes are deterministic (tests/python/zest_test_hooks.py says which race).
cp tests/python/zest_test_hooks.py tests/python/zest_test_hooks.pth \
  "$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/"
export ZEST_PYTHON="$PWD/.venv/bin/python"

log "System packages the tests start (opentracker, iproute2 for network namespaces, systemd-analyze)"
if ! command -v opentracker >/dev/null 2>&1 || ! command -v ip >/dev/null 2>&1 || ! command -v sysctl >/dev/null 2>&1 || ! command -v systemd-analyze >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq opentracker iproute2 procps systemd
fi

log "aquatic_udp, a second BitTorrent tracker implementation beside opentracker (crates.io)"
if ! command -v aquatic_udp >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/aquatic_udp" ]; then
  cargo install aquatic_udp --locked --version 0.9.0 --no-default-features
fi

log "Rust components"
for c in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
done

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "cargo build --bins (tests run zestd and zestctl as real processes)"
cargo build --workspace --release --bins --locked

log "cargo test (release: the oracle tests hash tens of MiB)"
cargo test --workspace --release --locked

log "Fuzzing, a short coverage-guided run of every target (scripts/fuzz.sh; needs nightly)"
# The stable replay of the corpus and past findings ran above (zest-fuzz's tests); this
# looks for new ones. Without a nightly toolchain only the replay runs, and this says so.
if cargo +nightly --version >/dev/null 2>&1; then
  scripts/fuzz.sh "${ZEST_CI_FUZZ_SECONDS:-15}"
else
  echo "no nightly toolchain: coverage-guided fuzzing skipped; the corpus replay ran above"
fi
