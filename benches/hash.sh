#!/usr/bin/env bash
# Compares `zestctl hash` with hf_xet.hash_files on the same 1 GiB bf16-like file, in one
# run, and measures the xet crate's kernels on their own. Prints a Markdown report.
#
#   benches/hash.sh [SIZE_BYTES] [RUNS]
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

now() { date +%s.%N; }
zest_times=(); hf_times=()
for i in $(seq "$runs"); do
  t0=$(now); zh=$(target/release/zestctl hash "$file" | cut -d' ' -f1); t1=$(now)
  hh=$("$py" -c 'import sys, hf_xet; print(hf_xet.hash_files([sys.argv[1]])[0].hash)' "$file"); t2=$(now)
  [ "$zh" = "$hh" ] || { echo "hash mismatch: zest $zh, hf_xet $hh" >&2; exit 1; }
  zest_times+=("$(echo "$t1 - $t0" | bc -l)"); hf_times+=("$(echo "$t2 - $t1" | bc -l)")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
zm=$(median "${zest_times[@]}"); hm=$(median "${hf_times[@]}")
echo "## zestctl hash vs hf_xet.hash_files"
echo
echo "file: $(basename "$file") ($((size >> 20)) MiB), $runs runs each, alternating, warm page cache, $(nproc) cores"
echo
echo "| tool | median s | MiB/s |"
echo "|---|---|---|"
printf '| zestctl hash | %.3f | %.0f |\n' "$zm" "$(echo "$size / 1048576 / $zm" | bc -l)"
printf '| hf_xet %s hash_files (Python start-up included) | %.3f | %.0f |\n' "$("$py" -c 'import importlib.metadata as m; print(m.version("hf_xet"))')" "$hm" "$(echo "$size / 1048576 / $hm" | bc -l)"
echo
printf 'ratio zest / hf_xet time: **%.2f** (below 1 is faster); both produced hash %s\n' "$(echo "$zm / $hm" | bc -l)" "$zh"
echo
echo "## xet crate kernels on the same file"
echo
echo '```'
target/release/zest-bench kernels "$file"
echo '```'
