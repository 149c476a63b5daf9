#!/usr/bin/env bash
# The main job on an embedded default, offline: make model-like files, hash them with
# zestctl, and check every hash against Hugging Face's hf_xet.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
fi
cargo build --release -q -p zestctl -p zest-tests --bin zest-bench
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dir="$work/model"
mkdir "$dir"
target/release/zest-bench gen-bf16 "$dir/model.safetensors" $((256 << 20))
printf '' > "$dir/empty.txt"
printf '{"architectures": ["Demo"]}\n' > "$dir/config.json"
head -c 131073 /dev/urandom > "$dir/tokenizer (copy).bin"
echo "zestctl hash:"
time target/release/zestctl hash "$dir"/* | tee "$work/zest.out"
echo "hf_xet.hash_files:"
.venv/bin/python - "$dir"/* <<'PY' | tee "$work/hf.out"
import sys, hf_xet
for p, r in zip(sys.argv[1:], hf_xet.hash_files(sys.argv[1:])):
    print(r.hash, r.file_size, p)
PY
if diff -u "$work/hf.out" "$work/zest.out"; then
  echo "OK: zest and hf_xet agree on all $(wc -l < "$work/zest.out") files"
else
  echo "MISMATCH between zest and hf_xet" >&2
  exit 1
fi
