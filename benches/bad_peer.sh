#!/usr/bin/env bash
# A pull whose only peer misbehaves, against huggingface_hub + hf_xet straight from the
# origin in the same run (issue 14, part 4: never slower, whatever the peers do). The origin
# is Hugging Face's reference CAS behind the test hub, on loopback. One seeder holds the
# model; each run a fresh zestd with that seeder as its only peer pulls it, alternating with
# a fresh huggingface_hub download.
#
#   slow         the seeder's uploads capped (--max-upload-rate 4MB)
#   frozen       the seeder stopped (SIGSTOP, connection still open, no bytes) 0.5 s in
#   silent-later the seeder (capped at 100MB/s) delivers for 1.5 s, then stops
#
#   benches/bad_peer.sh [SIZE_BYTES] [RUNS] [MODES]
#
# ZEST_BENCH_OTHER=/path/to/zestd also runs another build of zestd (an earlier commit's) as a
# third contender in every run, so two builds are compared in the same run: hf_xet's own
# times on this machine move by 2x from run to run.
#
# Needs the test environment (scripts/test.sh creates .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-402653184}
runs=${2:-3}
modes=${3:-slow frozen silent-later}
py=${ZEST_PYTHON:-$PWD/.venv/bin/python}
[ -x "$py" ] || { echo "no Python env at $py: run scripts/test.sh first" >&2; exit 1; }
cargo build --release -q --workspace --bins
bin=${CARGO_TARGET_DIR:-$PWD/target}/release
data=${ZEST_BENCH_DIR:-$PWD/bench-data}/pull-$size
mkdir -p "$data"
work=$(mktemp -d "$data/run.XXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done
  [ -n "${ZEST_BENCH_KEEP:-}" ] && { echo "kept $work" >&2; return; }
  rm -rf "$work"
}
trap cleanup EXIT

"$bin/zest-testhub" --fixture bench --bench-bytes "$size" --data "$data/hub" > "$work/hub.json" 2> "$work/hub.log" &
pids+=($!)
for _ in $(seq 600); do [ -s "$work/hub.json" ] && break; sleep 0.5; done
[ -s "$work/hub.json" ] || { echo "the test hub did not start: $(tail -5 "$work/hub.log")" >&2; exit 1; }
endpoint=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["endpoint"])' "$work/hub.json")
repo=zest-bench/model-1g
stats() { curl -s "$endpoint/_test/stats" | "$py" -c 'import json,sys; print(json.load(sys.stdin)["xorb_bytes"])'; }
now() { date +%s.%N; }

# Each daemon takes any free UDP port (a fixed one may be taken); peers learn it from status.
start_zestd() { # dir [zestd args...]
  local d=$1; shift
  mkdir -p "$d"
  "${zestd_bin:-$bin/zestd}" --socket "$d/sock" --state-dir "$d/state" --cache-dir "$d/cache" --endpoint "$endpoint" \
    --listen 127.0.0.1:0 --no-mdns --hub-listen off --xet-socket off "$@" 2> "$d/log" &
  zpid=$!; pids+=($zpid)
  for _ in $(seq 200); do [ -S "$d/sock" ] && break; sleep 0.05; done
  [ -S "$d/sock" ] || { echo "zestd did not start: $(tail -5 "$d/log")" >&2; exit 1; }
}
status_field() { "$bin/zestctl" --socket "$1/sock" status --json | "$py" -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$2"; }

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "### A pull whose only peer misbehaves, $((size >> 20)) MiB model, reference CAS on loopback, $runs runs per mode"
echo
other=${ZEST_BENCH_OTHER:-}
[ -z "$other" ] || [ -x "$other" ] || { echo "ZEST_BENCH_OTHER: $other is not an executable" >&2; exit 1; }
if [ -n "$other" ]; then
  echo "| peer | zest wall s (median) | zest (all runs) | other build wall s (median) | other (all runs) | hf_xet wall s (median) | hf_xet (all runs) | ratio | other's ratio | zest origin copies | from the peer MiB |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
else
  echo "| peer | zest wall s (median) | zest (all runs) | hf_xet wall s (median) | hf_xet (all runs) | ratio | zest origin copies | from the peer MiB |"
  echo "|---|---|---|---|---|---|---|---|"
fi
# One pull by a fresh zestd (binary $2) whose only peer is the seeder, the seeder misbehaving
# as the mode says; sets took, copied and peer_mib, and checks the files against hf_xet's.
zest_pull() { # dir zestd-binary
  local d=$1 stopper
  # Each contender frees its own previous copy just before its run, as hf_xet's does below:
  # on this VM new page cache costs 5-10x more CPU in memory that has been free a while than
  # in pages the same filesystem freed a moment before, so keeping every run's cache would
  # bill zest for memory hf_xet never pays for.
  rm -rf "$d"
  zestd_bin=$2 start_zestd "$d" --peer "$seed_addr"
  local npid=$zpid
  for _ in $(seq 100); do
    "$bin/zestctl" --socket "$d/sock" peers --json 2>/dev/null | grep -q '"connected"' && break; sleep 0.05
  done
  case $mode in
    frozen) ( sleep 0.5; kill -STOP "$spid" ) & stopper=$! ;;
    silent-later) ( sleep 1.5; kill -STOP "$spid" ) & stopper=$! ;;
    *) stopper= ;;
  esac
  local b0 t0 t1 b1 snap f
  b0=$(stats); t0=$(now)
  "$bin/zestctl" --socket "$d/sock" pull "$repo" > "$d/out" 2> "$d/pull.err" ||
    { echo "$mode run $i: the pull failed: $(tail -3 "$d/pull.err")" >&2; exit 1; }
  t1=$(now); b1=$(stats)
  [ -n "$stopper" ] && { wait "$stopper" 2>/dev/null || true; kill -CONT "$spid"; }
  took=$(echo "$t1 - $t0" | bc -l)
  copied=$(echo "($b1 - $b0) / $one" | bc -l)
  peer_mib=$(( $(status_field "$d" bytes_from_peers) >> 20 ))
  snap=$(tail -1 "$d/out")
  for f in "$snap"/*; do cmp -s "$f" "$work/hf/cache/models--zest-bench--model-1g/snapshots/$(basename "$snap")/$(basename "$f")" || { echo "content differs: $f" >&2; exit 1; }; done
  kill "$npid"; wait "$npid" 2>/dev/null || true
}

for mode in $modes; do
  case $mode in
    slow) seed_args=(--max-upload-rate 4MB) ;;
    frozen) seed_args=() ;;
    silent-later) seed_args=(--max-upload-rate 100MB) ;;
    *) echo "unknown mode $mode" >&2; exit 1 ;;
  esac
  # The seeder: pulls the model once from the origin, then serves it.
  sd=$work/$mode/seed
  start_zestd "$sd" "${seed_args[@]}"
  spid=$zpid
  seed_addr=$(status_field "$sd" listen)
  "$bin/zestctl" --socket "$sd/sock" pull "$repo" > /dev/null 2>&1
  zest_t=(); other_t=(); hf_t=(); copies=(); from_peer=()
  for i in $(seq "$runs"); do
    rm -rf "$work/hf"; mkdir -p "$work/hf"
    h0=$(stats); t0=$(now)
    HF_ENDPOINT=$endpoint HF_HOME=$work/hf/home HF_HUB_CACHE=$work/hf/cache HF_HUB_DISABLE_PROGRESS_BARS=1 \
      "$py" -c 'import sys; from huggingface_hub import snapshot_download; snapshot_download(sys.argv[1])' "$repo" >/dev/null
    t1=$(now); hf_t+=("$(echo "$t1 - $t0" | bc -l)")
    one=$(( $(stats) - h0 ))

    zest_pull "$work/$mode/node" "$bin/zestd"
    zest_t+=("$took"); copies+=("$copied"); from_peer+=("$peer_mib")
    if [ -n "$other" ]; then
      zest_pull "$work/$mode/other" "$other"
      other_t+=("$took")
    fi
  done
  kill "$spid"; wait "$spid" 2>/dev/null || true
  zm=$(median "${zest_t[@]}"); hm=$(median "${hf_t[@]}")
  if [ -n "$other" ]; then
    om=$(median "${other_t[@]}")
    echo "| $mode | $(printf %.2f "$zm") | $(printf '%.2f ' "${zest_t[@]}")| $(printf %.2f "$om") | $(printf '%.2f ' "${other_t[@]}")| $(printf %.2f "$hm") | $(printf '%.2f ' "${hf_t[@]}")| $(printf %.2f "$(echo "$zm / $hm" | bc -l)") | $(printf %.2f "$(echo "$om / $hm" | bc -l)") | $(printf '%.2f ' "${copies[@]}")| $(printf '%s ' "${from_peer[@]}")|"
  else
    echo "| $mode | $(printf %.2f "$zm") | $(printf '%.2f ' "${zest_t[@]}")| $(printf %.2f "$hm") | $(printf '%.2f ' "${hf_t[@]}")| $(printf %.2f "$(echo "$zm / $hm" | bc -l)") | $(printf '%.2f ' "${copies[@]}")| $(printf '%s ' "${from_peer[@]}")|"
  fi
done
