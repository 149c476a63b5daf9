#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser untrusted input reaches (issue 16, part 4): the
# targets in fuzz/src, driven by libFuzzer through cargo-fuzz on the nightly toolchain.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET=300] [TARGET ...]
#
# Each target starts from fuzz/corpus/<target>; what it finds new goes to a scratch corpus
# (ZEST_FUZZ_KEEP=1 minimizes it into fuzz/corpus/<target> instead). A panic, an input that
# takes over 10 s or a process over 1 GiB of RSS is written to target/fuzz-findings/ and fails
# the run; once fixed, it belongs in fuzz/regressions/<target>/, which the stable replay
# test (fuzz/tests/replay.rs) runs in CI. Prints executions per target last.
#
# Built without a sanitizer (the parsers are safe Rust: no `unsafe` in xet or zestd, so ASan
# would only slow the runs) and with debug assertions, so an arithmetic overflow is a finding.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-300}"
shift || true
all=(xorb shard reconstruction hub_json tracker peer_message config state endpoint)
if [ $# -gt 0 ]; then targets=("$@"); else targets=("${all[@]}"); fi

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz.sh: no nightly toolchain; the replay test (cargo test -p zest-fuzz) is what runs here" >&2
  exit 3
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked --version 0.13.2
fi

target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
findings="$target_dir/fuzz-findings"
scratch="$target_dir/fuzz-corpus"
logs="$target_dir/fuzz-logs"
mkdir -p "$findings" "$scratch" "$logs"
fuzz=(cargo +nightly fuzz)
opts=(--fuzz-dir fuzz/libfuzzer --sanitizer none --debug-assertions --target-dir "$target_dir/libfuzzer")

"${fuzz[@]}" build "${opts[@]}" >&2

failed=0
summary=()
for t in "${targets[@]}"; do
  keep="$scratch/$t"
  mkdir -p "$keep"
  log="$logs/$t.log"
  set +e
  "${fuzz[@]}" run "${opts[@]}" "$t" "$keep" "fuzz/corpus/$t" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=1024 \
    -print_final_stats=1 -artifact_prefix="$findings/$t-" >"$log" 2>&1
  rc=$?
  set -e
  # A crash leaves no DONE line, and a run that never started no stats: neither may end the
  # script before it says which target failed and why.
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || true)
  cov=$(grep -o 'DONE *cov: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || true)
  if [ "$rc" -ne 0 ]; then
    failed=1
    echo "fuzz.sh: $t FAILED (exit $rc); see $log and $findings/" >&2
    grep -E -A3 'panicked at|ERROR: libFuzzer|Test unit written' "$log" | head -20 >&2 || true
    tail -5 "$log" >&2
    for f in "$findings/$t-"*; do
      if [ -f "$f" ]; then echo "fuzz.sh: $f, base64: $(head -c 4096 "$f" | base64 -w0)" >&2; fi
    done
  fi
  summary+=("$(printf '%-15s %6ss %12s execs %8s/s  cov %6s  %s' "$t" "$secs" "${execs:-?}" \
    "$(( ${execs:-0} / (secs > 0 ? secs : 1) ))" "${cov:-?}" "$([ $rc -eq 0 ] && echo ok || echo FINDING)")")
  if [ "${ZEST_FUZZ_KEEP:-0}" = 1 ] && [ "$rc" -eq 0 ]; then
    tmp="$scratch/$t.min"
    rm -rf "$tmp" && mkdir -p "$tmp"
    "${fuzz[@]}" run "${opts[@]}" "$t" "$tmp" "fuzz/corpus/$t" "$keep" -- -merge=1 >>"$log" 2>&1
    rm -rf "fuzz/corpus/$t" && mv "$tmp" "fuzz/corpus/$t"
  fi
done

echo
echo "target          time         executions    per s   edges  result"
printf '%s\n' "${summary[@]}"
exit "$failed"
