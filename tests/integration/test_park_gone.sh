#!/usr/bin/env bash
# A client that closes a request parked on the observation registry gives its slot back at once, not only a
# live stream's: an SSE subscriber still waiting for its registration's answer, and a long-poll waiting for
# the next notification. libmicrohttpd 0.9.75 does not watch a suspended connection's socket, so without the
# gateway's watch the first would hold limits.max_subscribers_per_resource until timeout_ms (30 s here) and
# the second its observation until longpoll_timeout_s (60 s here).
# 1. 100 cycles against a device that never answers the registration (coap_testsrv stop_after=0: only the
#    empty ACK) with ONE slot: subscribe, wait until the device has the registration, close. Each cycle's
#    slot is free within 1.5 s of the close (the active-request gauge back to 1), and no subscriber gets 503.
# 2. A long-poll on a live resource: the device has one observer; the client closes; within 2 s the device
#    sees the deregistration and has no observer.
source "$(dirname "$0")/lib.sh"

start_testsrv
SRV=$TESTSRV_PORT
GW_PORT=$(free_port)
CYCLES=${CYCLES:-100}

cat >"$T/gw.json" <<JSON
{
  "listen": "127.0.0.1:$GW_PORT",
  "upstreams": { "dev": { "uri": "coap://127.0.0.1:$SRV", "timeout_ms": 30000 } },
  "routes": [ { "prefix": "/api/", "upstream": "dev", "cache": false } ],
  "limits": { "sse_keepalive_s": 30, "longpoll_timeout_s": 60, "max_subscribers_per_resource": 1 }
}
JSON
start_gateway "$T/gw.json"

active() {
    curl -sS --max-time 2 "$(url /metrics)" | awk '$1 == "coapgw_http_requests_active" { print $2 }'
}
# Only the /metrics request itself is in progress: every closed client's request is gone.
idle() { [[ $(active) == 1 ]]; }

gets() { srv_count "$SRV" "GET /obs/pend"; }

# ---- 1. SSE subscribers whose registration is never answered ----
slowest=0
closed_at=$(now_ms)
for ((i = 1; i <= CYCLES; i++)); do
    until idle; do
        (($(now_ms) - closed_at < 1500)) || fail "cycle $i: the previous subscriber's request still in progress" \
            "1.5 s after its client closed (active $(active))"
        sleep 0.02
    done
    freed=$(($(now_ms) - closed_at))
    ((freed > slowest)) && slowest=$freed
    before=$(gets)
    : >"$T/p.h"
    curl -sS -N --max-time 20 -H 'Accept: text/event-stream' -D "$T/p.h" -o "$T/p.sse" \
        "$(url '/api/obs/pend?stop_after=0')" 2>/dev/null &
    pid=$!
    registered() {
        alive "$pid" || fail "cycle $i: the subscriber was answered instead of waiting ($(status_line "$T/p.h"))"
        (($(gets) > before))
    }
    wait_until "cycle $i: the registration to reach the device" registered
    [[ ! -s $T/p.h ]] || fail "cycle $i: headers arrived for a stream whose registration is unanswered"
    kill "$pid" 2>/dev/null || true # the client closes while its request is parked
    wait "$pid" 2>/dev/null || true
    closed_at=$(now_ms)
done
until idle; do
    (($(now_ms) - closed_at < 1500)) || fail "the last subscriber's request still in progress 1.5 s after its close"
    sleep 0.02
done
echo "[$TEST_NAME] $CYCLES subscribe-then-close cycles on a pending registration, one slot: slowest slot" \
    "release $slowest ms; the device saw $(gets) GETs (registrations and deregistrations)" >&2
grep -q 'status=503' "$GW_LOG" && fail "a subscriber got 503"

# ---- 2. A long-poll whose client closes ----
: >"$T/lp.h"
curl -sS --max-time 30 -D "$T/lp.h" -o "$T/lp.body" "$(url '/api/obs/lp?period_ms=60000&observe=next')" \
    2>/dev/null &
pid=$!
observed() { [[ $(coap_get "$SRV" /stats/observers/lp) == 1 ]]; }
wait_until "the long-poll's observation to be registered" observed
alive "$pid" || fail "the long-poll was answered before any notification ($(status_line "$T/lp.h"))"
kill "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
t0=$(now_ms)
unobserved() { [[ $(coap_get "$SRV" /stats/observers/lp) == 0 ]]; }
until unobserved; do
    (($(now_ms) - t0 < 2000)) || fail "the device still has an observer 2 s after the long-poll's client closed"
    sleep 0.02
done
took=$(($(now_ms) - t0))
assert_eq 1 "$(srv_count "$SRV" "DEREGISTER /obs/lp")" "deregistrations of the long-poll's observation"
echo "[$TEST_NAME] long-poll client closed: the device lost its observer within $took ms" >&2
wait_until "the long-poll's request to end" idle

stop_gateway
pass
