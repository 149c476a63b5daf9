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
  "$bin/zestd" --socket "$d/sock" --state-dir "$d/state" --cache-dir "$d/cache" --endpoint "$endpoint" \
    --listen 127.0.0.1:0 --no-mdns --hub-listen off --xet-socket off "$@" 2> "$d/log" &
  zpid=$!; pids+=($zpid)
  for _ in $(seq 200); do [ -S "$d/sock" ] && break; sleep 0.05; done
  [ -S "$d/sock" ] || { echo "zestd did not start: $(tail -5 "$d/log")" >&2; exit 1; }
}
status_field() { "$bin/zestctl" --socket "$1/sock" status --json | "$py" -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$2"; }

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "### A pull whose only peer misbehaves, $((size >> 20)) MiB model, reference CAS on loopback, $runs runs per mode"
echo
echo "| peer | zest wall s (median) | zest (all runs) | hf_xet wall s (median) | hf_xet (all runs) | ratio | zest origin copies | from the peer MiB |"
echo "|---|---|---|---|---|---|---|---|"
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
  zest_t=(); hf_t=(); copies=(); from_peer=()
  for i in $(seq "$runs"); do
    rm -rf "$work/hf"; mkdir -p "$work/hf"
    h0=$(stats); t0=$(now)
    HF_ENDPOINT=$endpoint HF_HOME=$work/hf/home HF_HUB_CACHE=$work/hf/cache HF_HUB_DISABLE_PROGRESS_BARS=1 \
      "$py" -c 'import sys; from huggingface_hub import snapshot_download; snapshot_download(sys.argv[1])' "$repo" >/dev/null
    t1=$(now); hf_t+=("$(echo "$t1 - $t0" | bc -l)")
    one=$(( $(stats) - h0 ))

    d=$work/$mode/node$i
    start_zestd "$d" --peer "$seed_addr"
    npid=$zpid
    for _ in $(seq 100); do
      "$bin/zestctl" --socket "$d/sock" peers --json 2>/dev/null | grep -q '"connected"' && break; sleep 0.05
    done
    case $mode in
      frozen) ( sleep 0.5; kill -STOP "$spid" ) & stopper=$! ;;
      silent-later) ( sleep 1.5; kill -STOP "$spid" ) & stopper=$! ;;
      *) stopper= ;;
    esac
    b0=$(stats); t0=$(now)
    "$bin/zestctl" --socket "$d/sock" pull "$repo" > "$d/out" 2> "$d/pull.err" ||
      { echo "$mode run $i: the pull failed: $(tail -3 "$d/pull.err")" >&2; exit 1; }
    t1=$(now); b1=$(stats)
    [ -n "$stopper" ] && { wait "$stopper" 2>/dev/null || true; kill -CONT "$spid"; }
    zest_t+=("$(echo "$t1 - $t0" | bc -l)")
    copies+=("$(echo "($b1 - $b0) / $one" | bc -l)")
    from_peer+=("$(( $(status_field "$d" bytes_from_peers) >> 20 ))")
    snap=$(tail -1 "$d/out")
    for f in "$snap"/*; do cmp -s "$f" "$work/hf/cache/models--zest-bench--model-1g/snapshots/$(basename "$snap")/$(basename "$f")" || { echo "content differs: $f" >&2; exit 1; }; done
    kill "$npid"; wait "$npid" 2>/dev/null || true
  done
  kill "$spid"; wait "$spid" 2>/dev/null || true
  zm=$(median "${zest_t[@]}"); hm=$(median "${hf_t[@]}")
  echo "| $mode | $(printf %.2f "$zm") | $(printf '%.2f ' "${zest_t[@]}")| $(printf %.2f "$hm") | $(printf '%.2f ' "${hf_t[@]}")| $(printf %.2f "$(echo "$zm / $hm" | bc -l)") | $(printf '%.2f ' "${copies[@]}")| $(printf '%s ' "${from_peer[@]}")|"
done
