#!/usr/bin/env bash
# Bytes of one BitTorrent announce, as zestd sends it, against Debian's opentracker on
# loopback: the input to the per-file vs per-xorb swarm decision (docs/PROTOCOL.md §10).
# Usage: benches/announce.sh   (needs opentracker and curl)
set -euo pipefail
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
key=0123456789abcdef0123456789abcdef01234567
echo "$key" > "$work/whitelist"
printf 'listen.tcp 127.0.0.1:%s\naccess.whitelist %s\n' "$port" "$work/whitelist" > "$work/ot.conf"
opentracker -f "$work/ot.conf" >/dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
enc=$(echo "$key" | sed 's/../%&/g')
# The query string zestd's tracker client builds (discovery/tracker.rs announce_url).
url="http://127.0.0.1:$port/announce?info_hash=$enc&peer_id=%2D%5A%53%30%31%30%30%2D%61%62%63%64%65%66%67%68%69%6A%6B%6C&port=4747&uploaded=0&downloaded=0&left=0&compact=1&numwant=50&event=started"
curl -s -o /dev/null -A "zestd/0.1.0" -w 'request %{size_request} B, reply headers %{size_header} B, reply body %{size_download} B\n' "$url"
