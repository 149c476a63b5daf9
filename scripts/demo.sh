#!/usr/bin/env bash
# The main job on an embedded default, offline: a local Hugging Face Hub stand-in (in front
# of HF's reference CAS server) with a small model, a zestd on loopback, `zestctl pull`
# into a fresh HF cache, and huggingface_hub reading the result offline. Then a small fleet:
# three more daemons on loopback, with no static peers, find the first (and each other) on a
# local Mainline DHT the hub runs, pull the same model at once and take it from their peers
# instead of the origin.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
fi
cargo build --release -q --workspace --bins
bin=$PWD/target/release
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

echo "== starting the test hub (HF's reference CAS server behind a Hub stand-in) on loopback"
"$bin/zest-testhub" --data "$work/hub" --dht-nodes 4 > "$work/hub.json" 2> "$work/hub.log" &
pids+=($!)
for _ in $(seq 600); do [ -s "$work/hub.json" ] && break; sleep 0.2; done
[ -s "$work/hub.json" ] || { echo "the test hub did not start: $(tail -5 "$work/hub.log")" >&2; exit 1; }
endpoint=$(.venv/bin/python -c 'import json,sys; print(json.load(open(sys.argv[1]))["endpoint"])' "$work/hub.json")
echo "   hub at $endpoint"
dht_args=()
for b in $(.venv/bin/python -c 'import json,sys; print(" ".join(json.load(open(sys.argv[1]))["dht_bootstrap"]))' "$work/hub.json"); do
  dht_args+=(--dht-bootstrap "$b")
done
echo "   a local Mainline DHT of 4 nodes on loopback: ${dht_args[*]}"

echo "== starting zestd (cache $work/cache)"
"$bin/zestd" --socket "$work/zestd.sock" --state-dir "$work/state" --cache-dir "$work/cache" \
  --endpoint "$endpoint" --listen 127.0.0.1:0 --dht "${dht_args[@]}" 2> "$work/zestd.log" &
pids+=($!)
for _ in $(seq 200); do [ -S "$work/zestd.sock" ] && break; sleep 0.05; done

echo "== zestctl pull zest-test/tiny-model"
snap=$("$bin/zestctl" --socket "$work/zestd.sock" pull zest-test/tiny-model)
echo "   snapshot: $snap"
echo "== the cache zest wrote"
(cd "$work/cache" && find . -path ./.locks -prune -o -print | sort | sed 's/^/   /')
echo "== huggingface_hub, offline, on that cache"
HF_HUB_OFFLINE=1 HF_HUB_CACHE="$work/cache" HF_HOME="$work/hf-home" .venv/bin/python - <<'PY'
from huggingface_hub import snapshot_download, scan_cache_dir
p = snapshot_download("zest-test/tiny-model", local_files_only=True)
info = scan_cache_dir()
print(f"   snapshot_download(local_files_only=True) -> {p}")
for r in info.repos:
    print(f"   scan_cache_dir: {r.repo_id}: {r.nb_files} files, {r.size_on_disk} bytes, warnings: {len(info.warnings)}")
PY
echo "== zestctl status"
"$bin/zestctl" --socket "$work/zestd.sock" status | sed 's/^/   /'

echo "== a fleet: three more daemons on loopback, no static peers: they meet on the local DHT"
fleet_pids=()
for i in 1 2 3; do
  "$bin/zestd" --socket "$work/n$i.sock" --state-dir "$work/n$i/state" --cache-dir "$work/n$i/cache" \
    --endpoint "$endpoint" --listen 127.0.0.1:0 --dht "${dht_args[@]}" 2> "$work/n$i.log" &
  pids+=($!)
done
for i in 1 2 3; do for _ in $(seq 200); do [ -S "$work/n$i.sock" ] && break; sleep 0.05; done; done
for i in 1 2 3; do "$bin/zestctl" --socket "$work/n$i.sock" pull zest-test/tiny-model > /dev/null 2>&1 & fleet_pids+=($!); done
for p in "${fleet_pids[@]}"; do wait "$p"; done
for i in 1 2 3; do
  "$bin/zestctl" --socket "$work/n$i.sock" status --json | .venv/bin/python -c '
import json, sys
s = json.load(sys.stdin)
print("   node %s: %9d bytes from peers, %6d from the origin" % (sys.argv[1], s["bytes_from_peers"], s["bytes_from_origin"]))' "$i"
done
"$bin/zestctl" --socket "$work/n1.sock" peers --json | .venv/bin/python -c '
import json, sys
src = sorted({p["source"] for p in json.load(sys.stdin)})
print("   node 1 learned its peers from: " + ", ".join(src))
if "static" in src: sys.exit("a static peer in a discovery-only fleet")'

echo "== zestctl peers (on the first daemon)"
"$bin/zestctl" --socket "$work/zestd.sock" peers | sed 's/^/   /'
