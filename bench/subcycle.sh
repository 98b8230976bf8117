#!/usr/bin/env bash
# Subscribe/close cycles: CYCLES SSE subscriptions opened and closed at once (no wait for any event), over
# NAMES resource names, against coap_testsrv; prints the registrations the device received. Compares the
# gateways given (default: build/coapgw) side by side in one run.
#   bench/subcycle.sh [COAPGW...]    env: CYCLES (1000), NAMES (1), MAX_INFLIGHT (1)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CYCLES=${CYCLES:-1000} NAMES=${NAMES:-1} MAX_INFLIGHT=${MAX_INFLIGHT:-1}
TESTSRV=${TESTSRV:-$ROOT/build/tests/integration/coap_testsrv}
FREEPORT=${FREEPORT:-$ROOT/build/tests/integration/freeport}
(($# > 0)) || set -- "$ROOT/build/coapgw"
T=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$T"' EXIT

for gw in "$@"; do
    http=$("$FREEPORT")
    "$TESTSRV" >"$T/srv.out" 2>"$T/srv.log" &
    spid=$!
    for _ in $(seq 100); do grep -q '^ready ' "$T/srv.out" && break; sleep 0.05; done
    srv=$(awk '/^ready / { print $2; exit }' "$T/srv.out")
    cat >"$T/gw.json" <<JSON
{ "listen": "127.0.0.1:$http",
  "upstreams": { "dev": { "uri": "coap://127.0.0.1:$srv", "max_inflight": $MAX_INFLIGHT } },
  "routes": [ { "prefix": "/api/", "upstream": "dev", "cache": false } ],
  "limits": { "max_connections_per_ip": 0 }, "log": { "level": "warn" } }
JSON
    "$gw" --config "$T/gw.json" 2>"$T/gw.log" &
    gpid=$!
    for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$http/healthz" && break; sleep 0.05; done
    start=$(date +%s%N)
    python3 - "$http" "$CYCLES" "$NAMES" <<'PY'
import socket, sys
port, cycles, names = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
for i in range(cycles):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(("GET /api/obs/r%d HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n" % (i % names)).encode())
    s.close()
PY
    took=$((($(date +%s%N) - start) / 1000000))
    sleep 3 # let the registrations on the wire settle
    reg=$(coap-client-notls -B 5 "coap://127.0.0.1:$srv/stats" | awk '$1 == "REGISTER" { n += $NF } END { print n + 0 }')
    echo "$gw: $CYCLES cycles over $NAMES name(s) in ${took} ms, max_inflight $MAX_INFLIGHT: $reg registrations at the device"
    kill "$gpid" "$spid"
    wait "$gpid" "$spid" 2>/dev/null || true
done
