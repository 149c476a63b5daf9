#!/usr/bin/env bash
# What a fleet asks of the Hub (issue 17): Hub API requests plus CAS reconstructions of a
# crowd of N fleet members pulling the same repo at once, N = 1, 4, 8, counted by the test
# hub (in front of Hugging Face's reference CAS); and the time of a crowd pull while the Hub
# answers 429 to most requests, against the same crowd unthrottled. Everything on loopback.
# Prints a Markdown report.
#
#   benches/hub_requests.sh [RUNS=3] [NODES=1,4,8]
#
# Needs the test environment (scripts/test.sh installs the reference CAS server).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
nodes=${2:-1,4,8}
cargo build --release -q --workspace --bins
echo "Command: benches/hub_requests.sh $runs $nodes (commit $(git rev-parse --short HEAD), $(nproc) cores)"
echo
"${CARGO_TARGET_DIR:-$PWD/target}/release/zest-hubbench" --runs "$runs" --nodes "$nodes"
