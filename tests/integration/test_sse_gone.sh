#!/usr/bin/env bash
# A closed SSE subscriber gives its slot back at once: libmicrohttpd 0.9.75 does not watch a suspended
# (parked) stream's socket, so without the gateway's own check a client's FIN is seen only at the next
# keep-alive write. With limits.max_subscribers_per_resource 5, 50 cycles of subscribe, first event, close:
# each new subscriber is accepted within 1.5 s, the active-request gauge falls back to 1 (the /metrics
# request itself) and the device loses its last observer.
source "$(dirname "$0")/lib.sh"

start_testsrv
SRV=$TESTSRV_PORT
GW_PORT=$(free_port)
CYCLES=50
SLOTS=5

# Keep-alives every 30 s: only the gateway's watch of the socket can free a slot within the test.
cat >"$T/gw.json" <<JSON
{
  "listen": "127.0.0.1:$GW_PORT",
  "upstreams": { "dev": { "uri": "coap://127.0.0.1:$SRV" } },
  "routes": [ { "prefix": "/api/", "upstream": "dev", "cache": false } ],
  "limits": { "sse_keepalive_s": 30, "max_subscribers_per_resource": $SLOTS }
}
JSON
start_gateway "$T/gw.json"

# One subscriber: curl in the background until its first event (0) or an answer without a stream (1).
subscribe_once() { # N
    local out=$T/s$1.sse hdr=$T/s$1.h end=$((SECONDS + 5))
    : >"$out"
    : >"$hdr"
    curl -sS -N --max-time 20 -H 'Accept: text/event-stream' -D "$hdr" -o "$out" \
        "$(url /api/obs/gone?period_ms=1000)" 2>/dev/null &
    local pid=$!
    until grep -q '^event: 2.05$' "$out"; do
        if ! alive "$pid" || ((SECONDS >= end)); then
            kill "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
            return 1 # 503 (all slots held), or nothing at all
        fi
        sleep 0.02
    done
    kill "$pid" 2>/dev/null || true # the client closes: FIN on the parked stream
    wait "$pid" 2>/dev/null || true
}

# Each cycle must get its stream within 1.5 s of the previous close (retrying while the slots are held).
slowest=0
for ((i = 1; i <= CYCLES; i++)); do
    t0=$(now_ms)
    until subscribe_once "$i"; do
        (($(now_ms) - t0 < 1500)) || fail "cycle $i: no subscriber accepted within 1.5 s" \
            "($(status_line "$T/s$i.h"))"
        sleep 0.05
    done
    took=$(($(now_ms) - t0))
    ((took > slowest)) && slowest=$took
done
echo "[$TEST_NAME] $CYCLES subscribe-then-close cycles with $SLOTS slots; slowest cycle $slowest ms" >&2

active() {
    curl -sS --max-time 2 "$(url /metrics)" | awk '$1 == "coapgw_http_requests_active" { print $2 }'
}
idle() { [[ $(active) == 1 ]]; }
end=$((SECONDS + 2))
until idle; do
    ((SECONDS < end)) || fail "coapgw_http_requests_active is $(active) 2 s after the last close (expected 1)"
    sleep 0.05
done

no_observer() { [[ $(coap_get "$SRV" /stats/observers/gone) == 0 ]]; }
end=$((SECONDS + 5))
until no_observer; do
    ((SECONDS < end)) || fail "the device still has $(coap_get "$SRV" /stats/observers/gone) observer(s)"
    sleep 0.1
done

stop_gateway
pass
