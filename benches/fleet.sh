#!/usr/bin/env bash
# Fleet benchmark: how much a fleet of zest daemons takes from the origin, and how long the
# last node waits, against huggingface_hub+hf_xet pulling the same model through the same
# link in the same run.
#
# Two network namespaces, created here and removed on exit:
#   zb-origin  the test hub in front of Hugging Face's reference CAS server, 10.77.0.1
#   zb-fleet   N zestd daemons, 10.77.0.2; they reach each other on the namespace's loopback
# joined by one veth pair whose origin side is shaped with tc (token bucket, RATE). Origin
# egress is read from that interface's tx_bytes counter and reported in copies of the model.
#
#   sudo benches/fleet.sh [N=4] [SIZE_BYTES=536870912] [RATE=400mbit]
#
# Cases: seeded (one daemon holds the model, N-1 pull at once) and flash crowd (N pull at
# once, nobody holds it). Needs root, iproute2 (ip, tc) and the test environment
# (scripts/test.sh creates .venv). Prints a Markdown report, with each case's machine CPU
# seconds (all cores, from /proc/stat) beside its wall time: the fleet shares this machine.
# ZEST_BENCH_KEEP=1 keeps the daemons' logs and caches under bench-data/ (RUST_LOG passes
# through to zestd); the seeded pullers' caches go once checked, and each flash run's when
# the next starts.
#
# How the daemons find each other, ZEST_BENCH_DISCOVERY:
#   static   (default) every daemon is given every other with --peer
#   tracker  only --tracker: opentracker (Debian) in the fleet namespace, whitelisting the
#            model's swarm keys
#   dht      only --dht --dht-bootstrap: a local Mainline DHT of 5 nodes in the fleet
#            namespace (zest-testhub --fixture none --dht-nodes 5)
#
# ZEST_BENCH_CASES=zest runs only zest's own cases (no huggingface_hub reference, no
# endpoint crowd); ZEST_BENCH_FLASH_RUNS=K repeats the flash crowd K times with fresh
# daemons and lists every run, with the peer-state messages (have/watch) each node sent per
# second. `zest-sim --shared-cores 2` predicts these runs (BENCHMARKS.md). ZEST_PEER_WATCH=0
# passes through to zestd: every daemon then polls `have` as before pushed state.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-4}
discovery=${ZEST_BENCH_DISCOVERY:-static}
case $discovery in static|tracker|dht) ;; *) echo "ZEST_BENCH_DISCOVERY: static, tracker or dht" >&2; exit 1;; esac
size=${2:-536870912}
# ZEST_BENCH_CASES=zest skips the huggingface_hub reference and endpoint cases;
# ZEST_BENCH_FLASH_RUNS repeats the flash crowd (fresh daemons each time).
cases=${ZEST_BENCH_CASES:-all}
case $cases in all|zest) ;; *) echo "ZEST_BENCH_CASES: all or zest" >&2; exit 1;; esac
flash_runs=${ZEST_BENCH_FLASH_RUNS:-1}
rate=${3:-400mbit}
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces and tc)" >&2; exit 1; }
command -v tc >/dev/null || { echo "needs tc (Debian: iproute2)" >&2; exit 1; }
# The namespaces have fixed names: one run at a time.
exec 9> /tmp/zest-fleet-bench.lock
flock -n 9 || { echo "another fleet benchmark is running" >&2; exit 1; }
py=${ZEST_PYTHON:-$PWD/.venv/bin/python}
[ -x "$py" ] || { echo "no Python env at $py: run scripts/test.sh first" >&2; exit 1; }
cargo build --release -q --workspace --bins
bin=${CARGO_TARGET_DIR:-$PWD/target}/release
data=${ZEST_BENCH_DIR:-$PWD/bench-data}/fleet-$size
mkdir -p "$data"
work=$(mktemp -d "$data/run.XXXX")
O=zb-origin F=zb-fleet
inO() { ip netns exec "$O" "$@"; }
inF() { ip netns exec "$F" "$@"; }
pids=()
cleanup() {
  # `ip netns exec` under a function runs in a subshell: find the real processes by path.
  pkill -f -- "$work/" 2>/dev/null || true
  pkill -f -- "--data $data/hub" 2>/dev/null || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.5
  ip netns del "$O" 2>/dev/null || true
  ip netns del "$F" 2>/dev/null || true
  [ -n "${ZEST_BENCH_KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
ip netns del "$O" 2>/dev/null || true
ip netns del "$F" 2>/dev/null || true

ip netns add "$O"
ip netns add "$F"
ip link add zb-o type veth peer name zb-f
ip link set zb-o netns "$O"
ip link set zb-f netns "$F"
inO ip addr add 10.77.0.1/24 dev zb-o
inF ip addr add 10.77.0.2/24 dev zb-f
for ns in "$O" "$F"; do ip -n "$ns" link set lo up; done
inO ip link set zb-o up
inF ip link set zb-f up
# Everything the origin sends to the fleet goes through this bucket.
inO tc qdisc add dev zb-o root tbf rate "$rate" burst 256kb latency 100ms

inO "$bin/zest-testhub" --host 10.77.0.1 --fixture bench --bench-bytes "$size" --data "$data/hub" \
  > "$work/hub.json" 2> "$work/hub.log" &
pids+=($!)
for _ in $(seq 1200); do [ -s "$work/hub.json" ] && break; sleep 0.5; done
[ -s "$work/hub.json" ] || { echo "the test hub did not start: $(tail -5 "$work/hub.log")" >&2; exit 1; }
endpoint=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["endpoint"])' "$work/hub.json")
model_bytes=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["repos"][0]["bytes"])' "$work/hub.json")
repo=zest-bench/model-1g
egress() { inO cat /sys/class/net/zb-o/statistics/tx_bytes; }
now() { date +%s.%N; }
# The machine's busy CPU seconds so far (user, nice, system, irq, softirq, all cores): every
# daemon, the hub and the CAS server run here, so a case's share is the fleet's CPU cost.
hz=$(getconf CLK_TCK)
cpu() { awk -v hz="$hz" '/^cpu /{printf "%.2f\n", ($2 + $3 + $4 + $7 + $8) / hz}' /proc/stat; }
rate_bits=$("$py" -c 'import re,sys; m=re.fullmatch(r"(\d+)([kmg]?)bit",sys.argv[1]); print(int(m[1])*{"":1,"k":10**3,"m":10**6,"g":10**9}[m[2]])' "$rate")

# Where the daemons learn of each other.
found=()
case $discovery in
  tracker)
    command -v opentracker >/dev/null || { echo "needs opentracker (Debian: opentracker)" >&2; exit 1; }
    "$py" -c 'import json,sys; print("\n".join(json.load(open(sys.argv[1]))["repos"][0]["swarm_keys"]))' \
      "$work/hub.json" > "$work/whitelist"
    printf 'listen.tcp 127.0.0.1:6969\naccess.whitelist %s\n' "$work/whitelist" > "$work/opentracker.conf"
    # opentracker drops root for an unprivileged user, who must be able to read the list.
    chmod a+rx "$work"
    inF opentracker -f "$work/opentracker.conf" > "$work/tracker.log" 2>&1 &
    pids+=($!)
    sleep 1
    if grep -q "Can't open" "$work/tracker.log"; then echo "opentracker: $(cat "$work/tracker.log")" >&2; exit 1; fi
    found=(--tracker http://127.0.0.1:6969/announce)
    ;;
  dht)
    inF "$bin/zest-testhub" --fixture none --dht-nodes 5 --data "$work/dht" > "$work/dht.json" 2> "$work/dht.log" &
    pids+=($!)
    for _ in $(seq 200); do [ -s "$work/dht.json" ] && break; sleep 0.1; done
    [ -s "$work/dht.json" ] || { echo "the local DHT did not start: $(tail -5 "$work/dht.log")" >&2; exit 1; }
    found=(--dht)
    for b in $("$py" -c 'import json,sys; print(" ".join(json.load(open(sys.argv[1]))["dht_bootstrap"]))' "$work/dht.json"); do
      found+=(--dht-bootstrap "$b")
    done
    ;;
esac

# Daemon i listens on 127.0.0.1:BASE+i inside the fleet namespace; with static discovery
# everyone knows everyone.
start_daemons() { # tag count base_port
  local tag=$1 count=$2 base=$3 peers=("${found[@]}") i
  if [ "$discovery" = static ]; then
    for i in $(seq 0 $((count - 1))); do peers+=(--peer "127.0.0.1:$((base + i))"); done
  fi
  for i in $(seq 0 $((count - 1))); do
    local d=$work/$tag/$i
    mkdir -p "$d"
    # Each daemon's local Hugging Face endpoint on TCP port base+1000+i.
    inF "$bin/zestd" --socket "$d/sock" --state-dir "$d/state" --cache-dir "$d/cache" \
      --endpoint "$endpoint" --listen "127.0.0.1:$((base + i))" "${peers[@]}" \
      --hub-listen "127.0.0.1:$((base + 1000 + i))" 2> "$d/log" &
  done
  for i in $(seq 0 $((count - 1))); do
    for _ in $(seq 200); do [ -S "$work/$tag/$i/sock" ] && break; sleep 0.05; done
    [ -S "$work/$tag/$i/sock" ] || { echo "daemon $tag/$i did not start: $(tail -5 "$work/$tag/$i/log")" >&2; exit 1; }
  done
  sleep 2 # connections up
}
stop_daemons() { # tag count
  local i
  for i in $(seq 0 $(($2 - 1))); do
    pkill -f -- "--socket $work/$1/$i/sock" 2>/dev/null || true
    while pgrep -f -- "--socket $work/$1/$i/sock" >/dev/null; do sleep 0.1; done
  done
}
pull() { inF "$bin/zestctl" --socket "$work/$1/$2/sock" pull "$repo" > "$work/$1/$2/out" 2> "$work/$1/$2/err"; }
pull_many() { # tag first last → seconds until the last one finished
  local tag=$1 t0 p=() i
  t0=$(now)
  for i in $(seq "$2" "$3"); do pull "$tag" "$i" & p+=($!); done
  for x in "${p[@]}"; do wait "$x" || { echo "a pull failed: $(cat "$work/$tag"/*/err; tail -5 "$work/$tag"/*/log)" >&2; exit 1; }; done
  echo "$(now) - $t0" | bc -l
}
check_same() { # tag i, against the first node's snapshot
  local a b
  a=$(tail -1 "$work/$1/$2/out"); b=$(tail -1 "$work/$3/$4/out")
  for f in "$a"/*; do cmp -s "$f" "$b/$(basename "$f")" || { echo "content differs: $f" >&2; exit 1; }; done
}
# Peer-state messages (have/watch) and their bytes sent so far by daemons 0..count-1 of a
# tag, from their metrics: each message counted once, by its sender.
state_sent() { # tag count base_port
  local urls=() i
  for i in $(seq 0 $(($2 - 1))); do urls+=("http://127.0.0.1:$(($3 + 1000 + i))/metrics"); done
  inF "$py" -c '
import sys, urllib.request
m = b = 0
for u in sys.argv[1:]:
    for line in urllib.request.urlopen(u, timeout=10).read().decode().splitlines():
        if "direction=\"sent\"" in line:
            if line.startswith("zest_peer_state_messages_total"): m += float(line.split()[-1])
            if line.startswith("zest_peer_state_bytes_total"): b += float(line.split()[-1])
print(int(m), int(b))' "${urls[@]}"
}
peer_bytes() { inF "$bin/zestctl" --socket "$work/$1/$2/sock" status --json | "$py" -c 'import json,sys; print(json.load(sys.stdin)["bytes_from_peers"])'; }

# Reference: huggingface_hub+hf_xet, one node, then N nodes at once, through the same link.
if [ "$cases" = all ]; then
hf_pull() { inF env HF_ENDPOINT="$endpoint" HF_HOME="$work/hf/$1/home" HF_HUB_CACHE="$work/hf/$1/cache" HF_HUB_DISABLE_PROGRESS_BARS=1 \
  "$py" -c 'import sys; from huggingface_hub import snapshot_download; snapshot_download(sys.argv[1])' "$repo" > /dev/null; }
c0=$(cpu); e0=$(egress); t0=$(now); hf_pull solo; hf_solo_s=$(echo "$(now) - $t0" | bc -l); hf_solo_b=$(( $(egress) - e0 ))
hf_solo_c=$(echo "$(cpu) - $c0" | bc -l)
c0=$(cpu); e0=$(egress); t0=$(now); p=()
for i in $(seq 1 "$n"); do hf_pull "crowd$i" & p+=($!); done
for x in "${p[@]}"; do wait "$x"; done
hf_crowd_s=$(echo "$(now) - $t0" | bc -l); hf_crowd_b=$(( $(egress) - e0 )); hf_crowd_c=$(echo "$(cpu) - $c0" | bc -l)
fi

# Seeded: node 0 pulls alone (this is zest's one-copy run), then nodes 1..N-1 at once.
start_daemons seeded "$n" 47500
c0=$(cpu); e0=$(egress); zest_solo_s=$(pull_many seeded 0 0); zest_solo_b=$(( $(egress) - e0 ))
zest_solo_c=$(echo "$(cpu) - $c0" | bc -l)
c0=$(cpu); e0=$(egress); seeded_s=$(pull_many seeded 1 $((n - 1))); seeded_b=$(( $(egress) - e0 ))
seeded_c=$(echo "$(cpu) - $c0" | bc -l)
for i in $(seq 1 $((n - 1))); do check_same seeded 0 seeded "$i"; done
seeded_peer=$(peer_bytes seeded 1)
stop_daemons seeded "$n"
# The seeded pullers' copies are checked: their memory goes back before the flash runs, as
# the previous run's does before each later run (`rm -rf "$work/flash"` below). On a VM that
# hands freed memory back to its host, a page written afresh costs several times a reused
# one (BENCHMARKS.md), and the first flash run had paid that for 1.5 GiB more than the rest.
for i in $(seq 1 $((n - 1))); do rm -rf "$work/seeded/$i/cache"; done

# Flash crowd: N fresh daemons pull at once; FLASH_RUNS times, each with fresh daemons.
flash_all=() flash_copies_all=() flash_state_all=() flash_cpu_all=()
for run in $(seq "$flash_runs"); do
  rm -rf "$work/flash"
  start_daemons flash "$n" 47600
  read -r m0 mb0 < <(state_sent flash "$n" 47600)
  c0=$(cpu); e0=$(egress); s_=$(pull_many flash 0 $((n - 1))); b_=$(( $(egress) - e0 ))
  c_=$(echo "$(cpu) - $c0" | bc -l)
  read -r m1 mb1 < <(state_sent flash "$n" 47600)
  flash_state_all+=("$(echo "scale=1; ($m1 - $m0) / $n / $s_" | bc -l) msgs, $(echo "scale=0; ($mb1 - $mb0) / $n / $s_" | bc -l) B")
  for i in $(seq 1 $((n - 1))); do check_same flash 0 flash "$i"; done
  check_same flash 0 seeded 0
  stop_daemons flash "$n"
  flash_all+=("$(printf %.2f "$s_")") flash_copies_all+=("$b_") flash_cpu_all+=("$(printf %.1f "$c_")")
  # The table shows the last run; every run is listed under it.
  flash_s=$s_ flash_b=$b_ flash_c=$c_
done

# Flash crowd of vanilla clients: N fresh daemons, and on each node huggingface_hub's own
# snapshot_download with HF_ENDPOINT on that node's zestd, all at once.
if [ "$cases" = all ]; then
start_daemons epflash "$n" 47700
ep_pull() { inF env HF_ENDPOINT="http://127.0.0.1:$((48700 + $1))" HF_HOME="$work/epflash/$1/home" \
  HF_HUB_CACHE="$work/epflash/$1/cache" HF_HUB_DISABLE_PROGRESS_BARS=1 \
  "$py" -c 'import sys; from huggingface_hub import snapshot_download; print(snapshot_download(sys.argv[1]))' "$repo" > "$work/epflash/$1/out"; }
c0=$(cpu); e0=$(egress); t0=$(now); p=()
for i in $(seq 0 $((n - 1))); do ep_pull "$i" & p+=($!); done
for x in "${p[@]}"; do wait "$x" || { echo "an endpoint client failed: $(tail -5 "$work"/epflash/*/log)" >&2; exit 1; }; done
epflash_s=$(echo "$(now) - $t0" | bc -l); epflash_b=$(( $(egress) - e0 )); epflash_c=$(echo "$(cpu) - $c0" | bc -l)
for i in $(seq 0 $((n - 1))); do check_same epflash "$i" seeded 0; done
stop_daemons epflash "$n"
fi

# One copy = what crossed the link when one zest node pulled alone (compressed xorbs and
# TCP/IP overhead included); its time at line rate is the yardstick.
one_copy_s=$(echo "$zest_solo_b * 8 / $rate_bits" | bc -l)
copies() { echo "scale=3; $1 / $zest_solo_b" | bc -l; }
ratio() { echo "scale=2; $1 / $one_copy_s" | bc -l; }
cat <<EOF
### Fleet: $n daemons, $(numfmt --to=iec "$model_bytes") model, origin link $rate, discovery: $discovery

One copy through the link (zest alone) = $zest_solo_b origin bytes (IP level), $(printf %.2f "$one_copy_s") s at line rate.

| case | origin egress | copies | time to last node | × one-copy time | machine CPU |
|---|---:|---:|---:|---:|---:|
| zest, one node alone | $zest_solo_b | 1.000 | $(printf %.2f "$zest_solo_s") s | $(ratio "$zest_solo_s") | $(printf %.1f "$zest_solo_c") s |
| zest seeded: $((n - 1)) pull from 1 holder | $seeded_b | $(copies "$seeded_b") | $(printf %.2f "$seeded_s") s | $(ratio "$seeded_s") | $(printf %.1f "$seeded_c") s |
| zest flash crowd: $n pull at once | $flash_b | $(copies "$flash_b") | $(printf %.2f "$flash_s") s | $(ratio "$flash_s") | $(printf %.1f "$flash_c") s |
EOF
[ "$cases" = all ] && cat <<EOF
| huggingface_hub+hf_xet through each node's zestd endpoint, $n at once | $epflash_b | $(copies "$epflash_b") | $(printf %.2f "$epflash_s") s | $(ratio "$epflash_s") | $(printf %.1f "$epflash_c") s |
| huggingface_hub+hf_xet, one node | $hf_solo_b | $(copies "$hf_solo_b") | $(printf %.2f "$hf_solo_s") s | $(ratio "$hf_solo_s") | $(printf %.1f "$hf_solo_c") s |
| huggingface_hub+hf_xet, $n nodes at once | $hf_crowd_b | $(copies "$hf_crowd_b") | $(printf %.2f "$hf_crowd_s") s | $(ratio "$hf_crowd_s") | $(printf %.1f "$hf_crowd_c") s |

Flash crowd vs huggingface_hub for $n nodes: time $(echo "scale=2; $flash_s / $hf_crowd_s" | bc -l)×, origin bytes $(echo "scale=2; $flash_b / $hf_crowd_b" | bc -l)×; through the endpoints: time $(echo "scale=2; $epflash_s / $hf_crowd_s" | bc -l)×, origin bytes $(echo "scale=2; $epflash_b / $hf_crowd_b" | bc -l)×. A seeded node took $(numfmt --to=iec "$seeded_peer") from peers.
EOF
echo
echo "A seeded node took $(numfmt --to=iec "$seeded_peer") from peers."
echo "Flash crowd runs ($flash_runs), time to last node: $(for x in "${flash_all[@]}"; do printf '%s s (%s×) ' "$x" "$(ratio "$x")"; done)"
echo "Flash crowd runs, machine CPU seconds: $(for c in "${flash_cpu_all[@]}"; do printf '%s ' "$c"; done)"
echo "Flash crowd runs, copies: $(for b in "${flash_copies_all[@]}"; do printf '%s ' "$(copies "$b")"; done)"
echo "Flash crowd runs, peer-state messages sent per node per second of the pull: $(for x in "${flash_state_all[@]}"; do printf '%s; ' "$x"; done)"

