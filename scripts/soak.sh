#!/usr/bin/env bash
# The soak (issue 16, part 5): several zestd, repeated pulls of several repos, daemons killed
# and restarted at random, caches wiped under them, a lying peer; ends with every cache
# compared to huggingface_hub's and daemon 0's memory and open files over time.
#
#   scripts/soak.sh [MINUTES=30] [DAEMONS=4]
#
# Needs what scripts/test.sh installs (the test venv with huggingface_hub); prints a JSON
# summary last and exits non-zero if a cache differs or a final pull fails. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes="${1:-30}"
daemons="${2:-4}"
export ZEST_PYTHON="${ZEST_PYTHON:-$PWD/.venv/bin/python}"
cargo build --release --locked --workspace --bins
target="${CARGO_TARGET_DIR:-target}"
exec "$target/release/zest-soak" "$minutes" "$daemons" "$target/soak"
