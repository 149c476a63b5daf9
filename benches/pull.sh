#!/usr/bin/env bash
# Cold pull of a ~1 GiB, 4-shard model from Hugging Face's reference CAS server (behind the
# test hub, on loopback): zest (zestd + zestctl pull) against huggingface_hub's
# snapshot_download with hf_xet, in the same run, each into a fresh cache, alternating.
# Prints a Markdown report: wall and CPU seconds (zestd's from /proc over the pull, plus
# zestctl's; the Python process's, hf_xet included, from rusage), ratios, peak memory, bytes
# from the origin.
#
#   benches/pull.sh [SIZE_BYTES] [RUNS]
#
# ZEST_BENCH_BESIDE=N runs N CPU-bound busy loops beside both clients for the whole run, as a
# training job would beside zestd.
#
# Needs the test environment (scripts/test.sh creates .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-1073741824}
runs=${2:-3}
py=${ZEST_PYTHON:-$PWD/.venv/bin/python}
[ -x "$py" ] || { echo "no Python env at $py: run scripts/test.sh first" >&2; exit 1; }
cargo build --release -q --workspace --bins
bin=${CARGO_TARGET_DIR:-$PWD/target}/release
data=${ZEST_BENCH_DIR:-$PWD/bench-data}/pull-$size
mkdir -p "$data"
work=$(mktemp -d "$data/run.XXXX")
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

"$bin/zest-testhub" --fixture bench --bench-bytes "$size" --data "$data/hub" > "$work/hub.json" 2> "$work/hub.log" &
pids+=($!)
for _ in $(seq 600); do [ -s "$work/hub.json" ] && break; sleep 0.5; done
[ -s "$work/hub.json" ] || { echo "the test hub did not start: $(tail -5 "$work/hub.log")" >&2; exit 1; }
endpoint=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["endpoint"])' "$work/hub.json")
repo=zest-bench/model-1g
stats() { curl -s "$endpoint/_test/stats" | "$py" -c 'import json,sys; print(json.load(sys.stdin)["xorb_bytes"])'; }
now() { date +%s.%N; }
tick=$(getconf CLK_TCK)
proc_cpu() { awk -v t="$tick" '{print ($14 + $15) / t}' "/proc/$1/stat"; }

beside=${ZEST_BENCH_BESIDE:-0}
for _ in $(seq "$beside"); do sh -c 'while :; do :; done' & pids+=($!); done
zest_t=(); hf_t=(); zest_rss=(); hf_rss=(); zest_bytes=(); hf_bytes=(); zest_cpu=(); hf_cpu=()
for i in $(seq "$runs"); do
  # huggingface_hub + hf_xet, fresh cache and fresh hf_xet state.
  rm -rf "$work/hf"; mkdir -p "$work/hf"
  b0=$(stats); t0=$(now)
  HF_ENDPOINT=$endpoint HF_HOME=$work/hf/home HF_HUB_CACHE=$work/hf/cache HF_HUB_DISABLE_PROGRESS_BARS=1 \
    /usr/bin/time -f '%M %U %S' -o "$work/hf.rss" "$py" -c 'import sys; from huggingface_hub import snapshot_download; snapshot_download(sys.argv[1])' "$repo" >/dev/null
  t1=$(now); b1=$(stats)
  hf_t+=("$(echo "$t1 - $t0" | bc -l)"); read -r m u s < "$work/hf.rss"; hf_rss+=("$m"); hf_cpu+=("$(echo "$u + $s" | bc -l)"); hf_bytes+=("$((b1 - b0))")

  # zest: a fresh daemon and cache; time from request to snapshot path.
  rm -rf "$work/z"; mkdir -p "$work/z"
  "$bin/zestd" --socket "$work/z/sock" --state-dir "$work/z/state" --cache-dir "$work/z/cache" --endpoint "$endpoint" 2> "$work/z/log" &
  zpid=$!; pids+=($zpid)
  for _ in $(seq 200); do [ -S "$work/z/sock" ] && break; sleep 0.05; done
  b0=$(stats); c0=$(proc_cpu "$zpid"); t0=$(now)
  /usr/bin/time -f '%U %S' -o "$work/z/ctl.time" "$bin/zestctl" --socket "$work/z/sock" pull "$repo" > "$work/z/out" 2>/dev/null
  t1=$(now); b1=$(stats); c1=$(proc_cpu "$zpid")
  read -r u s < "$work/z/ctl.time"
  zest_cpu+=("$(echo "$c1 - $c0 + $u + $s" | bc -l)")
  zest_rss+=("$(awk '/VmHWM/ {print $2}' /proc/$zpid/status)")
  kill "$zpid"; wait "$zpid" 2>/dev/null || true
  zest_t+=("$(echo "$t1 - $t0" | bc -l)"); zest_bytes+=("$((b1 - b0))")
  # Same bytes as huggingface_hub wrote.
  snap=$(tail -1 "$work/z/out")
  for f in "$snap"/*; do cmp -s "$f" "$work/hf/cache/models--zest-bench--model-1g/snapshots/$(basename "$snap")/$(basename "$f")" || { echo "content differs: $f" >&2; exit 1; }; done
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
zm=$(median "${zest_t[@]}"); hm=$(median "${hf_t[@]}")
zc=$(median "${zest_cpu[@]}"); hc=$(median "${hf_cpu[@]}")
extra=""; [ "$beside" -gt 0 ] && extra=", $beside CPU-bound busy loop(s) beside"
echo "### Cold pull, $((size >> 20)) MiB model (4 shards), reference CAS on loopback, $runs runs$extra"
echo
echo "| | wall s (median) | wall s (all runs) | CPU s (median) | CPU s (all runs) | peak RSS MiB | origin bytes |"
echo "|---|---|---|---|---|---|---|"
echo "| zest (zestd + zestctl pull) | $(printf %.2f "$zm") | $(printf '%.2f ' "${zest_t[@]}")| $(printf %.2f "$zc") | $(printf '%.2f ' "${zest_cpu[@]}")| $(( $(median "${zest_rss[@]}") / 1024 )) | $(median "${zest_bytes[@]}") |"
echo "| huggingface_hub + hf_xet | $(printf %.2f "$hm") | $(printf '%.2f ' "${hf_t[@]}")| $(printf %.2f "$hc") | $(printf '%.2f ' "${hf_cpu[@]}")| $(( $(median "${hf_rss[@]}") / 1024 )) | $(median "${hf_bytes[@]}") |"
echo
echo "ratio zest / huggingface_hub: wall $(printf %.2f "$(echo "$zm / $hm" | bc -l)"), CPU $(printf %.2f "$(echo "$zc / $hc" | bc -l)")"
