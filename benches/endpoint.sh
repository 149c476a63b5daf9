#!/usr/bin/env bash
# Cold snapshot_download of a ~1 GiB, 4-shard model by huggingface_hub + hf_xet, straight
# from Hugging Face's reference CAS server (behind the test hub, on loopback) against the
# same call with HF_ENDPOINT on a fresh zestd's local endpoint (no peers: every byte from the
# origin, through zestd, verified). Alternating, fresh caches each run; the client uses
# zestd's own cache, the default deployment. Prints a Markdown report: wall seconds, CPU
# seconds (client, zestd, and the origin's: test hub and CAS are one process), peak RSS,
# origin bytes, ratios, and all three processes' CPU over the cores (the wall time no
# schedule beats on a machine they share).
#
#   benches/endpoint.sh [SIZE_BYTES] [RUNS] [RATE]
#
# With RATE (e.g. 1gbit; needs root and iproute2), the origin is behind a shaped link as a
# CDN is: the hub in network namespace ze-origin (10.78.0.1), zestd and the client in
# ze-client (10.78.0.2), one veth pair whose origin side is a token bucket at RATE; both
# namespaces are created here and removed on exit. Without RATE everything is on this
# machine's loopback, where the 2 cores, not the link, are the limit.
#
# ZEST_BENCH_CALL=files downloads the model's files one by one with hf_hub_download (as
# transformers' from_pretrained does), which asks `resolve` with HEAD first, instead of
# snapshot_download, which takes every file's metadata from one tree listing.
#
# ZEST_BENCH_CLIENT_CACHE=own gives the client a cache of its own beside zestd's (the
# deployment where huggingface_hub cannot link zestd's files and writes its own copy).
#
# ZEST_BENCH_KEEP=1 keeps each run's zestd log (RUST_LOG passes through), with the client's
# start and end, as bench-data/pull-SIZE/zestd-runN.log.
#
# Needs the test environment (scripts/test.sh creates .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-1073741824}
runs=${2:-3}
rate=${3:-}
py=${ZEST_PYTHON:-$PWD/.venv/bin/python}
[ -x "$py" ] || { echo "no Python env at $py: run scripts/test.sh first" >&2; exit 1; }
cargo build --release -q --workspace --bins
bin=${CARGO_TARGET_DIR:-$PWD/target}/release
data=${ZEST_BENCH_DIR:-$PWD/bench-data}/pull-$size
mkdir -p "$data"
work=$(mktemp -d "$data/run.XXXX")
pids=()
O=() C=() host=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -n "$rate" ]; then
    sleep 0.3
    ip netns del ze-origin 2>/dev/null || true
    ip netns del ze-client 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
if [ -n "$rate" ]; then
  [ "$(id -u)" = 0 ] || { echo "a shaped origin needs root (network namespaces and tc)" >&2; exit 1; }
  exec 9> /tmp/zest-endpoint-bench.lock
  flock -n 9 || { echo "another shaped endpoint benchmark is running" >&2; exit 1; }
  ip netns del ze-origin 2>/dev/null || true
  ip netns del ze-client 2>/dev/null || true
  ip netns add ze-origin
  ip netns add ze-client
  ip link add ze-o type veth peer name ze-c
  ip link set ze-o netns ze-origin
  ip link set ze-c netns ze-client
  ip -n ze-origin addr add 10.78.0.1/24 dev ze-o
  ip -n ze-client addr add 10.78.0.2/24 dev ze-c
  for ns in ze-origin ze-client; do ip -n "$ns" link set lo up; done
  ip -n ze-origin link set ze-o up
  ip -n ze-client link set ze-c up
  # Everything the origin sends goes through this bucket, as through a CDN link.
  ip netns exec ze-origin tc qdisc add dev ze-o root tbf rate "$rate" burst 256kb latency 100ms
  O=(ip netns exec ze-origin) C=(ip netns exec ze-client) host=(--host 10.78.0.1)
fi

"${O[@]}" "$bin/zest-testhub" "${host[@]}" --fixture bench --bench-bytes "$size" --data "$data/hub" > "$work/hub.json" 2> "$work/hub.log" &
hpid=$!; pids+=($hpid)
for _ in $(seq 1200); do [ -s "$work/hub.json" ] && break; sleep 0.5; done
[ -s "$work/hub.json" ] || { echo "the test hub did not start: $(tail -5 "$work/hub.log")" >&2; exit 1; }
hub=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["endpoint"])' "$work/hub.json")
repo=zest-bench/model-1g
stats() { "${C[@]}" curl -s "$hub/_test/stats" | "$py" -c 'import json,sys; print(json.load(sys.stdin)["xorb_bytes"])'; }
now() { date +%s.%N; }
tick=$(getconf CLK_TCK)
# utime + stime of a live process, in seconds.
proc_cpu() { awk -v t="$tick" '{print ($14 + $15) / t}' "/proc/$1/stat"; }
call='import sys; from huggingface_hub import snapshot_download; print(snapshot_download(sys.argv[1]))'
if [ "${ZEST_BENCH_CALL:-snapshot}" = files ]; then
  call='
import sys
from huggingface_hub import HfApi, hf_hub_download
for name in HfApi().list_repo_files(sys.argv[1]):
    path = hf_hub_download(sys.argv[1], name)
print(path[: -len(name) - 1])'
fi
client() { # ENDPOINT CACHE HOME -> client wall, cpu and rss in $work/client.*
  local t0 t1
  t0=$(now); t_start=$(date -u +%T.%N)
  "${C[@]}" env HF_ENDPOINT="$1" HF_HUB_CACHE="$2" HF_HOME="$3" HF_HUB_DISABLE_PROGRESS_BARS=1 \
    /usr/bin/time -f '%U %S %M' -o "$work/client.time" \
    "$py" -c "$call" "$repo" > "$work/client.out"
  t1=$(now); t_end=$(date -u +%T.%N)
  echo "$t1 - $t0" | bc -l > "$work/client.wall"
}

d_wall=(); d_cpu=(); d_rss=(); d_bytes=(); e_wall=(); e_cpu=(); e_zcpu=(); e_rss=(); e_zrss=(); e_bytes=()
# The origin's CPU too (the test hub and the reference CAS are one process): on loopback the
# three processes share the cores, and the sum says how much of the wall time is CPU.
d_ocpu=(); e_ocpu=()
for i in $(seq "$runs"); do
  # Direct: huggingface_hub + hf_xet straight to the hub and CAS.
  rm -rf "$work/d"; mkdir -p "$work/d"
  b0=$(stats); o0=$(proc_cpu "$hpid")
  client "$hub" "$work/d/cache" "$work/d/home"
  b1=$(stats); o1=$(proc_cpu "$hpid")
  d_ocpu+=("$(echo "$o1 - $o0" | bc -l)")
  read -r u s m < "$work/client.time"
  d_wall+=("$(cat "$work/client.wall")"); d_cpu+=("$(echo "$u + $s" | bc -l)"); d_rss+=("$m"); d_bytes+=("$((b1 - b0))")
  ref=$(tail -1 "$work/client.out")

  # Through a fresh zestd's endpoint, the client on zestd's own cache (unless told).
  rm -rf "$work/e"; mkdir -p "$work/e"
  "${C[@]}" "$bin/zestd" --socket "$work/e/sock" --state-dir "$work/e/state" --cache-dir "$work/e/cache" \
    --endpoint "$hub" --listen off --no-mdns --hub-listen 127.0.0.1:0 --xet-socket off ${ZEST_BENCH_ZESTD_ARGS:-} 2> "$work/e/log" &
  zpid=$!; pids+=($zpid)
  for _ in $(seq 200); do [ -S "$work/e/sock" ] && break; sleep 0.05; done
  ep=$("$bin/zestctl" --socket "$work/e/sock" status --json | "$py" -c 'import json,sys; print(json.load(sys.stdin)["hub_endpoint"])')
  z0=$(proc_cpu "$zpid"); b0=$(stats); o0=$(proc_cpu "$hpid")
  ccache="$work/e/cache"
  [ "${ZEST_BENCH_CLIENT_CACHE:-zestd}" != own ] || ccache="$work/e/client-cache"
  client "$ep" "$ccache" "$work/e/home"
  b1=$(stats); z1=$(proc_cpu "$zpid"); o1=$(proc_cpu "$hpid")
  e_ocpu+=("$(echo "$o1 - $o0" | bc -l)")
  read -r u s m < "$work/client.time"
  e_wall+=("$(cat "$work/client.wall")"); e_cpu+=("$(echo "$u + $s" | bc -l)"); e_rss+=("$m")
  e_zcpu+=("$(echo "$z1 - $z0" | bc -l)"); e_zrss+=("$(awk '/VmHWM/ {print $2}' /proc/$zpid/status)"); e_bytes+=("$((b1 - b0))")
  kill "$zpid"; wait "$zpid" 2>/dev/null || true
  if [ -n "${ZEST_BENCH_KEEP:-}" ]; then
    { echo "client from $t_start to $t_end"; cat "$work/e/log"; } > "$data/zestd-run$i.log"
  fi
  snap=$(tail -1 "$work/client.out")
  for f in "$ref"/*; do cmp -s "$f" "$snap/$(basename "$f")" || { echo "content differs: $(basename "$f")" >&2; exit 1; }; done
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
f2() { printf '%.2f' "$1"; }
all() { for x in "$@"; do printf '%.2f ' "$x"; done; }
dw=$(median "${d_wall[@]}"); ew=$(median "${e_wall[@]}")
dc=$(median "${d_cpu[@]}"); ec=$(median "${e_cpu[@]}"); ez=$(median "${e_zcpu[@]}")
do_=$(median "${d_ocpu[@]}"); eo=$(median "${e_ocpu[@]}")
cores=$(nproc)
where="reference CAS on loopback"
[ -z "$rate" ] || where="reference CAS behind a $rate link"
what=snapshot_download
[ "${ZEST_BENCH_CALL:-snapshot}" != files ] || what="hf_hub_download of each file"
echo "### Cold $what, $((size >> 20)) MiB model (4 shards), $where, $runs runs each, alternating"
echo
echo "| | wall s (median) | wall s (all runs) | CPU s client | CPU s zestd | CPU s origin (hub + CAS) | peak RSS MiB client / zestd | origin bytes |"
echo "|---|---|---|---|---|---|---|---|"
echo "| huggingface_hub + hf_xet, direct | $(f2 "$dw") | $(all "${d_wall[@]}")| $(f2 "$dc") | – | $(f2 "$do_") | $(( $(median "${d_rss[@]}") / 1024 )) / – | $(median "${d_bytes[@]}") |"
echo "| the same, HF_ENDPOINT on zestd | $(f2 "$ew") | $(all "${e_wall[@]}")| $(f2 "$ec") | $(f2 "$ez") | $(f2 "$eo") | $(( $(median "${e_rss[@]}") / 1024 )) / $(( $(median "${e_zrss[@]}") / 1024 )) | $(median "${e_bytes[@]}") |"
echo
echo "wall ratio endpoint / direct: $(f2 "$(echo "$ew / $dw" | bc -l)"); CPU ratio (client + zestd) / direct: $(f2 "$(echo "($ec + $ez) / $dc" | bc -l)")"
# Where every process shares $cores cores, no schedule runs faster than all their CPU
# seconds over the cores: the floor each case's wall time has, and how busy it kept them.
echo
echo "all CPU (client + zestd + origin) over $cores cores: direct $(f2 "$(echo "($dc + $do_) / $cores" | bc -l)") s ($(printf '%.0f' "$(echo "100 * ($dc + $do_) / $cores / $dw" | bc -l)")% of its wall), through zestd $(f2 "$(echo "($ec + $ez + $eo) / $cores" | bc -l)") s ($(printf '%.0f' "$(echo "100 * ($ec + $ez + $eo) / $cores / $ew" | bc -l)")% of its wall)"
