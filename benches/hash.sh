#!/usr/bin/env bash
# Compares `zestctl hash` with hf_xet.hash_files on the same 1 GiB bf16-like file, in one
# run, and measures the xet crate's kernels on their own. Prints a Markdown report.
#
#   benches/hash.sh [SIZE_BYTES] [RUNS]
#   ZEST_BENCH_BUSY=1 benches/hash.sh     # the same, beside one CPU-bound loop
#
# Needs the test environment (scripts/test.sh creates .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-1073741824}
runs=${2:-5}
py=${ZEST_PYTHON:-$PWD/.venv/bin/python}
[ -x "$py" ] || { echo "no Python env at $py: run scripts/test.sh first" >&2; exit 1; }

cargo build --release -q -p zestctl -p zest-tests --bin zest-bench
data=${ZEST_BENCH_DIR:-$PWD/bench-data}
mkdir -p "$data"
file="$data/bf16-$size.bin"
[ -f "$file" ] && [ "$(stat -c %s "$file")" = "$size" ] || target/release/zest-bench gen-bf16 "$file" "$size"
cat "$file" > /dev/null   # both tools start from a warm page cache

load=$(cut -d' ' -f1 /proc/loadavg)
# ZEST_BENCH_BUSY=N runs N CPU-bound loops beside both tools for the whole series.
busy=${ZEST_BENCH_BUSY:-0}
busy_pids=()
for _ in $(seq "$busy"); do sh -c 'while :; do :; done' & busy_pids+=("$!"); done
trap '[ ${#busy_pids[@]} -eq 0 ] || kill "${busy_pids[@]}" 2>/dev/null' EXIT

# Each run's wall, user and system seconds, from bash's `time` (the children's rusage).
TIMEFORMAT='%R %U %S'
zest_times=(); hf_times=(); zest_cpu=(); hf_cpu=()
for i in $(seq "$runs"); do
  { time target/release/zestctl hash "$file" > "$data/.zest-hash.out"; } 2> "$data/.zest-hash.time"
  { time "$py" -c 'import sys, hf_xet; print(hf_xet.hash_files([sys.argv[1]])[0].hash)' "$file" > "$data/.hf-hash.out"; } 2> "$data/.hf-hash.time"
  zh=$(cut -d' ' -f1 "$data/.zest-hash.out"); hh=$(cat "$data/.hf-hash.out")
  [ "$zh" = "$hh" ] || { echo "hash mismatch: zest $zh, hf_xet $hh" >&2; exit 1; }
  read -r w u s < "$data/.zest-hash.time"; zest_times+=("$w"); zest_cpu+=("$(echo "$u + $s" | bc -l)")
  read -r w u s < "$data/.hf-hash.time"; hf_times+=("$w"); hf_cpu+=("$(echo "$u + $s" | bc -l)")
done
[ ${#busy_pids[@]} -eq 0 ] || kill "${busy_pids[@]}" 2>/dev/null
busy_pids=()
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
range() { printf '%s\n' "$@" | sort -g | awk 'NR==1 {lo=$1} {hi=$1} END {printf "%.3f-%.3f", lo, hi}'; }
zm=$(median "${zest_times[@]}"); hm=$(median "${hf_times[@]}")
zc=$(median "${zest_cpu[@]}"); hc=$(median "${hf_cpu[@]}")
echo "## zestctl hash vs hf_xet.hash_files"
echo
echo "file: $(basename "$file") ($((size >> 20)) MiB), $runs runs each, alternating, warm page cache, $(nproc) cores, load $load before, $busy busy loop(s) beside"
echo
echo "| tool | median wall s | range s | MiB/s | median CPU s | range s |"
echo "|---|---|---|---|---|---|"
printf '| zestctl hash | %.3f | %s | %.0f | %.3f | %s |\n' "$zm" "$(range "${zest_times[@]}")" "$(echo "$size / 1048576 / $zm" | bc -l)" "$zc" "$(range "${zest_cpu[@]}")"
printf '| hf_xet %s hash_files (Python start-up included) | %.3f | %s | %.0f | %.3f | %s |\n' "$("$py" -c 'import importlib.metadata as m; print(m.version("hf_xet"))')" "$hm" "$(range "${hf_times[@]}")" "$(echo "$size / 1048576 / $hm" | bc -l)" "$hc" "$(range "${hf_cpu[@]}")"
echo
printf 'ratio zest / hf_xet: wall **%.2f**, CPU %.2f (below 1 is faster); both produced hash %s\n' "$(echo "$zm / $hm" | bc -l)" "$(echo "$zc / $hc" | bc -l)" "$zh"
rm -f "$data"/.zest-hash.* "$data"/.hf-hash.*
echo
echo "## xet crate kernels on the same file"
echo
echo '```'
target/release/zest-bench kernels "$file"
echo '```'
